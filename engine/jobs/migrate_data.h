/* A migration job's persisted data (its record, versioned, big-endian):
 * the sync state, the target VM, each disk's last synced changeId, the
 * cutover stage and downtime.  Version 3; version 2 (before the sync pass
 * and the target had records of their own) is still read. */
#ifndef VMFERRY_JOBS_MIGRATE_DATA_H
#define VMFERRY_JOBS_MIGRATE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/jobs/sync.h"
#include "engine/jobs/target.h"

struct sbuf;

struct mig_data {
	uint8_t full_done;  /* the first full copy is finished */
	uint8_t stage;      /* cutting over: 0 stop source, 1 final sync, 2 finalise disks, 3 power on, 4 done */
	uint8_t src_was_on;
	uint8_t migrate;    /* 开始迁移 was asked for: the next catch-up leads to the cutover */
	int64_t down_start_ms;
	int64_t down_end_ms;
	struct sync_state sync;
	struct target_state tgt;
	char **change_ids;  /* per disk: of the last finished sync, or NULL */
};

void mig_data_free(struct mig_data *d);
/* Every per-disk array as long as the source's disk list (which had
 * old_n disks). */
void mig_data_size(struct mig_data *d, size_t old_n);
void mig_data_encode(const struct mig_data *d, struct sbuf *b);
/* 0, or -1 when the record cannot be read (d is then empty). */
int mig_data_decode(const uint8_t *p, size_t n, struct mig_data *d);

#endif
