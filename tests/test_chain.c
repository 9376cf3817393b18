/* SPDX-License-Identifier: MIT */
/*
 * Chains of buckets (a model bucket and its account bucket): all or nothing
 * across every limit of every bucket, the exact retry time of a whole chain,
 * refunds and cancels on every bucket, and headroom. Also changes to a live
 * bucket's limits, which keep the tokens each limit owes.
 */
#include <pthread.h>

#include "testutil.h"

/* A configuration of one tokens-per-minute limit and an in-flight cap. */
static struct arl_bucket_config tokens_config(const char *name, uint64_t tpm, uint32_t cap)
{
	struct arl_bucket_config c;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = tpm;
	c.limits[0].window_ns = MINUTE_NS;
	c.max_inflight = cap;
	return c;
}

static struct arl_bucket tokens_bucket(struct arl *arl, const char *name, uint64_t tpm,
				       uint32_t headroom_permille)
{
	struct arl_bucket_config c;
	struct arl_bucket b;

	c = tokens_config(name, tpm, 0);
	c.limits[0].headroom_permille = headroom_permille;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);
	return b;
}

static int reserve_chain(struct arl *arl, const struct arl_bucket *chain, uint32_t n,
			 uint64_t tokens, struct arl_reservation *res)
{
	struct arl_request req = {tokens, 0, 0};

	return arl_reserve_chain(arl, chain, n, &req, res);
}

