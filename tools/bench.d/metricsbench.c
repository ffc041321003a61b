/* tools/bench.d/metricsbench.c — what a /metrics scrape costs the loop.
 *
 * The real job, store and metrics code (engine/jobs/job.c,
 * engine/metrics.c, engine/core/prom.c) on a real LMDB store in a fresh
 * directory, without an event loop: JOBS jobs over the three kinds (VM
 * names with quotes and backslashes, so that escaping is paid for), each
 * with a transfer in progress and statistics, then SCRAPES scrapes, each
 * written whole into a buffer as http_api.c does before evhttp sends it.
 * That write is the time the loop spends on a scrape: the sending is
 * done by the loop in the background, a chunk at a time.
 *
 *   metricsbench [-n JOBS] [-k SCRAPES]
 *
 * Prints one JSON line: jobs, scrapes, bytes (of one scrape), ms_median,
 * ms_max. */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/core/log.h"
#include "tools/bench.d/bench_util.h"
#include "engine/core/store.h"
#include "engine/jobs/job.h"
#include "engine/metrics.h"
#include "engine/slots.h"

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	static const enum cfg_kind kinds[] = { CFG_MIGRATION, CFG_REPLICATION, CFG_BACKUP };
	int njobs = 1000, scrapes = 20, opt, i;
	char tmpl[] = "/tmp/vmferry-metricsbench-XXXXXX", *dir;
	struct cfg_rule rules[3];
	char **names;
	double *ms;
	size_t bytes = 0;

	while ((opt = getopt(argc, argv, "n:k:")) != -1) {
		switch (opt) {
		case 'n': njobs = atoi(optarg); break;
		case 'k': scrapes = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: metricsbench [-n JOBS] [-k SCRAPES]\n");
			return 2;
		}
	}
	if (njobs < 1 || scrapes < 1 || (dir = mkdtemp(tmpl)) == NULL)
		return 2;
	log_set_level(LOG_ERR);
	if (store_open(dir, NULL) != 0) {
		fprintf(stderr, "metricsbench: cannot open the store in %s\n", dir);
		return 1;
	}
	slots_init(NULL);
	slots_set_limits(1, 1);
	job_init(NULL);
	names = calloc((size_t)njobs, sizeof(*names));
	for (i = 0; i < njobs; i++)
		if (asprintf(&names[i], "vm \"%05d\" \\ <b>web</b>", i) < 0)
			return 1;
	for (i = 0; i < 3; i++) {
		memset(&rules[i], 0, sizeof(rules[i]));
		rules[i].kind = kinds[i];
		rules[i].name = "bench";
		rules[i].vms = names;
		rules[i].nvms = (size_t)njobs;
		rules[i].digest = 1;
	}
	for (i = 0; i < njobs; i++) {
		struct job *j = job_create(kinds[i % 3], "bench", names[i], &rules[i % 3]);

		j->bytes_total = 1ull << 34;
		j->bytes_done = (uint64_t)i << 24;
		j->rate_bps = 123456789.0;
		j->stats.successes = (uint64_t)i;
		j->stats.failures = (uint64_t)i % 7;
		j->stats.bytes = (uint64_t)i << 30;
	}
	for (i = 0; i < 4; i++)
		store_commit();

	ms = calloc((size_t)scrapes, sizeof(*ms));
	for (i = 0; i < scrapes; i++) {
		struct evbuffer *b = evbuffer_new();
		double t0 = bench_now();

		metrics_write(b);
		ms[i] = (bench_now() - t0) * 1000;
		bytes = evbuffer_get_length(b);
		evbuffer_free(b);
	}
	qsort(ms, (size_t)scrapes, sizeof(*ms), cmp_double);
	printf("{\"jobs\":%d,\"scrapes\":%d,\"bytes\":%zu,\"ms_median\":%.2f,\"ms_max\":%.2f}\n", njobs, scrapes,
	    bytes, ms[scrapes / 2], ms[scrapes - 1]);
	job_shutdown();
	store_close();
	slots_free();
	bench_rm_tree(dir);
	return 0;
}
