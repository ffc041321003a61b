#include "engine/core/loop.h"

#include <event2/event.h>
#include <event2/thread.h>

#include "engine/core/util.h"

static struct event_base *base;

struct event_base *
loop_init(void)
{
	/* Worker threads hand their results back through events (workers.c). */
	if (base == NULL && evthread_use_pthreads() != 0)
		fatal("cannot enable the event loop's thread support");
	if (base == NULL && (base = event_base_new()) == NULL)
		fatal("cannot create the event loop");
	return base;
}

struct event_base *
loop_base(void)
{
	return base;
}

void
loop_free(void)
{
	if (base != NULL)
		event_base_free(base);
	base = NULL;
}
