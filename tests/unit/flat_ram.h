/* A plain buffer standing in for guest RAM (one region from GPA 0), for
 * tests of the boot loaders' struct boot_guest. */
#ifndef VMSWITCH_TESTS_FLAT_RAM_H
#define VMSWITCH_TESTS_FLAT_RAM_H

#include <stdint.h>

#include "vmswitch/mem.h"

struct ram {
	struct mem_layout l;
	uint8_t *buf;
};

static inline void *ram_hva(void *ctx, uint64_t gpa)
{
	struct ram *r = ctx;

	return gpa < r->l.r[0].size ? r->buf + gpa : NULL;
}

#endif
