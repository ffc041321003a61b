#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Backup jobs (see backup.h). */
#include "engine/jobs/backup.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drivers/repo.h"
#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/record.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"
#include "engine/jobs/backup_data.h"
#include "engine/jobs/backup_sink.h"
#include "engine/jobs/backup_steps.h"
#include "engine/jobs/copy.h"
#include "engine/jobs/instant.h"
#include "engine/jobs/job.h"
#include "engine/jobs/repos.h"
#include "engine/jobs/restore.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "engine/request.h"
#include "fsm/tables.h"

struct bak_step;

struct bak_rt {
	struct job *j;
	struct bak_data d;
	int bad_data;
	struct sync_pass pass;
	struct repo *repo;
	struct repo_writer *w;   /* the point being written, in this process */
	struct vs_op *op;
	struct work *work;       /* the worker step in flight */
	/* What checking_data found for the pass's snapshot checked_snap:
	 * per disk the parent's chunk ids when the disk is read against the
	 * parent (else NULL: zeros), the chunks stored already. */
	char *checked_snap;
	uint8_t (**base)[REPO_ID_LEN];
	uint8_t **done;
	size_t nchecked;
	int fresh;               /* ... and no copy used it since: the partial indexes are as read */
	void (*then)(struct bak_rt *rt);
	void (*land_done)(struct sync_pass *p);
	struct rst *rst;         /* a restore's runtime (restore.c) */
	char *src_host;          /* the source VM's host as the inventory named it */
};

static const char *
mode_name(int m)
{
	return repo_mode_name((enum repo_mode)m);
}

/* ---- the runtime ---- */

static struct bak_rt *
rt_of(struct job *j)
{
	return j != NULL ? j->priv : NULL;
}

static void
forget_checked(struct bak_rt *rt)
{
	size_t i;

	for (i = 0; i < rt->nchecked; i++) {
		free(rt->base[i]);
		free(rt->done[i]);
	}
	free(rt->base);
	free(rt->done);
	rt->base = NULL;
	rt->done = NULL;
	rt->nchecked = 0;
	free(rt->checked_snap);
	rt->checked_snap = NULL;
	rt->fresh = 0;
}

/* The point being written is given up (its chunks stay until gc). */
static void
drop_writer(struct bak_rt *rt)
{
	bak_abort_writer(rt->w);
	rt->w = NULL;
}

static void
stop_work(struct bak_rt *rt)
{
	sync_cancel(&rt->pass);
	rst_cancel(rt->rst);
	token_drop(vs_op_cancel(rt->op));
	rt->op = NULL;
	work_cancel(rt->work);
	rt->work = NULL;
}

static void
rt_free(void *p)
{
	struct bak_rt *rt = p;

	stop_work(rt);
	rst_free(rt->rst);
	free(rt->src_host);
	drop_writer(rt);
	forget_checked(rt);
	sync_free(&rt->pass);
	bak_data_free(&rt->d);
	free(rt);
}

static void
bak_cancel(struct job *j)
{
	if (j->priv != NULL)
		stop_work(j->priv);
}

static void
bak_config_changed(struct job *j)
{
	if (j->priv != NULL)
		sync_wake(&rt_of(j)->pass);
}

static void
set_record(struct bak_rt *rt)
{
	struct sbuf b;

	sbuf_init(&b);
	bak_data_put(&rt->d, &b);
	job_set_data(rt->j, b.data, b.len);
	sbuf_free(&b);
}

static void
save_job(struct job *j)
{
	set_record(j->priv);
	job_persist(j);
}

static void
save(struct bak_rt *rt)
{
	save_job(rt->j);
}

static char *
ids_path(struct job *j, size_t i, char **err)
{
	char name[32];
	int en = 0;

	snprintf(name, sizeof(name), "disk%zu.ids", i);
	return rt_staging_file(j, name, err, &en);
}

/* ---- what the sync pass asks of the kind ---- */

static const char *
base_cid(struct job *j, size_t i)
{
	struct bak_rt *rt = j->priv;

	if (rt->d.mode == REPO_FULL || i >= rt->d.nbase)
		return NULL;
	return rt->d.base_cids[i];
}

static struct disk *
open_sink(struct job *j, size_t i, char **err)
{
	struct bak_rt *rt = j->priv;
	struct bak_sink_params sp;
	struct disk *d;
	char *path, *e = NULL;

	if (rt->repo == NULL || i >= rt->nchecked) {
		*err = xasprintf("disk %zu: the repository was not checked for this pass", i);
		return NULL;
	}
	if ((path = ids_path(j, i, &e)) == NULL) {
		*err = xasprintf("node temp_dir cannot be written: %s", e);
		free(e);
		return NULL;
	}
	memset(&sp, 0, sizeof(sp));
	sp.repo = rt->repo;
	sp.capacity = rt->d.sync.disks[i].capacity;
	sp.areas = rt->pass.areas[i];
	sp.nareas = rt->pass.nareas[i];
	sp.base = (const uint8_t(*)[REPO_ID_LEN])rt->base[i];
	sp.done = rt->done[i];
	sp.ids_path = path;
	sp.stored = &rt->d.stored;
	d = bak_sink_open(&sp, err);
	free(path);
	return d;
}

/* The changeIds go into the point's manifest, not into the job. */
static void
record_cid(struct job *j, size_t i, const char *cid)
{
}

