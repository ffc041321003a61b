#include "drivers/vsops.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/http.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define TASK_POLL_FIRST_MS 20
#define TASK_POLL_MAX_MS 1000
#define FILE_MAX (1u << 20)
#define FILE_TIMEOUT_MS (120L * 1000)
#define FILE_BACKOFF_FIRST_S 0.25
#define FILE_BACKOFF_MAX_S 4.0

struct vs_op;
typedef void (*op_step_fn)(struct vs_op *op, struct vs_result *res);

struct vs_op {
	struct vs_client *c;
	struct vs_call *call;
	struct http_req *http;
	struct event *timer;
	vs_op_fn done;
	void *arg;
	struct vs_out out;
	op_step_fn next;        /* handles the reply of the call in flight */
	int finishing;          /* in its done callback: freed when that returns */
	/* Per-operation state. */
	char *vm;
	char *snap;
	char *task;
	char *view;
	char *change_id;
	char *dc, *ds, *path;
	char *key, *value;        /* extraConfig */
	int disk_key;
	int page_size;
	int poll_ms;
	int relogged;
	uint64_t objects;         /* inventory: objects read so far */
	uint64_t empty_pages;     /* inventory: pages without objects that announced more */
	double first_try;         /* datastore GETs: retried with a backoff */
	double backoff;
	size_t dc_index;
	uint64_t capacity;
	uint64_t offset;
	struct soap_req *pending; /* a request built before login (CreateVM_Task) */
	char **cr_ref, **cr_pool; /* compute resources seen: moref → resource pool */
	size_t ncr;
	void (*after_task)(struct vs_op *op, xmlNode *info);
	const char *task_method;  /* simple_task: the method and its object's type */
	const char *task_type;
};

/* ---- plumbing ---- */

static void
disks_free(struct vs_disk *d, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(d[i].label);
		free(d[i].file);
		free(d[i].mode);
		free(d[i].change_id);
		free(d[i].uuid);
		free(d[i].problem);
	}
	free(d);
}

static struct vs_op *
op_new(struct vs_client *c, vs_op_fn done, void *arg)
{
	struct vs_op *op = xcalloc(1, sizeof(*op));

	op->c = c;
	op->done = done;
	op->arg = arg;
	op->poll_ms = TASK_POLL_FIRST_MS;
	return op;
}

static void
out_free(struct vs_out *o)
{
	free(o->error);
	free(o->fault_type);
	free(o->moref);
	if (o->inv != NULL) {
		vs_inventory_free(o->inv);
		free(o->inv);
	}
	if (o->vm != NULL) {
		vs_vm_free(o->vm);
		free(o->vm);
	}
	disks_free(o->disks, o->ndisks);
	free(o->extents);
	free(o->data);
}

static void
op_free(struct vs_op *op)
{
	if (op->call != NULL)
		vs_call_cancel(op->call);
	if (op->http != NULL)
		http_cancel(op->http);
	if (op->timer != NULL)
		event_free(op->timer);
	out_free(&op->out);
	free(op->vm);
	free(op->snap);
	free(op->task);
	free(op->view);
	free(op->change_id);
	free(op->dc);
	free(op->ds);
	free(op->path);
	free(op->key);
	free(op->value);
	if (op->pending != NULL) {
		soap_req_free(op->pending);
		free(op->pending);
	}
	for (size_t i = 0; i < op->ncr; i++) {
		free(op->cr_ref[i]);
		free(op->cr_pool[i]);
	}
	free(op->cr_ref);
	free(op->cr_pool);
	free(op);
}

void
vs_op_cancel(struct vs_op *op)
{
	/* Cancelled from its own done callback (its answer failed the job,
	 * and the transition cancels the job's work): op_finish frees it. */
	if (op != NULL && !op->finishing)
		op_free(op);
}

static void
op_finish(struct vs_op *op)
{
	op->call = NULL;
	op->finishing = 1;
	if (op->done != NULL)
		op->done(&op->out, op->arg);
	op_free(op);
}

static void
op_fail(struct vs_op *op, enum vs_status st, const char *fault_type, char *msg)
{
	op->out.status = st;
	free(op->out.error);
	op->out.error = msg;
	if (fault_type != NULL && op->out.fault_type == NULL)
		op->out.fault_type = xstrdup(fault_type);
	op_finish(op);
}

/* Carries a failed call's status and message into the op's result. */
static void
op_fail_res(struct vs_op *op, struct vs_result *res)
{
	op_fail(op, res->status, res->reply.fault_type, xstrdup(res->error ? res->error : "call failed"));
}

static void
op_call_done(struct vs_result *res, void *arg)
{
	struct vs_op *op = arg;

	op->call = NULL;
	if (res->status != VS_OK) {
		op_fail_res(op, res);
		return;
	}
	op->next(op, res);
}

static void
op_call(struct vs_op *op, struct soap_req *req, op_step_fn next)
{
	op->next = next;
	op->call = vs_call(op->c, req, op_call_done, op);
}

static xmlNode *
returnval(struct vs_result *res)
{
	return xml_child(res->reply.body_child, "returnval");
}

/* ---- property collector requests ---- */

static xmlNode *
add_propset(struct soap_req *r, xmlNode *spec, const char *type, const char *const *paths)
{
	xmlNode *ps = soap_add(r, spec, "propSet", NULL);

	soap_add(r, ps, "type", type);
	for (; *paths != NULL; paths++)
		soap_add(r, ps, "pathSet", *paths);
	return ps;
}

static void
add_objectset_view(struct soap_req *r, xmlNode *spec, const char *view)
{
	xmlNode *os = soap_add(r, spec, "objectSet", NULL), *sel;

	soap_add_ref(r, os, "obj", "ContainerView", view);
	soap_add_bool(r, os, "skip", 1);
	sel = soap_add_typed(r, os, "selectSet", "TraversalSpec", NULL);
	soap_add(r, sel, "name", "traverseEntities");
	soap_add(r, sel, "type", "ContainerView");
	soap_add(r, sel, "path", "view");
	soap_add_bool(r, sel, "skip", 0);
}

