/* Disk transports: how disk bytes move between a datastore and the
 * engine.  Two implementations behind one interface:
 *   https   /folder Range GETs into the caller's buffers or streamed
 *           into a writable disk as they arrive (several in flight per
 *           disk), whole-file PUT streamed from a local file;
 *   direct  a datastore mounted on the node (datastore_mounts), read and
 *           written in place.
 * Further transports (NFC, VDDK) implement the same operations. */
#ifndef VMFERRY_TRANSPORT_H
#define VMFERRY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "engine/core/util.h"

struct vs_client;
struct disk;
struct disk_io;

enum xfer_status {
	XFER_OK,
	XFER_TRANSIENT, /* the peer stayed unreachable for the whole retry window */
	XFER_FATAL,     /* a refusal that retrying will not fix (missing file, bad range) */
};

/* Called once per request, from the loop. */
typedef void (*xfer_cb)(void *arg, enum xfer_status st, const char *error);

/* One range of a vectored read. */
struct disk_range {
	uint64_t off;
	uint64_t len;
};

struct disk_ops {
	const char *name;
	struct disk_io *(*read)(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg);
	struct disk_io *(*write)(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg);
	void (*cancel)(struct disk_io *io);
	/* Make written data durable; NULL for read-only transports. */
	int (*flush)(struct disk *d);
	/* The same on a worker thread, the loop going on: cb once everything
	 * written before the call is durable (XFER_OK) or not; cancelled
	 * with cancel.  NULL (the op, or its answer when no worker pool
	 * runs): use flush. */
	struct disk_io *(*flush_bg)(struct disk *d, xfer_cb cb, void *arg);
	void (*close)(struct disk *d);
	/* Read a range and hand it to dst's put piece by piece as it
	 * arrives, with no buffer for the whole range (the data is written
	 * while it is still in the CPU's cache).  NULL when the transport
	 * has no such path (the caller reads into a buffer, then writes). */
	struct disk_io *(*read_to)(struct disk *d, uint64_t off, size_t len, struct disk *dst, xfer_cb cb, void *arg);
	/* Write now, before returning: XFER_OK, or a status and *err
	 * (malloc'd).  NULL for transports that cannot write in place. */
	enum xfer_status (*put)(struct disk *d, uint64_t off, const void *p, size_t n, char **err);
	/* read_to for several ranges (sorted, non-overlapping, at most
	 * DISK_MAX_RANGES) at once: one request where the datastore answers
	 * several ranges together, one per range where it does not.  The
	 * ranges are copied.  NULL when the transport has no such path. */
	struct disk_io *(*read_to_v)(struct disk *d, const struct disk_range *r, size_t n, struct disk *dst, xfer_cb cb,
	    void *arg);
	/* A destination that keeps the buffers it is given (the backup
	 * repository's sink: no copy): buf_alloc makes one for a read of
	 * len bytes meant for it, write_take writes one and owns it from
	 * then on (even when it refuses), buf_free frees one that was never
	 * written.  NULL for the others: malloc, write, free. */
	void *(*buf_alloc)(struct disk *d, size_t len);
	void (*buf_free)(struct disk *d, void *buf);
	struct disk_io *(*write_take)(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg);
};

/* Ranges per vectored read at most: servers limit a request's ranges
 * (Apache's MaxRanges is 200) and the header's length. */
#define DISK_MAX_RANGES 32

struct disk {
	const struct disk_ops *ops;
	uint64_t size;
	uint64_t bytes_read;
	uint64_t bytes_written;
	/* The transport learned that this disk's server answers one range
	 * per request: vectored reads gain nothing (and would run their
	 * ranges one after another). */
	int one_range;
};

/* A datastore file over HTTPS.  Reads only: HTTPS cannot write in place. */
struct disk *disk_open_https(struct vs_client *c, const char *datacenter, const char *datastore,
    const char *path, uint64_t size);
/* A file under a mounted datastore (or a staging image under temp_dir).
 * create: make it (sparse, of the given size) if it does not exist.
 * *err (malloc'd) on failure; *errnum tells why (ENOSPC, EACCES, ...). */
