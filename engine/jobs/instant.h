/* Instant recovery (瞬时恢复, SPEC §11): a backup point's disks served as
 * NBD exports straight from the repository, one nbdkit per disk with the
 * project's plugin (drivers/nbdkit_repo.c) under nbdkit's cow filter, so
 * a VM can run from them at once and the repository never changes.
 *
 * Each instant recovery is a record in the store (STORE_INSTANT) and a
 * directory STATE_DIR/instant/<id>/ holding per disk d<N>.sock (Unix
 * listening), d<N>.pid, d<N>.log, and overlay/ (the cow filter's
 * TMPDIR).  The nbdkit processes live on their own: a daemon that stops or
 * crashes leaves them serving, and at start the engine adopts the ones
 * that run (by their pid file and command line) and starts the ones that
 * are gone; a watchdog restarts an nbdkit that dies meanwhile (the
 * overlay, and so what the VM wrote, is lost with it). */
#ifndef VMFERRY_JOBS_INSTANT_H
#define VMFERRY_JOBS_INSTANT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct ctl_client;
struct request;

/* At start-up, once jobs are loaded: the records read, their exports
 * adopted or started again. */
void instant_init(struct event_base *base);
/* At shutdown: memory only; the exports keep running. */
void instant_shutdown(void);

/* `restore RULE VM [--point P] --target instant [--listen L]`: answered
 * once every disk is served (NULL now), or an error now. */
json_t *instant_restore(struct ctl_client *c, const struct request *req);
/* `instant` (the list) and `instant --stop ID`. */
json_t *instant_op(struct ctl_client *c, const struct request *req);

/* Instant recoveries recorded and not being stopped (/metrics). */
size_t instant_running(void);
/* The points of rule/vm in the repository in dir that instant recoveries
 * serve (malloc'd in *seqs; their count): retention keeps them, so that
 * garbage collection cannot take their chunks from a running VM. */
size_t instant_points(const char *dir, const char *rule, const char *vm, uint64_t **seqs);

#endif
