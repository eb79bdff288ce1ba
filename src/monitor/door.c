/* The doors into the monitor that are not sockets or terminals: the
 * --monitor option's syntax, and commands a guest sends by hypercall. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/util.h"

int monitor_parse_door(const char *spec, enum monitor_door *kind, const char **path,
		       struct err *e)
{
	*path = NULL;
	if (strcmp(spec, "stdio") == 0) {
		*kind = MONITOR_DOOR_STDIO;
		return 0;
	}
	if (strncmp(spec, "unix:", 5) == 0 && spec[5]) {
		*kind = MONITOR_DOOR_UNIX;
		*path = spec + 5;
		return 0;
	}
	return err_set(e, EINVAL, "--monitor '%s': expected 'stdio' or 'unix:PATH'", spec);
}

/* Commands that need the vCPUs parked cannot come from a vCPU. */
static bool needs_vcpus(const char *cmd)
{
	static const char *const words[] = {"pause", "resume", "translate", "x", "xp"};
	size_t n;

	while (*cmd == ' ' || *cmd == '\t')
		cmd++;
	if (strncmp(cmd, "info", 4) == 0 && strstr(cmd, "vcpus"))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		n = strlen(words[i]);
		if (strncmp(cmd, words[i], n) == 0 &&
		    (cmd[n] == '\0' || cmd[n] == ' ' || cmd[n] == '\t' || cmd[n] == '/'))
			return true;
	}
	return false;
}

int monitor_request(void *arg, const char *cmd, struct err *e)
{
	struct monitor *mon = arg;
	char *buf = NULL, *line, *save = NULL;
	size_t size = 0;
	FILE *f;
	int rc;

	if (needs_vcpus(cmd))
		return err_set(e, EPERM, "'%.32s' cannot be run from inside the guest", cmd);
	f = open_memstream(&buf, &size);
	if (!f)
		return err_sys(e, "capturing the output of a guest request");
	rc = monitor_exec(mon, cmd, f, e);
	fclose(f);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		log_debug("guest request '%.32s': %s", cmd, line);
	free(buf);
	return rc;
}
