/* Unit tests: the 16550A model, register by register, the sequences Linux's
 * 8250 driver performs, the IRQ line, and input racing a polling "vCPU". */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmswitch/serial.h"
#include "vmswitch/util.h"

#include "check_run.h"

/* What the UART told the "VM". */
struct rec {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int level;
	unsigned raises, lowers, repeats;  /* repeats: set_irq without a change */
	uint8_t out[256];
	size_t nout;
	sem_t ready;
	unsigned ready_calls;
};

static void rec_output(void *ctx, const uint8_t *buf, size_t len)
{
	struct rec *r = ctx;

	for (size_t i = 0; i < len && r->nout < sizeof(r->out); i++)
		r->out[r->nout++] = buf[i];
}

static void rec_irq(void *ctx, int level)
{
	struct rec *r = ctx;

	pthread_mutex_lock(&r->lock);
	if (level == r->level)
		r->repeats++;
	else if (level)
		r->raises++;
	else
		r->lowers++;
	r->level = level;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void rec_ready(void *ctx)
{
	struct rec *r = ctx;

	__atomic_fetch_add(&r->ready_calls, 1, __ATOMIC_RELAXED);
	sem_post(&r->ready);
}

static struct serial *new_uart(struct rec *r)
{
	struct serial_ops ops = {.ctx = r, .output = rec_output, .set_irq = rec_irq,
				 .rx_ready = rec_ready};
	struct serial *s;
	struct err e = {0};

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	sem_init(&r->ready, 0, 0);
	ck_assert_msg(serial_create(&ops, &s, &e) == 0, "%s", e.msg);
	return s;
}

static void done(struct serial *s, struct rec *r)
{
	ck_assert_uint_eq(r->repeats, 0);
	serial_destroy(s);
	sem_destroy(&r->ready);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
}

static uint8_t rd(struct serial *s, unsigned off)
{
	uint8_t v = 0x5a;
	serial_io(s, off, &v, false);
	return v;
}

static void wr(struct serial *s, unsigned off, uint8_t v)
{
	serial_io(s, off, &v, true);
}

static size_t in(struct serial *s, const char *str)
{
	return serial_input(s, (const uint8_t *)str, strlen(str));
}

START_TEST(reset_state)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	ck_assert_uint_eq(rd(s, UART_IER), 0);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_NO_INT);
	ck_assert_uint_eq(rd(s, UART_LCR), 0);
	ck_assert_uint_eq(rd(s, UART_MCR), 0);
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(s, UART_MSR), UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD);
	ck_assert_uint_eq(rd(s, 8), 0xff);  /* beyond the 8 registers */
	wr(s, 9, 0);
	ck_assert_uint_eq(r.raises + r.lowers, 0);
	done(s, &r);
}
END_TEST

START_TEST(dlab_and_plain_registers)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	wr(s, UART_IER, 0xff);
	ck_assert_uint_eq(rd(s, UART_IER), 0x0f);  /* upper bits do not exist on a 16550A */
	wr(s, UART_IER, 0x05);
	wr(s, UART_LCR, UART_LCR_DLAB | 0x03);
	ck_assert_uint_eq(rd(s, UART_DLL), 12);  /* 9600 baud at power-on */
	wr(s, UART_DLL, 0x01);
	wr(s, UART_DLM, 0x02);
	ck_assert_uint_eq(rd(s, UART_DLL), 0x01);
	ck_assert_uint_eq(rd(s, UART_DLM), 0x02);
	ck_assert_uint_eq(r.nout, 0);  /* a DLL write is no transmission */
	ck_assert_uint_eq(rd(s, UART_LCR), 0x83);
	wr(s, UART_LCR, 0x1b);  /* DLAB off: 8 data bits, even parity */
	ck_assert_uint_eq(rd(s, UART_LCR), 0x1b);
	ck_assert_uint_eq(rd(s, UART_IER), 0x05);
	wr(s, UART_THR, 'x');
	ck_assert_uint_eq(r.nout, 1);
	ck_assert_uint_eq(r.out[0], 'x');
	for (unsigned v = 0; v < 256; v += 51) {
		wr(s, UART_SCR, (uint8_t)v);
		ck_assert_uint_eq(rd(s, UART_SCR), v);
	}
	wr(s, UART_MCR, 0xff);
	ck_assert_uint_eq(rd(s, UART_MCR), 0x1f);
	/* LSR and MSR ignore writes. */
	wr(s, UART_MCR, 0);
	wr(s, UART_LSR, 0xff);
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	rd(s, UART_MSR);
	wr(s, UART_MSR, 0x0f);
	ck_assert_uint_eq(rd(s, UART_MSR), 0xb0);
	done(s, &r);
}
END_TEST

