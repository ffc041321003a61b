/* Instant recovery (see instant.h): the requests, the records, and the
 * nbdkit processes (spawned, adopted, watched, stopped).  Spawning and
 * stopping wait for processes and files, so they run on the worker pool;
 * the loop only checks that the processes still live (a read of /proc).
 *
 * Persist first, act second: a new recovery's record is committed before
 * its first nbdkit starts, and a stop is recorded (INSTANT_STOPPING)
 * before its processes go, so a crash at any instant leaves a record the
 * next start finishes (serves again, or stops). */
#define _GNU_SOURCE
#include "engine/jobs/instant.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "drivers/repo.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"
#include "engine/ctl.h"
#include "engine/engine.h"
#include "engine/jobs/backup.h"
#include "engine/jobs/instant_data.h"
#include "engine/jobs/job.h"
#include "engine/jobs/repos.h"
#include "engine/request.h"

extern char **environ;

#define WATCH_S 2           /* how often the processes are looked at */
#define RETRY_S 30          /* after a failed start of a served recovery */
#define READY_S 30          /* an nbdkit's pid file appears within */
#define STOP_S 5            /* SIGTERM, then SIGKILL */
#define NEXT_KEY "next"     /* STORE_INSTANT: the next id (be64) */

struct inst {
	struct inst *next;
	struct instant_rec rec;
	pid_t *pids;            /* per disk, as last seen; 0: none */
	int busy;               /* a worker starts or stops it */
	double retry_at;        /* monotonic: no start before */
};

static struct {
	struct event_base *base;
	struct event *watch;
	char *dir;              /* absolute: STATE_DIR/instant */
	struct inst *list;
} in;

/* ---- paths and processes (any thread) ---- */

static char *
disk_path(const char *dir, uint64_t id, size_t disk, const char *ext)
{
	return xasprintf("%s/%llu/d%zu.%s", dir, (unsigned long long)id, disk, ext);
}

static char *
uri_of(const char *dir, const struct instant_rec *x, size_t disk)
{
	char *sock, *uri;

	if (x->listen.tcp)
		return strchr(x->listen.addr, ':') != NULL ?
		    xasprintf("nbd://[%s]:%zu", x->listen.addr, x->listen.port + disk) :
		    xasprintf("nbd://%s:%zu", x->listen.addr, x->listen.port + disk);
	sock = disk_path(dir, x->id, disk, "sock");
	uri = xasprintf("nbd+unix:///?socket=%s", sock);
	free(sock);
	return uri;
}

/* The pid in an nbdkit pid file, or 0. */
static pid_t
read_pidfile(const char *path)
{
	char buf[32];
	ssize_t n;
	long v;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	v = strtol(buf, NULL, 10);
	return v > 1 && v < INT_MAX ? (pid_t)v : 0;
}

/* A small file of /proc/PID/ (NUL after it): its length, or -1. */
static ssize_t
proc_read(pid_t pid, const char *name, char *buf, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? n : -1;
}

/* Whether pid is an nbdkit of ours that still runs: alive (not a zombie)
 * and started with this pid file (a pid reused by another process is not
 * ours). */
static int
ours(pid_t pid, const char *pidfile)
{
	char buf[8192], *p, *end;
	ssize_t n;

	if (pid <= 1 || proc_read(pid, "stat", buf, sizeof(buf)) < 0)
		return 0;
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	if ((n = proc_read(pid, "cmdline", buf, sizeof(buf))) < 0)
		return 0;
	for (p = buf, end = buf + n; p < end; p += strlen(p) + 1)
		if (strcmp(p, pidfile) == 0)
			return 1;
	return 0;
}

/* A process (other than pid) started with pidfile among its arguments:
 * an nbdkit of ours that is starting, or whatever started it (the daemon
 * that spawned it may have died meanwhile).  0 when there is none. */
