/* The devirtualize planner (claims 17-19): a pure function from a P2M state
 * to an ordered list of page moves that makes the PFN ranges `want` the identity.
 *
 * Input: every virtualized PFN that does not map its own frame (everything
 * else is identity), the virtualized ranges, the free frames and the retired
 * frames. Each move means "copy frame `from` to the free frame `to`, then
 * map PFN `pfn` to `to`; `from` is released when nobody maps it any more".
 *
 *  - identity pages are skipped;
 *  - a page whose own frame is free goes straight home (DIRECT); freeing its
 *    old frame may free the next page's home, so chains unwind in order;
 *  - what remains are pure cycles; each is broken with exactly one temporary
 *    frame: its first page goes to the temp (TO_TEMP), the rest unwind
 *    directly, and the first page comes home last (FROM_TEMP);
 *  - a frame shared by several PFNs gives each extra sharer its own copy;
 *  - a PFN outside `want` sitting on a frame inside it is moved to a free
 *    frame outside (EVICT), then the pages it blocked unwind, since that frame's owner needs it.
 * Nothing is executed: on failure (no free frame for a temp or an eviction,
 * a retired home frame) the caller has changed nothing. */
#ifndef VMSWITCH_MEM_PLAN_H
#define VMSWITCH_MEM_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "vmswitch/err.h"

struct plan_entry { uint64_t pfn, mfn; };

enum plan_kind { PLAN_EVICT, PLAN_DIRECT, PLAN_TO_TEMP, PLAN_FROM_TEMP };

struct plan_move {
	uint64_t pfn, from, to;
	enum plan_kind kind;
};

struct plan_input {
	const uint64_t (*want)[2];        /* PFN ranges to make identity */
	size_t nwant;
	const uint64_t (*virt)[2];        /* all virtualized PFN ranges */
	size_t nvirt;
	const struct plan_entry *ent;     /* non-identity virtualized PFNs */
	size_t nent;
	const uint64_t *free;             /* free machine frames */
	size_t nfree;
	const uint64_t (*retired)[2];     /* frames never to be used */
	size_t nretired;
};

struct plan {
	struct plan_move *mv;
	size_t n, cap;
	uint64_t skipped, direct, indirect, evicted, cycles;
};

int plan_devirtualize(const struct plan_input *in, struct plan *out, struct err *e);
void plan_free(struct plan *p);
const char *plan_kind_name(enum plan_kind k);

#endif
