/* The guest's V->P composed with our P->M, and the cache of the composition
 * (claims 6-9, 16, 26-27, 31-34). See include/vmswitch/mmu.h.
 *
 * The walker follows the SDM's long-mode paging rules (4-level and 5-level;
 * 4 KiB, 2 MiB and 1 GiB pages; reserved bits; U/S, R/W, XD with EFER.NXE,
 * CR0.WP, CR4.SMEP). It does not set accessed/dirty bits: vmswitch only looks
 * (monitor, debugger, hypercall arguments) and must not disturb the guest.
 * Not modelled: SMAP (needs RFLAGS.AC), protection keys, legacy paging. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/mem.h"
#include "vmswitch/mmu.h"
#include "vmswitch/util.h"
#include "tlb.h"

#define CR0_WP    (1ULL << 16)
#define CR0_PG    (1ULL << 31)
#define CR4_PAE   (1ULL << 5)
#define CR4_LA57  (1ULL << 12)
#define CR4_SMEP  (1ULL << 20)
#define EFER_LME  (1ULL << 8)
#define EFER_LMA  (1ULL << 10)
#define EFER_NXE  (1ULL << 11)

#define PTE_P   (1ULL << 0)
#define PTE_RW  (1ULL << 1)
#define PTE_US  (1ULL << 2)
#define PTE_A   (1ULL << 5)
#define PTE_D   (1ULL << 6)
#define PTE_PS  (1ULL << 7)
#define PTE_XD  (1ULL << 63)

#define PHYS_BITS_MAX 52u

const char *mmu_fault_name(enum mmu_fault f)
{
	switch (f) {
	case MMU_OK: return "ok";
	case MMU_FAULT_NOT_PRESENT: return "not present";
	case MMU_FAULT_RESERVED: return "reserved bit set";
	case MMU_FAULT_WRITE: return "write to read-only page";
	case MMU_FAULT_USER: return "user access to supervisor page";
	case MMU_FAULT_NX: return "fetch from execute-disable page";
	case MMU_FAULT_NONCANONICAL: return "non-canonical address (#GP)";
	case MMU_FAULT_NOT_RAM: return "not guest RAM";
	case MMU_FAULT_PAGING_OFF: return "paging off (gva == gpa)";
	case MMU_FAULT_SMEP: return "supervisor fetch from user page (SMEP)";
	case MMU_FAULT_UNSUPPORTED: return "legacy paging mode not supported";
	}
	return "unknown";
}

/* ---- the walker ---------------------------------------------------------- */

static unsigned phys_bits(const struct mmu_cpu *cpu)
{
	unsigned m = cpu->maxphyaddr;
	return (m == 0 || m > PHYS_BITS_MAX) ? PHYS_BITS_MAX : m;
}

/* Bits M-1:12: where entries hold frame addresses. */
static uint64_t addr_mask(const struct mmu_cpu *cpu)
{
	return ((1ULL << phys_bits(cpu)) - 1) & ~(PAGE_SIZE - 1);
}

static bool long_mode(const struct mmu_cpu *cpu)
{
	/* LMA is LME && PG; accept either so callers that only copy LME work. */
	return (cpu->efer & (EFER_LME | EFER_LMA)) && (cpu->cr4 & CR4_PAE);
}

static int levels_of(const struct mmu_cpu *cpu)
{
	return (cpu->cr4 & CR4_LA57) ? 5 : 4;
}

static bool canonical(uint64_t gva, int levels)
{
	unsigned top = levels == 5 ? 56 : 47;   /* highest translated bit */
	int64_t s = (int64_t)(gva << (63 - top)) >> (63 - top);
	return (uint64_t)s == gva;
}

static bool nxe(const struct mmu_cpu *cpu)
{
	return cpu->efer & EFER_NXE;
}

