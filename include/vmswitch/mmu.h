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

/* The paging-relevant part of a vCPU's state. */
struct mmu_cpu {
	uint64_t cr0, cr3, cr4, efer;
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
};

struct mmu_result {
	uint64_t gva, gpa, mfn;    /* mfn of the page holding gpa */
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

int mmu_create(struct mem *m, unsigned entries, struct mmu **out, struct err *e);
void mmu_destroy(struct mmu *t);

/* Cached translation (falls back to mmu_walk on a miss). While memory is
 * pass-through no composition is done: the cache stays empty. */
int mmu_translate(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		  unsigned access, struct mmu_result *r);
/* Copy guest-virtual memory, page by page, across remapped pages. */
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
	uint64_t hits, misses, invalidations, flushes, walks;
};
void mmu_get_stats(const struct mmu *t, struct mmu_stats *out);

#endif
