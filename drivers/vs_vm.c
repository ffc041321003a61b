/* VM creation and power: CreateVM_Task, power on/off/suspend and guest
 * shutdown, extraConfig through ReconfigVM_Task, Destroy_Task, and attaching
 * an existing disk to a VM (hot-add) and detaching it. */
#include "drivers/vsops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops_private.h"
#include "engine/core/util.h"

/* ---- reconfiguration, power, destruction ---- */

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
	op->after_task = vsop_task_result_none;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vs_set_extra_config(struct vs_client *c, const char *vm_moref, const char *key, const char *value, vs_op_fn done,
    void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, extra_config_start);

	op->vm = xstrdup(vm_moref);
	op->key = xstrdup(key);
	op->value = xstrdup(value);
	return op;
}

static void
power_done_plain(struct vs_op *op, struct vs_result *res)
{
	op->out.status = VS_OK;
	vsop_finish(op);
}

static void
power_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req req;

	if (strcmp(op->path, "shutdown") == 0) {
		/* ShutdownGuest asks the guest; it is not a task. */
		soap_req_init(&req, "ShutdownGuest", "VirtualMachine", op->vm);
		vsop_call(op, &req, power_done_plain);
		return;
	}
	soap_req_init(&req,
	    strcmp(op->path, "on") == 0        ? "PowerOnVM_Task"
	    : strcmp(op->path, "suspend") == 0 ? "SuspendVM_Task"
	                                       : "PowerOffVM_Task",
	    "VirtualMachine", op->vm);
	op->after_task = vsop_task_result_none;
	vsop_call(op, &req, vsop_task_started);
}

struct vs_op *
vs_power(struct vs_client *c, const char *vm_moref, const char *how, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, power_start);

	op->vm = xstrdup(vm_moref);
	op->path = xstrdup(how);
	return op;
}

/* ---- attaching an existing disk to a VM, and detaching it (hot-add) ---- */

/* Send the task request built before login; after(op, info) reads its result. */
static void
pending_start(struct vs_op *op, void (*after)(struct vs_op *op, xmlNode *info))
{
	struct soap_req *req = op->pending;

	op->pending = NULL;
	op->after_task = after;
	vsop_call(op, req, vsop_task_started);
	free(req);
}

static void
reconfig_pending_start(struct vs_op *op, struct vs_result *res)
{
	pending_start(op, vsop_task_result_none);
}

/* A VirtualDisk of the existing file, at a controller and unit. */
static xmlNode *
disk_change(struct soap_req *req, xmlNode *spec, const char *operation, int key, const char *file, int controller_key,
    int unit, uint64_t capacity)
{
	xmlNode *dc = soap_add(req, spec, "deviceChange", NULL), *dev, *back;
	char buf[32];

	soap_add(req, dc, "operation", operation);
	/* No fileOperation: the file is neither made nor destroyed. */
	dev = soap_add_typed(req, dc, "device", "VirtualDisk", NULL);
	snprintf(buf, sizeof(buf), "%d", key);
	soap_add(req, dev, "key", buf);
	back = soap_add_typed(req, dev, "backing", "VirtualDiskFlatVer2BackingInfo", NULL);
	soap_add(req, back, "fileName", file);
	soap_add(req, back, "diskMode", "persistent");
	snprintf(buf, sizeof(buf), "%d", controller_key);
	soap_add(req, dev, "controllerKey", buf);
	snprintf(buf, sizeof(buf), "%d", unit);
	soap_add(req, dev, "unitNumber", buf);
	soap_add_u64(req, dev, "capacityInKB", capacity / 1024);
	return dev;
}

static struct vs_op *
disk_reconfig(struct vs_client *c, const char *vm_moref, const char *operation, int key, const char *file,
    int controller_key, int unit, uint64_t capacity, vs_op_fn done, void *arg)
{
	struct soap_req *req = xcalloc(1, sizeof(*req));
	struct vs_op *op;
	xmlNode *spec;

	soap_req_init(req, "ReconfigVM_Task", "VirtualMachine", vm_moref);
	spec = soap_add(req, NULL, "spec", NULL);
	disk_change(req, spec, operation, key, file, controller_key, unit, capacity);
	op = vsop_start(c, done, arg, reconfig_pending_start);
	op->pending = req;
	return op;
}

