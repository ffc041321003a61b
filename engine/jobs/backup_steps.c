#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
/* A backup's repository steps, on the worker pool (see backup_steps.h). */
#include "engine/jobs/backup_steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/core/util.h"
#include "engine/core/workers.h"
#include "engine/jobs/backup_sink.h"

static void
abort_writer(void *arg)
{
	repo_point_abort(arg);
}

void
bak_abort_writer(struct repo_writer *w)
{
	if (w != NULL)
		work_submit(abort_writer, NULL, NULL, w);
}

void
bak_step_free(struct bak_step *s)
{
	size_t i;

	if (s->made_writer)
		bak_abort_writer(s->w);
	for (i = 0; i < s->ndisks; i++) {
		free(s->disks[i].ids_path);
		free(s->disks[i].cid);
		free(s->disks[i].file);
		free(s->disks[i].base);
		free(s->disks[i].done);
		free(s->disks[i].missing);
	}
	free(s->disks);
	free(s->rule);
	free(s->vm);
	free(s->err);
	free(s->config_path);
	repo_point_free(s->manifest);
	free(s->deleted);
	free(s->keep);
	free(s->kept);
	free(s->points);
	free(s->warn);
	free(s);
}

/* The complete points and their manifests, for the job's listing. */
int
bak_list_points(struct bak_step *s, uint64_t **seqs, size_t *n)
{
	size_t i;

	if (repo_points(s->repo, s->rule, s->vm, seqs, n, &s->err) != 0)
		return -1;
	free(s->points);
	s->points = xcalloc(*n ? *n : 1, sizeof(*s->points));
	s->npoints = 0;
	for (i = 0; i < *n; i++) {
		struct repo_point *m = NULL;
		char *e = NULL;
		struct bak_point *pt;

		if (repo_point_manifest(s->repo, s->rule, s->vm, (*seqs)[i], &m, &e) != 0) {
			/* Listed all the same: verify names what is wrong. */
			free(s->warn);
			s->warn = e;
			pt = &s->points[s->npoints++];
			memset(pt, 0, sizeof(*pt));
			pt->seq = (*seqs)[i];
			continue;
		}
		pt = &s->points[s->npoints++];
		pt->seq = m->seq;
		pt->parent = m->parent;
		pt->mode = (uint8_t)m->mode;
		pt->start = m->start;
		pt->end = m->end;
		pt->read = m->bytes_read;
		pt->stored = m->bytes_stored;
		repo_point_free(m);
	}
	return 0;
}

void
bak_choose_fn(struct bak_step *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0, k;
	int mode = s->next_mode;

	if (bak_list_points(s, &seqs, &n) != 0) {
		s->rc = -1;
		return;
	}
	s->seq = n ? seqs[n - 1] + 1 : 1;
	s->parent = 0;
	if (mode == BAK_MODE_ANY)
		mode = REPO_INCREMENTAL;
	if (mode == REPO_INCREMENTAL && n > 0)
		s->parent = seqs[n - 1];
	for (k = n; mode == REPO_DIFFERENTIAL && k > 0; k--) {
		if (s->points[k - 1].mode == REPO_FULL && s->points[k - 1].end != 0) {
			s->parent = seqs[k - 1];
			break;
		}
	}
	s->mode = s->parent != 0 ? mode : REPO_FULL;
	if (mode != REPO_FULL && s->parent == 0)
		s->next_mode = -2; /* said below: there was no base */
	free(seqs);
}

void
bak_manifest_fn(struct bak_step *s)
{
	if (repo_point_manifest(s->repo, s->rule, s->vm, s->parent, &s->manifest, &s->err) != 0)
		s->rc = -1;
}

/* Whether the point is in the repository already (s->existed): a crash
 * came after its commit, before the job recorded it. */
static int
point_listed(struct bak_step *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0, i;

	if (repo_points(s->repo, s->rule, s->vm, &seqs, &n, &s->err) != 0) {
		s->rc = -1;
		return -1;
	}
	for (i = 0; i < n; i++)
		s->existed |= seqs[i] == s->seq;
	free(seqs);
	return 0;
}

