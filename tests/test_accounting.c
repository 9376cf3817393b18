/* SPDX-License-Identifier: MIT */
/*
 * Tests of the GCRA accounting in arl.h: refill, retry times, refunds,
 * overage, cancels, the in-flight cap and waiting. Every segment uses the
 * test clock, so each expected availability is an exact number.
 *
 * Most tests use test_bucket() with TPM tokens per minute, where one token
 * refills in exactly 1 ms, and RPM requests per minute.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define TEST_TIMEOUT_SECONDS 60

/* Limit indexes of a test_bucket(). */
#define REQUESTS 0
#define TOKENS 1

#define RPM 600ull
#define TPM 60000ull

/* How long a process polls for another process to reach a step. */
#define POLL_INTERVAL_NS 1000000L
#define POLL_TRIES 10000

/* Computes the GCRA cost of x units independently of the header:
 * ceil(x * window_ns / amount) nanoseconds. */
static uint64_t gcra_cost_ns(uint64_t x, uint64_t amount, uint64_t window_ns)
{
	__extension__ typedef unsigned __int128 u128;

	return (uint64_t)(((u128)x * window_ns + amount - 1) / amount);
}

static void set_clock(struct arl *arl, uint64_t now_ns)
{
	ck_assert_int_eq(arl_test_clock_set(arl, now_ns), 0);
}

static struct arl_usage partial_usage(uint64_t partial)
{
	struct arl_usage u;

	memset(&u, 0, sizeof(u));
	u.flags = ARL_USAGE_PARTIAL;
	u.partial_tokens = partial;
	return u;
}

#define ASSERT_COUNTER_EQ(stats, field, expected)                                                  \
	ck_assert_msg((stats).field == (expected), #field " is %llu, expected %llu",               \
		      (unsigned long long)(stats).field, (unsigned long long)(expected))

#define ASSERT_AVAILABLE_EQ(arl, bucket, limit, expected)                                          \
	do {                                                                                       \
		uint64_t available_ = test_available((arl), (bucket), (limit));                   \
		ck_assert_msg(available_ == (uint64_t)(expected),                                  \
			      "limit %d (%s) has %llu available, expected %llu", (limit), #limit,   \
			      (unsigned long long)available_, (unsigned long long)(expected));      \
	} while (0)

/* Asserts that every availability, the in-flight count and every counter of
 * a bucket snapshot match an earlier one. */
static void assert_stats_unchanged(const struct arl_bucket_stats *before,
				   const struct arl_bucket_stats *after)
{
	uint32_t i;

	ck_assert_uint_eq(after->nlimits, before->nlimits);
	for (i = 0; i < before->nlimits; i++)
		ck_assert_msg(after->limits[i].available == before->limits[i].available,
			      "limit %u available changed from %llu to %llu", i,
			      (unsigned long long)before->limits[i].available,
			      (unsigned long long)after->limits[i].available);
	ASSERT_COUNTER_EQ(*after, inflight, before->inflight);
	ASSERT_COUNTER_EQ(*after, granted, before->granted);
	ASSERT_COUNTER_EQ(*after, granted_tokens, before->granted_tokens);
	ASSERT_COUNTER_EQ(*after, rejected, before->rejected);
	ASSERT_COUNTER_EQ(*after, released, before->released);
	ASSERT_COUNTER_EQ(*after, refunded_tokens, before->refunded_tokens);
	ASSERT_COUNTER_EQ(*after, overage_tokens, before->overage_tokens);
	ASSERT_COUNTER_EQ(*after, fallback_releases, before->fallback_releases);
	ASSERT_COUNTER_EQ(*after, fallback_tokens, before->fallback_tokens);
	ASSERT_COUNTER_EQ(*after, canceled, before->canceled);
	ASSERT_COUNTER_EQ(*after, errors, before->errors);
}

/* Reads how many processes sleep on a bucket's futex. The API does not
 * expose it, so this reads the shared bucket directly. */
static uint32_t bucket_waiters(struct arl *arl, struct arl_bucket b)
{
	return __atomic_load_n(&arl_impl_buckets(arl)[b.index].waiters, __ATOMIC_SEQ_CST);
}

static void sleep_poll_interval(void)
{
	struct timespec pause = {0, POLL_INTERVAL_NS};

	nanosleep(&pause, NULL);
}

/* Polls until a process sleeps on the bucket and at least min_rejected
 * reserve attempts have failed. Returns false after about 10 s. */