START_TEST(fifo_enable_and_reset)
{
	struct rec r;
	struct serial *s = new_uart(&r);
	uint8_t buf[20];

	for (int i = 0; i < 20; i++)
		buf[i] = (uint8_t)('a' + i);
	/* Without FIFOs the receiver holds one byte. */
	ck_assert_uint_eq(serial_input(s, buf, 20), 1);
	ck_assert_uint_eq(rd(s, UART_IIR) & UART_IIR_FIFO, 0);
	/* Enabling the FIFOs empties them. */
	wr(s, UART_FCR, UART_FCR_ENABLE);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, 0);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	ck_assert_uint_eq(serial_input(s, buf, 20), 16);
	ck_assert_uint_eq(serial_input(s, buf, 20), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(rd(s, UART_RBR), 'a' + i);
	/* Writing FCR with FIFOs on and no reset bit keeps the data. */
	wr(s, UART_FCR, UART_FCR_ENABLE | 0x80);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	ck_assert_uint_eq(rd(s, UART_RBR), 'd');
	/* TX reset alone leaves RX alone; RX reset drops the rest. */
	wr(s, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_TX);
	ck_assert_uint_eq(rd(s, UART_RBR), 'e');
	wr(s, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	/* Reset bits self-clear: the FIFO works again at once. */
	ck_assert_uint_eq(serial_input(s, buf, 3), 3);
	ck_assert_uint_eq(rd(s, UART_RBR), 'a');
	/* Disabling the FIFOs empties them too; IIR's FIFO bits go. Bit 5 (the
	 * 16750's 64-byte FIFO) never reads set, so Linux sees a 16550A. */
	wr(s, UART_FCR, 0);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, 0);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_NO_INT);
	wr(s, UART_FCR, UART_FCR_ENABLE | 0x20);
	ck_assert_uint_eq(rd(s, UART_IIR) >> 5, 6);
	ck_assert_uint_eq(serial_input(s, buf, 20), 16);
	done(s, &r);
}
END_TEST

START_TEST(lsr_data_ready_and_transmitter)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	ck_assert_uint_eq(in(s, "Q"), 1);
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT);
	ck_assert_uint_eq(rd(s, UART_RBR), 'Q');
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	/* An empty RBR reads the last byte again and changes nothing. */
	ck_assert_uint_eq(rd(s, UART_RBR), 'Q');
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, 0);
	/* Transmission is immediate: THRE and TEMT stay set, bytes in order. */
	const char *msg = "hello, 8250\r\n";
	for (const char *p = msg; *p; p++) {
		ck_assert_uint_eq(rd(s, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
				  UART_LSR_THRE | UART_LSR_TEMT);
		wr(s, UART_THR, (uint8_t)*p);
	}
	ck_assert_uint_eq(r.nout, strlen(msg));
	ck_assert_mem_eq(r.out, msg, strlen(msg));
	done(s, &r);
}
END_TEST

