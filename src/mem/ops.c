/* P2M changes while virtualized (claim 5): migrate, scramble, share,
 * evacuate. Each checks everything it can before touching anything, so a
 * refused change leaves P2M, back map and guest bytes as they were. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem_internal.h"

/* Free frames not promised to pending copy-on-write breaks. */
static uint64_t spendable(const struct mem *m)
{
	return m->nfree > m->cow_reserve ? m->nfree - m->cow_reserve : 0;
}

static int check_target(const struct mem *m, uint64_t mfn, struct err *e)
{
	uint64_t q;

	if (mfn >= m->nr_mfn)
		return err_set(e, EINVAL, "MFN 0x%llx is beyond machine memory (0x%llx frames)",
			       (unsigned long long)mfn, (unsigned long long)m->nr_mfn);
	if (frame_retired(m, mfn))
		return err_set(e, EBUSY, "MFN 0x%llx is retired (evacuated)", (unsigned long long)mfn);
	if (frame_free(m, mfn))
		return 0;
	if (bm_pfns(m, mfn, &q, 1) >= 1)
		return err_set(e, EBUSY, "MFN 0x%llx is busy: PFN 0x%llx maps it",
			       (unsigned long long)mfn, (unsigned long long)q);
	return err_set(e, EBUSY, "MFN 0x%llx is not a free machine frame",
		       (unsigned long long)mfn);
}

int mem_migrate(struct mem *m, uint64_t pfn, uint64_t mfn, struct err *e)
{
	struct move_ctx c = {0};
	int rc = -1;

	mem_lock(m);
	if (check_virt_pfn(m, pfn, e) < 0 || check_target(m, mfn, e) < 0)
		goto out;
	if (spendable(m) == 0 && bm_count(m, p2m_get(m, pfn), 2) < 2) {
		err_set(e, ENOSPC, "no free machine frames (the rest back shared pages)");
		goto out;
	}
	rc = move_page(m, pfn, mfn, &c, e);
	if (rc == 0)
		m->st.migrations++;
out:
	mem_unlock(m);
	return rc;
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Virtualized PFNs that have their frame to themselves. */
static uint64_t *scramble_candidates(struct mem *m, size_t *n)
{
	size_t cap = 0;
	uint64_t *v = NULL;

	*n = 0;
	for (size_t r = 0; r < m->nranges; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1]; p++) {
			if (m->cow_reserve && bm_count(m, p2m_get(m, p), 2) > 1)
				continue;
			if (*n == cap) {
				cap = cap ? 2 * cap : 4096;
				void *x = realloc(v, cap * sizeof(*v));
				if (!x) {
					free(v);
					return NULL;
				}
				v = x;
			}
			v[(*n)++] = p;
		}
	return v;
}

/* One scramble move: in a paused batch when there is one, else protected. */
static int scramble_move(struct mem *m, struct batch *b, uint64_t pfn, uint64_t to,
			 struct err *e)
{
	struct move_ctx c = {0};

	return b ? batch_step(b, pfn, to, e) : move_page(m, pfn, to, &c, e);
}

/* Rotate frames along one cycle: p[i] ends on the frame p[i+1] had (f is
 * scratch for len frames). One temporary frame: p[0] parks there, the others
 * shift into the frame just vacated, p[0] lands last. */
static int rotate(struct mem *m, struct batch *b, const uint64_t *p, uint64_t *f, size_t len,
		  struct err *e)
{
	if (len < 2)
		return 0;
	for (size_t i = 0; i < len; i++)
		f[i] = p2m_get(m, p[i]);
	uint64_t t = frame_find_free(m, 0, 0);
	if (t == UINT64_MAX)
		return err_set(e, ENOSPC, "no free machine frames");
	if (scramble_move(m, b, p[0], t, e) < 0)
		return -1;
	for (size_t j = len - 1; j >= 1; j--)
		if (scramble_move(m, b, p[j], f[(j + 1) % len], e) < 0)
			return -1;
	return scramble_move(m, b, p[0], f[1], e);
}

