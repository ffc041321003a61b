#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* Migration jobs (seed 000).  The enter actions of the migration table
 * drive the vSphere driver and the disk copier.
 *
 * What must survive a crash lives in the job's data blob (struct
 * mig_data, versioned, big-endian): the source and target VMs, the
 * engine's current snapshot, each disk's last synced changeId and the
 * copy checkpoint of the pass in progress, the cutover stage.  What can
 * be recomputed (the areas of a pass, descriptors) lives in the runtime
 * (struct mig_rt) and is recomputed after a restart. */
#include "engine/jobs/migrate.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/transport.h"
#include "drivers/vmdk.h"
#include "drivers/vsops.h"
#include "engine/bw.h"
#include "engine/config.h"
#include "engine/jobs/copy.h"
#include "engine/engine.h"
#include "engine/jobs/job.h"
#include "engine/core/loop.h"
#include "engine/platform.h"
#include "engine/core/record.h"
#include "engine/core/units.h"
#include "engine/core/util.h"
#include "fsm/tables.h"

#define MIG_DATA_V2 2
#define DISK_DONE UINT64_MAX
#define SHUTDOWN_WAIT_S 300
#define CHECKPOINT_S 2.0

/* ---- persisted data ---- */

struct mig_disk {
	uint32_t key;
	uint64_t capacity;
	char *src_file;     /* "[ds] vm/vm.vmdk" of the source disk */
	char *dst_file;     /* ... of the target VM's disk */
	char *dst_ds;       /* the target disk's datastore and flat file (from its descriptor) */
	char *dst_flat;
	char *change_id;    /* of the last finished sync, or NULL */
	uint64_t checkpoint;/* pass progress: areas below are copied; DISK_DONE when the disk is done */
	uint8_t full;       /* this pass copies the whole disk (CBT reset, no changeId) */
	char *pass_cid;     /* changeId of this disk in the pass's snapshot */
	char *prev_cid;     /* an interrupted pass: below prev_ckpt the target holds */
	uint64_t prev_ckpt; /* the disk as of prev_cid (a stop removed its snapshot) */
};

struct mig_data {
	uint8_t full_done;  /* the first full copy is finished */
	uint8_t stage;      /* cutting over: 0 stop source, 1 final sync, 2 finalise disks, 3 power on, 4 done */
	uint8_t src_was_on;
	uint8_t migrate;    /* 开始迁移 was asked for: the next catch-up leads to the cutover */
	char *src_vm;
	char *src_dc;
	char *dst_vm;
	char *snap;         /* the engine's snapshot of the pass in progress */
	uint32_t pass;
	int64_t down_start_ms;
	int64_t down_end_ms;
	uint64_t bytes_moved;
	size_t ndisks;
	struct mig_disk *disks;
};

static void
data_free(struct mig_data *d)
{
	size_t i;

	for (i = 0; i < d->ndisks; i++) {
		free(d->disks[i].src_file);
		free(d->disks[i].dst_file);
		free(d->disks[i].dst_ds);
		free(d->disks[i].dst_flat);
		free(d->disks[i].change_id);
		free(d->disks[i].pass_cid);
		free(d->disks[i].prev_cid);
	}
	free(d->disks);
	free(d->src_vm);
	free(d->src_dc);
	free(d->dst_vm);
	free(d->snap);
	memset(d, 0, sizeof(*d));
}

static void
data_encode(const struct mig_data *d, struct sbuf *b)
{
	size_t i;

	rec_put_u16(b, MIG_DATA_V2);
	rec_put_u8(b, d->full_done);
	rec_put_u8(b, d->stage);
	rec_put_u8(b, d->src_was_on);
	rec_put_u8(b, d->migrate);
	rec_put_str(b, d->src_vm);
	rec_put_str(b, d->src_dc);
	rec_put_str(b, d->dst_vm);
	rec_put_str(b, d->snap);
	rec_put_u64(b, d->pass);
	rec_put_u64(b, (uint64_t)d->down_start_ms);
	rec_put_u64(b, (uint64_t)d->down_end_ms);
	rec_put_u64(b, d->bytes_moved);
	rec_put_u64(b, d->ndisks);
	for (i = 0; i < d->ndisks; i++) {
		rec_put_u64(b, d->disks[i].key);
		rec_put_u64(b, d->disks[i].capacity);
		rec_put_str(b, d->disks[i].src_file);
		rec_put_str(b, d->disks[i].dst_file);
		rec_put_str(b, d->disks[i].dst_ds);
		rec_put_str(b, d->disks[i].dst_flat);
		rec_put_str(b, d->disks[i].change_id);
		rec_put_u64(b, d->disks[i].checkpoint);
		rec_put_u8(b, d->disks[i].full);
		rec_put_str(b, d->disks[i].pass_cid);
		rec_put_str(b, d->disks[i].prev_cid);
		rec_put_u64(b, d->disks[i].prev_ckpt);
	}
}

static int
data_decode(const uint8_t *p, size_t n, struct mig_data *d)
{
	struct rec_reader r;
	uint64_t nd, i;

	memset(d, 0, sizeof(*d));
	if (n == 0)
		return 0;
	rec_reader_init(&r, p, n);
	if (rec_get_u16(&r) != MIG_DATA_V2)
		return -1;
	d->full_done = rec_get_u8(&r);
	d->stage = rec_get_u8(&r);
	d->src_was_on = rec_get_u8(&r);
	d->migrate = rec_get_u8(&r);
	d->src_vm = rec_get_opt_str(&r);
	d->src_dc = rec_get_opt_str(&r);
	d->dst_vm = rec_get_opt_str(&r);
	d->snap = rec_get_opt_str(&r);
	d->pass = (uint32_t)rec_get_u64(&r);
	d->down_start_ms = (int64_t)rec_get_u64(&r);
	d->down_end_ms = (int64_t)rec_get_u64(&r);
	d->bytes_moved = rec_get_u64(&r);
	nd = rec_get_u64(&r);
	if (r.bad || nd > 64) {
		data_free(d);
		return -1;
	}
	d->disks = xcalloc(nd ? nd : 1, sizeof(*d->disks));
	d->ndisks = nd;
	for (i = 0; i < nd; i++) {
		d->disks[i].key = (uint32_t)rec_get_u64(&r);
		d->disks[i].capacity = rec_get_u64(&r);
		d->disks[i].src_file = rec_get_opt_str(&r);
		d->disks[i].dst_file = rec_get_opt_str(&r);
		d->disks[i].dst_ds = rec_get_opt_str(&r);
		d->disks[i].dst_flat = rec_get_opt_str(&r);
		d->disks[i].change_id = rec_get_opt_str(&r);
		d->disks[i].checkpoint = rec_get_u64(&r);
		d->disks[i].full = rec_get_u8(&r);
		d->disks[i].pass_cid = rec_get_opt_str(&r);
		d->disks[i].prev_cid = rec_get_opt_str(&r);
		d->disks[i].prev_ckpt = rec_get_u64(&r);
	}
	if (r.bad) {
		data_free(d);
		return -1;
	}
	return 0;
}

/* ---- runtime ---- */

/* The steps of preparing a pass, in order; each resumes prepare_step. */
enum prep_step {
	PREP_READ_VM,
	PREP_CBT,
	PREP_STUN,
	PREP_CLEAN,
	PREP_SNAPSHOT,
	PREP_DISKS,
	PREP_AREAS,
	PREP_DESCRIPTORS,
	PREP_DONE,
	PREP_TARGET_DESCRIPTORS, /* fetching_config only */
};


struct mig_rt {
	struct job *j;
	struct mig_data d;
	unsigned epoch;          /* bumped on cancel: late callbacks of older work are dropped */
	struct vs_op *op;
	struct copy *copy;
	struct disk *src, *dst;
	struct disk_io *upload;
	int upload_fd;
	struct event *timer;
	/* The pass prepared for snapshot pass_snap. */
	char *pass_snap;
	struct vs_extent **areas;
	size_t *nareas;
	char **snap_cids;
	char **src_flat;         /* datastore-relative flat file of each source disk */
	char **src_ds;
	uint64_t pass_total;
	uint64_t pass_base;      /* copied bytes of finished disks in this pass */
	uint64_t pass_base_disk_start; /* of the current disk: bytes already copied when it started */
	void (*after_pass)(struct mig_rt *rt);
	/* Work in progress. */
	size_t i;
	int create;              /* prepare: may create the snapshot */
	void (*then)(struct mig_rt *rt);
	struct vs_vm *vm;        /* the source VM as last read */
	double rate_t0;
	uint64_t rate_b0;
	double rate;
	int waited;
	int lan_warned;
	int step;                /* enum prep_step while a pass is prepared */
	char *src_cpu;           /* the source host's CPU model, for the pre-check warning */
	struct vs_extent *prev_areas; /* changes since an interrupted pass, while a disk is queried */
	size_t nprev;
	int prev_asked;
	int bad_data;            /* the saved record could not be read */
	/* memory_snapshot at cutover: the suspended source's memory state. */
	int mem_done;            /* carried (or nothing to carry) */
	char *mem_name;          /* its file name, kept in the target VM's directory */
	char *dst_ds;            /* the target VM's datastore and directory */
	char *dst_dir;
	struct vs_extent mem_area;
};

static void
rt_free_pass(struct mig_rt *rt)
{
	size_t i;

	for (i = 0; rt->areas != NULL && i < rt->d.ndisks; i++) {
		free(rt->areas[i]);
		free(rt->snap_cids[i]);
		free(rt->src_flat[i]);
		free(rt->src_ds[i]);
	}
	free(rt->areas);
	free(rt->nareas);
	free(rt->snap_cids);
	free(rt->src_flat);
	free(rt->src_ds);
	free(rt->pass_snap);
	rt->areas = NULL;
	rt->nareas = NULL;
	rt->snap_cids = rt->src_flat = rt->src_ds = NULL;
	rt->pass_snap = NULL;
}

static void
rt_alloc_pass(struct mig_rt *rt)
{
	size_t n = rt->d.ndisks ? rt->d.ndisks : 1;

	rt_free_pass(rt);
	rt->areas = xcalloc(n, sizeof(*rt->areas));
	rt->nareas = xcalloc(n, sizeof(*rt->nareas));
	rt->snap_cids = xcalloc(n, sizeof(char *));
	rt->src_flat = xcalloc(n, sizeof(char *));
	rt->src_ds = xcalloc(n, sizeof(char *));
}

