/* The last good config files in the store (see config_store.h).
 *
 * One record per file in STORE_CONFIG, keyed by the file's name in the
 * config directory: u16 version, the name, the text as a blob.  The text,
 * not the parsed structs, is kept: a restart parses it again, so it gets
 * the same checks (and the same secrets) as any other version. */
#include "engine/config_store.h"

#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/util.h"

#define CONFIG_REC_V1 1

static int
restore_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct cfg_loader *ld = arg;
	struct cfg_errors errs = { 0 };
	struct rec_reader r;
	uint8_t *text = NULL;
	char *name = NULL;
	size_t len = 0;

	rec_reader_init(&r, val, vlen);
	if (rec_get_u16(&r) != CONFIG_REC_V1) {
		log_err("store: config file record of unknown version skipped");
		return 0;
	}
	name = rec_get_str(&r);
	text = rec_get_blob(&r, &len);
	if (r.bad || name == NULL || strlen(name) != klen || memcmp(name, key, klen) != 0) {
		log_err("store: damaged config file record skipped");
		goto out;
	}
	if (cfg_loader_seed(ld, name, text != NULL ? (const char *)text : "", len, &errs) != 0)
		log_warn("config: %s: the last good version kept from the previous run no longer loads, "
		    "so it is forgotten: %s", name, errs.n ? errs.msgs[0] : "?");
	cfg_errors_free(&errs);
out:
	free(name);
	free(text);
	return 0;
}

void
config_store_restore(struct cfg_loader *ld)
{
	store_scan(STORE_CONFIG, "", 0, 0, 0, restore_one, ld);
}

struct names {
	char **v;
	size_t n;
};

static int
collect_name(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct names *ns = arg;

	ns->v = xreallocarray(ns->v, ns->n + 1, sizeof(*ns->v));
	ns->v[ns->n++] = xstrndup(key, klen);
	return 0;
}

static int
is_kept(const struct cfg_loader *ld, const char *name)
{
	size_t i;

	for (i = 0; i < ld->ngood; i++)
		if (strcmp(cfg_file_name(ld->good[i]), name) == 0)
			return 1;
	return 0;
}

void
config_store_save(const struct cfg_loader *ld)
{
	struct names stored = { NULL, 0 };
	struct sbuf r;
	size_t i, vlen;
	void *val;

	/* files removed from the directory, or never good */
	store_scan(STORE_CONFIG, "", 0, 0, 0, collect_name, &stored);
	for (i = 0; i < stored.n; i++) {
		if (!is_kept(ld, stored.v[i]))
			store_del(STORE_CONFIG, stored.v[i], strlen(stored.v[i]));
		free(stored.v[i]);
	}
	free(stored.v);

	/* a reload reads every file again: write only what changed */
	for (i = 0; i < ld->ngood; i++) {
		const struct cfg_file *f = ld->good[i];
		const char *name = cfg_file_name(f);
		int same;

		sbuf_init(&r);
		rec_put_u16(&r, CONFIG_REC_V1);
		rec_put_str(&r, name);
		rec_put_blob(&r, f->text, f->len);
		same = 0;
		if (store_get(STORE_CONFIG, name, strlen(name), &val, &vlen)) {
			same = vlen == r.len && memcmp(val, r.data, vlen) == 0;
			free(val);
		}
		if (!same)
			store_put(STORE_CONFIG, name, strlen(name), r.data, r.len);
		sbuf_free(&r);
	}
}
