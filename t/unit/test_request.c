/* Unit tests for engine/request.c: parsing and validation of status socket
 * requests.  Every rejected request must come with a message the daemon
 * can send back as {"ok":false,"error":...}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine/request.h"
#include "engine/core/util.h"


/* ---- helpers ---------------------------------------------------------- */

static void
parse_ok_n(const char *line, size_t len, struct request *r)
{
	char *err = (char *)"untouched";

	if (request_parse(line, len, r, &err) != 0) {
		print_error("rejected: %.200s: %s\n", line, err ? err : "(no message)");
		free(err);
		fail();
	}
	assert_null(err);
}

static void
parse_ok(const char *line, struct request *r)
{
	parse_ok_n(line, strlen(line), r);
}

/* The error a client would see; asserts it is usable and mentions want. */
static void
parse_err_n(const char *line, size_t len, const char *want)
{
	struct request r;
	char *err = NULL;
	json_t *reply;

	memset(&r, 0x5a, sizeof(r));
	if (request_parse(line, len, &r, &err) == 0) {
		print_error("accepted: %.200s\n", line);
		request_free(&r);
		fail();
	}
	assert_non_null(err);
	assert_true(err[0] != '\0');
	if (want != NULL && strstr(err, want) == NULL)
		fail_msg("error for %.200s is \"%s\", expected it to mention \"%s\"", line, err, want);
	/* nothing half-parsed is left behind */
	assert_null(r.rule);
	assert_null(r.vm);
	assert_null(r.kind);
	assert_null(r.id);
	/* the daemon answers with the message in JSON */
	reply = json_pack("{s:b,s:s}", "ok", 0, "error", err);
	free(err);
	assert_non_null(reply);
	json_decref(reply);
}

static void
parse_err(const char *line, const char *want)
{
	parse_err_n(line, strlen(line), want);
}

/* ---- every op -------------------------------------------------------- */

static void
test_every_op_parses(void **unused)
{
	static const char *const ops[] = { "ping", "rules", "jobs", "show", "log", "stats", "watch", "start",
		"stop", "delete", "migrate", "run", "failover", "failback", "revert", "restore", "verify",
		"instant", "inventory", "reload" };
	/* each with its required fields */
	static const char *const lines[] = {
		"{\"op\":\"ping\"}",
		"{\"op\":\"rules\"}",
		"{\"op\":\"jobs\"}",
		"{\"op\":\"show\",\"rule\":\"r\"}",
		"{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\"}",
		"{\"op\":\"stats\"}",
		"{\"op\":\"watch\"}",
		"{\"op\":\"start\",\"rule\":\"r\"}",
		"{\"op\":\"stop\",\"rule\":\"r\"}",
		"{\"op\":\"delete\",\"rule\":\"r\"}",
		"{\"op\":\"migrate\",\"rule\":\"r\"}",
		"{\"op\":\"run\",\"rule\":\"r\"}",
		"{\"op\":\"failover\",\"rule\":\"r\",\"vm\":\"v\"}",
		"{\"op\":\"failback\",\"rule\":\"r\",\"vm\":\"v\"}",
		"{\"op\":\"revert\",\"rule\":\"r\",\"vm\":\"v\"}",
		"{\"op\":\"restore\",\"rule\":\"r\"}",
		"{\"op\":\"verify\",\"rule\":\"r\"}",
		"{\"op\":\"instant\"}",
		"{\"op\":\"inventory\",\"platform\":\"vc-a\"}",
		"{\"op\":\"reload\"}",
	};
	struct request r;
	size_t i;

	assert_int_equal(ARRAY_LEN(ops), OP_COUNT);
	assert_int_equal(ARRAY_LEN(lines), OP_COUNT);
	for (i = 0; i < OP_COUNT; i++) {
		assert_string_equal(request_op_name((enum request_op)i), ops[i]);
		parse_ok(lines[i], &r);
		assert_int_equal(r.op, (int)i);
		assert_string_equal(request_op_name(r.op), ops[i]);
		assert_int_equal(r.limit, 50); /* the default */
		assert_int_equal(r.refresh, 0);
		assert_int_equal(r.permanent, 0);
		assert_null(r.id);
		request_free(&r);
		/* request_free leaves nothing to free twice */
		assert_null(r.rule);
		request_free(&r);
	}
	assert_string_equal(request_op_name(OP_COUNT), "?");
}

