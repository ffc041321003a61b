#include "engine/http_api.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/crypto.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/prom.h"
#include "engine/core/util.h"
#include "engine/ctl.h"
#include "engine/http_req.h"
#include "engine/metrics.h"

/* Request line and headers together, and a body (a request is one JSON
 * object, like a socket request line). */
#define HTTP_MAX_HEADERS (16 * 1024)
#define HTTP_MAX_BODY REQUEST_MAX_LINE
/* A connection quiet this long is closed (headers that never finish,
 * an idle keep-alive); an event stream only when it stops taking data. */
#define HTTP_TIMEOUT_S 60
/* An event stream gets a comment this often, so that a peer that went
 * away is noticed and proxies keep it open. */
#define HTTP_KEEPALIVE_S 15
/* Unsent answers of every connection together: beyond it, requests get
 * 503 until clients have taken theirs (each answer is bounded already:
 * one request, one answer). */
#define HTTP_OUT_BUDGET (64u << 20)
/* Dashboard files are small; anything larger is not served. */
#define HTTP_MAX_FILE (8u << 20)
/* Accepting ran out of descriptors: wait this long before trying again
 * (the waiting connections stay in the backlog) instead of spinning. */
#define HTTP_ACCEPT_PAUSE_MS 500
#define HTTP_BACKLOG 512
#define CHART_JS "/usr/share/javascript/chart.js/chart.min.js"
#define SECURITY_CSP "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " \
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

/* A request from its arrival until its answer has been written or its
 * connection is gone: an answer that is due later (inventory, verify),
 * an event stream, or an answer on its way out. */
struct http_call {
	struct http_call *next, *prev;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	uint64_t ctl_id;      /* its sink client while one is due or it streams */
	size_t out;           /* bytes of its answer counted in ha.out_total */
	int streaming;
	int answered;         /* the answer was handed to evhttp */
};

static struct {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	char *listen;         /* what is bound, as configured */
	int have_token;
	uint8_t token_digest[CRYPTO_HASH_LEN];
	char *dashboard;
	struct http_call *calls;
	int ncalls;
	size_t out_total;
	struct event *keepalive_ev;
	struct event *resume_ev;
	int accept_logged;    /* an accept failure was logged (once per shortage) */
	time_t refused_at;    /* refusals logged this second, at most a few */
	int refused_n;
} ha;

static void call_finish(struct http_call *call);

/* ---- calls ---- */

static void
call_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct http_call *call = arg;

	/* The peer went away: evhttp detached an unfinished request from the
	 * connection (it is ours to free) or frees a finished one itself. */
	if (call->ctl_id != 0)
		ctl_sink_close(call->ctl_id);
	call->ctl_id = 0;
	if (evhttp_request_get_connection(call->req) == NULL)
		evhttp_request_free(call->req);
	call->evcon = NULL;
	call_finish(call);
}

static void
call_complete_cb(struct evhttp_request *req, void *arg)
{
	struct http_call *call = arg;

	call_finish(call);
}

static struct http_call *
call_new(struct evhttp_request *req)
{
	struct http_call *call = xcalloc(1, sizeof(*call));

	call->req = req;
	call->evcon = evhttp_request_get_connection(req);
	call->next = ha.calls;
	if (ha.calls != NULL)
		ha.calls->prev = call;
	ha.calls = call;
	ha.ncalls++;
	evhttp_connection_set_closecb(call->evcon, call_close_cb, call);
	evhttp_request_set_on_complete_cb(req, call_complete_cb, call);
	return call;
}

static void
call_finish(struct http_call *call)
{
	if (call->evcon != NULL)
		evhttp_connection_set_closecb(call->evcon, NULL, NULL);
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		ha.calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	ha.out_total -= call->out < ha.out_total ? call->out : ha.out_total;
	ha.ncalls--;
	free(call);
}

/* ---- answers ---- */

