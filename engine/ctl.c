#define _GNU_SOURCE /* accept4 */
#include "engine/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

/* Requests handled per read callback before yielding to other clients. */
#define CTL_BATCH 32
/* A client that lets this much output pile up is not reading: requests
 * stop being read from it, and a watcher is dropped. */
#define CTL_OUT_HIGH (8u << 20)
#define CTL_OUT_LOW (1u << 20)
/* Unsent answers of all clients together: once over, a client gets its
 * next answer only when the last one has left (a watcher may fall
 * CTL_WATCH_SHARE behind), so a thousand clients that never read cannot
 * take 8 MiB each. */
#define CTL_OUT_BUDGET (64u << 20)
#define CTL_WATCH_SHARE (64u << 10)
/* Unprocessed input per client: one request line and a byte to see that
 * it is too long.  A client that pipelines more waits in its socket. */
#define CTL_IN_HIGH (REQUEST_MAX_LINE + 1)
#define CTL_ACCEPT_PAUSE_MS 500
/* Connections taken per wake-up of the listening socket. */
#define CTL_ACCEPT_BURST 16
/* Descriptors kept for the jobs (HTTP connections, disk files, the
 * store) however many status clients come: clients get what is left of
 * the process's limit, or a quarter of a small limit. */
#define CTL_FD_RESERVE 256

struct ctl_client {
	struct ctl_client *next, *prev;
	struct bufferevent *bev;       /* NULL for a sink's client */
	const struct ctl_sink *sink;
	void *sink_arg;
	uint64_t id;
	int watching;
	char *watch_rule;
	char *watch_kind;
	int closing;     /* close once the output is flushed */
	int throttled;   /* reading paused until the output drains */
	int awaiting;    /* a late answer is due: answers stay in request order */
	int closing_after_reply; /* EOF seen while awaiting: finish, then close */
};

static struct {
	struct event_base *base;
	struct event *listener;   /* the listening socket's; priority LOOP_PRIO_URGENT */
	int listen_fd;
	int listening;
	struct event *resume_ev;
	char *path;
	ctl_handler_fn handler;
	struct ctl_client *clients;
	int nclients;
	int max_clients;
	int full;          /* at max_clients: accepting paused */
	int fd_paused;     /* accept ran out of descriptors: paused for a moment */
	int fd_logged;     /* said so in the log (once per shortage) */
	uint64_t next_id;
	size_t out_total;      /* bytes in every client's output buffer */
} ctl;

static void ctl_read_cb(struct bufferevent *bev, void *arg);

/* Keeps ctl.out_total: called by libevent whenever an output buffer
 * grows or shrinks. */
static void
ctl_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	ctl.out_total += info->n_added;
	ctl.out_total -= info->n_deleted < ctl.out_total ? info->n_deleted : ctl.out_total;
}

/* Accept while there is room for a client and descriptors to take it. */
static void
ctl_listener_update(void)
{
	int full = ctl.nclients >= ctl.max_clients;

	if (ctl.listener == NULL)
		return;
	if (full && !ctl.full)
		log_warn("status socket: %d clients, the most allowed (%d descriptors are kept for the jobs); "
		         "new connections wait until one leaves", ctl.nclients, CTL_FD_RESERVE);
	else if (!full && ctl.full)
		log_info("status socket: accepting connections again (%d clients)", ctl.nclients);
	ctl.full = full;
	if ((full || ctl.fd_paused) && ctl.listening)
		event_del(ctl.listener);
	else if (!full && !ctl.fd_paused && !ctl.listening)
		event_add(ctl.listener, NULL);
	ctl.listening = !full && !ctl.fd_paused;
}

static void
ctl_unlink(struct ctl_client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl.clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->watch_rule);
	free(c->watch_kind);
}

static void
ctl_client_free(struct ctl_client *c)
{
	struct evbuffer *out;
	size_t left;

	if (c->bev == NULL) {
		ctl_unlink(c);
		free(c);
		return;
	}
	out = bufferevent_get_output(c->bev);
	left = evbuffer_get_length(out);
	evbuffer_remove_cb(out, ctl_out_cb, NULL);
	ctl.out_total -= left < ctl.out_total ? left : ctl.out_total;
	if (c->closing) {
		/* What the client still sends is dropped first (up to 256 KiB):
		 * a socket closed with unread input resets the connection, and
		 * the client would lose the answer it was sent (a request line
		 * too long is refused while the rest of it still comes). */
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		char drop[4096];
		int k;

		for (k = 0; fd >= 0 && k < 64 && read(fd, drop, sizeof(drop)) > 0; k++)
			;
	}
	ctl_unlink(c);
	bufferevent_free(c->bev);
	free(c);
	ctl.nclients--;
	ctl_listener_update();
}

