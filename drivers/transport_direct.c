/* The direct transport: a datastore mounted on the node, read and written
 * in place with pread/pwrite.  Completions are still delivered from the
 * loop so callers see one behaviour for every transport.  What waits for
 * the disk itself (fdatasync, starting write-back) runs on the worker
 * pool when there is one: a busy disk takes up to a second to sync,
 * and the loop serves the status socket and every other transfer
 * meanwhile. */
#define _GNU_SOURCE /* sync_file_range */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/transport.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"

struct disk_io {
	TAILQ_ENTRY(disk_io) link;
	struct direct_disk *d;
	struct event *ev;       /* a completion queued for the loop */
	struct work *work;      /* or a sync on a worker (bg_start) */
	enum xfer_status st;
	char *err;
	xfer_cb cb;
	void *arg;
};

struct direct_disk {
	struct disk base;
	int fd;
	char *path;
	uint64_t unkicked;      /* bytes put since write-back was last started */
	struct disk_io *kick;   /* write-back being started on a worker */
	TAILQ_HEAD(, disk_io) ios;
};

/* put starts the kernel's write-back after this many bytes, so that the
 * flush at a checkpoint waits for the last few megabytes rather than for
 * everything written in the window (while the loop waits).  At the same
 * time the pages whose write-back has ended are dropped from the page
 * cache (direct_drop). */
#define DIRECT_KICK_BYTES (8u << 20)

char *
disk_mount_path(const char *mount_root, const char *path)
{
	const char *p = path;

	if (mount_root == NULL || path == NULL || *path == '/' || *path == '\0')
		return NULL;
	/* Every component must be a plain name. */
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return NULL;
		p += n;
		if (*p == '/')
			p++;
	}
	return xasprintf("%s/%s", mount_root, path);
}

static void
io_free(struct disk_io *io)
{
	TAILQ_REMOVE(&io->d->ios, io, link);
	if (io->d->kick == io)
		io->d->kick = NULL;
	/* A sync already running finishes on its worker, with its own
	 * descriptor; its outcome is dropped. */
	work_cancel(io->work);
	if (io->ev != NULL)
		event_free(io->ev);
	free(io->err);
	free(io);
}

static void
io_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct disk_io *io = arg;
	xfer_cb cb = io->cb;
	void *cbarg = io->arg;
	enum xfer_status st = io->st;
	char *err = io->err;

	io->err = NULL;
	io_free(io);
	cb(cbarg, st, err);
	free(err);
}

static struct disk_io *
io_queue(struct direct_disk *d, enum xfer_status st, char *err, xfer_cb cb, void *arg)
{
	struct disk_io *io = xcalloc(1, sizeof(*io));
	struct timeval tv = { 0, 0 };

	io->d = d;
	io->st = st;
	io->err = err;
	io->cb = cb;
	io->arg = arg;
	io->ev = evtimer_new(loop_base(), io_deliver, io);
	TAILQ_INSERT_TAIL(&d->ios, io, link);
	evtimer_add(io->ev, &tv);
	return io;
}

/* Out of space or I/O errors on the mount may pass; a missing file will not. */
static enum xfer_status
direct_errno_status(int e)
{
	return (e == ENOSPC || e == EIO) ? XFER_TRANSIENT : XFER_FATAL;
}

