/* The disk copier: every area reaches the destination, whatever the
 * number of chunks in flight, the chunk size and the resume offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "drivers/vsops.h"
#include "engine/jobs/copy.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"

#define DISK (3u * 1024 * 1024 + 12345)

static char dir[64];
static uint8_t *pattern;
static enum xfer_status result;
static char *result_err;
static int finished;
static uint64_t last_checkpoint;
/* The copy under way, for the checkpoint check. */
static const struct vs_extent *cur_areas;
static size_t cur_n;
static int cur_fd = -1;

/* A checkpoint promises that everything of the areas below it is
 * written: read the destination back as the copier reports one. */
static void
progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
	size_t k;

	assert_true(checkpoint >= last_checkpoint);
	for (k = 0; k < cur_n; k++) {
		uint64_t s = cur_areas[k].start, e = cur_areas[k].start + cur_areas[k].length;
		uint8_t buf[4096];

		s = s > last_checkpoint ? s : last_checkpoint;
		e = e < checkpoint ? e : checkpoint;
		while (s < e) {
			size_t n = e - s < sizeof(buf) ? (size_t)(e - s) : sizeof(buf);

			assert_int_equal(pread(cur_fd, buf, n, (off_t)s), (ssize_t)n);
			if (memcmp(buf, pattern + s, n) != 0)
				fail_msg("checkpoint %llu claims bytes at %llu that are not written",
				    (unsigned long long)checkpoint, (unsigned long long)s);
			s += n;
		}
	}
	last_checkpoint = checkpoint;
}

static void
done(void *arg, enum xfer_status st, const char *err)
{
	result = st;
	free(result_err);
	result_err = err ? xstrdup(err) : NULL;
	finished = 1;
	event_base_loopexit(loop_base(), NULL);
}

static int
setup(void **state)
{
	FILE *f;
	size_t i;
	char path[128];

	snprintf(dir, sizeof(dir), "/tmp/vmferry-copy-XXXXXX");
	assert_non_null(mkdtemp(dir));
	pattern = xmalloc(DISK);
	for (i = 0; i < DISK; i++)
		pattern[i] = (uint8_t)(i * 2654435761u >> 13);
	snprintf(path, sizeof(path), "%s/src", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(pattern, 1, DISK, f), DISK);
	fclose(f);
	loop_init();
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(pattern);
	loop_free();
	return 0;
}

/* A request of the fake transports below, answered from the loop after
 * a delay.  The slow source's delay shrinks with the offset, so later
 * chunks finish before earlier ones (as over HTTPS); its streamed reads
 * (read_to) put the first half of the range at once and the rest when
 * they complete, so ranges are half written meanwhile. */
/* Bytes the slow source owes (requested, not yet answered), and the
 * destination of test_hold keeps (written, not yet reported). */
static uint64_t owed, owed_max, kept, kept_max, both_max;

static void
note_owed_kept(void)
{
	if (owed > owed_max)
		owed_max = owed;
	if (kept > kept_max)
		kept_max = kept;
	if (owed + kept > both_max)
		both_max = owed + kept;
}

struct slow_io {
	struct event *ev;
	struct disk *dst;       /* streamed: the second half goes here */
	uint64_t off;
	size_t len;
	enum xfer_status st;    /* the outcome so far (a failed put) */
	char *err;
	xfer_cb cb;
	void *arg;
};

static void
slow_fire(evutil_socket_t fd, short what, void *arg)
{
	struct slow_io *io = arg;

	event_free(io->ev);
	owed -= io->len;
	if (io->dst != NULL && io->st == XFER_OK) {
		size_t half = io->len / 2;

		io->st = io->dst->ops->put(io->dst, io->off + half, pattern + io->off + half, io->len - half, &io->err);
	}
	io->cb(io->arg, io->st, io->err);
	free(io->err);
	free(io);
}

#define SLOW_DELAY_US(off) ((long)((DISK - (off)) / 2048))

