/* Unit tests for engine/jobs/job.c on a real store in a temp directory, without
 * an event loop: store_commit() stands in for the loop's group commit and
 * slots_pass() for the scheduler's kick.  job_init() installs the real FSM
 * hooks, so these tests see what the daemon does. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine/jobs/job.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "fsm/tables.h"


/* Backup jobs: their start and stop actions are still the generic ones,
 * so the job layer is exercised without a platform (a run takes them
 * from 空闲 into the queue). */
static char dir[64];
static char *mig_vms[] = { "web01", "web02" };
static struct cfg_rule mig_rule = {
	.kind = CFG_BACKUP,
	.name = "mv",
	.vms = mig_vms,
	.nvms = 2,
	.digest = 42,
};

/* ---- helpers ---------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
engine_up(void)
{
	assert_int_equal(store_open(dir, NULL), 0);
	slots_init(NULL);
	slots_set_limits(4, 4);
	job_init(NULL);
}

static void
engine_down(void)
{
	job_shutdown();
	store_close();
	slots_free();
}

static int
setup(void **state)
{
	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vmferry-job-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	engine_up();
	return 0;
}

static int
teardown(void **state)
{
	engine_down();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* Stop the engine cleanly and start it again from the store. */
static size_t
restart(void)
{
	engine_down();
	engine_up();
	return job_load_all();
}

static const char *
state_id(const struct job *j)
{
	return job_state_info(j)->id;
}

/* Let the after-commit work run its course (each step may queue the next). */
static void
settle(void)
{
	int i;

	for (i = 0; i < 8; i++)
		assert_int_equal(store_commit(), 0);
}

/* A migration job for mv/vm, through starting into the scheduler's queue. */
static struct job *
queued_job(const char *vm)
{
	struct job *j = job_create(CFG_BACKUP, "mv", vm, &mig_rule);

	settle();
	assert_string_equal(state_id(j), "idle");
	assert_int_equal(fsm_dispatch(j, BAK_EV_RUN, NULL), FSM_DONE);
	settle();
	assert_string_equal(state_id(j), "queued");
	assert_true(j->slot.queued);
	return j;
}

static size_t
log_count(const struct job *j)
{
	json_t *a = job_log_to_json(j, 100 * JOB_LOG_KEEP);
	size_t n = json_array_size(a);

	json_decref(a);
	return n;
}

static const char *
log_msg_at(json_t *a, size_t i)
{
	return json_string_value(json_object_get(json_array_get(a, i), "message"));
}

/* Does any log entry contain s? */
static int
log_has(const struct job *j, const char *s)
{
	json_t *a = job_log_to_json(j, 100 * JOB_LOG_KEEP);
	size_t i;
	int found = 0;

	for (i = 0; i < json_array_size(a); i++)
		if (strstr(log_msg_at(a, i), s) != NULL)
			found = 1;
	json_decref(a);
	return found;
}

static int
count_cb(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int
store_count(enum store_db db, const void *prefix, size_t plen)
{
	int n = 0;

	store_scan(db, prefix, plen, 0, 0, count_cb, &n);
	return n;
}

static int
store_has(enum store_db db, const void *key, size_t klen)
{
	void *v;
	size_t vlen;

	if (!store_get(db, key, klen, &v, &vlen))
		return 0;
	free(v);
	return 1;
}

/* ---- tests ------------------------------------------------------------ */

static void
test_create_persists_then_runs(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);

	assert_non_null(j);
	assert_ptr_equal(job_find(CFG_BACKUP, "mv", "web01"), j);
	assert_null(job_find(CFG_MIGRATION, "mv", "web01"));
	assert_null(job_find(CFG_BACKUP, "mv", "web0"));
	assert_int_equal(job_count(), 1);
	assert_string_equal(state_id(j), "starting");
	/* on its way to disk, and nothing has started yet */
	assert_true(store_has(STORE_JOBS, j->key, j->keylen));
	assert_int_equal(slots_queued_total(), 0);

	/* the commit makes 启动 durable; its work rests the job in 空闲 */
	assert_int_equal(store_commit(), 0);
	assert_string_equal(state_id(j), "idle");
	assert_int_equal(store_commit(), 0);
	/* a run schedules it */
	assert_int_equal(fsm_dispatch(j, BAK_EV_RUN, NULL), FSM_DONE);
	assert_string_equal(state_id(j), "queued");
	/* ... but 排队中 must be durable before the job joins the queue */
	assert_int_equal(slots_queued_total(), 0);
	assert_int_equal(store_commit(), 0);
	assert_int_equal(slots_queued_total(), 1);
	assert_int_equal(slots_position(&j->slot), 1);

	/* a pass admits it: it takes a slot and starts creating the VM */
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(state_id(j), "preparing");
	assert_int_equal(slots_active_total(), 1);
	assert_int_equal(slots_queued_total(), 0);
	settle();
	assert_string_equal(state_id(j), "preparing");

	assert_true(log_has(j, "job created in state starting"));
	assert_true(log_has(j, "starting -> idle (event started)"));
	assert_true(log_has(j, "idle -> queued (event run)"));
	assert_true(log_has(j, "queued -> preparing (event admit)"));
}