static pid_t
starting(const char *pidfile, pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	if (d == NULL)
		return 0;
	while (found == 0 && (e = readdir(d)) != NULL) {
		char *end;
		long v = strtol(e->d_name, &end, 10);

		if (*end == '\0' && v > 1 && v != (long)pid && v != (long)getpid() && ours((pid_t)v, pidfile))
			found = (pid_t)v;
	}
	closedir(d);
	return found;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void
rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The last lines of an nbdkit's log, for an error message. */
static char *
log_tail(const char *path)
{
	char buf[1024], *p;
	ssize_t n;
	off_t size;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return xstrdup("(no log)");
	size = lseek(fd, 0, SEEK_END);
	n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	if (n <= 0)
		return xstrdup("(nothing logged)");
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	/* The last line that says what went wrong. */
	p = strrchr(buf, '\n');
	p = xstrdup(p != NULL ? p + 1 : buf);
	str_make_utf8(p);
	return p;
}

/* Where the plugin is: VMFERRY_NBDKIT_PLUGIN, else beside vmferryd (a
 * build tree), else where it was installed. */
static char *
plugin_path(void)
{
	const char *env = getenv("VMFERRY_NBDKIT_PLUGIN");
	char exe[PATH_MAX], *slash, *p;
	ssize_t n;

	if (env != NULL && *env != '\0')
		return xstrdup(env);
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			p = xasprintf("%s/nbdkit-vmferry-plugin.so", exe);
			if (access(p, R_OK) == 0)
				return p;
			free(p);
		}
	}
	return VMFERRY_NBDKIT_PLUGIN[0] != '\0' ? xstrdup(VMFERRY_NBDKIT_PLUGIN) : NULL;
}

/* What a worker needs to start or stop one recovery's processes: a copy,
 * so that the loop may change its own meanwhile. */
struct run {
	uint64_t client;        /* a request waiting for the answer, or 0 */
	char *req_id;
	int is_new;             /* a new recovery: a failed start removes it */
	struct instant_rec rec;
	char *dir;
	pid_t *pids;
	int *adopted;
	char *err;
	/* prepare */
	struct repo *repo;
	char *listen;
};

static void
run_free(void *arg)
{
	struct run *w = arg;

	instant_rec_free(&w->rec);
	free(w->req_id);
	free(w->dir);
	free(w->pids);
	free(w->adopted);
	free(w->err);
	free(w->listen);
	free(w);
}

/* Starts the nbdkit of one disk and waits until it serves: 0 and its pid,
 * or -1 with *err. */
