/* A vSphere target VM, as migration (and next replication and restore)
 * make and write it: pre-checks of the source and of the target
 * platform, CreateVM or adoption of a VM this rule made before (by its
 * marker or its recorded moref), the target disks' data files from their
 * descriptors, whole-image uploads, deletion. */
#ifndef VMFERRY_JOBS_TARGET_H
#define VMFERRY_JOBS_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "engine/jobs/hotadd.h"

struct disk_io;
struct event;
struct job;
struct rec_reader;
struct sbuf;
struct vs_op;
struct vs_vm;

/* ---- persisted: lives inside the kind's record ---- */

struct target_disk {
	char *file;   /* "[ds] vm/vm.vmdk" of the target VM's disk */
	char *ds;     /* its datastore and flat data file (from its descriptor) */
	char *flat;
	uint8_t via;  /* enum target_via: how its last pass was written */
	char *via_why;
};

/* How a pass's bytes reach one target disk (SPEC §6), in the order they
 * are preferred. */
enum target_via {
	TARGET_VIA_NONE,   /* not decided yet */
	TARGET_VIA_DIRECT, /* its datastore mounted on the node (lan_free): in place */
	TARGET_VIA_HOTADD, /* attached to the appliance VM: in place through the hypervisor */
	TARGET_VIA_DELTA,  /* a vmfsSparse delta over HTTPS per pass, consolidated */
	TARGET_VIA_WHOLE,  /* a staging image uploaded whole at cutover */
};
const char *target_via_name(enum target_via v);

/* What decides a disk's transport. */
struct target_via_in {
	const char *ds;           /* its datastore */
	const char *mount;        /* where that datastore is mounted on the node (lan_free), or NULL */
	const char *hotadd_no;    /* why hot-add cannot write it, or NULL: it can */
	int deltas_no;            /* the datastore's deltas are not vmfsSparse */
	const char *deltas_why;   /* why, naming the datastore (NULL: "not vmfsSparse") */
	uint64_t capacity;
	int whole_allowed;        /* the rule allows the last resort (option whole_upload) */
	const char *whole_no;     /* why it is not allowed, when not for the option */
	enum target_via was;      /* the disk's transport so far */
};
/* The disk's transport and why (*why malloc'd, for the log and show).
 * TARGET_VIA_NONE: no transport the rule allows can write it (*why says
 * why).  A disk that went whole stays whole (its copy is in the staging
 * image, not in the target). */
enum target_via target_via_choose(const struct target_via_in *in, char **why);

/* How a pass's bytes reach the target's disks over HTTPS. */
enum target_write {
	TARGET_WRITE_UNKNOWN, /* not decided yet: the first landing finds out (a
	                       * datastore whose type tells, VMFS6, is WHOLE
	                       * from the pre-check on) */
	TARGET_WRITE_DELTA,   /* a vmfsSparse delta per pass, consolidated */
	TARGET_WRITE_WHOLE,   /* the staging images uploaded whole at cutover */
};

struct target_state {
	char *vm;     /* the target VM's moref */
	int64_t create_at; /* wall ms when CreateVM was asked for and its VM not yet seen; 0: none */
	uint8_t write;     /* enum target_write */
	char *write_why;   /* TARGET_WRITE_WHOLE: why deltas cannot be written */
	uint8_t land_stage; /* a landing: 0 none, 1 snapshot made, 2 deltas put, consolidating */
	char *land_snap;   /* the landing's snapshot of the target VM */
	int64_t land_asked_at; /* wall ms when that snapshot was asked for and not yet seen; 0: none */
	size_t ndisks;
	struct target_disk *disks;
};

void target_state_free(struct target_state *st);
void target_state_put(const struct target_state *st, struct sbuf *b);
int target_state_get(struct rec_reader *r, struct target_state *st, size_t ndisks);
/* The transports of the disks (after the rest of the kind's record), and
 * what they were before records held them. */
