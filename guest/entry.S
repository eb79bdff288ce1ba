/* CPL0 glue: segment/TSS loading, the drop to CPL3, the AP 64-bit entry
 * and the exception stubs. */
#include "layout.h"

	.text
	.code64

/* void load_segments(const void *gdtr, const void *idtr, uint16_t tss_sel) */
	.globl load_segments
load_segments:
	lgdt (%rdi)
	lidt (%rsi)
	pushq $SEL_KCODE
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	ltr %dx
	ret

/* noreturn void enter_user(void (*fn)(uint64_t), uint64_t rsp, uint64_t arg)
 * iretq to fn(arg) at CPL3 with interrupts off (RFLAGS = 2). */
	.globl enter_user
enter_user:
	movq %rdi, %rax
	pushq $SEL_UDATA
	pushq %rsi
	pushq $0x2
	pushq $SEL_UCODE
	pushq %rax
	movq %rdx, %rdi
	movl $SEL_UDATA, %ecx
	movl %ecx, %ds
	movl %ecx, %es
	xorl %eax, %eax
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %ebp, %ebp
	iretq

/* The trampoline jumps here in long mode with RSP = this CPU's kernel
 * stack and EDI = its index. */
	.globl ap_entry64
ap_entry64:
	cld
	call ap_kernel_main
2:	hlt
	jmp 2b

/* Exception stubs: a uniform frame (vector, error code) for trap.c. */
	.macro STUB vec
	.balign 16
stub_\vec:
	.if !((\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30))
	pushq $0
	.endif
	pushq $\vec
	jmp exception_common
	.endm

	/* Vectors that push an error code: 8, 10-14, 17, 21, 29, 30. */
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	STUB \vec
	.endr

exception_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call exception_report
3:	hlt
	jmp 3b

	.section .rodata
	.balign 8
	.globl exception_stubs
exception_stubs:
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad stub_\vec
	.endr
