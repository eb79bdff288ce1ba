/* VM-level commands: stats, pause, resume, guest-finish, quit, help. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"
#include "vmswitch/mmu.h"

#define P(name, v) fprintf(out, "%s: %" PRIu64 "\n", name, (uint64_t)(v))

static int cmd_stats(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	if (argc == 2) {   /* stats clear */
		if (strcmp(argv[1], "clear") != 0)
			return err_set(e, EINVAL, "stats takes no argument but 'clear', not '%s'",
				       argv[1]);
		if (mon->t.mem)
			mem_clear_peaks(mon->t.mem);
		if (mon->t.clear_stats)
			mon->t.clear_stats(mon->t.ctx);
		fprintf(out, "peaks cleared\n");
		return 0;
	}
	if (mon->t.mem) {
		struct mem_stats s;
		mem_get_stats(mon->t.mem, &s);
		fprintf(out, "mode: %s\n", mon_mode_name(mon->t.mem));
		P("virtualizations", s.virtualizations);
		P("devirtualizations", s.devirtualizations);
		P("skipped", s.skipped);
		P("direct", s.direct);
		P("indirect", s.indirect);
		P("bytes_copied", s.bytes_copied);
		P("holes_moved", s.holes_moved);
		P("resident_bytes", s.resident_bytes);
		P("migrations", s.migrations);
		P("shares", s.shares);
		P("cow_breaks", s.cow_breaks);
		P("unshared", s.unshared);
		P("evacuated", s.evacuated);
		P("longest_stall_ns", s.longest_stall_ns);
		P("last_stall_ns", s.last_stall_ns);
		P("last_virtualize_ns", s.last_virtualize_ns);
		P("last_devirtualize_ns", s.last_devirtualize_ns);
		P("passthrough_page_ops", s.passthrough_page_ops);
		P("paused_batches", s.paused_batches);
		P("demand_faults", s.demand_faults);
		P("mapped_ahead", s.mapped_ahead);
	}
	if (mon->t.mmu) {
		struct mmu_stats s;
		mmu_get_stats(mon->t.mmu, &s);
		P("tlb_hits", s.hits);
		P("tlb_misses", s.misses);
		P("tlb_invalidations", s.invalidations);
		P("tlb_flushes", s.flushes);
		P("tlb_walks", s.walks);
	}
	if (mon->t.print_stats)
		mon->t.print_stats(mon->t.ctx, out);
	return 0;
}

static int cmd_pause(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)argc, (void)argv, (void)out;
	if (!mon->t.pause)
		return err_set(e, ENOTSUP, "this VM cannot be paused");
	return mon->t.pause(mon->t.ctx, e);
}

static int cmd_resume(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)argc, (void)argv, (void)out;
	if (!mon->t.resume)
		return err_set(e, ENOTSUP, "this VM cannot be resumed");
	mon->t.resume(mon->t.ctx);
	return 0;
}

static int cmd_guest_finish(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)argc, (void)argv, (void)out;
	if (!mon->t.guest_finish)
		return err_set(e, ENOTSUP, "this VM has no test kernel to finish");
	mon->t.guest_finish(mon->t.ctx);
	return 0;
}

static int cmd_quit(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)argc, (void)argv, (void)out;
	if (!mon->t.quit)
		return err_set(e, ENOTSUP, "this VM cannot be stopped from the monitor");
	mon->t.quit(mon->t.ctx);
	return 0;
}

static int cmd_help(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	(void)mon, (void)argc, (void)argv, (void)e;
	mon_print_help(out);
	return 0;
}

const struct mon_cmd mon_cmds_vm[] = {
	{"stats", NULL, "[clear]", "every counter: memory, translation cache, VM exits; "
	 "'clear' restarts the peaks (longest stall, pause, guest gap)", 0, 1, cmd_stats},
	{"pause", NULL, "", "stop the vCPUs", 0, 0, cmd_pause},
	{"resume", NULL, "", "let the vCPUs run again", 0, 0, cmd_resume},
	{"guest-finish", NULL, "", "tell the test kernel to end its run", 0, 0, cmd_guest_finish},
	{"quit", NULL, "", "shut the VM down", 0, 0, cmd_quit},
	{"help", NULL, "", "this list", 0, 0, cmd_help},
	{0},
};
