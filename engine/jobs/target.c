#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* A vSphere target VM (see target.h). */
#include "engine/jobs/target.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/cowd.h"
#include "drivers/transport.h"
#include "drivers/vmdk.h"
#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/loop.h"
#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/units.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "engine/platform.h"

/* ---- persisted state ---- */

void
target_state_free(struct target_state *st)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++) {
		free(st->disks[i].file);
		free(st->disks[i].ds);
		free(st->disks[i].flat);
		free(st->disks[i].via_why);
	}
	free(st->disks);
	free(st->vm);
	free(st->land_snap);
	free(st->write_why);
	memset(st, 0, sizeof(*st));
}

void
target_state_put(const struct target_state *st, struct sbuf *b)
{
	size_t i;

	rec_put_str(b, st->vm);
	rec_put_u64(b, (uint64_t)st->create_at);
	rec_put_u8(b, st->write);
	rec_put_str(b, st->write_why);
	rec_put_u8(b, st->land_stage);
	rec_put_str(b, st->land_snap);
	rec_put_u64(b, (uint64_t)st->land_asked_at);
	for (i = 0; i < st->ndisks; i++) {
		rec_put_str(b, st->disks[i].file);
		rec_put_str(b, st->disks[i].ds);
		rec_put_str(b, st->disks[i].flat);
	}
}

int
target_state_get(struct rec_reader *r, struct target_state *st, size_t ndisks)
{
	size_t i;

	memset(st, 0, sizeof(*st));
	st->vm = rec_get_opt_str(r);
	st->create_at = (int64_t)rec_get_u64(r);
	st->write = rec_get_u8(r);
	st->write_why = rec_get_opt_str(r);
	st->land_stage = rec_get_u8(r);
	st->land_snap = rec_get_opt_str(r);
	st->land_asked_at = (int64_t)rec_get_u64(r);
	target_state_size(st, ndisks);
	for (i = 0; i < ndisks; i++) {
		st->disks[i].file = rec_get_opt_str(r);
		st->disks[i].ds = rec_get_opt_str(r);
		st->disks[i].flat = rec_get_opt_str(r);
	}
	if (r->bad) {
		target_state_free(st);
		return -1;
	}
	return 0;
}

void
target_state_put_vias(const struct target_state *st, struct sbuf *b)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++) {
		rec_put_u8(b, st->disks[i].via);
		rec_put_str(b, st->disks[i].via_why);
	}
}

int
target_state_get_vias(struct rec_reader *r, struct target_state *st)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++) {
		st->disks[i].via = rec_get_u8(r);
		st->disks[i].via_why = rec_get_opt_str(r);
		if (st->disks[i].via > TARGET_VIA_WHOLE)
			r->bad = 1;
	}
	return r->bad ? -1 : 0;
}

/* A record from before the transports per disk: its passes went into the
 * staging images, landed as deltas or uploaded whole (a transport chosen
 * now that differs makes the kind copy again what may be missing). */
void
target_state_old_vias(struct target_state *st)
{
	size_t i;

	for (i = 0; i < st->ndisks; i++)
		st->disks[i].via = st->write == TARGET_WRITE_WHOLE ? TARGET_VIA_WHOLE : TARGET_VIA_DELTA;
}

void
target_state_size(struct target_state *st, size_t ndisks)
{
	size_t i;

	if (st->disks != NULL && st->ndisks == ndisks)
		return;
	for (i = 0; i < st->ndisks; i++) {
		free(st->disks[i].file);
		free(st->disks[i].ds);
		free(st->disks[i].flat);
		free(st->disks[i].via_why);
	}
	free(st->disks);
	st->ndisks = ndisks;
	st->disks = xcalloc(ndisks ? ndisks : 1, sizeof(*st->disks));
}

/* ---- runtime ---- */

const struct cfg_rule *
target_rule(const struct target *t)
{
	return t->rule != NULL ? t->rule : t->j->cfg;
}

struct vs_client *
target_client(const struct target *t)
{
	const struct cfg_rule *r = target_rule(t);

	return r != NULL ? platform_client(r->target.platform) : NULL;
}

void
target_init(struct target *t, struct job *j, struct target_state *st, void (*save)(struct job *j))
{
	memset(t, 0, sizeof(*t));
	t->j = j;
	t->st = st;
	t->save = save;
	t->upload_fd = -1;
	hotadd_init(&t->hot, j);
}

