/* Unit tests for engine/core/util.c: printable text for logs and terminals,
 * file name checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/core/util.h"

static void
check_printable(const char *in, const char *want)
{
	char *got = str_printable(in);

	assert_string_equal(got, want);
	free(got);
}

static void
test_printable_plain(void **state)
{
	(void)state;
	check_printable("", "");
	check_printable("web01", "web01");
	check_printable("a\\b c%2f?#&", "a\\b c%2f?#&");
	check_printable("ü-名前 迁移就绪", "ü-名前 迁移就绪");
	check_printable("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");   /* U+1F600, 4 bytes */
}

static void
test_printable_controls(void **state)
{
	(void)state;
	/* A name with a newline cannot start a log line of its own. */
	check_printable("nl\n2026-01-01 00:00:00 vmferryd[info]: forged",
	    "nl\\n2026-01-01 00:00:00 vmferryd[info]: forged");
	check_printable("t\tr\r", "t\\tr\\r");
	check_printable("\x01\x1b[2J\x7f", "\\x01\\x1b[2J\\x7f");
	/* C1 controls (NEL, CSI) and the Unicode line/paragraph separators. */
	check_printable("a\xc2\x85" "b\xc2\x9b" "c", "a\\u0085b\\u009bc");
	check_printable("x\xe2\x80\xa8y\xe2\x80\xa9z", "x\\u2028y\\u2029z");
	check_printable("\xc2\xa0", "\xc2\xa0");   /* U+00A0 is printable */
}

static void
test_printable_not_utf8(void **state)
{
	(void)state;
	check_printable("\xff\xfe", "\\xff\\xfe");
	check_printable("a\xc3", "a\\xc3");                     /* truncated */
	check_printable("\xc0\xaf", "\\xc0\\xaf");              /* overlong '/' */
	check_printable("\xed\xa0\x80", "\\xed\\xa0\\x80");     /* surrogate */
	check_printable("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
	check_printable("\xe4\xb8x", "\\xe4\\xb8x");
}

static void
test_make_utf8(void **state)
{
	char s[] = "a\xff\xc3-\xe4\xb8\xad";

	(void)state;
	str_make_utf8(s);
	assert_string_equal(s, "a?" "?-\xe4\xb8\xad");
}

static void
test_file_names(void **state)
{
	static const char *const good[] = { "web01", ".hidden", "...", "..a", "a..", "-rf", "a\\b", "sp ace",
		"%2e%2e", "..%2f..%2fetc", "ü-名前" };
	static const char *const bad[] = { "", ".", "..", "a/b", "../x", "/", "a\nb", "\t", "\x7f", "x\x01" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(file_name_is_safe(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(file_name_is_safe(bad[i]));
		assert_false(name_is_safe(bad[i]));
	}
	/* Engine-made names keep out the backslash too. */
	assert_false(name_is_safe("a\\b"));
	assert_true(name_is_safe("move-web"));
	assert_false(file_name_is_safe(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_printable_plain),
		cmocka_unit_test(test_printable_controls),
		cmocka_unit_test(test_printable_not_utf8),
		cmocka_unit_test(test_make_utf8),
		cmocka_unit_test(test_file_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
