/* The one libevent base of the process. */
#ifndef VMFERRY_LOOP_H
#define VMFERRY_LOOP_H

struct event_base;

/* Two priorities: the status socket's events run before the rest, and
 * the loop looks for them again at least every LOOP_RECHECK_MS while it
 * runs the rest's callbacks (a backup's data arrives in a stream of
 * them; SPEC §8: ping within 100 ms).  Events have LOOP_PRIO_NORMAL
 * unless set otherwise. */
#define LOOP_PRIO_URGENT 0
#define LOOP_PRIO_NORMAL 1
#define LOOP_NPRIO 2
#define LOOP_RECHECK_MS 5

struct event_base *loop_init(void);
struct event_base *loop_base(void);
void loop_free(void);

#endif
