/* SPDX-License-Identifier: MIT */
/*
 * Tests that each limit of a bucket counts its own unit and refills at its
 * own rate: one bucket with a requests, a tokens, an input-tokens and an
 * output-tokens limit, each with another window, under the test clock.
 *
 * Every window divided by its amount is a whole number of nanoseconds. So
 * charges and refunds round alike, and each expected value is exact:
 *   requests       5 per second:   one request refills in 200 ms
 *   tokens         600 per minute: one token refills in 100 ms
 *   input tokens   3600 per hour:  one token refills in 1 s
 *   output tokens  86400 per day:  one token refills in 1 s
 */
#include <string.h>

#include "testutil.h"

#define TEST_TIMEOUT_SECONDS 60

#define HOUR_NS (3600ull * NS_PER_S)
#define DAY_NS (86400ull * NS_PER_S)

/* Limit indexes of four_unit_bucket(). */
enum { REQUESTS, TOKENS, INPUT, OUTPUT, LIMITS };

static const char *const limit_names[LIMITS] = {
    "requests per second",
    "tokens per minute",
    "input tokens per hour",
    "output tokens per day",
};

/* The burst of each limit of four_unit_bucket(): its amount. */
static const uint64_t full[LIMITS] = {5, 600, 3600, 86400};

/* The estimate every test reserves: 1 request and 50 tokens. */
#define INPUT_ESTIMATE 30
#define OUTPUT_ESTIMATE 20

static struct arl_bucket four_unit_bucket(struct arl *arl)
{
	static const struct {
		uint32_t unit;
		uint64_t window_ns;
	} shapes[LIMITS] = {
	    {ARL_UNIT_REQUESTS, NS_PER_S},
	    {ARL_UNIT_TOKENS, MINUTE_NS},
	    {ARL_UNIT_INPUT_TOKENS, HOUR_NS},
	    {ARL_UNIT_OUTPUT_TOKENS, DAY_NS},
	};
	struct arl_bucket_config c;
	struct arl_bucket b;
	int i, rc;

	memset(&c, 0, sizeof(c));
	c.name = "units";
	c.nlimits = LIMITS;
	for (i = 0; i < LIMITS; i++) {
		c.limits[i].unit = shapes[i].unit;
		c.limits[i].amount = full[i];
		c.limits[i].window_ns = shapes[i].window_ns;
	}
	rc = arl_bucket_create(arl, &c, &b);
	ck_assert_msg(rc == 0, "bucket units: %s", arl_strerror(rc));
	return b;
}

/* Asserts the available units of every limit of four_unit_bucket(). `when`
 * names the step in the failure message. */
static void assert_available(struct arl *arl, struct arl_bucket b, const uint64_t expected[LIMITS],
			     const char *when)
{
	struct arl_bucket_stats s = test_stats(arl, b);
	int i;

	ck_assert_uint_eq(s.nlimits, LIMITS);
	for (i = 0; i < LIMITS; i++)
		ck_assert_msg(s.limits[i].available == expected[i],
			      "%s: %s has %llu available, expected %llu", when, limit_names[i],
			      (unsigned long long)s.limits[i].available,
			      (unsigned long long)expected[i]);
}

static void reserve_estimate(struct arl *arl, struct arl_bucket b, struct arl_reservation *res)
{
	struct arl_request req = {INPUT_ESTIMATE, OUTPUT_ESTIMATE, 0};
	int rc;

	rc = arl_reserve(arl, b, &req, res);
	ck_assert_msg(rc == 0, "reserve (input 30, output 20): %s", arl_strerror(rc));
}

static struct arl_usage usage_of(uint32_t flags, uint64_t input, uint64_t output, uint64_t total)
{
	struct arl_usage u;

	memset(&u, 0, sizeof(u));
	u.flags = flags;
	u.input_tokens = input;
	u.output_tokens = output;
	u.total_tokens = total;
	return u;
}

