/* Application processors: started by CPU 0 from CPL3 with INIT/SIPI/SIPI
 * through the identity-mapped xAPIC (MMIO does not care about CPL), one at
 * a time because they share the trampoline's stack/index fields. */
#include "guest.h"

#define APIC_ID       (0x020 / 4)
#define APIC_SVR      (0x0f0 / 4)
#define APIC_ICR_LO   (0x300 / 4)
#define APIC_ICR_HI   (0x310 / 4)
#define SVR_ENABLE    0x100
#define ICR_BUSY      (1u << 12)
#define ICR_INIT      0x4500          /* INIT, level assert */
#define ICR_SIPI      0x4600          /* start-up, level assert */
#define TICKS_INIT    10000000ULL     /* >= 10 ms at any TSC rate >= 1 GHz */
#define TICKS_SIPI    200000ULL
#define TICKS_ALIVE   5000000000ULL   /* seconds: an AP's CPL0 start is emulated */

static void delay(uint64_t ticks)
{
	uint64_t t0 = rdtsc();

	while (rdtsc() - t0 < ticks)
		cpu_relax();
}

static void icr_send(volatile uint32_t *apic, uint32_t dest, uint32_t lo)
{
	apic[APIC_ICR_HI] = dest << 24;
	apic[APIC_ICR_LO] = lo;
	for (unsigned n = 0; n < 1000000 && (apic[APIC_ICR_LO] & ICR_BUSY); n++)
		cpu_relax();
}

static volatile void *tr_field(char *sym)
{
	return (volatile void *)(uintptr_t)(TRAMPOLINE_PA + (uint64_t)(sym - trampoline_start));
}

/* APIC id of the n-th AP (n >= 1): from the DTB when it lists enough CPUs,
 * else the ids 0, 1, 2... skipping our own. */
static uint32_t ap_apic_id(const struct fdt_info *dt, unsigned ncpus, uint32_t self,
			   unsigned n)
{
	uint32_t id = 0;

	if (dt && dt->ncpus >= ncpus && dt->ncpus <= FDT_MAX_CPUS) {
		for (unsigned i = 0, k = 0; i < dt->ncpus; i++)
			if (dt->apic_id[i] != self && ++k == n)
				return dt->apic_id[i];
	}
	for (unsigned k = 0;; id++)
		if (id != self && ++k == n)
			return id;
}

static int start_one(volatile uint32_t *apic, uint32_t id, unsigned cpu,
		     volatile uint32_t *alive)
{
	uint64_t t0;

	*(volatile uint32_t *)tr_field(tr_cpu) = cpu;
	*(volatile uint64_t *)tr_field(tr_stack) = kstack_top(cpu);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	icr_send(apic, id, ICR_INIT);
	delay(TICKS_INIT);
	icr_send(apic, id, ICR_SIPI | (TRAMPOLINE_PA >> 12));
	delay(TICKS_SIPI);
	if (!*alive)
		icr_send(apic, id, ICR_SIPI | (TRAMPOLINE_PA >> 12));
	for (t0 = rdtsc(); !*alive; cpu_relax())
		if (rdtsc() - t0 > TICKS_ALIVE)
			return -1;
	return 0;
}

int smp_start(struct guest *g)
{
	const struct fdt_info *dt = g->dt.valid ? &g->dt : 0;
	unsigned ncpus = g->ncpus;
	volatile uint32_t *apic = (volatile uint32_t *)(uintptr_t)LAPIC_PA;
	uint32_t self = apic[APIC_ID] >> 24;

	apic[APIC_SVR] = apic[APIC_SVR] | SVR_ENABLE | 0xff;
	memcpy((void *)(uintptr_t)TRAMPOLINE_PA, trampoline_start,
	       (size_t)(trampoline_end - trampoline_start));
	*(volatile uint64_t *)tr_field(tr_cr3) = g->info->cr3;
	*(volatile uint64_t *)tr_field(tr_entry) = (uint64_t)(uintptr_t)ap_entry64;
	for (unsigned cpu = 1; cpu < ncpus; cpu++) {
		uint32_t id = ap_apic_id(dt, ncpus, self, cpu);

		if (start_one(apic, id, cpu, &g->cpu[cpu].alive) < 0) {
			console_printf(&g->con, "cpu%u (apic id %u) did not start\n", cpu, id);
			return -1;
		}
		console_printf(&g->con, "cpu%u up (apic id %u)\n", cpu, id);
	}
	return 0;
}
