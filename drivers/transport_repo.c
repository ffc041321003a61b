/* A restore point's disk as a read-only transport: the chunks of its
 * index read from the repository (decrypted, decompressed, checked
 * against their ids) on the worker pool, never on the loop; the zero
 * chunk is zeros.  What a restore copies from, through copy.c like any
 * source disk. */
#include "drivers/transport.h"

#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"

struct repo_disk_t {
	struct disk d;
	struct repo *r;
	uint64_t nchunks;
	uint8_t (*ids)[REPO_ID_LEN];
	struct disk_io *ios;        /* in flight */
};

/* What a worker reads is the io's own: the disk may be closed (a stop)
 * while a worker still reads for it. */
struct disk_io {
	struct repo_disk_t *rd;     /* the loop's only */
	struct disk_io *next, **prev;
	struct work *w;
	struct repo *r;             /* open until the daemon ends */
	uint64_t size;              /* the disk's */
	uint64_t first;             /* the chunk ids[0] is of */
	uint8_t (*ids)[REPO_ID_LEN]; /* the ids of the chunks the range spans */
	uint64_t off;
	size_t len;
	void *dst;                  /* the caller's buffer, filled on the loop */
	uint8_t *buf;               /* filled on a worker */
	char *err;
	xfer_cb cb;
	void *arg;
};

static void
io_unlink(struct disk_io *io)
{
	if (io->prev != NULL) {
		*io->prev = io->next;
		if (io->next != NULL)
			io->next->prev = io->prev;
	}
	io->prev = NULL;
}

static void
io_run(void *arg)
{
	struct disk_io *io = arg;
	uint64_t pos = io->off, end = io->off + io->len;
	uint8_t *chunk = NULL;

	while (pos < end) {
		uint64_t c = pos / REPO_CHUNK_SIZE, cstart = c * REPO_CHUNK_SIZE;
		size_t clen = (size_t)repo_chunk_len(io->size, c);
		size_t in = (size_t)(pos - cstart), n = clen - in;
		const uint8_t *id = io->ids[c - io->first];

		if (n > end - pos)
			n = (size_t)(end - pos);
		if (repo_chunk_id_is_zero(id)) {
			memset(io->buf + (pos - io->off), 0, n);
		} else {
			char *e = NULL;

			if (chunk == NULL)
				chunk = xmalloc(REPO_CHUNK_SIZE);
			if (repo_chunk_get(io->r, id, chunk, clen, &e) != 0) {
				io->err = xasprintf("chunk %llu at offset %llu: %s", (unsigned long long)c,
				    (unsigned long long)cstart, e);
				free(e);
				break;
			}
			memcpy(io->buf + (pos - io->off), chunk + in, n);
		}
		pos += n;
	}
	free(chunk);
}

static void
io_done(void *arg)
{
	struct disk_io *io = arg;

	io->w = NULL;
	io_unlink(io);
	if (io->err == NULL) {
		memcpy(io->dst, io->buf, io->len);
		io->rd->d.bytes_read += io->len;
	}
	/* A damaged or missing chunk is no outage: retrying cannot mend it. */
	io->cb(io->arg, io->err == NULL ? XFER_OK : XFER_FATAL, io->err);
}

static void
io_release(void *arg)
{
	struct disk_io *io = arg;

	io_unlink(io);
	free(io->ids);
	free(io->buf);
	free(io->err);
	free(io);
}

static struct disk_io *
rdisk_read(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	struct repo_disk_t *rd = (struct repo_disk_t *)d;
	struct disk_io *io;

	if (off > d->size || len > d->size - off)
		return NULL;
	io = xcalloc(1, sizeof(*io));
	io->rd = rd;
	io->r = rd->r;
	io->size = d->size;
	if (len > 0) {
		uint64_t last = (off + len - 1) / REPO_CHUNK_SIZE;

		io->first = off / REPO_CHUNK_SIZE;
		io->ids = xcalloc((size_t)(last - io->first + 1), REPO_ID_LEN);
		memcpy(io->ids, rd->ids[io->first], (size_t)(last - io->first + 1) * REPO_ID_LEN);
	}
	io->off = off;
	io->len = len;
	io->dst = buf;
	io->buf = xmalloc(len ? len : 1);
	io->cb = cb;
	io->arg = arg;
	io->next = rd->ios;
	if (rd->ios != NULL)
		rd->ios->prev = &io->next;
	io->prev = &rd->ios;
	rd->ios = io;
	io->w = work_submit(io_run, io_done, io_release, io);
	return io;
}

static void
rdisk_cancel(struct disk_io *io)
{
	if (io == NULL)
		return;
	io_unlink(io);
	/* Released (freed) by the pool once it is off every thread. */
	work_cancel(io->w);
}

static void
rdisk_close(struct disk *d)
{
	struct repo_disk_t *rd = (struct repo_disk_t *)d;

	while (rd->ios != NULL)
		rdisk_cancel(rd->ios);
	free(rd->ids);
	free(rd);
}

static const struct disk_ops repo_ops = {
	.name = "repository",
	.read = rdisk_read,
	.cancel = rdisk_cancel,
	.close = rdisk_close,
};

struct disk *
disk_open_repo(struct repo *r, const struct repo_disk *d)
{
	struct repo_disk_t *rd = xcalloc(1, sizeof(*rd));

	rd->d.ops = &repo_ops;
	rd->d.size = d->capacity;
	rd->r = r;
	rd->nchunks = d->nchunks;
	rd->ids = xcalloc(d->nchunks ? d->nchunks : 1, REPO_ID_LEN);
	memcpy(rd->ids, d->ids, d->nchunks * REPO_ID_LEN);
	return &rd->d;
}
