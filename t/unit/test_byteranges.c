/* multipart/byteranges answers: every part's bytes reach the place its
 * Content-Range names, however the body is split into reads; malformed,
 * oversized and truncated answers end in an error that says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/core/byteranges.h"
#include "engine/core/util.h"

#define DISK 4096

static uint8_t src[DISK];
static uint8_t dst[DISK];
static uint64_t pos;
static int parts;
static uint64_t refuse_from = UINT64_MAX;

static int
on_part(void *arg, uint64_t first, uint64_t last)
{
	if (first >= refuse_from || last >= DISK)
		return -1;
	pos = first;
	parts++;
	return 0;
}

static int
on_data(void *arg, const uint8_t *p, size_t n)
{
	assert_true(pos + n <= DISK);
	memcpy(dst + pos, p, n);
	pos += n;
	return 0;
}

static const struct br_sink sink = { on_part, on_data, NULL };

/* A body as Go's http.ServeContent writes it. */
static char *
body_of(const char *boundary, const uint64_t (*r)[2], size_t n, const char *close, size_t *len)
{
	char *b = xmalloc(65536);
	size_t i, at = 0;

	for (i = 0; i < n; i++) {
		at += (size_t)snprintf(b + at, 65536 - at,
		    "%s--%s\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes %llu-%llu/%d\r\n\r\n",
		    i ? "\r\n" : "", boundary, (unsigned long long)r[i][0], (unsigned long long)r[i][1], DISK);
		memcpy(b + at, src + r[i][0], (size_t)(r[i][1] - r[i][0] + 1));
		at += (size_t)(r[i][1] - r[i][0] + 1);
	}
	at += (size_t)snprintf(b + at, 65536 - at, "\r\n--%s%s", boundary, close);
	*len = at;
	return b;
}

/* Feed in pieces of `step` bytes; 0 or -1, *err set on -1. */
static int
feed(const char *ct, const char *body, size_t len, size_t step, char **err)
{
	struct br_parser *b = br_new(ct, &sink, err);
	size_t at;
	int rc = 0;

	if (b == NULL)
		return -1;
	memset(dst, 0, sizeof(dst));
	parts = 0;
	for (at = 0; at < len && rc == 0; at += step)
		rc = br_feed(b, body + at, len - at < step ? len - at : step, err);
	if (rc == 0)
		rc = br_finish(b, err);
	br_free(b);
	return rc;
}

static void
assert_fails(const char *ct, const char *body, size_t len, const char *why)
{
	size_t steps[] = { 1, 7, 4096, 100000 };
	size_t i;

	for (i = 0; i < 4; i++) {
		char *err = NULL;

		assert_int_equal(feed(ct, body, len, steps[i], &err), -1);
		assert_non_null(err);
		if (strstr(err, why) == NULL)
			fail_msg("error \"%s\" does not say \"%s\"", err, why);
		free(err);
	}
}

