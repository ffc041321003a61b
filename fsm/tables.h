/* States and events of the three job kinds, declared once.  Each X-macro
 * row gives: enum suffix, stable id, the seed's Chinese label, English
 * label, flags.  The enums, the state info arrays and the event names are
 * all generated from these lists, so they cannot drift apart. */
#ifndef VMFERRY_FSM_TABLES_H
#define VMFERRY_FSM_TABLES_H

#include "fsm/fsm.h"
#include "engine/core/util.h"

#define F_T FSM_F_TERMINAL
#define F_S FSM_F_SLOT
#define F_Q FSM_F_QUEUED
#define F_R FSM_F_RESTING
#define F_I FSM_F_INVALID
#define F_P FSM_F_PROGRESS
#define F_F FSM_F_FAILED

/* Migration (seed 000). */
#define MIGRATION_STATES(X)                                                          \
	X(STARTING, "starting", "启动", "Starting", 0)                               \
	X(QUEUED, "queued", "排队中", "Queued", F_Q)                                 \
	X(CREATING_VM, "creating_vm", "创建新虚机", "Creating VM", F_S)              \
	X(FETCHING_CONFIG, "fetching_config", "获取虚机配置", "Fetching VM configuration", F_S) \
	X(QUERYING_CHANGES, "querying_changes", "查询变化数据", "Querying changes", F_S) \
	X(TRANSFERRING, "transferring", "迁移中", "Transferring", F_S | F_P)         \
	X(READY, "ready", "迁移就绪", "Ready to migrate", F_R)                       \
	X(CUTTING_OVER, "cutting_over", "切换中", "Cutting over", F_S | F_P)         \
	X(STOPPING, "stopping", "停止中", "Stopping", 0)                             \
	X(STOPPED, "stopped", "停止", "Stopped", F_R)                                \
	X(INVALID, "invalid", "失效", "Invalid", F_I)                                \
	X(COMPLETE, "complete", "完成", "Complete", F_T)                             \
	X(FAILED, "failed", "失败", "Failed", F_R | F_F)                             \
	X(DELETING, "deleting", "删除中", "Deleting", 0)

#define MIGRATION_EVENTS(X)                                                   \
	X(FULL_DONE, "full_done")       /* first full copy finished */        \
	X(CATCHUP_DONE, "catchup_done") /* catch-up before cutover finished */ \
	X(MIGRATE, "migrate")           /* vmferryctl migrate (开始迁移) */ \
	X(REQUERY, "requery")           /* the pass's snapshot is gone: query again */

enum migration_state {
#define X(n, id, zh, en, fl) MIG_##n,
	MIGRATION_STATES(X)
#undef X
	MIG_NSTATES
};
enum migration_event {
	MIG_EV_FIRST_ = EV_COMMON_MAX - 1,
#define X(n, s) MIG_EV_##n,
	MIGRATION_EVENTS(X)
#undef X
	MIG_NEVENTS
};

/* Replication (seed 001). */
#define REPLICATION_STATES(X)                                                        \
	X(STARTING, "starting", "启动", "Starting", 0)                               \
	X(QUEUED, "queued", "排队中", "Queued", F_Q)                                 \
	X(CREATING_VM, "creating_vm", "创建新虚机", "Creating VM", F_S)              \
	X(FETCHING_CONFIG, "fetching_config", "获取虚机配置", "Fetching VM configuration", F_S) \
	X(QUERYING_CHANGES, "querying_changes", "查询变化数据", "Querying changes", F_S) \
	X(TRANSFERRING, "transferring", "执行中", "Replicating", F_S | F_P)          \
	X(IDLE, "idle", "空闲", "Idle", F_R)                                         \
	X(REVERTING, "reverting", "恢复快照", "Reverting to a restore point", 0)     \
	X(SNAPSHOT_CLEANUP, "snapshot_cleanup", "快照清除", "Cleaning up restore points", 0) \
	X(FAILOVER_TEMPORARY, "failover_temporary", "临时切换", "Temporary failover", F_R) \
	X(FAILING_BACK, "failing_back", "回切", "Failing back", 0)                   \
	X(FAILOVER_PERMANENT, "failover_permanent", "永久切换", "Permanent failover", F_T) \
	X(STOPPING, "stopping", "停止中", "Stopping", 0)                             \
	X(STOPPED, "stopped", "停止", "Stopped", F_R)                                \
	X(INVALID, "invalid", "失效", "Invalid", F_I)                                \
	X(COMPLETE, "complete", "完成", "Complete", F_R)                             \
	X(FAILED, "failed", "失败", "Failed", F_R | F_F)                             \
	X(DELETING, "deleting", "删除中", "Deleting", 0)

