/* vSphere operations the engine needs, each an asynchronous sequence of
 * SOAP calls on a vs_client: inventory (container views, paged property
 * retrieval), tasks, snapshots, changed block tracking, VM creation and
 * power.  Results arrive in one struct vs_out; it is freed after the
 * callback returns, so copy what you keep. */
#ifndef VMFERRY_VSOPS_H
#define VMFERRY_VSOPS_H

#include <stddef.h>
#include <stdint.h>

#include "drivers/vsphere.h"

struct vs_disk {
	int key;                 /* device key, for QueryChangedDiskAreas */
	char *label;
	char *file;              /* "[ds0] web01/web01.vmdk" */
	uint64_t capacity;       /* bytes */
	char *mode;              /* persistent, independent_persistent, ... */
	char *change_id;         /* NULL if none */
	char *uuid;
	int controller_key;
	int unit;
	char *problem;           /* an unusable value (see vs_vm.problem), or NULL */
};

/* The kinds of device controllers a VM can have.  IDE, SIO (floppies),
 * PCI and PS/2 controllers come with every VM; the others are added. */
enum vs_ctrl_kind {
	VS_CTRL_OTHER,
	VS_CTRL_IDE,
	VS_CTRL_SIO,
	VS_CTRL_LSILOGIC,
	VS_CTRL_LSILOGIC_SAS,
	VS_CTRL_PVSCSI,
	VS_CTRL_BUSLOGIC,
	VS_CTRL_AHCI,
	VS_CTRL_NVME,
};

struct vs_controller {
	int key;
	int bus;
	char *type;              /* the xsi type: ParaVirtualSCSIController, VirtualLsiLogicController, ... */
	enum vs_ctrl_kind kind;
	char *shared_bus;        /* SCSI: noSharing, virtualSharing, physicalSharing; else NULL */
	int pci_slot;            /* slotInfo.pciSlotNumber, 0 = not reported */
};

struct vs_nic {
	char *type;              /* the xsi type: VirtualVmxnet3, VirtualE1000, ... */
	char *network;
	char *mac;
	char *address_type;      /* manual, generated or assigned */
	int key;
	int pci_slot;            /* slotInfo.pciSlotNumber, 0 = not reported */
	int start_connected;
};

/* A CD-ROM or floppy drive: where it sits (copied empty). */
struct vs_drive {
	int key;
	int controller_key;
	int unit;
};

/* An extraConfig option. */
struct vs_option {
	char *key;
	char *value;
};

struct vs_snapshot {
	char *moref;
	char *name;
	char *description;
	int quiesced;
	char *parent;            /* moref of the parent snapshot, NULL at the root */
};

struct vs_vm {
	char *moref;
	char *name;
	char *uuid;
	char *instance_uuid;
	char *power;             /* poweredOn, poweredOff, suspended */
	char *host;              /* HostSystem moref */
	char *host_name;
	char *datacenter;        /* name */
	char *datastore;         /* name, from the vmx path */
	char *vmx_path;          /* "[ds0] web01/web01.vmx" */
	char *guest_id;
	char *version;           /* vmx-13 */
	char *annotation;        /* config.annotation (notes) */
	char *folder;            /* parent: the VM folder holding it (moref) */
	char *firmware;          /* bios or efi; NULL when not reported */
	int secure_boot;         /* bootOptions.efiSecureBootEnabled */
	int cpus;
	int cores_per_socket;    /* 0 when not reported */
	int memory_mb;
	int cbt;                 /* changeTrackingEnabled */
	struct vs_disk *disks;
	size_t ndisks;
	struct vs_controller *controllers;
	size_t ncontrollers;
	struct vs_nic *nics;
	size_t nnics;
	struct vs_drive *cdroms;
	size_t ncdroms;
	struct vs_drive *floppies;
	size_t nfloppies;
	struct vs_option *extra;  /* the extraConfig keys that matter for boot (vs_boot_keys) */
	size_t nextra;
	struct vs_snapshot *snapshots; /* the whole tree, flattened, parents first */
	size_t nsnapshots;
	char *current_snapshot;
	char *problem;           /* the first value the server sent that cannot be
	                          * used (a disk without file or with an absurd
	                          * capacity, a CPU count that is no number...);
	                          * NULL when the VM is usable */
	/* vs_get_vm only: the memory state of a suspended VM (layoutEx file of
	 * type "suspend"), "[ds] dir/name.vmss", and its size. */
	char *suspend_file;
	uint64_t suspend_size;
};

