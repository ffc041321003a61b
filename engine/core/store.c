/* The only file that talks to LMDB (see store.h).
 *
 * Every write is recorded in an in-memory journal as well as in the open
 * write transaction.  The journal is what makes the group commit robust:
 * when the map is full the transaction is aborted, the map grown and the
 * journal replayed; when a commit fails (disk full, I/O error) the journal
 * is kept and replayed into the next attempt, and the after-commit work
 * waits, so no side effect ever runs ahead of its persisted state. */
#include "engine/core/store.h"

#include <errno.h>
#include <event2/event.h>
#include <lmdb.h>
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

static struct {
	MDB_env *env;
	MDB_dbi dbi[STORE_NDBS];
	MDB_txn *wtxn;
	struct jentry *journal;
	size_t njournal, journal_cap;
	struct after *after;
	size_t nafter, after_cap;
	struct event *commit_ev;
	struct event *retry_ev;
	int retry_pending;
	struct store_stats stats;
	char *dir;
	char *failure;          /* why the last commit failed; NULL when it worked */
	double failing_since;   /* monotonic time of the first failure in a row */
	double failure_logged;
	uint64_t failed_attempts; /* in a row */
	store_failure_fn failure_hook;
} st;

static const char *const db_names[STORE_NDBS] = { "meta", "jobs", "log", "stats", "config" };

static void store_commit_cb(evutil_socket_t fd, short what, void *arg);

static void
store_schedule_commit(void)
{
	if (st.commit_ev != NULL && !st.retry_pending)
		event_active(st.commit_ev, EV_TIMEOUT, 1);
}

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

static void
store_grow(void)
{
	MDB_envinfo info;
	size_t size;
	char human[32];
	int rc;

	mdb_env_info(st.env, &info);
	size = info.me_mapsize * 2;
	if ((rc = mdb_env_set_mapsize(st.env, size)) != 0)
		fatal("store: cannot grow the map to %zu bytes: %s", size, mdb_strerror(rc));
	st.stats.map_grows++;
	st.stats.map_size = size;
	units_format_size(size, human, sizeof(human));
	log_info("store: map grown to %s", human);
}

/* Make sure a write transaction is open and holds the whole journal. */
static void
store_txn(void)
{
	size_t i;
	int rc;

	while (st.wtxn == NULL) {
		if ((rc = mdb_txn_begin(st.env, NULL, 0, &st.wtxn)) != 0)
			fatal("store: cannot begin a write transaction: %s", mdb_strerror(rc));
		for (i = 0; i < st.njournal; i++) {
			rc = store_apply(st.wtxn, &st.journal[i]);
			if (rc == 0)
				continue;
			mdb_txn_abort(st.wtxn);
			st.wtxn = NULL;
			if (rc != MDB_MAP_FULL)
				fatal("store: write failed: %s", mdb_strerror(rc));
			store_grow();
			break;
		}
	}
}

