/* Restores of a backup job's points (seed 002: 即时恢复, 组恢复; SPEC §10),
 * the work of the backup table's 恢复中 (restoring):
 *
 *   to a new VM       a faithful copy of the VM as its point's manifest
 *                     saved it (备份虚拟机配置), created under --name on the
 *                     rule's source platform or another platform, host,
 *                     datastore (target.c); every non-zero chunk of the
 *                     point written; powered on when asked;
 *   to the original   the VM (powered off, else refused with the reason);
 *                     where its change tracking since the point's
 *                     changeId still answers, only the areas changed
 *                     since then are written, else whole disks; its change
 *                     tracking reset and the job's next point made a full.
 *
 * Bytes come from the repository (drivers/transport_repo.c) through
 * copy.c into a staging image per disk, with checkpoints, and land in the
 * target VM as vmfsSparse deltas consolidated (target_delta.c).  Every
 * stage is in the job's record (struct bak_data's restore blob), so a
 * crash or a lost peer resumes it from its checkpoint. */
#ifndef VMFERRY_JOBS_RESTORE_H
#define VMFERRY_JOBS_RESTORE_H

struct bak_data;
struct job;
struct request;
struct rst;

/* The restore command reaches a resting job: check it and record what
 * is asked in d (committed with the transition).  -1 with *why: refused,
 * nothing recorded. */
int rst_ask(struct job *j, struct bak_data *d, const struct request *req, char **why);
/* A stop, failure or delete: the restore in d (if any) is given up (said
 * in the log, its staging files removed; the original VM's next point
 * made a full when the landing began), and a new VM that it created (its
 * moref in the record) is removed from the platform.  then(j, problem)
 * once done: problem NULL, and d holds no restore; or why that VM could
 * not be removed (valid until the next call), d's restore then stays in
 * the stage given_up (rst_given_up) so that a start or delete tries
 * again. */
void rst_give_up(struct job *j, struct bak_data *d, void (*then)(struct job *j, const char *problem));
/* Whether d holds a restore given up whose VM is still to be removed. */
int rst_given_up(const struct bak_data *d);
/* The restore recorded in d for show: {point, target, name, stage}, or
 * NULL when none (new reference). */
typedef struct json_t json_t;
json_t *rst_details(const struct bak_data *d);
/* The runtime: stop what is in flight; free it. */
void rst_cancel(struct rst *r);
void rst_free(struct rst *r);

#endif
