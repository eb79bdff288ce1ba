/* Unit tests: machine memory, layout, pass-through, virtualize and the P2M
 * changes (migrate, share, evacuate), partial ranges, and the error paths
 * (a refused change leaves everything as it was). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <check.h>
#include <time.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/mem.h"
#include "vmswitch/util.h"
#include "smaps.h"
#include "mem_internal.h"   /* frames_resident, frames_with_data, frame_next_data */

#define RAM (8 * MiB)
#define SPARE (1 * MiB)
#define PAGES (RAM / PAGE_SIZE)

struct slots { unsigned calls; uint64_t gpa[4], size[4]; void *hva[4]; };

static int set_slot(void *ctx, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
		    struct err *e)
{
	struct slots *s = ctx;
	(void)e;
	s->gpa[slot] = gpa;
	s->size[slot] = size;
	s->hva[slot] = hva;
	s->calls++;
	return 0;
}

struct heard { uint64_t n, last, all; };

static void listener(void *ctx, uint64_t pfn)
{
	struct heard *h = ctx;
	h->n++;
	if (pfn == UINT64_MAX)
		h->all++;
	else
		h->last = pfn;
}

static struct mem *make(uint64_t ram, uint64_t spare, enum backmap_kind bm)
{
	struct mem_config cfg = { .ram_size = ram, .spare_size = spare, .backmap = bm,
				  .hugepages = HUGEPAGES_OFF };
	struct err e = {0};
	struct mem *m = NULL;
	ck_assert_msg(mem_create(&cfg, NULL, &m, &e) == 0, "%s", e.msg);
	return m;
}

/* Virtualize, or end the whole test program with SKIP when the host
 * lacks userfaultfd write protection on shared memory. */
static void virtualize_or_skip(struct mem *m, uint64_t a, uint64_t b)
{
	struct err e = {0};
	if (mem_virtualize(m, a, b, &e) < 0) {
		if (e.code == ENOTSUP) {
			printf("SKIP: %s\n", e.msg);
			exit(77);
		}
		ck_abort_msg("virtualize: %s", e.msg);
	}
}

static uint64_t p2m(struct mem *m, uint64_t pfn)
{
	uint64_t mfn = ~0ULL;
	ck_assert_int_eq(mem_p2m(m, pfn, &mfn), 0);
	return mfn;
}

static void fill(struct mem *m, uint64_t pfn, uint64_t tag)
{
	uint64_t *p = mem_gpa_hva(m, pfn << PAGE_SHIFT);
	for (int i = 0; i < 512; i++)
		p[i] = tag * 1000 + (uint64_t)i;
}

static bool check(struct mem *m, uint64_t pfn, uint64_t tag)
{
	uint64_t *p = mem_gpa_hva(m, pfn << PAGE_SHIFT);
	for (int i = 0; i < 512; i++)
		if (p[i] != tag * 1000 + (uint64_t)i)
			return false;
	return true;
}

START_TEST(layout_sizes)
{
	struct mem_layout l;
	struct err e = {0};

	ck_assert_int_eq(mem_layout(0, &l, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "0"));
	ck_assert_int_eq(mem_layout(3 * MiB, &l, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "2 MiB"));
	ck_assert_int_eq(mem_layout(4096 * GiB, &l, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "absurd"));
	ck_assert_int_eq(mem_layout(GiB, &l, &e), 0);
	ck_assert_uint_eq(l.nr, 1);
	ck_assert_uint_eq(l.r[0].size, GiB);
	ck_assert_int_eq(mem_layout(5 * GiB, &l, &e), 0);
	ck_assert_uint_eq(l.nr, 2);
	ck_assert_uint_eq(l.r[0].gpa, 0);
	ck_assert_uint_eq(l.r[0].size, MEM_HOLE_START);
	ck_assert_uint_eq(l.r[1].gpa, MEM_HIGH_START);
	ck_assert_uint_eq(l.r[1].size, 2 * GiB);
}
END_TEST