static void
test_fields_are_returned(void **unused)
{
	struct request r;

	parse_ok("{\"op\":\"jobs\",\"rule\":\"move-web\",\"vm\":\"web01\",\"kind\":\"migration\",\"id\":\"c-1\"}",
	    &r);
	assert_string_equal(r.rule, "move-web");
	assert_string_equal(r.vm, "web01");
	assert_string_equal(r.kind, "migration");
	assert_string_equal(r.id, "c-1");
	request_free(&r);

	parse_ok("{\"op\":\"verify\",\"rule\":\"bak\",\"vm\":\"web01\",\"point\":\"3\"}", &r);
	assert_string_equal(r.rule, "bak");
	assert_string_equal(r.vm, "web01");
	assert_string_equal(r.point, "3");
	request_free(&r);

	parse_ok("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"kind\":\"backup\",\"limit\":10}", &r);
	assert_int_equal(r.limit, 10);
	request_free(&r);

	parse_ok("{\"op\":\"run\",\"rule\":\"r\",\"vm\":\"v\",\"kind\":\"backup\",\"mode\":\"differential\"}", &r);
	assert_string_equal(r.mode, "differential");
	request_free(&r);

	parse_ok("{\"op\":\"failover\",\"rule\":\"r\",\"vm\":\"v\",\"point\":\"p3\",\"permanent\":true}", &r);
	assert_string_equal(r.point, "p3");
	assert_int_equal(r.permanent, 1);
	request_free(&r);

	parse_ok("{\"op\":\"restore\",\"rule\":\"r\",\"vm\":\"v\",\"point\":\"p\",\"target\":\"instant\"}", &r);
	assert_string_equal(r.target, "instant");
	assert_null(r.listen);
	request_free(&r);
	parse_ok("{\"op\":\"restore\",\"rule\":\"r\",\"vm\":\"v\",\"target\":\"instant\",\"listen\":\"127.0.0.1:10809\"}",
	    &r);
	assert_string_equal(r.listen, "127.0.0.1:10809");
	request_free(&r);
	parse_err("{\"op\":\"restore\",\"rule\":\"r\",\"listen\":\"unix\"}", "\"listen\" goes with");
	parse_ok("{\"op\":\"instant\",\"stop\":\"3\"}", &r);
	assert_string_equal(r.stop, "3");
	request_free(&r);
	parse_err("{\"op\":\"instant\",\"rule\":\"r\"}", "does not take \"rule\"");

	parse_ok("{\"op\":\"restore\",\"rule\":\"r\",\"vm\":\"v\",\"target\":\"new\",\"name\":\"v2\","
	         "\"platform\":\"vc-b\",\"datacenter\":\"DC1\",\"host\":\"h1\",\"datastore\":\"ds1\","
	         "\"power_on\":true,\"kind\":\"backup\"}", &r);
	assert_string_equal(r.name, "v2");
	assert_string_equal(r.platform, "vc-b");
	assert_string_equal(r.datacenter, "DC1");
	assert_string_equal(r.host, "h1");
	assert_string_equal(r.datastore, "ds1");
	assert_int_equal(r.power_on, 1);
	request_free(&r);

	parse_ok("{\"op\":\"inventory\",\"platform\":\"vc-a\",\"refresh\":true}", &r);
	assert_string_equal(r.platform, "vc-a");
	assert_int_equal(r.refresh, 1);
	request_free(&r);
	parse_ok("{\"op\":\"inventory\",\"platform\":\"vc-a\",\"refresh\":false}", &r);
	assert_int_equal(r.refresh, 0);
	request_free(&r);

	/* key order does not matter, whitespace and a trailing newline are fine */
	parse_ok(" { \"rule\" : \"r\" ,\n \"op\" : \"show\" } \n", &r);
	assert_int_equal(r.op, OP_SHOW);
	assert_string_equal(r.rule, "r");
	request_free(&r);

	/* UTF-8 names (VM names are often Chinese) */
	parse_ok("{\"op\":\"show\",\"rule\":\"迁移\",\"vm\":\"\\u6570\\u636e\\u5e93\"}", &r);
	assert_string_equal(r.rule, "迁移");
	assert_string_equal(r.vm, "数据库");
	request_free(&r);
}

