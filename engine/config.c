/* Configuration loader: YAML rule files → plain structs.
 *
 * Two stages.  cfg_parse_buffer() checks one file on its own: syntax,
 * keys, types, units, ranges and secrets.  cfg_loader_reload() then
 * cross-checks every file of the directory (names, VM claims, references,
 * templates) and keeps the last good version of each file, so that a broken
 * edit never takes a running rule away.
 *
 * The YAML is read with libyaml's document API so that every node carries
 * its position; the loader only ever descends along the schema, so aliases
 * (which libyaml turns into shared nodes) cannot make it loop. */
#include "engine/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

#define NAME_MAX_LEN 64
#define VM_NAME_MAX_LEN 255
#define VMS_PER_RULE_MAX 10000   /* the checks are quadratic; the engine aims at ~1000 jobs */
#define FILE_MAX_SIZE (4u << 20)
#define SECRET_MAX 4096
#define HISTORY_MAX 64
#define RETENTION_MAX 64
#define MAX_TASKS_LIMIT 1024
#define TRANSFER_BUFFER_MIN (64u << 10)
#define TRANSFER_BUFFER_MAX (64u << 20)
#define TRANSFER_BUFFER_ALIGN (4u << 10)

#define DEF_MAX_TASKS 4
#define DEF_MAX_TASKS_PER_HOST 4
#define DEF_TRANSFER_BUFFER (4ull << 20)
#define DEF_HOST_BUFFER_CAP (32ull << 20)
#define DEF_KEEP_HISTORY 3
#define DEF_RETENTION 7

static const char *const kind_names[] = {
	[CFG_SYSTEM] = "system",
	[CFG_PLATFORM] = "platform",
	[CFG_NODE] = "node",
	[CFG_TEMPLATE] = "template",
	[CFG_MIGRATION] = "migration",
	[CFG_REPLICATION] = "replication",
	[CFG_BACKUP] = "backup",
};

const char *
cfg_kind_name(enum cfg_kind k)
{
	if ((unsigned)k >= ARRAY_LEN(kind_names))
		return "?";
	return kind_names[k];
}

/* ---- errors ---------------------------------------------------------- */

static void
errors_vadd(struct cfg_errors *e, const struct cfg_loc *loc, const char *suffix, const char *fmt,
    va_list ap)
{
	char *msg = xvasprintf(fmt, ap);
	char *line;

	if (suffix == NULL)
		suffix = "";
	if (loc != NULL && loc->file != NULL && loc->line > 0)
		line = xasprintf("%s:%d:%d: %s%s", loc->file, loc->line, loc->col, msg, suffix);
	else if (loc != NULL && loc->file != NULL)
		line = xasprintf("%s: %s%s", loc->file, msg, suffix);
	else
		line = xasprintf("%s%s", msg, suffix);
	free(msg);
	e->msgs = xreallocarray(e->msgs, e->n + 1, sizeof(*e->msgs));
	e->msgs[e->n++] = line;
}

void
cfg_errors_add(struct cfg_errors *e, const struct cfg_loc *loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(e, loc, NULL, fmt, ap);
	va_end(ap);
}

void
cfg_errors_free(struct cfg_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	e->msgs = NULL;
	e->n = 0;
}

/* ---- freeing --------------------------------------------------------- */

static void
schedule_free(struct cfg_schedule *s)
{
	size_t i;

	for (i = 0; i < s->nentries; i++)
		free(s->entries[i].times);
	free(s->entries);
	memset(s, 0, sizeof(*s));
}

static void
platform_free(struct cfg_platform *p)
{
	size_t i;

	free(p->name);
	free(p->type);
	free(p->url);
	free(p->username);
	if (p->password != NULL) {
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	free(p->password_source);
	free(p->ca_file);
	free(p->ca_file_name);
	for (i = 0; i < p->nmounts; i++) {
		free(p->mounts[i].datastore);
		free(p->mounts[i].path);
	}
	free(p->mounts);
	memset(p, 0, sizeof(*p));
}

static void
node_free(struct cfg_node *n)
{
	free(n->name);
	free(n->repository);
	free(n->temp_dir);
	memset(n, 0, sizeof(*n));
}

static void
template_free(struct cfg_template *t)
{
	free(t->name);
	free(t->windows);
	schedule_free(&t->schedule);
	memset(t, 0, sizeof(*t));
}

static void
rule_free(struct cfg_rule *r)
{
	size_t i;

	free(r->name);
	free(r->source_platform);
	for (i = 0; i < r->nvms; i++)
		free(r->vms[i]);
	free(r->vms);
	free(r->locs.vms);
	free(r->node);
	free(r->target.platform);
	free(r->target.datacenter);
	free(r->target.host);
	free(r->target.datastore);
	free(r->repository);
	free(r->template_name);
	free(r->windows);
	schedule_free(&r->schedule);
	memset(r, 0, sizeof(*r));
}

void
cfg_file_free(struct cfg_file *f)
{
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->nplatforms; i++)
		platform_free(&f->platforms[i]);
	free(f->platforms);
	for (i = 0; i < f->nnodes; i++)
		node_free(&f->nodes[i]);
	free(f->nodes);
	for (i = 0; i < f->ntemplates; i++)
		template_free(&f->templates[i]);
	free(f->templates);
	for (i = 0; i < f->nrules; i++)
		rule_free(&f->rules[i]);
	free(f->rules);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

/* ---- parse context and node helpers ---------------------------------- */

struct pctx {
	const char *path;       /* the cfg_file's own copy; every cfg_loc points here */
	const char *confdir;
	yaml_document_t *doc;
	struct cfg_errors *errs;
	int nerr;
};

static struct cfg_loc
loc_of(const struct pctx *c, const yaml_node_t *n)
{
	struct cfg_loc l;

	l.file = c->path;
	l.line = (int)n->start_mark.line + 1;
	l.col = (int)n->start_mark.column + 1;
	return l;
}

static void perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	struct cfg_loc l = loc_of(c, n);
	va_list ap;

	va_start(ap, fmt);
	errors_vadd(c->errs, &l, NULL, fmt, ap);
	va_end(ap);
	c->nerr++;
}

static yaml_node_t *
node_at(struct pctx *c, int idx)
{
	return yaml_document_get_node(c->doc, idx);
}

static int
is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A short, printable rendering of a user's value for messages. */
static void
show_value(const char *v, size_t len, char *out, size_t outlen)
{
	size_t i, o = 0, max = 60;
	int cut = 0;

	if (len > max) {
		len = max;
		/* don't cut a UTF-8 sequence in half */
		while (len > 0 && ((unsigned char)v[len] & 0xc0) == 0x80)
			len--;
		cut = 1;
	}
	for (i = 0; i < len && o + 4 < outlen; i++) {
		unsigned char ch = (unsigned char)v[i];

		out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (cut && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* "a list", "a mapping", "nothing", "\"yes\"", "the quoted string \"4\"" */
static const char *
describe(const yaml_node_t *n, char *buf, size_t buflen)
{
	char v[96];

	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (is_null(n))
		return "nothing";
	show_value((const char *)n->data.scalar.value, n->data.scalar.length, v, sizeof(v));
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		snprintf(buf, buflen, "\"%s\"", v);
	else
		snprintf(buf, buflen, "the quoted string \"%s\"", v);
	return buf;
}

/* The value itself in quotes, for "X is not a valid Y" messages. */
static const char *
quoted(const yaml_node_t *n, char *buf, size_t buflen)
{
	char v[96];

	if (n->type != YAML_SCALAR_NODE)
		return describe(n, buf, buflen);
	show_value((const char *)n->data.scalar.value, n->data.scalar.length, v, sizeof(v));
	snprintf(buf, buflen, "\"%s\"", v);
	return buf;
}

static void
type_err(struct pctx *c, const yaml_node_t *n, const char *label, const char *expected)
{
	char buf[128];

	perr(c, n, "%s: expected %s, got %s", label, expected, describe(n, buf, sizeof(buf)));
}

/* A scalar string value (any quoting style), not null, without NUL bytes. */
static const char *
get_str(struct pctx *c, yaml_node_t *n, const char *label)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		type_err(c, n, label, "a string");
		return NULL;
	}
	if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL) {
		perr(c, n, "%s: contains a NUL character", label);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

static int
get_int(struct pctx *c, yaml_node_t *n, const char *label, int min, int max, int *out)
{
	const char *v;
	long long x = 0;
	size_t i;
	int neg = 0;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    is_null(n))
		goto bad;
	v = (const char *)n->data.scalar.value;
	if (*v == '-') {
		neg = 1;
		v++;
	}
	if (*v == '\0' || strlen(v) > 12)
		goto bad;
	for (i = 0; v[i]; i++) {
		if (v[i] < '0' || v[i] > '9')
			goto bad;
		x = x * 10 + (v[i] - '0');
	}
	if (neg)
		x = -x;
	if (x < min || x > max) {
		perr(c, n, "%s must be between %d and %d, got %lld", label, min, max, x);
		return -1;
	}
	*out = (int)x;
	return 0;
bad:
	type_err(c, n, label, "an integer");
	return -1;
}

static int
get_bool(struct pctx *c, yaml_node_t *n, const char *label, int *out)
{
	if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		if (strcmp((const char *)n->data.scalar.value, "true") == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp((const char *)n->data.scalar.value, "false") == 0) {
			*out = 0;
			return 0;
		}
	}
	type_err(c, n, label, "true or false");
	return -1;
}

