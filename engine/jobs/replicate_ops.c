#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Replication's operations on its restore points (SPEC §9): revert
 * (恢复快照, then 快照清除 of the later points), temporary failover
 * (临时切换: the target at a point, powered on; replication pauses),
 * failback (回切: off, back to the latest point, replication resumes) and
 * permanent failover (永久切换: at a point, every restore point
 * consolidated, powered on, the job final).
 *
 * The point an operation goes to is recorded with the command's
 * transition (rep_before_command), and each step is recorded as it ends
 * (op_stage), so a crash resumes the operation where it was: a revert or
 * a removal asked again does no harm, a power-on finds the VM on. */
#include "engine/jobs/replicate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/vmjob.h"
#include "engine/request.h"
#include "fsm/fsm.h"
#include "fsm/tables.h"

#define RETRY_S 5

/* ---- which point ---- */

static const struct rep_point *
point_by_cycle(const struct rep_data *x, uint32_t cycle)
{
	size_t k;

	for (k = 0; k < x->npoints; k++)
		if (x->points[k].cycle == cycle)
			return &x->points[k];
	return NULL;
}

static const struct rep_point *
latest(const struct rep_data *x)
{
	return x->npoints > 0 ? &x->points[x->npoints - 1] : NULL;
}

/* "3", "rp3" or "latest" (NULL too): the point's cycle, or 0. */
static uint32_t
parse_point(const struct rep_data *x, const char *s)
{
	char *end;
	unsigned long v;

	if (s == NULL || strcmp(s, "latest") == 0)
		return latest(x) != NULL ? latest(x)->cycle : 0;
	if (strncmp(s, "rp", 2) == 0)
		s += 2;
	if (*s < '0' || *s > '9')
		return 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v == 0 || v > UINT32_MAX || point_by_cycle(x, (uint32_t)v) == NULL)
		return 0;
	return (uint32_t)v;
}

static char *
points_list(const struct rep_data *x)
{
	struct sbuf b;
	size_t k;

	sbuf_init(&b);
	for (k = 0; k < x->npoints; k++)
		sbuf_printf(&b, "%s%u", k ? ", " : "", x->points[k].cycle);
	if (x->npoints == 0)
		sbuf_printf(&b, "none yet");
	return sbuf_steal(&b);
}

int
rep_before_command(struct job *j, int event, const struct request *req, char **why)
{
	const char *point = req != NULL ? req->point : NULL;
	const struct fsm_row *row = fsm_lookup(j->fsm.table, j->fsm.state, event);
	struct vmjob *rt;
	uint32_t cycle;

	*why = NULL;
	if (j->fsm.state == REP_STARTING && (event == REP_EV_REVERT || event == REP_EV_FAILBACK)) {
		/* Only the job itself goes there from starting (rep_started). */
		*why = xasprintf("%s is starting; %s is possible once it rests", j->vm,
		    event == REP_EV_REVERT ? "revert" : "failback");
		return -1;
	}
	if (event != REP_EV_REVERT && event != REP_EV_FAILOVER_TEMP && event != REP_EV_FAILOVER_PERM)
		return 0;
	if (row == NULL || row->to < 0)
		return 0; /* refused by the table, with the state's reason */
	if ((rt = vmjob_get(j)) == NULL || rt->bad_data)
		return 0;
	if (event == REP_EV_REVERT && point == NULL) {
		*why = xstrdup("revert needs --point: the restore point to go back to");
		return -1;
	}
	if (event == REP_EV_FAILOVER_PERM && j->fsm.state == REP_FAILOVER_TEMPORARY && point != NULL) {
		*why = xasprintf("%s runs failed over to point %u: a permanent failover keeps that VM as it is, "
		                 "--point does not apply", j->vm, rt->rep.op_point);
		return -1;
	}
	if ((cycle = parse_point(&rt->rep, point)) == 0) {
		char *have = points_list(&rt->rep);

		*why = point == NULL ? xasprintf("%s has no restore point yet", j->vm)
		                     : xasprintf("%s has no restore point %s (its points: %s)", j->vm, point, have);
		free(have);
		return -1;
	}
	if (event == REP_EV_FAILOVER_PERM && j->fsm.state == REP_FAILOVER_TEMPORARY) {
		/* The VM runs at its point already: it stays as it is. */
		cycle = rt->rep.op_point;
	} else {
		rt->rep.op_stage = 0;
	}
	rt->rep.op_point = cycle;
	/* Persisted with the transition that follows, in one commit. */
	vmjob_set_record(rt);
	return 0;
}

