#include "engine/jobs/job.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/jobs/kinds.h"

/* Record versions.  Every record starts with a big-endian u16 version;
 * strings are u16 length + bytes, blobs u32 length + bytes. */
#define JOB_REC_V1 1
#define STATS_REC_V1 1
#define LOG_REC_V1 1

#define INVALID_BACKOFF_MIN 5
#define INVALID_BACKOFF_MAX 60
#define PROGRESS_NOTIFY_S 0.25

static struct {
	struct job_list jobs;
	size_t njobs;
	struct event_base *base;
	void (*observer)(struct job *, const char *);
	int init;
} js;

/* ---- keys ---- */

static void
job_make_key(struct job *j)
{
	size_t rl = strlen(j->rule), vl = strlen(j->vm);

	j->keylen = 1 + rl + 1 + vl;
	j->key = xmalloc(j->keylen);
	j->key[0] = (uint8_t)j->kind;
	memcpy(j->key + 1, j->rule, rl);
	j->key[1 + rl] = '\0';
	memcpy(j->key + 2 + rl, j->vm, vl);
}

/* ---- lifecycle ---- */

static struct fsm_instance *
hook_inst(struct job *j)
{
	return &j->fsm;
}

void
job_cancel_work(struct job *j)
{
	void (*cancel)(struct job *) = j->cancel;

	j->cancel = NULL;
	j->epoch++;
	/* The retry of 失效 belongs to that state too. */
	if (j->timer != NULL)
		event_del(j->timer);
	if (cancel != NULL)
		cancel(j);
}

static void
hook_persist(struct job *j, int from, int event, const char *reason)
{
	const struct fsm_table *t = j->fsm.table;
	unsigned fl_from = t->states[from].flags, fl_to = t->states[j->fsm.state].flags;

	j->updated = (int64_t)time(NULL);
	/* Work started for the old state (or for this one, when it is
	 * entered again) is obsolete now. */
	job_cancel_work(j);
	/* A job at rest keeps only its record: the kind's runtime is made
	 * again from it when work starts (as after a restart), so a thousand
	 * idle jobs cost little memory. */
	if ((fl_to & (FSM_F_RESTING | FSM_F_TERMINAL | FSM_F_INVALID)) && j->priv != NULL && j->free_priv != NULL) {
		j->free_priv(j->priv);
		j->priv = NULL;
	}
	/* A job that came to rest retries its next 失效 quickly again. */
	if (fl_to & (FSM_F_RESTING | FSM_F_TERMINAL))
		j->invalid_backoff = INVALID_BACKOFF_MIN;
	/* A reason explains the state it comes with; a good step clears it. */
	if (reason != NULL)
		job_set_error(j, reason);
	else if (!(fl_to & (FSM_F_FAILED | FSM_F_INVALID)))
		job_set_error(j, NULL);
	if ((fl_from & FSM_F_SLOT) && !(fl_to & FSM_F_SLOT))
		slots_release(&j->slot);
	if (fl_to & FSM_F_SLOT)
		slots_hold(&j->slot);
	if (!(fl_to & FSM_F_QUEUED))
		slots_dequeue(&j->slot);
	job_persist(j);
	if (from != j->fsm.state)
		job_log(j, LOG_INFO, "%s -> %s (event %s)%s%s", t->states[from].id,
		    t->states[j->fsm.state].id, fsm_event_name(t, event), reason ? ": " : "",
		    reason ? reason : "");
	if (js.observer != NULL)
		js.observer(j, "state");
}

static int
hook_alive(const struct job *j)
{
	return !j->forgotten;
}

static void
hook_hold(struct job *j)
{
	job_hold(j);
}

static void
hook_release(struct job *j)
{
	job_release(j);
}

static void
job_admit(struct slot_item *it)
{
	struct job *j = (struct job *)((char *)it - offsetof(struct job, slot));
	const struct job_kind *k = job_kind_of(j->kind);

	fsm_dispatch(j, k != NULL && k->admit_event != NULL ? k->admit_event(j) : EV_ADMIT, NULL);
}

