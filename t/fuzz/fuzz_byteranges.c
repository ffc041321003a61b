/* multipart/byteranges answers from a datastore: any Content-Type line,
 * then any body, fed in reads of varying size.  The parser must never
 * hand on more bytes than the part it announced. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/byteranges.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t left;

static int
on_part(void *arg, uint64_t first, uint64_t last)
{
	if (last - first >= (1u << 20))
		return -1;
	left = last - first + 1;
	return 0;
}

static int
on_data(void *arg, const uint8_t *p, size_t n)
{
	if (n > left)
		abort();
	left -= n;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct br_sink sink = { on_part, on_data, NULL };
	const uint8_t *nl = memchr(data, '\n', size);
	char ct[256];
	size_t n, at, step;
	struct br_parser *b;
	char *err = NULL;

	if (nl == NULL || (size_t)(nl - data) >= sizeof(ct))
		return 0;
	n = (size_t)(nl - data);
	memcpy(ct, data, n);
	ct[n] = '\0';
	b = br_new(ct, &sink, &err);
	if (b == NULL) {
		free(err);
		return 0;
	}
	left = 0;
	data += n + 1;
	size -= n + 1;
	/* Read sizes from the body's own first byte: 1 to 256. */
	step = size > 0 ? (size_t)data[0] + 1 : 1;
	for (at = 0; at < size; at += step) {
		if (br_feed(b, data + at, size - at < step ? size - at : step, &err) != 0)
			break;
	}
	if (err == NULL)
		br_finish(b, &err);
	free(err);
	br_free(b);
	return 0;
}
