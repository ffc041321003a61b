/* The backup repository (SPEC §10; docs/REPOSITORY.md gives the on-disk
 * format byte by byte): a directory that holds
 *
 *   repo.json                 format, version, whether it is encrypted
 *                             (with a key check value)
 *   chunks/<hh>/<id>          the data, content-addressed: a disk is cut
 *                             into 4 MiB chunks aligned to disk offsets,
 *                             each stored once under its id (SHA-256 of
 *                             its bytes, HMAC-SHA256 under the key when
 *                             encrypted), zstd level 1 when that is
 *                             smaller, AES-256-GCM when encrypted; the
 *                             all-zero chunk is never stored
 *   points/<rule>/<vm>/<seq>/ one restore point: manifest.json and one
 *                             fixed index per disk, disk<N>.idx (a chunk
 *                             id per 4 MiB, the all-zero id for zeros)
 *   tmp/                      what is being written (and what a crash
 *                             left, removed by repo_gc)
 *   damaged/                  chunk files repo_verify found damaged,
 *                             moved aside so the next backup writes them
 *                             again
 *
 * Every write is crash-safe: a chunk goes to tmp/, is fsync'd and renamed
 * into place; a point is written in tmp/, fsync'd and renamed into
 * points/ last, so a point exists only when it is complete, and every
 * point stands alone (any one can be deleted; chunks stay until repo_gc).
 *
 * Synchronous and blocking: call it from worker threads, never from the
 * loop.  Threads: the chunk functions may be called from any number of
 * threads at once; every other function may run on any thread too, at the
 * same time as the chunk functions and as each other (a repo_gc while a
 * backup writes), but one writer is used by one thread at a time.  One
 * process uses a repository at a time, through one struct repo that all
 * its users share (the rules that name the same directory): repo_gc and
 * repo_point_delete know the writers of their own struct repo only.
 *
 * Errors: 0, or -1 with *err (malloc'd, the caller frees it) naming the
 * file, chunk or point and the reason; never a secret. */
#ifndef VMFERRY_REPO_H
#define VMFERRY_REPO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define REPO_CHUNK_SIZE (4u * 1024 * 1024)
#define REPO_ID_LEN 32
/* Disks of 1 byte to 64 TiB (as the inventory accepts). */
#define REPO_MAX_CAPACITY (64ull << 40)
#define REPO_MAX_DISKS 1024

struct repo;

/* Opens the repository in dir, creating it (and missing parents) when dir
 * does not exist or is empty; a non-empty directory that is not a
 * repository is refused.  key_file (NULL: none) names a file holding the
 * 32-byte key, either as exactly 32 raw bytes or as 64 hex digits (an
 * optional newline after them); a new repository made with a key is
 * encrypted for good.  An encrypted repository opened without its key
 * or with another one, or an unencrypted one opened with a key, is refused
 * before anything is written. */
int repo_open(const char *dir, const char *key_file, struct repo **out, char **err);
/* The same for readers that must change nothing (an instant recovery's
 * nbdkit): the repository must exist, nothing is made or written.  Use
 * only the reading functions on it (repo_point_read, repo_chunk_get). */
int repo_open_readonly(const char *dir, const char *key_file, struct repo **out, char **err);
/* Reads key_file again (NULL: none) and checks that it still holds the
 * key r was opened with: 0, or -1 with *err as repo_open words it (a key
 * file replaced while the repository is open is refused, as it would be
 * at the next opening). */
int repo_check_key(const struct repo *r, const char *key_file, char **err);
/* Every writer must have been committed or aborted. */
void repo_close(struct repo *r);
int repo_encrypted(const struct repo *r);

/* ---- chunks (thread-safe) ---- */

/* Chunks of a disk, and the length of chunk i (the last one may be short). */
static inline uint64_t
repo_disk_chunks(uint64_t capacity)
{
	return capacity / REPO_CHUNK_SIZE + (capacity % REPO_CHUNK_SIZE != 0);
}

static inline size_t
repo_chunk_len(uint64_t capacity, uint64_t i)
{
	uint64_t left = capacity - i * REPO_CHUNK_SIZE;

	return left < REPO_CHUNK_SIZE ? (size_t)left : REPO_CHUNK_SIZE;
}

/* The id of len bytes (1..REPO_CHUNK_SIZE): all zeros when every byte is
 * zero, else SHA-256 (HMAC-SHA256 under the key when encrypted). */
void repo_chunk_id(const struct repo *r, const void *buf, size_t len, uint8_t id[REPO_ID_LEN]);
int repo_chunk_id_is_zero(const uint8_t id[REPO_ID_LEN]);
/* The id as 64 lower-case hex digits and a NUL. */
void repo_id_hex(const uint8_t id[REPO_ID_LEN], char hex[2 * REPO_ID_LEN + 1]);

