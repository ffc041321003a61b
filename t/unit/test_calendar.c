/* Unit tests for engine/calendar.c: next run times of replication and
 * backup schedules in local time (TZ=Europe/Berlin: DST changes on
 * 2025-03-30 02:00 -> 03:00 and 2025-10-26 03:00 -> 02:00), the
 * missed-runs rule, and the timers of the driver on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "engine/calendar.h"
#include "engine/config.h"
#include "engine/core/util.h"

#define HM(h, m) ((h) * 60 + (m))
enum { MON = 1 << 0, TUE = 1 << 1, WED = 1 << 2, THU = 1 << 3, FRI = 1 << 4, SAT = 1 << 5, SUN = 1 << 6 };

/* An instant given in UTC: unambiguous around DST changes. */
static time_t
utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi };

	return timegm(&tm);
}

/* A local time that exists once (away from DST changes). */
static time_t
loc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
		.tm_isdst = -1 };

	return mktime(&tm);
}

static struct cfg_sched_entry
entry(enum cfg_sched_type type, enum cfg_backup_mode mode, int *times, size_t ntimes)
{
	struct cfg_sched_entry e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.mode = mode;
	e.times = times;
	e.ntimes = ntimes;
	return e;
}

/* The next run of a schedule and its mode. */
static time_t
snext(const struct cfg_schedule *s, time_t after, enum cfg_backup_mode *mode)
{
	time_t t = 0;

	assert_int_equal(calendar_next(s, after, &t, mode), 0);
	return t;
}

/* The next run of one entry: calendar_entry_next, and calendar_next of a
 * schedule holding just that entry, agree. */
static time_t
next_of(const struct cfg_sched_entry *e, time_t after)
{
	struct cfg_sched_entry copy = *e;
	struct cfg_schedule s = { &copy, 1, 1 };
	time_t t = 0;

	assert_int_equal(calendar_entry_next(e, after, &t), 0);
	assert_int_equal(snext(&s, after, NULL), t);
	return t;
}

static void
test_daily_strictly_after(void **state)
{
	int times[] = { HM(1, 0), HM(13, 0) };
	struct cfg_sched_entry e = entry(SCHED_DAILY, BACKUP_INCREMENTAL, times, 2);

	assert_int_equal(next_of(&e, loc(2025, 6, 10, 0, 30)), loc(2025, 6, 10, 1, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 1, 0)), loc(2025, 6, 10, 13, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 12, 59)), loc(2025, 6, 10, 13, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 13, 0)), loc(2025, 6, 11, 1, 0));
	/* across a month and a year end */
	assert_int_equal(next_of(&e, loc(2025, 6, 30, 14, 0)), loc(2025, 7, 1, 1, 0));
	assert_int_equal(next_of(&e, loc(2025, 12, 31, 23, 59)), loc(2026, 1, 1, 1, 0));
}

/* Monthly day 29-31 runs on the last day of shorter months. */
static void
test_monthly_short_months(void **state)
{
	int t3[] = { HM(3, 0) };
	struct cfg_sched_entry e = entry(SCHED_MONTHLY, BACKUP_DIFFERENTIAL, t3, 1);

	e.day = 31;
	assert_int_equal(next_of(&e, loc(2025, 1, 15, 0, 0)), loc(2025, 1, 31, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 1, 31, 3, 0)), loc(2025, 2, 28, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 2, 28, 3, 0)), loc(2025, 3, 31, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 4, 1, 0, 0)), loc(2025, 4, 30, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 12, 31, 3, 0)), loc(2026, 1, 31, 3, 0));
	assert_int_equal(next_of(&e, loc(2024, 2, 1, 0, 0)), loc(2024, 2, 29, 3, 0));
	e.day = 30;
	assert_int_equal(next_of(&e, loc(2025, 1, 30, 3, 0)), loc(2025, 2, 28, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 2, 28, 3, 0)), loc(2025, 3, 30, 3, 0));
	e.day = 29;
	assert_int_equal(next_of(&e, loc(2025, 1, 29, 3, 0)), loc(2025, 2, 28, 3, 0));
	assert_int_equal(next_of(&e, loc(2024, 1, 29, 3, 0)), loc(2024, 2, 29, 3, 0));
	assert_int_equal(next_of(&e, loc(2024, 2, 29, 3, 0)), loc(2024, 3, 29, 3, 0));
	e.day = 1;
	assert_int_equal(next_of(&e, loc(2025, 1, 31, 23, 59)), loc(2025, 2, 1, 3, 0));
	assert_int_equal(next_of(&e, loc(2025, 2, 1, 3, 0)), loc(2025, 3, 1, 3, 0));
}

