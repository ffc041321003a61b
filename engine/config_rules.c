/* Configuration loader: the settings rules and templates share (options,
 * bandwidth windows, schedules), and a rule's effective settings: its
 * template and the defaults applied, checked, and summed up in a digest. */
#include "engine/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

#define DEF_KEEP_HISTORY 3
#define DEF_RETENTION 7

/* ---- options --------------------------------------------------------- */

#define K_MIG (1u << CFG_MIGRATION)
#define K_REP (1u << CFG_REPLICATION)
#define K_BAK (1u << CFG_BACKUP)
#define K_ALL (K_MIG | K_REP | K_BAK)

const struct optdef cfg_optdefs[CFG_NOPTS] = {
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
	/* A migrated VM keeps its MACs (its guest sees the same adapters); a
	 * replica runs beside its source only after a failover, so its
	 * default is new MACs (see opt_default). */
	{ "keep_mac", CFG_OPT_KEEP_MAC, K_MIG | K_REP, 1 },
	/* false: a target disk that only a whole upload could write (no mount,
	 * no hot-add, no vmfsSparse deltas) is refused at the pre-check. */
	{ "whole_upload", CFG_OPT_WHOLE_UPLOAD, K_MIG | K_REP, 1 },
};
_Static_assert(CFG_OPT_WHOLE_UPLOAD == 1u << (CFG_NOPTS - 1), "CFG_NOPTS counts the CFG_OPT_* bits");

int
cfg_opt_default(const struct optdef *d, enum cfg_kind kind)
{
	if (!(d->kinds & (1u << kind)))
		return 0;
	if (d->bit == CFG_OPT_KEEP_MAC && kind == CFG_REPLICATION)
		return 0;
	return d->def;
}

const char *const cfg_cutover_names[] = {
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
	case CFG_OPT_KEEP_MAC: return &o->keep_mac;
	case CFG_OPT_WHOLE_UPLOAD: return &o->whole_upload;
	default: return NULL;
	}
}

int
cfg_opt_get(const struct cfg_options *o, uint32_t bit)
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
void
cfg_parse_options(struct pctx *c, yaml_node_t *n, enum cfg_kind kind, struct cfg_options *o)
{
	struct field f[ARRAY_LEN(cfg_optdefs)];
	char label[64], buf[128];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cfg_optdefs); i++) {
		f[i].key = cfg_optdefs[i].name;
		f[i].required = 0;
	}
	if (cfg_map_fields(c, n, "options", f, ARRAY_LEN(f)) != 0)
		return;
	for (i = 0; i < ARRAY_LEN(cfg_optdefs); i++) {
		const struct optdef *d = &cfg_optdefs[i];
		int v = 0;

		if (f[i].val == NULL)
			continue;
		if (kind != CFG_TEMPLATE && !(d->kinds & (1u << kind))) {
			cfg_perr(c, f[i].keynode, "option \"%s\" does not apply to %s rules", d->name,
			    cfg_kind_name(kind));
			continue;
		}
		snprintf(label, sizeof(label), "options.%s", d->name);
		if (d->bit == CFG_OPT_CUTOVER) {
			const char *s = cfg_get_str(c, f[i].val, label);
			size_t k;

			if (s == NULL)
				continue;
			for (k = 0; k < ARRAY_LEN(cfg_cutover_names); k++)
				if (strcmp(s, cfg_cutover_names[k]) == 0)
					break;
			if (k == ARRAY_LEN(cfg_cutover_names)) {
				cfg_perr(c, f[i].val, "%s: unknown cutover %s (shutdown, poweroff or none)",
				    label, cfg_quoted(f[i].val, buf, sizeof(buf)));
				continue;
			}
			v = (int)k;
		} else if (cfg_get_bool(c, f[i].val, label, &v) != 0) {
			continue;
		}
		opt_put(o, d->bit, v);
		o->set |= d->bit;
	}
}

/* ---- target names ---------------------------------------------------- */

#define TARGET_PLACEHOLDER "{vm}"

char *
cfg_target_name(const struct cfg_rule *r, const char *vm)
{
	const char *p = r->target.name ? r->target.name : TARGET_PLACEHOLDER, *at;
	struct sbuf b;

	sbuf_init(&b);
	while ((at = strstr(p, TARGET_PLACEHOLDER)) != NULL) {
		sbuf_printf(&b, "%.*s%s", (int)(at - p), p, vm);
		p = at + strlen(TARGET_PLACEHOLDER);
	}
	sbuf_printf(&b, "%s", p);
	return sbuf_steal(&b);
}

