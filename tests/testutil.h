/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - helpers shared by the test programs: a private segment per
 * test, bucket configurations, and the test clock.
 */
#ifndef ARL_TESTUTIL_H
#define ARL_TESTUTIL_H

#include <check.h>
#include <sys/wait.h>

#include <arl.h>

#define NS_PER_S 1000000000ull
#define MINUTE_NS (60ull * NS_PER_S)

/* Writes a segment name unique to this process and tag, so that tests run
 * in parallel never share one. */
static inline void test_segment_name(char *buf, size_t size, const char *tag)
{
	snprintf(buf, size, "/arl-test-%s-%d", tag, (int)getpid());
}

/* Creates a fresh segment with a test clock; unlinks any leftover first. */
static inline struct arl *test_create(const char *name, uint32_t reservations)
{
	struct arl_attach_options o;
	char error[512] = "";
	struct arl *arl = NULL;
	int rc;

	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	o.reservation_capacity = reservations;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "create %s: %s: %s", name, arl_strerror(rc), error);
	return arl;
}

static inline struct arl *test_attach(const char *name)
{
	struct arl_attach_options o;
	struct arl *arl = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.name = name;
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "attach %s: %s", name, arl_strerror(rc));
	return arl;
}

/* A bucket with a requests-per-minute limit, a tokens-per-minute limit and
 * an in-flight cap (0 for none). */
static inline struct arl_bucket test_bucket(struct arl *arl, const char *name, uint64_t rpm,
					    uint64_t tpm, uint32_t max_inflight, uint32_t flags)
{
	struct arl_bucket_config c;
	struct arl_bucket b;
	int rc;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.nlimits = 2;
	c.limits[0].unit = ARL_UNIT_REQUESTS;
	c.limits[0].amount = rpm;
	c.limits[0].window_ns = MINUTE_NS;
	c.limits[1].unit = ARL_UNIT_TOKENS;
	c.limits[1].amount = tpm;
	c.limits[1].window_ns = MINUTE_NS;
	c.max_inflight = max_inflight;
	c.flags = flags;
	rc = arl_bucket_create(arl, &c, &b);
	ck_assert_msg(rc == 0, "bucket %s: %s", name, arl_strerror(rc));
	return b;
}

static inline void test_advance(struct arl *arl, uint64_t ns)
{
	ck_assert_int_eq(arl_test_clock_set(arl, arl_now(arl) + ns), 0);
}

static inline struct arl_bucket_stats test_stats(struct arl *arl, struct arl_bucket b)
{
	struct arl_bucket_stats s;

	ck_assert_int_eq(arl_bucket_stats(arl, b, &s), 0);
	return s;
}

/* Available units of limit i of a bucket. */
static inline uint64_t test_available(struct arl *arl, struct arl_bucket b, int i)
{
	return test_stats(arl, b).limits[i].available;
}

static inline int test_reserve(struct arl *arl, struct arl_bucket b, uint64_t tokens,
			       struct arl_reservation *res)
{
	struct arl_request req = {tokens, 0, 0};

	return arl_reserve(arl, b, &req, res);
}

static inline struct arl_usage test_usage(uint64_t total)
{
	struct arl_usage u;

	memset(&u, 0, sizeof(u));
	u.flags = ARL_USAGE_TOTAL;
	u.total_tokens = total;
	return u;
}

/* Runs a suite, forking each test, and returns the process exit status. */
static inline int test_run(Suite *suite)
{
	SRunner *runner = srunner_create(suite);
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? 0 : 1;
}

#endif /* ARL_TESTUTIL_H */
