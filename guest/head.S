/* The protected-mode kernel's first bytes, at code32_start (KERNEL_PA):
 *   +0x000 startup_32: 32-bit boot protocol entry (from setup.S / any
 *          32-bit loader): builds identity page tables for 0-4 GiB,
 *          enables long mode and joins startup_64.
 *   +0x200 startup_64: 64-bit boot protocol entry (vmswitch): RSI = zero
 *          page, paging on with an identity map, CS 0x10, DS 0x18.
 */
#include "layout.h"

#define CR0_PE   0x00000001
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100
#define PDE_2M   0x83        /* present, writable, 2 MiB */

	.section .head, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
	cld
	lgdt boot_gdtr
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	ljmp $SEL_CODE32, $1f
1:
	/* Six zeroed pages: PML4, PDPT, 4 page directories. */
	movl $boot_pt, %edi
	xorl %eax, %eax
	movl $(6 * 1024), %ecx
	rep stosl
	movl $(boot_pt + 0x1000 + 3), boot_pt
	movl $(boot_pt + 0x2000 + 3), %eax
	movl $(boot_pt + 0x1000), %edi
	movl $4, %ecx
2:	movl %eax, (%edi)
	addl $0x1000, %eax
	addl $8, %edi
	loop 2b
	movl $PDE_2M, %eax
	movl $(boot_pt + 0x2000), %edi
	movl $2048, %ecx
3:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 3b

	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $boot_pt, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $startup_64

	.balign 8
boot_gdt:
	BOOT_GDT_QUADS
boot_gdt_end:
boot_gdtr:
	.word boot_gdt_end - boot_gdt - 1
	.long boot_gdt

	.org ENTRY64_OFFSET
	.code64
	.globl startup_64
startup_64:
	cli
	cld
	movq %rsi, %r12
	leaq kstacks + KSTACK_SIZE(%rip), %rsp
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	movq %r12, %rdi
	call kernel_main
4:	hlt
	jmp 4b

	/* Not zeroed at entry: the stacks, and the page tables startup_32
	 * builds (still in use when startup_64 clears .bss). */
	.section .noinit, "aw", @nobits
	.balign 4096
	.globl boot_pt, kstacks, ustacks
boot_pt:
	.skip 6 * 4096
kstacks:
	.skip MAX_CPUS * KSTACK_SIZE
ustacks:
	.skip MAX_CPUS * USTACK_SIZE
