/* The scheduler: at most max_tasks jobs hold a transfer slot at once, and
 * at most max_tasks_per_host per ESXi host; the rest wait in FIFO order
 * (排队中, shown as pending).  It knows nothing of jobs: a job embeds a
 * sched_item and tells the scheduler when it takes and gives back a slot. */
#ifndef VMFERRY_SCHED_H
#define VMFERRY_SCHED_H

#include <sys/queue.h>

struct event_base;

struct sched_item {
	TAILQ_ENTRY(sched_item) link;
	char host[64];   /* ESXi host of the VM; "" while unknown */
	int queued;      /* in the waiting queue */
	int active;      /* holds a slot */
	double queued_at;
	/* Called to admit the item; it must take the slot (sched_hold)
	 * synchronously or leave it queued. */
	void (*admit)(struct sched_item *it);
};

void sched_init(struct event_base *base);
void sched_free(void);
void sched_set_limits(int max_tasks, int max_per_host);
void sched_set_host(struct sched_item *it, const char *host);
void sched_enqueue(struct sched_item *it);
void sched_dequeue(struct sched_item *it);
/* Slot accounting follows the job's state. */
void sched_hold(struct sched_item *it);
void sched_release(struct sched_item *it);
/* Admit what fits now; returns how many were admitted.  sched_kick runs
 * a pass on the next loop turn; without a loop (unit tests) it does
 * nothing and the caller runs sched_pass itself. */
int sched_pass(void);
void sched_kick(void);

int sched_active_total(void);
int sched_active_on(const char *host);
int sched_queued_total(void);
/* 1-based position in the queue, 0 when not queued. */
int sched_position(const struct sched_item *it);

#endif