START_TEST(iir_priorities)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	wr(s, UART_FCR, UART_FCR_ENABLE);          /* trigger level 1 */
	wr(s, UART_MCR, UART_MCR_LOOP);            /* modem inputs drop: deltas */
	wr(s, UART_IER, 0x0f);                     /* THRE armed on the rising edge */
	for (int i = 0; i < 17; i++)               /* one more than the FIFO holds */
		wr(s, UART_THR, (uint8_t)i);
	ck_assert_uint_eq(r.nout, 0);              /* looped back, not sent */
	/* 1: line status (overrun); reading LSR clears it. */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_RLSI);
	ck_assert_uint_eq(rd(s, UART_LSR), UART_LSR_DR | UART_LSR_OE | UART_LSR_THRE |
			  UART_LSR_TEMT);
	/* 2: received data, until the FIFO is drained. */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(s, UART_RBR), i);
	/* 3: THR empty; reading IIR acknowledges it. */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	/* 4: modem status; reading MSR clears it. */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	ck_assert_uint_eq(rd(s, UART_MSR), UART_MSR_DCTS | UART_MSR_DDSR | UART_MSR_DDCD);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	/* Disabled sources are not reported even when their condition holds. */
	wr(s, UART_IER, UART_IER_MSI);
	wr(s, UART_THR, 'z');
	wr(s, UART_MCR, 0);                        /* deltas again */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_MSI);
	ck_assert_uint_eq(r.raises, 0);            /* loopback keeps the pin low */
	done(s, &r);
}
END_TEST

START_TEST(rx_timeout_and_trigger)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	wr(s, UART_IER, UART_IER_RDI);
	ck_assert_uint_eq(in(s, "a"), 1);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_RDI);  /* no FIFO: plain data */
	rd(s, UART_RBR);
	wr(s, UART_FCR, UART_FCR_ENABLE | 0xc0);           /* trigger at 14 */
	ck_assert_uint_eq(in(s, "12345"), 5);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_TIMEOUT);
	ck_assert_uint_eq(in(s, "678901234"), 9);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	rd(s, UART_RBR);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_TIMEOUT);
	for (int i = 0; i < 13; i++)
		rd(s, UART_RBR);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	wr(s, UART_FCR, UART_FCR_ENABLE | 0x40);           /* trigger at 4 */
	ck_assert_uint_eq(in(s, "abcd"), 4);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	done(s, &r);
}
END_TEST

/* serial8250_do_startup's test for UARTs that do not re-assert THRE. */
START_TEST(thre_reasserted_like_linux_probes)
{
	struct rec r;
	struct serial *s = new_uart(&r);
	uint8_t iir1, iir;

	wr(s, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX);
	wr(s, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_THRE, UART_LSR_THRE);
	wr(s, UART_IER, UART_IER_THRI);
	ck_assert_int_eq(r.level, 1);
	iir1 = rd(s, UART_IIR);
	ck_assert_int_eq(r.level, 0);                      /* acknowledged */
	wr(s, UART_IER, 0);
	wr(s, UART_IER, UART_IER_THRI);
	iir = rd(s, UART_IIR);
	wr(s, UART_IER, 0);
	ck_assert_uint_eq(iir1 & UART_IIR_ID, UART_IIR_THRI);
	ck_assert_uint_eq(iir & UART_IIR_ID, UART_IIR_THRI); /* so no UART_BUG_THRE */
	ck_assert_uint_eq(r.raises, 2);
	ck_assert_uint_eq(r.lowers, 2);
	/* Re-writing IER with THRI still set is not a rising edge. */
	wr(s, UART_IER, UART_IER_THRI);
	rd(s, UART_IIR);
	wr(s, UART_IER, UART_IER_THRI | UART_IER_RDI);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	ck_assert_int_eq(r.level, 0);
	done(s, &r);
}
END_TEST

/* The interrupt-driven transmit path: start_tx, the handler's tx_chars,
 * stop_tx; then the polled console path with IER masked. */
