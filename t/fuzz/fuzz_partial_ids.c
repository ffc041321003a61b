/* A backup's partial index file (TEMP_DIR/.../diskN.ids, what a point in
 * progress has stored so far, read again after a restart), any bytes.
 *
 * The first byte chooses the disk's capacity (in 4 MiB chunks, 0-255)
 * and whether the file's header is the right one for point 7, pass 3 and
 * that capacity (odd: the header is written here, so that the records
 * behind it are read) or the fuzzer's own (even: the file starts over).
 * What loads must hold together: one slot per chunk, slots marked set only
 * where the file said so, and the file left as a valid header. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/repo.h"
#include "engine/core/util.h"
#include "engine/jobs/backup_sink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fuzz_partial_ids.XXXXXX";
	uint8_t head[32];
	uint64_t capacity, i, n;
	struct bak_ids x;
	char *err = NULL;
	FILE *f;
	int fd;

	if (size == 0)
		return 0;
	capacity = (uint64_t)(data[0] >> 1) * 4 * 1048576 + (data[0] & 2 ? 512 : 0);
	if ((fd = mkstemp(path)) < 0 || (f = fdopen(fd, "w")) == NULL)
		abort();
	if (data[0] & 1) {
		memcpy(head, "vmfids01", 8);
		put_be64(head + 8, 7);
		put_be64(head + 16, 3);
		put_be64(head + 24, capacity);
		fwrite(head, 1, sizeof(head), f);
	}
	fwrite(data + 1, 1, size - 1, f);
	fclose(f);
	if (bak_ids_load(path, 7, 3, capacity, &x, &err) != 0) {
		if (err == NULL)
			abort();
		free(err);
	} else {
		n = repo_disk_chunks(capacity);
		if (x.nchunks != n)
			abort();
		for (i = 0; i < n; i++)
			if (x.set[i] > 1)
				abort();
		bak_ids_free(&x);
	}
	unlink(path);
	return 0;
}
