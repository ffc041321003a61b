/* A backup job's persisted data: the sync pass's state (its snapshot,
 * disks and checkpoints) and the restore point being written — which
 * point, in which mode, against which parent, and how far it got.  What a
 * point holds once complete lives in the repository, not here. */
#ifndef VMFERRY_JOBS_BACKUP_DATA_H
#define VMFERRY_JOBS_BACKUP_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/jobs/sync.h"

struct rec_reader;
struct sbuf;

/* What the point in progress has done: (its stages, in order). */
enum bak_stage {
	BAK_STAGE_NONE,      /* no point in progress */
	BAK_STAGE_CHOSEN,    /* seq, mode and parent chosen; the pass runs */
	BAK_STAGE_COMMITTED, /* the point is in the repository; retention and gc next */
};

/* A complete point as the job last listed it (for `points` and `show`). */
struct bak_point {
	uint64_t seq, parent;
	uint8_t mode;
	int64_t start, end;
	uint64_t read, stored;
	uint8_t damaged;      /* the last verify found a chunk of it (or its index) damaged */
};

struct bak_data {
	struct sync_state sync;
	uint8_t next_mode;    /* the mode asked for by `run --mode` or the schedule (enum repo_mode), BAK_MODE_ANY: none */
	uint8_t stage;        /* enum bak_stage */
	uint8_t mode;         /* the point in progress: enum repo_mode */
	uint64_t seq;         /* its number under rule/vm */
	uint64_t parent;      /* the point it is read against; 0 for a full */
	int64_t start;        /* Unix seconds */
	uint64_t stored;      /* chunk bytes it added so far */
	size_t nbase;
	char **base_cids;     /* per disk: the parent's changeId of that disk (same key, same capacity), or NULL */
	size_t npoints;
	struct bak_point *points; /* the complete points in the repository, oldest first */
	/* The VM was written by a restore, which its change tracking did not
	 * see: the next point is a full, whatever the mode asked. */
	uint8_t force_full;
	/* A restore of one of its points (restore.c's record, opaque here). */
	uint8_t *restore;
	size_t nrestore;
};

#define BAK_MODE_ANY 0xff

void bak_data_free(struct bak_data *x);
void bak_data_put(const struct bak_data *x, struct sbuf *b);
/* n == 0: a new job.  0, or -1 when the bytes cannot be read. */
int bak_data_get(const uint8_t *p, size_t n, struct bak_data *x);
/* Per-disk arrays sized for the sync state's disks. */
void bak_data_size(struct bak_data *x);

#endif
