/* The repository sink of a backup (engine/jobs/backup_sink.c): writes of
 * any size and alignment, in any order, straddling chunks, become whole
 * chunks filed on the worker pool; a chunk the areas touch only in part
 * takes its other bytes from the parent's chunk (an incremental) or is
 * zeros (a full); chunks stored before (a resumed pass) are not written
 * again; a flush is done once every chunk of the writes reported before
 * it is stored, and the partial index then holds their ids; a chunk that
 * cannot be stored after its writes were reported fails the flush with
 * its reason.  The image the index describes is read back through the
 * repository and compared with the image the writes make. */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
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

#include "drivers/repo.h"
#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/core/loop.h"
#include "engine/core/workers.h"
#include "engine/jobs/backup_sink.h"

#define MiB (1024u * 1024u)
#define CAP (10 * MiB + 12345)

static char dir[64];
static struct repo *repo;
static uint64_t seed = 88172645463325252ull;

static uint64_t
rnd(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return seed;
}

static void
fill(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static int
setup(void **unused)
{
	char *err = NULL, rdir[80];

	strcpy(dir, "/tmp/vmferry-sink.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(rdir, sizeof(rdir), "%s/repo", dir);
	if (repo_open(rdir, NULL, &repo, &err) != 0)
		fail_msg("repo_open: %s", err);
	loop_init();
	workers_init(loop_base(), 2);
	return 0;
}

static int
teardown(void **unused)
{
	char cmd[128];

	workers_free();
	repo_close(repo);
	loop_free();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* The ids of every chunk of an image, filed now. */
static uint8_t (*file_image(const uint8_t *img))[REPO_ID_LEN]
{
	uint64_t n = repo_disk_chunks(CAP), i, grown;
	uint8_t(*ids)[REPO_ID_LEN] = calloc(n, REPO_ID_LEN);
	char *err = NULL;

	for (i = 0; i < n; i++)
		if (repo_chunk_put(repo, img + i * REPO_CHUNK_SIZE, repo_chunk_len(CAP, i), ids[i], &grown, &err) != 0)
			fail_msg("repo_chunk_put: %s", err);
	return ids;
}

struct wstate {
	int outstanding;
	int failed;
};

static void
written(void *arg, enum xfer_status st, const char *error)
{
	struct wstate *w = arg;

	if (st != XFER_OK)
		w->failed++;
	w->outstanding--;
}

static void
keep_alive(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("the writes were not done within 60 s");
}

/* Runs the loop until *outstanding is 0.  The daemon's loop always has
 * events (its socket, signals); here a far timer keeps it waiting. */
static void
loop_until_zero(const int *outstanding)
{
	struct event *keep = evtimer_new(loop_base(), keep_alive, NULL);
	struct timeval tv = { 60, 0 };

	evtimer_add(keep, &tv);
	while (*outstanding > 0)
		event_base_loop(loop_base(), EVLOOP_ONCE);
	event_free(keep);
}

struct fstate {
	int outstanding;
	enum xfer_status st;
	char err[256];
};

static void
flushed(void *arg, enum xfer_status st, const char *error)
{
	struct fstate *f = arg;

	f->outstanding = 0;
	f->st = st;
	snprintf(f->err, sizeof(f->err), "%s", error != NULL ? error : "");
}

/* The sink's flush as the copier makes it (on a device thread), waited
 * for: its status, and its error in err. */
static enum xfer_status
flush_wait(struct disk *d, char *err, size_t errlen)
{
	struct fstate f = { 1, XFER_OK, "" };

	assert_non_null(d->ops->flush_bg(d, flushed, &f));
	loop_until_zero(&f.outstanding);
	snprintf(err, errlen, "%s", f.err);
	return f.st;
}

/* Writes the areas of given (img, or what a chunk stored before is not
 * read from) into a sink in pieces of up to 300 KiB (or the pieces
 * fixed), in a shuffled order, then reads the image back through the
 * index.  take: in the sink's own buffers, handed over as the copier
 * does (disk_buf_alloc, disk_write_buf). */
static void
run_pieces(const uint8_t *img, const uint8_t *given, const struct vs_extent *areas, size_t nareas,
    const uint8_t (*base)[REPO_ID_LEN], const uint8_t *done, const uint8_t (*base_or_zero)[REPO_ID_LEN], uint64_t *stored,
    const struct vs_extent *fixed, size_t nfixed, int take)
{
	struct bak_sink_params sp;
	struct wstate w = { 0, 0 };
	struct {
		uint64_t off;
		size_t len;
	} piece[512];
	size_t np = 0, i, k;
	struct disk *d;
	struct bak_ids ids;
	char path[96], *err = NULL, ferr[256];
	uint8_t *back = malloc(CAP);

	snprintf(path, sizeof(path), "%s/disk0.ids", dir);
	unlink(path);
	if (bak_ids_load(path, 7, 1, CAP, &ids, &err) != 0)
		fail_msg("bak_ids_load: %s", err);
	bak_ids_free(&ids);
	for (i = 0; i < nfixed; i++) {
		piece[np].off = fixed[i].start;
		piece[np].len = (size_t)fixed[i].length;
		np++;
	}
	for (i = 0; fixed == NULL && i < nareas; i++) {
		uint64_t at = areas[i].start, end = areas[i].start + areas[i].length;

		while (at < end) {
			size_t len = 1 + (size_t)(rnd() % (300 * 1024));

			if (len > end - at)
				len = (size_t)(end - at);
			assert_true(np < 512);
			piece[np].off = at;
			piece[np].len = len;
			np++;
			at += len;
		}
	}
	for (i = np; i > 1; i--) {
		size_t j = (size_t)(rnd() % i);
		uint64_t o = piece[i - 1].off;
		size_t l = piece[i - 1].len;

		piece[i - 1] = piece[j];
		piece[j].off = o;
		piece[j].len = l;
	}
	memset(&sp, 0, sizeof(sp));
	sp.repo = repo;
	sp.capacity = CAP;
	sp.areas = areas;
	sp.nareas = nareas;
	sp.base = base;
	sp.done = done;
	sp.ids_path = path;
	sp.stored = stored;
	d = bak_sink_open(&sp, &err);
	assert_non_null(d);
	for (i = 0; i < np; i++) {
		void *copy = take ? disk_buf_alloc(d, piece[i].len) : malloc(piece[i].len);

		/* The copier frees its buffer once the write returns (when the
		 * sink did not take it). */
		memcpy(copy, given + piece[i].off, piece[i].len);
		w.outstanding++;
		if (take) {
			assert_non_null(disk_write_buf(d, piece[i].off, piece[i].len, &copy, written, &w));
			disk_buf_free(d, copy);
		} else {
			assert_non_null(disk_write(d, piece[i].off, piece[i].len, copy, written, &w));
			free(copy);
		}
	}
	loop_until_zero(&w.outstanding);
	assert_int_equal(w.failed, 0);
	if (flush_wait(d, ferr, sizeof(ferr)) != XFER_OK)
		fail_msg("flush: %s", ferr);
	disk_close(d);

	/* Every write is done: the index names every chunk the areas touch. */
	if (bak_ids_load(path, 7, 1, CAP, &ids, &err) != 0)
		fail_msg("bak_ids_load: %s", err);
	for (k = 0; k < ids.nchunks; k++) {
		const uint8_t *id = ids.set[k] ? ids.ids[k] : base_or_zero[k];

		if (repo_chunk_get(repo, id, back + k * REPO_CHUNK_SIZE, repo_chunk_len(CAP, k), &err) != 0)
			fail_msg("chunk %llu: %s", (unsigned long long)k, err);
	}
	for (k = 0; k < ids.nchunks; k++)
		if (memcmp(back + k * REPO_CHUNK_SIZE, img + k * REPO_CHUNK_SIZE, repo_chunk_len(CAP, k)) != 0)
			fail_msg("chunk %llu does not hold the image's bytes", (unsigned long long)k);
	bak_ids_free(&ids);
	free(back);
}

static void
run(const uint8_t *img, const uint8_t *given, const struct vs_extent *areas, size_t nareas, const uint8_t (*base)[REPO_ID_LEN],
    const uint8_t *done, const uint8_t (*base_or_zero)[REPO_ID_LEN], uint64_t *stored)
{
	run_pieces(img, given, areas, nareas, base, done, base_or_zero, stored, NULL, 0, 0);
}

static const struct vs_extent areas[] = {
	{ 1000, 5000 },                  /* inside chunk 0 */
	{ 4 * MiB - 100, 300 },          /* across chunks 0 and 1 */
	{ 5 * MiB, 3 * MiB + 7 },        /* chunk 1 into 2 */
	{ 10 * MiB + 10000, 2345 },      /* the short last chunk, not to its end */
};

/* An incremental: the areas changed since the parent; the rest of each
 * chunk is the parent's. */
static void
test_incremental_completes_from_parent(void **unused)
{
	uint8_t *parent = malloc(CAP), *img = malloc(CAP);
	uint8_t(*pids)[REPO_ID_LEN];
	uint64_t stored = 0;
	size_t i;

	fill(parent, CAP);
	pids = file_image(parent);
	memcpy(img, parent, CAP);
	for (i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
		fill(img + areas[i].start, (size_t)areas[i].length);
	run(img, img, areas, 4, (const uint8_t(*)[REPO_ID_LEN])pids, NULL, (const uint8_t(*)[REPO_ID_LEN])pids,
	    &stored);
	/* Chunks 0, 1, 2 and the last changed: each stored once, new. */
	assert_true(stored > 0);
	free(pids);
	free(parent);
	free(img);
}

/* A full with fast_transfer: the areas are the allocated ones; the rest
 * is zeros. */
static void
test_full_zeros_elsewhere(void **unused)
{
	uint8_t *img = calloc(1, CAP);
	uint8_t(*zero)[REPO_ID_LEN] = calloc(repo_disk_chunks(CAP), REPO_ID_LEN);
	uint64_t stored = 0;
	size_t i;

	for (i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
		fill(img + areas[i].start, (size_t)areas[i].length);
	run(img, img, areas, 4, NULL, NULL, (const uint8_t(*)[REPO_ID_LEN])zero, &stored);
	free(zero);
	free(img);
}

/* A resumed pass: a chunk stored before (its id already in the index)
 * is not written again: the bytes given for it now are not used. */
static void
test_done_chunks_skipped(void **unused)
{
	uint8_t *parent = malloc(CAP), *img = malloc(CAP), *given = malloc(CAP);
	uint8_t(*pids)[REPO_ID_LEN], (*iids)[REPO_ID_LEN], (*expect)[REPO_ID_LEN];
	uint8_t done[3] = { 0, 1, 0 };
	uint64_t stored = 0;
	size_t i;

	fill(parent, CAP);
	pids = file_image(parent);
	memcpy(img, parent, CAP);
	for (i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
		fill(img + areas[i].start, (size_t)areas[i].length);
	iids = file_image(img);
	/* Chunk 1 was stored before the restart: the index has its id. */
	expect = calloc(3, REPO_ID_LEN);
	memcpy(expect, pids, 3 * REPO_ID_LEN);
	memcpy(expect[1], iids[1], REPO_ID_LEN);
	memcpy(given, img, CAP);
	fill(given + 4 * MiB, 4 * MiB);
	run(img, given, areas, 4, (const uint8_t(*)[REPO_ID_LEN])pids, done, (const uint8_t(*)[REPO_ID_LEN])expect,
	    &stored);
	free(expect);
	free(iids);
	free(pids);
	free(parent);
	free(img);
	free(given);
}

/* A full read in the sink's own buffers: one that is exactly a chunk
 * becomes it (no copy); one that only ends with a whole chunk (the
 * short last one, from 100 bytes before it) is copied, its bytes taken
 * from where they lie in the buffer. */
static void
test_full_buffers_taken(void **unused)
{
	static const struct vs_extent whole[] = { { 0, CAP } };
	static const struct vs_extent pieces[] = {
		{ 0, 4 * MiB }, { 4 * MiB, 4 * MiB - 100 }, { 8 * MiB - 100, CAP - (8 * MiB - 100) },
	};
	uint8_t *img = malloc(CAP), ids[3][REPO_ID_LEN];
	uint64_t stored = 0, k;

	fill(img, CAP);
	for (k = 0; k < 3; k++)
		repo_chunk_id(repo, img + k * REPO_CHUNK_SIZE, repo_chunk_len(CAP, k), ids[k]);
	run_pieces(img, img, whole, 1, NULL, NULL, (const uint8_t(*)[REPO_ID_LEN])ids, &stored, pieces, 3, 1);
	/* Three new chunk files, plain (random bytes): 16-byte heads. */
	assert_int_equal(stored, CAP + 3 * 16);
	free(img);
}

/* A chunk whose write was reported when it was sealed, and that then
 * cannot be filed (its directory in chunks/ is gone): the flush fails
 * with the reason, no chunk is recorded, later writes and an inline
 * flush are refused. */
static void
test_late_failure_fails_flush(void **unused)
{
	static const struct vs_extent whole[] = { { 0, CAP } };
	struct bak_sink_params sp;
	struct wstate w = { 0, 0 };
	uint8_t *img = malloc(CAP), id[REPO_ID_LEN];
	char path[96], sub[128], ferr[256], *err = NULL;
	struct bak_ids ids;
	struct disk *d;
	void *buf;

	fill(img, CAP);
	repo_chunk_id(repo, img, REPO_CHUNK_SIZE, id);
	snprintf(sub, sizeof(sub), "%s/repo/chunks/%02x", dir, id[0]);
	assert_int_equal(rmdir(sub), 0);
	snprintf(path, sizeof(path), "%s/disk0.ids", dir);
	if (bak_ids_load(path, 7, 1, CAP, &ids, &err) != 0)
		fail_msg("bak_ids_load: %s", err);
	bak_ids_free(&ids);
	memset(&sp, 0, sizeof(sp));
	sp.repo = repo;
	sp.capacity = CAP;
	sp.areas = whole;
	sp.nareas = 1;
	sp.ids_path = path;
	d = bak_sink_open(&sp, &err);
	assert_non_null(d);
	buf = disk_buf_alloc(d, REPO_CHUNK_SIZE);
	memcpy(buf, img, REPO_CHUNK_SIZE);
	w.outstanding = 1;
	assert_non_null(disk_write_buf(d, 0, REPO_CHUNK_SIZE, &buf, written, &w));
	disk_buf_free(d, buf);
	loop_until_zero(&w.outstanding);
	/* Reported when sealed: the device's part had not failed yet. */
	assert_int_equal(w.failed, 0);
	assert_int_equal(flush_wait(d, ferr, sizeof(ferr)), XFER_FATAL);
	if (strstr(ferr, sub + strlen(dir) + strlen("/repo/")) == NULL)
		fail_msg("the flush's error does not name the chunk's path: %s", ferr);
	assert_int_equal(d->ops->flush(d), -1);
	buf = disk_buf_alloc(d, REPO_CHUNK_SIZE);
	memcpy(buf, img + REPO_CHUNK_SIZE, REPO_CHUNK_SIZE);
	w.outstanding = 1;
	assert_non_null(disk_write_buf(d, REPO_CHUNK_SIZE, REPO_CHUNK_SIZE, &buf, written, &w));
	disk_buf_free(d, buf);
	loop_until_zero(&w.outstanding);
	assert_int_equal(w.failed, 1);
	disk_close(d);
	if (bak_ids_load(path, 7, 1, CAP, &ids, &err) != 0)
		fail_msg("bak_ids_load: %s", err);
	assert_int_equal(ids.set[0], 0);
	assert_int_equal(ids.set[1], 0);
	bak_ids_free(&ids);
	free(img);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_incremental_completes_from_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_zeros_elsewhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_chunks_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_buffers_taken, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_failure_fails_flush, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
