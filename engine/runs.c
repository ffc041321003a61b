/* Scheduled runs (see runs.h). */
#include "engine/runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "engine/calendar.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/kinds.h"
#include "fsm/fsm.h"

static struct {
	struct event_base *base;
	struct calendar *cal;
	struct armed {
		enum cfg_kind kind;
		char *rule;
	} *armed;
	size_t narmed;
} runs;

double
runs_clock(void)
{
	const char *path = getenv("VMFERRY_CLOCK_FILE");
	double t = 0;
	FILE *f;

	if (path == NULL || *path == '\0')
		return now_wall();
	if ((f = fopen(path, "r")) == NULL || fscanf(f, "%lf", &t) != 1 || t <= 0) {
		if (f != NULL)
			fclose(f);
		fatal("VMFERRY_CLOCK_FILE %s holds no time", path);
	}
	fclose(f);
	return t;
}

static double
clock_cb(void *arg)
{
	return runs_clock();
}

/* ---- when each rule last ran: meta key "run:" kind rule ---- */

static size_t
last_key(enum cfg_kind kind, const char *rule, uint8_t *buf, size_t cap)
{
	size_t n = strlen(rule);

	if (5 + n > cap)
		return 0;
	memcpy(buf, "run:", 4);
	buf[4] = (uint8_t)kind;
	memcpy(buf + 5, rule, n);
	return 5 + n;
}

static time_t
last_get(enum cfg_kind kind, const char *rule)
{
	uint8_t key[600];
	size_t klen = last_key(kind, rule, key, sizeof(key)), vlen;
	void *val = NULL;
	time_t t = 0;

	if (klen && store_get(STORE_META, key, klen, &val, &vlen) == 1 && vlen == 8)
		t = (time_t)get_be64(val);
	free(val);
	return t;
}

static void
last_put(enum cfg_kind kind, const char *rule, time_t t)
{
	uint8_t key[600], val[8];
	size_t klen = last_key(kind, rule, key, sizeof(key));

	if (klen == 0)
		return;
	put_be64(val, (uint64_t)t);
	store_put(STORE_META, key, klen, val, sizeof(val));
}

static void
last_del(enum cfg_kind kind, const char *rule)
{
	uint8_t key[600];
	size_t klen = last_key(kind, rule, key, sizeof(key));

	if (klen)
		store_del(STORE_META, key, klen);
}

/* ---- a rule is due ---- */

static const char *
mode_name(enum cfg_backup_mode m)
{
	return m == BACKUP_FULL ? "full" : m == BACKUP_DIFFERENTIAL ? "differential" : "incremental";
}

static void
due(const struct calendar_run *run, void *arg)
{
	const struct job_kind *k = job_kind_of(run->kind);
	struct job *j;
	char when[32];
	struct tm tm;
	time_t slot = run->slot;

	localtime_r(&slot, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	last_put(run->kind, run->rule, run->slot);
	TAILQ_FOREACH(j, job_all(), link) {
		enum fsm_result res;

		if (j->kind != run->kind || strcmp(j->rule, run->rule) != 0 || k == NULL || k->run_event < 0)
			continue;
		if (k->before_run != NULL)
			k->before_run(j, (int)run->mode);
		res = fsm_dispatch(j, k->run_event, "its schedule is due");
		if (res == FSM_DONE) {
			job_log(j, LOG_INFO, "scheduled run of %s%s (%s)", when, run->late ? ", missed while the daemon was down" : "",
			    run->kind == CFG_BACKUP ? mode_name(run->mode) : "cycle");
		} else if (j->fsm.state == j->fsm.table->initial) {
			/* Still starting (after a restart, say): it runs once it is ready. */
			j->run_pending = 1;
			job_log(j, LOG_INFO, "scheduled run of %s: it runs once the job has started", when);
		} else {
			job_log(j, LOG_INFO, "scheduled run of %s skipped: the job is %s, a run is not doubled", when,
			    job_state_info(j)->id);
		}
	}
}

static void
pending_run(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	const struct job_kind *k = job_kind_of(j->kind);

	if (!j->forgotten && j->run_pending && (job_flags(j) & FSM_F_RESTING)) {
		j->run_pending = 0;
		if (fsm_dispatch(j, k->run_event, "its schedule was due while it started") == FSM_DONE)
			job_log(j, LOG_INFO, "the scheduled run that fell due while the job started runs now");
	}
	job_release(j);
}

void
runs_job_changed(struct job *j)
{
	/* Not from inside the transition: from the loop, next turn. */
	if (j->run_pending && (job_flags(j) & FSM_F_RESTING) && runs.base != NULL) {
		job_hold(j);
		event_base_once(runs.base, -1, EV_TIMEOUT, pending_run, j, NULL);
	}
}

void
runs_init(struct event_base *base)
{
	runs.base = base;
	runs.cal = calendar_new(base, clock_cb, NULL, due, NULL);
}

void
runs_free(void)
{
	size_t i;

	if (runs.cal != NULL)
		calendar_free(runs.cal);
	for (i = 0; i < runs.narmed; i++)
		free(runs.armed[i].rule);
	free(runs.armed);
	memset(&runs, 0, sizeof(runs));
}

void
runs_apply(const struct config *c)
{
	time_t now = (time_t)runs_clock();
	size_t i, n;

	/* Rules that are gone (or lost their schedule) are disarmed. */
	for (i = n = 0; i < runs.narmed; i++) {
		const struct cfg_rule *r = config_rule(c, runs.armed[i].kind, runs.armed[i].rule);

		if (r == NULL) {
			calendar_remove(runs.cal, runs.armed[i].kind, runs.armed[i].rule);
			last_del(runs.armed[i].kind, runs.armed[i].rule);
			free(runs.armed[i].rule);
			continue;
		}
		runs.armed[n++] = runs.armed[i];
	}
	runs.narmed = n;
	for (i = 0; i < c->nrules; i++) {
		const struct cfg_rule *r = c->rules[i];
		const struct job_kind *k = job_kind_of(r->kind);
		time_t last;
		size_t a;

		if (k == NULL || k->run_event < 0)
			continue;
		for (a = 0; a < runs.narmed; a++)
			if (runs.armed[a].kind == r->kind && strcmp(runs.armed[a].rule, r->name) == 0)
				break;
		if (a == runs.narmed) {
			runs.armed = xreallocarray(runs.armed, runs.narmed + 1, sizeof(*runs.armed));
			runs.armed[runs.narmed].kind = r->kind;
			runs.armed[runs.narmed].rule = xstrdup(r->name);
			runs.narmed++;
		}
		/* A rule seen for the first time runs from now on. */
		if ((last = last_get(r->kind, r->name)) == 0) {
			last = now;
			last_put(r->kind, r->name, now);
		}
		calendar_set(runs.cal, r, last);
	}
	calendar_tick(runs.cal);
}
