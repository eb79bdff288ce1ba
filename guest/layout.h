/* Addresses and selectors shared by the assembly and the C of the test
 * kernel (plain #defines: included from .S files too). */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define KERNEL_PA      0x100000    /* pref_address == code32_start */
#define ENTRY64_OFFSET 0x200       /* 64-bit entry: load address + 0x200 */
#define TRAMPOLINE_PA  0x8000      /* AP trampoline page; SIPI vector 0x08 */
#define HIGH_PA        0x400000    /* first physical byte mapped at HIGH_VA */
#define HIGH_VA        0x00007f0000000000
#define HIGH_MAX       0x40000000  /* map at most 1 GiB there */
#define WORK_OFFSET    0x180000    /* work area: HIGH_VA + WORK_OFFSET */
#define SMALL_CHUNKS   16          /* even chunks below this use 4 KiB pages */
#define LAPIC_PA       0xfee00000

#define MAX_CPUS       8
#define KSTACK_SIZE    0x4000      /* CPL0 stack per CPU (RSP0, AP boot) */
#define USTACK_SIZE    0x10000     /* CPL3 stack per CPU */

/* GDT (per CPU): 0x08 32-bit code (boot only), 0x10 64-bit kernel code,
 * 0x18 kernel data, 0x20 user code, 0x28 user data, 0x30 TSS (16 bytes). */
#define SEL_CODE32     0x08
#define SEL_KCODE      0x10
#define SEL_KDATA      0x18
#define SEL_UCODE      0x23
#define SEL_UDATA      0x2b
#define SEL_TSS        0x30
#define GDT_ENTRIES    8

/* The flat GDT both the BSP's and the APs' mode switches use (assembly
 * only): null, 0x08 32-bit code, 0x10 64-bit code, 0x18 data. */
#define BOOT_GDT_QUADS \
	.quad 0; \
	.quad 0x00cf9b000000ffff; \
	.quad 0x00af9b000000ffff; \
	.quad 0x00cf93000000ffff

#define GUEST_EXIT_PASS      0
#define GUEST_EXIT_MISMATCH  1
#define GUEST_EXIT_EXCEPTION 2

#endif
