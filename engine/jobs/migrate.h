/* The migration job's work (seed 000): the enter actions of the
 * migration table.  Every action is idempotent and resumes from the
 * job's persisted data, so a crash at any instant continues correctly. */
#ifndef VMFERRY_MIGRATE_H
#define VMFERRY_MIGRATE_H

#include <jansson.h>

struct request;

struct job;

/* Its other states' actions are the ones it shares with replication
 * (vmjob.h). */
void mig_enter_ready(struct job *j, int event);
void mig_enter_cutting_over(struct job *j, int event);

/* Before a user command reaches a migration job: 开始迁移 in 迁移就绪
 * records that the cutover was asked for. */
int mig_before_command(struct job *j, int event, const struct request *req, char **why);

/* For `show`: the target VM, the passes, how the target's disks are
 * written (in place, deltas, whole uploads and why), the cutover stage. */
json_t *mig_details(const struct job *j);

#endif