static void land(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p));

/* What a stopped pass wrote stays in the repository; a new pass starts
 * its partial indexes over (backup_sink.h), so no earlier bytes count. */
static int
keeps_partial(struct job *j, size_t i)
{
	return 1;
}

static const struct sync_kind_ops bak_sync_ops = {
	.save = save_job,
	.base_cid = base_cid,
	.open_sink = open_sink,
	.record = record_cid,
	.land = land,
	.keeps_partial = keeps_partial,
};

static struct bak_rt *
rt_get(struct job *j)
{
	struct bak_rt *rt = j->priv;
	struct sync_settings *set;
	size_t need;

	if (rt == NULL) {
		rt = xcalloc(1, sizeof(*rt));
		rt->j = j;
		sync_init(&rt->pass, j, &rt->d.sync, &sync_source_vsphere, &bak_sync_ops);
		j->priv = rt;
		j->free_priv = rt_free;
	}
	j->cancel = bak_cancel;
	j->config_changed = bak_config_changed;
	bak_data_free(&rt->d);
	rt->bad_data = bak_data_get(j->data, j->datalen, &rt->d) != 0;
	set = &rt->pass.set;
	rt_sync_settings(j, set);
	/* A chunk's writes are done only once it is complete and sealed:
	 * what the copier keeps must hold two chunks and the requests that
	 * straddle them.  That is the appliance's memory; the host owes
	 * only the reads of its share of host_buffer_cap (copy_params). */
	need = set->chunk > 0 ? (3 * (size_t)REPO_CHUNK_SIZE) / set->chunk + 2 : 0;
	if ((size_t)set->inflight > need)
		need = (size_t)set->inflight;
	set->hold = need * set->chunk;
	sync_refresh(&rt->pass);
	return rt;
}

static struct bak_rt *
rt_enter(struct job *j)
{
	struct bak_rt *rt = rt_get(j);

	if (rt_unreadable(j, rt->bad_data) || j->cfg == NULL)
		return NULL;
	return rt;
}

/* rt_enter for the states that use the repository: after a restart the
 * job resumes in them without passing preparing, which opened it. */
static struct bak_rt *
rt_enter_repo(struct job *j)
{
	struct bak_rt *rt = rt_enter(j);
	char *err = NULL;

	if (rt == NULL || rt->repo != NULL)
		return rt;
	if ((rt->repo = repos_get(j->cfg, &err)) == NULL) {
		rt_fail(j, "%s", err);
		free(err);
		return NULL;
	}
	return rt;
}

/* ---- worker steps ----
 *
 * One struct carries a step's inputs and results; fn runs on a worker
 * and touches only the step, done runs on the loop when the job's work
 * is still the one that asked. */


static void
step_run(void *arg)
{
	struct bak_step *s = arg;

	s->fn(s);
}

static void
step_done(void *arg)
{
	struct bak_step *s = arg;
	struct job *j = token_take(s->t);
	struct bak_rt *rt = rt_of(j);

	s->t = NULL;
	if (rt == NULL)
		return;
	rt->work = NULL;
	s->done(rt, s);
}

static void
step_release(void *arg)
{
	struct bak_step *s = arg;

	if (s->t != NULL)
		token_take(s->t);
	bak_step_free(s);
}

static struct bak_step *
step_new(struct bak_rt *rt, void (*fn)(struct bak_step *), void (*done)(struct bak_rt *, struct bak_step *))
{
	struct bak_step *s = xcalloc(1, sizeof(*s));

	s->repo = rt->repo;
	s->rule = xstrdup(rt->j->rule);
	s->vm = xstrdup(rt->j->vm);
	s->fn = fn;
	s->done = done;
	s->seq = rt->d.seq;
	s->parent = rt->d.parent;
	s->mode = rt->d.mode;
	s->start = rt->d.start;
	s->pass = rt->d.sync.pass;
	return s;
}

static void
step_go(struct bak_rt *rt, struct bak_step *s)
{
	s->t = token_new(rt->j);
	work_cancel(rt->work);
	rt->work = work_submit(step_run, step_done, step_release, s);
}


static void
adopt_points(struct bak_rt *rt, struct bak_step *s)
{
	size_t i, k;

	/* What verify found stays until a verify finds it sound. */
	for (i = 0; i < s->npoints; i++)
		for (k = 0; k < rt->d.npoints; k++)
			if (rt->d.points[k].seq == s->points[i].seq)
				s->points[i].damaged = rt->d.points[k].damaged;
	free(rt->d.points);
	rt->d.points = s->points;
	rt->d.npoints = s->npoints;
	s->points = NULL;
	s->npoints = 0;
}

/* ---- starting: rest in 空闲, or go on with the point in progress ---- */

static void
start_given_up(struct job *j, const char *problem)
{
	struct bak_rt *rt = rt_of(j);

	save(rt);
	if (problem != NULL) {
		/* Copied: entering failed frees the runtime that holds it. */
		char *why = xstrdup(problem);

		fsm_dispatch(j, EV_FAIL, why);
		free(why);
		return;
	}
	bak_enter_starting(j, EV_START);
}