int mem_scramble(struct mem *m, uint64_t seed, uint64_t count, struct err *e)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
	uint64_t *f = NULL;
	size_t n;
	int rc = -1;

	mem_lock(m);
	uint64_t *v = scramble_candidates(m, &n);
	if (m->nranges == 0) {
		err_set(e, EPERM, "memory is pass-through (virtualize it first)");
		goto out;
	}
	if (!v || !(f = malloc(n * sizeof(*f) + 1))) {
		err_set(e, ENOMEM, "out of memory planning a scramble");
		goto out;
	}
	if (count == 0)
		count = n;
	if (count > n) {
		err_set(e, EINVAL, "cannot scramble %llu pages: %zu unshared virtualized pages",
			(unsigned long long)count, n);
		goto out;
	}
	if (count > 1 && spendable(m) == 0) {
		err_set(e, ENOSPC, "no free machine frames");
		goto out;
	}
	if (vma_budget(m, 2 * count + 2 * count / 2, e) < 0)
		goto out;
	for (size_t i = 0; i < count; i++) {   /* partial Fisher-Yates */
		size_t j = i + rng_next(&s) % (n - i);
		uint64_t x = v[i];
		v[i] = v[j];
		v[j] = x;
	}
	/* Cycle lengths 1, 2, 3, ... over the shuffled pages: fixed points and
	 * cycles of every length up to about sqrt(2 * count). */
	struct batch bt, *b = NULL;
	if (batch_wanted(m)) {
		if (batch_init(&bt, m, NULL, 0, e) < 0)
			goto out;
		b = &bt;
	}
	rc = 0;
	for (size_t i = 0, k = 1; i < count && rc == 0; k++) {
		size_t len = MIN(k, count - i);
		rc = rotate(m, b, v + i, f, len, e);
		i += len;
	}
	if (b)
		rc = batch_finish(b, rc, e);
out:
	free(v);
	free(f);
	mem_unlock(m);
	return rc;
}

/* Both PFNs end up on pfn1's frame, write-protected; a write to either
 * copies it again (wp.c). Pages must be identical (as KSM would merge
 * them), so sharing never changes what the guest sees. */
int mem_share(struct mem *m, uint64_t pfn1, uint64_t pfn2, struct err *e)
{
	int rc = -1;

	mem_lock(m);
	if (check_virt_pfn(m, pfn1, e) < 0 || check_virt_pfn(m, pfn2, e) < 0)
		goto out;
	uint64_t f1 = p2m_get(m, pfn1), f2 = p2m_get(m, pfn2);
	if (f1 == f2) {
		err_set(e, EINVAL, "PFNs 0x%llx and 0x%llx already share frame 0x%llx",
			(unsigned long long)pfn1, (unsigned long long)pfn2, (unsigned long long)f1);
		goto out;
	}
	if (bm_count(m, f1, MEM_MAX_SHARERS) >= MEM_MAX_SHARERS) {
		err_set(e, EBUSY, "frame 0x%llx has too many sharers", (unsigned long long)f1);
		goto out;
	}
	if (vma_budget(m, 2, e) < 0 ||
	    wp_protect(m, pfn1, true, e) < 0 || wp_protect(m, pfn2, true, e) < 0)
		goto unprotect;
	if (memcmp(m->mview + (f1 << PAGE_SHIFT), m->mview + (f2 << PAGE_SHIFT), PAGE_SIZE)) {
		err_set(e, EINVAL, "PFNs 0x%llx and 0x%llx differ; only identical pages can share",
			(unsigned long long)pfn1, (unsigned long long)pfn2);
		goto unprotect;
	}
	if (window_map_page(m, pfn2, f1, e) < 0) {
		struct err e2 = {0};
		window_map_page(m, pfn2, f2, &e2);
		wp_register(m, pfn2, pfn2 + 1, &e2);
		goto unprotect;
	}
	rc = wp_register(m, pfn2, pfn2 + 1, e);
	if (rc == 0)
		rc = wp_protect(m, pfn2, true, e);
	p2m_assign(m, pfn2, f1);
	m->cow_reserve++;
	wp_wake(m, pfn2, pfn2 + 1);
	frame_released(m, f2);
	notify(m, pfn2);
	m->st.shares++;
	goto out;
unprotect:
	/* Nothing changed: drop the protection of pages that are not shared. */
	{
		struct err e2 = {0};
		if (bm_count(m, f1, 2) < 2)
			wp_protect(m, pfn1, false, &e2);
		if (bm_count(m, f2, 2) < 2)
			wp_protect(m, pfn2, false, &e2);
	}
out:
	mem_unlock(m);
	return rc;
}

