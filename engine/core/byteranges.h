/* A streaming parser for multipart/byteranges bodies (RFC 9110 §14.6):
 * the answer of a server to a GET with several ranges.  Each part carries
 * a Content-Range and exactly that many bytes; the parser hands on where
 * each part belongs and its bytes as they arrive, never buffering a part.
 *
 * Bodies come from the network and may be anything: every malformed,
 * oversized or truncated input ends in an error message, never in a
 * write outside what a part's Content-Range announced. */
#ifndef VMFERRY_BYTERANGES_H
#define VMFERRY_BYTERANGES_H

#include <stddef.h>
#include <stdint.h>

struct br_parser;

struct br_sink {
	/* A part begins: its bytes first..last (inclusive) follow.  Return 0
	 * to take them, -1 to stop (the parser reports "refused"). */
	int (*part)(void *arg, uint64_t first, uint64_t last);
	/* Bytes of the current part, in order. */
	int (*data)(void *arg, const uint8_t *p, size_t n);
	void *arg;
};

/* From the response's Content-Type ("multipart/byteranges; boundary=...").
 * NULL and *err (malloc'd) when it is not one. */
struct br_parser *br_new(const char *content_type, const struct br_sink *sink, char **err);
/* 0, or -1 with *err (malloc'd); after an error the parser takes no more. */
int br_feed(struct br_parser *b, const void *p, size_t n, char **err);
/* The body ended: 0 if it was complete (its closing delimiter seen). */
int br_finish(struct br_parser *b, char **err);
void br_free(struct br_parser *b);

/* Parse "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"): 0 or -1. */
int br_content_range(const char *v, uint64_t *first, uint64_t *last);

#endif