static void
add_common_headers(struct evhttp_request *req, const char *type)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "Content-Security-Policy", SECURITY_CSP);
}

/* Hands an answer to evhttp; the call is finished once it is written. */
static void
call_reply(struct http_call *call, int status, const char *type, struct evbuffer *body)
{
	struct evhttp_request *req = call->req;

	add_common_headers(req, type);
	if (strncmp(type, "text/html", 9) != 0 && strncmp(type, "text/javascript", 15) != 0 &&
	    strncmp(type, "text/css", 8) != 0)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	call->out = evbuffer_get_length(body);
	ha.out_total += call->out;
	call->answered = 1;
	evhttp_send_reply(req, status, NULL, body);
}

static void
call_reply_json(struct http_call *call, int status, const char *json, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add(b, json, len);
	evbuffer_add(b, "\n", 1);
	call_reply(call, status, "application/json", b);
	evbuffer_free(b);
}

static void
call_error(struct http_call *call, int status, const char *msg)
{
	json_t *o = ctl_error("%s", msg);
	char *s = json_dumps(o, JSON_COMPACT);

	if (status == 401)
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "WWW-Authenticate",
		    "Bearer realm=\"vmferry\"");
	call_reply_json(call, status, s, strlen(s));
	free(s);
	json_decref(o);
}

/* ---- the sink: the socket's handler answers through it ---- */

static void
sink_send(void *arg, const char *json, size_t len, int ok, int more)
{
	struct http_call *call = arg;
	struct evbuffer *b;

	if (!more) {
		call->ctl_id = 0;
		call_reply_json(call, ok ? 200 : 409, json, len);
		return;
	}
	if (!call->streaming) {
		struct evkeyvalq *h = evhttp_request_get_output_headers(call->req);
		struct bufferevent *bev = evhttp_connection_get_bufferevent(call->evcon);
		struct timeval wt = { HTTP_TIMEOUT_S, 0 };

		add_common_headers(call->req, "text/event-stream; charset=utf-8");
		evhttp_add_header(h, "Cache-Control", "no-store");
		call->streaming = 1;
		evhttp_send_reply_start(call->req, 200, "OK");
		/* The peer sends nothing more: only a write that stalls ends it. */
		bufferevent_set_timeouts(bev, NULL, &wt);
	}
	b = evbuffer_new();
	evbuffer_add(b, "data: ", 6);
	evbuffer_add(b, json, len);
	evbuffer_add(b, "\n\n", 2);
	evhttp_send_reply_chunk(call->req, b);
	evbuffer_free(b);
}

static size_t
sink_backlog(void *arg)
{
	struct http_call *call = arg;
	struct bufferevent *bev;

	if (call->evcon == NULL || (bev = evhttp_connection_get_bufferevent(call->evcon)) == NULL)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(bev));
}

static void
sink_drop(void *arg)
{
	struct http_call *call = arg;
	struct evhttp_connection *evcon = call->evcon;

	/* ctl frees its client after this; the connection goes at once (its
	 * output would never drain), which frees the request. */
	call->ctl_id = 0;
	call_finish(call);
	if (evcon != NULL)
		evhttp_connection_free(evcon);
}

static const struct ctl_sink http_sink = { sink_send, sink_backlog, sink_drop };

static void
keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_call *call, *next;

	for (call = ha.calls; call != NULL; call = next) {
		next = call->next;
		if (call->streaming && call->evcon != NULL) {
			struct evbuffer *b = evbuffer_new();

			evbuffer_add(b, ": keepalive\n\n", 13);
			evhttp_send_reply_chunk(call->req, b);
			evbuffer_free(b);
		}
	}
}

/* ---- who may do what ---- */

static const char *
peer_of(struct evhttp_connection *evcon, char *buf, size_t len)
{
	const char *addr = NULL;
	ev_uint16_t port = 0;

	evhttp_connection_get_peer(evcon, (char **)&addr, &port);
	snprintf(buf, len, "%s:%u", addr ? addr : "?", (unsigned)port);
	return buf;
}

