/* Unit tests for fsm/: the three job tables (labels, a row for every
 * command in every state, completions only where work sends them,
 * reachability, final terminal states, the seed's rules) and the
 * dispatcher's ordering promises, driven through fake hooks.
 *
 * The hook table of fsm.c is global; this file installs fake hooks and a
 * fake struct job of its own, so it must never call job_init(). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm/fsm.h"
#include "fsm/tables.h"

/* The generic enter actions and the action that forgets a job
 * (engine/jobs/job.h, which this file cannot include: it defines a struct
 * job of its own for the dispatcher tests). */
void job_forget(struct job *j, int event);
void job_enter_starting(struct job *j, int event);
void job_enter_queued(struct job *j, int event);
void job_enter_stopping(struct job *j, int event);
void job_enter_invalid(struct job *j, int event);
void job_enter_deleting(struct job *j, int event);

static const struct fsm_table *const tables[] = { &fsm_migration, &fsm_replication, &fsm_backup };

static int
is_special_target(int to)
{
	return to == FSM_SAME || to == FSM_STAY || to == FSM_IGNORE || to == FSM_REJECT;
}

static int
state_of(const struct fsm_table *t, const char *id)
{
	int s = fsm_state_by_id(t, id);

	if (s < 0)
		fail_msg("%s: no state \"%s\"", t->kind, id);
	return s;
}

static int
event_of(const struct fsm_table *t, const char *name)
{
	int e = fsm_event_by_name(t, name);

	if (e < 0)
		fail_msg("%s: no event \"%s\"", t->kind, name);
	return e;
}

/* Where (state, event) leads: a state index or one of the FSM_* specials. */
static int
target(const struct fsm_table *t, int state, int event)
{
	const struct fsm_row *r = fsm_lookup(t, state, event);

	if (r == NULL)
		fail_msg("%s: no row for (%s, %s)", t->kind, t->states[state].id, fsm_event_name(t, event));
	return r->to;
}

/* ---- table structure -------------------------------------------------- */

static void
test_states_are_labelled(void **unused)
{
	size_t k;
	int i, m;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		assert_true(t->nstates > 0);
		assert_true(t->initial >= 0 && t->initial < t->nstates);
		for (i = 0; i < t->nstates; i++) {
			const struct fsm_state_info *s = &t->states[i];

			assert_non_null(s->id);
			assert_non_null(s->label_zh);
			assert_non_null(s->label_en);
			if (s->id[0] == '\0' || s->label_zh[0] == '\0' || s->label_en[0] == '\0')
				fail_msg("%s: state %d has an empty id or label", t->kind, i);
			/* Stable ids are persisted and typed on the command line. */
			for (const char *p = s->id; *p; p++)
				if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
					fail_msg("%s: state id \"%s\" is not [a-z_]", t->kind, s->id);
			for (m = 0; m < i; m++)
				if (strcmp(t->states[m].id, s->id) == 0)
					fail_msg("%s: state id \"%s\" used twice", t->kind, s->id);
			assert_int_equal(fsm_state_by_id(t, s->id), i);
		}
		assert_int_equal(fsm_state_by_id(t, "no_such_state"), -1);
	}
}

/* ---- what can happen where ---------------------------------------------
 *
 * Events are commands (from a person, the configuration or a restart: they
 * can come in any state, so every state has a row for each) or
 * completions (sent by a state's work: only the states whose work sends
 * one have a row for it, and anything else aborts the daemon). */

static const char *const commands_common[] = { "start", "stop", "delete", "rule_removed", "resume", NULL };
static const char *const commands_mig[] = { "migrate", NULL };
static const char *const commands_rep[] = { "run", "revert", "cleanup", "failover_temp", "failover_perm",
	"failback", NULL };
static const char *const commands_bak[] = { "run", "restore", NULL };

static int
in_list(const char *const *l, const char *name)
{
	for (; *l != NULL; l++)
		if (strcmp(*l, name) == 0)
			return 1;
	return 0;
}

static int
is_command(const struct fsm_table *t, int event)
{
	const char *name = fsm_event_name(t, event);
	const char *const *own = t == &fsm_migration ? commands_mig : t == &fsm_replication ? commands_rep : commands_bak;

	return in_list(commands_common, name) || in_list(own, name);
}

static const char *const completions_common[] = { "started", "admit", "ok", "fail", "peer_lost", "peer_back",
	"cleaned", NULL };
static const char *const completions_mig[] = { "full_done", "catchup_done", "requery", NULL };
static const char *const completions_rep[] = { "cycle_done", "last_done", "requery", "next_cycle", NULL };
static const char *const completions_bak[] = { "cycle_done", "last_done", NULL };

static int
is_completion(const struct fsm_table *t, int event)
{
	const char *name = fsm_event_name(t, event);
	const char *const *own = t == &fsm_migration ? completions_mig :
	    t == &fsm_replication ? completions_rep : completions_bak;

	return in_list(completions_common, name) || in_list(own, name);
}