static void
add_objectset_obj(struct soap_req *r, xmlNode *spec, const char *type, const char *ref)
{
	xmlNode *os = soap_add(r, spec, "objectSet", NULL);

	soap_add_ref(r, os, "obj", type, ref);
	soap_add_bool(r, os, "skip", 0);
}

static void
add_options(struct soap_req *r, int page_size)
{
	xmlNode *opt = soap_add(r, NULL, "options", NULL);

	if (page_size > 0) {
		char buf[16];

		snprintf(buf, sizeof(buf), "%d", page_size);
		soap_add(r, opt, "maxObjects", buf);
	}
}

/* The <val> of a named property within an <objects> element. */
static xmlNode *
prop_val(const xmlNode *objects, const char *name)
{
	xmlNode *ps;

	for (ps = xml_child(objects, "propSet"); ps != NULL; ps = xml_next(ps, "propSet")) {
		char *n = xml_child_text(ps, "name");
		int match = n != NULL && strcmp(n, name) == 0;

		free(n);
		if (match)
			return xml_child(ps, "val");
	}
	return NULL;
}

static char *
prop_text(const xmlNode *objects, const char *name)
{
	xmlNode *v = prop_val(objects, name);

	return v ? xml_text(v) : NULL;
}

/* A server's value for a message: quoted, at most 40 bytes, printable. */
static char *
quote_value(const char *s)
{
	char *q = xasprintf("\"%.40s\"%s", s ? s : "", s && strlen(s) > 40 ? "..." : "");
	char *p;

	for (p = q + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return q;
}

/* A numeric property: 0 when absent or not a number. */
static uint64_t
prop_u64(const xmlNode *objects, const char *name)
{
	char *s = prop_text(objects, name);
	uint64_t v = 0;

	if (soap_parse_u64(s, &v) != 0)
		v = 0;
	free(s);
	return v;
}

static void
set_problem(char **problem, char *msg)
{
	if (*problem == NULL)
		*problem = msg;
	else
		free(msg);
}

/* A numeric VM property that, when present, must be in [1, max]. */
static int
prop_count(const xmlNode *objects, const char *name, uint64_t max, char **problem)
{
	char *s = prop_text(objects, name), *q;
	uint64_t v = 0;

	if (s == NULL)
		return 0;
	if (soap_parse_u64(s, &v) != 0 || v < 1 || v > max) {
		q = quote_value(s);
		set_problem(problem, xasprintf("%s %s is not a number from 1 to %llu", name, q, (unsigned long long)max));
		free(q);
		v = 0;
	}
	free(s);
	return (int)v;
}

/* capacityInBytes, else capacityInKB: from 1 byte to VS_DISK_MAX_BYTES. */
static void
parse_capacity(const xmlNode *d, struct vs_disk *k)
{
	char *b = xml_child_text(d, "capacityInBytes");
	char *kb = b == NULL ? xml_child_text(d, "capacityInKB") : NULL;
	const char *field = b != NULL ? "capacityInBytes" : "capacityInKB";
	uint64_t v = 0;
	int ok;
	char *q;

	if (b == NULL && kb == NULL) {
		set_problem(&k->problem, xstrdup("no capacity (capacityInBytes or capacityInKB)"));
		return;
	}
	ok = soap_parse_u64(b != NULL ? b : kb, &v) == 0;
	if (ok && b == NULL) {
		ok = v <= VS_DISK_MAX_BYTES / 1024;
		v *= 1024;
	}
	if (ok && v >= 1 && v <= VS_DISK_MAX_BYTES) {
		k->capacity = v;
	} else {
		q = quote_value(b != NULL ? b : kb);
		set_problem(&k->problem, xasprintf("%s %s is not a size from 1 byte to 64 TiB", field, q));
		free(q);
	}
	free(b);
	free(kb);
}

char *
vs_disks_problem(const struct vs_disk *disks, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (disks[i].problem != NULL)
			return xasprintf("disk %zu (%s): %s", i, disks[i].label ? disks[i].label : "no label",
			    disks[i].problem);
	return NULL;
}

/* ---- parsing VMs ---- */

static void
parse_snapshot_tree(const xmlNode *list_parent, const char *list_name, const char *parent, struct vs_vm *vm)
{
	xmlNode *t;

	for (t = xml_child(list_parent, list_name); t != NULL; t = xml_next(t, list_name)) {
		struct vs_snapshot *s;
		char *moref = xml_child_text(t, "snapshot");
		int q = 0;

		if (moref == NULL)
			continue;
		vm->snapshots = xgrow(vm->snapshots, vm->nsnapshots, sizeof(*vm->snapshots));
		s = &vm->snapshots[vm->nsnapshots++];
		memset(s, 0, sizeof(*s));
		s->moref = moref;
		s->name = xml_child_text(t, "name");
		s->description = xml_child_text(t, "description");
		xml_child_bool(t, "quiesced", &q);
		s->quiesced = q;
		s->parent = parent ? xstrdup(parent) : NULL;
		parse_snapshot_tree(t, "childSnapshotList", moref, vm);
	}
}

/* Disks, controllers and NICs from an ArrayOfVirtualDevice value. */
static void
parse_devices(const xmlNode *val, struct vs_disk **disks, size_t *ndisks, struct vs_vm *vm)
{
	xmlNode *d;
	char tbuf[128];

	if (val == NULL)
		return;
	for (d = val->children; d != NULL; d = d->next) {
		const char *type;
		int64_t v;

		if (d->type != XML_ELEMENT_NODE)
			continue;
		type = xml_xsi_type(d, tbuf, sizeof(tbuf));
		if (type == NULL)
			continue;
		if (strcmp(type, "VirtualDisk") == 0) {
			struct vs_disk *k;
			xmlNode *b = xml_child(d, "backing");

			*disks = xgrow(*disks, *ndisks, sizeof(**disks));
			k = &(*disks)[(*ndisks)++];
			memset(k, 0, sizeof(*k));
			if (xml_child_i64(d, "key", &v) == 0 && v >= INT32_MIN && v <= INT32_MAX)
				k->key = (int)v;
			else
				set_problem(&k->problem, xstrdup("no valid device key"));
			k->label = xml_child_text(xml_child(d, "deviceInfo"), "label");
			k->file = xml_child_text(b, "fileName");
			if (k->file == NULL || k->file[0] == '\0')
				set_problem(&k->problem, xstrdup("no backing file name"));
			k->mode = xml_child_text(b, "diskMode");
			k->uuid = xml_child_text(b, "uuid");
			k->change_id = xml_child_text(b, "changeId");
			parse_capacity(d, k);
			if (xml_child_i64(d, "controllerKey", &v) == 0)
				k->controller_key = (int)v;
			if (xml_child_i64(d, "unitNumber", &v) == 0)
				k->unit = (int)v;
		} else if (vm != NULL && strstr(type, "Controller") != NULL && strstr(type, "SCSI") != NULL) {
			struct vs_controller *ct;

			vm->controllers = xgrow(vm->controllers, vm->ncontrollers, sizeof(*vm->controllers));
			ct = &vm->controllers[vm->ncontrollers++];
			memset(ct, 0, sizeof(*ct));
			ct->type = xstrdup(type);
			if (xml_child_i64(d, "key", &v) == 0)
				ct->key = (int)v;
			if (xml_child_i64(d, "busNumber", &v) == 0)
				ct->bus = (int)v;
		} else if (vm != NULL && xml_child(d, "macAddress") != NULL) {
			struct vs_nic *n;

			vm->nics = xgrow(vm->nics, vm->nnics, sizeof(*vm->nics));
			n = &vm->nics[vm->nnics++];
			memset(n, 0, sizeof(*n));
			n->type = xstrdup(type);
			n->network = xml_child_text(xml_child(d, "backing"), "deviceName");
			n->mac = xml_child_text(d, "macAddress");
		}
	}
}

/* The memory state of a suspended VM, from its layoutEx.file list. */
static void
parse_suspend_file(const xmlNode *val, struct vs_vm *vm)
{
	xmlNode *f;

	for (f = val ? val->children : NULL; f != NULL; f = f->next) {
		char *type;
		uint64_t size;

		if (f->type != XML_ELEMENT_NODE)
			continue;
		type = xml_child_text(f, "type");
		if (type != NULL && strcmp(type, "suspend") == 0 && vm->suspend_file == NULL &&
		    xml_child_u64(f, "size", &size) == 0) {
			vm->suspend_file = xml_child_text(f, "name");
			vm->suspend_size = size;
		}
		free(type);
	}
}

int
vs_parse_vm_object(const xmlNode *objects, struct vs_vm *vm)
{
	xmlNode *snap;
	char *s;

	memset(vm, 0, sizeof(*vm));
	vm->moref = xml_child_text(objects, "obj");
	vm->name = prop_text(objects, "name");
	if (vm->moref == NULL || vm->name == NULL)
		return -1;
	vm->uuid = prop_text(objects, "config.uuid");
	vm->instance_uuid = prop_text(objects, "config.instanceUuid");
	vm->power = prop_text(objects, "runtime.powerState");
	vm->host = prop_text(objects, "runtime.host");
	vm->guest_id = prop_text(objects, "config.guestId");
	vm->version = prop_text(objects, "config.version");
	vm->vmx_path = prop_text(objects, "config.files.vmPathName");
	vm->annotation = prop_text(objects, "config.annotation");
	vm->cpus = prop_count(objects, "config.hardware.numCPU", VS_VM_MAX_CPUS, &vm->problem);
	vm->memory_mb = prop_count(objects, "config.hardware.memoryMB", VS_VM_MAX_MEMORY_MB, &vm->problem);
	s = prop_text(objects, "config.changeTrackingEnabled");
	vm->cbt = s != NULL && strcmp(s, "true") == 0;
	free(s);
	if (vm->vmx_path != NULL) {
		char *path = NULL;

		if (vs_split_ds_path(vm->vmx_path, &vm->datastore, &path) == 0)
			free(path);
	}
	parse_devices(prop_val(objects, "config.hardware.device"), &vm->disks, &vm->ndisks, vm);
	if (vm->problem == NULL)
		vm->problem = vs_disks_problem(vm->disks, vm->ndisks);
	snap = prop_val(objects, "snapshot");
	if (snap != NULL) {
		vm->current_snapshot = xml_child_text(snap, "currentSnapshot");
		parse_snapshot_tree(snap, "rootSnapshotList", NULL, vm);
	}
	parse_suspend_file(prop_val(objects, "layoutEx.file"), vm);
	return 0;
}

void
vs_vm_free(struct vs_vm *vm)
{
	size_t i;

	free(vm->moref);
	free(vm->name);
	free(vm->uuid);
	free(vm->instance_uuid);
	free(vm->power);
	free(vm->host);
	free(vm->host_name);
	free(vm->datacenter);
	free(vm->datastore);
	free(vm->vmx_path);
	free(vm->guest_id);
	free(vm->version);
	free(vm->annotation);
	free(vm->suspend_file);
	disks_free(vm->disks, vm->ndisks);
	for (i = 0; i < vm->ncontrollers; i++)
		free(vm->controllers[i].type);
	free(vm->controllers);
	for (i = 0; i < vm->nnics; i++) {
		free(vm->nics[i].type);
		free(vm->nics[i].network);
		free(vm->nics[i].mac);
	}
	free(vm->nics);
	for (i = 0; i < vm->nsnapshots; i++) {
		free(vm->snapshots[i].moref);
		free(vm->snapshots[i].name);
		free(vm->snapshots[i].description);
		free(vm->snapshots[i].parent);
	}
	free(vm->snapshots);
	free(vm->current_snapshot);
	free(vm->problem);
	memset(vm, 0, sizeof(*vm));
}

void
vs_inventory_free(struct vs_inventory *inv)
{
	size_t i;

	for (i = 0; i < inv->ndcs; i++) {
		free(inv->dcs[i].moref);
		free(inv->dcs[i].name);
		free(inv->dcs[i].vm_folder);
	}
	free(inv->dcs);
	for (i = 0; i < inv->nhosts; i++) {
		free(inv->hosts[i].moref);
		free(inv->hosts[i].name);
		free(inv->hosts[i].datacenter);
		free(inv->hosts[i].resource_pool);
		free(inv->hosts[i].cpu_model);
	}
	free(inv->hosts);
	for (i = 0; i < inv->ndatastores; i++) {
		free(inv->datastores[i].moref);
		free(inv->datastores[i].name);
		free(inv->datastores[i].datacenter);
		free(inv->datastores[i].url);
	}
	free(inv->datastores);
	for (i = 0; i < inv->nvms; i++)
		vs_vm_free(&inv->vms[i]);
	free(inv->vms);
	memset(inv, 0, sizeof(*inv));
}

const struct vs_vm *
vs_inventory_vm(const struct vs_inventory *inv, const char *name)
{
	size_t i;

	for (i = 0; i < inv->nvms; i++)
		if (strcmp(inv->vms[i].name, name) == 0)
			return &inv->vms[i];
	return NULL;
}

int
vs_split_ds_path(const char *ds_path, char **datastore, char **path)
{
	const char *close;

	if (ds_path == NULL || ds_path[0] != '[' || (close = strchr(ds_path, ']')) == NULL)
		return -1;
	*datastore = xstrndup(ds_path + 1, (size_t)(close - ds_path - 1));
	close++;
	while (*close == ' ')
		close++;
	*path = xstrdup(close);
	return 0;
}

static void
url_escape(struct sbuf *b, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) {
			sbuf_add(b, s, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			sbuf_add(b, e, 3);
		}
	}
}

