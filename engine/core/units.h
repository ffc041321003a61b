/* Parsing and printing of the units users write: sizes, rates, clock
 * times and certificate fingerprints. */
#ifndef VMFERRY_UNITS_H
#define VMFERRY_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* "4MiB", "512KiB", "1GiB", "2TiB", "100KB"/"5MB"/"1GB" (decimal), "4096"
 * (bytes).  Returns 0, or -1 for anything else (incl. overflow, negatives). */
int units_parse_size(const char *s, uint64_t *out);
/* A size followed by "/s": "20MiB/s", "0". Plain "0" means 0. */
int units_parse_rate(const char *s, uint64_t *bps);
/* "HH:MM", 00:00..23:59, and "24:00" when allow_24 is set. */
int units_parse_hhmm(const char *s, int allow_24, int *minutes);
/* A hex digit's value, or -1. */
int units_hexval(char c);
/* A SHA-256 certificate fingerprint: 64 hex digits, with or without ':'
 * between bytes, optionally prefixed with "SHA256:".  Returns 0 or -1. */
int units_parse_thumbprint(const char *s, uint8_t out[32]);
/* "AB:CD:..." (95 characters + NUL). */
#define THUMBPRINT_STRLEN 96
void units_format_thumbprint(const uint8_t in[32], char out[THUMBPRINT_STRLEN]);
/* Human size: "0 B", "512 B", "4.0 KiB", "1.5 GiB". */
void units_format_size(uint64_t n, char *out, size_t outlen);
/* Day names mon..sun → 0..6, -1 if unknown. */
int units_parse_day(const char *s);

#endif