START_TEST(thre_transmit_sequence)
{
	struct rec r;
	struct serial *s = new_uart(&r);
	const char *text = "0123456789abcdefXYZ";  /* 19 bytes: two handler runs */
	size_t sent = 0;

	wr(s, UART_FCR, UART_FCR_ENABLE | 0x80);
	wr(s, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	wr(s, UART_IER, UART_IER_RDI | UART_IER_RLSI);
	ck_assert_int_eq(r.level, 0);
	wr(s, UART_IER, UART_IER_RDI | UART_IER_RLSI | UART_IER_THRI);   /* start_tx */
	ck_assert_int_eq(r.level, 1);
	while (r.level) {                                                /* the ISR */
		uint8_t iir = rd(s, UART_IIR);
		if (iir & UART_IIR_NO_INT)
			break;
		ck_assert_uint_eq(iir, UART_IIR_FIFO | UART_IIR_THRI);
		ck_assert(rd(s, UART_LSR) & UART_LSR_THRE);
		for (int n = 0; n < UART_FIFO_SIZE && sent < strlen(text); n++) {
			wr(s, UART_THR, (uint8_t)text[sent++]);
			ck_assert_int_eq(r.level, 1);  /* THR empty again at once */
		}
		if (sent == strlen(text))
			wr(s, UART_IER, UART_IER_RDI | UART_IER_RLSI);   /* stop_tx */
	}
	ck_assert_int_eq(r.level, 0);
	ck_assert_uint_eq(r.nout, strlen(text));
	ck_assert_mem_eq(r.out, text, strlen(text));
	/* Every THR write pulsed the line: a fresh edge per refill. */
	ck_assert_uint_eq(r.raises, 1 + strlen(text));
	ck_assert_uint_eq(r.lowers, r.raises);

	/* serial8250_console_write: mask IER, poll THRE, restore. */
	unsigned raises = r.raises;
	wr(s, UART_IER, 0);
	for (const char *p = "log\r\n"; *p; p++) {
		while (!(rd(s, UART_LSR) & UART_LSR_THRE))
			;
		wr(s, UART_THR, (uint8_t)*p);
	}
	while ((rd(s, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT)) !=
	       (UART_LSR_THRE | UART_LSR_TEMT))
		;
	wr(s, UART_IER, UART_IER_RDI | UART_IER_RLSI);
	ck_assert_uint_eq(r.raises, raises);
	ck_assert_int_eq(r.level, 0);
	ck_assert_mem_eq(r.out + strlen(text), "log\r\n", 5);
	done(s, &r);
}
END_TEST

START_TEST(rx_interrupt_and_out2_gate)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	wr(s, UART_IER, UART_IER_RDI);
	ck_assert_uint_eq(in(s, "k"), 1);
	ck_assert_uint_eq(r.raises, 0);        /* OUT2 clear: INTR not wired to the PIC */
	wr(s, UART_MCR, UART_MCR_OUT2);
	ck_assert_int_eq(r.level, 1);
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_RDI);
	ck_assert_int_eq(r.level, 1);          /* reading IIR does not clear RX data */
	ck_assert_uint_eq(rd(s, UART_RBR), 'k');
	ck_assert_int_eq(r.level, 0);
	ck_assert_uint_eq(in(s, "l"), 1);      /* input raises it from the other side */
	ck_assert_int_eq(r.level, 1);
	wr(s, UART_MCR, 0);
	ck_assert_int_eq(r.level, 0);
	wr(s, UART_MCR, UART_MCR_OUT2);
	ck_assert_int_eq(r.level, 1);
	wr(s, UART_IER, 0);
	ck_assert_int_eq(r.level, 0);
	ck_assert_uint_eq(r.raises, 3);
	ck_assert_uint_eq(r.lowers, 3);
	done(s, &r);
}
END_TEST

/* Random register traffic: set_irq only ever reports a change. */
START_TEST(set_irq_only_on_change)
{
	struct rec r;
	struct serial *s = new_uart(&r);
	unsigned seed = 12345;

	for (int i = 0; i < 200000; i++) {
		unsigned x = (unsigned)rand_r(&seed);
		unsigned off = x % 8;
		uint8_t v = (uint8_t)(x >> 8);
		switch ((x >> 16) % 4) {
		case 0:
			rd(s, off);
			break;
		case 1:
			if (off == UART_MCR && ((x >> 20) & 3))
				v &= (uint8_t)~UART_MCR_LOOP;  /* loopback only now and then */
			wr(s, off, v);
			break;
		case 2: {
			uint8_t b[3] = {v, v, v};
			serial_input(s, b, 1 + (x >> 24) % 3);
			break;
		}
		default:
			rd(s, UART_IIR);
			rd(s, UART_LSR);
			break;
		}
	}
	ck_assert_uint_gt(r.raises, 1000);
	ck_assert_uint_eq(r.repeats, 0);
	ck_assert_uint_le(r.raises - r.lowers, 1);
	done(s, &r);
}
END_TEST

