/* Configuration loader, second stage: cfg_loader_reload() reads every
 * file of the directory, cross-checks them (names, VM claims, references,
 * templates, the keys of shared repositories) and keeps the last good
 * version of each file, so that a broken edit never takes a running rule
 * away. */
#include "engine/config_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "engine/core/util.h"

#define FILE_MAX_SIZE (4u << 20)

/* ---- the loader: cross-file checks and last good versions ------------ */

struct slot {
	char *path;
	struct cfg_file *newf;   /* parsed from disk now, or NULL */
	struct cfg_file *old;    /* last good version, or NULL */
	struct cfg_file *cur;    /* the version being tried: newf, old or NULL */
};

/* Errors found in a last good version (the file on disk is broken or was
 * rejected) carry this note: their lines refer to the earlier text. */
#define OLD_NOTE " (in the last good version of this file, which is dropped too)"

struct xerr {
	struct cfg_errors *errs;
	size_t first;            /* errs->msgs[first..] were added by this reload */
	const char *suffix;      /* OLD_NOTE or NULL */
	struct cfg_errors local; /* errors of the file being checked */
};

static void xadd(struct xerr *x, const struct cfg_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
xadd(struct xerr *x, const struct cfg_loc *loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_errors_vadd(&x->local, loc, NULL, fmt, ap);
	va_end(ap);
}

/* Moves the file's errors to the caller's list.  For a last good version,
 * a message already reported for the same text on disk is not repeated. */
static size_t
xflush(struct xerr *x)
{
	size_t i, k, n = x->local.n;

	for (i = 0; i < x->local.n; i++) {
		char *m = x->local.msgs[i];
		int dup = 0;

		if (x->suffix != NULL) {
			for (k = x->first; k < x->errs->n; k++)
				if (strcmp(x->errs->msgs[k], m) == 0)
					dup = 1;
			if (!dup) {
				char *m2 = xasprintf("%s%s", m, x->suffix);

				free(m);
				m = m2;
			}
		}
		if (dup) {
			free(m);
			continue;
		}
		x->errs->msgs = xreallocarray(x->errs->msgs, x->errs->n + 1, sizeof(char *));
		x->errs->msgs[x->errs->n++] = m;
	}
	free(x->local.msgs);
	x->local.msgs = NULL;
	x->local.n = 0;
	return n;
}

static void
config_reset(struct config *c)
{
	free(c->platforms);
	free(c->nodes);
	free(c->templates);
	free(c->rules);
	memset(c, 0, sizeof(*c));
}

#define PUSH(arr, n, v) do { \
	(arr) = xreallocarray((arr), (n) + 1, sizeof(*(arr))); \
	(arr)[(n)++] = (v); \
} while (0)

const struct cfg_template *
config_template(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->ntemplates; i++)
		if (strcmp(c->templates[i]->name, name) == 0)
			return c->templates[i];
	return NULL;
}

/* Names and claims, in file order: whatever comes later is the error. */
static int
check_definitions(struct cfg_file *f, struct config *acc, const struct cfg_system **sys,
    struct xerr *x)
{
	size_t i, k, v;

