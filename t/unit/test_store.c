/* Unit tests for engine/core/store.c: the LMDB group commit without an event
 * loop (store_open(dir, NULL), commits by store_commit()).  Each test gets
 * a fresh store in a mkdtemp directory. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "engine/core/log.h"
#include "engine/core/store.h"
#include "engine/core/util.h"


#define MIB (1024u * 1024u)

static char dir[64];

/* ---- helpers ---------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vmferry-store-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	return store_open(dir, NULL);
}

static int
teardown(void **state)
{
	store_close();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void
reopen(void)
{
	store_close();
	assert_int_equal(store_open(dir, NULL), 0);
}

static void
put_s(enum store_db db, const char *k, const char *v)
{
	store_put(db, k, strlen(k), v, strlen(v));
}

/* The value of k as a string, or NULL (caller frees). */
static char *
get_s(enum store_db db, const void *k, size_t klen)
{
	void *v;
	size_t vlen;
	char *s;

	if (!store_get(db, k, klen, &v, &vlen))
		return NULL;
	s = xstrndup(v, vlen);
	free(v);
	return s;
}

static void
assert_value(enum store_db db, const char *k, const char *want)
{
	char *got = get_s(db, k, strlen(k));

	if (want == NULL) {
		if (got != NULL)
			fail_msg("key \"%s\": expected absent, found \"%s\"", k, got);
		return;
	}
	if (got == NULL)
		fail_msg("key \"%s\": expected \"%s\", not found", k, want);
	assert_string_equal(got, want);
	free(got);
}

/* Scan results, printable: keys joined by ',' with bytes >= 0x7f or < 0x20 as \xNN. */
struct scan_out {
	char buf[4096];
	int n;
	int stop_after;
};

static int
scan_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct scan_out *o = arg;
	size_t i, l = strlen(o->buf);
	const unsigned char *k = key;

	if (o->n > 0)
		l += snprintf(o->buf + l, sizeof(o->buf) - l, ",");
	for (i = 0; i < klen; i++) {
		if (k[i] < 0x20 || k[i] >= 0x7f)
			l += snprintf(o->buf + l, sizeof(o->buf) - l, "\\x%02x", k[i]);
		else
			l += snprintf(o->buf + l, sizeof(o->buf) - l, "%c", k[i]);
	}
	o->n++;
	return o->stop_after > 0 && o->n >= o->stop_after;
}

static const char *
scan_str(struct scan_out *o, const void *prefix, size_t plen, int reverse, size_t limit)
{
	int stop = o->stop_after;

	memset(o, 0, sizeof(*o));
	o->stop_after = stop;
	assert_int_equal(store_scan(STORE_LOG, prefix, plen, reverse, limit, scan_cb, o), 0);
	return o->buf;
}

/* Keys with awkward bytes: 0x00 and 0xff inside and at the end. */
static const struct {
	const char *k;
	size_t len;
} tricky[] = {
	{ "a", 1 },
	{ "ab", 2 },
	{ "ab\x00", 3 },
	{ "ab\x01", 3 },
	{ "abc", 3 },
	{ "ab\xff", 3 },
	{ "ab\xff\x00", 4 },
	{ "ab\xff\xff", 4 },
	{ "ac", 2 },
	{ "b", 1 },
	{ "\xff", 1 },
	{ "\xff\xff", 2 },
	{ "\xff\xff\x01", 3 },
};

static void
put_tricky(void)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(tricky); i++)
		store_put(STORE_LOG, tricky[i].k, tricky[i].len, "v", 1);
}

/* A value that tells where it belongs: byte j of value i. */
static void
fill(uint8_t *buf, size_t n, unsigned i)
{
	size_t j;

	for (j = 0; j < n; j++)
		buf[j] = (uint8_t)(i * 131u + j * 7u + (j >> 12));
}

static void
check_big(unsigned i, size_t n, uint8_t *expect)
{
	char key[32];
	void *v;
	size_t vlen;

	snprintf(key, sizeof(key), "big/%05u", i);
	if (!store_get(STORE_JOBS, key, strlen(key), &v, &vlen))
		fail_msg("%s lost", key);
	assert_int_equal(vlen, n);
	fill(expect, n, i);
	if (memcmp(v, expect, n) != 0)
		fail_msg("%s has the wrong content", key);
	free(v);
}

