/* Replication jobs (seed 001): cycles that end in restore points on the
 * target (replicate.c); the states they share with migration are
 * vmjob.h's. */
#ifndef VMFERRY_JOBS_REPLICATE_H
#define VMFERRY_JOBS_REPLICATE_H

#include <jansson.h>

struct job;

/* For `show`: the target VM, the cycles, each restore point (its cycle,
 * snapshot, time, bytes read and written), each disk's transport. */
json_t *rep_details(const struct job *j);

#endif
