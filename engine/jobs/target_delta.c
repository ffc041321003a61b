#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Landing a pass in a vSphere target through snapshot deltas (see
 * target_land in target.h): a snapshot of the target VM, a vmfsSparse
 * delta per disk holding exactly the pass's areas put in place of the
 * empty delta the snapshot made, then the snapshot removed, which
 * consolidates.  What it sends follows the areas, never the disk, so the
 * target stays thin and a cutover's downtime follows the changes. */
#include "engine/jobs/target.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/cowd.h"
#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"

struct target_land {
	struct target *t;
	struct target_land_disk *disks;
	size_t n, i;
	struct vs_vm *vm;           /* the target VM after the snapshot: its disks are the deltas */
	struct vs_op *op;
	struct disk *hdr_disk;      /* the empty delta's header, over HTTPS */
	struct disk_io *hdr_io;
	uint8_t hdr[COWD_HEADER_SIZE];
	char *ds, *path;            /* the delta extent being replaced */
	int img_fd;                 /* the image the pass's bytes come from */
	struct cowd_stream *stream; /* the delta, made as the PUT sends it */
	struct event *settle;       /* waiting for a snapshot asked for before a restart */
	int asked_ok;               /* land_asked_at is committed: the snapshot may be asked for */
	uint64_t bytes;             /* delta bytes put by this landing */
	int top;                    /* into the top of the chain: no landing snapshot */
	int probe;                  /* only whether the deltas can be written: nothing put */
	char *refuse;               /* the job fails with this once the snapshot is removed */
	void (*then)(struct target *t);
};

static void land_vm_read(struct vs_out *out, void *arg);
static void read_vm(struct target_land *l);
static void land_next(struct target_land *l);
static void consolidate(struct target_land *l);

static void
land_free(struct target_land *l)
{
	token_drop(vs_op_cancel(l->op));
	if (l->hdr_io != NULL)
		disk_io_cancel(l->hdr_disk, l->hdr_io);
	disk_close(l->hdr_disk);
	if (l->settle != NULL)
		event_free(l->settle);
	cowd_stream_free(l->stream);
	if (l->img_fd >= 0)
		close(l->img_fd);
	if (l->vm != NULL) {
		vs_vm_free(l->vm);
		free(l->vm);
	}
	free(l->disks);
	free(l->ds);
	free(l->path);
	free(l->refuse);
	free(l);
}

void
target_land_cancel(struct target *t)
{
	if (t->land != NULL)
		land_free(t->land);
	t->land = NULL;
}

/* The landing whose call answered, still current; NULL otherwise. */
static struct target_land *
land_of(struct target *t)
{
	if (t == NULL || t->land == NULL)
		return NULL;
	t->land->op = NULL;
	return t->land;
}

static void
land_done(struct target_land *l)
{
	struct target *t = l->t;
	void (*then)(struct target *) = l->then;

	target_land_cancel(t);
	then(t);
}

static char *
land_snapshot_name(const struct target *t)
{
	return sync_snapshot_name(t->j, "land");
}

/* Whether the whole upload is no way out for this job: its kind keeps
 * restore points, or its rule forbids it. */
static int
whole_refused(const struct target *t)
{
	return t->whole_never || (target_rule(t) != NULL && !target_rule(t)->options.whole_upload);
}

/* Why hot-add does not write disk i: what this pass's attach said, else
 * what was recorded when its transport was chosen. */
static const char *
hotadd_no(const struct target *t, size_t i)
{
	if (i < t->hot.n && t->hot.d[i].no != NULL)
		return t->hot.d[i].no;
	if (t->hot.no != NULL)
		return t->hot.no;
	return i < t->st->ndisks && t->st->disks[i].via_why != NULL ? t->st->disks[i].via_why : "not attached";
}

/* The target's deltas cannot be written (seSparse on VMFS6, a disk over
 * the COWD limit): from now on whole images, uploaded at cutover.  The
 * safety net for a datastore whose type did not tell at the pre-check
 * (target_inventory: a VMFS6 one is known there).  Where the whole upload
 * is refused the job fails, once the landing's snapshot (nothing was put
 * into it) is removed: nothing of it stays on the target. */