/* ---- tests ------------------------------------------------------------ */

static void
test_put_get_del(void **unused)
{
	assert_value(STORE_JOBS, "k1", NULL);
	put_s(STORE_JOBS, "k1", "one");
	/* reads see the pending group */
	assert_value(STORE_JOBS, "k1", "one");
	assert_int_equal(store_commit(), 0);
	assert_value(STORE_JOBS, "k1", "one");

	put_s(STORE_JOBS, "k1", "uno");
	assert_value(STORE_JOBS, "k1", "uno");
	store_del(STORE_JOBS, "k1", 2);
	assert_value(STORE_JOBS, "k1", NULL);
	/* deleting what is not there is fine */
	store_del(STORE_JOBS, "nope", 4);
	assert_int_equal(store_commit(), 0);
	assert_value(STORE_JOBS, "k1", NULL);

	/* binary values keep their length, NULs included */
	store_put(STORE_JOBS, "bin", 3, "\x00\x01\x00", 3);
	{
		void *v;
		size_t vlen;

		assert_int_equal(store_get(STORE_JOBS, "bin", 3, &v, &vlen), 1);
		assert_int_equal(vlen, 3);
		assert_memory_equal(v, "\x00\x01\x00", 3);
		free(v);
	}
	/* an empty value is a value */
	store_put(STORE_JOBS, "empty", 5, "", 0);
	assert_int_equal(store_commit(), 0);
	{
		void *v;
		size_t vlen = 99;

		assert_int_equal(store_get(STORE_JOBS, "empty", 5, &v, &vlen), 1);
		assert_int_equal(vlen, 0);
		free(v);
	}
}

static void
test_databases_are_separate(void **unused)
{
	put_s(STORE_JOBS, "same", "jobs");
	put_s(STORE_STATS, "same", "stats");
	assert_int_equal(store_commit(), 0);
	assert_value(STORE_JOBS, "same", "jobs");
	assert_value(STORE_STATS, "same", "stats");
	assert_value(STORE_LOG, "same", NULL);
	store_del(STORE_JOBS, "same", 4);
	assert_int_equal(store_commit(), 0);
	assert_value(STORE_STATS, "same", "stats");
}

static char order[256];

static void
note(void *arg)
{
	size_t n = strlen(order);

	snprintf(order + n, sizeof(order) - n, "%s", (const char *)arg);
}

static void
note_and_queue(void *arg)
{
	note(arg);
	/* work queued by after-commit work waits for the next commit */
	store_after_commit(note, "late;");
}

static struct store_stats stats_seen;

static void
note_stats(void *arg)
{
	store_get_stats(&stats_seen);
	note(arg);
}

static void
test_after_commit_runs_on_commit_in_order(void **unused)
{
	struct store_stats before;

	order[0] = '\0';
	put_s(STORE_JOBS, "x", "1");
	store_get_stats(&before);
	store_after_commit(note_stats, "1;");
	store_after_commit(note_and_queue, "2;");
	store_after_commit(note, "3;");
	put_s(STORE_JOBS, "y", "2");
	/* without a loop nothing runs by itself */
	assert_string_equal(order, "");
	assert_int_equal(store_commit(), 0);
	assert_string_equal(order, "1;2;3;");
	/* the first callback ran after the commit, not before */
	assert_int_equal(stats_seen.commits, before.commits + 1);
	assert_int_equal(store_commit(), 0);
	assert_string_equal(order, "1;2;3;late;");
	assert_int_equal(store_commit(), 0);
	assert_string_equal(order, "1;2;3;late;");
}

/* With an event loop the commit runs on the store's thread.  While a batch
 * is being committed (held there by the test) the loop writes and reads
 * on: reads see the batch in flight and the writes made since, and no
 * after-commit work runs before its writes are durable. */
