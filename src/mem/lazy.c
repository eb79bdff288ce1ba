/* Devirtualize by unmapping: pages come home through the machine view while
 * the guest cannot see them, and any page the guest touches meanwhile is
 * brought home on demand.
 *
 * Each window chunk holding a page not on its own frame is replaced (under
 * one short vCPU pause) by an identity mapping with no page tables,
 * registered for userfaultfd minor and missing faults. Such a page is then
 * reachable only through the machine view: no vCPU can write it, so moving
 * it needs no write protection, no pause and no mmap; a page displaced from
 * the frame it needs is just a P2M change. A guest access faults to the
 * fault thread, which brings that page home first (the same move) and maps
 * it (UFFDIO_CONTINUE, or UFFDIO_ZEROPAGE for a never-written frame). Once
 * every page is home, unregistering leaves one identity mapping.
 *
 * The paused sweep (sweep.c) instead gave every displaced page a mapping of
 * its own: one mmap each (VMA split and merge, the file's interval tree,
 * KVM's MMU notifier), most of its time, plus a vCPU pause per batch.
 *
 * Moves are done under l->lock, by the sweeper (the monitor thread, which
 * also holds the mem lock) and the fault thread alike. While chunks are
 * still being converted, a fault may need a page out of a frame whose
 * occupant is not converted yet: that occupant moves the protected way
 * (move_page). Used when devirtualizing everything, nothing is shared or
 * retired, a frame is free, and the kernel has minor faults on shmem. */
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
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mem_internal.h"

/* PFNs converted at a time: each mmap tears down the chunk's per-page
 * mappings (a few µs each); a pause converts as many as its budget allows. */
#define LAZY_CHUNK 64
#define LAZY_STEPS 16         /* moves between looks for a waiting fault */
#define LAZY_PENDING 64       /* faults waiting for a move that failed */

struct lazy {
	struct mem *m;
	int uffd, stop_fd;
	pthread_t thr;
	bool thr_running;
	pthread_mutex_t lock;     /* P2M, frames, inv, conv: sweeper vs fault thread */
	atomic_uint waiting;      /* the fault thread wants the lock */
	uint32_t *inv;            /* per MFN: 1 + the non-identity PFN on it, or 0 */
	uint64_t *conv;           /* per PFN bit: window page converted */
	uint64_t *data;           /* per MFN bit: frame written (see know_data), or NULL */
	uint64_t conv_ns;         /* running average of converting one chunk */
	uint64_t direct, indirect, faults;
	uint64_t pending[LAZY_PENDING];
	size_t npending;
};

static bool bit(const uint64_t *map, uint64_t i);
static void lazy_lock(struct lazy *l);
static void lazy_unlock(struct lazy *l);

static bool converted(const struct lazy *l, uint64_t pfn)
{
	return bit(l->conv, pfn);
}

static bool home(const struct mem *m, uint64_t pfn)
{
	return m->p2m[pfn] == 0;
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *map, uint64_t i, bool on)
{
	if (on)
		map[i / 64] |= 1ULL << (i % 64);
	else
		map[i / 64] &= ~(1ULL << (i % 64));
}

/* Once every page to move is unmapped, which frames hold data can change
 * only by our own copies (home pages change, but are never copied): one
 * pass of SEEK_DATA/SEEK_HOLE then replaces a lookup per copy (an lseek
 * each was 15% of a devirtualize). Best effort: without it, lseek per copy. */
static void know_data(struct lazy *l)
{
	struct mem *m = l->m;
	off_t end = (off_t)(m->nr_mfn << PAGE_SHIFT), a = 0, b;
	uint64_t *map = calloc(m->nr_mfn / 64 + 1, sizeof(*map));

	if (!map)
		return;
	lazy_lock(l);   /* the fault thread copies too */
	while (a < end && (a = lseek(m->memfd, a, SEEK_DATA)) >= 0) {
		b = lseek(m->memfd, a, SEEK_HOLE);
		if (b < 0)
			b = end;
		for (uint64_t f = (uint64_t)a >> PAGE_SHIFT; f < ((uint64_t)b + PAGE_SIZE - 1) >> PAGE_SHIFT; f++)
			bit_set(map, f, true);
		a = b;
	}
	if (a >= 0 || errno == ENXIO)   /* ENXIO: no data after a */
		l->data = map;
	else
		free(map);
	lazy_unlock(l);
}

