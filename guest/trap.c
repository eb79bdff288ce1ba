/* Any exception ends the run: report it on the serial port and exit with
 * status 2. Runs at CPL0 without the console lock (the faulting CPU may
 * hold it), so lines from two CPUs may interleave; better than silence. */
#include "kernel.h"

extern char kstacks[];

static uint64_t read_cr2(void)
{
	uint64_t v;

	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

void exception_report(const struct trap_frame *f)
{
	char buf[192];
	uint64_t cpu = ((uint64_t)f - (uint64_t)kstacks) / KSTACK_SIZE;
	int n;

	n = format(buf, sizeof(buf), "\nEXCEPTION vector=%lu error=0x%lx rip=0x%lx "
		   "cr2=0x%lx cs=0x%lx rsp=0x%lx cpu=%lu\n", f->vector, f->error,
		   f->rip, read_cr2(), f->cs, f->rsp, cpu);
	serial_write(buf, (size_t)n);
	n = format(buf, sizeof(buf), "FAIL exception vector=%lu\n", f->vector);
	serial_write(buf, (size_t)n);
	outb(HC_PORT_EXIT, GUEST_EXIT_EXCEPTION);
	for (;;)
		__asm__ volatile("cli; hlt");
}
