/* boot/decompress.c: bzImages whose payload is compressed by the libraries
 * themselves in each format the kernel uses, decompressed by
 * boot_image_open; bad payloads; and a real Debian kernel when present. */
#include <check.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#include "check_run.h"
#include "flat_ram.h"

#define SETUP_SECTS 4
#define SETUP_SIZE  ((SETUP_SECTS + 1) * 512)
#define STUB_SIZE   0x400    /* "decompressor code" before the payload */
#define KPHYS       0x1000000ULL
#define KVIRT       0xffffffff81000000ULL
#define TEXT_SIZE   0x20000
#define DATA_FILE   0x4000
#define DATA_MEM    0x10000
#define TEXT_OFF    0x1000
#define DATA_OFF    (TEXT_OFF + TEXT_SIZE)
#define RELOCS_SIZE 0x800    /* vmlinux.bin carries relocations after the ELF */
#define ELF_SIZE    (DATA_OFF + DATA_FILE + RELOCS_SIZE)
#define LZ4_CHUNK   0x8000   /* small legacy blocks: several per payload */

static const enum boot_payload_format formats[] = {
	BOOT_PAYLOAD_GZIP, BOOT_PAYLOAD_XZ, BOOT_PAYLOAD_LZMA,
	BOOT_PAYLOAD_LZ4, BOOT_PAYLOAD_ZSTD, BOOT_PAYLOAD_BZIP2,
};

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_decompress.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

struct blob {
	uint8_t *p;
	size_t len;
};

/* A vmlinux.bin in miniature: text (compressible with some noise) and
 * data+bss at 16 MiB, followed by relocation-like bytes. */
static struct blob make_elf(uint16_t machine)
{
	struct blob b = {calloc(1, ELF_SIZE), ELF_SIZE};
	Elf64_Ehdr *h = (Elf64_Ehdr *)b.p;
	Elf64_Phdr *p = (Elf64_Phdr *)(b.p + sizeof(*h));
	uint32_t x = 12345;

	ck_assert_ptr_nonnull(b.p);
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_type = ET_EXEC;
	h->e_machine = machine;
	h->e_entry = KPHYS + 0x100;  /* physical, like phys_startup_64 */
	h->e_phoff = sizeof(*h);
	h->e_phentsize = sizeof(*p);
	h->e_phnum = 2;
	p[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = TEXT_OFF, .p_vaddr = KVIRT,
			    .p_paddr = KPHYS, .p_filesz = TEXT_SIZE, .p_memsz = TEXT_SIZE};
	p[1] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = DATA_OFF,
			    .p_vaddr = KVIRT + TEXT_SIZE, .p_paddr = KPHYS + TEXT_SIZE,
			    .p_filesz = DATA_FILE, .p_memsz = DATA_MEM};
	for (size_t i = TEXT_OFF; i < ELF_SIZE; i++) {
		x = x * 1103515245 + 12345;
		b.p[i] = (i & 0x40) ? (uint8_t)(x >> 24) : (uint8_t)(i / 64);
	}
	return b;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The kernel's build appends the uncompressed size as le32. */
static void append_size(struct blob *c, size_t size)
{
	put_le32(c->p + c->len, (uint32_t)size);
	c->len += 4;
}

static struct blob compress_lz4_legacy(const struct blob *in)
{
	struct blob c = {malloc(LZ4_compressBound((int)in->len) + in->len / 16 + 64), 4};

	ck_assert_ptr_nonnull(c.p);
	put_le32(c.p, 0x184c2102);
	for (size_t off = 0; off < in->len; off += LZ4_CHUNK) {
		int n = LZ4_compress_default((const char *)in->p + off, (char *)c.p + c.len + 4,
					     (int)MIN((size_t)LZ4_CHUNK, in->len - off),
					     LZ4_compressBound(LZ4_CHUNK));

		ck_assert_int_gt(n, 0);
		put_le32(c.p + c.len, (uint32_t)n);
		c.len += 4 + (size_t)n;
		if (off == LZ4_CHUNK) {  /* a concatenated frame's magic */
			put_le32(c.p + c.len, 0x184c2102);
			c.len += 4;
		}
	}
	return c;
}

