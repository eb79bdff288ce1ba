/* How every Check program in tests/unit runs its suite: one place for the
 * runner's set-up and the exit status automake reads (0 pass, 1 fail). */
#ifndef VMSWITCH_TESTS_CHECK_RUN_H
#define VMSWITCH_TESTS_CHECK_RUN_H

#include <check.h>
#include <stdbool.h>

/* nofork: run in-process (tests that own threads or big mappings). */
static inline int check_run(Suite *s, bool nofork)
{
	SRunner *sr = srunner_create(s);
	int failed;

	if (nofork)
		srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
