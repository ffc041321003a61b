/* Unit tests for engine/config.c: single-file parsing, defaults, templates,
 * digests, bandwidth windows, and the loader's last-good-version rules. */
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
#include "engine/core/util.h"
#include "t/unit/tfiles.h"

/* ---- helpers ---------------------------------------------------------- */

struct tdir {
	char path[256];
};

static void
tdir_write(struct tdir *d, const char *name, const char *text)
{
	tfile_write(d->path, name, text);
}

static void
tdir_remove(struct tdir *d, const char *name)
{
	tfile_remove(d->path, name);
}

static const char platforms_yaml[] =
    "kind: platform\n"
    "name: vc-a\n"
    "url: https://127.0.0.1:18443/sdk\n"
    "username: user\n"
    "password_file: secrets/pw\n"
    "---\n"
    "kind: platform\n"
    "name: vc-b\n"
    "url: https://127.0.0.1:18444/sdk\n"
    "username: user\n"
    "password_env: VMFERRY_TEST_SECRET\n";

static const char node_yaml[] =
    "kind: node\nname: local\nrepository: /r\ntemp_dir: /t\n";

static const char rules_yaml[] =
    "kind: migration\n"
    "name: move-web\n"
    "source: { platform: vc-a, vms: [web01, web02] }\n"
    "node: local\n"
    "target: { platform: vc-b, datacenter: DC0, host: H0, datastore: DS0 }\n";

