/* Hot-add (SPEC §6): the appliance runs as a VM in the target vCenter;
 * a powered-off target VM's disk is attached to that VM (ReconfigVM, add
 * of the existing file, no file operation), written through the block
 * device that appears, and detached again (remove, never destroy).  The
 * hypervisor keeps the disk's format, so this reaches every datastore.
 *
 * Nothing about an attachment is persisted: a disk is this job's when its
 * file is one of the job's target disks, so after a restart the appliance
 * VM's own configuration says what is attached — the engine adopts it or
 * detaches it, and never touches a disk it does not know. */
#ifndef VMFERRY_JOBS_HOTADD_H
#define VMFERRY_JOBS_HOTADD_H

#include <stddef.h>
#include <stdint.h>

struct event;
struct job;
struct vs_op;
struct vs_vm;

/* Seconds a device may take to appear after its attach task ended. */
#define HOTADD_DEVICE_WAIT_S 10

struct hotadd_disk {
	char *file;      /* "[ds] vm/vm.vmdk": the target disk's current file */
	uint64_t capacity;
	int want;        /* to be attached by hotadd_attach */
	char *dev;       /* the block device, once attached and seen */
	char *no;        /* why it could not be attached (the caller falls back) */
	int tries;
};

struct hotadd {
	struct job *j;
	char *appliance;       /* the appliance VM's moref, once found */
	char *appliance_name;
	char *dc;              /* its datacenter */
	char *no;              /* why hot-add cannot be used at all, or NULL */
	int looked;            /* the appliance was looked for */
	struct hotadd_disk *d;
	size_t n;
	struct vs_op *op;
	struct event *timer;
	struct vs_vm *vm;      /* the appliance VM as last read */
	size_t i;
	double wait_t0;
	int detach_tries;
	void (*then)(struct hotadd *h);
	void (*after)(struct hotadd *h);
	/* Where the target is when not the job's rule's (a restore): NULL,
	 * the job's rule (as target.h's t->rule). */
	const struct cfg_rule *rule;
};

void hotadd_init(struct hotadd *h, struct job *j);
void hotadd_cancel(struct hotadd *h);
void hotadd_free(struct hotadd *h);
/* n target disks (their files and capacities are set by the caller). */
void hotadd_size(struct hotadd *h, size_t n);
/* Look for the VM this appliance runs in (once per runtime): then(h)
 * with h->no NULL when hot-add can be used to reach datacenter dc. */
void hotadd_find(struct hotadd *h, const char *dc, void (*then)(struct hotadd *h));
/* Attach every disk with want set (adopting one attached before a
 * restart) and wait for its device: then(h) with d[i].dev, or d[i].no
 * set and want cleared (nothing left attached for it). */
void hotadd_attach(struct hotadd *h, void (*then)(struct hotadd *h));
/* Detach every disk of this job that the appliance holds (whatever the
 * runtime remembers), then then(h); a detach that keeps failing makes
 * the job 失效 (and the next run detaches it). */
void hotadd_detach(struct hotadd *h, void (*then)(struct hotadd *h));
/* The device name a disk of that backing UUID gets on Linux (wwn-0x...),
 * malloc'd; NULL for an unusable UUID. */
char *hotadd_device_name(const char *uuid);
/* Whether two BIOS UUIDs name the same VM (SMBIOS may give the first
 * three fields byte-swapped). */
int hotadd_uuid_same(const char *a, const char *b);

#endif
