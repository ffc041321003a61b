#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Restores of a backup job's points (see restore.h). */
#include "engine/jobs/restore.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/repo.h"
#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/record.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"
#include "engine/engine.h"
#include "engine/jobs/backup.h"
#include "engine/jobs/backup_data.h"
#include "engine/jobs/copy.h"
#include "engine/jobs/job.h"
#include "engine/jobs/repos.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "engine/jobs/target.h"
#include "engine/jobs/vmconfig.h"
#include "engine/platform.h"
#include "engine/request.h"
#include "fsm/tables.h"

#define RST_RECORD_V1 1
#define RST_CHECKPOINT_S 2.0

enum rst_target { RST_ORIGINAL, RST_NEW };

/* How far a restore got (persisted; each stage's work can be redone). */
enum rst_stage {
	RST_ASKED = 1, /* recorded; nothing done */
	RST_VM,        /* the target VM known (created, adopted, or the original checked) and its disks read */
	RST_AREAS,     /* the areas to write decided (files in temp_dir); copying, with checkpoints */
	RST_LAND,      /* copied into the staging images; landing in the target */
	RST_FINISH,    /* landed: power on, or the original's change tracking reset */
	RST_GONE,      /* given up (stop, failure, delete); the new VM it made still to be removed */
};

struct rst_data {
	uint8_t stage, target, power_on, cbt;
	uint64_t seq;
	char *name, *platform, *datacenter, *host, *datastore;
	int64_t started;
	uint64_t copied;        /* bytes of finished disks */
	struct target_state tgt;
	size_t ndisks;
	uint64_t *ckpt;         /* per disk: below is in its staging image; SYNC_DISK_DONE when all */
};

static void free_where(struct rst *r);

struct rst {
	struct job *j;
	struct rst_data d;
	struct cfg_rule rule;   /* where the target is (target.c's t->rule) */
	/* Its datacenter, host, datastore, platform, the rule's source
	 * platform and node: owned, as a reload frees the rule's. */
	char *where[6];
	struct target t;
	struct repo *repo;
	struct repo_point *pt;
	struct work *work;
	struct vs_op *op;
	struct copy *copy;
	struct disk *rd, *wr;
	struct vs_vm *vm;       /* the VM to create (new), or the original as read */
	struct vs_extent **areas;
	size_t *nareas;
	struct target_land_disk *land;
	char **imgs;
	char *snap;             /* the original's snapshot to ask CBT against */
	size_t i;
	uint64_t total, done_before;
	double rate_t0;
	uint64_t rate_b0;
	double rate;
	void (*gone_then)(struct job *j, const char *problem); /* rst_give_up's */
	char *gone_problem;
};

/* ---- the record ---- */

static void
data_free(struct rst_data *d)
{
	free(d->name);
	free(d->platform);
	free(d->datacenter);
	free(d->host);
	free(d->datastore);
	target_state_free(&d->tgt);
	free(d->ckpt);
	memset(d, 0, sizeof(*d));
}

static void
data_size(struct rst_data *d, size_t n)
{
	if (d->ndisks == n && d->ckpt != NULL)
		return;
	free(d->ckpt);
	d->ndisks = n;
	d->ckpt = xcalloc(n ? n : 1, sizeof(*d->ckpt));
}

static void
data_put(const struct rst_data *d, struct sbuf *b)
{
	size_t i;

	rec_put_u16(b, RST_RECORD_V1);
	rec_put_u8(b, d->stage);
	rec_put_u8(b, d->target);
	rec_put_u8(b, d->power_on);
	rec_put_u8(b, d->cbt);
	rec_put_u64(b, d->seq);
	rec_put_str(b, d->name);
	rec_put_str(b, d->platform);
	rec_put_str(b, d->datacenter);
	rec_put_str(b, d->host);
	rec_put_str(b, d->datastore);
	rec_put_u64(b, (uint64_t)d->started);
	rec_put_u64(b, d->copied);
	rec_put_u64(b, d->ndisks);
	for (i = 0; i < d->ndisks; i++)
		rec_put_u64(b, d->ckpt[i]);
	target_state_put(&d->tgt, b);
	target_state_put_vias(&d->tgt, b);
}

static int
data_get(const uint8_t *p, size_t n, struct rst_data *d)
{
	struct rec_reader r;
	uint64_t nd, i;

	memset(d, 0, sizeof(*d));
	rec_reader_init(&r, p, n);
	if (rec_get_u16(&r) != RST_RECORD_V1)
		return -1;
	d->stage = rec_get_u8(&r);
	d->target = rec_get_u8(&r);
	d->power_on = rec_get_u8(&r);
	d->cbt = rec_get_u8(&r);
	d->seq = rec_get_u64(&r);
	d->name = rec_get_opt_str(&r);
	d->platform = rec_get_opt_str(&r);
	d->datacenter = rec_get_opt_str(&r);
	d->host = rec_get_opt_str(&r);
	d->datastore = rec_get_opt_str(&r);
	d->started = (int64_t)rec_get_u64(&r);
	d->copied = rec_get_u64(&r);
	nd = rec_get_u64(&r);
	if (r.bad || nd > REPO_MAX_DISKS)
		goto bad;
	data_size(d, (size_t)nd);
	for (i = 0; i < nd; i++)
		d->ckpt[i] = rec_get_u64(&r);
	if (r.bad || target_state_get(&r, &d->tgt, (size_t)nd) != 0 || target_state_get_vias(&r, &d->tgt) != 0 ||
	    d->stage < RST_ASKED ||
	    d->stage > RST_GONE || d->target > RST_NEW)
		goto bad;
	return 0;
bad:
	data_free(d);
	return -1;
}

static void
data_to(struct bak_data *bd, const struct rst_data *d)
{
	struct sbuf b;

	sbuf_init(&b);
	data_put(d, &b);
	free(bd->restore);
	bd->nrestore = b.len;
	bd->restore = (uint8_t *)sbuf_steal(&b);
}

/* ---- the runtime ---- */

