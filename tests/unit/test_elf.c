/* boot/elf.c: validating a vmlinux-like ELF and loading its segments into a
 * buffer standing in for guest RAM. */
#include <check.h>
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#include "check_run.h"
#include "flat_ram.h"

#define KVIRT      0xffffffff81000000ULL /* __START_KERNEL */
#define KPHYS      0x1000000ULL          /* 16 MiB, Debian's LOAD_PHYSICAL_ADDR */
#define TEXT_SIZE  0x3000
#define DATA_FILE  0x1000
#define DATA_MEM   0x5000                /* 0x4000 bytes of bss */
#define DATA_OFF   (0x1000 + TEXT_SIZE)  /* file offset of the data segment */
#define ELF_SIZE   (DATA_OFF + DATA_FILE)
#define RAM_SIZE   (32 * MiB)

/* A vmlinux in miniature: text and data+bss segments at KPHYS, the data
 * segment 1 page after the text, and a PT_NOTE that must be ignored. */
static uint8_t *make_elf(Elf64_Ehdr **eh, Elf64_Phdr **ph)
{
	uint8_t *b = calloc(1, ELF_SIZE);
	Elf64_Ehdr *h = (Elf64_Ehdr *)b;
	Elf64_Phdr *p = (Elf64_Phdr *)(b + sizeof(*h));

	ck_assert_ptr_nonnull(b);
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_ident[EI_VERSION] = EV_CURRENT;
	h->e_type = ET_EXEC;
	h->e_machine = EM_X86_64;
	h->e_version = EV_CURRENT;
	h->e_entry = KVIRT + 0x40;
	h->e_phoff = sizeof(*h);
	h->e_ehsize = sizeof(*h);
	h->e_phentsize = sizeof(*p);
	h->e_phnum = 3;
	p[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = KVIRT,
			    .p_paddr = KPHYS, .p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE};
	p[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x1000, .p_vaddr = KVIRT,
			    .p_paddr = 0, .p_filesz = 16, .p_memsz = 16};
	p[2] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = DATA_OFF,
			    .p_vaddr = KVIRT + TEXT_SIZE + 0x1000,
			    .p_paddr = KPHYS + TEXT_SIZE + 0x1000,
			    .p_filesz = DATA_FILE, .p_memsz = DATA_MEM};
	for (size_t i = 0x1000; i < ELF_SIZE; i++)
		b[i] = (uint8_t)(i * 13 + 1);
	*eh = h;
	*ph = p;
	return b;
}


static void expect_parse_error(const uint8_t *b, size_t len, const char *needle)
{
	struct boot_elf elf;
	struct err e = {0};

	ck_assert_int_eq(boot_elf_parse(b, len, "kernel K", &elf, &e), -1);
	ck_assert_msg(strstr(e.msg, needle) && strstr(e.msg, "kernel K"),
		      "expected '%s' in: %s", needle, e.msg);
}

