/* The monitor's unix-socket door: one thread, one epoll set, every listening
 * socket and every client. Protocol: a command per line; the reply is zero
 * or more output lines, then exactly one final line, "ok" or "error: ...".
 *
 * Commands run on this thread, so one executes at a time and a slow one
 * holds the others back; clients queue in their socket buffers meanwhile.
 * A client whose replies are not being read stops being read (its output
 * drains first), so a flood of commands cannot grow our buffers unbounded.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor_int.h"
#include "vmswitch/util.h"

#define MAX_LISTENERS 16
#define MAX_CLIENTS 64
#define READ_CHUNK 4096

enum ep_kind { EP_WAKE, EP_LISTENER, EP_CLIENT };

struct ep_item {
	enum ep_kind kind;
	int fd;
};

struct mon_listener {
	struct ep_item ep;
	char *path;
};

struct mon_client {
	struct ep_item ep;
	char *in;               /* the line being assembled */
	size_t inlen, incap;
	bool discarding;        /* inside an over-long line: drop up to '\n' */
	bool eof;               /* peer closed its side: flush, then close */
	char *out;              /* replies not yet sent */
	size_t outlen, outpos, outcap;
	struct mon_client *prev, *next;
};

struct mon_server {
	struct monitor *mon;
	pthread_t thread;
	bool started;
	int epfd;
	struct ep_item wake;
	struct mon_listener *ls[MAX_LISTENERS];
	unsigned nls;
	struct mon_client *clients;
	unsigned nclients;
};

/* ---- output ---------------------------------------------------------- */

static bool out_reserve(struct mon_client *c, size_t more)
{
	return buf_reserve(&c->out, &c->outcap, c->outlen + more, 4096);
}

static void out_put(struct mon_client *c, const char *s, size_t n)
{
	if (out_reserve(c, n)) {
		memcpy(c->out + c->outlen, s, n);
		c->outlen += n;
	}
}

/* An output line that looks like a final line is indented, so a reader can
 * always tell the end of a reply. */
static void out_lines(struct mon_client *c, const char *buf, size_t len)
{
	while (len) {
		const char *nl = memchr(buf, '\n', len);
		size_t n = nl ? (size_t)(nl - buf) : len;
		if ((n == 2 && memcmp(buf, "ok", 2) == 0) || (n >= 6 && memcmp(buf, "error:", 6) == 0))
			out_put(c, "  ", 2);
		out_put(c, buf, n);
		out_put(c, "\n", 1);
		buf += n + (nl ? 1 : 0);
		len -= n + (nl ? 1 : 0);
	}
}

static void out_final(struct mon_client *c, int rc, const struct err *e)
{
	if (rc == 0) {
		out_put(c, "ok\n", 3);
		return;
	}
	out_put(c, "error: ", 7);
	out_put(c, e->msg, strlen(e->msg));
	out_put(c, "\n", 1);
}

/* Returns -1 when the peer is gone. */
static int out_flush(struct mon_client *c)
{
	while (c->outpos < c->outlen) {
		ssize_t n = send(c->ep.fd, c->out + c->outpos, c->outlen - c->outpos,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return -1;
		c->outpos += (size_t)n;
	}
	c->outpos = c->outlen = 0;
	return 0;
}

/* ---- clients --------------------------------------------------------- */

static void client_close(struct mon_server *s, struct mon_client *c)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->ep.fd, NULL);
	close(c->ep.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nclients--;
	free(c->in);
	free(c->out);
	free(c);
}

static void run_line(struct mon_server *s, struct mon_client *c, const char *line, size_t len)
{
	struct err e = {0};
	char *buf = NULL;
	size_t size = 0;
	FILE *f;
	int rc;

	if (len && line[len - 1] == '\r')
		len--;
	f = open_memstream(&buf, &size);
	if (!f) {
		err_sys(&e, "capturing command output");
		out_final(c, -1, &e);
		return;
	}
	rc = monitor_exec_buf(s->mon, line, len, f, &e);
	fclose(f);
	out_lines(c, buf, size);
	free(buf);
	out_final(c, rc, &e);
}

static bool in_append(struct mon_client *c, const char *p, size_t n)
{
	if (!buf_reserve(&c->in, &c->incap, c->inlen + n, 256))
		return false;
	memcpy(c->in + c->inlen, p, n);
	c->inlen += n;
	return true;
}