static void copy(struct lazy *l, uint64_t to, uint64_t from)
{
	if (!l->data) {
		frame_copy(l->m, to, from);
		return;
	}
	bool d = bit(l->data, from);
	frame_copy_known(l->m, to, from, d, bit(l->data, to));
	if (d)
		bit_set(l->data, to, true);
}

/* True when the kernel can do it; a separate fd from write protection's:
 * a VMA has one userfaultfd, and these ranges are about to leave it. */
static int lazy_open(struct lazy *l)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MINOR_SHMEM };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api) < 0 || !(api.features & UFFD_FEATURE_MINOR_SHMEM) ||
	    !(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
		close(fd);
		return -1;
	}
	l->uffd = fd;
	return 0;
}

/* A free frame for q, displaced from frame p: its own if free (q is home
 * at once), else a spare frame, else any. One always exists: every move
 * here takes one free frame and releases one. */
static uint64_t displace_target(struct mem *m, uint64_t q)
{
	uint64_t t;

	if (q < m->nr_mfn && frame_free(m, q))
		return q;
	t = frame_find_free_in(m, m->spare_first, m->spare_end);
	return t != UINT64_MAX ? t : frame_find_free(m, 0, 0);
}

/* Bring converted page p home (l->lock held); returns the frame it left, or
 * UINT64_MAX if it could not move (its frame's occupant could not). */
static uint64_t home_one(struct lazy *l, uint64_t p, struct err *e)
{
	struct mem *m = l->m;
	uint64_t f = p2m_get(m, p), occ = l->inv[p];

	if (f == p)
		return UINT64_MAX;
	if (occ != 0) {
		uint64_t q = occ - 1, t = displace_target(m, q);
		if (t == UINT64_MAX) {
			err_set(e, ENOSPC, "no free machine frame to move PFN 0x%llx to",
				(unsigned long long)q);
			return UINT64_MAX;
		}
		if (converted(l, q)) {   /* unmapped: a P2M change */
			copy(l, t, p);
			frame_set_free(m, t, false);
			p2m_assign(m, q, t);
		} else {
			struct move_ctx c = {0};
			if (move_page(m, q, t, &c, e) < 0)
				return UINT64_MAX;
		}
		l->inv[t] = t == q ? 0 : (uint32_t)occ;
		l->indirect++;
	} else {
		l->direct++;
	}
	frame_set_free(m, p, false);
	copy(l, p, f);
	p2m_assign(m, p, p);
	l->inv[p] = l->inv[f] = 0;
	frame_released(m, f);
	notify(m, p);
	return f;
}

/* Map home page p for the guest and wake whoever faulted on it. */
static void map_home(struct lazy *l, uint64_t p)
{
	struct mem *m = l->m;
	uintptr_t a = (uintptr_t)window_addr(m, p);
	int rc;

	if (frame_populated(m, p)) {
		struct uffdio_continue c = { .range = { a, PAGE_SIZE } };
		rc = ioctl(l->uffd, UFFDIO_CONTINUE, &c);
	} else {
		struct uffdio_zeropage z = { .range = { a, PAGE_SIZE } };
		rc = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
	}
	if (rc < 0) {
		/* EEXIST: another vCPU's fault mapped it first. */
		struct uffdio_range r = { a, PAGE_SIZE };
		if (errno != EEXIST)
			log_warn("mapping PFN 0x%llx on demand: %s", (unsigned long long)p,
				 strerror(errno));
		(void)ioctl(l->uffd, UFFDIO_WAKE, &r);
	}
}

