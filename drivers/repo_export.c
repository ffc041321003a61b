/* One disk of a restore point, read-only, with a small chunk cache (see
 * repo_export.h).  The format is drivers/repo*.c's business: this file
 * only asks them for the point (repo_point_read) and for chunks
 * (repo_chunk_read, which decrypts, decompresses and checks each one). */
#include "drivers/repo_export.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "engine/core/util.h"

struct cache_slot {
	uint64_t chunk;         /* UINT64_MAX: empty */
	uint64_t used;          /* tick of the last use (LRU) */
	struct repo_chunk_mem mem; /* the chunk's bytes (repo_chunk_read) */
};

struct repo_export {
	struct repo *r;
	uint64_t capacity, nchunks;
	uint8_t (*ids)[REPO_ID_LEN];
	pthread_mutex_t lock;   /* guards the cache and the counters */
	struct cache_slot *slots;
	unsigned nslots;
	uint64_t tick, hits, misses;
};

void
repo_export_conf_init(struct repo_export_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->disk = -1;
}

void
repo_export_conf_free(struct repo_export_conf *c)
{
	free(c->repo);
	free(c->key_file);
	free(c->rule);
	free(c->vm);
	repo_export_conf_init(c);
}

/* A decimal number from min to max, no sign, no leading zeros. */
static int
number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;
	const char *p;

	if (*s == '\0' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 20)
		return -1;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9' || n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	if (n < min || n > max)
		return -1;
	*out = n;
	return 0;
}

static int
set_string(char **slot, const char *key, const char *value, int is_name, char **err)
{
	if (*slot != NULL) {
		*err = xasprintf("%s= given twice", key);
		return -1;
	}
	if (*value == '\0' || strlen(value) > 4096 || (is_name && !file_name_is_safe(value))) {
		*err = xasprintf("%s= must be %s", key, is_name ? "a rule's or VM's name as the repository holds it"
		                                                 : "a path");
		return -1;
	}
	*slot = xstrdup(value);
	return 0;
}

int
repo_export_conf_set(struct repo_export_conf *c, const char *key, const char *value, char **err)
{
	uint64_t n;

	*err = NULL;
	if (strcmp(key, "repo") == 0)
		return set_string(&c->repo, key, value, 0, err);
	if (strcmp(key, "key_file") == 0)
		return set_string(&c->key_file, key, value, 0, err);
	if (strcmp(key, "rule") == 0)
		return set_string(&c->rule, key, value, 1, err);
	if (strcmp(key, "vm") == 0)
		return set_string(&c->vm, key, value, 1, err);
	if (strcmp(key, "point") == 0) {
		if (c->point != 0) {
			*err = xstrdup("point= given twice");
			return -1;
		}
		if (number(value, 1, UINT64_MAX, &n) != 0) {
			*err = xstrdup("point= must be a restore point's number (1, 2, ...)");
			return -1;
		}
		c->point = n;
		return 0;
	}
	if (strcmp(key, "disk") == 0) {
		if (c->disk >= 0) {
			*err = xstrdup("disk= given twice");
			return -1;
		}
		if (number(value, 0, REPO_MAX_DISKS - 1, &n) != 0) {
			*err = xasprintf("disk= must be a disk's number in the point (0 to %d)", REPO_MAX_DISKS - 1);
			return -1;
		}
		c->disk = (long)n;
		return 0;
	}
	if (strcmp(key, "cache") == 0) {
		if (c->cache != 0) {
			*err = xstrdup("cache= given twice");
			return -1;
		}
		if (number(value, 1, REPO_EXPORT_CACHE_MAX, &n) != 0) {
			*err = xasprintf("cache= must be a number of 4 MiB chunks from 1 to %d", REPO_EXPORT_CACHE_MAX);
			return -1;
		}
		c->cache = (unsigned)n;
		return 0;
	}
	*err = xstrdup("unknown parameter (repo, key_file, rule, vm, point, disk, cache)");
	return -1;
}

int
repo_export_conf_check(const struct repo_export_conf *c, char **err)
{
	const char *missing = c->repo == NULL ? "repo" : c->rule == NULL ? "rule" : c->vm == NULL ? "vm" :
	                      c->point == 0   ? "point" : c->disk < 0 ? "disk" : NULL;

	*err = missing != NULL ? xasprintf("%s= is required", missing) : NULL;
	return missing != NULL ? -1 : 0;
}

