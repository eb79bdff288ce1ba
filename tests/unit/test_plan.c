/* Unit tests: the devirtualize planner, property-checked on thousands of
 * random P2M states (permutations with cycles of every length, chains onto
 * spare frames, shared frames, partial ranges, scarce free frames). Applying
 * its moves to a model must give the identity without ever overwriting a
 * live frame, with one temporary frame per cycle and the expected copies. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

#define MAXF 1024

struct model {
	uint64_t n, spare;                /* RAM pages [0,n), spare [n, n+spare) */
	uint64_t virt[2][2];
	size_t nvirt;
	uint64_t want[1][2];
	uint64_t p2m[MAXF];
	uint64_t content[MAXF];           /* per frame: a token */
	uint64_t expect[MAXF];            /* per PFN: its token */
	int count[MAXF];
	uint64_t retired[1][2];
	size_t nretired;
};

static uint64_t rng;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? rng % n : 0;
}

static bool in(const uint64_t (*r)[2], size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (x >= r[i][0] && x < r[i][1])
			return true;
	return false;
}

static bool virt(const struct model *md, uint64_t p)
{
	return in((const uint64_t (*)[2])md->virt, md->nvirt, p);
}

static bool usable(const struct model *md, uint64_t f)
{
	return virt(md, f) || (f >= md->n && f < md->n + md->spare);
}

static void model_init(struct model *md, uint64_t n, uint64_t spare, bool partial)
{
	memset(md, 0, sizeof(*md));
	md->n = n;
	md->spare = spare;
	if (partial) {
		uint64_t a = rnd(n / 2), b = a + 1 + rnd(n / 2);
		md->virt[0][0] = a;
		md->virt[0][1] = b;
		md->nvirt = 1;
		if (b + 2 < n) {
			md->virt[1][0] = b + 1 + rnd(n - b - 1);
			md->virt[1][1] = n;
			md->nvirt = 2;
		}
	} else {
		md->virt[0][1] = n;
		md->nvirt = 1;
	}
	for (uint64_t f = 0; f < n + spare; f++) {
		md->content[f] = 1000 + f;
		if (f < n) {
			md->p2m[f] = f;
			md->count[f] = 1;
		}
	}
}

static void assign(struct model *md, uint64_t p, uint64_t f)
{
	md->count[md->p2m[p]]--;
	md->p2m[p] = f;
	md->count[f]++;
}

static uint64_t pick_virt(struct model *md)
{
	for (;;) {
		uint64_t p = rnd(md->n);
		if (virt(md, p))
			return p;
	}
}

/* Rotate the frames of k distinct unshared virtualized PFNs. */
static void scramble(struct model *md, unsigned k)
{
	uint64_t p[64], f[64];
	unsigned n = 0;

	for (unsigned tries = 0; n < k && tries < 500; tries++) {
		uint64_t q = pick_virt(md);
		bool dup = md->count[md->p2m[q]] != 1;
		for (unsigned i = 0; i < n; i++)
			dup |= p[i] == q;
		if (!dup)
			p[n++] = q;
	}
	for (unsigned i = 0; i < n; i++)
		f[i] = md->p2m[p[i]];
	for (unsigned i = 0; i < n; i++)
		md->p2m[p[i]] = f[(i + 1) % n];
}

static uint64_t free_frame(struct model *md)
{
	for (unsigned tries = 0; tries < 200; tries++) {
		uint64_t f = rnd(md->n + md->spare);
		if (usable(md, f) && md->count[f] == 0)
			return f;
	}
	return UINT64_MAX;
}

static void random_state(struct model *md, bool shares)
{
	unsigned ops = 1 + (unsigned)rnd(12);
	for (unsigned i = 0; i < ops; i++) {
		unsigned what = (unsigned)rnd(shares ? 4 : 3);
		if (what <= 1) {
			scramble(md, 1 + (unsigned)rnd(20));
		} else if (what == 2) {
			uint64_t f = free_frame(md);
			if (f != UINT64_MAX)
				assign(md, pick_virt(md), f);   /* migrate */
		} else {
			uint64_t a = pick_virt(md), b = pick_virt(md);
			if (md->p2m[a] != md->p2m[b])
				assign(md, b, md->p2m[a]);      /* share (contents merge) */
		}
	}
	for (uint64_t p = 0; p < md->n; p++)
		md->expect[p] = md->content[md->p2m[p]];
}

struct result {
	struct plan pl;
	int rc;
	size_t nent_want, nent;
};

static struct result run(struct model *md, bool scarce)
{
	struct plan_entry ent[MAXF];
	uint64_t fr[MAXF];
	struct result r = {0};
	size_t nf = 0;
	struct err e = {0};

