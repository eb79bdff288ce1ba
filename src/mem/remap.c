/* The remap executor: moving guest pages between machine frames while the
 * guest keeps writing, and devirtualize (claims 17-22).
 *
 * Every move is: write-protect the page (or have the vCPUs paused), copy the
 * frame through the machine view, mmap the new frame over the window page,
 * register that page for write protection again (a new mapping is a new VMA),
 * update P2M and the back map, then wake the writer, which retries its fault
 * on the new mapping. Copying without protection loses writes made between
 * the copy and the mmap; with it the writer just waits. The caller holds the
 * lock, so the P2M cannot change under a move (claims 21-22).
 *
 * A whole devirtualize by default unmaps the pages it moves instead
 * (lazy.c); a piece of one, and scramble, move pages in paused batches
 * (batch.c, sweep.c): no protection is needed while every vCPU is parked,
 * and the window is remapped once per batch, in runs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mem_internal.h"
#include "vmswitch/util.h"
#include "plan.h"

void note_stall(struct mem *m, uint64_t ns)
{
	if (ns > m->st.longest_stall_ns)
		m->st.longest_stall_ns = ns;
	if (ns > m->st.last_stall_ns)
		m->st.last_stall_ns = ns;
}

#define PROGRESS_EVERY_NS 200000000ULL

void notify(struct mem *m, uint64_t pfn)
{
	if (m->listener)
		m->listener(m->listener_ctx, pfn);
	/* Every moved page passes here: count it for the progress report. */
	if (m->progress && pfn != UINT64_MAX) {
		uint64_t now = now_ns();
		m->progress_done++;
		if (now - m->progress_last_ns >= PROGRESS_EVERY_NS) {
			m->progress_last_ns = now;
			m->progress(m->progress_ctx, m->progress_done);
		}
	}
}

void frame_released(struct mem *m, uint64_t from)
{
	uint64_t q;
	struct err e = {0};
	size_t n = bm_count(m, from, 2);

	if (n == 0) {
		if (frame_usable(m, from) && !frame_retired(m, from))
			frame_set_free(m, from, true);
		return;
	}
	/* It was shared: one promised COW copy is no longer needed. */
	m->cow_reserve--;
	if (n == 1 && bm_pfns(m, from, &q, 1) == 1 && wp_protect(m, q, false, &e) < 0)
		log_warn("%s", e.msg);
}

/* Put pfn's page back on `from` after a failed remap (best effort). */
static void restore(struct mem *m, uint64_t pfn, uint64_t from)
{
	struct err e = {0};
	if (window_map_page(m, pfn, from, &e) < 0 || wp_register(m, pfn, pfn + 1, &e) < 0)
		log_warn("restoring PFN 0x%llx: %s", (unsigned long long)pfn, e.msg);
	wp_wake(m, pfn, pfn + 1);
}

int move_page(struct mem *m, uint64_t pfn, uint64_t to, struct move_ctx *c, struct err *e)
{
	uint64_t from = p2m_get(m, pfn);

	if (vma_budget(m, 2, e) < 0)
		return -1;
	uint64_t t0 = now_ns();   /* the stall: from protect to wake */
	if (!c->paused && wp_protect(m, pfn, true, e) < 0)
		return -1;
	frame_copy(m, to, from);
	if (window_map_page(m, pfn, to, e) < 0) {
		restore(m, pfn, from);
		return -1;
	}
	int rc = wp_register(m, pfn, pfn + 1, e);
	frame_set_free(m, to, false);
	p2m_assign(m, pfn, to);
	wp_wake(m, pfn, pfn + 1);
	if (!c->paused)
		note_stall(m, now_ns() - t0);
	frame_released(m, from);
	notify(m, pfn);
	return rc;
}

