/* boot/: the Linux x86 boot protocol (64-bit entry) for bzImage kernels.
 *
 * Three steps, so that main() can reject bad files before it opens /dev/kvm:
 *   boot_image_open   read and validate the kernel (and initrd); no RAM needed
 *   boot_image_check  does it fit in this RAM layout?
 *   boot_image_place  write everything into guest RAM, return the entry state
 *
 * Guest-physical low-memory map written by boot_image_place (all below
 * 0x20000, which Linux never hands out early; 0x8000-0x8fff stays free for
 * the test kernel's AP trampoline):
 *   0x00000-0x00fff  real-mode IVT / BDA: left zero
 *   0x01000-0x0101f  GDT: null, null, 0x10 = 64-bit code, 0x18 = flat data
 *   0x02000-0x03fff  MP configuration table (MP spec 1.4)
 *   0x04000-0x07fff  boot stack (rsp = 0x8000)
 *   0x08000-0x08fff  FREE (AP trampoline)
 *   0x09000-0x09fff  PML4
 *   0x0a000-0x0afff  PDPT
 *   0x0b000-0x0efff  4 page directories: identity map of 0-4 GiB, 2 MiB pages
 *   0x10000-0x10fff  struct boot_params (the zero page); rsi points here
 *   0x11000-0x17fff  kernel command line (NUL-terminated)
 *   0x18000-0x1ffff  struct setup_data (SETUP_DTB) followed by the DTB
 *   0x9fc00-0xfffff  e820-reserved (EBDA, VGA, BIOS); MP floating pointer at 0xf0000
 *   kernel           at pref_address (or the first aligned address that fits
 *                    if it is relocatable and pref_address does not)
 *   initrd           highest page-aligned address below
 *                    min(initrd_addr_max + 1, end of RAM below the hole)
 */
#ifndef VMSWITCH_BOOT_H
#define VMSWITCH_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "vmswitch/err.h"
#include "vmswitch/mem.h"

#define BOOT_GDT_GPA       0x1000ULL
#define BOOT_MPC_GPA       0x2000ULL
#define BOOT_MPC_MAX       0x2000ULL
#define BOOT_STACK_TOP     0x8000ULL
#define BOOT_TRAMPOLINE    0x8000ULL  /* kept free */
#define BOOT_PML4_GPA      0x9000ULL
#define BOOT_PDPT_GPA      0xa000ULL
#define BOOT_PD_GPA        0xb000ULL  /* 4 pages */
#define BOOT_PT_IDENTITY   (4ULL << 30) /* identity-mapped bytes */
#define BOOT_PARAMS_GPA    0x10000ULL
#define BOOT_CMDLINE_GPA   0x11000ULL
#define BOOT_CMDLINE_MAX   0x7000ULL  /* bytes including the NUL */
#define BOOT_SETUP_DATA_GPA 0x18000ULL
#define BOOT_DTB_MAX       (0x8000ULL - sizeof(struct setup_data))
#define BOOT_EBDA_GPA      0x9fc00ULL
#define BOOT_MPFP_GPA      0xf0000ULL
#define BOOT_LOW_END       0x100000ULL /* kernels load at or above 1 MiB */

/* GDT selectors of the boot protocol (__BOOT_CS / __BOOT_DS) and their
 * descriptors, for vCPU code that fills kvm_segment by hand. */
#define BOOT_CS            0x10
#define BOOT_DS            0x18
#define BOOT_GDT_CODE64    0x00af9b000000ffffULL /* L=1, DPL0, exec/read */
#define BOOT_GDT_DATA      0x00cf93000000ffffULL /* 4 GiB flat, read/write */
#define BOOT_GDT_ENTRIES   4

/* The Intel MP table gives the IOAPIC id ncpus, which must fit in 8 bits and
 * stay below the broadcast id 0xff. */
#define BOOT_MAX_CPUS      254

#define BOOT_IOAPIC_GPA    0xfec00000ULL
#define BOOT_LAPIC_GPA     0xfee00000ULL

/* Host-side decompression (issue #6): a bzImage's compressed payload,
 * decompressed on the host, is the kernel proper as an ELF (vmlinux) whose
 * PT_LOAD segments load at their physical addresses. */
