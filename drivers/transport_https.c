/* The https transport: /folder Range GETs and whole-file PUTs.
 *
 * A vectored read (read_to_v) asks for all its ranges in one GET; the
 * answer is multipart/byteranges (engine/core/byteranges.c), or one part.
 * A datastore whose answer is anything else (the whole file, 416, parts
 * outside the ranges, missing parts) is asked one range per request from
 * then on: the request is sent again range by range. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "drivers/vsphere.h"
#include "engine/core/byteranges.h"
#include "engine/core/http.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define XFER_RETRY_WINDOW_S 15.0
#define XFER_BACKOFF_FIRST_S 0.2
#define XFER_BACKOFF_MAX_S 4.0
/* A streamed range is gathered into pieces of this size before each write:
 * TLS hands over at most 16 KiB at a time, and one write per piece costs
 * more in system calls than the copy into a buffer that stays in cache. */
#define XFER_PIECE (256u << 10)

struct disk_io {
	TAILQ_ENTRY(disk_io) link;
	struct https_disk *d;       /* NULL for uploads */
	struct vs_client *c;
	char *url;
	char *label;
	uint64_t off;               /* the range of this HTTP request */
	size_t len;
	uint64_t total;             /* bytes of the whole read (all its ranges) */
	uint8_t *buf;               /* reads into the caller's buffer */
	struct disk *dst;           /* streamed reads (read_to) */
	uint8_t *piece;             /* streamed reads: bytes not yet put */
	size_t npiece;
	uint64_t pos;               /* streamed: the disk offset of the next byte */
	/* Vectored reads: the ranges; cur is the one read alone when the
	 * datastore answers one range per request. */
	struct disk_range *ranges;
	size_t nranges;
	struct upload_source src;   /* uploads of a body made as it goes (src.read set) */
	size_t cur;
	int multi;                  /* this attempt asks for every range at once */
	int answer_known;           /* the answer's status and headers were checked */
	char *multi_why;            /* multi: why the answer is not usable */
	struct br_parser *br;       /* multi: a multipart answer */
	uint64_t part_left;         /* multi: a one-part answer's bytes to come */
	size_t ri;                  /* multi: the range the next part may start in */
	uint64_t part_min;          /* multi: parts must not start below this */
	uint64_t covered;           /* multi: bytes of the ranges announced by the parts */
	size_t parts;               /* multi: parts begun */
	enum xfer_status put_st;    /* a put failed: why */
	char *put_err;
	size_t got;
	int fd;                     /* uploads */
	xfer_cb cb;
	void *arg;
	struct http_req *http;
	struct vs_call *login;
	struct event *timer;
	double first_try;
	double backoff;
	int relogins;
	int overflow;               /* the server sent more than the range */
};

struct https_disk {
	struct disk base;
	struct vs_client *c;
	char *url;
	char *label;
	TAILQ_HEAD(, disk_io) ios;
};

static void io_send(struct disk_io *io);

static void
io_free(struct disk_io *io)
{
	if (io->d != NULL)
		TAILQ_REMOVE(&io->d->ios, io, link);
	if (io->http != NULL)
		http_cancel(io->http);
	if (io->login != NULL)
		vs_call_cancel(io->login);
	if (io->timer != NULL)
		event_free(io->timer);
	free(io->url);
	free(io->label);
	free(io->piece);
	free(io->put_err);
	free(io->ranges);
	free(io->multi_why);
	br_free(io->br);
	free(io);
}

static void
io_finish(struct disk_io *io, enum xfer_status st, const char *err)
{
	xfer_cb cb = io->cb;
	void *arg = io->arg;

	if (st == XFER_OK && io->d != NULL)
		io->d->base.bytes_read += io->total;
	io_free(io);
	cb(arg, st, err);
}

static void
io_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	io_send(arg);
}