void
job_init(struct event_base *base)
{
	static const struct fsm_hooks hooks = {
		.inst = hook_inst,
		.persist = hook_persist,
		.after_commit = store_after_commit,
		.alive = hook_alive,
		.hold = hook_hold,
		.release = hook_release,
	};

	TAILQ_INIT(&js.jobs);
	js.njobs = 0;
	js.base = base;
	js.init = 1;
	fsm_set_hooks(&hooks);
}

static void
job_free(struct job *j)
{
	if (j->free_priv != NULL && j->priv != NULL)
		j->free_priv(j->priv);
	if (j->timer != NULL)
		event_free(j->timer);
	free(j->rule);
	free(j->vm);
	free(j->key);
	free(j->error);
	free(j->data);
	free(j->traffic);
	free(j->stats.last_error);
	free(j);
}

void
job_shutdown(void)
{
	struct job *j;

	while ((j = TAILQ_FIRST(&js.jobs)) != NULL) {
		job_cancel_work(j);
		TAILQ_REMOVE(&js.jobs, j, link);
		slots_dequeue(&j->slot);
		slots_release(&j->slot);
		j->forgotten = 1;
		if (--j->refs <= 0)
			job_free(j);
	}
	js.njobs = 0;
}

void
job_hold(struct job *j)
{
	j->refs++;
}

void
job_release(struct job *j)
{
	if (--j->refs <= 0)
		job_free(j);
}

struct job_list *
job_all(void)
{
	return &js.jobs;
}

size_t
job_count(void)
{
	return js.njobs;
}

const struct fsm_table *
job_table_for(enum cfg_kind kind)
{
	const struct job_kind *k = job_kind_of(kind);

	return k != NULL ? k->table : NULL;
}

static struct job *
job_alloc(enum cfg_kind kind, const char *rule, const char *vm)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->kind = kind;
	j->rule = xstrdup(rule);
	j->vm = xstrdup(vm);
	j->fsm.table = job_table_for(kind);
	j->fsm.state = j->fsm.table->initial;
	j->slot.admit = job_admit;
	j->refs = 1;
	j->invalid_backoff = INVALID_BACKOFF_MIN;
	job_make_key(j);
	TAILQ_INSERT_TAIL(&js.jobs, j, link);
	js.njobs++;
	return j;
}

static void
job_run_enter(void *arg)
{
	struct job *j = arg;
	fsm_action enter = j->fsm.table->enter[j->fsm.state];

	if (!j->forgotten && enter != NULL && !fsm_quiesced())
		enter(j, EV_RESUME);
	job_release(j);
}

struct job *
job_create(enum cfg_kind kind, const char *rule, const char *vm, const struct cfg_rule *cfg)
{
	struct job *j = job_alloc(kind, rule, vm);

	j->cfg = cfg;
	j->created = j->updated = (int64_t)time(NULL);
	job_persist(j);
	job_log(j, LOG_INFO, "job created in state %s", job_state_info(j)->id);
	/* The initial state's work starts once the job is on disk. */
	job_hold(j);
	store_after_commit(job_run_enter, j);
	if (js.observer != NULL)
		js.observer(j, "created");
	return j;
}

struct job *
job_find(enum cfg_kind kind, const char *rule, const char *vm)
{
	struct job *j;

	TAILQ_FOREACH(j, &js.jobs, link)
		if (j->kind == kind && strcmp(j->rule, rule) == 0 && strcmp(j->vm, vm) == 0)
			return j;
	return NULL;
}

/* ---- persistence ---- */

void
job_persist(struct job *j)
{
	struct sbuf r;

	sbuf_init(&r);
	rec_put_u16(&r, JOB_REC_V1);
	rec_put_u8(&r, (uint8_t)j->kind);
	rec_put_str(&r, j->rule);
	rec_put_str(&r, j->vm);
	rec_put_str(&r, j->fsm.table->states[j->fsm.state].id);
	rec_put_str(&r, j->error);
	rec_put_str(&r, j->slot.host);
	rec_put_u64(&r, j->bytes_done);
	rec_put_u64(&r, j->bytes_total);
	rec_put_u64(&r, (uint64_t)j->created);
	rec_put_u64(&r, (uint64_t)j->updated);
	rec_put_u64(&r, j->log_seq);
	rec_put_blob(&r, j->data, j->datalen);
	store_put(STORE_JOBS, j->key, j->keylen, r.data, r.len);
	sbuf_free(&r);
}