/* What the work of each state can send, from an audit of every
 * fsm_dispatch in engine/ (engine.c, jobs/job.c, jobs/runtime.c,
 * jobs/migrate.c and what sync.c and target.c hand on through rt_fail,
 * rt_lost, rt_vs_failed, rt_platform_failed, rt_unreadable):
 *
 * - every state: the commands (start, stop, delete from the socket;
 *   rule_removed, start from a reload; resume at start-up);
 * - slot states: peer_lost from engine_store_failing (commits keep
 *   failing), besides their own work's;
 * - queued: admit, from the transfer slots only (slots_enqueue is
 *   job_enter_queued's; leaving queued dequeues); replication's
 *   slots send next_cycle instead for a later cycle (rep_admit_event);
 * - starting: rule_removed (no rule) and started (job_enter_starting;
 *   migration and replication: rt_find_source), and for those fail (an
 *   unreadable record, VM not found, platform refused) and peer_lost
 *   (platform unreachable); backup: fail (an unreadable record; its
 *   source is looked up in preparing);
 * - the slot states of every kind: ok or their kind's
 *   completions, fail, peer_lost (driver calls, temp_dir, copies and
 *   uploads);
 * - ready: fail (an unreadable record), migrate (auto_migrate);
 * - stopping: ok (job_enter_stopping; sync_abandon, which never fails);
 * - failed (migration, replication): fail (an unreadable record: ignored);
 * - 失效/未知: peer_back (its retry timer, deleted on leaving);
 * - deleting: cleaned (job_enter_deleting; sync_abandon and
 *   target_destroy, which never fail).
 *
 * "sent" rows must exist (and not reject); "designed" rows are for work
 * not built yet (none today).  A completion row found in
 * neither list is a row for something that cannot happen. */
struct sends {
	const struct fsm_table *t;
	const char *state;
	const char *sent;
	const char *designed;
};

static const struct sends sends[] = {
	{ &fsm_migration, "starting", "rule_removed started fail peer_lost", "" },
	{ &fsm_migration, "queued", "admit", "" },
	{ &fsm_migration, "creating_vm", "ok fail peer_lost", "" },
	{ &fsm_migration, "fetching_config", "ok fail peer_lost", "" },
	{ &fsm_migration, "querying_changes", "ok fail peer_lost", "" },
	{ &fsm_migration, "transferring", "full_done catchup_done requery fail peer_lost", "" },
	{ &fsm_migration, "ready", "fail migrate", "" },
	{ &fsm_migration, "cutting_over", "ok fail peer_lost", "" },
	{ &fsm_migration, "stopping", "ok", "" },
	{ &fsm_migration, "stopped", "", "" },
	{ &fsm_migration, "invalid", "peer_back", "" },
	{ &fsm_migration, "complete", "", "" },
	{ &fsm_migration, "failed", "fail", "" },
	{ &fsm_migration, "deleting", "cleaned", "" },

	{ &fsm_replication, "starting", "rule_removed started fail peer_lost", "" },
	{ &fsm_replication, "queued", "admit next_cycle", "" },
	{ &fsm_replication, "creating_vm", "ok fail peer_lost", "" },
	{ &fsm_replication, "fetching_config", "ok fail peer_lost", "" },
	{ &fsm_replication, "querying_changes", "ok fail peer_lost", "" },
	{ &fsm_replication, "transferring", "cycle_done last_done requery fail peer_lost", "" },
	{ &fsm_replication, "idle", "", "" },
	{ &fsm_replication, "reverting", "ok fail peer_lost", "" },
	{ &fsm_replication, "snapshot_cleanup", "ok fail peer_lost", "" },
	{ &fsm_replication, "failover_temporary", "", "" },
	{ &fsm_replication, "failing_back", "ok fail peer_lost", "" },
	{ &fsm_replication, "failover_permanent", "", "" },
	{ &fsm_replication, "stopping", "ok", "" },
	{ &fsm_replication, "stopped", "", "" },
	{ &fsm_replication, "invalid", "peer_back", "" },
	{ &fsm_replication, "complete", "", "" },
	{ &fsm_replication, "failed", "fail", "" },
	{ &fsm_replication, "deleting", "cleaned", "" },

	{ &fsm_backup, "starting", "rule_removed started fail", "" },
	{ &fsm_backup, "idle", "", "" },
	{ &fsm_backup, "queued", "admit", "" },
	{ &fsm_backup, "preparing", "ok fail peer_lost", "" },
	{ &fsm_backup, "saving_config", "ok fail peer_lost", "" },
	{ &fsm_backup, "querying_changes", "ok fail peer_lost", "" },
	{ &fsm_backup, "checking_data", "ok fail peer_lost", "" },
	{ &fsm_backup, "transferring", "cycle_done last_done fail peer_lost", "" },
	{ &fsm_backup, "restore_queued", "admit", "" },
	{ &fsm_backup, "restoring", "ok fail peer_lost", "" },
	{ &fsm_backup, "stopping", "ok", "" },
	{ &fsm_backup, "stopped", "", "" },
	{ &fsm_backup, "unknown", "peer_back", "" },
	{ &fsm_backup, "complete", "", "" },
	{ &fsm_backup, "failed", "", "" },
	{ &fsm_backup, "deleting", "cleaned", "" },
};

/* Is name a word of the space-separated list? */
static int
in_words(const char *words, const char *name)
{
	size_t n = strlen(name);
	const char *p = words;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == words || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

static const struct sends *
sends_of(const struct fsm_table *t, int s)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(sends); i++)
		if (sends[i].t == t && strcmp(sends[i].state, t->states[s].id) == 0)
			return &sends[i];
	fail_msg("%s: state %s is missing from the audit (sends[])", t->kind, t->states[s].id);
	return NULL;
}

