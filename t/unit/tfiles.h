/* Files of a test's config directory, for the config unit tests. */
#ifndef VMFERRY_T_TFILES_H
#define VMFERRY_T_TFILES_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/core/util.h"

static inline void
tfile_write(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static inline void
tfile_remove(const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);

	assert_int_equal(unlink(p), 0);
	free(p);
}

#endif
