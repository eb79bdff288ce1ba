#ifndef VMSWITCH_VM_CPUID_H
#define VMSWITCH_VM_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>

#include "vmswitch/err.h"

int cpuid_supported(int kvm_fd, struct kvm_cpuid2 **out, struct err *e);
/* Patch a copy of the supported table for vCPU `id` of `ncpus`. */
void cpuid_for_vcpu(struct kvm_cpuid2 *c, unsigned id, unsigned ncpus, bool pvm_compat);

#endif
