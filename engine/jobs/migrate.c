#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Migration jobs (seed 000): what is migration's own.  The sync passes
 * (snapshot, changes, copy) are sync.c's, the target VM is target.c's;
 * here: where each pass writes (a staging image in temp_dir, or the
 * target in place through a mount), 迁移就绪 and 开始迁移, the catch-up,
 * the cutover with its downtime and the memory state, stop and delete.
 *
 * What must survive a crash lives in the job's data record (struct
 * mig_data, versioned, big-endian): the sync state, the target VM, each
 * disk's last synced changeId, the cutover stage.  What can be recomputed
 * lives in the runtime (struct mig_rt) and is recomputed after a
 * restart. */
#include "engine/jobs/migrate.h"

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
#include "engine/jobs/memstate.h"
#include "engine/jobs/migrate_data.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "engine/jobs/target.h"
#include "fsm/tables.h"

#define SHUTDOWN_WAIT_S 300

/* ---- runtime ---- */

struct mig_rt {
	struct job *j;
	struct mig_data d;
	int bad_data;            /* the saved record could not be read */
	struct sync_pass pass;
	struct target tgt;
	struct vs_op *op;        /* the cutover's own driver calls */
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
};

static struct mig_rt *
rt_of(struct job *j)
{
	return j != NULL ? j->priv : NULL;
}

/* Stop what is in flight; keep what was learnt. */
static void
rt_stop_work(struct mig_rt *rt)
{
	sync_cancel(&rt->pass);
	target_cancel(&rt->tgt);
	memstate_cancel(&rt->mem);
	vs_op_cancel(rt->op);
	rt->op = NULL;
	if (rt->timer != NULL)
		evtimer_del(rt->timer);
}

static void
rt_free(void *p)
{
	struct mig_rt *rt = p;

	rt_stop_work(rt);
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
	free(rt);
}

static void
mig_cancel(struct job *j)
{
	if (j->priv != NULL)
		rt_stop_work(j->priv);
}

/* A reload may have changed the bandwidth windows: a paused copy looks again. */
static void
mig_config_changed(struct job *j)
{
	if (j->priv != NULL)
		sync_wake(&rt_of(j)->pass);
}

static void
rt_save_job(struct job *j)
{
	struct mig_rt *rt = j->priv;
	struct sbuf b;

	sbuf_init(&b);
	mig_data_encode(&rt->d, &b);
	job_set_data(j, b.data, b.len);
	job_persist(j);
	sbuf_free(&b);
}

static void
rt_save(struct mig_rt *rt)
{
	rt_save_job(rt->j);
}

/* ---- where each disk of a pass is written ---- */

static const char *
base_cid(struct job *j, size_t i)
{
	struct mig_rt *rt = j->priv;

	return rt->d.full_done ? rt->d.change_ids[i] : NULL;
}

static void
record_cid(struct job *j, size_t i, const char *cid)
{
	struct mig_rt *rt = j->priv;

	free(rt->d.change_ids[i]);
	rt->d.change_ids[i] = cid != NULL ? xstrdup(cid) : NULL;
}

static char *
staging_image(struct job *j, size_t i, char **err, int *errnum)
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
	struct mig_rt *rt = j->priv;
	char *e = NULL, *img = NULL;
	struct disk *d;
	int en = 0;

	if (!target_in_place(&rt->tgt, i) && (img = staging_image(j, i, &e, &en)) == NULL) {
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
	struct mig_rt *rt = j->priv;
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
			img = staging_image(j, i, &e, &en);
		if (img != NULL)
			unlink(img);
		free(img);
		free(e);
	}
	sync_forget_prepared(&rt->pass);
}

static void
writes_ready(struct target *t)
{
	struct mig_rt *rt = rt_of(t->j);

	rt->before_then(&rt->pass);
}