static int
setup_dir(void **state)
{
	struct tdir *d = xcalloc(1, sizeof(*d));
	const char *tmp = getenv("TMPDIR");
	char *p;

	snprintf(d->path, sizeof(d->path), "%s/vmferry-cfg-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(d->path));
	p = xasprintf("%s/secrets", d->path);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	tdir_write(d, "secrets/pw", "s3cret-file\nsecond line\n");
	setenv("VMFERRY_TEST_SECRET", "s3cret-env", 1);
	tdir_write(d, "10-platforms.yaml", platforms_yaml);
	tdir_write(d, "20-node.yaml", node_yaml);
	*state = d;
	return 0;
}

static int
teardown_dir(void **state)
{
	struct tdir *d = *state;
	char *cmd = xasprintf("rm -rf '%s'", d->path);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(d);
	return 0;
}

/* Parses text as one file; returns 0/-1 and leaves the errors joined by
 * newlines in *msgs (caller frees). */
static int
parse(const char *text, const char *confdir, struct cfg_file *f, char **msgs)
{
	struct cfg_errors e = { 0 };
	struct sbuf b;
	size_t i;
	int rc;

	rc = cfg_parse_buffer("t.yaml", text, strlen(text), confdir ? confdir : "/nonexistent", f, &e);
	sbuf_init(&b);
	for (i = 0; i < e.n; i++)
		sbuf_printf(&b, "%s\n", e.msgs[i]);
	cfg_errors_free(&e);
	*msgs = sbuf_steal(&b);
	return rc;
}

/* Expects text to fail with a message containing want. */
static void
expect_error(const char *text, const char *want)
{
	struct cfg_file f;
	char *msgs;

	assert_int_equal(parse(text, NULL, &f, &msgs), -1);
	if (strstr(msgs, want) == NULL)
		fail_msg("expected \"%s\" in:\n%s", want, msgs);
	assert_null(f.path);
	assert_int_equal(f.nrules, 0);
	free(msgs);
}

static char *
dump_string(const struct config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_dump(c, f);
	fclose(f);
	return buf;
}

static int
reload(struct cfg_loader *ld, char **msgs)
{
	struct cfg_errors e = { 0 };
	struct sbuf b;
	size_t i;
	int n;

	n = cfg_loader_reload(ld, &e);
	assert_int_equal((size_t)n, e.n);
	sbuf_init(&b);
	for (i = 0; i < e.n; i++)
		sbuf_printf(&b, "%s\n", e.msgs[i]);
	cfg_errors_free(&e);
	if (msgs != NULL)
		*msgs = sbuf_steal(&b);
	else
		sbuf_free(&b);
	return n;
}

/* ---- single file ------------------------------------------------------ */

static void
test_defaults(void **state)
{
	struct cfg_file f;
	char *msgs;
	const struct cfg_rule *r;

	(void)state;
	assert_int_equal(parse("kind: system\n---\n" "kind: migration\nname: m\n"
	    "source: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "---\nkind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "schedule: { type: daily, start: \"01:00\" }\n"
	    "---\nkind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\n", NULL, &f, &msgs), 0);
	assert_string_equal(msgs, "");
	free(msgs);
	assert_true(f.system.present);
	assert_int_equal(f.system.max_tasks, 4);
	assert_int_equal(f.system.max_tasks_per_host, 4);
	assert_true(f.system.transfer_buffer == 4u << 20);
	assert_true(f.system.host_buffer_cap == 32u << 20);
	assert_int_equal(f.nrules, 3);

	r = &f.rules[0];
	assert_int_equal(r->kind, CFG_MIGRATION);
	assert_int_equal(r->options.fast_transfer, 0);
	assert_int_equal(r->options.quiesce, 0);
	assert_int_equal(r->options.power_on_target, 1);
	assert_int_equal(r->options.cutover, CUTOVER_SHUTDOWN);
	assert_int_equal(r->options.set, 0);
	assert_int_equal(r->nwindows, 0);
	assert_string_equal(r->loc.file, "t.yaml");
	assert_int_equal(r->loc.line, 3);

	r = &f.rules[1];
	assert_int_equal(r->options.auto_sync, 1);
	assert_int_equal(r->keep_history, 3);
	assert_int_equal(r->schedule.nentries, 1);
	assert_int_equal(r->schedule.entries[0].type, SCHED_DAILY);
	assert_int_equal(r->schedule.entries[0].ntimes, 1);
	assert_int_equal(r->schedule.entries[0].times[0], 60);

	r = &f.rules[2];
	assert_int_equal(r->retention, 7);
	assert_int_equal(r->schedule.entries[0].type, SCHED_ONCE);
	assert_int_equal(r->schedule.entries[0].mode, BACKUP_FULL);
	cfg_file_free(&f);
}

static void
test_secrets(void **state)
{
	struct tdir *d = *state;
	struct cfg_file f;
	char *msgs;

	assert_int_equal(parse(platforms_yaml, d->path, &f, &msgs), 0);
	free(msgs);
	assert_int_equal(f.nplatforms, 2);
	/* first line only, newline stripped */
	assert_string_equal(f.platforms[0].password, "s3cret-file");
	assert_string_equal(f.platforms[0].password_source, "file:secrets/pw");
	assert_string_equal(f.platforms[1].password, "s3cret-env");
	assert_string_equal(f.platforms[1].password_source, "env:VMFERRY_TEST_SECRET");
	cfg_file_free(&f);

	/* a missing file or variable is named; the secret never appears */
	unsetenv("VMFERRY_TEST_SECRET");
	assert_int_equal(parse(platforms_yaml, d->path, &f, &msgs), -1);
	assert_non_null(strstr(msgs, "environment variable VMFERRY_TEST_SECRET is not set"));
	free(msgs);
	setenv("VMFERRY_TEST_SECRET", "s3cret-env", 1);
	assert_int_equal(parse(platforms_yaml, "/nonexistent", &f, &msgs), -1);
	assert_non_null(strstr(msgs, "t.yaml:5:16: password_file: cannot read secrets/pw"));
	assert_null(strstr(msgs, "s3cret"));
	free(msgs);
}

static void
test_errors(void **state)
{
	static const char mig[] = "kind: migration\nname: m\nsource: { platform: p, vms: [a] }\n"
	    "node: n\ntarget: { platform: p, datacenter: d, host: h, datastore: s }\n";
	char *t;

	(void)state;
	expect_error("kind: [x]\n", "t.yaml:1:7: kind: expected a string, got a list");
	expect_error("kind: foo\n", "t.yaml:1:7: unknown kind \"foo\"");
	expect_error("name: x\n", "t.yaml:1:1: missing required key \"kind\"");
	expect_error("kind: system\nmax_tasks: yes\n", "t.yaml:2:12: max_tasks: expected an integer, got \"yes\"");
	expect_error("kind: system\nmax_tasks: 4.0\n", "expected an integer");
	expect_error("kind: system\nmax_tasks: 2\n", "max_tasks_per_host (4) is above max_tasks (2)");
	expect_error("kind: system\ntransfer_buffer: 16MiB\n",
	    "4 x 16.0 MiB = 64.0 MiB exceeds host_buffer_cap 32.0 MiB");
	expect_error("kind: system\ntransfer_buffer: 32KiB\n", "between 64KiB and 64MiB");
	expect_error("kind: system\ntransfer_buffer: 65537\n", "multiple of 4KiB");
	expect_error("kind: system\nbogus: 1\n", "t.yaml:2:1: unknown key \"bogus\" in system");
	expect_error("kind: system\nmax_tasks: 1\nmax_tasks: 2\n", "duplicate key \"max_tasks\"");
	expect_error("kind: node\nname: n\n", "missing required keys \"repository\", \"temp_dir\" in node");
	expect_error("kind: node\nname: \"a/b\"\nrepository: r\ntemp_dir: t\n", "is not a safe name");
	expect_error("kind: node\nname: \"..\"\nrepository: r\ntemp_dir: t\n", "is not a safe name");
	expect_error("kind: node\nname: x\nrepository: \"\"\ntemp_dir: t\n", "repository: empty path");
	expect_error("kind: platform\nname: p\nurl: http://x/sdk\nusername: u\npassword_env: PATH\n",
	    "url: expected https://");
	expect_error("kind: platform\nname: p\nurl: https:///sdk\nusername: u\npassword_env: PATH\n",
	    "url: expected https://");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\n",
	    "missing required key \"password_file\" or \"password_env\"");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "password_file: f\n", "not both");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "tls: {}\n", "give exactly one of thumbprint, ca_file or insecure: true");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "tls: { insecure: \"true\" }\n", "tls.insecure: expected true or false");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "tls: { thumbprint: abc }\n", "is not a SHA-256 fingerprint");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "datastore_mounts: { ds: relative/path }\n", "path must be absolute");
	expect_error("kind: platform\nname: p\nurl: https://x/sdk\nusername: u\npassword_env: PATH\n"
	    "type: xen\n", "unsupported platform type \"xen\"");

	t = xasprintf("%soptions: { fast_tranfer: true }\n", mig);
	expect_error(t, "t.yaml:6:12: unknown key \"fast_tranfer\" in options");
	free(t);
	t = xasprintf("%soptions: { auto_sync: true }\n", mig);
	expect_error(t, "option \"auto_sync\" does not apply to migration rules");
	free(t);
	t = xasprintf("%sschedule: { type: daily, start: \"01:00\" }\n", mig);
	expect_error(t, "unknown key \"schedule\" in migration rule");
	free(t);
	t = xasprintf("%sbandwidth: [ { days: [mon], from: \"10:00\", to: \"09:00\", limit: 0 } ]\n", mig);
	expect_error(t, "window ends (09:00) before it starts (10:00)");
	free(t);
	t = xasprintf("%sbandwidth: [ { days: [mon], from: \"10:00\", to: \"11:00\", limit: 5MiB } ]\n", mig);
	expect_error(t, "\"5MiB\" is not a rate");
	free(t);
	t = xasprintf("%sbandwidth: [ { days: [moon], from: \"10:00\", to: \"11:00\", limit: 0 } ]\n", mig);
	expect_error(t, "\"moon\" is not a day");
	free(t);
	t = xasprintf("%sbandwidth: { days: [mon] }\n", mig);
	expect_error(t, "bandwidth: expected a list of windows, got a mapping");
	free(t);
	expect_error("kind: migration\nname: m\nsource: { platform: p, vms: [a, \"x/y\"] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n",
	    "\"x/y\" cannot be used as a VM name");
	expect_error("kind: migration\nname: m\nsource: { platform: p, vms: [a, \"\\x01\"] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n",
	    "cannot be used as a VM name");
	expect_error("kind: migration\nname: m\nsource: { platform: p, vms: [a, \"a\\0b\"] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n",
	    "contains a NUL character");
	expect_error("kind: migration\nname: m\nsource: { platform: p, vms: [] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n",
	    "source.vms: needs at least one VM");
	expect_error("kind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\nretention: 65\n",
	    "retention must be between 1 and 64, got 65");
	expect_error("kind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\n",
	    "backup rule \"b\" needs a schedule");
	expect_error("kind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n",
	    "needs a schedule (or options.auto_sync: false)");
	expect_error("kind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "schedule: { type: hourly }\n", "hourly needs an interval");
	expect_error("kind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "schedule: { type: daily, start: \"01:00\", mode: full }\n", "schedule.mode is only used by backup");
	expect_error("kind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "schedule: [ { type: daily, start: \"01:00\" } ]\n", "schedule: expected a mapping");
	expect_error("kind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "schedule: { once: \"2030-13-01 00:00\" }\n", "is not a valid date and time");
	expect_error("kind: migration\nname: m\n  bad: indent\n", "t.yaml:3:6: mapping values are not allowed");
	expect_error("[1, 2\n", "did not find expected");
	expect_error("kind: node\nname: caf\xe9\n", "t.yaml:2:10:");
}

static void
test_empty_and_comments(void **state)
{
	struct cfg_file f;
	char *msgs;

	(void)state;
	assert_int_equal(parse("", NULL, &f, &msgs), 0);
	free(msgs);
	cfg_file_free(&f);
	assert_int_equal(parse("# only a comment\n---\n---\n", NULL, &f, &msgs), 0);
	free(msgs);
	assert_int_equal(f.nrules + f.nplatforms + f.nnodes + f.ntemplates, 0);
	assert_false(f.system.present);
	cfg_file_free(&f);
}

static void
test_aliases_do_not_loop(void **state)
{
	struct cfg_file f;
	char *msgs;

	(void)state;
	/* a self-referencing mapping must give an error, not recurse */
	assert_int_equal(parse("&a { kind: migration, name: m, options: *a }\n", NULL, &f, &msgs), -1);
	free(msgs);
	/* aliases of scalars are fine */
	assert_int_equal(parse("kind: node\nname: &n local\nrepository: *n\ntemp_dir: *n\n", NULL, &f,
	    &msgs), 0);
	free(msgs);
	assert_string_equal(f.nodes[0].repository, "local");
	cfg_file_free(&f);
}

static void
test_schedules(void **state)
{
	struct cfg_file f;
	char *msgs;
	const struct cfg_schedule *s;

	(void)state;
	assert_int_equal(parse(
	    "kind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\nschedule:\n"
	    "  - { type: hourly, mode: incremental, interval: 90m, start: \"00:30\" }\n"
	    "  - { type: daily, mode: differential, times: [\"13:00\", \"01:00\"] }\n"
	    "  - { type: weekly, mode: full, days: [sun, mon], times: \"22:00\" }\n"
	    "  - { type: monthly, mode: full, day: 31, start: \"03:00\" }\n"
	    "  - { type: hourly, mode: incremental, interval: 45 }\n",
	    NULL, &f, &msgs), 0);
	free(msgs);
	s = &f.rules[0].schedule;
	assert_int_equal(s->nentries, 5);
	assert_int_equal(s->entries[0].type, SCHED_HOURLY);
	assert_int_equal(s->entries[0].interval_min, 90);
	assert_int_equal(s->entries[0].times[0], 30);
	assert_int_equal(s->entries[1].mode, BACKUP_DIFFERENTIAL);
	assert_int_equal(s->entries[1].ntimes, 2);
	assert_int_equal(s->entries[1].times[0], 60);     /* sorted */
	assert_int_equal(s->entries[1].times[1], 780);
	assert_int_equal(s->entries[2].days, (1 << 0) | (1 << 6));
	assert_int_equal(s->entries[3].day, 31);
	assert_int_equal(s->entries[4].interval_min, 45);
	assert_int_equal(s->entries[4].times[0], 0);      /* hourly counts from midnight */
	cfg_file_free(&f);
}

static void
test_window_limit(void **state)
{
	struct cfg_file f;
	char *msgs;
	const struct cfg_rule *r;
	uint64_t bps = 99;

	(void)state;
	assert_int_equal(parse("kind: migration\nname: m\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\nbandwidth:\n"
	    "  - { days: [mon, tue], from: \"09:00\", to: \"18:00\", limit: 20MiB/s }\n"
	    "  - { days: [mon], from: \"08:00\", to: \"24:00\", limit: 1MiB/s }\n"
	    "  - { days: [sun], from: \"00:00\", to: \"24:00\", limit: 0 }\n", NULL, &f, &msgs), 0);
	free(msgs);
	r = &f.rules[0];
	assert_int_equal(r->nwindows, 3);
	/* first matching window wins */
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 0, 9 * 60, &bps), 1);
	assert_true(bps == 20u << 20);
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 0, 8 * 60, &bps), 1);
	assert_true(bps == 1u << 20);
	/* "to" is exclusive, 24:00 covers the last minute */
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 1, 18 * 60, &bps), 0);
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 0, 1439, &bps), 1);
	assert_true(bps == 1u << 20);
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 6, 0, &bps), 1);
	assert_true(bps == 0);
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 2, 600, &bps), 0);
	assert_int_equal(cfg_window_limit(r->windows, r->nwindows, 7, 600, &bps), 0);
	assert_int_equal(cfg_window_limit(NULL, 0, 0, 600, &bps), 0);
	cfg_file_free(&f);
}