static void
forget_pass(struct rst *r)
{
	size_t i;

	for (i = 0; r->areas != NULL && i < r->d.ndisks; i++)
		free(r->areas[i]);
	free(r->areas);
	free(r->nareas);
	r->areas = NULL;
	r->nareas = NULL;
	for (i = 0; r->imgs != NULL && i < r->d.ndisks; i++)
		free(r->imgs[i]);
	free(r->imgs);
	r->imgs = NULL;
	free(r->land);
	r->land = NULL;
}

void
rst_cancel(struct rst *r)
{
	if (r == NULL)
		return;
	work_cancel(r->work);
	r->work = NULL;
	token_drop(vs_op_cancel(r->op));
	r->op = NULL;
	if (r->copy != NULL)
		copy_cancel(r->copy);
	r->copy = NULL;
	disk_close(r->rd);
	disk_close(r->wr);
	r->rd = NULL;
	r->wr = NULL;
	if (r->t.j != NULL)
		target_cancel(&r->t);
}

void
rst_free(struct rst *r)
{
	if (r == NULL)
		return;
	rst_cancel(r);
	if (r->t.j != NULL)
		target_free(&r->t);
	forget_pass(r);
	repo_point_free(r->pt);
	if (r->vm != NULL) {
		vs_vm_free(r->vm);
		free(r->vm);
	}
	free(r->snap);
	free(r->gone_problem);
	free_where(r);
	data_free(&r->d);
	free(r);
}

static void
save(struct job *j)
{
	struct rst **slot;
	struct bak_data *bd = bak_data_of(j, &slot);

	if (bd == NULL || *slot == NULL)
		return;
	data_to(bd, &(*slot)->d);
	bak_save(j);
}

static struct rst *
rst_of(struct job *j)
{
	struct rst **slot;

	if (j == NULL || bak_data_of(j, &slot) == NULL)
		return NULL;
	return *slot;
}

/* The runtime a driver call answers to (its op done), or NULL when that
 * work is no longer current; the answer's status is the caller's. */
static struct rst *
answer_of(void *arg)
{
	struct rst *r = rst_of(token_take(arg));

	if (r != NULL)
		r->op = NULL;
	return r;
}

static char *
xstrdup_opt(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
free_where(struct rst *r)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(r->where); i++) {
		free(r->where[i]);
		r->where[i] = NULL;
	}
}

/* The rule that says where the target is: the backup rule's source
 * platform, or what the restore names. */
static void
make_rule(struct rst *r, const struct vs_vm *cfg_vm, const char *src_dc)
{
	const struct cfg_rule *br = r->j->cfg;

	memset(&r->rule, 0, sizeof(r->rule));
	r->rule.kind = CFG_BACKUP;
	r->rule.name = r->j->rule;
	free_where(r);
	r->where[3] = xstrdup_opt(r->d.platform != NULL ? r->d.platform : br->source_platform);
	r->where[4] = xstrdup_opt(br->source_platform);
	r->where[5] = xstrdup_opt(br->node);
	r->rule.source_platform = r->where[4];
	r->rule.node = r->where[5];
	r->rule.options = br->options;
	r->rule.options.whole_upload = r->d.target == RST_NEW;
	r->rule.target.platform = r->where[3];
	r->where[0] = xstrdup_opt(r->d.datacenter != NULL                      ? r->d.datacenter
	                          : cfg_vm != NULL && cfg_vm->datacenter != NULL ? cfg_vm->datacenter
	                                                                         : src_dc);
	r->where[1] = xstrdup_opt(r->d.host != NULL ? r->d.host : cfg_vm != NULL ? cfg_vm->host_name : NULL);
	r->where[2] = xstrdup_opt(r->d.datastore != NULL ? r->d.datastore : cfg_vm != NULL ? cfg_vm->datastore : NULL);
	r->rule.target.datacenter = r->where[0];
	r->rule.target.host = r->where[1];
	r->rule.target.datastore = r->where[2];
	r->rule.target.name = r->d.name;
	r->t.rule = &r->rule;
	r->t.hot.rule = &r->rule;
}

/* Disk i goes another way than before (a hot-add that cannot be attached
 * any more): what went the old way may not be where the new way looks,
 * so the disk is copied again. */
static void
via_changed(struct job *j, size_t i, enum target_via was, enum target_via now)
{
	struct rst **slot;

	if (bak_data_of(j, &slot) == NULL || *slot == NULL || i >= (*slot)->d.ndisks)
		return;
	job_log(j, LOG_INFO, "disk %zu: written through %s now, not %s: copied again", i, target_via_name(now),
	    target_via_name(was));
	(*slot)->d.ckpt[i] = 0;
}

/* The job's restore runtime (made when it has none), with nothing in
 * flight, no pass and no data. */
static struct rst *
rst_fresh(struct job *j, struct rst **slot)
{
	struct rst *r;

	if (*slot == NULL) {
		*slot = xcalloc(1, sizeof(**slot));
		(*slot)->j = j;
	}
	r = *slot;
	rst_cancel(r);
	if (r->t.j != NULL)
		target_free(&r->t);
	forget_pass(r);
	data_free(&r->d);
	return r;
}

/* The runtime for restoring's work, its data read from the record. */
static struct rst *
rst_enter(struct job *j)
{
	struct rst **slot;
	struct bak_data *bd = bak_data_of(j, &slot);
	struct rst *r;

	if (bd == NULL) {
		rt_unreadable(j, 1);
		return NULL;
	}
	if (j->cfg == NULL) {
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return NULL;
	}
	r = rst_fresh(j, slot);
	if (bd->restore == NULL || data_get(bd->restore, bd->nrestore, &r->d) != 0) {
		rt_fail(j, "no restore is recorded for this job (or its record cannot be read)");
		return NULL;
	}
	target_init(&r->t, j, &r->d.tgt, save);
	r->t.whole_never = r->d.target == RST_ORIGINAL;
	r->t.via_changed = via_changed;
	r->t.adopt_asked_only = 1;
	r->t.whole_no = "a restore to the original VM writes only what differs from the point, which a whole upload "
	                "of a staging image holding just that cannot do";
	return r;
}

