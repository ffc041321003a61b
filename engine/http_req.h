/* HTTP requests read as the status socket's: a request target (path and
 * query) and body turned into one request line for request_parse(),
 * static file names checked, the Host and Authorization headers and the
 * configured listen address read.  No evhttp and no I/O here, so the
 * fuzz target can run it on any bytes (http_api.c does the talking). */
#ifndef VMFERRY_HTTP_REQ_H
#define VMFERRY_HTTP_REQ_H

#include <jansson.h>
#include <stddef.h>

#include "engine/request.h"

/* Longest request target (path and query) taken. */
#define HTTP_MAX_TARGET 4096

/* "HOST:PORT": an IPv4 address, "[IPv6]" or localhost (127.0.0.1), and
 * a port 1-65535.  Returns 0 with host (numeric, no brackets), *port and
 * *loopback; -1 with *why. */
int http_listen_parse(const char *s, char *host, size_t hostlen, int *port, int *loopback, const char **why);

enum http_route {
	HTTP_ROUTE_STATIC,  /* a dashboard file */
	HTTP_ROUTE_METRICS, /* /metrics */
	HTTP_ROUTE_API,     /* /api/v1/OP; /api/v1/events is OP_WATCH */
};

struct http_target {
	enum http_route route;
	char *file;         /* static: below the dashboard directory, checked */
	enum request_op op; /* api */
	int changes;        /* the op changes something: POST with the token */
	json_t *fields;     /* api: the query's parameters as request fields */
};

/* Reads a request target.  Returns 200, or 400 / 404 with *why. */
int http_target_parse(const char *uri, struct http_target *t, const char **why);
void http_target_free(struct http_target *t);
/* Whether an op changes something (POST) or only reads (GET). */
int http_op_changes(enum request_op op);
/* The socket request line for an API target: its query's fields (GET)
 * or the body, a JSON object without "op" (POST).  Returns it
 * (malloc'd), or NULL with *err (malloc'd). */
char *http_request_line(const struct http_target *t, const char *body, size_t len, char **err);

/* Whether a Host header names this machine by a loopback name
 * (localhost, 127.x.y.z, [::1]), port or not. */
int http_host_is_loopback(const char *host);
/* "Bearer TOKEN": returns 0 with the token, -1 when it is no bearer
 * token. */
int http_bearer(const char *header, const char **tok, size_t *len);

#endif