void
bak_enter_starting(struct job *j, int event)
{
	struct bak_rt *rt;

	job_reset_backoff(j, event);
	if (j->cfg == NULL) {
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return;
	}
	if ((rt = rt_enter(j)) == NULL)
		return;
	if (rst_given_up(&rt->d)) {
		/* A restore given up whose new VM could not be removed: again. */
		rst_give_up(j, &rt->d, start_given_up);
		return;
	}
	if (rt->d.restore != NULL) {
		/* A restore lost its peer: it goes on from its checkpoint. */
		job_log(j, LOG_INFO, "the restore that lost its peer goes on");
		fsm_dispatch(j, BAK_EV_RESTORE, NULL);
		return;
	}
	if (rt->d.stage != BAK_STAGE_NONE) {
		/* A point was in progress (a lost peer, a restart): it goes on. */
		job_log(j, LOG_INFO, "restore point %llu (%s) was in progress: it goes on",
		    (unsigned long long)rt->d.seq, mode_name(rt->d.mode));
		j->run_pending = 1;
	} else if (event == EV_PEER_BACK) {
		/* 未知 comes only from a run's states: the run goes on. */
		job_log(j, LOG_INFO, "the run that lost its peer goes on");
		j->run_pending = 1;
	}
	fsm_dispatch(j, EV_STARTED, NULL);
}

/* ---- preparing: the VM, the repository, the point ---- */


static void
chosen(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;
	size_t i;

	if (s->rc != 0) {
		rt_fail(j, "%s", s->err);
		return;
	}
	adopt_points(rt, s);
	if (rt->d.force_full)
		job_log(j, LOG_INFO, "the VM was written by a restore since its last point, unseen by its change "
		                     "tracking: this point is a full");
	rt->d.force_full = 0;
	if (s->next_mode == -2)
		job_log(j, LOG_INFO, "no %s point to read against yet: this point is a full",
		    rt->d.next_mode == REPO_DIFFERENTIAL ? "full" : "earlier");
	rt->d.stage = BAK_STAGE_CHOSEN;
	rt->d.seq = s->seq;
	rt->d.mode = (uint8_t)s->mode;
	rt->d.parent = s->parent;
	rt->d.start = (int64_t)time(NULL);
	rt->d.stored = 0;
	rt->d.next_mode = BAK_MODE_ANY;
	/* A new point's pass owes nothing to an earlier one. */
	for (i = 0; i < rt->d.sync.ndisks; i++)
		sync_disk_restart(&rt->d.sync.disks[i], 0);
	forget_checked(rt);
	if (rt->d.parent != 0)
		job_log(j, LOG_INFO, "restore point %llu: %s, read against point %llu", (unsigned long long)rt->d.seq,
		    mode_name(rt->d.mode), (unsigned long long)rt->d.parent);
	else
		job_log(j, LOG_INFO, "restore point %llu: full", (unsigned long long)rt->d.seq);
	save(rt);
	fsm_dispatch(j, EV_OK, NULL);
}

static void
source_found(struct job *j, const struct vs_vm *vm)
{
	struct bak_rt *rt = rt_enter(j);
	struct bak_step *s;
	char *err = NULL;

	if (rt == NULL)
		return;
	free(rt->d.sync.src_vm);
	rt->d.sync.src_vm = xstrdup(vm->moref);
	free(rt->d.sync.src_dc);
	rt->d.sync.src_dc = vm->datacenter ? xstrdup(vm->datacenter) : NULL;
	free(rt->src_host);
	rt->src_host = vm->host_name ? xstrdup(vm->host_name) : NULL;
	if ((rt->repo = repos_get(j->cfg, &err)) == NULL) {
		rt_fail(j, "%s", err);
		free(err);
		return;
	}
	if (rt->d.stage != BAK_STAGE_NONE) {
		if (rt->d.sync.snap == NULL) {
			/* Its snapshot is gone (a stop, a failure): the pass starts
			 * over from a new one, still against the same parent. */
			size_t i;

			for (i = 0; i < rt->d.sync.ndisks; i++)
				sync_disk_restart(&rt->d.sync.disks[i], rt->d.sync.disks[i].full);
		}
		save(rt);
		fsm_dispatch(j, EV_OK, NULL);
		return;
	}
	s = step_new(rt, bak_choose_fn, chosen);
	s->next_mode = rt->d.force_full ? REPO_FULL : rt->d.next_mode;
	step_go(rt, s);
}

static void
prepare_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = token_take(arg);

	if (j != NULL && rt_enter(j) != NULL)
		rt_find_source_then(j, 0, source_found);
}

void
bak_enter_preparing(struct job *j, int event)
{
	if (event == EV_ADMIT)
		job_progress(j, 0, 0, 0);
	/* From the loop, next turn (the unit tests run the table without one). */
	if (loop_base() != NULL)
		event_base_once(loop_base(), -1, EV_TIMEOUT, prepare_cb, token_new(j), NULL);
}

/* ---- saving_config: the VM's configuration, each disk's base ---- */


/* The parent cannot be read (damaged, or deleted by hand): this point is
 * a full, so that backups go on. */
static void
no_parent(struct bak_rt *rt, const char *why)
{
	size_t i;

	job_log(rt->j, LOG_WARN, "point %llu cannot be read against point %llu (%s): it is a full",
	    (unsigned long long)rt->d.seq, (unsigned long long)rt->d.parent, why);
	rt->d.mode = REPO_FULL;
	rt->d.parent = 0;
	for (i = 0; i < rt->d.nbase; i++) {
		free(rt->d.base_cids[i]);
		rt->d.base_cids[i] = NULL;
	}
}

