/* AP start-up code, copied to TRAMPOLINE_PA by CPU 0 (at CPL3) before the
 * SIPI (vector TRAMPOLINE_PA >> 12). Real mode -> protected mode -> long
 * mode with the shared page tables, then a jump to tr_entry (ap_entry64)
 * with RSP = tr_stack and EDI = tr_cpu. Position-dependent on purpose:
 * every address is TRAMPOLINE_PA + offset. */
#include "layout.h"

#define AT(x) (TRAMPOLINE_PA + ((x) - trampoline_start))

	.section .rodata.trampoline, "a"
	.globl trampoline_start, trampoline_end
	.globl tr_cr3, tr_stack, tr_entry, tr_cpu
	.code16
trampoline_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl AT(tr_gdtr)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $AT(tr_32)

	.code32
tr_32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %cr4, %eax
	orl $0x20, %eax                     /* PAE */
	movl %eax, %cr4
	movl AT(tr_cr3), %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx              /* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax               /* PG | PE */
	movl %eax, %cr0
	ljmp $SEL_KCODE, $AT(tr_64)

	.code64
tr_64:
	movq AT(tr_stack), %rsp
	movl AT(tr_cpu), %edi
	jmpq *AT(tr_entry)

	.balign 8
tr_gdt:
	BOOT_GDT_QUADS
tr_gdt_end:
tr_gdtr:
	.word tr_gdt_end - tr_gdt - 1
	.long AT(tr_gdt)
	.balign 8
tr_cr3:	.quad 0
tr_stack: .quad 0
tr_entry: .quad 0
tr_cpu:	.long 0
trampoline_end:
