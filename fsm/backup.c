/* Backup job table (seed 002): idle between scheduled runs; a run prepares,
 * saves the VM configuration, queries changes, checks the repository for
 * the parent restore point and transfers; restores run from rest. */
#include "fsm/tables.h"
#include "engine/jobs/backup.h"
#include "engine/jobs/job.h"

static const struct fsm_state_info bak_states[] = { BACKUP_STATES(FSM_STATE_INFO) };
static const char *const bak_events[] = { FSM_COMMON_EVENTS(FSM_EVENT_NAME) BACKUP_EVENTS(FSM_EVENT_NAME) };

/* The work of each state is engine/jobs/backup.c's, restoring's
 * engine/jobs/restore.c's (t/unit/test_fsm.c lists what each state's work
 * sends). */
static const struct fsm_row bak_rows[] = {
	/* Backups wait for their schedule, not for a slot. */
	{ BAK_STARTING, EV_STARTED, BAK_IDLE, NULL },
	/* Only an unreadable record fails it (the source is not asked), or
	 * the new VM of a restore given up that still cannot be removed. */
	{ BAK_STARTING, EV_FAIL, BAK_FAILED, NULL },
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

	/* Restores (to the original VM or a new VM): queued for a slot like
	 * any transfer (a group restore keeps to max_tasks); a restore that
	 * was in progress when its peer was lost goes on from starting. */
	{ BAK_IDLE, BAK_EV_RESTORE, BAK_RESTORE_QUEUED, NULL },
	{ BAK_COMPLETE, BAK_EV_RESTORE, BAK_RESTORE_QUEUED, NULL },
	{ BAK_STOPPED, BAK_EV_RESTORE, BAK_RESTORE_QUEUED, NULL },
	{ BAK_STARTING, BAK_EV_RESTORE, BAK_RESTORE_QUEUED, NULL },
	{ BAK_RESTORE_QUEUED, EV_ADMIT, BAK_RESTORING, NULL },
	{ BAK_RESTORING, EV_OK, BAK_IDLE, NULL },
	{ FSM_ANY, BAK_EV_RESTORE, FSM_REJECT, NULL },

	/* What the work of each state can run into (未知: a lost peer; for
	 * the slot states peer_lost comes today from the store's failing
	 * commits). */
	FSM_WORK_FAILS(BAK_PREPARING, BAK_FAILED, BAK_UNKNOWN),
	FSM_WORK_FAILS(BAK_SAVING_CONFIG, BAK_FAILED, BAK_UNKNOWN),
	FSM_WORK_FAILS(BAK_QUERYING_CHANGES, BAK_FAILED, BAK_UNKNOWN),
	FSM_WORK_FAILS(BAK_CHECKING_DATA, BAK_FAILED, BAK_UNKNOWN),
	FSM_WORK_FAILS(BAK_TRANSFERRING, BAK_FAILED, BAK_UNKNOWN),
	FSM_WORK_FAILS(BAK_RESTORING, BAK_FAILED, BAK_UNKNOWN),

	FSM_COMMON_ROWS(BAK_STARTING, BAK_STOPPING, BAK_STOPPED, BAK_UNKNOWN, BAK_FAILED, BAK_DELETING),
};

static fsm_action bak_enter[BAK_NSTATES] = {
	[BAK_STARTING] = bak_enter_starting,
	[BAK_QUEUED] = job_enter_queued,
	[BAK_PREPARING] = bak_enter_preparing,
	[BAK_SAVING_CONFIG] = bak_enter_saving_config,
	[BAK_QUERYING_CHANGES] = bak_enter_querying_changes,
	[BAK_CHECKING_DATA] = bak_enter_checking_data,
	[BAK_TRANSFERRING] = bak_enter_transferring,
	[BAK_RESTORE_QUEUED] = job_enter_queued,
	[BAK_RESTORING] = bak_enter_restoring,
	[BAK_STOPPING] = bak_enter_stopping,
	[BAK_UNKNOWN] = job_enter_invalid,
	[BAK_FAILED] = bak_enter_failed,
	[BAK_DELETING] = bak_enter_deleting,
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
