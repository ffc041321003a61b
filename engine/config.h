/* Configuration: the YAML rule files of the config directory, checked and
 * turned into plain structs.  The loader keeps the last good version of
 * every file, so a broken edit never takes a running rule away. */
#ifndef VMFERRY_CONFIG_H
#define VMFERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum cfg_kind {
	CFG_SYSTEM,
	CFG_PLATFORM,
	CFG_NODE,
	CFG_TEMPLATE,
	CFG_MIGRATION,
	CFG_REPLICATION,
	CFG_BACKUP,
};
const char *cfg_kind_name(enum cfg_kind k);

/* Where a document or value came from, for error messages. */
struct cfg_loc {
	const char *file; /* points into the owning cfg_file; never freed separately */
	int line;         /* 1-based */
	int col;          /* 1-based */
};

/* kind: system's http: the HTTP listener (metrics, API, dashboard). */
struct cfg_http {
	int enabled;
	char *listen;             /* as written: "127.0.0.1:9780", "[::1]:9780" */
	char *host;               /* the numeric address, without brackets */
	int port;
	int loopback;             /* every address it binds is a loopback one */
	char *token;              /* the secret itself; never logged or shown */
	char *token_file;         /* as written (relative to the config dir); safe to show */
	struct cfg_loc loc;
};

struct cfg_system {
	int max_tasks;                /* default 4 */
	int max_tasks_per_host;       /* default 4, never above max_tasks */
	uint64_t transfer_buffer;     /* bytes, default 4 MiB */
	uint64_t host_buffer_cap;     /* bytes, default 32 MiB */
	struct cfg_http http;         /* http.enabled: 0 without an http: key */
	int present;                  /* a kind: system document was given */
	struct cfg_loc loc;
};

struct cfg_mount {
	char *datastore;
	char *path;
};

struct cfg_platform {
	char *name;
	char *type;               /* "vsphere" */
	char *url;                /* https://host:port/sdk */
	char *username;
	char *password;           /* the secret itself; never logged or shown */
	char *password_source;    /* "file:secrets/vc-a" or "env:NAME", safe to show */
	int has_thumbprint;
	uint8_t thumbprint[32];   /* SHA-256 of the certificate (DER) */
	char *ca_file;            /* absolute path, or NULL */
	int insecure;             /* written out explicitly */
	struct cfg_mount *mounts; /* datastore_mounts */
	size_t nmounts;
	struct cfg_loc loc;
	/* added by the loader: */
	char *ca_file_name;       /* ca_file as written (relative to the config dir); safe to show */
	struct cfg_loc name_loc;
};

struct cfg_node {
	char *name;
	char *repository;
	char *temp_dir;
	/* Hot-add (SPEC §6): the VM this appliance runs in, found by name or
	 * by BIOS UUID (default: the node's own, /sys/class/dmi/id), and where
	 * attached disks appear (default /dev/disk/by-id). */
	int hotadd_off;           /* hotadd: false */
	char *appliance_vm;
	char *appliance_uuid;
	char *hotadd_devices;
	struct cfg_loc loc;
	struct cfg_loc name_loc;  /* added by the loader */
};

/* A weekly bandwidth window.  Times are minutes since local midnight;
 * to_min may be 1440 ("24:00").  limit_bps 0 pauses transfers. */
struct cfg_window {
	uint8_t days;            /* bit 0 = monday ... bit 6 = sunday */
	int from_min;
	int to_min;
	uint64_t limit_bps;
};

enum cfg_cutover { CUTOVER_SHUTDOWN, CUTOVER_POWEROFF, CUTOVER_NONE };

/* Each option remembers whether it was written, so that a template can
 * supply the ones a rule leaves out. */
