/* Configuration loader, first stage: one file's text → plain structs.
 *
 * cfg_parse_buffer() checks one file on its own: syntax, keys, types,
 * units, ranges and secrets.  The cross-file checks come later
 * (config_check.c); options, windows and schedules are parsed by
 * config_rules.c.
 *
 * The YAML is read with libyaml's document API so that every node carries
 * its position; the loader only ever descends along the schema, so aliases
 * (which libyaml turns into shared nodes) cannot make it loop. */
#include "engine/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

#define NAME_MAX_LEN 64
#define VM_NAME_MAX_LEN 255
#define TARGET_NAME_MAX_LEN 80   /* vSphere's longest VM, folder and pool name */
#define VMS_PER_RULE_MAX 10000   /* the checks are quadratic; the engine aims at ~1000 jobs */
#define HISTORY_MAX 28 /* a vSphere snapshot chain holds at most 32 */
#define RETENTION_MAX 64
#define MAX_TASKS_LIMIT 1024
#define TRANSFER_BUFFER_MIN (64u << 10)
#define TRANSFER_BUFFER_MAX (64u << 20)
#define TRANSFER_BUFFER_ALIGN (4u << 10)

#define DEF_MAX_TASKS 4
#define DEF_MAX_TASKS_PER_HOST 4
#define DEF_TRANSFER_BUFFER (4ull << 20)
#define DEF_HOST_BUFFER_CAP (32ull << 20)

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

void
cfg_errors_vadd(struct cfg_errors *e, const struct cfg_loc *loc, const char *suffix, const char *fmt,
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
	cfg_errors_vadd(e, loc, NULL, fmt, ap);
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

void
cfg_schedule_free(struct cfg_schedule *s)
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
	free(n->appliance_vm);
	free(n->appliance_uuid);
	free(n->hotadd_devices);
	memset(n, 0, sizeof(*n));
}

static void
template_free(struct cfg_template *t)
{
	free(t->name);
	free(t->windows);
	cfg_schedule_free(&t->schedule);
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
	free(r->target.name);
	free(r->target.folder);
	free(r->target.resource_pool);
	free(r->repository);
	free(r->key_file);
	free(r->template_name);
	free(r->windows);
	cfg_schedule_free(&r->schedule);
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
	cfg_http_free(&f->system.http);
	free(f->path);
	free(f->text);
	memset(f, 0, sizeof(*f));
}

/* ---- parse context and node helpers ---------------------------------- */

static struct cfg_loc
loc_of(const struct pctx *c, const yaml_node_t *n)
{
	struct cfg_loc l;

	l.file = c->path;
	l.line = (int)n->start_mark.line + 1;
	l.col = (int)n->start_mark.column + 1;
	return l;
}

void
cfg_perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	struct cfg_loc l = loc_of(c, n);
	va_list ap;

	va_start(ap, fmt);
	cfg_errors_vadd(c->errs, &l, NULL, fmt, ap);
	va_end(ap);
	c->nerr++;
}

yaml_node_t *
cfg_node_at(struct pctx *c, int idx)
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
const char *
cfg_describe(const yaml_node_t *n, char *buf, size_t buflen)
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
const char *
cfg_quoted(const yaml_node_t *n, char *buf, size_t buflen)
{
	char v[96];

	if (n->type != YAML_SCALAR_NODE)
		return cfg_describe(n, buf, buflen);
	show_value((const char *)n->data.scalar.value, n->data.scalar.length, v, sizeof(v));
	snprintf(buf, buflen, "\"%s\"", v);
	return buf;
}

void
cfg_type_err(struct pctx *c, const yaml_node_t *n, const char *label, const char *expected)
{
	char buf[128];

	cfg_perr(c, n, "%s: expected %s, got %s", label, expected, cfg_describe(n, buf, sizeof(buf)));
}

/* A scalar string value (any quoting style), not null, without NUL bytes. */
const char *
cfg_get_str(struct pctx *c, yaml_node_t *n, const char *label)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		cfg_type_err(c, n, label, "a string");
		return NULL;
	}
	if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL) {
		cfg_perr(c, n, "%s: contains a NUL character", label);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

int
cfg_get_int(struct pctx *c, yaml_node_t *n, const char *label, int min, int max, int *out)
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
		cfg_perr(c, n, "%s must be between %d and %d, got %lld", label, min, max, x);
		return -1;
	}
	*out = (int)x;
	return 0;
bad:
	cfg_type_err(c, n, label, "an integer");
	return -1;
}

