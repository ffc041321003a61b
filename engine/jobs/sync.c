#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* One sync pass over a VM's disks (see sync.h). */
#include "engine/jobs/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/transport.h"
#include "drivers/vmdk.h"
#include "engine/config.h"
#include "engine/core/record.h"
#include "engine/core/util.h"
#include "engine/jobs/copy.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"

#define CHECKPOINT_S 2.0

/* The steps of preparing a pass, in order; each resumes prep_step. */
enum prep_step {
	PREP_READ_VM,
	PREP_CBT,
	PREP_STUN,
	PREP_CLEAN,
	PREP_SNAPSHOT,
	PREP_DISKS,
	PREP_AREAS,
	PREP_DESCRIPTORS,
	PREP_DONE,
};

/* ---- persisted state ---- */

static void
disk_free(struct sync_disk *d)
{
	free(d->src_file);
	free(d->pass_cid);
	free(d->prev_cid);
}

void
sync_state_free(struct sync_state *st)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++)
		disk_free(&st->disks[i]);
	free(st->disks);
	free(st->src_vm);
	free(st->src_dc);
	free(st->snap);
	memset(st, 0, sizeof(*st));
}

void
sync_state_put(const struct sync_state *st, struct sbuf *b)
{
	size_t i;

	rec_put_str(b, st->src_vm);
	rec_put_str(b, st->src_dc);
	rec_put_str(b, st->snap);
	rec_put_u64(b, st->pass);
	rec_put_u64(b, st->bytes);
	rec_put_u64(b, st->ndisks);
	for (i = 0; i < st->ndisks; i++) {
		const struct sync_disk *d = &st->disks[i];

		rec_put_u64(b, d->key);
		rec_put_u64(b, d->capacity);
		rec_put_str(b, d->src_file);
		rec_put_u64(b, d->checkpoint);
		rec_put_u8(b, d->full);
		rec_put_str(b, d->pass_cid);
		rec_put_str(b, d->prev_cid);
		rec_put_u64(b, d->prev_ckpt);
	}
}

int
sync_state_get(struct rec_reader *r, struct sync_state *st)
{
	uint64_t nd, i;

	memset(st, 0, sizeof(*st));
	st->src_vm = rec_get_opt_str(r);
	st->src_dc = rec_get_opt_str(r);
	st->snap = rec_get_opt_str(r);
	st->pass = (uint32_t)rec_get_u64(r);
	st->bytes = rec_get_u64(r);
	nd = rec_get_u64(r);
	if (r->bad || nd > 64) {
		sync_state_free(st);
		return -1;
	}
	st->disks = xcalloc(nd ? nd : 1, sizeof(*st->disks));
	st->ndisks = nd;
	for (i = 0; i < nd; i++) {
		struct sync_disk *d = &st->disks[i];

		d->key = (uint32_t)rec_get_u64(r);
		d->capacity = rec_get_u64(r);
		d->src_file = rec_get_opt_str(r);
		d->checkpoint = rec_get_u64(r);
		d->full = rec_get_u8(r);
		d->pass_cid = rec_get_opt_str(r);
		d->prev_cid = rec_get_opt_str(r);
		d->prev_ckpt = rec_get_u64(r);
	}
	if (r->bad) {
		sync_state_free(st);
		return -1;
	}
	return 0;
}

void
sync_state_adopt(struct sync_state *st, const struct vs_vm *vm)
{
	size_t i;

	free(st->src_vm);
	st->src_vm = xstrdup(vm->moref);
	free(st->src_dc);
	st->src_dc = vm->datacenter ? xstrdup(vm->datacenter) : NULL;
	if (st->ndisks != vm->ndisks) {
		for (i = 0; i < st->ndisks; i++)
			disk_free(&st->disks[i]);
		free(st->disks);
		st->ndisks = vm->ndisks;
		st->disks = xcalloc(st->ndisks ? st->ndisks : 1, sizeof(*st->disks));
	}
	for (i = 0; i < st->ndisks; i++) {
		st->disks[i].key = (uint32_t)vm->disks[i].key;
		st->disks[i].capacity = vm->disks[i].capacity;
		free(st->disks[i].src_file);
		st->disks[i].src_file = xstrdup(vm->disks[i].file);
	}
}

void
sync_disk_restart(struct sync_disk *d, int full)
{
	d->full = (uint8_t)full;
	d->checkpoint = 0;
	free(d->prev_cid);
	d->prev_cid = NULL;
	d->prev_ckpt = 0;
}

void
sync_state_reset_checkpoints(struct sync_state *st)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++)
		st->disks[i].checkpoint = 0;
}

/* The pass's snapshot goes away before the pass is done (stop, or it
 * vanished): remember how far each disk got and at which changeId, so
 * that the next pass copies below that point only what changed since
 * (or, where the kind's sink does not keep a given-up pass's bytes, the
 * whole disk again). */