static struct slow_io *
slow_start(uint64_t off, size_t len, long delay_us, xfer_cb cb, void *arg)
{
	struct slow_io *io = xcalloc(1, sizeof(*io));
	struct timeval tv = { 0, delay_us };

	owed += len;
	note_owed_kept();

	io->off = off;
	io->len = len;
	io->cb = cb;
	io->arg = arg;
	io->ev = evtimer_new(loop_base(), slow_fire, io);
	evtimer_add(io->ev, &tv);
	return io;
}

static struct disk_io *
slow_read(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	memcpy(buf, pattern + off, len);
	return (struct disk_io *)slow_start(off, len, SLOW_DELAY_US(off), cb, arg);
}

static struct disk_io *
slow_read_to(struct disk *d, uint64_t off, size_t len, struct disk *dst, xfer_cb cb, void *arg)
{
	struct slow_io *io = slow_start(off, len, SLOW_DELAY_US(off), cb, arg);

	io->dst = dst;
	/* A put that fails now is reported when the read completes. */
	io->st = dst->ops->put(dst, off, pattern + off, len / 2, &io->err);
	return (struct disk_io *)io;
}

/* Vectored: every range but the last half of the last is put at once,
 * that half when the request completes.  Counts requests and ranges. */
static int vec_requests, vec_ranges;

static struct disk_io *
slow_read_to_v(struct disk *d, const struct disk_range *r, size_t n, struct disk *dst, xfer_cb cb, void *arg)
{
	struct slow_io *io;
	char *err = NULL;
	size_t i;

	assert_true(n >= 2 && n <= DISK_MAX_RANGES);
	for (i = 0; i < n; i++) {
		assert_true(r[i].len > 0);
		if (i > 0)
			assert_true(r[i].off >= r[i - 1].off + r[i - 1].len);
	}
	vec_requests++;
	vec_ranges += (int)n;
	io = (struct slow_io *)slow_read_to(d, r[n - 1].off, (size_t)r[n - 1].len, dst, cb, arg);
	for (i = 0; i + 1 < n && io->st == XFER_OK; i++)
		io->st = dst->ops->put(dst, r[i].off, pattern + r[i].off, (size_t)r[i].len, &err);
	if (err != NULL)
		io->err = err;
	return (struct disk_io *)io;
}

static void
slow_cancel(struct disk_io *io)
{
	struct slow_io *s = (struct slow_io *)io;

	event_free(s->ev);
	owed -= s->len;
	free(s->err);
	free(s);
}

static void
slow_close(struct disk *d)
{
	free(d);
}

static const struct disk_ops slow_ops = {
	.name = "slow",
	.read = slow_read,
	.cancel = slow_cancel,
	.close = slow_close,
};

static const struct disk_ops stream_ops = {
	.name = "stream",
	.read = slow_read,
	.cancel = slow_cancel,
	.close = slow_close,
	.read_to = slow_read_to,
};

static const struct disk_ops vec_ops = {
	.name = "vec",
	.read = slow_read,
	.cancel = slow_cancel,
	.close = slow_close,
	.read_to = slow_read_to,
	.read_to_v = slow_read_to_v,
};

/* 0: the direct transport (buffers); 1: slow, buffers; 2: slow, streamed;
 * 3: slow, streamed, small areas share requests. */
static int use_slow;
/* Seconds between checkpoints: tiny checks one after every chunk, long
 * leaves only the one the copier owes at the end. */
static double ckpt_s = 1e-9;
/* The source has learned to read one range per request. */
static int src_one_range;
/* copy_params.hold of the next copies. */
static size_t copy_hold;

static void
keep_alive(evutil_socket_t fd, short what, void *arg)
{
}

/* One copy from the source (as use_slow says) into dst, whose bytes are
 * in the file at path (read back at each checkpoint); returns how it
 * ended. */
