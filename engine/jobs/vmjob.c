#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* What migration and replication jobs share (see vmjob.h). */
#include "engine/jobs/vmjob.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/record.h"
#include "engine/core/util.h"
#include "engine/jobs/copy.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "fsm/tables.h"

struct vmjob *
vmjob_of(struct job *j)
{
	return j != NULL ? j->priv : NULL;
}

/* Stop what is in flight; keep what was learnt. */
void
vmjob_stop_work(struct vmjob *rt)
{
	sync_cancel(&rt->pass);
	target_cancel(&rt->tgt);
	memstate_cancel(&rt->mem);
	token_drop(vs_op_cancel(rt->op));
	rt->op = NULL;
	if (rt->timer != NULL)
		evtimer_del(rt->timer);
}

static void
rt_free(void *p)
{
	struct vmjob *rt = p;

	vmjob_stop_work(rt);
	if (rt->timer != NULL)
		event_free(rt->timer);
	sync_free(&rt->pass);
	target_free(&rt->tgt);
	memstate_free(&rt->mem);
	for (size_t k = 0; rt->land_img != NULL && k < rt->nland_img; k++)
		free(rt->land_img[k]);
	free(rt->land_img);
	free(rt->land);
	mig_data_free(&rt->d);
	rep_data_free(&rt->rep);
	free(rt->removing_why);
	free(rt);
}

static void
vmjob_cancel(struct job *j)
{
	if (j->priv != NULL)
		vmjob_stop_work(j->priv);
}

/* A reload may have changed the bandwidth windows: a paused copy looks again. */
static void
vmjob_config_changed(struct job *j)
{
	if (j->priv != NULL)
		sync_wake(&vmjob_of(j)->pass);
}

void
vmjob_set_record(struct vmjob *rt)
{
	struct sbuf b;

	sbuf_init(&b);
	rt->kind->encode(rt, &b);
	job_set_data(rt->j, b.data, b.len);
	sbuf_free(&b);
}

static void
rt_save_job(struct job *j)
{
	vmjob_set_record(j->priv);
	job_persist(j);
}

void
vmjob_save(struct vmjob *rt)
{
	rt_save_job(rt->j);
}

/* ---- where each disk of a pass is written ---- */

static const char *
base_cid(struct job *j, size_t i)
{
	struct vmjob *rt = j->priv;

	return rt->d.full_done ? rt->d.change_ids[i] : NULL;
}

static void
record_cid(struct job *j, size_t i, const char *cid)
{
	struct vmjob *rt = j->priv;

	free(rt->d.change_ids[i]);
	rt->d.change_ids[i] = cid != NULL ? xstrdup(cid) : NULL;
}

char *
vmjob_staging_image(struct job *j, size_t i, char **err, int *errnum)
{
	char name[32];

	snprintf(name, sizeof(name), "disk%zu.img", i);
	return rt_staging_file(j, name, err, errnum);
}

/* In place (a mount, a hot-add device), else into a sparse staging image
 * in temp_dir that lands as deltas or is uploaded whole at cutover. */
static struct disk *
open_sink(struct job *j, size_t i, char **err)
{
	struct vmjob *rt = j->priv;
	char *e = NULL, *img = NULL;
	struct disk *d;
	int en = 0;

	if (!target_in_place(&rt->tgt, i) && (img = vmjob_staging_image(j, i, &e, &en)) == NULL) {
		*err = xasprintf("node temp_dir cannot be written: %s", e);
		free(e);
		return NULL;
	}
	d = target_open_sink(&rt->tgt, i, img, rt->d.sync.disks[i].capacity, err);
	free(img);
	return d;
}

/* Disk i's transport changed (a hot-add that failed, a mount that came):
 * bytes of this pass below its checkpoint went the old way and are copied
 * again; a disk that leaves or joins the whole upload is read whole (the
 * staging image and the target each hold only their own passes). */
static void
via_changed(struct job *j, size_t i, enum target_via was, enum target_via now)
{
	struct vmjob *rt = j->priv;
	struct sync_disk *d = &rt->d.sync.disks[i];
	char *img = NULL, *e = NULL;
	int en = 0;

	if (d->checkpoint != 0) {
		job_log(j, LOG_INFO, "disk %zu: this pass's areas are copied again through %s", i, target_via_name(now));
		d->checkpoint = 0;
	}
	if ((was == TARGET_VIA_WHOLE || now == TARGET_VIA_WHOLE) && rt->d.change_ids[i] != NULL) {
		job_log(j, LOG_INFO, "disk %zu: read whole again (%s, then %s)", i, target_via_name(was),
		    target_via_name(now));
		free(rt->d.change_ids[i]);
		rt->d.change_ids[i] = NULL;
		free(d->prev_cid);
		d->prev_cid = NULL;
		d->prev_ckpt = 0;
		if (now == TARGET_VIA_WHOLE)
			img = vmjob_staging_image(j, i, &e, &en);
		if (img != NULL)
			rt_staging_unlink(j, img);
		free(img);
		free(e);
	}
	sync_forget_prepared(&rt->pass);
}