static void
bases_read(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;
	size_t i, k;

	if (s->rc != 0) {
		no_parent(rt, s->err);
		save(rt);
		fsm_dispatch(j, EV_OK, NULL);
		return;
	}
	for (i = 0; i < rt->d.sync.ndisks; i++) {
		const struct sync_disk *d = &rt->d.sync.disks[i];

		free(rt->d.base_cids[i]);
		rt->d.base_cids[i] = NULL;
		for (k = 0; s->manifest != NULL && k < s->manifest->ndisks; k++) {
			const struct repo_disk *pd = &s->manifest->disks[k];

			if ((uint32_t)pd->key != d->key)
				continue;
			if (pd->capacity != d->capacity)
				job_log(j, LOG_INFO, "disk %zu: its size changed since point %llu (%llu to %llu bytes): "
				                     "read whole", i, (unsigned long long)rt->d.parent,
				    (unsigned long long)pd->capacity, (unsigned long long)d->capacity);
			else if (pd->change_id != NULL)
				rt->d.base_cids[i] = xstrdup(pd->change_id);
			break;
		}
		if (k == (s->manifest ? s->manifest->ndisks : 0))
			job_log(j, LOG_INFO, "disk %zu is new since point %llu: read whole", i,
			    (unsigned long long)rt->d.parent);
	}
	save(rt);
	fsm_dispatch(j, EV_OK, NULL);
}

static void
config_read(struct vs_out *out, void *arg)
{
	struct bak_rt *rt = rt_of(token_reply(out, arg, "reading the source VM's configuration"));
	struct bak_step *s;
	char *dc;

	if (rt == NULL)
		return;
	rt->op = NULL;
	dc = rt->d.sync.src_dc != NULL ? xstrdup(rt->d.sync.src_dc) : NULL;
	sync_state_adopt(&rt->d.sync, out->vm);
	if (rt->d.sync.src_dc == NULL) {
		/* A VM read alone does not say its datacenter; the inventory did. */
		rt->d.sync.src_dc = dc;
		dc = NULL;
	}
	free(dc);
	bak_data_size(&rt->d);
	/* Where it ran, for a restore to a new VM (a VM read alone names
	 * neither its host nor its datacenter). */
	if (out->vm->host_name == NULL && rt->src_host != NULL)
		out->vm->host_name = xstrdup(rt->src_host);
	if (out->vm->datacenter == NULL && rt->d.sync.src_dc != NULL)
		out->vm->datacenter = xstrdup(rt->d.sync.src_dc);
	if (rt_save_vm_config(rt->j, out->vm) != 0)
		return;
	if (rt->d.parent == 0 || rt->d.mode == REPO_FULL) {
		save(rt);
		fsm_dispatch(rt->j, EV_OK, NULL);
		return;
	}
	s = step_new(rt, bak_manifest_fn, bases_read);
	step_go(rt, s);
}

void
bak_enter_saving_config(struct job *j, int event)
{
	struct bak_rt *rt = rt_enter_repo(j);

	if (rt == NULL)
		return;
	rt->op = vs_get_vm(rt_src_client(j), rt->d.sync.src_vm, config_read, token_new(j));
}

/* ---- querying_changes: the snapshot and the areas ---- */

static void
queried(struct sync_pass *p, int gone)
{
	size_t k, n = 0;

	for (k = 0; k < p->st->ndisks; k++)
		n += p->nareas[k];
	job_log(p->j, LOG_INFO, "sync pass %u: %llu bytes in %zu areas to read", p->st->pass,
	    (unsigned long long)p->total, n);
	fsm_dispatch(p->j, EV_OK, NULL);
}

void
bak_enter_querying_changes(struct job *j, int event)
{
	struct bak_rt *rt = rt_enter(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 1, queried);
}

/* ---- checking_data: the point opened, the parent's chunks checked ---- */


/* Sorted, non-overlapping union of two lists of extents. */
static struct vs_extent *
areas_union(const struct vs_extent *a, size_t na, const struct vs_extent *b, size_t nb, size_t *nout)
{
	struct vs_extent *out = xcalloc(na + nb ? na + nb : 1, sizeof(*out));
	size_t i = 0, k = 0, n = 0;

	while (i < na || k < nb) {
		const struct vs_extent *e = (k >= nb || (i < na && a[i].start <= b[k].start)) ? &a[i++] : &b[k++];

		if (n > 0 && e->start <= out[n - 1].start + out[n - 1].length) {
			uint64_t end = e->start + e->length;

			if (end > out[n - 1].start + out[n - 1].length)
				out[n - 1].length = end - out[n - 1].start;
		} else {
			out[n++] = *e;
		}
	}
	*nout = n;
	return out;
}

/* The checkpoint of a disk may not pass a chunk that is not stored
 * while some of this pass's bytes in it lie below the checkpoint. */
