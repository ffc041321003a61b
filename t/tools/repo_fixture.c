/* Writes a small backup repository through drivers/repo.h, and beside it
 * the disk images its points must give back, for the independent reader
 * (t/tools/repo_read.py) to be checked against: test_repo_read.sh.
 *
 *   repo_fixture DIR    makes DIR/repo and DIR/want-<seq>-<disk>.raw
 *
 * Rule "r1", VM "web 01 ü" (a name with a space and UTF-8):
 *   point 1, full: disk 0 of 5 chunks and 1000 bytes (random, text,
 *            zeros, random, text, a short random one), disk 1 of 3 MiB +
 *            7 bytes (one short text chunk);
 *   point 2, incremental on 1: chunks 1 and 3 of disk 0 changed, chunk 2
 *            no longer zeros; disk 1 as before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "engine/core/util.h"
#include "t/tools/tfill.h"

#define CH REPO_CHUNK_SIZE
#define RULE "r1"
#define VM "web 01 \xc3\xbc"

static void
die(const char *what, char *err)
{
	fprintf(stderr, "repo_fixture: %s: %s\n", what, err);
	exit(1);
}

struct disk {
	uint64_t capacity;
	uint8_t *bytes;
	uint8_t (*ids)[REPO_ID_LEN];
};

static void
disk_store(struct repo *r, struct disk *d)
{
	uint64_t i;
	char *err = NULL;

	for (i = 0; i < repo_disk_chunks(d->capacity); i++) {
		uint64_t stored;

		if (repo_chunk_put(r, d->bytes + i * CH, repo_chunk_len(d->capacity, i), d->ids[i], &stored, &err) != 0)
			die("put", err);
	}
}

static void
disk_init(struct disk *d, uint64_t capacity)
{
	d->capacity = capacity;
	d->bytes = xcalloc(1, capacity);
	d->ids = xcalloc(repo_disk_chunks(capacity), REPO_ID_LEN);
}

static void
want(const char *dir, uint64_t seq, int n, const struct disk *d)
{
	char *path = xasprintf("%s/want-%llu-%d.raw", dir, (unsigned long long)seq, n);
	FILE *f = fopen(path, "wb");

	if (f == NULL || fwrite(d->bytes, 1, d->capacity, f) != d->capacity || fclose(f) != 0)
		die(path, "cannot write");
	free(path);
}

static void
point(struct repo *r, const char *dir, uint64_t seq, enum repo_mode mode, uint64_t parent, struct disk *d, int n)
{
	struct repo_point p = { RULE, VM, seq, mode, parent, 1700000000 + (int64_t)seq * 100, 0, 0, 0,
		"{\"name\":\"web 01 \xc3\xbc\",\"disks\":[{\"key\":2000},{\"key\":2001}]}", 0, NULL };
	struct repo_writer *w;
	char *err = NULL;
	int i;

	if (repo_point_begin(r, &p, &w, &err) != 0)
		die("begin", err);
	for (i = 0; i < n; i++) {
		struct repo_disk rd = { 2000 + i, d[i].capacity, "52 de ad/3", "[LocalDS_0] web 01/web 01.vmdk",
			repo_disk_chunks(d[i].capacity), (const uint8_t(*)[REPO_ID_LEN])d[i].ids, { 0 } };

		disk_store(r, &d[i]);
		if (repo_point_put_index(w, &rd, &err) != 0)
			die("index", err);
		want(dir, seq, i, &d[i]);
	}
	if (repo_point_commit(w, p.start + 50, 1, 2, &err) != 0)
		die("commit", err);
}

int
main(int argc, char **argv)
{
	struct disk d[2];
	struct repo *r;
	char *rdir, *err = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: repo_fixture DIR\n");
		return 2;
	}
	rdir = xasprintf("%s/repo", argv[1]);
	if (repo_open(rdir, NULL, &r, &err) != 0)
		die("open", err);
	disk_init(&d[0], 5 * (uint64_t)CH + 1000);
	fill_random(d[0].bytes, CH, 1);
	fill_text(d[0].bytes + CH, CH, 1);
	fill_random(d[0].bytes + 3 * (uint64_t)CH, CH, 3);
	fill_text(d[0].bytes + 4 * (uint64_t)CH, CH, 4);
	fill_random(d[0].bytes + 5 * (uint64_t)CH, 1000, 5);
	disk_init(&d[1], 3 * 1024 * 1024 + 7);
	fill_text(d[1].bytes, d[1].capacity, 9);
	point(r, argv[1], 1, REPO_FULL, 0, d, 2);

	fill_text(d[0].bytes + CH, CH, 11);
	fill_text(d[0].bytes + 2 * (uint64_t)CH + 4096, 512, 12);
	fill_random(d[0].bytes + 3 * (uint64_t)CH + 100, 5000, 13);
	point(r, argv[1], 2, REPO_INCREMENTAL, 1, d, 2);

	repo_close(r);
	free(d[0].bytes);
	free(d[0].ids);
	free(d[1].bytes);
	free(d[1].ids);
	free(rdir);
	return 0;
}