/* Spring forward: 02:30 does not exist on 2025-03-30 and runs at 03:00
 * CEST, the first instant after the gap; a later time keeps its order. */
static void
test_dst_spring_forward_daily(void **state)
{
	int times[] = { HM(2, 30), HM(3, 15) };
	struct cfg_sched_entry e = entry(SCHED_DAILY, BACKUP_INCREMENTAL, times, 1);
	time_t t;

	t = next_of(&e, loc(2025, 3, 29, 12, 0));
	assert_int_equal(t, utc(2025, 3, 30, 1, 0)); /* 03:00 CEST */
	t = next_of(&e, t);
	assert_int_equal(t, utc(2025, 3, 31, 0, 30)); /* 02:30 CEST */
	assert_int_equal(next_of(&e, loc(2025, 3, 28, 12, 0)), utc(2025, 3, 29, 1, 30)); /* 02:30 CET */

	e.ntimes = 2;
	t = next_of(&e, loc(2025, 3, 29, 12, 0));
	assert_int_equal(t, utc(2025, 3, 30, 1, 0));
	t = next_of(&e, t);
	assert_int_equal(t, utc(2025, 3, 30, 1, 15)); /* 03:15 CEST */
	assert_int_equal(next_of(&e, t), utc(2025, 3, 31, 0, 30));
}

/* Fall back: 02:30 comes twice on 2025-10-26 and runs once, the first
 * time (CEST). */
static void
test_dst_fall_back_daily(void **state)
{
	int times[] = { HM(2, 30) };
	struct cfg_sched_entry e = entry(SCHED_DAILY, BACKUP_INCREMENTAL, times, 1);
	time_t t;

	t = next_of(&e, loc(2025, 10, 25, 12, 0));
	assert_int_equal(t, utc(2025, 10, 26, 0, 30)); /* 02:30 CEST */
	t = next_of(&e, t);
	assert_int_equal(t, utc(2025, 10, 27, 1, 30)); /* the next day's 02:30 CET, not 01:30 UTC */
	/* between the two 02:30s: the second is not a run either */
	assert_int_equal(next_of(&e, utc(2025, 10, 26, 1, 0)), utc(2025, 10, 27, 1, 30));
}

/* Hourly: day D's series from its start until day D+1's start. */
static void
test_hourly_across_midnight(void **state)
{
	int start20[] = { HM(20, 0) }, start8[] = { HM(8, 0) }, start0[] = { 0 };
	struct cfg_sched_entry e = entry(SCHED_HOURLY, BACKUP_INCREMENTAL, start20, 1);
	time_t t;

	e.interval_min = 180;
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 19, 0)), loc(2025, 6, 10, 20, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 22, 0)), loc(2025, 6, 10, 23, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 23, 0)), loc(2025, 6, 11, 2, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 11, 17, 30)), loc(2025, 6, 11, 20, 0));
	/* before the first start of the first day: the day before's series */
	assert_int_equal(next_of(&e, loc(2025, 6, 11, 0, 10)), loc(2025, 6, 11, 2, 0));

	/* 7 h does not divide a day: 08, 15, 22, 05, then 08 again */
	e.times = start8;
	e.interval_min = 420;
	t = next_of(&e, loc(2025, 6, 10, 7, 0));
	assert_int_equal(t, loc(2025, 6, 10, 8, 0));
	assert_int_equal(t = next_of(&e, t), loc(2025, 6, 10, 15, 0));
	assert_int_equal(t = next_of(&e, t), loc(2025, 6, 10, 22, 0));
	assert_int_equal(t = next_of(&e, t), loc(2025, 6, 11, 5, 0));
	assert_int_equal(t = next_of(&e, t), loc(2025, 6, 11, 8, 0));

	/* 90 minutes from midnight: 16 a day, 22:30 the last */
	e.times = start0;
	e.interval_min = 90;
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 22, 0)), loc(2025, 6, 10, 22, 30));
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 22, 30)), loc(2025, 6, 11, 0, 0));
}

/* Hourly runs stay one interval of elapsed time apart across DST: 23 runs
 * on the spring day, 25 on the autumn day, 02:00 CEST and CET both. */