START_TEST(segments_and_virtual_entry)
{
	Elf64_Ehdr *h;
	Elf64_Phdr *p;
	uint8_t *b = make_elf(&h, &p);
	struct boot_elf elf;
	struct err e = {0};

	ck_assert_msg(boot_elf_parse(b, ELF_SIZE, "k", &elf, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(elf.nseg, 2);
	ck_assert_uint_eq(elf.entry, KPHYS + 0x40);
	ck_assert_uint_eq(elf.lo, KPHYS);
	ck_assert_uint_eq(elf.hi, KPHYS + TEXT_SIZE + 0x1000 + DATA_MEM);
	ck_assert_uint_eq(elf.seg[1].filesz, DATA_FILE);
	ck_assert_uint_eq(elf.seg[1].memsz, DATA_MEM);
	free(b);
}
END_TEST

/* x86-64 vmlinux links ENTRY(phys_startup_64): a physical e_entry, found
 * through p_paddr when no segment's p_vaddr range holds it. */
START_TEST(physical_entry)
{
	Elf64_Ehdr *h;
	Elf64_Phdr *p;
	uint8_t *b = make_elf(&h, &p);
	struct boot_elf elf;
	struct err e = {0};

	h->e_entry = KPHYS + 0x80;
	ck_assert_msg(boot_elf_parse(b, ELF_SIZE, "k", &elf, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(elf.entry, KPHYS + 0x80);
	/* Entry in the second segment, virtual. */
	h->e_entry = p[2].p_vaddr + 0x10;
	ck_assert_msg(boot_elf_parse(b, ELF_SIZE, "k", &elf, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(elf.entry, p[2].p_paddr + 0x10);
	/* In the bss (not file-backed) or nowhere: refused. */
	h->e_entry = p[2].p_vaddr + DATA_FILE + 8;
	expect_parse_error(b, ELF_SIZE, "entry");
	h->e_entry = 0x1234;
	expect_parse_error(b, ELF_SIZE, "not inside any load segment");
	free(b);
}
END_TEST

START_TEST(load_zeroes_bss)
{
	Elf64_Ehdr *h;
	Elf64_Phdr *p;
	uint8_t *b = make_elf(&h, &p);
	struct ram r = {.l = {.nr = 1, .r = {{.gpa = 0, .size = RAM_SIZE}}}};
	struct boot_guest g = {.layout = &r.l, .gpa_hva = ram_hva, .ctx = &r};
	struct boot_elf elf;
	struct err e = {0};
	uint64_t data = p[2].p_paddr;

	r.buf = malloc(RAM_SIZE);
	ck_assert_ptr_nonnull(r.buf);
	memset(r.buf, 0xaa, RAM_SIZE);
	ck_assert_msg(boot_elf_parse(b, ELF_SIZE, "k", &elf, &e) == 0, "%s", e.msg);
	ck_assert_msg(boot_elf_load(b, &elf, &g, &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(r.buf + KPHYS, b + 0x1000, TEXT_SIZE);
	ck_assert_mem_eq(r.buf + data, b + DATA_OFF, DATA_FILE);
	for (uint64_t a = data + DATA_FILE; a < data + DATA_MEM; a++)
		ck_assert_uint_eq(r.buf[a], 0);
	/* The gap between the segments and what follows the bss stay untouched. */
	ck_assert_uint_eq(r.buf[KPHYS + TEXT_SIZE], 0xaa);
	ck_assert_uint_eq(r.buf[data + DATA_MEM], 0xaa);
	ck_assert_uint_eq(r.buf[KPHYS - 1], 0xaa);
	/* RAM ending inside the bss: the load fails and says where. */
	r.l.r[0].size = data + DATA_FILE + 16;
	ck_assert_int_eq(boot_elf_load(b, &elf, &g, &e), -1);
	ck_assert_msg(strstr(e.msg, "not RAM") && strstr(e.msg, "ELF segment"), "%s", e.msg);
	free(r.buf);
	free(b);
}
END_TEST

START_TEST(bad_headers)
{
	Elf64_Ehdr *h;
	Elf64_Phdr *p;
	uint8_t *b = make_elf(&h, &p);

	expect_parse_error(b, 40, "too short");
	b[1] = 'X';
	expect_parse_error(b, ELF_SIZE, "not an ELF");
	b[1] = 'E';
	h->e_ident[EI_CLASS] = ELFCLASS32;
	expect_parse_error(b, ELF_SIZE, "not an x86-64 ELF");
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_machine = EM_AARCH64;
	expect_parse_error(b, ELF_SIZE, "not an x86-64 ELF");
	h->e_machine = EM_X86_64;
	h->e_type = ET_DYN;
	expect_parse_error(b, ELF_SIZE, "not an executable");
	h->e_type = ET_EXEC;
	h->e_phnum = 1000;
	expect_parse_error(b, ELF_SIZE, "program headers");
	h->e_phnum = 3;
	h->e_phentsize = 32;
	expect_parse_error(b, ELF_SIZE, "program headers");
	h->e_phentsize = sizeof(Elf64_Phdr);
	p[0].p_type = PT_NULL;
	p[2].p_type = PT_NULL;
	expect_parse_error(b, ELF_SIZE, "no load segments");
	free(b);
}
END_TEST

START_TEST(bad_segments)
{
	Elf64_Ehdr *h;
	Elf64_Phdr *p;
	uint8_t *b = make_elf(&h, &p);

	p[2].p_filesz = DATA_MEM + 1;
	expect_parse_error(b, ELF_SIZE, "outside the file or filesz > memsz");
	p[2].p_filesz = DATA_FILE;
	expect_parse_error(b, ELF_SIZE - 1, "outside the file");
	p[2].p_paddr = 0x10000;  /* over our boot_params and page tables */
	expect_parse_error(b, ELF_SIZE, "outside 1 MiB..4 GiB");
	p[2].p_paddr = 5 * GiB;
	expect_parse_error(b, ELF_SIZE, "outside 1 MiB..4 GiB");
	p[2].p_paddr = UINT64_MAX - 0x100;
	expect_parse_error(b, ELF_SIZE, "outside 1 MiB..4 GiB");
	p[2].p_paddr = KPHYS + 0x2000;  /* inside the text */
	expect_parse_error(b, ELF_SIZE, "overlap");
	free(b);
}
END_TEST

static Suite *elf_suite(void)
{
	Suite *s = suite_create("elf");
	TCase *t = tcase_create("elf");

	tcase_add_test(t, segments_and_virtual_entry);
	tcase_add_test(t, physical_entry);
	tcase_add_test(t, load_zeroes_bss);
	tcase_add_test(t, bad_headers);
	tcase_add_test(t, bad_segments);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return check_run(elf_suite(), false);
}