static void
test_digest(void **state)
{
	static const char base[] = "kind: migration\nname: m\nsource: { platform: p, vms: [a, b] }\n"
	    "node: n\ntarget: { platform: p, datacenter: d, host: h, datastore: s }\n";
	struct cfg_file f1, f2;
	char *msgs, *t;

	(void)state;
	assert_int_equal(parse(base, NULL, &f1, &msgs), 0);
	free(msgs);
	/* comments, layout, VM order and writing a default out do not matter */
	t = xasprintf("# comment\n%soptions:\n  power_on_target: true\n", base);
	assert_int_equal(parse(t, NULL, &f2, &msgs), 0);
	free(msgs);
	free(t);
	assert_true(f1.rules[0].digest == f2.rules[0].digest);
	cfg_file_free(&f2);
	assert_int_equal(parse("kind: migration\nname: m\nsource:\n  platform: p\n  vms: [b, a]\n"
	    "node: n\ntarget: { platform: p, datacenter: d, host: h, datastore: s }\n", NULL, &f2,
	    &msgs), 0);
	free(msgs);
	assert_true(f1.rules[0].digest == f2.rules[0].digest);
	cfg_file_free(&f2);
	/* an option that changes behaviour does */
	t = xasprintf("%soptions: { quiesce: true }\n", base);
	assert_int_equal(parse(t, NULL, &f2, &msgs), 0);
	free(msgs);
	free(t);
	assert_true(f1.rules[0].digest != f2.rules[0].digest);
	cfg_file_free(&f2);
	t = xasprintf("%sbandwidth: [ { days: [mon], from: \"01:00\", to: \"02:00\", limit: 0 } ]\n", base);
	assert_int_equal(parse(t, NULL, &f2, &msgs), 0);
	free(msgs);
	free(t);
	assert_true(f1.rules[0].digest != f2.rules[0].digest);
	cfg_file_free(&f2);
	cfg_file_free(&f1);
}

