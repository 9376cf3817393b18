/* SPDX-License-Identifier: MIT */
/*
 * Adaptive limits: what a provider's response says reaches every process
 * sharing the bucket. A remaining count lowers availability, a 429 blocks
 * the bucket until its retry time, a discovering bucket learns its limits,
 * and "can never fit" is reported as such. Everything runs on the test
 * clock, so no test depends on the machine's speed.
 */
#include <signal.h>
#include <sys/mman.h>

#include "testutil.h"

static char seg[64];

static void setup(void)
{
	test_segment_name(seg, sizeof(seg), "adaptive");
}

static void teardown(void)
{
	shm_unlink(seg);
}

static struct arl_observation observation(uint32_t status)
{
	struct arl_observation o;

	memset(&o, 0, sizeof(o));
	o.status = status;
	return o;
}

static void observe_remaining(struct arl_observation *o, uint32_t unit, uint64_t limit,
			      uint64_t remaining)
{
	struct arl_observed_limit *l = &o->limits[o->nlimits++];

	l->unit = unit;
	l->known = ARL_OBSERVED_LIMIT | ARL_OBSERVED_REMAINING;
	l->window_ns = MINUTE_NS;
	l->limit = limit;
	l->remaining = remaining;
}

START_TEST(remaining_lowers_availability_once)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "m", 60, 150000, 0, 0);
	struct arl_observation o = observation(200);

	observe_remaining(&o, ARL_UNIT_REQUESTS, 60, 59);
	observe_remaining(&o, ARL_UNIT_TOKENS, 150000, 100);
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_available(arl, b, 0), 59);
	ck_assert_uint_eq(test_available(arl, b, 1), 100);

	/* A later, larger count never raises what the counters allow: local
	 * grants since the provider counted are in the local counters only. */
	o.limits[1].remaining = 140000;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_available(arl, b, 1), 100);

	/* A limit of another window (a per-day count) is not a per-minute one. */
	o.limits[1].remaining = 0;
	o.limits[1].window_ns = 86400ull * NS_PER_S;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_available(arl, b, 1), 100);
	arl_detach(arl);
}
END_TEST

/* Reserves 1-token requests in a loop at a fixed test-clock time until
 * refused; returns the number granted. */
static unsigned grant_all(struct arl *arl, struct arl_bucket b)
{
	struct arl_reservation res;
	unsigned n = 0;

	while (test_reserve(arl, b, 1, &res) == 0)
		n++;
	return n;
}

START_TEST(a_429_blocks_every_process_then_no_burst)
{
	struct arl *arl = test_create(seg, 1024);
	struct arl_bucket b = test_bucket(arl, "m", 60, 1000000, 0, 0);
	struct arl_observation o = observation(429);
	struct arl_reservation res;
	unsigned *granted;
	uint64_t start = arl_now(arl);
	int i, status;

	/* The provider's 429 says: no requests left, retry in 30 s. */
	observe_remaining(&o, ARL_UNIT_REQUESTS, 60, 0);
	o.retry_after_known = true;
	o.retry_after_ns = 30 * NS_PER_S;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_stats(arl, b).provider_429s, 1);

	/* Another process is refused until the retry time, with a retry time
	 * at or a little after it. */
	if (fork() == 0) {
		struct arl *child = test_attach(seg);
		int rc = test_reserve(child, b, 1, &res);

		_exit(rc == ARL_EAGAIN && res.retry_at_ns >= start + 30 * NS_PER_S &&
			      res.retry_at_ns <= start + 33 * NS_PER_S
		      ? 0
		      : 1);
	}
	ck_assert(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	test_advance(arl, 29 * NS_PER_S);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_EAGAIN);

	/* After the block, eight processes together get what 31 s of refill
	 * allows (31 of 60 requests), not a burst of retries. */
	test_advance(arl, 2 * NS_PER_S);
	granted = mmap(NULL, 8 * sizeof(*granted), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(granted != MAP_FAILED);
	for (i = 0; i < 8; i++) {
		if (fork() == 0) {
			struct arl *child = test_attach(seg);

			granted[i] = grant_all(child, b);
			_exit(0);
		}
	}
	for (i = 0; i < 8; i++)
		ck_assert(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (i = 1; i < 8; i++)
		granted[0] += granted[i];
	ck_assert_uint_eq(granted[0], 31);
	munmap(granted, 8 * sizeof(*granted));
	arl_detach(arl);
}
END_TEST

START_TEST(a_waiter_sleeps_through_the_block)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "m", 600, 1000000, 0, 0);
	struct arl_observation o = observation(429);
	uint64_t start = arl_now(arl);
	pid_t pid;
	int status;

	o.retry_after_known = true;
	o.retry_after_ns = 10 * NS_PER_S;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	pid = fork();
	if (pid == 0) {
		struct arl *child = test_attach(seg);
		struct arl_request req = {1, 0, 0};
		struct arl_reservation res;
		int rc = arl_reserve_wait(child, b, &req, start + 60 * NS_PER_S, &res);

		_exit(rc == 0 && arl_now(child) >= start + 10 * NS_PER_S ? 0 : 1);
	}
	/* Move the clock in steps; the waiter must not get through before the
	 * block ends, and must get through after it. */
	for (int i = 0; i < 40; i++) {
		test_advance(arl, NS_PER_S / 2);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(20000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		test_advance(arl, 0);
		ck_assert(waitpid(pid, &status, 0) == pid);
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	arl_detach(arl);
}
END_TEST

START_TEST(a_429_without_retry_time_backs_off_and_caps)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "m", 600, 1000000, 0, 0);
	struct arl_observation o = observation(429);
	struct arl_bucket_stats s;
	uint64_t now = arl_now(arl);

	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.blocked_until_ns, now + ARL_DEFAULT_BACKOFF_NS);

	/* An exhausted limit's reset gives the time instead. */
	observe_remaining(&o, ARL_UNIT_TOKENS, 1000000, 0);
	o.limits[0].known |= ARL_OBSERVED_RESET;
	o.limits[0].reset_ns = 20 * NS_PER_S;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_stats(arl, b).blocked_until_ns, now + 20 * NS_PER_S);

	/* A retry time beyond a week is capped at a week. */
	o.retry_after_known = true;
	o.retry_after_ns = UINT64_MAX;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	ck_assert_uint_eq(test_stats(arl, b).blocked_until_ns, now + ARL_MAX_BLOCK_NS);
	arl_detach(arl);
}
END_TEST