static int
get_size(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out)
{
	const char *v = get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if (units_parse_size(v, out) != 0) {
		perr(c, n, "%s: %s is not a size (use bytes or a unit: 512KiB, 4MiB, 1GiB; KB/MB/GB are decimal)",
		    label, quoted(n, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

static int
get_rate(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out)
{
	const char *v = get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if (units_parse_rate(v, out) != 0) {
		perr(c, n, "%s: %s is not a rate (write a size per second like 20MiB/s, or 0 to pause)",
		    label, quoted(n, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

static int
get_hhmm(struct pctx *c, yaml_node_t *n, const char *label, int allow_24, int *out)
{
	const char *v = get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if (units_parse_hhmm(v, allow_24, out) != 0) {
		perr(c, n, "%s: %s is not a time of day (expected HH:MM, 00:00 to %s)", label,
		    quoted(n, buf, sizeof(buf)), allow_24 ? "24:00" : "23:59");
		return -1;
	}
	return 0;
}

static int
get_day(struct pctx *c, yaml_node_t *n, const char *label, int *out)
{
	const char *v = get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if ((*out = units_parse_day(v)) < 0) {
		perr(c, n, "%s: %s is not a day (mon, tue, wed, thu, fri, sat or sun)", label,
		    quoted(n, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* A list of day names → bit mask; each day at most once. */
static int
get_days(struct pctx *c, yaml_node_t *n, const char *label, uint8_t *out)
{
	yaml_node_item_t *it;
	uint8_t mask = 0;
	int d, rc = 0;
	char buf[128];

	if (n->type != YAML_SEQUENCE_NODE) {
		type_err(c, n, label, "a list of days like [mon, fri]");
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		perr(c, n, "%s: needs at least one day", label);
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *dn = node_at(c, *it);

		if (get_day(c, dn, label, &d) != 0) {
			rc = -1;
			continue;
		}
		if (mask & (1u << d)) {
			perr(c, dn, "%s: %s is listed twice", label, quoted(dn, buf, sizeof(buf)));
			rc = -1;
		}
		mask |= (uint8_t)(1u << d);
	}
	*out = mask;
	return rc;
}

/* Rule, platform, node and template names become file and key names. */
static char *
get_name(struct pctx *c, yaml_node_t *n, const char *label)
{
	const char *v = get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return NULL;
	if (!name_is_safe(v) || strlen(v) > NAME_MAX_LEN) {
		perr(c, n, "%s: %s is not a safe name (1 to %d characters; no \"/\", \"\\\", "
		    "control characters; not \".\" or \"..\")", label, quoted(n, buf, sizeof(buf)),
		    NAME_MAX_LEN);
		return NULL;
	}
	return xstrdup(v);
}

/* A path on the node or a mount point: non-empty, no control characters. */
static char *
get_path(struct pctx *c, yaml_node_t *n, const char *label, int need_absolute)
{
	const char *v = get_str(c, n, label);
	const unsigned char *p;

	if (v == NULL)
		return NULL;
	if (*v == '\0') {
		perr(c, n, "%s: empty path", label);
		return NULL;
	}
	for (p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			perr(c, n, "%s: path contains a control character", label);
			return NULL;
		}
	}
	if (need_absolute && *v != '/') {
		perr(c, n, "%s: path must be absolute, got \"%s\"", label, v);
		return NULL;
	}
	return xstrdup(v);
}

/* ---- mappings with a fixed set of keys ------------------------------- */

struct field {
	const char *key;
	int required;
	yaml_node_t *val;
	yaml_node_t *keynode;
};

/* Collects the values of a mapping into f[].  Unknown and duplicate keys
 * are errors; so are missing required keys (named in one message).
 * Returns -1 only when n is not a mapping at all. */
static int
map_fields(struct pctx *c, yaml_node_t *n, const char *where, struct field *f, size_t nf)
{
	yaml_node_pair_t *pr;
	char missing[512];
	size_t i, nmissing = 0;
	char buf[128];

	for (i = 0; i < nf; i++)
		f[i].val = f[i].keynode = NULL;
	if (n->type != YAML_MAPPING_NODE) {
		perr(c, n, "%s: expected a mapping, got %s", where, describe(n, buf, sizeof(buf)));
		return -1;
	}
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = node_at(c, pr->key), *v = node_at(c, pr->value);
		const char *ks;

		if (k->type != YAML_SCALAR_NODE) {
			perr(c, k, "keys in %s must be plain words, got %s", where,
			    describe(k, buf, sizeof(buf)));
			continue;
		}
		ks = (const char *)k->data.scalar.value;
		for (i = 0; i < nf; i++)
			if (f[i].key != NULL && strlen(f[i].key) == k->data.scalar.length &&
			    strcmp(f[i].key, ks) == 0)
				break;
		if (i == nf) {
			show_value(ks, k->data.scalar.length, buf, sizeof(buf));
			perr(c, k, "unknown key \"%s\" in %s", buf, where);
			continue;
		}
		if (f[i].val != NULL) {
			perr(c, k, "duplicate key \"%s\" in %s (first at line %d)", f[i].key, where,
			    (int)f[i].keynode->start_mark.line + 1);
			continue;
		}
		f[i].val = v;
		f[i].keynode = k;
	}
	missing[0] = '\0';
	for (i = 0; i < nf; i++) {
		if (f[i].key != NULL && f[i].required && f[i].val == NULL) {
			size_t l = strlen(missing);

			snprintf(missing + l, sizeof(missing) - l, "%s\"%s\"", nmissing ? ", " : "",
			    f[i].key);
			nmissing++;
		}
	}
	if (nmissing)
		perr(c, n, "missing required key%s %s in %s", nmissing > 1 ? "s" : "", missing, where);
	return 0;
}

/* ---- files relative to the config dir -------------------------------- */

static char *
path_join(const char *dir, const char *name)
{
	size_t l;

	if (name[0] == '/' || dir == NULL || dir[0] == '\0')
		return xstrdup(name);
	l = strlen(dir);
	if (dir[l - 1] == '/')
		return xasprintf("%s%s", dir, name);
	return xasprintf("%s/%s", dir, name);
}

/* Reads the first line of a regular file (the secret), at most SECRET_MAX
 * bytes.  O_NONBLOCK and the regular-file check keep a FIFO or a device
 * from hanging the loader. */
static int
read_secret(const char *path, char **out, const char **why, int *sys)
{
	char buf[SECRET_MAX + 1];
	struct stat st;
	size_t len = 0;
	ssize_t r;
	char *nl;
	int fd;

	*why = NULL;
	*sys = 1;
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		*why = strerror(errno);
		return -1;
	}
	*sys = 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*why = "is not a regular file";
		close(fd);
		return -1;
	}
	while (len < SECRET_MAX) {
		r = read(fd, buf + len, SECRET_MAX - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			*sys = 1;
			close(fd);
			explicit_bzero(buf, sizeof(buf));
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	close(fd);
	buf[len] = '\0';
	if ((nl = memchr(buf, '\n', len)) != NULL)
		len = (size_t)(nl - buf);
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (memchr(buf, '\0', len) != NULL)
		*why = "contains a NUL byte";
	else if (len == 0)
		*why = "is empty";
	if (*why != NULL) {
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	*out = xstrndup(buf, len);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* ---- options --------------------------------------------------------- */

#define K_MIG (1u << CFG_MIGRATION)
#define K_REP (1u << CFG_REPLICATION)
#define K_BAK (1u << CFG_BACKUP)
#define K_ALL (K_MIG | K_REP | K_BAK)

struct optdef {
	const char *name;
	uint32_t bit;
	unsigned kinds;   /* rule kinds the option applies to */
	int def;          /* default value */
};

static const struct optdef optdefs[] = {
	{ "fast_transfer", CFG_OPT_FAST_TRANSFER, K_ALL, 0 },
	{ "quiesce", CFG_OPT_QUIESCE, K_ALL, 0 },
	{ "lan_free", CFG_OPT_LAN_FREE, K_ALL, 0 },
	{ "memory_snapshot", CFG_OPT_MEMORY_SNAPSHOT, K_MIG, 0 },
	{ "auto_migrate", CFG_OPT_AUTO_MIGRATE, K_MIG, 0 },
	{ "auto_sync", CFG_OPT_AUTO_SYNC, K_REP, 1 },
	{ "delete_target_on_rule_delete", CFG_OPT_DELETE_TARGET, K_MIG | K_REP, 0 },
	{ "delete_backup_data_on_rule_delete", CFG_OPT_DELETE_BACKUP_DATA, K_BAK, 0 },
	{ "power_on_target", CFG_OPT_POWER_ON_TARGET, K_MIG, 1 },
	{ "cutover", CFG_OPT_CUTOVER, K_MIG, CUTOVER_SHUTDOWN },
};

static const char *const cutover_names[] = {
	[CUTOVER_SHUTDOWN] = "shutdown",
	[CUTOVER_POWEROFF] = "poweroff",
	[CUTOVER_NONE] = "none",
};

static int *
opt_field(struct cfg_options *o, uint32_t bit)
{
	switch (bit) {
	case CFG_OPT_FAST_TRANSFER: return &o->fast_transfer;
	case CFG_OPT_QUIESCE: return &o->quiesce;
	case CFG_OPT_LAN_FREE: return &o->lan_free;
	case CFG_OPT_MEMORY_SNAPSHOT: return &o->memory_snapshot;
	case CFG_OPT_AUTO_MIGRATE: return &o->auto_migrate;
	case CFG_OPT_AUTO_SYNC: return &o->auto_sync;
	case CFG_OPT_DELETE_TARGET: return &o->delete_target_on_rule_delete;
	case CFG_OPT_DELETE_BACKUP_DATA: return &o->delete_backup_data_on_rule_delete;
	case CFG_OPT_POWER_ON_TARGET: return &o->power_on_target;
	default: return NULL;
	}
}

static int
opt_get(const struct cfg_options *o, uint32_t bit)
{
	if (bit == CFG_OPT_CUTOVER)
		return (int)o->cutover;
	return *opt_field((struct cfg_options *)o, bit);
}

static void
opt_put(struct cfg_options *o, uint32_t bit, int v)
{
	if (bit == CFG_OPT_CUTOVER)
		o->cutover = (enum cfg_cutover)v;
	else
		*opt_field(o, bit) = v;
}

/* kind is the rule kind, or CFG_TEMPLATE (every option allowed). */
static void
parse_options(struct pctx *c, yaml_node_t *n, enum cfg_kind kind, struct cfg_options *o)
{
	struct field f[ARRAY_LEN(optdefs)];
	char label[64], buf[128];
	size_t i;

	for (i = 0; i < ARRAY_LEN(optdefs); i++) {
		f[i].key = optdefs[i].name;
		f[i].required = 0;
	}
	if (map_fields(c, n, "options", f, ARRAY_LEN(f)) != 0)
		return;
	for (i = 0; i < ARRAY_LEN(optdefs); i++) {
		const struct optdef *d = &optdefs[i];
		int v = 0;

		if (f[i].val == NULL)
			continue;
		if (kind != CFG_TEMPLATE && !(d->kinds & (1u << kind))) {
			perr(c, f[i].keynode, "option \"%s\" does not apply to %s rules", d->name,
			    cfg_kind_name(kind));
			continue;
		}
		snprintf(label, sizeof(label), "options.%s", d->name);
		if (d->bit == CFG_OPT_CUTOVER) {
			const char *s = get_str(c, f[i].val, label);
			size_t k;

			if (s == NULL)
				continue;
			for (k = 0; k < ARRAY_LEN(cutover_names); k++)
				if (strcmp(s, cutover_names[k]) == 0)
					break;
			if (k == ARRAY_LEN(cutover_names)) {
				perr(c, f[i].val, "%s: unknown cutover %s (shutdown, poweroff or none)",
				    label, quoted(f[i].val, buf, sizeof(buf)));
				continue;
			}
			v = (int)k;
		} else if (get_bool(c, f[i].val, label, &v) != 0) {
			continue;
		}
		opt_put(o, d->bit, v);
		o->set |= d->bit;
	}
}

/* ---- bandwidth windows ----------------------------------------------- */

static void
parse_bandwidth(struct pctx *c, yaml_node_t *n, struct cfg_window **out, size_t *nout)
{
	yaml_node_item_t *it;
	struct cfg_window *w = NULL;
	size_t nw = 0;

	*out = NULL;
	*nout = 0;
	if (n->type != YAML_SEQUENCE_NODE) {
		type_err(c, n, "bandwidth", "a list of windows");
		return;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *wn = node_at(c, *it);
		struct field f[] = {
			{ "days", 1, NULL, NULL },
			{ "from", 1, NULL, NULL },
			{ "to", 1, NULL, NULL },
			{ "limit", 1, NULL, NULL },
		};
		struct cfg_window win;
		int before = c->nerr;

		memset(&win, 0, sizeof(win));
		if (map_fields(c, wn, "bandwidth window", f, ARRAY_LEN(f)) != 0)
			continue;
		if (f[0].val != NULL)
			get_days(c, f[0].val, "bandwidth.days", &win.days);
		if (f[1].val != NULL)
			get_hhmm(c, f[1].val, "bandwidth.from", 0, &win.from_min);
		if (f[2].val != NULL)
			get_hhmm(c, f[2].val, "bandwidth.to", 1, &win.to_min);
		if (f[3].val != NULL)
			get_rate(c, f[3].val, "bandwidth.limit", &win.limit_bps);
		if (c->nerr != before)
			continue;
		if (win.from_min >= win.to_min) {
			perr(c, f[2].val, "bandwidth: window ends (%s) before it starts (%s); "
			    "a window cannot cross midnight, split it in two",
			    (const char *)f[2].val->data.scalar.value,
			    (const char *)f[1].val->data.scalar.value);
			continue;
		}
		w = xreallocarray(w, nw + 1, sizeof(*w));
		w[nw++] = win;
	}
	*out = w;
	*nout = nw;
}

int
cfg_window_limit(const struct cfg_window *w, size_t n, int weekday_mon0, int minute_of_day,
    uint64_t *bps)
{
	size_t i;

	if (weekday_mon0 < 0 || weekday_mon0 > 6)
		return 0;
	for (i = 0; i < n; i++) {
		if ((w[i].days & (1u << weekday_mon0)) && minute_of_day >= w[i].from_min &&
		    minute_of_day < w[i].to_min) {
			*bps = w[i].limit_bps;
			return 1;
		}
	}
	return 0;
}

/* ---- schedules ------------------------------------------------------- */

static const char *const sched_names[] = {
	[SCHED_NONE] = "none",
	[SCHED_ONCE] = "once",
	[SCHED_HOURLY] = "hourly",
	[SCHED_DAILY] = "daily",
	[SCHED_WEEKLY] = "weekly",
	[SCHED_MONTHLY] = "monthly",
};

static const char *const mode_names[] = {
	[BACKUP_FULL] = "full",
	[BACKUP_INCREMENTAL] = "incremental",
	[BACKUP_DIFFERENTIAL] = "differential",
};

/* "2h", "90m", "1h30m" or plain minutes. */
static int
get_interval(struct pctx *c, yaml_node_t *n, int *out)
{
	const char *v, *p;
	long long total = 0, num;
	int seen_h = 0, seen_m = 0;
	char buf[128];

	if ((v = get_str(c, n, "schedule.interval")) == NULL)
		return -1;
	p = v;
	if (*p == '\0')
		goto bad;
	while (*p) {
		if (*p < '0' || *p > '9')
			goto bad;
		for (num = 0; *p >= '0' && *p <= '9'; p++) {
			num = num * 10 + (*p - '0');
			if (num > 100000)
				goto range;
		}
		if (*p == '\0' && !seen_h && !seen_m && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			total = num;   /* a plain number means minutes */
			break;
		}
		if (*p == 'h' && !seen_h && !seen_m) {
			total += num * 60;
			seen_h = 1;
		} else if (*p == 'm' && !seen_m) {
			total += num;
			seen_m = 1;
		} else {
			goto bad;
		}
		p++;
	}
	if (total < 1 || total > 1440)
		goto range;
	*out = (int)total;
	return 0;
range:
	perr(c, n, "schedule.interval must be between 1m and 24h, got %s", describe(n, buf, sizeof(buf)));
	return -1;
bad:
	perr(c, n, "schedule.interval: expected minutes or a duration like 2h, 90m or 1h30m, got %s",
	    describe(n, buf, sizeof(buf)));
	return -1;
}

static int
cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static int
get_times(struct pctx *c, yaml_node_t *n, int **out, size_t *nout)
{
	yaml_node_item_t *it;
	int *t = NULL, rc = 0;
	size_t nt = 0, i;
	char buf[128];

	if (n->type == YAML_SCALAR_NODE) {
		t = xmalloc(sizeof(*t));
		if (get_hhmm(c, n, "schedule.times", 0, &t[0]) != 0) {
			free(t);
			return -1;
		}
		*out = t;
		*nout = 1;
		return 0;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		type_err(c, n, "schedule.times", "a list of times like [\"01:00\", \"13:00\"]");
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		perr(c, n, "schedule.times: needs at least one time");
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *tn = node_at(c, *it);
		int m;

		if (get_hhmm(c, tn, "schedule.times", 0, &m) != 0) {
			rc = -1;
			continue;
		}
		for (i = 0; i < nt; i++)
			if (t[i] == m)
				break;
		if (i < nt) {
			perr(c, tn, "schedule.times: %s is listed twice", quoted(tn, buf, sizeof(buf)));
			rc = -1;
			continue;
		}
		t = xreallocarray(t, nt + 1, sizeof(*t));
		t[nt++] = m;
	}
	if (rc != 0) {
		free(t);
		return -1;
	}
	qsort(t, nt, sizeof(*t), cmp_int);
	*out = t;
	*nout = nt;
	return 0;
}

static int
days_in_month(int y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

static int
digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* "YYYY-MM-DD HH:MM" (or with a 'T'), local time. */
static int
get_datetime(struct pctx *c, yaml_node_t *n, int64_t *out)
{
	const char *v = get_str(c, n, "schedule.once");
	struct tm tm;
	int y, mo, d, mins;
	time_t t;
	char buf[128];

	if (v == NULL)
		return -1;
	if (strlen(v) != 16 || v[4] != '-' || v[7] != '-' || (v[10] != ' ' && v[10] != 'T') ||
	    digits(v, 4, &y) != 0 || digits(v + 5, 2, &mo) != 0 || digits(v + 8, 2, &d) != 0 ||
	    units_parse_hhmm(v + 11, 0, &mins) != 0 || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
	    d > days_in_month(y, mo)) {
		perr(c, n, "schedule.once: %s is not a valid date and time (expected \"YYYY-MM-DD HH:MM\", local time)",
		    quoted(n, buf, sizeof(buf)));
		return -1;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = mins / 60;
	tm.tm_min = mins % 60;
	tm.tm_isdst = -1;
	if ((t = mktime(&tm)) == (time_t)-1) {
		perr(c, n, "schedule.once: %s cannot be represented", quoted(n, buf, sizeof(buf)));
		return -1;
	}
	*out = (int64_t)t;
	return 0;
}

enum sched_ctx { SCTX_REPLICATION, SCTX_BACKUP, SCTX_TEMPLATE };

/* One periodic entry: {type, mode, interval, start, times, days, day}. */
static int
parse_entry(struct pctx *c, yaml_node_t *n, enum sched_ctx sc, struct cfg_sched_entry *e)
{
	enum { E_TYPE, E_MODE, E_INTERVAL, E_START, E_TIMES, E_DAYS, E_DAY };
	struct field f[] = {
		{ "type", 1, NULL, NULL },
		{ "mode", sc == SCTX_BACKUP, NULL, NULL },
		{ "interval", 0, NULL, NULL },
		{ "start", 0, NULL, NULL },
		{ "times", 0, NULL, NULL },
		{ "days", 0, NULL, NULL },
		{ "day", 0, NULL, NULL },
	};
	const char *s;
	char buf[128];
	int before = c->nerr, k;

	memset(e, 0, sizeof(*e));
	e->mode = BACKUP_INCREMENTAL;
	if (map_fields(c, n, "schedule", f, ARRAY_LEN(f)) != 0)
		return -1;
	if (f[E_TYPE].val != NULL && (s = get_str(c, f[E_TYPE].val, "schedule.type")) != NULL) {
		for (k = SCHED_HOURLY; k <= SCHED_MONTHLY; k++)
			if (strcmp(s, sched_names[k]) == 0)
				break;
		if (k > SCHED_MONTHLY)
			perr(c, f[E_TYPE].val, "schedule.type: unknown schedule type %s "
			    "(hourly, daily, weekly or monthly)", quoted(f[E_TYPE].val, buf, sizeof(buf)));
		else
			e->type = (enum cfg_sched_type)k;
	}
	if (f[E_MODE].val != NULL) {
		if (sc == SCTX_REPLICATION) {
			perr(c, f[E_MODE].keynode, "schedule.mode is only used by backup schedules "
			    "(replication is always incremental)");
		} else if ((s = get_str(c, f[E_MODE].val, "schedule.mode")) != NULL) {
			for (k = 0; k < (int)ARRAY_LEN(mode_names); k++)
				if (strcmp(s, mode_names[k]) == 0)
					break;
			if (k == (int)ARRAY_LEN(mode_names))
				perr(c, f[E_MODE].val, "schedule.mode: unknown backup mode %s "
				    "(full, incremental or differential)",
				    quoted(f[E_MODE].val, buf, sizeof(buf)));
			else
				e->mode = (enum cfg_backup_mode)k;
		}
	}
	if (e->type == SCHED_NONE)
		return -1;
	/* keys that belong to other schedule types */
	if (f[E_INTERVAL].val != NULL && e->type != SCHED_HOURLY)
		perr(c, f[E_INTERVAL].keynode, "schedule.interval is only used by hourly schedules");
	if (f[E_DAYS].val != NULL && e->type != SCHED_WEEKLY)
		perr(c, f[E_DAYS].keynode, "schedule.days is only used by weekly schedules");
	if (f[E_DAY].val != NULL && e->type != SCHED_MONTHLY)
		perr(c, f[E_DAY].keynode, "schedule.day is only used by monthly schedules");
	if (f[E_TIMES].val != NULL && e->type == SCHED_HOURLY)
		perr(c, f[E_TIMES].keynode, "schedule.times is not used by hourly schedules "
		    "(give interval and start)");
	if (f[E_TIMES].val != NULL && f[E_START].val != NULL)
		perr(c, f[E_TIMES].keynode, "schedule: give start or times, not both");
	if (c->nerr != before)
		return -1;

	if (e->type == SCHED_HOURLY) {
		if (f[E_INTERVAL].val == NULL)
			perr(c, n, "schedule: hourly needs an interval (like 2h or 90m)");
		else
			get_interval(c, f[E_INTERVAL].val, &e->interval_min);
	}
	if (e->type == SCHED_WEEKLY) {
		if (f[E_DAYS].val == NULL)
			perr(c, n, "schedule: weekly needs days (like [mon, fri])");
		else
			get_days(c, f[E_DAYS].val, "schedule.days", &e->days);
	}
	if (e->type == SCHED_MONTHLY) {
		if (f[E_DAY].val == NULL)
			perr(c, n, "schedule: monthly needs a day of the month (1 to 31)");
		else
			get_int(c, f[E_DAY].val, "schedule.day", 1, 31, &e->day);
	}
	if (f[E_TIMES].val != NULL) {
		get_times(c, f[E_TIMES].val, &e->times, &e->ntimes);
	} else if (f[E_START].val != NULL) {
		e->times = xmalloc(sizeof(*e->times));
		if (get_hhmm(c, f[E_START].val, "schedule.start", 0, &e->times[0]) == 0) {
			e->ntimes = 1;
		} else {
			free(e->times);
			e->times = NULL;
		}
	} else if (e->type == SCHED_HOURLY) {
		/* hourly counts from midnight unless told otherwise */
		e->times = xcalloc(1, sizeof(*e->times));
		e->ntimes = 1;
	} else {
		perr(c, n, "schedule: %s needs a start time (or times)", sched_names[e->type]);
	}
	if (c->nerr != before) {
		free(e->times);
		e->times = NULL;
		e->ntimes = 0;
		return -1;
	}
	return 0;
}

/* Replication: one mapping entry.  Backup: {once: ...} or a list of
 * entries (a single mapping entry is accepted too).  Templates: any. */
static void
parse_schedule(struct pctx *c, yaml_node_t *n, enum sched_ctx sc, struct cfg_schedule *out)
{
	struct cfg_sched_entry e;
	int before = c->nerr;

	memset(out, 0, sizeof(*out));
	if (n->type == YAML_MAPPING_NODE) {
		yaml_node_pair_t *pr;
		int has_once = 0;

		for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = node_at(c, pr->key);

			if (k->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)k->data.scalar.value, "once") == 0)
				has_once = 1;
		}
		if (has_once) {
			struct field f[] = { { "once", 1, NULL, NULL }, { "mode", 0, NULL, NULL } };
			const char *s;
			char buf[128];
			int k;

			if (sc == SCTX_REPLICATION) {
				perr(c, n, "schedule: replication runs periodically; \"once\" is for backup rules");
				return;
			}
			memset(&e, 0, sizeof(e));
			e.type = SCHED_ONCE;
			e.mode = BACKUP_FULL;
			map_fields(c, n, "schedule", f, ARRAY_LEN(f));
			get_datetime(c, f[0].val, &e.once_at);
			if (f[1].val != NULL && (s = get_str(c, f[1].val, "schedule.mode")) != NULL) {
				for (k = 0; k < (int)ARRAY_LEN(mode_names); k++)
					if (strcmp(s, mode_names[k]) == 0)
						break;
				if (k == (int)ARRAY_LEN(mode_names))
					perr(c, f[1].val, "schedule.mode: unknown backup mode %s "
					    "(full, incremental or differential)",
					    quoted(f[1].val, buf, sizeof(buf)));
				else
					e.mode = (enum cfg_backup_mode)k;
			}
			if (c->nerr != before)
				return;
			out->entries = xmalloc(sizeof(e));
			out->entries[0] = e;
			out->nentries = 1;
			out->set = 1;
			return;
		}
		if (parse_entry(c, n, sc, &e) != 0)
			return;
		out->entries = xmalloc(sizeof(e));
		out->entries[0] = e;
		out->nentries = 1;
		out->set = 1;
		return;
	}
	if (n->type == YAML_SEQUENCE_NODE && sc != SCTX_REPLICATION) {
		yaml_node_item_t *it;

		if (n->data.sequence.items.start == n->data.sequence.items.top) {
			perr(c, n, "schedule: needs at least one entry");
			return;
		}
		for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
			if (parse_entry(c, node_at(c, *it), sc, &e) != 0)
				continue;
			out->entries = xreallocarray(out->entries, out->nentries + 1, sizeof(e));
			out->entries[out->nentries++] = e;
		}
		if (c->nerr != before) {
			schedule_free(out);
			return;
		}
		out->set = 1;
		return;
	}
	if (sc == SCTX_REPLICATION)
		type_err(c, n, "schedule", "a mapping like {type: daily, start: \"01:00\"}");
	else
		type_err(c, n, "schedule", "{once: \"YYYY-MM-DD HH:MM\"} or a list of periodic entries");
}

static void
copy_schedule(struct cfg_schedule *dst, const struct cfg_schedule *src)
{
	size_t i;

	memset(dst, 0, sizeof(*dst));
	if (src->nentries == 0) {
		dst->set = src->set;
		return;
	}
	dst->entries = xcalloc(src->nentries, sizeof(*dst->entries));
	for (i = 0; i < src->nentries; i++) {
		dst->entries[i] = src->entries[i];
		dst->entries[i].times = NULL;
		if (src->entries[i].ntimes) {
			dst->entries[i].times = xcalloc(src->entries[i].ntimes, sizeof(int));
			memcpy(dst->entries[i].times, src->entries[i].times,
			    src->entries[i].ntimes * sizeof(int));
		}
	}
	dst->nentries = src->nentries;
	dst->set = src->set;
}

/* ---- documents ------------------------------------------------------- */

static void
parse_system(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_MAX, F_PERHOST, F_BUF, F_CAP };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "max_tasks", 0, NULL, NULL },
		{ "max_tasks_per_host", 0, NULL, NULL },
		{ "transfer_buffer", 0, NULL, NULL },
		{ "host_buffer_cap", 0, NULL, NULL },
	};
	struct cfg_system s;
	char a[32], b[32], d[32];
	int before = c->nerr;

	if (out->system.present) {
		perr(c, n, "a second system document in this file; the first is at %s:%d",
		    out->system.loc.file, out->system.loc.line);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.max_tasks = DEF_MAX_TASKS;
	s.max_tasks_per_host = DEF_MAX_TASKS_PER_HOST;
	s.transfer_buffer = DEF_TRANSFER_BUFFER;
	s.host_buffer_cap = DEF_HOST_BUFFER_CAP;
	s.loc = loc_of(c, n);
	s.present = 1;
	map_fields(c, n, "system", f, ARRAY_LEN(f));
	if (f[F_MAX].val != NULL)
		get_int(c, f[F_MAX].val, "max_tasks", 1, MAX_TASKS_LIMIT, &s.max_tasks);
	if (f[F_PERHOST].val != NULL)
		get_int(c, f[F_PERHOST].val, "max_tasks_per_host", 1, MAX_TASKS_LIMIT,
		    &s.max_tasks_per_host);
	if (f[F_BUF].val != NULL && get_size(c, f[F_BUF].val, "transfer_buffer", &s.transfer_buffer) == 0 &&
	    (s.transfer_buffer < TRANSFER_BUFFER_MIN || s.transfer_buffer > TRANSFER_BUFFER_MAX ||
	    s.transfer_buffer % TRANSFER_BUFFER_ALIGN != 0))
		perr(c, f[F_BUF].val, "transfer_buffer must be between 64KiB and 64MiB and a multiple "
		    "of 4KiB, got %llu bytes", (unsigned long long)s.transfer_buffer);
	if (f[F_CAP].val != NULL)
		get_size(c, f[F_CAP].val, "host_buffer_cap", &s.host_buffer_cap);
	if (c->nerr != before) {
		out->system.present = 1;   /* still remember there was one */
		out->system.loc = s.loc;
		return;
	}
	if (s.max_tasks_per_host > s.max_tasks) {
		perr(c, f[F_PERHOST].val ? f[F_PERHOST].val : f[F_MAX].val,
		    "max_tasks_per_host (%d) is above max_tasks (%d)", s.max_tasks_per_host, s.max_tasks);
	} else if ((uint64_t)s.max_tasks_per_host * s.transfer_buffer > s.host_buffer_cap) {
		yaml_node_t *at = f[F_BUF].val ? f[F_BUF].val :
		    f[F_PERHOST].val ? f[F_PERHOST].val : f[F_CAP].val;

		units_format_size((uint64_t)s.max_tasks_per_host * s.transfer_buffer, a, sizeof(a));
		units_format_size(s.transfer_buffer, b, sizeof(b));
		units_format_size(s.host_buffer_cap, d, sizeof(d));
		perr(c, at, "max_tasks_per_host x transfer_buffer = %d x %s = %s exceeds host_buffer_cap %s",
		    s.max_tasks_per_host, b, a, d);
	}
	out->system = s;
}

static void
parse_tls(struct pctx *c, yaml_node_t *n, struct cfg_platform *p)
{
	enum { T_THUMB, T_CA, T_INSECURE };
	struct field f[] = {
		{ "thumbprint", 0, NULL, NULL },
		{ "ca_file", 0, NULL, NULL },
		{ "insecure", 0, NULL, NULL },
	};
	const char *s;
	char buf[128];
	int given;

	if (map_fields(c, n, "tls", f, ARRAY_LEN(f)) != 0)
		return;
	given = (f[T_THUMB].val != NULL) + (f[T_CA].val != NULL) + (f[T_INSECURE].val != NULL);
	if (given != 1) {
		perr(c, n, "tls: give exactly one of thumbprint, ca_file or insecure: true "
		    "(leave tls out to verify against the system's CAs)");
		return;
	}
	if (f[T_THUMB].val != NULL && (s = get_str(c, f[T_THUMB].val, "tls.thumbprint")) != NULL) {
		if (units_parse_thumbprint(s, p->thumbprint) != 0)
			perr(c, f[T_THUMB].val, "tls.thumbprint: %s is not a SHA-256 fingerprint "
			    "(64 hex digits, colons between bytes allowed, optional \"SHA256:\" prefix)",
			    quoted(f[T_THUMB].val, buf, sizeof(buf)));
		else
			p->has_thumbprint = 1;
	}
	if (f[T_CA].val != NULL && (s = get_str(c, f[T_CA].val, "tls.ca_file")) != NULL) {
		char *full = path_join(c->confdir, s), *real;
		struct stat st;

		if (*s == '\0') {
			perr(c, f[T_CA].val, "tls.ca_file: empty path");
		} else if (stat(full, &st) != 0) {
			perr(c, f[T_CA].val, "tls.ca_file: cannot use %s: %s", s, strerror(errno));
		} else if (!S_ISREG(st.st_mode)) {
			perr(c, f[T_CA].val, "tls.ca_file: %s is not a regular file", s);
		} else if (access(full, R_OK) != 0) {
			perr(c, f[T_CA].val, "tls.ca_file: cannot read %s: %s", s, strerror(errno));
		} else if ((real = realpath(full, NULL)) == NULL) {
			perr(c, f[T_CA].val, "tls.ca_file: cannot resolve %s: %s", s, strerror(errno));
		} else {
			p->ca_file = real;
			p->ca_file_name = xstrdup(s);
		}
		free(full);
	}
	if (f[T_INSECURE].val != NULL && get_bool(c, f[T_INSECURE].val, "tls.insecure", &p->insecure) == 0 &&
	    !p->insecure)
		perr(c, f[T_INSECURE].val, "tls.insecure: only \"insecure: true\" has a meaning; "
		    "leave tls out to verify against the system's CAs");
}

static int
url_ok(const char *u)
{
	const unsigned char *p;

	if (strncmp(u, "https://", 8) != 0)
		return 0;
	if (u[8] == '\0' || u[8] == '/' || u[8] == ':' || u[8] == '?' || u[8] == '#')
		return 0;
	for (p = (const unsigned char *)u; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static void
parse_mounts(struct pctx *c, yaml_node_t *n, struct cfg_platform *p)
{
	yaml_node_pair_t *pr;
	size_t i;

	if (n->type != YAML_MAPPING_NODE) {
		type_err(c, n, "datastore_mounts", "a mapping of datastore name to mounted path");
		return;
	}
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = node_at(c, pr->key), *v = node_at(c, pr->value);
		const char *ds = get_str(c, k, "datastore_mounts: datastore name");
		char *path;

		if (ds == NULL)
			continue;
		if (*ds == '\0') {
			perr(c, k, "datastore_mounts: empty datastore name");
			continue;
		}
		for (i = 0; i < p->nmounts; i++)
			if (strcmp(p->mounts[i].datastore, ds) == 0)
				break;
		if (i < p->nmounts) {
			perr(c, k, "datastore_mounts: datastore \"%s\" is listed twice", p->mounts[i].datastore);
			continue;
		}
		if ((path = get_path(c, v, "datastore_mounts", 1)) == NULL)
			continue;
		p->mounts = xreallocarray(p->mounts, p->nmounts + 1, sizeof(*p->mounts));
		p->mounts[p->nmounts].datastore = xstrdup(ds);
		p->mounts[p->nmounts].path = path;
		p->nmounts++;
	}
}

static void
parse_platform(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_TYPE, F_URL, F_USER, F_PWFILE, F_PWENV, F_TLS, F_MOUNTS };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "name", 1, NULL, NULL },
		{ "type", 0, NULL, NULL },
		{ "url", 1, NULL, NULL },
		{ "username", 1, NULL, NULL },
		{ "password_file", 0, NULL, NULL },
		{ "password_env", 0, NULL, NULL },
		{ "tls", 0, NULL, NULL },
		{ "datastore_mounts", 0, NULL, NULL },
	};
	struct cfg_platform p;
	const char *s, *why;
	char buf[128];
	int before = c->nerr, sys;

	memset(&p, 0, sizeof(p));
	p.loc = loc_of(c, n);
	map_fields(c, n, "platform", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		p.name = get_name(c, f[F_NAME].val, "name");
		p.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_TYPE].val != NULL && (s = get_str(c, f[F_TYPE].val, "type")) != NULL &&
	    strcmp(s, "vsphere") != 0)
		perr(c, f[F_TYPE].val, "type: unsupported platform type %s (only vsphere)",
		    quoted(f[F_TYPE].val, buf, sizeof(buf)));
	p.type = xstrdup("vsphere");
	if (f[F_URL].val != NULL && (s = get_str(c, f[F_URL].val, "url")) != NULL) {
		if (!url_ok(s))
			perr(c, f[F_URL].val, "url: expected https://HOST[:PORT]/PATH, got %s",
			    describe(f[F_URL].val, buf, sizeof(buf)));
		else
			p.url = xstrdup(s);
	}
	if (f[F_USER].val != NULL && (s = get_str(c, f[F_USER].val, "username")) != NULL) {
		if (*s == '\0')
			perr(c, f[F_USER].val, "username: is empty");
		else
			p.username = xstrdup(s);
	}
	if (f[F_PWFILE].val != NULL && f[F_PWENV].val != NULL) {
		perr(c, f[F_PWENV].keynode, "give password_file or password_env, not both");
	} else if (f[F_PWFILE].val == NULL && f[F_PWENV].val == NULL) {
		perr(c, n, "missing required key \"password_file\" or \"password_env\" in platform");
	} else if (f[F_PWFILE].val != NULL) {
		if ((s = get_str(c, f[F_PWFILE].val, "password_file")) != NULL) {
			char *full = path_join(c->confdir, s);

			if (*s == '\0')
				perr(c, f[F_PWFILE].val, "password_file: empty path");
			else if (read_secret(full, &p.password, &why, &sys) != 0)
				perr(c, f[F_PWFILE].val, sys ? "password_file: cannot read %s: %s" :
				    "password_file: %s %s", s, why);
			else
				p.password_source = xasprintf("file:%s", s);
			free(full);
		}
	} else if ((s = get_str(c, f[F_PWENV].val, "password_env")) != NULL) {
		const char *v = *s ? getenv(s) : NULL;

		if (*s == '\0' || strchr(s, '=') != NULL)
			perr(c, f[F_PWENV].val, "password_env: %s is not a variable name",
			    quoted(f[F_PWENV].val, buf, sizeof(buf)));
		else if (v == NULL)
			perr(c, f[F_PWENV].val, "password_env: environment variable %s is not set", s);
		else if (*v == '\0')
			perr(c, f[F_PWENV].val, "password_env: environment variable %s is empty", s);
		else {
			p.password = xstrdup(v);
			p.password_source = xasprintf("env:%s", s);
		}
	}
	if (f[F_TLS].val != NULL)
		parse_tls(c, f[F_TLS].val, &p);
	if (f[F_MOUNTS].val != NULL)
		parse_mounts(c, f[F_MOUNTS].val, &p);
	if (c->nerr != before) {
		platform_free(&p);
		return;
	}
	out->platforms = xreallocarray(out->platforms, out->nplatforms + 1, sizeof(p));
	out->platforms[out->nplatforms++] = p;
}

static void
parse_node(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_REPO, F_TMP };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "name", 1, NULL, NULL },
		{ "repository", 1, NULL, NULL },
		{ "temp_dir", 1, NULL, NULL },
	};
	struct cfg_node nd;
	int before = c->nerr;

	memset(&nd, 0, sizeof(nd));
	nd.loc = loc_of(c, n);
	map_fields(c, n, "node", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		nd.name = get_name(c, f[F_NAME].val, "name");
		nd.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_REPO].val != NULL)
		nd.repository = get_path(c, f[F_REPO].val, "repository", 0);
	if (f[F_TMP].val != NULL)
		nd.temp_dir = get_path(c, f[F_TMP].val, "temp_dir", 0);
	if (c->nerr != before) {
		node_free(&nd);
		return;
	}
	out->nodes = xreallocarray(out->nodes, out->nnodes + 1, sizeof(nd));
	out->nodes[out->nnodes++] = nd;
}

static void
parse_template(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_OPTIONS, F_BW, F_SCHED, F_HIST };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "name", 1, NULL, NULL },
		{ "options", 0, NULL, NULL },
		{ "bandwidth", 0, NULL, NULL },
		{ "schedule", 0, NULL, NULL },
		{ "keep_history", 0, NULL, NULL },
	};
	struct cfg_template t;
	int before = c->nerr;

	memset(&t, 0, sizeof(t));
	t.loc = loc_of(c, n);
	map_fields(c, n, "template", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		t.name = get_name(c, f[F_NAME].val, "name");
		t.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_OPTIONS].val != NULL)
		parse_options(c, f[F_OPTIONS].val, CFG_TEMPLATE, &t.options);
	if (f[F_BW].val != NULL) {
		parse_bandwidth(c, f[F_BW].val, &t.windows, &t.nwindows);
		t.windows_set = 1;
	}
	if (f[F_SCHED].val != NULL)
		parse_schedule(c, f[F_SCHED].val, SCTX_TEMPLATE, &t.schedule);
	if (f[F_HIST].val != NULL)
		get_int(c, f[F_HIST].val, "keep_history", 1, HISTORY_MAX, &t.keep_history);
	if (c->nerr != before) {
		template_free(&t);
		return;
	}
	out->templates = xreallocarray(out->templates, out->ntemplates + 1, sizeof(t));
	out->templates[out->ntemplates++] = t;
}

