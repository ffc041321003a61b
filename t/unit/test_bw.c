/* Unit tests for engine/bw.c (token bucket on an injected clock, weekly
 * windows) and cfg_window_limit.  TZ is UTC so local times are fixed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine/bw.h"
#include "engine/config.h"
#include "engine/core/util.h"

#define MIB (1024.0 * 1024.0)

/* Monday 2024-01-01 00:00:00 UTC. */
#define MON0 ((time_t)1704067200)
#define AT(day, h, m) (MON0 + (time_t)(day) * 86400 + (time_t)(h) * 3600 + (time_t)(m) * 60)
enum { MON, TUE, WED, THU, FRI, SAT, SUN };

#define WEEKDAYS 0x1f /* bit 0 = monday */
#define WEEKEND 0x60

/* The spec's example: weekdays 09:00-18:00 at 20 MiB/s, weekends paused. */
static const struct cfg_window spec_windows[] = {
	{ WEEKDAYS, 9 * 60, 18 * 60, 20u << 20 },
	{ WEEKEND, 0, 24 * 60, 0 },
};

/* Send chunk-sized requests as fast as the bucket allows during
 * [start, start + secs); returns the bytes moved. */
static double
simulate(struct bw_bucket *b, uint64_t rate, size_t chunk, double start, double secs)
{
	double now = start, moved = 0, w;
	int guard = 0;

	while (now < start + secs) {
		w = bw_take(b, rate, chunk, now);
		if (w == 0) {
			moved += (double)chunk;
		} else {
			assert_true(w > 0);
			/* a timer cannot fire sooner than a microsecond */
			now += w < 1e-6 ? 1e-6 : w;
		}
		if (++guard > 1000000)
			fail_msg("bw_take never lets time pass");
	}
	return moved;
}

static void
test_rate_is_kept(void **unused)
{
	struct bw_bucket b = { 0 };
	double chunk = 4 * MIB, moved;

	moved = simulate(&b, 10u << 20, 4u << 20, 1000.0, 10.0);
	if (moved < 100 * MIB - chunk || moved > 100 * MIB + chunk)
		fail_msg("moved %.1f MiB in 10 s at 10 MiB/s", moved / MIB);

	/* and it goes on at that pace */
	moved = simulate(&b, 10u << 20, 4u << 20, 1010.0, 30.0);
	if (moved < 300 * MIB - chunk || moved > 300 * MIB + chunk)
		fail_msg("moved %.1f MiB in the next 30 s at 10 MiB/s", moved / MIB);
}

static void
test_small_chunks_and_slow_rates(void **unused)
{
	struct bw_bucket b = { 0 };
	double moved;

	/* 64 KiB requests at 1 MiB/s */
	moved = simulate(&b, 1u << 20, 64u << 10, 0.0, 20.0);
	if (moved < 20 * MIB - 65536 || moved > 20 * MIB + 65536)
		fail_msg("moved %.3f MiB in 20 s at 1 MiB/s", moved / MIB);
	/* a chunk bigger than a second's worth still goes, the debt is waited off */
	memset(&b, 0, sizeof(b));
	moved = simulate(&b, 1000, 4096, 0.0, 41.0);
	assert_true(moved >= 40000 - 4096 && moved <= 41000 + 4096);
}

static void
test_wait_is_the_debt(void **unused)
{
	struct bw_bucket b = { 0 };
	double w;

	/* a new limit starts with an empty balance: the first request goes */
	assert_true(bw_take(&b, 1u << 20, 4u << 20, 50.0) == 0);
	/* then 4 MiB at 1 MiB/s must be waited off */
	w = bw_take(&b, 1u << 20, 4u << 20, 50.0);
	assert_true(w > 3.999 && w < 4.001);
	w = bw_take(&b, 1u << 20, 4u << 20, 52.0);
	assert_true(w > 1.999 && w < 2.001);
	assert_true(bw_take(&b, 1u << 20, 4u << 20, 54.0) == 0);
}

static void
test_idle_does_not_save_up_much(void **unused)
{
	struct bw_bucket b = { 0 };
	double moved;

	assert_true(bw_take(&b, 1u << 20, 1, 0.0) == 0);
	/* an hour of idling, then as fast as allowed for one second */
	moved = simulate(&b, 1u << 20, 64u << 10, 3600.0, 1.0);
	/* at most one second of burst on top of one second of rate */
	if (moved > 2 * MIB + 65536)
		fail_msg("burst of %.2f MiB after idling at 1 MiB/s", moved / MIB);
	assert_true(moved >= 1 * MIB);
}

