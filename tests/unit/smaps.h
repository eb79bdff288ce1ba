/* This process's mappings as /proc/self/smaps lists them, one at a time,
 * with their VmFlags: for tests that check what a mapping is registered
 * for ("uw": userfaultfd write protection). */
#ifndef VMSWITCH_TESTS_SMAPS_H
#define VMSWITCH_TESTS_SMAPS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct smaps_vma {
	uintptr_t lo, hi;
	char flags[512];   /* the VmFlags line, e.g. "VmFlags: rd wr sh uw" */
};

/* The next mapping of f (an open /proc/self/smaps), or false at the end. */
static inline bool smaps_next(FILE *f, struct smaps_vma *v)
{
	char line[512];

	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			v->lo = lo;
			v->hi = hi;
		} else if (strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(v->flags, sizeof(v->flags), "%s", line);
			return true;
		}
	}
	return false;
}

static inline bool smaps_has(const struct smaps_vma *v, const char *flag)
{
	char want[8];

	snprintf(want, sizeof(want), " %s", flag);
	return strstr(v->flags, want) != NULL;
}

#endif
