/* A VM's configuration as JSON, both ways (see vmconfig.h). */
#include "engine/jobs/vmconfig.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops.h"
#include "engine/core/util.h"

static json_t *
drives_json(const struct vs_drive *d, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:i,s:i,s:i}", "key", d[i].key, "controller_key", d[i].controller_key,
		                             "unit", d[i].unit));
	return a;
}

json_t *
vmconfig_json(const struct vs_vm *vm)
{
	json_t *disks = json_array(), *nics = json_array(), *ctrls = json_array(), *extra = json_object(), *o;
	size_t i;

	for (i = 0; i < vm->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:i,s:s?,s:s?,s:I,s:s?,s:i,s:i}", "key", vm->disks[i].key, "label",
		                                 vm->disks[i].label, "file", vm->disks[i].file, "capacity",
		                                 (json_int_t)vm->disks[i].capacity, "mode", vm->disks[i].mode,
		                                 "controller_key", vm->disks[i].controller_key, "unit", vm->disks[i].unit));
	for (i = 0; i < vm->nnics; i++)
		json_array_append_new(nics, json_pack("{s:s?,s:s?,s:s?,s:s?,s:i,s:i,s:b}", "type", vm->nics[i].type,
		                                "network", vm->nics[i].network, "mac", vm->nics[i].mac, "address_type",
		                                vm->nics[i].address_type, "key", vm->nics[i].key, "pci_slot",
		                                vm->nics[i].pci_slot, "start_connected", vm->nics[i].start_connected));
	for (i = 0; i < vm->ncontrollers; i++)
		json_array_append_new(ctrls, json_pack("{s:i,s:i,s:s?,s:s,s:s?,s:i}", "key", vm->controllers[i].key, "bus",
		                                 vm->controllers[i].bus, "type", vm->controllers[i].type, "kind",
		                                 vs_ctrl_kind_name(vm->controllers[i].kind), "shared_bus",
		                                 vm->controllers[i].shared_bus, "pci_slot", vm->controllers[i].pci_slot));
	for (i = 0; i < vm->nextra; i++)
		json_object_set_new(extra, vm->extra[i].key, json_string(vm->extra[i].value ? vm->extra[i].value : ""));
	o = json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:i,s:i,s:b,s:s?,s:o,s:o}", "name", vm->name, "moref",
	    vm->moref, "uuid", vm->uuid, "instance_uuid", vm->instance_uuid, "guest_id", vm->guest_id, "version",
	    vm->version, "power", vm->power, "cpus", vm->cpus, "memory_mb", vm->memory_mb, "cbt", vm->cbt, "host",
	    vm->host_name, "disks", disks, "nics", nics);
	/* The hardware a copy is made with (version 2 of this file). */
	json_object_set_new(o, "hardware", json_pack("{s:i,s:s?,s:b,s:i,s:s?,s:s?,s:o,s:o,s:o,s:o}", "version", 2,
	                                       "firmware", vm->firmware, "secure_boot", vm->secure_boot,
	                                       "cores_per_socket", vm->cores_per_socket, "datacenter", vm->datacenter,
	                                       "datastore", vm->datastore, "controllers", ctrls, "cdroms",
	                                       drives_json(vm->cdroms, vm->ncdroms), "floppies",
	                                       drives_json(vm->floppies, vm->nfloppies), "extra", extra));
	return o;
}

static char *
str_of(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? xstrdup(s) : NULL;
}

static int
int_of(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));

	return v > INT32_MAX || v < INT32_MIN ? 0 : (int)v;
}

static struct vs_drive *
drives_of(const json_t *a, size_t *n)
{
	struct vs_drive *d;
	size_t i;

	*n = json_is_array(a) ? json_array_size(a) : 0;
	d = xcalloc(*n ? *n : 1, sizeof(*d));
	for (i = 0; i < *n; i++) {
		const json_t *e = json_array_get(a, i);

		d[i].key = int_of(e, "key");
		d[i].controller_key = int_of(e, "controller_key");
		d[i].unit = int_of(e, "unit");
	}
	return d;
}

static enum vs_ctrl_kind
kind_of(const char *name)
{
	int k;

	for (k = VS_CTRL_OTHER; k <= VS_CTRL_NVME; k++)
		if (name != NULL && str_eq(vs_ctrl_kind_name((enum vs_ctrl_kind)k), name))
			return (enum vs_ctrl_kind)k;
	return VS_CTRL_OTHER;
}