struct cfg_options {
	int fast_transfer;
	int quiesce;
	int lan_free;
	int memory_snapshot;
	int auto_migrate;
	int auto_sync;                       /* replication: 开启自动同步 */
	int delete_target_on_rule_delete;
	int delete_backup_data_on_rule_delete;
	int power_on_target;
	int keep_mac;                        /* target NICs get the source's MACs */
	int whole_upload;                    /* the last-resort whole upload is allowed */
	enum cfg_cutover cutover;
	uint32_t set;                        /* bit per CFG_OPT_* that was written */
};
enum {
	CFG_OPT_FAST_TRANSFER = 1u << 0,
	CFG_OPT_QUIESCE = 1u << 1,
	CFG_OPT_LAN_FREE = 1u << 2,
	CFG_OPT_MEMORY_SNAPSHOT = 1u << 3,
	CFG_OPT_AUTO_MIGRATE = 1u << 4,
	CFG_OPT_AUTO_SYNC = 1u << 5,
	CFG_OPT_DELETE_TARGET = 1u << 6,
	CFG_OPT_DELETE_BACKUP_DATA = 1u << 7,
	CFG_OPT_POWER_ON_TARGET = 1u << 8,
	CFG_OPT_CUTOVER = 1u << 9,
	CFG_OPT_KEEP_MAC = 1u << 10,
	CFG_OPT_WHOLE_UPLOAD = 1u << 11,
};

/* Replication schedules (seed 001) and backup schedule entries (seed 002). */
enum cfg_sched_type { SCHED_NONE, SCHED_ONCE, SCHED_HOURLY, SCHED_DAILY, SCHED_WEEKLY, SCHED_MONTHLY };
enum cfg_backup_mode { BACKUP_FULL, BACKUP_INCREMENTAL, BACKUP_DIFFERENTIAL };

struct cfg_sched_entry {
	enum cfg_sched_type type;
	enum cfg_backup_mode mode;  /* backup only; replication uses incremental */
	int interval_min;           /* hourly: minutes between starts */
	uint8_t days;               /* weekly: bit 0 = monday */
	int day;                    /* monthly: 1..31 */
	int *times;                 /* run times, minutes since midnight; at least one */
	size_t ntimes;
	int64_t once_at;            /* SCHED_ONCE: unix time (local time as written) */
};

struct cfg_schedule {
	struct cfg_sched_entry *entries;
	size_t nentries;
	int set;                    /* written in the rule (or its template) */
};

struct cfg_template {
	char *name;
	struct cfg_options options;
	struct cfg_window *windows;
	size_t nwindows;
	int windows_set;
	struct cfg_schedule schedule;
	int keep_history;           /* 0 = not set */
	struct cfg_loc loc;
	struct cfg_loc name_loc;    /* added by the loader */
};

struct cfg_rule {
	enum cfg_kind kind;         /* CFG_MIGRATION, CFG_REPLICATION or CFG_BACKUP */
	char *name;
	char *source_platform;
	char **vms;
	size_t nvms;
	char *node;
	struct {
		char *platform;
		char *datacenter;
		char *host;
		char *datastore;
		char *name;             /* pattern, "{vm}" for the source's name; NULL = "{vm}" */
		char *folder;           /* VM folder path below the datacenter's, or NULL */
		char *resource_pool;    /* pool path below the host's root pool, or NULL */
	} target;                   /* migration, replication */
	char *repository;           /* backup: path on the node; defaults to the node's repository */
	char *key_file;             /* backup: encryption.key_file as written, or NULL (no encryption) */
	char *template_name;        /* NULL if none; already applied */
	struct cfg_options options;
	struct cfg_window *windows;
	size_t nwindows;
	struct cfg_schedule schedule;
	int keep_history;           /* replication, default 3 */
	int retention;              /* backup, 1..64, default 7 */
	uint64_t digest;            /* hash of the rule's effective settings: changes when an edit matters */
	struct cfg_loc loc;
	/* Added by the loader.  What the rule itself wrote (CFG_W_*), so that a
	 * template can be applied again when it changes, and where its
	 * references are, for error messages. */
	uint32_t written;
	struct {
		struct cfg_loc name;
		struct cfg_loc source_platform;
		struct cfg_loc node;
		struct cfg_loc target_platform;
		struct cfg_loc target_name;
		struct cfg_loc template_name;
		struct cfg_loc key_file;
		struct cfg_loc *vms;    /* nvms entries */
	} locs;
};
enum {
	CFG_W_WINDOWS = 1u << 0,
	CFG_W_SCHEDULE = 1u << 1,
	CFG_W_KEEP_HISTORY = 1u << 2,
	CFG_W_RETENTION = 1u << 3,
	CFG_W_REPOSITORY = 1u << 4,
};

