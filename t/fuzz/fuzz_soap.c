/* SOAP replies as a vSphere server might send them, hostile or broken:
 * envelope and fault parsing, VM property sets, and changed-area pages. */
#include <stdint.h>
#include <stdlib.h>

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
			size_t i;

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
