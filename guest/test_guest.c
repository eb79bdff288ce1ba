/* Host-side unit tests of the test kernel's pure parts, compiled from the
 * same sources the guest uses: the FDT reader (against libfdt-built trees
 * and vmswitch's own boot_dtb_build), the setup_data walk, the command
 * line, the formatter, and the PFN-tagged patterns of vmswitch/pattern.h. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <libfdt.h>

#include "guest.h"
#include "vmswitch/boot.h"

#include "../tests/unit/check_run.h"

#define DTB_SIZE 4096

static void *tree_begin(void *buf, uint32_t addr_cells, uint32_t size_cells)
{
	ck_assert_int_eq(fdt_create(buf, DTB_SIZE), 0);
	ck_assert_int_eq(fdt_finish_reservemap(buf), 0);
	ck_assert_int_eq(fdt_begin_node(buf, ""), 0);
	ck_assert_int_eq(fdt_property(buf, "compatible", "acme,board\0vmswitch,machine",
				      sizeof("acme,board\0vmswitch,machine")), 0);
	ck_assert_int_eq(fdt_property_u32(buf, "#address-cells", addr_cells), 0);
	ck_assert_int_eq(fdt_property_u32(buf, "#size-cells", size_cells), 0);
	return buf;
}

static void tree_end(void *buf)
{
	ck_assert_int_eq(fdt_end_node(buf), 0);
	ck_assert_int_eq(fdt_finish(buf), 0);
}

START_TEST(fdt_reads_hand_built_tree)
{
	static uint8_t buf[DTB_SIZE];
	uint32_t reg[3] = { cpu_to_fdt32(0), cpu_to_fdt32(0x100000), cpu_to_fdt32(0x7f00000) };
	struct fdt_info dt;

	tree_begin(buf, 2, 1);
	ck_assert_int_eq(fdt_begin_node(buf, "memory@100000"), 0);
	ck_assert_int_eq(fdt_property(buf, "reg", reg, sizeof(reg)), 0);
	ck_assert_int_eq(fdt_end_node(buf), 0);
	ck_assert_int_eq(fdt_begin_node(buf, "cpus"), 0);
	for (uint32_t id = 4; id < 7; id++) {
		char name[16];

		snprintf(name, sizeof(name), "cpu@%u", id);
		ck_assert_int_eq(fdt_begin_node(buf, name), 0);
		ck_assert_int_eq(fdt_property_u32(buf, "reg", id), 0);
		ck_assert_int_eq(fdt_end_node(buf), 0);
	}
	ck_assert_int_eq(fdt_end_node(buf), 0);
	ck_assert_int_eq(fdt_begin_node(buf, "vmswitch"), 0);
	ck_assert_int_eq(fdt_property_u32(buf, "hcall-port", 0x500), 0);
	ck_assert_int_eq(fdt_end_node(buf), 0);
	/* A decoy: hcall-port outside /vmswitch must be ignored. */
	ck_assert_int_eq(fdt_begin_node(buf, "other"), 0);
	ck_assert_int_eq(fdt_property_u32(buf, "hcall-port", 0x999), 0);
	ck_assert_int_eq(fdt_end_node(buf), 0);
	tree_end(buf);

	ck_assert_int_eq(fdt_parse(buf, fdt_totalsize(buf), &dt), 0);
	ck_assert(dt.valid && dt.vmswitch);
	ck_assert_uint_eq(dt.hcall_port, 0x500);
	ck_assert_uint_eq(dt.tsc_khz, 0);   /* none given */
	ck_assert_uint_eq(dt.ncpus, 3);
	ck_assert_uint_eq(dt.apic_id[0], 4);
	ck_assert_uint_eq(dt.apic_id[2], 6);
	ck_assert_uint_eq(dt.nmem, 1);
	ck_assert_uint_eq(dt.mem_base[0], 0x100000);
	ck_assert_uint_eq(dt.mem_size[0], 0x7f00000);
}
END_TEST

