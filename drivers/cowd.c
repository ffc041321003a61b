#include "drivers/cowd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/vmdk.h"
#include "drivers/vsops.h"
#include "engine/core/util.h"

/* Byte offsets of the header's fields (VMware's COWDisk_Header). */
enum {
	H_MAGIC = 0,
	H_VERSION = 4,
	H_FLAGS = 8,
	H_SECTORS = 12,
	H_GRAIN = 16,
	H_GD_OFFSET = 20,
	H_GD_ENTRIES = 24,
	H_FREE_SECTOR = 28,
	H_PARENT_FILE = 32,       /* 1024 bytes (cylinders, heads, sectors in a base) */
	H_PARENT_GENERATION = 1056,
	H_GENERATION = 1060,
	H_NAME = 1064,            /* 60 bytes */
	H_DESCRIPTION = 1124,     /* 512 bytes */
	H_SAVED_GENERATION = 1636,
	H_RESERVED = 1640,        /* 8 bytes */
	H_UNCLEAN = 1648,
	H_PADDING = 1652,         /* 396 bytes, to 2048 */
};

#define SECTOR 512u
#define GT_ENTRIES 4096u
#define GT_SECTORS (GT_ENTRIES * 4 / SECTOR)
#define GD_PER_SECTOR (SECTOR / 4)
#define HEADER_SECTORS (COWD_HEADER_SIZE / SECTOR)
/* ESX writes 1-sector grains; larger ones are read by qemu too, and the
 * writer's buffers stay small with this bound. */
#define MAX_GRAIN_SECTORS 128u
/* What one stream step produces at most (a whole number of grains). */
#define CHUNK (256u * 1024)

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint64_t
div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* Entries of the grain directory a disk of this many sectors needs. */
static uint64_t
gd_needed(uint64_t sectors, uint32_t grain_sectors)
{
	return div_up(sectors, (uint64_t)grain_sectors * GT_ENTRIES);
}

int
cowd_header_parse(const void *buf, size_t len, struct cowd_header *h, char **err)
{
	const uint8_t *p = buf;
	uint64_t need, slack, gd_end;

	memset(h, 0, sizeof(*h));
	*err = NULL;
	if (len < COWD_HEADER_SIZE) {
		*err = xasprintf("COWD header: %zu bytes, the header has %d", len, COWD_HEADER_SIZE);
		return -1;
	}
	if (memcmp(p + H_MAGIC, "COWD", 4) != 0) {
		if (memcmp(p, "KDMV", 4) == 0)
			*err = xstrdup("COWD magic: a hosted sparse extent (KDMV), not vmfsSparse");
		else if (get_le32(p) == 0xcafebabe)
			*err = xstrdup("COWD magic: an seSparse extent (VMFS6), not vmfsSparse");
		else
			*err = xstrdup("COWD magic: not a vmfsSparse (COWD) extent");
		return -1;
	}
	memcpy(h->raw, p, COWD_HEADER_SIZE);
	h->version = get_le32(p + H_VERSION);
	h->flags = get_le32(p + H_FLAGS);
	h->sectors = get_le32(p + H_SECTORS);
	h->grain_sectors = get_le32(p + H_GRAIN);
	h->gd_offset = get_le32(p + H_GD_OFFSET);
	h->gd_entries = get_le32(p + H_GD_ENTRIES);
	h->free_sector = get_le32(p + H_FREE_SECTOR);
	h->parent_generation = get_le32(p + H_PARENT_GENERATION);
	h->generation = get_le32(p + H_GENERATION);
	h->saved_generation = get_le32(p + H_SAVED_GENERATION);
	h->unclean_shutdown = get_le32(p + H_UNCLEAN);

	if (h->version != 1) {
		*err = xasprintf("COWD version %u: only version 1 is known", h->version);
		return -1;
	}
	if (h->sectors == 0) {
		*err = xstrdup("COWD numSectors 0: an empty disk");
		return -1;
	}
	if (h->grain_sectors == 0 || h->grain_sectors > MAX_GRAIN_SECTORS ||
	    (h->grain_sectors & (h->grain_sectors - 1)) != 0) {
		*err = xasprintf("COWD grainSize %u: a power of two from 1 to %u sectors is expected", h->grain_sectors,
		    MAX_GRAIN_SECTORS);
		return -1;
	}
	if (h->sectors % h->grain_sectors != 0) {
		*err = xasprintf("COWD numSectors %u is not a whole number of %u-sector grains", h->sectors,
		    h->grain_sectors);
		return -1;
	}
	/* The directory follows the header; anything else would put bytes
	 * between them that this writer does not know. */
	if (h->gd_offset != HEADER_SECTORS) {
		*err = xasprintf("COWD gdOffset %u: the grain directory follows the %u-sector header", h->gd_offset,
		    HEADER_SECTORS);
		return -1;
	}
	/* One entry per GT of the disk; a writer may round up to a whole
	 * directory sector, no more (so the directory stays the disk's). */
	need = gd_needed(h->sectors, h->grain_sectors);
	slack = div_up(need, GD_PER_SECTOR) * GD_PER_SECTOR;
	if (h->gd_entries < need || h->gd_entries > slack) {
		*err = xasprintf("COWD numGDEntries %u: a disk of %u sectors in %u-sector grains needs %llu",
		    h->gd_entries, h->sectors, h->grain_sectors, (unsigned long long)need);
		return -1;
	}
	gd_end = (uint64_t)h->gd_offset + div_up(h->gd_entries, GD_PER_SECTOR);
	if (h->free_sector < gd_end) {
		*err = xasprintf("COWD freeSector %u lies inside the header or grain directory (which end at %llu)",
		    h->free_sector, (unsigned long long)gd_end);
		return -1;
	}
	return 0;
}

