/* The sync pass (engine/jobs/sync.c) on its own: a fake source platform
 * (snapshots, change tracking, descriptors; disks as local files) and a
 * fake sink per disk, with no job kind's work around it.  Each test reads
 * the sinks back and compares them with the source bytes the pass was
 * meant to carry. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/core/loop.h"
#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/sync.h"
#include "fsm/tables.h"

#define NDISKS 2
#define MAXAREAS 8

static const uint64_t caps[NDISKS] = { 3 * 1024 * 1024 + 4096, 1024 * 1024 };
static char dir[64];

/* ---- the fake source ---- */

struct area_list {
	struct vs_extent a[MAXAREAS];
	size_t n;
};

static struct {
	uint8_t *bytes[NDISKS];        /* what the source disks hold now */
	struct area_list alloc[NDISKS]; /* allocated areas ("*") */
	char *cid;                     /* the disks' changeId in a new snapshot */
	char *since;                   /* changes since this changeId ... */
	struct area_list changed[NDISKS]; /* ... are these */
	char *refused;                 /* a changeId the source refuses (CBT reset) */
	struct vs_snapshot snaps[16];
	size_t nsnaps;
	unsigned next_snap;
	char *created[8];              /* names of snapshots created, in order */
	size_t ncreated;
	char *removed[16];             /* morefs removed */
	size_t nremoved;
	int queries;
	int cbt;
} src;

/* A driver call, answered from the loop. */
struct vs_op {
	struct event *ev;
	vs_op_fn done;
	void *arg;
	struct vs_out out;
};

static void
out_clear(struct vs_out *o)
{
	size_t i;

	free(o->error);
	free(o->fault_type);
	free(o->moref);
	free(o->extents);
	free(o->data);
	if (o->vm != NULL) {
		vs_vm_free(o->vm);
		free(o->vm);
	}
	for (i = 0; i < o->ndisks; i++) {
		free(o->disks[i].file);
		free(o->disks[i].change_id);
	}
	free(o->disks);
}

static void
op_fire(evutil_socket_t fd, short what, void *arg)
{
	struct vs_op *op = arg;

	op->done(&op->out, op->arg);
	out_clear(&op->out);
	event_free(op->ev);
	free(op);
}

static struct vs_op *
op_new(vs_op_fn done, void *arg)
{
	struct vs_op *op = xcalloc(1, sizeof(*op));
	struct timeval now = { 0, 0 };

	op->done = done;
	op->arg = arg;
	op->out.status = VS_OK;
	op->ev = evtimer_new(loop_base(), op_fire, op);
	evtimer_add(op->ev, &now);
	return op;
}

static void
fake_cancel(struct vs_op *op)
{
	if (op == NULL)
		return;
	/* Cancelled work never calls back; its token is dropped. */
	out_clear(&op->out);
	event_free(op->ev);
	token_take(op->arg);
	free(op);
}

static struct vs_op *
fake_get_vm(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	struct vs_vm *v = xcalloc(1, sizeof(*v));
	size_t i;

	assert_string_equal(vm, "vm-1");
	v->moref = xstrdup("vm-1");
	v->name = xstrdup("web01");
	v->power = xstrdup("poweredOn");
	v->datacenter = xstrdup("dc0");
	v->cbt = src.cbt;
	v->snapshots = xcalloc(src.nsnaps + 1, sizeof(*v->snapshots));
	v->nsnapshots = src.nsnaps;
	for (i = 0; i < src.nsnaps; i++) {
		v->snapshots[i].moref = xstrdup(src.snaps[i].moref);
		v->snapshots[i].name = xstrdup(src.snaps[i].name);
	}
	op->out.vm = v;
	return op;
}

static struct vs_op *
fake_enable_cbt(struct sync_pass *p, const char *vm, vs_op_fn done, void *arg)
{
	src.cbt = 1;
	return op_new(done, arg);
}

