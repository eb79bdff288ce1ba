/* Unit tests: the i8042 reset command and the idle registers Linux probes. */
#include <check.h>
#include <string.h>

#include "vmswitch/dev.h"

#include "check_run.h"

struct resets {
	int count;
};

static void on_reset(void *ctx)
{
	((struct resets *)ctx)->count++;
}

static struct i8042 *new_dev(struct resets *r)
{
	struct i8042_ops ops = {.ctx = r, .reset = on_reset};
	struct i8042 *dev;
	struct err e = {0};

	ck_assert_msg(i8042_create(&ops, &dev, &e) == 0, "%s", e.msg);
	return dev;
}

START_TEST(reset_through_bus)
{
	struct resets r = {0};
	struct i8042 *dev = new_dev(&r);
	struct io_bus *bus;
	struct err e = {0};
	uint8_t d;

	ck_assert_int_eq(io_bus_create(&bus, &e), 0);
	ck_assert_msg(i8042_register(dev, bus, &e) == 0, "%s", e.msg);
	/* Other commands (read CTR, self-test, disable ports) do nothing. */
	static const uint8_t cmds[] = {0x20, 0xaa, 0xad, 0xa7, 0xd1, 0xff, 0xfd};
	for (size_t i = 0; i < sizeof(cmds); i++) {
		d = cmds[i];
		ck_assert(io_bus_port(bus, I8042_PORT_CMD, &d, 1, true));
	}
	d = I8042_CMD_RESET;
	ck_assert(io_bus_port(bus, I8042_PORT_DATA, &d, 1, true));  /* data port: not a command */
	ck_assert_int_eq(r.count, 0);
	ck_assert(io_bus_port(bus, I8042_PORT_CMD, &d, 1, true));
	ck_assert_int_eq(r.count, 1);
	ck_assert_uint_eq(i8042_resets(dev), 1);
	/* Linux's reboot path repeats the pulse: each one is reported. */
	ck_assert(io_bus_port(bus, I8042_PORT_CMD, &d, 1, true));
	ck_assert_int_eq(r.count, 2);
	/* Registered exactly 0x60 and 0x64: port 0x61 is KVM's (speaker). */
	ck_assert(!io_bus_port(bus, 0x61, &d, 1, false));
	ck_assert(!io_bus_port(bus, 0x65, &d, 1, false));
	io_bus_destroy(bus);
	i8042_destroy(dev);
}
END_TEST

START_TEST(idle_registers)
{
	struct resets r = {0};
	struct i8042 *dev = new_dev(&r);
	uint8_t d[4];

	/* Status: output buffer empty (bit 0), input buffer empty (bit 1). */
	memset(d, 0x5a, sizeof(d));
	i8042_io(dev, I8042_PORT_CMD, d, false);
	ck_assert_uint_eq(d[0] & 0x03, 0);
	i8042_io(dev, I8042_PORT_DATA, d, false);
	ck_assert_uint_eq(d[0], 0);
	/* Even right after a command that would normally produce a reply. */
	d[0] = 0xaa;
	i8042_io(dev, I8042_PORT_CMD, d, true);
	i8042_io(dev, I8042_PORT_CMD, d, false);
	ck_assert_uint_eq(d[0] & 0x01, 0);
	/* A reset without a callback is counted and harmless. */
	struct i8042_ops none = {0};
	struct i8042 *bare;
	struct err e = {0};
	ck_assert_int_eq(i8042_create(&none, &bare, &e), 0);
	d[0] = I8042_CMD_RESET;
	i8042_io(bare, I8042_PORT_CMD, d, true);
	ck_assert_uint_eq(i8042_resets(bare), 1);
	ck_assert_int_eq(r.count, 0);
	i8042_destroy(bare);
	i8042_destroy(dev);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("i8042");
	TCase *tc = tcase_create("i8042");
	tcase_add_test(tc, reset_through_bus);
	tcase_add_test(tc, idle_registers);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