static int
spawn_disk(const char *dir, const struct instant_rec *x, size_t disk, const char *plugin, pid_t *pid, char **err)
{
	char *pidfile = disk_path(dir, x->id, disk, "pid"), *sock = disk_path(dir, x->id, disk, "sock");
	char *logf = disk_path(dir, x->id, disk, "log"), *overlay = xasprintf("%s/%llu/overlay", dir,
	    (unsigned long long)x->id);
	const char *nbdkit = getenv("VMFERRY_NBDKIT");
	char *argv[24], *envp_tmp, **envp, port[16], *kv[8];
	posix_spawn_file_actions_t fa;
	size_t n = 0, k = 0, ne = 0, i;
	pid_t child;
	int status, rc = -1;
	double until;

	if (nbdkit == NULL || *nbdkit == '\0')
		nbdkit = "nbdkit";
	mkdir(overlay, 0700);
	unlink(pidfile);
	if (!x->listen.tcp)
		unlink(sock);
	argv[n++] = (char *)nbdkit;
	argv[n++] = "--log=stderr";
	argv[n++] = "-P";
	argv[n++] = pidfile;
	if (x->listen.tcp) {
		snprintf(port, sizeof(port), "%zu", x->listen.port + disk);
		argv[n++] = "-i";
		argv[n++] = (char *)x->listen.addr;
		argv[n++] = "-p";
		argv[n++] = port;
	} else {
		argv[n++] = "-U";
		argv[n++] = sock;
	}
	argv[n++] = "--filter=cow";
	argv[n++] = (char *)plugin;
	kv[k++] = xasprintf("repo=%s", x->repo);
	if (x->key_file != NULL)
		kv[k++] = xasprintf("key_file=%s", x->key_file);
	kv[k++] = xasprintf("rule=%s", x->rule);
	kv[k++] = xasprintf("vm=%s", x->vm);
	kv[k++] = xasprintf("point=%llu", (unsigned long long)x->point);
	kv[k++] = xasprintf("disk=%zu", disk);
	for (i = 0; i < k; i++)
		argv[n++] = kv[i];
	argv[n] = NULL;

	/* The cow filter's overlay goes to TMPDIR: this recovery's own. */
	while (environ[ne] != NULL)
		ne++;
	envp = xcalloc(ne + 2, sizeof(char *));
	for (i = 0, n = 0; i < ne; i++)
		if (strncmp(environ[i], "TMPDIR=", 7) != 0)
			envp[n++] = environ[i];
	envp[n++] = envp_tmp = xasprintf("TMPDIR=%s", overlay);
	envp[n] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, logf, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	/* Nothing of the daemon's (store, sockets) is left open in nbdkit. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	errno = posix_spawnp(&child, nbdkit, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (errno != 0) {
		*err = xasprintf("disk %zu: cannot start %s: %s", disk, nbdkit, strerror(errno));
		goto done;
	}
	/* nbdkit listens, then goes to the background: its first process
	 * ends, successfully once the socket is there. */
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *why = log_tail(logf);

		*err = xasprintf("disk %zu: nbdkit failed: %s", disk, why);
		free(why);
		goto done;
	}
	for (until = now_mono() + READY_S; now_mono() < until; usleep(20000))
		if ((*pid = read_pidfile(pidfile)) > 0 && ours(*pid, pidfile)) {
			rc = 0;
			goto done;
		}
	*err = xasprintf("disk %zu: nbdkit wrote no pid file within %d s", disk, READY_S);
done:
	for (i = 0; i < k; i++)
		free(kv[i]);
	free(envp_tmp);
	free(envp);
	free(pidfile);
	free(sock);
	free(logf);
	free(overlay);
	return rc;
}

/* Ends the nbdkit of each disk that runs. */
static void
kill_disks(const char *dir, const struct instant_rec *x)
{
	size_t d;
	double until;

	for (d = 0; d < x->ndisks; d++) {
		char *pidfile = disk_path(dir, x->id, d, "pid");
		pid_t pid = read_pidfile(pidfile);

		if (ours(pid, pidfile)) {
			kill(pid, SIGTERM);
			for (until = now_mono() + STOP_S; ours(pid, pidfile) && now_mono() < until; usleep(20000))
				;
			if (ours(pid, pidfile))
				kill(pid, SIGKILL);
		}
		free(pidfile);
	}
}

/* Worker: every disk served, adopting what runs; a new recovery that
 * cannot be served whole is taken down again. */