static struct blob compress_lzma_alone(const struct blob *in)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_options_lzma opt;
	struct blob c = {malloc(in->len * 2 + 1028), 0};

	ck_assert_ptr_nonnull(c.p);
	ck_assert(!lzma_lzma_preset(&opt, 6));
	ck_assert_int_eq(lzma_alone_encoder(&s, &opt), LZMA_OK);
	s.next_in = in->p;
	s.avail_in = in->len;
	s.next_out = c.p;
	s.avail_out = in->len * 2 + 1024;
	while (lzma_code(&s, LZMA_FINISH) == LZMA_OK)
		;
	c.len = s.total_out;
	lzma_end(&s);
	ck_assert_uint_gt(c.len, 0);
	return c;
}

static struct blob compress_gzip(const struct blob *in)
{
	z_stream z = {0};
	struct blob c;

	ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
				      Z_DEFAULT_STRATEGY), Z_OK);
	c.len = deflateBound(&z, in->len);
	c.p = malloc(c.len + 4);
	ck_assert_ptr_nonnull(c.p);
	z.next_in = in->p;
	z.avail_in = (uInt)in->len;
	z.next_out = c.p;
	z.avail_out = (uInt)c.len;
	ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
	c.len = z.total_out;
	deflateEnd(&z);
	return c;
}

/* The payload as the kernel's build makes it (size trailer included). */
static struct blob make_payload(enum boot_payload_format f, const struct blob *in)
{
	size_t cap = in->len * 2 + 4096;
	struct blob c = {NULL, 0};
	unsigned blen;

	switch (f) {
	case BOOT_PAYLOAD_GZIP:
		return compress_gzip(in);  /* gzip's ISIZE is the trailer */
	case BOOT_PAYLOAD_XZ:
		c.p = malloc(cap);
		ck_assert_int_eq(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in->p,
							 in->len, c.p, &c.len, cap - 4),
				 LZMA_OK);
		break;
	case BOOT_PAYLOAD_LZMA:
		c = compress_lzma_alone(in);
		break;
	case BOOT_PAYLOAD_LZ4:
		c = compress_lz4_legacy(in);
		break;
	case BOOT_PAYLOAD_ZSTD:
		c.p = malloc(ZSTD_compressBound(in->len) + 4);
		c.len = ZSTD_compress(c.p, ZSTD_compressBound(in->len), in->p, in->len, 19);
		ck_assert(!ZSTD_isError(c.len));
		break;
	case BOOT_PAYLOAD_BZIP2:
		c.p = malloc(cap);
		blen = (unsigned)cap - 4;
		ck_assert_int_eq(BZ2_bzBuffToBuffCompress((char *)c.p, &blen, (char *)in->p,
							  (unsigned)in->len, 9, 0, 0), BZ_OK);
		c.len = blen;
		break;
	default:
		ck_abort_msg("no compressor for format %d", f);
	}
	append_size(&c, in->len);
	return c;
}

/* A minimal bzImage (protocol 2.15) whose protected-mode part is a stub
 * followed by `payload`; payload_length may be overridden (0: none). */
static const char *write_bzimage(const char *name, const struct blob *payload,
				 uint32_t payload_length)
{
	static char path[8][128];
	static int which;
	size_t pm = STUB_SIZE + payload->len + 0x40, size = SETUP_SIZE + pm;
	uint8_t *k = calloc(1, size);
	struct setup_header h = {
		.setup_sects = SETUP_SECTS, .syssize = (uint32_t)((pm + 15) / 16),
		.boot_flag = 0xAA55, .jump = 0x6aeb, .header = 0x53726448,
		.version = 0x020f, .loadflags = LOADED_HIGH,
		.initrd_addr_max = 0x7fffffff, .kernel_alignment = 0x200000,
		.relocatable_kernel = 1, .min_alignment = 21,
		.xloadflags = XLF_KERNEL_64, .cmdline_size = 2047,
		.payload_offset = STUB_SIZE, .payload_length = payload_length,
		.pref_address = KPHYS, .init_size = 0x400000,
	};
	int fd;

	ck_assert_ptr_nonnull(k);
	memcpy(k + 0x1f1, &h, sizeof(h));
	memset(k + SETUP_SIZE, 0xcc, STUB_SIZE);
	memcpy(k + SETUP_SIZE + STUB_SIZE, payload->p, payload->len);
	which = (which + 1) % 8;
	snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
	fd = open(path[which], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_full(fd, k, size), 0);
	ck_assert_int_eq(close(fd), 0);
	free(k);
	return path[which];
}

static void expect_open_error(const char *path, const char *needle1, const char *needle2)
{
	struct boot_image img;
	struct err e = {0};

	ck_assert_int_eq(boot_image_open(path, NULL, &img, &e), -1);
	ck_assert_msg(strstr(e.msg, path) && strstr(e.msg, needle1) &&
		      (!needle2 || strstr(e.msg, needle2)),
		      "expected '%s' and '%s' in: %s", needle1, needle2 ? needle2 : "", e.msg);
}

