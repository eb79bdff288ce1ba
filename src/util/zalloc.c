/* Zeroed arrays as anonymous mappings of their own.
 *
 * calloc of a large block returns a fresh mapping (zero for free, only the
 * pages touched cost anything) until glibc raises its mmap threshold,
 * which it does after such a block is freed: from then on big blocks come
 * from the heap and calloc clears every byte. A devirtualize allocates
 * ~15 MiB of per-frame arrays at 4 GiB and touches a few pages of them
 * when little moves: from the third one on the clearing took 20 ms of its
 * 27. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "vmswitch/util.h"

/* The length sits in front of the array, 16 bytes keeping it aligned. */
#define ZHDR 16

static bool too_big(size_t n, size_t size)
{
	return size && n > (SIZE_MAX - ZHDR) / size;
}

#ifdef __SANITIZE_ADDRESS__
/* AddressSanitizer checks the bounds of heap blocks, not of mappings. */
void *zalloc(size_t n, size_t size)
{
	return too_big(n, size) ? NULL : calloc(n, size);
}

void zfree(void *a)
{
	free(a);
}
#else
void *zalloc(size_t n, size_t size)
{
	if (too_big(n, size))
		return NULL;
	size_t len = ZHDR + n * size;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	*(size_t *)p = len;
	return p + ZHDR;
}

void zfree(void *a)
{
	if (a) {
		uint8_t *p = (uint8_t *)a - ZHDR;
		munmap(p, *(size_t *)p);
	}
}
#endif
