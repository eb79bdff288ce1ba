/* The devirtualize planner: pure, no I/O (see plan.h for the algorithm). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

/* Open-addressing map uint64 -> uint64 (UINT64_MAX keys are never used). */
struct map {
	uint64_t *key, *val;
	size_t mask;
};

static int map_init(struct map *h, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n + 16)
		cap *= 2;
	h->key = malloc(cap * sizeof(uint64_t));
	h->val = malloc(cap * sizeof(uint64_t));
	h->mask = cap - 1;
	if (!h->key || !h->val)
		return -1;
	memset(h->key, 0xff, cap * sizeof(uint64_t));
	return 0;
}

static void map_free(struct map *h)
{
	free(h->key);
	free(h->val);
}

static size_t map_slot(const struct map *h, uint64_t k)
{
	size_t i = (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 20) & h->mask;
	while (h->key[i] != k && h->key[i] != UINT64_MAX)
		i = (i + 1) & h->mask;
	return i;
}

static uint64_t *map_find(const struct map *h, uint64_t k)
{
	size_t i = map_slot(h, k);
	return h->key[i] == k ? &h->val[i] : NULL;
}

static uint64_t *map_put(struct map *h, uint64_t k, uint64_t v)
{
	size_t i = map_slot(h, k);
	if (h->key[i] != k) {
		h->key[i] = k;
		h->val[i] = v;
	}
	return &h->val[i];
}

struct planner {
	const struct plan_input *in;
	struct plan *out;
	struct map pfn_idx;      /* entry pfn -> index */
	struct map count;        /* frame -> PFNs mapping it (lazily filled) */
	uint64_t *cur;           /* per entry: current frame */
	uint64_t *temp;          /* per entry: its cycle's temp frame, or UINT64_MAX */
	bool *pending;           /* per entry: in range and not home yet */
	uint64_t *pool, *queue;  /* free frames outside the range; ready PFNs */
	size_t npool, qhead, qtail;
};

static bool in_ranges(const uint64_t (*r)[2], size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (x >= r[i][0] && x < r[i][1])
			return true;
	return false;
}

static bool in_range(const struct planner *p, uint64_t x)
{
	return in_ranges(p->in->want, p->in->nwant, x);
}

/* PFNs mapping frame f; the identity owner counts unless it moved away. */
static uint64_t *count_of(struct planner *p, uint64_t f)
{
	uint64_t *c = map_find(&p->count, f);
	if (c)
		return c;
	bool owner = in_ranges(p->in->virt, p->in->nvirt, f) && !map_find(&p->pfn_idx, f);
	return map_put(&p->count, f, owner ? 1 : 0);
}

static int emit(struct planner *p, uint64_t pfn, uint64_t from, uint64_t to, enum plan_kind k)
{
	struct plan *o = p->out;
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 256;
		void *mv = realloc(o->mv, cap * sizeof(*o->mv));
		if (!mv)
			return -1;
		o->mv = mv;
		o->cap = cap;
	}
	o->mv[o->n++] = (struct plan_move){ pfn, from, to, k };
	return 0;
}

/* pfn left frame f: free it, or let its owner come home. */
static void release(struct planner *p, uint64_t f)
{
	uint64_t *c = count_of(p, f);
	if (--*c)
		return;
	if (in_range(p, f))
		p->queue[p->qtail++] = f;
	else if (!in_ranges(p->in->retired, p->in->nretired, f))
		p->pool[p->npool++] = f;
}

static int move(struct planner *p, size_t i, uint64_t to, enum plan_kind k)
{
	uint64_t pfn = p->in->ent[i].pfn, from = p->cur[i];

	if (emit(p, pfn, from, to, k) < 0)
		return -1;
	*count_of(p, to) += 1;
	p->cur[i] = to;
	release(p, from);
	return 0;
}

/* Bring home every queued PFN whose frame is now free. */
static int unwind(struct planner *p)
{
	while (p->qhead < p->qtail) {
		uint64_t pfn = p->queue[p->qhead++];
		size_t i = (size_t)*map_find(&p->pfn_idx, pfn);
		if (!p->pending[i])
			continue;
		bool via_temp = p->cur[i] == p->temp[i];
		p->pending[i] = false;
		if (move(p, i, pfn, via_temp ? PLAN_FROM_TEMP : PLAN_DIRECT) < 0)
			return -1;
		if (via_temp)
			p->out->indirect++;
		else
			p->out->direct++;
	}
	return 0;
}

/* Move PFNs outside the range off the range's frames, one at a time, each
 * followed by the chain it unblocks: pages going home vacate frames outside
 * the range, which refill the pool, so evictions rarely need many free
 * frames at once. */
