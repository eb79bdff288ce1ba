/* The bzImage's real-mode part: boot sector placeholder, the setup header
 * (boot protocol 2.15) and a 16-bit setup that a BIOS boot loader (QEMU's
 * linuxboot ROM, GRUB) enters at offset 0x200 with DS = the setup segment.
 * It builds the zero page (header copy + BIOS e820), switches to protected
 * mode and jumps to code32_start as the 32-bit boot protocol says. vmswitch
 * never runs this: it uses the 64-bit entry. */
#include "layout.h"

#define SETUP_SECTS   4            /* setup = (4 + 1) * 512 bytes */
#define BP_OFF        0x1000       /* zero page, offset in the setup segment */
#define BP_E820_COUNT 0x1e8
#define BP_E820_TABLE 0x2d0
#define E820_MAX      128
#define SMAP          0x534d4150
#define CAN_USE_HEAP  0x80

	.section .setup, "ax"
	.code16
	.globl setup_start
setup_start:
	/* 0x000-0x1f0: the legacy boot sector, unused. */
	.org 0x1f1
hdr:
setup_sects:	.byte SETUP_SECTS
root_flags:	.word 0
syssize:	.long guest_syssize          /* 16-byte units, from guest.ld */
ram_size:	.word 0
vid_mode:	.word 0xffff                 /* "normal" */
root_dev:	.word 0
boot_flag:	.word 0xaa55
	/* 0x200: a short jump over the rest of the header; loaders read its
	 * displacement to learn the header's length. */
	.byte 0xeb, hdr_end - 0x202
header:		.ascii "HdrS"
version:	.word 0x020f
realmode_swtch:	.long 0
start_sys_seg:	.word 0
kernel_version:	.word kver - 0x200
type_of_loader:	.byte 0
loadflags:	.byte 0x01                   /* LOADED_HIGH */
setup_move_size: .word 0
code32_start:	.long KERNEL_PA
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:	.byte 21
xloadflags:	.word 0x0001                 /* XLF_KERNEL_64 */
cmdline_size:	.long 4095
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset:	.long 0
payload_length:	.long 0
setup_data:	.quad 0
pref_address:	.quad KERNEL_PA
init_size:	.long guest_init_size        /* from guest.ld */
handover_offset: .long 0
kernel_info_offset: .long 0
	.org 0x26c                          /* fails if the header overran */
hdr_end:

start_of_setup:
	cli
	cld
	movw %ds, %ax
	movw %ax, %es
	movw %ax, %ss
	/* Stack: top of the loader-granted heap, else just above the zero page. */
	movw $(BP_OFF + 0x2000), %sp
	testb $CAN_USE_HEAP, loadflags
	jz 1f
	movw heap_end_ptr, %sp
	addw $0x200, %sp                    /* 0 means the top of the segment */
1:
	/* Run with CS == DS so offsets mean the same in both. */
	pushw %ds
	pushw $2f
	lretw
2:
	call build_zero_page
	call read_e820
	jmp enter_protected_mode

/* A zeroed boot_params with a copy of the header (as the loader filled it). */
build_zero_page:
	movw $BP_OFF, %di
	xorw %ax, %ax
	movw $2048, %cx
	rep stosw
	movw $hdr, %si
	movw $(BP_OFF + 0x1f1), %di
	movw $(hdr_end - hdr), %cx
	rep movsb
	ret

/* BIOS memory map into boot_params.e820_table. */
read_e820:
	xorl %ebx, %ebx
	movw $(BP_OFF + BP_E820_TABLE), %di
3:
	movl $0xe820, %eax
	movl $SMAP, %edx
	movl $20, %ecx
	pushw %di
	int $0x15
	popw %di
	jc 4f
	cmpl $SMAP, %eax
	jne 4f
	addw $20, %di
	incb BP_OFF + BP_E820_COUNT
	cmpb $E820_MAX, BP_OFF + BP_E820_COUNT
	jae 4f
	testl %ebx, %ebx
	jnz 3b
4:
	ret

enter_protected_mode:
	cli
	movb $0x80, %al                     /* NMI off */
	outb %al, $0x70
	inb $0x92, %al                      /* fast A20 */
	orb $0x02, %al
	andb $0xfe, %al
	outb %al, $0x92

	xorl %ebx, %ebx
	movw %ds, %bx
	shll $4, %ebx                       /* linear base of this segment */
	leal gdt(%ebx), %eax
	movl %eax, gdtr + 2
	movl code32_start, %eax
	movl %eax, jmp_target
	leal BP_OFF(%ebx), %esi             /* 32-bit protocol: ESI = zero page */
	lgdtl gdtr
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	movw $SEL_KDATA, %ax                /* __BOOT_DS */
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %ebx, %ebx
	xorl %edi, %edi
	xorl %ebp, %ebp
	ljmpl *%cs:jmp_target               /* CS = __BOOT_CS (0x10) */

	.balign 8
gdt:	.quad 0, 0
	.quad 0x00cf9b000000ffff            /* 0x10: flat 32-bit code */
	.quad 0x00cf93000000ffff            /* 0x18: flat data */
gdt_end:
gdtr:	.word gdt_end - gdt - 1
	.long 0
jmp_target:
	.long 0
	.word 0x10

kver:	.asciz "vmswitch-guest 0.1"

	.org (SETUP_SECTS + 1) * 512
