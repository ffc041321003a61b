/* One disk of a restore point served read-only straight from the
 * repository (SPEC §11, instant recovery): its index read once, its
 * chunks read, decrypted and decompressed on demand by drivers/repo*.c,
 * the last few kept in a small cache.  What nbdkit's vmferry plugin
 * (drivers/nbdkit_repo.c) serves; it knows nothing of nbdkit, so unit
 * tests and the fuzz target run it alone.
 *
 * Nothing here writes to the repository (repo_open_readonly).  The
 * reading functions may be called from several threads at once. */
#ifndef VMFERRY_REPO_EXPORT_H
#define VMFERRY_REPO_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#define REPO_EXPORT_CACHE_DEFAULT 8   /* chunks: 32 MiB */
#define REPO_EXPORT_CACHE_MAX 256

/* The plugin's parameters, key=value as nbdkit hands them over:
 *   repo=DIR        the repository (required)
 *   key_file=PATH   its key file, for an encrypted repository
 *   rule=NAME vm=NAME point=N disk=N   which disk of which point (required)
 *   cache=N         chunks kept in memory (1..256, default 8) */
struct repo_export_conf {
	char *repo, *key_file, *rule, *vm;
	uint64_t point;         /* 0: not given */
	long disk;              /* -1: not given */
	unsigned cache;         /* 0: not given */
};

void repo_export_conf_init(struct repo_export_conf *c);
/* One key=value: 0, or -1 with *err (malloc'd) for an unknown key, a key
 * given twice, or a value that is not what the key takes. */
int repo_export_conf_set(struct repo_export_conf *c, const char *key, const char *value, char **err);
/* Every required key given: 0, or -1 with *err naming the first missing. */
int repo_export_conf_check(const struct repo_export_conf *c, char **err);
void repo_export_conf_free(struct repo_export_conf *c);

struct repo_export;

/* Opens the repository read-only, reads and checks the point's manifest
 * and the disk's index: 0, or -1 with *err. */
int repo_export_open(const struct repo_export_conf *c, struct repo_export **out, char **err);
void repo_export_close(struct repo_export *x);
uint64_t repo_export_size(const struct repo_export *x);
/* count bytes at off (within the disk): 0, or -1 with *err (a missing or
 * damaged chunk). */
int repo_export_read(struct repo_export *x, void *buf, size_t count, uint64_t off, char **err);
/* Whether chunk i (off / 4 MiB) is the zero chunk: nothing to read. */
int repo_export_chunk_zero(const struct repo_export *x, uint64_t i);
/* Cache counters, for tests and the log. */
void repo_export_stats(struct repo_export *x, uint64_t *hits, uint64_t *misses);

#endif
