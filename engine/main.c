/* vmferryd: the engine daemon.  Runs in the foreground, logs to stderr.
 *   vmferryd -n [-p] -c DIR                 check a config directory
 *   vmferryd -c DIR -d STATE_DIR -s SOCKET  run */
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/engine.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: vmferryd [-n [-p]] -c CONFIG_DIR [-d STATE_DIR] [-s SOCKET] [-v]\n"
	    "  -n  check the configuration, print every error, exit non-zero on any\n"
	    "  -p  with -n: print the effective configuration (secrets left out)\n");
	exit(2);
}

static int
check_config(const char *dir, int print)
{
	struct cfg_loader ld;
	struct cfg_errors errs = { 0 };
	size_t i;
	int nerr;

	cfg_loader_init(&ld, dir);
	nerr = cfg_loader_reload(&ld, &errs);
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	if (print)
		config_dump(&ld.cur, stdout);
	else if (nerr == 0)
		printf("configuration OK: %zu rules, %zu platforms, %zu nodes\n",
		    ld.cur.nrules, ld.cur.nplatforms, ld.cur.nnodes);
	cfg_errors_free(&errs);
	cfg_loader_free(&ld);
	return nerr == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	struct engine_opts o;
	int ch, check = 0, print = 0;

	memset(&o, 0, sizeof(o));
	o.socket_path = getenv("VMFERRY_SOCKET");
	while ((ch = getopt(argc, argv, "nc:d:s:pvh")) != -1) {
		switch (ch) {
		case 'n': check = 1; break;
		case 'p': print = 1; break;
		case 'c': o.config_dir = optarg; break;
		case 'd': o.state_dir = optarg; break;
		case 's': o.socket_path = optarg; break;
		case 'v': o.verbose++; break;
		default: usage();
		}
	}
	if (optind != argc || o.config_dir == NULL)
		usage();
	if (check)
		return check_config(o.config_dir, print);
	if (o.state_dir == NULL || o.socket_path == NULL) {
		fprintf(stderr, "vmferryd: -d STATE_DIR and -s SOCKET are required to run\n");
		usage();
	}
#ifdef __GLIBC__
	/* Transfers allocate and free the same pieces over and over (256 KiB
	 * write pieces, curl and TLS state per request).  By default glibc
	 * gives the top of the heap back after each free and faults it in
	 * again on the next request: a tenth of a sparse copy's CPU went to
	 * page faults.  Keep freed memory while work runs; the transfer
	 * slots trim when the node goes idle (slots.c).  The threshold is
	 * above a backup chunk (4 MiB, and its compressed or encrypted copy):
	 * at 1 MiB every chunk's buffers were mapped and unmapped again, and a
	 * full backup spent a fifth of its time in page faults and zeroing. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
	return engine_run(&o) == 0 ? 0 : 1;
}
