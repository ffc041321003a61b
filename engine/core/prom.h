/* The Prometheus text exposition format (version 0.0.4), written by hand:
 * Debian has no well-kept C library for it, and it is small.  Families
 * with HELP and TYPE, samples with labels whose values are escaped
 * (backslash, double quote, newline) and made valid UTF-8, since a VM's
 * name is whatever a platform sends. */
#ifndef VMFERRY_PROM_H
#define VMFERRY_PROM_H

#include <stdint.h>

struct evbuffer;

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (gauge, counter, histogram). */
void prom_family(struct evbuffer *b, const char *name, const char *type, const char *help);
/* name{k="v",...} value; labels is NULL or { key, value, ..., NULL }. */
void prom_sample(struct evbuffer *b, const char *name, const char *const *labels, double value);
void prom_sample_u64(struct evbuffer *b, const char *name, const char *const *labels, uint64_t value);
/* A label set written once, {k="v",...} (malloc'd; "" without labels),
 * for many samples: a job's labels for each of its families. */
char *prom_labels(const char *const *labels);
void prom_sample_with(struct evbuffer *b, const char *name, const char *labels, uint64_t value);
/* A label value as the format writes it between its quotes. */
void prom_escape(struct evbuffer *b, const char *value);

#endif
