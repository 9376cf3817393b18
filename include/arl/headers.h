/* SPDX-License-Identifier: MIT */
/*
 * arl/headers.h - reads a provider's rate-limit state from a response head.
 *
 * An LLM provider reports its view of a quota in the headers of every
 * response (limit, remaining, time until the limit is full again), the wait
 * before a retry in Retry-After, and on a 429 sometimes more in the body. This
 * header turns a response head into a struct arl_headers_result: the status,
 * the wait, and four limit families (requests, tokens, input tokens, output
 * tokens), each with its limit, remaining, reset and window. It never touches
 * the shared segment: applying a result to a bucket is the caller's job.
 *
 * A provider profile (enum arl_provider) names the headers to read and the
 * window of each family, because the names alone do not: Groq's
 * x-ratelimit-limit-requests is a daily limit where OpenAI's is per minute.
 * docs/providers.md lists every header each profile reads.
 *
 * Rules every profile follows:
 *   - Header names match case-insensitively and exactly, so
 *     x-ratelimit-remaining-tokens_usage_based never counts as
 *     x-ratelimit-remaining-tokens.
 *   - A value that is empty, negative, not a number ("NaN", "unknown") or too
 *     large for 64 bits is unknown, and an unknown field is reported as such,
 *     never as 0. The caller keeps its previous state for it.
 *   - A list ("991, 98", from a proxy that folded two headers into one) or a
 *     repeated header counts its most conservative element: the smallest
 *     limit or remaining, the longest reset or wait.
 *   - A limit of 0 is unknown. Remaining is clamped to the limit when both
 *     are known. A reset is kept only when the same family's remaining is
 *     known, because it says when that remaining refills.
 *   - Durations ("6m0s", "12ms", "2m59.56s", a bare "2" for seconds) are read
 *     as decimal digits, never through floating point, so "4.03s" is exactly
 *     4030 ms. A remainder below one millisecond rounds up.
 *   - An absolute time (RFC 3339 or an HTTP date) is measured against the
 *     response's Date header, or against the caller's clock without one. A
 *     time in the past is a wait of 0.
 *   - Every wait and reset is capped at ARL_HEADERS_MAX_WAIT_MS (7 days).
 *   - retry-after-ms wins over retry-after.
 *   - Nothing depends on the process locale: no strtod, strtol or ctype.
 *
 * The header is C11 and C++11, and every function is static inline (see
 * ARL_HEADERS_API). A 429 body is parsed as JSON with jsmn (Debian package
 * libjsmn-dev), included with JSMN_STATIC as arl/stream.h does. A translation
 * unit that also uses jsmn must define JSMN_STATIC before it includes <jsmn.h>.
 *
 * Not thread-safe: one parser belongs to one response and one thread at a time.
 */
#ifndef ARL_HEADERS_H
#define ARL_HEADERS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* arl_headers_to_observation() fills the client API's struct arl_observation. */
#include <arl.h>

#ifndef JSMN_STATIC
#define JSMN_STATIC
#endif
#include <jsmn.h>

#ifndef ARL_HEADERS_API
#define ARL_HEADERS_API static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Maximum wait or reset reported: 7 days. A longer one is reported as this. */
#define ARL_HEADERS_MAX_WAIT_MS 604800000ull
/* Bodies longer than this are not parsed. Provider error bodies are a few KiB. */
#define ARL_HEADERS_MAX_BODY_BYTES ((size_t)1 << 20)

/* Windows a profile assigns, in milliseconds. */
#define ARL_HEADERS_SECOND_MS 1000ull
#define ARL_HEADERS_MINUTE_MS 60000ull
#define ARL_HEADERS_HOUR_MS 3600000ull
#define ARL_HEADERS_DAY_MS 86400000ull

/* Provider profile: the set of headers a response is read with. */
enum arl_provider {
	ARL_PROVIDER_OPENAI = 0,
	ARL_PROVIDER_AZURE,
	ARL_PROVIDER_ANTHROPIC,
	ARL_PROVIDER_GROQ,
	ARL_PROVIDER_MISTRAL,
	ARL_PROVIDER_TOGETHER,
	ARL_PROVIDER_GEMINI,
	ARL_PROVIDER_COUNT
};

/* The unit a limit counts, as in arl.h's limits. */
enum arl_headers_family {
	ARL_HEADERS_REQUESTS = 0,
	ARL_HEADERS_TOKENS,
	ARL_HEADERS_INPUT_TOKENS,
	ARL_HEADERS_OUTPUT_TOKENS,
	ARL_HEADERS_FAMILIES
};

/* One limit as the provider reported it. A field is meaningful only when its has_ flag is set. */
struct arl_headers_limit {
	bool has_limit, has_remaining, has_reset, has_window;
	/*
	 * The provider rounds remaining, so it is an estimate: Anthropic rounds
	 * token counts to the nearest thousand.
	 */
	bool remaining_approximate;
	/* Units the provider allows per window. Never 0 when has_limit is set. */
	uint64_t limit;
	/* Units left now, as the provider counts them (including this host's requests in flight). */
	uint64_t remaining;
	/*
	 * Milliseconds from the response until the provider reports the limit
	 * full again (OpenAI, Groq, Anthropic) or until its counter resets
	 * (Together). Relative to when the response was produced, so the caller
	 * adds it to its own clock at receipt.
	 */
	uint64_t reset_ms;
	/* Length of the limit's window in milliseconds: ARL_HEADERS_MINUTE_MS for a per-minute limit. */
	uint64_t window_ms;
};

/* Rate-limit state reported by one response head. Self-contained: it points into nothing. */
struct arl_headers_result {
	/* HTTP status from the status line, or 0 without one. */
	int status;
	/* The provider's wait before the next request, from the headers or a 429 body. */
	bool has_retry_after;
	uint64_t retry_after_ms;
	/*
	 * A 429 body stated that the request alone exceeds a limit ("Limit 30000,
	 * Requested 36278"), so retrying cannot help. never_fits_family names the
	 * limit, and the two counts are the provider's.
	 */
	bool never_fits;
	enum arl_headers_family never_fits_family;
	uint64_t never_fits_limit, never_fits_requested;
	/* Indexed by enum arl_headers_family. */
	struct arl_headers_limit limits[ARL_HEADERS_FAMILIES];
};

/* Header values collected for one family before the Date header is known. */
struct arl_headers_pending {
	bool has_limit, has_remaining;
	uint64_t limit, remaining;
	bool has_reset_after; /* a duration: reset_after_ms */
	uint64_t reset_after_ms;
	bool has_reset_at; /* an absolute time: reset_at_ms since the Unix epoch */
	int64_t reset_at_ms;
	/* A window learned from the body (Gemini's quota violations), or 0 for the profile's. */
	uint64_t window_ms;
};

/*
 * Parser state of one response head. The caller owns the struct and must
 * treat the members as private. It uses no heap memory.
 */
struct arl_headers_parser {
	enum arl_provider provider;
	int status;
	struct arl_headers_pending families[ARL_HEADERS_FAMILIES];
	bool has_date;
	int64_t date_ms;
	bool has_retry_after_ms; /* retry-after-ms */
	uint64_t retry_after_ms;
	bool has_retry_after; /* retry-after in seconds */
	uint64_t retry_after;
	bool has_retry_at; /* retry-after as an HTTP date */
	int64_t retry_at_ms;
	/* From a body: RetryInfo, or OpenAI's "Please try again in 3.06s". */
	bool has_body_retry;
	uint64_t body_retry_ms;
	bool never_fits;
	enum arl_headers_family never_fits_family;
	uint64_t never_fits_limit, never_fits_requested;
	/* Name of the last header, for a continuation line; longer names match nothing. */
	char last_name[64];
	size_t last_name_len;
};

