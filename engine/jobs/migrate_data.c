/* A migration job's persisted data (see migrate_data.h). */
#include "engine/jobs/migrate_data.h"

#include <stdlib.h>
#include <string.h>

#include "engine/core/record.h"
#include "engine/core/util.h"

#define MIG_DATA_V2 2 /* before the sync pass and the target had records of their own */
#define MIG_DATA_V3 3 /* before the transport per target disk */
#define MIG_DATA_V4 4

void
mig_data_free(struct mig_data *d)
{
	size_t i;

	for (i = 0; d->change_ids != NULL && i < d->sync.ndisks; i++)
		free(d->change_ids[i]);
	free(d->change_ids);
	sync_state_free(&d->sync);
	target_state_free(&d->tgt);
	memset(d, 0, sizeof(*d));
}

void
mig_data_size(struct mig_data *d, size_t old_n)
{
	size_t i, n = d->sync.ndisks;

	if (d->change_ids == NULL || old_n != n) {
		for (i = 0; d->change_ids != NULL && i < old_n; i++)
			free(d->change_ids[i]);
		free(d->change_ids);
		d->change_ids = xcalloc(n ? n : 1, sizeof(char *));
	}
	target_state_size(&d->tgt, n);
}

void
mig_data_encode(const struct mig_data *d, struct sbuf *b)
{
	size_t i;

	rec_put_u16(b, MIG_DATA_V4);
	rec_put_u8(b, d->full_done);
	rec_put_u8(b, d->stage);
	rec_put_u8(b, d->src_was_on);
	rec_put_u8(b, d->migrate);
	rec_put_u64(b, (uint64_t)d->down_start_ms);
	rec_put_u64(b, (uint64_t)d->down_end_ms);
	sync_state_put(&d->sync, b);
	target_state_put(&d->tgt, b);
	for (i = 0; i < d->sync.ndisks; i++)
		rec_put_str(b, d->change_ids[i]);
	target_state_put_vias(&d->tgt, b);
}

/* The record of the previous version: one list of disks holding both
 * sides and the pass. */
static int
data_decode_v2(struct rec_reader *r, struct mig_data *d)
{
	uint64_t nd, i;

	d->full_done = rec_get_u8(r);
	d->stage = rec_get_u8(r);
	d->src_was_on = rec_get_u8(r);
	d->migrate = rec_get_u8(r);
	d->sync.src_vm = rec_get_opt_str(r);
	d->sync.src_dc = rec_get_opt_str(r);
	d->tgt.vm = rec_get_opt_str(r);
	d->sync.snap = rec_get_opt_str(r);
	d->sync.pass = (uint32_t)rec_get_u64(r);
	d->down_start_ms = (int64_t)rec_get_u64(r);
	d->down_end_ms = (int64_t)rec_get_u64(r);
	d->sync.bytes = rec_get_u64(r);
	nd = rec_get_u64(r);
	if (r->bad || nd > 64)
		return -1;
	d->sync.ndisks = nd;
	d->sync.disks = xcalloc(nd ? nd : 1, sizeof(*d->sync.disks));
	mig_data_size(d, 0);
	for (i = 0; i < nd; i++) {
		struct sync_disk *s = &d->sync.disks[i];
		struct target_disk *t = &d->tgt.disks[i];

		s->key = (uint32_t)rec_get_u64(r);
		s->capacity = rec_get_u64(r);
		s->src_file = rec_get_opt_str(r);
		t->file = rec_get_opt_str(r);
		t->ds = rec_get_opt_str(r);
		t->flat = rec_get_opt_str(r);
		d->change_ids[i] = rec_get_opt_str(r);
		s->checkpoint = rec_get_u64(r);
		s->full = rec_get_u8(r);
		s->pass_cid = rec_get_opt_str(r);
		s->prev_cid = rec_get_opt_str(r);
		s->prev_ckpt = rec_get_u64(r);
	}
	/* The previous version's passes went into the staging images only,
	 * to be uploaded whole at cutover: the job ends that way. */
	d->tgt.write = TARGET_WRITE_WHOLE;
	return r->bad ? -1 : 0;
}

int
mig_data_decode(const uint8_t *p, size_t n, struct mig_data *d)
{
	struct rec_reader r;
	uint16_t v;
	size_t i;

	memset(d, 0, sizeof(*d));
	if (n == 0) {
		mig_data_size(d, 0);
		return 0;
	}
	rec_reader_init(&r, p, n);
	v = rec_get_u16(&r);
	if (v == MIG_DATA_V2) {
		if (data_decode_v2(&r, d) != 0)
			goto bad;
		target_state_old_vias(&d->tgt);
		return 0;
	}
	if (v != MIG_DATA_V3 && v != MIG_DATA_V4)
		goto bad;
	d->full_done = rec_get_u8(&r);
	d->stage = rec_get_u8(&r);
	d->src_was_on = rec_get_u8(&r);
	d->migrate = rec_get_u8(&r);
	d->down_start_ms = (int64_t)rec_get_u64(&r);
	d->down_end_ms = (int64_t)rec_get_u64(&r);
	if (sync_state_get(&r, &d->sync) != 0 || target_state_get(&r, &d->tgt, d->sync.ndisks) != 0)
		goto bad;
	mig_data_size(d, d->sync.ndisks);
	for (i = 0; i < d->sync.ndisks; i++)
		d->change_ids[i] = rec_get_opt_str(&r);
	if (v == MIG_DATA_V3)
		target_state_old_vias(&d->tgt);
	else if (target_state_get_vias(&r, &d->tgt) != 0)
		goto bad;
	if (r.bad)
		goto bad;
	return 0;
bad:
	mig_data_free(d);
	return -1;
}

