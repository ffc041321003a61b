/* Garbage collection and verification of the backup repository: both
 * walk every complete point's indexes, then every chunk. */
#include "drivers/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/repo_private.h"
#include "engine/core/util.h"

/* Clocks: file times come from the kernel's coarse clock, which may lag
 * time() a little; a chunk within this many seconds of the cut-off stays. */
#define CUTOFF_SLACK 2
/* What a crash left in tmp/ goes only when this much older than the
 * cut-off: a chunk being written right now is there for milliseconds. */
#define TMP_AGE 3600

/* ---- the points to walk ---- */

struct walk {
	struct repo_point **points; /* manifests (no ids) */
	size_t n;
};

static void
walk_free(struct walk *w)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		repo_point_free(w->points[i]);
	free(w->points);
}

static int
point_gone(const struct repo *r, const char *rule, const char *vm, uint64_t seq)
{
	char *rel = xasprintf("points/%s/%s/%llu", rule, vm, (unsigned long long)seq);
	struct stat st;
	int gone = fstatat(r->dfd, rel, &st, 0) != 0 && errno == ENOENT;

	free(rel);
	return gone;
}

/* What to do with a point whose manifest cannot be read: 0 to go on
 * without it, -1 to stop with *err. */
typedef int (*walk_bad_fn)(void *arg, const char *rule, const char *vm, uint64_t seq, char *why, char **err);

/* The manifests of the chosen points (rule NULL: all; vm NULL: all of
 * rule; seq 0: all of rule/vm).  A point deleted meanwhile is skipped. */
static int
walk_points(const struct repo *r, const char *rule, const char *vm, uint64_t seq, walk_bad_fn bad, void *arg,
    struct walk *w, char **err)
{
	char **rules = NULL, **vms = NULL;
	size_t nrules = 0, nvms = 0, i, j, k;
	int rc = -1;

	memset(w, 0, sizeof(*w));
	if (rule != NULL) {
		rules = xmalloc(sizeof(*rules));
		rules[0] = xstrdup(rule);
		nrules = 1;
	} else if (repo_dir_names(r, "points", &rules, &nrules, err) != 0) {
		return -1;
	}
	for (i = 0; i < nrules; i++) {
		if (vm != NULL) {
			vms = xmalloc(sizeof(*vms));
			vms[0] = xstrdup(vm);
			nvms = 1;
		} else {
			char *rel = xasprintf("points/%s", rules[i]);
			int failed = repo_dir_names(r, rel, &vms, &nvms, err) != 0;

			free(rel);
			if (failed)
				goto done;
		}
		for (j = 0; j < nvms; j++) {
			uint64_t *seqs = NULL;
			size_t nseqs = 0;

			if (seq != 0) {
				seqs = xmalloc(sizeof(*seqs));
				seqs[0] = seq;
				nseqs = 1;
			} else if (repo_point_list(r, rules[i], vms[j], &seqs, &nseqs, err) != 0) {
				goto done;
			}
			for (k = 0; k < nseqs; k++) {
				struct repo_point *p;
				int missing;
				char *why = NULL;

				if (repo_manifest_read(r, rules[i], vms[j], seqs[k], &p, &missing, &why) != 0) {
					/* Deleted meanwhile, or never there. */
					if (missing && point_gone(r, rules[i], vms[j], seqs[k])) {
						free(why);
						if (seq != 0) {
							*err = xasprintf("no point %s/%s/%llu in %s", rules[i], vms[j],
							    (unsigned long long)seq, r->dir);
							free(seqs);
							goto done;
						}
						continue;
					}
					if (bad(arg, rules[i], vms[j], seqs[k], why, err) != 0) {
						free(seqs);
						goto done;
					}
					continue;
				}
				w->points = xgrow(w->points, w->n, sizeof(*w->points));
				w->points[w->n++] = p;
			}
			free(seqs);
		}
		repo_names_free(vms, nvms);
		vms = NULL;
		nvms = 0;
	}
	rc = 0;
done:
	repo_names_free(vms, nvms);
	repo_names_free(rules, nrules);
	if (rc != 0)
		walk_free(w);
	return rc;
}

/* ---- garbage collection ---- */