static void
test_queue_respects_max_tasks(void **unused)
{
	struct job *a, *b;

	slots_set_limits(1, 1);
	a = queued_job("web01");
	b = queued_job("web02");
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(state_id(a), "preparing");
	assert_string_equal(state_id(b), "queued");
	assert_int_equal(slots_position(&b->slot), 1);
	/* a failure gives the slot back */
	assert_int_equal(fsm_dispatch(a, EV_FAIL, "datastore full"), FSM_DONE);
	assert_string_equal(state_id(a), "failed");
	assert_string_equal(a->error, "datastore full");
	assert_int_equal(slots_active_total(), 0);
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(state_id(b), "preparing");
}

static void
test_stop_and_start_again(void **unused)
{
	struct job *j = queued_job("web01");

	assert_int_equal(fsm_dispatch(j, EV_STOP, "stopped by the user"), FSM_DONE);
	assert_string_equal(state_id(j), "stopping");
	/* it leaves the queue at once */
	assert_int_equal(slots_queued_total(), 0);
	assert_int_equal(slots_pass(), 0);
	settle();
	assert_string_equal(state_id(j), "stopped");
	assert_int_equal(fsm_dispatch(j, EV_STOP, NULL), FSM_IGNORED);
	assert_int_equal(fsm_dispatch(j, BAK_EV_RUN, NULL), FSM_REJECTED);
	assert_int_equal(fsm_dispatch(j, EV_START, NULL), FSM_DONE);
	settle();
	assert_string_equal(state_id(j), "idle");
	assert_int_equal(fsm_dispatch(j, BAK_EV_RUN, NULL), FSM_DONE);
	settle();
	assert_string_equal(state_id(j), "queued");
	assert_int_equal(slots_queued_total(), 1);
}

static void
test_job_without_rule_stops(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "gone", "vm1", NULL);

	settle();
	assert_string_equal(state_id(j), "stopped");
	assert_int_equal(slots_queued_total(), 0);
	assert_true(log_has(j, "no longer configured"));
}

static void
test_log_bounded_oldest_dropped(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);
	json_t *a;
	size_t i;
	char want[64];

	/* the job's own entries first ("created", "starting -> idle") */
	settle();
	assert_int_equal(log_count(j), 2);
	/* then KEEP+50 more, some groups committed on the way */
	for (i = 0; i < JOB_LOG_KEEP + 50; i++) {
		job_log(j, LOG_INFO, "entry %zu", i);
		if (i % 300 == 299)
			assert_int_equal(store_commit(), 0);
	}
	a = job_log_to_json(j, 10 * JOB_LOG_KEEP);
	assert_int_equal(json_array_size(a), JOB_LOG_KEEP);
	/* oldest first: the 52 oldest entries are gone */
	assert_string_equal(log_msg_at(a, 0), "entry 50");
	snprintf(want, sizeof(want), "entry %d", JOB_LOG_KEEP + 49);
	assert_string_equal(log_msg_at(a, JOB_LOG_KEEP - 1), want);
	for (i = 1; i < JOB_LOG_KEEP; i++) {
		json_int_t s0 = json_integer_value(json_object_get(json_array_get(a, i - 1), "seq"));
		json_int_t s1 = json_integer_value(json_object_get(json_array_get(a, i), "seq"));

		assert_int_equal(s1, s0 + 1);
	}
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "level")), "info");
	assert_non_null(json_object_get(json_array_get(a, 0), "time"));
	json_decref(a);

	/* the newest n, still oldest first */
	a = job_log_to_json(j, 3);
	assert_int_equal(json_array_size(a), 3);
	snprintf(want, sizeof(want), "entry %d", JOB_LOG_KEEP + 47);
	assert_string_equal(log_msg_at(a, 0), want);
	json_decref(a);

	/* the store holds no more than it shows */
	assert_int_equal(store_commit(), 0);
	{
		uint8_t prefix[64];

		memcpy(prefix, j->key, j->keylen);
		prefix[j->keylen] = '\0';
		assert_int_equal(store_count(STORE_LOG, prefix, j->keylen + 1), JOB_LOG_KEEP);
	}
}

