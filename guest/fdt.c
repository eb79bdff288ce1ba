/* Just enough of a flattened device tree reader for vmswitch's DTB:
 * root compatible, /vmswitch hcall-port and tsc-khz, /memory reg, /cpus/cpu reg.
 * Every offset is checked against the blob's size before use. */
#include "guest.h"

#define FDT_MAGIC      0xd00dfeedu
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE   2
#define FDT_PROP       3
#define FDT_NOP        4
#define FDT_END        9
#define MAX_DEPTH      8

struct walk {
	const uint8_t *strings;
	uint32_t strings_size;
	const char *node[MAX_DEPTH + 1];   /* node names by depth (1 = root) */
	unsigned depth;
	uint32_t addr_cells, size_cells;
	struct fdt_info *out;
};

static uint32_t be32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* `cells` big-endian 32-bit cells (1 or 2) as one number. */
static uint64_t cells(const uint8_t *p, uint32_t n)
{
	return n == 2 ? (uint64_t)be32(p) << 32 | be32(p + 4) : be32(p);
}

/* "memory" matches "memory" and "memory@...". */
static int node_is(const char *name, const char *base)
{
	size_t n = strlen(base);

	return name && strncmp(name, base, n) == 0 && (name[n] == '\0' || name[n] == '@');
}

static int has_string(const uint8_t *v, uint32_t len, const char *want)
{
	size_t w = strlen(want);

	for (uint32_t i = 0; i < len;) {
		size_t n = strlen((const char *)v + i);

		if (i + n >= len)
			return 0;       /* unterminated */
		if (n == w && memcmp(v + i, want, w) == 0)
			return 1;
		i += (uint32_t)n + 1;
	}
	return 0;
}

static void mem_reg(struct walk *w, const uint8_t *v, uint32_t len)
{
	uint32_t step = 4 * (w->addr_cells + w->size_cells);
	struct fdt_info *o = w->out;

	if (w->addr_cells < 1 || w->addr_cells > 2 || w->size_cells < 1 || w->size_cells > 2)
		return;
	for (uint32_t i = 0; i + step <= len && o->nmem < FDT_MAX_MEM; i += step) {
		o->mem_base[o->nmem] = cells(v + i, w->addr_cells);
		o->mem_size[o->nmem] = cells(v + i + 4 * w->addr_cells, w->size_cells);
		o->nmem++;
	}
}

static void prop(struct walk *w, const char *name, const uint8_t *v, uint32_t len)
{
	struct fdt_info *o = w->out;
	const char **node = w->node;

	if (w->depth == 1) {
		if (!strncmp(name, "compatible", 11))
			o->vmswitch = has_string(v, len, "vmswitch,machine");
		else if (!strncmp(name, "#address-cells", 15) && len == 4)
			w->addr_cells = be32(v);
		else if (!strncmp(name, "#size-cells", 12) && len == 4)
			w->size_cells = be32(v);
	} else if (w->depth == 2 && node_is(node[2], "vmswitch")) {
		if (!strncmp(name, "hcall-port", 11) && len == 4)
			o->hcall_port = be32(v);
		else if (!strncmp(name, "tsc-khz", 8) && len == 4)
			o->tsc_khz = be32(v);
	} else if (w->depth == 2 && node_is(node[2], "memory")) {
		if (!strncmp(name, "reg", 4))
			mem_reg(w, v, len);
	} else if (w->depth == 3 && node_is(node[2], "cpus") && node_is(node[3], "cpu")) {
		if (!strncmp(name, "reg", 4) && len == 4 && o->ncpus &&
		    o->ncpus <= FDT_MAX_CPUS)
			o->apic_id[o->ncpus - 1] = be32(v);
	}
}

static void begin_node(struct walk *w, const char *name)
{
	if (w->depth < MAX_DEPTH)
		w->node[++w->depth] = name;
	else
		w->depth++;
	if (w->depth == 3 && node_is(w->node[2], "cpus") && node_is(name, "cpu")) {
		w->out->ncpus++;
		if (w->out->ncpus <= FDT_MAX_CPUS)
			w->out->apic_id[w->out->ncpus - 1] = w->out->ncpus - 1;
	}
}

/* Length of a NUL-terminated string inside [p, end), or -1. */
static int64_t bounded_len(const uint8_t *p, const uint8_t *end)
{
	for (const uint8_t *q = p; q < end; q++)
		if (!*q)
			return q - p;
	return -1;
}

static int walk_struct(struct walk *w, const uint8_t *p, const uint8_t *end)
{
	while (p + 4 <= end) {
		uint32_t tok = be32(p);
		int64_t n;

		p += 4;
		switch (tok) {
		case FDT_BEGIN_NODE:
			if ((n = bounded_len(p, end)) < 0)
				return -1;
			begin_node(w, (const char *)p);
			p += (n + 4) & ~3;
			break;
		case FDT_END_NODE:
			if (w->depth == 0)
				return -1;
			w->depth--;
			break;
		case FDT_PROP: {
			uint32_t len, off;

			if (p + 8 > end)
				return -1;
			len = be32(p);
			off = be32(p + 4);
			p += 8;
			if (len > (uint64_t)(end - p) || off >= w->strings_size ||
			    bounded_len(w->strings + off, w->strings + w->strings_size) < 0)
				return -1;
			prop(w, (const char *)w->strings + off, p, len);
			p += (len + 3) & ~3u;
			break;
		}
		case FDT_NOP:
			break;
		case FDT_END:
			return 0;
		default:
			return -1;
		}
	}
	return -1;
}

int fdt_parse(const void *blob, uint64_t max_size, struct fdt_info *out)
{
	const uint8_t *b = blob;
	uint32_t total, off_struct, off_strings, size_strings, size_struct;
	struct walk w = { .addr_cells = 2, .size_cells = 1, .out = out };

	*out = (struct fdt_info){0};
	if (max_size < 40 || be32(b) != FDT_MAGIC)
		return -1;
	total = be32(b + 4);
	off_struct = be32(b + 8);
	off_strings = be32(b + 12);
	size_strings = be32(b + 32);
	size_struct = be32(b + 36);
	if (total > max_size || off_struct > total || size_struct > total - off_struct ||
	    off_strings > total || size_strings > total - off_strings)
		return -1;
	w.strings = b + off_strings;
	w.strings_size = size_strings;
	if (walk_struct(&w, b + off_struct, b + off_struct + size_struct) < 0)
		return -1;
	out->valid = 1;
	return 0;
}

const void *find_dtb(const struct boot_params *bp, uint64_t *size)
{
	uint64_t pa = bp->hdr.setup_data;

	/* Bounded: a corrupt chain must not loop forever. Only the identity
	 * map (below 4 GiB) is reachable. */
	for (unsigned hops = 0; pa && pa < (1ULL << 32) - 16 && hops < 32; hops++) {
		const struct setup_data *sd = (const struct setup_data *)pa;

		if (sd->type == SETUP_DTB) {
			*size = sd->len;
			return sd->data;
		}
		pa = sd->next;
	}
	return 0;
}
