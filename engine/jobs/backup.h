/* Backup jobs (seed 002): each run makes one restore point of a VM in the
 * rule's repository (drivers/repo.h, SPEC §10), through the states of
 * fsm/backup.c:
 *
 *   备份准备 preparing        the source VM found, the repository opened,
 *                             the point chosen: its number, its mode
 *                             (full, incremental, differential) and parent
 *   备份虚拟机配置 saving_config  the VM's configuration read and kept for
 *                             the point's manifest; each disk's base
 *                             changeId taken from the parent
 *   查询变化数据 querying_changes the sync pass's snapshot and the areas to
 *                             read (changes since the parent, or every
 *                             allocated area)
 *   检查数据 checking_data     the point opened in the repository, the
 *                             parent's index read, its chunks checked: one
 *                             that is missing (set aside by verify) is read
 *                             from the source again
 *   执行中 transferring        the areas copied into the repository sink
 *                             (backup_sink.c), the point committed, the
 *                             snapshot removed, retention and garbage
 *                             collection; then 空闲 or 已完成
 *
 * A crash or a lost peer resumes the point in progress where its partial
 * indexes say it got; a stop or a failure forgets it (the next run makes
 * a new one).  Every blocking repository call runs on the worker pool. */
#ifndef VMFERRY_JOBS_BACKUP_H
#define VMFERRY_JOBS_BACKUP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_client;
struct job;
struct request;

void bak_enter_starting(struct job *j, int event);
void bak_enter_preparing(struct job *j, int event);
void bak_enter_saving_config(struct job *j, int event);
void bak_enter_querying_changes(struct job *j, int event);
void bak_enter_checking_data(struct job *j, int event);
void bak_enter_transferring(struct job *j, int event);
void bak_enter_stopping(struct job *j, int event);
void bak_enter_failed(struct job *j, int event);
void bak_enter_deleting(struct job *j, int event);
/* restoring (engine/jobs/restore.c). */
void bak_enter_restoring(struct job *j, int event);
/* For restore.c: the job's data as its runtime holds it (NULL when the
 * record cannot be read) and, in *rst, where the restore keeps its
 * runtime; saving it. */
struct bak_data;
struct rst;
struct bak_data *bak_data_of(struct job *j, struct rst ***rst);
void bak_save(struct job *j);

/* verify found the points seqs[0..n) of the job damaged among those it
 * re-read (only: that point, 0: every point): they are marked, the
 * others re-read are sound again. */
void bak_mark_damaged(struct job *j, uint64_t only, const uint64_t *seqs, size_t n);

/* The kind's hooks (kinds.h). */
int bak_before_command(struct job *j, int event, const struct request *req, char **why);
void bak_before_run(struct job *j, int mode);
json_t *bak_details(const struct job *j);

/* The status socket's verify op (backup_verify.c): the rule's points (a
 * VM's, one point) re-read on the worker pool; an error answered at once,
 * else NULL and the answer sent when the check ends. */
json_t *bak_verify(struct ctl_client *c, const struct request *req);
/* The backup rule a request names, its VM (one the rule backs up or did)
 * and its point (`--point N`, which needs the VM; *seq 0 when none): NULL,
 * or an error answer (what names the operation: "verify", "instant
 * recovery"). */
struct cfg_rule;
json_t *bak_request_point(const struct request *req, const char *what, const struct cfg_rule **rule, uint64_t *seq);

#endif