/* Stop what is in flight; keep what was learnt. */
static void
rt_stop_work(struct mig_rt *rt)
{
	rt->epoch++;
	vs_op_cancel(rt->op);
	rt->op = NULL;
	copy_cancel(rt->copy);
	rt->copy = NULL;
	disk_close(rt->src);
	rt->src = NULL;
	disk_close(rt->dst);
	rt->dst = NULL;
	if (rt->upload != NULL)
		disk_upload_cancel(rt->upload);
	rt->upload = NULL;
	if (rt->upload_fd >= 0)
		close(rt->upload_fd);
	rt->upload_fd = -1;
	if (rt->timer != NULL)
		evtimer_del(rt->timer);
}

static void
rt_free(void *p)
{
	struct mig_rt *rt = p;

	rt_stop_work(rt);
	if (rt->timer != NULL)
		event_free(rt->timer);
	rt_free_pass(rt);
	free(rt->src_cpu);
	free(rt->prev_areas);
	free(rt->mem_name);
	free(rt->dst_ds);
	free(rt->dst_dir);
	if (rt->vm != NULL) {
		vs_vm_free(rt->vm);
		free(rt->vm);
	}
	data_free(&rt->d);
	free(rt);
}

/* A reload may have changed the bandwidth windows: a paused copy looks again. */
static void
mig_config_changed(struct job *j)
{
	struct mig_rt *rt = j->priv;

	if (rt != NULL && rt->copy != NULL)
		copy_wake(rt->copy);
}

static void
mig_cancel(struct job *j)
{
	if (j->priv != NULL)
		rt_stop_work(j->priv);
}

/* The job's runtime, with its data freshly decoded from the record. */
static struct mig_rt *
rt_get(struct job *j)
{
	struct mig_rt *rt = j->priv;

	if (rt == NULL) {
		rt = xcalloc(1, sizeof(*rt));
		rt->j = j;
		rt->upload_fd = -1;
		j->priv = rt;
		j->free_priv = rt_free;
	}
	j->cancel = mig_cancel;
	j->config_changed = mig_config_changed;
	data_free(&rt->d);
	rt->bad_data = 0;
	if (data_decode(j->data, j->datalen, &rt->d) != 0)
		rt->bad_data = 1;
	/* The pass cache is only good for the snapshot it was made for. */
	if (rt->pass_snap != NULL && !str_eq(rt->pass_snap, rt->d.snap))
		rt_free_pass(rt);
	return rt;
}

/* A record this daemon cannot read (written by an incompatible version):
 * say so and stop, rather than act on empty data. */
static int
rt_unreadable(struct mig_rt *rt)
{
	if (!rt->bad_data)
		return 0;
	fsm_dispatch(rt->j, EV_FAIL,
	    "its saved progress was written in a format this vmferryd cannot read; delete the job "
	    "(vmferryctl delete) and start it again");
	return 1;
}

static void
rt_save(struct mig_rt *rt)
{
	struct sbuf b;

	sbuf_init(&b);
	data_encode(&rt->d, &b);
	job_set_data(rt->j, b.data, b.len);
	job_persist(rt->j);
	sbuf_free(&b);
}

/* ---- outcomes ---- */

/* A refusal fails the job (and counts as a failure); a lost peer makes
 * it 失效, to be retried.  Either way the reason is logged and kept. */
static void
mig_outcome(struct mig_rt *rt, int event, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

static void
mig_outcome(struct mig_rt *rt, int event, const char *fmt, va_list ap)
{
	struct job *j = rt->j;
	char *msg = xvasprintf(fmt, ap);

	if (event == EV_FAIL)
		job_stat_failure(j, msg);
	job_log(j, event == EV_FAIL ? LOG_ERR : LOG_WARN, "%s", msg);
	fsm_dispatch(j, event, msg);
	free(msg);
}

static void
mig_fail(struct mig_rt *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
mig_fail(struct mig_rt *rt, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mig_outcome(rt, EV_FAIL, fmt, ap);
	va_end(ap);
}

static void
mig_lost(struct mig_rt *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
mig_lost(struct mig_rt *rt, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mig_outcome(rt, EV_PEER_LOST, fmt, ap);
	va_end(ap);
}

static void
mig_event(struct mig_rt *rt, int ev)
{
	fsm_dispatch(rt->j, ev, NULL);
}

/* A driver call failed: lost peers retry later, refusals fail the job. */
static void
mig_vs_failed(struct mig_rt *rt, const char *what, const struct vs_out *out)
{
	if (out->status == VS_UNREACHABLE)
		mig_lost(rt, "%s: %s", what, out->error);
	else
		mig_fail(rt, "%s: %s", what, out->error ? out->error : vs_status_name(out->status));
}

/* An inventory could not be read: a platform that refused us (credentials,
 * certificate) fails the job with the reason, one that cannot be reached
 * makes it 失效 until it comes back. */
static void
mig_platform_failed(struct mig_rt *rt, const char *which, const char *platform, const char *error, int refused)
{
	if (refused)
		mig_fail(rt, "%s platform %s: %s", which, platform, error);
	else
		mig_lost(rt, "%s platform %s: %s", which, platform, error);
}

/* ---- configuration helpers ---- */

static const struct cfg_rule *
rule_of(struct mig_rt *rt)
{
	return rt->j->cfg;
}

static struct vs_client *
src_client(struct mig_rt *rt)
{
	return platform_client(rule_of(rt)->source_platform);
}

static struct vs_client *
dst_client(struct mig_rt *rt)
{
	return platform_client(rule_of(rt)->target.platform);
}

static const char *
mount_of(const char *platform, const char *datastore)
{
	const struct cfg_platform *p = config_platform(engine_config(), platform);
	size_t i;

	if (p == NULL)
		return NULL;
	for (i = 0; i < p->nmounts; i++)
		if (strcmp(p->mounts[i].datastore, datastore) == 0)
			return p->mounts[i].path;
	return NULL;
}

/* The job's directory in the node's temp_dir (created), or NULL with *err. */
static char *
staging_dir(struct mig_rt *rt, char **err, int *errnum)
{
	const struct cfg_node *node = config_node(engine_config(), rule_of(rt)->node);
	char *base, *dir, *p;

	*err = NULL;
	*errnum = 0;
	if (node == NULL) {
		*err = xasprintf("node %s is not configured", rule_of(rt)->node);
		return NULL;
	}
	base = node->temp_dir[0] == '/' ? xstrdup(node->temp_dir) : xasprintf("%s/%s", engine_state_dir(), node->temp_dir);
	dir = xasprintf("%s/%s/%s", base, rt->j->rule, rt->j->vm);
	free(base);
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		goto fail;
	if (access(dir, W_OK) != 0)
		goto fail;
	return dir;
fail:
	*errnum = errno;
	*err = xasprintf("node temp_dir cannot be written: %s: %s", dir, strerror(errno));
	free(dir);
	return NULL;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
remove_staging(struct mig_rt *rt)
{
	char *err;
	int en;
	char *dir = staging_dir(rt, &err, &en);

	if (dir != NULL)
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);
	free(err);
}

static char *
marker(struct mig_rt *rt)
{
	return xasprintf("vmferry migration %s/%s", rt->j->rule, rt->j->vm);
}

static int64_t
now_ms(void)
{
	return (int64_t)(now_wall() * 1000);
}

/* ---- late callbacks: only for the work they were started for ---- */

struct token {
	struct job *j;
	unsigned epoch;
	int refresh;
};

static struct token *
token_new(struct mig_rt *rt)
{
	struct token *t = xcalloc(1, sizeof(*t));

	t->j = rt->j;
	t->epoch = rt->epoch;
	job_hold(rt->j);
	return t;
}

/* The runtime the token belongs to, or NULL when that work was
 * cancelled meanwhile.  Frees the token. */
static struct mig_rt *
token_take(struct token *t)
{
	struct mig_rt *rt = t->j->priv;
	struct mig_rt *out = NULL;

	if (!t->j->forgotten && rt != NULL && rt->epoch == t->epoch)
		out = rt;
	job_release(t->j);
	free(t);
	return out;
}

/* The answer to a driver call made for rt: the runtime when the work is
 * still current and the call worked; NULL when the work was superseded,
 * or when the call failed (handed on, naming what was being done). */
static struct mig_rt *
op_reply(struct vs_out *out, void *arg, const char *what)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return NULL;
	rt->op = NULL;
	if (out->status != VS_OK) {
		mig_vs_failed(rt, what, out);
		return NULL;
	}
	return rt;
}

/* ---- starting: find the VM and its host (for max_tasks_per_host) ---- */

static void starting_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg);

static void
starting_lookup(struct mig_rt *rt, int refresh)
{
	struct token *t = token_new(rt);

	t->refresh = refresh;
	if (platform_inventory(rule_of(rt)->source_platform, refresh, starting_inventory, t) != 0) {
		token_take(t);
		mig_fail(rt, "source platform %s is not configured", rule_of(rt)->source_platform);
	}
}

static void
starting_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	int refreshed = ((struct token *)arg)->refresh;
	struct mig_rt *rt = token_take(arg);
	const struct vs_vm *vm;

	if (rt == NULL)
		return;
	if (inv == NULL) {
		mig_platform_failed(rt, "source", rule_of(rt)->source_platform, error, refused);
		return;
	}
	vm = vs_inventory_vm(inv, rt->j->vm);
	if (vm == NULL && !refreshed) {
		starting_lookup(rt, 1);
		return;
	}
	if (vm == NULL && rt->d.stage >= 1) {
		/* After cutover the source may be gone or renamed: no need. */
		sched_set_host(&rt->j->sched, "");
		mig_event(rt, EV_SCHEDULE);
		return;
	}
	if (vm == NULL) {
		mig_fail(rt, "VM %s not found on platform %s", rt->j->vm, rule_of(rt)->source_platform);
		return;
	}
	sched_set_host(&rt->j->sched, vm->host_name ? vm->host_name : "");
	mig_event(rt, EV_SCHEDULE);
}

void
mig_enter_starting(struct job *j, int event)
{
	struct mig_rt *rt;

	if (j->cfg == NULL) {
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return;
	}
	job_reset_backoff(j, event);
	rt = rt_get(j);
	if (rt_unreadable(rt))
		return;
	starting_lookup(rt, 0);
}

/* ---- creating_vm: pre-checks, then the target VM ---- */

struct create_ctx {
	struct vs_vm src;        /* copied out of the cached inventory */
};

static void create_target_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg);

