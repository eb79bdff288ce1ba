/* Writing into guest RAM page by page through a struct boot_guest, so that
 * placement stays correct whatever the P2M looks like. Private to boot/. */
#ifndef VMSWITCH_BOOT_GUEST_IO_H
#define VMSWITCH_BOOT_GUEST_IO_H

#include "vmswitch/boot.h"

int guest_write(const struct boot_guest *g, uint64_t gpa, const void *src,
		size_t len, struct err *e);
int guest_zero(const struct boot_guest *g, uint64_t gpa, size_t len, struct err *e);
/* Read `len` bytes of file `fd` (from offset 0) into guest RAM at gpa. */
int guest_read_fd(const struct boot_guest *g, uint64_t gpa, int fd,
		  uint64_t len, const char *path, struct err *e);

#endif
