#include "engine/core/byteranges.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/core/util.h"

/* Delimiter and header lines; RFC 2046 boundaries have at most 70. */
#define BR_LINE_MAX 1024
#define BR_BOUNDARY_MAX 70
/* Lines before the first delimiter, header lines of one part. */
#define BR_PREAMBLE_LINES 16
#define BR_HEADER_LINES 32
/* Bytes after the closing delimiter (ignored) at most. */
#define BR_EPILOGUE_MAX 4096

enum br_state {
	BR_PREAMBLE,    /* before the first delimiter */
	BR_HEADERS,     /* a part's header lines */
	BR_DATA,        /* a part's bytes */
	BR_AFTER_DATA,  /* the line break that ends a part's bytes */
	BR_DELIM,       /* a delimiter: the next part, or the close */
	BR_EPILOGUE,    /* after the close: ignored */
	BR_FAILED,
};

struct br_parser {
	struct br_sink sink;
	char boundary[BR_BOUNDARY_MAX + 1];
	size_t blen;
	enum br_state state;
	char line[BR_LINE_MAX + 1];
	size_t llen;
	int lines;               /* preamble or header lines so far */
	int have_range;
	uint64_t first, last;
	uint64_t remaining;      /* bytes of the current part still to come */
	uint64_t parts;
	size_t epilogue;
};

static int
parse_u64(const char **s, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
		p++;
	}
	*s = p;
	*out = v;
	return 0;
}

int
br_content_range(const char *v, uint64_t *first, uint64_t *last)
{
	uint64_t a, b, total;

	if (strncasecmp(v, "bytes", 5) != 0 || (v[5] != ' ' && v[5] != '\t'))
		return -1;
	v += 5;
	while (*v == ' ' || *v == '\t')
		v++;
	if (parse_u64(&v, &a) != 0 || *v++ != '-' || parse_u64(&v, &b) != 0 || *v++ != '/')
		return -1;
	if (*v == '*') {
		v++;
	} else if (parse_u64(&v, &total) != 0 || b >= total) {
		return -1;
	}
	while (*v == ' ' || *v == '\t' || *v == '\r')
		v++;
	/* Offsets past 2^63 are no disk's. */
	if (*v != '\0' || a > b || b >= (UINT64_C(1) << 63))
		return -1;
	*first = a;
	*last = b;
	return 0;
}

/* The boundary parameter of a multipart/byteranges Content-Type. */
static int
parse_boundary(const char *ct, char *out, size_t *outlen)
{
	const char *p = ct;
	static const char type[] = "multipart/byteranges";

	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, type, sizeof(type) - 1) != 0)
		return -1;
	p += sizeof(type) - 1;
	while (*p != '\0') {
		const char *name;
		size_t nlen, n = 0;
		int quoted;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != ';')
			return -1;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		name = p;
		while (*p != '\0' && *p != '=' && *p != ';' && *p != ' ')
			p++;
		nlen = (size_t)(p - name);
		if (*p != '=')
			return -1;
		p++;
		quoted = *p == '"';
		if (quoted)
			p++;
		while (*p != '\0' && (quoted ? *p != '"' : (*p != ';' && *p != ' ' && *p != '\t'))) {
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				return -1;
			if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
				if (n >= BR_BOUNDARY_MAX)
					return -1;
				out[n] = *p;
			}
			n++;
			p++;
		}
		if (quoted) {
			if (*p != '"')
				return -1;
			p++;
		}
		if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
			if (n == 0 || out[n - 1] == ' ')
				return -1;
			out[n] = '\0';
			*outlen = n;
			return 0;
		}
	}
	return -1;
}

struct br_parser *
br_new(const char *content_type, const struct br_sink *sink, char **err)
{
	struct br_parser *b = xcalloc(1, sizeof(*b));

	if (content_type == NULL || parse_boundary(content_type, b->boundary, &b->blen) != 0) {
		*err = xasprintf("not a multipart/byteranges answer with a boundary (Content-Type: %.80s)",
		    content_type != NULL ? content_type : "none");
		free(b);
		return NULL;
	}
	b->sink = *sink;
	b->state = BR_PREAMBLE;
	return b;
}

static int
br_fail(struct br_parser *b, char **err, const char *why)
{
	b->state = BR_FAILED;
	*err = xasprintf("multipart/byteranges answer, part %llu: %s", (unsigned long long)b->parts + 1, why);
	return -1;
}

/* 1: the line is a delimiter (*close tells which kind), 0: it is not. */
static int
is_delimiter(const struct br_parser *b, const char *line, size_t len, int *close)
{
	const char *rest;

	if (len < 2 + b->blen || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b->boundary, b->blen) != 0)
		return 0;
	rest = line + 2 + b->blen;
	*close = rest[0] == '-' && rest[1] == '-';
	if (*close)
		rest += 2;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	return *rest == '\0';
}