int
cowd_capacity_check(uint64_t bytes, char **err)
{
	*err = NULL;
	if (bytes == 0) {
		*err = xstrdup("a disk of 0 bytes");
		return -1;
	}
	/* A size that is no whole number of sectors (vSphere's are whole
	 * KiB; the test peer's need not be) takes its last sector whole, as
	 * the delta's extent line counts it; past the end it reads zeros. */
	if (bytes > COWD_MAX_CAPACITY) {
		*err = xasprintf("a disk of %llu bytes is over the vmfsSparse (COWD) limit of 2 TiB - 512 bytes",
		    (unsigned long long)bytes);
		return -1;
	}
	return 0;
}

int
cowd_datastore_check(const char *ds, const char *type, int vmfs_major, char **err)
{
	*err = NULL;
	if (type == NULL || strcmp(type, "VMFS") != 0 || vmfs_major < 6)
		return 0;
	*err = xasprintf("datastore %s is VMFS %d: its snapshot deltas are seSparse, which nobody outside VMware writes",
	    ds != NULL ? ds : "?", vmfs_major);
	return -1;
}

int
cowd_delta_check(const char *text, size_t len, uint64_t capacity, char **file, char **err)
{
	struct vmdk_desc d;
	const char *f;
	char *why = NULL;

	*file = NULL;
	*err = NULL;
	if (cowd_capacity_check(capacity, err) != 0)
		return -1;
	if (vmdk_parse(text, len, &d, &why) != 0) {
		*err = xasprintf("delta descriptor: %s", why);
		free(why);
		return -1;
	}
	if ((f = vmdk_delta_file(&d, &why)) == NULL) {
		*err = xasprintf("delta descriptor: %s", why);
		free(why);
		vmdk_free(&d);
		return -1;
	}
	if (d.extents[0].sectors != (capacity + SECTOR - 1) / SECTOR) {
		*err = xasprintf("delta descriptor: extent of %llu sectors for a disk of %llu",
		    (unsigned long long)d.extents[0].sectors, (unsigned long long)((capacity + SECTOR - 1) / SECTOR));
		vmdk_free(&d);
		return -1;
	}
	*file = xstrdup(f);
	vmdk_free(&d);
	return 0;
}

/* Grains [first, end) hold data; the first of them is the ordinal-th
 * grain of the file.  Areas that share or touch a grain share a run. */
struct run {
	uint64_t first;
	uint64_t end;
	uint64_t ordinal;
};

enum phase { P_HEADER, P_GD, P_GT, P_GRAINS, P_END };

struct cowd_stream {
	uint8_t header[COWD_HEADER_SIZE];
	struct vs_extent *areas;
	size_t nareas;
	struct run *runs;
	size_t nruns;
	uint64_t grain_bytes;
	uint32_t grain_sectors;
	uint32_t gd_entries;
	uint64_t gt_sector;     /* where the first GT goes */
	uint64_t grain_sector;  /* where the first grain goes */
	uint64_t ngrains;
	uint64_t free_sector;
	cowd_read_fn source, parent;
	void *source_arg, *parent_arg;