static void
log_refusal(struct http_call *call, const char *what, const char *why)
{
	char peer[128];
	time_t now = time(NULL);

	/* A flood of wrong tokens must not flood the log. */
	if (now != ha.refused_at) {
		if (ha.refused_n > 5)
			log_warn("http: %d more requests refused in that second", ha.refused_n - 5);
		ha.refused_at = now;
		ha.refused_n = 0;
	}
	if (++ha.refused_n <= 5)
		log_warn("http: %s from %s refused: %s", what, peer_of(call->evcon, peer, sizeof(peer)), why);
}

/* Returns 0 when the request may go on, else the refusal's status (and
 * the answer is sent).  With a token configured, everything but the
 * dashboard's files needs it; without one (loopback only), reads are
 * open to this machine and nothing can be changed over HTTP. */
static int
authorize(struct http_call *call, const struct http_target *t, const char *what)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(call->req);
	const char *auth = evhttp_find_header(in, "Authorization"), *tok;
	uint8_t digest[CRYPTO_HASH_LEN];
	size_t len;

	if (!ha.have_token) {
		if (!http_host_is_loopback(evhttp_find_header(in, "Host"))) {
			/* a page elsewhere whose name was made to point here */
			log_refusal(call, what, "Host is not a loopback name");
			call_error(call, 403, "without a token_file only requests to a loopback name (localhost, "
			    "127.0.0.1, [::1]) are answered");
			return 403;
		}
		if (t->changes) {
			log_refusal(call, what, "no token_file is configured");
			call_error(call, 403, "changes over HTTP need a token_file (kind: system, http:); "
			    "use the status socket");
			return 403;
		}
		return 0;
	}
	if (auth == NULL) {
		log_refusal(call, what, "no token");
		call_error(call, 401, "this needs the token: Authorization: Bearer TOKEN");
		return 401;
	}
	if (http_bearer(auth, &tok, &len) != 0) {
		log_refusal(call, what, "an Authorization header that is no bearer token");
		call_error(call, 403, "the Authorization header must be: Bearer TOKEN");
		return 403;
	}
	crypto_sha256(tok, len, digest);
	if (!crypto_equal(digest, ha.token_digest, sizeof(digest))) {
		log_refusal(call, what, "wrong token");
		call_error(call, 403, "wrong token");
		return 403;
	}
	return 0;
}

/* ---- routes ---- */