static void
test_parts_land_where_they_belong(void **state)
{
	static const uint64_t r[3][2] = { { 0, 99 }, { 1000, 1000 }, { 2048, 4095 } };
	size_t len, step, i;
	char *body;

	for (i = 0; i < DISK; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	body = body_of("3d6b6a416f9b5", r, 3, "--\r\n", &len);
	for (step = 1; step <= len; step = step * 3 + 1) {
		char *err = NULL;

		assert_int_equal(feed("multipart/byteranges; boundary=3d6b6a416f9b5", body, len, step, &err), 0);
		assert_int_equal(parts, 3);
		for (i = 0; i < DISK; i++) {
			int inside = i < 100 || i == 1000 || i >= 2048;

			if (dst[i] != (inside ? src[i] : 0))
				fail_msg("byte %zu wrong with reads of %zu bytes", i, step);
		}
	}
	free(body);
}

static void
test_content_types(void **state)
{
	static const uint64_t r[1][2] = { { 5, 9 } };
	size_t len;
	char *err = NULL, *body = body_of("a b", r, 1, "--", &len);

	/* A quoted boundary, other parameters, any case. */
	assert_int_equal(feed("Multipart/ByteRanges; charset=x; boundary=\"a b\"", body, len, 3, &err), 0);
	assert_int_equal(parts, 1);
	assert_memory_equal(dst + 5, src + 5, 5);
	free(body);
	assert_null(br_new("application/octet-stream", &sink, &err));
	assert_non_null(strstr(err, "not a multipart/byteranges answer"));
	free(err);
	assert_null(br_new("multipart/byteranges", &sink, &err));
	free(err);
	assert_null(br_new("multipart/byteranges; boundary=", &sink, &err));
	free(err);
	assert_null(br_new("multipart/byteranges; boundary=\"unterminated", &sink, &err));
	free(err);
	assert_null(br_new("multipart/byteranges; boundary=0123456789012345678901234567890123456789012345678901234567890123456789x",
	    &sink, &err));
	free(err);
	assert_null(br_new(NULL, &sink, &err));
	free(err);
}

static void
test_content_range(void **state)
{
	uint64_t a, b;

	assert_int_equal(br_content_range("bytes 0-0/1", &a, &b), 0);
	assert_true(a == 0 && b == 0);
	assert_int_equal(br_content_range("bytes 10-19/*", &a, &b), 0);
	assert_true(a == 10 && b == 19);
	assert_int_equal(br_content_range("bytes 10-19/20\r", &a, &b), 0);
	assert_int_equal(br_content_range("bytes 10-20/20", &a, &b), -1);
	assert_int_equal(br_content_range("bytes 19-10/20", &a, &b), -1);
	assert_int_equal(br_content_range("bytes -10/20", &a, &b), -1);
	assert_int_equal(br_content_range("bytes 1-2", &a, &b), -1);
	assert_int_equal(br_content_range("bytes 1-2/3x", &a, &b), -1);
	assert_int_equal(br_content_range("items 1-2/3", &a, &b), -1);
	assert_int_equal(br_content_range("bytes 99999999999999999999-1/2", &a, &b), -1);
	assert_int_equal(br_content_range("bytes 9223372036854775808-9223372036854775808/*", &a, &b), -1);
}

static void
test_malformed_answers(void **state)
{
	static const uint64_t r[2][2] = { { 0, 9 }, { 20, 29 } };
	const char *ct = "multipart/byteranges; boundary=B";
	size_t len;
	char *body, big[2048];

	body = body_of("B", r, 2, "--", &len);
	/* Cut anywhere before the closing delimiter. */
	assert_fails(ct, body, len - 4, "ended before its closing delimiter");
	assert_fails(ct, body, (size_t)(strstr(body, "\r\n\r\n") - body) + 4 + 5, "cut short inside its bytes");
	free(body);

	static const struct {
		const char *body, *why;
	} bad[] = {
		{ "--B\r\nContent-Type: x\r\n\r\n0123\r\n--B--", "a part without a Content-Range" },
		{ "--B\r\nContent-Range: bytes 0-3/10\r\n\r\n012345\r\n--B--", "more bytes than its Content-Range announced" },
		{ "--B\r\nContent-Range: bytes 0-3/10\r\n\r\n0123\r\n--C--\r\n", "no delimiter after the part's bytes" },
		{ "--B\r\nContent-Range: bytes 0-3/10\r\nContent-Range: bytes 0-3/10\r\n\r\n0123\r\n--B--",
		    "a Content-Range that is not one range of bytes" },
		{ "--B\r\nContent-Range: bytes 5000-5003/9000\r\n\r\n0123\r\n--B--", "a part outside the ranges asked for" },
		{ "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq\n--B\r\n", "no delimiter where the parts should begin" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_fails(ct, bad[i].body, strlen(bad[i].body), bad[i].why);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	body = xasprintf("--B\r\nX-Long: %s\r\n", big);
	assert_fails(ct, body, strlen(body), "a line longer than 1024 bytes");
	free(body);
	body = xmalloc(8192);
	len = (size_t)snprintf(body, 8192, "--B\r\nContent-Range: bytes 0-0/1\r\n\r\n0\r\n--B--\r\n");
	memset(body + len, 'e', 8192 - len);
	assert_fails(ct, body, 8192, "more than 4096 bytes after the closing delimiter");
	free(body);
	body = xmalloc(1024);
	len = (size_t)snprintf(body, 1024, "--B\r\n");
	for (i = 0; i < 40; i++)
		len += (size_t)snprintf(body + len, 1024 - len, "X: y\r\n");
	assert_fails(ct, body, len, "too many header lines");
	free(body);
}

/* A preamble and transport padding are allowed; the close may come at
 * once (no parts). */
static void
test_preamble_and_padding(void **state)
{
	const char *ct = "multipart/byteranges; boundary=B";
	char *err = NULL;
	const char *body = "\r\nignored preamble\r\n--B  \r\nContent-Range: bytes 3-4/10\r\n\r\nxy\r\n--B-- \r\nepilogue";

	assert_int_equal(feed(ct, body, strlen(body), 5, &err), 0);
	assert_int_equal(parts, 1);
	assert_memory_equal(dst + 3, "xy", 2);
	assert_int_equal(feed(ct, "--B--", 5, 1, &err), 0);
	assert_int_equal(parts, 0);
	assert_int_equal(feed(ct, "--B--\r", 6, 2, &err), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_land_where_they_belong),
		cmocka_unit_test(test_content_types),
		cmocka_unit_test(test_content_range),
		cmocka_unit_test(test_malformed_answers),
		cmocka_unit_test(test_preamble_and_padding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
