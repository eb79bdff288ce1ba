/* Error reporting: library code never prints or exits; it fills a struct err
 * and returns -1 so that main (or the monitor) decides what the user sees. */
#ifndef VMSWITCH_ERR_H
#define VMSWITCH_ERR_H

#include <stddef.h>

struct err {
	int code;        /* errno-style code of the first failure, 0 if none */
	char msg[512];   /* one line, no trailing newline */
};

/* Record a failure; returns -1 so callers can `return err_set(...)`. */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Same, appending ": strerror(errno)" for the errno current at the call. */
int err_sys(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefix context to an existing message ("loading kernel: <old msg>"). */
int err_wrap(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void err_clear(struct err *e);

#endif
