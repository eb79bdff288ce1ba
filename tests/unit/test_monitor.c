/* Unit tests of the monitor: every command through the unix socket against
 * a fake VM backed by a REAL mem, whose "guest" is a host thread writing
 * PFN-tagged words through mem_gpa_hva and checking it never loses one. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmswitch/mem.h"
#include "vmswitch/mmu.h"
#include "vmswitch/monitor.h"
#include "vmswitch/util.h"

#include "check_run.h"

#define RAM (4 * MiB)
#define SPARE (2 * MiB)
#define RAM_PAGES (RAM / PAGE_SIZE)
#define WRITER_FIRST 0x100   /* the writer owns PFNs [0x100, RAM_PAGES) */
#define DATA_GPA 0x10000ULL  /* what GVA 0x400000 maps to */

/* ---- the fake VM --------------------------------------------------------- */

struct fake_vm {
	struct mem *mem;
	struct mmu *mmu;
	struct monitor *mon;
	struct mmu_cpu paging;
	unsigned pause_delay_us;
	atomic_int in_pause, overlaps, pauses, resumes, quits, finishes;
	char path[108];
};

static unsigned fake_count(void *ctx)
{
	(void)ctx;
	return 1;
}

static int fake_vcpu_info(void *ctx, unsigned id, struct monitor_vcpu_info *out, struct err *e)
{
	struct fake_vm *vm = ctx;

	if (id != 0)
		return err_set(e, EINVAL, "no vCPU %u", id);
	out->state = "running";
	out->rip = 0xffffffff81000000ULL;
	out->paging = vm->paging;
	return 0;
}

static int fake_pause(void *ctx, struct err *e)
{
	struct fake_vm *vm = ctx;

	(void)e;
	if (atomic_fetch_add(&vm->in_pause, 1) != 0)
		atomic_fetch_add(&vm->overlaps, 1);
	usleep(vm->pause_delay_us);
	atomic_fetch_sub(&vm->in_pause, 1);
	atomic_fetch_add(&vm->pauses, 1);
	return 0;
}

static void fake_resume(void *ctx) { atomic_fetch_add(&((struct fake_vm *)ctx)->resumes, 1); }
static void fake_quit(void *ctx) { atomic_fetch_add(&((struct fake_vm *)ctx)->quits, 1); }
static void fake_finish(void *ctx) { atomic_fetch_add(&((struct fake_vm *)ctx)->finishes, 1); }

static void fake_stats(void *ctx, FILE *out)
{
	(void)ctx;
	fprintf(out, "exits_io: 42\n");
}

