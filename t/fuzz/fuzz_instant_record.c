/* Instant recovery's persisted record (engine/jobs/instant_data.c, read
 * from the store at every start) and the `--listen` address it holds, any
 * bytes.  The first byte chooses: even, the rest is a record; odd, a
 * listen address (bytes 1.. as a string, the first byte's upper bits a
 * disk count).  What loads must hold together: a record written again from
 * what was read reads back the same; an address parsed and written as text
 * parses back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"
#include "engine/jobs/instant_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same_listen(const struct instant_listen *a, const struct instant_listen *b)
{
	if (a->tcp != b->tcp || (a->tcp && (strcmp(a->addr, b->addr) != 0 || a->port != b->port)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct instant_rec x, y;
	struct instant_listen l, l2;
	struct sbuf b;
	char *s, *err = NULL, *text;
	size_t i;

	if (size == 0)
		return 0;
	if (data[0] & 1) {
		s = xstrndup((const char *)data + 1, size - 1);
		if (instant_listen_parse(s, data[0] >> 1, &l, &err) == 0) {
			if (err != NULL)
				abort();
			text = instant_listen_text(&l);
			if (instant_listen_parse(text, data[0] >> 1, &l2, &err) != 0)
				abort();
			same_listen(&l, &l2);
			if (l.tcp && (l.port < 1 || l.port + (data[0] >> 1) - ((data[0] >> 1) > 0) > 65535))
				abort();
			free(text);
		} else if (err == NULL) {
			abort();
		}
		free(err);
		free(s);
		return 0;
	}
	if (instant_rec_get(data + 1, size - 1, &x) == 0) {
		if (x.ndisks == 0 || x.ndisks > INSTANT_MAX_DISKS || x.rule == NULL || x.vm == NULL || x.repo == NULL ||
		    x.repo[0] != '/')
			abort();
		sbuf_init(&b);
		instant_rec_put(&x, &b);
		if (instant_rec_get(b.data, b.len, &y) != 0 || y.id != x.id || y.state != x.state || y.point != x.point ||
		    strcmp(y.rule, x.rule) != 0 || strcmp(y.vm, x.vm) != 0 || strcmp(y.repo, x.repo) != 0 ||
		    !str_eq(y.key_file, x.key_file) || y.created != x.created || y.ndisks != x.ndisks)
			abort();
		same_listen(&x.listen, &y.listen);
		for (i = 0; i < x.ndisks; i++)
			if (x.capacity[i] != y.capacity[i])
				abort();
		instant_rec_free(&y);
		sbuf_free(&b);
	}
	instant_rec_free(&x);
	return 0;
}
