/* Devirtualize by unmapping: pages come home through the machine view while
 * the guest cannot see them, and a page the guest touches meanwhile is
 * brought home on demand.
 *
 * Each window chunk holding a page not on its own frame is replaced by an
 * identity mapping with no page tables, registered for userfaultfd minor
 * and missing faults. A page to move is then reachable only through the
 * machine view: no vCPU can write it, so moving it needs no write
 * protection, no pause and no mmap, and a page displaced from the frame it
 * needs is just a P2M change. A guest access faults to the mover thread,
 * which brings that page home first and maps it (UFFDIO_CONTINUE, or
 * UFFDIO_ZEROPAGE for a never-written frame). Once every page is home,
 * unregistering leaves one identity mapping.
 *
 * No vCPU is paused either: the chunk's new mapping is made and registered
 * at a scratch address and moved over the chunk with mremap, which replaces
 * the old mappings atomically (userfaultfd keeps the registration across
 * the move when asked for UFFD_FEATURE_EVENT_REMAP, and the mremap waits
 * until the mover has read that event). A vCPU waits only if it faults
 * while a chunk's old per-page mappings are torn down.
 *
 * The paused sweep (sweep.c) instead gave every displaced page a mapping of
 * its own, one mmap each (VMA split and merge, the file's interval tree,
 * KVM's MMU notifier), and paused the vCPUs for every batch.
 *
 * Threads: the caller (monitor thread, holding the mem lock) converts
 * chunks in PFN order (guest first: those the guest touched lately last);
 * the mover thread alone moves pages, serving faults first and sweeping in
 * PFN order behind the conversion front (guest first: leaving the touched
 * chunks' pages until those are unmapped). A fault may
 * need a page out of a frame whose occupant is still mapped: the mover asks
 * for the occupant's chunk, which the converter unmaps next, and serves the
 * fault then (moving the occupant alone by a protected mmap made a mapping
 * the unmapping tore down again, and needed a lock the converter holds
 * through its mremap). The mover never waits for the converter, whose
 * mremap waits for it. Used when devirtualizing everything, nothing is
 * retired, a frame is free, and the kernel has minor faults on shmem;
 * shared frames are split before (remap.c), as copy-on-write would. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mem_internal.h"

/* PFNs unmapped per mremap. A fault on a page whose frame's occupant is
 * still mapped waits for the chunk in progress and then the occupant's:
 * tearing down their per-page mappings takes 3-4 µs a page, and the
 * mremap's event round trip ~0.1 ms a chunk. At 256 MiB, 256 pages made
 * those waits 1-2 ms each; 64 cost ~10% of the pages per second; 128
 * kept both (README, Benchmarks). */
#define LAZY_CHUNK 128
#define LAZY_LULL_NS 5000000  /* longest the converter holds off for the mover */
#define LAZY_STEPS 16         /* moves between looks for faults */
#define LAZY_PENDING 256      /* faults waiting to be served again */
#define LAZY_REQ 64           /* chunks asked for out of order */
#define LAZY_AROUND 16        /* pages after a faulting one mapped with it */

/* A map (UFFDIO_CONTINUE) fails with EAGAIN while any mremap's event is
 * unread, and the converter issues mremaps back to back: the mover asks
 * for a lull, the converter holds off until the mover has mapped. */
enum { QUIET_NO, QUIET_ASKED, QUIET_HOLDING };

struct lazy {
	struct mem *m;
	const uint64_t (*want)[2];
	size_t nwant;
	int uffd, wake_fd;            /* wake_fd: the converter made progress */
	struct worker mover;
	pthread_mutex_t done_lock;
	pthread_cond_t done_cond;
	bool done;                    /* the mover has every page home, or gave up */
	atomic_bool all_converted, abort;
	atomic_bool unregistered;     /* faults from now on just retry, as plain ones */
	atomic_int quiet;             /* QUIET_*: a map met an mremap in flight */
	pthread_cond_t quiet_cond;    /* with done_lock: the mover mapped in the lull */
	uint64_t req[LAZY_REQ];       /* PFNs whose chunks a fault needs unmapped */
	atomic_size_t req_head, req_tail;   /* the mover adds, the converter takes */
	_Atomic uint64_t *conv;       /* per PFN bit: window page unmapped (converted) */
	uint32_t *cdone;              /* chunks converted, in order (chunk = PFN / LAZY_CHUNK) */
	uint64_t *touched;            /* per chunk bit: the guest used a page of it lately */
	bool guest_first;             /* touched chunks are unmapped last */
	atomic_size_t ncdone;
	uint64_t longest_convert_ns;
	unsigned nconverted;          /* chunks so far, for the tests' injected failure */

