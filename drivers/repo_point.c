/* Restore points of the backup repository: manifest.json and disk<N>.idx
 * (their formats, both ways), the writer (a temporary directory renamed
 * into points/ last), listing, reading and deleting.
 * docs/REPOSITORY.md describes every byte written here. */
#include "drivers/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "drivers/crypto.h"
#include "drivers/repo_private.h"
#include "engine/core/util.h"

#define POINT_FORMAT "vmferry-point"
#define POINT_VERSION 1
#define INDEX_VERSION 1
#define MANIFEST_MAX (16u * 1024 * 1024)
#define INDEX_MAX (REPO_INDEX_HEAD + 32 * (REPO_MAX_CAPACITY / REPO_CHUNK_SIZE) + 32)

/* manifest.json is exactly
 *   {"checksum":"<64 hex>","manifest":BODY}\n
 * and the checksum is the SHA-256 of BODY's bytes as they stand, so that a
 * reader checks it by slicing, without writing JSON again. */
#define MF_PREFIX "{\"checksum\":\""
#define MF_MIDDLE "\",\"manifest\":"
#define MF_BODY (sizeof(MF_PREFIX) - 1 + 64 + sizeof(MF_MIDDLE) - 1)
#define MF_SUFFIX "}\n"

static const char *const mode_names[] = { "full", "incremental", "differential" };

const char *
repo_mode_name(enum repo_mode m)
{
	return (unsigned)m < ARRAY_LEN(mode_names) ? mode_names[m] : "?";
}

static void
hex32(const uint8_t p[32], char out[65])
{
	repo_id_hex(p, out);
}

static int
unhex32(const char *s, uint8_t out[32])
{
	return repo_unhex(s, strlen(s), out, 32, 1);
}

static int
valid_utf8(const char *s)
{
	json_t *j = s != NULL ? json_string(s) : NULL;

	json_decref(j);
	return s == NULL || j != NULL;
}

void
repo_point_free(struct repo_point *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->ndisks; i++) {
		free((void *)p->disks[i].change_id);
		free((void *)p->disks[i].file);
		free((void *)p->disks[i].ids);
	}
	free(p->disks);
	free((void *)p->rule);
	free((void *)p->vm);
	free((void *)p->config);
	free(p);
}

/* ---- the index ---- */

/* "VFIX", version, chunk size, 4 reserved bytes, capacity, chunk count
 * (big-endian); the ids; SHA-256 of everything before it. */
static void
index_head(uint8_t h[REPO_INDEX_HEAD], uint64_t capacity, uint64_t count)
{
	memcpy(h, "VFIX", 4);
	put_be32(h + 4, INDEX_VERSION);
	put_be32(h + 8, REPO_CHUNK_SIZE);
	put_be32(h + 12, 0);
	put_be64(h + 16, capacity);
	put_be64(h + 24, count);
}

int
repo_index_head(const uint8_t h[REPO_INDEX_HEAD], uint64_t file_size, uint64_t *capacity, uint64_t *count,
    char **err)
{
	*capacity = get_be64(h + 16);
	*count = get_be64(h + 24);
	if (memcmp(h, "VFIX", 4) != 0 || get_be32(h + 4) != INDEX_VERSION || get_be32(h + 8) != REPO_CHUNK_SIZE ||
	    get_be32(h + 12) != 0) {
		*err = xstrdup("not an index of version 1 with 4 MiB chunks");
		return -1;
	}
	if (*capacity == 0 || *capacity > REPO_MAX_CAPACITY) {
		*err = xasprintf("capacity %llu (1 byte to 64 TiB)", (unsigned long long)*capacity);
		return -1;
	}
	if (*count != repo_disk_chunks(*capacity)) {
		*err = xasprintf("%llu chunks for a capacity of %llu bytes", (unsigned long long)*count,
		    (unsigned long long)*capacity);
		return -1;
	}
	if (file_size != REPO_INDEX_HEAD + 32 * *count + 32) {
		*err = xasprintf("%llu bytes for %llu chunks", (unsigned long long)file_size, (unsigned long long)*count);
		return -1;
	}
	return 0;
}

/* Checks buf as an index; *sum gets its checksum. */
static int
index_check(const uint8_t *buf, size_t len, uint64_t *capacity, uint64_t *count, uint8_t sum[32], char **err)
{
	if (len < REPO_INDEX_HEAD + 32) {
		*err = xasprintf("%zu bytes, shorter than an index", len);
		return -1;
	}
	if (repo_index_head(buf, len, capacity, count, err) != 0)
		return -1;
	crypto_sha256(buf, len - 32, sum);
	if (memcmp(sum, buf + len - 32, 32) != 0) {
		*err = xstrdup("checksum mismatch");
		return -1;
	}
	return 0;
}

