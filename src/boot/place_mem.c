/* boot_image_place on a struct mem: the guest view is mem's layout and
 * mem_gpa_hva (which follows P2M). Kept apart so that users of the pure
 * pieces do not pull in libmem. */
#include "vmswitch/boot.h"

static void *mem_view(void *ctx, uint64_t gpa)
{
	return mem_gpa_hva(ctx, gpa);
}

int boot_image_place(const struct boot_image *img,
		     const struct boot_params_cfg *cfg, struct mem *m,
		     struct boot_entry *out, struct err *e)
{
	struct boot_guest g = {.layout = mem_get_layout(m), .gpa_hva = mem_view, .ctx = m};

	return boot_image_place_guest(img, cfg, &g, out, e);
}