static void
copy_vm(const struct vs_vm *from, struct vs_vm *to)
{
	size_t i;

	memset(to, 0, sizeof(*to));
	to->moref = xstrdup(from->moref);
	to->name = xstrdup(from->name);
#define DUP(f) to->f = from->f ? xstrdup(from->f) : NULL
	DUP(power);
	DUP(host);
	DUP(host_name);
	DUP(datacenter);
	DUP(datastore);
	DUP(guest_id);
	DUP(version);
	DUP(annotation);
#undef DUP
	to->cpus = from->cpus;
	to->memory_mb = from->memory_mb;
	to->cbt = from->cbt;
	to->disks = xcalloc(from->ndisks ? from->ndisks : 1, sizeof(*to->disks));
	to->ndisks = from->ndisks;
	for (i = 0; i < from->ndisks; i++) {
		to->disks[i].key = from->disks[i].key;
		to->disks[i].capacity = from->disks[i].capacity;
		to->disks[i].file = from->disks[i].file ? xstrdup(from->disks[i].file) : NULL;
		to->disks[i].mode = from->disks[i].mode ? xstrdup(from->disks[i].mode) : NULL;
		to->disks[i].label = from->disks[i].label ? xstrdup(from->disks[i].label) : NULL;
	}
	to->nics = xcalloc(from->nnics ? from->nnics : 1, sizeof(*to->nics));
	to->nnics = from->nnics;
	for (i = 0; i < from->nnics; i++)
		to->nics[i].network = from->nics[i].network ? xstrdup(from->nics[i].network) : NULL;
}

static void
rt_set_vm(struct mig_rt *rt, const struct vs_vm *vm)
{
	if (rt->vm != NULL) {
		vs_vm_free(rt->vm);
		free(rt->vm);
	}
	rt->vm = xcalloc(1, sizeof(*rt->vm));
	copy_vm(vm, rt->vm);
}

static void
create_source_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	const struct vs_vm *vm;
	size_t i;
	struct token *t;

	if (rt == NULL)
		return;
	if (inv == NULL) {
		mig_platform_failed(rt, "source", rule_of(rt)->source_platform, error, refused);
		return;
	}
	vm = vs_inventory_vm(inv, rt->j->vm);
	if (vm == NULL) {
		mig_fail(rt, "VM %s not found on platform %s", rt->j->vm, rule_of(rt)->source_platform);
		return;
	}
	if (vm->problem != NULL) {
		mig_fail(rt, "source platform %s sent unusable data for VM %s: %s", rule_of(rt)->source_platform, vm->name,
		    vm->problem);
		return;
	}
	for (i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].mode != NULL && strncmp(vm->disks[i].mode, "independent", 11) == 0) {
			mig_fail(rt,
			    "VM %s has an independent disk (%s, %s); VMs with independent disks cannot be migrated "
			    "(不支持包含独立磁盘的虚机)",
			    vm->name, vm->disks[i].label ? vm->disks[i].label : vm->disks[i].file, vm->disks[i].mode);
			return;
		}
	if (vm->ndisks == 0) {
		mig_fail(rt, "VM %s has no disks to migrate", vm->name);
		return;
	}
	rt_set_vm(rt, vm);
	free(rt->src_cpu);
	rt->src_cpu = NULL;
	for (i = 0; i < inv->nhosts; i++)
		if (str_eq(inv->hosts[i].moref, vm->host) && inv->hosts[i].cpu_model != NULL)
			rt->src_cpu = xstrdup(inv->hosts[i].cpu_model);
	t = token_new(rt);
	if (platform_inventory(rule_of(rt)->target.platform, 1, create_target_inventory, t) != 0) {
		token_take(t);
		mig_fail(rt, "target platform %s is not configured", rule_of(rt)->target.platform);
	}
}

static void create_vm_done(struct vs_out *out, void *arg);

/* Record the source's disks and the target VM, then go on. */
static void
adopt_target(struct mig_rt *rt, const char *dst_moref)
{
	size_t i;

	if (!str_eq(rt->d.dst_vm, dst_moref)) {
		free(rt->d.dst_vm);
		rt->d.dst_vm = xstrdup(dst_moref);
	}
	free(rt->d.src_vm);
	rt->d.src_vm = xstrdup(rt->vm->moref);
	free(rt->d.src_dc);
	rt->d.src_dc = rt->vm->datacenter ? xstrdup(rt->vm->datacenter) : NULL;
	rt->d.src_was_on = rt->vm->power != NULL && strcmp(rt->vm->power, "poweredOn") == 0;
	if (rt->d.ndisks != rt->vm->ndisks) {
		for (i = 0; i < rt->d.ndisks; i++) {
			free(rt->d.disks[i].src_file);
			free(rt->d.disks[i].dst_file);
			free(rt->d.disks[i].dst_ds);
			free(rt->d.disks[i].dst_flat);
			free(rt->d.disks[i].change_id);
			free(rt->d.disks[i].pass_cid);
			free(rt->d.disks[i].prev_cid);
		}
		free(rt->d.disks);
		rt->d.ndisks = rt->vm->ndisks;
		rt->d.disks = xcalloc(rt->d.ndisks, sizeof(*rt->d.disks));
	}
	for (i = 0; i < rt->d.ndisks; i++) {
		struct mig_disk *md = &rt->d.disks[i];

		md->key = (uint32_t)rt->vm->disks[i].key;
		md->capacity = rt->vm->disks[i].capacity;
		free(md->src_file);
		md->src_file = xstrdup(rt->vm->disks[i].file);
	}
	rt_save(rt);
	mig_event(rt, EV_OK);
}

static void
create_target_inventory(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	const struct cfg_rule *r;
	const struct vs_host *host = NULL;
	const struct vs_datastore *ds = NULL;
	const struct vs_datacenter *dc = NULL;
	const struct vs_vm *clash;
	struct vs_vm_spec spec;
	uint64_t need = 0, *caps;
	const char **nets;
	char *mark, have[32], want[32];
	size_t i;

	if (rt == NULL)
		return;
	r = rule_of(rt);
	if (inv == NULL) {
		mig_platform_failed(rt, "target", r->target.platform, error, refused);
		return;
	}
	for (i = 0; i < inv->ndcs; i++)
		if (str_eq(inv->dcs[i].name, r->target.datacenter))
			dc = &inv->dcs[i];
	for (i = 0; i < inv->nhosts; i++)
		if (str_eq(inv->hosts[i].name, r->target.host) && str_eq(inv->hosts[i].datacenter, r->target.datacenter))
			host = &inv->hosts[i];
	for (i = 0; i < inv->ndatastores; i++)
		if (str_eq(inv->datastores[i].name, r->target.datastore) &&
		    str_eq(inv->datastores[i].datacenter, r->target.datacenter))
			ds = &inv->datastores[i];
	if (dc == NULL) {
		mig_fail(rt, "target datacenter %s not found on platform %s", r->target.datacenter, r->target.platform);
		return;
	}
	if (host == NULL) {
		mig_fail(rt, "target host %s not found in datacenter %s on platform %s", r->target.host, r->target.datacenter,
		    r->target.platform);
		return;
	}
	if (ds == NULL) {
		mig_fail(rt, "target datastore %s not found in datacenter %s on platform %s", r->target.datastore,
		    r->target.datacenter, r->target.platform);
		return;
	}
	/* A different CPU vendor may stop a guest from booting or running
	 * well; the user decides, the log says it. */
	if (rt->src_cpu != NULL && host->cpu_model != NULL &&
	    (strstr(rt->src_cpu, "AMD") != NULL) != (strstr(host->cpu_model, "AMD") != NULL))
		job_log(rt->j, LOG_WARN, "CPU vendors differ: source host has \"%s\", target host %s has \"%s\"",
		    rt->src_cpu, host->name, host->cpu_model);
	mark = marker(rt);
	clash = vs_inventory_vm(inv, rt->j->vm);
	if (clash != NULL) {
		/* Ours from before a crash: adopt it.  Anyone else's: refuse. */
		if (str_eq(clash->moref, rt->d.dst_vm) || str_eq(clash->annotation, mark)) {
			job_log(rt->j, LOG_INFO, "target VM %s (%s) on %s was created by this rule: adopting it", clash->name,
			    clash->moref, r->target.platform);
			free(mark);
			adopt_target(rt, clash->moref);
			return;
		}
		free(mark);
		mig_fail(rt, "a VM named %s already exists on %s and was not created by this rule", rt->j->vm,
		    r->target.platform);
		return;
	}
	for (i = 0; i < rt->vm->ndisks; i++)
		need += rt->vm->disks[i].capacity;
	if (ds->free < need) {
		units_format_size(ds->free, have, sizeof(have));
		units_format_size(need, want, sizeof(want));
		free(mark);
		mig_fail(rt, "target datastore %s has %s free; VM %s needs %s", ds->name, have, rt->j->vm, want);
		return;
	}
	if (rt->vm->host_name != NULL && rt->vm->version != NULL)
		job_log(rt->j, LOG_INFO, "source: %s on host %s, %d CPUs, %d MB, hardware %s, %zu disks", rt->vm->name,
		    rt->vm->host_name, rt->vm->cpus, rt->vm->memory_mb, rt->vm->version, rt->vm->ndisks);

	memset(&spec, 0, sizeof(spec));
	caps = xcalloc(rt->vm->ndisks, sizeof(*caps));
	nets = xcalloc(rt->vm->nnics ? rt->vm->nnics : 1, sizeof(*nets));
	for (i = 0; i < rt->vm->ndisks; i++)
		caps[i] = rt->vm->disks[i].capacity;
	for (i = 0; i < rt->vm->nnics; i++)
		nets[i] = rt->vm->nics[i].network ? rt->vm->nics[i].network : "VM Network";
	spec.name = rt->j->vm;
	spec.datacenter_vm_folder = dc->vm_folder;
	spec.resource_pool = host->resource_pool;
	spec.host = host->moref;
	spec.datastore = ds->name;
	spec.guest_id = rt->vm->guest_id;
	spec.version = rt->vm->version;
	spec.annotation = mark;
	spec.cpus = rt->vm->cpus;
	spec.memory_mb = rt->vm->memory_mb;
	spec.disk_capacities = caps;
	spec.ndisks = rt->vm->ndisks;
	spec.networks = nets;
	spec.nnics = rt->vm->nnics;
	job_log(rt->j, LOG_INFO, "creating target VM %s on %s (host %s, datastore %s)", rt->j->vm, r->target.platform,
	    host->name, ds->name);
	rt->op = vs_create_vm(dst_client(rt), &spec, create_vm_done, token_new(rt));
	free(caps);
	free(nets);
	free(mark);
}

static void
create_vm_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status != VS_OK || out->moref == NULL) {
		mig_vs_failed(rt, "creating the target VM", out);
		return;
	}
	job_log(rt->j, LOG_INFO, "target VM created: %s", out->moref);
	adopt_target(rt, out->moref);
}

