#include "engine/platform.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "drivers/vsops.h"
#include "drivers/vsphere.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/util.h"

struct inv_waiter {
	platform_inv_fn done;
	void *arg;
};

struct platform {
	char *name;
	char *fingerprint;          /* connection settings the client was made with */
	struct vs_client *client;
	struct vs_inventory *inv;
	double inv_time;
	struct vs_op *inv_op;
	struct inv_waiter *waiters;
	size_t nwaiters;
	int seen;                   /* still configured (mark and sweep on reload) */
};

static struct platform *plats;
static size_t nplats;

/* Everything that decides how we connect; a change means a new client. */
static char *
platform_fingerprint(const struct cfg_platform *p)
{
	char tp[65];
	size_t i;

	for (i = 0; i < 32; i++)
		snprintf(tp + i * 2, 3, "%02x", p->thumbprint[i]);
	return xasprintf("%s\n%s\n%s\n%d:%s\n%s\n%d", p->url, p->username, p->password, p->has_thumbprint,
	    p->has_thumbprint ? tp : "", p->ca_file ? p->ca_file : "", p->insecure);
}

static void
platform_drop(struct platform *p)
{
	size_t i;

	free(vs_op_cancel(p->inv_op));
	for (i = 0; i < p->nwaiters; i++)
		p->waiters[i].done(NULL, "the platform was reconfigured", 0, 0, p->waiters[i].arg);
	free(p->waiters);
	if (p->inv != NULL) {
		vs_inventory_free(p->inv);
		free(p->inv);
	}
	vs_client_free(p->client);
	if (p->fingerprint != NULL) {
		explicit_bzero(p->fingerprint, strlen(p->fingerprint));
		free(p->fingerprint);
	}
	free(p->name);
	memset(p, 0, sizeof(*p));
}

static struct platform *
platform_find(const char *name)
{
	size_t i;

	for (i = 0; i < nplats; i++)
		if (strcmp(plats[i].name, name) == 0)
			return &plats[i];
	return NULL;
}

void
platform_apply_config(const struct config *c)
{
	size_t i, k;

	for (i = 0; i < nplats; i++)
		plats[i].seen = 0;
	for (i = 0; i < c->nplatforms; i++) {
		const struct cfg_platform *cp = c->platforms[i];
		struct platform *p = platform_find(cp->name);
		char *fp = platform_fingerprint(cp);
		struct vs_config vc;

		if (p != NULL && strcmp(p->fingerprint, fp) == 0) {
			p->seen = 1;
			explicit_bzero(fp, strlen(fp));
			free(fp);
			continue;
		}
		if (p != NULL) {
			log_info("platform %s: connection settings changed; reconnecting", cp->name);
			platform_drop(p);
		} else {
			plats = xreallocarray(plats, nplats + 1, sizeof(*plats));
			p = &plats[nplats++];
			memset(p, 0, sizeof(*p));
		}
		memset(&vc, 0, sizeof(vc));
		vc.name = cp->name;
		vc.url = cp->url;
		vc.username = cp->username;
		vc.password = cp->password;
		vc.tls.insecure = cp->insecure;
		vc.tls.has_pin = cp->has_thumbprint;
		memcpy(vc.tls.pin, cp->thumbprint, 32);
		vc.tls.ca_file = cp->ca_file;
		p->name = xstrdup(cp->name);
		p->fingerprint = fp;
		p->client = vs_client_new(&vc);
		p->seen = 1;
	}
	/* Platforms no longer configured go away. */
	for (i = 0, k = 0; i < nplats; i++) {
		if (!plats[i].seen) {
			platform_drop(&plats[i]);
			continue;
		}
		plats[k++] = plats[i];
	}
	nplats = k;
}

void
platform_shutdown(void)
{
	size_t i;

	for (i = 0; i < nplats; i++)
		platform_drop(&plats[i]);
	free(plats);
	plats = NULL;
	nplats = 0;
}

struct vs_client *
platform_client(const char *name)
{
	struct platform *p = platform_find(name);

	return p ? p->client : NULL;
}

static void
inventory_done(struct vs_out *out, void *arg)
{
	struct platform *p = platform_find(arg);
	struct inv_waiter *w;
	size_t i, n;

	free(arg);
	if (p == NULL)
		return;
	p->inv_op = NULL;
	if (out->status == VS_OK) {
		if (p->inv != NULL) {
			vs_inventory_free(p->inv);
			free(p->inv);
		}
		p->inv = out->inv;
		out->inv = NULL;
		p->inv_time = now_mono();
		log_info("platform %s: inventory read: %zu VMs, %zu hosts, %zu datastores", p->name, p->inv->nvms,
		    p->inv->nhosts, p->inv->ndatastores);
	}
	/* Waiters may ask again from their callback: detach the list first. */
	w = p->waiters;
	n = p->nwaiters;
	p->waiters = NULL;
	p->nwaiters = 0;
	for (i = 0; i < n; i++) {
		if (out->status == VS_OK)
			w[i].done(p->inv, NULL, 0, 0, w[i].arg);
		else
			w[i].done(NULL, out->error, out->status == VS_AUTH || out->status == VS_TLS, 0, w[i].arg);
	}
	free(w);
}

int
platform_inventory(const char *name, int refresh, platform_inv_fn done, void *arg)
{
	struct platform *p = platform_find(name);

	if (p == NULL)
		return -1;
	if (p->inv != NULL && !refresh) {
		done(p->inv, NULL, 0, now_mono() - p->inv_time, arg);
		return 0;
	}
	p->waiters = xreallocarray(p->waiters, p->nwaiters + 1, sizeof(*p->waiters));
	p->waiters[p->nwaiters].done = done;
	p->waiters[p->nwaiters].arg = arg;
	p->nwaiters++;
	if (p->inv_op == NULL) {
		p->inv_op = vs_get_inventory(p->client, 100, inventory_done, xstrdup(p->name));
	}
	return 0;
}
