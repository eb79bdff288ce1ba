/* /init for `make check-linux`: a memory workload for a stock Linux guest
 * that needs NO system call (on kvm_pvm hosts a guest `syscall` never
 * reaches the kernel and `int 0x80` gives #UD).
 *
 * It fills a work area of N pages (kernel command line lw_pages=N, default
 * 2000; each first touch is one guest page fault) with patterns tagged by
 * page index and round (vmswitch/pattern.h, the page index in place of the
 * PFN), then forever: verifies every page, counts mismatched words, rewrites
 * the page for the next round, and publishes the totals in its status page
 * (status.h) for the host to read through the monitor. It never exits:
 * exiting needs a system call, and pid 1 exiting panics the kernel.
 *
 * Unknown kernel parameters with '=' reach init as environment strings, so
 * lw_pages= and lw_seed= are read from envp on the initial stack.
 */
#include <stdint.h>

#include "vmswitch/pattern.h"
#include "status.h"
#include "vmswitch/numparse.h"

#define barrier() __asm__ volatile("" ::: "memory")

__attribute__((section(".status"), aligned(4096)))
volatile struct lw_status lw_status;

static uint64_t work[LW_MAX_PAGES][PATTERN_WORDS] __attribute__((aligned(4096)));

/* The kernel enters with %rsp at argc; hand the stack pointer to C. */
__asm__(".section .text.start, \"ax\"\n"
	".globl _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call lw_main\n"
	"1:	jmp 1b\n"
	".previous\n");

static int prefix(const char *s, const char *p, const char **rest)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	*rest = s;
	return 1;
}

/* Decimal or 0x-hex up to the next blank; returns `def` for anything malformed. */
static uint64_t number(const char *s, uint64_t def)
{
	size_t n = 0;
	uint64_t v;

	while (s[n] && s[n] != ' ')
		n++;
	return num_parse(s, n, &v) == 0 ? v : def;
}

struct lw_config {
	uint64_t pages, seed;
};

static struct lw_config parse_env(uint64_t *sp)
{
	uint64_t argc = sp[0];
	char **envp = (char **)(sp + 1 + argc + 1);
	struct lw_config c = { LW_DEF_PAGES, LW_DEF_SEED };
	const char *v;

	for (; *envp; envp++) {
		if (prefix(*envp, "lw_pages=", &v))
			c.pages = number(v, LW_DEF_PAGES);
		else if (prefix(*envp, "lw_seed=", &v))
			c.seed = number(v, LW_DEF_SEED);
	}
	if (c.pages == 0 || c.pages > LW_MAX_PAGES)
		c.pages = c.pages ? LW_MAX_PAGES : LW_DEF_PAGES;
	return c;
}

/* Verify page `idx` against round `round`, fold what was read into its
 * checksum contribution, and rewrite it for round + 1, in one pass. */
static unsigned step_page(volatile uint64_t *page, uint64_t seed, uint64_t idx,
			  uint64_t round, uint64_t *sum)
{
	uint64_t key = pattern_key(seed, idx, round);
	uint64_t next = pattern_key(seed, idx, round + 1);
	uint64_t fold = 0;
	unsigned bad = 0;

	for (unsigned i = 0; i < PATTERN_WORDS; i++) {
		uint64_t want = i ? pattern_word(key, i) : pattern_tag(idx, round);
		uint64_t got = page[i];

		bad += got != want;
		fold = pattern_fold(fold, got, i);
		page[i] = i ? pattern_word(next, i) : pattern_tag(idx, round + 1);
	}
	*sum = pattern_page_sum(fold, idx);
	return bad;
}

/* Publish one finished pass; see status.h for why round_end goes first. */
static void publish(uint64_t round, uint64_t mismatches, uint64_t checksum, uint64_t last_bad)
{
	lw_status.round_end = round;
	barrier();
	lw_status.mismatches = mismatches;
	lw_status.checksum = checksum;
	lw_status.last_bad = last_bad;
	barrier();
	lw_status.round = round;
}

__attribute__((noreturn, used)) void lw_main(uint64_t *sp)
{
	struct lw_config c = parse_env(sp);
	uint64_t mismatches = 0, last_bad = LW_NONE;

	lw_status.pages = c.pages;
	lw_status.seed = c.seed;
	lw_status.last_bad = LW_NONE;
	barrier();
	lw_status.magic = LW_MAGIC;

	for (uint64_t p = 0; p < c.pages; p++)
		pattern_fill(work[p], c.seed, p, 0);

	for (uint64_t round = 0;; round++) {
		uint64_t checksum = 0;

		for (uint64_t p = 0; p < c.pages; p++) {
			uint64_t sum;
			unsigned bad = step_page(work[p], c.seed, p, round, &sum);

			if (bad) {
				mismatches += bad;
				last_bad = p;
			}
			checksum += sum;
		}
		publish(round + 1, mismatches, checksum, last_bad);
	}
}