static void
writes_ready(struct target *t)
{
	struct vmjob *rt = vmjob_of(t->j);

	rt->before_then(&rt->pass);
}

/* Before each pass: each disk's transport, hot-add disks attached. */
static void
before_pass(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p))
{
	struct vmjob *rt = j->priv;

	rt->before_then = done;
	rt->tgt.via_changed = via_changed;
	if (rt->tgt.src_caps == NULL) {
		size_t i;

		rt->tgt.src_caps = xcalloc(rt->d.sync.ndisks ? rt->d.sync.ndisks : 1, sizeof(uint64_t));
		for (i = 0; i < rt->d.sync.ndisks; i++)
			rt->tgt.src_caps[i] = rt->d.sync.disks[i].capacity;
	}
	target_writes_begin(&rt->tgt, p->create, writes_ready);
}

/* A staging image that should hold what earlier passes copied (or this
 * pass below its checkpoint) and is gone: temp_dir was wiped. */
static char *
sink_lost(struct job *j, size_t i)
{
	struct vmjob *rt = j->priv;
	const struct sync_disk *d = &rt->d.sync.disks[i];
	char *img, *e = NULL, *why = NULL;
	int en = 0;

	if (target_in_place(&rt->tgt, i) || (!rt->d.full_done && d->checkpoint == 0 && d->prev_ckpt == 0))
		return NULL;
	if ((img = vmjob_staging_image(j, i, &e, &en)) == NULL) {
		free(e);
		return NULL; /* opening the sink says why */
	}
	if (access(img, F_OK) != 0)
		why = xasprintf("its staging image %s, which held the copy so far, is gone", img);
	free(img);
	return why;
}

static void
landed(struct target *t)
{
	struct vmjob *rt = vmjob_of(t->j);

	if (rt->kind->landed != NULL)
		rt->kind->landed(rt, rt->land_then);
	else
		rt->land_then(&rt->pass);
}

/* Over HTTPS the pass lands in the target VM's disks as snapshot deltas
 * (target_delta.c), so a cutover or a cycle sends only its changes; where
 * the target cannot take deltas a migration's images go whole at
 * cutover. */
static void
land(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p))
{
	struct vmjob *rt = j->priv;
	size_t i, n = rt->d.sync.ndisks;
	char *err = NULL;
	int en = 0;

	rt->land_then = done;
	if (rt->rep.landed != 0 && rt->rep.landed_pass == rt->d.sync.pass) {
		/* Landed before a restart: its restore point comes next. */
		landed(&rt->tgt);
		return;
	}
	if (rt->rep.landed != 0) {
		/* The pass that landed lost its snapshot and was made again
		 * from a new one: its areas (changes since the same base) hold
		 * the earlier ones, and they land now, point and all. */
		job_log(j, LOG_INFO, "pass %u landed before its snapshot went; pass %u lands again", rt->rep.landed_pass,
		    rt->d.sync.pass);
		/* Its restore point made (or asked for): that name is taken. */
		if (rt->rep.landed == 2 || rt->rep.point_asked_at != 0)
			rt->rep.cycles++;
		rt->rep.landed = 0;
		rt->rep.point_asked_at = 0;
	}
	free(rt->land);
	rt->land = xcalloc(n ? n : 1, sizeof(*rt->land));
	for (i = 0; rt->land_img != NULL && i < rt->nland_img; i++)
		free(rt->land_img[i]);
	free(rt->land_img);
	rt->land_img = xcalloc(n ? n : 1, sizeof(char *));
	rt->nland_img = n;
	for (i = 0; i < n; i++) {
		rt->land[i].areas = p->areas[i];
		rt->land[i].nareas = p->nareas[i];
		rt->land[i].skip = target_in_place(&rt->tgt, i) || p->nareas[i] == 0;
		if (!rt->land[i].skip && (rt->land_img[i] = vmjob_staging_image(j, i, &err, &en)) == NULL) {
			rt_lost(j, "%s", err);
			free(err);
			return;
		}
		rt->land[i].image = rt->land_img[i];
	}
	target_land(&rt->tgt, rt->land, n, rt->kind->land_top != NULL && rt->kind->land_top(rt), landed);
}

/* A given-up pass's bytes stay where they belong only in place or in an
 * image uploaded whole at cutover; a landing pass's never landed. */