/* One parsed file. */
struct cfg_file {
	char *path;                 /* as given (config dir + name) */
	/* added by the loader: */
	char *text;                 /* what was parsed (NUL-terminated), so it can be kept */
	size_t len;
	int fallback;               /* the file on disk is broken or rejected: this last
	                             * good version is in effect in its place */
	struct cfg_system system;   /* system.present tells whether this file had one */
	struct cfg_platform *platforms;
	size_t nplatforms;
	struct cfg_node *nodes;
	size_t nnodes;
	struct cfg_template *templates;
	size_t ntemplates;
	struct cfg_rule *rules;
	size_t nrules;
};

/* Error list: each message is "file:line:col: reason". */
struct cfg_errors {
	char **msgs;
	size_t n;
};
void cfg_errors_add(struct cfg_errors *e, const struct cfg_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_errors_free(struct cfg_errors *e);

/* Parse one file's text.  confdir resolves password_file and ca_file.
 * Returns 0 and fills *out, or -1 with errors appended (out is then empty). */
int cfg_parse_buffer(const char *path, const char *text, size_t len, const char *confdir,
    struct cfg_file *out, struct cfg_errors *errs);
void cfg_file_free(struct cfg_file *f);

/* The effective configuration: the union of all good files, cross-checked. */
struct config {
	struct cfg_system system;
	struct cfg_platform **platforms;  /* pointers into the files below */
	size_t nplatforms;
	struct cfg_node **nodes;
	size_t nnodes;
	struct cfg_template **templates;
	size_t ntemplates;
	struct cfg_rule **rules;
	size_t nrules;
};

/* Loader state that survives reloads: the last good version of each file. */
struct cfg_loader {
	char *dir;
	struct cfg_file **good;     /* last good version of each file, by path */
	size_t ngood;
	struct config cur;          /* effective configuration built from good[] */
	uint64_t generation;        /* bumped on every reload */
	/* added by the loader: files replaced or removed by the last reload,
	 * freed by the next one, so the previous generation stays readable */
	struct cfg_file **retired;
	size_t nretired;
};

void cfg_loader_init(struct cfg_loader *ld, const char *dir);
void cfg_loader_free(struct cfg_loader *ld);
/* Read every *.yaml file of the directory.  Files that parse and cross-check
 * replace their last good version; broken files keep their last good
 * version (if any) and add errors; removed files drop out.  Returns the
 * number of errors (0 = everything loaded). */
int cfg_loader_reload(struct cfg_loader *ld, struct cfg_errors *errs);
/* Before the first reload: take the text of a file's last good version,
 * kept from an earlier run (name is the file's name in the directory).
 * Returns 0, or -1 with errors appended when the text no longer loads on
 * its own (then the file has no last good version). */
int cfg_loader_seed(struct cfg_loader *ld, const char *name, const char *text, size_t len,
    struct cfg_errors *errs);
/* The file's name in the config directory. */
const char *cfg_file_name(const struct cfg_file *f);
/* Lifetime: every reload parses every file again, so unchanged rules come
 * back as new objects (compare by kind+name and digest, not by pointer).
 * Objects of the previous generation stay valid and unchanged until the
 * NEXT reload (or cfg_loader_free), so a caller may compare old and new
 * right after a reload; it must not keep them longer.  One exception: a
 * file whose new text is broken keeps its last good objects, which are
 * reused (templates are re-applied to them in place). */

const struct cfg_platform *config_platform(const struct config *c, const char *name);
const struct cfg_node *config_node(const struct config *c, const char *name);
const struct cfg_rule *config_rule(const struct config *c, enum cfg_kind kind, const char *name);
/* Find a rule by name over all rule kinds (names are unique per kind;
 * the first match in migration, replication, backup order). */
const struct cfg_rule *config_rule_any(const struct config *c, const char *name);
/* The name the target VM of source VM vm gets: target.name with {vm}
 * replaced (malloc'd). */
char *cfg_target_name(const struct cfg_rule *r, const char *vm);

/* The bandwidth limit of a rule at a local time: returns 1 and sets *bps
 * when a window applies, 0 when unlimited.  Windows are checked in order,
 * the first that contains the time wins. */
int cfg_window_limit(const struct cfg_window *w, size_t n, int weekday_mon0, int minute_of_day,
    uint64_t *bps);

#include <stdio.h>
/* Print the effective configuration in a stable, secret-free text form
 * (vmferryd -n -p, golden tests). */
void config_dump(const struct config *c, FILE *out);

#endif
