/* Internals shared by the monitor's files: the monitor object, the command
 * table and the argument helpers. Not a public contract. */
#ifndef VMSWITCH_MONITOR_INT_H
#define VMSWITCH_MONITOR_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "vmswitch/monitor.h"

#define MON_MAX_ARGS 8
/* A socket line longer than this is rejected and discarded up to its newline. */
#define MON_MAX_LINE (64 * 1024)

struct mon_server;

struct monitor {
	struct monitor_target t;
	pthread_mutex_t lock;      /* one command executes at a time */
	pthread_mutex_t srv_lock;  /* guards srv creation against concurrent listens */
	struct mon_server *srv;    /* NULL until the first monitor_listen_unix */
};

typedef int (*mon_handler)(struct monitor *mon, int argc, char **argv, FILE *out,
			   struct err *e);

struct mon_cmd {
	const char *name;   /* first word */
	const char *sub;    /* second word ("info mode"), or NULL */
	const char *args;   /* usage of the arguments, "" if none */
	const char *help;
	int min_args, max_args;  /* counted after the name (and sub) */
	mon_handler fn;
};

/* Tables, one per file of commands; each ends with a zeroed entry. */
extern const struct mon_cmd mon_cmds_info[];
extern const struct mon_cmd mon_cmds_mem[];
extern const struct mon_cmd mon_cmds_mmu[];
extern const struct mon_cmd mon_cmds_vm[];

/* Split `line` in place on blanks; returns argc or -1 if too many words. */
int mon_split(char *line, char **argv, int max);

/* "NAME: 'x' is not a number" style errors for one argument. */
int mon_arg_u64(const char *what, const char *s, uint64_t *out, struct err *e);
/* Like mon_arg_u64 but also accepts K/M/G suffixes (addresses, sizes). */
int mon_arg_size(const char *what, const char *s, uint64_t *out, struct err *e);
/* Guest-physical [START, END) given as addresses -> PFN range. */
int mon_arg_gpa_range(const char *s, const char *t, uint64_t *first, uint64_t *end,
		      struct err *e);
/* The target's memory, or an error if this VM has none. */
int mon_need_mem(struct monitor *mon, struct err *e);
int mon_need_mmu(struct monitor *mon, struct err *e);
int mon_vcpu_paging(struct monitor *mon, unsigned id, struct monitor_vcpu_info *vi,
		    struct err *e);

/* The mode as the monitor spells it: passthrough, virtualized, partial,
 * virtualizing, devirtualizing. */
struct mem;
const char *mon_mode_name(const struct mem *m);

/* Print the usage lines of every command. */
void mon_print_help(FILE *out);

/* Copy at most `max` bytes of `s` into dst, escaping anything unprintable,
 * so an error message about a garbage line stays one readable line. */
void mon_escape(char *dst, size_t dstlen, const char *s, size_t max);

#endif
