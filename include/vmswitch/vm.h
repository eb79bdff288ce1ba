/* vm/: one struct vm owns everything of a running guest: the KVM handles,
 * machine memory (mem/), the composed-translation cache, the devices and the
 * vCPU threads. main() builds it from a struct vm_config and runs it.
 */
#ifndef VMSWITCH_VM_H
#define VMSWITCH_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vmswitch/err.h"
#include "vmswitch/mem.h"

/* Exit statuses of vmswitch beyond the guest's own 0..255 (see README). */
#define VM_EXIT_BADINPUT 2     /* bad command line / files */
#define VM_EXIT_CRASH    125   /* triple fault, emulation failure, entry failure */

#define VM_MAX_CPUS 64

enum pvm_compat { PVM_COMPAT_AUTO, PVM_COMPAT_OFF };

struct vm_config {
	const char *kernel, *initrd, *cmdline;
	uint64_t ram_size, spare_size;
	unsigned ncpus;
	enum backmap_kind backmap;
	enum hugepages_mode hugepages;
	bool protect_by_pause, protect_by_wp;   /* both false: mem chooses */
	enum pvm_compat pvm_compat;
	/* Where the guest's UART output goes (the console, a file, stdout). */
	void (*serial_out)(void *ctx, const uint8_t *buf, size_t len);
	void *serial_ctx;
};

/* Facts about the host's KVM, learned once. */
struct kvm_host {
	int fd;
	int max_vcpus;
	bool pvm;                   /* kvm_pvm: CPL0 emulated, CPUID not maskable */
	int vcpu_mmap_size;
};

int kvm_host_open(struct kvm_host *h, struct err *e);
void kvm_host_close(struct kvm_host *h);

struct vm;
struct boot_image;

int vm_create(const struct vm_config *cfg, struct kvm_host *host,
	      const struct boot_image *img, struct vm **out, struct err *e);
/* Start the vCPUs and wait until the guest powers off, reboots or crashes.
 * Returns the exit status for vmswitch. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Stop every vCPU outside guest mode; returns once all are parked. */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Ask the run loop to end with `status` (first request wins). */
void vm_request_exit(struct vm *vm, int status);

struct mem *vm_mem(struct vm *vm);
struct mmu *vm_mmu(struct vm *vm);
/* Feed bytes typed at the terminal to the guest's UART. */
size_t vm_serial_input(struct vm *vm, const uint8_t *buf, size_t len);
/* Hook the monitor into the VM (HC_REQUEST runs monitor commands). */
struct monitor_target;
void vm_monitor_target(struct vm *vm, struct monitor_target *t);
void vm_set_request_handler(struct vm *vm,
			    int (*fn)(void *ctx, const char *cmd, struct err *e), void *ctx);

#endif