static void
fall_back(struct target_land *l, const char *why)
{
	struct target *t = l->t;
	const char *ds = l->i < t->st->ndisks ? t->st->disks[l->i].ds : NULL;
	size_t k;

	if (ds == NULL)
		ds = target_rule(t) != NULL ? target_rule(t)->target.datastore : "?";
	if (whole_refused(t)) {
		free(l->refuse);
		l->refuse = xasprintf("%s: the target's snapshot deltas cannot be written, no hot-add reaches it (%s), and "
		                      "%s", why, hotadd_no(t, l->i), t->whole_never
		        ? (t->whole_no != NULL ? t->whole_no
		                               : "restore points live in the target's chain, which a whole upload cannot make")
		        : "the rule forbids the whole upload (whole_upload: false)");
		if (t->st->land_snap != NULL)
			consolidate(l);
		else
			rt_fail(t->j, "%s", l->refuse);
		return;
	}

	job_log(t->j, LOG_WARN,
	    "%s: the target's snapshot deltas cannot be written, so its disks are uploaded whole at cutover: the "
	    "downtime grows with the disks' size, not with the changes (a datastore mount or a vmfsSparse datastore "
	    "avoids that)", why);
	t->st->write = TARGET_WRITE_WHOLE;
	free(t->st->write_why);
	t->st->write_why = xasprintf("datastore %s's snapshot deltas cannot be written: %s", ds, why);
	for (k = 0; k < t->st->ndisks; k++) {
		if (t->st->disks[k].via != TARGET_VIA_DELTA && t->st->disks[k].via != TARGET_VIA_NONE)
			continue;
		/* Its staging image holds the whole copy: this was the first landing. */
		t->st->disks[k].via = TARGET_VIA_WHOLE;
		free(t->st->disks[k].via_why);
		t->st->disks[k].via_why = xasprintf("%s: uploaded whole at cutover, the downtime grows with the disk's size",
		    why);
	}
	t->save(t->j);
	if (t->st->land_snap != NULL) {
		/* Nothing was put: removing the snapshot changes no data. */
		consolidate(l);
		return;
	}
	land_done(l);
}

static void
snapshot_made(struct vs_out *out, void *arg)
{
	struct target_land *l = land_of(token_ctx_reply(out, arg, "snapshotting the target VM"));
	struct target *t;

	if (l == NULL)
		return;
	t = l->t;
	free(t->st->land_snap);
	t->st->land_snap = xstrdup(out->moref);
	t->st->land_stage = 1;
	t->st->land_asked_at = 0;
	t->save(t->j);
	read_vm(l);
}

static void
read_vm(struct target_land *l)
{
	struct target *t = l->t;

	l->op = vs_get_vm(target_client(t), t->st->vm, land_vm_read, token_for(t->j, t));
}

static void
settle_cb(evutil_socket_t fd, short what, void *arg)
{
	read_vm(arg);
}

static void
asked_committed(void *arg)
{
	struct target *t = token_ctx(arg);
	struct target_land *l;
	char *name;

	if (t == NULL || (l = t->land) == NULL)
		return;
	l->asked_ok = 1;
	name = land_snapshot_name(t);
	l->op = vs_create_snapshot(target_client(t), t->st->vm, name, "vmferry: a pass lands here", 0, 0,
	    snapshot_made, token_for(t->j, t));
	free(name);
}

/* CreateSnapshot is not safe to repeat either: one asked for before a
 * crash may still come.  Its time is committed before it is asked for,
 * and a later look that finds none waits for it (as for CreateVM). */
static void
ask_snapshot(struct target_land *l)
{
	struct target *t = l->t;
	int64_t age_ms = rt_now_ms() - t->st->land_asked_at;
	struct timeval tv = { 2, 0 };

	if (!l->asked_ok && t->st->land_asked_at != 0 && age_ms >= 0 && age_ms < TARGET_CREATE_SETTLE_S * 1000) {
		job_log(t->j, LOG_INFO, "the target snapshot asked for %lld s ago is not there yet: waiting for it",
		    (long long)(age_ms / 1000));
		if (l->settle == NULL)
			l->settle = evtimer_new(loop_base(), settle_cb, l);
		evtimer_add(l->settle, &tv);
		return;
	}
	t->st->land_asked_at = rt_now_ms();
	t->save(t->j);
	store_after_commit(asked_committed, token_for(t->j, t));
}

static void
extra_removed(struct vs_out *out, void *arg)
{
	struct target_land *l = land_of(token_ctx_reply(out, arg, "removing a second landing snapshot"));

	if (l != NULL)
		read_vm(l);
}