int
vmconfig_parse(const json_t *cfg, struct vs_vm *vm, char **err)
{
	const json_t *hw = json_object_get(cfg, "hardware"), *a, *e, *v;
	const char *k;
	size_t i;

	memset(vm, 0, sizeof(*vm));
	if (!json_is_object(cfg) || !json_is_object(hw) || int_of(hw, "version") != 2) {
		*err = xstrdup("the point's saved configuration does not hold the VM's hardware (saved by an earlier "
		               "version): it can be restored to the original VM only");
		return -1;
	}
	vm->name = str_of(cfg, "name");
	vm->moref = str_of(cfg, "moref");
	vm->guest_id = str_of(cfg, "guest_id");
	vm->version = str_of(cfg, "version");
	vm->host_name = str_of(cfg, "host");
	vm->cpus = int_of(cfg, "cpus");
	vm->memory_mb = int_of(cfg, "memory_mb");
	vm->firmware = str_of(hw, "firmware");
	vm->secure_boot = json_is_true(json_object_get(hw, "secure_boot"));
	vm->cores_per_socket = int_of(hw, "cores_per_socket");
	vm->datacenter = str_of(hw, "datacenter");
	vm->datastore = str_of(hw, "datastore");
	a = json_object_get(cfg, "disks");
	vm->ndisks = json_is_array(a) ? json_array_size(a) : 0;
	vm->disks = xcalloc(vm->ndisks ? vm->ndisks : 1, sizeof(*vm->disks));
	for (i = 0; i < vm->ndisks; i++) {
		struct vs_disk *d = &vm->disks[i];
		json_int_t cap;

		e = json_array_get(a, i);
		d->key = int_of(e, "key");
		d->label = str_of(e, "label");
		d->file = str_of(e, "file");
		d->mode = str_of(e, "mode");
		d->controller_key = int_of(e, "controller_key");
		d->unit = int_of(e, "unit");
		cap = json_integer_value(json_object_get(e, "capacity"));
		d->capacity = cap > 0 ? (uint64_t)cap : 0;
	}
	a = json_object_get(cfg, "nics");
	vm->nnics = json_is_array(a) ? json_array_size(a) : 0;
	vm->nics = xcalloc(vm->nnics ? vm->nnics : 1, sizeof(*vm->nics));
	for (i = 0; i < vm->nnics; i++) {
		struct vs_nic *n = &vm->nics[i];

		e = json_array_get(a, i);
		n->type = str_of(e, "type");
		n->network = str_of(e, "network");
		n->mac = str_of(e, "mac");
		n->address_type = str_of(e, "address_type");
		n->key = int_of(e, "key");
		n->pci_slot = int_of(e, "pci_slot");
		n->start_connected = json_is_true(json_object_get(e, "start_connected"));
	}
	a = json_object_get(hw, "controllers");
	vm->ncontrollers = json_is_array(a) ? json_array_size(a) : 0;
	vm->controllers = xcalloc(vm->ncontrollers ? vm->ncontrollers : 1, sizeof(*vm->controllers));
	for (i = 0; i < vm->ncontrollers; i++) {
		struct vs_controller *c = &vm->controllers[i];

		e = json_array_get(a, i);
		c->key = int_of(e, "key");
		c->bus = int_of(e, "bus");
		c->type = str_of(e, "type");
		c->kind = kind_of(json_string_value(json_object_get(e, "kind")));
		c->shared_bus = str_of(e, "shared_bus");
		c->pci_slot = int_of(e, "pci_slot");
	}
	vm->cdroms = drives_of(json_object_get(hw, "cdroms"), &vm->ncdroms);
	vm->floppies = drives_of(json_object_get(hw, "floppies"), &vm->nfloppies);
	a = json_object_get(hw, "extra");
	vm->extra = xcalloc(json_object_size(a) ? json_object_size(a) : 1, sizeof(*vm->extra));
	json_object_foreach((json_t *)a, k, v) {
		vm->extra[vm->nextra].key = xstrdup(k);
		vm->extra[vm->nextra].value = xstrdup(json_string_value(v) ? json_string_value(v) : "");
		vm->nextra++;
	}
	if (vm->name == NULL || vm->ndisks == 0) {
		vs_vm_free(vm);
		memset(vm, 0, sizeof(*vm));
		*err = xstrdup("the point's saved configuration names no VM or no disks");
		return -1;
	}
	return 0;
}
