/* Queries: mode, ranges, P2M and back-map lookups, addresses, summary,
 * info and stats. mem_p2m, mem_gpa_hva and mem_mfn_hva take no lock: vCPU
 * threads and the monitor call them while the P2M changes (entries are read
 * atomically; the windows never move). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem_internal.h"

enum mem_mode mem_get_mode(const struct mem *m)
{
	return (enum mem_mode)atomic_load(&((struct mem *)m)->mode);
}

size_t mem_virt_ranges(const struct mem *m, uint64_t (*ranges)[2], size_t max)
{
	mem_lock(m);
	size_t n = m->nranges;
	memcpy(ranges, m->ranges, MIN(n, max) * sizeof(ranges[0]));
	mem_unlock(m);
	return n;
}

int mem_p2m(const struct mem *m, uint64_t pfn, uint64_t *mfn)
{
	if (!mem_is_ram(m, pfn))
		return -1;
	/* Pass-through never reads the array: on this host even a read of an
	 * untouched anonymous page can allocate it. */
	*mfn = atomic_load(&((struct mem *)m)->mode) == MEM_PASSTHROUGH ? pfn : p2m_get(m, pfn);
	return 0;
}

int mem_backmap(struct mem *m, uint64_t mfn, uint64_t *pfns, size_t max, size_t *n,
		struct err *e)
{
	if (mfn >= m->nr_mfn)
		return err_set(e, EINVAL, "MFN 0x%llx is beyond machine memory (0x%llx frames)",
			       (unsigned long long)mfn, (unsigned long long)m->nr_mfn);
	mem_lock(m);
	if (m->nranges == 0) {   /* pass-through: identity, no state to read */
		*n = mem_is_ram(m, mfn);
		if (*n && max)
			pfns[0] = mfn;
	} else {
		*n = bm_pfns(m, mfn, pfns, max);
	}
	mem_unlock(m);
	return 0;
}

void *mem_gpa_hva(const struct mem *m, uint64_t gpa)
{
	uint8_t *p = window_addr(m, gpa >> PAGE_SHIFT);
	return p ? p + (gpa & (PAGE_SIZE - 1)) : NULL;
}

void *mem_mfn_hva(const struct mem *m, uint64_t mfn)
{
	return mfn < m->nr_mfn ? m->mview + (mfn << PAGE_SHIFT) : NULL;
}

uint64_t mem_ram_pages(const struct mem *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < m->lay.nr; i++)
		n += m->win[i].end - m->win[i].first;
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void mem_p2m_summary(struct mem *m, struct mem_p2m_summary *s)
{
	uint64_t *mf = NULL;
	size_t n = 0, cap = 0;

	memset(s, 0, sizeof(*s));
	mem_lock(m);
	s->pages = mem_ram_pages(m);
	for (size_t r = 0; r < m->nranges; r++)
		for (uint64_t p = m->ranges[r][0]; p < m->ranges[r][1]; p++) {
			if (m->p2m[p] == 0)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				void *x = realloc(mf, cap * sizeof(*mf));
				if (!x)
					break;
				mf = x;
			}
			mf[n++] = p2m_get(m, p);
		}
	s->remapped = n;
	s->identity = s->pages - n;
	if (n) /* qsort(NULL, 0, ...) is undefined */
		qsort(mf, n, sizeof(*mf), cmp_u64);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && mf[j] == mf[i])
			j++;
		bool owner = pfn_virtualized(m, mf[i]) && p2m_get(m, mf[i]) == mf[i];
		s->shared_frames += (j - i) + owner >= 2;
		i = j;
	}
	s->free_frames = m->nranges ? m->nfree : spare_free_count(m);
	mem_unlock(m);
	free(mf);
}

void mem_info(const struct mem *m, struct mem_info *out)
{
	static const char *bm[] = { "list", "refcount", "search" };

	mem_lock(m);
	out->hugepages = windows_pmd_mapped(m);
	out->page_size = out->hugepages ? HUGE_SIZE : PAGE_SIZE;
	out->backing = out->hugepages ? "shmem-thp" : m->huge ? "shmem-thp advised, 4k mapped" : "4k";
	out->backmap = bm[m->cfg.backmap];
	out->vmas = count_window_vmas(m);
	out->monitor_bytes = state_resident_bytes(m);
	mem_unlock(m);
}

void mem_get_stats(const struct mem *m, struct mem_stats *out)
{
	mem_lock(m);
	*out = m->st;
	mem_unlock(m);
	out->resident_bytes = machine_resident_bytes(m);
}

void mem_clear_peaks(struct mem *m)
{
	mem_lock(m);
	m->st.longest_stall_ns = m->st.last_stall_ns = 0;
	mem_unlock(m);
}
