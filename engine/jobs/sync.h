/* One sync pass over a VM's disks, the work every job kind shares:
 * prepare (the engine's snapshot of the source, its disks and their
 * descriptors, the areas to copy: changes since a base changeId per disk,
 * followed to the end of the disk), copy (through copy.c, with
 * checkpoints, into one sink per disk), finish (the snapshot removed) or
 * abandon (stop, failure: the snapshot removed, the progress remembered).
 *
 * The pass knows nothing of the kind that runs it: the kind says which
 * base changeId each disk starts from (its last sync, its last full, a
 * chosen point), where each disk is written (a staging image, the target
 * in place through a mount, a delta, a repository), how its persisted
 * data is saved, and what to do next.  Failures go out as the common
 * outcomes (rt_fail, rt_lost); everything else through the callbacks. */
#ifndef VMFERRY_JOBS_SYNC_H
#define VMFERRY_JOBS_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "drivers/vsops.h"

struct bw_bucket;
struct copy;
struct disk;
struct job;
struct rec_reader;
struct sbuf;
struct sync_pass;

#define SYNC_DISK_DONE UINT64_MAX

/* ---- persisted: lives inside the kind's record ---- */

struct sync_disk {
	uint32_t key;        /* device key on the source */
	uint64_t capacity;
	char *src_file;      /* "[ds] vm/vm.vmdk" of the source disk */
	uint64_t checkpoint; /* pass progress: areas below are copied; SYNC_DISK_DONE when the disk is */
	uint8_t full;        /* this pass copies the whole disk (CBT reset, identity changed) */
	char *pass_cid;      /* changeId of this disk in the pass's snapshot */
	char *prev_cid;      /* an interrupted pass: below prev_ckpt the sink holds */
	uint64_t prev_ckpt;  /* the disk as of prev_cid (a stop removed its snapshot) */
};

struct sync_state {
	char *src_vm;        /* the source VM's moref and datacenter */
	char *src_dc;
	char *snap;          /* the engine's snapshot of the pass in progress */
	uint32_t pass;       /* passes started (names the snapshots) */
	uint64_t bytes;      /* bytes copied by every finished pass */
	size_t ndisks;
	struct sync_disk *disks;
};

void sync_state_free(struct sync_state *st);
void sync_state_put(const struct sync_state *st, struct sbuf *b);
int sync_state_get(struct rec_reader *r, struct sync_state *st);
/* The source VM as read before the first pass: its disks, in order. */
void sync_state_adopt(struct sync_state *st, const struct vs_vm *vm);
/* Disk d owes nothing to an earlier pass: no checkpoint, no interrupted
 * pass's changeId; full says whether it is copied in full. */
void sync_disk_restart(struct sync_disk *d, int full);
/* Forget the checkpoints of the pass (its snapshot is gone). */
void sync_state_reset_checkpoints(struct sync_state *st);

/* ---- the source: the vSphere driver, or a fake in unit tests ---- */

struct sync_source {
	struct vs_op *(*get_vm)(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg);
	struct vs_op *(*enable_cbt)(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg);
	struct vs_op *(*create_snapshot)(struct sync_pass *p, const char *vm, const char *name, const char *desc,
	    int quiesce, vs_op_fn done, void *arg);
	struct vs_op *(*remove_snapshot)(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg);
	struct vs_op *(*snapshot_disks)(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg);
	struct vs_op *(*query_changes)(struct sync_pass *p, const char *vm, const char *snap, int key,
	    const char *change_id, uint64_t capacity, vs_op_fn done, void *arg);
	struct vs_op *(*get_file)(struct sync_pass *p, const char *dc, const char *ds, const char *path, vs_op_fn done,
	    void *arg);
	void (*cancel)(struct vs_op *op);
	/* The snapshot's base disk i (p->src_ds[i], p->src_flat[i]) to read;
	 * NULL with *err: the job goes 失效. */
	struct disk *(*open_disk)(struct sync_pass *p, size_t i, char **err);
};

/* The rule's source platform through the vSphere driver: over HTTPS, or
 * through a datastore mount with lan_free. */
extern const struct sync_source sync_source_vsphere;

/* ---- what the kind provides ---- */

struct sync_kind_ops {
	/* Persist the kind's record (which holds the sync_state). */
	void (*save)(struct job *j);
	/* The changeId disk i's changes are counted from; NULL: every
	 * allocated area (first pass, no usable changeId). */
	const char *(*base_cid)(struct job *j, size_t i);
	/* Where disk i is written; NULL with *err: the job goes 失效. */
	struct disk *(*open_sink)(struct job *j, size_t i, char **err);
	/* Every disk is copied: disk i now holds the source as of cid (NULL:
	 * no change tracking).  Called before the snapshot goes. */
	void (*record)(struct job *j, size_t i, const char *cid);
	/* Whether the sink of disk i lost what earlier passes (or this one,
	 * before a restart) wrote into it (a staging image that is gone):
	 * NULL, or why (malloc'd); the disk is then copied in full again.
	 * May be NULL: sinks that cannot lose their content. */
	char *(*sink_lost)(struct job *j, size_t i);
	/* Every disk is in its sink: make the pass's bytes land where they
	 * belong (a target's deltas), then done(p); called before the
	 * changeIds are recorded and the snapshot goes, so after a crash the
	 * pass (its areas recomputed from the same snapshot) lands again.
	 * NULL: the sinks are where the bytes belong. */
	void (*land)(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p));
	/* Whether what a pass that was given up (stop, vanished snapshot)
	 * wrote into disk i's sink stays where it belongs (in place, or an
	 * image uploaded whole later): then the next pass copies below that
	 * point only what changed since.  0: the bytes were to land at the
	 * pass's end and never did, so the disk is copied in full again.
	 * NULL: they stay. */
	int (*keeps_partial)(struct job *j, size_t i);
	/* Before a pass is prepared: make the sinks reachable (decide how
	 * each disk is written, attach disks), then done(p).  NULL: nothing
	 * to do. */
	void (*before_pass)(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p));
	/* Whether disk i's sink already holds data of earlier passes that a
	 * read without a changeId must overwrite everywhere (a replication
	 * target's chain): such a disk is read whole, zeros included, not
	 * only its allocated areas.  NULL: never. */
	int (*sink_has_data)(struct job *j, size_t i);
};