START_TEST(fdt_reads_vmswitch_dtb)
{
	static uint8_t buf[8192];
	struct boot_params_cfg cfg = { .cmdline = "pages=8", .ncpus = 2, .hcall_port = 0x500,
				       .mode = "passthrough", .tsc_khz = 2995200 };
	struct mem_layout l = { .nr = 2, .r = { { .gpa = 0, .size = 0xc0000000ULL },
						{ .gpa = 0x100000000ULL, .size = 0x40000000ULL } } };
	struct err e = {0};
	struct fdt_info dt;

	ck_assert_msg(boot_dtb_build(&cfg, &l, buf, sizeof(buf), &e) == 0, "%s", e.msg);
	ck_assert_int_eq(fdt_parse(buf, sizeof(buf), &dt), 0);
	ck_assert(dt.vmswitch);
	ck_assert_uint_eq(dt.hcall_port, 0x500);
	ck_assert_uint_eq(dt.tsc_khz, 2995200);
	ck_assert_uint_eq(dt.ncpus, 2);
	ck_assert_uint_eq(dt.apic_id[1], 1);
	ck_assert_uint_eq(dt.nmem, 2);
	ck_assert_uint_eq(dt.mem_base[1], 0x100000000ULL);
	ck_assert_uint_eq(dt.mem_size[1], 0x40000000ULL);
	ck_assert_uint_eq(dt.mem_size[0], 0xc0000000ULL);
}
END_TEST

START_TEST(fdt_rejects_malformed)
{
	static uint8_t buf[DTB_SIZE], bad[DTB_SIZE];
	struct fdt_info dt;
	uint32_t size;

	tree_begin(buf, 2, 2);
	tree_end(buf);
	size = fdt_totalsize(buf);
	ck_assert_int_eq(fdt_parse(buf, size, &dt), 0);
	ck_assert_int_eq(fdt_parse(buf, size - 1, &dt), -1);  /* truncated */
	memcpy(bad, buf, size);
	bad[0] ^= 1;                                           /* magic */
	ck_assert_int_eq(fdt_parse(bad, size, &dt), -1);
	ck_assert(!dt.valid);
	memcpy(bad, buf, size);
	((uint32_t *)bad)[3] = cpu_to_fdt32(size + 64);        /* strings outside */
	ck_assert_int_eq(fdt_parse(bad, size, &dt), -1);
	memcpy(bad, buf, size);                                /* bad token */
	((uint32_t *)(bad + fdt_off_dt_struct(bad)))[0] = cpu_to_fdt32(7);
	ck_assert_int_eq(fdt_parse(bad, size, &dt), -1);
}
END_TEST

/* setup_data chain in memory below 4 GiB, as a loader leaves it. */
START_TEST(setup_data_chain)
{
	uint8_t *low = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	struct boot_params *bp;
	struct setup_data *rng, *dtb;
	uint64_t size = 0;

	ck_assert(low != MAP_FAILED);
	bp = (struct boot_params *)low;
	rng = (struct setup_data *)(low + 4096);
	dtb = (struct setup_data *)(low + 8192);
	memset(low, 0, 3 * 4096);
	ck_assert_ptr_null(find_dtb(bp, &size));
	bp->hdr.setup_data = (uint64_t)(uintptr_t)rng;
	*rng = (struct setup_data){ .next = (uint64_t)(uintptr_t)dtb, .type = SETUP_RNG_SEED, .len = 32 };
	*dtb = (struct setup_data){ .next = 0, .type = SETUP_DTB, .len = 100 };
	ck_assert_ptr_eq(find_dtb(bp, &size), dtb->data);
	ck_assert_uint_eq(size, 100);
	rng->next = (uint64_t)(uintptr_t)rng;                  /* a loop ends too */
	ck_assert_ptr_null(find_dtb(bp, &size));
	munmap(low, 3 * 4096);
}
END_TEST

START_TEST(cmdline_params)
{
	struct params p;

	params_default(&p);
	ck_assert_uint_eq(p.pages, 1024);
	ck_assert_uint_eq(p.rounds, 20);
	ck_assert_int_eq(params_parse(&p, "console=ttyS0 pages=0x40  rounds=3 seed=99 "
				      "report=2 cpus=2 forever corrupt=1 stop=4 fault=2 chase=1 x"), 2);
	ck_assert_uint_eq(p.pages, 64);
	ck_assert_uint_eq(p.rounds, 3);
	ck_assert_uint_eq(p.seed, 99);
	ck_assert_uint_eq(p.report, 2);
	ck_assert(p.cpus == 2 && p.cpus_given);
	ck_assert(p.forever && p.corrupt && p.chase);
	ck_assert_uint_eq(p.stop, 4);
	ck_assert_uint_eq(p.fault, 2);
	params_default(&p);
	ck_assert_int_eq(params_parse(&p, "pages=12x pages= foreverx cpus=zz"), 4);
	ck_assert_uint_eq(p.pages, 1024);
	ck_assert(!p.forever && !p.cpus_given && !p.chase);
}
END_TEST