static void
test_hourly_dst(void **state)
{
	int start0[] = { 0 };
	struct cfg_sched_entry e = entry(SCHED_HOURLY, BACKUP_INCREMENTAL, start0, 1);
	time_t t, end;
	int n;

	e.interval_min = 60;
	t = loc(2025, 3, 29, 23, 59);
	end = loc(2025, 3, 31, 0, 0);
	for (n = 0; (t = next_of(&e, t)) < end; n++)
		;
	assert_int_equal(n, 23);
	assert_int_equal(next_of(&e, utc(2025, 3, 30, 0, 0)), utc(2025, 3, 30, 1, 0)); /* 01:00 CET -> 03:00 CEST */

	t = loc(2025, 10, 25, 23, 59);
	end = loc(2025, 10, 27, 0, 0);
	for (n = 0; (t = next_of(&e, t)) < end; n++)
		;
	assert_int_equal(n, 25);
	assert_int_equal(next_of(&e, utc(2025, 10, 26, 0, 0)), utc(2025, 10, 26, 1, 0)); /* 02:00 CEST -> 02:00 CET */

	/* 90 minutes across the spring change: 01:30 CET, then 04:00 CEST */
	e.interval_min = 90;
	assert_int_equal(next_of(&e, utc(2025, 3, 30, 0, 0)), utc(2025, 3, 30, 0, 30));
	assert_int_equal(next_of(&e, utc(2025, 3, 30, 0, 30)), utc(2025, 3, 30, 2, 0));
}

static void
test_weekly_several_days(void **state)
{
	int t22[] = { HM(22, 0) }, two[] = { HM(1, 0), HM(13, 0) };
	struct cfg_sched_entry e = entry(SCHED_WEEKLY, BACKUP_INCREMENTAL, t22, 1);

	e.days = MON | WED | FRI;
	assert_int_equal(next_of(&e, loc(2025, 6, 13, 22, 0)), loc(2025, 6, 16, 22, 0)); /* fri -> mon */
	assert_int_equal(next_of(&e, loc(2025, 6, 16, 23, 0)), loc(2025, 6, 18, 22, 0)); /* mon -> wed */
	assert_int_equal(next_of(&e, loc(2025, 6, 18, 21, 59)), loc(2025, 6, 18, 22, 0));
	e.days = SUN;
	e.times = two;
	e.ntimes = 2;
	assert_int_equal(next_of(&e, loc(2025, 6, 10, 0, 0)), loc(2025, 6, 15, 1, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 15, 1, 0)), loc(2025, 6, 15, 13, 0));
	assert_int_equal(next_of(&e, loc(2025, 6, 15, 13, 0)), loc(2025, 6, 22, 1, 0));
	/* across the spring change, the 02:30 rule applies to weekly too */
	e.times = (int[]){ HM(2, 30) };
	e.ntimes = 1;
	assert_int_equal(next_of(&e, loc(2025, 3, 24, 0, 0)), utc(2025, 3, 30, 1, 0));
}

/* A backup schedule of several entries: the mode of the entry that runs;
 * at a time two entries share, the stronger one. */