int
repo_export_open(const struct repo_export_conf *c, struct repo_export **out, char **err)
{
	struct repo_export *x = xcalloc(1, sizeof(*x));
	struct repo_point *p = NULL;
	struct repo_disk *d;
	unsigned i;

	*out = NULL;
	*err = NULL;
	pthread_mutex_init(&x->lock, NULL);
	if (repo_open_readonly(c->repo, c->key_file, &x->r, err) != 0)
		goto fail;
	if (repo_point_read(x->r, c->rule, c->vm, c->point, &p, err) != 0)
		goto fail;
	if ((size_t)c->disk >= p->ndisks) {
		*err = xasprintf("point %s/%s/%llu has %zu disk%s: no disk %ld", c->rule, c->vm,
		    (unsigned long long)c->point, p->ndisks, p->ndisks == 1 ? "" : "s", c->disk);
		goto fail;
	}
	d = &p->disks[c->disk];
	x->capacity = d->capacity;
	x->nchunks = d->nchunks;
	x->ids = xreallocarray(NULL, d->nchunks ? d->nchunks : 1, REPO_ID_LEN);
	memcpy(x->ids, d->ids, d->nchunks * REPO_ID_LEN);
	repo_point_free(p);
	x->nslots = c->cache ? c->cache : REPO_EXPORT_CACHE_DEFAULT;
	x->slots = xcalloc(x->nslots, sizeof(*x->slots));
	for (i = 0; i < x->nslots; i++)
		x->slots[i].chunk = UINT64_MAX;
	*out = x;
	return 0;
fail:
	if (p != NULL)
		repo_point_free(p);
	repo_export_close(x);
	return -1;
}

void
repo_export_close(struct repo_export *x)
{
	unsigned i;

	if (x == NULL)
		return;
	for (i = 0; i < x->nslots; i++)
		repo_chunk_mem_free(&x->slots[i].mem);
	free(x->slots);
	free(x->ids);
	if (x->r != NULL)
		repo_close(x->r);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

uint64_t
repo_export_size(const struct repo_export *x)
{
	return x->capacity;
}

int
repo_export_chunk_zero(const struct repo_export *x, uint64_t i)
{
	return i >= x->nchunks || repo_chunk_id_is_zero(x->ids[i]);
}

void
repo_export_stats(struct repo_export *x, uint64_t *hits, uint64_t *misses)
{
	pthread_mutex_lock(&x->lock);
	*hits = x->hits;
	*misses = x->misses;
	pthread_mutex_unlock(&x->lock);
}

/* Copies part of chunk i from the cache: 1 when it was there. */
static int
cache_copy(struct repo_export *x, uint64_t i, void *dst, size_t from, size_t n)
{
	unsigned k;

	for (k = 0; k < x->nslots; k++)
		if (x->slots[k].chunk == i) {
			memcpy(dst, x->slots[k].mem.plain + from, n);
			x->slots[k].used = ++x->tick;
			x->hits++;
			return 1;
		}
	return 0;
}

/* Files a freshly read chunk in the least recently used slot; *mem gets
 * that slot's old chunk (or nothing) for the caller to free. */
static void
cache_put(struct repo_export *x, uint64_t i, struct repo_chunk_mem *mem)
{
	struct repo_chunk_mem old;
	unsigned k, lru = 0;

	for (k = 0; k < x->nslots; k++) {
		if (x->slots[k].chunk == i)
			return; /* another thread read it meanwhile */
		if (x->slots[k].used < x->slots[lru].used)
			lru = k;
	}
	old = x->slots[lru].mem;
	x->slots[lru].mem = *mem;
	x->slots[lru].chunk = i;
	x->slots[lru].used = ++x->tick;
	*mem = old;
}

int
repo_export_read(struct repo_export *x, void *buf, size_t count, uint64_t off, char **err)
{
	uint8_t *dst = buf;

	*err = NULL;
	if (off > x->capacity || count > x->capacity - off) {
		*err = xasprintf("a read of %zu bytes at %llu, beyond the disk's %llu bytes", count,
		    (unsigned long long)off, (unsigned long long)x->capacity);
		return -1;
	}
	while (count > 0) {
		uint64_t i = off / REPO_CHUNK_SIZE;
		size_t from = (size_t)(off % REPO_CHUNK_SIZE), len = repo_chunk_len(x->capacity, i);
		size_t n = len - from < count ? len - from : count;
		struct repo_chunk_mem chunk;
		int hit;

		if (repo_chunk_id_is_zero(x->ids[i])) {
			memset(dst, 0, n);
		} else {
			pthread_mutex_lock(&x->lock);
			hit = cache_copy(x, i, dst, from, n);
			if (!hit)
				x->misses++;
			pthread_mutex_unlock(&x->lock);
			if (!hit) {
				/* Read outside the lock: other chunks stay served. */
				if (repo_chunk_read(x->r, x->ids[i], len, &chunk, err) != 0)
					return -1;
				memcpy(dst, chunk.plain + from, n);
				pthread_mutex_lock(&x->lock);
				cache_put(x, i, &chunk);
				pthread_mutex_unlock(&x->lock);
				repo_chunk_mem_free(&chunk);
			}
		}
		dst += n;
		off += n;
		count -= n;
	}
	return 0;
}
