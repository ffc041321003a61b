#include "engine/http_req.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

#define HTTP_MAX_PARAMS 32
#define HTTP_MAX_DEPTH 8
#define API_PREFIX "/api/v1/"

int
http_listen_parse(const char *s, char *host, size_t hostlen, int *port, int *loopback, const char **why)
{
	const char *colon, *h = s, *p;
	size_t hl;
	struct in_addr a4;
	struct in6_addr a6;
	char buf[64];
	long v = 0;

	*why = NULL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':') {
			*why = "expected [IPv6]:PORT";
			return -1;
		}
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*why = "expected ADDRESS:PORT";
			return -1;
		}
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(buf)) {
		*why = "the address is missing or too long";
		return -1;
	}
	memcpy(buf, h, hl);
	buf[hl] = '\0';
	for (p = colon + 1; *p >= '0' && *p <= '9' && v <= 65535; p++)
		v = v * 10 + (*p - '0');
	if (p == colon + 1 || *p != '\0' || v < 1 || v > 65535) {
		*why = "the port must be a number from 1 to 65535";
		return -1;
	}
	if (s[0] != '[' && strcmp(buf, "localhost") == 0)
		strcpy(buf, "127.0.0.1");
	if (s[0] == '[' ? inet_pton(AF_INET6, buf, &a6) != 1 : inet_pton(AF_INET, buf, &a4) != 1) {
		*why = s[0] == '[' ? "not an IPv6 address" : "not an IPv4 address (a name other than localhost is not taken)";
		return -1;
	}
	if (strlen(buf) >= hostlen) {
		*why = "the address is too long";
		return -1;
	}
	strcpy(host, buf);
	*port = (int)v;
	if (s[0] == '[')
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6);
	else
		*loopback = (ntohl(a4.s_addr) >> 24) == 127;
	return 0;
}

/* Percent-decodes s[0..n) (and '+' as a space in a query); NULL for a
 * broken escape or a NUL byte. */
static char *
pct_decode(const char *s, size_t n, int plus, size_t *outlen)
{
	char *out = xmalloc(n + 1);
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int hi = i + 2 < n ? units_hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? units_hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			c = hi * 16 + lo;
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (c == 0) {
			free(out);
			return NULL;
		}
		out[k++] = (char)c;
	}
	out[k] = '\0';
	*outlen = k;
	return out;
}

/* A dashboard file name segment: letters, digits, '.', '_', '-', not
 * starting with a dot (no "..", no hidden files). */
static int
segment_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 128 || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		        c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int
static_path(const char *path, size_t n, struct http_target *t, const char **why)
{
	char *out = xmalloc(n + 16);
	size_t i = 1, k = 0, depth = 0;

	if (n == 1) {
		strcpy(out, "index.html");
		t->file = out;
		return 200;
	}
	while (i < n) {
		const char *seg = path + i, *end = memchr(seg, '/', n - i);
		size_t sl = end ? (size_t)(end - seg) : n - i;
		size_t dl;
		char *d = pct_decode(seg, sl, 0, &dl);

		if (d == NULL || !segment_ok(d, dl) || ++depth > HTTP_MAX_DEPTH) {
			free(d);
			free(out);
			*why = "no such file";
			return 404;
		}
		if (k > 0)
			out[k++] = '/';
		memcpy(out + k, d, dl);
		k += dl;
		free(d);
		i += sl + 1;
		if (end != NULL && i >= n) {
			/* a trailing slash: a directory, not served */
			free(out);
			*why = "no such file";
			return 404;
		}
	}
	out[k] = '\0';
	t->file = out;
	return 200;
}

int
http_op_changes(enum request_op op)
{
	switch (op) {
	case OP_PING:
	case OP_RULES:
	case OP_JOBS:
	case OP_SHOW:
	case OP_LOG:
	case OP_WATCH:
	case OP_INVENTORY:
		return 0;
	default:
		/* stats too: viewing clears the unviewed errors (seed 002) */
		return 1;
	}
}

