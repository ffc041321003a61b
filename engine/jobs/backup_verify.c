/* `verify RULE [VM] [--point P]` (SPEC §10): every chunk of a backup
 * rule's points (one VM's, one point's) re-read and its id checked, by
 * repo_verify on the worker pool; the status socket is answered when it
 * ends.  repo_verify moves a damaged chunk to damaged/, so the next
 * backup of the VM finds its parent's chunk missing and reads those
 * bytes from the source again (bak_check_fn); the job of each VM whose
 * points are damaged gets a warning in its log and an unviewed error. */
#include "engine/jobs/backup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/util.h"
#include "engine/core/workers.h"
#include "engine/ctl.h"
#include "engine/engine.h"
#include "engine/jobs/job.h"
#include "engine/jobs/repos.h"
#include "engine/request.h"

struct verify_run {
	uint64_t client;
	char *id;               /* the request's, echoed */
	struct repo *repo;
	char *rule, *vm;        /* vm NULL: every VM of the rule */
	uint64_t seq;           /* 0: every point */
	int rc;
	char *err;
	struct repo_verify_stats st;
	json_t *damaged;        /* [{chunk, why, points: [{rule, vm, point}]}] */
};

/* Names come from directory names too: JSON takes UTF-8 only. */
static json_t *
json_text(const char *s)
{
	char *t = xstrdup(s);
	json_t *v;

	str_make_utf8(t);
	v = json_string(t);
	free(t);
	return v;
}

/* On the worker, for each damaged chunk (or point file). */
static void
on_damage(void *arg, const uint8_t *id, const char *why, const struct repo_point_ref *points, size_t npoints)
{
	struct verify_run *v = arg;
	json_t *o = json_object(), *pts = json_array();
	char hex[2 * REPO_ID_LEN + 1];
	size_t i;

	if (id != NULL) {
		repo_id_hex(id, hex);
		json_object_set_new(o, "chunk", json_string(hex));
	} else {
		json_object_set_new(o, "chunk", json_null());
	}
	json_object_set_new(o, "why", json_text(why != NULL ? why : "damaged"));
	for (i = 0; i < npoints; i++) {
		json_t *p = json_object();

		json_object_set_new(p, "rule", json_text(points[i].rule));
		json_object_set_new(p, "vm", json_text(points[i].vm));
		json_object_set_new(p, "point", json_integer((json_int_t)points[i].seq));
		json_array_append_new(pts, p);
	}
	json_object_set_new(o, "points", pts);
	json_array_append_new(v->damaged, o);
}

static void
verify_fn(void *arg)
{
	struct verify_run *v = arg;

	v->damaged = json_array();
	v->rc = repo_verify(v->repo, v->rule, v->vm, v->seq, on_damage, v, &v->st, &v->err);
}

/* The points of one VM that a damaged entry names, as "3, 4". */
static char *
points_of(const json_t *pts, const char *rule, const char *vm)
{
	struct sbuf b;
	const json_t *p;
	size_t i;

	sbuf_init(&b);
	json_array_foreach(pts, i, p) {
		if (!str_eq(json_string_value(json_object_get(p, "rule")), rule) ||
		    !str_eq(json_string_value(json_object_get(p, "vm")), vm))
			continue;
		sbuf_printf(&b, "%s%lld", b.len ? ", " : "", (long long)json_integer_value(json_object_get(p, "point")));
	}
	return sbuf_steal(&b);
}

/* What is wrong with chunk hex: why without the "chunk <hex>: " that
 * repo_verify's messages start with. */
static const char *
reason(const char *why, const char *hex)
{
	size_t n = strlen(hex);

	if (strncmp(why, "chunk ", 6) == 0 && strncmp(why + 6, hex, n) == 0 && strncmp(why + 6 + n, ": ", 2) == 0)
		return why + 8 + n;
	return why;
}

/* Each backup job whose points are damaged is told, in its log (the
 * chunk, why, which of its points) and as an unviewed error: a verify
 * run from the command line is seen by whoever reads the statistics. */