char *
vs_folder_url(struct vs_client *c, const char *datacenter, const char *datastore, const char *path)
{
	struct sbuf b;

	sbuf_init(&b);
	sbuf_adds(&b, vs_base_url(c));
	sbuf_adds(&b, "/folder/");
	url_escape(&b, path, 1);
	sbuf_adds(&b, "?dcPath=");
	url_escape(&b, datacenter, 0);
	sbuf_adds(&b, "&dsName=");
	url_escape(&b, datastore, 0);
	return sbuf_steal(&b);
}

/* ---- inventory ---- */

static const char *const vm_paths[] = {
	"name", "config.uuid", "config.instanceUuid", "runtime.powerState", "runtime.host", "config.guestId",
	"config.version", "config.files.vmPathName", "config.hardware.numCPU", "config.hardware.memoryMB",
	"config.changeTrackingEnabled", "config.hardware.device", "snapshot", "config.annotation", NULL,
};
/* One VM read on its own also lists its files (for a suspended VM's memory state). */
static const char *const one_vm_paths[] = {
	"name", "config.uuid", "config.instanceUuid", "runtime.powerState", "runtime.host", "config.guestId",
	"config.version", "config.files.vmPathName", "config.hardware.numCPU", "config.hardware.memoryMB",
	"config.changeTrackingEnabled", "config.hardware.device", "snapshot", "config.annotation", "layoutEx.file", NULL,
};
static const char *const host_paths[] = { "name", "parent", "summary.hardware.cpuModel", NULL };
static const char *const ds_paths[] = { "name", "summary.capacity", "summary.freeSpace", "summary.url", NULL };
static const char *const cr_paths[] = { "resourcePool", NULL };
static const char *const dc_paths[] = { "name", "vmFolder", NULL };

