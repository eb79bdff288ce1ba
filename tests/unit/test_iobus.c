/* Unit tests: the I/O bus (registration, lookup at range edges, unhandled
 * accesses, POST port, counters, concurrent lookups). */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmswitch/dev.h"
#include "vmswitch/util.h"

#include "check_run.h"

/* A fake device: remembers its last access and answers reads with its id. */
struct fake {
	uint8_t id;
	uint64_t last_offset;
	unsigned last_size, calls;
	bool last_write, refuse_odd;
};

static int fake_io(void *ctx, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct fake *f = ctx;

	if (f->refuse_odd && (offset & 1))
		return -1;
	__atomic_fetch_add(&f->calls, 1, __ATOMIC_RELAXED);
	f->last_offset = offset;
	f->last_size = size;
	f->last_write = is_write;
	if (!is_write)
		memset(data, f->id, size);
	return 0;
}

static struct io_bus *new_bus(void)
{
	struct io_bus *bus;
	struct err e = {0};

	ck_assert_msg(io_bus_create(&bus, &e) == 0, "%s", e.msg);
	return bus;
}

/* stderr captured into a temporary file, to count log lines. */
struct capture {
	int saved, fd;
};

static void capture_start(struct capture *c)
{
	char path[] = "/tmp/test_iobus.XXXXXX";

	fflush(stderr);
	c->fd = mkstemp(path);
	ck_assert_int_ge(c->fd, 0);
	unlink(path);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(dup2(c->fd, STDERR_FILENO), 0);
}

/* Stops capturing; returns how many times `needle` was logged. */
static int capture_count(struct capture *c, const char *needle)
{
	static char buf[1 << 20];
	ssize_t n;
	int count = 0;

	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	n = pread(c->fd, buf, sizeof(buf) - 1, 0);
	close(c->fd);
	ck_assert_int_ge(n, 0);
	ck_assert_int_lt(n, sizeof(buf) - 1);
	buf[n] = '\0';
	for (const char *p = buf; (p = strstr(p, needle)); p++)
		count++;
	return count;
}

START_TEST(overlap_rejected)
{
	struct io_bus *bus = new_bus();
	struct fake a = {.id = 1};
	struct err e = {0};

	ck_assert_int_eq(io_bus_register_port(bus, 0x3f8, 8, fake_io, &a, "serial", &e), 0);
	ck_assert_int_eq(io_bus_register_port(bus, 0x400, 8, fake_io, &a, "b", &e), 0);
	/* Each neighbour, exact duplicate, containing, contained. */
	static const struct { uint16_t base, len; } bad[] = {
		{0x3f0, 9}, {0x3ff, 1}, {0x3f8, 8}, {0x3f0, 0x20}, {0x3fa, 2}, {0x407, 4},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear(&e);
		ck_assert_msg(io_bus_register_port(bus, bad[i].base, bad[i].len, fake_io, &a, "x",
						   &e) == -1, "%#x+%u accepted", bad[i].base, bad[i].len);
		ck_assert_int_eq(e.code, EEXIST);
		ck_assert_ptr_nonnull(strstr(e.msg, "overlaps"));
	}
	/* Touching ranges are fine, so is the gap between them exactly filled. */
	ck_assert_int_eq(io_bus_register_port(bus, 0x3f0, 8, fake_io, &a, "left", &e), 0);
	ck_assert_int_eq(io_bus_register_port(bus, 0x500, 0, fake_io, &a, "empty", &e), -1);
	ck_assert_int_eq(e.code, EINVAL);
	ck_assert_int_eq(io_bus_register_port(bus, 0xfff0, 0x10, fake_io, &a, "top", &e), 0);
	ck_assert_int_eq(io_bus_register(bus, IO_SPACE_PORT, 0xfff0, 0x20, fake_io, &a, "wrap",
					 &e), -1);
	/* The two spaces are independent. */
	ck_assert_int_eq(io_bus_register_mmio(bus, 0x3f8, 8, fake_io, &a, "mmio", &e), 0);
	ck_assert_int_eq(io_bus_register_mmio(bus, ~0ULL - 7, 8, fake_io, &a, "last", &e), 0);
	ck_assert_int_eq(io_bus_register_mmio(bus, ~0ULL - 7, 9, fake_io, &a, "wrap", &e), -1);
	io_bus_seal(bus);
	ck_assert_int_eq(io_bus_register_port(bus, 0x500, 4, fake_io, &a, "late", &e), -1);
	ck_assert_int_eq(e.code, EBUSY);
	io_bus_destroy(bus);
}
END_TEST

