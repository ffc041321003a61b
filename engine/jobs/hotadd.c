/* Hot-add: attaching target disks to the VM the appliance runs in,
 * finding their block devices, detaching them (see hotadd.h). */
#include "engine/jobs/hotadd.h"

#include <ctype.h>
#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"
#include "engine/engine.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/platform.h"

#define DEFAULT_DEVICES "/dev/disk/by-id"
#define DMI_UUID "/sys/class/dmi/id/product_uuid"
#define HOTADD_DETACH_TRIES 3
#define HOTADD_ATTACH_TRIES 3
#define SCSI_UNITS 16 /* 7 is the controller's own */

/* Units being attached by some job of this daemon: two jobs never ask
 * for the same slot at once. */
struct slot_res {
	char *vm;
	int ctrl, unit;
};
static struct slot_res *reserved;
static size_t nreserved;

static void
reserve(const char *vm, int ctrl, int unit)
{
	reserved = xreallocarray(reserved, nreserved + 1, sizeof(*reserved));
	reserved[nreserved++] = (struct slot_res){ xstrdup(vm), ctrl, unit };
}

static void
unreserve(const char *vm, int ctrl, int unit)
{
	size_t k;

	for (k = 0; k < nreserved; k++) {
		if (reserved[k].ctrl == ctrl && reserved[k].unit == unit && str_eq(reserved[k].vm, vm)) {
			free(reserved[k].vm);
			reserved[k] = reserved[--nreserved];
			return;
		}
	}
}

static int
is_reserved(const char *vm, int ctrl, int unit)
{
	size_t k;

	for (k = 0; k < nreserved; k++)
		if (reserved[k].ctrl == ctrl && reserved[k].unit == unit && str_eq(reserved[k].vm, vm))
			return 1;
	return 0;
}

/* ---- names ---- */

/* The 32 hex digits of a UUID, lower case; -1 if it has not exactly 32. */
static int
uuid_hex(const char *u, char out[33])
{
	size_t n = 0;

	for (; u != NULL && *u; u++) {
		if (*u == '-' || *u == ' ')
			continue;
		if (!isxdigit((unsigned char)*u) || n == 32)
			return -1;
		out[n++] = (char)tolower((unsigned char)*u);
	}
	out[n] = '\0';
	return n == 32 ? 0 : -1;
}

char *
hotadd_device_name(const char *uuid)
{
	char hex[33];

	if (uuid_hex(uuid, hex) != 0)
		return NULL;
	return xasprintf("wwn-0x%s", hex);
}

int
hotadd_uuid_same(const char *a, const char *b)
{
	static const int swap[32] = { 6, 7, 4, 5, 2, 3, 0, 1, 10, 11, 8, 9, 14, 15, 12, 13, 16, 17, 18, 19, 20, 21, 22,
		23, 24, 25, 26, 27, 28, 29, 30, 31 };
	char x[33], y[33], z[33];
	int k;

	if (uuid_hex(a, x) != 0 || uuid_hex(b, y) != 0)
		return 0;
	if (strcmp(x, y) == 0)
		return 1;
	for (k = 0; k < 32; k++)
		z[k] = y[swap[k]];
	z[32] = '\0';
	return strcmp(x, z) == 0;
}

static const struct cfg_rule *
hot_rule(const struct hotadd *h)
{
	return h->rule != NULL ? h->rule : h->j->cfg;
}

static struct vs_client *
hot_client(const struct hotadd *h)
{
	const struct cfg_rule *r = hot_rule(h);

	return r != NULL ? platform_client(r->target.platform) : NULL;
}

static const struct cfg_node *
node_of(struct hotadd *h)
{
	return hot_rule(h) != NULL ? config_node(engine_config(), hot_rule(h)->node) : NULL;
}

static const char *
devices_dir(struct hotadd *h)
{
	const struct cfg_node *n = node_of(h);

	return n != NULL && n->hotadd_devices != NULL ? n->hotadd_devices : DEFAULT_DEVICES;
}

/* ---- life ---- */

void
hotadd_init(struct hotadd *h, struct job *j)
{
	memset(h, 0, sizeof(*h));
	h->j = j;
}

static void
clear_op(struct hotadd *h)
{
	token_drop(vs_op_cancel(h->op));
	h->op = NULL;
	if (h->timer != NULL)
		evtimer_del(h->timer);
}

void
hotadd_cancel(struct hotadd *h)
{
	clear_op(h);
}