/* ---- the command ---- */

static const struct bak_point *
point_of(const struct bak_data *d, uint64_t seq)
{
	size_t i;

	for (i = 0; i < d->npoints; i++)
		if (d->points[i].seq == seq)
			return &d->points[i];
	return NULL;
}

int
rst_ask(struct job *j, struct bak_data *bd, const struct request *req, char **why)
{
	struct rst_data d;
	char *end;
	int is_new = str_eq(req->target, "new");

	memset(&d, 0, sizeof(d));
	if (bd->restore != NULL && data_get(bd->restore, bd->nrestore, &d) == 0) {
		*why = xasprintf("restore: VM %s, which the restore of point %llu created, is still to be removed from the "
		                 "platform: start the job (or delete it) to try again", d.name, (unsigned long long)d.seq);
		data_free(&d);
		return -1;
	}
	if (bd->npoints == 0) {
		*why = xasprintf("restore: VM %s has no restore point yet", j->vm);
		return -1;
	}
	if (req->point == NULL || str_eq(req->point, "latest")) {
		d.seq = bd->points[bd->npoints - 1].seq;
	} else {
		d.seq = strtoull(req->point, &end, 10);
		if (*end != '\0' || req->point[0] < '1' || req->point[0] > '9' || point_of(bd, d.seq) == NULL) {
			struct sbuf b;
			size_t i;

			sbuf_init(&b);
			for (i = 0; i < bd->npoints; i++)
				sbuf_printf(&b, "%s%llu", i ? ", " : "", (unsigned long long)bd->points[i].seq);
			*why = xasprintf("restore: VM %s has no point %s (its points: %s)", j->vm, req->point, b.data);
			sbuf_free(&b);
			return -1;
		}
	}
	if (!is_new && (req->name || req->platform || req->datacenter || req->host || req->datastore)) {
		*why = xstrdup("restore: --name, --platform, --datacenter, --host and --datastore apply to --target new");
		return -1;
	}
	if (req->platform != NULL && platform_client(req->platform) == NULL) {
		*why = xasprintf("restore: platform %s is not configured", req->platform);
		return -1;
	}
	if (req->name != NULL && !name_is_safe(req->name)) {
		*why = xasprintf("restore: %s cannot be a VM name", req->name);
		return -1;
	}
	d.stage = RST_ASKED;
	d.target = is_new ? RST_NEW : RST_ORIGINAL;
	d.power_on = req->power_on != 0;
	d.name = is_new ? (req->name != NULL ? xstrdup(req->name) : xasprintf("%s-restored", j->vm)) : NULL;
	d.platform = req->platform ? xstrdup(req->platform) : NULL;
	d.datacenter = req->datacenter ? xstrdup(req->datacenter) : NULL;
	d.host = req->host ? xstrdup(req->host) : NULL;
	d.datastore = req->datastore ? xstrdup(req->datastore) : NULL;
	d.started = (int64_t)time(NULL);
	data_to(bd, &d);
	job_log(j, LOG_INFO, "restore of point %llu asked: to %s%s%s", (unsigned long long)d.seq,
	    is_new ? "a new VM " : "the original VM", is_new ? d.name : "", d.power_on ? ", powered on after" : "");
	data_free(&d);
	return 0;
}

static char *
staging(struct job *j, const char *what, size_t i)
{
	char name[48], *err = NULL, *path;
	int en = 0;

	snprintf(name, sizeof(name), "restore-disk%zu.%s", i, what);
	path = rt_staging_file(j, name, &err, &en);
	free(err);
	return path;
}

static void
remove_staging(struct job *j, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char *a = staging(j, "img", i), *b = staging(j, "areas", i);

		if (a != NULL)
			rt_staging_unlink(j, a);
		if (b != NULL)
			rt_staging_unlink(j, b);
		free(a);
		free(b);
	}
}

/* The restore's record is gone: nothing of it is left to do. */
static void
record_clear(struct bak_data *bd)
{
	free(bd->restore);
	bd->restore = NULL;
	bd->nrestore = 0;
}

static void
gone_end(struct rst *r, char *problem)
{
	struct job *j = r->j;
	void (*then)(struct job *j, const char *problem) = r->gone_then;

	r->gone_then = NULL;
	free(r->gone_problem);
	r->gone_problem = problem;
	then(j, problem);
}

static void
vm_removed(struct target *t)
{
	struct rst *r = rst_of(t->j);
	struct bak_data *bd;
	char *problem;

	if (r == NULL || (bd = bak_data_of(r->j, NULL)) == NULL)
		return;
	if (t->destroy_error == NULL) {
		job_log(r->j, LOG_INFO, "VM %s (%s), which the restore of point %llu created, is removed from %s: a restore "
		                        "to that name can run again", r->d.name, r->d.tgt.vm, (unsigned long long)r->d.seq,
		    r->where[3]);
		record_clear(bd);
		bak_save(r->j);
		gone_end(r, NULL);
		return;
	}
	problem = xasprintf("VM %s (%s), which the restore of point %llu created, could not be removed from %s (%s); "
	                    "the next start or delete of the job tries again", r->d.name, r->d.tgt.vm,
	    (unsigned long long)r->d.seq, r->where[3], t->destroy_error);
	job_log(r->j, LOG_WARN, "%s", problem);
	gone_end(r, problem);
}

static void orig_snap_removed(struct vs_out *out, void *arg);

/* The original VM as it is: a snapshot the restore left on it (its
 * landing's, or the one it asked change tracking against) is removed,
 * one at a time, which consolidates; what cannot be done now the VM's
 * next backup does (it removes them too). */