	/* Where the stream is. */
	enum phase phase;
	int failed;
	uint8_t *chunk;
	size_t chunk_len, chunk_off;
	uint64_t gd_next;       /* next directory entry */
	uint64_t gt_next;       /* next GT index to consider */
	uint64_t gt_ordinal;    /* GTs placed so far */
	size_t run_cur;         /* first run not wholly before the cursor */
	uint64_t grain_next;    /* next grain of runs[run_cur] */
	size_t area_cur;        /* first area not wholly before the cursor */
};

struct cowd_stream *
cowd_stream_new(const struct cowd_header *h, const struct vs_extent *areas, size_t n, cowd_read_fn source,
    void *source_arg, cowd_read_fn parent, void *parent_arg, char **err)
{
	struct cowd_stream *s;
	uint64_t disk = (uint64_t)h->sectors * SECTOR, prev_end = 0, ngt = 0, last_gt = UINT64_MAX;
	size_t i;

	*err = NULL;
	for (i = 0; i < n; i++) {
		if (areas[i].length == 0 || areas[i].start > disk || areas[i].length > disk - areas[i].start) {
			*err = xasprintf("area %zu (%llu+%llu) is empty or beyond the disk's %llu bytes", i,
			    (unsigned long long)areas[i].start, (unsigned long long)areas[i].length,
			    (unsigned long long)disk);
			return NULL;
		}
		if (i > 0 && areas[i].start < prev_end) {
			*err = xasprintf("area %zu (at %llu) overlaps or precedes the one before it", i,
			    (unsigned long long)areas[i].start);
			return NULL;
		}
		prev_end = areas[i].start + areas[i].length;
	}
	s = xcalloc(1, sizeof(*s));
	memcpy(s->header, h->raw, COWD_HEADER_SIZE);
	s->grain_sectors = h->grain_sectors;
	s->grain_bytes = (uint64_t)h->grain_sectors * SECTOR;
	s->gd_entries = h->gd_entries;
	s->source = source;
	s->source_arg = source_arg;
	s->parent = parent;
	s->parent_arg = parent_arg;
	if (n > 0) {
		s->areas = xreallocarray(NULL, n, sizeof(*areas));
		memcpy(s->areas, areas, n * sizeof(*areas));
		s->runs = xreallocarray(NULL, n, sizeof(*s->runs));
	}
	s->nareas = n;
	for (i = 0; i < n; i++) {
		uint64_t first = areas[i].start / s->grain_bytes;
		uint64_t end = div_up(areas[i].start + areas[i].length, s->grain_bytes);
		struct run *r = s->nruns > 0 ? &s->runs[s->nruns - 1] : NULL;
		uint64_t g;

		if (r != NULL && first <= r->end) {
			if (end > r->end) {
				s->ngrains += end - r->end;
				r->end = end;
			}
		} else {
			r = &s->runs[s->nruns++];
			r->first = first;
			r->end = end;
			r->ordinal = s->ngrains;
			s->ngrains += end - first;
		}
		/* GTs this area touches that no earlier area did. */
		for (g = first / GT_ENTRIES; g <= (end - 1) / GT_ENTRIES; g++) {
			if (last_gt == UINT64_MAX || g > last_gt) {
				ngt++;
				last_gt = g;
			}
		}
	}
	s->gt_sector = HEADER_SECTORS + div_up(s->gd_entries, GD_PER_SECTOR);
	s->grain_sector = s->gt_sector + ngt * GT_SECTORS;
	s->free_sector = s->grain_sector + s->ngrains * s->grain_sectors;
	if (s->free_sector > UINT32_MAX) {
		*err = xasprintf("the delta would take %llu sectors; a COWD file numbers at most %u",
		    (unsigned long long)s->free_sector, UINT32_MAX);
		cowd_stream_free(s);
		return NULL;
	}
	put_le32(s->header + H_FREE_SECTOR, (uint32_t)s->free_sector);
	put_le32(s->header + H_UNCLEAN, 0);
	s->chunk = xmalloc(CHUNK);
	cowd_stream_rewind(s);
	return s;
}

uint64_t
cowd_stream_size(const struct cowd_stream *s)
{
	return s->free_sector * SECTOR;
}

