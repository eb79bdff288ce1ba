/* Decompressing a bzImage's payload on the host (issue #6). The in-guest
 * decompressor is pure CPL0 work, which kvm_pvm runs through KVM's
 * instruction emulator (minutes); done here it takes about a second.
 *
 * The payload (setup header payload_offset/payload_length, relative to the
 * protected-mode code) is one compressed stream followed by the le32 size
 * of its output, which the kernel's build appends (gzip's own ISIZE plays
 * that part for gzip). The output is vmlinux.bin: the kernel proper as an
 * ELF, possibly followed by relocation data we do not need. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#define MAX_VMLINUX       (1ULL << 30)
#define SIZE_TRAILER      4
#define LZ4_LEGACY_MAGIC  0x184c2102U
#define LZ4_LEGACY_BLOCK  (8 * MiB)  /* most a legacy block decodes to */
#define PAYLOAD_MIN_PROTO 0x0208

struct magic {
	enum boot_payload_format format;
	const char *name;
	size_t len;
	uint8_t bytes[9];
};

static const struct magic magics[] = {
	{BOOT_PAYLOAD_GZIP, "gzip", 2, {0x1f, 0x8b}},
	{BOOT_PAYLOAD_XZ, "xz", 6, {0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{BOOT_PAYLOAD_LZMA, "lzma", 3, {0x5d, 0x00, 0x00}},
	{BOOT_PAYLOAD_LZ4, "lz4", 4, {0x02, 0x21, 0x4c, 0x18}},
	{BOOT_PAYLOAD_ZSTD, "zstd", 4, {0x28, 0xb5, 0x2f, 0xfd}},
	{BOOT_PAYLOAD_BZIP2, "bzip2", 3, {'B', 'Z', 'h'}},
	{BOOT_PAYLOAD_LZO, "lzo", 9, {0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a}},
	{BOOT_PAYLOAD_ELF, "uncompressed ELF", 4, {0x7f, 'E', 'L', 'F'}},
};

enum boot_payload_format boot_payload_detect(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(magics); i++)
		if (len >= magics[i].len && memcmp(p, magics[i].bytes, magics[i].len) == 0)
			return magics[i].format;
	return len ? BOOT_PAYLOAD_UNKNOWN : BOOT_PAYLOAD_NONE;
}

const char *boot_payload_format_name(enum boot_payload_format f)
{
	for (size_t i = 0; i < ARRAY_SIZE(magics); i++)
		if (magics[i].format == f)
			return magics[i].name;
	return f == BOOT_PAYLOAD_NONE ? "none" : "unknown";
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* What one decoder is working on: the stream, the output buffer sized by
 * the trailer, and the names for messages. */
struct job {
	const uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	const char *what, *fmt;
};

static int too_big(const struct job *j, struct err *e)
{
	return err_set(e, EINVAL, "%s: %s payload decompresses to more than the %zu "
		       "bytes its size trailer announces (corrupt payload)", j->what,
		       j->fmt, j->out_len);
}

static int truncated(const struct job *j, struct err *e)
{
	return err_set(e, EINVAL, "%s: %s payload is truncated (the stream ends "
		       "early)", j->what, j->fmt);
}

static int corrupt(const struct job *j, const char *detail, struct err *e)
{
	return err_set(e, EINVAL, "%s: %s payload is corrupt (%s)", j->what, j->fmt,
		       detail);
}

static int check_len(const struct job *j, size_t got, struct err *e)
{
	if (got != j->out_len)
		return err_set(e, EINVAL, "%s: %s payload decompressed to %zu bytes, its "
			       "size trailer says %zu (corrupt payload)", j->what,
			       j->fmt, got, j->out_len);
	return 0;
}

static int run_gzip(const struct job *j, struct err *e)
{
	z_stream z = {.next_in = (Bytef *)j->in, .avail_in = (uInt)j->in_len,
		      .next_out = j->out, .avail_out = (uInt)j->out_len};
	int rc;

	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)  /* 16: gzip wrapper */
		return err_set(e, ENOMEM, "%s: cannot start zlib", j->what);
	rc = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if (rc == Z_STREAM_END)
		return check_len(j, z.total_out, e);
	if (rc == Z_BUF_ERROR && z.avail_out == 0)
		return too_big(j, e);
	if (rc == Z_BUF_ERROR)
		return truncated(j, e);
	return corrupt(j, z.msg ? z.msg : "zlib error", e);
}

static const char *lzma_error(lzma_ret rc)
{
	switch (rc) {
	case LZMA_FORMAT_ERROR: return "not in the expected format";
	case LZMA_OPTIONS_ERROR: return "unsupported compression options";
	case LZMA_DATA_ERROR: return "data error or checksum mismatch";
	case LZMA_MEM_ERROR: return "out of memory";
	default: return "liblzma error";
	}
}

/* xz and lzma share liblzma's stream loop once the decoder is set up. */
static int run_liblzma(const struct job *j, bool alone, struct err *e)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret rc = alone ? lzma_alone_decoder(&s, UINT64_MAX)
			    : lzma_stream_decoder(&s, UINT64_MAX, 0);

	if (rc != LZMA_OK)
		return err_set(e, ENOMEM, "%s: cannot start liblzma (%s)", j->what,
			       lzma_error(rc));
	s.next_in = j->in;
	s.avail_in = j->in_len;
	s.next_out = j->out;
	s.avail_out = j->out_len;
	do
		rc = lzma_code(&s, LZMA_FINISH);
	while (rc == LZMA_OK);
	lzma_end(&s);
	if (rc == LZMA_STREAM_END)
		return check_len(j, s.total_out, e);
	if (rc == LZMA_BUF_ERROR && s.avail_out == 0)
		return too_big(j, e);
	if (rc == LZMA_BUF_ERROR)
		return truncated(j, e);
	return corrupt(j, lzma_error(rc), e);
}

