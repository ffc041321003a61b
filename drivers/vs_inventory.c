/* vSphere inventory: VM configurations and datastores parsed from
 * property collector replies, the whole inventory through container views
 * and paged RetrievePropertiesEx, one VM's properties. */
#include "drivers/vsops.h"

#include <stdlib.h>
#include <string.h>

#include "drivers/vsops_private.h"
#include "engine/core/util.h"

/* ---- parsing VMs ---- */

/* A numeric property: 0 when absent or not a number. */
static uint64_t
prop_u64(const xmlNode *objects, const char *name)
{
	char *s = vsop_prop_text(objects, name);
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
	char *s = vsop_prop_text(objects, name), *q;
	uint64_t v = 0;

	if (s == NULL)
		return 0;
	if (soap_parse_u64(s, &v) != 0 || v < 1 || v > max) {
		q = vsop_quote(s);
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
		q = vsop_quote(b != NULL ? b : kb);
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

static const struct {
	const char *type;
	enum vs_ctrl_kind kind;
	const char *name;
} ctrl_types[] = {
	{ "VirtualIDEController", VS_CTRL_IDE, "ide" },
	{ "VirtualSIOController", VS_CTRL_SIO, "sio" },
	{ "VirtualLsiLogicController", VS_CTRL_LSILOGIC, "lsilogic" },
	{ "VirtualLsiLogicSASController", VS_CTRL_LSILOGIC_SAS, "lsilogic-sas" },
	{ "ParaVirtualSCSIController", VS_CTRL_PVSCSI, "pvscsi" },
	{ "VirtualBusLogicController", VS_CTRL_BUSLOGIC, "buslogic" },
	{ "VirtualAHCIController", VS_CTRL_AHCI, "ahci" },
	{ "VirtualNVMEController", VS_CTRL_NVME, "nvme" },
};

static const struct {
	const char *type;
	const char *model;
} nic_types[] = {
	{ "VirtualE1000", "e1000" },
	{ "VirtualE1000e", "e1000e" },
	{ "VirtualVmxnet3", "vmxnet3" },
	{ "VirtualVmxnet3Vrdma", "vmxnet3vrdma" },
	{ "VirtualVmxnet2", "vmxnet2" },
	{ "VirtualVmxnet", "vmxnet" },
	{ "VirtualPCNet32", "pcnet32" },
	{ "VirtualSriovEthernetCard", "sriov" },
};

/* Options that decide how a guest boots or sees its hardware; the rest of
 * extraConfig is the platform's own or the guest tools'. */
const char *const vs_boot_keys[] = {
	"bios.bootOrder",       /* device classes to boot from, in order */
	"bios.hddOrder",        /* which disk boots ("scsi0:0"; units are kept) */
	"disk.EnableUUID",      /* guests that name disks by their UUID */
	"smbios.reflectHost",   /* guests licensed to the host's SMBIOS */
	"hypervisor.cpuid.v0",  /* guests that must not see a hypervisor */
	NULL,
};

const char *
vs_ctrl_kind_name(enum vs_ctrl_kind k)
{
	size_t i;

	for (i = 0; i < sizeof(ctrl_types) / sizeof(ctrl_types[0]); i++)
		if (ctrl_types[i].kind == k)
			return ctrl_types[i].name;
	return "other";
}

const char *
vs_nic_model(const char *type)
{
	size_t i;

	for (i = 0; type != NULL && i < sizeof(nic_types) / sizeof(nic_types[0]); i++)
		if (strcmp(nic_types[i].type, type) == 0)
			return nic_types[i].model;
	return type;
}

static int
device_int(const xmlNode *d, const char *name, int *out)
{
	int64_t v;

	if (xml_child_i64(d, name, &v) != 0 || v < INT32_MIN || v > INT32_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

static int
pci_slot(const xmlNode *d)
{
	int v = 0;

	if (device_int(xml_child(d, "slotInfo"), "pciSlotNumber", &v) != 0 || v < 0)
		return 0;
	return v;
}

static struct vs_drive *
add_drive(struct vs_drive **list, size_t *n, const xmlNode *d)
{
	struct vs_drive *dr;

	*list = xgrow(*list, *n, sizeof(**list));
	dr = &(*list)[(*n)++];
	memset(dr, 0, sizeof(*dr));
	device_int(d, "key", &dr->key);
	device_int(d, "controllerKey", &dr->controller_key);
	device_int(d, "unitNumber", &dr->unit);
	return dr;
}

/* Disks, controllers, NICs and drives from an ArrayOfVirtualDevice value. */
void
vsop_parse_devices(const xmlNode *val, struct vs_disk **disks, size_t *ndisks, struct vs_vm *vm)
{
	xmlNode *d;
	char tbuf[128];
	size_t i;

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
			continue;
		}
		if (vm == NULL)
			continue;
		for (i = 0; i < sizeof(ctrl_types) / sizeof(ctrl_types[0]); i++)
			if (strcmp(type, ctrl_types[i].type) == 0)
				break;
		if (i < sizeof(ctrl_types) / sizeof(ctrl_types[0])) {
			struct vs_controller *ct;

			vm->controllers = xgrow(vm->controllers, vm->ncontrollers, sizeof(*vm->controllers));
			ct = &vm->controllers[vm->ncontrollers++];
			memset(ct, 0, sizeof(*ct));
			ct->type = xstrdup(type);
			ct->kind = ctrl_types[i].kind;
			device_int(d, "key", &ct->key);
			device_int(d, "busNumber", &ct->bus);
			ct->shared_bus = xml_child_text(d, "sharedBus");
			ct->pci_slot = pci_slot(d);
			continue;
		}
		for (i = 0; i < sizeof(nic_types) / sizeof(nic_types[0]); i++)
			if (strcmp(type, nic_types[i].type) == 0)
				break;
		if (i < sizeof(nic_types) / sizeof(nic_types[0]) || xml_child(d, "macAddress") != NULL) {
			struct vs_nic *n;
			int on = 1;

			vm->nics = xgrow(vm->nics, vm->nnics, sizeof(*vm->nics));
			n = &vm->nics[vm->nnics++];
			memset(n, 0, sizeof(*n));
			n->type = xstrdup(type);
			n->network = xml_child_text(xml_child(d, "backing"), "deviceName");
			n->mac = xml_child_text(d, "macAddress");
			n->address_type = xml_child_text(d, "addressType");
			device_int(d, "key", &n->key);
			n->pci_slot = pci_slot(d);
			xml_child_bool(xml_child(d, "connectable"), "startConnected", &on);
			n->start_connected = on;
			continue;
		}
		if (strcmp(type, "VirtualCdrom") == 0)
			add_drive(&vm->cdroms, &vm->ncdroms, d);
		else if (strcmp(type, "VirtualFloppy") == 0)
			add_drive(&vm->floppies, &vm->nfloppies, d);
	}
}

/* The extraConfig options of vs_boot_keys, from an ArrayOfOptionValue. */
static void
parse_extra(const xmlNode *val, struct vs_vm *vm)
{
	xmlNode *o;
	size_t i;

	for (o = val ? val->children : NULL; o != NULL; o = o->next) {
		char *key;

		if (o->type != XML_ELEMENT_NODE)
			continue;
		key = xml_child_text(o, "key");
		for (i = 0; key != NULL && vs_boot_keys[i] != NULL; i++)
			if (strcmp(key, vs_boot_keys[i]) == 0)
				break;
		if (key != NULL && vs_boot_keys[i] != NULL && vm->nextra < 64) {
			vm->extra = xgrow(vm->extra, vm->nextra, sizeof(*vm->extra));
			vm->extra[vm->nextra].key = key;
			vm->extra[vm->nextra].value = xml_child_text(o, "value");
			if (vm->extra[vm->nextra].value == NULL)
				vm->extra[vm->nextra].value = xstrdup("");
			vm->nextra++;
			continue;
		}
		free(key);
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
	vm->name = vsop_prop_text(objects, "name");
	if (vm->moref == NULL || vm->name == NULL)
		return -1;
	vm->uuid = vsop_prop_text(objects, "config.uuid");
	vm->instance_uuid = vsop_prop_text(objects, "config.instanceUuid");
	vm->power = vsop_prop_text(objects, "runtime.powerState");
	vm->host = vsop_prop_text(objects, "runtime.host");
	vm->guest_id = vsop_prop_text(objects, "config.guestId");
	vm->version = vsop_prop_text(objects, "config.version");
	vm->vmx_path = vsop_prop_text(objects, "config.files.vmPathName");
	vm->annotation = vsop_prop_text(objects, "config.annotation");
	vm->cpus = prop_count(objects, "config.hardware.numCPU", VS_VM_MAX_CPUS, &vm->problem);
	vm->cores_per_socket = prop_count(objects, "config.hardware.numCoresPerSocket", VS_VM_MAX_CPUS, &vm->problem);
	vm->folder = vsop_prop_text(objects, "parent");
	vm->firmware = vsop_prop_text(objects, "config.firmware");
	xml_child_bool(vsop_prop_val(objects, "config.bootOptions"), "efiSecureBootEnabled", &vm->secure_boot);
	parse_extra(vsop_prop_val(objects, "config.extraConfig"), vm);
	vm->memory_mb = prop_count(objects, "config.hardware.memoryMB", VS_VM_MAX_MEMORY_MB, &vm->problem);
	s = vsop_prop_text(objects, "config.changeTrackingEnabled");
	vm->cbt = s != NULL && strcmp(s, "true") == 0;
	free(s);
	if (vm->vmx_path != NULL) {
		char *path = NULL;

		if (vs_split_ds_path(vm->vmx_path, &vm->datastore, &path) == 0)
			free(path);
	}
	vsop_parse_devices(vsop_prop_val(objects, "config.hardware.device"), &vm->disks, &vm->ndisks, vm);
	if (vm->problem == NULL)
		vm->problem = vs_disks_problem(vm->disks, vm->ndisks);
	snap = vsop_prop_val(objects, "snapshot");
	if (snap != NULL) {
		vm->current_snapshot = xml_child_text(snap, "currentSnapshot");
		parse_snapshot_tree(snap, "rootSnapshotList", NULL, vm);
	}
	parse_suspend_file(vsop_prop_val(objects, "layoutEx.file"), vm);
	return 0;
}

void
vsop_disks_free(struct vs_disk *d, size_t n)
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

static char *
dup_opt(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void *
dup_array(const void *a, size_t n, size_t size)
{
	void *b = xcalloc(n ? n : 1, size);

	if (n)
		memcpy(b, a, n * size);
	return b;
}

void
vs_vm_dup(const struct vs_vm *from, struct vs_vm *to)
{
	size_t i;

	memset(to, 0, sizeof(*to));
#define DUP(f) to->f = dup_opt(from->f)
	DUP(moref);
	DUP(name);
	DUP(uuid);
	DUP(instance_uuid);
	DUP(power);
	DUP(host);
	DUP(host_name);
	DUP(datacenter);
	DUP(datastore);
	DUP(vmx_path);
	DUP(guest_id);
	DUP(version);
	DUP(annotation);
	DUP(folder);
	DUP(firmware);
	DUP(suspend_file);
#undef DUP
	to->secure_boot = from->secure_boot;
	to->cpus = from->cpus;
	to->cores_per_socket = from->cores_per_socket;
	to->memory_mb = from->memory_mb;
	to->cbt = from->cbt;
	to->suspend_size = from->suspend_size;
	to->disks = dup_array(from->disks, from->ndisks, sizeof(*to->disks));
	to->ndisks = from->ndisks;
	for (i = 0; i < from->ndisks; i++) {
		to->disks[i].label = dup_opt(from->disks[i].label);
		to->disks[i].file = dup_opt(from->disks[i].file);
		to->disks[i].mode = dup_opt(from->disks[i].mode);
		to->disks[i].change_id = dup_opt(from->disks[i].change_id);
		to->disks[i].uuid = dup_opt(from->disks[i].uuid);
		to->disks[i].problem = dup_opt(from->disks[i].problem);
	}
	to->controllers = dup_array(from->controllers, from->ncontrollers, sizeof(*to->controllers));
	to->ncontrollers = from->ncontrollers;
	for (i = 0; i < from->ncontrollers; i++) {
		to->controllers[i].type = dup_opt(from->controllers[i].type);
		to->controllers[i].shared_bus = dup_opt(from->controllers[i].shared_bus);
	}
	to->nics = dup_array(from->nics, from->nnics, sizeof(*to->nics));
	to->nnics = from->nnics;
	for (i = 0; i < from->nnics; i++) {
		to->nics[i].type = dup_opt(from->nics[i].type);
		to->nics[i].network = dup_opt(from->nics[i].network);
		to->nics[i].mac = dup_opt(from->nics[i].mac);
		to->nics[i].address_type = dup_opt(from->nics[i].address_type);
	}
	to->cdroms = dup_array(from->cdroms, from->ncdroms, sizeof(*to->cdroms));
	to->ncdroms = from->ncdroms;
	to->floppies = dup_array(from->floppies, from->nfloppies, sizeof(*to->floppies));
	to->nfloppies = from->nfloppies;
	to->extra = dup_array(from->extra, from->nextra, sizeof(*to->extra));
	to->nextra = from->nextra;
	for (i = 0; i < from->nextra; i++) {
		to->extra[i].key = dup_opt(from->extra[i].key);
		to->extra[i].value = dup_opt(from->extra[i].value);
	}
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
	free(vm->folder);
	free(vm->firmware);
	free(vm->suspend_file);
	vsop_disks_free(vm->disks, vm->ndisks);
	for (i = 0; i < vm->ncontrollers; i++) {
		free(vm->controllers[i].type);
		free(vm->controllers[i].shared_bus);
	}
	free(vm->controllers);
	for (i = 0; i < vm->nnics; i++) {
		free(vm->nics[i].type);
		free(vm->nics[i].network);
		free(vm->nics[i].mac);
		free(vm->nics[i].address_type);
	}
	free(vm->nics);
	free(vm->cdroms);
	free(vm->floppies);
	for (i = 0; i < vm->nextra; i++) {
		free(vm->extra[i].key);
		free(vm->extra[i].value);
	}
	free(vm->extra);
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

/* ---- parsing datastores ---- */

/* A VMFS volume's major version, from the datastore's info.  info is a
 * DatastoreInfo of whichever subtype the datastore is (VmfsDatastoreInfo,
 * NasDatastoreInfo, VsanDatastoreInfo...), so it is read whole: a path
 * into a subtype's field ("info.vmfs.majorVersion") is an InvalidProperty
 * fault on vCenter.  0 when there is no VMFS volume or no sane number. */
static int
vmfs_major(const xmlNode *info)
{
	int64_t v;

	if (xml_child_i64(xml_child(info, "vmfs"), "majorVersion", &v) != 0 || v < 1 || v > 255)
		return 0;
	return (int)v;
}

int
vs_parse_datastore_object(const xmlNode *objects, struct vs_datastore *d)
{
	memset(d, 0, sizeof(*d));
	d->moref = xml_child_text(objects, "obj");
	if (d->moref == NULL)
		return -1;
	d->name = vsop_prop_text(objects, "name");
	d->capacity = prop_u64(objects, "summary.capacity");
	d->free = prop_u64(objects, "summary.freeSpace");
	d->url = vsop_prop_text(objects, "summary.url");
	d->type = vsop_prop_text(objects, "summary.type");
	d->vmfs_major = vmfs_major(vsop_prop_val(objects, "info"));
	return 0;
}

void
vs_datastore_free(struct vs_datastore *d)
{
	free(d->moref);
	free(d->name);
	free(d->datacenter);
	free(d->url);
	free(d->type);
	memset(d, 0, sizeof(*d));
}

static void
folders_free(struct vs_folder *f, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(f[i].moref);
		free(f[i].name);
		free(f[i].parent);
		free(f[i].datacenter);
	}
	free(f);
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
	for (i = 0; i < inv->ndatastores; i++)
		vs_datastore_free(&inv->datastores[i]);
	free(inv->datastores);
	for (i = 0; i < inv->nvms; i++)
		vs_vm_free(&inv->vms[i]);
	free(inv->vms);
	folders_free(inv->folders, inv->nfolders);
	folders_free(inv->pools, inv->npools);
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

const struct vs_vm *
vs_inventory_vm_in(const struct vs_inventory *inv, const char *name, const char *folder)
{
	size_t i;

	for (i = 0; i < inv->nvms; i++)
		if (strcmp(inv->vms[i].name, name) == 0 && inv->vms[i].folder != NULL && folder != NULL &&
		    strcmp(inv->vms[i].folder, folder) == 0)
			return &inv->vms[i];
	return NULL;
}

/* The child of parent named name among list, or NULL. */
static const struct vs_folder *
child_named(const struct vs_folder *list, size_t n, const char *parent, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].parent != NULL && list[i].name != NULL && strcmp(list[i].parent, parent) == 0 &&
		    strlen(list[i].name) == len && memcmp(list[i].name, name, len) == 0)
			return &list[i];
	return NULL;
}

/* Walks path ("a/b") down from root through list. */
static const char *
walk_path(const struct vs_folder *list, size_t n, const char *root, const char *path)
{
	const char *at = root, *p = path, *slash;
	const struct vs_folder *f;

	if (root == NULL)
		return NULL;
	while (p != NULL && *p != '\0') {
		slash = strchr(p, '/');
		f = child_named(list, n, at, p, slash ? (size_t)(slash - p) : strlen(p));
		if (f == NULL)
			return NULL;
		at = f->moref;
		p = slash ? slash + 1 : NULL;
	}
	return at;
}

const char *
vs_inventory_folder(const struct vs_inventory *inv, const struct vs_datacenter *dc, const char *path)
{
	return walk_path(inv->folders, inv->nfolders, dc->vm_folder, path);
}

const char *
vs_inventory_pool(const struct vs_inventory *inv, const char *root_pool, const char *path)
{
	return walk_path(inv->pools, inv->npools, root_pool, path);
}

char *
vs_folder_path(const struct vs_inventory *inv, const char *folder)
{
	char *path = xstrdup(""), *next;
	size_t i, depth;
	int found;

	/* Up to the datacenter's VM folder, whose parent is the datacenter. */
	for (depth = 0; folder != NULL && depth < 64; depth++) {
		for (i = 0; i < inv->ndcs; i++)
			if (inv->dcs[i].vm_folder != NULL && strcmp(inv->dcs[i].vm_folder, folder) == 0)
				return path;
		found = 0;
		for (i = 0; i < inv->nfolders && !found; i++) {
			if (strcmp(inv->folders[i].moref, folder) != 0)
				continue;
			next = xasprintf("%s%s%s", inv->folders[i].name ? inv->folders[i].name : "?", *path ? "/" : "", path);
			free(path);
			path = next;
			folder = inv->folders[i].parent;
			found = 1;
		}
		if (!found)
			break;
	}
	return path;
}

/* ---- inventory ---- */

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

#define VM_PATHS                                                                                                  \
	"name", "parent", "config.uuid", "config.instanceUuid", "runtime.powerState", "runtime.host", "config.guestId",    \
	    "config.version", "config.files.vmPathName", "config.hardware.numCPU", "config.hardware.numCoresPerSocket", \
	    "config.hardware.memoryMB", "config.changeTrackingEnabled", "config.hardware.device", "snapshot",         \
	    "config.annotation", "config.firmware", "config.bootOptions", "config.extraConfig"
static const char *const vm_paths[] = { VM_PATHS, NULL };
/* One VM read on its own also lists its files (for a suspended VM's memory state). */
static const char *const one_vm_paths[] = { VM_PATHS, "layoutEx.file", NULL };
static const char *const host_paths[] = { "name", "parent", "summary.hardware.cpuModel", NULL };
/* info is polymorphic: asked for whole (see vmfs_major). */
static const char *const ds_paths[] = { "name", "summary.capacity", "summary.freeSpace", "summary.url",
	"summary.type", "info", NULL };
static const char *const cr_paths[] = { "resourcePool", NULL };
static const char *const dc_paths[] = { "name", "vmFolder", NULL };
static const char *const folder_paths[] = { "name", "parent", NULL };

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
		d->name = vsop_prop_text(obj, "name");
		d->vm_folder = vsop_prop_text(obj, "vmFolder");
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
		h->name = vsop_prop_text(obj, "name");
		h->datacenter = xstrdup(dc);
		h->cpu_model = vsop_prop_text(obj, "summary.hardware.cpuModel");
		/* Until its compute resource is seen: keep the parent moref. */
		h->resource_pool = vsop_prop_text(obj, "parent");
		return;
	}
	if (strcmp(type, "Datastore") == 0) {
		struct vs_datastore d;

		free(moref);
		if (vs_parse_datastore_object(obj, &d) != 0)
			return;
		d.datacenter = xstrdup(dc);
		inv->datastores = xgrow(inv->datastores, inv->ndatastores, sizeof(*inv->datastores));
		inv->datastores[inv->ndatastores++] = d;
		return;
	}
	if (strcmp(type, "Folder") == 0 || strcmp(type, "ResourcePool") == 0) {
		struct vs_folder **list = type[0] == 'F' ? &inv->folders : &inv->pools;
		size_t *n = type[0] == 'F' ? &inv->nfolders : &inv->npools;
		struct vs_folder *f;

		*list = xgrow(*list, *n, sizeof(**list));
		f = &(*list)[(*n)++];
		memset(f, 0, sizeof(*f));
		f->moref = moref;
		f->name = vsop_prop_text(obj, "name");
		f->parent = vsop_prop_text(obj, "parent");
		f->datacenter = xstrdup(dc);
		return;
	}
	if (strstr(type, "ComputeResource") != NULL) {
		/* Hosts are matched to their pools once every page is in. */
		op->cr_ref = xgrow(op->cr_ref, op->ncr, sizeof(*op->cr_ref));
		op->cr_pool = xgrow(op->cr_pool, op->ncr, sizeof(*op->cr_pool));
		op->cr_ref[op->ncr] = moref;
		op->cr_pool[op->ncr] = vsop_prop_text(obj, "resourcePool");
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
	vsop_call(op, &req, inv_view_destroyed);
}

static void
inv_page(struct vs_op *op, struct vs_result *res)
{
	xmlNode *rv = vsop_returnval(res), *obj;
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
		vsop_fail(op, VS_BADREPLY, NULL,
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
		vsop_call(op, &req, inv_page);
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
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: CreateContainerView returned no view", vs_config(op->c)->name));
		return;
	}
	soap_req_init(&req, "RetrievePropertiesEx", "PropertyCollector", vs_service(op->c)->property_collector);
	spec = soap_add(&req, NULL, "specSet", NULL);
	if (op->dc == NULL) {
		vsop_add_propset(&req, spec, "Datacenter", dc_paths);
	} else {
		vsop_add_propset(&req, spec, "VirtualMachine", vm_paths);
		vsop_add_propset(&req, spec, "HostSystem", host_paths);
		vsop_add_propset(&req, spec, "Datastore", ds_paths);
		vsop_add_propset(&req, spec, "ComputeResource", cr_paths);
		vsop_add_propset(&req, spec, "Folder", folder_paths);
		vsop_add_propset(&req, spec, "ResourcePool", folder_paths);
	}
	add_objectset_view(&req, spec, op->view);
	vsop_add_options(&req, op->page_size);
	vsop_call(op, &req, inv_page);
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
	vsop_call(op, &req, inv_view_created);
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
	vsop_finish(op);
}

static void
inv_next_dc(struct vs_op *op)
{
	static const char *const types[] = { "VirtualMachine", "HostSystem", "Datastore", "ComputeResource", "Folder",
		"ResourcePool", NULL };

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
inv_start(struct vs_op *op, struct vs_result *res)
{
	static const char *const types[] = { "Datacenter", NULL };

	inv_create_view(op, "Folder", vs_service(op->c)->root_folder, types);
}

struct vs_op *
vs_get_inventory(struct vs_client *c, int page_size, vs_op_fn done, void *arg)
{
	/* The service content (root folder, view manager) comes with login. */
	struct vs_op *op = vsop_start(c, done, arg, inv_start);

	op->page_size = page_size > 0 ? page_size : 100;
	op->out.inv = xcalloc(1, sizeof(*op->out.inv));
	return op;
}

/* ---- one VM ---- */

static void
vm_props_done(struct vs_op *op, struct vs_result *res)
{
	xmlNode *obj = xml_child(vsop_returnval(res), "objects");

	op->out.vm = xcalloc(1, sizeof(*op->out.vm));
	if (obj == NULL || vs_parse_vm_object(obj, op->out.vm) != 0) {
		vsop_fail(op, VS_BADREPLY, NULL, xasprintf("%s: no properties returned for VM %s", vs_config(op->c)->name, op->vm));
		return;
	}
	if (op->out.vm->problem != NULL) {
		vsop_fail(op, VS_BADREPLY, NULL,
		    xasprintf("%s: VM %s: unusable answer: %s", vs_config(op->c)->name, op->vm, op->out.vm->problem));
		return;
	}
	op->out.status = VS_OK;
	vsop_finish(op);
}

static void
vm_start(struct vs_op *op, struct vs_result *res)
{
	vsop_retrieve(op, "VirtualMachine", op->vm, one_vm_paths, vm_props_done);
}

struct vs_op *
vs_get_vm(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, vm_start);

	op->vm = xstrdup(vm_moref);
	return op;
}