static void
test_loop_commit_off_thread(void **unused)
{
	struct event_base *base;
	struct store_stats s0, s1;
	struct scan_out o = { .stop_after = 0 };
	int turns;

	store_close();
	assert_int_equal(evthread_use_pthreads(), 0);
	base = event_base_new();
	assert_non_null(base);
	assert_int_equal(store_open(dir, base), 0);
	put_s(STORE_JOBS, "old", "0");
	store_put(STORE_LOG, "p/0", 3, "v", 1);
	assert_int_equal(store_commit(), 0);

	order[0] = '\0';
	store_test_hold(1);
	put_s(STORE_JOBS, "a", "1");
	put_s(STORE_JOBS, "b", "1");
	store_put(STORE_LOG, "p/1", 3, "v", 1);
	store_put(STORE_LOG, "p/2", 3, "v", 1);
	store_put(STORE_LOG, "p/3", 3, "v", 1);
	store_after_commit(note, "1;");
	store_get_stats(&s0);
	/* the loop hands the batch over and goes on */
	assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
	put_s(STORE_JOBS, "b", "2");
	store_del(STORE_JOBS, "a", 1);
	store_del(STORE_JOBS, "old", 3);
	store_del_prefix(STORE_LOG, "p/2", 3);
	store_put(STORE_LOG, "p/4", 3, "v", 1);
	store_del(STORE_LOG, "p/0", 3);
	store_after_commit(note, "2;");
	for (turns = 0; turns < 5; turns++)
		assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
	assert_string_equal(order, "");
	store_get_stats(&s1);
	assert_int_equal(s1.commits, s0.commits);
	assert_value(STORE_JOBS, "a", NULL);
	assert_value(STORE_JOBS, "b", "2");
	assert_value(STORE_JOBS, "old", NULL);
	assert_string_equal(scan_str(&o, "p/", 2, 0, 0), "p/1,p/3,p/4");
	assert_string_equal(scan_str(&o, "p/", 2, 1, 0), "p/4,p/3,p/1");
	assert_string_equal(scan_str(&o, "p/", 2, 1, 2), "p/4,p/3");
	assert_string_equal(scan_str(&o, "", 0, 0, 0), "p/1,p/3,p/4");

	store_test_hold(0);
	/* the thread wakes the loop; nothing else is on it: poll (10 s at most) */
	for (turns = 0; turns < 10000 && strcmp(order, "1;2;") != 0; turns++) {
		assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
		usleep(1000);
	}
	assert_string_equal(order, "1;2;");
	store_get_stats(&s1);
	assert_int_equal(s1.commits, s0.commits + 2);

	/* durable: another process's view, without the loop */
	store_close();
	event_base_free(base);
	assert_int_equal(store_open(dir, NULL), 0);
	assert_value(STORE_JOBS, "a", NULL);
	assert_value(STORE_JOBS, "b", "2");
	assert_value(STORE_JOBS, "old", NULL);
	assert_string_equal(scan_str(&o, "p/", 2, 0, 0), "p/1,p/3,p/4");
}

static void
test_survives_reopen(void **unused)
{
	put_s(STORE_JOBS, "kept", "yes");
	put_s(STORE_STATS, "s", "stat");
	assert_int_equal(store_commit(), 0);
	/* store_close commits what is still pending */
	put_s(STORE_JOBS, "pending", "too");
	reopen();
	assert_value(STORE_JOBS, "kept", "yes");
	assert_value(STORE_JOBS, "pending", "too");
	assert_value(STORE_STATS, "s", "stat");
}

static void
test_close_twice_and_commit_when_closed(void **unused)
{
	store_close();
	store_close();
	assert_int_equal(store_commit(), -1);
	assert_int_equal(store_open(dir, NULL), 0);
}

