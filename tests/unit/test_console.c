/* Unit tests of the interactive door: the line editor, raw terminal mode
 * restored on every exit path, and the console driven through a
 * pseudo-terminal (Ctrl-A c, a command, Ctrl-A x, settings restored). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "lineedit.h"
#include "vmswitch/console.h"
#include "vmswitch/mem.h"
#include "vmswitch/monitor.h"
#include "vmswitch/term.h"
#include "vmswitch/util.h"

#include "check_run.h"

/* ---- line editor ---------------------------------------------------------- */

/* Feed a string; return the last finished line (or NULL), count events. */
static const char *feed(struct lineedit *le, const char *s, int *lines, int *eofs)
{
	const char *line = NULL, *got = NULL;

	for (; *s; s++) {
		enum le_event ev = le_feed(le, (unsigned char)*s, &line);
		if (ev == LE_LINE) {
			got = line;
			if (lines)
				(*lines)++;
		}
		if (ev == LE_EOF && eofs)
			(*eofs)++;
	}
	return got;
}

START_TEST(le_editing_keys)
{
	struct lineedit le;
	int lines = 0;

	le_init(&le, "> ", true);
	ck_assert_str_eq(feed(&le, "info mode\r", &lines, NULL), "info mode");
	ck_assert_str_eq(feed(&le, "info modx\x7f" "e\r\n", &lines, NULL), "info mode");
	ck_assert_int_eq(lines, 2);   /* \r\n is one line, not two */
	/* left arrow twice, insert, right arrow, end, home via ESC [ H */
	ck_assert_str_eq(feed(&le, "abd\x1b[D" "c\r", NULL, NULL), "abcd");
	ck_assert_str_eq(feed(&le, "bc\x1b[Ha\x1b[F" "d\r", NULL, NULL), "abcd");
	ck_assert_str_eq(feed(&le, "xy\x1bOH" "w\x1b[4~z\r", NULL, NULL), "wxyz");
	ck_assert_str_eq(feed(&le, "abc\x02\x02\x1b[3~\r", NULL, NULL), "ac");  /* ^B ^B, Delete */
	ck_assert_str_eq(feed(&le, "junk\x15ok\r", NULL, NULL), "ok");          /* ^U */
	ck_assert_str_eq(feed(&le, "one two\x17three\r", NULL, NULL), "one three"); /* ^W */
	ck_assert_str_eq(feed(&le, "abcdef\x02\x02\x0b\r", NULL, NULL), "abcd");  /* ^K */
	ck_assert_str_eq(feed(&le, "ab\x02\x06" "c\r", NULL, NULL), "abc");    /* ^B ^F */
	le_free(&le);
}
END_TEST

START_TEST(le_history)
{
	struct lineedit le;
	int eofs = 0;

	le_init(&le, "> ", true);
	feed(&le, "first\r", NULL, NULL);
	feed(&le, "second\r", NULL, NULL);
	feed(&le, "second\r", NULL, NULL);   /* repeated: kept once */
	ck_assert_str_eq(feed(&le, "\x1b[A\r", NULL, NULL), "second");
	ck_assert_str_eq(feed(&le, "\x1b[A\x1b[A\r", NULL, NULL), "first");
	/* up past the oldest stays there; down returns to the draft */
	ck_assert_str_eq(feed(&le, "\x1b[A\x1b[A\x1b[A\x1b[A\r", NULL, NULL), "first");
	ck_assert_str_eq(feed(&le, "dra\x1b[A\x1b[B" "ft\r", NULL, NULL), "draft");
	ck_assert_str_eq(feed(&le, "\x10" "X\r", NULL, NULL), "draftX");      /* ^P */
	/* ^C drops the line, ^D on an empty line is end of input */
	ck_assert_ptr_null(feed(&le, "abandoned\x03", NULL, NULL));
	ck_assert_str_eq(feed(&le, "kept\r", NULL, NULL), "kept");
	feed(&le, "\x04", NULL, &eofs);
	ck_assert_int_eq(eofs, 1);
	feed(&le, "x\x04", NULL, &eofs);
	ck_assert_int_eq(eofs, 1);
	for (int i = 0; i < 2 * LE_HISTORY; i++) {
		char cmd[32];
		snprintf(cmd, sizeof(cmd), "cmd%d\r", i);
		feed(&le, cmd, NULL, NULL);
	}
	ck_assert_uint_eq(le.nhist, LE_HISTORY);
	le_free(&le);
}
END_TEST

