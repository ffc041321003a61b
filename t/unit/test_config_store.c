/* Unit tests for engine/config_store.c: the last good version of each
 * config file kept in the store across restarts.  A "run" is what the
 * daemon does with its config at start-up: open the store, give the loader
 * the kept versions, reload, save, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/config.h"
#include "engine/config_store.h"
#include "engine/core/log.h"
#include "engine/core/record.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "t/unit/tfiles.h"

struct env {
	char dir[256];     /* holds conf/ and store/ */
	char *conf;
	char *store;
};

static const char platforms_yaml[] =
    "kind: platform\nname: vc-a\nurl: https://127.0.0.1:18443/sdk\nusername: user\n"
    "password_file: secrets/pw\n"
    "---\n"
    "kind: node\nname: local\nrepository: /r\ntemp_dir: /t\n";

static const char rules_yaml[] =
    "kind: replication\n"
    "name: rep\n"
    "source: { platform: vc-a, vms: [web01] }\n"
    "node: local\n"
    "target: { platform: vc-a, datacenter: DC0, host: H0, datastore: DS0, name: \"{vm}-copy\" }\n"
    "options: { auto_sync: false }\n";

static const char rules2_yaml[] =
    "kind: replication\n"
    "name: rep\n"
    "source: { platform: vc-a, vms: [web01, web02] }\n"
    "node: local\n"
    "target: { platform: vc-a, datacenter: DC0, host: H0, datastore: DS0, name: \"{vm}-copy\" }\n"
    "options: { auto_sync: false }\n";

static const char broken_yaml[] = "kind: replication\nname: [oops\n";

static void
conf_write(struct env *e, const char *name, const char *text)
{
	tfile_write(e->conf, name, text);
}

static void
conf_remove(struct env *e, const char *name)
{
	tfile_remove(e->conf, name);
}