static void
remember_partial(struct sync_pass *p)
{
	struct sync_state *st = p->st;
	size_t i;

	for (i = 0; i < st->ndisks; i++) {
		struct sync_disk *d = &st->disks[i];
		uint64_t got = d->checkpoint == SYNC_DISK_DONE ? d->capacity : d->checkpoint;

		if (got == 0 || d->pass_cid == NULL)
			continue;
		free(d->prev_cid);
		d->prev_cid = NULL;
		d->prev_ckpt = 0;
		if (p->kind->keeps_partial != NULL && !p->kind->keeps_partial(p->j, i)) {
			d->full = 1;
			continue;
		}
		d->prev_cid = xstrdup(d->pass_cid);
		d->prev_ckpt = got;
	}
	sync_state_reset_checkpoints(st);
}

/* ---- names ---- */

char *
sync_snapshot_name(const struct job *j, const char *suffix)
{
	return xasprintf("vmferry-%s-%s-%s", cfg_kind_name(j->kind), j->rule, suffix);
}

/* "<prefix><digits>", "<prefix>stun", or what a pass's landing and a
 * restore to the original VM leave on it when stopped: "<prefix>land",
 * "<prefix>restore" (a backup's source is a restore's target). */
static int
names_pass(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	const char *s;

	if (strncmp(name, prefix, n) != 0)
		return 0;
	s = name + n;
	if (strcmp(s, "stun") == 0 || strcmp(s, "land") == 0 || strcmp(s, "restore") == 0)
		return 1;
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int
sync_is_own_snapshot(const struct job *j, const char *name)
{
	char *prefix;
	int yes;

	if (name == NULL)
		return 0;
	prefix = xasprintf("vmferry-%s-%s-", cfg_kind_name(j->kind), j->rule);
	yes = names_pass(name, prefix);
	free(prefix);
	if (yes || j->kind != CFG_MIGRATION)
		return yes;
	/* Before names carried the kind, a migration's were
	 * "vmferry-<rule>-<n>".  Names of the other kinds are never taken for
	 * such a one: the same VM may be theirs. */
	if (strncmp(name, "vmferry-replication-", 20) == 0 || strncmp(name, "vmferry-backup-", 15) == 0)
		return 0;
	prefix = xasprintf("vmferry-%s-", j->rule);
	yes = names_pass(name, prefix);
	free(prefix);
	return yes;
}

/* ---- the pass's runtime ---- */

static void
pass_free_prepared(struct sync_pass *p)
{
	size_t i;

	for (i = 0; p->areas != NULL && i < p->st->ndisks; i++) {
		free(p->areas[i]);
		free(p->snap_cids[i]);
		free(p->src_flat[i]);
		free(p->src_ds[i]);
	}
	free(p->areas);
	free(p->nareas);
	free(p->snap_cids);
	free(p->src_flat);
	free(p->src_ds);
	free(p->pass_snap);
	p->areas = NULL;
	p->nareas = NULL;
	p->snap_cids = p->src_flat = p->src_ds = NULL;
	p->pass_snap = NULL;
}

static void
pass_alloc_prepared(struct sync_pass *p)
{
	size_t n = p->st->ndisks ? p->st->ndisks : 1;

	pass_free_prepared(p);
	p->areas = xcalloc(n, sizeof(*p->areas));
	p->nareas = xcalloc(n, sizeof(*p->nareas));
	p->snap_cids = xcalloc(n, sizeof(char *));
	p->src_flat = xcalloc(n, sizeof(char *));
	p->src_ds = xcalloc(n, sizeof(char *));
}

void
sync_init(struct sync_pass *p, struct job *j, struct sync_state *st, const struct sync_source *src,
    const struct sync_kind_ops *kind)
{
	memset(p, 0, sizeof(*p));
	p->j = j;
	p->st = st;
	p->src = src;
	p->kind = kind;
}

void
sync_cancel(struct sync_pass *p)
{
	if (p->op != NULL)
		p->src->cancel(p->op);
	p->op = NULL;
	copy_cancel(p->copy);
	p->copy = NULL;
	disk_close(p->rd);
	disk_close(p->wr);
	p->rd = p->wr = NULL;
}

void
sync_free(struct sync_pass *p)
{
	sync_cancel(p);
	pass_free_prepared(p);
	free(p->prev_areas);
	p->prev_areas = NULL;
	if (p->vm != NULL) {
		vs_vm_free(p->vm);
		free(p->vm);
		p->vm = NULL;
	}
}

void
sync_refresh(struct sync_pass *p)
{
	if (p->pass_snap != NULL && !str_eq(p->pass_snap, p->st->snap))
		pass_free_prepared(p);
}

void
sync_wake(struct sync_pass *p)
{
	if (p->copy != NULL)
		copy_wake(p->copy);
}

static void
save(struct sync_pass *p)
{
	p->kind->save(p->j);
}

/* ---- preparing ---- */

static void prep_step(struct sync_pass *p);
static void prep_next(struct sync_pass *p);

/* The answer to a driver call of the pass: NULL when it was superseded
 * or failed (handed on). */
static struct sync_pass *
pass_reply(struct vs_out *out, void *arg, const char *what, int take_failure)
{
	struct sync_pass *p = take_failure ? token_ctx_reply(out, arg, what) : token_ctx(arg);

	if (p != NULL)
		p->op = NULL;
	return p;
}

/* A snapshot removal answered: a lost source hands the job on (1); a
 * refusal is logged and the work goes on (the snapshot may be gone). */
static int
removal_lost(struct sync_pass *p, struct vs_out *out, const char *what)
{
	if (out->status == VS_UNREACHABLE) {
		rt_lost(p->j, "%s: %s", what, out->error);
		return 1;
	}
	if (out->status != VS_OK)
		job_log(p->j, LOG_WARN, "%s: %s", what, out->error);
	return 0;
}

static void
prep_vm_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, "reading the source VM", 1);

	if (p == NULL)
		return;
	rt_vm_set(&p->vm, out->vm);
	/* rt_vm_dup leaves snapshots out: keep them from the reply. */
	p->vm->snapshots = out->vm->snapshots;
	p->vm->nsnapshots = out->vm->nsnapshots;
	out->vm->snapshots = NULL;
	out->vm->nsnapshots = 0;
	p->vm->cbt = out->vm->cbt;
	prep_next(p);
}

