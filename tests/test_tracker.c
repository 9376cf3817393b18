/* SPDX-License-Identifier: MIT */
/*
 * The stream tracker bound to a real reservation: a stream that reaches its
 * end with usage releases with the refund, a cut stream or one without usage
 * releases with the fallback, events count as chunks and activity, and a
 * tracker destroyed without a release gives the fallback at once.
 */
#include <arl/stream.h>

#include "testutil.h"

/* An OpenAI Chat Completions stream with include_usage: 10 + 20 tokens. */
static const char complete_stream[] =
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],"
	"\"usage\":null}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}"
	"\n\n"
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,"
	"\"total_tokens\":30}}\n\n"
	"data: [DONE]\n\n";

/* The same stream cut before its usage chunk. */
static const char cut_stream[] =
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],"
	"\"usage\":null}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}"
	"\n\n";

/* vLLM-style cumulative usage on content chunks, cut before the end: the
 * latest partial total is 900. */
static const char partial_stream[] =
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}],"
	"\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":800,\"total_tokens\":900}}\n\n";

struct fixture {
	char name[64];
	struct arl *arl;
	struct arl_bucket bucket;
	struct arl_reservation res;
};

static void setup(struct fixture *f, const char *tag, uint64_t reserve_tokens)
{
	test_segment_name(f->name, sizeof(f->name), tag);
	f->arl = test_create(f->name, 16);
	f->bucket = test_bucket(f->arl, "stream", 100, 10000, 0, 0);
	ck_assert_int_eq(test_reserve(f->arl, f->bucket, reserve_tokens, &f->res), 0);
}

static void teardown(struct fixture *f)
{
	arl_detach(f->arl);
	shm_unlink(f->name);
}

static void feed_bytewise(struct arl_stream_tracker *t, const char *text)
{
	size_t i;

	for (i = 0; text[i]; i++)
		ck_assert_int_ge(arl_stream_tracker_feed(t, text + i, 1), 0);
}

START_TEST(complete_stream_refunds_unused)
{
	struct arl_stream_tracker t;
	struct arl_bucket_stats s;
	struct fixture f;

	setup(&f, "trk-complete", 500);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	feed_bytewise(&t, complete_stream);
	ck_assert_int_eq(arl_stream_tracker_release(&t), 0);
	arl_stream_tracker_destroy(&t);

	s = test_stats(f.arl, f.bucket);
	ck_assert_uint_eq(s.released, 1);
	ck_assert_uint_eq(s.refunded_tokens, 470);
	ck_assert_uint_eq(s.fallback_releases, 0);
	ck_assert_uint_eq(s.limits[1].available, 10000 - 30);
	teardown(&f);
}
END_TEST

START_TEST(cut_stream_releases_with_fallback)
{
	struct arl_stream_tracker t;
	struct arl_bucket_stats s;
	struct fixture f;

	setup(&f, "trk-cut", 500);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	feed_bytewise(&t, cut_stream);
	ck_assert_int_eq(arl_stream_tracker_release(&t), 0);
	arl_stream_tracker_destroy(&t);

	s = test_stats(f.arl, f.bucket);
	ck_assert_uint_eq(s.fallback_releases, 1);
	ck_assert_uint_eq(s.fallback_tokens, 500);
	ck_assert_uint_eq(s.refunded_tokens, 0);
	ck_assert_uint_eq(s.limits[1].available, 10000 - 500);
	teardown(&f);
}
END_TEST

START_TEST(partial_usage_above_reservation_charged)
{
	struct arl_stream_tracker t;
	struct fixture f;

	setup(&f, "trk-partial", 500);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	feed_bytewise(&t, partial_stream);
	ck_assert_int_eq(arl_stream_tracker_release(&t), 0);
	arl_stream_tracker_destroy(&t);

	/* 900 tokens were seen before the cut: the fallback keeps the 500
	 * reserved and charges the 400 above them as overage. */
	ck_assert_uint_eq(test_available(f.arl, f.bucket, 1), 10000 - 900);
	ck_assert_uint_eq(test_stats(f.arl, f.bucket).fallback_releases, 1);
	ck_assert_uint_eq(test_stats(f.arl, f.bucket).fallback_tokens, 500);
	ck_assert_uint_eq(test_stats(f.arl, f.bucket).overage_tokens, 400);
	teardown(&f);
}
END_TEST

START_TEST(events_count_as_chunks_and_activity)
{
	struct arl_stream_tracker t;
	struct arl_shm_reservation *slot;
	struct fixture f;
	uint64_t created;

	setup(&f, "trk-touch", 500);
	slot = &arl_impl_reservations(f.arl)[f.res.slot];
	created = slot->last_activity_ns;
	test_advance(f.arl, 5 * NS_PER_S);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	ck_assert_int_eq(arl_stream_tracker_feed(&t, complete_stream, sizeof(complete_stream) - 1),
			 4);
	ck_assert_uint_eq(slot->chunks, 4);
	ck_assert_uint_eq(slot->last_activity_ns, created + 5 * NS_PER_S);
	arl_stream_tracker_release(&t);
	arl_stream_tracker_destroy(&t);
	teardown(&f);
}
END_TEST

START_TEST(abandoned_tracker_releases_at_once)
{
	struct arl_stream_tracker t;
	struct arl_bucket_stats s;
	struct fixture f;

	setup(&f, "trk-abandon", 500);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	feed_bytewise(&t, cut_stream);
	arl_stream_tracker_destroy(&t); /* the caller closed the stream early */

	s = test_stats(f.arl, f.bucket);
	ck_assert_uint_eq(s.inflight, 0);
	ck_assert_uint_eq(s.fallback_releases, 1);
	ck_assert_int_eq(arl_release(f.arl, &f.res, NULL), ARL_ESTALE);
	teardown(&f);
}
END_TEST

START_TEST(release_after_reclaim_reports_stale)
{
	struct arl_stream_tracker t;
	struct fixture f;

	setup(&f, "trk-stale", 500);
	ck_assert_int_eq(arl_stream_tracker_init(&t, f.arl, &f.res, ARL_STREAM_SSE), 0);
	/* Someone else settles the reservation first (the sweeper, an admin). */
	ck_assert_int_eq(arl_release(f.arl, &f.res, NULL), 0);
	feed_bytewise(&t, complete_stream);
	ck_assert_int_eq(arl_stream_tracker_release(&t), ARL_ESTALE);
	arl_stream_tracker_destroy(&t);
	ck_assert_uint_eq(test_stats(f.arl, f.bucket).refunded_tokens, 0);
	teardown(&f);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("tracker");
	TCase *tc = tcase_create("tracker");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, complete_stream_refunds_unused);
	tcase_add_test(tc, cut_stream_releases_with_fallback);
	tcase_add_test(tc, partial_usage_above_reservation_charged);
	tcase_add_test(tc, events_count_as_chunks_and_activity);
	tcase_add_test(tc, abandoned_tracker_releases_at_once);
	tcase_add_test(tc, release_after_reclaim_reports_stale);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
