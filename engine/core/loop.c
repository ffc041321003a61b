#include "engine/core/loop.h"

#include <event2/event.h>

#include "engine/core/util.h"

static struct event_base *base;

struct event_base *
loop_init(void)
{
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
