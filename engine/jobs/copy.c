#include "engine/jobs/copy.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops.h"
#include "engine/bw.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define COPY_PAUSE_MAX_S 60.0
/* Requests in flight at most, however small: enough to keep a pipe full
 * of small changed areas. */
#define COPY_MAX_REQUESTS 64

struct chunk {
	struct copy *c;
	uint64_t off;           /* where the request begins */
	size_t len;             /* bytes it reads (of all its ranges) */
	/* A vectored request: its ranges (nranges > 1), possibly from
	 * several areas. */
	struct disk_range ranges[DISK_MAX_RANGES];
	size_t nranges;
	void *buf;
	struct disk_io *io;
	int busy;       /* reading or writing */
	int writing;
};

struct copy {
	struct copy_params p;
	struct chunk *chunks;
	int nslots;
	uint64_t budget;        /* bytes that may be in flight */
	uint64_t in_flight;     /* bytes in flight now (with hold: read requests owed by the source) */
	uint64_t held;          /* with hold: bytes read, not yet written */
	size_t area;            /* next area to issue from */
	uint64_t cursor;        /* next offset to issue */
	uint64_t copied;
	uint64_t checkpoint;
	double last_checkpoint;
	struct disk_io *flush;  /* the destination's flush on a worker */
	uint64_t flush_low;     /* the checkpoint it makes */
	struct event *timer;    /* pacing / pause */
	int waiting;            /* the timer is armed */
	int finished;
	int paused;
	int stream;             /* ranges go from source to destination without a buffer */
	int vec;                /* small areas share a request (read_to_v) */
};

uint64_t
copy_bytes_from(const struct vs_extent *areas, size_t n, uint64_t offset)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t s = areas[i].start, e = areas[i].start + areas[i].length;

		if (e <= offset)
			continue;
		total += e - (s > offset ? s : offset);
	}
	return total;
}

static void copy_pump(struct copy *c);

static void
copy_finish(struct copy *c, enum xfer_status st, const char *err)
{
	void (*done)(void *, enum xfer_status, const char *) = c->p.done;
	void *arg = c->p.arg;

	c->finished = 1;
	copy_cancel(c);
	done(arg, st, err);
}

/* The lowest offset not yet safely written: the earliest chunk still in
 * flight, or the issue cursor. */
static uint64_t
copy_low_water(const struct copy *c)
{
	uint64_t low = c->cursor;
	int i;

	for (i = 0; i < c->nslots; i++)
		if (c->chunks[i].busy && c->chunks[i].off < low)
			low = c->chunks[i].off;
	return low;
}

static void
copy_flushed(void *arg, enum xfer_status st, const char *err)
{
	struct copy *c = arg;

	c->flush = NULL;
	if (st != XFER_OK) {
		copy_finish(c, st, err != NULL ? err : "cannot flush the copied data to stable storage");
		return;
	}
	c->checkpoint = c->flush_low;
	c->last_checkpoint = now_mono();
	c->p.progress(c->p.arg, c->copied, c->checkpoint, c->paused);
	/* At the end the copy waited for this flush. */
	if (c->area >= c->p.nareas)
		copy_pump(c);
}

/* A checkpoint promises the bytes below it survive a crash: the bytes
 * below the low water are flushed, then it moves there.  The flush runs
 * on a worker where the destination can (a disk's sync takes a second
 * and more while it is busy, and the loop must not wait): the copy goes
 * on and copy_flushed moves the checkpoint; one at a time.  Returns -1
 * when the copy ended (and c is gone). */
static int
copy_checkpoint(struct copy *c)
{
	const struct disk_ops *o = c->p.dst->ops;
	uint64_t low = copy_low_water(c);

	if (c->flush != NULL)
		return 0;
	c->last_checkpoint = now_mono();
	if (low > c->checkpoint && o->flush_bg != NULL &&
	    (c->flush = o->flush_bg(c->p.dst, copy_flushed, c)) != NULL) {
		c->flush_low = low;
		return 0;
	}
	if (low > c->checkpoint && o->flush != NULL && o->flush(c->p.dst) != 0) {
		copy_finish(c, XFER_TRANSIENT, "cannot flush the copied data to stable storage");
		return -1;
	}
	c->checkpoint = low;
	return 0;
}

/* Returns -1 when the copy ended (and c is gone). */
static int
copy_report(struct copy *c, int force)
{
	if ((force || now_mono() - c->last_checkpoint >= c->p.checkpoint_s) && copy_checkpoint(c) != 0)
		return -1;
	c->p.progress(c->p.arg, c->copied, c->checkpoint, c->paused);
	return 0;
}