static int
keeps_partial(struct job *j, size_t i)
{
	struct vmjob *rt = j->priv;

	return target_in_place(&rt->tgt, i) || rt->d.tgt.disks[i].via == TARGET_VIA_WHOLE;
}

/* A replication's target chain holds every earlier cycle. */
static int
sink_has_data(struct job *j, size_t i)
{
	struct vmjob *rt = j->priv;

	return rt->kind->land_top != NULL && rt->d.full_done;
}

static const struct sync_kind_ops vmjob_sync_ops = {
	.save = rt_save_job,
	.base_cid = base_cid,
	.open_sink = open_sink,
	.record = record_cid,
	.sink_lost = sink_lost,
	.land = land,
	.keeps_partial = keeps_partial,
	.before_pass = before_pass,
	.sink_has_data = sink_has_data,
};

/* The job's runtime, with its data freshly decoded from the record. */
struct vmjob *
vmjob_get(struct job *j)
{
	struct vmjob *rt = j->priv;

	if (rt == NULL) {
		rt = xcalloc(1, sizeof(*rt));
		rt->j = j;
		rt->kind = j->kind == CFG_REPLICATION ? &vmjob_replication : &vmjob_migration;
		sync_init(&rt->pass, j, &rt->d.sync, &sync_source_vsphere, &vmjob_sync_ops);
		target_init(&rt->tgt, j, &rt->d.tgt, rt_save_job);
		memstate_init(&rt->mem, j, &rt->pass, &rt->tgt);
		j->priv = rt;
		j->free_priv = rt_free;
	}
	j->cancel = vmjob_cancel;
	j->config_changed = vmjob_config_changed;
	mig_data_free(&rt->d);
	rep_data_free(&rt->rep);
	rt->bad_data = rt->kind->decode(rt, j->data, j->datalen) != 0;
	rt->tgt.whole_never = rt->kind->land_top != NULL;
	/* Restore points live in the chain: a mount's in-place writes would
	 * go into their base. */
	rt->tgt.no_direct = rt->kind->land_top != NULL && rt->kind->land_top(rt);
	rt_sync_settings(j, &rt->pass.set);
	/* The pass cache is only good for the snapshot it was made for. */
	sync_refresh(&rt->pass);
	return rt;
}

/* The runtime for an enter action, or NULL when its record is unreadable
 * (the job fails) or its rule is gone. */
struct vmjob *
vmjob_enter(struct job *j)
{
	struct vmjob *rt = vmjob_get(j);

	if (rt_unreadable(j, rt->bad_data) || j->cfg == NULL)
		return NULL;
	return rt;
}

/* ---- starting, creating_vm, fetching_config ---- */

void
vmjob_enter_starting(struct job *j, int event)
{
	struct vmjob *rt;

	if (j->cfg == NULL) {
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return;
	}
	job_reset_backoff(j, event);
	if ((rt = vmjob_enter(j)) == NULL)
		return;
	rt_find_source_then(j, rt->d.stage >= 1, rt->kind->started);
}

/* The target checked (and made when new): the source's disks adopted. */
static struct vmjob *
target_adopt(struct target *t)
{
	struct vmjob *rt = vmjob_of(t->j);
	size_t n = rt->d.sync.ndisks;

	sync_state_adopt(&rt->d.sync, t->src);
	mig_data_size(&rt->d, n);
	rt->d.src_was_on = str_eq(t->src->power, "poweredOn");
	vmjob_save(rt);
	return rt;
}

static void
target_ready(struct target *t)
{
	fsm_dispatch(target_adopt(t)->j, EV_OK, NULL);
}

void
vmjob_enter_creating_vm(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt == NULL)
		return;
	/* A new cycle's progress starts from nothing (not the last one's 100 %). */
	if (event == EV_ADMIT)
		job_progress(j, 0, 0, 0);
	target_prepare(&rt->tgt, target_ready);
}

static void
target_disks_read(struct target *t)
{
	fsm_dispatch(t->j, EV_OK, NULL);
}

static void
source_config_read(struct vs_out *out, void *arg)
{
	struct vmjob *rt = vmjob_of(token_reply(out, arg, "reading the source VM's configuration"));
	uint64_t *caps;
	size_t i;

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (rt_save_vm_config(rt->j, out->vm) != 0)
		return;
	caps = xcalloc(rt->d.sync.ndisks ? rt->d.sync.ndisks : 1, sizeof(*caps));
	for (i = 0; i < rt->d.sync.ndisks; i++)
		caps[i] = rt->d.sync.disks[i].capacity;
	if (rt->tgt.src == NULL)
		rt_vm_set(&rt->tgt.src, out->vm);
	target_read_disks(&rt->tgt, caps, rt->d.sync.ndisks, target_disks_read);
	free(caps);
}