static void
snap_add(const char *moref, const char *name)
{
	src.snaps[src.nsnaps].moref = xstrdup(moref);
	src.snaps[src.nsnaps].name = xstrdup(name);
	src.nsnaps++;
}

static struct vs_op *
fake_create_snapshot(struct sync_pass *p, const char *vm, const char *name, const char *desc, int quiesce,
    vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	char moref[32];

	snprintf(moref, sizeof(moref), "snap-%u", ++src.next_snap);
	snap_add(moref, name);
	src.created[src.ncreated++] = xstrdup(name);
	op->out.moref = xstrdup(moref);
	return op;
}

static struct vs_op *
fake_remove_snapshot(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	size_t i;

	src.removed[src.nremoved++] = xstrdup(snap);
	for (i = 0; i < src.nsnaps; i++)
		if (strcmp(src.snaps[i].moref, snap) == 0) {
			free(src.snaps[i].moref);
			free(src.snaps[i].name);
			src.snaps[i] = src.snaps[--src.nsnaps];
			return op;
		}
	op->out.status = VS_FAULT;
	op->out.error = xstrdup("no such snapshot");
	return op;
}

static struct vs_op *
fake_snapshot_disks(struct sync_pass *p, const char *snap, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	size_t i;

	op->out.disks = xcalloc(NDISKS, sizeof(*op->out.disks));
	op->out.ndisks = NDISKS;
	for (i = 0; i < NDISKS; i++) {
		op->out.disks[i].key = 2000 + (int)i;
		op->out.disks[i].capacity = caps[i];
		op->out.disks[i].file = xasprintf("[ds0] web01/disk%zu.vmdk", i);
		op->out.disks[i].change_id = src.cid ? xstrdup(src.cid) : NULL;
	}
	return op;
}

static struct vs_op *
fake_query_changes(struct sync_pass *p, const char *vm, const char *snap, int key, const char *change_id,
    uint64_t capacity, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	size_t d = (size_t)(key - 2000);
	const struct area_list *l = NULL;

	assert_true(d < NDISKS);
	assert_int_equal(capacity, caps[d]);
	src.queries++;
	if (src.refused != NULL && strcmp(change_id, src.refused) == 0) {
		op->out.status = VS_FAULT;
		op->out.fault_type = xstrdup("FileFault");
		op->out.error = xstrdup("changeId refused");
		return op;
	}
	if (strcmp(change_id, "*") == 0)
		l = &src.alloc[d];
	else if (src.since != NULL && strcmp(change_id, src.since) == 0)
		l = &src.changed[d];
	else
		fail_msg("changes asked since %s, which the source does not know", change_id);
	assert_non_null(l);
	op->out.extents = xcalloc(MAXAREAS, sizeof(struct vs_extent));
	memcpy(op->out.extents, l->a, l->n * sizeof(struct vs_extent));
	op->out.nextents = l->n;
	return op;
}

static struct vs_op *
fake_get_file(struct sync_pass *p, const char *dc, const char *ds, const char *path, vs_op_fn done, void *arg)
{
	struct vs_op *op = op_new(done, arg);
	unsigned d;

	assert_string_equal(ds, "ds0");
	assert_int_equal(sscanf(path, "web01/disk%u.vmdk", &d), 1);
	op->out.data = xasprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
	                         "createType=\"vmfs\"\n\nRW %llu VMFS \"disk%u-flat.vmdk\"\n",
	    (unsigned long long)(caps[d] / 512), d);
	op->out.len = strlen(op->out.data);
	return op;
}

static char *
path_of(const char *what, size_t i)
{
	return xasprintf("%s/%s%zu", dir, what, i);
}