static const char *
content_type(const char *file)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".mjs", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".json", "application/json" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".txt", "text/plain; charset=utf-8" },
		{ ".woff2", "font/woff2" },
	};
	const char *dot = strrchr(file, '.');
	size_t i;

	for (i = 0; dot != NULL && i < ARRAY_LEN(types); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

static void
serve_static(struct http_call *call, const struct http_target *t)
{
	char *path = strcmp(t->file, "chart.js") == 0 ? xstrdup(CHART_JS) : xasprintf("%s/%s", ha.dashboard, t->file);
	struct evbuffer *b;
	struct stat st;
	int fd;

	if (evhttp_request_get_command(call->req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(call->req) != EVHTTP_REQ_HEAD) {
		free(path);
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", "GET, HEAD");
		call_error(call, 405, "the dashboard's files are read with GET");
		return;
	}
	/* The name was checked (http_req.c): no "..", no hidden files; the
	 * last component is not followed if it is a link. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	free(path);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > HTTP_MAX_FILE) {
		if (fd >= 0)
			close(fd);
		call_error(call, 404, "no such file");
		return;
	}
	b = evbuffer_new();
	if (st.st_size == 0)
		close(fd);
	else if (evbuffer_add_file(b, fd, 0, st.st_size) != 0) {
		evbuffer_free(b);
		call_error(call, 500, "the file cannot be read");
		return;
	}
	call_reply(call, 200, content_type(t->file), b);
	evbuffer_free(b);
}

static void
serve_metrics(struct http_call *call, const struct http_target *t)
{
	struct evbuffer *b;

	if (evhttp_request_get_command(call->req) != EVHTTP_REQ_GET) {
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", "GET");
		call_error(call, 405, "/metrics is read with GET");
		return;
	}
	if (authorize(call, t, "/metrics") != 0)
		return;
	b = evbuffer_new();
	metrics_write(b);
	call_reply(call, 200, PROM_CONTENT_TYPE, b);
	evbuffer_free(b);
}

static void
serve_api(struct http_call *call, const struct http_target *t)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(call->req);
	struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
	size_t blen = evbuffer_get_length(in);
	char what[64], *line, *err = NULL;
	uint64_t id;

	snprintf(what, sizeof(what), "%s %s", t->changes ? "POST" : "GET", request_op_name(t->op));
	if (cmd != (t->changes ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", t->changes ? "POST" : "GET");
		call_error(call, 405, t->changes ? "this op changes something: send it with POST and a JSON body" :
		    "this op only reads: send it with GET and its fields in the query");
		return;
	}
	if (authorize(call, t, what) != 0)
		return;
	line = http_request_line(t, (const char *)evbuffer_pullup(in, -1), blen, &err);
	if (line == NULL) {
		call_error(call, 400, err);
		free(err);
		return;
	}
	if (ctl_sink_request(&http_sink, call, line, strlen(line), &id, &err) != 0) {
		call_error(call, 400, err);
		free(err);
	} else if (!call->answered) {
		call->ctl_id = id;
	}
	free(line);
}

static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct http_call *call;
	struct http_target t;
	const char *why;
	int status;

	if (evhttp_request_get_connection(req) == NULL)
		return;
	if (ha.accept_logged) {
		log_info("http: descriptors available again, accepting");
		ha.accept_logged = 0;
	}
	call = call_new(req);
	if (ha.out_total > HTTP_OUT_BUDGET) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		call_error(call, 503, "too many answers are waiting for their clients; try again");
		return;
	}
	status = http_target_parse(evhttp_request_get_uri(req), &t, &why);
	if (status != 200) {
		call_error(call, status, why);
		return;
	}
	switch (t.route) {
	case HTTP_ROUTE_STATIC:
		serve_static(call, &t);
		break;
	case HTTP_ROUTE_METRICS:
		serve_metrics(call, &t);
		break;
	case HTTP_ROUTE_API:
		serve_api(call, &t);
		break;
	}
	http_target_free(&t);
}

/* ---- the listener ---- */

/* The dashboard's files: the source's when this vmferryd runs from its
 * build tree, else the installed ones. */
static char *
dashboard_dir(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t bl = strlen(VMFERRY_BUILD_DIR);

	if (n > 0) {
		exe[n] = '\0';
		if ((size_t)n > bl && strncmp(exe, VMFERRY_BUILD_DIR, bl) == 0 && exe[bl] == '/')
			return xstrdup(VMFERRY_SOURCE_DASHBOARD);
	}
	return xstrdup(VMFERRY_DASHBOARD_DIR);
}

static void
http_api_set_token(const struct cfg_http *h)
{
	ha.have_token = h->token != NULL;
	if (ha.have_token)
		crypto_sha256(h->token, strlen(h->token), ha.token_digest);
	else
		memset(ha.token_digest, 0, sizeof(ha.token_digest));
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	if (ha.bound != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(ha.bound));
}

/* Out of descriptors (EMFILE, ENFILE) or memory: stop accepting for a
 * moment; evhttp's own listener would retry at once, forever. */
static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval tv = { 0, HTTP_ACCEPT_PAUSE_MS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	if (!ha.accept_logged)
		log_warn("http: accept failed (%s); new connections wait, retried every %d ms",
		    evutil_socket_error_to_string(err), HTTP_ACCEPT_PAUSE_MS);
	ha.accept_logged = 1;
	evconnlistener_disable(l);
	evtimer_add(ha.resume_ev, &tv);
}

static struct evhttp_bound_socket *
http_bind(const struct cfg_http *h)
{
	struct sockaddr_storage ss;
	int sslen = (int)sizeof(ss);
	char *spec = strchr(h->host, ':') != NULL ? xasprintf("[%s]:%d", h->host, h->port) :
	                                           xasprintf("%s:%d", h->host, h->port);
	struct evconnlistener *l;
	struct evhttp_bound_socket *b;

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) != 0) {
		free(spec);
		errno = EINVAL;
		return NULL;
	}
	free(spec);
	l = evconnlistener_new_bind(ha.base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    HTTP_BACKLOG, (struct sockaddr *)&ss, sslen);
	if (l == NULL)
		return NULL;
	evconnlistener_set_error_cb(l, accept_error_cb);
	if ((b = evhttp_bind_listener(ha.http, l)) == NULL)
		evconnlistener_free(l);
	return b;
}

static int
http_api_start(struct event_base *base)
{
	struct timeval ka = { HTTP_KEEPALIVE_S, 0 };

	ha.base = base;
	ha.http = evhttp_new(base);
	if (ha.http == NULL)
		return -1;
	evhttp_set_max_headers_size(ha.http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(ha.http, HTTP_MAX_BODY);
	evhttp_set_timeout(ha.http, HTTP_TIMEOUT_S);
	evhttp_set_allowed_methods(ha.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(ha.http, http_request_cb, NULL);
	ha.dashboard = dashboard_dir();
	ha.keepalive_ev = event_new(base, -1, EV_PERSIST, keepalive_cb, NULL);
	ha.resume_ev = evtimer_new(base, accept_resume_cb, NULL);
	event_add(ha.keepalive_ev, &ka);
	return 0;
}

int
http_api_apply(struct event_base *base, const struct cfg_http *h)
{
	struct evhttp_bound_socket *b;

	if (!h->enabled) {
		if (ha.http != NULL)
			log_info("http: no longer listening on %s", ha.listen);
		http_api_close();
		return 0;
	}
	if (ha.http == NULL && http_api_start(base) != 0)
		return -1;
	http_api_set_token(h);
	if (ha.bound != NULL && strcmp(ha.listen, h->listen) == 0)
		return 0;
	b = http_bind(h);
	if (b == NULL) {
		log_err("http: cannot listen on %s: %s", h->listen, strerror(errno));
		if (ha.bound == NULL)
			http_api_close();
		return -1;
	}
	if (ha.bound != NULL) {
		log_info("http: moving from %s to %s", ha.listen, h->listen);
		evhttp_del_accept_socket(ha.http, ha.bound);
	}
	ha.bound = b;
	free(ha.listen);
	ha.listen = xstrdup(h->listen);
	log_info("http: listening on %s (%s; dashboard from %s)", h->listen,
	    ha.have_token ? "token required" : "read-only, loopback", ha.dashboard);
	return 0;
}

void
http_api_close(void)
{
	if (ha.http == NULL)
		return;
	/* Pending calls go with their connections (call_close_cb). */
	evhttp_free(ha.http);
	while (ha.calls != NULL) {
		if (ha.calls->ctl_id != 0)
			ctl_sink_close(ha.calls->ctl_id);
		ha.calls->evcon = NULL;
		call_finish(ha.calls);
	}
	if (ha.keepalive_ev != NULL)
		event_free(ha.keepalive_ev);
	if (ha.resume_ev != NULL)
		event_free(ha.resume_ev);
	free(ha.listen);
	free(ha.dashboard);
	memset(&ha, 0, sizeof(ha));
}

int
http_api_clients(void)
{
	return ha.ncalls;
}