static void
test_paused_moves_nothing(void **unused)
{
	struct bw_bucket b = { 0 };
	double now;
	int i;

	for (i = 0, now = 0; i < 100; i++, now += 0.5)
		assert_true(bw_take(&b, 0, 4u << 20, now) < 0);
	/* progress is kept: once the window ends the rate applies afresh */
	assert_true(bw_take(&b, 10u << 20, 4u << 20, now) == 0);
	assert_true(bw_take(&b, 10u << 20, 4u << 20, now) > 0);
	/* pausing in the middle of a debt */
	assert_true(bw_take(&b, 0, 4u << 20, now) < 0);
	assert_true(bw_take(&b, 0, 1, now + 100) < 0);
}

static void
test_unlimited_never_waits(void **unused)
{
	struct bw_bucket b = { 0 };
	int i;

	for (i = 0; i < 10000; i++)
		assert_true(bw_take(&b, BW_UNLIMITED, (size_t)1 << 30, 5.0) == 0);
	/* after unlimited, a limit starts with an empty balance */
	assert_true(bw_take(&b, 1u << 20, 4u << 20, 5.0) == 0);
	assert_true(bw_take(&b, 1u << 20, 4u << 20, 5.0) > 3.9);
	assert_true(bw_take(&b, BW_UNLIMITED, 4u << 20, 5.0) == 0);
}

static void
test_rate_change_resets_balance(void **unused)
{
	struct bw_bucket b = { 0 };
	double w;

	assert_true(bw_take(&b, 1u << 20, 8u << 20, 10.0) == 0);
	assert_true(bw_take(&b, 1u << 20, 8u << 20, 10.0) > 7.9);
	/* the old debt does not carry over into a new limit */
	assert_true(bw_take(&b, 4u << 20, 8u << 20, 10.0) == 0);
	w = bw_take(&b, 4u << 20, 8u << 20, 10.0);
	assert_true(w > 1.999 && w < 2.001);
	/* and saved-up tokens do not either */
	memset(&b, 0, sizeof(b));
	assert_true(bw_take(&b, 1u << 20, 1, 0.0) == 0);
	assert_true(bw_take(&b, 1u << 20, 1, 100.0) == 0); /* a full second's burst saved */
	assert_true(bw_take(&b, 2u << 20, 1u << 20, 100.0) == 0);
	assert_true(bw_take(&b, 2u << 20, 1u << 20, 100.0) > 0.49);
}

/* ---- windows ----------------------------------------------------------- */

static uint64_t
limit_at(time_t t)
{
	return bw_limit_at(spec_windows, ARRAY_LEN(spec_windows), t);
}

static void
test_limit_at_spec_windows(void **unused)
{
	/* weekdays: 09:00 inclusive, 18:00 exclusive */
	assert_true(limit_at(AT(MON, 0, 0)) == BW_UNLIMITED);
	assert_true(limit_at(AT(MON, 8, 59)) == BW_UNLIMITED);
	assert_true(limit_at(AT(MON, 8, 59) + 59) == BW_UNLIMITED);
	assert_true(limit_at(AT(MON, 9, 0)) == 20u << 20);
	assert_true(limit_at(AT(WED, 12, 30)) == 20u << 20);
	assert_true(limit_at(AT(FRI, 17, 59) + 59) == 20u << 20);
	assert_true(limit_at(AT(FRI, 18, 0)) == BW_UNLIMITED);
	assert_true(limit_at(AT(FRI, 23, 59) + 59) == BW_UNLIMITED);
	/* the weekend is paused all day, through 24:00 */
	assert_true(limit_at(AT(SAT, 0, 0)) == 0);
	assert_true(limit_at(AT(SAT, 9, 30)) == 0);
	assert_true(limit_at(AT(SUN, 12, 0)) == 0);
	assert_true(limit_at(AT(SUN, 23, 59) + 59) == 0);
	/* and next monday is a weekday again */
	assert_true(limit_at(AT(SUN, 24, 0)) == BW_UNLIMITED);
	assert_true(limit_at(AT(7 + MON, 9, 0)) == 20u << 20);
	/* no windows: unlimited */
	assert_true(bw_limit_at(NULL, 0, AT(SAT, 12, 0)) == BW_UNLIMITED);
}