static enum xfer_status
copy_once(struct disk *dst, const char *path, const struct vs_extent *areas, size_t n, uint64_t resume, size_t chunk,
    int inflight)
{
	struct copy_params p;
	struct disk *src;
	struct event *keep;
	struct timeval far = { 60, 0 };
	char *err = NULL;

	if (use_slow) {
		src = xcalloc(1, sizeof(*src));
		src->ops = use_slow == 3 ? &vec_ops : use_slow == 2 ? &stream_ops : &slow_ops;
		src->size = DISK;
		src->one_range = src_one_range;
	} else {
		src = disk_open_direct(dir, "src", DISK, 0, &err);
	}
	assert_non_null(src);
	memset(&p, 0, sizeof(p));
	p.src = src;
	p.dst = dst;
	p.areas = areas;
	p.nareas = n;
	p.resume = resume;
	p.chunk = chunk;
	p.inflight = inflight;
	p.hold = copy_hold;
	p.progress = progress;
	p.done = done;
	p.checkpoint_s = ckpt_s;
	finished = 0;
	last_checkpoint = resume;
	cur_areas = areas;
	cur_n = n;
	cur_fd = open(path, O_RDONLY);
	assert_true(cur_fd >= 0);
	assert_int_equal(disk_can_stream(src, dst), use_slow >= 2);
	copy_start(&p);
	/* The daemon's loop always has events (its socket, signals); here a
	 * far timer keeps it running while a flush runs on a worker (done
	 * ends it). */
	keep = evtimer_new(loop_base(), keep_alive, NULL);
	evtimer_add(keep, &far);
	event_base_dispatch(loop_base());
	event_free(keep);
	close(cur_fd);
	assert_true(finished);
	disk_close(src);
	return result;
}

/* With a worker pool the loop never flushes the destination itself: its
 * inline flush fails the test, only flush_bg may run. */
static int flush_on_workers;
static int bg_flushes;
static struct disk_ops disk_file_ops;   /* the file transport's own */

static int
flush_inline_refused(struct disk *d)
{
	fail_msg("the loop flushed the destination itself (fdatasync on the loop thread)");
	return -1;
}

static struct disk_io *
flush_bg_counted(struct disk *d, xfer_cb cb, void *arg)
{
	struct disk_io *io = disk_file_ops.flush_bg(d, cb, arg);

	assert_non_null(io);
	bg_flushes++;
	return io;
}

/* Copy the areas into a fresh sparse file and check byte by byte. */
static void
run_copy(const struct vs_extent *areas, size_t n, size_t chunk, int inflight, uint64_t resume)
{
	struct disk_ops bg_ops;
	struct disk *dst;
	char *err = NULL, path[128];
	int en;
	uint8_t *out = xmalloc(DISK);
	FILE *f;
	size_t i, k;

	snprintf(path, sizeof(path), "%s/dst", dir);
	unlink(path);
	dst = disk_open_file(path, DISK, 1, &err, &en);
	assert_non_null(dst);
	if (flush_on_workers) {
		disk_file_ops = *dst->ops;
		bg_ops = disk_file_ops;
		bg_ops.flush = flush_inline_refused;
		bg_ops.flush_bg = flush_bg_counted;
		dst->ops = &bg_ops;
	}
	assert_int_equal(copy_once(dst, path, areas, n, resume, chunk, inflight), XFER_OK);
	/* Success comes after a checkpoint (a flush) that claims it all:
	 * nobody flushes after the copier. */
	assert_true(last_checkpoint >= areas[n - 1].start + areas[n - 1].length);
	disk_close(dst);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(out, 1, DISK, f), DISK);
	fclose(f);
	for (i = 0; i < DISK; i++) {
		int inside = 0;

		for (k = 0; k < n; k++)
			if (i >= areas[k].start && i < areas[k].start + areas[k].length && i >= resume)
				inside = 1;
		if (inside && out[i] != pattern[i])
			fail_msg("byte %zu inside an area was not copied", i);
		if (!inside && out[i] != 0)
			fail_msg("byte %zu outside the areas was written", i);
	}
	free(out);
}