/* Bits of a present entry at `level` that must be zero. */
static uint64_t reserved_bits(const struct mmu_cpu *cpu, int level, uint64_t entry)
{
	uint64_t rsvd = ((1ULL << PHYS_BITS_MAX) - 1) & ~((1ULL << phys_bits(cpu)) - 1);
	if (!nxe(cpu))
		rsvd |= PTE_XD;
	if (level >= 4)
		rsvd |= PTE_PS;                  /* no pages at PML4/PML5 */
	else if (level == 3 && (entry & PTE_PS))
		rsvd |= 0x3fffe000ULL;           /* 1 GiB frame: bits 29:13 */
	else if (level == 2 && (entry & PTE_PS))
		rsvd |= 0x1fe000ULL;             /* 2 MiB frame: bits 20:13 */
	return rsvd;
}

/* The W/U/I bits of the error code for this access. */
static uint32_t access_bits(const struct mmu_cpu *cpu, unsigned access)
{
	uint32_t ec = 0;
	if (access & MMU_WRITE)
		ec |= PF_W;
	if (access & MMU_USER)
		ec |= PF_U;
	if ((access & MMU_EXEC) && (nxe(cpu) || (cpu->cr4 & CR4_SMEP)))
		ec |= PF_I;
	return ec;
}

/* Permission check on the combined rights of every level (SDM 4.6). */
static enum mmu_fault check_access(const struct mmu_cpu *cpu, unsigned perm,
				   unsigned access)
{
	bool user_page = perm & TLB_U;
	if (access & MMU_USER) {
		if (!user_page)
			return MMU_FAULT_USER;
		if ((access & MMU_WRITE) && !(perm & TLB_W))
			return MMU_FAULT_WRITE;
	} else {
		/* Supervisor writes to read-only pages fault only with WP. */
		if ((access & MMU_WRITE) && !(perm & TLB_W) && (cpu->cr0 & CR0_WP))
			return MMU_FAULT_WRITE;
		if ((access & MMU_EXEC) && user_page && (cpu->cr4 & CR4_SMEP))
			return MMU_FAULT_SMEP;
	}
	if ((access & MMU_EXEC) && (perm & TLB_NX))
		return MMU_FAULT_NX;
	return MMU_OK;
}

static int fail(struct mmu_result *r, enum mmu_fault f, int level, uint32_t ec)
{
	r->fault = f;
	r->fault_level = level;
	r->error_code = ec;
	return -1;
}

/* Read one 8-byte entry through P2M: the table may sit on a remapped page. */
static int read_entry(const struct mem *m, uint64_t gpa, uint64_t *mfn, uint64_t *val)
{
	if (mem_p2m(m, gpa >> PAGE_SHIFT, mfn) < 0)
		return -1;
	char *page = mem_mfn_hva(m, *mfn);
	if (!page)
		return -1;
	/* The guest may be rewriting it right now: one untorn load. */
	*val = __atomic_load_n((uint64_t *)(page + (gpa & (PAGE_SIZE - 1))), __ATOMIC_RELAXED);
	return 0;
}

/* gpa -> mfn -> host address: the P->M half of the composition. */
static int compose(const struct mem *m, struct mmu_result *r)
{
	if (mem_p2m(m, r->gpa >> PAGE_SHIFT, &r->mfn) < 0)
		return fail(r, MMU_FAULT_NOT_RAM, 0, 0);
	char *page = mem_mfn_hva(m, r->mfn);
	if (!page)
		return fail(r, MMU_FAULT_NOT_RAM, 0, 0);
	r->hva = page + (r->gpa & (PAGE_SIZE - 1));
	return 0;
}

static int walk_paging_off(const struct mem *m, struct mmu_result *r)
{
	r->gpa = r->gva;
	r->page_size = PAGE_SIZE;
	r->writable = r->user = true;
	if (compose(m, r) < 0)
		return -1;
	r->fault = MMU_FAULT_PAGING_OFF;
	return 0;
}

static unsigned perm_of(const struct mmu_result *r)
{
	return (r->writable ? TLB_W : 0) | (r->user ? TLB_U : 0) | (r->nx ? TLB_NX : 0);
}

