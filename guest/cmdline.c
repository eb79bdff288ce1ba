/* Kernel command line: pages=N rounds=N seed=N report=N cpus=N corrupt=N
 * chase=N forever, and the test hooks stop=N fault=N. Numbers are decimal or
 * 0x-prefixed hex. */
#include "guest.h"
#include "vmswitch/numparse.h"

void params_default(struct params *p)
{
	*p = (struct params){ .pages = 1024, .rounds = 20, .seed = 1,
			      .report = 10, .cpus = 1 };
}


/* "key=value" with a numeric value: 1 taken, 0 not this key, -1 bad number. */
static int take(const char *w, size_t n, const char *key, uint64_t *out)
{
	size_t k = strlen(key);

	if (n <= k || strncmp(w, key, k) != 0 || w[k] != '=')
		return 0;
	return num_parse(w + k + 1, n - k - 1, out) == 0 ? 1 : -1;
}

static int parse_word(struct params *p, const char *w, size_t n)
{
	uint64_t corrupt = 0;
	int r;

	if (n == 7 && strncmp(w, "forever", 7) == 0)
		return p->forever = 1;
	if ((r = take(w, n, "pages", &p->pages)) || (r = take(w, n, "rounds", &p->rounds)) ||
	    (r = take(w, n, "seed", &p->seed)) || (r = take(w, n, "report", &p->report)) ||
	    (r = take(w, n, "stop", &p->stop)) || (r = take(w, n, "fault", &p->fault)))
		return r;
	if ((r = take(w, n, "cpus", &p->cpus)) != 0) {
		p->cpus_given = r > 0;
		return r;
	}
	if ((r = take(w, n, "corrupt", &corrupt)) > 0)
		p->corrupt = corrupt != 0;
	if (r == 0 && (r = take(w, n, "chase", &corrupt)) > 0)
		p->chase = corrupt != 0;
	return r;
}

int params_parse(struct params *p, const char *s)
{
	int unknown = 0;

	while (*s) {
		size_t n = 0;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		while (s[n] && s[n] != ' ' && s[n] != '\t' && s[n] != '\n')
			n++;
		if (n && parse_word(p, s, n) <= 0)
			unknown++;
		s += n;
	}
	return unknown;
}