START_TEST(passthrough_two_regions)
{
	struct mem_config cfg = { .ram_size = 5 * GiB, .spare_size = SPARE,
				  .hugepages = HUGEPAGES_OFF };
	struct mem_ops ops = { .set_slot = set_slot };
	struct slots s = {0};
	struct err e = {0};
	struct mem *m;
	struct mem_info info;

	ops.ctx = &s;
	ck_assert_msg(mem_create(&cfg, &ops, &m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(s.calls, 2);
	ck_assert_uint_eq(s.gpa[1], MEM_HIGH_START);
	ck_assert_uint_eq(mem_get_mode(m), MEM_PASSTHROUGH);
	ck_assert_uint_eq(mem_ram_pages(m), 5 * GiB / PAGE_SIZE);
	/* GPA == memfd offset: a byte written through the window is in the machine view. */
	uint64_t gpa = MEM_HIGH_START + 12345 * PAGE_SIZE + 8;
	*(uint64_t *)mem_gpa_hva(m, gpa) = 0xfeedULL;
	ck_assert_uint_eq(*(uint64_t *)((uint8_t *)mem_mfn_hva(m, gpa >> PAGE_SHIFT) + 8), 0xfeed);
	ck_assert_ptr_null(mem_gpa_hva(m, MEM_HOLE_START + PAGE_SIZE));
	uint64_t mfn;
	ck_assert_int_eq(mem_p2m(m, MEM_HOLE_START >> PAGE_SHIFT, &mfn), -1);
	ck_assert_uint_eq(p2m(m, gpa >> PAGE_SHIFT), gpa >> PAGE_SHIFT);
	mem_info(m, &info);
	ck_assert_uint_eq(info.vmas, 2);            /* one mapping per window */
	ck_assert_uint_eq(info.monitor_bytes, 0);   /* no per-page state */
	ck_assert_str_eq(info.backmap, "list");
	mem_destroy(m);
}
END_TEST

/* Does the mapping holding addr carry VmFlags `flag` (smaps: "uw" is
 * userfaultfd write protection registered)? */
static bool vma_has_flag(const void *addr, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	struct smaps_vma v;
	bool has = false;

	ck_assert_ptr_nonnull(f);
	while (smaps_next(f, &v))
		if ((uintptr_t)addr >= v.lo && (uintptr_t)addr < v.hi)
			has = smaps_has(&v, flag);
	fclose(f);
	return has;
}

START_TEST(virtualize_is_lazy_identity)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_LIST);
	struct mem_info info;
	struct mem_stats st;
	struct mem_p2m_summary sum;
	struct err e = {0};

	virtualize_or_skip(m, 0, 0);
	ck_assert_uint_eq(mem_get_mode(m), MEM_VIRTUALIZED);
	/* The window is left alone until a change: nothing to undo. */
	ck_assert(!vma_has_flag(mem_gpa_hva(m, 0), "uw"));
	mem_info(m, &info);
	ck_assert_uint_eq(info.monitor_bytes, 0);   /* identity costs nothing */
	for (uint64_t p = 0; p < PAGES; p += 97)
		ck_assert_uint_eq(p2m(m, p), p);
	mem_p2m_summary(m, &sum);
	ck_assert_uint_eq(sum.identity, PAGES);
	ck_assert_uint_eq(sum.free_frames, SPARE / PAGE_SIZE);
	ck_assert_int_eq(mem_virtualize(m, 0, 0, &e), -1);   /* already */
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert_uint_eq(mem_get_mode(m), MEM_PASSTHROUGH);
	mem_info(m, &info);
	ck_assert_uint_eq(info.monitor_bytes, 0);   /* state dropped */
	ck_assert_uint_eq(info.vmas, 1);
	mem_get_stats(m, &st);
	ck_assert_uint_eq(st.virtualizations, 1);
	ck_assert_uint_eq(st.skipped, PAGES);
	ck_assert_uint_eq(st.direct + st.indirect, 0);
	ck_assert_uint_eq(st.passthrough_page_ops, 0);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), -1);
	mem_destroy(m);
}
END_TEST

