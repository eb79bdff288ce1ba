/* mem/mmu.c: the guest's V->P (its page tables) composed with our P->M
 * (claims 6-9, 16, 26-27, 31-34).
 *
 * The walker reads every page-table entry through P2M, since a page table can
 * live on a remapped page, and reports each step or a precise fault. Composed
 * translations are cached in a small software TLB keyed by (CR3, virtual
 * page); the cache listens to P2M changes (mem_set_listener) and drops entries
 * whose physical page moved, and drops everything on devirtualize.
 */
#ifndef VMSWITCH_MMU_H
#define VMSWITCH_MMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmswitch/err.h"

struct mem;

/* The paging-relevant part of a vCPU's state. Long-mode paging (4- and
 * 5-level) is walked; CR0.PG clear means gva == gpa; legacy 32-bit and PAE
 * paging are reported as MMU_FAULT_UNSUPPORTED. */
struct mmu_cpu {
	uint64_t cr0, cr3, cr4, efer;
	unsigned maxphyaddr;  /* CPUID 0x80000008 EAX[7:0]; 0 means 52 */
};

/* Access kinds, combined: what the walk must permit. */
#define MMU_WRITE 0x1u
#define MMU_USER  0x2u
#define MMU_EXEC  0x4u

/* Page-fault error-code bits, as the CPU reports them. */
#define PF_P    0x01u
#define PF_W    0x02u
#define PF_U    0x04u
#define PF_RSVD 0x08u
#define PF_I    0x10u

struct mmu_step {
	int level;            /* 5..1: PML5, PML4, PDPT, PD, PT */
	uint64_t entry_gpa;   /* guest-physical address of the entry */
	uint64_t entry_mfn;   /* machine frame holding it */
	uint64_t entry;       /* its value */
};

enum mmu_fault {
	MMU_OK = 0,
	MMU_FAULT_NOT_PRESENT,
	MMU_FAULT_RESERVED,
	MMU_FAULT_WRITE,
	MMU_FAULT_USER,
	MMU_FAULT_NX,
	MMU_FAULT_NONCANONICAL,   /* #GP, not #PF */
	MMU_FAULT_NOT_RAM,        /* an entry points outside guest RAM */
	MMU_FAULT_PAGING_OFF,     /* CR0.PG clear: gva == gpa, not a fault */
	MMU_FAULT_SMEP,           /* supervisor fetch from a user page, CR4.SMEP */
	MMU_FAULT_UNSUPPORTED,    /* legacy (non-long-mode) paging */
};

/* Outcome of a translation. On success fault is MMU_OK (or
 * MMU_FAULT_PAGING_OFF, which is informational: gpa == gva). On a fault the
 * steps read so far stay filled; fault_level is the level of the entry that
 * faulted, 0 when the data page itself is at fault (a permission fault or a
 * gpa outside RAM, for which gpa stays filled). error_code is what the CPU
 * would push with #PF (0 for #GP and for MMU_FAULT_NOT_RAM). A cached answer
 * carries no steps (nsteps == 0): use mmu_walk to show them. */
struct mmu_result {
	uint64_t gva, gpa, mfn;    /* mfn of the 4 KiB frame holding gpa */
	void *hva;                 /* host address of the gva byte */
	uint64_t page_size;        /* 4 KiB, 2 MiB or 1 GiB */
	bool writable, user, nx;   /* effective permissions */
	int nsteps;
	struct mmu_step steps[5];
	enum mmu_fault fault;
	int fault_level;           /* level of the entry that faulted */
	uint32_t error_code;       /* PF_* bits the CPU would push */
	bool cached;               /* answered from the composed cache */
};

const char *mmu_fault_name(enum mmu_fault f);

/* One uncached walk: every step, or the fault. Returns 0 when translated,
 * -1 on a fault (r->fault says which). */
int mmu_walk(const struct mem *m, const struct mmu_cpu *cpu, uint64_t gva,
	     unsigned access, struct mmu_result *r);

struct mmu;  /* the composed-translation cache */

/* entries: cache capacity (rounded up to a power of two, 0 = 1024). Registers
 * the cache as mem's P2M listener; mmu_destroy unregisters it. */
int mmu_create(struct mem *m, unsigned entries, struct mmu **out, struct err *e);
void mmu_destroy(struct mmu *t);

/* Cached translation (falls back to mmu_walk on a miss). While memory is
 * pass-through no composition is done: the cache stays empty. A hit re-reads
 * the leaf entry, so a guest that rewrote it is never answered stale; like a
 * real TLB, edits to upper-level entries are seen after mmu_flush (call it
 * when a vCPU's CR3 is seen to change). No accessed/dirty bits are set. */
int mmu_translate(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		  unsigned access, struct mmu_result *r);
/* Copy guest-virtual memory, page by page, across remapped pages, as
 * supervisor reads / writes (CR0.WP applies). -1 with *e on a fault; on a
 * write fault the pages before the faulting one have been written. */
int mmu_read_virt(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		  void *buf, size_t len, struct err *e);
int mmu_write_virt(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		   const void *buf, size_t len, struct err *e);
/* Copy guest-physical memory (through P2M). */
int mmu_read_phys(const struct mem *m, uint64_t gpa, void *buf, size_t len,
		  struct err *e);

void mmu_invalidate_pfn(struct mmu *t, uint64_t pfn);
void mmu_flush(struct mmu *t);   /* on guest CR3 change / devirtualize */

struct mmu_stats {
	uint64_t hits, misses;
	uint64_t invalidations;   /* cached translations dropped because their PFN moved */
	uint64_t flushes;         /* whole-cache drops (mmu_flush, devirtualize) */
	uint64_t walks;           /* page-table walks done by mmu_translate */
	uint64_t entries;         /* translations cached right now */
};
void mmu_get_stats(const struct mmu *t, struct mmu_stats *out);

#endif
