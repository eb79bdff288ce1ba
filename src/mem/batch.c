/* Paused batches: many page moves under one vCPU pause.
 *
 * With every vCPU out of guest mode nothing writes guest RAM, so a batch
 * needs no write protection at all: copy each page to its new frame through
 * the machine view and update P2M in plan order (a later move may reuse a
 * frame an earlier one vacated: the copies are sequential, so that is safe),
 * then bring the window in line with the final P2M of every page touched,
 * sorted, one mmap per run of consecutive PFNs on consecutive frames, and
 * only then resume. The guest never sees an intermediate state.
 *
 * What it saves against move_page: no UFFDIO_WRITEPROTECT/REGISTER/WAKE per
 * page (a register splits and merges VMAs), a page moved twice in a batch
 * (to a temporary frame and home) is mapped once, and runs cost one mmap,
 * i.e. one TLB flush, however long.
 *
 * Pages that stay virtualized afterwards are registered for write
 * protection again (a new mapping has lost it); pages about to become
 * pass-through (`final` ranges, replaced by one identity mapping when
 * devirtualize finishes) are not: nobody write-protects them again. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mem_internal.h"

int batch_init(struct batch *b, struct mem *m, const uint64_t (*final)[2], size_t nfinal,
	       struct err *e)
{
	memset(b, 0, sizeof(*b));
	b->m = m;
	b->final = final;
	b->nfinal = nfinal;
	b->cap = BATCH_MAX_PAGES;
	b->map_ns_per_page = BATCH_MAP_GUESS_NS;   /* until the first batch measures it */
	b->pfn = malloc(b->cap * sizeof(*b->pfn));
	if (!b->pfn)
		return err_set(e, ENOMEM, "out of memory for a remap batch");
	return 0;
}

void batch_fini(struct batch *b)
{
	free(b->pfn);
	b->pfn = NULL;
}

int batch_begin(struct batch *b, struct err *e)
{
	struct mem *m = b->m;

	b->n = 0;
	if (m->ops.pause(m->ops.ctx) < 0)
		return err_set(e, EIO, "pausing the vCPUs for a remap batch failed");
	b->t_paused = now_ns();
	b->open = true;
	return 0;
}

/* Stop adding moves when the batch is full or its pause would run past the
 * budget: time spent so far plus the mapping still to do, estimated from
 * what mapping has cost per page in earlier batches. Each pause must stay
 * well under a millisecond, whatever the host's speed. */
bool batch_full(const struct batch *b)
{
	if (b->n + 2 > b->cap)
		return true;
	if (b->n == 0)
		return false;
	uint64_t spent = now_ns() - b->t_paused;
	return spent + b->n * b->map_ns_per_page > BATCH_BUDGET_NS;
}

void batch_add(struct batch *b, uint64_t pfn)
{
	b->pfn[b->n++] = pfn;
}