static void
stats_persist(struct job *j)
{
	struct sbuf r;

	sbuf_init(&r);
	rec_put_u16(&r, STATS_REC_V1);
	rec_put_u64(&r, j->stats.successes);
	rec_put_u64(&r, j->stats.failures);
	rec_put_u64(&r, j->stats.bytes);
	rec_put_u64(&r, j->stats.unviewed_errors);
	rec_put_u64(&r, (uint64_t)j->stats.last_success);
	rec_put_u64(&r, (uint64_t)j->stats.last_failure);
	rec_put_str(&r, j->stats.last_error);
	store_put(STORE_STATS, j->key, j->keylen, r.data, r.len);
	sbuf_free(&r);
}

static void
stats_load(struct job *j)
{
	struct rec_reader r;
	void *val;
	size_t vlen;

	if (!store_get(STORE_STATS, j->key, j->keylen, &val, &vlen))
		return;
	rec_reader_init(&r, val, vlen);
	if (rec_get_u16(&r) == STATS_REC_V1) {
		j->stats.successes = rec_get_u64(&r);
		j->stats.failures = rec_get_u64(&r);
		j->stats.bytes = rec_get_u64(&r);
		j->stats.unviewed_errors = rec_get_u64(&r);
		j->stats.last_success = (int64_t)rec_get_u64(&r);
		j->stats.last_failure = (int64_t)rec_get_u64(&r);
		j->stats.last_error = rec_get_str(&r);
	}
	if (r.bad)
		log_warn("job %s/%s: statistics record is damaged, ignored", j->rule, j->vm);
	free(val);
}

static int
job_load_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct rec_reader r;
	struct job *j;
	char *rule, *vm, *state, *err, *host;
	uint8_t kind;
	int st;
	rec_reader_init(&r, val, vlen);

	if (rec_get_u16(&r) != JOB_REC_V1) {
		log_err("store: job record of unknown version skipped");
		return 0;
	}
	kind = rec_get_u8(&r);
	rule = rec_get_str(&r);
	vm = rec_get_str(&r);
	state = rec_get_str(&r);
	err = rec_get_str(&r);
	host = rec_get_str(&r);
	if (r.bad || job_table_for((enum cfg_kind)kind) == NULL) {
		log_err("store: damaged job record skipped");
		goto out;
	}
	st = fsm_state_by_id(job_table_for((enum cfg_kind)kind), state);
	if (st < 0) {
		log_err("store: job %s/%s has unknown state %s, skipped", rule, vm, state);
		goto out;
	}
	j = job_alloc((enum cfg_kind)kind, rule, vm);
	j->fsm.state = st;
	j->error = err && *err ? xstrdup(err) : NULL;
	slots_set_host(&j->slot, host);
	j->bytes_done = rec_get_u64(&r);
	j->bytes_total = rec_get_u64(&r);
	j->created = (int64_t)rec_get_u64(&r);
	j->updated = (int64_t)rec_get_u64(&r);
	j->log_seq = rec_get_u64(&r);
	j->data = rec_get_blob(&r, &j->datalen);
	if (r.bad)
		log_warn("job %s/%s: record truncated, loaded what was readable", rule, vm);
	if (job_flags(j) & FSM_F_SLOT)
		slots_hold(&j->slot);
	stats_load(j);
	(*(size_t *)arg)++;
out:
	free(rule);
	free(vm);
	free(state);
	free(err);
	free(host);
	return 0;
}

size_t
job_load_all(void)
{
	size_t n = 0;

	store_scan(STORE_JOBS, "", 0, 0, 0, job_load_one, &n);
	return n;
}

void
job_resume_all(void)
{
	struct job *j;

	TAILQ_FOREACH(j, &js.jobs, link)
		fsm_dispatch(j, EV_RESUME, NULL);
}

struct job_traffic {
	int64_t last;                     /* the newest step written (Unix time / step) */
	uint64_t bytes[JOB_TRAFFIC_SLOTS];/* step k at k % JOB_TRAFFIC_SLOTS */
};