enum boot_payload_format {
	BOOT_PAYLOAD_NONE,        /* no payload (protocol < 2.08 or length 0) */
	BOOT_PAYLOAD_ELF,         /* stored uncompressed */
	BOOT_PAYLOAD_GZIP,
	BOOT_PAYLOAD_XZ,
	BOOT_PAYLOAD_LZMA,
	BOOT_PAYLOAD_LZ4,         /* the kernel's lz4 *legacy* frame format */
	BOOT_PAYLOAD_ZSTD,
	BOOT_PAYLOAD_BZIP2,
	BOOT_PAYLOAD_LZO,         /* recognized, not supported on the host */
	BOOT_PAYLOAD_UNKNOWN,
};

#define BOOT_ELF_MAX_SEGS  16
struct boot_elf_seg {
	uint64_t paddr;           /* load address (p_paddr) */
	uint64_t offset;          /* in the ELF file */
	uint64_t filesz, memsz;   /* memsz - filesz bytes of bss are zeroed */
};

struct boot_elf {
	uint64_t entry;           /* physical address of the 64-bit entry */
	uint64_t lo, hi;          /* lowest paddr, highest paddr + memsz */
	unsigned nseg;
	struct boot_elf_seg seg[BOOT_ELF_MAX_SEGS];
};

/* A validated kernel (and optional initrd), held in host memory. */
struct boot_image {
	char *kernel_path;
	uint8_t *kernel;          /* the whole bzImage file */
	size_t kernel_size;
	size_t setup_size;        /* (setup_sects + 1) * 512: real-mode part */
	struct setup_header hdr;  /* copy of the image's header */
	size_t hdr_len;           /* bytes of hdr the image really defines */
	uint64_t pref_address;
	uint64_t init_size;       /* >= protected-mode size */
	uint64_t kernel_alignment;
	bool relocatable;
	uint64_t initrd_limit;    /* initrd_addr_max + 1 */
	char *initrd_path;        /* NULL: no initrd */
	int initrd_fd;            /* -1: no initrd; read at place time */
	uint64_t initrd_size;
	/* Host decompression: vmlinux is NULL on the classic path (load the
	 * protected-mode code at kernel_gpa, enter at +0x200). */
	enum boot_payload_format payload_format;
	uint8_t *vmlinux;         /* the decompressed payload (an ELF) */
	size_t vmlinux_size;
	struct boot_elf elf;      /* its segments and entry, validated */
};

/* How boot_image_open_with treats the image. */
struct boot_open_cfg {
	bool no_host_decompress;  /* always take the classic path */
};

/* Where things go in guest RAM; computed by boot_image_plan. */
struct boot_plan {
	uint64_t kernel_gpa;      /* load address */
	uint64_t kernel_end;      /* kernel_gpa + max(init_size, pm size) */
	uint64_t initrd_gpa;      /* 0 if no initrd */
};

struct boot_params_cfg {
	const char *cmdline;      /* NULL means "" */
	unsigned ncpus;           /* 1..BOOT_MAX_CPUS */
	uint16_t hcall_port;      /* DTB /vmswitch hcall-port */
	const char *mode;         /* DTB /vmswitch mode, e.g. "passthrough" */
	uint32_t tsc_khz;         /* DTB /vmswitch tsc-khz; 0: left out (unknown) */
	uint16_t serial_port;     /* DTB /serial@...; 0 means 0x3f8 */
	uint8_t serial_irq;       /* 0 means 4 */
};

/* The vCPU state at the 64-bit entry point (long mode, paging on). */
struct boot_entry {
	uint64_t rip, rsi, rsp, cr0, cr3, cr4, efer, gdt_base;
	uint16_t gdt_limit, cs, ds;
};

/* Read and validate `kernel` (a bzImage with a 64-bit entry) and `initrd`
 * (NULL for none). Errors name the file. On -1, *img needs no close. */
int boot_image_open(const char *kernel, const char *initrd,
		    struct boot_image *img, struct err *e);
/* boot_image_open with options (boot_image_open = all defaults: decompress
 * the payload on the host when the image has one). */
int boot_image_open_with(const char *kernel, const char *initrd,
			 const struct boot_open_cfg *cfg,
			 struct boot_image *img, struct err *e);
/* Does the image (kernel, init_size, initrd) fit in this RAM layout? */
int boot_image_check(const struct boot_image *img, const struct mem_layout *l,
		     struct err *e);
/* Are the cmdline, ncpus and DTB strings acceptable for this image? */
int boot_params_check(const struct boot_image *img,
		      const struct boot_params_cfg *cfg, struct err *e);
/* Write kernel, initrd, boot_params, cmdline, page tables, GDT, MP table and
 * DTB into guest RAM through mem_gpa_hva(); fill *out for every vCPU's BSP. */
int boot_image_place(const struct boot_image *img,
		     const struct boot_params_cfg *cfg, struct mem *m,
		     struct boot_entry *out, struct err *e);