int mmu_walk(const struct mem *m, const struct mmu_cpu *cpu, uint64_t gva,
	     unsigned access, struct mmu_result *r)
{
	memset(r, 0, sizeof(*r));
	r->gva = gva;
	if (!(cpu->cr0 & CR0_PG))
		return walk_paging_off(m, r);
	if (!long_mode(cpu))
		return fail(r, MMU_FAULT_UNSUPPORTED, 0, 0);
	int levels = levels_of(cpu);
	if (!canonical(gva, levels))
		return fail(r, MMU_FAULT_NONCANONICAL, 0, 0);   /* #GP: no entry involved */

	uint64_t amask = addr_mask(cpu), table = cpu->cr3 & amask;
	uint32_t ec = access_bits(cpu, access);
	r->writable = r->user = true;
	for (int level = levels; level >= 1; level--) {
		unsigned shift = PAGE_SHIFT + 9 * (unsigned)(level - 1);
		struct mmu_step *st = &r->steps[r->nsteps];
		st->level = level;
		st->entry_gpa = table + ((gva >> shift) & 511) * 8;
		if (read_entry(m, st->entry_gpa, &st->entry_mfn, &st->entry) < 0)
			return fail(r, MMU_FAULT_NOT_RAM, level, 0);
		r->nsteps++;
		uint64_t e = st->entry;
		if (!(e & PTE_P))
			return fail(r, MMU_FAULT_NOT_PRESENT, level, ec);
		if (e & reserved_bits(cpu, level, e))
			return fail(r, MMU_FAULT_RESERVED, level, ec | PF_P | PF_RSVD);
		r->writable &= !!(e & PTE_RW);
		r->user &= !!(e & PTE_US);
		r->nx |= nxe(cpu) && (e & PTE_XD);
		if (level == 1 || (e & PTE_PS)) {
			r->page_size = 1ULL << shift;
			r->gpa = (e & amask & ~(r->page_size - 1)) | (gva & (r->page_size - 1));
			break;
		}
		table = e & amask;
	}
	enum mmu_fault f = check_access(cpu, perm_of(r), access);
	if (f != MMU_OK)
		return fail(r, f, 0, ec | PF_P);
	return compose(m, r);
}

/* ---- the composed cache -------------------------------------------------- */

struct mmu {
	struct mem *mem;
	pthread_mutex_t lock;     /* guards tlb and gen; never held across mem calls */
	struct tlb *tlb;
	uint64_t gen;             /* bumped by every drop: a walk that raced one is not cached */
	struct mmu_stats st;      /* atomics; st.entries mirrors the table under lock */
};

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* mem's P2M listener: runs under mem's remap lock, so it only takes ours. */
static void on_p2m_change(void *ctx, uint64_t pfn)
{
	struct mmu *t = ctx;
	if (pfn == UINT64_MAX) {
		mmu_flush(t);
		return;
	}
	mmu_invalidate_pfn(t, pfn);
}

int mmu_create(struct mem *m, unsigned entries, struct mmu **out, struct err *e)
{
	struct mmu *t = calloc(1, sizeof(*t));
	if (!t)
		return err_set(e, ENOMEM, "allocating the translation cache");
	t->tlb = tlb_new(entries ? entries : 1024);
	if (!t->tlb) {
		free(t);
		return err_set(e, ENOMEM, "allocating a translation cache of %u entries", entries);
	}
	int rc = pthread_mutex_init(&t->lock, NULL);
	if (rc) {
		tlb_free(t->tlb);
		free(t);
		return err_set(e, rc, "initializing the translation cache lock");
	}
	t->mem = m;
	mem_set_listener(m, on_p2m_change, t);
	*out = t;
	return 0;
}

void mmu_destroy(struct mmu *t)
{
	if (!t)
		return;
	mem_set_listener(t->mem, NULL, NULL);
	pthread_mutex_destroy(&t->lock);
	tlb_free(t->tlb);
	free(t);
}

/* Called with t->lock held after every change to the table. */
static void note_entries(struct mmu *t)
{
	__atomic_store_n(&t->st.entries, tlb_count(t->tlb), __ATOMIC_RELAXED);
}