static void inv_next_dc(struct vs_op *op);

static void
inv_add_object(struct vs_op *op, xmlNode *obj, const char *dc)
{
	struct vs_inventory *inv = op->out.inv;
	char type[64];
	char *moref = xml_child_ref(obj, "obj", type, sizeof(type));

	if (moref == NULL)
		return;
	if (strcmp(type, "Datacenter") == 0) {
		struct vs_datacenter *d;

		inv->dcs = xgrow(inv->dcs, inv->ndcs, sizeof(*inv->dcs));
		d = &inv->dcs[inv->ndcs++];
		d->moref = moref;
		d->name = prop_text(obj, "name");
		d->vm_folder = prop_text(obj, "vmFolder");
		if (d->name == NULL)
			d->name = xstrdup(moref);
		return;
	}
	if (strcmp(type, "VirtualMachine") == 0) {
		struct vs_vm vm;

		free(moref);
		if (vs_parse_vm_object(obj, &vm) != 0) {
			vs_vm_free(&vm);
			return;
		}
		vm.datacenter = xstrdup(dc);
		inv->vms = xgrow(inv->vms, inv->nvms, sizeof(*inv->vms));
		inv->vms[inv->nvms++] = vm;
		return;
	}
	if (strcmp(type, "HostSystem") == 0) {
		struct vs_host *h;

		inv->hosts = xgrow(inv->hosts, inv->nhosts, sizeof(*inv->hosts));
		h = &inv->hosts[inv->nhosts++];
		memset(h, 0, sizeof(*h));
		h->moref = moref;
		h->name = prop_text(obj, "name");
		h->datacenter = xstrdup(dc);
		h->cpu_model = prop_text(obj, "summary.hardware.cpuModel");
		/* Until its compute resource is seen: keep the parent moref. */
		h->resource_pool = prop_text(obj, "parent");
		return;
	}
	if (strcmp(type, "Datastore") == 0) {
		struct vs_datastore *d;

		inv->datastores = xgrow(inv->datastores, inv->ndatastores, sizeof(*inv->datastores));
		d = &inv->datastores[inv->ndatastores++];
		memset(d, 0, sizeof(*d));
		d->moref = moref;
		d->name = prop_text(obj, "name");
		d->datacenter = xstrdup(dc);
		d->capacity = prop_u64(obj, "summary.capacity");
		d->free = prop_u64(obj, "summary.freeSpace");
		d->url = prop_text(obj, "summary.url");
		return;
	}
	if (strstr(type, "ComputeResource") != NULL) {
		/* Hosts are matched to their pools once every page is in. */
		op->cr_ref = xgrow(op->cr_ref, op->ncr, sizeof(*op->cr_ref));
		op->cr_pool = xgrow(op->cr_pool, op->ncr, sizeof(*op->cr_pool));
		op->cr_ref[op->ncr] = moref;
		op->cr_pool[op->ncr] = prop_text(obj, "resourcePool");
		op->ncr++;
		return;
	}
	free(moref);
}

