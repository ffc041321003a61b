#include "drivers/compress.h"

#include <stdlib.h>

#include <zstd.h>

#include "engine/core/util.h"

size_t
compress_zstd(const void *in, size_t len, void *out, size_t cap)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t n;

	if (c == NULL)
		fatal("zstd: cannot make a compression context");
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1)))
		fatal("zstd: cannot set level 1 with checksums");
	n = ZSTD_compress2(c, out, cap, in, len);
	ZSTD_freeCCtx(c);
	/* The only error compress2 gives for valid arguments is a full
	 * output buffer: the data does not shrink. */
	return ZSTD_isError(n) ? 0 : n;
}

/* 4 samples of 16 KiB: a 4 MiB chunk is sampled every 1 MiB. */
#define SAMPLES 4
#define SAMPLE_LEN 16384

int
compress_worth(const void *in, size_t len)
{
	const unsigned char *p = in;
	ZSTD_CCtx *c;
	size_t cap = ZSTD_COMPRESSBOUND(SAMPLE_LEN), k, n;
	void *out;
	int worth = 0;

	if (len < SAMPLES * SAMPLE_LEN * 4)
		return 1;
	if ((c = ZSTD_createCCtx()) == NULL)
		fatal("zstd: cannot make a compression context");
	out = xmalloc(cap);
	for (k = 0; k < SAMPLES && !worth; k++) {
		n = ZSTD_compressCCtx(c, out, cap, p + k * (len / SAMPLES), SAMPLE_LEN, 1);
		worth = ZSTD_isError(n) || n < SAMPLE_LEN - SAMPLE_LEN / 64;
	}
	free(out);
	ZSTD_freeCCtx(c);
	return worth;
}

int
compress_unzstd(const void *in, size_t len, void *out, size_t want, char **err)
{
	unsigned long long size = ZSTD_getFrameContentSize(in, len);
	size_t n;

	*err = NULL;
	/* A frame that does not say its size, or says another, is refused
	 * before anything is decoded. */
	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
		*err = xstrdup("zstd frame: no valid frame header");
		return -1;
	}
	if (size != want) {
		*err = xasprintf("zstd frame: holds %llu bytes, %zu expected", size, want);
		return -1;
	}
	if (ZSTD_findFrameCompressedSize(in, len) != len) {
		*err = xstrdup("zstd frame: not exactly one frame");
		return -1;
	}
	n = ZSTD_decompress(out, want, in, len);
	if (ZSTD_isError(n)) {
		*err = xasprintf("zstd frame: %s", ZSTD_getErrorName(n));
		return -1;
	}
	if (n != want) {
		*err = xasprintf("zstd frame: decoded %zu bytes, %zu expected", n, want);
		return -1;
	}
	return 0;
}