void mmu_invalidate_pfn(struct mmu *t, uint64_t pfn)
{
	pthread_mutex_lock(&t->lock);
	t->gen++;
	unsigned n = tlb_invalidate_pfn(t->tlb, pfn);
	note_entries(t);
	pthread_mutex_unlock(&t->lock);
	count(&t->st.invalidations, n);
}

void mmu_flush(struct mmu *t)
{
	pthread_mutex_lock(&t->lock);
	t->gen++;
	tlb_flush(t->tlb);
	note_entries(t);
	pthread_mutex_unlock(&t->lock);
	count(&t->st.flushes, 1);
}

void mmu_get_stats(const struct mmu *t, struct mmu_stats *out)
{
	out->hits = __atomic_load_n(&t->st.hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&t->st.misses, __ATOMIC_RELAXED);
	out->invalidations = __atomic_load_n(&t->st.invalidations, __ATOMIC_RELAXED);
	out->flushes = __atomic_load_n(&t->st.flushes, __ATOMIC_RELAXED);
	out->walks = __atomic_load_n(&t->st.walks, __ATOMIC_RELAXED);
	out->entries = __atomic_load_n(&t->st.entries, __ATOMIC_RELAXED);
}

/* Composition is cached only while vmswitch manages translation (claims 16,
 * 26-27: pass-through keeps no V->M state), and only for long-mode paging. */
static bool cacheable(const struct mmu *t, const struct mmu_cpu *cpu)
{
	enum mem_mode mode = mem_get_mode(t->mem);
	if (mode != MEM_VIRTUALIZED && mode != MEM_PARTIAL)
		return false;
	return (cpu->cr0 & CR0_PG) && long_mode(cpu);
}

static struct tlb_key key_of(const struct mmu_cpu *cpu, uint64_t gva)
{
	return (struct tlb_key){
		.root = cpu->cr3 & addr_mask(cpu),
		.vpn = gva >> PAGE_SHIFT,
		.ctl = (levels_of(cpu) == 5) | (nxe(cpu) ? 2u : 0u) | (phys_bits(cpu) << 2),
	};
}

/* A hit stands only if the guest has not rewritten the leaf entry since
 * (accessed/dirty bits aside: the CPU sets those behind our back). */
static bool leaf_unchanged(const struct mem *m, const struct tlb_val *v)
{
	uint64_t mfn, now;
	if (read_entry(m, v->leaf_gpa, &mfn, &now) < 0)
		return false;
	return ((now ^ v->leaf_entry) & ~(PTE_A | PTE_D)) == 0;
}

static void fill_from_cache(const struct mem *m, const struct tlb_val *v,
			    uint64_t gva, struct mmu_result *r)
{
	memset(r, 0, sizeof(*r));
	r->gva = gva;
	r->gpa = (v->pfn << PAGE_SHIFT) | (gva & (PAGE_SIZE - 1));
	r->mfn = v->mfn;
	r->hva = (char *)mem_mfn_hva(m, v->mfn) + (gva & (PAGE_SIZE - 1));
	r->page_size = v->page_size;
	r->writable = v->perm & TLB_W;
	r->user = v->perm & TLB_U;
	r->nx = v->perm & TLB_NX;
	r->cached = true;
}

/* Look k up; *gen is the drop generation the lookup saw, so that a walk
 * done after a miss is cached only if nothing was dropped meanwhile. */
static bool lookup(struct mmu *t, const struct tlb_key *k, struct tlb_val *v, uint64_t *gen)
{
	pthread_mutex_lock(&t->lock);
	bool hit = tlb_lookup(t->tlb, k, v);
	*gen = t->gen;
	pthread_mutex_unlock(&t->lock);
	return hit;
}

static void forget(struct mmu *t, const struct tlb_key *k)
{
	pthread_mutex_lock(&t->lock);
	tlb_remove(t->tlb, k);
	note_entries(t);
	pthread_mutex_unlock(&t->lock);
}

