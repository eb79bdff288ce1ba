/* boot/: bzImage validation from crafted files, e820, page tables, MP table,
 * DTB, and placement into a buffer standing in for guest RAM. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libfdt.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#include "check_run.h"

#define SETUP_SECTS 4
#define PM_SIZE     (64 * 1024)
#define IMG_SIZE    ((SETUP_SECTS + 1) * 512 + PM_SIZE)

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_boot.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *tmp_path(const char *name)
{
	static char path[8][128];
	static int which;

	which = (which + 1) % 8;
	snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
	return path[which];
}

/* A minimal valid bzImage: boot protocol 2.15, 64-bit entry, relocatable,
 * pref_address 1 MiB, and a protected-mode part holding a byte pattern. */
static uint8_t *make_image(struct setup_header *h)
{
	uint8_t *k = calloc(1, IMG_SIZE);

	ck_assert_ptr_nonnull(k);
	*h = (struct setup_header){
		.setup_sects = SETUP_SECTS, .syssize = PM_SIZE / 16,
		.boot_flag = 0xAA55, .jump = 0x6aeb, /* jmp to 0x26c: end of header */
		.header = 0x53726448, .version = 0x020f, .loadflags = LOADED_HIGH,
		.initrd_addr_max = 0x7fffffff, .kernel_alignment = 0x200000,
		.relocatable_kernel = 1, .min_alignment = 21,
		.xloadflags = XLF_KERNEL_64, .cmdline_size = 2047,
		.pref_address = 0x100000, .init_size = 0x200000,
	};
	for (size_t i = 0; i < PM_SIZE; i++)
		k[(SETUP_SECTS + 1) * 512 + i] = (uint8_t)(i * 7 + 3);
	return k;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_full(fd, data, len), 0);
	ck_assert_int_eq(close(fd), 0);
}

/* Write the image with header h, truncated to len bytes. */
static const char *write_image(const char *name, const struct setup_header *h, size_t len)
{
	struct setup_header tmp;
	uint8_t *k = make_image(&tmp);
	const char *path = tmp_path(name);

	memcpy(k + 0x1f1, h, sizeof(*h));
	write_file(path, k, len);
	free(k);
	return path;
}

static const char *good_kernel(void)
{
	struct setup_header h;
	uint8_t *k = make_image(&h);

	free(k);
	return write_image("bzImage", &h, IMG_SIZE);
}

static void expect_open_error(const char *kernel, const char *initrd,
			      const char *needle, const char *name_in_msg)
{
	struct boot_image img;
	struct err e = {0};

	ck_assert_int_eq(boot_image_open(kernel, initrd, &img, &e), -1);
	ck_assert_msg(strstr(e.msg, needle), "message \"%s\" lacks \"%s\"", e.msg, needle);
	ck_assert_msg(strstr(e.msg, name_in_msg), "message \"%s\" does not name %s",
		      e.msg, name_in_msg);
	ck_assert_ptr_null(strchr(e.msg, '\n'));
}

/* Fill a layout as mem_layout() documents it: RAM below 3 GiB, the rest
 * from 4 GiB. (test_boot_mem checks the real mem_layout.) */
static void fake_layout(uint64_t ram, struct mem_layout *l)
{
	*l = (struct mem_layout){.nr = 1};
	l->r[0].size = MIN(ram, MEM_HOLE_START);
	if (ram > MEM_HOLE_START) {
		l->nr = 2;
		l->r[1].gpa = MEM_HIGH_START;
		l->r[1].size = ram - MEM_HOLE_START;
	}
}

/* ---- validation ---- */

