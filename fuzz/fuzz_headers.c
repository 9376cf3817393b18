/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the provider header parser (include/arl/headers.h).
 *
 * The input is a response head, possibly followed by a blank line and a
 * body. It is parsed with every provider profile, whole with
 * arl_headers_parse(), and, when it has no blank line, also line by line
 * with arl_headers_parser_line(), as libcurl's header callback would feed it.
 *
 * Checks, each an abort() that libFuzzer reports:
 * - the documented rules hold for every result: a known limit is never 0,
 *   remaining never exceeds a known limit, a reset is kept only with its
 *   remaining, and no wait or reset exceeds ARL_HEADERS_MAX_WAIT_MS;
 * - both ways of feeding the same head give the same result.
 */
#include <arl/headers.h>
#include <stdio.h>

/* A fixed wall clock, so that runs repeat: 2025-01-01T00:00:00Z. */
#define FUZZ_NOW_MS 1735689600000ll

static void fail(enum arl_provider provider, const char *what)
{
	fprintf(stderr, "fuzz_headers: %s profile: %s\n", arl_provider_name(provider), what);
	abort();
}

static void check_rules(enum arl_provider provider, const struct arl_headers_result *r)
{
	int i;

	if (r->has_retry_after && r->retry_after_ms > ARL_HEADERS_MAX_WAIT_MS)
		fail(provider, "retry_after_ms exceeds the cap");
	if (r->never_fits && (unsigned)r->never_fits_family >= ARL_HEADERS_FAMILIES)
		fail(provider, "never_fits names no family");
	for (i = 0; i < ARL_HEADERS_FAMILIES; i++) {
		const struct arl_headers_limit *l = &r->limits[i];

		if (l->has_limit && l->limit == 0)
			fail(provider, "a known limit is 0");
		if (l->has_limit && l->has_remaining && l->remaining > l->limit)
			fail(provider, "remaining exceeds the limit");
		if (l->has_reset && !l->has_remaining)
			fail(provider, "a reset is kept without its remaining");
		if (l->has_reset && l->reset_ms > ARL_HEADERS_MAX_WAIT_MS)
			fail(provider, "reset_ms exceeds the cap");
		if (l->has_window && l->window_ms == 0)
			fail(provider, "a known window is 0");
	}
}

static bool same_limit(const struct arl_headers_limit *a, const struct arl_headers_limit *b)
{
	return a->has_limit == b->has_limit && a->has_remaining == b->has_remaining &&
	       a->has_reset == b->has_reset && a->has_window == b->has_window &&
	       a->remaining_approximate == b->remaining_approximate &&
	       (!a->has_limit || a->limit == b->limit) &&
	       (!a->has_remaining || a->remaining == b->remaining) &&
	       (!a->has_reset || a->reset_ms == b->reset_ms) &&
	       (!a->has_window || a->window_ms == b->window_ms);
}

static void check_same(enum arl_provider provider, const struct arl_headers_result *a,
		       const struct arl_headers_result *b)
{
	int i;

	if (a->status != b->status)
		fail(provider, "the status depends on how the head was fed");
	if (a->has_retry_after != b->has_retry_after ||
	    (a->has_retry_after && a->retry_after_ms != b->retry_after_ms))
		fail(provider, "the retry wait depends on how the head was fed");
	if (a->never_fits != b->never_fits)
		fail(provider, "never_fits depends on how the head was fed");
	for (i = 0; i < ARL_HEADERS_FAMILIES; i++)
		if (!same_limit(&a->limits[i], &b->limits[i]))
			fail(provider, "a limit depends on how the head was fed");
}

/* Feeds the head line by line, each line with its LF, as libcurl does. */
static void parse_lines(const char *text, size_t len, enum arl_provider provider,
			struct arl_headers_result *out)
{
	struct arl_headers_parser p;
	size_t start = 0, i;

	if (arl_headers_parser_init(&p, provider) != 0)
		fail(provider, "parser init failed");
	for (i = 0; i <= len; i++) {
		if (i < len && text[i] != '\n')
			continue;
		if (arl_headers_parser_line(&p, text + start, i < len ? i + 1 - start : i - start))
			fail(provider, "a line was rejected");
		start = i + 1;
	}
	arl_headers_parser_finish(&p, FUZZ_NOW_MS, out);
}

/* Whether the text has a blank line, which starts a body in a whole parse. */
static bool has_blank_line(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i++)
		if (text[i] == '\n' &&
		    (text[i + 1] == '\n' || (text[i + 1] == '\r' && i + 2 < len &&
					     text[i + 2] == '\n')))
			return true;
	return len > 0 && (text[0] == '\n' || text[0] == '\r');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	bool lines = !has_blank_line(text, size);
	int provider;

	for (provider = 0; provider < ARL_PROVIDER_COUNT; provider++) {
		struct arl_headers_result whole, by_line;
		int rc = arl_headers_parse(text, size, (enum arl_provider)provider, FUZZ_NOW_MS,
					   &whole);

		if (rc == -ENOMEM)
			continue;
		if (rc != 0)
			fail((enum arl_provider)provider, "parse returned an undocumented code");
		check_rules((enum arl_provider)provider, &whole);
		if (!lines)
			continue;
		parse_lines(text, size, (enum arl_provider)provider, &by_line);
		check_rules((enum arl_provider)provider, &by_line);
		check_same((enum arl_provider)provider, &whole, &by_line);
	}
	return 0;
}