START_TEST(overrun_sets_oe)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	/* FIFO mode: the 17th character is lost, the 16 before it kept. */
	wr(s, UART_FCR, UART_FCR_ENABLE);
	wr(s, UART_MCR, UART_MCR_LOOP);
	for (int i = 0; i < 17; i++)
		wr(s, UART_THR, (uint8_t)(0x40 + i));
	ck_assert_uint_eq(rd(s, UART_LSR) & (UART_LSR_OE | UART_LSR_DR),
			  UART_LSR_OE | UART_LSR_DR);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_OE, 0);  /* cleared by the read */
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(s, UART_RBR), 0x40 + i);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, 0);
	/* 16450 mode: the new character overwrites the unread one. */
	wr(s, UART_FCR, 0);
	wr(s, UART_THR, 'a');
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_OE, 0);
	wr(s, UART_THR, 'b');
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	ck_assert_uint_eq(rd(s, UART_RBR), 'b');
	/* Line status interrupt, when enabled and wired. */
	wr(s, UART_MCR, UART_MCR_OUT2);
	wr(s, UART_IER, UART_IER_RLSI);
	ck_assert_int_eq(r.level, 0);
	wr(s, UART_MCR, UART_MCR_OUT2 | UART_MCR_LOOP);
	wr(s, UART_THR, 'c');
	wr(s, UART_THR, 'd');
	ck_assert_int_eq(r.level, 0);                 /* pending, but loopback cuts OUT2 */
	ck_assert_uint_eq(rd(s, UART_IIR), UART_IIR_RLSI);
	wr(s, UART_MCR, UART_MCR_OUT2);
	ck_assert_int_eq(r.level, 1);
	rd(s, UART_LSR);
	ck_assert_int_eq(r.level, 0);
	/* Console input is flow-controlled instead: refused, never overrun. */
	rd(s, UART_RBR);
	wr(s, UART_FCR, UART_FCR_ENABLE);
	uint8_t buf[40] = {0};
	ck_assert_uint_eq(serial_input(s, buf, sizeof(buf)), 16);
	ck_assert_uint_eq(serial_input(s, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_OE, 0);
	done(s, &r);
}
END_TEST

