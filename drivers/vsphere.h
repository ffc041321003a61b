/* The vSphere client: one per platform.  Non-blocking on the engine's
 * loop (through engine/core/http.c); it logs in lazily, keeps the session
 * alive, logs in again and retries on NotAuthenticated, and retries
 * transient failures (connection errors, HTTP 5xx without a SOAP fault)
 * with backoff until a retry window runs out, after which the peer is
 * reported unreachable. */
#ifndef VMFERRY_VSPHERE_H
#define VMFERRY_VSPHERE_H

#include <stdint.h>

#include "drivers/soap.h"
#include "engine/core/http.h"

struct vs_client;
struct vs_call;

struct vs_config {
	const char *name;      /* platform name, for messages */
	const char *url;       /* https://host:port/sdk */
	const char *username;
	const char *password;
	struct http_tls tls;
	double retry_window_s; /* give up on transient failures after this long (default 15) */
	double keepalive_s;    /* idle time before a keepalive call (default 300) */
};

enum vs_status {
	VS_OK,
	VS_FAULT,       /* the server refused the call: see reply.fault_type */
	VS_UNREACHABLE, /* transient failures lasted the whole retry window */
	VS_AUTH,        /* the credentials were refused */
	VS_TLS,         /* the certificate was refused; error shows its thumbprint */
	VS_BADREPLY,    /* an answer that is not the SOAP we expect */
};

struct vs_result {
	enum vs_status status;
	char *error;              /* for people; NULL when VS_OK */
	struct soap_reply reply;  /* VS_OK: reply.body_child is <MethodResponse>; VS_FAULT: fault fields */
};

typedef void (*vs_done_fn)(struct vs_result *res, void *arg);

/* Well-known objects of the service content. */
struct vs_service {
	char *root_folder;
	char *property_collector;
	char *view_manager;
	char *session_manager;
	char *file_manager;
	char *virtual_disk_manager;
	char *search_index;
	char *api_version;
};

struct vs_client *vs_client_new(const struct vs_config *cfg);
void vs_client_free(struct vs_client *c);

/* Send a request (the client takes it).  done runs from the loop exactly
 * once unless the call is cancelled; res is freed after done returns. */
struct vs_call *vs_call(struct vs_client *c, struct soap_req *req, vs_done_fn done, void *arg);
void vs_call_cancel(struct vs_call *call);

/* Make sure a session exists (log in if needed); done gets VS_OK or why not. */
struct vs_call *vs_login(struct vs_client *c, vs_done_fn done, void *arg);
/* Drop the session (e.g. after a 401 on /folder) and log in again. */
struct vs_call *vs_relogin(struct vs_client *c, vs_done_fn done, void *arg);

const struct vs_service *vs_service(const struct vs_client *c);
/* "vmware_soap_session=..." for /folder requests, or NULL before login. */
const char *vs_cookie(const struct vs_client *c);
const struct vs_config *vs_config(const struct vs_client *c);
/* https://host:port (the URL without /sdk). */
const char *vs_base_url(const struct vs_client *c);

/* Counters, for tests and statistics. */
struct vs_stats {
	uint64_t calls;
	uint64_t logins;
	uint64_t retries;
	uint64_t relogins;
	uint64_t keepalives;
};
void vs_get_stats(const struct vs_client *c, struct vs_stats *st);

const char *vs_status_name(enum vs_status s);
/* Is this a transient problem (try later) rather than a refusal? */
int vs_status_transient(enum vs_status s);

#endif
