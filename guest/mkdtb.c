/* mkdtb ADDR NCPUS RAM_MIB OUT: write what vmswitch would put at guest-physical
 * ADDR for a guest with NCPUS vCPUs: a struct setup_data (SETUP_DTB) and the
 * device tree from boot_dtb_build. The QEMU test loads it with
 * `-device loader` and points the image's setup_data field at it, so the
 * test kernel's DTB path runs without KVM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfdt.h>

#include "vmswitch/boot.h"
#include "vmswitch/hcall.h"

#define BLOB_MAX 16384

static int write_blob(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t blob[BLOB_MAX];
	struct setup_data *sd = (struct setup_data *)blob;
	struct boot_params_cfg cfg = { .cmdline = "", .hcall_port = HC_PORT_CMD,
				       .mode = "passthrough" };
	struct mem_layout l = { .nr = 1 };
	struct err e = {0};

	if (argc != 5) {
		fprintf(stderr, "usage: %s ADDR NCPUS RAM_MIB OUT\n", argv[0]);
		return 2;
	}
	cfg.ncpus = (unsigned)strtoul(argv[2], NULL, 0);
	l.r[0].size = strtoull(argv[3], NULL, 0) << 20;
	if (boot_dtb_build(&cfg, &l, sd->data, BLOB_MAX - sizeof(*sd), &e) < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], e.msg);
		return 1;
	}
	*sd = (struct setup_data){ .next = 0, .type = SETUP_DTB,
				   .len = fdt_totalsize(sd->data) };
	(void)strtoull(argv[1], NULL, 0); /* the address only matters to the caller */
	return write_blob(argv[4], blob, sizeof(*sd) + sd->len) < 0 ? 1 : 0;
}