	/* The mover's own. */
	uint32_t *inv;                /* per MFN: 1 + the non-identity PFN on it, or 0 */
	uint64_t *known, *data;       /* per MFN bits: written or not, as last learned */
	size_t r;                     /* sweep cursor: range, PFN */
	uint64_t p;
	uint64_t chain;               /* next PFN of the cycle being unwound, or UINT64_MAX */
	uint32_t *whead;              /* per chunk: 1 + first PFN waiting for it, or 0 */
	uint32_t *wnext;              /* per PFN: 1 + next PFN on its list, or 0 */
	uint32_t ready;               /* 1 + first PFN whose chunk came, or 0 */
	size_t cseen;                 /* cdone entries taken */
	bool blocked;                 /* the cursor waits for the conversion front */
	bool skipped;                 /* a page was left for the final pass */
	int rc;
	struct err err;
	uint64_t *parked;             /* per PFN bit: displaced to a temporary frame */
	uint64_t spare_lo;            /* no spare frame below it is free */
	uint64_t *mapped;             /* per PFN bit: home and mapped again */
	uint64_t direct, indirect, identity, faults, around;
	struct { uint64_t pfn, since; } pending[LAZY_PENDING];   /* since: first read */
	size_t npending;
};

static bool converted(const struct lazy *l, uint64_t pfn)
{
	return atomic_load_explicit(&l->conv[pfn / 64], memory_order_acquire) >> (pfn % 64) & 1;
}

static void set_converted(struct lazy *l, uint64_t pfn, bool on)
{
	if (on)
		atomic_fetch_or_explicit(&l->conv[pfn / 64], 1ULL << (pfn % 64),
					 memory_order_release);
	else
		atomic_fetch_and(&l->conv[pfn / 64], ~(1ULL << (pfn % 64)));
}

/* Has frame f been written? Nothing punches holes meanwhile, so a written
 * frame stays written: the frames resident at the start are known written
 * at once (lazy_new), with no system call each. A hole is learned by one
 * lseek, asked only of a frame no PTE maps (every frame a move copies from
 * or to: a free one, or one held by an unmapped page); that answer stays
 * true until the mover's own copies change it, which keep it up to date.
 * The lseeks were a fifth of the mover's time at 256 MiB, one per frame. */
static bool has_data(struct lazy *l, uint64_t f)
{
	if (!bit_get(l->known, f)) {
		bit_put(l->known, f, true);
		bit_put(l->data, f, frame_populated(l->m, f));
	}
	return bit_get(l->data, f);
}

/* Frame f is mapped again: the guest may write it, so a hole is no longer
 * known to be one. */
static void forget(struct lazy *l, uint64_t f)
{
	if (!bit_get(l->data, f))
		bit_put(l->known, f, false);
}

static void copy(struct lazy *l, uint64_t to, uint64_t from)
{
	bool d = has_data(l, from);

	frame_copy_known(l->m, to, from, d, !d && has_data(l, to));
	if (d)
		bit_put(l->data, to, true);
}

static bool home(const struct mem *m, uint64_t pfn)
{
	return m->p2m[pfn] == 0;
}

static void wake_range(struct lazy *l, uint64_t pfn)
{
	struct uffdio_range r = { (uintptr_t)window_addr(l->m, pfn), PAGE_SIZE };
	(void)ioctl(l->uffd, UFFDIO_WAKE, &r);
}

/* A free frame for q, displaced from frame p: its own if free (q is home
 * at once), else a spare frame (no page's home, so q is not in the way
 * again), else any. One always exists: every move here takes one free
 * frame and releases one. The spare frames are searched from the lowest
 * that may be free (spare_lo): searched from the first, as they filled
 * up, the search was a fifth of the mover's time at 1 GiB. */
static uint64_t displace_target(struct lazy *l, uint64_t q)
{
	struct mem *m = l->m;
	uint64_t t;

	if (q < m->nr_mfn && frame_free(m, q))
		return q;
	t = frame_find_free_in(m, l->spare_lo, m->spare_end);
	l->spare_lo = t != UINT64_MAX ? t : m->spare_end;
	return t != UINT64_MAX ? t : frame_find_free(m, 0, 0);
}

/* Ask the converter to unmap pfn's chunk next (a full ring drops it: the
 * fault asks again when retried). */
static void request(struct lazy *l, uint64_t pfn)
{
	size_t h = atomic_load(&l->req_head);

	if (h - atomic_load(&l->req_tail) < LAZY_REQ) {
		l->req[h % LAZY_REQ] = pfn;
		atomic_store_explicit(&l->req_head, h + 1, memory_order_release);
	}
}

/* Occupant q of frame p leaves for free frame t: a copy and a P2M change,
 * once q is unmapped. Returns 1 if it is not yet. */
static int displace(struct lazy *l, uint64_t q, uint64_t p, uint64_t t)
{
	struct mem *m = l->m;

	if (!converted(l, q))
		return 1;
	copy(l, t, p);
	frame_set_free(m, t, false);
	p2m_assign(m, q, t);
	return 0;
}

/* Bring converted page p home: 0 done (*left: the frame it left), 1 not now,
 * -1 failed. */
