/* Unit tests for drivers/repo*.c: the backup repository (SPEC §10,
 * docs/REPOSITORY.md).  Each test gets a fresh repository in a mkdtemp
 * directory.  Where a test looks at the files themselves (chunk headers,
 * what an encrypted chunk holds, a byte flipped on disk) it reads them as
 * docs/REPOSITORY.md describes them, not through the library; the
 * independent reader, t/tools/repo_read.py, is run against a repository
 * of t/tools/repo_fixture.c by the test tools/repo_read. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "drivers/compress.h"
#include "drivers/crypto.h"
#include "drivers/repo.h"
#include "engine/core/util.h"
#include "t/tools/tfill.h"

#define CH REPO_CHUNK_SIZE

static char dir[64] = "/tmp/vmferry-test-repo.XXXXXX";
static char *rdir; /* the repository: dir/repo */
static const char *base; /* where path_of looks: rdir, or another repository */
static struct repo *repo;

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* A new repository in a new directory made from template. */
static int
setup_in(const char *template)
{
	char *err = NULL;

	base = NULL;
	snprintf(dir, sizeof(dir), "%s", template);
	if (mkdtemp(dir) == NULL)
		return -1;
	rdir = xasprintf("%s/repo", dir);
	if (repo_open(rdir, NULL, &repo, &err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
setup(void **state)
{
	return setup_in("/tmp/vmferry-test-repo.XXXXXX");
}

/* The same on tmpfs, where O_DIRECT depends on the kernel (refused
 * before Linux 6.6: chunk files then go through the page cache). */
static int
setup_tmpfs(void **state)
{
	return setup_in("/dev/shm/vmferry-test-repo.XXXXXX");
}

static int
teardown(void **state)
{
	repo_close(repo);
	repo = NULL;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(rdir);
	return 0;
}

/* ---- helpers ---- */

static char *
path_of(const char *fmt, ...)
{
	va_list ap;
	char *rel, *p;

	va_start(ap, fmt);
	rel = xvasprintf(fmt, ap);
	va_end(ap);
	p = xasprintf("%s/%s", base != NULL ? base : rdir, rel);
	free(rel);
	return p;
}

static char *
chunk_file(const uint8_t id[REPO_ID_LEN])
{
	char hex[65];

	repo_id_hex(id, hex);
	return path_of("chunks/%02x/%s", id[0], hex);
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static int
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int
count_cb_files;
static int
count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_F)
		count_cb_files++;
	return 0;
}

/* Files below rdir/rel. */
static int
count_files(const char *rel)
{
	char *p = path_of("%s", rel);

	count_cb_files = 0;
	nftw(p, count_one, 16, FTW_PHYS);
	free(p);
	return count_cb_files;
}

static void
flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* The time of everything below rdir/rel set back by secs: written long
 * before a gc. */
static int age_secs;
static int
age_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	struct timespec ts[2];

	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age_secs;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	utimensat(AT_FDCWD, path, ts, 0);
	return 0;
}

static void
age_files(const char *rel, int secs)
{
	char *p = path_of("%s", rel);

	age_secs = secs;
	nftw(p, age_one, 16, FTW_PHYS);
	free(p);
}

static void
put_ok(const void *buf, size_t len, uint8_t id[REPO_ID_LEN], uint64_t *stored)
{
	char *err = NULL;
	uint64_t st;

	if (repo_chunk_put(repo, buf, len, id, stored != NULL ? stored : &st, &err) != 0)
		fail_msg("put: %s", err);
}

/* Both ways of reading a chunk give its bytes: into the caller's buffer
 * (repo_chunk_get), and whole into memory of its own (repo_chunk_read). */
static void
get_equal(const uint8_t id[REPO_ID_LEN], const void *want, size_t len)
{
	uint8_t *buf = xmalloc(len);
	struct repo_chunk_mem m;
	char *err = NULL;

	if (repo_chunk_get(repo, id, buf, len, &err) != 0)
		fail_msg("get: %s", err);
	assert_memory_equal(buf, want, len);
	free(buf);
	if (repo_chunk_read(repo, id, len, &m, &err) != 0)
		fail_msg("read: %s", err);
	assert_memory_equal(m.plain, want, len);
	repo_chunk_mem_free(&m);
}

/* Both ways of reading chunk id fail, naming it, with an error that says
 * what (NULL: not checked); repo_chunk_read leaves nothing behind. */
static void
get_fails(const uint8_t id[REPO_ID_LEN], size_t len, const char *what)
{
	uint8_t *buf = xmalloc(CH);
	struct repo_chunk_mem m;
	char *err = NULL, hex[65];

	repo_id_hex(id, hex);
	assert_int_equal(repo_chunk_get(repo, id, buf, len, &err), -1);
	assert_true(len == 0 || len > CH || strstr(err, hex) != NULL);
	assert_true(what == NULL || strstr(err, what) != NULL);
	free(err);
	err = NULL;
	assert_int_equal(repo_chunk_read(repo, id, len, &m, &err), -1);
	assert_true(len == 0 || len > CH || strstr(err, hex) != NULL);
	assert_true(what == NULL || strstr(err, what) != NULL);
	assert_null(m.mem);
	assert_null(m.plain);
	free(err);
	free(buf);
}

/* A disk image of capacity bytes whose chunk i is random (i % 3 == 0),
 * text (1) or zeros (2); stored, with its ids. */
struct disk {
	uint64_t capacity;
	uint8_t *bytes;
	uint8_t (*ids)[REPO_ID_LEN];
};

static void
disk_make(struct disk *d, uint64_t capacity, int seed)
{
	uint64_t i, n = repo_disk_chunks(capacity);

	d->capacity = capacity;
	d->bytes = xcalloc(1, capacity);
	d->ids = xcalloc(n, REPO_ID_LEN);
	for (i = 0; i < n; i++) {
		uint8_t *p = d->bytes + i * CH;
		size_t len = repo_chunk_len(capacity, i);

		if ((i + (uint64_t)seed) % 3 == 0)
			fill_random(p, len, i * 7 + (uint64_t)seed);
		else if ((i + (uint64_t)seed) % 3 == 1)
			fill_text(p, len, (int)(i + (uint64_t)seed));
		put_ok(p, len, d->ids[i], NULL);
	}
}

static void
disk_free(struct disk *d)
{
	free(d->bytes);
	free(d->ids);
}

static void
point_write(const char *vm, uint64_t seq, enum repo_mode mode, uint64_t parent, const struct disk *disks, size_t n)
{
	struct repo_point p = { "r1", vm, seq, mode, parent, 1700000000 + (int64_t)seq, 0, 0, 0,
		"{\"name\":\"web01\",\"cpus\":2,\"disks\":[{\"key\":2000}]}", 0, NULL };
	struct repo_writer *w;
	char *err = NULL;
	size_t i;

	if (repo_point_begin(repo, &p, &w, &err) != 0)
		fail_msg("begin: %s", err);
	for (i = 0; i < n; i++) {
		struct repo_disk d = { 2000 + (int)i, disks[i].capacity, "52 aa bb/7", "[ds0] web01/web01.vmdk",
			repo_disk_chunks(disks[i].capacity), (const uint8_t(*)[REPO_ID_LEN])disks[i].ids, { 0 } };

		if (repo_point_put_index(w, &d, &err) != 0)
			fail_msg("put_index: %s", err);
	}
	if (repo_point_commit(w, 1700000100 + (int64_t)seq, 1234, 567, &err) != 0)
		fail_msg("commit: %s", err);
}

static void
expect_points(const char *vm, const uint64_t *want, size_t n)
{
	uint64_t *seqs;
	size_t got, i;
	char *err = NULL;

	if (repo_points(repo, "r1", vm, &seqs, &got, &err) != 0)
		fail_msg("points: %s", err);
	assert_int_equal(got, n);
	for (i = 0; i < n; i++)
		assert_int_equal(seqs[i], want[i]);
	free(seqs);
}

/* A point read back gives the disk's bytes, chunk by chunk. */
static void
expect_image(const char *vm, uint64_t seq, size_t disk, const struct disk *d)
{
	struct repo_point *p;
	char *err = NULL;
	uint64_t i;

	if (repo_point_read(repo, "r1", vm, seq, &p, &err) != 0)
		fail_msg("read: %s", err);
	assert_true(disk < p->ndisks);
	assert_int_equal(p->disks[disk].capacity, d->capacity);
	for (i = 0; i < p->disks[disk].nchunks; i++)
		get_equal(p->disks[disk].ids[i], d->bytes + i * CH, repo_chunk_len(d->capacity, i));
	repo_point_free(p);
}

/* ---- chunks ---- */

/* Chunk id's file holds the header of a plain chunk of len bytes, then
 * want's bytes, and reads back. */
static void
expect_plain_file(const uint8_t id[REPO_ID_LEN], const uint8_t *want, size_t len)
{
	char *path = chunk_file(id);
	size_t got;
	uint8_t *file = slurp(path, &got);

	assert_int_equal(got, 16 + len);
	assert_memory_equal(file, "VFCK\x01\x00\x00\x00", 8);
	assert_int_equal(get_be32(file + 8), len);
	assert_int_equal(get_be32(file + 12), len);
	assert_memory_equal(file + 16, want, len);
	get_equal(id, want, len);
	free(file);
	free(path);
}

static void
test_chunk_plain(void **state)
{
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN], sha[32];
	uint64_t stored;

	fill_random(buf, CH, 1);
	put_ok(buf, CH, id, &stored);
	crypto_sha256(buf, CH, sha);
	assert_memory_equal(id, sha, 32);
	assert_int_equal(stored, 16 + CH);
	assert_true(repo_chunk_has(repo, id));
	/* The file: header "VFCK", version 1, flags 0 (plain), lengths. */
	expect_plain_file(id, buf, CH);
	/* Stored once. */
	put_ok(buf, CH, id, &stored);
	assert_int_equal(stored, 0);
	assert_int_equal(count_files("chunks"), 1);
	assert_int_equal(count_files("tmp"), 0);
	free(buf);
}

