/* Instant recovery's record and listen address (see instant_data.h). */
#include "engine/jobs/instant_data.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/record.h"

#define INSTANT_RECORD_V1 1

static int
port_of(const char *s, unsigned *out)
{
	unsigned long n = 0;
	const char *p;

	if (*s == '\0' || *s == '0' || strlen(s) > 5)
		return -1;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (unsigned long)(*p - '0');
	}
	if (n < 1 || n > 65535)
		return -1;
	*out = (unsigned)n;
	return 0;
}

int
instant_listen_parse(const char *s, size_t ndisks, struct instant_listen *out, char **err)
{
	const char *colon;
	char addr[64];
	size_t alen;
	struct in_addr a4;
	struct in6_addr a6;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	if (strcmp(s, "unix") == 0)
		return 0;
	if ((colon = strrchr(s, ':')) == NULL || (alen = (size_t)(colon - s)) == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (addr[0] == '[') {
		if (alen < 3 || addr[alen - 1] != ']')
			goto bad;
		addr[alen - 1] = '\0';
		memmove(addr, addr + 1, alen - 1);
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			goto bad;
		if (!IN6_IS_ADDR_LOOPBACK(&a6))
			goto not_loopback;
		snprintf(out->addr, sizeof(out->addr), "::1");
	} else {
		if (inet_pton(AF_INET, addr, &a4) != 1)
			goto bad;
		if ((ntohl(a4.s_addr) >> 24) != 127)
			goto not_loopback;
		inet_ntop(AF_INET, &a4, out->addr, sizeof(out->addr));
	}
	if (port_of(colon + 1, &out->port) != 0)
		goto bad;
	if (ndisks > 0 && out->port + ndisks - 1 > 65535) {
		*err = xasprintf("--listen %s: %zu disks need ports %u to %zu, beyond 65535", s, ndisks, out->port,
		    out->port + ndisks - 1);
		return -1;
	}
	out->tcp = 1;
	return 0;
bad:
	*err = xstrdup("--listen must be unix, 127.0.0.1:PORT (any 127.x.y.z) or [::1]:PORT");
	return -1;
not_loopback:
	*err = xasprintf("--listen %s: only a loopback address (127.x.y.z or ::1): the exports have no "
	                 "authentication", s);
	return -1;
}

char *
instant_listen_text(const struct instant_listen *l)
{
	if (!l->tcp)
		return xstrdup("unix");
	return strchr(l->addr, ':') != NULL ? xasprintf("[%s]:%u", l->addr, l->port)
	                                    : xasprintf("%s:%u", l->addr, l->port);
}

void
instant_rec_put(const struct instant_rec *x, struct sbuf *b)
{
	char *listen = instant_listen_text(&x->listen);
	size_t i;

	rec_put_u16(b, INSTANT_RECORD_V1);
	rec_put_u64(b, x->id);
	rec_put_u8(b, (uint8_t)x->state);
	rec_put_str(b, x->rule);
	rec_put_str(b, x->vm);
	rec_put_u64(b, x->point);
	rec_put_str(b, x->repo);
	rec_put_str(b, x->key_file);
	rec_put_str(b, listen);
	rec_put_u64(b, (uint64_t)x->created);
	rec_put_u16(b, (uint16_t)x->ndisks);
	for (i = 0; i < x->ndisks; i++)
		rec_put_u64(b, x->capacity[i]);
	free(listen);
}

int
instant_rec_get(const void *p, size_t n, struct instant_rec *x)
{
	struct rec_reader r;
	char *listen, *err = NULL;
	uint8_t state;
	size_t i;
	int rc = -1;

	memset(x, 0, sizeof(*x));
	rec_reader_init(&r, p, n);
	if (rec_get_u16(&r) != INSTANT_RECORD_V1)
		return -1;
	x->id = rec_get_u64(&r);
	state = rec_get_u8(&r);
	x->rule = rec_get_str(&r);
	x->vm = rec_get_str(&r);
	x->point = rec_get_u64(&r);
	x->repo = rec_get_str(&r);
	x->key_file = rec_get_opt_str(&r);
	listen = rec_get_str(&r);
	x->created = (int64_t)rec_get_u64(&r);
	x->ndisks = rec_get_u16(&r);
	if (r.bad || x->ndisks == 0 || x->ndisks > INSTANT_MAX_DISKS)
		goto done;
	x->capacity = xcalloc(x->ndisks, sizeof(uint64_t));
	for (i = 0; i < x->ndisks; i++)
		x->capacity[i] = rec_get_u64(&r);
	if (r.bad || r.n != 0 || x->id == 0 || x->point == 0 || (state != INSTANT_RUNNING && state != INSTANT_STOPPING) ||
	    !file_name_is_safe(x->rule) || !file_name_is_safe(x->vm) || x->repo[0] != '/' ||
	    (x->key_file != NULL && x->key_file[0] != '/') || instant_listen_parse(listen, x->ndisks, &x->listen, &err) != 0)
		goto done;
	x->state = (enum instant_state)state;
	rc = 0;
done:
	free(err);
	free(listen);
	return rc;
}

void
instant_rec_free(struct instant_rec *x)
{
	free(x->rule);
	free(x->vm);
	free(x->repo);
	free(x->key_file);
	free(x->capacity);
	memset(x, 0, sizeof(*x));
}