static void
lower_checkpoint(struct bak_rt *rt, size_t i)
{
	struct sync_disk *d = &rt->d.sync.disks[i];
	const struct vs_extent *a = rt->pass.areas[i];
	size_t n = rt->pass.nareas[i], k;
	uint64_t ck = d->checkpoint == SYNC_DISK_DONE ? d->capacity : d->checkpoint;

	for (k = 0; k < n && a[k].start < ck; k++) {
		uint64_t c, first = a[k].start / REPO_CHUNK_SIZE, last = (a[k].start + a[k].length - 1) / REPO_CHUNK_SIZE;

		for (c = first; c <= last && c * REPO_CHUNK_SIZE < ck; c++) {
			if (rt->done[i][c])
				continue;
			if (d->checkpoint == SYNC_DISK_DONE || c * REPO_CHUNK_SIZE < d->checkpoint) {
				job_log(rt->j, LOG_INFO, "disk %zu: chunk %llu is not in the repository: resuming at "
				                         "offset %llu", i, (unsigned long long)c,
				    (unsigned long long)(c * REPO_CHUNK_SIZE));
				d->checkpoint = c * REPO_CHUNK_SIZE;
				return;
			}
		}
	}
}

static void check(struct bak_rt *rt, void (*then)(struct bak_rt *rt));

static void
recheck(struct sync_pass *p, int gone)
{
	struct bak_rt *rt = rt_of(p->j);

	if (gone) {
		rt_lost(p->j, "the backup's snapshot is gone; the point starts over from a new one");
		return;
	}
	check(rt, rt->then);
}

static void
checked(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;
	struct sync_pass *p = &rt->pass;
	size_t i, k;

	if (s->made_writer) {
		rt->w = s->w;
		s->made_writer = 0;
	}
	if (s->parent_bad) {
		/* The point was opened against that parent: made again as a
		 * full, its areas asked for again (every allocated area).
		 * Chunks stored so far hold the disk's bytes whatever the mode:
		 * they stay in the partial index. */
		drop_writer(rt);
		forget_checked(rt);
		no_parent(rt, s->err);
		save(rt);
		sync_forget_prepared(p);
		sync_prepare(p, 0, recheck);
		return;
	}
	if (s->rc != 0) {
		rt_fail(j, "checking the repository: %s", s->err);
		return;
	}
	forget_checked(rt);
	if (s->existed) {
		/* Committed before a crash that lost the job's record of it:
		 * nothing is left to copy; the pass ends as after a commit. */
		job_log(j, LOG_INFO, "restore point %llu was complete in the repository before the restart",
		    (unsigned long long)rt->d.seq);
		rt->d.stage = BAK_STAGE_COMMITTED;
		for (i = 0; i < rt->d.sync.ndisks; i++)
			rt->d.sync.disks[i].checkpoint = SYNC_DISK_DONE;
		sync_areas_changed(p);
		save(rt);
		rt->then(rt);
		return;
	}
	rt->nchecked = s->ndisks;
	rt->base = xcalloc(s->ndisks ? s->ndisks : 1, sizeof(*rt->base));
	rt->done = xcalloc(s->ndisks ? s->ndisks : 1, sizeof(*rt->done));
	for (i = 0; i < s->ndisks; i++) {
		struct step_disk *d = &s->disks[i];

		rt->base[i] = d->base;
		rt->done[i] = d->done;
		d->base = NULL;
		d->done = NULL;
		if (d->nmissing > 0) {
			struct vs_extent *add = xcalloc(d->nmissing, sizeof(*add)), *u;
			size_t nu;

			for (k = 0; k < d->nmissing; k++) {
				add[k].start = d->missing[k] * REPO_CHUNK_SIZE;
				add[k].length = repo_chunk_len(d->capacity, d->missing[k]);
			}
			job_log(j, LOG_WARN, "disk %zu: %zu chunks of point %llu are not in the repository (set aside "
			                     "as damaged, or lost): read from the source again", i, d->nmissing,
			    (unsigned long long)rt->d.parent);
			u = areas_union(p->areas[i], p->nareas[i], add, d->nmissing, &nu);
			free(add);
			free(p->areas[i]);
			p->areas[i] = u;
			p->nareas[i] = nu;
		}
		lower_checkpoint(rt, i);
	}
	rt->checked_snap = xstrdup(rt->d.sync.snap);
	rt->fresh = 1;
	sync_areas_changed(p);
	save(rt);
	rt->then(rt);
}

static void
check(struct bak_rt *rt, void (*then)(struct bak_rt *rt))
{
	struct bak_step *s;
	size_t i;
	char *e = NULL;
	int en = 0;

	rt->then = then;
	/* Straight from 检查数据 to 执行中: what it found still holds.  After
	 * a copy (stopped by a lost peer, say) the partial indexes moved on
	 * and are read again. */
	if (rt->fresh && rt->w != NULL && rt->checked_snap != NULL && str_eq(rt->checked_snap, rt->d.sync.snap) &&
	    rt->nchecked == rt->d.sync.ndisks) {
		then(rt);
		return;
	}
	s = step_new(rt, bak_check_fn, checked);
	s->w = rt->w;
	s->config_path = rt_staging_file(rt->j, "vm-config.json", &e, &en);
	free(e);
	s->ndisks = rt->d.sync.ndisks;
	s->disks = xcalloc(s->ndisks ? s->ndisks : 1, sizeof(*s->disks));
	for (i = 0; i < s->ndisks; i++) {
		const struct sync_disk *d = &rt->d.sync.disks[i];

		s->disks[i].key = d->key;
		s->disks[i].capacity = d->capacity;
		/* Read against the parent: changes since its changeId, the rest
		 * of each chunk from its chunks. */
		s->disks[i].against_parent = rt->pass.set.fast_transfer && base_cid(rt->j, i) != NULL && !d->full;
		if ((s->disks[i].ids_path = ids_path(rt->j, i, &e)) == NULL) {
			rt_lost(rt->j, "node temp_dir cannot be written: %s", e);
			free(e);
			step_release(s);
			return;
		}
	}
	step_go(rt, s);
}

