/* A 16550A UART: what Linux's 8250 driver (autoconfig, THRE test, interrupt
 * and polled console paths) and our polled test kernel use.
 *
 * Model: transmission is instantaneous (every THR write goes straight to
 * ops.output, so THRE and TEMT read set), reception is flow-controlled (input
 * is accepted only while the RX FIFO has room, so typed bytes are never lost;
 * see serial_input). Overrun (LSR.OE) happens where hardware cannot push
 * back: loopback transmissions into a full receiver. The receiver time-out
 * interrupt (IIR 0xC) is reported as soon as data sits below the FIFO trigger
 * level, without waiting four character times: drivers treat it like "data
 * available" anyway.
 *
 * The IRQ line is the 16550's INTR gated by MCR.OUT2 as on PCs; in loopback
 * OUT2 is not driven to the pin, so the line stays low.
 *
 * Threading: one mutex per UART serializes serial_io (vCPU threads) and
 * serial_input (console thread). All ops callbacks run with that mutex held,
 * so IRQ level changes reach the VM in order; they must not call back into
 * the serial.
 */
#ifndef VMSWITCH_SERIAL_H
#define VMSWITCH_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmswitch/err.h"

/* Register offsets from the base port (DLAB = LCR bit 7). */
enum {
	UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
	UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2,
	UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
	UART_NREGS = 8,
};

#define UART_IER_RDI   0x01  /* received data available / time-out */
#define UART_IER_THRI  0x02  /* transmitter holding register empty */
#define UART_IER_RLSI  0x04  /* receiver line status */
#define UART_IER_MSI   0x08  /* modem status */

#define UART_IIR_NO_INT  0x01
#define UART_IIR_MSI     0x00
#define UART_IIR_THRI    0x02
#define UART_IIR_RDI     0x04
#define UART_IIR_RLSI    0x06
#define UART_IIR_TIMEOUT 0x0c
#define UART_IIR_ID      0x0f
#define UART_IIR_FIFO    0xc0  /* both FIFO-enabled bits */

#define UART_FCR_ENABLE  0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_FCR_TRIGGER 0xc0  /* RX trigger level: 1, 4, 8, 14 bytes */

#define UART_LCR_DLAB  0x80

#define UART_MCR_DTR   0x01
#define UART_MCR_RTS   0x02
#define UART_MCR_OUT1  0x04
#define UART_MCR_OUT2  0x08
#define UART_MCR_LOOP  0x10

#define UART_LSR_DR    0x01
#define UART_LSR_OE    0x02
#define UART_LSR_PE    0x04
#define UART_LSR_FE    0x08
#define UART_LSR_BI    0x10
#define UART_LSR_THRE  0x20
#define UART_LSR_TEMT  0x40
#define UART_LSR_FIFOE 0x80

#define UART_MSR_DCTS  0x01
#define UART_MSR_DDSR  0x02
#define UART_MSR_TERI  0x04
#define UART_MSR_DDCD  0x08
#define UART_MSR_CTS   0x10
#define UART_MSR_DSR   0x20
#define UART_MSR_RI    0x40
#define UART_MSR_DCD   0x80

#define UART_FIFO_SIZE 16

struct serial_ops {
	void *ctx;
	/* Bytes the guest transmitted (not called in loopback). */
	void (*output)(void *ctx, const uint8_t *buf, size_t len);
	/* The IRQ line changed level (0 or 1); never called twice with the same
	 * level. The line starts low. */
	void (*set_irq)(void *ctx, int level);
	/* Optional (may be NULL): the receiver has emptied after serial_input
	 * refused bytes; a good time to offer the rest. Called from a vCPU
	 * thread, so just wake the console thread (eventfd, semaphore). */
	void (*rx_ready)(void *ctx);
};

struct serial;

int serial_create(const struct serial_ops *ops, struct serial **out, struct err *e);
void serial_destroy(struct serial *s);

/* One byte-wide register access at `offset` (0..7) from a vCPU thread.
 * Offsets beyond 7 read 0xff and ignore writes. */
void serial_io(struct serial *s, unsigned offset, uint8_t *data, bool is_write);

/* Offer received bytes (console thread). Returns how many were taken: as
 * many as the RX FIFO has room for (16 with FIFOs enabled, 1 without), 0 in
 * loopback. Keep the rest and offer them again (see ops.rx_ready). */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);

#endif