/* Every event is a command or a completion, not both. */
static void
test_events_are_classified(void **unused)
{
	size_t k;
	int e;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (e = 0; e < t->nevents; e++)
			if (is_command(t, e) == is_completion(t, e))
				fail_msg("%s: event %s is %s", t->kind, fsm_event_name(t, e),
				    is_command(t, e) ? "both a command and a completion" : "neither a command nor a completion");
	}
}

/* No blanket rows: FSM_ANY only as the from of a command row; no two rows
 * for one (state, event), where the second would never decide. */
static void
test_no_blanket_rows(void **unused)
{
	size_t k;
	int i, m;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (i = 0; i < t->nrows; i++) {
			const struct fsm_row *r = &t->rows[i];

			if (r->event == FSM_ANY)
				fail_msg("%s: row %d covers every event of %s", t->kind, i,
				    r->from == FSM_ANY ? "every state" : t->states[r->from].id);
			if (r->from == FSM_ANY && is_completion(t, r->event))
				fail_msg("%s: row %d takes completion %s in every state", t->kind, i,
				    fsm_event_name(t, r->event));
			for (m = 0; m < i; m++)
				if (t->rows[m].from == r->from && t->rows[m].event == r->event)
					fail_msg("%s: rows %d and %d are both for (%s, %s)", t->kind, m, i,
					    r->from == FSM_ANY ? "any" : t->states[r->from].id, fsm_event_name(t, r->event));
		}
	}
}

/* The audit above, against the tables: what a state's work sends has a
 * row there; a completion row is for something that is sent (or, for
 * the kinds not built yet, designed); and the generic enter actions and
 * state flags agree with the audit. */
static void
test_completions_where_work_sends_them(void **unused)
{
	size_t k;
	int s, e;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (s = 0; s < t->nstates; s++) {
			const struct sends *w = sends_of(t, s);
			const char *st = t->states[s].id;
			fsm_action enter = t->enter != NULL ? t->enter[s] : NULL;
			unsigned fl = t->states[s].flags;

			for (e = 0; e < t->nevents; e++) {
				const char *name = fsm_event_name(t, e);
				const struct fsm_row *r = fsm_lookup(t, s, e);

				if (in_words(w->sent, name)) {
					if (r == NULL)
						fail_msg("%s: %s's work sends %s, and it has no row", t->kind, st, name);
					if (r->to == FSM_REJECT)
						fail_msg("%s: %s rejects %s, which its work sends", t->kind, st, name);
				}
				if (in_words(w->designed, name)) {
					if (t == &fsm_migration)
						fail_msg("migration: %s: designed rows are for kinds not built", st);
					if (r == NULL)
						fail_msg("%s: %s has no row for designed %s", t->kind, st, name);
				}
				if (is_completion(t, e) && r != NULL && !in_words(w->sent, name) &&
				    !in_words(w->designed, name))
					fail_msg("%s: %s has a row for %s, which nothing sends there", t->kind, st, name);
			}
			/* The engine and the generic enter actions, as the audit says. */
			if ((fl & FSM_F_SLOT) && !in_words(w->sent, "peer_lost"))
				fail_msg("%s: slot state %s: the store's failing commits send peer_lost", t->kind, st);
			if ((fl & FSM_F_QUEUED) && !in_words(w->sent, "admit"))
				fail_msg("%s: queued state %s: the transfer slots send admit", t->kind, st);
			if (in_words(w->sent, "admit") && !(fl & FSM_F_QUEUED))
				fail_msg("%s: %s is not queued: the transfer slots never admit it", t->kind, st);
			if ((enter == job_enter_starting && !in_words(w->sent, "started")) ||
			    (enter == job_enter_stopping && !in_words(w->sent, "ok")) ||
			    (enter == job_enter_invalid && !in_words(w->sent, "peer_back")) ||
			    (enter == job_enter_deleting && !in_words(w->sent, "cleaned")) ||
			    (enter == job_enter_queued && !in_words(w->sent, "admit")))
				fail_msg("%s: the audit of %s misses what its generic enter action sends", t->kind, st);
			if (enter == NULL && !(fl & FSM_F_SLOT) && w->sent[0] != '\0')
				fail_msg("%s: %s has no enter action, but the audit says its work sends %s", t->kind, st,
				    w->sent);
		}
	}
}

/* Every command has a row in every state, and the row is sound. */
static void
test_commands_have_rows_everywhere(void **unused)
{
	size_t k;
	int s, e;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (s = 0; s < t->nstates; s++)
			for (e = 0; e < t->nevents; e++) {
				int to;

				if (!is_command(t, e))
					continue;
				to = target(t, s, e);
				if (!is_special_target(to) && (to < 0 || to >= t->nstates))
					fail_msg("%s: (%s, %s) leads to bad target %d", t->kind, t->states[s].id,
					    fsm_event_name(t, e), to);
			}
	}
}

