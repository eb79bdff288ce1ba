/* What the nested (TCG-emulated SVM) KVM can do for vmswitch, and how fast:
 * a 64-bit guest (identity map, 2 MiB pages) runs phases that each end with a
 * port write; the host times them and checks dirty logging and userfaultfd
 * write-protect on memfd memory. Prints one line per phase ("ok"/"FAIL").
 * Usage: kvm_probe [loop_iterations] [port_exits] [touch_pages]
 * Exit status 0 if every phase passed. Built static, run via run.sh. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOW_SIZE (2u << 20)	/* slot 0: page tables, code, scratch */
#define TOUCH_GPA (64u << 20)	/* slot 1: memfd, dirty-logged */
#define PML4 0x1000u
#define PDPT 0x2000u
#define PD 0x3000u
#define CODE 0x10000u
#define SCRATCH 0x20000u	/* 64-byte aligned, for xsave/cmpxchg16b */
#define STACK 0x1ff000u

/* Guest code, copied to CODE. rdi=loop count, rsi=port exits,
 * rdx=touch base, r8=touch pages. Ports: 0x10 loop done, 0x11 each exit,
 * 0x12 touch done, 0x13 instructions done, 0x14 uffd write done. */
extern const uint8_t guest_start[], guest_end[];
__asm__(".pushsection .rodata\n"
	".globl guest_start, guest_end\n"
	"guest_start:\n"
	"  mov %rdx, %r9\n"
	"  mov %rdi, %rcx\n"
	"1: add $1, %rax\n  dec %rcx\n  jnz 1b\n"
	"  out %al, $0x10\n"
	"  mov %rsi, %rcx\n"
	"2: out %al, $0x11\n  dec %rcx\n  jnz 2b\n"
	"  mov %rdx, %rbx\n  mov %r8, %rcx\n"
	"3: movq $1, (%rbx)\n  add $4096, %rbx\n  dec %rcx\n  jnz 3b\n"
	"  out %al, $0x12\n"
	/* instructions that fail at CPL0 under kvm_pvm */
	"  mov $0x20000, %rbx\n"
	"  xor %eax, %eax\n  xor %edx, %edx\n  xor %ecx, %ecx\n  mov $1, %ebx\n"
	"  mov $0x20000, %rdi\n  lock cmpxchg16b (%rdi)\n"
	"  popcnt %rdi, %rax\n"
	"  xor %ecx, %ecx\n  xgetbv\n  or $3, %eax\n  xsetbv\n"
	"  mov $3, %eax\n  xor %edx, %edx\n  xsave (%rdi)\n  xrstor (%rdi)\n"
	"  movq %rdi, %xmm0\n  addps %xmm0, %xmm0\n  pclmulqdq $0, %xmm0, %xmm0\n"
	"  stmxcsr 512(%rdi)\n  ldmxcsr 512(%rdi)\n"
	"  rdtsc\n  fninit\n  fld1\n  fadd %st(0), %st(0)\n  fwait\n"
	"  out %al, $0x13\n"
	"  movq $2, (%r9)\n"
	"  out %al, $0x14\n"
	"  hlt\n"
	"guest_end:\n"
	".popsection\n");

struct probe {
	int kvm, vm, vcpu, memfd, uffd;
	uint8_t *low, *touch;
	size_t touch_size;
	struct kvm_run *run;
	unsigned long faults;
	int failed;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void result(struct probe *p, int ok, const char *fmt, double a)
{
	printf("%-4s ", ok ? "ok" : "FAIL");
	printf(fmt, a);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		p->failed = 1;
}

static void set_cpuid(struct probe *p)
{
	size_t n = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (!c)
		die("calloc");
	c->nent = (uint32_t)n;
	if (ioctl(p->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0)
		die("KVM_GET_SUPPORTED_CPUID");
	if (ioctl(p->vcpu, KVM_SET_CPUID2, c) < 0)
		die("KVM_SET_CPUID2");
	free(c);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t l)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xffffffff,
		.selector = sel, .type = type, .present = 1, .s = 1,
		.l = l, .db = !l, .g = 1 };
}

