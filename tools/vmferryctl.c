/* vmferryctl: the command line for vmferryd's status socket.  Each command
 * sends one request line and prints the answer as a table, or as the raw
 * JSON with --json; watch follows the event stream. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

#define DEFAULT_SOCKET "/run/vmferry/vmferry.sock"

static int opt_json;
static FILE *in;
static int sock = -1;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: vmferryctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  ping                          daemon status\n"
	    "  rules [--kind K]              configured rules and config errors\n"
	    "  jobs [RULE] [--kind K]        jobs, pending ones included\n"
	    "  show RULE [VM]                a rule's configuration and jobs (查看配置)\n"
	    "  start|stop|delete RULE [VM]   启动 / 停止 / 删除\n"
	    "  migrate RULE [VM]             开始迁移: catch up and cut over a ready migration\n"
	    "  run RULE [VM] [--mode M]      立即执行 (replication, backup)\n"
	    "  points RULE VM                a replication's or a backup's restore points\n"
	    "  failover RULE VM [--point P] [--permanent]\n"
	    "  failback RULE VM\n"
	    "  revert RULE VM --point P\n"
	    "  restore RULE [VM] [--point P] [--target original|new|instant] [--name NAME]\n"
	    "          [--platform P --datacenter D --host H --datastore S] [--power-on] [--listen unix|127.0.0.1:PORT]\n"
	    "  instant [--stop ID]           瞬时恢复: running instant recoveries (NBD exports), or stop one\n"
	    "  verify RULE [VM] [--point P]  re-read a backup's chunks (exit 1: some are damaged)\n"
	    "  log RULE VM [-n N]            查看日志\n"
	    "  stats [RULE [VM]]             查看统计信息 (clears the unviewed-error count)\n"
	    "  watch [RULE] [--until STATE[,STATE...]]  live progress\n"
	    "  inventory PLATFORM [--refresh]\n"
	    "  reload                        re-read the config directory\n"
	    "options: --kind migration|replication|backup to pick among rules of one name\n"
	    "socket: -s, else $VMFERRY_SOCKET, else " DEFAULT_SOCKET "\n");
	exit(2);
}

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vmferryctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void
connect_daemon(const char *path)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		die("socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	if ((sock = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		die("socket: %s", strerror(errno));
	if (connect(sock, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		die("cannot connect to vmferryd at %s: %s", path, strerror(errno));
	if ((in = fdopen(dup(sock), "r")) == NULL)
		die("fdopen: %s", strerror(errno));
}

static void
send_request(json_t *req)
{
	char *s = json_dumps(req, JSON_COMPACT);
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t n = write(sock, s + off, len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write: %s", strerror(errno));
		}
		off += (size_t)n;
	}
	if (write(sock, "\n", 1) != 1)
		die("write: %s", strerror(errno));
	free(s);
}

/* For tables and messages: a copy of an answer with every string made
 * printable (names and peers' messages may hold control characters that
 * would start a line of their own or drive the terminal).  --json output
 * is left as sent: JSON escapes them itself. */
static json_t *
make_printable(json_t *o)
{
	const char *k;
	json_t *v;
	size_t i;
	char *p;

	if (json_is_string(o)) {
		p = str_printable(json_string_value(o));
		o = json_string(p);
		free(p);
		return o;
	}
	if (json_is_object(o))
		json_object_foreach(o, k, v)
			json_object_set_new(o, k, make_printable(v));
	else if (json_is_array(o))
		json_array_foreach(o, i, v)
			json_array_set_new(o, i, make_printable(v));
	return json_incref(o);
}

/* One answer line; NULL at end of stream. */
static json_t *
read_reply(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	json_error_t err;
	json_t *o;

	n = getline(&line, &cap, in);
	if (n <= 0) {
		free(line);
		return NULL;
	}
	o = json_loads(line, 0, &err);
	if (o == NULL)
		die("unreadable answer from vmferryd: %s", err.text);
	free(line);
	if (!opt_json) {
		json_t *shown = make_printable(o);

		json_decref(o);
		o = shown;
	}
	return o;
}

