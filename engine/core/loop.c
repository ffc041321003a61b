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
	if (base == NULL) {
		struct event_config *cfg = event_config_new();
		struct timeval tv = { 0, LOOP_RECHECK_MS * 1000 };

		if (cfg == NULL || event_config_set_max_dispatch_interval(cfg, &tv, -1, LOOP_PRIO_NORMAL) != 0 ||
		    (base = event_base_new_with_config(cfg)) == NULL || event_base_priority_init(base, LOOP_NPRIO) != 0)
			fatal("cannot create the event loop");
		event_config_free(cfg);
	}
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
