/* ctl.c's sinks, the clients that are no socket connection (an HTTP
 * request, engine/http_api.c): an answer now or later, an error answer, a
 * parse error, a watch stream with its events, a peer gone before its
 * answer, a watcher that falls behind and is dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/ctl.h"

static char dir[64];
static char path[128];
static uint64_t late_id;

struct sent {
	char *json;
	int ok, more;
};

static struct {
	struct sent sent[16];
	int n;
	size_t backlog;
	int dropped;
} sk;

static void
sink_send(void *arg, const char *json, size_t len, int ok, int more)
{
	assert_true(sk.n < 16);
	sk.sent[sk.n].json = strndup(json, len);
	sk.sent[sk.n].ok = ok;
	sk.sent[sk.n].more = more;
	sk.n++;
}

static size_t
sink_backlog(void *arg)
{
	return sk.backlog;
}

static void
sink_drop(void *arg)
{
	sk.dropped++;
}

static const struct ctl_sink sink = { sink_send, sink_backlog, sink_drop };

static json_t *
handler(struct ctl_client *c, const struct request *req)
{
	switch (req->op) {
	case OP_INVENTORY:
		late_id = ctl_client_id(c);
		return NULL;
	case OP_WATCH:
		ctl_client_watch(c, req->rule, NULL);
		return json_pack("{s:b,s:b}", "ok", 1, "watching", 1);
	case OP_START:
		return ctl_error("no rule named %s", req->rule);
	default:
		return json_pack("{s:b}", "ok", 1);
	}
}

static int
setup(void **state)
{
	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vmferry-sink-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/sock", dir);
	ctl_open(loop_init(), path, handler);
	memset(&sk, 0, sizeof(sk));
	return 0;
}

static int
teardown(void **state)
{
	int i;

	ctl_close();
	loop_free();
	rmdir(dir);
	for (i = 0; i < sk.n; i++)
		free(sk.sent[i].json);
	return 0;
}

static uint64_t
request(const char *line, int want_rc)
{
	uint64_t id = 99;
	char *err = NULL;

	assert_int_equal(ctl_sink_request(&sink, NULL, line, strlen(line), &id, &err), want_rc);
	if (want_rc != 0) {
		assert_non_null(err);
		free(err);
	}
	return id;
}

static void
test_answers(void **state)
{
	assert_int_equal(request("{\"op\":\"ping\",\"id\":\"7\"}", 0), 0);
	assert_int_equal(sk.n, 1);
	assert_string_equal(sk.sent[0].json, "{\"ok\":true,\"id\":\"7\"}");
	assert_true(sk.sent[0].ok);
	assert_false(sk.sent[0].more);
	assert_int_equal(request("{\"op\":\"start\",\"rule\":\"x\"}", 0), 0);
	assert_int_equal(sk.n, 2);
	assert_false(sk.sent[1].ok);
	assert_non_null(strstr(sk.sent[1].json, "no rule named x"));
	request("{\"op\":\"nope\"}", -1);
	request("{\"op\":\"start\"}", -1);
	assert_int_equal(sk.n, 2);
}

static void
test_late_answer(void **state)
{
	uint64_t id = request("{\"op\":\"inventory\",\"platform\":\"vc\"}", 0);

	assert_true(id != 0);
	assert_int_equal(id, late_id);
	assert_int_equal(sk.n, 0);
	ctl_reply(id, json_pack("{s:b,s:s}", "ok", 1, "platform", "vc"));
	assert_int_equal(sk.n, 1);
	assert_false(sk.sent[0].more);
	/* answered: the client is gone, a second answer goes nowhere */
	ctl_reply(id, json_pack("{s:b}", "ok", 1));
	assert_int_equal(sk.n, 1);

	/* the peer went away before its answer */
	id = request("{\"op\":\"inventory\",\"platform\":\"vc\"}", 0);
	ctl_sink_close(id);
	ctl_reply(id, json_pack("{s:b}", "ok", 1));
	assert_int_equal(sk.n, 1);
}

static void
test_watch(void **state)
{
	json_t *ev = json_pack("{s:s}", "event", "progress");
	uint64_t id = request("{\"op\":\"watch\",\"rule\":\"mv\"}", 0);

	assert_true(id != 0);
	assert_int_equal(sk.n, 1);
	assert_true(sk.sent[0].more);
	ctl_broadcast(ev, "mv", "migration");
	ctl_broadcast(ev, "other", "migration"); /* not its rule */
	assert_int_equal(sk.n, 2);
	assert_string_equal(sk.sent[1].json, "{\"event\":\"progress\"}");
	assert_true(sk.sent[1].more);

	/* falls behind: dropped, and nothing more goes to it */
	sk.backlog = 9u << 20;
	ctl_broadcast(ev, "mv", "migration");
	assert_int_equal(sk.dropped, 1);
	sk.backlog = 0;
	ctl_broadcast(ev, "mv", "migration");
	assert_int_equal(sk.n, 3);
	ctl_sink_close(id); /* already gone: harmless */

	/* closed by its peer */
	id = request("{\"op\":\"watch\"}", 0);
	ctl_sink_close(id);
	ctl_broadcast(ev, "mv", "migration");
	assert_int_equal(sk.n, 4);
	json_decref(ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
