/* What the work of every job kind shares: tokens that drop late
 * callbacks, outcomes (a refusal fails the job, a lost peer makes it
 * 失效), the rule's platforms and mounts, and the job's directory in the
 * node's temp_dir. */
#ifndef VMFERRY_JOBS_RUNTIME_H
#define VMFERRY_JOBS_RUNTIME_H

#include <stdint.h>

struct job;
struct vs_client;
struct vs_out;
struct vs_vm;

/* ---- late callbacks: only for the work they were started for ----
 *
 * Every transition cancels the work of the state it leaves and bumps the
 * job's epoch (job_cancel_work), so a callback whose token is older is
 * dropped here, before it can reach the FSM: the tables list only events
 * that really happen in a state. */
struct token {
	struct job *j;
	unsigned epoch;
	void *ctx; /* the work's owner inside the job's runtime: valid while the token is */
	int flag;  /* for the caller (an inventory lookup: asked afresh) */
	void (*found)(struct job *j, const struct vs_vm *vm); /* an inventory lookup's continuation */
};

struct token *token_new(struct job *j);
/* A token for work owned by ctx (a sync pass, a target, ...): its answer
 * finds ctx again through token_ctx / token_ctx_reply. */
struct token *token_for(struct job *j, void *ctx);
/* ctx when the work is still current, else NULL.  Frees the token. */
void *token_ctx(struct token *t);
/* As token_reply, giving ctx. */
void *token_ctx_reply(struct vs_out *out, void *arg, const char *what);
/* The job the token belongs to, or NULL when that work was cancelled
 * meanwhile.  Frees the token. */
struct job *token_take(struct token *t);
/* A token whose answer will never come (the driver call it was given to
 * was cancelled: vs_op_cancel hands it back): freed, its job released.
 * NULL: nothing. */
void token_drop(void *arg);
/* The answer to a driver call: the job when the work is still current
 * and the call worked; NULL when the work was superseded, or when the call
 * failed (handed on through rt_vs_failed, naming what was being done). */
struct job *token_reply(struct vs_out *out, void *arg, const char *what);

/* ---- outcomes ---- */

/* A refusal: the job fails (a failure in its statistics) with the reason. */
void rt_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A lost peer or node resource: the job goes 失效 and retries by itself. */
void rt_lost(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A driver call failed: lost peers retry later, refusals fail the job. */
void rt_vs_failed(struct job *j, const char *what, const struct vs_out *out);
/* An inventory could not be read: refused (credentials, certificate)
 * fails the job, unreachable makes it 失效. */
void rt_platform_failed(struct job *j, const char *which, const char *platform, const char *error, int refused);
/* A record this daemon cannot read: fail with the reason (returns 1), or 0. */
int rt_unreadable(struct job *j, int bad);

/* ---- the rule's world ---- */

struct vs_client *rt_src_client(struct job *j);
struct vs_client *rt_dst_client(struct job *j);
/* The mount of a datastore of a platform on this node, or NULL. */
const char *rt_mount_of(const char *platform, const char *datastore);

/* The job's directory in the node's temp_dir, temp_dir/<kind>/<rule>/<vm>
 * (created), or NULL with *err (and the errno in *errnum).  A migration's
 * directory of the previous layout (temp_dir/<rule>/<vm>) is moved there
 * first, so staging images survive an upgrade. */
char *rt_staging_dir(struct job *j, char **err, int *errnum);
/* A file in it. */
char *rt_staging_file(struct job *j, const char *name, char **err, int *errnum);
/* The job's directory, or one file in it, goes: moved aside at once,
 * removed on a device thread (a cached image of gigabytes takes the
 * kernel hundreds of milliseconds to unlink). */
void rt_staging_remove(struct job *j);
void rt_staging_unlink(struct job *j, const char *path);
/* What a crash left in the nodes' temp_dir/.trash: removed on a device
 * thread (engine start). */
void rt_sweep_trash(void);

int64_t rt_now_ms(void);

/* A sync pass's settings: the rule's options, the system's buffers and
 * parallelism (host_buffer_cap over max_tasks_per_host × transfer_buffer),
 * the bandwidth bucket of (kind, rule). */
struct sync_settings;
void rt_sync_settings(struct job *j, struct sync_settings *s);

/* starting: find the VM on the source platform (asking afresh once when
 * the cached inventory lacks it); its ESXi host decides its
 * max_tasks_per_host slot; then EV_STARTED.  may_be_gone: a missing VM
 * is no error (after a cutover the source may be gone or renamed). */
void rt_find_source(struct job *j, int may_be_gone);
/* The same lookup, then found(j, vm) (vm NULL: gone, with may_be_gone)
 * instead of EV_STARTED. */
void rt_find_source_then(struct job *j, int may_be_gone, void (*found)(struct job *j, const struct vs_vm *vm));

/* The source VM's configuration saved as vm-config.json in the job's
 * temp_dir directory (atomically); 0, or -1 with the job made 失效. */
int rt_save_vm_config(struct job *j, const struct vs_vm *vm);

/* A deep copy of a VM as the driver describes it (vs_vm_dup: its
 * hardware, not its snapshots). */
void rt_vm_dup(const struct vs_vm *from, struct vs_vm *to);
void rt_vm_set(struct vs_vm **slot, const struct vs_vm *vm);

#endif