static uint64_t *gpa_word(struct fake_vm *vm, uint64_t gpa)
{
	uint64_t *p = mem_gpa_hva(vm->mem, gpa);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* 4-level tables: GVA 0x400000 -> GPA 0x10000 (4 KiB), GVA 0x600000 -> GPA
 * 0x200000 (2 MiB page), nothing else. */
static void build_page_tables(struct fake_vm *vm)
{
	*gpa_word(vm, 0x1000) = 0x2000 | 7;
	*gpa_word(vm, 0x2000) = 0x3000 | 7;
	*gpa_word(vm, 0x3000 + 2 * 8) = 0x4000 | 7;
	*gpa_word(vm, 0x3000 + 3 * 8) = 0x200000 | 0x80 | 3;
	*gpa_word(vm, 0x4000) = DATA_GPA | 7;
	gpa_word(vm, DATA_GPA)[0] = 0x1111111111111111ULL;
	gpa_word(vm, DATA_GPA)[1] = 0x2222222222222222ULL;
	vm->paging = (struct mmu_cpu){.cr0 = 0x80000011, .cr3 = 0x1000, .cr4 = 0x20, .efer = 0x500};
}

static void fake_vm_start(struct fake_vm *vm, bool listen)
{
	static unsigned seq;
	struct mem_config cfg = {.ram_size = RAM, .spare_size = SPARE, .backmap = BACKMAP_LIST,
				 .hugepages = HUGEPAGES_OFF};
	struct mem_ops ops = {0};
	struct monitor_target t;
	struct err e = {0};

	memset(vm, 0, sizeof(*vm));
	ck_assert_msg(mem_create(&cfg, &ops, &vm->mem, &e) == 0, "mem_create: %s", e.msg);
	ck_assert_msg(mmu_create(vm->mem, 64, &vm->mmu, &e) == 0, "%s", e.msg);
	build_page_tables(vm);
	t = (struct monitor_target){.ctx = vm, .mem = vm->mem, .mmu = vm->mmu,
		.vcpu_count = fake_count, .vcpu_info = fake_vcpu_info, .pause = fake_pause,
		.resume = fake_resume, .quit = fake_quit, .print_stats = fake_stats,
		.guest_finish = fake_finish};
	ck_assert_msg(monitor_create(&t, &vm->mon, &e) == 0, "%s", e.msg);
	snprintf(vm->path, sizeof(vm->path), "/tmp/vmsmon-%d-%u.sock", (int)getpid(), seq++);
	if (listen)
		ck_assert_msg(monitor_listen_unix(vm->mon, vm->path, &e) == 0, "%s", e.msg);
}

static void fake_vm_stop(struct fake_vm *vm)
{
	monitor_destroy(vm->mon);
	mmu_destroy(vm->mmu);
	mem_destroy(vm->mem);
}

/* ---- the stand-in guest ------------------------------------------------- */

struct writer {
	struct fake_vm *vm;
	pthread_t thread;
	atomic_bool stop;
	uint64_t rounds, writes, lost;
	uint64_t last[RAM_PAGES];
	unsigned slot[RAM_PAGES];
};

/* Each round, per page: check the word written last time still holds its
 * value, then write a new tagged value into the next word. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(&w->stop)) {
		for (uint64_t pfn = WRITER_FIRST; pfn < RAM_PAGES; pfn++) {
			volatile uint64_t *p = mem_gpa_hva(w->vm->mem, pfn << PAGE_SHIFT);
			if (p[w->slot[pfn]] != w->last[pfn])
				w->lost++;
			w->slot[pfn] = (w->slot[pfn] + 1) % 512;
			w->last[pfn] = pfn << 32 | (w->rounds & 0xffffffff);
			p[w->slot[pfn]] = w->last[pfn];
			w->writes++;
		}
		w->rounds++;
	}
	return NULL;
}

static void writer_start(struct writer *w, struct fake_vm *vm)
{
	memset(w, 0, sizeof(*w));
	w->vm = vm;
	ck_assert_int_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static uint64_t writer_stop(struct writer *w)
{
	uint64_t lost;

	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	lost = w->lost;
	for (uint64_t pfn = WRITER_FIRST; pfn < RAM_PAGES; pfn++) {
		volatile uint64_t *p = mem_gpa_hva(w->vm->mem, pfn << PAGE_SHIFT);
		if (p[w->slot[pfn]] != w->last[pfn])
			lost++;
	}
	return lost;
}

/* ---- a socket client ------------------------------------------------------ */

struct conn {
	int fd;
	FILE *rd;
};

static void conn_open(struct conn *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 30};

	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c->fd, 0);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		      path, strerror(errno));
	/* A hang fails the test instead of stalling it. */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->rd = fdopen(dup(c->fd), "r");
	ck_assert_ptr_nonnull(c->rd);
}

static void conn_close(struct conn *c)
{
	fclose(c->rd);
	close(c->fd);
}