static void
test_rows_are_well_formed(void **unused)
{
	size_t k;
	int i;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (i = 0; i < t->nrows; i++) {
			const struct fsm_row *r = &t->rows[i];

			if (r->from == FSM_ANY && r->event == FSM_ANY)
				fail_msg("%s: row %d has both from and event FSM_ANY", t->kind, i);
			if (r->from != FSM_ANY && (r->from < 0 || r->from >= t->nstates))
				fail_msg("%s: row %d has bad from %d", t->kind, i, r->from);
			if (r->event != FSM_ANY && (r->event < 0 || r->event >= t->nevents))
				fail_msg("%s: row %d has bad event %d", t->kind, i, r->event);
			if (!is_special_target(r->to) && (r->to < 0 || r->to >= t->nstates))
				fail_msg("%s: row %d has bad target %d", t->kind, i, r->to);
		}
	}
}

static void
test_every_state_reachable(void **unused)
{
	size_t k;
	int i, s;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];
		int *seen = calloc((size_t)t->nstates, sizeof(int));
		int *queue = calloc((size_t)t->nstates, sizeof(int));
		int head = 0, tail = 0;

		seen[t->initial] = 1;
		queue[tail++] = t->initial;
		while (head < tail) {
			int from = queue[head++];

			for (i = 0; i < t->nrows; i++) {
				const struct fsm_row *r = &t->rows[i];

				if (r->to < 0)
					continue;
				if (r->from != from &&
				    !(r->from == FSM_ANY && !(t->states[from].flags & FSM_F_TERMINAL)))
					continue;
				/* Only rows that actually decide (from, event) count. */
				if (r->event != FSM_ANY && fsm_lookup(t, from, r->event) != r)
					continue;
				if (!seen[r->to]) {
					seen[r->to] = 1;
					queue[tail++] = r->to;
				}
			}
		}
		for (s = 0; s < t->nstates; s++)
			if (!seen[s])
				fail_msg("%s: state %s is unreachable from %s", t->kind, t->states[s].id,
				    t->states[t->initial].id);
		free(seen);
		free(queue);
	}
}

static void
test_terminal_states_are_final(void **unused)
{
	size_t k;
	int s, e, nterminal = 0;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (s = 0; s < t->nstates; s++) {
			if (!(t->states[s].flags & FSM_F_TERMINAL))
				continue;
			nterminal++;
			for (e = 0; e < t->nevents; e++) {
				const struct fsm_row *r = fsm_lookup(t, s, e);

				if (r != NULL && !is_special_target(r->to))
					fail_msg("%s: terminal %s leaves to %s on %s", t->kind, t->states[s].id,
					    t->states[r->to].id, fsm_event_name(t, e));
			}
		}
	}
	/* migration 完成 and replication 永久切换 at least */
	assert_true(nterminal >= 2);
	assert_true(fsm_migration.states[state_of(&fsm_migration, "complete")].flags & FSM_F_TERMINAL);
	assert_true(fsm_replication.states[state_of(&fsm_replication, "failover_permanent")].flags &
	    FSM_F_TERMINAL);
}

/* After a restart every state redoes its work (EV_RESUME); a state whose
 * enter action never runs again would sit there forever. */
static void
test_resume_reenters_every_state_with_work(void **unused)
{
	size_t k;
	int s;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		for (s = 0; s < t->nstates; s++) {
			if (t->enter == NULL || t->enter[s] == NULL)
				continue;
			if (target(t, s, EV_RESUME) != FSM_SAME)
				fail_msg("%s: EV_RESUME in %s does not re-run its enter action", t->kind,
				    t->states[s].id);
		}
	}
}

/* A user can always get rid of a job: delete leads to 删除中 or forgets
 * it directly (job_forget, in a state with nothing left to clean up),
 * from every state. */
static void
test_delete_always_possible(void **unused)
{
	size_t k;
	int s;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];
		int deleting = state_of(t, "deleting");

		for (s = 0; s < t->nstates; s++) {
			const struct fsm_row *r = fsm_lookup(t, s, EV_DELETE);

			assert_non_null(r);
			if (s == deleting) {
				assert_int_equal(r->to, FSM_IGNORE);
				continue;
			}
			if (r->to == deleting)
				continue;
			if (r->to == FSM_STAY && r->action == job_forget)
				continue;
			fail_msg("%s: delete in %s does not delete", t->kind, t->states[s].id);
		}
	}
}

/* ---- the seed's states and rules ------------------------------------- */

static void
expect_labels(const struct fsm_table *t, const char *const *zh)
{
	int s;

	for (; *zh != NULL; zh++) {
		for (s = 0; s < t->nstates; s++)
			if (strcmp(t->states[s].label_zh, *zh) == 0)
				break;
		if (s == t->nstates)
			fail_msg("%s: no state labelled %s", t->kind, *zh);
	}
}