void batch_move(struct batch *b, uint64_t pfn, uint64_t to)
{
	struct mem *m = b->m;
	uint64_t from = p2m_get(m, pfn);

	frame_copy(m, to, from);
	frame_set_free(m, to, false);
	p2m_assign(m, pfn, to);
	frame_released(m, from);
	batch_add(b, pfn);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool in_final(const struct batch *b, uint64_t first, uint64_t end)
{
	for (size_t i = 0; i < b->nfinal; i++)
		if (first >= b->final[i][0] && end <= b->final[i][1])
			return true;
	return false;
}

/* One run [first, first + n) of window pages onto frames [mfn, mfn + n). */
static int map_run(struct batch *b, uint64_t first, uint64_t n, uint64_t mfn, struct err *e)
{
	struct mem *m = b->m;
	void *p = mmap(window_addr(m, first), n << PAGE_SHIFT, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, m->memfd, (off_t)(mfn << PAGE_SHIFT));

	if (p == MAP_FAILED)
		return err_sys(e, "mapping machine frames 0x%llx-0x%llx at PFNs 0x%llx-0x%llx",
			       (unsigned long long)mfn, (unsigned long long)(mfn + n),
			       (unsigned long long)first, (unsigned long long)(first + n));
	m->vma_est += 2;
	window_mark_remapped(m, first, first + n);
	b->runs++;
	if (!in_final(b, first, first + n))
		return wp_register(m, first, first + n, e);
	return 0;
}

/* Window pages the batch touched, in runs; resume; listeners. */
int batch_end(struct batch *b, struct err *e)
{
	struct mem *m = b->m;
	int rc = 0;
	size_t n = 0;

	uint64_t tm = now_ns();

	qsort(b->pfn, b->n, sizeof(*b->pfn), cmp_u64);
	for (size_t i = 0; i < b->n; i++)   /* a page moved twice is mapped once */
		if (n == 0 || b->pfn[n - 1] != b->pfn[i])
			b->pfn[n++] = b->pfn[i];
	/* Every run is mapped even after a failure: P2M has moved on already, and
	 * a window page left behind would show the guest a stale frame. */
	for (size_t i = 0; i < n;) {
		uint64_t first = b->pfn[i], mfn = p2m_get(m, first), k = 1;
		struct err e2 = {0};
		while (i + k < n && b->pfn[i + k] == first + k &&
		       p2m_get(m, first + k) == mfn + k && window_addr(m, first + k) ==
		       window_addr(m, first) + (k << PAGE_SHIFT))
			k++;
		if (map_run(b, first, k, mfn, rc < 0 ? &e2 : e) < 0) {
			rc = -1;
			if (e2.code)
				log_warn("%s", e2.msg);
		}
		i += k;
	}
	uint64_t tr = now_ns();
	m->ops.resume(m->ops.ctx);
	/* The guest stalls from the moment the last vCPU acknowledged the pause
	 * until it is told to go on. */
	note_stall(m, tr - b->t_paused);
	if (b->n) {   /* running average of mapping cost, for batch_full */
		/* One sample counts at most twice the average: an mmap that waited
		 * on the file's rmap lock (the host's DAMON walking a huge folio
		 * mapped by hundreds of our VMAs: 10 ms and more) says nothing of
		 * the next batch, and let in fully it shrank dozens of batches
		 * after it to a few pages, each paying a whole pause. */
		uint64_t per = MIN((tr - tm) / b->n, 2 * b->map_ns_per_page);
		b->map_ns_per_page = (3 * b->map_ns_per_page + per) / 4;
	}
	for (size_t i = 0; i < n; i++)
		notify(m, b->pfn[i]);
	b->pages += b->n;
	m->st.paused_batches++;
	b->n = 0;
	b->open = false;
	return rc;
}

/* One move, opening a new batch (a new pause) when the current one is full. */
int batch_step(struct batch *b, uint64_t pfn, uint64_t to, struct err *e)
{
	if (b->open && batch_full(b) && batch_end(b, e) < 0)
		return -1;
	if (!b->open && batch_begin(b, e) < 0)
		return -1;
	batch_move(b, pfn, to);
	return 0;
}

/* Close the last batch, if any; keeps the first error. */
int batch_finish(struct batch *b, int rc, struct err *e)
{
	struct err e2 = {0};

	if (b->open && batch_end(b, rc < 0 ? &e2 : e) < 0)
		rc = -1;
	batch_fini(b);
	return rc;
}

/* Paused batches by default (see mem.h). Not with shared pages unless asked
 * for: a vCPU blocked in a copy-on-write fault cannot acknowledge a pause
 * until the fault thread runs, and that needs the lock the remapper holds. */
bool batch_wanted(const struct mem *m)
{
	return pause_usable(m) && (m->cfg.protect_by_pause || m->cow_reserve == 0);
}

bool pause_usable(const struct mem *m)
{
	return m->ops.pause && m->ops.resume && !m->cfg.protect_by_wp;
}