static int home_one(struct lazy *l, uint64_t p, uint64_t *left, struct err *e)
{
	struct mem *m = l->m;
	uint64_t f = p2m_get(m, p), occ = l->inv[p];

	if (occ != 0) {
		uint64_t q = occ - 1, t = displace_target(l, q);
		if (t == UINT64_MAX)
			return err_set(e, ENOSPC, "no free machine frame to move PFN 0x%llx to",
				       (unsigned long long)q);
		if (displace(l, q, p, t) != 0)
			return 1;
		l->inv[t] = t == q ? 0 : (uint32_t)occ;
		if (t == q)
			l->direct++;   /* q is home too */
		else
			bit_put(l->parked, q, true);
	}
	/* Counted once, on the way home: indirect if it was parked on the way. */
	if (bit_get(l->parked, p))
		l->indirect++;
	else
		l->direct++;
	frame_set_free(m, p, false);
	copy(l, p, f);
	p2m_assign(m, p, p);
	l->inv[p] = l->inv[f] = 0;
	frame_released(m, f);
	if (f >= m->spare_first && f < l->spare_lo)
		l->spare_lo = f;
	notify(m, p);
	*left = f;
	return 0;
}

/* Map home page p for the guest (waking whoever faulted on it): false when
 * the map must wait for a pending mremap event to be read. */
static bool map_home(struct lazy *l, uint64_t p)
{
	uintptr_t a = (uintptr_t)window_addr(l->m, p);
	bool d = has_data(l, p);   /* known already when the page just came home */
	int rc;

	forget(l, p);   /* mapped from now on */
	if (d) {
		struct uffdio_continue c = { .range = { a, PAGE_SIZE } };
		rc = ioctl(l->uffd, UFFDIO_CONTINUE, &c);
	} else {
		struct uffdio_zeropage z = { .range = { a, PAGE_SIZE } };
		rc = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
	}
	if (rc < 0 && errno == EAGAIN) {   /* an mremap's event is not read yet */
		int no = QUIET_NO;
		atomic_compare_exchange_strong(&l->quiet, &no, QUIET_ASKED);
		return false;
	}
	bit_put(l->mapped, p, true);
	if (rc < 0) {
		/* EEXIST: another vCPU's fault mapped it first. ENOENT once
		 * unregistering began: the fault retries as a plain one. */
		if (errno != EEXIST && !(errno == ENOENT && atomic_load(&l->unregistered)))
			log_warn("mapping PFN 0x%llx on demand: %s", (unsigned long long)p,
				 strerror(errno));
		wake_range(l, p);
	}
	return true;
}

/* After a fault on p, bring home and map the pages after it too: a guest
 * walking its memory then waits once per LAZY_AROUND pages instead of once
 * per page (each wait is a round trip through this thread and, on a busy
 * host, a trip through the scheduler). Stops at a page still mapped, or
 * one whose frame's occupant is; a never-written page is left to its own
 * fault, as mapping it would allocate it. */
static void fault_around(struct lazy *l, uint64_t p)
{
	struct err e = {0};
	uint64_t f;

	for (uint64_t x = p + 1; x <= p + LAZY_AROUND && x < l->m->ram_top; x++) {
		if (!converted(l, x) || bit_get(l->mapped, x))
			return;
		if (!home(l->m, x) && home_one(l, x, &f, &e) != 0)
			return;   /* a failure is the sweep's to report */
		if (has_data(l, x) && map_home(l, x))
			l->around++;
	}
}

/* One fault, read at t0: true when served, false to try again later. The
 * stall noted runs from t0, so a fault that waited for its frame's occupant
 * to be unmapped counts all of that wait. */
static bool serve(struct lazy *l, uint64_t p, uint64_t t0)
{
	struct err e = {0};
	uint64_t f;

	/* Mapped on its own again after a failure, or all home and plain. */
	if (!converted(l, p) || atomic_load(&l->unregistered)) {
		wake_range(l, p);
		note_stall(l->m, now_ns() - t0);
		return true;
	}
	if (!home(l->m, p)) {
		int rc = home_one(l, p, &f, &e);
		if (rc < 0)
			log_warn("bringing PFN 0x%llx home on demand: %s (will retry)",
				 (unsigned long long)p, e.msg);
		if (rc > 0)   /* its frame's occupant is still mapped: unmap it next */
			request(l, l->inv[p] - 1);
		if (rc != 0)
			return false;
	}
	if (!map_home(l, p))
		return false;
	l->faults++;
	note_stall(l->m, now_ns() - t0);
	fault_around(l, p);
	return true;
}

static void defer(struct lazy *l, uint64_t p, uint64_t since)
{
	if (l->npending == LAZY_PENDING) {   /* its vCPU waits for the end's unregistering */
		log_warn("too many faults waiting; PFN 0x%llx waits for the end", (unsigned long long)p);
		return;
	}
	l->pending[l->npending].pfn = p;
	l->pending[l->npending++].since = since;
}

static void retry_pending(struct lazy *l)
{
	size_t n = 0, was = l->npending;

	l->npending = 0;
	for (size_t i = 0; i < was; i++)
		if (!serve(l, l->pending[i].pfn, l->pending[i].since))
			l->pending[n++] = l->pending[i];
	l->npending = n;
}