static void
prep_simple_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, "preparing the source VM", 1);

	if (p != NULL)
		prep_next(p);
}

/* A leftover snapshot is gone: look for the next one. */
static void
prep_clean_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);

	if (p != NULL && !removal_lost(p, out, "removing a leftover snapshot"))
		prep_step(p);
}

static void
prep_snapshot_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);
	char *name;

	if (p == NULL)
		return;
	if (out->status != VS_OK || out->moref == NULL) {
		rt_vs_failed(p->j, "creating the source snapshot", out);
		return;
	}
	free(p->st->snap);
	p->st->snap = xstrdup(out->moref);
	sync_state_reset_checkpoints(p->st);
	save(p);
	name = xasprintf("%u", p->st->pass);
	{
		char *full = sync_snapshot_name(p->j, name);

		job_log(p->j, LOG_INFO, "snapshot %s (%s) created for sync pass %u", full, out->moref, p->st->pass);
		free(full);
	}
	free(name);
	prep_next(p);
}

static void
prep_disks_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, "reading the snapshot's disks", 1);
	struct sync_state *st;
	size_t i;

	if (p == NULL)
		return;
	st = p->st;
	if (out->ndisks != st->ndisks) {
		rt_fail(p->j, "the source VM now has %zu disks, it had %zu; start the job again", out->ndisks,
		    st->ndisks);
		return;
	}
	pass_alloc_prepared(p);
	p->pass_snap = xstrdup(st->snap);
	for (i = 0; i < out->ndisks; i++) {
		struct sync_disk *d = &st->disks[i];

		if (out->disks[i].capacity != d->capacity) {
			rt_fail(p->j, "source disk %zu changed size (%llu to %llu bytes); start the job again", i,
			    (unsigned long long)d->capacity, (unsigned long long)out->disks[i].capacity);
			return;
		}
		if ((uint32_t)out->disks[i].key != d->key) {
			job_log(p->j, LOG_WARN, "disk %zu changed identity (device key %u to %d): copying it in full", i,
			    d->key, out->disks[i].key);
			d->key = (uint32_t)out->disks[i].key;
			d->full = 1;
		}
		free(d->src_file);
		d->src_file = xstrdup(out->disks[i].file);
		p->snap_cids[i] = out->disks[i].change_id ? xstrdup(out->disks[i].change_id) : NULL;
		free(d->pass_cid);
		d->pass_cid = p->snap_cids[i] ? xstrdup(p->snap_cids[i]) : NULL;
	}
	save(p);
	p->i = 0;
	p->prev_asked = 0;
	prep_next(p);
}

/* The areas of a QueryChangedDiskAreas answer, taken out of it. */
static void
take_areas(struct vs_out *out, struct vs_extent **areas, size_t *n)
{
	*areas = out->extents;
	*n = out->nextents;
	out->extents = NULL;
	out->nextents = 0;
}

/* Below the interrupted pass's point the sink already holds the disk as
 * of prev_cid: there only what changed since goes again; above it, what
 * this pass would copy anyway. */
