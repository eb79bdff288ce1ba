/* bench_mem: what the memory switch costs.
 *   virtualize time (256 MiB, 1 GiB, 4 GiB): should not grow with size;
 *   devirtualize with nothing to move, and after a full scramble with a
 *   writer thread running (uffd-wp, paused batches, and the default, which
 *   unmaps): time, pages/s and
 *   the longest stall of the writer;
 *   single-page migrate latency percentiles with a writer on those pages;
 *   bytes of monitor memory per page for each back-map strategy.
 * Usage: bench_mem [max RAM in MiB for the scramble runs, default 1024]
 *        bench_mem MiB uffd-wp|pause|auto [touched]   (one scramble run only) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmswitch/mem.h"
#include "vmswitch/util.h"

struct writer {
	struct mem *m;
	uint64_t pages;
	atomic_bool stop;
	bool gated;
	pthread_rwlock_t gate;
	uint64_t writes, worst_ns;
	atomic_uint_fast64_t nwrites;
	pthread_t t;
	uint64_t paused_at, npauses, *pauses;
	uint64_t resumed_at, writes_at_resume;
	bool live;    /* the writer thread runs: pauses give it its slice */
};

#define MAX_PAUSES (1u << 20)

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t s = 88172645463325252ULL;

	while (!atomic_load(&w->stop)) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		uint64_t gpa = (s % w->pages) << PAGE_SHIFT;
		if (gpa >= MEM_HOLE_START)   /* RAM above 3 GiB lives at 4 GiB */
			gpa += MEM_HIGH_START - MEM_HOLE_START;
		volatile uint64_t *p = mem_gpa_hva(w->m, gpa);
		uint64_t t0 = now_ns();
		if (w->gated)
			pthread_rwlock_rdlock(&w->gate);
		p[(s >> 50) % 512] = s;
		if (w->gated)
			pthread_rwlock_unlock(&w->gate);
		uint64_t dt = now_ns() - t0;
		if (dt > w->worst_ns)
			w->worst_ns = dt;
		w->writes++;
		atomic_store_explicit(&w->nwrites, w->writes, memory_order_relaxed);
	}
	return NULL;
}

/* The pause handshake: the gate's write lock is granted only once the
 * writer is outside its store (it read-holds the gate per store), and holds
 * it off until resume. Each pause's length is recorded. */
static int pause_cb(void *ctx)
{
	struct writer *w = ctx;

	/* As vmswitch's vm_pause does: the writer gets a 100 us slice after each
	 * resume (up to 2 ms for it to wake), or back-to-back batches starve it. */
	while (w->live && w->resumed_at && now_ns() - w->resumed_at < 2000000 &&
	       (atomic_load(&w->nwrites) == w->writes_at_resume ||
		now_ns() - w->resumed_at < 100000))
		sched_yield();
	int rc = pthread_rwlock_wrlock(&w->gate);
	w->paused_at = now_ns();
	return rc;
}

static void resume_cb(void *ctx)
{
	struct writer *w = ctx;
	if (w->npauses < MAX_PAUSES)
		w->pauses[w->npauses++] = now_ns() - w->paused_at;
	w->writes_at_resume = atomic_load(&w->nwrites);
	w->resumed_at = now_ns();
	pthread_rwlock_unlock(&w->gate);
}

/* --protect: uffd, pause, or auto (whole devirtualize unmaps, lazy.c). */
enum protect { PROTECT_UFFD, PROTECT_PAUSE, PROTECT_AUTO };
static const char *const protect_name[] = { "uffd-wp", "pause", "auto" };

static struct mem *make(uint64_t ram, enum backmap_kind bm, enum protect how, struct writer *w)
{
	struct mem_config cfg = { .ram_size = ram, .spare_size = 64 * MiB, .backmap = bm,
				  .hugepages = HUGEPAGES_OFF, .protect_by_wp = how == PROTECT_UFFD,
				  .protect_by_pause = how == PROTECT_PAUSE };
	struct mem_ops ops = { .ctx = w, .pause = pause_cb, .resume = resume_cb };
	struct err e = {0};
	struct mem *m;

	if (mem_create(&cfg, &ops, &m, &e) < 0) {
		fprintf(stderr, "bench_mem: %s\n", e.msg);
		exit(1);
	}
	return m;
}

static void die(const char *what, const struct err *e)
{
	fprintf(stderr, "bench_mem: %s: %s\n", what, e->msg);
	exit(e->code == ENOTSUP ? 77 : 1);
}