static void
test_cfg_window_limit(void **unused)
{
	const struct cfg_window overlap[] = {
		{ 1u << TUE, 10 * 60, 11 * 60, 5 },
		{ 0x7f, 0, 24 * 60, 7 },
	};
	uint64_t bps = 12345;

	assert_int_equal(cfg_window_limit(spec_windows, 2, MON, 9 * 60, &bps), 1);
	assert_true(bps == 20u << 20);
	assert_int_equal(cfg_window_limit(spec_windows, 2, MON, 18 * 60 - 1, &bps), 1);
	bps = 12345;
	assert_int_equal(cfg_window_limit(spec_windows, 2, MON, 18 * 60, &bps), 0);
	assert_int_equal(cfg_window_limit(spec_windows, 2, MON, 9 * 60 - 1, &bps), 0);
	assert_true(bps == 12345); /* untouched when no window applies */
	assert_int_equal(cfg_window_limit(spec_windows, 2, SUN, 0, &bps), 1);
	assert_true(bps == 0);
	assert_int_equal(cfg_window_limit(spec_windows, 2, SUN, 24 * 60 - 1, &bps), 1);
	assert_true(bps == 0);
	/* the first window that contains the time wins */
	assert_int_equal(cfg_window_limit(overlap, 2, TUE, 10 * 60 + 30, &bps), 1);
	assert_true(bps == 5);
	assert_int_equal(cfg_window_limit(overlap, 2, TUE, 11 * 60, &bps), 1);
	assert_true(bps == 7);
	assert_int_equal(cfg_window_limit(overlap, 2, WED, 10 * 60 + 30, &bps), 1);
	assert_true(bps == 7);
	/* bad weekdays match nothing */
	assert_int_equal(cfg_window_limit(overlap, 2, -1, 600, &bps), 0);
	assert_int_equal(cfg_window_limit(overlap, 2, 7, 600, &bps), 0);
}

static void
test_next_change(void **unused)
{
	const size_t n = ARRAY_LEN(spec_windows);

	assert_true(bw_next_change(spec_windows, n, AT(MON, 8, 0)) == 3600);
	assert_true(bw_next_change(spec_windows, n, AT(MON, 8, 59) + 30) == 30);
	assert_true(bw_next_change(spec_windows, n, AT(MON, 8, 59) + 59) == 1);
	assert_true(bw_next_change(spec_windows, n, AT(MON, 9, 0)) == 9 * 3600);
	assert_true(bw_next_change(spec_windows, n, AT(MON, 17, 59) + 1) == 59);
	/* monday 18:00 -> tuesday 09:00 */
	assert_true(bw_next_change(spec_windows, n, AT(MON, 18, 0)) == 15 * 3600);
	/* friday evening -> the weekend pause at saturday 00:00 */
	assert_true(bw_next_change(spec_windows, n, AT(FRI, 18, 0)) == 6 * 3600);
	/* paused saturday morning -> monday 00:00 */
	assert_true(bw_next_change(spec_windows, n, AT(SAT, 10, 0)) == 38 * 3600);
	assert_true(bw_next_change(spec_windows, n, AT(SUN, 23, 59) + 59) == 1);
	/* nothing ever changes: a week */
	assert_true(bw_next_change(NULL, 0, AT(TUE, 3, 7) + 5) == 7 * 86400.0);
	/* the answer lands on the boundary */
	for (time_t t = AT(THU, 0, 0); t < AT(SUN, 0, 0); t += 3607) {
		double d = bw_next_change(spec_windows, n, t);

		assert_true(d > 0);
		assert_true(limit_at(t + (time_t)d) != limit_at(t));
		assert_true(limit_at(t + (time_t)d - 1) == limit_at(t));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_is_kept),
		cmocka_unit_test(test_small_chunks_and_slow_rates),
		cmocka_unit_test(test_wait_is_the_debt),
		cmocka_unit_test(test_idle_does_not_save_up_much),
		cmocka_unit_test(test_paused_moves_nothing),
		cmocka_unit_test(test_unlimited_never_waits),
		cmocka_unit_test(test_rate_change_resets_balance),
		cmocka_unit_test(test_limit_at_spec_windows),
		cmocka_unit_test(test_cfg_window_limit),
		cmocka_unit_test(test_next_change),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