static json_t *
call(json_t *req)
{
	json_t *resp;

	send_request(req);
	json_decref(req);
	if ((resp = read_reply()) == NULL)
		die("vmferryd closed the connection without answering");
	if (!json_is_true(json_object_get(resp, "ok"))) {
		const char *e = json_string_value(json_object_get(resp, "error"));

		if (opt_json) {
			char *s = json_dumps(resp, JSON_INDENT(2));

			puts(s);
			free(s);
		}
		die("%s", e ? e : "request failed");
	}
	return resp;
}

static void
print_json(const json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);

	puts(s);
	free(s);
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static long long
jint(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static void
fmt_size(long long n, char *buf, size_t len)
{
	units_format_size(n < 0 ? 0 : (uint64_t)n, buf, len);
}

static void
fmt_time(long long t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void
state_text(const json_t *j, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", jstr(j, "label_zh"), jstr(j, "state"));
}

static void
print_jobs(const json_t *jobs)
{
	size_t i;
	json_t *j;

	printf("%-20s %-16s %-11s %-26s %5s %21s %12s  %s\n", "RULE", "VM", "KIND", "STATE", "PROG",
	    "BYTES", "RATE", "NOTE");
	json_array_foreach(jobs, i, j) {
		char st[80], done[32], total[32], rate[32], bytes[70], note[300];

		state_text(j, st, sizeof(st));
		fmt_size(jint(j, "bytes_done"), done, sizeof(done));
		fmt_size(jint(j, "bytes_total"), total, sizeof(total));
		fmt_size(jint(j, "rate_bps"), rate, sizeof(rate));
		strcat(rate, "/s");
		snprintf(bytes, sizeof(bytes), "%s/%s", done, total);
		note[0] = '\0';
		if (json_is_true(json_object_get(j, "pending")))
			snprintf(note, sizeof(note), "pending #%lld", jint(j, "queue_position"));
		if (*jstr(j, "error"))
			snprintf(note, sizeof(note), "%s", jstr(j, "error"));
		/* Chinese labels are 3 bytes a glyph but 2 columns wide. */
		printf("%-20s %-16s %-11s %-*s %4lld%% %21s %12s  %s\n", jstr(j, "rule"), jstr(j, "vm"),
		    jstr(j, "kind"), (int)(26 + strlen(jstr(j, "label_zh")) / 3), st, jint(j, "progress"), bytes,
		    rate, note);
	}
}

static json_t *
req_new(const char *op)
{
	return json_pack("{s:s}", "op", op);
}

static void
req_str(json_t *req, const char *key, const char *val)
{
	json_t *v;

	if (val == NULL)
		return;
	/* jansson takes UTF-8 only; dropping the key would widen the request. */
	if ((v = json_string(val)) == NULL) {
		char *shown = str_printable(val);

		die("%s \"%s\" is not valid UTF-8", key, shown);
	}
	json_object_set_new(req, key, v);
}

static int
cmd_rules(json_t *resp)
{
	json_t *rules = json_object_get(resp, "rules"), *r, *errs = json_object_get(resp, "config_errors"), *e;
	size_t i;

	printf("%-20s %-11s %-12s %-6s %-30s %s\n", "RULE", "KIND", "SOURCE", "JOBS", "STATES", "FILE");
	json_array_foreach(rules, i, r) {
		char states[256] = "", where[300];
		const char *k;
		json_t *v;

		json_object_foreach(json_object_get(r, "states"), k, v) {
			size_t l = strlen(states);

			snprintf(states + l, sizeof(states) - l, "%s%s=%lld", l ? "," : "", k,
			    (long long)json_integer_value(v));
		}
		snprintf(where, sizeof(where), "%s:%lld", jstr(r, "file"), jint(r, "line"));
		printf("%-20s %-11s %-12s %-6lld %-30s %s\n", jstr(r, "name"), jstr(r, "kind"),
		    jstr(r, "source_platform"), jint(r, "jobs"), states, where);
	}
	if (json_array_size(errs) > 0) {
		printf("\nconfiguration errors (those files are ignored; rules keep their last good version):\n");
		json_array_foreach(errs, i, e)
			printf("  %s\n", json_string_value(e));
	}
	return 0;
}

static int
cmd_inventory(json_t *resp)
{
	json_t *v, *d;
	size_t i, k;

	printf("platform %s (inventory read %.0f s ago)\n\n", jstr(resp, "platform"),
	    json_number_value(json_object_get(resp, "age_s")));
	printf("%-20s %-11s %-12s %4s %8s  %-34s %s\n", "VM", "POWER", "HOST", "CPUS", "MEMORY", "DISKS", "RULES");
	json_array_foreach(json_object_get(resp, "vms"), i, v) {
		char disks[256] = "", rules[256] = "";
		const char *kind;
		json_t *r;

		json_array_foreach(json_object_get(v, "disks"), k, d) {
			char sz[32];
			size_t l = strlen(disks);

			fmt_size(jint(d, "capacity"), sz, sizeof(sz));
			snprintf(disks + l, sizeof(disks) - l, "%s%s%s", l ? ", " : "", sz,
			    strncmp(jstr(d, "mode"), "independent", 11) == 0 ? " (independent)" : "");
		}
		/* The seed marks VMs a rule already covers: (已迁移) / (已复制). */
		json_object_foreach(json_object_get(v, "claimed_by"), kind, r) {
			size_t l = strlen(rules);
			const char *mark = strcmp(kind, "migration") == 0 ? "已迁移" :
			                   strcmp(kind, "replication") == 0 ? "已复制" : "已备份";

			snprintf(rules + l, sizeof(rules) - l, "%s%s:%s (%s)", l ? " " : "", kind, json_string_value(r), mark);
		}
		printf("%-20s %-11s %-12s %4lld %6lldMB  %-34s %s\n", jstr(v, "name"), jstr(v, "power"), jstr(v, "host"),
		    jint(v, "cpus"), jint(v, "memory_mb"), disks, rules);
		if (json_object_get(v, "problem") != NULL)
			printf("  ^ cannot be migrated: the platform sent unusable data: %s\n", jstr(v, "problem"));
	}
	printf("\nhosts:");
	json_array_foreach(json_object_get(resp, "hosts"), i, v)
		printf(" %s", jstr(v, "name"));
	printf("\ndatastores:");
	json_array_foreach(json_object_get(resp, "datastores"), i, v) {
		char cap[32], fr[32];

		fmt_size(jint(v, "capacity"), cap, sizeof(cap));
		fmt_size(jint(v, "free"), fr, sizeof(fr));
		printf(" %s (", jstr(v, "name"));
		if (*jstr(v, "type") != '\0' && jint(v, "vmfs_version") > 0)
			printf("%s %lld, ", jstr(v, "type"), jint(v, "vmfs_version"));
		else if (*jstr(v, "type") != '\0')
			printf("%s, ", jstr(v, "type"));
		printf("%s free of %s)", fr, cap);
	}
	printf("\n");
	return 0;
}

static int
cmd_log(json_t *resp)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(resp, "log"), i, e)
		printf("%s  %-7s %s\n", jstr(e, "time_local"), jstr(e, "level"), jstr(e, "message"));
	return 0;
}

