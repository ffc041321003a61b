/* What a backup does in its repository, as steps that run on the worker
 * pool (engine/core/workers.h): choose the next point and its parent,
 * read the parent's manifest, open the point and check the parent's
 * chunks and the partial indexes (checking_data), commit the point,
 * apply retention and collect garbage, delete a VM's points.  Each step
 * touches only its struct bak_step; backup.c makes them and takes their
 * results back on the loop. */
#ifndef VMFERRY_JOBS_BACKUP_STEPS_H
#define VMFERRY_JOBS_BACKUP_STEPS_H

#include <stddef.h>
#include <stdint.h>

#include "drivers/repo.h"
#include "engine/jobs/backup_data.h"

struct bak_rt;
struct token;

struct step_disk {
	uint32_t key;
	uint64_t capacity;
	char *ids_path;
	char *cid;                       /* commit: the changeId read */
	char *file;
	int against_parent;              /* check: read against the parent's index */
	uint8_t (*base)[REPO_ID_LEN];    /* results: the parent's ids (against_parent) */
	uint8_t *done;                   /* chunks stored already */
	uint64_t *missing;               /* parent chunks not in the repository: read again */
	size_t nmissing;
};

struct bak_step {
	struct token *t;
	struct repo *repo;
	char *rule, *vm;
	void (*fn)(struct bak_step *s);
	void (*done)(struct bak_rt *rt, struct bak_step *s);
	int rc;
	char *err;
	/* the point */
	uint64_t seq, parent;
	int mode;
	int64_t start;
	uint32_t pass;
	char *config_path;
	struct repo_writer *w;           /* check: the writer (made here when NULL); commit: used up */
	int made_writer;
	size_t ndisks;
	struct step_disk *disks;
	/* choose */
	int next_mode;
	/* parent manifest */
	struct repo_point *manifest;
	/* commit */
	uint64_t bytes_read, stored;
	int existed;
	/* check: the parent's manifest or index cannot be read */
	int parent_bad;
	/* retention */
	int retention;
	uint64_t *keep;                  /* points instant recoveries serve: never deleted */
	size_t nkeep;
	uint64_t *kept;                  /* beyond the retention, kept for them */
	size_t nkept;
	uint64_t *deleted;
	size_t ndeleted;
	struct repo_gc_stats gc;
	int gc_ran;
	struct bak_point *points;
	size_t npoints;
	char *warn;
};

/* The complete points of s->rule/s->vm in *seqs (malloc'd), their
 * manifests in s->points. */
int bak_list_points(struct bak_step *s, uint64_t **seqs, size_t *n);
/* The next point: s->seq, s->mode (from s->next_mode), s->parent. */
void bak_choose_fn(struct bak_step *s);
/* The parent's manifest in s->manifest. */
void bak_manifest_fn(struct bak_step *s);
/* The point opened (s->w, made when NULL), per disk the parent's ids,
 * its missing chunks and the partial index's stored chunks; or, when no
 * writer was open and the point is in the repository already (committed
 * before a crash), s->existed and nothing else. */
void bak_check_fn(struct bak_step *s);
/* The point's indexes and manifest written: it is complete (s->existed:
 * it was before). */
void bak_commit_fn(struct bak_step *s);
/* Points beyond s->retention deleted oldest first, then garbage
 * collection; the points that remain listed. */
void bak_retain_fn(struct bak_step *s);
/* Every point of the VM deleted, then garbage collection. */
void bak_delete_fn(struct bak_step *s);
/* Gives up a point being written, on a worker (w may be NULL). */
void bak_abort_writer(struct repo_writer *w);
/* Frees what the step holds (not its token); a writer it made and nobody
 * took is given up. */
void bak_step_free(struct bak_step *s);

#endif