static void
merge_resumed(struct sync_pass *p, struct vs_out *out)
{
	struct vs_extent *merged = NULL;
	size_t n = 0, k;
	uint64_t cut = p->st->disks[p->i].prev_ckpt;

	for (k = 0; k < p->nprev; k++) {
		uint64_t s0 = p->prev_areas[k].start, e0 = s0 + p->prev_areas[k].length;

		if (s0 >= cut)
			break;
		merged = xgrow(merged, n, sizeof(*merged));
		merged[n].start = s0;
		merged[n].length = (e0 < cut ? e0 : cut) - s0;
		n++;
	}
	for (k = 0; k < out->nextents; k++) {
		uint64_t s0 = out->extents[k].start, e0 = s0 + out->extents[k].length;

		if (e0 <= cut)
			continue;
		if (s0 < cut)
			s0 = cut;
		merged = xgrow(merged, n, sizeof(*merged));
		merged[n].start = s0;
		merged[n].length = e0 - s0;
		n++;
	}
	job_log(p->j, LOG_INFO, "disk %zu: resuming the interrupted copy at offset %llu", p->i, (unsigned long long)cut);
	p->areas[p->i] = merged;
	p->nareas[p->i] = n;
}

static void
prep_areas_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);
	struct sync_disk *d;
	const char *base;

	if (p == NULL)
		return;
	d = &p->st->disks[p->i];
	base = p->kind->base_cid(p->j, p->i);
	if (out->status == VS_FAULT && out->fault_type != NULL && strcmp(out->fault_type, "FileFault") == 0 &&
	    base != NULL && !d->full) {
		/* The changeId was refused: CBT was reset.  Never a silent
		 * partial copy: this disk is copied in full. */
		job_log(p->j, LOG_WARN, "disk %zu: change tracking was reset (changeId %s refused): copying it in full",
		    p->i, base);
		d->full = 1;
		save(p);
		prep_step(p);
		return;
	}
	if (out->status != VS_OK) {
		rt_vs_failed(p->j, "querying changed areas", out);
		return;
	}
	if (out->merge_gap > 0)
		job_log(p->j, LOG_INFO,
		    "disk %zu: more than %u changed areas; areas less than %llu bytes apart are copied as one", p->i,
		    VS_CBT_MAX_EXTENTS, (unsigned long long)out->merge_gap);
	if (p->prev_asked && d->prev_cid != NULL)
		merge_resumed(p, out);
	else
		take_areas(out, &p->areas[p->i], &p->nareas[p->i]);
	free(p->prev_areas);
	p->prev_areas = NULL;
	p->nprev = 0;
	p->prev_asked = 0;
	p->i++;
	prep_step(p);
}

static void
prep_prev_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);
	struct sync_disk *d;

	if (p == NULL)
		return;
	d = &p->st->disks[p->i];
	if (out->status == VS_FAULT) {
		/* That changeId is no longer valid: copy as if from scratch. */
		job_log(p->j, LOG_WARN, "disk %zu: cannot resume the interrupted copy (%s); copying it again", p->i,
		    out->error);
		free(d->prev_cid);
		d->prev_cid = NULL;
		d->prev_ckpt = 0;
		save(p);
		prep_step(p);
		return;
	}
	if (out->status != VS_OK) {
		rt_vs_failed(p->j, "querying changed areas", out);
		return;
	}
	take_areas(out, &p->prev_areas, &p->nprev);
	prep_step(p);
}

static void
prep_descriptor_done(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, "reading the source disk's descriptor", 1);
	const char *file;
	char *err = NULL;

	if (p == NULL)
		return;
	file = p->st->disks[p->i].src_file;
	if (vmdk_data_file(out->data, out->len, file, &p->src_ds[p->i], &p->src_flat[p->i], &err) != 0) {
		rt_fail(p->j, "descriptor %s: %s", file, err);
		free(err);
		return;
	}
	p->i++;
	prep_step(p);
}

/* Disk p->i is read as a whole, [0, capacity). */
static void
whole_disk(struct sync_pass *p)
{
	p->areas[p->i] = xcalloc(1, sizeof(struct vs_extent));
	p->areas[p->i][0].start = 0;
	p->areas[p->i][0].length = p->st->disks[p->i].capacity;
	p->nareas[p->i] = 1;
	p->i++;
	prep_step(p);
}

