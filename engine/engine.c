/* The daemon: wires configuration, jobs, transfer slots, store and the status
 * socket together on the one loop.  Everything that happens arrives here
 * as an event: signals, config directory changes, socket requests. */
#include "engine/engine.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/bw.h"
#include "engine/config.h"
#include "engine/config_store.h"
#include "engine/ctl.h"
#include "engine/http_api.h"
#include "engine/core/http.h"
#include "engine/core/workers.h"
#include "engine/jobs/backup.h"
#include "engine/jobs/instant.h"
#include "engine/jobs/job.h"
#include "engine/jobs/repos.h"
#include "engine/jobs/runtime.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/jobs/kinds.h"
#include "engine/platform.h"
#include "engine/runs.h"
#include "drivers/vsops.h"
#include "engine/slots.h"
#include "engine/core/store.h"
#include "engine/core/units.h"
#include "engine/core/util.h"
#include "fsm/tables.h"

/* VMFERRY_VERSION comes from CMakeLists.txt (project VERSION). */
#define RELOAD_DEBOUNCE_MS 200
/* Commits failing this long (the state directory is full or broken) make
 * the working jobs 失效: a short hiccup does not interrupt transfers. */
#define STORE_STALL_S 5

static struct {
	const struct engine_opts *opts;
	struct event_base *base;
	struct cfg_loader loader;
	struct cfg_errors errors;     /* of the last reload */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *inotify_ev, *reload_ev;
	int inotify_fd;
	time_t started;
	uint64_t transitions;
	struct rule_bucket {
		enum cfg_kind kind;
		char *rule;
		struct bw_bucket *bucket;
	} *buckets;
	size_t nbuckets;
} eng;

const struct config *
engine_config(void)
{
	return &eng.loader.cur;
}

const char *
engine_state_dir(void)
{
	return eng.opts->state_dir;
}

struct bw_bucket *
engine_bucket(enum cfg_kind kind, const char *rule)
{
	size_t i;

	for (i = 0; i < eng.nbuckets; i++)
		if (eng.buckets[i].kind == kind && strcmp(eng.buckets[i].rule, rule) == 0)
			return eng.buckets[i].bucket;
	eng.buckets = xreallocarray(eng.buckets, eng.nbuckets + 1, sizeof(*eng.buckets));
	eng.buckets[eng.nbuckets].kind = kind;
	eng.buckets[eng.nbuckets].rule = xstrdup(rule);
	eng.buckets[eng.nbuckets].bucket = xcalloc(1, sizeof(struct bw_bucket));
	return eng.buckets[eng.nbuckets++].bucket;
}

/* ---- tombstones: a deleted job is not re-created from an unchanged rule ---- */

static size_t
tomb_key(const struct job *j, uint8_t *buf, size_t cap)
{
	size_t n = 5 + j->keylen;

	if (n > cap)
		return 0;
	memcpy(buf, "tomb:", 5);
	memcpy(buf + 5, j->key, j->keylen);
	return n;
}

static size_t
tomb_key_for(enum cfg_kind kind, const char *rule, const char *vm, uint8_t *buf, size_t cap)
{
	size_t rl = strlen(rule), vl = strlen(vm), n = 5 + 1 + rl + 1 + vl;

	if (n > cap)
		return 0;
	memcpy(buf, "tomb:", 5);
	buf[5] = (uint8_t)kind;
	memcpy(buf + 6, rule, rl);
	buf[6 + rl] = '\0';
	memcpy(buf + 7 + rl, vm, vl);
	return n;
}

static int
tomb_matches(enum cfg_kind kind, const char *rule, const char *vm, uint64_t digest)
{
	uint8_t key[1024];
	size_t klen = tomb_key_for(kind, rule, vm, key, sizeof(key));
	void *val;
	size_t vlen;
	int match;

	if (klen == 0 || !store_get(STORE_META, key, klen, &val, &vlen))
		return 0;
	match = vlen == 8 && get_be64(val) == digest;
	free(val);
	if (!match)
		store_del(STORE_META, key, klen);
	return match;
}

/* ---- configuration ---- */

static int
rule_has_vm(const struct cfg_rule *r, const char *vm)
{
	size_t i;

	for (i = 0; i < r->nvms; i++)
		if (strcmp(r->vms[i], vm) == 0)
			return 1;
	return 0;
}

