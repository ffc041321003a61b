/* curl multi on libevent (see http.h).  The shape follows curl's
 * multi-event.c / hiperfifo.c: a socket callback that keeps one libevent
 * event per curl socket, a timer callback where 0 ms means "on the next
 * loop turn", and a check for finished transfers after every action.
 * Finished transfers go onto a queue that a separate event drains, so no
 * user callback ever runs inside curl. */
#include "engine/core/http.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "engine/core/log.h"
#include "engine/core/units.h"
#include "engine/core/util.h"

#define HTTP_DEFAULT_MAX_BODY (64u << 20)
#define HTTP_MAX_HEADERS (64u << 10)
/* A transfer slower than this for the stall timeout is given up: a server
 * that drips a byte a second never finishes a reply worth waiting for. */
#define HTTP_MIN_SPEED_BPS 1024L
#define HTTP_DEFAULT_STALL_S 60L

struct http_req {
	CURL *easy;
	struct curl_slist *headers;
	char *method;
	char *url;
	uint8_t *body;
	size_t body_len;
	int upload_fd;
	http_body_fn body_fn;      /* or a body made as it goes */
	void *body_arg;
	uint64_t upload_len;
	uint64_t upload_off;
	http_sink_fn sink;
	void *sink_arg;
	struct sbuf resp;
	struct sbuf resp_headers;
	size_t max_body;
	struct http_tls tls;
	char *ca_file;
	int tls_set;
	http_done_fn done;
	void *done_arg;
	CURLcode result;
	long status;
	char errbuf[CURL_ERROR_SIZE];
	char *errmsg;
	int seen_cert;
	uint8_t cert_sha256[32];
	int cert_refused;
	int sink_aborted;
	int body_too_large;
	uint64_t received;
	int started;
	struct http_req *next_done;
};

struct http_sock {
	struct event *ev;
	curl_socket_t fd;
};

/* Connections are reused only under the TLS policy that verified them:
 * curl checks a certificate when it connects, and our verify callback
 * (pin, insecure) is invisible to its reuse test, so a connection opened
 * by an insecure or differently pinned platform of the same host and port
 * would otherwise carry the next request unchecked.  Each policy has its
 * own connection cache (a curl share). */
struct http_pool {
	struct http_pool *next;
	int insecure;
	int has_pin;
	uint8_t pin[32];
	char *ca_file;
	CURLSH *share;
};

static struct {
	struct event_base *base;
	CURLM *multi;
	struct http_pool *pools;
	struct event *timer;
	struct event *drain;
	struct http_req *done_head, **done_tail;
	int running;
	int in_flight;
	uint64_t total_bytes;
	int ssl_index;
} h;

/* ---- TLS ---- */

/* Called by OpenSSL in place of its own chain check, so that we always
 * learn the presented certificate's fingerprint (to show it in errors)
 * and can pin it. */
static int
http_verify_cert(X509_STORE_CTX *ctx, void *arg)
{
	struct http_req *r = arg;
	X509 *cert = X509_STORE_CTX_get0_cert(ctx);
	unsigned int len = 0;
	int ok;

	if (cert != NULL && X509_digest(cert, EVP_sha256(), r->cert_sha256, &len) == 1 && len == 32)
		r->seen_cert = 1;
	if (r->tls.insecure)
		return 1;
	if (r->tls.has_pin) {
		ok = r->seen_cert && memcmp(r->cert_sha256, r->tls.pin, 32) == 0;
		if (!ok) {
			X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
			r->cert_refused = 1;
		}
		return ok;
	}
	ok = X509_verify_cert(ctx);
	if (ok != 1)
		r->cert_refused = 1;
	return ok == 1;
}

static CURLcode
http_ssl_ctx(CURL *easy, void *sslctx, void *arg)
{
	SSL_CTX_set_cert_verify_callback((SSL_CTX *)sslctx, http_verify_cert, arg);
	return CURLE_OK;
}

/* ---- curl callbacks: they only record, never call out ---- */

static size_t
http_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;

	r->received += n;
	h.total_bytes += n;
	if (r->status == 0)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->sink != NULL && r->status >= 200 && r->status < 300) {
		if (r->sink(p, n, r->sink_arg) != 0) {
			r->sink_aborted = 1;
			return 0;
		}
		return n;
	}
	if (r->resp.len + n > r->max_body) {
		r->body_too_large = 1;
		return 0;
	}
	sbuf_add(&r->resp, p, n);
	return n;
}