static bool wait_for_sleeper(struct arl *arl, struct arl_bucket b, uint64_t min_rejected)
{
	int tries;

	for (tries = 0; tries < POLL_TRIES; tries++) {
		struct arl_bucket_stats s;

		if (arl_bucket_stats(arl, b, &s) == 0 && s.rejected >= min_rejected &&
		    bucket_waiters(arl, b) > 0)
			return true;
		sleep_poll_interval();
	}
	return false;
}

/* Waits for a forked child and asserts that it exited with 0. */
static void assert_child_exited_zero(pid_t child, const char *codes)
{
	int status = 0;

	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(WIFEXITED(status), "child did not exit normally (status %#x)", status);
	ck_assert_msg(WEXITSTATUS(status) == 0, "child exited with %d (%s)", WEXITSTATUS(status),
		      codes);
}

/* ------------------------------------------------------------------------
 * Refill and retry times
 * ------------------------------------------------------------------------ */

START_TEST(refill_is_continuous)
{
	static const struct {
		uint64_t after_ns; /* since the bucket was drained */
		uint64_t available;
	} steps[] = {
		{1000000 - 1, 0}, /* one token takes exactly 1 ms */
		{1000000, 1},
		{MINUTE_NS / 4, TPM / 4},
		{MINUTE_NS / 2, TPM / 2},
		{MINUTE_NS * 3 / 4, TPM * 3 / 4},
		{MINUTE_NS, TPM},
		{2 * MINUTE_NS, TPM}, /* refill stops at the burst */
	};
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;
	uint64_t drained_at;
	size_t i;

	test_segment_name(name, sizeof(name), "refill");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, TPM, &res), 0);
	drained_at = arl_now(arl);
	ASSERT_AVAILABLE_EQ(arl, b, TOKENS, 0);

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		uint64_t available;

		set_clock(arl, drained_at + steps[i].after_ns);
		available = test_available(arl, b, TOKENS);
		ck_assert_msg(available == steps[i].available,
			      "%llu ns after draining: %llu tokens available, expected %llu",
			      (unsigned long long)steps[i].after_ns, (unsigned long long)available,
			      (unsigned long long)steps[i].available);
	}

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(burst_above_amount_admits_burst)
{
	struct arl_bucket_config c;
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "burst");
	arl = test_create(name, 0);
	memset(&c, 0, sizeof(c));
	c.name = "bursty";
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = 1000;
	c.limits[0].window_ns = MINUTE_NS;
	c.limits[0].burst = 3000;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);

	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[0].burst, 3000);
	ck_assert_uint_eq(s.limits[0].available, 3000);

	ck_assert_int_eq(test_reserve(arl, b, 3000, &res), 0);
	ASSERT_AVAILABLE_EQ(arl, b, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_EAGAIN);

	/* A full window refills only the amount, not the burst. */
	test_advance(arl, MINUTE_NS);
	ASSERT_AVAILABLE_EQ(arl, b, 0, 1000);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(retry_time_is_exact)
{
	/* 7000 tokens per minute: one token costs 8571428.57 ns, so the
	 * cost is rounded up and the retry time must follow. */
	const uint64_t tpm = 7000, wanted = 100;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation held, res;
	uint64_t drained_at, tolerance, tat, retry_at;

	test_segment_name(name, sizeof(name), "retry");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", 1000, tpm, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, tpm, &held), 0);
	drained_at = arl_now(arl);

	/* Draining the burst sets TAT = drained_at + tolerance, and `wanted`
	 * fits once TAT + cost(wanted) - now <= tolerance. */
	tolerance = gcra_cost_ns(tpm, tpm, MINUTE_NS);
	tat = drained_at + tolerance;
	retry_at = tat + gcra_cost_ns(wanted, tpm, MINUTE_NS) - tolerance;
	ck_assert_uint_eq(retry_at, drained_at + 857142858);

	ck_assert_int_eq(test_reserve(arl, b, wanted, &res), ARL_EAGAIN);
	ck_assert_msg(res.retry_at_ns == retry_at, "retry_at_ns %llu, expected %llu",
		      (unsigned long long)res.retry_at_ns, (unsigned long long)retry_at);

	set_clock(arl, retry_at - 1);
	ck_assert_int_eq(test_reserve(arl, b, wanted, &res), ARL_EAGAIN);
	ck_assert_msg(res.retry_at_ns == retry_at,
		      "retry_at_ns %llu one ns early, expected the same %llu",
		      (unsigned long long)res.retry_at_ns, (unsigned long long)retry_at);

	set_clock(arl, retry_at);
	ck_assert_int_eq(test_reserve(arl, b, wanted, &res), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(request_above_burst_never_fits)
{
	struct arl_bucket_stats before, after;
	struct arl_request split = {TPM / 2 + 1, TPM / 2, 0};
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation held, res;

	test_segment_name(name, sizeof(name), "neverfits");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 1000, &held), 0);
	before = test_stats(arl, b);

	/* A bucket with only 59000 tokens left still returns NEVERFITS, not
	 * EAGAIN, because no wait can make TPM + 1 tokens fit. */
	ck_assert_int_eq(test_reserve(arl, b, TPM + 1, &res), ARL_ENEVERFITS);
	ck_assert_uint_eq(res.retry_at_ns, 0);
	ck_assert_int_eq(arl_reserve(arl, b, &split, &res), ARL_ENEVERFITS);

	after = test_stats(arl, b);
	ck_assert_uint_eq(after.limits[REQUESTS].available, before.limits[REQUESTS].available);
	ck_assert_uint_eq(after.limits[TOKENS].available, before.limits[TOKENS].available);
	ck_assert_uint_eq(after.inflight, before.inflight);
	ck_assert_uint_eq(after.granted, before.granted);
	ck_assert_uint_eq(after.rejected, before.rejected + 2);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Release: refunds, overage and unknown usage
 * ------------------------------------------------------------------------ */

START_TEST(release_refunds_unused_tokens)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = test_usage(200);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "refund");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ASSERT_AVAILABLE_EQ(arl, b, TOKENS, TPM - 1000);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 200,
		      "%llu tokens available after using 200 of 1000, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 200));
	ck_assert_msg(s.limits[REQUESTS].available == RPM - 1,
		      "%llu requests available, expected the request to stay charged",
		      (unsigned long long)s.limits[REQUESTS].available);
	ck_assert_uint_eq(s.inflight, 0);
	ASSERT_COUNTER_EQ(s, released, 1);
	ASSERT_COUNTER_EQ(s, refunded_tokens, 800);
	ASSERT_COUNTER_EQ(s, overage_tokens, 0);
	ASSERT_COUNTER_EQ(s, fallback_releases, 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(refund_is_capped_at_burst)
{
	struct arl_usage none = test_usage(0);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "refundcap");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	test_advance(arl, MINUTE_NS);
	ASSERT_AVAILABLE_EQ(arl, b, TOKENS, TPM);

	ck_assert_int_eq(arl_release(arl, &res, &none), 0);
	ASSERT_AVAILABLE_EQ(arl, b, TOKENS, TPM);

	/* No hidden credit either: after the burst, not one more token fits. */
	ck_assert_int_eq(test_reserve(arl, b, TPM, &res), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_EAGAIN);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(overage_is_charged)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = test_usage(1500);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "overage");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1500,
		      "%llu tokens available after using 1500 of 1000 reserved, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1500));
	ASSERT_COUNTER_EQ(s, overage_tokens, 500);
	ASSERT_COUNTER_EQ(s, refunded_tokens, 0);
	ASSERT_COUNTER_EQ(s, released, 1);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(unknown_usage_keeps_reservation)
{
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "fallback");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1000,
		      "%llu tokens available after a release without usage, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1000));
	ck_assert_uint_eq(s.inflight, 0);
	ASSERT_COUNTER_EQ(s, fallback_releases, 1);
	ASSERT_COUNTER_EQ(s, fallback_tokens, 1000);
	ASSERT_COUNTER_EQ(s, released, 0);
	ASSERT_COUNTER_EQ(s, refunded_tokens, 0);
	ASSERT_COUNTER_EQ(s, overage_tokens, 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(partial_above_reservation_is_charged)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = partial_usage(1500);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "partialover");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1500,
		      "%llu tokens available after a partial usage of 1500, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1500));
	ASSERT_COUNTER_EQ(s, overage_tokens, 500);
	ASSERT_COUNTER_EQ(s, fallback_releases, 1);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(partial_below_reservation_keeps_it)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = partial_usage(300);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "partialunder");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1000,
		      "%llu tokens available after a partial usage of 300, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1000));
	ASSERT_COUNTER_EQ(s, refunded_tokens, 0);
	ASSERT_COUNTER_EQ(s, overage_tokens, 0);
	ASSERT_COUNTER_EQ(s, fallback_releases, 1);
	ASSERT_COUNTER_EQ(s, fallback_tokens, 1000);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(no_refund_flag_keeps_estimate)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = test_usage(200);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "norefund");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, ARL_BUCKET_NO_REFUND);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1000,
		      "%llu tokens available with NO_REFUND after using 200 of 1000, expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1000));
	ASSERT_COUNTER_EQ(s, refunded_tokens, 0);
	ASSERT_COUNTER_EQ(s, released, 1);
	ck_assert_uint_eq(s.inflight, 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(ignore_overage_flag_skips_charge)
{
	struct arl_bucket_stats s;
	struct arl_usage usage = test_usage(1500);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "ignoreoverage");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, ARL_BUCKET_IGNORE_OVERAGE);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	s = test_stats(arl, b);
	ck_assert_msg(s.limits[TOKENS].available == TPM - 1000,
		      "%llu tokens available with IGNORE_OVERAGE after using 1500 of 1000, "
		      "expected %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)(TPM - 1000));
	ASSERT_COUNTER_EQ(s, overage_tokens, 0);
	ASSERT_COUNTER_EQ(s, released, 1);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancel and stale handles
 * ------------------------------------------------------------------------ */

START_TEST(cancel_returns_every_charge)
{
	struct arl_bucket_stats before, during, after;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation held, res;

	test_segment_name(name, sizeof(name), "cancel");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 2, 0);

	/* A held reservation keeps both limits below their burst, so the
	 * cancel has to give back its exact cost instead of hitting the cap. */
	ck_assert_int_eq(test_reserve(arl, b, 5000, &held), 0);
	before = test_stats(arl, b);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	during = test_stats(arl, b);
	ck_assert_uint_eq(during.limits[REQUESTS].available, before.limits[REQUESTS].available - 1);
	ck_assert_uint_eq(during.limits[TOKENS].available, before.limits[TOKENS].available - 1000);
	ck_assert_uint_eq(during.inflight, 2);

	ck_assert_int_eq(arl_cancel(arl, &res), 0);
	after = test_stats(arl, b);
	ck_assert_uint_eq(after.limits[REQUESTS].available, before.limits[REQUESTS].available);
	ck_assert_uint_eq(after.limits[TOKENS].available, before.limits[TOKENS].available);
	ck_assert_uint_eq(after.inflight, before.inflight);
	ASSERT_COUNTER_EQ(after, canceled, 1);
	ASSERT_COUNTER_EQ(after, released, 0);
	ASSERT_COUNTER_EQ(after, fallback_releases, 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(second_release_is_stale)
{
	struct arl_bucket_stats before, after;
	struct arl_usage usage = test_usage(200);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "release2");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	before = test_stats(arl, b);

	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_ESTALE);
	after = test_stats(arl, b);
	assert_stats_unchanged(&before, &after);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(release_after_cancel_is_stale)
{
	struct arl_bucket_stats before, after;
	struct arl_usage usage = test_usage(200);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "cancelrelease");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_cancel(arl, &res), 0);
	before = test_stats(arl, b);

	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_ESTALE);
	ck_assert_int_eq(arl_release(arl, &res, NULL), ARL_ESTALE);
	ck_assert_int_eq(arl_cancel(arl, &res), ARL_ESTALE);
	after = test_stats(arl, b);
	assert_stats_unchanged(&before, &after);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(cancel_after_release_is_stale)
{
	struct arl_bucket_stats before, after;
	struct arl_usage usage = test_usage(200);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "releasecancel");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	before = test_stats(arl, b);

	ck_assert_int_eq(arl_cancel(arl, &res), ARL_ESTALE);
	after = test_stats(arl, b);
	assert_stats_unchanged(&before, &after);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/*
 * Creates a bucket whose units cost a few hundred nanoseconds or less, and
 * not whole nanoseconds. A cancel that gave back 1 ns more or less than its
 * grant took would then show in `available` after many rounds. Both limits
 * have a 1 s window: 3,000,000 requests (334 ns each, rounded up from 333.3)
 * and 7,000,000,000 tokens (x tokens cost ceil(x / 7) ns).
 */
