/* mem/: machine memory, the physical-to-machine map and the switch between
 * pass-through and virtualized memory (claims 1-5, 10, 12-25).
 *
 * mem/ knows nothing about vCPUs or devices. The VM gives it callbacks to
 * register memslots and to pause/resume the vCPUs; everything else (P2M, back
 * map, remapping, write protection) lives here and is testable without KVM:
 * a thread writing through mem_gpa_hva() stands in for a vCPU.
 *
 * Addresses: PFN = guest-physical address >> 12, MFN = memfd offset >> 12.
 * The identity slot layout (claim 15) makes GPA == memfd offset for every RAM
 * page: RAM below the 32-bit hole starts at PFN 0, RAM above 4 GiB at PFN
 * 0x100000, and the memfd is sparse, so the hole costs nothing. Identity is
 * literally mfn == pfn. Machine memory is at least as large as physical
 * memory (claim 15): `spare` extra machine frames sit right after the last
 * RAM page; they are the free frames that migrate/evacuate/devirtualize use.
 *
 * Every function returns 0 or -1 with *e filled; on -1 nothing changed
 * (P2M consistent, guest bytes intact).
 */
#ifndef VMSWITCH_MEM_H
#define VMSWITCH_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmswitch/err.h"

#define MEM_MAX_REGIONS 2

enum mem_mode {
	MEM_PASSTHROUGH,     /* P2M identity, no per-page state */
	MEM_VIRTUALIZING,    /* transient, inside mem_virtualize */
	MEM_VIRTUALIZED,     /* all RAM virtualized */
	MEM_PARTIAL,         /* some ranges virtualized, the rest pass-through */
	MEM_DEVIRTUALIZING,  /* remap in progress */
};

enum backmap_kind { BACKMAP_LIST, BACKMAP_REFCOUNT, BACKMAP_SEARCH };
enum hugepages_mode { HUGEPAGES_OFF, HUGEPAGES_AUTO, HUGEPAGES_REQUIRED };

/* Where guest RAM goes. Filled by mem_layout() from the RAM size. */
struct mem_region {
	uint64_t gpa;        /* first guest-physical address */
	uint64_t size;       /* bytes, multiple of 2 MiB */
	void *hva;           /* host-virtual window (valid after mem_create) */
};

struct mem_layout {
	unsigned nr;
	struct mem_region r[MEM_MAX_REGIONS];
};

/* Low RAM ends at the 32-bit MMIO hole. */
#define MEM_HOLE_START 0xC0000000ULL  /* 3 GiB */
#define MEM_HIGH_START 0x100000000ULL /* 4 GiB */

/* Split `ram` bytes into at most two regions around the hole. */
int mem_layout(uint64_t ram, struct mem_layout *out, struct err *e);

struct mem_ops {
	void *ctx;
	/* Register one window as KVM memslot `slot` (called once per region at
	 * create; never again: the window's mapping changes, not the slot). */
	int (*set_slot)(void *ctx, unsigned slot, uint64_t gpa, uint64_t size,
			void *hva, struct err *e);
	/* Stop every vCPU outside guest mode / let them run again. Optional
	 * (NULL in unit tests). Used for paused-batch remapping. */
	int (*pause)(void *ctx);
	void (*resume)(void *ctx);
};

struct mem_config {
	uint64_t ram_size;
	uint64_t spare_size;     /* extra machine memory beyond RAM (free frames) */
	enum backmap_kind backmap;
	enum hugepages_mode hugepages;
	/* How devirtualize and scramble protect the pages they copy. By default
	 * (both false), while no page is shared, a whole devirtualize unmaps the
	 * pages it moves (userfaultfd minor faults bring back any the guest
	 * touches) and other bulk moves pause all vCPUs for each batch
	 * (ops.pause; each batch sized to keep its pause under a millisecond);
	 * with shared pages they use userfaultfd write protection. protect_by_pause:
	 * paused batches always, even with shared pages, and never unmap;
	 * protect_by_wp: always per-page uffd write protection, never pause.
	 * migrate, share, copy-on-write and evacuate always use uffd write
	 * protection (one page: cheaper than stopping every vCPU). */
	bool protect_by_pause;
	bool protect_by_wp;
};

/* Listener for P2M changes (the composed-translation cache). Called with
 * the remap lock held; must not call back into mem. pfn == UINT64_MAX means
 * "everything" (devirtualize done: drop all composed translations). */
typedef void (*mem_p2m_listener)(void *ctx, uint64_t pfn);

struct mem;

int mem_create(const struct mem_config *cfg, const struct mem_ops *ops,
	       struct mem **out, struct err *e);
void mem_destroy(struct mem *m);

const struct mem_layout *mem_get_layout(const struct mem *m);
void mem_set_listener(struct mem *m, mem_p2m_listener fn, void *ctx);
/* Progress of long operations: called (with the remap lock held; must not
 * call into mem) at most every 200 ms with the pages moved so far since
 * mem_set_progress. fn == NULL turns it off. */
typedef void (*mem_progress_fn)(void *ctx, uint64_t pages_moved);
void mem_set_progress(struct mem *m, mem_progress_fn fn, void *ctx);

