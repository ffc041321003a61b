/* What drivers/repo.c (the repository, its chunks), repo_point.c (points:
 * their formats, writer, listing, reading, deleting) and repo_gc.c
 * (garbage collection, verification) share.  Not for other files. */
#ifndef VMFERRY_REPO_PRIVATE_H
#define VMFERRY_REPO_PRIVATE_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "drivers/crypto.h"
#include "drivers/repo.h"

struct repo {
	char *dir;
	int dfd;                          /* the repository directory */
	int encrypted;
	uint8_t id_key[CRYPTO_KEY_LEN];   /* HMAC key of chunk ids */
	uint8_t enc_key[CRYPTO_KEY_LEN];  /* AES-256-GCM key of chunks */
	pthread_mutex_t lock;             /* guards writers */
	struct repo_writer *writers;      /* open in this process */
};

struct repo_writer_disk {
	int key;
	uint64_t capacity;
	char *change_id, *file;
	uint8_t index_sha[CRYPTO_HASH_LEN];
};

struct repo_writer {
	struct repo *r;
	struct repo_writer *next;
	char *rule, *vm;
	uint64_t seq, parent;
	enum repo_mode mode;
	int64_t start;
	char *config;                     /* JSON text (checked), or NULL */
	char *tmp;                        /* "tmp/p-<hex>", relative to the repository */
	time_t begun;
	size_t ndisks;
	struct repo_writer_disk *disks;
};

/* A rule or VM name that can be a directory of points/. */
int repo_name_ok(const char *s);
/* n bytes from the 2n hex digits s[0..slen): 0, or -1 when s is not that
 * (lower_only: no upper-case digits, as in names the repository gives). */
int repo_unhex(const char *s, size_t slen, uint8_t *out, size_t n, int lower_only);
/* "tmp/<prefix>-<16 random hex digits>". */
char *repo_tmp_name(const char *prefix);
/* fsync of a directory, relative to the repository: 0, or -1 with *err. */
int repo_fsync_dir(const struct repo *r, const char *rel, char **err);
/* A whole file of at most max bytes (malloc'd, NUL after the end): 0, -1
 * with *err, and *missing set when it does not exist. */
int repo_read_file(const struct repo *r, const char *rel, size_t max, uint8_t **buf, size_t *len, int *missing,
    char **err);
/* Writes and fdatasyncs a new file (never replacing one) from pieces:
 * 0, or -1 with *err and nothing left. */
struct repo_piece {
	const void *p;
	size_t n;
};
int repo_write_new(const struct repo *r, const char *rel, const struct repo_piece *pieces, size_t n, char **err);
/* Removes rel: a file, or a directory with the files in it. */
void repo_remove(const struct repo *r, const char *rel);
/* Makes every chunks/<hh>/ entry renamed so far durable. */
int repo_sync_chunk_dirs(const struct repo *r, char **err);

/* Loads chunk id of len bytes into buf; *bad is set when the file's bytes
 * are wrong (not when it is missing or cannot be read). */
int repo_chunk_load(const struct repo *r, const uint8_t id[REPO_ID_LEN], void *buf, size_t len, int *bad,
    char **err);
/* "chunks/<hh>/<64 hex>". */
void repo_chunk_path(const uint8_t id[REPO_ID_LEN], char path[80]);

/* repo_point.c: the points of rule/vm (names checked), ascending. */
int repo_point_list(const struct repo *r, const char *rule, const char *vm, uint64_t **seqs, size_t *n, char **err);
/* Names of the directories in rel (rules, VMs), sorted; missing: none. */
int repo_dir_names(const struct repo *r, const char *rel, char ***names, size_t *n, char **err);
void repo_names_free(char **names, size_t n);
/* Reads and checks a point's manifest; missing when it is gone. */
int repo_manifest_read(const struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    int *missing, char **err);

/* The header of an index file, checked against the file's size: 0 with
 * *capacity and *count, or -1 with *err. */
#define REPO_INDEX_HEAD 32
int repo_index_head(const uint8_t head[REPO_INDEX_HEAD], uint64_t file_size, uint64_t *capacity, uint64_t *count,
    char **err);

/* Calls fn for every id of the index of disk n of a point (a streaming
 * read, checked against its checksum, d's capacity and d's index_sha);
 * an error (with the checksum's failure found only at the end) means the
 * ids seen are not to be trusted. */
typedef void (*repo_id_fn)(void *arg, const uint8_t id[REPO_ID_LEN], size_t len);
int repo_index_scan(const struct repo *r, const char *rule, const char *vm, uint64_t seq, size_t n,
    const struct repo_disk *d, repo_id_fn fn, void *arg, char **err);

#endif