/* Read every message: faults are served, a remap event is done by being
 * read (its mremap returns). */
static void drain(struct lazy *l)
{
	struct uffd_msg msg[16];
	ssize_t n;

	while ((n = read(l->uffd, msg, sizeof(msg))) > 0)
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t p = window_pfn(l->m, msg[i].arg.pagefault.address);
			uint64_t t0 = now_ns();
			if (p != UINT64_MAX && !serve(l, p, t0))
				defer(l, p, t0);
		}
}

static void sweep_done(struct lazy *l, int rc)
{
	pthread_mutex_lock(&l->done_lock);
	l->done = true;
	l->rc = rc;
	pthread_cond_signal(&l->done_cond);
	pthread_mutex_unlock(&l->done_lock);
}

/* p cannot move until occupant q's chunk is unmapped: park it there. */
static void wait_on(struct lazy *l, uint64_t p, uint64_t q)
{
	uint64_t c = q / LAZY_CHUNK;

	l->wnext[p] = l->whead[c];
	l->whead[c] = (uint32_t)(p + 1);
}

/* Pages parked on chunks converted since last time can move now. */
static void chunks_ready(struct lazy *l)
{
	size_t n = atomic_load_explicit(&l->ncdone, memory_order_acquire);

	for (; l->cseen < n; l->cseen++) {
		uint64_t c = l->cdone[l->cseen];
		for (uint32_t w = l->whead[c], nx; w; w = nx) {
			nx = l->wnext[w - 1];
			l->wnext[w - 1] = l->ready;
			l->ready = w;
		}
		l->whead[c] = 0;
	}
}

static uint64_t ready_pop(struct lazy *l)
{
	if (!l->ready)
		return UINT64_MAX;
	uint64_t p = l->ready - 1;
	l->ready = l->wnext[p];
	return p;
}

/* The cursor's next page with work, or false (pass over, or waiting). */
static bool next_page(struct lazy *l)
{
	struct mem *m = l->m;

	for (;;) {
		if (l->r == l->nwant) {
			/* Every page to move was reached, so was converted. */
			if (!atomic_load(&l->all_converted)) {
				l->blocked = true;
				return false;
			}
			chunks_ready(l);
			if (l->ready)   /* the last chunks' pages first */
				return false;
			if (!l->skipped) {
				sweep_done(l, 0);
				return false;
			}
			/* Final pass: everything is unmapped now. */
			l->skipped = false;
			l->r = 0;
			l->p = l->want[0][0];
		}
		if (l->p >= l->want[l->r][1]) {
			if (++l->r < l->nwant)
				l->p = l->want[l->r][0];
			continue;
		}
		if (home(m, l->p)) {
			l->p++;
			continue;
		}
		if (!converted(l, l->p)) {
			if (bit_get(l->touched, l->p / LAZY_CHUNK)) {   /* unmapped last */
				wait_on(l, l->p, l->p);
				l->p++;
				continue;
			}
			l->blocked = true;   /* the conversion front: wait */
			return false;
		}
		uint32_t occ = l->inv[l->p];
		if (occ && !converted(l, occ - 1)) {   /* its occupant is still mapped */
			wait_on(l, l->p, occ - 1);
			l->p++;
			continue;
		}
		return true;
	}
}

/* Does x come home in the chain (unmapped and not home yet)? */
static bool chain_next(const struct lazy *l, uint64_t x)
{
	return x < l->m->ram_top && converted(l, x) && !home(l->m, x);
}

/* The page to move next: the cycle being unwound, else a page whose
 * frame's occupant was just unmapped, else the cursor's; UINT64_MAX: none
 * now. */
static uint64_t next_move(struct lazy *l)
{
	uint64_t x = l->chain;

	l->chain = UINT64_MAX;
	if (x != UINT64_MAX && chain_next(l, x))
		return x;
	while ((x = ready_pop(l)) != UINT64_MAX) {
		uint32_t occ = l->inv[x];
		if (!chain_next(l, x))
			continue;   /* home meanwhile */
		if (occ && !converted(l, occ - 1)) {   /* its frame changed hands */
			wait_on(l, x, occ - 1);
			continue;
		}
		return x;
	}
	return next_page(l) ? l->p++ : UINT64_MAX;
}

/* Up to LAZY_STEPS moves: from the cursor's page, follow the frames each
 * move frees (the PFN that wants frame f comes next), so a cycle unwinds
 * with one displaced page and every other page is copied once. A cycle can
 * be as long as RAM: it is resumed, never finished in one go, so faults
 * wait for LAZY_STEPS moves at most. */
static void sweep_some(struct lazy *l)
{
	unsigned steps = 0;

	l->blocked = false;
	if (atomic_load(&l->abort)) {
		sweep_done(l, -1);
		return;
	}
	chunks_ready(l);
	while (steps < LAZY_STEPS) {
		uint64_t x = next_move(l), f;
		if (x == UINT64_MAX)
			return;
		int rc = home_one(l, x, &f, &l->err);
		if (rc < 0) {
			sweep_done(l, -1);
			return;
		}
		if (rc > 0) {   /* not now: the final pass retries it */
			l->skipped = true;
			continue;
		}
		steps++;
		if (chain_next(l, f))
			l->chain = f;
	}
}

