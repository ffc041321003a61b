/* Transfer slots: at most max_tasks jobs hold a transfer slot at once, and
 * at most max_tasks_per_host per ESXi host; the rest wait in FIFO order
 * (排队中, shown as pending).  It knows nothing of jobs: a job embeds a
 * slot_item and tells this module when it takes and gives back a slot. */
#ifndef VMFERRY_SLOTS_H
#define VMFERRY_SLOTS_H

#include <sys/queue.h>

struct event_base;

struct slot_item {
	TAILQ_ENTRY(slot_item) link;
	char host[64];   /* ESXi host of the VM; "" while unknown */
	int queued;      /* in the waiting queue */
	int active;      /* holds a slot */
	double queued_at;
	/* Called to admit the item; it must take the slot (slots_hold)
	 * synchronously or leave it queued. */
	void (*admit)(struct slot_item *it);
};

void slots_init(struct event_base *base);
void slots_free(void);
void slots_set_limits(int max_tasks, int max_per_host);
void slots_set_host(struct slot_item *it, const char *host);
void slots_enqueue(struct slot_item *it);
void slots_dequeue(struct slot_item *it);
/* Slot accounting follows the job's state. */
void slots_hold(struct slot_item *it);
void slots_release(struct slot_item *it);
/* Admit what fits now; returns how many were admitted.  slots_kick runs
 * a pass on the next loop turn; without a loop (unit tests) it does
 * nothing and the caller runs slots_pass itself. */
int slots_pass(void);
void slots_kick(void);

int slots_active_total(void);
int slots_active_on(const char *host);
int slots_queued_total(void);
/* 1-based position in the queue, 0 when not queued. */
int slots_position(const struct slot_item *it);

#endif