struct vs_op *
vs_attach_disk(struct vs_client *c, const char *vm_moref, const char *file, int controller_key, int unit,
    uint64_t capacity, vs_op_fn done, void *arg)
{
	return disk_reconfig(c, vm_moref, "add", -100, file, controller_key, unit, capacity, done, arg);
}

struct vs_op *
vs_detach_disk(struct vs_client *c, const char *vm_moref, const struct vs_disk *d, vs_op_fn done, void *arg)
{
	return disk_reconfig(c, vm_moref, "remove", d->key, d->file, d->controller_key, d->unit, d->capacity, done,
	    arg);
}

struct vs_op *
vs_destroy(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg)
{
	return vsop_simple_task(c, "Destroy_Task", "VirtualMachine", vm_moref, done, arg);
}

/* ---- creating a VM ---- */

static void
create_start(struct vs_op *op, struct vs_result *res)
{
	pending_start(op, vsop_task_result_moref);
}

/* Controllers every VM has: referred to by the keys vSphere gives them
 * (IDE 200 + bus, SIO 400), never added. */
static int
ctrl_is_default(enum vs_ctrl_kind k)
{
	return k == VS_CTRL_IDE || k == VS_CTRL_SIO;
}

/* The key controller i has in the new VM's spec. */
static int
ctrl_new_key(const struct vs_controller *c, size_t i)
{
	if (c->kind == VS_CTRL_IDE)
		return 200 + c->bus;
	if (c->kind == VS_CTRL_SIO)
		return 400;
	return -100 - (int)i;
}

/* The new key of the controller that has key src_key in the spec, or 0. */
static int
ctrl_map(const struct vs_vm_spec *s, int src_key, const struct vs_controller **out)
{
	size_t i;

	for (i = 0; i < s->ncontrollers; i++)
		if (s->controllers[i].key == src_key) {
			if (out != NULL)
				*out = &s->controllers[i];
			if (s->controllers[i].kind == VS_CTRL_OTHER)
				return 0;
			return ctrl_new_key(&s->controllers[i], i);
		}
	return 0;
}

/* A device at (controller, unit): checked against every other one. */
struct place {
	const char *what;
	size_t index;
	int controller_key;
	int unit;
};

static char *
place_problem(const struct vs_vm_spec *s, const struct place *p, size_t n)
{
	const struct vs_controller *c = NULL;
	size_t i, k;

	for (i = 0; i < n; i++) {
		c = NULL;
		if (ctrl_map(s, p[i].controller_key, &c) == 0)
			return xasprintf("%s %zu is on controller %d, which %s", p[i].what, p[i].index, p[i].controller_key,
			    c != NULL ? "is of a kind that cannot be created" : "the VM does not have");
		if (p[i].unit < 0 || p[i].unit > 64)
			return xasprintf("%s %zu has unit number %d", p[i].what, p[i].index, p[i].unit);
		for (k = 0; k < i; k++)
			if (p[k].controller_key == p[i].controller_key && p[k].unit == p[i].unit)
				return xasprintf("%s %zu and %s %zu are both at unit %d of controller %d", p[k].what, p[k].index,
				    p[i].what, p[i].index, p[i].unit, p[i].controller_key);
	}
	return NULL;
}

