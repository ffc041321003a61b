/* Replication job table (seed 001): a full copy first, then scheduled
 * incremental cycles, each ending in a restore point on the target; revert,
 * clean-up, temporary failover with failback, permanent failover. */
#include "fsm/tables.h"
#include "engine/jobs/job.h"
#include "engine/jobs/replicate.h"
#include "engine/jobs/vmjob.h"

static const struct fsm_state_info rep_states[] = { REPLICATION_STATES(FSM_STATE_INFO) };
static const char *const rep_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) REPLICATION_EVENTS(FSM_EVENT_NAME) };

/* A cycle's states do the work migration's do (vmjob.c), and its end is
 * replicate.c's; the operations on restore points are replicate_ops.c's.
 * 快照清除 follows 恢复快照 (the points after the one reverted to go). */
static const struct fsm_row rep_rows[] = {
	/* A cycle. */
	{ REP_STARTING, EV_STARTED, REP_QUEUED, NULL },
	/* 创建新虚机 is the first cycle's only: later ones check the target
	 * on their way into 获取虚机配置 (the slot sends next_cycle). */
	{ REP_QUEUED, EV_ADMIT, REP_CREATING_VM, NULL },
	{ REP_QUEUED, REP_EV_NEXT_CYCLE, REP_FETCHING_CONFIG, NULL },
	{ REP_CREATING_VM, EV_OK, REP_FETCHING_CONFIG, NULL },
	{ REP_FETCHING_CONFIG, EV_OK, REP_QUERYING_CHANGES, NULL },
	{ REP_QUERYING_CHANGES, EV_OK, REP_TRANSFERRING, NULL },
	{ REP_TRANSFERRING, REP_EV_CYCLE_DONE, REP_IDLE, NULL },
	{ REP_TRANSFERRING, REP_EV_LAST_DONE, REP_COMPLETE, NULL },
	{ REP_TRANSFERRING, REP_EV_REQUERY, REP_QUERYING_CHANGES, NULL },
	{ REP_IDLE, REP_EV_RUN, REP_QUEUED, NULL },
	{ REP_COMPLETE, REP_EV_RUN, REP_QUEUED, NULL },
	/* While failed over, the schedule does not copy over the running VM. */
	{ REP_FAILOVER_TEMPORARY, REP_EV_RUN, FSM_REJECT, NULL },
	{ FSM_ANY, REP_EV_RUN, FSM_REJECT, NULL },

	/* Restore points and failover, from rest only. */
	{ REP_IDLE, REP_EV_REVERT, REP_REVERTING, NULL },
	{ REP_COMPLETE, REP_EV_REVERT, REP_REVERTING, NULL },
	{ REP_REVERTING, EV_OK, REP_SNAPSHOT_CLEANUP, NULL },
	{ REP_IDLE, REP_EV_CLEANUP, REP_SNAPSHOT_CLEANUP, NULL },
	{ REP_COMPLETE, REP_EV_CLEANUP, REP_SNAPSHOT_CLEANUP, NULL },
	{ REP_SNAPSHOT_CLEANUP, EV_OK, REP_IDLE, NULL },
	{ REP_IDLE, REP_EV_FAILOVER_TEMP, REP_FAILOVER_TEMPORARY, NULL },
	{ REP_COMPLETE, REP_EV_FAILOVER_TEMP, REP_FAILOVER_TEMPORARY, NULL },
	{ REP_FAILOVER_TEMPORARY, REP_EV_FAILBACK, REP_FAILING_BACK, NULL },
	{ REP_FAILING_BACK, EV_OK, REP_IDLE, NULL },
	{ REP_IDLE, REP_EV_FAILOVER_PERM, REP_FAILOVER_PERMANENT, NULL },
	{ REP_COMPLETE, REP_EV_FAILOVER_PERM, REP_FAILOVER_PERMANENT, NULL },
	{ REP_FAILOVER_TEMPORARY, REP_EV_FAILOVER_PERM, REP_FAILOVER_PERMANENT, NULL },
	/* An operation cut half-way (rule gone, peer lost, failure) is
	 * finished when the job starts again (rep_started), before a cycle. */
	{ REP_STARTING, REP_EV_REVERT, REP_REVERTING, NULL },
	{ REP_STARTING, REP_EV_FAILBACK, REP_FAILING_BACK, NULL },
	{ FSM_ANY, REP_EV_REVERT, FSM_REJECT, NULL },
	{ FSM_ANY, REP_EV_CLEANUP, FSM_REJECT, NULL },
	{ FSM_ANY, REP_EV_FAILOVER_TEMP, FSM_REJECT, NULL },
	{ FSM_ANY, REP_EV_FAILOVER_PERM, FSM_REJECT, NULL },
	{ FSM_ANY, REP_EV_FAILBACK, FSM_REJECT, NULL },

	/* A failed-over VM keeps running on the target: stopping the rule
	 * must not undo that. */
	{ REP_FAILOVER_TEMPORARY, EV_STOP, FSM_REJECT, NULL },
	/* An operation on restore points is short and leaves the target
	 * half-way if cut: it finishes first (then stop). */
	{ REP_REVERTING, EV_STOP, FSM_REJECT, NULL },
	{ REP_SNAPSHOT_CLEANUP, EV_STOP, FSM_REJECT, NULL },
	{ REP_FAILING_BACK, EV_STOP, FSM_REJECT, NULL },
	{ REP_FAILOVER_TEMPORARY, EV_RULE_REMOVED, FSM_IGNORE, NULL },

	/* What the work of each state can run into (for the slot states
	 * peer_lost comes today from the store's failing commits). */
	FSM_WORK_FAILS(REP_STARTING, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_CREATING_VM, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_FETCHING_CONFIG, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_QUERYING_CHANGES, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_TRANSFERRING, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_REVERTING, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_SNAPSHOT_CLEANUP, REP_FAILED, REP_INVALID),
	FSM_WORK_FAILS(REP_FAILING_BACK, REP_FAILED, REP_INVALID),

	{ REP_FAILED, EV_FAIL, FSM_IGNORE, NULL },
	FSM_COMMON_ROWS(REP_STARTING, REP_STOPPING, REP_STOPPED, REP_INVALID, REP_FAILED, REP_DELETING),

	/* 永久切换 is final; after a restart its work (points removed, the
	 * VM on) goes on where it was. */
	{ REP_FAILOVER_PERMANENT, EV_START, FSM_IGNORE, NULL },
	{ REP_FAILOVER_PERMANENT, EV_STOP, FSM_IGNORE, NULL },
	{ REP_FAILOVER_PERMANENT, EV_RULE_REMOVED, FSM_IGNORE, NULL },
	{ REP_FAILOVER_PERMANENT, EV_RESUME, FSM_SAME, NULL },
	{ REP_FAILOVER_PERMANENT, EV_DELETE, FSM_STAY, job_forget },
	{ REP_FAILOVER_PERMANENT, REP_EV_RUN, FSM_REJECT, NULL },
	{ REP_FAILOVER_PERMANENT, REP_EV_REVERT, FSM_REJECT, NULL },
	{ REP_FAILOVER_PERMANENT, REP_EV_CLEANUP, FSM_REJECT, NULL },
	{ REP_FAILOVER_PERMANENT, REP_EV_FAILOVER_TEMP, FSM_REJECT, NULL },
	{ REP_FAILOVER_PERMANENT, REP_EV_FAILOVER_PERM, FSM_REJECT, NULL },
	{ REP_FAILOVER_PERMANENT, REP_EV_FAILBACK, FSM_REJECT, NULL },
};

