/* nbdkit-vmferry-plugin.so: one disk of a backup point served read-only
 * straight from the repository (SPEC §11, instant recovery).  The only
 * file that talks to nbdkit; the reading is drivers/repo_export.c's.
 *
 *   nbdkit --filter=cow nbdkit-vmferry-plugin.so repo=DIR [key_file=PATH] \
 *       rule=R vm=V point=N disk=N [cache=N]
 *
 * The engine starts one such nbdkit per disk (engine/jobs/instant.c); the
 * cow filter above it keeps the running VM's writes in an overlay, since
 * this plugin never writes (nbdkit opens it read-only). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "drivers/repo.h"
#include "drivers/repo_export.h"

/* Reads of different chunks go on in parallel; the cache has its lock. */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct repo_export_conf conf;
static struct repo_export *disk;

static void
vf_load(void)
{
	repo_export_conf_init(&conf);
}

static void
vf_unload(void)
{
	uint64_t hits, misses;

	if (disk != NULL) {
		repo_export_stats(disk, &hits, &misses);
		nbdkit_debug("vmferry: chunk cache: %llu hits, %llu misses", (unsigned long long)hits,
		    (unsigned long long)misses);
		repo_export_close(disk);
	}
	repo_export_conf_free(&conf);
}

static int
vf_config(const char *key, const char *value)
{
	char *err = NULL;

	if (repo_export_conf_set(&conf, key, value, &err) != 0) {
		nbdkit_error("vmferry: %s: %s", key, err);
		free(err);
		return -1;
	}
	return 0;
}

static int
vf_config_complete(void)
{
	char *err = NULL;

	if (repo_export_conf_check(&conf, &err) != 0) {
		nbdkit_error("vmferry: %s", err);
		free(err);
		return -1;
	}
	return 0;
}

/* Before nbdkit listens and goes to the background: a point that cannot
 * be read fails the start, so whoever started it sees why. */
static int
vf_get_ready(void)
{
	char *err = NULL;

	if (repo_export_open(&conf, &disk, &err) != 0) {
		nbdkit_error("vmferry: %s", err);
		free(err);
		return -1;
	}
	return 0;
}

static void *
vf_open(int readonly)
{
	/* One disk per process: the handle only has to be non-NULL. */
	return &disk;
}

static int64_t
vf_get_size(void *handle)
{
	return (int64_t)repo_export_size(disk);
}

/* Every client sees the same bytes. */
static int
vf_can_multi_conn(void *handle)
{
	return 1;
}

static int
vf_can_cache(void *handle)
{
	return NBDKIT_CACHE_EMULATE;
}

static int
vf_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	char *err = NULL;

	if (repo_export_read(disk, buf, count, offset, &err) != 0) {
		nbdkit_error("vmferry: %s", err);
		free(err);
		nbdkit_set_error(EIO);
		return -1;
	}
	return 0;
}

/* The zero chunks (never stored) are holes; the others are data. */
static int
vf_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags, struct nbdkit_extents *extents)
{
	uint64_t end = offset + count, size = repo_export_size(disk);

	if (end > size)
		end = size;
	while (offset < end) {
		uint64_t i = offset / REPO_CHUNK_SIZE, next = (i + 1) * REPO_CHUNK_SIZE;
		uint32_t type = repo_export_chunk_zero(disk, i) ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0;

		if (next > end)
			next = end;
		if (nbdkit_add_extent(extents, offset, next - offset, type) != 0)
			return -1;
		offset = next;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "vmferry",
	.longname = "vmferry backup repository",
	.description = "one disk of a vmferry backup point, read-only, straight from the repository",
	.load = vf_load,
	.unload = vf_unload,
	.config = vf_config,
	.config_complete = vf_config_complete,
	.config_help = "repo=DIR [key_file=PATH] rule=NAME vm=NAME point=N disk=N [cache=CHUNKS]",
	.get_ready = vf_get_ready,
	.open = vf_open,
	.get_size = vf_get_size,
	.can_multi_conn = vf_can_multi_conn,
	.can_cache = vf_can_cache,
	.pread = vf_pread,
	.extents = vf_extents,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