/* Chunk files of every length: the part of a whole number of 4 KiB
 * blocks bypasses the page cache, the rest does not; the file holds the
 * header and the bytes, and reads back, whatever the split. */
static void
test_chunk_lengths(void **state)
{
	static const size_t lens[] = { 1, 4080, 4081, 4096, 5000, 65536 - 16, CH - 1, CH };
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN];
	uint64_t stored;
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		fill_random(buf, lens[i], 40 + (uint32_t)i);
		put_ok(buf, lens[i], id, &stored);
		assert_int_equal(stored, 16 + lens[i]);
		expect_plain_file(id, buf, lens[i]);
	}
	assert_int_equal(count_files("chunks"), sizeof(lens) / sizeof(lens[0]));
	assert_int_equal(count_files("tmp"), 0);
	free(buf);
}

static void
test_chunk_compressible(void **state)
{
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN], short_id[REPO_ID_LEN], *file;
	uint64_t stored;
	size_t len;
	char *path;

	fill_text(buf, CH, 3);
	put_ok(buf, CH, id, &stored);
	assert_true(stored > 16 && stored < CH / 100);
	path = chunk_file(id);
	file = slurp(path, &len);
	assert_int_equal(len, stored);
	assert_int_equal(file[5], 1); /* zstd */
	assert_int_equal(get_be32(file + 8), CH);
	/* A zstd frame (magic 28 b5 2f fd) with its content checksum flag. */
	assert_memory_equal(file + 16, "\x28\xb5\x2f\xfd", 4);
	assert_true(file[20] & 0x04);
	get_equal(id, buf, CH);
	/* A short last chunk of a disk is a chunk of its own length. */
	put_ok(buf, 12345, short_id, &stored);
	assert_memory_not_equal(short_id, id, REPO_ID_LEN);
	get_equal(short_id, buf, 12345);
	free(file);
	free(path);
	free(buf);
}