static void fetch_config(struct vmjob *rt);

static void
target_checked(struct target *t)
{
	fetch_config(target_adopt(t));
}

void
vmjob_enter_fetching_config(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt == NULL)
		return;
	if (event == EV_OK || event == EV_RESUME) {
		fetch_config(rt);
		return;
	}
	/* Straight from the queue (a replication's later cycle): the target
	 * is there; its checks come first, as 创建新虚机's would. */
	job_progress(j, 0, 0, 0);
	target_prepare(&rt->tgt, target_checked);
}

static void
fetch_config(struct vmjob *rt)
{
	struct job *j = rt->j;

	if (rt->d.sync.src_vm == NULL || rt->d.tgt.vm == NULL) {
		rt_fail(j, "its source or target VM is unknown; start the job again");
		return;
	}
	rt->op = vs_get_vm(rt_src_client(j), rt->d.sync.src_vm, source_config_read, token_new(j));
}

/* ---- querying_changes, transferring, ready ---- */

static void
query_done(struct sync_pass *p, int gone)
{
	size_t k, n = 0;

	for (k = 0; k < p->st->ndisks; k++)
		n += p->nareas[k];
	job_log(p->j, LOG_INFO, "sync pass %u: %llu bytes in %zu areas to copy", p->st->pass,
	    (unsigned long long)p->total, n);
	job_progress(p->j, p->base, p->total, 0);
	fsm_dispatch(p->j, EV_OK, NULL);
}

void
vmjob_enter_querying_changes(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 1, query_done);
}

static void
transfer_prepared(struct sync_pass *p, int gone)
{
	struct vmjob *rt = vmjob_of(p->j);

	if (gone && rt->kind->pass_gone != NULL && rt->kind->pass_gone(rt))
		return;
	if (gone)
		fsm_dispatch(p->j, rt->kind->requery_event, "the pass's snapshot is gone; querying again");
	else
		sync_copy(p, rt->kind->transferred);
}

void
vmjob_enter_transferring(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 0, transfer_prepared);
}

/* ---- stop, failure, delete ---- */

static void
stopped_detached(struct target *t)
{
	fsm_dispatch(t->j, EV_OK, NULL);
}

/* Nothing stays attached to the appliance VM while the job rests. */
static void
stopped(struct sync_pass *p)
{
	target_writes_end(&vmjob_of(p->j)->tgt, stopped_detached);
}

void
vmjob_enter_stopping(struct job *j, int event)
{
	struct vmjob *rt = vmjob_get(j);

	sync_abandon(&rt->pass, stopped);
}

static void
failed_detached(struct target *t)
{
}

static void
failed_cleaned(struct sync_pass *p)
{
	target_writes_end(&vmjob_of(p->j)->tgt, failed_detached);
}

/* A failed job leaves no snapshot of its own on the source (it would
 * grow there until someone noticed); what the pass copied is remembered
 * as after a stop, so `start` goes on from there. */
void
vmjob_enter_failed(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt == NULL)
		return;
	if (rt->d.sync.snap == NULL) {
		failed_cleaned(&rt->pass);
		return;
	}
	job_log(j, LOG_INFO, "removing snapshot %s of the failed pass from the source", rt->d.sync.snap);
	sync_abandon(&rt->pass, failed_cleaned);
}

static void
target_deleted(struct target *t)
{
	rt_staging_remove(t->j);
	fsm_dispatch(t->j, EV_CLEANED, NULL);
}

static void
delete_detached(struct target *t)
{
	struct vmjob *rt = vmjob_of(t->j);
	const struct cfg_rule *r = t->j->cfg;
	struct sync_pass *p = &rt->pass;

	if (r != NULL && r->options.delete_target_on_rule_delete && rt->d.tgt.vm != NULL &&
	    rt_dst_client(p->j) != NULL) {
		job_log(p->j, LOG_INFO, "delete_target_on_rule_delete: deleting target VM %s", rt->d.tgt.vm);
		target_destroy(&rt->tgt, target_deleted);
		return;
	}
	if (r != NULL)
		rt_staging_remove(p->j);
	fsm_dispatch(p->j, EV_CLEANED, NULL);
}

static void
delete_after_snapshot(struct sync_pass *p)
{
	target_writes_end(&vmjob_of(p->j)->tgt, delete_detached);
}

void
vmjob_enter_deleting(struct job *j, int event)
{
	struct vmjob *rt = vmjob_get(j);

	sync_abandon(&rt->pass, delete_after_snapshot);
}
