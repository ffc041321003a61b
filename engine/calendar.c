#include "engine/calendar.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"

/* ---- local time ---- */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's
 * algorithm), so that dates are counted without mktime, which would apply
 * the time zone. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (unsigned)((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1);
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int *y, int *m, int *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static int
month_days(int y, int m)
{
	return (int)(days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - days_from_civil(y, m, 1));
}

/* Monday 0 ... Sunday 6; 1970-01-01 was a Thursday. */
static int
weekday_mon0(int64_t day)
{
	return (int)(((day % 7) + 7 + 3) % 7);
}

static long
gmtoff_at(time_t t)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return 0;
	return tm.tm_gmtoff;
}

/* The local date of t, in days since 1970-01-01. */
static int64_t
local_day(time_t t)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return (int64_t)(t / 86400);
	return days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* The instant at which the local clock shows wall time w (seconds since
 * 1970-01-01 00:00 on the local clock).  A wall time that comes twice
 * (the clock set back) is its first occurrence; one that never comes
 * (the clock set forward) is the first instant after the gap.  The
 * offsets a day before and after are the candidates: zones do not change
 * twice within two days. */
static time_t
wall_to_time(int64_t w)
{
	long before = gmtoff_at((time_t)(w - 86400)), after = gmtoff_at((time_t)(w + 86400));
	long offs[2] = { before, after };
	time_t best = 0, t, lo, hi, mid;
	int found = 0, i;

	for (i = 0; i < 2; i++) {
		t = (time_t)(w - offs[i]);
		if ((int64_t)t + gmtoff_at(t) == w && (!found || t < best)) {
			best = t;
			found = 1;
		}
	}
	if (found || after <= before)
		return found ? best : (time_t)(w - before);
	/* In the gap: lo is still on the old offset, hi already on the new
	 * one; the change lies in (lo, hi]. */
	lo = (time_t)(w - after);
	hi = (time_t)(w - before);
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (gmtoff_at(mid) == before)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

static time_t
day_minute(int64_t day, int minute)
{
	return wall_to_time(day * 86400 + (int64_t)minute * 60);
}

/* ---- run times ---- */

static int
day_matches(const struct cfg_sched_entry *e, int64_t day)
{
	int y, m, d, want;

	switch (e->type) {
	case SCHED_DAILY:
		return 1;
	case SCHED_WEEKLY:
		return (e->days >> weekday_mon0(day)) & 1;
	case SCHED_MONTHLY:
		civil_from_days(day, &y, &m, &d);
		want = e->day < month_days(y, m) ? e->day : month_days(y, m);
		return d == want;
	default:
		return 0;
	}
}

/* Hourly: day D's series runs from its start until day D+1's start. */
static int
hourly_next(const struct cfg_sched_entry *e, time_t after, time_t *next)
{
	int64_t day, step = (int64_t)e->interval_min * 60;
	time_t a, b;

	for (day = local_day(after) - 1; day <= local_day(after) + 1; day++) {
		a = day_minute(day, e->times[0]);
		b = day_minute(day + 1, e->times[0]);
		if (after >= b)
			continue;
		if (after < a) {
			*next = a;
		} else {
			a += (time_t)(((int64_t)(after - a) / step + 1) * step);
			*next = a < b ? a : b;
		}
		return 0;
	}
	return -1;
}

int
calendar_entry_next(const struct cfg_sched_entry *e, time_t after, time_t *next)
{
	int64_t day, first;
	size_t i;
	time_t t;
	int found;

	if (e->type == SCHED_ONCE) {
		if ((time_t)e->once_at <= after)
			return -1;
		*next = (time_t)e->once_at;
		return 0;
	}
	if (e->ntimes == 0 || e->times == NULL)
		return -1;
	if (e->type == SCHED_HOURLY)
		return e->interval_min > 0 ? hourly_next(e, after, next) : -1;
	if ((e->type == SCHED_WEEKLY && (e->days & 0x7f) == 0) || (e->type == SCHED_MONTHLY && e->day < 1))
		return -1;
	/* A monthly entry runs in every month: two months always hold a run. */
	first = local_day(after) - 1;
	for (day = first; day <= first + 64; day++) {
		if (!day_matches(e, day))
			continue;
		found = 0;
		for (i = 0; i < e->ntimes; i++) {
			t = day_minute(day, e->times[i]);
			if (t > after && (!found || t < *next)) {
				*next = t;
				found = 1;
			}
		}
		if (found)
			return 0;
	}
	return -1;
}

/* full, then differential, then incremental */
static int
mode_rank(enum cfg_backup_mode m)
{
	return m == BACKUP_FULL ? 3 : m == BACKUP_DIFFERENTIAL ? 2 : 1;
}

static enum cfg_backup_mode
mode_stronger(enum cfg_backup_mode a, enum cfg_backup_mode b)
{
	return mode_rank(a) >= mode_rank(b) ? a : b;
}

int
calendar_next(const struct cfg_schedule *s, time_t after, time_t *next, enum cfg_backup_mode *mode)
{
	enum cfg_backup_mode best_mode = BACKUP_INCREMENTAL;
	time_t t, best = 0;
	int found = 0;
	size_t i;

	for (i = 0; i < s->nentries; i++) {
		if (calendar_entry_next(&s->entries[i], after, &t) != 0)
			continue;
		if (!found || t < best) {
			best = t;
			best_mode = s->entries[i].mode;
		} else if (t == best) {
			best_mode = mode_stronger(best_mode, s->entries[i].mode);
		}
		found = 1;
	}
	if (!found)
		return -1;
	*next = best;
	if (mode != NULL)
		*mode = best_mode;
	return 0;
}

int
calendar_due(const struct cfg_schedule *s, time_t last, time_t now, time_t *first, enum cfg_backup_mode *mode)
{
	enum cfg_backup_mode due_mode = BACKUP_INCREMENTAL;
	time_t t, earliest = 0;
	int due = 0;
	size_t i;

	for (i = 0; i < s->nentries && last < now; i++) {
		if (calendar_entry_next(&s->entries[i], last, &t) != 0 || t > now)
			continue;
		due_mode = due ? mode_stronger(due_mode, s->entries[i].mode) : s->entries[i].mode;
		if (!due || t < earliest)
			earliest = t;
		due = 1;
	}
	if (due && first != NULL)
		*first = earliest;
	if (due && mode != NULL)
		*mode = due_mode;
	return due;
}

/* ---- the driver ---- */

struct cal_rule {
	struct calendar *cal;
	enum cfg_kind kind;
	char *name;
	char **vms;
	size_t nvms;
	/* The schedule, copied into one block: entries, then every entry's
	 * times. */
	struct cfg_schedule sched;
	time_t last;               /* run times up to here are done with */
	struct event *timer;
};

struct calendar {
	struct event_base *base;
	calendar_clock_fn now;
	void *now_arg;
	calendar_fn fn;
	void *arg;
	struct cal_rule **rules;
	size_t nrules;
};

struct calendar *
calendar_new(struct event_base *base, calendar_clock_fn now, void *now_arg, calendar_fn fn, void *arg)
{
	struct calendar *cal = xcalloc(1, sizeof(*cal));

	cal->base = base;
	cal->now = now;
	cal->now_arg = now_arg;
	cal->fn = fn;
	cal->arg = arg;
	return cal;
}

static void
rule_drop_copy(struct cal_rule *cr)
{
	size_t i;

	for (i = 0; i < cr->nvms; i++)
		free(cr->vms[i]);
	free(cr->vms);
	free(cr->sched.entries);
}

static void
rule_set_copy(struct cal_rule *cr, const struct cfg_rule *r)
{
	const struct cfg_schedule *s = &r->schedule;
	size_t i, ntimes = 0;
	int *times;

	rule_drop_copy(cr);
	cr->vms = xcalloc(r->nvms ? r->nvms : 1, sizeof(*cr->vms));
	for (i = 0; i < r->nvms; i++)
		cr->vms[i] = xstrdup(r->vms[i]);
	cr->nvms = r->nvms;

	for (i = 0; i < s->nentries; i++)
		ntimes += s->entries[i].ntimes;
	cr->sched = *s;
	cr->sched.entries = xcalloc(1, s->nentries * sizeof(*s->entries) + ntimes * sizeof(int));
	times = (int *)(cr->sched.entries + s->nentries);
	for (i = 0; i < s->nentries; i++) {
		cr->sched.entries[i] = s->entries[i];
		cr->sched.entries[i].times = times;
		if (s->entries[i].ntimes > 0) /* an entry without times (hourly, once) has none to copy */
			memcpy(times, s->entries[i].times, s->entries[i].ntimes * sizeof(int));
		times += s->entries[i].ntimes;
	}
}

static void
rule_free(struct cal_rule *cr)
{
	event_free(cr->timer);
	rule_drop_copy(cr);
	free(cr->name);
	free(cr);
}

void
calendar_free(struct calendar *cal)
{
	size_t i;

	if (cal == NULL)
		return;
	for (i = 0; i < cal->nrules; i++)
		rule_free(cal->rules[i]);
	free(cal->rules);
	free(cal);
}

static size_t
rule_index(const struct calendar *cal, enum cfg_kind kind, const char *name)
{
	size_t i;

	for (i = 0; i < cal->nrules; i++)
		if (cal->rules[i]->kind == kind && strcmp(cal->rules[i]->name, name) == 0)
			return i;
	return cal->nrules;
}

/* Wake at the next run time (at once when one is due), and at least every
 * CALENDAR_MAX_SLEEP_S: the timer counts on the monotonic clock, the
 * schedule on the wall clock, which may be stepped. */
static void
rule_arm(struct cal_rule *cr, double now)
{
	struct timeval tv;
	time_t next;
	double wait;

	event_del(cr->timer);
	if (calendar_due(&cr->sched, cr->last, (time_t)now, NULL, NULL))
		wait = 0;
	else if (calendar_next(&cr->sched, cr->last, &next, NULL) == 0)
		wait = (double)next - now;
	else
		return;
	if (wait < 0)
		wait = 0;
	if (wait > CALENDAR_MAX_SLEEP_S)
		wait = CALENDAR_MAX_SLEEP_S;
	tv.tv_sec = (long)wait;
	tv.tv_usec = (long)((wait - (double)tv.tv_sec) * 1e6);
	evtimer_add(cr->timer, &tv);
}

/* One run for all the times in (last, now], however many there were. */
static void
rule_check(struct cal_rule *cr)
{
	struct calendar *cal = cr->cal;
	double now = cal->now(cal->now_arg);
	struct calendar_run run;
	time_t t = (time_t)now;

	memset(&run, 0, sizeof(run));
	if (calendar_due(&cr->sched, cr->last, t, &run.slot, &run.mode)) {
		cr->last = t;
		run.rule = cr->name;
		run.kind = cr->kind;
		run.vms = (const char *const *)cr->vms;
		run.nvms = cr->nvms;
		run.late = t - run.slot > CALENDAR_LATE_S;
		cal->fn(&run, cal->arg);
	}
	/* A clock stepped back runs nothing twice. */
	if (cr->last < t)
		cr->last = t;
	rule_arm(cr, now);
}

static void
rule_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	rule_check(arg);
}