START_TEST(reservation_charges_each_unit)
{
	/* One request, input + output = 50 tokens, 30 input, 20 output. */
	const uint64_t after_reserve[LIMITS] = {5 - 1, 600 - 50, 3600 - 30, 86400 - 20};
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitcharge");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	assert_available(arl, b, full, "new bucket");

	reserve_estimate(arl, b, &res);
	assert_available(arl, b, after_reserve, "after reserving input 30, output 20");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(total_and_split_usage_refund_each_limit)
{
	/* The request stays charged. Tokens settle with the total (50 - 15 =
	 * 35 back), input with 10 (20 back), output with 5 (15 back). */
	const uint64_t after_release[LIMITS] = {4, 600 - 15, 3600 - 10, 86400 - 5};
	/* One second later: requests refill 5, tokens 10, input 1, output 1. */
	const uint64_t one_second_later[LIMITS] = {5, 600 - 15 + 10, 3600 - 10 + 1, 86400 - 5 + 1};
	struct arl_usage usage = usage_of(ARL_USAGE_TOTAL | ARL_USAGE_SPLIT, 10, 5, 15);
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitrefund");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	assert_available(arl, b, after_release, "after releasing with total and split usage");
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.refunded_tokens, 35);
	ck_assert_uint_eq(s.overage_tokens, 0);
	ck_assert_uint_eq(s.released, 1);

	test_advance(arl, NS_PER_S);
	assert_available(arl, b, one_second_later, "1 s after the release");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(limits_refill_at_own_rates)
{
	const uint64_t after_1s[LIMITS] = {5, 550 + 10, 3570 + 1, 86380 + 1};
	/* The tokens limit owed 50 tokens, 5 s of refill: it is full at 5 s,
	 * while the input and output limits still owe 25 and 15. */
	const uint64_t after_5s[LIMITS] = {5, 600, 3570 + 5, 86380 + 5};
	/* A refill never lifts a limit above its burst. */
	const uint64_t after_31s[LIMITS] = {5, 600, 3600, 86400};
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitrefill");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	test_advance(arl, NS_PER_S);
	assert_available(arl, b, after_1s, "1 s after reserving");
	test_advance(arl, 4 * NS_PER_S);
	assert_available(arl, b, after_5s, "5 s after reserving");
	test_advance(arl, 26 * NS_PER_S);
	assert_available(arl, b, after_31s, "31 s after reserving");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(total_usage_keeps_split_estimates)
{
	/* Only the tokens limit is settled: input and output keep 30 and 20. */
	const uint64_t after_release[LIMITS] = {4, 600 - 15, 3600 - 30, 86400 - 20};
	struct arl_usage usage = usage_of(ARL_USAGE_TOTAL, 0, 0, 15);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unittotal");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	assert_available(arl, b, after_release, "after releasing with the total only");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(split_usage_settles_every_limit)
{
	/* Without a total the tokens limit is settled with input + output. */
	const uint64_t after_release[LIMITS] = {4, 600 - 15, 3600 - 10, 86400 - 5};
	struct arl_usage usage = usage_of(ARL_USAGE_SPLIT, 10, 5, 0);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitsplit");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	assert_available(arl, b, after_release, "after releasing with the split only");
	ck_assert_uint_eq(test_stats(arl, b).refunded_tokens, 35);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(split_overage_charges_each_unit)
{
	/* Input 40 of 30 and output 25 of 20: each limit is charged its own
	 * excess, and the tokens limit the excess of the sum (65 of 50). */
	const uint64_t after_release[LIMITS] = {4, 600 - 65, 3600 - 40, 86400 - 25};
	struct arl_usage usage = usage_of(ARL_USAGE_SPLIT, 40, 25, 0);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitoverage");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	assert_available(arl, b, after_release, "after releasing above the estimate");
	ck_assert_uint_eq(test_stats(arl, b).overage_tokens, 15);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(cancel_returns_each_unit)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "unitcancel");
	arl = test_create(name, 0);
	b = four_unit_bucket(arl);
	reserve_estimate(arl, b, &res);

	ck_assert_int_eq(arl_cancel(arl, &res), 0);
	assert_available(arl, b, full, "after the cancel");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(input_above_input_burst_never_fits)
{
	/* A tokens limit of 1000 per minute beside an input limit of 100 and
	 * an output limit of 200 per minute. */
	static const uint32_t units[3] = {ARL_UNIT_TOKENS, ARL_UNIT_INPUT_TOKENS,
					  ARL_UNIT_OUTPUT_TOKENS};
	static const uint64_t amounts[3] = {1000, 100, 200};
	struct arl_request too_much_input = {101, 0, 0};
	struct arl_request too_much_output = {0, 201, 0};
	struct arl_request at_both_bursts = {100, 200, 0};
	struct arl_bucket_config c;
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;
	int i;

	test_segment_name(name, sizeof(name), "unitneverfits");
	arl = test_create(name, 0);
	memset(&c, 0, sizeof(c));
	c.name = "split-limits";
	c.nlimits = 3;
	for (i = 0; i < 3; i++) {
		c.limits[i].unit = units[i];
		c.limits[i].amount = amounts[i];
		c.limits[i].window_ns = MINUTE_NS;
	}
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);

	/* 101 tokens fit the tokens limit, but no wait makes 101 input
	 * tokens fit the input limit. */
	ck_assert_int_eq(arl_reserve(arl, b, &too_much_input, &res), ARL_ENEVERFITS);
	ck_assert_uint_eq(res.retry_at_ns, 0);
	ck_assert_int_eq(arl_reserve(arl, b, &too_much_output, &res), ARL_ENEVERFITS);

	s = test_stats(arl, b);
	for (i = 0; i < 3; i++)
		ck_assert_msg(s.limits[i].available == amounts[i],
			      "limit %d has %llu available after two rejections, expected %llu", i,
			      (unsigned long long)s.limits[i].available,
			      (unsigned long long)amounts[i]);
	ck_assert_uint_eq(s.rejected, 2);
	ck_assert_uint_eq(s.granted, 0);

	/* Exactly each burst fits. */
	ck_assert_int_eq(arl_reserve(arl, b, &at_both_bursts, &res), 0);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[0].available, 1000 - 300);
	ck_assert_uint_eq(s.limits[1].available, 0);
	ck_assert_uint_eq(s.limits[2].available, 0);

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

static Suite *units_suite(void)
{
	Suite *s = suite_create("units");
	TCase *tc;

	tc = new_tcase("charges and refunds");
	tcase_add_test(tc, reservation_charges_each_unit);
	tcase_add_test(tc, total_and_split_usage_refund_each_limit);
	tcase_add_test(tc, limits_refill_at_own_rates);
	tcase_add_test(tc, total_usage_keeps_split_estimates);
	tcase_add_test(tc, split_usage_settles_every_limit);
	tcase_add_test(tc, split_overage_charges_each_unit);
	tcase_add_test(tc, cancel_returns_each_unit);
	suite_add_tcase(s, tc);

	tc = new_tcase("bursts");
	tcase_add_test(tc, input_above_input_burst_never_fits);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return test_run(units_suite());
}