/* The snapshot's base disk: a local copy of the source bytes. */
static struct disk *
fake_open_disk(struct sync_pass *p, size_t i, char **err)
{
	char *path = path_of("src", i), *flat = xasprintf("web01/disk%zu-flat.vmdk", i);
	FILE *f = fopen(path, "wb");
	struct disk *d;
	int en;

	/* The pass reads the data extent its descriptor names. */
	assert_string_equal(p->src_ds[i], "ds0");
	assert_string_equal(p->src_flat[i], flat);
	assert_non_null(f);
	assert_int_equal(fwrite(src.bytes[i], 1, caps[i], f), caps[i]);
	fclose(f);
	d = disk_open_file(path, caps[i], 0, err, &en);
	free(path);
	free(flat);
	return d;
}

static const struct sync_source fake_source = {
	.get_vm = fake_get_vm,
	.enable_cbt = fake_enable_cbt,
	.create_snapshot = fake_create_snapshot,
	.remove_snapshot = fake_remove_snapshot,
	.snapshot_disks = fake_snapshot_disks,
	.query_changes = fake_query_changes,
	.get_file = fake_get_file,
	.cancel = fake_cancel,
	.open_disk = fake_open_disk,
};

/* ---- the fake kind: a sink file per disk, changeIds in an array ---- */

static struct {
	struct sync_state st;
	struct sync_pass pass;
	char *base[NDISKS];
	char *recorded[NDISKS];
	int saves;
	struct sbuf saved;             /* the state as last saved */
	int done;
	int gone;
} k;

static struct job *job;
static struct cfg_rule rule = { .kind = CFG_BACKUP, .name = "r" };

static void
kind_save(struct job *j)
{
	k.saves++;
	sbuf_free(&k.saved);
	sbuf_init(&k.saved);
	sync_state_put(&k.st, &k.saved);
}

static const char *
kind_base(struct job *j, size_t i)
{
	return k.base[i];
}

static struct disk *
kind_sink(struct job *j, size_t i, char **err)
{
	char *path = path_of("sink", i);
	struct disk *d;
	int en;

	d = disk_open_file(path, caps[i], 1, err, &en);
	free(path);
	return d;
}

static void
kind_record(struct job *j, size_t i, const char *cid)
{
	free(k.recorded[i]);
	k.recorded[i] = cid ? xstrdup(cid) : NULL;
}

static const struct sync_kind_ops kind_ops = {
	.save = kind_save,
	.base_cid = kind_base,
	.open_sink = kind_sink,
	.record = kind_record,
};

static void
after(struct sync_pass *p)
{
	k.done = 1;
}

static void
prepared(struct sync_pass *p, int gone)
{
	k.gone = gone;
	k.done = 1;
}

/* Run the loop until the pass calls back or nothing is left to do. */
static void
run(void)
{
	int turns = 0;

	k.done = 0;
	while (!k.done && turns++ < 1000000)
		if (event_base_loop(loop_base(), EVLOOP_ONCE) != 0)
			break;
}

/* ---- set-up ---- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
areas(struct area_list *l, uint64_t start, uint64_t len)
{
	l->a[l->n].start = start;
	l->a[l->n].length = len;
	l->n++;
}

static void
scribble(size_t d, uint64_t start, uint64_t len, unsigned seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		src.bytes[d][start + i] = (uint8_t)((start + i) * 2654435761u >> 11) ^ (uint8_t)seed;
}

/* The pass's runtime, as a kind makes it (again after a restart). */
static void
pass_new(void)
{
	sync_init(&k.pass, job, &k.st, &fake_source, &kind_ops);
	k.pass.set.fast_transfer = 1;
	k.pass.set.chunk = 256 * 1024;
	k.pass.set.inflight = 4;
}