static void
check_ok(struct bak_rt *rt)
{
	fsm_dispatch(rt->j, EV_OK, NULL);
}

static void
check_prepared(struct sync_pass *p, int gone)
{
	struct bak_rt *rt = rt_of(p->j);

	if (gone) {
		rt_lost(p->j, "the backup's snapshot is gone; the point starts over from a new one");
		return;
	}
	check(rt, check_ok);
}

void
bak_enter_checking_data(struct job *j, int event)
{
	struct bak_rt *rt = rt_enter_repo(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 0, check_prepared);
}

/* ---- transferring: copy, commit, retention ---- */

static void retained(struct bak_rt *rt, struct bak_step *s);


/* The points of the job that instant recoveries serve: a step that
 * deletes points keeps them (their chunks serve a running VM). */
static void
keep_served(struct job *j, struct bak_step *s)
{
	char *key = NULL, *dir = j->cfg != NULL ? repos_dir_of(j->cfg, &key) : NULL;

	if (dir != NULL)
		s->nkeep = instant_points(dir, j->rule, j->vm, &s->keep);
	free(dir);
	free(key);
}

static void
point_done(struct bak_rt *rt)
{
	struct job *j = rt->j;
	const struct cfg_rule *r = j->cfg;
	struct bak_step *s = step_new(rt, bak_retain_fn, retained);

	s->retention = r != NULL && r->retention > 0 ? r->retention : 7;
	keep_served(j, s);
	step_go(rt, s);
}

static void
retained(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;
	const struct cfg_rule *r = j->cfg;
	uint64_t read = 0;
	size_t i;

	if (s->rc != 0) {
		/* The point is complete; only its listing failed. */
		job_log(j, LOG_WARN, "listing the repository's points: %s", s->err);
	} else {
		adopt_points(rt, s);
	}
	if (s->warn != NULL)
		job_log(j, LOG_WARN, "%s", s->warn);
	for (i = 0; i < s->ndeleted; i++)
		job_log(j, LOG_INFO, "retention %d: point %llu deleted", s->retention, (unsigned long long)s->deleted[i]);
	for (i = 0; i < s->nkept; i++)
		job_log(j, LOG_INFO, "retention %d: point %llu kept: an instant recovery serves it", s->retention,
		    (unsigned long long)s->kept[i]);
	if (s->gc_ran)
		job_log(j, LOG_INFO, "garbage collection: %llu chunks in use, %llu freed (%llu bytes)",
		    (unsigned long long)s->gc.chunks_used, (unsigned long long)s->gc.chunks_freed,
		    (unsigned long long)s->gc.bytes_freed);
	for (i = 0; i < rt->d.npoints; i++)
		if (rt->d.points[i].seq == rt->d.seq)
			read = rt->d.points[i].read;
	rt->d.stage = BAK_STAGE_NONE;
	for (i = 0; i < rt->d.sync.ndisks; i++) {
		char *path, *e = NULL;

		if ((path = ids_path(j, i, &e)) != NULL)
			unlink(path);
		free(path);
		free(e);
	}
	forget_checked(rt);
	set_record(rt);
	job_stat_success(j, read);
	if (r != NULL && r->schedule.nentries == 1 && r->schedule.entries[0].type == SCHED_ONCE)
		fsm_dispatch(j, BAK_EV_LAST_DONE, NULL);
	else
		fsm_dispatch(j, BAK_EV_CYCLE_DONE, NULL);
}


static void
committed(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;

	rt->w = NULL;
	if (s->rc != 0) {
		rt_fail(j, "committing restore point %llu: %s", (unsigned long long)rt->d.seq, s->err);
		return;
	}
	rt->d.stage = BAK_STAGE_COMMITTED;
	if (!s->existed)
		job_log(j, LOG_INFO, "restore point %llu complete (%s): %llu bytes read, %llu bytes stored",
		    (unsigned long long)rt->d.seq, mode_name(rt->d.mode), (unsigned long long)s->bytes_read,
		    (unsigned long long)s->stored);
	save(rt);
	rt->then(rt);
}

static void
landed_then(struct bak_rt *rt)
{
	rt->land_done(&rt->pass);
}