static void
test_seed_labels(void **unused)
{
	static const char *const mig[] = { "启动", "排队中", "创建新虚机", "获取虚机配置", "查询变化数据",
		"迁移中", "迁移就绪", "停止", "失效", "完成", NULL };
	static const char *const rep[] = { "空闲", "执行中", "恢复快照", "快照清除", "临时切换", "永久切换", NULL };
	static const char *const bak[] = { "空闲", "备份准备", "备份虚拟机配置", "查询变化数据", "检查数据",
		"执行中", "停止", "未知", "已完成", NULL };

	expect_labels(&fsm_migration, mig);
	expect_labels(&fsm_replication, rep);
	expect_labels(&fsm_backup, bak);

	/* The ids the spec names carry the seed's exact labels. */
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "starting")].label_zh, "启动");
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "queued")].label_zh, "排队中");
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "transferring")].label_zh, "迁移中");
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "ready")].label_zh, "迁移就绪");
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "invalid")].label_zh, "失效");
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "complete")].label_zh, "完成");
	assert_string_equal(fsm_replication.states[state_of(&fsm_replication, "reverting")].label_zh, "恢复快照");
	assert_string_equal(fsm_replication.states[state_of(&fsm_replication, "snapshot_cleanup")].label_zh,
	    "快照清除");
	assert_string_equal(fsm_replication.states[state_of(&fsm_replication, "failover_temporary")].label_zh,
	    "临时切换");
	assert_string_equal(fsm_replication.states[state_of(&fsm_replication, "failover_permanent")].label_zh,
	    "永久切换");
	assert_string_equal(fsm_backup.states[state_of(&fsm_backup, "unknown")].label_zh, "未知");
	assert_string_equal(fsm_backup.states[state_of(&fsm_backup, "complete")].label_zh, "已完成");
	assert_string_equal(fsm_backup.states[state_of(&fsm_backup, "checking_data")].label_zh, "检查数据");
}

static void
test_migration_forward_path(void **unused)
{
	const struct fsm_table *t = &fsm_migration;
	int ok = event_of(t, "ok");

	assert_int_equal(target(t, state_of(t, "starting"), event_of(t, "started")), state_of(t, "queued"));
	assert_int_equal(target(t, state_of(t, "queued"), event_of(t, "admit")), state_of(t, "creating_vm"));
	assert_int_equal(target(t, state_of(t, "creating_vm"), ok), state_of(t, "fetching_config"));
	assert_int_equal(target(t, state_of(t, "fetching_config"), ok), state_of(t, "querying_changes"));
	assert_int_equal(target(t, state_of(t, "querying_changes"), ok), state_of(t, "transferring"));
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "full_done")), state_of(t, "ready"));
	/* 开始迁移: the catch-up waits for a transfer slot like any transfer. */
	assert_int_equal(target(t, state_of(t, "ready"), event_of(t, "migrate")), state_of(t, "queued"));
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "catchup_done")), state_of(t, "cutting_over"));
	assert_int_equal(target(t, state_of(t, "cutting_over"), ok), state_of(t, "complete"));
}

static void
test_migrate_only_from_ready(void **unused)
{
	const struct fsm_table *t = &fsm_migration;
	int migrate = event_of(t, "migrate"), ready = state_of(t, "ready"), s;

	for (s = 0; s < t->nstates; s++) {
		int to = target(t, s, migrate);

		if (s == ready)
			assert_int_equal(to, state_of(t, "queued"));
		else if (to != FSM_REJECT)
			fail_msg("migrate in %s is not rejected (to %d)", t->states[s].id, to);
	}
}

/* Every state where work is in flight or waiting stops on user stop. */
static void
test_stop_from_active_states(void **unused)
{
	size_t k;
	int s, n;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];
		int stopping = state_of(t, "stopping");

		n = 0;
		for (s = 0; s < t->nstates; s++) {
			unsigned fl = t->states[s].flags;

			if (!(fl & (FSM_F_SLOT | FSM_F_QUEUED | FSM_F_INVALID)) && s != t->initial)
				continue;
			n++;
			if (target(t, s, EV_STOP) != stopping)
				fail_msg("%s: stop in %s does not go to stopping", t->kind, t->states[s].id);
			if (target(t, s, EV_RULE_REMOVED) != stopping)
				fail_msg("%s: rule_removed in %s does not go to stopping", t->kind, t->states[s].id);
		}
		assert_true(n >= 5);
		/* stopping finishes in 停止 */
		assert_int_equal(target(t, stopping, EV_OK), state_of(t, "stopped"));
		assert_int_equal(target(t, state_of(t, "stopped"), EV_START), t->initial);
	}
	/* 迁移就绪 waits for a person but can be stopped too */
	assert_int_equal(target(&fsm_migration, state_of(&fsm_migration, "ready"), EV_STOP),
	    state_of(&fsm_migration, "stopping"));
}

static void
test_lost_peer_and_back(void **unused)
{
	struct {
		const struct fsm_table *t;
		const char *lost;
	} k[] = { { &fsm_migration, "invalid" }, { &fsm_replication, "invalid" }, { &fsm_backup, "unknown" } };
	size_t i;

	for (i = 0; i < ARRAY_LEN(k); i++) {
		const struct fsm_table *t = k[i].t;
		int lost = state_of(t, k[i].lost);

		assert_true(t->states[lost].flags & FSM_F_INVALID);
		assert_int_equal(target(t, state_of(t, "transferring"), EV_PEER_LOST), lost);
		assert_int_equal(target(t, lost, EV_PEER_BACK), state_of(t, "starting"));
		/* a job waiting for a slot talks to no peer; one in 失效 is
		 * already there; peer_back comes only from 失效's own timer */
		assert_null(fsm_lookup(t, state_of(t, "queued"), EV_PEER_LOST));
		assert_null(fsm_lookup(t, lost, EV_PEER_LOST));
		assert_null(fsm_lookup(t, state_of(t, "transferring"), EV_PEER_BACK));
	}
	assert_string_equal(fsm_migration.states[state_of(&fsm_migration, "invalid")].label_zh, "失效");
}