/* ---- backup encryption ------------------------------------------------ */

static const char backup_base[] = "kind: backup\nname: b\nsource: { platform: p, vms: [a] }\nnode: n\n"
    "schedule: { once: \"2030-01-01 00:00\" }\n";

static void
test_encryption_parsed(void **state)
{
	struct cfg_file f1, f2;
	char *msgs, *t;

	(void)state;
	assert_int_equal(parse(backup_base, NULL, &f1, &msgs), 0);
	free(msgs);
	assert_null(f1.rules[0].key_file);
	t = xasprintf("%sencryption: { key_file: keys/b.key }\n", backup_base);
	assert_int_equal(parse(t, NULL, &f2, &msgs), 0);
	assert_string_equal(msgs, "");
	free(msgs);
	free(t);
	/* stored as written, relative to the state directory like repository */
	assert_string_equal(f2.rules[0].key_file, "keys/b.key");
	assert_int_equal(f2.rules[0].locs.key_file.line, 6);
	assert_int_equal(f2.rules[0].locs.key_file.col, 25);
	/* a key is a change of the rule */
	assert_true(f1.rules[0].digest != f2.rules[0].digest);
	cfg_file_free(&f2);
	cfg_file_free(&f1);
}

static void
test_encryption_errors(void **state)
{
	char *t;

	(void)state;
	t = xasprintf("%sencryption: { key_file: k, cipher: aes }\n", backup_base);
	expect_error(t, "t.yaml:6:28: unknown key \"cipher\" in encryption");
	free(t);
	t = xasprintf("%sencryption: { }\n", backup_base);
	expect_error(t, "t.yaml:6:13: missing required key \"key_file\" in encryption");
	free(t);
	t = xasprintf("%sencryption: { key_file: \"\" }\n", backup_base);
	expect_error(t, "encryption.key_file: empty path");
	free(t);
	t = xasprintf("%sencryption: keys/b.key\n", backup_base);
	expect_error(t, "encryption: expected a mapping");
	free(t);
	expect_error("kind: replication\nname: r\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\n"
	    "schedule: { type: daily, start: \"01:00\" }\nencryption: { key_file: k }\n",
	    "t.yaml:7:1: unknown key \"encryption\" in replication rule");
	expect_error("kind: migration\nname: m\nsource: { platform: p, vms: [a] }\nnode: n\n"
	    "target: { platform: p, datacenter: d, host: h, datastore: s }\nencryption: { key_file: k }\n",
	    "unknown key \"encryption\" in migration rule");
}