void
target_cancel(struct target *t)
{
	token_drop(vs_op_cancel(t->op));
	t->op = NULL;
	if (t->upload != NULL)
		disk_upload_cancel(t->upload);
	t->upload = NULL;
	if (t->upload_fd >= 0)
		close(t->upload_fd);
	t->upload_fd = -1;
	if (t->timer != NULL)
		evtimer_del(t->timer);
	t->create_ok = 0;
	target_land_cancel(t);
	hotadd_cancel(&t->hot);
}

void
target_free(struct target *t)
{
	target_cancel(t);
	if (t->timer != NULL)
		event_free(t->timer);
	t->timer = NULL;
	if (t->src != NULL) {
		vs_vm_free(t->src);
		free(t->src);
	}
	t->src = NULL;
	free(t->src_cpu);
	t->src_cpu = NULL;
	free(t->src_caps);
	t->src_caps = NULL;
	free(t->what);
	t->what = NULL;
	free(t->destroy_error);
	t->destroy_error = NULL;
	hotadd_free(&t->hot);
}

char *
target_marker(const struct job *j)
{
	return xasprintf("vmferry %s %s/%s", cfg_kind_name(j->kind), j->rule, j->vm);
}

/* The target whose work is still current (its call answered). */
static struct target *
target_of(struct target *t)
{
	if (t != NULL)
		t->op = NULL;
	return t;
}

/* ---- preparing: pre-checks, then the target VM ---- */

static void target_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg);
static int create_held(struct target *t);
static int landing_left(struct target *t, const struct vs_vm *vm);

/* Why this source VM cannot be copied, or NULL. */
static char *
source_problem(const struct job *j, const struct vs_vm *vm)
{
	size_t i;

	if (vm->problem != NULL)
		return xasprintf("source platform %s sent unusable data for VM %s: %s", j->cfg != NULL ? j->cfg->source_platform : "?", vm->name,
		    vm->problem);
	for (i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].mode != NULL && strncmp(vm->disks[i].mode, "independent", 11) == 0)
			return xasprintf("VM %s has an independent disk (%s, %s); VMs with independent disks cannot be "
			                 "migrated (不支持包含独立磁盘的虚机)",
			    vm->name, vm->disks[i].label ? vm->disks[i].label : vm->disks[i].file, vm->disks[i].mode);
	if (vm->ndisks == 0)
		return xasprintf("VM %s has no disks to migrate", vm->name);
	return NULL;
}

static void
source_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	struct target *t = target_of(token_ctx(arg));
	const struct vs_vm *vm;
	char *why;
	size_t i;
	struct token *tok;

	if (t == NULL)
		return;
	if (inv == NULL) {
		rt_platform_failed(t->j, "source", target_rule(t)->source_platform, error, refused);
		return;
	}
	vm = vs_inventory_vm(inv, t->j->vm);
	if (vm == NULL) {
		rt_fail(t->j, "VM %s not found on platform %s", t->j->vm, target_rule(t)->source_platform);
		return;
	}
	if ((why = source_problem(t->j, vm)) != NULL) {
		rt_fail(t->j, "%s", why);
		free(why);
		return;
	}
	rt_vm_set(&t->src, vm);
	free(t->src_cpu);
	t->src_cpu = NULL;
	for (i = 0; i < inv->nhosts; i++)
		if (str_eq(inv->hosts[i].moref, vm->host) && inv->hosts[i].cpu_model != NULL)
			t->src_cpu = xstrdup(inv->hosts[i].cpu_model);
	tok = token_for(t->j, t);
	if (platform_inventory(target_rule(t)->target.platform, 1, target_inventory, tok) != 0) {
		token_take(tok);
		rt_fail(t->j, "target platform %s is not configured", target_rule(t)->target.platform);
	}
}

static void
adopt(struct target *t, const char *moref)
{
	if (!str_eq(t->st->vm, moref)) {
		free(t->st->vm);
		t->st->vm = xstrdup(moref);
	}
	t->st->create_at = 0;
	target_state_size(t->st, t->src->ndisks);
	t->then(t);
}

