/* One thread per vCPU: KVM_RUN, exit dispatch, and parking for pauses. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* pthread_setname_np */
#endif
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpuid.h"
#include "insn.h"
#include "vm_impl.h"
#include "vmswitch/boot.h"
#include "vmswitch/dev.h"
#include "vmswitch/mmu.h"
#include "vmswitch/util.h"

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

static const char *const kind_names[EXIT_KINDS] = {
	[EXIT_IO] = "io", [EXIT_MMIO] = "mmio", [EXIT_HLT] = "hlt",
	[EXIT_SHUTDOWN] = "shutdown", [EXIT_INTERNAL] = "internal_error",
	[EXIT_FAIL_ENTRY] = "fail_entry", [EXIT_SYSTEM_EVENT] = "system_event",
	[EXIT_INTR] = "intr", [EXIT_HCALL] = "hypercall",
	[EXIT_INT3_FIXUP] = "int3_fixup", [EXIT_FWAIT_FIXUP] = "fwait_fixup",
	[EXIT_OTHER] = "other",
};

const char *exit_kind_name(enum exit_kind k)
{
	return kind_names[k];
}

/* Route the legacy PIC through LINT0 and NMIs through LINT1, as firmware
 * would, so a guest that never programs the IOAPIC still gets interrupts. */
static int setup_lapic(struct vcpu *v, struct err *e)
{
	struct kvm_lapic_state ls;
	uint32_t *lint0 = (uint32_t *)&ls.regs[APIC_LVT_LINT0];
	uint32_t *lint1 = (uint32_t *)&ls.regs[APIC_LVT_LINT1];

	if (ioctl(v->fd, KVM_GET_LAPIC, &ls) < 0)
		return err_sys(e, "KVM_GET_LAPIC on vCPU %u", v->id);
	*lint0 = (*lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	*lint1 = (*lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &ls) < 0)
		return err_sys(e, "KVM_SET_LAPIC on vCPU %u", v->id);
	return 0;
}

static int setup_cpuid(struct vcpu *v, struct err *e)
{
	struct kvm_cpuid2 *c;
	int r;

	if (cpuid_supported(v->vm->host->fd, &c, e) < 0)
		return -1;
	cpuid_for_vcpu(c, v->id, v->vm->ncpus, v->vm->pvm_compat);
	r = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (r < 0)
		return err_sys(e, "KVM_SET_CPUID2 on vCPU %u", v->id);
	return 0;
}

int vcpu_create(struct vm *vm, unsigned id, struct err *e)
{
	struct vcpu *v = &vm->vcpus[id];

	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return err_sys(e, "KVM_CREATE_VCPU %u", id);
	v->run = mmap(NULL, (size_t)vm->host->vcpu_mmap_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return err_sys(e, "mapping the kvm_run area of vCPU %u", id);
	}
	if (setup_cpuid(v, e) < 0 || setup_lapic(v, e) < 0)
		return -1;
	/* To turn the guest's TSC-tick reports into time (AMD hosts give the
	 * guest no CPUID leaf with the frequency); optional, hence unchecked. */
	if (id == 0) {
		int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
		vm->tsc_khz = khz > 0 ? (uint64_t)khz : 0;
	}
	atomic_store(&v->state, VCPU_CREATED);
	return 0;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1,
		.l = code64 ? 1 : 0, .g = 1,
	};
}

