/* bench_mmu: cost of composing the guest's V->P with our P->M.
 *
 * Builds 4-level page tables in the guest memory of a real struct mem,
 * mapping 64 MiB of virtual space with 4 KiB pages, then measures:
 *   - uncached walks per second (mmu_walk: 4 entries read through P2M),
 *   - mmu_translate while pass-through (no cache by design),
 *   - mmu_translate while virtualized, for a working set that fits the cache,
 *   - hit rates over synthetic access patterns (hot/cold mix, sequential).
 * Usage: bench_mmu [iterations] [cache entries]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/mem.h"
#include "vmswitch/mmu.h"
#include "vmswitch/util.h"

#define PTE_P 1ULL
#define PTE_RW 2ULL
#define ADDR 0x000ffffffffff000ULL
#define GVA_BASE 0x7f0000000000ULL
#define NPAGES 16384ULL               /* 64 MiB of virtual space */
#define PT_BASE (1 * MiB)
#define DATA (64 * MiB)

struct bench {
	struct mem *m;
	struct mmu *t;
	struct mmu_cpu cpu;
	uint64_t next_table;
	uint64_t iters;
};

static uint64_t new_table(struct bench *b)
{
	uint64_t g = b->next_table;
	b->next_table += PAGE_SIZE;
	memset(mem_gpa_hva(b->m, g), 0, PAGE_SIZE);
	return g;
}

static void map4k(struct bench *b, uint64_t gva, uint64_t gpa)
{
	uint64_t table = b->cpu.cr3;
	for (int level = 4; level > 1; level--) {
		uint64_t *e = mem_gpa_hva(b->m, table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8);
		if (!(*e & PTE_P))
			*e = new_table(b) | PTE_P | PTE_RW;
		table = *e & ADDR;
	}
	uint64_t *e = mem_gpa_hva(b->m, table + ((gva >> 12) & 511) * 8);
	*e = gpa | PTE_P | PTE_RW;
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Page index of the next access for each pattern. */
enum pattern { UNIFORM_SMALL, HOT_COLD, SEQUENTIAL, UNIFORM_ALL };
static const char *pattern_name[] = {
	"uniform over 512 pages", "90% to 256 hot pages, 10% uniform over 16384",
	"sequential, 64 accesses per page", "uniform over 16384 pages",
};

static uint64_t next_page(enum pattern p, uint64_t i, uint64_t *s)
{
	switch (p) {
	case UNIFORM_SMALL: return rng(s) % 512;
	case HOT_COLD: return rng(s) % 10 ? rng(s) % 256 : rng(s) % NPAGES;
	case SEQUENTIAL: return (i / 64) % NPAGES;
	case UNIFORM_ALL: return rng(s) % NPAGES;
	}
	return 0;
}

/* The machine is shared: each figure is the best of REPS runs. */
#define REPS 5

static int run_walks(struct bench *b)
{
	uint64_t s = 1, sum = 0, best = UINT64_MAX, n = b->iters / REPS;
	struct mmu_result r;
	for (int rep = 0; rep < REPS; rep++) {
		uint64_t t0 = now_ns();
		for (uint64_t i = 0; i < n; i++) {
			uint64_t gva = GVA_BASE + (rng(&s) % NPAGES) * PAGE_SIZE;
			if (mmu_walk(b->m, &b->cpu, gva, 0, &r) < 0)
				return -1;
			sum += r.mfn;
		}
		best = MIN(best, now_ns() - t0);
	}
	printf("mmu_walk      uncached     %7.2f M/s  %6.1f ns each  [%llx]\n",
	       (double)n / (double)best * 1e3, (double)best / (double)n,
	       (unsigned long long)sum & 0xf);
	return 0;
}

static int run_pattern(struct bench *b, const char *mode, enum pattern p)
{
	struct mmu_stats s0, s1;
	struct mmu_result r;
	uint64_t s = 7, sum = 0, best = UINT64_MAX, n = b->iters / REPS;
	mmu_flush(b->t);
	mmu_get_stats(b->t, &s0);
	for (int rep = 0; rep < REPS; rep++) {
		uint64_t t0 = now_ns();
		for (uint64_t i = 0; i < n; i++) {
			uint64_t gva = GVA_BASE + next_page(p, i, &s) * PAGE_SIZE + (i & 0xff8);
			if (mmu_translate(b->t, &b->cpu, gva, 0, &r) < 0)
				return -1;
			sum += r.mfn;
		}
		best = MIN(best, now_ns() - t0);
	}
	mmu_get_stats(b->t, &s1);
	uint64_t hits = s1.hits - s0.hits, misses = s1.misses - s0.misses;
	printf("mmu_translate %-12s %7.2f M/s  %6.1f ns each  hit rate %5.1f%%  %s  [%llx]\n",
	       mode, (double)n / (double)best * 1e3, (double)best / (double)n,
	       hits + misses ? 100.0 * (double)hits / (double)(hits + misses) : 0.0,
	       pattern_name[p], (unsigned long long)sum & 0xf);
	return 0;
}

static int setup(struct bench *b, unsigned entries, struct err *e)
{
	struct mem_config cfg = {.ram_size = 256 << 20, .spare_size = 16 << 20,
				 .backmap = BACKMAP_LIST, .hugepages = HUGEPAGES_OFF};
	if (mem_create(&cfg, &(struct mem_ops){0}, &b->m, e) < 0)
		return -1;
	if (mmu_create(b->m, entries, &b->t, e) < 0)
		return -1;
	b->next_table = PT_BASE;
	b->cpu = (struct mmu_cpu){.cr0 = (1ULL << 31) | (1ULL << 16) | 1, .cr4 = 1ULL << 5,
				  .efer = (1ULL << 8) | (1ULL << 10) | (1ULL << 11)};
	b->cpu.cr3 = new_table(b);
	for (uint64_t i = 0; i < NPAGES; i++)   /* a scattered V->P, as an OS would have */
		map4k(b, GVA_BASE + i * PAGE_SIZE, DATA + ((i * 7919) % NPAGES) * PAGE_SIZE);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {.iters = argc > 1 ? strtoull(argv[1], NULL, 0) : 2000000};
	unsigned entries = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 1024;
	struct err e = {0};
	if (setup(&b, entries, &e) < 0) {
		fprintf(stderr, "bench_mmu: %s\n", e.msg);
		return 1;
	}
	printf("bench_mmu: %llu iterations, cache of %u entries, 4-level tables, %llu mapped pages\n",
	       (unsigned long long)b.iters, entries, (unsigned long long)NPAGES);
	int rc = run_walks(&b);
	rc |= run_pattern(&b, "pass-through", UNIFORM_SMALL);
	if (mem_virtualize(b.m, 0, 0, &e) < 0) {
		fprintf(stderr, "bench_mmu: virtualize: %s\n", e.msg);
		return 1;
	}
	rc |= run_walks(&b);
	for (enum pattern p = UNIFORM_SMALL; p <= UNIFORM_ALL; p++)
		rc |= run_pattern(&b, "virtualized", p);
	/* Scatter every page over machine memory: entries and data are then
	 * read from scattered frames. */
	if (mem_scramble(b.m, 42, 0, &e) < 0)
		fprintf(stderr, "bench_mmu: scramble: %s (skipped)\n", e.msg);
	else
		rc |= run_walks(&b) | run_pattern(&b, "scrambled", UNIFORM_SMALL);
	if (rc)
		fprintf(stderr, "bench_mmu: a translation faulted\n");
	mmu_destroy(b.t);
	mem_destroy(b.m);
	return rc ? 1 : 0;
}