static void
ensure_fn(void *arg)
{
	struct run *w = arg;
	char *plugin = plugin_path(), *top = xasprintf("%s/%llu", w->dir, (unsigned long long)w->rec.id);
	size_t d;

	w->pids = xcalloc(w->rec.ndisks, sizeof(pid_t));
	w->adopted = xcalloc(w->rec.ndisks, sizeof(int));
	if (plugin == NULL) {
		w->err = xstrdup("nbdkit-vmferry-plugin.so is not installed (nbdkit-plugin-dev was missing at build "
		                 "time; tools/setup installs it)");
		goto done;
	}
	if ((mkdir(w->dir, 0700) != 0 && errno != EEXIST) || (mkdir(top, 0700) != 0 && errno != EEXIST)) {
		w->err = xasprintf("%s: %s", top, strerror(errno));
		goto done;
	}
	for (d = 0; d < w->rec.ndisks && w->err == NULL; d++) {
		char *pidfile = disk_path(w->dir, w->rec.id, d, "pid");
		pid_t pid = read_pidfile(pidfile);

		pid_t other;
		double until;

		/* One that was starting when a daemon died: its pid file comes
		 * soon, else it is ended; never a second one beside it. */
		if (!ours(pid, pidfile) && (other = starting(pidfile, pid)) != 0) {
			for (until = now_mono() + READY_S; now_mono() < until && !ours(pid, pidfile) && ours(other, pidfile);
			     usleep(50000))
				pid = read_pidfile(pidfile);
			if (!ours(pid, pidfile))
				while ((other = starting(pidfile, 0)) != 0) {
					kill(other, SIGKILL);
					usleep(50000);
				}
		}
		if (ours(pid, pidfile)) {
			w->pids[d] = pid;
			w->adopted[d] = 1;
		} else {
			spawn_disk(w->dir, &w->rec, d, plugin, &w->pids[d], &w->err);
		}
		free(pidfile);
	}
	if (w->err != NULL && w->is_new) {
		kill_disks(w->dir, &w->rec);
		rm_tree(top);
	}
done:
	free(plugin);
	free(top);
}

/* Worker: the processes ended, the directory (overlay included) gone. */
static void
stop_fn(void *arg)
{
	struct run *w = arg;
	char *top = xasprintf("%s/%llu", w->dir, (unsigned long long)w->rec.id);

	kill_disks(w->dir, &w->rec);
	rm_tree(top);
	free(top);
}

/* ---- the recoveries in memory (loop) ---- */

static struct inst *
inst_find(uint64_t id)
{
	struct inst *x;

	for (x = in.list; x != NULL; x = x->next)
		if (x->rec.id == id)
			return x;
	return NULL;
}

static void
inst_key(uint64_t id, uint8_t key[8])
{
	put_be64(key, id);
}

static void
inst_persist(const struct inst *x)
{
	struct sbuf b;
	uint8_t key[8];

	sbuf_init(&b);
	instant_rec_put(&x->rec, &b);
	inst_key(x->rec.id, key);
	store_put(STORE_INSTANT, key, sizeof(key), b.data, b.len);
	sbuf_free(&b);
}

static void
inst_forget(struct inst *x)
{
	struct inst **pp;
	uint8_t key[8];

	inst_key(x->rec.id, key);
	store_del(STORE_INSTANT, key, sizeof(key));
	for (pp = &in.list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	instant_rec_free(&x->rec);
	free(x->pids);
	free(x);
}

/* A copy of x's record for a worker. */
static struct run *
run_new(const struct inst *x)
{
	struct run *w = xcalloc(1, sizeof(*w));

	w->rec = x->rec;
	w->rec.rule = xstrdup(x->rec.rule);
	w->rec.vm = xstrdup(x->rec.vm);
	w->rec.repo = xstrdup(x->rec.repo);
	w->rec.key_file = x->rec.key_file != NULL ? xstrdup(x->rec.key_file) : NULL;
	w->rec.capacity = xcalloc(x->rec.ndisks, sizeof(uint64_t));
	memcpy(w->rec.capacity, x->rec.capacity, x->rec.ndisks * sizeof(uint64_t));
	w->dir = xstrdup(in.dir);
	return w;
}

/* In the backup job's log (and statistics) when the job is there, else
 * in the daemon's. */
static void inst_log(const struct instant_rec *x, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
inst_log(const struct instant_rec *x, enum log_level lvl, const char *fmt, ...)
{
	struct job *j = job_find(CFG_BACKUP, x->rule, x->vm);
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (j != NULL)
		job_log(j, lvl, "瞬时恢复 %llu (point %llu): %s", (unsigned long long)x->id, (unsigned long long)x->point,
		    msg);
	else
		log_msg(lvl, "instant recovery %llu of %s/%s point %llu: %s", (unsigned long long)x->id, x->rule, x->vm,
		    (unsigned long long)x->point, msg);
	free(msg);
}

static json_t *
inst_json(const struct inst *x)
{
	json_t *disks = json_array();
	char *listen = instant_listen_text(&x->rec.listen);
	json_t *o;
	size_t d;

	for (d = 0; d < x->rec.ndisks; d++) {
		char *uri = uri_of(in.dir, &x->rec, d);
		char *pidfile = disk_path(in.dir, x->rec.id, d, "pid");

		json_array_append_new(disks, json_pack("{s:I,s:I,s:s,s:I,s:b}", "disk", (json_int_t)d, "capacity",
		    (json_int_t)x->rec.capacity[d], "uri", uri, "pid", (json_int_t)x->pids[d], "running",
		    ours(x->pids[d], pidfile)));
		free(uri);
		free(pidfile);
	}
	o = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:s,s:o}", "id", (json_int_t)x->rec.id, "state",
	    x->rec.state == INSTANT_RUNNING ? "running" : "stopping", "rule", x->rec.rule, "vm", x->rec.vm, "point",
	    (json_int_t)x->rec.point, "created", (json_int_t)x->rec.created, "listen", listen, "disks", disks);
	free(listen);
	return o;
}

