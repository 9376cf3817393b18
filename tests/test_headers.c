/* SPDX-License-Identifier: MIT */
/*
 * Tests the response-head parser (arl/headers.h): every provider profile,
 * durations, anomalous values, Retry-After, absolute resets against the
 * Date header, and 429 bodies.
 *
 * "test_headers locale" runs the same suite under the de_DE.UTF-8 locale,
 * whose decimal separator is a comma, and exits with 77 (skipped) when that
 * locale is not installed.
 */
#include <check.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arl/headers.h>

#define TEST_TIMEOUT_SECONDS 30
#define EXIT_SKIPPED 77

/* 2024-03-26T20:00:00Z in milliseconds since the Unix epoch. */
#define T_2024_03_26_20_00 1711483200000ll

enum { REQ = ARL_HEADERS_REQUESTS, TOK = ARL_HEADERS_TOKENS };

static struct arl_headers_result parse_at(enum arl_provider provider, const char *text,
					  int64_t now_ms)
{
	struct arl_headers_result r;

	ck_assert_int_eq(arl_headers_parse(text, strlen(text), provider, now_ms, &r), 0);
	return r;
}

static struct arl_headers_result parse(enum arl_provider provider, const char *text)
{
	return parse_at(provider, text, T_2024_03_26_20_00);
}

static void assert_limit(const struct arl_headers_limit *l, const char *label, uint64_t limit,
			 uint64_t remaining, uint64_t reset_ms, uint64_t window_ms)
{
	ck_assert_msg(l->has_limit, "%s: limit unknown, expected %llu", label,
		      (unsigned long long)limit);
	ck_assert_msg(l->limit == limit, "%s: limit %llu, expected %llu", label,
		      (unsigned long long)l->limit, (unsigned long long)limit);
	ck_assert_msg(l->has_remaining, "%s: remaining unknown", label);
	ck_assert_msg(l->remaining == remaining, "%s: remaining %llu, expected %llu", label,
		      (unsigned long long)l->remaining, (unsigned long long)remaining);
	ck_assert_msg(l->has_reset, "%s: reset unknown", label);
	ck_assert_msg(l->reset_ms == reset_ms, "%s: reset %llu ms, expected %llu", label,
		      (unsigned long long)l->reset_ms, (unsigned long long)reset_ms);
	ck_assert_msg(l->has_window, "%s: window unknown", label);
	ck_assert_msg(l->window_ms == window_ms, "%s: window %llu ms, expected %llu", label,
		      (unsigned long long)l->window_ms, (unsigned long long)window_ms);
}

static void assert_unknown(const struct arl_headers_limit *l, const char *label)
{
	ck_assert_msg(!l->has_limit, "%s: limit %llu, expected unknown", label,
		      (unsigned long long)l->limit);
	ck_assert_msg(!l->has_remaining, "%s: remaining %llu, expected unknown", label,
		      (unsigned long long)l->remaining);
	ck_assert_msg(!l->has_reset, "%s: reset %llu, expected unknown", label,
		      (unsigned long long)l->reset_ms);
	ck_assert_msg(!l->has_window, "%s: window %llu, expected unknown", label,
		      (unsigned long long)l->window_ms);
}

static void assert_retry(const struct arl_headers_result *r, uint64_t ms)
{
	ck_assert_msg(r->has_retry_after, "retry-after unknown, expected %llu ms",
		      (unsigned long long)ms);
	ck_assert_msg(r->retry_after_ms == ms, "retry-after %llu ms, expected %llu",
		      (unsigned long long)r->retry_after_ms, (unsigned long long)ms);
}

START_TEST(openai_sample_reads_both_families)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "HTTP/1.1 200 OK\r\n"
					    "x-ratelimit-limit-requests: 60\r\n"
					    "x-ratelimit-limit-tokens: 150000\r\n"
					    "x-ratelimit-remaining-requests: 59\r\n"
					    "x-ratelimit-remaining-tokens: 149984\r\n"
					    "x-ratelimit-reset-requests: 1s\r\n"
					    "x-ratelimit-reset-tokens: 6m0s\r\n"
					    "\r\n");

	ck_assert_int_eq(r.status, 200);
	ck_assert(!r.has_retry_after);
	ck_assert(!r.never_fits);
	assert_limit(&r.limits[REQ], "requests", 60, 59, 1000, ARL_HEADERS_MINUTE_MS);
	assert_limit(&r.limits[TOK], "tokens", 150000, 149984, 360000, ARL_HEADERS_MINUTE_MS);
	assert_unknown(&r.limits[ARL_HEADERS_INPUT_TOKENS], "input tokens");
	assert_unknown(&r.limits[ARL_HEADERS_OUTPUT_TOKENS], "output tokens");
}
END_TEST

