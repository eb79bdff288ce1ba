/* vmswitch-guest: the test kernel's internal contracts.
 *
 * Memory map (guest-physical):
 *   0x08000           AP real-mode trampoline (copied there by CPU 0 at CPL3)
 *   0x100000          kernel (pref_address): 32-bit entry at +0, 64-bit at +0x200
 *   0x400000 (HIGH_PA) start of RAM mapped at HIGH_VA; the work area begins
 *                     WORK_OFFSET bytes into it
 * Virtual: 0-4 GiB identity (2 MiB pages, user-accessible: CPL3 runs the
 * kernel image, reads boot_params/DTB, writes the trampoline and the xAPIC);
 * HIGH_VA.. maps HIGH_PA.. (up to HIGH_MAX) with 4 KiB pages in the even
 * 2 MiB chunks below SMALL_CHUNKS and 2 MiB pages elsewhere.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "vmswitch/hcall.h"
#include "vmswitch/pattern.h"
#include "layout.h"

#define PAGE_SIZE ((uint64_t)4096)

/* Filled at CPL0 before the first iretq, read at CPL3. */
struct boot_info {
	struct boot_params *bp;
	uint64_t cr3;          /* the page tables every CPU uses */
	uint64_t high_size;    /* bytes mapped at HIGH_VA (0: no RAM there) */
};

/* ---- CPL0 entry points (kernel.c; the rest is in kernel.h) ---- */
void kernel_main(struct boot_params *bp);
void ap_kernel_main(unsigned cpu);

/* ---- assembly (head.S, entry.S, trampoline.S); stacks (kernel.c) ---- */
extern char trampoline_start[], trampoline_end[];
extern char tr_cr3[], tr_stack[], tr_entry[], tr_cpu[];
void ap_entry64(void);
extern const uint64_t exception_stubs[32];
void load_segments(const void *gdtr, const void *idtr, uint16_t tss_sel);
__attribute__((noreturn)) void enter_user(void (*fn)(uint64_t), uint64_t rsp,
					  uint64_t arg);
uint64_t kstack_top(unsigned cpu);
uint64_t ustack_top(unsigned cpu);

/* ---- CPL3 ---- */
void user_main(uint64_t info);      /* CPU 0 */
void user_ap_main(uint64_t cpu);    /* the others */

/* lib.c: what gcc may call even when freestanding, and small string helpers */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* format.c: a small vsnprintf (%s %c %d %u %x %p, l/ll, width, 0-pad) */
int vformat(char *buf, size_t size, const char *fmt, va_list ap);
int format(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* console.c: polled 16550 at 0x3f8; CPL3 callers serialize on a lock */
struct console {
	volatile uint32_t lock;
};
void serial_init(void);
void serial_write(const char *s, size_t n);
void console_printf(struct console *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* cmdline.c */
struct params {
	uint64_t pages, rounds, seed, report, cpus;
	uint64_t stop;     /* forever: act as if the VMM said stop after N reports */
	uint64_t fault;    /* 1: #PF, 2: #GP at CPL3, 3: triple fault */
	int forever, corrupt;
	int chase;         /* rounds are dependent random loads, no rewrite */
	int cpus_given;
};
void params_default(struct params *p);
/* Unknown words are ignored (Linux options may be there); returns the
 * number of words it did not understand. */
int params_parse(struct params *p, const char *cmdline);

/* fdt.c: just enough of a flattened device tree reader */
#define FDT_MAX_CPUS 16
#define FDT_MAX_MEM  8
struct fdt_info {
	int valid;               /* a well-formed FDT was found */
	int vmswitch;            /* root compatible has "vmswitch,machine" */
	uint32_t hcall_port;     /* /vmswitch hcall-port, 0 if absent */
	uint32_t tsc_khz;        /* /vmswitch tsc-khz, 0 if absent */
	unsigned ncpus;          /* /cpus/cpu* nodes */
	uint32_t apic_id[FDT_MAX_CPUS];
	unsigned nmem;           /* /memory* reg ranges */
	uint64_t mem_base[FDT_MAX_MEM], mem_size[FDT_MAX_MEM];
};
int fdt_parse(const void *blob, uint64_t max_size, struct fdt_info *out);
/* Walk boot_params' setup_data chain for SETUP_DTB; NULL if none. */
const void *find_dtb(const struct boot_params *bp, uint64_t *size);

/* work.c: the CPL3 state shared by all CPUs (one instance, in user.c) */
#define TARGET_NONE (~0ULL)
#define LONG_GAP_MS 1   /* a gap this long counts as a stall (issue 3's target) */

struct cpu_state {
	volatile uint64_t round;        /* rounds completed */
	volatile uint64_t mismatches;
	volatile uint64_t max_gap;      /* TSC ticks between page iterations */
	volatile uint64_t recent_gap;   /* the same since CPU 0's last report */
	volatile uint64_t long_gaps;    /* gaps of LONG_GAP_MS or more */
	volatile uint64_t long_gap_tsc; /* and their sum, TSC ticks */
	volatile uint64_t checksum;     /* of this CPU's slice, at the end */
	volatile uint32_t alive, parked, done;
	int has_bad;
	uint64_t bad_pfn, bad_round;
	struct pattern_bad bad;
} __attribute__((aligned(64)));

struct guest {
	struct console con;
	const struct boot_info *info;
	struct params p;
	struct fdt_info dt;
	int hc_enabled;                 /* vmswitch DTB seen: use HC_REPORT */
	uint16_t hc_port;
	unsigned ncpus;
	volatile uint64_t *work;        /* HIGH_VA + WORK_OFFSET */
	uint64_t work_pfn;
	uint64_t tsc_khz;
	uint64_t long_gap;              /* LONG_GAP_MS in TSC ticks; 0: not counted */
	volatile uint32_t go;           /* APs start once CPU 0 set it */
	volatile uint32_t stop_req;     /* forever: the VMM asked us to finish */
	volatile uint64_t target;       /* rounds to run; TARGET_NONE: not yet known */
	struct cpu_state cpu[MAX_CPUS];
	struct hc_report rep;
	uint64_t reports;               /* progress reports sent (CPU 0) */
};

/* smp.c: INIT/SIPI/SIPI from CPL3 through the identity-mapped xAPIC;
 * starts CPUs 1..g->ncpus-1, each up at CPL3 before the next. */
int smp_start(struct guest *g);

void work_run(struct guest *g, unsigned cpu);
/* CPU 0, after its own slice: wait for the others, print, report, exit. */
__attribute__((noreturn)) void work_finish(struct guest *g);

/* CPL3 helpers */
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* One hypercall: the port goes in DX (ports above 0xff have no immediate
 * form), arguments in RDI/RSI as hcall.h says. */
static inline int32_t hcall(uint16_t base, uint32_t cmd, uint64_t a0, uint64_t a1)
{
	uint16_t port = base, rport = (uint16_t)(base + (HC_PORT_RESULT - HC_PORT_CMD));
	uint32_t res = cmd;

	__asm__ volatile("outl %%eax, %%dx\n\t"
			 "movw %w[rp], %%dx\n\t"
			 "inl %%dx, %%eax"
			 : "+a"(res), "+d"(port)
			 : [rp] "r"(rport), "D"(a0), "S"(a1)
			 : "memory");
	return (int32_t)res;
}

__attribute__((noreturn)) void guest_exit(int status);

#endif
