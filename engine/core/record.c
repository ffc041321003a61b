#include "engine/core/record.h"

#include <stdlib.h>
#include <string.h>

void
rec_put_u8(struct sbuf *b, uint8_t v)
{
	sbuf_add(b, &v, 1);
}

void
rec_put_u16(struct sbuf *b, uint16_t v)
{
	uint8_t p[2];

	put_be16(p, v);
	sbuf_add(b, p, 2);
}

void
rec_put_u64(struct sbuf *b, uint64_t v)
{
	uint8_t p[8];

	put_be64(p, v);
	sbuf_add(b, p, 8);
}

void
rec_put_str(struct sbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n > UINT16_MAX)
		n = UINT16_MAX;
	rec_put_u16(b, (uint16_t)n);
	sbuf_add(b, s ? s : "", n);
}

void
rec_put_blob(struct sbuf *b, const void *p, size_t n)
{
	uint8_t l[4];

	put_be32(l, (uint32_t)n);
	sbuf_add(b, l, 4);
	sbuf_add(b, p, n);
}

void
rec_reader_init(struct rec_reader *r, const void *p, size_t n)
{
	r->p = p;
	r->n = n;
	r->bad = 0;
}

static const uint8_t *
rec_take(struct rec_reader *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || r->n < n) {
		r->bad = 1;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->n -= n;
	return p;
}

uint8_t
rec_get_u8(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 1);

	return p ? p[0] : 0;
}

uint16_t
rec_get_u16(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 2);

	return p ? get_be16(p) : 0;
}

uint64_t
rec_get_u64(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 8);

	return p ? get_be64(p) : 0;
}

char *
rec_get_str(struct rec_reader *r)
{
	uint16_t n = rec_get_u16(r);
	const uint8_t *p = rec_take(r, n);

	return p ? xstrndup((const char *)p, n) : NULL;
}

char *
rec_get_opt_str(struct rec_reader *r)
{
	char *s = rec_get_str(r);

	if (s != NULL && *s == '\0') {
		free(s);
		return NULL;
	}
	return s;
}

uint8_t *
rec_get_blob(struct rec_reader *r, size_t *len)
{
	const uint8_t *l = rec_take(r, 4), *p;
	uint8_t *out;
	uint32_t n;

	*len = 0;
	if (l == NULL)
		return NULL;
	n = get_be32(l);
	if ((p = rec_take(r, n)) == NULL || n == 0)
		return NULL;
	out = xmalloc(n);
	memcpy(out, p, n);
	*len = n;
	return out;
}
