#include "engine/core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/core/util.h"

static enum log_level log_max = LOG_INFO;

static const char *const log_names[] = { "error", "warning", "info", "debug" };

void
log_set_level(enum log_level lvl)
{
	log_max = lvl;
}

const char *
log_level_name(enum log_level lvl)
{
	return log_names[lvl];
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	char ts[32];
	struct tm tm;
	time_t t;
	va_list ap;
	struct sbuf b;
	char *msg;

	if (lvl > log_max)
		return;
	t = time(NULL);
	localtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	/* Messages carry names and peers' texts: one message, one line. */
	sbuf_init(&b);
	sbuf_add_printable(&b, msg);
	fprintf(stderr, "%s vmferryd[%s]: %s\n", ts, log_names[lvl], b.data);
	sbuf_free(&b);
	free(msg);
}
