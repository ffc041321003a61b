#include "drivers/vsops.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/http.h"
#include "engine/log.h"
#include "engine/loop.h"
#include "engine/util.h"

#define TASK_POLL_FIRST_MS 20
#define TASK_POLL_MAX_MS 1000
#define FILE_MAX (1u << 20)

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
	/* Per-operation state. */
	char *vm;
	char *snap;
	char *task;
	char *view;
	char *change_id;
	char *dc, *ds, *path;
	int disk_key;
	int page_size;
	int poll_ms;
	int relogged;
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
	size_t i;

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
	for (i = 0; i < o->ndisks; i++) {
		free(o->disks[i].label);
		free(o->disks[i].file);
		free(o->disks[i].mode);
		free(o->disks[i].change_id);
		free(o->disks[i].uuid);
	}
	free(o->disks);
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
	if (op != NULL)
		op_free(op);
}

static void
op_finish(struct vs_op *op)
{
	op->call = NULL;
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

static uint64_t
prop_u64(const xmlNode *objects, const char *name)
{
	char *s = prop_text(objects, name);
	uint64_t v = s ? strtoull(s, NULL, 10) : 0;

	free(s);
	return v;
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
		vm->snapshots = xreallocarray(vm->snapshots, vm->nsnapshots + 1, sizeof(*vm->snapshots));
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

			*disks = xreallocarray(*disks, *ndisks + 1, sizeof(**disks));
			k = &(*disks)[(*ndisks)++];
			memset(k, 0, sizeof(*k));
			if (xml_child_i64(d, "key", &v) == 0)
				k->key = (int)v;
			k->label = xml_child_text(xml_child(d, "deviceInfo"), "label");
			k->file = xml_child_text(b, "fileName");
			k->mode = xml_child_text(b, "diskMode");
			k->uuid = xml_child_text(b, "uuid");
			k->change_id = xml_child_text(b, "changeId");
			if (xml_child_u64(d, "capacityInBytes", &k->capacity) != 0 &&
			    xml_child_u64(d, "capacityInKB", &k->capacity) == 0)
				k->capacity *= 1024;
			if (xml_child_i64(d, "controllerKey", &v) == 0)
				k->controller_key = (int)v;
			if (xml_child_i64(d, "unitNumber", &v) == 0)
				k->unit = (int)v;
		} else if (vm != NULL && strstr(type, "Controller") != NULL && strstr(type, "SCSI") != NULL) {
			struct vs_controller *ct;

			vm->controllers = xreallocarray(vm->controllers, vm->ncontrollers + 1, sizeof(*vm->controllers));
			ct = &vm->controllers[vm->ncontrollers++];
			memset(ct, 0, sizeof(*ct));
			ct->type = xstrdup(type);
			if (xml_child_i64(d, "key", &v) == 0)
				ct->key = (int)v;
			if (xml_child_i64(d, "busNumber", &v) == 0)
				ct->bus = (int)v;
		} else if (vm != NULL && xml_child(d, "macAddress") != NULL) {
			struct vs_nic *n;

			vm->nics = xreallocarray(vm->nics, vm->nnics + 1, sizeof(*vm->nics));
			n = &vm->nics[vm->nnics++];
			memset(n, 0, sizeof(*n));
			n->type = xstrdup(type);
			n->network = xml_child_text(xml_child(d, "backing"), "deviceName");
			n->mac = xml_child_text(d, "macAddress");
		}
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
	vm->cpus = (int)prop_u64(objects, "config.hardware.numCPU");
	vm->memory_mb = (int)prop_u64(objects, "config.hardware.memoryMB");
	s = prop_text(objects, "config.changeTrackingEnabled");
	vm->cbt = s != NULL && strcmp(s, "true") == 0;
	free(s);
	if (vm->vmx_path != NULL) {
		char *path = NULL;

		if (vs_split_ds_path(vm->vmx_path, &vm->datastore, &path) == 0)
			free(path);
	}
	parse_devices(prop_val(objects, "config.hardware.device"), &vm->disks, &vm->ndisks, vm);
	snap = prop_val(objects, "snapshot");
	if (snap != NULL) {
		vm->current_snapshot = xml_child_text(snap, "currentSnapshot");
		parse_snapshot_tree(snap, "rootSnapshotList", NULL, vm);
	}
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
	for (i = 0; i < vm->ndisks; i++) {
		free(vm->disks[i].label);
		free(vm->disks[i].file);
		free(vm->disks[i].mode);
		free(vm->disks[i].change_id);
		free(vm->disks[i].uuid);
	}
	free(vm->disks);
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

		inv->dcs = xreallocarray(inv->dcs, inv->ndcs + 1, sizeof(*inv->dcs));
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
		inv->vms = xreallocarray(inv->vms, inv->nvms + 1, sizeof(*inv->vms));
		inv->vms[inv->nvms++] = vm;
		return;
	}
	if (strcmp(type, "HostSystem") == 0) {
		struct vs_host *h;

		inv->hosts = xreallocarray(inv->hosts, inv->nhosts + 1, sizeof(*inv->hosts));
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

		inv->datastores = xreallocarray(inv->datastores, inv->ndatastores + 1, sizeof(*inv->datastores));
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
		op->cr_ref = xreallocarray(op->cr_ref, op->ncr + 1, sizeof(*op->cr_ref));
		op->cr_pool = xreallocarray(op->cr_pool, op->ncr + 1, sizeof(*op->cr_pool));
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

	op->out.inv->pages++;
	op->out.pages++;
	for (obj = xml_child(rv, "objects"); obj != NULL; obj = xml_next(obj, "objects"))
		inv_add_object(op, obj, op->dc ? dc : "");
	token = xml_child_text(rv, "token");
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
	retrieve_obj(op, "VirtualMachine", op->vm, vm_paths, vm_props_done);
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

	if (obj == NULL) {
		op_fail(op, VS_BADREPLY, NULL, xasprintf("%s: snapshot %s has no configuration", vs_config(op->c)->name, op->snap));
		return;
	}
	parse_devices(prop_val(obj, "config.hardware.device"), &op->out.disks, &op->out.ndisks, NULL);
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
	soap_req_init(&req, strcmp(op->path, "on") == 0 ? "PowerOnVM_Task" : "PowerOffVM_Task", "VirtualMachine", op->vm);
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

		if (xml_child_u64(a, "start", &s) != 0 || xml_child_u64(a, "length", &l) != 0 || l == 0)
			continue;
		if (s >= capacity)
			continue;
		if (l > capacity - s)
			l = capacity - s;
		last = *n ? &(*ext)[*n - 1] : NULL;
		if (last != NULL && last->start + last->length >= s) {
			/* Adjacent or overlapping: coalesce. */
			if (s + l > last->start + last->length)
				last->length = s + l - last->start;
			continue;
		}
		*ext = xreallocarray(*ext, *n + 1, sizeof(**ext));
		(*ext)[*n].start = s;
		(*ext)[*n].length = l;
		(*n)++;
	}
	*next = start + len;
	return 0;
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
file_http_done(struct http_req *h, void *arg)
{
	struct vs_op *op = arg;
	long st = http_status(h);
	const char *body;
	size_t len;

	op->http = NULL;
	if (http_transport_failed(h)) {
		char *msg = xasprintf("%s: GET %s: %s", vs_config(op->c)->name, op->path, http_error(h));

		http_free(h);
		op_fail(op, VS_UNREACHABLE, NULL, msg);
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
		op_fail(op, st >= 500 ? VS_UNREACHABLE : VS_FAULT, st == 404 ? "FileNotFound" : NULL, msg);
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
	http_set_tls(h, &vs_config(op->c)->tls);
	if (vs_cookie(op->c) != NULL)
		http_set_cookie(h, vs_cookie(op->c));
	http_set_max_body(h, FILE_MAX);
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
	return op;
}
