/* Putting a validated image into guest RAM: the low-memory structures of
 * boot.h's map, the kernel, the initrd and the zero page, then the entry
 * state of the 64-bit boot protocol. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#include "guest_io.h"
#include "vmswitch/util.h"

#define ENTRY_64      0x200     /* startup_64 relative to the load address */
#define LOADER_OTHER  0xff      /* type_of_loader: "undefined" boot loader */
#define CR0_PE        0x1ULL
#define CR0_ET        0x10ULL
#define CR0_NE        0x20ULL
#define CR0_PG        0x80000000ULL
#define CR4_PAE       0x20ULL
#define EFER_LME      0x100ULL
#define EFER_LMA      0x400ULL

static int put_cpu_tables(const struct boot_guest *g, unsigned ncpus, struct err *e)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];
	const size_t pt_size = BOOT_PT_BYTES;
	uint8_t *buf = malloc(MAX(pt_size, (size_t)BOOT_MPC_MAX));
	uint8_t fp[16];
	size_t len;
	int rc;

	if (!buf)
		return err_set(e, ENOMEM, "boot tables: out of memory");
	boot_gdt_build(gdt);
	boot_pagetables_build(buf);
	rc = guest_write(g, BOOT_GDT_GPA, gdt, sizeof(gdt), e);
	if (rc == 0)
		rc = guest_write(g, BOOT_PML4_GPA, buf, pt_size, e);
	if (rc == 0)
		rc = boot_mptable_build(ncpus, BOOT_MPC_GPA, buf, BOOT_MPC_MAX, &len, fp, e);
	if (rc == 0)
		rc = guest_write(g, BOOT_MPC_GPA, buf, len, e);
	if (rc == 0)
		rc = guest_write(g, BOOT_MPFP_GPA, fp, sizeof(fp), e);
	free(buf);
	return rc;
}

/* setup_data header followed by the DTB, chained from hdr.setup_data. */
static int put_dtb(const struct boot_guest *g, const struct boot_params_cfg *cfg,
		   struct err *e)
{
	size_t size = BOOT_DTB_MAX + sizeof(struct setup_data);
	uint8_t *buf = calloc(1, size);
	struct setup_data sd = {.next = 0, .type = SETUP_DTB};
	int rc;

	if (!buf)
		return err_set(e, ENOMEM, "device tree: out of memory");
	rc = boot_dtb_build(cfg, g->layout, buf + sizeof(sd), BOOT_DTB_MAX, e);
	if (rc == 0) {
		sd.len = fdt_totalsize(buf + sizeof(sd));
		memcpy(buf, &sd, sizeof(sd));
		rc = guest_write(g, BOOT_SETUP_DATA_GPA, buf, sizeof(sd) + sd.len, e);
	}
	free(buf);
	return rc;
}

static int put_cmdline(const struct boot_guest *g, const char *cmdline, struct err *e)
{
	const char *s = cmdline ? cmdline : "";

	if (guest_zero(g, BOOT_CMDLINE_GPA, BOOT_CMDLINE_MAX, e) < 0)
		return -1;
	return guest_write(g, BOOT_CMDLINE_GPA, s, strlen(s) + 1, e);
}

static int put_payload(const struct boot_guest *g, const struct boot_image *img,
		       const struct boot_plan *p, struct err *e)
{
	if (img->vmlinux && boot_elf_load(img->vmlinux, &img->elf, g, e) < 0)
		return err_wrap(e, "kernel %s", img->kernel_path);
	if (!img->vmlinux && guest_write(g, p->kernel_gpa, img->kernel + img->setup_size,
			img->kernel_size - img->setup_size, e) < 0)
		return err_wrap(e, "loading kernel %s", img->kernel_path);
	if (img->initrd_fd >= 0 &&
	    guest_read_fd(g, p->initrd_gpa, img->initrd_fd, img->initrd_size,
			  img->initrd_path, e) < 0)
		return -1;
	return 0;
}

/* The zero page: a clean boot_params holding the image's own header, with
 * the loader's fields filled in. */
static int put_boot_params(const struct boot_guest *g, const struct boot_image *img,
			   const struct boot_plan *p, struct err *e)
{
	struct boot_params *bp = calloc(1, sizeof(*bp));
	unsigned n;
	int rc;

	if (!bp)
		return err_set(e, ENOMEM, "boot_params: out of memory");
	memcpy(&bp->hdr, img->kernel + 0x1f1, img->hdr_len);
	bp->hdr.type_of_loader = LOADER_OTHER;
	bp->hdr.loadflags |= LOADED_HIGH;
	bp->hdr.code32_start = (uint32_t)p->kernel_gpa;
	bp->hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_GPA;
	bp->ext_cmd_line_ptr = (uint32_t)(BOOT_CMDLINE_GPA >> 32);
	bp->hdr.ramdisk_image = (uint32_t)p->initrd_gpa;
	bp->ext_ramdisk_image = (uint32_t)(p->initrd_gpa >> 32);
	bp->hdr.ramdisk_size = (uint32_t)img->initrd_size;
	bp->ext_ramdisk_size = (uint32_t)(img->initrd_size >> 32);
	bp->hdr.setup_data = BOOT_SETUP_DATA_GPA;
	rc = boot_e820_build(g->layout, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE, &n, e);
	if (rc == 0) {
		bp->e820_entries = (uint8_t)n;
		rc = guest_write(g, BOOT_PARAMS_GPA, bp, sizeof(*bp), e);
	}
	free(bp);
	return rc;
}

/* The kernel proper (ELF entry) takes the same state as the bzImage's
 * 64-bit entry: boot_params in rsi, identity map, flat GDT. */
static void fill_entry(const struct boot_image *img, const struct boot_plan *p,
		       struct boot_entry *out)
{
	*out = (struct boot_entry){
		.rip = img->vmlinux ? img->elf.entry : p->kernel_gpa + ENTRY_64,
		.rsi = BOOT_PARAMS_GPA,
		.rsp = BOOT_STACK_TOP,
		.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG,
		.cr3 = BOOT_PML4_GPA,
		.cr4 = CR4_PAE,
		.efer = EFER_LME | EFER_LMA,
		.gdt_base = BOOT_GDT_GPA,
		.gdt_limit = BOOT_GDT_ENTRIES * 8 - 1,
		.cs = BOOT_CS,
		.ds = BOOT_DS,
	};
}

int boot_image_place_guest(const struct boot_image *img,
			   const struct boot_params_cfg *cfg,
			   const struct boot_guest *g, struct boot_entry *out,
			   struct err *e)
{
	struct boot_plan p;

	if (boot_params_check(img, cfg, e) < 0 || boot_image_plan(img, g->layout, &p, e) < 0)
		return -1;
	if (put_cpu_tables(g, cfg->ncpus, e) < 0 || put_dtb(g, cfg, e) < 0 ||
	    put_cmdline(g, cfg->cmdline, e) < 0 || put_payload(g, img, &p, e) < 0 ||
	    put_boot_params(g, img, &p, e) < 0)
		return -1;
	fill_entry(img, &p, out);
	return 0;
}
