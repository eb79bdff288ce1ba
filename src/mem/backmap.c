/* The back map, MFN -> PFNs, in the three strategies of claims 23-25:
 *   LIST      per MFN a list of the PFNs mapping it (head per MFN, next per PFN)
 *   REFCOUNT  a 16-bit count per MFN; the PFNs themselves are found by search
 *   SEARCH    nothing per page; every question searches the P2M
 * All arrays store "actual XOR identity default", so pass-through (each RAM
 * frame owned by its own PFN) is all zeros. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include "mem_internal.h"

static uint32_t head_default(const struct mem *m, uint64_t mfn)
{
	return mem_is_ram(m, mfn) ? (uint32_t)(mfn + 1) : 0;
}

static uint64_t list_head(const struct mem *m, uint64_t mfn)
{
	return m->head[mfn] ^ head_default(m, mfn);   /* pfn + 1, 0 = none */
}

static void list_set_head(struct mem *m, uint64_t mfn, uint64_t v)
{
	m->head[mfn] = (uint32_t)v ^ head_default(m, mfn);
}

static uint16_t refc_get(const struct mem *m, uint64_t mfn)
{
	return m->refc[mfn] ^ (uint16_t)mem_is_ram(m, mfn);
}

static void refc_set(struct mem *m, uint64_t mfn, uint16_t v)
{
	m->refc[mfn] = v ^ (uint16_t)mem_is_ram(m, mfn);
}

void bm_add(struct mem *m, uint64_t pfn, uint64_t mfn)
{
	m->state_dirty = true;
	switch (m->cfg.backmap) {
	case BACKMAP_LIST:
		m->next[pfn] = (uint32_t)list_head(m, mfn);
		list_set_head(m, mfn, pfn + 1);
		break;
	case BACKMAP_REFCOUNT:
		refc_set(m, mfn, refc_get(m, mfn) + 1);
		break;
	case BACKMAP_SEARCH:
		break;
	}
}

void bm_del(struct mem *m, uint64_t pfn, uint64_t mfn)
{
	m->state_dirty = true;
	switch (m->cfg.backmap) {
	case BACKMAP_LIST: {
		uint64_t cur = list_head(m, mfn);
		if (cur == pfn + 1) {
			list_set_head(m, mfn, m->next[pfn]);
		} else {
			while (cur && m->next[cur - 1] != pfn + 1)
				cur = m->next[cur - 1];
			if (cur)
				m->next[cur - 1] = m->next[pfn];
		}
		m->next[pfn] = 0;
		break;
	}
	case BACKMAP_REFCOUNT:
		refc_set(m, mfn, refc_get(m, mfn) - 1);
		break;
	case BACKMAP_SEARCH:
		break;
	}
}

/* Search the P2M: the identity candidate first, then every virtualized PFN
 * that does not map itself. */
static size_t search(const struct mem *m, uint64_t mfn, uint64_t *pfns, size_t max,
		     size_t limit)
{
	size_t n = 0;

	if (mem_is_ram(m, mfn) && p2m_get(m, mfn) == mfn) {
		if (n < max)
			pfns[n] = mfn;
		n++;
	}
	for (size_t r = 0; r < m->nranges && n < limit; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1] && n < limit; p++) {
			if (m->p2m[p] == 0 || p == mfn || p2m_get(m, p) != mfn)
				continue;
			if (n < max)
				pfns[n] = p;
			n++;
		}
	return n;
}

size_t bm_count(const struct mem *m, uint64_t mfn, size_t limit)
{
	size_t n = 0;

	switch (m->cfg.backmap) {
	case BACKMAP_LIST:
		for (uint64_t c = list_head(m, mfn); c && n < limit; c = m->next[c - 1])
			n++;
		return n;
	case BACKMAP_REFCOUNT:
		return refc_get(m, mfn);
	case BACKMAP_SEARCH:
		break;
	}
	return search(m, mfn, NULL, 0, limit);
}

size_t bm_pfns(const struct mem *m, uint64_t mfn, uint64_t *pfns, size_t max)
{
	size_t n = 0;

	switch (m->cfg.backmap) {
	case BACKMAP_LIST:
		for (uint64_t c = list_head(m, mfn); c; c = m->next[c - 1]) {
			if (n < max)
				pfns[n] = c - 1;
			n++;
		}
		return n;
	case BACKMAP_REFCOUNT: {
		size_t want = refc_get(m, mfn);
		return want ? search(m, mfn, pfns, max, want) : 0;
	}
	case BACKMAP_SEARCH:
		break;
	}
	return search(m, mfn, pfns, max, SIZE_MAX);
}

void p2m_assign(struct mem *m, uint64_t pfn, uint64_t mfn)
{
	uint64_t old = p2m_get(m, pfn);

	if (old == mfn)
		return;
	bm_del(m, pfn, old);
	p2m_set_raw(m, pfn, mfn);
	bm_add(m, pfn, mfn);
}
