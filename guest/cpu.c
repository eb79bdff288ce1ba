/* Per-CPU descriptor tables: GDT with user segments, a TSS whose I/O bitmap
 * opens the serial and hypercall ports to CPL3 (our hosts strip IOPL), and
 * the shared IDT of exception stubs. */
#include "kernel.h"

#define GDT_CODE32 0x00cf9b000000ffffULL
#define GDT_KCODE  0x00af9b000000ffffULL
#define GDT_KDATA  0x00cf93000000ffffULL
#define GDT_UCODE  0x00affb000000ffffULL /* DPL3, L=1 */
#define GDT_UDATA  0x00cff3000000ffffULL /* DPL3 */
#define TSS_AVAIL  0x89ULL
#define GATE_INTR  0x8e

struct table_reg {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

void idt_build(struct idt_entry *idt)
{
	for (unsigned v = 0; v < 32; v++) {
		uint64_t a = exception_stubs[v];

		idt[v] = (struct idt_entry){
			.off_lo = a & 0xffff, .sel = SEL_KCODE, .type = GATE_INTR,
			.off_mid = (a >> 16) & 0xffff, .off_hi = a >> 32,
		};
	}
}

static void iomap_allow(struct tss *t, unsigned first, unsigned last)
{
	for (unsigned p = first; p <= last; p++)
		t->iomap[p / 8] &= (uint8_t)~(1u << (p % 8));
}

static void tss_init(struct tss *t, uint64_t rsp0)
{
	memset(t, 0, sizeof(*t));
	t->rsp[0] = rsp0;
	t->iomap_base = offsetof(struct tss, iomap);
	memset(t->iomap, 0xff, sizeof(t->iomap));
	iomap_allow(t, 0x3f8, 0x3ff);
	iomap_allow(t, HC_PORT_FIRST, HC_PORT_LAST);
}

static void gdt_init(uint64_t *gdt, const struct tss *t)
{
	uint64_t base = (uint64_t)t, limit = sizeof(*t) - 1;

	gdt[0] = 0;
	gdt[1] = GDT_CODE32;
	gdt[2] = GDT_KCODE;
	gdt[3] = GDT_KDATA;
	gdt[4] = GDT_UCODE;
	gdt[5] = GDT_UDATA;
	gdt[6] = (limit & 0xffff) | (base & 0xffffff) << 16 | TSS_AVAIL << 40 |
		 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[7] = base >> 32;
}

void cpu_load(struct kernel *k, unsigned cpu)
{
	struct cpu_local *c = &k->cpu[cpu];
	struct table_reg gdtr = { sizeof(c->gdt) - 1, (uint64_t)c->gdt };
	struct table_reg idtr = { sizeof(k->idt) - 1, (uint64_t)k->idt };

	tss_init(&c->tss, kstack_top(cpu));
	gdt_init(c->gdt, &c->tss);
	load_segments(&gdtr, &idtr, SEL_TSS);
}