/* Move a whole frame: every sharer follows it and stays shared. */
int move_frame(struct mem *m, uint64_t from, uint64_t to, struct err *e)
{
	uint64_t q[64];
	size_t n = bm_pfns(m, from, q, ARRAY_SIZE(q));

	if (n > ARRAY_SIZE(q))
		return err_set(e, EBUSY, "machine frame 0x%llx has %zu sharers; "
			       "at most %zu can move together", (unsigned long long)from, n,
			       ARRAY_SIZE(q));
	if (n == 1) {
		struct move_ctx c = {0};
		return move_page(m, q[0], to, &c, e);
	}
	if (vma_budget(m, 2 * n, e) < 0)
		return -1;
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < n; i++)
		if (wp_protect(m, q[i], true, e) < 0)
			return -1;
	frame_copy(m, to, from);
	frame_set_free(m, to, false);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (window_map_page(m, q[i], to, e) < 0) {
			restore(m, q[i], from);
			rc = -1;
			continue;
		}
		if (wp_register(m, q[i], q[i] + 1, e) < 0 || wp_protect(m, q[i], true, e) < 0)
			rc = -1;
		p2m_assign(m, q[i], to);
	}
	for (size_t i = 0; i < n; i++) {
		wp_wake(m, q[i], q[i] + 1);
		notify(m, q[i]);
	}
	note_stall(m, now_ns() - t0);
	if (bm_count(m, from, 1) == 0 && frame_usable(m, from) && !frame_retired(m, from))
		frame_set_free(m, from, true);
	return rc;
}

/* The planner's view of the current state. */
static int gather(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		  struct plan *pl, struct err *e)
{
	struct plan_entry *ent = NULL;
	size_t n = 0, cap = 0;
	uint64_t *free_frames = NULL;
	int rc = -1;

	/* Nothing ever remapped: no entries, and no reading of untouched state. */
	for (size_t r = 0; r < m->nranges && m->state_dirty; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1]; p++) {
			if (m->p2m[p] == 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				void *x = realloc(ent, cap * sizeof(*ent));
				if (!x)
					goto oom;
				ent = x;
			}
			ent[n++] = (struct plan_entry){ p, p2m_get(m, p) };
		}
	size_t nfree = n ? frames_free_list(m, &free_frames) : 0;
	if (nfree == SIZE_MAX)
		goto oom;
	struct plan_input in = {
		.want = want, .nwant = nwant,
		.virt = (const uint64_t (*)[2])m->ranges, .nvirt = m->nranges,
		.ent = ent, .nent = n, .free = free_frames, .nfree = nfree,
		.retired = (const uint64_t (*)[2])m->retired, .nretired = m->nretired,
	};
	rc = plan_devirtualize(&in, pl, e);
	goto out;
oom:
	err_set(e, ENOMEM, "out of memory gathering the P2M for devirtualize");
out:
	free(ent);
	free(free_frames);
	return rc;
}

/* One protected move at a time (uffd write protection per page). */
static int execute_wp(struct mem *m, const struct plan *pl, struct err *e)
{
	struct move_ctx c = {0};

	for (size_t j = 0; j < pl->n; j++) {
		const struct plan_move *mv = &pl->mv[j];
		if (p2m_get(m, mv->pfn) != mv->from)
			return err_set(e, EFAULT, "remap: PFN 0x%llx is not on frame 0x%llx "
				       "as planned", (unsigned long long)mv->pfn,
				       (unsigned long long)mv->from);
		if (move_page(m, mv->pfn, mv->to, &c, e) < 0)
			return -1;
	}
	return 0;
}

/* Paused batches (batch.c). */
static int execute_paused(struct mem *m, const struct plan *pl, const uint64_t (*want)[2],
			  size_t nwant, struct err *e)
{
	struct batch b;
	int rc = 0;

	if (batch_init(&b, m, want, nwant, e) < 0)
		return -1;
	for (size_t j = 0; j < pl->n && rc == 0; j++) {
		const struct plan_move *mv = &pl->mv[j];
		if (p2m_get(m, mv->pfn) != mv->from)
			rc = err_set(e, EFAULT, "remap: PFN 0x%llx is not on frame 0x%llx "
				     "as planned", (unsigned long long)mv->pfn,
				     (unsigned long long)mv->from);
		else
			rc = batch_step(&b, mv->pfn, mv->to, e);
	}
	return batch_finish(&b, rc, e);
}

/* The planner's moves, executed one protected page at a time or in paused
 * batches. */
static int plan_and_execute(struct mem *m, const uint64_t (*want)[2], size_t nwant,
			    struct err *e)
{
	struct plan pl;

