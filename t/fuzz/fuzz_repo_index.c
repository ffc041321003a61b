/* A backup point's disk index (diskN.idx), any bytes.
 *
 * The first byte chooses how the rest is used: odd, as the whole file;
 * even, with its right checksum appended here, so that the fuzzer gets
 * past the checksum to the header's checks.  What parses must hold
 * together: a capacity within the limits, one id per 4 MiB of it, and
 * the file exactly that long. */
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
	struct repo_disk d;
	char *err = NULL;
	uint8_t sum[32];
	struct sbuf b;

	if (size == 0)
		return 0;
	sbuf_init(&b);
	sbuf_add(&b, data + 1, size - 1);
	if ((data[0] & 1) == 0) {
		crypto_sha256(data + 1, size - 1, sum);
		sbuf_add(&b, sum, sizeof(sum));
	}
	memset(&d, 0, sizeof(d));
	if (repo_index_parse(b.data, b.len, &d, &err) != 0) {
		if (err == NULL)
			abort();
		free(err);
		sbuf_free(&b);
		return 0;
	}
	if (d.capacity == 0 || d.capacity > REPO_MAX_CAPACITY || d.nchunks != repo_disk_chunks(d.capacity) ||
	    b.len != 32 + 32 * d.nchunks + 32 || d.ids == NULL ||
	    memcmp(d.ids, b.data + 32, 32 * d.nchunks) != 0)
		abort();
	free((void *)d.ids);
	sbuf_free(&b);
	return 0;
}