int
repo_index_parse(const void *buf, size_t len, struct repo_disk *d, char **err)
{
	uint64_t capacity, count;
	uint8_t sum[32];
	void *ids;

	*err = NULL;
	if (index_check(buf, len, &capacity, &count, sum, err) != 0)
		return -1;
	ids = xmalloc(count * 32);
	memcpy(ids, (const uint8_t *)buf + REPO_INDEX_HEAD, count * 32);
	d->capacity = capacity;
	d->nchunks = count;
	d->ids = ids;
	return 0;
}

int
repo_index_scan(const struct repo *r, const char *rule, const char *vm, uint64_t seq, size_t n,
    const struct repo_disk *d, repo_id_fn fn, void *arg, char **err)
{
	char *rel = xasprintf("points/%s/%s/%llu/disk%zu.idx", rule, vm, (unsigned long long)seq, n);
	uint8_t head[REPO_INDEX_HEAD], sum[32], trailer[32], *buf = xmalloc(1u << 20);
	struct crypto_sha256 *h = crypto_sha256_new();
	uint64_t capacity, count, i = 0;
	struct stat st;
	FILE *f;
	int rc = -1;
	char *why = NULL;

	if ((f = fdopen(openat(r->dfd, rel, O_RDONLY | O_CLOEXEC), "rb")) == NULL || fstat(fileno(f), &st) != 0) {
		why = xstrdup(strerror(errno));
		goto done;
	}
	if (fread(head, 1, sizeof(head), f) != sizeof(head)) {
		why = xstrdup("shorter than an index");
		goto done;
	}
	if (repo_index_head(head, (uint64_t)st.st_size, &capacity, &count, &why) != 0)
		goto done;
	if (capacity != d->capacity) {
		why = xasprintf("capacity %llu, the manifest says %llu", (unsigned long long)capacity,
		    (unsigned long long)d->capacity);
		goto done;
	}
	crypto_sha256_add(h, head, sizeof(head));
	while (i < count) {
		size_t k, want = count - i > (1u << 15) ? (1u << 15) : (size_t)(count - i);

		if (fread(buf, 32, want, f) != want) {
			why = xstrdup("cut short");
			goto done;
		}
		crypto_sha256_add(h, buf, want * 32);
		for (k = 0; k < want; k++, i++)
			fn(arg, buf + 32 * k, repo_chunk_len(capacity, i));
	}
	if (fread(trailer, 1, 32, f) != 32) {
		why = xstrdup("cut short");
		goto done;
	}
	crypto_sha256_end(h, sum);
	h = NULL;
	if (memcmp(sum, trailer, 32) != 0)
		why = xstrdup("checksum mismatch");
	else if (memcmp(sum, d->index_sha, 32) != 0)
		why = xstrdup("not the index the manifest names");
	else
		rc = 0;
done:
	if (rc != 0)
		*err = xasprintf("%s/%s: %s", r->dir, rel, why);
	if (h != NULL)
		crypto_sha256_end(h, sum);
	if (f != NULL)
		fclose(f);
	free(why);
	free(buf);
	free(rel);
	return rc;
}

/* ---- the manifest ---- */

static json_t *
manifest_body(const struct repo_writer *w, int64_t end, uint64_t bytes_read, uint64_t bytes_stored)
{
	json_t *disks = json_array(), *config = json_null();
	char hex[65];
	size_t i;

	if (w->config != NULL)
		config = json_loads(w->config, JSON_DECODE_ANY, NULL); /* checked at begin */
	for (i = 0; i < w->ndisks; i++) {
		const struct repo_writer_disk *d = &w->disks[i];

		hex32(d->index_sha, hex);
		json_array_append_new(disks, json_pack("{s:i,s:I,s:s?,s:s?,s:s}", "key", d->key, "capacity",
		    (json_int_t)d->capacity, "change_id", d->change_id, "file", d->file, "index_sha256", hex));
	}
	return json_pack("{s:s,s:i,s:s,s:s,s:I,s:s,s:o,s:I,s:I,s:I,s:I,s:o,s:o}", "format", POINT_FORMAT, "version",
	    POINT_VERSION, "rule", w->rule, "vm", w->vm, "seq", (json_int_t)w->seq, "mode", repo_mode_name(w->mode),
	    "parent", w->parent != 0 ? json_integer((json_int_t)w->parent) : json_null(), "start", (json_int_t)w->start,
	    "end", (json_int_t)end, "bytes_read", (json_int_t)bytes_read, "bytes_stored", (json_int_t)bytes_stored,
	    "config", config, "disks", disks);
}

