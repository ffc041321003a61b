/* memory_snapshot at cutover: the suspended source's memory state (its
 * layoutEx file of type "suspend") is fetched into temp_dir, uploaded
 * beside the target VM's .vmx, and the target's extraConfig
 * checkpoint.vmState names it, so that powering the target on resumes
 * the guest where it stopped.  Every step can be repeated after a crash. */
#ifndef VMFERRY_JOBS_MEMSTATE_H
#define VMFERRY_JOBS_MEMSTATE_H

#include "drivers/vsops.h"

struct copy;
struct disk;
struct job;
struct sync_pass;
struct target;

struct memstate {
	struct job *j;
	struct sync_pass *pass;   /* whose copy settings the fetch shares */
	struct target *tgt;       /* which uploads it */
	struct vs_op *op;
	struct copy *copy;
	struct disk *src, *dst;
	int done;                 /* carried, or nothing to carry */
	char *name;               /* its file name, kept in the target VM's directory */
	char *dst_ds;             /* the target VM's datastore and directory */
	char *dst_dir;
	struct vs_extent area;
	char *src_vm, *src_dc;    /* the carry in progress: from, to */
	char *target_vm;
	void (*then)(struct job *j);
};

void memstate_init(struct memstate *m, struct job *j, struct sync_pass *pass, struct target *tgt);
void memstate_cancel(struct memstate *m);
void memstate_free(struct memstate *m);
/* Carry the memory state of source VM src_vm (datacenter src_dc) to the
 * target VM target_vm whose configuration file is vmx_path, then then(j);
 * a source that is not suspended has none: logged, then(j).  Failures go
 * out as rt_fail/rt_lost. */
void memstate_carry(struct memstate *m, const char *src_vm, const char *src_dc, const char *target_vm,
    const char *vmx_path, void (*then)(struct job *j));

#endif