START_TEST(lookup_edges)
{
	struct io_bus *bus = new_bus();
	struct fake dev[40];
	struct capture cap;
	struct err e = {0};
	uint8_t d[8];

	capture_start(&cap);

	/* Registered in a scrambled order: the array must end up sorted. Ranges
	 * of 3 ports every 8, so there are gaps on both sides of each. */
	for (unsigned k = 0; k < 40; k++) {
		unsigned i = (k * 17) % 40;
		dev[i] = (struct fake){.id = (uint8_t)(i + 1)};
		ck_assert_int_eq(io_bus_register_port(bus, (uint16_t)(0x100 + 8 * i), 3, fake_io,
						      &dev[i], "dev", &e), 0);
	}
	for (unsigned i = 0; i < 40; i++) {
		uint16_t base = (uint16_t)(0x100 + 8 * i);
		for (unsigned off = 0; off < 3; off++) {
			memset(d, 0, sizeof(d));
			ck_assert(io_bus_port(bus, (uint16_t)(base + off), d, 2, false));
			ck_assert_uint_eq(d[0], i + 1);
			ck_assert_uint_eq(dev[i].last_offset, off);
			ck_assert_uint_eq(dev[i].last_size, 2);
		}
		/* One below the base and one past the end belong to nobody. */
		ck_assert(!io_bus_port(bus, (uint16_t)(base - 1), d, 1, false));
		ck_assert_uint_eq(d[0], 0xff);
		ck_assert(!io_bus_port(bus, (uint16_t)(base + 3), d, 1, false));
		ck_assert_uint_eq(dev[i].calls, 3);
	}
	/* Below the first range and above the last. */
	ck_assert(!io_bus_port(bus, 0, d, 1, false));
	ck_assert(!io_bus_port(bus, 0xffff, d, 1, true));

	/* MMIO with 64-bit addresses, including the very top. */
	struct fake hi = {.id = 0xab}, lo = {.id = 0xcd};
	ck_assert_int_eq(io_bus_register_mmio(bus, 0xfffffffffffff000ULL, 0x1000, fake_io, &hi,
					      "hi", &e), 0);
	ck_assert_int_eq(io_bus_register_mmio(bus, 0xd0000000, 0x200, fake_io, &lo, "lo", &e), 0);
	ck_assert(io_bus_mmio(bus, ~0ULL, d, 1, false));
	ck_assert_uint_eq(d[0], 0xab);
	ck_assert_uint_eq(hi.last_offset, 0xfff);
	ck_assert(io_bus_mmio(bus, 0xd00001f8, d, 8, true));
	ck_assert_uint_eq(lo.last_offset, 0x1f8);
	ck_assert(lo.last_write);
	ck_assert(!io_bus_mmio(bus, 0xd0000200, d, 4, false));
	ck_assert_uint_eq(d[0] & d[1] & d[2] & d[3], 0xff);
	ck_assert(!io_bus_mmio(bus, 0xcfffffff, d, 1, false));
	/* The spaces are separate: MMIO at a port's number reaches no port device. */
	ck_assert(!io_bus_mmio(bus, 0x100, d, 1, false));
	ck_assert_uint_eq(dev[0].calls, 3);
	/* 80 gaps around the ranges, 2 ends, 3 MMIO addresses: one line each. */
	ck_assert_int_eq(capture_count(&cap, "unhandled "), 85);
	io_bus_destroy(bus);
}
END_TEST

START_TEST(unhandled_logged_once)
{
	struct io_bus *bus = new_bus();
	struct fake f = {.id = 7, .refuse_odd = true};
	struct io_bus_counters c;
	struct capture cap;
	struct err e = {0};
	uint8_t d[4] = {0};

	ck_assert_int_eq(io_bus_register_port(bus, 0x200, 4, fake_io, &f, "picky", &e), 0);
	capture_start(&cap);
	for (int i = 0; i < 5; i++) {
		ck_assert(!io_bus_port(bus, 0x2e8, d, 1, i & 1));
		ck_assert(!io_bus_port(bus, 0x2e9, d, 1, false));
		ck_assert(!io_bus_port(bus, 0x201, d, 2, false));  /* device declines */
		ck_assert(io_bus_port(bus, 0x202, d, 1, false));
		ck_assert(!io_bus_mmio(bus, 0xfee00000, d, 4, true));
	}
	/* Port 0x80: no warning, no "unhandled" count. */
	d[0] = 0x42;
	for (int i = 0; i < 3; i++)
		ck_assert(io_bus_port(bus, IO_PORT_POST, d, 1, true));
	ck_assert(io_bus_port(bus, IO_PORT_POST, d, 1, false));
	ck_assert_int_eq(capture_count(&cap, "0x2e8"), 1);

	io_bus_counters(bus, IO_SPACE_PORT, &c);
	ck_assert_uint_eq(c.unhandled, 15);
	ck_assert_uint_eq(c.unhandled_addrs, 3);
	ck_assert_uint_eq(c.handled, 5);
	ck_assert_uint_eq(c.post_codes, 3);
	ck_assert_uint_eq(c.last_post_code, 0x42);
	io_bus_counters(bus, IO_SPACE_MMIO, &c);
	ck_assert_uint_eq(c.unhandled, 5);
	ck_assert_uint_eq(c.unhandled_addrs, 1);

	/* Everything was logged exactly once per address. */
	capture_start(&cap);
	io_bus_port(bus, 0x2e8, d, 1, false);
	io_bus_port(bus, 0x3e8, d, 1, false);
	ck_assert_int_eq(capture_count(&cap, "unhandled port"), 1);
	io_bus_destroy(bus);
}
END_TEST

