#include "fsm/fsm.h"

#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"

static struct fsm_hooks hooks;
static int quiesced;

void
fsm_quiesce(void)
{
	quiesced = 1;
}

int
fsm_quiesced(void)
{
	return quiesced;
}

void
fsm_set_hooks(const struct fsm_hooks *h)
{
	hooks = *h;
}

const struct fsm_row *
fsm_lookup(const struct fsm_table *t, int state, int event)
{
	const struct fsm_row *any_state = NULL;
	int i;

	for (i = 0; i < t->nrows; i++) {
		const struct fsm_row *r = &t->rows[i];

		if (r->from == state && r->event == event)
			return r;
		if (r->from == FSM_ANY && r->event == event && any_state == NULL &&
		    !(t->states[state].flags & FSM_F_TERMINAL))
			any_state = r;
	}
	return any_state;
}

int
fsm_state_by_id(const struct fsm_table *t, const char *id)
{
	int i;

	for (i = 0; i < t->nstates; i++)
		if (strcmp(t->states[i].id, id) == 0)
			return i;
	return -1;
}

int
fsm_event_by_name(const struct fsm_table *t, const char *name)
{
	int i;

	for (i = 0; i < t->nevents; i++)
		if (strcmp(t->events[i], name) == 0)
			return i;
	return -1;
}

const char *
fsm_event_name(const struct fsm_table *t, int event)
{
	if (event < 0 || event >= t->nevents)
		return "?";
	return t->events[event];
}

/* Work to do once the transition is durable. */
struct fsm_pending {
	struct job *job;
	fsm_action row_action;
	int event;
	int to;
	unsigned gen;
	int reenter;
};

static void
fsm_run_pending(void *arg)
{
	struct fsm_pending *p = arg;
	struct fsm_instance *fi = hooks.inst(p->job);
	fsm_action enter;

	if (p->row_action != NULL && !quiesced)
		p->row_action(p->job, p->event);
	/* A later transition in the same commit supersedes this state's work. */
	if (!quiesced && p->reenter && hooks.alive(p->job) && fi->gen == p->gen && fi->state == p->to) {
		enter = fi->table->enter != NULL ? fi->table->enter[p->to] : NULL;
		if (enter != NULL)
			enter(p->job, p->event);
	}
	hooks.release(p->job);
	free(p);
}

enum fsm_result
fsm_dispatch(struct job *j, int event, const char *reason)
{
	struct fsm_instance *fi = hooks.inst(j);
	const struct fsm_table *t = fi->table;
	const struct fsm_row *row;
	struct fsm_pending *p;
	int from = fi->state, to;

	if (!hooks.alive(j))
		return FSM_IGNORED;
	row = fsm_lookup(t, from, event);
	if (row == NULL)
		fatal("%s: no transition for event %s in state %s", t->kind,
		    fsm_event_name(t, event), t->states[from].id);
	if (row->to == FSM_IGNORE)
		return FSM_IGNORED;
	if (row->to == FSM_REJECT)
		return FSM_REJECTED;
	to = (row->to == FSM_SAME || row->to == FSM_STAY) ? from : row->to;
	fi->state = to;
	/* STAY leaves the state's pending work alone; anything else
	 * supersedes it. */
	if (row->to != FSM_STAY)
		fi->gen++;
	hooks.persist(j, from, event, reason);

	p = xcalloc(1, sizeof(*p));
	p->job = j;
	p->row_action = row->action;
	p->event = event;
	p->to = to;
	p->gen = fi->gen;
	p->reenter = row->to != FSM_STAY;
	hooks.hold(j);
	hooks.after_commit(fsm_run_pending, p);
	return FSM_DONE;
}
