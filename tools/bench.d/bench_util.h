/* What the in-process benchmarks of tools/bench.d share: a clock and the
 * removal of their scratch store. */
#ifndef VMFERRY_BENCH_UTIL_H
#define VMFERRY_BENCH_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <time.h>

static inline double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int
bench_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Removes a scratch directory and everything in it. */
static inline void
bench_rm_tree(const char *dir)
{
	nftw(dir, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
