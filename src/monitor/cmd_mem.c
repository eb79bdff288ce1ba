/* Commands that change the memory mode or the P2M (claims 1-5, 10, 12-22). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"
#include "vmswitch/util.h"

/* [START END] -> PFN range; no arguments means all RAM (end == 0). */
static int range_args(int argc, char **argv, uint64_t *first, uint64_t *end, struct err *e)
{
	*first = *end = 0;
	if (argc == 1)
		return 0;
	if (argc != 3)
		return err_set(e, EINVAL, "give both START and END, or neither");
	return mon_arg_gpa_range(argv[1], argv[2], first, end, e);
}

static void print_ms(FILE *out, const char *what, uint64_t ns)
{
	fprintf(out, "%s: %" PRIu64 ".%03" PRIu64 " ms\n", what, ns / 1000000, ns / 1000 % 1000);
}

static int cmd_virtualize(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t first, end;
	struct mem_stats s;

	if (mon_need_mem(mon, e) < 0 || range_args(argc, argv, &first, &end, e) < 0)
		return -1;
	if (mem_virtualize(mon->t.mem, first, end, e) < 0)
		return -1;
	mem_get_stats(mon->t.mem, &s);
	fprintf(out, "mode: %s\n", mon_mode_name(mon->t.mem));
	print_ms(out, "took", s.last_virtualize_ns);
	return 0;
}

static int cmd_devirtualize(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	struct mem_devirt_opts o = {0};
	struct mem_stats a, b;
	uint64_t first, end;

	if (argc > 1 && strcmp(argv[argc - 1], "guest-first") == 0) {
		o.guest_first = true;
		argc--;
	}
	if (mon_need_mem(mon, e) < 0 || range_args(argc, argv, &first, &end, e) < 0)
		return -1;
	mem_get_stats(mon->t.mem, &a);
	if (mem_devirtualize_with(mon->t.mem, first, end, &o, e) < 0)
		return -1;
	mem_get_stats(mon->t.mem, &b);
	fprintf(out, "mode: %s\n", mon_mode_name(mon->t.mem));
	if (b.last_method)
		fprintf(out, "method: %s\n", b.last_method);
	if (b.unshared > a.unshared)
		fprintf(out, "shared pages given frames of their own first: %" PRIu64 "\n",
			b.unshared - a.unshared);
	fprintf(out, "pages: %" PRIu64 " skipped, %" PRIu64 " direct, %" PRIu64 " indirect\n",
		b.skipped - a.skipped, b.direct - a.direct, b.indirect - a.indirect);
	fprintf(out, "bytes copied: %" PRIu64 "\n", b.bytes_copied - a.bytes_copied);
	fprintf(out, "moves of never-written pages (no copy): %" PRIu64 "\n",
		b.holes_moved - a.holes_moved);
	print_ms(out, "took", b.last_devirtualize_ns);
	if (b.demand_faults > a.demand_faults)
		fprintf(out, "pages mapped on guest access meanwhile: %" PRIu64
			" (and %" PRIu64 " after them, ahead of the guest)\n",
			b.demand_faults - a.demand_faults, b.mapped_ahead - a.mapped_ahead);
	if (o.guest_first)
		fprintf(out, "chunks the guest had touched (left for last): %" PRIu64 "\n",
			b.last_touched_chunks);
	if (b.paused_batches > a.paused_batches)
		fprintf(out, "paused batches: %" PRIu64 "\n", b.paused_batches - a.paused_batches);
	print_ms(out, "longest stall", b.last_stall_ns);
	if (b.last_huge_chunks) {
		fprintf(out, "huge pages restored: %" PRIu64 "\n", b.last_huge_chunks);
		print_ms(out, "restoring them took", b.last_huge_ns);
	}
	return 0;
}

static int cmd_migrate(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t pfn, mfn;

	(void)argc;
	if (mon_need_mem(mon, e) < 0 || mon_arg_u64("PFN", argv[1], &pfn, e) < 0 ||
	    mon_arg_u64("MFN", argv[2], &mfn, e) < 0)
		return -1;
	if (mem_migrate(mon->t.mem, pfn, mfn, e) < 0)
		return -1;
	fprintf(out, "pfn 0x%" PRIx64 " -> mfn 0x%" PRIx64 "\n", pfn, mfn);
	return 0;
}