static int
setup(void **state)
{
	size_t i;

	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vmferry-sync-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	loop_init();
	if (store_open(dir, NULL) != 0)
		return -1;
	slots_init(NULL);
	slots_set_limits(4, 4);
	job_init(NULL);
	memset(&src, 0, sizeof(src));
	memset(&k, 0, sizeof(k));
	sbuf_init(&k.saved);
	src.cbt = 1;
	src.cid = xstrdup("c1");
	for (i = 0; i < NDISKS; i++)
		src.bytes[i] = xcalloc(1, caps[i]);
	/* Disk 0: two allocated areas (one spans several chunks); disk 1: one. */
	areas(&src.alloc[0], 0, 65536);
	areas(&src.alloc[0], 1024 * 1024, 2 * 1024 * 1024 + 4096);
	areas(&src.alloc[1], 512 * 1024, 4096);
	for (i = 0; i < NDISKS; i++) {
		size_t n;

		for (n = 0; n < src.alloc[i].n; n++)
			scribble(i, src.alloc[i].a[n].start, src.alloc[i].a[n].length, 1);
	}
	/* A job whose state has rows for a pass's outcomes: preparing. */
	job = job_create(CFG_BACKUP, "r", "web01", &rule);
	assert_int_equal(fsm_dispatch(job, EV_STARTED, NULL), FSM_DONE);
	assert_int_equal(fsm_dispatch(job, BAK_EV_RUN, NULL), FSM_DONE);
	assert_int_equal(fsm_dispatch(job, EV_ADMIT, NULL), FSM_DONE);
	assert_string_equal(job_state_info(job)->id, "preparing");
	k.st.src_vm = xstrdup("vm-1");
	k.st.src_dc = xstrdup("dc0");
	k.st.ndisks = NDISKS;
	k.st.disks = xcalloc(NDISKS, sizeof(*k.st.disks));
	for (i = 0; i < NDISKS; i++) {
		k.st.disks[i].key = 2000 + (uint32_t)i;
		k.st.disks[i].capacity = caps[i];
		k.st.disks[i].src_file = xasprintf("[ds0] web01/disk%zu.vmdk", i);
	}
	pass_new();
	return 0;
}

static int
teardown(void **state)
{
	size_t i;

	sync_free(&k.pass);
	sync_state_free(&k.st);
	sbuf_free(&k.saved);
	for (i = 0; i < NDISKS; i++) {
		free(src.bytes[i]);
		free(k.base[i]);
		free(k.recorded[i]);
	}
	for (i = 0; i < src.nsnaps; i++) {
		free(src.snaps[i].moref);
		free(src.snaps[i].name);
	}
	for (i = 0; i < src.ncreated; i++)
		free(src.created[i]);
	for (i = 0; i < src.nremoved; i++)
		free(src.removed[i]);
	free(src.cid);
	free(src.since);
	free(src.refused);
	job_shutdown();
	store_close();
	slots_free();
	loop_free();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- checks ---- */

/* The sink of disk d holds the source's bytes where want says, zeros
 * elsewhere (a fresh sink is sparse). */
static void
assert_sink(size_t d, const struct area_list *want)
{
	char *path = path_of("sink", d);
	FILE *f = fopen(path, "rb");
	uint8_t *got = xcalloc(1, caps[d]), *exp = xcalloc(1, caps[d]);
	size_t n, i;

	assert_non_null(f);
	n = fread(got, 1, caps[d], f);
	fclose(f);
	assert_true(n <= caps[d]);
	for (i = 0; i < want->n; i++)
		memcpy(exp + want->a[i].start, src.bytes[d] + want->a[i].start, want->a[i].length);
	for (i = 0; i < caps[d]; i++)
		if (got[i] != exp[i])
			fail_msg("disk %zu: byte %zu of the sink is %u, the source's is %u", d, i, got[i], exp[i]);
	free(got);
	free(exp);
	free(path);
}

static uint64_t
bytes_of(const struct area_list *l)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < l->n; i++)
		n += l->a[i].length;
	return n;
}

static int
was_removed(const char *moref)
{
	size_t i;

	for (i = 0; i < src.nremoved; i++)
		if (strcmp(src.removed[i], moref) == 0)
			return 1;
	return 0;
}