/* Writes a file holding one backup rule: vc-a, node local (repository /r). */
static void
write_backup(struct tdir *d, const char *file, const char *name, const char *vm, const char *extra)
{
	char *t = xasprintf("kind: backup\nname: %s\nsource: { platform: vc-a, vms: [%s] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\n%s", name, vm, extra);

	tdir_write(d, file, t);
	free(t);
}

static void
test_loader_repository_keys_differ(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs, *t;

	write_backup(d, "30-a.yaml", "b1", "x", "encryption: { key_file: /k/one }\n");
	/* the node's repository /r, written as /r/: the same repository */
	write_backup(d, "40-b.yaml", "b2", "y", "repository: /r/\nencryption: { key_file: /k/two }\n");
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, &msgs), 1);
	/* on the later rule's key, naming the earlier rule and where it is */
	assert_non_null(strstr(msgs, "40-b.yaml:7:25: backup rule \"b2\" uses repository \"/r/\" with key_file "
	    "\"/k/two\", but backup rule \"b1\" ("));
	assert_non_null(strstr(msgs, "30-a.yaml:1) uses it with key_file \"/k/one\"; backup rules that "
	    "share a repository must name the same encryption.key_file"));
	free(msgs);
	assert_non_null(config_rule(&ld.cur, CFG_BACKUP, "b1"));
	assert_null(config_rule(&ld.cur, CFG_BACKUP, "b2"));

	/* one with a key, one without: refused too, at the rule's name */
	write_backup(d, "40-b.yaml", "b2", "y", "");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "40-b.yaml:2:7: backup rule \"b2\" uses repository \"/r\" without "
	    "encryption, but backup rule \"b1\" ("));
	assert_non_null(strstr(msgs, "30-a.yaml:1) uses it with key_file \"/k/one\";"));
	free(msgs);
	assert_null(config_rule(&ld.cur, CFG_BACKUP, "b2"));

	/* within one file: the later rule is the error */
	tdir_remove(d, "40-b.yaml");
	t = xasprintf("kind: backup\nname: b3\nsource: { platform: vc-a, vms: [z] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\nrepository: ./r2\n"
	    "---\n"
	    "kind: backup\nname: b4\nsource: { platform: vc-a, vms: [w] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\nrepository: r2\nencryption: { key_file: k }\n");
	tdir_write(d, "50-c.yaml", t);
	free(t);
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "50-c.yaml:14:25: backup rule \"b4\" uses repository \"r2\" with key_file "
	    "\"k\", but backup rule \"b3\" ("));
	assert_non_null(strstr(msgs, "50-c.yaml:1) uses it without encryption;"));
	free(msgs);
	assert_null(config_rule(&ld.cur, CFG_BACKUP, "b3"));
	assert_non_null(config_rule(&ld.cur, CFG_BACKUP, "b1"));
	cfg_loader_free(&ld);
}

