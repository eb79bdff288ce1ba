/* struct vm: KVM VM lifecycle, devices, the pause protocol, and the run loop
 * that waits for the guest to power off, reboot or crash. */
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vm_impl.h"
#include "vmswitch/boot.h"
#include "vmswitch/dev.h"
#include "vmswitch/mmu.h"
#include "vmswitch/monitor.h"
#include "vmswitch/rtc.h"
#include "vmswitch/serial.h"
#include "vmswitch/util.h"

#define SERIAL_PORT 0x3f8
#define SERIAL_IRQ 4
#define TSS_ADDR 0xfffbd000ULL          /* VMX needs these below 4 GiB, out of RAM */
#define IDENTITY_MAP_ADDR 0xfffbc000ULL

static void kick_signal(int sig)
{
	(void)sig; /* only there to make KVM_RUN return EINTR */
}

static int install_kick_signal(struct err *e)
{
	struct sigaction sa = {.sa_handler = kick_signal};

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return err_sys(e, "installing the vCPU kick signal handler");
	return 0;
}

static int vm_set_slot(void *ctx, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
		       struct err *e)
{
	struct vm *vm = ctx;
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return err_sys(e, "KVM_SET_USER_MEMORY_REGION slot %u (gpa %#" PRIx64 ", %" PRIu64 " MiB)",
			       slot, gpa, size >> 20);
	return 0;
}

static int mem_pause(void *ctx)
{
	return vm_pause(ctx);
}

static void mem_resume(void *ctx)
{
	vm_resume(ctx);
}

static int create_kvm_vm(struct vm *vm, struct err *e)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

	vm->fd = ioctl(vm->host->fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return err_sys(e, "KVM_CREATE_VM");
	/* Only VMX uses these; other implementations may refuse them. */
	if (ioctl(vm->host->fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 &&
	    ioctl(vm->fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		return err_sys(e, "KVM_SET_TSS_ADDR");
	if (ioctl(vm->host->fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		uint64_t addr = IDENTITY_MAP_ADDR;
		if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0)
			return err_sys(e, "KVM_SET_IDENTITY_MAP_ADDR");
	}
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_sys(e, "KVM_CREATE_IRQCHIP");
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_sys(e, "KVM_CREATE_PIT2");
	return 0;
}

static void serial_irq(void *ctx, int level)
{
	struct vm *vm = ctx;
	struct kvm_irq_level irq = {.irq = SERIAL_IRQ, .level = (uint32_t)level};

	if (ioctl(vm->fd, KVM_IRQ_LINE, &irq) < 0)
		log_warn("KVM_IRQ_LINE %d: %s", SERIAL_IRQ, strerror(errno));
}

static void serial_output(void *ctx, const uint8_t *buf, size_t len)
{
	struct vm *vm = ctx;

	if (vm->cfg.serial_out)
		vm->cfg.serial_out(vm->cfg.serial_ctx, buf, len);
}

static void guest_reset(void *ctx)
{
	log_debug("guest requested a reset through the i8042");
	vm_request_exit(ctx, 0);
}

static int serial_port_io(void *ctx, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct vm *vm = ctx;

	for (unsigned i = 0; i < size; i++)
		serial_io(vm->serial, (unsigned)off + i, data + i, is_write);
	return 0;
}

static int create_devices(struct vm *vm, struct err *e)
{
	struct serial_ops so = {.ctx = vm, .output = serial_output, .set_irq = serial_irq};
	struct i8042_ops io = {.ctx = vm, .reset = guest_reset};

	if (io_bus_create(&vm->bus, e) < 0 || serial_create(&so, &vm->serial, e) < 0 ||
	    i8042_create(&io, &vm->i8042, e) < 0 || rtc_create(NULL, &vm->rtc, e) < 0)
		return -1;
	if (io_bus_register_port(vm->bus, SERIAL_PORT, 8, serial_port_io, vm, "serial", e) < 0 ||
	    i8042_register(vm->i8042, vm->bus, e) < 0 || rtc_register(vm->rtc, vm->bus, e) < 0)
		return -1;
	/* Lookups from vCPU threads take no lock: nothing registers after this. */
	io_bus_seal(vm->bus);
	return 0;
}

static int place_kernel(struct vm *vm, const struct boot_image *img, struct err *e)
{
	struct boot_params_cfg bc = {
		.cmdline = vm->cfg.cmdline ? vm->cfg.cmdline : "",
		.ncpus = vm->ncpus,
		.hcall_port = HC_PORT_FIRST,
		.mode = mem_mode_name(mem_get_mode(vm->mem)),
		.tsc_khz = vm->tsc_khz <= UINT32_MAX ? (uint32_t)vm->tsc_khz : 0,
	};
	struct boot_entry be;

	if (boot_image_place(img, &bc, vm->mem, &be, e) < 0)
		return -1;
	return vcpu_setup_boot(&vm->vcpus[0], &be, e);
}

int vm_create(const struct vm_config *cfg, struct kvm_host *host, const struct boot_image *img,
	      struct vm **out, struct err *e)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct mem_config mc = {
		.ram_size = cfg->ram_size, .spare_size = cfg->spare_size,
		.backmap = cfg->backmap, .hugepages = cfg->hugepages,
		.protect_by_pause = cfg->protect_by_pause, .protect_by_wp = cfg->protect_by_wp,
	};
	struct mem_ops ops = {.set_slot = vm_set_slot, .pause = mem_pause, .resume = mem_resume};

	if (!vm)
		return err_set(e, ENOMEM, "allocating the VM");
	*out = vm;
	vm->cfg = *cfg;
	vm->host = host;
	vm->fd = -1;
	vm->ncpus = cfg->ncpus;
	vm->pvm_compat = host->pvm && cfg->pvm_compat == PVM_COMPAT_AUTO;
	ops.ctx = vm;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->hc_lock, NULL);
	for (unsigned i = 0; i < VM_MAX_CPUS; i++)
		vm->vcpus[i].fd = -1;
	vm->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (vm->wake_fd < 0)
		return err_sys(e, "eventfd");
	if (install_kick_signal(e) < 0 || create_kvm_vm(vm, e) < 0)
		return -1;
	if (mem_create(&mc, &ops, &vm->mem, e) < 0)
		return err_wrap(e, "guest memory");
	if (mmu_create(vm->mem, 1024, &vm->mmu, e) < 0 || create_devices(vm, e) < 0)
		return -1;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vcpu_create(vm, i, e) < 0)
			return -1;
	return place_kernel(vm, img, e);
}

