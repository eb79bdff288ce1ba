/* Machine memory: the layout, one sparse memfd whose offsets are GPAs, the
 * machine view, the per-region windows, huge pages and the VMA budget.
 *
 * Huge pages come from shmem THP (MADV_HUGEPAGE on the windows), never from
 * MFD_HUGETLB: a hugetlb memfd cannot be mapped at 4 KiB granularity, so
 * remapping single guest pages (the whole point of virtualized memory) would
 * be impossible. THP folios map 4 KiB pieces when needed and 2 MiB again
 * once devirtualize restores one mapping per window. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* config.h as generated here does not always define it */
#endif
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem_internal.h"

#define THP_SHMEM "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define MAP_COUNT "/proc/sys/vm/max_map_count"
#define VMA_MARGIN 256  /* VMAs left to the rest of the process */

int mem_layout(uint64_t ram, struct mem_layout *out, struct err *e)
{
	memset(out, 0, sizeof(*out));
	if (ram == 0)
		return err_set(e, EINVAL, "guest RAM size is 0");
	if (ram % HUGE_SIZE)
		return err_set(e, EINVAL, "guest RAM size %llu is not a multiple of 2 MiB",
			       (unsigned long long)ram);
	if (ram > MEM_MAX_RAM)
		return err_set(e, EINVAL, "guest RAM size %llu MiB is absurd (limit %llu MiB)",
			       (unsigned long long)(ram / MiB),
			       (unsigned long long)(MEM_MAX_RAM / MiB));
	out->r[0].gpa = 0;
	out->r[0].size = MIN(ram, MEM_HOLE_START);
	out->nr = 1;
	if (ram > MEM_HOLE_START) {
		out->r[1].gpa = MEM_HIGH_START;
		out->r[1].size = ram - MEM_HOLE_START;
		out->nr = 2;
	}
	return 0;
}

bool mem_is_ram(const struct mem *m, uint64_t pfn)
{
	for (unsigned i = 0; i < m->lay.nr; i++)
		if (pfn >= m->win[i].first && pfn < m->win[i].end)
			return true;
	return false;
}

uint8_t *window_addr(const struct mem *m, uint64_t pfn)
{
	for (unsigned i = 0; i < m->lay.nr; i++)
		if (pfn >= m->win[i].first && pfn < m->win[i].end)
			return m->win[i].hva + ((pfn - m->win[i].first) << PAGE_SHIFT);
	return NULL;
}

/* The PFN whose window page holds host address addr, or UINT64_MAX. */
uint64_t window_pfn(const struct mem *m, uint64_t addr)
{
	for (unsigned i = 0; i < m->lay.nr; i++) {
		uintptr_t lo = (uintptr_t)m->win[i].hva;
		uint64_t pages = m->win[i].end - m->win[i].first;
		if (addr >= lo && addr < lo + (pages << PAGE_SHIFT))
			return m->win[i].first + ((addr - lo) >> PAGE_SHIFT);
	}
	return UINT64_MAX;
}

/* Reserve size bytes of address space aligned to 2 MiB (so THP can map it). */
static void *reserve_aligned(uint64_t size, struct err *e)
{
	uint64_t len = size + HUGE_SIZE;
	uint8_t *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (p == MAP_FAILED) {
		err_sys(e, "reserving %llu MiB of address space for a RAM window",
			(unsigned long long)(size / MiB));
		return NULL;
	}
	uint8_t *a = (uint8_t *)ALIGN_UP((uintptr_t)p, HUGE_SIZE);
	if (a > p)
		munmap(p, a - p);
	if (p + len > a + size)
		munmap(a + size, p + len - (a + size));
	return a;
}

/* When root and the host says `never`, allow THP for madvised shmem. */
static void thp_shmem_enable(void)
{
	char buf[128] = "";
	int fd = open(THP_SHMEM, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0 && strstr(buf, "[never]") && geteuid() == 0) {
		if (pwrite(fd, "advise", 6, 0) == 6)
			log_info("set %s to 'advise' so guest RAM can use 2 MiB pages", THP_SHMEM);
	}
	close(fd);
}