START_TEST(migrate_preserves_and_refuses)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_LIST);
	struct heard h = {0};
	struct err e = {0};
	uint64_t spare0 = PAGES, pfns[4];
	size_t n;

	mem_set_listener(m, listener, &h);
	fill(m, 10, 10);
	ck_assert_int_eq(mem_migrate(m, 10, spare0, &e), -1);   /* pass-through */
	ck_assert_ptr_nonnull(strstr(e.msg, "pass-through"));
	virtualize_or_skip(m, 0, 0);
	ck_assert(!vma_has_flag(mem_gpa_hva(m, 11 << PAGE_SHIFT), "uw"));
	ck_assert_int_eq(mem_migrate(m, 10, spare0, &e), 0);
	/* The change registered the 2 MiB block it protected, nothing else. */
	ck_assert(vma_has_flag(mem_gpa_hva(m, 11 << PAGE_SHIFT), "uw"));
	ck_assert(!vma_has_flag(mem_gpa_hva(m, 600 << PAGE_SHIFT), "uw"));
	ck_assert_uint_eq(p2m(m, 10), spare0);
	ck_assert(check(m, 10, 10));
	ck_assert_uint_eq(h.last, 10);
	ck_assert_int_eq(mem_backmap(m, spare0, pfns, 4, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(pfns[0], 10);
	ck_assert_int_eq(mem_backmap(m, 10, pfns, 4, &n, &e), 0);
	ck_assert_uint_eq(n, 0);   /* frame 10 is free now */
	/* Refusals: busy MFN, MFN out of range, PFN in no RAM; nothing moves. */
	ck_assert_int_eq(mem_migrate(m, 11, spare0, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "busy"));
	ck_assert_int_eq(mem_migrate(m, 11, 12, &e), -1);
	ck_assert_int_eq(mem_migrate(m, 11, PAGES + SPARE / PAGE_SIZE, &e), -1);
	ck_assert_int_eq(mem_migrate(m, PAGES + 5, spare0 + 1, &e), -1);
	ck_assert_uint_eq(p2m(m, 11), 11);
	/* The freed frame takes another page. */
	fill(m, 12, 12);
	ck_assert_int_eq(mem_migrate(m, 12, 10, &e), 0);
	ck_assert(check(m, 12, 12) && check(m, 10, 10));
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert(check(m, 12, 12) && check(m, 10, 10));
	ck_assert_uint_eq(p2m(m, 10), 10);
	ck_assert_uint_eq(h.all, 1);
	mem_destroy(m);
}
END_TEST

static bool zero(struct mem *m, uint64_t pfn)
{
	uint64_t *p = mem_gpa_hva(m, pfn << PAGE_SHIFT);
	for (int i = 0; i < 512; i++)
		if (p[i])
			return false;
	return true;
}

/* Pages the guest never wrote move as holes: a scramble and devirtualize
 * of a mostly idle guest allocate nothing, a hole moved onto a frame that
 * held data reads as zeros, and the spare frames' memory is given back. */
START_TEST(holes_stay_holes)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_REFCOUNT);
	struct mem_stats st;
	struct err e = {0};
	const uint64_t written = 256, hole = 500, spare0 = PAGES;

	for (uint64_t p = 0; p < written; p++)
		fill(m, p, p + 1);
	virtualize_or_skip(m, 0, 0);
	ck_assert_int_eq(mem_migrate(m, 10, spare0, &e), 0);   /* frame 10 keeps stale data */
	ck_assert_int_eq(mem_migrate(m, hole, 10, &e), 0);
	ck_assert(zero(m, hole));
	ck_assert_int_eq(mem_scramble(m, 3, 0, &e), 0);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	mem_get_stats(m, &st);
	ck_assert_uint_gt(st.holes_moved, PAGES / 2);
	ck_assert_uint_le(st.bytes_copied, 4 * written * PAGE_SIZE);
	/* Frames that ever held a written page stay allocated (a hole moved
	 * onto one zeroes it), but the RAM never written and the spare range
	 * stay empty: copying them all would allocate 9 MiB. */
	ck_assert_uint_le(st.resident_bytes, 4 * written * PAGE_SIZE);
	for (uint64_t p = 0; p < written; p++)
		ck_assert_msg(check(m, p, p + 1), "PFN %llu lost its contents",
			      (unsigned long long)p);
	for (uint64_t p = written; p < PAGES; p += 7)
		ck_assert_msg(zero(m, p), "PFN %llu is not zero", (unsigned long long)p);
	ck_assert(zero(m, hole));
	mem_destroy(m);
}
END_TEST

/* The bulk residency answer (mincore) names exactly the written frames,
 * RAM and spare alike, as frame_populated does one at a time, and so does
 * frames_with_data; frame_next_data finds the next across holes. */
