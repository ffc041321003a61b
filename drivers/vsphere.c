#include "drivers/vsphere.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define VS_DEFAULT_RETRY_WINDOW_S 15.0
#define VS_DEFAULT_KEEPALIVE_S 300.0
#define VS_BACKOFF_FIRST_S 0.25
#define VS_BACKOFF_MAX_S 4.0
/* A SOAP call that is still not answered after this long is given up (a
 * server dripping just above the minimum speed would otherwise hold it
 * for hours). */
#define VS_CALL_TIMEOUT_MS (10L * 60 * 1000)

enum call_state { CALL_IDLE, CALL_WAIT_LOGIN, CALL_INFLIGHT, CALL_WAIT_RETRY };
enum call_kind { KIND_USER, KIND_SERVICE, KIND_LOGIN, KIND_LOGIN_WAIT, KIND_KEEPALIVE };

struct vs_call {
	TAILQ_ENTRY(vs_call) link;
	struct vs_client *c;
	enum call_kind kind;
	enum call_state st;
	char *method;
	char *body;
	size_t len;
	vs_done_fn done;
	void *arg;
	struct http_req *http;
	struct event *timer;
	double first_try;
	double backoff;
	int relogged;
};

TAILQ_HEAD(call_list, vs_call);

enum session_state { SESS_NONE, SESS_LOGGING_IN, SESS_READY };

struct vs_client {
	struct vs_config cfg;
	char *name, *url, *base_url, *username, *password, *ca_file;
	struct vs_service svc;
	int have_svc;
	char *cookie;
	enum session_state sess;
	struct call_list calls;      /* every live call */
	struct vs_call *login_call;  /* the login in progress */
	struct event *keepalive;
	double last_activity;
	struct vs_stats stats;
};

static void call_send(struct vs_call *call);
static void login_start(struct vs_client *c);

const char *
vs_status_name(enum vs_status s)
{
	switch (s) {
	case VS_OK: return "ok";
	case VS_FAULT: return "fault";
	case VS_UNREACHABLE: return "unreachable";
	case VS_AUTH: return "authentication";
	case VS_TLS: return "tls";
	case VS_BADREPLY: return "bad reply";
	}
	return "?";
}

int
vs_status_transient(enum vs_status s)
{
	return s == VS_UNREACHABLE;
}

/* ---- calls ---- */

static struct vs_call *
call_new(struct vs_client *c, enum call_kind kind, struct soap_req *req, vs_done_fn done, void *arg)
{
	struct vs_call *call = xcalloc(1, sizeof(*call));

	call->c = c;
	call->kind = kind;
	call->done = done;
	call->arg = arg;
	call->st = CALL_IDLE;
	call->backoff = VS_BACKOFF_FIRST_S;
	if (req != NULL) {
		call->method = xstrdup((const char *)req->method->name);
		call->body = soap_req_serialize(req, &call->len);
		soap_req_free(req);
	}
	TAILQ_INSERT_TAIL(&c->calls, call, link);
	return call;
}

static void
call_free(struct vs_call *call)
{
	TAILQ_REMOVE(&call->c->calls, call, link);
	if (call->http != NULL)
		http_cancel(call->http);
	if (call->timer != NULL)
		event_free(call->timer);
	if (call->c->login_call == call)
		call->c->login_call = NULL;
	free(call->method);
	free(call->body);
	free(call);
}

/* Deliver the result and forget the call. */
static void
call_finish(struct vs_call *call, enum vs_status st, char *error, struct soap_reply *reply)
{
	struct vs_result res;
	vs_done_fn done = call->done;
	void *arg = call->arg;

	memset(&res, 0, sizeof(res));
	res.status = st;
	res.error = error;
	if (reply != NULL) {
		res.reply = *reply;
		memset(reply, 0, sizeof(*reply));
	}
	call_free(call);
	if (done != NULL)
		done(&res, arg);
	free(res.error);
	soap_reply_free(&res.reply);
}

static void
call_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vs_call *call = arg;

	call->st = CALL_IDLE;
	/* A wait for a session that was already there: just answer. */
	if (call->kind == KIND_LOGIN_WAIT) {
		call_finish(call, VS_OK, NULL, NULL);
		return;
	}
	call_send(call);
}

