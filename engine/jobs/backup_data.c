/* The backup job's record (see backup_data.h). */
#include "engine/jobs/backup_data.h"

#include <stdlib.h>
#include <string.h>

#include "engine/core/record.h"
#include "engine/core/util.h"

#define BAK_RECORD_V1 1
#define BAK_RECORD_V2 2 /* V1, then force_full and the restore */

static void
free_cids(struct bak_data *x)
{
	size_t i;

	for (i = 0; i < x->nbase; i++)
		free(x->base_cids[i]);
	free(x->base_cids);
	x->base_cids = NULL;
	x->nbase = 0;
}

void
bak_data_free(struct bak_data *x)
{
	sync_state_free(&x->sync);
	free_cids(x);
	free(x->points);
	free(x->restore);
	memset(x, 0, sizeof(*x));
	x->next_mode = BAK_MODE_ANY;
}

void
bak_data_size(struct bak_data *x)
{
	size_t n = x->sync.ndisks;

	if (x->nbase == n)
		return;
	free_cids(x);
	x->nbase = n;
	x->base_cids = xcalloc(n ? n : 1, sizeof(char *));
}

void
bak_data_put(const struct bak_data *x, struct sbuf *b)
{
	size_t i;

	rec_put_u16(b, BAK_RECORD_V2);
	sync_state_put(&x->sync, b);
	rec_put_u8(b, x->next_mode);
	rec_put_u8(b, x->stage);
	rec_put_u8(b, x->mode);
	rec_put_u64(b, x->seq);
	rec_put_u64(b, x->parent);
	rec_put_u64(b, (uint64_t)x->start);
	rec_put_u64(b, x->stored);
	rec_put_u64(b, x->nbase);
	for (i = 0; i < x->nbase; i++) {
		rec_put_u8(b, x->base_cids[i] != NULL);
		if (x->base_cids[i] != NULL)
			rec_put_str(b, x->base_cids[i]);
	}
	rec_put_u64(b, x->npoints);
	for (i = 0; i < x->npoints; i++) {
		const struct bak_point *pt = &x->points[i];

		rec_put_u64(b, pt->seq);
		rec_put_u64(b, pt->parent);
		rec_put_u8(b, pt->mode);
		rec_put_u64(b, (uint64_t)pt->start);
		rec_put_u64(b, (uint64_t)pt->end);
		rec_put_u64(b, pt->read);
		rec_put_u64(b, pt->stored);
		rec_put_u8(b, pt->damaged);
	}
	rec_put_u8(b, x->force_full);
	rec_put_blob(b, x->restore != NULL ? (const void *)x->restore : "", x->nrestore);
}

int
bak_data_get(const uint8_t *p, size_t n, struct bak_data *x)
{
	struct rec_reader r;
	uint64_t nb, i;
	uint16_t v;

	memset(x, 0, sizeof(*x));
	x->next_mode = BAK_MODE_ANY;
	if (n == 0)
		return 0;
	rec_reader_init(&r, p, n);
	v = rec_get_u16(&r);
	if ((v != BAK_RECORD_V1 && v != BAK_RECORD_V2) || sync_state_get(&r, &x->sync) != 0)
		goto bad;
	x->next_mode = rec_get_u8(&r);
	x->stage = rec_get_u8(&r);
	x->mode = rec_get_u8(&r);
	x->seq = rec_get_u64(&r);
	x->parent = rec_get_u64(&r);
	x->start = (int64_t)rec_get_u64(&r);
	x->stored = rec_get_u64(&r);
	nb = rec_get_u64(&r);
	if (r.bad || nb > 1024 || nb != x->sync.ndisks)
		goto bad;
	bak_data_size(x);
	for (i = 0; i < nb; i++)
		if (rec_get_u8(&r))
			x->base_cids[i] = rec_get_str(&r);
	x->npoints = (size_t)rec_get_u64(&r);
	if (r.bad || x->npoints > 4096)
		goto bad;
	x->points = xcalloc(x->npoints ? x->npoints : 1, sizeof(*x->points));
	for (i = 0; i < x->npoints; i++) {
		struct bak_point *pt = &x->points[i];

		pt->seq = rec_get_u64(&r);
		pt->parent = rec_get_u64(&r);
		pt->mode = rec_get_u8(&r);
		pt->start = (int64_t)rec_get_u64(&r);
		pt->end = (int64_t)rec_get_u64(&r);
		pt->read = rec_get_u64(&r);
		pt->stored = rec_get_u64(&r);
		pt->damaged = rec_get_u8(&r);
	}
	if (v >= BAK_RECORD_V2) {
		x->force_full = rec_get_u8(&r);
		x->restore = rec_get_blob(&r, &x->nrestore);
		if (x->nrestore == 0) {
			free(x->restore);
			x->restore = NULL;
		}
	}
	if (r.bad || x->stage > BAK_STAGE_COMMITTED || x->mode > 2)
		goto bad;
	return 0;
bad:
	bak_data_free(x);
	return -1;
}
