#include "engine/core/prom.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"

void
prom_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	/* HELP text escapes only backslash and newline; ours has neither. */
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
prom_escape(struct evbuffer *b, const char *value)
{
	char *v = xstrdup(value);
	const char *p, *run;

	str_make_utf8(v);
	for (p = run = v; *p != '\0'; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;

		if (esc == NULL)
			continue;
		evbuffer_add(b, run, (size_t)(p - run));
		evbuffer_add(b, esc, 2);
		run = p + 1;
	}
	evbuffer_add(b, run, (size_t)(p - run));
	free(v);
}

static void
prom_name_labels(struct evbuffer *b, const char *name, const char *const *labels)
{
	size_t i;

	evbuffer_add(b, name, strlen(name));
	if (labels == NULL || labels[0] == NULL)
		return;
	evbuffer_add(b, "{", 1);
	for (i = 0; labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
		evbuffer_add_printf(b, "%s%s=\"", i ? "," : "", labels[i]);
		prom_escape(b, labels[i + 1]);
		evbuffer_add(b, "\"", 1);
	}
	evbuffer_add(b, "}", 1);
}

void
prom_sample(struct evbuffer *b, const char *name, const char *const *labels, double value)
{
	prom_name_labels(b, name, labels);
	if (isnan(value))
		evbuffer_add_printf(b, " NaN\n");
	else if (isinf(value))
		evbuffer_add_printf(b, " %cInf\n", value > 0 ? '+' : '-');
	else if (value == floor(value) && fabs(value) < 1e15)
		evbuffer_add_printf(b, " %.0f\n", value);
	else
		evbuffer_add_printf(b, " %.17g\n", value);
}

void
prom_sample_u64(struct evbuffer *b, const char *name, const char *const *labels, uint64_t value)
{
	prom_name_labels(b, name, labels);
	evbuffer_add_printf(b, " %llu\n", (unsigned long long)value);
}

char *
prom_labels(const char *const *labels)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	prom_name_labels(b, "", labels);
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

void
prom_sample_with(struct evbuffer *b, const char *name, const char *labels, uint64_t value)
{
	evbuffer_add_printf(b, "%s%s %llu\n", name, labels, (unsigned long long)value);
}
