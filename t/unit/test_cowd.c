/* Unit tests for drivers/cowd.c: vmfsSparse (COWD) deltas.
 *
 * The deltas are built over an empty delta header made here as ESXi makes
 * one with a snapshot (see empty_delta) and over a parent flat file of
 * known bytes, then read back by qemu-img, a reader that shares no code
 * with the writer: `convert -O raw` must give the parent's bytes with the
 * areas' bytes over them, `check` must be clean and `map` must show the
 * delta holding exactly the areas' grains.  Without qemu-img those checks
 * cannot run: the other tests still do, and the program exits with 77
 * (ctest's SKIP) so that nobody mistakes it for a pass. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "drivers/cowd.h"
#include "drivers/vmdk.h"
#include "drivers/vsops.h"
#include "engine/core/util.h"

#define MiB (1024ull * 1024)
#define GT_GRAINS 4096

static int have_qemu;

static void
le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The header of the empty delta ESXi writes with a snapshot, as VMware's
 * technote and libvmdk's notes describe it.  Assumed here: version 1,
 * flags 3, the grain directory right after the 4-sector header with one
 * entry per 4096 grains, all zeros, no grain table yet, freeSector just
 * after the directory.  The fields the writer must keep carry values that
 * show if they are lost: generations, a parent file name, a name, a
 * description, the reserved bytes; uncleanShutdown is 1 (the VM was
 * running on it) and must come out 0. */
