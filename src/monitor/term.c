/* Raw terminal mode, undone on every exit path.
 *
 * The saved termios is the one piece of global mutable state in vmswitch, on
 * purpose: the handlers of fatal signals and atexit() must find it, and they
 * get no context pointer. Everything in here is async-signal-safe where a
 * signal handler can reach it (tcsetattr, sigaction, raise). */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmswitch/term.h"

static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT};
#define NSIG_FATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static struct {
	struct termios saved;
	int fd;
	atomic_bool active;      /* saved holds settings still to restore */
	bool atexit_done;
	struct sigaction old[NSIG_FATAL];
} term_state = {.fd = -1};

static void restore_tty(void)
{
	if (atomic_exchange(&term_state.active, false))
		while (tcsetattr(term_state.fd, TCSAFLUSH, &term_state.saved) < 0 && errno == EINTR)
			;
}

static void on_fatal_signal(int sig)
{
	int saved_errno = errno;

	restore_tty();
	/* SA_RESETHAND has put back the default action: re-raising kills us
	 * with the status the sender intended (once this handler returns). */
	signal(sig, SIG_DFL);
	raise(sig);
	errno = saved_errno;
}

static void on_exit_restore(void)
{
	term_restore();
}

static void install_handlers(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < NSIG_FATAL; i++)
		sigaction(fatal_signals[i], &sa, &term_state.old[i]);
}

int term_raw_enable(int fd, bool *made_raw, struct err *e)
{
	struct termios raw;

	*made_raw = false;
	if (!isatty(fd))
		return 0;
	if (atomic_load(&term_state.active))
		return err_set(e, EBUSY, "a terminal is already in raw mode");
	if (tcgetattr(fd, &term_state.saved) < 0)
		return err_sys(e, "reading the terminal settings of fd %d", fd);
	raw = term_state.saved;
	raw.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	raw.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
	raw.c_cflag |= CS8;
	/* Output stays cooked: guest and monitor text end lines with "\n". */
	raw.c_oflag |= OPOST | ONLCR;
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	term_state.fd = fd;
	if (!term_state.atexit_done) {
		if (atexit(on_exit_restore) != 0)
			return err_set(e, ENOMEM, "registering the terminal restore at exit");
		term_state.atexit_done = true;
	}
	install_handlers();
	atomic_store(&term_state.active, true);
	if (tcsetattr(fd, TCSAFLUSH, &raw) < 0) {
		err_sys(e, "switching the terminal to raw mode");
		term_restore();
		return -1;
	}
	*made_raw = true;
	return 0;
}

void term_restore(void)
{
	if (!atomic_load(&term_state.active))
		return;
	restore_tty();
	for (size_t i = 0; i < NSIG_FATAL; i++)
		sigaction(fatal_signals[i], &term_state.old[i], NULL);
}
