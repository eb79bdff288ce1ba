/* Unit tests for mem/tlb.c, the composed-translation cache as a data
 * structure: lookups agree with a model, the reverse index drops exactly the
 * translations of one PFN, eviction keeps both indexes consistent. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "tlb.h"

#include "check_run.h"

static struct tlb_key key(uint64_t root, uint64_t vpn)
{
	return (struct tlb_key){.root = root, .vpn = vpn, .ctl = 2};
}

static struct tlb_val val(uint64_t pfn)
{
	return (struct tlb_val){.pfn = pfn, .mfn = pfn + 1000, .page_size = 4096,
				.leaf_gpa = pfn * 8, .leaf_entry = pfn << 12, .perm = 3};
}

START_TEST(insert_lookup_remove)
{
	struct tlb *t = tlb_new(10);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(tlb_capacity(t), 16);
	struct tlb_key k = key(0x1000, 5);
	struct tlb_val v = val(77), got;
	ck_assert(!tlb_lookup(t, &k, &got));
	tlb_insert(t, &k, &v);
	ck_assert(tlb_lookup(t, &k, &got));
	ck_assert_uint_eq(got.pfn, 77);
	ck_assert_uint_eq(got.mfn, 1077);
	ck_assert_uint_eq(tlb_count(t), 1);
	/* Same vpn, other root or other control bits: other translations. */
	struct tlb_key k2 = key(0x2000, 5), k3 = k;
	k3.ctl = 3;
	ck_assert(!tlb_lookup(t, &k2, &got));
	ck_assert(!tlb_lookup(t, &k3, &got));
	/* Re-inserting replaces, and moves the entry in the reverse index. */
	v = val(78);
	tlb_insert(t, &k, &v);
	ck_assert_uint_eq(tlb_count(t), 1);
	ck_assert_uint_eq(tlb_invalidate_pfn(t, 77), 0);
	ck_assert_uint_eq(tlb_invalidate_pfn(t, 78), 1);
	ck_assert_uint_eq(tlb_count(t), 0);
	tlb_insert(t, &k, &v);
	ck_assert(tlb_remove(t, &k));
	ck_assert(!tlb_remove(t, &k));
	ck_assert_uint_eq(tlb_count(t), 0);
	tlb_free(t);
}
END_TEST

START_TEST(eviction_bounded)
{
	struct tlb *t = tlb_new(64);
	for (uint64_t i = 0; i < 10000; i++) {
		struct tlb_key k = key(0x1000, i);
		struct tlb_val v = val(i % 50);
		tlb_insert(t, &k, &v);
		ck_assert_uint_le(tlb_count(t), 64);
	}
	ck_assert_uint_ge(tlb_count(t), 48);   /* sets fill up */
	unsigned dropped = 0;
	for (uint64_t p = 0; p < 50; p++)
		dropped += tlb_invalidate_pfn(t, p);
	ck_assert_uint_ge(dropped, 48);
	ck_assert_uint_eq(tlb_count(t), 0);
	tlb_free(t);
}
END_TEST

/* Random inserts, removes, invalidations and flushes against a model that
 * knows every live translation; the cache may have evicted some, never
 * invented or kept one it should have dropped. */
#define NKEYS 600
#define NPFNS 40

START_TEST(random_against_model)
{
	struct tlb *t = tlb_new(256);
	static struct {
		bool live;
		uint64_t pfn;
	} model[NKEYS];
	unsigned seed = 99;
	for (int op = 0; op < 200000; op++) {
		seed = seed * 1664525u + 1013904223u;
		unsigned r = seed >> 8, kind = r % 100;
		unsigned ki = (r / 100) % NKEYS;
		struct tlb_key k = key(ki & 1 ? 0x3000 : 0x4000, ki / 2);
		if (kind < 60) {
			struct tlb_val v = val((r / 7) % NPFNS);
			tlb_insert(t, &k, &v);
			model[ki].live = true;
			model[ki].pfn = v.pfn;
		} else if (kind < 75) {
			bool was = tlb_remove(t, &k);
			ck_assert(!was || model[ki].live);
			model[ki].live = false;
		} else if (kind < 99) {
			struct tlb_val got;
			if (tlb_lookup(t, &k, &got)) {
				ck_assert(model[ki].live);
				ck_assert_uint_eq(got.pfn, model[ki].pfn);
				ck_assert_uint_eq(got.mfn, model[ki].pfn + 1000);
			}
		} else if (r % 7) {
			uint64_t pfn = (r / 3) % NPFNS;
			unsigned present = 0;
			struct tlb_val got;
			for (unsigned i = 0; i < NKEYS; i++) {
				struct tlb_key ik = key(i & 1 ? 0x3000 : 0x4000, i / 2);
				if (model[i].live && model[i].pfn == pfn && tlb_lookup(t, &ik, &got))
					present++;
			}
			ck_assert_uint_eq(tlb_invalidate_pfn(t, pfn), present);
			for (unsigned i = 0; i < NKEYS; i++)
				if (model[i].pfn == pfn)
					model[i].live = false;
		} else {
			tlb_flush(t);
			for (unsigned i = 0; i < NKEYS; i++)
				model[i].live = false;
			ck_assert_uint_eq(tlb_count(t), 0);
		}
		ck_assert_uint_le(tlb_count(t), 256);
	}
	/* Final census: count equals what lookups find. */
	unsigned found = 0;
	struct tlb_val got;
	for (unsigned i = 0; i < NKEYS; i++) {
		struct tlb_key k = key(i & 1 ? 0x3000 : 0x4000, i / 2);
		found += tlb_lookup(t, &k, &got);
	}
	ck_assert_uint_eq(found, tlb_count(t));
	tlb_free(t);
}
END_TEST

static Suite *tlb_suite(void)
{
	Suite *s = suite_create("tlb");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, insert_lookup_remove);
	tcase_add_test(tc, eviction_bounded);
	tcase_add_test(tc, random_against_model);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(tlb_suite(), false);
}