static void
empty_delta(uint8_t h[COWD_HEADER_SIZE], uint32_t sectors, uint32_t grain)
{
	uint32_t gd = (uint32_t)((sectors + (uint64_t)grain * GT_GRAINS - 1) / ((uint64_t)grain * GT_GRAINS));

	memset(h, 0, COWD_HEADER_SIZE);
	memcpy(h, "COWD", 4);
	le32(h + 4, 1);
	le32(h + 8, 3);
	le32(h + 12, sectors);
	le32(h + 16, grain);
	le32(h + 20, 4);
	le32(h + 24, gd);
	le32(h + 28, 4 + (gd * 4 + 511) / 512);
	strcpy((char *)h + 32, "/vmfs/volumes/ds0/web01/web01.vmdk");
	le32(h + 1056, 7);           /* parent generation */
	le32(h + 1060, 0x1234abcd);  /* generation */
	strcpy((char *)h + 1064, "web01-000001");
	strcpy((char *)h + 1124, "vmferry-replication-r1-3");
	le32(h + 1636, 0x1234abcc);  /* saved generation */
	memcpy(h + 1640, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	le32(h + 1648, 1);           /* uncleanShutdown */
}

/* Known bytes: the parent's, and the areas' (which differ from the
 * parent's at every offset). */
static uint8_t
parent_byte(uint64_t i)
{
	return (uint8_t)((i >> 9) * 37 + (i & 511) * 11 + (i >> 20) + 1);
}

static uint8_t
source_byte(uint64_t i)
{
	return parent_byte(i) ^ 0xa5;
}

struct src {
	const struct vs_extent *areas;
	size_t n;
	int fail_at;  /* the nth call fails (0: never) */
	int calls;
};

/* The areas' bytes; every call must lie within one area. */
static int
source_read(void *arg, uint64_t off, void *buf, size_t len, char **err)
{
	struct src *s = arg;
	uint8_t *p = buf;
	size_t i;
	int inside = 0;

	if (++s->calls == s->fail_at) {
		*err = xstrdup("source gone");
		return -1;
	}
	for (i = 0; i < s->n; i++)
		if (off >= s->areas[i].start && off + len <= s->areas[i].start + s->areas[i].length)
			inside = 1;
	assert_true(inside);
	assert_true(len > 0);
	for (i = 0; i < len; i++)
		p[i] = source_byte(off + i);
	return 0;
}

static int
parent_read(void *arg, uint64_t off, void *buf, size_t len, char **err)
{
	int fd = *(int *)arg;

	assert_true(len > 0);
	if (pread(fd, buf, len, (off_t)off) != (ssize_t)len) {
		*err = xstrdup("short read from the parent");
		return -1;
	}
	return 0;
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = xmalloc((size_t)st.st_size + 1);
	assert_true(read(fd, p, (size_t)st.st_size) == st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static int
run(const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "failed (%d): %s\n", rc, cmd);
	free(cmd);
	return rc;
}

/* A directory with parent.vmdk (createType vmfs, its flat file) and the
 * delta's descriptor parent-000001.vmdk as ESXi writes them; the delta's
 * extent parent-000001-delta.vmdk is for the test to write. */
struct chain {
	char dir[64];
	char *delta;  /* path of the COWD extent */
	int parent_fd;
	uint32_t sectors;
};

static void
chain_make(struct chain *c, uint32_t sectors, int zero_parent)
{
	char *p, *text;
	uint64_t size = (uint64_t)sectors * 512, off;
	uint8_t *buf = xmalloc(MiB);

	memset(c, 0, sizeof(*c));
	c->sectors = sectors;
	snprintf(c->dir, sizeof(c->dir), "%s/vmferry-cowd.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	p = xasprintf("%s/parent-flat.vmdk", c->dir);
	c->parent_fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(c->parent_fd >= 0);
	free(p);
	assert_int_equal(ftruncate(c->parent_fd, (off_t)size), 0);
	for (off = 0; !zero_parent && off < size; off += MiB) {
		size_t n = size - off < MiB ? (size_t)(size - off) : MiB, i;

		for (i = 0; i < n; i++)
			buf[i] = parent_byte(off + i);
		assert_true(pwrite(c->parent_fd, buf, n, (off_t)off) == (ssize_t)n);
	}
	free(buf);
	p = xasprintf("%s/parent.vmdk", c->dir);
	text = xasprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=a1b2c3d4\nparentCID=ffffffff\n"
			 "isNativeSnapshot=\"no\"\ncreateType=\"vmfs\"\n\n# Extent description\n"
			 "RW %u VMFS \"parent-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n"
			 "ddb.adapterType = \"lsilogic\"\nddb.thinProvisioned = \"1\"\n"
			 "ddb.virtualHWVersion = \"14\"\n",
	    sectors);
	write_text(p, text);
	free(text);
	free(p);
	p = xasprintf("%s/parent-000001.vmdk", c->dir);
	text = xasprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=a1b2c3d4\n"
			 "isNativeSnapshot=\"no\"\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"parent.vmdk\"\n"
			 "# Extent description\nRW %u VMFSSPARSE \"parent-000001-delta.vmdk\"\n\n"
			 "# The Disk Data Base\n#DDB\n\nddb.longContentID = \"0f1e2d3c4b5a69788796a5b4fffffffe\"\n",
	    sectors);
	write_text(p, text);
	free(text);
	free(p);
	c->delta = xasprintf("%s/parent-000001-delta.vmdk", c->dir);
}

/* VMFERRY_KEEP=1 leaves the chain for a look with qemu-img. */
static void
chain_free(struct chain *c)
{
	DIR *d;
	struct dirent *e;

	close(c->parent_fd);
	free(c->delta);
	if (getenv("VMFERRY_KEEP") != NULL) {
		fprintf(stderr, "kept %s\n", c->dir);
		return;
	}
	assert_non_null(d = opendir(c->dir));
	while ((e = readdir(d)) != NULL) {
		char *p = xasprintf("%s/%s", c->dir, e->d_name);

		if (e->d_name[0] != '.')
			assert_int_equal(unlink(p), 0);
		free(p);
	}
	closedir(d);
	assert_int_equal(rmdir(c->dir), 0);
}

/* Which grains the areas touch, and how many GTs those grains need. */
static uint8_t *
grains_of(const struct vs_extent *a, size_t n, uint32_t sectors, uint32_t grain, uint64_t *ngrains, uint64_t *ngt)
{
	uint64_t gb = (uint64_t)grain * 512, total = sectors / grain, g, t;
	uint8_t *map = xcalloc(total, 1);
	size_t i;

	for (i = 0; i < n; i++)
		for (g = a[i].start / gb; g * gb < a[i].start + a[i].length; g++)
			map[g] = 1;
	*ngrains = *ngt = 0;
	for (t = 0; t * GT_GRAINS < total; t++) {
		int used = 0;

		for (g = t * GT_GRAINS; g < total && g < (t + 1) * GT_GRAINS; g++)
			if (map[g]) {
				used = 1;
				(*ngrains)++;
			}
		*ngt += used;
	}
	return map;
}

/* qemu-img map: the grains the delta itself holds (depth 0) must be
 * exactly those the areas touch. */
static void
check_map(const struct chain *c, const uint8_t *expect, uint32_t grain)
{
	uint64_t total = c->sectors / grain, gb = (uint64_t)grain * 512, g;
	uint8_t *got = xcalloc(total, 1);
	char *cmd = xasprintf("qemu-img map -f vmdk --output=json '%s/parent-000001.vmdk'", c->dir), line[512];
	FILE *f = popen(cmd, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long start, len;
		int depth;

		if (sscanf(line, "%*[[{ ]\"start\": %llu, \"length\": %llu, \"depth\": %d", &start, &len, &depth) != 3)
			continue;
		if (depth == 0 && strstr(line, "\"data\": true") != NULL)
			for (g = start / gb; g * gb < start + len; g++)
				got[g] = 1;
	}
	assert_int_equal(pclose(f), 0);
	for (g = 0; g < total; g++)
		if (got[g] != expect[g])
			fail_msg("grain %llu: qemu-img map says %s, the areas say %s", (unsigned long long)g,
			    got[g] ? "in the delta" : "not in the delta", expect[g] ? "in" : "not in");
	free(cmd);
	free(got);
}

/* Build the delta of areas over a chain of the given size, write it,
 * and check it every way we can. */
static void
check_delta(const struct vs_extent *areas, size_t n, uint32_t sectors, uint32_t grain, int zero_parent)
{
	struct chain c;
	struct cowd_header h, out;
	struct cowd_stream *s;
	struct src src = { areas, n, 0, 0 };
	uint8_t empty[COWD_HEADER_SIZE], *file, *grains, *piece;
	uint64_t size = (uint64_t)sectors * 512, ngrains, ngt, bound, gd_bytes;
	size_t len, i, got, at;
	char *err = NULL;
	int fd;

	chain_make(&c, sectors, zero_parent);
	empty_delta(empty, sectors, grain);
	assert_int_equal(cowd_header_parse(empty, sizeof(empty), &h, &err), 0);
	s = cowd_stream_new(&h, areas, n, source_read, &src, zero_parent ? NULL : parent_read, &c.parent_fd, &err);
	if (s == NULL)
		fail_msg("cowd_stream_new: %s", err);
	fd = open(c.delta, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	if (cowd_stream_write_fd(s, fd, &err) != 0)
		fail_msg("cowd_stream_write_fd: %s", err);
	close(fd);

	/* freeSector is the file's end; the file holds no more than the
	 * header, the directory, the GTs and grains the areas need. */
	file = read_file(c.delta, &len);
	assert_int_equal(cowd_header_parse(file, len, &out, &err), 0);
	assert_true((uint64_t)out.free_sector * 512 == len);
	assert_true(cowd_stream_size(s) == len);
	grains = grains_of(areas, n, sectors, grain, &ngrains, &ngt);
	gd_bytes = ((uint64_t)h.gd_entries * 4 + 511) / 512 * 512;
	bound = COWD_HEADER_SIZE + gd_bytes + ngt * GT_GRAINS * 4 + ngrains * grain * 512;
	if (len > bound)
		fail_msg("delta of %zu bytes; header, directory, %llu GTs and %llu grains take %llu", len,
		    (unsigned long long)ngt, (unsigned long long)ngrains, (unsigned long long)bound);
	/* Every header field as the platform wrote it, but freeSector and
	 * uncleanShutdown. */
	assert_memory_equal(file, empty, 28);
	assert_memory_equal(file + 32, empty + 32, 1648 - 32);
	assert_memory_equal(file + 1652, empty + 1652, COWD_HEADER_SIZE - 1652);
	assert_int_equal(rd32(file + 1648), 0);

	/* The stream gives the same bytes whatever the reader's pieces. */
	cowd_stream_rewind(s);
	piece = xmalloc(4099);
	for (at = 0;; at += got) {
		size_t want = 1 + (at * 7 + 13) % 4099;

		assert_int_equal(cowd_stream_read(s, piece, want, &got, &err), 0);
		if (got == 0)
			break;
		assert_true(at + got <= len);
		assert_memory_equal(piece, file + at, got);
	}
	assert_int_equal(at, len);
	free(piece);
	cowd_stream_free(s);
	free(file);

	if (have_qemu) {
		uint8_t *raw, *expect = xmalloc(size);
		char *p;

		for (i = 0; i < size; i++)
			expect[i] = zero_parent ? 0 : parent_byte(i);
		for (i = 0; i < n; i++) {
			uint64_t b;

			for (b = areas[i].start; b < areas[i].start + areas[i].length; b++)
				expect[b] = source_byte(b);
		}
		assert_int_equal(run("cd '%s' && qemu-img check -q -f vmdk parent-000001.vmdk", c.dir), 0);
		assert_int_equal(
		    run("cd '%s' && qemu-img convert -f vmdk -O raw parent-000001.vmdk out.raw", c.dir), 0);
		p = xasprintf("%s/out.raw", c.dir);
		raw = read_file(p, &len);
		assert_int_equal(len, size);
		for (i = 0; i < size; i++)
			if (raw[i] != expect[i])
				fail_msg("byte %zu: qemu-img reads %02x, expected %02x (parent %02x, area %02x)", i,
				    raw[i], expect[i], parent_byte(i), source_byte(i));
		check_map(&c, grains, grain);
		free(raw);
		free(expect);
		free(p);
	}
	free(grains);
	chain_free(&c);
}

#define DISK_SECTORS (8 * 2048) /* 8 MiB: four grain tables of 2 MiB */

static void
test_no_area(void **state)
{
	(void)state;
	check_delta(NULL, 0, DISK_SECTORS, 1, 0);
}

static void
test_one_grain(void **state)
{
	static const struct vs_extent a[] = { { 3 * MiB, 512 } };

	(void)state;
	check_delta(a, 1, DISK_SECTORS, 1, 0);
}

static void
test_partial_edges(void **state)
{
	/* Begins 1000 bytes into the disk, ends 6000: grains 1 and 11 are
	 * partly the parent's. */
	static const struct vs_extent a[] = { { 1000, 5000 } };

	(void)state;
	check_delta(a, 1, DISK_SECTORS, 1, 0);
}

static void
test_gt_boundary(void **state)
{
	/* Across the first 2 MiB boundary (the end of the first GT), partial
	 * grains on both sides, and one up to the disk's last byte. */
	static const struct vs_extent a[] = { { 2 * MiB - 700, 1500 }, { 8 * MiB - 3, 3 } };

	(void)state;
	check_delta(a, 2, DISK_SECTORS, 1, 0);
}

static void
test_many_small(void **state)
{
	struct vs_extent a[600];
	uint64_t at = 17, x = 12345;
	size_t n = 0;

	(void)state;
	/* Small areas at odd offsets: some share a grain with the one before
	 * (a gap of a few bytes), some touch it, some are far apart. */
	while (n < 600) {
		uint64_t len;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		len = 1 + (x >> 33) % 3000;
		if (at + len > 8 * MiB)
			break;
		a[n].start = at;
		a[n].length = len;
		n++;
		switch ((x >> 20) % 4) {
		case 0: at += len; break;
		case 1: at += len + 1 + (x >> 40) % 100; break;
		default: at += len + (x >> 40) % 40000; break;
		}
	}
	assert_true(n > 200);
	check_delta(a, n, DISK_SECTORS, 1, 0);
}

static void
test_whole_disk(void **state)
{
	static const struct vs_extent a[] = { { 0, 8 * MiB } };

	(void)state;
	check_delta(a, 1, DISK_SECTORS, 1, 0);
}

static void
test_zero_parent(void **state)
{
	/* The first full copy: over the empty thin base, no parent callback. */
	static const struct vs_extent a[] = { { 100, 1000 }, { 5 * MiB + 1, 2 * MiB } };

	(void)state;
	check_delta(a, 2, DISK_SECTORS, 1, 1);
}

static void
test_larger_grains(void **state)
{
	/* 4 KiB grains: a GT then maps 16 MiB. */
	static const struct vs_extent a[] = { { 5000, 10 }, { 9000, 70000 }, { 20 * MiB - 1, 1 } };

	(void)state;
	check_delta(a, 3, 40 * 2048, 8, 0);
}

/* Bytes [off, off + len) of the chain as qemu-io reads them ("read -v"
 * prints them in hex, 16 a line, each line led by its offset). */
static void
qemu_read(const struct chain *c, uint64_t off, size_t len, uint8_t *buf)
{
	char *cmd = xasprintf("cd '%s' && qemu-io -r -f vmdk -c 'read -v %llu %zu' parent-000001.vmdk", c->dir,
	    (unsigned long long)off, len);
	char line[256];
	FILE *f = popen(cmd, "r");
	size_t seen = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long at;
		char *p = strchr(line, ':');
		size_t k, n;

		if (p == NULL || sscanf(line, "%llx:", &at) != 1 || at < off || at >= off + len)
			continue;
		n = off + len - at < 16 ? (size_t)(off + len - at) : 16;
		for (k = 0, p += 3; k < n; k++, p += 3) {
			unsigned v;

			assert_int_equal(sscanf(p, "%2x", &v), 1);
			buf[at - off + k] = (uint8_t)v;
		}
		seen += n;
	}
	assert_int_equal(pclose(f), 0);
	assert_int_equal(seen, len);
	free(cmd);
}

/* The largest disk a COWD holds: a delta of a few areas stays small, and
 * qemu reads the areas back (windows around them: a whole convert would
 * read 2 TiB). */
static void
test_largest_disk(void **state)
{
	static const struct vs_extent a[] = { { 0, 513 }, { 1024ull * 1024 * MiB - 4096, 1000 },
		{ COWD_MAX_CAPACITY - 700, 700 } };
	uint32_t sectors = UINT32_MAX;
	struct chain c;
	struct cowd_header h;
	struct cowd_stream *s;
	struct src src = { a, 3, 0, 0 };
	uint8_t empty[COWD_HEADER_SIZE], win[2048];
	char *err = NULL;
	size_t i;
	int fd;

	(void)state;
	chain_make(&c, sectors, 1);
	empty_delta(empty, sectors, 1);
	assert_int_equal(cowd_header_parse(empty, sizeof(empty), &h, &err), 0);
	assert_int_equal(h.gd_entries, 1024 * 1024);
	s = cowd_stream_new(&h, a, 3, source_read, &src, parent_read, &c.parent_fd, &err);
	assert_non_null(s);
	/* Header, a 4 MiB directory, 3 GTs, 2 + 2 + 2 grains. */
	assert_true(cowd_stream_size(s) == 2048 + 4 * MiB + 3 * 16384 + 6 * 512);
	fd = open(c.delta, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(cowd_stream_write_fd(s, fd, &err), 0);
	close(fd);
	cowd_stream_free(s);
	for (i = 0; have_qemu && i < 3; i++) {
		uint64_t first = a[i].start < 512 ? 0 : a[i].start - 512, b;

		if (first + sizeof(win) > COWD_MAX_CAPACITY)
			first = COWD_MAX_CAPACITY - sizeof(win);
		qemu_read(&c, first, sizeof(win), win);
		for (b = first; b < first + sizeof(win); b++) {
			int in = b >= a[i].start && b < a[i].start + a[i].length;

			if (win[b - first] != (in ? source_byte(b) : 0))
				fail_msg("byte %llu: qemu reads %02x", (unsigned long long)b, win[b - first]);
		}
	}
	chain_free(&c);
}

static void
test_parse_bad(void **state)
{
	static const struct {
		size_t at;
		uint32_t v;
		const char *field;
	} bad[] = {
		{ 4, 2, "version" },
		{ 12, 0, "numSectors" },
		{ 16, 0, "grainSize" },
		{ 16, 3, "grainSize" },
		{ 16, 256, "grainSize" },
		{ 16, 8, "numSectors" }, /* 16385 sectors are not whole 8-sector grains */
		{ 20, 0, "gdOffset" },
		{ 20, 0x7fffffff, "gdOffset" },
		{ 24, 0, "numGDEntries" },
		{ 24, 4, "numGDEntries" },   /* 16385 sectors need 5 */
		{ 24, 129, "numGDEntries" }, /* more than one directory sector of slack */
		{ 24, 0xffffffff, "numGDEntries" },
		{ 28, 4, "freeSector" },
	};
	uint8_t h[COWD_HEADER_SIZE];
	struct cowd_header out;
	char *err = NULL;
	size_t i;

	(void)state;
	empty_delta(h, DISK_SECTORS + 1, 1);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &out, &err), 0);
	assert_int_equal(out.gd_entries, 5);
	assert_int_equal(out.free_sector, 5);
	assert_int_equal(out.generation, 0x1234abcd);
	assert_int_equal(out.unclean_shutdown, 1);
	/* Up to a whole directory sector of entries is accepted. */
	le32(h + 24, 128);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &out, &err), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		empty_delta(h, DISK_SECTORS + 1, 1);
		le32(h + bad[i].at, bad[i].v);
		assert_int_equal(cowd_header_parse(h, sizeof(h), &out, &err), -1);
		if (strstr(err, bad[i].field) == NULL)
			fail_msg("case %zu: \"%s\" does not name %s", i, err, bad[i].field);
		free(err);
	}
	empty_delta(h, DISK_SECTORS, 1);
	assert_int_equal(cowd_header_parse(h, COWD_HEADER_SIZE - 1, &out, &err), -1);
	assert_non_null(strstr(err, "header"));
	free(err);
	memcpy(h, "KDMV", 4);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &out, &err), -1);
	assert_non_null(strstr(err, "magic"));
	assert_non_null(strstr(err, "hosted sparse"));
	free(err);
	le32(h, 0xcafebabe);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &out, &err), -1);
	assert_non_null(strstr(err, "seSparse"));
	free(err);
}