static void inv_page(struct vs_op *op, struct vs_result *res);

static void
inv_view_destroyed(struct vs_op *op, struct vs_result *res)
{
	op->dc_index++;
	inv_next_dc(op);
}

static void
inv_destroy_view(struct vs_op *op)
{
	struct soap_req req;

	soap_req_init(&req, "DestroyView", "ContainerView", op->view);
	free(op->view);
	op->view = NULL;
	op_call(op, &req, inv_view_destroyed);
}

static void
inv_page(struct vs_op *op, struct vs_result *res)
{
	xmlNode *rv = returnval(res), *obj;
	const char *dc = op->dc_index < op->out.inv->ndcs ? op->out.inv->dcs[op->dc_index].name : "";
	char *token;
	struct soap_req req;
	uint64_t n = 0;

	op->out.inv->pages++;
	op->out.pages++;
	for (obj = xml_child(rv, "objects"); obj != NULL; obj = xml_next(obj, "objects")) {
		inv_add_object(op, obj, op->dc ? dc : "");
		n++;
	}
	op->objects += n;
	token = xml_child_text(rv, "token");
	/* A server that never stops paging must not hold us forever. */
	if (op->objects > VS_INV_MAX_OBJECTS ||
	    (token != NULL && *token != '\0' && n == 0 && ++op->empty_pages > VS_INV_MAX_EMPTY_PAGES)) {
		op_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: the inventory is too large: %llu objects in %llu pages (%llu empty)%s; at most %d "
		              "objects are read",
		        vs_config(op->c)->name, (unsigned long long)op->objects, (unsigned long long)op->out.pages,
		        (unsigned long long)op->empty_pages, token != NULL && *token != '\0' ? " and more announced" : "",
		        VS_INV_MAX_OBJECTS));
		free(token);
		return;
	}
	if (token != NULL && *token != '\0') {
		soap_req_init(&req, "ContinueRetrievePropertiesEx", "PropertyCollector",
		    vs_service(op->c)->property_collector);
		soap_add(&req, NULL, "token", token);
		free(token);
		op_call(op, &req, inv_page);
		return;
	}
	free(token);
	inv_destroy_view(op);
}

static void
inv_view_created(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;
	xmlNode *spec;

	free(op->view);
	op->view = xml_child_text(res->reply.body_child, "returnval");
	if (op->view == NULL) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: CreateContainerView returned no view", vs_config(op->c)->name));
		return;
	}
	soap_req_init(&req, "RetrievePropertiesEx", "PropertyCollector", vs_service(op->c)->property_collector);
	spec = soap_add(&req, NULL, "specSet", NULL);
	if (op->dc == NULL) {
		add_propset(&req, spec, "Datacenter", dc_paths);
	} else {
		add_propset(&req, spec, "VirtualMachine", vm_paths);
		add_propset(&req, spec, "HostSystem", host_paths);
		add_propset(&req, spec, "Datastore", ds_paths);
		add_propset(&req, spec, "ComputeResource", cr_paths);
	}
	add_objectset_view(&req, spec, op->view);
	add_options(&req, op->page_size);
	op_call(op, &req, inv_page);
}

static void
inv_create_view(struct vs_op *op, const char *container_type, const char *container, const char *const *types)
{
	struct soap_req req;

	soap_req_init(&req, "CreateContainerView", "ViewManager", vs_service(op->c)->view_manager);
	soap_add_ref(&req, NULL, "container", container_type, container);
	for (; *types != NULL; types++)
		soap_add(&req, NULL, "type", *types);
	soap_add_bool(&req, NULL, "recursive", 1);
	op_call(op, &req, inv_view_created);
}

static void
inv_finish(struct vs_op *op)
{
	struct vs_inventory *inv = op->out.inv;
	size_t i, k;

	/* Hosts hold their parent compute resource's moref until here. */
	for (i = 0; i < inv->nhosts; i++) {
		char *pool = NULL;

		for (k = 0; k < op->ncr && inv->hosts[i].resource_pool != NULL; k++)
			if (strcmp(op->cr_ref[k], inv->hosts[i].resource_pool) == 0 && op->cr_pool[k] != NULL)
				pool = xstrdup(op->cr_pool[k]);
		free(inv->hosts[i].resource_pool);
		inv->hosts[i].resource_pool = pool;
	}
	for (i = 0; i < inv->nvms; i++)
		for (k = 0; k < inv->nhosts; k++)
			if (inv->vms[i].host != NULL && strcmp(inv->vms[i].host, inv->hosts[k].moref) == 0)
				inv->vms[i].host_name = xstrdup(inv->hosts[k].name ? inv->hosts[k].name : "");
	op->out.status = VS_OK;
	op_finish(op);
}

static void
inv_next_dc(struct vs_op *op)
{
	static const char *const types[] = { "VirtualMachine", "HostSystem", "Datastore", "ComputeResource", NULL };

	if (op->dc == NULL) {
		/* The datacenters are known: now each one's contents. */
		op->dc = xstrdup("");
		op->dc_index = 0;
	}
	if (op->dc_index >= op->out.inv->ndcs) {
		inv_finish(op);
		return;
	}
	inv_create_view(op, "Datacenter", op->out.inv->dcs[op->dc_index].moref, types);
}