static void
disks_free(struct hotadd *h)
{
	size_t i;

	for (i = 0; i < h->n; i++) {
		free(h->d[i].file);
		free(h->d[i].dev);
		free(h->d[i].no);
	}
	free(h->d);
	h->d = NULL;
	h->n = 0;
}

static void
set_vm(struct hotadd *h, const struct vs_vm *vm)
{
	rt_vm_set(&h->vm, vm);
}

void
hotadd_free(struct hotadd *h)
{
	clear_op(h);
	if (h->timer != NULL)
		event_free(h->timer);
	h->timer = NULL;
	disks_free(h);
	if (h->vm != NULL) {
		vs_vm_free(h->vm);
		free(h->vm);
	}
	free(h->appliance);
	free(h->appliance_name);
	free(h->dc);
	free(h->no);
	memset(h, 0, sizeof(*h));
}

void
hotadd_size(struct hotadd *h, size_t n)
{
	if (h->n == n)
		return;
	disks_free(h);
	h->n = n;
	h->d = xcalloc(n ? n : 1, sizeof(*h->d));
}

/* ---- finding the appliance VM ---- */

static void
say_no(struct hotadd *h, char *why)
{
	free(h->no);
	h->no = why;
}

static void
found_answer(struct hotadd *h, const char *dc)
{
	if (h->appliance != NULL && dc != NULL && !str_eq(h->dc, dc))
		say_no(h, xasprintf("the appliance VM %s is in datacenter %s, the target in %s", h->appliance_name,
		    h->dc, dc));
	h->then(h);
}

/* The BIOS UUID to look the appliance up by: the node's hotadd.uuid, else
 * (unless the node names the VM) the one this machine's firmware reports;
 * malloc'd, or NULL. */
static char *
local_uuid(const struct cfg_node *n)
{
	char line[80], *uuid = NULL;
	FILE *f;

	if (n != NULL && n->appliance_uuid != NULL)
		return xstrdup(n->appliance_uuid);
	if (n != NULL && n->appliance_vm != NULL)
		return NULL;
	if ((f = fopen(DMI_UUID, "r")) == NULL)
		return NULL;
	if (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '\0')
			uuid = xstrdup(line);
	}
	fclose(f);
	return uuid;
}

static void
appliance_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	struct hotadd *h = token_ctx(arg);
	const struct cfg_node *n;
	char *uuid = NULL, *dc;
	size_t k;

	if (h == NULL)
		return;
	dc = h->dc; /* the target's datacenter, until the appliance's is known */
	h->dc = NULL;
	if (inv == NULL) {
		rt_platform_failed(h->j, "target", hot_rule(h)->target.platform, error, refused);
		free(dc);
		return;
	}
	h->looked = 1;
	n = node_of(h);
	uuid = local_uuid(n);
	for (k = 0; k < inv->nvms && h->appliance == NULL; k++) {
		const struct vs_vm *vm = &inv->vms[k];

		if ((n != NULL && n->appliance_vm != NULL && str_eq(vm->name, n->appliance_vm)) ||
		    (uuid != NULL && hotadd_uuid_same(vm->uuid, uuid))) {
			h->appliance = xstrdup(vm->moref);
			h->appliance_name = xstrdup(vm->name);
			h->dc = xstrdup(vm->datacenter);
		}
	}
	if (h->appliance == NULL) {
		if (n != NULL && n->appliance_vm != NULL)
			say_no(h, xasprintf("no VM named %s (hotadd.vm of node %s) in platform %s", n->appliance_vm,
			    n->name, hot_rule(h)->target.platform));
		else
			say_no(h, xasprintf("this appliance (BIOS UUID %s) is not a VM of platform %s",
			    uuid != NULL ? uuid : "unknown", hot_rule(h)->target.platform));
	} else {
		say_no(h, NULL);
		job_log(h->j, LOG_INFO, "hot-add: the appliance runs as VM %s (%s)", h->appliance_name, h->appliance);
	}
	free(uuid);
	found_answer(h, dc);
	free(dc);
}