static void
traffic_add(struct job *j, uint64_t bytes, int64_t now)
{
	struct job_traffic *t = j->traffic;
	int64_t step = now / JOB_TRAFFIC_STEP_S, k;

	if (bytes == 0 && t == NULL)
		return;
	if (t == NULL) {
		t = j->traffic = xcalloc(1, sizeof(*t));
		t->last = step;
	}
	/* Steps nothing was written in since the last (at most a lap). */
	for (k = t->last + 1; k <= step && k <= t->last + JOB_TRAFFIC_SLOTS; k++)
		t->bytes[k % JOB_TRAFFIC_SLOTS] = 0;
	if (step > t->last)
		t->last = step;
	else if (step <= t->last - JOB_TRAFFIC_SLOTS)
		return; /* the clock went back more than an hour */
	t->bytes[step % JOB_TRAFFIC_SLOTS] += bytes;
}

json_t *
job_traffic_to_json(const struct job *j, int64_t now)
{
	const struct job_traffic *t = j->traffic;
	int64_t step = now / JOB_TRAFFIC_STEP_S, k;
	json_t *a = json_array();

	for (k = step - JOB_TRAFFIC_SLOTS + 1; k <= step; k++)
		json_array_append_new(a, json_integer(t != NULL && k <= t->last && k > t->last - JOB_TRAFFIC_SLOTS
		                                          ? (json_int_t)t->bytes[k % JOB_TRAFFIC_SLOTS]
		                                          : 0));
	return json_pack("{s:i,s:I,s:o}", "step_s", JOB_TRAFFIC_STEP_S, "end", (json_int_t)((step + 1) * JOB_TRAFFIC_STEP_S),
	    "bytes", a);
}

void
job_progress(struct job *j, uint64_t done, uint64_t total, double rate_bps)
{
	double now = now_mono();

	/* Less done than before: a new transfer (pass, disk) began. */
	traffic_add(j, done >= j->bytes_done ? done - j->bytes_done : done, (int64_t)time(NULL));
	j->bytes_done = done;
	j->bytes_total = total;
	j->rate_bps = rate_bps;
	if (js.observer != NULL && (now - j->last_notify >= PROGRESS_NOTIFY_S || done == total)) {
		j->last_notify = now;
		js.observer(j, "progress");
	}
}

void
job_set_error(struct job *j, const char *reason)
{
	free(j->error);
	j->error = reason ? xstrdup(reason) : NULL;
}

void
job_set_data(struct job *j, const void *data, size_t len)
{
	free(j->data);
	j->data = NULL;
	j->datalen = 0;
	if (len > 0) {
		j->data = xmalloc(len);
		memcpy(j->data, data, len);
		j->datalen = len;
	}
}

/* ---- log ---- */

static void
log_key(const struct job *j, uint64_t seq, uint8_t *out)
{
	/* The NUL after the key keeps job "a/b" from matching job "a/bc". */
	memcpy(out, j->key, j->keylen);
	out[j->keylen] = '\0';
	put_be64(out + j->keylen + 1, seq);
}

void
job_log(struct job *j, enum log_level lvl, const char *fmt, ...)
{
	struct sbuf r;
	va_list ap;
	char *msg;
	uint8_t *key = xmalloc(j->keylen + 9);

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	log_msg(lvl, "job %s/%s/%s: %s", cfg_kind_name(j->kind), j->rule, j->vm, msg);

	sbuf_init(&r);
	rec_put_u16(&r, LOG_REC_V1);
	rec_put_u64(&r, (uint64_t)time(NULL));
	rec_put_u8(&r, (uint8_t)lvl);
	rec_put_str(&r, msg);
	log_key(j, j->log_seq, key);
	store_put(STORE_LOG, key, j->keylen + 9, r.data, r.len);
	if (j->log_seq >= JOB_LOG_KEEP) {
		log_key(j, j->log_seq - JOB_LOG_KEEP, key);
		store_del(STORE_LOG, key, j->keylen + 9);
	}
	j->log_seq++;
	/* The sequence lives in the job record: keep it in step. */
	job_persist(j);
	sbuf_free(&r);
	free(key);
	free(msg);
}

struct log_collect {
	json_t *arr;
	size_t keylen;
};