static void
inv_logged_in(struct vs_result *res, void *arg)
{
	static const char *const types[] = { "Datacenter", NULL };
	struct vs_op *op = arg;

	op->call = NULL;
	if (res->status != VS_OK) {
		op_fail_res(op, res);
		return;
	}
	inv_create_view(op, "Folder", vs_service(op->c)->root_folder, types);
}

struct vs_op *
vs_get_inventory(struct vs_client *c, int page_size, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(c, done, arg);

	op->page_size = page_size > 0 ? page_size : 100;
	op->out.inv = xcalloc(1, sizeof(*op->out.inv));
	/* The service content (root folder, view manager) comes with login. */
	op->call = vs_login(c, inv_logged_in, op);
	return op;
}

/* ---- one VM, one snapshot's disks ---- */

static void
vm_props_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *obj = xml_child(returnval(res), "objects");

	op->out.vm = xcalloc(1, sizeof(*op->out.vm));
	if (obj == NULL || vs_parse_vm_object(obj, op->out.vm) != 0) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: no properties returned for VM %s", vs_config(op->c)->name, op->vm));
		return;
	}
	if (op->out.vm->problem != NULL) {
		op_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: VM %s: unusable answer: %s", vs_config(op->c)->name, op->vm, op->out.vm->problem));
		return;
	}
	op->out.status = VS_OK;
	op_finish(op);
}

static void
retrieve_obj(struct vs_op *op, const char *type, const char *ref, const char *const *paths, op_step_fn next)
{
	struct soap_req req;
	xmlNode *spec;

	soap_req_init(&req, "RetrievePropertiesEx", "PropertyCollector", vs_service(op->c)->property_collector);
	spec = soap_add(&req, NULL, "specSet", NULL);
	add_propset(&req, spec, type, paths);
	add_objectset_obj(&req, spec, type, ref);
	add_options(&req, 0);
	op_call(op, &req, next);
}

/* Ops that need the service content first log in, then run their step. */
static void
op_after_login(struct vs_result *res, void *arg)
{
	struct vs_op *op = arg;

	op->call = NULL;
	if (res->status != VS_OK) {
		op_fail_res(op, res);
		return;
	}
	op->next(op, res);
}

static struct vs_op *
op_start(struct vs_client *c, vs_op_fn done, void *arg, op_step_fn first)
{
	struct vs_op *op = op_new(c, done, arg);

	op->next = first;
	op->call = vs_login(c, op_after_login, op);
	return op;
}

static void
vm_start(struct vs_op *op, struct vs_result *res)
{
	retrieve_obj(op, "VirtualMachine", op->vm, one_vm_paths, vm_props_done);
}

struct vs_op *
vs_get_vm(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, vm_start);

	op->vm = xstrdup(vm_moref);
	return op;
}

static void
snapdisks_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *obj = xml_child(returnval(res), "objects");
	char *problem;

	if (obj == NULL) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: snapshot %s has no configuration", vs_config(op->c)->name, op->snap));
		return;
	}
	parse_devices(prop_val(obj, "config.hardware.device"), &op->out.disks, &op->out.ndisks, NULL);
	if ((problem = vs_disks_problem(op->out.disks, op->out.ndisks)) != NULL) {
		op_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: snapshot %s: unusable answer: %s", vs_config(op->c)->name, op->snap, problem));
		free(problem);
		return;
	}
	op->out.status = VS_OK;
	op_finish(op);
}

static void
snapdisks_start(struct vs_op *op, struct vs_result *res)
{
	static const char *const paths[] = { "config.hardware.device", NULL };

	retrieve_obj(op, "VirtualMachineSnapshot", op->snap, paths, snapdisks_done);
}

struct vs_op *
vs_snapshot_disks(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, snapdisks_start);

	op->snap = xstrdup(snap_moref);
	return op;
}

/* ---- tasks ---- */

static void task_poll(struct vs_op *op);

static void
task_info_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *info = prop_val(xml_child(returnval(res), "objects"), "info");
	char *state = info ? xml_child_text(info, "state") : NULL;

	if (state == NULL) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: task %s has no state", vs_config(op->c)->name, op->task));
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
		op_fail(op, VS_FAULT, ft,
		    xasprintf("%s: task %s failed: %s%s%s", vs_config(op->c)->name, name ? name : op->task,
		        ft ? ft : "", ft && msg && *msg ? ": " : "", msg ? msg : ""));
		free(msg);
		free(name);
		return;
	}
	if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0) {
		/* Polling on would never end. */
		char *q = quote_value(state);

		free(state);
		op_fail(op, VS_BADREPLY, NULL,
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

	retrieve_obj(op, "Task", op->task, paths, task_info_done);
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
static void
task_started(struct vs_op *op, struct vs_result *res)
{
	static const char *const paths[] = { "info", NULL };

	free(op->task);
	op->task = xml_child_text(res->reply.body_child, "returnval");
	if (op->task == NULL) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: no task returned", vs_config(op->c)->name));
		return;
	}
	retrieve_obj(op, "Task", op->task, paths, task_info_done);
}

static void
task_result_moref(struct vs_op *op, xmlNode *info)
{
	op->out.moref = xml_child_text(info, "result");
	op->out.status = VS_OK;
	op_finish(op);
}

static void
task_result_none(struct vs_op *op, xmlNode *info)
{
	op->out.status = VS_OK;
	op_finish(op);
}

/* ---- snapshots, CBT, power ---- */

/* A *_Task method that takes nothing but its object, waited for. */
static void
simple_task_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	soap_req_init(&req, op->task_method, op->task_type, op->path);
	op->after_task = task_result_none;
	op_call(op, &req, task_started);
}

static struct vs_op *
simple_task(struct vs_client *c, const char *method, const char *type, const char *ref, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, simple_task_start);

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
	op->after_task = task_result_none;
	op_call(op, &req, task_started);
}

static void
extra_config_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;
	xmlNode *spec, *opt;

	soap_req_init(&req, "ReconfigVM_Task", "VirtualMachine", op->vm);
	spec = soap_add(&req, NULL, "spec", NULL);
	opt = soap_add_typed(&req, spec, "extraConfig", "OptionValue", NULL);
	soap_add(&req, opt, "key", op->key);
	soap_add_typed(&req, opt, "value", "xsd:string", op->value);
	op->after_task = task_result_none;
	op_call(op, &req, task_started);
}