static size_t
http_header_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;

	/* A new status line (redirect, 100-continue) starts a new header set. */
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		r->resp_headers.len = 0;
		r->resp_headers.data[0] = '\0';
	}
	if (r->resp_headers.len + n > HTTP_MAX_HEADERS)
		return 0;
	sbuf_add(&r->resp_headers, p, n);
	return n;
}

static size_t
http_read_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t want = size * nmemb;
	ssize_t got;

	if (r->upload_off >= r->upload_len)
		return 0;
	if (want > r->upload_len - r->upload_off)
		want = (size_t)(r->upload_len - r->upload_off);
	if (r->body_fn != NULL)
		got = r->body_fn(r->body_arg, p, want);
	else
		got = pread(r->upload_fd, p, want, (off_t)r->upload_off);
	if (got < 0)
		return CURL_READFUNC_ABORT;
	if (got == 0)
		return CURL_READFUNC_ABORT; /* the file is shorter than announced */
	r->upload_off += (uint64_t)got;
	return (size_t)got;
}

/* ---- multi glue ---- */

static void
http_queue_done(struct http_req *r)
{
	r->next_done = NULL;
	*h.done_tail = r;
	h.done_tail = &r->next_done;
	event_active(h.drain, EV_TIMEOUT, 1);
}

static void
http_check_multi_info(void)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h.multi, &left)) != NULL) {
		struct http_req *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		r->result = msg->data.result;
		/* curl's own host name check runs after our verify callback
		 * accepted the chain: a certificate for another name is refused
		 * too, not a network failure to retry. */
		if (r->result == CURLE_PEER_FAILED_VERIFICATION && r->seen_cert)
			r->cert_refused = 1;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
		curl_multi_remove_handle(h.multi, r->easy);
		r->started = 0;
		h.in_flight--;
		http_queue_done(r);
	}
}

static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(h.multi, fd, action, &h.running);
	http_check_multi_info();
}

static void
http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	curl_multi_socket_action(h.multi, CURL_SOCKET_TIMEOUT, 0, &h.running);
	http_check_multi_info();
}

static int
http_timer_fn(CURLM *multi, long timeout_ms, void *arg)
{
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(h.timer);
		return 0;
	}
	/* 0 ms: fire on the next loop turn, never from in here. */
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(h.timer, &tv);
	return 0;
}

static int
http_socket_fn(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct http_sock *hs = sockp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL) {
			event_free(hs->ev);
			free(hs);
			curl_multi_assign(h.multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (hs == NULL) {
		hs = xcalloc(1, sizeof(*hs));
		hs->fd = s;
		hs->ev = event_new(h.base, s, kind, http_event_cb, NULL);
		curl_multi_assign(h.multi, s, hs);
	} else {
		event_del(hs->ev);
		event_assign(hs->ev, h.base, s, kind, http_event_cb, NULL);
	}
	event_add(hs->ev, NULL);
	return 0;
}

static void
http_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_req *r;

	while ((r = h.done_head) != NULL) {
		h.done_head = r->next_done;
		if (h.done_head == NULL)
			h.done_tail = &h.done_head;
		r->next_done = NULL;
		r->done(r, r->done_arg);
	}
}

int
http_init(struct event_base *base)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return -1;
	h.base = base;
	h.multi = curl_multi_init();
	h.timer = evtimer_new(base, http_timer_cb, NULL);
	h.drain = event_new(base, -1, 0, http_drain_cb, NULL);
	h.done_tail = &h.done_head;
	curl_multi_setopt(h.multi, CURLMOPT_SOCKETFUNCTION, http_socket_fn);
	curl_multi_setopt(h.multi, CURLMOPT_TIMERFUNCTION, http_timer_fn);
	/* Several disks read in parallel from one host share connections. */
	curl_multi_setopt(h.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
	return 0;
}

/* The connection cache of a request's TLS policy (made on first use). */
static CURLSH *
http_pool_for(const struct http_tls *tls)
{
	struct http_pool *p;

	for (p = h.pools; p != NULL; p = p->next)
		if (p->insecure == tls->insecure && p->has_pin == tls->has_pin &&
		    (!p->has_pin || memcmp(p->pin, tls->pin, 32) == 0) && str_eq(p->ca_file, tls->ca_file))
			return p->share;
	p = xcalloc(1, sizeof(*p));
	p->insecure = tls->insecure;
	p->has_pin = tls->has_pin;
	memcpy(p->pin, tls->pin, 32);
	p->ca_file = tls->ca_file ? xstrdup(tls->ca_file) : NULL;
	p->share = curl_share_init();
	if (p->share == NULL)
		fatal("curl_share_init failed");
	curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	p->next = h.pools;
	h.pools = p;
	return p->share;
}

