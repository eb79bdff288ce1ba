/* Intel MultiProcessor Specification 1.4 tables, so that a guest without
 * ACPI finds its APs (APIC ids 0..n-1) and one IOAPIC (id n) wired 1:1 to
 * ISA IRQs 0-15 (KVM's default GSI routing). */
#include <errno.h>
#include <string.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

#define MPC_SPEC_REV   4      /* 1.4 */
#define LAPIC_VERSION  0x14
#define IOAPIC_VERSION 0x11
#define ISA_IRQS       16

enum mpc_type { MP_PROC = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum mp_irq_type { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

struct mp_floating {
	char sig[4];          /* "_MP_" */
	uint32_t physptr;     /* configuration table */
	uint8_t length;       /* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature[5];   /* feature[0] == 0: a configuration table exists */
} __attribute__((packed));

struct mpc_header {
	char sig[4];          /* "PCMP" */
	uint16_t length;      /* base table, header included */
	uint8_t spec_rev;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oem_ptr;
	uint16_t oem_size;
	uint16_t count;       /* entries */
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apic_id, apic_ver, flags;  /* flags: 1 enabled, 2 BSP */
	uint32_t signature, features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, id;
	char name[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, id, ver, flags;
	uint32_t addr;
} __attribute__((packed));

struct mpc_int {
	uint8_t type, irq_type;
	uint16_t flags;       /* 0: polarity and trigger conform to the bus */
	uint8_t src_bus, src_irq, dst_id, dst_pin;
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating) == 16, "MP floating pointer");
_Static_assert(sizeof(struct mpc_header) == 44, "MP config header");
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry");
_Static_assert(sizeof(struct mpc_int) == 8, "MP interrupt entry");

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return (uint8_t)-sum;
}

static size_t table_size(unsigned ncpus)
{
	return sizeof(struct mpc_header) + ncpus * sizeof(struct mpc_cpu) +
	       sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
	       (ISA_IRQS + 2) * sizeof(struct mpc_int);
}

static uint8_t *add_cpus(uint8_t *p, unsigned ncpus)
{
	for (unsigned i = 0; i < ncpus; i++) {
		struct mpc_cpu c = {
			.type = MP_PROC, .apic_id = (uint8_t)i,
			.apic_ver = LAPIC_VERSION, .flags = 1 | (i == 0 ? 2 : 0),
			.signature = 0x600, /* family 6: only informative */
			.features = 0x201,  /* FPU, APIC */
		};
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
	}
	return p;
}

static uint8_t *add_int(uint8_t *p, uint8_t type, uint8_t irq_type,
			uint8_t src_irq, uint8_t dst_id, uint8_t dst_pin)
{
	struct mpc_int in = {.type = type, .irq_type = irq_type, .src_bus = 0,
			     .src_irq = src_irq, .dst_id = dst_id, .dst_pin = dst_pin};

	memcpy(p, &in, sizeof(in));
	return p + sizeof(in);
}

static uint8_t *add_ioapic_and_irqs(uint8_t *p, uint8_t ioapic_id)
{
	struct mpc_bus bus = {.type = MP_BUS, .id = 0, .name = {'I', 'S', 'A', ' ', ' ', ' '}};
	struct mpc_ioapic io = {.type = MP_IOAPIC, .id = ioapic_id,
				.ver = IOAPIC_VERSION, .flags = 1,
				.addr = (uint32_t)BOOT_IOAPIC_GPA};

	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	for (uint8_t irq = 0; irq < ISA_IRQS; irq++)
		p = add_int(p, MP_IOINT, MP_INT, irq, ioapic_id, irq);
	/* Every LAPIC: LINT0 takes the 8259's ExtINT, LINT1 is NMI. */
	p = add_int(p, MP_LINT, MP_EXTINT, 0, 0xff, 0);
	return add_int(p, MP_LINT, MP_NMI, 0, 0xff, 1);
}

int boot_mptable_build(unsigned ncpus, uint64_t table_gpa, void *table,
		       size_t size, size_t *len, uint8_t fp[16], struct err *e)
{
	struct mpc_header h = {
		.sig = {'P', 'C', 'M', 'P'}, .spec_rev = MPC_SPEC_REV,
		.oem = {'V', 'M', 'S', 'W', 'I', 'T', 'C', 'H'},
		.product = {'v', 'm', 's', 'w', 'i', 't', 'c', 'h', ' ', ' ', ' ', ' '},
		.count = (uint16_t)(ncpus + 1 + 1 + ISA_IRQS + 2),
		.lapic = (uint32_t)BOOT_LAPIC_GPA,
	};
	struct mp_floating f = {.sig = {'_', 'M', 'P', '_'}, .length = 1,
				.spec_rev = MPC_SPEC_REV};
	size_t need = table_size(ncpus);
	uint8_t *p = table;

	if (ncpus < 1 || ncpus > BOOT_MAX_CPUS)
		return err_set(e, EINVAL, "MP table: %u vCPUs, allowed 1..%u",
			       ncpus, BOOT_MAX_CPUS);
	if (need > size)
		return err_set(e, ENOSPC, "MP table: %zu bytes needed, %zu available",
			       need, size);
	h.length = (uint16_t)need;
	p = add_cpus(p + sizeof(h), ncpus);
	add_ioapic_and_irqs(p, (uint8_t)ncpus);
	memcpy(table, &h, sizeof(h));
	((struct mpc_header *)table)->checksum = checksum(table, need);
	f.physptr = (uint32_t)table_gpa;
	f.checksum = checksum(&f, sizeof(f));
	memcpy(fp, &f, sizeof(f));
	*len = need;
	return 0;
}