void
hotadd_find(struct hotadd *h, const char *dc, void (*then)(struct hotadd *h))
{
	const struct cfg_node *n = node_of(h);
	struct token *tok;
	char *uuid = NULL;

	h->then = then;
	if (n != NULL && n->hotadd_off) {
		say_no(h, xasprintf("hot-add is off for node %s (hotadd: false)", n->name));
		then(h);
		return;
	}
	if (!h->looked && (n == NULL || n->appliance_vm == NULL) && (uuid = local_uuid(n)) == NULL) {
		/* Not a VM, and nothing names one: no need to read the inventory. */
		h->looked = 1;
		say_no(h, xasprintf("this node is not a VM (no BIOS UUID in %s) and node %s names no hotadd.vm",
		    DMI_UUID, n != NULL ? n->name : "?"));
	}
	free(uuid);
	if (h->looked) {
		if (h->appliance != NULL)
			say_no(h, NULL);
		found_answer(h, dc);
		return;
	}
	free(h->dc);
	h->dc = dc != NULL ? xstrdup(dc) : NULL;
	tok = token_for(h->j, h);
	if (platform_inventory(hot_rule(h)->target.platform, 1, appliance_inventory, tok) != 0) {
		token_take(tok);
		say_no(h, xasprintf("target platform %s is not configured", hot_rule(h)->target.platform));
		then(h);
	}
}

/* ---- attaching ---- */

static void attach_step(struct hotadd *h);

static const struct vs_disk *
held(const struct vs_vm *vm, const char *file)
{
	size_t k;

	for (k = 0; vm != NULL && k < vm->ndisks; k++)
		if (str_eq(vm->disks[k].file, file))
			return &vm->disks[k];
	return NULL;
}

static int
is_scsi(const struct vs_controller *c)
{
	return c->kind == VS_CTRL_LSILOGIC || c->kind == VS_CTRL_LSILOGIC_SAS || c->kind == VS_CTRL_PVSCSI ||
	    c->kind == VS_CTRL_BUSLOGIC;
}

/* A free unit on one of the appliance's SCSI controllers. */
static int
free_slot(struct hotadd *h, int *ctrl, int *unit)
{
	size_t c, k;
	int u;

	for (c = 0; c < h->vm->ncontrollers; c++) {
		if (!is_scsi(&h->vm->controllers[c]))
			continue;
		for (u = 0; u < SCSI_UNITS; u++) {
			int taken = u == 7 || is_reserved(h->appliance, h->vm->controllers[c].key, u);

			for (k = 0; k < h->vm->ndisks && !taken; k++)
				taken = h->vm->disks[k].controller_key == h->vm->controllers[c].key &&
				    h->vm->disks[k].unit == u;
			if (!taken) {
				*ctrl = h->vm->controllers[c].key;
				*unit = u;
				return 0;
			}
		}
	}
	return -1;
}

static void
disk_fails(struct hotadd *h, char *why)
{
	struct hotadd_disk *d = &h->d[h->i];

	job_log(h->j, LOG_WARN, "hot-add of %s: %s", d->file, why);
	free(d->no);
	d->no = why;
	d->want = 0;
	free(d->dev);
	d->dev = NULL;
}

static void
rescan(struct hotadd *h)
{
	DIR *dir;
	struct dirent *e;

	/* Only the node's own SCSI hosts, and only where its devices are. */
	if (strcmp(devices_dir(h), DEFAULT_DEVICES) != 0 || (dir = opendir("/sys/class/scsi_host")) == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		char *p;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		p = xasprintf("/sys/class/scsi_host/%s/scan", e->d_name);
		if ((f = fopen(p, "w")) != NULL) {
			fputs("- - -\n", f);
			fclose(f);
		}
		free(p);
	}
	closedir(dir);
}

static void
wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	attach_step(arg);
}

static void
wait_a_bit(struct hotadd *h, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (h->timer != NULL)
		event_free(h->timer);
	h->timer = evtimer_new(loop_base(), wait_timer_cb, h);
	evtimer_add(h->timer, &tv);
}

static void appliance_read(struct vs_out *out, void *arg);

static void
read_appliance(struct hotadd *h)
{
	h->op = vs_get_vm(hot_client(h), h->appliance, appliance_read, token_for(h->j, h));
}

static void
attached(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx(arg);
	struct hotadd_disk *d;

	if (h == NULL)
		return;
	h->op = NULL;
	d = &h->d[h->i];
	if (out->status != VS_OK && vs_status_transient(out->status)) {
		rt_vs_failed(h->j, "attaching a disk to the appliance VM", out);
		return;
	}
	if (out->status != VS_OK) {
		/* Someone (this job before a restart) may hold it already, or
		 * another job took the slot: look again, a few times. */
		if (++d->tries < HOTADD_ATTACH_TRIES &&
		    (str_eq(out->fault_type, "FileLocked") || str_eq(out->fault_type, "InvalidDeviceSpec") ||
		        str_eq(out->fault_type, "InvalidArgument"))) {
			job_log(h->j, LOG_INFO, "hot-add of %s refused (%s): reading the appliance VM again", d->file,
			    out->error);
			read_appliance(h);
			return;
		}
		disk_fails(h, xasprintf("the appliance VM %s refused it: %s", h->appliance_name,
		    out->error ? out->error : "fault"));
		h->i++;
		attach_step(h);
		return;
	}
	job_log(h->j, LOG_INFO, "hot-add: %s attached to the appliance VM %s", d->file, h->appliance_name);
	read_appliance(h);
}

