/* VMDK descriptor files: find the extent that holds a disk's data instead
 * of guessing its name. */
#ifndef VMFERRY_VMDK_H
#define VMFERRY_VMDK_H

#include <stddef.h>
#include <stdint.h>

struct vmdk_extent {
	char access[8];   /* RW, RDONLY, NOACCESS */
	uint64_t sectors;
	char type[16];    /* FLAT, VMFS, VMFSSPARSE, SESPARSE, SPARSE, ZERO, ... */
	char *file;       /* relative to the descriptor's directory */
	uint64_t offset;  /* sectors, for FLAT */
};

struct vmdk_desc {
	char *create_type;
	char *parent_hint; /* parentFileNameHint, for deltas */
	uint32_t cid;        /* CID: changes with the disk's content */
	uint32_t parent_cid; /* parentCID: the parent's CID when this delta was made */
	int has_cid;         /* CID or parentCID given as 1 to 8 hex digits */
	int has_parent_cid;
	struct vmdk_extent *extents;
	size_t nextents;
};

/* Returns 0, or -1 with *err (malloc'd) naming the line that is wrong. */
int vmdk_parse(const char *text, size_t len, struct vmdk_desc *out, char **err);
void vmdk_free(struct vmdk_desc *d);
/* The file of a flat disk's single data extent (VMFS or FLAT at offset 0),
 * or NULL with *err saying why this disk cannot be read as flat. */
const char *vmdk_flat_file(const struct vmdk_desc *d, char **err);

/* The sparse extent of a snapshot delta in VMware's vmfsSparse format
 * (createType "vmfsSparse", one VMFSSPARSE extent, a parentFileNameHint
 * and a parentCID), or NULL with *err naming what the descriptor is
 * instead: "seSparse" is what VMFS6 datastores make, which the engine
 * cannot write. */
const char *vmdk_delta_file(const struct vmdk_desc *d, char **err);

/* A disk's descriptor (text, len) read from desc_file ("[ds] dir/x.vmdk"):
 * the datastore (*ds) and the datastore-relative path (*flat) of its flat
 * data extent, both malloc'd.  Returns 0, or -1 with *err. */
int vmdk_data_file(const char *text, size_t len, const char *desc_file, char **ds, char **flat, char **err);

#endif