void boot_image_close(struct boot_image *img);

/* --- lower-level pieces, public for tests and for other loaders --- */

/* Guest RAM seen as a layout plus a translation (mem_gpa_hva, or a plain
 * buffer in tests). gpa_hva returns NULL for non-RAM. */
struct boot_guest {
	const struct mem_layout *layout;
	void *(*gpa_hva)(void *ctx, uint64_t gpa);
	void *ctx;
};

int boot_image_plan(const struct boot_image *img, const struct mem_layout *l,
		    struct boot_plan *out, struct err *e);
int boot_image_place_guest(const struct boot_image *img,
			   const struct boot_params_cfg *cfg,
			   const struct boot_guest *g, struct boot_entry *out,
			   struct err *e);

/* e820 map from the layout: RAM regions as E820_RAM (1), with
 * 0x9fc00-0x100000 reserved (2); the hole is simply absent. */
#define BOOT_E820_RAM      1
#define BOOT_E820_RESERVED 2
int boot_e820_build(const struct mem_layout *l, struct boot_e820_entry *tab,
		    unsigned max, unsigned *n, struct err *e);

/* The flat GDT and the identity page tables (PML4 + PDPT + 4 PDs, 6 pages
 * laid out from BOOT_PML4_GPA), as they must appear in guest memory. */
void boot_gdt_build(uint64_t gdt[BOOT_GDT_ENTRIES]);
#define BOOT_PT_BYTES      (6 * 4096)
void boot_pagetables_build(uint8_t buf[BOOT_PT_BYTES]);

/* MP spec 1.4: the configuration table (to live at table_gpa) into `table`
 * (*len bytes used) and the 16-byte floating pointer into `fp`. */
int boot_mptable_build(unsigned ncpus, uint64_t table_gpa, void *table,
		       size_t size, size_t *len, uint8_t fp[16], struct err *e);

/* The flattened device tree (see boot/dtb.c for its nodes). */
int boot_dtb_build(const struct boot_params_cfg *cfg,
		   const struct mem_layout *l, void *buf, size_t size,
		   struct err *e);

/* --- host decompression and ELF loading (decompress.c, elf.c) --- */

/* The payload's format from its first bytes; its name ("xz", ...). */
enum boot_payload_format boot_payload_detect(const uint8_t *p, size_t len);
const char *boot_payload_format_name(enum boot_payload_format f);
/* Decompress a kernel payload (stream followed by the le32 uncompressed
 * size, as the kernel's build appends it) into a malloc'd *out. `what`
 * names the file in messages. */
int boot_payload_decompress(const uint8_t *p, size_t len, const char *what,
			    uint8_t **out, size_t *out_len, struct err *e);
/* Find the image's payload (setup header payload_offset/length) and, if it
 * is there, decompress it into img->vmlinux and validate it as an ELF.
 * Leaves img->vmlinux NULL (classic path) for images without a payload. */
int boot_image_decompress(struct boot_image *img, struct err *e);

/* Validate an x86-64 ELF executable and collect its PT_LOAD segments
 * (all at or above BOOT_LOW_END, not overlapping) and physical entry. */
int boot_elf_parse(const uint8_t *buf, size_t len, const char *what,
		   struct boot_elf *out, struct err *e);
/* Copy the segments to their physical addresses and zero their bss. */
int boot_elf_load(const uint8_t *buf, const struct boot_elf *elf,
		  const struct boot_guest *g, struct err *e);

/* --- kernel options for Linux on kvm_pvm hosts (pvm_compat.c) --- */

#define BOOT_PVM_MAX_ADDED 24
struct boot_pvm_added {
	char option[64];          /* what was added, e.g. "noxsave" */
	const char *why;          /* static text */
};

struct boot_pvm_cmdline {
	char *cmdline;            /* malloc'd: the user's line plus additions */
	unsigned n;
	struct boot_pvm_added added[BOOT_PVM_MAX_ADDED];
};

/* The command line Linux needs on this host: `user` (NULL means "") plus,
 * if pvm_host, the options proven necessary on kvm_pvm (and, if
 * candidates, those of the best known run, not yet proven one by one),
 * skipping any the user already set (clearcpuid= lists are merged).
 * Options go before a " -- " that starts init's arguments. */
int boot_pvm_cmdline(const char *user, bool pvm_host, bool candidates,
		     struct boot_pvm_cmdline *out, struct err *e);
void boot_pvm_cmdline_free(struct boot_pvm_cmdline *c);

#endif