static void
test_scan_forward_reverse_prefix(void **unused)
{
	struct scan_out o = { .stop_after = 0 };

	put_tricky();
	assert_string_equal(scan_str(&o, "ab", 2, 0, 0),
	    "ab,ab\\x00,ab\\x01,abc,ab\\xff,ab\\xff\\x00,ab\\xff\\xff");
	assert_string_equal(scan_str(&o, "ab", 2, 1, 0),
	    "ab\\xff\\xff,ab\\xff\\x00,ab\\xff,abc,ab\\x01,ab\\x00,ab");
	/* a prefix ending in 0xff: its successor is "ac" */
	assert_string_equal(scan_str(&o, "ab\xff", 3, 0, 0), "ab\\xff,ab\\xff\\x00,ab\\xff\\xff");
	assert_string_equal(scan_str(&o, "ab\xff", 3, 1, 0), "ab\\xff\\xff,ab\\xff\\x00,ab\\xff");
	/* all 0xff: there is no successor, the range runs to the end */
	assert_string_equal(scan_str(&o, "\xff\xff", 2, 1, 0), "\\xff\\xff\\x01,\\xff\\xff");
	assert_string_equal(scan_str(&o, "\xff", 1, 1, 0), "\\xff\\xff\\x01,\\xff\\xff,\\xff");
	assert_string_equal(scan_str(&o, "\xff", 1, 0, 0), "\\xff,\\xff\\xff,\\xff\\xff\\x01");
	/* a prefix with a NUL in it */
	assert_string_equal(scan_str(&o, "ab\x00", 3, 0, 0), "ab\\x00");
	assert_string_equal(scan_str(&o, "ab\x00", 3, 1, 0), "ab\\x00");
	/* nothing matches */
	assert_string_equal(scan_str(&o, "zz", 2, 0, 0), "");
	assert_string_equal(scan_str(&o, "zz", 2, 1, 0), "");
	assert_string_equal(scan_str(&o, "aa", 2, 1, 0), "");
	assert_string_equal(scan_str(&o, "0", 1, 1, 0), "");
	/* longer than every key in its range */
	assert_string_equal(scan_str(&o, "abcd", 4, 1, 0), "");
}

static void
test_scan_empty_prefix_and_limit(void **unused)
{
	struct scan_out o = { .stop_after = 0 };

	put_tricky();
	assert_int_equal(store_commit(), 0);
	scan_str(&o, "", 0, 0, 0);
	assert_int_equal(o.n, (int)ARRAY_LEN(tricky));
	assert_string_equal(scan_str(&o, "", 0, 0, 2), "a,ab");
	assert_string_equal(scan_str(&o, "", 0, 1, 2), "\\xff\\xff\\x01,\\xff\\xff");
	scan_str(&o, "", 0, 1, 0);
	assert_int_equal(o.n, (int)ARRAY_LEN(tricky));
	assert_string_equal(scan_str(&o, "ab", 2, 1, 3), "ab\\xff\\xff,ab\\xff\\x00,ab\\xff");
	assert_string_equal(scan_str(&o, "ab", 2, 0, 1), "ab");
	/* a limit larger than the range */
	scan_str(&o, "ab\xff", 3, 0, 100);
	assert_int_equal(o.n, 3);
	/* the callback stops the scan */
	o.stop_after = 2;
	assert_string_equal(scan_str(&o, "ab", 2, 0, 0), "ab,ab\\x00");
	o.stop_after = 0;
	/* an empty database */
	memset(&o, 0, sizeof(o));
	assert_int_equal(store_scan(STORE_STATS, "", 0, 1, 0, scan_cb, &o), 0);
	assert_int_equal(o.n, 0);
}

static void
test_scan_sees_pending_writes(void **unused)
{
	struct scan_out o = { .stop_after = 0 };

	store_put(STORE_LOG, "p/1", 3, "v", 1);
	assert_int_equal(store_commit(), 0);
	store_put(STORE_LOG, "p/2", 3, "v", 1);
	store_del(STORE_LOG, "p/1", 3);
	assert_string_equal(scan_str(&o, "p/", 2, 0, 0), "p/2");
	assert_string_equal(scan_str(&o, "p/", 2, 1, 0), "p/2");
}