/* The chunks in use, by the first 8 bytes of their ids: open addressing,
 * at most half full.  Two chunks that share a prefix (a guest could make
 * SHA-256 prefixes collide, with effort) both stay: never the other way. */
struct mark {
	uint64_t *slot; /* 0: empty */
	size_t cap, n;
	int zero_prefix; /* a used id whose prefix is 0 */
};

static uint64_t
prefix(const uint8_t id[REPO_ID_LEN])
{
	uint64_t k;

	memcpy(&k, id, sizeof(k));
	return k;
}

static void
mark_insert(struct mark *m, uint64_t k)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct mark bigger = { NULL, m->cap != 0 ? m->cap * 2 : 1024, 0, m->zero_prefix };

		bigger.slot = xcalloc(bigger.cap, sizeof(*bigger.slot));
		for (i = 0; i < m->cap; i++)
			if (m->slot[i] != 0)
				mark_insert(&bigger, m->slot[i]);
		free(m->slot);
		*m = bigger;
	}
	/* Ids are uniform already: their bytes are the hash. */
	for (i = (size_t)k & (m->cap - 1); m->slot[i] != 0; i = (i + 1) & (m->cap - 1))
		if (m->slot[i] == k)
			return;
	m->slot[i] = k;
	m->n++;
}

static void
mark_add(void *arg, const uint8_t id[REPO_ID_LEN], size_t len)
{
	struct mark *m = arg;
	uint64_t k = prefix(id);

	if (repo_chunk_id_is_zero(id))
		return;
	if (k == 0)
		m->zero_prefix = 1;
	else
		mark_insert(m, k);
}

static int
mark_has(const struct mark *m, const uint8_t id[REPO_ID_LEN])
{
	uint64_t k = prefix(id);
	size_t i;

	if (k == 0)
		return m->zero_prefix;
	if (m->cap == 0)
		return 0;
	for (i = (size_t)k & (m->cap - 1); m->slot[i] != 0; i = (i + 1) & (m->cap - 1))
		if (m->slot[i] == k)
			return 1;
	return 0;
}

static int
gc_bad_point(void *arg, const char *rule, const char *vm, uint64_t seq, char *why, char **err)
{
	*err = xasprintf("garbage collection stopped, nothing deleted: %s", why);
	free(why);
	return -1;
}