void
rep_started(struct job *j, const struct vs_vm *vm)
{
	struct vmjob *rt = vmjob_of(j);

	/* A revert (stages 0, 1) or a failback (2, 3) left half-way: the
	 * target is neither where the record's next cycle would count from
	 * nor where the user asked; it goes there first. */
	if (rt != NULL && rt->rep.op_point != 0 && rt->rep.op_stage <= 1) {
		fsm_dispatch(j, REP_EV_REVERT, "its revert to a restore point was cut; it is finished first");
		return;
	}
	if (rt != NULL && rt->rep.op_point != 0 && rt->rep.op_stage <= 3) {
		fsm_dispatch(j, REP_EV_FAILBACK, "its failback was cut; it is finished first");
		return;
	}
	fsm_dispatch(j, EV_STARTED, NULL);
}

/* ---- steps ---- */

static void failover_failed(struct vmjob *rt, const char *what, const struct vs_out *out);

/* The resting failover states keep their VM running whatever happens: a
 * failed step there is said (and retried when the peer was lost); in the
 * others the job fails or goes 失效 as usual. */
static int
resting_op(const struct vmjob *rt)
{
	return rt->j->fsm.state == REP_FAILOVER_TEMPORARY || rt->j->fsm.state == REP_FAILOVER_PERMANENT;
}

static void
op_failed(struct vmjob *rt, const char *what, const struct vs_out *out)
{
	if (resting_op(rt))
		failover_failed(rt, what, out);
	else
		rt_vs_failed(rt->j, what, out);
}

static struct vmjob *
op_reply(struct vs_out *out, void *arg)
{
	struct vmjob *rt = vmjob_of(token_take(arg));

	if (rt != NULL)
		rt->op = NULL;
	return rt;
}

static void
stage_done(struct vmjob *rt, uint8_t stage)
{
	rt->rep.op_stage = stage;
	vmjob_save(rt);
}

static void
point_removed(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);
	struct rep_point *pt;

	if (rt == NULL)
		return;
	/* One removed before a crash is gone already: that is done too. */
	if (out->status != VS_OK && !(out->status == VS_FAULT && str_eq(out->fault_type, "ManagedObjectNotFound"))) {
		op_failed(rt, "removing a restore point", out);
		return;
	}
	pt = &rt->rep.points[rt->i];
	job_log(rt->j, LOG_INFO, "restore point %u removed %s", pt->cycle, rt->removing_why);
	rep_point_free(pt);
	memmove(rt->rep.points + rt->i, rt->rep.points + rt->i + 1, (rt->rep.npoints - rt->i - 1) * sizeof(*pt));
	rt->rep.npoints--;
	vmjob_save(rt);
	rt->removed_then(rt);
}

void
rep_remove_point(struct vmjob *rt, size_t k, const char *why, void (*then)(struct vmjob *rt))
{
	free(rt->removing_why);
	rt->removing_why = xstrdup(why);
	rt->removed_then = then;
	rt->i = k;
	rt->op = vs_remove_snapshot(rt_dst_client(rt->j), rt->rep.points[k].snap, point_removed, token_new(rt->j));
}

static void
reverted(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);

	if (rt == NULL)
		return;
	if (out->status != VS_OK) {
		rt_vs_failed(rt->j, "reverting the target VM to a restore point", out);
		return;
	}
	job_log(rt->j, LOG_INFO, "the target VM is at restore point %u", rt->rep.op_point);
	stage_done(rt, 1);
	fsm_dispatch(rt->j, EV_OK, NULL);
}