START_TEST(each_format)
{
	enum boot_payload_format f = formats[_i];
	const char *name = boot_payload_format_name(f);
	struct blob elf = make_elf(EM_X86_64), c = make_payload(f, &elf);
	const char *path = write_bzimage(name, &c, (uint32_t)c.len);
	struct boot_open_cfg classic = {.no_host_decompress = true};
	struct boot_image img;
	struct err e = {0};

	ck_assert_int_eq(boot_payload_detect(c.p, c.len), f);
	ck_assert_msg(boot_image_open(path, NULL, &img, &e) == 0, "%s: %s", name, e.msg);
	ck_assert_int_eq(img.payload_format, f);
	ck_assert_uint_eq(img.vmlinux_size, elf.len);
	ck_assert_mem_eq(img.vmlinux, elf.p, elf.len);
	ck_assert_uint_eq(img.elf.nseg, 2);
	ck_assert_uint_eq(img.elf.entry, KPHYS + 0x100);
	ck_assert_uint_eq(img.elf.hi, KPHYS + TEXT_SIZE + DATA_MEM);
	boot_image_close(&img);
	/* The classic path keeps the payload compressed for the guest. */
	ck_assert_msg(boot_image_open_with(path, NULL, &classic, &img, &e) == 0, "%s", e.msg);
	ck_assert_ptr_null(img.vmlinux);
	boot_image_close(&img);
	fprintf(stderr, "test_decompress: %s: %zu -> %zu bytes\n", name, c.len, elf.len);
	free(c.p);
	free(elf.p);
}
END_TEST

/* Half the stream, trailer kept: every decoder must notice. */
START_TEST(truncated_stream)
{
	enum boot_payload_format f = formats[_i];
	struct blob elf = make_elf(EM_X86_64), c = make_payload(f, &elf);
	struct blob half = {malloc(c.len), c.len / 2};

	memcpy(half.p, c.p, half.len);
	if (f != BOOT_PAYLOAD_GZIP)
		append_size(&half, elf.len);
	expect_open_error(write_bzimage("half", &half, (uint32_t)half.len),
			  boot_payload_format_name(f), "payload");
	free(half.p);
	free(c.p);
	free(elf.p);
}
END_TEST


/* Placement enters the ELF with boot_params in rsi, loads the segments at
 * p_paddr, zeroes the bss, and keeps the initrd clear of the kernel. */