static void
engine_apply_config(int initial)
{
	const struct config *c = &eng.loader.cur;
	struct job *j, *next;
	size_t i, k;

	slots_set_limits(c->system.max_tasks, c->system.max_tasks_per_host);
	platform_apply_config(c);

	/* Re-point every job at its rule; jobs whose rule (or VM) is gone stop. */
	for (j = TAILQ_FIRST(job_all()); j != NULL; j = next) {
		const struct cfg_rule *r = config_rule(c, j->kind, j->rule);

		next = TAILQ_NEXT(j, link);
		if (r != NULL && !rule_has_vm(r, j->vm))
			r = NULL;
		if (r != NULL && j->cfg == NULL && !initial) {
			j->cfg = r;
			if (j->config_changed != NULL)
				j->config_changed(j);
			job_log(j, LOG_INFO, "its rule is configured again");
			if (job_flags(j) & FSM_F_RESTING)
				fsm_dispatch(j, EV_START, NULL);
			continue;
		}
		if (r != NULL && j->cfg != NULL && j->cfg != r && j->cfg->digest != r->digest)
			job_log(j, LOG_INFO, "rule %s changed (%s:%d)", r->name, r->loc.file, r->loc.line);
		if (r == NULL && j->cfg != NULL && !initial)
			job_log(j, LOG_WARN, "its rule or VM was removed from the configuration; stopping");
		j->cfg = r;
		if (r != NULL && j->config_changed != NULL)
			j->config_changed(j);
		if (r == NULL && !initial)
			fsm_dispatch(j, EV_RULE_REMOVED, "its rule is no longer configured");
	}

	/* New rules and VMs get jobs. */
	for (i = 0; i < c->nrules; i++) {
		const struct cfg_rule *r = c->rules[i];

		for (k = 0; k < r->nvms; k++) {
			if (job_find(r->kind, r->name, r->vms[k]) != NULL)
				continue;
			if (tomb_matches(r->kind, r->name, r->vms[k], r->digest))
				continue;
			job_create(r->kind, r->name, r->vms[k], r);
		}
	}
}

/* Reads the config directory again and says what came of it, the same at
 * start-up and on a reload; the last good versions go to the store for the
 * next start.  Returns the number of errors. */
static int
engine_load_config(void)
{
	size_t i;
	int n;

	cfg_errors_free(&eng.errors);
	n = cfg_loader_reload(&eng.loader, &eng.errors);
	for (i = 0; i < eng.errors.n; i++)
		log_err("config: %s", eng.errors.msgs[i]);
	for (i = 0; i < eng.loader.ngood; i++)
		if (eng.loader.good[i]->fallback)
			log_warn("config: %s: the last good version of this file is in effect", eng.loader.good[i]->path);
	config_store_save(&eng.loader);
	return n;
}

static void
engine_reload(const char *why)
{
	int n = engine_load_config();

	log_info("configuration %s: %zu rules, %d error%s", why, eng.loader.cur.nrules, n, n == 1 ? "" : "s");
	engine_apply_config(0);
	runs_apply(&eng.loader.cur);
	http_api_apply(eng.base, &eng.loader.cur.system.http);
}

static void
engine_reload_cb(evutil_socket_t fd, short what, void *arg)
{
	engine_reload("reloaded");
}

static void
engine_inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[8192];
	struct timeval tv = { 0, RELOAD_DEBOUNCE_MS * 1000 };

	/* Editors write files in several steps: wait until it settles. */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	evtimer_add(eng.reload_ev, &tv);
}

static int
engine_watch_config(void)
{
	eng.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (eng.inotify_fd < 0)
		return -1;
	if (inotify_add_watch(eng.inotify_fd, eng.opts->config_dir,
	        IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_MODIFY |
	            IN_ATTRIB) < 0) {
		log_err("cannot watch %s: %s", eng.opts->config_dir, strerror(errno));
		close(eng.inotify_fd);
		eng.inotify_fd = -1;
		return -1;
	}
	eng.inotify_ev = event_new(eng.base, eng.inotify_fd, EV_READ | EV_PERSIST, engine_inotify_cb, NULL);
	event_add(eng.inotify_ev, NULL);
	return 0;
}

/* ---- signals ---- */

static void
engine_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		engine_reload("reloaded (SIGHUP)");
		return;
	}
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(eng.base, NULL);
}

/* ---- status socket requests ---- */

static int
kind_from_name(const char *s, enum cfg_kind *out)
{
	const struct job_kind *k = job_kind_named(s);

	*out = k != NULL ? k->kind : CFG_SYSTEM; /* no job kind */
	return k != NULL;
}

/* Find which kind a rule name refers to: configured rules first, then
 * jobs left from removed rules.  Returns 0 and sets *err when unknown or
 * ambiguous. */