/* Many small areas, the last one included (a copy once finished while
 * its final chunk was still in flight). */
static void
test_many_small_areas(void **state)
{
	struct vs_extent a[23];
	size_t i;

	for (i = 0; i < 23; i++) {
		a[i].start = (uint64_t)(i * 2 + 1) * 65536;
		a[i].length = 65536;
	}
	for (use_slow = 0; use_slow < 4; use_slow++) {
		vec_requests = vec_ranges = 0;
		run_copy(a, 23, 4u << 20, 2, 0);
		run_copy(a, 23, 4096, 7, 0);
		run_copy(a, 23, 65536, 1, 0);
		ckpt_s = 3600;
		run_copy(a, 23, 65536, 3, 0);
		ckpt_s = 1e-9;
		/* Vectored: the 23 areas of 64 KiB go as one request per
		 * 4 MiB chunk, and 2 areas per 128 KiB chunk. */
		vec_requests = vec_ranges = 0;
		run_copy(a, 23, 4u << 20, 2, 0);
		assert_int_equal(vec_requests, use_slow == 3 ? 1 : 0);
		assert_int_equal(vec_ranges, use_slow == 3 ? 23 : 0);
		run_copy(a, 23, 131072, 4, 10 * 65536);
		assert_int_equal(vec_requests, use_slow == 3 ? 1 + 9 : 0);
	}
	/* More areas than a request may carry. */
	{
		struct vs_extent b[40];

		for (i = 0; i < 40; i++) {
			b[i].start = (uint64_t)i * 3 * 4096;
			b[i].length = 4096 + (i % 3);
		}
		use_slow = 3;
		vec_requests = vec_ranges = 0;
		run_copy(b, 40, 4u << 20, 2, 0);
		assert_int_equal(vec_requests, 2);
		assert_int_equal(vec_ranges, 40);
		/* A source that answers one range per request gets them one by
		 * one (in parallel), not grouped. */
		src_one_range = 1;
		run_copy(b, 40, 4u << 20, 2, 0);
		assert_int_equal(vec_requests, 2);
		src_one_range = 0;
	}
}

static void
test_odd_sizes_and_resume(void **state)
{
	struct vs_extent a[3] = { { 0, 1000001 }, { 1500000, 7 }, { 2000000, DISK - 2000000 } };

	for (use_slow = 0; use_slow < 4; use_slow++) {
		run_copy(a, 3, 65536 + 13, 4, 0);
		run_copy(a, 3, 1u << 20, 3, 1200000);
		run_copy(a, 3, 333333, 2, 2000001);
	}
}

/* With the worker pool (as in vmferryd) every checkpoint's flush runs on
 * a worker while the copy goes on, one at a time, and the copy still ends
 * only once a checkpoint claims everything (run_copy checks it), every
 * claimed byte in the file (progress reads them back). */
static void
test_checkpoints_flush_on_a_worker(void **state)
{
	struct vs_extent a[3] = { { 0, 1000001 }, { 1500000, 7 }, { 2000000, DISK - 2000000 } };

	workers_init(loop_base(), 2);
	flush_on_workers = 1;
	for (use_slow = 0; use_slow < 4; use_slow++) {
		bg_flushes = 0;
		run_copy(a, 3, 65536 + 13, 4, 0);
		assert_true(bg_flushes >= 2);
		run_copy(a, 3, 333333, 2, 2000001);
	}
	flush_on_workers = 0;
	use_slow = 0;
	workers_free();
}

/* A destination that runs out of space above `room` bytes (a full
 * temp_dir): writes that would end there fail transient, naming ENOSPC;
 * the others land in the file.  Buffered writes (write) are answered from
 * the loop like the direct transport's, streamed ones (put) at once. */
