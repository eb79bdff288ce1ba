/* The monitor prompt's line editor (see lineedit.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineedit.h"
#include "vmswitch/util.h"

#define CTRL(c) ((c) & 0x1f)

void le_init(struct lineedit *le, const char *prompt, bool echo)
{
	memset(le, 0, sizeof(*le));
	le->prompt = prompt;
	le->echo = echo;
}

void le_free(struct lineedit *le)
{
	for (unsigned i = 0; i < le->nhist; i++)
		free(le->hist[i]);
	free(le->out);
	le->nhist = 0;
	le->out = NULL;
	le->outlen = le->outcap = 0;
}

static void emit(struct lineedit *le, const char *s, size_t n)
{
	if (!le->echo)
		return;
	if (!buf_reserve(&le->out, &le->outcap, le->outlen + n, 256))
		return;  /* echo is cosmetic: losing it must not lose the line */
	memcpy(le->out + le->outlen, s, n);
	le->outlen += n;
}

static void emits(struct lineedit *le, const char *s)
{
	emit(le, s, strlen(s));
}

const char *le_output(const struct lineedit *le, size_t *len)
{
	*len = le->outlen;
	return le->out;
}

void le_consumed(struct lineedit *le)
{
	le->outlen = 0;
}

/* Rewrite the whole line: simple, and correct after any edit. */
void le_redraw(struct lineedit *le)
{
	char move[32];

	emits(le, "\r");
	emits(le, le->prompt);
	emit(le, le->buf, le->len);
	emits(le, "\x1b[K");
	if (le->len > le->pos) {
		snprintf(move, sizeof(move), "\x1b[%zuD", le->len - le->pos);
		emits(le, move);
	}
}

static void set_line(struct lineedit *le, const char *s)
{
	le->len = le->pos = strnlen(s, LE_MAX_LINE);
	memcpy(le->buf, s, le->len);
	le->buf[le->len] = '\0';
}

static void delete_range(struct lineedit *le, size_t from, size_t to)
{
	memmove(le->buf + from, le->buf + to, le->len - to);
	le->len -= to - from;
	le->buf[le->len] = '\0';
	if (le->pos > to)
		le->pos -= to - from;
	else if (le->pos > from)
		le->pos = from;
}

static void insert(struct lineedit *le, char c)
{
	if (le->len == LE_MAX_LINE)
		return;
	memmove(le->buf + le->pos + 1, le->buf + le->pos, le->len - le->pos);
	le->buf[le->pos++] = c;
	le->buf[++le->len] = '\0';
}

static void history_add(struct lineedit *le, const char *s)
{
	char *copy;

	if (!*s || (le->nhist && strcmp(le->hist[le->nhist - 1], s) == 0))
		return;
	copy = strdup(s);
	if (!copy)
		return;
	if (le->nhist == LE_HISTORY) {
		free(le->hist[0]);
		memmove(le->hist, le->hist + 1, (LE_HISTORY - 1) * sizeof(le->hist[0]));
		le->nhist--;
	}
	le->hist[le->nhist++] = copy;
}

static void history_move(struct lineedit *le, int dir)
{
	if (dir < 0 && le->hidx > 0) {
		if (le->hidx == le->nhist)
			memcpy(le->draft, le->buf, le->len + 1);
		set_line(le, le->hist[--le->hidx]);
	} else if (dir > 0 && le->hidx < le->nhist) {
		le->hidx++;
		set_line(le, le->hidx == le->nhist ? le->draft : le->hist[le->hidx]);
	}
}

static void word_rubout(struct lineedit *le)
{
	size_t p = le->pos;

	while (p > 0 && le->buf[p - 1] == ' ')
		p--;
	while (p > 0 && le->buf[p - 1] != ' ')
		p--;
	delete_range(le, p, le->pos);
}

/* The final byte of an escape sequence: arrows, Home/End, Delete. */
static void escape_final(struct lineedit *le, unsigned char c)
{
	switch (c) {
	case 'A': history_move(le, -1); break;
	case 'B': history_move(le, +1); break;
	case 'C': if (le->pos < le->len) le->pos++; break;
	case 'D': if (le->pos > 0) le->pos--; break;
	case 'H': le->pos = 0; break;
	case 'F': le->pos = le->len; break;
	case '~':
		if (le->esc_param == 1 || le->esc_param == 7)
			le->pos = 0;
		else if (le->esc_param == 4 || le->esc_param == 8)
			le->pos = le->len;
		else if (le->esc_param == 3 && le->pos < le->len)
			delete_range(le, le->pos, le->pos + 1);
		break;
	default: break;
	}
}

static bool feed_escape(struct lineedit *le, unsigned char c)
{
	if (le->esc == 1) {
		le->esc = (c == '[' || c == 'O') ? 2 : 0;
		le->esc_param = 0;
		return true;
	}
	if (c >= '0' && c <= '9') {
		le->esc_param = le->esc_param * 10 + (c - '0');
		return true;
	}
	if (c == ';')
		return true;
	le->esc = 0;
	escape_final(le, c);
	return false;
}

static enum le_event finish_line(struct lineedit *le, const char **line)
{
	emits(le, "\r\n");
	history_add(le, le->buf);
	le->hidx = le->nhist;
	memcpy(le->draft, le->buf, le->len + 1);
	*line = le->draft;
	le->len = le->pos = 0;
	le->buf[0] = '\0';
	return LE_LINE;
}

enum le_event le_feed(struct lineedit *le, unsigned char c, const char **line)
{
	bool after_cr = le->after_cr;

	le->after_cr = false;
	if (le->esc) {
		if (!feed_escape(le, c))
			le_redraw(le);
		return LE_NONE;
	}
	switch (c) {
	case '\r':
		le->after_cr = true;
		return finish_line(le, line);
	case '\n':
		if (after_cr)
			return LE_NONE;
		return finish_line(le, line);
	case 0x1b: le->esc = 1; return LE_NONE;
	case 0x7f:
	case CTRL('H'):
		if (le->pos > 0)
			delete_range(le, le->pos - 1, le->pos);
		break;
	case CTRL('B'): if (le->pos > 0) le->pos--; break;
	case CTRL('F'): if (le->pos < le->len) le->pos++; break;
	case CTRL('E'): le->pos = le->len; break;
	case CTRL('U'): delete_range(le, 0, le->pos); break;
	case CTRL('K'): delete_range(le, le->pos, le->len); break;
	case CTRL('W'): word_rubout(le); break;
	case CTRL('P'): history_move(le, -1); break;
	case CTRL('N'): history_move(le, +1); break;
	case CTRL('L'): emits(le, "\x1b[H\x1b[2J"); break;
	case CTRL('C'):
		emits(le, "^C\r\n");
		le->len = le->pos = 0;
		le->buf[0] = '\0';
		le->hidx = le->nhist;
		le_redraw(le);
		return LE_INTR;
	case CTRL('D'):
		if (le->len == 0)
			return LE_EOF;
		if (le->pos < le->len)
			delete_range(le, le->pos, le->pos + 1);
		break;
	default:
		if (c < 0x20)
			return LE_NONE;  /* other control keys: ignored */
		insert(le, (char)c);
		break;
	}
	le_redraw(le);
	return LE_NONE;
}