START_TEST(le_echo)
{
	struct lineedit le;
	size_t len;
	const char *out;

	le_init(&le, "(p) ", true);
	feed(&le, "ab\x1b[D", NULL, NULL);
	out = le_output(&le, &len);
	static const char want[] = "\r(p) ab\x1b[K\x1b[1D";
	ck_assert_msg(len > 0 && memmem(out, len, want, strlen(want)), "%.*s", (int)len, out);
	le_consumed(&le);
	feed(&le, "\r", NULL, NULL);
	out = le_output(&le, &len);
	ck_assert_msg(memmem(out, len, "\r\n", 2), "enter echoes a newline");
	le_free(&le);
	le_init(&le, "(p) ", false);   /* not a terminal: no echo at all */
	feed(&le, "abc\r", NULL, NULL);
	le_output(&le, &len);
	ck_assert_uint_eq(len, 0);
	le_free(&le);
}
END_TEST

START_TEST(le_long_line_and_junk)
{
	struct lineedit le;
	char *big = malloc(LE_MAX_LINE + 100);
	const char *line;

	le_init(&le, "> ", true);
	memset(big, 'a', LE_MAX_LINE + 98);
	big[LE_MAX_LINE + 98] = '\r';
	big[LE_MAX_LINE + 99] = '\0';
	line = feed(&le, big, NULL, NULL);
	ck_assert_uint_eq(strlen(line), LE_MAX_LINE);   /* truncated, not overflowed */
	ck_assert_str_eq(feed(&le, "a\x1b[99;5Zb\x1b\x01" "c\r", NULL, NULL), "abc");
	le_free(&le);
	free(big);
}
END_TEST

/* ---- terminal ----------------------------------------------------------- */

static void same_settings(int fd, const struct termios *want)
{
	struct termios now;

	ck_assert_int_eq(tcgetattr(fd, &now), 0);
	ck_assert_uint_eq(now.c_iflag, want->c_iflag);
	ck_assert_uint_eq(now.c_oflag, want->c_oflag);
	ck_assert_uint_eq(now.c_lflag, want->c_lflag);
	ck_assert_uint_eq(now.c_cflag, want->c_cflag);
}

START_TEST(term_raw_and_restore)
{
	int master, slave, p[2];
	struct termios orig, now;
	struct err e;
	bool raw;

	ck_assert_int_eq(openpty(&master, &slave, NULL, NULL, NULL), 0);
	ck_assert_int_eq(tcgetattr(slave, &orig), 0);
	ck_assert_int_eq(term_raw_enable(slave, &raw, &e), 0);
	ck_assert(raw);
	ck_assert_int_eq(tcgetattr(slave, &now), 0);
	ck_assert(!(now.c_lflag & (ICANON | ECHO | ISIG | IEXTEN)));
	ck_assert(!(now.c_iflag & (ICRNL | IXON)));
	ck_assert((now.c_oflag & (OPOST | ONLCR)) == (OPOST | ONLCR));
	ck_assert_int_eq(term_raw_enable(slave, &raw, &e), -1);   /* one at a time */
	term_restore();
	same_settings(slave, &orig);
	term_restore();   /* idempotent */
	same_settings(slave, &orig);
	/* not a terminal: nothing to do */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(term_raw_enable(p[0], &raw, &e), 0);
	ck_assert(!raw);
	close(p[0]);
	close(p[1]);
	close(master);
	close(slave);
}
END_TEST

/* A child puts the pty in raw mode and dies by `how`; the parent checks the
 * settings came back and the death was the one intended. */