static void insert(struct mmu *t, const struct tlb_key *k, const struct mmu_result *r,
		   uint64_t gen)
{
	const struct mmu_step *leaf = &r->steps[r->nsteps - 1];
	struct tlb_val v = {
		.pfn = r->gpa >> PAGE_SHIFT, .mfn = r->mfn, .page_size = r->page_size,
		.leaf_gpa = leaf->entry_gpa, .leaf_entry = leaf->entry, .perm = perm_of(r),
	};
	pthread_mutex_lock(&t->lock);
	if (t->gen == gen) {
		tlb_insert(t->tlb, k, &v);
		note_entries(t);
	}
	pthread_mutex_unlock(&t->lock);
}

int mmu_translate(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		  unsigned access, struct mmu_result *r)
{
	if (!cacheable(t, cpu)) {
		count(&t->st.walks, 1);
		return mmu_walk(t->mem, cpu, gva, access, r);
	}
	struct tlb_key k = key_of(cpu, gva);
	struct tlb_val v;
	uint64_t gen;
	if (lookup(t, &k, &v, &gen)) {
		/* A stale entry, or one this access would fault on, goes back to
		 * a real walk so the caller gets the precise fault and steps. */
		if (leaf_unchanged(t->mem, &v) && check_access(cpu, v.perm, access) == MMU_OK) {
			fill_from_cache(t->mem, &v, gva, r);
			count(&t->st.hits, 1);
			return 0;
		}
		forget(t, &k);
	}
	count(&t->st.misses, 1);
	count(&t->st.walks, 1);
	if (mmu_walk(t->mem, cpu, gva, access, r) < 0)
		return -1;
	insert(t, &k, r, gen);
	return 0;
}

/* ---- copies -------------------------------------------------------------- */

static int virt_fault(struct err *e, const char *what, const struct mmu_result *r)
{
	if (r->fault == MMU_FAULT_NOT_RAM && r->fault_level == 0)
		return err_set(e, EFAULT, "%s gva 0x%llx: gpa 0x%llx is not guest RAM", what,
			       (unsigned long long)r->gva, (unsigned long long)r->gpa);
	return err_set(e, EFAULT, "%s gva 0x%llx: %s at level %d (error code 0x%x)", what,
		       (unsigned long long)r->gva, mmu_fault_name(r->fault), r->fault_level,
		       r->error_code);
}

/* Apply fn to each piece of [gva, gva+len) that lies in one 4 KiB page. */
static int copy_virt(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva, char *buf,
		     size_t len, bool write, struct err *e)
{
	while (len) {
		struct mmu_result r;
		size_t chunk = MIN(len, PAGE_SIZE - (gva & (PAGE_SIZE - 1)));
		if (mmu_translate(t, cpu, gva, write ? MMU_WRITE : 0, &r) < 0)
			return virt_fault(e, write ? "writing" : "reading", &r);
		if (write)
			memcpy(r.hva, buf, chunk);
		else
			memcpy(buf, r.hva, chunk);
		gva += chunk;
		buf += chunk;
		len -= chunk;
	}
	return 0;
}

int mmu_read_virt(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		  void *buf, size_t len, struct err *e)
{
	return copy_virt(t, cpu, gva, buf, len, false, e);
}

int mmu_write_virt(struct mmu *t, const struct mmu_cpu *cpu, uint64_t gva,
		   const void *buf, size_t len, struct err *e)
{
	return copy_virt(t, cpu, gva, (char *)buf, len, true, e);
}

int mmu_read_phys(const struct mem *m, uint64_t gpa, void *buf, size_t len,
		  struct err *e)
{
	char *out = buf;
	while (len) {
		uint64_t mfn;
		size_t chunk = MIN(len, PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
		char *page;
		if (mem_p2m(m, gpa >> PAGE_SHIFT, &mfn) < 0 || !(page = mem_mfn_hva(m, mfn)))
			return err_set(e, EFAULT, "reading gpa 0x%llx: not guest RAM",
				       (unsigned long long)gpa);
		memcpy(out, page + (gpa & (PAGE_SIZE - 1)), chunk);
		gpa += chunk;
		out += chunk;
		len -= chunk;
	}
	return 0;
}