static void detached_one(struct vs_out *out, void *arg);

/* The disk h->i is attached as dv: wait for its device. */
static void
device_wait(struct hotadd *h, const struct vs_disk *dv)
{
	struct hotadd_disk *d = &h->d[h->i];
	char *name = hotadd_device_name(dv->uuid);

	if (name == NULL) {
		disk_fails(h, xasprintf("the attached disk has no usable UUID (%s): its device cannot be found",
		    dv->uuid ? dv->uuid : "none"));
		h->op = vs_detach_disk(hot_client(h), h->appliance, dv, detached_one, token_for(h->j, h));
		return;
	}
	free(d->dev);
	d->dev = xasprintf("%s/%s", devices_dir(h), name);
	free(name);
	h->wait_t0 = now_mono();
	rescan(h);
	attach_step(h);
}

static void
appliance_read(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx_reply(out, arg, "reading the appliance VM");
	const struct vs_disk *dv;
	struct hotadd_disk *d;
	int ctrl, unit;

	if (h == NULL)
		return;
	h->op = NULL;
	set_vm(h, out->vm);
	d = &h->d[h->i];
	if ((dv = held(h->vm, d->file)) != NULL) {
		device_wait(h, dv);
		return;
	}
	if (free_slot(h, &ctrl, &unit) != 0) {
		disk_fails(h, xasprintf("no free unit on a SCSI controller of the appliance VM %s", h->appliance_name));
		h->i++;
		attach_step(h);
		return;
	}
	reserve(h->appliance, ctrl, unit);
	h->op = vs_attach_disk(hot_client(h), h->appliance, d->file, ctrl, unit, d->capacity, attached,
	    token_for(h->j, h));
	/* The slot is the server's to give from here on. */
	unreserve(h->appliance, ctrl, unit);
}

static void
attach_step(struct hotadd *h)
{
	struct hotadd_disk *d;

	while (h->i < h->n && !h->d[h->i].want)
		h->i++;
	if (h->i >= h->n) {
		h->then(h);
		return;
	}
	d = &h->d[h->i];
	if (d->dev == NULL) {
		read_appliance(h);
		return;
	}
	if (access(d->dev, W_OK) == 0) {
		job_log(h->j, LOG_INFO, "hot-add: %s is %s", d->file, d->dev);
		h->i++;
		attach_step(h);
		return;
	}
	if (now_mono() - h->wait_t0 < HOTADD_DEVICE_WAIT_S) {
		wait_a_bit(h, 200);
		return;
	}
	disk_fails(h, xasprintf("its device %s/%s did not appear within %d s of the attach", devices_dir(h),
	    strrchr(d->dev, '/') + 1, HOTADD_DEVICE_WAIT_S));
	/* Nothing stays attached that is not used. */
	if (held(h->vm, d->file) != NULL) {
		h->op = vs_detach_disk(hot_client(h), h->appliance, held(h->vm, d->file), detached_one,
		    token_for(h->j, h));
		return;
	}
	h->i++;
	attach_step(h);
}

static void unused_read(struct vs_out *out, void *arg);

/* A detach's answer: 0 done; 1 refused, logged with what comes next (the
 * caller tries again); -1 the job has failed or gone 失效. */
static int
detach_answer(struct hotadd *h, struct vs_out *out, const char *file, const char *next)
{
	h->op = NULL;
	if (out->status == VS_OK) {
		h->detach_tries = 0;
		return 0;
	}
	if (vs_status_transient(out->status)) {
		rt_vs_failed(h->j, "detaching a disk from the appliance VM", out);
		return -1;
	}
	if (++h->detach_tries >= HOTADD_DETACH_TRIES) {
		rt_lost(h->j, "detaching %s from the appliance VM %s failed %d times: %s; it is tried again when the job "
		              "runs again", file, h->appliance_name, HOTADD_DETACH_TRIES, out->error ? out->error : "fault");
		return -1;
	}
	job_log(h->j, LOG_WARN, "detaching %s from the appliance VM %s: %s; %s", file, h->appliance_name,
	    out->error ? out->error : "fault", next);
	return 1;
}