START_TEST(valid_image_opens)
{
	struct boot_image img;
	struct err e = {0};
	struct mem_layout l;

	ck_assert_msg(boot_image_open(good_kernel(), NULL, &img, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(img.setup_size, (SETUP_SECTS + 1) * 512);
	ck_assert_uint_eq(img.kernel_size, IMG_SIZE);
	ck_assert_uint_eq(img.pref_address, 0x100000);
	ck_assert_uint_eq(img.init_size, 0x200000);
	ck_assert_uint_eq(img.hdr_len, 0x26c - 0x1f1);
	ck_assert(img.relocatable);
	ck_assert_int_eq(img.initrd_fd, -1);
	fake_layout(16 * MiB, &l);
	ck_assert_msg(boot_image_check(&img, &l, &e) == 0, "%s", e.msg);
	boot_image_close(&img);
}
END_TEST

START_TEST(setup_sects_zero_means_four)
{
	struct setup_header h;
	struct boot_image img;
	struct err e = {0};

	free(make_image(&h));
	h.setup_sects = 0;
	ck_assert_msg(boot_image_open(write_image("zero", &h, IMG_SIZE), NULL, &img, &e) == 0,
		      "%s", e.msg);
	ck_assert_uint_eq(img.setup_size, 5 * 512);
	boot_image_close(&img);
}
END_TEST

START_TEST(missing_and_unreadable_files)
{
	const char *dir;

	expect_open_error(tmp_path("nonexistent"), NULL, "No such file", "nonexistent");
	dir = tmp_path("adir");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	expect_open_error(dir, NULL, "not a regular file", "adir");
	expect_open_error(good_kernel(), tmp_path("noinitrd"), "No such file", "noinitrd");
	if (geteuid() != 0) { /* root reads anything */
		const char *p = good_kernel();

		ck_assert_int_eq(chmod(p, 0), 0);
		expect_open_error(p, NULL, "Permission denied", "bzImage");
	}
}
END_TEST

START_TEST(bad_headers)
{
	struct setup_header good, h;

	free(make_image(&good));
	h = good;
	h.boot_flag = 0x1234;
	expect_open_error(write_image("flag", &h, IMG_SIZE), NULL, "boot_flag", "flag");
	h = good;
	h.header = 0x12345678;
	expect_open_error(write_image("magic", &h, IMG_SIZE), NULL, "HdrS", "magic");
	h = good;
	h.version = 0x0205;
	expect_open_error(write_image("old", &h, IMG_SIZE), NULL, "2.05 is too old", "old");
	h = good;
	h.version = 0x020b; /* no xloadflags yet */
	expect_open_error(write_image("v211", &h, IMG_SIZE), NULL, "XLF_KERNEL_64", "v211");
	h = good;
	h.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
	expect_open_error(write_image("no64", &h, IMG_SIZE), NULL, "XLF_KERNEL_64", "no64");
	h = good;
	h.setup_sects = 200;
	expect_open_error(write_image("sects", &h, IMG_SIZE), NULL,
			  "setup_sects 200 extends past the end", "sects");
	h = good;
	h.kernel_alignment = 0x3000;
	expect_open_error(write_image("align", &h, IMG_SIZE), NULL, "kernel_alignment", "align");
	h = good;
	h.pref_address = 0x8000;
	expect_open_error(write_image("low", &h, IMG_SIZE), NULL, "below 1 MiB", "low");
}
END_TEST

START_TEST(truncated_images)
{
	struct setup_header h;

	free(make_image(&h));
	expect_open_error(write_image("short", &h, IMG_SIZE - 100), NULL, "truncated", "short");
	expect_open_error(write_image("tiny", &h, 300), NULL, "truncated", "tiny");
	expect_open_error(write_image("empty", &h, 0), NULL, "truncated", "empty");
	h.syssize = 0x10; /* only the setup code and a few bytes of kernel */
	expect_open_error(write_image("noentry", &h, (SETUP_SECTS + 1) * 512 + 0x100),
			  NULL, "0x200", "noentry");
}
END_TEST

START_TEST(initrd_errors)
{
	const char *k = good_kernel();
	const char *p = tmp_path("initrd0");
	int fd;

	write_file(p, "", 0);
	expect_open_error(k, p, "empty", "initrd0");
	/* 3 GiB sparse file: larger than initrd_addr_max allows at all. */
	p = tmp_path("initrd_huge");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 3 * GiB), 0);
	close(fd);
	expect_open_error(k, p, "does not fit below", "initrd_huge");
}
END_TEST

START_TEST(too_large_for_ram)
{
	struct setup_header h;
	struct boot_image img;
	struct err e = {0};
	struct mem_layout l;
	const char *initrd = tmp_path("initrd_14m");
	int fd;

	free(make_image(&h));
	h.init_size = 40 * MiB;
	ck_assert_int_eq(boot_image_open(write_image("fat", &h, IMG_SIZE), NULL, &img, &e), 0);
	fake_layout(32 * MiB, &l);
	ck_assert_int_eq(boot_image_check(&img, &l, &e), -1);
	ck_assert_msg(strstr(e.msg, "fat") && strstr(e.msg, "init_size"), "%s", e.msg);
	fake_layout(64 * MiB, &l);
	ck_assert_msg(boot_image_check(&img, &l, &e) == 0, "%s", e.msg);
	boot_image_close(&img);

	/* An initrd that opens but does not fit next to the kernel in 16 MiB. */
	fd = open(initrd, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 14 * MiB), 0);
	close(fd);
	ck_assert_int_eq(boot_image_open(good_kernel(), initrd, &img, &e), 0);
	fake_layout(16 * MiB, &l);
	ck_assert_int_eq(boot_image_check(&img, &l, &e), -1);
	ck_assert_msg(strstr(e.msg, "initrd_14m") && strstr(e.msg, "does not fit"), "%s", e.msg);
	fake_layout(32 * MiB, &l);
	ck_assert_msg(boot_image_check(&img, &l, &e) == 0, "%s", e.msg);
	boot_image_close(&img);
}
END_TEST

