/* A small pool of worker threads for the blocking work of the engine
 * (hashing, compressing, encrypting and filing repository chunks, reading
 * and writing repository metadata): the loop thread hands work over and
 * learns of its end as a loop event, so it never waits on a disk or a
 * CPU-bound step itself.
 *
 * fn runs on a worker thread and must touch only its arg; done runs on the
 * loop thread afterwards, then release frees arg (release may be NULL).  A
 * cancelled work never calls done: release runs at once when fn had not
 * started, else on the loop once fn has returned. */
#ifndef VMFERRY_WORKERS_H
#define VMFERRY_WORKERS_H

struct event_base;
struct work;

typedef void (*work_fn)(void *arg);

/* n threads for the CPU's work (n <= 0: as many as there are cores) and a
 * few that wait for the device.  Idempotent. */
void workers_init(struct event_base *base, int n);
/* Waits for the work that runs, drops the work that waits (released). */
void workers_free(void);
/* Threads for the CPU's work. */
int workers_count(void);

struct work *work_submit(work_fn fn, work_fn done, work_fn release, void *arg);
/* The same for work that mostly waits for the device (fdatasync), so that
 * the CPU's threads never sit in such a wait. */
struct work *work_submit_io(work_fn fn, work_fn done, work_fn release, void *arg);
/* w may be NULL. */
void work_cancel(struct work *w);

#endif
