/* The mode state machine: create, virtualize, devirtualize, and the queries.
 *
 * Pass-through means: no virtualized ranges, every per-page array dropped to
 * its zero default, no page write-protected or registered with userfaultfd,
 * windows one mapping each.
 * Virtualize records the range, nothing more: a change registers the 2 MiB
 * blocks it protects for write protection (wp.c), and all per-page state
 * appears lazily as pages are remapped, so it is O(1) in memory size. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem_internal.h"
#include "vmswitch/util.h"

const char *mem_mode_name(enum mem_mode mode)
{
	static const char *names[] = { "pass-through", "virtualizing", "virtualized",
				       "partially virtualized", "devirtualizing" };
	return (unsigned)mode < ARRAY_SIZE(names) ? names[mode] : "?";
}

void mode_update(struct mem *m)
{
	uint64_t virt = 0;
	for (size_t i = 0; i < m->nranges; i++)
		virt += m->ranges[i][1] - m->ranges[i][0];
	int mode = virt == 0 ? MEM_PASSTHROUGH :
		   virt == mem_ram_pages(m) ? MEM_VIRTUALIZED : MEM_PARTIAL;
	atomic_store(&m->mode, mode);
}

int check_virt_pfn(const struct mem *m, uint64_t pfn, struct err *e)
{
	if (!mem_is_ram(m, pfn))
		return err_set(e, EINVAL, "PFN 0x%llx is not guest RAM", (unsigned long long)pfn);
	if (!pfn_virtualized(m, pfn))
		return err_set(e, EPERM, "PFN 0x%llx is pass-through (virtualize it first)",
			       (unsigned long long)pfn);
	return 0;
}

static void mem_free(struct mem *m)
{
	wp_stop_thread(m);
	wp_close(m);
	machine_close(m);
	state_release(m);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int mem_create(const struct mem_config *cfg, const struct mem_ops *ops,
	       struct mem **out, struct err *e)
{
	struct mem *m = calloc(1, sizeof(*m));

	if (!m)
		return err_set(e, ENOMEM, "out of memory creating guest memory");
	m->cfg = *cfg;
	if (ops)
		m->ops = *ops;
	m->memfd = m->uffd = -1;
	worker_init(&m->fault_thr);
	pthread_mutex_init(&m->lock, NULL);
	if (cfg->spare_size % PAGE_SIZE || cfg->spare_size > MEM_MAX_RAM) {
		err_set(e, EINVAL, "spare machine memory %llu is not a multiple of 4 KiB "
			"or is absurd", (unsigned long long)cfg->spare_size);
		goto fail;
	}
	if (mem_layout(cfg->ram_size, &m->lay, e) < 0 || machine_open(m, e) < 0 ||
	    state_reserve(m, e) < 0)
		goto fail;
	if (wp_open(m) == 0 && wp_start_thread(m, e) < 0)
		goto fail;
	for (unsigned i = 0; i < m->lay.nr && m->ops.set_slot; i++)
		if (m->ops.set_slot(m->ops.ctx, i, m->lay.r[i].gpa, m->lay.r[i].size,
				    m->lay.r[i].hva, e) < 0) {
			err_wrap(e, "registering RAM region %u", i);
			goto fail;
		}
	vma_init(m);
	atomic_store(&m->mode, MEM_PASSTHROUGH);
	*out = m;
	return 0;
fail:
	mem_free(m);
	return -1;
}

void mem_destroy(struct mem *m)
{
	if (m)
		mem_free(m);
}

const struct mem_layout *mem_get_layout(const struct mem *m)
{
	return &m->lay;
}

void mem_set_listener(struct mem *m, mem_p2m_listener fn, void *ctx)
{
	mem_lock(m);
	m->listener = fn;
	m->listener_ctx = ctx;
	mem_unlock(m);
}

void mem_set_progress(struct mem *m, mem_progress_fn fn, void *ctx)
{
	mem_lock(m);
	m->progress = fn;
	m->progress_ctx = ctx;
	m->progress_done = 0;
	m->progress_last_ns = now_ns();
	mem_unlock(m);
}

static bool overlaps(const struct mem *m, uint64_t a, uint64_t b)
{
	for (size_t i = 0; i < m->nranges; i++)
		if (a < m->ranges[i][1] && b > m->ranges[i][0])
			return true;
	return false;
}

/* Record [a, b), merging with a neighbour so ranges stay few. */
static int range_add(struct mem *m, uint64_t a, uint64_t b, struct err *e)
{
	for (size_t i = 0; i < m->nranges; i++) {
		if (m->ranges[i][1] == a) { m->ranges[i][1] = b; return 0; }
		if (m->ranges[i][0] == b) { m->ranges[i][0] = a; return 0; }
	}
	if (m->nranges == MEM_MAX_RANGES)
		return err_set(e, ENOSPC, "too many virtualized ranges (max %d)", MEM_MAX_RANGES);
	m->ranges[m->nranges][0] = a;
	m->ranges[m->nranges][1] = b;
	m->nranges++;
	return 0;
}