static void
detached_one(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx(arg);

	if (h == NULL)
		return;
	/* Gone meanwhile (a remove sent before a restart), or refused: the
	 * appliance VM's configuration says which. */
	switch (detach_answer(h, out, h->d[h->i].file, "reading it again")) {
	case -1:
		return;
	case 1:
		h->op = vs_get_vm(hot_client(h), h->appliance, unused_read, token_for(h->j, h));
		return;
	}
	job_log(h->j, LOG_INFO, "hot-add: %s detached", h->d[h->i].file);
	h->i++;
	attach_step(h);
}

static void
unused_read(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx_reply(out, arg, "reading the appliance VM");
	const struct vs_disk *dv;

	if (h == NULL)
		return;
	h->op = NULL;
	set_vm(h, out->vm);
	if ((dv = held(h->vm, h->d[h->i].file)) != NULL) {
		h->op = vs_detach_disk(hot_client(h), h->appliance, dv, detached_one, token_for(h->j, h));
		return;
	}
	job_log(h->j, LOG_INFO, "hot-add: %s is no longer attached", h->d[h->i].file);
	h->detach_tries = 0;
	h->i++;
	attach_step(h);
}

void
hotadd_attach(struct hotadd *h, void (*then)(struct hotadd *h))
{
	size_t i;

	h->then = then;
	h->i = 0;
	h->detach_tries = 0;
	for (i = 0; i < h->n; i++) {
		free(h->d[i].dev);
		h->d[i].dev = NULL;
		h->d[i].tries = 0;
	}
	if (h->appliance == NULL) {
		for (i = 0; i < h->n; i++)
			h->d[i].want = 0;
		then(h);
		return;
	}
	attach_step(h);
}

/* ---- detaching ---- */

static void detach_step(struct hotadd *h);

static int
ours(struct hotadd *h, const char *file)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (str_eq(h->d[i].file, file))
			return 1;
	return 0;
}

static void detach_found(struct hotadd *h);

/* A detach failed: read the appliance VM again (a disk removed meanwhile
 * is done with) and detach what it still holds. */
static void
detach_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	detach_found(arg);
}

static void
detach_done(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx(arg);
	struct timeval tv = { 2, 0 };

	if (h == NULL)
		return;
	switch (detach_answer(h, out, h->vm->disks[h->i].file, "trying again")) {
	case -1:
		return;
	case 1:
		if (h->timer != NULL)
			event_free(h->timer);
		h->timer = evtimer_new(loop_base(), detach_timer_cb, h);
		evtimer_add(h->timer, &tv);
		return;
	}
	job_log(h->j, LOG_INFO, "hot-add: %s detached from the appliance VM %s", h->vm->disks[h->i].file,
	    h->appliance_name);
	h->i++;
	detach_step(h);
}

static void
detach_step(struct hotadd *h)
{
	while (h->i < h->vm->ndisks && !ours(h, h->vm->disks[h->i].file))
		h->i++;
	if (h->i >= h->vm->ndisks) {
		h->then(h);
		return;
	}
	h->op = vs_detach_disk(hot_client(h), h->appliance, &h->vm->disks[h->i], detach_done, token_for(h->j, h));
}

static void
detach_read(struct vs_out *out, void *arg)
{
	struct hotadd *h = token_ctx_reply(out, arg, "reading the appliance VM");
	size_t i;

	if (h == NULL)
		return;
	h->op = NULL;
	set_vm(h, out->vm);
	for (i = 0; i < h->n; i++) {
		free(h->d[i].dev);
		h->d[i].dev = NULL;
	}
	h->i = 0;
	detach_step(h);
}

static void
detach_found(struct hotadd *h)
{
	h->then = h->after;
	if (h->appliance == NULL) {
		h->then(h);
		return;
	}
	h->op = vs_get_vm(hot_client(h), h->appliance, detach_read, token_for(h->j, h));
}

void
hotadd_detach(struct hotadd *h, void (*then)(struct hotadd *h))
{
	const struct cfg_node *n = node_of(h);

	h->after = then;
	h->detach_tries = 0;
	/* After a restart the appliance is looked for first: what this job
	 * left attached before must go. */
	if (hot_rule(h) == NULL || hot_client(h) == NULL || (n != NULL && n->hotadd_off)) {
		then(h);
		return;
	}
	if (!h->looked)
		hotadd_find(h, NULL, detach_found);
	else
		detach_found(h);
}
