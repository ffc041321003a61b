/* vSphere tasks, snapshots and changed block tracking: task polling,
 * snapshot disks, Create/Remove/Revert snapshot, enabling CBT,
 * QueryChangedDiskAreas. */
#include "drivers/vsops.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops_private.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

/* ---- one snapshot's disks ---- */

static void
snapdisks_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *obj = xml_child(vsop_returnval(res), "objects");
	char *problem;

	if (obj == NULL) {
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: snapshot %s has no configuration", vs_config(op->c)->name, op->snap));
		return;
	}
	vsop_parse_devices(vsop_prop_val(obj, "config.hardware.device"), &op->out.disks, &op->out.ndisks, NULL);
	if ((problem = vs_disks_problem(op->out.disks, op->out.ndisks)) != NULL) {
		vsop_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: snapshot %s: unusable answer: %s", vs_config(op->c)->name, op->snap, problem));
		free(problem);
		return;
	}
	op->out.status = VS_OK;
	vsop_finish(op);
}

static void
snapdisks_start(struct vs_op *op, struct vs_result *res)
{
	static const char *const paths[] = { "config.hardware.device", NULL };

	vsop_retrieve(op, "VirtualMachineSnapshot", op->snap, paths, snapdisks_done);
}

struct vs_op *
vs_snapshot_disks(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, snapdisks_start);

	op->snap = xstrdup(snap_moref);
	return op;
}

/* ---- tasks ---- */

static void task_poll(struct vs_op *op);

static void
task_info_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *info = vsop_prop_val(xml_child(vsop_returnval(res), "objects"), "info");
	char *state = info ? xml_child_text(info, "state") : NULL;

	if (state == NULL) {
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: task %s has no state", vs_config(op->c)->name, op->task));
		return;
	}
	if (strcmp(state, "success") == 0) {
		free(state);
		op->after_task(op, info);
		return;
	}
	if (strcmp(state, "error") == 0) {
		xmlNode *err = xml_child(info, "error");
		char *msg = xml_child_text(err, "localizedMessage");
		char tbuf[128];
		const char *ft = xml_xsi_type(xml_child(err, "fault"), tbuf, sizeof(tbuf));
		char *name = xml_child_text(info, "descriptionId");

		free(state);
		vsop_fail(op, VS_FAULT, ft,
		    xasprintf("%s: task %s failed: %s%s%s", vs_config(op->c)->name, name ? name : op->task,
		        ft ? ft : "", ft && msg && *msg ? ": " : "", msg ? msg : ""));
		free(msg);
		free(name);
		return;
	}
	if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0) {
		/* Polling on would never end. */
		char *q = vsop_quote(state);

		free(state);
		vsop_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: task %s is in an unknown state %s", vs_config(op->c)->name, op->task, q));
		free(q);
		return;
	}
	free(state);
	task_poll(op);
}

static void
task_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char *const paths[] = { "info", NULL };
	struct vs_op *op = arg;

	vsop_retrieve(op, "Task", op->task, paths, task_info_done);
}

static void
task_poll(struct vs_op *op)
{
	struct timeval tv = { op->poll_ms / 1000, (op->poll_ms % 1000) * 1000 };

	if (op->timer == NULL)
		op->timer = evtimer_new(loop_base(), task_timer_cb, op);
	evtimer_add(op->timer, &tv);
	op->poll_ms *= 2;
	if (op->poll_ms > TASK_POLL_MAX_MS)
		op->poll_ms = TASK_POLL_MAX_MS;
}

/* The reply of a *_Task method: remember the task and ask about it. */
void
vsop_task_started(struct vs_op *op, struct vs_result *res)
{
	static const char *const paths[] = { "info", NULL };

	free(op->task);
	op->task = xml_child_text(res->reply.body_child, "returnval");
	if (op->task == NULL) {
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: no task returned", vs_config(op->c)->name));
		return;
	}
	vsop_retrieve(op, "Task", op->task, paths, task_info_done);
}

void
vsop_task_result_moref(struct vs_op *op, xmlNode *info)
{
	op->out.moref = xml_child_text(info, "result");
	op->out.status = VS_OK;
	vsop_finish(op);
}

void
vsop_task_result_none(struct vs_op *op, xmlNode *info)
{
	op->out.status = VS_OK;
	vsop_finish(op);
}