static void
test_areas_bad(void **state)
{
	static const struct {
		struct vs_extent a[2];
		size_t n;
	} bad[] = {
		{ { { 0, 0 } }, 1 },
		{ { { 8 * MiB, 1 } }, 1 },
		{ { { 8 * MiB - 1, 2 } }, 1 },
		{ { { 1, UINT64_MAX } }, 1 },
		{ { { 4096, 10 }, { 4100, 10 } }, 2 },
		{ { { 4096, 10 }, { 0, 10 } }, 2 },
	};
	uint8_t h[COWD_HEADER_SIZE];
	struct cowd_header ch;
	char *err = NULL;
	size_t i;

	(void)state;
	empty_delta(h, DISK_SECTORS, 1);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &ch, &err), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(cowd_stream_new(&ch, bad[i].a, bad[i].n, source_read, NULL, NULL, NULL, &err));
		assert_non_null(strstr(err, "area"));
		free(err);
	}
}

/* The whole largest disk in one delta: header, directory, every GT and
 * every grain pass 2^32 sectors. */
static void
test_too_large(void **state)
{
	uint8_t h[COWD_HEADER_SIZE];
	struct cowd_header ch;
	struct vs_extent a = { 0, COWD_MAX_CAPACITY };
	char *err = NULL;

	(void)state;
	empty_delta(h, UINT32_MAX, 1);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &ch, &err), 0);
	assert_null(cowd_stream_new(&ch, &a, 1, source_read, NULL, NULL, NULL, &err));
	assert_non_null(strstr(err, "sectors"));
	free(err);
}

