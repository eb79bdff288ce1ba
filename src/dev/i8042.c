/* The i8042 keyboard controller, reduced to what a VM without a keyboard
 * needs: the CPU-reset command Linux uses to reboot, and registers that tell
 * the probe nothing is there without stalling it (see dev.h). */
#include <stdlib.h>

#include "vmswitch/dev.h"

/* Status bits: output buffer full (data waiting for the CPU), input buffer
 * full (controller busy). Both stay clear. */
#define I8042_STATUS_IDLE 0x00

struct i8042 {
	struct i8042_ops ops;
	uint64_t resets;  /* atomic */
};

int i8042_create(const struct i8042_ops *ops, struct i8042 **out, struct err *e)
{
	struct i8042 *dev = calloc(1, sizeof(*dev));

	if (!dev)
		return err_sys(e, "allocating the i8042");
	dev->ops = *ops;
	*out = dev;
	return 0;
}

void i8042_destroy(struct i8042 *dev)
{
	free(dev);
}

void i8042_io(struct i8042 *dev, uint16_t port, uint8_t *data, bool is_write)
{
	if (!is_write) {
		*data = port == I8042_PORT_CMD ? I8042_STATUS_IDLE : 0;
		return;
	}
	if (port == I8042_PORT_CMD && *data == I8042_CMD_RESET) {
		__atomic_fetch_add(&dev->resets, 1, __ATOMIC_RELAXED);
		if (dev->ops.reset)
			dev->ops.reset(dev->ops.ctx);
	}
}

/* The controller is byte-wide: the low byte carries a wider access. */
static int bus_io(struct i8042 *dev, uint16_t port, uint8_t *data, unsigned size,
		  bool is_write)
{
	if (!is_write)
		for (unsigned i = 1; i < size; i++)
			data[i] = 0xff;
	i8042_io(dev, port, data, is_write);
	return 0;
}

static int data_port(void *ctx, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	(void)offset;
	return bus_io(ctx, I8042_PORT_DATA, data, size, is_write);
}

static int cmd_port(void *ctx, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	(void)offset;
	return bus_io(ctx, I8042_PORT_CMD, data, size, is_write);
}

int i8042_register(struct i8042 *dev, struct io_bus *bus, struct err *e)
{
	if (io_bus_register_port(bus, I8042_PORT_DATA, 1, data_port, dev, "i8042-data", e) < 0 ||
	    io_bus_register_port(bus, I8042_PORT_CMD, 1, cmd_port, dev, "i8042-cmd", e) < 0)
		return -1;
	return 0;
}

uint64_t i8042_resets(struct i8042 *dev)
{
	return __atomic_load_n(&dev->resets, __ATOMIC_RELAXED);
}