static int
cmd_stats(json_t *resp)
{
	json_t *e;
	size_t i;

	printf("%-20s %-16s %-11s %9s %9s %12s %9s  %s\n", "RULE", "VM", "KIND", "SUCCESSES", "FAILURES",
	    "DATA", "UNVIEWED", "LAST FAILURE");
	json_array_foreach(json_object_get(resp, "jobs"), i, e) {
		char sz[32], when[32];

		fmt_size(jint(e, "bytes"), sz, sizeof(sz));
		fmt_time(jint(e, "last_failure"), when, sizeof(when));
		printf("%-20s %-16s %-11s %9lld %9lld %12s %9lld  %s %s\n", jstr(e, "rule"), jstr(e, "vm"),
		    jstr(e, "kind"), jint(e, "successes"), jint(e, "failures"), sz, jint(e, "unviewed_errors"),
		    when, jstr(e, "last_error"));
	}
	json_array_foreach(json_object_get(resp, "rules"), i, e) {
		char sz[32];

		fmt_size(jint(e, "bytes"), sz, sizeof(sz));
		printf("%-20s %-16s %-11s %9lld %9lld %12s %9lld\n", jstr(e, "rule"), "(rule total)",
		    jstr(e, "kind"), jint(e, "successes"), jint(e, "failures"), sz, jint(e, "unviewed_errors"));
	}
	return 0;
}

