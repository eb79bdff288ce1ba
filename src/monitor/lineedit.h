/* A small line editor for the monitor prompt on a raw terminal: insert,
 * left/right, Home/End, backspace/delete, ^U ^K ^W, history on up/down.
 * It is fed one byte at a time and produces the bytes to echo, so it works
 * inside any event loop and is tested without a terminal. (libedit's
 * callback interface would want to own the terminal settings and ^A, which
 * the console already owns.) */
#ifndef VMSWITCH_LINEEDIT_H
#define VMSWITCH_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>

#define LE_MAX_LINE 4096
#define LE_HISTORY 100

enum le_event { LE_NONE, LE_LINE, LE_INTR, LE_EOF };

struct lineedit {
	const char *prompt;
	bool echo;                   /* false when the input is not a terminal */
	char buf[LE_MAX_LINE + 1];
	size_t len, pos;
	char draft[LE_MAX_LINE + 1]; /* the new line while browsing history */
	char *hist[LE_HISTORY];
	unsigned nhist, hidx;
	int esc;                     /* 0, 1 after ESC, 2 inside ESC [ or ESC O */
	unsigned esc_param;
	bool after_cr;               /* swallow the \n of a \r\n pair */
	char *out;                   /* echo bytes not yet written */
	size_t outlen, outcap;
};

void le_init(struct lineedit *le, const char *prompt, bool echo);
void le_free(struct lineedit *le);
/* Feed one input byte. On LE_LINE, *line is the finished line (valid until
 * the next call). */
enum le_event le_feed(struct lineedit *le, unsigned char c, const char **line);
/* Print the prompt and the line being edited (after other output). */
void le_redraw(struct lineedit *le);
/* Take the pending echo bytes; the caller writes them and calls le_consumed. */
const char *le_output(const struct lineedit *le, size_t *len);
void le_consumed(struct lineedit *le);

#endif
