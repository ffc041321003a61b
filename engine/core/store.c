/* The only file that talks to LMDB (see store.h).
 *
 * Writes are recorded in an in-memory journal, the pending batch; LMDB
 * sees them only when a batch is committed.  With an event loop the
 * commit runs on the store's own thread: the loop hands the pending
 * batch over (it becomes the in-flight batch), goes on while LMDB writes
 * and fdatasyncs, and runs the batch's after-commit work when the thread
 * says it is durable.  Writes made meanwhile gather in the next pending
 * batch, which is the group commit.  An fdatasync on a busy device takes
 * tens or hundreds of milliseconds; on the loop it held every socket
 * (SPEC §8: ping within 100 ms while a backup runs).
 *
 * Reads see the pending and in-flight writes: a lookup asks the journal
 * first, newest entry first, then a read-only snapshot.  Whatever part of
 * the journal the snapshot already holds is applied again on top, which
 * changes nothing, since every entry sets or removes whole records.
 *
 * When the map is full the map is grown on the loop thread (no snapshot
 * is open then, and the store's thread is idle) and the batch handed over
 * again; when a commit fails (disk full, I/O error) the batch goes back
 * in front of the pending one and is retried every second, and its
 * after-commit work waits, so no side effect ever runs ahead of its
 * persisted state. */
#include "engine/core/store.h"

#include <errno.h>
#include <event2/event.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "engine/core/log.h"
#include "engine/core/units.h"
#include "engine/core/util.h"

#define STORE_FORMAT 1
#define STORE_INITIAL_MAP (64u << 20)
#define STORE_RETRY_S 1
/* While commits keep failing, say so in the log at most this often. */
#define STORE_FAIL_LOG_S 60
/* Less free space than this after a failed write means the disk is full. */
#define STORE_FULL_BYTES (1u << 20)

enum jop { JOP_PUT, JOP_DEL, JOP_DELPREFIX };

struct jentry {
	enum jop op;
	enum store_db db;
	void *key;
	size_t klen;
	void *val;
	size_t vlen;
};

struct after {
	void (*fn)(void *);
	void *arg;
};

/* Writes not yet known durable, with the work that waits for them. */
struct batch {
	struct jentry *e;
	size_t n, cap;
	size_t per_db[STORE_NDBS];
	struct after *after;
	size_t nafter, after_cap;
};

/* How a hand-over or a commit ended. */
enum { COMMIT_DONE, COMMIT_BUSY, COMMIT_AGAIN, COMMIT_FAILED };

static struct {
	MDB_env *env;
	MDB_dbi dbi[STORE_NDBS];
	struct batch pending;   /* written since the last hand-over */
	struct batch inflight;  /* being committed; only while busy */
	int busy;
	MDB_txn *rtxn;          /* the read snapshot, reset between reads */
	int rdepth;             /* reads in progress (a scan's callback may read) */
	struct event *commit_ev;
	struct event *retry_ev;
	struct event *done_ev;
	int retry_pending;
	struct store_stats stats;
	char *dir;
	char *failure;          /* why the last commit failed; NULL when it worked */
	double failing_since;   /* monotonic time of the first failure in a row */
	double failure_logged;
	uint64_t failed_attempts; /* in a row */
	store_failure_fn failure_hook;
	/* the store's thread; lock guards go, done, quit, hold, thread_rc,
	 * thread_dt */
	pthread_t thread;
	int threaded;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int go, done, quit, hold;
	int thread_rc;
	double thread_dt;
} st;

static const char *const db_names[STORE_NDBS] = { "meta", "jobs", "log", "stats", "config", "instant" };

/* ---- the journal ------------------------------------------------------ */

static void
batch_add(struct batch *b, const struct jentry *e)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->e = xreallocarray(b->e, b->cap, sizeof(*b->e));
	}
	b->e[b->n++] = *e;
	b->per_db[e->db]++;
}

static void
batch_add_after(struct batch *b, void (*fn)(void *), void *arg)
{
	if (b->nafter == b->after_cap) {
		b->after_cap = b->after_cap ? b->after_cap * 2 : 64;
		b->after = xreallocarray(b->after, b->after_cap, sizeof(*b->after));
	}
	b->after[b->nafter].fn = fn;
	b->after[b->nafter].arg = arg;
	b->nafter++;
}