static char *
manifest_text(const struct repo_writer *w, int64_t end, uint64_t bytes_read, uint64_t bytes_stored, size_t *len)
{
	json_t *body = manifest_body(w, end, bytes_read, bytes_stored);
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS), *file, hex[65];
	uint8_t sum[32];

	json_decref(body);
	crypto_sha256(text, strlen(text), sum);
	hex32(sum, hex);
	file = xasprintf("%s%s%s%s%s", MF_PREFIX, hex, MF_MIDDLE, text, MF_SUFFIX);
	free(text);
	*len = strlen(file);
	return file;
}

/* A non-negative integer member of at most max. */
static int
get_uint(json_t *o, const char *name, uint64_t max, uint64_t *v, char **err)
{
	json_t *j = json_object_get(o, name);

	if (!json_is_integer(j) || json_integer_value(j) < 0 || (uint64_t)json_integer_value(j) > max) {
		*err = xasprintf("manifest: %s is not an integer from 0 to %llu", name, (unsigned long long)max);
		return -1;
	}
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

/* A string member (NULL allowed when nullable). */
static int
get_str(json_t *o, const char *name, int nullable, const char **v, char **err)
{
	json_t *j = json_object_get(o, name);

	*v = NULL;
	if (nullable && (j == NULL || json_is_null(j)))
		return 0;
	if (!json_is_string(j) || strlen(json_string_value(j)) != json_string_length(j)) {
		*err = xasprintf("manifest: %s is not a string", name);
		return -1;
	}
	*v = json_string_value(j);
	return 0;
}

static int
parse_disk(json_t *o, size_t i, struct repo_disk *d, char **err)
{
	const char *change_id, *file, *sha;
	uint64_t key;
	char *why = NULL;

	if (!json_is_object(o) || get_uint(o, "key", INT32_MAX, &key, &why) != 0 ||
	    get_uint(o, "capacity", REPO_MAX_CAPACITY, &d->capacity, &why) != 0 ||
	    get_str(o, "change_id", 1, &change_id, &why) != 0 || get_str(o, "file", 1, &file, &why) != 0 ||
	    get_str(o, "index_sha256", 0, &sha, &why) != 0) {
		*err = xasprintf("manifest: disk %zu: %s", i, why != NULL ? why + strlen("manifest: ") : "not an object");
		free(why);
		return -1;
	}
	if (d->capacity == 0 || unhex32(sha, d->index_sha) != 0) {
		*err = xasprintf("manifest: disk %zu: %s", i, d->capacity == 0 ? "capacity 0" : "index_sha256 is not 64 hex digits");
		return -1;
	}
	d->key = (int)key;
	d->nchunks = repo_disk_chunks(d->capacity);
	d->change_id = change_id != NULL ? xstrdup(change_id) : NULL;
	d->file = file != NULL ? xstrdup(file) : NULL;
	return 0;
}

static int
parse_body(json_t *b, struct repo_point *p, char **err)
{
	const char *fmt, *rule, *vm, *mode;
	uint64_t version, v;
	json_t *parent, *config, *disks;
	size_t i;

	if (!json_is_object(b)) {
		*err = xstrdup("manifest: the body is not a JSON object");
		return -1;
	}
	if (get_str(b, "format", 0, &fmt, err) != 0)
		return -1;
	if (strcmp(fmt, POINT_FORMAT) != 0) {
		*err = xstrdup("manifest: not a vmferry point manifest");
		return -1;
	}
	if (get_uint(b, "version", UINT32_MAX, &version, err) != 0)
		return -1;
	if (version != POINT_VERSION) {
		*err = xasprintf("manifest: version %llu, this vmferry knows %d", (unsigned long long)version,
		    POINT_VERSION);
		return -1;
	}
	if (get_str(b, "rule", 0, &rule, err) != 0 || get_str(b, "vm", 0, &vm, err) != 0 ||
	    get_str(b, "mode", 0, &mode, err) != 0 || get_uint(b, "seq", INT64_MAX, &p->seq, err) != 0 ||
	    get_uint(b, "start", INT64_MAX, &v, err) != 0)
		return -1;
	p->start = (int64_t)v;
	if (get_uint(b, "end", INT64_MAX, &v, err) != 0 || get_uint(b, "bytes_read", INT64_MAX, &p->bytes_read, err) != 0 ||
	    get_uint(b, "bytes_stored", INT64_MAX, &p->bytes_stored, err) != 0)
		return -1;
	p->end = (int64_t)v;
	if (!repo_name_ok(rule) || !repo_name_ok(vm) || p->seq == 0) {
		*err = xstrdup("manifest: rule, vm or seq cannot name a point");
		return -1;
	}
	for (i = 0; i < ARRAY_LEN(mode_names) && strcmp(mode, mode_names[i]) != 0; i++)
		;
	if (i == ARRAY_LEN(mode_names)) {
		*err = xstrdup("manifest: mode is not full, incremental or differential");
		return -1;
	}
	p->mode = (enum repo_mode)i;
	parent = json_object_get(b, "parent");
	if (p->mode == REPO_FULL ? !json_is_null(parent) :
	    !json_is_integer(parent) || json_integer_value(parent) < 1 || (uint64_t)json_integer_value(parent) >= p->seq) {
		*err = xstrdup("manifest: parent must be null for a full point, an earlier point otherwise");
		return -1;
	}
	p->parent = p->mode == REPO_FULL ? 0 : (uint64_t)json_integer_value(parent);
	if ((config = json_object_get(b, "config")) == NULL || (disks = json_object_get(b, "disks")) == NULL ||
	    !json_is_array(disks) || json_array_size(disks) > REPO_MAX_DISKS) {
		*err = xasprintf("manifest: config and disks (an array of at most %d) are needed", REPO_MAX_DISKS);
		return -1;
	}
	p->rule = xstrdup(rule);
	p->vm = xstrdup(vm);
	p->config = json_is_null(config) ? NULL : json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	p->disks = xcalloc(json_array_size(disks) + 1, sizeof(*p->disks));
	for (i = 0; i < json_array_size(disks); i++) {
		if (parse_disk(json_array_get(disks, i), i, &p->disks[i], err) != 0)
			return -1;
		p->ndisks = i + 1;
	}
	return 0;
}

int
repo_manifest_parse(const void *buf, size_t len, struct repo_point **out, char **err)
{
	const char *s = buf;
	uint8_t want[32], sum[32];
	char hex[65];
	json_error_t je;
	json_t *body;
	struct repo_point *p;

	*out = NULL;
	*err = NULL;
	if (len < MF_BODY + sizeof(MF_SUFFIX) - 1 || memcmp(s, MF_PREFIX, sizeof(MF_PREFIX) - 1) != 0 ||
	    memcmp(s + sizeof(MF_PREFIX) - 1 + 64, MF_MIDDLE, sizeof(MF_MIDDLE) - 1) != 0 ||
	    memcmp(s + len - (sizeof(MF_SUFFIX) - 1), MF_SUFFIX, sizeof(MF_SUFFIX) - 1) != 0) {
		*err = xstrdup("manifest: not {\"checksum\":...,\"manifest\":...}");
		return -1;
	}
	memcpy(hex, s + sizeof(MF_PREFIX) - 1, 64);
	hex[64] = '\0';
	if (unhex32(hex, want) != 0) {
		*err = xstrdup("manifest: the checksum is not 64 hex digits");
		return -1;
	}
	crypto_sha256(s + MF_BODY, len - MF_BODY - (sizeof(MF_SUFFIX) - 1), sum);
	if (memcmp(sum, want, 32) != 0) {
		*err = xstrdup("manifest: checksum mismatch");
		return -1;
	}
	body = json_loadb(s + MF_BODY, len - MF_BODY - (sizeof(MF_SUFFIX) - 1), JSON_REJECT_DUPLICATES, &je);
	if (body == NULL) {
		*err = xasprintf("manifest: %s", je.text);
		return -1;
	}
	p = xcalloc(1, sizeof(*p));
	if (parse_body(body, p, err) != 0) {
		json_decref(body);
		repo_point_free(p);
		return -1;
	}
	json_decref(body);
	*out = p;
	return 0;
}

int
repo_manifest_read(const struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    int *missing, char **err)
{
	char *rel = xasprintf("points/%s/%s/%llu/manifest.json", rule, vm, (unsigned long long)seq), *why = NULL;
	uint8_t *buf;
	size_t len;
	int rc = -1;

	*out = NULL;
	if (repo_read_file(r, rel, MANIFEST_MAX, &buf, &len, missing, err) != 0)
		goto done;
	if (repo_manifest_parse(buf, len, out, &why) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, why);
	} else if (strcmp((*out)->rule, rule) != 0 || strcmp((*out)->vm, vm) != 0 || (*out)->seq != seq) {
		*err = xasprintf("%s/%s: the manifest is of %s/%s/%llu", r->dir, rel, (*out)->rule, (*out)->vm,
		    (unsigned long long)(*out)->seq);
	} else {
		rc = 0;
	}
	if (rc != 0) {
		repo_point_free(*out);
		*out = NULL;
	}
	free(buf);
	free(why);
done:
	free(rel);
	return rc;
}