static void
orig_snaps(struct vs_out *out, void *arg)
{
	struct rst *r = answer_of(arg);
	struct job *j;
	char *land, *asked;
	size_t k;

	if (r == NULL)
		return;
	j = r->j;
	if (out->status != VS_OK) {
		job_log(j, LOG_WARN, "VM %s cannot be read now (%s): its next backup removes any snapshot this restore left "
		                     "on it", j->vm, out->error ? out->error : vs_status_name(out->status));
		gone_end(r, NULL);
		return;
	}
	if (r->i++ >= 4) {
		/* Removals that leave the snapshot there: the next backup's. */
		gone_end(r, NULL);
		return;
	}
	land = sync_snapshot_name(j, "land");
	asked = sync_snapshot_name(j, "restore");
	for (k = 0; k < out->vm->nsnapshots; k++)
		if (str_eq(out->vm->snapshots[k].name, land) || str_eq(out->vm->snapshots[k].name, asked)) {
			job_log(j, LOG_INFO, "removing snapshot %s (%s) that the restore left on VM %s",
			    out->vm->snapshots[k].name, out->vm->snapshots[k].moref, j->vm);
			r->op = vs_remove_snapshot(target_client(&r->t), out->vm->snapshots[k].moref, orig_snap_removed,
			    token_new(j));
			break;
		}
	free(land);
	free(asked);
	if (r->op == NULL)
		gone_end(r, NULL);
}

static void
orig_snap_removed(struct vs_out *out, void *arg)
{
	struct rst *r = answer_of(arg);

	if (r != NULL && out->status != VS_OK) {
		job_log(r->j, LOG_WARN, "removing the restore's snapshot of VM %s: %s; its next backup removes it", r->j->vm,
		    out->error ? out->error : vs_status_name(out->status));
		gone_end(r, NULL);
	} else if (r != NULL) {
		r->op = vs_get_vm(target_client(&r->t), r->d.tgt.vm, orig_snaps, token_new(r->j));
	}
}

void
rst_give_up(struct job *j, struct bak_data *bd, void (*then)(struct job *j, const char *problem))
{
	struct rst_data d;
	struct rst **slot;
	struct rst *r;
	int orig;

	if (bd->restore == NULL || data_get(bd->restore, bd->nrestore, &d) != 0) {
		record_clear(bd);
		then(j, NULL);
		return;
	}
	if (d.stage != RST_GONE) {
		job_log(j, LOG_INFO, "the restore of point %llu is given up", (unsigned long long)d.seq);
		if (d.target == RST_ORIGINAL && d.stage >= RST_LAND) {
			/* Some of its writes may have landed, unseen by the VM's
			 * change tracking: only a full is right next. */
			job_log(j, LOG_WARN, "VM %s may hold part of point %llu now: its next point is a full", j->vm,
			    (unsigned long long)d.seq);
			bd->force_full = 1;
		}
		remove_staging(j, d.ndisks);
		if (d.target == RST_NEW && d.tgt.vm == NULL && d.tgt.create_at != 0) {
			char *mark = target_marker(j);

			job_log(j, LOG_WARN, "VM %s was asked for but never seen: a VM of that name whose annotation is "
			                     "\"%s\" is a leftover of this restore (remove it by hand)", d.name, mark);
			free(mark);
		}
	}
	/* The original VM read (it may carry the restore's snapshots) ... */
	orig = d.target == RST_ORIGINAL && d.tgt.vm != NULL && d.stage >= RST_VM && d.stage != RST_GONE;
	if (!orig && (d.target != RST_NEW || d.tgt.vm == NULL)) {
		data_free(&d);
		record_clear(bd);
		then(j, NULL);
		return;
	}
	/* ... or a new VM this restore created (its moref in the record, set
	 * only for a VM it made: target.c adopts no other) removed, the
	 * record saying so until it is gone. */
	if (orig) {
		record_clear(bd);
	} else {
		d.stage = RST_GONE;
		data_to(bd, &d);
	}
	bak_save(j);
	if (bak_data_of(j, &slot) == NULL) {
		data_free(&d);
		then(j, NULL);
		return;
	}
	r = rst_fresh(j, slot);
	r->d = d;
	free_where(r);
	memset(&r->rule, 0, sizeof(r->rule));
	r->rule.kind = CFG_BACKUP;
	r->rule.name = j->rule;
	r->where[3] = xstrdup_opt(d.platform != NULL ? d.platform : j->cfg != NULL ? j->cfg->source_platform : NULL);
	r->rule.target.platform = r->where[3];
	target_init(&r->t, j, &r->d.tgt, save);
	r->t.rule = &r->rule;
	r->gone_then = then;
	r->i = 0;
	if (orig) {
		if (target_client(&r->t) != NULL)
			r->op = vs_get_vm(target_client(&r->t), d.tgt.vm, orig_snaps, token_new(j));
		else
			gone_end(r, NULL);
		return;
	}
	if (target_client(&r->t) == NULL) {
		r->t.destroy_error = xasprintf("platform %s is not configured", r->where[3] ? r->where[3] : "?");
		vm_removed(&r->t);
		return;
	}
	job_log(j, LOG_INFO, "removing VM %s (%s) from %s: this restore created it", d.name, d.tgt.vm, r->where[3]);
	target_destroy(&r->t, vm_removed);
}

int
rst_given_up(const struct bak_data *bd)
{
	struct rst_data d;
	int gone;

	if (bd->restore == NULL || data_get(bd->restore, bd->nrestore, &d) != 0)
		return 0;
	gone = d.stage == RST_GONE;
	data_free(&d);
	return gone;
}

json_t *
rst_details(const struct bak_data *bd)
{
	static const char *const stages[] = { "none", "asked", "target_vm", "areas", "landing", "finishing",
		"given_up" };
	struct rst_data d;
	json_t *o;

	if (bd->restore == NULL || data_get(bd->restore, bd->nrestore, &d) != 0)
		return NULL;
	o = json_pack("{s:I,s:s,s:s?,s:s,s:b}", "point", (json_int_t)d.seq, "target",
	    d.target == RST_NEW ? "new" : "original", "name", d.name, "stage", stages[d.stage], "power_on", d.power_on);
	data_free(&d);
	return o;
}

/* ---- restoring ---- */

static void vm_known(struct rst *r);
static void copy_next(struct rst *r);
static void land(struct rst *r);
static void finish(struct rst *r);

struct rst_read {
	struct token *t;
	struct repo *repo;
	char *rule, *vm;
	uint64_t seq;
	struct repo_point *pt;
	char *err;
};