void
bak_check_fn(struct bak_step *s)
{
	struct repo_point *parent = NULL;
	size_t i, k;

	if (s->w == NULL && (point_listed(s) != 0 || s->existed))
		return;
	if (s->w == NULL) {
		struct repo_point p;
		uint8_t *cfg = NULL;
		size_t len = 0;
		char *text = NULL;
		FILE *f;

		/* The configuration saved in 备份虚拟机配置. */
		if (s->config_path != NULL && (f = fopen(s->config_path, "r")) != NULL) {
			cfg = xmalloc(1 << 20);
			len = fread(cfg, 1, (1 << 20) - 1, f);
			cfg[len] = '\0';
			text = (char *)cfg;
			fclose(f);
		}
		memset(&p, 0, sizeof(p));
		p.rule = s->rule;
		p.vm = s->vm;
		p.seq = s->seq;
		p.mode = (enum repo_mode)s->mode;
		p.parent = s->parent;
		p.start = s->start;
		p.config = text;
		s->rc = repo_point_begin(s->repo, &p, &s->w, &s->err);
		free(cfg);
		if (s->rc != 0)
			return;
		s->made_writer = 1;
	}
	if (s->parent != 0 && repo_point_read(s->repo, s->rule, s->vm, s->parent, &parent, &s->err) != 0) {
		s->rc = -1;
		s->parent_bad = 1;
		return;
	}
	for (i = 0; i < s->ndisks; i++) {
		struct step_disk *d = &s->disks[i];
		struct bak_ids ids;
		uint64_t n = repo_disk_chunks(d->capacity);

		if (d->against_parent && parent != NULL) {
			for (k = 0; k < parent->ndisks; k++)
				if ((uint32_t)parent->disks[k].key == d->key && parent->disks[k].capacity == d->capacity)
					break;
			if (k < parent->ndisks) {
				d->base = xcalloc(n ? n : 1, REPO_ID_LEN);
				memcpy(d->base, parent->disks[k].ids, n * REPO_ID_LEN);
				for (k = 0; k < n; k++) {
					if (repo_chunk_id_is_zero(d->base[k]) || repo_chunk_has(s->repo, d->base[k]))
						continue;
					d->missing = xreallocarray(d->missing, d->nmissing + 1, sizeof(uint64_t));
					d->missing[d->nmissing++] = k;
				}
			}
		}
		if (bak_ids_load(d->ids_path, s->seq, s->pass, d->capacity, &ids, &s->err) != 0) {
			s->rc = -1;
			break;
		}
		/* What was stored before a restart must still be there (a
		 * gc in between spares only what it saw in use). */
		for (k = 0; k < n; k++) {
			char *e = NULL;

			if (!ids.set[k] || repo_chunk_has(s->repo, ids.ids[k]))
				continue;
			ids.set[k] = 0;
			if (bak_ids_clear(d->ids_path, k, &e) != 0) {
				s->rc = -1;
				s->err = e;
				break;
			}
		}
		d->done = ids.set;
		ids.set = NULL;
		bak_ids_free(&ids);
		if (s->rc != 0)
			break;
	}
	repo_point_free(parent);
}

/* Whether seq is one of s->keep (then noted in s->kept). */
static int
bak_step_keeps(struct bak_step *s, uint64_t seq)
{
	size_t k;

	for (k = 0; k < s->nkeep && s->keep[k] != seq; k++)
		;
	if (k == s->nkeep)
		return 0;
	s->kept = xreallocarray(s->kept, s->nkept + 1, sizeof(uint64_t));
	s->kept[s->nkept++] = seq;
	return 1;
}

void
bak_retain_fn(struct bak_step *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0, i;

	if (repo_points(s->repo, s->rule, s->vm, &seqs, &n, &s->err) != 0) {
		s->rc = -1;
		return;
	}
	for (i = 0; n > (size_t)s->retention && i < n - (size_t)s->retention; i++) {
		char *e = NULL;

		if (bak_step_keeps(s, seqs[i]))
			continue;
		if (repo_point_delete(s->repo, s->rule, s->vm, seqs[i], &e) != 0) {
			free(s->warn);
			s->warn = e;
			break;
		}
		s->deleted = xreallocarray(s->deleted, s->ndeleted + 1, sizeof(uint64_t));
		s->deleted[s->ndeleted++] = seqs[i];
	}
	free(seqs);
	if (s->ndeleted > 0) {
		char *e = NULL;

		if (repo_gc(s->repo, time(NULL), &s->gc, &e) != 0) {
			free(s->warn);
			s->warn = e;
		} else {
			s->gc_ran = 1;
		}
	}
	seqs = NULL;
	if (bak_list_points(s, &seqs, &n) != 0)
		s->rc = -1;
	free(seqs);
}

void
bak_commit_fn(struct bak_step *s)
{
	size_t i, k;

	/* Committed before a crash: nothing to do. */
	if (point_listed(s) != 0 || s->existed)
		return;
	if (s->w == NULL) {
		s->rc = -1;
		s->err = xstrdup("the point is not open in the repository");
		return;
	}
	for (i = 0; i < s->ndisks; i++) {
		struct step_disk *d = &s->disks[i];
		struct repo_disk rd;
		struct bak_ids ids;
		uint64_t nch = repo_disk_chunks(d->capacity);

		if (bak_ids_load(d->ids_path, s->seq, s->pass, d->capacity, &ids, &s->err) != 0) {
			s->rc = -1;
			return;
		}
		for (k = 0; k < nch; k++) {
			if (ids.set[k])
				continue;
			if (d->base != NULL)
				memcpy(ids.ids[k], d->base[k], REPO_ID_LEN);
			else
				memset(ids.ids[k], 0, REPO_ID_LEN);
		}
		memset(&rd, 0, sizeof(rd));
		rd.key = (int)d->key;
		rd.capacity = d->capacity;
		rd.change_id = d->cid;
		rd.file = d->file;
		rd.nchunks = nch;
		rd.ids = (const uint8_t(*)[REPO_ID_LEN])ids.ids;
		s->rc = repo_point_put_index(s->w, &rd, &s->err);
		bak_ids_free(&ids);
		if (s->rc != 0)
			return;
	}
	s->rc = repo_point_commit(s->w, (int64_t)time(NULL), s->bytes_read, s->stored, &s->err);
	s->w = NULL; /* gone, whatever the result */
}

void
bak_delete_fn(struct bak_step *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0, i;

	if (repo_points(s->repo, s->rule, s->vm, &seqs, &n, &s->err) != 0) {
		s->rc = -1;
		return;
	}
	for (i = 0; i < n; i++) {
		if (bak_step_keeps(s, seqs[i]))
			continue;
		if (repo_point_delete(s->repo, s->rule, s->vm, seqs[i], &s->err) != 0) {
			s->rc = -1;
			break;
		}
		s->ndeleted++;
	}
	free(seqs);
	if (s->rc == 0 && repo_gc(s->repo, time(NULL), &s->gc, &s->err) != 0)
		s->rc = -1;
}