int
cfg_name_pattern_problem(const char *pat, char *why, size_t len)
{
	const char *p, *close;

	for (p = pat; *p != '\0'; p++) {
		if (*p == '}') {
			snprintf(why, len, "a \"}\" without its \"{\" at character %d", (int)(p - pat) + 1);
			return (int)(p - pat);
		}
		if (*p != '{')
			continue;
		if ((close = strchr(p, '}')) == NULL) {
			snprintf(why, len, "a \"{\" without its \"}\" at character %d", (int)(p - pat) + 1);
			return (int)(p - pat);
		}
		if (strncmp(p, TARGET_PLACEHOLDER, strlen(TARGET_PLACEHOLDER)) != 0) {
			snprintf(why, len, "unknown placeholder %.*s at character %d (the only one is %s)",
			    (int)(close - p + 1 > 40 ? 40 : close - p + 1), p, (int)(p - pat) + 1, TARGET_PLACEHOLDER);
			return (int)(p - pat);
		}
		p = close;
	}
	return -1;
}

/* ---- bandwidth windows ----------------------------------------------- */

void
cfg_parse_bandwidth(struct pctx *c, yaml_node_t *n, struct cfg_window **out, size_t *nout)
{
	yaml_node_item_t *it;
	struct cfg_window *w = NULL;
	size_t nw = 0;

	*out = NULL;
	*nout = 0;
	if (n->type != YAML_SEQUENCE_NODE) {
		cfg_type_err(c, n, "bandwidth", "a list of windows");
		return;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *wn = cfg_node_at(c, *it);
		struct field f[] = {
			{ "days", 1, NULL, NULL },
			{ "from", 1, NULL, NULL },
			{ "to", 1, NULL, NULL },
			{ "limit", 1, NULL, NULL },
		};
		struct cfg_window win;
		int before = c->nerr;

		memset(&win, 0, sizeof(win));
		if (cfg_map_fields(c, wn, "bandwidth window", f, ARRAY_LEN(f)) != 0)
			continue;
		if (f[0].val != NULL)
			cfg_get_days(c, f[0].val, "bandwidth.days", &win.days);
		if (f[1].val != NULL)
			cfg_get_hhmm(c, f[1].val, "bandwidth.from", 0, &win.from_min);
		if (f[2].val != NULL)
			cfg_get_hhmm(c, f[2].val, "bandwidth.to", 1, &win.to_min);
		if (f[3].val != NULL)
			cfg_get_rate(c, f[3].val, "bandwidth.limit", &win.limit_bps);
		if (c->nerr != before)
			continue;
		if (win.from_min >= win.to_min) {
			cfg_perr(c, f[2].val, "bandwidth: window ends (%s) before it starts (%s); "
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

const char *const cfg_mode_names[] = {
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

	if ((v = cfg_get_str(c, n, "schedule.interval")) == NULL)
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
	cfg_perr(c, n, "schedule.interval must be between 1m and 24h, got %s", cfg_describe(n, buf, sizeof(buf)));
	return -1;
bad:
	cfg_perr(c, n, "schedule.interval: expected minutes or a duration like 2h, 90m or 1h30m, got %s",
	    cfg_describe(n, buf, sizeof(buf)));
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
		if (cfg_get_hhmm(c, n, "schedule.times", 0, &t[0]) != 0) {
			free(t);
			return -1;
		}
		*out = t;
		*nout = 1;
		return 0;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		cfg_type_err(c, n, "schedule.times", "a list of times like [\"01:00\", \"13:00\"]");
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		cfg_perr(c, n, "schedule.times: needs at least one time");
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *tn = cfg_node_at(c, *it);
		int m;

		if (cfg_get_hhmm(c, tn, "schedule.times", 0, &m) != 0) {
			rc = -1;
			continue;
		}
		for (i = 0; i < nt; i++)
			if (t[i] == m)
				break;
		if (i < nt) {
			cfg_perr(c, tn, "schedule.times: %s is listed twice", cfg_quoted(tn, buf, sizeof(buf)));
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
	const char *v = cfg_get_str(c, n, "schedule.once");
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
		cfg_perr(c, n, "schedule.once: %s is not a valid date and time (expected \"YYYY-MM-DD HH:MM\", local time)",
		    cfg_quoted(n, buf, sizeof(buf)));
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
		cfg_perr(c, n, "schedule.once: %s cannot be represented", cfg_quoted(n, buf, sizeof(buf)));
		return -1;
	}
	*out = (int64_t)t;
	return 0;
}

/* schedule.mode: full, incremental or differential; *out is left as it
 * is after an error. */
static void
get_mode(struct pctx *c, yaml_node_t *n, enum cfg_backup_mode *out)
{
	const char *s;
	char buf[128];
	size_t k;

	if ((s = cfg_get_str(c, n, "schedule.mode")) == NULL)
		return;
	for (k = 0; k < ARRAY_LEN(cfg_mode_names); k++) {
		if (strcmp(s, cfg_mode_names[k]) == 0) {
			*out = (enum cfg_backup_mode)k;
			return;
		}
	}
	cfg_perr(c, n, "schedule.mode: unknown backup mode %s (full, incremental or differential)",
	    cfg_quoted(n, buf, sizeof(buf)));
}

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
	if (cfg_map_fields(c, n, "schedule", f, ARRAY_LEN(f)) != 0)
		return -1;
	if (f[E_TYPE].val != NULL && (s = cfg_get_str(c, f[E_TYPE].val, "schedule.type")) != NULL) {
		for (k = SCHED_HOURLY; k <= SCHED_MONTHLY; k++)
			if (strcmp(s, sched_names[k]) == 0)
				break;
		if (k > SCHED_MONTHLY)
			cfg_perr(c, f[E_TYPE].val, "schedule.type: unknown schedule type %s "
			    "(hourly, daily, weekly or monthly)", cfg_quoted(f[E_TYPE].val, buf, sizeof(buf)));
		else
			e->type = (enum cfg_sched_type)k;
	}
	if (f[E_MODE].val != NULL) {
		if (sc == SCTX_REPLICATION) {
			cfg_perr(c, f[E_MODE].keynode, "schedule.mode is only used by backup schedules "
			    "(replication is always incremental)");
		} else {
			get_mode(c, f[E_MODE].val, &e->mode);
		}
	}
	if (e->type == SCHED_NONE)
		return -1;
	/* keys that belong to other schedule types */
	if (f[E_INTERVAL].val != NULL && e->type != SCHED_HOURLY)
		cfg_perr(c, f[E_INTERVAL].keynode, "schedule.interval is only used by hourly schedules");
	if (f[E_DAYS].val != NULL && e->type != SCHED_WEEKLY)
		cfg_perr(c, f[E_DAYS].keynode, "schedule.days is only used by weekly schedules");
	if (f[E_DAY].val != NULL && e->type != SCHED_MONTHLY)
		cfg_perr(c, f[E_DAY].keynode, "schedule.day is only used by monthly schedules");
	if (f[E_TIMES].val != NULL && e->type == SCHED_HOURLY)
		cfg_perr(c, f[E_TIMES].keynode, "schedule.times is not used by hourly schedules "
		    "(give interval and start)");
	if (f[E_TIMES].val != NULL && f[E_START].val != NULL)
		cfg_perr(c, f[E_TIMES].keynode, "schedule: give start or times, not both");
	if (c->nerr != before)
		return -1;

	if (e->type == SCHED_HOURLY) {
		if (f[E_INTERVAL].val == NULL)
			cfg_perr(c, n, "schedule: hourly needs an interval (like 2h or 90m)");
		else
			get_interval(c, f[E_INTERVAL].val, &e->interval_min);
	}
	if (e->type == SCHED_WEEKLY) {
		if (f[E_DAYS].val == NULL)
			cfg_perr(c, n, "schedule: weekly needs days (like [mon, fri])");
		else
			cfg_get_days(c, f[E_DAYS].val, "schedule.days", &e->days);
	}
	if (e->type == SCHED_MONTHLY) {
		if (f[E_DAY].val == NULL)
			cfg_perr(c, n, "schedule: monthly needs a day of the month (1 to 31)");
		else
			cfg_get_int(c, f[E_DAY].val, "schedule.day", 1, 31, &e->day);
	}
	if (f[E_TIMES].val != NULL) {
		get_times(c, f[E_TIMES].val, &e->times, &e->ntimes);
	} else if (f[E_START].val != NULL) {
		e->times = xmalloc(sizeof(*e->times));
		if (cfg_get_hhmm(c, f[E_START].val, "schedule.start", 0, &e->times[0]) == 0) {
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
		cfg_perr(c, n, "schedule: %s needs a start time (or times)", sched_names[e->type]);
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
void
cfg_parse_schedule(struct pctx *c, yaml_node_t *n, enum sched_ctx sc, struct cfg_schedule *out)
{
	struct cfg_sched_entry e;
	int before = c->nerr;

	memset(out, 0, sizeof(*out));
	if (n->type == YAML_MAPPING_NODE) {
		yaml_node_pair_t *pr;
		int has_once = 0;

		for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = cfg_node_at(c, pr->key);

			if (k->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)k->data.scalar.value, "once") == 0)
				has_once = 1;
		}
		if (has_once) {
			struct field f[] = { { "once", 1, NULL, NULL }, { "mode", 0, NULL, NULL } };

			if (sc == SCTX_REPLICATION) {
				cfg_perr(c, n, "schedule: replication runs periodically; \"once\" is for backup rules");
				return;
			}
			memset(&e, 0, sizeof(e));
			e.type = SCHED_ONCE;
			e.mode = BACKUP_FULL;
			cfg_map_fields(c, n, "schedule", f, ARRAY_LEN(f));
			get_datetime(c, f[0].val, &e.once_at);
			if (f[1].val != NULL)
				get_mode(c, f[1].val, &e.mode);
			if (c->nerr != before)
				return;
		} else if (parse_entry(c, n, sc, &e) != 0) {
			return;
		}
		out->entries = xmalloc(sizeof(e));
		out->entries[0] = e;
		out->nentries = 1;
		out->set = 1;
		return;
	}
	if (n->type == YAML_SEQUENCE_NODE && sc != SCTX_REPLICATION) {
		yaml_node_item_t *it;

		if (n->data.sequence.items.start == n->data.sequence.items.top) {
			cfg_perr(c, n, "schedule: needs at least one entry");
			return;
		}
		for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
			if (parse_entry(c, cfg_node_at(c, *it), sc, &e) != 0)
				continue;
			out->entries = xreallocarray(out->entries, out->nentries + 1, sizeof(e));
			out->entries[out->nentries++] = e;
		}
		if (c->nerr != before) {
			cfg_schedule_free(out);
			return;
		}
		out->set = 1;
		return;
	}
	if (sc == SCTX_REPLICATION)
		cfg_type_err(c, n, "schedule", "a mapping like {type: daily, start: \"01:00\"}");
	else
		cfg_type_err(c, n, "schedule", "{once: \"YYYY-MM-DD HH:MM\"} or a list of periodic entries");
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

/* ---- effective rules: templates, defaults, digest -------------------- */

static uint64_t rule_digest(const struct cfg_rule *r);

void
cfg_rule_apply(struct cfg_rule *r, const struct cfg_template *t, const struct cfg_node *nd)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(cfg_optdefs); i++) {
		const struct optdef *d = &cfg_optdefs[i];

		if (r->options.set & d->bit)
			continue;
		if (t != NULL && (t->options.set & d->bit) && (d->kinds & (1u << r->kind)))
			opt_put(&r->options, d->bit, cfg_opt_get(&t->options, d->bit));
		else
			opt_put(&r->options, d->bit, cfg_opt_default(d, r->kind));
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
		cfg_schedule_free(&r->schedule);
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
int
cfg_rule_check_effective(struct cfg_rule *r, const struct cfg_template *t, struct cfg_errors *errs,
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
void
cfg_once_civil(int64_t t, char *out, size_t outlen)
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
	/* Settings added later count only when they differ from their
	 * default, so that a rule that does not use them keeps its digest
	 * (and a deleted job's tombstone keeps matching it). */
	if (r->target.name != NULL)
		h_str(&h, r->target.name);
	if (r->target.folder != NULL)
		h_str(&h, r->target.folder);
	if (r->target.resource_pool != NULL)
		h_str(&h, r->target.resource_pool);
	h_str(&h, r->repository);
	if (r->key_file != NULL)
		h_str(&h, r->key_file);
	for (i = 0; i < ARRAY_LEN(cfg_optdefs); i++) {
		int v = cfg_opt_get(&r->options, cfg_optdefs[i].bit);

		if (cfg_optdefs[i].bit == CFG_OPT_KEEP_MAC) {
			if (v != cfg_opt_default(&cfg_optdefs[i], r->kind))
				h_str(&h, v ? "keep_mac" : "new_mac");
			continue;
		}
		if (cfg_optdefs[i].bit == CFG_OPT_WHOLE_UPLOAD) {
			if (v != cfg_opt_default(&cfg_optdefs[i], r->kind))
				h_str(&h, "no_whole_upload");
			continue;
		}
		h_u64(&h, (uint64_t)v);
	}
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
			cfg_once_civil(e->once_at, buf, sizeof(buf));
			h_str(&h, buf);
		}
	}
	h_u64(&h, (uint64_t)r->keep_history);
	h_u64(&h, (uint64_t)r->retention);
	return h;
}