void vm_request_exit(struct vm *vm, int status)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	if (!atomic_load(&vm->exiting)) {
		vm->exit_status = status;
		atomic_store(&vm->exiting, true);
		if (write(vm->wake_fd, &one, sizeof(one)) < 0)
			log_warn("waking the main thread: %s", strerror(errno));
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static bool all_parked(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int st = atomic_load(&v->state);
		if (v->started && st != VCPU_PAUSED && st != VCPU_STOPPED)
			return false;
	}
	return true;
}

/* Before a new pause (vm->lock held): has every running vCPU had its slice
 * since the last resume? Returns 0 when so, else how long to wait. A vCPU
 * that does not come back within VM_SLICE_WAIT_NS (blocked in a host fault,
 * descheduled) is not waited for. */
#define VM_MIN_SLICE_NS 100000ULL
#define VM_SLICE_WAIT_NS 2000000ULL

/* How much longer vCPU v needs, `waited` ns into the wait. */
static uint64_t slice_left(const struct vm *vm, const struct vcpu *v, uint64_t now,
			   uint64_t waited)
{
	if (!v->started || v->in_request || atomic_load(&v->state) == VCPU_STOPPED)
		return 0;   /* not going to run: nothing to wait for */
	if (v->run_gen != vm->resume_gen)
		return VM_SLICE_WAIT_NS - waited;   /* not back in the guest yet */
	uint64_t ran = now - v->run_since_ns;
	return ran < VM_MIN_SLICE_NS ? VM_MIN_SLICE_NS - ran : 0;
}

static uint64_t slice_wait_ns(struct vm *vm, uint64_t since)
{
	uint64_t now = now_ns(), wait = 0;

	if (now - since >= VM_SLICE_WAIT_NS)
		return 0;
	for (unsigned i = 0; i < vm->ncpus; i++)
		wait = MAX(wait, slice_left(vm, &vm->vcpus[i], now, now - since));
	return wait;
}

static void wait_for_slices(struct vm *vm)
{
	uint64_t t0 = now_ns(), w;

	while (vm->resume_gen && (w = slice_wait_ns(vm, t0)) > 0 && !atomic_load(&vm->exiting)) {
		struct timespec ts;
		uint64_t until;
		clock_gettime(CLOCK_REALTIME, &ts);
		until = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + w;
		ts.tv_sec = (time_t)(until / 1000000000ULL);
		ts.tv_nsec = (long)(until % 1000000000ULL);
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	}
}

int vm_pause(struct vm *vm)
{
	uint64_t t0, dt;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req == 0)
		wait_for_slices(vm);
	t0 = now_ns();
	if (vm->pause_req++ == 0)
		for (unsigned i = 0; i < vm->ncpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	while (!all_parked(vm) && !atomic_load(&vm->exiting))
		pthread_cond_wait(&vm->cond, &vm->lock);
	/* How long the vCPUs took to leave guest mode: the floor of any stall. */
	dt = now_ns() - t0;
	vm->pauses++;
	vm->pause_total_ns += dt;
	if (dt > vm->pause_max_ns)
		vm->pause_max_ns = dt;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req > 0 && --vm->pause_req == 0) {
		vm->resume_gen++;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

int vm_run(struct vm *vm)
{
	struct err e = {0};
	uint64_t v;

	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vcpu_start(&vm->vcpus[i], &e) < 0) {
			log_info("%s", e.msg);
			vm_request_exit(vm, VM_EXIT_CRASH);
			break;
		}
	}
	while (read(vm->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	return vm->exit_status;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	if (!atomic_load(&vm->exiting))
		vm_request_exit(vm, 0);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	if (vm->mmu)
		mmu_destroy(vm->mmu);
	if (vm->mem)
		mem_destroy(vm->mem);
	if (vm->serial)
		serial_destroy(vm->serial);
	if (vm->i8042)
		i8042_destroy(vm->i8042);
	rtc_destroy(vm->rtc);
	if (vm->bus)
		io_bus_destroy(vm->bus);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->hc_lock);
	free(vm);
}

struct mem *vm_mem(struct vm *vm)
{
	return vm->mem;
}

struct mmu *vm_mmu(struct vm *vm)
{
	return vm->mmu;
}

size_t vm_serial_input(struct vm *vm, const uint8_t *buf, size_t len)
{
	return serial_input(vm->serial, buf, len);
}

void vm_set_request_handler(struct vm *vm, int (*fn)(void *, const char *, struct err *), void *ctx)
{
	vm->request = fn;
	vm->request_ctx = ctx;
}
