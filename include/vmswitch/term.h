/* Terminal handling for the console: raw input, sane output, and the
 * original settings restored on every way out of the process. */
#ifndef VMSWITCH_TERM_H
#define VMSWITCH_TERM_H

#include <stdbool.h>

#include "vmswitch/err.h"

/* Put the terminal on `fd` into raw input mode: no echo, no line buffering,
 * no signals from ^C/^Z/^\, no flow control, 8-bit bytes; output keeps
 * OPOST|ONLCR so "\n" still starts a new line. The original settings come
 * back on term_restore(), at exit() and on SIGINT/SIGTERM/SIGHUP/SIGQUIT/
 * SIGABRT (restored, then the signal is re-raised with the default action).
 * Returns 0 and does nothing if fd is not a terminal (*was_raw false). Only
 * one terminal at a time. */
int term_raw_enable(int fd, bool *made_raw, struct err *e);
/* Restore the saved settings (idempotent, async-signal-safe) and put the
 * signal actions back. */
void term_restore(void);

#endif
