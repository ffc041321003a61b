/* libFuzzer target for the config parser: any bytes, as one rule file.
 * The config dir does not exist, so password_file/ca_file lookups fail
 * cleanly; password_env reads the fuzzer's environment, which is fine.
 * Everything is freed: LeakSanitizer runs with the fuzzer. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/config.h"
#include "engine/core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_errors errs = { 0 };
	struct cfg_file f;
	size_t i;

	if (cfg_parse_buffer("fuzz.yaml", (const char *)data, size, "/nonexistent/vmferry-fuzz", &f,
	    &errs) == 0) {
		/* a parsed file must be complete enough to print */
		struct config c = { 0 };
		FILE *null = fopen("/dev/null", "w");

		c.system = f.system;
		c.platforms = xcalloc(f.nplatforms, sizeof(*c.platforms));
		for (i = 0; i < f.nplatforms; i++)
			c.platforms[c.nplatforms++] = &f.platforms[i];
		c.nodes = xcalloc(f.nnodes, sizeof(*c.nodes));
		for (i = 0; i < f.nnodes; i++)
			c.nodes[c.nnodes++] = &f.nodes[i];
		c.templates = xcalloc(f.ntemplates, sizeof(*c.templates));
		for (i = 0; i < f.ntemplates; i++)
			c.templates[c.ntemplates++] = &f.templates[i];
		c.rules = xcalloc(f.nrules, sizeof(*c.rules));
		for (i = 0; i < f.nrules; i++)
			c.rules[c.nrules++] = &f.rules[i];
		if (null != NULL) {
			config_dump(&c, null);
			fclose(null);
		}
		free(c.platforms);
		free(c.nodes);
		free(c.templates);
		free(c.rules);
		cfg_file_free(&f);
	} else {
		/* a failed parse reports why and leaves nothing behind */
		if (errs.n == 0 || f.path != NULL || f.nrules != 0)
			__builtin_trap();
	}
	for (i = 0; i < errs.n; i++)
		if (errs.msgs[i] == NULL || errs.msgs[i][0] == '\0')
			__builtin_trap();
	cfg_errors_free(&errs);
	return 0;
}