/* The areas of disk p->i, or a query for them. */
static void
prep_areas(struct sync_pass *p)
{
	struct sync_disk *d = &p->st->disks[p->i];
	const char *base, *cid;
	char *why;

	if (p->kind->sink_lost != NULL && (why = p->kind->sink_lost(p->j, p->i)) != NULL) {
		/* Never trust a checkpoint or a changeId for bytes that are gone. */
		job_log(p->j, LOG_WARN, "disk %zu: %s; copying it in full", p->i, why);
		free(why);
		sync_disk_restart(d, 1);
		save(p);
	}
	if (d->checkpoint == SYNC_DISK_DONE && p->kind->land == NULL) {
		/* Copied before a restart: its areas are not needed (they are
		 * when the pass still has to land). */
		p->i++;
		prep_step(p);
		return;
	}
	if (!p->set.fast_transfer) {
		if (p->st->bytes > 0 && p->i == 0)
			job_log(p->j, LOG_INFO, "fast_transfer is off: copying whole disks again");
		whole_disk(p);
		return;
	}
	if (d->prev_cid != NULL && d->prev_ckpt > 0 && p->prev_areas == NULL && !p->prev_asked) {
		/* First: what changed below the interrupted pass's point. */
		p->prev_asked = 1;
		p->op = p->src->query_changes(p, p->st->src_vm, p->st->snap, (int)d->key, d->prev_cid, d->capacity,
		    prep_prev_done, token_for(p->j, p));
		return;
	}
	base = p->kind->base_cid(p->j, p->i);
	cid = (d->full || base == NULL) ? "*" : base;
	if (strcmp(cid, "*") == 0 && p->kind->sink_has_data != NULL && p->kind->sink_has_data(p->j, p->i)) {
		/* The sink holds earlier data where the source may hold none
		 * any more: only the whole disk, zeros included, is right. */
		job_log(p->j, LOG_INFO, "disk %zu: no usable changeId and its target holds earlier data; copying the "
		                        "whole disk", p->i);
		whole_disk(p);
		return;
	}
	if (strcmp(cid, "*") == 0 && p->st->bytes > 0)
		job_log(p->j, LOG_INFO, "disk %zu: no usable changeId; copying its allocated areas in full", p->i);
	p->op = p->src->query_changes(p, p->st->src_vm, p->st->snap, (int)d->key, cid, d->capacity, prep_areas_done,
	    token_for(p->j, p));
}

/* Snapshots the engine made and no longer needs (a crash can leave one
 * between its creation and its recording): remove the next one. */
static int
prep_clean(struct sync_pass *p)
{
	size_t k;

	for (k = 0; k < p->vm->nsnapshots; k++) {
		struct vs_snapshot *s = &p->vm->snapshots[k];

		if (sync_is_own_snapshot(p->j, s->name) && !str_eq(s->moref, p->st->snap) && s->moref[0] != '\0') {
			char *moref = xstrdup(s->moref);

			job_log(p->j, LOG_INFO, "removing leftover snapshot %s (%s)", s->name, s->moref);
			s->moref[0] = '\0'; /* done with it, whatever the outcome */
			p->op = p->src->remove_snapshot(p, moref, prep_clean_done, token_for(p->j, p));
			free(moref);
			return 1;
		}
	}
	return 0;
}

/* The pass's snapshot: still there (go on), gone (remember the progress;
 * make a new one when allowed), or none yet (make one). */
static void
prep_snapshot(struct sync_pass *p)
{
	size_t k;
	char *name, *num;
	int on;

	for (k = 0; p->st->snap != NULL && k < p->vm->nsnapshots; k++)
		if (str_eq(p->vm->snapshots[k].moref, p->st->snap) && p->vm->snapshots[k].moref[0] != '\0')
			break;
	if (p->st->snap != NULL && k < p->vm->nsnapshots) {
		prep_next(p);
		return;
	}
	if (p->st->snap != NULL) {
		job_log(p->j, LOG_WARN, "snapshot %s of the pass in progress is gone", p->st->snap);
		remember_partial(p);
	}
	if (!p->create) {
		free(p->st->snap);
		p->st->snap = NULL;
		save(p);
		p->then(p, 1);
		return;
	}
	on = p->vm->power != NULL && strcmp(p->vm->power, "poweredOn") == 0;
	p->st->pass++;
	num = xasprintf("%u", p->st->pass);
	name = sync_snapshot_name(p->j, num);
	{
		char *desc = xasprintf("vmferry %s sync", cfg_kind_name(p->j->kind));

		p->op = p->src->create_snapshot(p, p->st->src_vm, name, desc, p->set.quiesce && on, prep_snapshot_done,
		    token_for(p->j, p));
		free(desc);
	}
	free(name);
	free(num);
}

void
sync_areas_changed(struct sync_pass *p)
{
	size_t k;

	p->total = 0;
	p->base = 0;
	for (k = 0; k < p->st->ndisks; k++) {
		uint64_t all = copy_bytes_from(p->areas[k], p->nareas[k], 0);

		if (p->st->disks[k].checkpoint == SYNC_DISK_DONE)
			continue;
		p->total += all;
		p->base += all - copy_bytes_from(p->areas[k], p->nareas[k], p->st->disks[k].checkpoint);
	}
}

static void
prep_done(struct sync_pass *p)
{
	sync_areas_changed(p);
	p->then(p, 0);
}

