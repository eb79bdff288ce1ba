/* Unit tests: the CMOS clock reads the (given) time in BCD and keeps RAM. */
#include <check.h>

#include "check_run.h"
#include "vmswitch/dev.h"
#include "vmswitch/rtc.h"

/* 2026-11-24 03:04:05 UTC, a Tuesday. */
static time_t fixed(time_t *t)
{
	(void)t;
	return 1795489445;
}

static uint8_t rd(struct rtc *r, uint8_t reg)
{
	uint8_t v = reg;
	rtc_io(r, RTC_PORT_INDEX, &v, true);
	rtc_io(r, RTC_PORT_DATA, &v, false);
	return v;
}

START_TEST(reads_bcd_time)
{
	struct rtc *r;
	struct err e;
	ck_assert_int_eq(rtc_create(fixed, &r, &e), 0);
	ck_assert_uint_eq(rd(r, 0x00), 0x05);
	ck_assert_uint_eq(rd(r, 0x02), 0x04);
	ck_assert_uint_eq(rd(r, 0x04), 0x03);
	ck_assert_uint_eq(rd(r, 0x06), 0x03);   /* Tuesday: day 3 */
	ck_assert_uint_eq(rd(r, 0x07), 0x24);
	ck_assert_uint_eq(rd(r, 0x08), 0x11);
	ck_assert_uint_eq(rd(r, 0x09), 0x26);
	ck_assert_uint_eq(rd(r, 0x32), 0x20);
	ck_assert_uint_eq(rd(r, 0x0a) & 0x80, 0);  /* never update-in-progress */
	ck_assert_uint_eq(rd(r, 0x0b), 0x02);      /* 24 h, BCD */
	ck_assert_uint_eq(rd(r, 0x0d), 0x80);      /* battery good */
	rtc_destroy(r);
}
END_TEST

START_TEST(ram_and_nmi_bit)
{
	struct rtc *r;
	struct err e;
	struct io_bus *bus;
	uint8_t v;
	ck_assert_int_eq(rtc_create(fixed, &r, &e), 0);
	ck_assert_int_eq(io_bus_create(&bus, &e), 0);
	ck_assert_int_eq(rtc_register(r, bus, &e), 0);
	v = 0x80 | 0x40;               /* NMI-disable bit set: index is 0x40 */
	ck_assert(io_bus_port(bus, RTC_PORT_INDEX, &v, 1, true));
	v = 0xab;
	ck_assert(io_bus_port(bus, RTC_PORT_DATA, &v, 1, true));
	ck_assert_uint_eq(rd(r, 0x40), 0xab);
	v = 0x0d;                      /* D is read-only */
	rtc_io(r, RTC_PORT_INDEX, &v, true);
	v = 0;
	rtc_io(r, RTC_PORT_DATA, &v, true);
	ck_assert_uint_eq(rd(r, 0x0d), 0x80);
	io_bus_destroy(bus);
	rtc_destroy(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rtc");
	TCase *tc = tcase_create("cmos");
	tcase_add_test(tc, reads_bcd_time);
	tcase_add_test(tc, ram_and_nmi_bit);
	suite_add_tcase(s, tc);
	return check_run(s, false);
}