/* A request failed (its chunk still counts as busy).  What is already
 * written below the lowest chunk in flight is flushed and recorded as a
 * checkpoint first, so the next attempt (after a full temp_dir is freed,
 * an outage ends, a restart) resumes right there and not at the last
 * periodic checkpoint.  A flush that fails records nothing. */
static void
copy_fail(struct copy *c, enum xfer_status st, const char *err)
{
	/* Inline: the copy ends here, and a flush on a worker may still run
	 * (it is cancelled with the copy; this one covers its bytes too). */
	uint64_t low = copy_low_water(c);

	if (low > c->checkpoint && (c->p.dst->ops->flush == NULL || c->p.dst->ops->flush(c->p.dst) == 0)) {
		c->checkpoint = low;
		c->last_checkpoint = now_mono();
		c->p.progress(c->p.arg, c->copied, c->checkpoint, c->paused);
	}
	copy_finish(c, st, err);
}

/* With hold, a request's bytes move from in_flight to held once read
 * (a streamed request is written as it is read: nothing waits). */
static int
keeps(const struct copy *c)
{
	return c->p.hold > 0 && !c->stream;
}

static void
chunk_written(void *arg, enum xfer_status st, const char *err)
{
	struct chunk *k = arg;
	struct copy *c = k->c;

	k->io = NULL;
	if (st != XFER_OK) {
		copy_fail(c, st, err);
		return;
	}
	k->busy = k->writing = 0;
	if (keeps(c))
		c->held -= k->len;
	else
		c->in_flight -= k->len;
	disk_buf_free(c->p.dst, k->buf);
	k->buf = NULL;
	c->copied += k->len;
	if (copy_report(c, 0) == 0)
		copy_pump(c);
}

static void
chunk_read(void *arg, enum xfer_status st, const char *err)
{
	struct chunk *k = arg;
	struct copy *c = k->c;

	if (c->stream) {
		/* Streamed: the range is written already. */
		chunk_written(arg, st, err);
		return;
	}
	k->io = NULL;
	if (st != XFER_OK) {
		copy_fail(c, st, err);
		return;
	}
	k->writing = 1;
	if (keeps(c)) {
		/* The source owes it nothing more: the host's share is free
		 * for the next read while the destination keeps this one. */
		c->in_flight -= k->len;
		c->held += k->len;
	}
	k->io = disk_write_buf(c->p.dst, k->off, k->len, &k->buf, chunk_written, k);
	if (k->io == NULL) {
		copy_fail(c, XFER_FATAL, "the destination refused a write inside the disk");
		return;
	}
	if (keeps(c))
		copy_pump(c);
}

static void
copy_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct copy *c = arg;

	c->waiting = 0;
	copy_pump(c);
}

static void
copy_wait(struct copy *c, double seconds)
{
	struct timeval tv;

	if (c->waiting)
		return;
	if (seconds > COPY_PAUSE_MAX_S)
		seconds = COPY_PAUSE_MAX_S;
	tv.tv_sec = (long)seconds;
	tv.tv_usec = (long)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(c->timer, &tv);
	c->waiting = 1;
}

/* The next request into k: from the cursor, at most a chunk; with
 * vectored reads, the following areas too while they fit.  Returns 0
 * when nothing is left; *cursor and *area are where the next one would
 * begin. */
static int
copy_plan(struct copy *c, struct chunk *k, uint64_t *cursor, size_t *area)
{
	uint64_t at = c->cursor;
	size_t a = c->area, len = 0;

	k->nranges = 0;
	for (;;) {
		uint64_t start, end, n;

		while (a < c->p.nareas && at >= c->p.areas[a].start + c->p.areas[a].length)
			a++;
		if (a >= c->p.nareas || len == c->p.chunk ||
		    k->nranges == (c->vec && !c->p.src->one_range ? DISK_MAX_RANGES : 1))
			break;
		start = c->p.areas[a].start;
		end = start + c->p.areas[a].length;
		if (at < start)
			at = start;
		n = end - at < c->p.chunk - len ? end - at : c->p.chunk - len;
		k->ranges[k->nranges].off = at;
		k->ranges[k->nranges].len = n;
		k->nranges++;
		len += (size_t)n;
		at += n;
	}
	if (k->nranges == 0)
		return 0;
	k->off = k->ranges[0].off;
	k->len = len;
	*cursor = at;
	*area = a;
	return 1;
}