START_TEST(relocation)
{
	struct setup_header h;
	struct boot_image img;
	struct boot_plan p;
	struct err e = {0};
	struct mem_layout l;

	free(make_image(&h));
	h.pref_address = 0x1000000; /* 16 MiB, like a distribution kernel */
	h.init_size = 8 * MiB;
	fake_layout(16 * MiB, &l);
	ck_assert_int_eq(boot_image_open(write_image("reloc", &h, IMG_SIZE), NULL, &img, &e), 0);
	ck_assert_msg(boot_image_plan(&img, &l, &p, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(p.kernel_gpa, 0x200000); /* first 2 MiB-aligned spot >= 1 MiB */
	fake_layout(64 * MiB, &l);
	ck_assert_int_eq(boot_image_plan(&img, &l, &p, &e), 0);
	ck_assert_uint_eq(p.kernel_gpa, 0x1000000); /* pref_address when it fits */
	boot_image_close(&img);

	h.relocatable_kernel = 0;
	fake_layout(16 * MiB, &l);
	ck_assert_int_eq(boot_image_open(write_image("fixed", &h, IMG_SIZE), NULL, &img, &e), 0);
	ck_assert_int_eq(boot_image_check(&img, &l, &e), -1);
	ck_assert_msg(strstr(e.msg, "fixed") && strstr(e.msg, "0x1000000"), "%s", e.msg);
	boot_image_close(&img);
}
END_TEST

START_TEST(params_check)
{
	struct boot_image img;
	struct err e = {0};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 2};
	char *long_line = malloc(3000);

	ck_assert_int_eq(boot_image_open(good_kernel(), NULL, &img, &e), 0);
	ck_assert_int_eq(boot_params_check(&img, &cfg, &e), 0);
	memset(long_line, 'x', 2999);
	long_line[2999] = 0;
	cfg.cmdline = long_line;
	ck_assert_int_eq(boot_params_check(&img, &cfg, &e), -1);
	ck_assert_msg(strstr(e.msg, "--append") && strstr(e.msg, "2047"), "%s", e.msg);
	long_line[2047] = 0;
	ck_assert_int_eq(boot_params_check(&img, &cfg, &e), 0);
	cfg.ncpus = 0;
	ck_assert_int_eq(boot_params_check(&img, &cfg, &e), -1);
	ck_assert_msg(strstr(e.msg, "--cpus"), "%s", e.msg);
	cfg.ncpus = BOOT_MAX_CPUS + 1;
	ck_assert_int_eq(boot_params_check(&img, &cfg, &e), -1);
	free(long_line);
	boot_image_close(&img);
}
END_TEST

/* ---- e820 ---- */

/* Every RAM byte of the layout is in exactly one entry, every entry is in
 * the layout, nothing touches the hole, entries are sorted. */
static void check_e820(const struct mem_layout *l)
{
	struct boot_e820_entry tab[16];
	unsigned n;
	struct err e = {0};
	uint64_t covered = 0, ram = 0, prev_end = 0;

	ck_assert_int_eq(boot_e820_build(l, tab, 16, &n, &e), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = tab[i].addr, end = tab[i].addr + tab[i].size;
		bool inside = false;

		ck_assert_uint_ge(a, prev_end);
		ck_assert_uint_gt(tab[i].size, 0);
		ck_assert(end <= MEM_HOLE_START || a >= MEM_HIGH_START);
		for (unsigned r = 0; r < l->nr; r++)
			inside |= a >= l->r[r].gpa && end <= l->r[r].gpa + l->r[r].size;
		ck_assert(inside);
		if (tab[i].type == BOOT_E820_RESERVED) {
			ck_assert_uint_eq(a, 0x9fc00);
			ck_assert_uint_eq(end, 0x100000);
		} else {
			ck_assert_int_eq(tab[i].type, BOOT_E820_RAM);
			ram += tab[i].size;
		}
		covered += tab[i].size;
		prev_end = end;
	}
	for (unsigned r = 0; r < l->nr; r++)
		covered -= l->r[r].size;
	ck_assert_uint_eq(covered, 0);
	ck_assert_uint_eq(ram + (0x100000 - 0x9fc00), l->r[0].size + (l->nr > 1 ? l->r[1].size : 0));
	ck_assert_uint_eq(n, l->nr == 1 ? 3u : 4u);
}

START_TEST(e820_sizes)
{
	static const uint64_t sizes[] = {
		16 * MiB, 18 * MiB, 64 * MiB, 1 * GiB, 3 * GiB - 2 * MiB, 3 * GiB,
		3 * GiB + 2 * MiB, 4 * GiB, 5 * GiB, 8 * GiB, 33 * GiB, 64 * GiB,
	};

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct mem_layout l;

		fake_layout(sizes[i], &l);
		check_e820(&l);
	}
}
END_TEST