void
mig_enter_creating_vm(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(rt))
		return;
	struct token *t;

	if (j->cfg == NULL || src_client(rt) == NULL || dst_client(rt) == NULL) {
		mig_fail(rt, "its platforms are not configured");
		return;
	}
	t = token_new(rt);
	platform_inventory(rule_of(rt)->source_platform, 1, create_source_inventory, t);
}

/* ---- fetching_config: the source's configuration into temp_dir ---- */

static int
write_file_atomic(const char *path, const char *data, size_t len, char **err)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	*err = NULL;
	if (fd < 0)
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	free(tmp);
	return 0;
fail:
	*err = xasprintf("%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

static json_t *
vm_config_json(const struct vs_vm *vm)
{
	json_t *disks = json_array(), *nics = json_array();
	size_t i;

	for (i = 0; i < vm->ndisks; i++)
		json_array_append_new(disks, json_pack("{s:i,s:s?,s:s?,s:I,s:s?,s:i,s:i}", "key", vm->disks[i].key, "label",
		                                 vm->disks[i].label, "file", vm->disks[i].file, "capacity",
		                                 (json_int_t)vm->disks[i].capacity, "mode", vm->disks[i].mode,
		                                 "controller_key", vm->disks[i].controller_key, "unit", vm->disks[i].unit));
	for (i = 0; i < vm->nnics; i++)
		json_array_append_new(nics, json_pack("{s:s?,s:s?,s:s?}", "type", vm->nics[i].type, "network",
		                                vm->nics[i].network, "mac", vm->nics[i].mac));
	return json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:i,s:i,s:b,s:s?,s:o,s:o}", "name", vm->name, "moref",
	    vm->moref, "uuid", vm->uuid, "instance_uuid", vm->instance_uuid, "guest_id", vm->guest_id, "version",
	    vm->version, "power", vm->power, "cpus", vm->cpus, "memory_mb", vm->memory_mb, "cbt", vm->cbt, "host",
	    vm->host_name, "disks", disks, "nics", nics);
}

static void fetch_target_done(struct vs_out *out, void *arg);
static void prep_step(struct mig_rt *rt);

static void
fetch_source_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the source VM's configuration");
	char *dir, *path, *err = NULL, *text;
	int en;
	json_t *cfg;

	if (rt == NULL)
		return;
	if ((dir = staging_dir(rt, &err, &en)) == NULL) {
		mig_lost(rt, "%s", err);
		free(err);
		return;
	}
	cfg = vm_config_json(out->vm);
	text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(cfg);
	path = xasprintf("%s/vm-config.json", dir);
	if (write_file_atomic(path, text, strlen(text), &err) != 0) {
		free(text);
		free(path);
		free(dir);
		mig_lost(rt, "node temp_dir cannot be written: %s", err);
		free(err);
		return;
	}
	job_log(rt->j, LOG_INFO, "source VM configuration saved to %s", path);
	free(text);
	free(path);
	free(dir);
	rt->op = vs_get_vm(dst_client(rt), rt->d.dst_vm, fetch_target_done, token_new(rt));
}

static void
fetch_target_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the target VM");
	size_t i;

	if (rt == NULL)
		return;
	if (out->vm->ndisks != rt->d.ndisks) {
		mig_fail(rt, "target VM %s has %zu disks, the source %zu", out->vm->name, out->vm->ndisks, rt->d.ndisks);
		return;
	}
	if (rt->vm != NULL && rt->vm->version != NULL && !str_eq(rt->vm->version, out->vm->version))
		job_log(rt->j, LOG_WARN, "hardware versions differ: source %s, target VM %s", rt->vm->version,
		    out->vm->version ? out->vm->version : "unknown");
	for (i = 0; i < rt->d.ndisks; i++) {
		if (out->vm->disks[i].capacity != rt->d.disks[i].capacity) {
			mig_fail(rt, "target disk %zu holds %llu bytes, the source's %llu", i,
			    (unsigned long long)out->vm->disks[i].capacity, (unsigned long long)rt->d.disks[i].capacity);
			return;
		}
		free(rt->d.disks[i].dst_file);
		rt->d.disks[i].dst_file = xstrdup(out->vm->disks[i].file);
	}
	rt_save(rt);
	/* Where each target disk keeps its data, from its descriptor. */
	rt->step = PREP_TARGET_DESCRIPTORS;
	rt->i = 0;
	prep_step(rt);
}

void
mig_enter_fetching_config(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(rt))
		return;

	if (rt->d.src_vm == NULL || rt->d.dst_vm == NULL) {
		mig_fail(rt, "its source or target VM is unknown; start the job again");
		return;
	}
	rt->op = vs_get_vm(src_client(rt), rt->d.src_vm, fetch_source_done, token_new(rt));
}

/* The pass's snapshot goes away before the pass is done (stop, or it
 * vanished): remember how far each disk got and at which changeId, so
 * that the next pass copies below that point only what changed since. */
static void
remember_partial(struct mig_rt *rt)
{
	size_t i;

	for (i = 0; i < rt->d.ndisks; i++) {
		struct mig_disk *md = &rt->d.disks[i];
		uint64_t got = md->checkpoint == DISK_DONE ? md->capacity : md->checkpoint;

		if (got == 0 || md->pass_cid == NULL)
			continue;
		free(md->prev_cid);
		md->prev_cid = xstrdup(md->pass_cid);
		md->prev_ckpt = got;
	}
	for (i = 0; i < rt->d.ndisks; i++)
		rt->d.disks[i].checkpoint = 0;
}

/* ---- a sync pass: snapshot, changed areas, descriptors ---- */


static int
is_engine_snapshot(struct mig_rt *rt, const char *name)
{
	char *prefix = xasprintf(MIG_SNAPSHOT_PREFIX "%s-", rt->j->rule);
	int yes = name != NULL && strncmp(name, prefix, strlen(prefix)) == 0;

	free(prefix);
	return yes;
}


static void prep_next(struct mig_rt *rt);

static void
prep_vm_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the source VM");

	if (rt == NULL)
		return;
	rt_set_vm(rt, out->vm);
	/* copy_vm leaves snapshots out: keep them from the reply. */
	rt->vm->snapshots = out->vm->snapshots;
	rt->vm->nsnapshots = out->vm->nsnapshots;
	out->vm->snapshots = NULL;
	out->vm->nsnapshots = 0;
	rt->vm->cbt = out->vm->cbt;
	prep_next(rt);
}

static void
prep_simple_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "preparing the source VM");

	if (rt == NULL)
		return;
	prep_next(rt);
}

/* A leftover snapshot is gone: look for the next one. */
static void
prep_clean_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status == VS_UNREACHABLE) {
		mig_vs_failed(rt, "removing a leftover snapshot", out);
		return;
	}
	if (out->status != VS_OK)
		job_log(rt->j, LOG_WARN, "removing a leftover snapshot: %s", out->error);
	prep_step(rt);
}

static void
prep_snapshot_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	size_t i;

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status != VS_OK || out->moref == NULL) {
		mig_vs_failed(rt, "creating the source snapshot", out);
		return;
	}
	free(rt->d.snap);
	rt->d.snap = xstrdup(out->moref);
	for (i = 0; i < rt->d.ndisks; i++)
		rt->d.disks[i].checkpoint = 0;
	rt_save(rt);
	job_log(rt->j, LOG_INFO, "snapshot " MIG_SNAPSHOT_PREFIX "%s-%u (%s) created for sync pass %u", rt->j->rule,
	    rt->d.pass, out->moref, rt->d.pass);
	prep_next(rt);
}

static void
prep_disks_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the snapshot's disks");
	size_t i;

	if (rt == NULL)
		return;
	if (out->ndisks != rt->d.ndisks) {
		mig_fail(rt, "the source VM now has %zu disks, it had %zu; start the migration again", out->ndisks,
		    rt->d.ndisks);
		return;
	}
	rt_alloc_pass(rt);
	rt->pass_snap = xstrdup(rt->d.snap);
	for (i = 0; i < out->ndisks; i++) {
		struct mig_disk *md = &rt->d.disks[i];

		if (out->disks[i].capacity != md->capacity) {
			mig_fail(rt, "source disk %zu changed size (%llu to %llu bytes); start the migration again", i,
			    (unsigned long long)md->capacity, (unsigned long long)out->disks[i].capacity);
			return;
		}
		if ((uint32_t)out->disks[i].key != md->key) {
			job_log(rt->j, LOG_WARN, "disk %zu changed identity (device key %u to %d): copying it in full", i,
			    md->key, out->disks[i].key);
			md->key = (uint32_t)out->disks[i].key;
			md->full = 1;
		}
		free(md->src_file);
		md->src_file = xstrdup(out->disks[i].file);
		rt->snap_cids[i] = out->disks[i].change_id ? xstrdup(out->disks[i].change_id) : NULL;
		free(md->pass_cid);
		md->pass_cid = rt->snap_cids[i] ? xstrdup(rt->snap_cids[i]) : NULL;
	}
	rt_save(rt);
	rt->i = 0;
	rt->prev_asked = 0;
	prep_next(rt);
}

static void prep_prev_done(struct vs_out *out, void *arg);

static void
prep_areas_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	struct mig_disk *md;

	if (rt == NULL)
		return;
	rt->op = NULL;
	md = &rt->d.disks[rt->i];
	if (out->status == VS_FAULT && out->fault_type != NULL && strcmp(out->fault_type, "FileFault") == 0 &&
	    md->change_id != NULL) {
		/* The changeId was refused: CBT was reset.  Never a silent
		 * partial copy: this disk is copied in full. */
		job_log(rt->j, LOG_WARN, "disk %zu: change tracking was reset (changeId %s refused): copying it in full",
		    rt->i, md->change_id);
		md->full = 1;
		rt_save(rt);
		prep_step(rt);
		return;
	}
	if (out->status != VS_OK) {
		mig_vs_failed(rt, "querying changed areas", out);
		return;
	}
	if (out->merge_gap > 0)
		job_log(rt->j, LOG_INFO,
		    "disk %zu: more than %u changed areas; areas less than %llu bytes apart are copied as one", rt->i,
		    VS_CBT_MAX_EXTENTS, (unsigned long long)out->merge_gap);
	if (rt->prev_asked && md->prev_cid != NULL) {
		/* Below the interrupted pass's point the target already holds the
		 * disk as of prev_cid: only what changed since goes again. */
		struct vs_extent *merged = NULL;
		size_t n = 0, k;
		uint64_t cut = md->prev_ckpt;

		for (k = 0; k < rt->nprev; k++) {
			uint64_t s0 = rt->prev_areas[k].start, e0 = s0 + rt->prev_areas[k].length;

			if (s0 >= cut)
				break;
			merged = xgrow(merged, n, sizeof(*merged));
			merged[n].start = s0;
			merged[n].length = (e0 < cut ? e0 : cut) - s0;
			n++;
		}
		for (k = 0; k < out->nextents; k++) {
			uint64_t s0 = out->extents[k].start, e0 = s0 + out->extents[k].length;

			if (e0 <= cut)
				continue;
			if (s0 < cut)
				s0 = cut;
			merged = xgrow(merged, n, sizeof(*merged));
			merged[n].start = s0;
			merged[n].length = e0 - s0;
			n++;
		}
		job_log(rt->j, LOG_INFO, "disk %zu: resuming the interrupted copy at offset %llu", rt->i,
		    (unsigned long long)cut);
		rt->areas[rt->i] = merged;
		rt->nareas[rt->i] = n;
	} else {
		rt->areas[rt->i] = out->extents;
		rt->nareas[rt->i] = out->nextents;
		out->extents = NULL;
		out->nextents = 0;
	}
	free(rt->prev_areas);
	rt->prev_areas = NULL;
	rt->nprev = 0;
	rt->prev_asked = 0;
	rt->i++;
	prep_step(rt);
}

