/* Migration job table (seed 000): one full copy, then 迁移就绪 (ready) until
 * `vmferryctl migrate` or auto_migrate, then catch-up, cutover, 完成. */
#include "fsm/tables.h"
#include "engine/jobs/job.h"
#include "engine/jobs/migrate.h"

static const struct fsm_state_info mig_states[] = { MIGRATION_STATES(FSM_STATE_INFO) };
static const char *const mig_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) MIGRATION_EVENTS(FSM_EVENT_NAME) };

static const struct fsm_row mig_rows[] = {
	/* The forward path. */
	{ MIG_STARTING, EV_SCHEDULE, MIG_QUEUED, NULL },
	{ MIG_QUEUED, EV_ADMIT, MIG_CREATING_VM, NULL },
	{ MIG_CREATING_VM, EV_OK, MIG_FETCHING_CONFIG, NULL },
	{ MIG_FETCHING_CONFIG, EV_OK, MIG_QUERYING_CHANGES, NULL },
	{ MIG_QUERYING_CHANGES, EV_OK, MIG_TRANSFERRING, NULL },
	{ MIG_TRANSFERRING, MIG_EV_FULL_DONE, MIG_READY, NULL },
	{ MIG_TRANSFERRING, MIG_EV_CATCHUP_DONE, MIG_CUTTING_OVER, NULL },
	/* The catch-up waits for a slot like any transfer (max_tasks). */
	{ MIG_READY, MIG_EV_MIGRATE, MIG_QUEUED, NULL },
	{ MIG_CUTTING_OVER, EV_OK, MIG_COMPLETE, NULL },
	{ MIG_TRANSFERRING, MIG_EV_REQUERY, MIG_QUERYING_CHANGES, NULL },

	/* Stop at a safe point; start again from the checkpoints. */
	{ FSM_ANY, EV_STOP, MIG_STOPPING, NULL },
	{ FSM_ANY, EV_RULE_REMOVED, MIG_STOPPING, NULL },
	{ MIG_STOPPING, EV_OK, MIG_STOPPED, NULL },
	{ MIG_STOPPING, EV_FAIL, MIG_STOPPED, NULL },
	{ MIG_STOPPING, EV_PEER_LOST, MIG_STOPPED, NULL },
	{ MIG_STOPPING, EV_STOP, FSM_IGNORE, NULL },
	{ MIG_STOPPING, EV_RULE_REMOVED, FSM_IGNORE, NULL },
	{ MIG_STOPPED, EV_STOP, FSM_IGNORE, NULL },
	{ MIG_STOPPED, EV_RULE_REMOVED, FSM_IGNORE, NULL },
	{ MIG_FAILED, EV_STOP, FSM_IGNORE, NULL },
	{ MIG_FAILED, EV_RULE_REMOVED, MIG_STOPPED, NULL },

	/* Start: only a job at rest starts; a running one ignores it. */
	{ FSM_ANY, EV_START, FSM_IGNORE, NULL },
	{ MIG_STOPPED, EV_START, MIG_STARTING, NULL },
	{ MIG_FAILED, EV_START, MIG_STARTING, NULL },
	{ MIG_INVALID, EV_START, MIG_STARTING, NULL },

	/* Delete: stop, clean up, forget. */
	{ FSM_ANY, EV_DELETE, MIG_DELETING, NULL },
	{ MIG_DELETING, EV_CLEANED, FSM_STAY, job_forget },
	/* A delete that a crash interrupted finishes after the restart. */
	{ MIG_DELETING, EV_RESUME, FSM_SAME, NULL },
	{ MIG_DELETING, EV_FAIL, MIG_FAILED, NULL },
	{ MIG_DELETING, EV_PEER_LOST, MIG_FAILED, NULL },
	{ MIG_DELETING, FSM_ANY, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_CLEANED, FSM_IGNORE, NULL },

	/* Errors and lost peers. */
	{ FSM_ANY, EV_FAIL, MIG_FAILED, NULL },
	{ MIG_FAILED, EV_FAIL, FSM_IGNORE, NULL },
	{ MIG_STOPPED, EV_FAIL, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_PEER_LOST, MIG_INVALID, NULL },
	{ MIG_INVALID, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ MIG_STOPPED, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ MIG_FAILED, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ MIG_READY, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ MIG_INVALID, EV_PEER_BACK, MIG_STARTING, NULL },
	{ FSM_ANY, EV_PEER_BACK, FSM_IGNORE, NULL },

	/* 开始迁移 only from 迁移就绪. */
	{ FSM_ANY, MIG_EV_MIGRATE, FSM_REJECT, NULL },

	/* After a restart every state redoes its (idempotent) work. */
	{ FSM_ANY, EV_RESUME, FSM_SAME, NULL },

	/* Completions of work that a stop or delete overtook are dropped. */
	{ FSM_ANY, EV_SCHEDULE, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_ADMIT, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_OK, FSM_IGNORE, NULL },
	{ FSM_ANY, MIG_EV_FULL_DONE, FSM_IGNORE, NULL },
	{ FSM_ANY, MIG_EV_CATCHUP_DONE, FSM_IGNORE, NULL },
	{ FSM_ANY, MIG_EV_REQUERY, FSM_IGNORE, NULL },

	/* 完成 is final: a finished migration is only ever forgotten. */
	{ MIG_COMPLETE, EV_DELETE, FSM_STAY, job_forget },
	{ MIG_COMPLETE, MIG_EV_MIGRATE, FSM_REJECT, NULL },
	{ MIG_COMPLETE, FSM_ANY, FSM_IGNORE, NULL },
};

static fsm_action mig_enter[MIG_NSTATES] = {
	[MIG_STARTING] = mig_enter_starting,
	[MIG_QUEUED] = job_enter_queued,
	[MIG_CREATING_VM] = mig_enter_creating_vm,
	[MIG_FETCHING_CONFIG] = mig_enter_fetching_config,
	[MIG_QUERYING_CHANGES] = mig_enter_querying_changes,
	[MIG_TRANSFERRING] = mig_enter_transferring,
	[MIG_READY] = mig_enter_ready,
	[MIG_CUTTING_OVER] = mig_enter_cutting_over,
	[MIG_STOPPING] = mig_enter_stopping,
	[MIG_INVALID] = job_enter_invalid,
	[MIG_DELETING] = mig_enter_deleting,
	[MIG_FAILED] = mig_enter_failed,
};

const struct fsm_table fsm_migration = {
	.kind = "migration",
	.states = mig_states,
	.nstates = MIG_NSTATES,
	.events = mig_events,
	.nevents = MIG_NEVENTS,
	.rows = mig_rows,
	.nrows = ARRAY_LEN(mig_rows),
	.initial = MIG_STARTING,
	.enter = mig_enter,
};