/* ---- rejections ------------------------------------------------------ */

static void
test_missing_required_field(void **unused)
{
	parse_err("{\"op\":\"show\"}", "\"rule\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\"}", "\"vm\"");
	parse_err("{\"op\":\"log\",\"vm\":\"v\"}", "\"rule\"");
	parse_err("{\"op\":\"start\",\"vm\":\"v\"}", "\"rule\"");
	parse_err("{\"op\":\"failover\",\"rule\":\"r\"}", "\"vm\"");
	parse_err("{\"op\":\"failback\",\"rule\":\"r\"}", "\"vm\"");
	parse_err("{\"op\":\"revert\",\"rule\":\"r\",\"point\":\"p\"}", "\"vm\"");
	parse_err("{\"op\":\"inventory\"}", "\"platform\"");
	parse_err("{\"op\":\"inventory\",\"refresh\":true}", "\"platform\"");
	parse_err("{\"op\":\"verify\",\"vm\":\"v\",\"point\":\"1\"}", "\"rule\"");
}

static void
test_op_missing_or_unknown(void **unused)
{
	parse_err("{}", "op");
	parse_err("{\"rule\":\"r\"}", "op");
	parse_err("{\"op\":1}", "op");
	parse_err("{\"op\":null}", "op");
	parse_err("{\"op\":[\"jobs\"]}", "op");
	parse_err("{\"op\":\"fly\"}", "unknown op \"fly\"");
	parse_err("{\"op\":\"\"}", "unknown op");
	parse_err("{\"op\":\"JOBS\"}", "unknown op");
	parse_err("{\"op\":\"jobs \"}", "unknown op");
}

static void
test_unknown_field_for_op(void **unused)
{
	parse_err("{\"op\":\"ping\",\"rule\":\"r\"}", "\"rule\"");
	parse_err("{\"op\":\"jobs\",\"bogus\":1}", "\"bogus\"");
	parse_err("{\"op\":\"migrate\",\"rule\":\"r\",\"kind\":\"migration\"}", "\"kind\"");
	parse_err("{\"op\":\"inventory\",\"platform\":\"p\",\"vm\":\"v\"}", "\"vm\"");
	parse_err("{\"op\":\"jobs\",\"limit\":5}", "\"limit\"");
	parse_err("{\"op\":\"stop\",\"rule\":\"r\",\"mode\":\"full\"}", "\"mode\"");
	parse_err("{\"op\":\"restore\",\"rule\":\"r\",\"permanent\":true}", "\"permanent\"");
	parse_err("{\"op\":\"run\",\"rule\":\"r\",\"name\":\"x\"}", "\"name\"");
	parse_err("{\"op\":\"restore\",\"rule\":\"r\",\"power_on\":1}", "\"power_on\"");
	/* verify is for backup rules: no kind, no mode. */
	parse_err("{\"op\":\"verify\",\"rule\":\"r\",\"kind\":\"backup\"}", "\"kind\"");
	parse_err("{\"op\":\"verify\",\"rule\":\"r\",\"mode\":\"full\"}", "\"mode\"");
	parse_err("{\"op\":\"jobs\",\"Rule\":\"r\"}", "\"Rule\"");
}

static void
test_wrong_types(void **unused)
{
	parse_err("{\"op\":\"show\",\"rule\":5}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":null}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":true}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":[\"r\"]}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":{\"r\":1}}", "\"rule\"");
	parse_err("{\"op\":\"inventory\",\"platform\":\"p\",\"refresh\":\"yes\"}", "\"refresh\"");
	parse_err("{\"op\":\"inventory\",\"platform\":\"p\",\"refresh\":1}", "\"refresh\"");
	parse_err("{\"op\":\"failover\",\"rule\":\"r\",\"vm\":\"v\",\"permanent\":0}", "\"permanent\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":\"10\"}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":10.0}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":1e3}", "\"limit\"");
	parse_err("{\"op\":\"jobs\",\"id\":7}", "\"id\"");
	parse_err("{\"op\":\"jobs\",\"id\":\"\"}", "\"id\"");
}