static struct arl_bucket create_fine_bucket(struct arl *arl, const char *name)
{
	struct arl_bucket_config c;
	struct arl_bucket b;
	int rc;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.nlimits = 2;
	c.limits[0].unit = ARL_UNIT_REQUESTS;
	c.limits[0].amount = 3000000;
	c.limits[0].window_ns = NS_PER_S;
	c.limits[1].unit = ARL_UNIT_TOKENS;
	c.limits[1].amount = 7000000000ull;
	c.limits[1].window_ns = NS_PER_S;
	c.max_inflight = 1000;
	rc = arl_bucket_create(arl, &c, &b);
	ck_assert_msg(rc == 0, "bucket %s: %s", name, arl_strerror(rc));
	return b;
}

#define HELD_RESERVATIONS 100
#define CANCEL_ROUNDS 10000

/*
 * Reserves HELD_RESERVATIONS times 1,000,000 tokens on a fine bucket and
 * keeps them, which drains 33,400 ns of requests and 14,285,800 ns of
 * tokens. Both exceed the 10,000 ns the clock moves during the rounds, so
 * every cancel in them gives back time to a limit below its burst.
 */
static void hold_reservations(struct arl *arl, struct arl_bucket b)
{
	struct arl_reservation res;
	int i;

	for (i = 0; i < HELD_RESERVATIONS; i++)
		ck_assert_int_eq(test_reserve(arl, b, 1000000, &res), 0);
}

