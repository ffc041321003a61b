#include "engine/request.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"
#include "engine/jobs/kinds.h"

#define REQUEST_MAX_STRING 256

static const char *const op_names[] = {
#define X(n, s) s,
	REQUEST_OPS(X)
#undef X
};

/* Which fields each op takes (beyond "op" and "id"). */
enum {
	F_RULE = 1 << 0,
	F_VM = 1 << 1,
	F_KIND = 1 << 2,
	F_PLATFORM = 1 << 3,
	F_POINT = 1 << 4,
	F_MODE = 1 << 5,
	F_TARGET = 1 << 6,
	F_REFRESH = 1 << 7,
	F_PERMANENT = 1 << 8,
	F_LIMIT = 1 << 9,
	F_LISTEN = 1 << 10,
	F_STOP = 1 << 11,
	F_NAME = 1 << 12,
	F_DATACENTER = 1 << 13,
	F_HOST = 1 << 14,
	F_DATASTORE = 1 << 15,
	F_POWER_ON = 1 << 16,
};

static const struct {
	unsigned allowed;
	unsigned required;
} op_fields[OP_COUNT] = {
	[OP_PING] = { 0, 0 },
	[OP_RULES] = { F_KIND, 0 },
	[OP_JOBS] = { F_RULE | F_KIND | F_VM, 0 },
	[OP_SHOW] = { F_RULE | F_VM | F_KIND, F_RULE },
	[OP_LOG] = { F_RULE | F_VM | F_KIND | F_LIMIT, F_RULE | F_VM },
	[OP_STATS] = { F_RULE | F_VM | F_KIND, 0 },
	[OP_WATCH] = { F_RULE | F_KIND, 0 },
	[OP_START] = { F_RULE | F_VM | F_KIND, F_RULE },
	[OP_STOP] = { F_RULE | F_VM | F_KIND, F_RULE },
	[OP_DELETE] = { F_RULE | F_VM | F_KIND, F_RULE },
	[OP_MIGRATE] = { F_RULE | F_VM, F_RULE },
	[OP_RUN] = { F_RULE | F_VM | F_KIND | F_MODE, F_RULE },
	[OP_FAILOVER] = { F_RULE | F_VM | F_POINT | F_PERMANENT, F_RULE | F_VM },
	[OP_FAILBACK] = { F_RULE | F_VM, F_RULE | F_VM },
	[OP_REVERT] = { F_RULE | F_VM | F_POINT, F_RULE | F_VM },
	[OP_RESTORE] = { F_RULE | F_VM | F_KIND | F_POINT | F_TARGET | F_NAME | F_PLATFORM | F_DATACENTER | F_HOST |
	                     F_DATASTORE | F_POWER_ON | F_LISTEN, F_RULE },
	[OP_VERIFY] = { F_RULE | F_VM | F_POINT, F_RULE },
	[OP_INSTANT] = { F_STOP, 0 },
	[OP_INVENTORY] = { F_PLATFORM | F_REFRESH, F_PLATFORM },
	[OP_RELOAD] = { 0, 0 },
};

static const struct {
	const char *name;
	unsigned flag;
	int is_string;
} fields[] = {
	{ "rule", F_RULE, 1 },
	{ "vm", F_VM, 1 },
	{ "kind", F_KIND, 1 },
	{ "platform", F_PLATFORM, 1 },
	{ "point", F_POINT, 1 },
	{ "mode", F_MODE, 1 },
	{ "target", F_TARGET, 1 },
	{ "refresh", F_REFRESH, 0 },
	{ "permanent", F_PERMANENT, 0 },
	{ "limit", F_LIMIT, 0 },
	{ "listen", F_LISTEN, 1 },
	{ "stop", F_STOP, 1 },
	{ "name", F_NAME, 1 },
	{ "datacenter", F_DATACENTER, 1 },
	{ "host", F_HOST, 1 },
	{ "datastore", F_DATASTORE, 1 },
	{ "power_on", F_POWER_ON, 0 },
};

const char *
request_op_name(enum request_op op)
{
	return op < OP_COUNT ? op_names[op] : "?";
}

static char **
field_slot(struct request *r, unsigned flag)
{
	switch (flag) {
	case F_RULE: return &r->rule;
	case F_VM: return &r->vm;
	case F_KIND: return &r->kind;
	case F_PLATFORM: return &r->platform;
	case F_POINT: return &r->point;
	case F_MODE: return &r->mode;
	case F_TARGET: return &r->target;
	case F_LISTEN: return &r->listen;
	case F_STOP: return &r->stop;
	case F_NAME: return &r->name;
	case F_DATACENTER: return &r->datacenter;
	case F_HOST: return &r->host;
	case F_DATASTORE: return &r->datastore;
	default: return NULL;
	}
}