static void
answer(const struct run *w, json_t *resp)
{
	if (w->client == 0) {
		json_decref(resp);
		return;
	}
	if (w->req_id != NULL)
		json_object_set_new(resp, "id", json_string(w->req_id));
	ctl_reply(w->client, resp);
}

static void
ensure_done(void *arg)
{
	struct run *w = arg;
	struct inst *x = inst_find(w->rec.id);
	struct job *j;
	size_t d;

	if (x == NULL)
		return;
	x->busy = 0;
	j = job_find(CFG_BACKUP, x->rec.rule, x->rec.vm);
	for (d = 0; d < x->rec.ndisks; d++)
		if (w->pids[d] > 0 && w->pids[d] != x->pids[d]) {
			char *uri = uri_of(in.dir, &x->rec, d);

			inst_log(&x->rec, LOG_INFO, "disk %zu %s by nbdkit %ld at %s", d,
			    w->adopted[d] ? "still served" : "served", (long)w->pids[d], uri);
			free(uri);
			x->pids[d] = w->pids[d];
		}
	if (w->err == NULL) {
		if (w->is_new) {
			if (j != NULL)
				job_stat_success(j, 0);
			answer(w, json_pack("{s:b,s:o}", "ok", 1, "instant", inst_json(x)));
		}
		return;
	}
	if (w->is_new) {
		inst_log(&x->rec, LOG_ERR, "cannot be served: %s", w->err);
		if (j != NULL)
			job_stat_failure(j, w->err);
		answer(w, ctl_error("restore %s %s --target instant: %s", x->rec.rule, x->rec.vm, w->err));
		inst_forget(x);
		return;
	}
	inst_log(&x->rec, LOG_ERR, "%s; tried again in %d s", w->err, RETRY_S);
	x->retry_at = now_mono() + RETRY_S;
}

static void
inst_ensure(struct inst *x, uint64_t client, const char *req_id, int is_new)
{
	struct run *w = run_new(x);

	w->client = client;
	w->req_id = req_id != NULL ? xstrdup(req_id) : NULL;
	w->is_new = is_new;
	x->busy = 1;
	work_submit(ensure_fn, ensure_done, run_free, w);
}

static void
stop_done(void *arg)
{
	struct run *w = arg;
	struct inst *x = inst_find(w->rec.id);

	if (x == NULL)
		return;
	inst_log(&x->rec, LOG_INFO, "stopped: its exports and overlay are gone");
	answer(w, json_pack("{s:b,s:I}", "ok", 1, "stopped", (json_int_t)x->rec.id));
	inst_forget(x);
}