static void lazy_lock(struct lazy *l)
{
	pthread_mutex_lock(&l->lock);
}

static void lazy_unlock(struct lazy *l)
{
	pthread_mutex_unlock(&l->lock);
}

/* One fault: true when served, false to retry later. */
static bool serve(struct lazy *l, uint64_t p)
{
	struct err e = {0};
	uint64_t t0 = now_ns();
	bool ok = true;

	atomic_fetch_add(&l->waiting, 1);
	lazy_lock(l);
	atomic_fetch_sub(&l->waiting, 1);
	if (!converted(l, p)) {   /* mapped on its own again after a failure */
		struct uffdio_range r = { (uintptr_t)window_addr(l->m, p), PAGE_SIZE };
		(void)ioctl(l->uffd, UFFDIO_WAKE, &r);
	} else if (!home(l->m, p) && home_one(l, p, &e) == UINT64_MAX) {
		log_warn("bringing PFN 0x%llx home on demand: %s (will retry)",
			 (unsigned long long)p, e.msg);
		ok = false;
	} else {
		map_home(l, p);
		l->faults++;
		note_stall(l->m, now_ns() - t0);
	}
	lazy_unlock(l);
	return ok;
}

static void retry_pending(struct lazy *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->npending; i++)
		if (!serve(l, l->pending[i]))
			l->pending[n++] = l->pending[i];
	l->npending = n;
}