static void
test_loader_repository_keys_agree(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	const struct cfg_rule *r;
	char *msgs, *dump;

	/* one repository, one key (written twice alike) */
	write_backup(d, "30-a.yaml", "b1", "x", "encryption: { key_file: /k/one }\n");
	write_backup(d, "40-b.yaml", "b2", "y", "repository: /r\nencryption: { key_file: /k//one }\n");
	/* other repositories, other keys, or none */
	write_backup(d, "50-c.yaml", "b3", "z", "repository: /r3\nencryption: { key_file: /k/three }\n");
	write_backup(d, "60-d.yaml", "b4", "w", "repository: r4\n");
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, &msgs), 0);
	assert_string_equal(msgs, "");
	free(msgs);
	assert_int_equal(ld.cur.nrules, 4);
	assert_non_null(r = config_rule(&ld.cur, CFG_BACKUP, "b1"));
	assert_string_equal(r->repository, "/r");
	assert_string_equal(r->key_file, "/k/one");
	assert_non_null(r = config_rule(&ld.cur, CFG_BACKUP, "b3"));
	assert_string_equal(r->key_file, "/k/three");
	assert_non_null(r = config_rule(&ld.cur, CFG_BACKUP, "b4"));
	assert_null(r->key_file);

	dump = dump_string(&ld.cur);
	assert_non_null(strstr(dump, "backup b3: # "));
	assert_non_null(strstr(dump, "  repository: /r3\n  encryption: key_file /k/three\n"));
	assert_non_null(strstr(dump, "  repository: r4\n  template: none\n"));
	free(dump);
	cfg_loader_free(&ld);
}

/* ---- the loader ------------------------------------------------------- */

static void
test_loader_basic_and_dump(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs, *dump;

	tdir_write(d, "30-rules.yaml", rules_yaml);
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, &msgs), 0);
	assert_string_equal(msgs, "");
	free(msgs);
	assert_int_equal(ld.cur.nrules, 1);
	assert_int_equal(ld.cur.nplatforms, 2);
	assert_int_equal(ld.cur.nnodes, 1);
	assert_false(ld.cur.system.present);
	assert_int_equal(ld.cur.system.max_tasks, 4);
	assert_non_null(config_platform(&ld.cur, "vc-a"));
	assert_null(config_platform(&ld.cur, "vc-c"));
	assert_non_null(config_node(&ld.cur, "local"));
	assert_non_null(config_rule(&ld.cur, CFG_MIGRATION, "move-web"));
	assert_null(config_rule(&ld.cur, CFG_BACKUP, "move-web"));
	assert_non_null(config_rule_any(&ld.cur, "move-web"));
	assert_null(config_rule_any(&ld.cur, "nope"));

	dump = dump_string(&ld.cur);
	assert_null(strstr(dump, "s3cret"));
	assert_non_null(strstr(dump, "password_source: file:secrets/pw"));
	assert_non_null(strstr(dump, "password_source: env:VMFERRY_TEST_SECRET"));
	assert_non_null(strstr(dump, "migration move-web:"));
	free(dump);
	cfg_loader_free(&ld);
}

static void
test_loader_keeps_last_good(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	const struct cfg_rule *r, *old;
	uint64_t digest;
	char *msgs, *t;

	tdir_write(d, "30-rules.yaml", rules_yaml);
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, NULL), 0);
	digest = config_rule_any(&ld.cur, "move-web")->digest;

	/* a syntax error: the old version stays in effect */
	tdir_write(d, "30-rules.yaml", "kind: migration\nname: [oops\n");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "30-rules.yaml:"));
	free(msgs);
	assert_non_null(r = config_rule_any(&ld.cur, "move-web"));
	assert_true(r->digest == digest);
	assert_int_equal(ld.generation, 2);

	/* a cross-file error in the new version: still the old version */
	t = xasprintf("%stemplate: nosuch\n", rules_yaml);
	tdir_write(d, "30-rules.yaml", t);
	free(t);
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "30-rules.yaml:6:11: unknown template \"nosuch\""));
	assert_null(strstr(msgs, "last good version"));
	free(msgs);
	assert_non_null(r = config_rule_any(&ld.cur, "move-web"));
	assert_null(r->template_name);

	/* a good edit that matters replaces it, with a new digest; the old
	 * object stays readable until the next reload (the engine compares) */
	t = xasprintf("%soptions: { quiesce: true }\n", rules_yaml);
	tdir_write(d, "30-rules.yaml", t);
	free(t);
	old = r;
	assert_int_equal(reload(&ld, NULL), 0);
	assert_non_null(r = config_rule_any(&ld.cur, "move-web"));
	assert_int_equal(r->options.quiesce, 1);
	assert_true(r->digest != digest);
	assert_true(old != r);
	assert_true(old->digest == digest);
	assert_string_equal(old->name, "move-web");
	/* unchanged text: a new object with the same digest */
	old = r;
	assert_int_equal(reload(&ld, NULL), 0);
	assert_non_null(r = config_rule_any(&ld.cur, "move-web"));
	assert_true(old != r);
	assert_true(old->digest == r->digest);

	/* removing the file drops the rule, without errors */
	tdir_remove(d, "30-rules.yaml");
	assert_int_equal(reload(&ld, NULL), 0);
	assert_int_equal(ld.cur.nrules, 0);
	assert_int_equal(ld.ngood, 2);
	cfg_loader_free(&ld);
}

