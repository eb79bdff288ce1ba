/* Unit tests: the remap executor under concurrent writers.
 *
 * Writer threads stand in for vCPUs: they write PFN-tagged values through
 * mem_gpa_hva() the whole time and record the last value written to every
 * word. Meanwhile the test runs rounds of virtualize -> scramble -> migrate
 * -> share (then the writers write the shared pages: copy-on-write) ->
 * evacuate -> devirtualize. At the end every word must hold exactly what
 * its writer last wrote, P2M must be the identity and each window one
 * mapping again. With uffd write protection (1 and 2 writers) and with
 * paused batches (the pause callback stops the writers), and by default
 * (a whole devirtualize unmaps what it moves: lazy.c, in every other round
 * the chunks the writers touched last, after splitting the frames still
 * shared, which a thread writes meanwhile; once, that unmapping is made to
 * fail half way, and must leave everything virtualized and intact). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmswitch/mem.h"
#include "vmswitch/util.h"
#include "smaps.h"
#include "mem_internal.h"   /* move_page for the negative control, fail_unmap_after, wp_protect */

#define RAM (16 * MiB)
#define SPARE (2 * MiB)
#define PAGES (RAM / PAGE_SIZE)
#define HOT 2048              /* pages [0, HOT) written from the start */
#define PAIRS 16              /* shared pairs per round, from the cold pages */
#define WORDS 512
#define FILLED_PAIRS 4        /* shared pairs nobody writes, split by devirtualize */

/* How the rig protects copies: uffd-wp forced, paused batches forced, or the
 * default (paused batches while nothing is shared). In the last two the
 * writers honour pauses. */
enum protect { PROTECT_WP, PROTECT_PAUSE, PROTECT_DEFAULT };

struct rig {
	struct mem *m;
	unsigned nwriters;
	bool pause_mode;          /* writers honour pauses (never share then) */
	bool unmapped;            /* whole devirtualize expected to unmap (lazy.c) */
	pthread_rwlock_t gate;    /* writers read-hold it per store; pause write-holds it */
	atomic_bool stop;
	atomic_uint_fast64_t cold_open;   /* cold pages [HOT, cold_open) are written too */
	uint64_t *last;           /* per word: last value written (0 = never) */
	atomic_uint_fast64_t writes;
	atomic_uint_fast64_t lost;   /* a word read back different from its last write */
};

struct writer { struct rig *r; unsigned id; pthread_t t; };

static int pause_writers(void *ctx)
{
	return pthread_rwlock_wrlock(&((struct rig *)ctx)->gate) ? -1 : 0;
}

static void resume_writers(void *ctx)
{
	pthread_rwlock_unlock(&((struct rig *)ctx)->gate);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct rig *r = w->r;
	uint64_t s = 0x9E3779B97F4A7C15ULL * (w->id + 1), seq = 0;

	while (!atomic_load(&r->stop)) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		uint64_t open = atomic_load(&r->cold_open);
		uint64_t span = (s >> 60) < 2 && open > HOT ? open : HOT;
		uint64_t pfn = (s >> 8) % span;
		pfn -= pfn % r->nwriters;
		pfn += w->id;
		if (pfn >= span)
			continue;
		unsigned word = (unsigned)(s >> 40) % WORDS;
		uint64_t v = (pfn << 40) | ((uint64_t)w->id << 36) | (++seq & 0xfffffffffULL);
		volatile uint64_t *p = mem_gpa_hva(r->m, pfn << PAGE_SHIFT);
		if (r->pause_mode)
			pthread_rwlock_rdlock(&r->gate);
		if (p[word] != r->last[pfn * WORDS + word])
			atomic_fetch_add(&r->lost, 1);
		p[word] = v;
		if (r->pause_mode)
			pthread_rwlock_unlock(&r->gate);
		r->last[pfn * WORDS + word] = v;
		atomic_fetch_add_explicit(&r->writes, 1, memory_order_relaxed);
	}
	return NULL;
}

static uint64_t verify(struct rig *r)
{
	uint64_t bad = 0;
	for (uint64_t pfn = 0; pfn < PAGES; pfn++) {
		const uint64_t *p = mem_gpa_hva(r->m, pfn << PAGE_SHIFT);
		for (unsigned i = 0; i < WORDS; i++)
			if (p[i] != r->last[pfn * WORDS + i]) {
				if (bad < 5)
					fprintf(stderr, "PFN 0x%llx word %u: have %llx want %llx\n",
						(unsigned long long)pfn, i, (unsigned long long)p[i],
						(unsigned long long)r->last[pfn * WORDS + i]);
				bad++;
			}
	}
	return bad;
}

