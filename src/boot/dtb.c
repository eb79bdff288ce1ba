/* The flattened device tree vmswitch hands to its guests as SETUP_DTB
 * setup_data. Linux uses only what it understands; our test kernel reads its
 * whole configuration from it:
 *   /            compatible "vmswitch,machine", #address-cells = #size-cells = 2
 *   /chosen      bootargs
 *   /memory@GPA  device_type "memory", reg <gpa size>, one per RAM region
 *   /cpus        cpu@N (device_type "cpu", reg N = APIC id), N < ncpus
 *   /serial@PORT compatible "ns16550a", reg <port 8> (I/O space), interrupts <irq>
 *   /vmswitch    hcall-port (u32), mode (string), tsc-khz (u32, if known: the
 *                test kernel times its stalls with rdtsc, and not every host
 *                gives a CPUID leaf with the frequency)
 */
#include <errno.h>
#include <stdio.h>

#include <libfdt.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#define UART_CLOCK 1843200

static int reg64(void *fdt, uint64_t addr, uint64_t size)
{
	fdt64_t cells[2] = {cpu_to_fdt64(addr), cpu_to_fdt64(size)};

	return fdt_property(fdt, "reg", cells, sizeof(cells));
}

static int add_root_props(void *fdt, const struct boot_params_cfg *cfg)
{
	int rc = fdt_property_string(fdt, "compatible", "vmswitch,machine");

	if (rc == 0)
		rc = fdt_property_u32(fdt, "#address-cells", 2);
	if (rc == 0)
		rc = fdt_property_u32(fdt, "#size-cells", 2);
	if (rc == 0)
		rc = fdt_begin_node(fdt, "chosen");
	if (rc == 0)
		rc = fdt_property_string(fdt, "bootargs", cfg->cmdline ? cfg->cmdline : "");
	return rc ? rc : fdt_end_node(fdt);
}

static int add_memory(void *fdt, const struct mem_layout *l)
{
	char name[32];
	int rc = 0;

	for (unsigned i = 0; i < l->nr && rc == 0; i++) {
		snprintf(name, sizeof(name), "memory@%llx", (unsigned long long)l->r[i].gpa);
		rc = fdt_begin_node(fdt, name);
		if (rc == 0)
			rc = fdt_property_string(fdt, "device_type", "memory");
		if (rc == 0)
			rc = reg64(fdt, l->r[i].gpa, l->r[i].size);
		if (rc == 0)
			rc = fdt_end_node(fdt);
	}
	return rc;
}

static int add_cpus(void *fdt, unsigned ncpus)
{
	char name[32];
	int rc = fdt_begin_node(fdt, "cpus");

	if (rc == 0)
		rc = fdt_property_u32(fdt, "#address-cells", 1);
	if (rc == 0)
		rc = fdt_property_u32(fdt, "#size-cells", 0);
	for (unsigned i = 0; i < ncpus && rc == 0; i++) {
		snprintf(name, sizeof(name), "cpu@%x", i);
		rc = fdt_begin_node(fdt, name);
		if (rc == 0)
			rc = fdt_property_string(fdt, "device_type", "cpu");
		if (rc == 0)
			rc = fdt_property_u32(fdt, "reg", i);
		if (rc == 0)
			rc = fdt_end_node(fdt);
	}
	return rc ? rc : fdt_end_node(fdt);
}

static int add_serial(void *fdt, uint16_t port, uint8_t irq)
{
	char name[32];
	int rc;

	snprintf(name, sizeof(name), "serial@%x", port);
	rc = fdt_begin_node(fdt, name);
	if (rc == 0)
		rc = fdt_property_string(fdt, "compatible", "ns16550a");
	if (rc == 0)
		rc = reg64(fdt, port, 8);
	if (rc == 0)
		rc = fdt_property_u32(fdt, "interrupts", irq);
	if (rc == 0)
		rc = fdt_property_u32(fdt, "clock-frequency", UART_CLOCK);
	return rc ? rc : fdt_end_node(fdt);
}

static int add_vmswitch(void *fdt, const struct boot_params_cfg *cfg)
{
	int rc = fdt_begin_node(fdt, "vmswitch");

	if (rc == 0)
		rc = fdt_property_u32(fdt, "hcall-port", cfg->hcall_port);
	if (rc == 0)
		rc = fdt_property_string(fdt, "mode", cfg->mode ? cfg->mode : "passthrough");
	if (rc == 0 && cfg->tsc_khz)
		rc = fdt_property_u32(fdt, "tsc-khz", cfg->tsc_khz);
	return rc ? rc : fdt_end_node(fdt);
}

int boot_dtb_build(const struct boot_params_cfg *cfg,
		   const struct mem_layout *l, void *buf, size_t size,
		   struct err *e)
{
	uint16_t port = cfg->serial_port ? cfg->serial_port : 0x3f8;
	uint8_t irq = cfg->serial_irq ? cfg->serial_irq : 4;
	int rc;

	if (cfg->ncpus < 1 || cfg->ncpus > BOOT_MAX_CPUS)
		return err_set(e, EINVAL, "device tree: %u vCPUs, allowed 1..%u",
			       cfg->ncpus, BOOT_MAX_CPUS);
	rc = fdt_create(buf, (int)MIN(size, (size_t)INT32_MAX));
	if (rc == 0)
		rc = fdt_finish_reservemap(buf);
	if (rc == 0)
		rc = fdt_begin_node(buf, "");
	if (rc == 0)
		rc = add_root_props(buf, cfg);
	if (rc == 0)
		rc = add_memory(buf, l);
	if (rc == 0)
		rc = add_cpus(buf, cfg->ncpus);
	if (rc == 0)
		rc = add_serial(buf, port, irq);
	if (rc == 0)
		rc = add_vmswitch(buf, cfg);
	if (rc == 0)
		rc = fdt_end_node(buf);
	if (rc == 0)
		rc = fdt_finish(buf);
	if (rc < 0)
		return err_set(e, rc == -FDT_ERR_NOSPACE ? ENOSPC : EINVAL,
			       "device tree: %s (buffer %zu bytes)", fdt_strerror(rc), size);
	return 0;
}
