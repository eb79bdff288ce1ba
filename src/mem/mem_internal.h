/* Internal state of mem/: shared by machine.c, p2m.c, backmap.c, wp.c,
 * remap.c, ops.c and switch.c. Not a public contract.
 *
 * Per-page state is lazy: every per-page array is an anonymous NORESERVE
 * mapping reserved at create that stores "actual XOR default", where the
 * default is what pass-through implies (P2M identity, each RAM frame owned by
 * its own PFN, spare frames free). Untouched pages therefore cost nothing,
 * virtualize allocates nothing, and devirtualize drops the state with one
 * MADV_DONTNEED (the reservation stays, so lock-free readers never touch an
 * unmapped address). */
#ifndef VMSWITCH_MEM_INTERNAL_H
#define VMSWITCH_MEM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "vmswitch/mem.h"
#include "vmswitch/util.h"
#include "vmswitch/worker.h"

#define MEM_MAX_RANGES 64
#define MEM_MAX_SHARERS 0xFFFFu   /* refcounts are 16 bits */
#define MEM_MAX_RAM (1ULL << 40)  /* 1 TiB: keeps MFNs in 32 bits */

struct mem_window {
	uint8_t *hva;         /* 2 MiB aligned */
	uint64_t first, end;  /* PFN range */
};

struct mem {
	struct mem_config cfg;
	struct mem_ops ops;
	struct mem_layout lay;
	struct mem_window win[MEM_MAX_REGIONS];

	int memfd;
	uint8_t *mview;          /* machine view of the whole memfd */
	uint64_t nr_mfn;         /* memfd pages */
	uint64_t ram_top;        /* first PFN after the last RAM page */
	uint64_t spare_first, spare_end;

	pthread_mutex_t lock;    /* every mutator holds it */
	_Atomic int mode;
	uint64_t ranges[MEM_MAX_RANGES][2];
	size_t nranges;

	/* Lazy per-page state (see above). */
	_Atomic uint32_t *p2m;   /* per PFN: mfn ^ pfn */
	uint16_t *refc;          /* REFCOUNT, per MFN: count ^ is_ram(mfn) */
	uint32_t *head;          /* LIST, per MFN: (first pfn + 1) ^ (is_ram ? mfn + 1 : 0) */
	uint32_t *next;          /* LIST, per PFN: next pfn + 1, 0 ends */
	uint64_t *freebits;      /* per MFN: free ^ is_spare(mfn) */
	uint8_t *state;          /* the one mapping holding all of them */
	size_t state_len, p2m_len, refc_len, head_len, next_len, free_len;
	bool state_dirty;        /* per-page state may be non-default */

	uint64_t nfree;          /* free frames (retired ones excluded) */
	uint64_t cow_reserve;    /* free frames promised to pending COW breaks */
	uint64_t alloc_cursor;
	uint64_t (*retired)[2];  /* evacuated ("failing") MFN ranges */
	size_t nretired, retired_cap;

	/* userfaultfd write protection and the COW fault thread. */
	int uffd;                /* -1 when the host lacks uffd-wp on shmem */
	char uffd_why[256];
	struct worker fault_thr; /* the COW fault thread */

	mem_progress_fn progress;
	void *progress_ctx;
	uint64_t progress_done, progress_last_ns;
	mem_p2m_listener listener;
	void *listener_ctx;

	struct mem_stats st;
	uint64_t vma_est;        /* upper bound on this process's VMAs */
	uint64_t *remapped;      /* per 2 MiB block of PFNs: a change gave it mappings of its own */
	uint64_t map_limit;      /* vm.max_map_count as last read */

	bool huge;               /* windows advised for shmem THP */
	unsigned fail_unmap_after; /* tests: the Nth chunk a devirtualize unmaps fails (0: none) */
	const char *backing;
};

/* machine.c */
void vma_init(struct mem *m);
bool mem_is_ram(const struct mem *m, uint64_t pfn);
int machine_open(struct mem *m, struct err *e);
void machine_close(struct mem *m);
uint8_t *window_addr(const struct mem *m, uint64_t pfn);
uint64_t window_pfn(const struct mem *m, uint64_t addr);
int window_map_identity(struct mem *m, uint64_t first, uint64_t end, struct err *e);
/* MADV_HUGEPAGE (huge) or MADV_NOHUGEPAGE on window PFNs [first, end). */
int window_advise(struct mem *m, uint64_t first, uint64_t end, bool huge, struct err *e);
/* Blocks of the window whose mapping a change replaced (window_map_page
 * marks them): the only ones devirtualize maps again. */
