/* CPL0 entry points: build the page tables and descriptor tables, then
 * leave for CPL3 and never come back (except through an exception). */
#include "kernel.h"

#define CR4_TSD  (1ULL << 2)
#define CR4_PAE  (1ULL << 5)
#define CR4_PGE  (1ULL << 7)
#define CR4_SMEP (1ULL << 20)
#define CR4_SMAP (1ULL << 21)
#define CR4_PKE  (1ULL << 22)
#define CR4_CET  (1ULL << 23)

extern char kstacks[], ustacks[];

/* The whole CPL0 state; .bss, cleared by startup_64. */
static struct kernel kernel;

uint64_t kstack_top(unsigned cpu)
{
	return (uint64_t)kstacks + (uint64_t)(cpu + 1) * KSTACK_SIZE;
}

uint64_t ustack_top(unsigned cpu)
{
	return (uint64_t)ustacks + (uint64_t)(cpu + 1) * USTACK_SIZE;
}

/* CR4: PAE; no SMEP/SMAP/PKE/CET (CPL0 runs on user pages: one image for
 * both levels), no TSD (CPL3 reads the TSC), no PGE (one address space).
 * The rest (e.g. LA57, which cannot change in long mode) stays. */
static void load_paging(uint64_t cr3)
{
	uint64_t cr4;

	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 = (cr4 & ~(CR4_TSD | CR4_PGE | CR4_SMEP | CR4_SMAP | CR4_PKE | CR4_CET)) | CR4_PAE;
	__asm__ volatile("mov %0, %%cr4" :: "r"(cr4) : "memory");
	__asm__ volatile("mov %0, %%cr3" :: "r"(cr3) : "memory");
}

void kernel_main(struct boot_params *bp)
{
	struct kernel *k = &kernel;

	k->info.bp = bp;
	k->info.high_size = paging_high_size(bp);
	paging_build(&k->pt, k->info.high_size);
	k->info.cr3 = (uint64_t)k->pt.pml4;
	load_paging(k->info.cr3);
	idt_build(k->idt);
	cpu_load(k, 0);
	/* -8: enter as if called, so the ABI's stack alignment holds. */
	enter_user(user_main, ustack_top(0) - 8, (uint64_t)&k->info);
}

void ap_kernel_main(unsigned cpu)
{
	if (cpu == 0 || cpu >= MAX_CPUS)
		for (;;)
			__asm__ volatile("cli; hlt");
	load_paging(kernel.info.cr3);
	cpu_load(&kernel, cpu);
	enter_user(user_ap_main, ustack_top(cpu) - 8, cpu);
}