int
repo_point_manifest(struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    char **err)
{
	int missing = 0;

	if (!repo_name_ok(rule) || !repo_name_ok(vm)) {
		*out = NULL;
		*err = xasprintf("%s/%s: not a name a point can have", rule, vm);
		return -1;
	}
	return repo_manifest_read(r, rule, vm, seq, out, &missing, err);
}

/* ---- listing ---- */

void
repo_names_free(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Calls fn for the name of every directory in rel. */
static int
each_dir(const struct repo *r, const char *rel, void (*fn)(void *, const char *), void *arg, char **err)
{
	int fd = openat(r->dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (e->d_type == DT_DIR ||
		    (e->d_type == DT_UNKNOWN && fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)))
			fn(arg, e->d_name);
	}
	closedir(d);
	return 0;
}

struct names {
	char **v;
	size_t n;
};

static void
add_name(void *arg, const char *name)
{
	struct names *a = arg;

	if (!repo_name_ok(name))
		return;
	a->v = xgrow(a->v, a->n, sizeof(*a->v));
	a->v[a->n++] = xstrdup(name);
}

int
repo_dir_names(const struct repo *r, const char *rel, char ***names, size_t *n, char **err)
{
	struct names a = { NULL, 0 };

	if (each_dir(r, rel, add_name, &a, err) != 0) {
		repo_names_free(a.v, a.n);
		return -1;
	}
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), cmp_name);
	*names = a.v;
	*n = a.n;
	return 0;
}