static void
read_run(void *arg)
{
	struct rst_read *w = arg;

	if (repo_point_read(w->repo, w->rule, w->vm, w->seq, &w->pt, &w->err) != 0)
		w->pt = NULL;
}

static void
read_release(void *arg)
{
	struct rst_read *w = arg;

	if (w->t != NULL)
		token_take(w->t);
	repo_point_free(w->pt);
	free(w->rule);
	free(w->vm);
	free(w->err);
	free(w);
}

static void orig_found(struct job *j, const struct vs_vm *vm);
static void new_prepared(struct target *t);

static void
read_done(void *arg)
{
	struct rst_read *w = arg;
	struct job *j = token_take(w->t);
	struct rst *r = rst_of(j);
	struct vs_vm *cfg_vm;
	json_t *cfg;
	char *err = NULL;
	size_t i;

	w->t = NULL;
	if (r == NULL)
		return;
	r->work = NULL;
	if (w->pt == NULL) {
		rt_fail(j, "restore point %llu cannot be read: %s", (unsigned long long)r->d.seq, w->err);
		return;
	}
	repo_point_free(r->pt);
	r->pt = w->pt;
	w->pt = NULL;
	data_size(&r->d, r->pt->ndisks);
	target_state_size(&r->d.tgt, r->pt->ndisks);
	if (r->vm != NULL) {
		vs_vm_free(r->vm);
		free(r->vm);
		r->vm = NULL;
	}
	cfg = r->pt->config != NULL ? json_loads(r->pt->config, 0, NULL) : NULL;
	cfg_vm = xcalloc(1, sizeof(*cfg_vm));
	if (cfg == NULL || vmconfig_parse(cfg, cfg_vm, &err) != 0) {
		free(cfg_vm);
		cfg_vm = NULL;
		if (r->d.target == RST_NEW) {
			rt_fail(j, "restore point %llu: %s", (unsigned long long)r->d.seq,
			    err != NULL ? err : "it holds no saved VM configuration");
			free(err);
			json_decref(cfg);
			return;
		}
	}
	free(err);
	json_decref(cfg);
	if (cfg_vm != NULL && cfg_vm->ndisks == r->pt->ndisks)
		for (i = 0; i < cfg_vm->ndisks; i++)
			cfg_vm->disks[i].capacity = r->pt->disks[i].capacity;
	{
		struct bak_data *bd = bak_data_of(j, NULL);

		make_rule(r, cfg_vm, bd != NULL ? bd->sync.src_dc : NULL);
	}
	r->vm = cfg_vm;
	if (r->d.stage >= RST_LAND) {
		vm_known(r);
		return;
	}
	if (r->d.target == RST_NEW) {
		job_log(j, LOG_INFO, "restoring point %llu to a new VM %s on %s (datacenter %s, host %s, datastore %s)",
		    (unsigned long long)r->d.seq, r->d.name, r->rule.target.platform,
		    r->rule.target.datacenter ? r->rule.target.datacenter : "?",
		    r->rule.target.host ? r->rule.target.host : "?",
		    r->rule.target.datastore ? r->rule.target.datastore : "?");
		if (r->vm == NULL || r->rule.target.datacenter == NULL || r->rule.target.host == NULL ||
		    r->rule.target.datastore == NULL) {
			rt_fail(j, "restore point %llu: where to create the VM is not known: give --datacenter, --host "
			           "and --datastore", (unsigned long long)r->d.seq);
			return;
		}
		free(r->vm->name);
		r->vm->name = xstrdup(r->d.name);
		target_prepare_from(&r->t, r->vm, new_prepared);
		return;
	}
	rt_find_source_then(j, 0, orig_found);
}

void
bak_enter_restoring(struct job *j, int event)
{
	struct rst *r = rst_enter(j);
	struct rst_read *w;
	char *err = NULL;

	if (r == NULL)
		return;
	if (event == EV_ADMIT)
		job_progress(j, 0, 0, 0);
	if ((r->repo = repos_get(j->cfg, &err)) == NULL) {
		rt_fail(j, "%s", err);
		free(err);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->t = token_new(j);
	w->repo = r->repo;
	w->rule = xstrdup(j->rule);
	w->vm = xstrdup(j->vm);
	w->seq = r->d.seq;
	r->work = work_submit(read_run, read_done, read_release, w);
}

/* ---- the target VM ---- */

static void
disks_read(struct target *t)
{
	struct rst *r = rst_of(t->j);

	if (r == NULL)
		return;
	if (r->d.stage < RST_VM)
		r->d.stage = RST_VM;
	save(r->j);
	vm_known(r);
}

static void
read_disks(struct rst *r)
{
	uint64_t *caps = xcalloc(r->pt->ndisks ? r->pt->ndisks : 1, sizeof(*caps));
	size_t i;

	for (i = 0; i < r->pt->ndisks; i++)
		caps[i] = r->pt->disks[i].capacity;
	target_read_disks(&r->t, caps, r->pt->ndisks, disks_read);
	free(caps);
}

static void
new_prepared(struct target *t)
{
	struct rst *r = rst_of(t->j);

	if (r != NULL)
		read_disks(r);
}

static void cbt_snap_gone(struct vs_out *out, void *arg);

static void
orig_read(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "reading the original VM");
	struct rst *r = rst_of(j);
	char *name;
	size_t i;

	if (r == NULL)
		return;
	r->op = NULL;
	if (!str_eq(out->vm->power, "poweredOff")) {
		rt_fail(j, "restore refused: VM %s is %s; a restore to the original VM needs it powered off (power it "
		           "off, or restore to a new VM with --target new)", j->vm,
		    out->vm->power != NULL ? out->vm->power : "in an unknown power state");
		return;
	}
	if (out->vm->ndisks != r->pt->ndisks) {
		rt_fail(j, "restore refused: VM %s has %zu disks, point %llu has %zu", j->vm, out->vm->ndisks,
		    (unsigned long long)r->d.seq, r->pt->ndisks);
		return;
	}
	for (i = 0; i < r->pt->ndisks; i++)
		if (out->vm->disks[i].capacity != r->pt->disks[i].capacity) {
			rt_fail(j, "restore refused: disk %zu of VM %s holds %llu bytes, point %llu's %llu", i, j->vm,
			    (unsigned long long)out->vm->disks[i].capacity, (unsigned long long)r->d.seq,
			    (unsigned long long)r->pt->disks[i].capacity);
			return;
		}
	/* A snapshot this restore made before a crash: removed first. */
	name = sync_snapshot_name(j, "restore");
	for (i = 0; i < out->vm->nsnapshots; i++)
		if (str_eq(out->vm->snapshots[i].name, name)) {
			job_log(j, LOG_INFO, "removing leftover snapshot %s (%s)", name, out->vm->snapshots[i].moref);
			r->op = vs_remove_snapshot(target_client(&r->t), out->vm->snapshots[i].moref, cbt_snap_gone,
			    token_new(j));
			free(name);
			return;
		}
	free(name);
	if (r->vm != NULL) {
		vs_vm_free(r->vm);
		free(r->vm);
	}
	r->vm = xcalloc(1, sizeof(*r->vm));
	rt_vm_dup(out->vm, r->vm);
	if (!str_eq(r->d.tgt.vm, out->vm->moref)) {
		free(r->d.tgt.vm);
		r->d.tgt.vm = xstrdup(out->vm->moref);
	}
	read_disks(r);
}