START_TEST(resident_frames_are_the_written_ones)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_REFCOUNT);
	const uint64_t written[] = { 3, 64, 65, 66, 127, 128, PAGES - 1, PAGES, PAGES + 200 };
	uint64_t *bits = calloc(m->nr_mfn / 64 + 1, sizeof(*bits));

	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		memset(mem_mfn_hva(m, written[i]), 0x5a, PAGE_SIZE);
	frames_resident(m, 0, m->nr_mfn, bits);
	for (uint64_t f = 0; f < m->nr_mfn; f++) {
		bool want = false;
		for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
			want |= written[i] == f;
		ck_assert_msg((bits[f / 64] >> (f % 64) & 1) == want, "MFN %llu: resident %d",
			      (unsigned long long)f, !want);
		ck_assert_int_eq(frame_populated(m, f), want);
	}
	/* A run from frame 64: bit i is frame 64 + i. */
	uint64_t run[2] = {0};
	frames_resident(m, 64, 128, run);
	ck_assert_uint_eq(run[0], 1ULL | 1ULL << 1 | 1ULL << 2 | 1ULL << 63);
	ck_assert_uint_eq(run[1], 1);
	/* Exactly the same with the holes asked of lseek, from frame 3. */
	uint64_t *data = calloc(m->nr_mfn / 64 + 1, sizeof(*data));
	frames_with_data(m, 3, m->nr_mfn - 3, data);
	for (uint64_t f = 3; f < m->nr_mfn; f++)
		ck_assert_uint_eq(data[(f - 3) / 64] >> ((f - 3) % 64) & 1, bits[f / 64] >> (f % 64) & 1);
	free(data);
	/* The next written frame, one lseek over a run of holes. */
	ck_assert_uint_eq(frame_next_data(m, 0), 3);
	ck_assert_uint_eq(frame_next_data(m, 4), 64);
	ck_assert_uint_eq(frame_next_data(m, 67), 127);
	ck_assert_uint_eq(frame_next_data(m, 129), PAGES - 1);
	ck_assert_uint_eq(frame_next_data(m, PAGES + 1), PAGES + 200);
	ck_assert_uint_eq(frame_next_data(m, PAGES + 201), m->nr_mfn);
	free(bits);
	mem_destroy(m);
}
END_TEST

/* Is addr mapped by a PTE of this process right now (/proc/self/pagemap)? */
static bool pte_present(const void *addr)
{
	uint64_t ent = 0;
	FILE *f = fopen("/proc/self/pagemap", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseeko(f, (off_t)((uintptr_t)addr / PAGE_SIZE * sizeof(ent)), SEEK_SET), 0);
	ck_assert_uint_eq(fread(&ent, sizeof(ent), 1, f), 1);
	fclose(f);
	return ent >> 63;
}

/* Devirtualize maps again only the 2 MiB blocks a change remapped: a page
 * elsewhere keeps its mapping (its PTE stays) and was never registered for
 * write protection, and the window still ends as one mapping, unregistered,
 * every time. */
START_TEST(devirtualize_leaves_other_blocks_mapped)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_REFCOUNT);
	struct mem_info info;
	struct err e = {0};
	const uint64_t far = PAGES - 100;   /* not in PFN 5's or 600's block */

	fill(m, 5, 5);
	fill(m, 600, 6);
	fill(m, far, 7);
	virtualize_or_skip(m, 0, 0);
	for (int round = 0; round < 2; round++) {
		if (round)
			ck_assert_int_eq(mem_virtualize(m, 0, 0, &e), 0);
		ck_assert_int_eq(mem_migrate(m, 5, PAGES + 1, &e), 0);
		ck_assert_int_eq(mem_migrate(m, 600, PAGES + 2, &e), 0);
		ck_assert(pte_present(mem_gpa_hva(m, far << PAGE_SHIFT)));
		/* Never registered, so never unregistered: KVM keeps its mappings. */
		ck_assert(!vma_has_flag(mem_gpa_hva(m, far << PAGE_SHIFT), "uw"));
		/* Round 0 devirtualizes in two pieces (paused sweep), round 1 whole (unmapping). */
		if (round == 0)
			ck_assert_int_eq(mem_devirtualize(m, 0, 512, &e), 0);
		ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
		ck_assert_msg(pte_present(mem_gpa_hva(m, far << PAGE_SHIFT)),
			      "round %d: the untouched block was mapped again", round);
		ck_assert(check(m, 5, 5) && check(m, 600, 6) && check(m, far, 7));
		ck_assert_uint_eq(p2m(m, 5), 5);
		mem_info(m, &info);
		ck_assert_uint_eq(info.vmas, 1);
		ck_assert(!vma_has_flag(mem_gpa_hva(m, 0), "uw"));
	}
	mem_destroy(m);
}
END_TEST