	if (gather(m, want, nwant, &pl, e) < 0)
		return -1;
	int rc = vma_budget(m, 2 * pl.n, e);
	if (rc == 0)
		rc = batch_wanted(m) ? execute_paused(m, &pl, want, nwant, e)
				     : execute_wp(m, &pl, e);
	if (rc == 0) {
		m->st.skipped += pl.skipped;
		m->st.direct += pl.direct + pl.evicted;
		m->st.indirect += pl.indirect;
	}
	plan_free(&pl);
	return rc;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Huge pages again now, not when khugepaged gets round to it (minutes for
 * a large guest; until then the guest runs on 4 KiB mappings, measured 20-30%
 * slower streaming on kvm_pvm). Only 2 MiB chunks whose pages are all in
 * memory are collapsed: collapsing a hole would allocate RAM the guest never
 * used. One chunk at a time, so a guest write waits for one 2 MiB copy at
 * most. Best effort: a kernel without MADV_COLLAPSE for shmem, or no huge
 * page free, leaves it to khugepaged. */
static bool chunk_resident(const struct mem *m, uint64_t pfn)
{
	uint64_t bits[HUGE_SIZE / PAGE_SIZE / 64] = {0};

	/* Identity by now: PFN pfn is on frame pfn. */
	frames_resident(m, pfn, HUGE_SIZE / PAGE_SIZE, bits);
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (bits[i] != UINT64_MAX)
			return false;
	return true;
}

static void restore_huge(struct mem *m, uint64_t first, uint64_t end)
{
	const uint64_t per = HUGE_SIZE / PAGE_SIZE;
	uint64_t t0 = now_ns();

	for (uint64_t a = ALIGN_UP(first, per); m->huge && a + per <= end; a += per) {
		uint8_t *p = window_addr(m, a);
		if (!chunk_resident(m, a))
			continue;
		if (madvise(p, HUGE_SIZE, MADV_COLLAPSE) == 0) {
			m->st.last_huge_chunks++;
		} else if (errno != EAGAIN) {
			log_debug("MADV_COLLAPSE on PFN 0x%llx: %s (left to khugepaged)",
				  (unsigned long long)a, strerror(errno));
			break;
		}
	}
	m->st.last_huge_ns += now_ns() - t0;
}

/* Every page of [first, end) is on its own frame already: give the range
 * back its one mapping, 64 pages at a time. One mmap over the whole range
 * would hold the address-space lock while it tears down every per-page VMA
 * (tens of ms for 1 GiB), and every vCPU that faults meanwhile (all of them:
 * the MMU notifier has just dropped their mappings) waits that long; even a
 * 2 MiB chunk (up to 512 VMAs) kept the guest waiting ~3 ms on kvm_pvm. In
 * chunks the wait is one chunk's, and each chunk merges with the one before
 * (same file, contiguous offsets, same flags) so the range still ends as one
 * VMA. Pages keep their frames throughout, so a guest write lands the same
 * either way. */
#define IDENTITY_CHUNK_PAGES 64

static int map_identity_run(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	for (uint64_t a = first; a < end;) {
		uint64_t b = MIN(end, ALIGN_DOWN(a + IDENTITY_CHUNK_PAGES, IDENTITY_CHUNK_PAGES));
		if (window_map_identity(m, a, b, e) < 0)
			return -1;
		wp_wake(m, a, b);
		a = b;
	}
	return 0;
}

/* Only the 2 MiB blocks a change remapped or registered are mapped again
 * and unregistered: the rest still has the window's first mapping, never
 * registered, and mapping it again would tear down and fault back its page
 * tables (after migrating one page, devirtualizing 1 GiB took 80-170 ms),
 * and unregistering it would clear write-protect bits through the MMU
 * notifier, so KVM would drop its mappings of it too. Once unregistered,
 * the blocks merge with it into one mapping. Huge pages come back
 * afterwards (restore_remapped). */
int map_identity_chunked(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	uint64_t a = first, b;

	for (; window_next_remapped(m, &a, end, &b); a = b)
		if (map_identity_run(m, a, b, e) < 0 || wp_unregister(m, a, b, e) < 0)
			return -1;
	return 0;
}

/* [first, end) is one identity mapping again: huge pages for the 2 MiB
 * blocks inside it that a change had remapped, which are clean from now
 * on. The others kept theirs. */
static void restore_remapped(struct mem *m, uint64_t first, uint64_t end)
{
	uint64_t a = first, b;

	for (; window_next_remapped(m, &a, end, &b); a = b)
		restore_huge(m, a, b);
	window_clear_remapped(m, first, end);
}

/* Give each extra sharer of a frame a frame of its own, as a copy-on-write
 * break would, so that unmapping (lazy.c, which shares nothing) can bring
 * the pages home. A sharer on its own frame keeps it; the others go home
 * when that frame is free, else to any free frame: the copy-on-write
 * reserve holds one for each. Shared pages are write-protected already,
 * so a move stalls only a writer of that page. */
static int unshare_all(struct mem *m, struct err *e)
{
	uint64_t *kept = zalloc(m->nr_mfn / 64 + 1, sizeof(*kept));
	struct move_ctx c = {0};
	int rc = 0;

	if (!kept)
		return err_set(e, ENOMEM, "out of memory splitting shared frames");
	for (size_t r = 0; r < m->nranges; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1]; p++)
			if (p2m_get(m, p) == p)
				bit_put(kept, p, true);
	for (size_t r = 0; r < m->nranges && rc == 0 && m->cow_reserve; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1] && rc == 0; p++) {
			uint64_t f = p2m_get(m, p), to;
			if (f == p || !bit_get(kept, f)) {
				bit_put(kept, f, true);   /* its first sharer keeps it */
				continue;
			}
			to = frame_free(m, p) ? p : frame_find_free(m, 0, 0);
			if (to == UINT64_MAX) {
				rc = err_set(e, ENOSPC, "no free machine frame to split frame 0x%llx",
					     (unsigned long long)f);
			} else if ((rc = move_page(m, p, to, &c, e)) == 0) {
				m->st.unshared++;   /* a page sent home is then skipped */
			}
		}
	zfree(kept);
	return rc;
}