#define REMAP_BLOCK (HUGE_SIZE / PAGE_SIZE)
void window_mark_remapped(struct mem *m, uint64_t first, uint64_t end);
bool window_next_remapped(const struct mem *m, uint64_t *a, uint64_t end, uint64_t *b);
void window_clear_remapped(struct mem *m, uint64_t first, uint64_t end);
int window_map_page(struct mem *m, uint64_t pfn, uint64_t mfn, struct err *e);
/* Has the frame ever been written (is it not a hole in the memfd)? */
bool frame_populated(const struct mem *m, uint64_t mfn);
/* The first frame from mfn on that has been written (nr_mfn: none). */
uint64_t frame_next_data(const struct mem *m, uint64_t mfn);
/* Mark the frames of a run that are resident (so written), in bulk: bit i
 * of bits is frame first + i. */
void frames_resident(const struct mem *m, uint64_t first, uint64_t n, uint64_t *bits);
/* The same for every written frame, swapped out or not. */
void frames_with_data(const struct mem *m, uint64_t first, uint64_t n, uint64_t *bits);
/* Copy a machine frame's contents; a never-written frame stays a hole. */
void frame_copy(struct mem *m, uint64_t to, uint64_t from);
void frame_copy_known(struct mem *m, uint64_t to, uint64_t from, bool from_data, bool to_data);
uint64_t machine_resident_bytes(const struct mem *m);
void spare_release(struct mem *m);
int vma_budget(struct mem *m, uint64_t more, struct err *e);
uint64_t count_window_vmas(const struct mem *m);
bool windows_pmd_mapped(const struct mem *m);

/* p2m.c: the P2M, the free frames and the retired frames. */
int state_reserve(struct mem *m, struct err *e);
void state_release(struct mem *m);
void state_drop(struct mem *m);
uint64_t p2m_get(const struct mem *m, uint64_t pfn);
void p2m_set_raw(struct mem *m, uint64_t pfn, uint64_t mfn);
bool pfn_virtualized(const struct mem *m, uint64_t pfn);
size_t range_index(const struct mem *m, uint64_t pfn);
bool frame_free(const struct mem *m, uint64_t mfn);
void frame_set_free(struct mem *m, uint64_t mfn, bool free);
bool frame_retired(const struct mem *m, uint64_t mfn);
int frame_retire(struct mem *m, uint64_t first, uint64_t end, struct err *e);
/* A free frame outside [avoid_first, avoid_end), or UINT64_MAX. */
uint64_t frame_find_free(struct mem *m, uint64_t avoid_first, uint64_t avoid_end);
/* The lowest free frame in [lo, hi), or UINT64_MAX; a word at a time. */
uint64_t frame_find_free_in(const struct mem *m, uint64_t lo, uint64_t hi);
bool frame_usable(const struct mem *m, uint64_t mfn);
size_t frames_free_list(struct mem *m, uint64_t **out);
uint64_t spare_free_count(const struct mem *m);
uint64_t state_resident_bytes(const struct mem *m);

/* backmap.c: MFN -> PFNs, one of three strategies. */
void bm_add(struct mem *m, uint64_t pfn, uint64_t mfn);
void bm_del(struct mem *m, uint64_t pfn, uint64_t mfn);
/* Number of PFNs mapping mfn; stops counting at limit. */
size_t bm_count(const struct mem *m, uint64_t mfn, size_t limit);
/* Fills up to max PFNs, returns how many map mfn. */
size_t bm_pfns(const struct mem *m, uint64_t mfn, uint64_t *pfns, size_t max);
/* P2M[pfn] = mfn with the back map kept in step. */
void p2m_assign(struct mem *m, uint64_t pfn, uint64_t mfn);

/* wp.c: userfaultfd write protection. */
int wp_open(struct mem *m);
void wp_close(struct mem *m);
int wp_register(struct mem *m, uint64_t first, uint64_t end, struct err *e);
int wp_unregister(struct mem *m, uint64_t first, uint64_t end, struct err *e);
int wp_protect(struct mem *m, uint64_t pfn, bool on, struct err *e);
void wp_wake(struct mem *m, uint64_t first, uint64_t end);
int wp_start_thread(struct mem *m, struct err *e);
void wp_stop_thread(struct mem *m);

