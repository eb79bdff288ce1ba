/* Decimal or 0x-hex numbers for freestanding code (the test kernel and the
 * Linux-workload init parse their command lines with it): no libc at all. */
#ifndef VMSWITCH_NUMPARSE_H
#define VMSWITCH_NUMPARSE_H

#include <stddef.h>
#include <stdint.h>

/* Parse exactly n bytes; 0 on success, -1 if empty or malformed. */
static inline int num_parse(const char *s, size_t n, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return -1;
	for (; n; n--, s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && (*s | 0x20) >= 'a' && (*s | 0x20) <= 'f')
			d = (unsigned)((*s | 0x20) - 'a' + 10);
		else
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

#endif