/* Limits on what a server may claim (docs/ARCHITECTURE.md, "Limits"). */
#define VS_DISK_MAX_BYTES (64ull << 40)   /* vSphere's largest disk is 62 TB */
#define VS_VM_MAX_CPUS 4096
#define VS_VM_MAX_MEMORY_MB (64u << 20)   /* 64 TiB */
#define VS_INV_MAX_OBJECTS 100000         /* vCenter 8 holds at most 45,000 VMs, 2,500 hosts */
#define VS_INV_MAX_EMPTY_PAGES 100        /* pages that hold nothing yet announce more */
#define VS_CBT_MAX_EXTENTS (1u << 20)     /* per disk; closer areas are merged beyond */

struct vs_host {
	char *moref;
	char *name;
	char *datacenter;
	char *resource_pool;     /* of its compute resource */
	char *cpu_model;         /* summary.hardware.cpuModel */
};

struct vs_datastore {
	char *moref;
	char *name;
	char *datacenter;
	uint64_t capacity;
	uint64_t free;
	char *url;
	char *type;              /* summary.type: VMFS, NFS, NFS41, vsan, VVOL, ...; NULL when not reported */
	int vmfs_major;          /* info.vmfs.majorVersion of a VMFS datastore (5, 6, ...); 0 when unknown */
};

struct vs_datacenter {
	char *moref;
	char *name;
	char *vm_folder;
};

/* A folder or a resource pool: its name and where it hangs. */
struct vs_folder {
	char *moref;
	char *name;
	char *parent;            /* moref */
	char *datacenter;        /* name */
};

struct vs_inventory {
	struct vs_datacenter *dcs;
	size_t ndcs;
	struct vs_host *hosts;
	size_t nhosts;
	struct vs_datastore *datastores;
	size_t ndatastores;
	struct vs_vm *vms;
	size_t nvms;
	struct vs_folder *folders;  /* every Folder of every datacenter */
	size_t nfolders;
	struct vs_folder *pools;    /* every ResourcePool */
	size_t npools;
	uint64_t pages;          /* property retrieval pages read */
};

struct vs_extent {
	uint64_t start;
	uint64_t length;
};

struct vs_out {
	enum vs_status status;
	char *error;
	char *fault_type;        /* VS_FAULT: e.g. "FileFault" */
	char *moref;             /* created task result: snapshot, VM */
	struct vs_inventory *inv;
	struct vs_vm *vm;
	struct vs_disk *disks;   /* vs_snapshot_disks */
	size_t ndisks;
	struct vs_extent *extents; /* vs_query_changes, coalesced, in order */
	size_t nextents;
	uint64_t merge_gap;      /* vs_query_changes: areas closer than this were
	                          * merged to stay under VS_CBT_MAX_EXTENTS (0: none) */
	uint64_t pages;          /* replies read (paging) */
	char *data;              /* vs_get_file */
	size_t len;
};

typedef void (*vs_op_fn)(struct vs_out *out, void *arg);
struct vs_op;

/* Cancel op (NULL: nothing): its done is never called.  Returns the arg
 * it was started with, which only its done would have freed: the caller
 * frees it now (a job's token: token_drop).  NULL when op is NULL or is
 * in its done callback (that callback has its arg). */
void *vs_op_cancel(struct vs_op *op) __attribute__((warn_unused_result));