static void
inst_stop(struct inst *x, uint64_t client, const char *req_id)
{
	struct run *w = run_new(x);

	w->client = client;
	w->req_id = req_id != NULL ? xstrdup(req_id) : NULL;
	x->busy = 1;
	work_submit(stop_fn, stop_done, run_free, w);
}

/* Every new state is on disk before its processes change. */
struct after {
	uint64_t id, client;
	char *req_id;
	int is_new, stop;
};

static void
after_commit(void *arg)
{
	struct after *a = arg;
	struct inst *x = inst_find(a->id);

	if (x != NULL) {
		if (a->stop)
			inst_stop(x, a->client, a->req_id);
		else
			inst_ensure(x, a->client, a->req_id, a->is_new);
	}
	free(a->req_id);
	free(a);
}

static void
queue_after_commit(struct inst *x, uint64_t client, const char *req_id, int is_new, int stop)
{
	struct after *a = xcalloc(1, sizeof(*a));

	a->id = x->rec.id;
	a->client = client;
	a->req_id = req_id != NULL ? xstrdup(req_id) : NULL;
	a->is_new = is_new;
	a->stop = stop;
	x->busy = 1;
	store_after_commit(after_commit, a);
}

/* The watchdog: an nbdkit of a served recovery that is gone is started
 * again (the VM's writes in its overlay are lost with it). */
static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { WATCH_S, 0 };
	struct inst *x;
	size_t d;

	for (x = in.list; x != NULL; x = x->next) {
		int gone = 0;

		if (x->busy || x->rec.state != INSTANT_RUNNING || now_mono() < x->retry_at)
			continue;
		for (d = 0; d < x->rec.ndisks; d++) {
			char *pidfile = disk_path(in.dir, x->rec.id, d, "pid");

			if (!ours(x->pids[d], pidfile)) {
				if (x->pids[d] > 0)
					inst_log(&x->rec, LOG_WARN, "disk %zu: nbdkit %ld is gone; it is started again (what "
					                            "the VM wrote to this disk since is lost)", d, (long)x->pids[d]);
				x->pids[d] = 0;
				gone = 1;
			}
			free(pidfile);
		}
		if (gone)
			inst_ensure(x, 0, NULL, 0);
	}
	evtimer_add(in.watch, &tv);
}

/* ---- start-up ---- */

static int
load_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
	struct inst *x;

	if (klen != 8)
		return 0; /* the id counter */
	x = xcalloc(1, sizeof(*x));
	if (instant_rec_get(val, vlen, &x->rec) != 0 || x->rec.id != get_be64(key)) {
		log_err("instant recovery %llu: its record cannot be read; it is left as it is",
		    (unsigned long long)get_be64(key));
		instant_rec_free(&x->rec);
		free(x);
		return 0;
	}
	x->pids = xcalloc(x->rec.ndisks, sizeof(pid_t));
	x->next = in.list;
	in.list = x;
	return 0;
}

void
instant_init(struct event_base *base)
{
	struct timeval tv = { WATCH_S, 0 };
	char *abs = realpath(engine_state_dir(), NULL);
	struct inst *x;

	in.base = base;
	in.dir = xasprintf("%s/instant", abs != NULL ? abs : engine_state_dir());
	free(abs);
	store_scan(STORE_INSTANT, "", 0, 0, 0, load_one, NULL);
	for (x = in.list; x != NULL; x = x->next) {
		inst_log(&x->rec, LOG_INFO, x->rec.state == INSTANT_RUNNING ? "the daemon started: its exports are "
		                                                              "adopted or started again"
		                                                            : "the daemon started: its stop is finished");
		if (x->rec.state == INSTANT_RUNNING)
			inst_ensure(x, 0, NULL, 0);
		else
			inst_stop(x, 0, NULL);
	}
	in.watch = evtimer_new(base, watch_cb, NULL);
	evtimer_add(in.watch, &tv);
}

