/* The LMDB store: the only file that talks to LMDB.  Everything persisted
 * (jobs, job logs, statistics, the last good version of each config file)
 * goes through here as opaque byte records.
 *
 * Writes join one group that is committed durably as soon as the last
 * one is: with an event loop on the store's own thread, so the loop never
 * waits for the disk; work that must not start before the writes are on
 * disk is queued with store_after_commit().  When the map fills up it
 * grows and the group is committed again, so callers never see
 * MDB_MAP_FULL. */
#ifndef VMFERRY_STORE_H
#define VMFERRY_STORE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

enum store_db {
	STORE_META,  /* format version, counters */
	STORE_JOBS,  /* one record per job */
	STORE_LOG,   /* per-job event log: key = job key + be64 sequence */
	STORE_STATS, /* per-job statistics */
	STORE_CONFIG, /* last good version of each config file: key = file name */
	STORE_INSTANT, /* instant recoveries: key = be64 id; "next": the next id */
	STORE_NDBS
};

int store_open(const char *dir, struct event_base *base);
/* Commits what is pending and closes.  Safe to call when not open. */
void store_close(void);

void store_put(enum store_db db, const void *key, size_t klen, const void *val, size_t vlen);
void store_del(enum store_db db, const void *key, size_t klen);
/* Delete every key that starts with prefix. */
void store_del_prefix(enum store_db db, const void *prefix, size_t plen);

/* Reads see every write made so far, committed or not.  store_get copies the value
 * into a malloc'd buffer (*val, *vlen); returns 1 found, 0 not found. */
int store_get(enum store_db db, const void *key, size_t klen, void **val, size_t *vlen);
/* Calls cb for each key starting with prefix, in key order (or reverse),
 * at most limit times (0 = no limit).  key/val are only valid during the
 * call.  A non-zero return from cb stops the scan. */
typedef int (*store_scan_cb)(const void *key, size_t klen, const void *val, size_t vlen, void *arg);
int store_scan(enum store_db db, const void *prefix, size_t plen, int reverse, size_t limit,
    store_scan_cb cb, void *arg);

/* Run fn(arg) once everything written so far is durable. */
void store_after_commit(void (*fn)(void *), void *arg);
/* Commit now and wait for it (shutdown, tests).  Returns 0, or -1 if the commit failed
 * (then it is retried on the loop, and after-commit work waits). */
int store_commit(void);
/* Tests: with an event loop, hand-overs wait (on) or go on (off), so that
 * a test can write and read while a batch is being committed. */
void store_test_hold(int on);

/* Counters for statistics and benchmarks. */
/* Upper bounds (seconds) of the commit latency histogram's buckets. */
#define STORE_COMMIT_BUCKETS { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }
#define STORE_NCOMMIT_BUCKETS 11

struct store_stats {
	uint64_t commits;
	/* successful commits by latency (bucket i: at most the i-th bound,
	 * not cumulative), and their seconds together */
	uint64_t commit_buckets[STORE_NCOMMIT_BUCKETS + 1];
	double commit_seconds;
	uint64_t writes;
	uint64_t map_grows;
	uint64_t commit_failures;
	size_t map_size;
};
void store_get_stats(struct store_stats *st);

/* Why commits fail now ("the state directory cannot be written: DIR:
 * No space left on device"), or NULL when the last one worked; *failing_s
 * (may be NULL) says for how long. */
const char *store_failure(double *failing_s);
/* Called after every failed commit attempt with the reason and how long
 * commits have been failing, and with (NULL, 0) once one works again. */
typedef void (*store_failure_fn)(const char *reason, double failing_s);
void store_set_failure_hook(store_failure_fn fn);

#endif
