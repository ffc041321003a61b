/* tools/bench.d/fsmbench.c — persisted state transitions per second.
 *
 * The real job, store and FSM code (engine/jobs/job.c, engine/core/store.c,
 * fsm/fsm.c, fsm/backup.c) on a real LMDB store in a fresh directory,
 * without an event loop: store_commit() stands in for the loop's group
 * commit at the end of a loop turn, exactly as the unit tests do.
 *
 *   fsmbench [-n JOBS] [-c CYCLES] [-b BATCH] [-d DIR]
 *
 * JOBS backup jobs (their start-up reads only their own record, so no
 * platform is needed; replication and migration jobs look for their
 * source platform) are created and brought to idle (空闲).  Then, for
 * CYCLES rounds, every job gets stop (idle -> stopping -> stopped) and
 * then start (stopped -> starting -> idle): four persisted transitions per
 * job and round, each with its job record and log entry written.  BATCH
 * jobs get their event per loop turn, then the turn commits (durably);
 * the follow-up transitions that the enter actions dispatch join the next
 * turn's commit, as in the daemon.  BATCH 0 = all jobs in one turn.
 *
 * Prints one JSON line: jobs, transitions, commits, seconds, per_s. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/jobs/job.h"
#include "engine/core/log.h"
#include "tools/bench.d/bench_util.h"
#include "engine/slots.h"
#include "engine/core/store.h"
#include "fsm/tables.h"

static const char *
state_id(const struct job *j)
{
	return job_state_info(j)->id;
}

int
main(int argc, char **argv)
{
	int njobs = 1000, cycles = 10, batch = 0, opt, i, c, keep = 0;
	char tmpl[] = "/tmp/vmferry-fsmbench-XXXXXX";
	const char *dir = NULL;
	struct job **jobs;
	char **names;
	struct cfg_rule rule;
	struct store_stats st0, st1;
	unsigned long long transitions = 0;
	double t0, t1;

	while ((opt = getopt(argc, argv, "n:c:b:d:")) != -1) {
		switch (opt) {
		case 'n': njobs = atoi(optarg); break;
		case 'c': cycles = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'd': dir = optarg; keep = 1; break;
		default:
			fprintf(stderr, "usage: fsmbench [-n JOBS] [-c CYCLES] [-b BATCH] [-d DIR]\n");
			return 2;
		}
	}
	if (njobs < 1 || cycles < 1 || batch < 0)
		return 2;
	if (batch == 0 || batch > njobs)
		batch = njobs;
	if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	log_set_level(LOG_ERR);
	if (store_open(dir, NULL) != 0) {
		fprintf(stderr, "fsmbench: cannot open the store in %s\n", dir);
		return 1;
	}
	slots_init(NULL);
	slots_set_limits(1, 1);
	job_init(NULL);

	names = calloc((size_t)njobs, sizeof(*names));
	jobs = calloc((size_t)njobs, sizeof(*jobs));
	for (i = 0; i < njobs; i++) {
		if (asprintf(&names[i], "vm%05d", i) < 0)
			return 1;
	}
	memset(&rule, 0, sizeof(rule));
	rule.kind = CFG_BACKUP;
	rule.name = "bench";
	rule.vms = names;
	rule.nvms = (size_t)njobs;
	rule.digest = 1;

	/* Creation: starting -> idle, in one turn per batch. */
	for (i = 0; i < njobs; i++)
		jobs[i] = job_create(CFG_BACKUP, "bench", names[i], &rule);
	for (i = 0; i < 4; i++)
		store_commit();

	store_get_stats(&st0);
	t0 = bench_now();
	for (c = 0; c < cycles; c++) {
		int ev, b;

		for (ev = 0; ev < 2; ev++) {
			for (b = 0; b < njobs; b += batch) {
				int e = b + batch < njobs ? b + batch : njobs;

				for (i = b; i < e; i++) {
					if (fsm_dispatch(jobs[i], ev == 0 ? EV_STOP : EV_START, "bench") == FSM_DONE)
						transitions++;
				}
				/* This turn's commit; the enter actions it releases
				 * dispatch the follow-ups (stopping -> stopped,
				 * starting -> idle) into the next turn. */
				store_commit();
				for (i = b; i < e; i++) {
					const char *s = state_id(jobs[i]);

					if (ev == 0 ? strcmp(s, "stopped") == 0
					            : strcmp(s, "idle") == 0)
						transitions++;
				}
			}
			/* The turn that makes the follow-ups durable. */
			store_commit();
		}
	}
	t1 = bench_now();
	store_get_stats(&st1);

	for (i = 0; i < njobs; i++) {
		const char *s = state_id(jobs[i]);

		if (strcmp(s, "idle") != 0) {
			fprintf(stderr, "fsmbench: job %s ended in %s\n", names[i], s);
			return 1;
		}
	}
	printf("{\"jobs\":%d,\"cycles\":%d,\"batch\":%d,\"transitions\":%llu,\"commits\":%llu,"
	       "\"writes\":%llu,\"seconds\":%.3f,\"per_s\":%.0f}\n",
	    njobs, cycles, batch, transitions, (unsigned long long)(st1.commits - st0.commits),
	    (unsigned long long)(st1.writes - st0.writes), t1 - t0, (double)transitions / (t1 - t0));
	job_shutdown();
	store_close();
	slots_free();
	if (!keep)
		bench_rm_tree(dir);
	return 0;
}