/*
 * Initializes @p for one response of @provider. Returns 0, or -EINVAL when
 * @p is NULL or @provider is out of range.
 */
ARL_HEADERS_API int arl_headers_parser_init(struct arl_headers_parser *p,
					    enum arl_provider provider);

/*
 * Records one header. @name and @value need no NUL terminator, and
 * surrounding spaces and tabs in @value are ignored. Headers the profile does
 * not read are skipped. Returns 0, or -EINVAL on a NULL argument.
 */
ARL_HEADERS_API int arl_headers_parser_header(struct arl_headers_parser *p, const char *name,
					      size_t name_len, const char *value,
					      size_t value_len);

/*
 * Records one line of a head as libcurl's header callback delivers it: a
 * status line ("HTTP/1.1 429 Too Many Requests"), a "Name: value" line, a
 * continuation line of the previous header, or the blank line that ends the
 * head. A trailing CR LF is ignored. A status line starts the head over, so
 * the last of several heads (after a 100 Continue or a proxy's CONNECT) wins.
 * Returns 0, or -EINVAL on a NULL argument.
 */
ARL_HEADERS_API int arl_headers_parser_line(struct arl_headers_parser *p, const char *line,
					    size_t len);

/*
 * Reads a response body for a 429's details: Gemini's RetryInfo and
 * QuotaFailure, OpenAI's and Groq's "Limit N, Requested M" and "try again
 * in". They count only when the status is 429 or unknown. A body that is not
 * JSON or is longer than ARL_HEADERS_MAX_BODY_BYTES is ignored. Returns 0,
 * -EINVAL on a NULL argument, or -ENOMEM.
 */
ARL_HEADERS_API int arl_headers_parser_body(struct arl_headers_parser *p, const void *body,
					    size_t len);

/*
 * Stores what the response says in @out. @now_unix_ms is the caller's
 * wall-clock time in milliseconds since the Unix epoch, used for absolute
 * times only when the response has no valid Date header. The parser is left
 * unchanged, so it may be finished again.
 */
ARL_HEADERS_API void arl_headers_parser_finish(const struct arl_headers_parser *p,
					       int64_t now_unix_ms, struct arl_headers_result *out);

/*
 * Parses a whole response head: an optional status line, header lines ending
 * in LF or CR LF, and after a blank line an optional body. A body that starts
 * with "HTTP/" is the next head, as curl -i prints after a 100 Continue.
 * Returns 0, -EINVAL, or -ENOMEM.
 */
ARL_HEADERS_API int arl_headers_parse(const char *text, size_t len, enum arl_provider provider,
				      int64_t now_unix_ms, struct arl_headers_result *out);

/* Returns the profile's name ("openai", "azure", ...), or NULL when out of range. */
ARL_HEADERS_API const char *arl_provider_name(enum arl_provider provider);

/* Looks a profile up by its exact name. Returns 0, or -EINVAL for an unknown name. */
ARL_HEADERS_API int arl_provider_from_name(const char *name, enum arl_provider *out);

/* Returns "second", "10 seconds", "minute", "hour" or "day", or NULL for another window. */
ARL_HEADERS_API const char *arl_headers_window_name(uint64_t window_ms);

/* Implementation. */

/* Maximum reset or wait kept in nanoseconds before the final cap to milliseconds. */
#define ARL_HEADERS_NS_CAP (ARL_HEADERS_MAX_WAIT_MS * 1000000ull + 1000000ull)

enum arl_headers_field {
	ARL_HEADERS_FIELD_LIMIT,
	ARL_HEADERS_FIELD_REMAINING,
	ARL_HEADERS_FIELD_RESET
};

/* One header a profile reads. */
struct arl_headers_name {
	const char *name;
	enum arl_headers_family family;
	enum arl_headers_field field;
};

/* One provider profile. */
struct arl_headers_profile {
	const char *name;
	const struct arl_headers_name *headers;
	size_t count;
	/* Window of each family in milliseconds, 0 when the provider reports none. */
	uint64_t windows[ARL_HEADERS_FAMILIES];
	/* Families whose remaining the provider rounds. */
	unsigned int approximate;
};

/* OpenAI, Azure OpenAI and Groq use the same names with different windows. */
static const struct arl_headers_name arl_headers_openai_names[] = {
	{"x-ratelimit-limit-requests", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_LIMIT},
	{"x-ratelimit-remaining-requests", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_REMAINING},
	{"x-ratelimit-reset-requests", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_RESET},
	{"x-ratelimit-limit-tokens", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_LIMIT},
	{"x-ratelimit-remaining-tokens", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_REMAINING},
	{"x-ratelimit-reset-tokens", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_RESET},
};

static const struct arl_headers_name arl_headers_anthropic_names[] = {
	{"anthropic-ratelimit-requests-limit", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_LIMIT},
	{"anthropic-ratelimit-requests-remaining", ARL_HEADERS_REQUESTS,
	 ARL_HEADERS_FIELD_REMAINING},
	{"anthropic-ratelimit-requests-reset", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_RESET},
	{"anthropic-ratelimit-tokens-limit", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_LIMIT},
	{"anthropic-ratelimit-tokens-remaining", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_REMAINING},
	{"anthropic-ratelimit-tokens-reset", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_RESET},
	{"anthropic-ratelimit-input-tokens-limit", ARL_HEADERS_INPUT_TOKENS,
	 ARL_HEADERS_FIELD_LIMIT},
	{"anthropic-ratelimit-input-tokens-remaining", ARL_HEADERS_INPUT_TOKENS,
	 ARL_HEADERS_FIELD_REMAINING},
	{"anthropic-ratelimit-input-tokens-reset", ARL_HEADERS_INPUT_TOKENS,
	 ARL_HEADERS_FIELD_RESET},
	{"anthropic-ratelimit-output-tokens-limit", ARL_HEADERS_OUTPUT_TOKENS,
	 ARL_HEADERS_FIELD_LIMIT},
	{"anthropic-ratelimit-output-tokens-remaining", ARL_HEADERS_OUTPUT_TOKENS,
	 ARL_HEADERS_FIELD_REMAINING},
	{"anthropic-ratelimit-output-tokens-reset", ARL_HEADERS_OUTPUT_TOKENS,
	 ARL_HEADERS_FIELD_RESET},
};

/* Mistral sends no reset headers. Its monthly token quota headers are not read. */
static const struct arl_headers_name arl_headers_mistral_names[] = {
	{"x-ratelimit-limit-req-minute", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_LIMIT},
	{"x-ratelimit-remaining-req-minute", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_REMAINING},
	{"x-ratelimit-limit-tokens-minute", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_LIMIT},
	{"x-ratelimit-remaining-tokens-minute", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_REMAINING},
};

/* Together documents x-ratelimit-* for requests and x-tokenlimit-* for tokens, both per second. */
static const struct arl_headers_name arl_headers_together_names[] = {
	{"x-ratelimit-limit", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_LIMIT},
	{"x-ratelimit-remaining", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_REMAINING},
	{"x-ratelimit-reset", ARL_HEADERS_REQUESTS, ARL_HEADERS_FIELD_RESET},
	{"x-tokenlimit-limit", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_LIMIT},
	{"x-tokenlimit-remaining", ARL_HEADERS_TOKENS, ARL_HEADERS_FIELD_REMAINING},
};

#define ARL_HEADERS_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
#define ARL_HEADERS_ALL_TOKENS                                                                    \
	((1u << ARL_HEADERS_TOKENS) | (1u << ARL_HEADERS_INPUT_TOKENS) |                          \
	 (1u << ARL_HEADERS_OUTPUT_TOKENS))