/* Deletes the unused chunks of chunks/<hh>/ older than cutoff. */
static int
sweep_dir(const struct repo *r, int hh, const struct mark *m, time_t cutoff, struct repo_gc_stats *st, char **err)
{
	char rel[16];
	int fd;
	DIR *d;
	struct dirent *e;

	snprintf(rel, sizeof(rel), "chunks/%02x", hh);
	if ((fd = openat(r->dfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || (d = fdopendir(fd)) == NULL) {
		*err = xasprintf("%s/%s: %s", r->dir, rel, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		uint8_t id[REPO_ID_LEN];
		struct stat sb;

		if (repo_unhex(e->d_name, strlen(e->d_name), id, REPO_ID_LEN, 1) != 0 || id[0] != hh || mark_has(m, id))
			continue;
		if (fstatat(fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (sb.st_mtime >= cutoff) {
			st->chunks_young++;
			continue;
		}
		if (unlinkat(fd, e->d_name, 0) == 0) {
			st->chunks_freed++;
			st->bytes_freed += (uint64_t)sb.st_size;
		}
	}
	closedir(d);
	return 0;
}

/* What crashes left in tmp/: chunks never renamed, points never
 * committed, deletions cut short. */
static void
sweep_tmp(struct repo *r, time_t cutoff)
{
	int fd = openat(r->dfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		const struct repo_writer *w;
		struct stat sb;
		char *rel;
		int open = 0;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    fstatat(fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || sb.st_mtime >= cutoff - TMP_AGE)
			continue;
		rel = xasprintf("tmp/%s", e->d_name);
		pthread_mutex_lock(&r->lock);
		for (w = r->writers; w != NULL; w = w->next)
			open |= strcmp(w->tmp, rel) == 0;
		if (!open)
			repo_remove(r, rel);
		pthread_mutex_unlock(&r->lock);
		free(rel);
	}
	closedir(d);
}

int
repo_gc(struct repo *r, time_t started, struct repo_gc_stats *st, char **err)
{
	struct mark m = { NULL, 0, 0, 0 };
	const struct repo_writer *w;
	struct walk pts;
	time_t cutoff = started;
	size_t i, k;
	int hh, rc = -1;

	*err = NULL;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&r->lock);
	for (w = r->writers; w != NULL; w = w->next)
		if (w->begun < cutoff)
			cutoff = w->begun;
	pthread_mutex_unlock(&r->lock);
	cutoff -= CUTOFF_SLACK;

	if (walk_points(r, NULL, NULL, 0, gc_bad_point, NULL, &pts, err) != 0)
		return -1;
	for (i = 0; i < pts.n; i++) {
		struct repo_point *p = pts.points[i];

		for (k = 0; k < p->ndisks; k++) {
			char *why = NULL;

			if (repo_index_scan(r, p->rule, p->vm, p->seq, k, &p->disks[k], mark_add, &m, &why) == 0)
				continue;
			if (point_gone(r, p->rule, p->vm, p->seq)) {
				free(why);
				break;
			}
			*err = xasprintf("garbage collection stopped, nothing deleted: %s", why);
			free(why);
			goto done;
		}
		st->points++;
	}
	st->chunks_used = m.n + (size_t)m.zero_prefix;
	for (hh = 0; hh < 256; hh++)
		if (sweep_dir(r, hh, &m, cutoff, st, err) != 0)
			goto done;
	sweep_tmp(r, cutoff);
	rc = 0;
done:
	walk_free(&pts);
	free(m.slot);
	return rc;
}

/* ---- verification ---- */

enum { V_UNREAD, V_OK, V_DAMAGED, V_UNREADABLE };

/* One distinct chunk of the points verified. */
struct ventry {
	uint8_t id[REPO_ID_LEN];
	uint32_t len;
	uint32_t state;
};

struct vset {
	struct ventry *e; /* open addressing; len 0: empty */
	size_t cap, n;
};

static void vset_add(void *arg, const uint8_t id[REPO_ID_LEN], size_t len);

static void
vset_grow(struct vset *s)
{
	struct vset bigger = { NULL, s->cap != 0 ? s->cap * 2 : 1024, 0 };
	size_t i;

	bigger.e = xcalloc(bigger.cap, sizeof(*bigger.e));
	for (i = 0; i < s->cap; i++)
		if (s->e[i].len != 0)
			vset_add(&bigger, s->e[i].id, s->e[i].len);
	free(s->e);
	*s = bigger;
}

static struct ventry *
vset_find(const struct vset *s, const uint8_t id[REPO_ID_LEN])
{
	size_t i;

	if (s->cap == 0)
		return NULL;
	for (i = (size_t)prefix(id) & (s->cap - 1); s->e[i].len != 0; i = (i + 1) & (s->cap - 1))
		if (memcmp(s->e[i].id, id, REPO_ID_LEN) == 0)
			return &s->e[i];
	return NULL;
}

static void
vset_add(void *arg, const uint8_t id[REPO_ID_LEN], size_t len)
{
	struct vset *s = arg;
	size_t i;

	if (repo_chunk_id_is_zero(id) || vset_find(s, id) != NULL)
		return;
	if ((s->n + 1) * 4 > s->cap * 3)
		vset_grow(s);
	for (i = (size_t)prefix(id) & (s->cap - 1); s->e[i].len != 0; i = (i + 1) & (s->cap - 1))
		;
	memcpy(s->e[i].id, id, REPO_ID_LEN);
	s->e[i].len = (uint32_t)len;
	s->n++;
}

static int
cmp_ventry(const void *a, const void *b)
{
	return memcmp(((const struct ventry *)a)->id, ((const struct ventry *)b)->id, REPO_ID_LEN);
}

struct vwhy {
	size_t i;
	char *why;
};

struct vjob {
	const struct repo *r;
	struct ventry *e;     /* sorted, n of them */
	size_t n;
	atomic_size_t next;
	pthread_mutex_t lock; /* guards why, nwhy, bytes */
	struct vwhy *why;
	size_t nwhy;
	uint64_t bytes;
};

static int
cmp_vwhy(const void *a, const void *b)
{
	size_t x = ((const struct vwhy *)a)->i, y = ((const struct vwhy *)b)->i;

	return x < y ? -1 : x > y;
}

static void *
verify_worker(void *arg)
{
	struct vjob *j = arg;
	uint8_t *buf = xmalloc(REPO_CHUNK_SIZE);
	uint64_t bytes = 0;
	size_t i;

	while ((i = atomic_fetch_add(&j->next, 1)) < j->n) {
		struct ventry *e = &j->e[i];
		char *why = NULL;
		int bad;

		bytes += e->len;
		if (repo_chunk_load(j->r, e->id, buf, e->len, &bad, &why) == 0) {
			e->state = V_OK;
			continue;
		}
		e->state = bad ? V_DAMAGED : V_UNREADABLE;
		pthread_mutex_lock(&j->lock);
		j->why = xgrow(j->why, j->nwhy, sizeof(*j->why));
		j->why[j->nwhy++] = (struct vwhy){ i, why };
		pthread_mutex_unlock(&j->lock);
	}
	pthread_mutex_lock(&j->lock);
	j->bytes += bytes;
	pthread_mutex_unlock(&j->lock);
	free(buf);
	return NULL;
}

/* Re-reads j->e[0..n) on as many threads as there are cores (at most 16). */
static void
verify_chunks(struct vjob *j)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nt = cores < 1 ? 1 : cores > 16 ? 16 : (size_t)cores, t, started = 0;
	pthread_t th[16];

	if (nt > j->n)
		nt = j->n;
	for (t = 0; t < nt; t++)
		if (pthread_create(&th[t], NULL, verify_worker, j) == 0)
			started++;
	if (started == 0)
		verify_worker(j);
	for (t = 0; t < started; t++)
		pthread_join(th[t], NULL);
}

static void
no_id(void *arg, const uint8_t id[REPO_ID_LEN], size_t len)
{
}

struct vusers {
	const struct vset *damaged; /* the damaged ids, state = their slot in users */
	struct repo_point_ref **refs;
	size_t *nrefs;
	const struct repo_point *p;
};

static void
note_user(void *arg, const uint8_t id[REPO_ID_LEN], size_t len)
{
	struct vusers *u = arg;
	struct ventry *e = vset_find(u->damaged, id);
	struct repo_point_ref *last;
	size_t k;

	if (e == NULL)
		return;
	k = e->state;
	last = u->nrefs[k] > 0 ? &u->refs[k][u->nrefs[k] - 1] : NULL;
	if (last != NULL && last->seq == u->p->seq && last->rule == u->p->rule && last->vm == u->p->vm)
		return;
	u->refs[k] = xgrow(u->refs[k], u->nrefs[k], sizeof(**u->refs));
	u->refs[k][u->nrefs[k]++] = (struct repo_point_ref){ u->p->rule, u->p->vm, u->p->seq };
}

struct vbad {
	repo_damage_fn cb;
	void *arg;
	uint64_t damaged;
};

static int
verify_bad_point(void *arg, const char *rule, const char *vm, uint64_t seq, char *why, char **err)
{
	struct vbad *b = arg;
	struct repo_point_ref ref = { rule, vm, seq };

	b->cb(b->arg, NULL, why, &ref, 1);
	b->damaged++;
	free(why);
	return 0;
}

/* A chunk whose bytes are wrong moves to damaged/, so that repo_chunk_has
 * no longer finds it and the next backup of those bytes stores it anew. */
static void
set_aside(const struct repo *r, const uint8_t id[REPO_ID_LEN])
{
	char path[80], hex[2 * REPO_ID_LEN + 1], *to;

	repo_chunk_path(id, path);
	repo_id_hex(id, hex);
	to = xasprintf("damaged/%s", hex);
	renameat(r->dfd, path, r->dfd, to);
	free(to);
}

int
repo_verify(struct repo *r, const char *rule, const char *vm, uint64_t seq, repo_damage_fn cb, void *arg,
    struct repo_verify_stats *st, char **err)
{
	struct vbad bad = { cb, arg, 0 };
	struct vset set = { NULL, 0, 0 }, damaged = { NULL, 0, 0 };
	struct vjob job;
	struct walk pts;
	char **why_of = NULL;
	struct repo_point_ref **refs = NULL;
	size_t *nrefs = NULL, i, k, n = 0;
	int *usable;

	*err = NULL;
	memset(st, 0, sizeof(*st));
	if ((rule == NULL && vm != NULL) || (rule != NULL && !repo_name_ok(rule)) || (vm != NULL && !repo_name_ok(vm))) {
		*err = xstrdup("verify: a VM needs its rule, and names must name directories");
		return -1;
	}
	if (walk_points(r, rule, vm, seq, verify_bad_point, &bad, &pts, err) != 0)
		return -1;
	/* Every distinct chunk of the points whose files are sound. */
	usable = xcalloc(pts.n + 1, sizeof(*usable));
	for (i = 0; i < pts.n; i++) {
		struct repo_point *p = pts.points[i];
		struct repo_point_ref ref = { p->rule, p->vm, p->seq };

		usable[i] = 1;
		for (k = 0; k < p->ndisks && usable[i]; k++) {
			char *why = NULL;

			/* Checked whole first: the ids of a damaged index are
			 * not chunks to look for. */
			if (repo_index_scan(r, p->rule, p->vm, p->seq, k, &p->disks[k], no_id, NULL, &why) == 0 &&
			    repo_index_scan(r, p->rule, p->vm, p->seq, k, &p->disks[k], vset_add, &set, &why) == 0)
				continue;
			usable[i] = 0;
			if (!point_gone(r, p->rule, p->vm, p->seq)) {
				cb(arg, NULL, why, &ref, 1);
				bad.damaged++;
			}
			free(why);
		}
		st->points += (uint64_t)usable[i];
	}

	/* The set's entries, gathered at its front, sorted: chunks are read
	 * directory by directory. */
	for (i = 0; i < set.cap; i++)
		if (set.e[i].len != 0)
			set.e[n++] = set.e[i];
	if (n > 1)
		qsort(set.e, n, sizeof(*set.e), cmp_ventry);
	memset(&job, 0, sizeof(job));
	job.r = r;
	job.e = set.e;
	job.n = n;
	atomic_init(&job.next, 0);
	pthread_mutex_init(&job.lock, NULL);
	verify_chunks(&job);
	pthread_mutex_destroy(&job.lock);
	st->chunks = n;
	st->bytes = job.bytes;

	if (job.nwhy > 0) {
		/* Which points use each damaged chunk: a second pass over the
		 * indexes, with the few damaged ids in a set of their own. */
		struct vusers u;

		qsort(job.why, job.nwhy, sizeof(*job.why), cmp_vwhy);
		why_of = xcalloc(job.nwhy, sizeof(*why_of));
		refs = xcalloc(job.nwhy, sizeof(*refs));
		nrefs = xcalloc(job.nwhy, sizeof(*nrefs));
		for (k = 0; k < job.nwhy; k++) {
			vset_add(&damaged, job.e[job.why[k].i].id, job.e[job.why[k].i].len);
			vset_find(&damaged, job.e[job.why[k].i].id)->state = (uint32_t)k;
			why_of[k] = job.why[k].why;
		}
		u.damaged = &damaged;
		u.refs = refs;
		u.nrefs = nrefs;
		for (i = 0; i < pts.n; i++) {
			char *why = NULL;

			u.p = pts.points[i];
			for (k = 0; k < u.p->ndisks && usable[i]; k++) {
				if (repo_index_scan(r, u.p->rule, u.p->vm, u.p->seq, k, &u.p->disks[k], note_user, &u, &why) != 0) {
					free(why);
					why = NULL;
				}
			}
		}
		for (k = 0; k < job.nwhy; k++) {
			const struct ventry *e = &job.e[job.why[k].i];

			cb(arg, e->id, why_of[k], refs[k], nrefs[k]);
			if (e->state == V_DAMAGED)
				set_aside(r, e->id);
			free(why_of[k]);
			free(refs[k]);
		}
	}
	st->damaged = bad.damaged + job.nwhy;
	free(why_of);
	free(refs);
	free(nrefs);
	free(job.why);
	free(damaged.e);
	free(set.e);
	free(usable);
	walk_free(&pts);
	return 0;
}
