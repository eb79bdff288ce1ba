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
	/* Start the VM's peak counters afresh (`stats clear`). */
	void (*clear_stats)(void *ctx);
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
/* The same, reporting the pages moved so far to `progress` while a long
 * memory operation runs (the interactive console shows it live). */
int monitor_exec_progress(struct monitor *mon, const char *line, FILE *out,
			  void (*progress)(void *ctx, uint64_t pages_moved), void *ctx,
			  struct err *e);
/* Same for a line of `len` bytes that may hold anything (from a socket): a
 * NUL or other control byte makes it an unknown command, never a shorter one. */
int monitor_exec_buf(struct monitor *mon, const char *line, size_t len, FILE *out,
		     struct err *e);

/* A guest's HC_REQUEST: run `cmd`, its output going to log_debug; fits
 * vm_set_request_handler(vm, monitor_request, mon). It runs on the calling
 * vCPU thread, so commands that pause the vCPUs (pause, info vcpus,
 * translate, x) would wait for that very thread: they are refused here. */
int monitor_request(void *mon, const char *cmd, struct err *e);

/* --monitor SPEC: "stdio" or "unix:PATH". */
enum monitor_door { MONITOR_DOOR_STDIO, MONITOR_DOOR_UNIX };
int monitor_parse_door(const char *spec, enum monitor_door *kind, const char **path,
		       struct err *e);

/* Serve unix-socket clients on a thread of its own until monitor_stop().
 * May be called several times (one thread serves every socket); a stale
 * socket file from a dead VM is replaced, a live one is an error. Lines
 * longer than 64 KiB get "error: line too long" and are discarded. */
int monitor_listen_unix(struct monitor *mon, const char *path, struct err *e);
/* Wake and join the server thread, close every client, unlink the socket
 * paths. Idempotent; monitor_destroy calls it. Not from a command handler. */
void monitor_stop(struct monitor *mon);

/* `vmswitch --connect PATH [COMMAND...]`: run one command (the words joined
 * by spaces) or, with argc == 0, every line of `in` as a command. Output lines
 * go to `out`, an "error: ..." line to `errout`. Returns the exit status:
 * 0 every reply ok, 1 some reply was an error, 2 no connection (or lost). */
int monitor_client_run(const char *path, int argc, char **argv, FILE *in, FILE *out,
		       FILE *errout);
/* The same on stdin/stdout/stderr, for main(). */
int monitor_client_main(const char *path, int argc, char **argv);

#endif