static void too_long(struct mon_client *c)
{
	struct err e;

	err_set(&e, E2BIG, "line too long (limit %d bytes): discarded", MON_MAX_LINE);
	out_final(c, -1, &e);
	c->inlen = 0;
}

/* Split received bytes into lines and run each complete one. */
static void client_feed(struct mon_server *s, struct mon_client *c, const char *p, size_t len)
{
	while (len) {
		const char *nl = memchr(p, '\n', len);
		size_t n = nl ? (size_t)(nl - p) : len;
		size_t used = n + (nl ? 1 : 0);

		if (c->discarding) {
			c->discarding = !nl;
		} else if (c->inlen + n > MON_MAX_LINE) {
			too_long(c);
			c->discarding = !nl;
		} else if (!in_append(c, p, n)) {
			struct err e;
			err_set(&e, ENOMEM, "out of memory for the command line");
			out_final(c, -1, &e);
			c->inlen = 0;
			c->discarding = !nl;
		} else if (nl) {
			run_line(s, c, c->in, c->inlen);
			c->inlen = 0;
		}
		p += used;
		len -= used;
	}
}

static void client_want(struct mon_server *s, struct mon_client *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = &c->ep};

	epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->ep.fd, &ev);
}

/* After output changed: read more only once everything has been sent. */
static void client_settle(struct mon_server *s, struct mon_client *c)
{
	if (out_flush(c) < 0) {
		client_close(s, c);
		return;
	}
	if (c->outlen)
		client_want(s, c, EPOLLOUT);
	else if (c->eof)
		client_close(s, c);
	else
		client_want(s, c, EPOLLIN);
}

static void client_readable(struct mon_server *s, struct mon_client *c)
{
	char buf[READ_CHUNK];
	ssize_t n = recv(c->ep.fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		client_close(s, c);
		return;
	}
	if (n == 0) {
		/* A half-closed peer still gets the replies to its complete lines;
		 * an unterminated last line is dropped. */
		c->eof = true;
		c->inlen = 0;
	} else {
		client_feed(s, c, buf, (size_t)n);
	}
	client_settle(s, c);
}

static void accept_clients(struct mon_server *s, struct mon_listener *l)
{
	for (;;) {
		int fd = accept4(l->ep.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct mon_client *c;
		struct epoll_event ev = {.events = EPOLLIN};

		if (fd < 0)
			return;  /* EAGAIN, or a client that vanished before accept */
		c = s->nclients < MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			static const char msg[] = "error: too many monitor clients\n";
			if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* nothing more to tell a client we are turning away */
			}
			close(fd);
			continue;
		}
		c->ep.kind = EP_CLIENT;
		c->ep.fd = fd;
		ev.data.ptr = &c->ep;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = s->clients;
		if (s->clients)
			s->clients->prev = c;
		s->clients = c;
		s->nclients++;
	}
}

static void *server_main(void *arg)
{
	struct mon_server *s = arg;
	struct epoll_event evs[16];

	for (;;) {
		int n = epoll_wait(s->epfd, evs, 16, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return NULL;  /* cannot happen with a valid epfd; stop serving */
		for (int i = 0; i < n; i++) {
			struct ep_item *it = evs[i].data.ptr;
			if (it->kind == EP_WAKE)
				return NULL;
			if (it->kind == EP_LISTENER) {
				accept_clients(s, (struct mon_listener *)it);
				continue;
			}
			struct mon_client *c = (struct mon_client *)it;
			if (evs[i].events & EPOLLIN)
				client_readable(s, c);
			else if (evs[i].events & EPOLLOUT)
				client_settle(s, c);
			else
				client_close(s, c);  /* EPOLLERR / EPOLLHUP with nothing to read */
		}
	}
}

/* ---- setup and teardown ---------------------------------------------- */

static int server_create(struct monitor *mon, struct mon_server **out, struct err *e)
{
	struct mon_server *s = calloc(1, sizeof(*s));
	struct epoll_event ev = {.events = EPOLLIN};

	if (!s)
		return err_set(e, ENOMEM, "allocating the monitor server");
	s->mon = mon;
	s->wake.kind = EP_WAKE;
	s->wake.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->wake.fd < 0 || s->epfd < 0) {
		err_sys(e, "creating the monitor's epoll set and wakeup eventfd");
		goto fail;
	}
	ev.data.ptr = &s->wake;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake.fd, &ev) < 0) {
		err_sys(e, "adding the wakeup eventfd to epoll");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->wake.fd >= 0)
		close(s->wake.fd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s);
	return -1;
}