/* Settings of the pass, from the rule and the system (rt_sync_settings). */
struct sync_settings {
	int fast_transfer;   /* CBT: allocated or changed areas; else whole disks */
	int quiesce;
	size_t chunk;        /* bytes per request at most (transfer_buffer) */
	int inflight;        /* chunks in flight per disk */
	size_t hold;         /* bytes the copy keeps at most; 0: the in-flight budget (copy_params) */
	struct bw_bucket *bucket; /* the rule's bandwidth, shared by its jobs; NULL: none */
};

/* ---- the pass (not persisted: recomputed after a restart from the
 * same snapshot and changeIds, which give the same answer) ---- */

struct sync_pass {
	struct job *j;
	struct sync_state *st;           /* inside the kind's data */
	const struct sync_source *src;
	const struct sync_kind_ops *kind;
	struct sync_settings set;
	struct vs_op *op;
	struct copy *copy;
	struct disk *rd, *wr;            /* the disk being copied: source and sink */
	/* The pass prepared for snapshot pass_snap. */
	char *pass_snap;
	struct vs_extent **areas;
	size_t *nareas;
	char **snap_cids;
	char **src_flat;                 /* datastore-relative flat file of each source disk */
	char **src_ds;
	uint64_t total;                  /* bytes of the pass */
	uint64_t base;                   /* bytes copied before this run (checkpoints, finished disks) */
	uint64_t disk_start;             /* of the current disk: bytes already copied when it started */
	struct vs_vm *vm;                /* the source VM as last read */
	size_t i;
	int step;
	int create;
	struct vs_extent *prev_areas;    /* changes since an interrupted pass, while a disk is queried */
	size_t nprev;
	int prev_asked;
	int lan_warned;
	double rate_t0;
	uint64_t rate_b0;
	double rate;
	int waited;
	void (*then)(struct sync_pass *p, int gone);
	void (*after)(struct sync_pass *p);
};

void sync_init(struct sync_pass *p, struct job *j, struct sync_state *st, const struct sync_source *src,
    const struct sync_kind_ops *kind);
/* Stop what is in flight; keep what was learnt. */
void sync_cancel(struct sync_pass *p);
void sync_free(struct sync_pass *p);
/* The kind's record was read again: a prepared pass stays only if it was
 * made for the same snapshot. */
void sync_refresh(struct sync_pass *p);
/* A reload may have changed the bandwidth windows. */
void sync_wake(struct sync_pass *p);

/* The kind changed the prepared pass's areas or checkpoints (a backup
 * reads again what its repository lacks): its byte counts follow. */
void sync_areas_changed(struct sync_pass *p);
/* Forget the prepared pass (its areas are computed again): a disk's base
 * changeId or checkpoint was changed by the kind. */
void sync_forget_prepared(struct sync_pass *p);
/* Make the pass ready (snapshot, areas, descriptors), then then(p, 0).
 * create: make a snapshot when the pass has none; without, a pass whose
 * snapshot is gone calls then(p, 1) (its progress remembered). */
void sync_prepare(struct sync_pass *p, int create, void (*then)(struct sync_pass *p, int gone));
/* Copy every disk of the prepared pass into its sink, record the
 * changeIds, remove the snapshot, then after(p). */
void sync_copy(struct sync_pass *p, void (*after)(struct sync_pass *p));
/* Prepare (creating the snapshot) and copy: one whole pass. */
void sync_run(struct sync_pass *p, void (*after)(struct sync_pass *p));
/* Stop, failure, delete: remove the pass's snapshot (what it copied is
 * remembered for the next pass), then after(p).  A source that cannot be
 * reached keeps it; it is removed when the job runs again. */
void sync_abandon(struct sync_pass *p, void (*after)(struct sync_pass *p));

/* What every copy of the job shares (buffers, parallelism, its rule's
 * bandwidth), with p->rd and p->wr as source and destination. */
struct copy_params;
void sync_copy_params(struct sync_pass *p, struct copy_params *cp);

/* The engine's snapshot names: "vmferry-<kind>-<rule>-<n>" and the
 * change-tracking stun "vmferry-<kind>-<rule>-stun". */
char *sync_snapshot_name(const struct job *j, const char *suffix);
/* Whether a snapshot name is one this job's engine made: parsed exactly,
 * so rule "a" never claims rule "a-b"'s.  A migration also knows the names
 * of the previous version ("vmferry-<rule>-<n>"). */
int sync_is_own_snapshot(const struct job *j, const char *name);

#endif