struct full_disk {
	struct disk base;
	struct disk *file;
	uint64_t room;
	int flushes;
};

static enum xfer_status
full_put(struct disk *d, uint64_t off, const void *p, size_t n, char **err)
{
	struct full_disk *f = (struct full_disk *)d;

	if (off + n > f->room) {
		*err = xstrdup("staging image: No space left on device");
		return XFER_TRANSIENT;
	}
	return f->file->ops->put(f->file, off, p, n, err);
}

/* A buffered write: its outcome is delivered from the loop. */
static struct disk_io *
full_write(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	struct slow_io *io = slow_start(off, len, 0, cb, arg);

	io->st = full_put(d, off, buf, len, &io->err);
	return (struct disk_io *)io;
}

static int
full_flush(struct disk *d)
{
	struct full_disk *f = (struct full_disk *)d;

	f->flushes++;
	return f->file->ops->flush(f->file);
}

static void
full_close(struct disk *d)
{
	struct full_disk *f = (struct full_disk *)d;

	disk_close(f->file);
	free(f);
}

static const struct disk_ops full_ops = {
	.name = "full",
	.write = full_write,
	.cancel = slow_cancel,
	.flush = full_flush,
	.close = full_close,
	.put = full_put,
};

static struct full_disk *
full_open(const char *path, uint64_t room)
{
	struct full_disk *f = xcalloc(1, sizeof(*f));
	char *err = NULL;
	int en;

	unlink(path);
	f->file = disk_open_file(path, DISK, 1, &err, &en);
	assert_non_null(f->file);
	f->base.ops = &full_ops;
	f->base.size = DISK;
	f->room = room;
	return f;
}

/* A streamed write that fails ends the copy with the destination's
 * status and reason, and no checkpoint claims what was not written
 * (copy_once's progress reads every claimed byte back). */
static void
test_stream_put_fails(void **state)
{
	struct vs_extent a[1] = { { 0, DISK } };
	char path[128];
	struct full_disk *f;

	snprintf(path, sizeof(path), "%s/dst", dir);
	f = full_open(path, 1u << 20);
	use_slow = 2;
	assert_int_equal(copy_once(&f->base, path, a, 1, 0, 256u << 10, 3), XFER_TRANSIENT);
	assert_non_null(result_err);
	assert_non_null(strstr(result_err, "No space left on device"));
	assert_true(last_checkpoint <= (1u << 20));
	disk_close(&f->base);
}

/* The destination fills up in the middle: the copy ends transient with a
 * checkpoint as far as everything below it is written and flushed (not
 * the last periodic one), and a second run from that checkpoint, after
 * space was freed, completes the disk byte for byte. */
static void
test_full_destination_checkpoints_at_the_failure(void **state)
{
	struct vs_extent a[2] = { { 0, 1500000 }, { 1600000, DISK - 1600000 } };
	uint8_t *out = xmalloc(DISK);
	char path[128];
	struct full_disk *f;
	uint64_t first;
	size_t i;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/dst", dir);
	/* No periodic checkpoint: only the one at the failure. */
	ckpt_s = 3600;
	for (use_slow = 0; use_slow < 4; use_slow++) {
		f = full_open(path, 2000000);
		assert_int_equal(copy_once(&f->base, path, a, 2, 0, 65536 + 7, 5), XFER_TRANSIENT);
		first = last_checkpoint;
		assert_true(first <= f->room);
		/* Everything below the lowest of the 5 chunks in flight when one
		 * hit the limit is kept, in order (direct) or not (the slow
		 * transports finish later chunks first), and flushed. */
		assert_true(first > f->room - 6 * (65536 + 7));
		assert_true(f->flushes > 0);
		f->room = DISK;
		assert_int_equal(copy_once(&f->base, path, a, 2, first, 65536 + 7, 5), XFER_OK);
		disk_close(&f->base);
		fp = fopen(path, "rb");
		assert_non_null(fp);
		assert_int_equal(fread(out, 1, DISK, fp), DISK);
		fclose(fp);
		for (i = 0; i < DISK; i++)
			if (out[i] != ((i < 1500000 || i >= 1600000) ? pattern[i] : 0))
				fail_msg("byte %zu differs after the resumed copy", i);
	}
	ckpt_s = 1e-9;
	free(out);
}

