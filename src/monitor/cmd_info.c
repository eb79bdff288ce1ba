/* info mode | memory | p2m | backmap | vcpus: read-only views of the switch. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"
#include "vmswitch/util.h"

#define P2M_DEFAULT_COUNT 16
#define P2M_MAX_COUNT 4096
#define BACKMAP_SHOW 256
#define MAX_RANGES 64

static void print_ranges(struct mem *m, FILE *out)
{
	uint64_t r[MAX_RANGES][2];
	size_t n = mem_virt_ranges(m, r, MAX_RANGES);

	for (size_t i = 0; i < n && i < MAX_RANGES; i++)
		fprintf(out, "virtualized: 0x%" PRIx64 "-0x%" PRIx64 " (pfn 0x%" PRIx64 "-0x%" PRIx64
			", %" PRIu64 " pages)\n", r[i][0] << PAGE_SHIFT, r[i][1] << PAGE_SHIFT,
			r[i][0], r[i][1], r[i][1] - r[i][0]);
	if (n > MAX_RANGES)
		fprintf(out, "virtualized: ... %zu ranges in all\n", n);
}

static int cmd_info_mode(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)argc, (void)argv;
	if (mon_need_mem(mon, e) < 0)
		return -1;
	fprintf(out, "mode: %s\n", mon_mode_name(mon->t.mem));
	print_ranges(mon->t.mem, out);
	return 0;
}

static int cmd_info_memory(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	const struct mem_layout *l;
	struct mem_p2m_summary s;
	struct mem_info mi;

	(void)argc, (void)argv;
	if (mon_need_mem(mon, e) < 0)
		return -1;
	l = mem_get_layout(mon->t.mem);
	mem_info(mon->t.mem, &mi);
	mem_p2m_summary(mon->t.mem, &s);
	for (unsigned i = 0; i < l->nr; i++)
		fprintf(out, "region %u: gpa 0x%" PRIx64 "-0x%" PRIx64 " (%" PRIu64 " MiB) window %p\n",
			i, l->r[i].gpa, l->r[i].gpa + l->r[i].size, (uint64_t)(l->r[i].size / MiB), l->r[i].hva);
	fprintf(out, "ram pages: %" PRIu64 "\n", mem_ram_pages(mon->t.mem));
	fprintf(out, "free machine frames: %" PRIu64 "\n", s.free_frames);
	fprintf(out, "backing: %s\n", mi.backing ? mi.backing : "?");
	fprintf(out, "backing page size: %" PRIu64 "\n", mi.page_size);
	fprintf(out, "huge pages: %s\n", mi.hugepages ? "on" : "off");
	fprintf(out, "back map: %s\n", mi.backmap ? mi.backmap : "?");
	fprintf(out, "mappings: %" PRIu64 "\n", mi.vmas);
	fprintf(out, "monitor bytes: %" PRIu64 "\n", mi.monitor_bytes);
	fprintf(out, "mode: %s\n", mon_mode_name(mon->t.mem));
	return 0;
}

static void print_summary(struct mem *m, FILE *out)
{
	struct mem_p2m_summary s;

	mem_p2m_summary(m, &s);
	fprintf(out, "summary: %" PRIu64 " pages, %" PRIu64 " identity, %" PRIu64 " remapped, %"
		PRIu64 " shared frames, %" PRIu64 " free frames\n",
		s.pages, s.identity, s.remapped, s.shared_frames, s.free_frames);
}

static int cmd_info_p2m(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t pfn = 0, count = P2M_DEFAULT_COUNT, mfn, users[2];
	struct err ignored;
	size_t n;

	if (mon_need_mem(mon, e) < 0)
		return -1;
	if (argc > 1 && mon_arg_u64("PFN", argv[1], &pfn, e) < 0)
		return -1;
	if (argc > 2 && mon_arg_u64("COUNT", argv[2], &count, e) < 0)
		return -1;
	if (count == 0 || count > P2M_MAX_COUNT)
		return err_set(e, ERANGE, "COUNT must be 1..%d", P2M_MAX_COUNT);
	if (mem_p2m(mon->t.mem, pfn, &mfn) < 0)
		return err_set(e, ERANGE, "pfn 0x%" PRIx64 " is not guest RAM", pfn);
	/* Stops at the end of the RAM region rather than failing mid-listing. */
	for (uint64_t i = 0; i < count && mem_p2m(mon->t.mem, pfn + i, &mfn) == 0; i++) {
		const char *kind = mfn == pfn + i ? "identity" : "remapped";
		n = 0;
		if (mem_backmap(mon->t.mem, mfn, users, 2, &n, &ignored) == 0 && n > 1)
			kind = mfn == pfn + i ? "identity, shared" : "remapped, shared";
		fprintf(out, "pfn 0x%" PRIx64 " -> mfn 0x%" PRIx64 " (%s)\n", pfn + i, mfn, kind);
	}
	print_summary(mon->t.mem, out);
	return 0;
}