static fsm_action rep_enter[REP_NSTATES] = {
	[REP_STARTING] = vmjob_enter_starting,
	[REP_QUEUED] = job_enter_queued,
	[REP_CREATING_VM] = vmjob_enter_creating_vm,
	[REP_FETCHING_CONFIG] = vmjob_enter_fetching_config,
	[REP_QUERYING_CHANGES] = vmjob_enter_querying_changes,
	[REP_TRANSFERRING] = vmjob_enter_transferring,
	[REP_STOPPING] = vmjob_enter_stopping,
	[REP_INVALID] = job_enter_invalid,
	[REP_DELETING] = vmjob_enter_deleting,
	[REP_FAILED] = vmjob_enter_failed,
	[REP_REVERTING] = rep_enter_reverting,
	[REP_SNAPSHOT_CLEANUP] = rep_enter_snapshot_cleanup,
	[REP_FAILOVER_TEMPORARY] = rep_enter_failover_temporary,
	[REP_FAILING_BACK] = rep_enter_failing_back,
	[REP_FAILOVER_PERMANENT] = rep_enter_failover_permanent,
};

const struct fsm_table fsm_replication = {
	.kind = "replication",
	.states = rep_states,
	.nstates = REP_NSTATES,
	.events = rep_events,
	.nevents = REP_NEVENTS,
	.rows = rep_rows,
	.nrows = ARRAY_LEN(rep_rows),
	.initial = REP_STARTING,
	.enter = rep_enter,
};
