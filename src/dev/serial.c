/* 16550A UART register model (see serial.h for what is modelled and why).
 *
 * Interrupt sources are not latched in one IIR byte; IIR is computed on
 * demand from the state each source depends on, so priorities and clearing
 * rules live in one place (pending_id) and the IRQ line is re-derived after
 * every access (update_irq). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/serial.h"

#define UART_LSR_ERRORS (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)
#define UART_MSR_LINES  (UART_MSR_CTS | UART_MSR_DSR | UART_MSR_RI | UART_MSR_DCD)
/* Modem inputs of a UART cabled to a terminal that is always there. */
#define UART_MSR_CONNECTED (UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD)
/* Power-on divisor: 9600 baud from the PC's 1.8432 MHz clock. */
#define UART_RESET_DIVISOR 12

struct serial {
	struct serial_ops ops;
	pthread_mutex_t lock;

	uint8_t rx[UART_FIFO_SIZE];   /* RX FIFO (one slot used without FIFOs) */
	unsigned rx_head, rx_count;
	uint8_t rbr;                  /* last byte read: what an empty RBR reads */

	uint8_t ier, fcr, lcr, mcr, scr, dll, dlm;
	uint8_t lsr_errors;           /* OE (PE/FE/BI never arise here) */
	uint8_t msr_delta;            /* DCTS, DDSR, TERI, DDCD since last MSR read */
	bool thr_ipending;            /* THRE interrupt armed, not yet acknowledged */
	bool irq_level;               /* what set_irq was last told */
	bool rx_refused;              /* serial_input turned bytes away */
};