/* What Linux's autoconfig() does to find and identify the UART. */
START_TEST(loopback_and_autoconfig)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	/* IER probe. */
	uint8_t save = rd(s, UART_IER);
	wr(s, UART_IER, 0);
	ck_assert_uint_eq(rd(s, UART_IER) & 0x0f, 0);
	wr(s, UART_IER, 0x0f);
	ck_assert_uint_eq(rd(s, UART_IER) & 0x0f, 0x0f);
	wr(s, UART_IER, save);
	/* Loopback probe: MCR outputs appear on MSR's inputs. */
	wr(s, UART_MCR, UART_MCR_LOOP | 0x0a);
	ck_assert_uint_eq(rd(s, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_CTS);
	wr(s, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
	ck_assert_uint_eq(rd(s, UART_MSR), UART_MSR_DSR | UART_MSR_RI | UART_MSR_DCTS |
			  UART_MSR_DDSR | UART_MSR_DDCD);
	wr(s, UART_MCR, UART_MCR_LOOP);                      /* RI falls: TERI */
	ck_assert_uint_eq(rd(s, UART_MSR), UART_MSR_DDSR | UART_MSR_TERI);
	/* Data loops back and is not transmitted; the line input is cut off. */
	wr(s, UART_THR, 0xa5);
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	ck_assert_uint_eq(rd(s, UART_RBR), 0xa5);
	ck_assert_uint_eq(r.nout, 0);
	ck_assert_uint_eq(in(s, "x"), 0);
	wr(s, UART_MCR, 0);
	ck_assert_uint_eq(rd(s, UART_MSR), 0xb0 | UART_MSR_DCTS | UART_MSR_DDSR |
			  UART_MSR_DDCD);
	ck_assert_uint_eq(in(s, "x"), 1);
	rd(s, UART_RBR);
	/* Type identification: FIFOs present, readable IIR under any LCR. */
	wr(s, UART_FCR, UART_FCR_ENABLE);
	ck_assert_uint_eq(rd(s, UART_IIR) >> 6, 3);
	wr(s, UART_LCR, 0x80);
	ck_assert_uint_ne(rd(s, UART_FCR), 0);               /* no EFR: not a 16650 */
	wr(s, UART_LCR, 0xbf);
	ck_assert_uint_ne(rd(s, UART_FCR), 0);
	wr(s, UART_LCR, 0);
	wr(s, UART_FCR, UART_FCR_ENABLE | 0x20);
	uint8_t status1 = rd(s, UART_IIR) >> 5;
	wr(s, UART_FCR, UART_FCR_ENABLE);
	wr(s, UART_LCR, 0x80);
	wr(s, UART_FCR, UART_FCR_ENABLE | 0x20);
	uint8_t status2 = rd(s, UART_IIR) >> 5;
	wr(s, UART_FCR, UART_FCR_ENABLE);
	wr(s, UART_LCR, 0);
	ck_assert(!(status1 == 6 && status2 == 7));           /* not a 16750 */
	wr(s, UART_IER, 0x40);                                /* no XScale UUE bit */
	ck_assert_uint_eq(rd(s, UART_IER) & 0x40, 0);
	done(s, &r);
}
END_TEST

START_TEST(rx_ready_once_per_refusal)
{
	struct rec r;
	struct serial *s = new_uart(&r);

	ck_assert_uint_eq(in(s, "abc"), 1);
	ck_assert_uint_eq(r.ready_calls, 0);
	ck_assert_uint_eq(rd(s, UART_RBR), 'a');
	ck_assert_uint_eq(r.ready_calls, 1);
	ck_assert_uint_eq(in(s, "bc"), 1);
	ck_assert_uint_eq(in(s, "c"), 0);
	ck_assert_uint_eq(rd(s, UART_RBR), 'b');
	ck_assert_uint_eq(r.ready_calls, 2);
	ck_assert_uint_eq(in(s, "c"), 1);
	ck_assert_uint_eq(rd(s, UART_RBR), 'c');
	ck_assert_uint_eq(r.ready_calls, 2);                  /* nothing was refused */
	/* Refused in loopback: ready once loopback ends. */
	wr(s, UART_MCR, UART_MCR_LOOP);
	ck_assert_uint_eq(in(s, "d"), 0);
	rd(s, UART_LSR);                                      /* empty, but still looped */
	ck_assert_uint_eq(r.ready_calls, 2);
	wr(s, UART_MCR, 0);
	ck_assert_uint_eq(r.ready_calls, 3);
	/* A FIFO reset also makes room. */
	wr(s, UART_FCR, UART_FCR_ENABLE);
	ck_assert_uint_eq(in(s, "0123456789abcdefg"), 16);
	wr(s, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	ck_assert_uint_eq(r.ready_calls, 4);
	/* Without the callback nothing breaks. */
	struct serial_ops ops = {.ctx = &r, .output = rec_output};
	struct serial *bare;
	struct err e = {0};
	ck_assert_int_eq(serial_create(&ops, &bare, &e), 0);
	ck_assert_uint_eq(serial_input(bare, (const uint8_t *)"xy", 2), 1);
	rd(bare, UART_RBR);
	serial_destroy(bare);
	done(s, &r);
}
END_TEST

/* ---- input from a console thread while a vCPU thread reads ------------- */

struct stream {
	struct serial *s;
	struct rec *r;
	size_t total;
	bool use_irq;
	unsigned long errors, reads;
	char why[128];
};

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 131 + (i >> 8));
}

static void *console_thread(void *arg)
{
	struct stream *st = arg;
	uint8_t chunk[64];
	size_t i = 0;

	while (i < st->total) {
		size_t len = MIN(sizeof(chunk), st->total - i);
		for (size_t k = 0; k < len; k++)
			chunk[k] = pattern(i + k);
		size_t n = serial_input(st->s, chunk, len);
		i += n;
		if (n < len) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 10;
			if (sem_timedwait(&st->r->ready, &ts) < 0) {
				snprintf(st->why, sizeof(st->why), "no rx_ready after %zu bytes", i);
				return NULL;
			}
		}
	}
	return NULL;
}

