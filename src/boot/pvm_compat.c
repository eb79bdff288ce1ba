/* Kernel options Linux needs on kvm_pvm hosts, where every CPL0 instruction
 * of a non-PVM guest goes through KVM's instruction emulator (see DESIGN.md
 * "Linux on our hosts"). The user's own settings always win: an option the
 * user already gave is left alone, and clearcpuid= lists are merged. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/boot.h"
#include "vmswitch/util.h"

struct pvm_option {
	const char *key;
	const char *value;  /* NULL: a flag; for clearcpuid, one feature name */
	bool proven;        /* needed for Linux to boot here at all */
	const char *why;
};

#define CANDIDATE_CPUID "candidate: a host CPUID bit the VMM cannot clear " \
	"(cleared in the best known run, not tested alone)"

static const struct pvm_option options[] = {
	{"noxsave", NULL, true, "KVM's emulator cannot run xrstor, which FPU init uses"},
	{"clearcpuid", "smap", true, "KVM's emulator cannot run clac/stac"},
	{"clearcpuid", "popcnt", false, CANDIDATE_CPUID},
	{"clearcpuid", "fsgsbase", false, CANDIDATE_CPUID},
	{"clearcpuid", "ssse3", false, CANDIDATE_CPUID},
	{"clearcpuid", "rdseed", false, CANDIDATE_CPUID},
	{"clearcpuid", "rdrand", false, CANDIDATE_CPUID},
	{"clearcpuid", "sse4_1", false, CANDIDATE_CPUID},
	{"clearcpuid", "sse4_2", false, CANDIDATE_CPUID},
	{"nopti", NULL, false, "candidate: fewer emulated CR3 switches"},
	{"mitigations", "off", false, "candidate: less emulated mitigation work"},
	{"cryptomgr.notests", NULL, false, "candidate: skips emulated crypto self-tests"},
	{"init_on_alloc", "0", false, "candidate: no zeroing of every allocated page"},
	{"no_timer_check", NULL, false, "candidate: the timer check misfires under emulation"},
	{"tsc", "reliable", false, "candidate: no TSC watchdog under slow emulation"},
	{"rodata", "off", false, "candidate: no W+X checks or text permission flips"},
	{"nowatchdog", NULL, false, "candidate: lockup detectors fire under slow emulation"},
};

/* A growing string; a failed allocation is remembered and reported once. */
struct sbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (!buf_reserve(&b->s, &b->cap, b->len + n + 1, 64)) {
		b->oom = true;
		return;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void sb_word(struct sbuf *b, const char *s)
{
	if (b->len && !isspace((unsigned char)b->s[b->len - 1]))
		sb_add(b, " ", 1);
	sb_add(b, s, strlen(s));
}

/* One whitespace-separated parameter of the user's line (double quotes
 * protect spaces, as in the kernel's own parser). */
struct token {
	const char *start;
	size_t len;
	const char *key;
	size_t key_len;
};

static const char *next_token(const char *p, struct token *t)
{
	bool quoted = false;

	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return NULL;
	t->start = p;
	for (; *p && (quoted || !isspace((unsigned char)*p)); p++)
		if (*p == '"')
			quoted = !quoted;
	t->len = (size_t)(p - t->start);
	t->key = t->start + (*t->start == '"');
	t->key_len = strcspn(t->key, "=\" \t\n");
	if (t->key + t->key_len > t->start + t->len)
		t->key_len = (size_t)(t->start + t->len - t->key);
	return p;
}

/* The kernel treats '-' and '_' in parameter names alike. */
static bool key_eq(const struct token *t, const char *key)
{
	if (strlen(key) != t->key_len)
		return false;
	for (size_t i = 0; i < t->key_len; i++) {
		char a = t->key[i] == '-' ? '_' : t->key[i];
		char b = key[i] == '-' ? '_' : key[i];

		if (a != b)
			return false;
	}
	return true;
}

/* Is `item` in the comma list of this clearcpuid=a,b,c token? */
static bool list_has(const struct token *t, const char *item)
{
	const char *v = t->key + t->key_len, *end = t->start + t->len;
	size_t n = strlen(item);

	if (v >= end || *v != '=')
		return false;
	for (v++; v < end;) {
		size_t len = strcspn(v, ",\"");

		if (v + len > end)
			len = (size_t)(end - v);
		if (len == n && strncmp(v, item, n) == 0)
			return true;
		v += len + 1;
	}
	return false;
}

/* What the user's kernel part (before any "--") already says. */
struct user_line {
	const char *text;
	size_t cut;               /* offset of the "--" token, or strlen */
	struct token cpuid;       /* the last clearcpuid= token */
	bool has_cpuid;
};

static void scan_user(const char *text, struct user_line *u)
{
	struct token t;
	const char *p = text;

	*u = (struct user_line){.text = text, .cut = strlen(text)};
	while ((p = next_token(p, &t))) {
		if (t.len == 2 && strncmp(t.start, "--", 2) == 0) {
			u->cut = (size_t)(t.start - text);
			return;
		}
		if (key_eq(&t, "clearcpuid")) {
			u->cpuid = t;
			u->has_cpuid = true;
		}
	}
}

static bool user_has_key(const struct user_line *u, const char *key)
{
	struct token t;
	const char *p = u->text;

	while ((p = next_token(p, &t)) && (size_t)(t.start - u->text) < u->cut)
		if (key_eq(&t, key))
			return true;
	return false;
}

static bool user_has_cpuid(const struct user_line *u, const char *item)
{
	struct token t;
	const char *p = u->text;

	while ((p = next_token(p, &t)) && (size_t)(t.start - u->text) < u->cut)
		if (key_eq(&t, "clearcpuid") && list_has(&t, item))
			return true;
	return false;
}

static void record(struct boot_pvm_cmdline *out, const struct pvm_option *o)
{
	struct boot_pvm_added *a = &out->added[out->n++];

	snprintf(a->option, sizeof(a->option), "%s%s%s", o->key, o->value ? "=" : "",
		 o->value ? o->value : "");
	a->why = o->why;
}

/* The clearcpuid items to add, comma-joined, recorded in out. */
static void pick_cpuid(const struct user_line *u, bool candidates, struct sbuf *items,
		       struct boot_pvm_cmdline *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct pvm_option *o = &options[i];

		if (strcmp(o->key, "clearcpuid") != 0 || !(o->proven || candidates) ||
		    user_has_cpuid(u, o->value))
			continue;
		if (items->len)
			sb_add(items, ",", 1);
		sb_add(items, o->value, strlen(o->value));
		record(out, o);
	}
}

