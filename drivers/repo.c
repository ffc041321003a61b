/* The backup repository: opening (and making) one, its key, its chunks,
 * and the file helpers repo_point.c and repo_gc.c share.
 * docs/REPOSITORY.md describes every byte written here. */
#define _GNU_SOURCE /* sync_file_range, O_DIRECT */
#include "drivers/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <jansson.h>

#include "drivers/compress.h"
#include "drivers/crypto.h"
#include "drivers/repo_private.h"
#include "engine/core/util.h"

#define REPO_FORMAT "vmferry-repository"
#define REPO_VERSION 1

/* A chunk file: "VFCK", version, flags, 2 reserved bytes, the plain
 * length and the payload's length (both big-endian), then the payload. */
#define CHUNK_HEAD 16
#define CHUNK_VERSION 1
#define CHUNK_ZSTD 0x01
#define CHUNK_AES_GCM 0x02

/* Sub-keys of the repository key, so that no key serves two purposes
 * (docs/REPOSITORY.md "Encryption"). */
static const char label_id[] = "vmferry-repository chunk id";
static const char label_enc[] = "vmferry-repository chunk encryption";
static const char label_check[] = "vmferry-repository key check";

/* ---- small helpers ---- */

int
repo_name_ok(const char *s)
{
	return file_name_is_safe(s) && strlen(s) <= 255;
}