/* The converter held off while this thread mapped: let it go on. */
static void lull_over(struct lazy *l)
{
	pthread_mutex_lock(&l->done_lock);
	atomic_store(&l->quiet, QUIET_NO);
	pthread_cond_signal(&l->quiet_cond);
	pthread_mutex_unlock(&l->done_lock);
}

static void *mover_main(void *arg)
{
	struct lazy *l = arg;
	struct pollfd pfd[3] = { { .fd = l->uffd, .events = POLLIN },
				 { .fd = l->mover.stop_fd, .events = POLLIN },
				 { .fd = l->wake_fd, .events = POLLIN } };

	for (;;) {
		int timeout = !l->done && !l->blocked ? 0 : l->npending ? 1 : -1;
		if (poll(pfd, 3, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[2].revents) {
			uint64_t v;
			if (read(l->wake_fd, &v, sizeof(v)) < 0)
				v = 0;   /* nothing to clear */
		}
		bool lull = atomic_load(&l->quiet) == QUIET_HOLDING;
		drain(l);
		retry_pending(l);
		if (lull)
			lull_over(l);
		if (!l->done)
			sweep_some(l);
	}
	if (!l->done) {   /* poll failed: do not leave the converter waiting */
		err_sys(&l->err, "polling the demand-fault fd");
		sweep_done(l, -1);
	}
	return NULL;
}

static int mover_start(struct lazy *l, struct err *e)
{
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0)
		return err_sys(e, "creating an eventfd for the devirtualize mover");
	return worker_start(&l->mover, mover_main, l, "devirt-mover", "devirtualize mover thread", e);
}

static void kick(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof(one)) < 0)
		log_debug("eventfd write: %s", strerror(errno));
}

static void mover_wait(struct lazy *l)
{
	pthread_mutex_lock(&l->done_lock);
	while (!l->done)
		pthread_cond_wait(&l->done_cond, &l->done_lock);
	pthread_mutex_unlock(&l->done_lock);
}

/* Replace [first, end) of the window by its identity mapping, unmapped and
 * registered. */
static int chunk_convert(struct lazy *l, uint64_t first, uint64_t end, struct err *e)
{
	struct mem *m = l->m;
	size_t len = (end - first) << PAGE_SHIFT;

	if (vma_budget(m, 4, e) < 0)
		return -1;
	uint8_t *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			  m->memfd, (off_t)(first << PAGE_SHIFT));
	if (s == MAP_FAILED)
		return err_sys(e, "mapping PFNs 0x%llx-0x%llx to unmap them",
			       (unsigned long long)first, (unsigned long long)end);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)s, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_MISSING,
	};
	/* Same flags as the virtualized window's other mappings, so the chunks
	 * merge (window_advise). */
	if (m->huge && madvise(s, len, MADV_NOHUGEPAGE) < 0)
		err_sys(e, "madvise(MADV_NOHUGEPAGE) on PFNs 0x%llx-0x%llx",
			(unsigned long long)first, (unsigned long long)end);
	else if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
		err_sys(e, "registering PFNs 0x%llx-0x%llx for demand faults",
			(unsigned long long)first, (unsigned long long)end);
	else if (mremap(s, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, window_addr(m, first)) ==
		 MAP_FAILED)
		err_sys(e, "moving the unmapped PFNs 0x%llx-0x%llx into the window",
			(unsigned long long)first, (unsigned long long)end);
	else {
		window_mark_remapped(m, first, end);
		return 0;
	}
	munmap(s, len);
	return -1;
}

static bool chunk_moves(const struct mem *m, uint64_t first, uint64_t end)
{
	for (uint64_t x = first; x < end; x++)
		if (!home(m, x))
			return true;
	return false;
}

/* If the mover asked, give it a lull to map in (a few ms at most: it
 * may have stopped). */
static void hold_off(struct lazy *l)
{
	int asked = QUIET_ASKED;
	struct timespec until;

	if (!atomic_compare_exchange_strong(&l->quiet, &asked, QUIET_HOLDING))
		return;
	kick(l->wake_fd);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += LAZY_LULL_NS;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&l->done_lock);
	while (atomic_load(&l->quiet) == QUIET_HOLDING &&
	       pthread_cond_timedwait(&l->quiet_cond, &l->done_lock, &until) == 0)
		;
	atomic_store(&l->quiet, QUIET_NO);
	pthread_mutex_unlock(&l->done_lock);
}

/* Unmap [a, b) unless done already or nothing there moves; tell the
 * mover. */