static int
resolve_rule(const struct request *req, enum cfg_kind *kind, json_t **err)
{
	enum cfg_kind want, k;
	int have_kind = kind_from_name(req->kind, &want);
	int found = 0;
	size_t i;
	struct job *j;

	for (i = 0; job_kinds[i] != NULL; i++) {
		int exists;

		k = job_kinds[i]->kind;
		exists = config_rule(&eng.loader.cur, k, req->rule) != NULL;
		TAILQ_FOREACH(j, job_all(), link)
			if (j->kind == k && strcmp(j->rule, req->rule) == 0)
				exists = 1;
		if (!exists || (have_kind && k != want))
			continue;
		if (found) {
			*err = ctl_error("rule name %s is used by more than one kind; say which with --kind", req->rule);
			return 0;
		}
		*kind = k;
		found = 1;
	}
	if (!found) {
		*err = have_kind ? ctl_error("no %s rule named %s", req->kind, req->rule)
		                 : ctl_error("no rule named %s", req->rule);
		return 0;
	}
	return 1;
}

static int
job_matches(const struct job *j, const struct request *req, int have_kind, enum cfg_kind kind)
{
	if (have_kind && j->kind != kind)
		return 0;
	if (req->rule != NULL && strcmp(j->rule, req->rule) != 0)
		return 0;
	if (req->vm != NULL && strcmp(j->vm, req->vm) != 0)
		return 0;
	return 1;
}

static json_t *
windows_to_json(const struct cfg_window *w, size_t n)
{
	static const char *const days[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	json_t *arr = json_array();
	size_t i;
	int d;

	for (i = 0; i < n; i++) {
		json_t *dl = json_array();
		char from[24], to[24];

		for (d = 0; d < 7; d++)
			if (w[i].days & (1u << d))
				json_array_append_new(dl, json_string(days[d]));
		snprintf(from, sizeof(from), "%02d:%02d", w[i].from_min / 60, w[i].from_min % 60);
		snprintf(to, sizeof(to), "%02d:%02d", w[i].to_min / 60, w[i].to_min % 60);
		json_array_append_new(arr, json_pack("{s:o,s:s,s:s,s:I}", "days", dl, "from", from, "to", to,
		                               "limit_bps", (json_int_t)w[i].limit_bps));
	}
	return arr;
}

static json_t *
rule_to_json(const struct cfg_rule *r)
{
	static const char *const cutovers[] = { "shutdown", "poweroff", "none" };
	const struct cfg_options *o = &r->options;
	json_t *vms = json_array(), *obj;
	size_t i;

	for (i = 0; i < r->nvms; i++)
		json_array_append_new(vms, json_string(r->vms[i]));
	obj = json_pack("{s:s,s:s,s:s,s:i,s:s?,s:o,s:s?}", "name", r->name, "kind", cfg_kind_name(r->kind),
	    "file", r->loc.file, "line", r->loc.line, "source_platform", r->source_platform, "vms", vms,
	    "node", r->node);
	if (r->kind != CFG_BACKUP)
		json_object_set_new(obj, "target",
		    json_pack("{s:s?,s:s?,s:s?,s:s?,s:s,s:s?,s:s?}", "platform", r->target.platform, "datacenter",
		        r->target.datacenter, "host", r->target.host, "datastore", r->target.datastore, "name",
		        r->target.name ? r->target.name : "{vm}", "folder", r->target.folder, "resource_pool",
		        r->target.resource_pool));
	if (r->kind == CFG_BACKUP) {
		json_object_set_new(obj, "repository", r->repository ? json_string(r->repository) : json_null());
		json_object_set_new(obj, "encryption",
		    r->key_file ? json_pack("{s:s}", "key_file", r->key_file) : json_null());
		json_object_set_new(obj, "retention", json_integer(r->retention));
	}
	if (r->kind == CFG_REPLICATION)
		json_object_set_new(obj, "keep_history", json_integer(r->keep_history));
	if (r->template_name != NULL)
		json_object_set_new(obj, "template", json_string(r->template_name));
	json_object_set_new(obj, "options",
	    json_pack("{s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:s}", "fast_transfer", o->fast_transfer, "quiesce",
	        o->quiesce, "lan_free", o->lan_free, "memory_snapshot", o->memory_snapshot, "auto_migrate",
	        o->auto_migrate, "auto_sync", o->auto_sync, "delete_target_on_rule_delete",
	        o->delete_target_on_rule_delete, "delete_backup_data_on_rule_delete",
	        o->delete_backup_data_on_rule_delete, "power_on_target", o->power_on_target, "cutover",
	        cutovers[o->cutover]));
	json_object_set_new(obj, "bandwidth", windows_to_json(r->windows, r->nwindows));
	return obj;
}

static json_t *
errors_to_json(void)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; i < eng.errors.n; i++)
		json_array_append_new(arr, json_string(eng.errors.msgs[i]));
	return arr;
}

/* The state store's health: whether commits work, why not, the map. */
static json_t *
store_to_json(void)
{
	struct store_stats ss;
	double failing_s;
	const char *why = store_failure(&failing_s);

	store_get_stats(&ss);
	return json_pack("{s:b,s:s?,s:i,s:I,s:I,s:I,s:I}", "ok", why == NULL, "error", why, "failing_s",
	    (int)failing_s, "commits", (json_int_t)ss.commits, "commit_failures", (json_int_t)ss.commit_failures,
	    "map_size", (json_int_t)ss.map_size, "map_grows", (json_int_t)ss.map_grows);
}