int serial_create(const struct serial_ops *ops, struct serial **out, struct err *e)
{
	struct serial *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return err_sys(e, "allocating the UART");
	rc = pthread_mutex_init(&s->lock, NULL);
	if (rc) {
		free(s);
		return err_set(e, rc, "initializing the UART lock: %s", strerror(rc));
	}
	s->ops = *ops;
	s->dll = UART_RESET_DIVISOR;
	*out = s;
	return 0;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- receiver ---------------------------------------------------------- */

static bool fifo_on(const struct serial *s)
{
	return s->fcr & UART_FCR_ENABLE;
}

static bool loopback(const struct serial *s)
{
	return s->mcr & UART_MCR_LOOP;
}

static unsigned rx_capacity(const struct serial *s)
{
	return fifo_on(s) ? UART_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct serial *s)
{
	static const unsigned level[] = {1, 4, 8, 14};
	return fifo_on(s) ? level[s->fcr >> 6] : 1;
}

static void rx_clear(struct serial *s)
{
	s->rx_head = s->rx_count = 0;
}

static void rx_push(struct serial *s, uint8_t byte)
{
	s->rx[(s->rx_head + s->rx_count) % UART_FIFO_SIZE] = byte;
	s->rx_count++;
}

static uint8_t rx_pop(struct serial *s)
{
	uint8_t byte = s->rx[s->rx_head];

	s->rx_head = (s->rx_head + 1) % UART_FIFO_SIZE;
	s->rx_count--;
	return byte;
}

/* A character arrives from the (looped-back) transmitter, which cannot wait:
 * with the receiver full it is an overrun. Without FIFOs the new character
 * overwrites the unread one; with FIFOs it is lost in the shift register. */
static void rx_receive_or_overrun(struct serial *s, uint8_t byte)
{
	if (s->rx_count < rx_capacity(s)) {
		rx_push(s, byte);
		return;
	}
	s->lsr_errors |= UART_LSR_OE;
	if (!fifo_on(s))
		s->rx[s->rx_head] = byte;
}

/* ---- modem lines --------------------------------------------------------- */

/* MSR's upper nibble. In loopback, MCR's outputs feed the inputs: DTR->DSR,
 * RTS->CTS, OUT1->RI, OUT2->DCD (what Linux's autoconfig checks for). */
static uint8_t modem_inputs(const struct serial *s)
{
	if (!loopback(s))
		return UART_MSR_CONNECTED;
	return (uint8_t)(((s->mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
			 ((s->mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
			 ((s->mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
			 ((s->mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0));
}

static void write_mcr(struct serial *s, uint8_t v)
{
	uint8_t before = modem_inputs(s), after, changed;

	s->mcr = v & 0x1f;
	after = modem_inputs(s);
	changed = before ^ after;
	if (changed & UART_MSR_CTS)
		s->msr_delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		s->msr_delta |= UART_MSR_DDSR;
	if (changed & UART_MSR_DCD)
		s->msr_delta |= UART_MSR_DDCD;
	if ((before & UART_MSR_RI) && !(after & UART_MSR_RI))  /* trailing edge only */
		s->msr_delta |= UART_MSR_TERI;
}

/* ---- interrupts ---------------------------------------------------------- */

/* The highest-priority pending source, as IIR bits 0-3. */
static uint8_t pending_id(const struct serial *s)
{
	if ((s->ier & UART_IER_RLSI) && (s->lsr_errors & UART_LSR_ERRORS))
		return UART_IIR_RLSI;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return s->rx_count >= rx_trigger(s) ? UART_IIR_RDI : UART_IIR_TIMEOUT;
	if ((s->ier & UART_IER_THRI) && s->thr_ipending)
		return UART_IIR_THRI;
	if ((s->ier & UART_IER_MSI) && s->msr_delta)
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

/* INTR gated by OUT2, as wired on PCs; loopback keeps OUT2 off the pin. */
static void update_irq(struct serial *s)
{
	bool level = pending_id(s) != UART_IIR_NO_INT && (s->mcr & UART_MCR_OUT2) &&
		     !loopback(s);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->ops.set_irq)
		s->ops.set_irq(s->ops.ctx, level);
}

/* Tell the console thread the receiver has room again, once per refusal. */
static void maybe_rx_ready(struct serial *s)
{
	if (!s->rx_refused || loopback(s) || s->rx_count)
		return;
	s->rx_refused = false;
	if (s->ops.rx_ready)
		s->ops.rx_ready(s->ops.ctx);
}

/* ---- registers ----------------------------------------------------------- */

/* Writing THR acknowledges a THRE interrupt; the byte then "transmits"
 * instantly, leaving THR empty again, which re-arms it. The line therefore
 * pulses low and high, as real hardware's does once the byte has shifted out:
 * with an edge-triggered IRQ each refill of THR earns a fresh interrupt. */
static void write_thr(struct serial *s, uint8_t byte)
{
	s->thr_ipending = false;
	update_irq(s);
	if (loopback(s))
		rx_receive_or_overrun(s, byte);
	else if (s->ops.output)
		s->ops.output(s->ops.ctx, &byte, 1);
	s->thr_ipending = true;
}

/* THRE interrupts are sampled on ETBEI's rising edge: THR is always empty
 * here, so enabling ETBEI raises one even if an earlier one was acknowledged
 * (Linux's start_tx and its THRE probe at startup rely on this). */
static void write_ier(struct serial *s, uint8_t v)
{
	uint8_t changed = (s->ier ^ v) & UART_IER_THRI;

	s->ier = v & 0x0f;
	if (changed)
		s->thr_ipending = s->ier & UART_IER_THRI;
}

static void write_fcr(struct serial *s, uint8_t v)
{
	/* Switching FIFO mode on or off empties both FIFOs. */
	if ((v ^ s->fcr) & UART_FCR_ENABLE)
		rx_clear(s);
	if (!(v & UART_FCR_ENABLE)) {
		s->fcr = 0;  /* the other bits only take with FCR0 set */
		return;
	}
	if (v & UART_FCR_CLEAR_RX)
		rx_clear(s);
	/* CLEAR_TX: the transmitter is always empty already. */
	s->fcr = v & (UART_FCR_ENABLE | 0x08 | UART_FCR_TRIGGER);
}

static uint8_t read_rbr(struct serial *s)
{
	if (s->rx_count)
		s->rbr = rx_pop(s);
	return s->rbr;
}

static uint8_t read_iir(struct serial *s)
{
	uint8_t id = pending_id(s);

	if (id == UART_IIR_THRI)  /* reading IIR acknowledges THRE as the source */
		s->thr_ipending = false;
	return id | (fifo_on(s) ? UART_IIR_FIFO : 0);
}

static uint8_t read_lsr(struct serial *s)
{
	uint8_t v = s->lsr_errors | UART_LSR_THRE | UART_LSR_TEMT;

	if (s->rx_count)
		v |= UART_LSR_DR;
	s->lsr_errors = 0;  /* error bits clear on read */
	return v;
}

static uint8_t read_msr(struct serial *s)
{
	uint8_t v = modem_inputs(s) | s->msr_delta;

	s->msr_delta = 0;
	return v;
}

static uint8_t reg_read(struct serial *s, unsigned offset)
{
	bool dlab = s->lcr & UART_LCR_DLAB;

	switch (offset) {
	case UART_RBR: return dlab ? s->dll : read_rbr(s);
	case UART_IER: return dlab ? s->dlm : s->ier;
	case UART_IIR: return read_iir(s);
	case UART_LCR: return s->lcr;
	case UART_MCR: return s->mcr;
	case UART_LSR: return read_lsr(s);
	case UART_MSR: return read_msr(s);
	case UART_SCR: return s->scr;
	}
	return 0xff;
}

static void reg_write(struct serial *s, unsigned offset, uint8_t v)
{
	bool dlab = s->lcr & UART_LCR_DLAB;

	switch (offset) {
	case UART_THR:
		if (dlab)
			s->dll = v;
		else
			write_thr(s, v);
		break;
	case UART_IER:
		if (dlab)
			s->dlm = v;
		else
			write_ier(s, v);
		break;
	case UART_FCR: write_fcr(s, v); break;
	case UART_LCR: s->lcr = v; break;
	case UART_MCR: write_mcr(s, v); break;
	case UART_SCR: s->scr = v; break;
	default: break;  /* LSR and MSR are read-only (factory test writes ignored) */
	}
}

void serial_io(struct serial *s, unsigned offset, uint8_t *data, bool is_write)
{
	if (offset >= UART_NREGS) {
		if (!is_write)
			*data = 0xff;
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (is_write)
		reg_write(s, offset, *data);
	else
		*data = reg_read(s, offset);
	update_irq(s);
	maybe_rx_ready(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	/* In loopback the receiver is disconnected from the line. */
	if (!loopback(s))
		while (n < len && s->rx_count < rx_capacity(s))
			rx_push(s, buf[n++]);
	if (n < len)
		s->rx_refused = true;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}