static void must(int rc, const struct err *e, const char *what)
{
	ck_assert_msg(rc == 0, "%s: %s", what, e->msg);
}

static void msleep(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* Migrate some PFNs of [a, b) to whatever frames of [lo, hi) are free. */
static unsigned migrate_into(struct rig *r, uint64_t a, uint64_t b, uint64_t seed,
			     uint64_t lo, uint64_t hi)
{
	unsigned done = 0;
	for (uint64_t f = lo; f < hi && done < 20; f += 7) {
		struct err e = {0};
		uint64_t pfn = a + (seed * 131 + f) % (b - a);
		if (mem_migrate(r->m, pfn, f, &e) == 0)
			done++;
		else
			ck_assert_msg(e.code == EBUSY, "migrate: %s", e.msg);
	}
	return done;
}

/* ... to spare frames. */
static unsigned migrate_some(struct rig *r, uint64_t a, uint64_t b, uint64_t seed)
{
	return migrate_into(r, a, b, seed, PAGES, PAGES + SPARE / PAGE_SIZE);
}

/* How many virtualized PFNs of a full round (every 7th, the two pieces
 * devirtualized earlier in the round aside) cannot be write-protected: a
 * change may protect any of them, registering its block if need be. */
static size_t unprotectable(struct rig *r)
{
	struct err e = {0};
	size_t n = 0;

	mem_lock(r->m);
	for (uint64_t p = 0; p < PAGES; p += 7)
		if (!((p >= 100 && p < 1100) || (p >= 1200 && p < 2200)) &&
		    (wp_protect(r->m, p, true, &e) < 0 || wp_protect(r->m, p, false, &e) < 0))
			n++;
	mem_unlock(r->m);
	return n;
}

/* Share FILLED_PAIRS pairs of pages from `first` up that the writers never
 * write, filled alike first (verify checks their contents at the end): a
 * whole devirtualize must split them before it unmaps. Nothing pauses the
 * writers while they are shared, so the rigs that honour pauses can share
 * these. */
static void share_filled(struct rig *r, uint64_t first, unsigned round)
{
	struct err e = {0};
	struct mem_p2m_summary s;

	ck_assert_uint_gt(first, atomic_load(&r->cold_open));
	for (uint64_t p = first; p < first + 2 * FILLED_PAIRS; p++) {
		uint64_t *w = mem_gpa_hva(r->m, p << PAGE_SHIFT);
		for (unsigned i = 0; i < WORDS; i++)
			w[i] = r->last[p * WORDS + i] = 0x5ead000000000000ULL |
				((uint64_t)round << 32) | ((p - first) / 2) << 16 | i;
	}
	for (unsigned i = 0; i < FILLED_PAIRS; i++)
		must(mem_share(r->m, first + 2 * i, first + 2 * i + 1, &e), &e, "share filled");
	mem_p2m_summary(r->m, &s);
	ck_assert_uint_ge(s.shared_frames, FILLED_PAIRS);
}

struct late_writer { struct rig *r; uint64_t first; unsigned round; pthread_t t; };

/* Writes one word of every filled page (share_filled) shortly after it
 * starts, as the devirtualize begins: a write to a page still shared
 * breaks the sharing (copy-on-write) before the devirtualize or waits
 * while the devirtualize splits it. Either way no write may be lost. */
static void *late_writer_main(void *arg)
{
	struct late_writer *lw = arg;
	struct rig *r = lw->r;

	msleep(lw->round % 3);
	for (uint64_t p = lw->first; p < lw->first + 2 * FILLED_PAIRS; p++) {
		volatile uint64_t *w = mem_gpa_hva(r->m, p << PAGE_SHIFT);
		uint64_t v = 0x1a7e000000000000ULL | (uint64_t)lw->round << 32 | p;
		pthread_rwlock_rdlock(&r->gate);   /* honours pauses, as the writers do */
		w[1] = v;
		pthread_rwlock_unlock(&r->gate);
		r->last[p * WORDS + 1] = v;
	}
	return NULL;
}

/* A devirtualize by unmapping that fails half way (the third chunk's
 * unmapping refused) leaves the memory virtualized, every page where P2M
 * says and reachable, and changes still protect pages (the final verify
 * and the writers' read-backs see any word lost). */
static void failed_devirtualize(struct rig *r, uint64_t end)
{
	struct err e = {0};
	enum mem_mode mode = mem_get_mode(r->m);

	r->m->fail_unmap_after = 3;
	ck_assert_int_eq(mem_devirtualize(r->m, 0, 0, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "injected"));
	r->m->fail_unmap_after = 0;
	ck_assert_int_eq(mem_get_mode(r->m), mode);
	struct mem_p2m_summary s;
	mem_p2m_summary(r->m, &s);
	ck_assert_uint_lt(s.identity, PAGES);   /* some pages are still away */
	msleep(10);   /* the writers go on through the pages' new mappings */
	/* The pages it had unmapped have new mappings, which a change may
	 * write-protect like any virtualized page. */
	ck_assert_uint_eq(unprotectable(r), 0);
	ck_assert_uint_gt(migrate_into(r, 2200, end, 99, PAGES, PAGES + SPARE / PAGE_SIZE), 0);
	msleep(10);
}

static void round_trip(struct rig *r, unsigned round)
{
	struct err e = {0};
	bool partial = round % 2;
	uint64_t a = partial ? 256 : 0, b = partial ? PAGES - 256 : PAGES;
	uint64_t cold = HOT + round * 2 * PAIRS;

	if (partial) {
		int rc = mem_virtualize(r->m, a, b, &e);
		if (rc < 0 && e.code == ENOTSUP) {
			printf("SKIP: %s\n", e.msg);
			exit(77);
		}
		must(rc, &e, "virtualize partial");
		ck_assert_int_eq(mem_get_mode(r->m), MEM_PARTIAL);
	} else {
		int rc = mem_virtualize(r->m, 0, 0, &e);
		if (rc < 0 && e.code == ENOTSUP) {
			printf("SKIP: %s\n", e.msg);
			exit(77);
		}
		must(rc, &e, "virtualize");
	}
	must(mem_scramble(r->m, round + 1, round % 3 == 0 ? 0 : 1000, &e), &e, "scramble");
	ck_assert_uint_gt(migrate_some(r, a, b, round), 0);
	if (!r->pause_mode) {
		for (unsigned i = 0; i < PAIRS; i++)
			must(mem_share(r->m, cold + 2 * i, cold + 2 * i + 1, &e), &e, "share");
		struct mem_p2m_summary s;
		mem_p2m_summary(r->m, &s);
		ck_assert_uint_ge(s.shared_frames, PAIRS);
		atomic_store(&r->cold_open, cold + 2 * PAIRS);   /* writes now break sharing */
	}
	/* Evacuate a few frames: then devirtualize must refuse until unretired. */
	uint64_t ev = a + 64 + 4 * (round % 8);
	ck_assert_uint_le(ev + 8, a + 100);   /* outside the piece below */
	must(mem_evacuate(r->m, ev, ev + 8, &e), &e, "evacuate");
	for (uint64_t f = ev; f < ev + 8; f++) {
		size_t n = 1;
		uint64_t pfn;
		must(mem_backmap(r->m, f, &pfn, 1, &n, &e), &e, "backmap");
		ck_assert_uint_eq(n, 0);
	}
	ck_assert_int_eq(mem_devirtualize(r->m, 0, 0, &e), -1);
	ck_assert_int_eq(e.code, EBUSY);
	msleep(10);
	/* A piece first (claim 13), away from the retired frames (so through the
	 * planner's moves): pages elsewhere sitting on its frames move out. */
	must(mem_devirtualize(r->m, a + 100, a + 1100, &e), &e, "devirtualize a piece");
	ck_assert_int_eq(mem_get_mode(r->m), MEM_PARTIAL);
	must(mem_unretire(r->m, ev, ev + 8, &e), &e, "unretire");
	/* Another piece with nothing retired (paused modes: the PFN-order sweep).
	 * Pages it displaces stay virtualized and must still be protectable:
	 * migrating them write-protects them. */
	must(mem_devirtualize(r->m, a + 1200, a + 2200, &e), &e, "devirtualize a second piece");
	for (uint64_t p = a + 1200; p < a + 2200; p++) {
		uint64_t f;
		ck_assert_int_eq(mem_p2m(r->m, p, &f), 0);
		ck_assert_uint_eq(f, p);
	}
	ck_assert_uint_gt(migrate_into(r, a + 2200, b, round + 7, 0, PAGES + SPARE / PAGE_SIZE), 0);
	for (uint64_t p = a + 100; p < a + 1100; p++) {
		uint64_t f;
		ck_assert_int_eq(mem_p2m(r->m, p, &f), 0);
		ck_assert_uint_eq(f, p);
	}
	struct mem_stats st;
	mem_get_stats(r->m, &st);
	uint64_t unshared = st.unshared, cow_breaks = st.cow_breaks;
	struct late_writer lw = { r, b - 64, round, 0 };
	if (r->unmapped)
		share_filled(r, lw.first, round);
	if (r->unmapped && round == 2)
		failed_devirtualize(r, b);
	/* Guest first on odd rounds: the writers' hot pages were remapped by
	 * the scramble and written since, so their chunks are unmapped last. */
	struct mem_devirt_opts o = { .guest_first = round % 2 == 1 };
	/* The filled pages are written while the devirtualize starts, or
	 * (rounds 1 and 3) well before it. */
	if (r->unmapped && round % 2)
		ck_assert_int_eq(pthread_create(&lw.t, NULL, late_writer_main, &lw), 0);
	msleep(5);
	if (r->unmapped && round % 2 == 0)
		ck_assert_int_eq(pthread_create(&lw.t, NULL, late_writer_main, &lw), 0);
	must(mem_devirtualize_with(r->m, 0, 0, &o, &e), &e, "devirtualize");
	if (r->unmapped)
		pthread_join(lw.t, NULL);
	ck_assert_int_eq(mem_get_mode(r->m), MEM_PASSTHROUGH);
	mem_get_stats(r->m, &st);
	ck_assert_ptr_nonnull(st.last_method);
	ck_assert_int_eq(strncmp(st.last_method, "unmapped", 8) == 0, r->unmapped);
	/* Each pair was split once: by a write first (copy-on-write), or by
	 * the devirtualize, before it unmapped. */
	if (r->unmapped) {
		printf("round %u: %llu pairs split by devirtualize, %llu by writes\n", round,
		       (unsigned long long)(st.unshared - unshared),
		       (unsigned long long)(st.cow_breaks - cow_breaks));
		ck_assert_uint_eq(st.unshared - unshared + st.cow_breaks - cow_breaks, FILLED_PAIRS);
	}
	if (r->unmapped)
		ck_assert_int_eq(st.last_touched_chunks > 0, o.guest_first);
	for (uint64_t p = 0; p < PAGES; p++) {
		uint64_t f;
		ck_assert_int_eq(mem_p2m(r->m, p, &f), 0);
		ck_assert_uint_eq(f, p);
	}
	struct mem_info info;
	mem_info(r->m, &info);
	ck_assert_uint_eq(info.vmas, 1);
	ck_assert_uint_eq(info.monitor_bytes, 0);
}

static void stress(unsigned nwriters, enum protect how, unsigned rounds)
{
	bool pause_mode = how != PROTECT_WP;
	struct mem_config cfg = { .ram_size = RAM, .spare_size = SPARE,
				  .backmap = BACKMAP_LIST, .protect_by_pause = how == PROTECT_PAUSE,
				  .protect_by_wp = how == PROTECT_WP };
	struct rig r = { .nwriters = nwriters, .pause_mode = pause_mode,
			 .unmapped = how == PROTECT_DEFAULT };
	struct mem_ops ops = { .ctx = &r, .pause = pause_writers, .resume = resume_writers };
	struct writer w[4];
	struct err e = {0};
	pthread_rwlockattr_t ra;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r.gate, &ra);
	atomic_store(&r.cold_open, HOT);
	r.last = calloc(PAGES * WORDS, sizeof(uint64_t));
	ck_assert_ptr_nonnull(r.last);
	must(mem_create(&cfg, &ops, &r.m, &e), &e, "create");
	for (unsigned i = 0; i < nwriters; i++) {
		w[i] = (struct writer){ &r, i, 0 };
		pthread_create(&w[i].t, NULL, writer_main, &w[i]);
	}
	for (unsigned round = 0; round < rounds; round++)
		round_trip(&r, round);
	atomic_store(&r.stop, true);
	for (unsigned i = 0; i < nwriters; i++)
		pthread_join(w[i].t, NULL);

	struct mem_stats st;
	mem_get_stats(r.m, &st);
	uint64_t bad = verify(&r);
	static const char *names[] = { "uffd-wp", "paused batches", "default (paused)" };
	printf("%u writer(s), %s: %llu writes, %llu lost on the way, %llu direct, %llu indirect, "
	       "%llu cow breaks, %llu pauses, longest stall %.1f us, %llu bad words\n", nwriters,
	       names[how], (unsigned long long)r.writes,
	       (unsigned long long)r.lost,
	       (unsigned long long)st.direct, (unsigned long long)st.indirect,
	       (unsigned long long)st.cow_breaks, (unsigned long long)st.paused_batches,
	       st.longest_stall_ns / 1e3,
	       (unsigned long long)bad);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(r.lost, 0);
	ck_assert_uint_gt(r.writes, 1000);
	ck_assert_uint_gt(st.indirect, 0);
	ck_assert_uint_eq(st.devirtualizations, 3 * rounds);   /* two pieces, then the rest */
	if (!pause_mode)
		ck_assert_uint_gt(st.cow_breaks, 0);
	/* Unmapped pages the writers touched were brought home on demand. */
	if (r.unmapped) {
		ck_assert_uint_gt(st.demand_faults, 0);
		ck_assert_uint_gt(st.mapped_ahead, 0);   /* and their neighbours, unasked */
	} else {
		ck_assert_uint_eq(st.demand_faults, 0);
	}
	/* Each mode really took its path: pauses, or none at all. */
	if (pause_mode)
		ck_assert_uint_gt(st.paused_batches, 2 * rounds);
	else
		ck_assert_uint_eq(st.paused_batches, 0);
	/* The check itself can fail: one wrong word is seen. */
	((uint64_t *)mem_gpa_hva(r.m, 5 << PAGE_SHIFT))[3] ^= 1;
	ck_assert_uint_eq(verify(&r), 1);
	mem_destroy(r.m);
	free(r.last);
	pthread_rwlock_destroy(&r.gate);
}