static void
test_chunk_zero(void **state)
{
	uint8_t *buf = xcalloc(1, CH), *back = xmalloc(CH), id[REPO_ID_LEN], zero[REPO_ID_LEN] = { 0 };
	uint64_t stored = 99;
	char *err = NULL;

	put_ok(buf, CH, id, &stored);
	assert_memory_equal(id, zero, REPO_ID_LEN);
	assert_int_equal(stored, 0);
	assert_int_equal(count_files("chunks"), 0);
	assert_true(repo_chunk_has(repo, zero));
	memset(back, 0xff, CH);
	assert_int_equal(repo_chunk_get(repo, zero, back, CH, &err), 0);
	assert_memory_equal(back, buf, CH);
	/* One byte set: no longer the zero chunk. */
	buf[CH - 1] = 1;
	put_ok(buf, CH, id, &stored);
	assert_false(repo_chunk_id_is_zero(id));
	assert_int_equal(count_files("chunks"), 1);
	free(back);
	free(buf);
}

static void
test_chunk_get_errors(void **state)
{
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN], other[REPO_ID_LEN];
	char *path;

	fill_random(buf, CH, 5);
	put_ok(buf, CH, id, NULL);
	/* A chunk that is not there, named. */
	memcpy(other, id, sizeof(other));
	other[31] ^= 1;
	get_fails(other, CH, "missing");
	/* The wrong length, or none a chunk can have. */
	get_fails(id, CH - 1, NULL);
	get_fails(id, CH + 1, NULL);
	get_fails(id, 0, NULL);
	/* One byte flipped in the data, in its last block too: damaged, named. */
	path = chunk_file(id);
	flip_byte(path, 16 + 1000);
	get_fails(id, CH, "damaged");
	flip_byte(path, 16 + 1000);
	get_equal(id, buf, CH);
	flip_byte(path, 16 + CH - 1);
	get_fails(id, CH, "damaged");
	flip_byte(path, 16 + CH - 1);
	/* A byte more or less than its header says: damaged. */
	assert_int_equal(truncate(path, 16 + CH + 1), 0);
	get_fails(id, CH, "damaged");
	assert_int_equal(truncate(path, 16 + CH - 1), 0);
	get_fails(id, CH, "damaged");
	assert_int_equal(truncate(path, 10), 0);
	get_fails(id, CH, "damaged");
	free(path);
	free(buf);
}

struct put_arg {
	int seed;
	int failures;
};

static void *
put_thread(void *arg)
{
	struct put_arg *a = arg;
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN];
	uint64_t stored;
	char *err = NULL;
	int i;

	for (i = 0; i < 6; i++) {
		/* Half the chunks are the same in every thread. */
		fill_random(buf, CH, i % 2 == 0 ? 100 + (uint64_t)i : (uint64_t)(a->seed * 10 + i));
		if (repo_chunk_put(repo, buf, CH, id, &stored, &err) != 0) {
			a->failures++;
			free(err);
		}
	}
	free(buf);
	return NULL;
}

static void
test_chunk_threads(void **state)
{
	pthread_t th[4];
	struct put_arg a[4];
	int i;

	for (i = 0; i < 4; i++) {
		a[i] = (struct put_arg){ i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, put_thread, &a[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].failures, 0);
	}
	/* 3 shared chunks, 3 of each thread's own. */
	assert_int_equal(count_files("chunks"), 3 + 4 * 3);
	assert_int_equal(count_files("tmp"), 0);
}

/* ---- encryption ---- */

static char *
key_file(const char *name, const char *text, size_t len)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	return p;
}

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

/* A known 64-byte pattern in every 4 KiB of otherwise random bytes, and
 * a chunk of nothing but the pattern. */
static void
pattern_chunks(uint8_t *random_chunk, uint8_t *pattern_chunk, const uint8_t pattern[64])
{
	size_t i;

	fill_random(random_chunk, CH, 9);
	for (i = 0; i < CH; i += 4096)
		memcpy(random_chunk + i, pattern, 64);
	for (i = 0; i < CH; i += 64)
		memcpy(pattern_chunk + i, pattern, 64);
}

static int
holds(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
	return memmem(hay, n, needle, m) != NULL;
}

/* Back to setup's plain repository from an encrypted one (closed). */
static void
leave_encrypted(struct repo *plain, char *edir, char *kf)
{
	repo = plain;
	base = NULL;
	free(edir);
	free(kf);
}

