/* The interactive door: one terminal shared by the guest's serial console
 * and the monitor, switched as QEMU users expect:
 *   Ctrl-A c      guest console <-> monitor ("(vmswitch) " prompt)
 *   Ctrl-A x      quit the VM
 *   Ctrl-A h      list these keys
 *   Ctrl-A Ctrl-A a literal Ctrl-A for the guest
 * The console owns a thread that reads the terminal (poll on it and on a
 * wakeup eventfd) and puts a TTY into raw mode (term.h) until destroyed.
 *
 * Guest output that arrives while the monitor is active is held (the last
 * 64 KiB) and written when the terminal goes back to the guest, so a
 * command's output is never interleaved with the guest's. With
 * CONSOLE_MONITOR_ONLY (--monitor stdio) the terminal is the monitor's alone
 * and guest output given to the console is dropped: send it elsewhere.
 */
#ifndef VMSWITCH_CONSOLE_H
#define VMSWITCH_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "vmswitch/err.h"

struct monitor;
struct console;

enum console_mode {
	CONSOLE_MUX,           /* guest console first, Ctrl-A c for the monitor */
	CONSOLE_MONITOR_ONLY,  /* --monitor stdio */
};

struct console_ops {
	void *ctx;
	/* Bytes typed for the guest's UART (console thread). May be NULL. */
	void (*to_guest)(void *ctx, const uint8_t *buf, size_t len);
	/* Ctrl-A x. NULL: run the monitor's "quit" command instead. */
	void (*quit)(void *ctx);
};

/* in_fd/out_fd: usually 0 and 1. The fds stay the caller's. */
int console_create(const struct console_ops *ops, struct monitor *mon, int in_fd, int out_fd,
		   enum console_mode mode, struct console **out, struct err *e);
/* Stop the thread, restore the terminal, free. NULL is fine. */
void console_destroy(struct console *con);
/* The guest's serial output (any thread). Blocks while the terminal does. */
void console_guest_output(struct console *con, const uint8_t *buf, size_t len);

#endif