static void
create_done(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx(arg));

	if (t == NULL)
		return;
	if (out->status != VS_OK || out->moref == NULL) {
		/* A refusal made no VM: nothing to wait for next time.  An
		 * unknown outcome (no answer) keeps the wait. */
		if (out->status == VS_FAULT) {
			t->st->create_at = 0;
			t->save(t->j);
		}
		rt_vs_failed(t->j, "creating the target VM", out);
		return;
	}
	job_log(t->j, LOG_INFO, "target VM created: %s", out->moref);
	adopt(t, out->moref);
}

/* The rule's datacenter, host and datastore on the target, or a refusal. */
static int
find_place(struct target *t, const struct vs_inventory *inv, const struct vs_datacenter **dc,
    const struct vs_host **host, const struct vs_datastore **ds)
{
	const struct cfg_rule *r = target_rule(t);
	size_t i;

	*dc = NULL;
	*host = NULL;
	*ds = NULL;
	for (i = 0; i < inv->ndcs; i++)
		if (str_eq(inv->dcs[i].name, r->target.datacenter))
			*dc = &inv->dcs[i];
	for (i = 0; i < inv->nhosts; i++)
		if (str_eq(inv->hosts[i].name, r->target.host) && str_eq(inv->hosts[i].datacenter, r->target.datacenter))
			*host = &inv->hosts[i];
	for (i = 0; i < inv->ndatastores; i++)
		if (str_eq(inv->datastores[i].name, r->target.datastore) &&
		    str_eq(inv->datastores[i].datacenter, r->target.datacenter))
			*ds = &inv->datastores[i];
	if (*dc == NULL) {
		rt_fail(t->j, "target datacenter %s not found on platform %s", r->target.datacenter, r->target.platform);
		return -1;
	}
	if (*host == NULL) {
		rt_fail(t->j, "target host %s not found in datacenter %s on platform %s", r->target.host,
		    r->target.datacenter, r->target.platform);
		return -1;
	}
	if (*ds == NULL) {
		rt_fail(t->j, "target datastore %s not found in datacenter %s on platform %s", r->target.datastore,
		    r->target.datacenter, r->target.platform);
		return -1;
	}
	return 0;
}

/* One line that says what the target VM gets, for the log. */
static char *
hardware_summary(const struct vs_vm_spec *s)
{
	struct sbuf b;
	size_t i;

	sbuf_init(&b);
	sbuf_printf(&b, "%d CPUs", s->cpus);
	if (s->cores_per_socket > 0)
		sbuf_printf(&b, " (%d per socket)", s->cores_per_socket);
	sbuf_printf(&b, ", %d MB, %s, %s%s, guest %s", s->memory_mb, s->version ? s->version : "default version",
	    s->firmware ? s->firmware : "default firmware", s->secure_boot ? " with secure boot" : "",
	    s->guest_id ? s->guest_id : "otherGuest64");
	for (i = 0; i < s->ncontrollers; i++)
		sbuf_printf(&b, "%s%s:%d", i ? ", " : "; controllers ", vs_ctrl_kind_name(s->controllers[i].kind),
		    s->controllers[i].bus);
	for (i = 0; i < s->ndisks; i++)
		sbuf_printf(&b, "%s%d:%d", i ? ", " : "; disks at ", s->disks[i].controller_key, s->disks[i].unit);
	for (i = 0; i < s->nnics; i++)
		sbuf_printf(&b, "%s%s %s", i ? ", " : "; NICs ", vs_nic_model(s->nics[i].type),
		    s->keep_mac && s->nics[i].mac ? s->nics[i].mac : "(new MAC)");
	sbuf_printf(&b, "; %zu CD-ROM, %zu floppy, %zu boot options", s->ncdroms, s->nfloppies, s->nextra);
	return sbuf_steal(&b);
}