static void
test_stats(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "bk", "db01", NULL);
	json_t *s;

	job_stat_success(j, 1000);
	job_stat_success(j, 500);
	job_stat_failure(j, "disk full");
	job_stat_failure(j, "peer lost");
	s = job_stats_to_json(j);
	assert_string_equal(json_string_value(json_object_get(s, "rule")), "bk");
	assert_string_equal(json_string_value(json_object_get(s, "vm")), "db01");
	assert_string_equal(json_string_value(json_object_get(s, "kind")), "backup");
	assert_int_equal(json_integer_value(json_object_get(s, "successes")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "failures")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "bytes")), 1500);
	assert_int_equal(json_integer_value(json_object_get(s, "unviewed_errors")), 2);
	assert_string_equal(json_string_value(json_object_get(s, "last_error")), "peer lost");
	assert_true(json_integer_value(json_object_get(s, "last_failure")) > 0);
	json_decref(s);

	/* viewing clears the unviewed count, nothing else */
	job_stats_viewed(j);
	s = job_stats_to_json(j);
	assert_int_equal(json_integer_value(json_object_get(s, "unviewed_errors")), 0);
	assert_int_equal(json_integer_value(json_object_get(s, "failures")), 2);
	json_decref(s);

	/* and that is persisted too */
	assert_int_equal(restart(), 1);
	j = job_find(CFG_BACKUP, "bk", "db01");
	assert_non_null(j);
	s = job_stats_to_json(j);
	assert_int_equal(json_integer_value(json_object_get(s, "successes")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "failures")), 2);
	assert_int_equal(json_integer_value(json_object_get(s, "bytes")), 1500);
	assert_int_equal(json_integer_value(json_object_get(s, "unviewed_errors")), 0);
	assert_string_equal(json_string_value(json_object_get(s, "last_error")), "peer lost");
	json_decref(s);
	job_stat_failure(j, "again");
	assert_int_equal(j->stats.unviewed_errors, 1);
}