static void
io_transient(struct disk_io *io, const char *why)
{
	double elapsed = now_mono() - io->first_try;
	struct timeval tv;

	if (elapsed + io->backoff > XFER_RETRY_WINDOW_S) {
		char *msg = xasprintf("%s: %s (retried for %.0f s)", io->label, why, elapsed);

		io_finish(io, XFER_TRANSIENT, msg);
		free(msg);
		return;
	}
	log_debug("%s: %s; retrying in %.2f s", io->label, why, io->backoff);
	if (io->timer == NULL)
		io->timer = evtimer_new(loop_base(), io_retry_cb, io);
	tv.tv_sec = (long)io->backoff;
	tv.tv_usec = (long)((io->backoff - (double)tv.tv_sec) * 1e6);
	evtimer_add(io->timer, &tv);
	io->backoff *= 2;
	if (io->backoff > XFER_BACKOFF_MAX_S)
		io->backoff = XFER_BACKOFF_MAX_S;
}

static void
io_relogged(struct vs_result *res, void *arg)
{
	struct disk_io *io = arg;

	io->login = NULL;
	if (res->status == VS_OK) {
		io_send(io);
	} else if (vs_status_transient(res->status)) {
		io_transient(io, res->error);
	} else {
		io_finish(io, XFER_FATAL, res->error);
	}
}

static void
io_put_failed(struct disk_io *io)
{
	char *why = io->put_err;

	io->put_err = NULL;
	io_finish(io, io->put_st, why);
	free(why);
}

/* Write what is gathered at its place on the disk. */
static int
io_put_piece(struct disk_io *io)
{
	uint64_t at = io->pos - io->npiece;

	if (io->npiece == 0)
		return 0;
	io->put_st = io->dst->ops->put(io->dst, at, io->piece, io->npiece, &io->put_err);
	io->npiece = 0;
	return io->put_st == XFER_OK ? 0 : -1;
}

/* Whether the reply is the range asked for (anything else, such as a
 * whole file for a range, must not reach the disk). */
static int
io_reply_fits(const struct disk_io *io, long st)
{
	return st == 206 || (st == 200 && io->off == 0 && io->len == io->d->base.size);
}

static char *
io_misfit(const struct disk_io *io, long st)
{
	return xasprintf("%s: range %llu+%zu answered with HTTP %ld", io->label, (unsigned long long)io->off, io->len, st);
}

/* A one-range answer, before its first byte is taken: a 206 must be for
 * the range asked (a Content-Range for another one is refused, not
 * written at the offset asked), anything else a whole disk. */
static int
io_check_answer(struct disk_io *io)
{
	long st = http_status(io->http);
	const char *v;
	uint64_t first, last;

	io->answer_known = 1;
	if (st == 206 && (v = http_header(io->http, "Content-Range")) != NULL &&
	    (br_content_range(v, &first, &last) != 0 || first != io->off || last != io->off + io->len - 1)) {
		io->put_st = XFER_FATAL;
		io->put_err = xasprintf("%s: range %llu+%zu answered with Content-Range: %.80s", io->label,
		    (unsigned long long)io->off, io->len, v);
		return -1;
	}
	if (!io_reply_fits(io, st)) {
		io->put_st = XFER_FATAL;
		io->put_err = io_misfit(io, st);
		return -1;
	}
	return 0;
}

/* Streamed reads gather at most this much before a put. */
static size_t
io_piece_size(const struct disk_io *io)
{
	return io->total < XFER_PIECE ? (size_t)io->total : XFER_PIECE;
}

/* Gather streamed bytes (they belong at pos) and put each full piece. */
static int
io_gather(struct disk_io *io, const uint8_t *b, size_t n)
{
	if (io->piece == NULL)
		io->piece = xmalloc(io_piece_size(io));
	while (n > 0) {
		size_t room = io_piece_size(io) - io->npiece;
		size_t k = n < room ? n : room;

		memcpy(io->piece + io->npiece, b, k);
		io->npiece += k;
		io->pos += k;
		b += k;
		n -= k;
		if (k == room && io_put_piece(io) != 0)
			return -1;
	}
	return 0;
}

