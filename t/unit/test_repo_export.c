/* Unit tests for drivers/repo_export.c: one disk of a point served
 * read-only with a chunk cache (instant recovery, SPEC §11).  A point is
 * written through drivers/repo.h into a fresh repository (plain, then
 * encrypted); reads at every kind of offset are checked against the bytes
 * written, and the repository's files against what they were before. */
#define _GNU_SOURCE
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "drivers/repo.h"
#include "drivers/repo_export.h"
#include "engine/core/util.h"
#include "t/tools/tfill.h"

#define CH REPO_CHUNK_SIZE
/* 3 chunks and 1000 bytes: random, zeros, text, a short random one. */
#define CAP (3ull * CH + 1000)

static char dir[] = "/tmp/vmferry-test-rx.XXXXXX";
static char *rdir, *keyf;
static uint8_t *bytes;

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* A repository with point r1/vm1/1 of two disks: disk 0 as above, disk 1
 * of one short chunk. */
static void
make_repo(int encrypted)
{
	uint8_t ids[4][REPO_ID_LEN], id1[1][REPO_ID_LEN];
	struct repo_point p = { "r1", "vm1", 1, REPO_FULL, 0, 1700000000, 0, 0, 0, NULL, 0, NULL };
	struct repo_writer *w;
	struct repo *r;
	char *err = NULL;
	uint64_t stored, i;
	FILE *f;

	strcpy(dir, "/tmp/vmferry-test-rx.XXXXXX");
	assert_non_null(mkdtemp(dir));
	rdir = xasprintf("%s/repo", dir);
	keyf = NULL;
	if (encrypted) {
		keyf = xasprintf("%s/key", dir);
		assert_non_null(f = fopen(keyf, "w"));
		fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", f);
		fclose(f);
	}
	if (repo_open(rdir, keyf, &r, &err) != 0)
		fail_msg("open: %s", err);
	bytes = xcalloc(1, CAP);
	fill_random(bytes, CH, 1);
	fill_text(bytes + 2 * CH, CH, 2);
	fill_random(bytes + 3 * CH, 1000, 3);
	for (i = 0; i < 4; i++)
		if (repo_chunk_put(r, bytes + i * CH, repo_chunk_len(CAP, i), ids[i], &stored, &err) != 0)
			fail_msg("put: %s", err);
	if (repo_chunk_put(r, bytes + 5, 4097, id1[0], &stored, &err) != 0)
		fail_msg("put: %s", err);
	if (repo_point_begin(r, &p, &w, &err) != 0)
		fail_msg("begin: %s", err);
	{
		struct repo_disk d0 = { 2000, CAP, NULL, NULL, 4, (const uint8_t(*)[REPO_ID_LEN])ids, { 0 } };
		struct repo_disk d1 = { 2001, 4097, NULL, NULL, 1, (const uint8_t(*)[REPO_ID_LEN])id1, { 0 } };

		if (repo_point_put_index(w, &d0, &err) != 0 || repo_point_put_index(w, &d1, &err) != 0)
			fail_msg("index: %s", err);
	}
	if (repo_point_commit(w, 1700000100, 0, 0, &err) != 0)
		fail_msg("commit: %s", err);
	repo_close(r);
}

static int
teardown(void **state)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(rdir);
	free(keyf);
	free(bytes);
	return 0;
}

static void
conf_for(struct repo_export_conf *c, const char *disk, const char *cache)
{
	char *err = NULL;

	repo_export_conf_init(c);
	assert_int_equal(repo_export_conf_set(c, "repo", rdir, &err), 0);
	if (keyf != NULL)
		assert_int_equal(repo_export_conf_set(c, "key_file", keyf, &err), 0);
	assert_int_equal(repo_export_conf_set(c, "rule", "r1", &err), 0);
	assert_int_equal(repo_export_conf_set(c, "vm", "vm1", &err), 0);
	assert_int_equal(repo_export_conf_set(c, "point", "1", &err), 0);
	assert_int_equal(repo_export_conf_set(c, "disk", disk, &err), 0);
	if (cache != NULL)
		assert_int_equal(repo_export_conf_set(c, "cache", cache, &err), 0);
	assert_int_equal(repo_export_conf_check(c, &err), 0);
}

/* The repository's files and their sizes and times, as one string. */
static char *
listing(void)
{
	char *cmd = xasprintf("cd %s && find . -printf '%%p %%s %%T@ %%m\\n' | sort", rdir), buf[4096];
	struct sbuf b;
	FILE *f = popen(cmd, "r");
	size_t n;

	sbuf_init(&b);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sbuf_add(&b, buf, n);
	pclose(f);
	free(cmd);
	return sbuf_steal(&b);
}

