/* Helper threads stopped through an eventfd (see worker.h). */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmswitch/worker.h"

void worker_init(struct worker *w)
{
	w->stop_fd = -1;
	w->running = false;
}

int worker_start(struct worker *w, void *(*fn)(void *), void *arg, const char *name,
		 const char *what, struct err *e)
{
	w->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (w->stop_fd < 0)
		return err_sys(e, "creating the eventfd that stops the %s", what);
	int rc = pthread_create(&w->thr, NULL, fn, arg);
	if (rc) {
		errno = rc;
		return err_sys(e, "starting the %s", what);
	}
	w->running = true;
	pthread_setname_np(w->thr, name);   /* a label for top and perf only */
	return 0;
}

void worker_stop(struct worker *w)
{
	uint64_t one = 1;

	/* Without the wake-up the thread would never see the stop: do not join. */
	if (w->running && write(w->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(w->thr, NULL);
	w->running = false;
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	w->stop_fd = -1;
}