static void
test_replication_failover(void **unused)
{
	const struct fsm_table *t = &fsm_replication;
	int idle = state_of(t, "idle"), temp = state_of(t, "failover_temporary");

	assert_int_equal(target(t, idle, event_of(t, "failover_temp")), temp);
	assert_int_equal(target(t, temp, event_of(t, "failback")), state_of(t, "failing_back"));
	assert_int_equal(target(t, state_of(t, "failing_back"), EV_OK), idle);
	assert_int_equal(target(t, temp, event_of(t, "failover_perm")), state_of(t, "failover_permanent"));
	/* permanent failover cannot fail back */
	assert_int_equal(target(t, state_of(t, "failover_permanent"), event_of(t, "failback")), FSM_REJECT);
	/* restore-point operations only from rest */
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "revert")), FSM_REJECT);
	assert_int_equal(target(t, idle, event_of(t, "revert")), state_of(t, "reverting"));
	assert_int_equal(target(t, idle, event_of(t, "cleanup")), state_of(t, "snapshot_cleanup"));
}

static void
test_backup_cycle(void **unused)
{
	const struct fsm_table *t = &fsm_backup;
	int ok = EV_OK;

	assert_int_equal(t->initial, state_of(t, "starting"));
	assert_int_equal(target(t, state_of(t, "starting"), EV_STARTED), state_of(t, "idle"));
	assert_int_equal(target(t, state_of(t, "idle"), event_of(t, "run")), state_of(t, "queued"));
	assert_int_equal(target(t, state_of(t, "queued"), EV_ADMIT), state_of(t, "preparing"));
	assert_int_equal(target(t, state_of(t, "preparing"), ok), state_of(t, "saving_config"));
	assert_int_equal(target(t, state_of(t, "saving_config"), ok), state_of(t, "querying_changes"));
	assert_int_equal(target(t, state_of(t, "querying_changes"), ok), state_of(t, "checking_data"));
	assert_int_equal(target(t, state_of(t, "checking_data"), ok), state_of(t, "transferring"));
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "cycle_done")), state_of(t, "idle"));
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "last_done")), state_of(t, "complete"));
	assert_int_equal(target(t, state_of(t, "transferring"), event_of(t, "run")), FSM_REJECT);
}

static void
test_event_names(void **unused)
{
	static const char *const common[] = { "start", "stop", "delete", "rule_removed", "started", "admit",
		"ok", "fail", "peer_lost", "peer_back", "cleaned", "resume" };
	size_t k, c;
	int e, m;

	for (k = 0; k < ARRAY_LEN(tables); k++) {
		const struct fsm_table *t = tables[k];

		assert_true(t->nevents > EV_COMMON_MAX);
		for (e = 0; e < t->nevents; e++) {
			const char *name = fsm_event_name(t, e);

			assert_non_null(name);
			assert_true(name[0] != '\0');
			assert_int_equal(fsm_event_by_name(t, name), e);
			for (const char *p = name; *p; p++)
				if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
					fail_msg("%s: event name \"%s\" is not [a-z_]", t->kind, name);
			for (m = 0; m < e; m++)
				if (strcmp(fsm_event_name(t, m), name) == 0)
					fail_msg("%s: event \"%s\" declared twice", t->kind, name);
		}
		/* common events have the same number and name in every kind */
		assert_int_equal(ARRAY_LEN(common), EV_COMMON_MAX);
		for (c = 0; c < ARRAY_LEN(common); c++)
			assert_int_equal(fsm_event_by_name(t, common[c]), (int)c);
		assert_string_equal(fsm_event_name(t, -1), "?");
		assert_string_equal(fsm_event_name(t, t->nevents), "?");
		assert_int_equal(fsm_event_by_name(t, "no_such_event"), -1);
	}
	assert_int_equal(fsm_event_by_name(&fsm_migration, "migrate"), MIG_EV_MIGRATE);
	assert_int_equal(fsm_event_by_name(&fsm_replication, "failback"), REP_EV_FAILBACK);
	assert_int_equal(fsm_event_by_name(&fsm_backup, "restore"), BAK_EV_RESTORE);
}

/* ---- fsm_dispatch with fake hooks ------------------------------------ */

/* fsm.c only ever sees struct job through the hooks, so this file can
 * define its own. */
struct job {
	struct fsm_instance fi;
	int alive;
	int refs;
};

enum { T_A, T_B, T_C, T_END, T_NSTATES };

static char trace[1024];
static int trace_state_at_persist;

static void
trace_add(const char *fmt, ...)
{
	va_list ap;
	size_t n = strlen(trace);

	if (n > 0 && n < sizeof(trace) - 1)
		trace[n++] = ' ';
	va_start(ap, fmt);
	vsnprintf(trace + n, sizeof(trace) - n, fmt, ap);
	va_end(ap);
}

static void enter_a(struct job *j, int ev) { trace_add("enter:A"); }
static void enter_b(struct job *j, int ev) { trace_add("enter:B"); }
static void enter_c(struct job *j, int ev) { trace_add("enter:C"); }
static void row_act(struct job *j, int ev) { trace_add("row:%s", j->fi.table->events[ev]); }

