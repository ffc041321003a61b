/* Unit tests for engine/core/units.c: sizes, rates, times, days, thumbprints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engine/core/units.h"

static void
test_size_ok(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "4096B", 4096 },
		{ "512KiB", 512ull << 10 },
		{ "4MiB", 4ull << 20 },
		{ "4 MiB", 4ull << 20 },
		{ "1GiB", 1ull << 30 },
		{ "2TiB", 2ull << 40 },
		{ "100KB", 100000 },
		{ "5MB", 5000000 },
		{ "1GB", 1000000000 },
		{ "3TB", 3000000000000ull },
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215TiB", 16777215ull << 40 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;

		assert_int_equal(units_parse_size(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
}

static void
test_size_bad(void **state)
{
	static const char *const bad[] = {
		"", " ", "MiB", "-1", "+1", "1.5MiB", "4M", "4mib", "4 ", " 4", "4  MiB", "4MiB/s",
		"0x10", "18446744073709551616", "16777216TiB", "99999999999999999999", "4 KiBx", "1e3",
	};
	size_t i;
	uint64_t v = 7;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(units_parse_size(bad[i], &v), -1);
		assert_true(v == 7);
	}
	assert_int_equal(units_parse_size(NULL, &v), -1);
}

static void
test_rate(void **state)
{
	uint64_t v = 1;

	(void)state;
	assert_int_equal(units_parse_rate("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(units_parse_rate("20MiB/s", &v), 0);
	assert_true(v == 20ull << 20);
	assert_int_equal(units_parse_rate("1000/s", &v), 0);
	assert_true(v == 1000);
	assert_int_equal(units_parse_rate("0/s", &v), 0);
	assert_true(v == 0);
	assert_int_equal(units_parse_rate("10 MB/s", &v), 0);
	assert_true(v == 10000000);
	assert_int_equal(units_parse_rate("20MiB", &v), -1);
	assert_int_equal(units_parse_rate("1000", &v), -1);
	assert_int_equal(units_parse_rate("/s", &v), -1);
	assert_int_equal(units_parse_rate("s", &v), -1);
	assert_int_equal(units_parse_rate("20MiB/h", &v), -1);
	assert_int_equal(units_parse_rate("", &v), -1);
	assert_int_equal(units_parse_rate(NULL, &v), -1);
}

static void
test_hhmm(void **state)
{
	int m = -1;

	(void)state;
	assert_int_equal(units_parse_hhmm("00:00", 0, &m), 0);
	assert_int_equal(m, 0);
	assert_int_equal(units_parse_hhmm("23:59", 0, &m), 0);
	assert_int_equal(m, 23 * 60 + 59);
	assert_int_equal(units_parse_hhmm("8:05", 0, &m), 0);
	assert_int_equal(m, 485);
	assert_int_equal(units_parse_hhmm("24:00", 1, &m), 0);
	assert_int_equal(m, 1440);
	m = -1;
	assert_int_equal(units_parse_hhmm("24:00", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("24:01", 1, &m), -1);
	assert_int_equal(units_parse_hhmm("25:00", 1, &m), -1);
	assert_int_equal(units_parse_hhmm("12:60", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("12:5", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("123:00", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("12:00:00", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("12-00", 0, &m), -1);
	assert_int_equal(units_parse_hhmm(" 1:00", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("", 0, &m), -1);
	assert_int_equal(units_parse_hhmm(":", 0, &m), -1);
	assert_int_equal(units_parse_hhmm("9am", 0, &m), -1);
	assert_int_equal(units_parse_hhmm(NULL, 0, &m), -1);
	assert_int_equal(m, -1);
}

static void
test_day(void **state)
{
	static const char *const days[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	int i;

	(void)state;
	for (i = 0; i < 7; i++)
		assert_int_equal(units_parse_day(days[i]), i);
	assert_int_equal(units_parse_day("Mon"), -1);
	assert_int_equal(units_parse_day("monday"), -1);
	assert_int_equal(units_parse_day(""), -1);
	assert_int_equal(units_parse_day("mo"), -1);
	assert_int_equal(units_parse_day(NULL), -1);
}

static void
test_thumbprint(void **state)
{
	const char *plain = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
	const char *colons = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
	    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
	uint8_t a[32], b[32], c[32];
	char out[THUMBPRINT_STRLEN];
	char prefixed[128];

	(void)state;
	assert_int_equal(units_parse_thumbprint(plain, a), 0);
	assert_int_equal(units_parse_thumbprint(colons, b), 0);
	assert_memory_equal(a, b, 32);
	snprintf(prefixed, sizeof(prefixed), "SHA256:%s", colons);
	assert_int_equal(units_parse_thumbprint(prefixed, c), 0);
	assert_memory_equal(a, c, 32);
	snprintf(prefixed, sizeof(prefixed), "sha256:%s", plain);
	assert_int_equal(units_parse_thumbprint(prefixed, c), 0);
	assert_memory_equal(a, c, 32);
	assert_int_equal(a[0], 0x00);
	assert_int_equal(a[9], 0x99);
	assert_int_equal(a[31], 0xff);

	units_format_thumbprint(a, out);
	assert_string_equal(out, colons);
	assert_int_equal(strlen(out), THUMBPRINT_STRLEN - 1);

	/* too short, SHA-1, bad hex, mixed separators, trailing junk */
	assert_int_equal(units_parse_thumbprint("00:11:22", c), -1);
	assert_int_equal(units_parse_thumbprint(
	    "SHA1:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33", c), -1);
	assert_int_equal(units_parse_thumbprint(
	    "g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", c), -1);
	assert_int_equal(units_parse_thumbprint(
	    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF-"
	    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", c), -1);
	assert_int_equal(units_parse_thumbprint(
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0", c), -1);
	assert_int_equal(units_parse_thumbprint("", c), -1);
	assert_int_equal(units_parse_thumbprint(NULL, c), -1);
}

static void
test_format_size(void **state)
{
	char buf[32];

	(void)state;
	units_format_size(0, buf, sizeof(buf));
	assert_string_equal(buf, "0 B");
	units_format_size(512, buf, sizeof(buf));
	assert_string_equal(buf, "512 B");
	units_format_size(1023, buf, sizeof(buf));
	assert_string_equal(buf, "1023 B");
	units_format_size(4096, buf, sizeof(buf));
	assert_string_equal(buf, "4.0 KiB");
	units_format_size(3ull << 29, buf, sizeof(buf));
	assert_string_equal(buf, "1.5 GiB");
	units_format_size(32ull << 20, buf, sizeof(buf));
	assert_string_equal(buf, "32.0 MiB");
	units_format_size((1ull << 20) - 1, buf, sizeof(buf));
	assert_string_equal(buf, "1.0 MiB");
	units_format_size(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "16.0 EiB");
	/* a short buffer truncates, never overflows */
	units_format_size(3ull << 29, buf, 4);
	assert_int_equal(strlen(buf), 3);
}

static void
test_roundtrip_format_parse(void **state)
{
	static const uint64_t v[] = { 4096, 1ull << 20, 32ull << 20, 1ull << 30 };
	char buf[32];
	size_t i;

	(void)state;
	/* whole units print as "N.0 XiB"; the parser takes "N XiB" */
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint64_t back;
		char *dot;

		units_format_size(v[i], buf, sizeof(buf));
		dot = strstr(buf, ".0 ");
		assert_non_null(dot);
		memmove(dot, dot + 2, strlen(dot + 2) + 1);
		assert_int_equal(units_parse_size(buf, &back), 0);
		assert_true(back == v[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_ok),
		cmocka_unit_test(test_size_bad),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_hhmm),
		cmocka_unit_test(test_day),
		cmocka_unit_test(test_thumbprint),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_roundtrip_format_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