/* Before each pass: each disk's transport, hot-add disks attached. */
static void
before_pass(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p))
{
	struct mig_rt *rt = j->priv;

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
	struct mig_rt *rt = j->priv;
	const struct sync_disk *d = &rt->d.sync.disks[i];
	char *img, *e = NULL, *why = NULL;
	int en = 0;

	if (target_in_place(&rt->tgt, i) || (!rt->d.full_done && d->checkpoint == 0 && d->prev_ckpt == 0))
		return NULL;
	if ((img = staging_image(j, i, &e, &en)) == NULL) {
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
	struct mig_rt *rt = rt_of(t->j);

	rt->land_then(&rt->pass);
}

/* Over HTTPS the pass lands in the target VM's disks as snapshot deltas
 * (target_delta.c), so the cutover sends only the final pass's changes;
 * where the target cannot take deltas its images go whole at cutover. */
static void
land(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p))
{
	struct mig_rt *rt = j->priv;
	size_t i, n = rt->d.sync.ndisks;
	char *err = NULL;
	int en = 0;

	rt->land_then = done;
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
		if (!rt->land[i].skip && (rt->land_img[i] = staging_image(j, i, &err, &en)) == NULL) {
			rt_lost(j, "%s", err);
			free(err);
			return;
		}
		rt->land[i].image = rt->land_img[i];
	}
	target_land(&rt->tgt, rt->land, n, landed);
}

/* A given-up pass's bytes stay where they belong only in place or in an
 * image uploaded whole at cutover; a landing pass's never landed. */
static int
keeps_partial(struct job *j, size_t i)
{
	struct mig_rt *rt = j->priv;

	return target_in_place(&rt->tgt, i) || rt->d.tgt.disks[i].via == TARGET_VIA_WHOLE;
}

static const struct sync_kind_ops mig_sync_ops = {
	.save = rt_save_job,
	.base_cid = base_cid,
	.open_sink = open_sink,
	.record = record_cid,
	.sink_lost = sink_lost,
	.land = land,
	.keeps_partial = keeps_partial,
	.before_pass = before_pass,
};

/* The job's runtime, with its data freshly decoded from the record. */
static struct mig_rt *
rt_get(struct job *j)
{
	struct mig_rt *rt = j->priv;

	if (rt == NULL) {
		rt = xcalloc(1, sizeof(*rt));
		rt->j = j;
		sync_init(&rt->pass, j, &rt->d.sync, &sync_source_vsphere, &mig_sync_ops);
		target_init(&rt->tgt, j, &rt->d.tgt, rt_save_job);
		memstate_init(&rt->mem, j, &rt->pass, &rt->tgt);
		j->priv = rt;
		j->free_priv = rt_free;
	}
	j->cancel = mig_cancel;
	j->config_changed = mig_config_changed;
	mig_data_free(&rt->d);
	rt->bad_data = mig_data_decode(j->data, j->datalen, &rt->d) != 0;
	rt_sync_settings(j, &rt->pass.set);
	/* The pass cache is only good for the snapshot it was made for. */
	sync_refresh(&rt->pass);
	return rt;
}

/* The runtime for an enter action, or NULL when its record is unreadable
 * (the job fails) or its rule is gone. */
static struct mig_rt *
rt_enter(struct job *j)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(j, rt->bad_data) || j->cfg == NULL)
		return NULL;
	return rt;
}

/* ---- starting, creating_vm, fetching_config ---- */

void
mig_enter_starting(struct job *j, int event)
{
	struct mig_rt *rt;

	if (j->cfg == NULL) {
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return;
	}
	job_reset_backoff(j, event);
	if ((rt = rt_enter(j)) == NULL)
		return;
	rt_find_source(j, rt->d.stage >= 1);
}

static void
target_ready(struct target *t)
{
	struct mig_rt *rt = rt_of(t->j);
	size_t n = rt->d.sync.ndisks;

	sync_state_adopt(&rt->d.sync, t->src);
	mig_data_size(&rt->d, n);
	rt->d.src_was_on = str_eq(t->src->power, "poweredOn");
	rt_save(rt);
	fsm_dispatch(rt->j, EV_OK, NULL);
}

void
mig_enter_creating_vm(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

	if (rt != NULL)
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
	struct mig_rt *rt = rt_of(token_reply(out, arg, "reading the source VM's configuration"));
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

void
mig_enter_fetching_config(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

	if (rt == NULL)
		return;
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
mig_enter_querying_changes(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 1, query_done);
}

static void
transfer_done(struct sync_pass *p)
{
	struct mig_rt *rt = rt_of(p->j);

	if (!rt->d.full_done || !rt->d.migrate) {
		/* The first full copy, or a sync after a restart of a job that
		 * was waiting in 迁移就绪: back to ready. */
		rt->d.full_done = 1;
		rt_save(rt);
		fsm_dispatch(p->j, MIG_EV_FULL_DONE, NULL);
		return;
	}
	fsm_dispatch(p->j, MIG_EV_CATCHUP_DONE, NULL);
}

static void
transfer_prepared(struct sync_pass *p, int gone)
{
	if (gone)
		fsm_dispatch(p->j, MIG_EV_REQUERY, "the pass's snapshot is gone; querying again");
	else
		sync_copy(p, transfer_done);
}

void
mig_enter_transferring(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 0, transfer_prepared);
}