void target_state_put_vias(const struct target_state *st, struct sbuf *b);
int target_state_get_vias(struct rec_reader *r, struct target_state *st);
void target_state_old_vias(struct target_state *st);
/* As many disks as the source has. */
void target_state_size(struct target_state *st, size_t ndisks);

/* ---- the runtime ---- */

struct target {
	struct job *j;
	struct hotadd hot;        /* hot-add through the appliance VM */
	void (*via_changed)(struct job *j, size_t i, enum target_via was, enum target_via now);
	void (*writes_then)(struct target *t);
	int redecide;
	struct target_state *st;  /* inside the kind's data */
	void (*save)(struct job *j);
	struct vs_op *op;
	struct disk_io *upload;
	int upload_fd;
	struct vs_vm *src;        /* the source VM as the inventory showed it */
	char *src_cpu;            /* its host's CPU model, for the pre-check warning */
	uint64_t *src_caps;       /* reading the target's disks: the sizes they must have */
	struct event *timer;      /* waiting for a VM a CreateVM before a restart may still make */
	int create_ok;            /* create_at is committed: CreateVM may go */
	int waiting;              /* said that it waits */
	char *what;               /* the upload in flight, for its messages */
	struct target_land *land; /* a landing in progress (target_delta.c) */
	const struct target_land_disk *land_disks; /* target_land's, while hot-add disks are detached */
	size_t land_n;
	int land_top;
	uint64_t landed_bytes;    /* delta bytes the last landing put */
	int whole_never;          /* the kind keeps restore points: no whole uploads */
	int no_direct;            /* nor, once it has one, writes in place through a mount */
	void (*land_then)(struct target *t);
	size_t i;
	void *ctx;                /* for the caller's then() */
	void (*then)(struct target *t);
	/* Where the target is, when not the job's rule's target (a restore
	 * from a backup rule, which has none): a rule made for it, owned by
	 * the caller; NULL: the job's rule. */
	const struct cfg_rule *rule;
	/* Adopt a VM carrying the marker only when this state asked for it
	 * (its moref recorded, or CreateVM asked for): a restore to a new VM
	 * never writes into one an earlier restore made. */
	int adopt_asked_only;
	/* With whole_never: why (NULL: a replication's restore points). */
	const char *whole_no;
	char *destroy_error;      /* target_destroy: why the VM could not be deleted; NULL: it is gone */
};

struct cfg_rule;
struct vs_client;
/* The rule that says where the target is (t->rule, else the job's), and
 * the client of its target platform (NULL when not configured). */
const struct cfg_rule *target_rule(const struct target *t);
struct vs_client *target_client(const struct target *t);

void target_init(struct target *t, struct job *j, struct target_state *st, void (*save)(struct job *j));
void target_cancel(struct target *t);
void target_free(struct target *t);

/* The text that marks a target VM as made by this job's rule:
 * "vmferry <kind> <rule>/<vm>". */
char *target_marker(const struct job *j);

/* How long a CreateVM asked for before a crash or a lost answer may
 * still be making its VM: until then no second one is asked for. */
#define TARGET_CREATE_SETTLE_S 120

/* Pre-checks (the source VM usable: found, disks, none independent; the
 * target datacenter, host and datastore present, with room; a datastore
 * whose type says its deltas are seSparse, VMFS6, makes st->write
 * TARGET_WRITE_WHOLE with the reason, so the transports chosen before
 * the first pass know it), then the
 * target VM: adopted when it is the recorded one or carries the marker,
 * refused when someone else's, else created.  then(t) with t->src (the
 * source VM) and t->st->vm set; failures go out as rt_fail/rt_lost. */
void target_prepare(struct target *t, void (*then)(struct target *t));
/* target_prepare for a VM that is not on a source platform (a restore
 * from a point's saved configuration): src is copied as the source. */
void target_prepare_from(struct target *t, const struct vs_vm *src, void (*then)(struct target *t));
/* The target VM's disks: as many and as large as the source's
 * (capacities[i]), their files and data extents recorded. */
