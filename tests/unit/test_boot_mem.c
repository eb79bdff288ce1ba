/* boot/ against the real libmem: e820 == mem_layout() for every size, and
 * boot_image_place into a real struct mem, pass-through and with a
 * P2M whose pages are not host-contiguous. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libfdt.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#include "check_run.h"

#define PM_SIZE (48 * 1024)

/* A minimal bzImage (protocol 2.15, 64-bit entry, pref_address 1 MiB). */
static void write_kernel(const char *path)
{
	size_t setup = 5 * 512, size = setup + PM_SIZE;
	uint8_t *k = calloc(1, size);
	struct setup_header h = {
		.setup_sects = 4, .syssize = PM_SIZE / 16, .boot_flag = 0xAA55,
		.jump = 0x6aeb, .header = 0x53726448, .version = 0x020f,
		.initrd_addr_max = 0x7fffffff, .kernel_alignment = 0x200000,
		.relocatable_kernel = 1, .xloadflags = XLF_KERNEL_64,
		.cmdline_size = 2047, .pref_address = 0x100000, .init_size = 0x200000,
	};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_ptr_nonnull(k);
	ck_assert_int_ge(fd, 0);
	memcpy(k + 0x1f1, &h, sizeof(h));
	for (size_t i = 0; i < PM_SIZE; i++)
		k[setup + i] = (uint8_t)(i * 5 + 1);
	ck_assert_int_eq(write_full(fd, k, size), 0);
	close(fd);
	free(k);
}

/* Every e820 entry lies inside one layout region, none touches the hole,
 * and together they cover exactly the RAM. */
