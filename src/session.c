/* One run of a VM: where the guest's console goes, the monitor and its
 * sockets, the interactive terminal, and an orderly teardown on every path. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vmswitch/console.h"
#include "vmswitch/monitor.h"
#include "vmswitch/session.h"
#include "vmswitch/term.h"
#include "vmswitch/util.h"

struct session {
	struct vm *vm;
	struct monitor *mon;
	struct console *con;
	int serial_fd;          /* guest console to a file or stdout, if no console */
};

static void serial_out(void *ctx, const uint8_t *buf, size_t len)
{
	struct session *s = ctx;

	if (s->con)
		console_guest_output(s->con, buf, len);
	else if (s->serial_fd >= 0 && write_full(s->serial_fd, buf, len) < 0)
		s->serial_fd = -1; /* the reader went away; keep the guest running */
}

/* The UART takes 16 bytes at a time; wait briefly for the guest to drain it
 * rather than dropping what the user typed or pasted. */
static void to_guest(void *ctx, const uint8_t *buf, size_t len)
{
	struct session *s = ctx;
	struct timespec ms = {0, 1000000};

	for (int tries = 0; len && tries < 1000; tries++) {
		size_t n = vm_serial_input(s->vm, buf, len);
		buf += n;
		len -= n;
		if (len)
			nanosleep(&ms, NULL);
	}
}

/* HC_REQUEST: the test kernel asks for a monitor command. */
static int guest_request(void *ctx, const char *cmd, struct err *e)
{
	struct session *s = ctx;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	int r;

	if (!out)
		return err_sys(e, "open_memstream");
	r = monitor_exec(s->mon, cmd, out, e);
	fclose(out);
	log_debug("guest asked for '%s': %s%s", cmd, r == 0 ? "ok" : "error: ", r == 0 ? "" : e->msg);
	free(text);
	return r;
}

static int open_serial_file(const char *path, struct err *e)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return err_sys(e, "--serial: cannot open %s", path);
	return fd;
}

static int start_monitor(struct session *s, const struct session_config *sc, struct err *e)
{
	struct monitor_target t;

	vm_monitor_target(s->vm, &t);
	if (monitor_create(&t, &s->mon, e) < 0)
		return -1;
	vm_set_request_handler(s->vm, guest_request, s);
	for (unsigned i = 0; i < sc->nmonitors; i++)
		if (monitor_listen_unix(s->mon, sc->monitors[i], e) < 0)
			return err_wrap(e, "--monitor unix:%s", sc->monitors[i]);
	return 0;
}

/* The terminal hosts the guest console (Ctrl-A c for the monitor) unless
 * --monitor stdio gave it to the monitor alone. Without a terminal and
 * without --monitor stdio, stdin is not read: scripts use the socket. */
static int start_console(struct session *s, const struct session_config *sc, struct err *e)
{
	struct console_ops ops = {.ctx = s, .to_guest = to_guest, .quit = NULL};
	enum console_mode mode = sc->monitor_stdio ? CONSOLE_MONITOR_ONLY : CONSOLE_MUX;

	if (!sc->monitor_stdio && (sc->serial_path || !isatty(STDIN_FILENO)))
		return 0;
	return console_create(&ops, s->mon, STDIN_FILENO, STDOUT_FILENO, mode, &s->con, e);
}

int session_run(struct vm_config *cfg, struct kvm_host *host, const struct boot_image *img,
		const struct session_config *sc, struct err *e)
{
	struct session s = {.serial_fd = STDOUT_FILENO};
	int status = -1;

	if (sc->serial_path && (s.serial_fd = open_serial_file(sc->serial_path, e)) < 0)
		return -1;
	if (sc->monitor_stdio && !sc->serial_path)
		log_info("--monitor stdio without --serial file:PATH: the guest's console output is discarded");
	if (sc->monitor_stdio && !sc->serial_path)
		s.serial_fd = -1;
	cfg->serial_out = serial_out;
	cfg->serial_ctx = &s;
	if (vm_create(cfg, host, img, &s.vm, e) < 0)
		goto out;
	if (start_monitor(&s, sc, e) < 0 || start_console(&s, sc, e) < 0)
		goto out;
	status = vm_run(s.vm);
out:
	/* Order matters: nothing may call into the VM once it is gone. */
	console_destroy(s.con);
	s.con = NULL;
	if (s.mon)
		monitor_destroy(s.mon);
	vm_destroy(s.vm);
	term_restore();
	if (sc->serial_path && s.serial_fd >= 0)
		close(s.serial_fd);
	return status;
}