static void
orig_found(struct job *j, const struct vs_vm *vm)
{
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = vs_get_vm(target_client(&r->t), vm->moref, orig_read, token_new(j));
}

/* ---- the areas to write ---- */

static int
areas_write(struct rst *r, size_t i)
{
	struct sbuf b;
	char *path = staging(r->j, "areas", i), *err = NULL;
	size_t k;
	int rc;

	if (path == NULL) {
		rt_lost(r->j, "node temp_dir cannot be written");
		return -1;
	}
	sbuf_init(&b);
	rec_put_u64(&b, r->nareas[i]);
	for (k = 0; k < r->nareas[i]; k++) {
		rec_put_u64(&b, r->areas[i][k].start);
		rec_put_u64(&b, r->areas[i][k].length);
	}
	rc = write_file_atomic(path, b.data, b.len, &err);
	if (rc != 0)
		rt_lost(r->j, "node temp_dir cannot be written: %s", err);
	free(err);
	sbuf_free(&b);
	free(path);
	return rc;
}

static int
areas_read(struct rst *r, size_t i)
{
	char *path = staging(r->j, "areas", i);
	FILE *f = path != NULL ? fopen(path, "rb") : NULL;
	struct rec_reader rr;
	struct sbuf b;
	char buf[65536];
	size_t n, k;
	uint64_t cnt;

	free(path);
	if (f == NULL)
		return -1;
	sbuf_init(&b);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sbuf_add(&b, buf, n);
	fclose(f);
	rec_reader_init(&rr, b.data, b.len);
	cnt = rec_get_u64(&rr);
	if (rr.bad || cnt > b.len / 16) {
		sbuf_free(&b);
		return -1;
	}
	r->areas[i] = xcalloc(cnt ? cnt : 1, sizeof(struct vs_extent));
	for (k = 0; k < cnt; k++) {
		r->areas[i][k].start = rec_get_u64(&rr);
		r->areas[i][k].length = rec_get_u64(&rr);
	}
	r->nareas[i] = (size_t)cnt;
	sbuf_free(&b);
	return rr.bad ? -1 : 0;
}

/* The point's non-zero chunks: what a new VM's empty disk lacks. */
static void
areas_of_point(struct rst *r, size_t i)
{
	const struct repo_disk *d = &r->pt->disks[i];
	uint64_t c;
	size_t n = 0;

	r->areas[i] = xcalloc(d->nchunks ? d->nchunks : 1, sizeof(struct vs_extent));
	for (c = 0; c < d->nchunks; c++) {
		if (repo_chunk_id_is_zero(d->ids[c]))
			continue;
		if (n > 0 && r->areas[i][n - 1].start + r->areas[i][n - 1].length == c * REPO_CHUNK_SIZE)
			r->areas[i][n - 1].length += repo_chunk_len(d->capacity, c);
		else
			r->areas[i][n++] = (struct vs_extent){ c * REPO_CHUNK_SIZE, repo_chunk_len(d->capacity, c) };
	}
	r->nareas[i] = n;
}

static void
whole_areas(struct rst *r, size_t i)
{
	r->areas[i] = xcalloc(1, sizeof(struct vs_extent));
	r->areas[i][0].start = 0;
	r->areas[i][0].length = r->pt->disks[i].capacity;
	r->nareas[i] = 1;
}

static void areas_decided(struct rst *r);
static void writes_ready(struct target *t);
static void cbt_query_next(struct rst *r);

static void
cbt_snap_removed(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "removing the restore's snapshot of the original VM");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = NULL;
	free(r->snap);
	r->snap = NULL;
	areas_decided(r);
}

static void
cbt_answer(struct vs_out *out, void *arg)
{
	struct rst *r = answer_of(arg);
	struct job *j;

	if (r == NULL)
		return;
	j = r->j;
	if (out->status == VS_FAULT) {
		job_log(j, LOG_WARN, "disk %zu: change tracking since point %llu cannot be asked (%s): the whole disk is "
		                     "written", r->i, (unsigned long long)r->d.seq, out->error ? out->error : "refused");
		whole_areas(r, r->i);
	} else if (out->status != VS_OK) {
		rt_vs_failed(j, "querying the changes since the point", out);
		return;
	} else {
		r->areas[r->i] = out->extents;
		r->nareas[r->i] = out->nextents;
		out->extents = NULL;
		out->nextents = 0;
		job_log(j, LOG_INFO, "disk %zu: %llu bytes in %zu areas changed since point %llu", r->i,
		    (unsigned long long)copy_bytes_from(r->areas[r->i], r->nareas[r->i], 0), r->nareas[r->i],
		    (unsigned long long)r->d.seq);
	}
	r->i++;
	cbt_query_next(r);
}

