/* Unit tests: naming the instructions KVM's emulator refuses, and which ones
 * vmswitch completes itself on PVM hosts. */
#include <check.h>
#include <string.h>

#include "../../src/vm/insn.h"

#include "check_run.h"

static struct insn_info dec(const uint8_t *b, size_t n)
{
	struct insn_info in;
	insn_decode(b, n, &in);
	return in;
}

START_TEST(known_failures)
{
	static const struct { uint8_t b[6]; size_t n; const char *name; } t[] = {
		{{0xf0, 0x48, 0x0f, 0xc7, 0x0e}, 5, "cmpxchg8b/16b"},  /* lock cmpxchg16b (%rsi) */
		{{0x48, 0x0f, 0xae, 0x2f}, 4, "xrstor"},              /* xrstor64 (%rdi) */
		{{0x0f, 0xae, 0x27}, 3, "xsave"},
		{{0x0f, 0x01, 0xca}, 3, "clac"},
		{{0x0f, 0x01, 0xd0}, 3, "xgetbv"},
		{{0xf3, 0x48, 0x0f, 0xb8, 0xc7}, 5, "popcnt"},
		{{0x0f, 0x01, 0xf9}, 3, "rdtscp"},
		{{0xc5, 0xf8, 0x77}, 3, "AVX (VEX/EVEX-encoded)"},
		{{0xd9, 0xee}, 2, "x87 arithmetic"},
		{{0x0f, 0x58, 0xc1}, 3, "SSE"},
		{{0x90}, 1, "unknown"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct insn_info in = dec(t[i].b, t[i].n);
		ck_assert_msg(strcmp(in.name, t[i].name) == 0, "case %zu: got %s want %s", i, in.name, t[i].name);
		ck_assert_int_eq(in.fixup, INSN_FIXUP_NONE);
	}
}
END_TEST

START_TEST(fixups)
{
	uint8_t int3[] = {0xcc, 0x90}, fwait[] = {0x9b, 0xdb, 0xe2};
	struct insn_info a = dec(int3, 2), b = dec(fwait, 3);
	ck_assert_str_eq(a.name, "int3");
	ck_assert_int_eq(a.fixup, INSN_FIXUP_INT3);
	ck_assert_uint_eq(a.len, 1);
	ck_assert_str_eq(b.name, "fwait");
	ck_assert_int_eq(b.fixup, INSN_FIXUP_SKIP);
	ck_assert_uint_eq(b.len, 1);
	/* A prefixed 0xcc is not int3 and must not be "fixed". */
	uint8_t pre[] = {0x66, 0xcc};
	ck_assert_int_eq(dec(pre, 2).fixup, INSN_FIXUP_NONE);
	/* Truncated or empty input is unknown, never an overread. */
	ck_assert_str_eq(dec(int3, 0).name, "unknown");
	uint8_t trunc[] = {0x0f, 0xae};
	ck_assert_str_eq(dec(trunc, 2).name, "unknown");
}
END_TEST

START_TEST(hex)
{
	uint8_t b[] = {0x0f, 0xc7, 0x0e};
	char buf[32];
	insn_hex(b, 3, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0f c7 0e");
	insn_hex(b, 3, buf, 6);
	ck_assert_str_eq(buf, "0f");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("insn");
	TCase *tc = tcase_create("decode");
	tcase_add_test(tc, known_failures);
	tcase_add_test(tc, fixups);
	tcase_add_test(tc, hex);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