static void
test_source_fails(void **state)
{
	static const struct vs_extent a[] = { { 0, 512 }, { 1 * MiB, 512 } };
	uint8_t h[COWD_HEADER_SIZE], buf[4096];
	struct cowd_header ch;
	struct cowd_stream *s;
	struct src src = { a, 2, 2, 0 };
	char *err = NULL;
	size_t got, total = 0;
	int rc;

	(void)state;
	empty_delta(h, DISK_SECTORS, 1);
	assert_int_equal(cowd_header_parse(h, sizeof(h), &ch, &err), 0);
	s = cowd_stream_new(&ch, a, 2, source_read, &src, NULL, NULL, &err);
	assert_non_null(s);
	while ((rc = cowd_stream_read(s, buf, sizeof(buf), &got, &err)) == 0 && got > 0)
		total += got;
	assert_int_equal(rc, -1);
	assert_string_equal(err, "source gone");
	free(err);
	assert_int_equal(cowd_stream_read(s, buf, sizeof(buf), &got, &err), -1);
	free(err);
	/* Rewound, it runs again (the source now answers). */
	cowd_stream_rewind(s);
	src.fail_at = 0;
	total = 0;
	while (cowd_stream_read(s, buf, sizeof(buf), &got, &err) == 0 && got > 0)
		total += got;
	assert_true(total == cowd_stream_size(s));
	cowd_stream_free(s);
}