START_TEST(no_spare_fails_cleanly)
{
	struct mem *m = make(RAM, 0, BACKMAP_REFCOUNT);
	struct err e = {0};

	virtualize_or_skip(m, 0, 0);
	ck_assert_int_eq(mem_scramble(m, 1, 100, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "no free machine frames"));
	ck_assert_int_eq(mem_evacuate(m, 0, 4, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "no free machine frames"));
	struct mem_p2m_summary s;
	mem_p2m_summary(m, &s);
	ck_assert_uint_eq(s.identity, PAGES);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	mem_destroy(m);
}
END_TEST

static void *write_page(void *arg)
{
	uint64_t *p = arg;
	p[7] = 0xc0ffee;
	return NULL;
}

START_TEST(share_then_copy_on_write)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_LIST);
	struct err e = {0};
	struct mem_stats st;
	pthread_t t;

	virtualize_or_skip(m, 0, 0);
	fill(m, 20, 5);
	fill(m, 21, 5);
	fill(m, 22, 6);
	ck_assert_int_eq(mem_share(m, 20, 22, &e), -1);   /* different contents */
	ck_assert_uint_eq(p2m(m, 22), 22);
	ck_assert_int_eq(mem_share(m, 20, 21, &e), 0);
	ck_assert_uint_eq(p2m(m, 21), 20);
	struct mem_p2m_summary s;
	mem_p2m_summary(m, &s);
	ck_assert_uint_eq(s.shared_frames, 1);
	/* A write (from another thread, as a vCPU would) breaks the sharing. */
	pthread_create(&t, NULL, write_page, mem_gpa_hva(m, 21 << PAGE_SHIFT));
	pthread_join(t, NULL);
	ck_assert_uint_ne(p2m(m, 21), 20);
	ck_assert(check(m, 20, 5));
	uint64_t *q = mem_gpa_hva(m, 21 << PAGE_SHIFT);
	ck_assert_uint_eq(q[7], 0xc0ffee);
	ck_assert_uint_eq(q[8], 5008);
	mem_get_stats(m, &st);
	ck_assert_uint_eq(st.cow_breaks, 1);
	/* The remaining sharer is writable again without a copy. */
	((uint64_t *)mem_gpa_hva(m, 20 << PAGE_SHIFT))[0] = 1;
	ck_assert_uint_eq(p2m(m, 20), 20);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert_uint_eq(q[7], 0xc0ffee);
	mem_destroy(m);
}
END_TEST

START_TEST(evacuate_retires)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_LIST);
	struct err e = {0};
	uint64_t pfns[4];
	size_t n;

	for (uint64_t p = 100; p < 108; p++)
		fill(m, p, p);
	virtualize_or_skip(m, 0, 0);
	ck_assert_int_eq(mem_evacuate(m, 100, 108, &e), 0);
	for (uint64_t p = 100; p < 108; p++) {
		ck_assert(check(m, p, p));
		ck_assert_uint_ge(p2m(m, p), PAGES);
		ck_assert_int_eq(mem_backmap(m, p, pfns, 4, &n, &e), 0);
		ck_assert_uint_eq(n, 0);
	}
	ck_assert_int_eq(mem_migrate(m, 5, 100, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "retired"));
	ck_assert_int_eq(mem_evacuate(m, 104, 110, &e), -1);   /* overlaps retired */
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), -1);   /* would use failing memory */
	ck_assert_uint_eq(mem_get_mode(m), MEM_VIRTUALIZED);
	ck_assert_int_eq(mem_unretire(m, 100, 108, &e), 0);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	for (uint64_t p = 100; p < 108; p++)
		ck_assert(check(m, p, p) && p2m(m, p) == p);
	mem_destroy(m);
}
END_TEST

/* Retired spare frames stay out of the free list of the next virtualize,
 * and come back to it once unretired. */