static bool wait_irq(struct stream *st)
{
	struct rec *r = st->r;
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&r->lock);
	while (!r->level && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	pthread_mutex_unlock(&r->lock);
	return rc != ETIMEDOUT;
}

static void *vcpu_thread(void *arg)
{
	struct stream *st = arg;
	size_t got = 0;

	while (got < st->total) {
		if (st->use_irq) {
			if (!wait_irq(st)) {
				snprintf(st->why, sizeof(st->why), "no IRQ after %zu bytes", got);
				return NULL;
			}
			uint8_t iir = rd(st->s, UART_IIR) & UART_IIR_ID;
			if (iir != UART_IIR_RDI && iir != UART_IIR_TIMEOUT)
				st->errors++;
		}
		while (got < st->total && (rd(st->s, UART_LSR) & UART_LSR_DR)) {
			if (rd(st->s, UART_RBR) != pattern(got))
				st->errors++;
			got++;
			st->reads++;
		}
		if (!st->use_irq)
			sched_yield();
	}
	return NULL;
}

static void run_stream(bool fifo, bool use_irq, size_t total)
{
	struct rec r;
	struct serial *s = new_uart(&r);
	struct stream st = {.s = s, .r = &r, .total = total, .use_irq = use_irq};
	pthread_t con, cpu;

	if (fifo)
		wr(s, UART_FCR, UART_FCR_ENABLE | 0x80);
	if (use_irq) {
		wr(s, UART_MCR, UART_MCR_OUT2);
		wr(s, UART_IER, UART_IER_RDI);
	}
	ck_assert_int_eq(pthread_create(&cpu, NULL, vcpu_thread, &st), 0);
	ck_assert_int_eq(pthread_create(&con, NULL, console_thread, &st), 0);
	pthread_join(con, NULL);
	pthread_join(cpu, NULL);
	ck_assert_msg(st.why[0] == '\0', "%s", st.why);
	ck_assert_uint_eq(st.reads, total);
	ck_assert_uint_eq(st.errors, 0);
	/* Nothing extra arrived: no duplicated bytes. */
	ck_assert_uint_eq(rd(s, UART_LSR) & UART_LSR_DR, 0);
	ck_assert_uint_eq(in(s, "!"), 1);
	ck_assert_uint_eq(rd(s, UART_RBR), '!');
	done(s, &r);
}

START_TEST(stream_polled_fifo)
{
	run_stream(true, false, 200000);
}
END_TEST

START_TEST(stream_polled_no_fifo)
{
	run_stream(false, false, 30000);
}
END_TEST

START_TEST(stream_interrupt_driven)
{
	run_stream(true, true, 100000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("serial");
	TCase *regs = tcase_create("registers");
	tcase_add_test(regs, reset_state);
	tcase_add_test(regs, dlab_and_plain_registers);
	tcase_add_test(regs, fifo_enable_and_reset);
	tcase_add_test(regs, lsr_data_ready_and_transmitter);
	tcase_add_test(regs, iir_priorities);
	tcase_add_test(regs, rx_timeout_and_trigger);
	tcase_add_test(regs, overrun_sets_oe);
	tcase_add_test(regs, loopback_and_autoconfig);
	suite_add_tcase(s, regs);
	TCase *irq = tcase_create("interrupts");
	tcase_add_test(irq, thre_reasserted_like_linux_probes);
	tcase_add_test(irq, thre_transmit_sequence);
	tcase_add_test(irq, rx_interrupt_and_out2_gate);
	tcase_add_test(irq, set_irq_only_on_change);
	tcase_add_test(irq, rx_ready_once_per_refusal);
	suite_add_tcase(s, irq);
	TCase *thr = tcase_create("threads");
	tcase_add_test(thr, stream_polled_fifo);
	tcase_add_test(thr, stream_polled_no_fifo);
	tcase_add_test(thr, stream_interrupt_driven);
	tcase_set_timeout(thr, 50);
	suite_add_tcase(s, thr);
	return check_run(s, false);
}
