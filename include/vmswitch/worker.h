/* A helper thread that runs until told to stop: its loop polls stop_fd
 * beside its own fds and returns once it is readable. */
#ifndef VMSWITCH_WORKER_H
#define VMSWITCH_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "vmswitch/err.h"

struct worker {
	pthread_t thr;
	int stop_fd;     /* eventfd; -1 when not started */
	bool running;
};

void worker_init(struct worker *w);
/* Start fn(arg) as thread `name` (at most 15 characters, for top and perf);
 * `what` names it in an error. */
int worker_start(struct worker *w, void *(*fn)(void *), void *arg, const char *name,
		 const char *what, struct err *e);
/* Tell it to stop, wait for it, close the fd. Safe when never started. */
void worker_stop(struct worker *w);

#endif
