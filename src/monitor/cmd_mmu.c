/* translate, x and xp: the guest's memory seen through its page tables
 * composed with our P2M (claims 6-9). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_int.h"
#include "vmswitch/mem.h"
#include "vmswitch/mmu.h"
#include "vmswitch/util.h"

#define X_MAX_ITEMS 4096

static const char *level_name(int level)
{
	static const char *const names[] = {"?", "PT", "PD", "PDPT", "PML4", "PML5"};

	return level >= 1 && level <= 5 ? names[level] : "?";
}

static void print_steps(const struct mmu_result *r, FILE *out)
{
	for (int i = 0; i < r->nsteps && i < 5; i++)
		fprintf(out, "level %d (%s): entry gpa 0x%" PRIx64 " (mfn 0x%" PRIx64 ") = 0x%016" PRIx64 "\n",
			r->steps[i].level, level_name(r->steps[i].level), r->steps[i].entry_gpa,
			r->steps[i].entry_mfn, r->steps[i].entry);
}

static int cmd_translate(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	struct monitor_vcpu_info vi;
	struct mmu_result r;
	uint64_t gva, id = 0, mfn;

	if (mon_need_mem(mon, e) < 0 || mon_arg_size("GVA", argv[1], &gva, e) < 0)
		return -1;
	if (argc > 2 && mon_arg_u64("VCPU", argv[2], &id, e) < 0)
		return -1;
	if (id > UINT32_MAX)
		return err_set(e, ERANGE, "vCPU %" PRIu64 " does not exist", id);
	if (mon_vcpu_paging(mon, (unsigned)id, &vi, e) < 0)
		return -1;
	memset(&r, 0, sizeof(r));
	if (mmu_walk(mon->t.mem, &vi.paging, gva, 0, &r) == 0) {
		print_steps(&r, out);
		fprintf(out, "gva 0x%" PRIx64 " -> gpa 0x%" PRIx64 " -> mfn 0x%" PRIx64
			" (%" PRIu64 "K page, %s, %s, %s)\n", gva, r.gpa, r.mfn, (uint64_t)(r.page_size / KiB),
			r.writable ? "rw" : "ro", r.user ? "user" : "kernel", r.nx ? "nx" : "exec");
		return 0;
	}
	if (r.fault == MMU_FAULT_PAGING_OFF) {
		if (mem_p2m(mon->t.mem, gva >> PAGE_SHIFT, &mfn) < 0)
			return err_set(e, ERANGE, "paging is off and 0x%" PRIx64 " is not guest RAM", gva);
		fprintf(out, "paging off: gva 0x%" PRIx64 " = gpa -> mfn 0x%" PRIx64 "\n", gva, mfn);
		return 0;
	}
	print_steps(&r, out);
	return err_set(e, EFAULT, "gva 0x%" PRIx64 ": %s at level %d (error code 0x%x)", gva,
		       mmu_fault_name(r.fault), r.fault_level, r.error_code);
}

struct xfmt {
	uint64_t count;
	unsigned unit;   /* 1, 2, 4 or 8 bytes */
};

/* "x", "x/16", "x/4g", "x/8xb": count, then the unit letter; 'x' (hex,
 * the only format) is accepted for QEMU habits. */
static int parse_xfmt(const char *word, struct xfmt *f, struct err *e)
{
	const char *p = strchr(word, '/');
	char *end;

	f->count = 1;
	f->unit = 4;
	if (!p)
		return 0;
	p++;
	if (isdigit((unsigned char)*p)) {
		errno = 0;
		f->count = strtoull(p, &end, 10);
		if (errno || f->count == 0 || f->count > X_MAX_ITEMS)
			return err_set(e, ERANGE, "count must be 1..%d", X_MAX_ITEMS);
		p = end;
	}
	for (; *p; p++) {
		switch (*p) {
		case 'x': break;
		case 'b': f->unit = 1; break;
		case 'h': f->unit = 2; break;
		case 'w': f->unit = 4; break;
		case 'g': f->unit = 8; break;
		default:
			return err_set(e, EINVAL, "unknown format '%c' in '%.16s' (use b, h, w or g)",
				       isprint((unsigned char)*p) ? *p : '?', word);
		}
	}
	return 0;
}

static void dump(FILE *out, uint64_t addr, const uint8_t *buf, const struct xfmt *f)
{
	size_t len = f->count * f->unit;

	for (size_t off = 0; off < len; off += f->unit) {
		uint64_t v = 0;
		if (off % 16 == 0)
			fprintf(out, "%s0x%016" PRIx64 ":", off ? "\n" : "", addr + off);
		memcpy(&v, buf + off, f->unit);  /* little-endian host and guest */
		fprintf(out, " 0x%0*" PRIx64, (int)f->unit * 2, v);
	}
	fputc('\n', out);
}

static int cmd_x(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	struct monitor_vcpu_info vi;
	struct xfmt f;
	uint64_t gva;
	uint8_t *buf;
	int rc;

	(void)argc;
	if (mon_need_mmu(mon, e) < 0 || parse_xfmt(argv[0], &f, e) < 0 ||
	    mon_arg_size("GVA", argv[1], &gva, e) < 0 || mon_vcpu_paging(mon, 0, &vi, e) < 0)
		return -1;
	buf = calloc(f.count, f.unit);
	if (!buf)
		return err_set(e, ENOMEM, "allocating %" PRIu64 " bytes", f.count * f.unit);
	rc = mmu_read_virt(mon->t.mmu, &vi.paging, gva, buf, f.count * f.unit, e);
	if (rc == 0)
		dump(out, gva, buf, &f);
	free(buf);
	return rc;
}

static int cmd_xp(struct monitor *mon, int argc, char **argv, FILE *out, struct err *e)
{
	struct xfmt f;
	uint64_t gpa;
	uint8_t *buf;
	int rc;

	(void)argc;
	if (mon_need_mem(mon, e) < 0 || parse_xfmt(argv[0], &f, e) < 0 ||
	    mon_arg_size("GPA", argv[1], &gpa, e) < 0)
		return -1;
	buf = calloc(f.count, f.unit);
	if (!buf)
		return err_set(e, ENOMEM, "allocating %" PRIu64 " bytes", f.count * f.unit);
	rc = mmu_read_phys(mon->t.mem, gpa, buf, f.count * f.unit, e);
	if (rc == 0)
		dump(out, gpa, buf, &f);
	free(buf);
	return rc;
}

/* "xp" before "x": lookup matches the word before '/', so order is irrelevant,
 * but keep the listing in the order a user reads it. */
const struct mon_cmd mon_cmds_mmu[] = {
	{"translate", NULL, "GVA [VCPU]", "walk the guest page tables, composed with P2M", 1, 2,
	 cmd_translate},
	{"x", NULL, "/N[bhwg] GVA", "N bytes/halves/words/giants at a virtual address (vCPU 0)", 1, 1, cmd_x},
	{"xp", NULL, "/N[bhwg] GPA", "the same at a guest-physical address", 1, 1, cmd_xp},
	{0},
};