START_TEST(a_discovering_bucket_learns_its_limits)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "d", 1000000, 1000000, 0, ARL_BUCKET_DISCOVER);
	struct arl_observation o = observation(200);
	struct arl_reservation first, second;
	struct arl_bucket_stats s;

	/* One request in flight until the first headers arrive. */
	ck_assert_int_eq(test_reserve(arl, b, 10, &first), 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &second), ARL_EAGAIN);
	ck_assert_uint_eq(second.retry_at_ns, 0);

	observe_remaining(&o, ARL_UNIT_REQUESTS, 500, 499);
	observe_remaining(&o, ARL_UNIT_TOKENS, 30000, 29990);
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[0].amount, 500);
	ck_assert_uint_eq(s.limits[1].amount, 30000);
	ck_assert_uint_le(s.limits[1].available, 29990);
	ck_assert_int_eq(test_reserve(arl, b, 10, &second), 0);

	/* A request larger than the learned limit can never fit. */
	ck_assert_int_eq(test_reserve(arl, b, 36278, &second), ARL_ENEVERFITS);
	arl_detach(arl);
}
END_TEST

START_TEST(never_fits_is_reported_and_does_not_block)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "m", 600, 1000000, 0, 0);
	struct arl_observation o = observation(429);
	struct arl_reservation res;

	o.never_fits = true;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), ARL_ENEVERFITS);
	ck_assert_uint_eq(test_stats(arl, b).blocked_until_ns, 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), 0);
	arl_detach(arl);
}
END_TEST

START_TEST(bad_observations_are_rejected)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "m", 600, 1000000, 0, 0);
	struct arl_bucket stale = b;
	struct arl_observation o = observation(200);

	ck_assert_int_eq(arl_bucket_observe(NULL, b, &o), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_observe(arl, b, NULL), ARL_EINVAL);
	o.nlimits = ARL_MAX_LIMITS + 1;
	ck_assert_int_eq(arl_bucket_observe(arl, b, &o), ARL_EINVAL);
	o.nlimits = 0;
	stale.gen++;
	ck_assert_int_eq(arl_bucket_observe(arl, stale, &o), ARL_ESTALE);
	arl_detach(arl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("adaptive");
	TCase *tc = tcase_create("observe");

	tcase_add_checked_fixture(tc, setup, teardown);
	/* Sanitizer builds run many times slower; nothing here waits on time. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, remaining_lowers_availability_once);
	tcase_add_test(tc, a_429_blocks_every_process_then_no_burst);
	tcase_add_test(tc, a_waiter_sleeps_through_the_block);
	tcase_add_test(tc, a_429_without_retry_time_backs_off_and_caps);
	tcase_add_test(tc, a_discovering_bucket_learns_its_limits);
	tcase_add_test(tc, never_fits_is_reported_and_does_not_block);
	tcase_add_test(tc, bad_observations_are_rejected);
	suite_add_tcase(s, tc);
	return test_run(s);
}