static size_t
ctl_out_len(const struct ctl_client *c)
{
	if (c->bev == NULL)
		return c->sink->backlog(c->sink_arg);
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Returns 1 when the client is gone: a sink's that was answered. */
static int
ctl_send(struct ctl_client *c, const json_t *obj)
{
	char *s;

	if (c->closing)
		return 0;
	s = json_dumps(obj, JSON_COMPACT);
	if (s == NULL)
		return 0;
	if (c->bev == NULL) {
		c->sink->send(c->sink_arg, s, strlen(s), json_is_true(json_object_get(obj, "ok")), c->watching);
		free(s);
		if (c->watching)
			return 0;
		ctl_client_free(c);
		return 1;
	}
	bufferevent_write(c->bev, s, strlen(s));
	bufferevent_write(c->bev, "\n", 1);
	free(s);
	return 0;
}

static void
ctl_send_error(struct ctl_client *c, const char *msg, const char *id)
{
	char *safe = xstrdup(msg);
	json_t *o;

	str_make_utf8(safe);
	o = json_pack("{s:b,s:s}", "ok", 0, "error", safe);
	free(safe);

	if (id != NULL)
		json_object_set_new(o, "id", json_string(id));
	ctl_send(c, o);
	json_decref(o);
}

/* Close after the pending output has been written. */
static void
ctl_close_soon(struct ctl_client *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (ctl_out_len(c) == 0)
		ctl_client_free(c);
}

/* How much unsent output a client may hold before it is throttled (or,
 * a watcher, dropped). */
static size_t
ctl_out_limit(const struct ctl_client *c)
{
	if (ctl.out_total <= CTL_OUT_BUDGET)
		return CTL_OUT_HIGH;
	return c->watching ? CTL_WATCH_SHARE : 0;
}

static void
ctl_check_backlog(struct ctl_client *c)
{
	if (c->bev == NULL && !c->watching)
		return;
	if (ctl_out_len(c) <= ctl_out_limit(c))
		return;
	if (c->watching && c->bev == NULL) {
		log_warn("http: dropping an event stream that does not read");
		c->sink->drop(c->sink_arg);
		ctl_client_free(c);
		return;
	}
	if (c->watching) {
		log_warn("status socket: dropping watcher %llu that does not read",
		    (unsigned long long)c->id);
		/* Its buffer is full: closing soon would never finish. */
		evbuffer_drain(bufferevent_get_output(c->bev), ctl_out_len(c));
		ctl_client_free(c);
		return;
	}
	c->throttled = 1;
	bufferevent_disable(c->bev, EV_READ);
}

static void
ctl_handle_line(struct ctl_client *c, const char *line, size_t len)
{
	struct request req;
	char *err;
	json_t *resp;

	if (request_parse(line, len, &req, &err) != 0) {
		ctl_send_error(c, err, NULL);
		free(err);
		return;
	}
	c->awaiting = 1;
	resp = ctl.handler(c, &req);
	if (resp != NULL)
		c->awaiting = 0;
	else if (c->awaiting)
		bufferevent_disable(c->bev, EV_READ);
	if (resp != NULL) {
		if (req.id != NULL)
			json_object_set_new(resp, "id", json_string(req.id));
		ctl_send(c, resp);
		json_decref(resp);
	}
	request_free(&req);
}

/* Handle up to max complete request lines.  Returns 0 if the client is
 * still there and ready for more, 1 if it is there but closing or paused
 * (a late answer is due, or its output is backed up), -1 if it is gone. */
static int
ctl_drain(struct ctl_client *c, int max, int *handled)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint64_t id = c->id;
	int n;

	for (n = 0; n < max; n++) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		struct ctl_client *p;

		if (line == NULL)
			break;
		if (len > REQUEST_MAX_LINE) {
			free(line);
			ctl_send_error(c, "request line too long", NULL);
			ctl_close_soon(c);
			for (p = ctl.clients; p != NULL && p->id != id; p = p->next)
				;
			return p == NULL ? -1 : 1;
		}
		ctl_handle_line(c, line, len);
		free(line);
		if (c->closing || c->awaiting)
			return 1;
		/* A watcher that stopped reading is dropped here. */
		ctl_check_backlog(c);
		for (p = ctl.clients; p != NULL && p->id != id; p = p->next)
			;
		if (p == NULL)
			return -1;
		if (c->throttled)
			return 1;
	}
	*handled = n;
	return 0;
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int n = 0;

	/* No new answers for a client that holds more than it may. */
	if (!c->watching && ctl_out_len(c) > ctl_out_limit(c)) {
		c->throttled = 1;
		bufferevent_disable(c->bev, EV_READ);
		return;
	}
	if (ctl_drain(c, CTL_BATCH, &n) != 0)
		return;
	if (evbuffer_get_length(in) > REQUEST_MAX_LINE &&
	    evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF).pos < 0) {
		ctl_send_error(c, "request line too long", NULL);
		ctl_close_soon(c);
		return;
	}
	/* More complete lines wait: come back after other clients had a turn. */
	if (n == CTL_BATCH && evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF).pos >= 0)
		bufferevent_trigger(bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client *c = arg;

	if (c->closing && ctl_out_len(c) == 0) {
		ctl_client_free(c);
		return;
	}
	if (c->throttled && !c->awaiting && ctl_out_len(c) <= CTL_OUT_LOW) {
		c->throttled = 0;
		bufferevent_enable(c->bev, EV_READ);
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
	}
}