static int
log_collect_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct log_collect *lc = arg;
	struct rec_reader r;
	json_t *e;
	uint64_t t;
	uint8_t lvl;
	char *msg, ts[32];
	struct tm tm;
	time_t tt;
	rec_reader_init(&r, val, vlen);

	if (klen != lc->keylen + 9)
		return 0;
	if (rec_get_u16(&r) != LOG_REC_V1)
		return 0;
	t = rec_get_u64(&r);
	lvl = rec_get_u8(&r);
	msg = rec_get_str(&r);
	if (r.bad || lvl > LOG_DEBUG) {
		free(msg);
		return 0;
	}
	tt = (time_t)t;
	localtime_r(&tt, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	e = json_pack("{s:I,s:s,s:s,s:s,s:I}", "time", (json_int_t)t, "time_local", ts, "level",
	    log_level_name((enum log_level)lvl), "message", msg,
	    "seq", (json_int_t)get_be64((const uint8_t *)key + lc->keylen + 1));
	json_array_insert_new(lc->arr, 0, e);
	free(msg);
	return 0;
}

json_t *
job_log_to_json(const struct job *j, size_t n)
{
	struct log_collect lc = { json_array(), j->keylen };
	uint8_t *prefix = xmalloc(j->keylen + 1);

	memcpy(prefix, j->key, j->keylen);
	prefix[j->keylen] = '\0';
	store_scan(STORE_LOG, prefix, j->keylen + 1, 1, n, log_collect_one, &lc);
	free(prefix);
	return lc.arr;
}

/* ---- statistics ---- */

void
job_stat_success(struct job *j, uint64_t bytes)
{
	j->stats.successes++;
	j->stats.bytes += bytes;
	j->stats.last_success = (int64_t)time(NULL);
	stats_persist(j);
}

void
job_stat_failure(struct job *j, const char *reason)
{
	j->stats.failures++;
	j->stats.unviewed_errors++;
	j->stats.last_failure = (int64_t)time(NULL);
	free(j->stats.last_error);
	j->stats.last_error = reason ? xstrdup(reason) : NULL;
	stats_persist(j);
}

void
job_stat_error(struct job *j)
{
	j->stats.unviewed_errors++;
	stats_persist(j);
}

void
job_stats_viewed(struct job *j)
{
	if (j->stats.unviewed_errors == 0)
		return;
	j->stats.unviewed_errors = 0;
	stats_persist(j);
}

json_t *
job_stats_to_json(const struct job *j)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "rule", j->rule, "vm", j->vm,
	    "kind", cfg_kind_name(j->kind), "successes", (json_int_t)j->stats.successes, "failures",
	    (json_int_t)j->stats.failures, "bytes", (json_int_t)j->stats.bytes, "unviewed_errors",
	    (json_int_t)j->stats.unviewed_errors, "last_success", (json_int_t)j->stats.last_success,
	    "last_failure", (json_int_t)j->stats.last_failure, "last_error", j->stats.last_error);
}

/* ---- presentation ---- */

const struct fsm_state_info *
job_state_info(const struct job *j)
{
	return &j->fsm.table->states[j->fsm.state];
}

unsigned
job_flags(const struct job *j)
{
	return job_state_info(j)->flags;
}

/* The commands the job's state machine takes now (a dashboard enables
 * their buttons): the request op and the event it sends. */
static const struct {
	const char *op;
	const char *event;
} actions[] = {
	{ "start", "start" }, { "stop", "stop" }, { "delete", "delete" }, { "migrate", "migrate" },
	{ "run", "run" }, { "revert", "revert" }, { "failover", "failover_temp" }, { "failback", "failback" },
	{ "restore", "restore" },
};

static json_t *
job_actions(const struct job *j)
{
	const struct fsm_row *row;
	json_t *a = json_array();
	size_t i;
	int ev;

	for (i = 0; i < ARRAY_LEN(actions); i++) {
		if ((ev = fsm_event_by_name(j->fsm.table, actions[i].event)) < 0)
			continue;
		row = fsm_lookup(j->fsm.table, j->fsm.state, ev);
		if (row != NULL && row->to != FSM_REJECT && row->to != FSM_IGNORE)
			json_array_append_new(a, json_string(actions[i].op));
	}
	return a;
}

