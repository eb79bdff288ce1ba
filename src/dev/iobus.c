/* The I/O bus: routes port and MMIO accesses to devices by binary search over
 * sorted, non-overlapping ranges. Lookups take no lock (see dev.h); counters
 * are relaxed atomics because `stats` only needs eventually-exact totals. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmswitch/dev.h"
#include "vmswitch/util.h"

/* Distinct unhandled addresses remembered per space; past this, accesses are
 * still counted but new addresses are no longer logged. */
#define UNHANDLED_LOG_MAX 1024

struct io_range {
	uint64_t base, len;
	io_handler_fn *fn;
	void *ctx;
	char name[32];
	uint64_t reads, writes;  /* atomic */
};

struct io_map {
	struct io_range *r;      /* sorted by base */
	size_t n, cap;
	uint64_t unhandled;      /* atomic */
	pthread_mutex_t lock;    /* guards seen[] */
	uint64_t *seen;          /* sorted unhandled addresses already logged */
	size_t nseen;
	bool seen_full;
};

struct io_bus {
	struct io_map map[2];    /* indexed by enum io_space */
	bool sealed;
	uint64_t post_codes;     /* atomic */
	uint8_t last_post;       /* atomic */
};

static const char *const space_name[] = {"port", "mmio"};

static void add(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

int io_bus_create(struct io_bus **out, struct err *e)
{
	struct io_bus *bus = calloc(1, sizeof(*bus));

	if (!bus)
		return err_sys(e, "allocating the I/O bus");
	for (int i = 0; i < 2; i++) {
		int rc = pthread_mutex_init(&bus->map[i].lock, NULL);
		if (rc) {
			for (int j = 0; j < i; j++)
				pthread_mutex_destroy(&bus->map[j].lock);
			free(bus);
			return err_set(e, rc, "initializing the I/O bus lock: %s", strerror(rc));
		}
	}
	*out = bus;
	return 0;
}

void io_bus_destroy(struct io_bus *bus)
{
	if (!bus)
		return;
	for (int i = 0; i < 2; i++) {
		free(bus->map[i].r);
		free(bus->map[i].seen);
		pthread_mutex_destroy(&bus->map[i].lock);
	}
	free(bus);
}

/* Index of the first range whose base is > addr (so the candidate that may
 * contain addr is the one before it). */
static size_t upper_bound(const struct io_range *r, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t upper_bound_u64(const uint64_t *v, size_t n, uint64_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct io_range *lookup(struct io_map *m, uint64_t addr)
{
	size_t i = upper_bound(m->r, m->n, addr);

	if (i == 0)
		return NULL;
	struct io_range *r = &m->r[i - 1];
	return addr - r->base < r->len ? r : NULL;
}

/* Compared by last address, not end, so a range may end at 2^64. */
static bool overlaps(const struct io_range *r, uint64_t base, uint64_t len)
{
	return base <= r->base + (r->len - 1) && r->base <= base + (len - 1);
}

int io_bus_register(struct io_bus *bus, enum io_space space, uint64_t base, uint64_t len,
		    io_handler_fn *fn, void *ctx, const char *name, struct err *e)
{
	struct io_map *m = &bus->map[space];
	uint64_t last_valid = space == IO_SPACE_PORT ? 0xffff : UINT64_MAX;

	if (!name)
		name = "?";
	if (bus->sealed)
		return err_set(e, EBUSY, "registering %s %s %#" PRIx64 ": the I/O bus is sealed "
			       "(ranges are registered before the vCPUs start)",
			       name, space_name[space], base);
	if (len == 0 || base > last_valid || len - 1 > last_valid - base || !fn)
		return err_set(e, EINVAL, "registering %s %s %#" PRIx64 "+%#" PRIx64
			       ": invalid range", name, space_name[space], base, len);
	size_t i = upper_bound(m->r, m->n, base);
	/* Sorted and disjoint: only the neighbours can overlap. */
	const struct io_range *clash = NULL;
	if (i > 0 && overlaps(&m->r[i - 1], base, len))
		clash = &m->r[i - 1];
	else if (i < m->n && overlaps(&m->r[i], base, len))
		clash = &m->r[i];
	if (clash)
		return err_set(e, EEXIST, "registering %s %s %#" PRIx64 "-%#" PRIx64
			       ": overlaps %s at %#" PRIx64 "-%#" PRIx64, name, space_name[space],
			       base, base + (len - 1), clash->name, clash->base,
			       clash->base + (clash->len - 1));
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct io_range *r = realloc(m->r, cap * sizeof(*r));
		if (!r)
			return err_sys(e, "growing the %s range table", space_name[space]);
		m->r = r;
		m->cap = cap;
	}
	memmove(&m->r[i + 1], &m->r[i], (m->n - i) * sizeof(*m->r));
	m->r[i] = (struct io_range){.base = base, .len = len, .fn = fn, .ctx = ctx};
	snprintf(m->r[i].name, sizeof(m->r[i].name), "%s", name);
	m->n++;
	return 0;
}

int io_bus_register_port(struct io_bus *bus, uint16_t base, uint16_t len,
			 io_handler_fn *fn, void *ctx, const char *name, struct err *e)
{
	return io_bus_register(bus, IO_SPACE_PORT, base, len, fn, ctx, name, e);
}

int io_bus_register_mmio(struct io_bus *bus, uint64_t base, uint64_t len,
			 io_handler_fn *fn, void *ctx, const char *name, struct err *e)
{
	return io_bus_register(bus, IO_SPACE_MMIO, base, len, fn, ctx, name, e);
}

void io_bus_seal(struct io_bus *bus)
{
	bus->sealed = true;
}

/* Insert addr into the sorted seen[] set; true if it was not there yet. */
static bool first_sighting(struct io_map *m, uint64_t addr)
{
	size_t i = upper_bound_u64(m->seen, m->nseen, addr);

	if (i > 0 && m->seen[i - 1] == addr)
		return false;
	if (m->nseen == UNHANDLED_LOG_MAX)
		return false;
	if (!m->seen) {
		m->seen = malloc(UNHANDLED_LOG_MAX * sizeof(*m->seen));
		if (!m->seen)
			return false;  /* cannot remember: stay quiet rather than flood */
	}
	memmove(&m->seen[i + 1], &m->seen[i], (m->nseen - i) * sizeof(*m->seen));
	m->seen[i] = addr;
	m->nseen++;
	return true;
}

static void unhandled(struct io_map *m, enum io_space space, uint64_t addr, uint8_t *data,
		      unsigned size, bool is_write)
{
	bool log_it, log_full = false;

	add(&m->unhandled);
	if (!is_write)
		memset(data, 0xff, size);
	pthread_mutex_lock(&m->lock);
	log_it = first_sighting(m, addr);
	if (!log_it && m->nseen == UNHANDLED_LOG_MAX && !m->seen_full)
		log_full = m->seen_full = true;
	pthread_mutex_unlock(&m->lock);
	if (log_it)
		log_debug("unhandled %s %s at %#" PRIx64 " (size %u); %s", space_name[space],
			 is_write ? "write" : "read", addr, size,
			 is_write ? "ignored" : "reads all-ones");
	else if (log_full)
		log_debug("more than %d unhandled %s addresses: no longer logging new ones",
			 UNHANDLED_LOG_MAX, space_name[space]);
}

static bool dispatch(struct io_bus *bus, enum io_space space, uint64_t addr, uint8_t *data,
		     unsigned size, bool is_write)
{
	struct io_map *m = &bus->map[space];
	struct io_range *r = lookup(m, addr);

	if (r && r->fn(r->ctx, addr - r->base, data, size, is_write) == 0) {
		add(is_write ? &r->writes : &r->reads);
		return true;
	}
	unhandled(m, space, addr, data, size, is_write);
	return false;
}

bool io_bus_port(struct io_bus *bus, uint16_t port, uint8_t *data, unsigned size,
		 bool is_write)
{
	if (port == IO_PORT_POST && !lookup(&bus->map[IO_SPACE_PORT], port)) {
		if (is_write) {
			add(&bus->post_codes);
			__atomic_store_n(&bus->last_post, data[0], __ATOMIC_RELAXED);
		} else {
			memset(data, 0xff, size);
		}
		return true;
	}
	return dispatch(bus, IO_SPACE_PORT, port, data, size, is_write);
}

bool io_bus_mmio(struct io_bus *bus, uint64_t gpa, uint8_t *data, unsigned size,
		 bool is_write)
{
	return dispatch(bus, IO_SPACE_MMIO, gpa, data, size, is_write);
}

void io_bus_counters(struct io_bus *bus, enum io_space space, struct io_bus_counters *out)
{
	struct io_map *m = &bus->map[space];

	*out = (struct io_bus_counters){.unhandled = get(&m->unhandled)};
	for (size_t i = 0; i < m->n; i++)
		out->handled += get(&m->r[i].reads) + get(&m->r[i].writes);
	pthread_mutex_lock(&m->lock);
	out->unhandled_addrs = m->nseen;
	pthread_mutex_unlock(&m->lock);
	if (space == IO_SPACE_PORT) {
		out->post_codes = get(&bus->post_codes);
		out->last_post_code = __atomic_load_n(&bus->last_post, __ATOMIC_RELAXED);
	}
}

void io_bus_print_stats(struct io_bus *bus, FILE *out)
{
	for (int s = 0; s < 2; s++) {
		struct io_map *m = &bus->map[s];
		struct io_bus_counters c;

		for (size_t i = 0; i < m->n; i++) {
			const struct io_range *r = &m->r[i];
			fprintf(out, "io.%s.%s@%#" PRIx64 ".reads: %" PRIu64 "\n", space_name[s],
				r->name, r->base, get(&r->reads));
			fprintf(out, "io.%s.%s@%#" PRIx64 ".writes: %" PRIu64 "\n", space_name[s],
				r->name, r->base, get(&r->writes));
		}
		io_bus_counters(bus, (enum io_space)s, &c);
		fprintf(out, "io.%s.unhandled: %" PRIu64 "\n", space_name[s], c.unhandled);
		fprintf(out, "io.%s.unhandled_addresses: %" PRIu64 "\n", space_name[s],
			c.unhandled_addrs);
		if (s == IO_SPACE_PORT) {
			fprintf(out, "io.port.post_codes: %" PRIu64 "\n", c.post_codes);
			fprintf(out, "io.port.last_post_code: %#x\n", c.last_post_code);
		}
	}
}
