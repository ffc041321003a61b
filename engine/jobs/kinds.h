/* The job kinds, listed once: each with its transition table (whose enter
 * actions are its work), its name, and what it adds to the commands all
 * kinds share.  The engine and the job layer look a kind up here and
 * never switch on it. */
#ifndef VMFERRY_JOBS_KINDS_H
#define VMFERRY_JOBS_KINDS_H

#include <jansson.h>

#include "engine/config.h"

struct fsm_table;
struct job;
struct request;

struct job_kind {
	enum cfg_kind kind;
	const struct fsm_table *table; /* its name is the kind's name */
	/* A user command's event is about to reach the job (before the
	 * dispatch, so what it records is committed with the transition),
	 * with the command's restore point (or NULL).  -1 with *why: the
	 * command is refused for that job, nothing changed.  NULL: nothing to
	 * add. */
	int (*before_command)(struct job *j, int event, const struct request *req, char **why);
	/* The event its schedule sends (立即执行 too); -1: it has none. */
	int run_event;
	/* The schedule is about to send run_event, for an entry of that mode
	 * (enum cfg_backup_mode).  NULL: runs have no mode. */
	void (*before_run)(struct job *j, int mode);
	/* What its persisted data says of one job, for `show` (a JSON
	 * object, new reference); NULL when the record cannot be read. */
	json_t *(*details)(const struct job *j);
	/* The event a granted transfer slot sends (in the slots' own pass, so
	 * that the job holds its slot at once).  NULL: admit. */
	int (*admit_event)(const struct job *j);
};

/* Every kind, in the order the CLI lists them; NULL-terminated. */
extern const struct job_kind *const job_kinds[];

/* The kind of a rule kind, or NULL (system, platform, ...). */
const struct job_kind *job_kind_of(enum cfg_kind kind);
/* The kind of that name ("migration", ...), or NULL. */
const struct job_kind *job_kind_named(const char *name);
const char *job_kind_name(const struct job_kind *k);

#endif