/* VM names become a directory in temp_dir (temp_dir/RULE/VM). */
static int
vm_name_ok(const char *s)
{
	return file_name_is_safe(s) && strlen(s) <= VM_NAME_MAX_LEN;
}

static void
parse_source(struct pctx *c, yaml_node_t *node, struct cfg_rule *r)
{
	struct field f[] = { { "platform", 1, NULL, NULL }, { "vms", 1, NULL, NULL } };
	yaml_node_item_t *it;
	size_t i, n;
	char buf[128];

	if (map_fields(c, node, "source", f, ARRAY_LEN(f)) != 0)
		return;
	if (f[0].val != NULL) {
		r->source_platform = get_name(c, f[0].val, "source.platform");
		r->locs.source_platform = loc_of(c, f[0].val);
	}
	if (f[1].val == NULL)
		return;
	if (f[1].val->type != YAML_SEQUENCE_NODE) {
		type_err(c, f[1].val, "source.vms", "a list of VM names");
		return;
	}
	if (f[1].val->data.sequence.items.start == f[1].val->data.sequence.items.top) {
		perr(c, f[1].val, "source.vms: needs at least one VM");
		return;
	}
	if (f[1].val->data.sequence.items.top - f[1].val->data.sequence.items.start > VMS_PER_RULE_MAX) {
		perr(c, f[1].val, "source.vms: too many VMs (at most %d per rule)", VMS_PER_RULE_MAX);
		return;
	}
	n = (size_t)(f[1].val->data.sequence.items.top - f[1].val->data.sequence.items.start);
	r->vms = xcalloc(n, sizeof(*r->vms));
	r->locs.vms = xcalloc(n, sizeof(*r->locs.vms));
	for (it = f[1].val->data.sequence.items.start; it < f[1].val->data.sequence.items.top; it++) {
		yaml_node_t *vn = node_at(c, *it);
		const char *s = get_str(c, vn, "source.vms");

		if (s == NULL)
			continue;
		if (!vm_name_ok(s)) {
			perr(c, vn, "source.vms: %s cannot be used as a VM name here (no \"/\" or "
			    "control characters, not \".\" or \"..\", at most %d bytes)",
			    quoted(vn, buf, sizeof(buf)), VM_NAME_MAX_LEN);
			continue;
		}
		for (i = 0; i < r->nvms; i++)
			if (strcmp(r->vms[i], s) == 0)
				break;
		if (i < r->nvms) {
			perr(c, vn, "source.vms: %s is listed twice", quoted(vn, buf, sizeof(buf)));
			continue;
		}
		r->vms[r->nvms] = xstrdup(s);
		r->locs.vms[r->nvms] = loc_of(c, vn);
		r->nvms++;
	}
}

