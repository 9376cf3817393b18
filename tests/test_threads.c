/* SPDX-License-Identifier: MIT */
/*
 * The load of test_multiprocess.c run by eight threads of one process.
 * ThreadSanitizer instruments one process at a time, so only here can it
 * detect races between the workers. The main thread drives the test clock.
 * conformance.h has the load and the checks.
 *
 * Two variants: the workers share the main thread's struct arl handle, the
 * one that also moves the clock (one process entry, concurrent registration
 * and slot search on one handle), or each worker attaches a handle of its
 * own (a process entry per handle).
 */
#include "conformance.h"

struct worker_thread {
	pthread_t thread;
	int index;
	struct arl *arl;     /* shared handle, or NULL to attach one */
	const char *segment; /* name to attach when arl is NULL */
};

static void *worker_main(void *arg)
{
	struct worker_thread *w = arg;

	if (w->arl)
		run_worker(w->arl, w->index);
	else
		run_worker_attached(w->segment, w->index);
	return NULL;
}

/* Runs the load on WORKERS threads and checks it. share_handle chooses
 * between the main thread's handle for all and a handle per thread. */
static void run_threads(const char *tag, bool share_handle)
{
	struct worker_thread workers[WORKERS];
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	int i;

	init_shared((uint32_t)iterations_from_env());
	test_segment_name(name, sizeof(name), tag);
	arl = test_create(name, 64);
	b = test_bucket(arl, BUCKET_NAME, RPM, TPM, MAX_INFLIGHT, 0);
	create_account(arl);

	for (i = 0; i < WORKERS; i++) {
		workers[i].index = i;
		workers[i].arl = share_handle ? arl : NULL;
		workers[i].segment = name;
		ck_assert_int_eq(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]),
				 0);
	}
	drive_clock(arl);
	for (i = 0; i < WORKERS; i++)
		ck_assert_int_eq(pthread_join(workers[i].thread, NULL), 0);
	check_workers(arl, b);

	arl_detach(arl);
	shm_unlink(name);
	free_shared();
}

START_TEST(threads_share_one_handle)
{
	run_threads("thr-shared", true);
}
END_TEST

START_TEST(threads_attach_own_handles)
{
	run_threads("thr-own", false);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("threads");
	TCase *tc = tcase_create("conformance");

	/* Generous: sanitizer builds, ThreadSanitizer above all, run many
	 * times slower. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, threads_share_one_handle);
	tcase_add_test(tc, threads_attach_own_handles);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