	for (uint64_t p = 0; p < md->n; p++)
		if (virt(md, p) && md->p2m[p] != p) {
			ent[r.nent++] = (struct plan_entry){ p, md->p2m[p] };
			r.nent_want += in((const uint64_t (*)[2])md->want, 1, p);
		}
	for (uint64_t f = 0; f < md->n + md->spare; f++)
		if (usable(md, f) && md->count[f] == 0 && !(scarce && rnd(2)) &&
		    !in((const uint64_t (*)[2])md->retired, md->nretired, f))
			fr[nf++] = f;
	struct plan_input pin = {
		.want = (const uint64_t (*)[2])md->want, .nwant = 1,
		.virt = (const uint64_t (*)[2])md->virt, .nvirt = md->nvirt,
		.ent = ent, .nent = r.nent, .free = fr, .nfree = nf,
		.retired = (const uint64_t (*)[2])md->retired, .nretired = md->nretired,
	};
	r.rc = plan_devirtualize(&pin, &r.pl, &e);
	if (r.rc < 0)
		ck_assert_msg(e.msg[0], "failure without a message");
	return r;
}

/* Apply the moves to the model, checking every step. */
static void apply_and_check(struct model *md, const struct result *r)
{
	const struct plan *pl = &r->pl;
	uint64_t live_temp = UINT64_MAX, to_temp = 0, from_temp = 0;

	for (size_t i = 0; i < pl->n; i++) {
		const struct plan_move *mv = &pl->mv[i];
		ck_assert_uint_eq(md->p2m[mv->pfn], mv->from);
		ck_assert_msg(md->count[mv->to] == 0, "move %zu (%s) overwrites live frame %llu",
			      i, plan_kind_name(mv->kind), (unsigned long long)mv->to);
		ck_assert(usable(md, mv->to));
		ck_assert(!in((const uint64_t (*)[2])md->retired, md->nretired, mv->to));
		if (mv->kind == PLAN_TO_TEMP) {
			ck_assert_msg(live_temp == UINT64_MAX, "two temporary frames at once");
			live_temp = mv->to;
			to_temp++;
		}
		if (mv->kind == PLAN_FROM_TEMP) {
			ck_assert_uint_eq(mv->from, live_temp);
			live_temp = UINT64_MAX;
			from_temp++;
		}
		if (mv->kind == PLAN_EVICT)
			ck_assert(!in((const uint64_t (*)[2])md->want, 1, mv->pfn));
		md->content[mv->to] = md->content[mv->from];
		assign(md, mv->pfn, mv->to);
	}
	ck_assert_uint_eq(live_temp, UINT64_MAX);
	ck_assert_uint_eq(to_temp, pl->cycles);
	ck_assert_uint_eq(from_temp, pl->cycles);
	ck_assert_uint_eq(pl->indirect, pl->cycles);
	for (uint64_t p = 0; p < md->n; p++) {
		if (in((const uint64_t (*)[2])md->want, 1, p)) {
			ck_assert_msg(md->p2m[p] == p, "PFN %llu not identity", (unsigned long long)p);
			ck_assert_int_eq(md->count[p], 1);
		}
		ck_assert_msg(md->content[md->p2m[p]] == md->expect[p],
			      "PFN %llu lost its contents", (unsigned long long)p);
	}
	/* Each page in range copied once, plus one extra per cycle and evictions. */
	ck_assert_uint_eq(pl->n, r->nent_want + pl->cycles + pl->evicted);
	ck_assert_uint_eq(pl->direct + pl->indirect, r->nent_want);
	ck_assert_uint_eq(pl->skipped + r->nent_want,
			  md->want[0][1] - md->want[0][0]);
}

/* What each page must read after devirtualize: what it reads now. */
static void expect_current(struct model *md, uint64_t pages)
{
	for (uint64_t p = 0; p < pages; p++)
		md->expect[p] = md->content[md->p2m[p]];
}

START_TEST(random_full_permutations)
{
	rng = 0x1234 + (uint64_t)_i;
	for (int iter = 0; iter < 800; iter++) {
		struct model md;
		model_init(&md, 16 + rnd(400), 1 + rnd(8), false);
		md.want[0][0] = md.virt[0][0];
		md.want[0][1] = md.virt[0][1];
		/* One pure permutation: count its cycles independently. */
		scramble(&md, 2 + (unsigned)rnd(60));
		scramble(&md, 2 + (unsigned)rnd(60));
		expect_current(&md, md.n);
		uint64_t cycles = 0;
		bool seen[MAXF] = {0};
		for (uint64_t p = 0; p < md.n; p++) {
			if (seen[p] || md.p2m[p] == p)
				continue;
			cycles++;
			for (uint64_t q = p; !seen[q]; q = md.p2m[q])
				seen[q] = true;
		}
		struct result r = run(&md, false);
		ck_assert_int_eq(r.rc, 0);
		ck_assert_uint_eq(r.pl.cycles, cycles);
		apply_and_check(&md, &r);
		plan_free(&r.pl);
	}
}
END_TEST

