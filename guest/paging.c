/* The kernel's own page tables: identity for 0-4 GiB, and the work area's
 * RAM at HIGH_VA so that V->P is not the identity and a VMM walking these
 * tables meets both 2 MiB and 4 KiB leaves. Everything is user-accessible:
 * CPL3 runs this image and reads boot data through the identity map. */
#include "kernel.h"

#define PTE_P   0x001ULL
#define PTE_RW  0x002ULL
#define PTE_US  0x004ULL
#define PTE_PWT 0x008ULL
#define PTE_PCD 0x010ULL
#define PTE_PS  0x080ULL
#define PTE_ALL (PTE_P | PTE_RW | PTE_US)
#define CHUNK   0x200000ULL
#define MMIO_START 0xc0000000ULL   /* the 32-bit hole: uncached */

/* Usable RAM from HIGH_PA on (one e820 entry), capped at HIGH_MAX and
 * rounded down to 2 MiB; 0 if HIGH_PA is not RAM. */
uint64_t paging_high_size(const struct boot_params *bp)
{
	unsigned n = bp->e820_entries;

	if (n > E820_MAX_ENTRIES_ZEROPAGE)
		n = E820_MAX_ENTRIES_ZEROPAGE;
	for (unsigned i = 0; i < n; i++) {
		const struct boot_e820_entry *e = &bp->e820_table[i];
		uint64_t end = e->addr + e->size;

		if (e->type != 1 || e->addr > HIGH_PA || end < HIGH_PA + CHUNK)
			continue;
		if (end > HIGH_PA + HIGH_MAX)
			end = HIGH_PA + HIGH_MAX;
		return (end - HIGH_PA) & ~(CHUNK - 1);
	}
	return 0;
}

static void map_identity(struct page_tables *pt)
{
	uint64_t *pd = &pt->id_pd[0][0];

	pt->pml4[0] = (uint64_t)pt->id_pdpt | PTE_ALL;
	for (unsigned i = 0; i < 4; i++)
		pt->id_pdpt[i] = (uint64_t)pt->id_pd[i] | PTE_ALL;
	for (uint64_t i = 0; i < 2048; i++) {
		uint64_t pa = i * CHUNK;

		pd[i] = pa | PTE_ALL | PTE_PS | (pa >= MMIO_START ? PTE_PCD | PTE_PWT : 0);
	}
}

static void map_high(struct page_tables *pt, uint64_t high_size)
{
	pt->pml4[(HIGH_VA >> 39) & 511] = (uint64_t)pt->hi_pdpt | PTE_ALL;
	pt->hi_pdpt[(HIGH_VA >> 30) & 511] = (uint64_t)pt->hi_pd | PTE_ALL;
	for (uint64_t c = 0; c < high_size / CHUNK; c++) {
		uint64_t pa = HIGH_PA + c * CHUNK;

		if (c < SMALL_CHUNKS && !(c & 1)) {
			uint64_t *t = pt->hi_pt[c / 2];

			for (uint64_t j = 0; j < 512; j++)
				t[j] = (pa + j * PAGE_SIZE) | PTE_ALL;
			pt->hi_pd[c] = (uint64_t)t | PTE_ALL;
		} else {
			pt->hi_pd[c] = pa | PTE_ALL | PTE_PS;
		}
	}
}

/* `pt` is zero (it lives in .bss); only present entries are written. */
void paging_build(struct page_tables *pt, uint64_t high_size)
{
	map_identity(pt);
	map_high(pt, high_size);
}