void
instant_shutdown(void)
{
	while (in.list != NULL) {
		struct inst *x = in.list;

		in.list = x->next;
		instant_rec_free(&x->rec);
		free(x->pids);
		free(x);
	}
	if (in.watch != NULL)
		event_free(in.watch);
	free(in.dir);
	memset(&in, 0, sizeof(in));
}

size_t
instant_running(void)
{
	const struct inst *x;
	size_t n = 0;

	for (x = in.list; x != NULL; x = x->next)
		n += x->rec.state == INSTANT_RUNNING;
	return n;
}

size_t
instant_points(const char *dir, const char *rule, const char *vm, uint64_t **seqs)
{
	const struct inst *x;
	size_t n = 0;

	*seqs = NULL;
	for (x = in.list; x != NULL; x = x->next)
		if (strcmp(x->rec.rule, rule) == 0 && strcmp(x->rec.vm, vm) == 0 && strcmp(x->rec.repo, dir) == 0) {
			*seqs = xgrow(*seqs, n, sizeof(uint64_t));
			(*seqs)[n++] = x->rec.point;
		}
	return n;
}

/* ---- requests ---- */

/* Worker: the point (the latest when none was named) and its disks. */
static void
prepare_fn(void *arg)
{
	struct run *w = arg;
	struct repo_point *p = NULL;
	uint64_t *seqs = NULL;
	size_t n = 0, i;

	if (repo_points(w->repo, w->rec.rule, w->rec.vm, &seqs, &n, &w->err) != 0)
		return;
	if (n == 0) {
		w->err = xasprintf("%s has no backup point in %s yet", w->rec.vm, w->rec.repo);
		goto done;
	}
	if (w->rec.point == 0)
		w->rec.point = seqs[n - 1];
	for (i = 0; i < n && seqs[i] != w->rec.point; i++)
		;
	if (i == n) {
		struct sbuf b;

		sbuf_init(&b);
		for (i = 0; i < n; i++)
			sbuf_printf(&b, "%s%llu", i ? ", " : "", (unsigned long long)seqs[i]);
		w->err = xasprintf("%s has no point %llu (its points: %s)", w->rec.vm, (unsigned long long)w->rec.point,
		    b.data);
		sbuf_free(&b);
		goto done;
	}
	if (repo_point_manifest(w->repo, w->rec.rule, w->rec.vm, w->rec.point, &p, &w->err) != 0)
		goto done;
	if (p->ndisks == 0 || p->ndisks > INSTANT_MAX_DISKS) {
		w->err = xasprintf("point %llu has %zu disks", (unsigned long long)w->rec.point, p->ndisks);
		goto done;
	}
	w->rec.ndisks = p->ndisks;
	w->rec.capacity = xcalloc(p->ndisks, sizeof(uint64_t));
	for (i = 0; i < p->ndisks; i++)
		w->rec.capacity[i] = p->disks[i].capacity;
done:
	if (p != NULL)
		repo_point_free(p);
	free(seqs);
}