int
cfg_get_bool(struct pctx *c, yaml_node_t *n, const char *label, int *out)
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
	cfg_type_err(c, n, label, "true or false");
	return -1;
}

/* A string value read by parse (units_parse_size, units_parse_rate),
 * or an error naming the label, the value and what it should be. */
static int
get_amount(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out,
    int (*parse)(const char *, uint64_t *), const char *expected)
{
	const char *v = cfg_get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if (parse(v, out) != 0) {
		cfg_perr(c, n, "%s: %s is not %s", label, cfg_quoted(n, buf, sizeof(buf)), expected);
		return -1;
	}
	return 0;
}

static int
get_size(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out)
{
	return get_amount(c, n, label, out, units_parse_size,
	    "a size (use bytes or a unit: 512KiB, 4MiB, 1GiB; KB/MB/GB are decimal)");
}

int
cfg_get_rate(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out)
{
	return get_amount(c, n, label, out, units_parse_rate,
	    "a rate (write a size per second like 20MiB/s, or 0 to pause)");
}

int
cfg_get_hhmm(struct pctx *c, yaml_node_t *n, const char *label, int allow_24, int *out)
{
	const char *v = cfg_get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if (units_parse_hhmm(v, allow_24, out) != 0) {
		cfg_perr(c, n, "%s: %s is not a time of day (expected HH:MM, 00:00 to %s)", label,
		    cfg_quoted(n, buf, sizeof(buf)), allow_24 ? "24:00" : "23:59");
		return -1;
	}
	return 0;
}