START_TEST(e820_too_small_table)
{
	struct mem_layout l;
	struct boot_e820_entry tab[2];
	unsigned n;
	struct err e = {0};

	fake_layout(8 * GiB, &l);
	ck_assert_int_eq(boot_e820_build(&l, tab, 2, &n, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "e820"));
}
END_TEST

/* ---- page tables and GDT ---- */

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Walk the built tables as the CPU would (tables live at their GPAs). */
static bool walk(const uint8_t *pt, uint64_t va, uint64_t *pa)
{
	uint64_t e4 = get64(pt + ((va >> 39) & 511) * 8), e3, e2;

	if (!(e4 & 1))
		return false;
	e3 = get64(pt + ((e4 & ~0xfffULL) - BOOT_PML4_GPA) + ((va >> 30) & 511) * 8);
	if (!(e3 & 1) || (e3 & 0x80))
		return false;
	e2 = get64(pt + ((e3 & ~0xfffULL) - BOOT_PML4_GPA) + ((va >> 21) & 511) * 8);
	if (!(e2 & 1) || !(e2 & 0x80) || !(e2 & 2))
		return false;
	*pa = (e2 & ~(HUGE_SIZE - 1) & ((1ULL << 52) - 1)) | (va & (HUGE_SIZE - 1));
	return true;
}

START_TEST(page_tables_identity)
{
	static uint8_t pt[BOOT_PT_BYTES];
	static const uint64_t probes[] = {
		0, 0x10000, 0x100200, 0x1234567, 0x7fffffff, 0xbfffffff,
		0xc0000000, 0xfee00000, 0xffffffff,
	};
	uint64_t gdt[BOOT_GDT_ENTRIES], pa;

	boot_pagetables_build(pt);
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		ck_assert(walk(pt, probes[i], &pa));
		ck_assert_uint_eq(pa, probes[i]);
	}
	ck_assert(!walk(pt, 4 * GiB, &pa));
	ck_assert_uint_eq(BOOT_PDPT_GPA, BOOT_PML4_GPA + 0x1000);
	ck_assert(BOOT_PML4_GPA + BOOT_PT_BYTES <= BOOT_PARAMS_GPA);
	boot_gdt_build(gdt);
	ck_assert_uint_eq(gdt[0], 0);
	ck_assert_uint_eq(gdt[BOOT_CS / 8] >> 53 & 1, 1); /* L: 64-bit code */
	ck_assert_uint_eq(gdt[BOOT_CS / 8] >> 40 & 0x9f, 0x9b);
	ck_assert_uint_eq(gdt[BOOT_DS / 8] >> 40 & 0x9f, 0x93);
}
END_TEST

/* ---- MP table ---- */

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

START_TEST(mptable)
{
	static uint8_t table[BOOT_MPC_MAX];
	static const unsigned counts[] = {1, 2, 4, 64, BOOT_MAX_CPUS};
	uint8_t fp[16];
	size_t len;
	struct err e = {0};

	for (size_t c = 0; c < ARRAY_SIZE(counts); c++) {
		unsigned n = counts[c], ioints = 0, lints = 0;
		uint32_t physptr;
		uint16_t count, length;
		const uint8_t *p;

		ck_assert_int_eq(boot_mptable_build(n, BOOT_MPC_GPA, table, sizeof(table),
						    &len, fp, &e), 0);
		ck_assert_mem_eq(fp, "_MP_", 4);
		ck_assert_uint_eq(sum(fp, 16), 0);
		memcpy(&physptr, fp + 4, 4);
		ck_assert_uint_eq(physptr, BOOT_MPC_GPA);
		ck_assert_uint_eq(fp[8], 1);
		ck_assert_uint_eq(fp[9], 4);
		ck_assert_mem_eq(table, "PCMP", 4);
		memcpy(&length, table + 4, 2);
		memcpy(&count, table + 34, 2);
		ck_assert_uint_eq(length, len);
		ck_assert_uint_eq(sum(table, len), 0);
		p = table + 44;
		for (unsigned i = 0; i < count; i++) {
			switch (p[0]) {
			case 0:
				ck_assert_uint_eq(p[1], i); /* APIC ids 0..n-1, in order */
				ck_assert_uint_eq(p[3] & 1, 1);
				ck_assert_uint_eq(p[3] & 2, i == 0 ? 2 : 0);
				p += 20;
				break;
			case 1:
				ck_assert_mem_eq(p + 2, "ISA   ", 6);
				p += 8;
				break;
			case 2:
				ck_assert_uint_eq(p[1], n);
				ck_assert_uint_eq(p[4] | p[5] << 8 | p[6] << 16 | (uint32_t)p[7] << 24,
						  0xfec00000u);
				p += 8;
				break;
			case 3:
				ck_assert_uint_eq(p[5], ioints);     /* IRQ */
				ck_assert_uint_eq(p[6], n);          /* IOAPIC id */
				ck_assert_uint_eq(p[7], ioints);     /* pin */
				ioints++;
				p += 8;
				break;
			case 4:
				lints++;
				p += 8;
				break;
			default:
				ck_abort_msg("bad MP entry type %u", p[0]);
			}
		}
		ck_assert_uint_eq((size_t)(p - table), len);
		ck_assert_uint_eq(ioints, 16);
		ck_assert_uint_eq(lints, 2);
		ck_assert_uint_le(len, BOOT_MPC_MAX);
	}
	ck_assert_int_eq(boot_mptable_build(0, BOOT_MPC_GPA, table, sizeof(table), &len, fp, &e), -1);
	ck_assert_int_eq(boot_mptable_build(4, BOOT_MPC_GPA, table, 100, &len, fp, &e), -1);
}
END_TEST

