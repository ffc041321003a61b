/* Replication jobs (seed 001): cycles that end in restore points on the
 * target (replicate.c); the states they share with migration are
 * vmjob.h's. */
#ifndef VMFERRY_JOBS_REPLICATE_H
#define VMFERRY_JOBS_REPLICATE_H

#include <jansson.h>
#include <stddef.h>

struct request;

struct job;
struct vmjob;

/* For `show`: the target VM, the cycles, each restore point (its cycle,
 * snapshot, time, bytes read and written), each disk's transport. */
json_t *rep_details(const struct job *j);

/* Before revert and failover reach a job: the point they go to ("3",
 * "rp3", "latest"; NULL: the latest, for failover) recorded with the
 * transition; -1 with *why when there is no such point (nothing
 * changes).  Other events: 0. */
/* starting found the source: an operation on restore points that was cut
 * (its rule went away, its peer was lost, it failed) is finished before
 * anything else, else the job is started. */
struct vs_vm;
void rep_started(struct job *j, const struct vs_vm *vm);
/* What a granted slot sends (kinds.h): admit for the first cycle,
 * next_cycle for a later one. */
int rep_admit_event(const struct job *j);
int rep_before_command(struct job *j, int event, const struct request *req, char **why);

/* Remove restore point k of the record (its snapshot first; one removed
 * before a crash is gone already), logged with why ("(consolidated)"),
 * then then(rt). */
void rep_remove_point(struct vmjob *rt, size_t k, const char *why, void (*then)(struct vmjob *rt));

/* The operations' states (replicate_ops.c). */
void rep_enter_reverting(struct job *j, int event);
void rep_enter_snapshot_cleanup(struct job *j, int event);
void rep_enter_failover_temporary(struct job *j, int event);
void rep_enter_failing_back(struct job *j, int event);
void rep_enter_failover_permanent(struct job *j, int event);

#endif