static const char *const usage_based_orders[] = {
    /* The _usage_based headers after the base ones. */
    "x-ratelimit-limit-requests: 5000\n"
    "x-ratelimit-limit-tokens: 160000\n"
    "x-ratelimit-remaining-requests: 4999\n"
    "x-ratelimit-remaining-tokens: 159976\n"
    "x-ratelimit-reset-requests: 12ms\n"
    "x-ratelimit-reset-tokens: 9ms\n"
    "x-ratelimit-limit-tokens_usage_based: 7\n"
    "x-ratelimit-remaining-tokens_usage_based: 3\n"
    "x-ratelimit-reset-tokens_usage_based: 99s\n",
    /* Before them. */
    "x-ratelimit-limit-tokens_usage_based: 7\n"
    "x-ratelimit-remaining-tokens_usage_based: 3\n"
    "x-ratelimit-reset-tokens_usage_based: 99s\n"
    "x-ratelimit-limit-requests: 5000\n"
    "x-ratelimit-limit-tokens: 160000\n"
    "x-ratelimit-remaining-requests: 4999\n"
    "x-ratelimit-remaining-tokens: 159976\n"
    "x-ratelimit-reset-requests: 12ms\n"
    "x-ratelimit-reset-tokens: 9ms\n",
    /* Interleaved, with other letter case. */
    "X-RateLimit-Limit-Requests: 5000\n"
    "X-RateLimit-Limit-Tokens_Usage_Based: 7\n"
    "X-RateLimit-Limit-Tokens: 160000\n"
    "X-RateLimit-Remaining-Tokens_Usage_Based: 3\n"
    "X-RateLimit-Remaining-Requests: 4999\n"
    "X-RateLimit-Remaining-Tokens: 159976\n"
    "X-RateLimit-Reset-Tokens_Usage_Based: 99s\n"
    "X-RateLimit-Reset-Requests: 12ms\n"
    "X-RateLimit-Reset-Tokens: 9ms\n",
};

START_TEST(usage_based_headers_are_other_headers)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI, usage_based_orders[_i]);

	ck_assert_int_eq(r.status, 0);
	assert_limit(&r.limits[REQ], "requests", 5000, 4999, 12, ARL_HEADERS_MINUTE_MS);
	assert_limit(&r.limits[TOK], "tokens", 160000, 159976, 9, ARL_HEADERS_MINUTE_MS);
}
END_TEST

struct duration_case {
	const char *value;
	bool valid;
	uint64_t ms;
};

static const struct duration_case durations[] = {
    {"1s", true, 1000},
    {"0s", true, 0},
    {"12ms", true, 12},
    {"6m0s", true, 360000},
    {"1m30s", true, 90000},
    {"7.66s", true, 7660},
    {"2m59.56s", true, 179560},
    {"1h4m48s", true, 3888000},
    {"4.03s", true, 4030},
    {"0.0001s", true, 1},
    {"1.0000001s", true, 1001},
    {"500us", true, 1},
    {"1500000ns", true, 2},
    {"30", true, 30000},
    {"200h", true, ARL_HEADERS_MAX_WAIT_MS},
    {"", false, 0},
    {"s", false, 0},
    {"1.2.3s", false, 0},
    {"-5s", false, 0},
    {"5x", false, 0},
    {".5s", false, 0},
    {"1 s", false, 0},
    {"NaN", false, 0},
};

START_TEST(duration_reads_decimal_digits)
{
	const struct duration_case *c = &durations[_i];
	char text[256];
	struct arl_headers_result r;
	const struct arl_headers_limit *l;

	snprintf(text, sizeof(text),
		 "x-ratelimit-remaining-tokens: 10\nx-ratelimit-reset-tokens: %s\n", c->value);
	r = parse(ARL_PROVIDER_OPENAI, text);
	l = &r.limits[TOK];
	ck_assert_msg(l->has_reset == c->valid, "'%s': reset %s, expected %s", c->value,
		      l->has_reset ? "known" : "unknown", c->valid ? "known" : "unknown");
	if (c->valid)
		ck_assert_msg(l->reset_ms == c->ms, "'%s': %llu ms, expected %llu", c->value,
			      (unsigned long long)l->reset_ms, (unsigned long long)c->ms);
}
END_TEST

START_TEST(azure_minus_one_is_unknown)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_AZURE,
					    "HTTP/1.1 200 OK\n"
					    "x-ratelimit-limit-tokens: -1\n"
					    "x-ratelimit-remaining-tokens: -1\n"
					    "x-ratelimit-reset-tokens: 0\n"
					    "\n");

	assert_unknown(&r.limits[TOK], "tokens");
	assert_unknown(&r.limits[REQ], "requests");
}
END_TEST