static int convert_one(struct lazy *l, uint64_t a, uint64_t b, struct err *e)
{
	if (converted(l, a) || !chunk_moves(l->m, a, b))
		return 0;
	hold_off(l);
	if (++l->nconverted == l->m->fail_unmap_after)
		return err_set(e, EIO, "unmapping PFNs 0x%llx-0x%llx: failure injected by a test",
			       (unsigned long long)a, (unsigned long long)b);
	uint64_t t0 = now_ns();
	if (chunk_convert(l, a, b, e) < 0)
		return -1;
	for (uint64_t x = a; x < b; x++)
		set_converted(l, x, true);
	size_t n = atomic_load(&l->ncdone);
	l->cdone[n] = (uint32_t)(a / LAZY_CHUNK);
	atomic_store_explicit(&l->ncdone, n + 1, memory_order_release);
	kick(l->wake_fd);
	l->longest_convert_ns = MAX(l->longest_convert_ns, now_ns() - t0);
	return 0;
}

/* The chunk of range r that holds PFN a, clamped to the range. */
static void chunk_of(const struct lazy *l, size_t r, uint64_t a, uint64_t *first, uint64_t *end)
{
	*first = MAX(l->want[r][0], ALIGN_DOWN(a, LAZY_CHUNK));
	*end = MIN(l->want[r][1], ALIGN_DOWN(a, LAZY_CHUNK) + LAZY_CHUNK);
}

/* Chunks the mover asked for, before the next in order. */
static int convert_requested(struct lazy *l, struct err *e)
{
	size_t t;

	while ((t = atomic_load(&l->req_tail)) !=
	       atomic_load_explicit(&l->req_head, memory_order_acquire)) {
		uint64_t q = l->req[t % LAZY_REQ], a, b;
		atomic_store(&l->req_tail, t + 1);
		for (size_t r = 0; r < l->nwant; r++)
			if (q >= l->want[r][0] && q < l->want[r][1]) {
				chunk_of(l, r, q, &a, &b);
				if (convert_one(l, a, b, e) < 0)
					return -1;
			}
	}
	return 0;
}

/* Convert every chunk that has a page to move, in PFN order; guest first:
 * those the guest has not touched lately, then the others. A fault costs
 * ~8 µs when its frame's occupant is unmapped already, ~0.6 ms when the
 * occupant's chunk must be unmapped first (that was 150 of the 158 ms the
 * guest's faults waited at 256 MiB); the guest faults only on the chunks it
 * touches, so their occupants, mostly in untouched chunks, are unmapped by
 * then. */
static int convert_all(struct lazy *l, struct err *e)
{
	uint64_t a, b;

	for (int last = 0; last < (l->guest_first ? 2 : 1); last++)
		for (size_t r = 0; r < l->nwant; r++)
			for (uint64_t p = l->want[r][0]; p < l->want[r][1]; p = b) {
				chunk_of(l, r, p, &a, &b);
				if (bit_get(l->touched, a / LAZY_CHUNK) != last)
					continue;
				if (convert_requested(l, e) < 0 || convert_one(l, a, b, e) < 0)
					return -1;
			}
	return 0;
}

/* After a failure (mover stopped): every converted page not home gets its
 * own mapping again; the rest are home and fault in normally once
 * unregistered. */
static void unconvert_all(struct lazy *l)
{
	struct err e = {0};

	for (size_t r = 0; r < l->nwant; r++)
		for (uint64_t x = l->want[r][0]; x < l->want[r][1]; x++)
			if (converted(l, x) && !home(l->m, x)) {
				if (window_map_page(l->m, x, p2m_get(l->m, x), &e) < 0)
					log_warn("%s", e.msg);
				set_converted(l, x, false);
			}
}

/* The next run of pages all converted or all not, from *a in range *r. */
static bool next_run(const struct lazy *l, size_t *r, uint64_t *a, uint64_t *b, bool *c)
{
	while (*r < l->nwant && *a >= l->want[*r][1])
		if (++*r < l->nwant)
			*a = l->want[*r][0];
	if (*r == l->nwant)
		return false;
	*c = converted(l, *a);
	const uint64_t end = l->want[*r][1], same = *c ? UINT64_MAX : 0;
	for (*b = *a + 1; *b < end;) {
		if (*b % 64 == 0 && *b + 64 <= end && atomic_load(&l->conv[*b / 64]) == same)
			*b += 64;   /* a whole word alike: a 4 GiB range is 16,384 words */
		else if (converted(l, *b) == *c)
			(*b)++;
		else
			break;
	}
	return true;
}

/* Every converted run back to plain faults (a fault still waiting is
 * woken; its page is home). All of them first, before any slow work: a
 * range unregistered only after the previous one's huge pages were
 * restored stalled its guest for that long (~90 ms at 4 GiB). */
static int unregister_all(struct lazy *l, struct err *e)
{
	size_t r = 0;
	bool c;
	int rc = 0;

	for (uint64_t a = l->want[0][0], b; next_run(l, &r, &a, &b, &c); a = b) {
		struct uffdio_range u = { (uintptr_t)window_addr(l->m, a), (b - a) << PAGE_SHIFT };
		if (c && ioctl(l->uffd, UFFDIO_UNREGISTER, &u) < 0 && rc == 0)
			rc = err_sys(e, "unregistering PFNs 0x%llx-0x%llx from demand faults",
				     (unsigned long long)a, (unsigned long long)b);
	}
	return rc;
}