static json_t *
op_ping(void)
{
	return json_pack("{s:b,s:s,s:I,s:I,s:i,s:i,s:i,s:i,s:o,s:I,s:o}", "ok", 1, "version", VMFERRY_VERSION,
	    "uptime_s", (json_int_t)(time(NULL) - eng.started), "jobs", (json_int_t)job_count(), "active",
	    slots_active_total(), "pending", slots_queued_total(), "clients", ctl_client_count(), "max_clients",
	    ctl_client_max(), "config_errors", errors_to_json(), "config_generation",
	    (json_int_t)eng.loader.generation, "store", store_to_json());
}

static json_t *
op_rules(const struct request *req)
{
	enum cfg_kind kind;
	int have_kind = kind_from_name(req->kind, &kind);
	json_t *arr = json_array(), *resp;
	size_t i;

	for (i = 0; i < eng.loader.cur.nrules; i++) {
		const struct cfg_rule *r = eng.loader.cur.rules[i];
		json_t *o, *states = json_object();
		struct job *j;
		int njobs = 0;

		if (have_kind && r->kind != kind)
			continue;
		TAILQ_FOREACH(j, job_all(), link) {
			if (j->kind != r->kind || strcmp(j->rule, r->name) != 0)
				continue;
			njobs++;
			json_object_set_new(states, job_state_info(j)->id,
			    json_integer(json_integer_value(json_object_get(states, job_state_info(j)->id)) + 1));
		}
		o = rule_to_json(r);
		json_object_set_new(o, "jobs", json_integer(njobs));
		json_object_set_new(o, "states", states);
		json_array_append_new(arr, o);
	}
	resp = json_pack("{s:b,s:o,s:o}", "ok", 1, "rules", arr, "config_errors", errors_to_json());
	return resp;
}

/* The jobs a request names (rule, VM, kind), as the socket shows them. */
static json_t *
jobs_json(const struct request *req)
{
	enum cfg_kind kind;
	int have_kind = kind_from_name(req->kind, &kind);
	json_t *arr = json_array();
	struct job *j;

	TAILQ_FOREACH(j, job_all(), link)
		if (job_matches(j, req, have_kind, kind))
			json_array_append_new(arr, job_to_json(j));
	return arr;
}

static json_t *
op_jobs(const struct request *req)
{
	json_t *arr = jobs_json(req);

	return json_pack("{s:b,s:o,s:i,s:i,s:s?}", "ok", 1, "jobs", arr, "pending", slots_queued_total(), "active",
	    slots_active_total(), "store_error", store_failure(NULL));
}

static json_t *
op_show(const struct request *req)
{
	enum cfg_kind kind;
	const struct cfg_rule *r;
	json_t *err = NULL, *jobs = json_array(), *resp;
	struct job *j;

	if (!resolve_rule(req, &kind, &err)) {
		json_decref(jobs);
		return err;
	}
	r = config_rule(&eng.loader.cur, kind, req->rule);
	TAILQ_FOREACH(j, job_all(), link)
		if (job_matches(j, req, 1, kind))
			json_array_append_new(jobs, job_to_json(j));
	if (req->vm != NULL && json_array_size(jobs) == 0) {
		json_decref(jobs);
		return ctl_error("rule %s has no job for VM %s", req->rule, req->vm);
	}
	resp = json_pack("{s:b,s:o,s:o}", "ok", 1, "rule", r ? rule_to_json(r) : json_null(), "jobs", jobs);
	if (req->vm != NULL) {
		const struct job_kind *k = job_kind_of(kind);
		json_t *details;

		j = job_find(kind, req->rule, req->vm);
		json_object_set_new(resp, "log", job_log_to_json(j, 20));
		json_object_set_new(resp, "traffic", job_traffic_to_json(j, (int64_t)time(NULL)));
		if (k->details != NULL && (details = k->details(j)) != NULL)
			json_object_set_new(resp, "details", details);
	}
	return resp;
}

static json_t *
op_log(const struct request *req)
{
	enum cfg_kind kind;
	json_t *err = NULL;
	struct job *j;

	if (!resolve_rule(req, &kind, &err))
		return err;
	if ((j = job_find(kind, req->rule, req->vm)) == NULL)
		return ctl_error("rule %s has no job for VM %s", req->rule, req->vm);
	return json_pack("{s:b,s:s,s:s,s:o}", "ok", 1, "rule", j->rule, "vm", j->vm, "log",
	    job_log_to_json(j, (size_t)req->limit));
}

