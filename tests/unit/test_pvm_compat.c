/* boot/pvm_compat.c: the kernel options added for Linux on kvm_pvm hosts. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/boot.h"

#include "check_run.h"

static struct boot_pvm_cmdline run(const char *user, bool pvm, bool candidates)
{
	struct boot_pvm_cmdline c;
	struct err e = {0};

	ck_assert_msg(boot_pvm_cmdline(user, pvm, candidates, &c, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull(c.cmdline);
	return c;
}

static bool added(const struct boot_pvm_cmdline *c, const char *opt)
{
	for (unsigned i = 0; i < c->n; i++)
		if (strcmp(c->added[i].option, opt) == 0) {
			ck_assert_ptr_nonnull(c->added[i].why);
			return true;
		}
	return false;
}

/* How many times `word` occurs as a whole parameter. */
static int count_param(const char *line, const char *word)
{
	size_t n = strlen(word);
	int count = 0;

	for (const char *p = strstr(line, word); p; p = strstr(p + 1, word))
		if ((p == line || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0 || p[n] == '='))
			count++;
	return count;
}

START_TEST(not_pvm_is_unchanged)
{
	struct boot_pvm_cmdline c = run("console=ttyS0 quiet", false, true);

	ck_assert_str_eq(c.cmdline, "console=ttyS0 quiet");
	ck_assert_uint_eq(c.n, 0);
	boot_pvm_cmdline_free(&c);
	c = run(NULL, false, false);
	ck_assert_str_eq(c.cmdline, "");
	boot_pvm_cmdline_free(&c);
}
END_TEST

START_TEST(proven_options)
{
	struct boot_pvm_cmdline c = run("console=ttyS0", true, false);

	ck_assert_str_eq(c.cmdline, "console=ttyS0 clearcpuid=smap noxsave");
	ck_assert_uint_eq(c.n, 2);
	ck_assert(added(&c, "noxsave"));
	ck_assert(added(&c, "clearcpuid=smap"));
	ck_assert_ptr_nonnull(strstr(c.added[1].why, "xrstor"));
	boot_pvm_cmdline_free(&c);
	c = run(NULL, true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=smap noxsave");
	boot_pvm_cmdline_free(&c);
}
END_TEST

START_TEST(candidates)
{
	struct boot_pvm_cmdline c = run("console=ttyS0", true, true);

	ck_assert_uint_ge(c.n, 10);
	ck_assert(added(&c, "mitigations=off") && added(&c, "clearcpuid=popcnt"));
	ck_assert_int_eq(count_param(c.cmdline, "clearcpuid"), 1);
	ck_assert_ptr_nonnull(strstr(c.cmdline, "clearcpuid=smap,popcnt,fsgsbase,"));
	ck_assert_int_eq(count_param(c.cmdline, "noxsave"), 1);
	ck_assert_int_eq(count_param(c.cmdline, "nowatchdog"), 1);
	boot_pvm_cmdline_free(&c);
}
END_TEST

/* What the user set stays as the user set it. */
START_TEST(user_options_win)
{
	struct boot_pvm_cmdline c = run("noxsave mitigations=auto no-timer-check", true, true);

	ck_assert(!added(&c, "noxsave") && !added(&c, "mitigations=off") &&
		  !added(&c, "no_timer_check"));
	ck_assert_int_eq(count_param(c.cmdline, "noxsave"), 1);
	ck_assert_int_eq(count_param(c.cmdline, "mitigations"), 1);
	ck_assert_ptr_nonnull(strstr(c.cmdline, "mitigations=auto"));
	ck_assert_ptr_null(strstr(c.cmdline, "no_timer_check"));
	ck_assert(added(&c, "clearcpuid=smap"));
	boot_pvm_cmdline_free(&c);
}
END_TEST

START_TEST(clearcpuid_merged)
{
	struct boot_pvm_cmdline c = run("clearcpuid=avx512f quiet", true, false);

	ck_assert_str_eq(c.cmdline, "clearcpuid=avx512f,smap quiet noxsave");
	boot_pvm_cmdline_free(&c);
	c = run("clearcpuid=smap,avx quiet", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=smap,avx quiet noxsave");
	ck_assert(!added(&c, "clearcpuid=smap"));
	boot_pvm_cmdline_free(&c);
	c = run("clearcpuid=\"x86_64,avx\"", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=\"x86_64,avx,smap\" noxsave");
	boot_pvm_cmdline_free(&c);
	c = run("clearcpuid= quiet", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=smap quiet noxsave");
	boot_pvm_cmdline_free(&c);
	c = run("clearcpuid", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=smap noxsave");
	boot_pvm_cmdline_free(&c);
	/* Two user lists: smap in either counts. */
	c = run("clearcpuid=avx clearcpuid=smap", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=avx clearcpuid=smap noxsave");
	boot_pvm_cmdline_free(&c);
}
END_TEST

/* Kernel options go before "--"; what follows belongs to init. */
START_TEST(init_args_stay_last)
{
	struct boot_pvm_cmdline c = run("console=ttyS0 -- noxsave single", true, false);

	ck_assert_str_eq(c.cmdline, "console=ttyS0 clearcpuid=smap noxsave -- noxsave single");
	boot_pvm_cmdline_free(&c);
	c = run("-- init-arg", true, false);
	ck_assert_str_eq(c.cmdline, "clearcpuid=smap noxsave -- init-arg");
	boot_pvm_cmdline_free(&c);
	c = run("root=\"/dev/a b\" noxsave", true, false);
	ck_assert_str_eq(c.cmdline, "root=\"/dev/a b\" noxsave clearcpuid=smap");
	boot_pvm_cmdline_free(&c);
}
END_TEST

static Suite *pvm_suite(void)
{
	Suite *s = suite_create("pvm_compat");
	TCase *t = tcase_create("cmdline");

	tcase_add_test(t, not_pvm_is_unchanged);
	tcase_add_test(t, proven_options);
	tcase_add_test(t, candidates);
	tcase_add_test(t, user_options_win);
	tcase_add_test(t, clearcpuid_merged);
	tcase_add_test(t, init_args_stay_last);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return check_run(pvm_suite(), false);
}