static const struct fsm_state_info t_states[] = {
	{ "a", "甲", "A", 0 },
	{ "b", "乙", "B", 0 },
	{ "c", "丙", "C", 0 },
	{ "end", "完", "End", FSM_F_TERMINAL },
};
static const char *const t_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) };
static const struct fsm_row t_rows[] = {
	{ T_A, EV_OK, T_B, row_act },
	{ T_B, EV_OK, T_C, NULL },
	{ FSM_ANY, EV_STOP, T_END, NULL },
	{ FSM_ANY, EV_CLEANED, FSM_STAY, row_act },
	{ FSM_ANY, EV_RESUME, FSM_SAME, NULL },
	{ FSM_ANY, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_START, FSM_REJECT, NULL },
	{ T_END, EV_START, FSM_IGNORE, NULL },
	{ T_END, EV_STOP, FSM_IGNORE, NULL },
	{ T_END, EV_OK, FSM_IGNORE, NULL },
};
static fsm_action t_enter[T_NSTATES] = { enter_a, enter_b, enter_c, NULL };
static const struct fsm_table t_table = {
	.kind = "test",
	.states = t_states,
	.nstates = T_NSTATES,
	.events = t_events,
	.nevents = EV_COMMON_MAX,
	.rows = t_rows,
	.nrows = ARRAY_LEN(t_rows),
	.initial = T_A,
	.enter = t_enter,
};

/* The fake store: after-commit work waits here until fake_commit(). */
struct pending_cb {
	void (*fn)(void *);
	void *arg;
};
static struct pending_cb pend[64];
static int npend, npersist;

static struct fsm_instance *
f_inst(struct job *j)
{
	return &j->fi;
}

static void
f_persist(struct job *j, int from, int event, const char *reason)
{
	npersist++;
	trace_state_at_persist = j->fi.state;
	trace_add("persist:%s->%s", t_states[from].id, t_states[j->fi.state].id);
}

static void
f_after_commit(void (*fn)(void *), void *arg)
{
	assert_true(npend < (int)ARRAY_LEN(pend));
	pend[npend].fn = fn;
	pend[npend].arg = arg;
	npend++;
}

static int
f_alive(const struct job *j)
{
	return j->alive;
}

static void
f_hold(struct job *j)
{
	j->refs++;
}

static void
f_release(struct job *j)
{
	j->refs--;
}

/* Like the store: work queued while committing belongs to the next commit. */
static void
fake_commit(void)
{
	struct pending_cb now[64];
	int i, n = npend;

	memcpy(now, pend, sizeof(now));
	npend = 0;
	trace_add("commit");
	for (i = 0; i < n; i++)
		now[i].fn(now[i].arg);
}

static int
fake_setup(void **state)
{
	static const struct fsm_hooks h = {
		.inst = f_inst,
		.persist = f_persist,
		.after_commit = f_after_commit,
		.alive = f_alive,
		.hold = f_hold,
		.release = f_release,
	};

	fsm_set_hooks(&h);
	trace[0] = '\0';
	npend = npersist = 0;
	return 0;
}

static void
job_init_fake(struct job *j)
{
	memset(j, 0, sizeof(*j));
	j->fi.table = &t_table;
	j->fi.state = T_A;
	j->alive = 1;
	j->refs = 1;
}

static void
test_dispatch_persists_before_acting(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE);
	/* the state is already B when it is persisted, but nothing ran yet */
	assert_int_equal(j.fi.state, T_B);
	assert_int_equal(trace_state_at_persist, T_B);
	assert_string_equal(trace, "persist:a->b");
	assert_int_equal(npend, 1);
	assert_int_equal(j.refs, 2); /* held until the work has run */
	fake_commit();
	assert_string_equal(trace, "persist:a->b commit row:ok enter:B");
	assert_int_equal(j.refs, 1);
	assert_int_equal(npend, 0);
}

static void
test_dispatch_second_transition_makes_first_enter_stale(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE); /* A -> B */
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE); /* B -> C */
	assert_int_equal(npersist, 2);
	fake_commit();
	/* B's row action ran, but B's enter action is stale: only C's runs */
	assert_string_equal(trace, "persist:a->b persist:b->c commit row:ok enter:C");
	assert_int_equal(j.refs, 1);
}

static void
test_dispatch_ignore_and_reject_do_nothing(void **unused)
{
	struct job j;
	unsigned gen;

	job_init_fake(&j);
	gen = j.fi.gen;
	assert_int_equal(fsm_dispatch(&j, EV_PEER_LOST, "gone"), FSM_IGNORED);
	assert_int_equal(fsm_dispatch(&j, EV_START, NULL), FSM_REJECTED);
	assert_int_equal(j.fi.state, T_A);
	assert_int_equal(j.fi.gen, gen);
	assert_int_equal(npersist, 0);
	assert_int_equal(npend, 0);
	assert_int_equal(j.refs, 1);
	fake_commit();
	assert_string_equal(trace, "commit");
}

static void
test_dispatch_dead_job_ignores_everything(void **unused)
{
	struct job j;
	int e;

	job_init_fake(&j);
	j.alive = 0;
	for (e = 0; e < EV_COMMON_MAX; e++)
		assert_int_equal(fsm_dispatch(&j, e, NULL), FSM_IGNORED);
	assert_int_equal(j.fi.state, T_A);
	assert_int_equal(npersist, 0);
	assert_int_equal(npend, 0);
}