static void
test_del_prefix_exact_range(void **unused)
{
	struct scan_out o = { .stop_after = 0 };

	put_tricky();
	store_put(STORE_LOG, "aa\xff", 3, "v", 1);
	store_put(STORE_STATS, "abx", 3, "v", 1); /* another database */
	assert_int_equal(store_commit(), 0);
	store_del_prefix(STORE_LOG, "ab", 2);
	/* visible at once, and after the commit */
	assert_string_equal(scan_str(&o, "", 0, 0, 0), "a,aa\\xff,ac,b,\\xff,\\xff\\xff,\\xff\\xff\\x01");
	assert_int_equal(store_commit(), 0);
	reopen();
	assert_string_equal(scan_str(&o, "", 0, 0, 0), "a,aa\\xff,ac,b,\\xff,\\xff\\xff,\\xff\\xff\\x01");
	assert_value(STORE_STATS, "abx", "v");

	/* a prefix ending in 0xff, and one of all 0xff */
	put_tricky();
	store_del_prefix(STORE_LOG, "ab\xff", 3);
	assert_string_equal(scan_str(&o, "ab", 2, 0, 0), "ab,ab\\x00,ab\\x01,abc");
	store_del_prefix(STORE_LOG, "\xff\xff", 2);
	assert_string_equal(scan_str(&o, "\xff", 1, 0, 0), "\\xff");
	assert_int_equal(store_commit(), 0);
	assert_string_equal(scan_str(&o, "ab", 2, 0, 0), "ab,ab\\x00,ab\\x01,abc");
	/* nothing under the prefix */
	store_del_prefix(STORE_LOG, "zz", 2);
	assert_int_equal(store_commit(), 0);
}

/* Many keys over many pages, with neighbours on both sides, deleted in
 * the same group in which some were written (the journal replays in order). */
static void
test_del_prefix_many_pages(void **unused)
{
	char key[32], val[200];
	struct scan_out o = { .stop_after = 0 };
	int i;

	memset(val, 'x', sizeof(val));
	for (i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "p1/%06d", i);
		store_put(STORE_LOG, key, strlen(key), val, sizeof(val));
		if (i % 10 == 0) {
			snprintf(key, sizeof(key), "p0/%06d", i);
			store_put(STORE_LOG, key, strlen(key), val, sizeof(val));
			snprintf(key, sizeof(key), "p2/%06d", i);
			store_put(STORE_LOG, key, strlen(key), val, sizeof(val));
		}
	}
	store_put(STORE_LOG, "p1", 2, "edge", 4);  /* shorter than the prefix */
	store_put(STORE_LOG, "p1.", 3, "edge", 4); /* "/" + 1 */
	assert_int_equal(store_commit(), 0);
	for (i = 3000; i < 4000; i++) {
		snprintf(key, sizeof(key), "p1/%06d", i);
		store_put(STORE_LOG, key, strlen(key), val, sizeof(val));
	}
	store_del_prefix(STORE_LOG, "p1/", 3);
	store_put(STORE_LOG, "p1/late", 7, "v", 1); /* written after the delete: stays */
	assert_int_equal(store_commit(), 0);
	reopen();

	scan_str(&o, "p1/", 3, 0, 0);
	assert_string_equal(o.buf, "p1/late");
	scan_str(&o, "p0/", 3, 0, 0);
	assert_int_equal(o.n, 300);
	scan_str(&o, "p2/", 3, 1, 0);
	assert_int_equal(o.n, 300);
	assert_value(STORE_LOG, "p1", "edge");
	assert_value(STORE_LOG, "p1.", "edge");
}