START_TEST(no_rate_limit_headers_change_nothing)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "HTTP/1.1 200 OK\r\n"
					    "content-type: application/json\r\n"
					    "date: Tue, 26 Mar 2024 19:59:59 GMT\r\n"
					    "\r\n"
					    "{\"usage\":{\"total_tokens\":3}}");
	int f;

	ck_assert_int_eq(r.status, 200);
	ck_assert(!r.has_retry_after);
	ck_assert(!r.never_fits);
	for (f = 0; f < ARL_HEADERS_FAMILIES; f++)
		assert_unknown(&r.limits[f], "family");
}
END_TEST

START_TEST(folded_value_keeps_most_conservative)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "x-ratelimit-limit-tokens: 1000\n"
					    "x-ratelimit-remaining-tokens: 991, 98\n"
					    "x-ratelimit-reset-tokens: 1s, 3s,2s\n");

	ck_assert(r.limits[TOK].has_remaining);
	ck_assert_uint_eq(r.limits[TOK].remaining, 98);
	ck_assert(r.limits[TOK].has_reset);
	ck_assert_uint_eq(r.limits[TOK].reset_ms, 3000);
}
END_TEST

START_TEST(repeated_header_keeps_most_conservative)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "x-ratelimit-remaining-tokens: 98\n"
					    "x-ratelimit-remaining-tokens: 991\n"
					    "x-ratelimit-limit-tokens: 2000\n"
					    "x-ratelimit-limit-tokens: 1000\n");

	ck_assert_uint_eq(r.limits[TOK].remaining, 98);
	ck_assert_uint_eq(r.limits[TOK].limit, 1000);
}
END_TEST

static const char *const unknown_remaining[] = {"unknown", "NaN", "", "-1", "1.5", "+5",
						 "99999999999999999999999", " , "};

START_TEST(invalid_remaining_is_unknown)
{
	char text[256];
	struct arl_headers_result r;

	snprintf(text, sizeof(text),
		 "x-ratelimit-limit-tokens: 1000\nx-ratelimit-remaining-tokens: %s\n"
		 "x-ratelimit-reset-tokens: 1s\n",
		 unknown_remaining[_i]);
	r = parse(ARL_PROVIDER_OPENAI, text);
	ck_assert_msg(!r.limits[TOK].has_remaining, "'%s' read as %llu", unknown_remaining[_i],
		      (unsigned long long)r.limits[TOK].remaining);
	ck_assert_msg(!r.limits[TOK].has_reset, "'%s': a reset kept without remaining",
		      unknown_remaining[_i]);
	ck_assert(r.limits[TOK].has_limit);
	ck_assert_uint_eq(r.limits[TOK].limit, 1000);
}
END_TEST

START_TEST(remaining_clamped_to_limit)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "x-ratelimit-remaining-tokens: 200000\n"
					    "x-ratelimit-limit-tokens: 150000\n");

	ck_assert_uint_eq(r.limits[TOK].limit, 150000);
	ck_assert_uint_eq(r.limits[TOK].remaining, 150000);
}
END_TEST

START_TEST(zero_limit_is_unknown)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI,
					    "x-ratelimit-limit-tokens: 0\n"
					    "x-ratelimit-remaining-tokens: 0\n");

	ck_assert(!r.limits[TOK].has_limit);
	ck_assert(r.limits[TOK].has_remaining);
	ck_assert_uint_eq(r.limits[TOK].remaining, 0);
}
END_TEST

struct retry_case {
	const char *headers;
	bool known;
	uint64_t ms;
};

static const struct retry_case retries[] = {
    {"retry-after-ms: 1500\nretry-after: 2\n", true, 1500},
    {"retry-after: 2\nretry-after-ms: 1500\n", true, 1500},
    {"retry-after: 2\n", true, 2000},
    {"retry-after: 1.5\n", true, 1500},
    {"retry-after: Tue, 26 Mar 2024 20:00:30 GMT\ndate: Tue, 26 Mar 2024 20:00:00 GMT\n", true,
     30000},
    {"date: Tue, 26 Mar 2024 20:00:00 GMT\nretry-after: Tue, 26 Mar 2024 19:00:00 GMT\n", true,
     0},
    {"retry-after: -3\n", false, 0},
    {"retry-after: soon\n", false, 0},
    {"retry-after: 86400\n", true, 86400000},
    {"retry-after: 1e400\n", true, ARL_HEADERS_MAX_WAIT_MS},
    {"retry-after: 99999999999999999999999999\n", true, ARL_HEADERS_MAX_WAIT_MS},
    {"retry-after: 0\n", true, 0},
    {"retry-after:\n", false, 0},
    {"retry-after-ms: NaN\nretry-after: 3\n", true, 3000},
    /* The obsolete RFC 850 and asctime forms of an HTTP date. */
    {"date: Tue, 26 Mar 2024 20:00:00 GMT\nretry-after: Tuesday, 26-Mar-24 20:00:10 GMT\n", true,
     10000},
    {"date: Tue, 26 Mar 2024 20:00:00 GMT\nretry-after: Tue Mar 26 20:01:00 2024\n", true,
     60000},
    {"date: Tue, 26 Mar 2024 20:00:00 GMT\nretry-after: Tue Mar  3 20:00:00 2024\n", true, 0},
};