#define REPLICATION_EVENTS(X)                                               \
	X(CYCLE_DONE, "cycle_done") /* a scheduled cycle finished */        \
	X(LAST_DONE, "last_done")   /* a cycle finished, no schedule left */ \
	X(RUN, "run")               /* run a cycle now (立即执行) or the schedule fired */ \
	X(REVERT, "revert")         /* revert the target to a restore point */ \
	X(CLEANUP, "cleanup")       /* remove restore points */         \
	X(FAILOVER_TEMP, "failover_temp")                                   \
	X(FAILOVER_PERM, "failover_perm")                                   \
	X(FAILBACK, "failback")                                             \
	X(REQUERY, "requery") /* the cycle's snapshot is gone: query again */ \
	X(NEXT_CYCLE, "next_cycle") /* a slot granted to a later cycle: the target VM is there */

enum replication_state {
#define X(n, id, zh, en, fl) REP_##n,
	REPLICATION_STATES(X)
#undef X
	REP_NSTATES
};
enum replication_event {
	REP_EV_FIRST_ = EV_COMMON_MAX - 1,
#define X(n, s) REP_EV_##n,
	REPLICATION_EVENTS(X)
#undef X
	REP_NEVENTS
};

/* Backup (seed 002). */
#define BACKUP_STATES(X)                                                             \
	X(STARTING, "starting", "启动", "Starting", 0)                               \
	X(IDLE, "idle", "空闲", "Idle", F_R)                                         \
	X(QUEUED, "queued", "排队中", "Queued", F_Q)                                 \
	X(PREPARING, "preparing", "备份准备", "Preparing", F_S)                      \
	X(SAVING_CONFIG, "saving_config", "备份虚拟机配置", "Saving VM configuration", F_S) \
	X(QUERYING_CHANGES, "querying_changes", "查询变化数据", "Querying changes", F_S) \
	X(CHECKING_DATA, "checking_data", "检查数据", "Checking backup data", F_S)  \
	X(TRANSFERRING, "transferring", "执行中", "Backing up", F_S | F_P)           \
	X(RESTORE_QUEUED, "restore_queued", "排队中", "Queued to restore", F_Q)       \
	X(RESTORING, "restoring", "恢复中", "Restoring", F_S | F_P)                  \
	X(STOPPING, "stopping", "停止中", "Stopping", 0)                             \
	X(STOPPED, "stopped", "停止", "Stopped", F_R)                                \
	X(UNKNOWN, "unknown", "未知", "Unknown", F_I)                                \
	X(COMPLETE, "complete", "已完成", "Complete", F_R)                           \
	X(FAILED, "failed", "失败", "Failed", F_R | F_F)                             \
	X(DELETING, "deleting", "删除中", "Deleting", 0)

#define BACKUP_EVENTS(X)                                                  \
	X(CYCLE_DONE, "cycle_done") /* a periodic backup finished */      \
	X(LAST_DONE, "last_done")   /* the once-only backup finished */   \
	X(RUN, "run")               /* run now (立即执行) or schedule fired */ \
	X(RESTORE, "restore")       /* restore to the original or a new VM */

enum backup_state {
#define X(n, id, zh, en, fl) BAK_##n,
	BACKUP_STATES(X)
#undef X
	BAK_NSTATES
};
enum backup_event {
	BAK_EV_FIRST_ = EV_COMMON_MAX - 1,
#define X(n, s) BAK_EV_##n,
	BACKUP_EVENTS(X)
#undef X
	BAK_NEVENTS
};