static void
test_encrypted(void **state)
{
	char *kf = key_file("key", key_hex, sizeof(key_hex) - 1), *err = NULL, *edir = path_of("../enc"), *path;
	uint8_t *a = xmalloc(CH), *b = xmalloc(CH), *file, ida[REPO_ID_LEN], idb[REPO_ID_LEN], sha[32], pattern[64];
	uint64_t stored;
	size_t len, i;
	struct repo *plain = repo;

	for (i = 0; i < 64; i++)
		pattern[i] = (uint8_t)("vmferry-known-plaintext-pattern-"[i % 32] ^ (i / 32));
	pattern_chunks(a, b, pattern);

	/* In the plain repository the random chunk is stored as it is and
	 * holds the pattern: the check below can fail.  (The pattern-only one
	 * is compressed: zstd codes its literals.) */
	put_ok(a, CH, ida, NULL);
	put_ok(b, CH, idb, NULL);
	path = chunk_file(ida);
	file = slurp(path, &len);
	assert_true(holds(file, len, pattern, 64));
	free(file);
	free(path);

	assert_int_equal(repo_open(edir, kf, &repo, &err), 0);
	assert_true(repo_encrypted(repo));
	base = edir;
	put_ok(a, CH, ida, &stored);
	assert_int_equal(stored, 16 + 12 + CH + 16);
	put_ok(b, CH, idb, &stored);
	assert_true(stored < CH / 100);
	/* Ids are HMACs, not SHA-256. */
	crypto_sha256(a, CH, sha);
	assert_memory_not_equal(ida, sha, 32);
	/* No chunk file holds the pattern; flags say encrypted (plain, zstd). */
	path = chunk_file(ida);
	file = slurp(path, &len);
	assert_int_equal(file[5], 2);
	assert_false(holds(file, len, pattern, 64));
	assert_false(holds(file, len, pattern, 16));
	free(file);
	free(path);
	path = chunk_file(idb);
	file = slurp(path, &len);
	assert_int_equal(file[5], 3);
	assert_false(holds(file, len, pattern, 16));
	free(file);
	get_equal(ida, a, CH);
	get_equal(idb, b, CH);
	/* A flipped byte of ciphertext: damaged, named. */
	flip_byte(path, 100);
	get_fails(idb, CH, "damaged");
	free(path);
	path = chunk_file(ida);
	flip_byte(path, 16 + 12 + 5000);
	get_fails(ida, CH, "damaged");
	flip_byte(path, 16 + 12 + 5000);
	free(path);
	repo_close(repo);

	/* The same key as 32 raw bytes opens it too. */
	{
		uint8_t raw[32];
		char *kraw;

		for (i = 0; i < 32; i++)
			raw[i] = (uint8_t)i;
		kraw = key_file("key.raw", (const char *)raw, 32);
		assert_int_equal(repo_open(edir, kraw, &repo, &err), 0);
		get_equal(ida, a, CH);
		repo_close(repo);
		free(kraw);
	}
	leave_encrypted(plain, edir, kf);
	free(a);
	free(b);
}

/* Every file below rdir with its size and time, as one string. */
static int snap_fd;
static int
snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	dprintf(snap_fd, "%s %d %lld %lld.%09ld\n", path, flag, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
	    st->st_mtim.tv_nsec);
	return 0;
}

static char *
snapshot(const char *root)
{
	char *p = xasprintf("%s/snap", dir), *text;
	size_t len;

	snap_fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(snap_fd >= 0);
	nftw(root, snap_one, 16, FTW_PHYS);
	close(snap_fd);
	text = (char *)slurp(p, &len);
	text[len] = '\0';
	unlink(p);
	free(p);
	return text;
}

/* repo_chunk_seal_buf: the chunk's bytes in a repo_buf_alloc buffer
 * become the file with no copy (or zstd's frame), and the file is the
 * one repo_chunk_put writes. */
static void
seal_buf_ok(const void *bytes, size_t len, uint8_t id[REPO_ID_LEN], uint64_t *stored)
{
	uint8_t *b = repo_buf_alloc(repo, len);
	struct repo_sealed sl;
	char *err = NULL;

	memcpy(b, bytes, len);
	if (repo_chunk_seal_buf(repo, b, len, &sl, &err) != 0 || repo_chunk_commit(repo, &sl, &err) != 0)
		fail_msg("seal_buf: %s", err);
	memcpy(id, sl.id, REPO_ID_LEN);
	*stored = sl.stored;
	repo_buf_free(repo, b);
}

static void
test_chunk_seal_buf(void **state)
{
	static const size_t lens[] = { 1, 4080, 4081, 65536 - 16, CH };
	char *kf = key_file("key", key_hex, sizeof(key_hex) - 1), *err = NULL, *edir = path_of("../enc"), *path;
	uint8_t *buf = xmalloc(CH), id[REPO_ID_LEN], sha[32], pattern[64], *file;
	struct repo *plain = repo;
	uint64_t stored;
	size_t i, len;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		fill_random(buf, lens[i], 70 + (uint32_t)i);
		seal_buf_ok(buf, lens[i], id, &stored);
		crypto_sha256(buf, lens[i], sha);
		assert_memory_equal(id, sha, 32);
		assert_int_equal(stored, 16 + lens[i]);
		expect_plain_file(id, buf, lens[i]);
	}
	fill_text(buf, CH, 5);
	seal_buf_ok(buf, CH, id, &stored);
	assert_true(stored < CH / 100);
	path = chunk_file(id);
	file = slurp(path, &len);
	assert_int_equal(file[5], 1); /* zstd */
	get_equal(id, buf, CH);
	free(file);
	free(path);
	assert_int_equal(count_files("tmp"), 0);

	/* Encrypted in place: no plaintext in the file, and it reads back. */
	for (i = 0; i < 64; i++)
		pattern[i] = (uint8_t)("vmferry-known-plaintext-pattern-"[i % 32] ^ (i / 32));
	fill_random(buf, CH, 77);
	memcpy(buf + 1000000, pattern, 64);
	assert_int_equal(repo_open(edir, kf, &repo, &err), 0);
	base = edir;
	seal_buf_ok(buf, CH, id, &stored);
	assert_int_equal(stored, 16 + 12 + CH + 16);
	path = chunk_file(id);
	file = slurp(path, &len);
	assert_int_equal(len, stored);
	assert_int_equal(file[5], 2);
	assert_false(holds(file, len, pattern, 64));
	get_equal(id, buf, CH);
	free(file);
	free(path);
	repo_close(repo);
	leave_encrypted(plain, edir, kf);
	free(buf);
}