struct vs_op *
vs_set_extra_config(struct vs_client *c, const char *vm_moref, const char *key, const char *value, vs_op_fn done,
    void *arg)
{
	struct vs_op *op = op_start(c, done, arg, extra_config_start);

	op->vm = xstrdup(vm_moref);
	op->key = xstrdup(key);
	op->value = xstrdup(value);
	return op;
}

struct vs_op *
vs_enable_cbt(struct vs_client *c, const char *vm_moref, int enable, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, cbt_start);

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
	op->after_task = task_result_moref;
	op_call(op, &req, task_started);
}

struct vs_op *
vs_create_snapshot(struct vs_client *c, const char *vm_moref, const char *name, const char *desc, int memory,
    int quiesce, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, snap_create_start);

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
	op->after_task = task_result_none;
	op_call(op, &req, task_started);
}

struct vs_op *
vs_remove_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, snap_remove_start);

	op->snap = xstrdup(snap_moref);
	return op;
}

struct vs_op *
vs_revert_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg)
{
	return simple_task(c, "RevertToSnapshot_Task", "VirtualMachineSnapshot", snap_moref, done, arg);
}

static void
power_done_plain(struct vs_op *op, struct vs_result *res)
{
	op->out.status = VS_OK;
	op_finish(op);
}

static void
power_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	if (strcmp(op->path, "shutdown") == 0) {
		/* ShutdownGuest asks the guest; it is not a task. */
		soap_req_init(&req, "ShutdownGuest", "VirtualMachine", op->vm);
		op_call(op, &req, power_done_plain);
		return;
	}
	soap_req_init(&req,
	    strcmp(op->path, "on") == 0        ? "PowerOnVM_Task"
	    : strcmp(op->path, "suspend") == 0 ? "SuspendVM_Task"
	                                       : "PowerOffVM_Task",
	    "VirtualMachine", op->vm);
	op->after_task = task_result_none;
	op_call(op, &req, task_started);
}

struct vs_op *
vs_power(struct vs_client *c, const char *vm_moref, const char *how, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_start(c, done, arg, power_start);

	op->vm = xstrdup(vm_moref);
	op->path = xstrdup(how);
	return op;
}

struct vs_op *
vs_destroy(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg)
{
	return simple_task(c, "Destroy_Task", "VirtualMachine", vm_moref, done, arg);
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
			char *qs = quote_value(ts), *ql = quote_value(tl);

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
	if (vs_parse_changes(returnval(res), op->offset, op->capacity, &op->out.extents, &op->out.nextents, &op->offset,
	        &err) != 0) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: %s", vs_config(op->c)->name, err));
		free(err);
		return;
	}
	vs_extents_normalize(op->out.extents, &op->out.nextents, VS_CBT_MAX_EXTENTS, &op->out.merge_gap);
	if (op->offset < op->capacity && op->out.pages >= qca_max_pages(op->capacity)) {
		op_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: QueryChangedDiskAreas still at offset %llu of %llu after %llu replies: the server's "
		              "replies cover too little",
		        vs_config(op->c)->name, (unsigned long long)op->offset, (unsigned long long)op->capacity,
		        (unsigned long long)op->out.pages));
		return;
	}
	if (op->offset >= op->capacity) {
		op->out.status = VS_OK;
		op_finish(op);
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
	op_call(op, &req, qca_page);
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
	struct vs_op *op = op_start(c, done, arg, qca_start);

	op->vm = xstrdup(vm_moref);
	op->snap = xstrdup(snap_moref);
	op->disk_key = disk_key;
	op->change_id = xstrdup(change_id);
	op->capacity = capacity;
	return op;
}

/* ---- creating a VM ---- */

static void
create_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req *req = op->pending;

	op->pending = NULL;
	op->after_task = task_result_moref;
	op_call(op, req, task_started);
	free(req);
}

struct vs_op *
vs_create_vm(struct vs_client *c, const struct vs_vm_spec *s, vs_op_fn done, void *arg)
{
	struct soap_req *req = xcalloc(1, sizeof(*req));
	xmlNode *cfg, *files, *dc, *dev, *back;
	struct vs_op *op;
	char buf[64], *ds = xasprintf("[%s]", s->datastore);
	size_t i;
	int unit;

	soap_req_init(req, "CreateVM_Task", "Folder", s->datacenter_vm_folder);
	cfg = soap_add(req, NULL, "config", NULL);
	soap_add(req, cfg, "name", s->name);
	if (s->version != NULL)
		soap_add(req, cfg, "version", s->version);
	soap_add(req, cfg, "guestId", s->guest_id ? s->guest_id : "otherGuest64");
	if (s->annotation != NULL)
		soap_add(req, cfg, "annotation", s->annotation);
	files = soap_add(req, cfg, "files", NULL);
	soap_add(req, files, "vmPathName", ds);
	snprintf(buf, sizeof(buf), "%d", s->cpus > 0 ? s->cpus : 1);
	soap_add(req, cfg, "numCPUs", buf);
	snprintf(buf, sizeof(buf), "%d", s->memory_mb > 0 ? s->memory_mb : 128);
	soap_add(req, cfg, "memoryMB", buf);

	/* One paravirtual SCSI controller holds the disks, in source order. */
	dc = soap_add(req, cfg, "deviceChange", NULL);
	soap_add(req, dc, "operation", "add");
	dev = soap_add_typed(req, dc, "device", "ParaVirtualSCSIController", NULL);
	soap_add(req, dev, "key", "-100");
	soap_add(req, dev, "busNumber", "0");
	soap_add(req, dev, "sharedBus", "noSharing");
	for (i = 0, unit = 0; i < s->ndisks; i++, unit++) {
		if (unit == 7) /* the controller's own unit */
			unit++;
		dc = soap_add(req, cfg, "deviceChange", NULL);
		soap_add(req, dc, "operation", "add");
		soap_add(req, dc, "fileOperation", "create");
		dev = soap_add_typed(req, dc, "device", "VirtualDisk", NULL);
		snprintf(buf, sizeof(buf), "%d", -200 - (int)i);
		soap_add(req, dev, "key", buf);
		back = soap_add_typed(req, dev, "backing", "VirtualDiskFlatVer2BackingInfo", NULL);
		soap_add(req, back, "fileName", ds);
		soap_add(req, back, "diskMode", "persistent");
		soap_add_bool(req, back, "thinProvisioned", 1);
		soap_add(req, dev, "controllerKey", "-100");
		snprintf(buf, sizeof(buf), "%d", unit);
		soap_add(req, dev, "unitNumber", buf);
		soap_add_u64(req, dev, "capacityInKB", (s->disk_capacities[i] + 1023) / 1024);
		soap_add_u64(req, dev, "capacityInBytes", s->disk_capacities[i]);
	}
	for (i = 0; i < s->nnics; i++) {
		dc = soap_add(req, cfg, "deviceChange", NULL);
		soap_add(req, dc, "operation", "add");
		dev = soap_add_typed(req, dc, "device", "VirtualVmxnet3", NULL);
		snprintf(buf, sizeof(buf), "%d", -300 - (int)i);
		soap_add(req, dev, "key", buf);
		back = soap_add_typed(req, dev, "backing", "VirtualEthernetCardNetworkBackingInfo", NULL);
		soap_add(req, back, "deviceName", s->networks[i]);
	}
	soap_add_ref(req, NULL, "pool", "ResourcePool", s->resource_pool);
	if (s->host != NULL)
		soap_add_ref(req, NULL, "host", "HostSystem", s->host);
	free(ds);

	op = op_start(c, done, arg, create_start);
	op->pending = req;
	return op;
}