START_TEST(retry_after_forms)
{
	const struct retry_case *c = &retries[_i];
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI, c->headers);

	ck_assert_msg(r.has_retry_after == c->known, "'%s': expected %s", c->headers,
		      c->known ? "a wait" : "no wait");
	if (c->known)
		ck_assert_msg(r.retry_after_ms == c->ms, "'%s': %llu ms, expected %llu",
			      c->headers, (unsigned long long)r.retry_after_ms,
			      (unsigned long long)c->ms);
}
END_TEST

START_TEST(retry_date_without_date_uses_local_clock)
{
	struct arl_headers_result r =
	    parse_at(ARL_PROVIDER_OPENAI, "retry-after: Tue, 26 Mar 2024 20:00:30 GMT\n",
		     T_2024_03_26_20_00 + 10000);

	assert_retry(&r, 20000);
}
END_TEST

static const char anthropic_sample[] =
    "HTTP/1.1 429 Too Many Requests\r\n"
    "date: Tue, 26 Mar 2024 19:59:59 GMT\r\n"
    "anthropic-ratelimit-requests-limit: 5\r\n"
    "anthropic-ratelimit-requests-remaining: 0\r\n"
    "anthropic-ratelimit-requests-reset: 2024-03-26T20:00:00Z\r\n"
    "anthropic-ratelimit-tokens-limit: 25000\r\n"
    "anthropic-ratelimit-tokens-remaining: 16000\r\n"
    "anthropic-ratelimit-tokens-reset: 2024-03-26T20:00:00Z\r\n"
    "\r\n";

START_TEST(anthropic_sample_measures_against_date)
{
	/* The local clock is 30 s ahead of the server's, and only the Date header counts. */
	struct arl_headers_result r =
	    parse_at(ARL_PROVIDER_ANTHROPIC, anthropic_sample, T_2024_03_26_20_00 + 30000);

	ck_assert_int_eq(r.status, 429);
	assert_limit(&r.limits[REQ], "requests", 5, 0, 1000, ARL_HEADERS_MINUTE_MS);
	assert_limit(&r.limits[TOK], "tokens", 25000, 16000, 1000, ARL_HEADERS_MINUTE_MS);
	ck_assert(!r.limits[REQ].remaining_approximate);
	ck_assert(r.limits[TOK].remaining_approximate);
}
END_TEST

START_TEST(anthropic_input_output_families)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_ANTHROPIC,
					    "date: Tue, 26 Mar 2024 20:00:00 GMT\n"
					    "anthropic-ratelimit-input-tokens-limit: 40000\n"
					    "anthropic-ratelimit-input-tokens-remaining: 39000\n"
					    "anthropic-ratelimit-input-tokens-reset: "
					    "2024-03-26T20:00:01.5Z\n"
					    "anthropic-ratelimit-output-tokens-limit: 8000\n"
					    "anthropic-ratelimit-output-tokens-remaining: 8000\n"
					    "anthropic-ratelimit-output-tokens-reset: "
					    "2024-03-26T21:00:02+01:00\n"
					    "retry-after: 5\n");

	assert_limit(&r.limits[ARL_HEADERS_INPUT_TOKENS], "input tokens", 40000, 39000, 1500,
		     ARL_HEADERS_MINUTE_MS);
	assert_limit(&r.limits[ARL_HEADERS_OUTPUT_TOKENS], "output tokens", 8000, 8000, 2000,
		     ARL_HEADERS_MINUTE_MS);
	ck_assert(r.limits[ARL_HEADERS_INPUT_TOKENS].remaining_approximate);
	assert_unknown(&r.limits[REQ], "requests");
	assert_retry(&r, 5000);
}
END_TEST

START_TEST(absolute_reset_without_date_uses_local_clock)
{
	struct arl_headers_result r =
	    parse_at(ARL_PROVIDER_ANTHROPIC,
		     "anthropic-ratelimit-requests-remaining: 3\n"
		     "anthropic-ratelimit-requests-reset: 2024-03-26T20:00:00Z\n",
		     T_2024_03_26_20_00 - 4000);

	ck_assert(r.limits[REQ].has_reset);
	ck_assert_uint_eq(r.limits[REQ].reset_ms, 4000);
}
END_TEST