/* The zstd attempt is skipped only where samples say it saves nothing. */
static void
test_compress_worth(void **state)
{
	uint8_t *buf = xmalloc(CH);

	fill_random(buf, CH, 9);
	assert_false(compress_worth(buf, CH));
	/* Small chunks are always tried. */
	assert_true(compress_worth(buf, 200000));
	/* Compressible where the last sample (at 3 MiB) falls. */
	memset(buf + 3 * (CH / 4), 0, 65536);
	assert_true(compress_worth(buf, CH));
	fill_text(buf, CH, 4);
	assert_true(compress_worth(buf, CH));
	/* Random but for 1 MiB of zeros between the samples: tried as a
	 * whole it would shrink; the samples miss it, and it stays plain. */
	fill_random(buf, CH, 10);
	memset(buf + 65536, 0, 900000);
	assert_false(compress_worth(buf, CH));
	free(buf);
}

static void
test_wrong_key(void **state)
{
	char *good = key_file("good", key_hex, sizeof(key_hex) - 1);
	char *bad = key_file("bad", "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 64);
	char *junk = key_file("junk", "not a key", 9);
	char *edir = xasprintf("%s/enc", dir), *err = NULL, *before, *after;
	uint8_t buf[100], id[REPO_ID_LEN];
	struct repo *plain = repo, *r;
	uint64_t stored;

	assert_int_equal(repo_open(edir, good, &r, &err), 0);
	fill_text(buf, sizeof(buf), 1);
	assert_int_equal(repo_chunk_put(r, buf, sizeof(buf), id, &stored, &err), 0);
	/* Open with the good key: the key files are checked again. */
	assert_int_equal(repo_check_key(r, good, &err), 0);
	assert_int_equal(repo_check_key(r, bad, &err), -1);
	assert_non_null(strstr(err, "not the repository's key"));
	assert_null(strstr(err, "ff01"));
	free(err);
	assert_int_equal(repo_check_key(r, NULL, &err), -1);
	assert_non_null(strstr(err, "encrypted"));
	free(err);
	assert_int_equal(repo_check_key(r, junk, &err), -1);
	assert_non_null(strstr(err, "64 hex digits"));
	free(err);
	assert_int_equal(repo_check_key(plain, NULL, &err), 0);
	assert_int_equal(repo_check_key(plain, good, &err), -1);
	assert_non_null(strstr(err, "not encrypted"));
	free(err);
	repo_close(r);
	before = snapshot(edir);

	assert_int_equal(repo_open(edir, bad, &r, &err), -1);
	assert_non_null(strstr(err, "not the repository's key"));
	assert_null(strstr(err, "ff01")); /* no secret in a message */
	free(err);
	assert_int_equal(repo_open(edir, NULL, &r, &err), -1);
	assert_non_null(strstr(err, "encrypted"));
	free(err);
	assert_int_equal(repo_open(edir, junk, &r, &err), -1);
	assert_non_null(strstr(err, "64 hex digits"));
	free(err);
	after = snapshot(edir);
	assert_string_equal(before, after);

	/* A key for a repository made without one is refused as well. */
	free(before);
	free(after);
	repo_close(plain);
	before = snapshot(rdir);
	assert_int_equal(repo_open(rdir, good, &r, &err), -1);
	assert_non_null(strstr(err, "not encrypted"));
	free(err);
	after = snapshot(rdir);
	assert_string_equal(before, after);
	assert_int_equal(repo_open(rdir, NULL, &repo, &err), 0);

	/* A directory with other things in it is not made a repository. */
	{
		char *other = xasprintf("%s/other", dir), *f = xasprintf("%s/other/file", dir);

		assert_int_equal(mkdir(other, 0700), 0);
		close(open(f, O_WRONLY | O_CREAT, 0600));
		assert_int_equal(repo_open(other, NULL, &r, &err), -1);
		assert_non_null(strstr(err, "not a vmferry repository"));
		free(err);
		free(f);
		free(other);
	}
	free(before);
	free(after);
	free(edir);
	free(good);
	free(bad);
	free(junk);
}

/* ---- points ---- */

static void
test_point_round_trip(void **state)
{
	struct disk d[2];
	struct repo_point *p;
	char *err = NULL;
	uint64_t one = 1;
	json_t *cfg, *want;

	disk_make(&d[0], 3 * (uint64_t)CH + 12345, 0);
	disk_make(&d[1], 2 * (uint64_t)CH, 1);
	point_write("web01", 1, REPO_FULL, 0, d, 2);
	expect_points("web01", &one, 1);
	expect_points("web02", NULL, 0);

	assert_int_equal(repo_point_read(repo, "r1", "web01", 1, &p, &err), 0);
	assert_string_equal(p->rule, "r1");
	assert_string_equal(p->vm, "web01");
	assert_int_equal(p->seq, 1);
	assert_int_equal(p->mode, REPO_FULL);
	assert_int_equal(p->parent, 0);
	assert_int_equal(p->start, 1700000001);
	assert_int_equal(p->end, 1700000101);
	assert_int_equal(p->bytes_read, 1234);
	assert_int_equal(p->bytes_stored, 567);
	cfg = json_loads(p->config, 0, NULL);
	want = json_loads("{\"name\":\"web01\",\"cpus\":2,\"disks\":[{\"key\":2000}]}", 0, NULL);
	assert_true(json_equal(cfg, want));
	json_decref(cfg);
	json_decref(want);
	assert_int_equal(p->ndisks, 2);
	assert_int_equal(p->disks[0].key, 2000);
	assert_int_equal(p->disks[1].key, 2001);
	assert_int_equal(p->disks[0].capacity, 3 * (uint64_t)CH + 12345);
	assert_int_equal(p->disks[0].nchunks, 4);
	assert_string_equal(p->disks[0].change_id, "52 aa bb/7");
	assert_string_equal(p->disks[0].file, "[ds0] web01/web01.vmdk");
	assert_memory_equal(p->disks[0].ids, d[0].ids, 4 * REPO_ID_LEN);
	assert_memory_equal(p->disks[1].ids, d[1].ids, 2 * REPO_ID_LEN);
	assert_true(repo_chunk_id_is_zero(p->disks[0].ids[2])); /* chunk 2 of disk 0: zeros */
	repo_point_free(p);
	expect_image("web01", 1, 0, &d[0]);
	expect_image("web01", 1, 1, &d[1]);
	assert_int_equal(count_files("tmp"), 0);

	/* A point is written once. */
	{
		struct repo_point again = { "r1", "web01", 1, REPO_FULL, 0, 1, 0, 0, 0, NULL, 0, NULL };
		struct repo_writer *w;

		assert_int_equal(repo_point_begin(repo, &again, &w, &err), -1);
		assert_non_null(strstr(err, "exists"));
		free(err);
		/* An incremental needs a parent that is there. */
		again.seq = 2;
		again.mode = REPO_INCREMENTAL;
		again.parent = 7;
		assert_int_equal(repo_point_begin(repo, &again, &w, &err), -1);
		free(err);
	}
	disk_free(&d[0]);
	disk_free(&d[1]);
}

static void
test_point_tampered(void **state)
{
	struct disk d;
	struct repo_point *p;
	char *err = NULL, *path;

	disk_make(&d, 2 * (uint64_t)CH, 0);
	point_write("web01", 1, REPO_FULL, 0, &d, 1);
	path = path_of("points/r1/web01/1/manifest.json");
	flip_byte(path, 120);
	assert_int_equal(repo_point_read(repo, "r1", "web01", 1, &p, &err), -1);
	assert_non_null(strstr(err, "checksum"));
	free(err);
	flip_byte(path, 120);
	free(path);
	path = path_of("points/r1/web01/1/disk0.idx");
	flip_byte(path, 40);
	assert_int_equal(repo_point_read(repo, "r1", "web01", 1, &p, &err), -1);
	assert_non_null(strstr(err, "checksum"));
	free(err);
	free(path);
	disk_free(&d);
}

static void
test_point_incomplete(void **state)
{
	struct disk d;
	struct repo_point p = { "r1", "web01", 1, REPO_FULL, 0, 1, 0, 0, 0, NULL, 0, NULL };
	struct repo_disk rd;
	struct repo_writer *w, *crashed;
	struct repo *other;
	struct repo_gc_stats gs;
	char *err = NULL;

	disk_make(&d, (uint64_t)CH + 1, 0);
	rd = (struct repo_disk){ 2000, d.capacity, NULL, NULL, 2, (const uint8_t(*)[REPO_ID_LEN])d.ids, { 0 } };
	/* Aborted: never listed, nothing left. */
	assert_int_equal(repo_point_begin(repo, &p, &w, &err), 0);
	assert_int_equal(repo_point_put_index(w, &rd, &err), 0);
	expect_points("web01", NULL, 0);
	repo_point_abort(w);
	expect_points("web01", NULL, 0);
	assert_int_equal(count_files("tmp"), 0);

	/* Cut off before the rename (a crash): its index and manifest
	 * written, the point is not there, for this process or the next. */
	assert_int_equal(repo_point_begin(repo, &p, &crashed, &err), 0);
	assert_int_equal(repo_point_put_index(crashed, &rd, &err), 0);
	assert_int_equal(count_files("tmp"), 1);
	expect_points("web01", NULL, 0);
	assert_int_equal(repo_open(rdir, NULL, &other, &err), 0);
	{
		uint64_t *seqs;
		size_t n;

		assert_int_equal(repo_points(other, "r1", "web01", &seqs, &n, &err), 0);
		assert_int_equal(n, 0);
	}
	{
		struct repo_point *rp;

		assert_int_equal(repo_point_read(other, "r1", "web01", 1, &rp, &err), -1);
		assert_non_null(strstr(err, "no point"));
		free(err);
	}
	/* The next process's gc removes what the crash left, once old. */
	age_files("tmp", 7200);
	assert_int_equal(repo_gc(other, time(NULL), &gs, &err), 0);
	assert_int_equal(count_files("tmp"), 0);
	repo_close(other);
	repo_point_abort(crashed);
	disk_free(&d);
}

static void
test_point_delete(void **state)
{
	struct disk d1, d2, d3;
	struct repo_point p2 = { "r1", "web01", 4, REPO_INCREMENTAL, 2, 1, 0, 0, 0, NULL, 0, NULL };
	struct repo_writer *w;
	char *err = NULL, *path;
	const uint64_t want13[] = { 1, 3 }, want123[] = { 1, 2, 3 };

	disk_make(&d1, 3 * (uint64_t)CH, 0);
	disk_make(&d2, 3 * (uint64_t)CH, 1);
	disk_make(&d3, 3 * (uint64_t)CH, 2);
	point_write("web01", 1, REPO_FULL, 0, &d1, 1);
	point_write("web01", 2, REPO_INCREMENTAL, 1, &d2, 1);
	point_write("web01", 3, REPO_INCREMENTAL, 2, &d3, 1);
	expect_points("web01", want123, 3);

	/* Not while a backup reads against it. */
	assert_int_equal(repo_point_begin(repo, &p2, &w, &err), 0);
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 2, &err), -1);
	assert_non_null(strstr(err, "in use"));
	free(err);
	repo_point_abort(w);

	/* Alone: the others stay whole, every chunk stays until gc. */
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 2, &err), 0);
	expect_points("web01", want13, 2);
	expect_image("web01", 1, 0, &d1);
	expect_image("web01", 3, 0, &d3);
	get_equal(d2.ids[0], d2.bytes, CH);
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 2, &err), -1);
	assert_non_null(strstr(err, "no point"));
	free(err);
	assert_int_equal(count_files("tmp"), 0);

	/* The last point takes its VM's and rule's directories with it. */
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 1, &err), 0);
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 3, &err), 0);
	path = path_of("points/r1");
	assert_false(file_exists(path));
	free(path);
	expect_points("web01", NULL, 0);
	/* ... and a new point makes them again. */
	point_write("web01", 5, REPO_FULL, 0, &d1, 1);
	expect_image("web01", 5, 0, &d1);
	disk_free(&d1);
	disk_free(&d2);
	disk_free(&d3);
}

