/* session: one run of a VM with its console, monitor sockets and terminal,
 * from creation to the guest's exit status. */
#ifndef VMSWITCH_SESSION_H
#define VMSWITCH_SESSION_H

#include "vmswitch/err.h"
#include "vmswitch/vm.h"

struct session_config {
	const char *const *monitors;   /* unix socket paths */
	unsigned nmonitors;
	bool monitor_stdio;            /* the terminal is the monitor alone */
	const char *serial_path;       /* guest console to a file instead */
};

/* Returns the exit status for vmswitch, or -1 with *e if setup failed. */
int session_run(struct vm_config *cfg, struct kvm_host *host, const struct boot_image *img,
		const struct session_config *sc, struct err *e);

#endif