static void
test_restart_restores_everything(void **unused)
{
	struct job *j = queued_job("web01"), *k;
	json_t *log_before, *log_after, *js_before, *js_after;
	char *a, *b;
	size_t n;

	job_log(j, LOG_WARN, "a warning");
	job_stat_success(j, 77);
	job_stat_failure(j, "timeout");
	job_progress(j, 25, 100, 0);
	job_set_data(j, "\x01\x02\x03", 3);
	job_persist(j);
	k = job_create(CFG_BACKUP, "rep", "web01", NULL);
	settle(); /* k has no rule: it stops */
	assert_string_equal(state_id(k), "stopped");

	log_before = job_log_to_json(j, 100);
	js_before = job_to_json(j);
	n = log_count(j);
	assert_int_equal(restart(), 2);

	j = job_find(CFG_BACKUP, "mv", "web01");
	k = job_find(CFG_BACKUP, "rep", "web01");
	assert_non_null(j);
	assert_non_null(k);
	assert_string_equal(state_id(j), "queued");
	assert_string_equal(state_id(k), "stopped");
	assert_int_equal(j->bytes_done, 25);
	assert_int_equal(j->bytes_total, 100);
	assert_int_equal(j->datalen, 3);
	assert_memory_equal(j->data, "\x01\x02\x03", 3);
	assert_int_equal(j->stats.successes, 1);
	assert_int_equal(j->stats.failures, 1);
	assert_int_equal(j->stats.bytes, 77);
	assert_string_equal(j->stats.last_error, "timeout");

	/* the log is the same, and goes on after the old entries */
	log_after = job_log_to_json(j, 100);
	a = json_dumps(log_before, JSON_COMPACT);
	b = json_dumps(log_after, JSON_COMPACT);
	assert_string_equal(a, b);
	free(a);
	free(b);
	job_log(j, LOG_INFO, "after the restart");
	assert_int_equal(log_count(j), n + 1);
	json_decref(log_after);
	log_after = job_log_to_json(j, 1);
	assert_string_equal(log_msg_at(log_after, 0), "after the restart");

	/* the status shows the same job (what a restart may change aside) */
	js_after = job_to_json(j);
	json_object_del(js_before, "queue_position");
	json_object_del(js_after, "queue_position");
	json_object_del(js_before, "rate_bps");
	json_object_del(js_after, "rate_bps");
	assert_true(json_equal(js_before, js_after));

	/* not yet back in the queue: resuming redoes the state's work */
	assert_int_equal(slots_queued_total(), 0);
	job_resume_all();
	settle();
	assert_int_equal(slots_queued_total(), 1);
	assert_string_equal(state_id(j), "queued");
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(state_id(j), "preparing");

	/* a job in a transfer state comes back holding its slot */
	settle();
	assert_int_equal(restart(), 2);
	assert_int_equal(slots_active_total(), 1);
	assert_string_equal(state_id(job_find(CFG_BACKUP, "mv", "web01")), "preparing");

	json_decref(log_before);
	json_decref(log_after);
	json_decref(js_before);
	json_decref(js_after);
}

static void
test_delete_keeps_neighbours(void **unused)
{
	struct job *b = queued_job("b"), *bc;
	uint8_t bkey[64], prefix[64];
	size_t bkeylen = b->keylen, nbc, i;
	struct cfg_rule rule_a = mig_rule;

	rule_a.name = "a";
	/* rule "a": VMs "b" and "bc"; "mv"/"b" is another rule's job */
	b = job_create(CFG_BACKUP, "a", "b", &rule_a);
	bc = job_create(CFG_BACKUP, "a", "bc", &rule_a);
	settle();
	assert_int_equal(fsm_dispatch(b, BAK_EV_RUN, NULL), FSM_DONE);
	assert_int_equal(fsm_dispatch(bc, BAK_EV_RUN, NULL), FSM_DONE);
	settle();
	for (i = 0; i < 20; i++) {
		job_log(b, LOG_INFO, "b %zu", i);
		job_log(bc, LOG_INFO, "bc %zu", i);
	}
	job_stat_success(b, 1);
	job_stat_success(bc, 2);
	settle();
	nbc = log_count(bc);
	assert_true(nbc >= 20);
	bkeylen = b->keylen;
	memcpy(bkey, b->key, bkeylen);

	assert_int_equal(fsm_dispatch(b, EV_DELETE, NULL), FSM_DONE);
	assert_int_equal(slots_queued_total(), 2); /* a/b left the queue: mv/b and a/bc remain */
	for (i = 0; i < 10 && job_find(CFG_BACKUP, "a", "b") != NULL; i++)
		assert_int_equal(store_commit(), 0);
	assert_null(job_find(CFG_BACKUP, "a", "b"));
	settle();

	/* every trace of a/b is gone */
	assert_false(store_has(STORE_JOBS, bkey, bkeylen));
	assert_false(store_has(STORE_STATS, bkey, bkeylen));
	memcpy(prefix, bkey, bkeylen);
	prefix[bkeylen] = '\0';
	assert_int_equal(store_count(STORE_LOG, prefix, bkeylen + 1), 0);

	/* a/bc and mv/b are untouched */
	assert_int_equal(log_count(bc), nbc);
	assert_true(log_has(bc, "bc 19"));
	assert_true(store_has(STORE_JOBS, bc->key, bc->keylen));
	assert_int_equal(bc->stats.successes, 1);
	assert_true(store_has(STORE_STATS, bc->key, bc->keylen));
	assert_non_null(job_find(CFG_BACKUP, "mv", "b"));
	assert_true(log_count(job_find(CFG_BACKUP, "mv", "b")) > 0);

	/* and it stays gone after a restart */
	assert_int_equal(restart(), 2);
	assert_null(job_find(CFG_BACKUP, "a", "b"));
	bc = job_find(CFG_BACKUP, "a", "bc");
	assert_non_null(bc);
	assert_int_equal(log_count(bc), nbc);
	assert_int_equal(bc->stats.successes, 1);
	assert_int_equal(bc->stats.bytes, 2);
}

