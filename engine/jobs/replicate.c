#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Replication jobs (seed 001): what is replication's own.  The states up
 * to the copy are the ones migration has (vmjob.c); here: a cycle's end
 * (SPEC §9) — its bytes in the top of the target's chain, a restore point
 * made as a snapshot of the powered-off target VM, the points beyond
 * keep_history removed oldest first (a removal consolidates) — then 空闲
 * until the schedule or `vmferryctl run`, or 完成 without auto_sync.
 *
 * Crash safety: the record says how far a cycle's end got (landed: its
 * bytes are in the target; point made: its restore point exists).  A
 * CreateSnapshot asked for before a crash is found again by its name, and
 * its time is committed before it is asked for, so none is made twice. */
#include "engine/jobs/replicate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/vmjob.h"
#include "fsm/tables.h"

#define REP_RECORD_V1 1
#define REP_DEFAULT_KEEP 3

/* ---- the record: migration's part, then replication's ---- */

static void
rep_encode(const struct vmjob *rt, struct sbuf *b)
{
	struct sbuf m;

	sbuf_init(&m);
	mig_data_encode(&rt->d, &m);
	rec_put_u16(b, REP_RECORD_V1);
	rec_put_blob(b, m.data, m.len);
	rep_data_put(&rt->rep, b);
	sbuf_free(&m);
}

static int
rep_decode_into(const uint8_t *p, size_t n, struct mig_data *d, struct rep_data *x)
{
	struct rec_reader r;
	uint8_t *m;
	size_t mlen = 0;
	int bad;

	memset(x, 0, sizeof(*x));
	if (n == 0)
		return mig_data_decode(NULL, 0, d);
	rec_reader_init(&r, p, n);
	if (rec_get_u16(&r) != REP_RECORD_V1) {
		memset(d, 0, sizeof(*d));
		return -1;
	}
	m = rec_get_blob(&r, &mlen);
	bad = r.bad || mig_data_decode(m, mlen, d) != 0;
	free(m);
	if (bad)
		return -1;
	if (rep_data_get(&r, x) != 0) {
		mig_data_free(d);
		return -1;
	}
	return 0;
}

static int
rep_decode(struct vmjob *rt, const uint8_t *p, size_t n)
{
	return rep_decode_into(p, n, &rt->d, &rt->rep);
}

static int
keep_of(const struct job *j)
{
	return j->cfg != NULL && j->cfg->keep_history > 0 ? j->cfg->keep_history : REP_DEFAULT_KEEP;
}

static char *
point_name(const struct job *j, uint32_t cycle)
{
	char suffix[24];

	snprintf(suffix, sizeof(suffix), "rp%u", cycle);
	return sync_snapshot_name(j, suffix);
}

/* ---- a cycle's end ---- */

static void point_step(struct vmjob *rt);

static struct vmjob *
point_reply(struct vs_out *out, void *arg, const char *what)
{
	struct vmjob *rt = vmjob_of(token_reply(out, arg, what));

	if (rt != NULL)
		rt->op = NULL;
	return rt;
}

/* The restore point exists: it holds this cycle's changeIds. */
static void
point_made(struct vmjob *rt, const char *moref)
{
	struct sync_pass *p = &rt->pass;
	struct rep_point *pt;
	size_t i, n = rt->d.sync.ndisks;

	rt->rep.points = xreallocarray(rt->rep.points, rt->rep.npoints + 1, sizeof(*rt->rep.points));
	pt = &rt->rep.points[rt->rep.npoints++];
	memset(pt, 0, sizeof(*pt));
	pt->snap = xstrdup(moref);
	pt->cycle = rt->rep.cycles + 1;
	pt->time_ms = rt_now_ms();
	pt->read = rt->rep.cycle_read;
	pt->sent = rt->rep.cycle_sent;
	pt->ncids = n;
	pt->cids = xcalloc(n ? n : 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		/* The pass's changeIds, also when its snapshot is gone (pass_gone). */
		const char *cid = p->snap_cids != NULL ? p->snap_cids[i] : rt->d.sync.disks[i].pass_cid;

		pt->cids[i] = cid != NULL ? xstrdup(cid) : NULL;
	}
	rt->rep.landed = 2;
	rt->rep.point_asked_at = 0;
	job_log(rt->j, LOG_INFO, "restore point %u made on the target VM (%s): %llu bytes read, %llu written",
	    pt->cycle, moref, (unsigned long long)pt->read, (unsigned long long)pt->sent);
	vmjob_save(rt);
	point_step(rt);
}