static int
get_day(struct pctx *c, yaml_node_t *n, const char *label, int *out)
{
	const char *v = cfg_get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return -1;
	if ((*out = units_parse_day(v)) < 0) {
		cfg_perr(c, n, "%s: %s is not a day (mon, tue, wed, thu, fri, sat or sun)", label,
		    cfg_quoted(n, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* A list of day names → bit mask; each day at most once. */
int
cfg_get_days(struct pctx *c, yaml_node_t *n, const char *label, uint8_t *out)
{
	yaml_node_item_t *it;
	uint8_t mask = 0;
	int d, rc = 0;
	char buf[128];

	if (n->type != YAML_SEQUENCE_NODE) {
		cfg_type_err(c, n, label, "a list of days like [mon, fri]");
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		cfg_perr(c, n, "%s: needs at least one day", label);
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *dn = cfg_node_at(c, *it);

		if (get_day(c, dn, label, &d) != 0) {
			rc = -1;
			continue;
		}
		if (mask & (1u << d)) {
			cfg_perr(c, dn, "%s: %s is listed twice", label, cfg_quoted(dn, buf, sizeof(buf)));
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
	const char *v = cfg_get_str(c, n, label);
	char buf[128];

	if (v == NULL)
		return NULL;
	if (!name_is_safe(v) || strlen(v) > NAME_MAX_LEN) {
		cfg_perr(c, n, "%s: %s is not a safe name (1 to %d characters; no \"/\", \"\\\", "
		    "control characters; not \".\" or \"..\")", label, cfg_quoted(n, buf, sizeof(buf)),
		    NAME_MAX_LEN);
		return NULL;
	}
	return xstrdup(v);
}

/* A path on the node or a mount point: non-empty, no control characters. */
static char *
get_path(struct pctx *c, yaml_node_t *n, const char *label, int need_absolute)
{
	const char *v = cfg_get_str(c, n, label);
	const unsigned char *p;

	if (v == NULL)
		return NULL;
	if (*v == '\0') {
		cfg_perr(c, n, "%s: empty path", label);
		return NULL;
	}
	for (p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			cfg_perr(c, n, "%s: path contains a control character", label);
			return NULL;
		}
	}
	if (need_absolute && *v != '/') {
		cfg_perr(c, n, "%s: path must be absolute, got \"%s\"", label, v);
		return NULL;
	}
	return xstrdup(v);
}

/* ---- mappings with a fixed set of keys ------------------------------- */

/* Collects the values of a mapping into f[].  Unknown and duplicate keys
 * are errors; so are missing required keys (named in one message).
 * Returns -1 only when n is not a mapping at all. */
int
cfg_map_fields(struct pctx *c, yaml_node_t *n, const char *where, struct field *f, size_t nf)
{
	yaml_node_pair_t *pr;
	char missing[512];
	size_t i, nmissing = 0;
	char buf[128];

	for (i = 0; i < nf; i++)
		f[i].val = f[i].keynode = NULL;
	if (n->type != YAML_MAPPING_NODE) {
		cfg_perr(c, n, "%s: expected a mapping, got %s", where, cfg_describe(n, buf, sizeof(buf)));
		return -1;
	}
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = cfg_node_at(c, pr->key), *v = cfg_node_at(c, pr->value);
		const char *ks;

		if (k->type != YAML_SCALAR_NODE) {
			cfg_perr(c, k, "keys in %s must be plain words, got %s", where,
			    cfg_describe(k, buf, sizeof(buf)));
			continue;
		}
		ks = (const char *)k->data.scalar.value;
		for (i = 0; i < nf; i++)
			if (f[i].key != NULL && strlen(f[i].key) == k->data.scalar.length &&
			    strcmp(f[i].key, ks) == 0)
				break;
		if (i == nf) {
			show_value(ks, k->data.scalar.length, buf, sizeof(buf));
			cfg_perr(c, k, "unknown key \"%s\" in %s", buf, where);
			continue;
		}
		if (f[i].val != NULL) {
			cfg_perr(c, k, "duplicate key \"%s\" in %s (first at line %d)", f[i].key, where,
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
		cfg_perr(c, n, "missing required key%s %s in %s", nmissing > 1 ? "s" : "", missing, where);
	return 0;
}

/* ---- documents ------------------------------------------------------- */

void
cfg_system_defaults(struct cfg_system *s)
{
	memset(s, 0, sizeof(*s));
	s->max_tasks = DEF_MAX_TASKS;
	s->max_tasks_per_host = DEF_MAX_TASKS_PER_HOST;
	s->transfer_buffer = DEF_TRANSFER_BUFFER;
	s->host_buffer_cap = DEF_HOST_BUFFER_CAP;
}


static void
parse_system(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_MAX, F_PERHOST, F_BUF, F_CAP, F_HTTP };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "max_tasks", 0, NULL, NULL },
		{ "max_tasks_per_host", 0, NULL, NULL },
		{ "transfer_buffer", 0, NULL, NULL },
		{ "host_buffer_cap", 0, NULL, NULL },
		{ "http", 0, NULL, NULL },
	};
	struct cfg_system s;
	char a[32], b[32], d[32];
	int before = c->nerr;

	if (out->system.present) {
		cfg_perr(c, n, "a second system document in this file; the first is at %s:%d",
		    out->system.loc.file, out->system.loc.line);
		return;
	}
	cfg_system_defaults(&s);
	s.loc = loc_of(c, n);
	s.present = 1;
	cfg_map_fields(c, n, "system", f, ARRAY_LEN(f));
	if (f[F_MAX].val != NULL)
		cfg_get_int(c, f[F_MAX].val, "max_tasks", 1, MAX_TASKS_LIMIT, &s.max_tasks);
	if (f[F_PERHOST].val != NULL)
		cfg_get_int(c, f[F_PERHOST].val, "max_tasks_per_host", 1, MAX_TASKS_LIMIT,
		    &s.max_tasks_per_host);
	if (f[F_BUF].val != NULL && get_size(c, f[F_BUF].val, "transfer_buffer", &s.transfer_buffer) == 0 &&
	    (s.transfer_buffer < TRANSFER_BUFFER_MIN || s.transfer_buffer > TRANSFER_BUFFER_MAX ||
	    s.transfer_buffer % TRANSFER_BUFFER_ALIGN != 0))
		cfg_perr(c, f[F_BUF].val, "transfer_buffer must be between 64KiB and 64MiB and a multiple "
		    "of 4KiB, got %llu bytes", (unsigned long long)s.transfer_buffer);
	if (f[F_CAP].val != NULL)
		get_size(c, f[F_CAP].val, "host_buffer_cap", &s.host_buffer_cap);
	if (f[F_HTTP].val != NULL)
		cfg_parse_http(c, f[F_HTTP].val, &s.http);
	if (c->nerr != before) {
		cfg_http_free(&s.http);
		out->system.present = 1;   /* still remember there was one */
		out->system.loc = s.loc;
		return;
	}
	if (s.max_tasks_per_host > s.max_tasks) {
		cfg_perr(c, f[F_PERHOST].val ? f[F_PERHOST].val : f[F_MAX].val,
		    "max_tasks_per_host (%d) is above max_tasks (%d)", s.max_tasks_per_host, s.max_tasks);
	} else if ((uint64_t)s.max_tasks_per_host * s.transfer_buffer > s.host_buffer_cap) {
		yaml_node_t *at = f[F_BUF].val ? f[F_BUF].val :
		    f[F_PERHOST].val ? f[F_PERHOST].val : f[F_CAP].val;

		units_format_size((uint64_t)s.max_tasks_per_host * s.transfer_buffer, a, sizeof(a));
		units_format_size(s.transfer_buffer, b, sizeof(b));
		units_format_size(s.host_buffer_cap, d, sizeof(d));
		cfg_perr(c, at, "max_tasks_per_host x transfer_buffer = %d x %s = %s exceeds host_buffer_cap %s",
		    s.max_tasks_per_host, b, a, d);
	}
	if (c->nerr != before) {
		cfg_http_free(&s.http);
		s.http.enabled = 0;
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

	if (cfg_map_fields(c, n, "tls", f, ARRAY_LEN(f)) != 0)
		return;
	given = (f[T_THUMB].val != NULL) + (f[T_CA].val != NULL) + (f[T_INSECURE].val != NULL);
	if (given != 1) {
		cfg_perr(c, n, "tls: give exactly one of thumbprint, ca_file or insecure: true "
		    "(leave tls out to verify against the system's CAs)");
		return;
	}
	if (f[T_THUMB].val != NULL && (s = cfg_get_str(c, f[T_THUMB].val, "tls.thumbprint")) != NULL) {
		if (units_parse_thumbprint(s, p->thumbprint) != 0)
			cfg_perr(c, f[T_THUMB].val, "tls.thumbprint: %s is not a SHA-256 fingerprint "
			    "(64 hex digits, colons between bytes allowed, optional \"SHA256:\" prefix)",
			    cfg_quoted(f[T_THUMB].val, buf, sizeof(buf)));
		else
			p->has_thumbprint = 1;
	}
	if (f[T_CA].val != NULL && (s = cfg_get_str(c, f[T_CA].val, "tls.ca_file")) != NULL) {
		char *full = cfg_path_join(c->confdir, s), *real;
		struct stat st;

		if (*s == '\0') {
			cfg_perr(c, f[T_CA].val, "tls.ca_file: empty path");
		} else if (stat(full, &st) != 0) {
			cfg_perr(c, f[T_CA].val, "tls.ca_file: cannot use %s: %s", s, strerror(errno));
		} else if (!S_ISREG(st.st_mode)) {
			cfg_perr(c, f[T_CA].val, "tls.ca_file: %s is not a regular file", s);
		} else if (access(full, R_OK) != 0) {
			cfg_perr(c, f[T_CA].val, "tls.ca_file: cannot read %s: %s", s, strerror(errno));
		} else if ((real = realpath(full, NULL)) == NULL) {
			cfg_perr(c, f[T_CA].val, "tls.ca_file: cannot resolve %s: %s", s, strerror(errno));
		} else {
			p->ca_file = real;
			p->ca_file_name = xstrdup(s);
		}
		free(full);
	}
	if (f[T_INSECURE].val != NULL && cfg_get_bool(c, f[T_INSECURE].val, "tls.insecure", &p->insecure) == 0 &&
	    !p->insecure)
		cfg_perr(c, f[T_INSECURE].val, "tls.insecure: only \"insecure: true\" has a meaning; "
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
		cfg_type_err(c, n, "datastore_mounts", "a mapping of datastore name to mounted path");
		return;
	}
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = cfg_node_at(c, pr->key), *v = cfg_node_at(c, pr->value);
		const char *ds = cfg_get_str(c, k, "datastore_mounts: datastore name");
		char *path;

		if (ds == NULL)
			continue;
		if (*ds == '\0') {
			cfg_perr(c, k, "datastore_mounts: empty datastore name");
			continue;
		}
		for (i = 0; i < p->nmounts; i++)
			if (strcmp(p->mounts[i].datastore, ds) == 0)
				break;
		if (i < p->nmounts) {
			cfg_perr(c, k, "datastore_mounts: datastore \"%s\" is listed twice", p->mounts[i].datastore);
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
	cfg_map_fields(c, n, "platform", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		p.name = get_name(c, f[F_NAME].val, "name");
		p.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_TYPE].val != NULL && (s = cfg_get_str(c, f[F_TYPE].val, "type")) != NULL &&
	    strcmp(s, "vsphere") != 0)
		cfg_perr(c, f[F_TYPE].val, "type: unsupported platform type %s (only vsphere)",
		    cfg_quoted(f[F_TYPE].val, buf, sizeof(buf)));
	p.type = xstrdup("vsphere");
	if (f[F_URL].val != NULL && (s = cfg_get_str(c, f[F_URL].val, "url")) != NULL) {
		if (!url_ok(s))
			cfg_perr(c, f[F_URL].val, "url: expected https://HOST[:PORT]/PATH, got %s",
			    cfg_describe(f[F_URL].val, buf, sizeof(buf)));
		else
			p.url = xstrdup(s);
	}
	if (f[F_USER].val != NULL && (s = cfg_get_str(c, f[F_USER].val, "username")) != NULL) {
		if (*s == '\0')
			cfg_perr(c, f[F_USER].val, "username: is empty");
		else
			p.username = xstrdup(s);
	}
	if (f[F_PWFILE].val != NULL && f[F_PWENV].val != NULL) {
		cfg_perr(c, f[F_PWENV].keynode, "give password_file or password_env, not both");
	} else if (f[F_PWFILE].val == NULL && f[F_PWENV].val == NULL) {
		cfg_perr(c, n, "missing required key \"password_file\" or \"password_env\" in platform");
	} else if (f[F_PWFILE].val != NULL) {
		if ((s = cfg_get_str(c, f[F_PWFILE].val, "password_file")) != NULL) {
			char *full = cfg_path_join(c->confdir, s);

			if (*s == '\0')
				cfg_perr(c, f[F_PWFILE].val, "password_file: empty path");
			else if (cfg_read_secret(full, &p.password, &why, &sys) != 0)
				cfg_perr(c, f[F_PWFILE].val, sys ? "password_file: cannot read %s: %s" :
				    "password_file: %s %s", s, why);
			else
				p.password_source = xasprintf("file:%s", s);
			free(full);
		}
	} else if ((s = cfg_get_str(c, f[F_PWENV].val, "password_env")) != NULL) {
		const char *v = *s ? getenv(s) : NULL;

		if (*s == '\0' || strchr(s, '=') != NULL)
			cfg_perr(c, f[F_PWENV].val, "password_env: %s is not a variable name",
			    cfg_quoted(f[F_PWENV].val, buf, sizeof(buf)));
		else if (v == NULL)
			cfg_perr(c, f[F_PWENV].val, "password_env: environment variable %s is not set", s);
		else if (*v == '\0')
			cfg_perr(c, f[F_PWENV].val, "password_env: environment variable %s is empty", s);
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

/* hotadd: false, or { vm: NAME, uuid: UUID, devices: /dev/disk/by-id }. */
static void
parse_hotadd(struct pctx *c, yaml_node_t *n, struct cfg_node *nd)
{
	enum { F_VM, F_UUID, F_DEVICES };
	struct field f[] = {
		{ "vm", 0, NULL, NULL },
		{ "uuid", 0, NULL, NULL },
		{ "devices", 0, NULL, NULL },
	};
	const char *u;
	int on = 1;

	if (n->type == YAML_SCALAR_NODE) {
		if (cfg_get_bool(c, n, "hotadd", &on) == 0 && on)
			cfg_perr(c, n, "hotadd: true is the default; give false, or a mapping with vm, uuid, devices");
		nd->hotadd_off = !on;
		return;
	}
	cfg_map_fields(c, n, "hotadd", f, ARRAY_LEN(f));
	if (f[F_VM].val != NULL)
		nd->appliance_vm = get_path(c, f[F_VM].val, "hotadd.vm", 0);
	if (f[F_UUID].val != NULL && (u = cfg_get_str(c, f[F_UUID].val, "hotadd.uuid")) != NULL) {
		size_t k, hex = 0;

		for (k = 0; u[k] != '\0'; k++)
			hex += isxdigit((unsigned char)u[k]) != 0;
		if (hex != 32 || strspn(u, "0123456789abcdefABCDEF- ") != strlen(u))
			cfg_perr(c, f[F_UUID].val, "hotadd.uuid: \"%s\" is not a UUID (32 hex digits)", u);
		else
			nd->appliance_uuid = xstrdup(u);
	}
	if (f[F_DEVICES].val != NULL)
		nd->hotadd_devices = get_path(c, f[F_DEVICES].val, "hotadd.devices", 1);
}

static void
parse_node(struct pctx *c, yaml_node_t *n, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_REPO, F_TMP, F_HOTADD };
	struct field f[] = {
		{ "kind", 1, NULL, NULL },
		{ "name", 1, NULL, NULL },
		{ "repository", 1, NULL, NULL },
		{ "temp_dir", 1, NULL, NULL },
		{ "hotadd", 0, NULL, NULL },
	};
	struct cfg_node nd;
	int before = c->nerr;

	memset(&nd, 0, sizeof(nd));
	nd.loc = loc_of(c, n);
	cfg_map_fields(c, n, "node", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		nd.name = get_name(c, f[F_NAME].val, "name");
		nd.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_REPO].val != NULL)
		nd.repository = get_path(c, f[F_REPO].val, "repository", 0);
	if (f[F_TMP].val != NULL)
		nd.temp_dir = get_path(c, f[F_TMP].val, "temp_dir", 0);
	if (f[F_HOTADD].val != NULL)
		parse_hotadd(c, f[F_HOTADD].val, &nd);
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
	cfg_map_fields(c, n, "template", f, ARRAY_LEN(f));
	if (f[F_NAME].val != NULL) {
		t.name = get_name(c, f[F_NAME].val, "name");
		t.name_loc = loc_of(c, f[F_NAME].val);
	}
	if (f[F_OPTIONS].val != NULL)
		cfg_parse_options(c, f[F_OPTIONS].val, CFG_TEMPLATE, &t.options);
	if (f[F_BW].val != NULL) {
		cfg_parse_bandwidth(c, f[F_BW].val, &t.windows, &t.nwindows);
		t.windows_set = 1;
	}
	if (f[F_SCHED].val != NULL)
		cfg_parse_schedule(c, f[F_SCHED].val, SCTX_TEMPLATE, &t.schedule);
	if (f[F_HIST].val != NULL)
		cfg_get_int(c, f[F_HIST].val, "keep_history", 1, HISTORY_MAX, &t.keep_history);
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

	if (cfg_map_fields(c, node, "source", f, ARRAY_LEN(f)) != 0)
		return;
	if (f[0].val != NULL) {
		r->source_platform = get_name(c, f[0].val, "source.platform");
		r->locs.source_platform = loc_of(c, f[0].val);
	}
	if (f[1].val == NULL)
		return;
	if (f[1].val->type != YAML_SEQUENCE_NODE) {
		cfg_type_err(c, f[1].val, "source.vms", "a list of VM names");
		return;
	}
	if (f[1].val->data.sequence.items.start == f[1].val->data.sequence.items.top) {
		cfg_perr(c, f[1].val, "source.vms: needs at least one VM");
		return;
	}
	if (f[1].val->data.sequence.items.top - f[1].val->data.sequence.items.start > VMS_PER_RULE_MAX) {
		cfg_perr(c, f[1].val, "source.vms: too many VMs (at most %d per rule)", VMS_PER_RULE_MAX);
		return;
	}
	n = (size_t)(f[1].val->data.sequence.items.top - f[1].val->data.sequence.items.start);
	r->vms = xcalloc(n, sizeof(*r->vms));
	r->locs.vms = xcalloc(n, sizeof(*r->locs.vms));
	for (it = f[1].val->data.sequence.items.start; it < f[1].val->data.sequence.items.top; it++) {
		yaml_node_t *vn = cfg_node_at(c, *it);
		const char *s = cfg_get_str(c, vn, "source.vms");

		if (s == NULL)
			continue;
		if (!vm_name_ok(s)) {
			cfg_perr(c, vn, "source.vms: %s cannot be used as a VM name here (no \"/\" or "
			    "control characters, not \".\" or \"..\", at most %d bytes)",
			    cfg_quoted(vn, buf, sizeof(buf)), VM_NAME_MAX_LEN);
			continue;
		}
		for (i = 0; i < r->nvms; i++)
			if (strcmp(r->vms[i], s) == 0)
				break;
		if (i < r->nvms) {
			cfg_perr(c, vn, "source.vms: %s is listed twice", cfg_quoted(vn, buf, sizeof(buf)));
			continue;
		}
		r->vms[r->nvms] = xstrdup(s);
		r->locs.vms[r->nvms] = loc_of(c, vn);
		r->nvms++;
	}
}

/* target.folder and target.resource_pool: names joined by "/". */
static char *
get_inventory_path(struct pctx *c, yaml_node_t *n, const char *label)
{
	const char *s = cfg_get_str(c, n, label), *seg, *slash;
	char buf[128];
	size_t len;

	if (s == NULL)
		return NULL;
	for (seg = s;; seg = slash + 1) {
		slash = strchr(seg, '/');
		len = slash ? (size_t)(slash - seg) : strlen(seg);
		if (len == 0 || len > TARGET_NAME_MAX_LEN) {
			cfg_perr(c, n, "%s: %s is not a path of names (\"a\" or \"a/b\": no empty name, no \"/\" at "
			    "either end, each name at most %d characters)", label, cfg_quoted(n, buf, sizeof(buf)),
			    TARGET_NAME_MAX_LEN);
			return NULL;
		}
		if (slash == NULL)
			break;
	}
	return xstrdup(s);
}

/* An error at character off of a scalar's text: its own column when the
 * scalar sits on one line as written, else the scalar's. */
static void
perr_at(struct pctx *c, yaml_node_t *n, int off, const char *label, const char *why)
{
	struct cfg_loc l = loc_of(c, n);
	const char *v = (const char *)n->data.scalar.value;
	int quoted = n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	    n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	int plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

	if ((plain || quoted) && n->start_mark.line == n->end_mark.line &&
	    n->end_mark.column - n->start_mark.column == strlen(v) + (quoted ? 2 : 0))
		l.col += off + quoted;
	cfg_errors_add(c->errs, &l, "%s: %s", label, why);
	c->nerr++;
}

/* target.name: "{vm}" is the source VM's name; every name it gives must
 * be one vSphere takes. */
static char *
get_name_pattern(struct pctx *c, yaml_node_t *n, const struct cfg_rule *r)
{
	const char *s = cfg_get_str(c, n, "target.name");
	char why[128], buf[128];
	struct cfg_rule tmp;
	size_t i;
	int off;

	if (s == NULL)
		return NULL;
	if (*s == '\0') {
		cfg_perr(c, n, "target.name: is empty (\"{vm}\" keeps the source VM's name)");
		return NULL;
	}
	if ((off = cfg_name_pattern_problem(s, why, sizeof(why))) >= 0) {
		perr_at(c, n, off, "target.name", why);
		return NULL;
	}
	if ((off = (int)strcspn(s, "/")) < (int)strlen(s)) {
		perr_at(c, n, off, "target.name",
		    "a \"/\" cannot be part of a VM name here (vSphere keeps it as %2f)");
		return NULL;
	}
	if (strstr(s, "{vm}") == NULL && r->nvms > 1) {
		cfg_perr(c, n, "target.name: %s has no {vm}: every one of the rule's %zu VMs would get that name",
		    cfg_quoted(n, buf, sizeof(buf)), r->nvms);
		return NULL;
	}
	memset(&tmp, 0, sizeof(tmp));
	tmp.target.name = (char *)s;
	for (i = 0; i < (r->nvms ? r->nvms : 1); i++) {
		char *name = cfg_target_name(&tmp, r->nvms ? r->vms[i] : "");

		if (strlen(name) > TARGET_NAME_MAX_LEN || !file_name_is_safe(name)) {
			cfg_perr(c, n, "target.name: gives %s for VM %s, which is not a VM name vSphere takes (at most %d "
			    "characters, no control characters, not \".\" or \"..\")", name, r->nvms ? r->vms[i] : "",
			    TARGET_NAME_MAX_LEN);
			free(name);
			return NULL;
		}
		free(name);
	}
	return xstrdup(s);
}

static void
parse_target(struct pctx *c, yaml_node_t *n, struct cfg_rule *r)
{
	struct field f[] = {
		{ "platform", 1, NULL, NULL },
		{ "datacenter", 1, NULL, NULL },
		{ "host", 1, NULL, NULL },
		{ "datastore", 1, NULL, NULL },
		{ "name", 0, NULL, NULL },
		{ "folder", 0, NULL, NULL },
		{ "resource_pool", 0, NULL, NULL },
	};
	char **dst[] = { NULL, &r->target.datacenter, &r->target.host, &r->target.datastore };
	const char *labels[] = { NULL, "target.datacenter", "target.host", "target.datastore" };
	const char *s;
	size_t i;

	if (cfg_map_fields(c, n, "target", f, ARRAY_LEN(f)) != 0)
		return;
	if (f[0].val != NULL) {
		r->target.platform = get_name(c, f[0].val, "target.platform");
		r->locs.target_platform = loc_of(c, f[0].val);
	}
	for (i = 1; i < ARRAY_LEN(dst); i++) {
		if (f[i].val == NULL || (s = cfg_get_str(c, f[i].val, labels[i])) == NULL)
			continue;
		if (*s == '\0')
			cfg_perr(c, f[i].val, "%s: is empty", labels[i]);
		else
			*dst[i] = xstrdup(s);
	}
	if (f[4].val != NULL) {
		r->target.name = get_name_pattern(c, f[4].val, r);
		r->locs.target_name = loc_of(c, f[4].val);
	}
	if (f[5].val != NULL)
		r->target.folder = get_inventory_path(c, f[5].val, "target.folder");
	if (f[6].val != NULL)
		r->target.resource_pool = get_inventory_path(c, f[6].val, "target.resource_pool");
}

/* encryption: { key_file: PATH }.  The loader does not read the key:
 * the repository does when it opens (drivers/repo.c). */
static void
parse_encryption(struct pctx *c, yaml_node_t *n, struct cfg_rule *r)
{
	struct field f[] = {
		{ "key_file", 1, NULL, NULL },
	};

	if (cfg_map_fields(c, n, "encryption", f, ARRAY_LEN(f)) != 0 || f[0].val == NULL)
		return;
	r->key_file = get_path(c, f[0].val, "encryption.key_file", 0);
	r->locs.key_file = loc_of(c, f[0].val);
}

static void
parse_rule(struct pctx *c, yaml_node_t *n, enum cfg_kind kind, struct cfg_file *out)
{
	enum { F_KIND, F_NAME, F_SOURCE, F_NODE, F_TARGET, F_TEMPLATE, F_OPTIONS, F_BW, F_SCHED,
		F_HIST, F_RETENTION, F_REPO, F_ENC };
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
		{ "encryption", 0, NULL, NULL },
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
		f[F_ENC].key = NULL;
	}
	if (kind == CFG_MIGRATION) {
		f[F_SCHED].key = NULL;
		f[F_HIST].key = NULL;
	}
	snprintf(where, sizeof(where), "%s rule", cfg_kind_name(kind));

	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.loc = loc_of(c, n);
	cfg_map_fields(c, n, where, f, ARRAY_LEN(f));
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
		cfg_parse_options(c, f[F_OPTIONS].val, kind, &r.options);
	if (f[F_BW].val != NULL) {
		cfg_parse_bandwidth(c, f[F_BW].val, &r.windows, &r.nwindows);
		r.written |= CFG_W_WINDOWS;
	}
	if (f[F_SCHED].val != NULL) {
		cfg_parse_schedule(c, f[F_SCHED].val, kind == CFG_BACKUP ? SCTX_BACKUP : SCTX_REPLICATION,
		    &r.schedule);
		r.written |= CFG_W_SCHEDULE;
	}
	if (f[F_HIST].val != NULL) {
		cfg_get_int(c, f[F_HIST].val, "keep_history", 1, HISTORY_MAX, &r.keep_history);
		r.written |= CFG_W_KEEP_HISTORY;
	}
	if (f[F_RETENTION].val != NULL) {
		cfg_get_int(c, f[F_RETENTION].val, "retention", 1, RETENTION_MAX, &r.retention);
		r.written |= CFG_W_RETENTION;
	}
	if (f[F_REPO].val != NULL) {
		r.repository = get_path(c, f[F_REPO].val, "repository", 0);
		r.written |= CFG_W_REPOSITORY;
	}
	if (f[F_ENC].val != NULL)
		parse_encryption(c, f[F_ENC].val, &r);
	if (c->nerr != before) {
		rule_free(&r);
		return;
	}
	/* Effective values without a template; a rule naming one is completed
	 * (and checked) by the loader once every file is known. */
	cfg_rule_apply(&r, NULL, NULL);
	if (r.template_name == NULL) {
		int nbefore = (int)c->errs->n;

		cfg_rule_check_effective(&r, NULL, c->errs, NULL);
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
		cfg_perr(c, root, "a document must be a mapping with a kind, got %s",
		    cfg_describe(root, buf, sizeof(buf)));
		return;
	}
	for (pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = cfg_node_at(c, pr->key);

		if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "kind") == 0) {
			kv = cfg_node_at(c, pr->value);
			break;
		}
	}
	if (kv == NULL) {
		cfg_perr(c, root, "missing required key \"kind\" (system, platform, node, template, "
		    "migration, replication or backup)");
		return;
	}
	if ((ks = cfg_get_str(c, kv, "kind")) == NULL)
		return;
	for (i = 0; i < ARRAY_LEN(kinds); i++)
		if (strcmp(ks, kind_names[kinds[i]]) == 0)
			break;
	if (i == ARRAY_LEN(kinds)) {
		cfg_perr(c, kv, "unknown kind %s (system, platform, node, template, migration, "
		    "replication or backup)", cfg_quoted(kv, buf, sizeof(buf)));
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