/* Run the current step (for loops over disks, the step for disk p->i). */
static void
prep_step(struct sync_pass *p)
{
	switch (p->step) {
	case PREP_READ_VM:
		p->op = p->src->get_vm(p, p->st->src_vm, prep_vm_done, token_for(p->j, p));
		return;
	case PREP_CBT:
		if (!p->set.fast_transfer || p->vm->cbt) {
			p->step = PREP_CLEAN;
			prep_step(p);
			return;
		}
		job_log(p->j, LOG_INFO, "enabling change tracking (CBT) on %s", p->j->vm);
		p->op = p->src->enable_cbt(p, p->st->src_vm, prep_simple_done, token_for(p->j, p));
		return;
	case PREP_STUN: {
		/* CBT takes effect on a running VM after a stun: a snapshot
		 * create/remove cycle does it.  It carries the engine's name:
		 * the clean-up step removes it once the VM has been read again. */
		char *name = sync_snapshot_name(p->j, "stun");

		p->op = p->src->create_snapshot(p, p->st->src_vm, name, "vmferry: activate change tracking", 0,
		    prep_simple_done, token_for(p->j, p));
		free(name);
		return;
	}
	case PREP_CLEAN:
		if (prep_clean(p))
			return;
		p->step = PREP_SNAPSHOT;
		prep_step(p);
		return;
	case PREP_SNAPSHOT:
		prep_snapshot(p);
		return;
	case PREP_DISKS:
		p->op = p->src->snapshot_disks(p, p->st->snap, prep_disks_done, token_for(p->j, p));
		return;
	case PREP_AREAS:
		if (p->i >= p->st->ndisks) {
			p->i = 0;
			prep_next(p);
			return;
		}
		prep_areas(p);
		return;
	case PREP_DESCRIPTORS: {
		char *ds = NULL, *path = NULL;
		const char *file;

		if (p->i >= p->st->ndisks) {
			p->i = 0;
			prep_next(p);
			return;
		}
		file = p->st->disks[p->i].src_file;
		if (file == NULL || vs_split_ds_path(file, &ds, &path) != 0) {
			rt_fail(p->j, "disk %zu has no usable file name (%s)", p->i, file ? file : "none");
			return;
		}
		p->op = p->src->get_file(p, p->st->src_dc ? p->st->src_dc : p->vm->datacenter, ds, path,
		    prep_descriptor_done, token_for(p->j, p));
		free(ds);
		free(path);
		return;
	}
	case PREP_DONE:
		prep_done(p);
		return;
	}
}

static void
prep_next(struct sync_pass *p)
{
	/* The stun step follows only when CBT was just enabled. */
	if (p->step == PREP_CBT) {
		p->step = PREP_STUN;
	} else if (p->step == PREP_STUN) {
		/* Read the VM again: the clean-up step removes the stun snapshot. */
		p->step = PREP_READ_VM;
		p->vm->cbt = 1;
	} else {
		p->step++;
	}
	prep_step(p);
}

void
sync_forget_prepared(struct sync_pass *p)
{
	pass_free_prepared(p);
}

static void
prepare_go(struct sync_pass *p)
{
	size_t k;
	int ready = 1;

	if (p->pass_snap != NULL && str_eq(p->pass_snap, p->st->snap) && p->areas != NULL) {
		for (k = 0; k < p->st->ndisks; k++)
			if (p->src_flat[k] == NULL && p->st->disks[k].checkpoint != SYNC_DISK_DONE)
				ready = 0;
		if (ready) {
			p->step = PREP_DONE;
			prep_step(p);
			return;
		}
	}
	p->step = PREP_READ_VM;
	p->i = 0;
	prep_step(p);
}

void
sync_prepare(struct sync_pass *p, int create, void (*then)(struct sync_pass *p, int gone))
{
	p->then = then;
	p->create = create;
	if (p->kind->before_pass != NULL)
		p->kind->before_pass(p->j, p, prepare_go);
	else
		prepare_go(p);
}

/* ---- copying ---- */

static void copy_next_disk(struct sync_pass *p);
static void finish(struct sync_pass *p);
static void landed(struct sync_pass *p);

static const struct cfg_window *
current_windows(void *arg, size_t *n)
{
	struct sync_pass *p = arg;
	const struct cfg_rule *r = p->j->cfg;

	*n = r ? r->nwindows : 0;
	return r ? r->windows : NULL;
}

static void
copy_progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
	struct sync_pass *p = arg;
	struct sync_disk *d = &p->st->disks[p->i];
	double now = now_mono();
	uint64_t done = p->base + copied;

	if (checkpoint != d->checkpoint) {
		d->checkpoint = checkpoint;
		save(p);
	}
	if (now - p->rate_t0 >= 1.0) {
		p->rate = (double)(done - p->rate_b0) / (now - p->rate_t0);
		p->rate_t0 = now;
		p->rate_b0 = done;
	}
	if (paused != p->waited) {
		p->waited = paused;
		job_log(p->j, LOG_INFO, paused ? "bandwidth window with limit 0: transfer paused, progress kept"
		                               : "bandwidth window over: transfer resumed");
	}
	job_progress(p->j, done, p->total, paused ? 0 : p->rate);
}