/* remap.c: moving guest pages between machine frames. */
struct move_ctx {
	bool paused;          /* vCPUs paused by the caller: skip per-page wp */
	uint64_t stall_start; /* set by move_page when it protects */
};
/* Move pfn to free frame `to`, preserving contents (see remap.c). */
int move_page(struct mem *m, uint64_t pfn, uint64_t to, struct move_ctx *c,
	      struct err *e);
/* Move every sharer of frame `from` to free frame `to` (evacuate). */
int move_frame(struct mem *m, uint64_t from, uint64_t to, struct err *e);
/* After pfn left frame `from`: free it or unprotect its last sharer. */
void frame_released(struct mem *m, uint64_t from);
void note_stall(struct mem *m, uint64_t ns);
void notify(struct mem *m, uint64_t pfn);
/* The range's one identity mapping back (all its pages home), huge pages. */
int map_identity_chunked(struct mem *m, uint64_t first, uint64_t end, struct err *e);
/* guest_first: mem_devirt_opts.guest_first (used when it unmaps). */
int remap_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		       bool guest_first, struct err *e);

/* batch.c: many moves under one vCPU pause (no write protection needed). */
#define BATCH_MAX_PAGES 512
#define BATCH_BUDGET_NS 700000ULL   /* aim: each pause shorter than 0.7 ms */
#define BATCH_MAP_GUESS_NS 20000ULL /* mapping one page, before it is measured */
struct batch {
	struct mem *m;
	const uint64_t (*final)[2];   /* ranges about to be one identity mapping */
	size_t nfinal;
	uint64_t *pfn;                /* PFNs moved in this batch */
	size_t n, cap;
	uint64_t t_paused;            /* when the pause was acknowledged */
	bool open;                    /* paused, between begin and end */
	uint64_t map_ns_per_page;     /* running average */
	uint64_t pages, runs;         /* totals over every batch */
};
int batch_init(struct batch *b, struct mem *m, const uint64_t (*final)[2], size_t nfinal,
	       struct err *e);
void batch_fini(struct batch *b);
int batch_begin(struct batch *b, struct err *e);
bool batch_full(const struct batch *b);
/* Copy pfn's page to free frame `to` and update P2M; the window follows in
 * batch_end. */
void batch_move(struct batch *b, uint64_t pfn, uint64_t to);
/* Record a PFN whose window page must follow P2M at batch_end. */
void batch_add(struct batch *b, uint64_t pfn);
int batch_end(struct batch *b, struct err *e);
int batch_step(struct batch *b, uint64_t pfn, uint64_t to, struct err *e);
/* Close the open batch and free; returns rc, or -1 if closing failed. */
int batch_finish(struct batch *b, int rc, struct err *e);
/* Paused batches are possible and asked for. */
bool batch_wanted(const struct mem *m);
/* vCPUs can be paused, and write protection was not asked for instead. */
bool pause_usable(const struct mem *m);

/* sweep.c: devirtualize in PFN order by swaps, in paused batches. */
bool sweep_possible(const struct mem *m);
int sweep_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		       struct err *e);

/* lazy.c: devirtualize with unmapped pages and demand faults. Possible
 * once no page is shared: the caller splits shared frames first. */
bool lazy_possible(const struct mem *m, const uint64_t (*want)[2], size_t nwant);
/* 0 done, -1 failed, 1 not possible on this host (nothing changed). */
int lazy_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		      bool guest_first, struct err *e);

/* switch.c */
void mode_update(struct mem *m);
int check_virt_pfn(const struct mem *m, uint64_t pfn, struct err *e);

/* Bit i of a word array. */
static inline bool bit_get(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static inline void bit_put(uint64_t *map, uint64_t i, bool on)
{
	if (on)
		map[i / 64] |= 1ULL << (i % 64);
	else
		map[i / 64] &= ~(1ULL << (i % 64));
}

static inline void mem_lock(const struct mem *m)
{
	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
}

static inline void mem_unlock(const struct mem *m)
{
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
}

#endif