/* ---- snapshots, CBT ---- */

/* A *_Task method that takes nothing but its object, waited for. */
static void
simple_task_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	soap_req_init(&req, op->task_method, op->task_type, op->path);
	op->after_task = vsop_task_result_none;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vsop_simple_task(struct vs_client *c, const char *method, const char *type, const char *ref, vs_op_fn done,
    void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, simple_task_start);

	op->task_method = method;
	op->task_type = type;
	op->path = xstrdup(ref);
	return op;
}

static void
cbt_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;
	xmlNode *spec;

	soap_req_init(&req, "ReconfigVM_Task", "VirtualMachine", op->vm);
	spec = soap_add(&req, NULL, "spec", NULL);
	soap_add_bool(&req, spec, "changeTrackingEnabled", op->disk_key);
	op->after_task = vsop_task_result_none;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vs_enable_cbt(struct vs_client *c, const char *vm_moref, int enable, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, cbt_start);

	op->vm = xstrdup(vm_moref);
	op->disk_key = enable;
	return op;
}

static void
snap_create_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	soap_req_init(&req, "CreateSnapshot_Task", "VirtualMachine", op->vm);
	soap_add(&req, NULL, "name", op->snap);
	soap_add(&req, NULL, "description", op->path ? op->path : "");
	soap_add_bool(&req, NULL, "memory", op->disk_key & 1);
	soap_add_bool(&req, NULL, "quiesce", (op->disk_key & 2) != 0);
	op->after_task = vsop_task_result_moref;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vs_create_snapshot(struct vs_client *c, const char *vm_moref, const char *name, const char *desc, int memory,
    int quiesce, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, snap_create_start);

	op->vm = xstrdup(vm_moref);
	op->snap = xstrdup(name);
	op->path = desc ? xstrdup(desc) : NULL;
	op->disk_key = (memory ? 1 : 0) | (quiesce ? 2 : 0);
	return op;
}

static void
snap_remove_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	soap_req_init(&req, "RemoveSnapshot_Task", "VirtualMachineSnapshot", op->snap);
	soap_add_bool(&req, NULL, "removeChildren", 0);
	soap_add_bool(&req, NULL, "consolidate", 1);
	op->after_task = vsop_task_result_none;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vs_remove_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, snap_remove_start);

	op->snap = xstrdup(snap_moref);
	return op;
}

struct vs_op *
vs_revert_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	return vsop_simple_task(c, "RevertToSnapshot_Task", "VirtualMachineSnapshot", snap_moref, done, arg);
}

/* ---- changed block tracking ---- */

static void qca_send(struct vs_op *op);

int
vs_parse_changes(const xmlNode *rv, uint64_t offset, uint64_t capacity, struct vs_extent **ext, size_t *n,
    uint64_t *next, char **err)
{
	xmlNode *a;
	uint64_t start = 0, len = 0;

	*err = NULL;
	if (xml_child_u64(rv, "startOffset", &start) != 0 || xml_child_u64(rv, "length", &len) != 0) {
		*err = xstrdup("QueryChangedDiskAreas reply lacks startOffset/length");
		return -1;
	}
	if (start != offset || len == 0 || len > UINT64_MAX - start) {
		*err = xasprintf("QueryChangedDiskAreas answered for offset %llu length %llu, asked for %llu",
		    (unsigned long long)start, (unsigned long long)len, (unsigned long long)offset);
		return -1;
	}
	for (a = xml_child(rv, "changedArea"); a != NULL; a = xml_next(a, "changedArea")) {
		uint64_t s, l;
		struct vs_extent *last;

		/* Skipping an area would leave it uncopied: refuse the reply. */
		if (xml_child_u64(a, "start", &s) != 0 || xml_child_u64(a, "length", &l) != 0) {
			char *ts = xml_child_text(a, "start"), *tl = xml_child_text(a, "length");
			char *qs = vsop_quote(ts), *ql = vsop_quote(tl);

			*err = xasprintf("QueryChangedDiskAreas reply has a changed area with start %s and length %s", qs,
			    ql);
			free(ts);
			free(tl);
			free(qs);
			free(ql);
			return -1;
		}
		if (l == 0 || s >= capacity)
			continue;
		if (l > capacity - s)
			l = capacity - s;
		last = *n ? &(*ext)[*n - 1] : NULL;
		if (last != NULL && last->start <= s && last->start + last->length >= s) {
			/* Adjacent or overlapping: coalesce (areas out of order are
			 * sorted by vs_extents_normalize). */
			if (s + l > last->start + last->length)
				last->length = s + l - last->start;
			continue;
		}
		*ext = xgrow(*ext, *n, sizeof(**ext));
		(*ext)[*n].start = s;
		(*ext)[*n].length = l;
		(*n)++;
	}
	*next = start + len;
	return 0;
}

