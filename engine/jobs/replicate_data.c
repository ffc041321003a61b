/* A replication job's own persisted data (see replicate_data.h). */
#include "engine/jobs/replicate_data.h"

#include <stdlib.h>
#include <string.h>

#include "engine/core/record.h"
#include "engine/core/util.h"

#define REP_DATA_V1 1 /* before the operations on restore points */
#define REP_DATA_V2 2
#define REP_MAX_POINTS 64

void
rep_point_free(struct rep_point *p)
{
	size_t i;

	for (i = 0; p->cids != NULL && i < p->ncids; i++)
		free(p->cids[i]);
	free(p->cids);
	free(p->snap);
	memset(p, 0, sizeof(*p));
}

void
rep_data_free(struct rep_data *x)
{
	size_t k;

	for (k = 0; k < x->npoints; k++)
		rep_point_free(&x->points[k]);
	free(x->points);
	memset(x, 0, sizeof(*x));
}

void
rep_data_put(const struct rep_data *x, struct sbuf *b)
{
	size_t k, i;

	rec_put_u16(b, REP_DATA_V2);
	rec_put_u64(b, x->cycles);
	rec_put_u8(b, x->landed);
	rec_put_u64(b, (uint64_t)x->point_asked_at);
	rec_put_u64(b, x->cycle_read);
	rec_put_u64(b, x->cycle_sent);
	rec_put_u64(b, x->op_point);
	rec_put_u8(b, x->op_stage);
	rec_put_u64(b, x->landed_pass);
	rec_put_u64(b, x->npoints);
	for (k = 0; k < x->npoints; k++) {
		const struct rep_point *p = &x->points[k];

		rec_put_str(b, p->snap);
		rec_put_u64(b, p->cycle);
		rec_put_u64(b, (uint64_t)p->time_ms);
		rec_put_u64(b, p->read);
		rec_put_u64(b, p->sent);
		rec_put_u64(b, p->ncids);
		for (i = 0; i < p->ncids; i++)
			rec_put_str(b, p->cids[i]);
	}
}

int
rep_data_get(struct rec_reader *r, struct rep_data *x)
{
	uint64_t n, k, nc;
	uint16_t v;
	size_t i;

	memset(x, 0, sizeof(*x));
	v = rec_get_u16(r);
	if (v != REP_DATA_V1 && v != REP_DATA_V2)
		return -1;
	x->cycles = (uint32_t)rec_get_u64(r);
	x->landed = rec_get_u8(r);
	x->point_asked_at = (int64_t)rec_get_u64(r);
	x->cycle_read = rec_get_u64(r);
	x->cycle_sent = rec_get_u64(r);
	if (v >= REP_DATA_V2) {
		x->op_point = (uint32_t)rec_get_u64(r);
		x->op_stage = rec_get_u8(r);
		x->landed_pass = (uint32_t)rec_get_u64(r);
	}
	n = rec_get_u64(r);
	if (r->bad || n > REP_MAX_POINTS)
		return -1;
	x->points = xcalloc(n ? n : 1, sizeof(*x->points));
	for (k = 0; k < n && !r->bad; k++) {
		struct rep_point *p = &x->points[k];

		x->npoints++;
		p->snap = rec_get_opt_str(r);
		p->cycle = (uint32_t)rec_get_u64(r);
		p->time_ms = (int64_t)rec_get_u64(r);
		p->read = rec_get_u64(r);
		p->sent = rec_get_u64(r);
		nc = rec_get_u64(r);
		if (r->bad || nc > 64)
			break;
		p->ncids = nc;
		p->cids = xcalloc(nc ? nc : 1, sizeof(char *));
		for (i = 0; i < nc; i++)
			p->cids[i] = rec_get_opt_str(r);
	}
	if (r->bad || k < n) {
		rep_data_free(x);
		return -1;
	}
	return 0;
}