void
cowd_stream_rewind(struct cowd_stream *s)
{
	s->phase = P_HEADER;
	s->failed = 0;
	s->chunk_len = s->chunk_off = 0;
	s->gd_next = s->gt_next = s->gt_ordinal = 0;
	s->run_cur = 0;
	s->area_cur = 0;
	s->grain_next = s->nruns > 0 ? s->runs[0].first : 0;
}

void
cowd_stream_free(struct cowd_stream *s)
{
	if (s == NULL)
		return;
	free(s->areas);
	free(s->runs);
	free(s->chunk);
	free(s);
}

/* Skip the runs that end at or before grain g. */
static void
runs_skip(struct cowd_stream *s, uint64_t g)
{
	while (s->run_cur < s->nruns && s->runs[s->run_cur].end <= g)
		s->run_cur++;
}

/* Directory sectors, as many as fit the chunk: entry i is the sector of
 * GT i when a run reaches into its 4096 grains, else 0. */
static void
fill_gd(struct cowd_stream *s)
{
	uint64_t total = div_up(s->gd_entries, GD_PER_SECTOR) * GD_PER_SECTOR;
	size_t k = 0, room = total - s->gd_next < CHUNK / 4 ? (size_t)(total - s->gd_next) : CHUNK / 4;

	memset(s->chunk, 0, room * 4);
	while (k < room) {
		uint64_t i = s->gd_next++;

		if (i < s->gd_entries) {
			runs_skip(s, i * GT_ENTRIES);
			if (s->run_cur < s->nruns && s->runs[s->run_cur].first < (i + 1) * GT_ENTRIES)
				put_le32(s->chunk + k * 4, (uint32_t)(s->gt_sector + s->gt_ordinal++ * GT_SECTORS));
		}
		k++;
	}
	s->chunk_len = k * 4;
}

/* The next needed GT, or 0 bytes when none is left. */
static void
fill_gt(struct cowd_stream *s)
{
	uint64_t t, lo, hi;
	size_t r;

	s->chunk_len = 0;
	runs_skip(s, s->gt_next * GT_ENTRIES);
	if (s->run_cur == s->nruns)
		return;
	t = s->runs[s->run_cur].first / GT_ENTRIES;
	if (t < s->gt_next)
		t = s->gt_next;
	lo = t * GT_ENTRIES;
	hi = lo + GT_ENTRIES;
	memset(s->chunk, 0, GT_ENTRIES * 4);
	for (r = s->run_cur; r < s->nruns && s->runs[r].first < hi; r++) {
		uint64_t g = s->runs[r].first > lo ? s->runs[r].first : lo;
		uint64_t end = s->runs[r].end < hi ? s->runs[r].end : hi;

		for (; g < end; g++) {
			uint64_t sector = s->grain_sector + (s->runs[r].ordinal + g - s->runs[r].first) * s->grain_sectors;

			put_le32(s->chunk + (g - lo) * 4, (uint32_t)sector);
		}
	}
	s->gt_next = t + 1;
	s->chunk_len = GT_ENTRIES * 4;
}

/* Disk bytes [off, off + len) into p: the areas' bytes from the source,
 * the rest of their grains from the parent (zeros when there is none). */
static int
compose(struct cowd_stream *s, uint64_t off, uint8_t *p, size_t len, char **err)
{
	uint64_t end = off + len;

	while (s->area_cur < s->nareas && s->areas[s->area_cur].start + s->areas[s->area_cur].length <= off)
		s->area_cur++;
	while (off < end) {
		const struct vs_extent *a = s->area_cur < s->nareas ? &s->areas[s->area_cur] : NULL;
		uint64_t stop;
		int rc;

		if (a != NULL && a->start <= off) {
			stop = a->start + a->length < end ? a->start + a->length : end;
			rc = s->source(s->source_arg, off, p, (size_t)(stop - off), err);
			if (stop == a->start + a->length)
				s->area_cur++;
		} else {
			stop = a != NULL && a->start < end ? a->start : end;
			if (s->parent != NULL) {
				rc = s->parent(s->parent_arg, off, p, (size_t)(stop - off), err);
			} else {
				memset(p, 0, (size_t)(stop - off));
				rc = 0;
			}
		}
		if (rc != 0)
			return -1;
		p += stop - off;
		off = stop;
	}
	return 0;
}