static void
cbt_query_next(struct rst *r)
{
	const struct repo_disk *d;

	if (r->i >= r->pt->ndisks) {
		r->op = vs_remove_snapshot(target_client(&r->t), r->snap, cbt_snap_removed, token_new(r->j));
		return;
	}
	d = &r->pt->disks[r->i];
	if (d->change_id == NULL || !r->j->cfg->options.fast_transfer) {
		job_log(r->j, LOG_INFO, "disk %zu: no changeId in point %llu: the whole disk is written", r->i,
		    (unsigned long long)r->d.seq);
		whole_areas(r, r->i);
		r->i++;
		cbt_query_next(r);
		return;
	}
	r->op = vs_query_changes(target_client(&r->t), r->d.tgt.vm, r->snap, d->key, d->change_id, d->capacity,
	    cbt_answer, token_new(r->j));
}

static void
cbt_snap_made(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "snapshotting the original VM to ask its change tracking");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = NULL;
	free(r->snap);
	r->snap = xstrdup(out->moref);
	r->i = 0;
	cbt_query_next(r);
}

static void
cbt_snap_gone(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "removing a leftover snapshot");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = NULL;
	rt_find_source_then(j, 0, orig_found);
}

static void
prepare_areas(struct rst *r)
{
	size_t i, n = r->pt->ndisks;
	char *name;

	forget_pass(r);
	r->areas = xcalloc(n ? n : 1, sizeof(*r->areas));
	r->nareas = xcalloc(n ? n : 1, sizeof(*r->nareas));
	if (r->d.stage >= RST_AREAS) {
		for (i = 0; i < n; i++)
			if (areas_read(r, i) != 0) {
				job_log(r->j, LOG_WARN, "the restore's list of areas of disk %zu is gone from temp_dir: "
				                        "deciding them again", i);
				forget_pass(r);
				r->d.stage = RST_VM;
				prepare_areas(r);
				return;
			}
		areas_decided(r);
		return;
	}
	if (r->d.target == RST_NEW) {
		for (i = 0; i < n; i++)
			areas_of_point(r, i);
		areas_decided(r);
		return;
	}
	/* The original: what changed since the point, asked against a new
	 * snapshot of the VM (powered off: its disks stand still). */
	name = sync_snapshot_name(r->j, "restore");
	r->op = vs_create_snapshot(target_client(&r->t), r->d.tgt.vm, name, "vmferry: a restore asks what changed", 0, 0,
	    cbt_snap_made, token_new(r->j));
	free(name);
}

static void
areas_decided(struct rst *r)
{
	size_t i;

	if (r->d.stage < RST_AREAS) {
		for (i = 0; i < r->pt->ndisks; i++)
			if (areas_write(r, i) != 0)
				return;
		for (i = 0; i < r->d.ndisks; i++)
			r->d.ckpt[i] = 0;
		r->d.copied = 0;
		r->d.stage = RST_AREAS;
		save(r->j);
	}
	r->imgs = xcalloc(r->pt->ndisks ? r->pt->ndisks : 1, sizeof(*r->imgs));
	r->total = 0;
	for (i = 0; i < r->pt->ndisks; i++) {
		r->total += copy_bytes_from(r->areas[i], r->nareas[i], 0);
		if ((r->imgs[i] = staging(r->j, "img", i)) == NULL) {
			rt_lost(r->j, "node temp_dir cannot be written");
			return;
		}
	}
	if (r->d.stage >= RST_LAND) {
		land(r);
		return;
	}
	/* How each disk is written (a mount, hot-add, or a delta over
	 * HTTPS), decided once per restore (the record's choices stand
	 * after a restart), after the original's snapshot is gone. */
	target_writes_begin(&r->t, 0, writes_ready);
}

static void
writes_ready(struct target *t)
{
	struct rst *r = rst_of(t->j);

	if (r == NULL)
		return;
	save(r->j);
	r->i = 0;
	copy_next(r);
}

static void
vm_known(struct rst *r)
{
	prepare_areas(r);
}

/* ---- copying: repository → staging image ---- */

static void
copy_progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
	struct rst *r = arg;
	double now = now_mono();
	uint64_t done = r->done_before + copied;

	if (now - r->rate_t0 >= 1.0) {
		if (r->rate_t0 > 0)
			r->rate = (double)(done - r->rate_b0) / (now - r->rate_t0);
		r->rate_t0 = now;
		r->rate_b0 = done;
	}
	job_progress(r->j, done, r->total, paused ? 0 : r->rate);
	if (checkpoint > r->d.ckpt[r->i] && checkpoint != SYNC_DISK_DONE) {
		r->d.ckpt[r->i] = checkpoint;
		save(r->j);
	}
}

static void
copy_done(void *arg, enum xfer_status st, const char *error)
{
	struct rst *r = arg;

	r->copy = NULL;
	disk_close(r->rd);
	disk_close(r->wr);
	r->rd = NULL;
	r->wr = NULL;
	if (st == XFER_TRANSIENT) {
		rt_lost(r->j, "restoring disk %zu: %s", r->i, error);
		return;
	}
	if (st != XFER_OK) {
		rt_fail(r->j, "restoring disk %zu: %s", r->i, error);
		return;
	}
	r->d.ckpt[r->i] = SYNC_DISK_DONE;
	r->d.copied += copy_bytes_from(r->areas[r->i], r->nareas[r->i], 0);
	save(r->j);
	r->i++;
	copy_next(r);
}

/* The rule's bandwidth windows as configured now (a reload may change them). */
static const struct cfg_window *
rule_windows(void *arg, size_t *n)
{
	const struct cfg_rule *c = ((struct rst *)arg)->j->cfg;

	*n = c != NULL ? c->nwindows : 0;
	return c != NULL ? c->windows : NULL;
}