/* 1 when the chunk is stored (or is the zero chunk), else 0.  A stored
 * chunk's time is set to now, so that a repo_gc that started before a
 * backup found it here does not take it away. */
int repo_chunk_has(const struct repo *r, const uint8_t id[REPO_ID_LEN]);

/* Stores len bytes (1..REPO_CHUNK_SIZE) unless that chunk is already
 * there (then its time is set to now, as repo_chunk_has does) or all
 * zero; *id gets its id (computed here, so that no caller can file bytes
 * under another id) and *stored_bytes what the repository grew by (0 when
 * nothing was written).  The file is durable before this returns; its
 * directory entry by the next repo_point_commit. */
int repo_chunk_put(const struct repo *r, const void *buf, size_t len, uint8_t id[REPO_ID_LEN],
    uint64_t *stored_bytes, char **err);

/* repo_chunk_put in two steps, so that the CPU's part (hashing,
 * compressing, encrypting, writing the file) and the device's part
 * (waiting for the bytes to be durable) can run on different threads.
 * Seal does the first and leaves the chunk in tmp/ (fd >= 0) unless it
 * is already stored or all zero (fd -1: nothing to commit); commit makes
 * it durable and renames it into chunks/ (a no-op for fd -1); abandon
 * drops a sealed chunk.  Either of the two ends every sealed chunk. */
struct repo_sealed {
	int fd;
	char *tmp;
	uint8_t id[REPO_ID_LEN];
	uint64_t stored;         /* what the repository grows by on commit */
};
int repo_chunk_seal(const struct repo *r, const void *buf, size_t len, struct repo_sealed *out, char **err);
/* Buffers for a chunk's bytes with room before them for the chunk
 * file's head: repo_chunk_seal_buf writes such a buffer's bytes into the
 * file where they stay plain, with no copy, and may change them
 * (encryption in place); the caller still frees it.  repo_buf_free
 * takes NULL. */
void *repo_buf_alloc(const struct repo *r, size_t len);
void repo_buf_free(const struct repo *r, void *buf);
int repo_chunk_seal_buf(const struct repo *r, void *buf, size_t len, struct repo_sealed *out, char **err);
int repo_chunk_commit(const struct repo *r, struct repo_sealed *s, char **err);
void repo_chunk_abandon(const struct repo *r, struct repo_sealed *s);

/* Reads chunk id, which must hold len bytes, into buf (zeros for the zero
 * id), and checks that its bytes still have that id.  A missing, damaged
 * or undecipherable chunk is an error naming it. */
int repo_chunk_get(const struct repo *r, const uint8_t id[REPO_ID_LEN], void *buf, size_t len, char **err);

/* repo_chunk_get for a reader that keeps the chunk (instant recovery's
 * cache): the whole file read at once into memory of its own (on huge
 * pages where the kernel gives them), checked the same way.  out->plain
 * points at the len bytes inside out->mem; repo_chunk_mem_free frees
 * them.  On failure out holds nothing. */
struct repo_chunk_mem {
	uint8_t *mem;
	const uint8_t *plain;
};
int repo_chunk_read(const struct repo *r, const uint8_t id[REPO_ID_LEN], size_t len, struct repo_chunk_mem *out,
    char **err);
void repo_chunk_mem_free(struct repo_chunk_mem *m);

/* ---- restore points ---- */

enum repo_mode { REPO_FULL, REPO_INCREMENTAL, REPO_DIFFERENTIAL };
const char *repo_mode_name(enum repo_mode m);

struct repo_disk {
	int key;                /* the disk's device key in the VM */
	uint64_t capacity;      /* bytes */
	const char *change_id;  /* CBT changeId of the snapshot read, or NULL */
	const char *file;       /* the source disk file ("[ds] vm/vm.vmdk"), or NULL */
	uint64_t nchunks;       /* repo_disk_chunks(capacity) */
	const uint8_t (*ids)[REPO_ID_LEN]; /* nchunks ids, all zeros for zeros */
	uint8_t index_sha[32];  /* SHA-256 of disk<N>.idx as the manifest
	                           records it (read; put_index ignores it) */
};

struct repo_point {
	const char *rule, *vm;
	uint64_t seq;           /* 1, 2, ...: the point's name under rule/vm */
	enum repo_mode mode;
	uint64_t parent;        /* the point an incremental or differential
	                           was read against; 0 for a full */
	int64_t start, end;     /* Unix seconds */
	uint64_t bytes_read;    /* from the source */
	uint64_t bytes_stored;  /* chunk bytes this point added */
	const char *config;     /* the VM's configuration, JSON text, or NULL */
	size_t ndisks;
	struct repo_disk *disks;
};