static void
first_pass(void)
{
	sync_run(&k.pass, after);
	run();
	assert_true(k.done);
	assert_null(job->error);
}

/* ---- tests ---- */

/* The first pass: allocated areas only, into the sinks; the changeIds
 * recorded; its snapshot, named for kind and rule, gone at the end. */
static void
test_first_pass(void **state)
{
	struct sync_state back;
	struct rec_reader r;

	first_pass();
	assert_int_equal(src.ncreated, 1);
	assert_string_equal(src.created[0], "vmferry-backup-r-1");
	assert_true(was_removed("snap-1"));
	assert_int_equal(src.nsnaps, 0);
	assert_sink(0, &src.alloc[0]);
	assert_sink(1, &src.alloc[1]);
	assert_string_equal(k.recorded[0], "c1");
	assert_string_equal(k.recorded[1], "c1");
	assert_int_equal(k.st.bytes, bytes_of(&src.alloc[0]) + bytes_of(&src.alloc[1]));
	assert_null(k.st.snap);
	assert_int_equal(k.st.disks[0].checkpoint, 0);
	/* What was saved reads back as the state. */
	rec_reader_init(&r, (const uint8_t *)k.saved.data, k.saved.len);
	assert_int_equal(sync_state_get(&r, &back), 0);
	assert_int_equal(back.ndisks, NDISKS);
	assert_int_equal(back.bytes, k.st.bytes);
	assert_null(back.snap);
	assert_string_equal(back.disks[1].pass_cid, "c1");
	sync_state_free(&back);
}

/* The next pass from the recorded changeIds copies exactly the changes. */
static void
test_incremental(void **state)
{
	struct area_list whole0 = src.alloc[0], whole1 = src.alloc[1];
	uint64_t before;

	first_pass();
	before = k.st.bytes;
	k.base[0] = xstrdup("c1");
	k.base[1] = xstrdup("c1");
	src.since = xstrdup("c1");
	free(src.cid);
	src.cid = xstrdup("c2");
	areas(&src.changed[0], 1024 * 1024 + 8192, 12288);
	scribble(0, 1024 * 1024 + 8192, 12288, 7);
	/* Disk 1 unchanged. */
	first_pass();
	assert_string_equal(src.created[1], "vmferry-backup-r-2");
	assert_int_equal(k.st.bytes - before, 12288);
	assert_sink(0, &whole0);
	assert_sink(1, &whole1);
	assert_string_equal(k.recorded[0], "c2");
}

/* A changeId the source refuses (change tracking reset) means that disk
 * whole, never a silent partial copy. */
static void
test_cbt_reset(void **state)
{
	uint64_t before;

	first_pass();
	before = k.st.bytes;
	k.base[0] = xstrdup("c1");
	k.base[1] = xstrdup("c1");
	src.refused = xstrdup("c1");
	scribble(1, 512 * 1024, 4096, 9);
	first_pass();
	assert_int_equal(k.st.bytes - before, bytes_of(&src.alloc[0]) + bytes_of(&src.alloc[1]));
	assert_sink(0, &src.alloc[0]);
	assert_sink(1, &src.alloc[1]);
	assert_int_equal(k.st.disks[1].full, 0); /* done with it */
}

/* Leftovers of this job's engine go; names of other rules and kinds
 * (even "r-b", which starts like "r") and the user's stay. */
static void
test_leftovers(void **state)
{
	snap_add("s5", "vmferry-backup-r-5");
	snap_add("s6", "vmferry-backup-r-b-2");
	snap_add("s7", "vmferry-migration-r-3");
	snap_add("s8", "vmferry-backup-r-stun");
	snap_add("s9", "before the upgrade");
	snap_add("s10", "vmferry-backup-r-");
	first_pass();
	assert_true(was_removed("s5"));
	assert_true(was_removed("s8"));
	assert_false(was_removed("s6"));
	assert_false(was_removed("s7"));
	assert_false(was_removed("s9"));
	assert_false(was_removed("s10"));
	assert_int_equal(src.nsnaps, 4);
}

