/* Devirtualize by sweeping PFN order with swaps, in paused batches.
 *
 * The planner (plan.c) unwinds cycles in cycle order, which after a
 * scramble is random PFN order: every move is its own mmap. Sweeping the
 * ranges in PFN order instead brings pages home in ascending runs, and each
 * batch's run becomes ONE identity mmap (batch.c coalesces it); only the
 * pages displaced from those home frames need a mapping of their own.
 *
 * For each non-identity PFN p on frame f: if its home frame p is free, copy
 * p home (direct). If q holds it, q first moves to a temporary frame (claim
 * 19: its own frame if already free, else a spare frame, which lies off the
 * sweep's path, so q moves once more, home, inside a run; counted as
 * indirect), then p comes home and f is released. Without any free frame the
 * two frames swap contents through a page-sized buffer. Cycles of any length
 * unwind as the sweep reaches their members. Each displaced page costs one
 * mapping of its own; for a random permutation about half the pages are
 * displaced once, and the rest of the work is runs.
 *
 * Used when nothing is shared and nothing is retired (then the planner's
 * more general moves are needed) and paused batches are available, for a
 * piece of the range, with --protect pause, or when the kernel cannot
 * unmap (lazy.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem_internal.h"

#define SWEEP_GAP 32   /* identity pages worth remapping to join two runs */

struct sweep {
	struct mem *m;
	struct batch b;
	uint32_t *inv;        /* per MFN: 1 + the non-identity PFN on it, or 0 */
	uint64_t last;        /* last PFN brought home in this batch, or UINT64_MAX */
	uint64_t ahead;       /* no free frame in (last sweep PFN, ahead) when last looked */
	uint64_t direct, indirect;
	uint8_t tmp[PAGE_SIZE];
};

bool sweep_possible(const struct mem *m)
{
	return batch_wanted(m) && m->cow_reserve == 0 && m->nretired == 0;
}

/* Who holds each frame, for every virtualized PFN not on its own frame. */
static int sweep_index(struct sweep *s, struct err *e)
{
	struct mem *m = s->m;
	uint64_t moving = 0;

	s->inv = zalloc(m->nr_mfn, sizeof(*s->inv));
	if (!s->inv)
		return err_set(e, ENOMEM, "out of memory indexing %llu machine frames",
			       (unsigned long long)m->nr_mfn);
	for (size_t r = 0; r < m->nranges; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1]; p++)
			if (m->p2m[p] != 0) {
				s->inv[p2m_get(m, p)] = (uint32_t)(p + 1);
				moving++;
			}
	return vma_budget(m, 2 * moving, e);
}

/* Make room in the batch (a new pause when it is full). */
static int sweep_room(struct sweep *s, size_t need, struct err *e)
{
	if (s->b.open && (s->b.n + need > s->b.cap || batch_full(&s->b))) {
		s->last = UINT64_MAX;
		if (batch_end(&s->b, e) < 0)
			return -1;
	}
	if (!s->b.open && batch_begin(&s->b, e) < 0)
		return -1;
	return 0;
}

/* A frame for q, displaced from frame p: its own frame if free (q is home
 * early); else a free frame just above q: q goes home, in a run, before the
 * sweep gets there, so it moves only once more; else a spare frame (off the
 * sweep's path, the same); else any free frame ahead of the sweep (q may be
 * displaced again from there: another mapping of its own); else none (then
 * q takes p's old frame by a swap). Frames above q come first because the
 * spare range is small: once it was full, at 1 GiB, 78% of the moves were
 * displacements, most of them repeated ones. */
#define SWEEP_ABOVE_SCAN 4096   /* frames searched above q */