static json_t *
op_stats(const struct request *req)
{
	enum cfg_kind kind;
	int have_kind = kind_from_name(req->kind, &kind);
	json_t *err = NULL, *jobs = json_array(), *rules = json_object();
	struct job *j;

	if (req->rule != NULL) {
		if (!resolve_rule(req, &kind, &err)) {
			json_decref(jobs);
			json_decref(rules);
			return err;
		}
		have_kind = 1;
	}
	TAILQ_FOREACH(j, job_all(), link) {
		json_t *t;
		char *rk;

		if (!job_matches(j, req, have_kind, kind))
			continue;
		json_array_append_new(jobs, job_stats_to_json(j));
		rk = xasprintf("%s/%s", cfg_kind_name(j->kind), j->rule);
		t = json_object_get(rules, rk);
		if (t == NULL) {
			t = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "rule", j->rule, "kind", cfg_kind_name(j->kind),
			    "successes", (json_int_t)0, "failures", (json_int_t)0, "bytes", (json_int_t)0,
			    "unviewed_errors", (json_int_t)0);
			json_object_set_new(rules, rk, t);
		}
		json_object_set_new(t, "successes",
		    json_integer(json_integer_value(json_object_get(t, "successes")) + (json_int_t)j->stats.successes));
		json_object_set_new(t, "failures",
		    json_integer(json_integer_value(json_object_get(t, "failures")) + (json_int_t)j->stats.failures));
		json_object_set_new(t, "bytes",
		    json_integer(json_integer_value(json_object_get(t, "bytes")) + (json_int_t)j->stats.bytes));
		json_object_set_new(t, "unviewed_errors",
		    json_integer(json_integer_value(json_object_get(t, "unviewed_errors")) +
		        (json_int_t)j->stats.unviewed_errors));
		free(rk);
		/* Seed 002: viewing the statistics clears the unviewed errors. */
		job_stats_viewed(j);
	}
	{
		json_t *arr = json_array(), *v;
		const char *k;

		json_object_foreach(rules, k, v)
			json_array_append(arr, v);
		json_decref(rules);
		return json_pack("{s:b,s:o,s:o}", "ok", 1, "rules", arr, "jobs", jobs);
	}
}

static json_t *
op_watch(struct ctl_client *c, const struct request *req)
{
	json_t *arr = jobs_json(req);

	ctl_client_watch(c, req->rule, req->kind);
	return json_pack("{s:b,s:b,s:o}", "ok", 1, "watching", 1, "jobs", arr);
}

/* Which rule of each kind claims a VM of a platform (the seed's
 * "(已迁移)/(已复制)" marks). */
static json_t *
vm_claims(const char *platform, const char *vm)
{
	json_t *o = json_object();
	size_t i, k;

	for (i = 0; i < eng.loader.cur.nrules; i++) {
		const struct cfg_rule *r = eng.loader.cur.rules[i];

		if (r->source_platform == NULL || strcmp(r->source_platform, platform) != 0)
			continue;
		for (k = 0; k < r->nvms; k++)
			if (strcmp(r->vms[k], vm) == 0)
				json_object_set_new(o, cfg_kind_name(r->kind), json_string(r->name));
	}
	return o;
}

struct inv_req {
	uint64_t client;
	char *platform;
	char *id;
};

static void
inventory_answer(const struct vs_inventory *inv, const char *error, int refused, double age_s, void *arg)
{
	struct inv_req *ir = arg;
	json_t *resp, *vms, *hosts, *dss;
	size_t i, k;

	if (inv == NULL) {
		resp = ctl_error("inventory of %s: %s", ir->platform, error);
	} else {
		vms = json_array();
		hosts = json_array();
		dss = json_array();
		for (i = 0; i < inv->nvms; i++) {
			const struct vs_vm *v = &inv->vms[i];
			json_t *disks = json_array();
			int independent = 0;

			for (k = 0; k < v->ndisks; k++) {
				json_array_append_new(disks, json_pack("{s:s?,s:I,s:s?,s:s?}", "label", v->disks[k].label,
				                                 "capacity", (json_int_t)v->disks[k].capacity, "mode",
				                                 v->disks[k].mode, "file", v->disks[k].file));
				if (v->disks[k].mode != NULL && strncmp(v->disks[k].mode, "independent", 11) == 0)
					independent = 1;
			}
			json_array_append_new(vms,
			    json_pack("{s:s,s:s?,s:s?,s:s?,s:s?,s:i,s:i,s:b,s:b,s:o,s:o,s:s*}", "name", v->name, "power",
			        v->power, "host", v->host_name, "datacenter", v->datacenter, "datastore", v->datastore, "cpus",
			        v->cpus, "memory_mb", v->memory_mb, "cbt", v->cbt, "independent_disks", independent, "disks",
			        disks, "claimed_by", vm_claims(ir->platform, v->name), "problem", v->problem));
		}
		for (i = 0; i < inv->nhosts; i++)
			json_array_append_new(hosts, json_pack("{s:s?,s:s?}", "name", inv->hosts[i].name, "datacenter",
			                                 inv->hosts[i].datacenter));
		for (i = 0; i < inv->ndatastores; i++) {
			const struct vs_datastore *d = &inv->datastores[i];
			json_t *o = json_pack("{s:s?,s:s?,s:I,s:I,s:s?}", "name", d->name, "datacenter", d->datacenter,
			    "capacity", (json_int_t)d->capacity, "free", (json_int_t)d->free, "type", d->type);

			if (d->vmfs_major > 0)
				json_object_set_new(o, "vmfs_version", json_integer(d->vmfs_major));
			json_array_append_new(dss, o);
		}
		resp = json_pack("{s:b,s:s,s:f,s:o,s:o,s:o}", "ok", 1, "platform", ir->platform, "age_s", age_s, "vms", vms,
		    "hosts", hosts, "datastores", dss);
	}
	if (ir->id != NULL)
		json_object_set_new(resp, "id", json_string(ir->id));
	ctl_reply(ir->client, resp);
	free(ir->platform);
	free(ir->id);
	free(ir);
}