static void bench_switch(uint64_t ram)
{
	struct writer w = { .pages = ram / PAGE_SIZE };
	struct mem *m = make(ram, BACKMAP_REFCOUNT, PROTECT_UFFD, NULL);
	struct err e = {0};
	struct mem_stats st;
	uint64_t pages = ram / PAGE_SIZE;

	w.m = m;
	pthread_create(&w.t, NULL, writer_main, &w);
	while (atomic_load(&w.nwrites) < 1000)   /* the writer really runs */
		sched_yield();
	uint64_t t0 = now_ns();
	if (mem_virtualize(m, 0, 0, &e) < 0)
		die("virtualize", &e);
	uint64_t tv = now_ns() - t0;
	t0 = now_ns();
	if (mem_devirtualize(m, 0, 0, &e) < 0)
		die("devirtualize", &e);
	uint64_t td = now_ns() - t0;
	atomic_store(&w.stop, true);
	pthread_join(w.t, NULL);
	mem_get_stats(m, &st);
	printf("%-8llu %14.1f %18.1f %14.0f %10llu\n", (unsigned long long)(ram / MiB), tv / 1e3,
	       td / 1e3, pages / (td / 1e9), (unsigned long long)w.writes);
	mem_destroy(m);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* CPU time of the calling thread (the remapper): what the work costs when
 * other processes share the cores. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void bench_scramble(uint64_t ram, enum protect how, bool touched)
{
	struct writer w = { .pages = ram / PAGE_SIZE, .gated = how != PROTECT_UFFD,
			    .pauses = calloc(MAX_PAUSES, sizeof(uint64_t)) };
	pthread_rwlockattr_t ra;
	struct err e = {0};
	struct mem_stats st;
	struct mem_info info;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&w.gate, &ra);
	struct mem *m = make(ram, BACKMAP_REFCOUNT, how, &w);
	w.m = m;
	if (mem_virtualize(m, 0, 0, &e) < 0)
		die("virtualize", &e);
	uint64_t t0 = now_ns();
	if (mem_scramble(m, 42, 0, &e) < 0)
		die("scramble", &e);
	uint64_t ts = now_ns() - t0;
	mem_info(m, &info);
	/* touched: a guest that has used all its memory, every window page
	 * mapped and dirty, so every remap has a page-table entry to tear down
	 * (on a PVM host that costs a TLB flush of tens of us per page). */
	for (uint64_t p = 0; touched && p < w.pages; p++) {
		uint64_t gpa = p << PAGE_SHIFT;
		if (gpa >= MEM_HOLE_START)
			gpa += MEM_HIGH_START - MEM_HOLE_START;
		volatile uint64_t *q = mem_gpa_hva(m, gpa);
		q[0] = q[0];
	}
	pthread_create(&w.t, NULL, writer_main, &w);
	w.live = true;
	w.npauses = 0;   /* count the devirtualize's pauses only */
	t0 = now_ns();
	uint64_t c0 = thread_cpu_ns();
	if (mem_devirtualize(m, 0, 0, &e) < 0)
		die("devirtualize", &e);
	uint64_t td = now_ns() - t0, tc = thread_cpu_ns() - c0;
	atomic_store(&w.stop, true);
	pthread_join(w.t, NULL);
	mem_get_stats(m, &st);
	uint64_t moved = st.direct + st.indirect, n = w.npauses;
	qsort(w.pauses, n, sizeof(uint64_t), cmp_u64);
	printf("%-8llu %-7s%s %10.2f %9llu %10.2f %11.0f %12.1f %12.1f %10llu",
	       (unsigned long long)(ram / MiB), protect_name[how], touched ? "+T" : "  ",
	       ts / 1e9,
	       (unsigned long long)info.vmas, td / 1e9, moved / (td / 1e9),
	       st.longest_stall_ns / 1e3, w.worst_ns / 1e3, (unsigned long long)w.writes);
	printf("   cpu %.2f us/page", tc / 1e3 / (moved ? moved : 1));
	if (n)
		printf(", %llu pauses: p50 %.0f p99 %.0f max %.0f us",
		       (unsigned long long)n, w.pauses[n / 2] / 1e3, w.pauses[n * 99 / 100] / 1e3,
		       w.pauses[n - 1] / 1e3);
	printf("\n");
	free(w.pauses);
	mem_destroy(m);
	pthread_rwlock_destroy(&w.gate);
}

/* One protected move at a time while a writer hammers the same 64 pages:
 * the latency a vCPU can see from one remap. */
