/* A small vsnprintf: %s %c %d %i %u %x %p %%, with 0-padding, a width and
 * the l/ll/z length modifiers. Integer-only (safe at CPL0). */
#include "guest.h"

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int neg,
		    unsigned width, char pad)
{
	char tmp[24];
	unsigned n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width > n) {
		put(o, pad);
		width--;
	}
	while (n)
		put(o, tmp[--n]);
}

static void put_str(struct out *o, const char *s, unsigned width)
{
	size_t n = strlen(s ? s : "(null)");

	for (; width > n; width--)
		put(o, ' ');
	for (s = s ? s : "(null)"; *s; s++)
		put(o, *s);
}

/* One conversion at *fmt (just after '%'); returns the next fmt position. */
static const char *convert(struct out *o, const char *fmt, va_list *ap)
{
	char pad = ' ';
	unsigned width = 0, lng = 0;

	if (*fmt == '0')
		pad = *fmt++;
	while (*fmt >= '0' && *fmt <= '9')
		width = width * 10 + (unsigned)(*fmt++ - '0');
	while (*fmt == 'l' || *fmt == 'z')
		lng++, fmt++;
	switch (*fmt) {
	case 'd':
	case 'i': {
		int64_t v = lng ? va_arg(*ap, int64_t) : va_arg(*ap, int);

		put_num(o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
		break;
	}
	case 'u':
	case 'x':
		put_num(o, lng ? va_arg(*ap, uint64_t) : va_arg(*ap, unsigned),
			*fmt == 'x' ? 16 : 10, 0, width, pad);
		break;
	case 'p':
		put(o, '0');
		put(o, 'x');
		put_num(o, (uint64_t)va_arg(*ap, void *), 16, 0, width, pad);
		break;
	case 's':
		put_str(o, va_arg(*ap, const char *), width);
		break;
	case 'c':
		put(o, (char)va_arg(*ap, int));
		break;
	case '\0':
		return fmt;
	default:
		put(o, *fmt);
		break;
	}
	return fmt + 1;
}

int vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	va_list aq;

	va_copy(aq, ap);
	while (*fmt) {
		if (*fmt != '%')
			put(&o, *fmt++);
		else
			fmt = convert(&o, fmt + 1, &aq);
	}
	va_end(aq);
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)(o.len < size ? o.len : (size ? size - 1 : 0));
}

int format(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vformat(buf, size, fmt, ap);
	va_end(ap);
	return n;
}