/* Asserts that two buckets show the same availability and in-flight count. */
static void assert_buckets_match(struct arl *arl, struct arl_bucket b, struct arl_bucket twin)
{
	struct arl_bucket_stats s = test_stats(arl, b), t = test_stats(arl, twin);

	ck_assert_msg(s.limits[REQUESTS].available == t.limits[REQUESTS].available,
		      "%llu requests available after the rounds, untouched twin has %llu",
		      (unsigned long long)s.limits[REQUESTS].available,
		      (unsigned long long)t.limits[REQUESTS].available);
	ck_assert_msg(s.limits[TOKENS].available == t.limits[TOKENS].available,
		      "%llu tokens available after the rounds, untouched twin has %llu",
		      (unsigned long long)s.limits[TOKENS].available,
		      (unsigned long long)t.limits[TOKENS].available);
	ck_assert_msg(s.inflight == t.inflight, "%u in flight after the rounds, twin has %u",
		      s.inflight, t.inflight);
}

/* Runs CANCEL_ROUNDS of reserve-then-cancel on one bucket, advancing the
 * clock by step_ns after each, and compares it with a twin bucket that
 * keeps the same reservations but runs no rounds. */
static void run_cancel_rounds(const char *tag, uint64_t step_ns)
{
	struct arl_bucket_stats before, after;
	char name[64];
	struct arl *arl;
	struct arl_bucket b, twin;
	struct arl_reservation res;
	int i, rc;

	test_segment_name(name, sizeof(name), tag);
	arl = test_create(name, 0);
	b = create_fine_bucket(arl, "rounds");
	twin = create_fine_bucket(arl, "twin");
	hold_reservations(arl, b);
	hold_reservations(arl, twin);
	before = test_stats(arl, b);

	for (i = 0; i < CANCEL_ROUNDS; i++) {
		rc = test_reserve(arl, b, 1000, &res);
		ck_assert_msg(rc == 0, "round %d: reserve returned %s", i, arl_strerror(rc));
		rc = arl_cancel(arl, &res);
		ck_assert_msg(rc == 0, "round %d: cancel returned %s", i, arl_strerror(rc));
		if (step_ns != 0)
			test_advance(arl, step_ns);
	}

	assert_buckets_match(arl, b, twin);
	after = test_stats(arl, b);
	ck_assert_uint_eq(after.inflight, HELD_RESERVATIONS);
	ASSERT_COUNTER_EQ(after, canceled, CANCEL_ROUNDS);
	if (step_ns == 0) {
		ck_assert_uint_eq(after.limits[REQUESTS].available,
				  before.limits[REQUESTS].available);
		ck_assert_uint_eq(after.limits[TOKENS].available, before.limits[TOKENS].available);
	}

	arl_detach(arl);
	shm_unlink(name);
}

