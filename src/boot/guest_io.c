/* Guest-RAM access for the loader: every byte goes through gpa_hva, one
 * host-contiguous span at a time (a span never crosses a page whose host
 * address does not follow on). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "guest_io.h"
#include "vmswitch/util.h"

#define SPAN_MAX (8 * MiB) /* bounds one pread; keeps spans cheap to find */

/* Host address of gpa and how many of the next `len` bytes follow it
 * contiguously in host memory. NULL if gpa is not RAM. */
static uint8_t *span(const struct boot_guest *g, uint64_t gpa, uint64_t len,
		     size_t *n)
{
	uint8_t *start = g->gpa_hva(g->ctx, gpa);
	uint64_t got;

	if (!start)
		return NULL;
	got = MIN(len, PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
	while (got < len && got < SPAN_MAX) {
		uint8_t *next = g->gpa_hva(g->ctx, gpa + got);

		if (next != start + got)
			break;
		got += MIN(len - got, PAGE_SIZE);
	}
	*n = (size_t)got;
	return start;
}

static int not_ram(uint64_t gpa, struct err *e)
{
	return err_set(e, EFAULT, "guest address 0x%llx is not RAM",
		       (unsigned long long)gpa);
}

int guest_write(const struct boot_guest *g, uint64_t gpa, const void *src,
		size_t len, struct err *e)
{
	const uint8_t *s = src;

	while (len) {
		size_t n;
		uint8_t *d = span(g, gpa, len, &n);

		if (!d)
			return not_ram(gpa, e);
		memcpy(d, s, n);
		s += n;
		gpa += n;
		len -= n;
	}
	return 0;
}

int guest_zero(const struct boot_guest *g, uint64_t gpa, size_t len, struct err *e)
{
	while (len) {
		size_t n;
		uint8_t *d = span(g, gpa, len, &n);

		if (!d)
			return not_ram(gpa, e);
		memset(d, 0, n);
		gpa += n;
		len -= n;
	}
	return 0;
}

int guest_read_fd(const struct boot_guest *g, uint64_t gpa, int fd,
		  uint64_t len, const char *path, struct err *e)
{
	uint64_t off = 0;

	while (off < len) {
		size_t n;
		uint8_t *d = span(g, gpa + off, len - off, &n);
		ssize_t r;

		if (!d)
			return not_ram(gpa + off, e);
		r = pread(fd, d, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return err_sys(e, "initrd %s: cannot read", path);
		if (r == 0)
			return err_set(e, EIO, "initrd %s: shrank while loading "
				       "(%llu of %llu bytes)", path,
				       (unsigned long long)off, (unsigned long long)len);
		off += (uint64_t)r;
	}
	return 0;
}