struct seqs {
	uint64_t *v;
	size_t n;
};

/* Only a name a point gets: decimal digits, no leading zero. */
static void
add_seq(void *arg, const char *name)
{
	struct seqs *a = arg;
	uint64_t seq = 0;
	const char *p;

	if (name[0] < '1' || name[0] > '9' || strlen(name) > 18)
		return;
	for (p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return;
		seq = seq * 10 + (uint64_t)(*p - '0');
	}
	a->v = xgrow(a->v, a->n, sizeof(*a->v));
	a->v[a->n++] = seq;
}

int
repo_point_list(const struct repo *r, const char *rule, const char *vm, uint64_t **seqs, size_t *n, char **err)
{
	struct seqs a = { NULL, 0 };
	char *rel;
	int rc;

	*seqs = NULL;
	*n = 0;
	if (!repo_name_ok(rule) || !repo_name_ok(vm)) {
		*err = xstrdup("a rule or VM name that cannot name a directory");
		return -1;
	}
	rel = xasprintf("points/%s/%s", rule, vm);
	rc = each_dir(r, rel, add_seq, &a, err);
	free(rel);
	if (rc != 0) {
		free(a.v);
		return -1;
	}
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), cmp_u64);
	*seqs = a.v;
	*n = a.n;
	return 0;
}

int
repo_points(struct repo *r, const char *rule, const char *vm, uint64_t **seqs, size_t *n, char **err)
{
	*err = NULL;
	return repo_point_list(r, rule, vm, seqs, n, err);
}

/* ---- reading, deleting ---- */