/* The target VM's disks are the (empty) deltas: replace each. */
static void
put_deltas(struct target_land *l, const struct vs_vm *vm)
{
	if (vm->ndisks != l->n) {
		rt_fail(l->t->j, "the target VM has %zu disks, the pass %zu", vm->ndisks, l->n);
		return;
	}
	rt_vm_set(&l->vm, vm);
	l->i = 0;
	land_next(l);
}

/* The target VM as it is: its landing snapshot (made before a crash,
 * maybe unrecorded), and its disks (after the snapshot, the deltas). */
static void
land_vm_read(struct vs_out *out, void *arg)
{
	struct target_land *l = land_of(token_ctx_reply(out, arg, "reading the target VM"));
	struct target *t;
	char *name;
	const char *found = NULL;
	size_t k;

	if (l == NULL)
		return;
	t = l->t;
	if (l->top) {
		put_deltas(l, out->vm);
		return;
	}
	name = land_snapshot_name(t);
	for (k = 0; k < out->vm->nsnapshots; k++)
		if (str_eq(out->vm->snapshots[k].name, name)) {
			/* Two (a snapshot asked for twice across a crash): remove
			 * the other; a removal consolidates, it never loses data. */
			if (found != NULL) {
				const char *extra = str_eq(found, t->st->land_snap) ? out->vm->snapshots[k].moref : found;

				free(name);
				job_log(t->j, LOG_INFO, "removing a second landing snapshot %s of the target", extra);
				l->op = vs_remove_snapshot(target_client(t), extra, extra_removed, token_for(t->j, t));
				return;
			}
			found = out->vm->snapshots[k].moref;
		}
	if (found == NULL && t->st->land_stage == 2) {
		/* Its removal went through before a crash: consolidated. */
		free(name);
		t->st->land_stage = 0;
		free(t->st->land_snap);
		t->st->land_snap = NULL;
		t->st->write = TARGET_WRITE_DELTA;
		t->save(t->j);
		land_done(l);
		return;
	}
	if (found == NULL) {
		free(name);
		ask_snapshot(l);
		return;
	}
	free(name);
	if (!str_eq(t->st->land_snap, found)) {
		free(t->st->land_snap);
		t->st->land_snap = xstrdup(found);
		if (t->st->land_stage == 0)
			t->st->land_stage = 1;
		t->save(t->j);
	}
	if (t->st->land_stage == 2) {
		consolidate(l);
		return;
	}
	put_deltas(l, out->vm);
}

static int
pread_image(void *arg, uint64_t off, void *buf, size_t len, char **err)
{
	struct target_land *l = arg;
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(l->img_fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err = xasprintf("reading %s: %s", l->disks[l->i].image, strerror(errno));
			return -1;
		}
		if (n == 0) {
			/* A sparse image shorter than the disk reads as zeros. */
			memset((char *)buf + got, 0, len - got);
			break;
		}
		got += (size_t)n;
	}
	return 0;
}

static void
delta_put(struct target *t)
{
	struct target_land *l = t->land;

	cowd_stream_free(l->stream);
	l->stream = NULL;
	close(l->img_fd);
	l->img_fd = -1;
	l->i++;
	land_next(l);
}

/* The PUT's body: the delta, made from the image as it is sent. */
static ssize_t
body_read(void *arg, char *buf, size_t n)
{
	struct target_land *l = arg;
	size_t got;
	char *err = NULL;

	if (cowd_stream_read(l->stream, buf, n, &got, &err) != 0) {
		/* Said here: the PUT then ends as cut short. */
		job_log(l->t->j, LOG_WARN, "disk %zu: building its delta: %s", l->i, err);
		free(err);
		return -1;
	}
	return (ssize_t)got;
}

static void
body_rewind(void *arg)
{
	struct target_land *l = arg;

	cowd_stream_rewind(l->stream);
}

