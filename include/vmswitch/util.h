/* Small helpers shared by every layer: number parsing, logging, time. */
#ifndef VMSWITCH_UTIL_H
#define VMSWITCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "vmswitch/err.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)
#define HUGE_SIZE (2ULL << 20)
#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uint64_t)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* "4096", "0x1000", "64M", "2G", "512K" (binary units, case-insensitive).
 * Rejects empty strings, junk, unknown suffixes and overflow. */
int parse_size(const char *s, uint64_t *out, struct err *e);
/* Decimal or 0x-hex integer, no suffix. */
int parse_u64(const char *s, uint64_t *out, struct err *e);

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* Thread CPU time of the whole process, in nanoseconds. */
uint64_t cpu_ns(void);

/* Messages to stderr with a "vmswitch: " prefix; log_debug only with --verbose. */
extern bool log_verbose;
/* now_ns() when main() started: the origin for start-up timings. */
extern uint64_t log_start_ns;
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Make room for `need` bytes in a growable buffer (*buf with capacity *cap),
 * doubling from `min_cap`. Returns false (buffer unchanged) when out of memory. */
bool buf_reserve(char **buf, size_t *cap, size_t need, size_t min_cap);

/* Zeroed arrays of n elements as mappings of their own (zalloc.c): zero
 * for free however often they are allocated, where calloc clears big
 * blocks once glibc's mmap threshold has risen. NULL when out of memory;
 * zfree(NULL) does nothing. */
void *zalloc(size_t n, size_t size);
void zfree(void *p);

/* read()/write() whole buffers, retrying on EINTR and short transfers. */
int read_full(int fd, void *buf, size_t len);
int write_full(int fd, const void *buf, size_t len);

#endif
