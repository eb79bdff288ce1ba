/* Where the kernel and initrd go in a given RAM layout, and whether the
 * per-boot settings (cmdline, vCPUs) suit the image. Pure computation. */
#include <errno.h>
#include <string.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

/* End of the RAM region starting at GPA 0 (everything the boot protocol
 * touches lives below the 32-bit hole). 0 if there is none. */
static uint64_t low_ram_end(const struct mem_layout *l)
{
	for (unsigned i = 0; i < l->nr; i++)
		if (l->r[i].gpa == 0)
			return l->r[i].size;
	return 0;
}

/* A host-decompressed kernel sits where its ELF segments say. */
static int place_elf(const struct boot_image *img, uint64_t low_end,
		     struct boot_plan *p, struct err *e)
{
	if (img->elf.hi > low_end)
		return err_set(e, ENOSPC, "kernel %s: its decompressed ELF needs RAM "
			       "up to 0x%llx, but RAM below the hole ends at 0x%llx",
			       img->kernel_path, (unsigned long long)img->elf.hi,
			       (unsigned long long)low_end);
	p->kernel_gpa = img->elf.lo;
	p->kernel_end = img->elf.hi;
	return 0;
}

static int place_kernel(const struct boot_image *img, uint64_t low_end,
			struct boot_plan *p, struct err *e)
{
	uint64_t need = img->init_size;
	uint64_t at = img->pref_address;

	if (img->vmlinux)
		return place_elf(img, low_end, p, e);
	if (at + need > low_end && img->relocatable)
		at = ALIGN_UP(BOOT_LOW_END, img->kernel_alignment);
	if (at + need > low_end)
		return err_set(e, ENOSPC, "kernel %s: needs %llu KiB at 0x%llx "
			       "(init_size), but RAM below the hole ends at 0x%llx",
			       img->kernel_path, (unsigned long long)(need >> 10),
			       (unsigned long long)at, (unsigned long long)low_end);
	p->kernel_gpa = at;
	p->kernel_end = at + need;
	return 0;
}

/* Highest page-aligned spot below min(initrd_addr_max + 1, low RAM end),
 * above the kernel's init_size area. */
static int place_initrd(const struct boot_image *img, uint64_t low_end,
			struct boot_plan *p, struct err *e)
{
	uint64_t top = MIN(img->initrd_limit, low_end);
	uint64_t at;

	p->initrd_gpa = 0;
	if (img->initrd_fd < 0)
		return 0;
	at = top >= img->initrd_size ? ALIGN_DOWN(top - img->initrd_size, PAGE_SIZE) : 0;
	if (top < img->initrd_size || at < p->kernel_end)
		return err_set(e, ENOSPC, "initrd %s: %llu bytes does not fit between "
			       "the kernel's end 0x%llx and 0x%llx (initrd_addr_max or "
			       "end of RAM below the hole)", img->initrd_path,
			       (unsigned long long)img->initrd_size,
			       (unsigned long long)p->kernel_end,
			       (unsigned long long)top);
	p->initrd_gpa = at;
	return 0;
}

int boot_image_plan(const struct boot_image *img, const struct mem_layout *l,
		    struct boot_plan *out, struct err *e)
{
	uint64_t low_end = low_ram_end(l);

	if (low_end < BOOT_LOW_END)
		return err_set(e, EINVAL, "guest RAM must start at 0 and reach 1 MiB "
			       "for the boot protocol");
	*out = (struct boot_plan){0};
	if (place_kernel(img, low_end, out, e) < 0)
		return -1;
	return place_initrd(img, low_end, out, e);
}

int boot_image_check(const struct boot_image *img, const struct mem_layout *l,
		     struct err *e)
{
	struct boot_plan p;

	return boot_image_plan(img, l, &p, e);
}

int boot_params_check(const struct boot_image *img,
		      const struct boot_params_cfg *cfg, struct err *e)
{
	size_t len = cfg->cmdline ? strlen(cfg->cmdline) : 0;
	/* cmdline_size excludes the NUL (boot protocol 2.06+). */
	size_t max = MIN((size_t)img->hdr.cmdline_size, BOOT_CMDLINE_MAX - 1);

	if (len > max)
		return err_set(e, E2BIG, "--append: command line is %zu bytes, kernel "
			       "%s accepts at most %zu", len, img->kernel_path, max);
	if (cfg->ncpus < 1 || cfg->ncpus > BOOT_MAX_CPUS)
		return err_set(e, EINVAL, "--cpus: %u vCPUs, the MP table allows 1..%u",
			       cfg->ncpus, BOOT_MAX_CPUS);
	return 0;
}
