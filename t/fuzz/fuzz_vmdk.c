/* VMDK descriptors fetched from a datastore: any bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "drivers/vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmdk_desc d;
	char *err = NULL;

	if (vmdk_parse((const char *)data, size, &d, &err) != 0) {
		free(err);
		return 0;
	}
	vmdk_flat_file(&d, &err);
	free(err);
	vmdk_free(&d);
	return 0;
}