static void
create_vm(struct target *t, const struct vs_host *host, const struct vs_datastore *ds, const char *folder,
    const char *pool)
{
	const struct cfg_rule *r = target_rule(t);
	const struct vs_vm *vm = t->src;
	struct vs_vm_spec spec;
	char *mark = target_marker(t->j), *name = cfg_target_name(r, t->j->vm), *why, *hw;

	memset(&spec, 0, sizeof(spec));
	spec.name = name;
	spec.folder = folder;
	spec.resource_pool = pool;
	spec.host = host->moref;
	spec.datastore = ds->name;
	spec.guest_id = vm->guest_id;
	spec.version = vm->version;
	spec.annotation = mark;
	spec.firmware = vm->firmware;
	spec.secure_boot = vm->secure_boot;
	spec.cpus = vm->cpus;
	spec.cores_per_socket = vm->cores_per_socket;
	spec.memory_mb = vm->memory_mb;
	spec.controllers = vm->controllers;
	spec.ncontrollers = vm->ncontrollers;
	spec.disks = vm->disks;
	spec.ndisks = vm->ndisks;
	spec.nics = vm->nics;
	spec.nnics = vm->nnics;
	spec.keep_mac = r->options.keep_mac;
	spec.cdroms = vm->cdroms;
	spec.ncdroms = vm->ncdroms;
	spec.floppies = vm->floppies;
	spec.nfloppies = vm->nfloppies;
	spec.extra = vm->extra;
	spec.nextra = vm->nextra;
	if ((why = vs_vm_spec_problem(&spec)) != NULL) {
		rt_fail(t->j, "VM %s cannot be copied as it is: %s", vm->name, why);
		free(why);
		goto out;
	}
	hw = hardware_summary(&spec);
	job_log(t->j, LOG_INFO, "creating target VM %s on %s (host %s, datastore %s%s%s): %s", name, r->target.platform,
	    host->name, ds->name, r->target.folder ? ", folder " : "", r->target.folder ? r->target.folder : "", hw);
	free(hw);
	t->op = vs_create_vm(target_client(t), &spec, create_done, token_for(t->j, t));
out:
	free(name);
	free(mark);
}

static void
look_again(struct target *t, int refresh)
{
	struct token *tok = token_for(t->j, t);

	if (platform_inventory(target_rule(t)->target.platform, refresh, target_inventory, tok) != 0) {
		token_take(tok);
		rt_fail(t->j, "target platform %s is not configured", target_rule(t)->target.platform);
	}
}

static void
settle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	look_again(arg, 1);
}

static void
create_committed(void *arg)
{
	struct target *t = token_ctx(arg);

	if (t == NULL)
		return;
	t->create_ok = 1;
	look_again(t, 0);
}

/* CreateVM is not safe to repeat: a VM it was asked for before a crash
 * (or whose answer was lost) may still be on its way.  So its time is
 * recorded, and committed, before it is asked for; a later look that
 * finds no VM waits (re-reading the inventory) until that time is
 * TARGET_CREATE_SETTLE_S old before it asks again.  1: held (it goes on
 * by itself), 0: CreateVM may go now. */
static int
create_held(struct target *t)
{
	int64_t age_ms = rt_now_ms() - t->st->create_at;
	struct timeval tv = { 2, 0 };

	if (t->create_ok)
		return 0;
	if (t->st->create_at != 0 && age_ms >= 0 && age_ms < TARGET_CREATE_SETTLE_S * 1000) {
		if (!t->waiting)
			job_log(t->j, LOG_INFO, "the target VM asked for %lld s ago is not there yet: waiting for it "
			    "(up to %d s) before asking again", (long long)(age_ms / 1000), TARGET_CREATE_SETTLE_S);
		t->waiting = 1;
		if (t->timer == NULL)
			t->timer = evtimer_new(loop_base(), settle_timer_cb, t);
		evtimer_add(t->timer, &tv);
		return 1;
	}
	t->st->create_at = rt_now_ms();
	t->save(t->j);
	store_after_commit(create_committed, token_for(t->j, t));
	return 1;
}