static void
test_capacity(void **state)
{
	char *err = NULL;

	(void)state;
	assert_int_equal(cowd_capacity_check(COWD_MAX_CAPACITY, &err), 0);
	assert_int_equal(cowd_capacity_check(512, &err), 0);
	assert_int_equal(cowd_capacity_check(2ull << 40, &err), -1);
	assert_non_null(strstr(err, "2 TiB"));
	free(err);
	assert_int_equal(cowd_capacity_check(0, &err), -1);
	free(err);
	/* Not a whole number of sectors: its last sector is taken whole. */
	assert_int_equal(cowd_capacity_check(1000, &err), 0);
	assert_int_equal(cowd_capacity_check(COWD_MAX_CAPACITY + 1, &err), -1);
	free(err);
}

/* What a datastore's type tells before any snapshot: VMFS 6 and later
 * make seSparse deltas; VMFS 5, NFS and an unknown type do not say no
 * (the first delta's descriptor decides). */
static void
test_datastore_type(void **state)
{
	char *err = (char *)"x";

	(void)state;
	assert_int_equal(cowd_datastore_check("ds6", "VMFS", 6, &err), -1);
	assert_string_equal(err, "datastore ds6 is VMFS 6: its snapshot deltas are seSparse, which nobody outside VMware "
	                         "writes");
	free(err);
	assert_int_equal(cowd_datastore_check("ds7", "VMFS", 7, &err), -1);
	assert_non_null(strstr(err, "ds7 is VMFS 7"));
	free(err);
	assert_int_equal(cowd_datastore_check("ds5", "VMFS", 5, &err), 0);
	assert_null(err);
	assert_int_equal(cowd_datastore_check("ds0", "VMFS", 0, &err), 0);
	assert_int_equal(cowd_datastore_check("nfs", "NFS", 0, &err), 0);
	assert_int_equal(cowd_datastore_check("nfs", "NFS41", 6, &err), 0);
	assert_int_equal(cowd_datastore_check("ds0", "OTHER", 0, &err), 0);
	assert_int_equal(cowd_datastore_check("ds0", NULL, 6, &err), 0);
	assert_null(err);
}

