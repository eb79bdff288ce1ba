/* Command-line splitting and argument parsing for monitor commands. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"
#include "vmswitch/util.h"

int mon_split(char *line, char **argv, int max)
{
	int argc = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			return argc;
		if (argc == max)
			return -1;
		argv[argc++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

int mon_arg_u64(const char *what, const char *s, uint64_t *out, struct err *e)
{
	if (parse_u64(s, out, e) < 0)
		return err_wrap(e, "%s", what);
	return 0;
}

int mon_arg_size(const char *what, const char *s, uint64_t *out, struct err *e)
{
	if (parse_size(s, out, e) < 0)
		return err_wrap(e, "%s", what);
	return 0;
}

int mon_arg_gpa_range(const char *s, const char *t, uint64_t *first, uint64_t *end,
		      struct err *e)
{
	uint64_t start, stop;

	if (mon_arg_size("START", s, &start, e) < 0 || mon_arg_size("END", t, &stop, e) < 0)
		return -1;
	if ((start | stop) & (PAGE_SIZE - 1))
		return err_set(e, EINVAL, "START and END must be page aligned (0x%llx, 0x%llx)",
			       (unsigned long long)start, (unsigned long long)stop);
	if (start >= stop)
		return err_set(e, EINVAL, "START 0x%llx must be below END 0x%llx",
			       (unsigned long long)start, (unsigned long long)stop);
	*first = start >> PAGE_SHIFT;
	*end = stop >> PAGE_SHIFT;
	return 0;
}

int mon_need_mem(struct monitor *mon, struct err *e)
{
	if (!mon->t.mem)
		return err_set(e, ENOTSUP, "this VM has no guest memory");
	return 0;
}

int mon_need_mmu(struct monitor *mon, struct err *e)
{
	if (mon_need_mem(mon, e) < 0)
		return -1;
	if (!mon->t.mmu)
		return err_set(e, ENOTSUP, "this VM has no translation cache");
	return 0;
}

int mon_vcpu_paging(struct monitor *mon, unsigned id, struct monitor_vcpu_info *vi,
		    struct err *e)
{
	unsigned n = mon->t.vcpu_count ? mon->t.vcpu_count(mon->t.ctx) : 0;

	if (!mon->t.vcpu_info || n == 0)
		return err_set(e, ENOTSUP, "this VM has no vCPUs to inspect");
	if (id >= n)
		return err_set(e, ERANGE, "vCPU %u does not exist (the VM has %u)", id, n);
	memset(vi, 0, sizeof(*vi));
	if (mon->t.vcpu_info(mon->t.ctx, id, vi, e) < 0)
		return err_wrap(e, "reading vCPU %u", id);
	return 0;
}

void mon_escape(char *dst, size_t dstlen, const char *s, size_t max)
{
	size_t o = 0;

	if (!dstlen)
		return;
	for (size_t i = 0; i < max && s[i] && o + 5 < dstlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isprint(c) && c != '\\')
			dst[o++] = (char)c;
		else
			o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", c);
	}
	dst[o] = '\0';
}

const char *mon_mode_name(const struct mem *m)
{
	switch (mem_get_mode(m)) {
	case MEM_PASSTHROUGH: return "passthrough";
	case MEM_VIRTUALIZING: return "virtualizing";
	case MEM_VIRTUALIZED: return "virtualized";
	case MEM_PARTIAL: return "partial";
	case MEM_DEVIRTUALIZING: return "devirtualizing";
	}
	return "unknown";
}