/* Make the PFN ranges `want` (each inside one virtualized range) identity
 * and give each back one mapping. The caller updates the ranges afterwards.
 * When nothing is retired, a whole devirtualize splits shared frames and
 * unmaps (lazy.c), and a piece with nothing shared sweeps in PFN order in
 * paused batches (sweep.c); otherwise the planner's moves (plan.c) are
 * executed. */
int remap_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		       bool guest_first, struct err *e)
{
	int rc = 1;

	if (!m->state_dirty) {
		for (size_t i = 0; i < nwant; i++)
			m->st.skipped += want[i][1] - want[i][0];
		m->st.last_method = "none needed (nothing was remapped)";
		rc = 0;
	} else if (lazy_possible(m, want, nwant)) {
		m->st.last_method = "unmapped pages, mapped again on demand";
		rc = m->cow_reserve ? unshare_all(m, e) : 0;
		if (rc == 0)
			rc = lazy_devirtualize(m, want, nwant, guest_first, e);
		if (rc == 0)
			goto identity;   /* one mapping per range already */
	}
	if (rc == 1 && sweep_possible(m)) {
		m->st.last_method = "PFN-order sweep in paused batches";
		rc = sweep_devirtualize(m, want, nwant, e);
	} else if (rc == 1) {
		m->st.last_method = batch_wanted(m) ? "planned moves in paused batches"
						    : "planned moves, write-protected";
		rc = plan_and_execute(m, want, nwant, e);
	}
	/* Pages of `want` moved in paused batches were left unregistered (about
	 * to be pass-through) and stay virtualized after all: protecting one
	 * registers its block again (wp.c). */
	if (rc < 0)
		return -1;
	/* One identity mapping again, unregistered: the blocks a change
	 * remapped or registered (a failed one too), none if nothing changed. */
	for (size_t i = 0; i < nwant; i++)
		if (map_identity_chunked(m, want[i][0], want[i][1], e) < 0)
			return -1;
identity:
	for (size_t i = 0; i < nwant; i++) {
		struct err e2 = {0};
		if (window_advise(m, want[i][0], want[i][1], true, &e2) < 0)
			log_warn("%s (huge pages left to khugepaged)", e2.msg);
		restore_remapped(m, want[i][0], want[i][1]);
	}
	return 0;
}
