/* The hypercall port: how our test kernel talks to vmswitch.
 *
 * Shared by the VMM (src/dev/hcall.c) and the test kernel (guest/), so it must
 * stay freestanding: no libc headers beyond <stdint.h>.
 *
 * Calling convention (works from CPL3 through the TSS I/O bitmap):
 *   rdi, rsi, rdx = arguments (guest-VIRTUAL addresses for buffers; vmswitch
 *                   reads them through its composed GVA->GPA->MFN path)
 *   outl %eax, $HC_PORT_CMD       eax = HC_* command
 *   inl  $HC_PORT_RESULT, %eax    result of this vCPU's last command
 *                                 (0 = ok, negative errno on failure;
 *                                 HC_REPORT: HC_REPORT_FINISH asks the guest
 *                                 to finish its run)
 *   (The ports are above 0xff, so the guest really uses outl %eax, %dx with
 *   DX = the port: RDX cannot carry an argument, and no command takes one.)
 *   outb %al, $HC_PORT_EXIT       power off with exit status al. Under QEMU,
 *                                 `-device isa-debug-exit,iobase=0x508,iosize=1`
 *                                 gives exit status (al << 1) | 1.
 * The serial console (0x3f8) stays the guest's text output; HC_REPORT carries
 * machine-readable results.
 */
#ifndef VMSWITCH_HCALL_H
#define VMSWITCH_HCALL_H

#include <stdint.h>

#define HC_PORT_CMD    0x500
#define HC_PORT_RESULT 0x504
#define HC_PORT_EXIT   0x508
#define HC_PORT_FIRST  0x500
#define HC_PORT_LAST   0x50b

enum hc_cmd {
	HC_NOP     = 0,  /* exits to the VMM and back: measures a round trip */
	HC_REPORT  = 1,  /* rdi = GVA of struct hc_report: progress/result.
			    Result HC_REPORT_FINISH (1): please finish. A guest
			    in `forever` mode then stops every CPU at the same
			    round, verifies, sends a report with final = 1 and
			    exits through HC_PORT_EXIT. 0: keep going. */
	HC_REQUEST = 2,  /* rdi = GVA of a NUL-terminated monitor command, rsi = its
			    length; runs it as if typed at the monitor, result 0/-errno */
	HC_PUTS    = 3,  /* rdi = GVA of a string, rsi = length: log line on stderr */
};

#define HC_REPORT_MAGIC 0x56534750u /* "PGSV" */
#define HC_REPORT_FINISH 1           /* HC_REPORT result: finish the run */

/* Written by the guest, read by the VMM through the composed translation path. */
struct hc_report {
	uint32_t magic;         /* HC_REPORT_MAGIC */
	uint32_t final;         /* 1 on the last report of a run */
	uint64_t round;         /* verify/rewrite rounds completed */
	uint64_t pages;         /* pages in the work area */
	uint64_t mismatches;    /* words that did not hold their expected value */
	uint64_t checksum;      /* checksum of the work area after the last round */
	uint64_t max_gap_tsc;   /* longest gap between loop iterations, TSC ticks */
	uint64_t tsc_khz;       /* guest's TSC frequency estimate (0 if unknown) */
	uint64_t work_gva;      /* virtual address of the work area */
	uint64_t work_gpa;      /* its first physical address */
	uint64_t recent_gap_tsc; /* longest gap since the previous report */
	uint64_t long_gaps;     /* gaps of a millisecond or more since boot (0 if the
				   guest does not know its TSC frequency) */
	uint64_t long_gap_tsc;  /* their sum, TSC ticks */
};

#endif