/* ---- datastore files ---- */

static void file_get(struct vs_op *op);

static void
file_relogged(struct vs_result *res, void *arg)
{
	struct vs_op *op = arg;

	op->call = NULL;
	if (res->status != VS_OK) {
		op_fail_res(op, res);
		return;
	}
	file_get(op);
}

static void
file_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	file_get(arg);
}

/* A GET that may work when repeated (connection trouble, a body cut
 * short, HTTP 5xx or 429): again after a backoff, until the client's
 * retry window is spent; only then is the peer unreachable. */
static void
file_transient(struct vs_op *op, char *msg)
{
	struct timeval tv;

	if (now_mono() - op->first_try + op->backoff > vs_config(op->c)->retry_window_s) {
		op_fail(op, VS_UNREACHABLE, NULL, msg);
		return;
	}
	log_debug("%s; retrying in %.2f s", msg, op->backoff);
	free(msg);
	if (op->timer == NULL)
		op->timer = evtimer_new(loop_base(), file_retry_cb, op);
	tv.tv_sec = (long)op->backoff;
	tv.tv_usec = (long)((op->backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(op->timer, &tv);
	op->backoff = op->backoff * 2 > FILE_BACKOFF_MAX_S ? FILE_BACKOFF_MAX_S : op->backoff * 2;
}

static void
file_http_done(struct http_req *h, void *arg)
{
	struct vs_op *op = arg;
	long st = http_status(h);
	const char *body;
	size_t len;

	op->http = NULL;
	if (http_transport_failed(h)) {
		int tls = http_tls_refused(h);
		int too_large = http_too_large(h);
		char *msg = xasprintf("%s: GET [%s] %s: %s", vs_config(op->c)->name, op->ds, op->path, http_error(h));

		http_free(h);
		/* A refused certificate is a refusal, not a lost peer; a file
		 * larger than the limit would be as large again. */
		if (tls)
			op_fail(op, VS_TLS, NULL, msg);
		else if (too_large)
			op_fail(op, VS_BADREPLY, NULL, msg);
		else
			file_transient(op, msg);
		return;
	}
	if (st == 401 && !op->relogged) {
		http_free(h);
		op->relogged = 1;
		op->call = vs_relogin(op->c, file_relogged, op);
		return;
	}
	if (st != 200) {
		char *msg = xasprintf("%s: GET [%s] %s: HTTP %ld", vs_config(op->c)->name, op->ds, op->path, st);

		http_free(h);
		if (st >= 500 || st == 429)
			file_transient(op, msg);
		else
			op_fail(op, VS_FAULT, st == 404 ? "FileNotFound" : NULL, msg);
		return;
	}
	body = http_body(h, &len);
	op->out.data = xstrndup(body, len);
	op->out.len = len;
	http_free(h);
	op->out.status = VS_OK;
	op_finish(op);
}

static void
file_get(struct vs_op *op)
{
	char *url = vs_folder_url(op->c, op->dc, op->ds, op->path);
	struct http_req *h = http_new("GET", url);

	free(url);
	if (op->first_try == 0)
		op->first_try = now_mono();
	http_set_tls(h, &vs_config(op->c)->tls);
	if (vs_cookie(op->c) != NULL)
		http_set_cookie(h, vs_cookie(op->c));
	http_set_max_body(h, FILE_MAX);
	http_set_timeout(h, FILE_TIMEOUT_MS);
	op->http = h;
	if (http_start(h, file_http_done, op) != 0) {
		op->http = NULL;
		http_free(h);
		op_fail(op, VS_UNREACHABLE, NULL, xstrdup("could not start the request"));
	}
}

static void
file_start(struct vs_op *op, struct vs_result *res)
{
	file_get(op);
}

struct vs_op *
vs_get_file(struct vs_client *c, const char *datacenter, const char *datastore, const char *path, vs_op_fn done,
    void *arg)
{
	struct vs_op *op = op_start(c, done, arg, file_start);

	op->dc = xstrdup(datacenter);
	op->ds = xstrdup(datastore);
	op->path = xstrdup(path);
	op->backoff = FILE_BACKOFF_FIRST_S;
	return op;
}