static void
test_to_json_fields(void **unused)
{
	static const char *const required[] = { "rule", "vm", "kind", "state", "label_zh", "label_en",
		"progress", "bytes_done", "bytes_total", "rate_bps", "error" };
	struct job *j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);
	json_t *o;
	size_t i;

	o = job_to_json(j);
	assert_non_null(o);
	for (i = 0; i < ARRAY_LEN(required); i++)
		if (json_object_get(o, required[i]) == NULL)
			fail_msg("job_to_json has no \"%s\"", required[i]);
	assert_string_equal(json_string_value(json_object_get(o, "rule")), "mv");
	assert_string_equal(json_string_value(json_object_get(o, "vm")), "web01");
	assert_string_equal(json_string_value(json_object_get(o, "kind")), "backup");
	assert_string_equal(json_string_value(json_object_get(o, "state")), "starting");
	assert_string_equal(json_string_value(json_object_get(o, "label_zh")), "启动");
	assert_string_equal(json_string_value(json_object_get(o, "label_en")), "Starting");
	assert_int_equal(json_integer_value(json_object_get(o, "progress")), 0);
	assert_true(json_is_null(json_object_get(o, "error")));
	assert_true(json_is_number(json_object_get(o, "rate_bps")));
	json_decref(o);

	settle();
	assert_int_equal(fsm_dispatch(j, BAK_EV_RUN, NULL), FSM_DONE);
	settle();
	job_progress(j, 3u << 20, 12u << 20, 1048576.0);
	job_set_error(j, "slow datastore");
	o = job_to_json(j);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "queued");
	assert_string_equal(json_string_value(json_object_get(o, "label_zh")), "排队中");
	assert_int_equal(json_integer_value(json_object_get(o, "progress")), 25);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_done")), 3u << 20);
	assert_int_equal(json_integer_value(json_object_get(o, "bytes_total")), 12u << 20);
	assert_int_equal((int64_t)json_number_value(json_object_get(o, "rate_bps")), 1048576);
	assert_string_equal(json_string_value(json_object_get(o, "error")), "slow datastore");
	assert_true(json_is_true(json_object_get(o, "pending")));
	assert_int_equal(json_integer_value(json_object_get(o, "queue_position")), 1);
	json_decref(o);

	/* a failure keeps its reason; the next good step clears it (a
	 * failure comes from work: a slot state's, not the queue's) */
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(state_id(j), "preparing");
	assert_int_equal(fsm_dispatch(j, EV_FAIL, "no such datastore"), FSM_DONE);
	o = job_to_json(j);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
	assert_string_equal(json_string_value(json_object_get(o, "error")), "no such datastore");
	json_decref(o);
	assert_int_equal(fsm_dispatch(j, EV_START, NULL), FSM_DONE);
	o = job_to_json(j);
	assert_true(json_is_null(json_object_get(o, "error")));
	json_decref(o);
}

/* SPEC §5: progress is 0-100. */
static void
test_progress_stays_in_range(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);
	json_int_t progress;
	json_t *o;

	job_progress(j, 10, 0, 0); /* total not known yet */
	o = job_to_json(j);
	assert_int_equal(json_integer_value(json_object_get(o, "progress")), 0);
	json_decref(o);

	job_progress(j, 300, 200, 0);
	o = job_to_json(j);
	progress = json_integer_value(json_object_get(o, "progress"));
	json_decref(o);
	assert_in_range(progress, 0, 100);
}

