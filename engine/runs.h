/* Scheduled runs: the calendar (calendar.c) armed with every replication
 * and backup rule of the configuration in force; when a rule is due its
 * jobs get their kind's run event.  When each rule last ran is kept in the
 * store, so a daemon that was down over a due time runs once at start,
 * not once per missed time. */
#ifndef VMFERRY_RUNS_H
#define VMFERRY_RUNS_H

struct config;
struct event_base;

void runs_init(struct event_base *base);
void runs_free(void);
/* After every load of the configuration: arm the rules it has, disarm
 * the ones it lost, and run what the clock says is due. */
void runs_apply(const struct config *c);

/* A job changed state: a run that fell due while it was starting runs
 * once it is at rest. */
struct job;
void runs_job_changed(struct job *j);

/* The engine's wall clock: now_wall(), or, for tests, the seconds written
 * in the file VMFERRY_CLOCK_FILE names (read at every call; a reload makes
 * the calendar look again). */
double runs_clock(void);

#endif
