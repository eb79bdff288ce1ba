/* The guest's CPUID: what KVM supports, with per-vCPU APIC ids and topology,
 * the hypervisor bit, and (on PVM hosts) features the emulator cannot run
 * removed where the host lets us. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "cpuid.h"
#include "vmswitch/util.h"

#define CPUID_1_ECX_CX16 (1u << 13)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)

int cpuid_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e)
{
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return err_set(e, ENOMEM, "allocating the CPUID table");
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return err_sys(e, "KVM_GET_SUPPORTED_CPUID");
	}
	return err_set(e, E2BIG, "KVM_GET_SUPPORTED_CPUID: table too large");
}

void cpuid_for_vcpu(struct kvm_cpuid2 *c, unsigned id, unsigned ncpus, bool pvm_compat)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *en = &c->entries[i];

		switch (en->function) {
		case 1:
			/* Initial APIC id and logical-processor count. */
			en->ebx = (en->ebx & 0x0000ffffu) | (id << 24) | ((ncpus & 0xff) << 16);
			en->ecx |= CPUID_1_ECX_HYPERVISOR;
			/* cmpxchg16b is one of the few bits a PVM host lets us
			 * clear, and its emulator cannot execute it (SLUB uses it). */
			if (pvm_compat)
				en->ecx &= ~CPUID_1_ECX_CX16;
			break;
		case 0xb:
		case 0x1f:
			/* Flat topology: one thread per core, all cores in one package. */
			en->edx = id;
			if (en->index == 0) {
				en->eax = 0;
				en->ebx = 1;
				en->ecx = (en->ecx & ~0xff00u) | (1u << 8) | 0;
			} else if (en->index == 1) {
				unsigned shift = 0;
				while ((1u << shift) < ncpus)
					shift++;
				en->eax = shift;
				en->ebx = ncpus;
				en->ecx = (en->ecx & ~0xff00u) | (2u << 8) | 1;
			} else {
				en->eax = en->ebx = 0;
				en->ecx = en->index;
			}
			break;
		default:
			break;
		}
	}
}
