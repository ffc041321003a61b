/* VM creation and power: CreateVM_Task, power on/off/suspend and guest
 * shutdown, extraConfig through ReconfigVM_Task, Destroy_Task. */
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

struct vs_op *
vs_destroy(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg)
{
	return vsop_simple_task(c, "Destroy_Task", "VirtualMachine", vm_moref, done, arg);
}

/* ---- creating a VM ---- */

static void
create_start(struct vs_op *op, struct vs_result *res)
{
	struct soap_req *req = op->pending;

	op->pending = NULL;
	op->after_task = vsop_task_result_moref;
	vsop_call(op, req, vsop_task_started);
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

	op = vsop_start(c, done, arg, create_start);
	op->pending = req;
	return op;
}