/* Every disk is in the repository: the point's indexes and manifest. */
static void
land(struct job *j, struct sync_pass *p, void (*done)(struct sync_pass *p))
{
	struct bak_rt *rt = j->priv;
	struct bak_step *s;
	size_t i;

	rt->land_done = done;
	rt->then = landed_then;
	if (rt->d.stage == BAK_STAGE_COMMITTED) {
		done(p);
		return;
	}
	s = step_new(rt, bak_commit_fn, committed);
	s->w = rt->w;
	rt->w = NULL;
	s->stored = rt->d.stored;
	s->ndisks = rt->d.sync.ndisks;
	s->disks = xcalloc(s->ndisks ? s->ndisks : 1, sizeof(*s->disks));
	for (i = 0; i < s->ndisks; i++) {
		const struct sync_disk *d = &rt->d.sync.disks[i];
		const char *cid = p->snap_cids != NULL ? p->snap_cids[i] : d->pass_cid;
		char *e = NULL;
		uint64_t n = repo_disk_chunks(d->capacity);

		s->disks[i].key = d->key;
		s->disks[i].capacity = d->capacity;
		s->disks[i].cid = cid != NULL ? xstrdup(cid) : NULL;
		s->disks[i].file = d->src_file != NULL ? xstrdup(d->src_file) : NULL;
		if (i < rt->nchecked && rt->base[i] != NULL) {
			s->disks[i].base = xcalloc(n ? n : 1, REPO_ID_LEN);
			memcpy(s->disks[i].base, rt->base[i], n * REPO_ID_LEN);
		}
		s->bytes_read += copy_bytes_from(p->areas[i], p->nareas[i], 0);
		if ((s->disks[i].ids_path = ids_path(j, i, &e)) == NULL) {
			rt_lost(j, "node temp_dir cannot be written: %s", e);
			free(e);
			rt->w = s->w;
			s->w = NULL;
			step_release(s);
			return;
		}
	}
	step_go(rt, s);
}

static void
pass_finished(struct sync_pass *p)
{
	point_done(rt_of(p->j));
}

static void
copy_checked(struct bak_rt *rt)
{
	rt->fresh = 0;
	sync_copy(&rt->pass, pass_finished);
}

static void
transfer_prepared(struct sync_pass *p, int gone)
{
	struct bak_rt *rt = rt_of(p->j);

	if (gone && rt->d.stage == BAK_STAGE_COMMITTED) {
		/* Committed, and its snapshot went before a restart. */
		point_done(rt);
		return;
	}
	if (gone) {
		rt_lost(p->j, "the backup's snapshot is gone; the point starts over from a new one");
		return;
	}
	if (rt->d.stage == BAK_STAGE_COMMITTED) {
		sync_copy(p, pass_finished);
		return;
	}
	check(rt, copy_checked);
}

void
bak_enter_transferring(struct job *j, int event)
{
	struct bak_rt *rt = rt_enter_repo(j);

	if (rt != NULL)
		sync_prepare(&rt->pass, 0, transfer_prepared);
}

/* ---- stop, failure, delete ---- */

/* The point in progress is given up: the next run makes a new one. */
static void
forget_point(struct bak_rt *rt)
{
	size_t i;

	drop_writer(rt);
	forget_checked(rt);
	if (rt->d.stage == BAK_STAGE_CHOSEN) {
		job_log(rt->j, LOG_INFO, "restore point %llu given up; the next run makes a new one",
		    (unsigned long long)rt->d.seq);
		rt->d.stage = BAK_STAGE_NONE;
	}
	for (i = 0; i < rt->d.sync.ndisks; i++)
		rt->d.sync.disks[i].checkpoint = 0;
}

static void
stopped_given_up(struct job *j, const char *problem)
{
	struct bak_rt *rt = rt_of(j);
	char *why = problem != NULL ? xstrdup(problem) : NULL; /* stopped frees the runtime that holds it */

	forget_point(rt);
	save(rt);
	fsm_dispatch(j, EV_OK, why);
	free(why);
}

/* A restore in progress is given up first (a new VM it made removed). */
static void
stopped(struct sync_pass *p)
{
	rst_give_up(p->j, &rt_of(p->j)->d, stopped_given_up);
}

void
bak_enter_stopping(struct job *j, int event)
{
	struct bak_rt *rt = rt_get(j);

	sync_abandon(&rt->pass, stopped);
}

static void
failed_given_up(struct job *j, const char *problem)
{
	struct bak_rt *rt = rt_of(j);
	char *why;

	forget_point(rt);
	if (problem != NULL && j->error != NULL && strstr(j->error, problem) == NULL) {
		why = xasprintf("%s; %s", j->error, problem);
		job_set_error(j, why);
		free(why);
	}
	save(rt);
}

static void
failed_cleaned(struct sync_pass *p)
{
	struct bak_rt *rt = rt_of(p->j);

	if (rst_given_up(&rt->d)) {
		/* Its removal was tried already (by the failure, or by the
		 * start that failed): the next start or delete tries again. */
		failed_given_up(p->j, NULL);
		return;
	}
	rst_give_up(p->j, &rt->d, failed_given_up);
}

void
bak_enter_failed(struct job *j, int event)
{
	struct bak_rt *rt = rt_get(j);

	if (rt->bad_data)
		return;
	if (rt->d.sync.snap != NULL)
		job_log(j, LOG_INFO, "removing snapshot %s of the failed backup from the source", rt->d.sync.snap);
	sync_abandon(&rt->pass, failed_cleaned);
}


static void
data_deleted(struct bak_rt *rt, struct bak_step *s)
{
	struct job *j = rt->j;

	if (s->rc != 0)
		job_log(j, LOG_WARN, "delete_backup_data_on_rule_delete: %s", s->err);
	else
		job_log(j, LOG_INFO, "delete_backup_data_on_rule_delete: %zu points deleted, %llu chunks freed",
		    s->ndeleted, (unsigned long long)s->gc.chunks_freed);
	for (size_t i = 0; i < s->nkept; i++)
		job_log(j, LOG_WARN, "delete_backup_data_on_rule_delete: point %llu kept: an instant recovery serves it",
		    (unsigned long long)s->kept[i]);
	rt_staging_remove(j);
	fsm_dispatch(j, EV_CLEANED, NULL);
}