static int cmd_scramble(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t seed, count = 0;
	struct mem_p2m_summary s;

	if (mon_need_mem(mon, e) < 0 || mon_arg_u64("SEED", argv[1], &seed, e) < 0)
		return -1;
	if (argc > 2 && mon_arg_u64("COUNT", argv[2], &count, e) < 0)
		return -1;
	if (mem_scramble(mon->t.mem, seed, count, e) < 0)
		return -1;
	mem_p2m_summary(mon->t.mem, &s);
	fprintf(out, "remapped pages: %" PRIu64 " of %" PRIu64 "\n", s.remapped, s.pages);
	return 0;
}

static int cmd_share(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t a, b, mfn = 0;

	(void)argc;
	if (mon_need_mem(mon, e) < 0 || mon_arg_u64("PFN1", argv[1], &a, e) < 0 ||
	    mon_arg_u64("PFN2", argv[2], &b, e) < 0)
		return -1;
	if (mem_share(mon->t.mem, a, b, e) < 0)
		return -1;
	mem_p2m(mon->t.mem, a, &mfn);
	fprintf(out, "pfn 0x%" PRIx64 " and pfn 0x%" PRIx64 " share mfn 0x%" PRIx64 "\n", a, b, mfn);
	return 0;
}

static int mfn_range(struct monitor *mon, char **argv, uint64_t *first, uint64_t *end,
		     struct err *e)
{
	if (mon_need_mem(mon, e) < 0 || mon_arg_u64("MFN_START", argv[1], first, e) < 0 ||
	    mon_arg_u64("MFN_END", argv[2], end, e) < 0)
		return -1;
	if (*first >= *end)
		return err_set(e, EINVAL, "MFN_START 0x%" PRIx64 " must be below MFN_END 0x%" PRIx64,
			       *first, *end);
	return 0;
}

/* The evacuated frames were replaced (new DIMM): give them back. */
static int cmd_unretire(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t first, end;

	(void)argc;
	if (mfn_range(mon, argv, &first, &end, e) < 0 || mem_unretire(mon->t.mem, first, end, e) < 0)
		return -1;
	fprintf(out, "returned to service: %" PRIu64 " frames\n", end - first);
	return 0;
}

static int cmd_evacuate(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	uint64_t first, end;
	struct mem_stats a, b;

	(void)argc;
	if (mfn_range(mon, argv, &first, &end, e) < 0)
		return -1;
	mem_get_stats(mon->t.mem, &a);
	if (mem_evacuate(mon->t.mem, first, end, e) < 0)
		return -1;
	mem_get_stats(mon->t.mem, &b);
	fprintf(out, "evacuated pages: %" PRIu64 "\n", b.evacuated - a.evacuated);
	return 0;
}

const struct mon_cmd mon_cmds_mem[] = {
	{"virtualize", NULL, "[START END]", "virtualize all RAM or guest-physical [START, END)",
	 0, 2, cmd_virtualize},
	{"devirtualize", NULL, "[START END] [guest-first]",
	 "remap to identity and return to pass-through (guest-first: fewer guest stalls, slower)",
	 0, 3, cmd_devirtualize},
	{"migrate", NULL, "PFN MFN", "move a physical page to a free machine frame", 2, 2, cmd_migrate},
	{"scramble", NULL, "SEED [COUNT]", "randomly permute COUNT pages (default all virtualized)",
	 1, 2, cmd_scramble},
	{"share", NULL, "PFN1 PFN2", "map both pages to one frame (copy-on-write)", 2, 2, cmd_share},
	{"evacuate", NULL, "MFN_START MFN_END", "move every page out of machine frames [start, end)",
	 2, 2, cmd_evacuate},
	{"unretire", NULL, "MFN_START MFN_END", "return evacuated machine frames to service",
	 2, 2, cmd_unretire},
	{0},
};