struct hammer {
	struct mem *m;
	atomic_bool stop;
	uint64_t last[4][WORDS];
	uint64_t lost;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	for (uint64_t v = 1; !atomic_load(&h->stop); v++) {
		unsigned pfn = 0, word = (unsigned)v % WORDS;
		volatile uint64_t *p = mem_gpa_hva(h->m, (uint64_t)pfn << PAGE_SHIFT);
		h->lost += p[word] != h->last[pfn][word];   /* an earlier write vanished */
		p[word] = v;
		h->last[pfn][word] = v;
	}
	return NULL;
}

/* Negative control: copy-then-remap without write protection, the copy
 * window widened by a short sleep (so even one free core lets the writer
 * in), loses writes. So the read-back checks above can see a lost write. */
START_TEST(unprotected_copy_loses_writes)
{
	struct mem_config cfg = { .ram_size = 4 * MiB, .spare_size = MiB };
	static struct hammer h;
	struct err e = {0};
	pthread_t t;
	uint64_t moves = 0, t0 = now_ns();

	must(mem_create(&cfg, NULL, &h.m, &e), &e, "create");
	if (mem_virtualize(h.m, 0, 0, &e) < 0) {
		printf("SKIP: %s\n", e.msg);
		exit(77);
	}
	atomic_store(&h.stop, false);
	memset(h.last, 0, sizeof(h.last));
	h.lost = 0;
	pthread_create(&t, NULL, hammer_main, &h);
	while (now_ns() - t0 < 20000000000ULL && (h.lost == 0 || moves < 50)) {
		mem_lock(h.m);
		uint64_t from, to = frame_find_free(h.m, 0, 0);
		ck_assert_int_eq(mem_p2m(h.m, 0, &from), 0);
		memcpy(mem_mfn_hva(h.m, to), mem_mfn_hva(h.m, from), PAGE_SIZE);
		msleep(1);   /* the writer keeps writing to the old frame meanwhile */
		must(window_map_page(h.m, 0, to, &e), &e, "map");
		must(wp_register(h.m, 0, 1, &e), &e, "register");
		frame_set_free(h.m, to, false);
		p2m_assign(h.m, 0, to);
		frame_released(h.m, from);
		mem_unlock(h.m);
		moves++;
	}
	atomic_store(&h.stop, true);
	pthread_join(t, NULL);
	printf("unprotected copy-then-remap: %llu moves, %llu writes lost\n",
	       (unsigned long long)moves, (unsigned long long)h.lost);
	ck_assert_uint_gt(h.lost, 0);
	mem_destroy(h.m);
}
END_TEST

START_TEST(one_writer_uffd) { stress(1, PROTECT_WP, 6); }
END_TEST
START_TEST(two_writers_uffd) { stress(2, PROTECT_WP, 6); }
END_TEST
START_TEST(two_writers_paused) { stress(2, PROTECT_PAUSE, 4); }
END_TEST
/* The default: pieces sweep in PFN order in paused batches; the whole
 * unmaps the pages still to move and serves the writers' faults. */
START_TEST(two_writers_default_batches) { stress(2, PROTECT_DEFAULT, 4); }
END_TEST

static Suite *remap_suite(void)
{
	Suite *s = suite_create("remap");
	TCase *tc = tcase_create("concurrent");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, one_writer_uffd);
	tcase_add_test(tc, two_writers_uffd);
	tcase_add_test(tc, two_writers_paused);
	tcase_add_test(tc, two_writers_default_batches);
	tcase_add_test(tc, unprotected_copy_loses_writes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(remap_suite());
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