static int
setup(void **state)
{
	struct env *e = xcalloc(1, sizeof(*e));
	char *p;

	log_set_level(LOG_ERR);
	snprintf(e->dir, sizeof(e->dir), "/tmp/vmferry-cfgstore-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	e->conf = xasprintf("%s/conf", e->dir);
	e->store = xasprintf("%s/store", e->dir);
	assert_int_equal(mkdir(e->conf, 0700), 0);
	p = xasprintf("%s/secrets", e->conf);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	conf_write(e, "secrets/pw", "pw\n");
	conf_write(e, "10-platforms.yaml", platforms_yaml);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	char *cmd = xasprintf("rm -rf '%s'", e->dir);

	store_close();
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(e->conf);
	free(e->store);
	free(e);
	return 0;
}

/* One start of the daemon, as far as the config goes; returns the number
 * of errors.  The loader stays up for the caller to look at (run_end). */
static int
run_start(struct env *e, struct cfg_loader *ld)
{
	struct cfg_errors errs = { 0 };
	int n;

	assert_int_equal(store_open(e->store, NULL), 0);
	cfg_loader_init(ld, e->conf);
	config_store_restore(ld);
	n = cfg_loader_reload(ld, &errs);
	cfg_errors_free(&errs);
	config_store_save(ld);
	assert_int_equal(store_commit(), 0);
	return n;
}

static void
run_end(struct cfg_loader *ld)
{
	cfg_loader_free(ld);
	store_close();
}

/* A reload while running. */
static int
run_reload(struct cfg_loader *ld)
{
	struct cfg_errors errs = { 0 };
	int n = cfg_loader_reload(ld, &errs);

	cfg_errors_free(&errs);
	config_store_save(ld);
	assert_int_equal(store_commit(), 0);
	return n;
}

static const struct cfg_file *
good_file(const struct cfg_loader *ld, const char *name)
{
	size_t i;

	for (i = 0; i < ld->ngood; i++)
		if (strcmp(cfg_file_name(ld->good[i]), name) == 0)
			return ld->good[i];
	return NULL;
}

/* The text kept for a file, or NULL (caller frees). */
static char *
kept_text(const char *name)
{
	struct rec_reader r;
	char *text = NULL, *rname;
	uint8_t *blob;
	size_t vlen, len;
	void *val;

	if (!store_get(STORE_CONFIG, name, strlen(name), &val, &vlen))
		return NULL;
	rec_reader_init(&r, val, vlen);
	assert_int_equal(rec_get_u16(&r), 1);
	rname = rec_get_str(&r);
	blob = rec_get_blob(&r, &len);
	assert_false(r.bad);
	assert_string_equal(rname, name);
	text = xstrndup((const char *)blob, len);
	free(rname);
	free(blob);
	free(val);
	return text;
}

static void
assert_kept(const char *name, const char *want)
{
	char *text = kept_text(name);

	if (want == NULL) {
		assert_null(text);
		return;
	}
	assert_non_null(text);
	assert_string_equal(text, want);
	free(text);
}

/* ---- tests ------------------------------------------------------------- */

static void
test_broken_file_survives_restart(void **state)
{
	struct env *e = *state;
	struct cfg_loader ld;
	const struct cfg_rule *r;
	uint64_t digest;

	conf_write(e, "30-rules.yaml", rules_yaml);
	assert_int_equal(run_start(e, &ld), 0);
	digest = config_rule_any(&ld.cur, "rep")->digest;
	assert_false(good_file(&ld, "30-rules.yaml")->fallback);
	run_end(&ld);
	assert_int_equal(store_open(e->store, NULL), 0);
	assert_kept("30-rules.yaml", rules_yaml);
	assert_kept("10-platforms.yaml", platforms_yaml);
	store_close();

	/* broken while the daemon was down: the restart runs what ran before */
	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(run_start(e, &ld), 1);
	assert_non_null(r = config_rule_any(&ld.cur, "rep"));
	assert_true(r->digest == digest);
	assert_true(good_file(&ld, "30-rules.yaml")->fallback);
	assert_false(good_file(&ld, "10-platforms.yaml")->fallback);
	assert_kept("30-rules.yaml", rules_yaml);

	/* fixed with a change: the new version is in effect and kept */
	conf_write(e, "30-rules.yaml", rules2_yaml);
	assert_int_equal(run_reload(&ld), 0);
	assert_int_equal(config_rule_any(&ld.cur, "rep")->nvms, 2);
	assert_false(good_file(&ld, "30-rules.yaml")->fallback);
	assert_kept("30-rules.yaml", rules2_yaml);
	run_end(&ld);

	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(run_start(e, &ld), 1);
	assert_int_equal(config_rule_any(&ld.cur, "rep")->nvms, 2);
	run_end(&ld);
}

static void
test_removed_file_is_forgotten(void **state)
{
	struct env *e = *state;
	struct cfg_loader ld;

	conf_write(e, "30-rules.yaml", rules_yaml);
	assert_int_equal(run_start(e, &ld), 0);
	conf_remove(e, "30-rules.yaml");
	assert_int_equal(run_reload(&ld), 0);
	assert_null(config_rule_any(&ld.cur, "rep"));
	assert_kept("30-rules.yaml", NULL);
	assert_kept("10-platforms.yaml", platforms_yaml);
	run_end(&ld);

	/* put back broken: it has no last good version */
	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(run_start(e, &ld), 1);
	assert_null(config_rule_any(&ld.cur, "rep"));
	assert_null(good_file(&ld, "30-rules.yaml"));
	run_end(&ld);
}

static void
test_never_good_is_not_kept(void **state)
{
	struct env *e = *state;
	struct cfg_loader ld;

	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(run_start(e, &ld), 1);
	assert_kept("30-rules.yaml", NULL);
	run_end(&ld);
	assert_int_equal(run_start(e, &ld), 1);
	assert_null(config_rule_any(&ld.cur, "rep"));
	run_end(&ld);

	/* good, but rejected by a cross-file check: not good either */
	conf_write(e, "30-rules.yaml", "kind: node\nname: local\nrepository: /r\ntemp_dir: /t\n");
	assert_int_equal(run_start(e, &ld), 1);
	assert_kept("30-rules.yaml", NULL);
	run_end(&ld);
}

static void
test_unusable_records_are_dropped(void **state)
{
	struct env *e = *state;
	static const char gone_yaml[] =
	    "kind: platform\nname: vc-x\nurl: https://x/sdk\nusername: u\npassword_file: secrets/gone\n";
	struct cfg_loader ld;
	struct sbuf b;

	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(store_open(e->store, NULL), 0);
	/* a version this daemon does not know */
	store_put(STORE_CONFIG, "30-rules.yaml", 13, "\x00\x02zz", 4);
	/* a text that no longer loads (its platform's secret is gone) */
	sbuf_init(&b);
	rec_put_u16(&b, 1);
	rec_put_str(&b, "40-more.yaml");
	rec_put_blob(&b, gone_yaml, strlen(gone_yaml));
	store_put(STORE_CONFIG, "40-more.yaml", 12, b.data, b.len);
	sbuf_free(&b);
	/* a name that is not a rule file's */
	sbuf_init(&b);
	rec_put_u16(&b, 1);
	rec_put_str(&b, "../x.yaml");
	rec_put_blob(&b, rules_yaml, strlen(rules_yaml));
	store_put(STORE_CONFIG, "../x.yaml", 9, b.data, b.len);
	sbuf_free(&b);
	assert_int_equal(store_commit(), 0);
	store_close();

	assert_int_equal(run_start(e, &ld), 1);
	assert_null(config_rule_any(&ld.cur, "rep"));
	assert_int_equal(ld.ngood, 1);
	assert_kept("30-rules.yaml", NULL);
	assert_kept("40-more.yaml", NULL);
	assert_kept("../x.yaml", NULL);
	run_end(&ld);
}

static void
test_seed(void **state)
{
	struct env *e = *state;
	struct cfg_errors errs = { 0 };
	struct cfg_loader ld;

	cfg_loader_init(&ld, e->conf);
	assert_int_equal(cfg_loader_seed(&ld, "30-rules.yaml", rules_yaml, strlen(rules_yaml), &errs), 0);
	assert_int_equal(errs.n, 0);
	assert_int_equal(cfg_loader_seed(&ld, "30-rules.yaml", rules_yaml, strlen(rules_yaml), &errs), -1);
	assert_int_equal(cfg_loader_seed(&ld, "x.yml", rules_yaml, strlen(rules_yaml), &errs), -1);
	assert_int_equal(cfg_loader_seed(&ld, "a/x.yaml", rules_yaml, strlen(rules_yaml), &errs), -1);
	assert_int_equal(cfg_loader_seed(&ld, "40.yaml", broken_yaml, strlen(broken_yaml), &errs), -1);
	assert_int_equal(errs.n, 4);
	assert_int_equal(ld.ngood, 1);
	assert_string_equal(cfg_file_name(ld.good[0]), "30-rules.yaml");
	assert_string_equal(ld.good[0]->text, rules_yaml);
	cfg_errors_free(&errs);

	/* the file on disk is broken: the seeded version is in effect */
	conf_write(e, "30-rules.yaml", broken_yaml);
	assert_int_equal(cfg_loader_reload(&ld, &errs), 1);
	assert_non_null(config_rule_any(&ld.cur, "rep"));
	assert_true(good_file(&ld, "30-rules.yaml")->fallback);
	cfg_errors_free(&errs);
	cfg_loader_free(&ld);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_broken_file_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_file_is_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_good_is_not_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unusable_records_are_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