static int
revert_to(struct vmjob *rt, uint32_t cycle, vs_op_fn done)
{
	const struct rep_point *pt = point_by_cycle(&rt->rep, cycle);

	if (pt == NULL) {
		if (resting_op(rt)) {
			job_set_error(rt->j, "its restore point is gone from the record");
			job_log(rt->j, LOG_ERR, "restore point %u is gone from the record", cycle);
		} else {
			rt_fail(rt->j, "restore point %u is gone from the record", cycle);
		}
		return -1;
	}
	job_log(rt->j, LOG_INFO, "reverting the target VM to restore point %u (%s)", cycle, pt->snap);
	rt->op = vs_revert_snapshot(rt_dst_client(rt->j), pt->snap, done, token_new(rt->j));
	return 0;
}

/* ---- 恢复快照, 快照清除 ---- */

void
rep_enter_reverting(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt == NULL)
		return;
	if (rt->rep.op_stage >= 1) {
		fsm_dispatch(j, EV_OK, NULL);
		return;
	}
	revert_to(rt, rt->rep.op_point, reverted);
}

static void cleanup_step(struct vmjob *rt);

/* The points after the one reverted to go, newest first; the next cycle
 * counts its changes from that point. */
static void
cleanup_step(struct vmjob *rt)
{
	const struct rep_point *pt;
	size_t i;

	if (rt->rep.op_point != 0 && (pt = latest(&rt->rep)) != NULL && pt->cycle > rt->rep.op_point) {
		rep_remove_point(rt, rt->rep.npoints - 1, "(consolidated)", cleanup_step);
		return;
	}
	if (rt->rep.op_point != 0 && (pt = latest(&rt->rep)) != NULL) {
		for (i = 0; i < rt->d.sync.ndisks && i < pt->ncids; i++) {
			free(rt->d.change_ids[i]);
			rt->d.change_ids[i] = pt->cids[i] != NULL ? xstrdup(pt->cids[i]) : NULL;
		}
		job_log(rt->j, LOG_INFO, "the next cycle sends the changes since restore point %u", pt->cycle);
	}
	rt->rep.op_point = 0;
	rt->rep.op_stage = 0;
	vmjob_save(rt);
	fsm_dispatch(rt->j, EV_OK, NULL);
}

void
rep_enter_snapshot_cleanup(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		cleanup_step(rt);
}

/* ---- 临时切换, 回切 ---- */

static void failover_step(struct vmjob *rt);

static void permanent_step(struct vmjob *rt);

static void resting_step(struct vmjob *rt);

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	resting_step(arg);
}

/* 临时切换 rests with the VM running: a step that fails is said and tried
 * again (a lost peer), or said and left for the user (a refusal). */
static void
failover_failed(struct vmjob *rt, const char *what, const struct vs_out *out)
{
	struct timeval tv = { RETRY_S, 0 };

	job_set_error(rt->j, out->error != NULL ? out->error : "failed");
	if (!vs_status_transient(out->status)) {
		job_log(rt->j, LOG_ERR, "failover: %s: %s; `vmferryctl failback` returns to the latest point", what,
		    out->error ? out->error : "refused");
		return;
	}
	job_log(rt->j, LOG_WARN, "failover: %s: %s; trying again in %d s", what, out->error ? out->error : "lost",
	    RETRY_S);
	if (rt->timer == NULL)
		rt->timer = evtimer_new(loop_base(), retry_cb, rt);
	evtimer_add(rt->timer, &tv);
}

static void
resting_step(struct vmjob *rt)
{
	if (rt->j->fsm.state == REP_FAILOVER_PERMANENT)
		permanent_step(rt);
	else if (rt->j->fsm.state == REP_FAILOVER_TEMPORARY)
		failover_step(rt);
}

static void
rest_reverted(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);

	if (rt == NULL)
		return;
	if (out->status != VS_OK) {
		failover_failed(rt, "reverting the target VM", out);
		return;
	}
	stage_done(rt, 1);
	resting_step(rt);
}

