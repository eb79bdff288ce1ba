/* The VM as the monitor sees it (struct monitor_target): vCPU state, pause,
 * quit, counters. Register reads need the vCPU out of KVM_RUN, so they pause. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "vm_impl.h"
#include "vmswitch/dev.h"
#include "vmswitch/monitor.h"

static unsigned t_vcpu_count(void *ctx)
{
	return ((struct vm *)ctx)->ncpus;
}

static const char *state_name(int st)
{
	switch (st) {
	case VCPU_CREATED: return "created";
	case VCPU_RUNNING: return "running";
	case VCPU_PAUSED: return "paused";
	default: return "stopped";
	}
}

static int t_vcpu_info(void *ctx, unsigned id, struct monitor_vcpu_info *out, struct err *e)
{
	struct vm *vm = ctx;
	int r;

	if (id >= vm->ncpus)
		return err_set(e, EINVAL, "no vCPU %u (the guest has %u)", id, vm->ncpus);
	/* Report the state the guest was in, not the pause we impose to read it. */
	out->state = vm->pause_req ? "paused" : state_name(atomic_load(&vm->vcpus[id].state));
	vm_pause(vm);
	r = vcpu_paging(&vm->vcpus[id], &out->rip, &out->paging, e);
	vm_resume(vm);
	return r;
}

static int t_pause(void *ctx, struct err *e)
{
	(void)e;
	return vm_pause(ctx);
}

static void t_resume(void *ctx)
{
	vm_resume(ctx);
}

static void t_quit(void *ctx)
{
	vm_request_exit(ctx, 0);
}

static void t_print_stats(void *ctx, FILE *out)
{
	struct vm *vm = ctx;
	uint64_t total[EXIT_KINDS] = {0};

	for (unsigned i = 0; i < vm->ncpus; i++)
		for (int k = 0; k < EXIT_KINDS; k++)
			total[k] += atomic_load(&vm->vcpus[i].exits[k]);
	for (int k = 0; k < EXIT_KINDS; k++)
		fprintf(out, "exits_%s: %" PRIu64 "\n", exit_kind_name(k), total[k]);
	fprintf(out, "pvm_host: %s\n", vm->host->pvm ? "yes" : "no");
	pthread_mutex_lock(&vm->lock);
	fprintf(out, "vcpu_pauses: %" PRIu64 "\npause_avg_ns: %" PRIu64 "\npause_max_ns: %" PRIu64 "\n",
		vm->pauses, vm->pauses ? vm->pause_total_ns / vm->pauses : 0, vm->pause_max_ns);
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&vm->hc_lock);
	if (vm->have_report)
		fprintf(out, "guest_round: %" PRIu64 "\nguest_mismatches: %" PRIu64
			"\nguest_checksum: %#" PRIx64 "\nguest_max_gap_tsc: %" PRIu64 "\n",
			vm->last_report.round, vm->last_report.mismatches,
			vm->last_report.checksum, vm->last_report.max_gap_tsc);
	/* The guest's own measure of its longest stall since `stats clear`. */
	uint64_t khz = vm->last_report.tsc_khz ? vm->last_report.tsc_khz : vm->tsc_khz;
	if (vm->have_report && khz)
		fprintf(out, "guest_gap_peak_us: %" PRIu64 "\n", vm->gap_peak_tsc * 1000 / khz);
	/* How often, and for how long in all, it stalled 1 ms or more: the
	 * peak alone is one sample of a noisy host. Counted only by a guest
	 * that knows its TSC frequency. */
	if (vm->have_report && vm->last_report.tsc_khz)
		fprintf(out, "guest_long_gaps: %" PRIu64 "\nguest_long_gap_us: %" PRIu64 "\n",
			vm->last_report.long_gaps - vm->long_gaps_base,
			(vm->last_report.long_gap_tsc - vm->long_gap_tsc_base) * 1000 /
				vm->last_report.tsc_khz);
	pthread_mutex_unlock(&vm->hc_lock);
	io_bus_print_stats(vm->bus, out);
}

static void t_clear_stats(void *ctx)
{
	struct vm *vm = ctx;

	pthread_mutex_lock(&vm->lock);
	vm->pause_max_ns = 0;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&vm->hc_lock);
	vm->gap_peak_tsc = 0;
	vm->long_gaps_base = vm->last_report.long_gaps;
	vm->long_gap_tsc_base = vm->last_report.long_gap_tsc;
	pthread_mutex_unlock(&vm->hc_lock);
}

static void t_guest_finish(void *ctx)
{
	atomic_store(&((struct vm *)ctx)->guest_finish, true);
}

void vm_monitor_target(struct vm *vm, struct monitor_target *t)
{
	*t = (struct monitor_target){
		.ctx = vm, .mem = vm->mem, .mmu = vm->mmu,
		.vcpu_count = t_vcpu_count, .vcpu_info = t_vcpu_info,
		.pause = t_pause, .resume = t_resume, .quit = t_quit,
		.print_stats = t_print_stats, .clear_stats = t_clear_stats,
		.guest_finish = t_guest_finish,
	};
}