static void
reads_right(int encrypted)
{
	static const struct {
		uint64_t off;
		size_t len;
	} cases[] = {
		{ 0, 512 }, { CH - 100, 300 }, { CH, CH }, { CH - 1, 2 * CH + 2 }, { 3 * CH, 1000 }, { CAP - 1, 1 },
		{ 0, CAP }, { 2 * CH + 17, 4096 }, { 0, 0 },
	};
	struct repo_export_conf c;
	struct repo_export *x;
	char *err = NULL, *before, *after;
	uint8_t *buf = xmalloc(CAP);
	uint64_t hits, misses;
	size_t i;

	make_repo(encrypted);
	before = listing();
	conf_for(&c, "0", "2");
	if (repo_export_open(&c, &x, &err) != 0)
		fail_msg("open: %s", err);
	assert_int_equal(repo_export_size(x), CAP);
	assert_false(repo_export_chunk_zero(x, 0));
	assert_true(repo_export_chunk_zero(x, 1));
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		memset(buf, 0xee, CAP);
		if (repo_export_read(x, buf, cases[i].len, cases[i].off, &err) != 0)
			fail_msg("read %zu: %s", i, err);
		if (cases[i].len > 0)
			assert_memory_equal(buf, bytes + cases[i].off, cases[i].len);
	}
	repo_export_stats(x, &hits, &misses);
	/* Two slots for three stored chunks: some reads missed, some hit. */
	assert_true(hits > 0);
	assert_true(misses >= 3);
	/* Beyond the end. */
	assert_int_equal(repo_export_read(x, buf, 2, CAP - 1, &err), -1);
	assert_non_null(strstr(err, "beyond the disk"));
	free(err);
	repo_export_close(x);
	repo_export_conf_free(&c);

	conf_for(&c, "1", NULL);
	if (repo_export_open(&c, &x, &err) != 0)
		fail_msg("open disk 1: %s", err);
	assert_int_equal(repo_export_size(x), 4097);
	assert_int_equal(repo_export_read(x, buf, 4097, 0, &err), 0);
	assert_memory_equal(buf, bytes + 5, 4097);
	repo_export_close(x);
	repo_export_conf_free(&c);

	conf_for(&c, "2", NULL);
	assert_int_equal(repo_export_open(&c, &x, &err), -1);
	assert_non_null(strstr(err, "has 2 disks: no disk 2"));
	free(err);
	repo_export_conf_free(&c);

	/* Nothing in the repository changed: no file, size, time or mode. */
	after = listing();
	assert_string_equal(before, after);
	free(before);
	free(after);
	free(buf);
}

static void
test_reads_plain(void **state)
{
	reads_right(0);
}

static void
test_reads_encrypted(void **state)
{
	reads_right(1);
}

/* A damaged chunk is an error naming it, not wrong bytes. */
static void
test_damaged_chunk(void **state)
{
	struct repo_export_conf c;
	struct repo_export *x;
	char *err = NULL, *cmd;
	uint8_t buf[16];

	make_repo(0);
	cmd = xasprintf("for g in $(find %s/chunks -type f); do printf 'XXXX' | dd of=$g bs=1 seek=20 conv=notrunc "
	                "status=none; done", rdir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	conf_for(&c, "0", NULL);
	assert_int_equal(repo_export_open(&c, &x, &err), 0);
	assert_int_equal(repo_export_read(x, buf, sizeof(buf), 0, &err), -1);
	assert_non_null(strstr(err, "damaged"));
	free(err);
	repo_export_close(x);
	repo_export_conf_free(&c);
}

/* Opening never makes a repository. */
static void
test_no_repository(void **state)
{
	struct repo_export_conf c;
	struct repo_export *x;
	char *err = NULL, *missing;
	struct stat st;

	make_repo(0);
	conf_for(&c, "0", NULL);
	missing = xasprintf("%s/none", dir);
	free(c.repo);
	c.repo = xstrdup(missing);
	assert_int_equal(repo_export_open(&c, &x, &err), -1);
	assert_non_null(strstr(err, "none"));
	assert_int_not_equal(stat(missing, &st), 0);
	free(err);
	free(missing);
	repo_export_conf_free(&c);
}

static void
test_conf(void **state)
{
	struct repo_export_conf c;
	char *err = NULL;

	repo_export_conf_init(&c);
	assert_int_equal(repo_export_conf_check(&c, &err), -1);
	assert_string_equal(err, "repo= is required");
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "point", "0", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "point", "07", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "point", "18446744073709551616", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "point", "18446744073709551615", &err), 0);
	assert_int_equal(repo_export_conf_set(&c, "point", "3", &err), -1);
	assert_string_equal(err, "point= given twice");
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "disk", "1024", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "disk", "0", &err), 0);
	assert_int_equal(repo_export_conf_set(&c, "cache", "257", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "vm", "../x", &err), -1);
	free(err);
	assert_int_equal(repo_export_conf_set(&c, "size", "1", &err), -1);
	assert_non_null(strstr(err, "unknown parameter"));
	free(err);
	repo_export_conf_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_reads_plain, teardown),
		cmocka_unit_test_teardown(test_reads_encrypted, teardown),
		cmocka_unit_test_teardown(test_damaged_chunk, teardown),
		cmocka_unit_test_teardown(test_no_repository, teardown),
		cmocka_unit_test(test_conf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