/* ---- DTB ---- */

static uint64_t be64_at(const void *p)
{
	return fdt64_ld((const fdt64_t *)p); /* DTB cells are only 4-byte aligned */
}

static void check_dtb(const void *fdt, const struct mem_layout *l, unsigned ncpus,
		      const char *mode, uint32_t port)
{
	const void *prop;
	int off, len;
	char path[64];

	ck_assert_int_eq(fdt_check_header(fdt), 0);
	off = fdt_path_offset(fdt, "/");
	ck_assert_int_ge(off, 0);
	ck_assert_int_eq(fdt_node_check_compatible(fdt, off, "vmswitch,machine"), 0);
	prop = fdt_getprop(fdt, off, "#address-cells", &len);
	ck_assert_ptr_nonnull(prop);
	ck_assert_uint_eq(fdt32_to_cpu(*(const fdt32_t *)prop), 2);
	for (unsigned i = 0; i < l->nr; i++) {
		snprintf(path, sizeof(path), "/memory@%llx", (unsigned long long)l->r[i].gpa);
		off = fdt_path_offset(fdt, path);
		ck_assert_msg(off >= 0, "%s missing", path);
		ck_assert_str_eq(fdt_getprop(fdt, off, "device_type", NULL), "memory");
		prop = fdt_getprop(fdt, off, "reg", &len);
		ck_assert_int_eq(len, 16);
		ck_assert_uint_eq(be64_at(prop), l->r[i].gpa);
		ck_assert_uint_eq(be64_at((const uint8_t *)prop + 8), l->r[i].size);
	}
	snprintf(path, sizeof(path), "/memory@%x", 0x12345);
	ck_assert_int_lt(fdt_path_offset(fdt, path), 0);
	for (unsigned i = 0; i < ncpus + 1; i++) {
		snprintf(path, sizeof(path), "/cpus/cpu@%x", i);
		off = fdt_path_offset(fdt, path);
		if (i == ncpus) {
			ck_assert_int_lt(off, 0);
			break;
		}
		ck_assert_msg(off >= 0, "%s missing", path);
		prop = fdt_getprop(fdt, off, "reg", &len);
		ck_assert_int_eq(len, 4);
		ck_assert_uint_eq(fdt32_to_cpu(*(const fdt32_t *)prop), i);
	}
	off = fdt_path_offset(fdt, "/serial@3f8");
	ck_assert_int_ge(off, 0);
	ck_assert_int_eq(fdt_node_check_compatible(fdt, off, "ns16550a"), 0);
	prop = fdt_getprop(fdt, off, "reg", &len);
	ck_assert_int_eq(len, 16);
	ck_assert_uint_eq(be64_at(prop), 0x3f8);
	prop = fdt_getprop(fdt, off, "interrupts", &len);
	ck_assert_uint_eq(fdt32_to_cpu(*(const fdt32_t *)prop), 4);
	off = fdt_path_offset(fdt, "/vmswitch");
	ck_assert_int_ge(off, 0);
	prop = fdt_getprop(fdt, off, "hcall-port", &len);
	ck_assert_int_eq(len, 4);
	ck_assert_uint_eq(fdt32_to_cpu(*(const fdt32_t *)prop), port);
	ck_assert_str_eq(fdt_getprop(fdt, off, "mode", NULL), mode);
	ck_assert_ptr_null(fdt_getprop(fdt, off, "tsc-khz", NULL));   /* not given: left out */
}