static void
test_gc(void **state)
{
	struct disk a, b;
	uint8_t *buf = xmalloc(CH), young[REPO_ID_LEN], orphan[REPO_ID_LEN];
	struct repo_gc_stats gs;
	char *err = NULL, *path;
	uint64_t i, stored, only_a = 0, only_a_bytes = 0;
	struct stat st;

	/* Point 1 (a) and point 2 (b) share chunk 0; chunks 1 of each differ,
	 * chunk 2 is zeros in both, chunk 3 of a is text, of b random. */
	disk_make(&a, 4 * (uint64_t)CH, 0);
	disk_make(&b, 4 * (uint64_t)CH, 0);
	fill_random(b.bytes + CH, CH, 555);
	put_ok(b.bytes + CH, CH, b.ids[1], NULL);
	fill_random(b.bytes + 3 * CH, CH, 556);
	put_ok(b.bytes + 3 * CH, CH, b.ids[3], NULL);
	point_write("web01", 1, REPO_FULL, 0, &a, 1);
	point_write("web01", 2, REPO_INCREMENTAL, 1, &b, 1);
	/* An old chunk no point uses. */
	fill_random(buf, CH, 777);
	put_ok(buf, CH, orphan, &stored);
	assert_int_equal(count_files("chunks"), 5 + 1);

	/* Nothing to free while both points stand (all old). */
	age_files("chunks", 1000);
	assert_int_equal(repo_gc(repo, time(NULL), &gs, &err), 0);
	assert_int_equal(gs.points, 2);
	assert_int_equal(gs.chunks_used, 5);
	assert_int_equal(gs.chunks_freed, 1);
	path = chunk_file(orphan);
	assert_false(file_exists(path));
	free(path);

	/* Delete point 1: exactly its own chunks go (1 and 3 of a). */
	for (i = 1; i < 4; i += 2) {
		path = chunk_file(a.ids[i]);
		assert_int_equal(stat(path, &st), 0);
		only_a++;
		only_a_bytes += (uint64_t)st.st_size;
		free(path);
	}
	assert_int_equal(repo_point_delete(repo, "r1", "web01", 1, &err), 0);
	/* A chunk written after the gc started stays, though unused. */
	fill_random(buf, CH, 778);
	put_ok(buf, CH, young, &stored);
	assert_int_equal(repo_gc(repo, time(NULL) - 100, &gs, &err), 0);
	assert_int_equal(gs.points, 1);
	assert_int_equal(gs.chunks_freed, only_a);
	assert_int_equal(gs.bytes_freed, only_a_bytes);
	assert_int_equal(gs.chunks_young, 1);
	for (i = 1; i < 4; i += 2) {
		path = chunk_file(a.ids[i]);
		assert_false(file_exists(path));
		free(path);
	}
	path = chunk_file(young);
	assert_true(file_exists(path));
	free(path);
	expect_image("web01", 2, 0, &b);

	/* A backup that began before the gc keeps what it writes, whatever
	 * start the gc is given; chunks it found are renewed by has. */
	{
		struct repo_point p = { "r1", "web01", 3, REPO_FULL, 0, 1, 0, 0, 0, NULL, 0, NULL };
		struct repo_writer *w;

		age_files("chunks", 1000);
		assert_int_equal(repo_point_begin(repo, &p, &w, &err), 0);
		fill_random(buf, CH, 779);
		put_ok(buf, CH, young, &stored);
		assert_true(repo_chunk_has(repo, a.ids[0])); /* shared, in use */
		assert_int_equal(repo_gc(repo, time(NULL) + 1000, &gs, &err), 0);
		path = chunk_file(young);
		assert_true(file_exists(path));
		free(path);
		repo_point_abort(w);
	}

	/* A chunk that a backup found (has) is renewed: a gc that started
	 * before spares it, though no point uses it yet; later it goes. */
	fill_random(buf, CH, 780);
	put_ok(buf, CH, orphan, &stored);
	age_files("chunks", 1000);
	assert_true(repo_chunk_has(repo, orphan));
	assert_int_equal(repo_gc(repo, time(NULL) - 10, &gs, &err), 0);
	path = chunk_file(orphan);
	assert_true(file_exists(path));
	age_files("chunks", 1000);
	assert_int_equal(repo_gc(repo, time(NULL) - 10, &gs, &err), 0);
	assert_false(file_exists(path));
	free(path);

	/* A damaged index stops gc before anything is deleted. */
	age_files("chunks", 1000);
	path = path_of("points/r1/web01/2/disk0.idx");
	flip_byte(path, 50);
	free(path);
	i = (uint64_t)count_files("chunks");
	assert_int_equal(repo_gc(repo, time(NULL), &gs, &err), -1);
	assert_non_null(strstr(err, "disk0.idx"));
	free(err);
	assert_int_equal(count_files("chunks"), (int)i);
	disk_free(&a);
	disk_free(&b);
	free(buf);
}