static void
target_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	struct target *t = target_of(token_ctx(arg));
	const struct cfg_rule *r;
	const struct vs_host *host;
	const struct vs_datastore *ds;
	const struct vs_datacenter *dc;
	const struct vs_vm *clash;
	const char *folder, *pool;
	uint64_t need = 0;
	char *mark, *name, *where, *why, have[32], want[32];
	size_t i;

	if (t == NULL)
		return;
	r = target_rule(t);
	if (inv == NULL) {
		rt_platform_failed(t->j, "target", r->target.platform, error, refused);
		return;
	}
	if (find_place(t, inv, &dc, &host, &ds) != 0)
		return;
	/* A datastore whose type says its snapshot deltas are seSparse
	 * (VMFS6) takes none over HTTPS: known here, so each disk's transport
	 * is chosen knowing it from the first pass on (target_via.c; a kind
	 * that needs the chain then fails before copying), not when the
	 * first landing reads a delta's descriptor, after the whole copy.
	 * A datastore of unknown type is found out there, as before. */
	if (t->st->write == TARGET_WRITE_UNKNOWN && cowd_datastore_check(ds->name, ds->type, ds->vmfs_major, &why) != 0) {
		t->st->write = TARGET_WRITE_WHOLE;
		free(t->st->write_why);
		t->st->write_why = why;
	}
	if ((folder = vs_inventory_folder(inv, dc, r->target.folder)) == NULL) {
		rt_fail(t->j, "target folder %s not found in datacenter %s on platform %s", r->target.folder,
		    r->target.datacenter, r->target.platform);
		return;
	}
	pool = host->resource_pool;
	if (r->target.resource_pool != NULL &&
	    (pool = vs_inventory_pool(inv, host->resource_pool, r->target.resource_pool)) == NULL) {
		rt_fail(t->j, "target resource pool %s not found under host %s on platform %s", r->target.resource_pool,
		    r->target.host, r->target.platform);
		return;
	}
	/* A different CPU vendor may stop a guest from booting or running
	 * well; the user decides, the log says it. */
	if (t->src_cpu != NULL && host->cpu_model != NULL &&
	    (strstr(t->src_cpu, "AMD") != NULL) != (strstr(host->cpu_model, "AMD") != NULL))
		job_log(t->j, LOG_WARN, "CPU vendors differ: source host has \"%s\", target host %s has \"%s\"", t->src_cpu,
		    host->name, host->cpu_model);
	/* vSphere wants a VM's name unique in its folder, not on the
	 * platform: a VM of that name elsewhere is no clash. */
	name = cfg_target_name(r, t->j->vm);
	clash = vs_inventory_vm_in(inv, name, folder);
	if (clash != NULL) {
		/* Ours from before a crash: adopt it.  Anyone else's: refuse.
		 * The previous version's marker ("vmferry migration R/V") is
		 * this one's for migrations. */
		mark = target_marker(t->j);
		if (t->adopt_asked_only && t->st->vm == NULL && t->st->create_at == 0 && str_eq(clash->annotation, mark)) {
			rt_fail(t->j, "a VM named %s already exists on %s, made by an earlier restore of this rule: give the "
			              "restore another --name, or delete that VM first", name, r->target.platform);
			free(mark);
			free(name);
			return;
		}
		if (str_eq(clash->moref, t->st->vm) || str_eq(clash->annotation, mark)) {
			job_log(t->j, LOG_INFO, "target VM %s (%s) on %s was created by this rule: adopting it", clash->name,
			    clash->moref, r->target.platform);
			free(mark);
			free(name);
			adopt(t, clash->moref);
			return;
		}
		free(mark);
		where = vs_folder_path(inv, folder);
		rt_fail(t->j, "a VM named %s already exists in folder %s/vm%s%s on %s and was not created by this rule%s",
		    name, r->target.datacenter, *where ? "/" : "", where, r->target.platform,
		    str_eq(clash->moref, t->src->moref) && str_eq(r->source_platform, r->target.platform)
		        ? " (it is the source VM itself: give the target another name with target.name, or another "
		          "target.folder)"
		        : "");
		free(where);
		free(name);
		return;
	}
	free(name);
	for (i = 0; i < t->src->ndisks; i++)
		need += t->src->disks[i].capacity;
	if (ds->free < need) {
		units_format_size(ds->free, have, sizeof(have));
		units_format_size(need, want, sizeof(want));
		rt_fail(t->j, "target datastore %s has %s free; VM %s needs %s", ds->name, have, t->j->vm, want);
		return;
	}
	if (create_held(t))
		return;
	if (t->src->host_name != NULL && t->src->version != NULL)
		job_log(t->j, LOG_INFO, "source: %s on host %s, %d CPUs, %d MB, hardware %s, %zu disks", t->src->name,
		    t->src->host_name, t->src->cpus, t->src->memory_mb, t->src->version, t->src->ndisks);
	create_vm(t, host, ds, folder, pool);
}

void
target_prepare(struct target *t, void (*then)(struct target *t))
{
	struct token *tok;

	t->then = then;
	if (target_rule(t) == NULL || rt_src_client(t->j) == NULL || target_client(t) == NULL) {
		rt_fail(t->j, "its platforms are not configured");
		return;
	}
	tok = token_for(t->j, t);
	platform_inventory(target_rule(t)->source_platform, 1, source_inventory, tok);
}