static void
note_migrate(struct job *j)
{
	struct mig_data d;
	struct sbuf b;

	if (mig_data_decode(j->data, j->datalen, &d) != 0)
		return;
	d.migrate = 1;
	sbuf_init(&b);
	mig_data_encode(&d, &b);
	/* Persisted with the transition that follows, in one commit. */
	job_set_data(j, b.data, b.len);
	sbuf_free(&b);
	mig_data_free(&d);
}

json_t *
mig_details(const struct job *j)
{
	struct mig_data d;
	const char *writes;
	json_t *o;

	if (mig_data_decode(j->data, j->datalen, &d) != 0)
		return NULL;
	if (j->cfg != NULL && j->cfg->options.lan_free)
		writes = "in place where a datastore mount exists, else as below";
	else
		writes = d.tgt.write == TARGET_WRITE_DELTA ? "snapshot deltas (each pass lands, consolidated)"
		    : d.tgt.write == TARGET_WRITE_WHOLE   ? "whole uploads at cutover: the downtime grows with the disks' size"
		                                          : "not decided yet (the first pass finds out)";
	o = json_pack("{s:s?,s:i,s:I,s:s,s:s?,s:b,s:i}", "target_vm", d.tgt.vm, "passes", (int)d.sync.pass, "bytes",
	    (json_int_t)d.sync.bytes, "target_writes", writes, "target_writes_why", d.tgt.write_why, "full_copy_done",
	    d.full_done, "cutover_stage", (int)d.stage);
	json_object_set_new(o, "target_disks", target_vias_json(&d.tgt));
	if (d.down_start_ms != 0 && d.down_end_ms >= d.down_start_ms)
		json_object_set_new(o, "downtime_s", json_real((double)(d.down_end_ms - d.down_start_ms) / 1000.0));
	mig_data_free(&d);
	return o;
}

void
mig_before_command(struct job *j, int event)
{
	if (event == MIG_EV_MIGRATE && j->fsm.state == MIG_READY)
		note_migrate(j);
}

void
mig_enter_ready(struct job *j, int event)
{
	struct mig_data d;

	/* A job at rest keeps no runtime: read the record without one. */
	if (rt_unreadable(j, mig_data_decode(j->data, j->datalen, &d) != 0))
		return;
	if (event != EV_RESUME)
		job_log(j, LOG_INFO, "full copy finished (%llu bytes); 迁移就绪: run `vmferryctl migrate %s %s` to cut over",
		    (unsigned long long)d.sync.bytes, j->rule, j->vm);
	mig_data_free(&d);
	if (j->cfg != NULL && j->cfg->options.auto_migrate) {
		note_migrate(j);
		fsm_dispatch(j, MIG_EV_MIGRATE, "auto_migrate");
	}
}

/* ---- cutting over ---- */

static void cutover_step(struct mig_rt *rt);

/* The cutover's own driver calls: the runtime when still current and ok. */
static struct mig_rt *
cut_reply(struct vs_out *out, void *arg, const char *what)
{
	struct mig_rt *rt = rt_of(token_reply(out, arg, what));

	if (rt != NULL)
		rt->op = NULL;
	return rt;
}

/* The source is stopped: downtime counts from when it was asked to stop
 * (kept after a crash); the final pass follows. */
static void
down_started(struct mig_rt *rt)
{
	if (rt->d.down_start_ms == 0)
		rt->d.down_start_ms = rt_now_ms();
	rt->d.stage = 1;
	rt_save(rt);
	cutover_step(rt);
}

static void
down_ended(struct mig_rt *rt)
{
	rt->d.down_end_ms = rt_now_ms();
	rt->d.stage = 4;
	rt_save(rt);
}