static void
created(struct vs_out *out, void *arg)
{
	struct vmjob *rt = point_reply(out, arg, "making the restore point on the target VM");

	if (rt != NULL)
		point_made(rt, out->moref);
}

static void
asked_committed(void *arg)
{
	struct vmjob *rt = vmjob_of(token_take(arg));
	char *name, *desc;

	if (rt == NULL)
		return;
	name = point_name(rt->j, rt->rep.cycles + 1);
	desc = xasprintf("vmferry restore point %u of replication %s/%s", rt->rep.cycles + 1, rt->j->rule, rt->j->vm);
	rt->op = vs_create_snapshot(rt_dst_client(rt->j), rt->d.tgt.vm, name, desc, 0, 0, created, token_new(rt->j));
	free(name);
	free(desc);
}

static void
wait_cb(evutil_socket_t fd, short what, void *arg)
{
	point_step(arg);
}

/* The target VM as it is: the restore point found by its name (made
 * before a crash), waited for (asked for and maybe still coming), or
 * asked for. */
static void
target_read(struct vs_out *out, void *arg)
{
	struct vmjob *rt = point_reply(out, arg, "reading the target VM");
	char *name;
	int64_t age;
	size_t k;

	if (rt == NULL)
		return;
	name = point_name(rt->j, rt->rep.cycles + 1);
	for (k = 0; k < out->vm->nsnapshots; k++)
		if (str_eq(out->vm->snapshots[k].name, name)) {
			free(name);
			point_made(rt, out->vm->snapshots[k].moref);
			return;
		}
	free(name);
	age = rt_now_ms() - rt->rep.point_asked_at;
	if (rt->rep.point_asked_at != 0 && age >= 0 && age < TARGET_CREATE_SETTLE_S * 1000) {
		struct timeval tv = { 2, 0 };

		job_log(rt->j, LOG_INFO, "the restore point asked for %lld s ago is not there yet: waiting for it",
		    (long long)(age / 1000));
		if (rt->timer == NULL)
			rt->timer = evtimer_new(loop_base(), wait_cb, rt);
		evtimer_add(rt->timer, &tv);
		return;
	}
	rt->rep.point_asked_at = rt_now_ms();
	vmjob_save(rt);
	store_after_commit(asked_committed, token_new(rt->j));
}

static void
point_step(struct vmjob *rt)
{
	struct vs_client *dst = rt_dst_client(rt->j);

	if (rt->rep.landed == 1) {
		rt->op = vs_get_vm(dst, rt->d.tgt.vm, target_read, token_new(rt->j));
		return;
	}
	if (rt->rep.npoints > (size_t)keep_of(rt->j)) {
		char why[64];

		snprintf(why, sizeof(why), "(keep_history %d): consolidated into the next", keep_of(rt->j));
		rep_remove_point(rt, 0, why, point_step);
		return;
	}
	rt->land_then(&rt->pass);
}

/* Every disk is in the target: the restore point, then the retention. */
static void
rep_landed(struct vmjob *rt, void (*done)(struct sync_pass *p))
{
	rt->land_then = done;
	if (rt->rep.landed == 0) {
		rt->rep.landed = 1;
		rt->rep.landed_pass = rt->d.sync.pass;
		rt->rep.cycle_read = rt->pass.total;
		rt->rep.cycle_sent = rt->tgt.landed_bytes;
		for (size_t i = 0; i < rt->d.sync.ndisks; i++)
			if (target_in_place(&rt->tgt, i))
				rt->rep.cycle_sent = rt->pass.total; /* written as read */
		vmjob_save(rt);
	}
	point_step(rt);
}

/* From the second cycle on, the target's current disks are the empty
 * deltas of its latest restore point: the cycle goes there. */
static int
rep_land_top(const struct vmjob *rt)
{
	return rt->rep.npoints > 0;
}

