/* CPL3 entry points: configuration (command line, DTB), AP start-up, then
 * the work loop. Runs at native speed on our hosts, unlike CPL0. */
#include "guest.h"

/* All CPL3 state; .bss. The CPUs find it here (APs get only an index). */
static struct guest guest;

static uint64_t tsc_khz_from_cpuid(void)
{
	uint32_t a, b, c, d, max;

	__asm__ volatile("cpuid" : "=a"(max), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
	if (max >= 0x15) {
		__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x15), "c"(0));
		if (a && b && c)
			return (uint64_t)c * b / a / 1000;
	}
	if (max >= 0x16) {
		__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x16), "c"(0));
		return (uint64_t)(a & 0xffff) * 1000;
	}
	return 0;
}

static void read_dtb(struct guest *g)
{
	uint64_t size = 0;
	const void *dtb = find_dtb(g->info->bp, &size);

	if (!dtb) {
		console_printf(&g->con, "dtb: none\n");
		return;
	}
	if (fdt_parse(dtb, size, &g->dt) < 0) {
		console_printf(&g->con, "dtb: malformed (%lu bytes at %p), ignored\n", size, dtb);
		return;
	}
	console_printf(&g->con, "dtb: vmswitch=%d hcall-port=0x%x cpus=%u memory ranges=%u\n",
		       g->dt.vmswitch, g->dt.hcall_port, g->dt.ncpus, g->dt.nmem);
	for (unsigned i = 0; i < g->dt.nmem; i++)
		console_printf(&g->con, "dtb: memory 0x%lx-0x%lx\n", g->dt.mem_base[i],
			       g->dt.mem_base[i] + g->dt.mem_size[i]);
	if (!g->dt.vmswitch)
		return;
	g->hc_port = g->dt.hcall_port ? (uint16_t)g->dt.hcall_port : HC_PORT_CMD;
	/* The TSS I/O bitmap opens HC_PORT_FIRST..LAST only. */
	if (g->hc_port != HC_PORT_CMD)
		console_printf(&g->con, "dtb: hcall-port 0x%x is not 0x%x: no reports\n",
			       g->hc_port, HC_PORT_CMD);
	else
		g->hc_enabled = 1;
}

static void print_e820(struct guest *g)
{
	const struct boot_params *bp = g->info->bp;

	for (unsigned i = 0; i < bp->e820_entries && i < E820_MAX_ENTRIES_ZEROPAGE; i++)
		console_printf(&g->con, "e820: 0x%010lx-0x%010lx type %u\n",
			       (uint64_t)bp->e820_table[i].addr,
			       (uint64_t)(bp->e820_table[i].addr + bp->e820_table[i].size),
			       bp->e820_table[i].type);
}

/* Settle the run's shape; -1 (after saying why) if it cannot run. */
static int configure(struct guest *g)
{
	const struct boot_params *bp = g->info->bp;
	uint64_t cl = bp->hdr.cmd_line_ptr | (uint64_t)bp->ext_cmd_line_ptr << 32;
	uint64_t room = g->info->high_size > WORK_OFFSET ? g->info->high_size - WORK_OFFSET : 0;

	params_default(&g->p);
	if (cl && cl < (1ULL << 32)) {
		console_printf(&g->con, "cmdline: %s\n", (const char *)cl);
		params_parse(&g->p, (const char *)cl);
	}
	print_e820(g);
	read_dtb(g);
	g->ncpus = g->p.cpus_given ? (unsigned)g->p.cpus : (g->dt.ncpus ? g->dt.ncpus : 1);
	if (g->ncpus < 1 || g->ncpus > MAX_CPUS) {
		console_printf(&g->con, "FAIL config: cpus=%u (1..%u)\n", g->ncpus, MAX_CPUS);
		return -1;
	}
	if (g->p.pages < g->ncpus || g->p.pages > room / PAGE_SIZE) {
		console_printf(&g->con, "FAIL config: pages=%lu must be %u..%lu (RAM at 0x%x)\n",
			       g->p.pages, g->ncpus, room / PAGE_SIZE, HIGH_PA + WORK_OFFSET);
		return -1;
	}
	if (g->p.forever && g->p.report == 0)
		g->p.report = 1;
	g->work = (volatile uint64_t *)(HIGH_VA + WORK_OFFSET);
	g->work_pfn = (HIGH_PA + WORK_OFFSET) / PAGE_SIZE;
	g->tsc_khz = tsc_khz_from_cpuid();
	if (!g->tsc_khz)   /* the VMM's word (KVM_GET_TSC_KHZ) where CPUID has none */
		g->tsc_khz = g->dt.tsc_khz;
	g->long_gap = g->tsc_khz * LONG_GAP_MS;
	g->target = g->p.forever ? TARGET_NONE : g->p.rounds;
	console_printf(&g->con, "config: pages=%lu rounds=%lu seed=%lu report=%lu cpus=%u "
		       "forever=%d corrupt=%d work=0x%lx pfn=0x%lx tsc_khz=%lu\n",
		       g->p.pages, g->p.rounds, g->p.seed, g->p.report, g->ncpus,
		       g->p.forever, g->p.corrupt, (uint64_t)g->work, g->work_pfn, g->tsc_khz);
	return 0;
}

/* fault=N: prove that an exception is reported and ends the run. */
static void provoke_fault(struct guest *g)
{
	console_printf(&g->con, "fault=%lu: provoking an exception\n", g->p.fault);
	if (g->p.fault == 1) {
		(void)*(volatile uint64_t *)(HIGH_VA - PAGE_SIZE);  /* not mapped */
	} else if (g->p.fault == 3) {
		/* Triple fault: the identity map is user-writable, so wipe the IDT
		 * (found with sidt) and fault: #UD, #GP and #DF all find no gate. */
		struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
		__asm__ volatile("sidt %0" : "=m"(idtr));
		for (volatile uint8_t *p = (volatile uint8_t *)idtr.base; p <= (uint8_t *)idtr.base + idtr.limit; p++)
			*p = 0;
		__asm__ volatile("ud2");
	} else {
		__asm__ volatile("hlt");                         /* #GP at CPL3 */
	}
}

void user_main(uint64_t info)
{
	struct guest *g = &guest;

	g->info = (const struct boot_info *)info;
	serial_init();
	console_printf(&g->con, "vmswitch-guest: cpu0 at CPL3\n");
	if (configure(g) < 0)
		guest_exit(GUEST_EXIT_MISMATCH);
	if (g->p.fault)
		provoke_fault(g);
	g->cpu[0].alive = 1;
	if (g->ncpus > 1 && smp_start(g) < 0) {
		console_printf(&g->con, "FAIL smp: only some CPUs started\n");
		guest_exit(GUEST_EXIT_MISMATCH);
	}
	__atomic_store_n(&g->go, 1, __ATOMIC_RELEASE);
	work_run(g, 0);
	work_finish(g);
}

void user_ap_main(uint64_t cpu)
{
	struct guest *g = &guest;

	__atomic_store_n(&g->cpu[cpu].alive, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&g->go, __ATOMIC_ACQUIRE))
		cpu_relax();
	work_run(g, (unsigned)cpu);
	for (;;)
		cpu_relax();
}

void guest_exit(int status)
{
	outb(HC_PORT_EXIT, (uint8_t)status);
	/* Still here: no exit device. Nothing more to do at CPL3. */
	for (;;)
		cpu_relax();
}
