/* Unit tests: the three back-map strategies (list, refcount, search) give
 * the same answers as each other and as a brute-force inversion of the P2M,
 * after random sequences of migrate, scramble, share, evacuate and partial
 * (de)virtualization; and their per-page memory is as small as promised. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/mem.h"
#include "vmswitch/util.h"

#define RAM (2 * MiB)
#define SPARE (256 * KiB)
#define PAGES (RAM / PAGE_SIZE)
#define FRAMES (PAGES + SPARE / PAGE_SIZE)

static uint64_t rng;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct mem *make(enum backmap_kind k)
{
	struct mem_config cfg = { .ram_size = RAM, .spare_size = SPARE, .backmap = k };
	struct err e = {0};
	struct mem *m;
	ck_assert_msg(mem_create(&cfg, NULL, &m, &e) == 0, "%s", e.msg);
	return m;
}

/* The same operation on every mem: all must agree on success. */
static void op_all(struct mem **m, int kind, uint64_t a, uint64_t b)
{
	int rc[3];
	for (int i = 0; i < 3; i++) {
		struct err e = {0};
		switch (kind) {
		case 0: rc[i] = mem_migrate(m[i], a, b, &e); break;
		case 1: rc[i] = mem_scramble(m[i], a, b, &e); break;
		case 2: rc[i] = mem_share(m[i], a, b, &e); break;
		case 3: rc[i] = mem_evacuate(m[i], a, b, &e); break;
		case 4: rc[i] = mem_devirtualize(m[i], a, b, &e); break;
		case 5: rc[i] = mem_virtualize(m[i], a, b, &e); break;
		default: rc[i] = mem_unretire(m[i], a, b, &e); break;
		}
		if (kind == 5 && rc[i] < 0 && e.code == ENOTSUP) {
			printf("SKIP: %s\n", e.msg);
			exit(77);
		}
	}
	ck_assert_msg(rc[0] == rc[1] && rc[1] == rc[2], "op %d(%llu,%llu): %d %d %d", kind,
		      (unsigned long long)a, (unsigned long long)b, rc[0], rc[1], rc[2]);
}

static void compare(struct mem **m)
{
	static uint64_t inv[FRAMES][8];
	static size_t ninv[FRAMES];
	uint64_t got[16];
	size_t n;
	struct err e = {0};

	memset(ninv, 0, sizeof(ninv));
	for (uint64_t p = 0; p < PAGES; p++) {
		uint64_t f0, f;
		ck_assert_int_eq(mem_p2m(m[0], p, &f0), 0);
		for (int i = 1; i < 3; i++) {
			ck_assert_int_eq(mem_p2m(m[i], p, &f), 0);
			ck_assert_uint_eq(f, f0);
		}
		ck_assert_uint_lt(f0, FRAMES);
		if (ninv[f0] < 8)
			inv[f0][ninv[f0]] = p;
		ninv[f0]++;
	}
	for (uint64_t f = 0; f < FRAMES; f++)
		for (int i = 0; i < 3; i++) {
			ck_assert_int_eq(mem_backmap(m[i], f, got, 16, &n, &e), 0);
			ck_assert_msg(n == ninv[f], "strategy %d: frame %llu has %zu PFNs, P2M says %zu",
				      i, (unsigned long long)f, n, ninv[f]);
			qsort(got, MIN(n, 16), sizeof(got[0]), cmp);
			for (size_t j = 0; j < MIN(n, 8); j++)
				ck_assert_uint_eq(got[j], inv[f][j]);
		}
	struct mem_p2m_summary s[3];
	for (int i = 0; i < 3; i++)
		mem_p2m_summary(m[i], &s[i]);
	for (int i = 1; i < 3; i++)
		ck_assert(memcmp(&s[0], &s[i], sizeof(s[0])) == 0);
}

START_TEST(strategies_agree)
{
	struct mem *m[3] = { make(BACKMAP_LIST), make(BACKMAP_REFCOUNT), make(BACKMAP_SEARCH) };
	rng = 0x5eed + (uint64_t)_i;
	op_all(m, 5, 0, 0);
	for (int step = 0; step < 150; step++) {
		unsigned k = (unsigned)rnd(20);
		if (k < 6) {   /* mostly to the spare frames, sometimes refused */
			op_all(m, 0, rnd(PAGES), rnd(FRAMES));
		} else if (k < 9) {
			op_all(m, 1, rnd(1000), rnd(40));
		} else if (k < 14) {
			uint64_t a = rnd(PAGES);
			op_all(m, 2, a, rnd(8) ? rnd(PAGES) : a);
		} else if (k < 16) {
			uint64_t a = rnd(FRAMES - 4);
			op_all(m, 3, a, a + 1 + rnd(3));
		} else if (k < 18) {
			uint64_t a = rnd(PAGES - 64);
			op_all(m, 4, a, a + 1 + rnd(64));
			op_all(m, 5, 0, 0);
		} else {
			/* Give back every retired range so devirtualize can succeed. */
			for (uint64_t f = 0; f < FRAMES; f++)
				for (uint64_t l = 1; l <= 3; l++)
					op_all(m, 6, f, f + l);
		}
		compare(m);
	}
	for (uint64_t f = 0; f < FRAMES; f++)
		for (uint64_t l = 1; l <= 3; l++)
			op_all(m, 6, f, f + l);
	op_all(m, 4, 0, 0);
	compare(m);
	for (int i = 0; i < 3; i++)
		mem_destroy(m[i]);
}
END_TEST

/* Per-page monitor memory with every page remapped. */
START_TEST(monitor_bytes_per_page)
{
	static const char *names[] = { "list", "refcount", "search" };
	static const double limit[] = { 14.5, 8, 5 };   /* includes page rounding */
	for (int k = 0; k < 3; k++) {
		struct mem_config cfg = { .ram_size = 16 * MiB, .spare_size = 64 * KiB,
					  .backmap = (enum backmap_kind)k };
		struct err e = {0};
		struct mem *m;
		struct mem_info info;
		ck_assert_msg(mem_create(&cfg, NULL, &m, &e) == 0, "%s", e.msg);
		if (mem_virtualize(m, 0, 0, &e) < 0) {
			printf("SKIP: %s\n", e.msg);
			exit(77);
		}
		ck_assert_msg(mem_scramble(m, 3, 0, &e) == 0, "%s", e.msg);
		mem_info(m, &info);
		double per = (double)info.monitor_bytes / (double)(16 * MiB / PAGE_SIZE);
		printf("backmap %-8s %.2f bytes/page\n", names[k], per);
		ck_assert_str_eq(info.backmap, names[k]);
		ck_assert_msg(per <= limit[k], "%s: %.2f bytes/page", names[k], per);
		ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
		mem_info(m, &info);
		ck_assert_uint_eq(info.monitor_bytes, 0);
		mem_destroy(m);
	}
}
END_TEST

static Suite *backmap_suite(void)
{
	Suite *s = suite_create("backmap");
	TCase *tc = tcase_create("backmap");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, strategies_agree, 0, 3);
	tcase_add_test(tc, monitor_bytes_per_page);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(backmap_suite());
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
