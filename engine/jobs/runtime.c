#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* The runtime pieces every job kind shares (see runtime.h). */
#include "engine/jobs/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/vsops.h"
#include "engine/config.h"
#include "engine/core/workers.h"
#include "engine/core/util.h"
#include "engine/engine.h"
#include "engine/jobs/job.h"
#include "engine/jobs/vmconfig.h"
#include "engine/jobs/sync.h"
#include "engine/platform.h"
#include "engine/slots.h"

/* ---- tokens ---- */

struct token *
token_new(struct job *j)
{
	struct token *t = xcalloc(1, sizeof(*t));

	t->j = j;
	t->epoch = j->epoch;
	job_hold(j);
	return t;
}

struct job *
token_take(struct token *t)
{
	struct job *j = t->j, *out = NULL;

	if (!j->forgotten && j->epoch == t->epoch)
		out = j;
	job_release(j);
	free(t);
	return out;
}

void
token_drop(void *arg)
{
	if (arg != NULL)
		token_take(arg);
}

struct token *
token_for(struct job *j, void *ctx)
{
	struct token *t = token_new(j);

	t->ctx = ctx;
	return t;
}

void *
token_ctx(struct token *t)
{
	void *ctx = t->ctx;

	return token_take(t) != NULL ? ctx : NULL;
}

void *
token_ctx_reply(struct vs_out *out, void *arg, const char *what)
{
	void *ctx = ((struct token *)arg)->ctx;

	return token_reply(out, arg, what) != NULL ? ctx : NULL;
}

struct job *
token_reply(struct vs_out *out, void *arg, const char *what)
{
	struct job *j = token_take(arg);

	if (j == NULL)
		return NULL;
	if (out->status != VS_OK) {
		rt_vs_failed(j, what, out);
		return NULL;
	}
	return j;
}

/* ---- outcomes ---- */

