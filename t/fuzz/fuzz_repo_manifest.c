/* A backup point's manifest.json, any bytes (a repository is a directory
 * anyone with access to the node can write into).
 *
 * The first byte chooses how the rest is used: odd, as the whole file;
 * even, as the manifest's body, wrapped here with its right checksum, so
 * that the fuzzer gets past the checksum into the body's parser.  What
 * parses must hold together: names that can be directories, a seq, a
 * parent before it for all but a full point, disks within the limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/crypto.h"
#include "drivers/repo.h"
#include "engine/core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repo_point *p;
	char *err = NULL, hex[65];
	uint8_t sum[32];
	struct sbuf b;
	size_t i;

	if (size == 0)
		return 0;
	sbuf_init(&b);
	if (data[0] & 1) {
		sbuf_add(&b, data + 1, size - 1);
	} else {
		crypto_sha256(data + 1, size - 1, sum);
		repo_id_hex(sum, hex);
		sbuf_printf(&b, "{\"checksum\":\"%s\",\"manifest\":", hex);
		sbuf_add(&b, data + 1, size - 1);
		sbuf_adds(&b, "}\n");
	}
	if (repo_manifest_parse(b.data, b.len, &p, &err) != 0) {
		if (err == NULL)
			abort();
		free(err);
		sbuf_free(&b);
		return 0;
	}
	if (p->rule == NULL || p->vm == NULL || !file_name_is_safe(p->rule) || !file_name_is_safe(p->vm) ||
	    p->seq == 0 || (p->mode == REPO_FULL) != (p->parent == 0) || (p->parent != 0 && p->parent >= p->seq) ||
	    p->ndisks > REPO_MAX_DISKS || strcmp(repo_mode_name(p->mode), "?") == 0)
		abort();
	for (i = 0; i < p->ndisks; i++)
		if (p->disks[i].capacity == 0 || p->disks[i].capacity > REPO_MAX_CAPACITY ||
		    p->disks[i].nchunks != repo_disk_chunks(p->disks[i].capacity) || p->disks[i].ids != NULL)
			abort();
	repo_point_free(p);
	sbuf_free(&b);
	return 0;
}
