/* Naming the instructions that KVM's emulator gives up on (measured on PVM
 * hosts, see DESIGN.md), so a failure says "xrstor" instead of raw bytes, and
 * the two that Linux keeps executing (int3, fwait) can be completed by us. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "insn.h"

struct op {
	uint8_t b[3];
	unsigned n;          /* opcode bytes after prefixes */
	int reg;             /* ModRM.reg that must match, or -1 */
	int mod3;            /* 1: ModRM.mod must be 3, 0: must not be 3, -1: any */
	const char *name;
};

static const struct op ops[] = {
	{{0x0f, 0xc7}, 2, 1, 0, "cmpxchg8b/16b"},
	{{0x0f, 0xae}, 2, 5, 0, "xrstor"},
	{{0x0f, 0xae}, 2, 4, 0, "xsave"},
	{{0x0f, 0xae}, 2, 6, 0, "xsaveopt"},
	{{0x0f, 0xae}, 2, 2, 0, "ldmxcsr"},
	{{0x0f, 0xae}, 2, 3, 0, "stmxcsr"},
	{{0x0f, 0xc7}, 2, 3, 0, "xrstors"},
	{{0x0f, 0xc7}, 2, 5, 0, "xsaves"},
	{{0x0f, 0xc7}, 2, 4, 0, "xsavec"},
	{{0x0f, 0x01, 0xca}, 3, -1, -1, "clac"},
	{{0x0f, 0x01, 0xcb}, 3, -1, -1, "stac"},
	{{0x0f, 0x01, 0xd0}, 3, -1, -1, "xgetbv"},
	{{0x0f, 0x01, 0xd1}, 3, -1, -1, "xsetbv"},
	{{0x0f, 0x01, 0xf9}, 3, -1, -1, "rdtscp"},
	{{0x0f, 0x01, 0xc1}, 3, -1, -1, "vmcall"},
	{{0x0f, 0x01, 0xd9}, 3, -1, -1, "vmmcall"},
	{{0x0f, 0xb8}, 2, -1, -1, "popcnt"},
	{{0x0f, 0xbc}, 2, -1, -1, "tzcnt"},
	{{0x0f, 0xbd}, 2, -1, -1, "lzcnt"},
	{{0x0f, 0x38, 0xf0}, 3, -1, -1, "crc32/movbe"},
	{{0x0f, 0x38, 0xf1}, 3, -1, -1, "crc32/movbe"},
	{{0x0f, 0x38, 0xdc}, 3, -1, -1, "aesenc"},
	{{0x0f, 0x3a, 0x44}, 3, -1, -1, "pclmulqdq"},
	{{0x0f, 0x38, 0x82}, 3, -1, -1, "invpcid"},
};

static bool is_prefix(uint8_t b)
{
	return b == 0x66 || b == 0x67 || b == 0xf2 || b == 0xf3 || b == 0xf0 ||
	       b == 0x2e || b == 0x36 || b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65;
}

void insn_decode(const uint8_t *bytes, size_t n, struct insn_info *out)
{
	size_t i = 0;

	*out = (struct insn_info){.name = "unknown", .len = 0, .fixup = INSN_FIXUP_NONE};
	while (i < n && is_prefix(bytes[i]))
		i++;
	if (i < n && (bytes[i] & 0xf0) == 0x40) /* REX */
		i++;
	if (i >= n)
		return;
	if (bytes[i] == 0xcc && i == 0) {
		*out = (struct insn_info){"int3", 1, INSN_FIXUP_INT3};
		return;
	}
	if (bytes[i] == 0x9b && i == 0) {
		*out = (struct insn_info){"fwait", 1, INSN_FIXUP_SKIP};
		return;
	}
	if (bytes[i] == 0xc4 || bytes[i] == 0xc5 || bytes[i] == 0x62) {
		out->name = "AVX (VEX/EVEX-encoded)";
		return;
	}
	if (bytes[i] >= 0xd8 && bytes[i] <= 0xdf) {
		out->name = "x87 arithmetic";
		return;
	}
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		const struct op *op = &ops[k];
		if (i + op->n > n || memcmp(bytes + i, op->b, op->n) != 0)
			continue;
		if (op->reg >= 0 || op->mod3 >= 0) {
			if (i + op->n >= n)
				continue;
			uint8_t modrm = bytes[i + op->n];
			if (op->reg >= 0 && ((modrm >> 3) & 7) != op->reg)
				continue;
			if (op->mod3 == 1 && (modrm >> 6) != 3)
				continue;
			if (op->mod3 == 0 && (modrm >> 6) == 3)
				continue;
		}
		out->name = op->name;
		return;
	}
	if (bytes[i] == 0x0f && i + 1 < n && bytes[i + 1] >= 0x10 && bytes[i + 1] <= 0x7f)
		out->name = "SSE";
}

void insn_hex(const uint8_t *bytes, size_t n, char *buf, size_t buflen)
{
	size_t off = 0;

	if (buflen)
		buf[0] = '\0';
	for (size_t i = 0; i < n && off + 4 < buflen; i++)
		off += (size_t)snprintf(buf + off, buflen - off, i ? " %02x" : "%02x", bytes[i]);
}