static json_t *
op_inventory(struct ctl_client *c, const struct request *req)
{
	struct inv_req *ir;

	if (config_platform(&eng.loader.cur, req->platform) == NULL)
		return ctl_error("no platform named %s", req->platform);
	ir = xcalloc(1, sizeof(*ir));
	ir->client = ctl_client_id(c);
	ir->platform = xstrdup(req->platform);
	ir->id = req->id ? xstrdup(req->id) : NULL;
	if (platform_inventory(req->platform, req->refresh, inventory_answer, ir) != 0) {
		free(ir->platform);
		free(ir->id);
		free(ir);
		return ctl_error("platform %s has no client", req->platform);
	}
	/* Answered from the cache at once, or later by inventory_answer. */
	return NULL;
}

static const char *
result_name(enum fsm_result r)
{
	switch (r) {
	case FSM_DONE: return "done";
	case FSM_IGNORED: return "ignored";
	default: return "rejected";
	}
}

/* Send one event to the rule's jobs (or one VM's) and report per job. */
static json_t *
op_dispatch(const struct request *req, int event, enum cfg_kind only_kind, int kind_fixed)
{
	enum cfg_kind kind;
	json_t *err = NULL, *results = json_array(), *resp;
	struct job *j, *next;
	int matched = 0, done = 0, rejected = 0;
	char *why = NULL;

	if (kind_fixed) {
		if (req->kind != NULL && !str_eq(req->kind, cfg_kind_name(only_kind))) {
			json_decref(results);
			return ctl_error("%s applies to %s rules only", request_op_name(req->op), cfg_kind_name(only_kind));
		}
		kind = only_kind;
		if (config_rule(&eng.loader.cur, kind, req->rule) == NULL && job_find(kind, req->rule, req->vm ? req->vm : "") == NULL) {
			int any = 0;

			TAILQ_FOREACH(j, job_all(), link)
				any |= j->kind == kind && strcmp(j->rule, req->rule) == 0;
			if (!any) {
				json_decref(results);
				return ctl_error("no %s rule named %s", cfg_kind_name(kind), req->rule);
			}
		}
	} else if (!resolve_rule(req, &kind, &err)) {
		json_decref(results);
		return err;
	}

	/* start on a deleted job brings it back. */
	if (event == EV_START && req->vm != NULL && job_find(kind, req->rule, req->vm) == NULL) {
		const struct cfg_rule *r = config_rule(&eng.loader.cur, kind, req->rule);
		uint8_t key[1024];
		size_t klen = tomb_key_for(kind, req->rule, req->vm, key, sizeof(key));

		if (r != NULL && rule_has_vm(r, req->vm)) {
			if (klen)
				store_del(STORE_META, key, klen);
			j = job_create(kind, req->rule, req->vm, r);
			json_array_append_new(results, json_pack("{s:s,s:s,s:s}", "vm", j->vm, "result", "created",
			                                    "state", job_state_info(j)->id));
			return json_pack("{s:b,s:o}", "ok", 1, "results", results);
		}
	}

	for (j = TAILQ_FIRST(job_all()); j != NULL; j = next) {
		const struct fsm_state_info *before;
		enum fsm_result res;

		next = TAILQ_NEXT(j, link);
		if (!job_matches(j, req, 1, kind))
			continue;
		matched++;
		before = job_state_info(j);
		if (event == EV_DELETE) {
			uint8_t key[1024];
			size_t klen = tomb_key(j, key, sizeof(key));
			uint8_t dig[8];

			put_be64(dig, j->cfg ? j->cfg->digest : 0);
			if (klen && j->cfg != NULL)
				store_put(STORE_META, key, klen, dig, 8);
		}
		if (job_kind_of(j->kind)->before_command != NULL) {
			char *refused = NULL;

			if (job_kind_of(j->kind)->before_command(j, event, req, &refused) != 0) {
				rejected++;
				if (why == NULL)
					why = refused;
				else
					free(refused);
				json_array_append_new(results, json_pack("{s:s,s:s,s:s,s:s}", "vm", j->vm, "result",
				                                    "rejected", "state_before", before->id, "state", before->id));
				continue;
			}
		}
		res = fsm_dispatch(j, event, event == EV_STOP ? "stopped by the user" : NULL);
		if (res == FSM_DONE)
			done++;
		if (res == FSM_REJECTED) {
			rejected++;
			if (why == NULL)
				why = xasprintf("%s is %s (%s); %s is not possible in that state", j->vm, before->id,
				    before->label_zh, request_op_name(req->op));
		}
		json_array_append_new(results, json_pack("{s:s,s:s,s:s,s:s}", "vm", j->vm, "result", result_name(res),
		                                    "state_before", before->id, "state",
		                                    res == FSM_DONE && j->forgotten ? "deleted" : job_state_info(j)->id));
	}
	if (matched == 0) {
		json_decref(results);
		free(why);
		if (req->vm != NULL)
			return ctl_error("rule %s has no job for VM %s", req->rule, req->vm);
		return ctl_error("rule %s has no jobs", req->rule);
	}
	if (rejected == matched) {
		json_decref(results);
		resp = ctl_error("%s", why);
		free(why);
		return resp;
	}
	free(why);
	return json_pack("{s:b,s:o}", "ok", 1, "results", results);
}

