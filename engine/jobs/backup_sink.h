/* Where a backup writes a disk: the repository (drivers/repo.h), behind
 * the transport interface so the shared sync pass copies into it as into
 * any other sink.
 *
 * The sink cuts what it is given into the repository's 4 MiB chunks.  A
 * chunk is complete once every byte of this pass's areas inside it has
 * arrived; its other bytes are the parent point's (read locally from the
 * repository, never again from the source) or zeros (a full, where the
 * areas are every allocated area).  A complete chunk is hashed,
 * compressed, encrypted and written to a temporary file on the worker
 * pool; then its buffer is freed and the writes that filled it are
 * reported done, so the copier's byte budget bounds the memory held here.
 * Making the file durable, renaming it into chunks/ and recording its id
 * in the disk's partial index file (the point's index as far as it got)
 * is the device threads' work, and flush waits for it: a flush is done
 * once every chunk whose writes were reported before it is in chunks/ and
 * in the durable partial index, so the copier's checkpoint never passes a
 * chunk that is not stored.  A chunk that cannot be filed fails the flush
 * with its reason.  At most SINK_COMMIT_AHEAD chunks wait for the device
 * with their writes reported; beyond that, writes are reported once their
 * chunk is filed.  A chunk the partial index already holds (stored before
 * a restart) is not written again. */
#ifndef VMFERRY_JOBS_BACKUP_SINK_H
#define VMFERRY_JOBS_BACKUP_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "drivers/repo.h"

struct disk;
struct repo;
struct vs_extent;

/* ---- the partial index file: a header, then one record per chunk ---- */

struct bak_ids {
	uint64_t nchunks;
	uint8_t (*ids)[REPO_ID_LEN];
	uint8_t *set;        /* per chunk: 1 when ids[i] holds its stored chunk */
};

/* Opens (creating it, or starting it over when it belongs to another
 * point, sync pass (snapshot) or disk size) the partial index of point seq
 * at path, and reads it into *out.  Blocking: on a worker.  0, or -1 with
 * *err. */
int bak_ids_load(const char *path, uint64_t seq, uint32_t pass, uint64_t capacity, struct bak_ids *out, char **err);
void bak_ids_free(struct bak_ids *x);
/* Forgets chunk i in the file (its chunk is gone from the repository).
 * Blocking: on a worker. */
int bak_ids_clear(const char *path, uint64_t i, char **err);

/* ---- the sink ---- */

struct bak_sink_params {
	struct repo *repo;
	uint64_t capacity;
	const struct vs_extent *areas;  /* this pass's areas of the disk (valid while the sink is open) */
	size_t nareas;
	const uint8_t (*base)[REPO_ID_LEN]; /* the parent's chunk ids of this disk, NULL: zeros */
	const uint8_t *done;            /* per chunk: stored already (bak_ids.set), NULL: none */
	const char *ids_path;           /* the partial index file (bak_ids_load made it) */
	uint64_t *stored;               /* repository growth, added to on the loop */
};

/* NULL with *err when the partial index cannot be opened. */
struct disk *bak_sink_open(const struct bak_sink_params *p, char **err);

#endif
