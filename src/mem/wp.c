/* userfaultfd write protection of window pages, and the fault thread that
 * breaks shared pages by copy-on-write.
 *
 * The fd is not UFFD_USER_MODE_ONLY: KVM's own accesses (vCPUs writing guest
 * RAM) must block in the fault too, not fail with EFAULT. Only the virtualized
 * part of a window is registered; a fresh mmap over a page drops its
 * registration, so remap.c registers it again after every remap. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mem_internal.h"

/* Open the fd and check the features; remember why not if it fails, so
 * that virtualize (which needs it) can say so. */
int wp_open(struct mem *m)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	m->uffd = -1;
	if (fd < 0) {
		snprintf(m->uffd_why, sizeof(m->uffd_why), "userfaultfd: %s%s", strerror(errno),
			 errno == EPERM ? " (needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1)" : "");
		return -1;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0 ||
	    !(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ||
	    !(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
		snprintf(m->uffd_why, sizeof(m->uffd_why),
			 "userfaultfd write-protect on shared memory is not supported by this kernel");
		close(fd);
		return -1;
	}
	m->uffd = fd;
	return 0;
}

void wp_close(struct mem *m)
{
	if (m->uffd >= 0)
		close(m->uffd);
	m->uffd = -1;
}

int wp_register(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)window_addr(m, first), .len = (end - first) << PAGE_SHIFT },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) < 0)
		return err_sys(e, "registering PFNs 0x%llx-0x%llx for write protection",
			       (unsigned long long)first, (unsigned long long)end);
	return 0;
}

int wp_unregister(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	struct uffdio_range r = { .start = (uintptr_t)window_addr(m, first),
				  .len = (end - first) << PAGE_SHIFT };
	if (ioctl(m->uffd, UFFDIO_UNREGISTER, &r) < 0)
		return err_sys(e, "unregistering PFNs 0x%llx-0x%llx from write protection",
			       (unsigned long long)first, (unsigned long long)end);
	return 0;
}

/* Register the 2 MiB block holding pfn (clipped to its virtualized range)
 * the first time a page there is protected. Registering a whole range at
 * the first change meant unregistering it all at devirtualize, which
 * clears write-protect bits through the MMU notifier: KVM dropped its
 * mappings of memory no change had touched. The block is marked remapped,
 * so devirtualize maps it again and unregisters it; the rest of the window
 * is never registered. */
static int register_block(struct mem *m, uint64_t pfn, struct err *e)
{
	size_t r = range_index(m, pfn);

	if (r == SIZE_MAX)
		return err_set(e, EINVAL, "PFN 0x%llx is not virtualized", (unsigned long long)pfn);
	uint64_t a = MAX(m->ranges[r][0], ALIGN_DOWN(pfn, REMAP_BLOCK));
	uint64_t b = MIN(m->ranges[r][1], ALIGN_DOWN(pfn, REMAP_BLOCK) + REMAP_BLOCK);
	if (wp_register(m, a, b, e) < 0)
		return -1;
	window_mark_remapped(m, a, b);
	return 0;
}

static int writeprotect(struct mem *m, uint64_t pfn, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)window_addr(m, pfn), .len = PAGE_SIZE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	return ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp);
}

/* Turning protection off also wakes writers blocked on the page. ENOENT:
 * not registered, so never protected (nothing to turn off) or registered
 * now. */
int wp_protect(struct mem *m, uint64_t pfn, bool on, struct err *e)
{
	int rc = writeprotect(m, pfn, on);

	if (rc < 0 && errno == ENOENT) {
		if (!on)
			return 0;
		if (register_block(m, pfn, e) < 0)
			return -1;
		rc = writeprotect(m, pfn, on);
	}
	if (rc < 0)
		return err_sys(e, "%s PFN 0x%llx", on ? "write-protecting" : "unprotecting",
			       (unsigned long long)pfn);
	return 0;
}

void wp_wake(struct mem *m, uint64_t first, uint64_t end)
{
	struct uffdio_range r = { .start = (uintptr_t)window_addr(m, first),
				  .len = (end - first) << PAGE_SHIFT };
	/* Can only fail for a bad range, which window_addr rules out. */
	(void)ioctl(m->uffd, UFFDIO_WAKE, &r);
}

/* A write hit a protected page. With the lock held nothing is mid-copy, so
 * a protected page is either shared (break it) or stale (unprotect it). */
static void service_fault(struct mem *m, uint64_t addr)
{
	uint64_t pfn = window_pfn(m, addr);
	struct err e = {0};

	if (pfn == UINT64_MAX)
		return;
	mem_lock(m);
	if (pfn_virtualized(m, pfn) && bm_count(m, p2m_get(m, pfn), 2) > 1) {
		uint64_t to = frame_find_free(m, 0, 0);
		struct move_ctx c = {0};
		if (to != UINT64_MAX && move_page(m, pfn, to, &c, &e) == 0) {
			m->st.cow_breaks++;
		} else {
			log_warn("copy-on-write of PFN 0x%llx failed: %s", (unsigned long long)pfn,
				 to == UINT64_MAX ? "no free machine frames" : e.msg);
		}
	} else if (pfn_virtualized(m, pfn)) {
		wp_protect(m, pfn, false, &e);
	}
	mem_unlock(m);
	wp_wake(m, pfn, pfn + 1);
}

static void *fault_thread(void *arg)
{
	struct mem *m = arg;
	struct pollfd pfd[2] = { { .fd = m->uffd, .events = POLLIN },
				 { .fd = m->fault_thr.stop_fd, .events = POLLIN } };

	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(m->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT &&
			    (msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				service_fault(m, msg[i].arg.pagefault.address);
	}
	return NULL;
}

int wp_start_thread(struct mem *m, struct err *e)
{
	return worker_start(&m->fault_thr, fault_thread, m, "cow-faults", "copy-on-write fault thread", e);
}

void wp_stop_thread(struct mem *m)
{
	worker_stop(&m->fault_thr);
}