struct disk *disk_open_direct(const char *mount_root, const char *path, uint64_t size, int writable, char **err);
struct disk *disk_open_file(const char *file, uint64_t size, int create, char **err, int *errnum);
/* A restore point's disk d (its ids are copied) in repository r, read
 * only: chunks read on the worker pool (restore, drivers/transport_repo.c). */
struct repo;
struct repo_disk;
struct disk *disk_open_repo(struct repo *r, const struct repo_disk *d);
/* A block device (a disk attached to the appliance VM, hot-add) of at
 * least size bytes, written in place; never resized. */
struct disk *disk_open_device(const char *path, uint64_t size, char **err);

static inline struct disk_io *
disk_read(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	return d->ops->read(d, off, len, buf, cb, arg);
}

/* NULL when the transport cannot write (https). */
static inline struct disk_io *
disk_write(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	return d->ops->write != NULL ? d->ops->write(d, off, len, buf, cb, arg) : NULL;
}

/* A buffer for len bytes that will be written to d (see buf_alloc). */
static inline void *
disk_buf_alloc(struct disk *d, size_t len)
{
	return d->ops->buf_alloc != NULL ? d->ops->buf_alloc(d, len) : xmalloc(len);
}

static inline void
disk_buf_free(struct disk *d, void *buf)
{
	if (d->ops->buf_free != NULL)
		d->ops->buf_free(d, buf);
	else
		free(buf);
}

/* disk_write of a disk_buf_alloc buffer, which is d's or still the
 * caller's after this (then *buf is left alone, else set to NULL). */
static inline struct disk_io *
disk_write_buf(struct disk *d, uint64_t off, size_t len, void **buf, xfer_cb cb, void *arg)
{
	void *b = *buf;

	if (d->ops->write_take == NULL)
		return disk_write(d, off, len, b, cb, arg);
	*buf = NULL;
	return d->ops->write_take(d, off, len, b, cb, arg);
}

/* Whether a range can go from src to dst without a buffer (read_to). */
static inline int
disk_can_stream(const struct disk *src, const struct disk *dst)
{
	return src->ops->read_to != NULL && dst->ops->put != NULL;
}

/* Only when disk_can_stream(d, dst); NULL if the range is outside d. */
static inline struct disk_io *
disk_read_to(struct disk *d, uint64_t off, size_t len, struct disk *dst, xfer_cb cb, void *arg)
{
	return d->ops->read_to(d, off, len, dst, cb, arg);
}

/* Only when disk_can_stream(d, dst) and d->ops->read_to_v != NULL. */
static inline struct disk_io *
disk_read_to_v(struct disk *d, const struct disk_range *r, size_t n, struct disk *dst, xfer_cb cb, void *arg)
{
	return d->ops->read_to_v(d, r, n, dst, cb, arg);
}

/* Stop a request: its callback is not called. */
static inline void
disk_io_cancel(struct disk *d, struct disk_io *io)
{
	d->ops->cancel(io);
}

/* Cancels whatever is still in flight. */
static inline void
disk_close(struct disk *d)
{
	if (d != NULL)
		d->ops->close(d);
}

/* Upload a local file as a whole datastore file over HTTPS (PUT). */
struct disk_io *disk_upload_https(struct vs_client *c, const char *datacenter, const char *datastore,
    const char *path, int fd, uint64_t len, xfer_cb cb, void *arg);
/* The same with a body made as it goes (a delta built from a local
 * image): read gives the next bytes (0 at the end, -1 on a failure),
 * rewind starts it over (each attempt of the PUT sends it whole). */
struct upload_source {
	ssize_t (*read)(void *arg, char *buf, size_t n);
	void (*rewind)(void *arg);
	void *arg;
};
struct disk_io *disk_upload_https_from(struct vs_client *c, const char *datacenter, const char *datastore,
    const char *path, const struct upload_source *src, uint64_t len, xfer_cb cb, void *arg);
void disk_upload_cancel(struct disk_io *io);

/* Resolve a datastore path under a mount root, refusing anything that
 * would leave it ("..", absolute paths).  Returns malloc'd path or NULL. */
char *disk_mount_path(const char *mount_root, const char *path);

#endif