/* The user's kernel part, with the clearcpuid items merged into the user's
 * own clearcpuid= (before its closing quote, if any) or appended. */
static void put_kernel_part(const struct user_line *u, const struct sbuf *items,
			    struct sbuf *b)
{
	const struct token *t = &u->cpuid;
	size_t at;

	if (!items->len) {
		sb_add(b, u->text, u->cut);
		return;
	}
	if (!u->has_cpuid) {
		sb_add(b, u->text, u->cut);
		sb_word(b, "clearcpuid=");
		sb_add(b, items->s, items->len);
		return;
	}
	at = (size_t)(t->start + t->len - u->text);
	if (u->text[at - 1] == '"')
		at--;
	sb_add(b, u->text, at);
	/* "clearcpuid=a" gets ",items", "clearcpuid" "=items", "clearcpuid=" items. */
	if (t->key + t->key_len == t->start + t->len)
		sb_add(b, "=", 1);
	else if (u->text[at - 1] != '=')
		sb_add(b, ",", 1);
	sb_add(b, items->s, items->len);
	sb_add(b, u->text + at, u->cut - at);
}

int boot_pvm_cmdline(const char *user, bool pvm_host, bool candidates,
		     struct boot_pvm_cmdline *out, struct err *e)
{
	struct user_line u;
	struct sbuf b = {0}, items = {0};

	*out = (struct boot_pvm_cmdline){0};
	scan_user(user ? user : "", &u);
	if (pvm_host)
		pick_cpuid(&u, candidates, &items, out);
	put_kernel_part(&u, &items, &b);
	for (size_t i = 0; pvm_host && i < ARRAY_SIZE(options); i++) {
		const struct pvm_option *o = &options[i];

		if (strcmp(o->key, "clearcpuid") == 0 || !(o->proven || candidates) ||
		    user_has_key(&u, o->key))
			continue;
		record(out, o);
		sb_word(&b, out->added[out->n - 1].option);
	}
	if (u.text[u.cut])
		sb_word(&b, u.text + u.cut);
	sb_add(&b, "", 0);  /* an empty line still gets a buffer */
	free(items.s);
	if (b.oom || items.oom) {
		free(b.s);
		*out = (struct boot_pvm_cmdline){0};
		return err_set(e, ENOMEM, "kernel command line: out of memory");
	}
	out->cmdline = b.s;
	return 0;
}

void boot_pvm_cmdline_free(struct boot_pvm_cmdline *c)
{
	free(c->cmdline);
	*c = (struct boot_pvm_cmdline){0};
}