static int
string_ok(const char *s)
{
	const unsigned char *p;

	if (*s == '\0' || strlen(s) > REQUEST_MAX_STRING)
		return 0;
	for (p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static int
one_of(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

static int
request_parse_raw(const char *line, size_t len, struct request *out, char **err)
{
	static const char *const modes[] = { "full", "incremental", "differential", NULL };
	static const char *const targets[] = { "original", "new", "instant", NULL };
	json_error_t jerr;
	json_t *root, *v;
	const char *key, *opname;
	unsigned seen = 0;
	size_t i;
	int op = -1;

	memset(out, 0, sizeof(*out));
	out->limit = 50;
	*err = NULL;
	if (len > REQUEST_MAX_LINE) {
		*err = xasprintf("request longer than %d bytes", REQUEST_MAX_LINE);
		return -1;
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		*err = xasprintf("malformed JSON at column %d: %s", jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		*err = xstrdup("a request must be a JSON object");
		goto fail;
	}
	v = json_object_get(root, "id");
	if (v != NULL) {
		if (!json_is_string(v) || !string_ok(json_string_value(v))) {
			*err = xstrdup("\"id\" must be a short string");
			goto fail;
		}
		out->id = xstrdup(json_string_value(v));
	}
	v = json_object_get(root, "op");
	if (v == NULL || !json_is_string(v)) {
		*err = xstrdup("missing \"op\" (a string such as \"jobs\")");
		goto fail;
	}
	opname = json_string_value(v);
	for (i = 0; i < OP_COUNT; i++)
		if (strcmp(opname, op_names[i]) == 0)
			op = (int)i;
	if (op < 0) {
		*err = xasprintf("unknown op \"%.64s\"", opname);
		goto fail;
	}
	out->op = (enum request_op)op;

	json_object_foreach(root, key, v) {
		unsigned flag = 0;
		int is_string = 0;

		if (strcmp(key, "op") == 0 || strcmp(key, "id") == 0)
			continue;
		for (i = 0; i < ARRAY_LEN(fields); i++)
			if (strcmp(key, fields[i].name) == 0) {
				flag = fields[i].flag;
				is_string = fields[i].is_string;
			}
		if (flag == 0 || !(op_fields[op].allowed & flag)) {
			*err = xasprintf("op %s does not take \"%.64s\"", opname, key);
			goto fail;
		}
		if (is_string) {
			if (!json_is_string(v) || !string_ok(json_string_value(v))) {
				*err = xasprintf("\"%s\" must be a non-empty string of at most %d printable characters",
				    key, REQUEST_MAX_STRING);
				goto fail;
			}
			*field_slot(out, flag) = xstrdup(json_string_value(v));
		} else if (flag == F_LIMIT) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000) {
				*err = xstrdup("\"limit\" must be an integer from 1 to 100000");
				goto fail;
			}
			out->limit = (long)json_integer_value(v);
		} else {
			if (!json_is_boolean(v)) {
				*err = xasprintf("\"%s\" must be true or false", key);
				goto fail;
			}
			if (flag == F_REFRESH)
				out->refresh = json_is_true(v);
			else if (flag == F_POWER_ON)
				out->power_on = json_is_true(v);
			else
				out->permanent = json_is_true(v);
		}
		seen |= flag;
	}
	if ((seen & op_fields[op].required) != op_fields[op].required) {
		for (i = 0; i < ARRAY_LEN(fields); i++)
			if ((op_fields[op].required & fields[i].flag) && !(seen & fields[i].flag)) {
				*err = xasprintf("op %s needs \"%s\"", opname, fields[i].name);
				goto fail;
			}
	}
	if (out->kind != NULL && job_kind_named(out->kind) == NULL) {
		*err = xstrdup("\"kind\" must be migration, replication or backup");
		goto fail;
	}
	if (out->mode != NULL && !one_of(out->mode, modes)) {
		*err = xstrdup("\"mode\" must be full, incremental or differential");
		goto fail;
	}
	if (out->target != NULL && !one_of(out->target, targets)) {
		*err = xstrdup("\"target\" must be original, new or instant");
		goto fail;
	}
	if (out->listen != NULL && !str_eq(out->target, "instant")) {
		*err = xstrdup("\"listen\" goes with \"target\":\"instant\" only");
		goto fail;
	}
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	request_free(out);
	return -1;
}

int
request_parse(const char *line, size_t len, struct request *out, char **err)
{
	int rc = request_parse_raw(line, len, out, err);

	/* Messages quote the client's bytes, which need not be UTF-8. */
	if (rc != 0 && *err != NULL)
		str_make_utf8(*err);
	return rc;
}

void
request_free(struct request *r)
{
	free(r->rule);
	free(r->vm);
	free(r->kind);
	free(r->platform);
	free(r->point);
	free(r->mode);
	free(r->target);
	free(r->listen);
	free(r->stop);
	free(r->name);
	free(r->datacenter);
	free(r->host);
	free(r->datastore);
	free(r->id);
	memset(r, 0, sizeof(*r));
}