char *
vs_vm_spec_problem(const struct vs_vm_spec *s)
{
	struct place *p = xcalloc(s->ndisks + s->ncdroms + s->nfloppies + 1, sizeof(*p));
	size_t i, k, n = 0;
	char *why;

	for (i = 0; i < s->ncontrollers; i++) {
		if (s->controllers[i].kind == VS_CTRL_IDE && (s->controllers[i].bus < 0 || s->controllers[i].bus > 1)) {
			free(p);
			return xasprintf("IDE controller %d has bus number %d", s->controllers[i].key, s->controllers[i].bus);
		}
		for (k = 0; k < i; k++)
			if (s->controllers[k].key == s->controllers[i].key) {
				free(p);
				return xasprintf("two controllers have the key %d", s->controllers[i].key);
			}
	}
	for (i = 0; i < s->ndisks; i++)
		p[n++] = (struct place){ "disk", i, s->disks[i].controller_key, s->disks[i].unit };
	for (i = 0; i < s->ncdroms; i++)
		p[n++] = (struct place){ "CD-ROM", i, s->cdroms[i].controller_key, s->cdroms[i].unit };
	for (i = 0; i < s->nfloppies; i++)
		p[n++] = (struct place){ "floppy", i, s->floppies[i].controller_key, s->floppies[i].unit };
	why = place_problem(s, p, n);
	free(p);
	return why;
}

static xmlNode *
add_device(struct soap_req *req, xmlNode *cfg, const char *type, int key, const char *file_op)
{
	xmlNode *dc = soap_add(req, cfg, "deviceChange", NULL), *dev;
	char buf[32];

	soap_add(req, dc, "operation", "add");
	if (file_op != NULL)
		soap_add(req, dc, "fileOperation", file_op);
	dev = soap_add_typed(req, dc, "device", type, NULL);
	snprintf(buf, sizeof(buf), "%d", key);
	soap_add(req, dev, "key", buf);
	return dev;
}

static void
add_int(struct soap_req *req, xmlNode *parent, const char *name, int v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d", v);
	soap_add(req, parent, name, buf);
}

/* Not connected at power-on, as an empty drive is. */
static void
add_connectable(struct soap_req *req, xmlNode *dev, int start_connected)
{
	xmlNode *c = soap_add(req, dev, "connectable", NULL);

	soap_add_bool(req, c, "startConnected", start_connected);
	soap_add_bool(req, c, "allowGuestControl", 1);
	soap_add_bool(req, c, "connected", 0);
}

static void
add_slot(struct soap_req *req, xmlNode *dev, int slot)
{
	xmlNode *si;

	if (slot <= 0)
		return;
	si = soap_add_typed(req, dev, "slotInfo", "VirtualDevicePciBusSlotInfo", NULL);
	add_int(req, si, "pciSlotNumber", slot);
}

static void
add_drives(struct soap_req *req, xmlNode *cfg, const struct vs_vm_spec *s, int cdrom)
{
	const struct vs_drive *d = cdrom ? s->cdroms : s->floppies;
	size_t i, n = cdrom ? s->ncdroms : s->nfloppies;
	xmlNode *dev, *back;

	for (i = 0; i < n; i++) {
		dev = add_device(req, cfg, cdrom ? "VirtualCdrom" : "VirtualFloppy", (cdrom ? -400 : -500) - (int)i, NULL);
		back = soap_add_typed(req, dev, "backing",
		    cdrom ? "VirtualCdromRemotePassthroughBackingInfo" : "VirtualFloppyRemoteDeviceBackingInfo", NULL);
		soap_add(req, back, "deviceName", "");
		soap_add_bool(req, back, "useAutoDetect", 0);
		if (cdrom)
			soap_add_bool(req, back, "exclusive", 0);
		add_connectable(req, dev, 0);
		add_int(req, dev, "controllerKey", ctrl_map(s, d[i].controller_key, NULL));
		add_int(req, dev, "unitNumber", d[i].unit);
	}
}