/* The Linux 64-bit boot protocol's entry state. */
int vcpu_setup_boot(struct vcpu *v, const void *entry_arg, struct err *e)
{
	const struct boot_entry *be = entry_arg;
	struct kvm_sregs sr;
	struct kvm_regs regs = {0};

	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return err_sys(e, "KVM_GET_SREGS on vCPU %u", v->id);
	set_seg(&sr.cs, be->cs, 0xb, true);
	set_seg(&sr.ds, be->ds, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.gdt.base = be->gdt_base;
	sr.gdt.limit = be->gdt_limit;
	sr.cr0 = be->cr0;
	sr.cr3 = be->cr3;
	sr.cr4 = be->cr4;
	sr.efer = be->efer;
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return err_sys(e, "KVM_SET_SREGS on vCPU %u", v->id);
	regs.rip = be->rip;
	regs.rsi = be->rsi;
	regs.rsp = be->rsp;
	regs.rflags = 0x2; /* reserved bit 1; interrupts off */
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return err_sys(e, "KVM_SET_REGS on vCPU %u", v->id);
	return 0;
}

int vcpu_paging(struct vcpu *v, uint64_t *rip, void *out, struct err *e)
{
	struct mmu_cpu *cpu = out;
	struct kvm_sregs sr;
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return err_sys(e, "KVM_GET_SREGS on vCPU %u", v->id);
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return err_sys(e, "KVM_GET_REGS on vCPU %u", v->id);
	*cpu = (struct mmu_cpu){.cr0 = sr.cr0, .cr3 = sr.cr3, .cr4 = sr.cr4, .efer = sr.efer};
	if (rip)
		*rip = regs.rip;
	return 0;
}

void vcpu_dump(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_warn("vCPU %u: cannot read registers: %s", v->id, strerror(errno));
		return;
	}
	log_info("vCPU %u registers:", v->id);
	log_info(" rip %016llx rsp %016llx rflags %016llx", r.rip, r.rsp, r.rflags);
	log_info(" rax %016llx rbx %016llx rcx %016llx rdx %016llx", r.rax, r.rbx, r.rcx, r.rdx);
	log_info(" rsi %016llx rdi %016llx rbp %016llx", r.rsi, r.rdi, r.rbp);
	log_info(" cs %04x (l=%u dpl=%u) ss %04x cr0 %llx cr2 %llx cr3 %llx cr4 %llx efer %llx",
		 s.cs.selector, s.cs.l, s.cs.dpl, s.ss.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
}

static void count(struct vcpu *v, enum exit_kind k)
{
	atomic_fetch_add_explicit(&v->exits[k], 1, memory_order_relaxed);
}

static void handle_port(struct vcpu *v, uint16_t port, uint8_t *data, unsigned size, bool out)
{
	if (port >= HC_PORT_FIRST && port <= HC_PORT_LAST) {
		count(v, EXIT_HCALL);
		if (out) {
			uint32_t val = 0;
			memcpy(&val, data, size);
			hcall_out(v, port, val);
		} else {
			uint32_t val = hcall_in(v, port);
			memcpy(data, &val, size);
		}
		return;
	}
	io_bus_port(v->vm->bus, port, data, size, out);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *p = (uint8_t *)run + run->io.data_offset;

	count(v, EXIT_IO);
	for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size)
		handle_port(v, run->io.port, p, run->io.size, run->io.direction == KVM_EXIT_IO_OUT);
}

/* Read the bytes at the guest's RIP through our composed translation. */
static size_t fetch_insn(struct vcpu *v, uint8_t *buf, size_t len, uint64_t *rip)
{
	struct mmu_cpu cpu;
	struct err e;

	if (v->run->emulation_failure.ndata >= 3 &&
	    (v->run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		size_t n = MIN(len, v->run->emulation_failure.insn_size);
		memcpy(buf, v->run->emulation_failure.insn_bytes, n);
		if (vcpu_paging(v, rip, &cpu, &e) < 0)
			*rip = 0;
		return n;
	}
	if (vcpu_paging(v, rip, &cpu, &e) < 0)
		return 0;
	for (size_t n = len; n > 0; n--)  /* the instruction may end at an unmapped page */
		if (mmu_read_virt(v->vm->mmu, &cpu, *rip, buf, n, &e) == 0)
			return n;
	return 0;
}

/* PVM hosts: Linux executes int3 (jump-label patching) and fwait (thread
 * exit) at CPL0 for its whole life; KVM's emulator refuses both. */
static bool fixup_insn(struct vcpu *v, const struct insn_info *in, uint64_t rip)
{
	struct kvm_regs r;

	if (!v->vm->pvm_compat || in->fixup == INSN_FIXUP_NONE)
		return false;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return false;
	r.rip = rip + in->len;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return false;
	if (in->fixup == INSN_FIXUP_INT3) {
		struct kvm_vcpu_events ev;
		if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return false;
		ev.exception.injected = 1;
		ev.exception.nr = 3;
		ev.exception.has_error_code = 0;
		if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return false;
		count(v, EXIT_INT3_FIXUP);
	} else {
		count(v, EXIT_FWAIT_FIXUP);
	}
	return true;
}

static void handle_internal(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	static const char *const sub[] = {
		[KVM_INTERNAL_ERROR_EMULATION] = "instruction emulation failed",
		[KVM_INTERNAL_ERROR_SIMUL_EX] = "exception while delivering an exception",
		[KVM_INTERNAL_ERROR_DELIVERY_EV] = "event delivery failed",
		[KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON] = "unexpected hardware exit",
	};
	uint32_t s = run->internal.suberror;
	const char *what = s < ARRAY_SIZE(sub) && sub[s] ? sub[s] : "unknown suberror";

	count(v, EXIT_INTERNAL);
	if (s == KVM_INTERNAL_ERROR_EMULATION) {
		uint8_t bytes[15];
		char hex[64];
		struct insn_info in;
		uint64_t rip = 0;
		size_t n = fetch_insn(v, bytes, sizeof(bytes), &rip);

		insn_decode(bytes, n, &in);
		if (fixup_insn(v, &in, rip))
			return;
		insn_hex(bytes, n, hex, sizeof(hex));
		log_info("vCPU %u: KVM could not emulate the guest's %s instruction at rip %#" PRIx64
			 " (bytes: %s)%s", v->id, in.name, rip, n ? hex : "unreadable",
			 v->vm->host->pvm ? "; this host is kvm_pvm, whose emulator runs all guest CPL0 code" : "");
	} else {
		log_info("vCPU %u: KVM internal error %u (%s)", v->id, s, what);
	}
	vcpu_dump(v);
	vm_request_exit(v->vm, VM_EXIT_CRASH);
}

/* Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		count(v, EXIT_MMIO);
		io_bus_mmio(v->vm->bus, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
			    run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
		count(v, EXIT_INTR);
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC: a halted CPU with nothing to wake it. */
		count(v, EXIT_HLT);
		log_info("vCPU %u halted with interrupts off", v->id);
		vm_request_exit(v->vm, 0);
		return false;
	case KVM_EXIT_SHUTDOWN:
		count(v, EXIT_SHUTDOWN);
		log_info("guest triple-faulted on vCPU %u (KVM_EXIT_SHUTDOWN)", v->id);
		vcpu_dump(v);
		vm_request_exit(v->vm, VM_EXIT_CRASH);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		count(v, EXIT_SYSTEM_EVENT);
		if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
			log_info("guest reported a crash on vCPU %u", v->id);
			vm_request_exit(v->vm, VM_EXIT_CRASH);
		} else {
			vm_request_exit(v->vm, 0);
		}
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		handle_internal(v);
		return !atomic_load(&v->vm->exiting);
	case KVM_EXIT_FAIL_ENTRY:
		count(v, EXIT_FAIL_ENTRY);
		log_info("vCPU %u: KVM could not enter the guest (hardware reason %#llx, cpu %u)",
			 v->id, (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
			 run->fail_entry.cpu);
		vcpu_dump(v);
		vm_request_exit(v->vm, VM_EXIT_CRASH);
		return false;
	default:
		count(v, EXIT_OTHER);
		log_info("vCPU %u: unhandled KVM exit reason %u", v->id, run->exit_reason);
		vcpu_dump(v);
		vm_request_exit(v->vm, VM_EXIT_CRASH);
		return false;
	}
}