void
target_prepare_from(struct target *t, const struct vs_vm *src, void (*then)(struct target *t))
{
	char *why;

	t->then = then;
	if (target_rule(t) == NULL || target_client(t) == NULL) {
		rt_fail(t->j, "its target platform is not configured");
		return;
	}
	if ((why = source_problem(t->j, src)) != NULL) {
		rt_fail(t->j, "%s", why);
		free(why);
		return;
	}
	rt_vm_set(&t->src, src);
	free(t->src_cpu);
	t->src_cpu = NULL;
	look_again(t, 1);
}

/* ---- the target VM's disks ---- */

static void read_descriptor(struct target *t);

static void
descriptor_done(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx_reply(out, arg, "reading the target disk's descriptor"));
	struct target_disk *d;
	char *err = NULL;

	if (t == NULL)
		return;
	d = &t->st->disks[t->i];
	free(d->ds);
	free(d->flat);
	if (vmdk_data_file(out->data, out->len, d->file, &d->ds, &d->flat, &err) != 0) {
		rt_fail(t->j, "descriptor %s: %s", d->file, err);
		free(err);
		return;
	}
	t->i++;
	read_descriptor(t);
}

/* Where each target disk keeps its data, from its descriptor. */
static void
read_descriptor(struct target *t)
{
	char *ds = NULL, *path = NULL;
	const char *file;

	if (t->i >= t->st->ndisks) {
		t->save(t->j);
		t->then(t);
		return;
	}
	file = t->st->disks[t->i].file;
	if (file == NULL || vs_split_ds_path(file, &ds, &path) != 0) {
		rt_fail(t->j, "disk %zu has no usable file name (%s)", t->i, file ? file : "none");
		return;
	}
	t->op = vs_get_file(target_client(t), target_rule(t)->target.datacenter, ds, path, descriptor_done,
	    token_for(t->j, t));
	free(ds);
	free(path);
}

/* A replica's disks live under its restore points, and vSphere resizes,
 * adds or removes no disk under snapshots. */
#define RESEED_HINT                                                                                           \
	": the source's disks changed since the replica was made, and a replica's disks under its restore "   \
	"points cannot follow; to seed it again, delete the job with delete_target_on_rule_delete: true "     \
	"(or fail over permanently to keep it) and start it again"

static void
target_vm_read(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx_reply(out, arg, "reading the target VM"));
	size_t i;

	if (t == NULL)
		return;
	if (landing_left(t, out->vm))
		return;
	if (out->vm->ndisks != t->st->ndisks) {
		rt_fail(t->j, "target VM %s has %zu disks, the source %zu%s", out->vm->name, out->vm->ndisks, t->st->ndisks,
		    t->whole_never ? RESEED_HINT : "");
		return;
	}
	if (t->src != NULL && t->src->version != NULL && !str_eq(t->src->version, out->vm->version))
		job_log(t->j, LOG_WARN, "hardware versions differ: source %s, target VM %s", t->src->version,
		    out->vm->version ? out->vm->version : "unknown");
	for (i = 0; i < t->st->ndisks; i++) {
		if (out->vm->disks[i].capacity != t->src_caps[i]) {
			rt_fail(t->j, "target disk %zu holds %llu bytes, the source's %llu%s", i,
			    (unsigned long long)out->vm->disks[i].capacity, (unsigned long long)t->src_caps[i],
			    t->whole_never ? RESEED_HINT : "");
			return;
		}
		free(t->st->disks[i].file);
		t->st->disks[i].file = xstrdup(out->vm->disks[i].file);
	}
	t->save(t->j);
	t->i = 0;
	if (t->no_direct) {
		/* Its disks are the deltas of its latest restore point: their
		 * data is written through the chain, never in place, so the
		 * data files found before stand. */
		t->then(t);
		return;
	}
	read_descriptor(t);
}

static void
landing_removed(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx_reply(out, arg, "removing the target's landing snapshot"));

	if (t == NULL)
		return;
	t->st->land_stage = 0;
	free(t->st->land_snap);
	t->st->land_snap = NULL;
	t->save(t->j);
	t->op = vs_get_vm(target_client(t), t->st->vm, target_vm_read, token_for(t->j, t));
}

/* A landing that a failure or a crash interrupted left its snapshot, so
 * the target's disks are its deltas: remove it first (a removal
 * consolidates, it loses nothing; the pass lands again).  1: under way. */