static void
test_backup_entries_modes(void **state)
{
	int t1[] = { HM(1, 0) }, t1_13[] = { HM(1, 0), HM(13, 0) }, t3[] = { HM(3, 0) }, t0[] = { 0 };
	struct cfg_sched_entry es[3];
	struct cfg_schedule s = { es, 3, 1 };
	enum cfg_backup_mode m = BACKUP_INCREMENTAL;
	time_t t;

	es[0] = entry(SCHED_WEEKLY, BACKUP_FULL, t1, 1);
	es[0].days = SUN;
	es[1] = entry(SCHED_DAILY, BACKUP_INCREMENTAL, t1_13, 2);
	es[2] = entry(SCHED_MONTHLY, BACKUP_DIFFERENTIAL, t3, 1);
	es[2].day = 1;

	t = snext(&s, loc(2025, 6, 14, 14, 0), &m);
	assert_int_equal(t, loc(2025, 6, 15, 1, 0));
	assert_int_equal(m, BACKUP_FULL);
	t = snext(&s, t, &m);
	assert_int_equal(t, loc(2025, 6, 15, 13, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);
	t = snext(&s, t, &m);
	assert_int_equal(t, loc(2025, 6, 16, 1, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);
	t = snext(&s, loc(2025, 7, 1, 1, 0), &m);
	assert_int_equal(t, loc(2025, 7, 1, 3, 0));
	assert_int_equal(m, BACKUP_DIFFERENTIAL);
	t = snext(&s, t, &m);
	assert_int_equal(t, loc(2025, 7, 1, 13, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);

	/* an incremental every 4 h and a differential at 12:00: the tie */
	es[0] = entry(SCHED_HOURLY, BACKUP_INCREMENTAL, t0, 1);
	es[0].interval_min = 240;
	es[1] = entry(SCHED_DAILY, BACKUP_DIFFERENTIAL, (int[]){ HM(12, 0) }, 1);
	s.nentries = 2;
	t = snext(&s, loc(2025, 6, 10, 8, 0), &m);
	assert_int_equal(t, loc(2025, 6, 10, 12, 0));
	assert_int_equal(m, BACKUP_DIFFERENTIAL);
	t = snext(&s, t, &m);
	assert_int_equal(t, loc(2025, 6, 10, 16, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);
	assert_int_equal(snext(&s, t, NULL), loc(2025, 6, 10, 20, 0));
}

static void
test_once(void **state)
{
	struct cfg_sched_entry e = entry(SCHED_ONCE, BACKUP_FULL, NULL, 0);
	struct cfg_schedule s = { &e, 1, 1 };
	enum cfg_backup_mode m = BACKUP_INCREMENTAL;
	time_t t = 0;

	e.once_at = loc(2026, 12, 1, 2, 0);
	assert_int_equal(snext(&s, loc(2026, 11, 30, 12, 0), &m), loc(2026, 12, 1, 2, 0));
	assert_int_equal(m, BACKUP_FULL);
	assert_int_equal(calendar_next(&s, loc(2026, 12, 1, 2, 0), &t, &m), -1);
	assert_int_equal(calendar_next(&s, loc(2027, 1, 1, 0, 0), &t, &m), -1);
	/* a schedule without entries, an entry without times */
	s.nentries = 0;
	assert_int_equal(calendar_next(&s, 0, &t, NULL), -1);
	e = entry(SCHED_DAILY, BACKUP_FULL, NULL, 0);
	s.nentries = 1;
	assert_int_equal(calendar_next(&s, 0, &t, NULL), -1);
}

/* A daemon down over run times makes one run at start, in the strongest
 * mode of what it missed. */
static void
test_missed_runs(void **state)
{
	int t1[] = { HM(1, 0) }, t1_13[] = { HM(1, 0), HM(13, 0) };
	struct cfg_sched_entry es[2];
	struct cfg_schedule s = { es, 1, 1 };
	enum cfg_backup_mode m = BACKUP_FULL;
	time_t first = 0;

	es[0] = entry(SCHED_DAILY, BACKUP_INCREMENTAL, t1_13, 2);
	es[1] = entry(SCHED_WEEKLY, BACKUP_FULL, t1, 1);
	es[1].days = SUN;

	/* down from tuesday 02:00 to friday 09:00: six times missed, one run */
	assert_int_equal(calendar_due(&s, loc(2025, 6, 10, 2, 0), loc(2025, 6, 13, 9, 0), &first, &m), 1);
	assert_int_equal(first, loc(2025, 6, 10, 13, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);
	/* nothing between */
	assert_int_equal(calendar_due(&s, loc(2025, 6, 10, 2, 0), loc(2025, 6, 10, 12, 59), &first, &m), 0);
	assert_int_equal(calendar_due(&s, loc(2025, 6, 10, 13, 0), loc(2025, 6, 10, 13, 0), NULL, NULL), 0);
	/* exactly at a time */
	assert_int_equal(calendar_due(&s, loc(2025, 6, 10, 2, 0), loc(2025, 6, 10, 13, 0), &first, NULL), 1);
	assert_int_equal(first, loc(2025, 6, 10, 13, 0));
	/* a clock set back */
	assert_int_equal(calendar_due(&s, loc(2025, 6, 13, 9, 0), loc(2025, 6, 10, 2, 0), NULL, NULL), 0);

	/* down over sunday's full backup: the one run is full */
	s.nentries = 2;
	assert_int_equal(calendar_due(&s, loc(2025, 6, 14, 14, 0), loc(2025, 6, 16, 9, 0), &first, &m), 1);
	assert_int_equal(first, loc(2025, 6, 15, 1, 0));
	assert_int_equal(m, BACKUP_FULL);
	assert_int_equal(calendar_due(&s, loc(2025, 6, 15, 2, 0), loc(2025, 6, 16, 9, 0), &first, &m), 1);
	assert_int_equal(m, BACKUP_INCREMENTAL);

	/* once: missed while down is due once; one before the last run is not */
	es[0] = entry(SCHED_ONCE, BACKUP_DIFFERENTIAL, NULL, 0);
	es[0].once_at = loc(2025, 6, 10, 2, 0);
	s.nentries = 1;
	assert_int_equal(calendar_due(&s, loc(2025, 6, 9, 0, 0), loc(2025, 6, 11, 0, 0), &first, &m), 1);
	assert_int_equal(m, BACKUP_DIFFERENTIAL);
	assert_int_equal(calendar_due(&s, loc(2025, 6, 10, 2, 0), loc(2025, 6, 11, 0, 0), &first, &m), 0);
}

/* ---- the driver, on a fake wall clock ---- */

struct fake_clock {
	double wall;      /* the wall clock at mono0 */
	double mono0;     /* -1: frozen at wall */
};

static double
fake_now(void *arg)
{
	struct fake_clock *fc = arg;

	return fc->mono0 < 0 ? fc->wall : fc->wall + (now_mono() - fc->mono0);
}

struct runs {
	int n;
	char rule[32];
	char vms[64];
	enum cfg_backup_mode mode;
	time_t slot;
	int late;
};

static void
on_run(const struct calendar_run *run, void *arg)
{
	struct runs *r = arg;
	size_t i;

	r->n++;
	snprintf(r->rule, sizeof(r->rule), "%s", run->rule);
	r->vms[0] = '\0';
	for (i = 0; i < run->nvms; i++)
		snprintf(r->vms + strlen(r->vms), sizeof(r->vms) - strlen(r->vms), "%s%s", i ? "," : "", run->vms[i]);
	r->mode = run->mode;
	r->slot = run->slot;
	r->late = run->late;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run the loop until a run is called back or secs pass. */
static void
loop_until_run(struct event_base *base, struct runs *r, double secs)
{
	struct timeval tv = { (long)secs, (long)((secs - (long)secs) * 1e6) };
	struct event *stop = evtimer_new(base, stop_cb, base);
	int before = r->n;

	evtimer_add(stop, &tv);
	while (r->n == before && event_base_loop(base, EVLOOP_ONCE) == 0 && evtimer_pending(stop, NULL))
		;
	event_free(stop);
}

static void
rule_init(struct cfg_rule *r, enum cfg_kind kind, const char *name, struct cfg_sched_entry *es, size_t n)
{
	static char *vms[] = { "web01", "db01" };

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->name = (char *)name;
	r->vms = vms;
	r->nvms = 2;
	r->schedule.entries = es;
	r->schedule.nentries = n;
	r->schedule.set = 1;
	r->options.auto_sync = 1;
}

static void
test_driver_timer(void **state)
{
	int t1[] = { HM(1, 0) };
	struct cfg_sched_entry es[2];
	struct event_base *base = event_base_new();
	struct fake_clock fc = { (double)loc(2025, 6, 10, 0, 59) + 59.9, now_mono() };
	struct runs runs = { 0 };
	struct calendar *cal = calendar_new(base, fake_now, &fc, on_run, &runs);
	struct cfg_rule r;
	enum cfg_backup_mode m;
	time_t next;

	es[0] = entry(SCHED_DAILY, BACKUP_INCREMENTAL, t1, 1);
	es[1] = entry(SCHED_WEEKLY, BACKUP_FULL, t1, 1);
	es[1].days = TUE;
	rule_init(&r, CFG_BACKUP, "nightly", es, 2);
	calendar_set(cal, &r, 0);
	/* the calendar keeps copies */
	es[0].type = SCHED_NONE;
	t1[0] = HM(5, 0);
	assert_int_equal(calendar_rule_next(cal, CFG_BACKUP, "nightly", &next, &m), 0);
	assert_int_equal(next, loc(2025, 6, 10, 1, 0));
	assert_int_equal(m, BACKUP_FULL);

	loop_until_run(base, &runs, 3);
	assert_int_equal(runs.n, 1);
	assert_string_equal(runs.rule, "nightly");
	assert_string_equal(runs.vms, "web01,db01");
	assert_int_equal(runs.mode, BACKUP_FULL);
	assert_int_equal(runs.slot, loc(2025, 6, 10, 1, 0));
	assert_int_equal(runs.late, 0);
	assert_int_equal(calendar_rule_next(cal, CFG_BACKUP, "nightly", &next, &m), 0);
	assert_int_equal(next, loc(2025, 6, 11, 1, 0));
	assert_int_equal(m, BACKUP_INCREMENTAL);

	/* nothing more within a second */
	loop_until_run(base, &runs, 0.3);
	assert_int_equal(runs.n, 1);
	calendar_free(cal);
	event_base_free(base);
}

static void
test_driver_missed_and_edits(void **state)
{
	int t1[] = { HM(1, 0) }, t13[] = { HM(13, 0) };
	struct cfg_sched_entry es[2];
	struct event_base *base = event_base_new();
	struct fake_clock fc = { (double)loc(2025, 6, 16, 9, 0), -1 };
	struct runs runs = { 0 };
	struct calendar *cal = calendar_new(base, fake_now, &fc, on_run, &runs);
	struct cfg_rule r;
	time_t next;

	es[0] = entry(SCHED_DAILY, BACKUP_INCREMENTAL, t1, 1);
	es[1] = entry(SCHED_WEEKLY, BACKUP_FULL, t1, 1);
	es[1].days = SUN;
	rule_init(&r, CFG_BACKUP, "nightly", es, 2);
	/* last ran friday: down over saturday and sunday; one run, full, from the loop */
	calendar_set(cal, &r, loc(2025, 6, 13, 1, 0));
	assert_int_equal(runs.n, 0);
	loop_until_run(base, &runs, 1);
	assert_int_equal(runs.n, 1);
	assert_int_equal(runs.mode, BACKUP_FULL);
	assert_int_equal(runs.slot, loc(2025, 6, 14, 1, 0));
	assert_int_equal(runs.late, 1);
	loop_until_run(base, &runs, 0.2);
	assert_int_equal(runs.n, 1);

	/* the clock moves on past tuesday 01:00: calendar_tick runs it */
	fc.wall = (double)loc(2025, 6, 17, 1, 0) + 0.5;
	calendar_tick(cal);
	assert_int_equal(runs.n, 2);
	assert_int_equal(runs.mode, BACKUP_INCREMENTAL);
	assert_int_equal(runs.slot, loc(2025, 6, 17, 1, 0));
	assert_int_equal(runs.late, 0);
	calendar_tick(cal);
	assert_int_equal(runs.n, 2);

	/* set back an hour: nothing runs twice */
	fc.wall = (double)loc(2025, 6, 17, 0, 30);
	calendar_tick(cal);
	fc.wall = (double)loc(2025, 6, 17, 1, 30);
	calendar_tick(cal);
	assert_int_equal(runs.n, 2);

	/* an edit adding a time already past today makes nothing up */
	fc.wall = (double)loc(2025, 6, 17, 14, 0);
	es[0].times = t13;
	calendar_set(cal, &r, 0);
	loop_until_run(base, &runs, 0.2);
	assert_int_equal(runs.n, 2);
	assert_int_equal(calendar_rule_next(cal, CFG_BACKUP, "nightly", &next, NULL), 0);
	assert_int_equal(next, loc(2025, 6, 18, 13, 0));

	/* a replication rule is armed, and removed when auto_sync is turned off */
	rule_init(&r, CFG_REPLICATION, "rep", es, 1);
	calendar_set(cal, &r, 0);
	assert_int_equal(calendar_rule_next(cal, CFG_REPLICATION, "rep", &next, NULL), 0);
	r.options.auto_sync = 0;
	calendar_set(cal, &r, 0);
	assert_int_equal(calendar_rule_next(cal, CFG_REPLICATION, "rep", &next, NULL), -1);
	calendar_remove(cal, CFG_BACKUP, "nightly");
	assert_int_equal(calendar_rule_next(cal, CFG_BACKUP, "nightly", &next, NULL), -1);
	calendar_tick(cal);
	assert_int_equal(runs.n, 2);
	calendar_free(cal);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daily_strictly_after),
		cmocka_unit_test(test_monthly_short_months),
		cmocka_unit_test(test_dst_spring_forward_daily),
		cmocka_unit_test(test_dst_fall_back_daily),
		cmocka_unit_test(test_hourly_across_midnight),
		cmocka_unit_test(test_hourly_dst),
		cmocka_unit_test(test_weekly_several_days),
		cmocka_unit_test(test_backup_entries_modes),
		cmocka_unit_test(test_once),
		cmocka_unit_test(test_missed_runs),
		cmocka_unit_test(test_driver_timer),
		cmocka_unit_test(test_driver_missed_and_edits),
	};

	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	if (loc(2025, 7, 1, 12, 0) != utc(2025, 7, 1, 10, 0)) {
		fprintf(stderr, "test_calendar: no time zone data for Europe/Berlin (install tzdata)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