static json_int_t
traffic_sum(const struct job *j, int64_t now, json_int_t *newest)
{
	json_t *o = job_traffic_to_json(j, now), *a = json_object_get(o, "bytes"), *v;
	json_int_t sum = 0;
	size_t i;

	assert_int_equal(json_array_size(a), JOB_TRAFFIC_SLOTS);
	assert_int_equal(json_integer_value(json_object_get(o, "end")) % JOB_TRAFFIC_STEP_S, 0);
	assert_true(json_integer_value(json_object_get(o, "end")) > now);
	json_array_foreach(a, i, v)
		sum += json_integer_value(v);
	if (newest != NULL)
		*newest = json_integer_value(json_array_get(a, JOB_TRAFFIC_SLOTS - 1)) +
		    json_integer_value(json_array_get(a, JOB_TRAFFIC_SLOTS - 2));
	json_decref(o);
	return sum;
}

/* The traffic graph (流量图): what progress moved, per 10 s, for an hour. */
static void
test_traffic_last_hour(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);
	int64_t now = (int64_t)time(NULL);
	json_int_t newest;

	assert_int_equal(traffic_sum(j, now, NULL), 0);
	job_progress(j, 1000, 10000, 0);
	job_progress(j, 4000, 10000, 0);
	/* A new transfer (the next disk) starts again from 0. */
	job_progress(j, 500, 2000, 0);
	now = (int64_t)time(NULL);
	assert_int_equal(traffic_sum(j, now, &newest), 4500);
	assert_int_equal(newest, 4500);
	/* Half an hour later it is still there, an hour later gone. */
	assert_int_equal(traffic_sum(j, now + 1800, &newest), 4500);
	assert_int_equal(newest, 0);
	assert_int_equal(traffic_sum(j, now + 3600 + JOB_TRAFFIC_STEP_S, NULL), 0);
}

static int
has_action(const struct job *j, const char *op)
{
	json_t *o = job_to_json(j), *v;
	size_t i;
	int found = 0;

	json_array_foreach(json_object_get(o, "actions"), i, v)
		found |= strcmp(json_string_value(v), op) == 0;
	json_decref(o);
	return found;
}

/* The commands a job takes are its state machine's (the dashboard's
 * buttons follow them). */
static void
test_actions_follow_the_fsm(void **unused)
{
	struct job *j = job_create(CFG_BACKUP, "bk", "web01", &mig_rule);

	assert_false(has_action(j, "run"));
	assert_true(has_action(j, "delete"));
	fsm_dispatch(j, EV_STARTED, NULL);
	assert_string_equal(job_state_info(j)->id, "idle");
	assert_true(has_action(j, "run"));
	assert_true(has_action(j, "restore"));
	assert_true(has_action(j, "stop"));
	assert_false(has_action(j, "migrate"));
	assert_false(has_action(j, "failback"));
}

/* A crash after 删除中 was committed, before the clean-up finished: after
 * the restart the job must finish deleting itself. */
static void
test_crash_while_deleting_resumes(void **unused)
{
	pid_t pid;
	int status, i;

	engine_down();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct job *j;

		if (store_open(dir, NULL) != 0)
			_exit(2);
		slots_init(NULL);
		job_init(NULL);
		j = job_create(CFG_BACKUP, "mv", "web01", &mig_rule);
		for (i = 0; i < 3; i++)
			store_commit();
		fsm_dispatch(j, EV_DELETE, NULL);
		store_commit(); /* 删除中 is durable; the clean-up has not been committed */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	engine_up();
	assert_int_equal(job_load_all(), 1);
	assert_string_equal(state_id(job_find(CFG_BACKUP, "mv", "web01")), "deleting");
	job_resume_all();
	settle();
	assert_null(job_find(CFG_BACKUP, "mv", "web01"));
}

int
main(void)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_persists_then_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_respects_max_tasks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_start_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_without_rule_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_bounded_oldest_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_restores_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_keeps_neighbours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_to_json_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress_stays_in_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_traffic_last_hour, setup, teardown),
		cmocka_unit_test_setup_teardown(test_actions_follow_the_fsm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_while_deleting_resumes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
