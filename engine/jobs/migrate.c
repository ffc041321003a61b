#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Migration jobs (seed 000): what is migration's own.  The sync passes
 * (snapshot, changes, copy) are sync.c's, the target VM is target.c's,
 * what migration shares with replication (the runtime, where each pass
 * writes, the states up to the copy, stop and delete) is vmjob.c's; here:
 * 迁移就绪 and 开始迁移, the catch-up, the cutover with its downtime and
 * the memory state.
 *
 * What must survive a crash lives in the job's data record (struct
 * mig_data, versioned, big-endian): the sync state, the target VM, each
 * disk's last synced changeId, the cutover stage. */
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
#include "engine/jobs/vmjob.h"
#include "fsm/tables.h"

#define SHUTDOWN_WAIT_S 300

static void
mig_encode(const struct vmjob *rt, struct sbuf *b)
{
	mig_data_encode(&rt->d, b);
}

static int
mig_decode(struct vmjob *rt, const uint8_t *p, size_t n)
{
	return mig_data_decode(p, n, &rt->d);
}

static void transfer_done(struct sync_pass *p);

const struct vmjob_kind vmjob_migration = {
	.encode = mig_encode,
	.decode = mig_decode,
	.transferred = transfer_done,
	.requery_event = MIG_EV_REQUERY,
};

static void
transfer_done(struct sync_pass *p)
{
	struct vmjob *rt = vmjob_of(p->j);

	if (!rt->d.full_done || !rt->d.migrate) {
		/* The first full copy, or a sync after a restart of a job that
		 * was waiting in 迁移就绪: back to ready. */
		rt->d.full_done = 1;
		vmjob_save(rt);
		fsm_dispatch(p->j, MIG_EV_FULL_DONE, NULL);
		return;
	}
	fsm_dispatch(p->j, MIG_EV_CATCHUP_DONE, NULL);
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
	size_t i, whole = 0;
	json_t *o;

	if (mig_data_decode(j->data, j->datalen, &d) != 0)
		return NULL;
	for (i = 0; i < d.tgt.ndisks; i++)
		whole += d.tgt.disks[i].via == TARGET_VIA_WHOLE || d.tgt.disks[i].via == TARGET_VIA_NONE;
	if (j->cfg != NULL && j->cfg->options.lan_free)
		writes = "in place where a datastore mount exists, else as below";
	else if (d.tgt.write == TARGET_WRITE_WHOLE && d.tgt.ndisks > 0 && whole == 0)
		/* Known before a pass (a VMFS6 datastore), every disk in place. */
		writes = "in place (hot-add): the datastore takes no snapshot deltas, so a disk that loses hot-add is "
		         "uploaded whole at cutover";
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

int
mig_before_command(struct job *j, int event, const struct request *req, char **why)
{
	*why = NULL;
	if (event == MIG_EV_MIGRATE && j->fsm.state == MIG_READY)
		note_migrate(j);
	return 0;
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

static void cutover_step(struct vmjob *rt);

/* The cutover's own driver calls: the runtime when still current and ok. */
static struct vmjob *
cut_reply(struct vs_out *out, void *arg, const char *what)
{
	struct vmjob *rt = vmjob_of(token_reply(out, arg, what));

	if (rt != NULL)
		rt->op = NULL;
	return rt;
}

/* The source is stopped: downtime counts from when it was asked to stop
 * (kept after a crash); the final pass follows. */
static void
down_started(struct vmjob *rt)
{
	if (rt->d.down_start_ms == 0)
		rt->d.down_start_ms = rt_now_ms();
	rt->d.stage = 1;
	vmjob_save(rt);
	cutover_step(rt);
}

static void
down_ended(struct vmjob *rt)
{
	rt->d.down_end_ms = rt_now_ms();
	rt->d.stage = 4;
	vmjob_save(rt);
}

static void
cut_power_done(struct vs_out *out, void *arg)
{
	struct vmjob *rt = vmjob_of(token_take(arg));

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
source_stopped(struct vmjob *rt, const struct vs_vm *vm, int on)
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
	struct vmjob *rt = cut_reply(out, arg, "reading the source VM");
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
		vmjob_save(rt);
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
	cutover_step(vmjob_of(j));
}

static void
cut_target_read(struct vs_out *out, void *arg)
{
	struct vmjob *rt = cut_reply(out, arg, "reading the target VM");
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
	struct vmjob *rt = vmjob_of(p->j);

	rt->i = 0;
	rt->d.stage = 2;
	vmjob_save(rt);
	cutover_step(rt);
}

static void
disk_uploaded(struct target *t)
{
	struct vmjob *rt = vmjob_of(t->j);

	job_log(rt->j, LOG_INFO, "disk %zu uploaded to the target", rt->i);
	rt->i++;
	cutover_step(rt);
}

/* Stage 2: staging images go whole to the target's data files (disks
 * written in place need nothing). */
static void
upload_next(struct vmjob *rt)
{
	char *img, *err = NULL;
	int en = 0;

	while (rt->i < rt->d.sync.ndisks && rt->d.tgt.disks[rt->i].via != TARGET_VIA_WHOLE)
		rt->i++;
	if (rt->i >= rt->d.sync.ndisks) {
		rt->d.stage = 3;
		vmjob_save(rt);
		cutover_step(rt);
		return;
	}
	if ((img = vmjob_staging_image(rt->j, rt->i, &err, &en)) == NULL) {
		rt_lost(rt->j, "staging image of disk %zu: %s", rt->i, err);
		free(err);
		return;
	}
	target_upload(&rt->tgt, rt->i, img, rt->d.sync.disks[rt->i].capacity, disk_uploaded);
	free(img);
}

static void
cutover_step(struct vmjob *rt)
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
	struct vmjob *rt = vmjob_enter(j);

	if (rt == NULL)
		return;
	rt->i = 0;
	rt->shutdown_t0 = 0;
	rt->mem.done = 0;
	rt->power_rereads = 0;
	cutover_step(rt);
}