/* The target VM is on (or was already): the failover's last step. */
static void
rest_powered(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);
	int perm;

	if (rt == NULL)
		return;
	if (out->status != VS_OK && !(out->status == VS_FAULT && str_eq(out->fault_type, "InvalidPowerState"))) {
		failover_failed(rt, "powering on the target VM", out);
		return;
	}
	perm = rt->j->fsm.state == REP_FAILOVER_PERMANENT;
	job_set_error(rt->j, NULL);
	stage_done(rt, perm ? 4 : 2);
	if (perm)
		job_log(rt->j, LOG_INFO, "永久切换: the target VM runs at restore point %u with no restore point left; "
		                         "this job is final and the source VM is untouched", rt->rep.op_point);
	else
		job_log(rt->j, LOG_INFO, "临时切换: the target VM runs at restore point %u; replication pauses until "
		                         "`vmferryctl failback`", rt->rep.op_point);
}

static void
failover_step(struct vmjob *rt)
{
	switch (rt->rep.op_stage) {
	case 0:
		revert_to(rt, rt->rep.op_point, rest_reverted);
		return;
	case 1:
		rt->op = vs_power(rt_dst_client(rt->j), rt->d.tgt.vm, "on", rest_powered, token_new(rt->j));
		return;
	default:
		return; /* running */
	}
}

void
rep_enter_failover_temporary(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		failover_step(rt);
}

static void failback_step(struct vmjob *rt);

static void
fb_powered_off(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);

	if (rt == NULL)
		return;
	if (out->status != VS_OK && !(out->status == VS_FAULT && str_eq(out->fault_type, "InvalidPowerState"))) {
		rt_vs_failed(rt->j, "powering off the failed-over target VM", out);
		return;
	}
	stage_done(rt, 3);
	failback_step(rt);
}

static void
fb_reverted(struct vs_out *out, void *arg)
{
	struct vmjob *rt = op_reply(out, arg);

	if (rt == NULL)
		return;
	if (out->status != VS_OK) {
		rt_vs_failed(rt->j, "reverting the target VM to its latest restore point", out);
		return;
	}
	job_log(rt->j, LOG_INFO, "回切: the target VM is off at its latest restore point; what it did while failed "
	                         "over is discarded, replication resumes");
	rt->rep.op_point = 0;
	rt->rep.op_stage = 0;
	vmjob_save(rt);
	fsm_dispatch(rt->j, EV_OK, NULL);
}

/* Stages after a failover (2 running): 3 powered off, then the latest point. */
static void
failback_step(struct vmjob *rt)
{
	if (rt->rep.op_stage < 3) {
		rt->op = vs_power(rt_dst_client(rt->j), rt->d.tgt.vm, "off", fb_powered_off, token_new(rt->j));
		return;
	}
	if (latest(&rt->rep) == NULL) {
		rt_fail(rt->j, "no restore point to fail back to");
		return;
	}
	revert_to(rt, latest(&rt->rep)->cycle, fb_reverted);
}

void
rep_enter_failing_back(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		failback_step(rt);
}

/* ---- 永久切换 ---- */


/* Stages: 0 revert (skipped when already failed over, stage 2 there),
 * 1 reverted: every point removed, newest first; 3 none left: power on;
 * 4 done. */
static void
permanent_step(struct vmjob *rt)
{
	switch (rt->rep.op_stage) {
	case 0:
		revert_to(rt, rt->rep.op_point, rest_reverted);
		return;
	case 1:
	case 2:
		if (rt->rep.npoints > 0) {
			rep_remove_point(rt, rt->rep.npoints - 1, "(consolidated)", permanent_step);
			return;
		}
		stage_done(rt, 3);
		/* fall through */
	case 3:
		rt->op = vs_power(rt_dst_client(rt->j), rt->d.tgt.vm, "on", rest_powered, token_new(rt->j));
		return;
	default:
		return;
	}
}

void
rep_enter_failover_permanent(struct job *j, int event)
{
	struct vmjob *rt = vmjob_enter(j);

	if (rt != NULL)
		permanent_step(rt);
}
