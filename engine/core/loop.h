/* The one libevent base of the process. */
#ifndef VMFERRY_LOOP_H
#define VMFERRY_LOOP_H

struct event_base;

struct event_base *loop_init(void);
struct event_base *loop_base(void);
void loop_free(void);

#endif