/* Bytes of the file at path in the page cache (mincore of a fresh
 * mapping, which faults nothing in). */
static size_t
resident_bytes(const char *path, size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t npg = (size + (size_t)pg - 1) / (size_t)pg, i, n = 0;
	unsigned char *vec = xmalloc(npg);
	int fd = open(path, O_RDONLY);
	void *m;

	assert_true(fd >= 0);
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, size, vec), 0);
	for (i = 0; i < npg; i++)
		n += vec[i] & 1;
	munmap(m, size);
	close(fd);
	free(vec);
	return n * (size_t)pg;
}

/* A staging image written through the direct transport does not stay in
 * the page cache: once flushed, none of it is resident (a cache that
 * grows with the disk made an 8 GiB copy cost twice the CPU per byte of a
 * 1 GiB one; docs/BENCHMARKS.md, 2026-11-23), and every byte is on the
 * file. */
static void
test_written_image_leaves_the_page_cache(void **state)
{
	const size_t size = 24u << 20, piece = 256u << 10;
	uint8_t *buf = xmalloc(piece), *back = xmalloc(piece);
	struct statfs sf;
	struct disk *d;
	char *err = NULL, path[128];
	size_t off, i;
	int en, fd;

	snprintf(path, sizeof(path), "%s/image", dir);
	assert_int_equal(statfs(dir, &sf), 0);
	if (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC)
		skip(); /* memory is the file there: nothing to drop */
	d = disk_open_file(path, size, 1, &err, &en);
	assert_non_null(d);
	for (off = 0; off < size; off += piece) {
		for (i = 0; i < piece; i++)
			buf[i] = (uint8_t)((off + i) * 2654435761u >> 13);
		assert_int_equal(d->ops->put(d, off, buf, piece, &err), XFER_OK);
	}
	assert_int_equal(d->ops->flush(d), 0);
	assert_int_equal(resident_bytes(path, size), 0);
	disk_close(d);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (off = 0; off < size; off += piece) {
		assert_int_equal(pread(fd, back, piece, (off_t)off), (ssize_t)piece);
		for (i = 0; i < piece; i++)
			if (back[i] != (uint8_t)((off + i) * 2654435761u >> 13))
				fail_msg("byte %zu of the image is not what was put", off + i);
	}
	close(fd);
	unlink(path);
	free(buf);
	free(back);
}

/* ---- hold: a destination that keeps each write until the whole
 * KEEP_GROUP around it is written, as the backup sink keeps a
 * repository chunk's writes until the chunk is complete and sealed ---- */

#define KEEP_GROUP (1024 * 1024)
#define KEEP_GROUPS (DISK / KEEP_GROUP + 1)

struct keep_write {
	struct keep_write *next;
	size_t len;
	xfer_cb cb;
	void *arg;
	int cancelled;
};

struct keep_disk {
	struct disk d;
	int fd;
	uint64_t got[KEEP_GROUPS];
	struct keep_write *pending[KEEP_GROUPS], *ready;
	struct event *ev;
};

static void
keep_report(evutil_socket_t fd, short what, void *arg)
{
	struct keep_disk *k = arg;
	struct keep_write *w;

	while ((w = k->ready) != NULL) {
		k->ready = w->next;
		kept -= w->len;
		if (!w->cancelled)
			w->cb(w->arg, XFER_OK, NULL);
		free(w);
	}
}