	if (f->system.present) {
		if (*sys != NULL)
			xadd(x, &f->system.loc, "a second system document; the first is at %s:%d",
			    (*sys)->loc.file, (*sys)->loc.line);
		else
			*sys = &f->system;
	}
	for (i = 0; i < f->nplatforms; i++) {
		struct cfg_platform *p = &f->platforms[i];
		const struct cfg_platform *q = config_platform(acc, p->name);

		if (q != NULL)
			xadd(x, &p->name_loc, "platform \"%s\" is already defined at %s:%d", p->name,
			    q->loc.file, q->loc.line);
		else
			PUSH(acc->platforms, acc->nplatforms, p);
	}
	for (i = 0; i < f->nnodes; i++) {
		struct cfg_node *nd = &f->nodes[i];
		const struct cfg_node *q = config_node(acc, nd->name);

		if (q != NULL)
			xadd(x, &nd->name_loc, "node \"%s\" is already defined at %s:%d", nd->name,
			    q->loc.file, q->loc.line);
		else
			PUSH(acc->nodes, acc->nnodes, nd);
	}
	for (i = 0; i < f->ntemplates; i++) {
		struct cfg_template *t = &f->templates[i];
		const struct cfg_template *q = config_template(acc, t->name);

		if (q != NULL)
			xadd(x, &t->name_loc, "template \"%s\" is already defined at %s:%d", t->name,
			    q->loc.file, q->loc.line);
		else
			PUSH(acc->templates, acc->ntemplates, t);
	}
	for (i = 0; i < f->nrules; i++) {
		struct cfg_rule *r = &f->rules[i];
		const struct cfg_rule *q = config_rule(acc, r->kind, r->name);

		if (q != NULL) {
			xadd(x, &r->locs.name, "%s rule \"%s\" is already defined at %s:%d",
			    cfg_kind_name(r->kind), r->name, q->loc.file, q->loc.line);
			continue;
		}
		/* the seed's "(已迁移)/(已复制)": one rule of each kind per VM */
		for (v = 0; v < r->nvms; v++) {
			for (k = 0; k < acc->nrules; k++) {
				const struct cfg_rule *o = acc->rules[k];
				size_t j;

				if (o->kind != r->kind || strcmp(o->source_platform, r->source_platform) != 0)
					continue;
				for (j = 0; j < o->nvms; j++)
					if (strcmp(o->vms[j], r->vms[v]) == 0)
						break;
				if (j < o->nvms) {
					xadd(x, &r->locs.vms[v], "%s on %s is already claimed by %s rule %s (%s:%d)",
					    r->vms[v], r->source_platform, cfg_kind_name(o->kind), o->name,
					    o->loc.file, o->loc.line);
					break;
				}
			}
		}
		PUSH(acc->rules, acc->nrules, r);
	}
	return (int)x->local.n;
}

/* Source and target on one platform (one name, or two names for one URL):
 * vSphere wants a VM name unique in its folder, so a target that keeps
 * the source's name needs a folder of its own.  Which folder the source
 * is in only the platform knows; a target.folder that turns out to be the
 * source's is refused when the job meets it. */
static void
same_platform_names(const struct cfg_rule *r, const struct config *acc, struct xerr *x)
{
	const struct cfg_platform *sp, *tp;

	if (r->target.platform == NULL || r->target.folder != NULL ||
	    (r->target.name != NULL && strcmp(r->target.name, "{vm}") != 0))
		return;
	sp = config_platform(acc, r->source_platform);
	tp = config_platform(acc, r->target.platform);
	if (sp == NULL || tp == NULL || (sp != tp && strcmp(sp->url, tp->url) != 0))
		return;
	if (sp == tp)
		xadd(x, r->target.name ? &r->locs.target_name : &r->locs.target_platform,
		    "source and target are both platform \"%s\": the target VMs would get their sources' names in "
		    "the same VM folder, and vSphere names are unique per folder; give target.name another pattern "
		    "(such as \"{vm}-moved\") or a target.folder",
		    r->source_platform);
	else
		xadd(x, r->target.name ? &r->locs.target_name : &r->locs.target_platform,
		    "platforms \"%s\" and \"%s\" are one vCenter (%s): the target VMs would get their sources' names "
		    "in the same VM folder, and vSphere names are unique per folder; give target.name another pattern "
		    "(such as \"{vm}-moved\") or a target.folder",
		    r->source_platform, r->target.platform, tp->url);
}

/* References, once every definition is known; templates are applied here. */
static int
check_references(struct cfg_file *f, const struct config *acc, struct xerr *x)
{
	size_t i;

	for (i = 0; i < f->nrules; i++) {
		struct cfg_rule *r = &f->rules[i];
		const struct cfg_template *t = NULL;
		const struct cfg_node *nd;
		size_t before = x->local.n;

		if (config_platform(acc, r->source_platform) == NULL)
			xadd(x, &r->locs.source_platform, "unknown platform \"%s\"", r->source_platform);
		if (r->target.platform != NULL && config_platform(acc, r->target.platform) == NULL)
			xadd(x, &r->locs.target_platform, "unknown platform \"%s\"", r->target.platform);
		if ((nd = config_node(acc, r->node)) == NULL)
			xadd(x, &r->locs.node, "unknown node \"%s\"", r->node);
		if (r->template_name != NULL && (t = config_template(acc, r->template_name)) == NULL)
			xadd(x, &r->locs.template_name, "unknown template \"%s\"", r->template_name);
		if (x->local.n != before)
			continue;
		same_platform_names(r, acc, x);
		cfg_rule_apply(r, t, nd);
		cfg_rule_check_effective(r, t, &x->local, NULL);
	}
	return (int)x->local.n;
}