/* A socket file left by a VM that died is reused; one that answers is not. */
static int bind_path(int fd, const struct sockaddr_un *sa, struct err *e)
{
	int probe, rc;
	struct stat st;

	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return err_sys(e, "binding monitor socket %s", sa->sun_path);
	if (lstat(sa->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return err_set(e, EEXIST, "binding monitor socket %s: a file that is not a socket is in the way",
			       sa->sun_path);
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return err_sys(e, "creating a socket to probe %s", sa->sun_path);
	rc = connect(probe, (const struct sockaddr *)sa, sizeof(*sa));
	close(probe);
	if (rc == 0)
		return err_set(e, EADDRINUSE, "monitor socket %s is in use by a running process",
			       sa->sun_path);
	if (unlink(sa->sun_path) < 0)
		return err_sys(e, "removing stale monitor socket %s", sa->sun_path);
	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
		return err_sys(e, "binding monitor socket %s", sa->sun_path);
	return 0;
}

static int listener_open(struct mon_server *s, const char *path, struct err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct epoll_event ev = {.events = EPOLLIN};
	struct mon_listener *l;

	if (s->nls == MAX_LISTENERS)
		return err_set(e, EMFILE, "at most %d monitor sockets", MAX_LISTENERS);
	if (!path[0] || strlen(path) >= sizeof(sa.sun_path))
		return err_set(e, ENAMETOOLONG, "monitor socket path '%.64s' is empty or longer than %zu bytes",
			       path, sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		return err_set(e, ENOMEM, "allocating a monitor listener");
	}
	l->ep.kind = EP_LISTENER;
	l->ep.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->ep.fd < 0) {
		err_sys(e, "creating monitor socket %s", path);
		goto fail;
	}
	if (bind_path(l->ep.fd, &sa, e) < 0)
		goto fail;
	if (listen(l->ep.fd, 16) < 0) {
		err_sys(e, "listening on monitor socket %s", path);
		goto fail_unlink;
	}
	ev.data.ptr = &l->ep;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, l->ep.fd, &ev) < 0) {
		err_sys(e, "adding monitor socket %s to epoll", path);
		goto fail_unlink;
	}
	s->ls[s->nls++] = l;
	return 0;
fail_unlink:
	unlink(path);
fail:
	if (l->ep.fd >= 0)
		close(l->ep.fd);
	free(l->path);
	free(l);
	return -1;
}

/* The server thread takes no signals: they belong to the VM's main thread. */
static int server_start(struct mon_server *s, struct err *e)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->thread, NULL, server_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		errno = rc;
		return err_sys(e, "starting the monitor server thread");
	}
	pthread_setname_np(s->thread, "monitor");
	s->started = true;
	return 0;
}

static void server_free(struct mon_server *s)
{
	while (s->clients)
		client_close(s, s->clients);
	for (unsigned i = 0; i < s->nls; i++) {
		close(s->ls[i]->ep.fd);
		unlink(s->ls[i]->path);
		free(s->ls[i]->path);
		free(s->ls[i]);
	}
	close(s->wake.fd);
	close(s->epfd);
	free(s);
}

int monitor_listen_unix(struct monitor *mon, const char *path, struct err *e)
{
	int rc = 0;

	pthread_mutex_lock(&mon->srv_lock);
	if (!mon->srv && server_create(mon, &mon->srv, e) < 0)
		rc = -1;
	/* Adding to the epoll set is safe while the thread waits on it; the
	 * listener array is only appended to before the fd is added. */
	if (rc == 0 && listener_open(mon->srv, path, e) < 0)
		rc = -1;
	if (rc == 0 && !mon->srv->started && server_start(mon->srv, e) < 0)
		rc = -1;
	if (rc < 0 && mon->srv && !mon->srv->started) {
		server_free(mon->srv);
		mon->srv = NULL;
	}
	pthread_mutex_unlock(&mon->srv_lock);
	return rc;
}

void monitor_stop(struct monitor *mon)
{
	struct mon_server *s;
	uint64_t one = 1;

	pthread_mutex_lock(&mon->srv_lock);
	s = mon->srv;
	mon->srv = NULL;
	pthread_mutex_unlock(&mon->srv_lock);
	if (!s)
		return;
	if (s->started) {
		if (write(s->wake.fd, &one, sizeof(one)) < 0) {
			/* eventfd writes only fail on counter overflow: it is awake anyway */
		}
		pthread_join(s->thread, NULL);
	}
	server_free(s);
}