START_TEST(absolute_reset_in_past_is_zero)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_ANTHROPIC,
					    "anthropic-ratelimit-requests-remaining: 3\n"
					    "anthropic-ratelimit-requests-reset: "
					    "2024-03-26T19:00:00Z\n");

	ck_assert(r.limits[REQ].has_reset);
	ck_assert_uint_eq(r.limits[REQ].reset_ms, 0);
}
END_TEST

START_TEST(far_reset_capped_at_seven_days)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_ANTHROPIC,
					    "anthropic-ratelimit-requests-remaining: 3\n"
					    "anthropic-ratelimit-requests-reset: "
					    "2030-01-01T00:00:00Z\n");

	ck_assert_uint_eq(r.limits[REQ].reset_ms, ARL_HEADERS_MAX_WAIT_MS);
}
END_TEST

START_TEST(invalid_dates_are_unknown)
{
	static const char *const values[] = {
	    "2024-02-30T00:00:00Z", "2024-03-26T24:00:00Z", "2024-03-26T20:00:00",
	    "2024-03-26", "Tue, 26 Foo 2024 20:00:30 GMT", "Tue, 26 Mar 2024 20:00:30 UTC",
	};
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char text[256];
		struct arl_headers_result r;

		snprintf(text, sizeof(text),
			 "anthropic-ratelimit-requests-remaining: 3\n"
			 "anthropic-ratelimit-requests-reset: %s\n",
			 values[i]);
		r = parse(ARL_PROVIDER_ANTHROPIC, text);
		ck_assert_msg(!r.limits[REQ].has_reset, "'%s' read as a reset of %llu ms",
			      values[i], (unsigned long long)r.limits[REQ].reset_ms);
	}
}
END_TEST

START_TEST(profile_ignores_other_providers_headers)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI, anthropic_sample);

	assert_unknown(&r.limits[REQ], "requests");
	assert_unknown(&r.limits[TOK], "tokens");
}
END_TEST

START_TEST(groq_requests_are_per_day)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_GROQ,
					    "HTTP/1.1 200 OK\n"
					    "x-ratelimit-limit-requests: 14400\n"
					    "x-ratelimit-limit-tokens: 18000\n"
					    "x-ratelimit-remaining-requests: 14370\n"
					    "x-ratelimit-remaining-tokens: 17997\n"
					    "x-ratelimit-reset-requests: 2m59.56s\n"
					    "x-ratelimit-reset-tokens: 7.66s\n"
					    "\n");

	assert_limit(&r.limits[REQ], "requests", 14400, 14370, 179560, ARL_HEADERS_DAY_MS);
	assert_limit(&r.limits[TOK], "tokens", 18000, 17997, 7660, ARL_HEADERS_MINUTE_MS);
}
END_TEST

START_TEST(azure_headers_and_retry_after_ms)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_AZURE,
					    "HTTP/1.1 429 Too Many Requests\n"
					    "x-ratelimit-remaining-requests: 0\n"
					    "x-ratelimit-remaining-tokens: 46760\n"
					    "retry-after: 2\n"
					    "retry-after-ms: 1700\n"
					    "\n");
	const struct arl_headers_limit *req = &r.limits[REQ];

	ck_assert(req->has_remaining && req->remaining == 0);
	ck_assert(!req->has_limit);
	ck_assert(req->has_window && req->window_ms == 10 * ARL_HEADERS_SECOND_MS);
	ck_assert(r.limits[TOK].has_window && r.limits[TOK].window_ms == ARL_HEADERS_MINUTE_MS);
	ck_assert_uint_eq(r.limits[TOK].remaining, 46760);
	assert_retry(&r, 1700);
}
END_TEST

START_TEST(mistral_minute_headers)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_MISTRAL,
					    "x-ratelimit-limit-tokens-minute: 5000000\n"
					    "x-ratelimit-remaining-tokens-minute: 4999911\n"
					    "x-ratelimit-tokens-query-cost: 52\n"
					    "x-ratelimit-limit-req-minute: 720\n"
					    "x-ratelimit-remaining-req-minute: 717\n"
					    "x-ratelimit-limit-tokens-month: 1000000000\n"
					    "x-ratelimit-remaining-tokens-month: 12\n");

	ck_assert_uint_eq(r.limits[REQ].limit, 720);
	ck_assert_uint_eq(r.limits[REQ].remaining, 717);
	ck_assert_uint_eq(r.limits[REQ].window_ms, ARL_HEADERS_MINUTE_MS);
	ck_assert_uint_eq(r.limits[TOK].limit, 5000000);
	ck_assert_uint_eq(r.limits[TOK].remaining, 4999911);
	ck_assert_uint_eq(r.limits[TOK].window_ms, ARL_HEADERS_MINUTE_MS);
	ck_assert(!r.limits[TOK].has_reset);
}
END_TEST