/* Whether two paths of the loader (as written: relative ones are against
 * the state directory) name one place, ignoring repeated "/", "."
 * components and a trailing "/".  NULL equals only NULL. */
static int
same_path(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return a == b;
	if ((*a == '/') != (*b == '/'))
		return 0;
	for (;;) {
		while (*a == '/' || (a[0] == '.' && (a[1] == '/' || a[1] == '\0')))
			a++;
		while (*b == '/' || (b[0] == '.' && (b[1] == '/' || b[1] == '\0')))
			b++;
		la = strcspn(a, "/");
		lb = strcspn(b, "/");
		if (la != lb || strncmp(a, b, la) != 0)
			return 0;
		if (la == 0)
			return 1;
		a += la;
		b += lb;
	}
}

/* "with key_file \"k\"" or "without encryption"; malloc'd. */
static char *
key_desc(const struct cfg_rule *r)
{
	if (r->key_file == NULL)
		return xstrdup("without encryption");
	return xasprintf("with key_file \"%s\"", r->key_file);
}

/* SPEC §10: a repository is encrypted with one key or not at all, so the
 * backup rules that share one must name the same key_file (or none).  Run
 * once every rule has its effective repository (the node's by default);
 * the later rule is the error. */
static int
check_repository_keys(struct cfg_file *f, const struct config *acc, struct xerr *x)
{
	size_t i, k;

	for (i = 0; i < f->nrules; i++) {
		const struct cfg_rule *r = &f->rules[i];

		if (r->kind != CFG_BACKUP || r->repository == NULL)
			continue;
		/* acc->rules is in file order: the rules before r */
		for (k = 0; k < acc->nrules && acc->rules[k] != r; k++) {
			const struct cfg_rule *o = acc->rules[k];
			char *rd, *od;

			if (o->kind != CFG_BACKUP || o->repository == NULL ||
			    !same_path(o->repository, r->repository) || same_path(o->key_file, r->key_file))
				continue;
			rd = key_desc(r);
			od = key_desc(o);
			xadd(x, r->key_file ? &r->locs.key_file : &r->locs.name,
			    "backup rule \"%s\" uses repository \"%s\" %s, but backup rule \"%s\" (%s:%d) uses it %s; "
			    "backup rules that share a repository must name the same encryption.key_file",
			    r->name, r->repository, rd, o->name, o->loc.file, o->loc.line, od);
			free(rd);
			free(od);
			break;
		}
	}
	return (int)x->local.n;
}

/* One round over the files being tried, in three passes: definitions,
 * then references (which apply templates and nodes), then what needs
 * every rule's effective settings.  Returns the index of the first file
 * with an error (its errors are reported), or -1 when all agree. */
static ssize_t
check_round(struct slot *s, size_t n, struct config *acc, const struct cfg_system **sys,
    struct cfg_errors *errs, size_t first)
{
	struct xerr x;
	size_t i;
	int pass, bad;

	config_reset(acc);
	*sys = NULL;
	memset(&x, 0, sizeof(x));
	x.errs = errs;
	x.first = first;
	for (pass = 0; pass < 3; pass++) {
		for (i = 0; i < n; i++) {
			if (s[i].cur == NULL)
				continue;
			x.suffix = s[i].cur != s[i].newf ? OLD_NOTE : NULL;
			if (pass == 0)
				bad = check_definitions(s[i].cur, acc, sys, &x);
			else if (pass == 1)
				bad = check_references(s[i].cur, acc, &x);
			else
				bad = check_repository_keys(s[i].cur, acc, &x);
			if (bad != 0) {
				xflush(&x);
				return (ssize_t)i;
			}
		}
	}
	return -1;
}

static int
cmp_platform(const void *a, const void *b)
{
	return strcmp((*(struct cfg_platform *const *)a)->name, (*(struct cfg_platform *const *)b)->name);
}

static int
cmp_node(const void *a, const void *b)
{
	return strcmp((*(struct cfg_node *const *)a)->name, (*(struct cfg_node *const *)b)->name);
}

static int
cmp_template(const void *a, const void *b)
{
	return strcmp((*(struct cfg_template *const *)a)->name, (*(struct cfg_template *const *)b)->name);
}

static int
cmp_rule(const void *a, const void *b)
{
	const struct cfg_rule *x = *(struct cfg_rule *const *)a, *y = *(struct cfg_rule *const *)b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(x->name, y->name);
}

