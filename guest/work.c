/* The work loop: every CPU verifies and rewrites its slice of the work
 * area each round (PFN-tagged patterns, vmswitch/pattern.h) and times the
 * gaps between page iterations; CPU 0 reports progress and the result. */
#include "guest.h"

struct totals {
	uint64_t round, mismatches, max_gap, recent_gap, checksum, long_gaps, long_gap_tsc;
};

static void slice(const struct guest *g, unsigned cpu, uint64_t *first, uint64_t *n)
{
	*first = g->p.pages * cpu / g->ncpus;
	*n = g->p.pages * (cpu + 1) / g->ncpus - *first;
}

static volatile uint64_t *page_at(const struct guest *g, uint64_t i)
{
	return g->work + i * PATTERN_WORDS;
}

static void totals(const struct guest *g, struct totals *t)
{
	*t = (struct totals){ .round = TARGET_NONE };
	for (unsigned c = 0; c < g->ncpus; c++) {
		const struct cpu_state *s = &g->cpu[c];

		t->round = s->round < t->round ? s->round : t->round;
		t->mismatches += s->mismatches;
		t->max_gap = s->max_gap > t->max_gap ? s->max_gap : t->max_gap;
		t->recent_gap = s->recent_gap > t->recent_gap ? s->recent_gap : t->recent_gap;
		t->checksum += s->checksum;
		t->long_gaps += s->long_gaps;
		t->long_gap_tsc += s->long_gap_tsc;
	}
}

/* HC_REPORT; returns the VMM's answer (1: finish), 0 without vmswitch. */
static int32_t report(struct guest *g, const struct totals *t, int final)
{
	g->rep = (struct hc_report){
		.magic = HC_REPORT_MAGIC, .final = (uint32_t)final, .round = t->round,
		.pages = g->p.pages, .mismatches = t->mismatches,
		.checksum = final ? t->checksum : 0, .max_gap_tsc = t->max_gap,
		.tsc_khz = g->tsc_khz, .work_gva = (uint64_t)g->work,
		.work_gpa = g->work_pfn * PAGE_SIZE, .recent_gap_tsc = t->recent_gap,
		.long_gaps = t->long_gaps, .long_gap_tsc = t->long_gap_tsc,
	};
	if (!g->hc_enabled)
		return 0;
	return hcall(g->hc_port, HC_REPORT, (uint64_t)&g->rep, 0);
}

static void progress(struct guest *g)
{
	struct totals t;
	int32_t r;

	totals(g, &t);
	/* A new window for recent_gap. Another CPU may store its older value
	 * over the reset at the end of its pass: that only lengthens a window. */
	for (unsigned c = 0; c < g->ncpus; c++)
		g->cpu[c].recent_gap = 0;
	g->reports++;
	/* Serial output costs two VM exits a character on our hosts: a long
	 * `forever` run prints only reports 1, 2, 4, 8, ... */
	if (!g->p.forever || (g->reports & (g->reports - 1)) == 0)
		console_printf(&g->con, "progress round=%lu mismatches=%lu max_gap_tsc=%lu\n",
			       t.round, t.mismatches, t.max_gap);
	r = report(g, &t, 0);
	if (r < 0)
		console_printf(&g->con, "HC_REPORT failed: %d\n", r);
	/* stop=N stands in for the VMM's answer where there is no VMM. */
	if (g->p.stop && g->reports >= g->p.stop)
		r = HC_REPORT_FINISH;
	if (r == HC_REPORT_FINISH && g->p.forever)
		__atomic_store_n(&g->stop_req, 1, __ATOMIC_RELEASE);
}

/* forever: the VMM asked us to stop. Everyone parks at a round boundary;
 * CPU 0 then sets the target to the furthest round, so all slices end at
 * the same round and the checksum has one expected value. */
static void park(struct guest *g, unsigned cpu, uint64_t round)
{
	struct cpu_state *s = &g->cpu[cpu];
	uint64_t max = 0;

	s->round = round;
	__atomic_store_n(&s->parked, 1, __ATOMIC_RELEASE);
	if (cpu != 0) {
		while (__atomic_load_n(&g->target, __ATOMIC_ACQUIRE) == TARGET_NONE)
			cpu_relax();
		return;
	}
	for (unsigned c = 0; c < g->ncpus; c++) {
		while (!__atomic_load_n(&g->cpu[c].parked, __ATOMIC_ACQUIRE))
			cpu_relax();
		max = g->cpu[c].round > max ? g->cpu[c].round : max;
	}
	__atomic_store_n(&g->target, max, __ATOMIC_RELEASE);
}

static void note_bad(struct cpu_state *s, uint64_t pfn, uint64_t round,
		     const struct pattern_bad *bad)
{
	if (s->has_bad)
		return;
	s->has_bad = 1;
	s->bad_pfn = pfn;
	s->bad_round = round;
	s->bad = *bad;
}

/* A pass's gap clock, kept in registers and stored once at the end. */
struct gaps {
	uint64_t max, recent, nlong, long_tsc;
};

static void gap_tick(const struct guest *g, struct gaps *gp, uint64_t *prev)
{
	uint64_t t = rdtsc(), d = t - *prev;

	*prev = t;
	gp->max = d > gp->max ? d : gp->max;
	gp->recent = d > gp->recent ? d : gp->recent;
	if (g->long_gap && d >= g->long_gap) {
		gp->nlong++;
		gp->long_tsc += d;
	}
}

static void gaps_store(struct cpu_state *s, const struct gaps *gp)
{
	s->max_gap = gp->max;
	s->recent_gap = gp->recent;
	s->long_gaps += gp->nlong;
	s->long_gap_tsc += gp->long_tsc;
}

