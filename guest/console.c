/* Polled 16550 on COM1. Output waits for THR empty (bounded, so a machine
 * without a UART does not hang the run). */
#include "guest.h"

#define COM1     0x3f8
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define THRE_SPINS 100000

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80);         /* DLAB: divisor 1 = 115200 */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + UART_LCR, 0x03);         /* 8N1 */
	outb(COM1 + UART_FCR, 0xc7);
	outb(COM1 + UART_MCR, 0x03);
}

static void serial_putc(char c)
{
	for (unsigned n = 0; n < THRE_SPINS; n++)
		if (inb(COM1 + UART_LSR) & LSR_THRE)
			break;
	outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			serial_putc('\r');
		serial_putc(s[i]);
	}
}

void console_printf(struct console *c, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	while (__atomic_exchange_n(&c->lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
	serial_write(buf, (size_t)n);
	__atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
}