static void
cut_power_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = rt_of(token_take(arg));

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status == VS_FAULT && str_eq(out->fault_type, "InvalidPowerState") && rt->power_rereads < 3) {
		/* Asked again after a restart, the VM may be there already (off,
		 * or on): look at it again rather than fail. */
		job_log(rt->j, LOG_INFO, "%s: the VM is not in a state for it (%s); reading it again",
		    rt->d.stage == 0 ? "stopping the source VM" : "powering on the target VM", out->error);
		rt->power_rereads++;
		cutover_step(rt);
		return;
	}
	if (out->status != VS_OK) {
		rt_vs_failed(rt->j, rt->d.stage == 0 ? "stopping the source VM" : "powering on the target VM", out);
		return;
	}
	if (rt->d.stage != 0) {
		down_ended(rt);
		cutover_step(rt);
		return;
	}
	/* After a guest shutdown, wait until the VM is really off. */
	if (rt->j->cfg->options.cutover == CUTOVER_SHUTDOWN && !rt->j->cfg->options.memory_snapshot) {
		rt->shutdown_t0 = now_mono();
		cutover_step(rt);
		return;
	}
	down_started(rt);
}

static void
cut_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	cutover_step(arg);
}

/* The source is off (or stays on with cutover none): the final pass. */
static void
source_stopped(struct mig_rt *rt, const struct vs_vm *vm, int on)
{
	const struct cfg_rule *r = rt->j->cfg;

	if (on && r->options.memory_snapshot)
		job_log(rt->j, LOG_WARN, "memory_snapshot: cutover none keeps the source running, so there is no "
		                         "memory state to carry; the target boots from its disks");
	if (on)
		job_log(rt->j, LOG_INFO, "cutover none: the source keeps running");
	else
		job_log(rt->j, LOG_INFO, "source VM %s is %s", rt->j->vm,
		    str_eq(vm->power, "suspended") ? "suspended" : "powered off");
	down_started(rt);
}

static void
cut_vm_read(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = cut_reply(out, arg, "reading the source VM");
	const struct cfg_rule *r;
	struct vs_client *c;
	int on;

	if (rt == NULL)
		return;
	r = rt->j->cfg;
	c = rt_src_client(rt->j);
	on = str_eq(out->vm->power, "poweredOn");
	if (!on || r->options.cutover == CUTOVER_NONE) {
		source_stopped(rt, out->vm, on);
		return;
	}
	if (r->options.cutover == CUTOVER_SHUTDOWN && rt->shutdown_t0 > 0) {
		struct timeval tv = { 1, 0 };

		/* Shutdown asked: wait for the guest, then force it. */
		if (now_mono() - rt->shutdown_t0 > SHUTDOWN_WAIT_S) {
			job_log(rt->j, LOG_WARN, "the guest did not shut down within %d s: powering it off", SHUTDOWN_WAIT_S);
			rt->op = vs_power(c, rt->d.sync.src_vm, "off", cut_power_done, token_new(rt->j));
			rt->shutdown_t0 = 0;
			return;
		}
		if (rt->timer == NULL)
			rt->timer = evtimer_new(loop_base(), cut_timer_cb, rt);
		evtimer_add(rt->timer, &tv);
		return;
	}
	/* Downtime counts from the moment the source is asked to stop. */
	if (rt->d.down_start_ms == 0) {
		rt->d.down_start_ms = rt_now_ms();
		rt_save(rt);
	}
	if (r->options.memory_snapshot) {
		/* Suspending writes the guest's memory to a file, and the disks
		 * stop where that memory state expects them. */
		job_log(rt->j, LOG_INFO, "cutover: suspending the source VM (memory_snapshot: the target resumes from "
		                         "its memory state)");
		rt->op = vs_power(c, rt->d.sync.src_vm, "suspend", cut_power_done, token_new(rt->j));
		return;
	}
	job_log(rt->j, LOG_INFO, "cutover: %s the source VM",
	    r->options.cutover == CUTOVER_SHUTDOWN ? "shutting down" : "powering off");
	rt->op = vs_power(c, rt->d.sync.src_vm, r->options.cutover == CUTOVER_SHUTDOWN ? "shutdown" : "off",
	    cut_power_done, token_new(rt->j));
}

static void
mem_carried(struct job *j)
{
	cutover_step(rt_of(j));
}

static void
cut_target_read(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = cut_reply(out, arg, "reading the target VM");
	const struct cfg_rule *r;

	if (rt == NULL)
		return;
	r = rt->j->cfg;
	if (str_eq(out->vm->power, "poweredOn")) {
		job_log(rt->j, LOG_INFO, "the target VM is powered on");
		down_ended(rt);
		cutover_step(rt);
		return;
	}
	if (r->options.memory_snapshot && !rt->mem.done) {
		memstate_carry(&rt->mem, rt->d.sync.src_vm, rt->d.sync.src_dc, rt->d.tgt.vm, out->vm->vmx_path,
		    mem_carried);
		return;
	}
	if (!r->options.power_on_target) {
		down_ended(rt);
		cutover_step(rt);
		return;
	}
	job_log(rt->j, LOG_INFO, "%s the target VM", rt->mem.name ? "resuming" : "powering on");
	rt->op = vs_power(rt_dst_client(rt->j), rt->d.tgt.vm, "on", cut_power_done, token_new(rt->j));
}

