/* vmfsSparse deltas: the empty delta's COWD header and a delta's
 * descriptor as fetched from a datastore, any bytes.
 *
 * As descriptor text the input goes through cowd_delta_check.  As a
 * header, once parsed, the bytes after it choose areas; the delta built
 * on it is read whole in pieces of varying size and checked: it comes to
 * exactly freeSector sectors, its header parses again, the source is
 * only asked for bytes inside an area, and looking the areas' first and
 * last bytes up through the grain directory and tables finds the
 * source's bytes, the bytes beside them in the same grain the parent's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cowd.h"
#include "drivers/vsops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_AREAS 32
#define MAX_SECTORS (1u << 24) /* a directory of at most 16 KiB */
#define MAX_FILE (8u << 20)

static struct vs_extent areas[MAX_AREAS];
static size_t nareas;
static uint64_t disk;
static int with_parent;

static uint8_t
parent_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9));
}

static uint8_t
source_byte(uint64_t off)
{
	return parent_byte(off) ^ 0x80;
}

static int
source(void *arg, uint64_t off, void *buf, size_t len, char **err)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < nareas; i++)
		if (off >= areas[i].start && off + len <= areas[i].start + areas[i].length)
			break;
	if (i == nareas || len == 0)
		abort();
	for (i = 0; i < len; i++)
		p[i] = source_byte(off + i);
	return 0;
}

static int
parent(void *arg, uint64_t off, void *buf, size_t len, char **err)
{
	uint8_t *p = buf;
	size_t i;

	if (len == 0 || off + len > disk)
		abort();
	for (i = 0; i < len; i++)
		p[i] = parent_byte(off + i);
	return 0;
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The byte of the disk at off as the delta holds it; -1 if the delta does
 * not hold its grain. */
static int
lookup(const uint8_t *f, size_t len, const struct cowd_header *h, uint64_t off)
{
	uint64_t grain = off / (h->grain_sectors * 512ull), gt = grain / 4096, at;
	uint32_t gts, gs;

	if (gt >= h->gd_entries || h->gd_offset * 512ull + gt * 4 + 4 > len)
		abort();
	gts = le32(f + h->gd_offset * 512ull + gt * 4);
	if (gts == 0)
		return -1;
	at = gts * 512ull + (grain % 4096) * 4;
	if (at + 4 > len)
		abort();
	gs = le32(f + at);
	if (gs == 0)
		return -1;
	at = gs * 512ull + off % (h->grain_sectors * 512ull);
	if (at >= len)
		abort();
	return f[at];
}

static void
check_byte(const uint8_t *f, size_t len, const struct cowd_header *h, uint64_t off, int in_area)
{
	int b = lookup(f, len, h, off);

	if (in_area && b != source_byte(off))
		abort();
	/* Beside an area in a grain it shares: the parent's byte (zero
	 * without a parent). */
	if (!in_area && b != -1 && b != (with_parent ? parent_byte(off) : 0))
		abort();
}

static void
build(const uint8_t *data, size_t size, const struct cowd_header *h)
{
	struct cowd_header again;
	struct cowd_stream *s;
	uint8_t *file, *p = (uint8_t *)data + COWD_HEADER_SIZE;
	size_t left = size - COWD_HEADER_SIZE, total = 0, got, i;
	uint64_t at = 0;
	char *err = NULL;

	disk = (uint64_t)h->sectors * 512;
	for (nareas = 0; nareas < MAX_AREAS && left >= 4; p += 4, left -= 4) {
		uint64_t gap = (uint64_t)(p[0] | p[1] << 8) * 97, len = (uint64_t)((p[2] | p[3] << 8) & 0xfff) + 1;

		if (at + gap >= disk)
			break;
		at += gap;
		if (len > disk - at)
			len = disk - at;
		areas[nareas].start = at;
		areas[nareas].length = len;
		nareas++;
		at += len;
	}
	with_parent = size & 1;
	s = cowd_stream_new(h, areas, nareas, source, NULL, with_parent ? parent : NULL, NULL, &err);
	if (s == NULL) {
		free(err);
		return;
	}
	if (cowd_stream_size(s) > MAX_FILE) {
		cowd_stream_free(s);
		return;
	}
	file = malloc(cowd_stream_size(s) + 1);
	if (file == NULL)
		abort();
	for (i = 0;; i++) {
		size_t want = 1 + (size_t)data[i % size] * 61;

		if (total + want > cowd_stream_size(s) + 1)
			want = (size_t)(cowd_stream_size(s) + 1 - total);
		if (cowd_stream_read(s, file + total, want, &got, &err) != 0)
			abort();
		if (got == 0)
			break;
		total += got;
		if (total > cowd_stream_size(s))
			abort();
	}
	if (total != cowd_stream_size(s) || cowd_header_parse(file, total, &again, &err) != 0 ||
	    again.free_sector * 512ull != total || again.unclean_shutdown != 0)
		abort();
	for (i = 0; i < nareas; i++) {
		uint64_t a = areas[i].start, e = a + areas[i].length;

		check_byte(file, total, &again, a, 1);
		check_byte(file, total, &again, e - 1, 1);
		if (a > 0 && (i == 0 || areas[i - 1].start + areas[i - 1].length < a))
			check_byte(file, total, &again, a - 1, 0);
		if (e < disk && (i + 1 == nareas || areas[i + 1].start > e))
			check_byte(file, total, &again, e, 0);
	}
	free(file);
	cowd_stream_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cowd_header h;
	char *file = NULL, *err = NULL;

	if (cowd_delta_check((const char *)data, size, 16384 * 512, &file, &err) == 0) {
		if (file == NULL)
			abort();
		free(file);
	} else {
		if (err == NULL || file != NULL)
			abort();
		free(err);
	}
	if (cowd_header_parse(data, size, &h, &err) != 0) {
		free(err);
		return 0;
	}
	if (h.sectors <= MAX_SECTORS)
		build(data, size, &h);
	return 0;
}