static void
prep_prev_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	struct mig_disk *md;

	if (rt == NULL)
		return;
	rt->op = NULL;
	md = &rt->d.disks[rt->i];
	if (out->status == VS_FAULT) {
		/* That changeId is no longer valid: copy as if from scratch. */
		job_log(rt->j, LOG_WARN, "disk %zu: cannot resume the interrupted copy (%s); copying it again", rt->i,
		    out->error);
		free(md->prev_cid);
		md->prev_cid = NULL;
		md->prev_ckpt = 0;
		rt_save(rt);
		prep_step(rt);
		return;
	}
	if (out->status != VS_OK) {
		mig_vs_failed(rt, "querying changed areas", out);
		return;
	}
	rt->prev_areas = out->extents;
	rt->nprev = out->nextents;
	out->extents = NULL;
	out->nextents = 0;
	prep_step(rt);
}

static void
prep_descriptor_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	struct vmdk_desc desc;
	char *err = NULL, *ds = NULL, *path = NULL, *slash;
	const char *flat;
	int target;
	const char *file;

	if (rt == NULL)
		return;
	rt->op = NULL;
	target = rt->step == PREP_TARGET_DESCRIPTORS;
	file = target ? rt->d.disks[rt->i].dst_file : rt->d.disks[rt->i].src_file;
	if (out->status != VS_OK) {
		mig_vs_failed(rt, target ? "reading the target disk's descriptor" : "reading the source disk's descriptor",
		    out);
		return;
	}
	if (vmdk_parse(out->data, out->len, &desc, &err) != 0 || (flat = vmdk_flat_file(&desc, &err)) == NULL) {
		mig_fail(rt, "descriptor %s: %s", file, err);
		free(err);
		return;
	}
	vs_split_ds_path(file, &ds, &path);
	slash = strrchr(path, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		path[0] = '\0';
	if (target) {
		free(rt->d.disks[rt->i].dst_flat);
		free(rt->d.disks[rt->i].dst_ds);
		rt->d.disks[rt->i].dst_flat = xasprintf("%s%s", path, flat);
		rt->d.disks[rt->i].dst_ds = ds;
	} else {
		rt->src_flat[rt->i] = xasprintf("%s%s", path, flat);
		rt->src_ds[rt->i] = ds;
	}
	free(path);
	vmdk_free(&desc);
	rt->i++;
	prep_step(rt);
}

/* Run the current step (for loops over disks, the step for disk rt->i). */
static void
prep_step(struct mig_rt *rt)
{
	const struct cfg_rule *r = rule_of(rt);
	size_t k;

	switch (rt->step) {
	case PREP_READ_VM:
		rt->op = vs_get_vm(src_client(rt), rt->d.src_vm, prep_vm_done, token_new(rt));
		return;
	case PREP_CBT:
		if (!r->options.fast_transfer || rt->vm->cbt) {
			rt->step = PREP_CLEAN;
			prep_step(rt);
			return;
		}
		job_log(rt->j, LOG_INFO, "enabling change tracking (CBT) on %s", rt->j->vm);
		rt->op = vs_enable_cbt(src_client(rt), rt->d.src_vm, 1, prep_simple_done, token_new(rt));
		return;
	case PREP_STUN: {
		/* CBT takes effect on a running VM after a stun: a snapshot
		 * create/remove cycle does it. */
		char *name = xasprintf(MIG_SNAPSHOT_PREFIX "%s-stun", rt->j->rule);

		/* The stun snapshot carries the engine's name: the clean-up step
		 * removes it once the VM has been read again. */
		rt->op = vs_create_snapshot(src_client(rt), rt->d.src_vm, name, "vmferry: activate change tracking", 0, 0,
		    prep_simple_done, token_new(rt));
		free(name);
		return;
	}
	case PREP_CLEAN:
		/* Snapshots the engine made and no longer needs (a crash can
		 * leave one between its creation and its recording). */
		for (k = 0; k < rt->vm->nsnapshots; k++) {
			struct vs_snapshot *s = &rt->vm->snapshots[k];

			if (is_engine_snapshot(rt, s->name) && !str_eq(s->moref, rt->d.snap) && s->moref[0] != '\0') {
				char *moref = xstrdup(s->moref);

				job_log(rt->j, LOG_INFO, "removing leftover snapshot %s (%s)", s->name, s->moref);
				s->moref[0] = '\0'; /* done with it, whatever the outcome */
				rt->op = vs_remove_snapshot(src_client(rt), moref, prep_clean_done, token_new(rt));
				free(moref);
				return;
			}
		}
		rt->step = PREP_SNAPSHOT;
		prep_step(rt);
		return;
	case PREP_SNAPSHOT:
		for (k = 0; rt->d.snap != NULL && k < rt->vm->nsnapshots; k++)
			if (str_eq(rt->vm->snapshots[k].moref, rt->d.snap) && rt->vm->snapshots[k].moref[0] != '\0')
				break;
		if (rt->d.snap != NULL && k < rt->vm->nsnapshots) {
			/* The pass's snapshot is still there: go on with it. */
			prep_next(rt);
			return;
		}
		if (rt->d.snap != NULL) {
			job_log(rt->j, LOG_WARN, "snapshot %s of the pass in progress is gone", rt->d.snap);
			remember_partial(rt);
		}
		if (!rt->create) {
			free(rt->d.snap);
			rt->d.snap = NULL;
			rt_save(rt);
			fsm_dispatch(rt->j, MIG_EV_REQUERY, "the pass's snapshot is gone; querying again");
			return;
		}
		{
			char *name;
			int on = rt->vm->power != NULL && strcmp(rt->vm->power, "poweredOn") == 0;

			rt->d.pass++;
			name = xasprintf(MIG_SNAPSHOT_PREFIX "%s-%u", rt->j->rule, rt->d.pass);
			rt->op = vs_create_snapshot(src_client(rt), rt->d.src_vm, name, "vmferry migration sync", 0,
			    r->options.quiesce && on, prep_snapshot_done, token_new(rt));
			free(name);
		}
		return;
	case PREP_DISKS:
		rt->op = vs_snapshot_disks(src_client(rt), rt->d.snap, prep_disks_done, token_new(rt));
		return;
	case PREP_AREAS:
		if (rt->i >= rt->d.ndisks) {
			rt->i = 0;
			prep_next(rt);
			return;
		}
		{
			struct mig_disk *md = &rt->d.disks[rt->i];
			const char *cid;

			if (md->checkpoint == DISK_DONE) {
				/* Copied before a restart: its areas are not needed. */
				rt->i++;
				prep_step(rt);
				return;
			}
			if (!r->options.fast_transfer) {
				rt->areas[rt->i] = xcalloc(1, sizeof(struct vs_extent));
				rt->areas[rt->i][0].start = 0;
				rt->areas[rt->i][0].length = md->capacity;
				rt->nareas[rt->i] = 1;
				if (rt->d.full_done && rt->d.pass > 1 && rt->i == 0)
					job_log(rt->j, LOG_INFO, "fast_transfer is off: copying whole disks again");
				rt->i++;
				prep_step(rt);
				return;
			}
			if (md->prev_cid != NULL && md->prev_ckpt > 0 && rt->prev_areas == NULL && !rt->prev_asked) {
				/* First: what changed below the interrupted pass's point. */
				rt->prev_asked = 1;
				rt->op = vs_query_changes(src_client(rt), rt->d.src_vm, rt->d.snap, (int)md->key, md->prev_cid,
				    md->capacity, prep_prev_done, token_new(rt));
				return;
			}
			cid = (!rt->d.full_done || md->full || md->change_id == NULL) ? "*" : md->change_id;
			if (strcmp(cid, "*") == 0 && rt->d.full_done)
				job_log(rt->j, LOG_INFO, "disk %zu: no usable changeId; copying its allocated areas in full", rt->i);
			rt->op = vs_query_changes(src_client(rt), rt->d.src_vm, rt->d.snap, (int)md->key, cid, md->capacity,
			    prep_areas_done, token_new(rt));
		}
		return;
	case PREP_DESCRIPTORS:
	case PREP_TARGET_DESCRIPTORS: {
		int target = rt->step == PREP_TARGET_DESCRIPTORS;
		char *ds = NULL, *path = NULL;
		const char *file;

		if (rt->i >= rt->d.ndisks) {
			rt->i = 0;
			if (target) {
				/* fetching_config is done. */
				rt_save(rt);
				mig_event(rt, EV_OK);
				return;
			}
			prep_next(rt);
			return;
		}
		file = target ? rt->d.disks[rt->i].dst_file : rt->d.disks[rt->i].src_file;
		if (file == NULL || vs_split_ds_path(file, &ds, &path) != 0) {
			mig_fail(rt, "disk %zu has no usable file name (%s)", rt->i, file ? file : "none");
			return;
		}
		if (target) {
			const struct cfg_rule *rr = rule_of(rt);

			rt->op = vs_get_file(dst_client(rt), rr->target.datacenter, ds, path, prep_descriptor_done,
			    token_new(rt));
		} else {
			rt->op = vs_get_file(src_client(rt), rt->d.src_dc ? rt->d.src_dc : rt->vm->datacenter, ds, path,
			    prep_descriptor_done, token_new(rt));
		}
		free(ds);
		free(path);
		return;
	}
	case PREP_DONE: {
		void (*then)(struct mig_rt *) = rt->then;

		rt->pass_total = 0;
		rt->pass_base = 0;
		for (k = 0; k < rt->d.ndisks; k++) {
			uint64_t all = copy_bytes_from(rt->areas[k], rt->nareas[k], 0);

			if (rt->d.disks[k].checkpoint == DISK_DONE)
				continue;
			rt->pass_total += all;
			rt->pass_base += all - copy_bytes_from(rt->areas[k], rt->nareas[k], rt->d.disks[k].checkpoint);
		}
		then(rt);
		return;
	}
	}
}

