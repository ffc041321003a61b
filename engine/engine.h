/* The daemon as a whole: owns the loop, the store, the configuration, the
 * jobs and the status socket, and wires events between them. */
#ifndef VMFERRY_ENGINE_H
#define VMFERRY_ENGINE_H

struct engine_opts {
	const char *config_dir;
	const char *state_dir;
	const char *socket_path;
	int verbose;
};

/* Runs until SIGTERM/SIGINT; returns 0 on a clean shutdown. */
int engine_run(const struct engine_opts *o);

#endif
