/* Bandwidth control: a rule's weekly windows say the limit in force, a
 * token bucket paces the rule's transfers to it.  Pure functions of the
 * times passed in, so they are tested on an injected clock. */
#ifndef VMFERRY_BW_H
#define VMFERRY_BW_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cfg_window;

struct bw_bucket {
	uint64_t rate;  /* bytes/s the bucket was last filled at; 0 = paused */
	double tokens;  /* may go negative: a request larger than the balance is
	                   let through and the debt is waited off afterwards */
	double last;    /* monotonic seconds of the last update */
	int primed;
};

#define BW_UNLIMITED UINT64_MAX

/* The limit in force at wall-clock time t (local time): BW_UNLIMITED when
 * no window covers it, 0 when transfers are paused. */
uint64_t bw_limit_at(const struct cfg_window *w, size_t n, time_t t);

/* May n bytes go now?  Returns 0 and takes the tokens, or the seconds to
 * wait before asking again; a negative value means paused (limit 0: ask
 * again when the window may have changed, see bw_next_change). */
double bw_take(struct bw_bucket *b, uint64_t rate, size_t n, double now);

/* Seconds from wall-clock t until the next window boundary (at most a
 * week); used to wake paused transfers when their window ends. */
double bw_next_change(const struct cfg_window *w, size_t n, time_t t);

#endif
