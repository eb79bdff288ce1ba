/* The flat GDT and identity page tables the 64-bit boot protocol requires:
 * "the kernel, the zero page and the command line identity-mapped". We map
 * all of 0-4 GiB with 2 MiB pages (no 1 GiB-page CPUID dependency). */
#include <string.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#define PTE_P   0x1ULL
#define PTE_RW  0x2ULL
#define PTE_PS  0x80ULL
#define ENTRIES 512

void boot_gdt_build(uint64_t gdt[BOOT_GDT_ENTRIES])
{
	/* 0x00 and 0x08 stay null: the protocol fixes CS at 0x10, DS at 0x18. */
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[BOOT_CS / 8] = BOOT_GDT_CODE64;
	gdt[BOOT_DS / 8] = BOOT_GDT_DATA;
}

static void put(uint8_t *page, unsigned idx, uint64_t val)
{
	memcpy(page + idx * 8, &val, 8); /* x86 host: little-endian like the guest */
}

void boot_pagetables_build(uint8_t buf[BOOT_PT_BYTES])
{
	uint8_t *pml4 = buf, *pdpt = buf + PAGE_SIZE, *pd = buf + 2 * PAGE_SIZE;
	unsigned npd = BOOT_PT_IDENTITY / GiB;

	memset(buf, 0, BOOT_PT_BYTES);
	put(pml4, 0, BOOT_PDPT_GPA | PTE_P | PTE_RW);
	for (unsigned i = 0; i < npd; i++) {
		put(pdpt, i, (BOOT_PD_GPA + i * PAGE_SIZE) | PTE_P | PTE_RW);
		for (unsigned j = 0; j < ENTRIES; j++)
			put(pd + i * PAGE_SIZE, j,
			    (i * GiB + j * HUGE_SIZE) | PTE_P | PTE_RW | PTE_PS);
	}
}