static void
parse_target(struct pctx *c, yaml_node_t *n, struct cfg_rule *r)
{
	struct field f[] = {
		{ "platform", 1, NULL, NULL },
		{ "datacenter", 1, NULL, NULL },
		{ "host", 1, NULL, NULL },
		{ "datastore", 1, NULL, NULL },
	};
	char **dst[] = { NULL, &r->target.datacenter, &r->target.host, &r->target.datastore };
	const char *labels[] = { NULL, "target.datacenter", "target.host", "target.datastore" };
	const char *s;
	size_t i;

	if (map_fields(c, n, "target", f, ARRAY_LEN(f)) != 0)
		return;
	if (f[0].val != NULL) {
		r->target.platform = get_name(c, f[0].val, "target.platform");
		r->locs.target_platform = loc_of(c, f[0].val);
	}
	for (i = 1; i < ARRAY_LEN(f); i++) {
		if (f[i].val == NULL || (s = get_str(c, f[i].val, labels[i])) == NULL)
			continue;
		if (*s == '\0')
			perr(c, f[i].val, "%s: is empty", labels[i]);
		else
			*dst[i] = xstrdup(s);
	}
}

static void rule_apply(struct cfg_rule *r, const struct cfg_template *t, const struct cfg_node *nd);
static uint64_t rule_digest(const struct cfg_rule *r);
static int rule_check_effective(struct cfg_rule *r, const struct cfg_template *t,
    struct cfg_errors *errs, const char *suffix);

