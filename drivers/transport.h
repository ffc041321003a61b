/* Disk transports: how disk bytes move between a datastore and the
 * engine.  Two implementations behind one interface:
 *   https   /folder Range GETs into the caller's buffers (several in
 *           flight per disk), whole-file PUT streamed from a local file;
 *   direct  a datastore mounted on the node (datastore_mounts), read and
 *           written in place.
 * Further transports (NFC, VDDK) implement the same operations. */
#ifndef VMFERRY_TRANSPORT_H
#define VMFERRY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

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

struct disk_ops {
	const char *name;
	struct disk_io *(*read)(struct disk *d, uint64_t off, size_t len, void *buf, xfer_cb cb, void *arg);
	struct disk_io *(*write)(struct disk *d, uint64_t off, size_t len, const void *buf, xfer_cb cb, void *arg);
	void (*cancel)(struct disk_io *io);
	/* Make written data durable; NULL for read-only transports. */
	int (*flush)(struct disk *d);
	void (*close)(struct disk *d);
};

struct disk {
	const struct disk_ops *ops;
	uint64_t size;
	uint64_t bytes_read;
	uint64_t bytes_written;
};

/* A datastore file over HTTPS.  Reads only: HTTPS cannot write in place. */
struct disk *disk_open_https(struct vs_client *c, const char *datacenter, const char *datastore,
    const char *path, uint64_t size);
/* A file under a mounted datastore (or a staging image under temp_dir).
 * create: make it (sparse, of the given size) if it does not exist.
 * *err (malloc'd) on failure; *errnum tells why (ENOSPC, EACCES, ...). */
struct disk *disk_open_direct(const char *mount_root, const char *path, uint64_t size, int writable, char **err);
struct disk *disk_open_file(const char *file, uint64_t size, int create, char **err, int *errnum);

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
void disk_upload_cancel(struct disk_io *io);

/* Resolve a datastore path under a mount root, refusing anything that
 * would leave it ("..", absolute paths).  Returns malloc'd path or NULL. */
char *disk_mount_path(const char *mount_root, const char *path);

#endif
