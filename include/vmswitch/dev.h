/* dev/: the I/O bus that routes the vCPUs' port and MMIO exits to device
 * models, and the small legacy PC devices (i8042 reset). The 16550A UART has
 * its own header, serial.h.
 */
#ifndef VMSWITCH_DEV_H
#define VMSWITCH_DEV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vmswitch/err.h"

/* ---- I/O bus -------------------------------------------------------------
 *
 * Two address spaces (16-bit ports and 64-bit guest-physical MMIO), each a
 * sorted array of non-overlapping ranges searched by binary search.
 *
 * Threading: register every range before the vCPU threads start (and then
 * call io_bus_seal()). After that the range arrays never change, so
 * io_bus_port()/io_bus_mmio() read them without a lock from any number of
 * vCPU threads; per-range counters are updated atomically. Only the rare
 * unhandled-access path takes a mutex (for its once-per-address log).
 */

/* A device's handler. `offset` is relative to the start of its range; `data`
 * holds `size` bytes (1, 2, 4, or up to 8 for MMIO) in guest (little-endian)
 * order: to be filled on a read, to be consumed on a write. An access that
 * starts inside a range is given to it even if it runs past the range's end.
 * Return 0 when handled, -1 when this offset is not implemented: the bus then
 * treats the access as unhandled (counted for `stats`, logged once with --verbose, reads all-ones).
 * Called from vCPU threads, possibly several at once. */
typedef int io_handler_fn(void *ctx, uint64_t offset, uint8_t *data, unsigned size,
			  bool is_write);

enum io_space { IO_SPACE_PORT, IO_SPACE_MMIO };

/* Port 0x80, the POST-code port: writes are dropped without a warning. */
#define IO_PORT_POST 0x80

struct io_bus;

int io_bus_create(struct io_bus **out, struct err *e);
void io_bus_destroy(struct io_bus *bus);

/* Claim [base, base+len) in one space. Fails (EEXIST) if it overlaps a range
 * already registered, (EINVAL) on an empty or wrapping range, (EBUSY) after
 * io_bus_seal(). `name` is copied (shown in stats and warnings). */
int io_bus_register(struct io_bus *bus, enum io_space space, uint64_t base, uint64_t len,
		    io_handler_fn *fn, void *ctx, const char *name, struct err *e);
int io_bus_register_port(struct io_bus *bus, uint16_t base, uint16_t len,
			 io_handler_fn *fn, void *ctx, const char *name, struct err *e);
int io_bus_register_mmio(struct io_bus *bus, uint64_t base, uint64_t len,
			 io_handler_fn *fn, void *ctx, const char *name, struct err *e);
/* No more registrations: documents (and enforces) the lock-free lookup rule. */
void io_bus_seal(struct io_bus *bus);

/* Dispatch one access from a KVM_EXIT_IO (one element of a rep string: the
 * caller loops over `count`) or a KVM_EXIT_MMIO. Returns true if a device
 * handled it; false if it was unhandled (reads were filled with 0xff). */
bool io_bus_port(struct io_bus *bus, uint16_t port, uint8_t *data, unsigned size,
		 bool is_write);
bool io_bus_mmio(struct io_bus *bus, uint64_t gpa, uint8_t *data, unsigned size,
		 bool is_write);

struct io_bus_counters {
	uint64_t handled;          /* accesses given to a device */
	uint64_t unhandled;        /* accesses nobody claimed */
	uint64_t unhandled_addrs;  /* distinct unclaimed addresses seen (capped) */
	uint64_t post_codes;       /* port space only: writes to IO_PORT_POST */
	uint8_t last_post_code;
};
void io_bus_counters(struct io_bus *bus, enum io_space space, struct io_bus_counters *out);
/* "name: value" lines for the monitor's `stats`, one pair per range plus totals. */
void io_bus_print_stats(struct io_bus *bus, FILE *out);

/* ---- i8042 keyboard controller (only what a VM without a keyboard needs) --
 *
 * Port 0x64 write 0xFE (pulse the reset line) calls ops.reset: the VM ends
 * the run as a guest reboot. Status (0x64) reads "output buffer empty, input
 * buffer empty" so Linux's probe times out and moves on and its reboot path's
 * kb_wait() passes at once; data (0x60) reads 0; other writes are ignored.
 * Port 0x61 (port B / PC speaker) is not ours: the VM creates KVM's PIT with
 * KVM_PIT_SPEAKER_DUMMY, which makes KVM emulate it with the real PIT
 * channel-2 gate and OUT2 that Linux's PIT calibration polls.
 */
#define I8042_PORT_DATA    0x60
#define I8042_PORT_CMD     0x64
#define I8042_CMD_RESET    0xfe

struct i8042_ops {
	void *ctx;
	void (*reset)(void *ctx);  /* from a vCPU thread */
};

struct i8042;
int i8042_create(const struct i8042_ops *ops, struct i8042 **out, struct err *e);
void i8042_destroy(struct i8042 *dev);
/* Handle one byte access; `port` is the absolute port (0x60 or 0x64). */
void i8042_io(struct i8042 *dev, uint16_t port, uint8_t *data, bool is_write);
/* Claim ports 0x60 and 0x64 on the bus. */
int i8042_register(struct i8042 *dev, struct io_bus *bus, struct err *e);
/* Reset requests seen so far (for stats and tests). */
uint64_t i8042_resets(struct i8042 *dev);

#endif