/* The empty delta's header is here: build the delta over it. */
static void
header_read(void *arg, enum xfer_status st, const char *error)
{
	struct target_land *l = arg;
	struct target *t = l->t;
	struct target_land_disk *d = &l->disks[l->i];
	struct cowd_header h;
	char *err = NULL;

	l->hdr_io = NULL;
	disk_close(l->hdr_disk);
	l->hdr_disk = NULL;
	if (st != XFER_OK) {
		if (st == XFER_TRANSIENT)
			rt_lost(t->j, "disk %zu: reading its empty delta [%s] %s: %s", l->i, l->ds, l->path, error);
		else
			rt_fail(t->j, "disk %zu: reading its empty delta [%s] %s: %s", l->i, l->ds, l->path, error);
		return;
	}
	if (cowd_header_parse(l->hdr, sizeof(l->hdr), &h, &err) != 0) {
		rt_fail(t->j, "disk %zu: the delta [%s] %s: %s", l->i, l->ds, l->path, err);
		free(err);
		return;
	}
	if ((l->img_fd = open(d->image, O_RDONLY | O_CLOEXEC)) < 0) {
		rt_lost(t->j, "disk %zu: %s: %s", l->i, d->image, strerror(errno));
		return;
	}
	l->stream = cowd_stream_new(&h, d->areas, d->nareas, pread_image, l, pread_image, l, &err);
	if (l->stream == NULL) {
		rt_fail(t->j, "disk %zu: %s", l->i, err);
		free(err);
		return;
	}
	{
		struct upload_source src = { body_read, body_rewind, l };
		char what[96];

		snprintf(what, sizeof(what), "the delta of disk %zu (%llu bytes, %zu areas)", l->i,
		    (unsigned long long)cowd_stream_size(l->stream), d->nareas);
		l->bytes += cowd_stream_size(l->stream);
		target_upload_source(t, l->ds, l->path, &src, cowd_stream_size(l->stream), what, delta_put);
	}
}