/* Every range its one mapping: converted runs are one identity mapping
 * already; the others may hold pages moved home alone. The caller restores
 * huge pages. */
static int remap_all(struct lazy *l, struct err *e)
{
	size_t r = 0;
	bool c;

	for (uint64_t a = l->want[0][0], b; next_run(l, &r, &a, &b, &c); a = b)
		if (!c && map_identity_chunked(l->m, a, b, e) < 0)
			return -1;
	return 0;
}

/* The kernel must support minor faults on shmem and keep a registration
 * across mremap. A separate fd from write protection's: a VMA has one
 * userfaultfd, and these ranges are leaving that one. */
static int lazy_open(struct lazy *l)
{
	const uint64_t need = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_EVENT_REMAP;
	struct uffdio_api api = { .api = UFFD_API, .features = need };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api) < 0 || (api.features & need) != need ||
	    !(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
		close(fd);
		return -1;
	}
	l->uffd = fd;
	return 0;
}

/* Which frames the moves copy from or to are written, learned a 2 MiB
 * block at a time: mincore costs ~0.1 µs per frame of a block, an lseek
 * ~1 µs per frame, so a full scramble asks about every block and a few
 * migrations about a few (the frames mincore finds absent cost one lseek
 * per run of them). moving: per block, a move copies from or to one of its
 * frames. */
static void learn_resident(struct lazy *l, const uint64_t *moving)
{
	const uint64_t nr = l->m->nr_mfn, nblk = nr / REMAP_BLOCK + 1;

	for (uint64_t b = 0, e; b < nblk; b = e) {
		for (e = b; e < nblk && bit_get(moving, e); e++)
			;
		if (e == b) {
			e++;
			continue;
		}
		uint64_t first = b * REMAP_BLOCK, end = MIN(e * REMAP_BLOCK, nr);
		frames_with_data(l->m, first, end - first, l->data + first / 64);
		uint64_t f = first;   /* a multiple of 64: a word at a time */
		for (; f + 64 <= end; f += 64)
			l->known[f / 64] = UINT64_MAX;
		for (; f < end; f++)
			bit_put(l->known, f, true);
	}
}

/* Which chunks the guest touched lately: any page with a page table entry
 * (bit 63 of its /proc/self/pagemap word). A remapped page's entry appears
 * on its first use after the change that moved it, and stays. Without
 * pagemap every chunk counts as untouched: PFN order. */
static void learn_touched(struct lazy *l)
{
	uint64_t ent[512];
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		log_debug("/proc/self/pagemap: %s (unmapping in PFN order)", strerror(errno));
		return;
	}
	for (size_t r = 0; r < l->nwant; r++)
		for (uint64_t p = l->want[r][0], n; p < l->want[r][1]; p += n) {
			n = MIN(l->want[r][1] - p, (uint64_t)(sizeof(ent) / sizeof(ent[0])));
			off_t at = (off_t)((uintptr_t)window_addr(l->m, p) / PAGE_SIZE * sizeof(ent[0]));
			if (pread(fd, ent, n * sizeof(ent[0]), at) != (ssize_t)(n * sizeof(ent[0]))) {
				log_debug("reading /proc/self/pagemap: %s", strerror(errno));
				break;
			}
			for (uint64_t i = 0; i < n; i++)
				if (ent[i] >> 63)   /* present */
					bit_put(l->touched, (p + i) / LAZY_CHUNK, true);
		}
	close(fd);
}

static struct lazy *lazy_new(struct mem *m, const uint64_t (*want)[2], size_t nwant,
			     bool guest_first)
{
	struct lazy *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->m = m;
	l->want = want;
	l->nwant = nwant;
	l->guest_first = guest_first;
	l->p = want[0][0];
	l->chain = UINT64_MAX;
	l->spare_lo = m->spare_first;
	l->uffd = l->wake_fd = -1;
	worker_init(&l->mover);
	pthread_mutex_init(&l->done_lock, NULL);
	pthread_cond_init(&l->done_cond, NULL);
	pthread_cond_init(&l->quiet_cond, NULL);
	l->inv = zalloc(m->nr_mfn, sizeof(*l->inv));
	l->known = zalloc(m->nr_mfn / 64 + 1, sizeof(uint64_t));
	l->parked = zalloc(m->ram_top / 64 + 1, sizeof(uint64_t));
	l->mapped = zalloc(m->ram_top / 64 + 1, sizeof(uint64_t));
	l->data = zalloc(m->nr_mfn / 64 + 1, sizeof(uint64_t));
	l->conv = zalloc(m->ram_top / 64 + 1, sizeof(*l->conv));
	l->whead = zalloc(m->ram_top / LAZY_CHUNK + 1, sizeof(*l->whead));
	l->touched = zalloc(m->ram_top / LAZY_CHUNK / 64 + 1, sizeof(uint64_t));
	l->cdone = zalloc(m->ram_top / LAZY_CHUNK + 2 * MEM_MAX_RANGES, sizeof(*l->cdone));
	l->wnext = zalloc(m->ram_top, sizeof(*l->wnext));
	/* Without it (no memory), every frame is asked about by lseek. */
	uint64_t *moving = zalloc(m->nr_mfn / REMAP_BLOCK / 64 + 1, sizeof(uint64_t));
	for (size_t r = 0; l->inv && r < nwant; r++)
		for (uint64_t p = want[r][0]; p < want[r][1]; p++) {
			if (home(m, p)) {
				l->identity++;
				continue;
			}
			uint64_t f = p2m_get(m, p);
			l->inv[f] = (uint32_t)(p + 1);
			if (moving) {
				bit_put(moving, f / REMAP_BLOCK, true);   /* copied from */
				bit_put(moving, p / REMAP_BLOCK, true);   /* and to */
			}
		}
	if (moving && l->inv && l->known && l->data)
		learn_resident(l, moving);
	if (l->touched && guest_first)
		learn_touched(l);
	zfree(moving);
	return l;
}