static json_t *
engine_handle(struct ctl_client *c, const struct request *req)
{
	switch (req->op) {
	case OP_PING:
		return op_ping();
	case OP_RULES:
		return op_rules(req);
	case OP_JOBS:
		return op_jobs(req);
	case OP_SHOW:
		return op_show(req);
	case OP_LOG:
		return op_log(req);
	case OP_STATS:
		return op_stats(req);
	case OP_WATCH:
		return op_watch(c, req);
	case OP_START:
		return op_dispatch(req, EV_START, CFG_MIGRATION, 0);
	case OP_STOP:
		return op_dispatch(req, EV_STOP, CFG_MIGRATION, 0);
	case OP_DELETE:
		return op_dispatch(req, EV_DELETE, CFG_MIGRATION, 0);
	case OP_MIGRATE:
		return op_dispatch(req, MIG_EV_MIGRATE, CFG_MIGRATION, 1);
	case OP_RELOAD:
		engine_reload("reloaded (request)");
		return json_pack("{s:b,s:o,s:I}", "ok", 1, "config_errors", errors_to_json(), "config_generation",
		    (json_int_t)eng.loader.generation);
	case OP_RUN:
		if (str_eq(req->kind, "backup") ||
		    (config_rule(&eng.loader.cur, CFG_REPLICATION, req->rule) == NULL &&
		        config_rule(&eng.loader.cur, CFG_BACKUP, req->rule) != NULL))
			return op_dispatch(req, BAK_EV_RUN, CFG_BACKUP, 1);
		if (req->mode != NULL)
			return ctl_error("run: --mode applies to backup rules only");
		return op_dispatch(req, REP_EV_RUN, CFG_REPLICATION, 1);
	case OP_FAILOVER:
		return op_dispatch(req, req->permanent ? REP_EV_FAILOVER_PERM : REP_EV_FAILOVER_TEMP, CFG_REPLICATION, 1);
	case OP_FAILBACK:
		return op_dispatch(req, REP_EV_FAILBACK, CFG_REPLICATION, 1);
	case OP_REVERT:
		return op_dispatch(req, REP_EV_REVERT, CFG_REPLICATION, 1);
	case OP_RESTORE:
		if (str_eq(req->target, "instant"))
			return instant_restore(c, req);
		return op_dispatch(req, BAK_EV_RESTORE, CFG_BACKUP, 1);
	case OP_INSTANT:
		return instant_op(c, req);
	case OP_VERIFY:
		return bak_verify(c, req);
	case OP_INVENTORY:
		return op_inventory(c, req);
	case OP_COUNT:
		break;
	}
	return ctl_error("unsupported op");
}

/* ---- job changes to watchers ---- */

static void
engine_job_changed(struct job *j, const char *what)
{
	json_t *ev = json_pack("{s:s,s:o,s:I}", "event", what, "job", job_to_json(j), "time", (json_int_t)time(NULL));

	if (strcmp(what, "state") == 0) {
		eng.transitions++;
		runs_job_changed(j);
	}
	ctl_broadcast(ev, j->rule, cfg_kind_name(j->kind));
	json_decref(ev);
}