struct vs_op *vs_get_inventory(struct vs_client *c, int page_size, vs_op_fn done, void *arg);
struct vs_op *vs_get_vm(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg);
/* The disks of a snapshot's configuration (their files and changeIds). */
struct vs_op *vs_snapshot_disks(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg);
struct vs_op *vs_enable_cbt(struct vs_client *c, const char *vm_moref, int enable, vs_op_fn done, void *arg);
struct vs_op *vs_create_snapshot(struct vs_client *c, const char *vm_moref, const char *name, const char *desc,
    int memory, int quiesce, vs_op_fn done, void *arg);
struct vs_op *vs_remove_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg);
struct vs_op *vs_revert_snapshot(struct vs_client *c, const char *snap_moref, vs_op_fn done, void *arg);
/* Every changed area of a disk from changeId ("*" = allocated areas) up to
 * the snapshot, following the paged replies to the end of the disk. */
struct vs_op *vs_query_changes(struct vs_client *c, const char *vm_moref, const char *snap_moref, int disk_key,
    const char *change_id, uint64_t capacity, vs_op_fn done, void *arg);

/* What CreateVM_Task is given: a VM with this hardware.  Disks,
 * CD-ROMs and floppies name their controller by the key it has in
 * controllers[] (the source's keys); controllers that every VM has (IDE,
 * SIO) are not added but referred to, the others are added with their
 * bus numbers.  Disks are created thin, in order, at their units; drives
 * are created empty and not connected at power-on. */
struct vs_vm_spec {
	const char *name;
	const char *folder;               /* Folder moref */
	const char *resource_pool;
	const char *host;                 /* HostSystem moref */
	const char *datastore;            /* name */
	const char *guest_id;
	const char *version;
	const char *annotation;
	const char *firmware;             /* bios, efi or NULL (the platform's default) */
	int secure_boot;
	int cpus;
	int cores_per_socket;             /* 0: not set */
	int memory_mb;
	const struct vs_controller *controllers;
	size_t ncontrollers;
	const struct vs_disk *disks;      /* capacity, controller_key, unit */
	size_t ndisks;
	const struct vs_nic *nics;        /* type, network; mac when keep_mac */
	size_t nnics;
	int keep_mac;                     /* give the NICs their MAC addresses (manual) */
	const struct vs_drive *cdroms;
	size_t ncdroms;
	const struct vs_drive *floppies;
	size_t nfloppies;
	const struct vs_option *extra;
	size_t nextra;
};
/* Why spec cannot be created as asked (a device on a controller that is
 * not in it, a unit taken twice...), malloc'd, or NULL. */
char *vs_vm_spec_problem(const struct vs_vm_spec *spec);
struct vs_op *vs_create_vm(struct vs_client *c, const struct vs_vm_spec *spec, vs_op_fn done, void *arg);
struct vs_op *vs_power(struct vs_client *c, const char *vm_moref, const char *how /* on|off|shutdown|suspend */,
    vs_op_fn done, void *arg);
/* ReconfigVM_Task setting one extraConfig string option. */
struct vs_op *vs_set_extra_config(struct vs_client *c, const char *vm_moref, const char *key, const char *value,
    vs_op_fn done, void *arg);
/* Hot-add: ReconfigVM_Task adding an existing disk file (no fileOperation:
 * nothing is created) to vm at a controller and unit; and removing it
 * again (no fileOperation: the file stays, never "destroy"). */
struct vs_op *vs_attach_disk(struct vs_client *c, const char *vm_moref, const char *file, int controller_key, int unit,
    uint64_t capacity, vs_op_fn done, void *arg);
struct vs_op *vs_detach_disk(struct vs_client *c, const char *vm_moref, const struct vs_disk *d, vs_op_fn done,
    void *arg);
struct vs_op *vs_destroy(struct vs_client *c, const char *vm_moref, vs_op_fn done, void *arg);
/* GET a (small) datastore file: descriptors, vmx. */
struct vs_op *vs_get_file(struct vs_client *c, const char *datacenter, const char *datastore, const char *path,
    vs_op_fn done, void *arg);

