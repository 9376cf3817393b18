/* SPDX-License-Identifier: MIT */
/*
 * A client built only from the installed headers, as C11 and as C++11: it
 * creates a private segment with a test clock, reserves 800 tokens, streams
 * a response that reports 412, and checks that the tracker's release
 * refunded the difference. Exits 0 on success, 1 with a message otherwise.
 *
 * C needs _GNU_SOURCE defined before the first system header (arl.h uses the
 * OFD lock commands of <fcntl.h>); the build passes -D_GNU_SOURCE.
 */
#include <arl.h>
#include <arl/stream.h>

#include <stdio.h>

/* An OpenAI Chat Completions stream whose final chunk reports 300 prompt
 * and 112 completion tokens. */
static const char response[] =
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],"
	"\"usage\":null}\n\n"
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}"
	"\n\n"
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":112,"
	"\"total_tokens\":412}}\n\n"
	"data: [DONE]\n\n";

static int failures;

static void expect_eq(const char *what, uint64_t expected, uint64_t actual)
{
	if (expected == actual)
		return;
	fprintf(stderr, "consumer: %s is %llu, expected %llu\n", what,
		(unsigned long long)actual, (unsigned long long)expected);
	failures++;
}

static int fail(const char *step, int rc, const char *detail)
{
	fprintf(stderr, "consumer: %s failed: %s%s%s\n", step, arl_strerror(rc),
		detail[0] ? ": " : "", detail);
	return 1;
}

/* Reserves, streams the response through a tracker and checks the stats. */
static int run(struct arl *arl)
{
	struct arl_bucket_config config;
	struct arl_bucket bucket = {0, 0};
	struct arl_request request = {300, 500, 1};
	struct arl_reservation reservation;
	struct arl_stream_tracker tracker;
	struct arl_bucket_stats stats;
	int rc;

	memset(&config, 0, sizeof(config));
	config.name = "consumer";
	config.nlimits = 2;
	config.limits[0].unit = ARL_UNIT_REQUESTS;
	config.limits[0].amount = 10;
	config.limits[0].window_ns = 60000000000ull;
	config.limits[1].unit = ARL_UNIT_TOKENS;
	config.limits[1].amount = 1000;
	config.limits[1].window_ns = 60000000000ull;
	config.max_inflight = 2;
	rc = arl_bucket_create(arl, &config, &bucket);
	if (rc != 0)
		return fail("arl_bucket_create", rc, "");
	rc = arl_reserve(arl, bucket, &request, &reservation);
	if (rc != 0)
		return fail("arl_reserve", rc, "");

	rc = arl_stream_tracker_init(&tracker, arl, &reservation, ARL_STREAM_SSE);
	if (rc != 0)
		return fail("arl_stream_tracker_init", rc, "");
	rc = arl_stream_tracker_feed(&tracker, response, sizeof(response) - 1);
	if (rc < 0) {
		arl_stream_tracker_destroy(&tracker);
		return fail("arl_stream_tracker_feed", rc, "");
	}
	rc = arl_stream_tracker_release(&tracker);
	arl_stream_tracker_destroy(&tracker);
	if (rc != 0)
		return fail("arl_stream_tracker_release", rc, "");

	rc = arl_bucket_stats(arl, bucket, &stats);
	if (rc != 0)
		return fail("arl_bucket_stats", rc, "");
	expect_eq("granted", 1, stats.granted);
	expect_eq("released", 1, stats.released);
	expect_eq("refunded_tokens", 800 - 412, stats.refunded_tokens);
	expect_eq("inflight", 0, stats.inflight);
	/* The test clock has not moved, so nothing refilled: 1000 - 412 left. */
	expect_eq("available tokens", 1000 - 412, stats.limits[1].available);
	expect_eq("available requests", 10 - 1, stats.limits[0].available);
	return failures == 0 ? 0 : 1;
}

int main(void)
{
	struct arl_attach_options options;
	struct arl *arl = NULL;
	char name[64], error[512] = "";
	int rc, status;

	snprintf(name, sizeof(name), "/arl-consumer-%d", (int)getpid());
	memset(&options, 0, sizeof(options));
	options.name = name;
	options.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	options.reservation_capacity = 16;
	options.error = error;
	options.error_size = sizeof(error);
	rc = arl_attach(&arl, &options);
	if (rc != 0)
		return fail("arl_attach", rc, error);

	status = run(arl);
	arl_detach(arl);
	shm_unlink(name);
	if (status == 0)
		printf("consumer: reserved 800 tokens, used 412, refunded 388\n");
	return status;
}
