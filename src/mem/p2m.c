/* The P2M (PFN -> MFN), the free machine frames and the retired frames.
 * Every array stores "actual XOR pass-through default" (mem_internal.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem_internal.h"

/* All per-page arrays live in one anonymous NORESERVE mapping between two
 * PROT_NONE guard pages: nothing merges with it, so its smaps entry counts
 * exactly the state that is really backed by memory. */
int state_reserve(struct mem *m, struct err *e)
{
	m->p2m_len = ALIGN_UP(m->ram_top * sizeof(uint32_t), PAGE_SIZE);
	m->free_len = ALIGN_UP((m->nr_mfn + 63) / 64 * sizeof(uint64_t), PAGE_SIZE);
	if (m->cfg.backmap == BACKMAP_REFCOUNT)
		m->refc_len = ALIGN_UP(m->nr_mfn * sizeof(uint16_t), PAGE_SIZE);
	if (m->cfg.backmap == BACKMAP_LIST) {
		m->head_len = ALIGN_UP(m->nr_mfn * sizeof(uint32_t), PAGE_SIZE);
		m->next_len = ALIGN_UP(m->ram_top * sizeof(uint32_t), PAGE_SIZE);
	}
	m->state_len = m->p2m_len + m->free_len + m->refc_len + m->head_len + m->next_len;
	uint8_t *p = mmap(NULL, m->state_len + 2 * PAGE_SIZE, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return err_sys(e, "reserving %llu KiB for per-page memory state",
			       (unsigned long long)(m->state_len / KiB));
	m->state = p + PAGE_SIZE;
	if (mprotect(m->state, m->state_len, PROT_READ | PROT_WRITE) < 0)
		return err_sys(e, "enabling the per-page memory state");
	p = m->state;
	m->p2m = (_Atomic uint32_t *)p;
	m->freebits = (uint64_t *)(p += m->p2m_len);
	p += m->free_len;
	if (m->refc_len)
		m->refc = (uint16_t *)p;
	p += m->refc_len;
	if (m->head_len) {
		m->head = (uint32_t *)p;
		m->next = (uint32_t *)(p + m->head_len);
	}
	return 0;
}

void state_release(struct mem *m)
{
	if (m->state)
		munmap(m->state - PAGE_SIZE, m->state_len + 2 * PAGE_SIZE);
	free(m->retired);
}

/* Back to pass-through: every array reads as its default (zero) again. */
void state_drop(struct mem *m)
{
	madvise(m->state, m->state_len, MADV_DONTNEED);
	m->state_dirty = false;
}

uint64_t p2m_get(const struct mem *m, uint64_t pfn)
{
	return pfn ^ atomic_load_explicit(&m->p2m[pfn], memory_order_acquire);
}

void p2m_set_raw(struct mem *m, uint64_t pfn, uint64_t mfn)
{
	m->state_dirty = true;
	atomic_store_explicit(&m->p2m[pfn], (uint32_t)(mfn ^ pfn), memory_order_release);
}

size_t range_index(const struct mem *m, uint64_t pfn)
{
	for (size_t i = 0; i < m->nranges; i++)
		if (pfn >= m->ranges[i][0] && pfn < m->ranges[i][1])
			return i;
	return SIZE_MAX;
}

bool pfn_virtualized(const struct mem *m, uint64_t pfn)
{
	return range_index(m, pfn) != SIZE_MAX;
}

static bool is_spare(const struct mem *m, uint64_t mfn)
{
	return mfn >= m->spare_first && mfn < m->spare_end;
}

bool frame_retired(const struct mem *m, uint64_t mfn)
{
	for (size_t i = 0; i < m->nretired; i++)
		if (mfn >= m->retired[i][0] && mfn < m->retired[i][1])
			return true;
	return false;
}

bool frame_free(const struct mem *m, uint64_t mfn)
{
	uint64_t bit = (m->freebits[mfn / 64] >> (mfn % 64)) & 1;
	return (bit ^ is_spare(m, mfn)) && !frame_retired(m, mfn);
}

void frame_set_free(struct mem *m, uint64_t mfn, bool free)
{
	if (frame_free(m, mfn) == free)
		return;
	m->state_dirty = true;
	m->freebits[mfn / 64] ^= 1ULL << (mfn % 64);
	if (free)
		m->nfree++;
	else
		m->nfree--;
}

/* A frame that may ever hold a virtualized page: spare, or the identity
 * frame of a virtualized PFN. */
bool frame_usable(const struct mem *m, uint64_t mfn)
{
	return is_spare(m, mfn) || pfn_virtualized(m, mfn);
}

int frame_retire(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	if (m->nretired == m->retired_cap) {
		size_t cap = m->retired_cap ? m->retired_cap * 2 : 8;
		void *p = realloc(m->retired, cap * sizeof(*m->retired));
		if (!p)
			return err_set(e, ENOMEM, "out of memory recording retired frames");
		m->retired = p;
		m->retired_cap = cap;
	}
	for (uint64_t f = first; f < end; f++)
		frame_set_free(m, f, false);
	m->retired[m->nretired][0] = first;
	m->retired[m->nretired][1] = end;
	m->nretired++;
	return 0;
}

/* The free bits of one 64-frame word, defaults applied. */
static uint64_t free_word(const struct mem *m, uint64_t w)
{
	uint64_t v = m->freebits[w], lo = w * 64, hi = lo + 64;
	uint64_t a = MAX(lo, m->spare_first), b = MIN(hi, m->spare_end);

	if (a < b) {
		uint64_t n = b - a;
		uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << (a - lo);
		v ^= mask;
	}
	return v;
}

/* Next free frame from a rotating cursor, skipping [avoid_first, avoid_end)
 * and retired frames. Words without free bits are skipped 64 at a time. */
uint64_t frame_find_free_in(const struct mem *m, uint64_t lo, uint64_t hi)
{
	hi = MIN(hi, m->nr_mfn);
	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++) {
		uint64_t v = free_word(m, w);
		if (w == lo / 64)
			v &= ~0ULL << (lo % 64);
		if (w == (hi - 1) / 64 && hi % 64)
			v &= ~(~0ULL << (hi % 64));
		for (; v; v &= v - 1) {
			uint64_t f = w * 64 + (uint64_t)__builtin_ctzll(v);
			if (!frame_retired(m, f))
				return f;
		}
	}
	return UINT64_MAX;
}