static int
extent_cmp(const void *a, const void *b)
{
	const struct vs_extent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Merge, in place and in order, areas that overlap or are at most gap
 * apart. */
static void
extents_merge(struct vs_extent *ext, size_t *n, uint64_t gap)
{
	size_t i, k = 0;

	for (i = 1; i < *n; i++) {
		uint64_t end = ext[k].start + ext[k].length;

		if (ext[i].start <= end || ext[i].start - end <= gap) {
			if (ext[i].start + ext[i].length > end)
				ext[k].length = ext[i].start + ext[i].length - ext[k].start;
		} else {
			ext[++k] = ext[i];
		}
	}
	if (*n > 0)
		*n = k + 1;
}

void
vs_extents_normalize(struct vs_extent *ext, size_t *n, size_t max, uint64_t *gap)
{
	size_t i;

	for (i = 1; i < *n && ext[i - 1].start <= ext[i].start; i++)
		;
	if (i < *n)
		qsort(ext, *n, sizeof(*ext), extent_cmp);
	extents_merge(ext, n, *gap);
	while (*n > max) {
		*gap = *gap ? *gap * 2 : 64 * 1024;
		extents_merge(ext, n, *gap);
	}
}

/* Pages a disk may take: a server whose replies cover a few bytes each
 * would keep us asking for ever.  No real reply covers less than a 64 KiB
 * block on average. */
static uint64_t
qca_max_pages(uint64_t capacity)
{
	return 1024 + capacity / (64 * 1024);
}

static void
qca_page(struct vs_op *op, struct vs_result *res)
{
	char *err = NULL;

	op->out.pages++;
	if (vs_parse_changes(vsop_returnval(res), op->offset, op->capacity, &op->out.extents, &op->out.nextents, &op->offset,
	        &err) != 0) {
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: %s", vs_config(op->c)->name, err));
		free(err);
		return;
	}
	vs_extents_normalize(op->out.extents, &op->out.nextents, VS_CBT_MAX_EXTENTS, &op->out.merge_gap);
	if (op->offset < op->capacity && op->out.pages >= qca_max_pages(op->capacity)) {
		vsop_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: QueryChangedDiskAreas still at offset %llu of %llu after %llu replies: the server's "
		              "replies cover too little",
		        vs_config(op->c)->name, (unsigned long long)op->offset, (unsigned long long)op->capacity,
		        (unsigned long long)op->out.pages));
		return;
	}
	if (op->offset >= op->capacity) {
		op->out.status = VS_OK;
		vsop_finish(op);
		return;
	}
	qca_send(op);
}

static void
qca_send(struct vs_op *op)
{
	struct soap_req req;
	char key[16];

	soap_req_init(&req, "QueryChangedDiskAreas", "VirtualMachine", op->vm);
	soap_add_ref(&req, NULL, "snapshot", "VirtualMachineSnapshot", op->snap);
	snprintf(key, sizeof(key), "%d", op->disk_key);
	soap_add(&req, NULL, "deviceKey", key);
	soap_add_u64(&req, NULL, "startOffset", op->offset);
	soap_add(&req, NULL, "changeId", op->change_id);
	vsop_call(op, &req, qca_page);
}

static void
qca_start(struct vs_op *op, struct vs_result *res)
{
	qca_send(op);
}

struct vs_op *
vs_query_changes(struct vs_client *c, const char *vm_moref, const char *snap_moref, int disk_key,
    const char *change_id, uint64_t capacity, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, qca_start);

	op->vm = xstrdup(vm_moref);
	op->snap = xstrdup(snap_moref);
	op->disk_key = disk_key;
	op->change_id = xstrdup(change_id);
	op->capacity = capacity;
	return op;
}
