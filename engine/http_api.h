/* The HTTP listener (SPEC §13): /metrics, /api/v1/OP (the status
 * socket's requests, answered by the same handler through ctl.c's
 * sinks), /api/v1/events (watch as Server-Sent Events) and the
 * dashboard's static files, served by libevent's evhttp on the loop.
 * The only file that talks to evhttp. */
#ifndef VMFERRY_HTTP_API_H
#define VMFERRY_HTTP_API_H

struct event_base;
struct cfg_http;

/* Listen as configured (h->enabled 0: not at all), or keep listening
 * when the address is unchanged; a new token applies at once.  Called at
 * start-up and after every reload.  Returns -1 when the address cannot be
 * bound (logged; the previous listener, if any, is kept). */
int http_api_apply(struct event_base *base, const struct cfg_http *h);
void http_api_close(void);
/* Clients with a request in progress or an event stream open. */
int http_api_clients(void);

#endif