static void child_dies(int how)
{
	int master, slave, status;
	struct termios orig;
	pid_t pid;

	ck_assert_int_eq(openpty(&master, &slave, NULL, NULL, NULL), 0);
	ck_assert_int_eq(tcgetattr(slave, &orig), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct err e;
		bool raw;
		struct termios now;
		if (term_raw_enable(slave, &raw, &e) < 0 || !raw || tcgetattr(slave, &now) < 0 ||
		    (now.c_lflag & ICANON))
			_exit(99);
		if (how == 0)
			exit(3);       /* atexit */
		raise(how);
		_exit(98);             /* the signal must have killed us */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (how == 0) {
		ck_assert(WIFEXITED(status));
		ck_assert_int_eq(WEXITSTATUS(status), 3);
	} else {
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == how,
			      "status 0x%x for signal %d", status, how);
	}
	same_settings(slave, &orig);
	close(master);
	close(slave);
}

START_TEST(term_restored_at_exit) { child_dies(0); }
END_TEST
START_TEST(term_restored_on_signals)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		child_dies(sigs[i]);
}
END_TEST

/* ---- the console under a pseudo-terminal --------------------------------- */

struct fake {
	pthread_mutex_t lock;
	char typed[4096];
	size_t ntyped;
	atomic_int quits;
};

static void to_guest(void *ctx, const uint8_t *buf, size_t len)
{
	struct fake *f = ctx;

	pthread_mutex_lock(&f->lock);
	if (f->ntyped + len <= sizeof(f->typed)) {
		memcpy(f->typed + f->ntyped, buf, len);
		f->ntyped += len;
	}
	pthread_mutex_unlock(&f->lock);
}

static void on_quit(void *ctx)
{
	atomic_fetch_add(&((struct fake *)ctx)->quits, 1);
}

static bool typed_is(struct fake *f, const char *want, size_t len)
{
	bool same;

	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&f->lock);
		same = f->ntyped == len && memcmp(f->typed, want, len) == 0;
		pthread_mutex_unlock(&f->lock);
		if (same)
			return true;
		usleep(10000);
	}
	return false;
}

/* Read the master side until `want` shows up (10 s at most); what was read
 * is kept in *acc so later checks can look at it. */
static bool expect(int master, const char *want, char *acc, size_t cap)
{
	size_t len = strlen(acc);
	uint64_t deadline = now_ns() + 10000000000ULL;

	while (!strstr(acc, want)) {
		struct pollfd p = {.fd = master, .events = POLLIN};
		if (now_ns() > deadline || poll(&p, 1, 100) < 0)
			return false;
		if (!(p.revents & POLLIN))
			continue;
		if (len + 1 >= cap) {   /* keep the tail */
			memmove(acc, acc + cap / 2, len - cap / 2 + 1);
			len -= cap / 2;
		}
		ssize_t n = read(master, acc + len, cap - 1 - len);
		if (n <= 0)
			return false;
		len += (size_t)n;
		acc[len] = '\0';
	}
	return true;
}

static void type(int master, const char *s)
{
	ck_assert_int_eq(write(master, s, strlen(s)), (ssize_t)strlen(s));
}

struct rig {
	struct fake fake;
	struct mem *mem;
	struct monitor *mon;
	struct console *con;
	int master, slave;
	struct termios orig;
	char acc[16384];
};