static void
parse_rule(struct pctx *c, yaml_node_t *n, enum cfg_kind kind, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_SOURCE, F_NODE, F_TARGET, F_TEMPLATE, F_OPTIONS, F_BW, F_SCHED,
		F_HIST, F_RETENTION, F_REPO };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "name", 1, NULL, NULL },
		{ "source", 1, NULL, NULL },
		{ "node", 1, NULL, NULL },
		{ "target", kind != CFG_BACKUP, NULL, NULL },
		{ "template", 0, NULL, NULL },
		{ "options", 0, NULL, NULL },
		{ "bandwidth", 0, NULL, NULL },
		{ "schedule", 0, NULL, NULL },
		{ "keep_history", 0, NULL, NULL },
		{ "retention", 0, NULL, NULL },
		{ "repository", 0, NULL, NULL },
	};
	char where[32];
	struct cfg_rule r;
	int before = c->nerr;

	/* keys that do not belong to this kind are unknown keys */
	if (kind == CFG_BACKUP) {
		f[F_TARGET].key = NULL;
		f[F_HIST].key = NULL;
	}
	if (kind != CFG_BACKUP) {
		f[F_RETENTION].key = NULL;
		f[F_REPO].key = NULL;
	}
	if (kind == CFG_MIGRATION) {
		f[F_SCHED].key = NULL;
		f[F_HIST].key = NULL;
	}
	snprintf(where, sizeof(where), "%s rule", cfg_kind_name(kind));

	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.loc = loc_of(c, n);
	map_fields(c, n, where, f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		r.name = get_name(c, f[F_NAME].val, "name");
		r.locs.name = loc_of(c, f[F_NAME].val);
	}
	if (f[F_SOURCE].val != NULL)
		parse_source(c, f[F_SOURCE].val, &r);
	if (f[F_NODE].val != NULL) {
		r.node = get_name(c, f[F_NODE].val, "node");
		r.locs.node = loc_of(c, f[F_NODE].val);
	}
	if (f[F_TARGET].val != NULL)
		parse_target(c, f[F_TARGET].val, &r);
	if (f[F_TEMPLATE].val != NULL) {
		r.template_name = get_name(c, f[F_TEMPLATE].val, "template");
		r.locs.template_name = loc_of(c, f[F_TEMPLATE].val);
	}
	if (f[F_OPTIONS].val != NULL)
		parse_options(c, f[F_OPTIONS].val, kind, &r.options);
	if (f[F_BW].val != NULL) {
		parse_bandwidth(c, f[F_BW].val, &r.windows, &r.nwindows);
		r.written |= CFG_W_WINDOWS;
	}
	if (f[F_SCHED].val != NULL) {
		parse_schedule(c, f[F_SCHED].val, kind == CFG_BACKUP ? SCTX_BACKUP : SCTX_REPLICATION,
		    &r.schedule);
		r.written |= CFG_W_SCHEDULE;
	}
	if (f[F_HIST].val != NULL) {
		get_int(c, f[F_HIST].val, "keep_history", 1, HISTORY_MAX, &r.keep_history);
		r.written |= CFG_W_KEEP_HISTORY;
	}
	if (f[F_RETENTION].val != NULL) {
		get_int(c, f[F_RETENTION].val, "retention", 1, RETENTION_MAX, &r.retention);
		r.written |= CFG_W_RETENTION;
	}
	if (f[F_REPO].val != NULL) {
		r.repository = get_path(c, f[F_REPO].val, "repository", 0);
		r.written |= CFG_W_REPOSITORY;
	}
	if (c->nerr != before) {
		rule_free(&r);
		return;
	}
	/* Effective values without a template; a rule naming one is completed
	 * (and checked) by the loader once every file is known. */
	rule_apply(&r, NULL, NULL);
	if (r.template_name == NULL) {
		int nbefore = (int)c->errs->n;

		rule_check_effective(&r, NULL, c->errs, NULL);
		if ((int)c->errs->n != nbefore) {
			c->nerr += (int)c->errs->n - nbefore;
			rule_free(&r);
			return;
		}
	}
	out->rules = xreallocarray(out->rules, out->nrules + 1, sizeof(r));
	out->rules[out->nrules++] = r;
}

