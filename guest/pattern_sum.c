/* pattern-sum SEED FIRST_PFN PAGES ROUNDS: print the checksum the test
 * kernel reports for an intact run (vmswitch/pattern.h), so host-side
 * tests check the guest's arithmetic and its memory independently. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "vmswitch/pattern.h"

static int number(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || *s == '\0' || *end != '\0' ? -1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t v[4];

	if (argc != 5) {
		fprintf(stderr, "usage: %s SEED FIRST_PFN PAGES ROUNDS\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < 4; i++)
		if (number(argv[i + 1], &v[i]) < 0) {
			fprintf(stderr, "%s: not a number: %s\n", argv[0], argv[i + 1]);
			return 2;
		}
	printf("0x%016" PRIx64 "\n", pattern_expected_checksum(v[0], v[1], v[2], v[3]));
	return 0;
}