static void rig_start(struct rig *r, enum console_mode mode, bool with_mem)
{
	struct mem_config cfg = {.ram_size = 4 * MiB, .spare_size = 2 * MiB,
				 .backmap = BACKMAP_LIST, .hugepages = HUGEPAGES_OFF};
	struct mem_ops mops = {0};
	struct console_ops ops;
	struct monitor_target t = {0};
	struct termios now;
	struct err e = {0};

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->fake.lock, NULL);
	if (with_mem)
		ck_assert_msg(mem_create(&cfg, &mops, &r->mem, &e) == 0, "%s", e.msg);
	t.mem = r->mem;
	ck_assert_int_eq(monitor_create(&t, &r->mon, &e), 0);
	ck_assert_int_eq(openpty(&r->master, &r->slave, NULL, NULL, NULL), 0);
	ck_assert_int_eq(tcgetattr(r->slave, &r->orig), 0);
	ops = (struct console_ops){.ctx = &r->fake, .to_guest = to_guest, .quit = on_quit};
	ck_assert_msg(console_create(&ops, r->mon, r->slave, r->slave, mode, &r->con, &e) == 0,
		      "%s", e.msg);
	ck_assert_int_eq(tcgetattr(r->slave, &now), 0);
	ck_assert(!(now.c_lflag & (ICANON | ECHO)));
}

static void rig_stop(struct rig *r)
{
	console_destroy(r->con);
	same_settings(r->slave, &r->orig);
	monitor_destroy(r->mon);
	if (r->mem)
		mem_destroy(r->mem);
	close(r->master);
	close(r->slave);
}

START_TEST(console_session)
{
	struct rig *r = calloc(1, sizeof(*r));

	rig_start(r, CONSOLE_MUX, true);
	/* guest console: keys go to the guest, its output to the terminal */
	type(r->master, "ls\r");
	ck_assert(typed_is(&r->fake, "ls\r", 3));
	console_guest_output(r->con, (const uint8_t *)"guest says hi\n", 14);
	ck_assert(expect(r->master, "guest says hi", r->acc, sizeof(r->acc)));
	/* Ctrl-A Ctrl-A is a literal Ctrl-A for the guest */
	type(r->master, "\x01\x01");
	ck_assert(typed_is(&r->fake, "ls\r\x01", 4));
	/* Ctrl-A c: the monitor, a command, its reply, the next prompt */
	type(r->master, "\x01" "c");
	ck_assert(expect(r->master, "(vmswitch) ", r->acc, sizeof(r->acc)));
	r->acc[0] = '\0';
	type(r->master, "info mode\r");
	ck_assert_msg(expect(r->master, "mode: passthrough", r->acc, sizeof(r->acc)), "%s", r->acc);
	ck_assert(expect(r->master, "(vmswitch) ", r->acc, sizeof(r->acc)));
	/* guest output is held while the monitor has the terminal */
	console_guest_output(r->con, (const uint8_t *)"held-back", 9);
	r->acc[0] = '\0';
	type(r->master, "bogus\r");
	ck_assert(expect(r->master, "error: unknown command 'bogus'", r->acc, sizeof(r->acc)));
	ck_assert(expect(r->master, "(vmswitch) ", r->acc, sizeof(r->acc)));
	ck_assert_msg(!strstr(r->acc, "held-back"), "guest output leaked into the monitor");
	/* editing and history on the real terminal: up arrow repeats info mode */
	r->acc[0] = '\0';
	type(r->master, "bogus\x15" "\x1b[A\x1b[A\r");
	ck_assert_msg(expect(r->master, "mode: passthrough", r->acc, sizeof(r->acc)), "%s", r->acc);
	/* keys typed at the monitor never reach the guest */
	ck_assert(typed_is(&r->fake, "ls\r\x01", 4));
	/* Ctrl-A h lists the keys */
	type(r->master, "\x01h");
	ck_assert(expect(r->master, "C-a x    quit", r->acc, sizeof(r->acc)));
	/* back to the guest: the held output appears */
	r->acc[0] = '\0';
	type(r->master, "\x01" "c");
	ck_assert(expect(r->master, "held-back", r->acc, sizeof(r->acc)));
	type(r->master, "q");
	ck_assert(typed_is(&r->fake, "ls\r\x01q", 5));
	/* Ctrl-A x quits; destroying the console restores the terminal */
	type(r->master, "\x01x");
	for (int i = 0; i < 500 && !atomic_load(&r->fake.quits); i++)
		usleep(10000);
	ck_assert_int_eq(atomic_load(&r->fake.quits), 1);
	rig_stop(r);
	free(r);
}
END_TEST