static void bench_migrate(void)
{
	enum { N = 4000 };
	static uint64_t d[N];
	struct writer w = { .pages = 64 };
	struct mem *m = make(16 * MiB, BACKMAP_REFCOUNT, PROTECT_UFFD, NULL);
	struct err e = {0};
	struct mem_stats st;
	size_t n = 0;

	w.m = m;
	if (mem_virtualize(m, 0, 0, &e) < 0)
		die("virtualize", &e);
	pthread_create(&w.t, NULL, writer_main, &w);
	for (unsigned i = 0; i < N; i++) {
		uint64_t pfn = i % 64, to = 16 * MiB / PAGE_SIZE + (i % 128), cur;
		mem_p2m(m, pfn, &cur);
		if (cur == to)
			to += 128;
		uint64_t t0 = now_ns();
		if (mem_migrate(m, pfn, to, &e) == 0)
			d[n++] = now_ns() - t0;
	}
	atomic_store(&w.stop, true);
	pthread_join(w.t, NULL);
	mem_get_stats(m, &st);
	qsort(d, n, sizeof(d[0]), cmp_u64);
	printf("%zu migrations: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us "
	       "(longest stall %.1f us, %llu writes)\n", n, d[n / 2] / 1e3, d[n * 9 / 10] / 1e3,
	       d[n * 99 / 100] / 1e3, d[n - 1] / 1e3, st.longest_stall_ns / 1e3,
	       (unsigned long long)w.writes);
	mem_destroy(m);
}

static void bench_backmap(uint64_t ram)
{
	static const char *names[] = { "list", "refcount", "search" };
	for (int k = 0; k < 3; k++) {
		struct mem *m = make(ram, (enum backmap_kind)k, PROTECT_UFFD, NULL);
		struct err e = {0};
		struct mem_info info;
		uint64_t pages = ram / PAGE_SIZE;

		if (mem_virtualize(m, 0, 0, &e) < 0 || mem_scramble(m, 7, 0, &e) < 0)
			die("scramble", &e);
		mem_info(m, &info);
		uint64_t full = info.monitor_bytes;
		uint64_t t0 = now_ns();
		if (mem_devirtualize(m, 0, 0, &e) < 0)
			die("devirtualize", &e);
		uint64_t td = now_ns() - t0;
		mem_info(m, &info);
		printf("%-9s %18.2f %22llu %16.2f\n", names[k], (double)full / pages,
		       (unsigned long long)info.monitor_bytes, td / 1e9);
		mem_destroy(m);
	}
}

int main(int argc, char **argv)
{
	uint64_t max = argc > 1 ? strtoull(argv[1], NULL, 0) * MiB : GiB;
	const char *only = argc > 2 ? argv[2] : "";

	bool touched = argc > 3 && strcmp(argv[3], "touched") == 0;

	for (int how = PROTECT_UFFD; how <= PROTECT_AUTO; how++)
		if (strcmp(only, protect_name[how]) == 0) {
			bench_scramble(max, (enum protect)how, touched);
			return 0;
		}

	printf("== virtualize / devirtualize with nothing to move, a writer thread running\n");
	printf("%-8s %14s %18s %14s %10s\n", "RAM MiB", "virtualize us", "devirtualize us",
	       "pages/s", "writes");
	bench_switch(256 * MiB);
	bench_switch(GiB);
	bench_switch(4 * GiB);

	printf("\n== full scramble, then devirtualize with a writer thread running\n");
	printf("(+T: every page touched by the guest first; the stall is the longest pause, the\n"
	       " writer column its slowest store; cpu is the remapper's CPU time per moved page)\n");
	printf("%-8s %-9s %10s %9s %10s %11s %12s %12s %10s\n", "RAM MiB", "protect",
	       "scramble s", "VMAs", "devirt s", "pages/s", "stall us", "writer us", "writes");
	for (uint64_t ram = 256 * MiB; ram <= max; ram *= 4) {
		bench_scramble(ram, PROTECT_UFFD, false);
		bench_scramble(ram, PROTECT_PAUSE, false);
		bench_scramble(ram, PROTECT_AUTO, false);
		bench_scramble(ram, PROTECT_AUTO, true);
	}

	printf("\n== single-page migrate with uffd-wp, a writer on the same pages\n");
	bench_migrate();

	printf("\n== monitor memory per page, every page remapped (64 MiB)\n");
	printf("%-9s %18s %22s %16s\n", "backmap", "bytes/page", "bytes after devirt", "devirt s");
	bench_backmap(64 * MiB);
	return 0;
}