int
repo_point_read(struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    char **err)
{
	struct repo_point *p;
	int missing;
	size_t i;

	*out = NULL;
	*err = NULL;
	if (!repo_name_ok(rule) || !repo_name_ok(vm) || seq == 0) {
		*err = xstrdup("a rule, VM or seq that cannot name a point");
		return -1;
	}
	if (repo_manifest_read(r, rule, vm, seq, &p, &missing, err) != 0) {
		if (missing) {
			free(*err);
			*err = xasprintf("no point %s/%s/%llu in %s", rule, vm, (unsigned long long)seq, r->dir);
		}
		return -1;
	}
	for (i = 0; i < p->ndisks; i++) {
		char *rel = xasprintf("points/%s/%s/%llu/disk%zu.idx", rule, vm, (unsigned long long)seq, i), *why = NULL;
		struct repo_disk *d = &p->disks[i];
		uint64_t capacity, count;
		uint8_t *buf, sum[32];
		size_t len;

		if (repo_read_file(r, rel, INDEX_MAX, &buf, &len, &missing, err) != 0) {
			free(rel);
			repo_point_free(p);
			return -1;
		}
		if (index_check(buf, len, &capacity, &count, sum, &why) == 0 && capacity != d->capacity)
			why = xasprintf("capacity %llu, the manifest says %llu", (unsigned long long)capacity,
			    (unsigned long long)d->capacity);
		else if (why == NULL && memcmp(sum, d->index_sha, 32) != 0)
			why = xstrdup("not the index the manifest names");
		if (why != NULL) {
			*err = xasprintf("%s/%s: %s", r->dir, rel, why);
			free(why);
			free(buf);
			free(rel);
			repo_point_free(p);
			return -1;
		}
		/* The ids move to the front of the file's buffer: no second
		 * copy of a large index. */
		memmove(buf, buf + REPO_INDEX_HEAD, count * 32);
		d->ids = xrealloc(buf, count * 32 > 0 ? count * 32 : 1);
		free(rel);
	}
	*out = p;
	return 0;
}

/* The open writer that reads against rule/vm/seq, if any (lock held). */
static const struct repo_writer *
pinned_by(const struct repo *r, const char *rule, const char *vm, uint64_t seq)
{
	const struct repo_writer *w;

	for (w = r->writers; w != NULL; w = w->next)
		if (w->parent == seq && strcmp(w->rule, rule) == 0 && strcmp(w->vm, vm) == 0)
			return w;
	return NULL;
}

int
repo_point_delete(struct repo *r, const char *rule, const char *vm, uint64_t seq, char **err)
{
	char *rel, *vmdir, *ruledir, *tmp;
	const struct repo_writer *w;
	int rc = -1;

	*err = NULL;
	if (!repo_name_ok(rule) || !repo_name_ok(vm) || seq == 0) {
		*err = xstrdup("a rule, VM or seq that cannot name a point");
		return -1;
	}
	rel = xasprintf("points/%s/%s/%llu", rule, vm, (unsigned long long)seq);
	vmdir = xasprintf("points/%s/%s", rule, vm);
	ruledir = xasprintf("points/%s", rule);
	tmp = repo_tmp_name("d");
	/* Under the lock, so that no writer can take the point as its parent
	 * between the check and the rename. */
	pthread_mutex_lock(&r->lock);
	if ((w = pinned_by(r, rule, vm, seq)) != NULL) {
		*err = xasprintf("point %s/%s/%llu is in use: the backup writing point %llu reads against it", rule, vm,
		    (unsigned long long)seq, (unsigned long long)w->seq);
		pthread_mutex_unlock(&r->lock);
		goto done;
	}
	if (renameat(r->dfd, rel, r->dfd, tmp) != 0) {
		*err = errno == ENOENT ? xasprintf("no point %s/%s/%llu in %s", rule, vm, (unsigned long long)seq, r->dir) :
		    xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		pthread_mutex_unlock(&r->lock);
		goto done;
	}
	pthread_mutex_unlock(&r->lock);
	if (repo_fsync_dir(r, vmdir, err) != 0)
		goto done;
	repo_remove(r, tmp);
	/* The VM's and the rule's directories go with their last point (a
	 * writer that made them meanwhile makes them again). */
	if (unlinkat(r->dfd, vmdir, AT_REMOVEDIR) == 0)
		unlinkat(r->dfd, ruledir, AT_REMOVEDIR);
	rc = 0;
done:
	free(tmp);
	free(ruledir);
	free(vmdir);
	free(rel);
	return rc;
}

/* ---- the writer ---- */

static void
writer_free(struct repo_writer *w)
{
	size_t i;

	for (i = 0; i < w->ndisks; i++) {
		free(w->disks[i].change_id);
		free(w->disks[i].file);
	}
	free(w->disks);
	free(w->rule);
	free(w->vm);
	free(w->config);
	free(w->tmp);
	free(w);
}

/* Takes w out of its repository's list, removes what it wrote, frees it. */
static void
writer_end(struct repo_writer *w, int remove)
{
	struct repo *r = w->r;
	struct repo_writer **pp;

	pthread_mutex_lock(&r->lock);
	for (pp = &r->writers; *pp != NULL && *pp != w; pp = &(*pp)->next)
		;
	if (*pp == w)
		*pp = w->next;
	pthread_mutex_unlock(&r->lock);
	if (remove)
		repo_remove(r, w->tmp);
	writer_free(w);
}

