/* Snapshot deltas in VMware's vmfsSparse format: the "COWD" ESX sparse
 * extent (VMware's Virtual Disk Format technote; qemu's block/vmdk.c and
 * libvmdk read it).  This file is the only one that knows its layout.
 *
 * When vSphere takes a snapshot on an NFS or VMFS5 datastore it makes an
 * empty delta: a 2048-byte header, then a grain directory (GD) of zeros.
 * The engine fetches that header, then puts in place of the empty delta a
 * delta that holds exactly the areas it wants written:
 *
 *   header (as the platform wrote it; only freeSector and uncleanShutdown
 *   change) | GD | the grain tables (GT) that are needed | the grains
 *
 * Grains follow the disk's order, a GT maps 4096 grains, every number in
 * the file is a 32-bit sector (so a COWD disk holds at most 2^32 - 1
 * sectors, 2 TiB - 512 bytes).  The file's size follows the areas, never
 * the disk, and freeSector is the first sector after the last grain: a VM
 * later running on the delta appends its own grains there.
 *
 * No network here: the file comes out as a stream of bytes in order (for
 * an HTTPS PUT body or a file), its grains read from callbacks. */
#ifndef VMFERRY_COWD_H
#define VMFERRY_COWD_H

#include <stddef.h>
#include <stdint.h>

struct vs_extent;

#define COWD_HEADER_SIZE 2048
/* numSectors is 32 bits. */
#define COWD_MAX_CAPACITY ((uint64_t)UINT32_MAX * 512)

/* The header of a COWD extent (little-endian on disk).  raw keeps all
 * 2048 bytes as read, so that the fields the engine does not interpret
 * (parent file name, name, description, reserved bytes, padding) are
 * written back as the platform wrote them. */
struct cowd_header {
	uint32_t version;          /* 1 */
	uint32_t flags;
	uint32_t sectors;          /* numSectors: the disk's capacity */
	uint32_t grain_sectors;    /* grainSize (ESX: 1) */
	uint32_t gd_offset;        /* sector of the grain directory (4) */
	uint32_t gd_entries;       /* numGDEntries: one per 4096 grains */
	uint32_t free_sector;      /* freeSector: where the next grain goes */
	uint32_t parent_generation;
	uint32_t generation;
	uint32_t saved_generation;
	uint32_t unclean_shutdown; /* non-zero: the file was not closed */
	uint8_t raw[COWD_HEADER_SIZE];
};

/* Parse the first len bytes of a COWD extent (at least the 2048-byte
 * header).  Every field the writer relies on is checked against the
 * others, so that no header can make a delta built on it read, allocate
 * or write more than its areas need.  0, or -1 with *err (malloc'd)
 * naming the field. */
int cowd_header_parse(const void *buf, size_t len, struct cowd_header *h, char **err);

/* The disk's capacity fits a COWD extent: a whole number of sectors, at
 * most COWD_MAX_CAPACITY.  0, or -1 with *err saying why not. */
int cowd_capacity_check(uint64_t bytes, char **err);

/* Whether datastore ds (name, its summary.type and a VMFS volume's major
 * version, 0 when unknown) keeps snapshot deltas this module can write,
 * as far as its type tells before any snapshot: VMFS 6 and later make
 * seSparse deltas.  0 (vmfsSparse, or not known: the first delta's
 * descriptor says, cowd_delta_check), or -1 with *err (malloc'd) naming
 * the datastore and why. */
int cowd_datastore_check(const char *ds, const char *type, int vmfs_major, char **err);

/* Whether a snapshot delta's descriptor (text, len) can be written by
 * this module for a disk of capacity bytes: createType vmfsSparse, one
 * VMFSSPARSE extent of exactly the disk's sectors, a parent hint and
 * parentCID, a capacity within the COWD limit.  0 with *file (malloc'd,
 * relative to the descriptor's directory), or -1 with *err naming why
 * (seSparse on VMFS6, a disk over 2 TiB, ...) for the caller's warning. */
int cowd_delta_check(const char *text, size_t len, uint64_t capacity, char **file, char **err);

/* Read len bytes of a disk at byte offset off into buf: 0, or -1 with
 * *err (malloc'd). */
typedef int (*cowd_read_fn)(void *arg, uint64_t off, void *buf, size_t len, char **err);

struct cowd_stream;

/* A delta over the empty delta whose header is h, holding areas[0..n)
 * (byte ranges, sorted, non-overlapping, non-empty, within the disk; any
 * alignment; copied).
 *
 * source reads the areas' new bytes: every call lies within one area.
 * parent reads the layer below the delta (what the guest saw when the
 * snapshot was made) for the bytes of a grain that no area covers: a
 * grain is written whole, so an area that begins or ends inside a grain
 * takes the rest of it from there.  For the first full copy over the
 * empty thin base that CreateVM made those bytes are zeros: pass NULL.
 *
 * NULL with *err when the areas are malformed or the delta would not fit
 * a COWD file's 32-bit sectors. */
struct cowd_stream *cowd_stream_new(const struct cowd_header *h, const struct vs_extent *areas, size_t n,
    cowd_read_fn source, void *source_arg, cowd_read_fn parent, void *parent_arg, char **err);
/* The delta file's size in bytes: its freeSector times 512. */
uint64_t cowd_stream_size(const struct cowd_stream *s);
/* The next bytes of the file into buf (at most len): 0 with *got > 0,
 * 0 with *got == 0 at the end, or -1 with *err when a read callback
 * failed (the stream then stays failed until rewound). */
int cowd_stream_read(struct cowd_stream *s, void *buf, size_t len, size_t *got, char **err);
/* Back to the first byte (a PUT that has to be sent again). */
void cowd_stream_rewind(struct cowd_stream *s);
void cowd_stream_free(struct cowd_stream *s);

/* The whole delta into fd from offset 0, then the file cut to the
 * delta's size (a regular file) and fsync'd.  A crash-safe replacement
 * writes a temporary beside the delta and renames it.  0, or -1 with
 * *err. */
int cowd_stream_write_fd(struct cowd_stream *s, int fd, char **err);

#endif
