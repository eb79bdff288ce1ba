/* MC146818 CMOS clock: see rtc.h. Time registers are computed on each read
 * from the host clock, so there is no update cycle to emulate. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vmswitch/dev.h"
#include "vmswitch/rtc.h"

enum {
	REG_SEC = 0x00, REG_MIN = 0x02, REG_HOUR = 0x04, REG_WDAY = 0x06,
	REG_MDAY = 0x07, REG_MON = 0x08, REG_YEAR = 0x09,
	REG_A = 0x0a, REG_B = 0x0b, REG_C = 0x0c, REG_D = 0x0d, REG_CENTURY = 0x32,
};
#define REG_A_DEFAULT 0x26   /* 32.768 kHz base, 1024 Hz rate, UIP clear */
#define REG_B_24H 0x02
#define REG_D_VRT 0x80       /* battery good */
#define INDEX_MASK 0x7f      /* bit 7 of the index port gates NMIs */

struct rtc {
	pthread_mutex_t lock;    /* vCPU threads may race on index/data */
	time_t (*now)(time_t *);
	uint8_t index;
	uint8_t ram[128];
};

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t clock_reg(struct rtc *rtc, uint8_t reg)
{
	time_t t = rtc->now(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	switch (reg) {
	case REG_SEC: return bcd(tm.tm_sec);
	case REG_MIN: return bcd(tm.tm_min);
	case REG_HOUR: return bcd(tm.tm_hour);
	case REG_WDAY: return bcd(tm.tm_wday + 1);
	case REG_MDAY: return bcd(tm.tm_mday);
	case REG_MON: return bcd(tm.tm_mon + 1);
	case REG_YEAR: return bcd(tm.tm_year % 100);
	case REG_CENTURY: return bcd(19 + tm.tm_year / 100);
	default: return rtc->ram[reg];
	}
}

int rtc_create(time_t (*now)(time_t *), struct rtc **out, struct err *e)
{
	struct rtc *rtc = calloc(1, sizeof(*rtc));

	if (!rtc)
		return err_set(e, ENOMEM, "allocating the RTC");
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->now = now ? now : time;
	rtc->ram[REG_A] = REG_A_DEFAULT;
	rtc->ram[REG_B] = REG_B_24H;
	rtc->ram[REG_D] = REG_D_VRT;
	*out = rtc;
	return 0;
}

void rtc_destroy(struct rtc *rtc)
{
	if (!rtc)
		return;
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}

void rtc_io(struct rtc *rtc, uint16_t port, uint8_t *data, bool is_write)
{
	pthread_mutex_lock(&rtc->lock);
	if (port == RTC_PORT_INDEX) {
		if (is_write)
			rtc->index = *data & INDEX_MASK;
		else
			*data = rtc->index;
	} else if (is_write) {
		/* The clock follows the host: writes to time registers are kept
		 * in RAM but not read back; A's UIP bit and C/D are read-only. */
		if (rtc->index != REG_C && rtc->index != REG_D)
			rtc->ram[rtc->index] = rtc->index == REG_A ? (*data & 0x7f) : *data;
	} else {
		*data = clock_reg(rtc, rtc->index);
		if (rtc->index == REG_C)
			rtc->ram[REG_C] = 0;  /* reading C acknowledges interrupts */
	}
	pthread_mutex_unlock(&rtc->lock);
}

static int rtc_port_io(void *ctx, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	for (unsigned i = 0; i < size; i++)
		rtc_io(ctx, (uint16_t)(RTC_PORT_INDEX + off + i), data + i, is_write);
	return 0;
}

int rtc_register(struct rtc *rtc, struct io_bus *bus, struct err *e)
{
	return io_bus_register_port(bus, RTC_PORT_INDEX, 2, rtc_port_io, rtc, "rtc", e);
}