/* A point being written.  Begin it before the backup looks at any chunk
 * or reads its parent's index: from then on the parent cannot be deleted
 * and repo_gc spares every chunk the backup writes or finds. */
struct repo_writer;

/* p gives rule, vm, seq (not yet a point), mode, parent (a complete point
 * of the same VM, before seq; 0 with a full), start and config; the rest
 * is ignored. */
int repo_point_begin(struct repo *r, const struct repo_point *p, struct repo_writer **out, char **err);
/* The index of the next disk (disk0, disk1, ... in call order), written
 * and fsync'd now; d is copied. */
int repo_point_put_index(struct repo_writer *w, const struct repo_disk *d, char **err);
/* The manifest, then the point renamed into place and made durable.  w is
 * gone afterwards whatever the result; on failure no point exists. */
int repo_point_commit(struct repo_writer *w, int64_t end, uint64_t bytes_read, uint64_t bytes_stored, char **err);
/* Forgets the point being written (its chunks stay until repo_gc). */
void repo_point_abort(struct repo_writer *w);

/* The complete points of rule/vm, ascending, in *seqs (malloc'd; NULL when
 * none).  A rule or VM without points has none: not an error. */
int repo_points(struct repo *r, const char *rule, const char *vm, uint64_t **seqs, size_t *n, char **err);

/* A point's manifest and indexes, checked against their checksums; free
 * it with repo_point_free. */
int repo_point_read(struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    char **err);
void repo_point_free(struct repo_point *p);
/* Only a point's manifest (its disks carry no ids): what a listing
 * shows, without reading the indexes. */
int repo_point_manifest(struct repo *r, const char *rule, const char *vm, uint64_t seq, struct repo_point **out,
    char **err);

/* Deletes one point (refused while a writer on r reads against it); its
 * chunks stay until repo_gc. */
int repo_point_delete(struct repo *r, const char *rule, const char *vm, uint64_t seq, char **err);

/* ---- garbage collection and verification ---- */

struct repo_gc_stats {
	uint64_t points;       /* points whose indexes were marked */
	uint64_t chunks_used;  /* distinct chunks they use */
	uint64_t chunks_young; /* unused, kept: newer than the cut-off */
	uint64_t chunks_freed, bytes_freed;
};

/* Mark and sweep: every chunk that a complete point's index uses stays,
 * so does every chunk whose time is not before the cut-off (the earlier of
 * started and the start of the oldest writer open on r, less two seconds,
 * so a backup running meanwhile loses nothing); the rest is deleted, and
 * so is what crashes left in tmp/ an hour before the cut-off.  A point
 * whose manifest or index cannot be read stops it before anything is
 * deleted.  Memory: 16 to 32 bytes per chunk in use (an 8-byte prefix of
 * its id). */
int repo_gc(struct repo *r, time_t started, struct repo_gc_stats *st, char **err);

struct repo_point_ref {
	const char *rule, *vm;
	uint64_t seq;
};

/* Told once per damaged chunk, with the points (among those verified) that
 * use it; id NULL: a point's own manifest or index is damaged (then
 * points names that one point).  why says what is wrong. */
typedef void (*repo_damage_fn)(void *arg, const uint8_t *id, const char *why, const struct repo_point_ref *points,
    size_t npoints);

struct repo_verify_stats {
	uint64_t points;       /* points verified */
	uint64_t chunks;       /* distinct chunks re-read */
	uint64_t bytes;        /* their plain bytes */
	uint64_t damaged;      /* chunks and point files reported */
};

/* Re-reads every chunk of the chosen points (rule NULL: every rule, and vm
 * must be NULL; vm NULL: every VM of rule; seq 0: every point) on as many
 * threads as there are cores, and checks each chunk's id.  A chunk whose
 * bytes are wrong is moved to damaged/, so that the next backup that reads
 * those bytes stores it again.  0 when the check ran (whatever it found),
 * -1 when it could not. */
int repo_verify(struct repo *r, const char *rule, const char *vm, uint64_t seq, repo_damage_fn cb, void *arg,
    struct repo_verify_stats *st, char **err);

/* ---- the parsers, for repo_point.c and the fuzz targets ---- */

/* A manifest.json file: checksum, format, fields; *out is freed with
 * repo_point_free (its disks carry no ids). */
int repo_manifest_parse(const void *buf, size_t len, struct repo_point **out, char **err);
/* A disk<N>.idx file: d gets capacity, nchunks and ids (malloc'd; free
 * with free((void *)d->ids)). */
int repo_index_parse(const void *buf, size_t len, struct repo_disk *d, char **err);

#endif