/* The kernel's lz4 is the legacy frame: magic, then blocks of
 * [le32 compressed size][data], each decoding to at most 8 MiB. A repeated
 * magic starts a concatenated frame. */
static int run_lz4(const struct job *j, struct err *e)
{
	size_t pos = 4, done = 0;

	while (done < j->out_len) {
		size_t csize, cap = MIN(j->out_len - done, (size_t)LZ4_LEGACY_BLOCK);
		int n;

		if (j->in_len - pos < 4)
			return truncated(j, e);
		csize = le32(j->in + pos);
		pos += 4;
		if (csize == LZ4_LEGACY_MAGIC)
			continue;
		if (csize == 0 || csize > j->in_len - pos)
			return truncated(j, e);
		n = LZ4_decompress_safe((const char *)j->in + pos, (char *)j->out + done,
					(int)csize, (int)cap);
		if (n <= 0)
			return corrupt(j, "an lz4 block does not decode", e);
		pos += csize;
		done += (size_t)n;
	}
	return 0;
}

static int run_zstd(const struct job *j, struct err *e)
{
	size_t n = ZSTD_decompress(j->out, j->out_len, j->in, j->in_len);

	if (ZSTD_isError(n))
		return corrupt(j, ZSTD_getErrorName(n), e);
	return check_len(j, n, e);
}

static int run_bzip2(const struct job *j, struct err *e)
{
	unsigned got = (unsigned)j->out_len;
	int rc = BZ2_bzBuffToBuffDecompress((char *)j->out, &got, (char *)j->in,
					    (unsigned)j->in_len, 0, 0);

	switch (rc) {
	case BZ_OK: return check_len(j, got, e);
	case BZ_OUTBUFF_FULL: return too_big(j, e);
	case BZ_UNEXPECTED_EOF: return truncated(j, e);
	case BZ_MEM_ERROR: return err_set(e, ENOMEM, "%s: bzip2: out of memory", j->what);
	default: return corrupt(j, "bzip2 data error", e);
	}
}

static int run_decoder(enum boot_payload_format f, const struct job *j, struct err *e)
{
	switch (f) {
	case BOOT_PAYLOAD_GZIP: return run_gzip(j, e);
	case BOOT_PAYLOAD_XZ: return run_liblzma(j, false, e);
	case BOOT_PAYLOAD_LZMA: return run_liblzma(j, true, e);
	case BOOT_PAYLOAD_LZ4: return run_lz4(j, e);
	case BOOT_PAYLOAD_ZSTD: return run_zstd(j, e);
	case BOOT_PAYLOAD_BZIP2: return run_bzip2(j, e);
	default: return err_set(e, EINVAL, "%s: no decoder for %s", j->what, j->fmt);
	}
}

