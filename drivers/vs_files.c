/* Datastore files: datastore path helpers and the GET of a (small) file
 * through /folder, retried with a backoff. */
#include "drivers/vsops.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops_private.h"
#include "engine/core/http.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define FILE_MAX (1u << 20)
#define FILE_TIMEOUT_MS (120L * 1000)
#define FILE_BACKOFF_FIRST_S 0.25
#define FILE_BACKOFF_MAX_S 4.0

/* ---- datastore paths ---- */

int
vs_split_ds_path(const char *ds_path, char **datastore, char **path)
{
	const char *close;

	if (ds_path == NULL || ds_path[0] != '[' || (close = strchr(ds_path, ']')) == NULL)
		return -1;
	*datastore = xstrndup(ds_path + 1, (size_t)(close - ds_path - 1));
	close++;
	while (*close == ' ')
		close++;
	*path = xstrdup(close);
	return 0;
}

static void
url_escape(struct sbuf *b, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) {
			sbuf_add(b, s, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			sbuf_add(b, e, 3);
		}
	}
}

char *
vs_folder_url(struct vs_client *c, const char *datacenter, const char *datastore, const char *path)
{
	struct sbuf b;

	sbuf_init(&b);
	sbuf_adds(&b, vs_base_url(c));
	sbuf_adds(&b, "/folder/");
	url_escape(&b, path, 1);
	sbuf_adds(&b, "?dcPath=");
	url_escape(&b, datacenter, 0);
	sbuf_adds(&b, "&dsName=");
	url_escape(&b, datastore, 0);
	return sbuf_steal(&b);
}

/* ---- datastore files ---- */

static void file_get(struct vs_op *op);
static void file_start(struct vs_op *op, struct vs_result *res);

static void
file_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	file_get(arg);
}

/* A GET that may work when repeated (connection trouble, a body cut
 * short, HTTP 5xx or 429): again after a backoff, until the client's
 * retry window is spent; only then is the peer unreachable. */
static void
file_transient(struct vs_op *op, char *msg)
{
	struct timeval tv;

	if (now_mono() - op->first_try + op->backoff > vs_config(op->c)->retry_window_s) {
		vsop_fail(op, VS_UNREACHABLE, NULL, msg);
		return;
	}
	log_debug("%s; retrying in %.2f s", msg, op->backoff);
	free(msg);
	if (op->timer == NULL)
		op->timer = evtimer_new(loop_base(), file_retry_cb, op);
	tv.tv_sec = (long)op->backoff;
	tv.tv_usec = (long)((op->backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(op->timer, &tv);
	op->backoff = op->backoff * 2 > FILE_BACKOFF_MAX_S ? FILE_BACKOFF_MAX_S : op->backoff * 2;
}

static void
file_http_done(struct http_req *h, void *arg)
{
	struct vs_op *op = arg;
	long st = http_status(h);
	const char *body;
	size_t len;

	op->http = NULL;
	if (http_transport_failed(h)) {
		int tls = http_tls_refused(h);
		int too_large = http_too_large(h);
		char *msg = xasprintf("%s: GET [%s] %s: %s", vs_config(op->c)->name, op->ds, op->path, http_error(h));

		http_free(h);
		/* A refused certificate is a refusal, not a lost peer; a file
		 * larger than the limit would be as large again. */
		if (tls)
			vsop_fail(op, VS_TLS, NULL, msg);
		else if (too_large)
			vsop_fail(op, VS_BADREPLY, NULL, msg);
		else
			file_transient(op, msg);
		return;
	}
	if (st == 401 && !op->relogged) {
		http_free(h);
		op->relogged = 1;
		vsop_relogin(op, file_start);
		return;
	}
	if (st != 200) {
		char *msg = xasprintf("%s: GET [%s] %s: HTTP %ld", vs_config(op->c)->name, op->ds, op->path, st);

		http_free(h);
		if (st >= 500 || st == 429)
			file_transient(op, msg);
		else
			vsop_fail(op, VS_FAULT, st == 404 ? "FileNotFound" : NULL, msg);
		return;
	}
	body = http_body(h, &len);
	op->out.data = xstrndup(body, len);
	op->out.len = len;
	http_free(h);
	op->out.status = VS_OK;
	vsop_finish(op);
}

static void
file_get(struct vs_op *op)
{
	char *url = vs_folder_url(op->c, op->dc, op->ds, op->path);
	struct http_req *h = http_new("GET", url);

	free(url);
	if (op->first_try == 0)
		op->first_try = now_mono();
	http_set_tls(h, &vs_config(op->c)->tls);
	if (vs_cookie(op->c) != NULL)
		http_set_cookie(h, vs_cookie(op->c));
	http_set_max_body(h, FILE_MAX);
	http_set_timeout(h, FILE_TIMEOUT_MS);
	op->http = h;
	if (http_start(h, file_http_done, op) != 0) {
		op->http = NULL;
		http_free(h);
		vsop_fail(op, VS_UNREACHABLE, NULL, xstrdup("could not start the request"));
	}
}

static void
file_start(struct vs_op *op, struct vs_result *res)
{
	file_get(op);
}

struct vs_op *
vs_get_file(struct vs_client *c, const char *datacenter, const char *datastore, const char *path, vs_op_fn done,
    void *arg)
{
	struct vs_op *op = vsop_start(c, done, arg, file_start);

	op->dc = xstrdup(datacenter);
	op->ds = xstrdup(datastore);
	op->path = xstrdup(path);
	op->backoff = FILE_BACKOFF_FIRST_S;
	return op;
}