static int check_evacuate(struct mem *m, uint64_t first, uint64_t end, uint64_t *busy,
			  struct err *e)
{
	uint64_t nfree_in = 0;

	*busy = 0;
	if (m->nranges == 0)
		return err_set(e, EPERM, "memory is pass-through (virtualize it first)");
	if (first >= end || end > m->nr_mfn)
		return err_set(e, EINVAL, "MFNs 0x%llx-0x%llx are not a range of machine memory",
			       (unsigned long long)first, (unsigned long long)end);
	for (uint64_t f = first; f < end; f++) {
		if (frame_retired(m, f))
			return err_set(e, EBUSY, "MFN 0x%llx is already retired",
				       (unsigned long long)f);
		if (!frame_usable(m, f))
			return err_set(e, EPERM, "MFN 0x%llx %s", (unsigned long long)f,
				       mem_is_ram(m, f) ? "backs pass-through memory"
						      : "is not machine memory");
		nfree_in += frame_free(m, f);
		*busy += bm_count(m, f, 1) > 0;
	}
	if (spendable(m) < nfree_in + *busy)
		return err_set(e, ENOSPC, "no free machine frames: evacuating %llu frames needs "
			       "%llu free frames elsewhere, %llu available",
			       (unsigned long long)(end - first), (unsigned long long)*busy,
			       (unsigned long long)(spendable(m) > nfree_in ? spendable(m) - nfree_in : 0));
	return vma_budget(m, 4 * *busy, e);
}

int mem_evacuate(struct mem *m, uint64_t mfn_first, uint64_t mfn_end, struct err *e)
{
	uint64_t busy;
	int rc = -1;

	mem_lock(m);
	if (check_evacuate(m, mfn_first, mfn_end, &busy, e) < 0)
		goto out;
	for (uint64_t f = mfn_first; f < mfn_end; f++) {
		size_t n = bm_count(m, f, MEM_MAX_SHARERS);
		if (n == 0)
			continue;
		uint64_t to = frame_find_free(m, mfn_first, mfn_end);
		if (to == UINT64_MAX) {
			err_set(e, ENOSPC, "no free machine frames");
			goto out;
		}
		if (move_frame(m, f, to, e) < 0)
			goto out;
		m->st.evacuated += n;
	}
	rc = frame_retire(m, mfn_first, mfn_end, e);
out:
	mem_unlock(m);
	return rc;
}

int mem_unretire(struct mem *m, uint64_t mfn_first, uint64_t mfn_end, struct err *e)
{
	size_t i;

	mem_lock(m);
	for (i = 0; i < m->nretired; i++)
		if (m->retired[i][0] == mfn_first && m->retired[i][1] == mfn_end)
			break;
	if (i == m->nretired) {
		mem_unlock(m);
		return err_set(e, EINVAL, "MFNs 0x%llx-0x%llx were not evacuated as one range",
			       (unsigned long long)mfn_first, (unsigned long long)mfn_end);
	}
	m->retired[i][0] = m->retired[m->nretired - 1][0];
	m->retired[i][1] = m->retired[m->nretired - 1][1];
	m->nretired--;
	/* Pass-through keeps no free list; virtualize rebuilds it. */
	for (uint64_t f = mfn_first; f < mfn_end && m->nranges; f++)
		if (frame_usable(m, f) && bm_count(m, f, 1) == 0)
			frame_set_free(m, f, true);
	mem_unlock(m);
	return 0;
}