/* "[ds0] web01/web01.vmdk" → datastore "ds0", path "web01/web01.vmdk". */
int vs_split_ds_path(const char *ds_path, char **datastore, char **path);
/* URL of a datastore file for /folder access (malloc'd). */
char *vs_folder_url(struct vs_client *c, const char *datacenter, const char *datastore, const char *path);

/* The short names of controller kinds ("lsilogic", "pvscsi", "ahci", ...)
 * and NIC models ("e1000", "vmxnet3", ...; the xsi type when unknown). */
const char *vs_ctrl_kind_name(enum vs_ctrl_kind k);
const char *vs_nic_model(const char *type);
/* The extraConfig keys that matter for booting the guest, NULL-ended:
 * the ones a copy of a VM carries (docs/ARCHITECTURE.md, "Target VMs"). */
extern const char *const vs_boot_keys[];

/* The folder at path ("a/b": names below the datacenter's VM folder; NULL
 * or "" is the VM folder itself) in datacenter dc, or NULL. */
const char *vs_inventory_folder(const struct vs_inventory *inv, const struct vs_datacenter *dc, const char *path);
/* A VM folder's path below its datacenter's VM folder ("" for the VM
 * folder itself; malloc'd). */
char *vs_folder_path(const struct vs_inventory *inv, const char *folder);
/* The resource pool at path ("a/b": names below root_pool) or NULL. */
const char *vs_inventory_pool(const struct vs_inventory *inv, const char *root_pool, const char *path);
/* The VM of that name in that folder, or NULL. */
const struct vs_vm *vs_inventory_vm_in(const struct vs_inventory *inv, const char *name, const char *folder);

void vs_inventory_free(struct vs_inventory *inv);
void vs_vm_free(struct vs_vm *vm);
/* A deep copy of everything but the snapshot tree and the problem (the
 * copy's are empty). */
void vs_vm_dup(const struct vs_vm *from, struct vs_vm *to);
const struct vs_vm *vs_inventory_vm(const struct vs_inventory *inv, const char *name);

/* Parse a RetrievePropertiesEx/RetrieveProperties reply's VirtualMachine
 * object into *vm (for the fuzzer and tests).  Returns 0 or -1. */
int vs_parse_vm_object(const xmlNode *objects, struct vs_vm *vm);
/* Parse a Datastore object (name, summary, its type and, from the
 * polymorphic info, a VMFS volume's major version) into *d, datacenter
 * left NULL (for the fuzzer and tests).  Returns 0, or -1 (no moref; *d
 * then holds nothing). */
int vs_parse_datastore_object(const xmlNode *objects, struct vs_datastore *d);
void vs_datastore_free(struct vs_datastore *d);

/* One QueryChangedDiskAreas reply (its returnval), asked at offset:
 * appends its areas to *ext (clipped to the capacity; adjacent ones
 * coalesced) and sets *next to where the next page starts.  An area
 * without a valid start and length is an error, never skipped.  *ext is
 * NULL or an array only this function grew (see xgrow).  Returns 0 or -1
 * with *err.  Call vs_extents_normalize afterwards. */
int vs_parse_changes(const xmlNode *returnval, uint64_t offset, uint64_t capacity, struct vs_extent **ext,
    size_t *n, uint64_t *next, char **err);
/* Sort areas by start and coalesce overlapping or adjacent ones; then,
 * while more than max remain, merge areas separated by at most *gap
 * (doubled from 64 KiB each round; 0 = nothing merged yet).  Copying the
 * bytes between two changed areas too is always correct, never the
 * reverse. */
void vs_extents_normalize(struct vs_extent *ext, size_t *n, size_t max, uint64_t *gap);
/* The first unusable value among disks (malloc'd), or NULL. */
char *vs_disks_problem(const struct vs_disk *disks, size_t n);

#endif