static void
copy_disk_done(void *arg, enum xfer_status st, const char *err)
{
	struct sync_pass *p = arg;

	p->copy = NULL;
	disk_close(p->rd);
	disk_close(p->wr);
	p->rd = p->wr = NULL;
	if (st != XFER_OK) {
		if (st == XFER_TRANSIENT)
			rt_lost(p->j, "disk %zu: %s", p->i, err);
		else
			rt_fail(p->j, "disk %zu: %s", p->i, err);
		return;
	}
	/* The copier flushed before reporting success. */
	p->base += copy_bytes_from(p->areas[p->i], p->nareas[p->i], 0) - p->disk_start;
	p->st->disks[p->i].checkpoint = SYNC_DISK_DONE;
	save(p);
	p->i++;
	copy_next_disk(p);
}

void
sync_copy_params(struct sync_pass *p, struct copy_params *cp)
{
	memset(cp, 0, sizeof(*cp));
	cp->src = p->rd;
	cp->dst = p->wr;
	cp->chunk = p->set.chunk;
	cp->inflight = p->set.inflight;
	cp->hold = p->set.hold;
	cp->bucket = p->set.bucket;
	cp->windows = current_windows;
	cp->checkpoint_s = CHECKPOINT_S;
	cp->arg = p;
}

static void
copy_next_disk(struct sync_pass *p)
{
	struct copy_params cp;
	struct sync_disk *d;
	char *err = NULL;

	while (p->i < p->st->ndisks && p->st->disks[p->i].checkpoint == SYNC_DISK_DONE)
		p->i++;
	if (p->i >= p->st->ndisks) {
		finish(p);
		return;
	}
	d = &p->st->disks[p->i];
	/* Source: the snapshot's base disk, never guessed but from its descriptor. */
	if ((p->rd = p->src->open_disk(p, p->i, &err)) == NULL) {
		rt_lost(p->j, "disk %zu: %s", p->i, err);
		free(err);
		return;
	}
	if ((p->wr = p->kind->open_sink(p->j, p->i, &err)) == NULL) {
		disk_close(p->rd);
		p->rd = NULL;
		rt_lost(p->j, "%s", err);
		free(err);
		return;
	}
	sync_copy_params(p, &cp);
	cp.areas = p->areas[p->i];
	cp.nareas = p->nareas[p->i];
	cp.resume = d->checkpoint;
	cp.progress = copy_progress;
	cp.done = copy_disk_done;
	p->disk_start = copy_bytes_from(cp.areas, cp.nareas, 0) - copy_bytes_from(cp.areas, cp.nareas, cp.resume);
	if (d->checkpoint > 0)
		job_log(p->j, LOG_INFO, "disk %zu: resuming at offset %llu", p->i, (unsigned long long)d->checkpoint);
	p->copy = copy_start(&cp);
}

static void
snapshot_removed(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);

	if (p == NULL || removal_lost(p, out, "removing the pass's snapshot"))
		return;
	free(p->st->snap);
	p->st->snap = NULL;
	sync_state_reset_checkpoints(p->st);
	save(p);
	pass_free_prepared(p);
	p->after(p);
}

/* Every disk of the pass is copied and landed: record the changeIds,
 * drop the snapshot. */
static void
landed(struct sync_pass *p)
{
	size_t i;

	for (i = 0; i < p->st->ndisks; i++) {
		struct sync_disk *d = &p->st->disks[i];

		p->kind->record(p->j, i, p->snap_cids[i]);
		d->full = 0;
		free(d->prev_cid);
		d->prev_cid = NULL;
		d->prev_ckpt = 0;
	}
	p->st->bytes += p->total;
	save(p);
	job_progress(p->j, p->total, p->total, p->rate);
	job_log(p->j, LOG_INFO, "sync pass %u finished: %llu bytes copied", p->st->pass, (unsigned long long)p->total);
	p->op = p->src->remove_snapshot(p, p->st->snap, snapshot_removed, token_for(p->j, p));
}

static void
finish(struct sync_pass *p)
{
	if (p->kind->land != NULL)
		p->kind->land(p->j, p, landed);
	else
		landed(p);
}

void
sync_copy(struct sync_pass *p, void (*after)(struct sync_pass *p))
{
	p->after = after;
	p->i = 0;
	p->rate_t0 = now_mono();
	p->rate_b0 = p->base;
	job_progress(p->j, p->base, p->total, 0);
	copy_next_disk(p);
}

