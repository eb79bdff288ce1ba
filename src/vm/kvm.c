/* The host's KVM: open /dev/kvm once, check the API, learn its limits and
 * whether it is kvm_pvm (pagetable-based VM: guest CPL0 code is emulated and
 * CPUID cannot be masked), which changes what we can promise the guest. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmswitch/util.h"
#include "vmswitch/vm.h"

/* kvm_pvm registers /dev/kvm itself; on VMX/SVM hosts kvm_intel or kvm_amd
 * does. Detect from the modules that are bound, never assume. */
static bool host_is_pvm(void)
{
	struct stat st;

	if (stat("/sys/module/kvm_intel", &st) == 0 || stat("/sys/module/kvm_amd", &st) == 0)
		return false;
	return stat("/sys/module/kvm_pvm", &st) == 0;
}

int kvm_host_open(struct kvm_host *h, struct err *e)
{
	int v;

	h->fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (h->fd < 0)
		return err_sys(e, "cannot open /dev/kvm (is KVM available and are you allowed to use it?)");
	v = ioctl(h->fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		close(h->fd);
		return err_set(e, ENOTSUP, "/dev/kvm speaks API version %d, vmswitch needs %d", v, KVM_API_VERSION);
	}
	static const struct { int cap; const char *name; } need[] = {
		{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
		{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
		{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
		{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		if (ioctl(h->fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
			close(h->fd);
			return err_set(e, ENOTSUP, "/dev/kvm lacks %s", need[i].name);
		}
	}
	h->max_vcpus = ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (h->max_vcpus <= 0)
		h->max_vcpus = ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (h->max_vcpus <= 0)
		h->max_vcpus = 4; /* the API's documented floor */
	h->vcpu_mmap_size = ioctl(h->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (h->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		int saved = errno;
		close(h->fd);
		errno = saved;
		return err_sys(e, "KVM_GET_VCPU_MMAP_SIZE");
	}
	h->pvm = host_is_pvm();
	return 0;
}

void kvm_host_close(struct kvm_host *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}
