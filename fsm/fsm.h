/* Generic table-driven state machines.  Each job kind declares its states
 * and events once (X-macros give the enum, the stable ids and the labels)
 * and a transition table of { from, event, to, action } rows.
 *
 * fsm_dispatch() is the only writer of a job's state.  It persists the new
 * state first (the store's group commit), and only once that is durable
 * runs the row's action and the new state's enter action. */
#ifndef VMFERRY_FSM_H
#define VMFERRY_FSM_H

#include <stddef.h>

struct job;

/* State flags: what the engine needs to know about a state without
 * knowing the kind. */
enum {
	FSM_F_TERMINAL = 1u << 0, /* nothing leaves it */
	FSM_F_SLOT = 1u << 1,     /* the job holds a transfer slot (max_tasks) */
	FSM_F_QUEUED = 1u << 2,   /* waiting for a slot: shown as pending */
	FSM_F_RESTING = 1u << 3,  /* waits for a person or a schedule, no work in flight */
	FSM_F_INVALID = 1u << 4,  /* a peer is unreachable; retried by itself */
	FSM_F_PROGRESS = 1u << 5, /* shows a transfer percentage */
	FSM_F_FAILED = 1u << 6,   /* stopped by a permanent error */
};

struct fsm_state_info {
	const char *id;       /* stable id, also the persisted name */
	const char *label_zh; /* the seed's label */
	const char *label_en;
	unsigned flags;
};

/* Events every kind understands, with the same numbers in every kind; a
 * kind's own events are numbered from EV_COMMON_MAX on. */
#define FSM_COMMON_EVENTS(X)                                                     \
	X(START, "start")               /* user start, or a rule (re)appears */ \
	X(STOP, "stop")                 /* user stop */                          \
	X(DELETE, "delete")             /* user delete: stop and clean up */     \
	X(RULE_REMOVED, "rule_removed") /* its config file went away */          \
	X(STARTED, "started")           /* start-up done: wait for a slot */     \
	X(ADMIT, "admit")               /* a transfer slot was granted */        \
	X(OK, "ok")                     /* the current step finished */          \
	X(FAIL, "fail")                 /* a permanent error */                  \
	X(PEER_LOST, "peer_lost")       /* platform or node unreachable */       \
	X(PEER_BACK, "peer_back")       /* ... reachable again */                \
	X(CLEANED, "cleaned")           /* delete's clean-up finished */         \
	X(RESUME, "resume")             /* engine restart: redo the state's work */

enum fsm_common_event {
#define X(name, str) EV_##name,
	FSM_COMMON_EVENTS(X)
#undef X
	EV_COMMON_MAX
};

/* Special targets of a row. */
#define FSM_ANY (-1)    /* from: any non-terminal state; for commands only */
#define FSM_SAME (-2)   /* to: stay, run the action and re-run the state's enter action */
#define FSM_STAY (-5)   /* to: stay, run the row's action only */
#define FSM_IGNORE (-3) /* to: stay, do nothing (the event is harmless here) */
#define FSM_REJECT (-4) /* to: refuse; a user command gets an error naming the state */

typedef void (*fsm_action)(struct job *j, int event);

struct fsm_row {
	int from;
	int event;
	int to;
	fsm_action action;
};

struct fsm_table {
	const char *kind;
	const struct fsm_state_info *states;
	int nstates;
	const char *const *events;
	int nevents;
	const struct fsm_row *rows;
	int nrows;
	int initial;
	fsm_action *enter; /* per state, may be NULL entries; set by the kind's module */
};

extern const struct fsm_table fsm_migration;
extern const struct fsm_table fsm_replication;
extern const struct fsm_table fsm_backup;

/* The row that decides (state, event): the first exact row, else the
 * first FSM_ANY row for the event (never for a terminal state).  NULL if
 * none: the event cannot happen in that state, and fsm_dispatch aborts. */
const struct fsm_row *fsm_lookup(const struct fsm_table *t, int state, int event);
int fsm_state_by_id(const struct fsm_table *t, const char *id);
int fsm_event_by_name(const struct fsm_table *t, const char *name);
const char *fsm_event_name(const struct fsm_table *t, int event);

/* Outcome of a dispatch. */
enum fsm_result {
	FSM_DONE,     /* transition (or SAME) committed; actions will run */
	FSM_IGNORED,  /* harmless here, nothing happened */
	FSM_REJECTED, /* not allowed in this state */
};

/* The part of a job the driver owns. */
struct fsm_instance {
	const struct fsm_table *table;
	int state;
	unsigned gen; /* bumped on every transition; stale enter actions are skipped */
};

/* Hooks the job layer provides so fsm.c stays free of storage details. */
struct fsm_hooks {
	struct fsm_instance *(*inst)(struct job *j);
	/* Persist the job (its state already updated) and log the change;
	 * joins the store's group commit. */
	void (*persist)(struct job *j, int from, int event, const char *reason);
	/* Run fn(arg) once the writes so far are durable. */
	void (*after_commit)(void (*fn)(void *), void *arg);
	/* A job that was forgotten (deleted) takes no more events. */
	int (*alive)(const struct job *j);
	/* Reference counting, so that a job freed meanwhile is not touched. */
	void (*hold)(struct job *j);
	void (*release)(struct job *j);
};
void fsm_set_hooks(const struct fsm_hooks *h);

/* Feed an event to a job.  reason (may be NULL) is stored with the job and
 * logged.  Never call from inside a curl callback: queue an event instead. */
enum fsm_result fsm_dispatch(struct job *j, int event, const char *reason);

/* Shutting down: transitions still persist, but no action starts any more. */
void fsm_quiesce(void);
int fsm_quiesced(void);

#endif