static void
parse_document(struct pctx *c, yaml_node_t *root, struct cfg_file *out)
{
	static const enum cfg_kind kinds[] = { CFG_SYSTEM, CFG_PLATFORM, CFG_NODE, CFG_TEMPLATE,
		CFG_MIGRATION, CFG_REPLICATION, CFG_BACKUP };
	yaml_node_pair_t *pr;
	yaml_node_t *kv = NULL;
	const char *ks;
	char buf[128];
	size_t i;

	if (root->type == YAML_SCALAR_NODE && root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    root->data.scalar.length == 0)
		return;   /* an empty document, e.g. after a trailing "---" */
	if (root->type != YAML_MAPPING_NODE) {
		perr(c, root, "a document must be a mapping with a kind, got %s",
		    describe(root, buf, sizeof(buf)));
		return;
	}
	for (pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = node_at(c, pr->key);

		if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "kind") == 0) {
			kv = node_at(c, pr->value);
			break;
		}
	}
	if (kv == NULL) {
		perr(c, root, "missing required key \"kind\" (system, platform, node, template, "
		    "migration, replication or backup)");
		return;
	}
	if ((ks = get_str(c, kv, "kind")) == NULL)
		return;
	for (i = 0; i < ARRAY_LEN(kinds); i++)
		if (strcmp(ks, kind_names[kinds[i]]) == 0)
			break;
	if (i == ARRAY_LEN(kinds)) {
		perr(c, kv, "unknown kind %s (system, platform, node, template, migration, "
		    "replication or backup)", quoted(kv, buf, sizeof(buf)));
		return;
	}
	switch (kinds[i]) {
	case CFG_SYSTEM: parse_system(c, root, out); break;
	case CFG_PLATFORM: parse_platform(c, root, out); break;
	case CFG_NODE: parse_node(c, root, out); break;
	case CFG_TEMPLATE: parse_template(c, root, out); break;
	default: parse_rule(c, root, kinds[i], out); break;
	}
}

