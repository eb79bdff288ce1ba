#ifndef VMSWITCH_VM_INSN_H
#define VMSWITCH_VM_INSN_H

#include <stddef.h>
#include <stdint.h>

/* What vmswitch does about an instruction KVM's emulator could not run. */
enum insn_fixup {
	INSN_FIXUP_NONE,     /* stop the VM with a clear message */
	INSN_FIXUP_INT3,     /* inject #BP with RIP advanced by one (PVM hosts) */
	INSN_FIXUP_SKIP,     /* skip it: fwait with no pending x87 exception */
};

struct insn_info {
	const char *name;    /* "cmpxchg16b", "xrstor", ... or "unknown" */
	unsigned len;        /* bytes to skip for INSN_FIXUP_SKIP */
	enum insn_fixup fixup;
};

/* Decode the common instructions that fail in KVM's emulator on PVM hosts. */
void insn_decode(const uint8_t *bytes, size_t n, struct insn_info *out);
/* "0f c7 0e ..." for messages. */
void insn_hex(const uint8_t *bytes, size_t n, char *buf, size_t buflen);

#endif