START_TEST(together_limits_are_per_second)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_TOGETHER,
					    "x-ratelimit-limit: 10\n"
					    "x-ratelimit-remaining: 9\n"
					    "x-ratelimit-reset: 1\n"
					    "x-tokenlimit-limit: 3000\n"
					    "x-tokenlimit-remaining: 2800\n");

	assert_limit(&r.limits[REQ], "requests", 10, 9, 1000, ARL_HEADERS_SECOND_MS);
	ck_assert_uint_eq(r.limits[TOK].limit, 3000);
	ck_assert_uint_eq(r.limits[TOK].remaining, 2800);
	ck_assert_uint_eq(r.limits[TOK].window_ms, ARL_HEADERS_SECOND_MS);
}
END_TEST

static const char openai_too_large[] =
    "HTTP/1.1 429 Too Many Requests\r\n"
    "content-type: application/json\r\n"
    "\r\n"
    "{\"error\": {\"message\": \"Request too large for gpt-4o in organization org-x on tokens "
    "per min (TPM): Limit 30000, Requested 36278. The input or output tokens must be reduced "
    "in order to run successfully.\", \"type\": \"tokens\", \"param\": null, \"code\": "
    "\"rate_limit_exceeded\"}}";

START_TEST(openai_body_can_never_fit)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_OPENAI, openai_too_large);

	ck_assert_int_eq(r.status, 429);
	ck_assert(r.never_fits);
	ck_assert_int_eq(r.never_fits_family, ARL_HEADERS_TOKENS);
	ck_assert_uint_eq(r.never_fits_limit, 30000);
	ck_assert_uint_eq(r.never_fits_requested, 36278);
}
END_TEST

START_TEST(openai_body_try_again_in)
{
	struct arl_headers_result r =
	    parse(ARL_PROVIDER_OPENAI,
		  "HTTP/1.1 429 Too Many Requests\n\n"
		  "{\"error\":{\"message\":\"Rate limit reached for gpt-4 in organization org-x on "
		  "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in "
		  "20.123s. Visit https://example.com to learn more.\",\"type\":\"requests\"}}");

	ck_assert(!r.never_fits);
	assert_retry(&r, 20123);
}
END_TEST

START_TEST(header_wait_wins_over_body_wait)
{
	struct arl_headers_result r =
	    parse(ARL_PROVIDER_GROQ,
		  "HTTP/1.1 429 Too Many Requests\n"
		  "retry-after: 6\n\n"
		  "{\"error\":{\"message\":\"Rate limit reached for model `m` on tokens per minute "
		  "(TPM): Limit 6000, Used 5453, Requested 1091. Please try again in 5.44s.\"}}");

	ck_assert(!r.never_fits);
	assert_retry(&r, 6000);
}
END_TEST

START_TEST(body_ignored_unless_429)
{
	char text[sizeof(openai_too_large)];

	memcpy(text, openai_too_large, sizeof(text));
	memcpy(text + strlen("HTTP/1.1 "), "500", 3);
	ck_assert(!parse(ARL_PROVIDER_OPENAI, text).never_fits);
}
END_TEST

static const char gemini_429[] =
    "HTTP/1.1 429 Too Many Requests\n"
    "content-type: application/json; charset=UTF-8\n"
    "\n"
    "{\n"
    "  \"error\": {\n"
    "    \"code\": 429,\n"
    "    \"message\": \"You exceeded your current quota.\",\n"
    "    \"status\": \"RESOURCE_EXHAUSTED\",\n"
    "    \"details\": [\n"
    "      {\n"
    "        \"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\",\n"
    "        \"violations\": [\n"
    "          {\n"
    "            \"quotaMetric\": "
    "\"generativelanguage.googleapis.com/generate_content_free_tier_requests\",\n"
    "            \"quotaId\": \"GenerateRequestsPerMinutePerProjectPerModel-FreeTier\",\n"
    "            \"quotaDimensions\": {\"location\": \"global\", \"model\": \"gemini-2.0-flash\"},\n"
    "            \"quotaValue\": \"15\"\n"
    "          },\n"
    "          {\n"
    "            \"quotaMetric\": "
    "\"generativelanguage.googleapis.com/generate_content_free_tier_requests\",\n"
    "            \"quotaId\": \"GenerateRequestsPerDayPerProjectPerModel-FreeTier\",\n"
    "            \"quotaValue\": \"200\"\n"
    "          },\n"
    "          {\n"
    "            \"quotaMetric\": "
    "\"generativelanguage.googleapis.com/generate_content_free_tier_input_token_count\",\n"
    "            \"quotaId\": \"GenerateContentInputTokensPerModelPerMinute-FreeTier\",\n"
    "            \"quotaValue\": \"1000000\"\n"
    "          }\n"
    "        ]\n"
    "      },\n"
    "      {\n"
    "        \"@type\": \"type.googleapis.com/google.rpc.Help\",\n"
    "        \"links\": [{\"description\": \"Learn more\", \"url\": \"https://example.com\"}]\n"
    "      },\n"
    "      {\n"
    "        \"@type\": \"type.googleapis.com/google.rpc.RetryInfo\",\n"
    "        \"retryDelay\": \"26.5s\"\n"
    "      }\n"
    "    ]\n"
    "  }\n"
    "}\n";