static int
point_exists(const struct repo *r, const char *rule, const char *vm, uint64_t seq)
{
	char *rel = xasprintf("points/%s/%s/%llu", rule, vm, (unsigned long long)seq);
	struct stat st;
	int rc = fstatat(r->dfd, rel, &st, 0) == 0;

	free(rel);
	return rc;
}

int
repo_point_begin(struct repo *r, const struct repo_point *p, struct repo_writer **out, char **err)
{
	struct repo_writer *w, *o;
	json_t *cfg = NULL;

	*out = NULL;
	*err = NULL;
	if (!repo_name_ok(p->rule) || !repo_name_ok(p->vm) || !valid_utf8(p->rule) || !valid_utf8(p->vm) ||
	    p->seq == 0 || p->seq > INT64_MAX ||
	    (unsigned)p->mode >= ARRAY_LEN(mode_names) || p->start < 0) {
		*err = xstrdup("a rule, VM, seq, mode or start time that cannot make a point");
		return -1;
	}
	if (p->mode == REPO_FULL ? p->parent != 0 : p->parent == 0 || p->parent >= p->seq) {
		*err = xasprintf("a %s point %llu with parent %llu: a full point has none, the others an earlier one",
		    repo_mode_name(p->mode), (unsigned long long)p->seq, (unsigned long long)p->parent);
		return -1;
	}
	if (p->config != NULL &&
	    (cfg = json_loads(p->config, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL)) == NULL) {
		*err = xstrdup("the VM configuration is not JSON");
		return -1;
	}
	json_decref(cfg);
	w = xcalloc(1, sizeof(*w));
	w->r = r;
	w->rule = xstrdup(p->rule);
	w->vm = xstrdup(p->vm);
	w->seq = p->seq;
	w->parent = p->parent;
	w->mode = p->mode;
	w->start = p->start;
	w->config = p->config != NULL ? xstrdup(p->config) : NULL;
	w->tmp = repo_tmp_name("p");
	w->begun = time(NULL);
	pthread_mutex_lock(&r->lock);
	for (o = r->writers; o != NULL; o = o->next)
		if (o->seq == p->seq && strcmp(o->rule, p->rule) == 0 && strcmp(o->vm, p->vm) == 0)
			break;
	if (o != NULL || point_exists(r, p->rule, p->vm, p->seq)) {
		*err = xasprintf("point %s/%s/%llu %s", p->rule, p->vm, (unsigned long long)p->seq,
		    o != NULL ? "is being written" : "exists");
		goto fail;
	}
	if (p->parent != 0 && !point_exists(r, p->rule, p->vm, p->parent)) {
		*err = xasprintf("parent point %s/%s/%llu does not exist", p->rule, p->vm, (unsigned long long)p->parent);
		goto fail;
	}
	if (mkdirat(r->dfd, w->tmp, 0700) != 0) {
		*err = xasprintf("%s/%s: %s", r->dir, w->tmp, strerror(errno));
		goto fail;
	}
	w->next = r->writers;
	r->writers = w;
	pthread_mutex_unlock(&r->lock);
	*out = w;
	return 0;
fail:
	pthread_mutex_unlock(&r->lock);
	writer_free(w);
	return -1;
}

int
repo_point_put_index(struct repo_writer *w, const struct repo_disk *d, char **err)
{
	uint8_t head[REPO_INDEX_HEAD], sum[32];
	struct crypto_sha256 *h;
	struct repo_piece pieces[3];
	struct repo_writer_disk *wd;
	char *rel;
	int rc;

	*err = NULL;
	if (w->ndisks >= REPO_MAX_DISKS || d->capacity == 0 || d->capacity > REPO_MAX_CAPACITY ||
	    d->nchunks != repo_disk_chunks(d->capacity) || d->ids == NULL) {
		*err = xasprintf("disk %zu: %llu chunks for %llu bytes (1 byte to 64 TiB, at most %d disks)", w->ndisks,
		    (unsigned long long)d->nchunks, (unsigned long long)d->capacity, REPO_MAX_DISKS);
		return -1;
	}
	if (!valid_utf8(d->change_id) || !valid_utf8(d->file)) {
		*err = xasprintf("disk %zu: its changeId or file name is not UTF-8", w->ndisks);
		return -1;
	}
	index_head(head, d->capacity, d->nchunks);
	h = crypto_sha256_new();
	crypto_sha256_add(h, head, sizeof(head));
	crypto_sha256_add(h, d->ids, d->nchunks * 32);
	crypto_sha256_end(h, sum);
	pieces[0] = (struct repo_piece){ head, sizeof(head) };
	pieces[1] = (struct repo_piece){ d->ids, d->nchunks * 32 };
	pieces[2] = (struct repo_piece){ sum, sizeof(sum) };
	rel = xasprintf("%s/disk%zu.idx", w->tmp, w->ndisks);
	rc = repo_write_new(w->r, rel, pieces, 3, err);
	free(rel);
	if (rc != 0)
		return -1;
	w->disks = xgrow(w->disks, w->ndisks, sizeof(*w->disks));
	wd = &w->disks[w->ndisks++];
	wd->key = d->key;
	wd->capacity = d->capacity;
	wd->change_id = d->change_id != NULL ? xstrdup(d->change_id) : NULL;
	wd->file = d->file != NULL ? xstrdup(d->file) : NULL;
	memcpy(wd->index_sha, sum, sizeof(sum));
	return 0;
}

