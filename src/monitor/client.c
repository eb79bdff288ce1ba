/* vmswitch --connect PATH [COMMAND...]: a client of the monitor socket for
 * scripts. Like main(), it talks to the user (through the FILEs it is
 * given) and answers with an exit status: 0 when every reply was ok, 1 when
 * one was an error, 2 when the monitor could not be reached or hung up. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmswitch/monitor.h"

enum { CLIENT_OK = 0, CLIENT_ERROR = 1, CLIENT_NOCONN = 2 };

static int client_connect(const char *path, FILE *errout)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(errout, "vmswitch: monitor socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(errout, "vmswitch: creating a socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(errout, "vmswitch: cannot connect to monitor %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* send() rather than write(): a vanished server must not SIGPIPE us. */
static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Print output lines until the final one; returns the exit status. */
static int read_reply(FILE *rd, FILE *out, FILE *errout)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = CLIENT_NOCONN;

	while ((n = getline(&line, &cap, rd)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (strcmp(line, "ok") == 0) {
			rc = CLIENT_OK;
			break;
		}
		if (strncmp(line, "error:", 6) == 0) {
			fprintf(errout, "%s\n", line);
			rc = CLIENT_ERROR;
			break;
		}
		fprintf(out, "%s\n", line);
	}
	if (rc == CLIENT_NOCONN)
		fprintf(errout, "vmswitch: the monitor closed the connection before replying\n");
	free(line);
	fflush(out);
	return rc;
}

static int one_command(int fd, FILE *rd, const char *cmd, FILE *out, FILE *errout)
{
	if (send_all(fd, cmd, strlen(cmd)) < 0 || send_all(fd, "\n", 1) < 0) {
		fprintf(errout, "vmswitch: sending to the monitor: %s\n", strerror(errno));
		return CLIENT_NOCONN;
	}
	return read_reply(rd, out, errout);
}

/* The command words joined by spaces; a newline inside a word would start a
 * second command, so it becomes a space too. */
static char *join_words(int argc, char **argv)
{
	size_t len = 1;
	char *s, *p;

	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = p = malloc(len);
	if (!s)
		return NULL;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (i)
			*p++ = ' ';
		memcpy(p, argv[i], n);
		p += n;
	}
	*p = '\0';
	for (p = s; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return s;
}

int monitor_client_run(const char *path, int argc, char **argv, FILE *in, FILE *out,
		       FILE *errout)
{
	int fd = client_connect(path, errout), rc = CLIENT_OK, r;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *rd;

	if (fd < 0)
		return CLIENT_NOCONN;
	rd = fdopen(fd, "r");
	if (!rd) {
		fprintf(errout, "vmswitch: fdopen on the monitor socket: %s\n", strerror(errno));
		close(fd);
		return CLIENT_NOCONN;
	}
	if (argc > 0) {
		line = join_words(argc, argv);
		rc = line ? one_command(fd, rd, line, out, errout) : CLIENT_NOCONN;
	} else {
		while ((n = getline(&line, &cap, in)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				line[--n] = '\0';
			r = one_command(fd, rd, line, out, errout);
			if (r == CLIENT_NOCONN) {
				rc = r;
				break;
			}
			if (r != CLIENT_OK)
				rc = r;
		}
	}
	free(line);
	fclose(rd);
	return rc;
}

int monitor_client_main(const char *path, int argc, char **argv)
{
	return monitor_client_run(path, argc, argv, stdin, stdout, stderr);
}
