/* The interactive console (see console.h): a thread reading the terminal,
 * the Ctrl-A escapes, the monitor prompt and the guest's output. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lineedit.h"
#include "vmswitch/console.h"
#include "vmswitch/monitor.h"
#include "vmswitch/term.h"
#include "vmswitch/util.h"

#define ESCAPE_KEY 0x01      /* Ctrl-A */
#define HOLD_MAX (64 * 1024) /* guest output kept while the monitor is active */
#define PROMPT "(vmswitch) "

struct console {
	struct console_ops ops;
	struct monitor *mon;
	int in, out, wakefd;
	enum console_mode mode;
	bool made_raw;
	pthread_t thread;
	bool started;
	bool escape;                /* Ctrl-A seen, waiting for the key */
	struct lineedit le;         /* console thread only */
	pthread_mutex_t lock;       /* the terminal's output, monitor_active, held */
	bool monitor_active;
	bool progress_shown;        /* a progress line is on the screen */
	uint8_t *held;
	size_t held_len;
};

static const char help_text[] =
	"\r\n"
	"C-a h    print this help\r\n"
	"C-a x    quit the VM\r\n"
	"C-a c    switch between the guest console and the monitor\r\n"
	"C-a C-a  send C-a to the guest\r\n";

/* The terminal may be gone (hung up): nothing useful to do about it here. */
static void tty_write_locked(struct console *con, const void *buf, size_t len)
{
	if (len && write_full(con->out, buf, len) < 0) {
		/* dropped: the reader of this terminal went away */
	}
}

static void tty_puts_locked(struct console *con, const char *s)
{
	tty_write_locked(con, s, strlen(s));
}

static void echo_flush_locked(struct console *con)
{
	size_t len;
	const char *p = le_output(&con->le, &len);

	tty_write_locked(con, p, len);
	le_consumed(&con->le);
}

static void hold(struct console *con, const uint8_t *buf, size_t len)
{
	if (len >= HOLD_MAX) {
		buf += len - HOLD_MAX;
		len = HOLD_MAX;
	}
	if (con->held_len + len > HOLD_MAX) {
		size_t drop = con->held_len + len - HOLD_MAX;
		memmove(con->held, con->held + drop, con->held_len - drop);
		con->held_len -= drop;
	}
	memcpy(con->held + con->held_len, buf, len);
	con->held_len += len;
}

void console_guest_output(struct console *con, const uint8_t *buf, size_t len)
{
	if (!con || con->mode == CONSOLE_MONITOR_ONLY)
		return;
	pthread_mutex_lock(&con->lock);
	if (con->monitor_active)
		hold(con, buf, len);
	else
		tty_write_locked(con, buf, len);
	pthread_mutex_unlock(&con->lock);
}

static void enter_monitor(struct console *con)
{
	pthread_mutex_lock(&con->lock);
	con->monitor_active = true;
	if (con->le.echo)
		tty_puts_locked(con, con->mode == CONSOLE_MUX ?
				"\r\nvmswitch monitor: 'help' lists commands, C-a c returns to the guest\r\n" :
				"vmswitch monitor: 'help' lists commands, C-a x quits\r\n");
	le_redraw(&con->le);
	echo_flush_locked(con);
	pthread_mutex_unlock(&con->lock);
}

static void leave_monitor(struct console *con)
{
	pthread_mutex_lock(&con->lock);
	con->monitor_active = false;
	tty_puts_locked(con, "\r\n");
	tty_write_locked(con, con->held, con->held_len);
	con->held_len = 0;
	pthread_mutex_unlock(&con->lock);
}

static void say(struct console *con, const char *s)
{
	pthread_mutex_lock(&con->lock);
	tty_puts_locked(con, s);
	if (con->monitor_active) {
		le_redraw(&con->le);
		echo_flush_locked(con);
	}
	pthread_mutex_unlock(&con->lock);
}

/* Long memory operations report here while they run: one line, rewritten. */
static void show_progress(void *ctx, uint64_t pages_moved)
{
	struct console *con = ctx;
	char msg[64];

	snprintf(msg, sizeof(msg), "\r... %" PRIu64 " pages moved\x1b[K", pages_moved);
	pthread_mutex_lock(&con->lock);
	tty_puts_locked(con, msg);
	con->progress_shown = true;
	pthread_mutex_unlock(&con->lock);
}

static void run_command(struct console *con, const char *line)
{
	struct err e = {0};
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	int rc;

	if (!f) {
		err_sys(&e, "capturing command output");
		rc = -1;
	} else {
		rc = monitor_exec_progress(con->mon, line, f, show_progress, con, &e);
		fclose(f);
	}
	pthread_mutex_lock(&con->lock);
	if (con->progress_shown)
		tty_puts_locked(con, "\r\x1b[K");
	con->progress_shown = false;
	tty_write_locked(con, buf, size);
	if (rc < 0) {
		tty_puts_locked(con, "error: ");
		tty_puts_locked(con, e.msg);
		tty_puts_locked(con, "\n");
	}
	le_redraw(&con->le);
	echo_flush_locked(con);
	pthread_mutex_unlock(&con->lock);
	free(buf);
}