START_TEST(cancel_rounds_leave_no_drift)
{
	run_cancel_rounds("rounds", 0);
}
END_TEST

START_TEST(cancel_rounds_with_ticking_clock)
{
	run_cancel_rounds("roundstick", 1);
}
END_TEST

/* ------------------------------------------------------------------------
 * In-flight cap and zero tokens
 * ------------------------------------------------------------------------ */

START_TEST(inflight_cap_limits_concurrency)
{
	struct arl_usage usage = test_usage(10);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation first, second, third;

	test_segment_name(name, sizeof(name), "inflight");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 2, 0);

	ck_assert_int_eq(test_reserve(arl, b, 10, &first), 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &second), 0);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 2);

	ck_assert_int_eq(test_reserve(arl, b, 10, &third), ARL_EAGAIN);
	ck_assert_msg(third.retry_at_ns == 0,
		      "retry_at_ns %llu for a full in-flight cap, expected 0: only a release "
		      "frees a slot",
		      (unsigned long long)third.retry_at_ns);

	ck_assert_int_eq(arl_release(arl, &first, &usage), 0);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 1);
	ck_assert_int_eq(test_reserve(arl, b, 10, &third), 0);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 2);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(zero_tokens_charge_request_only)
{
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation drain, res;

	test_segment_name(name, sizeof(name), "zerotokens");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 0, &res), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[REQUESTS].available, RPM - 1);
	ck_assert_uint_eq(s.limits[TOKENS].available, TPM);
	ck_assert_uint_eq(s.inflight, 1);

	/* Zero tokens fit even when the tokens limit is empty. */
	ck_assert_int_eq(test_reserve(arl, b, TPM, &drain), 0);
	ck_assert_int_eq(test_reserve(arl, b, 0, &res), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[REQUESTS].available, RPM - 3);
	ck_assert_uint_eq(s.limits[TOKENS].available, 0);
	ck_assert_uint_eq(s.inflight, 3);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting
 * ------------------------------------------------------------------------ */