START_TEST(gemini_retry_info_and_quotas)
{
	struct arl_headers_result r = parse(ARL_PROVIDER_GEMINI, gemini_429);
	const struct arl_headers_limit *req = &r.limits[REQ];
	const struct arl_headers_limit *input = &r.limits[ARL_HEADERS_INPUT_TOKENS];

	ck_assert_int_eq(r.status, 429);
	assert_retry(&r, 26500);
	/* The daily request quota wins over the per-minute one: it blocks longer. */
	ck_assert(req->has_limit && req->limit == 200);
	ck_assert(req->has_window && req->window_ms == ARL_HEADERS_DAY_MS);
	ck_assert(req->has_remaining && req->remaining == 0);
	ck_assert(input->has_limit && input->limit == 1000000);
	ck_assert(input->has_window && input->window_ms == ARL_HEADERS_MINUTE_MS);
	assert_unknown(&r.limits[TOK], "tokens");
}
END_TEST

START_TEST(gemini_error_in_array)
{
	struct arl_headers_result r =
	    parse(ARL_PROVIDER_GEMINI,
		  "HTTP/2 429\n\n[{\"error\": {\"code\": 429, \"details\": [{\"@type\": "
		  "\"type.googleapis.com/google.rpc.RetryInfo\", \"retryDelay\": \"3s\"}]}}]");

	ck_assert_int_eq(r.status, 429);
	assert_retry(&r, 3000);
}
END_TEST

START_TEST(body_that_is_not_json_is_ignored)
{
	struct arl_headers_result r =
	    parse(ARL_PROVIDER_GEMINI, "HTTP/1.1 429 Too Many Requests\n\n<html>Limit 5, Requested "
				       "9. try again in 3s</html>");

	ck_assert(!r.has_retry_after);
	ck_assert(!r.never_fits);
}
END_TEST

START_TEST(line_api_takes_curl_header_lines)
{
	static const char *const lines[] = {
	    "HTTP/1.1 100 Continue\r\n",
	    "x-ratelimit-remaining-tokens: 5\r\n",
	    "\r\n",
	    "HTTP/2 429 \r\n",
	    "x-ratelimit-limit-tokens: 1000\r\n",
	    "x-ratelimit-remaining-tokens: 991,\r\n",
	    " 98\r\n",
	    "bad header line without colon\r\n",
	    "x-ratelimit-reset-tokens : 9s\r\n",
	    "\r\n",
	};
	struct arl_headers_parser p;
	struct arl_headers_result r;
	size_t i;

	ck_assert_int_eq(arl_headers_parser_init(&p, ARL_PROVIDER_OPENAI), 0);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		ck_assert_int_eq(arl_headers_parser_line(&p, lines[i], strlen(lines[i])), 0);
	arl_headers_parser_finish(&p, T_2024_03_26_20_00, &r);

	ck_assert_int_eq(r.status, 429);
	ck_assert_uint_eq(r.limits[TOK].limit, 1000);
	/* The continuation line is one more element of the folded value. */
	ck_assert_uint_eq(r.limits[TOK].remaining, 98);
	/* Whitespace before the colon makes the line invalid. */
	ck_assert(!r.limits[TOK].has_reset);
}
END_TEST

START_TEST(header_api_and_body)
{
	static const char body[] = "{\"error\":{\"message\":\"Limit 10, Requested 11\"}}";
	struct arl_headers_parser p;
	struct arl_headers_result r;

	ck_assert_int_eq(arl_headers_parser_init(&p, ARL_PROVIDER_OPENAI), 0);
	ck_assert_int_eq(arl_headers_parser_header(&p, "Retry-After", 11, " 7 ", 3), 0);
	ck_assert_int_eq(arl_headers_parser_body(&p, body, strlen(body)), 0);
	arl_headers_parser_finish(&p, 0, &r);
	ck_assert_int_eq(r.status, 0);
	assert_retry(&r, 7000);
	ck_assert(r.never_fits);
	ck_assert_uint_eq(r.never_fits_requested, 11);
}
END_TEST

