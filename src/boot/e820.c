/* The e820 map handed to the guest: exactly the RAM layout (claim 15), with
 * the legacy EBDA/VGA/BIOS area below 1 MiB reserved as Linux expects. */
#include <errno.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

static int add(struct boot_e820_entry *tab, unsigned max, unsigned *n,
	       uint64_t addr, uint64_t size, uint32_t type, struct err *e)
{
	if (size == 0)
		return 0;
	if (*n >= max)
		return err_set(e, ENOSPC, "e820: more than %u entries", max);
	tab[*n] = (struct boot_e820_entry){.addr = addr, .size = size, .type = type};
	(*n)++;
	return 0;
}

/* The region at GPA 0: RAM, the reserved legacy area, RAM from 1 MiB. */
static int add_low(const struct mem_region *r, struct boot_e820_entry *tab,
		   unsigned max, unsigned *n, struct err *e)
{
	uint64_t end = r->size;

	if (end <= BOOT_EBDA_GPA)
		return add(tab, max, n, 0, end, BOOT_E820_RAM, e);
	if (add(tab, max, n, 0, BOOT_EBDA_GPA, BOOT_E820_RAM, e) < 0 ||
	    add(tab, max, n, BOOT_EBDA_GPA, MIN(end, BOOT_LOW_END) - BOOT_EBDA_GPA,
		BOOT_E820_RESERVED, e) < 0)
		return -1;
	if (end <= BOOT_LOW_END)
		return 0;
	return add(tab, max, n, BOOT_LOW_END, end - BOOT_LOW_END, BOOT_E820_RAM, e);
}

int boot_e820_build(const struct mem_layout *l, struct boot_e820_entry *tab,
		    unsigned max, unsigned *n, struct err *e)
{
	*n = 0;
	for (unsigned i = 0; i < l->nr; i++) {
		const struct mem_region *r = &l->r[i];
		int rc = r->gpa == 0 ? add_low(r, tab, max, n, e)
				     : add(tab, max, n, r->gpa, r->size, BOOT_E820_RAM, e);

		if (rc < 0)
			return -1;
	}
	return 0;
}
