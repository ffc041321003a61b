/* libFuzzer target for the HTTP side's parsers (engine/http_req.c): a
 * request target with a body (split at the first NUL), the Host and
 * Authorization headers and a configured listen address, from any bytes.
 * A static file name never leaves the dashboard directory; an API
 * request becomes a line the status socket's parser reads as the same
 * op; everything is freed. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/http_req.h"
#include "engine/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_file(const char *f)
{
	const char *p = f;

	if (f == NULL || *f == '\0' || *f == '/')
		__builtin_trap();
	for (; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		        *p == '_' || *p == '-' || *p == '/'))
			__builtin_trap();
		/* no segment starts with a dot (so no ".."), none is empty */
		if ((p == f || p[-1] == '/') && (*p == '.' || *p == '/'))
			__builtin_trap();
	}
	if (p[-1] == '/')
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *err = NULL, *line, host[64];
	const char *why, *tok, *body;
	struct http_target t;
	struct request r;
	size_t ulen, tlen;
	int st, port, loop;

	memcpy(s, data, size);
	s[size] = '\0';
	ulen = strlen(s);
	body = ulen < size ? s + ulen + 1 : "";
	st = http_target_parse(s, &t, &why);
	if (st == 200) {
		if (t.route == HTTP_ROUTE_STATIC)
			check_file(t.file);
		if (t.route == HTTP_ROUTE_API) {
			if ((unsigned)t.op >= OP_COUNT || t.fields == NULL || t.changes != http_op_changes(t.op))
				__builtin_trap();
			line = http_request_line(&t, body, ulen < size ? size - ulen - 1 : 0, &err);
			if (line == NULL) {
				if (err == NULL)
					__builtin_trap();
				free(err);
			} else {
				if (request_parse(line, strlen(line), &r, &err) == 0) {
					if (r.op != t.op)
						__builtin_trap();
					request_free(&r);
				} else {
					free(err);
				}
				free(line);
			}
		}
		http_target_free(&t);
	} else if ((st != 400 && st != 404) || why == NULL) {
		__builtin_trap();
	}
	if (http_listen_parse(s, host, sizeof(host), &port, &loop, &why) == 0) {
		if (port < 1 || port > 65535 || host[0] == '\0')
			__builtin_trap();
	} else if (why == NULL) {
		__builtin_trap();
	}
	(void)http_host_is_loopback(s);
	if (http_bearer(s, &tok, &tlen) == 0 && (tlen == 0 || tok < s || tok + tlen > s + ulen))
		__builtin_trap();
	free(s);
	return 0;
}