START_TEST(retired_spares_not_free)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_REFCOUNT);
	struct mem_p2m_summary sum;
	struct err e = {0};
	const uint64_t spares = SPARE / PAGE_SIZE;

	virtualize_or_skip(m, 0, 0);
	ck_assert_int_eq(mem_evacuate(m, PAGES + 2, PAGES + 10, &e), 0);
	ck_assert_int_eq(mem_evacuate(m, PAGES + spares - 1, PAGES + spares, &e), 0);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert_int_eq(mem_virtualize(m, 0, 0, &e), 0);
	mem_p2m_summary(m, &sum);
	ck_assert_uint_eq(sum.free_frames, spares - 9);
	ck_assert_int_eq(mem_migrate(m, 7, PAGES + 3, &e), -1);   /* retired */
	ck_assert_int_eq(mem_unretire(m, PAGES + 2, PAGES + 10, &e), 0);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert_int_eq(mem_virtualize(m, 0, 0, &e), 0);
	mem_p2m_summary(m, &sum);
	ck_assert_uint_eq(sum.free_frames, spares - 1);
	mem_destroy(m);
}
END_TEST

START_TEST(partial_ranges)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_SEARCH);
	struct err e = {0};
	uint64_t r[4][2];

	virtualize_or_skip(m, 256, 512);
	ck_assert_uint_eq(mem_get_mode(m), MEM_PARTIAL);
	ck_assert_int_eq(mem_virtualize(m, 500, 600, &e), -1);      /* overlap */
	ck_assert_int_eq(mem_virtualize(m, PAGES - 1, PAGES + 1, &e), -1);   /* not RAM */
	ck_assert_int_eq(mem_virtualize(m, 9, 9, &e), -1);          /* empty */
	ck_assert_int_eq(mem_migrate(m, 100, PAGES, &e), -1);       /* pass-through part */
	fill(m, 300, 3);
	ck_assert_int_eq(mem_migrate(m, 300, PAGES, &e), 0);
	ck_assert_int_eq(mem_evacuate(m, 10, 12, &e), -1);          /* pass-through frames */
	/* Devirtualize the middle: the range splits in two. */
	ck_assert_int_eq(mem_devirtualize(m, 290, 310, &e), 0);
	ck_assert_uint_eq(mem_virt_ranges(m, r, 4), 2);
	ck_assert(check(m, 300, 3) && p2m(m, 300) == 300);
	ck_assert_int_eq(mem_devirtualize(m, 100, 200, &e), -1);    /* not virtualized */
	ck_assert_int_eq(mem_virtualize(m, 0, 0, &e), 0);           /* fills the gaps */
	ck_assert_uint_eq(mem_get_mode(m), MEM_VIRTUALIZED);
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert_uint_eq(mem_get_mode(m), MEM_PASSTHROUGH);
	struct mem_info info;
	mem_info(m, &info);
	ck_assert_uint_eq(info.vmas, 1);
	mem_destroy(m);
}
END_TEST

/* 16 MiB under a huge-page policy: mem_create's result. */
static int create_16m(enum hugepages_mode hp, struct mem **m, struct err *e)
{
	struct mem_config cfg = { .ram_size = 16 * MiB, .spare_size = SPARE, .hugepages = hp };

	return mem_create(&cfg, NULL, m, e);
}

START_TEST(hugepages_modes)
{
	struct err e = {0};
	struct mem *m;
	struct mem_info info;

	ck_assert_msg(create_16m(HUGEPAGES_AUTO, &m, &e) == 0, "%s", e.msg);
	memset(mem_gpa_hva(m, 0), 1, 16 * MiB);
	mem_info(m, &info);
	printf("hugepages auto: backing %s, page size %llu\n", info.backing,
	       (unsigned long long)info.page_size);
	ck_assert_uint_eq(info.page_size, info.hugepages ? HUGE_SIZE : PAGE_SIZE);
	mem_destroy(m);
	if (create_16m(HUGEPAGES_REQUIRED, &m, &e) == 0) {
		mem_info(m, &info);
		ck_assert(info.hugepages);
		mem_destroy(m);
	} else {
		ck_assert_ptr_nonnull(strstr(e.msg, "2 MiB"));
	}
}
END_TEST

/* Virtualized memory is advised against huge pages (khugepaged leaves it
 * alone: window_advise), pass-through memory for them, and the window is
 * one mapping again once everything is devirtualized. */
