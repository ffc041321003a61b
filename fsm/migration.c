/* Migration job table (seed 000): one full copy, then 迁移就绪 (ready) until
 * `vmferryctl migrate` or auto_migrate, then catch-up, cutover, 完成. */
#include "fsm/tables.h"
#include "engine/jobs/job.h"
#include "engine/jobs/migrate.h"
#include "engine/jobs/vmjob.h"

static const struct fsm_state_info mig_states[] = { MIGRATION_STATES(FSM_STATE_INFO) };
static const char *const mig_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) MIGRATION_EVENTS(FSM_EVENT_NAME) };

/* Completions appear only in the states whose work sends them (the
 * comment says which work); commands appear in every state. */
static const struct fsm_row mig_rows[] = {
	/* The forward path. */
	/* starting: the source VM found in its platform's inventory. */
	{ MIG_STARTING, EV_STARTED, MIG_QUEUED, NULL },
	/* queued: a transfer slot was granted. */
	{ MIG_QUEUED, EV_ADMIT, MIG_CREATING_VM, NULL },
	/* creating_vm: the target VM created (or found). */
	{ MIG_CREATING_VM, EV_OK, MIG_FETCHING_CONFIG, NULL },
	/* fetching_config: the source's configuration saved, the target's
	 * disks read. */
	{ MIG_FETCHING_CONFIG, EV_OK, MIG_QUERYING_CHANGES, NULL },
	/* querying_changes: the pass's snapshot made, its areas known. */
	{ MIG_QUERYING_CHANGES, EV_OK, MIG_TRANSFERRING, NULL },
	/* transferring: the pass copied, as the first full copy or as the
	 * catch-up before the cutover; or its snapshot is gone. */
	{ MIG_TRANSFERRING, MIG_EV_FULL_DONE, MIG_READY, NULL },
	{ MIG_TRANSFERRING, MIG_EV_CATCHUP_DONE, MIG_CUTTING_OVER, NULL },
	{ MIG_TRANSFERRING, MIG_EV_REQUERY, MIG_QUERYING_CHANGES, NULL },
	/* 开始迁移 only from 迁移就绪 (by hand or auto_migrate); the catch-up
	 * waits for a slot like any transfer (max_tasks). */
	{ MIG_READY, MIG_EV_MIGRATE, MIG_QUEUED, NULL },
	{ FSM_ANY, MIG_EV_MIGRATE, FSM_REJECT, NULL },
	/* cutting_over: the target runs. */
	{ MIG_CUTTING_OVER, EV_OK, MIG_COMPLETE, NULL },

	/* What the work of each state can run into: a refusal, a lost peer
	 * (driver calls, the node's temp_dir; in slot states also the store's
	 * failing commits). */
	FSM_WORK_FAILS(MIG_STARTING, MIG_FAILED, MIG_INVALID),
	FSM_WORK_FAILS(MIG_CREATING_VM, MIG_FAILED, MIG_INVALID),
	FSM_WORK_FAILS(MIG_FETCHING_CONFIG, MIG_FAILED, MIG_INVALID),
	FSM_WORK_FAILS(MIG_QUERYING_CHANGES, MIG_FAILED, MIG_INVALID),
	FSM_WORK_FAILS(MIG_TRANSFERRING, MIG_FAILED, MIG_INVALID),
	FSM_WORK_FAILS(MIG_CUTTING_OVER, MIG_FAILED, MIG_INVALID),
	/* ready and failed read the job's record: one this daemon cannot
	 * read fails the job (failed stays so). */
	{ MIG_READY, EV_FAIL, MIG_FAILED, NULL },
	{ MIG_FAILED, EV_FAIL, FSM_IGNORE, NULL },

	FSM_COMMON_ROWS(MIG_STARTING, MIG_STOPPING, MIG_STOPPED, MIG_INVALID, MIG_FAILED, MIG_DELETING),

	/* 完成 is final: a finished migration is only ever forgotten. */
	FSM_FINAL_ROWS(MIG_COMPLETE),
	{ MIG_COMPLETE, MIG_EV_MIGRATE, FSM_REJECT, NULL },
};

static fsm_action mig_enter[MIG_NSTATES] = {
	[MIG_STARTING] = vmjob_enter_starting,
	[MIG_QUEUED] = job_enter_queued,
	[MIG_CREATING_VM] = vmjob_enter_creating_vm,
	[MIG_FETCHING_CONFIG] = vmjob_enter_fetching_config,
	[MIG_QUERYING_CHANGES] = vmjob_enter_querying_changes,
	[MIG_TRANSFERRING] = vmjob_enter_transferring,
	[MIG_READY] = mig_enter_ready,
	[MIG_CUTTING_OVER] = mig_enter_cutting_over,
	[MIG_STOPPING] = vmjob_enter_stopping,
	[MIG_INVALID] = job_enter_invalid,
	[MIG_DELETING] = vmjob_enter_deleting,
	[MIG_FAILED] = vmjob_enter_failed,
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