static int evict(struct planner *p, struct err *e)
{
	for (size_t i = 0; i < p->in->nent; i++) {
		const struct plan_entry *en = &p->in->ent[i];
		if (in_range(p, en->pfn) || !in_range(p, p->cur[i]))
			continue;
		if (p->npool == 0)
			return err_set(e, ENOSPC, "no free machine frames to move PFN 0x%llx off "
				       "frame 0x%llx", (unsigned long long)en->pfn,
				       (unsigned long long)p->cur[i]);
		if (move(p, i, p->pool[--p->npool], PLAN_EVICT) < 0 || unwind(p) < 0)
			return err_set(e, ENOMEM, "out of memory planning moves");
		p->out->evicted++;
	}
	return 0;
}

static int cycles(struct planner *p, struct err *e)
{
	for (size_t i = 0; i < p->in->nent; i++) {
		if (!p->pending[i])
			continue;
		if (p->npool == 0)
			return err_set(e, ENOSPC, "no free machine frames for the temporary frame "
				       "of a remap cycle (PFN 0x%llx)",
				       (unsigned long long)p->in->ent[i].pfn);
		uint64_t t = p->pool[--p->npool];
		p->temp[i] = t;
		if (move(p, i, t, PLAN_TO_TEMP) < 0 || unwind(p) < 0)
			return err_set(e, ENOMEM, "out of memory planning moves");
		if (p->pending[i])
			return err_set(e, EFAULT, "planner: PFN 0x%llx is not on a cycle "
				       "(inconsistent P2M)", (unsigned long long)p->in->ent[i].pfn);
		p->out->cycles++;
	}
	return 0;
}

static int setup(struct planner *p, struct err *e)
{
	const struct plan_input *in = p->in;
	size_t n = in->nent, nr = 0;

	p->cur = malloc((n + 1) * sizeof(uint64_t));
	p->temp = malloc((n + 1) * sizeof(uint64_t));
	p->pending = calloc(n + 1, sizeof(bool));
	p->pool = malloc((in->nfree + 2 * n + 1) * sizeof(uint64_t));
	p->queue = malloc((2 * n + 1) * sizeof(uint64_t));
	if (!p->cur || !p->temp || !p->pending || !p->pool || !p->queue ||
	    map_init(&p->pfn_idx, n) < 0 || map_init(&p->count, 2 * n + in->nfree) < 0)
		return err_set(e, ENOMEM, "out of memory planning %zu moves", n);
	for (size_t i = 0; i < n; i++)
		map_put(&p->pfn_idx, in->ent[i].pfn, i);
	for (size_t i = 0; i < n; i++) {
		p->cur[i] = in->ent[i].mfn;
		p->temp[i] = UINT64_MAX;
		p->pending[i] = in_range(p, in->ent[i].pfn);
		nr += p->pending[i];
		*count_of(p, in->ent[i].mfn) += 1;
	}
	for (size_t i = 0; i < in->nfree; i++) {
		uint64_t f = in->free[i];
		if (*count_of(p, f) != 0)
			return err_set(e, EFAULT, "planner: free frame 0x%llx is mapped",
				       (unsigned long long)f);
		if (!in_range(p, f) && !in_ranges(in->retired, in->nretired, f))
			p->pool[p->npool++] = f;
	}
	p->out->skipped = 0;
	for (size_t i = 0; i < in->nwant; i++)
		p->out->skipped += in->want[i][1] - in->want[i][0];
	p->out->skipped -= nr;
	return 0;
}

int plan_devirtualize(const struct plan_input *in, struct plan *out, struct err *e)
{
	struct planner p = { .in = in, .out = out };
	int rc = -1;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < in->nretired; i++)
		for (size_t w = 0; w < in->nwant; w++)
			if (in->retired[i][0] < in->want[w][1] && in->retired[i][1] > in->want[w][0])
				return err_set(e, EBUSY, "machine frames 0x%llx-0x%llx were evacuated as "
				       "failing memory; PFNs there cannot go back to identity",
				       (unsigned long long)in->retired[i][0],
				       (unsigned long long)in->retired[i][1]);
	if (in->nent == 0) {   /* all identity: the common, cheap case */
		for (size_t i = 0; i < in->nwant; i++)
			out->skipped += in->want[i][1] - in->want[i][0];
		return 0;
	}
	if (setup(&p, e) < 0)
		goto out;
	for (size_t i = 0; i < in->nent; i++)
		if (p.pending[i] && *count_of(&p, in->ent[i].pfn) == 0)
			p.queue[p.qtail++] = in->ent[i].pfn;
	if (unwind(&p) < 0) {
		err_set(e, ENOMEM, "out of memory planning moves");
		goto out;
	}
	if (evict(&p, e) == 0)
		rc = cycles(&p, e);
out:
	if (rc < 0)
		plan_free(out);
	free(p.cur);
	free(p.temp);
	free(p.pending);
	free(p.pool);
	free(p.queue);
	map_free(&p.pfn_idx);
	map_free(&p.count);
	return rc;
}

void plan_free(struct plan *p)
{
	free(p->mv);
	p->mv = NULL;
	p->n = p->cap = 0;
}

const char *plan_kind_name(enum plan_kind k)
{
	static const char *names[] = { "evict", "direct", "to-temp", "from-temp" };
	return (unsigned)k < 4 ? names[k] : "?";
}