/* What repo_verify reported. */
struct damage {
	int calls;
	uint8_t id[REPO_ID_LEN];
	int null_id;
	uint64_t seqs[8];
	size_t nseqs;
	char why[256];
};

static void
on_damage(void *arg, const uint8_t *id, const char *why, const struct repo_point_ref *points, size_t n)
{
	struct damage *d = arg;
	size_t i;

	d->calls++;
	d->null_id = id == NULL;
	if (id != NULL)
		memcpy(d->id, id, REPO_ID_LEN);
	snprintf(d->why, sizeof(d->why), "%s", why);
	d->nseqs = n;
	for (i = 0; i < n && i < 8; i++) {
		assert_string_equal(points[i].rule, "r1");
		assert_string_equal(points[i].vm, "web01");
		d->seqs[i] = points[i].seq;
	}
}

static void
test_verify(void **state)
{
	struct disk a, b, c;
	struct repo_verify_stats vs;
	struct damage dm;
	char *err = NULL, *path;
	uint64_t stored;

	/* Chunk 0 of a is in points 1 and 3, not in 2. */
	disk_make(&a, 3 * (uint64_t)CH, 0);
	disk_make(&b, 3 * (uint64_t)CH, 1);
	disk_make(&c, 3 * (uint64_t)CH, 2);
	memcpy(c.ids[0], a.ids[0], REPO_ID_LEN);
	memcpy(c.bytes, a.bytes, CH);
	point_write("web01", 1, REPO_FULL, 0, &a, 1);
	point_write("web01", 2, REPO_FULL, 0, &b, 1);
	point_write("web01", 3, REPO_INCREMENTAL, 1, &c, 1);

	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, "r1", NULL, 0, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 0);
	assert_int_equal(vs.points, 3);
	assert_int_equal(vs.damaged, 0);
	assert_int_equal(vs.chunks, 5); /* 2 + 2 + 1 new: zeros are not read */

	path = chunk_file(a.ids[0]);
	flip_byte(path, 16 + 4321);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, NULL, NULL, 0, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 1);
	assert_memory_equal(dm.id, a.ids[0], REPO_ID_LEN);
	assert_int_equal(dm.nseqs, 2);
	assert_int_equal(dm.seqs[0], 1);
	assert_int_equal(dm.seqs[1], 3);
	assert_non_null(strstr(dm.why, "damaged"));
	assert_int_equal(vs.damaged, 1);
	/* Set aside, so that the next backup of those bytes stores them. */
	assert_false(file_exists(path));
	assert_false(repo_chunk_has(repo, a.ids[0]));
	put_ok(a.bytes, CH, a.ids[0], &stored);
	assert_true(stored > 0);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, NULL, NULL, 0, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 0);

	/* One point only: chunks of the others are not read. */
	flip_byte(path, 16 + 4321);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, "r1", "web01", 2, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 0);
	assert_int_equal(vs.points, 1);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, "r1", "web01", 3, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 1);
	assert_int_equal(dm.nseqs, 1);
	assert_int_equal(dm.seqs[0], 3);
	put_ok(a.bytes, CH, a.ids[0], &stored);
	free(path);

	/* A damaged index names its point, with no chunk id. */
	path = path_of("points/r1/web01/2/disk0.idx");
	flip_byte(path, 40);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(repo_verify(repo, "r1", "web01", 0, on_damage, &dm, &vs, &err), 0);
	assert_int_equal(dm.calls, 1);
	assert_true(dm.null_id);
	assert_int_equal(dm.nseqs, 1);
	assert_int_equal(dm.seqs[0], 2);
	assert_non_null(strstr(dm.why, "disk0.idx"));
	free(path);
	assert_int_equal(repo_verify(repo, "r1", "web01", 9, on_damage, &dm, &vs, &err), -1);
	assert_non_null(strstr(err, "no point"));
	free(err);
	disk_free(&a);
	disk_free(&b);
	disk_free(&c);
}

static void
test_parsers_refuse(void **state)
{
	struct repo_point *p;
	struct repo_disk d;
	char *err = NULL;
	static const char *const bad[] = {
		"",
		"{}",
		"{\"checksum\":\"00\",\"manifest\":{}}\n",
	};
	size_t i;
	uint8_t idx[64] = "VFIX";

	for (i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(repo_manifest_parse(bad[i], strlen(bad[i]), &p, &err), -1);
		assert_non_null(err);
		free(err);
	}
	assert_int_equal(repo_index_parse(idx, sizeof(idx), &d, &err), -1);
	free(err);
	assert_int_equal(repo_index_parse(idx, 3, &d, &err), -1);
	free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chunk_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_lengths, setup_tmpfs, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_compressible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_seal_buf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compress_worth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_get_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_get_errors, setup_tmpfs, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_compressible, setup_tmpfs, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encrypted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_tampered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_incomplete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
		cmocka_unit_test(test_parsers_refuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