/* Commits keep failing (the state directory is full, or its disk
 * broken).  Nothing new starts meanwhile (after-commit work waits), so the
 * jobs at work are told: they go to 失效 with the reason, which stops
 * their transfers, and start again by themselves from their last recorded
 * checkpoints once commits work again.  Their 失效 is itself recorded only
 * then: a crash meanwhile restarts them from their last recorded state. */
static void
engine_store_failing(const char *reason, double failing_s)
{
	struct job *j, *next;

	if (reason == NULL || failing_s < STORE_STALL_S || fsm_quiesced())
		return;
	for (j = TAILQ_FIRST(job_all()); j != NULL; j = next) {
		next = TAILQ_NEXT(j, link);
		if (!(job_flags(j) & FSM_F_SLOT))
			continue;
		job_log(j, LOG_WARN, "%s", reason);
		fsm_dispatch(j, EV_PEER_LOST, reason);
	}
}

/* ---- run ---- */

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	/* Many status clients and many parallel transfers need descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
engine_run(const struct engine_opts *o)
{
	char *store_dir;
	size_t n;
	int rc = -1;

	memset(&eng, 0, sizeof(eng));
	eng.opts = o;
	eng.inotify_fd = -1;
	eng.started = time(NULL);
	if (o->verbose)
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	if (mkdir(o->state_dir, 0700) != 0 && errno != EEXIST) {
		log_err("cannot create state directory %s: %s", o->state_dir, strerror(errno));
		return -1;
	}
	eng.base = loop_init();
	workers_init(eng.base, 0);
	store_dir = xasprintf("%s/store", o->state_dir);
	if (store_open(store_dir, eng.base) != 0) {
		free(store_dir);
		loop_free();
		return -1;
	}
	free(store_dir);
	if (http_init(eng.base) != 0) {
		log_err("cannot initialise libcurl");
		goto out_store;
	}
	slots_init(eng.base);
	job_init(eng.base);
	job_set_observer(engine_job_changed);
	runs_init(eng.base);
	store_set_failure_hook(engine_store_failing);

	cfg_loader_init(&eng.loader, o->config_dir);
	config_store_restore(&eng.loader);
	engine_load_config();

	n = job_load_all();
	log_info("vmferryd %s starting: %zu jobs restored, %zu rules configured", VMFERRY_VERSION, n,
	    eng.loader.cur.nrules);
	engine_apply_config(1);
	rt_sweep_trash();
	job_resume_all();
	instant_init(eng.base);
	runs_apply(&eng.loader.cur);

	if (ctl_open(eng.base, o->socket_path, engine_handle) != 0) {
		log_err("cannot open the status socket %s", o->socket_path);
		goto out_jobs;
	}
	http_api_apply(eng.base, &eng.loader.cur.system.http);
	if (engine_watch_config() != 0)
		log_warn("config directory is not watched; send SIGHUP to reload");
	eng.reload_ev = evtimer_new(eng.base, engine_reload_cb, NULL);
	eng.sig_term = evsignal_new(eng.base, SIGTERM, engine_signal_cb, NULL);
	eng.sig_int = evsignal_new(eng.base, SIGINT, engine_signal_cb, NULL);
	eng.sig_hup = evsignal_new(eng.base, SIGHUP, engine_signal_cb, NULL);
	event_add(eng.sig_term, NULL);
	event_add(eng.sig_int, NULL);
	event_add(eng.sig_hup, NULL);
	log_info("listening on %s", o->socket_path);

	event_base_dispatch(eng.base);
	rc = 0;

	event_free(eng.sig_term);
	event_free(eng.sig_int);
	event_free(eng.sig_hup);
	event_free(eng.reload_ev);
	if (eng.inotify_ev != NULL)
		event_free(eng.inotify_ev);
	if (eng.inotify_fd >= 0)
		close(eng.inotify_fd);
	http_api_close();
	ctl_close();
out_jobs:
	/* Everything decided so far reaches the disk before we go; nothing
	 * new starts. */
	fsm_quiesce();
	runs_free();
	if (store_commit() != 0)
		rc = -1;
	job_shutdown();
	workers_free();
	instant_shutdown();
	repos_close_all();
	platform_shutdown();
	http_shutdown();
out_store:
	store_close();
	slots_free();
	for (n = 0; n < eng.nbuckets; n++) {
		free(eng.buckets[n].rule);
		free(eng.buckets[n].bucket);
	}
	free(eng.buckets);
	cfg_errors_free(&eng.errors);
	cfg_loader_free(&eng.loader);
	loop_free();
	log_info("stopped");
	return rc;
}