static int
cmd_show(json_t *resp)
{
	json_t *r = json_object_get(resp, "rule");

	if (json_is_object(r)) {
		char *s = json_dumps(r, JSON_INDENT(2));

		printf("rule %s (%s), %s:%lld\n%s\n\n", jstr(r, "name"), jstr(r, "kind"), jstr(r, "file"),
		    jint(r, "line"), s);
		free(s);
	} else {
		printf("(the rule is no longer configured; its jobs remain)\n\n");
	}
	print_jobs(json_object_get(resp, "jobs"));
	if (json_is_object(json_object_get(resp, "details"))) {
		json_t *d = json_object_get(resp, "details"), *v;
		const char *key;

		printf("\n");
		json_object_foreach(d, key, v) {
			char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);

			printf("%-18s %s\n", key, s ? s : "?");
			free(s);
		}
	}
	if (json_object_get(resp, "log") != NULL) {
		printf("\nrecent log:\n");
		cmd_log(resp);
	}
	return 0;
}

/* The kind of the jobs an answer of show lists. */
static const char *
shown_kind(const json_t *resp)
{
	const json_t *r = json_object_get(resp, "rule");

	if (json_is_object(r))
		return jstr(r, "kind");
	return jstr(json_array_get(json_object_get(resp, "jobs"), 0), "kind");
}

/* points: the restore points from a replication or backup job's details. */
static int
cmd_points(json_t *resp)
{
	json_t *d = json_object_get(resp, "details"), *pts = json_object_get(d, "points"), *e;
	const char *kind = shown_kind(resp);
	int backup = strcmp(kind, "backup") == 0;
	size_t i;

	if (!json_is_array(pts) || (!backup && strcmp(kind, "replication") != 0)) {
		fprintf(stderr, "vmferryctl: points: not a replication or backup job, or its record cannot be read\n");
		return 1;
	}
	if (backup)
		printf("%-6s %-20s %-13s %-6s %16s %16s  %s\n", "POINT", "TIME", "MODE", "PARENT", "BYTES-READ",
		    "BYTES-STORED", "STATE");
	else
		printf("%-6s %-20s %-16s %16s %16s\n", "POINT", "TIME", "SNAPSHOT", "BYTES READ", "BYTES WRITTEN");
	json_array_foreach(pts, i, e) {
		time_t t = (time_t)(jint(e, "time_ms") / 1000);
		struct tm tm;
		char when[32], parent[24];

		localtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		if (!backup) {
			printf("%-6lld %-20s %-16s %16lld %16lld\n", jint(e, "point"), when, jstr(e, "snapshot"),
			    jint(e, "bytes_read"), jint(e, "bytes_written"));
			continue;
		}
		/* A point whose manifest could not be read is listed bare. */
		if (jint(e, "time_ms") <= 0)
			snprintf(when, sizeof(when), "-");
		if (jint(e, "parent") > 0)
			snprintf(parent, sizeof(parent), "%lld", jint(e, "parent"));
		else
			snprintf(parent, sizeof(parent), "-");
		printf("%-6lld %-20s %-13s %-6s %16lld %16lld  %s\n", jint(e, "point"), when, jstr(e, "mode"), parent,
		    jint(e, "bytes_read"), jint(e, "bytes_stored"), jstr(e, "state"));
	}
	if (json_array_size(pts) == 0)
		printf("(no restore point yet)\n");
	return 0;
}

/* verify: a summary, then every damaged chunk with the points that use
 * it; 1 when anything is damaged. */
