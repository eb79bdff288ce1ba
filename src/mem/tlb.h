/* Private to mem/mmu.c: the composed-translation cache as a plain data
 * structure (no locking, no mem calls), so it can be tested on its own.
 *
 * A set-associative table keyed by (page-table root, virtual page, walk
 * control bits), plus a reverse index PFN -> entries (chains threaded through
 * the slots) so that dropping the translations of one moved PFN costs the
 * length of one chain, not a scan of the table. */
#ifndef VMSWITCH_MEM_TLB_H
#define VMSWITCH_MEM_TLB_H

#include <stdbool.h>
#include <stdint.h>

struct tlb_key {
	uint64_t root;   /* CR3 page-table base */
	uint64_t vpn;    /* gva >> 12 */
	uint32_t ctl;    /* what changes the walk itself: LA57, NXE, MAXPHYADDR */
};

#define TLB_W  0x1u   /* writable at every level */
#define TLB_U  0x2u   /* user at every level */
#define TLB_NX 0x4u   /* execute-disable somewhere (NXE on) */

struct tlb_val {
	uint64_t pfn, mfn;        /* the 4 KiB guest-physical and machine frames */
	uint64_t page_size;
	uint64_t leaf_gpa;        /* where the leaf entry lives, to revalidate a hit */
	uint64_t leaf_entry;      /* its value when cached */
	unsigned perm;            /* TLB_* */
};

struct tlb;

/* capacity is rounded up to a power of two (at least the associativity). */
struct tlb *tlb_new(unsigned capacity);
void tlb_free(struct tlb *t);
unsigned tlb_capacity(const struct tlb *t);
unsigned tlb_count(const struct tlb *t);

bool tlb_lookup(const struct tlb *t, const struct tlb_key *k, struct tlb_val *out);
void tlb_insert(struct tlb *t, const struct tlb_key *k, const struct tlb_val *v);
/* Drop one translation; returns whether it was there. */
bool tlb_remove(struct tlb *t, const struct tlb_key *k);
/* Drop every translation whose pfn is `pfn`; returns how many. */
unsigned tlb_invalidate_pfn(struct tlb *t, uint64_t pfn);
void tlb_flush(struct tlb *t);

#endif