static void long_mode(struct probe *p)
{
	uint64_t *pml4 = (uint64_t *)(p->low + PML4);
	uint64_t *pdpt = (uint64_t *)(p->low + PDPT);
	uint64_t *pd = (uint64_t *)(p->low + PD);
	struct kvm_sregs s;

	pml4[0] = PDPT | 3;
	pdpt[0] = PD | 3;
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | 0x83;	/* present, writable, 2 MiB */
	if (ioctl(p->vcpu, KVM_GET_SREGS, &s) < 0)
		die("KVM_GET_SREGS");
	seg(&s.cs, 8, 11, 1);
	seg(&s.ds, 16, 3, 0);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.cr3 = PML4;
	s.cr4 = 0x20 | 0x200 | 0x400 | 0x40000;	/* PAE OSFXSR OSXMMEXCPT OSXSAVE */
	s.cr0 = 0x80050033;			/* PG WP NE ET MP PE */
	s.efer = 0x500;				/* LME LMA */
	if (ioctl(p->vcpu, KVM_SET_SREGS, &s) < 0)
		die("KVM_SET_SREGS");
}

/* Runs until the next port write and returns its port (-1 otherwise). */
static int run_to_port(struct probe *p)
{
	for (;;) {
		if (ioctl(p->vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			perror("KVM_RUN");
			return -1;
		}
		if (p->run->exit_reason == KVM_EXIT_IO)
			return p->run->io.port;
		printf("exit reason %u (8=shutdown, 17=internal error)\n",
		       p->run->exit_reason);
		return -1;
	}
}

static void *uffd_handler(void *arg)
{
	struct probe *p = arg;
	struct uffd_msg msg;
	struct pollfd pfd = { .fd = p->uffd, .events = POLLIN };

	while (poll(&pfd, 1, -1) > 0) {
		if (read(p->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_writeprotect wp = {
			.range = { .start = msg.arg.pagefault.address & ~0xfffull,
				   .len = 4096 },
			.mode = 0,	/* unprotect and wake */
		};
		/* Count first: unprotecting wakes the vCPU, which reads it. */
		__atomic_add_fetch(&p->faults, 1, __ATOMIC_SEQ_CST);
		if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
			die("UFFDIO_WRITEPROTECT (unprotect)");
	}
	return NULL;
}

/* Write-protects the first touch page (already mapped writable by NPT) with
 * userfaultfd, as vmswitch does while copying a page; the guest's write must
 * block until the handler thread unprotects it. */
static int setup_uffd_wp(struct probe *p)
{
	p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (p->uffd < 0)
		return perror("userfaultfd"), -1;
	struct uffdio_api api = { .api = UFFD_API,
		.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	if (ioctl(p->uffd, UFFDIO_API, &api) < 0)
		return perror("UFFDIO_API (WP_HUGETLBFS_SHMEM)"), -1;
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)p->touch, .len = p->touch_size },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0)
		return perror("UFFDIO_REGISTER (WP, memfd)"), -1;
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)p->touch, .len = 4096 },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		return perror("UFFDIO_WRITEPROTECT"), -1;
	pthread_t t;
	if (pthread_create(&t, NULL, uffd_handler, p))
		return -1;
	pthread_detach(t);
	return 0;
}

static unsigned long dirty_pages(struct probe *p)
{
	size_t pages = p->touch_size / 4096, words = (pages + 63) / 64;
	uint64_t *bm = calloc(words, 8);
	unsigned long n = 0;
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bm };

	if (!bm)
		die("calloc");
	if (ioctl(p->vm, KVM_GET_DIRTY_LOG, &log) < 0)
		die("KVM_GET_DIRTY_LOG");
	for (size_t i = 0; i < words; i++)
		n += (unsigned long)__builtin_popcountll(bm[i]);
	free(bm);
	return n;
}