void
http_shutdown(void)
{
	struct http_pool *p;

	if (h.multi == NULL)
		return;
	/* curl_multi_cleanup before the events it uses go away. */
	curl_multi_cleanup(h.multi);
	while ((p = h.pools) != NULL) {
		h.pools = p->next;
		curl_share_cleanup(p->share);
		free(p->ca_file);
		free(p);
	}
	event_free(h.timer);
	event_free(h.drain);
	curl_global_cleanup();
	memset(&h, 0, sizeof(h));
}

/* ---- requests ---- */

struct http_req *
http_new(const char *method, const char *url)
{
	struct http_req *r = xcalloc(1, sizeof(*r));

	r->method = xstrdup(method);
	r->url = xstrdup(url);
	r->upload_fd = -1;
	r->max_body = HTTP_DEFAULT_MAX_BODY;
	sbuf_init(&r->resp);
	sbuf_init(&r->resp_headers);
	r->easy = curl_easy_init();
	if (r->easy == NULL)
		fatal("curl_easy_init failed");
	curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_LIMIT, HTTP_MIN_SPEED_BPS);
	curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, HTTP_DEFAULT_STALL_S);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0)
		curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, r->method);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
	return r;
}

void
http_add_header(struct http_req *r, const char *header)
{
	r->headers = curl_slist_append(r->headers, header);
}

void
http_set_body(struct http_req *r, const void *p, size_t n)
{
	free(r->body);
	r->body = xmalloc(n);
	memcpy(r->body, p, n);
	r->body_len = n;
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
}

void
http_set_upload_fd(struct http_req *r, int fd, uint64_t len)
{
	r->upload_fd = fd;
	r->upload_len = len;
	r->upload_off = 0;
	curl_easy_setopt(r->easy, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(r->easy, CURLOPT_READFUNCTION, http_read_cb);
	curl_easy_setopt(r->easy, CURLOPT_READDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
}

void
http_set_upload_source(struct http_req *r, http_body_fn read, void *arg, uint64_t len)
{
	http_set_upload_fd(r, -1, len);
	r->body_fn = read;
	r->body_arg = arg;
}

void
http_set_range(struct http_req *r, uint64_t first, uint64_t last)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%llu-%llu", (unsigned long long)first, (unsigned long long)last);
	curl_easy_setopt(r->easy, CURLOPT_RANGE, buf);
}

void
http_set_ranges(struct http_req *r, const char *spec)
{
	curl_easy_setopt(r->easy, CURLOPT_RANGE, spec);
}

void
http_set_sink(struct http_req *r, http_sink_fn sink, void *arg)
{
	r->sink = sink;
	r->sink_arg = arg;
}

void
http_set_tls(struct http_req *r, const struct http_tls *tls)
{
	r->tls = *tls;
	free(r->ca_file);
	r->ca_file = tls->ca_file ? xstrdup(tls->ca_file) : NULL;
	r->tls.ca_file = r->ca_file;
	r->tls_set = 1;
}

void
http_set_cookie(struct http_req *r, const char *cookie)
{
	curl_easy_setopt(r->easy, CURLOPT_COOKIE, cookie);
}

void
http_set_max_body(struct http_req *r, size_t n)
{
	r->max_body = n;
}

void
http_set_stall_timeout(struct http_req *r, long seconds)
{
	curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, seconds);
}

void
http_set_timeout(struct http_req *r, long ms)
{
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, ms);
}

int
http_start(struct http_req *r, http_done_fn done, void *arg)
{
	r->done = done;
	r->done_arg = arg;
	r->errbuf[0] = '\0';
	r->resp.len = 0;
	r->resp.data[0] = '\0';
	r->resp_headers.len = 0;
	r->resp_headers.data[0] = '\0';
	r->received = 0;
	r->status = 0;
	r->seen_cert = r->cert_refused = r->sink_aborted = r->body_too_large = 0;
	free(r->errmsg);
	r->errmsg = NULL;
	r->upload_off = 0;
	if (r->headers != NULL)
		curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	/* A body announced larger than the limit is refused before it comes. */
	curl_easy_setopt(r->easy, CURLOPT_MAXFILESIZE_LARGE, r->sink != NULL ? (curl_off_t)0 : (curl_off_t)r->max_body);
	/* Our verify callback decides about the certificate; curl's own
	 * host name check applies unless a pin or insecure overrides it. */
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, (r->tls.insecure || r->tls.has_pin) ? 0L : 2L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_FUNCTION, http_ssl_ctx);
	curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_DATA, r);
	curl_easy_setopt(r->easy, CURLOPT_SHARE, http_pool_for(&r->tls));
	if (r->tls.ca_file != NULL)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, r->tls.ca_file);
	if (r->tls.has_pin || r->tls.insecure) {
		/* The verify callback decides alone: parsing the system's CA
		 * bundle for every new connection would be wasted work. */
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, NULL);
		curl_easy_setopt(r->easy, CURLOPT_CAPATH, NULL);
	}
	if (curl_multi_add_handle(h.multi, r->easy) != CURLM_OK)
		return -1;
	r->started = 1;
	h.in_flight++;
	return 0;
}