START_TEST(dtb_roundtrip)
{
	static uint8_t buf[BOOT_DTB_MAX];
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 3,
				      .hcall_port = 0x500, .mode = "passthrough"};
	struct mem_layout l;
	struct err e = {0};
	int off;

	fake_layout(6 * GiB, &l);
	ck_assert_msg(boot_dtb_build(&cfg, &l, buf, sizeof(buf), &e) == 0, "%s", e.msg);
	check_dtb(buf, &l, 3, "passthrough", 0x500);
	off = fdt_path_offset(buf, "/chosen");
	ck_assert_str_eq(fdt_getprop(buf, off, "bootargs", NULL), "console=ttyS0");

	cfg.tsc_khz = 2995200;
	ck_assert_msg(boot_dtb_build(&cfg, &l, buf, sizeof(buf), &e) == 0, "%s", e.msg);
	const fdt32_t *khz = fdt_getprop(buf, fdt_path_offset(buf, "/vmswitch"), "tsc-khz", NULL);
	ck_assert_ptr_nonnull(khz);
	ck_assert_uint_eq(fdt32_to_cpu(*khz), 2995200);
	cfg.tsc_khz = 0;

	cfg.ncpus = BOOT_MAX_CPUS;
	cfg.mode = "virtualized";
	fake_layout(16 * MiB, &l);
	ck_assert_msg(boot_dtb_build(&cfg, &l, buf, sizeof(buf), &e) == 0, "%s", e.msg);
	check_dtb(buf, &l, BOOT_MAX_CPUS, "virtualized", 0x500);

	ck_assert_int_eq(boot_dtb_build(&cfg, &l, buf, 256, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "device tree"));
}
END_TEST

/* ---- placement ---- */

/* Guest RAM in a heap buffer. With `scatter`, guest pages map to host pages
 * in a shuffled order, as under a virtualized P2M. */
struct fake_ram {
	uint8_t *buf;
	uint64_t size;
	bool scatter;
	struct mem_layout l;
};

static uint64_t scatter_page(const struct fake_ram *r, uint64_t pfn)
{
	uint64_t n = r->size / PAGE_SIZE;

	return (pfn * 7919) % n; /* 7919 is prime, n a power of two: a permutation */
}

static void *fake_hva(void *ctx, uint64_t gpa)
{
	struct fake_ram *r = ctx;

	if (gpa >= r->size)
		return NULL;
	if (!r->scatter)
		return r->buf + gpa;
	return r->buf + scatter_page(r, gpa / PAGE_SIZE) * PAGE_SIZE + gpa % PAGE_SIZE;
}

static void fake_read(struct fake_ram *r, uint64_t gpa, void *out, size_t len)
{
	uint8_t *o = out;

	for (size_t i = 0; i < len; i++)
		o[i] = *(uint8_t *)fake_hva(r, gpa + i);
}