START_TEST(random_mixed_states)
{
	rng = 0xabcdef + (uint64_t)_i;
	unsigned ok = 0, refused = 0;
	for (int iter = 0; iter < 2000; iter++) {
		struct model md;
		bool partial = rnd(2), scarce = rnd(3) == 0;
		model_init(&md, 16 + rnd(300), rnd(4) == 0 ? 0 : 1 + rnd(16), partial);
		random_state(&md, true);
		/* Devirtualize all of one range, or a piece of it. */
		size_t v = rnd(md.nvirt);
		uint64_t a = md.virt[v][0], b = md.virt[v][1];
		if (rnd(2) && b - a > 2) {
			a += rnd((b - a) / 2);
			b -= rnd((b - a) / 2);
		}
		md.want[0][0] = a;
		md.want[0][1] = b;
		struct result r = run(&md, scarce);
		if (r.rc == 0) {
			apply_and_check(&md, &r);
			ok++;
		} else {
			refused++;
		}
		plan_free(&r.pl);
	}
	ck_assert_uint_gt(ok, 1000);   /* most states are plannable */
	ck_assert_uint_gt(refused, 0); /* and scarcity is really exercised */
}
END_TEST

START_TEST(identity_is_all_skipped)
{
	struct model md;
	rng = 7;
	model_init(&md, 100, 4, false);
	md.want[0][1] = 100;
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.pl.n, 0);
	ck_assert_uint_eq(r.pl.skipped, 100);
	plan_free(&r.pl);
}
END_TEST

START_TEST(swap_needs_one_temp)
{
	struct model md;
	rng = 9;
	model_init(&md, 8, 1, false);
	md.want[0][1] = 8;
	md.p2m[2] = 5;
	md.p2m[5] = 2;
	expect_current(&md, 8);
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.pl.n, 3);
	ck_assert_int_eq(r.pl.mv[0].kind, PLAN_TO_TEMP);
	ck_assert_uint_eq(r.pl.mv[0].to, 8);
	ck_assert_int_eq(r.pl.mv[1].kind, PLAN_DIRECT);
	ck_assert_int_eq(r.pl.mv[2].kind, PLAN_FROM_TEMP);
	apply_and_check(&md, &r);
	plan_free(&r.pl);
}
END_TEST

START_TEST(chain_is_direct)
{
	struct model md;
	rng = 11;
	model_init(&md, 8, 1, false);
	md.want[0][1] = 8;
	/* 1 sits on spare 8, 2 on 1's frame, 3 on 2's: unwinds with no temp. */
	assign(&md, 1, 8);
	assign(&md, 2, 1);
	assign(&md, 3, 2);
	expect_current(&md, 8);
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.pl.cycles, 0);
	ck_assert_uint_eq(r.pl.direct, 3);
	apply_and_check(&md, &r);
	plan_free(&r.pl);
}
END_TEST

START_TEST(cycle_without_free_frame_refused)
{
	struct model md;
	rng = 13;
	model_init(&md, 8, 0, false);
	md.want[0][1] = 8;
	md.p2m[2] = 5;
	md.p2m[5] = 2;
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, -1);
	ck_assert_ptr_null(r.pl.mv);
}
END_TEST

START_TEST(retired_home_refused)
{
	struct model md;
	rng = 17;
	model_init(&md, 8, 2, false);
	md.want[0][1] = 8;
	assign(&md, 3, 8);
	md.retired[0][0] = 3;
	md.retired[0][1] = 4;
	md.nretired = 1;
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, -1);
}
END_TEST

START_TEST(shared_frame_split)
{
	struct model md;
	rng = 19;
	model_init(&md, 8, 2, false);
	md.want[0][1] = 8;
	assign(&md, 4, 2);   /* 4 shares 2's frame; frame 4 is free */
	assign(&md, 6, 2);   /* and 6 too */
	expect_current(&md, 8);
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.pl.n, 2);   /* each extra sharer gets its own copy */
	apply_and_check(&md, &r);
	plan_free(&r.pl);
}
END_TEST

START_TEST(partial_evicts_outsiders)
{
	struct model md;
	rng = 23;
	model_init(&md, 16, 2, false);
	md.want[0][0] = 0;
	md.want[0][1] = 8;
	md.p2m[3] = 12;   /* 3 (in range) and 12 (outside) swapped */
	md.p2m[12] = 3;
	expect_current(&md, 16);
	struct result r = run(&md, false);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_uint_eq(r.pl.evicted, 1);
	ck_assert_int_eq(r.pl.mv[0].kind, PLAN_EVICT);
	apply_and_check(&md, &r);
	ck_assert_uint_ne(md.p2m[12], 12);   /* outside stays virtualized */
	plan_free(&r.pl);
}
END_TEST

static Suite *plan_suite(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("planner");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, random_full_permutations, 0, 2);
	tcase_add_loop_test(tc, random_mixed_states, 0, 2);
	tcase_add_test(tc, identity_is_all_skipped);
	tcase_add_test(tc, swap_needs_one_temp);
	tcase_add_test(tc, chain_is_direct);
	tcase_add_test(tc, cycle_without_free_frame_refused);
	tcase_add_test(tc, retired_home_refused);
	tcase_add_test(tc, shared_frame_split);
	tcase_add_test(tc, partial_evicts_outsiders);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(plan_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