/* One whole line (without its line break). */
static int
br_line(struct br_parser *b, char **err)
{
	char *line = b->line;
	size_t len = b->llen;
	int close = 0;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	switch (b->state) {
	case BR_PREAMBLE:
		if (is_delimiter(b, line, len, &close)) {
			b->state = close ? BR_EPILOGUE : BR_HEADERS;
			b->lines = 0;
			b->have_range = 0;
		} else if (++b->lines > BR_PREAMBLE_LINES) {
			return br_fail(b, err, "no delimiter where the parts should begin");
		}
		return 0;
	case BR_AFTER_DATA:
		if (len != 0)
			return br_fail(b, err, "more bytes than its Content-Range announced");
		b->state = BR_DELIM;
		return 0;
	case BR_DELIM:
		if (!is_delimiter(b, line, len, &close))
			return br_fail(b, err, "no delimiter after the part's bytes");
		b->parts++;
		b->state = close ? BR_EPILOGUE : BR_HEADERS;
		b->lines = 0;
		b->have_range = 0;
		return 0;
	case BR_HEADERS:
		if (len == 0) {
			if (!b->have_range)
				return br_fail(b, err, "a part without a Content-Range");
			if (b->sink.part(b->sink.arg, b->first, b->last) != 0)
				return br_fail(b, err, "a part outside the ranges asked for");
			b->remaining = b->last - b->first + 1;
			b->state = BR_DATA;
			return 0;
		}
		if (++b->lines > BR_HEADER_LINES)
			return br_fail(b, err, "too many header lines");
		if (strncasecmp(line, "Content-Range:", 14) == 0) {
			const char *v = line + 14;

			while (*v == ' ' || *v == '\t')
				v++;
			if (b->have_range || br_content_range(v, &b->first, &b->last) != 0)
				return br_fail(b, err, "a Content-Range that is not one range of bytes");
			b->have_range = 1;
		}
		return 0;
	default:
		return 0;
	}
}

int
br_feed(struct br_parser *b, const void *data, size_t n, char **err)
{
	const uint8_t *p = data;

	while (n > 0) {
		if (b->state == BR_FAILED) {
			*err = xstrdup("multipart/byteranges answer: bytes after an error");
			return -1;
		}
		if (b->state == BR_EPILOGUE) {
			b->epilogue += n;
			if (b->epilogue > BR_EPILOGUE_MAX)
				return br_fail(b, err, "more than 4096 bytes after the closing delimiter");
			return 0;
		}
		if (b->state == BR_DATA) {
			size_t k = b->remaining < n ? (size_t)b->remaining : n;

			if (b->sink.data(b->sink.arg, p, k) != 0)
				return br_fail(b, err, "its bytes were refused");
			b->remaining -= k;
			p += k;
			n -= k;
			if (b->remaining == 0) {
				b->state = BR_AFTER_DATA;
				b->llen = 0;
			}
			continue;
		}
		{
			const uint8_t *nl = memchr(p, '\n', n);
			size_t k = nl != NULL ? (size_t)(nl - p) : n;

			if (b->llen + k > BR_LINE_MAX)
				return br_fail(b, err, "a line longer than 1024 bytes");
			memcpy(b->line + b->llen, p, k);
			b->llen += k;
			b->line[b->llen] = '\0';
			if (nl == NULL)
				return 0;
			if (memchr(b->line, '\0', b->llen) != NULL)
				return br_fail(b, err, "a NUL byte in a header line");
			p += k + 1;
			n -= k + 1;
			if (br_line(b, err) != 0)
				return -1;
			b->llen = 0;
		}
	}
	return 0;
}

int
br_finish(struct br_parser *b, char **err)
{
	int close = 0;

	/* The closing delimiter may end without a line break. */
	if (b->llen > 0 && b->line[b->llen - 1] == '\r')
		b->line[--b->llen] = '\0';
	if ((b->state == BR_DELIM || b->state == BR_PREAMBLE) && is_delimiter(b, b->line, b->llen, &close) && close)
		b->state = BR_EPILOGUE;
	if (b->state == BR_EPILOGUE)
		return 0;
	if (b->state == BR_FAILED) {
		*err = xstrdup("multipart/byteranges answer: failed before");
		return -1;
	}
	return br_fail(b, err, b->state == BR_DATA ? "cut short inside its bytes" : "the answer ended before its closing delimiter");
}

void
br_free(struct br_parser *b)
{
	free(b);
}
