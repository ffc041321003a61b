/* The only file that talks to libzstd.  Chunks of the backup repository
 * are zstd frames of level 1 that carry their content size and zstd's
 * frame checksum (XXH64 of the content), so a damaged frame is found by
 * the decoder itself.  Thread-safe: every call has its own context. */
#ifndef VMFERRY_COMPRESS_H
#define VMFERRY_COMPRESS_H

#include <stddef.h>

/* in[0..len) as one frame into out (room for cap bytes): the frame's
 * size, or 0 when it does not fit in cap (so a caller that passes
 * cap = len - 1 learns that compression would not save a byte). */
size_t compress_zstd(const void *in, size_t len, void *out, size_t cap);

/* Whether compress_zstd of in[0..len) may save anything: false only
 * when none of a few samples spread over it shrinks by 1/64 (random or
 * already compressed data), at about 2 % of the cost of compressing it
 * all.  A chunk compressible only between the samples stays plain. */
int compress_worth(const void *in, size_t len);

/* One frame in[0..len) that must decode to exactly want bytes into out:
 * 0, or -1 with *err (malloc'd) saying what is wrong with it. */
int compress_unzstd(const void *in, size_t len, void *out, size_t want, char **err);

#endif
