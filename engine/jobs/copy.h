/* Copying the areas of one disk from a source transport to a destination
 * transport: transfer_buffer-sized chunks, several in flight, paced by the
 * rule's bandwidth bucket, with a checkpoint below which everything is
 * copied and flushed to stable storage.  When the source can stream into
 * the destination (disk_can_stream: HTTPS into a file), each chunk is
 * written as it arrives and no chunk-sized buffer exists. */
#ifndef VMFERRY_COPY_H
#define VMFERRY_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "drivers/transport.h"

struct copy;
struct bw_bucket;
struct cfg_window;
struct vs_extent;

struct copy_params {
	struct disk *src;
	struct disk *dst;                /* writable: a staging image or the target disk in place */
	const struct vs_extent *areas;   /* sorted, non-overlapping */
	size_t nareas;
	uint64_t resume;                 /* areas below this offset are already copied */
	size_t chunk;                    /* bytes per request at most (transfer_buffer) */
	int inflight;                    /* the budget: inflight × chunk bytes in flight at most;
	                                    smaller requests (small changed areas) go more at once */
	/* 0: the budget covers a request from its read to its write.  Else
	 * the budget covers only the reads the source still owes, and hold
	 * bounds every byte the copy keeps, read or being read: for a
	 * destination that keeps a write until it can use it (the backup
	 * sink, until a repository chunk is complete and sealed).  What
	 * the host holds stays within its share of host_buffer_cap (SPEC
	 * §4); the waiting is the appliance's memory. */
	size_t hold;
	struct bw_bucket *bucket;        /* the rule's; NULL = no limit */
	/* The rule's bandwidth windows as configured now (the configuration
	 * can be reloaded under a running copy). */
	const struct cfg_window *(*windows)(void *arg, size_t *n);
	double checkpoint_s;             /* flush and report a checkpoint at most this often */
	/* Progress: bytes copied in this run, and the checkpoint (all below
	 * it is on stable storage). */
	void (*progress)(void *arg, uint64_t copied, uint64_t checkpoint, int paused);
	/* XFER_OK only once everything copied is flushed (the last
	 * checkpoint is the end of the areas). */
	void (*done)(void *arg, enum xfer_status st, const char *error);
	void *arg;
};

struct copy *copy_start(const struct copy_params *p);
void copy_cancel(struct copy *c);
/* The windows may have changed: a paused or pacing copy looks again now. */
void copy_wake(struct copy *c);

/* Bytes of the areas at or above offset. */
uint64_t copy_bytes_from(const struct vs_extent *areas, size_t n, uint64_t offset);

#endif