static void
copy_next(struct rst *r)
{
	struct copy_params cp;
	struct sync_settings set;
	char *err = NULL;
	size_t i;
	struct stat sb;

	while (r->i < r->pt->ndisks && r->d.ckpt[r->i] == SYNC_DISK_DONE)
		r->i++;
	if (r->i >= r->pt->ndisks) {
		r->d.stage = RST_LAND;
		save(r->j);
		land(r);
		return;
	}
	i = r->i;
	if (r->d.ckpt[i] > 0 && !target_in_place(&r->t, i) && stat(r->imgs[i], &sb) != 0) {
		job_log(r->j, LOG_WARN, "disk %zu: its staging image is gone from temp_dir: copied again from the start", i);
		r->d.ckpt[i] = 0;
	}
	r->rd = disk_open_repo(r->repo, &r->pt->disks[i]);
	if ((r->wr = target_open_sink(&r->t, i, r->imgs[i], r->pt->disks[i].capacity, &err)) == NULL) {
		rt_lost(r->j, "%s", err);
		free(err);
		return;
	}
	r->done_before = 0;
	for (size_t k = 0; k < r->pt->ndisks; k++)
		if (r->d.ckpt[k] == SYNC_DISK_DONE)
			r->done_before += copy_bytes_from(r->areas[k], r->nareas[k], 0);
	r->done_before += r->nareas[i] > 0 ? copy_bytes_from(r->areas[i], r->nareas[i], 0) -
	                                         copy_bytes_from(r->areas[i], r->nareas[i], r->d.ckpt[i])
	                                   : 0;
	if (r->d.ckpt[i] > 0)
		job_log(r->j, LOG_INFO, "disk %zu: resuming the restore at offset %llu", i,
		    (unsigned long long)r->d.ckpt[i]);
	memset(&set, 0, sizeof(set));
	rt_sync_settings(r->j, &set);
	memset(&cp, 0, sizeof(cp));
	cp.src = r->rd;
	cp.dst = r->wr;
	cp.areas = r->areas[i];
	cp.nareas = r->nareas[i];
	cp.resume = r->d.ckpt[i];
	cp.chunk = set.chunk;
	cp.inflight = set.inflight;
	cp.bucket = set.bucket;
	cp.windows = rule_windows;
	cp.checkpoint_s = RST_CHECKPOINT_S;
	cp.progress = copy_progress;
	cp.done = copy_done;
	cp.arg = r;
	r->copy = copy_start(&cp);
}

/* ---- landing, then the end ---- */

static void
upload_next(struct target *t)
{
	struct rst *r = rst_of(t->j);

	if (r == NULL)
		return;
	while (r->i < r->pt->ndisks && target_in_place(&r->t, r->i))
		r->i++;
	if (r->i >= r->pt->ndisks) {
		r->d.stage = RST_FINISH;
		save(r->j);
		finish(r);
		return;
	}
	r->i++;
	target_upload(&r->t, r->i - 1, r->imgs[r->i - 1], r->pt->disks[r->i - 1].capacity, upload_next);
}

static void
landed(struct target *t)
{
	struct rst *r = rst_of(t->j);

	if (r == NULL)
		return;
	if (r->d.tgt.write == TARGET_WRITE_WHOLE) {
		/* A new VM whose datastore takes no deltas: its disks whole. */
		r->i = 0;
		upload_next(t);
		return;
	}
	r->d.stage = RST_FINISH;
	save(r->j);
	finish(r);
}

static void
land(struct rst *r)
{
	size_t i;

	if (r->d.stage >= RST_FINISH) {
		finish(r);
		return;
	}
	free(r->land);
	r->land = xcalloc(r->pt->ndisks ? r->pt->ndisks : 1, sizeof(*r->land));
	for (i = 0; i < r->pt->ndisks; i++) {
		r->land[i].areas = r->areas[i];
		r->land[i].nareas = r->nareas[i];
		r->land[i].image = r->imgs[i];
		r->land[i].skip = target_in_place(&r->t, i);
	}
	job_progress(r->j, r->total, r->total, 0);
	target_land(&r->t, r->land, r->pt->ndisks, 0, landed);
}

static void
done(struct rst *r)
{
	struct job *j = r->j;
	struct bak_data *bd = bak_data_of(j, NULL);
	uint64_t bytes = r->total;
	int64_t took = (int64_t)time(NULL) - r->d.started;

	job_log(j, LOG_INFO, "restore of point %llu to %s%s complete: %llu bytes written in %lld s", (unsigned long long)r->d.seq,
	    r->d.target == RST_NEW ? "the new VM " : "the original VM", r->d.target == RST_NEW ? r->d.name : "",
	    (unsigned long long)bytes, (long long)took);
	remove_staging(j, r->pt->ndisks);
	if (bd == NULL)
		return;
	if (r->d.target == RST_ORIGINAL)
		bd->force_full = 1;
	free(bd->restore);
	bd->restore = NULL;
	bd->nrestore = 0;
	bak_save(j);
	job_stat_success(j, bytes);
	fsm_dispatch(j, EV_OK, NULL);
}

static void
powered(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "powering the restored VM on");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = NULL;
	job_log(j, LOG_INFO, "VM %s powered on", r->d.target == RST_NEW ? r->d.name : j->vm);
	done(r);
}

static void
power_on(struct rst *r)
{
	if (!r->d.power_on) {
		done(r);
		return;
	}
	r->op = vs_power(target_client(&r->t), r->d.tgt.vm, "on", powered, token_new(r->j));
}

static void
cbt_on(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "enabling the original VM's change tracking again");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = NULL;
	job_log(j, LOG_INFO, "change tracking of VM %s reset (the restore's writes bypassed it): its next point is a "
	                     "full", j->vm);
	power_on(r);
}

static void
cbt_off(struct vs_out *out, void *arg)
{
	struct job *j = token_reply(out, arg, "disabling the original VM's change tracking");
	struct rst *r = rst_of(j);

	if (r == NULL)
		return;
	r->op = vs_enable_cbt(target_client(&r->t), r->d.tgt.vm, 1, cbt_on, token_new(j));
}

static void
finish(struct rst *r)
{
	if (r->d.target == RST_ORIGINAL) {
		r->op = vs_enable_cbt(target_client(&r->t), r->d.tgt.vm, 0, cbt_off, token_new(r->j));
		return;
	}
	power_on(r);
}
