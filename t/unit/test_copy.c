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

/* A source whose reads complete after a delay that shrinks with the
 * offset, so later chunks finish before earlier ones (as over HTTPS). */
struct slow_io {
	struct event *ev;
	xfer_cb cb;
	void *arg;
};

static void
slow_fire(evutil_socket_t fd, short what, void *arg)
{
	struct slow_io *io = arg;

	event_free(io->ev);
	io->cb(io->arg, XFER_OK, NULL);
	free(io);
}

static struct disk_io *
slow_read(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	struct slow_io *io = xcalloc(1, sizeof(*io));
	struct timeval tv = { 0, (long)((DISK - off) / 2048) };

	memcpy(buf, pattern + off, len);
	io->cb = cb;
	io->arg = arg;
	io->ev = evtimer_new(loop_base(), slow_fire, io);
	evtimer_add(io->ev, &tv);
	return (struct disk_io *)io;
}

static void
slow_cancel(struct disk_io *io)
{
	struct slow_io *s = (struct slow_io *)io;

	event_free(s->ev);
	free(s);
}

static void
slow_close(struct disk *d)
{
	free(d);
}

static const struct disk_ops slow_ops = { "slow", slow_read, NULL, slow_cancel, NULL, slow_close };

static int use_slow;

/* Copy the areas into a fresh sparse file and check byte by byte. */
static void
run_copy(const struct vs_extent *areas, size_t n, size_t chunk, int inflight, uint64_t resume)
{
	struct copy_params p;
	struct disk *src, *dst;
	char *err = NULL, path[128];
	int en;
	uint8_t *out = xmalloc(DISK);
	FILE *f;
	size_t i, k;

	snprintf(path, sizeof(path), "%s/dst", dir);
	unlink(path);
	if (use_slow) {
		src = xcalloc(1, sizeof(*src));
		src->ops = &slow_ops;
		src->size = DISK;
	} else {
		src = disk_open_direct(dir, "src", DISK, 0, &err);
	}
	assert_non_null(src);
	dst = disk_open_file(path, DISK, 1, &err, &en);
	assert_non_null(dst);
	memset(&p, 0, sizeof(p));
	p.src = src;
	p.dst = dst;
	p.areas = areas;
	p.nareas = n;
	p.resume = resume;
	p.chunk = chunk;
	p.inflight = inflight;
	p.progress = progress;
	p.done = done;
	finished = 0;
	last_checkpoint = resume;
	copy_start(&p);
	event_base_dispatch(loop_base());
	assert_true(finished);
	assert_int_equal(result, XFER_OK);
	disk_close(src);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_small_areas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_sizes_and_resume, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