/* The delta's descriptor: vmfsSparse (go on) or not (fall back). */
static void
descriptor_read(struct vs_out *out, void *arg)
{
	struct target_land *l = land_of(token_ctx_reply(out, arg, "reading the target disk's delta descriptor"));
	struct target *t;
	const struct vs_disk *vd;
	char *file = NULL, *err = NULL, *ds = NULL, *path = NULL, *slash, *why;

	if (l == NULL)
		return;
	t = l->t;
	vd = &l->vm->disks[l->i];
	vs_split_ds_path(vd->file, &ds, &path);
	if (cowd_delta_check(out->data, out->len, vd->capacity, &file, &err) != 0) {
		why = xasprintf("datastore %s (disk %zu, %s): %s", ds ? ds : "?", l->i, vd->file, err);
		free(err);
		free(ds);
		free(path);
		fall_back(l, why);
		free(why);
		return;
	}
	if (l->probe) {
		free(l->ds);
		l->ds = ds;
		free(path);
		free(file);
		l->i++;
		land_next(l);
		return;
	}
	slash = strrchr(path, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		path[0] = '\0';
	free(l->ds);
	free(l->path);
	l->ds = ds;
	l->path = xasprintf("%s%s", path, file);
	free(path);
	free(file);
	l->hdr_disk = disk_open_https(target_client(t), target_rule(t)->target.datacenter, l->ds, l->path,
	    COWD_HEADER_SIZE);
	l->hdr_io = disk_read(l->hdr_disk, 0, COWD_HEADER_SIZE, l->hdr, header_read, l);
}

static void
land_next(struct target_land *l)
{
	struct target *t = l->t;
	char *ds = NULL, *path = NULL, *err = NULL;

	while (l->i < l->n && l->disks[l->i].skip)
		l->i++;
	if (l->i >= l->n && l->top) {
		t->st->write = TARGET_WRITE_DELTA;
		t->save(t->j);
		job_log(t->j, LOG_INFO, "the pass landed in the top of the target's chain: %llu delta bytes put",
		    (unsigned long long)l->bytes);
		t->landed_bytes = l->bytes;
		land_done(l);
		return;
	}
	if (l->i >= l->n) {
		if (!l->probe)
			t->st->land_stage = 2;
		t->save(t->j);
		consolidate(l);
		return;
	}
	if (cowd_capacity_check(l->vm->disks[l->i].capacity, &err) != 0) {
		char *why = xasprintf("disk %zu: %s", l->i, err);

		free(err);
		fall_back(l, why);
		free(why);
		return;
	}
	if (l->vm->disks[l->i].file == NULL || vs_split_ds_path(l->vm->disks[l->i].file, &ds, &path) != 0) {
		rt_fail(t->j, "target disk %zu has no usable file name", l->i);
		return;
	}
	l->op = vs_get_file(target_client(t), target_rule(t)->target.datacenter, ds, path, descriptor_read,
	    token_for(t->j, t));
	free(ds);
	free(path);
}

static void
consolidated(struct vs_out *out, void *arg)
{
	struct target_land *l = land_of(token_ctx_reply(out, arg, "removing the target's landing snapshot"));
	struct target *t;

	if (l == NULL)
		return;
	t = l->t;
	if (t->st->land_stage == 2) {
		t->st->write = TARGET_WRITE_DELTA;
		job_log(t->j, LOG_INFO, "the pass landed in the target: %llu delta bytes put, consolidated",
		    (unsigned long long)l->bytes);
		t->landed_bytes = l->bytes;
	} else if (l->probe && l->refuse == NULL) {
		t->st->write = TARGET_WRITE_DELTA;
		job_log(t->j, LOG_INFO, "datastore %s takes vmfsSparse snapshot deltas (seen on a snapshot of the target VM, "
		                        "removed again)", l->ds ? l->ds : "?");
	}
	t->st->land_stage = 0;
	free(t->st->land_snap);
	t->st->land_snap = NULL;
	t->save(t->j);
	if (l->refuse != NULL) {
		rt_fail(t->j, "%s", l->refuse);
		return;
	}
	land_done(l);
}

/* RemoveSnapshot merges the deltas into the base (or, before anything was
 * put, just drops the empty ones). */
static void
consolidate(struct target_land *l)
{
	struct target *t = l->t;

	l->op = vs_remove_snapshot(target_client(t), t->st->land_snap, consolidated, token_for(t->j, t));
}

static void land_detached(struct target *t);

static struct target_land *
land_new(struct target *t, const struct target_land_disk *disks, size_t n, void (*then)(struct target *t))
{
	struct target_land *l;

	target_land_cancel(t);
	l = xcalloc(1, sizeof(*l));
	l->t = t;
	l->n = n;
	l->disks = xcalloc(n ? n : 1, sizeof(*l->disks));
	if (disks != NULL)
		memcpy(l->disks, disks, n * sizeof(*disks));
	l->img_fd = -1;
	l->then = then;
	t->land = l;
	return l;
}

/* Where the whole upload is no way out, whether the target's deltas can
 * be written is found out before the copy: a snapshot of the target VM,
 * the deltas' descriptors, the snapshot removed (nothing was put).  A
 * target that cannot take them (seSparse on VMFS6) is refused before any
 * byte is read.  Once per job: the answer is kept (st->write). */
void
target_deltas_check(struct target *t, void (*then)(struct target *t))
{
	struct target_land *l;
	size_t k, n = t->st->ndisks, todo = 0;

	for (k = 0; k < n; k++)
		todo += t->st->disks[k].via == TARGET_VIA_DELTA;
	if (todo == 0 || !whole_refused(t) || t->st->write != TARGET_WRITE_UNKNOWN || t->st->land_stage != 0 ||
	    t->st->vm == NULL) {
		then(t);
		return;
	}
	l = land_new(t, NULL, n, then);
	for (k = 0; k < n; k++)
		l->disks[k].skip = t->st->disks[k].via != TARGET_VIA_DELTA;
	l->probe = 1;
	job_log(t->j, LOG_INFO, "finding out whether the target's snapshot deltas can be written, before the copy");
	read_vm(l);
}

/* Hot-add disks are detached first: the landing's snapshot and the power
 * state of the target want none attached elsewhere. */
void
target_land(struct target *t, const struct target_land_disk *disks, size_t n, int top, void (*then)(struct target *t))
{
	t->land_top = top;
	t->landed_bytes = 0;
	t->land_disks = disks;
	t->land_n = n;
	t->land_then = then;
	target_writes_end(t, land_detached);
}

static void
land_detached(struct target *t)
{
	const struct target_land_disk *disks = t->land_disks;
	void (*then)(struct target *t) = t->land_then;
	struct target_land *l;
	size_t k, n = t->land_n, todo = 0;

	for (k = 0; k < n; k++)
		todo += !disks[k].skip;
	if ((t->st->write == TARGET_WRITE_WHOLE && !t->whole_never) || (todo == 0 && t->st->land_stage == 0)) {
		then(t);
		return;
	}
	l = land_new(t, disks, n, then);
	l->top = t->land_top;
	read_vm(l);
}