/* Helpers for the table files. */
#define FSM_STATE_INFO(n, id, zh, en, fl) { id, zh, en, fl },
#define FSM_EVENT_NAME(n, s) s,

/* ---- rows every kind shares ----
 *
 * A table lists, for every state, each command (start, stop, delete,
 * rule_removed, resume and the kind's own) and only those completions
 * (ok, fail, peer_lost, schedule, admit, peer_back, cleaned and the
 * kind's own) that the state's work really sends; any other event is a
 * bug and aborts the daemon (fsm_dispatch).  FSM_ANY is for commands
 * only.  The rows below are the ones every kind has, written once for its
 * states of the same role; the table files include them with the kind's
 * state names and their row actions (job_forget) in scope. */

/* The work of a state can fail for good (fail: 失败) or lose its peer
 * (peer_lost: 失效 / 未知, retried by itself). */
#define FSM_WORK_FAILS(s, failed, invalid)                                            \
	{ s, EV_FAIL, failed, NULL },                                                 \
	{ s, EV_PEER_LOST, invalid, NULL }

#define FSM_COMMON_ROWS(starting, stopping, stopped, invalid, failed, deleting)      \
	/* Stop at a safe point; start again from the checkpoints.  A rule    \
	 * that goes away stops its jobs the same way. */                             \
	{ FSM_ANY, EV_STOP, stopping, NULL },                                         \
	{ FSM_ANY, EV_RULE_REMOVED, stopping, NULL },                                 \
	{ stopping, EV_STOP, FSM_IGNORE, NULL },                                      \
	{ stopping, EV_RULE_REMOVED, FSM_IGNORE, NULL },                              \
	/* stopping's work (the pass's snapshot removed) cannot fail. */              \
	{ stopping, EV_OK, stopped, NULL },                                           \
	{ stopped, EV_STOP, FSM_IGNORE, NULL },                                       \
	{ stopped, EV_RULE_REMOVED, FSM_IGNORE, NULL },                               \
	{ failed, EV_STOP, FSM_IGNORE, NULL },                                        \
	{ failed, EV_RULE_REMOVED, stopped, NULL },                                   \
                                                                                      \
	/* Start: only a job at rest starts; one at work ignores it. */               \
	{ FSM_ANY, EV_START, FSM_IGNORE, NULL },                                      \
	{ stopped, EV_START, starting, NULL },                                        \
	{ failed, EV_START, starting, NULL },                                         \
	{ invalid, EV_START, starting, NULL },                                        \
	/* 失效 / 未知 retries by itself (its timer). */                              \
	{ invalid, EV_PEER_BACK, starting, NULL },                                    \
                                                                                      \
	/* Delete: stop, clean up, forget. */                                         \
	{ FSM_ANY, EV_DELETE, deleting, NULL },                                       \
	{ deleting, EV_DELETE, FSM_IGNORE, NULL },                                    \
	{ deleting, EV_STOP, FSM_IGNORE, NULL },                                      \
	{ deleting, EV_RULE_REMOVED, FSM_IGNORE, NULL },                              \
	{ deleting, EV_CLEANED, FSM_STAY, job_forget },                               \
                                                                                      \
	/* After a restart every state redoes its (idempotent) work; a delete \
	 * that a crash interrupted finishes. */                                      \
	{ FSM_ANY, EV_RESUME, FSM_SAME, NULL }

/* A final state: nothing leaves it, its job is only ever forgotten.
 * FSM_ANY rows do not reach it, so each command has its row here (and the
 * kind's own commands in the kind's table). */
#define FSM_FINAL_ROWS(s)                                                             \
	{ s, EV_START, FSM_IGNORE, NULL },                                            \
	{ s, EV_STOP, FSM_IGNORE, NULL },                                             \
	{ s, EV_RULE_REMOVED, FSM_IGNORE, NULL },                                     \
	{ s, EV_RESUME, FSM_IGNORE, NULL },                                           \
	{ s, EV_DELETE, FSM_STAY, job_forget }

#endif
