/* The status page of tests/linux/init: where check-linux.sh reads how the
 * workload is doing, through the monitor's composed translation path
 * (`x/8g 0x600000`, with vCPU 0's CR3 = init's page tables).
 *
 * Fixed by init.ld at LW_STATUS_ADDR, alone in its page. Words, all 64-bit:
 *   0 magic       LW_MAGIC once init runs
 *   1 round       passes completed (written LAST in an update)
 *   2 pages       work-area pages
 *   3 mismatches  mismatched words, summed over every pass (must stay 0)
 *   4 checksum    sum of pattern_page_sum over the content the last pass read
 *                 (round `round - 1`, page index in place of the PFN)
 *   5 last_bad    index of the last page with a mismatch, LW_NONE if none
 *   6 seed        pattern seed
 *   7 round_end   written FIRST in an update: a reader that copies words 0..7
 *                 in ascending order and sees round == round_end read words
 *                 2..6 from one finished pass (x86 keeps loads and stores in
 *                 order), so checksum belongs to round - 1.
 * Pass 0 is the initial fill: until it is done, round is 0.
 */
#ifndef LW_STATUS_H
#define LW_STATUS_H

#include <stdint.h>

#define LW_STATUS_ADDR 0x600000UL
#define LW_MAGIC       0x314b52574c4d5356ULL /* "VSMLWRK1" little-endian */
#define LW_NONE        (~0ULL)
#define LW_MAX_PAGES   8192u    /* 32 MiB of .bss */
#define LW_DEF_PAGES   2000u
#define LW_DEF_SEED    11u

struct lw_status {
	uint64_t magic;
	uint64_t round;
	uint64_t pages;
	uint64_t mismatches;
	uint64_t checksum;
	uint64_t last_bad;
	uint64_t seed;
	uint64_t round_end;
};

#endif