static int unsupported(enum boot_payload_format f, const uint8_t *p, size_t len,
		       const char *what, struct err *e)
{
	if (f == BOOT_PAYLOAD_LZO)
		return err_set(e, ENOTSUP, "%s: lzo-compressed payload: vmswitch cannot "
			       "decompress lzo on the host (use --no-host-decompress)", what);
	if (len < 4)
		return err_set(e, EINVAL, "%s: payload of %zu bytes is too short to "
			       "recognize", what, len);
	return err_set(e, EINVAL, "%s: unknown payload format (first bytes %02x %02x "
		       "%02x %02x; expected gzip, xz, lzma, lz4, zstd or bzip2; use "
		       "--no-host-decompress to let the kernel decompress itself)",
		       what, p[0], p[1], p[2], p[3]);
}

static int copy_elf(const uint8_t *p, size_t len, uint8_t **out, size_t *out_len,
		    const char *what, struct err *e)
{
	*out = malloc(len);
	if (!*out)
		return err_set(e, ENOMEM, "%s: cannot allocate %zu bytes", what, len);
	memcpy(*out, p, len);
	*out_len = len;
	return 0;
}

int boot_payload_decompress(const uint8_t *p, size_t len, const char *what,
			    uint8_t **out, size_t *out_len, struct err *e)
{
	enum boot_payload_format f = boot_payload_detect(p, len);
	struct job j = {.in = p, .in_len = len, .what = what,
			.fmt = boot_payload_format_name(f)};

	*out = NULL;
	*out_len = 0;
	if (f == BOOT_PAYLOAD_ELF)
		return copy_elf(p, len, out, out_len, what, e);
	if (f == BOOT_PAYLOAD_LZO || f == BOOT_PAYLOAD_UNKNOWN || f == BOOT_PAYLOAD_NONE)
		return unsupported(f, p, len, what, e);
	if (len < 16)
		return truncated(&j, e);
	j.out_len = le32(p + len - SIZE_TRAILER);
	if (f != BOOT_PAYLOAD_GZIP)  /* gzip's trailer is inside its stream */
		j.in_len -= SIZE_TRAILER;
	if (j.out_len == 0 || j.out_len > MAX_VMLINUX)
		return err_set(e, EINVAL, "%s: %s payload's size trailer says %zu bytes "
			       "(truncated or corrupt payload)", what, j.fmt, j.out_len);
	j.out = malloc(j.out_len);
	if (!j.out)
		return err_set(e, ENOMEM, "%s: cannot allocate %zu bytes for the "
			       "decompressed kernel", what, j.out_len);
	if (run_decoder(f, &j, e) < 0) {
		free(j.out);
		return -1;
	}
	*out = j.out;
	*out_len = j.out_len;
	return 0;
}

int boot_image_decompress(struct boot_image *img, struct err *e)
{
	const struct setup_header *h = &img->hdr;
	size_t pm_size = img->kernel_size - img->setup_size;
	char what[600];

	img->payload_format = BOOT_PAYLOAD_NONE;
	if (h->version < PAYLOAD_MIN_PROTO || h->payload_length == 0)
		return 0;  /* nothing to decompress: the classic path */
	if (h->payload_offset > pm_size || pm_size - h->payload_offset < h->payload_length)
		return err_set(e, EINVAL, "kernel %s: truncated (its %u-byte payload at "
			       "offset 0x%x runs past the end of the file)",
			       img->kernel_path, h->payload_length, h->payload_offset);
	snprintf(what, sizeof(what), "kernel %s", img->kernel_path);
	if (boot_payload_decompress(img->kernel + img->setup_size + h->payload_offset,
				    h->payload_length, what, &img->vmlinux,
				    &img->vmlinux_size, e) < 0)
		return -1;
	img->payload_format = boot_payload_detect(img->kernel + img->setup_size +
						  h->payload_offset, h->payload_length);
	snprintf(what, sizeof(what), "kernel %s (decompressed %s payload)",
		 img->kernel_path, boot_payload_format_name(img->payload_format));
	return boot_elf_parse(img->vmlinux, img->vmlinux_size, what, &img->elf, e);
}