START_TEST(formatter)
{
	char buf[64];

	ck_assert_int_eq(format(buf, sizeof(buf), "a%lu b%d c%x d%016lx e%s f%c%%", 18446744073709551615UL,
				-42, 0xbeefu, 0x1234UL, "str", 'z'), 59);
	ck_assert_str_eq(buf, "a18446744073709551615 b-42 cbeef d0000000000001234 estr fz%");
	ck_assert_int_eq(format(buf, 8, "%s", "0123456789"), 7);
	ck_assert_str_eq(buf, "0123456");
	format(buf, sizeof(buf), "%5u|%3s|%p", 7u, "ab", (void *)0x10);
	ck_assert_str_eq(buf, "    7| ab|0x10");
}
END_TEST

START_TEST(pattern_detects_wrong_frame)
{
	static uint64_t page[PATTERN_WORDS], other[PATTERN_WORDS];
	struct pattern_bad bad = {0};
	uint64_t sum;

	pattern_fill(page, 5, 0x580, 3);
	ck_assert_uint_eq(pattern_check(page, 5, 0x580, 3, &sum, &bad), 0);
	ck_assert_uint_eq(sum, pattern_expected_page_sum(5, 0x580, 3));
	/* Another PFN's page (what a P2M mix-up shows) fails every word. */
	pattern_fill(other, 5, 0x581, 3);
	ck_assert_uint_eq(pattern_check(other, 5, 0x580, 3, &sum, &bad), PATTERN_WORDS);
	/* A stale page (a lost write) fails too. */
	ck_assert_uint_eq(pattern_check(page, 5, 0x580, 4, &sum, &bad), PATTERN_WORDS);
	/* One flipped bit: one mismatch, reported precisely; step rewrites. */
	page[300] ^= 1ULL << 40;
	ck_assert_uint_eq(pattern_step(page, 5, 0x580, 3, &bad), 1);
	ck_assert_uint_eq(bad.index, 300);
	ck_assert_uint_eq(bad.got ^ bad.want, 1ULL << 40);
	ck_assert_uint_eq(pattern_check(page, 5, 0x580, 4, &sum, &bad), 0);
	ck_assert_uint_eq(page[0] >> 48, PATTERN_MAGIC);
	ck_assert_uint_eq(page[0] & 0xffffffff, 0x580);
}
END_TEST

START_TEST(pattern_checksum_adds_up)
{
	uint64_t a = pattern_expected_checksum(9, 0x580, 100, 7);
	uint64_t b = pattern_expected_checksum(9, 0x580, 37, 7) +
		     pattern_expected_checksum(9, 0x580 + 37, 63, 7);

	ck_assert_uint_eq(a, b);
	ck_assert_uint_ne(a, pattern_expected_checksum(9, 0x580, 100, 8));
	ck_assert_uint_ne(a, pattern_expected_checksum(8, 0x580, 100, 7));
	ck_assert_uint_ne(a, pattern_expected_checksum(9, 0x581, 100, 7));
}
END_TEST

/* vmswitch's own loader accepts the image and finds what guest/layout.h
 * promises: 64-bit entry at pref_address + 0x200, everything below HIGH_PA. */
START_TEST(image_accepted_by_loader)
{
	const char *top = getenv("top_builddir");
	char path[4096];
	struct boot_image img;
	struct err e = {0};

	snprintf(path, sizeof(path), "%s/guest/vmswitch-guest", top ? top : ".");
	ck_assert_msg(boot_image_open(path, NULL, &img, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(img.setup_size, 5 * 512);
	ck_assert_uint_eq(img.hdr_len, 0x26c - 0x1f1);
	ck_assert_uint_eq(img.pref_address, KERNEL_PA);
	ck_assert(!img.relocatable);
	ck_assert_uint_le(img.pref_address + img.init_size, HIGH_PA);
	ck_assert_uint_eq(img.hdr.code32_start, KERNEL_PA);
	/* startup_64 begins with cli; cld */
	ck_assert_uint_eq(img.kernel[img.setup_size + ENTRY64_OFFSET], 0xfa);
	ck_assert_uint_eq(img.kernel[img.setup_size + ENTRY64_OFFSET + 1], 0xfc);
	boot_image_close(&img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guest");
	TCase *tc = tcase_create("pure");
	tcase_add_test(tc, fdt_reads_hand_built_tree);
	tcase_add_test(tc, fdt_reads_vmswitch_dtb);
	tcase_add_test(tc, fdt_rejects_malformed);
	tcase_add_test(tc, setup_data_chain);
	tcase_add_test(tc, cmdline_params);
	tcase_add_test(tc, formatter);
	tcase_add_test(tc, pattern_detects_wrong_frame);
	tcase_add_test(tc, pattern_checksum_adds_up);
	tcase_add_test(tc, image_accepted_by_loader);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