int
cfg_parse_buffer(const char *path, const char *text, size_t len, const char *confdir,
    struct cfg_file *out, struct cfg_errors *errs)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	struct pctx c;

	memset(out, 0, sizeof(*out));
	out->path = xstrdup(path);
	memset(&c, 0, sizeof(c));
	c.path = out->path;
	c.confdir = confdir;
	c.errs = errs;
	c.doc = &doc;

	if (!yaml_parser_initialize(&parser))
		fatal("out of memory initializing the YAML parser");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	for (;;) {
		yaml_node_t *root;

		if (!yaml_parser_load(&parser, &doc)) {
			struct cfg_loc l = { out->path, (int)parser.problem_mark.line + 1,
				(int)parser.problem_mark.column + 1 };
			const char *problem = parser.problem ? parser.problem : "cannot parse YAML";

			if (parser.error == YAML_MEMORY_ERROR)
				fatal("out of memory parsing %s", path);
			if (parser.error == YAML_READER_ERROR) {
				/* the reader only knows the byte offset; count lines ourselves */
				size_t i, off = parser.problem_offset < len ? parser.problem_offset : len;

				l.line = 1;
				l.col = 1;
				for (i = 0; i < off; i++) {
					if (text[i] == '\n') {
						l.line++;
						l.col = 1;
					} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
						l.col++;
					}
				}
				cfg_errors_add(errs, &l, "%s", problem);
			} else if (parser.context != NULL) {
				cfg_errors_add(errs, &l, "%s (%s that starts at line %d)", problem,
				    parser.context, (int)parser.context_mark.line + 1);
			} else {
				cfg_errors_add(errs, &l, "%s", problem);
			}
			c.nerr++;
			break;
		}
		root = yaml_document_get_root_node(&doc);
		if (root == NULL) {
			yaml_document_delete(&doc);
			break;
		}
		parse_document(&c, root, out);
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	if (c.nerr != 0) {
		cfg_file_free(out);
		return -1;
	}
	return 0;
}

/* ---- effective rules: templates, defaults, digest -------------------- */

static void
rule_apply(struct cfg_rule *r, const struct cfg_template *t, const struct cfg_node *nd)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(optdefs); i++) {
		const struct optdef *d = &optdefs[i];

		if (r->options.set & d->bit)
			continue;
		if (t != NULL && (t->options.set & d->bit) && (d->kinds & (1u << r->kind)))
			opt_put(&r->options, d->bit, opt_get(&t->options, d->bit));
		else
			opt_put(&r->options, d->bit, (d->kinds & (1u << r->kind)) ? d->def : 0);
	}
	if (!(r->written & CFG_W_WINDOWS)) {
		free(r->windows);
		r->windows = NULL;
		r->nwindows = 0;
		if (t != NULL && t->windows_set && t->nwindows) {
			r->windows = xcalloc(t->nwindows, sizeof(*r->windows));
			memcpy(r->windows, t->windows, t->nwindows * sizeof(*r->windows));
			r->nwindows = t->nwindows;
		}
	}
	if (!(r->written & CFG_W_SCHEDULE)) {
		schedule_free(&r->schedule);
		if (t != NULL && t->schedule.set && r->kind != CFG_MIGRATION)
			copy_schedule(&r->schedule, &t->schedule);
	}
	if (r->kind == CFG_REPLICATION && !(r->written & CFG_W_KEEP_HISTORY))
		r->keep_history = (t != NULL && t->keep_history) ? t->keep_history : DEF_KEEP_HISTORY;
	if (r->kind == CFG_BACKUP && !(r->written & CFG_W_RETENTION))
		r->retention = DEF_RETENTION;
	if (r->kind == CFG_BACKUP && !(r->written & CFG_W_REPOSITORY)) {
		free(r->repository);
		r->repository = (nd != NULL && nd->repository) ? xstrdup(nd->repository) : NULL;
	}
	r->digest = rule_digest(r);
}

/* Checks that need the template applied.  Returns the number of errors. */
static int
rule_check_effective(struct cfg_rule *r, const struct cfg_template *t, struct cfg_errors *errs,
    const char *suffix)
{
	int n = 0;

	if (r->kind == CFG_REPLICATION && r->schedule.set &&
	    (r->schedule.nentries != 1 || r->schedule.entries[0].type == SCHED_ONCE)) {
		struct cfg_loc l = t ? r->locs.template_name : r->loc;

		cfg_errors_add(errs, &l, "replication rule \"%s\": the schedule of template \"%s\" "
		    "(%s:%d) is not a single periodic entry, which replication needs%s",
		    r->name, t ? t->name : "?", t ? t->loc.file : "?", t ? t->loc.line : 0,
		    suffix ? suffix : "");
		n++;
	}
	if (r->kind == CFG_REPLICATION && r->options.auto_sync && !r->schedule.set) {
		cfg_errors_add(errs, &r->loc, "replication rule \"%s\" needs a schedule "
		    "(or options.auto_sync: false)%s", r->name, suffix ? suffix : "");
		n++;
	}
	if (r->kind == CFG_BACKUP && !r->schedule.set) {
		cfg_errors_add(errs, &r->loc, "backup rule \"%s\" needs a schedule%s", r->name,
		    suffix ? suffix : "");
		n++;
	}
	return n;
}

/* FNV-1a, 64 bit.  Every field is followed by a separator byte so that
 * ("ab","c") and ("a","bc") hash differently. */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static void
h_bytes(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= FNV_PRIME;
	}
}

static void
h_str(uint64_t *h, const char *s)
{
	static const unsigned char sep = 0xff;   /* never in UTF-8 */

	if (s != NULL)
		h_bytes(h, s, strlen(s));
	else
		h_bytes(h, "\xfe", 1);
	h_bytes(h, &sep, 1);
}

static void
h_u64(uint64_t *h, uint64_t v)
{
	uint8_t b[8];

	put_be64(b, v);
	h_bytes(h, b, sizeof(b));
}

static int
cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The civil time a SCHED_ONCE entry was written as; stable whatever the
 * machine's time zone (unlike the unix time). */
static void
once_civil(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (localtime_r(&tt, &tm) == NULL) {
		snprintf(out, outlen, "@%lld", (long long)t);
		return;
	}
	strftime(out, outlen, "%Y-%m-%d %H:%M", &tm);
}

static uint64_t
rule_digest(const struct cfg_rule *r)
{
	uint64_t h = FNV_OFFSET;
	char **vms;
	char buf[64];
	size_t i, k;

	h_u64(&h, (uint64_t)r->kind);
	h_str(&h, r->name);
	h_str(&h, r->source_platform);
	/* the order VMs are listed in does not change what the rule does */
	vms = xcalloc(r->nvms ? r->nvms : 1, sizeof(*vms));
	if (r->nvms) {
		memcpy(vms, r->vms, r->nvms * sizeof(*vms));
		qsort(vms, r->nvms, sizeof(*vms), cmp_str_ptr);
	}
	h_u64(&h, r->nvms);
	for (i = 0; i < r->nvms; i++)
		h_str(&h, vms[i]);
	free(vms);
	h_str(&h, r->node);
	h_str(&h, r->target.platform);
	h_str(&h, r->target.datacenter);
	h_str(&h, r->target.host);
	h_str(&h, r->target.datastore);
	h_str(&h, r->repository);
	for (i = 0; i < ARRAY_LEN(optdefs); i++)
		h_u64(&h, (uint64_t)opt_get(&r->options, optdefs[i].bit));
	h_u64(&h, r->nwindows);
	for (i = 0; i < r->nwindows; i++) {
		h_u64(&h, r->windows[i].days);
		h_u64(&h, (uint64_t)r->windows[i].from_min);
		h_u64(&h, (uint64_t)r->windows[i].to_min);
		h_u64(&h, r->windows[i].limit_bps);
	}
	h_u64(&h, (uint64_t)r->schedule.set);
	h_u64(&h, r->schedule.nentries);
	for (i = 0; i < r->schedule.nentries; i++) {
		const struct cfg_sched_entry *e = &r->schedule.entries[i];

		h_u64(&h, (uint64_t)e->type);
		h_u64(&h, (uint64_t)e->mode);
		h_u64(&h, (uint64_t)e->interval_min);
		h_u64(&h, e->days);
		h_u64(&h, (uint64_t)e->day);
		h_u64(&h, e->ntimes);
		for (k = 0; k < e->ntimes; k++)
			h_u64(&h, (uint64_t)e->times[k]);
		if (e->type == SCHED_ONCE) {
			once_civil(e->once_at, buf, sizeof(buf));
			h_str(&h, buf);
		}
	}
	h_u64(&h, (uint64_t)r->keep_history);
	h_u64(&h, (uint64_t)r->retention);
	return h;
}

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
	errors_vadd(&x->local, loc, NULL, fmt, ap);
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

static const struct cfg_template *
find_template(const struct config *c, const char *name)
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
		const struct cfg_template *q = find_template(acc, t->name);

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
		if (r->template_name != NULL && (t = find_template(acc, r->template_name)) == NULL)
			xadd(x, &r->locs.template_name, "unknown template \"%s\"", r->template_name);
		if (x->local.n != before)
			continue;
		rule_apply(r, t, nd);
		rule_check_effective(r, t, &x->local, NULL);
	}
	return (int)x->local.n;
}

/* One pass over the files being tried.  Returns the index of the first
 * file with an error (its errors are reported), or -1 when all agree. */
static ssize_t
check_round(struct slot *s, size_t n, struct config *acc, const struct cfg_system **sys,
    struct cfg_errors *errs, size_t first)
{
	struct xerr x;
	size_t i;