/* The next grains of the current run, as many as fit the chunk. */
static int
fill_grains(struct cowd_stream *s, char **err)
{
	const struct run *r;
	uint64_t n;

	s->chunk_len = 0;
	if (s->run_cur < s->nruns && s->grain_next >= s->runs[s->run_cur].end) {
		s->run_cur++;
		if (s->run_cur < s->nruns)
			s->grain_next = s->runs[s->run_cur].first;
	}
	if (s->run_cur == s->nruns)
		return 0;
	r = &s->runs[s->run_cur];
	n = r->end - s->grain_next;
	if (n > CHUNK / s->grain_bytes)
		n = CHUNK / s->grain_bytes;
	if (compose(s, s->grain_next * s->grain_bytes, s->chunk, (size_t)(n * s->grain_bytes), err) != 0)
		return -1;
	s->grain_next += n;
	s->chunk_len = (size_t)(n * s->grain_bytes);
	return 0;
}

/* The next non-empty piece of the file into the chunk (none at the end). */
static int
next_chunk(struct cowd_stream *s, char **err)
{
	s->chunk_off = 0;
	s->chunk_len = 0;
	while (s->chunk_len == 0 && s->phase != P_END) {
		switch (s->phase) {
		case P_HEADER:
			memcpy(s->chunk, s->header, COWD_HEADER_SIZE);
			s->chunk_len = COWD_HEADER_SIZE;
			s->phase = P_GD;
			s->run_cur = 0;
			break;
		case P_GD:
			fill_gd(s);
			if (s->chunk_len == 0) {
				s->phase = P_GT;
				s->run_cur = 0;
			}
			break;
		case P_GT:
			fill_gt(s);
			if (s->chunk_len == 0) {
				s->phase = P_GRAINS;
				s->run_cur = 0;
				s->grain_next = s->nruns > 0 ? s->runs[0].first : 0;
				s->area_cur = 0;
			}
			break;
		case P_GRAINS:
			if (fill_grains(s, err) != 0)
				return -1;
			if (s->chunk_len == 0)
				s->phase = P_END;
			break;
		case P_END:
			break;
		}
	}
	return 0;
}

int
cowd_stream_read(struct cowd_stream *s, void *buf, size_t len, size_t *got, char **err)
{
	uint8_t *p = buf;

	*got = 0;
	*err = NULL;
	if (s->failed) {
		*err = xstrdup("the delta stream failed before; rewind it");
		return -1;
	}
	while (*got < len) {
		size_t n;

		if (s->chunk_off == s->chunk_len) {
			if (next_chunk(s, err) != 0) {
				s->failed = 1;
				if (*err == NULL)
					*err = xstrdup("a read callback failed");
				return -1;
			}
			if (s->chunk_len == 0)
				break;
		}
		n = s->chunk_len - s->chunk_off;
		if (n > len - *got)
			n = len - *got;
		memcpy(p + *got, s->chunk + s->chunk_off, n);
		s->chunk_off += n;
		*got += n;
	}
	return 0;
}

int
cowd_stream_write_fd(struct cowd_stream *s, int fd, char **err)
{
	uint8_t *buf = xmalloc(CHUNK);
	uint64_t off = 0;
	struct stat st;
	int rc = -1;

	*err = NULL;
	cowd_stream_rewind(s);
	for (;;) {
		size_t got, done = 0;

		if (cowd_stream_read(s, buf, CHUNK, &got, err) != 0)
			goto out;
		if (got == 0)
			break;
		while (done < got) {
			ssize_t w = pwrite(fd, buf + done, got - done, (off_t)(off + done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				*err = xasprintf("writing the delta at %llu: %s", (unsigned long long)(off + done),
				    w < 0 ? strerror(errno) : "nothing written");
				goto out;
			}
			done += (size_t)w;
		}
		off += got;
	}
	if (off != cowd_stream_size(s)) {
		*err = xasprintf("the delta came out as %llu bytes, not %llu", (unsigned long long)off,
		    (unsigned long long)cowd_stream_size(s));
		goto out;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fd, (off_t)off) != 0) {
		*err = xasprintf("cutting the delta to %llu bytes: %s", (unsigned long long)off, strerror(errno));
		goto out;
	}
	if (fsync(fd) != 0 && errno != EINVAL) {
		*err = xasprintf("fsync of the delta: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}
