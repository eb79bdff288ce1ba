/* CPL0 state of the test kernel: page tables, per-CPU GDT/TSS, the IDT.
 * Kept to what must run at CPL0: on our KVM hosts every CPL0 instruction
 * goes through KVM's emulator (~1.4 M instructions/s). */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include "guest.h"

/* I/O permission bitmap up to the last hypercall port, plus the all-ones
 * byte the CPU may read past the end. */
#define IOMAP_BYTES (HC_PORT_LAST / 8 + 1)

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
	uint8_t iomap[IOMAP_BYTES + 1];
} __attribute__((packed));

struct cpu_local {
	uint64_t gdt[GDT_ENTRIES];
	struct tss tss;
} __attribute__((aligned(64)));

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, reserved;
} __attribute__((packed));

struct page_tables {
	uint64_t pml4[512];
	uint64_t id_pdpt[512];
	uint64_t id_pd[4][512];              /* 0-4 GiB, 2 MiB pages */
	uint64_t hi_pdpt[512];
	uint64_t hi_pd[512];                 /* HIGH_VA: 1 GiB of chunks */
	uint64_t hi_pt[SMALL_CHUNKS / 2][512]; /* the 4 KiB-mapped chunks */
} __attribute__((aligned(4096)));

struct kernel {
	struct page_tables pt;
	struct idt_entry idt[32];
	struct cpu_local cpu[MAX_CPUS];
	struct boot_info info;
};

/* What the exception stubs push, lowest address first. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

void paging_build(struct page_tables *pt, uint64_t high_size);
uint64_t paging_high_size(const struct boot_params *bp);
void idt_build(struct idt_entry *idt);
void cpu_load(struct kernel *k, unsigned cpu);
__attribute__((noreturn)) void exception_report(const struct trap_frame *f);

#endif