/*
 * Indexed by enum arl_provider. Windows: OpenAI documents its header limits
 * as per minute. Groq documents x-ratelimit-*-requests as requests per day
 * and the token headers as per minute. NOTE: Azure OpenAI documents no window
 * for its request headers. It evaluates request limits over 1 or 10 s, and a
 * 300-per-minute deployment reports 50 remaining requests, so the profile
 * assumes 10 s.
 */
static const struct arl_headers_profile arl_headers_profiles[ARL_PROVIDER_COUNT] = {
	{"openai", arl_headers_openai_names, ARL_HEADERS_COUNT_OF(arl_headers_openai_names),
	 {ARL_HEADERS_MINUTE_MS, ARL_HEADERS_MINUTE_MS, 0, 0}, 0},
	{"azure", arl_headers_openai_names, ARL_HEADERS_COUNT_OF(arl_headers_openai_names),
	 {10 * ARL_HEADERS_SECOND_MS, ARL_HEADERS_MINUTE_MS, 0, 0}, 0},
	{"anthropic", arl_headers_anthropic_names,
	 ARL_HEADERS_COUNT_OF(arl_headers_anthropic_names),
	 {ARL_HEADERS_MINUTE_MS, ARL_HEADERS_MINUTE_MS, ARL_HEADERS_MINUTE_MS,
	  ARL_HEADERS_MINUTE_MS},
	 ARL_HEADERS_ALL_TOKENS},
	{"groq", arl_headers_openai_names, ARL_HEADERS_COUNT_OF(arl_headers_openai_names),
	 {ARL_HEADERS_DAY_MS, ARL_HEADERS_MINUTE_MS, 0, 0}, 0},
	{"mistral", arl_headers_mistral_names, ARL_HEADERS_COUNT_OF(arl_headers_mistral_names),
	 {ARL_HEADERS_MINUTE_MS, ARL_HEADERS_MINUTE_MS, 0, 0}, 0},
	{"together", arl_headers_together_names,
	 ARL_HEADERS_COUNT_OF(arl_headers_together_names),
	 {ARL_HEADERS_SECOND_MS, ARL_HEADERS_SECOND_MS, 0, 0}, 0},
	/* Gemini sends no rate-limit headers: its 429 body carries the details. */
	{"gemini", NULL, 0, {0, 0, 0, 0}, 0},
};

static inline char arl_headers_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static inline bool arl_headers_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool arl_headers_is_space(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool arl_headers_name_equal(const char *s, size_t len, const char *lower)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (lower[i] == '\0' || arl_headers_lower(s[i]) != lower[i])
			return false;
	}
	return lower[len] == '\0';
}