/* ---- the cutover's stages ---- */

static void
final_pass_done(struct sync_pass *p)
{
	struct mig_rt *rt = rt_of(p->j);

	rt->i = 0;
	rt->d.stage = 2;
	rt_save(rt);
	cutover_step(rt);
}

static void
disk_uploaded(struct target *t)
{
	struct mig_rt *rt = rt_of(t->j);

	job_log(rt->j, LOG_INFO, "disk %zu uploaded to the target", rt->i);
	rt->i++;
	cutover_step(rt);
}

/* Stage 2: staging images go whole to the target's data files (disks
 * written in place need nothing). */
static void
upload_next(struct mig_rt *rt)
{
	char *img, *err = NULL;
	int en = 0;

	while (rt->i < rt->d.sync.ndisks && rt->d.tgt.disks[rt->i].via != TARGET_VIA_WHOLE)
		rt->i++;
	if (rt->i >= rt->d.sync.ndisks) {
		rt->d.stage = 3;
		rt_save(rt);
		cutover_step(rt);
		return;
	}
	if ((img = staging_image(rt->j, rt->i, &err, &en)) == NULL) {
		rt_lost(rt->j, "staging image of disk %zu: %s", rt->i, err);
		free(err);
		return;
	}
	target_upload(&rt->tgt, rt->i, img, rt->d.sync.disks[rt->i].capacity, disk_uploaded);
	free(img);
}

static void
cutover_step(struct mig_rt *rt)
{
	const struct cfg_rule *r = rt->j->cfg;

	switch (rt->d.stage) {
	case 0:
		rt->op = vs_get_vm(rt_src_client(rt->j), rt->d.sync.src_vm, cut_vm_read, token_new(rt->j));
		return;
	case 1:
		sync_run(&rt->pass, final_pass_done);
		return;
	case 2:
		upload_next(rt);
		return;
	case 3:
		/* After a crash it may be on already: look first. */
		if (r->options.power_on_target || r->options.memory_snapshot) {
			rt->op = vs_get_vm(rt_dst_client(rt->j), rt->d.tgt.vm, cut_target_read, token_new(rt->j));
			return;
		}
		down_ended(rt);
		/* fall through */
	case 4: {
		double down = (double)(rt->d.down_end_ms - rt->d.down_start_ms) / 1000.0;

		job_stat_success(rt->j, rt->d.sync.bytes);
		job_progress(rt->j, rt->d.sync.bytes, rt->d.sync.bytes, 0);
		job_log(rt->j, LOG_INFO, "migration complete: %llu bytes moved in %u sync passes; downtime %.1f s",
		    (unsigned long long)rt->d.sync.bytes, rt->d.sync.pass, down);
		rt_staging_remove(rt->j);
		fsm_dispatch(rt->j, EV_OK, NULL);
		return;
	}
	default:
		rt_fail(rt->j, "unknown cutover stage %u", rt->d.stage);
	}
}

void
mig_enter_cutting_over(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

	if (rt == NULL)
		return;
	rt->i = 0;
	rt->shutdown_t0 = 0;
	rt->mem.done = 0;
	rt->power_rereads = 0;
	cutover_step(rt);
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
	target_writes_end(&rt_of(p->j)->tgt, stopped_detached);
}

void
mig_enter_stopping(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	sync_abandon(&rt->pass, stopped);
}

static void
failed_detached(struct target *t)
{
}

static void
failed_cleaned(struct sync_pass *p)
{
	target_writes_end(&rt_of(p->j)->tgt, failed_detached);
}

/* A failed job leaves no snapshot of its own on the source (it would
 * grow there until someone noticed); what the pass copied is remembered
 * as after a stop, so `start` goes on from there. */
void
mig_enter_failed(struct job *j, int event)
{
	struct mig_rt *rt = rt_enter(j);

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
	struct mig_rt *rt = rt_of(t->j);
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
	target_writes_end(&rt_of(p->j)->tgt, delete_detached);
}

void
mig_enter_deleting(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	sync_abandon(&rt->pass, delete_after_snapshot);
}
