/* Persisted records: big-endian integers, strings as u16 length + bytes,
 * blobs as u32 length + bytes.  Writers append to an sbuf; readers take
 * from a bounded cursor that remembers when a record was too short. */
#ifndef VMFERRY_RECORD_H
#define VMFERRY_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/util.h"

void rec_put_u8(struct sbuf *b, uint8_t v);
void rec_put_u16(struct sbuf *b, uint16_t v);
void rec_put_u64(struct sbuf *b, uint64_t v);
void rec_put_str(struct sbuf *b, const char *s); /* NULL is stored as "" */
void rec_put_blob(struct sbuf *b, const void *p, size_t n);

struct rec_reader {
	const uint8_t *p;
	size_t n;
	int bad; /* set once a read ran past the end; later reads give 0/NULL */
};

void rec_reader_init(struct rec_reader *r, const void *p, size_t n);
uint8_t rec_get_u8(struct rec_reader *r);
uint16_t rec_get_u16(struct rec_reader *r);
uint64_t rec_get_u64(struct rec_reader *r);
/* A malloc'd string, "" included; NULL only when the record is short. */
char *rec_get_str(struct rec_reader *r);
/* The same, but an empty string reads as NULL (for optional fields). */
char *rec_get_opt_str(struct rec_reader *r);
/* A malloc'd copy (NULL when empty), its length in *len. */
uint8_t *rec_get_blob(struct rec_reader *r, size_t *len);

#endif