/* "Delete every key that starts with prefix": the empty prefix is every key. */
static void
test_del_prefix_empty_prefix(void **unused)
{
	pid_t pid;
	int status;

	put_tricky();
	assert_int_equal(store_commit(), 0);
	store_close();
	/* in a child, since fatal() aborts */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct scan_out o;

		if (store_open(dir, NULL) != 0)
			_exit(2);
		store_del_prefix(STORE_LOG, "", 0);
		memset(&o, 0, sizeof(o));
		store_scan(STORE_LOG, "", 0, 0, 0, scan_cb, &o);
		_exit(o.n == 0 && store_commit() == 0 ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(store_open(dir, NULL), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child %s %d", WIFEXITED(status) ? "exited" : "died of signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* 200 MiB in one group: the map (64 MiB at first) grows and the group is
 * replayed; nothing is lost. */
static void
test_map_grows_in_one_group(void **unused)
{
	uint8_t *buf = xmalloc(MIB), *expect = xmalloc(MIB);
	struct store_stats s0, s1;
	char key[32];
	unsigned i;

	store_get_stats(&s0);
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "big/%05u", i);
		fill(buf, MIB, i);
		store_put(STORE_JOBS, key, strlen(key), buf, MIB);
	}
	/* readable before the commit */
	check_big(0, MIB, expect);
	check_big(199, MIB, expect);
	assert_int_equal(store_commit(), 0);
	store_get_stats(&s1);
	assert_true(s1.map_grows > s0.map_grows);
	assert_true(s1.map_size >= 200 * (size_t)MIB);
	assert_int_equal(s1.commit_failures, 0);
	for (i = 0; i < 200; i++)
		check_big(i, MIB, expect);
	reopen();
	for (i = 0; i < 200; i++)
		check_big(i, MIB, expect);
	free(buf);
	free(expect);
}

/* The same volume over many small commits, with overwrites and deletes. */
static void
test_map_grows_across_commits(void **unused)
{
	uint8_t *buf = xmalloc(2 * MIB), *expect = xmalloc(2 * MIB);
	struct store_stats st;
	char key[32];
	unsigned i;

	for (i = 0; i < 120; i++) {
		snprintf(key, sizeof(key), "big/%05u", i);
		fill(buf, 2 * MIB, i);
		store_put(STORE_JOBS, key, strlen(key), buf, 2 * MIB);
		put_s(STORE_META, "counter", key);
		assert_int_equal(store_commit(), 0);
	}
	store_get_stats(&st);
	assert_true(st.map_grows > 0);
	assert_int_equal(st.commit_failures, 0);
	for (i = 0; i < 120; i++)
		check_big(i, 2 * MIB, expect);
	assert_value(STORE_META, "counter", "big/00119");
	reopen();
	for (i = 0; i < 120; i++)
		check_big(i, 2 * MIB, expect);
	/* it keeps growing after a reopen, too */
	for (i = 120; i < 160; i++) {
		snprintf(key, sizeof(key), "big/%05u", i);
		fill(buf, 2 * MIB, i);
		store_put(STORE_JOBS, key, strlen(key), buf, 2 * MIB);
		assert_int_equal(store_commit(), 0);
	}
	for (i = 0; i < 160; i++)
		check_big(i, 2 * MIB, expect);
	free(buf);
	free(expect);
}

/* A crash: a child commits one group, writes a second and dies without
 * store_close.  The parent sees exactly the first group. */
static void
test_crash_keeps_committed_only(void **unused)
{
	pid_t pid;
	int status;

	put_s(STORE_JOBS, "before", "0");
	store_close();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint8_t *big = calloc(1, 8 * MIB);

		if (big == NULL || store_open(dir, NULL) != 0)
			_exit(2);
		put_s(STORE_JOBS, "committed", "1");
		put_s(STORE_JOBS, "overwritten", "old");
		if (store_commit() != 0)
			_exit(3);
		/* the second group, never committed */
		put_s(STORE_JOBS, "uncommitted", "2");
		put_s(STORE_JOBS, "overwritten", "new");
		store_del(STORE_JOBS, "committed", 9);
		store_put(STORE_JOBS, "big", 3, big, 8 * MIB);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(store_open(dir, NULL), 0);
	assert_value(STORE_JOBS, "before", "0");
	assert_value(STORE_JOBS, "committed", "1");
	assert_value(STORE_JOBS, "overwritten", "old");
	assert_value(STORE_JOBS, "uncommitted", NULL);
	assert_value(STORE_JOBS, "big", NULL);
	/* and the dead writer does not block the next one */
	put_s(STORE_JOBS, "after", "3");
	assert_int_equal(store_commit(), 0);
	reopen();
	assert_value(STORE_JOBS, "after", "3");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_databases_are_separate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_after_commit_runs_on_commit_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_commit_off_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_twice_and_commit_when_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_forward_reverse_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_empty_prefix_and_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_sees_pending_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_prefix_exact_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_prefix_many_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_prefix_empty_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_grows_in_one_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_grows_across_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_keeps_committed_only, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
