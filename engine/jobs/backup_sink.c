#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* The repository sink of a backup (see backup_sink.h). */
#include "engine/jobs/backup_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "drivers/transport.h"
#include "drivers/vsops.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"

/* ---- the partial index file ---- */

#define IDS_MAGIC "vmfids01"
#define IDS_HEAD 32
#define IDS_REC (1 + REPO_ID_LEN)

static uint64_t
rec_off(uint64_t i)
{
	return IDS_HEAD + i * IDS_REC;
}

void
bak_ids_free(struct bak_ids *x)
{
	free(x->ids);
	free(x->set);
	memset(x, 0, sizeof(*x));
}

static int
ids_fail(char **err, int fd, const char *path, const char *what)
{
	*err = xasprintf("partial index %s: cannot %s: %s", path, what, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int
bak_ids_load(const char *path, uint64_t seq, uint32_t pass, uint64_t capacity, struct bak_ids *out, char **err)
{
	uint8_t head[IDS_HEAD], want[IDS_HEAD], *buf;
	uint64_t n = repo_disk_chunks(capacity), i, have;
	struct stat sb;
	ssize_t got;
	int fd;

	memset(out, 0, sizeof(*out));
	memcpy(want, IDS_MAGIC, 8);
	put_be64(want + 8, seq);
	put_be64(want + 16, pass);
	put_be64(want + 24, capacity);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return ids_fail(err, -1, path, "open it");
	got = pread(fd, head, sizeof(head), 0);
	if (got != (ssize_t)sizeof(head) || memcmp(head, want, sizeof(head)) != 0) {
		/* Another point's or pass's, or new: start it over. */
		if (ftruncate(fd, 0) != 0 || pwrite(fd, want, sizeof(want), 0) != (ssize_t)sizeof(want) ||
		    fdatasync(fd) != 0)
			return ids_fail(err, fd, path, "write it");
	}
	if (fstat(fd, &sb) != 0)
		return ids_fail(err, fd, path, "read it");
	out->nchunks = n;
	out->ids = xcalloc(n ? n : 1, REPO_ID_LEN);
	out->set = xcalloc(n ? n : 1, 1);
	have = sb.st_size > IDS_HEAD ? ((uint64_t)sb.st_size - IDS_HEAD) / IDS_REC : 0;
	if (have > n)
		have = n;
	if (have > 0) {
		buf = xmalloc(have * IDS_REC);
		if (pread(fd, buf, have * IDS_REC, IDS_HEAD) != (ssize_t)(have * IDS_REC)) {
			free(buf);
			bak_ids_free(out);
			return ids_fail(err, fd, path, "read it");
		}
		for (i = 0; i < have; i++) {
			if (buf[i * IDS_REC] != 1)
				continue;
			out->set[i] = 1;
			memcpy(out->ids[i], buf + i * IDS_REC + 1, REPO_ID_LEN);
		}
		free(buf);
	}
	close(fd);
	return 0;
}

int
bak_ids_clear(const char *path, uint64_t i, char **err)
{
	uint8_t zero[IDS_REC] = { 0 };
	int fd;

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return ids_fail(err, -1, path, "open it");
	if (pwrite(fd, zero, sizeof(zero), (off_t)rec_off(i)) != (ssize_t)sizeof(zero) || fdatasync(fd) != 0)
		return ids_fail(err, fd, path, "write it");
	close(fd);
	return 0;
}

/* ---- the sink ---- */

/* Chunks waiting for the device whose writes are reported already: each
 * holds a temporary file open, none holds memory.  16 chunks keep the
 * device threads busy while a chunk's fsync takes tens of milliseconds
 * (tools/bench figure 9). */
#define SINK_COMMIT_AHEAD 16

struct bak_sink;
struct sink_sync;

/* A write waiting for the chunks it went into to be stored. */
struct pending {
	TAILQ_ENTRY(pending) link;
	int waiting;             /* chunks not yet stored */
	int cancelled;
	enum xfer_status st;
	char *err;
	xfer_cb cb;
	void *arg;
};
TAILQ_HEAD(pending_list, pending);

/* A chunk being filled. */
struct open_chunk {
	LIST_ENTRY(open_chunk) link;
	uint64_t index;
	uint8_t *buf;            /* len bytes (repo_buf_alloc), zeros where nothing came */
	size_t len;
	uint64_t expect, got;    /* bytes of the areas inside it; bytes come */
	struct pending **waiters; /* its writes not yet reported */
	size_t nwaiters;
	struct work *work;       /* filing it, once complete */
	uint64_t seq;            /* sealed: its place among the sink's sealed chunks (from 1); 0: not yet */
	int early;               /* its writes were reported when it was sealed */
};
LIST_HEAD(chunk_list, open_chunk);

struct bak_sink {
	struct disk d;
	struct bak_sink_params p;
	uint8_t *done;           /* per chunk: stored (before, or by this sink) */
	uint64_t nchunks;
	int fd;                  /* the partial index */
	char *path;
	int refs;                /* the sink while open, and each chunk being filed */
	int closed;
	struct chunk_list chunks;
	struct pending_list ready, waiting;
	struct event *ev;        /* reports the writes that are ready */
	enum xfer_status fail_st; /* a chunk could not be filed: later writes fail too */
	char *fail;
	int fail_late;           /* ... after its writes were reported: flushes fail too */
	uint64_t sealed;         /* chunks sealed so far (the last one's seq) */
	int committing;          /* sealed chunks not yet filed */
	TAILQ_HEAD(, sink_sync) flushes; /* flushes waiting for chunks to be filed */
};

/* What a worker needs to file one chunk; nothing else is touched there. */
struct chunk_work {
	struct bak_sink *s;
	struct open_chunk *c;    /* valid when done runs (work_cancel stops done first) */
	struct repo *repo;
	int fd;
	uint64_t index;
	uint8_t *buf;
	size_t len;
	int has_base;
	uint8_t base[REPO_ID_LEN];
	struct vs_extent *covered; /* the areas inside the chunk, relative to it */
	size_t ncovered;
	struct repo_sealed sealed; /* written, not yet durable */
	int passed;              /* the sealing handed it to the commit */
	uint8_t id[REPO_ID_LEN];
	uint64_t stored;
	enum xfer_status st;
	char *err;
};

static void
sink_unref(struct bak_sink *s)
{
	struct pending *w;

	if (--s->refs > 0)
		return;
	while ((w = TAILQ_FIRST(&s->ready)) != NULL) {
		TAILQ_REMOVE(&s->ready, w, link);
		free(w->err);
		free(w);
	}
	if (s->fd >= 0)
		close(s->fd);
	event_free(s->ev);
	free(s->done);
	free(s->path);
	free(s->fail);
	free(s);
}

/* Bytes of the areas inside [start, end). */
static uint64_t
areas_in(const struct bak_sink *s, uint64_t start, uint64_t end, struct vs_extent **out, size_t *nout)
{
	const struct vs_extent *a = s->p.areas;
	size_t lo = 0, hi = s->p.nareas, k;
	uint64_t total = 0;

	/* The first area that ends after start. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a[mid].start + a[mid].length <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (out != NULL) {
		*out = NULL;
		*nout = 0;
	}
	for (k = lo; k < s->p.nareas && a[k].start < end; k++) {
		uint64_t from = a[k].start > start ? a[k].start : start;
		uint64_t to = a[k].start + a[k].length < end ? a[k].start + a[k].length : end;

		if (to <= from)
			continue;
		total += to - from;
		if (out != NULL) {
			*out = xreallocarray(*out, *nout + 1, sizeof(**out));
			(*out)[*nout].start = from - start;
			(*out)[*nout].length = to - from;
			(*nout)++;
		}
	}
	return total;
}

/* ---- on a worker ---- */

/* The CPU's part: the parent's bytes, hashing, compressing, encrypting,
 * the file written. */
static void
seal_chunk(void *arg)
{
	struct chunk_work *w = arg;
	uint64_t covered = 0;
	size_t k;

	for (k = 0; k < w->ncovered; k++)
		covered += w->covered[k].length;
	if (w->has_base && covered < w->len) {
		/* Its other bytes are the parent's. */
		uint8_t *base = repo_buf_alloc(w->repo, w->len);
		char *e = NULL;
		char hex[2 * REPO_ID_LEN + 1];

		if (repo_chunk_get(w->repo, w->base, base, w->len, &e) != 0) {
			repo_id_hex(w->base, hex);
			w->st = XFER_FATAL;
			w->err = xasprintf("chunk %llu of the disk takes its unchanged bytes from the parent point's "
			                   "chunk %s, which cannot be read (%s); `vmferryctl verify` sets it aside so "
			                   "that the next backup reads those bytes again",
			    (unsigned long long)w->index, hex, e);
			free(e);
			repo_buf_free(w->repo, base);
			return;
		}
		for (k = 0; k < w->ncovered; k++)
			memcpy(base + w->covered[k].start, w->buf + w->covered[k].start, (size_t)w->covered[k].length);
		repo_buf_free(w->repo, w->buf);
		w->buf = base;
	}
	if (repo_chunk_seal_buf(w->repo, w->buf, w->len, &w->sealed, &w->err) != 0) {
		w->st = XFER_FATAL;
		return;
	}
	memcpy(w->id, w->sealed.id, REPO_ID_LEN);
	w->st = XFER_OK;
}

/* The device's part: the chunk durable and in chunks/, then its id in
 * the partial index. */
static void
commit_chunk(void *arg)
{
	struct chunk_work *w = arg;
	uint8_t rec[IDS_REC];

	if (repo_chunk_commit(w->repo, &w->sealed, &w->err) != 0) {
		w->st = XFER_FATAL;
		return;
	}
	w->stored = w->sealed.stored;
	rec[0] = 1;
	memcpy(rec + 1, w->id, REPO_ID_LEN);
	if (pwrite(w->fd, rec, sizeof(rec), (off_t)rec_off(w->index)) != (ssize_t)sizeof(rec)) {
		w->st = XFER_FATAL;
		w->err = xasprintf("cannot write the partial index: %s", strerror(errno));
		return;
	}
	w->st = XFER_OK;
}

/* ---- on the loop ---- */

static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bak_sink *s = arg;
	struct pending *w;

	s->refs++;
	while (!s->closed && (w = TAILQ_FIRST(&s->ready)) != NULL) {
		xfer_cb cb = w->cb;
		void *cbarg = w->arg;
		enum xfer_status st = w->st;
		char *err = w->err;

		TAILQ_REMOVE(&s->ready, w, link);
		free(w);
		if (cb != NULL)
			cb(cbarg, st, err);
		free(err);
	}
	sink_unref(s);
}

static void
make_ready(struct bak_sink *s, struct pending *w)
{
	TAILQ_REMOVE(&s->waiting, w, link);
	if (w->cancelled) {
		free(w->err);
		free(w);
		return;
	}
	TAILQ_INSERT_TAIL(&s->ready, w, link);
	event_active(s->ev, EV_TIMEOUT, 0);
}

static void
chunk_free(struct bak_sink *s, struct open_chunk *c)
{
	LIST_REMOVE(c, link);
	repo_buf_free(s->p.repo, c->buf);
	free(c->waiters);
	free(c);
}

static void flushes_check(struct bak_sink *s);

/* The chunk is filed (or could not be): its writes learn it, unless they
 * were reported when it was sealed; the flushes that waited for it may
 * go on. */
static void
chunk_filed(void *arg)
{
	struct chunk_work *w = arg;
	struct bak_sink *s = w->s;
	struct open_chunk *c = w->c;
	size_t k;

	if (c->seq != 0)
		s->committing--;
	if (w->st == XFER_OK) {
		s->done[w->index] = 1;
		s->d.bytes_written += w->len;
		if (s->p.stored != NULL)
			*s->p.stored += w->stored;
	} else {
		if (s->fail == NULL) {
			s->fail_st = w->st;
			s->fail = xstrdup(w->err);
		}
		if (c->early)
			s->fail_late = 1;
	}
	for (k = 0; k < c->nwaiters; k++) {
		struct pending *p = c->waiters[k];

		if (w->st != XFER_OK && p->st == XFER_OK) {
			p->st = w->st;
			p->err = xstrdup(w->err);
		}
		if (--p->waiting == 0)
			make_ready(s, p);
	}
	chunk_free(s, c);
	flushes_check(s);
}

static void
chunk_release(void *arg)
{
	struct chunk_work *w = arg;
	struct bak_sink *s = w->s;

	repo_chunk_abandon(w->repo, &w->sealed);
	repo_buf_free(w->repo, w->buf);
	free(w->covered);
	free(w->err);
	free(w);
	sink_unref(s);
}

/* Sealed: its buffer is free and its writes are reported (while few
 * chunks wait for the device); now the wait for the device, on its own
 * threads. */
static void
chunk_sealed(void *arg)
{
	struct chunk_work *w = arg;
	struct bak_sink *s = w->s;
	struct open_chunk *c = w->c;
	size_t k;

	if (w->st != XFER_OK) {
		chunk_filed(w);
		return;
	}
	repo_buf_free(w->repo, w->buf);
	w->buf = NULL;
	w->passed = 1;
	c->seq = ++s->sealed;
	if (++s->committing <= SINK_COMMIT_AHEAD) {
		for (k = 0; k < c->nwaiters; k++)
			if (--c->waiters[k]->waiting == 0)
				make_ready(s, c->waiters[k]);
		c->nwaiters = 0;
		c->early = 1;
	}
	c->work = work_submit_io(commit_chunk, chunk_filed, chunk_release, w);
}

static void
seal_release(void *arg)
{
	struct chunk_work *w = arg;

	if (!w->passed)
		chunk_release(w);
}

static void
submit(struct bak_sink *s, struct open_chunk *c)
{
	struct chunk_work *w = xcalloc(1, sizeof(*w));
	uint64_t start = c->index * REPO_CHUNK_SIZE;

	w->s = s;
	w->c = c;
	w->repo = s->p.repo;
	w->fd = s->fd;
	w->index = c->index;
	w->buf = c->buf;
	w->len = c->len;
	w->sealed.fd = -1;
	c->buf = NULL;
	if (s->p.base != NULL && !repo_chunk_id_is_zero(s->p.base[c->index])) {
		w->has_base = 1;
		memcpy(w->base, s->p.base[c->index], REPO_ID_LEN);
		areas_in(s, start, start + c->len, &w->covered, &w->ncovered);
	}
	s->refs++;
	c->work = work_submit(seal_chunk, chunk_sealed, seal_release, w);
}

/* The open chunk index, made if need be: the buffer *adopt (then set
 * to NULL), which holds exactly the chunk, else zeros to fill. */
static struct open_chunk *
chunk_get(struct bak_sink *s, uint64_t index, void **adopt)
{
	struct open_chunk *c;
	uint64_t start = index * REPO_CHUNK_SIZE;

	LIST_FOREACH(c, &s->chunks, link)
		if (c->index == index)
			return c;
	c = xcalloc(1, sizeof(*c));
	c->index = index;
	c->len = repo_chunk_len(s->d.size, index);
	if (*adopt != NULL) {
		c->buf = *adopt;
		*adopt = NULL;
	} else {
		c->buf = repo_buf_alloc(s->p.repo, c->len);
		memset(c->buf, 0, c->len);
	}
	c->expect = areas_in(s, start, start + c->len, NULL, NULL);
	LIST_INSERT_HEAD(&s->chunks, c, link);
	return c;
}

/* A write, copied into its chunks; or, take, a repo_buf_alloc buffer
 * that becomes the chunk when the write is exactly one chunk not open
 * yet (else it is copied and freed). */
static struct disk_io *
sink_put_range(struct bak_sink *s, uint64_t off, size_t len, const void *buf, void *take, xfer_cb cb, void *arg)
{
	struct disk *d = &s->d;
	struct pending *w;
	uint64_t at = off, end = off + len;
	void *adopt;
	int whole;

	if (len == 0 || off > d->size || len > d->size - off) {
		repo_buf_free(s->p.repo, take);
		return NULL;
	}
	whole = take != NULL && off % REPO_CHUNK_SIZE == 0 && len == repo_chunk_len(d->size, off / REPO_CHUNK_SIZE);
	adopt = whole ? take : NULL;
	w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&s->waiting, w, link);
	while (s->fail == NULL && at < end) {
		uint64_t index = at / REPO_CHUNK_SIZE, cstart = index * REPO_CHUNK_SIZE;
		uint64_t cend = cstart + repo_chunk_len(d->size, index);
		uint64_t n = (end < cend ? end : cend) - at;
		struct open_chunk *c;

		if (!s->done[index]) {
			c = chunk_get(s, index, &adopt);
			if (c->work != NULL) {
				/* Written twice in one pass: the copier never does. */
				s->fail_st = XFER_FATAL;
				s->fail = xasprintf("chunk %llu written again after it was complete",
				    (unsigned long long)index);
				break;
			}
			if (c->buf != buf)
				memcpy(c->buf + (at - cstart), (const uint8_t *)buf + (at - off), (size_t)n);
			c->got += n;
			c->waiters = xreallocarray(c->waiters, c->nwaiters + 1, sizeof(*c->waiters));
			c->waiters[c->nwaiters++] = w;
			w->waiting++;
			if (c->got >= c->expect)
				submit(s, c);
		}
		at += n;
	}
	if (s->fail != NULL && w->st == XFER_OK) {
		w->st = s->fail_st;
		w->err = xstrdup(s->fail);
	}
	if (w->waiting == 0)
		make_ready(s, w);
	/* Not adopted (copied, or not needed): the write is done with it. */
	if (take != NULL && (!whole || adopt != NULL))
		repo_buf_free(s->p.repo, take);
	return (struct disk_io *)w;
}

static struct disk_io *
sink_write(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	return sink_put_range((struct bak_sink *)d, off, len, buf, NULL, cb, arg);
}

static struct disk_io *
sink_write_take(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	return sink_put_range((struct bak_sink *)d, off, len, buf, buf, cb, arg);
}

static void *
sink_buf_alloc(struct disk *d, size_t len)
{
	return repo_buf_alloc(((struct bak_sink *)d)->p.repo, len);
}

static void
sink_buf_free(struct disk *d, void *buf)
{
	repo_buf_free(((struct bak_sink *)d)->p.repo, buf);
}

static void
sink_cancel(struct disk_io *io)
{
	struct pending *w = (struct pending *)io;

	w->cancelled = 1;
	w->cb = NULL;
}

/* Inline (the copier's last checkpoint when a write failed): refused
 * while chunks wait for the device, which the loop cannot wait for. */
static int
sink_flush(struct disk *d)
{
	struct bak_sink *s = (struct bak_sink *)d;

	if (s->committing > 0 || s->fail_late) {
		errno = s->committing > 0 ? EAGAIN : EIO;
		return -1;
	}
	return fdatasync(s->fd);
}

/* The same on a device thread, once the chunks sealed before it are
 * filed: the partial index's fdatasync waits for a device busy with
 * chunk files, and on the loop it held the status socket (tools/bench
 * 9g).  The flush holds the sink and its own descriptor; the copy may
 * cancel it (then nobody is told). */
struct sink_sync {
	TAILQ_ENTRY(sink_sync) link;
	struct bak_sink *s;
	struct pending *w;       /* NULL once reported */
	uint64_t last;           /* the last chunk sealed before it */
	int fd;
	int err;
};

static void
sync_run(void *arg)
{
	struct sink_sync *y = arg;

	if (fdatasync(y->fd) != 0)
		y->err = errno;
}

static void
sync_done(void *arg)
{
	struct sink_sync *y = arg;
	struct bak_sink *s = y->s;
	struct pending *w = y->w;
	char *err = y->err != 0 ? xasprintf("%s: %s", s->path, strerror(y->err)) : NULL;
	enum xfer_status st = err != NULL ? XFER_TRANSIENT : XFER_OK;

	if (s->fail_late) {
		/* A chunk whose writes were reported could not be filed. */
		free(err);
		err = xstrdup(s->fail);
		st = s->fail_st;
	}
	y->w = NULL;
	if (!w->cancelled && w->cb != NULL)
		w->cb(w->arg, st, err);
	free(err);
	free(w);
}

static void
sync_release(void *arg)
{
	struct sink_sync *y = arg;

	free(y->w);
	close(y->fd);
	sink_unref(y->s);
	free(y);
}

/* No chunk sealed up to last waits for the device any more. */
static int
filed_up_to(const struct bak_sink *s, uint64_t last)
{
	const struct open_chunk *c;

	LIST_FOREACH(c, &s->chunks, link)
		if (c->seq != 0 && c->seq <= last)
			return 0;
	return 1;
}

static void
flushes_check(struct bak_sink *s)
{
	struct sink_sync *y, *next;

	for (y = TAILQ_FIRST(&s->flushes); y != NULL; y = next) {
		next = TAILQ_NEXT(y, link);
		if (!filed_up_to(s, y->last))
			continue;
		TAILQ_REMOVE(&s->flushes, y, link);
		work_submit_io(sync_run, sync_done, sync_release, y);
	}
}

static struct disk_io *
sink_flush_bg(struct disk *d, xfer_cb cb, void *arg)
{
	struct bak_sink *s = (struct bak_sink *)d;
	struct sink_sync *y;
	int fd;

	if (workers_count() == 0 || (fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return NULL;
	y = xcalloc(1, sizeof(*y));
	y->s = s;
	y->fd = fd;
	y->last = s->sealed;
	y->w = xcalloc(1, sizeof(*y->w));
	y->w->cb = cb;
	y->w->arg = arg;
	s->refs++;
	TAILQ_INSERT_TAIL(&s->flushes, y, link);
	flushes_check(s);
	return (struct disk_io *)y->w;
}

static void
sink_close(struct disk *d)
{
	struct bak_sink *s = (struct bak_sink *)d;
	struct open_chunk *c;
	struct pending *w;
	struct sink_sync *y;

	s->closed = 1;
	while ((y = TAILQ_FIRST(&s->flushes)) != NULL) {
		/* Never started: nobody is told. */
		TAILQ_REMOVE(&s->flushes, y, link);
		sync_release(y);
	}
	while ((c = LIST_FIRST(&s->chunks)) != NULL) {
		/* Its filing goes on or not; nobody waits for it. */
		work_cancel(c->work);
		chunk_free(s, c);
	}
	while ((w = TAILQ_FIRST(&s->waiting)) != NULL) {
		TAILQ_REMOVE(&s->waiting, w, link);
		free(w->err);
		free(w);
	}
	sink_unref(s);
}

static const struct disk_ops sink_ops = {
	.name = "repository",
	.write = sink_write,
	.write_take = sink_write_take,
	.buf_alloc = sink_buf_alloc,
	.buf_free = sink_buf_free,
	.cancel = sink_cancel,
	.flush = sink_flush,
	.flush_bg = sink_flush_bg,
	.close = sink_close,
};

struct disk *
bak_sink_open(const struct bak_sink_params *p, char **err)
{
	struct bak_sink *s;
	int fd;

	if ((fd = open(p->ids_path, O_RDWR | O_CLOEXEC)) < 0) {
		*err = xasprintf("partial index %s: cannot open it: %s", p->ids_path, strerror(errno));
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->d.ops = &sink_ops;
	s->d.size = p->capacity;
	s->p = *p;
	s->fd = fd;
	s->path = xstrdup(p->ids_path);
	s->p.ids_path = s->path;
	s->nchunks = repo_disk_chunks(p->capacity);
	s->done = xcalloc(s->nchunks ? s->nchunks : 1, 1);
	if (p->done != NULL)
		memcpy(s->done, p->done, s->nchunks);
	s->refs = 1;
	LIST_INIT(&s->chunks);
	TAILQ_INIT(&s->ready);
	TAILQ_INIT(&s->waiting);
	TAILQ_INIT(&s->flushes);
	s->ev = event_new(loop_base(), -1, 0, ready_cb, s);
	return &s->d;
}
