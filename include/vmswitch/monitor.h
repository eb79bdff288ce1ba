/* monitor/: the command set that drives the switch live, behind two doors:
 * the interactive console (Ctrl-A c on the guest's terminal, or --monitor
 * stdio) and unix sockets (--monitor unix:PATH) for scripts.
 *
 * The monitor knows the VM only through struct monitor_target, so it can be
 * driven in tests by a fake VM whose "guest" is a host thread.
 */
#ifndef VMSWITCH_MONITOR_H
#define VMSWITCH_MONITOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vmswitch/err.h"
#include "vmswitch/mmu.h"

struct mem;
struct mmu;

struct monitor_vcpu_info {
	const char *state;     /* "running", "paused", "halted", "stopped" */
	uint64_t rip;
	struct mmu_cpu paging; /* cr0, cr3, cr4, efer */
};

struct monitor_target {
	void *ctx;
	struct mem *mem;
	struct mmu *mmu;
	unsigned (*vcpu_count)(void *ctx);
	/* Fresh register state of one vCPU (may briefly pause it). */
	int (*vcpu_info)(void *ctx, unsigned id, struct monitor_vcpu_info *out, struct err *e);
	int (*pause)(void *ctx, struct err *e);
	void (*resume)(void *ctx);
	/* Ask the VM to shut down; returns at once. */
	void (*quit)(void *ctx);
	/* Print VM-level counters (exits by reason, ...) as "name: value" lines. */
	void (*print_stats)(void *ctx, FILE *out);
	/* Tell the test kernel to finish its run (next HC_REPORT answers 1). */
	void (*guest_finish)(void *ctx);
};

/* Run one command line; output lines go to `out` (without the final line).
 * Returns 0 for "ok", -1 with *e for "error: <reason>". Thread-safe: commands
 * are serialized by the monitor. */
struct monitor;
int monitor_create(const struct monitor_target *t, struct monitor **out, struct err *e);
void monitor_destroy(struct monitor *mon);
int monitor_exec(struct monitor *mon, const char *line, FILE *out, struct err *e);

/* Serve unix-socket clients on a thread of its own until monitor_stop(). */
int monitor_listen_unix(struct monitor *mon, const char *path, struct err *e);
void monitor_stop(struct monitor *mon);

#endif