static void do_quit(struct console *con)
{
	say(con, "\r\nvmswitch: quit (C-a x)\r\n");
	if (con->ops.quit) {
		con->ops.quit(con->ops.ctx);
	} else {
		struct err e;
		FILE *f = fopen("/dev/null", "w");
		if (f) {
			monitor_exec(con->mon, "quit", f, &e);
			fclose(f);
		}
	}
}

/* Returns false when the console should stop reading (Ctrl-A x). */
static bool escape_key(struct console *con, unsigned char c)
{
	switch (c) {
	case 'c': case 'C':
		if (con->mode == CONSOLE_MONITOR_ONLY)
			say(con, "\r\n(the guest console is not on this terminal: --monitor stdio)\r\n");
		else if (con->monitor_active)
			leave_monitor(con);
		else
			enter_monitor(con);
		return true;
	case 'x': case 'X':
		do_quit(con);
		return false;
	case 'h': case 'H': case '?':
		say(con, help_text);
		return true;
	case ESCAPE_KEY:
		if (!con->monitor_active && con->ops.to_guest)
			con->ops.to_guest(con->ops.ctx, &c, 1);
		return true;
	default:
		return true;  /* unknown escapes are ignored, as in QEMU */
	}
}

static void monitor_key(struct console *con, unsigned char c)
{
	const char *line;
	enum le_event ev = le_feed(&con->le, c, &line);

	if (ev == LE_LINE) {
		pthread_mutex_lock(&con->lock);
		echo_flush_locked(con);
		pthread_mutex_unlock(&con->lock);
		run_command(con, line);
		return;
	}
	if (ev == LE_EOF && con->mode == CONSOLE_MUX) {
		leave_monitor(con);
		return;
	}
	pthread_mutex_lock(&con->lock);
	echo_flush_locked(con);
	pthread_mutex_unlock(&con->lock);
}

/* Returns false on Ctrl-A x. Bytes for the guest are passed on in runs. */
static bool process(struct console *con, const uint8_t *buf, size_t n)
{
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = buf[i];
		bool guest = !con->monitor_active && !con->escape && c != ESCAPE_KEY;

		if (guest) {
			run++;
			continue;
		}
		if (run && con->ops.to_guest)
			con->ops.to_guest(con->ops.ctx, buf + i - run, run);
		run = 0;
		if (con->escape) {
			con->escape = false;
			if (!escape_key(con, c))
				return false;
		} else if (c == ESCAPE_KEY) {
			con->escape = true;
		} else {
			monitor_key(con, c);
		}
	}
	if (run && con->ops.to_guest)
		con->ops.to_guest(con->ops.ctx, buf + n - run, run);
	return true;
}

static void *console_main(void *arg)
{
	struct console *con = arg;
	struct pollfd p[2] = {{.fd = con->in, .events = POLLIN}, {.fd = con->wakefd, .events = POLLIN}};
	uint8_t buf[256];

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (!p[0].revents)
			continue;
		ssize_t n = read(con->in, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return NULL;  /* end of input or a hung-up terminal: stop reading */
		if (!process(con, buf, (size_t)n))
			return NULL;
	}
}

static int start_thread(struct console *con, struct err *e)
{
	sigset_t all, old;
	int rc;

	/* Signals stay with the main thread (and term.c's restore handlers). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&con->thread, NULL, console_main, con);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		errno = rc;
		return err_sys(e, "starting the console thread");
	}
	pthread_setname_np(con->thread, "console");
	con->started = true;
	return 0;
}

int console_create(const struct console_ops *ops, struct monitor *mon, int in_fd, int out_fd,
		   enum console_mode mode, struct console **out, struct err *e)
{
	struct console *con = calloc(1, sizeof(*con));

	if (!con || !(con->held = malloc(HOLD_MAX))) {
		free(con);
		return err_set(e, ENOMEM, "allocating the console");
	}
	con->wakefd = -1;
	con->ops = *ops;
	con->mon = mon;
	con->in = in_fd;
	con->out = out_fd;
	con->mode = mode;
	pthread_mutex_init(&con->lock, NULL);
	/* Echo and a prompt only make sense on a terminal; piped commands get
	 * just the replies. */
	le_init(&con->le, PROMPT, isatty(in_fd));
	con->wakefd = eventfd(0, EFD_CLOEXEC);
	if (con->wakefd < 0) {
		err_sys(e, "creating the console's wakeup eventfd");
		goto fail;
	}
	if (term_raw_enable(in_fd, &con->made_raw, e) < 0)
		goto fail;
	if (mode == CONSOLE_MONITOR_ONLY)
		enter_monitor(con);
	if (start_thread(con, e) < 0)
		goto fail;
	*out = con;
	return 0;
fail:
	console_destroy(con);
	return -1;
}

void console_destroy(struct console *con)
{
	uint64_t one = 1;

	if (!con)
		return;
	if (con->started) {
		if (write(con->wakefd, &one, sizeof(one)) < 0) {
			/* only fails on counter overflow: the thread is awake anyway */
		}
		pthread_join(con->thread, NULL);
	}
	if (con->made_raw)
		term_restore();
	if (con->wakefd >= 0)
		close(con->wakefd);
	le_free(&con->le);
	pthread_mutex_destroy(&con->lock);
	free(con->held);
	free(con);
}
