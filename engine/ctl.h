/* The status socket: a Unix stream socket (mode 0660) speaking
 * newline-delimited JSON.  ctl.c owns connections and framing; the engine
 * answers requests.  No client, however slow or hostile, can block the
 * loop: output is buffered with a cap, input lines are capped, and each
 * callback handles a bounded number of requests. */
#ifndef VMFERRY_CTL_H
#define VMFERRY_CTL_H

#include <jansson.h>
#include <stdint.h>

#include "engine/request.h"

struct event_base;
struct ctl_client;

/* Answer a request now (return the response object, stolen), or return
 * NULL and answer later with ctl_reply(ctl_client_id(c), ...). */
typedef json_t *(*ctl_handler_fn)(struct ctl_client *c, const struct request *req);

int ctl_open(struct event_base *base, const char *path, ctl_handler_fn handler);
void ctl_close(void);

uint64_t ctl_client_id(const struct ctl_client *c);
/* An error answer, {"ok":false,"error":MESSAGE}: the message made valid
 * UTF-8 (it may quote a client's bytes or a file's name). */
json_t *ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Send a late answer; dropped if the client has gone.  Steals resp. */
void ctl_reply(uint64_t client_id, json_t *resp);
/* Turn the connection into an event stream, optionally for one rule/kind. */
void ctl_client_watch(struct ctl_client *c, const char *rule, const char *kind);
/* Send an event to every watcher whose filter matches.  Does not steal. */
void ctl_broadcast(const json_t *event, const char *rule, const char *kind);

/* A client that is no socket connection: an HTTP request (http_api.c).
 * Its answer goes to send() with ok and more = 0, then the client is
 * gone; once it watches, every answer and event comes with more = 1
 * until ctl_sink_close(), or drop() when it falls behind (backlog() over
 * the limit a socket watcher has), after which it is gone too. */
struct ctl_sink {
	void (*send)(void *arg, const char *json, size_t len, int ok, int more);
	size_t (*backlog)(void *arg);
	void (*drop)(void *arg);
};
/* Handles one request line for a sink.  Returns -1 with *err (malloc'd)
 * when the line is no valid request (nothing was sent); else 0 with *id
 * the client's id while an answer is due or it watches, 0 once it was
 * answered and is gone. */
int ctl_sink_request(const struct ctl_sink *sink, void *arg, const char *line, size_t len, uint64_t *id,
    char **err);
/* The sink's peer went away: nothing more is sent to it. */
void ctl_sink_close(uint64_t id);

int ctl_client_count(void);
/* Clients served at once at most: the descriptor limit (RLIMIT_NOFILE)
 * less a reserve for the jobs, or a quarter of a small limit.  Beyond it,
 * and whenever accept runs out of descriptors, new connections wait in
 * the listen backlog until there is room. */
int ctl_client_max(void);

#endif