	config_reset(acc);
	*sys = NULL;
	memset(&x, 0, sizeof(x));
	x.errs = errs;
	x.first = first;
	for (i = 0; i < n; i++) {
		if (s[i].cur == NULL)
			continue;
		x.suffix = s[i].cur != s[i].newf ? OLD_NOTE : NULL;
		if (check_definitions(s[i].cur, acc, sys, &x) != 0) {
			xflush(&x);
			return (ssize_t)i;
		}
	}
	for (i = 0; i < n; i++) {
		if (s[i].cur == NULL)
			continue;
		x.suffix = s[i].cur != s[i].newf ? OLD_NOTE : NULL;
		if (check_references(s[i].cur, acc, &x) != 0) {
			xflush(&x);
			return (ssize_t)i;
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

static void
system_defaults(struct cfg_system *s)
{
	memset(s, 0, sizeof(*s));
	s->max_tasks = DEF_MAX_TASKS;
	s->max_tasks_per_host = DEF_MAX_TASKS_PER_HOST;
	s->transfer_buffer = DEF_TRANSFER_BUFFER;
	s->host_buffer_cap = DEF_HOST_BUFFER_CAP;
}

void
cfg_loader_init(struct cfg_loader *ld, const char *dir)
{
	memset(ld, 0, sizeof(*ld));
	ld->dir = xstrdup(dir);
	system_defaults(&ld->cur.system);
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

	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		*why = strerror(errno);
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		close(fd);
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

		s[i].path = path_join(ld->dir, names[i]);
		for (k = 0; k < ld->ngood; k++)
			if (ld->good[k] != NULL && strcmp(ld->good[k]->path, s[i].path) == 0)
				s[i].old = ld->good[k];
		if (read_file(s[i].path, &text, &len, &why) != 0) {
			struct cfg_loc l = { s[i].path, 0, 0 };

			cfg_errors_add(errs, &l, "cannot read: %s", why);
		} else {
			struct cfg_file *f = xcalloc(1, sizeof(*f));

			if (cfg_parse_buffer(s[i].path, text, len, ld->dir, f, errs) == 0)
				s[i].newf = f;
			else
				free(f);
			free(text);
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
		if (keep != NULL)
			PUSH(good, ngood, keep);
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
		system_defaults(&ld->cur.system);
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

/* ---- dump ------------------------------------------------------------ */

static void
dump_days(FILE *out, uint8_t days)
{
	static const char *const dn[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	int i, first = 1;

	for (i = 0; i < 7; i++) {
		if (days & (1u << i)) {
			fprintf(out, "%s%s", first ? "" : ",", dn[i]);
			first = 0;
		}
	}
}

static void
dump_hhmm(FILE *out, int m)
{
	fprintf(out, "%02d:%02d", m / 60, m % 60);
}

static void
dump_windows(FILE *out, const struct cfg_window *w, size_t n, const char *origin)
{
	char sz[32];
	size_t i;

	if (n == 0) {
		fprintf(out, "  bandwidth: unlimited%s\n", origin);
		return;
	}
	fprintf(out, "  bandwidth:%s\n", origin);
	for (i = 0; i < n; i++) {
		fputs("    - ", out);
		dump_days(out, w[i].days);
		fputc(' ', out);
		dump_hhmm(out, w[i].from_min);
		fputc('-', out);
		dump_hhmm(out, w[i].to_min);
		if (w[i].limit_bps == 0) {
			fputs(" paused (limit 0)\n", out);
		} else {
			units_format_size(w[i].limit_bps, sz, sizeof(sz));
			fprintf(out, " limit %llu B/s (%s/s)\n", (unsigned long long)w[i].limit_bps, sz);
		}
	}
}

static void
dump_schedule(FILE *out, const struct cfg_schedule *s, int with_mode, const char *origin)
{
	char buf[64];
	size_t i, k;

	if (!s->set) {
		fprintf(out, "  schedule: none%s\n", origin);
		return;
	}
	fprintf(out, "  schedule:%s\n", origin);
	for (i = 0; i < s->nentries; i++) {
		const struct cfg_sched_entry *e = &s->entries[i];

		fputs("    - ", out);
		if (with_mode)
			fprintf(out, "%s ", mode_names[e->mode]);
		switch (e->type) {
		case SCHED_ONCE:
			once_civil(e->once_at, buf, sizeof(buf));
			fprintf(out, "once at %s\n", buf);
			continue;
		case SCHED_HOURLY:
			fputs("hourly every ", out);
			if (e->interval_min >= 60)
				fprintf(out, "%dh", e->interval_min / 60);
			if (e->interval_min % 60)
				fprintf(out, "%dm", e->interval_min % 60);
			fputs(" from", out);
			break;
		case SCHED_DAILY:
			fputs("daily at", out);
			break;
		case SCHED_WEEKLY:
			fputs("weekly on ", out);
			dump_days(out, e->days);
			fputs(" at", out);
			break;
		case SCHED_MONTHLY:
			fprintf(out, "monthly on day %d at", e->day);
			break;
		default:
			fputs("?", out);
			break;
		}
		for (k = 0; k < e->ntimes; k++) {
			fputs(k ? ", " : " ", out);
			dump_hhmm(out, e->times[k]);
		}
		fputc('\n', out);
	}
}

static void
dump_options(FILE *out, const struct cfg_options *o, unsigned kinds, uint32_t written,
    const struct cfg_template *t)
{
	size_t i;

	fputs("  options:\n", out);
	for (i = 0; i < ARRAY_LEN(optdefs); i++) {
		const struct optdef *d = &optdefs[i];
		const char *origin = "";
		int v = opt_get(o, d->bit);

		if (!(d->kinds & kinds))
			continue;
		if (!(written & d->bit))
			origin = (t != NULL && (t->options.set & d->bit)) ? " (template)" : " (default)";
		if (d->bit == CFG_OPT_CUTOVER)
			fprintf(out, "    %s: %s%s\n", d->name, cutover_names[v], origin);
		else
			fprintf(out, "    %s: %s%s\n", d->name, v ? "true" : "false", origin);
	}
}

static const char *
origin_of(const struct cfg_rule *r, uint32_t bit, int from_template)
{
	if (r->written & bit)
		return "";
	return from_template ? " (template)" : " (default)";
}

void
config_dump(const struct config *c, FILE *out)
{
	char a[32], tp[THUMBPRINT_STRLEN];
	size_t i, k;

	fputs("system:", out);
	if (c->system.present)
		fprintf(out, " # %s:%d\n", c->system.loc.file, c->system.loc.line);
	else
		fputs(" # defaults\n", out);
	fprintf(out, "  max_tasks: %d\n", c->system.max_tasks);
	fprintf(out, "  max_tasks_per_host: %d\n", c->system.max_tasks_per_host);
	units_format_size(c->system.transfer_buffer, a, sizeof(a));
	fprintf(out, "  transfer_buffer: %llu (%s)\n", (unsigned long long)c->system.transfer_buffer, a);
	units_format_size(c->system.host_buffer_cap, a, sizeof(a));
	fprintf(out, "  host_buffer_cap: %llu (%s)\n", (unsigned long long)c->system.host_buffer_cap, a);

	for (i = 0; i < c->nplatforms; i++) {
		const struct cfg_platform *p = c->platforms[i];

		fprintf(out, "\nplatform %s: # %s:%d\n", p->name, p->loc.file, p->loc.line);
		fprintf(out, "  type: %s\n", p->type);
		fprintf(out, "  url: %s\n", p->url);
		fprintf(out, "  username: %s\n", p->username);
		fprintf(out, "  password_source: %s\n", p->password_source);
		if (p->has_thumbprint) {
			units_format_thumbprint(p->thumbprint, tp);
			fprintf(out, "  tls: thumbprint %s\n", tp);
		} else if (p->ca_file_name != NULL) {
			fprintf(out, "  tls: ca_file %s\n", p->ca_file_name);
		} else if (p->insecure) {
			fputs("  tls: insecure (certificate not verified)\n", out);
		} else {
			fputs("  tls: system CAs\n", out);
		}
		if (p->nmounts == 0) {
			fputs("  datastore_mounts: none\n", out);
		} else {
			fputs("  datastore_mounts:\n", out);
			for (k = 0; k < p->nmounts; k++)
				fprintf(out, "    %s: %s\n", p->mounts[k].datastore, p->mounts[k].path);
		}
	}
	for (i = 0; i < c->nnodes; i++) {
		const struct cfg_node *nd = c->nodes[i];

		fprintf(out, "\nnode %s: # %s:%d\n", nd->name, nd->loc.file, nd->loc.line);
		fprintf(out, "  repository: %s\n", nd->repository);
		fprintf(out, "  temp_dir: %s\n", nd->temp_dir);
	}
	for (i = 0; i < c->ntemplates; i++) {
		const struct cfg_template *t = c->templates[i];

		fprintf(out, "\ntemplate %s: # %s:%d\n", t->name, t->loc.file, t->loc.line);
		fputs("  options:", out);
		if (t->options.set == 0)
			fputs(" none", out);
		fputc('\n', out);
		for (k = 0; k < ARRAY_LEN(optdefs); k++) {
			const struct optdef *d = &optdefs[k];
			int v = opt_get(&t->options, d->bit);

			if (!(t->options.set & d->bit))
				continue;
			if (d->bit == CFG_OPT_CUTOVER)
				fprintf(out, "    %s: %s\n", d->name, cutover_names[v]);
			else
				fprintf(out, "    %s: %s\n", d->name, v ? "true" : "false");
		}
		if (t->windows_set)
			dump_windows(out, t->windows, t->nwindows, "");
		else
			fputs("  bandwidth: not set\n", out);
		if (t->schedule.set)
			dump_schedule(out, &t->schedule, 1, "");
		else
			fputs("  schedule: not set\n", out);
		if (t->keep_history)
			fprintf(out, "  keep_history: %d\n", t->keep_history);
		else
			fputs("  keep_history: not set\n", out);
	}
	for (i = 0; i < c->nrules; i++) {
		const struct cfg_rule *r = c->rules[i];
		const struct cfg_template *t = r->template_name ? find_template(c, r->template_name) : NULL;

		fprintf(out, "\n%s %s: # %s:%d\n", cfg_kind_name(r->kind), r->name, r->loc.file,
		    r->loc.line);
		fprintf(out, "  source: %s\n", r->source_platform);
		fputs("  vms:", out);
		for (k = 0; k < r->nvms; k++)
			fprintf(out, "%s%s", k ? ", " : " ", r->vms[k]);
		fputc('\n', out);
		fprintf(out, "  node: %s\n", r->node);
		if (r->kind != CFG_BACKUP) {
			fprintf(out, "  target: %s datacenter=%s host=%s datastore=%s\n", r->target.platform,
			    r->target.datacenter, r->target.host, r->target.datastore);
		} else {
			fprintf(out, "  repository: %s%s\n", r->repository ? r->repository : "-",
			    (r->written & CFG_W_REPOSITORY) ? "" : " (node)");
		}
		fprintf(out, "  template: %s\n", r->template_name ? r->template_name : "none");
		dump_options(out, &r->options, 1u << r->kind, r->options.set, t);
		dump_windows(out, r->windows, r->nwindows,
		    origin_of(r, CFG_W_WINDOWS, t && t->windows_set));
		if (r->kind != CFG_MIGRATION)
			dump_schedule(out, &r->schedule, r->kind == CFG_BACKUP,
			    origin_of(r, CFG_W_SCHEDULE, t && t->schedule.set));
		if (r->kind == CFG_REPLICATION)
			fprintf(out, "  keep_history: %d%s\n", r->keep_history,
			    origin_of(r, CFG_W_KEEP_HISTORY, t && t->keep_history));
		if (r->kind == CFG_BACKUP)
			fprintf(out, "  retention: %d%s\n", r->retention, origin_of(r, CFG_W_RETENTION, 0));
		fprintf(out, "  digest: %016llx\n", (unsigned long long)r->digest);
	}
}