void target_read_disks(struct target *t, const uint64_t *capacities, size_t n, void (*then)(struct target *t));
/* Upload a local image whole to target disk i (its flat file); then(t)
 * once it is there (a failure goes out as rt_fail/rt_lost). */
void target_upload(struct target *t, size_t i, const char *local, uint64_t size, void (*then)(struct target *t));
/* Upload a body made as it goes (a delta) to a datastore path of the target. */
struct upload_source;
void target_upload_source(struct target *t, const char *ds, const char *path, const struct upload_source *src,
    uint64_t size, const char *what, void (*then)(struct target *t));
/* Upload a local file whole to a datastore path of the target. */
void target_upload_file(struct target *t, const char *ds, const char *path, const char *local, uint64_t size,
    const char *what, void (*then)(struct target *t));
/* ---- how each disk is written (target_via.c) ---- */

/* Before a pass: decide each disk's transport (logged with its reason,
 * kept in the record), attach the hot-add disks to the appliance VM
 * (falling back to the next transport when that fails), then then(t).
 * A disk whose transport changed is told to the kind (via_changed, set
 * by the caller): bytes that went elsewhere before may be missing from
 * the new path.  A disk nothing may write fails the job.  redecide 0 (a
 * pass going on, after a restart too): the recorded choices stand, only
 * a hot-add that cannot be attached any more moves on. */
void target_writes_begin(struct target *t, int redecide, void (*then)(struct target *t));
/* Where disk i of a pass is written: the target disk in place (mount,
 * hot-add device), or the staging image given. */
struct disk *target_open_sink(struct target *t, size_t i, const char *staging, uint64_t size, char **err);
/* Whether disk i is written in place (nothing to land or upload). */
int target_in_place(const struct target *t, size_t i);
/* Each disk's transport and why, for show: [{disk, via, why}]. */
typedef struct json_t json_t;
json_t *target_vias_json(const struct target_state *st);
/* Detach whatever this job holds attached to the appliance VM. */
void target_writes_end(struct target *t, void (*then)(struct target *t));

/* ---- landing a pass through snapshot deltas (target_delta.c) ---- */

struct vs_extent;

/* What a pass wrote for one target disk: its areas, in a local image that
 * holds the source's bytes there (and, around them, the bytes the target
 * already has). */
struct target_land_disk {
	const struct vs_extent *areas;
	size_t nareas;
	const char *image;
	int skip;                 /* written in place (a mount): nothing to land */
};

/* Put a pass's areas into the target VM's disks: a snapshot of the
 * (powered-off) target, for each disk a vmfsSparse delta holding exactly
 * the areas in place of the empty delta the snapshot made (one PUT whose
 * size follows the areas), then the snapshot removed, which consolidates
 * the deltas into the base.  Every step can be repeated after a crash.  A
 * target whose deltas are not vmfsSparse (VMFS6's seSparse), or a disk
 * over the COWD limit, makes st->write TARGET_WRITE_WHOLE, says why in
 * the log, and then(t) comes back without writing: the caller uploads
 * whole images instead (a kind with whole_never fails instead).  top: the
 * deltas go in place of the VM's current disks, the empty deltas its
 * latest snapshot made (a replication's restore point), and nothing is
 * consolidated.  Failures go out as rt_fail/rt_lost. */
void target_land(struct target *t, const struct target_land_disk *disks, size_t n, int top, void (*then)(struct target *t));
/* Before a pass, when disks go as deltas, nothing found out yet whether
 * the target takes them, and the whole upload is no way out (a kind that
 * keeps restore points, whole_upload: false): a snapshot of the target VM,
 * its deltas' descriptors read, the snapshot removed, nothing put.  A
 * target whose deltas cannot be written fails the job, naming the
 * datastore and why, before anything is copied; otherwise then(t). */
void target_deltas_check(struct target *t, void (*then)(struct target *t));
void target_land_cancel(struct target *t);

/* Power the target VM off and destroy it (its disks go with it); then(t)
 * with t->destroy_error NULL when it is gone (a VM gone already too), or
 * why not. */
void target_destroy(struct target *t, void (*then)(struct target *t));

#endif