static void
rt_outcome(struct job *j, int event, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

static void
rt_outcome(struct job *j, int event, const char *fmt, va_list ap)
{
	char *msg = xvasprintf(fmt, ap);

	if (event == EV_FAIL)
		job_stat_failure(j, msg);
	job_log(j, event == EV_FAIL ? LOG_ERR : LOG_WARN, "%s", msg);
	fsm_dispatch(j, event, msg);
	free(msg);
}

void
rt_fail(struct job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rt_outcome(j, EV_FAIL, fmt, ap);
	va_end(ap);
}

void
rt_lost(struct job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rt_outcome(j, EV_PEER_LOST, fmt, ap);
	va_end(ap);
}

void
rt_vs_failed(struct job *j, const char *what, const struct vs_out *out)
{
	if (out->status == VS_UNREACHABLE)
		rt_lost(j, "%s: %s", what, out->error);
	else
		rt_fail(j, "%s: %s", what, out->error ? out->error : vs_status_name(out->status));
}

void
rt_platform_failed(struct job *j, const char *which, const char *platform, const char *error, int refused)
{
	if (refused)
		rt_fail(j, "%s platform %s: %s", which, platform, error);
	else
		rt_lost(j, "%s platform %s: %s", which, platform, error);
}

int
rt_unreadable(struct job *j, int bad)
{
	if (!bad)
		return 0;
	fsm_dispatch(j, EV_FAIL,
	    "its saved progress was written in a format this vmferryd cannot read; delete the job "
	    "(vmferryctl delete) and start it again");
	return 1;
}

/* ---- the rule's world ---- */

struct vs_client *
rt_src_client(struct job *j)
{
	return j->cfg != NULL ? platform_client(j->cfg->source_platform) : NULL;
}

struct vs_client *
rt_dst_client(struct job *j)
{
	return j->cfg != NULL ? platform_client(j->cfg->target.platform) : NULL;
}

const char *
rt_mount_of(const char *platform, const char *datastore)
{
	const struct cfg_platform *p = config_platform(engine_config(), platform);
	size_t i;

	if (p == NULL || datastore == NULL)
		return NULL;
	for (i = 0; i < p->nmounts; i++)
		if (strcmp(p->mounts[i].datastore, datastore) == 0)
			return p->mounts[i].path;
	return NULL;
}

static int
mkdir_p(char *dir)
{
	char *p;

	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Before names carried the kind, a migration kept its files in
 * temp_dir/<rule>/<vm>; every such directory holds vm-config.json (written
 * before any staging image).  Its files move to the new directory one by
 * one, vm-config.json last, so that a move cut short is finished by the
 * next call.  The files and not the directory: with rule names that are
 * kind names the two directories can lie one inside the other (rule and
 * VM "migration": temp_dir/migration/migration holds the new
 * temp_dir/migration/migration/migration), or a new job's directory can
 * lie inside the old one (an old migration rule "backup" with VM X, and a
 * backup rule X).  When a file cannot be moved the job must not go on
 * without it (a resumed copy trusts the checkpoint of an image it would
 * not have): its errno, with *err. */
static int
staging_upgrade(struct job *j, const char *base, char *dir, char **err)
{
	char *old, *cfg, *from, *to;
	struct stat st;
	struct dirent *e;
	DIR *d;
	int rc = 0;

	if (j->kind != CFG_MIGRATION)
		return 0;
	old = xasprintf("%s/%s/%s", base, j->rule, j->vm);
	cfg = xasprintf("%s/vm-config.json", old);
	if (lstat(cfg, &st) != 0 || !S_ISREG(st.st_mode)) {
		free(old);
		free(cfg);
		return 0;
	}
	if (mkdir_p(dir) != 0 || (d = opendir(old)) == NULL) {
		rc = errno;
		*err = xasprintf("staging files of the previous version in %s cannot be moved to %s: %s", old, dir,
		    strerror(rc));
		free(old);
		free(cfg);
		return rc;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		from = xasprintf("%s/%s", old, e->d_name);
		to = xasprintf("%s/%s", dir, e->d_name);
		if (strcmp(e->d_name, "vm-config.json") != 0 && lstat(from, &st) == 0 && S_ISREG(st.st_mode) &&
		    rename(from, to) != 0) {
			rc = errno;
			*err = xasprintf("staging file %s of the previous version cannot be moved to %s: %s", from, dir,
			    strerror(rc));
		}
		free(from);
		free(to);
	}
	closedir(d);
	to = xasprintf("%s/vm-config.json", dir);
	if (rc == 0 && rename(cfg, to) != 0) {
		rc = errno;
		*err = xasprintf("staging file %s of the previous version cannot be moved to %s: %s", cfg, dir,
		    strerror(rc));
	}
	if (rc == 0) {
		job_log(j, LOG_INFO, "staging files moved from %s to %s (names now carry the job's kind)", old, dir);
		rmdir(old);
		old[strlen(old) - strlen(j->vm) - 1] = '\0';
		rmdir(old); /* the rule's directory, once empty */
	}
	free(to);
	free(old);
	free(cfg);
	return rc;
}

/* A node's temp_dir as a path. */
static char *
temp_base(const struct cfg_node *node)
{
	return node->temp_dir[0] == '/' ? xstrdup(node->temp_dir) : xasprintf("%s/%s", engine_state_dir(), node->temp_dir);
}

char *
rt_staging_dir(struct job *j, char **err, int *errnum)
{
	const struct cfg_node *node = j->cfg != NULL ? config_node(engine_config(), j->cfg->node) : NULL;
	char *base, *dir;

	*err = NULL;
	*errnum = 0;
	if (node == NULL) {
		*err = xasprintf("node %s is not configured", j->cfg != NULL ? j->cfg->node : "(none)");
		return NULL;
	}
	base = temp_base(node);
	dir = xasprintf("%s/%s/%s/%s", base, cfg_kind_name(j->kind), j->rule, j->vm);
	if ((*errnum = staging_upgrade(j, base, dir, err)) != 0) {
		free(base);
		free(dir);
		return NULL;
	}
	free(base);
	if (mkdir_p(dir) != 0 || access(dir, W_OK) != 0) {
		*errnum = errno;
		*err = xasprintf("node temp_dir cannot be written: %s: %s", dir, strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}

char *
rt_staging_file(struct job *j, const char *name, char **err, int *errnum)
{
	char *dir = rt_staging_dir(j, err, errnum), *path;

	if (dir == NULL)
		return NULL;
	path = xasprintf("%s/%s", dir, name);
	free(dir);
	return path;
}

/* ---- removing staging files off the loop ----
 *
 * Unlinking a staging image of gigabytes whose pages the kernel still
 * caches takes it hundreds of milliseconds (every cached page is
 * dropped), which the loop, and with it the status socket, must not wait
 * for.  What goes is renamed at once into the node's temp_dir/.trash (so
 * the path is free for the next pass, and a restart finds it there) and
 * removed on a device thread, the trash with its last entry. */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	/* Go on past what is gone already: a sweep may meet a removal. */
	(void)remove(path);
	return 0;
}

static void
trash_fn(void *arg)
{
	nftw(arg, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* An entry of the trash, then the trash itself once it is empty. */
static void
trash_entry_fn(void *arg)
{
	char *slash = strrchr(arg, '/');

	trash_fn(arg);
	if (slash != NULL) {
		*slash = '\0';
		(void)rmdir(arg);
		*slash = '/';
	}
}

static void
trash_release(void *arg)
{
	free(arg);
}

static void
remove_on_worker(work_fn fn, char *path)
{
	if (workers_count() == 0) {
		fn(path);
		free(path);
		return;
	}
	work_submit_io(fn, NULL, trash_release, path);
}

/* path (a file or a directory under base, the node's temp_dir) removed
 * off the loop; in place where it cannot be moved into the trash. */
static void
remove_later(const char *base, const char *path)
{
	static unsigned seq;
	char *trash = xasprintf("%s/.trash", base), *to;

	to = xasprintf("%s/%lld-%d-%u", trash, (long long)rt_now_ms(), (int)getpid(), seq++);
	if ((mkdir(trash, 0700) == 0 || errno == EEXIST) && rename(path, to) == 0) {
		remove_on_worker(trash_entry_fn, to);
	} else {
		/* Gone already, or the trash could not take it (another file
		 * system; a start's sweep removing the trash meanwhile). */
		free(to);
		trash_fn((void *)(uintptr_t)path);
	}
	free(trash);
}

/* The job's node's temp_dir, or NULL (no node: nothing was staged). */
static char *
job_temp_base(struct job *j)
{
	const struct cfg_node *node = j->cfg != NULL ? config_node(engine_config(), j->cfg->node) : NULL;

	return node != NULL ? temp_base(node) : NULL;
}

void
rt_staging_remove(struct job *j)
{
	char *base = job_temp_base(j), *err, *dir;
	int en;

	if (base == NULL)
		return;
	if ((dir = rt_staging_dir(j, &err, &en)) != NULL)
		remove_later(base, dir);
	free(dir);
	free(err);
	free(base);
}

void
rt_staging_unlink(struct job *j, const char *path)
{
	char *base = job_temp_base(j);

	if (base == NULL) {
		unlink(path);
		return;
	}
	remove_later(base, path);
	free(base);
}

void
rt_sweep_trash(void)
{
	const struct config *cfg = engine_config();
	size_t i;

	for (i = 0; i < cfg->nnodes; i++) {
		char *base = temp_base(cfg->nodes[i]);

		remove_on_worker(trash_fn, xasprintf("%s/.trash", base));
		free(base);
	}
}

void
rt_sync_settings(struct job *j, struct sync_settings *s)
{
	const struct config *cfg = engine_config();
	uint64_t per_host;

	memset(s, 0, sizeof(*s));
	if (j->cfg != NULL) {
		s->fast_transfer = j->cfg->options.fast_transfer;
		s->quiesce = j->cfg->options.quiesce;
	}
	s->chunk = (size_t)cfg->system.transfer_buffer;
	/* Buffers in flight per host stay within host_buffer_cap. */
	per_host = (uint64_t)cfg->system.max_tasks_per_host * cfg->system.transfer_buffer;
	s->inflight = per_host ? (int)(cfg->system.host_buffer_cap / per_host) : 1;
	if (s->inflight < 1)
		s->inflight = 1;
	s->bucket = engine_bucket(j->kind, j->rule);
}

int64_t
rt_now_ms(void)
{
	return (int64_t)(now_wall() * 1000);
}

/* ---- VMs ---- */

void
rt_vm_dup(const struct vs_vm *from, struct vs_vm *to)
{
	vs_vm_dup(from, to);
}

void
rt_vm_set(struct vs_vm **slot, const struct vs_vm *vm)
{
	if (*slot != NULL) {
		vs_vm_free(*slot);
		free(*slot);
	}
	*slot = xcalloc(1, sizeof(**slot));
	rt_vm_dup(vm, *slot);
}

/* ---- starting ---- */

static void found_source(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg);

static void
look_up_source(struct job *j, int refresh, int may_be_gone, void (*found)(struct job *j, const struct vs_vm *vm))
{
	struct token *t = token_new(j);

	t->flag = refresh | (may_be_gone << 1);
	t->found = found;
	if (platform_inventory(j->cfg->source_platform, refresh, found_source, t) != 0) {
		token_take(t);
		rt_fail(j, "source platform %s is not configured", j->cfg->source_platform);
	}
}

static void
found_source(const struct vs_inventory *inv, const char *error, int refused, double age, void *arg)
{
	int flag = ((struct token *)arg)->flag;
	void (*then)(struct job *j, const struct vs_vm *vm) = ((struct token *)arg)->found;
	struct job *j = token_take(arg);
	const struct vs_vm *vm;

	if (j == NULL)
		return;
	if (inv == NULL) {
		rt_platform_failed(j, "source", j->cfg->source_platform, error, refused);
		return;
	}
	vm = vs_inventory_vm(inv, j->vm);
	if (vm == NULL && !(flag & 1)) {
		look_up_source(j, 1, flag >> 1, then);
		return;
	}
	if (vm == NULL && !(flag >> 1)) {
		rt_fail(j, "VM %s not found on platform %s", j->vm, j->cfg->source_platform);
		return;
	}
	slots_set_host(&j->slot, vm != NULL && vm->host_name ? vm->host_name : "");
	if (then != NULL)
		then(j, vm);
	else
		fsm_dispatch(j, EV_STARTED, NULL);
}

void
rt_find_source(struct job *j, int may_be_gone)
{
	look_up_source(j, 0, may_be_gone != 0, NULL);
}

void
rt_find_source_then(struct job *j, int may_be_gone, void (*found)(struct job *j, const struct vs_vm *vm))
{
	look_up_source(j, 0, may_be_gone != 0, found);
}

/* ---- the source's configuration ---- */

int
rt_save_vm_config(struct job *j, const struct vs_vm *vm)
{
	char *dir, *path, *err = NULL, *text;
	int en, rc;
	json_t *cfg;

	if ((dir = rt_staging_dir(j, &err, &en)) == NULL) {
		rt_lost(j, "%s", err);
		free(err);
		return -1;
	}
	cfg = vmconfig_json(vm);
	text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(cfg);
	path = xasprintf("%s/vm-config.json", dir);
	rc = write_file_atomic(path, text, strlen(text), &err);
	if (rc != 0) {
		rt_lost(j, "node temp_dir cannot be written: %s", err);
		free(err);
	} else {
		job_log(j, LOG_INFO, "source VM configuration saved to %s", path);
	}
	free(text);
	free(path);
	free(dir);
	return rc;
}