/* The body of a one-range answer: checked before its first byte, never
 * more than the range (whatever the server sends), into the caller's
 * buffer or streamed into the destination. */
static int
io_range_sink(const void *p, size_t n, void *arg)
{
	struct disk_io *io = arg;

	if (!io->answer_known && io_check_answer(io) != 0)
		return -1;
	if (n > io->len - io->got) {
		io->overflow = 1;
		return -1;
	}
	if (io->dst != NULL) {
		io->got += n;
		return io_gather(io, p, n);
	}
	memcpy(io->buf + io->got, p, n);
	io->got += n;
	return 0;
}

/* Multi-range answers. */

static void
io_multi_refuse(struct disk_io *io, char *why)
{
	if (io->multi_why == NULL)
		io->multi_why = why;
	else
		free(why);
}

/* A part of the answer begins: it must lie inside the ranges asked for
 * (bytes of a gap are never written: they may be a hole of the disk), in
 * ascending order, each byte once. */
static int
io_multi_part(void *arg, uint64_t first, uint64_t last)
{
	struct disk_io *io = arg;
	size_t j;

	if (io_put_piece(io) != 0)
		return -1;
	/* Never more parts than ranges: merging needs fewer, and each part
	 * costs a write. */
	if (++io->parts > io->nranges) {
		io_multi_refuse(io, xasprintf("more parts than the %zu ranges asked for", io->nranges));
		return -1;
	}
	while (io->ri < io->nranges && io->ranges[io->ri].off + io->ranges[io->ri].len <= first)
		io->ri++;
	if (first < io->part_min || io->ri == io->nranges || first < io->ranges[io->ri].off)
		goto outside;
	for (j = io->ri; last >= io->ranges[j].off + io->ranges[j].len; j++)
		if (j + 1 == io->nranges || io->ranges[j + 1].off != io->ranges[j].off + io->ranges[j].len)
			goto outside;
	io->pos = first;
	io->part_min = last + 1;
	io->covered += last - first + 1;
	return 0;
outside:
	io_multi_refuse(io, xasprintf("a part %llu-%llu that is not inside the ranges asked for, in order",
	    (unsigned long long)first, (unsigned long long)last));
	return -1;
}

static int
io_multi_data(void *arg, const uint8_t *p, size_t n)
{
	return io_gather(arg, p, n);
}

/* The first bytes of a multi-range answer: multipart, or one part. */
static int
io_multi_start(struct disk_io *io)
{
	long st = http_status(io->http);
	const char *v;
	char *err = NULL;
	uint64_t first, last;

	io->answer_known = 1;
	if (st != 206) {
		io_multi_refuse(io, xasprintf("HTTP %ld", st));
		return -1;
	}
	v = http_header(io->http, "Content-Type");
	if (v != NULL && strncasecmp(v, "multipart/", 10) == 0) {
		struct br_sink sink = { io_multi_part, io_multi_data, io };

		io->br = br_new(v, &sink, &err);
		if (io->br == NULL) {
			io_multi_refuse(io, err);
			return -1;
		}
		return 0;
	}
	v = http_header(io->http, "Content-Range");
	if (v == NULL || br_content_range(v, &first, &last) != 0) {
		io_multi_refuse(io, xstrdup("a 206 answer that is neither multipart nor one range"));
		return -1;
	}
	if (io_multi_part(io, first, last) != 0)
		return -1;
	io->part_left = last - first + 1;
	return 0;
}

static int
io_multi_sink(const void *p, size_t n, void *arg)
{
	struct disk_io *io = arg;
	char *err = NULL;

	if (!io->answer_known && io_multi_start(io) != 0)
		return -1;
	if (io->br != NULL) {
		if (br_feed(io->br, p, n, &err) != 0) {
			io_multi_refuse(io, err);
			return -1;
		}
		return 0;
	}
	if (n > io->part_left) {
		io_multi_refuse(io, xstrdup("more bytes than its Content-Range announced"));
		return -1;
	}
	io->part_left -= n;
	return io_gather(io, p, n);
}

