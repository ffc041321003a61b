/* The vmferry nbdkit plugin's parameters (drivers/repo_export.c, what
 * `nbdkit ... nbdkit-vmferry-plugin.so key=value ...` hands over), any
 * bytes: lines of key=value, each set in turn as nbdkit would, then the
 * check that every required key came.  What is accepted must hold
 * together: names are safe file names, numbers in range, a key never
 * set twice, and an error always says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "drivers/repo_export.h"
#include "engine/core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xstrndup((const char *)data, size), *line, *save = NULL, *eq, *err = NULL;
	struct repo_export_conf c;

	repo_export_conf_init(&c);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		if (repo_export_conf_set(&c, line, eq + 1, &err) != 0) {
			if (err == NULL)
				abort();
			free(err);
			err = NULL;
		} else if (err != NULL) {
			abort();
		}
	}
	if ((c.rule != NULL && !file_name_is_safe(c.rule)) || (c.vm != NULL && !file_name_is_safe(c.vm)) ||
	    c.disk >= REPO_MAX_DISKS || c.disk < -1 || c.cache > REPO_EXPORT_CACHE_MAX)
		abort();
	if (repo_export_conf_check(&c, &err) == 0) {
		if (err != NULL || c.repo == NULL || c.point == 0 || c.disk < 0)
			abort();
	} else if (err == NULL) {
		abort();
	}
	free(err);
	repo_export_conf_free(&c);
	free(text);
	return 0;
}