/* Mode switches. [first, end) are PFN ranges; end == 0 means "all RAM". */
int mem_virtualize(struct mem *m, uint64_t first, uint64_t end, struct err *e);
int mem_devirtualize(struct mem *m, uint64_t first, uint64_t end, struct err *e);
/* guest_first: when devirtualize unmaps (lazy.c), unmap the chunks the
 * guest touched lately last. Its demand faults then rarely wait for another
 * chunk's unmapping, so it stalls far less, but it keeps its CPU and the
 * devirtualize takes longer on a busy host (README, Benchmarks). */
struct mem_devirt_opts {
	bool guest_first;
};
int mem_devirtualize_with(struct mem *m, uint64_t first, uint64_t end,
			  const struct mem_devirt_opts *o, struct err *e);

/* P2M changes while virtualized (claim 5). Contents are preserved.
 * migrate: mfn must be a free frame. scramble: count 0 = every unshared
 * virtualized page; needs one free frame. share: the pages must be identical
 * (as KSM merges them), so sharing never changes what the guest reads; both
 * stay write-protected until a write copies one of them. evacuate: every
 * page on [mfn_first, mfn_end) moves elsewhere and the frames are retired. */
int mem_migrate(struct mem *m, uint64_t pfn, uint64_t mfn, struct err *e);
int mem_scramble(struct mem *m, uint64_t seed, uint64_t count, struct err *e);
int mem_share(struct mem *m, uint64_t pfn1, uint64_t pfn2, struct err *e);
int mem_evacuate(struct mem *m, uint64_t mfn_first, uint64_t mfn_end, struct err *e);
/* Evacuated frames stay retired (failing memory): nothing maps them and
 * devirtualize refuses PFNs whose own frame is retired. Unretire returns the
 * exact range given to mem_evacuate to service (the memory was replaced). */
int mem_unretire(struct mem *m, uint64_t mfn_first, uint64_t mfn_end, struct err *e);

/* Queries. */
enum mem_mode mem_get_mode(const struct mem *m);
const char *mem_mode_name(enum mem_mode mode);
/* Virtualized PFN ranges, up to max; returns how many exist. */
size_t mem_virt_ranges(const struct mem *m, uint64_t (*ranges)[2], size_t max);
/* P2M lookup; works in every mode (identity in pass-through). -1 if pfn is not RAM. */
int mem_p2m(const struct mem *m, uint64_t pfn, uint64_t *mfn);
/* PFNs mapping to mfn (through the configured back-map strategy). */
int mem_backmap(struct mem *m, uint64_t mfn, uint64_t *pfns, size_t max,
		size_t *n, struct err *e);
/* Host address of a guest-physical byte (through the window, so it follows
 * P2M); NULL if gpa is not RAM. */
void *mem_gpa_hva(const struct mem *m, uint64_t gpa);
/* Host address of a machine byte (the machine view of the memfd). */
void *mem_mfn_hva(const struct mem *m, uint64_t mfn);
uint64_t mem_ram_pages(const struct mem *m);

struct mem_p2m_summary {
	uint64_t pages, identity, remapped, shared_frames, free_frames;
};
void mem_p2m_summary(struct mem *m, struct mem_p2m_summary *s);

struct mem_info {
	uint64_t page_size;       /* backing page size of the windows */
	bool hugepages;           /* 2 MiB backing in effect */
	const char *backing;      /* "hugetlb", "shmem-thp", "4k" */
	const char *backmap;      /* "list", "refcount", "search" */
	uint64_t vmas;            /* mappings currently making up the windows */
	uint64_t monitor_bytes;   /* bytes of per-page state (P2M + back map) */
};
void mem_info(const struct mem *m, struct mem_info *out);

struct mem_stats {
	uint64_t virtualizations, devirtualizations;
	uint64_t skipped, direct, indirect;   /* devirtualize page counts */
	uint64_t bytes_copied;
	uint64_t holes_moved;                 /* never-written pages moved without copying */
	uint64_t resident_bytes;              /* machine memory allocated (written frames) */
	uint64_t migrations, shares, cow_breaks, evacuated;
	uint64_t unshared;                    /* sharers given frames of their own by devirtualize */
	/* Longest a vCPU could wait: a page/batch protected, a demand fault
	 * from when it was read until served, or one chunk's unmapping. */
	uint64_t longest_stall_ns;
	uint64_t last_stall_ns;               /* the same, during the last devirtualize */
	uint64_t last_huge_chunks, last_huge_ns; /* 2 MiB chunks collapsed at its end, and how long */
	uint64_t last_virtualize_ns, last_devirtualize_ns;
	uint64_t passthrough_page_ops;        /* per-page work done while pass-through: stays 0 */
	uint64_t paused_batches;              /* vCPU pauses taken to move pages in batches */
	uint64_t demand_faults;               /* pages mapped on a guest access while unmapped */
	uint64_t mapped_ahead;                /* pages after those, mapped with them */
	uint64_t last_touched_chunks;         /* guest_first: chunks with a page the guest had touched */
	const char *last_method;              /* how the last devirtualize moved pages, or NULL */
};
void mem_get_stats(const struct mem *m, struct mem_stats *out);
/* Start the peak counters (longest stalls) afresh; totals stay. */
void mem_clear_peaks(struct mem *m);

#endif
