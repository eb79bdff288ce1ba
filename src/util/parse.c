/* Number parsing for the command line and the monitor: one strict grammar. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "vmswitch/util.h"

static int parse_number(const char *s, uint64_t *out, const char **end, struct err *e)
{
	char *p;

	if (!s || !*s)
		return err_set(e, EINVAL, "empty number");
	if (!isdigit((unsigned char)s[0]))
		return err_set(e, EINVAL, "'%s' is not a number", s);
	errno = 0;
	*out = strtoull(s, &p, 0);
	if (errno == ERANGE)
		return err_set(e, ERANGE, "'%s' is too large", s);
	if (p == s)
		return err_set(e, EINVAL, "'%s' is not a number", s);
	*end = p;
	return 0;
}

int parse_u64(const char *s, uint64_t *out, struct err *e)
{
	const char *end;

	if (parse_number(s, out, &end, e) < 0)
		return -1;
	if (*end)
		return err_set(e, EINVAL, "'%s' is not a number", s);
	return 0;
}

int parse_size(const char *s, uint64_t *out, struct err *e)
{
	const char *end;
	uint64_t v, mult = 1;

	if (parse_number(s, &v, &end, e) < 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'K': mult = KiB; break;
	case 'M': mult = MiB; break;
	case 'G': mult = GiB; break;
	case 'T': mult = 1024 * GiB; break;
	default:
		return err_set(e, EINVAL, "'%s': unknown size suffix '%c' (use K, M, G or T)", s, *end);
	}
	if (*end && end[1] && !(toupper((unsigned char)end[1]) == 'B' && !end[2]) &&
	    !(toupper((unsigned char)end[1]) == 'I' && toupper((unsigned char)end[2]) == 'B' && !end[3]))
		return err_set(e, EINVAL, "'%s': junk after size suffix", s);
	if (v > UINT64_MAX / mult)
		return err_set(e, ERANGE, "'%s' is too large", s);
	*out = v * mult;
	return 0;
}