static inline bool arl_headers_starts_with(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* Returns the offset of @needle in @s[0..len), or len when absent. */
static inline size_t arl_headers_find(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	size_t i;

	for (i = 0; n <= len && i <= len - n; i++) {
		if (memcmp(s + i, needle, n) == 0)
			return i;
	}
	return len;
}

static inline void arl_headers_trim(const char **s, size_t *len)
{
	while (*len > 0 && arl_headers_is_space((*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && arl_headers_is_space((*s)[*len - 1]))
		(*len)--;
}

/* Adds @b to @a, saturating at @cap. */
static inline uint64_t arl_headers_add_capped(uint64_t a, uint64_t b, uint64_t cap)
{
	return a >= cap || b >= cap - a ? cap : a + b;
}

static inline uint64_t arl_headers_mul_capped(uint64_t a, uint64_t b, uint64_t cap)
{
	if (a == 0 || b == 0)
		return 0;
	return a > cap / b ? cap : a * b;
}

/*
 * A decimal number as written: integer digits, fraction digits and a power of
 * ten. Reading it exactly is what keeps "4.03s" at 4030 ms.
 */
struct arl_headers_decimal {
	const char *integer;
	size_t integer_len;
	const char *fraction;
	size_t fraction_len;
	long exponent;
};

static inline char arl_headers_decimal_digit(const struct arl_headers_decimal *d, long i)
{
	if (i < 0)
		return '0';
	if ((size_t)i < d->integer_len)
		return d->integer[i];
	i -= (long)d->integer_len;
	return (size_t)i < d->fraction_len ? d->fraction[i] : '0';
}

/*
 * Returns the value of @d times 10^@shift rounded up to an integer, or @cap
 * when that is larger.
 */
static inline uint64_t arl_headers_decimal_scale(const struct arl_headers_decimal *d, long shift,
						 uint64_t cap)
{
	long total = (long)(d->integer_len + d->fraction_len);
	long first = 0;
	long point;
	long i;
	uint64_t value = 0;

	/* Skip leading zeros, so that the count of integer digits is exact. */
	while (first < total && arl_headers_decimal_digit(d, first) == '0')
		first++;
	if (first == total)
		return 0;
	point = (long)d->integer_len + d->exponent + shift;
	if (point - first > 20)
		return cap;

	for (i = first; i < point; i++) {
		unsigned int digit = (unsigned int)(arl_headers_decimal_digit(d, i) - '0');

		if (value > (cap - digit) / 10)
			return cap;
		value = value * 10 + digit;
	}
	for (i = point > first ? point : first; i < total; i++) {
		if (arl_headers_decimal_digit(d, i) != '0')
			return arl_headers_add_capped(value, 1, cap);
	}
	return value;
}

/*
 * Reads digits, an optional fraction and, with @allow_exponent, an optional
 * exponent from @s. Returns the number of bytes read, or 0 when @s does not
 * start with a digit or the number is malformed.
 */
static inline size_t arl_headers_read_decimal(const char *s, size_t len, bool allow_exponent,
					      struct arl_headers_decimal *d)
{
	size_t i = 0;

	memset(d, 0, sizeof(*d));
	d->integer = s;
	while (i < len && arl_headers_is_digit(s[i]))
		i++;
	d->integer_len = i;
	if (i == 0)
		return 0;

	if (i < len && s[i] == '.') {
		size_t start = ++i;

		while (i < len && arl_headers_is_digit(s[i]))
			i++;
		if (i == start)
			return 0;
		d->fraction = s + start;
		d->fraction_len = i - start;
	}

	if (allow_exponent && i < len && (s[i] == 'e' || s[i] == 'E')) {
		bool negative = false;
		size_t start;
		long exponent = 0;

		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			negative = s[i++] == '-';
		start = i;
		while (i < len && arl_headers_is_digit(s[i])) {
			/* Anything past 10^100000 saturates or rounds up alike. */
			if (exponent < 100000)
				exponent = exponent * 10 + (s[i] - '0');
			i++;
		}
		if (i == start)
			return 0;
		d->exponent = negative ? -exponent : exponent;
	}
	return i;
}

/*
 * Parses a count: digits only, no sign, fitting in 64 bits. Returns false
 * for anything else ("-1", "NaN", "", "1.5").
 */
static inline bool arl_headers_parse_count(const char *s, size_t len, uint64_t *out)
{
	uint64_t value = 0;
	size_t i;

	arl_headers_trim(&s, &len);
	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned int digit;

		if (!arl_headers_is_digit(s[i]))
			return false;
		digit = (unsigned int)(s[i] - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	*out = value;
	return true;
}

/*
 * Parses a duration as Go prints one ("1h4m48s", "2m59.56s", "12ms", "0s")
 * or a bare number of seconds ("2", "1.5"). Units: h, m, s, ms, us, µs, ns.
 * Stores milliseconds rounded up and capped at ARL_HEADERS_MAX_WAIT_MS.
 */
static inline bool arl_headers_parse_duration(const char *s, size_t len, uint64_t *out_ms)
{
	uint64_t total_ns = 0;
	size_t i = 0;

	arl_headers_trim(&s, &len);
	if (len == 0)
		return false;

	while (i < len) {
		struct arl_headers_decimal d;
		size_t n = arl_headers_read_decimal(s + i, len - i, false, &d);
		const char *unit;
		size_t unit_len;
		long shift;
		uint64_t multiplier = 1;
		uint64_t ns;

		if (n == 0)
			return false;
		i += n;
		unit = s + i;
		unit_len = len - i;

		if (unit_len == 0 && i == n) {
			/* A bare number is seconds, as in Retry-After. */
			shift = 9;
		} else if (arl_headers_starts_with(unit, unit_len, "ms")) {
			shift = 6;
			i += 2;
		} else if (arl_headers_starts_with(unit, unit_len, "us")) {
			shift = 3;
			i += 2;
		} else if (arl_headers_starts_with(unit, unit_len, "\xC2\xB5s") ||
			   arl_headers_starts_with(unit, unit_len, "\xCE\xBCs")) {
			shift = 3;
			i += 3;
		} else if (arl_headers_starts_with(unit, unit_len, "ns")) {
			shift = 0;
			i += 2;
		} else if (arl_headers_starts_with(unit, unit_len, "h")) {
			shift = 9;
			multiplier = 3600;
			i += 1;
		} else if (arl_headers_starts_with(unit, unit_len, "m")) {
			shift = 9;
			multiplier = 60;
			i += 1;
		} else if (arl_headers_starts_with(unit, unit_len, "s")) {
			shift = 9;
			i += 1;
		} else {
			return false;
		}

		ns = arl_headers_decimal_scale(&d, shift, ARL_HEADERS_NS_CAP);
		ns = arl_headers_mul_capped(ns, multiplier, ARL_HEADERS_NS_CAP);
		total_ns = arl_headers_add_capped(total_ns, ns, ARL_HEADERS_NS_CAP);
	}

	total_ns = total_ns / 1000000 + (total_ns % 1000000 != 0);
	*out_ms = total_ns > ARL_HEADERS_MAX_WAIT_MS ? ARL_HEADERS_MAX_WAIT_MS : total_ns;
	return true;
}

/*
 * Parses delay-seconds of Retry-After, also with a fraction or an exponent
 * ("2", "1.5", "1e400"). Stores milliseconds rounded up and capped.
 */
static inline bool arl_headers_parse_seconds(const char *s, size_t len, long shift,
					     uint64_t *out_ms)
{
	struct arl_headers_decimal d;

	arl_headers_trim(&s, &len);
	if (len == 0 || arl_headers_read_decimal(s, len, true, &d) != len)
		return false;
	*out_ms = arl_headers_decimal_scale(&d, shift, ARL_HEADERS_MAX_WAIT_MS);
	return true;
}

/* Days from 1970-01-01 to the proleptic Gregorian date @y-@m-@d. */
static inline int64_t arl_headers_days_from_civil(int64_t y, unsigned int m, unsigned int d)
{
	int64_t era;
	int64_t year_of_era;
	int64_t day_of_year;
	int64_t day_of_era;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	year_of_era = y - era * 400;
	day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
	return era * 146097 + day_of_era - 719468;
}

static inline unsigned int arl_headers_days_in_month(int64_t y, unsigned int m)
{
	static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* A cursor over a date string. */
struct arl_headers_cursor {
	const char *s;
	size_t len;
	size_t pos;
	bool failed;
};

/* Reads exactly @n digits. */
static inline unsigned int arl_headers_cursor_digits(struct arl_headers_cursor *c, size_t n)
{
	unsigned int value = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (c->pos >= c->len || !arl_headers_is_digit(c->s[c->pos])) {
			c->failed = true;
			return 0;
		}
		value = value * 10 + (unsigned int)(c->s[c->pos++] - '0');
	}
	return value;
}

static inline void arl_headers_cursor_expect(struct arl_headers_cursor *c, char expected)
{
	if (c->pos >= c->len || c->s[c->pos] != expected)
		c->failed = true;
	else
		c->pos++;
}

/* Reads a three-letter English month name. Returns 1 to 12, or 0. */
static inline unsigned int arl_headers_cursor_month(struct arl_headers_cursor *c)
{
	static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	char lower[3];
	unsigned int m;

	if (c->len - c->pos < 3) {
		c->failed = true;
		return 0;
	}
	lower[0] = arl_headers_lower(c->s[c->pos]);
	lower[1] = arl_headers_lower(c->s[c->pos + 1]);
	lower[2] = arl_headers_lower(c->s[c->pos + 2]);
	for (m = 0; m < 12; m++) {
		if (memcmp(names + 3 * m, lower, 3) == 0) {
			c->pos += 3;
			return m + 1;
		}
	}
	c->failed = true;
	return 0;
}

/* Reads "HH:MM:SS" into seconds of the day. A leap second 60 is accepted. */
static inline int64_t arl_headers_cursor_time(struct arl_headers_cursor *c)
{
	unsigned int h = arl_headers_cursor_digits(c, 2);
	unsigned int mi;
	unsigned int sec;

	arl_headers_cursor_expect(c, ':');
	mi = arl_headers_cursor_digits(c, 2);
	arl_headers_cursor_expect(c, ':');
	sec = arl_headers_cursor_digits(c, 2);
	if (h > 23 || mi > 59 || sec > 60)
		c->failed = true;
	return (int64_t)h * 3600 + mi * 60 + sec;
}

static inline bool arl_headers_civil_to_ms(int64_t y, unsigned int m, unsigned int d,
					   int64_t seconds, int64_t *out_ms)
{
	if (m < 1 || m > 12 || d < 1 || d > arl_headers_days_in_month(y, m))
		return false;
	*out_ms = (arl_headers_days_from_civil(y, m, d) * 86400 + seconds) * 1000;
	return true;
}

/*
 * Parses an RFC 3339 time: "2024-03-26T20:00:00Z", with an optional fraction
 * (rounded up to a millisecond) and "Z" or an offset "+01:00".
 */
static inline bool arl_headers_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
	struct arl_headers_cursor c = {s, len, 0, false};
	unsigned int y, m, d;
	int64_t seconds;
	int64_t fraction_ms = 0;
	int64_t offset = 0;
	int64_t ms;

	y = arl_headers_cursor_digits(&c, 4);
	arl_headers_cursor_expect(&c, '-');
	m = arl_headers_cursor_digits(&c, 2);
	arl_headers_cursor_expect(&c, '-');
	d = arl_headers_cursor_digits(&c, 2);
	if (c.failed || c.pos >= len || (s[c.pos] != 'T' && s[c.pos] != 't' && s[c.pos] != ' '))
		return false;
	c.pos++;
	seconds = arl_headers_cursor_time(&c);

	if (!c.failed && c.pos < len && s[c.pos] == '.') {
		struct arl_headers_decimal frac;

		c.pos++;
		if (c.pos >= len || !arl_headers_is_digit(s[c.pos]))
			return false;
		memset(&frac, 0, sizeof(frac));
		frac.fraction = s + c.pos;
		while (c.pos < len && arl_headers_is_digit(s[c.pos]))
			c.pos++;
		frac.fraction_len = (size_t)(s + c.pos - frac.fraction);
		fraction_ms = (int64_t)arl_headers_decimal_scale(&frac, 3, 1000);
	}

	if (c.failed || c.pos >= len)
		return false;
	if (s[c.pos] == 'Z' || s[c.pos] == 'z') {
		c.pos++;
	} else if (s[c.pos] == '+' || s[c.pos] == '-') {
		int sign = s[c.pos] == '-' ? -1 : 1;
		unsigned int oh;
		unsigned int om;

		c.pos++;
		oh = arl_headers_cursor_digits(&c, 2);
		arl_headers_cursor_expect(&c, ':');
		om = arl_headers_cursor_digits(&c, 2);
		if (oh > 23 || om > 59)
			return false;
		offset = sign * ((int64_t)oh * 3600 + om * 60);
	} else {
		return false;
	}
	if (c.failed || c.pos != len)
		return false;

	if (!arl_headers_civil_to_ms(y, m, d, seconds - offset, &ms))
		return false;
	*out_ms = ms + fraction_ms;
	return true;
}

/* Skips a day name ("Tue", "Tuesday") and the characters that follow it. */
static inline void arl_headers_cursor_skip_day(struct arl_headers_cursor *c)
{
	size_t start = c->pos;

	while (c->pos < c->len && ((c->s[c->pos] >= 'A' && c->s[c->pos] <= 'Z') ||
				   (c->s[c->pos] >= 'a' && c->s[c->pos] <= 'z')))
		c->pos++;
	if (c->pos - start < 3)
		c->failed = true;
}

/*
 * Parses an HTTP date in any of the three forms RFC 9110 requires a recipient
 * to accept: "Tue, 26 Mar 2024 20:00:30 GMT", the obsolete RFC 850 form
 * "Tuesday, 26-Mar-24 20:00:30 GMT" and asctime's "Tue Mar 26 20:00:30 2024".
 */
static inline bool arl_headers_parse_http_date(const char *s, size_t len, int64_t *out_ms)
{
	struct arl_headers_cursor c = {s, len, 0, false};
	unsigned int d;
	unsigned int m;
	int64_t y;
	int64_t seconds;

	arl_headers_cursor_skip_day(&c);
	if (c.failed)
		return false;

	if (c.pos < len && s[c.pos] == ',') {
		c.pos++;
		arl_headers_cursor_expect(&c, ' ');
		d = arl_headers_cursor_digits(&c, 2);
		if (c.pos < len && s[c.pos] == '-') {
			/* RFC 850: a two-digit year, read as 1970 to 2069. */
			c.pos++;
			m = arl_headers_cursor_month(&c);
			arl_headers_cursor_expect(&c, '-');
			y = arl_headers_cursor_digits(&c, 2);
			y += y < 70 ? 2000 : 1900;
		} else {
			arl_headers_cursor_expect(&c, ' ');
			m = arl_headers_cursor_month(&c);
			arl_headers_cursor_expect(&c, ' ');
			y = arl_headers_cursor_digits(&c, 4);
		}
		arl_headers_cursor_expect(&c, ' ');
		seconds = arl_headers_cursor_time(&c);
		arl_headers_cursor_expect(&c, ' ');
		arl_headers_cursor_expect(&c, 'G');
		arl_headers_cursor_expect(&c, 'M');
		arl_headers_cursor_expect(&c, 'T');
	} else {
		/* asctime: the day of the month is padded with a space. */
		arl_headers_cursor_expect(&c, ' ');
		m = arl_headers_cursor_month(&c);
		arl_headers_cursor_expect(&c, ' ');
		if (c.pos < len && s[c.pos] == ' ') {
			c.pos++;
			d = arl_headers_cursor_digits(&c, 1);
		} else {
			d = arl_headers_cursor_digits(&c, 2);
		}
		arl_headers_cursor_expect(&c, ' ');
		seconds = arl_headers_cursor_time(&c);
		arl_headers_cursor_expect(&c, ' ');
		y = arl_headers_cursor_digits(&c, 4);
	}
	if (c.failed || c.pos != len)
		return false;
	return arl_headers_civil_to_ms(y, m, d, seconds, out_ms);
}

static inline bool arl_headers_parse_time(const char *s, size_t len, int64_t *out_ms)
{
	arl_headers_trim(&s, &len);
	return arl_headers_parse_rfc3339(s, len, out_ms) ||
	       arl_headers_parse_http_date(s, len, out_ms);
}

/*
 * Steps to the next comma-separated element of a list value, starting at
 * *@pos. Returns false when the list is used up.
 */
static inline bool arl_headers_next_element(const char *value, size_t len, size_t *pos,
					    const char **element, size_t *element_len)
{
	size_t end = *pos;

	if (*pos > len)
		return false;
	while (end < len && value[end] != ',')
		end++;
	*element = value + *pos;
	*element_len = end - *pos;
	*pos = end + 1;
	return true;
}

/* Parses a list of counts and stores the smallest valid one. */
static inline bool arl_headers_parse_count_list(const char *value, size_t len, uint64_t *out)
{
	bool found = false;
	uint64_t smallest = 0;
	const char *element;
	size_t element_len;
	size_t pos = 0;

	while (arl_headers_next_element(value, len, &pos, &element, &element_len)) {
		uint64_t n;

		if (arl_headers_parse_count(element, element_len, &n) && (!found || n < smallest)) {
			smallest = n;
			found = true;
		}
	}
	if (found)
		*out = smallest;
	return found;
}

static inline void arl_headers_keep_min(bool *has, uint64_t *current, uint64_t value)
{
	if (!*has || value < *current)
		*current = value;
	*has = true;
}

static inline void arl_headers_keep_max(bool *has, uint64_t *current, uint64_t value)
{
	if (!*has || value > *current)
		*current = value;
	*has = true;
}

static inline void arl_headers_keep_max_time(bool *has, int64_t *current, int64_t value)
{
	if (!*has || value > *current)
		*current = value;
	*has = true;
}

/* Records a reset header: a duration, a list of durations, or an absolute time. */
static inline void arl_headers_record_reset(struct arl_headers_pending *f, const char *value,
					    size_t len)
{
	int64_t at_ms;
	const char *element;
	size_t element_len;
	size_t pos = 0;

	if (arl_headers_parse_time(value, len, &at_ms)) {
		arl_headers_keep_max_time(&f->has_reset_at, &f->reset_at_ms, at_ms);
		return;
	}
	while (arl_headers_next_element(value, len, &pos, &element, &element_len)) {
		uint64_t ms;

		if (arl_headers_parse_time(element, element_len, &at_ms))
			arl_headers_keep_max_time(&f->has_reset_at, &f->reset_at_ms, at_ms);
		else if (arl_headers_parse_duration(element, element_len, &ms))
			arl_headers_keep_max(&f->has_reset_after, &f->reset_after_ms, ms);
	}
}

/* Records Retry-After: an HTTP date, or delay-seconds (a list keeps the longest). */
static inline void arl_headers_record_retry_after(struct arl_headers_parser *p, const char *value,
						  size_t len)
{
	int64_t at_ms;
	const char *element;
	size_t element_len;
	size_t pos = 0;

	if (arl_headers_parse_time(value, len, &at_ms)) {
		arl_headers_keep_max_time(&p->has_retry_at, &p->retry_at_ms, at_ms);
		return;
	}
	while (arl_headers_next_element(value, len, &pos, &element, &element_len)) {
		uint64_t ms;

		if (arl_headers_parse_seconds(element, element_len, 3, &ms))
			arl_headers_keep_max(&p->has_retry_after, &p->retry_after, ms);
	}
}

static inline void arl_headers_record_retry_after_ms(struct arl_headers_parser *p,
						     const char *value, size_t len)
{
	const char *element;
	size_t element_len;
	size_t pos = 0;

	while (arl_headers_next_element(value, len, &pos, &element, &element_len)) {
		uint64_t ms;

		if (arl_headers_parse_seconds(element, element_len, 0, &ms))
			arl_headers_keep_max(&p->has_retry_after_ms, &p->retry_after_ms, ms);
	}
}

ARL_HEADERS_API int arl_headers_parser_init(struct arl_headers_parser *p,
					    enum arl_provider provider)
{
	if (p == NULL)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	if ((int)provider < 0 || provider >= ARL_PROVIDER_COUNT)
		return -EINVAL;
	p->provider = provider;
	return 0;
}

ARL_HEADERS_API int arl_headers_parser_header(struct arl_headers_parser *p, const char *name,
					      size_t name_len, const char *value,
					      size_t value_len)
{
	const struct arl_headers_profile *profile;
	size_t i;

	if (p == NULL || name == NULL || (value == NULL && value_len > 0))
		return -EINVAL;
	if (value == NULL)
		value = "";
	arl_headers_trim(&value, &value_len);

	if (name_len < sizeof(p->last_name)) {
		memcpy(p->last_name, name, name_len);
		p->last_name_len = name_len;
	} else {
		p->last_name_len = 0;
	}

	if (arl_headers_name_equal(name, name_len, "date")) {
		int64_t ms;

		if (arl_headers_parse_time(value, value_len, &ms)) {
			p->date_ms = ms;
			p->has_date = true;
		}
		return 0;
	}
	if (arl_headers_name_equal(name, name_len, "retry-after")) {
		arl_headers_record_retry_after(p, value, value_len);
		return 0;
	}
	if (arl_headers_name_equal(name, name_len, "retry-after-ms")) {
		arl_headers_record_retry_after_ms(p, value, value_len);
		return 0;
	}

	profile = &arl_headers_profiles[p->provider];
	for (i = 0; i < profile->count; i++) {
		const struct arl_headers_name *h = &profile->headers[i];
		struct arl_headers_pending *f = &p->families[h->family];
		uint64_t n;

		if (!arl_headers_name_equal(name, name_len, h->name))
			continue;
		switch (h->field) {
		case ARL_HEADERS_FIELD_LIMIT:
			/* A limit of 0 would make every request wait for ever: unknown. */
			if (arl_headers_parse_count_list(value, value_len, &n) && n > 0)
				arl_headers_keep_min(&f->has_limit, &f->limit, n);
			break;
		case ARL_HEADERS_FIELD_REMAINING:
			if (arl_headers_parse_count_list(value, value_len, &n))
				arl_headers_keep_min(&f->has_remaining, &f->remaining, n);
			break;
		case ARL_HEADERS_FIELD_RESET:
			arl_headers_record_reset(f, value, value_len);
			break;
		}
		break;
	}
	return 0;
}

/* Parses "HTTP/1.1 429 Reason" or "HTTP/2 200". Returns the status, or 0. */
static inline int arl_headers_parse_status_line(const char *line, size_t len)
{
	size_t i = 5;
	int status = 0;
	size_t digits;

	if (!arl_headers_starts_with(line, len, "HTTP/"))
		return 0;
	while (i < len && line[i] != ' ')
		i++;
	while (i < len && line[i] == ' ')
		i++;
	for (digits = 0; digits < 3; digits++, i++) {
		if (i >= len || !arl_headers_is_digit(line[i]))
			return 0;
		status = status * 10 + (line[i] - '0');
	}
	if (i < len && line[i] != ' ')
		return 0;
	return status >= 100 && status <= 599 ? status : 0;
}

ARL_HEADERS_API int arl_headers_parser_line(struct arl_headers_parser *p, const char *line,
					    size_t len)
{
	const char *colon;
	int status;

	if (p == NULL || (line == NULL && len > 0))
		return -EINVAL;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 0)
		return 0;

	status = arl_headers_parse_status_line(line, len);
	if (status != 0) {
		arl_headers_parser_init(p, p->provider);
		p->status = status;
		return 0;
	}

	/* obs-fold: a continuation line extends the previous header, like a list element. */
	if (arl_headers_is_space(line[0])) {
		if (p->last_name_len > 0) {
			char name[sizeof(p->last_name)];
			size_t name_len = p->last_name_len;

			memcpy(name, p->last_name, name_len);
			return arl_headers_parser_header(p, name, name_len, line, len);
		}
		return 0;
	}

	colon = (const char *)memchr(line, ':', len);
	/* RFC 9112 forbids whitespace between the name and the colon. */
	if (colon == NULL || colon == line || arl_headers_is_space(colon[-1])) {
		p->last_name_len = 0;
		return 0;
	}
	return arl_headers_parser_header(p, line, (size_t)(colon - line), colon + 1,
					 len - (size_t)(colon - line) - 1);
}

/* JSON helpers over jsmn tokens, as in arl/stream.h but kept separate so neither header needs the other. */

static inline int arl_headers_json_skip(const jsmntok_t *tokens, int count, int i)
{
	int pending = 1;

	while (pending > 0 && i < count) {
		pending += tokens[i].size;
		pending--;
		i++;
	}
	return i;
}

static inline int arl_headers_json_member(const char *js, const jsmntok_t *tokens, int count,
					  int object, const char *key)
{
	int i;
	int member;

	if (object < 0 || object >= count || tokens[object].type != JSMN_OBJECT)
		return -1;
	i = object + 1;
	for (member = 0; member < tokens[object].size && i + 1 < count; member++) {
		const jsmntok_t *name = &tokens[i];
		size_t name_len = (size_t)(name->end - name->start);

		if (name->type == JSMN_STRING && name_len == strlen(key) &&
		    memcmp(js + name->start, key, name_len) == 0)
			return i + 1;
		i = arl_headers_json_skip(tokens, count, i + 1);
	}
	return -1;
}

/* Returns the text of token @i when it is a string or a number, else NULL. */
static inline const char *arl_headers_json_text(const char *js, const jsmntok_t *tokens, int i,
						size_t *len)
{
	if (i < 0 || (tokens[i].type != JSMN_STRING && tokens[i].type != JSMN_PRIMITIVE))
		return NULL;
	*len = (size_t)(tokens[i].end - tokens[i].start);
	return js + tokens[i].start;
}

static inline bool arl_headers_ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Reads the count that follows @label in @s ("Limit 30000"). */
static inline bool arl_headers_count_after(const char *s, size_t len, const char *label,
					   uint64_t *out)
{
	size_t at = arl_headers_find(s, len, label);
	size_t start;
	size_t end;

	if (at == len)
		return false;
	start = at + strlen(label);
	end = start;
	while (end < len && arl_headers_is_digit(s[end]))
		end++;
	return arl_headers_parse_count(s + start, end - start, out);
}

/*
 * Reads an OpenAI-style rate-limit message, as OpenAI and Groq write them:
 * "... on tokens per min (TPM): Limit 30000, Requested 36278. ..." means the
 * request can never fit, and "Please try again in 3.06s." gives the wait.
 */
static inline void arl_headers_read_message(struct arl_headers_parser *p, const char *msg,
					    size_t len)
{
	uint64_t limit;
	uint64_t requested;
	size_t at;

	if (arl_headers_count_after(msg, len, "Limit ", &limit) &&
	    arl_headers_count_after(msg, len, "Requested ", &requested) && requested > limit) {
		bool requests = arl_headers_find(msg, len, "(RPM)") < len ||
				arl_headers_find(msg, len, "(RPD)") < len ||
				arl_headers_find(msg, len, "requests per") < len;

		p->never_fits = true;
		p->never_fits_family = requests ? ARL_HEADERS_REQUESTS : ARL_HEADERS_TOKENS;
		p->never_fits_limit = limit;
		p->never_fits_requested = requested;
	}

	at = arl_headers_find(msg, len, "try again in ");
	if (at < len) {
		size_t start = at + strlen("try again in ");
		size_t end = start;
		uint64_t ms;

		while (end < len && msg[end] != ' ' && msg[end] != ',')
			end++;
		/* The sentence's full stop follows the duration. */
		if (end > start && msg[end - 1] == '.')
			end--;
		if (arl_headers_parse_duration(msg + start, end - start, &ms))
			arl_headers_keep_max(&p->has_body_retry, &p->body_retry_ms, ms);
	}
}

/*
 * Reads a quota id of Gemini's QuotaFailure, such as
 * "GenerateRequestsPerDayPerProjectPerModel-FreeTier". Returns false when the
 * family or the window cannot be told.
 */
static inline bool arl_headers_gemini_quota(const char *id, size_t len,
					    enum arl_headers_family *family, uint64_t *window_ms)
{
	if (arl_headers_find(id, len, "InputTokens") < len)
		*family = ARL_HEADERS_INPUT_TOKENS;
	else if (arl_headers_find(id, len, "OutputTokens") < len)
		*family = ARL_HEADERS_OUTPUT_TOKENS;
	else if (arl_headers_find(id, len, "Tokens") < len)
		*family = ARL_HEADERS_TOKENS;
	else if (arl_headers_find(id, len, "Requests") < len)
		*family = ARL_HEADERS_REQUESTS;
	else
		return false;

	if (arl_headers_find(id, len, "PerDay") < len)
		*window_ms = ARL_HEADERS_DAY_MS;
	else if (arl_headers_find(id, len, "PerHour") < len)
		*window_ms = ARL_HEADERS_HOUR_MS;
	else if (arl_headers_find(id, len, "PerMinute") < len)
		*window_ms = ARL_HEADERS_MINUTE_MS;
	else if (arl_headers_find(id, len, "PerSecond") < len)
		*window_ms = ARL_HEADERS_SECOND_MS;
	else
		return false;
	return true;
}

/*
 * Records one violation of a QuotaFailure: the quota is used up, so
 * remaining is 0. Of several violations of one family, the longest window
 * wins, because a daily quota used up blocks longer than a per-minute one.
 */
static inline void arl_headers_read_violation(struct arl_headers_parser *p, const char *js,
					      const jsmntok_t *tokens, int count, int violation)
{
	enum arl_headers_family family;
	uint64_t window_ms;
	uint64_t limit;
	struct arl_headers_pending *f;
	size_t id_len = 0;
	size_t value_len = 0;
	const char *id = arl_headers_json_text(
	    js, tokens, arl_headers_json_member(js, tokens, count, violation, "quotaId"), &id_len);
	const char *value = arl_headers_json_text(
	    js, tokens, arl_headers_json_member(js, tokens, count, violation, "quotaValue"),
	    &value_len);

	if (id == NULL || value == NULL || !arl_headers_gemini_quota(id, id_len, &family, &window_ms))
		return;
	if (!arl_headers_parse_count(value, value_len, &limit) || limit == 0)
		return;

	f = &p->families[family];
	if (f->window_ms > window_ms || (f->window_ms == window_ms && f->has_limit && f->limit <= limit))
		return;
	f->has_limit = true;
	f->limit = limit;
	f->has_remaining = true;
	f->remaining = 0;
	f->window_ms = window_ms;
}

/* Reads the "details" array of a Google API error (google.rpc.Status). */
static inline void arl_headers_read_details(struct arl_headers_parser *p, const char *js,
					    const jsmntok_t *tokens, int count, int details)
{
	int element;
	int i;

	if (details < 0 || tokens[details].type != JSMN_ARRAY)
		return;
	i = details + 1;
	for (element = 0; element < tokens[details].size && i < count; element++) {
		size_t type_len = 0;
		const char *type = arl_headers_json_text(
		    js, tokens, arl_headers_json_member(js, tokens, count, i, "@type"), &type_len);

		if (type != NULL && arl_headers_ends_with(type, type_len, "google.rpc.RetryInfo")) {
			size_t delay_len = 0;
			const char *delay = arl_headers_json_text(
			    js, tokens, arl_headers_json_member(js, tokens, count, i, "retryDelay"),
			    &delay_len);
			uint64_t ms;

			if (delay != NULL && arl_headers_parse_duration(delay, delay_len, &ms))
				arl_headers_keep_max(&p->has_body_retry, &p->body_retry_ms, ms);
		} else if (type != NULL && p->provider == ARL_PROVIDER_GEMINI &&
			   arl_headers_ends_with(type, type_len, "google.rpc.QuotaFailure")) {
			int violations = arl_headers_json_member(js, tokens, count, i, "violations");
			int v;
			int j;

			if (violations >= 0 && tokens[violations].type == JSMN_ARRAY) {
				j = violations + 1;
				for (v = 0; v < tokens[violations].size && j < count; v++) {
					arl_headers_read_violation(p, js, tokens, count, j);
					j = arl_headers_json_skip(tokens, count, j);
				}
			}
		}
		i = arl_headers_json_skip(tokens, count, i);
	}
}

ARL_HEADERS_API int arl_headers_parser_body(struct arl_headers_parser *p, const void *body,
					    size_t len)
{
	const char *js = (const char *)body;
	jsmn_parser parser;
	jsmntok_t *tokens;
	int count;
	int root = 0;
	int error;
	int member;
	size_t text_len = 0;
	const char *text;

	if (p == NULL || (body == NULL && len > 0))
		return -EINVAL;
	if (len == 0 || len > ARL_HEADERS_MAX_BODY_BYTES)
		return 0;

	/* A first pass counts the tokens, so the array fits the body exactly. */
	jsmn_init(&parser);
	count = jsmn_parse(&parser, js, len, NULL, 0);
	if (count <= 0)
		return 0;
	tokens = (jsmntok_t *)malloc((size_t)count * sizeof(*tokens));
	if (tokens == NULL)
		return -ENOMEM;
	jsmn_init(&parser);
	count = jsmn_parse(&parser, js, len, tokens, (unsigned int)count);
	if (count <= 0) {
		free(tokens);
		return 0;
	}

	/* Gemini's streaming endpoint wraps the error in an array. */
	if (tokens[0].type == JSMN_ARRAY && tokens[0].size > 0 && count > 1)
		root = 1;
	error = arl_headers_json_member(js, tokens, count, root, "error");
	if (error >= 0 && tokens[error].type == JSMN_OBJECT) {
		member = arl_headers_json_member(js, tokens, count, error, "message");
		text = arl_headers_json_text(js, tokens, member, &text_len);
		if (text != NULL)
			arl_headers_read_message(p, text, text_len);
		arl_headers_read_details(
		    p, js, tokens, count, arl_headers_json_member(js, tokens, count, error, "details"));
	}
	free(tokens);
	return 0;
}

/* Milliseconds from @base_ms to @at_ms, 0 when @at_ms is past, capped at 7 days. */
static inline uint64_t arl_headers_until(int64_t at_ms, int64_t base_ms)
{
	uint64_t wait;

	if (at_ms <= base_ms)
		return 0;
	wait = (uint64_t)at_ms - (uint64_t)base_ms;
	return wait > ARL_HEADERS_MAX_WAIT_MS ? ARL_HEADERS_MAX_WAIT_MS : wait;
}

static inline void arl_headers_finish_family(const struct arl_headers_parser *p,
					     enum arl_headers_family family, int64_t base_ms,
					     struct arl_headers_limit *out)
{
	const struct arl_headers_profile *profile = &arl_headers_profiles[p->provider];
	const struct arl_headers_pending *f = &p->families[family];

	out->has_limit = f->has_limit;
	out->limit = f->limit;
	out->has_remaining = f->has_remaining;
	out->remaining = f->remaining;
	if (out->has_limit && out->has_remaining && out->remaining > out->limit)
		out->remaining = out->limit;
	out->remaining_approximate =
	    out->has_remaining && (profile->approximate & (1u << family)) != 0;

	/* A reset tells when the remaining refills, so without remaining it means nothing. */
	if (out->has_remaining && f->has_reset_at) {
		out->has_reset = true;
		out->reset_ms = arl_headers_until(f->reset_at_ms, base_ms);
	}
	if (out->has_remaining && f->has_reset_after &&
	    (!out->has_reset || f->reset_after_ms > out->reset_ms)) {
		out->has_reset = true;
		out->reset_ms = f->reset_after_ms;
	}

	out->window_ms = f->window_ms != 0 ? f->window_ms : profile->windows[family];
	out->has_window = (out->has_limit || out->has_remaining) && out->window_ms != 0;
	if (!out->has_window)
		out->window_ms = 0;
}

ARL_HEADERS_API void arl_headers_parser_finish(const struct arl_headers_parser *p,
					       int64_t now_unix_ms, struct arl_headers_result *out)
{
	int64_t base_ms = p->has_date ? p->date_ms : now_unix_ms;
	bool body_counts = p->status == 0 || p->status == 429;
	int family;

	memset(out, 0, sizeof(*out));
	out->status = p->status;

	if (p->has_retry_after_ms) {
		out->has_retry_after = true;
		out->retry_after_ms = p->retry_after_ms;
	} else if (p->has_retry_after) {
		out->has_retry_after = true;
		out->retry_after_ms = p->retry_after;
	} else if (p->has_retry_at) {
		out->has_retry_after = true;
		out->retry_after_ms = arl_headers_until(p->retry_at_ms, base_ms);
	} else if (body_counts && p->has_body_retry) {
		out->has_retry_after = true;
		out->retry_after_ms = p->body_retry_ms;
	}

	if (body_counts && p->never_fits) {
		out->never_fits = true;
		out->never_fits_family = p->never_fits_family;
		out->never_fits_limit = p->never_fits_limit;
		out->never_fits_requested = p->never_fits_requested;
	}

	for (family = 0; family < ARL_HEADERS_FAMILIES; family++)
		arl_headers_finish_family(p, (enum arl_headers_family)family, base_ms,
					  &out->limits[family]);
}

/* Returns the length of the line at @text (without its LF) and sets *@next past it. */
static inline size_t arl_headers_next_line(const char *text, size_t len, size_t *next)
{
	const char *lf = (const char *)memchr(text, '\n', len);

	if (lf == NULL) {
		*next = len;
		return len;
	}
	*next = (size_t)(lf - text) + 1;
	return (size_t)(lf - text);
}

ARL_HEADERS_API int arl_headers_parse(const char *text, size_t len, enum arl_provider provider,
				      int64_t now_unix_ms, struct arl_headers_result *out)
{
	struct arl_headers_parser p;
	size_t pos = 0;
	int ret;

	if ((text == NULL && len > 0) || out == NULL)
		return -EINVAL;
	ret = arl_headers_parser_init(&p, provider);
	if (ret < 0)
		return ret;

	while (pos < len) {
		size_t next;
		size_t line_len = arl_headers_next_line(text + pos, len - pos, &next);
		const char *line = text + pos;

		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;
		pos += next;
		if (line_len > 0) {
			arl_headers_parser_line(&p, line, line_len);
			continue;
		}
		/* The blank line ends the head. Another head may follow it. */
		if (!arl_headers_starts_with(text + pos, len - pos, "HTTP/")) {
			ret = arl_headers_parser_body(&p, text + pos, len - pos);
			if (ret < 0)
				return ret;
			break;
		}
	}
	arl_headers_parser_finish(&p, now_unix_ms, out);
	return 0;
}

ARL_HEADERS_API const char *arl_provider_name(enum arl_provider provider)
{
	if ((int)provider < 0 || provider >= ARL_PROVIDER_COUNT)
		return NULL;
	return arl_headers_profiles[provider].name;
}

ARL_HEADERS_API int arl_provider_from_name(const char *name, enum arl_provider *out)
{
	int i;

	if (name == NULL || out == NULL)
		return -EINVAL;
	for (i = 0; i < ARL_PROVIDER_COUNT; i++) {
		if (strcmp(name, arl_headers_profiles[i].name) == 0) {
			*out = (enum arl_provider)i;
			return 0;
		}
	}
	return -EINVAL;
}

ARL_HEADERS_API const char *arl_headers_window_name(uint64_t window_ms)
{
	switch (window_ms) {
	case ARL_HEADERS_SECOND_MS:
		return "second";
	case 10 * ARL_HEADERS_SECOND_MS:
		return "10 seconds";
	case ARL_HEADERS_MINUTE_MS:
		return "minute";
	case ARL_HEADERS_HOUR_MS:
		return "hour";
	case ARL_HEADERS_DAY_MS:
		return "day";
	default:
		return NULL;
	}
}

/* Milliseconds to nanoseconds; every value here is at most a week. */
ARL_HEADERS_API uint64_t arl_headers_ns(uint64_t ms)
{
	return ms > ARL_HEADERS_MAX_WAIT_MS ? ARL_HEADERS_MAX_WAIT_MS * 1000000ull : ms * 1000000ull;
}

/*
 * Converts a parse result into the observation arl_bucket_observe() takes.
 * received_ns is arl_now() when the response head arrived. The resets and
 * the retry time are relative to it, so they become deadlines on arl's
 * monotonic clock, however far off the local wall clock is. A family whose
 * window the profile does not know is left out: its counts could not be
 * matched with a bucket limit.
 */
ARL_HEADERS_API void arl_headers_to_observation(const struct arl_headers_result *r,
						uint64_t received_ns, struct arl_observation *o)
{
	static const uint32_t units[ARL_HEADERS_FAMILIES] = {
		ARL_UNIT_REQUESTS, ARL_UNIT_TOKENS, ARL_UNIT_INPUT_TOKENS, ARL_UNIT_OUTPUT_TOKENS};
	int f;

	memset(o, 0, sizeof(*o));
	o->status = r->status > 0 ? (uint32_t)r->status : 0;
	o->retry_after_known = r->has_retry_after;
	o->retry_after_ns = arl_headers_ns(r->retry_after_ms);
	o->never_fits = r->never_fits;
	o->received_ns = received_ns;
	for (f = 0; f < ARL_HEADERS_FAMILIES && o->nlimits < ARL_MAX_LIMITS; f++) {
		const struct arl_headers_limit *h = &r->limits[f];
		struct arl_observed_limit *l = &o->limits[o->nlimits];

		if (!h->has_window || !(h->has_limit || h->has_remaining || h->has_reset))
			continue;
		l->unit = units[f];
		l->window_ns = arl_headers_ns(h->window_ms);
		l->known = (h->has_limit ? ARL_OBSERVED_LIMIT : 0u) |
			   (h->has_remaining ? ARL_OBSERVED_REMAINING : 0u) |
			   (h->has_reset ? ARL_OBSERVED_RESET : 0u);
		l->limit = h->limit;
		l->remaining = h->remaining;
		l->reset_ns = arl_headers_ns(h->reset_ms);
		o->nlimits++;
	}
}

#ifdef __cplusplus
}
#endif

#endif /* ARL_HEADERS_H */