static void lazy_free(struct lazy *l)
{
	worker_stop(&l->mover);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	if (l->uffd >= 0)
		close(l->uffd);
	pthread_mutex_destroy(&l->done_lock);
	pthread_cond_destroy(&l->done_cond);
	pthread_cond_destroy(&l->quiet_cond);
	zfree(l->inv);
	zfree(l->known);
	zfree(l->parked);
	zfree(l->mapped);
	zfree(l->data);
	zfree((void *)l->conv);
	zfree(l->whead);
	zfree(l->touched);
	zfree(l->wnext);
	zfree(l->cdone);
	free(l);
}

/* Keep khugepaged out of this process while pages move: collapsing a
 * 2 MiB range of the memfd locks its pages and walks every mapping of them
 * (each of the scramble's one-page VMAs), and the unmapping and the faults
 * that wait on it stalled the guest for 65-100 ms. Huge pages come back at
 * the end (restore_huge), once this is released. False if THP was off
 * already (by the user: left as it is) or the kernel refused. */
static bool thp_hold(const struct mem *m)
{
	if (!m->huge || prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 0)
		return false;
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0)
		return true;
	log_debug("PR_SET_THP_DISABLE: %s (khugepaged may run meanwhile)", strerror(errno));
	return false;
}

static void thp_release(void)
{
	if (prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0) < 0)
		log_warn("re-enabling huge pages (PR_SET_THP_DISABLE 0): %s", strerror(errno));
}

int lazy_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		      bool guest_first, struct err *e)
{
	struct lazy *l = lazy_new(m, want, nwant, guest_first);
	struct err e2 = {0};
	int rc;

	if (!l || !l->inv || !l->known || !l->parked || !l->mapped || !l->data || !l->conv || !l->whead || !l->wnext || !l->cdone || !l->touched) {
		if (l)
			lazy_free(l);
		return err_set(e, ENOMEM, "out of memory indexing %llu machine frames",
			       (unsigned long long)m->nr_mfn);
	}
	if (lazy_open(l) < 0) {
		lazy_free(l);
		return 1;   /* not on this kernel: the caller sweeps instead */
	}
	bool thp_held = thp_hold(m);
	rc = mover_start(l, e);
	if (rc == 0) {
		rc = convert_all(l, e);
		if (rc < 0)
			atomic_store(&l->abort, true);
		atomic_store(&l->all_converted, true);
		kick(l->wake_fd);
		mover_wait(l);
		if (rc == 0 && l->rc < 0) {
			*e = l->err;
			rc = -1;
		}
	}
	if (rc == 0) {   /* while the mover still serves faults */
		atomic_store(&l->unregistered, true);
		rc = unregister_all(l, e);
	}
	worker_stop(&l->mover);
	if (rc < 0) {
		unconvert_all(l);
		unregister_all(l, &e2);
	}
	if (thp_held)
		thp_release();
	if (rc == 0)
		rc = remap_all(l, e);
	m->st.skipped += l->identity;
	m->st.direct += l->direct;
	m->st.indirect += l->indirect;
	m->st.demand_faults += l->faults;
	m->st.mapped_ahead += l->around;
	for (uint64_t i = 0; guest_first && i <= m->ram_top / LAZY_CHUNK / 64; i++)
		m->st.last_touched_chunks += (uint64_t)__builtin_popcountll(l->touched[i]);
	note_stall(m, l->longest_convert_ns);
	lazy_free(l);
	return rc;
}

bool lazy_possible(const struct mem *m, const uint64_t (*want)[2], size_t nwant)
{
	/* Splitting uses one free frame per extra sharer (the copy-on-write
	 * reserve), and unmapping needs one more for cycles. */
	if (!pause_usable(m) || m->cfg.protect_by_pause || m->nretired ||
	    m->nfree <= m->cow_reserve || nwant != m->nranges)
		return false;
	for (size_t r = 0; r < nwant; r++)
		if (want[r][0] != m->ranges[r][0] || want[r][1] != m->ranges[r][1])
			return false;
	return true;
}