static void check_size(uint64_t ram)
{
	struct mem_layout l;
	struct boot_e820_entry tab[8];
	unsigned n, r = 0;
	uint64_t total = 0;
	struct err e = {0};

	ck_assert_msg(mem_layout(ram, &l, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(boot_e820_build(&l, tab, 8, &n, &e), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t end = tab[i].addr + tab[i].size;

		ck_assert(end <= MEM_HOLE_START || tab[i].addr >= MEM_HIGH_START);
		while (r < l.nr && tab[i].addr >= l.r[r].gpa + l.r[r].size)
			r++;
		ck_assert_uint_lt(r, l.nr);
		ck_assert_uint_ge(tab[i].addr, l.r[r].gpa);
		ck_assert_uint_le(end, l.r[r].gpa + l.r[r].size);
		total += tab[i].size;
	}
	ck_assert_uint_eq(total, ram);
	ck_assert_uint_eq(n, ram > MEM_HOLE_START ? 4u : 3u);
}

START_TEST(e820_matches_mem_layout)
{
	static const uint64_t edges[] = {
		3 * GiB - 2 * MiB, 3 * GiB, 3 * GiB + 2 * MiB, 4 * GiB, 64 * GiB,
	};

	for (uint64_t ram = 16 * MiB; ram <= 64 * GiB; ram = (ram * 3 / 2) & ~(HUGE_SIZE - 1))
		check_size(ram);
	for (size_t i = 0; i < ARRAY_SIZE(edges); i++)
		check_size(edges[i]);
}
END_TEST

static void place_into_mem(bool remapped)
{
	char dir[] = "/tmp/test_boot_mem.XXXXXX", kpath[64], ipath[64], cmd[96];
	struct mem_config mc = {.ram_size = 64 * MiB, .spare_size = 4 * MiB,
				.backmap = BACKMAP_LIST, .hugepages = HUGEPAGES_OFF};
	struct mem_ops ops = {0};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 4,
				      .hcall_port = 0x500, .mode = "passthrough"};
	struct boot_image img;
	struct boot_entry ent;
	struct boot_params *bp;
	struct setup_data *sd;
	struct mem *m;
	struct err e = {0};
	uint8_t initrd[20000];
	uint64_t initrd_gpa, spare = mc.ram_size / PAGE_SIZE;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(kpath, sizeof(kpath), "%s/bzImage", dir);
	snprintf(ipath, sizeof(ipath), "%s/initrd", dir);
	write_kernel(kpath);
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ (i >> 8));
	fd = open(ipath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_eq(write_full(fd, initrd, sizeof(initrd)), 0);
	close(fd);

	ck_assert_msg(mem_create(&mc, &ops, &m, &e) == 0, "%s", e.msg);
	if (remapped) {
		ck_assert_msg(mem_virtualize(m, 0, 0, &e) == 0, "%s", e.msg);
		/* Move the kernel's 12 pages and the initrd's last 5 pages to
		 * spare frames in reverse order: placement goes through the
		 * window, so the bytes must land in those frames. */

		for (uint64_t i = 0; i < 12; i++)
			ck_assert_msg(mem_migrate(m, 0x100 + i, spare + 11 - i, &e) == 0,
				      "%s", e.msg);
		for (uint64_t i = 0; i < 5; i++)
			ck_assert_msg(mem_migrate(m, 0x3ffb + i, spare + 20 - i * 2, &e) == 0,
				      "%s", e.msg);
	}
	ck_assert_msg(boot_image_open(kpath, ipath, &img, &e) == 0, "%s", e.msg);
	ck_assert_msg(boot_image_check(&img, mem_get_layout(m), &e) == 0, "%s", e.msg);
	ck_assert_msg(boot_image_place(&img, &cfg, m, &ent, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ent.rip, 0x100200);

	/* Read back byte by byte through mem_gpa_hva, which follows P2M. */
	for (size_t i = 0; i < PM_SIZE; i++)
		ck_assert_uint_eq(*(uint8_t *)mem_gpa_hva(m, 0x100000 + i), (uint8_t)(i * 5 + 1));
	bp = mem_gpa_hva(m, BOOT_PARAMS_GPA); /* one page: contiguous */
	ck_assert_uint_eq(bp->hdr.type_of_loader, 0xff);
	ck_assert_uint_eq(bp->e820_entries, 3);
	ck_assert_str_eq(mem_gpa_hva(m, bp->hdr.cmd_line_ptr), "console=ttyS0");
	initrd_gpa = bp->hdr.ramdisk_image;
	ck_assert_uint_eq(initrd_gpa, ALIGN_DOWN(64 * MiB - sizeof(initrd), PAGE_SIZE));
	for (size_t i = 0; i < sizeof(initrd); i++)
		ck_assert_uint_eq(*(uint8_t *)mem_gpa_hva(m, initrd_gpa + i), initrd[i]);
	sd = mem_gpa_hva(m, bp->hdr.setup_data);
	ck_assert_uint_eq(sd->type, SETUP_DTB);
	ck_assert_int_eq(fdt_check_header(sd->data), 0); /* the window is contiguous */
	ck_assert_int_ge(fdt_path_offset(sd->data, "/cpus/cpu@3"), 0);
	if (remapped) { /* in the machine frames the P2M names */
		for (uint64_t i = 0; i < 12; i++)
			ck_assert_uint_eq(*(uint8_t *)mem_mfn_hva(m, spare + 11 - i),
					  (uint8_t)(i * PAGE_SIZE * 5 + 1));
		ck_assert_mem_eq(mem_mfn_hva(m, spare + 20 - 4 * 2),
				 initrd + (0x3fff000 - initrd_gpa), 20000 - (0x3fff000 - initrd_gpa));
	}
	boot_image_close(&img);
	mem_destroy(m);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(place_passthrough)
{
	place_into_mem(false);
}
END_TEST

START_TEST(place_remapped)
{
	place_into_mem(true);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("boot_mem");
	TCase *t = tcase_create("mem");
	tcase_add_test(t, e820_matches_mem_layout);
	tcase_add_test(t, place_passthrough);
	tcase_add_test(t, place_remapped);
	suite_add_tcase(s, t);
	return check_run(s, false);
}
