/* What the parts of the configuration loader share; not for use outside
 * engine/config_*.c (the public interface is engine/config.h).
 *
 *   config_parse.c  one file's YAML documents to structs, per kind
 *   config_rules.c  options, bandwidth windows and schedules (shared by
 *                   rules and templates); a rule's effective settings
 *   config_check.c  cross-file checks, reload, last good versions, lookups
 *   config_dump.c   the effective configuration as text (vmferryd -n -p)
 *   config_files.c  files the configuration names: paths, secrets
 *   config_http.c   kind: system's http: (the HTTP listener) */
#ifndef VMFERRY_CONFIG_INT_H
#define VMFERRY_CONFIG_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <yaml.h>

#include "engine/config.h"

/* ---- config_parse.c -------------------------------------------------- */

/* The state of parsing one file. */
struct pctx {
	const char *path;       /* the cfg_file's own copy; every cfg_loc points here */
	const char *confdir;
	yaml_document_t *doc;
	struct cfg_errors *errs;
	int nerr;
};

/* One key of a mapping with a fixed set of keys (cfg_map_fields). */
struct field {
	const char *key;
	int required;
	yaml_node_t *val;
	yaml_node_t *keynode;
};

/* Appends "file:line:col: message" (with suffix, which may be NULL). */
void cfg_errors_vadd(struct cfg_errors *e, const struct cfg_loc *loc, const char *suffix, const char *fmt,
    va_list ap);
void cfg_schedule_free(struct cfg_schedule *s);
void cfg_system_defaults(struct cfg_system *s);
/* Node helpers: each reports its own errors at the node and counts them
 * in c->nerr; the getters return -1 or NULL after an error. */
void cfg_perr(struct pctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_type_err(struct pctx *c, const yaml_node_t *n, const char *label, const char *expected);
yaml_node_t *cfg_node_at(struct pctx *c, int idx);
const char *cfg_describe(const yaml_node_t *n, char *buf, size_t buflen);
const char *cfg_quoted(const yaml_node_t *n, char *buf, size_t buflen);
const char *cfg_get_str(struct pctx *c, yaml_node_t *n, const char *label);
int cfg_get_int(struct pctx *c, yaml_node_t *n, const char *label, int min, int max, int *out);
int cfg_get_bool(struct pctx *c, yaml_node_t *n, const char *label, int *out);
int cfg_get_rate(struct pctx *c, yaml_node_t *n, const char *label, uint64_t *out);
int cfg_get_hhmm(struct pctx *c, yaml_node_t *n, const char *label, int allow_24, int *out);
int cfg_get_days(struct pctx *c, yaml_node_t *n, const char *label, uint8_t *out);
int cfg_map_fields(struct pctx *c, yaml_node_t *n, const char *where, struct field *f, size_t nf);

/* ---- config_files.c -------------------------------------------------- */

/* name relative to dir, unless it is absolute; malloc'd. */
char *cfg_path_join(const char *dir, const char *name);
/* Opens a regular file to read it and fills *st.  Returns the descriptor,
 * -1 when open fails (errno says why) or -2 when it is not a regular file. */
int cfg_open_regular(const char *path, struct stat *st);
/* The first line of a regular file (a secret).  Returns 0 and *out
 * (malloc'd), or -1 with *why; *sys tells whether why is strerror's. */
int cfg_read_secret(const char *path, char **out, const char **why, int *sys);

/* ---- config_http.c --------------------------------------------------- */

/* kind: system's http: mapping. */
void cfg_parse_http(struct pctx *c, yaml_node_t *n, struct cfg_http *out);
void cfg_http_free(struct cfg_http *h);

/* ---- config_rules.c -------------------------------------------------- */

struct optdef {
	const char *name;
	uint32_t bit;
	unsigned kinds;   /* rule kinds the option applies to */
	int def;          /* default value */
};

/* One entry per CFG_OPT_* bit, in the order options are printed. */
#define CFG_NOPTS 12
extern const struct optdef cfg_optdefs[CFG_NOPTS];
/* An option's default for a rule kind (0 where it does not apply). */
int cfg_opt_default(const struct optdef *d, enum cfg_kind kind);
/* A target.name pattern's first fault: its offset in pat, with why; or -1. */
int cfg_name_pattern_problem(const char *pat, char *why, size_t len);
extern const char *const cfg_cutover_names[];   /* by enum cfg_cutover */
extern const char *const cfg_mode_names[];      /* by enum cfg_backup_mode */

int cfg_opt_get(const struct cfg_options *o, uint32_t bit);

enum sched_ctx { SCTX_REPLICATION, SCTX_BACKUP, SCTX_TEMPLATE };

/* kind is the rule kind, or CFG_TEMPLATE (every option allowed). */
void cfg_parse_options(struct pctx *c, yaml_node_t *n, enum cfg_kind kind, struct cfg_options *o);
void cfg_parse_bandwidth(struct pctx *c, yaml_node_t *n, struct cfg_window **out, size_t *nout);
void cfg_parse_schedule(struct pctx *c, yaml_node_t *n, enum sched_ctx sc, struct cfg_schedule *out);

/* A rule's effective settings: what it wrote, else its template's (t may
 * be NULL), else the defaults; then its digest. */
void cfg_rule_apply(struct cfg_rule *r, const struct cfg_template *t, const struct cfg_node *nd);
/* Checks that need the template applied.  Returns the number of errors. */
int cfg_rule_check_effective(struct cfg_rule *r, const struct cfg_template *t, struct cfg_errors *errs,
    const char *suffix);
/* The civil time a SCHED_ONCE entry was written as. */
void cfg_once_civil(int64_t t, char *out, size_t outlen);

/* ---- config_check.c -------------------------------------------------- */

const struct cfg_template *config_template(const struct config *c, const char *name);

#endif
