/* Test data for the backup repository's tests (t/unit/test_repo.c,
 * t/tools/repo_fixture.c): bytes that no compressor shrinks, and text that
 * shrinks well, both the same for the same seed. */
#ifndef VMFERRY_T_TFILL_H
#define VMFERRY_T_TFILL_H

#include <stddef.h>
#include <stdint.h>

/* xorshift64. */
static inline void
fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

/* A sentence over and over, one byte in the middle set to the seed so
 * that two seeds differ. */
static inline void
fill_text(uint8_t *p, size_t n, int seed)
{
	static const char text[] = "the quick brown fox jumps over the lazy dog ";
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)text[(i + (size_t)seed) % (sizeof(text) - 1)];
	if (n > 0)
		p[n / 2] = (uint8_t)seed;
}

#endif