void
calendar_set(struct calendar *cal, const struct cfg_rule *r, time_t last)
{
	double now = cal->now(cal->now_arg);
	size_t i = rule_index(cal, r->kind, r->name);
	struct cal_rule *cr;

	if ((r->kind != CFG_REPLICATION && r->kind != CFG_BACKUP) || r->schedule.nentries == 0 ||
	    (r->kind == CFG_REPLICATION && !r->options.auto_sync)) {
		calendar_remove(cal, r->kind, r->name);
		return;
	}
	if (i < cal->nrules) {
		/* An edit makes up for no time before it; a run already due
		 * under the old schedule (its timer not yet run) stays due. */
		cr = cal->rules[i];
		if (cr->last < (time_t)now && !calendar_due(&cr->sched, cr->last, (time_t)now, NULL, NULL))
			cr->last = (time_t)now;
	} else {
		cr = xcalloc(1, sizeof(*cr));
		cr->cal = cal;
		cr->kind = r->kind;
		cr->name = xstrdup(r->name);
		cr->last = last != 0 ? last : (time_t)now;
		cr->timer = evtimer_new(cal->base, rule_timer_cb, cr);
		cal->rules = xgrow(cal->rules, cal->nrules, sizeof(*cal->rules));
		cal->rules[cal->nrules++] = cr;
	}
	rule_set_copy(cr, r);
	rule_arm(cr, now);
}

void
calendar_remove(struct calendar *cal, enum cfg_kind kind, const char *name)
{
	size_t i = rule_index(cal, kind, name);

	if (i == cal->nrules)
		return;
	rule_free(cal->rules[i]);
	cal->rules[i] = cal->rules[--cal->nrules];
}

int
calendar_rule_next(const struct calendar *cal, enum cfg_kind kind, const char *name, time_t *next,
    enum cfg_backup_mode *mode)
{
	size_t i = rule_index(cal, kind, name);

	if (i == cal->nrules)
		return -1;
	return calendar_next(&cal->rules[i]->sched, cal->rules[i]->last, next, mode);
}

void
calendar_tick(struct calendar *cal)
{
	size_t i;

	for (i = 0; i < cal->nrules; i++)
		rule_check(cal->rules[i]);
}