static void
run_prepared(struct sync_pass *p, int gone)
{
	sync_copy(p, p->after);
}

void
sync_run(struct sync_pass *p, void (*after)(struct sync_pass *p))
{
	p->after = after;
	sync_prepare(p, 1, run_prepared);
}

/* ---- abandoning ---- */

static void
abandon_removed(struct vs_out *out, void *arg)
{
	struct sync_pass *p = pass_reply(out, arg, NULL, 0);

	if (p == NULL)
		return;
	if (out->status == VS_OK || out->status == VS_FAULT) {
		if (out->status != VS_OK)
			job_log(p->j, LOG_WARN, "removing snapshot %s: %s", p->st->snap, out->error);
		free(p->st->snap);
		p->st->snap = NULL;
		/* The next pass starts where this one stopped. */
		remember_partial(p);
		save(p);
	} else {
		job_log(p->j, LOG_WARN, "snapshot %s could not be removed now (%s); it is removed when the job runs again",
		    p->st->snap, out->error);
	}
	p->after(p);
}

void
sync_abandon(struct sync_pass *p, void (*after)(struct sync_pass *p))
{
	p->after = after;
	if (p->st->snap == NULL || p->st->src_vm == NULL || p->j->cfg == NULL ||
	    (p->src == &sync_source_vsphere && rt_src_client(p->j) == NULL)) {
		after(p);
		return;
	}
	p->op = p->src->remove_snapshot(p, p->st->snap, abandon_removed, token_for(p->j, p));
}

/* ---- the source through the vSphere driver ---- */

static struct vs_client *
client(struct sync_pass *p)
{
	return rt_src_client(p->j);
}

static struct vs_op *
vsphere_get_vm(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg)
{
	return vs_get_vm(client(p), vm, done, arg);
}

static struct vs_op *
vsphere_enable_cbt(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg)
{
	return vs_enable_cbt(client(p), vm, 1, done, arg);
}

static struct vs_op *
vsphere_create_snapshot(struct sync_pass *p, const char *vm, const char *name, const char *desc, int quiesce,
    vs_op_fn done, void *arg)
{
	return vs_create_snapshot(client(p), vm, name, desc, 0, quiesce, done, arg);
}

static struct vs_op *
vsphere_remove_snapshot(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg)
{
	return vs_remove_snapshot(client(p), snap, done, arg);
}

static struct vs_op *
vsphere_snapshot_disks(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg)
{
	return vs_snapshot_disks(client(p), snap, done, arg);
}

static struct vs_op *
vsphere_query_changes(struct sync_pass *p, const char *vm, const char *snap, int key, const char *change_id,
    uint64_t capacity, vs_op_fn done, void *arg)
{
	return vs_query_changes(client(p), vm, snap, key, change_id, capacity, done, arg);
}

static struct vs_op *
vsphere_get_file(struct sync_pass *p, const char *dc, const char *ds, const char *path, vs_op_fn done, void *arg)
{
	return vs_get_file(client(p), dc, ds, path, done, arg);
}

/* lan_free reads through the source datastore's mount when the node has
 * one, else over HTTPS (said once). */
static struct disk *
vsphere_open_disk(struct sync_pass *p, size_t i, char **err)
{
	const struct cfg_rule *r = p->j->cfg;
	const char *mnt = r->options.lan_free ? rt_mount_of(r->source_platform, p->src_ds[i]) : NULL;
	struct disk *d;
	char *e = NULL;

	if (mnt != NULL) {
		if ((d = disk_open_direct(mnt, p->src_flat[i], p->st->disks[i].capacity, 0, &e)) == NULL) {
			*err = xasprintf("source through %s: %s", mnt, e);
			free(e);
		}
		return d;
	}
	if (r->options.lan_free && !p->lan_warned) {
		p->lan_warned = 1;
		job_log(p->j, LOG_WARN, "lan_free: no datastore_mounts entry for %s on %s; reading over HTTPS", p->src_ds[i],
		    r->source_platform);
	}
	return disk_open_https(client(p), p->st->src_dc ? p->st->src_dc : "", p->src_ds[i], p->src_flat[i],
	    p->st->disks[i].capacity);
}

/* Cancelled work never calls back: its token is dropped. */
static void
vsphere_cancel(struct vs_op *op)
{
	token_drop(vs_op_cancel(op));
}

const struct sync_source sync_source_vsphere = {
	.get_vm = vsphere_get_vm,
	.enable_cbt = vsphere_enable_cbt,
	.create_snapshot = vsphere_create_snapshot,
	.remove_snapshot = vsphere_remove_snapshot,
	.snapshot_disks = vsphere_snapshot_disks,
	.query_changes = vsphere_query_changes,
	.get_file = vsphere_get_file,
	.cancel = vsphere_cancel,
	.open_disk = vsphere_open_disk,
};