static void
prep_next(struct mig_rt *rt)
{
	/* The stun step follows only when CBT was just enabled. */
	if (rt->step == PREP_CBT) {
		rt->step = PREP_STUN;
	} else if (rt->step == PREP_STUN) {
		/* Read the VM again: the clean-up step removes the stun snapshot. */
		rt->step = PREP_READ_VM;
		rt->vm->cbt = 1;
		rt->op = vs_get_vm(src_client(rt), rt->d.src_vm, prep_vm_done, token_new(rt));
		rt->step = PREP_READ_VM;
		return;
	} else {
		rt->step++;
	}
	prep_step(rt);
}

/* Make the pass ready (snapshot, areas, descriptors), then call then().
 * create: make a snapshot if the pass has none (else: REQUERY). */
static void
prepare_pass(struct mig_rt *rt, int create, void (*then)(struct mig_rt *))
{
	rt->then = then;
	rt->create = create;
	if (rt->pass_snap != NULL && str_eq(rt->pass_snap, rt->d.snap) && rt->areas != NULL) {
		size_t k, ready = 1;

		for (k = 0; k < rt->d.ndisks; k++)
			if (rt->src_flat[k] == NULL && rt->d.disks[k].checkpoint != DISK_DONE)
				ready = 0;
		if (ready) {
			rt->step = PREP_DONE;
			prep_step(rt);
			return;
		}
	}
	rt->step = PREP_READ_VM;
	rt->i = 0;
	prep_step(rt);
}

/* ---- copying a pass ---- */

static void copy_next_disk(struct mig_rt *rt);
static void finish_pass(struct mig_rt *rt);

/* Where a target disk is written: in place through a mount (lan_free),
 * else into a staging image in temp_dir that is uploaded at cutover. */
static const char *
target_mount(struct mig_rt *rt, size_t i)
{
	const struct cfg_rule *r = rule_of(rt);

	if (!r->options.lan_free || rt->d.disks[i].dst_ds == NULL)
		return NULL;
	return mount_of(r->target.platform, rt->d.disks[i].dst_ds);
}

static const char *
source_mount(struct mig_rt *rt, size_t i)
{
	const struct cfg_rule *r = rule_of(rt);

	if (!r->options.lan_free || rt->src_ds[i] == NULL)
		return NULL;
	return mount_of(r->source_platform, rt->src_ds[i]);
}

static char *
staging_file(struct mig_rt *rt, const char *name, char **err, int *errnum)
{
	char *dir = staging_dir(rt, err, errnum), *path;

	if (dir == NULL)
		return NULL;
	path = xasprintf("%s/%s", dir, name);
	free(dir);
	return path;
}

static char *
staging_image(struct mig_rt *rt, size_t i, char **err, int *errnum)
{
	char name[32];

	snprintf(name, sizeof(name), "disk%zu.img", i);
	return staging_file(rt, name, err, errnum);
}

static const struct cfg_window *
current_windows(void *arg, size_t *n)
{
	struct mig_rt *rt = arg;
	const struct cfg_rule *r = rt->j->cfg;

	*n = r ? r->nwindows : 0;
	return r ? r->windows : NULL;
}

/* What every copy of a rule shares: buffers, parallelism, bandwidth. */
static void
copy_params_init(struct mig_rt *rt, struct copy_params *p)
{
	const struct config *cfg = engine_config();
	uint64_t per_host;

	memset(p, 0, sizeof(*p));
	p->src = rt->src;
	p->dst = rt->dst;
	p->chunk = (size_t)cfg->system.transfer_buffer;
	/* Buffers in flight per host stay within host_buffer_cap. */
	per_host = (uint64_t)cfg->system.max_tasks_per_host * cfg->system.transfer_buffer;
	p->inflight = per_host ? (int)(cfg->system.host_buffer_cap / per_host) : 1;
	if (p->inflight < 1)
		p->inflight = 1;
	p->bucket = engine_bucket(rule_of(rt)->name);
	p->windows = current_windows;
	p->checkpoint_s = CHECKPOINT_S;
	p->arg = rt;
}

static void
copy_progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
	struct mig_rt *rt = arg;
	struct mig_disk *md = &rt->d.disks[rt->i];
	double now = now_mono();
	uint64_t done = rt->pass_base + copied;

	if (checkpoint != md->checkpoint) {
		md->checkpoint = checkpoint;
		rt_save(rt);
	}
	if (now - rt->rate_t0 >= 1.0) {
		rt->rate = (double)(done - rt->rate_b0) / (now - rt->rate_t0);
		rt->rate_t0 = now;
		rt->rate_b0 = done;
	}
	if (paused != rt->waited) {
		rt->waited = paused;
		job_log(rt->j, LOG_INFO, paused ? "bandwidth window with limit 0: transfer paused, progress kept"
		                                : "bandwidth window over: transfer resumed");
	}
	job_progress(rt->j, done, rt->pass_total, paused ? 0 : rt->rate);
}

static void
copy_disk_done(void *arg, enum xfer_status st, const char *err)
{
	struct mig_rt *rt = arg;
	struct mig_disk *md = &rt->d.disks[rt->i];

	rt->copy = NULL;
	if (st != XFER_OK) {
		disk_close(rt->src);
		disk_close(rt->dst);
		rt->src = rt->dst = NULL;
		if (st == XFER_TRANSIENT)
			mig_lost(rt, "disk %zu: %s", rt->i, err);
		else
			mig_fail(rt, "disk %zu: %s", rt->i, err);
		return;
	}
	/* The copier flushed before reporting success. */
	rt->pass_base += copy_bytes_from(rt->areas[rt->i], rt->nareas[rt->i], 0) -
	    (rt->pass_base_disk_start);
	disk_close(rt->src);
	disk_close(rt->dst);
	rt->src = rt->dst = NULL;
	md->checkpoint = DISK_DONE;
	rt_save(rt);
	rt->i++;
	copy_next_disk(rt);
}

static void
copy_next_disk(struct mig_rt *rt)
{
	const struct cfg_rule *r = rule_of(rt);
	struct copy_params p;
	struct mig_disk *md;
	const char *mnt;
	char *err = NULL;
	int en = 0;

	while (rt->i < rt->d.ndisks && rt->d.disks[rt->i].checkpoint == DISK_DONE)
		rt->i++;
	if (rt->i >= rt->d.ndisks) {
		finish_pass(rt);
		return;
	}
	md = &rt->d.disks[rt->i];
	/* Source: the snapshot's base disk, never guessed but from its descriptor. */
	if ((mnt = source_mount(rt, rt->i)) != NULL) {
		rt->src = disk_open_direct(mnt, rt->src_flat[rt->i], md->capacity, 0, &err);
		if (rt->src == NULL) {
			mig_lost(rt, "disk %zu: source through %s: %s", rt->i, mnt, err);
			free(err);
			return;
		}
	} else {
		if (r->options.lan_free && !rt->lan_warned) {
			rt->lan_warned = 1;
			job_log(rt->j, LOG_WARN, "lan_free: no datastore_mounts entry for %s on %s; reading over HTTPS",
			    rt->src_ds[rt->i], r->source_platform);
		}
		rt->src = disk_open_https(src_client(rt), rt->d.src_dc ? rt->d.src_dc : "", rt->src_ds[rt->i],
		    rt->src_flat[rt->i], md->capacity);
	}
	if ((mnt = target_mount(rt, rt->i)) != NULL) {
		rt->dst = disk_open_direct(mnt, md->dst_flat, md->capacity, 1, &err);
		if (rt->dst == NULL) {
			disk_close(rt->src);
			rt->src = NULL;
			mig_lost(rt, "disk %zu: target through %s: %s", rt->i, mnt, err);
			free(err);
			return;
		}
	} else {
		char *img = staging_image(rt, rt->i, &err, &en);

		if (img != NULL) {
			rt->dst = disk_open_file(img, md->capacity, 1, &err, &en);
			free(img);
		}
		if (rt->dst == NULL) {
			disk_close(rt->src);
			rt->src = NULL;
			mig_lost(rt, "node temp_dir cannot be written: %s", err);
			free(err);
			return;
		}
	}
	copy_params_init(rt, &p);
	p.areas = rt->areas[rt->i];
	p.nareas = rt->nareas[rt->i];
	p.resume = md->checkpoint;
	p.progress = copy_progress;
	p.done = copy_disk_done;
	p.arg = rt;
	rt->pass_base_disk_start = copy_bytes_from(p.areas, p.nareas, 0) - copy_bytes_from(p.areas, p.nareas, p.resume);
	if (md->checkpoint > 0)
		job_log(rt->j, LOG_INFO, "disk %zu: resuming at offset %llu", rt->i, (unsigned long long)md->checkpoint);
	rt->copy = copy_start(&p);
}

static void pass_snapshot_removed(struct vs_out *out, void *arg);

/* Every disk of the pass is copied: record the changeIds, drop the snapshot. */
static void
finish_pass(struct mig_rt *rt)
{
	size_t i;

	for (i = 0; i < rt->d.ndisks; i++) {
		struct mig_disk *md = &rt->d.disks[i];

		free(md->change_id);
		md->change_id = rt->snap_cids[i] ? xstrdup(rt->snap_cids[i]) : NULL;
		md->full = 0;
		free(md->prev_cid);
		md->prev_cid = NULL;
		md->prev_ckpt = 0;
	}
	rt->d.bytes_moved += rt->pass_total;
	rt_save(rt);
	job_progress(rt->j, rt->pass_total, rt->pass_total, rt->rate);
	job_log(rt->j, LOG_INFO, "sync pass %u finished: %llu bytes copied", rt->d.pass,
	    (unsigned long long)rt->pass_total);
	rt->op = vs_remove_snapshot(src_client(rt), rt->d.snap, pass_snapshot_removed, token_new(rt));
}

static void
pass_snapshot_removed(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	void (*after)(struct mig_rt *);
	size_t i;

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status == VS_UNREACHABLE) {
		mig_lost(rt, "removing the snapshot: %s", out->error);
		return;
	}
	if (out->status != VS_OK)
		job_log(rt->j, LOG_WARN, "removing snapshot %s: %s", rt->d.snap, out->error);
	free(rt->d.snap);
	rt->d.snap = NULL;
	for (i = 0; i < rt->d.ndisks; i++)
		rt->d.disks[i].checkpoint = 0;
	rt_save(rt);
	rt_free_pass(rt);
	after = rt->after_pass;
	after(rt);
}