/* Frees the entries; the after-commit list is taken by the caller. */
static void
batch_clear(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		free(b->e[i].key);
		free(b->e[i].val);
	}
	b->n = 0;
	memset(b->per_db, 0, sizeof(b->per_db));
}

static void
batch_free(struct batch *b)
{
	batch_clear(b);
	free(b->e);
	free(b->after);
	memset(b, 0, sizeof(*b));
}

/* A batch that was not committed goes back in front of the pending one:
 * its writes are older, and so is the work that waits for them. */
static void
batch_requeue(void)
{
	struct batch *in = &st.inflight, *p = &st.pending;
	size_t i;

	for (i = 0; i < p->n; i++)
		batch_add(in, &p->e[i]);
	for (i = 0; i < p->nafter; i++)
		batch_add_after(in, p->after[i].fn, p->after[i].arg);
	free(p->e);
	free(p->after);
	*p = *in;
	memset(in, 0, sizeof(*in));
}

/* ---- committing (on any thread) --------------------------------------- */

static int
store_apply(MDB_txn *txn, const struct jentry *e)
{
	MDB_val k = { e->klen, e->key }, v = { e->vlen, e->val };
	MDB_cursor *c;
	int rc;

	switch (e->op) {
	case JOP_PUT:
		return mdb_put(txn, st.dbi[e->db], &k, &v, 0);
	case JOP_DEL:
		rc = mdb_del(txn, st.dbi[e->db], &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	case JOP_DELPREFIX:
		if ((rc = mdb_cursor_open(txn, st.dbi[e->db], &c)) != 0)
			return rc;
		/* LMDB refuses zero-length keys: an empty prefix starts at the first. */
		rc = e->klen ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
		while (rc == 0 && k.mv_size >= e->klen && memcmp(k.mv_data, e->key, e->klen) == 0) {
			if ((rc = mdb_cursor_del(c, 0)) != 0)
				break;
			rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
			if (rc == EINVAL || rc == MDB_NOTFOUND)
				rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(c);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	return EINVAL;
}

/* One write transaction with all of b's writes, committed durably.
 * Touches only b and the environment: it runs on the store's thread. */
static int
commit_batch(const struct batch *b, double *dt)
{
	MDB_txn *txn;
	double t0 = now_mono();
	size_t i;
	int rc;

	if ((rc = mdb_txn_begin(st.env, NULL, 0, &txn)) != 0)
		return rc;
	for (i = 0; i < b->n; i++)
		if ((rc = store_apply(txn, &b->e[i])) != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
	rc = mdb_txn_commit(txn);
	*dt = now_mono() - t0;
	return rc;
}

static void *
store_thread_main(void *unused)
{
	double dt = 0;
	int rc;

	pthread_mutex_lock(&st.lock);
	for (;;) {
		while ((!st.go || st.hold) && !st.quit)
			pthread_cond_wait(&st.wake, &st.lock);
		if (st.quit)
			break;
		st.go = 0;
		pthread_mutex_unlock(&st.lock);
		rc = commit_batch(&st.inflight, &dt);
		pthread_mutex_lock(&st.lock);
		st.thread_rc = rc;
		st.thread_dt = dt;
		st.done = 1;
		pthread_cond_broadcast(&st.wake);
		event_active(st.done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&st.lock);
	return NULL;
}

/* ---- committing (the loop's side) ------------------------------------- */

static void store_commit_cb(evutil_socket_t fd, short what, void *arg);

static void
store_schedule_commit(void)
{
	if (st.commit_ev != NULL && !st.retry_pending)
		event_active(st.commit_ev, EV_TIMEOUT, 1);
}

static void
store_record(enum jop op, enum store_db db, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct jentry e;

	e.op = op;
	e.db = db;
	e.key = xmalloc(klen ? klen : 1);
	memcpy(e.key, key, klen);
	e.klen = klen;
	e.val = NULL;
	e.vlen = vlen;
	if (val != NULL) {
		e.val = xmalloc(vlen ? vlen : 1);
		memcpy(e.val, val, vlen);
	}
	batch_add(&st.pending, &e);
	st.stats.writes++;
	store_schedule_commit();
}

void
store_put(enum store_db db, const void *key, size_t klen, const void *val, size_t vlen)
{
	store_record(JOP_PUT, db, key, klen, val, vlen);
}

void
store_del(enum store_db db, const void *key, size_t klen)
{
	store_record(JOP_DEL, db, key, klen, NULL, 0);
}

void
store_del_prefix(enum store_db db, const void *prefix, size_t plen)
{
	store_record(JOP_DELPREFIX, db, prefix, plen, NULL, 0);
}

static void
store_run_after(struct after *list, size_t n)
{
	size_t i;

	/* The callbacks may queue more work: it belongs to the next batch. */
	for (i = 0; i < n; i++)
		list[i].fn(list[i].arg);
	free(list);
}

static void
store_grow(void)
{
	MDB_envinfo info;
	size_t size;
	char human[32];
	int rc;

	/* No snapshot may be open while the map moves. */
	if (st.rtxn != NULL) {
		mdb_txn_abort(st.rtxn);
		st.rtxn = NULL;
	}
	mdb_env_info(st.env, &info);
	size = info.me_mapsize * 2;
	if ((rc = mdb_env_set_mapsize(st.env, size)) != 0)
		fatal("store: cannot grow the map to %zu bytes: %s", size, mdb_strerror(rc));
	st.stats.map_grows++;
	st.stats.map_size = size;
	units_format_size(size, human, sizeof(human));
	log_info("store: map grown to %s", human);
}

/* A commit failed (disk full, I/O error): the writes are kept, the
 * commit retried every second, the after-commit work waits.  The log says
 * so at the first failure and then once a minute, not every second. */
static void
store_failed(int rc)
{
	double now = now_mono();
	struct statvfs sv;

	/* LMDB reports a write cut short as EIO; a full disk is what cuts it. */
	if (rc == EIO && statvfs(st.dir, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < STORE_FULL_BYTES)
		rc = ENOSPC;
	st.stats.commit_failures++;
	st.failed_attempts++;
	if (st.failure == NULL) {
		st.failing_since = now;
		st.failure_logged = now;
		log_err("store: cannot commit to %s: %s; retrying every %d s, nothing new starts meanwhile", st.dir,
		    mdb_strerror(rc), STORE_RETRY_S);
	} else if (now - st.failure_logged >= STORE_FAIL_LOG_S) {
		st.failure_logged = now;
		log_err("store: commits to %s still failing after %.0f s: %s", st.dir, now - st.failing_since,
		    mdb_strerror(rc));
	}
	free(st.failure);
	st.failure = xasprintf("the state directory cannot be written: %s: %s", st.dir, mdb_strerror(rc));
	if (st.retry_ev != NULL && !st.retry_pending) {
		struct timeval tv = { STORE_RETRY_S, 0 };

		st.retry_pending = 1;
		evtimer_add(st.retry_ev, &tv);
	}
	if (st.failure_hook != NULL)
		st.failure_hook(st.failure, now - st.failing_since);
}

/* The in-flight batch's commit ended with rc after dt seconds. */
static int
store_finish(int rc, double dt)
{
	static const double bounds[STORE_NCOMMIT_BUCKETS] = STORE_COMMIT_BUCKETS;
	struct after *list;
	size_t n;
	int i;

	st.busy = 0;
	if (rc == MDB_MAP_FULL) {
		batch_requeue();
		store_grow();
		return COMMIT_AGAIN;
	}
	if (rc != 0) {
		batch_requeue();
		store_failed(rc);
		return COMMIT_FAILED;
	}
	if (st.inflight.n > 0) {
		for (i = 0; i < STORE_NCOMMIT_BUCKETS && dt > bounds[i]; i++)
			;
		st.stats.commit_buckets[i]++;
		st.stats.commit_seconds += dt;
		st.stats.commits++;
	}
	if (st.failure != NULL) {
		log_info("store: commits to %s succeed again after %.0f s and %llu failed attempts", st.dir,
		    now_mono() - st.failing_since, (unsigned long long)st.failed_attempts);
		free(st.failure);
		st.failure = NULL;
		st.failed_attempts = 0;
		if (st.failure_hook != NULL)
			st.failure_hook(NULL, 0);
	}
	batch_clear(&st.inflight);
	list = st.inflight.after;
	n = st.inflight.nafter;
	st.inflight.after = NULL;
	st.inflight.nafter = st.inflight.after_cap = 0;
	store_run_after(list, n);
	return COMMIT_DONE;
}

/* The pending batch becomes the in-flight one and is committed: on the
 * store's thread (COMMIT_BUSY) or here and now. */
static int
store_submit(void)
{
	struct batch spare = st.inflight; /* empty: its arrays serve the next batch */
	double dt = 0;

	st.inflight = st.pending;
	st.pending = spare;
	st.busy = 1;
	if (st.inflight.n == 0)
		return store_finish(0, 0);
	if (!st.threaded)
		return store_finish(commit_batch(&st.inflight, &dt), dt);
	pthread_mutex_lock(&st.lock);
	st.go = 1;
	pthread_cond_signal(&st.wake);
	pthread_mutex_unlock(&st.lock);
	return COMMIT_BUSY;
}

/* The store's thread has finished the in-flight batch: its result, once. */
static int
store_take_result(int wait, int *rc, double *dt)
{
	int got;

	pthread_mutex_lock(&st.lock);
	while (wait && !st.done)
		pthread_cond_wait(&st.wake, &st.lock);
	got = st.done;
	st.done = 0;
	*rc = st.thread_rc;
	*dt = st.thread_dt;
	pthread_mutex_unlock(&st.lock);
	return got;
}

static void
store_pending_work(void)
{
	if (st.pending.n > 0 || st.pending.nafter > 0)
		store_schedule_commit();
}

static void
store_done_cb(evutil_socket_t fd, short what, void *arg)
{
	double dt;
	int rc;

	if (!st.busy || !store_take_result(0, &rc, &dt))
		return;
	store_finish(rc, dt);
	store_pending_work();
}

static void
store_commit_cb(evutil_socket_t fd, short what, void *arg)
{
	/* A busy thread: the batch is handed over when it is done. */
	if (st.busy || st.env == NULL)
		return;
	if (store_submit() == COMMIT_AGAIN)
		store_pending_work();
}

static void
store_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	st.retry_pending = 0;
	store_commit_cb(fd, what, arg);
}

int
store_commit(void)
{
	double dt;
	int rc, r;

	if (st.env == NULL)
		return -1;
	if (st.busy) {
		store_take_result(1, &rc, &dt);
		if (store_finish(rc, dt) == COMMIT_FAILED)
			return -1;
	}
	do {
		r = store_submit();
		if (r == COMMIT_BUSY) {
			store_take_result(1, &rc, &dt);
			r = store_finish(rc, dt);
		}
	} while (r == COMMIT_AGAIN);
	store_pending_work();
	return r == COMMIT_DONE ? 0 : -1;
}

void
store_after_commit(void (*fn)(void *), void *arg)
{
	batch_add_after(&st.pending, fn, arg);
	store_schedule_commit();
}

void
store_test_hold(int on)
{
	if (!st.threaded)
		return;
	pthread_mutex_lock(&st.lock);
	st.hold = on;
	pthread_cond_broadcast(&st.wake);
	pthread_mutex_unlock(&st.lock);
}

/* ---- reading ---------------------------------------------------------- */

/* The snapshot for a read; nested reads share it. */
static MDB_txn *
store_read_begin(void)
{
	int rc;

	if (st.rdepth > 0) {
		st.rdepth++;
		return st.rtxn;
	}
	rc = st.rtxn == NULL ? mdb_txn_begin(st.env, NULL, MDB_RDONLY, &st.rtxn) : mdb_txn_renew(st.rtxn);
	if (rc != 0) {
		log_err("store: cannot begin a read transaction: %s", mdb_strerror(rc));
		if (st.rtxn != NULL)
			mdb_txn_abort(st.rtxn);
		st.rtxn = NULL;
		return NULL;
	}
	st.rdepth = 1;
	return st.rtxn;
}

static void
store_read_end(void)
{
	if (--st.rdepth == 0)
		mdb_txn_reset(st.rtxn);
}

static int
has_prefix(const void *key, size_t klen, const void *prefix, size_t plen)
{
	return klen >= plen && memcmp(key, prefix, plen) == 0;
}

/* LMDB's default order: bytes, then the shorter key first. */
static int
key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : (alen < blen ? -1 : alen > blen);
}

/* Does entry e decide the record at key (set it, or remove it)? */
static int
entry_covers(const struct jentry *e, enum store_db db, const void *key, size_t klen)
{
	if (e->db != db)
		return 0;
	if (e->op == JOP_DELPREFIX)
		return has_prefix(key, klen, e->key, e->klen);
	return e->klen == klen && memcmp(e->key, key, klen) == 0;
}

/* The newest write not yet committed that decides key, or NULL. */
static const struct jentry *
journal_find(enum store_db db, const void *key, size_t klen)
{
	const struct batch *b[2] = { &st.pending, &st.inflight };
	size_t i, j;

	for (i = 0; i < 2; i++) {
		if (b[i]->per_db[db] == 0)
			continue;
		for (j = b[i]->n; j > 0; j--)
			if (entry_covers(&b[i]->e[j - 1], db, key, klen))
				return &b[i]->e[j - 1];
	}
	return NULL;
}

static void
copy_out(const void *v, size_t n, void **val, size_t *vlen)
{
	*val = xmalloc(n + 1);
	memcpy(*val, v, n);
	((char *)*val)[n] = '\0';
	*vlen = n;
}

int
store_get(enum store_db db, const void *key, size_t klen, void **val, size_t *vlen)
{
	const struct jentry *e = journal_find(db, key, klen);
	MDB_val k = { klen, (void *)key }, v;
	MDB_txn *txn;
	int rc, found = 0;

	if (e != NULL) {
		if (e->op != JOP_PUT)
			return 0;
		copy_out(e->val, e->vlen, val, vlen);
		return 1;
	}
	if (st.env == NULL || (txn = store_read_begin()) == NULL)
		return 0;
	rc = mdb_get(txn, st.dbi[db], &k, &v);
	if (rc == 0) {
		copy_out(v.mv_data, v.mv_size, val, vlen);
		found = 1;
	} else if (rc != MDB_NOTFOUND) {
		log_err("store: read failed: %s", mdb_strerror(rc));
	}
	store_read_end();
	return found;
}

/* The journal's say in one scan: the entries that may touch keys with the
 * prefix (oldest first), and of them the records it sets, in key order. */
struct scan_journal {
	struct jentry *rel;
	size_t nrel;
	const struct jentry **put;
	size_t nput;
};

static int
put_order(const void *a, const void *b)
{
	const struct jentry *x = *(const struct jentry *const *)a, *y = *(const struct jentry *const *)b;

	return key_cmp(x->key, x->klen, y->key, y->klen);
}

/* The newest relevant entry that decides key. */
static const struct jentry *
scan_journal_find(const struct scan_journal *sj, enum store_db db, const void *key, size_t klen)
{
	size_t i;

	for (i = sj->nrel; i > 0; i--)
		if (entry_covers(&sj->rel[i - 1], db, key, klen))
			return &sj->rel[i - 1];
	return NULL;
}

/* The entries are copied (their keys and values are not): a scan's
 * callback may write, which may move the journal's arrays. */
static void
scan_journal_init(struct scan_journal *sj, enum store_db db, const void *prefix, size_t plen)
{
	const struct batch *b[2] = { &st.inflight, &st.pending };
	const struct jentry *e;
	size_t i, j;

	memset(sj, 0, sizeof(*sj));
	for (i = 0; i < 2; i++) {
		if (b[i]->per_db[db] == 0)
			continue;
		for (j = 0; j < b[i]->n; j++) {
			e = &b[i]->e[j];
			if (e->db != db)
				continue;
			if (!has_prefix(e->key, e->klen, prefix, plen) &&
			    !(e->op == JOP_DELPREFIX && has_prefix(prefix, plen, e->key, e->klen)))
				continue;
			if (sj->nrel % 64 == 0)
				sj->rel = xreallocarray(sj->rel, sj->nrel + 64, sizeof(*sj->rel));
			sj->rel[sj->nrel++] = *e;
		}
	}
	for (i = 0; i < sj->nrel; i++) {
		e = &sj->rel[i];
		if (e->op != JOP_PUT || scan_journal_find(sj, db, e->key, e->klen) != e)
			continue;
		if (sj->nput % 64 == 0)
			sj->put = xreallocarray(sj->put, sj->nput + 64, sizeof(*sj->put));
		sj->put[sj->nput++] = e;
	}
	if (sj->nput > 1)
		qsort(sj->put, sj->nput, sizeof(*sj->put), put_order);
}

/* Position c on the first key of the prefix's range in scan order. */
static int
scan_first(MDB_cursor *c, const void *prefix, size_t plen, int reverse, MDB_val *k, MDB_val *v)
{
	uint8_t *succ;
	size_t i;
	int rc;

	if (!reverse) {
		k->mv_size = plen;
		k->mv_data = (void *)prefix;
		return plen ? mdb_cursor_get(c, k, v, MDB_SET_RANGE) : mdb_cursor_get(c, k, v, MDB_FIRST);
	}
	/* Start just past the prefix range: its successor key. */
	succ = xmalloc(plen ? plen : 1);
	memcpy(succ, prefix, plen);
	for (i = plen; i > 0; i--)
		if (++succ[i - 1] != 0)
			break;
	if (i == 0) {
		rc = mdb_cursor_get(c, k, v, MDB_LAST);
	} else {
		k->mv_size = i;
		k->mv_data = succ;
		rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
		rc = rc == 0 ? mdb_cursor_get(c, k, v, MDB_PREV) : mdb_cursor_get(c, k, v, MDB_LAST);
	}
	free(succ);
	return rc;
}

int
store_scan(enum store_db db, const void *prefix, size_t plen, int reverse, size_t limit,
    store_scan_cb cb, void *arg)
{
	struct scan_journal sj;
	const struct jentry *e;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	size_t n = 0, next = 0;
	int rc, have_db, cmp, stop = 0;

	if (st.env == NULL || (txn = store_read_begin()) == NULL)
		return -1;
	if (mdb_cursor_open(txn, st.dbi[db], &c) != 0) {
		store_read_end();
		return -1;
	}
	scan_journal_init(&sj, db, prefix, plen);
	rc = scan_first(c, prefix, plen, reverse, &k, &v);
	/* Merge the snapshot's records with those the journal sets. */
	while (!stop) {
		have_db = rc == 0 && has_prefix(k.mv_data, k.mv_size, prefix, plen);
		e = next < sj.nput ? sj.put[reverse ? sj.nput - 1 - next : next] : NULL;
		if (!have_db && e == NULL)
			break;
		if (have_db && e != NULL)
			cmp = key_cmp(e->key, e->klen, k.mv_data, k.mv_size) * (reverse ? -1 : 1);
		else
			cmp = e != NULL ? -1 : 1;
		if (cmp <= 0) {
			next++;
			stop = cb(e->key, e->klen, e->val, e->vlen, arg) != 0 || (limit && ++n >= limit);
		} else if (scan_journal_find(&sj, db, k.mv_data, k.mv_size) == NULL) {
			stop = cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0 || (limit && ++n >= limit);
		}
		if (cmp >= 0 && have_db)
			rc = mdb_cursor_get(c, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	mdb_cursor_close(c);
	store_read_end();
	free(sj.rel);
	free(sj.put);
	return 0;
}

/* 64 MiB, or VMFERRY_STORE_INITIAL_MAP bytes (at least 64 KiB): a knob for
 * tests that prove the map grows.  An existing store's map is never made
 * smaller than its data by this (LMDB keeps at least the used size). */
static size_t
store_initial_map(void)
{
	const char *v = getenv("VMFERRY_STORE_INITIAL_MAP");
	char *end;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return STORE_INITIAL_MAP;
	n = strtoull(v, &end, 10);
	if (*end != '\0' || n < 65536) {
		log_warn("store: VMFERRY_STORE_INITIAL_MAP=%s is not a byte count of at least 65536; using %u MiB", v,
		    STORE_INITIAL_MAP >> 20);
		return STORE_INITIAL_MAP;
	}
	return (size_t)n;
}

int
store_open(const char *dir, struct event_base *base)
{
	MDB_txn *txn;
	MDB_envinfo info;
	int rc, i, dead = 0;
	uint8_t ver[4];
	void *val;
	size_t vlen;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_err("store: cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	free(st.dir);
	st.dir = xstrdup(dir);
	if ((rc = mdb_env_create(&st.env)) != 0)
		goto fail;
	mdb_env_set_maxdbs(st.env, STORE_NDBS);
	mdb_env_set_mapsize(st.env, store_initial_map());
	if ((rc = mdb_env_open(st.env, dir, MDB_NOTLS, 0600)) != 0)
		goto fail;
	/* Readers left behind by a crashed process would pin old pages. */
	mdb_reader_check(st.env, &dead);
	if (dead)
		log_info("store: cleared %d stale reader slots", dead);
	if ((rc = mdb_txn_begin(st.env, NULL, 0, &txn)) != 0)
		goto fail;
	for (i = 0; i < STORE_NDBS; i++)
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &st.dbi[i])) != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	mdb_env_info(st.env, &info);
	st.stats.map_size = info.me_mapsize;

	if (store_get(STORE_META, "format", 6, &val, &vlen)) {
		uint32_t f = vlen == 4 ? get_be32(val) : 0;

		free(val);
		if (f != STORE_FORMAT) {
			log_err("store: %s has format %u, this vmferryd reads format %u", dir, f, STORE_FORMAT);
			if (st.rtxn != NULL)
				mdb_txn_abort(st.rtxn);
			st.rtxn = NULL;
			mdb_env_close(st.env);
			st.env = NULL;
			free(st.dir);
			st.dir = NULL;
			return -1;
		}
	} else {
		put_be32(ver, STORE_FORMAT);
		store_put(STORE_META, "format", 6, ver, 4);
	}
	if (base != NULL) {
		st.commit_ev = event_new(base, -1, 0, store_commit_cb, NULL);
		st.retry_ev = evtimer_new(base, store_retry_cb, NULL);
		st.done_ev = event_new(base, -1, 0, store_done_cb, NULL);
		pthread_mutex_init(&st.lock, NULL);
		pthread_cond_init(&st.wake, NULL);
		if ((errno = pthread_create(&st.thread, NULL, store_thread_main, NULL)) != 0)
			fatal("store: cannot start the store's thread: %s", strerror(errno));
		st.threaded = 1;
	}
	return store_commit() == 0 ? 0 : -1;
fail:
	log_err("store: cannot open %s: %s", dir, mdb_strerror(rc));
	if (st.env != NULL)
		mdb_env_close(st.env);
	st.env = NULL;
	free(st.dir);
	st.dir = NULL;
	return -1;
}

void
store_close(void)
{
	if (st.env == NULL)
		return;
	store_test_hold(0);
	if (store_commit() != 0)
		log_err("store: closing with uncommitted writes");
	if (st.threaded) {
		pthread_mutex_lock(&st.lock);
		st.quit = 1;
		pthread_cond_broadcast(&st.wake);
		pthread_mutex_unlock(&st.lock);
		pthread_join(st.thread, NULL);
		pthread_mutex_destroy(&st.lock);
		pthread_cond_destroy(&st.wake);
	}
	if (st.rtxn != NULL)
		mdb_txn_abort(st.rtxn);
	batch_free(&st.pending);
	batch_free(&st.inflight);
	if (st.done_ev != NULL)
		event_free(st.done_ev);
	if (st.commit_ev != NULL)
		event_free(st.commit_ev);
	if (st.retry_ev != NULL)
		event_free(st.retry_ev);
	mdb_env_close(st.env);
	free(st.dir);
	free(st.failure);
	memset(&st, 0, sizeof(st));
}

void
store_get_stats(struct store_stats *out)
{
	*out = st.stats;
}

const char *
store_failure(double *failing_s)
{
	if (failing_s != NULL)
		*failing_s = st.failure != NULL ? now_mono() - st.failing_since : 0;
	return st.failure;
}

void
store_set_failure_hook(store_failure_fn fn)
{
	st.failure_hook = fn;
}