START_TEST(place_decompressed)
{
	struct blob elf = make_elf(EM_X86_64), c = make_payload(BOOT_PAYLOAD_XZ, &elf);
	const char *path = write_bzimage("xz", &c, (uint32_t)c.len);
	char initrd[128];
	struct ram r = {.l = {.nr = 1, .r = {{.gpa = 0, .size = 64 * MiB}}}};
	struct boot_guest g = {.layout = &r.l, .gpa_hva = ram_hva, .ctx = &r};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 1};
	struct boot_params *bp;
	struct boot_image img;
	struct boot_entry ent;
	struct boot_plan plan;
	struct err e = {0};
	int fd;

	snprintf(initrd, sizeof(initrd), "%s/initrd", tmpdir);
	fd = open(initrd, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_eq(write_full(fd, "initrd", 6), 0);
	close(fd);
	r.buf = malloc(r.l.r[0].size);
	memset(r.buf, 0xaa, r.l.r[0].size);
	ck_assert_msg(boot_image_open(path, initrd, &img, &e) == 0, "%s", e.msg);
	ck_assert_msg(boot_image_plan(&img, &r.l, &plan, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(plan.kernel_gpa, KPHYS);
	ck_assert_uint_eq(plan.kernel_end, KPHYS + TEXT_SIZE + DATA_MEM);
	ck_assert_uint_ge(plan.initrd_gpa, plan.kernel_end);
	ck_assert_msg(boot_image_place_guest(&img, &cfg, &g, &ent, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ent.rip, KPHYS + 0x100);
	ck_assert_uint_eq(ent.rsi, BOOT_PARAMS_GPA);
	ck_assert_mem_eq(r.buf + KPHYS, elf.p + TEXT_OFF, TEXT_SIZE);
	ck_assert_mem_eq(r.buf + KPHYS + TEXT_SIZE, elf.p + DATA_OFF, DATA_FILE);
	for (uint64_t a = KPHYS + TEXT_SIZE + DATA_FILE; a < KPHYS + TEXT_SIZE + DATA_MEM; a++)
		ck_assert_uint_eq(r.buf[a], 0);
	ck_assert_uint_eq(r.buf[KPHYS + TEXT_SIZE + DATA_MEM], 0xaa);
	bp = (struct boot_params *)(r.buf + BOOT_PARAMS_GPA);
	ck_assert_uint_eq(bp->hdr.header, 0x53726448);
	ck_assert_uint_eq(bp->hdr.ramdisk_image, plan.initrd_gpa);
	ck_assert_mem_eq(r.buf + plan.initrd_gpa, "initrd", 6);
	/* RAM that ends before the ELF's bss: refused before any KVM work. */
	r.l.r[0].size = KPHYS + TEXT_SIZE;
	ck_assert_int_eq(boot_image_check(&img, &r.l, &e), -1);
	ck_assert_msg(strstr(e.msg, path) && strstr(e.msg, "decompressed ELF"), "%s", e.msg);
	boot_image_close(&img);
	free(r.buf);
	free(c.p);
	free(elf.p);
}
END_TEST

START_TEST(no_payload_is_classic)
{
	struct blob elf = make_elf(EM_X86_64), c = make_payload(BOOT_PAYLOAD_GZIP, &elf);
	struct boot_image img;
	struct err e = {0};

	ck_assert_msg(boot_image_open(write_bzimage("none", &c, 0), NULL, &img, &e) == 0,
		      "%s", e.msg);
	ck_assert_ptr_null(img.vmlinux);
	ck_assert_int_eq(img.payload_format, BOOT_PAYLOAD_NONE);
	boot_image_close(&img);
	free(c.p);
	free(elf.p);
}
END_TEST

START_TEST(bad_payloads)
{
	struct blob elf = make_elf(EM_X86_64), c = make_payload(BOOT_PAYLOAD_XZ, &elf);
	struct blob junk = {calloc(1, 256), 256};
	uint8_t lzo[9] = {0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a};
	uint8_t *size = c.p + c.len - 4;

	memcpy(junk.p, "\x42\x42\x42\x42", 4);
	expect_open_error(write_bzimage("junk", &junk, 256), "unknown payload format",
			  "42 42 42 42");
	memcpy(junk.p, lzo, sizeof(lzo));
	expect_open_error(write_bzimage("lzo", &junk, 256), "lzo", "--no-host-decompress");
	/* payload_length past the end of the file. */
	expect_open_error(write_bzimage("long", &c, (uint32_t)c.len + 0x100), "truncated",
			  "payload");
	/* Size trailer larger / smaller than what the stream holds. */
	put_le32(size, (uint32_t)elf.len + 1);
	expect_open_error(write_bzimage("big", &c, (uint32_t)c.len), "decompressed to", "xz");
	put_le32(size, (uint32_t)elf.len - 1);
	expect_open_error(write_bzimage("small", &c, (uint32_t)c.len), "more than", "xz");
	put_le32(size, 0);
	expect_open_error(write_bzimage("zero", &c, (uint32_t)c.len), "trailer", NULL);
	put_le32(size, (uint32_t)elf.len);
	/* A flipped byte: xz's CRC32 catches it. */
	c.p[c.len / 2] ^= 0x55;
	expect_open_error(write_bzimage("flip", &c, (uint32_t)c.len), "corrupt", "xz");
	free(c.p);
	free(junk.p);
	free(elf.p);
}
END_TEST

/* Formats with a checksum (gzip, bzip2; xz above) reject flipped bytes;
 * an lz4 block size pointing past the stream is truncation. */
START_TEST(corrupt_streams)
{
	struct blob elf = make_elf(EM_X86_64);
	struct blob gz = make_payload(BOOT_PAYLOAD_GZIP, &elf), bz = make_payload(BOOT_PAYLOAD_BZIP2, &elf);
	struct blob lz = make_payload(BOOT_PAYLOAD_LZ4, &elf);

	gz.p[gz.len / 2] ^= 0x55;
	expect_open_error(write_bzimage("gz", &gz, (uint32_t)gz.len), "gzip", "corrupt");
	bz.p[bz.len / 2] ^= 0x55;
	expect_open_error(write_bzimage("bz", &bz, (uint32_t)bz.len), "bzip2", NULL);
	put_le32(lz.p + 4, 0x7fffffff);
	expect_open_error(write_bzimage("lz", &lz, (uint32_t)lz.len), "lz4", "truncated");
	free(gz.p);
	free(bz.p);
	free(lz.p);
	free(elf.p);
}
END_TEST

/* The payload decompresses, but not to an x86-64 ELF. */
START_TEST(not_a_kernel)
{
	struct blob arm = make_elf(EM_AARCH64), c = make_payload(BOOT_PAYLOAD_ZSTD, &arm);
	struct blob text = {calloc(1, 200), 200};
	struct blob t = make_payload(BOOT_PAYLOAD_GZIP, &text);

	memset(text.p, 't', text.len);
	expect_open_error(write_bzimage("arm", &c, (uint32_t)c.len), "not an x86-64 ELF",
			  "decompressed zstd payload");
	expect_open_error(write_bzimage("text", &t, (uint32_t)t.len), "not an ELF", "gzip");
	free(c.p);
	free(arm.p);
	free(t.p);
	free(text.p);
}
END_TEST

/* A distribution kernel ($VMSWITCH_BZIMAGE, else the first /boot/vmlinuz-*):
 * decompress, check the ELF, place it; absent kernels are noted. */
static void check_real(const char *path)
{
	struct ram r = {.l = {.nr = 1, .r = {{.gpa = 0, .size = 512 * MiB}}}};
	struct boot_guest g = {.layout = &r.l, .gpa_hva = ram_hva, .ctx = &r};
	struct boot_params_cfg cfg = {.cmdline = "console=ttyS0", .ncpus = 1};
	struct boot_image img;
	struct boot_entry ent;
	struct err e = {0};
	uint64_t t0 = now_ns(), t1;
	bool inside = false;

	ck_assert_msg(boot_image_open(path, NULL, &img, &e) == 0, "%s", e.msg);
	t1 = now_ns();
	ck_assert_ptr_nonnull(img.vmlinux);
	for (unsigned i = 0; i < img.elf.nseg; i++)
		inside |= img.elf.entry - img.elf.seg[i].paddr < img.elf.seg[i].filesz;
	ck_assert_msg(inside, "entry 0x%llx outside the segments",
		      (unsigned long long)img.elf.entry);
	r.buf = calloc(1, r.l.r[0].size);  /* untouched pages cost nothing */
	ck_assert_ptr_nonnull(r.buf);
	ck_assert_msg(boot_image_place_guest(&img, &cfg, &g, &ent, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ent.rip, img.elf.entry);
	fprintf(stderr, "test_decompress: %s: %s payload %u -> %zu bytes in %.0f ms, "
		"%u segments 0x%llx-0x%llx, entry 0x%llx\n", path,
		boot_payload_format_name(img.payload_format), img.hdr.payload_length,
		img.vmlinux_size, (double)(t1 - t0) / 1e6, img.elf.nseg,
		(unsigned long long)img.elf.lo, (unsigned long long)img.elf.hi,
		(unsigned long long)img.elf.entry);
	boot_image_close(&img);
	free(r.buf);
}

START_TEST(real_kernel)
{
	const char *env = getenv("VMSWITCH_BZIMAGE");
	char path[512] = "";
	FILE *ls;

	if (env && *env) {
		snprintf(path, sizeof(path), "%s", env);
	} else if ((ls = popen("ls /boot/vmlinuz-* 2>/dev/null | head -1", "r"))) {
		if (!fgets(path, sizeof(path), ls))
			path[0] = 0;
		path[strcspn(path, "\n")] = 0;
		pclose(ls);
	}
	if (!path[0]) {
		fprintf(stderr, "test_decompress: no real kernel (set VMSWITCH_BZIMAGE or "
			"install one in /boot); real_kernel checked nothing\n");
		return;
	}
	check_real(path);
}
END_TEST

static Suite *decompress_suite(void)
{
	Suite *s = suite_create("decompress");
	TCase *t = tcase_create("decompress");
	int n = (int)ARRAY_SIZE(formats);

	tcase_add_checked_fixture(t, make_tmpdir, remove_tmpdir);
	tcase_set_timeout(t, 60);
	tcase_add_loop_test(t, each_format, 0, n);
	tcase_add_loop_test(t, truncated_stream, 0, n);
	tcase_add_test(t, place_decompressed);
	tcase_add_test(t, no_payload_is_classic);
	tcase_add_test(t, bad_payloads);
	tcase_add_test(t, corrupt_streams);
	tcase_add_test(t, not_a_kernel);
	tcase_add_test(t, real_kernel);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return check_run(decompress_suite(), false);
}