static void *fault_thread(void *arg)
{
	struct lazy *l = arg;
	struct pollfd pfd[2] = { { .fd = l->uffd, .events = POLLIN },
				 { .fd = l->stop_fd, .events = POLLIN } };

	for (;;) {
		if (poll(pfd, 2, l->npending ? 1 : -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		retry_pending(l);
		struct uffd_msg msg[16];
		ssize_t n = read(l->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t p = window_pfn(l->m, msg[i].arg.pagefault.address);
			if (p != UINT64_MAX && !serve(l, p) && l->npending < LAZY_PENDING)
				l->pending[l->npending++] = p;
		}
	}
	return NULL;
}

static int thread_start(struct lazy *l, struct err *e)
{
	l->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (l->stop_fd < 0)
		return err_sys(e, "creating the eventfd that stops the demand-fault thread");
	int rc = pthread_create(&l->thr, NULL, fault_thread, l);
	if (rc) {
		errno = rc;
		return err_sys(e, "starting the demand-fault thread");
	}
	l->thr_running = true;
	return 0;
}

static void thread_stop(struct lazy *l)
{
	uint64_t one = 1;

	if (l->thr_running && write(l->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(l->thr, NULL);
	l->thr_running = false;
}

static int lazy_register(struct lazy *l, uint64_t first, uint64_t end, struct err *e)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)window_addr(l->m, first),
			   .len = (end - first) << PAGE_SHIFT },
		.mode = UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
		return err_sys(e, "registering PFNs 0x%llx-0x%llx for demand faults",
			       (unsigned long long)first, (unsigned long long)end);
	return 0;
}

/* Per-page mappings back for a chunk whose conversion failed half way
 * (vCPUs paused, so nothing saw it). */
static void chunk_unconvert(struct lazy *l, uint64_t first, uint64_t end)
{
	struct err e = {0};

	for (uint64_t x = first; x < end; x++)
		if (window_map_page(l->m, x, p2m_get(l->m, x), &e) < 0)
			log_warn("%s", e.msg);
}

/* Replace [first, end) of the window by the unmapped identity mapping
 * (vCPUs paused, l->lock held). */
static int chunk_convert(struct lazy *l, uint64_t first, uint64_t end, struct err *e)
{
	uint64_t t0 = now_ns();
	int rc = vma_budget(l->m, 4, e);

	if (rc == 0)
		rc = window_map_identity(l->m, first, end, e);
	if (rc == 0 && (rc = lazy_register(l, first, end, e)) < 0)
		chunk_unconvert(l, first, end);
	for (uint64_t x = first; x < end && rc == 0; x++)
		bit_set(l->conv, x, true);
	/* Running average; one slow sample (an mmap that waited on the file's
	 * rmap lock) counts at most twice the average, as in batch.c. */
	uint64_t ns = MIN(now_ns() - t0, 2 * l->conv_ns);
	l->conv_ns = (3 * l->conv_ns + ns) / 4;
	return rc;
}

static int convert_pause(struct lazy *l, uint64_t *t_paused, struct err *e)
{
	struct mem *m = l->m;

	if (m->ops.pause(m->ops.ctx) < 0)
		return err_set(e, EIO, "pausing the vCPUs to unmap guest pages");
	*t_paused = now_ns();
	lazy_lock(l);
	return 0;
}

static void convert_resume(struct lazy *l, uint64_t t_paused)
{
	struct mem *m = l->m;

	note_stall(m, now_ns() - t_paused);
	m->st.paused_batches++;
	lazy_unlock(l);
	m->ops.resume(m->ops.ctx);
}

static bool chunk_moves(const struct mem *m, uint64_t first, uint64_t end)
{
	for (uint64_t x = first; x < end; x++)
		if (!home(m, x))
			return true;
	return false;
}

/* Phase 1: convert every chunk that has a page to move, in PFN order, as
 * many per pause as fit in the pause budget. */
static int convert_all(struct lazy *l, const uint64_t (*want)[2], size_t nwant, struct err *e)
{
	uint64_t t_paused = 0;
	bool paused = false;
	int rc = 0;

	l->conv_ns = LAZY_CHUNK * BATCH_MAP_GUESS_NS / 8;
	for (size_t r = 0; r < nwant && rc == 0; r++)
		for (uint64_t a = want[r][0]; a < want[r][1] && rc == 0;) {
			uint64_t b = MIN(want[r][1], ALIGN_DOWN(a + LAZY_CHUNK, LAZY_CHUNK));
			if (chunk_moves(l->m, a, b)) {
				if (paused && now_ns() - t_paused + l->conv_ns > BATCH_BUDGET_NS) {
					convert_resume(l, t_paused);
					paused = false;
				}
				if (!paused && (rc = convert_pause(l, &t_paused, e)) == 0)
					paused = true;
				if (rc == 0)
					rc = chunk_convert(l, a, b, e);
			}
			a = b;
		}
	if (paused)
		convert_resume(l, t_paused);
	return rc;
}

/* Let a waiting fault in: the mutex alone would hand the lock straight
 * back to the sweeper. */
static void lazy_yield(struct lazy *l)
{
	lazy_unlock(l);
	while (atomic_load(&l->waiting))
		sched_yield();
	lazy_lock(l);
}

/* Phase 2: every page home. From p, follow the frames each move frees (the
 * PFN that wants frame f is next): a cycle unwinds with one displaced page,
 * every other page copied once. */
static int sweep_all(struct lazy *l, const uint64_t (*want)[2], size_t nwant, struct err *e)
{
	struct mem *m = l->m;
	unsigned steps = 0;
	int rc = 0;

	lazy_lock(l);
	for (size_t r = 0; r < nwant && rc == 0; r++)
		for (uint64_t p = want[r][0]; p < want[r][1] && rc == 0; p++)
			for (uint64_t x = p; x < m->ram_top && converted(l, x) && !home(m, x);) {
				uint64_t f = home_one(l, x, e);
				if (f == UINT64_MAX) {
					rc = -1;
					break;
				}
				if (++steps % LAZY_STEPS == 0)
					lazy_yield(l);
				x = f;
			}
	lazy_unlock(l);
	return rc;
}

/* After a failure: every converted page not home gets its own mapping
 * again (the fault thread still serves the rest until unregistered). */
static void unconvert_all(struct lazy *l, const uint64_t (*want)[2], size_t nwant)
{
	struct err e = {0};

	lazy_lock(l);
	for (size_t r = 0; r < nwant; r++)
		for (uint64_t x = want[r][0]; x < want[r][1]; x++)
			if (converted(l, x) && !home(l->m, x)) {
				if (window_map_page(l->m, x, p2m_get(l->m, x), &e) < 0)
					log_warn("%s", e.msg);
				bit_set(l->conv, x, false);
			}
	lazy_unlock(l);
}

/* Unregister the converted runs (home pages fault in normally from now on)
 * and give every range its one mapping and huge pages. */
static int finish(struct lazy *l, const uint64_t (*want)[2], size_t nwant, bool ok,
		  struct err *e)
{
	struct mem *m = l->m;
	int rc = 0;

	for (size_t r = 0; r < nwant; r++)
		for (uint64_t a = want[r][0]; a < want[r][1];) {
			bool c = converted(l, a);
			uint64_t b = a + 1;
			while (b < want[r][1] && converted(l, b) == c)
				b++;
			struct uffdio_range u = { (uintptr_t)window_addr(m, a), (b - a) << PAGE_SHIFT };
			if (c && ioctl(l->uffd, UFFDIO_UNREGISTER, &u) < 0 && rc == 0)
				rc = err_sys(e, "unregistering PFNs 0x%llx-0x%llx from demand faults",
					     (unsigned long long)a, (unsigned long long)b);
			if (ok && rc == 0)
				rc = c ? (restore_huge(m, a, b), 0) : map_identity_chunked(m, a, b, e);
			a = b;
		}
	return rc;
}

int lazy_devirtualize(struct mem *m, const uint64_t (*want)[2], size_t nwant,
		      struct err *e)
{
	struct lazy *l = calloc(1, sizeof(*l));
	int rc = -1;

	if (!l)
		return err_set(e, ENOMEM, "out of memory for devirtualize");
	l->m = m;
	l->uffd = l->stop_fd = -1;
	pthread_mutex_init(&l->lock, NULL);
	l->inv = calloc(m->nr_mfn, sizeof(*l->inv));
	l->conv = calloc(m->ram_top / 64 + 1, sizeof(*l->conv));
	if (!l->inv || !l->conv) {
		err_set(e, ENOMEM, "out of memory indexing %llu machine frames",
			(unsigned long long)m->nr_mfn);
		goto out;
	}
	if (lazy_open(l) < 0) {
		rc = 1;   /* not possible here: the caller sweeps instead */
		goto out;
	}
	for (size_t r = 0; r < nwant; r++)
		for (uint64_t p = want[r][0]; p < want[r][1]; p++)
			if (!home(m, p))
				l->inv[p2m_get(m, p)] = (uint32_t)(p + 1);
	if (thread_start(l, e) < 0)
		goto out;
	rc = convert_all(l, want, nwant, e);
	if (rc == 0)
		know_data(l);
	if (rc == 0)
		rc = sweep_all(l, want, nwant, e);
	if (rc < 0)
		unconvert_all(l, want, nwant);
	struct err e2 = {0};
	if (finish(l, want, nwant, rc == 0, rc < 0 ? &e2 : e) < 0)
		rc = -1;
	m->st.direct += l->direct;
	m->st.indirect += l->indirect;
	m->st.demand_faults += l->faults;
out:
	thread_stop(l);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	if (l->uffd >= 0)
		close(l->uffd);
	pthread_mutex_destroy(&l->lock);
	free(l->inv);
	free(l->conv);
	free(l->data);
	free(l);
	return rc;
}

bool lazy_possible(const struct mem *m, const uint64_t (*want)[2], size_t nwant)
{
	if (!sweep_possible(m) || m->cfg.protect_by_pause || m->nfree == 0 || nwant != m->nranges)
		return false;
	for (size_t r = 0; r < nwant; r++)
		if (want[r][0] != m->ranges[r][0] || want[r][1] != m->ranges[r][1])
			return false;
	return true;
}
