/* The disk copier: every area reaches the destination, whatever the
 * number of chunks in flight, the chunk size and the resume offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "drivers/vsops.h"
#include "engine/copy.h"
#include "engine/loop.h"
#include "engine/util.h"

#define DISK (3u * 1024 * 1024 + 12345)

static char dir[64];
static uint8_t *pattern;
static enum xfer_status result;
static int finished;
static uint64_t last_checkpoint;

static void
progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
	assert_true(checkpoint >= last_checkpoint);
	last_checkpoint = checkpoint;
}

static void
done(void *arg, enum xfer_status st, const char *err)
{
	result = st;
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

/* A request of the fake transports below: its outcome is delivered from
 * the loop after a delay, as the real transports do. */
struct fake_io {
	struct event *ev;
	enum xfer_status st;
	xfer_cb cb;
	void *arg;
};

static void
fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct fake_io *io = arg;

	event_free(io->ev);
	io->cb(io->arg, io->st, io->st == XFER_OK ? NULL : "disk0.img: No space left on device");
	free(io);
}

static struct disk_io *
fake_deliver(enum xfer_status st, long delay_us, xfer_cb cb, void *arg)
{
	struct fake_io *io = xcalloc(1, sizeof(*io));
	struct timeval tv = { 0, delay_us };

	io->st = st;
	io->cb = cb;
	io->arg = arg;
	io->ev = evtimer_new(loop_base(), fake_fire, io);
	evtimer_add(io->ev, &tv);
	return (struct disk_io *)io;
}

static void
fake_cancel(struct disk_io *io)
{
	struct fake_io *f = (struct fake_io *)io;

	event_free(f->ev);
	free(f);
}

/* A source whose reads complete after a delay that shrinks with the
 * offset, so later chunks finish before earlier ones (as over HTTPS). */
static struct disk_io *
slow_read(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	memcpy(buf, pattern + off, len);
	return fake_deliver(XFER_OK, (long)((DISK - off) / 2048), cb, arg);
}

static void
slow_close(struct disk *d)
{
	free(d);
}

static const struct disk_ops slow_ops = { "slow", slow_read, NULL, fake_cancel, NULL, slow_close };

static int use_slow;

/* One copy from the source (slow or direct, as use_slow says) into dst;
 * returns how it ended.  checkpoint_s 0: the copier's default. */
static enum xfer_status
copy_once(struct disk *dst, const struct vs_extent *areas, size_t n, uint64_t resume, size_t chunk, int inflight,
    double checkpoint_s)
{
	struct copy_params p;
	struct disk *src;
	char *err = NULL;

	if (use_slow) {
		src = xcalloc(1, sizeof(*src));
		src->ops = &slow_ops;
		src->size = DISK;
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
	p.checkpoint_s = checkpoint_s;
	p.progress = progress;
	p.done = done;
	finished = 0;
	last_checkpoint = resume;
	copy_start(&p);
	event_base_dispatch(loop_base());
	assert_true(finished);
	disk_close(src);
	return result;
}

/* Copy the areas into a fresh sparse file and check byte by byte. */
static void
run_copy(const struct vs_extent *areas, size_t n, size_t chunk, int inflight, uint64_t resume)
{
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
	assert_int_equal(copy_once(dst, areas, n, resume, chunk, inflight, 0), XFER_OK);
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
	for (use_slow = 0; use_slow < 2; use_slow++) {
		run_copy(a, 23, 4u << 20, 2, 0);
		run_copy(a, 23, 4096, 7, 0);
		run_copy(a, 23, 65536, 1, 0);
	}
}

static void
test_odd_sizes_and_resume(void **state)
{
	struct vs_extent a[3] = { { 0, 1000001 }, { 1500000, 7 }, { 2000000, DISK - 2000000 } };

	for (use_slow = 0; use_slow < 2; use_slow++) {
		run_copy(a, 3, 65536 + 13, 4, 0);
		run_copy(a, 3, 1u << 20, 3, 1200000);
		run_copy(a, 3, 333333, 2, 2000001);
	}
}

/* A destination that runs out of space: writes that would end above
 * `room` fail (transient, as ENOSPC on temp_dir), delivered from the loop
 * like the direct transport's.  Everything else lands in memory. */
struct full_disk {
	struct disk base;
	uint8_t *data;
	uint64_t room;
	int flushes;
};

static struct disk_io *
full_write(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	struct full_disk *f = (struct full_disk *)d;

	if (off + len > f->room)
		return fake_deliver(XFER_TRANSIENT, 0, cb, arg);
	memcpy(f->data + off, buf, len);
	return fake_deliver(XFER_OK, 0, cb, arg);
}

static int
full_flush(struct disk *d)
{
	((struct full_disk *)d)->flushes++;
	return 0;
}

static void
full_close(struct disk *d)
{
}

static const struct disk_ops full_ops = { "full", NULL, full_write, fake_cancel, full_flush, full_close };

/* The destination fills up in the middle: the copy ends transient with a
 * checkpoint as far as everything below it is written and flushed (not
 * the last periodic one), and a second run from that checkpoint, after
 * space was freed, completes the disk byte for byte. */
static void
test_full_destination_checkpoints_at_the_failure(void **state)
{
	struct vs_extent a[2] = { { 0, 1500000 }, { 1600000, DISK - 1600000 } };
	struct full_disk f;
	uint64_t first;
	size_t i;

	for (use_slow = 0; use_slow < 2; use_slow++) {
		memset(&f, 0, sizeof(f));
		f.base.ops = &full_ops;
		f.base.size = DISK;
		f.data = xcalloc(1, DISK);
		f.room = 2000000;
		/* No periodic checkpoint: only the one at the failure. */
		assert_int_equal(copy_once(&f.base, a, 2, 0, 65536 + 7, 5, 3600), XFER_TRANSIENT);
		first = last_checkpoint;
		assert_true(first <= f.room);
		/* In order, everything up to the chunk that hit the limit is kept. */
		if (!use_slow)
			assert_true(first > f.room - 6 * (65536 + 7));
		assert_true(first == 0 || f.flushes > 0);
		for (i = 0; i < first; i++)
			if ((i < 1500000 || i >= 1600000) && f.data[i] != pattern[i])
				fail_msg("byte %zu below the checkpoint %llu was not written", i, (unsigned long long)first);
		f.room = DISK;
		assert_int_equal(copy_once(&f.base, a, 2, first, 65536 + 7, 5, 3600), XFER_OK);
		for (i = 0; i < DISK; i++)
			if (f.data[i] != ((i < 1500000 || i >= 1600000) ? pattern[i] : 0))
				fail_msg("byte %zu differs after the resumed copy", i);
		free(f.data);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_small_areas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_sizes_and_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_destination_checkpoints_at_the_failure, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