static uint64_t displace_target(struct sweep *s, uint64_t q, uint64_t p)
{
	struct mem *m = s->m;
	uint64_t t;

	if (q < m->nr_mfn && frame_free(m, q))
		return q;
	t = frame_find_free_in(m, q + 1, MIN(q + 1 + SWEEP_ABOVE_SCAN, m->spare_first));
	if (t != UINT64_MAX)
		return t;
	/* Bounded searches: a scan of every frame per displaced page made the
	 * sweep quadratic (21% of a 1 GiB devirtualize). The spare range is
	 * small; ahead of the sweep, frames found busy are not looked at again
	 * (one freed there later is missed: then the swap path serves). */
	t = frame_find_free_in(m, m->spare_first, m->spare_end);
	if (t == UINT64_MAX) {
		s->ahead = MAX(s->ahead, p + 1);
		t = frame_find_free_in(m, s->ahead, m->spare_first);
		s->ahead = t == UINT64_MAX ? m->spare_first : t;
	}
	return t;
}

/* Bring p home (the batch is open and has room for 2 + SWEEP_GAP). */
static void sweep_page(struct sweep *s, uint64_t p)
{
	struct mem *m = s->m;
	uint64_t f = p2m_get(m, p), occ = s->inv[p];

	/* Identity pages between two homecomings join the run: one mmap. */
	if (s->last != UINT64_MAX && p > s->last && p - s->last <= SWEEP_GAP &&
	    window_addr(m, p) == window_addr(m, s->last) + ((p - s->last) << PAGE_SHIFT))
		for (uint64_t x = s->last + 1; x < p; x++)
			batch_add(&s->b, x);
	s->inv[f] = 0;
	s->inv[p] = 0;
	if (occ != 0) {
		uint64_t q = occ - 1, t = displace_target(s, q, p);
		if (t == UINT64_MAX) {   /* swap through the buffer: q lands on f */
			/* Rare (no free frame at all), so not hole-aware: reading
			 * a never-written frame here allocates it, zeroed. */
			memcpy(s->tmp, m->mview + (p << PAGE_SHIFT), PAGE_SIZE);
			frame_copy(m, p, f);
			memcpy(m->mview + (f << PAGE_SHIFT), s->tmp, PAGE_SIZE);
			m->st.bytes_copied += PAGE_SIZE;
			p2m_assign(m, p, p);
			p2m_assign(m, q, f);
			if (q != f)
				s->inv[f] = (uint32_t)occ;
			batch_add(&s->b, q);
			batch_add(&s->b, p);
			s->indirect++;
			s->last = p;
			return;
		}
		frame_copy(m, t, p);
		frame_set_free(m, t, false);
		p2m_assign(m, q, t);
		if (t != q)
			s->inv[t] = (uint32_t)occ;
		batch_add(&s->b, q);
		s->indirect++;      /* q goes home later through this temporary frame */
	} else {
		frame_set_free(m, p, false);
		s->direct++;
	}
	frame_copy(m, p, f);
	p2m_assign(m, p, p);
	frame_released(m, f);
	batch_add(&s->b, p);
	s->last = p;
}

int sweep_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		       struct err *e)
{
	struct sweep *s = calloc(1, sizeof(*s));
	int rc = -1;

	if (!s)
		return err_set(e, ENOMEM, "out of memory for devirtualize");
	s->m = m;
	s->last = UINT64_MAX;
	if (sweep_index(s, e) < 0 || batch_init(&s->b, m, want, nwant, e) < 0)
		goto out;
	rc = 0;
	for (size_t r = 0; r < nwant && rc == 0; r++)
		for (uint64_t p = want[r][0]; p < want[r][1] && rc == 0; p++) {
			if (m->p2m[p] == 0) {
				m->st.skipped++;
				continue;
			}
			rc = sweep_room(s, 2 + SWEEP_GAP, e);
			if (rc == 0)
				sweep_page(s, p);
		}
	rc = batch_finish(&s->b, rc, e);
	m->st.direct += s->direct;
	m->st.indirect += s->indirect;
out:
	zfree(s->inv);
	free(s);
	return rc;
}
