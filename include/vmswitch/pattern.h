/* PFN-tagged memory patterns and their checksum.
 *
 * Shared by the test kernel (guest/, freestanding, CPL3) and host-side tests,
 * so a test can compute independently what the guest should report. Only
 * <stdint.h>; every function is static inline and allocation-free.
 *
 * A page's content depends on (seed, PFN, round): if the VMM ever backs PFN A
 * with the frame that holds PFN B's data (a P2M bug, a lost copy, a lost
 * write), the words do not match. Word 0 is a readable tag (magic, round,
 * PFN) for whoever dumps memory; the other words derive from a per-page key.
 *
 * Checksum: each page folds to one 64-bit value mixed with its PFN; the work
 * area's checksum is the wrapping sum of its pages, so slices checked by
 * different CPUs add up to the same total in any order.
 */
#ifndef VMSWITCH_PATTERN_H
#define VMSWITCH_PATTERN_H

#include <stdint.h>

#define PATTERN_PAGE_SIZE 4096u
#define PATTERN_WORDS     (PATTERN_PAGE_SIZE / 8u)
#define PATTERN_MAGIC     0x5647ULL /* "VG", top 16 bits of word 0 */

/* splitmix64's finalizer: cheap, integer-only (safe at any CPL). */
static inline uint64_t pattern_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t pattern_key(uint64_t seed, uint64_t pfn, uint64_t round)
{
	return pattern_mix(seed + pattern_mix(pfn * 0x9e3779b97f4a7c15ULL + round));
}

static inline uint64_t pattern_tag(uint64_t pfn, uint64_t round)
{
	return PATTERN_MAGIC << 48 | (round & 0xffffULL) << 32 | (pfn & 0xffffffffULL);
}

/* Word i (1..PATTERN_WORDS-1) of a page whose key is `key`. */
static inline uint64_t pattern_word(uint64_t key, unsigned i)
{
	return key ^ ((uint64_t)i * 0xd6e8feb86659fd93ULL);
}

static inline uint64_t pattern_expected(uint64_t seed, uint64_t pfn,
					uint64_t round, unsigned i)
{
	return i == 0 ? pattern_tag(pfn, round)
		      : pattern_word(pattern_key(seed, pfn, round), i);
}

static inline void pattern_fill(volatile uint64_t *page, uint64_t seed,
				uint64_t pfn, uint64_t round)
{
	uint64_t key = pattern_key(seed, pfn, round);

	page[0] = pattern_tag(pfn, round);
	for (unsigned i = 1; i < PATTERN_WORDS; i++)
		page[i] = pattern_word(key, i);
}

/* The first word that did not hold its expected value. */
struct pattern_bad {
	unsigned index;
	uint64_t got, want;
};

/* Verify `page` against round `round` and rewrite it with round + 1 in the
 * same pass. Returns the number of mismatched words; the first goes to *bad
 * (untouched when there is none). */
static inline unsigned pattern_step(volatile uint64_t *page, uint64_t seed,
				    uint64_t pfn, uint64_t round,
				    struct pattern_bad *bad)
{
	uint64_t key = pattern_key(seed, pfn, round);
	uint64_t next = pattern_key(seed, pfn, round + 1);
	unsigned n = 0;

	for (unsigned i = 0; i < PATTERN_WORDS; i++) {
		uint64_t want = i ? pattern_word(key, i) : pattern_tag(pfn, round);
		uint64_t got = page[i];

		if (got != want && n++ == 0)
			*bad = (struct pattern_bad){ i, got, want };
		page[i] = i ? pattern_word(next, i) : pattern_tag(pfn, round + 1);
	}
	return n;
}

static inline uint64_t pattern_fold(uint64_t acc, uint64_t word, unsigned i)
{
	return acc + word * (2u * (uint64_t)i + 1u);
}

static inline uint64_t pattern_page_sum(uint64_t fold, uint64_t pfn)
{
	return pattern_mix(fold ^ (pfn << 12));
}

/* Verify `page` against round `round` without rewriting it; *sum gets the
 * page's checksum contribution (from what was read, not what was expected). */
static inline unsigned pattern_check(const volatile uint64_t *page, uint64_t seed,
				     uint64_t pfn, uint64_t round, uint64_t *sum,
				     struct pattern_bad *bad)
{
	uint64_t key = pattern_key(seed, pfn, round);
	uint64_t fold = 0;
	unsigned n = 0;

	for (unsigned i = 0; i < PATTERN_WORDS; i++) {
		uint64_t want = i ? pattern_word(key, i) : pattern_tag(pfn, round);
		uint64_t got = page[i];

		if (got != want && n++ == 0)
			*bad = (struct pattern_bad){ i, got, want };
		fold = pattern_fold(fold, got, i);
	}
	*sum = pattern_page_sum(fold, pfn);
	return n;
}

/* What an intact page of round `round` contributes to the checksum. */
static inline uint64_t pattern_expected_page_sum(uint64_t seed, uint64_t pfn,
						 uint64_t round)
{
	uint64_t key = pattern_key(seed, pfn, round);
	uint64_t fold = pattern_fold(0, pattern_tag(pfn, round), 0);

	for (unsigned i = 1; i < PATTERN_WORDS; i++)
		fold = pattern_fold(fold, pattern_word(key, i), i);
	return pattern_page_sum(fold, pfn);
}

/* The checksum an intact work area of `npages` pages starting at `first_pfn`
 * has after `round` rounds: what the guest reports on success. */
static inline uint64_t pattern_expected_checksum(uint64_t seed, uint64_t first_pfn,
						 uint64_t npages, uint64_t round)
{
	uint64_t sum = 0;

	for (uint64_t p = 0; p < npages; p++)
		sum += pattern_expected_page_sum(seed, first_pfn + p, round);
	return sum;
}

#endif