/* A transient failure: try again after a backoff, or give up when the
 * retry window is spent. */
static void
call_transient(struct vs_call *call, const char *why)
{
	struct vs_client *c = call->c;
	double now = now_mono();
	struct timeval tv;

	if (now - call->first_try + call->backoff > c->cfg.retry_window_s) {
		char *msg = xasprintf("%s unreachable: %s (for %.0f s)", c->name, why, now - call->first_try);

		call_finish(call, VS_UNREACHABLE, msg, NULL);
		return;
	}
	c->stats.retries++;
	log_debug("vsphere %s: %s failed (%s); retrying in %.2f s", c->name, call->method ? call->method : "login", why,
	    call->backoff);
	if (call->timer == NULL)
		call->timer = evtimer_new(loop_base(), call_retry_cb, call);
	tv.tv_sec = (long)call->backoff;
	tv.tv_usec = (long)((call->backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(call->timer, &tv);
	call->st = CALL_WAIT_RETRY;
	call->backoff *= 2;
	if (call->backoff > VS_BACKOFF_MAX_S)
		call->backoff = VS_BACKOFF_MAX_S;
}

/* Park a call until the session is ready. */
static void
call_wait_login(struct vs_call *call)
{
	call->st = CALL_WAIT_LOGIN;
	if (call->c->sess != SESS_LOGGING_IN)
		login_start(call->c);
}

static int
call_needs_session(const struct vs_call *call)
{
	return call->kind == KIND_USER || call->kind == KIND_KEEPALIVE;
}

/* Calls that change nothing (or nothing that matters) when repeated. */
static int
call_idempotent(const struct vs_call *call)
{
	static const char *const safe[] = {
		"RetrieveServiceContent", "Login", "RetrievePropertiesEx",
		"RetrieveProperties", "CurrentTime", "QueryChangedDiskAreas", "CreateContainerView", "DestroyView",
		"SessionIsActive", NULL,
	};
	size_t i;

	if (call->method == NULL)
		return 1;
	for (i = 0; safe[i] != NULL; i++)
		if (strcmp(call->method, safe[i]) == 0)
			return 1;
	return 0;
}

static char *
cookie_from(const char *set_cookie)
{
	const char *semi;

	if (set_cookie == NULL)
		return NULL;
	semi = strchr(set_cookie, ';');
	return semi ? xstrndup(set_cookie, (size_t)(semi - set_cookie)) : xstrdup(set_cookie);
}

static void
call_http_done(struct http_req *h, void *arg)
{
	struct vs_call *call = arg;
	struct vs_client *c = call->c;
	struct soap_reply reply;
	const char *body;
	size_t blen;
	long status = http_status(h);
	char *err = NULL, *cookie;

	call->http = NULL;
	call->st = CALL_IDLE;
	c->last_activity = now_mono();
	if (http_transport_failed(h)) {
		if (http_tls_refused(h)) {
			char *msg = xasprintf("%s: %s", c->name, http_error(h));

			http_free(h);
			call_finish(call, VS_TLS, msg, NULL);
			return;
		}
		if (http_too_large(h)) {
			/* Asking again would bring the same flood. */
			char *msg = xasprintf("%s: %s: %s", c->name, call->method ? call->method : "login", http_error(h));

			http_free(h);
			call_finish(call, VS_BADREPLY, msg, NULL);
			return;
		}
		err = xstrdup(http_error(h));
		if (!http_connect_failed(h) && !call_idempotent(call)) {
			/* The server may have acted on it: repeating could create a
			 * second VM or snapshot.  The caller checks and decides. */
			char *msg = xasprintf("%s: %s: %s; whether the server carried it out is unknown", c->name,
			    call->method, err);

			http_free(h);
			free(err);
			call_finish(call, VS_UNREACHABLE, msg, NULL);
			return;
		}
		http_free(h);
		call_transient(call, err);
		free(err);
		return;
	}
	if (call->kind == KIND_LOGIN && (cookie = cookie_from(http_header(h, "Set-Cookie"))) != NULL) {
		free(c->cookie);
		c->cookie = cookie;
	}
	body = http_body(h, &blen);
	if (status != 200 && status != 500) {
		char *why = xasprintf("HTTP %ld", status);

		http_free(h);
		if (status >= 500 || status == 429) {
			call_transient(call, why);
		} else if (status == 401 && call_needs_session(call) && !call->relogged) {
			call->relogged = 1;
			c->sess = SESS_NONE;
			c->stats.relogins++;
			call_wait_login(call);
		} else {
			char *msg = xasprintf("%s: %s answered %s", c->name, call->method ? call->method : "login", why);

			call_finish(call, VS_BADREPLY, msg, NULL);
		}
		free(why);
		return;
	}
	if (soap_parse_reply(body, blen, &reply, &err) != 0) {
		char *msg = xasprintf("%s: %s: %s (HTTP %ld)", c->name, call->method ? call->method : "call", err, status);

		free(err);
		http_free(h);
		/* A 5xx with a body that is not SOAP is a proxy or server hiccup. */
		if (status == 500) {
			call_transient(call, msg);
			free(msg);
		} else {
			call_finish(call, VS_BADREPLY, msg, NULL); /* takes msg */
		}
		return;
	}
	http_free(h);
	if (!reply.is_fault) {
		call_finish(call, VS_OK, NULL, &reply);
		return;
	}
	if (reply.fault_type != NULL && strcmp(reply.fault_type, "NotAuthenticated") == 0 &&
	    call_needs_session(call) && !call->relogged) {
		/* The session expired: log in again, then repeat this call once. */
		soap_reply_free(&reply);
		call->relogged = 1;
		c->sess = SESS_NONE;
		c->stats.relogins++;
		log_info("vsphere %s: session expired; logging in again", c->name);
		call_wait_login(call);
		return;
	}
	if (call->kind == KIND_LOGIN && reply.fault_type != NULL && strcmp(reply.fault_type, "InvalidLogin") == 0) {
		char *msg = xasprintf("%s: login as %s refused (wrong user name or password)", c->name, c->username);

		soap_reply_free(&reply);
		call_finish(call, VS_AUTH, msg, NULL);
		return;
	}
	{
		char *ft = soap_fault_text(&reply);
		char *msg = xasprintf("%s: %s: %s", c->name, call->method ? call->method : "call", ft);

		free(ft);
		call_finish(call, VS_FAULT, msg, &reply);
	}
}

static void
call_send(struct vs_call *call)
{
	struct vs_client *c = call->c;
	struct http_req *h;

	if (call_needs_session(call) && c->sess != SESS_READY) {
		call_wait_login(call);
		return;
	}
	if (call->first_try == 0)
		call->first_try = now_mono();
	h = http_new("POST", c->url);
	http_add_header(h, "Content-Type: text/xml; charset=utf-8");
	http_add_header(h, "SOAPAction: urn:vim25/7.0");
	http_set_tls(h, &c->cfg.tls);
	http_set_max_body(h, SOAP_REPLY_MAX);
	http_set_timeout(h, VS_CALL_TIMEOUT_MS);
	if (c->cookie != NULL)
		http_set_cookie(h, c->cookie);
	http_set_body(h, call->body, call->len);
	call->http = h;
	call->st = CALL_INFLIGHT;
	c->stats.calls++;
	if (http_start(h, call_http_done, call) != 0) {
		call->http = NULL;
		http_free(h);
		call_transient(call, "could not start the request");
	}
}

/* ---- login ---- */

static void login_fail_waiters(struct vs_client *c, struct vs_result *res);

static void
release_waiters(struct vs_client *c)
{
	struct vs_call *call, *next;

	for (call = TAILQ_FIRST(&c->calls); call != NULL; call = next) {
		next = TAILQ_NEXT(call, link);
		if (call->st != CALL_WAIT_LOGIN)
			continue;
		if (call->kind == KIND_LOGIN_WAIT) {
			call_finish(call, VS_OK, NULL, NULL);
			continue;
		}
		call->st = CALL_IDLE;
		call_send(call);
	}
}

static void
login_fail_waiters(struct vs_client *c, struct vs_result *res)
{
	struct vs_call *call, *next;

	for (call = TAILQ_FIRST(&c->calls); call != NULL; call = next) {
		next = TAILQ_NEXT(call, link);
		if (call->st == CALL_WAIT_LOGIN)
			call_finish(call, res->status, xstrdup(res->error ? res->error : "login failed"), NULL);
	}
}

static void
login_done(struct vs_result *res, void *arg)
{
	struct vs_client *c = arg;

	if (res->status != VS_OK) {
		c->sess = SESS_NONE;
		log_warn("vsphere %s: login failed: %s", c->name, res->error);
		login_fail_waiters(c, res);
		return;
	}
	c->sess = SESS_READY;
	c->stats.logins++;
	log_info("vsphere %s: logged in as %s", c->name, c->username);
	release_waiters(c);
}

static void
login_send(struct vs_client *c)
{
	struct soap_req req;

	soap_req_init(&req, "Login", "SessionManager", c->svc.session_manager);
	soap_add(&req, NULL, "userName", c->username);
	soap_add(&req, NULL, "password", c->password);
	c->login_call = call_new(c, KIND_LOGIN, &req, login_done, c);
	call_send(c->login_call);
}

static void
service_done(struct vs_result *res, void *arg)
{
	struct vs_client *c = arg;
	xmlNode *rv;

	if (res->status != VS_OK) {
		c->sess = SESS_NONE;
		login_fail_waiters(c, res);
		return;
	}
	rv = xml_child(res->reply.body_child, "returnval");
	c->svc.root_folder = xml_child_text(rv, "rootFolder");
	c->svc.property_collector = xml_child_text(rv, "propertyCollector");
	c->svc.view_manager = xml_child_text(rv, "viewManager");
	c->svc.session_manager = xml_child_text(rv, "sessionManager");
	c->svc.file_manager = xml_child_text(rv, "fileManager");
	c->svc.virtual_disk_manager = xml_child_text(rv, "virtualDiskManager");
	c->svc.search_index = xml_child_text(rv, "searchIndex");
	c->svc.api_version = xml_child_text(xml_child(rv, "about"), "apiVersion");
	if (c->svc.session_manager == NULL || c->svc.property_collector == NULL || c->svc.root_folder == NULL) {
		struct vs_result bad = { VS_BADREPLY, NULL, { 0 } };

		bad.error = xasprintf("%s: the service content lacks sessionManager/propertyCollector/rootFolder", c->name);
		c->sess = SESS_NONE;
		login_fail_waiters(c, &bad);
		free(bad.error);
		return;
	}
	c->have_svc = 1;
	login_send(c);
}

static void
login_start(struct vs_client *c)
{
	struct soap_req req;
	struct vs_call *call;

	c->sess = SESS_LOGGING_IN;
	free(c->cookie);
	c->cookie = NULL;
	if (c->have_svc) {
		login_send(c);
		return;
	}
	soap_req_init(&req, "RetrieveServiceContent", "ServiceInstance", "ServiceInstance");
	call = call_new(c, KIND_SERVICE, &req, service_done, c);
	call_send(call);
}

struct vs_call *
vs_login(struct vs_client *c, vs_done_fn done, void *arg)
{
	struct vs_call *call = call_new(c, KIND_LOGIN_WAIT, NULL, done, arg);

	if (c->sess == SESS_READY) {
		/* Deliver from the loop, like every other answer. */
		call->st = CALL_WAIT_RETRY;
		call->timer = evtimer_new(loop_base(), call_retry_cb, call);
		{
			struct timeval tv = { 0, 0 };

			evtimer_add(call->timer, &tv);
		}
		return call;
	}
	call_wait_login(call);
	return call;
}

struct vs_call *
vs_relogin(struct vs_client *c, vs_done_fn done, void *arg)
{
	if (c->sess == SESS_READY) {
		c->sess = SESS_NONE;
		c->stats.relogins++;
	}
	return vs_login(c, done, arg);
}

/* ---- keepalive ---- */

static void
keepalive_done(struct vs_result *res, void *arg)
{
	struct vs_client *c = arg;

	if (res->status != VS_OK)
		log_debug("vsphere %s: keepalive: %s", c->name, res->error);
}

static void
keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vs_client *c = arg;
	struct soap_req req;
	struct vs_call *call;

	if (c->sess != SESS_READY || now_mono() - c->last_activity < c->cfg.keepalive_s)
		return;
	/* CurrentTime is the cheapest call that needs a session. */
	soap_req_init(&req, "CurrentTime", "ServiceInstance", "ServiceInstance");
	call = call_new(c, KIND_KEEPALIVE, &req, keepalive_done, c);
	c->stats.keepalives++;
	call_send(call);
}

/* ---- public ---- */

struct vs_client *
vs_client_new(const struct vs_config *cfg)
{
	struct vs_client *c = xcalloc(1, sizeof(*c));
	struct timeval tv;
	const char *p;

	c->cfg = *cfg;
	c->name = xstrdup(cfg->name ? cfg->name : cfg->url);
	c->url = xstrdup(cfg->url);
	c->username = xstrdup(cfg->username ? cfg->username : "");
	c->password = xstrdup(cfg->password ? cfg->password : "");
	c->ca_file = cfg->tls.ca_file ? xstrdup(cfg->tls.ca_file) : NULL;
	c->cfg.name = c->name;
	c->cfg.url = c->url;
	c->cfg.username = c->username;
	c->cfg.password = c->password;
	c->cfg.tls.ca_file = c->ca_file;
	if (c->cfg.retry_window_s <= 0)
		c->cfg.retry_window_s = VS_DEFAULT_RETRY_WINDOW_S;
	if (c->cfg.keepalive_s <= 0)
		c->cfg.keepalive_s = VS_DEFAULT_KEEPALIVE_S;
	/* https://host:port/sdk → https://host:port */
	p = strstr(c->url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	c->base_url = p ? xstrndup(c->url, (size_t)(p - c->url)) : xstrdup(c->url);
	TAILQ_INIT(&c->calls);
	c->last_activity = now_mono();
	c->keepalive = event_new(loop_base(), -1, EV_PERSIST, keepalive_cb, c);
	tv.tv_sec = (long)(c->cfg.keepalive_s / 4) + 1;
	tv.tv_usec = 0;
	event_add(c->keepalive, &tv);
	return c;
}

void
vs_client_free(struct vs_client *c)
{
	if (c == NULL)
		return;
	while (!TAILQ_EMPTY(&c->calls))
		call_free(TAILQ_FIRST(&c->calls));
	event_free(c->keepalive);
	free(c->svc.root_folder);
	free(c->svc.property_collector);
	free(c->svc.view_manager);
	free(c->svc.session_manager);
	free(c->svc.file_manager);
	free(c->svc.virtual_disk_manager);
	free(c->svc.search_index);
	free(c->svc.api_version);
	free(c->cookie);
	free(c->name);
	free(c->url);
	free(c->base_url);
	free(c->username);
	/* The password leaves memory with the client. */
	explicit_bzero(c->password, strlen(c->password));
	free(c->password);
	free(c->ca_file);
	free(c);
}

struct vs_call *
vs_call(struct vs_client *c, struct soap_req *req, vs_done_fn done, void *arg)
{
	struct vs_call *call = call_new(c, KIND_USER, req, done, arg);

	call_send(call);
	return call;
}

void
vs_call_cancel(struct vs_call *call)
{
	if (call != NULL)
		call_free(call);
}

const struct vs_service *
vs_service(const struct vs_client *c)
{
	return &c->svc;
}

const char *
vs_cookie(const struct vs_client *c)
{
	return c->sess == SESS_READY ? c->cookie : NULL;
}

const struct vs_config *
vs_config(const struct vs_client *c)
{
	return &c->cfg;
}

const char *
vs_base_url(const struct vs_client *c)
{
	return c->base_url;
}

void
vs_get_stats(const struct vs_client *c, struct vs_stats *st)
{
	*st = c->stats;
}