/* A pass abandoned part-way (a stop): the snapshot goes and the progress
 * is remembered; the next pass copies below that point only what changed
 * since, and above it what a first pass copies. */
static void
test_abandon_resume(void **state)
{
	const uint64_t cut = 1024 * 1024 + 65536;
	char *path = path_of("sink", 0);
	struct disk *sink;
	struct area_list want0 = src.alloc[0];
	char *err = NULL;
	int en;

	sync_prepare(&k.pass, 1, prepared);
	run();
	assert_true(k.done);
	assert_false(k.gone);
	assert_non_null(k.st.snap);
	/* Disk 0 copied below cut (as a copy checkpoints), disk 1 not at all. */
	sink = disk_open_file(path, caps[0], 1, &err, &en);
	assert_non_null(sink);
	assert_int_equal(sink->ops->put(sink, 0, src.bytes[0], 65536, &err), XFER_OK);
	assert_int_equal(sink->ops->put(sink, 1024 * 1024, src.bytes[0] + 1024 * 1024, 65536, &err), XFER_OK);
	disk_close(sink);
	free(path);
	k.st.disks[0].checkpoint = cut;
	sync_abandon(&k.pass, after);
	run();
	assert_true(k.done);
	assert_null(k.st.snap);
	assert_true(was_removed("snap-1"));
	assert_string_equal(k.st.disks[0].prev_cid, "c1");
	assert_int_equal(k.st.disks[0].prev_ckpt, cut);
	assert_null(k.st.disks[1].prev_cid);
	/* The source changes below and above the point. */
	src.since = xstrdup("c1");
	free(src.cid);
	src.cid = xstrdup("c2");
	areas(&src.changed[0], 4096, 4096);
	scribble(0, 4096, 4096, 3);
	areas(&src.changed[0], 2 * 1024 * 1024, 4096);
	scribble(0, 2 * 1024 * 1024, 4096, 3);
	sync_run(&k.pass, after);
	run();
	assert_true(k.done);
	assert_null(job->error);
	/* Below cut: the 4 KiB changed; above: the allocated rest. */
	assert_int_equal(k.pass.total, 4096 + (1024 * 1024 + 2 * 1024 * 1024 + 4096 - cut) + bytes_of(&src.alloc[1]));
	assert_sink(0, &want0);
	assert_sink(1, &src.alloc[1]);
	assert_null(k.st.disks[0].prev_cid);
}

/* A pass whose snapshot vanished, asked not to make one: it says so and
 * keeps what the pass had copied. */
static void
test_snapshot_gone(void **state)
{
	sync_prepare(&k.pass, 1, prepared);
	run();
	assert_false(k.gone);
	k.st.disks[1].checkpoint = SYNC_DISK_DONE;
	free(src.snaps[0].moref);
	free(src.snaps[0].name);
	src.nsnaps = 0;
	/* After a restart the pass is prepared again from the saved state. */
	sync_free(&k.pass);
	pass_new();
	sync_prepare(&k.pass, 0, prepared);
	run();
	assert_true(k.done);
	assert_true(k.gone);
	assert_null(k.st.snap);
	assert_string_equal(k.st.disks[1].prev_cid, "c1");
	assert_int_equal(k.st.disks[1].prev_ckpt, caps[1]);
}

/* A disk that changed size is a refusal with the reason, nothing copied. */
static void
test_size_changed(void **state)
{
	k.st.disks[1].capacity = caps[1] / 2;
	sync_run(&k.pass, after);
	run();
	assert_false(k.done);
	assert_non_null(job->error);
	assert_non_null(strstr(job->error, "source disk 1 changed size"));
	assert_string_equal(job_state_info(job)->id, "failed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cbt_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abandon_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_changed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