static void
delete_given_up(struct job *j, const char *problem)
{
	struct bak_rt *rt = rt_of(j);
	const struct cfg_rule *r = j->cfg;
	char *err = NULL;

	if (problem != NULL)
		job_log(j, LOG_WARN, "the job is deleted all the same: that VM stays (remove it by hand)");
	forget_point(rt);
	if (r != NULL && r->options.delete_backup_data_on_rule_delete) {
		if ((rt->repo = repos_get(r, &err)) != NULL) {
			struct bak_step *s = step_new(rt, bak_delete_fn, data_deleted);

			keep_served(j, s);
			step_go(rt, s);
			return;
		}
		job_log(j, LOG_WARN, "delete_backup_data_on_rule_delete: %s", err);
		free(err);
	}
	if (r != NULL)
		rt_staging_remove(j);
	fsm_dispatch(j, EV_CLEANED, NULL);
}

static void
delete_after_snapshot(struct sync_pass *p)
{
	rst_give_up(p->j, &rt_of(p->j)->d, delete_given_up);
}

void
bak_enter_deleting(struct job *j, int event)
{
	struct bak_rt *rt = rt_get(j);

	sync_abandon(&rt->pass, delete_after_snapshot);
}

/* ---- what restore.c shares ---- */

struct bak_data *
bak_data_of(struct job *j, struct rst ***rst)
{
	struct bak_rt *rt = rt_get(j);

	if (rst != NULL)
		*rst = &rt->rst;
	return rt->bad_data ? NULL : &rt->d;
}

void
bak_save(struct job *j)
{
	save_job(j);
}

/* ---- verify's findings ---- */

void
bak_mark_damaged(struct job *j, uint64_t only, const uint64_t *seqs, size_t n)
{
	/* The runtime's data is the newest (a running point's counts). */
	struct bak_rt *rt = j->priv != NULL ? j->priv : rt_get(j);
	size_t i, k;

	if (rt->bad_data)
		return;
	for (i = 0; i < rt->d.npoints; i++) {
		struct bak_point *pt = &rt->d.points[i];

		if (only != 0 && pt->seq != only)
			continue;
		pt->damaged = 0;
		for (k = 0; k < n; k++)
			pt->damaged |= seqs[k] == pt->seq;
	}
	save(rt);
}

/* ---- commands ---- */

static int
mode_of(const char *name)
{
	if (str_eq(name, "full"))
		return REPO_FULL;
	if (str_eq(name, "incremental"))
		return REPO_INCREMENTAL;
	if (str_eq(name, "differential"))
		return REPO_DIFFERENTIAL;
	return -1;
}

void
bak_before_run(struct job *j, int mode)
{
	struct bak_rt *rt = rt_get(j);

	if (rt->bad_data || !(job_flags(j) & FSM_F_RESTING))
		return;
	rt->d.next_mode = mode < 0 ? BAK_MODE_ANY : (uint8_t)mode;
	set_record(rt);
}

int
bak_before_command(struct job *j, int event, const struct request *req, char **why)
{
	int mode = -1;

	if (event == BAK_EV_RESTORE) {
		struct bak_rt *rt = rt_get(j);

		if (rt->bad_data)
			return 0;
		if (!(job_flags(j) & FSM_F_RESTING) || j->fsm.state == BAK_FAILED) {
			*why = xasprintf("%s is %s (%s); restore is not possible in that state", j->vm,
			    job_state_info(j)->id, job_state_info(j)->label_zh);
			return -1;
		}
		if (rst_ask(j, &rt->d, req, why) != 0)
			return -1;
		set_record(rt);
		return 0;
	}
	if (event != BAK_EV_RUN)
		return 0;
	if (req != NULL && req->mode != NULL && (mode = mode_of(req->mode)) < 0) {
		*why = xasprintf("run: mode %s is not full, incremental or differential", req->mode);
		return -1;
	}
	bak_before_run(j, mode);
	return 0;
}

json_t *
bak_details(const struct job *j)
{
	struct bak_data d;
	json_t *pts, *o, *rst;
	size_t i;

	if (bak_data_get(j->data, j->datalen, &d) != 0)
		return NULL;
	pts = json_array();
	for (i = 0; i < d.npoints; i++) {
		const struct bak_point *pt = &d.points[i];

		json_array_append_new(pts, json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "point", (json_int_t)pt->seq,
		                               "mode", mode_name(pt->mode), "parent", (json_int_t)pt->parent, "time_ms",
		                               (json_int_t)pt->end * 1000, "start", (json_int_t)pt->start,
		                               "bytes_read", (json_int_t)pt->read, "bytes_stored", (json_int_t)pt->stored,
		                               "state", pt->damaged ? "damaged" : "complete"));
	}
	o = json_pack("{s:o}", "points", pts);
	if ((rst = rst_details(&d)) != NULL)
		json_object_set_new(o, "restore", rst);
	if (d.stage != BAK_STAGE_NONE)
		json_object_set_new(o, "in_progress", json_pack("{s:I,s:s,s:I,s:b}", "point", (json_int_t)d.seq, "mode",
		                                          mode_name(d.mode), "parent", (json_int_t)d.parent,
		                                          "committed", d.stage == BAK_STAGE_COMMITTED));
	bak_data_free(&d);
	return o;
}