static int
cmd_verify(json_t *resp, const char *rule)
{
	json_t *dmg = json_object_get(resp, "damaged"), *e, *p;
	char sz[32], *shown = str_printable(rule);
	size_t i, k;

	fmt_size(jint(resp, "bytes"), sz, sizeof(sz));
	printf("%s: %lld points verified, %lld chunks (%s) re-read: ", shown, jint(resp, "points"),
	    jint(resp, "chunks"), sz);
	free(shown);
	if (json_array_size(dmg) == 0) {
		printf("all sound\n");
		return 0;
	}
	printf("%zu damaged\n", json_array_size(dmg));
	json_array_foreach(dmg, i, e) {
		const char *chunk = jstr(e, "chunk"), *why = jstr(e, "why");
		size_t n = strlen(chunk);

		if (*chunk != '\0') {
			printf("chunk %s used by", chunk);
			/* The daemon's reason names the chunk again. */
			if (strncmp(why, "chunk ", 6) == 0 && strncmp(why + 6, chunk, n) == 0 &&
			    strncmp(why + 6 + n, ": ", 2) == 0)
				why += 8 + n;
		} else {
			printf("point");
		}
		json_array_foreach(json_object_get(e, "points"), k, p)
			printf("%s %s/%s/%lld", k ? "," : "", jstr(p, "rule"), jstr(p, "vm"), jint(p, "point"));
		printf(": %s\n", why);
	}
	printf("damaged chunks were moved to the repository's damaged/: the next backup of each VM reads their "
	       "bytes from the source again\n");
	return 1;
}

/* Instant recoveries, one line per disk (restore --target instant answers
 * with one, `instant` with all). */
static int
cmd_instant(json_t *list)
{
	json_t *x, *d;
	size_t i, k;
	char sz[32];

	printf("%-4s %-16s %-16s %-6s %-4s %10s %-8s %s\n", "ID", "RULE", "VM", "POINT", "DISK", "SIZE", "STATE",
	    "NBD URI");
	json_array_foreach(list, i, x) {
		char *rule = str_printable(jstr(x, "rule")), *vm = str_printable(jstr(x, "vm"));

		json_array_foreach(json_object_get(x, "disks"), k, d) {
			const char *state = jstr(x, "state");

			fmt_size(jint(d, "capacity"), sz, sizeof(sz));
			if (strcmp(state, "running") == 0 && !json_is_true(json_object_get(d, "running")))
				state = "down";
			printf("%-4lld %-16s %-16s %-6lld %-4lld %10s %-8s %s\n", jint(x, "id"), rule, vm, jint(x, "point"),
			    jint(d, "disk"), sz, state, jstr(d, "uri"));
		}
		free(rule);
		free(vm);
	}
	if (json_array_size(list) == 0)
		printf("(no instant recovery running)\n");
	return 0;
}

static int
cmd_results(json_t *resp)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(resp, "results"), i, e) {
		if (strcmp(jstr(e, "result"), "created") == 0)
			printf("%s: job created (%s)\n", jstr(e, "vm"), jstr(e, "state"));
		else if (strcmp(jstr(e, "result"), "done") == 0)
			printf("%s: %s -> %s\n", jstr(e, "vm"), jstr(e, "state_before"), jstr(e, "state"));
		else
			printf("%s: %s (still %s)\n", jstr(e, "vm"), jstr(e, "result"), jstr(e, "state"));
	}
	return 0;
}

/* ---- watch ---- */

struct wjob {
	char *key;
	json_t *job;
};

static struct wjob *wjobs;
static size_t nwjobs;

static void
watch_update(json_t *job, int deleted)
{
	char *key = xasprintf("%s\x1f%s\x1f%s", jstr(job, "kind"), jstr(job, "rule"), jstr(job, "vm"));
	size_t i;

	for (i = 0; i < nwjobs; i++)
		if (strcmp(wjobs[i].key, key) == 0)
			break;
	if (deleted) {
		if (i < nwjobs) {
			free(wjobs[i].key);
			json_decref(wjobs[i].job);
			wjobs[i] = wjobs[--nwjobs];
		}
		free(key);
		return;
	}
	if (i == nwjobs) {
		wjobs = xreallocarray(wjobs, nwjobs + 1, sizeof(*wjobs));
		wjobs[nwjobs].key = key;
		wjobs[nwjobs].job = NULL;
		nwjobs++;
	} else {
		free(key);
	}
	json_decref(wjobs[i].job);
	wjobs[i].job = json_incref(job);
}