static void place_and_check(bool scatter)
{
	struct fake_ram ram = {.size = 64 * MiB, .scatter = scatter};
	struct boot_guest g = {.layout = &ram.l, .gpa_hva = fake_hva, .ctx = &ram};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0 root=/dev/ram0",
				      .ncpus = 2, .hcall_port = 0x500, .mode = "passthrough"};
	struct boot_image img;
	struct boot_entry ent;
	struct boot_params bp;
	struct setup_data sd;
	struct err e = {0};
	uint8_t *initrd = malloc(100000), *back = malloc(100000), tramp[4096], fp[16];
	char cmd[64];
	uint64_t initrd_gpa, gdt[BOOT_GDT_ENTRIES];
	const char *ipath = tmp_path("initrd");
	void *dtb;

	for (size_t i = 0; i < 100000; i++)
		initrd[i] = (uint8_t)(i * 13 + 1);
	write_file(ipath, initrd, 100000);
	fake_layout(ram.size, &ram.l);
	ram.buf = malloc(ram.size);
	memset(ram.buf, 0xa5, ram.size);
	ck_assert_int_eq(boot_image_open(good_kernel(), ipath, &img, &e), 0);
	ck_assert_msg(boot_image_place_guest(&img, &cfg, &g, &ent, &e) == 0, "%s", e.msg);

	/* Entry state of the 64-bit boot protocol. */
	ck_assert_uint_eq(ent.rip, 0x100200);
	ck_assert_uint_eq(ent.rsi, BOOT_PARAMS_GPA);
	ck_assert_uint_eq(ent.cr3, BOOT_PML4_GPA);
	ck_assert_uint_eq(ent.cr0 & 0x80000001, 0x80000001);
	ck_assert_uint_eq(ent.cr4 & 0x20, 0x20);
	ck_assert_uint_eq(ent.efer & 0x500, 0x500);
	ck_assert_uint_eq(ent.cs, 0x10);
	ck_assert_uint_eq(ent.ds, 0x18);
	ck_assert_uint_eq(ent.gdt_base, BOOT_GDT_GPA);
	ck_assert_uint_eq(ent.gdt_limit, 31);
	ck_assert_uint_le(ent.rsp, BOOT_TRAMPOLINE);
	fake_read(&ram, BOOT_GDT_GPA, gdt, sizeof(gdt));
	ck_assert_uint_eq(gdt[2], BOOT_GDT_CODE64);
	ck_assert_uint_eq(gdt[3], BOOT_GDT_DATA);

	/* Kernel bytes at the load address; the trampoline page untouched. */
	for (size_t i = 0; i < PM_SIZE; i += 997) {
		uint8_t b;

		fake_read(&ram, 0x100000 + i, &b, 1);
		ck_assert_uint_eq(b, (uint8_t)(i * 7 + 3));
	}
	fake_read(&ram, BOOT_TRAMPOLINE, tramp, sizeof(tramp));
	for (size_t i = 0; i < sizeof(tramp); i++)
		ck_assert_uint_eq(tramp[i], 0xa5);

	/* The zero page. */
	fake_read(&ram, BOOT_PARAMS_GPA, &bp, sizeof(bp));
	ck_assert_uint_eq(bp.hdr.boot_flag, 0xAA55);
	ck_assert_uint_eq(bp.hdr.header, 0x53726448);
	ck_assert_uint_eq(bp.hdr.version, 0x020f);
	ck_assert_uint_eq(bp.hdr.type_of_loader, 0xff);
	ck_assert_uint_eq(bp.hdr.pref_address, 0x100000);
	ck_assert_uint_eq(bp.sentinel, 0);
	ck_assert_uint_eq(bp.hdr.cmd_line_ptr | (uint64_t)bp.ext_cmd_line_ptr << 32,
			  BOOT_CMDLINE_GPA);
	fake_read(&ram, BOOT_CMDLINE_GPA, cmd, strlen(cfg.cmdline) + 1);
	ck_assert_str_eq(cmd, cfg.cmdline);
	ck_assert_uint_eq(bp.e820_entries, 3);
	ck_assert_uint_eq(bp.e820_table[2].addr + bp.e820_table[2].size, 64 * MiB);

	/* initrd: highest page-aligned spot below min(initrd_addr_max, RAM). */
	initrd_gpa = bp.hdr.ramdisk_image | (uint64_t)bp.ext_ramdisk_image << 32;
	ck_assert_uint_eq(initrd_gpa, ALIGN_DOWN(64 * MiB - 100000, PAGE_SIZE));
	ck_assert_uint_eq(bp.hdr.ramdisk_size, 100000);
	fake_read(&ram, initrd_gpa, back, 100000);
	ck_assert_mem_eq(back, initrd, 100000);

	/* setup_data chain: one SETUP_DTB entry holding a valid tree. */
	ck_assert_uint_eq(bp.hdr.setup_data, BOOT_SETUP_DATA_GPA);
	fake_read(&ram, BOOT_SETUP_DATA_GPA, &sd, sizeof(sd));
	ck_assert_uint_eq(sd.type, SETUP_DTB);
	ck_assert_uint_eq(sd.next, 0);
	ck_assert_uint_le(sd.len, BOOT_DTB_MAX);
	dtb = malloc(sd.len);
	fake_read(&ram, BOOT_SETUP_DATA_GPA + sizeof(sd), dtb, sd.len);
	check_dtb(dtb, &ram.l, 2, "passthrough", 0x500);
	ck_assert_uint_eq(fdt_totalsize(dtb), sd.len);

	/* MP floating pointer in the BIOS area, pointing at the table. */
	fake_read(&ram, BOOT_MPFP_GPA, fp, 16);
	ck_assert_mem_eq(fp, "_MP_", 4);
	ck_assert_uint_eq(sum(fp, 16), 0);

	free(dtb);
	boot_image_close(&img);
	free(ram.buf);
	free(initrd);
	free(back);
}

START_TEST(place_contiguous)
{
	place_and_check(false);
}
END_TEST

START_TEST(place_scattered)
{
	place_and_check(true);
}
END_TEST

START_TEST(place_rejects)
{
	struct fake_ram ram = {.size = 16 * MiB};
	struct boot_guest g = {.layout = &ram.l, .gpa_hva = fake_hva, .ctx = &ram};
	struct boot_params_cfg cfg = {.ncpus = 1};
	struct setup_header h;
	struct boot_image img;
	struct boot_entry ent;
	struct err e = {0};

	fake_layout(ram.size, &ram.l);
	ram.buf = calloc(1, ram.size);
	free(make_image(&h));
	h.init_size = 20 * MiB;
	ck_assert_int_eq(boot_image_open(write_image("big", &h, IMG_SIZE), NULL, &img, &e), 0);
	ck_assert_int_eq(boot_image_place_guest(&img, &cfg, &g, &ent, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "big"));
	boot_image_close(&img);
	/* A layout promising more RAM than the view has: the initrd goes at the
	 * top of the layout and placement reports the address as not RAM. */
	write_file(tmp_path("initrd"), "abc", 3);
	ck_assert_int_eq(boot_image_open(good_kernel(), tmp_path("initrd"), &img, &e), 0);
	fake_layout(64 * MiB, &ram.l);
	ck_assert_int_eq(boot_image_place_guest(&img, &cfg, &g, &ent, &e), -1);
	ck_assert_msg(strstr(e.msg, "is not RAM"), "%s", e.msg);
	cfg.ncpus = 0;
	ck_assert_int_eq(boot_image_place_guest(&img, &cfg, &g, &ent, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "--cpus"));
	boot_image_close(&img);
	free(ram.buf);
}
END_TEST