/* One verify+rewrite pass over the slice; the gap clock runs across it. */
static void one_round(struct guest *g, struct cpu_state *s, uint64_t first, uint64_t n,
		      uint64_t round, uint64_t *prev)
{
	struct gaps gp = { s->max_gap, s->recent_gap, 0, 0 };

	for (uint64_t i = 0; i < n; i++) {
		struct pattern_bad bad;
		uint64_t pfn = g->work_pfn + first + i;
		unsigned m;

		gap_tick(g, &gp, prev);
		m = pattern_step(page_at(g, first + i), g->p.seed, pfn, round, &bad);
		if (m) {
			note_bad(s, pfn, round, &bad);
			s->mismatches += m;
		}
	}
	gaps_store(s, &gp);
}

/* chase=1: a latency-bound round. PATTERN_WORDS / 64 dependent loads per
 * page of the slice, each at a random word of a random page; the next
 * position mixes in (got ^ want), which is 0 while memory is right but which
 * the CPU cannot know, so every load waits for the one before: the time per
 * round is memory (and translation) latency. The pattern is never rewritten:
 * the area stays at round 0. */
static void one_chase(struct guest *g, struct cpu_state *s, uint64_t first, uint64_t n,
		      uint64_t round, uint64_t *prev)
{
	struct gaps gp = { s->max_gap, s->recent_gap, 0, 0 };
	uint64_t x = round * 0x9e3779b97f4a7c15ULL;

	for (uint64_t i = 0; i < n; i++) {
		gap_tick(g, &gp, prev);
		for (unsigned k = 0; k < PATTERN_WORDS / 64; k++) {
			x = pattern_mix(x + i);
			uint64_t pg = first + x % n, pfn = g->work_pfn + pg;
			unsigned w = (unsigned)(x >> 40) % PATTERN_WORDS;
			uint64_t got = page_at(g, pg)[w], want = pattern_expected(g->p.seed, pfn, 0, w);
			if (got != want) {
				struct pattern_bad bad = { w, got, want };
				note_bad(s, pfn, 0, &bad);
				s->mismatches++;
			}
			x += got ^ want;
		}
	}
	gaps_store(s, &gp);
}

static uint64_t final_check(struct guest *g, struct cpu_state *s, uint64_t first,
			    uint64_t n, uint64_t round)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n; i++) {
		struct pattern_bad bad;
		uint64_t pfn = g->work_pfn + first + i, ps = 0;
		unsigned m = pattern_check(page_at(g, first + i), g->p.seed, pfn, round,
					   &ps, &bad);

		if (m) {
			note_bad(s, pfn, round, &bad);
			s->mismatches += m;
		}
		sum += ps;
	}
	return sum;
}

void work_run(struct guest *g, unsigned cpu)
{
	struct cpu_state *s = &g->cpu[cpu];
	uint64_t first, n, round = 0, prev;

	slice(g, cpu, &first, &n);
	for (uint64_t i = 0; i < n; i++)
		pattern_fill(page_at(g, first + i), g->p.seed, g->work_pfn + first + i, 0);
	if (g->p.corrupt && cpu == 0)
		page_at(g, first)[7] ^= 1;      /* the failure path must fail */
	/* The gap clock skips our own reporting and parking, nothing else. */
	for (prev = rdtsc();;) {
		uint64_t target = __atomic_load_n(&g->target, __ATOMIC_ACQUIRE);

		if (round >= target)
			break;
		if (target == TARGET_NONE && __atomic_load_n(&g->stop_req, __ATOMIC_ACQUIRE)) {
			park(g, cpu, round);
			prev = rdtsc();
			continue;
		}
		if (g->p.chase)
			one_chase(g, s, first, n, round, &prev);
		else
			one_round(g, s, first, n, round, &prev);
		s->round = ++round;
		if (cpu == 0 && g->p.report && round % g->p.report == 0) {
			progress(g);
			prev = rdtsc();
		}
	}
	s->checksum = final_check(g, s, first, n, g->p.chase ? 0 : round);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
}

static void print_bad(struct guest *g)
{
	for (unsigned c = 0; c < g->ncpus; c++) {
		const struct cpu_state *s = &g->cpu[c];

		if (s->has_bad)
			console_printf(&g->con, "mismatch cpu=%u pfn=0x%lx round=%lu word=%u "
				       "got=0x%016lx want=0x%016lx\n", c, s->bad_pfn,
				       s->bad_round, s->bad.index, s->bad.got, s->bad.want);
	}
}

void work_finish(struct guest *g)
{
	struct totals t;
	int ok;

	for (unsigned c = 0; c < g->ncpus; c++)
		while (!__atomic_load_n(&g->cpu[c].done, __ATOMIC_ACQUIRE))
			cpu_relax();
	totals(g, &t);
	ok = t.mismatches == 0;
	print_bad(g);
	console_printf(&g->con, "%s rounds=%lu pages=%lu mismatches=%lu checksum=0x%016lx\n",
		       ok ? "PASS" : "FAIL", t.round, g->p.pages, t.mismatches, t.checksum);
	console_printf(&g->con, "result cpus=%u seed=%lu first_pfn=0x%lx max_gap_tsc=%lu "
		       "tsc_khz=%lu\n", g->ncpus, g->p.seed, g->work_pfn, t.max_gap,
		       g->tsc_khz);
	report(g, &t, 1);
	guest_exit(ok ? GUEST_EXIT_PASS : GUEST_EXIT_MISMATCH);
}
