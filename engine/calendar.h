/* The calendar: when replication and backup schedules (docs/CONFIG.md
 * §6.2, §6.3) run.  calendar_next and calendar_due are pure functions of
 * the times passed in, in local time (TZ honoured); a struct calendar
 * arms one libevent timer per rule on a clock the caller gives (the wall
 * clock in the daemon, a fake one in tests) and calls back when a rule is
 * due.
 *
 * Local time, as documented in docs/CONFIG.md §6.5:
 * - daily, weekly and monthly times are wall-clock times.  A time the
 *   clock skips (spring forward: 02:30 in Berlin on the last Sunday of
 *   March) runs at the first instant after the gap (03:00); a time that
 *   comes twice (fall back) runs once, at its first occurrence.
 * - hourly: each day's series starts at `start` (local) and repeats every
 *   interval of elapsed time until the next day's start; an interval that
 *   divides 24 h makes one even series across midnight, and across a DST
 *   change the runs stay one interval apart.
 * - monthly `day` 29-31 runs on the last day of shorter months.
 * - once: at its time, if that is still to come.
 * - a time shared by entries of several modes runs once, in the strongest
 *   mode (full, then differential, then incremental). */
#ifndef VMFERRY_CALENDAR_H
#define VMFERRY_CALENDAR_H

#include <stddef.h>
#include <time.h>

#include "engine/config.h"

/* The first run time of entry e strictly after `after`: 0 and *next, or
 * -1 when it runs no more (a once in the past, an entry without times or
 * days, an hourly one without an interval). */
int calendar_entry_next(const struct cfg_sched_entry *e, time_t after, time_t *next);

/* The first run time of schedule s strictly after `after`: 0 and *next
 * and, if mode is not NULL, the mode of the entry that runs then; -1 when
 * no entry runs any more. */
int calendar_next(const struct cfg_schedule *s, time_t after, time_t *next, enum cfg_backup_mode *mode);

/* A daemon that was down misses runs.  Is a run due at `now` for a
 * schedule that last ran (or was armed) at last?  Returns 1 when at least
 * one run time lies in (last, now]: one run is due, however many were
 * missed; *first (if not NULL) is the earliest of them and *mode (if not
 * NULL) the strongest mode among the entries that had one, so a missed
 * full backup is not made up for by an incremental.  Returns 0 when
 * nothing is due. */
int calendar_due(const struct cfg_schedule *s, time_t last, time_t now, time_t *first,
    enum cfg_backup_mode *mode);

/* ---- the driver ---- */

struct event_base;
struct calendar;

struct calendar_run {
	const char *rule;          /* rule name */
	enum cfg_kind kind;        /* CFG_REPLICATION or CFG_BACKUP */
	const char *const *vms;    /* the rule's VMs */
	size_t nvms;
	enum cfg_backup_mode mode; /* backup: the entry's; replication: incremental */
	time_t slot;               /* the run time this run is for (the earliest, if several were missed) */
	int late;                  /* slot is more than CALENDAR_LATE_S before now: a catch-up */
};
#define CALENDAR_LATE_S 60

/* Called from the loop (a timer or calendar_tick) when a rule is due.  It
 * must not add, remove or free rules of the calendar; run is valid during
 * the call only. */
typedef void (*calendar_fn)(const struct calendar_run *run, void *arg);
/* Wall-clock seconds (now_wall, or a test's fake clock). */
typedef double (*calendar_clock_fn)(void *arg);

struct calendar *calendar_new(struct event_base *base, calendar_clock_fn now, void *now_arg, calendar_fn fn,
    void *arg);
void calendar_free(struct calendar *cal);

/* Arm rule r (a replication rule with auto_sync, or a backup rule); a rule
 * without a schedule, or a replication rule with auto_sync false, is
 * removed instead.  The calendar keeps copies, never r.  A new rule: last
 * is when it last ran on schedule, or was first seen (0: now); a run is
 * due at once (from the loop) if calendar_due says so.  A rule already
 * armed takes r's schedule and VMs from now on; last is then ignored: an
 * edit never makes up for times before it, but a run that was due under
 * the old schedule and has not been called back yet still is. */
void calendar_set(struct calendar *cal, const struct cfg_rule *r, time_t last);
void calendar_remove(struct calendar *cal, enum cfg_kind kind, const char *name);
/* The next run of an armed rule: 0 with *next (and *mode), or -1 when it
 * is not armed or runs no more. */
int calendar_rule_next(const struct calendar *cal, enum cfg_kind kind, const char *name, time_t *next,
    enum cfg_backup_mode *mode);
/* The clock may have moved (a wall-clock step, a test's fake clock): run
 * what is due now and arm the timers again.  Timers also wake at least
 * every CALENDAR_MAX_SLEEP_S, so a clock step is noticed without it. */
void calendar_tick(struct calendar *cal);
#define CALENDAR_MAX_SLEEP_S 300

#endif
