/* A CMOS real-time clock (MC146818) at ports 0x70/0x71: the host's time in
 * BCD, 24-hour mode, never "update in progress", and 128 bytes of CMOS RAM.
 * Linux reads the wall clock from it at boot; without it every read is 0xff
 * and the kernel complains (older ones spin on the UIP bit forever). */
#ifndef VMSWITCH_RTC_H
#define VMSWITCH_RTC_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vmswitch/err.h"

#define RTC_PORT_INDEX 0x70
#define RTC_PORT_DATA  0x71

struct io_bus;
struct rtc;

/* now == NULL means the host's clock (tests pass a fixed time). */
int rtc_create(time_t (*now)(time_t *), struct rtc **out, struct err *e);
void rtc_destroy(struct rtc *rtc);
void rtc_io(struct rtc *rtc, uint16_t port, uint8_t *data, bool is_write);
int rtc_register(struct rtc *rtc, struct io_bus *bus, struct err *e);

#endif
