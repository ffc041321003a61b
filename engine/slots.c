#include "engine/slots.h"

#include <event2/event.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"

struct host_count {
	char host[64];
	int active;
};

static struct {
	TAILQ_HEAD(, slot_item) queue;
	int nqueued;
	int max_tasks;
	int max_per_host;
	int active;
	struct host_count *hosts;
	size_t nhosts;
	struct event *kick_ev;
	int had_active;         /* a slot was taken since the last trim */
	int init;
} sc;

static void
slots_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	slots_pass();
#ifdef __GLIBC__
	/* The last slot was given back and nothing waits: what the transfers
	 * freed (TLS and curl state, many small pieces) goes back to the
	 * system.  glibc keeps freed memory inside its heap otherwise, and
	 * a thousand idle jobs would look several megabytes larger. */
	if (sc.active == 0 && sc.nqueued == 0 && sc.had_active) {
		sc.had_active = 0;
		malloc_trim(0);
	}
#endif
}

static void
slots_lazy_init(void)
{
	if (sc.init)
		return;
	TAILQ_INIT(&sc.queue);
	sc.max_tasks = 4;
	sc.max_per_host = 4;
	sc.init = 1;
}

void
slots_init(struct event_base *base)
{
	slots_lazy_init();
	if (base != NULL && sc.kick_ev == NULL)
		sc.kick_ev = event_new(base, -1, 0, slots_kick_cb, NULL);
}

void
slots_free(void)
{
	if (sc.kick_ev != NULL)
		event_free(sc.kick_ev);
	free(sc.hosts);
	memset(&sc, 0, sizeof(sc));
}

void
slots_set_limits(int max_tasks, int max_per_host)
{
	slots_lazy_init();
	sc.max_tasks = max_tasks;
	sc.max_per_host = max_per_host;
	slots_kick();
}

static struct host_count *
host_slot(const char *host)
{
	size_t i;

	for (i = 0; i < sc.nhosts; i++)
		if (strcmp(sc.hosts[i].host, host) == 0)
			return &sc.hosts[i];
	sc.hosts = xreallocarray(sc.hosts, sc.nhosts + 1, sizeof(*sc.hosts));
	memset(&sc.hosts[sc.nhosts], 0, sizeof(*sc.hosts));
	snprintf(sc.hosts[sc.nhosts].host, sizeof(sc.hosts[0].host), "%s", host);
	return &sc.hosts[sc.nhosts++];
}

void
slots_set_host(struct slot_item *it, const char *host)
{
	if (it->active) {
		host_slot(it->host)->active--;
		snprintf(it->host, sizeof(it->host), "%s", host ? host : "");
		host_slot(it->host)->active++;
	} else {
		snprintf(it->host, sizeof(it->host), "%s", host ? host : "");
	}
}

void
slots_enqueue(struct slot_item *it)
{
	slots_lazy_init();
	if (it->queued)
		return;
	it->queued = 1;
	it->queued_at = now_mono();
	TAILQ_INSERT_TAIL(&sc.queue, it, link);
	sc.nqueued++;
	slots_kick();
}

void
slots_dequeue(struct slot_item *it)
{
	if (!it->queued)
		return;
	TAILQ_REMOVE(&sc.queue, it, link);
	it->queued = 0;
	sc.nqueued--;
}

void
slots_hold(struct slot_item *it)
{
	slots_lazy_init();
	if (it->active)
		return;
	slots_dequeue(it);
	it->active = 1;
	sc.active++;
	sc.had_active = 1;
	host_slot(it->host)->active++;
}

void
slots_release(struct slot_item *it)
{
	if (!it->active)
		return;
	it->active = 0;
	sc.active--;
	host_slot(it->host)->active--;
	slots_kick();
}

int
slots_pass(void)
{
	struct slot_item *it, *next;
	int admitted = 0;

	slots_lazy_init();
	for (it = TAILQ_FIRST(&sc.queue); it != NULL && sc.active < sc.max_tasks; it = next) {
		next = TAILQ_NEXT(it, link);
		if (host_slot(it->host)->active >= sc.max_per_host)
			continue;
		it->admit(it);
		if (it->active) {
			admitted++;
			/* admit may have dequeued others; restart from the head. */
			next = TAILQ_FIRST(&sc.queue);
		}
	}
	return admitted;
}

void
slots_kick(void)
{
	if (sc.kick_ev != NULL)
		event_active(sc.kick_ev, EV_TIMEOUT, 1);
}

int
slots_active_total(void)
{
	return sc.active;
}

int
slots_active_on(const char *host)
{
	size_t i;

	for (i = 0; i < sc.nhosts; i++)
		if (strcmp(sc.hosts[i].host, host) == 0)
			return sc.hosts[i].active;
	return 0;
}

int
slots_queued_total(void)
{
	return sc.nqueued;
}

int
slots_position(const struct slot_item *it)
{
	const struct slot_item *p;
	int n = 0;

	if (!it->queued)
		return 0;
	TAILQ_FOREACH(p, &sc.queue, link) {
		n++;
		if (p == it)
			return n;
	}
	return 0;
}