START_TEST(chain_charges_every_bucket)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[2];
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "chain-both");
	arl = test_create(name, 16);
	chain[0] = tokens_bucket(arl, "model", 1000, 0);
	chain[1] = tokens_bucket(arl, "account", 5000, 0);

	ck_assert_int_eq(reserve_chain(arl, chain, 2, 300, &res), 0);
	ck_assert_uint_eq(test_available(arl, chain[0], 0), 700);
	ck_assert_uint_eq(test_available(arl, chain[1], 0), 4700);
	ck_assert_uint_eq(test_stats(arl, chain[0]).inflight, 1);
	ck_assert_uint_eq(test_stats(arl, chain[1]).inflight, 1);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(refused_chain_charges_nothing)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[2];
	struct arl_reservation drain, res;

	test_segment_name(name, sizeof(name), "chain-none");
	arl = test_create(name, 16);
	chain[0] = tokens_bucket(arl, "model", 1000, 0);
	chain[1] = tokens_bucket(arl, "account", 1000, 0);
	/* Another model drains the shared account bucket to 100 tokens. */
	ck_assert_int_eq(test_reserve(arl, chain[1], 900, &drain), 0);

	ck_assert_int_eq(reserve_chain(arl, chain, 2, 300, &res), ARL_EAGAIN);
	ck_assert_uint_eq(test_available(arl, chain[0], 0), 1000);
	ck_assert_uint_eq(test_available(arl, chain[1], 0), 100);
	ck_assert_uint_eq(test_stats(arl, chain[0]).inflight, 0);
	ck_assert_uint_eq(test_stats(arl, chain[1]).inflight, 1);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(chain_retry_time_is_latest_fit)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[2];
	struct arl_reservation a, b, res;
	uint64_t start;

	test_segment_name(name, sizeof(name), "chain-retry");
	arl = test_create(name, 16);
	chain[0] = tokens_bucket(arl, "model", 600, 0);	  /* 1 token per 100 ms */
	chain[1] = tokens_bucket(arl, "account", 6000, 0); /* 1 token per 10 ms */
	start = arl_now(arl);
	ck_assert_int_eq(test_reserve(arl, chain[0], 600, &a), 0);  /* model empty */
	ck_assert_int_eq(test_reserve(arl, chain[1], 6000, &b), 0); /* account empty */

	/* 50 tokens: the model needs 5 s, the account 0.5 s; the chain 5 s. */
	ck_assert_int_eq(reserve_chain(arl, chain, 2, 50, &res), ARL_EAGAIN);
	ck_assert_uint_eq(res.retry_at_ns, start + 5 * NS_PER_S);
	ck_assert_int_eq(arl_test_clock_set(arl, start + 5 * NS_PER_S - 1), 0);
	ck_assert_int_eq(reserve_chain(arl, chain, 2, 50, &res), ARL_EAGAIN);
	ck_assert_int_eq(arl_test_clock_set(arl, start + 5 * NS_PER_S), 0);
	ck_assert_int_eq(reserve_chain(arl, chain, 2, 50, &res), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(four_bucket_chain_release_and_cancel)
{
	char name[64], bucket_name[32];
	struct arl *arl;
	struct arl_bucket chain[4];
	struct arl_reservation res;
	struct arl_usage usage = test_usage(100);
	int i;

	test_segment_name(name, sizeof(name), "chain-four");
	arl = test_create(name, 16);
	for (i = 0; i < 4; i++) {
		snprintf(bucket_name, sizeof(bucket_name), "level%d", i);
		chain[i] = tokens_bucket(arl, bucket_name, 1000 * (uint64_t)(i + 1), 0);
	}

	ck_assert_int_eq(reserve_chain(arl, chain, 4, 400, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	for (i = 0; i < 4; i++) {
		ck_assert_uint_eq(test_available(arl, chain[i], 0), 1000 * (uint64_t)(i + 1) - 100);
		ck_assert_uint_eq(test_stats(arl, chain[i]).refunded_tokens, 300);
		ck_assert_uint_eq(test_stats(arl, chain[i]).inflight, 0);
	}

	ck_assert_int_eq(reserve_chain(arl, chain, 4, 400, &res), 0);
	ck_assert_int_eq(arl_cancel(arl, &res), 0);
	for (i = 0; i < 4; i++) {
		ck_assert_uint_eq(test_available(arl, chain[i], 0), 1000 * (uint64_t)(i + 1) - 100);
		ck_assert_uint_eq(test_stats(arl, chain[i]).canceled, 1);
	}

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(chain_arguments_are_checked)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[5];
	struct arl_reservation res;
	int i;

	test_segment_name(name, sizeof(name), "chain-args");
	arl = test_create(name, 16);
	chain[0] = tokens_bucket(arl, "a", 1000, 0);
	for (i = 1; i < 5; i++)
		chain[i] = chain[0];

	ck_assert_int_eq(reserve_chain(arl, chain, 0, 1, &res), ARL_EINVAL);
	ck_assert_int_eq(reserve_chain(arl, chain, 5, 1, &res), ARL_EINVAL);
	ck_assert_int_eq(reserve_chain(arl, NULL, 1, 1, &res), ARL_EINVAL);
	/* The same bucket twice would charge it twice. */
	ck_assert_int_eq(reserve_chain(arl, chain, 2, 1, &res), ARL_EINVAL);
	ck_assert_uint_eq(test_available(arl, chain[0], 0), 1000);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(headroom_keeps_share_unused)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "headroom");
	arl = test_create(name, 16);
	b = tokens_bucket(arl, "h", 1000, 100); /* 10% headroom: 900 usable */

	ck_assert_uint_eq(test_available(arl, b, 0), 900);
	ck_assert_int_eq(test_reserve(arl, b, 901, &res), ARL_ENEVERFITS);
	ck_assert_int_eq(test_reserve(arl, b, 900, &res), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_EAGAIN);

	/* Refill after two windows stops at the usable part too. */
	test_advance(arl, 2 * MINUTE_NS);
	ck_assert_uint_eq(test_available(arl, b, 0), 900);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(split_usage_settles_tokens_limit)
{
	struct arl_usage usage;
	struct arl_reservation res;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;

	test_segment_name(name, sizeof(name), "split");
	arl = test_create(name, 16);
	b = tokens_bucket(arl, "split", 1000, 0);
	ck_assert_int_eq(test_reserve(arl, b, 500, &res), 0);

	/* Only the input and output parts are known: the tokens limit is
	 * settled with their sum, 120, and 380 come back. */
	memset(&usage, 0, sizeof(usage));
	usage.flags = ARL_USAGE_SPLIT;
	usage.input_tokens = 100;
	usage.output_tokens = 20;
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	ck_assert_uint_eq(test_available(arl, b, 0), 880);
	ck_assert_uint_eq(test_stats(arl, b).refunded_tokens, 380);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(rate_change_keeps_tokens_owed)
{
	struct arl_bucket_config faster = tokens_config("rate", 1200, 0);
	struct arl_reservation res;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;

	test_segment_name(name, sizeof(name), "rate");
	arl = test_create(name, 16);
	b = tokens_bucket(arl, "rate", 600, 0); /* 10 tokens per second */
	ck_assert_int_eq(test_reserve(arl, b, 300, &res), 0);
	ck_assert_uint_eq(test_available(arl, b, 0), 300);

	/* Twice the rate and burst: the 300 tokens owed stay owed, and are now
	 * refilled in 15 s instead of 30 s. */
	ck_assert_int_eq(arl_bucket_set_limits(arl, b, &faster), 0);
	ck_assert_uint_eq(test_stats(arl, b).limits[0].amount, 1200);
	ck_assert_uint_eq(test_available(arl, b, 0), 900);
	test_advance(arl, 15 * NS_PER_S);
	ck_assert_uint_eq(test_available(arl, b, 0), 1200);

	/* A release after the change refunds at the new rate: all 300 back,
	 * capped at the full bucket. */
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);
	ck_assert_uint_eq(test_available(arl, b, 0), 1200);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(limit_change_checks_shape)
{
	struct arl_bucket_config two = tokens_config("shape", 1000, 0);
	struct arl_bucket_config other_unit = tokens_config("shape", 1000, 0);
	struct arl_bucket_config cap = tokens_config("shape", 1000, 2);
	struct arl_reservation r1, r2;
	struct arl *read_only;
	struct arl_attach_options o;
	char name[64];
	struct arl *arl;
	struct arl_bucket b, stale;

	test_segment_name(name, sizeof(name), "shape");
	arl = test_create(name, 16);
	b = tokens_bucket(arl, "shape", 1000, 0);
	two.nlimits = 2;
	two.limits[1] = two.limits[0];
	two.limits[1].unit = ARL_UNIT_REQUESTS;
	other_unit.limits[0].unit = ARL_UNIT_OUTPUT_TOKENS;
	ck_assert_int_eq(arl_bucket_set_limits(arl, b, &two), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_set_limits(arl, b, &other_unit), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_set_limits(arl, b, NULL), ARL_EINVAL);
	stale = b;
	stale.gen++;
	ck_assert_int_eq(arl_bucket_set_limits(arl, stale, &cap), ARL_ESTALE);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_READ_ONLY;
	ck_assert_int_eq(arl_attach(&read_only, &o), 0);
	ck_assert_int_eq(arl_bucket_set_limits(read_only, b, &cap), ARL_EROFS);
	arl_detach(read_only);

	/* A cap set on a live bucket applies to the next reservation. */
	ck_assert_int_eq(test_reserve(arl, b, 1, &r1), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &r2), 0);
	cap.max_inflight = 2;
	ck_assert_int_eq(arl_bucket_set_limits(arl, b, &cap), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &r1), ARL_EAGAIN);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* Threads reserve and release while one thread switches the limits back
 * and forth: under ThreadSanitizer this shows that readers never race the
 * writer, and at the end nothing is left in flight. */
struct change_load {
	struct arl *arl;
	struct arl_bucket b;
	volatile int stop;
	int failures;
};

static void *reserve_loop(void *arg)
{
	struct change_load *load = arg;
	int i;

	for (i = 0; i < 20000; i++) {
		struct arl_reservation res;
		struct arl_usage usage = test_usage(1);
		int rc = test_reserve(load->arl, load->b, 2, &res);

		if (rc == 0 && arl_release(load->arl, &res, &usage) != 0)
			__atomic_fetch_add(&load->failures, 1, __ATOMIC_RELAXED);
		else if (rc != 0 && rc != ARL_EAGAIN)
			__atomic_fetch_add(&load->failures, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

START_TEST(limit_changes_race_reservations)
{
	struct arl_bucket_config slow = tokens_config("race", 100000, 8);
	struct arl_bucket_config fast = tokens_config("race", 200000, 16);
	struct change_load load;
	pthread_t threads[3];
	char name[64];
	int i, round;

	test_segment_name(name, sizeof(name), "race");
	memset(&load, 0, sizeof(load));
	load.arl = test_create(name, 64);
	load.b = tokens_bucket(load.arl, "race", 100000, 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&threads[i], NULL, reserve_loop, &load), 0);
	for (round = 0; round < 2000; round++) {
		ck_assert_int_eq(arl_bucket_set_limits(load.arl, load.b, round % 2 ? &fast : &slow), 0);
		test_advance(load.arl, 1000000ull);
	}
	for (i = 0; i < 3; i++)
		pthread_join(threads[i], NULL);
	ck_assert_int_eq(load.failures, 0);
	ck_assert_uint_eq(test_stats(load.arl, load.b).inflight, 0);
	arl_detach(load.arl);
	shm_unlink(name);
}
END_TEST

/* A bucket created with an account: arl_bucket_chain() follows the links,
 * the listing names the account and the profile, and the links are checked
 * at creation. */
START_TEST(account_links_form_the_chain)
{
	char seg[64];
	struct arl *arl;
	struct arl_bucket org, chain[ARL_MAX_CHAIN], model, stale;
	struct arl_bucket_config c;
	struct arl_bucket_stats s;
	struct arl_reservation res;
	uint32_t n = 0;

	test_segment_name(seg, sizeof(seg), "chain-account");
	arl = test_create(seg, 64);
	org = tokens_bucket(arl, "org", 100000, 0);
	c = tokens_config("gpt", 1000, 0);
	c.profile = "openai";
	c.account = "org";
	ck_assert_int_eq(arl_bucket_create(arl, &c, &model), 0);

	ck_assert_int_eq(arl_bucket_chain(arl, model, chain, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(chain[0].index, model.index);
	ck_assert_uint_eq(chain[1].index, org.index);
	ck_assert_int_eq(arl_bucket_chain(arl, org, chain, &n), 0);
	ck_assert_uint_eq(n, 1);
	s = test_stats(arl, model);
	ck_assert_str_eq(s.profile, "openai");
	ck_assert_str_eq(s.account, "org");

	/* The chain charges both buckets. */
	ck_assert_int_eq(arl_bucket_chain(arl, model, chain, &n), 0);
	ck_assert_int_eq(reserve_chain(arl, chain, n, 600, &res), 0);
	ck_assert_uint_eq(test_available(arl, org, 0), 100000 - 600);

	/* Links are checked: a missing account, the bucket itself, a long
	 * profile name. */
	c.name = "claude";
	c.account = "nobody";
	ck_assert_int_eq(arl_bucket_create(arl, &c, &stale), ARL_ENOENT);
	c.account = "claude";
	ck_assert_int_eq(arl_bucket_create(arl, &c, &stale), ARL_EINVAL);
	c.account = NULL;
	c.profile = "a-profile-name-too-long";
	ck_assert_int_eq(arl_bucket_create(arl, &c, &stale), ARL_ENAMETOOLONG);

	/* A reserve on the bucket alone follows the account too. */
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);
	ck_assert_int_eq(test_reserve(arl, model, 100, &res), 0);
	ck_assert_uint_eq(test_available(arl, org, 0), 100000 - 600 - 100);
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);

	/* Removing the account makes the chain stale, not shorter: a chain
	 * that silently lost its account would stop charging it. */
	ck_assert_int_eq(arl_bucket_remove(arl, org), 0);
	ck_assert_int_eq(arl_bucket_chain(arl, model, chain, &n), ARL_ESTALE);
	ck_assert_int_eq(test_reserve(arl, model, 1, &res), ARL_ESTALE);
	ck_assert_str_eq(test_stats(arl, model).account, "");

	/* set_limits relinks it to a new account, or to none. */
	org = tokens_bucket(arl, "org2", 5000, 0);
	c.name = "gpt";
	c.profile = NULL;
	c.account = "org2";
	ck_assert_int_eq(arl_bucket_set_limits(arl, model, &c), 0);
	ck_assert_int_eq(arl_bucket_chain(arl, model, chain, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(test_stats(arl, model).account, "org2");
	ck_assert_str_eq(test_stats(arl, model).profile, "openai");
	c.account = "nobody";
	ck_assert_int_eq(arl_bucket_set_limits(arl, model, &c), ARL_ENOENT);

	/* A link back to the bucket itself, through its account, is a cycle. */
	c = tokens_config("org2", 5000, 0);
	c.account = "gpt";
	ck_assert_int_eq(arl_bucket_set_limits(arl, org, &c), ARL_EINVAL);

	c.name = "gpt";
	c.limits[0].amount = 1000;
	c.account = "";
	ck_assert_int_eq(arl_bucket_set_limits(arl, model, &c), 0);
	ck_assert_int_eq(arl_bucket_chain(arl, model, chain, &n), 0);
	ck_assert_uint_eq(n, 1);
	arl_detach(arl);
	shm_unlink(seg);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("chain");
	TCase *tc = tcase_create("chain");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, chain_charges_every_bucket);
	tcase_add_test(tc, refused_chain_charges_nothing);
	tcase_add_test(tc, chain_retry_time_is_latest_fit);
	tcase_add_test(tc, four_bucket_chain_release_and_cancel);
	tcase_add_test(tc, chain_arguments_are_checked);
	tcase_add_test(tc, headroom_keeps_share_unused);
	tcase_add_test(tc, split_usage_settles_tokens_limit);
	tcase_add_test(tc, rate_change_keeps_tokens_owed);
	tcase_add_test(tc, limit_change_checks_shape);
	tcase_add_test(tc, limit_changes_race_reservations);
	tcase_add_test(tc, account_links_form_the_chain);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