static const char delta_desc[] = "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\n"
				 "parentCID=a1b2c3d4\nisNativeSnapshot=\"no\"\ncreateType=\"vmfsSparse\"\n"
				 "parentFileNameHint=\"web01.vmdk\"\n# Extent description\n"
				 "RW 16384 VMFSSPARSE \"web01-000001-delta.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n"
				 "ddb.longContentID = \"0f1e2d3c4b5a69788796a5b4fffffffe\"\n";

static void
test_delta_descriptor(void **state)
{
	static const struct {
		const char *from, *to, *why;
	} bad[] = {
		{ "createType=\"vmfsSparse\"", "createType=\"seSparse\"", "seSparse" },
		{ "createType=\"vmfsSparse\"", "createType=\"vmfs\"", "createType vmfs" },
		{ "VMFSSPARSE", "SESPARSE", "extent type SESPARSE" },
		{ "parentFileNameHint=\"web01.vmdk\"", "", "parentFileNameHint" },
		{ "parentCID=a1b2c3d4", "parentCID=xyz", "parentCID" },
		{ "parentCID=a1b2c3d4", "parentCID=123456789", "parentCID" },
		{ "\"web01-000001-delta.vmdk\"", "\"../x-delta.vmdk\"", "plain file name" },
		{ "RW 16384", "RW 16383", "16383 sectors" },
		{ "version=1", "garbage", "delta descriptor: line" },
	};
	struct vmdk_desc d;
	char *file = NULL, *err = NULL;
	size_t i;

	(void)state;
	assert_int_equal(vmdk_parse(delta_desc, strlen(delta_desc), &d, &err), 0);
	assert_true(d.has_cid && d.cid == 0xfffffffe);
	assert_true(d.has_parent_cid && d.parent_cid == 0xa1b2c3d4);
	assert_string_equal(vmdk_delta_file(&d, &err), "web01-000001-delta.vmdk");
	vmdk_free(&d);
	assert_int_equal(cowd_delta_check(delta_desc, strlen(delta_desc), 8 * MiB, &file, &err), 0);
	assert_string_equal(file, "web01-000001-delta.vmdk");
	free(file);
	assert_int_equal(cowd_delta_check(delta_desc, strlen(delta_desc), 4ull << 40, &file, &err), -1);
	assert_null(file);
	assert_non_null(strstr(err, "over the vmfsSparse (COWD) limit"));
	free(err);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *at = strstr(delta_desc, bad[i].from);
		char *text;

		assert_non_null(at);
		text = xasprintf("%.*s%s%s", (int)(at - delta_desc), delta_desc, bad[i].to, at + strlen(bad[i].from));
		assert_int_equal(cowd_delta_check(text, strlen(text), 8 * MiB, &file, &err), -1);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("case %zu: \"%s\" does not say %s", i, err, bad[i].why);
		free(err);
		free(text);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_datastore_type),
		cmocka_unit_test(test_delta_descriptor),
		cmocka_unit_test(test_areas_bad),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_source_fails),
		cmocka_unit_test(test_no_area),
		cmocka_unit_test(test_one_grain),
		cmocka_unit_test(test_partial_edges),
		cmocka_unit_test(test_gt_boundary),
		cmocka_unit_test(test_many_small),
		cmocka_unit_test(test_whole_disk),
		cmocka_unit_test(test_zero_parent),
		cmocka_unit_test(test_larger_grains),
		cmocka_unit_test(test_largest_disk),
	};
	int rc;

	have_qemu = system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") == 0;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (rc == 0 && !have_qemu) {
		printf("SKIP: qemu-img or qemu-io not found (apt-get install qemu-utils): the deltas were not read back\n");
		return 77;
	}
	return rc;
}