/* Issue reads while there is room, bandwidth allowing. */
static void
copy_pump(struct copy *c)
{
	int i, busy = 0;

	for (i = 0; i < c->nslots; i++) {
		struct chunk *k = &c->chunks[i];
		uint64_t limit, next;
		size_t next_area;
		double wait;

		if (k->busy) {
			busy++;
			continue;
		}
		if (!copy_plan(c, k, &next, &next_area)) {
			c->area = c->p.nareas;
			break;
		}
		/* Stay within the byte budget (one request always may go), and
		 * what the copy keeps within hold. */
		if (c->in_flight > 0 && c->in_flight + k->len > c->budget)
			break;
		if (c->p.hold > 0 && c->in_flight + c->held > 0 && c->in_flight + c->held + k->len > c->p.hold)
			break;
		if (c->p.bucket != NULL && c->p.windows != NULL) {
			size_t nw = 0;
			const struct cfg_window *w = c->p.windows(c->p.arg, &nw);

			limit = bw_limit_at(w, nw, time(NULL));
			wait = bw_take(c->p.bucket, limit, k->len, now_mono());
			if (wait < 0) {
				/* Limit 0: paused until the window ends, progress kept. */
				if (!c->paused) {
					c->paused = 1;
					if (copy_report(c, 1) != 0)
						return;
				}
				copy_wait(c, bw_next_change(w, nw, time(NULL)));
				return;
			}
			if (wait > 0) {
				copy_wait(c, wait);
				break;
			}
		}
		if (c->paused) {
			c->paused = 0;
			if (copy_report(c, 1) != 0)
				return;
		}
		c->cursor = next;
		c->area = next_area;
		k->busy = 1;
		k->writing = 0;
		c->in_flight += k->len;
		busy++;
		if (k->nranges > 1) {
			k->io = disk_read_to_v(c->p.src, k->ranges, k->nranges, c->p.dst, chunk_read, k);
		} else if (c->stream) {
			k->io = disk_read_to(c->p.src, k->off, k->len, c->p.dst, chunk_read, k);
		} else {
			k->buf = disk_buf_alloc(c->p.dst, k->len);
			k->io = disk_read(c->p.src, k->off, k->len, k->buf, chunk_read, k);
		}
		if (k->io == NULL) {
			copy_fail(c, XFER_FATAL, "the source refused a read inside the disk");
			return;
		}
	}
	/* Done only when nothing is left to issue and no chunk is in flight
	 * (the loop above may stop before it has seen every slot). */
	for (i = 0, busy = 0; i < c->nslots; i++)
		busy += c->chunks[i].busy;
	if (busy == 0 && c->area >= c->p.nareas && !c->waiting) {
		/* Finished once the last checkpoint is the end (copy_flushed
		 * comes back here while a flush runs). */
		if (copy_report(c, 1) == 0 && c->flush == NULL)
			copy_finish(c, XFER_OK, NULL);
	}
}

struct copy *
copy_start(const struct copy_params *p)
{
	struct copy *c = xcalloc(1, sizeof(*c));
	int i;

	c->p = *p;
	if (c->p.inflight < 1)
		c->p.inflight = 1;
	if (c->p.chunk < 4096)
		c->p.chunk = 4096;
	if (c->p.checkpoint_s <= 0)
		c->p.checkpoint_s = 2.0;
	c->budget = (uint64_t)c->p.inflight * c->p.chunk;
	c->nslots = COPY_MAX_REQUESTS > c->p.inflight ? COPY_MAX_REQUESTS : c->p.inflight;
	c->chunks = xcalloc((size_t)c->nslots, sizeof(*c->chunks));
	for (i = 0; i < c->nslots; i++)
		c->chunks[i].c = c;
	c->stream = disk_can_stream(c->p.src, c->p.dst);
	c->vec = c->stream && c->p.src->ops->read_to_v != NULL;
	c->cursor = p->resume;
	c->checkpoint = p->resume;
	c->last_checkpoint = now_mono();
	c->timer = evtimer_new(loop_base(), copy_timer_cb, c);
	/* Start from the loop, so done never runs inside copy_start. */
	copy_wait(c, 0);
	return c;
}

void
copy_wake(struct copy *c)
{
	if (c == NULL || !c->waiting)
		return;
	evtimer_del(c->timer);
	c->waiting = 0;
	copy_wait(c, 0);
}

void
copy_cancel(struct copy *c)
{
	int i;

	if (c == NULL)
		return;
	if (c->flush != NULL)
		disk_io_cancel(c->p.dst, c->flush);
	for (i = 0; i < c->nslots; i++) {
		struct chunk *k = &c->chunks[i];

		if (k->io != NULL)
			disk_io_cancel(k->writing ? c->p.dst : c->p.src, k->io);
		disk_buf_free(c->p.dst, k->buf);
	}
	free(c->chunks);
	event_free(c->timer);
	free(c);
}