static int cmd_info_backmap(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t mfn, pfns[BACKMAP_SHOW];
	size_t n = 0;

	(void)argc;
	if (mon_need_mem(mon, e) < 0 || mon_arg_u64("MFN", argv[1], &mfn, e) < 0)
		return -1;
	if (mem_backmap(mon->t.mem, mfn, pfns, BACKMAP_SHOW, &n, e) < 0)
		return err_wrap(e, "back map of mfn 0x%" PRIx64, mfn);
	if (n == 0) {
		fprintf(out, "mfn 0x%" PRIx64 ": free\n", mfn);
		return 0;
	}
	fprintf(out, "mfn 0x%" PRIx64 ": %zu%s physical page%s\n", mfn, n,
		n == BACKMAP_SHOW ? " or more" : "", n == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  pfn 0x%" PRIx64 "\n", pfns[i]);
	return 0;
}

static const char *paging_name(const struct mmu_cpu *c)
{
	if (!(c->cr0 & (1ULL << 31)))
		return "off";
	if (!(c->cr4 & (1ULL << 5)))
		return "32-bit";
	if (!(c->efer & (1ULL << 10)))
		return "pae";
	return (c->cr4 & (1ULL << 12)) ? "5-level" : "4-level";
}

static int cmd_info_vcpus(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	unsigned n = mon->t.vcpu_count ? mon->t.vcpu_count(mon->t.ctx) : 0;
	struct monitor_vcpu_info vi;

	(void)argc, (void)argv;
	if (n == 0)
		return err_set(e, ENOTSUP, "this VM has no vCPUs to inspect");
	for (unsigned i = 0; i < n; i++) {
		if (mon_vcpu_paging(mon, i, &vi, e) < 0)
			return -1;
		fprintf(out, "vcpu %u: %s rip=0x%" PRIx64 " cr3=0x%" PRIx64 " cr0=0x%" PRIx64
			" cr4=0x%" PRIx64 " efer=0x%" PRIx64 " paging=%s\n", i,
			vi.state ? vi.state : "?", vi.rip, vi.paging.cr3, vi.paging.cr0,
			vi.paging.cr4, vi.paging.efer, paging_name(&vi.paging));
	}
	return 0;
}

const struct mon_cmd mon_cmds_info[] = {
	{"info", "mode", "", "memory mode and the virtualized ranges", 0, 0, cmd_info_mode},
	{"info", "memory", "", "regions, windows, backing pages, mappings", 0, 0, cmd_info_memory},
	{"info", "p2m", "[PFN [COUNT]]", "P2M entries (default 0, 16) and a summary", 0, 2, cmd_info_p2m},
	{"info", "backmap", "MFN", "physical pages mapped to a machine frame", 1, 1, cmd_info_backmap},
	{"info", "vcpus", "", "state, RIP and paging registers of each vCPU", 0, 0, cmd_info_vcpus},
	{0},
};