START_TEST(console_monitor_only)
{
	struct rig *r = calloc(1, sizeof(*r));

	rig_start(r, CONSOLE_MONITOR_ONLY, false);
	ck_assert(expect(r->master, "(vmswitch) ", r->acc, sizeof(r->acc)));
	console_guest_output(r->con, (const uint8_t *)"never-shown", 11);
	r->acc[0] = '\0';
	type(r->master, "help\r");
	ck_assert(expect(r->master, "devirtualize [START END]", r->acc, sizeof(r->acc)));
	ck_assert(expect(r->master, "(vmswitch) ", r->acc, sizeof(r->acc)));
	type(r->master, "info mode\r");
	ck_assert(expect(r->master, "error: this VM has no guest memory", r->acc, sizeof(r->acc)));
	type(r->master, "\x01" "c");
	ck_assert(expect(r->master, "not on this terminal", r->acc, sizeof(r->acc)));
	ck_assert_msg(!strstr(r->acc, "never-shown"), "guest output on a monitor-only terminal");
	ck_assert(typed_is(&r->fake, "", 0));
	rig_stop(r);   /* without Ctrl-A x: destroy alone restores the terminal */
	ck_assert_int_eq(atomic_load(&r->fake.quits), 0);
	free(r);
}
END_TEST

START_TEST(console_piped_input)
{
	struct monitor_target t = {0};
	struct monitor *mon;
	struct console *con;
	struct console_ops ops = {0};
	struct err e;
	int in[2], out[2];
	char buf[4096] = "";
	size_t len = 0;

	ck_assert_int_eq(monitor_create(&t, &mon, &e), 0);
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(console_create(&ops, mon, in[0], out[1], CONSOLE_MONITOR_ONLY, &con, &e), 0);
	ck_assert_int_eq(write(in[1], "stats\nbogus\n", 12), 12);
	close(in[1]);   /* end of input: the console stops reading, no quit */
	while (!strstr(buf, "error: unknown command 'bogus' (try 'help')\n") && len < sizeof(buf) - 1) {
		ssize_t n = read(out[0], buf + len, sizeof(buf) - 1 - len);
		ck_assert_int_gt(n, 0);
		len += (size_t)n;
		buf[len] = '\0';
	}
	ck_assert_msg(!strstr(buf, "(vmswitch)"), "no prompt without a terminal: %s", buf);
	console_destroy(con);
	monitor_destroy(mon);
	close(in[0]);
	close(out[0]);
	close(out[1]);
}
END_TEST

static bool mem_works(void)
{
	struct mem_config cfg = {.ram_size = 4 * MiB, .spare_size = 2 * MiB,
				 .backmap = BACKMAP_LIST, .hugepages = HUGEPAGES_OFF};
	struct mem_ops ops = {0};
	struct mem *m;
	struct err e = {0};

	if (mem_create(&cfg, &ops, &m, &e) < 0) {
		printf("SKIP console_session: mem_create failed on this host: %s\n", e.msg);
		return false;
	}
	mem_destroy(m);
	return true;
}

static Suite *console_suite(bool with_mem)
{
	Suite *s = suite_create("console");
	TCase *le = tcase_create("lineedit"), *term = tcase_create("term"), *con = tcase_create("pty");

	tcase_add_test(le, le_editing_keys);
	tcase_add_test(le, le_history);
	tcase_add_test(le, le_echo);
	tcase_add_test(le, le_long_line_and_junk);
	tcase_add_test(term, term_raw_and_restore);
	tcase_add_test(term, term_restored_at_exit);
	tcase_add_test(term, term_restored_on_signals);
	tcase_set_timeout(con, 30);
	if (with_mem)
		tcase_add_test(con, console_session);
	tcase_add_test(con, console_monitor_only);
	tcase_add_test(con, console_piped_input);
	suite_add_tcase(s, le);
	suite_add_tcase(s, term);
	suite_add_tcase(s, con);
	return s;
}

int main(void)
{
	return check_run(console_suite(mem_works()), false);
}