/* Whether a multi-range answer that arrived whole holds every range. */
static char *
io_multi_incomplete(struct disk_io *io)
{
	char *err = NULL;

	if (!io->answer_known)
		return xstrdup("an empty answer");
	if (io->br != NULL && br_finish(io->br, &err) != 0)
		return err;
	if (io->br == NULL && io->part_left != 0)
		return xasprintf("a one-part answer cut short (%llu bytes missing)", (unsigned long long)io->part_left);
	if (io->covered != io->total)
		return xasprintf("%llu of the %llu bytes asked for", (unsigned long long)io->covered,
		    (unsigned long long)io->total);
	return NULL;
}

/* The datastore does not answer several ranges at once: read them one
 * per request from now on (this read starts over; rewriting a range
 * gives the same bytes). */
static void
io_single(struct disk_io *io, char *why)
{
	if (!io->d->base.one_range) {
		io->d->base.one_range = 1;
		log_info("%s: the datastore does not answer several ranges in one request (%s); reading one range per request",
		    io->label, why);
	}
	free(why);
	io->cur = 0;
	io->first_try = 0;
	io->backoff = XFER_BACKOFF_FIRST_S;
	io_send(io);
}

static void
io_http_done(struct http_req *h, void *arg)
{
	struct disk_io *io = arg;
	long st = http_status(h);
	char *why;

	io->http = NULL;
	if (io->put_err != NULL) {
		/* The reply or the destination refused: that reason, not curl's. */
		http_free(h);
		io_put_failed(io);
		return;
	}
	if (io->multi && io->multi_why != NULL) {
		why = io->multi_why;
		io->multi_why = NULL;
		http_free(h);
		io_single(io, why);
		return;
	}
	if (http_transport_failed(h)) {
		int tls = http_tls_refused(h);

		if (io->overflow)
			why = xasprintf("range %llu+%zu: the server sent more bytes than asked for",
			    (unsigned long long)io->off, io->len);
		else
			why = xstrdup(http_error(h));
		http_free(h);
		if (tls) {
			io_finish(io, XFER_FATAL, why);
		} else {
			io_transient(io, why);
		}
		free(why);
		return;
	}
	http_free(h);
	if (st == 401 && io->relogins < 3) {
		/* The session expired under a long transfer: log in, go on. */
		io->relogins++;
		io->login = vs_relogin(io->c, io_relogged, io);
		return;
	}
	if (st >= 500 || st == 429) {
		why = xasprintf("HTTP %ld", st);
		io_transient(io, why);
		free(why);
		return;
	}
	if (io->d == NULL) {
		/* Upload. */
		if (st == 200 || st == 201 || st == 204) {
			io_finish(io, XFER_OK, NULL);
		} else {
			why = xasprintf("%s: upload refused: HTTP %ld", io->label, st);
			io_finish(io, XFER_FATAL, why);
			free(why);
		}
		return;
	}
	if (io->multi) {
		why = st >= 200 && st < 300 ? io_multi_incomplete(io) : xasprintf("HTTP %ld", st);
		if (why != NULL) {
			io_single(io, why);
			return;
		}
		if (io_put_piece(io) != 0) {
			io_put_failed(io);
			return;
		}
		io_finish(io, XFER_OK, NULL);
		return;
	}
	if (!io_reply_fits(io, st)) {
		why = io_misfit(io, st);
		io_finish(io, XFER_FATAL, why);
		free(why);
		return;
	}
	if (io->got != io->len) {
		/* A body cut short: never hand on a partial range. */
		why = xasprintf("short read: %zu of %zu bytes", io->got, io->len);
		io_transient(io, why);
		free(why);
		return;
	}
	if (io->dst != NULL && io_put_piece(io) != 0) {
		io_put_failed(io);
		return;
	}
	if (io->ranges != NULL && ++io->cur < io->nranges) {
		/* One range per request: the next one. */
		io->first_try = 0;
		io->backoff = XFER_BACKOFF_FIRST_S;
		io_send(io);
		return;
	}
	io_finish(io, XFER_OK, NULL);
}