/* The request as ranges inside regions: one explicit range, or every gap. */
static size_t virt_request(const struct mem *m, uint64_t first, uint64_t end,
			   uint64_t (*req)[2], struct err *e)
{
	size_t n = 0;

	if (end != 0) {
		unsigned i;
		for (i = 0; i < m->lay.nr; i++)
			if (first >= m->win[i].first && end <= m->win[i].end && first < end)
				break;
		if (i == m->lay.nr) {
			err_set(e, EINVAL, "PFNs 0x%llx-0x%llx are not a range of guest RAM "
				"(empty, outside RAM or spanning the hole)",
				(unsigned long long)first, (unsigned long long)end);
			return SIZE_MAX;
		}
		if (overlaps(m, first, end)) {
			err_set(e, EBUSY, "PFNs 0x%llx-0x%llx overlap memory already virtualized",
				(unsigned long long)first, (unsigned long long)end);
			return SIZE_MAX;
		}
		req[0][0] = first;
		req[0][1] = end;
		return 1;
	}
	for (unsigned i = 0; i < m->lay.nr; i++) {
		uint64_t p = m->win[i].first;
		while (p < m->win[i].end) {
			size_t r = range_index(m, p);
			if (r != SIZE_MAX) {
				p = m->ranges[r][1];
				continue;
			}
			uint64_t q = m->win[i].end;   /* up to the next virtualized range */
			for (size_t k = 0; k < m->nranges; k++)
				if (m->ranges[k][0] > p && m->ranges[k][0] < q)
					q = m->ranges[k][0];
			if (n == MEM_MAX_RANGES) {
				err_set(e, ENOSPC, "too many virtualized ranges");
				return SIZE_MAX;
			}
			req[n][0] = p;
			req[n][1] = q;
			n++;
			p = q;
		}
	}
	if (n == 0)
		err_set(e, EBUSY, "all memory is already virtualized");
	return n ? n : SIZE_MAX;
}

int mem_virtualize(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	uint64_t req[MEM_MAX_RANGES][2];
	uint64_t t0 = now_ns();
	size_t n;

	mem_lock(m);
	if (m->uffd < 0) {
		mem_unlock(m);
		return err_set(e, ENOTSUP, "cannot virtualize memory: %s", m->uffd_why);
	}
	n = virt_request(m, first, end, req, e);
	if (n == SIZE_MAX || m->nranges + n > MEM_MAX_RANGES) {
		mem_unlock(m);
		return n == SIZE_MAX ? -1 : err_set(e, ENOSPC, "too many virtualized ranges");
	}
	atomic_store(&m->mode, MEM_VIRTUALIZING);
	if (m->nranges == 0) {
		/* Fresh start: the spare frames are the free list. */
		m->nfree = spare_free_count(m);
		m->cow_reserve = 0;
		m->alloc_cursor = m->spare_first;
	}
	/* The window stays as it is: a change registers the 2 MiB blocks it
	 * protects (wp.c). */
	for (size_t i = 0; i < n; i++) {
		struct err e2 = {0};
		range_add(m, req[i][0], req[i][1], e);   /* room checked above */
		if (window_advise(m, req[i][0], req[i][1], false, &e2) < 0)
			log_warn("%s (khugepaged may stall changes)", e2.msg);
	}
	mode_update(m);
	m->st.virtualizations++;
	m->st.last_virtualize_ns = now_ns() - t0;
	mem_unlock(m);
	return 0;
}

/* Take [a, b) out of the range that holds it (may split it in two). */
static void range_remove(struct mem *m, uint64_t a, uint64_t b)
{
	size_t i = range_index(m, a);
	uint64_t lo = m->ranges[i][0], hi = m->ranges[i][1];

	m->ranges[i][0] = m->ranges[m->nranges - 1][0];
	m->ranges[i][1] = m->ranges[m->nranges - 1][1];
	m->nranges--;
	if (lo < a) {
		m->ranges[m->nranges][0] = lo;
		m->ranges[m->nranges][1] = a;
		m->nranges++;
	}
	if (b < hi) {
		m->ranges[m->nranges][0] = b;
		m->ranges[m->nranges][1] = hi;
		m->nranges++;
	}
}

static size_t devirt_request(const struct mem *m, uint64_t first, uint64_t end,
			     uint64_t (*want)[2], struct err *e)
{
	if (m->nranges == 0) {
		err_set(e, EINVAL, "memory is already pass-through");
		return SIZE_MAX;
	}
	if (end == 0) {
		memcpy(want, m->ranges, m->nranges * sizeof(want[0]));
		return m->nranges;
	}
	size_t r = range_index(m, first);
	if (first >= end || r == SIZE_MAX || end > m->ranges[r][1]) {
		err_set(e, EINVAL, "PFNs 0x%llx-0x%llx are not a virtualized range",
			(unsigned long long)first, (unsigned long long)end);
		return SIZE_MAX;
	}
	if (m->nranges == MEM_MAX_RANGES && first > m->ranges[r][0] && end < m->ranges[r][1]) {
		err_set(e, ENOSPC, "too many virtualized ranges to split one");
		return SIZE_MAX;
	}
	want[0][0] = first;
	want[0][1] = end;
	return 1;
}

int mem_devirtualize(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	return mem_devirtualize_with(m, first, end, NULL, e);
}

int mem_devirtualize_with(struct mem *m, uint64_t first, uint64_t end,
			  const struct mem_devirt_opts *o, struct err *e)
{
	uint64_t want[MEM_MAX_RANGES][2];
	uint64_t t0 = now_ns();

	mem_lock(m);
	size_t n = devirt_request(m, first, end, want, e);
	if (n == SIZE_MAX) {
		mem_unlock(m);
		return -1;
	}
	atomic_store(&m->mode, MEM_DEVIRTUALIZING);
	m->st.last_stall_ns = m->st.last_huge_chunks = m->st.last_huge_ns = 0;
	m->st.last_touched_chunks = 0;
	if (remap_devirtualize(m, (const uint64_t (*)[2])want, n, o && o->guest_first, e) < 0) {
		mode_update(m);
		mem_unlock(m);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		range_remove(m, want[i][0], want[i][1]);
	if (m->nranges == 0) {
		spare_release(m);
		state_drop(m);
		m->nfree = m->cow_reserve = 0;
	}
	mode_update(m);
	m->st.devirtualizations++;
	m->st.last_devirtualize_ns = now_ns() - t0;
	notify(m, UINT64_MAX);
	mem_unlock(m);
	return 0;
}