static struct disk_io *
direct_read(struct disk *dk, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg)
{
	struct direct_disk *d = (struct direct_disk *)dk;
	size_t done = 0;

	if (len == 0 || off > dk->size || len > dk->size - off)
		return NULL;
	while (done < len) {
		ssize_t n = pread(d->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_queue(d, direct_errno_status(errno), xasprintf("%s: %s", d->path, strerror(errno)), cb, arg);
		if (n == 0) {
			/* Past the end of a shorter file: the rest is zeros. */
			memset((uint8_t *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	dk->bytes_read += len;
	return io_queue(d, XFER_OK, NULL, cb, arg);
}

/* Drop the file's clean pages from the page cache: what was written is
 * not read again by the copy, and a cache that grows with the disk costs
 * more per byte (docs/BENCHMARKS.md, 2026-11-23): each new page-cache page
 * is a page of memory the kernel has not used for a while, and on a guest
 * whose free memory goes back to the host (free page reporting) its first
 * write faults in the host.  Dropping keeps the cache at a few times
 * DIRECT_KICK_BYTES and its pages are reused while still backed.  Dirty
 * pages and pages under write-back are left alone by the kernel, so
 * nothing not yet on the disk is lost; a page written partly later is read
 * back first. */
static void
direct_drop(struct direct_disk *d)
{
	(void)posix_fadvise(d->fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* A sync on a worker: its own descriptor (a dup, so that the disk may be
 * closed meanwhile) and its outcome. */
struct bg_sync {
	int fd;
	int flush;              /* fdatasync; else only start write-back */
	int err;                /* errno of a failed fdatasync */
	struct disk_io *io;
};

static void
bg_run(void *arg)
{
	struct bg_sync *b = arg;

	if (b->flush) {
		if (fdatasync(b->fd) != 0)
			b->err = errno;
	} else {
		(void)sync_file_range(b->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	/* As direct_drop: pages whose write-back has ended leave the cache. */
	if (b->err == 0)
		(void)posix_fadvise(b->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static void
bg_done(void *arg)
{
	struct bg_sync *b = arg;
	struct disk_io *io = b->io;
	xfer_cb cb = io->cb;
	void *cbarg = io->arg;
	char *err = b->err != 0 ? xasprintf("%s: %s", io->d->path, strerror(b->err)) : NULL;

	io->work = NULL;
	io_free(io);
	if (cb != NULL)
		cb(cbarg, err != NULL ? XFER_TRANSIENT : XFER_OK, err);
	free(err);
}

static void
bg_release(void *arg)
{
	struct bg_sync *b = arg;

	close(b->fd);
	free(b);
}

/* Start a sync of d on the worker pool; cb (may be NULL) from the loop
 * when it ends.  NULL when there is no pool (unit tests, tools) or no
 * descriptor left: the caller syncs inline. */
static struct disk_io *
bg_start(struct direct_disk *d, int flush, xfer_cb cb, void *arg)
{
	struct bg_sync *b;
	struct disk_io *io;
	int fd;

	if (workers_count() == 0 || (fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return NULL;
	b = xcalloc(1, sizeof(*b));
	b->fd = fd;
	b->flush = flush;
	io = xcalloc(1, sizeof(*io));
	io->d = d;
	io->cb = cb;
	io->arg = arg;
	TAILQ_INSERT_TAIL(&d->ios, io, link);
	b->io = io;
	io->work = work_submit_io(bg_run, bg_done, bg_release, b);
	return io;
}

static enum xfer_status
direct_put(struct disk *dk, uint64_t off, const void *p, size_t n, char **err)
{
	struct direct_disk *d = (struct direct_disk *)dk;
	size_t done = 0;

	if (off > dk->size || n > dk->size - off) {
		*err = xasprintf("%s: write of %zu bytes at %llu is outside the disk", d->path, n, (unsigned long long)off);
		return XFER_FATAL;
	}
	while (done < n) {
		ssize_t w = pwrite(d->fd, (const uint8_t *)p + done, n - done, (off_t)(off + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*err = xasprintf("%s: %s", d->path, w < 0 ? strerror(errno) : "write made no progress");
			return w < 0 ? direct_errno_status(errno) : XFER_FATAL;
		}
		done += (size_t)w;
	}
	dk->bytes_written += n;
	d->unkicked += n;
	if (d->unkicked >= DIRECT_KICK_BYTES && d->kick == NULL) {
		/* Start write-back of what is dirty now, without waiting for
		 * it: durability still comes from flush (fdatasync).  Even
		 * that call waits while the disk's queue is full: on a worker
		 * (one at a time), inline only without one. */
		d->unkicked = 0;
		if ((d->kick = bg_start(d, 0, NULL, NULL)) == NULL) {
			(void)sync_file_range(d->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
			direct_drop(d);
		}
	}
	return XFER_OK;
}

static struct disk_io *
direct_write(struct disk *dk, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg)
{
	char *err = NULL;
	enum xfer_status st;

	if (len == 0 || off > dk->size || len > dk->size - off)
		return NULL;
	st = direct_put(dk, off, buf, len, &err);
	return io_queue((struct direct_disk *)dk, st, err, cb, arg);
}

static void
direct_cancel(struct disk_io *io)
{
	if (io != NULL)
		io_free(io);
}

static void
direct_close(struct disk *dk)
{
	struct direct_disk *d = (struct direct_disk *)dk;

	while (!TAILQ_EMPTY(&d->ios))
		io_free(TAILQ_FIRST(&d->ios));
	/* No sync here: what must survive a crash was flushed (flush) before
	 * a checkpoint claimed it; the rest is copied again. */
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(d);
}

static int
direct_flush(struct disk *dk)
{
	struct direct_disk *d = (struct direct_disk *)dk;

	if (fdatasync(d->fd) != 0)
		return -1;
	if (dk->bytes_written > 0)
		direct_drop(d);
	return 0;
}

static struct disk_io *
direct_flush_bg(struct disk *dk, xfer_cb cb, void *arg)
{
	return bg_start((struct direct_disk *)dk, 1, cb, arg);
}

static const struct disk_ops direct_ops = {
	.name = "direct",
	.read = direct_read,
	.write = direct_write,
	.cancel = direct_cancel,
	.flush = direct_flush,
	.flush_bg = direct_flush_bg,
	.close = direct_close,
	.put = direct_put,
};

/* Takes fd and path. */
static struct disk *
direct_new(int fd, char *path, uint64_t size)
{
	struct direct_disk *d = xcalloc(1, sizeof(*d));

	d->base.ops = &direct_ops;
	d->base.size = size;
	d->fd = fd;
	d->path = path;
	TAILQ_INIT(&d->ios);
	return &d->base;
}

struct disk *
disk_open_file(const char *file, uint64_t size, int create, char **err, int *errnum)
{
	struct stat sb;
	int fd;

	*err = NULL;
	*errnum = 0;
	fd = open(file, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		*errnum = errno;
		*err = xasprintf("%s: %s", file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	/* A new staging image is sparse: unwritten areas read as zeros. */
	if ((uint64_t)sb.st_size != size && ftruncate(fd, (off_t)size) != 0) {
		*errnum = errno;
		*err = xasprintf("%s: cannot size it to %llu bytes: %s", file, (unsigned long long)size, strerror(errno));
		close(fd);
		return NULL;
	}
	return direct_new(fd, xstrdup(file), size);
}

struct disk *
disk_open_device(const char *path, uint64_t size, char **err)
{
	struct stat sb;
	uint64_t have = 0;
	int fd;

	*err = NULL;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		*err = xasprintf("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (S_ISBLK(sb.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &have) != 0)
			have = 0;
	} else {
		have = (uint64_t)sb.st_size;
	}
	/* Never resized: a device smaller than the disk is the wrong one. */
	if (have < size) {
		*err = xasprintf("%s holds %llu bytes, the disk %llu", path, (unsigned long long)have,
		    (unsigned long long)size);
		close(fd);
		return NULL;
	}
	return direct_new(fd, xstrdup(path), size);
}

struct disk *
disk_open_direct(const char *mount_root, const char *path, uint64_t size, int writable, char **err)
{
	char *full = disk_mount_path(mount_root, path);
	int fd;

	*err = NULL;
	if (full == NULL) {
		*err = xasprintf("datastore path %s is not a plain relative path", path);
		return NULL;
	}
	fd = open(full, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		*err = xasprintf("%s: %s", full, strerror(errno));
		free(full);
		return NULL;
	}
	return direct_new(fd, full, size);
}