void
http_free(struct http_req *r)
{
	if (r == NULL)
		return;
	if (r->started) {
		curl_multi_remove_handle(h.multi, r->easy);
		h.in_flight--;
	}
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->method);
	free(r->url);
	free(r->body);
	free(r->ca_file);
	free(r->errmsg);
	sbuf_free(&r->resp);
	sbuf_free(&r->resp_headers);
	free(r);
}

void
http_cancel(struct http_req *r)
{
	struct http_req **pp;

	/* It may already sit in the completion queue. */
	for (pp = &h.done_head; *pp != NULL; pp = &(*pp)->next_done) {
		if (*pp == r) {
			*pp = r->next_done;
			if (*pp == NULL)
				h.done_tail = pp;
			break;
		}
	}
	http_free(r);
}

long
http_status(const struct http_req *r)
{
	return r->status;
}

int
http_transport_failed(const struct http_req *r)
{
	return r->result != CURLE_OK;
}

int
http_connect_failed(const struct http_req *r)
{
	return r->result == CURLE_COULDNT_CONNECT || r->result == CURLE_COULDNT_RESOLVE_HOST;
}

int
http_too_large(const struct http_req *r)
{
	return r->body_too_large || r->result == CURLE_FILESIZE_EXCEEDED;
}

int
http_tls_refused(const struct http_req *r)
{
	return r->cert_refused;
}

const char *
http_error(const struct http_req *r)
{
	struct http_req *w = (struct http_req *)r;
	char tp[THUMBPRINT_STRLEN];

	if (r->result == CURLE_OK)
		return NULL;
	if (w->errmsg != NULL)
		return w->errmsg;
	if (http_too_large(r))
		w->errmsg = xasprintf("reply larger than %zu bytes", r->max_body);
	else if (r->sink_aborted)
		w->errmsg = xstrdup("transfer aborted by the receiver");
	else if (r->cert_refused && r->seen_cert && r->tls.has_pin) {
		char want[THUMBPRINT_STRLEN];

		units_format_thumbprint(r->cert_sha256, tp);
		units_format_thumbprint(r->tls.pin, want);
		w->errmsg = xasprintf("certificate not trusted (it does not match the pinned thumbprint %s); "
		                      "the server presented SHA-256 thumbprint %s", want, tp);
	} else if (r->cert_refused && r->seen_cert) {
		units_format_thumbprint(r->cert_sha256, tp);
		w->errmsg = xasprintf("certificate not trusted (%s); the server presented SHA-256 thumbprint %s",
		    r->errbuf[0] ? r->errbuf : "verification failed", tp);
	} else
		w->errmsg = xstrdup(r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
	return w->errmsg;
}

const char *
http_body(const struct http_req *r, size_t *len)
{
	if (len != NULL)
		*len = r->resp.len;
	return r->resp.data;
}

const char *
http_header(const struct http_req *r, const char *name)
{
	static char value[4096];
	const char *p = r->resp_headers.data;
	size_t nl = strlen(name);

	while (p != NULL && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			size_t vl;

			while (*v == ' ' || *v == '\t')
				v++;
			vl = len - (size_t)(v - p);
			while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
				vl--;
			if (vl >= sizeof(value))
				vl = sizeof(value) - 1;
			memcpy(value, v, vl);
			value[vl] = '\0';
			return value;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

int
http_peer_thumbprint(const struct http_req *r, uint8_t out[32])
{
	if (!r->seen_cert)
		return 0;
	memcpy(out, r->cert_sha256, 32);
	return 1;
}

uint64_t
http_bytes_received(const struct http_req *r)
{
	return r->received;
}

uint64_t
http_total_bytes(void)
{
	return h.total_bytes;
}

int
http_in_flight(void)
{
	return h.in_flight;
}
