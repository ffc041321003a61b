/* Small helpers shared by every part of vmferry: allocation that never
 * returns NULL, growable strings, byte-order codecs for stored records. */
#ifndef VMFERRY_UTIL_H
#define VMFERRY_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory is fatal: there is no useful way to go on. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t size);
/* Room for element n (0-based) of an array that holds n, built only by
 * xgrow: doubles as it fills, so appending n elements costs O(n). */
void *xgrow(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Growable byte string; always NUL-terminated. */
struct sbuf {
	char *data;
	size_t len;
	size_t cap;
};
void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_add(struct sbuf *b, const void *p, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sbuf_steal(struct sbuf *b);

/* Big-endian codecs for persisted records. */
void put_be16(uint8_t *p, uint16_t v);
void put_be32(uint8_t *p, uint32_t v);
void put_be64(uint8_t *p, uint64_t v);
uint16_t get_be16(const uint8_t *p);
uint32_t get_be32(const uint8_t *p);
uint64_t get_be64(const uint8_t *p);

/* Clocks: monotonic seconds for intervals, wall clock for display/schedules. */
double now_mono(void);
double now_wall(void);

/* Write a file whole and durably: a temporary beside it, fsync, rename.
 * Returns 0, or -1 with *err (malloc'd) naming the path and the error. */
int write_file_atomic(const char *path, const char *data, size_t len, char **err);

int str_eq(const char *a, const char *b);
/* Replace every byte that is not part of valid UTF-8 with '?', in place,
 * so that any text can go into a JSON string. */
void str_make_utf8(char *s);
/* Text for a log line or a terminal: control characters (C0, DEL, C1,
 * U+2028/U+2029) become \n, \t, \r, \xHH or \uHHHH and bytes that are
 * not UTF-8 become \xHH, so a name or a peer's message can neither start a
 * line of its own nor drive the terminal. */
void sbuf_add_printable(struct sbuf *b, const char *s);
char *str_printable(const char *s);
/* True when s is a safe single path component: no '/', no "." or "..",
 * no control characters. */
int file_name_is_safe(const char *s);
/* The same, and no '\\' either: names the engine gives its own objects. */
int name_is_safe(const char *s);

#endif