static void
test_dispatch_job_dies_before_commit(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE);
	j.alive = 0; /* forgotten meanwhile */
	fake_commit();
	/* the row action runs (it may be the forget itself); no enter action */
	assert_null(strstr(trace, "enter:"));
	assert_int_equal(j.refs, 1);
}

static void
test_dispatch_same_reenters(void **unused)
{
	struct job j;

	job_init_fake(&j);
	j.fi.state = T_B;
	assert_int_equal(fsm_dispatch(&j, EV_RESUME, NULL), FSM_DONE);
	assert_int_equal(j.fi.state, T_B);
	assert_int_equal(npersist, 1);
	fake_commit();
	assert_string_equal(trace, "persist:b->b commit enter:B");
}

static void
test_dispatch_stay_runs_only_row_action(void **unused)
{
	struct job j;

	job_init_fake(&j);
	j.fi.state = T_B;
	assert_int_equal(fsm_dispatch(&j, EV_CLEANED, NULL), FSM_DONE);
	fake_commit();
	assert_string_equal(trace, "persist:b->b commit row:cleaned");
	assert_int_equal(j.refs, 1);
}

/* A STAY row changes nothing about the state, so it must not cancel the
 * enter action of the state the job has just entered. */
static void
test_dispatch_stay_keeps_pending_enter(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE);      /* A -> B */
	assert_int_equal(fsm_dispatch(&j, EV_CLEANED, NULL), FSM_DONE); /* stay in B */
	fake_commit();
	assert_non_null(strstr(trace, "enter:B"));
}

static void
test_dispatch_terminal_ignores(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_int_equal(fsm_dispatch(&j, EV_STOP, NULL), FSM_DONE);
	fake_commit();
	assert_int_equal(j.fi.state, T_END);
	/* FSM_ANY-from rows do not apply to a terminal state */
	assert_int_equal(fsm_dispatch(&j, EV_START, NULL), FSM_IGNORED);
	assert_int_equal(fsm_dispatch(&j, EV_STOP, NULL), FSM_IGNORED);
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_IGNORED);
	assert_int_equal(j.fi.state, T_END);
	assert_int_equal(npersist, 1);
}

/* An event without a row is a bug: the daemon aborts rather than carry
 * on in a state that does not expect it. */
static void
test_dispatch_without_row_aborts(void **unused)
{
	struct job j;
	pid_t pid;
	int status;

	job_init_fake(&j);
	assert_null(fsm_lookup(&t_table, T_A, EV_STARTED));
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(3);
		fsm_dispatch(&j, EV_STARTED, NULL);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
		fail_msg("an event without a row did not abort (status %#x)", status);
	/* the parent's job is untouched */
	assert_int_equal(j.fi.state, T_A);
	assert_int_equal(npersist, 0);
}

/* Must run last: fsm_quiesce() cannot be undone. */
static void
test_dispatch_quiesced_persists_but_does_not_act(void **unused)
{
	struct job j;

	job_init_fake(&j);
	assert_false(fsm_quiesced());
	fsm_quiesce();
	assert_true(fsm_quiesced());
	assert_int_equal(fsm_dispatch(&j, EV_OK, NULL), FSM_DONE);
	assert_int_equal(j.fi.state, T_B);
	assert_int_equal(npersist, 1);
	fake_commit();
	assert_string_equal(trace, "persist:a->b commit");
	assert_int_equal(j.refs, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states_are_labelled),
		cmocka_unit_test(test_events_are_classified),
		cmocka_unit_test(test_commands_have_rows_everywhere),
		cmocka_unit_test(test_no_blanket_rows),
		cmocka_unit_test(test_completions_where_work_sends_them),
		cmocka_unit_test(test_rows_are_well_formed),
		cmocka_unit_test(test_every_state_reachable),
		cmocka_unit_test(test_terminal_states_are_final),
		cmocka_unit_test(test_resume_reenters_every_state_with_work),
		cmocka_unit_test(test_delete_always_possible),
		cmocka_unit_test(test_seed_labels),
		cmocka_unit_test(test_migration_forward_path),
		cmocka_unit_test(test_migrate_only_from_ready),
		cmocka_unit_test(test_stop_from_active_states),
		cmocka_unit_test(test_lost_peer_and_back),
		cmocka_unit_test(test_replication_failover),
		cmocka_unit_test(test_backup_cycle),
		cmocka_unit_test(test_event_names),
		cmocka_unit_test_setup(test_dispatch_persists_before_acting, fake_setup),
		cmocka_unit_test_setup(test_dispatch_second_transition_makes_first_enter_stale, fake_setup),
		cmocka_unit_test_setup(test_dispatch_ignore_and_reject_do_nothing, fake_setup),
		cmocka_unit_test_setup(test_dispatch_dead_job_ignores_everything, fake_setup),
		cmocka_unit_test_setup(test_dispatch_job_dies_before_commit, fake_setup),
		cmocka_unit_test_setup(test_dispatch_same_reenters, fake_setup),
		cmocka_unit_test_setup(test_dispatch_stay_runs_only_row_action, fake_setup),
		cmocka_unit_test_setup(test_dispatch_stay_keeps_pending_enter, fake_setup),
		cmocka_unit_test_setup(test_dispatch_terminal_ignores, fake_setup),
		cmocka_unit_test_setup(test_dispatch_without_row_aborts, fake_setup),
		cmocka_unit_test_setup(test_dispatch_quiesced_persists_but_does_not_act, fake_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