static void
store_record(enum jop op, enum store_db db, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct jentry *e;
	int rc;

	if (st.njournal == st.journal_cap) {
		st.journal_cap = st.journal_cap ? st.journal_cap * 2 : 64;
		st.journal = xreallocarray(st.journal, st.journal_cap, sizeof(*st.journal));
	}
	store_txn();
	e = &st.journal[st.njournal++];
	e->op = op;
	e->db = db;
	e->key = xmalloc(klen);
	memcpy(e->key, key, klen);
	e->klen = klen;
	e->val = NULL;
	e->vlen = vlen;
	if (val != NULL) {
		e->val = xmalloc(vlen);
		memcpy(e->val, val, vlen);
	}
	st.stats.writes++;
	rc = store_apply(st.wtxn, e);
	if (rc == MDB_MAP_FULL) {
		mdb_txn_abort(st.wtxn);
		st.wtxn = NULL;
		store_grow();
		store_txn();
	} else if (rc != 0) {
		fatal("store: write failed: %s", mdb_strerror(rc));
	}
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
journal_clear(void)
{
	size_t i;

	for (i = 0; i < st.njournal; i++) {
		free(st.journal[i].key);
		free(st.journal[i].val);
	}
	st.njournal = 0;
}

static void
store_run_after(void)
{
	struct after *list = st.after;
	size_t i, n = st.nafter;

	/* The callbacks may queue more work: it belongs to the next commit. */
	st.after = NULL;
	st.nafter = st.after_cap = 0;
	for (i = 0; i < n; i++)
		list[i].fn(list[i].arg);
	free(list);
}

/* A commit failed (disk full, I/O error): the journal is kept, the
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

int
store_commit(void)
{
	static const double bounds[STORE_NCOMMIT_BUCKETS] = STORE_COMMIT_BUCKETS;
	double t0;
	int rc, i;

	if (st.env == NULL)
		return -1;
	for (;;) {
		if (st.wtxn == NULL && st.njournal > 0)
			store_txn();
		if (st.wtxn == NULL)
			break;
		t0 = now_mono();
		rc = mdb_txn_commit(st.wtxn);
		st.wtxn = NULL;
		if (rc == 0) {
			double dt = now_mono() - t0;

			for (i = 0; i < STORE_NCOMMIT_BUCKETS && dt > bounds[i]; i++)
				;
			st.stats.commit_buckets[i]++;
			st.stats.commit_seconds += dt;
			st.stats.commits++;
			break;
		}
		if (rc == MDB_MAP_FULL) {
			store_grow();
			continue;
		}
		store_failed(rc);
		return -1;
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
	journal_clear();
	store_run_after();
	return 0;
}

static void
store_commit_cb(evutil_socket_t fd, short what, void *arg)
{
	store_commit();
}

static void
store_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	st.retry_pending = 0;
	store_commit();
}

void
store_after_commit(void (*fn)(void *), void *arg)
{
	if (st.nafter == st.after_cap) {
		st.after_cap = st.after_cap ? st.after_cap * 2 : 64;
		st.after = xreallocarray(st.after, st.after_cap, sizeof(*st.after));
	}
	st.after[st.nafter].fn = fn;
	st.after[st.nafter].arg = arg;
	st.nafter++;
	store_schedule_commit();
}

/* Reads use the open write transaction (so they see pending writes) or a
 * short read-only one. */
static MDB_txn *
store_read_txn(int *owned)
{
	MDB_txn *txn;
	int rc;

	if (st.njournal > 0 || st.wtxn != NULL) {
		store_txn();
		*owned = 0;
		return st.wtxn;
	}
	if ((rc = mdb_txn_begin(st.env, NULL, MDB_RDONLY, &txn)) != 0) {
		log_err("store: cannot begin a read transaction: %s", mdb_strerror(rc));
		return NULL;
	}
	*owned = 1;
	return txn;
}

int
store_get(enum store_db db, const void *key, size_t klen, void **val, size_t *vlen)
{
	MDB_val k = { klen, (void *)key }, v;
	MDB_txn *txn;
	int owned, rc, found = 0;

	if ((txn = store_read_txn(&owned)) == NULL)
		return 0;
	rc = mdb_get(txn, st.dbi[db], &k, &v);
	if (rc == 0) {
		*val = xmalloc(v.mv_size + 1);
		memcpy(*val, v.mv_data, v.mv_size);
		((char *)*val)[v.mv_size] = '\0';
		*vlen = v.mv_size;
		found = 1;
	} else if (rc != MDB_NOTFOUND) {
		log_err("store: read failed: %s", mdb_strerror(rc));
	}
	if (owned)
		mdb_txn_abort(txn);
	return found;
}

static int
has_prefix(const MDB_val *k, const void *prefix, size_t plen)
{
	return k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0;
}

int
store_scan(enum store_db db, const void *prefix, size_t plen, int reverse, size_t limit,
    store_scan_cb cb, void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t *succ = NULL;
	size_t n = 0, i;
	int owned, rc;

	if ((txn = store_read_txn(&owned)) == NULL)
		return -1;
	if ((rc = mdb_cursor_open(txn, st.dbi[db], &c)) != 0) {
		if (owned)
			mdb_txn_abort(txn);
		return -1;
	}
	if (!reverse) {
		k.mv_size = plen;
		k.mv_data = (void *)prefix;
		rc = plen ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
	} else {
		/* Start just past the prefix range: its successor key. */
		succ = xmalloc(plen ? plen : 1);
		memcpy(succ, prefix, plen);
		for (i = plen; i > 0; i--)
			if (++succ[i - 1] != 0)
				break;
		if (i == 0) {
			rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
		} else {
			k.mv_size = i;
			k.mv_data = succ;
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			rc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST);
		}
	}
	while (rc == 0 && has_prefix(&k, prefix, plen)) {
		if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0)
			break;
		if (limit && ++n >= limit)
			break;
		rc = mdb_cursor_get(c, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (owned)
		mdb_txn_abort(txn);
	free(succ);
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
	if (store_commit() != 0)
		log_err("store: closing with uncommitted writes");
	if (st.wtxn != NULL)
		mdb_txn_abort(st.wtxn);
	st.wtxn = NULL;
	journal_clear();
	free(st.journal);
	free(st.after);
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
