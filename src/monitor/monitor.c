/* The monitor object: command lookup, argument-count checks and the lock
 * that makes one command execute at a time, whichever door it came in by. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"

static const struct mon_cmd *const mon_tables[] = {
	mon_cmds_info, mon_cmds_mem, mon_cmds_mmu, mon_cmds_vm,
};

int monitor_create(const struct monitor_target *t, struct monitor **out, struct err *e)
{
	struct monitor *mon = calloc(1, sizeof(*mon));

	if (!mon)
		return err_set(e, ENOMEM, "allocating the monitor");
	mon->t = *t;
	pthread_mutex_init(&mon->lock, NULL);
	pthread_mutex_init(&mon->srv_lock, NULL);
	*out = mon;
	return 0;
}

void monitor_destroy(struct monitor *mon)
{
	if (!mon)
		return;
	monitor_stop(mon);
	pthread_mutex_destroy(&mon->lock);
	pthread_mutex_destroy(&mon->srv_lock);
	free(mon);
}

/* "x/N[bhwg] GVA": a format glued to the name takes no space. */
static const char *args_sep(const struct mon_cmd *c)
{
	return c->args[0] && c->args[0] != '/' ? " " : "";
}

static void print_usage(FILE *out, const struct mon_cmd *c)
{
	char head[64];

	snprintf(head, sizeof(head), "%s%s%s%s%s", c->name, c->sub ? " " : "",
		 c->sub ? c->sub : "", args_sep(c), c->args);
	fprintf(out, "%-34s %s\n", head, c->help);
}

void mon_print_help(FILE *out)
{
	for (size_t t = 0; t < sizeof(mon_tables) / sizeof(mon_tables[0]); t++)
		for (const struct mon_cmd *c = mon_tables[t]; c->name; c++)
			print_usage(out, c);
	fprintf(out, "Numbers are decimal or 0x hex; addresses and sizes also take K, M, G.\n");
}

/* The word before any '/' names the command (x/16g -> x). */
static bool name_matches(const char *name, const char *word)
{
	size_t n = strlen(name);

	return strncmp(name, word, n) == 0 && (word[n] == '\0' || word[n] == '/');
}

static int usage_error(const struct mon_cmd *c, struct err *e)
{
	return err_set(e, EINVAL, "usage: %s%s%s%s%s", c->name, c->sub ? " " : "",
		       c->sub ? c->sub : "", args_sep(c), c->args);
}

static int unknown_sub(const char *name, int argc, char **argv, struct err *e)
{
	char subs[256] = "", w[64];
	size_t n = 0;

	for (size_t t = 0; t < sizeof(mon_tables) / sizeof(mon_tables[0]); t++)
		for (const struct mon_cmd *c = mon_tables[t]; c->name; c++)
			if (c->sub && strcmp(c->name, name) == 0 && n + strlen(c->sub) + 2 < sizeof(subs))
				n += (size_t)snprintf(subs + n, sizeof(subs) - n, "%s%s", n ? "|" : "", c->sub);
	if (argc < 2)
		return err_set(e, EINVAL, "usage: %s %s ...", name, subs);
	mon_escape(w, sizeof(w), argv[1], 32);
	return err_set(e, EINVAL, "unknown command '%s %s' (%s takes %s)", name, w, name, subs);
}

static const struct mon_cmd *lookup(int argc, char **argv, int *skip, struct err *e)
{
	bool has_subs = false;
	char w[64];

	for (size_t t = 0; t < sizeof(mon_tables) / sizeof(mon_tables[0]); t++) {
		for (const struct mon_cmd *c = mon_tables[t]; c->name; c++) {
			if (!name_matches(c->name, argv[0]))
				continue;
			if (!c->sub) {
				*skip = 1;
				return c;
			}
			has_subs = true;
			if (argc > 1 && strcmp(c->sub, argv[1]) == 0) {
				*skip = 2;
				return c;
			}
		}
	}
	if (has_subs)
		return unknown_sub(argv[0], argc, argv, e), NULL;
	mon_escape(w, sizeof(w), argv[0], 32);
	err_set(e, ENOENT, "unknown command '%s' (try 'help')", w);
	return NULL;
}

/* Control bytes (and NUL, which would cut the line short) never form a
 * command: say so instead of guessing at what was meant. */
static bool is_garbage(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return true;
	}
	return false;
}

/* A reason travels as one line: fold any newline a lower layer put in. */
static void one_line(struct err *e)
{
	for (char *p = e->msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (!e->msg[0])
		snprintf(e->msg, sizeof(e->msg), "failed (%s)", strerror(e->code ? e->code : EIO));
}

int monitor_exec_buf(struct monitor *mon, const char *line, size_t len, FILE *out,
		     struct err *e)
{
	char *argv[MON_MAX_ARGS + 1];
	const struct mon_cmd *c;
	char *copy;
	int argc, skip = 0, rc;

	err_clear(e);
	if (is_garbage(line, len))
		return err_set(e, ENOENT, "unknown command (the line holds control bytes)");
	copy = strndup(line, len);
	if (!copy)
		return err_set(e, ENOMEM, "copying the command line");
	argc = mon_split(copy, argv, MON_MAX_ARGS + 1);
	if (argc <= 0) {
		free(copy);
		return argc < 0 ? err_set(e, E2BIG, "too many arguments (at most %d words)",
					  MON_MAX_ARGS) : 0;
	}
	argv[argc] = NULL;
	c = lookup(argc, argv, &skip, e);
	if (!c) {
		rc = -1;
	} else if (argc - skip < c->min_args || argc - skip > c->max_args) {
		rc = usage_error(c, e);
	} else {
		pthread_mutex_lock(&mon->lock);
		rc = c->fn(mon, argc - skip + 1, argv + skip - 1, out, e);
		pthread_mutex_unlock(&mon->lock);
	}
	free(copy);
	fflush(out);
	if (rc < 0)
		one_line(e);
	return rc < 0 ? -1 : 0;
}

int monitor_exec(struct monitor *mon, const char *line, FILE *out, struct err *e)
{
	return monitor_exec_buf(mon, line, strlen(line), out, e);
}

int monitor_exec_progress(struct monitor *mon, const char *line, FILE *out,
			  void (*progress)(void *ctx, uint64_t pages_moved), void *ctx,
			  struct err *e)
{
	int rc;

	if (!mon->t.mem)
		return monitor_exec(mon, line, out, e);
	mem_set_progress(mon->t.mem, progress, ctx);
	rc = monitor_exec(mon, line, out, e);
	mem_set_progress(mon->t.mem, NULL, NULL);
	return rc;
}
