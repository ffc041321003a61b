/* Units users write in rule files: sizes, rates, clock times, day names
 * and certificate fingerprints.  Parsers are strict (no locale, no
 * fractions, no signs) and reject overflow instead of wrapping. */
#include "engine/core/units.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct unit_suffix {
	const char *name;
	uint64_t mult;
};

/* Binary units are what VMware and the seeds mean by "4M"; decimal ones are
 * accepted because people write them, but are never printed. */
static const struct unit_suffix size_units[] = {
	{ "B", 1 },
	{ "KiB", 1ull << 10 },
	{ "MiB", 1ull << 20 },
	{ "GiB", 1ull << 30 },
	{ "TiB", 1ull << 40 },
	{ "KB", 1000ull },
	{ "MB", 1000ull * 1000 },
	{ "GB", 1000ull * 1000 * 1000 },
	{ "TB", 1000ull * 1000 * 1000 * 1000 },
};

/* Parses decimal digits at s; returns the number of characters used (0 if
 * none or on overflow). */
static size_t
parse_digits(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return i;
}

static int
parse_size_n(const char *s, size_t len, uint64_t *out)
{
	uint64_t v;
	size_t i, n;

	if (s == NULL || len == 0)
		return -1;
	if ((n = parse_digits(s, len, &v)) == 0)
		return -1;
	if (n == len) {
		*out = v;
		return 0;
	}
	/* one optional space between number and unit: "4 MiB" is how sizes are printed */
	if (s[n] == ' ')
		n++;
	for (i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		size_t ul = strlen(size_units[i].name);

		if (len - n == ul && memcmp(s + n, size_units[i].name, ul) == 0) {
			if (v != 0 && size_units[i].mult > UINT64_MAX / v)
				return -1;
			*out = v * size_units[i].mult;
			return 0;
		}
	}
	return -1;
}

int
units_parse_size(const char *s, uint64_t *out)
{
	if (s == NULL)
		return -1;
	return parse_size_n(s, strlen(s), out);
}

int
units_parse_rate(const char *s, uint64_t *bps)
{
	size_t len;

	if (s == NULL)
		return -1;
	if (strcmp(s, "0") == 0) {
		*bps = 0;
		return 0;
	}
	len = strlen(s);
	if (len < 3 || strcmp(s + len - 2, "/s") != 0)
		return -1;
	return parse_size_n(s, len - 2, bps);
}

int
units_parse_hhmm(const char *s, int allow_24, int *minutes)
{
	int h, m;

	if (s == NULL)
		return -1;
	/* "H:MM" or "HH:MM", nothing else */
	if (s[0] >= '0' && s[0] <= '9' && s[1] == ':') {
		h = s[0] - '0';
		s += 2;
	} else if (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] == ':') {
		h = (s[0] - '0') * 10 + (s[1] - '0');
		s += 3;
	} else {
		return -1;
	}
	if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] == '\0'))
		return -1;
	m = (s[0] - '0') * 10 + (s[1] - '0');
	if (m > 59)
		return -1;
	if (h == 24 && m == 0 && allow_24) {
		*minutes = 1440;
		return 0;
	}
	if (h > 23)
		return -1;
	*minutes = h * 60 + m;
	return 0;
}

int
units_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
units_parse_thumbprint(const char *s, uint8_t out[32])
{
	uint8_t tmp[32];
	size_t len, i;
	int colons;

	if (s == NULL)
		return -1;
	if (strncasecmp(s, "SHA256:", 7) == 0)
		s += 7;
	len = strlen(s);
	if (len == 64)
		colons = 0;
	else if (len == 32 * 3 - 1)
		colons = 1;
	else
		return -1;
	for (i = 0; i < 32; i++) {
		const char *p = s + i * (colons ? 3 : 2);
		int hi = units_hexval(p[0]), lo = units_hexval(p[1]);

		if (hi < 0 || lo < 0)
			return -1;
		if (colons && i < 31 && p[2] != ':')
			return -1;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(out, tmp, sizeof(tmp));
	return 0;
}

void
units_format_thumbprint(const uint8_t in[32], char out[THUMBPRINT_STRLEN])
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < 32; i++) {
		out[i * 3] = hex[in[i] >> 4];
		out[i * 3 + 1] = hex[in[i] & 0xf];
		out[i * 3 + 2] = i < 31 ? ':' : '\0';
	}
}

void
units_format_size(uint64_t n, char *out, size_t outlen)
{
	static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		snprintf(out, outlen, "%llu B", (unsigned long long)n);
		return;
	}
	while (u + 1 < sizeof(names) / sizeof(names[0]) && v >= 1024.0) {
		v /= 1024.0;
		u++;
	}
	/* 1023.96 KiB would print as "1024.0 KiB"; move up a unit instead */
	if (v >= 1023.95 && u + 1 < sizeof(names) / sizeof(names[0])) {
		v /= 1024.0;
		u++;
	}
	snprintf(out, outlen, "%.1f %s", v, names[u]);
}

int
units_parse_day(const char *s)
{
	static const char *const days[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	int i;

	if (s == NULL)
		return -1;
	for (i = 0; i < 7; i++)
		if (strcmp(s, days[i]) == 0)
			return i;
	return -1;
}
