/* Backup job table (seed 002): idle between scheduled runs; a run prepares,
 * saves the VM configuration, queries changes, checks the repository for
 * the parent restore point and transfers; restores run from rest. */
#include "fsm/tables.h"
#include "engine/jobs/job.h"

static const struct fsm_state_info bak_states[] = { BACKUP_STATES(FSM_STATE_INFO) };
static const char *const bak_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) BACKUP_EVENTS(FSM_EVENT_NAME) };

static const struct fsm_row bak_rows[] = {
	/* Backups wait for their schedule, not for a slot. */
	{ BAK_STARTING, EV_SCHEDULE, BAK_IDLE, NULL },
	{ BAK_IDLE, BAK_EV_RUN, BAK_QUEUED, NULL },
	{ BAK_COMPLETE, BAK_EV_RUN, BAK_QUEUED, NULL },
	{ FSM_ANY, BAK_EV_RUN, FSM_REJECT, NULL },
	{ BAK_QUEUED, EV_ADMIT, BAK_PREPARING, NULL },
	{ BAK_PREPARING, EV_OK, BAK_SAVING_CONFIG, NULL },
	{ BAK_SAVING_CONFIG, EV_OK, BAK_QUERYING_CHANGES, NULL },
	{ BAK_QUERYING_CHANGES, EV_OK, BAK_CHECKING_DATA, NULL },
	{ BAK_CHECKING_DATA, EV_OK, BAK_TRANSFERRING, NULL },
	{ BAK_TRANSFERRING, BAK_EV_CYCLE_DONE, BAK_IDLE, NULL },
	{ BAK_TRANSFERRING, BAK_EV_LAST_DONE, BAK_COMPLETE, NULL },

	/* Restores (to the original VM, a new VM, or instant recovery). */
	{ BAK_IDLE, BAK_EV_RESTORE, BAK_RESTORING, NULL },
	{ BAK_COMPLETE, BAK_EV_RESTORE, BAK_RESTORING, NULL },
	{ BAK_STOPPED, BAK_EV_RESTORE, BAK_RESTORING, NULL },
	{ BAK_RESTORING, EV_OK, BAK_IDLE, NULL },
	{ FSM_ANY, BAK_EV_RESTORE, FSM_REJECT, NULL },

	/* Stop, start. */
	{ FSM_ANY, EV_STOP, BAK_STOPPING, NULL },
	{ FSM_ANY, EV_RULE_REMOVED, BAK_STOPPING, NULL },
	{ BAK_STOPPING, EV_OK, BAK_STOPPED, NULL },
	{ BAK_STOPPING, EV_FAIL, BAK_STOPPED, NULL },
	{ BAK_STOPPING, EV_PEER_LOST, BAK_STOPPED, NULL },
	{ BAK_STOPPING, EV_STOP, FSM_IGNORE, NULL },
	{ BAK_STOPPING, EV_RULE_REMOVED, FSM_IGNORE, NULL },
	{ BAK_STOPPED, EV_STOP, FSM_IGNORE, NULL },
	{ BAK_STOPPED, EV_RULE_REMOVED, FSM_IGNORE, NULL },
	{ BAK_FAILED, EV_STOP, FSM_IGNORE, NULL },
	{ BAK_FAILED, EV_RULE_REMOVED, BAK_STOPPED, NULL },
	{ FSM_ANY, EV_START, FSM_IGNORE, NULL },
	{ BAK_STOPPED, EV_START, BAK_STARTING, NULL },
	{ BAK_FAILED, EV_START, BAK_STARTING, NULL },
	{ BAK_UNKNOWN, EV_START, BAK_STARTING, NULL },

	/* Delete. */
	{ FSM_ANY, EV_DELETE, BAK_DELETING, NULL },
	{ BAK_DELETING, EV_CLEANED, FSM_STAY, job_forget },
	/* A delete that a crash interrupted finishes after the restart. */
	{ BAK_DELETING, EV_RESUME, FSM_SAME, NULL },
	{ BAK_DELETING, EV_FAIL, BAK_FAILED, NULL },
	{ BAK_DELETING, EV_PEER_LOST, BAK_FAILED, NULL },
	{ BAK_DELETING, FSM_ANY, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_CLEANED, FSM_IGNORE, NULL },

	/* Errors, lost peers (未知). */
	{ FSM_ANY, EV_FAIL, BAK_FAILED, NULL },
	{ BAK_FAILED, EV_FAIL, FSM_IGNORE, NULL },
	{ BAK_STOPPED, EV_FAIL, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_PEER_LOST, BAK_UNKNOWN, NULL },
	{ BAK_UNKNOWN, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ BAK_STOPPED, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ BAK_FAILED, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ BAK_IDLE, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ BAK_COMPLETE, EV_PEER_LOST, FSM_IGNORE, NULL },
	{ BAK_UNKNOWN, EV_PEER_BACK, BAK_STARTING, NULL },
	{ FSM_ANY, EV_PEER_BACK, FSM_IGNORE, NULL },

	{ FSM_ANY, EV_RESUME, FSM_SAME, NULL },
	{ FSM_ANY, EV_SCHEDULE, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_ADMIT, FSM_IGNORE, NULL },
	{ FSM_ANY, EV_OK, FSM_IGNORE, NULL },
	{ FSM_ANY, BAK_EV_CYCLE_DONE, FSM_IGNORE, NULL },
	{ FSM_ANY, BAK_EV_LAST_DONE, FSM_IGNORE, NULL },
};

static fsm_action bak_enter[BAK_NSTATES] = {
	[BAK_STARTING] = job_enter_starting,
	[BAK_QUEUED] = job_enter_queued,
	[BAK_PREPARING] = job_enter_not_built,
	[BAK_STOPPING] = job_enter_stopping,
	[BAK_UNKNOWN] = job_enter_invalid,
	[BAK_DELETING] = job_enter_deleting,
};

const struct fsm_table fsm_backup = {
	.kind = "backup",
	.states = bak_states,
	.nstates = BAK_NSTATES,
	.events = bak_events,
	.nevents = BAK_NEVENTS,
	.rows = bak_rows,
	.nrows = ARRAY_LEN(bak_rows),
	.initial = BAK_STARTING,
	.enter = bak_enter,
};
