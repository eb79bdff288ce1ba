/* The composed-translation cache: see tlb.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tlb.h"

#define TLB_WAYS 8u
#define NIL UINT32_MAX

struct tlb_slot {
	struct tlb_key key;
	struct tlb_val val;
	uint32_t rprev, rnext;    /* chain of the reverse-index bucket of val.pfn */
};

struct tlb {
	unsigned nsets, nrev, count;
	struct tlb_slot *slot;    /* nsets * TLB_WAYS */
	uint64_t *tag;            /* per slot: key hash | 1, 0 when empty; a set's
				   * tags share one cache line, so a lookup reads
				   * one line plus the matching slot */
	uint8_t *victim;          /* per set: next way to evict (round robin) */
	uint32_t *rhead;          /* reverse index: bucket -> first slot */
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint64_t hash_of(const struct tlb_key *k)
{
	return mix(k->vpn ^ mix(k->root ^ k->ctl)) | 1;
}

static unsigned set_of(const struct tlb *t, uint64_t hash)
{
	return (unsigned)((hash >> 1) & (t->nsets - 1));
}

static unsigned bucket_of(const struct tlb *t, uint64_t pfn)
{
	return (unsigned)(mix(pfn) & (t->nrev - 1));
}

static bool key_eq(const struct tlb_key *a, const struct tlb_key *b)
{
	return a->vpn == b->vpn && a->root == b->root && a->ctl == b->ctl;
}

struct tlb *tlb_new(unsigned capacity)
{
	unsigned n = TLB_WAYS;
	while (n < capacity && n < (1u << 24))
		n <<= 1;
	struct tlb *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->nsets = n / TLB_WAYS;
	t->nrev = n;
	t->slot = calloc(n, sizeof(*t->slot));
	t->tag = aligned_alloc(64, sizeof(*t->tag) * n);
	t->victim = calloc(t->nsets, 1);
	t->rhead = malloc(sizeof(*t->rhead) * t->nrev);
	if (!t->slot || !t->tag || !t->victim || !t->rhead) {
		tlb_free(t);
		return NULL;
	}
	tlb_flush(t);
	return t;
}

void tlb_free(struct tlb *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t->tag);
	free(t->victim);
	free(t->rhead);
	free(t);
}

unsigned tlb_capacity(const struct tlb *t)
{
	return t->nsets * TLB_WAYS;
}

unsigned tlb_count(const struct tlb *t)
{
	return t->count;
}

static void rev_link(struct tlb *t, uint32_t i)
{
	struct tlb_slot *s = &t->slot[i];
	uint32_t *head = &t->rhead[bucket_of(t, s->val.pfn)];
	s->rprev = NIL;
	s->rnext = *head;
	if (*head != NIL)
		t->slot[*head].rprev = i;
	*head = i;
}

static void rev_unlink(struct tlb *t, uint32_t i)
{
	struct tlb_slot *s = &t->slot[i];
	if (s->rprev != NIL)
		t->slot[s->rprev].rnext = s->rnext;
	else
		t->rhead[bucket_of(t, s->val.pfn)] = s->rnext;
	if (s->rnext != NIL)
		t->slot[s->rnext].rprev = s->rprev;
}

static void drop(struct tlb *t, uint32_t i)
{
	rev_unlink(t, i);
	t->tag[i] = 0;
	t->count--;
}

/* Index of the valid slot holding k, or NIL. */
static uint32_t find(const struct tlb *t, const struct tlb_key *k, uint64_t hash)
{
	uint32_t base = set_of(t, hash) * TLB_WAYS;
	for (uint32_t w = 0; w < TLB_WAYS; w++)
		if (t->tag[base + w] == hash && key_eq(&t->slot[base + w].key, k))
			return base + w;
	return NIL;
}

bool tlb_lookup(const struct tlb *t, const struct tlb_key *k, struct tlb_val *out)
{
	uint32_t i = find(t, k, hash_of(k));
	if (i == NIL)
		return false;
	*out = t->slot[i].val;
	return true;
}

/* A free way of k's set, else the round-robin victim (dropped first). */
static uint32_t claim(struct tlb *t, uint64_t hash)
{
	unsigned set = set_of(t, hash);
	uint32_t base = set * TLB_WAYS;
	for (uint32_t w = 0; w < TLB_WAYS; w++)
		if (!t->tag[base + w])
			return base + w;
	uint32_t i = base + t->victim[set];
	t->victim[set] = (uint8_t)((t->victim[set] + 1) % TLB_WAYS);
	drop(t, i);
	return i;
}

void tlb_insert(struct tlb *t, const struct tlb_key *k, const struct tlb_val *v)
{
	uint64_t hash = hash_of(k);
	uint32_t i = find(t, k, hash);
	if (i != NIL)
		drop(t, i);
	else
		i = claim(t, hash);
	struct tlb_slot *s = &t->slot[i];
	s->key = *k;
	s->val = *v;
	t->tag[i] = hash;
	t->count++;
	rev_link(t, i);
}

bool tlb_remove(struct tlb *t, const struct tlb_key *k)
{
	uint32_t i = find(t, k, hash_of(k));
	if (i == NIL)
		return false;
	drop(t, i);
	return true;
}

unsigned tlb_invalidate_pfn(struct tlb *t, uint64_t pfn)
{
	unsigned n = 0;
	uint32_t i = t->rhead[bucket_of(t, pfn)];
	while (i != NIL) {
		uint32_t next = t->slot[i].rnext;
		if (t->slot[i].val.pfn == pfn) {
			drop(t, i);
			n++;
		}
		i = next;
	}
	return n;
}

void tlb_flush(struct tlb *t)
{
	unsigned n = tlb_capacity(t);
	for (unsigned i = 0; i < n; i++)
		t->tag[i] = 0;
	for (unsigned b = 0; b < t->nrev; b++)
		t->rhead[b] = NIL;
	t->count = 0;
}
