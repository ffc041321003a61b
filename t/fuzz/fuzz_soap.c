/* SOAP replies as a vSphere server might send them, hostile or broken:
 * envelope and fault parsing, VM and datastore property sets, and
 * changed-area pages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cowd.h"
#include "drivers/soap.h"
#include "drivers/vsops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct soap_reply r;
	char *err = NULL;
	xmlNode *rv, *obj;

	if (soap_parse_reply((const char *)data, size, &r, &err) != 0) {
		free(err);
		return 0;
	}
	if (r.is_fault) {
		free(soap_fault_text(&r));
	} else {
		rv = xml_child(r.body_child, "returnval");
		for (obj = xml_child(rv, "objects"); obj != NULL; obj = xml_next(obj, "objects")) {
			struct vs_vm vm;
			struct vs_datastore ds;
			char *why = NULL;
			size_t i;

			/* Any object read as a datastore: a VMFS major version is
			 * a sane number or 0, and only VMFS 6 and later say
			 * their deltas cannot be written, naming the datastore. */
			if (vs_parse_datastore_object(obj, &ds) == 0) {
				if (ds.vmfs_major < 0 || ds.vmfs_major > 255)
					__builtin_trap();
				if (cowd_datastore_check(ds.name, ds.type, ds.vmfs_major, &why) != 0) {
					if (why == NULL || ds.vmfs_major < 6 || ds.type == NULL ||
					    (ds.name != NULL && strstr(why, ds.name) == NULL))
						__builtin_trap();
					free(why);
				} else if (why != NULL) {
					__builtin_trap();
				}
			}
			vs_datastore_free(&ds);

			vs_parse_vm_object(obj, &vm);
			/* What the migration relies on for a VM without a problem. */
			for (i = 0; vm.problem == NULL && i < vm.ndisks; i++)
				if (vm.disks[i].file == NULL || vm.disks[i].capacity == 0 ||
				    vm.disks[i].capacity > VS_DISK_MAX_BYTES)
					__builtin_trap();
			vs_vm_free(&vm);
		}
		{
			struct vs_extent *ext = NULL;
			size_t n = 0, i;
			uint64_t next = 0, gap = 0;

			if (vs_parse_changes(rv, 0, 1u << 30, &ext, &n, &next, &err) != 0) {
				if (err == NULL)
					__builtin_trap();
				free(err);
			} else {
				/* A tiny cap, so that merging runs too. */
				vs_extents_normalize(ext, &n, 4, &gap);
				if (n > 4)
					__builtin_trap();
				for (i = 0; i < n; i++)
					if (ext[i].length == 0 || ext[i].start + ext[i].length > (1u << 30) ||
					    (i > 0 && ext[i].start <= ext[i - 1].start + ext[i - 1].length))
						__builtin_trap();
			}
			free(ext);
		}
	}
	soap_reply_free(&r);
	return 0;
}
