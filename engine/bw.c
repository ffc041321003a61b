#include "engine/bw.h"

#include "engine/config.h"

/* One second of tokens may be saved up: enough to keep a pipeline of
 * transfer_buffer requests full, small enough that a paused or idle rule
 * does not burst far past its limit when it resumes. */
#define BW_BURST_S 1.0

static void
local_week_minute(time_t t, int *wday_mon0, int *minute)
{
	struct tm tm;

	localtime_r(&t, &tm);
	*wday_mon0 = (tm.tm_wday + 6) % 7;
	*minute = tm.tm_hour * 60 + tm.tm_min;
}

uint64_t
bw_limit_at(const struct cfg_window *w, size_t n, time_t t)
{
	uint64_t bps;
	int wday, minute;

	local_week_minute(t, &wday, &minute);
	if (cfg_window_limit(w, n, wday, minute, &bps))
		return bps;
	return BW_UNLIMITED;
}

double
bw_take(struct bw_bucket *b, uint64_t rate, size_t n, double now)
{
	double burst;

	if (rate == BW_UNLIMITED) {
		b->rate = rate;
		b->primed = 0;
		return 0;
	}
	if (rate == 0) {
		b->rate = 0;
		b->primed = 0;
		return -1;
	}
	if (!b->primed || b->rate != rate) {
		/* A new limit starts with an empty balance. */
		b->tokens = 0;
		b->last = now;
		b->rate = rate;
		b->primed = 1;
	}
	burst = rate * BW_BURST_S;
	if (now > b->last) {
		b->tokens += (now - b->last) * (double)rate;
		if (b->tokens > burst)
			b->tokens = burst;
		b->last = now;
	}
	if (b->tokens < 0)
		return -b->tokens / (double)rate;
	b->tokens -= (double)n;
	return 0;
}

double
bw_next_change(const struct cfg_window *w, size_t n, time_t t)
{
	uint64_t now_limit = bw_limit_at(w, n, t);
	int step;

	/* Windows start and end on whole minutes: probe minute by minute
	 * from the next minute boundary, up to a week ahead. */
	step = 60 - (int)(t % 60);
	for (int i = 0; i < 7 * 24 * 60; i++) {
		time_t probe = t + step + (time_t)i * 60;

		if (bw_limit_at(w, n, probe) != now_limit)
			return (double)(probe - t);
	}
	return 7 * 24 * 3600.0;
}