/* points/<rule>/<vm>, made when missing (and made durable). */
static int
make_vm_dir(const struct repo *r, const char *rule, const char *vm, char **err)
{
	char *ruledir = xasprintf("points/%s", rule), *vmdir = xasprintf("points/%s/%s", rule, vm);
	int rc = -1;

	if (mkdirat(r->dfd, ruledir, 0700) == 0) {
		if (repo_fsync_dir(r, "points", err) != 0)
			goto done;
	} else if (errno != EEXIST) {
		goto fail;
	}
	if (mkdirat(r->dfd, vmdir, 0700) == 0) {
		if (repo_fsync_dir(r, ruledir, err) != 0)
			goto done;
	} else if (errno != EEXIST) {
		goto fail;
	}
	rc = 0;
	goto done;
fail:
	*err = xasprintf("%s/%s: %s", r->dir, vmdir, strerror(errno));
done:
	free(ruledir);
	free(vmdir);
	return rc;
}

int
repo_point_commit(struct repo_writer *w, int64_t end, uint64_t bytes_read, uint64_t bytes_stored, char **err)
{
	const struct repo *r = w->r;
	struct repo_piece piece;
	char *rel = xasprintf("%s/manifest.json", w->tmp), *text, *dest, *vmdir;
	size_t len;
	int tries, rc = -1;

	*err = NULL;
	dest = xasprintf("points/%s/%s/%llu", w->rule, w->vm, (unsigned long long)w->seq);
	vmdir = xasprintf("points/%s/%s", w->rule, w->vm);
	if (end < 0 || bytes_read > INT64_MAX || bytes_stored > INT64_MAX) {
		*err = xstrdup("an end time or byte count that a manifest cannot hold");
		text = NULL;
		goto done;
	}
	text = manifest_text(w, end, bytes_read, bytes_stored, &len);
	piece.p = text;
	piece.n = len;
	/* The point's files, then the chunks they name, then the point. */
	if (repo_write_new(r, rel, &piece, 1, err) != 0 || repo_fsync_dir(r, w->tmp, err) != 0 ||
	    repo_sync_chunk_dirs(r, err) != 0)
		goto done;
	for (tries = 0;; tries++) {
		if (make_vm_dir(r, w->rule, w->vm, err) != 0)
			goto done;
		if (renameat(r->dfd, w->tmp, r->dfd, dest) == 0)
			break;
		/* A repo_point_delete may have taken the VM's last point and
		 * its directory meanwhile. */
		if (errno == ENOENT && tries < 3)
			continue;
		*err = errno == EEXIST || errno == ENOTEMPTY ?
		    xasprintf("point %s/%s/%llu exists", w->rule, w->vm, (unsigned long long)w->seq) :
		    xasprintf("%s/%s: %s", r->dir, dest, strerror(errno));
		goto done;
	}
	if (repo_fsync_dir(r, vmdir, err) != 0) {
		/* Renamed but perhaps not durable: take it back rather than
		 * leave a point that may vanish. */
		if (renameat(r->dfd, dest, r->dfd, w->tmp) != 0)
			repo_remove(r, dest);
		goto done;
	}
	rc = 0;
done:
	writer_end(w, rc != 0);
	free(text);
	free(vmdir);
	free(dest);
	free(rel);
	return rc;
}

void
repo_point_abort(struct repo_writer *w)
{
	if (w != NULL)
		writer_end(w, 1);
}