/* The lowest free frame of [lo, hi) outside [avoid_first, avoid_end). */
static uint64_t find_outside(const struct mem *m, uint64_t lo, uint64_t hi,
			     uint64_t avoid_first, uint64_t avoid_end)
{
	uint64_t f = frame_find_free_in(m, lo, MIN(hi, avoid_first));
	return f != UINT64_MAX ? f : frame_find_free_in(m, MAX(lo, avoid_end), hi);
}

/* From the allocation cursor on, wrapping round once. */
uint64_t frame_find_free(struct mem *m, uint64_t avoid_first, uint64_t avoid_end)
{
	uint64_t c = m->alloc_cursor < m->nr_mfn ? m->alloc_cursor : 0, f;

	if (m->nfree == 0)
		return UINT64_MAX;
	f = find_outside(m, c, m->nr_mfn, avoid_first, avoid_end);
	if (f == UINT64_MAX)
		f = find_outside(m, 0, c, avoid_first, avoid_end);
	if (f != UINT64_MAX)
		m->alloc_cursor = f + 1;
	return f;
}

/* Bytes of per-page state actually backed by memory (the shared zero page
 * that reads map is not counted). */
uint64_t state_resident_bytes(const struct mem *m)
{
	char line[256];
	unsigned long s, t, kb = 0;
	bool inside = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &s, &t) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = s == (uintptr_t)m->state;
		else if (inside && sscanf(line, "Anonymous: %lu", &kb) == 1)
			break;
	}
	fclose(f);
	return (uint64_t)kb * KiB;
}

/* Every free frame, ascending (for the planner). Caller frees *out. */
size_t frames_free_list(struct mem *m, uint64_t **out)
{
	uint64_t nw = (m->nr_mfn + 63) / 64;
	size_t n = 0;

	*out = malloc((m->nfree + 1) * sizeof(uint64_t));
	if (!*out)
		return SIZE_MAX;
	for (uint64_t w = 0; w < nw && n < m->nfree; w++)
		for (uint64_t v = free_word(m, w); v; v &= v - 1) {
			uint64_t f = w * 64 + (uint64_t)__builtin_ctzll(v);
			if (f < m->nr_mfn && !frame_retired(m, f) && n < m->nfree)
				(*out)[n++] = f;
		}
	return n;
}

/* Spare frames that are not retired: the free list of a fresh virtualize. */
uint64_t spare_free_count(const struct mem *m)
{
	uint64_t n = m->spare_end - m->spare_first;

	/* Retired ranges never overlap (evacuate refuses a retired frame), so
	 * their overlaps with the spare frames just add up: virtualize stays
	 * O(1), not a look at each spare frame (20-45 µs of 16,384). */
	for (size_t i = 0; i < m->nretired; i++) {
		uint64_t a = MAX(m->retired[i][0], m->spare_first);
		uint64_t b = MIN(m->retired[i][1], m->spare_end);
		n -= a < b ? b - a : 0;
	}
	return n;
}
