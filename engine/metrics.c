#include "engine/metrics.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "engine/core/prom.h"
#include "engine/core/store.h"
#include "engine/core/util.h"
#include "engine/engine.h"
#include "engine/jobs/job.h"
#include "engine/jobs/kinds.h"
#include "engine/slots.h"

/* One sample per job of a per-job family. */
enum job_value {
	JV_DONE,
	JV_SIZE,
	JV_RATE,
	JV_PROGRESS,
	JV_SUCCESSES,
	JV_FAILURES,
	JV_BYTES,
	JV_UNVIEWED,
};

static const struct {
	enum job_value v;
	const char *name, *type, *help;
} job_families[] = {
	{ JV_DONE, "vmferry_job_transfer_done_bytes", "gauge", "Bytes of the current transfer done (jobs: bytes_done)." },
	{ JV_SIZE, "vmferry_job_transfer_size_bytes", "gauge", "Bytes of the current transfer (jobs: bytes_total)." },
	{ JV_RATE, "vmferry_job_rate_bytes_per_second", "gauge", "Rate of the current transfer (jobs: rate_bps)." },
	{ JV_PROGRESS, "vmferry_job_progress_percent", "gauge", "Progress of the current transfer, 0-100 (jobs: progress)." },
	{ JV_SUCCESSES, "vmferry_job_successes_total", "counter", "Runs that succeeded (stats: successes)." },
	{ JV_FAILURES, "vmferry_job_failures_total", "counter", "Runs that failed (stats: failures)." },
	{ JV_BYTES, "vmferry_job_transferred_bytes_total", "counter", "Data volume of the runs that succeeded (stats: bytes)." },
	{ JV_UNVIEWED, "vmferry_job_unviewed_errors", "gauge", "Errors not yet seen through stats (jobs: unviewed_errors)." },
};

static int
job_progress_of(const struct job *j)
{
	if (j->bytes_total == 0)
		return 0;
	return j->bytes_done >= j->bytes_total ? 100 : (int)(j->bytes_done * 100 / j->bytes_total);
}

static uint64_t
job_value(const struct job *j, enum job_value v)
{
	switch (v) {
	case JV_DONE: return j->bytes_done;
	case JV_SIZE: return j->bytes_total;
	case JV_RATE: return (uint64_t)(int64_t)j->rate_bps; /* as the socket shows it */
	case JV_PROGRESS: return (uint64_t)job_progress_of(j);
	case JV_SUCCESSES: return j->stats.successes;
	case JV_FAILURES: return j->stats.failures;
	case JV_BYTES: return j->stats.bytes;
	case JV_UNVIEWED: return j->stats.unviewed_errors;
	}
	return 0;
}

static void
metrics_jobs(struct evbuffer *b)
{
	const struct job_kind *const *k;
	struct job *j;
	size_t f, i, n;
	char **labels;
	int s;

	prom_family(b, "vmferry_jobs", "gauge", "Jobs by kind and state.");
	for (k = job_kinds; *k != NULL; k++) {
		const struct fsm_table *t = (*k)->table;

		for (s = 0; s < t->nstates; s++) {
			const char *lab[] = { "kind", t->kind, "state", t->states[s].id, NULL };
			uint64_t count = 0;

			TAILQ_FOREACH(j, job_all(), link)
				count += j->kind == (*k)->kind && job_state_info(j) == &t->states[s];
			prom_sample_u64(b, "vmferry_jobs", lab, count);
		}
	}
	prom_family(b, "vmferry_job_state", "gauge", "Each job's state (1), with both labels of it.");
	TAILQ_FOREACH(j, job_all(), link) {
		const struct fsm_state_info *si = job_state_info(j);
		const char *lab[] = { "kind", cfg_kind_name(j->kind), "rule", j->rule, "vm", j->vm, "state", si->id,
			"label_zh", si->label_zh, "label_en", si->label_en, NULL };

		prom_sample_u64(b, "vmferry_job_state", lab, 1);
	}
	/* Each job's labels are escaped once for all its families. */
	labels = xcalloc(job_count() + 1, sizeof(*labels));
	n = 0;
	TAILQ_FOREACH(j, job_all(), link) {
		const char *lab[] = { "kind", cfg_kind_name(j->kind), "rule", j->rule, "vm", j->vm, NULL };

		labels[n++] = prom_labels(lab);
	}
	for (f = 0; f < sizeof(job_families) / sizeof(job_families[0]); f++) {
		prom_family(b, job_families[f].name, job_families[f].type, job_families[f].help);
		n = 0;
		TAILQ_FOREACH(j, job_all(), link)
			prom_sample_with(b, job_families[f].name, labels[n++], job_value(j, job_families[f].v));
	}
	for (i = 0; i < n; i++)
		free(labels[i]);
	free(labels);
}

static void
metrics_store(struct evbuffer *b)
{
	static const double bounds[STORE_NCOMMIT_BUCKETS] = STORE_COMMIT_BUCKETS;
	struct store_stats ss;
	uint64_t cum = 0;
	char le[32];
	int i;

	store_get_stats(&ss);
	prom_family(b, "vmferry_store_commit_duration_seconds", "histogram",
	    "Time the state store's commits took (LMDB, fsync included).");
	for (i = 0; i <= STORE_NCOMMIT_BUCKETS; i++) {
		const char *lab[] = { "le", le, NULL };

		cum += ss.commit_buckets[i];
		if (i < STORE_NCOMMIT_BUCKETS)
			snprintf(le, sizeof(le), "%g", bounds[i]);
		else
			strcpy(le, "+Inf");
		prom_sample_u64(b, "vmferry_store_commit_duration_seconds_bucket", lab, cum);
	}
	prom_sample(b, "vmferry_store_commit_duration_seconds_sum", NULL, ss.commit_seconds);
	prom_sample_u64(b, "vmferry_store_commit_duration_seconds_count", NULL, cum);
	prom_family(b, "vmferry_store_commit_failures_total", "counter", "Commits of the state store that failed.");
	prom_sample_u64(b, "vmferry_store_commit_failures_total", NULL, ss.commit_failures);
	prom_family(b, "vmferry_store_failing", "gauge", "1 while the state store's commits fail.");
	prom_sample_u64(b, "vmferry_store_failing", NULL, store_failure(NULL) != NULL);
}

void
metrics_write(struct evbuffer *b)
{
	const struct config *c = engine_config();
	const char *ver[] = { "version", VMFERRY_VERSION, NULL };

	prom_family(b, "vmferry_build_info", "gauge", "The running vmferryd's version.");
	prom_sample_u64(b, "vmferry_build_info", ver, 1);
	metrics_jobs(b);
	prom_family(b, "vmferry_slots_in_use", "gauge", "Transfer slots in use (ping: active).");
	prom_sample_u64(b, "vmferry_slots_in_use", NULL, (uint64_t)slots_active_total());
	prom_family(b, "vmferry_slots", "gauge", "Transfer slots there are (max_tasks).");
	prom_sample_u64(b, "vmferry_slots", NULL, c != NULL ? (uint64_t)c->system.max_tasks : 0);
	prom_family(b, "vmferry_jobs_queued", "gauge", "Jobs waiting for a slot (ping: pending).");
	prom_sample_u64(b, "vmferry_jobs_queued", NULL, (uint64_t)slots_queued_total());
	prom_family(b, "vmferry_instant_recoveries_running", "gauge", "Instant recoveries running (none yet).");
	prom_sample_u64(b, "vmferry_instant_recoveries_running", NULL, 0);
	metrics_store(b);
}