static void
test_loader_old_version_dropped_too(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs;

	tdir_write(d, "30-rules.yaml", rules_yaml);
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, NULL), 0);

	/* the rules file breaks and the platforms it uses go away: its last
	 * good version no longer fits and is left out, with a note */
	tdir_write(d, "30-rules.yaml", "kind: [\n");
	tdir_remove(d, "10-platforms.yaml");
	assert_int_equal(reload(&ld, &msgs), 3);
	assert_non_null(strstr(msgs, "unknown platform \"vc-a\" (in the last good version"));
	free(msgs);
	assert_int_equal(ld.cur.nrules, 0);

	/* the platforms come back: the last good version of the rules is
	 * still remembered and comes back too */
	tdir_write(d, "10-platforms.yaml", platforms_yaml);
	assert_int_equal(reload(&ld, &msgs), 1);
	free(msgs);
	assert_int_equal(ld.cur.nrules, 1);
	cfg_loader_free(&ld);
}

static void
test_loader_unchanged_file_not_reported_twice(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs;

	tdir_write(d, "30-rules.yaml", rules_yaml);
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, NULL), 0);
	/* the node goes away; the unchanged rules file is rejected once, its
	 * identical last good version does not repeat the message */
	tdir_remove(d, "20-node.yaml");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "30-rules.yaml:4:7: unknown node \"local\""));
	free(msgs);
	assert_int_equal(ld.cur.nrules, 0);
	assert_int_equal(ld.cur.nnodes, 0);
	cfg_loader_free(&ld);
}

static void
test_loader_cascade(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs;

	/* 15-more.yaml repeats vc-b (its error) and defines vc-c; dropping it
	 * makes the rule that uses vc-c fail in the next round */
	tdir_write(d, "15-more.yaml",
	    "kind: platform\nname: vc-c\nurl: https://c/sdk\nusername: u\npassword_file: secrets/pw\n"
	    "---\n"
	    "kind: platform\nname: vc-b\nurl: https://b/sdk\nusername: u\npassword_file: secrets/pw\n");
	tdir_write(d, "30-rules.yaml",
	    "kind: backup\nname: b\nsource: { platform: vc-c, vms: [x] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\n");
	tdir_write(d, "40-ok.yaml", rules_yaml);
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, &msgs), 2);
	assert_non_null(strstr(msgs, "15-more.yaml:8:7: platform \"vc-b\" is already defined at "));
	assert_non_null(strstr(msgs, "30-rules.yaml:3:21: unknown platform \"vc-c\""));
	free(msgs);
	assert_int_equal(ld.cur.nrules, 1);
	assert_int_equal(ld.cur.nplatforms, 2);
	assert_non_null(config_rule(&ld.cur, CFG_MIGRATION, "move-web"));
	cfg_loader_free(&ld);
}

static void
test_loader_claims_and_duplicates(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	char *msgs;

	tdir_write(d, "30-a.yaml", rules_yaml);
	/* same VM, another kind: fine; same VM, same kind: error on the later */
	tdir_write(d, "40-b.yaml",
	    "kind: backup\nname: move-web\nsource: { platform: vc-a, vms: [web01] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\n"
	    "---\n"
	    "kind: migration\nname: other\nsource: { platform: vc-a, vms: [web09, web02] }\n"
	    "node: local\ntarget: { platform: vc-b, datacenter: DC0, host: H0, datastore: DS0 }\n");
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "40-b.yaml:9:40: web02 on vc-a is already claimed by migration "
	    "rule move-web ("));
	free(msgs);
	/* the whole later file is out */
	assert_int_equal(ld.cur.nrules, 1);
	assert_null(config_rule(&ld.cur, CFG_BACKUP, "move-web"));

	tdir_write(d, "40-b.yaml",
	    "kind: backup\nname: move-web\nsource: { platform: vc-a, vms: [web01] }\nnode: local\n"
	    "schedule: { once: \"2030-01-01 00:00\" }\n");
	assert_int_equal(reload(&ld, NULL), 0);
	assert_int_equal(ld.cur.nrules, 2);
	/* sorted by kind, then name */
	assert_int_equal(ld.cur.rules[0]->kind, CFG_MIGRATION);
	assert_int_equal(ld.cur.rules[1]->kind, CFG_BACKUP);
	/* backup repository defaults to the node's */
	assert_string_equal(ld.cur.rules[1]->repository, "/r");

	tdir_write(d, "50-c.yaml", "kind: system\n---\nkind: system\n");
	tdir_write(d, "60-d.yaml", "kind: system\n");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "50-c.yaml:3:1: a second system document in this file"));
	free(msgs);
	/* the broken file is out as a whole; the other system document counts */
	assert_true(ld.cur.system.present);
	assert_non_null(strstr(ld.cur.system.loc.file, "60-d.yaml"));
	tdir_remove(d, "50-c.yaml");
	tdir_write(d, "05-sys.yaml", "kind: system\nmax_tasks: 8\n");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "60-d.yaml:1:1: a second system document; the first is at "));
	free(msgs);
	assert_true(ld.cur.system.present);
	assert_int_equal(ld.cur.system.max_tasks, 8);
	cfg_loader_free(&ld);
}