static void
test_string_limits(void **unused)
{
	char line[1024], name[300];
	struct request r;

	memset(name, 'x', sizeof(name));
	name[256] = '\0';
	snprintf(line, sizeof(line), "{\"op\":\"show\",\"rule\":\"%s\"}", name);
	parse_ok(line, &r);
	assert_int_equal(strlen(r.rule), 256);
	request_free(&r);
	name[256] = 'x';
	name[257] = '\0';
	snprintf(line, sizeof(line), "{\"op\":\"show\",\"rule\":\"%s\"}", name);
	parse_err(line, "\"rule\"");
	snprintf(line, sizeof(line), "{\"op\":\"jobs\",\"id\":\"%s\"}", name);
	parse_err(line, "\"id\"");

	parse_err("{\"op\":\"show\",\"rule\":\"\"}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":\"a\\u0001b\"}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":\"a\\nb\"}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":\"a\\tb\"}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":\"a\\u007fb\"}", "\"rule\"");
	parse_err("{\"op\":\"show\",\"rule\":\"r\",\"vm\":\"\\u001b[31m\"}", "\"vm\"");
	parse_err("{\"op\":\"jobs\",\"id\":\"a\\rb\"}", "\"id\"");
	/* NUL inside a string is refused by the JSON layer already */
	parse_err("{\"op\":\"show\",\"rule\":\"a\\u0000b\"}", NULL);
}

static void
test_duplicate_keys(void **unused)
{
	parse_err("{\"op\":\"jobs\",\"op\":\"jobs\"}", NULL);
	parse_err("{\"op\":\"show\",\"rule\":\"a\",\"rule\":\"b\"}", NULL);
	parse_err("{\"op\":\"jobs\",\"id\":\"1\",\"id\":\"2\"}", NULL);
}

static void
test_not_an_object(void **unused)
{
	parse_err("[]", NULL);
	parse_err("[{\"op\":\"jobs\"}]", NULL);
	parse_err("\"jobs\"", NULL);
	parse_err("1", NULL);
	parse_err("null", NULL);
	parse_err("true", NULL);
	parse_err("", NULL);
	parse_err("   \n", NULL);
	parse_err("{", NULL);
	parse_err("{\"op\":\"jobs\"", NULL);
	parse_err("{\"op\":\"jobs\",}", NULL);
	parse_err("{'op':'jobs'}", NULL);
	parse_err("{\"op\":\"jobs\"}{\"op\":\"jobs\"}", NULL);
	parse_err("{\"op\":\"jobs\"} x", NULL);
	parse_err_n("{\"op\":\"jobs\"}\0{\"op\":\"ping\"}", 27, NULL);
	parse_err("{\"op\":\"\xff\"}", NULL);
	parse_err("\xef\xbb\xbf{\"op\":\"jobs\"}", NULL);
}

static void
test_line_length(void **unused)
{
	size_t n = REQUEST_MAX_LINE + 1, body;
	char *line = xmalloc(n + 1);
	struct request r;

	/* a valid request padded with blanks to exactly the limit is fine */
	body = strlen("{\"op\":\"ping\"}");
	memset(line, ' ', n);
	memcpy(line + REQUEST_MAX_LINE - body, "{\"op\":\"ping\"}", body);
	parse_ok_n(line, REQUEST_MAX_LINE, &r);
	assert_int_equal(r.op, OP_PING);
	request_free(&r);
	/* one byte more is refused, and says why */
	memset(line, ' ', n);
	memcpy(line + n - body, "{\"op\":\"ping\"}", body);
	parse_err_n(line, n, "longer");
	free(line);

	/* a huge one, without reading it */
	line = xmalloc(4 * REQUEST_MAX_LINE);
	memset(line, '[', 4 * REQUEST_MAX_LINE);
	parse_err_n(line, 4 * REQUEST_MAX_LINE, "longer");
	/* deep nesting within the limit */
	parse_err_n(line, REQUEST_MAX_LINE, NULL);
	free(line);
}