static void setup(struct probe *p, unsigned long touch_pages)
{
	p->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (p->kvm < 0)
		die("open /dev/kvm");
	p->vm = ioctl(p->kvm, KVM_CREATE_VM, 0);
	if (p->vm < 0)
		die("KVM_CREATE_VM");
	p->low = mmap(NULL, LOW_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->low == MAP_FAILED)
		die("mmap low");
	memcpy(p->low + CODE, guest_start, (size_t)(guest_end - guest_start));
	p->touch_size = touch_pages * 4096;
	p->memfd = memfd_create("probe", MFD_CLOEXEC);
	if (p->memfd < 0 || ftruncate(p->memfd, (off_t)p->touch_size) < 0)
		die("memfd_create/ftruncate");
	p->touch = mmap(NULL, p->touch_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			p->memfd, 0);
	if (p->touch == MAP_FAILED)
		die("mmap memfd");
	struct kvm_userspace_memory_region r0 = { .slot = 0,
		.memory_size = LOW_SIZE, .userspace_addr = (uintptr_t)p->low };
	struct kvm_userspace_memory_region r1 = { .slot = 1,
		.flags = KVM_MEM_LOG_DIRTY_PAGES, .guest_phys_addr = TOUCH_GPA,
		.memory_size = p->touch_size, .userspace_addr = (uintptr_t)p->touch };
	if (ioctl(p->vm, KVM_SET_USER_MEMORY_REGION, &r0) < 0 ||
	    ioctl(p->vm, KVM_SET_USER_MEMORY_REGION, &r1) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	p->vcpu = ioctl(p->vm, KVM_CREATE_VCPU, 0);
	if (p->vcpu < 0)
		die("KVM_CREATE_VCPU");
	int sz = ioctl(p->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	p->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED,
		      p->vcpu, 0);
	if (p->run == MAP_FAILED)
		die("mmap kvm_run");
	set_cpuid(p);
	long_mode(p);
}

int main(int argc, char **argv)
{
	unsigned long loops = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000000;
	unsigned long exits = argc > 2 ? strtoul(argv[2], NULL, 0) : 2000;
	unsigned long pages = argc > 3 ? strtoul(argv[3], NULL, 0) : 2048;
	struct probe p = { .uffd = -1 };
	double t;
	int port;

	setup(&p, pages);
	struct kvm_regs regs = { .rip = CODE, .rsp = STACK, .rflags = 2,
		.rdi = loops, .rsi = exits, .rdx = TOUCH_GPA, .r8 = pages };
	if (ioctl(p.vcpu, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS");

	t = now();
	port = run_to_port(&p);
	t = now() - t;
	result(&p, port == 0x10, "64-bit guest loop: %.1f M guest insn/s",
	       3.0 * (double)loops / t / 1e6);

	t = now();
	for (unsigned long i = 0; i < exits && port >= 0x10; i++)
		port = run_to_port(&p);
	t = now() - t;
	result(&p, port == 0x11, "KVM_EXIT_IO round trip: %.1f us",
	       t / (double)exits * 1e6);

	t = now();
	port = run_to_port(&p);
	t = now() - t;
	result(&p, port == 0x12, "first touch of a 4 KiB memfd page (NPT fault): %.1f us",
	       t / (double)pages * 1e6);
	unsigned long d = dirty_pages(&p);
	result(&p, d == pages, "KVM_GET_DIRTY_LOG pages dirty: %.0f", (double)d);

	port = run_to_port(&p);
	result(&p, port == 0x13, "cmpxchg16b popcnt xsetbv xsave xrstor sse pclmul ldmxcsr x87 fwait at CPL0%s", 0);

	int uffd_ok = setup_uffd_wp(&p) == 0;
	t = now();
	port = uffd_ok ? run_to_port(&p) : -1;
	t = now() - t;
	printf("     (port 0x%x, uffd faults %lu, page value %u)\n", port,
	       p.faults, p.touch[0]);
	result(&p, port == 0x14 && p.faults == 1 && p.touch[0] == 2,
	       "guest write to uffd-wp memfd page blocks, resumes: %.1f us", t * 1e6);
	return p.failed;
}