static void
hex_of(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int
repo_unhex(const char *s, size_t slen, uint8_t *out, size_t n, int lower_only)
{
	size_t i;

	if (slen != 2 * n)
		return -1;
	for (i = 0; i < 2 * n; i++) {
		int c = (unsigned char)s[i], v = -1;

		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F' && !lower_only)
			v = c - 'A' + 10;
		if (v < 0)
			return -1;
		out[i / 2] = i % 2 == 0 ? (uint8_t)(v << 4) : (uint8_t)(out[i / 2] | v);
	}
	return 0;
}

void
repo_id_hex(const uint8_t id[REPO_ID_LEN], char hex[2 * REPO_ID_LEN + 1])
{
	hex_of(id, REPO_ID_LEN, hex);
}

char *
repo_tmp_name(const char *prefix)
{
	uint8_t rnd[8];
	char hex[17];

	if (crypto_random(rnd, sizeof(rnd)) != 0)
		fatal("no random bytes for a temporary name");
	hex_of(rnd, sizeof(rnd), hex);
	return xasprintf("tmp/%s-%s", prefix, hex);
}

int
repo_fsync_dir(const struct repo *r, const char *rel, char **err)
{
	int fd = openat(r->dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO; /* the file shrank under us */
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int
repo_read_file(const struct repo *r, const char *rel, size_t max, uint8_t **buf, size_t *len, int *missing,
    char **err)
{
	struct stat st;
	int fd;

	*buf = NULL;
	*len = 0;
	*missing = 0;
	if ((fd = openat(r->dfd, rel, O_RDONLY | O_CLOEXEC)) < 0) {
		*missing = errno == ENOENT;
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		*err = xasprintf("%s/%s: not a file of at most %zu bytes", r->dir, rel, max);
		close(fd);
		return -1;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	if (pread_all(fd, *buf, (size_t)st.st_size, 0) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		close(fd);
		free(*buf);
		*buf = NULL;
		return -1;
	}
	close(fd);
	(*buf)[st.st_size] = 0;
	*len = (size_t)st.st_size;
	return 0;
}

/* A new file that could not be written: *err says why (errno), and it
 * is gone. */
static int
new_file_fail(const struct repo *r, const char *rel, int fd, char **err)
{
	*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
	if (fd >= 0) {
		close(fd);
		unlinkat(r->dfd, rel, 0);
	}
	return -1;
}

/* Writes a new file (never replacing one) from pieces and returns its
 * descriptor, not yet synced: -1 with *err and nothing left. */
static int
write_pieces(const struct repo *r, const char *rel, const struct repo_piece *pieces, size_t n, char **err)
{
	int fd = openat(r->dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t i;

	if (fd < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		const uint8_t *p = pieces[i].p;
		size_t left = pieces[i].n;

		while (left > 0) {
			ssize_t w = write(fd, p, left);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				goto fail;
			p += w;
			left -= (size_t)w;
		}
	}
	return fd;
fail:
	return new_file_fail(r, rel, fd, err);
}

/* Chunk files bypass the page cache where the file system lets them
 * (O_DIRECT): a backup writes each once and seldom reads it soon, and
 * copying a point's gigabytes into the page cache, then writing them back
 * from it, cost the backup more CPU than hashing them (docs/BENCHMARKS.md,
 * 2026-12-03 17:27).  O_DIRECT needs the buffer, the offset and the
 * length aligned: the aligned head of the file goes straight to the
 * device, its last partial block through the page cache. */
#define DIRECT_ALIGN 4096
/* A transparent huge page (x86-64; arm64 with 4 KiB pages). */
#define HUGE_PAGE (2u << 20)

static int
pwrite_all(int fd, const uint8_t *p, size_t n, off_t at)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, at);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
		at += w;
	}
	return 0;
}

/* Writes a new chunk file from file (total bytes, file aligned to
 * DIRECT_ALIGN and readable up to total rounded up to it); returns its
 * descriptor, not yet synced: -1 with *err and nothing left. */
static int
write_chunk_file(const struct repo *r, const char *rel, const uint8_t *file, size_t total, char **err)
{
	size_t head = total & ~(size_t)(DIRECT_ALIGN - 1);
	int fd, fl, direct = 1;

	fd = openat(r->dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL) {
		/* A file system without O_DIRECT. */
		direct = 0;
		fd = openat(r->dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		goto fail;
	if (direct && head > 0 && pwrite_all(fd, file, head, 0) != 0) {
		if (errno != EINVAL)
			goto fail;
		/* Its blocks are larger than DIRECT_ALIGN: all of it buffered. */
		head = 0;
	}
	if (direct && ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0))
		goto fail;
	if (!direct)
		head = 0;
	if (pwrite_all(fd, file + head, total - head, (off_t)head) != 0)
		goto fail;
	return fd;
fail:
	return new_file_fail(r, rel, fd, err);
}

/* Makes fd's bytes durable and closes it; on failure removes rel too. */
static int
sync_close(const struct repo *r, const char *rel, int fd, char **err)
{
	if (fdatasync(fd) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		close(fd);
		unlinkat(r->dfd, rel, 0);
		return -1;
	}
	if (close(fd) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		unlinkat(r->dfd, rel, 0);
		return -1;
	}
	return 0;
}

int
repo_write_new(const struct repo *r, const char *rel, const struct repo_piece *pieces, size_t n, char **err)
{
	int fd = write_pieces(r, rel, pieces, n, err);

	return fd < 0 ? -1 : sync_close(r, rel, fd, err);
}

void
repo_remove(const struct repo *r, const char *rel)
{
	int fd;
	DIR *d;
	struct dirent *e;

	if (unlinkat(r->dfd, rel, 0) == 0 || (errno != EISDIR && errno != EPERM))
		return;
	if ((fd = openat(r->dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			unlinkat(fd, e->d_name, 0);
	closedir(d);
	unlinkat(r->dfd, rel, AT_REMOVEDIR);
}

int
repo_sync_chunk_dirs(const struct repo *r, char **err)
{
	char rel[16];
	int i;

	for (i = 0; i < 256; i++) {
		snprintf(rel, sizeof(rel), "chunks/%02x", i);
		if (repo_fsync_dir(r, rel, err) != 0)
			return -1;
	}
	return 0;
}

/* ---- opening ---- */

/* The key file: 32 raw bytes, or 64 hex digits with optional white space
 * after them.  Messages never quote the file's bytes. */
static int
read_key(const char *path, uint8_t key[CRYPTO_KEY_LEN], char **err)
{
	uint8_t buf[160];
	size_t n = 0;
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*err = xasprintf("key file %s: %s", path, strerror(errno));
		return -1;
	}
	while (n < sizeof(buf)) {
		if ((got = read(fd, buf + n, sizeof(buf) - n)) < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			*err = xasprintf("key file %s: %s", path, strerror(errno));
			close(fd);
			explicit_bzero(buf, sizeof(buf));
			return -1;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	if (n == CRYPTO_KEY_LEN) {
		memcpy(key, buf, CRYPTO_KEY_LEN);
		explicit_bzero(buf, sizeof(buf));
		return 0;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	if (repo_unhex((const char *)buf, n, key, CRYPTO_KEY_LEN, 0) != 0) {
		explicit_bzero(buf, sizeof(buf));
		*err = xasprintf("key file %s: neither 32 bytes nor 64 hex digits", path);
		return -1;
	}
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static void
subkey(const uint8_t key[CRYPTO_KEY_LEN], const char *label, uint8_t out[CRYPTO_HASH_LEN])
{
	crypto_hmac_sha256(key, label, strlen(label), out);
}

static int
mkdir_p(const char *path, char **err)
{
	char *p = xstrdup(path), *s;
	int rc = 0;

	for (s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		{
			char c = *s;

			*s = '\0';
			if (mkdir(p, 0700) != 0 && errno != EEXIST) {
				*err = xasprintf("%s: %s", p, strerror(errno));
				rc = -1;
				break;
			}
			*s = c;
		}
		if (*s == '\0')
			break;
	}
	free(p);
	return rc;
}

/* Checks repo.json against the key given: 0, or -1 with *err. */
static int
check_config(struct repo *r, const uint8_t *text, size_t len, const uint8_t *key, const char *key_file, char **err)
{
	json_error_t je;
	json_t *root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je), *enc;
	const char *fmt = NULL, *cipher = NULL, *ids = NULL, *check = NULL;
	json_int_t version = 0, chunk = 0;
	uint8_t want[CRYPTO_HASH_LEN], have[CRYPTO_HASH_LEN];
	int rc = -1;

	if (root == NULL || json_unpack(root, "{s:s,s:I,s:I,s:o}", "format", &fmt, "version", &version, "chunk_size",
	    &chunk, "encryption", &enc) != 0 || strcmp(fmt, REPO_FORMAT) != 0) {
		*err = xasprintf("%s/repo.json: not a vmferry repository", r->dir);
		goto done;
	}
	if (version != REPO_VERSION || chunk != REPO_CHUNK_SIZE) {
		*err = xasprintf("%s/repo.json: version %lld with %lld-byte chunks, this vmferry knows version %d with %u",
		    r->dir, (long long)version, (long long)chunk, REPO_VERSION, REPO_CHUNK_SIZE);
		goto done;
	}
	if (json_is_null(enc)) {
		if (key != NULL) {
			*err = xasprintf("repository %s is not encrypted, but a key file (%s) was given", r->dir, key_file);
			goto done;
		}
		rc = 0;
		goto done;
	}
	if (json_unpack(enc, "{s:s,s:s,s:s}", "cipher", &cipher, "ids", &ids, "key_check", &check) != 0 ||
	    strcmp(cipher, "aes-256-gcm") != 0 || strcmp(ids, "hmac-sha256") != 0 ||
	    repo_unhex(check, strlen(check), want, sizeof(want), 1) != 0) {
		*err = xasprintf("%s/repo.json: unknown encryption", r->dir);
		goto done;
	}
	if (key == NULL) {
		*err = xasprintf("repository %s is encrypted: its key file is needed", r->dir);
		goto done;
	}
	subkey(key, label_check, have);
	if (memcmp(have, want, sizeof(have)) != 0) {
		*err = xasprintf("repository %s: the key in %s is not the repository's key", r->dir, key_file);
		goto done;
	}
	r->encrypted = 1;
	rc = 0;
done:
	json_decref(root);
	return rc;
}

/* A new repository's repo.json, created only if there is none (link()
 * fails on an existing name, so two openers cannot both make one). */
static int
create_config(struct repo *r, const uint8_t *key, int *exists, char **err)
{
	json_t *root, *enc = json_null();
	char *text, *tmp = repo_tmp_name("repo.json");
	struct repo_piece piece;
	int rc = -1;

	*exists = 0;
	if (key != NULL) {
		uint8_t check[CRYPTO_HASH_LEN];
		char hex[2 * CRYPTO_HASH_LEN + 1];

		subkey(key, label_check, check);
		hex_of(check, sizeof(check), hex);
		enc = json_pack("{s:s,s:s,s:s}", "cipher", "aes-256-gcm", "ids", "hmac-sha256", "key_check", hex);
	}
	root = json_pack("{s:s,s:i,s:i,s:o}", "format", REPO_FORMAT, "version", REPO_VERSION, "chunk_size",
	    REPO_CHUNK_SIZE, "encryption", enc);
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	piece.p = text;
	piece.n = strlen(text);
	if (repo_write_new(r, tmp, &piece, 1, err) != 0)
		goto done;
	if (linkat(r->dfd, tmp, r->dfd, "repo.json", 0) != 0) {
		if (errno == EEXIST)
			*exists = 1;
		else
			*err = xasprintf("%s/repo.json: %s", r->dir, strerror(errno));
		unlinkat(r->dfd, tmp, 0);
		goto done;
	}
	unlinkat(r->dfd, tmp, 0);
	rc = repo_fsync_dir(r, ".", err);
done:
	free(text);
	free(tmp);
	return rc;
}

/* The directories every repository has. */
static int
make_dirs(struct repo *r, char **err)
{
	static const char *const top[] = { "chunks", "points", "tmp", "damaged" };
	char rel[16];
	size_t i;

	for (i = 0; i < ARRAY_LEN(top); i++)
		if (mkdirat(r->dfd, top[i], 0700) != 0 && errno != EEXIST)
			goto fail;
	for (i = 0; i < 256; i++) {
		snprintf(rel, sizeof(rel), "chunks/%02zx", i);
		if (mkdirat(r->dfd, rel, 0700) != 0 && errno != EEXIST)
			goto fail;
	}
	return repo_fsync_dir(r, "chunks", err) == 0 && repo_fsync_dir(r, ".", err) == 0 ? 0 : -1;
fail:
	*err = xasprintf("%s: cannot make its directories: %s", r->dir, strerror(errno));
	return -1;
}

/* A directory that is not a repository may be made one only when it is
 * empty (or holds what an interrupted repo_open made). */
static int
dir_is_fresh(struct repo *r, char **err)
{
	int fd = openat(r->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	int fresh = 1;

	if (d == NULL) {
		*err = xasprintf("%s: %s", r->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, "chunks") != 0 &&
		    strcmp(e->d_name, "points") != 0 && strcmp(e->d_name, "tmp") != 0 &&
		    strcmp(e->d_name, "damaged") != 0)
			fresh = 0;
	closedir(d);
	if (!fresh)
		*err = xasprintf("%s is not empty and not a vmferry repository (no repo.json)", r->dir);
	return fresh ? 0 : -1;
}

/* readonly: an existing repository only, and nothing made or written
 * (an instant recovery's nbdkit reads what the daemon writes). */
static int
open_repo(const char *dir, const char *key_file, int readonly, struct repo **out, char **err)
{
	struct repo *r = xcalloc(1, sizeof(*r));
	uint8_t keybuf[CRYPTO_KEY_LEN], *key = NULL, *text = NULL;
	size_t len;
	int missing, exists, tries;

	*out = NULL;
	*err = NULL;
	r->dfd = -1;
	r->dir = xstrdup(dir);
	pthread_mutex_init(&r->lock, NULL);
	if (key_file != NULL) {
		if (read_key(key_file, keybuf, err) != 0)
			goto fail;
		key = keybuf;
	}
	if (!readonly && mkdir_p(dir, err) != 0)
		goto fail;
	if ((r->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		*err = xasprintf("%s: %s", dir, strerror(errno));
		goto fail;
	}
	for (tries = 0;; tries++) {
		char *why = NULL;

		if (repo_read_file(r, "repo.json", 65536, &text, &len, &missing, &why) == 0) {
			free(why);
			if (check_config(r, text, len, key, key_file, err) != 0)
				goto fail;
			if (!readonly && make_dirs(r, err) != 0)
				goto fail;
			break;
		}
		if (!missing || tries > 0 || readonly) {
			*err = missing && readonly ? xasprintf("%s is not a vmferry repository (no repo.json)", dir) : why;
			if (*err != why)
				free(why);
			goto fail;
		}
		free(why);
		if (dir_is_fresh(r, err) != 0 || make_dirs(r, err) != 0)
			goto fail;
		if (create_config(r, key, &exists, err) != 0) {
			if (!exists)
				goto fail;
			continue; /* made meanwhile by another opener: check it */
		}
		r->encrypted = key != NULL;
		break;
	}
	if (key != NULL) {
		subkey(key, label_id, r->id_key);
		subkey(key, label_enc, r->enc_key);
		explicit_bzero(keybuf, sizeof(keybuf));
	}
	free(text);
	*out = r;
	return 0;
fail:
	explicit_bzero(keybuf, sizeof(keybuf));
	free(text);
	repo_close(r);
	return -1;
}

int
repo_open(const char *dir, const char *key_file, struct repo **out, char **err)
{
	return open_repo(dir, key_file, 0, out, err);
}

int
repo_open_readonly(const char *dir, const char *key_file, struct repo **out, char **err)
{
	return open_repo(dir, key_file, 1, out, err);
}

int
repo_check_key(const struct repo *r, const char *key_file, char **err)
{
	uint8_t key[CRYPTO_KEY_LEN], id_key[CRYPTO_HASH_LEN], diff = 0;
	size_t i;

	*err = NULL;
	if (key_file == NULL) {
		if (!r->encrypted)
			return 0;
		*err = xasprintf("repository %s is encrypted: its key file is needed", r->dir);
		return -1;
	}
	if (read_key(key_file, key, err) != 0)
		return -1;
	if (!r->encrypted) {
		explicit_bzero(key, sizeof(key));
		*err = xasprintf("repository %s is not encrypted, but a key file (%s) was given", r->dir, key_file);
		return -1;
	}
	subkey(key, label_id, id_key);
	explicit_bzero(key, sizeof(key));
	for (i = 0; i < sizeof(id_key); i++)
		diff |= id_key[i] ^ r->id_key[i];
	explicit_bzero(id_key, sizeof(id_key));
	if (diff != 0) {
		*err = xasprintf("repository %s: the key in %s is not the repository's key", r->dir, key_file);
		return -1;
	}
	return 0;
}

void
repo_close(struct repo *r)
{
	if (r == NULL)
		return;
	if (r->writers != NULL)
		fatal("repo_close: a point of %s is still being written", r->dir);
	if (r->dfd >= 0)
		close(r->dfd);
	explicit_bzero(r->id_key, sizeof(r->id_key));
	explicit_bzero(r->enc_key, sizeof(r->enc_key));
	pthread_mutex_destroy(&r->lock);
	free(r->dir);
	free(r);
}

int
repo_encrypted(const struct repo *r)
{
	return r->encrypted;
}

/* ---- chunks ---- */

static int
all_zero(const uint8_t *p, size_t len)
{
	/* Compares the buffer with itself shifted by one byte: memcmp's
	 * speed, no second buffer. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

int
repo_chunk_id_is_zero(const uint8_t id[REPO_ID_LEN])
{
	return all_zero(id, REPO_ID_LEN);
}

void
repo_chunk_id(const struct repo *r, const void *buf, size_t len, uint8_t id[REPO_ID_LEN])
{
	if (all_zero(buf, len))
		memset(id, 0, REPO_ID_LEN);
	else if (r->encrypted)
		crypto_hmac_sha256(r->id_key, buf, len, id);
	else
		crypto_sha256(buf, len, id);
}

void
repo_chunk_path(const uint8_t id[REPO_ID_LEN], char path[80])
{
	char hex[2 * REPO_ID_LEN + 1];

	repo_id_hex(id, hex);
	snprintf(path, 80, "chunks/%02x/%s", id[0], hex);
}

int
repo_chunk_has(const struct repo *r, const uint8_t id[REPO_ID_LEN])
{
	char path[80];
	struct stat st;

	if (repo_chunk_id_is_zero(id))
		return 1;
	repo_chunk_path(id, path);
	/* One call both finds the chunk and renews its time. */
	if (utimensat(r->dfd, path, NULL, 0) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return fstatat(r->dfd, path, &st, 0) == 0;
}

static void
chunk_head(uint8_t h[CHUNK_HEAD], uint8_t flags, size_t plain, size_t payload)
{
	memcpy(h, "VFCK", 4);
	h[4] = CHUNK_VERSION;
	h[5] = flags;
	h[6] = h[7] = 0;
	put_be32(h + 8, (uint32_t)plain);
	put_be32(h + 12, (uint32_t)payload);
}

/* What AES-GCM authenticates besides the payload: the header and the id,
 * so that no chunk file can stand in for another. */
static void
chunk_aad(uint8_t aad[CHUNK_HEAD + REPO_ID_LEN], const uint8_t h[CHUNK_HEAD], const uint8_t id[REPO_ID_LEN])
{
	memcpy(aad, h, CHUNK_HEAD);
	memcpy(aad + CHUNK_HEAD, id, REPO_ID_LEN);
}

/* Memory for a chunk (a reader keeps it, a writer fills it), aligned
 * for O_DIRECT, on transparent huge pages where the kernel gives them
 * (its "always" or "madvise" mode).  A fresh 4 MiB
 * of 4 KiB pages costs 1,024 page faults, and on a virtual machine each
 * first touch of a page is dear, twice when the kernel touched it first
 * (the copy from the page cache) and the hash next: it cost an instant
 * recovery's first read three times the device's read of the chunk
 * (tools/bench figure 9h'); two huge pages are two faults. */
static uint8_t *
chunk_mem(size_t n)
{
	void *p;

	if (n < HUGE_PAGE) {
		/* Aligned for O_DIRECT all the same (repo_buf_alloc). */
		if (posix_memalign(&p, DIRECT_ALIGN, n ? n : 1) != 0)
			fatal("out of memory (%zu bytes)", n);
		return p;
	}
	if (posix_memalign(&p, HUGE_PAGE, n) != 0)
		fatal("out of memory (%zu bytes)", n);
#ifdef MADV_HUGEPAGE
	(void)madvise(p, n & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE); /* only a hint */
#endif
	return p;
}

/* A chunk file's bytes before its payload, and its whole size rounded
 * up for write_chunk_file. */
static size_t
file_room(const struct repo *r)
{
	return CHUNK_HEAD + (r->encrypted ? CRYPTO_NONCE_LEN : 0);
}

static size_t
file_cap(const struct repo *r, size_t len)
{
	size_t over = r->encrypted ? CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN : 0;

	return (CHUNK_HEAD + over + len + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);
}

void *
repo_buf_alloc(const struct repo *r, size_t len)
{
	return chunk_mem(file_cap(r, len)) + file_room(r);
}

void
repo_buf_free(const struct repo *r, void *buf)
{
	if (buf != NULL)
		free((uint8_t *)buf - file_room(r));
}

/* buf is the caller's (copied) or, inplace, a repo_buf_alloc buffer
 * whose plain bytes become the file where zstd does not shrink them. */
static int
seal(const struct repo *r, void *buf, size_t len, int inplace, struct repo_sealed *out, char **err)
{
	uint8_t aad[CHUNK_HEAD + REPO_ID_LEN], *file = NULL, *payload, *mem = NULL;
	size_t n = 0, over = r->encrypted ? CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN : 0, room = file_room(r);
	char hex[2 * REPO_ID_LEN + 1];
	uint8_t flags = 0;
	int fd;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	*err = NULL;
	if (len == 0 || len > REPO_CHUNK_SIZE) {
		*err = xasprintf("a chunk of %zu bytes (1 to %u)", len, REPO_CHUNK_SIZE);
		return -1;
	}
	repo_chunk_id(r, buf, len, out->id);
	if (repo_chunk_has(r, out->id))
		return 0;

	/* The whole file in one buffer aligned for write_chunk_file: the
	 * compressed one, or the caller's where it has the room. */
	if (compress_worth(buf, len)) {
		mem = (uint8_t *)repo_buf_alloc(r, len) - room;
		if ((n = compress_zstd(buf, len, mem + room, len - 1)) > 0) {
			flags |= CHUNK_ZSTD;
			file = mem;
		}
	}
	if (file == NULL) {
		n = len;
		if (inplace) {
			file = (uint8_t *)buf - room;
		} else {
			if (mem == NULL)
				mem = (uint8_t *)repo_buf_alloc(r, len) - room;
			file = mem;
			if (!r->encrypted)
				memcpy(file + room, buf, len);
		}
	}
	payload = file + room;
	if (r->encrypted)
		flags |= CHUNK_AES_GCM;
	chunk_head(file, flags, len, n + over);
	repo_id_hex(out->id, hex);
	if (r->encrypted) {
		uint8_t *nonce = file + CHUNK_HEAD;

		/* In place where the payload is the caller's plain bytes. */
		chunk_aad(aad, file, out->id);
		if (crypto_random(nonce, CRYPTO_NONCE_LEN) != 0 ||
		    crypto_gcm_seal(r->enc_key, nonce, aad, sizeof(aad), flags & CHUNK_ZSTD ? payload : buf, n, payload,
		    payload + n) != 0) {
			*err = xasprintf("chunk %s: encryption failed", hex);
			free(mem);
			return -1;
		}
	}
	out->tmp = repo_tmp_name(hex);
	fd = write_chunk_file(r, out->tmp, file, CHUNK_HEAD + n + over, err);
	free(mem);
	if (fd < 0) {
		free(out->tmp);
		out->tmp = NULL;
		return -1;
	}
#ifdef SYNC_FILE_RANGE_WRITE
	/* The device starts on what went through the page cache (all of it
	 * where O_DIRECT was refused); the commit's fdatasync then mostly
	 * waits for what is already under way.  Only a hint. */
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
	out->fd = fd;
	out->stored = CHUNK_HEAD + n + over;
	return 0;
}

int
repo_chunk_seal(const struct repo *r, const void *buf, size_t len, struct repo_sealed *out, char **err)
{
	return seal(r, (void *)(uintptr_t)buf, len, 0, out, err);
}

int
repo_chunk_seal_buf(const struct repo *r, void *buf, size_t len, struct repo_sealed *out, char **err)
{
	return seal(r, buf, len, 1, out, err);
}

int
repo_chunk_commit(const struct repo *r, struct repo_sealed *s, char **err)
{
	char path[80];
	int fd = s->fd, rc = 0;

	*err = NULL;
	if (fd < 0)
		return 0;
	s->fd = -1;
	if (sync_close(r, s->tmp, fd, err) != 0) {
		rc = -1;
		goto done;
	}
	/* Its time says when it entered chunks/: a garbage collection that
	 * started before then leaves it (the time need not be durable: a
	 * collection after a crash starts anew). */
	(void)utimensat(r->dfd, s->tmp, NULL, 0);
	repo_chunk_path(s->id, path);
	if (renameat(r->dfd, s->tmp, r->dfd, path) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, path, strerror(errno));
		unlinkat(r->dfd, s->tmp, 0);
		rc = -1;
	}
done:
	free(s->tmp);
	s->tmp = NULL;
	if (rc != 0)
		s->stored = 0;
	return rc;
}

void
repo_chunk_abandon(const struct repo *r, struct repo_sealed *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		unlinkat(r->dfd, s->tmp, 0);
	}
	s->fd = -1;
	free(s->tmp);
	s->tmp = NULL;
}

int
repo_chunk_put(const struct repo *r, const void *buf, size_t len, uint8_t id[REPO_ID_LEN], uint64_t *stored_bytes,
    char **err)
{
	struct repo_sealed s;
	int rc = repo_chunk_seal(r, buf, len, &s, err);

	memcpy(id, s.id, REPO_ID_LEN);
	if (rc == 0)
		rc = repo_chunk_commit(r, &s, err);
	*stored_bytes = rc == 0 ? s.stored : 0;
	return rc;
}

/* The header of a chunk file of size bytes, checked against this
 * repository and the len plain bytes expected: 0 and the payload's
 * length in *plen, or -1 and why (malloc'd): the file is damaged. */
static int
chunk_head_check(const struct repo *r, const uint8_t *head, uint64_t size, size_t len, size_t *plen, char **why)
{
	size_t over = r->encrypted ? CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN : 0, n;
	uint8_t want_flags = r->encrypted ? CHUNK_AES_GCM : 0;

	if (size < CHUNK_HEAD) {
		*why = xasprintf("a file of %llu bytes, shorter than a chunk header", (unsigned long long)size);
		return -1;
	}
	*plen = get_be32(head + 12);
	if (memcmp(head, "VFCK", 4) != 0 || head[4] != CHUNK_VERSION || (head[5] & ~CHUNK_ZSTD) != want_flags ||
	    head[6] != 0 || head[7] != 0) {
		*why = xstrdup("not a chunk header of this repository");
		return -1;
	}
	if (get_be32(head + 8) != len) {
		*why = xasprintf("holds %u bytes, %zu expected", get_be32(head + 8), len);
		return -1;
	}
	if (size != CHUNK_HEAD + (uint64_t)*plen) {
		*why = xasprintf("a file of %llu bytes, its header says %llu", (unsigned long long)size,
		    (unsigned long long)(CHUNK_HEAD + (uint64_t)*plen));
		return -1;
	}
	n = *plen - over;
	if (*plen < over || (head[5] & CHUNK_ZSTD ? n == 0 || n >= len : n != len)) {
		*why = xasprintf("a payload of %zu bytes for %zu plain bytes", *plen, len);
		return -1;
	}
	return 0;
}

/* The len plain bytes of a checked chunk file that is not stored plain
 * (head[5] != 0), from its plen payload bytes (overwritten), into buf:
 * 0, or -1 and why (malloc'd): the file is damaged. */
static int
chunk_unseal(const struct repo *r, const uint8_t id[REPO_ID_LEN], const uint8_t *head, uint8_t *payload,
    size_t plen, void *buf, size_t len, char **why)
{
	uint8_t aad[CHUNK_HEAD + REPO_ID_LEN], *data = payload;
	size_t n = plen - (r->encrypted ? CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN : 0);

	if (r->encrypted) {
		data = payload + CRYPTO_NONCE_LEN;
		chunk_aad(aad, head, id);
		if (crypto_gcm_open(r->enc_key, payload, aad, sizeof(aad), data, n, data + n,
		    head[5] & CHUNK_ZSTD ? data : buf) != 0) {
			*why = xstrdup("does not decrypt (damaged, or not this chunk)");
			return -1;
		}
	}
	if (head[5] & CHUNK_ZSTD && compress_unzstd(data, n, buf, len, why) != 0)
		return -1;
	return 0;
}

int
repo_chunk_load(const struct repo *r, const uint8_t id[REPO_ID_LEN], void *buf, size_t len, int *bad, char **err)
{
	char path[80], hex[2 * REPO_ID_LEN + 1];
	uint8_t head[CHUNK_HEAD], got[REPO_ID_LEN], *payload = NULL;
	size_t plen;
	struct stat st;
	char *why = NULL;
	int fd;

	*bad = 0;
	*err = NULL;
	repo_id_hex(id, hex);
	repo_chunk_path(id, path);
	if ((fd = openat(r->dfd, path, O_RDONLY | O_CLOEXEC)) < 0) {
		*err = errno == ENOENT ? xasprintf("chunk %s: missing", hex) :
		    xasprintf("chunk %s: %s/%s: %s", hex, r->dir, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || (st.st_size >= CHUNK_HEAD && pread_all(fd, head, CHUNK_HEAD, 0) != 0)) {
		*err = xasprintf("chunk %s: %s/%s: %s", hex, r->dir, path, strerror(errno));
		close(fd);
		return -1;
	}
	*bad = 1;
	if (chunk_head_check(r, head, (uint64_t)st.st_size, len, &plen, &why) != 0)
		goto fail;
	if (head[5] == 0) {
		/* Plain: read straight into the caller's buffer. */
		if (pread_all(fd, buf, len, CHUNK_HEAD) != 0)
			goto io;
	} else {
		payload = xmalloc(plen);
		if (pread_all(fd, payload, plen, CHUNK_HEAD) != 0)
			goto io;
		if (chunk_unseal(r, id, head, payload, plen, buf, len, &why) != 0)
			goto fail;
	}
	close(fd);
	free(payload);
	repo_chunk_id(r, buf, len, got);
	if (memcmp(got, id, REPO_ID_LEN) != 0) {
		*err = xasprintf("chunk %s: damaged: its bytes do not have its id", hex);
		return -1;
	}
	*bad = 0;
	return 0;
io:
	*bad = 0;
	*err = xasprintf("chunk %s: %s/%s: %s", hex, r->dir, path, strerror(errno));
	close(fd);
	free(payload);
	return -1;
fail:
	*err = xasprintf("chunk %s: damaged: %s", hex, why);
	free(why);
	close(fd);
	free(payload);
	return -1;
}

int
repo_chunk_read(const struct repo *r, const uint8_t id[REPO_ID_LEN], size_t len, struct repo_chunk_mem *out,
    char **err)
{
	size_t over = r->encrypted ? CRYPTO_NONCE_LEN + CRYPTO_TAG_LEN : 0, plen;
	char path[80], hex[2 * REPO_ID_LEN + 1], *why = NULL;
	uint8_t got[REPO_ID_LEN], *file = NULL, *plain = NULL;
	struct stat st;
	int fd;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	if (len == 0 || len > REPO_CHUNK_SIZE) {
		*err = xasprintf("a chunk of %zu bytes (1 to %u)", len, REPO_CHUNK_SIZE);
		return -1;
	}
	if (repo_chunk_id_is_zero(id)) {
		out->mem = chunk_mem(len);
		memset(out->mem, 0, len);
		out->plain = out->mem;
		return 0;
	}
	repo_id_hex(id, hex);
	repo_chunk_path(id, path);
	if ((fd = openat(r->dfd, path, O_RDONLY | O_CLOEXEC)) < 0) {
		*err = errno == ENOENT ? xasprintf("chunk %s: missing", hex) :
		    xasprintf("chunk %s: %s/%s: %s", hex, r->dir, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0)
		goto io;
	/* No chunk file of len bytes is longer (its header says the rest). */
	if ((uint64_t)st.st_size > CHUNK_HEAD + over + len) {
		why = xasprintf("a file of %lld bytes, longer than any chunk of %zu bytes", (long long)st.st_size, len);
		goto fail;
	}
	/* The whole file in one read: the kernel's read-ahead then takes it
	 * at once, not in windows growing from a header's 16 bytes. */
	file = chunk_mem((size_t)st.st_size);
	if (pread_all(fd, file, (size_t)st.st_size, 0) != 0)
		goto io;
	if (chunk_head_check(r, file, (uint64_t)st.st_size, len, &plen, &why) != 0)
		goto fail;
	if (file[5] == 0) {
		/* Plain: its bytes are the payload, where they are. */
		out->mem = file;
		out->plain = file + CHUNK_HEAD;
	} else {
		plain = chunk_mem(len);
		if (chunk_unseal(r, id, file, file + CHUNK_HEAD, plen, plain, len, &why) != 0)
			goto fail;
		free(file);
		out->mem = plain;
		out->plain = plain;
	}
	close(fd);
	repo_chunk_id(r, out->plain, len, got);
	if (memcmp(got, id, REPO_ID_LEN) != 0) {
		repo_chunk_mem_free(out);
		*err = xasprintf("chunk %s: damaged: its bytes do not have its id", hex);
		return -1;
	}
	return 0;
io:
	*err = xasprintf("chunk %s: %s/%s: %s", hex, r->dir, path, strerror(errno));
	close(fd);
	free(file);
	return -1;
fail:
	*err = xasprintf("chunk %s: damaged: %s", hex, why);
	free(why);
	close(fd);
	free(plain);
	free(file);
	return -1;
}

void
repo_chunk_mem_free(struct repo_chunk_mem *m)
{
	free(m->mem);
	m->mem = NULL;
	m->plain = NULL;
}

int
repo_chunk_get(const struct repo *r, const uint8_t id[REPO_ID_LEN], void *buf, size_t len, char **err)
{
	int bad;

	*err = NULL;
	if (len == 0 || len > REPO_CHUNK_SIZE) {
		*err = xasprintf("a chunk of %zu bytes (1 to %u)", len, REPO_CHUNK_SIZE);
		return -1;
	}
	if (repo_chunk_id_is_zero(id)) {
		memset(buf, 0, len);
		return 0;
	}
	return repo_chunk_load(r, id, buf, len, &bad, err);
}