static int
query_parse(const char *q, size_t n, json_t *fields, const char **why)
{
	size_t i = 0;
	int count = 0;

	while (i < n) {
		const char *p = q + i, *amp = memchr(p, '&', n - i), *eq;
		size_t pl = amp ? (size_t)(amp - p) : n - i, kl, vl, dkl, dvl;
		char *k, *v;
		json_t *val;

		i += pl + 1;
		if (pl == 0)
			continue;
		if (++count > HTTP_MAX_PARAMS) {
			*why = "too many query parameters";
			return -1;
		}
		eq = memchr(p, '=', pl);
		kl = eq ? (size_t)(eq - p) : pl;
		vl = eq ? pl - kl - 1 : 0;
		k = pct_decode(p, kl, 1, &dkl);
		v = pct_decode(eq ? eq + 1 : "", vl, 1, &dvl);
		if (k == NULL || v == NULL || dkl == 0) {
			free(k);
			free(v);
			*why = "malformed query string";
			return -1;
		}
		if (json_object_get(fields, k) != NULL) {
			free(k);
			free(v);
			*why = "a query parameter is given twice";
			return -1;
		}
		if (strcmp(k, "refresh") == 0 || strcmp(k, "permanent") == 0) {
			if (dvl == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
				val = json_true();
			else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
				val = json_false();
			else
				val = json_stringn(v, dvl); /* refused by the request parser, with its name */
		} else if (strcmp(k, "limit") == 0 && dvl > 0 && dvl < 10 && strspn(v, "0123456789") == dvl) {
			val = json_integer(strtol(v, NULL, 10));
		} else {
			val = json_stringn(v, dvl);
		}
		free(v);
		if (val == NULL || strcmp(k, "op") == 0) {
			free(k);
			json_decref(val);
			*why = val == NULL ? "a query parameter is not UTF-8" : "the op is the path's last part, not a parameter";
			return -1;
		}
		json_object_set_new(fields, k, val);
		free(k);
	}
	return 0;
}

int
http_target_parse(const char *uri, struct http_target *t, const char **why)
{
	const char *q;
	size_t n, pl, i;

	memset(t, 0, sizeof(*t));
	*why = NULL;
	n = strlen(uri);
	if (n == 0 || uri[0] != '/' || n > HTTP_MAX_TARGET) {
		*why = n > HTTP_MAX_TARGET ? "request target too long" : "the request target must be a path";
		return 400;
	}
	for (i = 0; i < n; i++)
		if ((unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f || uri[i] == '#' || uri[i] == '\\') {
			*why = "malformed request target";
			return 400;
		}
	q = strchr(uri, '?');
	pl = q ? (size_t)(q - uri) : n;
	if (pl == 8 && memcmp(uri, "/metrics", 8) == 0) {
		t->route = HTTP_ROUTE_METRICS;
		return 200;
	}
	if (pl >= 4 && memcmp(uri, "/api", 4) == 0 && (pl == 4 || uri[4] == '/')) {
		const char *op = uri + strlen(API_PREFIX);
		size_t ol = pl > strlen(API_PREFIX) ? pl - strlen(API_PREFIX) : 0;
		int k;

		if (pl <= strlen(API_PREFIX) || memcmp(uri, API_PREFIX, strlen(API_PREFIX)) != 0) {
			*why = "no such API path; ops are under /api/v1/";
			return 404;
		}
		t->route = HTTP_ROUTE_API;
		if (ol == 6 && memcmp(op, "events", 6) == 0) {
			t->op = OP_WATCH;
		} else {
			for (k = 0; k < OP_COUNT; k++)
				if (strlen(request_op_name(k)) == ol && memcmp(op, request_op_name(k), ol) == 0)
					break;
			if (k == OP_COUNT) {
				*why = "no such op";
				return 404;
			}
			t->op = (enum request_op)k;
		}
		t->changes = http_op_changes(t->op);
		t->fields = json_object();
		if (q != NULL && query_parse(q + 1, n - pl - 1, t->fields, why) != 0) {
			http_target_free(t);
			return 400;
		}
		return 200;
	}
	t->route = HTTP_ROUTE_STATIC;
	return static_path(uri, pl, t, why);
}

void
http_target_free(struct http_target *t)
{
	free(t->file);
	json_decref(t->fields);
	memset(t, 0, sizeof(*t));
}

char *
http_request_line(const struct http_target *t, const char *body, size_t len, char **err)
{
	json_error_t jerr;
	json_t *o;
	char *line;

	*err = NULL;
	if (t->changes && json_object_size(t->fields) > 0) {
		*err = xstrdup("a POST takes its fields in a JSON body, not in the query");
		return NULL;
	}
	if (!t->changes && len > 0) {
		*err = xstrdup("a GET takes its fields in the query, not in a body");
		return NULL;
	}
	if (!t->changes) {
		o = json_deep_copy(t->fields);
	} else if (len == 0) {
		o = json_object();
	} else {
		if (len > REQUEST_MAX_LINE) {
			*err = xasprintf("request body longer than %d bytes", REQUEST_MAX_LINE);
			return NULL;
		}
		o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
		if (o == NULL) {
			*err = xasprintf("malformed JSON at column %d: %s", jerr.column, jerr.text);
			str_make_utf8(*err);
			return NULL;
		}
		if (!json_is_object(o) || json_object_get(o, "op") != NULL) {
			json_decref(o);
			*err = xstrdup("the body must be a JSON object of the op's fields (the op is in the path)");
			return NULL;
		}
	}
	json_object_set_new(o, "op", json_string(request_op_name(t->op)));
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (line == NULL)
		*err = xstrdup("the request cannot be encoded");
	return line;
}

int
http_host_is_loopback(const char *host)
{
	char buf[64];
	const char *end;
	size_t n;
	struct in_addr a4;

	if (host == NULL)
		return 0;
	if (host[0] == '[') {
		end = strchr(host, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return 0;
		return (size_t)(end - host) == 4 && memcmp(host, "[::1]", 5) == 0;
	}
	end = strchr(host, ':');
	n = end ? (size_t)(end - host) : strlen(host);
	if (end != NULL && (end[1] == '\0' || strspn(end + 1, "0123456789") != strlen(end + 1)))
		return 0;
	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, host, n);
	buf[n] = '\0';
	if (strcasecmp(buf, "localhost") == 0)
		return 1;
	return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

int
http_bearer(const char *header, const char **tok, size_t *len)
{
	const char *p;

	if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
		return -1;
	p = header + 7;
	while (*p == ' ')
		p++;
	*len = strcspn(p, " \t");
	if (*len == 0 || p[*len] != '\0')
		return -1;
	*tok = p;
	return 0;
}