/* The client is done writing: answer everything it sent, then close.  A
 * late answer that is due keeps the connection until it has been sent. */
static void
ctl_finish_input(struct ctl_client *c)
{
	int n;

	c->closing_after_reply = 0;
	if (c->awaiting) {
		c->closing_after_reply = 1;
		return;
	}
	if (ctl_drain(c, INT32_MAX, &n) < 0)
		return;
	if (c->awaiting)
		c->closing_after_reply = 1;
	else if (!c->closing)
		ctl_close_soon(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client *c = arg;

	if (what & BEV_EVENT_ERROR) {
		ctl_client_free(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		ctl_finish_input(c);
}

static void
ctl_accept(int fd)
{
	struct ctl_client *c = xcalloc(1, sizeof(*c));

	if (ctl.fd_logged) {
		log_info("status socket: descriptors available again, accepting");
		ctl.fd_logged = 0;
	}
	c->bev = bufferevent_socket_new(ctl.base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	bufferevent_priority_set(c->bev, LOOP_PRIO_URGENT);
	c->id = ++ctl.next_id;
	c->next = ctl.clients;
	if (ctl.clients)
		ctl.clients->prev = c;
	ctl.clients = c;
	ctl.nclients++;
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, CTL_OUT_LOW, 0);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_IN_HIGH);
	evbuffer_add_cb(bufferevent_get_output(c->bev), ctl_out_cb, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	ctl_listener_update();
}

static void
ctl_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	ctl.fd_paused = 0;
	ctl_listener_update();
}

/* Out of file descriptors (EMFILE, ENFILE) or memory: stop accepting for
 * a moment instead of spinning on a listener that cannot accept; the
 * waiting connections stay in the backlog.  Said once per shortage. */
static void
ctl_accept_error(int err)
{
	struct timeval tv = { 0, CTL_ACCEPT_PAUSE_MS * 1000 };

	if (!ctl.fd_logged)
		log_warn("status socket: accept failed (%s); new connections wait, retried every %d ms",
		    evutil_socket_error_to_string(err), CTL_ACCEPT_PAUSE_MS);
	ctl.fd_logged = 1;
	ctl.fd_paused = 1;
	ctl_listener_update();
	evtimer_add(ctl.resume_ev, &tv);
}

/* The listening socket is readable: take what waits, a few at a time, so
 * that one burst of connections does not hold the loop. */
static void
ctl_listen_cb(evutil_socket_t lfd, short what, void *arg)
{
	int i, fd;

	for (i = 0; i < CTL_ACCEPT_BURST && ctl.listening; i++) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
			ctl_accept(fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			ctl_accept_error(errno);
		return;
	}
}

/* How many clients the descriptor limit allows, the jobs' reserve kept. */
static int
ctl_client_limit(void)
{
	struct rlimit rl;
	rlim_t n, lim;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return INT32_MAX;
	lim = rl.rlim_cur;
	n = lim > CTL_FD_RESERVE ? lim - CTL_FD_RESERVE : 0;
	if (n < lim / 4)
		n = lim / 4;
	if (n < 1)
		n = 1;
	return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
ctl_open(struct event_base *base, const char *path, ctl_handler_fn handler)
{
	struct sockaddr_un sun;
	int fd;
	mode_t old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_err("status socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return -1;
	/* A socket file nobody answers on is left over from a crash. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_err("status socket %s: another vmferryd is answering there", path);
		close(fd);
		return -1;
	}
	close(fd);
	unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return -1;
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		umask(old);
		log_err("status socket %s: bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	chmod(path, 0660);
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	if (listen(fd, 512) != 0 || (ctl.listener = event_new(base, fd, EV_READ | EV_PERSIST, ctl_listen_cb, NULL)) == NULL) {
		log_err("status socket %s: listen: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	event_priority_set(ctl.listener, LOOP_PRIO_URGENT);
	ctl.listen_fd = fd;
	ctl.base = base;
	ctl.handler = handler;
	ctl.path = xstrdup(path);
	ctl.resume_ev = evtimer_new(base, ctl_resume_cb, NULL);
	ctl.max_clients = ctl_client_limit();
	ctl_listener_update();
	return 0;
}

void
ctl_close(void)
{
	if (ctl.listener != NULL) {
		event_free(ctl.listener);
		close(ctl.listen_fd);
	}
	ctl.listener = NULL;
	while (ctl.clients != NULL)
		ctl_client_free(ctl.clients);
	if (ctl.resume_ev != NULL)
		event_free(ctl.resume_ev);
	if (ctl.path != NULL)
		unlink(ctl.path);
	free(ctl.path);
	memset(&ctl, 0, sizeof(ctl));
}

uint64_t
ctl_client_id(const struct ctl_client *c)
{
	return c->id;
}

json_t *
ctl_error(const char *fmt, ...)
{
	va_list ap;
	char *msg;
	json_t *o;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	str_make_utf8(msg);
	o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
	free(msg);
	return o;
}

void
ctl_reply(uint64_t client_id, json_t *resp)
{
	struct ctl_client *c;

	for (c = ctl.clients; c != NULL; c = c->next)
		if (c->id == client_id) {
			if (c->bev == NULL) {
				c->awaiting = 0;
				if (ctl_send(c, resp) == 0)
					ctl_check_backlog(c);
				break;
			}
			ctl_send(c, resp);
			if (c->awaiting && c->closing_after_reply) {
				c->awaiting = 0;
				json_decref(resp);
				ctl_finish_input(c);
				return;
			}
			if (c->awaiting) {
				c->awaiting = 0;
				if (!c->throttled && !c->closing) {
					bufferevent_enable(c->bev, EV_READ);
					bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
				}
			}
			ctl_check_backlog(c);
			break;
		}
	json_decref(resp);
}

void
ctl_client_watch(struct ctl_client *c, const char *rule, const char *kind)
{
	c->watching = 1;
	free(c->watch_rule);
	free(c->watch_kind);
	c->watch_rule = rule ? xstrdup(rule) : NULL;
	c->watch_kind = kind ? xstrdup(kind) : NULL;
}

void
ctl_broadcast(const json_t *event, const char *rule, const char *kind)
{
	struct ctl_client *c, *next;
	char *s = NULL;
	size_t len = 0;

	for (c = ctl.clients; c != NULL; c = next) {
		next = c->next;
		if (!c->watching || c->closing)
			continue;
		if (c->watch_rule != NULL && (rule == NULL || strcmp(c->watch_rule, rule) != 0))
			continue;
		if (c->watch_kind != NULL && (kind == NULL || strcmp(c->watch_kind, kind) != 0))
			continue;
		if (s == NULL) {
			if ((s = json_dumps(event, JSON_COMPACT)) == NULL)
				return;
			len = strlen(s);
			s[len++] = '\n'; /* replaces the NUL; written with its length */
		}
		if (c->bev == NULL)
			c->sink->send(c->sink_arg, s, len - 1, 1, 1);
		else
			bufferevent_write(c->bev, s, len);
		ctl_check_backlog(c);
	}
	free(s);
}

int
ctl_sink_request(const struct ctl_sink *sink, void *arg, const char *line, size_t len, uint64_t *id,
    char **err)
{
	struct ctl_client *c;
	struct request req;
	json_t *resp;
	uint64_t cid;

	*id = 0;
	if (request_parse(line, len, &req, err) != 0)
		return -1;
	c = xcalloc(1, sizeof(*c));
	c->sink = sink;
	c->sink_arg = arg;
	cid = c->id = ++ctl.next_id;
	c->next = ctl.clients;
	if (ctl.clients)
		ctl.clients->prev = c;
	ctl.clients = c;
	c->awaiting = 1;
	resp = ctl.handler(c, &req);
	if (resp != NULL) {
		c->awaiting = 0;
		if (req.id != NULL)
			json_object_set_new(resp, "id", json_string(req.id));
		if (ctl_send(c, resp) == 0)
			*id = cid;
		json_decref(resp);
	} else {
		*id = cid;
	}
	request_free(&req);
	return 0;
}

void
ctl_sink_close(uint64_t id)
{
	struct ctl_client *c;

	for (c = ctl.clients; c != NULL; c = c->next)
		if (c->id == id && c->bev == NULL) {
			ctl_client_free(c);
			return;
		}
}

int
ctl_client_count(void)
{
	return ctl.nclients;
}

int
ctl_client_max(void)
{
	return ctl.max_clients;
}