json_t *
job_to_json(const struct job *j)
{
	const struct fsm_state_info *si = job_state_info(j);
	int progress = 0;

	if (j->bytes_total > 0)
		progress = j->bytes_done >= j->bytes_total ? 100 : (int)(j->bytes_done * 100 / j->bytes_total);
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:s?,s:b,s:i,s:s,s:I,s:I,s:o}",
	    "rule", j->rule, "vm", j->vm, "kind", cfg_kind_name(j->kind), "state", si->id,
	    "label_zh", si->label_zh, "label_en", si->label_en, "progress", progress, "bytes_done",
	    (json_int_t)j->bytes_done, "bytes_total", (json_int_t)j->bytes_total, "rate_bps",
	    (json_int_t)j->rate_bps, "error", j->error, "pending", (si->flags & FSM_F_QUEUED) != 0,
	    "queue_position", slots_position(&j->slot), "host", j->slot.host, "updated",
	    (json_int_t)j->updated, "unviewed_errors", (json_int_t)j->stats.unviewed_errors, "actions",
	    job_actions(j));
}

void
job_set_observer(void (*fn)(struct job *j, const char *what))
{
	js.observer = fn;
}

/* ---- generic enter actions ---- */

void
job_reset_backoff(struct job *j, int event)
{
	if (event != EV_PEER_BACK)
		j->invalid_backoff = INVALID_BACKOFF_MIN;
}

void
job_enter_starting(struct job *j, int event)
{
	job_reset_backoff(j, event);
	if (j->cfg == NULL) {
		/* Its rule is gone (file removed or broken at start-up). */
		fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
		return;
	}
	fsm_dispatch(j, EV_STARTED, NULL);
}

void
job_enter_queued(struct job *j, int event)
{
	slots_enqueue(&j->slot);
}

void
job_enter_stopping(struct job *j, int event)
{
	if (j->timer != NULL)
		event_del(j->timer);
	/* Nothing is in flight once the kind's work has been cancelled; the
	 * kinds' own clean-up (snapshot removal) hooks in here. */
	fsm_dispatch(j, EV_OK, NULL);
}

static void
job_invalid_retry(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	fsm_dispatch(j, EV_PEER_BACK, NULL);
}

void
job_enter_invalid(struct job *j, int event)
{
	struct timeval tv = { j->invalid_backoff, 0 };

	if (js.base == NULL)
		return;
	if (j->timer == NULL)
		j->timer = evtimer_new(js.base, job_invalid_retry, j);
	evtimer_add(j->timer, &tv);
	job_log(j, LOG_INFO, "will try again in %d s", j->invalid_backoff);
	j->invalid_backoff *= 2;
	if (j->invalid_backoff > INVALID_BACKOFF_MAX)
		j->invalid_backoff = INVALID_BACKOFF_MAX;
}

void
job_enter_not_built(struct job *j, int event)
{
	job_log(j, LOG_WARN, "%s rules do not move data yet in this vmferryd (only migration rules do): the job "
	                     "holds here until a version that runs them", cfg_kind_name(j->kind));
}

void
job_enter_deleting(struct job *j, int event)
{
	if (j->timer != NULL)
		event_del(j->timer);
	fsm_dispatch(j, EV_CLEANED, NULL);
}

void
job_forget(struct job *j, int event)
{
	if (j->forgotten)
		return;
	log_info("job %s/%s/%s: deleted", cfg_kind_name(j->kind), j->rule, j->vm);
	job_cancel_work(j);
	store_del(STORE_JOBS, j->key, j->keylen);
	store_del(STORE_STATS, j->key, j->keylen);
	{
		uint8_t *prefix = xmalloc(j->keylen + 1);

		memcpy(prefix, j->key, j->keylen);
		prefix[j->keylen] = '\0';
		store_del_prefix(STORE_LOG, prefix, j->keylen + 1);
		free(prefix);
	}
	slots_dequeue(&j->slot);
	slots_release(&j->slot);
	if (j->timer != NULL)
		event_del(j->timer);
	if (js.observer != NULL)
		js.observer(j, "deleted");
	TAILQ_REMOVE(&js.jobs, j, link);
	js.njobs--;
	j->forgotten = 1;
	job_release(j);
}