/* Real images when present: our test kernel (built by guest/) and a
 * distribution kernel ($VMSWITCH_BZIMAGE or /boot/vmlinuz-*). Each must
 * validate and place into 256 MiB; absent images are reported, not failed. */
static void place_real(const char *path)
{
	struct fake_ram ram = {.size = 256 * MiB};
	struct boot_guest g = {.layout = &ram.l, .gpa_hva = fake_hva, .ctx = &ram};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 2,
				      .hcall_port = 0x500, .mode = "passthrough"};
	struct boot_open_cfg classic = {.no_host_decompress = true};
	struct boot_image img;
	struct boot_entry ent;
	struct err e = {0};

	fake_layout(ram.size, &ram.l);
	ram.buf = calloc(1, ram.size);
	ck_assert_ptr_nonnull(ram.buf);
	/* The classic path (test_decompress covers host decompression). */
	ck_assert_msg(boot_image_open_with(path, NULL, &classic, &img, &e) == 0, "%s", e.msg);
	ck_assert_msg(boot_image_place_guest(&img, &cfg, &g, &ent, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ent.rip, img.pref_address + 0x200);
	ck_assert_mem_eq(ram.buf + img.pref_address, img.kernel + img.setup_size,
			 img.kernel_size - img.setup_size);
	fprintf(stderr, "test_boot: placed %s (protocol %x, %zu bytes, init_size %llu KiB)\n",
		path, img.hdr.version, img.kernel_size, (unsigned long long)(img.init_size >> 10));
	boot_image_close(&img);
	free(ram.buf);
}

START_TEST(real_images)
{
	const char *builddir = getenv("top_builddir"), *env = getenv("VMSWITCH_BZIMAGE");
	char path[512];
	unsigned found = 0;

	snprintf(path, sizeof(path), "%s/guest/vmswitch-guest", builddir ? builddir : ".");
	if (access(path, R_OK) == 0) {
		place_real(path);
		found++;
	}
	if (env && *env) {
		place_real(env);
		found++;
	} else {
		FILE *ls = popen("ls /boot/vmlinuz-* 2>/dev/null | head -1", "r");

		if (ls && fgets(path, sizeof(path), ls) && path[0] == '/') {
			path[strcspn(path, "\n")] = 0;
			place_real(path);
			found++;
		}
		if (ls)
			pclose(ls);
	}
	if (!found)
		fprintf(stderr, "test_boot: no real kernel image found (build guest/ or set "
			"VMSWITCH_BZIMAGE); real_images checked nothing\n");
}
END_TEST

static Suite *boot_suite(void)
{
	Suite *s = suite_create("boot");
	TCase *v = tcase_create("validate"), *t = tcase_create("tables"),
	      *p = tcase_create("place");

	tcase_add_checked_fixture(v, make_tmpdir, remove_tmpdir);
	tcase_add_checked_fixture(p, make_tmpdir, remove_tmpdir);
	tcase_add_test(v, valid_image_opens);
	tcase_add_test(v, setup_sects_zero_means_four);
	tcase_add_test(v, missing_and_unreadable_files);
	tcase_add_test(v, bad_headers);
	tcase_add_test(v, truncated_images);
	tcase_add_test(v, initrd_errors);
	tcase_add_test(v, too_large_for_ram);
	tcase_add_test(v, relocation);
	tcase_add_test(v, params_check);
	tcase_add_test(t, e820_sizes);
	tcase_add_test(t, e820_too_small_table);
	tcase_add_test(t, page_tables_identity);
	tcase_add_test(t, mptable);
	tcase_add_test(t, dtb_roundtrip);
	tcase_add_test(p, place_contiguous);
	tcase_add_test(p, place_scattered);
	tcase_add_test(p, place_rejects);
	tcase_add_test(p, real_images);
	suite_add_tcase(s, v);
	suite_add_tcase(s, t);
	suite_add_tcase(s, p);
	return s;
}

int main(void)
{
	return check_run(boot_suite(), false);
}