START_TEST(invalid_arguments_are_rejected)
{
	struct arl_headers_parser p;
	struct arl_headers_result r;
	enum arl_provider provider;

	ck_assert_int_eq(arl_headers_parser_init(NULL, ARL_PROVIDER_OPENAI), -EINVAL);
	ck_assert_int_eq(arl_headers_parser_init(&p, ARL_PROVIDER_COUNT), -EINVAL);
	ck_assert_int_eq(arl_headers_parser_init(&p, ARL_PROVIDER_OPENAI), 0);
	ck_assert_int_eq(arl_headers_parser_header(&p, NULL, 0, "1", 1), -EINVAL);
	ck_assert_int_eq(arl_headers_parser_line(NULL, "a: b", 4), -EINVAL);
	ck_assert_int_eq(arl_headers_parser_body(&p, NULL, 3), -EINVAL);
	ck_assert_int_eq(arl_headers_parse(NULL, 3, ARL_PROVIDER_OPENAI, 0, &r), -EINVAL);
	ck_assert_int_eq(arl_headers_parse("", 0, ARL_PROVIDER_GEMINI, 0, &r), 0);
	ck_assert_int_eq(arl_provider_from_name("OpenAI", &provider), -EINVAL);
	ck_assert_int_eq(arl_provider_from_name("azure", &provider), 0);
	ck_assert_int_eq(provider, ARL_PROVIDER_AZURE);
	ck_assert_str_eq(arl_provider_name(ARL_PROVIDER_TOGETHER), "together");
	ck_assert_ptr_null(arl_provider_name(ARL_PROVIDER_COUNT));
	ck_assert_str_eq(arl_headers_window_name(ARL_HEADERS_DAY_MS), "day");
	ck_assert_ptr_null(arl_headers_window_name(1234));
}
END_TEST

static Suite *headers_suite(void)
{
	Suite *s = suite_create("headers");
	TCase *tc = tcase_create("headers");

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	tcase_add_test(tc, openai_sample_reads_both_families);
	tcase_add_loop_test(tc, usage_based_headers_are_other_headers, 0,
			    sizeof(usage_based_orders) / sizeof(usage_based_orders[0]));
	tcase_add_loop_test(tc, duration_reads_decimal_digits, 0,
			    sizeof(durations) / sizeof(durations[0]));
	tcase_add_test(tc, azure_minus_one_is_unknown);
	tcase_add_test(tc, no_rate_limit_headers_change_nothing);
	tcase_add_test(tc, folded_value_keeps_most_conservative);
	tcase_add_test(tc, repeated_header_keeps_most_conservative);
	tcase_add_loop_test(tc, invalid_remaining_is_unknown, 0,
			    sizeof(unknown_remaining) / sizeof(unknown_remaining[0]));
	tcase_add_test(tc, remaining_clamped_to_limit);
	tcase_add_test(tc, zero_limit_is_unknown);
	tcase_add_loop_test(tc, retry_after_forms, 0, sizeof(retries) / sizeof(retries[0]));
	tcase_add_test(tc, retry_date_without_date_uses_local_clock);
	tcase_add_test(tc, anthropic_sample_measures_against_date);
	tcase_add_test(tc, anthropic_input_output_families);
	tcase_add_test(tc, absolute_reset_without_date_uses_local_clock);
	tcase_add_test(tc, absolute_reset_in_past_is_zero);
	tcase_add_test(tc, far_reset_capped_at_seven_days);
	tcase_add_test(tc, invalid_dates_are_unknown);
	tcase_add_test(tc, profile_ignores_other_providers_headers);
	tcase_add_test(tc, groq_requests_are_per_day);
	tcase_add_test(tc, azure_headers_and_retry_after_ms);
	tcase_add_test(tc, mistral_minute_headers);
	tcase_add_test(tc, together_limits_are_per_second);
	tcase_add_test(tc, openai_body_can_never_fit);
	tcase_add_test(tc, openai_body_try_again_in);
	tcase_add_test(tc, header_wait_wins_over_body_wait);
	tcase_add_test(tc, body_ignored_unless_429);
	tcase_add_test(tc, gemini_retry_info_and_quotas);
	tcase_add_test(tc, gemini_error_in_array);
	tcase_add_test(tc, body_that_is_not_json_is_ignored);
	tcase_add_test(tc, line_api_takes_curl_header_lines);
	tcase_add_test(tc, header_api_and_body);
	tcase_add_test(tc, invalid_arguments_are_rejected);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *runner;
	int failed;

	if (argc > 1 && strcmp(argv[1], "locale") == 0) {
		/* A comma decimal separator: a parser using strtod would read "7.66s" wrongly. */
		if (setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
			printf("skipped: locale de_DE.UTF-8 is not installed\n");
			return EXIT_SKIPPED;
		}
	}

	runner = srunner_create(headers_suite());
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