START_TEST(past_deadline_makes_one_try)
{
	struct arl_request big = {1000, 0, 0}, small = {0, 0, 0};
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation drain, res;
	uint64_t now;

	test_segment_name(name, sizeof(name), "pastdeadline");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, TPM, &drain), 0);
	now = arl_now(arl);

	ck_assert_int_eq(arl_reserve_wait(arl, b, &big, now, &res), ARL_ETIMEDOUT);
	s = test_stats(arl, b);
	ck_assert_msg(s.rejected == 1, "%llu attempts rejected, expected one try",
		      (unsigned long long)s.rejected);

	ck_assert_int_eq(arl_reserve_wait(arl, b, &big, 0, &res), ARL_ETIMEDOUT);
	s = test_stats(arl, b);
	ck_assert_msg(s.rejected == 2, "%llu attempts rejected after a second call, expected 2",
		      (unsigned long long)s.rejected);

	ck_assert_int_eq(arl_reserve_wait(arl, b, &small, now, &res), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.granted, 2);
	ck_assert_uint_eq(s.inflight, 2);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* Exit codes of the forked children, and their meanings for failure messages. */
#define CHILD_SETUP_FAILED 2
#define CHILD_PIPE_FAILED 3
#define CHILD_NO_SLEEPER 4
#define CHILD_RELEASE_FAILED 5
#define CHILD_WAIT_FAILED 6
#define CHILD_EXIT_CODES                                                                           \
	"2: bucket lookup or reserve failed, 3: pipe write failed, 4: parent never slept, "       \
	"5: release failed, 6: reserve_wait failed"

/* Runs in the forked child: reserves the whole token burst, writes a byte
 * to ready_fd, and releases the burst unused once the parent sleeps on the
 * bucket. */
static int run_releasing_child(const char *name, int ready_fd)
{
	struct arl_usage none = test_usage(0);
	struct arl *arl = test_attach(name);
	struct arl_bucket b;
	struct arl_reservation res;
	char byte = 'r';

	if (arl_bucket_find(arl, "api", &b) != 0 || test_reserve(arl, b, TPM, &res) != 0)
		return CHILD_SETUP_FAILED;
	if (write(ready_fd, &byte, 1) != 1)
		return CHILD_PIPE_FAILED;
	if (!wait_for_sleeper(arl, b, 1))
		return CHILD_NO_SLEEPER;
	if (arl_release(arl, &res, &none) != 0)
		return CHILD_RELEASE_FAILED;
	arl_detach(arl);
	return 0;
}

