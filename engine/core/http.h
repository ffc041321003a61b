/* HTTP(S) requests on the event loop: the only file that talks to curl.
 * Drivers build requests and read results; they never see curl.
 *
 * Completions are queued and delivered from the loop, never from inside
 * a curl callback, so a done callback may start or cancel requests and
 * dispatch FSM events freely. */
#ifndef VMFERRY_HTTP_H
#define VMFERRY_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct http_req;

/* How the server's certificate is checked.  Default (all zero): verify
 * against the system's trusted CAs and the host name. */
struct http_tls {
	int insecure;          /* accept any certificate (explicit config only) */
	int has_pin;           /* accept exactly the certificate with this SHA-256 */
	uint8_t pin[32];
	const char *ca_file;   /* trust this CA bundle instead of the system's */
};

typedef void (*http_done_fn)(struct http_req *r, void *arg);
/* Receives the body of a 2xx response (http_status() tells which) as it
 * arrives; return 0 to go on, -1 to abort the request.  Other bodies
 * (error pages) are collected as without a sink. */
typedef int (*http_sink_fn)(const void *p, size_t n, void *arg);

int http_init(struct event_base *base);
void http_shutdown(void);

struct http_req *http_new(const char *method, const char *url);
void http_add_header(struct http_req *r, const char *header); /* "Name: value" */
/* The body is copied. */
void http_set_body(struct http_req *r, const void *p, size_t n);
/* Stream a PUT body from a file descriptor (not closed by http). */
void http_set_upload_fd(struct http_req *r, int fd, uint64_t len);
/* The body of a PUT made as it goes: read(arg, buf, n) gives up to n
 * bytes, 0 only at the end, -1 on a failure (the request is aborted). */
typedef ssize_t (*http_body_fn)(void *arg, char *buf, size_t n);
void http_set_upload_source(struct http_req *r, http_body_fn read, void *arg, uint64_t len);
void http_set_range(struct http_req *r, uint64_t first, uint64_t last);
/* Several ranges: "FIRST-LAST,FIRST-LAST,..." (copied by curl). */
void http_set_ranges(struct http_req *r, const char *spec);
void http_set_sink(struct http_req *r, http_sink_fn sink, void *arg);
void http_set_tls(struct http_req *r, const struct http_tls *tls);
void http_set_cookie(struct http_req *r, const char *cookie);
/* Larger bodies collected in memory abort the request (default 64 MiB);
 * one announced larger (Content-Length) is refused before it arrives. */
void http_set_max_body(struct http_req *r, size_t n);
/* Abort when less than 1 KiB/s moves for this many seconds (default 60):
 * a stalled server or one that drips bytes. */
void http_set_stall_timeout(struct http_req *r, long seconds);
/* Abort after this long in total. */
void http_set_timeout(struct http_req *r, long ms);

/* Start; done is called exactly once from the loop, unless cancelled. */
int http_start(struct http_req *r, http_done_fn done, void *arg);
/* Stop a request; done is not called.  Frees it. */
void http_cancel(struct http_req *r);
void http_free(struct http_req *r);

/* Results, valid in and after the done callback. */
long http_status(const struct http_req *r);       /* 0 if no HTTP answer; known in the sink too */
const char *http_error(const struct http_req *r); /* NULL on a transport success */
int http_transport_failed(const struct http_req *r);
/* The connection could not be made: the request never reached the server. */
int http_connect_failed(const struct http_req *r);
int http_tls_refused(const struct http_req *r);   /* the certificate was not accepted */
int http_too_large(const struct http_req *r);     /* the body passed the http_set_max_body limit */
const char *http_body(const struct http_req *r, size_t *len);
/* A response header's value (first occurrence, case-insensitive), or NULL.
 * The returned string is valid until the next call. */
const char *http_header(const struct http_req *r, const char *name);
/* The SHA-256 of the certificate the server presented; 1 if seen. */
int http_peer_thumbprint(const struct http_req *r, uint8_t out[32]);
uint64_t http_bytes_received(const struct http_req *r);

/* Totals since start, for statistics and benchmarks. */
uint64_t http_total_bytes(void);
int http_in_flight(void);

#endif
