/* Jobs: one per VM of a rule, each with its own persisted state machine,
 * event log (查看日志) and statistics (查看统计信息). */
#ifndef VMFERRY_JOB_H
#define VMFERRY_JOB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/slots.h"
#include "fsm/fsm.h"

struct event_base;
struct job_traffic;

/* Seed 002 statistics: successes, failures, data volume, and the count of
 * failures nobody has looked at yet. */
struct job_stats {
	uint64_t successes;
	uint64_t failures;
	uint64_t bytes;
	uint64_t unviewed_errors;
	int64_t last_success;
	int64_t last_failure;
	char *last_error;
};

struct job {
	TAILQ_ENTRY(job) link;
	struct fsm_instance fsm;
	struct slot_item slot;
	enum cfg_kind kind;
	char *rule;
	char *vm;
	uint8_t *key;              /* store key: kind byte, rule, NUL, vm */
	size_t keylen;
	char *error;               /* why it failed / is invalid; NULL if none */
	uint64_t bytes_done;
	uint64_t bytes_total;
	double rate_bps;
	double last_notify;        /* monotonic time of the last progress broadcast */
	struct job_traffic *traffic; /* bytes moved per 10 s, the last hour (流量图); NULL until some move */
	int64_t created;
	int64_t updated;           /* wall time of the last state change */
	uint64_t log_seq;          /* next log sequence number */
	struct job_stats stats;
	uint8_t *data;             /* the kind's persisted blob (checkpoints) */
	size_t datalen;
	const struct cfg_rule *cfg;/* the rule as configured now; NULL once removed */
	int refs;
	int forgotten;
	uint8_t run_pending;       /* its schedule fell due while it was starting (not persisted) */
	unsigned epoch;            /* bumped whenever its work is cancelled: late callbacks of older work are dropped */
	int invalid_backoff;       /* seconds before the next retry in 失效 */
	struct event *timer;       /* retry timer (失效) */
	void *priv;                /* the kind's runtime state, not persisted */
	/* Stops the kind's work in flight; called when the job changes state
	 * (its work belongs to the state it was started for) and when it goes. */
	void (*cancel)(struct job *j);
	void (*free_priv)(void *priv); /* frees priv with the job */
	void (*config_changed)(struct job *j); /* its rule may have changed (reload) */
};

TAILQ_HEAD(job_list, job);

/* Set-up: hooks the FSM driver to jobs; base may be NULL in unit tests. */
void job_init(struct event_base *base);
void job_shutdown(void);
struct job_list *job_all(void);
size_t job_count(void);

const struct fsm_table *job_table_for(enum cfg_kind kind);

/* Create a job for a VM of a rule in its kind's initial state. */
struct job *job_create(enum cfg_kind kind, const char *rule, const char *vm, const struct cfg_rule *cfg);
struct job *job_find(enum cfg_kind kind, const char *rule, const char *vm);
/* Load every persisted job (engine start); returns how many. */
size_t job_load_all(void);
/* Give every loaded job its state's work again (EV_RESUME). */
void job_resume_all(void);

/* Write the job's record (joins the group commit). */
void job_persist(struct job *j);
/* Progress of the current transfer; persisted at the next transition or
 * checkpoint, broadcast to watchers at most a few times a second. */
void job_progress(struct job *j, uint64_t done, uint64_t total, double rate_bps);
void job_set_error(struct job *j, const char *reason);
void job_set_data(struct job *j, const void *data, size_t len);

/* Append to the job's persisted log (bounded, oldest dropped) and echo it
 * on the daemon's stderr. */
void job_log(struct job *j, enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define JOB_LOG_KEEP 1000

/* Statistics. */
void job_stat_success(struct job *j, uint64_t bytes);
void job_stat_failure(struct job *j, const char *reason);
/* An error that is not a failed run (verify found the job's points
 * damaged): counted as unviewed, the failures stay as they are. */
void job_stat_error(struct job *j);
/* Viewing clears the unviewed-error count. */
void job_stats_viewed(struct job *j);

/* The traffic graph (流量图): bytes of progress per JOB_TRAFFIC_STEP_S
 * seconds over the last hour, oldest first, kept in memory since the
 * daemon started (not persisted). */
#define JOB_TRAFFIC_STEP_S 10
#define JOB_TRAFFIC_SLOTS 360
json_t *job_traffic_to_json(const struct job *j, int64_t now);

/* The job as the status socket shows it. */
json_t *job_to_json(const struct job *j);
json_t *job_stats_to_json(const struct job *j);
/* The newest n log entries, oldest first. */
json_t *job_log_to_json(const struct job *j, size_t n);

const struct fsm_state_info *job_state_info(const struct job *j);
unsigned job_flags(const struct job *j);

/* Watchers of state and progress changes (the status socket). */
void job_set_observer(void (*fn)(struct job *j, const char *what));

/* Stop the kind's work in flight, if any. */
void job_cancel_work(struct job *j);

void job_hold(struct job *j);
void job_release(struct job *j);

/* Generic enter actions shared by every kind's table. */
/* The retry delay of 失效 (5 s) doubles up to 60 s while a job keeps
 * failing: a start that comes from 失效 (EV_PEER_BACK) keeps it, any other
 * start resets it, and so does coming to rest (ready, stopped, ...). */
void job_reset_backoff(struct job *j, int event);
void job_enter_starting(struct job *j, int event);
void job_enter_queued(struct job *j, int event);
void job_enter_stopping(struct job *j, int event);
void job_enter_invalid(struct job *j, int event);
void job_enter_deleting(struct job *j, int event);
/* The first slot state of a kind whose data path is not built yet
 * (replication, backup): says so in the job's log; the job holds there. */
void job_enter_not_built(struct job *j, int event);
/* Row action: remove every trace of the job from the store and memory. */
void job_forget(struct job *j, int event);

#endif