START_TEST(release_wakes_other_process)
{
	struct arl_request req = {1000, 0, 0};
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;
	int fds[2], rc;
	pid_t child;
	char byte;

	test_segment_name(name, sizeof(name), "wakerelease");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(pipe(fds), 0);

	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(fds[0]);
		_exit(run_releasing_child(name, fds[1]));
	}
	close(fds[1]);

	ck_assert_msg(read(fds[0], &byte, 1) == 1, "child exited before reserving the burst");
	close(fds[0]);
	ASSERT_AVAILABLE_EQ(arl, b, TOKENS, 0);

	/* The test clock never moves here, so only the child's release can
	 * wake this call before the test times out. */
	rc = arl_reserve_wait(arl, b, &req, UINT64_MAX, &res);
	ck_assert_msg(rc == 0, "reserve_wait returned %s", arl_strerror(rc));
	assert_child_exited_zero(child, CHILD_EXIT_CODES);
	ck_assert_uint_eq(test_stats(arl, b).refunded_tokens, TPM);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* Runs in the forked child: waits for half the token burst, which the
 * parent's clock steps have to refill. Returns 0 once granted. */
static int run_waiting_child(const char *name)
{
	struct arl_request req = {TPM / 2, 0, 0};
	struct arl *arl = test_attach(name);
	struct arl_bucket b;
	struct arl_reservation res;
	int rc;

	if (arl_bucket_find(arl, "api", &b) != 0)
		return CHILD_SETUP_FAILED;
	rc = arl_reserve_wait(arl, b, &req, UINT64_MAX, &res);
	arl_detach(arl);
	return rc == 0 ? 0 : CHILD_WAIT_FAILED;
}

START_TEST(clock_step_wakes_waiter)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation drain;
	pid_t child;
	int status = 0;

	test_segment_name(name, sizeof(name), "wakeclock");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, TPM, &drain), 0);

	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		_exit(run_waiting_child(name));

	ck_assert_msg(wait_for_sleeper(arl, b, 1), "child never slept on the bucket");

	/* 10 s refill 10,000 tokens, short of the 30,000 requested: the child
	 * wakes, fails once more and sleeps again. */
	test_advance(arl, MINUTE_NS / 6);
	ck_assert_msg(wait_for_sleeper(arl, b, 2), "child did not retry and sleep again");
	ck_assert_msg(waitpid(child, &status, WNOHANG) == 0,
		      "child exited before refill covered its request");

	test_advance(arl, MINUTE_NS / 3);
	assert_child_exited_zero(child, CHILD_EXIT_CODES);
	ck_assert_uint_eq(test_stats(arl, b).granted, 2);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

static TCase *new_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	return tc;
}

static Suite *accounting_suite(void)
{
	Suite *s = suite_create("accounting");
	TCase *tc;

	tc = new_tcase("refill");
	tcase_add_test(tc, refill_is_continuous);
	tcase_add_test(tc, burst_above_amount_admits_burst);
	tcase_add_test(tc, retry_time_is_exact);
	tcase_add_test(tc, request_above_burst_never_fits);
	suite_add_tcase(s, tc);

	tc = new_tcase("release");
	tcase_add_test(tc, release_refunds_unused_tokens);
	tcase_add_test(tc, refund_is_capped_at_burst);
	tcase_add_test(tc, overage_is_charged);
	tcase_add_test(tc, unknown_usage_keeps_reservation);
	tcase_add_test(tc, partial_above_reservation_is_charged);
	tcase_add_test(tc, partial_below_reservation_keeps_it);
	tcase_add_test(tc, no_refund_flag_keeps_estimate);
	tcase_add_test(tc, ignore_overage_flag_skips_charge);
	suite_add_tcase(s, tc);

	tc = new_tcase("cancel");
	tcase_add_test(tc, cancel_returns_every_charge);
	tcase_add_test(tc, second_release_is_stale);
	tcase_add_test(tc, release_after_cancel_is_stale);
	tcase_add_test(tc, cancel_after_release_is_stale);
	tcase_add_test(tc, cancel_rounds_leave_no_drift);
	tcase_add_test(tc, cancel_rounds_with_ticking_clock);
	suite_add_tcase(s, tc);

	tc = new_tcase("in-flight cap");
	tcase_add_test(tc, inflight_cap_limits_concurrency);
	tcase_add_test(tc, zero_tokens_charge_request_only);
	suite_add_tcase(s, tc);

	tc = new_tcase("waiting");
	tcase_add_test(tc, past_deadline_makes_one_try);
	tcase_add_test(tc, release_wakes_other_process);
	tcase_add_test(tc, clock_step_wakes_waiter);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return test_run(accounting_suite());
}