static void
test_loader_template_reapplied(void **state)
{
	struct tdir *d = *state;
	struct cfg_loader ld;
	const struct cfg_rule *r;
	uint64_t digest;

	tdir_write(d, "25-tmpl.yaml",
	    "kind: template\nname: t\noptions: { quiesce: true }\nkeep_history: 9\n"
	    "schedule: { type: daily, start: \"02:00\" }\n");
	tdir_write(d, "30-rep.yaml",
	    "kind: replication\nname: r\ntemplate: t\nsource: { platform: vc-a, vms: [x] }\n"
	    "node: local\ntarget: { platform: vc-b, datacenter: DC0, host: H0, datastore: DS0 }\n"
	    "options: { fast_transfer: true }\n");
	cfg_loader_init(&ld, d->path);
	assert_int_equal(reload(&ld, NULL), 0);
	r = config_rule_any(&ld.cur, "r");
	assert_non_null(r);
	assert_int_equal(r->options.quiesce, 1);
	assert_int_equal(r->options.fast_transfer, 1);
	assert_int_equal(r->keep_history, 9);
	assert_true(r->schedule.set);
	assert_int_equal(r->schedule.entries[0].times[0], 120);
	assert_string_equal(r->template_name, "t");
	digest = r->digest;

	/* the template changes, the rule file does not: the rule follows */
	tdir_write(d, "25-tmpl.yaml",
	    "kind: template\nname: t\nkeep_history: 4\nschedule: { type: daily, start: \"03:00\" }\n");
	assert_int_equal(reload(&ld, NULL), 0);
	r = config_rule_any(&ld.cur, "r");
	assert_int_equal(r->options.quiesce, 0);
	assert_int_equal(r->options.fast_transfer, 1);
	assert_int_equal(r->keep_history, 4);
	assert_int_equal(r->schedule.entries[0].times[0], 180);
	assert_true(r->digest != digest);
	cfg_loader_free(&ld);
}

static void
test_loader_missing_dir(void **state)
{
	struct cfg_loader ld;
	char *msgs;

	(void)state;
	cfg_loader_init(&ld, "/nonexistent/vmferry");
	assert_int_equal(reload(&ld, &msgs), 1);
	assert_non_null(strstr(msgs, "/nonexistent/vmferry: cannot open the config directory"));
	free(msgs);
	cfg_loader_free(&ld);
}

static void
test_examples(void **state)
{
	const char *src = getenv("VMFERRY_SRC");
	struct cfg_loader ld;
	char *dir, *msgs, *dump;

	(void)state;
	if (src == NULL)
		skip();
	dir = xasprintf("%s/config/examples", src);
	cfg_loader_init(&ld, dir);
	assert_int_equal(reload(&ld, &msgs), 0);
	assert_string_equal(msgs, "");
	free(msgs);
	assert_non_null(config_rule(&ld.cur, CFG_MIGRATION, "move-web"));
	assert_non_null(config_platform(&ld.cur, "vc-a"));
	assert_non_null(config_platform(&ld.cur, "vc-b"));
	assert_non_null(config_node(&ld.cur, "local"));
	dump = dump_string(&ld.cur);
	assert_null(strstr(dump, "pass\n"));
	free(dump);
	cfg_loader_free(&ld);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test_setup_teardown(test_secrets, setup_dir, teardown_dir),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_empty_and_comments),
		cmocka_unit_test(test_aliases_do_not_loop),
		cmocka_unit_test(test_schedules),
		cmocka_unit_test(test_window_limit),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_encryption_parsed),
		cmocka_unit_test(test_encryption_errors),
		cmocka_unit_test_setup_teardown(test_loader_basic_and_dump, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_keeps_last_good, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_old_version_dropped_too, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_unchanged_file_not_reported_twice, setup_dir,
		    teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_cascade, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_claims_and_duplicates, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_template_reapplied, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_repository_keys_differ, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loader_repository_keys_agree, setup_dir, teardown_dir),
		cmocka_unit_test(test_loader_missing_dir),
		cmocka_unit_test(test_examples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