/* "FIRST-LAST,FIRST-LAST,..." of every range. */
static char *
io_range_spec(const struct disk_io *io)
{
	size_t i, n = 0, cap = io->nranges * 42 + 1;
	char *s = xmalloc(cap);

	for (i = 0; i < io->nranges; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s%llu-%llu", i ? "," : "", (unsigned long long)io->ranges[i].off,
		    (unsigned long long)(io->ranges[i].off + io->ranges[i].len - 1));
	return s;
}

static void
io_send(struct disk_io *io)
{
	struct http_req *h;
	const char *cookie = vs_cookie(io->c);

	if (cookie == NULL) {
		/* No session yet (or it was dropped): log in first. */
		io->login = vs_login(io->c, io_relogged, io);
		return;
	}
	if (io->first_try == 0)
		io->first_try = now_mono();
	io->got = 0;
	io->overflow = 0;
	io->npiece = 0;
	io->answer_known = 0;
	if (io->ranges != NULL) {
		io->multi = io->nranges > 1 && !io->d->base.one_range;
		free(io->multi_why);
		io->multi_why = NULL;
		br_free(io->br);
		io->br = NULL;
		io->ri = 0;
		io->part_min = 0;
		io->covered = 0;
		io->parts = 0;
		io->part_left = 0;
		if (!io->multi) {
			io->off = io->ranges[io->cur].off;
			io->len = (size_t)io->ranges[io->cur].len;
		}
	}
	io->pos = io->off;
	h = http_new(io->d != NULL ? "GET" : "PUT", io->url);
	http_set_tls(h, &vs_config(io->c)->tls);
	http_set_cookie(h, cookie);
	if (io->d != NULL && io->multi) {
		char *spec = io_range_spec(io);

		http_set_ranges(h, spec);
		free(spec);
		http_set_sink(h, io_multi_sink, io);
	} else if (io->d != NULL) {
		http_set_range(h, io->off, io->off + io->len - 1);
		http_set_sink(h, io_range_sink, io);
	} else {
		http_add_header(h, "Content-Type: application/octet-stream");
		if (io->src.read != NULL) {
			io->src.rewind(io->src.arg);
			http_set_upload_source(h, io->src.read, io->src.arg, io->len);
		} else {
			http_set_upload_fd(h, io->fd, io->len);
		}
	}
	http_set_stall_timeout(h, 30);
	io->http = h;
	if (http_start(h, io_http_done, io) != 0) {
		io->http = NULL;
		http_free(h);
		io_transient(io, "could not start the request");
	}
}

/* A read of off+len, or of the n ranges r (then off+len is the first). */
static struct disk_io *
https_range(struct disk *dk, uint64_t off, size_t len, const struct disk_range *r, size_t n, void *buf,
    struct disk *dst, xfer_cb cb, void *arg)
{
	struct https_disk *d = (struct https_disk *)dk;
	struct disk_io *io;
	uint64_t total = len;
	size_t i;

	if (len == 0 || off > dk->size || len > dk->size - off)
		return NULL;
	for (i = 1; i < n; i++) {
		if (r[i].len == 0 || r[i].len > SIZE_MAX || r[i].off > dk->size || r[i].len > dk->size - r[i].off ||
		    r[i].off < r[i - 1].off + r[i - 1].len)
			return NULL;
		total += r[i].len;
	}
	io = xcalloc(1, sizeof(*io));
	io->d = d;
	io->c = d->c;
	io->url = xstrdup(d->url);
	io->label = xstrdup(d->label);
	io->off = off;
	io->len = len;
	io->total = total;
	if (n > 1) {
		io->ranges = xmalloc(n * sizeof(*r));
		memcpy(io->ranges, r, n * sizeof(*r));
		io->nranges = n;
	}
	io->buf = buf;
	io->dst = dst;
	io->cb = cb;
	io->arg = arg;
	io->fd = -1;
	io->backoff = XFER_BACKOFF_FIRST_S;
	TAILQ_INSERT_TAIL(&d->ios, io, link);
	io_send(io);
	return io;
}