static void
test_limit_bounds(void **unused)
{
	struct request r;

	parse_ok("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":1}", &r);
	assert_int_equal(r.limit, 1);
	request_free(&r);
	parse_ok("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":100000}", &r);
	assert_int_equal(r.limit, 100000);
	request_free(&r);
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":0}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":-5}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":100001}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":9223372036854775807}", "\"limit\"");
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":-9223372036854775808}", "\"limit\"");
	/* beyond 64 bits the JSON layer refuses */
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":99999999999999999999}", NULL);
	parse_err("{\"op\":\"log\",\"rule\":\"r\",\"vm\":\"v\",\"limit\":1e400}", NULL);
}

static void
test_enumerated_values(void **unused)
{
	static const char *const kinds[] = { "migration", "replication", "backup" };
	static const char *const modes[] = { "full", "incremental", "differential" };
	static const char *const targets[] = { "original", "new", "instant" };
	char line[256];
	struct request r;
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "{\"op\":\"rules\",\"kind\":\"%s\"}", kinds[i]);
		parse_ok(line, &r);
		assert_string_equal(r.kind, kinds[i]);
		request_free(&r);
		snprintf(line, sizeof(line), "{\"op\":\"run\",\"rule\":\"r\",\"mode\":\"%s\"}", modes[i]);
		parse_ok(line, &r);
		assert_string_equal(r.mode, modes[i]);
		request_free(&r);
		snprintf(line, sizeof(line), "{\"op\":\"restore\",\"rule\":\"r\",\"target\":\"%s\"}", targets[i]);
		parse_ok(line, &r);
		assert_string_equal(r.target, targets[i]);
		request_free(&r);
	}
	parse_err("{\"op\":\"rules\",\"kind\":\"Migration\"}", "\"kind\"");
	parse_err("{\"op\":\"rules\",\"kind\":\"template\"}", "\"kind\"");
	parse_err("{\"op\":\"jobs\",\"kind\":\"system\"}", "\"kind\"");
	parse_err("{\"op\":\"run\",\"rule\":\"r\",\"mode\":\"incr\"}", "\"mode\"");
	parse_err("{\"op\":\"run\",\"rule\":\"r\",\"mode\":\"full \"}", "\"mode\"");
	parse_err("{\"op\":\"restore\",\"rule\":\"r\",\"target\":\"elsewhere\"}", "\"target\"");
}

/* Messages quote what the client sent, cut to a length: the cut must not
 * leave half a UTF-8 character, or the daemon cannot put the message into
 * its JSON reply (json_pack fails and the client gets no answer at all). */
static void
test_error_messages_are_valid_utf8(void **unused)
{
	char line[512], name[200];
	size_t i;

	/* "ab" + 30 x 中 (3 bytes): 64 bytes end inside a character */
	strcpy(name, "ab");
	for (i = 0; i < 30; i++)
		strcat(name, "中");
	snprintf(line, sizeof(line), "{\"op\":\"%s\"}", name);
	parse_err(line, "unknown op");
	snprintf(line, sizeof(line), "{\"op\":\"jobs\",\"%s\":1}", name);
	parse_err(line, "does not take");
}

/* The JSON layer's own messages quote the input near the error; a quote
 * that ends inside a UTF-8 character has the same effect. */
static void
test_json_error_messages_are_valid_utf8(void **unused)
{
	parse_err("{\"op\":\"\\u中\"}", "malformed");
	parse_err("{\"op\":\"\\中\"}", "malformed");
	parse_err("{\"op\":\"\\ud80中\"}", "malformed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_op_parses),
		cmocka_unit_test(test_fields_are_returned),
		cmocka_unit_test(test_missing_required_field),
		cmocka_unit_test(test_op_missing_or_unknown),
		cmocka_unit_test(test_unknown_field_for_op),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_string_limits),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_limit_bounds),
		cmocka_unit_test(test_enumerated_values),
		cmocka_unit_test(test_error_messages_are_valid_utf8),
		cmocka_unit_test(test_json_error_messages_are_valid_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