static struct disk_io *
keep_write(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	struct keep_disk *k = (struct keep_disk *)d;
	struct keep_write *w = xcalloc(1, sizeof(*w)), *mine = w;
	uint64_t g = off / KEEP_GROUP, end = (g + 1) * KEEP_GROUP < DISK ? (g + 1) * KEEP_GROUP : DISK;

	assert_true(off + len <= end); /* the requests here never straddle a group */
	assert_int_equal(pwrite(k->fd, buf, len, (off_t)off), (ssize_t)len);
	w->len = len;
	w->cb = cb;
	w->arg = arg;
	w->next = k->pending[g];
	k->pending[g] = w;
	kept += len;
	note_owed_kept();
	k->got[g] += len;
	if (k->got[g] == end - g * KEEP_GROUP) {
		/* The group is complete: its writes are reported 20 ms later
		 * (the sink's hashing and filing). */
		struct timeval later = { 0, 20000 };

		while ((w = k->pending[g]) != NULL) {
			k->pending[g] = w->next;
			w->next = k->ready;
			k->ready = w;
		}
		if (!evtimer_pending(k->ev, NULL))
			evtimer_add(k->ev, &later);
	}
	return (struct disk_io *)mine;
}

static void
keep_cancel(struct disk_io *io)
{
	((struct keep_write *)io)->cancelled = 1;
}

static int
keep_flush(struct disk *d)
{
	return 0;
}

static void
keep_close(struct disk *d)
{
	struct keep_disk *k = (struct keep_disk *)d;
	size_t g;

	keep_report(-1, 0, k);
	for (g = 0; g < KEEP_GROUPS; g++)
		assert_null(k->pending[g]);
	event_free(k->ev);
	close(k->fd);
	free(k);
}

static const struct disk_ops keep_ops = {
	.name = "keep",
	.write = keep_write,
	.cancel = keep_cancel,
	.flush = keep_flush,
	.close = keep_close,
};

/* With hold, the budget covers only what the source owes: the reads go on
 * while the destination keeps more than the budget, what the copy keeps
 * stays within hold, and everything arrives.  Without it a destination
 * that keeps a group larger than the budget would stall the copy. */
static void
test_hold_reads_on_while_the_destination_keeps(void **state)
{
	struct vs_extent a[1] = { { 0, DISK } };
	const size_t chunk = 256 * 1024;
	struct keep_disk *k = xcalloc(1, sizeof(*k));
	uint8_t *out = xmalloc(DISK);
	char path[128];

	snprintf(path, sizeof(path), "%s/kept", dir);
	k->d.ops = &keep_ops;
	k->d.size = DISK;
	k->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(k->fd >= 0);
	k->ev = evtimer_new(loop_base(), keep_report, k);
	use_slow = 1;
	copy_hold = 6 * chunk;
	owed = owed_max = kept = kept_max = both_max = 0;
	assert_int_equal(copy_once(&k->d, path, a, 1, 0, chunk, 2), XFER_OK);
	copy_hold = 0;
	use_slow = 0;
	if (owed_max > 2 * chunk)
		fail_msg("the source owed %llu bytes at once, above the budget of %zu",
		    (unsigned long long)owed_max, 2 * chunk);
	if (kept_max <= 2 * chunk)
		fail_msg("the destination kept at most %llu bytes: the reads waited for it",
		    (unsigned long long)kept_max);
	if (both_max > 6 * chunk)
		fail_msg("the copy kept %llu bytes, above hold (%zu)", (unsigned long long)both_max, 6 * chunk);
	assert_int_equal(owed, 0);
	assert_int_equal(kept, 0);
	assert_int_equal(pread(k->fd, out, DISK, 0), (ssize_t)DISK);
	assert_memory_equal(out, pattern, DISK);
	free(out);
	disk_close(&k->d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_small_areas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_sizes_and_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_reads_on_while_the_destination_keeps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoints_flush_on_a_worker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_put_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_destination_checkpoints_at_the_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_written_image_leaves_the_page_cache, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