static int
landing_left(struct target *t, const struct vs_vm *vm)
{
	char *name = sync_snapshot_name(t->j, "land");
	size_t k;

	for (k = 0; k < vm->nsnapshots; k++)
		if (str_eq(vm->snapshots[k].name, name)) {
			job_log(t->j, LOG_INFO, "removing the landing snapshot %s left on the target", vm->snapshots[k].moref);
			t->op = vs_remove_snapshot(target_client(t), vm->snapshots[k].moref, landing_removed,
			    token_for(t->j, t));
			free(name);
			return 1;
		}
	free(name);
	return 0;
}

void
target_read_disks(struct target *t, const uint64_t *capacities, size_t n, void (*then)(struct target *t))
{
	t->then = then;
	target_state_size(t->st, n);
	free(t->src_caps);
	t->src_caps = xcalloc(n ? n : 1, sizeof(*capacities));
	memcpy(t->src_caps, capacities, n * sizeof(*capacities));
	t->op = vs_get_vm(target_client(t), t->st->vm, target_vm_read, token_for(t->j, t));
}

/* ---- uploads ---- */

static void
upload_done(void *arg, enum xfer_status st, const char *err)
{
	struct target *t = arg;

	t->upload = NULL;
	if (t->upload_fd >= 0)
		close(t->upload_fd);
	t->upload_fd = -1;
	if (st == XFER_TRANSIENT)
		rt_lost(t->j, "uploading %s: %s", t->what, err);
	else if (st != XFER_OK)
		rt_fail(t->j, "uploading %s: %s", t->what, err);
	else
		t->then(t);
}

void
target_upload_file(struct target *t, const char *ds, const char *path, const char *local, uint64_t size,
    const char *what, void (*then)(struct target *t))
{
	t->then = then;
	free(t->what);
	t->what = xstrdup(what);
	if ((t->upload_fd = open(local, O_RDONLY | O_CLOEXEC)) < 0) {
		rt_lost(t->j, "%s in temp_dir: %s: %s", what, local, strerror(errno));
		return;
	}
	job_log(t->j, LOG_INFO, "uploading %s to [%s] %s", what, ds, path);
	t->upload = disk_upload_https(target_client(t), target_rule(t)->target.datacenter, ds, path, t->upload_fd, size,
	    upload_done, t);
}

void
target_upload_source(struct target *t, const char *ds, const char *path, const struct upload_source *src,
    uint64_t size, const char *what, void (*then)(struct target *t))
{
	t->then = then;
	free(t->what);
	t->what = xstrdup(what);
	job_log(t->j, LOG_INFO, "uploading %s to [%s] %s", what, ds, path);
	t->upload = disk_upload_https_from(target_client(t), target_rule(t)->target.datacenter, ds, path, src, size,
	    upload_done, t);
}

void
target_upload(struct target *t, size_t i, const char *local, uint64_t size, void (*then)(struct target *t))
{
	char what[32];

	snprintf(what, sizeof(what), "disk %zu", i);
	target_upload_file(t, t->st->disks[i].ds, t->st->disks[i].flat, local, size, what, then);
}

/* ---- deletion ---- */

static void
destroyed(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx(arg));

	if (t == NULL)
		return;
	free(t->destroy_error);
	t->destroy_error = NULL;
	if (out->status == VS_FAULT && str_eq(out->fault_type, "ManagedObjectNotFound"))
		job_log(t->j, LOG_INFO, "target VM %s is gone already", t->st->vm);
	else if (out->status != VS_OK) {
		t->destroy_error = xstrdup(out->error ? out->error : vs_status_name(out->status));
		job_log(t->j, LOG_WARN, "deleting the target VM: %s", t->destroy_error);
	} else
		job_log(t->j, LOG_INFO, "target VM %s deleted", t->st->vm);
	t->then(t);
}

static void
powered_off(struct vs_out *out, void *arg)
{
	struct target *t = target_of(token_ctx(arg));

	if (t == NULL)
		return;
	if (out->status == VS_UNREACHABLE) {
		/* No use asking the destroy of a platform that does not answer. */
		destroyed(out, token_for(t->j, t));
		return;
	}
	t->op = vs_destroy(target_client(t), t->st->vm, destroyed, token_for(t->j, t));
}

void
target_destroy(struct target *t, void (*then)(struct target *t))
{
	t->then = then;
	t->op = vs_power(target_client(t), t->st->vm, "off", powered_off, token_for(t->j, t));
}