START_TEST(unhandled_log_capped)
{
	struct io_bus *bus = new_bus();
	struct io_bus_counters c;
	struct capture cap;
	uint8_t d[4];

	capture_start(&cap);
	for (uint64_t a = 0; a < 3000; a++)
		io_bus_mmio(bus, 0x10000000 + a * 4, d, 4, false);
	ck_assert_int_eq(capture_count(&cap, "no longer logging"), 1);
	io_bus_counters(bus, IO_SPACE_MMIO, &c);
	ck_assert_uint_eq(c.unhandled, 3000);
	ck_assert_uint_eq(c.unhandled_addrs, 1024);
	io_bus_destroy(bus);
}
END_TEST

START_TEST(stats_printed)
{
	struct io_bus *bus = new_bus();
	struct fake f = {.id = 1};
	struct err e = {0};
	uint8_t d[1] = {0};
	char *text = NULL;
	size_t size = 0;
	FILE *out;

	ck_assert_int_eq(io_bus_register_port(bus, 0x3f8, 8, fake_io, &f, "serial", &e), 0);
	io_bus_port(bus, 0x3f8, d, 1, true);
	io_bus_port(bus, 0x3fd, d, 1, false);
	io_bus_port(bus, 0x3fd, d, 1, false);
	out = open_memstream(&text, &size);
	ck_assert_ptr_nonnull(out);
	io_bus_print_stats(bus, out);
	fclose(out);
	ck_assert_ptr_nonnull(strstr(text, "io.port.serial@0x3f8.reads: 2\n"));
	ck_assert_ptr_nonnull(strstr(text, "io.port.serial@0x3f8.writes: 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "io.port.unhandled: 0\n"));
	ck_assert_ptr_nonnull(strstr(text, "io.mmio.unhandled: 0\n"));
	free(text);
	io_bus_destroy(bus);
}
END_TEST

/* Several "vCPU" threads hammer lookups at once: every access lands on the
 * right device and the counters add up exactly. */
struct hammer {
	struct io_bus *bus;
	unsigned seed;
	unsigned long wrong;
};

#define HAMMER_RANGES 64

/* Shared by several threads: touches nothing but an atomic counter. */
static int hammer_io(void *ctx, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct fake *f = ctx;

	(void)offset;
	__atomic_fetch_add(&f->calls, 1, __ATOMIC_RELAXED);
	if (!is_write)
		memset(data, f->id, size);
	return 0;
}
#define HAMMER_ITERS 200000

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;

	for (unsigned i = 0; i < HAMMER_ITERS; i++) {
		unsigned r = (unsigned)rand_r(&h->seed) % HAMMER_RANGES;
		uint8_t d[4];
		if (!io_bus_mmio(h->bus, 0x80000000ULL + r * 0x1000ULL + (i & 0xfff), d, 1, false) ||
		    d[0] != r)
			h->wrong++;
	}
	return NULL;
}

START_TEST(concurrent_lookups)
{
	struct io_bus *bus = new_bus();
	struct fake f[HAMMER_RANGES];
	struct hammer h[3];
	pthread_t t[3];
	struct io_bus_counters c;
	struct err e = {0};
	unsigned total = 0;

	for (unsigned i = 0; i < HAMMER_RANGES; i++) {
		f[i] = (struct fake){.id = (uint8_t)i};
		ck_assert_int_eq(io_bus_register_mmio(bus, 0x80000000ULL + i * 0x1000ULL, 0x1000,
						      hammer_io, &f[i], "r", &e), 0);
	}
	io_bus_seal(bus);
	for (int i = 0; i < 3; i++) {
		h[i] = (struct hammer){.bus = bus, .seed = (unsigned)i + 1};
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		ck_assert_uint_eq(h[i].wrong, 0);
	}
	for (unsigned i = 0; i < HAMMER_RANGES; i++)
		total += f[i].calls;
	ck_assert_uint_eq(total, 3 * HAMMER_ITERS);
	io_bus_counters(bus, IO_SPACE_MMIO, &c);
	ck_assert_uint_eq(c.handled, 3 * HAMMER_ITERS);
	ck_assert_uint_eq(c.unhandled, 0);
	io_bus_destroy(bus);
}
END_TEST

int main(void)
{
	/* Unhandled accesses are logged (once each) only with --verbose. */
	log_verbose = true;
	Suite *s = suite_create("iobus");
	TCase *tc = tcase_create("bus");
	tcase_add_test(tc, overlap_rejected);
	tcase_add_test(tc, lookup_edges);
	tcase_add_test(tc, unhandled_logged_once);
	tcase_add_test(tc, unhandled_log_capped);
	tcase_add_test(tc, stats_printed);
	tcase_add_test(tc, concurrent_lookups);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