/* Park while a pause is requested. immediate_exit is cleared only here,
 * under the lock, so a pause raised after this check still kicks KVM_RUN. */
static void park_if_requested(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && !atomic_load(&vm->exiting)) {
		atomic_store(&v->state, VCPU_PAUSED);
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	atomic_store(&v->state, VCPU_RUNNING);
	v->run->immediate_exit = 0;
	if (v->run_gen != vm->resume_gen) {   /* running again: a pause may wait for its slice */
		v->run_gen = vm->resume_gen;
		v->run_since_ns = now_ns();
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

/* Start-up cost up to the guest's first instruction (bench/startup.sh). */
static void report_first_entry(struct vcpu *v)
{
	if (v->id != 0 || !log_verbose)
		return;
	log_debug("first guest entry: %.3f ms wall, %.3f CPU-ms since vmswitch started",
		  (double)(now_ns() - log_start_ns) / 1e6, (double)cpu_ns() / 1e6);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	unsigned efaults = 0;
	bool first = true;

	for (;;) {
		park_if_requested(v);
		if (atomic_load(&v->vm->exiting))
			break;
		if (first) {
			report_first_entry(v);
			first = false;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				count(v, EXIT_INTR);
				continue;
			}
			/* A window page being remapped under us: retry a few times. */
			if (errno == EFAULT && ++efaults < 1000)
				continue;
			log_info("vCPU %u: KVM_RUN failed: %s", v->id, strerror(errno));
			vm_request_exit(v->vm, VM_EXIT_CRASH);
			break;
		}
		efaults = 0;
		if (!handle_exit(v))
			break;
	}
	pthread_mutex_lock(&v->vm->lock);
	atomic_store(&v->state, VCPU_STOPPED);
	pthread_cond_broadcast(&v->vm->cond);
	pthread_mutex_unlock(&v->vm->lock);
	return NULL;
}

int vcpu_start(struct vcpu *v, struct err *e)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (r) {
		errno = r;
		return err_sys(e, "starting the thread of vCPU %u", v->id);
	}
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(v->thread, name);   /* for top and perf */
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->run || !v->started)
		return;
	v->run->immediate_exit = 1;
	pthread_kill(v->thread, SIGUSR1);
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->started) {
		vcpu_kick(v);
		pthread_join(v->thread, NULL);
		v->started = false;
	}
	if (v->run)
		munmap(v->run, (size_t)v->vm->host->vcpu_mmap_size);
	if (v->fd > 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}
