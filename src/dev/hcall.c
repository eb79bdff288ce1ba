/* The hypercall port (include/vmswitch/hcall.h): our test kernel reports
 * progress, asks for monitor commands and powers off through it. Arguments
 * are guest-virtual addresses, read through the composed V->P->M path, so
 * this device is also a constant user of mmu.c. */
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../vm/vm_impl.h"
#include "vmswitch/mmu.h"
#include "vmswitch/util.h"

#define HC_MAX_STRING 4096

static int read_args(struct vcpu *v, struct kvm_regs *r, struct mmu_cpu *cpu, struct err *e)
{
	if (ioctl(v->fd, KVM_GET_REGS, r) < 0)
		return err_sys(e, "KVM_GET_REGS on vCPU %u", v->id);
	return vcpu_paging(v, NULL, cpu, e);
}

static int read_string(struct vcpu *v, const struct mmu_cpu *cpu, uint64_t gva, uint64_t len,
		       char *buf, struct err *e)
{
	if (len >= HC_MAX_STRING)
		return err_set(e, E2BIG, "hypercall string of %" PRIu64 " bytes", len);
	if (mmu_read_virt(v->vm->mmu, cpu, gva, buf, len, e) < 0)
		return -1;
	buf[len] = '\0';
	return 0;
}

static int hc_report(struct vcpu *v, const struct mmu_cpu *cpu, uint64_t gva, struct err *e)
{
	struct vm *vm = v->vm;
	struct hc_report rep;

	if (mmu_read_virt(vm->mmu, cpu, gva, &rep, sizeof(rep), e) < 0)
		return -1;
	if (rep.magic != HC_REPORT_MAGIC)
		return err_set(e, EINVAL, "report without magic at %#" PRIx64, gva);
	pthread_mutex_lock(&vm->hc_lock);
	vm->last_report = rep;
	if (rep.recent_gap_tsc > vm->gap_peak_tsc)
		vm->gap_peak_tsc = rep.recent_gap_tsc;
	vm->have_report = true;
	pthread_mutex_unlock(&vm->hc_lock);
	log_debug("guest report: round %" PRIu64 " pages %" PRIu64 " mismatches %" PRIu64
		  " checksum %#" PRIx64 " max gap %" PRIu64 " ticks%s", rep.round, rep.pages,
		  rep.mismatches, rep.checksum, rep.max_gap_tsc, rep.final ? " (final)" : "");
	/* 1 asks the guest to finish its run. */
	return atomic_load(&vm->guest_finish) ? 1 : 0;
}

/* While it runs a monitor command this vCPU is out of guest mode: count it
 * as parked, or a command that pauses the VM would wait for it forever. */
static int run_request(struct vcpu *v, const char *cmd, struct err *e)
{
	struct vm *vm = v->vm;
	int r;

	pthread_mutex_lock(&vm->lock);
	atomic_store(&v->state, VCPU_PAUSED);
	v->in_request = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	r = vm->request(vm->request_ctx, cmd, e);
	pthread_mutex_lock(&vm->lock);
	v->in_request = false;
	atomic_store(&v->state, VCPU_RUNNING);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

static int hc_command(struct vcpu *v, uint32_t cmd)
{
	struct kvm_regs r;
	struct mmu_cpu cpu;
	struct err e = {0};
	char buf[HC_MAX_STRING];
	int ret = 0;

	if (cmd == HC_NOP)
		return 0;
	if (read_args(v, &r, &cpu, &e) < 0)
		goto fail;
	switch (cmd) {
	case HC_REPORT:
		ret = hc_report(v, &cpu, r.rdi, &e);
		break;
	case HC_PUTS:
		ret = read_string(v, &cpu, r.rdi, r.rsi, buf, &e);
		if (ret == 0)
			log_info("guest: %s", buf);
		break;
	case HC_REQUEST:
		ret = read_string(v, &cpu, r.rdi, r.rsi, buf, &e);
		if (ret == 0 && !v->vm->request)
			ret = err_set(&e, ENOSYS, "no monitor to run '%s'", buf);
		else if (ret == 0)
			ret = run_request(v, buf, &e);
		break;
	default:
		ret = err_set(&e, ENOSYS, "unknown hypercall %u", cmd);
	}
	if (ret >= 0)
		return ret;
fail:
	log_warn("vCPU %u hypercall %u: %s", v->id, cmd, e.msg);
	return -(e.code ? e.code : EINVAL);
}

void hcall_out(struct vcpu *v, uint16_t port, uint32_t val)
{
	switch (port) {
	case HC_PORT_CMD:
		v->hc_result = hc_command(v, val);
		break;
	case HC_PORT_EXIT:
		vm_request_exit(v->vm, (int)(val & 0xff));
		break;
	default:
		break;
	}
}

uint32_t hcall_in(struct vcpu *v, uint16_t port)
{
	return port == HC_PORT_RESULT ? (uint32_t)v->hc_result : 0xffffffffu;
}
