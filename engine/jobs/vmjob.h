/* A job that copies a source VM into a vSphere target VM, pass by pass:
 * migration (seed 000) and replication (seed 001).  What both kinds share
 * lives here: the runtime (the sync pass, the target, the record), where
 * each disk of a pass is written (the target in place through a mount or a
 * hot-add device, else a sparse staging image in temp_dir), how a pass
 * lands in the target, and the enter actions of the states both tables
 * have: starting, creating_vm, fetching_config, querying_changes,
 * transferring, stopping, failed, deleting.  What follows a pass is the
 * kind's: 迁移就绪 and the cutover (migrate.c), a restore point and 空闲
 * (replicate.c).
 *
 * What must survive a crash lives in the job's data record (struct
 * mig_data, and replication's restore points after it); what can be
 * recomputed lives in the runtime and is recomputed after a restart. */
#ifndef VMFERRY_JOBS_VMJOB_H
#define VMFERRY_JOBS_VMJOB_H

#include <stddef.h>
#include <stdint.h>

#include "engine/jobs/memstate.h"
#include "engine/jobs/migrate_data.h"
#include "engine/jobs/replicate_data.h"
#include "engine/jobs/sync.h"
#include "engine/jobs/target.h"

struct event;
struct job;
struct sbuf;
struct vs_op;
struct vs_vm;

struct vmjob;

/* What differs between the kinds. */
struct vmjob_kind {
	/* The record: rt->d (and rt->rep) to bytes and back (0, or -1). */
	void (*encode)(const struct vmjob *rt, struct sbuf *b);
	int (*decode)(struct vmjob *rt, const uint8_t *p, size_t n);
	/* The transferring state's pass is copied, landed, recorded and its
	 * snapshot removed: what comes next. */
	void (*transferred)(struct sync_pass *p);
	/* The event that sends transferring back to querying_changes (the
	 * pass's snapshot is gone). */
	int requery_event;
	/* Whether a pass lands into the top of the target's chain (the
	 * empty delta of its latest restore point) instead of through a
	 * landing snapshot consolidated into the base.  NULL: never, and
	 * the whole upload at cutover is the last resort; a kind that lands
	 * on top keeps restore points, which whole uploads cannot make. */
	int (*land_top)(const struct vmjob *rt);
	/* Every disk of the pass has landed in the target: make what the
	 * kind keeps of it (a restore point), then done(p); before the
	 * changeIds are recorded and the source's snapshot goes.  NULL:
	 * nothing. */
	void (*landed)(struct vmjob *rt, void (*done)(struct sync_pass *p));
	/* The transferring state's pass found its snapshot gone: 1 when the
	 * kind ends the pass itself (its bytes landed before the snapshot
	 * went), 0 to query again.  NULL: always query again. */
	int (*pass_gone)(struct vmjob *rt);
	/* starting found the source VM (vm NULL: gone, and allowed): what
	 * comes next.  NULL: the job is started (EV_STARTED). */
	void (*started)(struct job *j, const struct vs_vm *vm);
};

extern const struct vmjob_kind vmjob_migration;
extern const struct vmjob_kind vmjob_replication;

struct vmjob {
	struct job *j;
	const struct vmjob_kind *kind;
	struct mig_data d;
	struct rep_data rep;     /* replication: cycles and restore points */
	int bad_data;            /* the saved record could not be read */
	struct sync_pass pass;
	struct target tgt;
	struct vs_op *op;        /* the kind's own driver calls */
	struct memstate mem;     /* memory_snapshot: the suspended source's memory state */
	struct event *timer;
	double shutdown_t0;      /* a guest shutdown was asked at (monotonic) */
	size_t i;                /* the disk being uploaded */
	int power_rereads;       /* InvalidPowerState answers looked into */
	struct target_land_disk *land; /* the pass landing in the target */
	char **land_img;
	size_t nland_img;
	void (*land_then)(struct sync_pass *p);
	void (*before_then)(struct sync_pass *p);
	void (*removed_then)(struct vmjob *rt); /* a restore point's removal (rep_remove_point) */
	char *removing_why;
};

/* The job's runtime, or NULL. */
struct vmjob *vmjob_of(struct job *j);
/* The runtime for an enter action, its data freshly decoded from the
 * record; NULL when that record is unreadable (the job fails) or its rule
 * is gone. */
struct vmjob *vmjob_enter(struct job *j);
/* As vmjob_enter, also when the rule is gone (stop, delete). */
struct vmjob *vmjob_get(struct job *j);
/* Persist the record. */
void vmjob_save(struct vmjob *rt);
/* Put the record in the job without committing it (it goes with the
 * transition that follows). */
void vmjob_set_record(struct vmjob *rt);
/* Stop what is in flight; keep what was learnt. */
void vmjob_stop_work(struct vmjob *rt);
/* Disk i's staging image in temp_dir (malloc'd), or NULL with *err. */
char *vmjob_staging_image(struct job *j, size_t i, char **err, int *errnum);

void vmjob_enter_starting(struct job *j, int event);
void vmjob_enter_creating_vm(struct job *j, int event);
void vmjob_enter_fetching_config(struct job *j, int event);
void vmjob_enter_querying_changes(struct job *j, int event);
void vmjob_enter_transferring(struct job *j, int event);
void vmjob_enter_stopping(struct job *j, int event);
void vmjob_enter_deleting(struct job *j, int event);
void vmjob_enter_failed(struct job *j, int event);

#endif