static void
copy_pass(struct mig_rt *rt)
{
	rt->i = 0;
	rt->rate_t0 = now_mono();
	rt->rate_b0 = rt->pass_base;
	job_progress(rt->j, rt->pass_base, rt->pass_total, 0);
	copy_next_disk(rt);
}

/* ---- querying_changes, transferring, ready ---- */

static void
query_done(struct mig_rt *rt)
{
	size_t k, n = 0;

	for (k = 0; k < rt->d.ndisks; k++)
		n += rt->nareas[k];
	job_log(rt->j, LOG_INFO, "sync pass %u: %llu bytes in %zu areas to copy", rt->d.pass,
	    (unsigned long long)rt->pass_total, n);
	job_progress(rt->j, rt->pass_base, rt->pass_total, 0);
	mig_event(rt, EV_OK);
}

void
mig_enter_querying_changes(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(rt))
		return;

	if (j->cfg == NULL)
		return;
	prepare_pass(rt, 1, query_done);
}

static void
transfer_done(struct mig_rt *rt)
{
	if (!rt->d.full_done || !rt->d.migrate) {
		/* The first full copy, or a sync after a restart of a job that
		 * was waiting in 迁移就绪: back to ready. */
		rt->d.full_done = 1;
		rt_save(rt);
		mig_event(rt, MIG_EV_FULL_DONE);
		return;
	}
	mig_event(rt, MIG_EV_CATCHUP_DONE);
}

void
mig_note_migrate(struct job *j)
{
	struct mig_data d;
	struct sbuf b;

	if (data_decode(j->data, j->datalen, &d) != 0)
		return;
	d.migrate = 1;
	sbuf_init(&b);
	data_encode(&d, &b);
	/* Persisted with the transition that follows, in one commit. */
	job_set_data(j, b.data, b.len);
	sbuf_free(&b);
	data_free(&d);
}

void
mig_enter_transferring(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(rt))
		return;

	if (j->cfg == NULL)
		return;
	rt->after_pass = transfer_done;
	prepare_pass(rt, 0, copy_pass);
}

void
mig_enter_ready(struct job *j, int event)
{
	struct mig_data d;

	/* A job at rest keeps no runtime: read the record without one. */
	if (data_decode(j->data, j->datalen, &d) != 0) {
		fsm_dispatch(j, EV_FAIL,
		    "its saved progress was written in a format this vmferryd cannot read; delete the job "
		    "(vmferryctl delete) and start it again");
		return;
	}
	if (event != EV_RESUME)
		job_log(j, LOG_INFO, "full copy finished (%llu bytes); 迁移就绪: run `vmferryctl migrate %s %s` to cut over",
		    (unsigned long long)d.bytes_moved, j->rule, j->vm);
	data_free(&d);
	if (j->cfg != NULL && j->cfg->options.auto_migrate) {
		mig_note_migrate(j);
		fsm_dispatch(j, MIG_EV_MIGRATE, "auto_migrate");
	}
}

/* ---- cutting over ---- */

static void cutover_step(struct mig_rt *rt);
static void cut_target_read(struct vs_out *out, void *arg);
static void mem_carry(struct mig_rt *rt);

static void
cut_power_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status != VS_OK) {
		mig_vs_failed(rt, rt->d.stage == 0 ? "stopping the source VM" : "powering on the target VM", out);
		return;
	}
	if (rt->d.stage == 0) {
		/* After a guest shutdown, wait until the VM is really off. */
		if (rule_of(rt)->options.cutover == CUTOVER_SHUTDOWN && !rule_of(rt)->options.memory_snapshot) {
			rt->rate_t0 = now_mono();
			cutover_step(rt);
			return;
		}
		if (rt->d.down_start_ms == 0)
			rt->d.down_start_ms = now_ms();
		rt->d.stage = 1;
	} else {
		rt->d.down_end_ms = now_ms();
		rt->d.stage = 4;
	}
	rt_save(rt);
	cutover_step(rt);
}

static void
cut_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	cutover_step(arg);
}

static void
cut_vm_read(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);
	const struct cfg_rule *r;
	int on;

	if (rt == NULL)
		return;
	rt->op = NULL;
	r = rule_of(rt);
	if (out->status != VS_OK) {
		mig_vs_failed(rt, "reading the source VM", out);
		return;
	}
	on = out->vm->power != NULL && strcmp(out->vm->power, "poweredOn") == 0;
	if (!on || r->options.cutover == CUTOVER_NONE) {
		if (on && r->options.memory_snapshot)
			job_log(rt->j, LOG_WARN, "memory_snapshot: cutover none keeps the source running, so there is no "
			                         "memory state to carry; the target boots from its disks");
		if (on)
			job_log(rt->j, LOG_INFO, "cutover none: the source keeps running");
		else
			job_log(rt->j, LOG_INFO, "source VM %s is %s", rt->j->vm,
			    out->vm->power != NULL && strcmp(out->vm->power, "suspended") == 0 ? "suspended" : "powered off");
		if (rt->d.down_start_ms == 0)
			rt->d.down_start_ms = now_ms();
		rt->d.stage = 1;
		rt_save(rt);
		cutover_step(rt);
		return;
	}
	if (r->options.cutover == CUTOVER_SHUTDOWN && rt->rate_t0 > 0) {
		struct timeval tv = { 1, 0 };

		/* Shutdown asked: wait for the guest, then force it. */
		if (now_mono() - rt->rate_t0 > SHUTDOWN_WAIT_S) {
			job_log(rt->j, LOG_WARN, "the guest did not shut down within %d s: powering it off", SHUTDOWN_WAIT_S);
			rt->op = vs_power(src_client(rt), rt->d.src_vm, "off", cut_power_done, token_new(rt));
			rt->rate_t0 = 0;
			return;
		}
		if (rt->timer == NULL)
			rt->timer = evtimer_new(loop_base(), cut_timer_cb, rt);
		evtimer_add(rt->timer, &tv);
		return;
	}
	/* Downtime counts from the moment the source is asked to stop. */
	if (rt->d.down_start_ms == 0) {
		rt->d.down_start_ms = now_ms();
		rt_save(rt);
	}
	if (r->options.memory_snapshot) {
		/* Suspending writes the guest's memory to a file, and the disks
		 * stop where that memory state expects them. */
		job_log(rt->j, LOG_INFO, "cutover: suspending the source VM (memory_snapshot: the target resumes from "
		                         "its memory state)");
		rt->op = vs_power(src_client(rt), rt->d.src_vm, "suspend", cut_power_done, token_new(rt));
		return;
	}
	job_log(rt->j, LOG_INFO, "cutover: %s the source VM",
	    r->options.cutover == CUTOVER_SHUTDOWN ? "shutting down" : "powering off");
	rt->op = vs_power(src_client(rt), rt->d.src_vm, r->options.cutover == CUTOVER_SHUTDOWN ? "shutdown" : "off",
	    cut_power_done, token_new(rt));
}

static void
cut_target_read(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the target VM");

	if (rt == NULL)
		return;
	if (out->vm->power != NULL && strcmp(out->vm->power, "poweredOn") == 0) {
		job_log(rt->j, LOG_INFO, "the target VM is powered on");
		rt->d.down_end_ms = now_ms();
		rt->d.stage = 4;
		rt_save(rt);
		cutover_step(rt);
		return;
	}
	if (rule_of(rt)->options.memory_snapshot && !rt->mem_done) {
		char *slash;

		free(rt->dst_ds);
		free(rt->dst_dir);
		rt->dst_ds = rt->dst_dir = NULL;
		if (out->vm->vmx_path == NULL || vs_split_ds_path(out->vm->vmx_path, &rt->dst_ds, &rt->dst_dir) != 0) {
			mig_fail(rt, "the target VM has no configuration file path");
			return;
		}
		/* Its directory: the memory state goes beside the .vmx. */
		slash = strrchr(rt->dst_dir, '/');
		*(slash != NULL ? slash : rt->dst_dir) = '\0';
		mem_carry(rt);
		return;
	}
	if (!rule_of(rt)->options.power_on_target) {
		rt->d.down_end_ms = now_ms();
		rt->d.stage = 4;
		rt_save(rt);
		cutover_step(rt);
		return;
	}
	job_log(rt->j, LOG_INFO, "%s the target VM", rt->mem_name ? "resuming" : "powering on");
	rt->op = vs_power(dst_client(rt), rt->d.dst_vm, "on", cut_power_done, token_new(rt));
}

/* An upload to the target finished: -1 (and the job handed on) if it failed. */
static int
upload_ended(struct mig_rt *rt, enum xfer_status st, const char *err, const char *what)
{
	rt->upload = NULL;
	close(rt->upload_fd);
	rt->upload_fd = -1;
	if (st == XFER_OK)
		return 0;
	if (st == XFER_TRANSIENT)
		mig_lost(rt, "uploading %s: %s", what, err);
	else
		mig_fail(rt, "uploading %s: %s", what, err);
	return -1;
}

/* ---- memory_snapshot: the suspended source's memory state goes to the
 * target VM's directory, and the target is pointed at it
 * (checkpoint.vmState), so that powering it on resumes the guest.  Each
 * step can be repeated after a crash: the target is looked at first. ---- */

static void mem_fetched(void *arg, enum xfer_status st, const char *err);
static void mem_uploaded(void *arg, enum xfer_status st, const char *err);

static void
mem_progress(void *arg, uint64_t copied, uint64_t checkpoint, int paused)
{
}

