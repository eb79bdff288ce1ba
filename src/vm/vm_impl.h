/* Internal: the layout of struct vm and struct vcpu, shared by vm.c, vcpu.c
 * and hcall.c only. */
#ifndef VMSWITCH_VM_IMPL_H
#define VMSWITCH_VM_IMPL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmswitch/hcall.h"
#include "vmswitch/vm.h"

struct serial;
struct io_bus;
struct i8042;
struct rtc;
struct mmu;

enum vcpu_state { VCPU_CREATED, VCPU_RUNNING, VCPU_PAUSED, VCPU_STOPPED };

/* Exit reasons we count for `stats`. */
enum exit_kind {
	EXIT_IO, EXIT_MMIO, EXIT_HLT, EXIT_SHUTDOWN, EXIT_INTERNAL, EXIT_FAIL_ENTRY,
	EXIT_SYSTEM_EVENT, EXIT_INTR, EXIT_HCALL, EXIT_INT3_FIXUP, EXIT_FWAIT_FIXUP,
	EXIT_OTHER, EXIT_KINDS
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	_Atomic int state;                 /* enum vcpu_state */
	int32_t hc_result;                 /* answer to the last hypercall */
	_Atomic uint64_t exits[EXIT_KINDS];
	uint64_t run_gen, run_since_ns;    /* last resume it ran after, and when (vm->lock) */
	bool in_request;                   /* running a monitor command for the guest (vm->lock) */
};

struct vm {
	struct vm_config cfg;
	struct kvm_host *host;
	int fd;
	struct mem *mem;
	struct mmu *mmu;
	struct io_bus *bus;
	struct serial *serial;
	struct i8042 *i8042;
	struct rtc *rtc;
	unsigned ncpus;
	uint64_t tsc_khz;            /* KVM_GET_TSC_KHZ of vCPU 0, 0 if unknown */
	struct vcpu vcpus[VM_MAX_CPUS];
	bool pvm_compat;

	/* Pause protocol: pause_req is raised, every vCPU is kicked out of
	 * KVM_RUN (immediate_exit + signal) and parks on `cond`. A new pause
	 * first lets every vCPU run for VM_MIN_SLICE_NS after the last resume
	 * (resume_gen), or back-to-back pauses would starve the guest. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pause_req;                     /* nesting count */
	uint64_t resume_gen;
	unsigned parked;
	uint64_t pauses, pause_total_ns, pause_max_ns;   /* under lock */

	/* End of the run: the first status wins. */
	_Atomic bool exiting;
	int exit_status;
	int wake_fd;                       /* eventfd: the main thread waits on it */

	/* Hypercall state (hcall.c). */
	pthread_mutex_t hc_lock;
	struct hc_report last_report;
	uint64_t gap_peak_tsc;       /* longest recent_gap_tsc reported since `stats clear` */
	uint64_t long_gaps_base, long_gap_tsc_base;   /* the report's counts at `stats clear` */
	bool have_report;
	_Atomic bool guest_finish;
	int (*request)(void *ctx, const char *cmd, struct err *e);
	void *request_ctx;
};

int vcpu_create(struct vm *vm, unsigned id, struct err *e);
int vcpu_setup_boot(struct vcpu *v, const void *boot_entry, struct err *e);
int vcpu_start(struct vcpu *v, struct err *e);
void vcpu_kick(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
int vcpu_paging(struct vcpu *v, uint64_t *rip, void *mmu_cpu, struct err *e);
void vcpu_dump(struct vcpu *v);

/* hcall.c */
void hcall_out(struct vcpu *v, uint16_t port, uint32_t val);
uint32_t hcall_in(struct vcpu *v, uint16_t port);

const char *exit_kind_name(enum exit_kind k);

#endif