static void
prepare_done(void *arg)
{
	struct run *w = arg;
	struct inst *x;
	uint8_t *val = NULL, next[8];
	size_t vlen = 0;
	uint64_t id = 1;
	char *why = NULL, *sock;

	if (w->err == NULL && instant_listen_parse(w->listen, w->rec.ndisks, &w->rec.listen, &why) != 0)
		w->err = why;
	if (w->err == NULL && !w->rec.listen.tcp) {
		/* A Unix socket's path has room for 107 bytes. */
		sock = disk_path(in.dir, 1000000, w->rec.ndisks, "sock");
		if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			w->err = xasprintf("the exports' sockets (%s) would be longer than a Unix socket's path can be; "
			                   "use a shorter state directory or --listen 127.0.0.1:PORT", sock);
		free(sock);
	}
	if (w->err != NULL) {
		answer(w, ctl_error("restore %s %s --target instant: %s", w->rec.rule, w->rec.vm, w->err));
		return;
	}
	if (store_get(STORE_INSTANT, NEXT_KEY, strlen(NEXT_KEY), (void **)&val, &vlen) == 1 && vlen == 8)
		id = get_be64(val);
	free(val);
	put_be64(next, id + 1);
	store_put(STORE_INSTANT, NEXT_KEY, strlen(NEXT_KEY), next, sizeof(next));
	x = xcalloc(1, sizeof(*x));
	x->rec = w->rec;
	memset(&w->rec, 0, sizeof(w->rec));
	x->rec.id = id;
	x->rec.state = INSTANT_RUNNING;
	x->rec.created = (int64_t)time(NULL);
	x->pids = xcalloc(x->rec.ndisks, sizeof(pid_t));
	x->next = in.list;
	in.list = x;
	inst_persist(x);
	inst_log(&x->rec, LOG_INFO, "starting: %zu disk%s from %s, listening on %s", x->rec.ndisks,
	    x->rec.ndisks == 1 ? "" : "s", x->rec.repo, w->listen);
	queue_after_commit(x, w->client, w->req_id, 1, 0);
}

json_t *
instant_restore(struct ctl_client *c, const struct request *req)
{
	const struct cfg_rule *r;
	struct instant_listen l;
	struct repo *repo;
	struct run *w;
	char *err = NULL, *key = NULL, *dir;
	uint64_t seq;
	json_t *refused;

	if (req->vm == NULL)
		return ctl_error("restore --target instant needs a VM: it serves one VM's disks");
	if ((refused = bak_request_point(req, "instant recovery", &r, &seq)) != NULL)
		return refused;
	if (instant_listen_parse(req->listen != NULL ? req->listen : "unix", 0, &l, &err) != 0) {
		json_t *resp = ctl_error("%s", err);

		free(err);
		return resp;
	}
	if ((repo = repos_get(r, &err)) == NULL) {
		json_t *resp = ctl_error("restore %s %s --target instant: %s", r->name, req->vm, err);

		free(err);
		return resp;
	}
	dir = repos_dir_of(r, &key);
	w = xcalloc(1, sizeof(*w));
	w->client = ctl_client_id(c);
	w->req_id = req->id != NULL ? xstrdup(req->id) : NULL;
	w->repo = repo;
	w->rec.rule = xstrdup(r->name);
	w->rec.vm = xstrdup(req->vm);
	w->rec.point = seq;
	w->rec.repo = dir;
	w->rec.key_file = key;
	w->listen = xstrdup(req->listen != NULL ? req->listen : "unix");
	w->dir = xstrdup(in.dir);
	work_submit(prepare_fn, prepare_done, run_free, w);
	return NULL;
}

json_t *
instant_op(struct ctl_client *c, const struct request *req)
{
	json_t *list;
	struct inst *x;
	uint64_t id;

	if (req->stop == NULL) {
		list = json_array();
		for (x = in.list; x != NULL; x = x->next)
			json_array_append_new(list, inst_json(x));
		return json_pack("{s:b,s:o}", "ok", 1, "instant", list);
	}
	if (sscanf(req->stop, "%" SCNu64 "%c", &id, &(char){ 0 }) != 1 || (x = inst_find(id)) == NULL)
		return ctl_error("no instant recovery %s (`vmferryctl instant` lists them)", req->stop);
	if (x->rec.state == INSTANT_STOPPING)
		return ctl_error("instant recovery %s is already stopping", req->stop);
	if (x->busy)
		return ctl_error("instant recovery %s is being started; ask again in a moment", req->stop);
	x->rec.state = INSTANT_STOPPING;
	inst_persist(x);
	inst_log(&x->rec, LOG_INFO, "stopping (asked)");
	queue_after_commit(x, ctl_client_id(c), req->id, 0, 1);
	return NULL;
}
