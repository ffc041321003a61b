/* The daemon as a whole: owns the loop, the store, the configuration, the
 * jobs and the status socket, and wires events between them. */
#ifndef VMFERRY_ENGINE_H
#define VMFERRY_ENGINE_H

#include "engine/config.h"

struct engine_opts {
	const char *config_dir;
	const char *state_dir;
	const char *socket_path;
	int verbose;
};

/* Runs until SIGTERM/SIGINT; returns 0 on a clean shutdown. */
int engine_run(const struct engine_opts *o);

struct config;
struct bw_bucket;
/* For the job kinds' actions: the configuration in force, the state
 * directory (relative node paths resolve against it), and the bandwidth
 * bucket a rule's transfers share. */
const struct config *engine_config(void);
const char *engine_state_dir(void);
/* The bandwidth bucket of a rule: one per (kind, rule). */
struct bw_bucket *engine_bucket(enum cfg_kind kind, const char *rule);

#endif