START_TEST(huge_advice_follows_mode)
{
	struct err e = {0};
	struct mem *m;
	struct mem_info info;

	ck_assert_msg(create_16m(HUGEPAGES_AUTO, &m, &e) == 0, "%s", e.msg);
	mem_info(m, &info);
	if (strncmp(info.backing, "shmem-thp", 9) != 0) {
		printf("SKIP huge_advice_follows_mode: backing %s\n", info.backing);
		mem_destroy(m);
		return;
	}
	void *in = mem_gpa_hva(m, 1500ULL << PAGE_SHIFT), *out = mem_gpa_hva(m, 100ULL << PAGE_SHIFT);
	ck_assert(vma_has_flag(in, "hg") && !vma_has_flag(in, "nh"));
	virtualize_or_skip(m, 1024, 2048);
	ck_assert(vma_has_flag(in, "nh") && !vma_has_flag(in, "hg"));
	ck_assert(vma_has_flag(out, "hg"));
	ck_assert_msg(mem_migrate(m, 1500, (16 * MiB) >> PAGE_SHIFT, &e) == 0, "%s", e.msg);   /* to a spare frame */
	ck_assert(vma_has_flag(mem_gpa_hva(m, 1501ULL << PAGE_SHIFT), "nh"));
	ck_assert_int_eq(mem_devirtualize(m, 0, 0, &e), 0);
	ck_assert(vma_has_flag(in, "hg") && !vma_has_flag(in, "nh"));
	mem_info(m, &info);
	ck_assert_uint_eq(info.vmas, 1);
	mem_destroy(m);
}
END_TEST

static void count_progress(void *ctx, uint64_t moved)
{
	uint64_t *seen = ctx;
	seen[0]++;
	seen[1] = moved;
}

/* Long operations report pages moved, at most every 200 ms, and only
 * between mem_set_progress calls. */
START_TEST(progress_reports)
{
	struct mem *m = make(RAM, SPARE, BACKMAP_LIST);
	struct err e = {0};
	uint64_t seen[2] = {0, 0};
	struct timespec wait = {0, 250000000};

	virtualize_or_skip(m, 0, 0);
	mem_set_progress(m, count_progress, seen);
	ck_assert_int_eq(mem_migrate(m, 3, PAGES, &e), 0);
	ck_assert_uint_eq(seen[0], 0);              /* too soon to report */
	nanosleep(&wait, NULL);
	ck_assert_int_eq(mem_migrate(m, 4, PAGES + 1, &e), 0);
	ck_assert_uint_eq(seen[0], 1);
	ck_assert_uint_eq(seen[1], 2);              /* both moves counted */
	mem_set_progress(m, NULL, NULL);
	nanosleep(&wait, NULL);
	ck_assert_int_eq(mem_migrate(m, 5, PAGES + 2, &e), 0);
	ck_assert_uint_eq(seen[0], 1);              /* off again */
	mem_destroy(m);
}
END_TEST

START_TEST(bad_config)
{
	struct mem_config cfg = { .ram_size = 0 };
	struct err e = {0};
	struct mem *m = NULL;

	ck_assert_int_eq(mem_create(&cfg, NULL, &m, &e), -1);
	cfg.ram_size = RAM;
	cfg.spare_size = 100;
	ck_assert_int_eq(mem_create(&cfg, NULL, &m, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "spare"));
}
END_TEST

static Suite *mem_suite(void)
{
	Suite *s = suite_create("mem");
	TCase *tc = tcase_create("mem");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, layout_sizes);
	tcase_add_test(tc, passthrough_two_regions);
	tcase_add_test(tc, virtualize_is_lazy_identity);
	tcase_add_test(tc, migrate_preserves_and_refuses);
	tcase_add_test(tc, no_spare_fails_cleanly);
	tcase_add_test(tc, holes_stay_holes);
	tcase_add_test(tc, resident_frames_are_the_written_ones);
	tcase_add_test(tc, devirtualize_leaves_other_blocks_mapped);
	tcase_add_test(tc, share_then_copy_on_write);
	tcase_add_test(tc, evacuate_retires);
	tcase_add_test(tc, retired_spares_not_free);
	tcase_add_test(tc, partial_ranges);
	tcase_add_test(tc, hugepages_modes);
	tcase_add_test(tc, huge_advice_follows_mode);
	tcase_add_test(tc, bad_config);
	tcase_add_test(tc, progress_reports);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mem_suite());
	/* No fork: a SKIP exit(77) from a test must end the program. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