void
cfg_loader_init(struct cfg_loader *ld, const char *dir)
{
	memset(ld, 0, sizeof(*ld));
	ld->dir = xstrdup(dir);
	cfg_system_defaults(&ld->cur.system);
}

void
cfg_loader_free(struct cfg_loader *ld)
{
	size_t i;

	for (i = 0; i < ld->ngood; i++) {
		cfg_file_free(ld->good[i]);
		free(ld->good[i]);
	}
	free(ld->good);
	for (i = 0; i < ld->nretired; i++) {
		cfg_file_free(ld->retired[i]);
		free(ld->retired[i]);
	}
	free(ld->retired);
	config_reset(&ld->cur);
	free(ld->dir);
	memset(ld, 0, sizeof(*ld));
}

static int
is_yaml_name(const char *n)
{
	size_t l = strlen(n);

	/* dot files are editor droppings (".#rules.yaml") or hidden on purpose */
	return n[0] != '.' && l > 5 && strcmp(n + l - 5, ".yaml") == 0;
}

static int
read_file(const char *path, char **text, size_t *len, const char **why)
{
	struct stat st;
	ssize_t r;
	size_t got = 0;
	char *buf;
	int fd;

	if ((fd = cfg_open_regular(path, &st)) < 0) {
		*why = fd == -1 ? strerror(errno) : "not a regular file";
		return -1;
	}
	if ((uint64_t)st.st_size > FILE_MAX_SIZE) {
		*why = "larger than 4 MiB";
		close(fd);
		return -1;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			free(buf);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;   /* truncated under us; parse what is there */
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return 0;
}

/* Parses a file's text (which it takes) on its own.  Returns the file,
 * holding the text, or NULL with errors appended. */
static struct cfg_file *
load_text(const struct cfg_loader *ld, const char *path, char *text, size_t len, struct cfg_errors *errs)
{
	struct cfg_file *f = xcalloc(1, sizeof(*f));

	if (cfg_parse_buffer(path, text, len, ld->dir, f, errs) != 0) {
		free(f);
		free(text);
		return NULL;
	}
	f->text = text;
	f->len = len;
	return f;
}

int
cfg_loader_seed(struct cfg_loader *ld, const char *name, const char *text, size_t len,
    struct cfg_errors *errs)
{
	struct cfg_file *f;
	char *path, *copy;
	size_t i;

	if (!is_yaml_name(name) || strchr(name, '/') != NULL) {
		cfg_errors_add(errs, NULL, "%s: not the name of a rule file", name);
		return -1;
	}
	path = cfg_path_join(ld->dir, name);
	for (i = 0; i < ld->ngood; i++) {
		if (strcmp(ld->good[i]->path, path) == 0) {
			struct cfg_loc l = { ld->good[i]->path, 0, 0 };

			cfg_errors_add(errs, &l, "has a last good version already");
			free(path);
			return -1;
		}
	}
	copy = xmalloc(len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';
	f = load_text(ld, path, copy, len, errs);
	free(path);
	if (f == NULL)
		return -1;
	PUSH(ld->good, ld->ngood, f);
	return 0;
}

const char *
cfg_file_name(const struct cfg_file *f)
{
	const char *slash = strrchr(f->path, '/');

	return slash != NULL ? slash + 1 : f->path;
}

static int
cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
cfg_loader_reload(struct cfg_loader *ld, struct cfg_errors *errs)
{
	struct slot *s = NULL;
	struct config acc;
	const struct cfg_system *sys;
	struct cfg_file **good = NULL;
	char **names = NULL;
	size_t nnames = 0, i, k, ngood = 0, first = errs->n;
	struct dirent *de;
	DIR *d;

	ld->generation++;
	/* the generation before the previous one is no longer referenced */
	for (i = 0; i < ld->nretired; i++) {
		cfg_file_free(ld->retired[i]);
		free(ld->retired[i]);
	}
	free(ld->retired);
	ld->retired = NULL;
	ld->nretired = 0;
	if ((d = opendir(ld->dir)) == NULL) {
		/* keep everything as it is: a transient error must not stop rules */
		struct cfg_loc l = { ld->dir, 0, 0 };

		cfg_errors_add(errs, &l, "cannot open the config directory: %s", strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL)
		if (is_yaml_name(de->d_name))
			PUSH(names, nnames, xstrdup(de->d_name));
	closedir(d);
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_cstr);

	s = xcalloc(nnames ? nnames : 1, sizeof(*s));
	for (i = 0; i < nnames; i++) {
		char *text;
		const char *why;
		size_t len;

		s[i].path = cfg_path_join(ld->dir, names[i]);
		for (k = 0; k < ld->ngood; k++)
			if (ld->good[k] != NULL && strcmp(ld->good[k]->path, s[i].path) == 0)
				s[i].old = ld->good[k];
		if (read_file(s[i].path, &text, &len, &why) != 0) {
			struct cfg_loc l = { s[i].path, 0, 0 };

			cfg_errors_add(errs, &l, "cannot read: %s", why);
		} else {
			s[i].newf = load_text(ld, s[i].path, text, len, errs);
		}
		s[i].cur = s[i].newf ? s[i].newf : s[i].old;
		free(names[i]);
	}
	free(names);

	/* Drop (or fall back from) the first file with a cross-file error and
	 * check again: removing it may break references elsewhere.  Each step
	 * retires one version of one file, so this ends. */
	memset(&acc, 0, sizeof(acc));
	for (;;) {
		ssize_t b = check_round(s, nnames, &acc, &sys, errs, first);

		if (b < 0)
			break;
		if (s[b].cur == s[b].newf && s[b].old != NULL)
			s[b].cur = s[b].old;
		else
			s[b].cur = NULL;
	}

	/* keep: the version in use, else the last good one */
	for (i = 0; i < nnames; i++) {
		struct cfg_file *keep = s[i].cur ? s[i].cur : s[i].old;

		if (s[i].newf != NULL && s[i].newf != keep) {
			cfg_file_free(s[i].newf);
			free(s[i].newf);
		}
		if (keep != NULL) {
			keep->fallback = s[i].cur != NULL && s[i].cur != s[i].newf;
			PUSH(good, ngood, keep);
		}
		free(s[i].path);
	}
	/* old versions not kept (replaced or removed from the directory) */
	for (k = 0; k < ld->ngood; k++) {
		for (i = 0; i < ngood; i++)
			if (good[i] == ld->good[k])
				break;
		if (i == ngood)
			PUSH(ld->retired, ld->nretired, ld->good[k]);
	}
	free(ld->good);
	free(s);
	ld->good = good;
	ld->ngood = ngood;

	config_reset(&ld->cur);
	ld->cur = acc;
	if (sys != NULL)
		ld->cur.system = *sys;
	else
		cfg_system_defaults(&ld->cur.system);
	if (ld->cur.nplatforms)
		qsort(ld->cur.platforms, ld->cur.nplatforms, sizeof(*ld->cur.platforms), cmp_platform);
	if (ld->cur.nnodes)
		qsort(ld->cur.nodes, ld->cur.nnodes, sizeof(*ld->cur.nodes), cmp_node);
	if (ld->cur.ntemplates)
		qsort(ld->cur.templates, ld->cur.ntemplates, sizeof(*ld->cur.templates), cmp_template);
	if (ld->cur.nrules)
		qsort(ld->cur.rules, ld->cur.nrules, sizeof(*ld->cur.rules), cmp_rule);
	return (int)(errs->n - first);
}

/* ---- lookups --------------------------------------------------------- */

const struct cfg_platform *
config_platform(const struct config *c, const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < c->nplatforms; i++)
		if (strcmp(c->platforms[i]->name, name) == 0)
			return c->platforms[i];
	return NULL;
}

const struct cfg_node *
config_node(const struct config *c, const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < c->nnodes; i++)
		if (strcmp(c->nodes[i]->name, name) == 0)
			return c->nodes[i];
	return NULL;
}

const struct cfg_rule *
config_rule(const struct config *c, enum cfg_kind kind, const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < c->nrules; i++)
		if (c->rules[i]->kind == kind && strcmp(c->rules[i]->name, name) == 0)
			return c->rules[i];
	return NULL;
}

const struct cfg_rule *
config_rule_any(const struct config *c, const char *name)
{
	const struct cfg_rule *r;

	if ((r = config_rule(c, CFG_MIGRATION, name)) != NULL)
		return r;
	if ((r = config_rule(c, CFG_REPLICATION, name)) != NULL)
		return r;
	return config_rule(c, CFG_BACKUP, name);
}