struct vs_op *
vs_create_vm(struct vs_client *c, const struct vs_vm_spec *s, vs_op_fn done, void *arg)
{
	struct soap_req *req = xcalloc(1, sizeof(*req));
	xmlNode *cfg, *files, *dev, *back, *opt;
	struct vs_op *op;
	char *ds = xasprintf("[%s]", s->datastore);
	size_t i;

	soap_req_init(req, "CreateVM_Task", "Folder", s->folder);
	/* Elements in the order of the schema (VirtualMachineConfigSpec). */
	cfg = soap_add(req, NULL, "config", NULL);
	soap_add(req, cfg, "name", s->name);
	if (s->version != NULL)
		soap_add(req, cfg, "version", s->version);
	soap_add(req, cfg, "guestId", s->guest_id ? s->guest_id : "otherGuest64");
	if (s->annotation != NULL)
		soap_add(req, cfg, "annotation", s->annotation);
	files = soap_add(req, cfg, "files", NULL);
	soap_add(req, files, "vmPathName", ds);
	add_int(req, cfg, "numCPUs", s->cpus > 0 ? s->cpus : 1);
	if (s->cores_per_socket > 0)
		add_int(req, cfg, "numCoresPerSocket", s->cores_per_socket);
	add_int(req, cfg, "memoryMB", s->memory_mb > 0 ? s->memory_mb : 128);

	for (i = 0; i < s->ncontrollers; i++) {
		const struct vs_controller *ct = &s->controllers[i];

		if (ctrl_is_default(ct->kind) || ct->kind == VS_CTRL_OTHER)
			continue;
		dev = add_device(req, cfg, ct->type, ctrl_new_key(ct, i), NULL);
		add_slot(req, dev, ct->pci_slot);
		add_int(req, dev, "busNumber", ct->bus);
		if (ct->kind == VS_CTRL_LSILOGIC || ct->kind == VS_CTRL_LSILOGIC_SAS || ct->kind == VS_CTRL_PVSCSI ||
		    ct->kind == VS_CTRL_BUSLOGIC)
			soap_add(req, dev, "sharedBus", ct->shared_bus ? ct->shared_bus : "noSharing");
	}
	for (i = 0; i < s->ndisks; i++) {
		dev = add_device(req, cfg, "VirtualDisk", -200 - (int)i, "create");
		back = soap_add_typed(req, dev, "backing", "VirtualDiskFlatVer2BackingInfo", NULL);
		soap_add(req, back, "fileName", ds);
		soap_add(req, back, "diskMode", "persistent");
		soap_add_bool(req, back, "thinProvisioned", 1);
		add_int(req, dev, "controllerKey", ctrl_map(s, s->disks[i].controller_key, NULL));
		add_int(req, dev, "unitNumber", s->disks[i].unit);
		soap_add_u64(req, dev, "capacityInKB", (s->disks[i].capacity + 1023) / 1024);
		soap_add_u64(req, dev, "capacityInBytes", s->disks[i].capacity);
	}
	add_drives(req, cfg, s, 1);
	add_drives(req, cfg, s, 0);
	for (i = 0; i < s->nnics; i++) {
		const struct vs_nic *n = &s->nics[i];

		dev = add_device(req, cfg, n->type ? n->type : "VirtualVmxnet3", -300 - (int)i, NULL);
		back = soap_add_typed(req, dev, "backing", "VirtualEthernetCardNetworkBackingInfo", NULL);
		soap_add(req, back, "deviceName", n->network ? n->network : "VM Network");
		add_connectable(req, dev, n->start_connected);
		add_slot(req, dev, n->pci_slot);
		if (s->keep_mac && n->mac != NULL) {
			soap_add(req, dev, "addressType", "manual");
			soap_add(req, dev, "macAddress", n->mac);
		} else {
			soap_add(req, dev, "addressType", "generated");
		}
	}
	for (i = 0; i < s->nextra; i++) {
		opt = soap_add_typed(req, cfg, "extraConfig", "OptionValue", NULL);
		soap_add(req, opt, "key", s->extra[i].key);
		soap_add_typed(req, opt, "value", "xsd:string", s->extra[i].value);
	}
	if (s->firmware != NULL && strcmp(s->firmware, "efi") == 0) {
		opt = soap_add(req, cfg, "bootOptions", NULL);
		soap_add_bool(req, opt, "efiSecureBootEnabled", s->secure_boot);
	}
	if (s->firmware != NULL)
		soap_add(req, cfg, "firmware", s->firmware);
	soap_add_ref(req, NULL, "pool", "ResourcePool", s->resource_pool);
	if (s->host != NULL)
		soap_add_ref(req, NULL, "host", "HostSystem", s->host);
	free(ds);

	op = vsop_start(c, done, arg, create_start);
	op->pending = req;
	return op;
}