static void
tell_jobs(const struct verify_run *v)
{
	struct job *j;
	const json_t *e;
	size_t i;

	TAILQ_FOREACH(j, job_all(), link) {
		int told = 0;
		uint64_t *bad = NULL;
		size_t nbad = 0, k;
		const json_t *p;

		if (j->kind != CFG_BACKUP || strcmp(j->rule, v->rule) != 0 || (v->vm != NULL && strcmp(j->vm, v->vm) != 0))
			continue;
		json_array_foreach(v->damaged, i, e) {
			json_array_foreach(json_object_get(e, "points"), k, p) {
				if (!str_eq(json_string_value(json_object_get(p, "rule")), j->rule) ||
				    !str_eq(json_string_value(json_object_get(p, "vm")), j->vm))
					continue;
				bad = xreallocarray(bad, nbad + 1, sizeof(*bad));
				bad[nbad++] = (uint64_t)json_integer_value(json_object_get(p, "point"));
			}
		}
		bak_mark_damaged(j, v->seq, bad, nbad);
		free(bad);
		json_array_foreach(v->damaged, i, e) {
			const json_t *chunk = json_object_get(e, "chunk");
			const char *why = json_string_value(json_object_get(e, "why"));
			char *pts = points_of(json_object_get(e, "points"), j->rule, j->vm);

			if (*pts == '\0') {
				free(pts);
				continue;
			}
			if (json_is_string(chunk))
				job_log(j, LOG_WARN, "verify: chunk %s: %s; used by point%s %s; the next backup that reads "
				                     "those bytes stores the chunk again", json_string_value(chunk),
				    reason(why, json_string_value(chunk)), strchr(pts, ',') != NULL ? "s" : "", pts);
			else
				job_log(j, LOG_WARN, "verify: point %s is damaged: %s", pts, why);
			free(pts);
			told = 1;
		}
		if (told)
			job_stat_error(j);
	}
}

static void
verify_done(void *arg)
{
	struct verify_run *v = arg;
	json_t *resp;

	if (v->rc != 0) {
		resp = ctl_error("verify %s: %s", v->rule, v->err != NULL ? v->err : "failed");
	} else {
		log_info("verify %s%s%s: %llu points, %llu chunks (%llu bytes), %zu damaged", v->rule, v->vm ? "/" : "",
		    v->vm ? v->vm : "", (unsigned long long)v->st.points, (unsigned long long)v->st.chunks,
		    (unsigned long long)v->st.bytes, json_array_size(v->damaged));
		tell_jobs(v);
		resp = json_pack("{s:b,s:I,s:I,s:I,s:O}", "ok", 1, "points", (json_int_t)v->st.points, "chunks",
		    (json_int_t)v->st.chunks, "bytes", (json_int_t)v->st.bytes, "damaged", v->damaged);
	}
	if (v->id != NULL)
		json_object_set_new(resp, "id", json_string(v->id));
	ctl_reply(v->client, resp);
}

static void
verify_release(void *arg)
{
	struct verify_run *v = arg;

	json_decref(v->damaged);
	free(v->id);
	free(v->rule);
	free(v->vm);
	free(v->err);
	free(v);
}

/* A point is named by its number (1, 2, ...), as `points` lists it. */
static int
point_number(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long n;

	if (*s < '1' || *s > '9')
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = n;
	return 0;
}

json_t *
bak_request_point(const struct request *req, const char *what, const struct cfg_rule **rule, uint64_t *seq)
{
	const struct config *cfg = engine_config();
	const struct cfg_rule *r = config_rule(cfg, CFG_BACKUP, req->rule), *other;
	size_t i;
	int known = 0;

	*rule = NULL;
	*seq = 0;
	if (r == NULL) {
		if ((other = config_rule_any(cfg, req->rule)) != NULL)
			return ctl_error("rule %s is a %s rule: %s applies to backup rules (their repository)", req->rule,
			    cfg_kind_name(other->kind), what);
		return ctl_error("no backup rule named %s", req->rule);
	}
	if (req->vm != NULL) {
		/* A VM the rule backs up, or one it did (its job remains). */
		for (i = 0; i < r->nvms; i++)
			known |= strcmp(r->vms[i], req->vm) == 0;
		if (!known && job_find(CFG_BACKUP, r->name, req->vm) == NULL)
			return ctl_error("rule %s has no VM %s", r->name, req->vm);
	}
	if (req->point != NULL) {
		if (point_number(req->point, seq) != 0)
			return ctl_error("--point %s is not a restore point's number (1, 2, ...: `points` lists them)",
			    req->point);
		if (req->vm == NULL)
			return ctl_error("--point needs a VM: every VM numbers its own points");
	}
	*rule = r;
	return NULL;
}

json_t *
bak_verify(struct ctl_client *c, const struct request *req)
{
	const struct cfg_rule *r;
	struct verify_run *v;
	struct repo *repo;
	uint64_t seq;
	char *err = NULL;
	json_t *refused = bak_request_point(req, "verify", &r, &seq);

	if (refused != NULL)
		return refused;
	if ((repo = repos_get(r, &err)) == NULL) {
		json_t *resp = ctl_error("verify %s: %s", r->name, err);

		free(err);
		return resp;
	}
	v = xcalloc(1, sizeof(*v));
	v->client = ctl_client_id(c);
	v->id = req->id != NULL ? xstrdup(req->id) : NULL;
	v->repo = repo;
	v->rule = xstrdup(r->name);
	v->vm = req->vm != NULL ? xstrdup(req->vm) : NULL;
	v->seq = seq;
	work_submit(verify_fn, verify_done, verify_release, v);
	/* Answered by verify_done. */
	return NULL;
}