static void conn_send(struct conn *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Read one reply: output lines into *out (may be NULL), the final line into
 * final. Returns 0 for ok, 1 for error. */
static int conn_reply(struct conn *c, char **out, char *final, size_t flen)
{
	char *line = NULL, *acc = NULL;
	size_t cap = 0, acclen = 0;
	ssize_t n;
	int rc = -1;

	while ((n = getline(&line, &cap, c->rd)) > 0) {
		if (strcmp(line, "ok\n") == 0 || strncmp(line, "error:", 6) == 0) {
			rc = line[0] == 'o' ? 0 : 1;
			snprintf(final, flen, "%s", line);
			break;
		}
		acc = realloc(acc, acclen + (size_t)n + 1);
		memcpy(acc + acclen, line, (size_t)n + 1);
		acclen += (size_t)n;
	}
	ck_assert_msg(rc >= 0, "connection ended before the final line");
	free(line);
	if (out)
		*out = acc ? acc : strdup("");
	else
		free(acc);
	return rc;
}

static int cmd(struct conn *c, const char *line, char **out, char *final, size_t flen)
{
	conn_send(c, line, strlen(line));
	conn_send(c, "\n", 1);
	return conn_reply(c, out, final, flen);
}

/* The command must succeed and its output hold `want` (if not NULL). */
static char *ok(struct conn *c, const char *line, const char *want)
{
	char final[600], *out;

	ck_assert_msg(cmd(c, line, &out, final, sizeof(final)) == 0, "'%s' -> %s", line, final);
	if (want)
		ck_assert_msg(strstr(out, want), "'%s': no '%s' in:\n%s", line, want, out);
	return out;
}

/* The command must fail with `want` in its reason. */
static void fails(struct conn *c, const char *line, const char *want)
{
	char final[600];

	ck_assert_msg(cmd(c, line, NULL, final, sizeof(final)) == 1, "'%s' did not fail: %s", line, final);
	ck_assert_msg(strstr(final, want), "'%s': no '%s' in: %s", line, want, final);
	ck_assert_msg(strchr(final, '\n') == final + strlen(final) - 1, "reason is not one line");
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(help_lists_every_command)
{
	static const char *const names[] = {
		"info mode", "info memory", "info p2m [PFN [COUNT]]", "info backmap MFN",
		"info vcpus", "virtualize [START END]", "devirtualize [START END] [guest-first]", "migrate PFN MFN",
		"scramble SEED [COUNT]", "share PFN1 PFN2", "evacuate MFN_START MFN_END",
		"translate GVA [VCPU]", "x/N[bhwg] GVA", "xp/N[bhwg] GPA", "stats", "guest-finish",
		"pause", "resume", "quit", "help",
	};
	struct fake_vm vm;
	struct conn c;
	char *out;

	fake_vm_start(&vm, true);
	conn_open(&c, vm.path);
	out = ok(&c, "help", NULL);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		ck_assert_msg(strstr(out, names[i]), "help lacks '%s':\n%s", names[i], out);
	free(out);
	conn_close(&c);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(info_commands)
{
	struct fake_vm vm;
	struct conn c;

	fake_vm_start(&vm, true);
	conn_open(&c, vm.path);
	free(ok(&c, "info mode", "mode: passthrough"));
	free(ok(&c, "info memory", "region 0: gpa 0x0-0x400000 (4 MiB)"));
	free(ok(&c, "info memory", "huge pages: off"));
	free(ok(&c, "info memory", "mappings: "));
	free(ok(&c, "info p2m", "pfn 0xf -> mfn 0xf (identity)"));
	free(ok(&c, "info p2m 0x10 2", "summary: 1024 pages, 1024 identity, 0 remapped"));
	free(ok(&c, "  info   p2m   5 1  ", "pfn 0x5 -> mfn 0x5"));
	free(ok(&c, "info backmap 7", "pfn 0x7"));
	free(ok(&c, "info vcpus", "vcpu 0: running rip=0xffffffff81000000 cr3=0x1000"));
	free(ok(&c, "info vcpus", "paging=4-level"));
	free(ok(&c, "stats", "exits_io: 42"));
	free(ok(&c, "stats", "passthrough_page_ops: 0"));
	free(ok(&c, "stats", "tlb_walks: "));
	free(ok(&c, "", NULL));
	conn_close(&c);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(translate_and_examine)
{
	struct fake_vm vm;
	struct conn c;
	char *out;

	fake_vm_start(&vm, true);
	conn_open(&c, vm.path);
	out = ok(&c, "translate 0x400008", "gva 0x400008 -> gpa 0x10008 -> mfn 0x10 (4K page");
	ck_assert_msg(strstr(out, "level 4 (PML4): entry gpa 0x1000") && strstr(out, "level 1 (PT)"),
		      "steps missing:\n%s", out);
	free(out);
	free(ok(&c, "translate 0x600123 0", "-> gpa 0x200123 -> mfn 0x200 (2048K page"));
	fails(&c, "translate 0x800000", "at level 2");
	fails(&c, "translate 0x800000000000", "gva 0x800000000000");
	fails(&c, "translate 0x400000 3", "vCPU 3 does not exist");
	free(ok(&c, "x/2g 0x400000", "0x0000000000400000: 0x1111111111111111 0x2222222222222222"));
	free(ok(&c, "x/4xw 0x400000", "0x11111111 0x11111111 0x22222222 0x22222222"));
	free(ok(&c, "x 0x400000", "0x0000000000400000: 0x11111111\n"));
	free(ok(&c, "xp/3b 0x10008", "0x0000000000010008: 0x22 0x22 0x22"));
	free(ok(&c, "xp/1h 0x10000", ": 0x1111\n"));
	out = ok(&c, "xp/32b 0x10000", NULL);
	ck_assert_msg(strstr(out, "\n0x0000000000010010: 0x00"), "16 bytes a line:\n%s", out);
	free(out);
	fails(&c, "x/2g 0x800000", "");
	fails(&c, "xp/4g 0x7ffff000000", "");
	fails(&c, "x/0g 0x400000", "count must be 1..4096");
	fails(&c, "x/5000b 0x400000", "count must be 1..4096");
	fails(&c, "x/4q 0x400000", "unknown format 'q'");
	fails(&c, "x/4g", "usage: x/N[bhwg] GVA");
	/* the same answers once virtualized and scrambled: read through P2M */
	free(ok(&c, "virtualize", "mode: virtualized"));
	free(ok(&c, "scramble 3", "remapped pages: "));
	free(ok(&c, "x/2g 0x400000", "0x1111111111111111 0x2222222222222222"));
	free(ok(&c, "translate 0x400000", "-> gpa 0x10000 -> mfn"));
	free(ok(&c, "devirtualize", "mode: passthrough"));
	conn_close(&c);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(switch_commands)
{
	struct fake_vm vm;
	struct writer *w = calloc(1, sizeof(*w));
	struct conn c;
	char line[128], *out;

	fake_vm_start(&vm, true);
	writer_start(w, &vm);
	conn_open(&c, vm.path);
	fails(&c, "migrate 0x150 0x400", "");  /* pass-through: nothing to migrate */
	free(ok(&c, "virtualize 0x100000 0x200000", "mode: partial"));
	free(ok(&c, "info mode", "virtualized: 0x100000-0x200000 (pfn 0x100-0x200, 256 pages)"));
	free(ok(&c, "devirtualize 0x100000 0x200000", "mode: passthrough"));
	free(ok(&c, "virtualize", "mode: virtualized"));
	free(ok(&c, "info p2m 0x150 1", "pfn 0x150 -> mfn 0x150 (identity)"));
	free(ok(&c, "migrate 0x150 0x400", "pfn 0x150 -> mfn 0x400"));
	free(ok(&c, "info p2m 0x150 1", "pfn 0x150 -> mfn 0x400 (remapped)"));
	free(ok(&c, "info backmap 0x400", "pfn 0x150"));
	free(ok(&c, "info backmap 0x150", "mfn 0x150: free"));
	free(ok(&c, "share 0x20 0x21", "share mfn"));   /* both zero pages */
	free(ok(&c, "info p2m 0x20 2", "shared"));
	/* frames 0x400.. are spare machine memory: evacuating them moves pfn 0x150
	 * again and still lets devirtualize reach the identity */
	free(ok(&c, "evacuate 0x400 0x408", "evacuated pages: 1"));
	free(ok(&c, "info backmap 0x400", "mfn 0x400: free"));
	free(ok(&c, "scramble 42 100", "remapped pages: "));
	out = ok(&c, "devirtualize", "mode: passthrough");
	ck_assert_msg(strstr(out, "skipped") && strstr(out, "longest stall"), "%s", out);
	ck_assert_msg(!strstr(out, "touched"), "%s", out);
	free(out);
	free(ok(&c, "info p2m 0x150 1", "pfn 0x150 -> mfn 0x150 (identity)"));
	free(ok(&c, "stats", "devirtualizations: 2"));
	/* guest-first comes last, after a range or alone */
	fails(&c, "devirtualize 0x100000 guest-first", "give both START and END");
	fails(&c, "devirtualize guest-first 0x100000 0x200000", "");
	free(ok(&c, "virtualize", "mode: virtualized"));
	free(ok(&c, "scramble 43", "remapped pages: "));
	free(ok(&c, "devirtualize guest-first", "chunks the guest had touched (left for last): "));
	free(ok(&c, "info p2m 0x150 1", "pfn 0x150 -> mfn 0x150 (identity)"));
	free(ok(&c, "virtualize 0x100000 0x200000", "mode: partial"));
	free(ok(&c, "devirtualize 0x100000 0x200000 guest-first", "mode: passthrough"));
	free(ok(&c, "stats", "devirtualizations: 4"));
	/* Peaks restart, totals stay. */
	free(ok(&c, "stats clear", "peaks cleared"));
	out = ok(&c, "stats", "longest_stall_ns: 0\n");
	ck_assert_msg(strstr(out, "last_stall_ns: 0\n") && strstr(out, "devirtualizations: 4"),
		      "%s", out);
	free(out);
	fails(&c, "stats reset", "'clear'");
	fails(&c, "stats clear now", "");
	free(ok(&c, "pause", NULL));
	free(ok(&c, "resume", NULL));
	free(ok(&c, "guest-finish", NULL));
	free(ok(&c, "quit", NULL));
	ck_assert_int_eq(atomic_load(&vm.pauses), 1);
	ck_assert_int_eq(atomic_load(&vm.resumes), 1);
	ck_assert_int_eq(atomic_load(&vm.finishes), 1);
	ck_assert_int_eq(atomic_load(&vm.quits), 1);
	snprintf(line, sizeof(line), "info p2m 0x%llx 1", (unsigned long long)RAM_PAGES - 1);
	free(ok(&c, line, "(identity)"));
	conn_close(&c);
	ck_assert_uint_eq(writer_stop(w), 0);
	ck_assert_uint_gt(w->rounds, 0);
	free(w);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(argument_errors)
{
	struct fake_vm vm;
	struct conn c;

	fake_vm_start(&vm, true);
	conn_open(&c, vm.path);
	fails(&c, "frobnicate", "unknown command 'frobnicate'");
	fails(&c, "info", "usage: info mode|memory|p2m|backmap|vcpus");
	fails(&c, "info bogus", "unknown command 'info bogus'");
	fails(&c, "migrate 1", "usage: migrate PFN MFN");
	fails(&c, "migrate 1 2 3", "usage: migrate PFN MFN");
	fails(&c, "info backmap", "usage: info backmap MFN");
	fails(&c, "info mode now", "usage: info mode");
	fails(&c, "scramble", "usage: scramble SEED [COUNT]");
	fails(&c, "virtualize 0x1000", "give both START and END");
	fails(&c, "virtualize 0x1001 0x2000", "page aligned");
	fails(&c, "virtualize 0x2000 0x1000", "must be below END");
	fails(&c, "virtualize 0x0 0x100000000000", "");
	fails(&c, "virtualize 0 zz", "END: 'zz' is not a number");
	fails(&c, "migrate abc 1", "PFN: 'abc' is not a number");
	fails(&c, "migrate 99999999999999999999999 1", "too large");
	fails(&c, "info p2m 0x7ffffff", "pfn 0x7ffffff is not guest RAM");
	fails(&c, "info p2m 0 99999", "COUNT must be 1..4096");
	fails(&c, "info p2m 0 0", "COUNT must be 1..4096");
	fails(&c, "evacuate 0x20 0x10", "must be below");
	fails(&c, "share 1 0xfffffffff", "");
	fails(&c, "a b c d e f g h i j", "too many arguments");
	fails(&c, "\xff\xfe\x80zz", "unknown command '\\xff\\xfe\\x80zz'");
	/* still serving after all that */
	free(ok(&c, "info mode", "mode: passthrough"));
	conn_close(&c);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(long_lines_and_garbage)
{
	struct fake_vm vm;
	struct conn c;
	char final[600];
	size_t big = 1 << 20;
	char *buf = malloc(big + 1);

	fake_vm_start(&vm, true);
	conn_open(&c, vm.path);
	/* A 1 MiB line: one error, the rest discarded, the next line served. */
	memset(buf, 'a', big);
	buf[big] = '\n';
	conn_send(&c, buf, big + 1);
	ck_assert_int_eq(conn_reply(&c, NULL, final, sizeof(final)), 1);
	ck_assert_msg(strstr(final, "line too long"), "%s", final);
	free(ok(&c, "info mode", "mode: passthrough"));
	/* exactly 64 KiB is still a line (an unknown command) */
	memset(buf, 'b', 65536);
	buf[65536] = '\n';
	conn_send(&c, buf, 65537);
	ck_assert_int_eq(conn_reply(&c, NULL, final, sizeof(final)), 1);
	ck_assert_msg(strstr(final, "unknown command"), "%s", final);
	/* binary garbage with NULs and control bytes: one line, one error */
	srand(7);
	for (size_t i = 0; i < 4096; i++) {
		buf[i] = (char)(rand() & 0xff);
		if (buf[i] == '\n')
			buf[i] = 0;
	}
	buf[0] = 'h', buf[1] = 'e', buf[2] = 0;   /* "he\0..." must not become "he" */
	buf[4096] = '\n';
	conn_send(&c, buf, 4097);
	ck_assert_int_eq(conn_reply(&c, NULL, final, sizeof(final)), 1);
	ck_assert_msg(strncmp(final, "error: unknown command", 22) == 0, "%s", final);
	free(ok(&c, "info mode", "mode: passthrough"));
	/* a 1 MiB line with no newline, then hang up: the server survives */
	conn_send(&c, buf, big / 2);
	conn_close(&c);
	conn_open(&c, vm.path);
	free(ok(&c, "help", "info mode"));
	conn_close(&c);
	free(buf);
	fake_vm_stop(&vm);
}
END_TEST

static int open_fds(void)
{
	int n = 0;
	char path[64];

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

START_TEST(disconnect_mid_command)
{
	struct fake_vm vm;
	struct conn c;
	int fds;

	fake_vm_start(&vm, true);
	vm.pause_delay_us = 200000;
	fds = open_fds();
	for (int i = 0; i < 5; i++) {
		conn_open(&c, vm.path);
		static const char burst[] = "virtualize\nscramble 9\npause\ndevirtualize\nhelp\n";
		conn_send(&c, burst, strlen(burst));
		conn_close(&c);   /* gone before any reply */
	}
	conn_open(&c, vm.path);
	free(ok(&c, "info mode", "mode: "));
	{
		char final[600];   /* ok, or "already pass-through": either is fine */
		cmd(&c, "devirtualize", NULL, final, sizeof(final));
	}
	free(ok(&c, "info mode", "mode: passthrough"));
	conn_close(&c);
	/* every server-side socket of the vanished clients was closed */
	for (int i = 0; i < 100 && open_fds() != fds; i++)
		usleep(10000);
	ck_assert_int_eq(open_fds(), fds);
	fake_vm_stop(&vm);
}
END_TEST

struct client_job {
	const char *path;
	int id, failures;
};

static void *client_thread(void *arg)
{
	struct client_job *j = arg;
	struct conn c;
	char final[600], line[64], *out;

	conn_open(&c, j->path);
	for (int i = 0; i < 40; i++) {
		snprintf(line, sizeof(line), "info p2m %d 1", j->id * 40 + i);
		if (cmd(&c, line, &out, final, sizeof(final)) != 0)
			j->failures++;
		snprintf(line, sizeof(line), "pfn 0x%x -> mfn 0x%x", j->id * 40 + i, j->id * 40 + i);
		if (!strstr(out, line))
			j->failures++;
		free(out);
		if (cmd(&c, "bogus", NULL, final, sizeof(final)) != 1)
			j->failures++;
	}
	conn_close(&c);
	return NULL;
}

START_TEST(eight_clients_at_once)
{
	struct fake_vm vm;
	struct client_job jobs[8];
	pthread_t th[8];

	fake_vm_start(&vm, true);
	for (int i = 0; i < 8; i++) {
		jobs[i] = (struct client_job){.path = vm.path, .id = i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, client_thread, &jobs[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(jobs[i].failures, 0);
	}
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(one_command_at_a_time)
{
	struct fake_vm vm;
	struct conn a, b;
	char final[600];
	uint64_t t0;

	fake_vm_start(&vm, true);
	vm.pause_delay_us = 300000;
	conn_open(&a, vm.path);
	conn_open(&b, vm.path);
	t0 = now_ns();
	conn_send(&a, "pause\n", 6);
	conn_send(&b, "pause\ninfo mode\n", 16);
	ck_assert_int_eq(conn_reply(&a, NULL, final, sizeof(final)), 0);
	ck_assert_int_eq(conn_reply(&b, NULL, final, sizeof(final)), 0);
	free(ok(&b, "info mode", "mode: passthrough"));   /* the queued one, in order */
	ck_assert_int_eq(conn_reply(&b, NULL, final, sizeof(final)), 0);
	ck_assert_int_eq(atomic_load(&vm.overlaps), 0);
	ck_assert_int_eq(atomic_load(&vm.pauses), 2);
	ck_assert_uint_ge(now_ns() - t0, 2 * 300000000ULL);   /* serialized, not parallel */
	/* monitor_exec from another thread is serialized with the socket too */
	conn_send(&a, "pause\n", 6);
	usleep(50000);
	{
		struct err e;
		FILE *f = fopen("/dev/null", "w");
		ck_assert_int_eq(monitor_exec(vm.mon, "pause", f, &e), 0);
		fclose(f);
	}
	ck_assert_int_eq(conn_reply(&a, NULL, final, sizeof(final)), 0);
	ck_assert_int_eq(atomic_load(&vm.overlaps), 0);
	conn_close(&a);
	conn_close(&b);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(hundred_switch_cycles_lose_nothing)
{
	struct fake_vm vm;
	struct writer *w = calloc(1, sizeof(*w));
	struct conn c;
	char line[64];
	uint64_t lost, t0 = now_ns();

	fake_vm_start(&vm, true);
	writer_start(w, &vm);
	conn_open(&c, vm.path);
	for (int i = 0; i < 100; i++) {
		free(ok(&c, i % 4 == 3 ? "virtualize 0x100000 0x300000" : "virtualize", "mode: "));
		snprintf(line, sizeof(line), "scramble %d 64", i + 1);
		free(ok(&c, line, "remapped pages: "));
		free(ok(&c, i % 4 == 3 ? "devirtualize 0x100000 0x300000" : "devirtualize",
			"mode: passthrough"));
	}
	free(ok(&c, "info p2m 0 1", "summary: 1024 pages, 1024 identity, 0 remapped"));
	free(ok(&c, "stats", "devirtualizations: 100"));
	conn_close(&c);
	lost = writer_stop(w);
	fprintf(stderr, "100 cycles: %.2f s, writer rounds %" PRIu64 ", writes %" PRIu64 ", lost %" PRIu64 "\n",
		(double)(now_ns() - t0) / 1e9, w->rounds, w->writes, lost);
	ck_assert_uint_eq(lost, 0);
	ck_assert_uint_gt(w->rounds, 1);
	free(w);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(client_exit_codes)
{
	struct fake_vm vm;
	char *words_ok[] = {"info", "mode"}, *words_bad[] = {"frobnicate"};
	char *obuf = NULL, *ebuf = NULL;
	size_t olen, elen;
	FILE *out, *err, *in;

	fake_vm_start(&vm, true);
	out = open_memstream(&obuf, &olen);
	err = open_memstream(&ebuf, &elen);
	ck_assert_int_eq(monitor_client_run(vm.path, 2, words_ok, stdin, out, err), 0);
	ck_assert_int_eq(monitor_client_run(vm.path, 1, words_bad, stdin, out, err), 1);
	ck_assert_int_eq(monitor_client_run("/tmp/vmsmon-nonexistent.sock", 2, words_ok, stdin, out,
					    err), 2);
	in = tmpfile();
	fputs("info mode\nbogus\ninfo p2m 3 1\n", in);
	rewind(in);
	ck_assert_int_eq(monitor_client_run(vm.path, 0, NULL, in, out, err), 1);
	fclose(in);
	in = tmpfile();
	fputs("info mode\nhelp\n", in);
	rewind(in);
	ck_assert_int_eq(monitor_client_run(vm.path, 0, NULL, in, out, err), 0);
	fclose(in);
	fclose(out);
	fclose(err);
	ck_assert_msg(strstr(obuf, "mode: passthrough\n") && strstr(obuf, "pfn 0x3 -> mfn 0x3"), "%s", obuf);
	ck_assert_msg(!strstr(obuf, "ok\n"), "the final ok is not printed:\n%s", obuf);
	ck_assert_msg(strstr(ebuf, "error: unknown command 'frobnicate'"), "%s", ebuf);
	ck_assert_msg(strstr(ebuf, "error: unknown command 'bogus'"), "%s", ebuf);
	ck_assert_msg(strstr(ebuf, "cannot connect to monitor /tmp/vmsmon-nonexistent.sock"), "%s", ebuf);
	free(obuf);
	free(ebuf);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(sockets_lifecycle)
{
	struct fake_vm vm;
	struct monitor *other;
	struct monitor_target t = {0};
	struct err e;
	char second[128];
	struct conn c;
	int fd;

	fake_vm_start(&vm, true);
	snprintf(second, sizeof(second), "%s.2", vm.path);
	/* a stale socket file (its owner died) is replaced */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		strcpy(sa.sun_path, second);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	ck_assert_msg(monitor_listen_unix(vm.mon, second, &e) == 0, "%s", e.msg);
	conn_open(&c, second);
	free(ok(&c, "info mode", "mode: passthrough"));
	conn_close(&c);
	/* a live one is not taken over */
	ck_assert_int_eq(monitor_create(&t, &other, &e), 0);
	ck_assert_int_eq(monitor_listen_unix(other, vm.path, &e), -1);
	ck_assert_msg(strstr(e.msg, "in use"), "%s", e.msg);
	ck_assert_int_eq(monitor_listen_unix(other, "/nonexistent-dir/x.sock", &e), -1);
	ck_assert_msg(strstr(e.msg, "/nonexistent-dir/x.sock"), "%s", e.msg);
	monitor_destroy(other);
	/* stop: both paths gone, twice is harmless */
	conn_open(&c, vm.path);   /* a client still connected at stop */
	monitor_stop(vm.mon);
	monitor_stop(vm.mon);
	ck_assert_int_eq(access(vm.path, F_OK), -1);
	ck_assert_int_eq(access(second, F_OK), -1);
	{
		char buf[16];
		ck_assert_int_eq(read(c.fd, buf, sizeof(buf)), 0);   /* closed by the server */
	}
	conn_close(&c);
	fake_vm_stop(&vm);
}
END_TEST

START_TEST(exec_without_memory)
{
	struct monitor_target t = {0};
	struct monitor *mon;
	struct err e;
	FILE *f = fopen("/dev/null", "w");

	ck_assert_int_eq(monitor_create(&t, &mon, &e), 0);
	ck_assert_int_eq(monitor_exec(mon, "info mode", f, &e), -1);
	ck_assert_msg(strstr(e.msg, "no guest memory"), "%s", e.msg);
	ck_assert_int_eq(monitor_exec(mon, "quit", f, &e), -1);
	ck_assert_int_eq(monitor_exec(mon, "info vcpus", f, &e), -1);
	ck_assert_int_eq(monitor_exec(mon, "stats", f, &e), 0);
	ck_assert_int_eq(monitor_exec(mon, "help", f, &e), 0);
	ck_assert_int_eq(monitor_exec_buf(mon, "help\0junk", 9, f, &e), -1);
	fclose(f);
	monitor_destroy(mon);
}
END_TEST

START_TEST(guest_requests_and_doors)
{
	struct fake_vm vm;
	enum monitor_door kind;
	const char *path;
	struct err e;

	fake_vm_start(&vm, false);
	ck_assert_msg(monitor_request(vm.mon, "virtualize", &e) == 0, "%s", e.msg);
	ck_assert_int_eq(mem_get_mode(vm.mem), MEM_VIRTUALIZED);
	ck_assert_int_eq(monitor_request(vm.mon, "pause", &e), -1);
	ck_assert_msg(strstr(e.msg, "inside the guest"), "%s", e.msg);
	ck_assert_int_eq(monitor_request(vm.mon, " info vcpus", &e), -1);
	ck_assert_int_eq(monitor_request(vm.mon, "x/4g 0x400000", &e), -1);
	ck_assert_int_eq(atomic_load(&vm.pauses), 0);
	ck_assert_int_eq(monitor_request(vm.mon, "bogus", &e), -1);
	ck_assert_msg(monitor_request(vm.mon, "devirtualize", &e) == 0, "%s", e.msg);
	ck_assert_int_eq(mem_get_mode(vm.mem), MEM_PASSTHROUGH);
	ck_assert_msg(monitor_request(vm.mon, "stats", &e) == 0, "%s", e.msg);
	fake_vm_stop(&vm);

	ck_assert_int_eq(monitor_parse_door("stdio", &kind, &path, &e), 0);
	ck_assert_int_eq(kind, MONITOR_DOOR_STDIO);
	ck_assert_int_eq(monitor_parse_door("unix:/tmp/m.sock", &kind, &path, &e), 0);
	ck_assert_int_eq(kind, MONITOR_DOOR_UNIX);
	ck_assert_str_eq(path, "/tmp/m.sock");
	ck_assert_int_eq(monitor_parse_door("unix:", &kind, &path, &e), -1);
	ck_assert_int_eq(monitor_parse_door("tcp:4444", &kind, &path, &e), -1);
	ck_assert_msg(strstr(e.msg, "'stdio' or 'unix:PATH'"), "%s", e.msg);
}
END_TEST

static Suite *monitor_suite(void)
{
	Suite *s = suite_create("monitor");
	TCase *tc = tcase_create("socket");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, help_lists_every_command);
	tcase_add_test(tc, info_commands);
	tcase_add_test(tc, translate_and_examine);
	tcase_add_test(tc, switch_commands);
	tcase_add_test(tc, argument_errors);
	tcase_add_test(tc, long_lines_and_garbage);
	tcase_add_test(tc, disconnect_mid_command);
	tcase_add_test(tc, eight_clients_at_once);
	tcase_add_test(tc, one_command_at_a_time);
	tcase_add_test(tc, hundred_switch_cycles_lose_nothing);
	tcase_add_test(tc, client_exit_codes);
	tcase_add_test(tc, sockets_lifecycle);
	tcase_add_test(tc, exec_without_memory);
	tcase_add_test(tc, guest_requests_and_doors);
	suite_add_tcase(s, tc);
	return s;
}

/* mem needs a memfd and userfaultfd; where the host forbids them, skip. */
static bool mem_works(void)
{
	struct mem_config cfg = {.ram_size = RAM, .spare_size = SPARE, .backmap = BACKMAP_LIST,
				 .hugepages = HUGEPAGES_OFF};
	struct mem_ops ops = {0};
	struct mem *m;
	struct err e = {0};

	if (mem_create(&cfg, &ops, &m, &e) < 0) {
		printf("SKIP: mem_create failed on this host: %s\n", e.msg);
		return false;
	}
	mem_destroy(m);
	return true;
}

int main(void)
{
	if (!mem_works())
		return 77;
	return check_run(monitor_suite(), false);
}
