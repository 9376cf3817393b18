/* SPDX-License-Identifier: MIT */
/*
 * Eight processes reserve and release on one bucket under the segment's test
 * clock, and the parent drives the clock. conformance.h has the load and
 * the checks: the token-bucket conformance bound over every interval for the
 * requests and tokens limits, the in-flight cap, counters that add up, and
 * every limit full again a window later. test_threads.c runs the same load
 * on threads.
 */
#include "conformance.h"

static void child_main(const char *segment, int child)
{
	_exit(run_worker_attached(segment, child) == 0 ? 0 : 10);
}

START_TEST(eight_processes_respect_bound)
{
	uint32_t iterations = (uint32_t)iterations_from_env();
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	pid_t pids[WORKERS];
	int i, status;

	init_shared(iterations);
	test_segment_name(name, sizeof(name), "mp");
	arl = test_create(name, 64);
	b = test_bucket(arl, BUCKET_NAME, RPM, TPM, MAX_INFLIGHT, 0);
	create_account(arl);

	for (i = 0; i < WORKERS; i++) {
		pids[i] = fork();
		ck_assert(pids[i] >= 0);
		if (pids[i] == 0)
			child_main(name, i);
	}
	drive_clock(arl);
	for (i = 0; i < WORKERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "child %d ended with status %#x; failed call: %s (%s)", i, status,
			      worker_step_names[worker_log(i)->failed_step],
			      arl_strerror(worker_log(i)->failed_rc));
	}
	check_workers(arl, b);

	arl_detach(arl);
	shm_unlink(name);
	free_shared();
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("multiprocess");
	TCase *tc = tcase_create("conformance");

	/* Generous: sanitizer builds run many times slower. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, eight_processes_respect_bound);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
