/* A replication job's own persisted data, after the record it shares with
 * migration (struct mig_data): its finished cycles, the cycle in
 * progress, and its restore points on the target, each with the source's
 * changeIds it holds (a revert counts the next cycle's changes from
 * there). */
#ifndef VMFERRY_JOBS_REPLICATE_DATA_H
#define VMFERRY_JOBS_REPLICATE_DATA_H

#include <stddef.h>
#include <stdint.h>

struct rec_reader;
struct sbuf;

struct rep_point {
	char *snap;         /* the restore point: a snapshot of the target VM (moref) */
	uint32_t cycle;     /* the cycle that made it (names the snapshot) */
	int64_t time_ms;    /* wall time it was made */
	uint64_t read;      /* bytes its cycle read from the source */
	uint64_t sent;      /* bytes its cycle wrote to the target */
	size_t ncids;
	char **cids;        /* per disk: the source's changeId the point holds */
};

struct rep_data {
	uint32_t cycles;         /* cycles finished (a restore point each) */
	uint8_t landed;          /* the cycle in progress: 0 copying, 1 landed (its restore point next), 2 point made */
	uint32_t landed_pass;    /* the sync pass that landed (a pass made again from a new snapshot lands again) */
	int64_t point_asked_at;  /* wall ms a restore point was asked for and not yet seen; 0: none */
	uint64_t cycle_read;     /* the cycle in progress: bytes read, bytes written */
	uint64_t cycle_sent;
	uint32_t op_point;       /* revert, failover: the point (its cycle) the target goes to */
	uint8_t op_stage;        /* how far that operation got (replicate_ops.c) */
	size_t npoints;
	struct rep_point *points; /* oldest first */
};

void rep_data_free(struct rep_data *x);
void rep_point_free(struct rep_point *p);
void rep_data_put(const struct rep_data *x, struct sbuf *b);
/* 0, or -1 when the bytes cannot be read. */
int rep_data_get(struct rec_reader *r, struct rep_data *x);

#endif