static void
watch_draw(int tty)
{
	size_t i;

	if (!tty)
		return;
	printf("\033[H\033[2J");
	printf("vmferry watch — %zu jobs (Ctrl-C to leave)\n\n", nwjobs);
	for (i = 0; i < nwjobs; i++) {
		json_t *j = wjobs[i].job;
		long long p = jint(j, "progress");
		char bar[41], st[80], rate[32];
		int k, fill = (int)(p * 40 / 100);

		for (k = 0; k < 40; k++)
			bar[k] = k < fill ? '#' : '.';
		bar[40] = '\0';
		state_text(j, st, sizeof(st));
		fmt_size(jint(j, "rate_bps"), rate, sizeof(rate));
		printf("%-16s %-14s %-*s [%s] %3lld%% %10s/s %s\n", jstr(j, "rule"), jstr(j, "vm"),
		    (int)(24 + strlen(jstr(j, "label_zh")) / 3), st, bar, p, rate, jstr(j, "error"));
	}
	fflush(stdout);
}

static int
in_list(const char *state, const char *list)
{
	size_t n = strlen(state);
	const char *p = list;

	while (p != NULL && *p) {
		if (strncmp(p, state, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
		p = strchr(p, ',');
		if (p != NULL)
			p++;
	}
	return 0;
}

/* 0: keep watching; 1: every job reached one of the states; -1: one failed. */
static int
watch_done(const char *until)
{
	size_t i;
	int all = nwjobs > 0;

	if (until == NULL)
		return 0;
	for (i = 0; i < nwjobs; i++) {
		const char *st = jstr(wjobs[i].job, "state");

		if (strcmp(st, "failed") == 0 && !in_list(st, until))
			return -1;
		if (!in_list(st, until))
			all = 0;
	}
	return all;
}

static int
cmd_watch(json_t *first, const char *until)
{
	int tty = isatty(STDOUT_FILENO) && !opt_json;
	json_t *ev, *j;
	size_t i;
	int done;

	json_array_foreach(json_object_get(first, "jobs"), i, j)
		watch_update(j, 0);
	if (opt_json)
		print_json(first);
	else if (!tty)
		for (i = 0; i < nwjobs; i++) {
			json_t *x = wjobs[i].job;

			printf("%s/%s %s %s %lld%%\n", jstr(x, "rule"), jstr(x, "vm"), jstr(x, "state"),
			    jstr(x, "label_zh"), jint(x, "progress"));
		}
	watch_draw(tty);
	fflush(stdout);
	while ((done = watch_done(until)) == 0 && (ev = read_reply()) != NULL) {
		const char *what = jstr(ev, "event");

		j = json_object_get(ev, "job");
		watch_update(j, strcmp(what, "deleted") == 0);
		if (opt_json) {
			char *s = json_dumps(ev, JSON_COMPACT);

			puts(s);
			free(s);
		} else if (!tty && strcmp(what, "progress") != 0) {
			printf("%s/%s %s %s %lld%%%s%s\n", jstr(j, "rule"), jstr(j, "vm"),
			    strcmp(what, "deleted") == 0 ? "deleted" : jstr(j, "state"), jstr(j, "label_zh"),
			    jint(j, "progress"), *jstr(j, "error") ? " " : "", jstr(j, "error"));
		} else if (!tty) {
			static long long last_p = -1;

			/* Plain output: a line per 10 %. */
			if (jint(j, "progress") / 10 != last_p / 10) {
				last_p = jint(j, "progress");
				printf("%s/%s %s %lld%%\n", jstr(j, "rule"), jstr(j, "vm"), jstr(j, "state"), last_p);
			}
		}
		watch_draw(tty);
		fflush(stdout);
		json_decref(ev);
	}
	if (done == 0 && until != NULL)
		die("vmferryd closed the connection");
	return done < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "kind", required_argument, NULL, 'k' },
		{ "refresh", no_argument, NULL, 'r' },
		{ "mode", required_argument, NULL, 'm' },
		{ "point", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'L' },
		{ "stop", required_argument, NULL, 'S' },
		{ "permanent", no_argument, NULL, 'P' },
		{ "until", required_argument, NULL, 'u' },
		{ "name", required_argument, NULL, 'N' },
		{ "platform", required_argument, NULL, 'F' },
		{ "datacenter", required_argument, NULL, 'D' },
		{ "host", required_argument, NULL, 'H' },
		{ "datastore", required_argument, NULL, 'A' },
		{ "power-on", no_argument, NULL, 'O' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = getenv("VMFERRY_SOCKET"), *kind = NULL, *mode = NULL, *point = NULL,
	           *target = NULL, *until = NULL, *listen = NULL, *stop = NULL, *cmd, *a1, *a2, *name = NULL,
	           *platform = NULL, *dc = NULL, *host = NULL, *ds = NULL;
	int ch, refresh = 0, permanent = 0, rc = 0, power_on = 0;
	long limit = 0;
	json_t *req, *resp;

	if (path == NULL)
		path = DEFAULT_SOCKET;
	/* Options may also follow the command. */
	while ((ch = getopt_long(argc, argv, "s:n:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'j': opt_json = 1; break;
		case 'k': kind = optarg; break;
		case 'r': refresh = 1; break;
		case 'm': mode = optarg; break;
		case 'p': point = optarg; break;
		case 't': target = optarg; break;
		case 'L': listen = optarg; break;
		case 'S': stop = optarg; break;
		case 'P': permanent = 1; break;
		case 'u': until = optarg; break;
		case 'N': name = optarg; break;
		case 'F': platform = optarg; break;
		case 'D': dc = optarg; break;
		case 'H': host = optarg; break;
		case 'A': ds = optarg; break;
		case 'O': power_on = 1; break;
		case 'n': limit = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	cmd = argv[optind++];
	a1 = optind < argc ? argv[optind++] : NULL;
	a2 = optind < argc ? argv[optind++] : NULL;
	if (optind < argc)
		usage();

	req = req_new(strcmp(cmd, "points") == 0 ? "show" : cmd);
	if (strcmp(cmd, "inventory") == 0) {
		if (a1 == NULL)
			usage();
		req_str(req, "platform", a1);
		if (refresh)
			json_object_set_new(req, "refresh", json_true());
	} else if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "reload") == 0) {
		if (a1 != NULL)
			usage();
	} else if (strcmp(cmd, "rules") == 0) {
		req_str(req, "kind", kind);
	} else if (strcmp(cmd, "jobs") == 0 || strcmp(cmd, "stats") == 0 || strcmp(cmd, "watch") == 0) {
		req_str(req, "rule", a1);
		if (strcmp(cmd, "watch") != 0)
			req_str(req, "vm", a2);
		else if (a2 != NULL)
			usage();
		req_str(req, "kind", kind);
	} else if (strcmp(cmd, "show") == 0 || strcmp(cmd, "start") == 0 || strcmp(cmd, "stop") == 0 ||
	           strcmp(cmd, "delete") == 0 || strcmp(cmd, "run") == 0 || strcmp(cmd, "restore") == 0 ||
	           strcmp(cmd, "migrate") == 0) {
		if (a1 == NULL)
			usage();
		req_str(req, "rule", a1);
		req_str(req, "vm", a2);
		if (strcmp(cmd, "migrate") != 0)
			req_str(req, "kind", kind);
		req_str(req, "mode", mode);
		req_str(req, "point", point);
		req_str(req, "target", target);
		req_str(req, "listen", listen);
		if (strcmp(cmd, "restore") == 0) {
			req_str(req, "name", name);
			req_str(req, "platform", platform);
			req_str(req, "datacenter", dc);
			req_str(req, "host", host);
			req_str(req, "datastore", ds);
			if (power_on)
				json_object_set_new(req, "power_on", json_true());
		}
	} else if (strcmp(cmd, "instant") == 0) {
		if (a1 != NULL)
			usage();
		req_str(req, "stop", stop);
	} else if (strcmp(cmd, "verify") == 0) {
		if (a1 == NULL)
			usage();
		req_str(req, "rule", a1);
		req_str(req, "vm", a2);
		req_str(req, "point", point);
	} else if (strcmp(cmd, "failover") == 0 || strcmp(cmd, "failback") == 0 || strcmp(cmd, "revert") == 0 ||
	           strcmp(cmd, "log") == 0 || strcmp(cmd, "points") == 0) {
		if (a1 == NULL || a2 == NULL)
			usage();
		req_str(req, "rule", a1);
		req_str(req, "vm", a2);
		req_str(req, "point", point);
		if (permanent)
			json_object_set_new(req, "permanent", json_true());
		if (strcmp(cmd, "points") == 0)
			req_str(req, "kind", kind);
		if (strcmp(cmd, "log") == 0) {
			req_str(req, "kind", kind);
			if (limit > 0)
				json_object_set_new(req, "limit", json_integer(limit));
		}
	} else {
		json_decref(req);
		fprintf(stderr, "vmferryctl: unknown command %s\n", cmd);
		usage();
	}

	connect_daemon(path);
	resp = call(req);
	if (strcmp(cmd, "watch") == 0) {
		rc = cmd_watch(resp, until);
	} else if (opt_json) {
		print_json(resp);
		/* As without --json: a damaged chunk fails the command. */
		if (strcmp(cmd, "verify") == 0 && json_array_size(json_object_get(resp, "damaged")) > 0)
			rc = 1;
	} else if (strcmp(cmd, "verify") == 0) {
		rc = cmd_verify(resp, a1);
	} else if (strcmp(cmd, "rules") == 0) {
		rc = cmd_rules(resp);
	} else if (strcmp(cmd, "jobs") == 0) {
		print_jobs(json_object_get(resp, "jobs"));
		printf("\n%lld active, %lld pending\n", jint(resp, "active"), jint(resp, "pending"));
		if (json_is_string(json_object_get(resp, "store_error")))
			printf("warning: %s (retried every second; jobs wait and resume by themselves)\n",
			    jstr(resp, "store_error"));
	} else if (strcmp(cmd, "show") == 0) {
		rc = cmd_show(resp);
	} else if (strcmp(cmd, "points") == 0) {
		rc = cmd_points(resp);
	} else if (strcmp(cmd, "log") == 0) {
		rc = cmd_log(resp);
	} else if (strcmp(cmd, "inventory") == 0) {
		rc = cmd_inventory(resp);
	} else if (strcmp(cmd, "stats") == 0) {
		rc = cmd_stats(resp);
	} else if (strcmp(cmd, "ping") == 0) {
		json_t *e;
		size_t i;

		printf("vmferryd %s up %llds: %lld jobs, %lld active, %lld pending, %lld clients\n", jstr(resp, "version"),
		    jint(resp, "uptime_s"), jint(resp, "jobs"), jint(resp, "active"), jint(resp, "pending"),
		    jint(resp, "clients"));
		json_array_foreach(json_object_get(resp, "config_errors"), i, e)
			printf("config error: %s\n", json_string_value(e));
		e = json_object_get(resp, "store");
		if (json_is_string(json_object_get(e, "error")))
			printf("store error: %s (for %llds, retried every second)\n", jstr(e, "error"), jint(e, "failing_s"));
	} else if (strcmp(cmd, "instant") == 0 && stop != NULL) {
		printf("instant recovery %lld stopped: its exports and overlay are gone\n", jint(resp, "stopped"));
	} else if (strcmp(cmd, "instant") == 0) {
		rc = cmd_instant(json_object_get(resp, "instant"));
	} else if (strcmp(cmd, "restore") == 0 && json_is_object(json_object_get(resp, "instant"))) {
		json_t *one = json_array();

		json_array_append(one, json_object_get(resp, "instant"));
		rc = cmd_instant(one);
		json_decref(one);
	} else if (strcmp(cmd, "reload") == 0) {
		json_t *e;
		size_t i;

		printf("configuration reloaded (generation %lld)\n", jint(resp, "config_generation"));
		json_array_foreach(json_object_get(resp, "config_errors"), i, e)
			printf("config error: %s\n", json_string_value(e));
	} else if (json_object_get(resp, "results") != NULL) {
		rc = cmd_results(resp);
	} else {
		print_json(resp);
	}
	json_decref(resp);
	for (size_t i = 0; i < nwjobs; i++) {
		free(wjobs[i].key);
		json_decref(wjobs[i].job);
	}
	free(wjobs);
	fclose(in);
	close(sock);
	return rc;
}
