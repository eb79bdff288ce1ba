/* Unit tests: size and number parsing, error formatting, workers, zeroed
 * arrays. */
#include <check.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/util.h"
#include "vmswitch/worker.h"

#include "check_run.h"

START_TEST(sizes_accepted)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{"0", 0}, {"4096", 4096}, {"0x1000", 4096}, {"64M", 64 * MiB},
		{"64m", 64 * MiB}, {"2G", 2 * GiB}, {"512K", 512 * KiB},
		{"1T", 1024 * GiB}, {"256MiB", 256 * MiB}, {"1GB", GiB},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct err e = {0};
		uint64_t v = 1;
		ck_assert_msg(parse_size(ok[i].s, &v, &e) == 0, "%s: %s", ok[i].s, e.msg);
		ck_assert_uint_eq(v, ok[i].v);
	}
}
END_TEST

START_TEST(sizes_rejected)
{
	static const char *bad[] = {"", "3Q", "M", "-1", "12MX", "0x", "99999999999999999999",
				    "16777216T", " 1", "1 "};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct err e = {0};
		uint64_t v;
		ck_assert_msg(parse_size(bad[i], &v, &e) == -1, "'%s' accepted", bad[i]);
		ck_assert_msg(e.msg[0] != '\0', "'%s' gave no message", bad[i]);
	}
}
END_TEST

START_TEST(u64_strict)
{
	struct err e = {0};
	uint64_t v;
	ck_assert_int_eq(parse_u64("0x10", &v, &e), 0);
	ck_assert_uint_eq(v, 16);
	ck_assert_int_eq(parse_u64("10K", &v, &e), -1);
	ck_assert_int_eq(parse_u64("abc", &v, &e), -1);
}
END_TEST

START_TEST(err_messages)
{
	struct err e = {0};
	errno = ENOENT;
	ck_assert_int_eq(err_sys(&e, "open %s", "x"), -1);
	ck_assert_str_eq(e.msg, "open x: No such file or directory");
	ck_assert_int_eq(e.code, ENOENT);
	err_wrap(&e, "kernel");
	ck_assert_str_eq(e.msg, "kernel: open x: No such file or directory");
}
END_TEST

START_TEST(buffer_growth)
{
	char *b = NULL;
	size_t cap = 0;
	ck_assert(buf_reserve(&b, &cap, 10, 16));
	ck_assert_uint_eq(cap, 16);
	ck_assert(buf_reserve(&b, &cap, 16, 16));
	ck_assert_uint_eq(cap, 16);              /* already enough: unchanged */
	ck_assert(buf_reserve(&b, &cap, 100, 16));
	ck_assert_uint_eq(cap, 128);             /* doubled until it fits */
	ck_assert(!buf_reserve(&b, &cap, SIZE_MAX / 2 + 2, 16)); /* cannot double further */
	ck_assert_uint_eq(cap, 128);
	free(b);
}
END_TEST

static atomic_int worker_state;   /* 1 running, 2 saw the stop */

static void *worker_body(void *arg)
{
	struct pollfd p = { .fd = ((struct worker *)arg)->stop_fd, .events = POLLIN };
	atomic_store(&worker_state, 1);
	while (poll(&p, 1, -1) < 0 || !(p.revents & POLLIN))
		;
	atomic_store(&worker_state, 2);
	return NULL;
}

START_TEST(worker_stops)
{
	struct worker w;
	struct err e = {0};

	worker_init(&w);
	worker_stop(&w);   /* never started: nothing to do */
	ck_assert_int_eq(w.stop_fd, -1);
	ck_assert_int_eq(worker_start(&w, worker_body, &w, "test-worker", "test worker", &e), 0);
	worker_stop(&w);   /* returns only once the thread saw the stop */
	ck_assert_int_eq(atomic_load(&worker_state), 2);
	ck_assert(!w.running);
	ck_assert_int_eq(w.stop_fd, -1);
}
END_TEST

/* Every zalloc is zero however often memory comes and goes (a big calloc
 * after a big free is cleared by memset, which a devirtualize paid each
 * time), aligned for 16-byte words, and an impossible size is NULL. */
START_TEST(zalloc_is_zero_every_time)
{
	const size_t n = 3 << 20;   /* 24 MiB of uint64_t */

	for (int round = 0; round < 3; round++) {
		uint64_t *a = zalloc(n, sizeof(*a));
		ck_assert_ptr_nonnull(a);
		ck_assert_uint_eq((uintptr_t)a % 16, 0);
		for (size_t i = 0; i < n; i += 4099)
			ck_assert_uint_eq(a[i], 0);
		ck_assert_uint_eq(a[n - 1], 0);
		memset(a, 0xa5, n * sizeof(*a));
		zfree(a);
	}
	ck_assert_ptr_null(zalloc(SIZE_MAX / 2, 4));
	zfree(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, sizes_accepted);
	tcase_add_test(tc, sizes_rejected);
	tcase_add_test(tc, u64_strict);
	tcase_add_test(tc, err_messages);
	tcase_add_test(tc, buffer_growth);
	tcase_add_test(tc, worker_stops);
	tcase_add_test(tc, zalloc_is_zero_every_time);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