static bool thp_shmem_allowed(void)
{
	char buf[128] = "";
	int fd = open(THP_SHMEM, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && !strstr(buf, "[never]") && !strstr(buf, "[deny]");
}

/* Pass-through memory is advised for huge pages; virtualized memory is
 * advised against them, so that khugepaged leaves it alone: collapsing a
 * 2 MiB range of the memfd walks every mapping of it (each of a scramble's
 * one-page VMAs) holding the file's reverse-map lock, and at nice 19 beside
 * busy vCPUs, preempted with that lock held, it kept the next mmap of a
 * devirtualize waiting 0.3-0.5 s. Mappings a fault makes meanwhile are
 * 4 KiB ones; devirtualize collapses what it remapped (restore_huge).
 * Existing 2 MiB mappings stay: advice changes no page table. */
int window_advise(struct mem *m, uint64_t first, uint64_t end, bool huge, struct err *e)
{
	if (!m->huge)
		return 0;
	if (madvise(window_addr(m, first), (end - first) << PAGE_SHIFT,
		    huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
		return err_sys(e, "madvise(%s) on PFNs 0x%llx-0x%llx of the RAM window",
			       huge ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE",
			       (unsigned long long)first, (unsigned long long)end);
	return 0;
}

/* Decide and check the huge-page backing once the windows exist. */
static int hugepages_setup(struct mem *m, struct err *e)
{
	m->backing = "4k";
	if (m->cfg.hugepages == HUGEPAGES_OFF)
		return 0;
	thp_shmem_enable();
	if (!thp_shmem_allowed()) {
		if (m->cfg.hugepages == HUGEPAGES_REQUIRED)
			return err_set(e, ENOTSUP, "2 MiB pages required but %s forbids shmem THP "
				       "(need root, or set it to 'advise')", THP_SHMEM);
		return 0;
	}
	m->huge = true;
	for (unsigned i = 0; i < m->lay.nr; i++)
		if (window_advise(m, m->win[i].first, m->win[i].end, true, e) < 0)
			return -1;
	if (m->cfg.hugepages == HUGEPAGES_REQUIRED) {
		/* Fault in the first 2 MiB and see whether it came as one PMD. */
		*(volatile uint8_t *)m->win[0].hva = 0;
		if (!windows_pmd_mapped(m))
			return err_set(e, ENOTSUP, "2 MiB pages required but the kernel mapped "
				       "guest RAM with 4 KiB pages (no shmem THP available)");
	}
	m->backing = "shmem-thp";
	return 0;
}

int machine_open(struct mem *m, struct err *e)
{
	const struct mem_region *last = &m->lay.r[m->lay.nr - 1];

	m->ram_top = (last->gpa + last->size) >> PAGE_SHIFT;
	m->spare_first = m->ram_top;
	m->remapped = calloc(m->ram_top / REMAP_BLOCK / 64 + 1, sizeof(*m->remapped));
	if (!m->remapped)
		return err_set(e, ENOMEM, "out of memory for the window's remap map");
	m->spare_end = m->ram_top + (m->cfg.spare_size >> PAGE_SHIFT);
	m->nr_mfn = m->spare_end;
	m->memfd = memfd_create("vmswitch-machine", MFD_CLOEXEC);
	if (m->memfd < 0)
		return err_sys(e, "memfd_create for machine memory");
	if (ftruncate(m->memfd, (off_t)(m->nr_mfn << PAGE_SHIFT)) < 0)
		return err_sys(e, "sizing machine memory to %llu MiB",
			       (unsigned long long)((m->nr_mfn << PAGE_SHIFT) / MiB));
	m->mview = mmap(NULL, m->nr_mfn << PAGE_SHIFT, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->mview == MAP_FAILED) {
		m->mview = NULL;
		return err_sys(e, "mapping the machine view of machine memory");
	}
	for (unsigned i = 0; i < m->lay.nr; i++) {
		struct mem_region *r = &m->lay.r[i];
		m->win[i].first = r->gpa >> PAGE_SHIFT;
		m->win[i].end = (r->gpa + r->size) >> PAGE_SHIFT;
		m->win[i].hva = reserve_aligned(r->size, e);
		if (!m->win[i].hva)
			return -1;
		r->hva = m->win[i].hva;
		if (window_map_identity(m, m->win[i].first, m->win[i].end, e) < 0)
			return -1;
	}
	return hugepages_setup(m, e);
}

void machine_close(struct mem *m)
{
	for (unsigned i = 0; i < m->lay.nr; i++)
		if (m->win[i].hva)
			munmap(m->win[i].hva, (m->win[i].end - m->win[i].first) << PAGE_SHIFT);
	if (m->mview)
		munmap(m->mview, m->nr_mfn << PAGE_SHIFT);
	if (m->memfd >= 0)
		close(m->memfd);
	free(m->remapped);
}

/* Has machine frame mfn ever been written? A frame that was not is a hole
 * in the memfd (no page cache page) and reads as zeros. SEEK_DATA looks up
 * the page cache and stops at the first page present, so a written frame
 * costs one lookup (mincore walked the machine view's page tables: 15% of a
 * devirtualize). restore_huge asks the same of a whole 2 MiB chunk with
 * mincore on the window instead: one call for 512 pages, where SEEK_HOLE
 * could scan far past the chunk. */
bool frame_populated(const struct mem *m, uint64_t mfn)
{
	return frame_next_data(m, mfn) == mfn;
}

/* The first frame from mfn on that holds data: nr_mfn if none, mfn itself
 * if the kernel cannot tell (copying is then the safe answer). */
uint64_t frame_next_data(const struct mem *m, uint64_t mfn)
{
	off_t data = lseek(m->memfd, (off_t)(mfn << PAGE_SHIFT), SEEK_DATA);

	if (data < 0)
		return errno == ENXIO ? m->nr_mfn : mfn;   /* ENXIO: no data from here on */
	return (uint64_t)data >> PAGE_SHIFT;
}

/* Set bit i of `bits` for each frame first + i of [first, first + n)
 * resident in the memfd's page cache, by mincore on the machine view: one
 * call answers for thousands of frames (~0.1 µs each) where
 * frame_populated asks one at a time (~1 µs). A resident frame is written
 * (or fallocated: copying its zeros is harmless); one not resident may be
 * a hole or swapped out, which only frame_populated tells apart. Best
 * effort: a failure leaves the rest unset. */
void frames_resident(const struct mem *m, uint64_t first, uint64_t n, uint64_t *bits)
{
	enum { BLOCK = 4096 };
	unsigned char vec[BLOCK];
	uint64_t end = MIN(first + n, m->nr_mfn);

	for (uint64_t f = first; f < end; f += BLOCK) {
		uint64_t k = MIN((uint64_t)BLOCK, end - f);
		if (mincore(m->mview + (f << PAGE_SHIFT), k << PAGE_SHIFT, vec) < 0) {
			log_debug("mincore on the machine view: %s", strerror(errno));
			break;
		}
		for (uint64_t i = 0; i < k; i++)
			if (vec[i] & 1)
				bit_put(bits, f - first + i, true);
	}
}

/* The same, exact: frames mincore finds absent are holes unless swapped
 * out, which one lseek per run of them tells (one per frame was a fifth of
 * a devirtualizing mover's time at 256 MiB). */
void frames_with_data(const struct mem *m, uint64_t first, uint64_t n, uint64_t *bits)
{
	uint64_t end = MIN(first + n, m->nr_mfn);

	frames_resident(m, first, n, bits);
	for (uint64_t f = first; f < end;) {
		if (bit_get(bits, f - first)) {
			f++;
			continue;
		}
		uint64_t d = frame_next_data(m, f);
		while (f < end && f < d && !bit_get(bits, f - first))
			f++;   /* a hole, up to data or a resident frame */
		if (f == d && f < end) {
			bit_put(bits, f - first, true);
			f++;
		}
	}
}

/* Copy machine frame `from` to `to`, holes as holes. Copying a hole (guest
 * RAM never touched) would allocate memory the guest does not use, and as
 * 4 KiB pages through the machine view, which devirtualize then collapses
 * back into huge ones by copying again: a full scramble of a mostly idle
 * 1 GiB guest filled all of it and spent a third of devirtualize
 * collapsing. A hole onto a hole is nothing to do; onto a written frame, a
 * zeroed page (the frame stays allocated, its folio intact). */
void frame_copy(struct mem *m, uint64_t to, uint64_t from)
{
	bool data = frame_populated(m, from);

	frame_copy_known(m, to, from, data, !data && frame_populated(m, to));
}

/* The same when the caller knows which frames hold data (to_data matters
 * only when from holds none). */
void frame_copy_known(struct mem *m, uint64_t to, uint64_t from, bool from_data, bool to_data)
{
	uint8_t *dst = m->mview + (to << PAGE_SHIFT);

	if (from_data) {
		memcpy(dst, m->mview + (from << PAGE_SHIFT), PAGE_SIZE);
		m->st.bytes_copied += PAGE_SIZE;
		return;
	}
	if (to_data)
		memset(dst, 0, PAGE_SIZE);
	m->st.holes_moved++;
}

/* Give the spare frames' memory back once no PFN can map one (all memory
 * pass-through): pages displaced there during a devirtualize would
 * otherwise stay allocated for the VM's lifetime. Best effort. */
void spare_release(struct mem *m)
{
	off_t off = (off_t)(m->spare_first << PAGE_SHIFT);
	off_t len = (off_t)((m->spare_end - m->spare_first) << PAGE_SHIFT);

	if (len && fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) < 0)
		log_warn("releasing the spare frames' memory: %s", strerror(errno));
}

/* Machine memory actually allocated (written frames), in bytes. */
uint64_t machine_resident_bytes(const struct mem *m)
{
	struct stat st;

	if (fstat(m->memfd, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

/* One mapping for [first, end) at offset == gpa (a range inside one window). */
int window_map_identity(struct mem *m, uint64_t first, uint64_t end, struct err *e)
{
	void *a = window_addr(m, first);
	void *p = mmap(a, (end - first) << PAGE_SHIFT, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED | MAP_NORESERVE, m->memfd,
		       (off_t)(first << PAGE_SHIFT));
	if (p == MAP_FAILED)
		return err_sys(e, "mapping PFNs 0x%llx-0x%llx of the RAM window",
			       (unsigned long long)first, (unsigned long long)end);
	return window_advise(m, first, end, m->nranges == 0, e);   /* see window_advise */
}

int window_map_page(struct mem *m, uint64_t pfn, uint64_t mfn, struct err *e)
{
	void *p = mmap(window_addr(m, pfn), PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, m->memfd, (off_t)(mfn << PAGE_SHIFT));
	if (p == MAP_FAILED)
		return err_sys(e, "mapping machine frame 0x%llx at PFN 0x%llx",
			       (unsigned long long)mfn, (unsigned long long)pfn);
	m->vma_est += 2;
	window_mark_remapped(m, pfn, pfn + 1);
	return 0;
}

static bool block_remapped(const struct mem *m, uint64_t blk)
{
	return bit_get(m->remapped, blk);
}

void window_mark_remapped(struct mem *m, uint64_t first, uint64_t end)
{
	for (uint64_t b = first / REMAP_BLOCK; first < end && b <= (end - 1) / REMAP_BLOCK; b++)
		bit_put(m->remapped, b, true);
}

/* The next run [*a, *b) of remapped blocks from *a on, clipped to end. */
bool window_next_remapped(const struct mem *m, uint64_t *a, uint64_t end, uint64_t *b)
{
	while (*a < end && !block_remapped(m, *a / REMAP_BLOCK))
		*a = ALIGN_DOWN(*a, REMAP_BLOCK) + REMAP_BLOCK;
	if (*a >= end)
		return false;
	for (*b = *a; *b < end && block_remapped(m, *b / REMAP_BLOCK);)
		*b = ALIGN_DOWN(*b, REMAP_BLOCK) + REMAP_BLOCK;
	*b = MIN(*b, end);
	return true;
}

/* [first, end) is one identity mapping again: the blocks wholly inside it
 * are clean. A block partly outside stays marked, as its other part may
 * still be remapped; the last block is inside if [first, end) reaches the
 * end of RAM. */
void window_clear_remapped(struct mem *m, uint64_t first, uint64_t end)
{
	for (uint64_t b = ALIGN_UP(first, REMAP_BLOCK) / REMAP_BLOCK;
	     b * REMAP_BLOCK < end && MIN((b + 1) * REMAP_BLOCK, m->ram_top) <= end; b++)
		bit_put(m->remapped, b, false);
}

static uint64_t count_lines(const char *path, uintptr_t lo, uintptr_t hi)
{
	char line[512];
	uint64_t n = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, t;
		if (sscanf(line, "%lx-%lx", &s, &t) == 2 && s >= lo && t <= hi)
			n++;
	}
	fclose(f);
	return n;
}

uint64_t count_window_vmas(const struct mem *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < m->lay.nr; i++) {
		uintptr_t lo = (uintptr_t)m->win[i].hva;
		n += count_lines("/proc/self/maps", lo,
				 lo + ((m->win[i].end - m->win[i].first) << PAGE_SHIFT));
	}
	return n;
}

static uint64_t read_map_count(void)
{
	char buf[32] = "";
	int fd = open(MAP_COUNT, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 65530;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtoull(buf, NULL, 10) : 65530;
}

void vma_init(struct mem *m)
{
	m->map_limit = read_map_count();
	m->vma_est = count_lines("/proc/self/maps", 0, UINTPTR_MAX);
}

/* Make room for `more` VMAs. The estimate only grows (2 per remapped page);
 * near the limit we recount, and when root raise the limit well ahead so
 * recounts stay rare; otherwise refuse before anything changes. */
int vma_budget(struct mem *m, uint64_t more, struct err *e)
{
	if (m->vma_est + more + VMA_MARGIN <= m->map_limit)
		return 0;
	m->map_limit = read_map_count();
	m->vma_est = count_lines("/proc/self/maps", 0, UINTPTR_MAX);
	uint64_t need = m->vma_est + more + VMA_MARGIN;
	if (need + need / 4 <= m->map_limit)
		return 0;
	uint64_t want = MAX(m->map_limit * 2, need * 2);
	if (geteuid() == 0) {
		char buf[32];
		int fd = open(MAP_COUNT, O_WRONLY | O_CLOEXEC);
		int len = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)want);
		if (fd >= 0 && write(fd, buf, len) == len) {
			close(fd);
			log_info("raised vm.max_map_count from %llu to %llu for remapped guest pages",
				 (unsigned long long)m->map_limit, (unsigned long long)want);
			m->map_limit = want;
			return 0;
		}
		if (fd >= 0)
			close(fd);
	}
	if (need <= m->map_limit)
		return 0;
	return err_set(e, ENOMEM, "remapping would need %llu more mappings but vm.max_map_count "
		       "is %llu (%llu in use); raise it (sysctl vm.max_map_count=%llu)",
		       (unsigned long long)more, (unsigned long long)m->map_limit,
		       (unsigned long long)m->vma_est, (unsigned long long)want);
}

/* Does any window mapping have PMD-mapped (2 MiB) pages? */
bool windows_pmd_mapped(const struct mem *m)
{
	char line[256];
	bool inside = false, found = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long s, t, kb;
		if (sscanf(line, "%lx-%lx ", &s, &t) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = false;
			for (unsigned i = 0; i < m->lay.nr; i++)
				inside |= s >= (uintptr_t)m->win[i].hva &&
					  s < (uintptr_t)m->win[i].hva +
					      ((m->win[i].end - m->win[i].first) << PAGE_SHIFT);
		} else if (inside && (sscanf(line, "ShmemPmdMapped: %lu", &kb) == 1 ||
				      sscanf(line, "FilePmdMapped: %lu", &kb) == 1 ||
				      sscanf(line, "AnonHugePages: %lu", &kb) == 1) && kb > 0) {
			found = true;
		}
	}
	fclose(f);
	return found;
}