static struct disk_io *
https_read(struct disk *dk, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	return https_range(dk, off, len, NULL, 0, buf, NULL, cb, arg);
}

static struct disk_io *
https_read_to(struct disk *dk, uint64_t off, size_t len, struct disk *dst, xfer_cb cb, void *arg)
{
	return https_range(dk, off, len, NULL, 0, NULL, dst, cb, arg);
}

static struct disk_io *
https_read_to_v(struct disk *dk, const struct disk_range *r, size_t n, struct disk *dst, xfer_cb cb, void *arg)
{
	if (n == 0 || n > DISK_MAX_RANGES || r[0].len > SIZE_MAX)
		return NULL;
	return https_range(dk, r[0].off, (size_t)r[0].len, r, n, NULL, dst, cb, arg);
}

static void
https_cancel(struct disk_io *io)
{
	if (io != NULL)
		io_free(io);
}

static void
https_close(struct disk *dk)
{
	struct https_disk *d = (struct https_disk *)dk;

	while (!TAILQ_EMPTY(&d->ios))
		io_free(TAILQ_FIRST(&d->ios));
	free(d->url);
	free(d->label);
	free(d);
}

static const struct disk_ops https_ops = {
	.name = "https",
	.read = https_read,
	.write = NULL,
	.cancel = https_cancel,
	.flush = NULL,
	.close = https_close,
	.read_to = https_read_to,
	.put = NULL,
	.read_to_v = https_read_to_v,
};

struct disk *
disk_open_https(struct vs_client *c, const char *datacenter, const char *datastore, const char *path, uint64_t size)
{
	struct https_disk *d = xcalloc(1, sizeof(*d));

	d->base.ops = &https_ops;
	d->base.size = size;
	d->c = c;
	d->url = vs_folder_url(c, datacenter, datastore, path);
	d->label = xasprintf("%s: [%s] %s", vs_config(c)->name, datastore, path);
	TAILQ_INIT(&d->ios);
	return &d->base;
}

struct disk_io *
disk_upload_https(struct vs_client *c, const char *datacenter, const char *datastore, const char *path, int fd,
    uint64_t len, xfer_cb cb, void *arg)
{
	struct disk_io *io = xcalloc(1, sizeof(*io));

	io->c = c;
	io->url = vs_folder_url(c, datacenter, datastore, path);
	io->label = xasprintf("%s: upload [%s] %s", vs_config(c)->name, datastore, path);
	io->fd = fd;
	io->len = (size_t)len;
	io->cb = cb;
	io->arg = arg;
	io->backoff = XFER_BACKOFF_FIRST_S;
	io_send(io);
	return io;
}

struct disk_io *
disk_upload_https_from(struct vs_client *c, const char *datacenter, const char *datastore, const char *path,
    const struct upload_source *src, uint64_t len, xfer_cb cb, void *arg)
{
	struct disk_io *io = xcalloc(1, sizeof(*io));

	io->c = c;
	io->url = vs_folder_url(c, datacenter, datastore, path);
	io->label = xasprintf("%s: upload [%s] %s", vs_config(c)->name, datastore, path);
	io->fd = -1;
	io->src = *src;
	io->len = (size_t)len;
	io->cb = cb;
	io->arg = arg;
	io->backoff = XFER_BACKOFF_FIRST_S;
	io_send(io);
	return io;
}

void
disk_upload_cancel(struct disk_io *io)
{
	if (io != NULL)
		io_free(io);
}
