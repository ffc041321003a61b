/* libFuzzer target for status socket requests: any bytes, as one request
 * line.  A parsed request must be well-formed; a refused one must come
 * with a message the daemon can send back in its JSON reply.  Everything
 * is freed: LeakSanitizer runs with the fuzzer. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_string(const char *s)
{
	const unsigned char *p;

	if (s == NULL)
		return;
	if (*s == '\0' || strlen(s) > 256)
		__builtin_trap();
	for (p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request r;
	char *err = (char *)"untouched";
	json_t *reply;

	if (request_parse((const char *)data, size, &r, &err) == 0) {
		if (err != NULL || (unsigned)r.op >= OP_COUNT)
			__builtin_trap();
		if (r.limit < 1 || r.limit > 100000)
			__builtin_trap();
		check_string(r.rule);
		check_string(r.vm);
		check_string(r.kind);
		check_string(r.platform);
		check_string(r.point);
		check_string(r.mode);
		check_string(r.target);
		check_string(r.id);
		request_free(&r);
		if (r.rule != NULL || r.id != NULL)
			__builtin_trap();
	} else {
		if (err == NULL || err[0] == '\0')
			__builtin_trap();
		/* what ctl_send_error does with it: must not fail */
		reply = json_pack("{s:b,s:s}", "ok", 0, "error", err);
		if (reply == NULL)
			__builtin_trap();
		json_decref(reply);
		free(err);
	}
	return 0;
}
