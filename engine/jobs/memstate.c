#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* The suspended source's memory state, carried to the target (see
 * memstate.h). */
#include "engine/jobs/memstate.h"

#include <stdlib.h>
#include <string.h>

#include "drivers/transport.h"
#include "engine/core/util.h"
#include "engine/jobs/copy.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "engine/jobs/target.h"

void
memstate_init(struct memstate *m, struct job *j, struct sync_pass *pass, struct target *tgt)
{
	memset(m, 0, sizeof(*m));
	m->j = j;
	m->pass = pass;
	m->tgt = tgt;
}

void
memstate_cancel(struct memstate *m)
{
	token_drop(vs_op_cancel(m->op));
	m->op = NULL;
	copy_cancel(m->copy);
	m->copy = NULL;
	disk_close(m->src);
	disk_close(m->dst);
	m->src = m->dst = NULL;
}

void
memstate_free(struct memstate *m)
{
	memstate_cancel(m);
	free(m->name);
	free(m->dst_ds);
	free(m->dst_dir);
	free(m->src_vm);
	free(m->src_dc);
	free(m->target_vm);
	m->name = m->dst_ds = m->dst_dir = m->src_vm = m->src_dc = m->target_vm = NULL;
}

/* The answer to a driver call of the carry: NULL when superseded or failed. */
static struct memstate *
reply(struct vs_out *out, void *arg, const char *what)
{
	struct memstate *m = token_ctx_reply(out, arg, what);

	if (m != NULL)
		m->op = NULL;
	return m;
}

static void
carried(struct memstate *m)
{
	m->done = 1;
	m->then(m->j);
}

static void
pointed(struct vs_out *out, void *arg)
{
	struct memstate *m = reply(out, arg, "pointing the target VM at its memory state");

	if (m == NULL)
		return;
	job_log(m->j, LOG_INFO, "memory_snapshot: the target VM resumes from the source's memory state (%llu bytes)",
	    (unsigned long long)m->area.length);
	carried(m);
}

static void
uploaded(struct target *t)
{
	struct memstate *m = t->ctx;

	m->op = vs_set_extra_config(rt_dst_client(m->j), m->target_vm, "checkpoint.vmState", m->name, pointed,
	    token_for(m->j, m));
}

static void
fetched(void *arg, enum xfer_status st, const char *err)
{
	struct memstate *m = arg;
	char *local, *e = NULL, *path;
	int en = 0;

	m->copy = NULL;
	disk_close(m->src);
	disk_close(m->dst);
	m->src = m->dst = NULL;
	if (st != XFER_OK) {
		if (st == XFER_TRANSIENT)
			rt_lost(m->j, "fetching the memory state: %s", err);
		else
			rt_fail(m->j, "fetching the memory state: %s", err);
		return;
	}
	if ((local = rt_staging_file(m->j, "memory.vmss", &e, &en)) == NULL) {
		rt_lost(m->j, "memory state in temp_dir: %s", e);
		free(e);
		return;
	}
	path = m->dst_dir[0] ? xasprintf("%s/%s", m->dst_dir, m->name) : xstrdup(m->name);
	m->tgt->ctx = m;
	target_upload_file(m->tgt, m->dst_ds, path, local, m->area.length, "the memory state", uploaded);
	free(path);
	free(local);
}

static void
no_progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
}

static void
source_read(struct vs_out *out, void *arg)
{
	struct memstate *m = reply(out, arg, "reading the source VM");
	struct copy_params cp;
	char *ds = NULL, *path = NULL, *local, *err = NULL, *slash;
	int en = 0;

	if (m == NULL)
		return;
	if (!str_eq(out->vm->power, "suspended") || out->vm->suspend_file == NULL ||
	    vs_split_ds_path(out->vm->suspend_file, &ds, &path) != 0) {
		job_log(m->j, LOG_WARN, "memory_snapshot: the source VM is %s with no memory state to carry; the target "
		                        "boots from its disks", out->vm->power ? out->vm->power : "in an unknown state");
		carried(m);
		return;
	}
	slash = strrchr(path, '/');
	free(m->name);
	m->name = xstrdup(slash != NULL ? slash + 1 : path);
	local = rt_staging_file(m->j, "memory.vmss", &err, &en);
	if (local != NULL) {
		m->dst = disk_open_file(local, out->vm->suspend_size, 1, &err, &en);
		free(local);
	}
	if (m->dst == NULL) {
		rt_lost(m->j, "node temp_dir cannot be written: %s", err);
		free(err);
		free(ds);
		free(path);
		return;
	}
	m->src = disk_open_https(rt_src_client(m->j), m->src_dc ? m->src_dc : "", ds, path, out->vm->suspend_size);
	job_log(m->j, LOG_INFO, "memory_snapshot: fetching the source's memory state %s (%llu bytes)",
	    out->vm->suspend_file, (unsigned long long)out->vm->suspend_size);
	free(ds);
	free(path);
	m->area.start = 0;
	m->area.length = out->vm->suspend_size;
	sync_copy_params(m->pass, &cp);
	cp.src = m->src;
	cp.dst = m->dst;
	cp.areas = &m->area;
	cp.nareas = m->area.length > 0;
	cp.progress = no_progress;
	cp.done = fetched;
	cp.arg = m;
	m->copy = copy_start(&cp);
}

static void
set(char **slot, const char *v)
{
	free(*slot);
	*slot = v != NULL ? xstrdup(v) : NULL;
}

void
memstate_carry(struct memstate *m, const char *src_vm, const char *src_dc, const char *target_vm,
    const char *vmx_path, void (*then)(struct job *j))
{
	char *slash;

	m->then = then;
	set(&m->src_vm, src_vm);
	set(&m->src_dc, src_dc);
	set(&m->target_vm, target_vm);
	free(m->dst_ds);
	free(m->dst_dir);
	m->dst_ds = m->dst_dir = NULL;
	if (vmx_path == NULL || vs_split_ds_path(vmx_path, &m->dst_ds, &m->dst_dir) != 0) {
		rt_fail(m->j, "the target VM has no configuration file path");
		return;
	}
	/* Its directory: the memory state goes beside the .vmx. */
	slash = strrchr(m->dst_dir, '/');
	*(slash != NULL ? slash : m->dst_dir) = '\0';
	m->op = vs_get_vm(rt_src_client(m->j), m->src_vm, source_read, token_for(m->j, m));
}
