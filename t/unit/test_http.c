/* Unit tests for the HTTP side's pure parts: the Prometheus text format's
 * escaping (engine/core/prom.c) and request targets, listen addresses,
 * Host and Authorization headers (engine/http_req.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "engine/core/prom.h"
#include "engine/http_req.h"

static char *
drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_prom_escape(void **state)
{
	struct evbuffer *b = evbuffer_new();
	const char *lab[] = { "vm", "q\"uote\\back\nline <img src=x onerror=alert(1)>", "rule", "r\xff", NULL };
	char *s;

	prom_sample_u64(b, "vmferry_x", lab, 7);
	s = drain(b);
	assert_string_equal(s, "vmferry_x{vm=\"q\\\"uote\\\\back\\nline <img src=x onerror=alert(1)>\",rule=\"r?\"} 7\n");
	free(s);
	prom_sample(b, "vmferry_y", NULL, 0.25);
	prom_sample(b, "vmferry_y", NULL, 3);
	s = drain(b);
	assert_string_equal(s, "vmferry_y 0.25\nvmferry_y 3\n");
	free(s);
	evbuffer_free(b);
}

static void
test_targets(void **state)
{
	static const struct {
		const char *uri;
		int status;
		const char *file;
	} cases[] = {
		{ "/", 200, "index.html" },
		{ "/app.js", 200, "app.js" },
		{ "/img/logo.svg", 200, "img/logo.svg" },
		{ "/%61pp.js", 200, "app.js" },
		{ "/../etc/passwd", 404, NULL },
		{ "/%2e%2e/etc/passwd", 404, NULL },
		{ "/a/%2e%2e/b", 404, NULL },
		{ "/a%2fb", 404, NULL },
		{ "/.git/config", 404, NULL },
		{ "//etc/passwd", 404, NULL },
		{ "/dir/", 404, NULL },
		{ "/a%00b", 404, NULL },
		{ "/a\\b", 400, NULL },
		{ "relative", 400, NULL },
		{ "", 400, NULL },
		{ "/api/v1/nope", 404, NULL },
		{ "/api/v2/jobs", 404, NULL },
		{ "/api", 404, NULL },
		{ "/api/v1/jobs?rule=a&rule=b", 400, NULL },
		{ "/api/v1/jobs?rule=%zz", 400, NULL },
		{ "/api/v1/jobs?op=start", 400, NULL },
	};
	struct http_target t;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = http_target_parse(cases[i].uri, &t, &why);

		if (st != cases[i].status)
			fail_msg("%s: %d, expected %d", cases[i].uri, st, cases[i].status);
		if (st == 200 && cases[i].file != NULL) {
			assert_int_equal(t.route, HTTP_ROUTE_STATIC);
			assert_string_equal(t.file, cases[i].file);
		}
		if (st == 200)
			http_target_free(&t);
		else
			assert_non_null(why);
	}
}

static void
test_api_lines(void **state)
{
	struct http_target t;
	const char *why;
	char *line, *err;

	assert_int_equal(http_target_parse("/api/v1/log?rule=mv&vm=web+01&limit=20", &t, &why), 200);
	assert_int_equal(t.op, OP_LOG);
	assert_false(t.changes);
	line = http_request_line(&t, "", 0, &err);
	assert_string_equal(line, "{\"rule\":\"mv\",\"vm\":\"web 01\",\"limit\":20,\"op\":\"log\"}");
	free(line);
	assert_null(http_request_line(&t, "{}", 2, &err));
	free(err);
	http_target_free(&t);

	assert_int_equal(http_target_parse("/api/v1/events?rule=mv", &t, &why), 200);
	assert_int_equal(t.op, OP_WATCH);
	http_target_free(&t);

	assert_int_equal(http_target_parse("/api/v1/stop", &t, &why), 200);
	assert_true(t.changes);
	line = http_request_line(&t, "{\"rule\":\"mv\"}", 13, &err);
	assert_string_equal(line, "{\"rule\":\"mv\",\"op\":\"stop\"}");
	free(line);
	assert_null(http_request_line(&t, "{\"op\":\"start\"}", 14, &err));
	free(err);
	assert_null(http_request_line(&t, "[1]", 3, &err));
	free(err);
	http_target_free(&t);
	assert_int_equal(http_target_parse("/api/v1/stats", &t, &why), 200);
	assert_true(t.changes); /* viewing clears the unviewed errors */
	http_target_free(&t);
}

static void
test_listen(void **state)
{
	char host[64];
	const char *why;
	int port, loop;

	assert_int_equal(http_listen_parse("127.0.0.1:9780", host, sizeof(host), &port, &loop, &why), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9780);
	assert_true(loop);
	assert_int_equal(http_listen_parse("localhost:1", host, sizeof(host), &port, &loop, &why), 0);
	assert_true(loop);
	assert_int_equal(http_listen_parse("[::1]:80", host, sizeof(host), &port, &loop, &why), 0);
	assert_string_equal(host, "::1");
	assert_true(loop);
	assert_int_equal(http_listen_parse("0.0.0.0:9780", host, sizeof(host), &port, &loop, &why), 0);
	assert_false(loop);
	assert_int_equal(http_listen_parse("[::]:9780", host, sizeof(host), &port, &loop, &why), 0);
	assert_false(loop);
	assert_int_equal(http_listen_parse("127.0.0.1", host, sizeof(host), &port, &loop, &why), -1);
	assert_int_equal(http_listen_parse("127.0.0.1:0", host, sizeof(host), &port, &loop, &why), -1);
	assert_int_equal(http_listen_parse("127.0.0.1:65536", host, sizeof(host), &port, &loop, &why), -1);
	assert_int_equal(http_listen_parse("example.com:80", host, sizeof(host), &port, &loop, &why), -1);
	assert_int_equal(http_listen_parse("[::1:80", host, sizeof(host), &port, &loop, &why), -1);
}

static void
test_headers(void **state)
{
	const char *tok;
	size_t len;

	assert_true(http_host_is_loopback("localhost:9780"));
	assert_true(http_host_is_loopback("127.0.0.1"));
	assert_true(http_host_is_loopback("[::1]:9780"));
	assert_false(http_host_is_loopback("evil.example:9780"));
	assert_false(http_host_is_loopback("127.0.0.1.evil.example"));
	assert_false(http_host_is_loopback(NULL));
	assert_int_equal(http_bearer("Bearer abc", &tok, &len), 0);
	assert_int_equal(len, 3);
	assert_int_equal(http_bearer("Basic abc", &tok, &len), -1);
	assert_int_equal(http_bearer("Bearer ", &tok, &len), -1);
	assert_int_equal(http_bearer("Bearer a b", &tok, &len), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prom_escape),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_api_lines),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