static void
mem_src_read(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "reading the source VM");
	struct copy_params p;
	char *ds = NULL, *path = NULL, *local, *err = NULL, *slash;
	int en = 0;

	if (rt == NULL)
		return;
	if (out->vm->power == NULL || strcmp(out->vm->power, "suspended") != 0 || out->vm->suspend_file == NULL ||
	    vs_split_ds_path(out->vm->suspend_file, &ds, &path) != 0) {
		job_log(rt->j, LOG_WARN, "memory_snapshot: the source VM is %s with no memory state to carry; the target "
		                         "boots from its disks", out->vm->power ? out->vm->power : "in an unknown state");
		rt->mem_done = 1;
		cutover_step(rt);
		return;
	}
	slash = strrchr(path, '/');
	free(rt->mem_name);
	rt->mem_name = xstrdup(slash != NULL ? slash + 1 : path);
	local = staging_file(rt, "memory.vmss", &err, &en);
	if (local != NULL) {
		rt->dst = disk_open_file(local, out->vm->suspend_size, 1, &err, &en);
		free(local);
	}
	if (rt->dst == NULL) {
		mig_lost(rt, "node temp_dir cannot be written: %s", err);
		free(err);
		free(ds);
		free(path);
		return;
	}
	rt->src = disk_open_https(src_client(rt), rt->d.src_dc ? rt->d.src_dc : "", ds, path, out->vm->suspend_size);
	job_log(rt->j, LOG_INFO, "memory_snapshot: fetching the source's memory state %s (%llu bytes)",
	    out->vm->suspend_file, (unsigned long long)out->vm->suspend_size);
	free(ds);
	free(path);
	rt->mem_area.start = 0;
	rt->mem_area.length = out->vm->suspend_size;
	copy_params_init(rt, &p);
	p.areas = &rt->mem_area;
	p.nareas = rt->mem_area.length > 0;
	p.progress = mem_progress;
	p.done = mem_fetched;
	rt->copy = copy_start(&p);
}

static void
mem_carry(struct mig_rt *rt)
{
	rt->op = vs_get_vm(src_client(rt), rt->d.src_vm, mem_src_read, token_new(rt));
}

static void
mem_fetched(void *arg, enum xfer_status st, const char *err)
{
	struct mig_rt *rt = arg;
	uint64_t size = rt->mem_area.length;
	char *local, *e = NULL, *path;
	int en = 0;

	rt->copy = NULL;
	disk_close(rt->src);
	disk_close(rt->dst);
	rt->src = rt->dst = NULL;
	if (st != XFER_OK) {
		if (st == XFER_TRANSIENT)
			mig_lost(rt, "fetching the memory state: %s", err);
		else
			mig_fail(rt, "fetching the memory state: %s", err);
		return;
	}
	local = staging_file(rt, "memory.vmss", &e, &en);
	if (local == NULL || (rt->upload_fd = open(local, O_RDONLY | O_CLOEXEC)) < 0) {
		mig_lost(rt, "memory state in temp_dir: %s", local ? strerror(errno) : e);
		free(local);
		free(e);
		return;
	}
	free(local);
	path = rt->dst_dir[0] ? xasprintf("%s/%s", rt->dst_dir, rt->mem_name) : xstrdup(rt->mem_name);
	job_log(rt->j, LOG_INFO, "memory_snapshot: uploading the memory state to [%s] %s", rt->dst_ds, path);
	rt->upload = disk_upload_https(dst_client(rt), rule_of(rt)->target.datacenter, rt->dst_ds, path, rt->upload_fd,
	    size, mem_uploaded, rt);
	free(path);
}

static void
mem_pointed(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = op_reply(out, arg, "pointing the target VM at its memory state");

	if (rt == NULL)
		return;
	job_log(rt->j, LOG_INFO, "memory_snapshot: the target VM resumes from the source's memory state (%llu bytes)",
	    (unsigned long long)rt->mem_area.length);
	rt->mem_done = 1;
	cutover_step(rt);
}

static void
mem_uploaded(void *arg, enum xfer_status st, const char *err)
{
	struct mig_rt *rt = arg;

	if (upload_ended(rt, st, err, "the memory state") != 0)
		return;
	rt->op = vs_set_extra_config(dst_client(rt), rt->d.dst_vm, "checkpoint.vmState", rt->mem_name, mem_pointed,
	    token_new(rt));
}

static void
final_pass_done(struct mig_rt *rt)
{
	rt->i = 0;
	rt->d.stage = 2;
	rt_save(rt);
	cutover_step(rt);
}

static void
cut_upload_done(void *arg, enum xfer_status st, const char *err)
{
	struct mig_rt *rt = arg;
	char what[32];

	snprintf(what, sizeof(what), "disk %zu", rt->i);
	if (upload_ended(rt, st, err, what) != 0)
		return;
	job_log(rt->j, LOG_INFO, "disk %zu uploaded to the target", rt->i);
	rt->i++;
	cutover_step(rt);
}

static void
cut_upload_next(struct mig_rt *rt)
{
	const struct cfg_rule *r = rule_of(rt);
	struct mig_disk *md;
	char *img, *err = NULL;
	int en = 0;

	while (rt->i < rt->d.ndisks && target_mount(rt, rt->i) != NULL)
		rt->i++;
	if (rt->i >= rt->d.ndisks) {
		rt->d.stage = 3;
		rt_save(rt);
		cutover_step(rt);
		return;
	}
	md = &rt->d.disks[rt->i];
	img = staging_image(rt, rt->i, &err, &en);
	if (img == NULL || (rt->upload_fd = open(img, O_RDONLY | O_CLOEXEC)) < 0) {
		mig_lost(rt, "staging image of disk %zu: %s", rt->i, img ? strerror(errno) : err);
		free(img);
		free(err);
		return;
	}
	free(img);
	job_log(rt->j, LOG_INFO, "uploading disk %zu to [%s] %s", rt->i, md->dst_ds, md->dst_flat);
	rt->upload = disk_upload_https(dst_client(rt), r->target.datacenter, md->dst_ds, md->dst_flat, rt->upload_fd,
	    md->capacity, cut_upload_done, rt);
}

static void
cutover_step(struct mig_rt *rt)
{
	const struct cfg_rule *r = rule_of(rt);

	switch (rt->d.stage) {
	case 0:
		rt->op = vs_get_vm(src_client(rt), rt->d.src_vm, cut_vm_read, token_new(rt));
		return;
	case 1:
		rt->after_pass = final_pass_done;
		prepare_pass(rt, 1, copy_pass);
		return;
	case 2:
		cut_upload_next(rt);
		return;
	case 3:
		/* After a crash it may be on already: look first. */
		if (r->options.power_on_target || r->options.memory_snapshot) {
			rt->op = vs_get_vm(dst_client(rt), rt->d.dst_vm, cut_target_read, token_new(rt));
			return;
		}
		rt->d.down_end_ms = now_ms();
		rt->d.stage = 4;
		rt_save(rt);
		/* fall through */
	case 4: {
		double down = (double)(rt->d.down_end_ms - rt->d.down_start_ms) / 1000.0;

		job_stat_success(rt->j, rt->d.bytes_moved);
		job_progress(rt->j, rt->d.bytes_moved, rt->d.bytes_moved, 0);
		job_log(rt->j, LOG_INFO, "migration complete: %llu bytes moved in %u sync passes; downtime %.1f s",
		    (unsigned long long)rt->d.bytes_moved, rt->d.pass, down);
		remove_staging(rt);
		mig_event(rt, EV_OK);
		return;
	}
	default:
		mig_fail(rt, "unknown cutover stage %u", rt->d.stage);
	}
}

void
mig_enter_cutting_over(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (rt_unreadable(rt))
		return;

	if (j->cfg == NULL)
		return;
	rt->i = 0;
	rt->rate_t0 = 0;
	rt->mem_done = 0;
	cutover_step(rt);
}

/* ---- stop, delete ---- */

static void stop_done(struct mig_rt *rt);

static void
stop_snapshot_removed(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status == VS_OK || out->status == VS_FAULT) {
		if (out->status != VS_OK)
			job_log(rt->j, LOG_WARN, "removing snapshot %s: %s", rt->d.snap, out->error);
		free(rt->d.snap);
		rt->d.snap = NULL;
		/* The next pass starts where this one stopped. */
		remember_partial(rt);
		rt_save(rt);
	} else {
		job_log(rt->j, LOG_WARN, "snapshot %s could not be removed now (%s); it is removed when the job runs again",
		    rt->d.snap, out->error);
	}
	stop_done(rt);
}

static void
remove_own_snapshot(struct mig_rt *rt, void (*then)(struct mig_rt *))
{
	struct vs_client *c = rt->d.src_vm && rt->j->cfg ? src_client(rt) : NULL;

	rt->after_pass = then;
	if (rt->d.snap == NULL || c == NULL) {
		then(rt);
		return;
	}
	rt->op = vs_remove_snapshot(c, rt->d.snap, stop_snapshot_removed, token_new(rt));
}

static void
stop_done(struct mig_rt *rt)
{
	void (*then)(struct mig_rt *) = rt->after_pass;

	then(rt);
}

static void
stopped(struct mig_rt *rt)
{
	mig_event(rt, EV_OK);
}

void
mig_enter_stopping(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (j->timer != NULL)
		event_del(j->timer);
	remove_own_snapshot(rt, stopped);
}

static void
failed_cleaned(struct mig_rt *rt)
{
}

/* A failed job leaves no snapshot of its own on the source (it would
 * grow there until someone noticed); what the pass copied is remembered
 * as after a stop, so `start` goes on from there. */
void
mig_enter_failed(struct job *j, int event)
{
	struct mig_rt *rt;

	if (j->cfg == NULL)
		return;
	rt = rt_get(j);
	if (rt_unreadable(rt) || rt->d.snap == NULL)
		return;
	job_log(j, LOG_INFO, "removing snapshot %s of the failed pass from the source", rt->d.snap);
	remove_own_snapshot(rt, failed_cleaned);
}

static void
delete_vm_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = NULL;
	if (out->status != VS_OK)
		job_log(rt->j, LOG_WARN, "deleting the target VM: %s", out->error);
	else
		job_log(rt->j, LOG_INFO, "target VM %s deleted", rt->d.dst_vm);
	remove_staging(rt);
	mig_event(rt, EV_CLEANED);
}

static void
delete_power_done(struct vs_out *out, void *arg)
{
	struct mig_rt *rt = token_take(arg);

	if (rt == NULL)
		return;
	rt->op = vs_destroy(dst_client(rt), rt->d.dst_vm, delete_vm_done, token_new(rt));
}

static void
delete_after_snapshot(struct mig_rt *rt)
{
	const struct cfg_rule *r = rule_of(rt);

	if (r != NULL && r->options.delete_target_on_rule_delete && rt->d.dst_vm != NULL && dst_client(rt) != NULL) {
		job_log(rt->j, LOG_INFO, "delete_target_on_rule_delete: deleting target VM %s", rt->d.dst_vm);
		rt->op = vs_power(dst_client(rt), rt->d.dst_vm, "off", delete_power_done, token_new(rt));
		return;
	}
	if (r != NULL)
		remove_staging(rt);
	mig_event(rt, EV_CLEANED);
}

void
mig_enter_deleting(struct job *j, int event)
{
	struct mig_rt *rt = rt_get(j);

	if (j->timer != NULL)
		event_del(j->timer);
	remove_own_snapshot(rt, delete_after_snapshot);
}
