/* Reading and validating a bzImage (x86 boot protocol >= 2.06 with a 64-bit
 * entry) and its initrd, before any guest memory exists. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#define HDR_OFFSET   0x1f1   /* struct setup_header inside the image */
#define BOOT_FLAG    0xAA55
#define HDR_MAGIC    0x53726448 /* "HdrS" */
#define MIN_VERSION  0x0206
#define SECTOR       512
#define MAX_KERNEL   (1ULL << 30) /* refuse absurd files before reading them */

/* Open `path` as a regular file and return its size. */
static int open_regular(const char *path, const char *what, int *fd_out,
			uint64_t *size, struct err *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(e, "%s %s: cannot open", what, path);
	if (fstat(fd, &st) < 0) {
		err_sys(e, "%s %s: cannot stat", what, path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(e, EINVAL, "%s %s: not a regular file", what, path);
	}
	*fd_out = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int read_kernel(struct boot_image *img, const char *path, struct err *e)
{
	uint64_t size;
	int fd;

	if (open_regular(path, "kernel", &fd, &size, e) < 0)
		return -1;
	if (size > MAX_KERNEL) {
		close(fd);
		return err_set(e, EFBIG, "kernel %s: %llu bytes is too large for a bzImage",
			       path, (unsigned long long)size);
	}
	img->kernel = malloc(size ? size : 1);
	if (!img->kernel) {
		close(fd);
		return err_set(e, ENOMEM, "kernel %s: cannot allocate %llu bytes",
			       path, (unsigned long long)size);
	}
	if (read_full(fd, img->kernel, size) < 0) {
		err_sys(e, "kernel %s: cannot read", path);
		close(fd);
		return -1;
	}
	close(fd);
	img->kernel_size = size;
	return 0;
}

/* The header's real length: the 2-byte jump at 0x200 skips over it. A
 * 2.12+ header reaches at least kernel_info_offset, whatever the jump says. */
static size_t header_len(const uint8_t *k)
{
	size_t end = 0x202 + k[0x201];
	size_t len = MAX(end - HDR_OFFSET, offsetof(struct setup_header, kernel_info_offset));

	return MIN(len, sizeof(struct setup_header));
}

static int check_header(struct boot_image *img, const char *path, struct err *e)
{
	const struct setup_header *h = &img->hdr;
	size_t need = HDR_OFFSET + sizeof(struct setup_header);
	unsigned sects;
	uint64_t pm_size;

	if (img->kernel_size < need)
		return err_set(e, EINVAL, "kernel %s: truncated (%zu bytes, a bzImage "
			       "needs at least %zu for its setup header)",
			       path, img->kernel_size, need);
	memcpy(&img->hdr, img->kernel + HDR_OFFSET, sizeof(img->hdr));
	if (h->boot_flag != BOOT_FLAG)
		return err_set(e, EINVAL, "kernel %s: not a bzImage (boot_flag 0x%04x, "
			       "expected 0xaa55)", path, h->boot_flag);
	if (h->header != HDR_MAGIC)
		return err_set(e, EINVAL, "kernel %s: not a bzImage (no \"HdrS\" "
			       "setup header magic)", path);
	if (h->version < MIN_VERSION)
		return err_set(e, EINVAL, "kernel %s: boot protocol %u.%02u is too old "
			       "(need 2.06 or later)", path, h->version >> 8,
			       h->version & 0xff);
	img->hdr_len = header_len(img->kernel);
	/* xloadflags exists from 2.12; older kernels have no 64-bit entry. */
	if (h->version < 0x020c || !(h->xloadflags & XLF_KERNEL_64))
		return err_set(e, EINVAL, "kernel %s: no 64-bit entry point "
			       "(XLF_KERNEL_64 not set)", path);
	sects = h->setup_sects ? h->setup_sects : 4;
	img->setup_size = (size_t)(sects + 1) * SECTOR;
	if (img->setup_size >= img->kernel_size)
		return err_set(e, EINVAL, "kernel %s: setup_sects %u extends past the "
			       "end of the file (%zu bytes)", path, sects,
			       img->kernel_size);
	pm_size = img->kernel_size - img->setup_size;
	/* syssize is in 16-byte units, rounded up by the kernel's build tool. */
	if ((uint64_t)h->syssize * 16 > ALIGN_UP(pm_size, 16))
		return err_set(e, EINVAL, "kernel %s: truncated (header says %llu bytes "
			       "of kernel, file has %llu)", path,
			       (unsigned long long)h->syssize * 16,
			       (unsigned long long)pm_size);
	if (pm_size <= 0x200)
		return err_set(e, EINVAL, "kernel %s: truncated (no code at the 64-bit "
			       "entry, offset 0x200)", path);
	return 0;
}

/* Where and how big: the fields the loader acts on. */
static int take_geometry(struct boot_image *img, const char *path, struct err *e)
{
	const struct setup_header *h = &img->hdr;
	uint64_t pm_size = img->kernel_size - img->setup_size;

	img->pref_address = h->pref_address;
	img->relocatable = h->relocatable_kernel != 0;
	img->kernel_alignment = h->kernel_alignment;
	if (img->relocatable &&
	    (img->kernel_alignment < PAGE_SIZE ||
	     (img->kernel_alignment & (img->kernel_alignment - 1))))
		return err_set(e, EINVAL, "kernel %s: kernel_alignment 0x%llx is not a "
			       "power of two >= 4 KiB", path,
			       (unsigned long long)img->kernel_alignment);
	if (img->pref_address < BOOT_LOW_END)
		return err_set(e, EINVAL, "kernel %s: pref_address 0x%llx is below 1 MiB",
			       path, (unsigned long long)img->pref_address);
	img->init_size = MAX((uint64_t)h->init_size, pm_size);
	img->initrd_limit = (uint64_t)h->initrd_addr_max + 1;
	return 0;
}

static int open_initrd(struct boot_image *img, const char *path, struct err *e)
{
	if (open_regular(path, "initrd", &img->initrd_fd, &img->initrd_size, e) < 0) {
		img->initrd_fd = -1;
		return -1;
	}
	if (img->initrd_size == 0)
		return err_set(e, EINVAL, "initrd %s: empty (0 bytes)", path);
	if (img->initrd_size + BOOT_LOW_END > img->initrd_limit)
		return err_set(e, EFBIG, "initrd %s: %llu bytes does not fit below the "
			       "kernel's initrd_addr_max 0x%llx", path,
			       (unsigned long long)img->initrd_size,
			       (unsigned long long)img->initrd_limit - 1);
	img->initrd_path = strdup(path);
	if (!img->initrd_path)
		return err_set(e, ENOMEM, "initrd %s: out of memory", path);
	return 0;
}

int boot_image_open(const char *kernel, const char *initrd,
		    struct boot_image *img, struct err *e)
{
	static const struct boot_open_cfg defaults;

	return boot_image_open_with(kernel, initrd, &defaults, img, e);
}

int boot_image_open_with(const char *kernel, const char *initrd,
			 const struct boot_open_cfg *cfg,
			 struct boot_image *img, struct err *e)
{
	*img = (struct boot_image){.initrd_fd = -1};
	if (read_kernel(img, kernel, e) < 0 || check_header(img, kernel, e) < 0 ||
	    take_geometry(img, kernel, e) < 0)
		goto fail;
	img->kernel_path = strdup(kernel);
	if (!img->kernel_path) {
		err_set(e, ENOMEM, "kernel %s: out of memory", kernel);
		goto fail;
	}
	/* Decompressing now lets a bad payload fail before KVM is opened. */
	if (!cfg->no_host_decompress && boot_image_decompress(img, e) < 0)
		goto fail;
	if (initrd && open_initrd(img, initrd, e) < 0)
		goto fail;
	return 0;
fail:
	boot_image_close(img);
	return -1;
}

void boot_image_close(struct boot_image *img)
{
	free(img->kernel);
	free(img->kernel_path);
	free(img->initrd_path);
	free(img->vmlinux);
	if (img->initrd_fd >= 0)
		close(img->initrd_fd);
	*img = (struct boot_image){.initrd_fd = -1};
}
