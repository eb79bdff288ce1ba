/* Smallest proof that /dev/kvm works: one memslot, one vCPU in real mode
 * running `mov $0x42,%al; out %al,$0x10; hlt`. Prints each exit; exit status
 * 0 only if the port write arrives as KVM_EXIT_IO and the vCPU then halts.
 * Built static by smoke.sh and run inside the nested (TCG) guest. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CODE_GPA 0x1000u

static int fail(const char *what)
{
	perror(what);
	return 1;
}

/* Real mode with CS base 0, so RIP is the guest-physical address. */
static int setup_vcpu(int vcpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2 };

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return fail("KVM_SET_SREGS");
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS");
	return 0;
}

static int run_vcpu(int vcpu, struct kvm_run *run)
{
	int saw_io = 0;

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			return fail("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t v = *((uint8_t *)run + run->io.data_offset);

			printf("KVM_EXIT_IO port=0x%x val=0x%x\n", run->io.port, v);
			saw_io = run->io.port == 0x10 && v == 0x42;
			break;
		}
		case KVM_EXIT_HLT:
			printf("KVM_EXIT_HLT\n");
			return saw_io ? 0 : 1;
		default:
			printf("unexpected exit reason %u\n", run->exit_reason);
			return 1;
		}
	}
}

int main(void)
{
	static const uint8_t code[] = { 0xb0, 0x42, 0xe6, 0x10, 0xf4 };
	int kvm, vm, vcpu, run_size;
	void *mem;
	struct kvm_run *run;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	printf("KVM API version %d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory");
	memcpy(mem, code, sizeof(code));
	struct kvm_userspace_memory_region slot = {
		.slot = 0, .guest_phys_addr = CODE_GPA, .memory_size = 0x1000,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	if (setup_vcpu(vcpu))
		return 1;
	return run_vcpu(vcpu, run);
}