static void
rep_transferred(struct sync_pass *p)
{
	struct vmjob *rt = vmjob_of(p->j);
	const struct cfg_rule *r = p->j->cfg;
	uint64_t read = rt->rep.cycle_read;

	rt->rep.cycles++;
	rt->rep.landed = 0;
	rt->rep.cycle_read = rt->rep.cycle_sent = 0;
	rt->d.full_done = 1;
	vmjob_save(rt);
	job_stat_success(p->j, read);
	job_progress(p->j, p->total, p->total, 0);
	job_log(p->j, LOG_INFO, "cycle %u finished: %llu bytes read; %zu restore points on the target", rt->rep.cycles,
	    (unsigned long long)read, rt->rep.npoints);
	if (r != NULL && r->options.auto_sync) {
		fsm_dispatch(p->j, REP_EV_CYCLE_DONE, NULL);
	} else {
		job_log(p->j, LOG_INFO, "auto_sync is off: the next cycle runs on `vmferryctl run`");
		fsm_dispatch(p->j, REP_EV_LAST_DONE, NULL);
	}
}

/* The cycle ends with the pass that landed: its changeIds recorded, as
 * the sync pass records them when it ends. */
static void
gone_pass_recorded(struct sync_pass *p)
{
	struct vmjob *rt = vmjob_of(p->j);
	size_t i;

	for (i = 0; i < rt->d.sync.ndisks; i++) {
		struct sync_disk *d = &rt->d.sync.disks[i];

		free(rt->d.change_ids[i]);
		rt->d.change_ids[i] = d->pass_cid != NULL ? xstrdup(d->pass_cid) : NULL;
		d->full = 0;
		free(d->prev_cid);
		d->prev_cid = NULL;
		d->prev_ckpt = 0;
	}
	rep_transferred(p);
}

/* The pass's snapshot is gone although the cycle's bytes are in the
 * target (landed): its removal at the cycle's end went through before a
 * crash could record it (or someone removed it).  The cycle ends with
 * that pass — its restore point made if it was not, the retention, its
 * changeIds recorded — instead of in a new pass, whose changes since
 * would be recorded without having landed (the landing is skipped once
 * landed) and never sent. */
static int
rep_pass_gone(struct vmjob *rt)
{
	if (rt->rep.landed == 0)
		return 0;
	job_log(rt->j, LOG_INFO, "cycle %u landed before its source snapshot went: it ends with what landed",
	    rt->rep.cycles + 1);
	rt->land_then = gone_pass_recorded;
	point_step(rt);
	return 1;
}

const struct vmjob_kind vmjob_replication = {
	.encode = rep_encode,
	.decode = rep_decode,
	.transferred = rep_transferred,
	.requery_event = REP_EV_REQUERY,
	.land_top = rep_land_top,
	.landed = rep_landed,
	.pass_gone = rep_pass_gone,
	.started = rep_started,
};

/* ---- admitted ---- */

int
rep_admit_event(const struct job *j)
{
	struct mig_data d;
	struct rep_data x;
	int later = 0;

	/* The target VM exists once a cycle finished: 创建新虚机 is the
	 * first cycle's (and the one of a first cycle cut before its end).
	 * An unreadable record goes there too, whose enter fails the job. */
	if (rep_decode_into(j->data, j->datalen, &d, &x) == 0) {
		later = x.cycles > 0 && d.tgt.vm != NULL;
		mig_data_free(&d);
		rep_data_free(&x);
	}
	return later ? REP_EV_NEXT_CYCLE : EV_ADMIT;
}

/* ---- show ---- */

json_t *
rep_details(const struct job *j)
{
	struct mig_data d;
	struct rep_data x;
	json_t *o, *pts;
	size_t k;

	if (rep_decode_into(j->data, j->datalen, &d, &x) != 0)
		return NULL;
	pts = json_array();
	for (k = 0; k < x.npoints; k++)
		json_array_append_new(pts, json_pack("{s:i,s:s?,s:I,s:I,s:I}", "point", (int)x.points[k].cycle, "snapshot",
		    x.points[k].snap, "time_ms", (json_int_t)x.points[k].time_ms, "bytes_read",
		    (json_int_t)x.points[k].read, "bytes_written", (json_int_t)x.points[k].sent));
	o = json_pack("{s:s?,s:i,s:I,s:i,s:o}", "target_vm", d.tgt.vm, "cycles", (int)x.cycles, "bytes",
	    (json_int_t)d.sync.bytes, "keep_history", j->cfg != NULL && j->cfg->keep_history > 0 ? j->cfg->keep_history
	                                                                                        : REP_DEFAULT_KEEP,
	    "points", pts);
	json_object_set_new(o, "target_disks", target_vias_json(&d.tgt));
	mig_data_free(&d);
	rep_data_free(&x);
	return o;
}
