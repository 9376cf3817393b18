/*
 * arl-mock-provider: a mock LLM provider that enforces a requests-per-minute
 * and a tokens-per-minute quota the way a real provider does, so that arl's
 * end-to-end demo and tests can check that clients sharing one arl limiter
 * never exceed the quota. It listens on a loopback address only.
 *
 * It speaks one of two APIs, chosen by --style:
 *   openai     POST /v1/chat/completions takes a Chat Completions request
 *              (model, messages, max_tokens or max_completion_tokens, stream,
 *              stream_options.include_usage) and returns a chat.completion
 *              object or a server-sent event stream of chat.completion.chunk
 *              objects. Rate-limit headers: x-ratelimit-{limit,remaining,
 *              reset}-{requests,tokens}, resets as durations ("6m0s").
 *   anthropic  POST /v1/messages takes a Messages request (model, system,
 *              messages, max_tokens, stream) and returns a message object or
 *              a stream of message_start, content_block_start, ping,
 *              content_block_delta, content_block_stop, message_delta (with
 *              usage) and message_stop events. Rate-limit headers:
 *              anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset},
 *              resets as RFC 3339 times, beside a Date header.
 * Both styles serve:
 *   GET  /stats     the counters as one JSON object (see struct
 *                   provider_stats). The server prints the same line on
 *                   standard output when SIGTERM or SIGINT stops it.
 *   GET  /requests  one record per API request: when it arrived, its status,
 *                   and the client's x-demo-granted-at-us header, so that a
 *                   test can tell which requests reached the provider when.
 *
 * Token accounting, deterministic for a given seed and order of arrival:
 *   prompt_tokens     = sum over messages, and the Messages API's system
 *                       prompt, of (ceil(content_bytes / 4) + 4)
 *   completion_tokens = uniform integer in [max(1, max_tokens / 4), max_tokens]
 *   total_tokens      = prompt_tokens + completion_tokens
 * content_bytes is the UTF-8 length of a message's content after JSON
 * unescaping, and max_tokens / 4 is integer division. Because ceil(b / 4) <= b,
 * a client that reserves
 *   (sum of content bytes) + 4 * (number of messages) + max_tokens
 * tokens always reserves at least total_tokens. completion_tokens comes from a
 * SplitMix64 generator seeded by --seed, one draw per valid request, whether
 * the request is then admitted or not.
 *
 * Admission: two continuous token buckets, one for requests and one for
 * tokens. Each starts full, contains at most its per-minute limit and refills at
 * limit / 60 s, measured on CLOCK_MONOTONIC. A request is admitted only if one
 * request and its total_tokens both fit at arrival, and then both buckets are
 * charged. Otherwise the response is 429 with retry-after (whole seconds,
 * rounded up), and retry-after-ms in the openai style. A request whose
 * total_tokens exceeds the tokens limit also gets 429, but without the retry
 * headers, because waiting cannot admit it. A stream that the client cuts
 * short stays charged. Every 200 and 429 response carries the rate-limit
 * headers.
 *
 * Injected 429: with --inject-429-at, the first valid request at or after
 * that many seconds since the start gets 429 with the retry headers of
 * --retry-after, whatever the buckets contain, and charges nothing. /stats
 * counts it apart from the over-quota 429s.
 *
 * Timing: a stream sleeps --chunk-delay-us before each content chunk, so it
 * lasts about ceil(completion_tokens / --tokens-per-chunk) chunk delays. A
 * non-streaming response is sent at once, with no simulated generation time.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#define PROGRAM_NAME "arl-mock-provider"

/* Largest accepted request body. The server rejects a larger one with 413. */
#define MAX_BODY_BYTES (1024 * 1024)
/* Largest accepted max_tokens, which bounds the length of one response. */
#define MAX_COMPLETION_TOKENS 131072
/* Deepest accepted JSON nesting. jsmn 1.1.0 takes time proportional to the
 * depth to close each array or object, so this bounds the parse time. */
#define MAX_JSON_DEPTH 64
/* Longest accepted model name, in bytes of its JSON text. */
#define MAX_MODEL_BYTES 256
/* Largest accepted --rpm and --tpm. It keeps every bucket product in int64_t. */
#define MAX_LIMIT_PER_MINUTE 100000000
/* Seconds of inactivity after which libmicrohttpd closes a connection. */
#define CONNECTION_TIMEOUT_S 30
/* Number of log lines written for each kind of repeated event before the rest are only counted. */
#define LOG_REPEAT_LIMIT 10
/* Requests that GET /requests lists. Later ones are only counted. */
#define MAX_REQUEST_RECORDS 100000
/* Largest accepted --inject-429-at and --retry-after, in seconds. */
#define MAX_INJECT_SECONDS 86400

#define NS_PER_US INT64_C(1000)

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NS_PER_MINUTE (60 * NS_PER_S)

/*
 * Bucket levels are stored in units of 1/NS_PER_MINUTE of one request or
 * token. A bucket with a limit of L per minute then refills by exactly L units
 * per nanosecond, so the arithmetic is exact in integers.
 */
#define UNITS_PER_ITEM NS_PER_MINUTE

/* The API the provider speaks: paths, bodies, stream events and headers. */
enum api_style {
	STYLE_OPENAI,
	STYLE_ANTHROPIC,
};

struct options {
	const char *host;
	unsigned port;
	const char *port_file;
	int64_t rpm;
	int64_t tpm;
	uint64_t seed;
	int64_t chunk_delay_us;
	int64_t tokens_per_chunk;
	enum api_style style;
	int64_t inject_429_at_s; /* -1: no injected 429 */
	int64_t retry_after_s;	 /* retry time of the injected 429 */
};

struct bucket {
	int64_t limit_per_minute;
	int64_t level; /* in UNITS_PER_ITEM units */
	int64_t updated_ns; /* CLOCK_MONOTONIC time of the last refill */
};

/* Counters reported by GET /stats and at exit. */
struct provider_stats {
	uint64_t requests_admitted;
	/* Every over-quota 429, including requests_too_large but not injected_429s. */
	uint64_t requests_rate_limited;
	uint64_t requests_too_large; /* 429s for a total above the whole tokens limit */
	uint64_t injected_429s; /* 429s sent because of --inject-429-at, with room in the quota */
	int64_t injected_429_at_ns; /* CLOCK_MONOTONIC time of the injected 429, or -1 */
	bool injected_429_fit; /* the buckets had room for the request the injected 429 rejected */
	uint64_t requests_invalid; /* 400, 404, 405 and 413 responses */
	uint64_t tokens_charged; /* sum of total_tokens over admitted requests */
	uint64_t streams_completed;
	uint64_t streams_cut;
	/* Self-checks of admission, which stay 0 unless admission is wrong. The first is the
	 * largest deficit in tokens (rounded up), the second the number of charges that left
	 * the tokens bucket below zero. */
	uint64_t tokens_bucket_max_deficit;
	uint64_t tokens_bucket_negative_charges;
};

/* One API request as GET /requests lists it. */
struct request_record {
	int64_t arrival_ns; /* CLOCK_MONOTONIC time when its head arrived */
	int64_t granted_at_us; /* the client's x-demo-granted-at-us header, or -1 */
	unsigned status;
	bool injected; /* the injected 429 */
};

struct provider {
	struct options opt;
	int64_t started_ns; /* CLOCK_MONOTONIC time of the start, for --inject-429-at */
	pthread_mutex_t lock; /* guards every field below except the atomics */
	struct bucket requests;
	struct bucket tokens;
	uint64_t rng_state;
	uint64_t next_request_id;
	bool inject_429_pending;
	struct provider_stats stats;
	struct request_record *records; /* MAX_REQUEST_RECORDS of them */
	size_t record_count;
	uint64_t records_dropped;
	atomic_uint logged_429;
	atomic_uint logged_invalid;
	atomic_uint logged_cut;
};

static struct provider provider;

/* ---------------------------------------------------------------- logging */

static void log_message(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Writes one line to stderr with the program prefix, in one stdio call so that lines from
 * different threads do not interleave. */
static void log_message(const char *format, ...)
{
	char text[1024];
	va_list args;

	va_start(args, format);
	vsnprintf(text, sizeof(text), format, args);
	va_end(args);
	fprintf(stderr, PROGRAM_NAME "[%ld]: %s\n", (long)getpid(), text);
}

/*
 * Logs one occurrence of a repeated event, such as a 429, unless LOG_REPEAT_LIMIT
 * of them were logged already. The last logged one adds a line saying that later
 * ones are only counted.
 */
static void log_repeated(atomic_uint *counter, const char *event_name, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void log_repeated(atomic_uint *counter, const char *event_name, const char *format, ...)
{
	unsigned seen = atomic_fetch_add(counter, 1) + 1;
	char text[1024];
	va_list args;

	if (seen > LOG_REPEAT_LIMIT)
		return;
	va_start(args, format);
	vsnprintf(text, sizeof(text), format, args);
	va_end(args);
	log_message("%s", text);
	if (seen == LOG_REPEAT_LIMIT)
		log_message("logged %d %s; further ones are only counted in the stats",
			    LOG_REPEAT_LIMIT, event_name);
}

static void log_from_microhttpd(void *cls, const char *format, va_list args)
{
	char text[1024];
	size_t length;

	(void)cls;
	vsnprintf(text, sizeof(text), format, args);
	length = strlen(text);
	while (length > 0 && text[length - 1] == '\n')
		text[--length] = '\0';
	log_message("libmicrohttpd: %s", text);
}

/* --------------------------------------------------------- growable string */

struct strbuf {
	char *data;
	size_t length;
	size_t capacity;
	bool failed; /* set when an allocation failed, after which data contains what fitted */
};

static bool strbuf_reserve(struct strbuf *buf, size_t extra)
{
	size_t needed = buf->length + extra + 1;
	size_t capacity = buf->capacity ? buf->capacity : 256;
	char *data;

	if (buf->failed)
		return false;
	if (needed <= buf->capacity)
		return true;
	while (capacity < needed)
		capacity *= 2;
	data = realloc(buf->data, capacity);
	if (data == NULL) {
		buf->failed = true;
		return false;
	}
	buf->data = data;
	buf->capacity = capacity;
	return true;
}

static void strbuf_append(struct strbuf *buf, const char *text, size_t length)
{
	if (!strbuf_reserve(buf, length))
		return;
	memcpy(buf->data + buf->length, text, length);
	buf->length += length;
	buf->data[buf->length] = '\0';
}

static void strbuf_puts(struct strbuf *buf, const char *text)
{
	strbuf_append(buf, text, strlen(text));
}

static void strbuf_printf(struct strbuf *buf, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void strbuf_printf(struct strbuf *buf, const char *format, ...)
{
	va_list args;
	int length;

	va_start(args, format);
	length = vsnprintf(NULL, 0, format, args);
	va_end(args);
	if (length < 0 || !strbuf_reserve(buf, (size_t)length))
		return;
	va_start(args, format);
	vsnprintf(buf->data + buf->length, (size_t)length + 1, format, args);
	va_end(args);
	buf->length += (size_t)length;
}

/* Appends text as JSON string contents, escaping quotes, backslashes and control characters. */
static void strbuf_append_json_escaped(struct strbuf *buf, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			strbuf_printf(buf, "\\%c", *p);
		else if (*p < 0x20)
			strbuf_printf(buf, "\\u%04x", *p);
		else
			strbuf_append(buf, (const char *)p, 1);
	}
}

static void strbuf_free(struct strbuf *buf)
{
	free(buf->data);
	memset(buf, 0, sizeof(*buf));
}

/* ----------------------------------------------------------- time and PRNG */

static int64_t monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * NS_PER_S + now.tv_nsec;
}

static int64_t realtime_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * NS_PER_S + now.tv_nsec;
}

/* Formats a Unix time as an HTTP date (RFC 9110 IMF-fixdate), truncated to the second. */
static void format_http_date(char *out, size_t size, int64_t unix_ns)
{
	time_t seconds = (time_t)(unix_ns / NS_PER_S);
	struct tm utc;

	gmtime_r(&seconds, &utc);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &utc);
}

/* Formats a Unix time as RFC 3339 in UTC, rounded up to the whole second. */
static void format_rfc3339(char *out, size_t size, int64_t unix_ns)
{
	time_t seconds = (time_t)((unix_ns + NS_PER_S - 1) / NS_PER_S);
	struct tm utc;

	gmtime_r(&seconds, &utc);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &utc);
}

static void sleep_us(int64_t microseconds)
{
	struct timespec delay = {
	    .tv_sec = microseconds / 1000000,
	    .tv_nsec = (microseconds % 1000000) * 1000,
	};

	while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
		;
}

/* SplitMix64, from Steele, Lea and Flood, "Fast Splittable Pseudorandom Number Generators",
 * OOPSLA 2014. */
static uint64_t splitmix64_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Draws an integer uniformly from [low, high], rejecting draws that would bias the modulo. */
static uint64_t draw_uniform(uint64_t *state, uint64_t low, uint64_t high)
{
	uint64_t range = high - low + 1;
	uint64_t unbiased_limit = UINT64_MAX - UINT64_MAX % range;
	uint64_t value;

	do
		value = splitmix64_next(state);
	while (value >= unbiased_limit);
	return low + value % range;
}

/* ------------------------------------------------------------ token buckets */

static int64_t bucket_capacity(const struct bucket *b)
{
	return b->limit_per_minute * UNITS_PER_ITEM;
}

static void bucket_init(struct bucket *b, int64_t limit_per_minute, int64_t now_ns)
{
	b->limit_per_minute = limit_per_minute;
	b->level = bucket_capacity(b);
	b->updated_ns = now_ns;
}

static void bucket_refill(struct bucket *b, int64_t now_ns)
{
	int64_t elapsed = now_ns - b->updated_ns;
	int64_t missing = bucket_capacity(b) - b->level;

	if (elapsed <= 0)
		return;
	b->updated_ns = now_ns;
	/* Checking elapsed first keeps elapsed * limit below 6e18, inside int64_t. */
	if (elapsed >= NS_PER_MINUTE || elapsed * b->limit_per_minute >= missing)
		b->level = bucket_capacity(b);
	else
		b->level += elapsed * b->limit_per_minute;
}

/* Returns the nanoseconds, rounded up, until the bucket contains count items. */
static int64_t bucket_wait_ns(const struct bucket *b, int64_t count)
{
	int64_t missing = count * UNITS_PER_ITEM - b->level;

	if (missing <= 0)
		return 0;
	return (missing + b->limit_per_minute - 1) / b->limit_per_minute;
}

/* Returns the nanoseconds, rounded up, until the bucket is full again. */
static int64_t bucket_reset_ns(const struct bucket *b)
{
	return bucket_wait_ns(b, b->limit_per_minute);
}

/* Returns the whole requests or tokens left in the bucket. A level below zero reports 0. */
static int64_t bucket_remaining(const struct bucket *b)
{
	return b->level > 0 ? b->level / UNITS_PER_ITEM : 0;
}

/*
 * Formats a duration the way OpenAI's x-ratelimit-reset-* headers show it
 * ("12ms", "1s", "6m0s"), which is Go's time.Duration notation that
 * time.ParseDuration reads: "0s", "12ms", "1.05s", "6m0s", "1h2m3s". The
 * duration is rounded up to whole milliseconds.
 */
static void format_duration(char *out, size_t size, int64_t ns)
{
	int64_t ms = (ns + NS_PER_MS - 1) / NS_PER_MS;
	int64_t hours = ms / 3600000;
	int64_t minutes = ms / 60000 % 60;
	int64_t seconds = ms / 1000 % 60;
	int64_t fraction_ms = ms % 1000;
	size_t used = 0;
	char fraction[8];
	size_t fraction_length;

	if (ms <= 0) {
		snprintf(out, size, "0s");
		return;
	}
	if (ms < 1000) {
		snprintf(out, size, "%" PRId64 "ms", ms);
		return;
	}
	if (hours > 0)
		used += (size_t)snprintf(out + used, size - used, "%" PRId64 "h", hours);
	if (hours > 0 || minutes > 0)
		used += (size_t)snprintf(out + used, size - used, "%" PRId64 "m", minutes);
	if (fraction_ms == 0) {
		snprintf(out + used, size - used, "%" PRId64 "s", seconds);
		return;
	}
	/* Keep leading zeros (1.05s) and drop trailing ones (1.5s, not 1.500s). */
	fraction_length = (size_t)snprintf(fraction, sizeof(fraction), "%03" PRId64, fraction_ms);
	while (fraction[fraction_length - 1] == '0')
		fraction[--fraction_length] = '\0';
	snprintf(out + used, size - used, "%" PRId64 ".%ss", seconds, fraction);
}

/* ---------------------------------------------------- request parsing (JSON) */

struct chat_request {
	char model[MAX_MODEL_BYTES + 1]; /* JSON string contents, still escaped */
	int64_t max_tokens;
	int64_t prompt_tokens;
	bool stream;
	bool include_usage;
};

/* Why a request body is invalid: the message and the request parameter it concerns. */
struct request_error {
	char message[256];
	const char *param; /* NULL when no single parameter is at fault */
};

static int reject(struct request_error *error, const char *param, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int reject(struct request_error *error, const char *param, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vsnprintf(error->message, sizeof(error->message), format, args);
	va_end(args);
	error->param = param;
	return -1;
}

/* Returns the index of the first token after token i and all of its descendants. */
static int skip_token(const jsmntok_t *tokens, int count, int i)
{
	int next = i + 1;

	while (next < count && tokens[next].start < tokens[i].end)
		next++;
	return next;
}

static bool token_equals(const char *json, const jsmntok_t *token, const char *text)
{
	size_t length = strlen(text);

	return token->type == JSMN_STRING && (size_t)(token->end - token->start) == length &&
	       memcmp(json + token->start, text, length) == 0;
}

static bool token_is_null(const char *json, const jsmntok_t *token)
{
	return token->type == JSMN_PRIMITIVE && token->end - token->start == 4 &&
	       memcmp(json + token->start, "null", 4) == 0;
}

/* Parses a JSON boolean token. Returns -1 unless it is exactly true or false. */
static int token_to_bool(const char *json, const jsmntok_t *token, bool *value)
{
	int length = token->end - token->start;

	if (token->type != JSMN_PRIMITIVE)
		return -1;
	if (length == 4 && memcmp(json + token->start, "true", 4) == 0)
		*value = true;
	else if (length == 5 && memcmp(json + token->start, "false", 5) == 0)
		*value = false;
	else
		return -1;
	return 0;
}

/* Parses a JSON number token that is a plain non-negative integer no larger than max. */
static int token_to_int(const char *json, const jsmntok_t *token, int64_t max, int64_t *value)
{
	int64_t result = 0;

	if (token->type != JSMN_PRIMITIVE || token->end == token->start)
		return -1;
	for (int i = token->start; i < token->end; i++) {
		if (json[i] < '0' || json[i] > '9')
			return -1;
		if (result > max)
			return -1;
		result = result * 10 + (json[i] - '0');
	}
	if (result > max)
		return -1;
	*value = result;
	return 0;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex4(const char *text, size_t length, size_t at, unsigned *code)
{
	*code = 0;
	if (at + 4 > length)
		return -1;
	for (size_t i = at; i < at + 4; i++) {
		int digit = hex_value(text[i]);

		if (digit < 0)
			return -1;
		*code = *code * 16 + (unsigned)digit;
	}
	return 0;
}

static bool is_single_char_escape(char c)
{
	switch (c) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't':
		return true;
	default:
		return false;
	}
}

/*
 * Computes the UTF-8 length of a JSON string's contents after unescaping.
 * A lone surrogate escape counts as U+FFFD (3 bytes). Returns -1 for an
 * unescaped control character or a malformed escape.
 */
static int64_t json_string_utf8_length(const char *text, size_t length)
{
	int64_t bytes = 0;
	size_t i = 0;

	while (i < length) {
		unsigned char c = (unsigned char)text[i];
		unsigned code, low;

		if (c < 0x20)
			return -1;
		if (c != '\\') {
			bytes++;
			i++;
			continue;
		}
		if (i + 1 >= length)
			return -1;
		if (is_single_char_escape(text[i + 1])) {
			bytes++;
			i += 2;
			continue;
		}
		if (text[i + 1] != 'u' || parse_hex4(text, length, i + 2, &code) != 0)
			return -1;
		i += 6;
		if (code >= 0xd800 && code <= 0xdbff && i + 6 <= length && text[i] == '\\' &&
		    text[i + 1] == 'u' && parse_hex4(text, length, i + 2, &low) == 0 &&
		    low >= 0xdc00 && low <= 0xdfff) {
			bytes += 4;
			i += 6;
		} else if (code < 0x80) {
			bytes += 1;
		} else if (code < 0x800) {
			bytes += 2;
		} else {
			bytes += 3;
		}
	}
	return bytes;
}

static const char *const chat_roles[] = {"system", "developer", "user", "assistant", "tool", NULL};
/* The Messages API takes the system prompt as a top-level field, not as a role. */
static const char *const messages_roles[] = {"user", "assistant", NULL};

static bool is_known_role(const char *json, const jsmntok_t *token, enum api_style style)
{
	const char *const *roles = style == STYLE_ANTHROPIC ? messages_roles : chat_roles;

	for (size_t i = 0; roles[i] != NULL; i++) {
		if (token_equals(json, token, roles[i]))
			return true;
	}
	return false;
}

/* Returns the prompt tokens of one text: ceil(bytes / 4) + 4, or -1 for an invalid JSON string. */
static int64_t text_prompt_tokens(const char *json, const jsmntok_t *token)
{
	int64_t bytes = json_string_utf8_length(json + token->start,
						(size_t)(token->end - token->start));

	return bytes < 0 ? -1 : (bytes + 3) / 4 + 4;
}

/*
 * Validates one element of messages and adds its prompt tokens. Returns the
 * index of the token after the element, or -1.
 */
static int parse_message(const char *json, const jsmntok_t *tokens, int count, int index,
			 size_t position, enum api_style style, struct chat_request *request,
			 struct request_error *error)
{
	const jsmntok_t *message = &tokens[index];
	int end = skip_token(tokens, count, index);
	int role = -1, content = -1;
	int64_t content_tokens;

	if (message->type != JSMN_OBJECT)
		return reject(error, "messages",
			      "Invalid type for 'messages[%zu]': expected an object.", position);
	for (int key = index + 1; key < end; key = skip_token(tokens, count, key + 1)) {
		if (tokens[key].type != JSMN_STRING || tokens[key].size != 1)
			return reject(error, "messages",
				      "Invalid value for 'messages[%zu]': not a valid JSON object.",
				      position);
		if (token_equals(json, &tokens[key], "role"))
			role = key + 1;
		else if (token_equals(json, &tokens[key], "content"))
			content = key + 1;
	}
	if (role < 0 || tokens[role].type != JSMN_STRING)
		return reject(error, "messages",
			      "Missing or invalid 'messages[%zu].role': expected a string.",
			      position);
	if (!is_known_role(json, &tokens[role], style))
		return reject(error, "messages", "Invalid value for 'messages[%zu].role': expected %s.",
			      position,
			      style == STYLE_ANTHROPIC
				  ? "user or assistant (the system prompt is the 'system' field)"
				  : "system, developer, user, assistant or tool");
	if (content < 0 || tokens[content].type != JSMN_STRING)
		return reject(
		    error, "messages",
		    "Missing or invalid 'messages[%zu].content': expected a string, the only "
		    "content form this mock provider accepts.",
		    position);
	content_tokens = text_prompt_tokens(json, &tokens[content]);
	if (content_tokens < 0)
		return reject(error, "messages",
			      "Invalid value for 'messages[%zu].content': not a valid JSON string.",
			      position);
	request->prompt_tokens += content_tokens;
	return end;
}

static int parse_messages(const char *json, const jsmntok_t *tokens, int count, int index,
			  enum api_style style, struct chat_request *request,
			  struct request_error *error)
{
	int next = index + 1;

	if (tokens[index].type != JSMN_ARRAY)
		return reject(error, "messages", "Invalid type for 'messages': expected an array.");
	if (tokens[index].size == 0)
		return reject(error, "messages",
			      "Invalid value for 'messages': expected at least one message.");
	for (int position = 0; position < tokens[index].size; position++) {
		next = parse_message(json, tokens, count, next, (size_t)position, style, request,
				     error);
		if (next < 0)
			return -1;
	}
	return 0;
}

static int parse_stream_options(const char *json, const jsmntok_t *tokens, int count, int index,
				struct chat_request *request, struct request_error *error)
{
	int end = skip_token(tokens, count, index);

	if (token_is_null(json, &tokens[index]))
		return 0;
	if (tokens[index].type != JSMN_OBJECT)
		return reject(error, "stream_options",
			      "Invalid type for 'stream_options': expected an object.");
	for (int key = index + 1; key < end; key = skip_token(tokens, count, key + 1)) {
		if (tokens[key].type != JSMN_STRING || tokens[key].size != 1)
			return reject(
			    error, "stream_options",
			    "Invalid value for 'stream_options': not a valid JSON object.");
		if (token_equals(json, &tokens[key], "include_usage") &&
		    !token_is_null(json, &tokens[key + 1]) &&
		    token_to_bool(json, &tokens[key + 1], &request->include_usage) != 0)
			return reject(
			    error, "stream_options",
			    "Invalid type for 'stream_options.include_usage': expected a boolean.");
	}
	return 0;
}

static int parse_completion_limit(const char *json, const jsmntok_t *token, const char *name,
				  int64_t *limit, struct request_error *error)
{
	if (token_to_int(json, token, MAX_COMPLETION_TOKENS, limit) != 0 || *limit < 1)
		return reject(error, name,
			      "Invalid value for '%s': expected an integer from 1 to %d.", name,
			      MAX_COMPLETION_TOKENS);
	return 0;
}

/* Returns the offset of a token's first character, including a string's opening quote. */
static int token_span_start(const jsmntok_t *token)
{
	return token->type == JSMN_STRING ? token->start - 1 : token->start;
}

/* Returns the offset after a token's last character, including a string's closing quote. */
static int token_span_end(const jsmntok_t *token)
{
	return token->type == JSMN_STRING ? token->end + 1 : token->end;
}

/* Checks that json[from, to) is whitespace around exactly one separator, or only whitespace
 * when separator is '\0'. */
static bool gap_matches(const char *json, int from, int to, char separator)
{
	bool seen = separator == '\0';

	for (int i = from; i < to; i++) {
		if (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r')
			continue;
		if (seen || json[i] != separator)
			return false;
		seen = true;
	}
	return seen;
}

/* Checks a primitive against JSON's literals and number grammar. */
static bool primitive_is_valid(const char *json, const jsmntok_t *token)
{
	const char *p = json + token->start;
	const char *end = json + token->end;
	size_t length = (size_t)(end - p);

	if ((length == 4 && memcmp(p, "true", 4) == 0) ||
	    (length == 5 && memcmp(p, "false", 5) == 0) ||
	    (length == 4 && memcmp(p, "null", 4) == 0))
		return true;
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (p < end && *p == '.') {
		if (++p == end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	return p == end;
}

/*
 * Checks what jsmn 1.1.0 does not: the commas and colons between tokens, no
 * trailing comma, the literals and numbers, and the escapes and control
 * characters inside every string. One pass in document order, so deep nesting
 * costs no more than flat input. cursor[i] is the offset after the last child
 * seen so far of container i.
 * NOTE: bytes of 0x80 and above in strings are not checked to be valid UTF-8.
 */
static bool json_syntax_is_valid(const char *json, size_t length, const jsmntok_t *tokens,
				 int count)
{
	int *cursor = malloc((size_t)count * sizeof(*cursor));
	bool valid = gap_matches(json, 0, token_span_start(&tokens[0]), '\0') &&
		     gap_matches(json, token_span_end(&tokens[0]), (int)length, '\0');

	if (cursor == NULL)
		return false;
	for (int i = 0; valid && i < count; i++) {
		const jsmntok_t *token = &tokens[i];
		int parent = token->parent;

		cursor[i] = token->start + 1;
		if (token->type == JSMN_PRIMITIVE)
			valid = token->size == 0 && primitive_is_valid(json, token);
		else if (token->type == JSMN_STRING)
			valid = json_string_utf8_length(json + token->start,
							(size_t)(token->end - token->start)) >= 0;
		if (!valid || parent < 0)
			continue;

		if (tokens[parent].type == JSMN_STRING) {
			/* A value: its parent is the key, whose parent is the object. */
			valid = gap_matches(json, token_span_end(&tokens[parent]),
					    token_span_start(token), ':');
			cursor[tokens[parent].parent] = token_span_end(token);
			continue;
		}
		if (tokens[parent].type == JSMN_OBJECT)
			valid = token->type == JSMN_STRING && token->size == 1;
		else if (token->type == JSMN_STRING)
			valid = token->size == 0;
		valid =
		    valid && gap_matches(json, cursor[parent], token_span_start(token),
					 cursor[parent] == tokens[parent].start + 1 ? '\0' : ',');
		cursor[parent] = token_span_end(token);
	}
	for (int i = 0; valid && i < count; i++) {
		if (tokens[i].type == JSMN_OBJECT || tokens[i].type == JSMN_ARRAY)
			valid = gap_matches(json, cursor[i], tokens[i].end - 1, '\0');
	}
	free(cursor);
	return valid;
}

/* Returns the deepest nesting of objects and arrays in json, ignoring brackets inside strings. */
static int json_nesting_depth(const char *json, size_t length)
{
	int depth = 0, deepest = 0;
	bool in_string = false;

	for (size_t i = 0; i < length; i++) {
		if (in_string) {
			if (json[i] == '\\')
				i++;
			else if (json[i] == '"')
				in_string = false;
		} else if (json[i] == '"') {
			in_string = true;
		} else if (json[i] == '{' || json[i] == '[') {
			if (++depth > deepest)
				deepest = depth;
		} else if (json[i] == '}' || json[i] == ']') {
			depth--;
		}
	}
	return deepest;
}

/*
 * Tokenizes a request body with jsmn and checks its syntax. Returns the token
 * count and sets *tokens, or returns -1 for a body that is not valid JSON.
 */
static int tokenize_json(const char *json, size_t length, jsmntok_t **tokens)
{
	jsmn_parser parser;
	int count;

	jsmn_init(&parser);
	count = jsmn_parse(&parser, json, length, NULL, 0);
	if (count <= 0)
		return -1;
	*tokens = calloc((size_t)count, sizeof(**tokens));
	if (*tokens == NULL)
		return -1;
	jsmn_init(&parser);
	count = jsmn_parse(&parser, json, length, *tokens, (unsigned)count);
	if (count <= 0 || !json_syntax_is_valid(json, length, *tokens, count)) {
		free(*tokens);
		*tokens = NULL;
		return -1;
	}
	return count;
}

/* Adds the prompt tokens of the Messages API's system prompt, which must be a string. */
static int parse_system(const char *json, const jsmntok_t *token, struct chat_request *request,
			struct request_error *error)
{
	int64_t system_tokens;

	if (token_is_null(json, token))
		return 0;
	if (token->type != JSMN_STRING)
		return reject(error, "system",
			      "Invalid type for 'system': expected a string, the only system prompt "
			      "form this mock provider accepts.");
	system_tokens = text_prompt_tokens(json, token);
	if (system_tokens < 0)
		return reject(error, "system", "Invalid value for 'system': not a valid JSON string.");
	request->prompt_tokens += system_tokens;
	return 0;
}

/*
 * Parses and validates a Chat Completions or, in the anthropic style, a
 * Messages request body and computes its prompt_tokens. Fields other than the
 * ones in struct chat_request (and the Messages API's system) are ignored, and
 * so are max_completion_tokens and stream_options in the anthropic style.
 */
static int parse_chat_request(const char *json, size_t length, enum api_style style,
			      struct chat_request *request, struct request_error *error)
{
	bool openai = style == STYLE_OPENAI;
	jsmntok_t *tokens = NULL;
	int count;
	int model = -1, messages = -1, stream = -1, stream_options = -1, system = -1;
	int max_tokens = -1, max_completion_tokens = -1;
	int64_t limit = 0, other_limit = 0;
	int result = -1;

	memset(request, 0, sizeof(*request));
	if (json_nesting_depth(json, length) > MAX_JSON_DEPTH)
		return reject(error, NULL, "The request body nests JSON deeper than %d levels.",
			      MAX_JSON_DEPTH);
	count = tokenize_json(json, length, &tokens);
	if (count < 0)
		return reject(error, NULL, "The request body is not valid JSON.");
	if (tokens[0].type != JSMN_OBJECT || skip_token(tokens, count, 0) != count) {
		reject(error, NULL, "The request body must be one JSON object.");
		goto out;
	}
	for (int key = 1; key < count; key = skip_token(tokens, count, key + 1)) {
		if (tokens[key].type != JSMN_STRING || tokens[key].size != 1) {
			reject(error, NULL, "The request body is not a valid JSON object.");
			goto out;
		}
		if (token_equals(json, &tokens[key], "model"))
			model = key + 1;
		else if (token_equals(json, &tokens[key], "messages"))
			messages = key + 1;
		else if (token_equals(json, &tokens[key], "max_tokens"))
			max_tokens = key + 1;
		else if (openai && token_equals(json, &tokens[key], "max_completion_tokens"))
			max_completion_tokens = key + 1;
		else if (token_equals(json, &tokens[key], "stream"))
			stream = key + 1;
		else if (openai && token_equals(json, &tokens[key], "stream_options"))
			stream_options = key + 1;
		else if (!openai && token_equals(json, &tokens[key], "system"))
			system = key + 1;
	}

	if (model < 0 || tokens[model].type != JSMN_STRING ||
	    tokens[model].end == tokens[model].start) {
		reject(error, "model", "Missing or invalid 'model': expected a non-empty string.");
		goto out;
	}
	if (tokens[model].end - tokens[model].start > MAX_MODEL_BYTES ||
	    json_string_utf8_length(json + tokens[model].start,
				    (size_t)(tokens[model].end - tokens[model].start)) < 0) {
		reject(
		    error, "model",
		    "Invalid value for 'model': expected a valid JSON string of at most %d bytes.",
		    MAX_MODEL_BYTES);
		goto out;
	}
	memcpy(request->model, json + tokens[model].start,
	       (size_t)(tokens[model].end - tokens[model].start));

	if (messages < 0) {
		reject(error, "messages", "Missing required parameter: 'messages'.");
		goto out;
	}
	if (parse_messages(json, tokens, count, messages, style, request, error) != 0)
		goto out;
	if (system >= 0 && parse_system(json, &tokens[system], request, error) != 0)
		goto out;

	/* Both limits may be given only if they agree, because they bound the same completion. */
	if (max_tokens >= 0 && token_is_null(json, &tokens[max_tokens]))
		max_tokens = -1;
	if (max_completion_tokens >= 0 && token_is_null(json, &tokens[max_completion_tokens]))
		max_completion_tokens = -1;
	if (max_tokens < 0 && max_completion_tokens < 0) {
		reject(error, "max_tokens",
		       "Missing required parameter: %s. This mock provider draws completion_tokens "
		       "from [max(1, max_tokens / 4), max_tokens].",
		       openai ? "'max_tokens' or 'max_completion_tokens'" : "'max_tokens'");
		goto out;
	}
	if (max_tokens >= 0 &&
	    parse_completion_limit(json, &tokens[max_tokens], "max_tokens", &limit, error) != 0)
		goto out;
	if (max_completion_tokens >= 0 &&
	    parse_completion_limit(json, &tokens[max_completion_tokens], "max_completion_tokens",
				   &other_limit, error) != 0)
		goto out;
	if (max_tokens >= 0 && max_completion_tokens >= 0 && limit != other_limit) {
		reject(error, "max_completion_tokens",
		       "'max_tokens' and 'max_completion_tokens' differ; set only one of them.");
		goto out;
	}
	request->max_tokens = max_tokens >= 0 ? limit : other_limit;

	if (stream >= 0 && !token_is_null(json, &tokens[stream]) &&
	    token_to_bool(json, &tokens[stream], &request->stream) != 0) {
		reject(error, "stream", "Invalid type for 'stream': expected a boolean.");
		goto out;
	}
	if (stream_options >= 0 && !token_is_null(json, &tokens[stream_options])) {
		if (!request->stream) {
			reject(error, "stream_options",
			       "'stream_options' is only allowed when 'stream' is true.");
			goto out;
		}
		if (parse_stream_options(json, tokens, count, stream_options, request, error) != 0)
			goto out;
	}
	result = 0;
out:
	free(tokens);
	return result;
}

/* --------------------------------------------------------------- admission */

enum limiting_bucket {
	LIMITED_BY_NONE,
	LIMITED_BY_REQUESTS,
	LIMITED_BY_TOKENS,
};

/* Outcome of one admission decision and the bucket state reported in the x-ratelimit-* headers. */
struct admission {
	uint64_t request_id;
	int64_t completion_tokens;
	int64_t total_tokens;
	bool admitted;
	bool too_large; /* total_tokens exceeds the tokens limit, so no wait helps */
	bool injected; /* the 429 of --inject-429-at, whatever the buckets contain */
	enum limiting_bucket limited_by;
	int64_t retry_after_ns;
	int64_t remaining_requests;
	int64_t remaining_tokens;
	int64_t reset_requests_ns;
	int64_t reset_tokens_ns;
	int64_t decided_unix_ns; /* CLOCK_REALTIME time of the decision, for absolute resets */
};

/* Records the tokens bucket level after a charge. Admission never lets it go below zero. */
static void record_tokens_level(struct provider *p)
{
	int64_t level = p->tokens.level;
	uint64_t deficit;

	if (level >= 0)
		return;
	deficit = (uint64_t)((-level + UNITS_PER_ITEM - 1) / UNITS_PER_ITEM);
	p->stats.tokens_bucket_negative_charges++;
	if (deficit > p->stats.tokens_bucket_max_deficit)
		p->stats.tokens_bucket_max_deficit = deficit;
}

/* Fires the injected 429 once its time has come. Called with the lock held and the buckets
 * refilled to now. */
static bool take_injected_429(struct provider *p, int64_t now, struct admission *result)
{
	if (!p->inject_429_pending || now - p->started_ns < p->opt.inject_429_at_s * NS_PER_S)
		return false;
	p->inject_429_pending = false;
	p->stats.injected_429s++;
	p->stats.injected_429_at_ns = now;
	p->stats.injected_429_fit = bucket_wait_ns(&p->requests, 1) == 0 &&
				    result->total_tokens <= p->tokens.limit_per_minute &&
				    bucket_wait_ns(&p->tokens, result->total_tokens) == 0;
	result->injected = true;
	result->limited_by = LIMITED_BY_REQUESTS;
	result->retry_after_ns = p->opt.retry_after_s * NS_PER_S;
	return true;
}

/* Admits or rejects a request of result->total_tokens against both buckets, refilled to now.
 * Called with the lock held. */
static void charge_or_limit(struct provider *p, struct admission *result)
{
	int64_t wait_requests, wait_tokens;

	if (result->total_tokens > p->tokens.limit_per_minute) {
		result->too_large = true;
		result->limited_by = LIMITED_BY_TOKENS;
		p->stats.requests_rate_limited++;
		p->stats.requests_too_large++;
		return;
	}
	wait_requests = bucket_wait_ns(&p->requests, 1);
	wait_tokens = bucket_wait_ns(&p->tokens, result->total_tokens);
	if (wait_requests == 0 && wait_tokens == 0) {
		result->admitted = true;
		p->requests.level -= UNITS_PER_ITEM;
		p->tokens.level -= result->total_tokens * UNITS_PER_ITEM;
		record_tokens_level(p);
		p->stats.requests_admitted++;
		p->stats.tokens_charged += (uint64_t)result->total_tokens;
		return;
	}
	result->limited_by = wait_tokens > wait_requests ? LIMITED_BY_TOKENS : LIMITED_BY_REQUESTS;
	result->retry_after_ns = wait_tokens > wait_requests ? wait_tokens : wait_requests;
	p->stats.requests_rate_limited++;
}

/* Draws completion_tokens and admits or rejects the request against both buckets, unless the
 * injected 429 takes it. */
static void admit_request(struct provider *p, const struct chat_request *request,
			  struct admission *result)
{
	int64_t now, lowest;

	memset(result, 0, sizeof(*result));
	pthread_mutex_lock(&p->lock);
	now = monotonic_ns();
	result->decided_unix_ns = realtime_ns();
	result->request_id = ++p->next_request_id;
	lowest = request->max_tokens / 4 > 1 ? request->max_tokens / 4 : 1;
	result->completion_tokens =
	    (int64_t)draw_uniform(&p->rng_state, (uint64_t)lowest, (uint64_t)request->max_tokens);
	result->total_tokens = request->prompt_tokens + result->completion_tokens;

	bucket_refill(&p->requests, now);
	bucket_refill(&p->tokens, now);
	if (!take_injected_429(p, now, result))
		charge_or_limit(p, result);

	result->remaining_requests = bucket_remaining(&p->requests);
	result->remaining_tokens = bucket_remaining(&p->tokens);
	result->reset_requests_ns = bucket_reset_ns(&p->requests);
	result->reset_tokens_ns = bucket_reset_ns(&p->tokens);
	pthread_mutex_unlock(&p->lock);
}

/* ---------------------------------------------------------------- responses */

/* Per-request state, kept in con_cls from the first call of the access handler until the
 * completion callback frees it. */
struct request_context {
	struct strbuf body;
	bool body_too_large;
	/* A stream response was queued, so the completion callback counts how it ended. */
	bool is_stream;
	uint64_t request_id;
	int64_t arrival_ns; /* CLOCK_MONOTONIC time of the first call, when the head arrived */
};

/* Formats the id of a response: chatcmpl-mock-N in the openai style, msg_mock_N otherwise. */
static void format_response_id(char *out, size_t size, uint64_t request_id)
{
	snprintf(out, size, "%s%" PRIu64,
		 provider.opt.style == STYLE_ANTHROPIC ? "msg_mock_" : "chatcmpl-mock-", request_id);
}

static void add_header(struct MHD_Response *response, const char *name, const char *value)
{
	if (MHD_add_response_header(response, name, value) != MHD_YES)
		log_message("failed to add the %s header to a response", name);
}

static void add_int_header(struct MHD_Response *response, const char *name, int64_t value)
{
	char text[32];

	snprintf(text, sizeof(text), "%" PRId64, value);
	add_header(response, name, text);
}

static void add_duration_header(struct MHD_Response *response, const char *name, int64_t ns)
{
	char text[48];

	format_duration(text, sizeof(text), ns);
	add_header(response, name, text);
}

static void add_time_header(struct MHD_Response *response, const char *name, int64_t unix_ns)
{
	char text[48];

	format_rfc3339(text, sizeof(text), unix_ns);
	add_header(response, name, text);
}

/*
 * Adds Anthropic's rate-limit headers: each reset is the time when the limit
 * is full again, and the Date header, from the same clock reading, lets a
 * client measure it without trusting its own wall clock. The Date is
 * truncated and the resets rounded up to the second, so a reset measured
 * against the Date is never shorter than the real one.
 * NOTE: Anthropic's responses also carry input-tokens and output-tokens
 * limits, and round the token counts (docs/providers.md). This mock has no
 * separate input and output buckets, so it sends neither, and its counts are
 * exact.
 */
static void add_anthropic_rate_limit_headers(struct MHD_Response *response,
					     const struct provider *p,
					     const struct admission *admission)
{
	char date[64];

	format_http_date(date, sizeof(date), admission->decided_unix_ns);
	add_header(response, MHD_HTTP_HEADER_DATE, date);
	add_int_header(response, "anthropic-ratelimit-requests-limit", p->opt.rpm);
	add_int_header(response, "anthropic-ratelimit-requests-remaining",
		       admission->remaining_requests);
	add_time_header(response, "anthropic-ratelimit-requests-reset",
			admission->decided_unix_ns + admission->reset_requests_ns);
	add_int_header(response, "anthropic-ratelimit-tokens-limit", p->opt.tpm);
	add_int_header(response, "anthropic-ratelimit-tokens-remaining",
		       admission->remaining_tokens);
	add_time_header(response, "anthropic-ratelimit-tokens-reset",
			admission->decided_unix_ns + admission->reset_tokens_ns);
}

static void add_rate_limit_headers(struct MHD_Response *response, const struct provider *p,
				   const struct admission *admission)
{
	if (p->opt.style == STYLE_ANTHROPIC) {
		add_anthropic_rate_limit_headers(response, p, admission);
		return;
	}
	add_int_header(response, "x-ratelimit-limit-requests", p->opt.rpm);
	add_int_header(response, "x-ratelimit-limit-tokens", p->opt.tpm);
	add_int_header(response, "x-ratelimit-remaining-requests", admission->remaining_requests);
	add_int_header(response, "x-ratelimit-remaining-tokens", admission->remaining_tokens);
	add_duration_header(response, "x-ratelimit-reset-requests", admission->reset_requests_ns);
	add_duration_header(response, "x-ratelimit-reset-tokens", admission->reset_tokens_ns);
}

/* Creates a response holding a copy of body, or returns NULL after logging why. */
static struct MHD_Response *create_body_response(unsigned status, const struct strbuf *body,
						 const char *content_type)
{
	struct MHD_Response *response;

	if (body->failed || body->data == NULL) {
		log_message("out of memory while building a %u response", status);
		return NULL;
	}
	response = MHD_create_response_from_buffer(body->length, body->data, MHD_RESPMEM_MUST_COPY);
	if (response == NULL) {
		log_message("failed to create a %u response", status);
		return NULL;
	}
	add_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return response;
}

/* Queues response and drops this function's reference to it. A NULL response makes
 * libmicrohttpd close the connection. */
static enum MHD_Result queue_and_release(struct MHD_Connection *connection, unsigned status,
					 struct MHD_Response *response)
{
	enum MHD_Result queued;

	if (response == NULL)
		return MHD_NO;
	queued = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return queued;
}

/*
 * Builds an error object of the provider's style. An OpenAI error has the
 * type, param and code given, and a NULL param or code becomes JSON null. An
 * Anthropic error has only anthropic_type and the message.
 */
static void format_error_json(struct strbuf *body, const char *message, const char *type,
			      const char *param, const char *code, const char *anthropic_type)
{
	if (provider.opt.style == STYLE_ANTHROPIC) {
		strbuf_printf(body, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"",
			      anthropic_type);
		strbuf_append_json_escaped(body, message);
		strbuf_puts(body, "\"}}\n");
		return;
	}
	strbuf_puts(body, "{\"error\":{\"message\":\"");
	strbuf_append_json_escaped(body, message);
	strbuf_printf(body, "\",\"type\":\"%s\",\"param\":", type);
	if (param != NULL)
		strbuf_printf(body, "\"%s\"", param);
	else
		strbuf_puts(body, "null");
	strbuf_puts(body, ",\"code\":");
	if (code != NULL)
		strbuf_printf(body, "\"%s\"", code);
	else
		strbuf_puts(body, "null");
	strbuf_puts(body, "}}\n");
}

/* Returns the Anthropic error type of a status that rejects a request before admission. */
static const char *anthropic_error_type(unsigned status)
{
	switch (status) {
	case MHD_HTTP_NOT_FOUND:
		return "not_found_error";
	case MHD_HTTP_CONTENT_TOO_LARGE:
		return "request_too_large";
	default:
		return "invalid_request_error";
	}
}

/*
 * Sends the 400, 404, 405 or 413 response for a request rejected before admission.
 * allowed_method is the Allow header of a 405 and NULL otherwise.
 */
static enum MHD_Result queue_invalid_request(struct MHD_Connection *connection, unsigned status,
					     const char *method, const char *url,
					     const char *message, const char *param,
					     const char *code, const char *allowed_method)
{
	struct strbuf body = {0};
	struct MHD_Response *response;

	pthread_mutex_lock(&provider.lock);
	provider.stats.requests_invalid++;
	pthread_mutex_unlock(&provider.lock);
	log_repeated(&provider.logged_invalid, "invalid requests", "%u for %s %s: %s", status,
		     method, url, message);

	format_error_json(&body, message, "invalid_request_error", param, code,
			  anthropic_error_type(status));
	response = create_body_response(status, &body, "application/json");
	strbuf_free(&body);
	if (response != NULL && allowed_method != NULL)
		add_header(response, MHD_HTTP_HEADER_ALLOW, allowed_method);
	return queue_and_release(connection, status, response);
}

/* Writes the message of a 429 response. */
static void format_429_message(char *message, size_t size, const struct admission *admission)
{
	char wait[48];

	format_duration(wait, sizeof(wait), admission->retry_after_ns);
	/* The wording follows OpenAI's 429 messages. "Used" is the limit minus the whole
	 * requests or tokens left in the bucket. */
	if (admission->injected)
		snprintf(message, size,
			 "Rate limit reached for requests per min (RPM): this 429 was injected by "
			 "--inject-429-at while the quota had room. Please try again in %s.",
			 wait);
	else if (admission->too_large)
		snprintf(message, size,
			 "Request too large for tokens per min (TPM): Limit %" PRId64
			 ", Requested %" PRId64
			 ". Reduce the messages or max_tokens so that the request fits the limit.",
			 provider.opt.tpm, admission->total_tokens);
	else if (admission->limited_by == LIMITED_BY_TOKENS)
		snprintf(message, size,
			 "Rate limit reached for tokens per min (TPM): Limit %" PRId64
			 ", Used %" PRId64 ", Requested %" PRId64 ". Please try again in %s.",
			 provider.opt.tpm, provider.opt.tpm - admission->remaining_tokens,
			 admission->total_tokens, wait);
	else
		snprintf(message, size,
			 "Rate limit reached for requests per min (RPM): Limit %" PRId64
			 ", Used %" PRId64 ", Requested 1. Please try again in %s.",
			 provider.opt.rpm, provider.opt.rpm - admission->remaining_requests, wait);
}

static enum MHD_Result queue_rate_limited(struct MHD_Connection *connection,
					  const struct admission *admission)
{
	struct strbuf body = {0};
	char message[320];
	char id[48];
	struct MHD_Response *response;
	bool by_tokens = admission->limited_by == LIMITED_BY_TOKENS;
	int64_t retry_ms = (admission->retry_after_ns + NS_PER_MS - 1) / NS_PER_MS;

	format_429_message(message, sizeof(message), admission);
	format_response_id(id, sizeof(id), admission->request_id);
	if (admission->injected)
		log_message("injected 429 for %s, retry after %" PRId64 " ms", id, retry_ms);
	else
		log_repeated(&provider.logged_429, "rate-limited (429) responses", "429 for %s: %s",
			     id, message);

	format_error_json(&body, message, by_tokens ? "tokens" : "requests", NULL,
			  "rate_limit_exceeded", "rate_limit_error");
	response = create_body_response(MHD_HTTP_TOO_MANY_REQUESTS, &body, "application/json");
	strbuf_free(&body);
	if (response == NULL)
		return MHD_NO;
	add_rate_limit_headers(response, &provider, admission);
	/* Waiting cannot admit a request larger than the whole bucket, so it gets no retry time.
	 * Anthropic sends retry-after alone, in whole seconds. */
	if (!admission->too_large) {
		add_int_header(response, "retry-after", (retry_ms + 999) / 1000);
		if (provider.opt.style == STYLE_OPENAI)
			add_int_header(response, "retry-after-ms", retry_ms);
	}
	return queue_and_release(connection, MHD_HTTP_TOO_MANY_REQUESTS, response);
}

/* Builds a Messages API message object with the whole completion. */
static void format_message_json(struct strbuf *body, const struct chat_request *request,
				const struct admission *admission)
{
	strbuf_printf(body,
		      "{\"id\":\"msg_mock_%" PRIu64 "\",\"type\":\"message\",\"role\":\"assistant\","
		      "\"model\":\"%s\",\"content\":[{\"type\":\"text\",\"text\":\"",
		      admission->request_id, request->model);
	for (int64_t i = 0; i < admission->completion_tokens; i++)
		strbuf_puts(body, "tok ");
	strbuf_printf(body,
		      "\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
		      "\"usage\":{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64 "}}\n",
		      request->prompt_tokens, admission->completion_tokens);
}

/* Builds a chat.completion object with the whole completion. */
static void format_chat_completion_json(struct strbuf *body, const struct chat_request *request,
					const struct admission *admission)
{
	strbuf_printf(
	    body,
	    "{\"id\":\"chatcmpl-mock-%" PRIu64 "\",\"object\":\"chat.completion\","
	    "\"created\":%lld,\"model\":\"%s\",\"system_fingerprint\":null,"
	    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
	    admission->request_id, (long long)time(NULL), request->model);
	for (int64_t i = 0; i < admission->completion_tokens; i++)
		strbuf_puts(body, "tok ");
	strbuf_printf(body,
		      "\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
		      "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
		      ",\"total_tokens\":%" PRId64 "}}\n",
		      request->prompt_tokens, admission->completion_tokens,
		      admission->total_tokens);
}

static enum MHD_Result queue_completion(struct MHD_Connection *connection,
					const struct chat_request *request,
					const struct admission *admission)
{
	struct strbuf body = {0};
	struct MHD_Response *response;

	if (provider.opt.style == STYLE_ANTHROPIC)
		format_message_json(&body, request, admission);
	else
		format_chat_completion_json(&body, request, admission);
	response = create_body_response(MHD_HTTP_OK, &body, "application/json");
	strbuf_free(&body);
	if (response != NULL)
		add_rate_limit_headers(response, &provider, admission);
	return queue_and_release(connection, MHD_HTTP_OK, response);
}

/* ------------------------------------------------------ streamed responses */

/* The next chunk of a Chat Completions stream. */
enum stream_phase {
	PHASE_ROLE,
	PHASE_CONTENT,
	PHASE_FINISH,
	PHASE_USAGE,
	PHASE_DONE,
	PHASE_END,
};

/* The next event of a Messages stream. */
enum message_phase {
	MESSAGE_START,
	MESSAGE_BLOCK_START,
	MESSAGE_PING,
	MESSAGE_CONTENT,
	MESSAGE_BLOCK_STOP,
	MESSAGE_DELTA,
	MESSAGE_STOP,
	MESSAGE_END,
};

/* State of one server-sent event stream, owned by its libmicrohttpd response. */
struct stream {
	char id[48];
	char model[MAX_MODEL_BYTES + 1];
	long long created;
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int64_t tokens_sent;
	int64_t tokens_per_chunk;
	int64_t chunk_delay_us;
	bool include_usage;
	enum api_style style;
	enum stream_phase phase; /* openai style */
	enum message_phase message_phase; /* anthropic style */
	struct strbuf event; /* the event being sent */
	size_t event_offset; /* bytes of event already handed to libmicrohttpd */
};

static void append_chunk_start(struct stream *s)
{
	strbuf_printf(&s->event,
		      "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,"
		      "\"model\":\"%s\",\"system_fingerprint\":null,\"choices\":",
		      s->id, s->created, s->model);
}

static void append_chunk_end(struct stream *s)
{
	if (s->include_usage)
		strbuf_puts(&s->event, ",\"usage\":null");
	strbuf_puts(&s->event, "}\n\n");
}

/* Sleeps one chunk delay and appends the next chunk's tokens to s->event as JSON string text. */
static void append_next_tokens(struct stream *s)
{
	sleep_us(s->chunk_delay_us);
	for (int64_t i = 0; i < s->tokens_per_chunk && s->tokens_sent < s->completion_tokens; i++) {
		strbuf_puts(&s->event, "tok ");
		s->tokens_sent++;
	}
}

/* Builds the next Chat Completions chunk into s->event. Returns false after the last one. */
static bool build_next_chunk(struct stream *s)
{
	switch (s->phase) {
	case PHASE_ROLE:
		append_chunk_start(s);
		strbuf_puts(&s->event,
			    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
			    "\"logprobs\":null,\"finish_reason\":null}]");
		append_chunk_end(s);
		s->phase = PHASE_CONTENT;
		return true;
	case PHASE_CONTENT:
		append_chunk_start(s);
		strbuf_puts(&s->event, "[{\"index\":0,\"delta\":{\"content\":\"");
		append_next_tokens(s);
		strbuf_puts(&s->event, "\"},\"logprobs\":null,\"finish_reason\":null}]");
		append_chunk_end(s);
		if (s->tokens_sent == s->completion_tokens)
			s->phase = PHASE_FINISH;
		return true;
	case PHASE_FINISH:
		append_chunk_start(s);
		strbuf_puts(
		    &s->event,
		    "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]");
		append_chunk_end(s);
		s->phase = s->include_usage ? PHASE_USAGE : PHASE_DONE;
		return true;
	case PHASE_USAGE:
		append_chunk_start(s);
		strbuf_printf(&s->event,
			      "[],\"usage\":{\"prompt_tokens\":%" PRId64
			      ",\"completion_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64
			      "}}\n\n",
			      s->prompt_tokens, s->completion_tokens,
			      s->prompt_tokens + s->completion_tokens);
		s->phase = PHASE_DONE;
		return true;
	case PHASE_DONE:
		strbuf_puts(&s->event, "data: [DONE]\n\n");
		s->phase = PHASE_END;
		return true;
	case PHASE_END:
		break;
	}
	return false;
}

/*
 * Builds the next Messages stream event into s->event. Returns false after
 * message_stop. message_start reports the input tokens and one output token,
 * and message_delta the final output tokens, as in Anthropic's streams
 * recorded under tests/fixtures/streams/.
 */
static bool build_next_message_event(struct stream *s)
{
	switch (s->message_phase) {
	case MESSAGE_START:
		strbuf_printf(&s->event,
			      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
			      "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\","
			      "\"model\":\"%s\",\"content\":[],\"stop_reason\":null,"
			      "\"stop_sequence\":null,\"usage\":{\"input_tokens\":%" PRId64
			      ",\"output_tokens\":1}}}\n\n",
			      s->id, s->model, s->prompt_tokens);
		s->message_phase = MESSAGE_BLOCK_START;
		return true;
	case MESSAGE_BLOCK_START:
		strbuf_puts(&s->event,
			    "event: content_block_start\ndata: {\"type\":\"content_block_start\","
			    "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
		s->message_phase = MESSAGE_PING;
		return true;
	case MESSAGE_PING:
		strbuf_puts(&s->event, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
		s->message_phase = MESSAGE_CONTENT;
		return true;
	case MESSAGE_CONTENT:
		strbuf_puts(&s->event,
			    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			    "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"");
		append_next_tokens(s);
		strbuf_puts(&s->event, "\"}}\n\n");
		if (s->tokens_sent == s->completion_tokens)
			s->message_phase = MESSAGE_BLOCK_STOP;
		return true;
	case MESSAGE_BLOCK_STOP:
		strbuf_puts(&s->event, "event: content_block_stop\ndata: "
				       "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
		s->message_phase = MESSAGE_DELTA;
		return true;
	case MESSAGE_DELTA:
		strbuf_printf(&s->event,
			      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
			      "{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
			      "\"usage\":{\"output_tokens\":%" PRId64 "}}\n\n",
			      s->completion_tokens);
		s->message_phase = MESSAGE_STOP;
		return true;
	case MESSAGE_STOP:
		strbuf_puts(&s->event,
			    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
		s->message_phase = MESSAGE_END;
		return true;
	case MESSAGE_END:
		break;
	}
	return false;
}

/* Builds the next event into s->event. Returns false when the stream has no more events. */
static bool build_next_event(struct stream *s)
{
	s->event.length = 0;
	s->event_offset = 0;
	if (s->style == STYLE_ANTHROPIC)
		return build_next_message_event(s);
	return build_next_chunk(s);
}

/*
 * Content reader for a stream: hands libmicrohttpd the current event, in
 * pieces when max is smaller, and builds the next one once it is used up.
 * Runs on the connection's own thread, so sleeping before a content chunk
 * delays only this stream.
 */
static ssize_t read_stream(void *cls, uint64_t position, char *buf, size_t max)
{
	struct stream *s = cls;
	size_t length;

	(void)position;
	if (s->event_offset == s->event.length && !build_next_event(s))
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (s->event.failed) {
		log_message("out of memory while building an event of stream %s; closing it",
			    s->id);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	length = s->event.length - s->event_offset;
	if (length > max)
		length = max;
	memcpy(buf, s->event.data + s->event_offset, length);
	s->event_offset += length;
	return (ssize_t)length;
}

static void free_stream(void *cls)
{
	struct stream *s = cls;

	strbuf_free(&s->event);
	free(s);
}

static enum MHD_Result queue_stream(struct MHD_Connection *connection,
				    struct request_context *context,
				    const struct chat_request *request,
				    const struct admission *admission)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct MHD_Response *response;
	enum MHD_Result queued;

	if (s == NULL) {
		log_message("out of memory while starting stream %" PRIu64, admission->request_id);
		return MHD_NO;
	}
	format_response_id(s->id, sizeof(s->id), admission->request_id);
	memcpy(s->model, request->model, sizeof(s->model));
	s->created = (long long)time(NULL);
	s->prompt_tokens = request->prompt_tokens;
	s->completion_tokens = admission->completion_tokens;
	s->tokens_per_chunk = provider.opt.tokens_per_chunk;
	s->chunk_delay_us = provider.opt.chunk_delay_us;
	s->include_usage = request->include_usage;
	s->style = provider.opt.style;
	s->phase = PHASE_ROLE;
	s->message_phase = MESSAGE_START;

	/* The block size only sets the largest max that read_stream is asked for. */
	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_stream, s,
						     free_stream);
	if (response == NULL) {
		log_message("failed to create the response of stream %s", s->id);
		free_stream(s);
		return MHD_NO;
	}
	add_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	add_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	add_rate_limit_headers(response, &provider, admission);
	queued = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	if (queued == MHD_YES) {
		context->is_stream = true;
		context->request_id = admission->request_id;
	}
	return queued;
}

/* ---------------------------------------------------------------- handlers */

/* Appends a CLOCK_MONOTONIC time as whole microseconds, or null for a negative time. */
static void strbuf_append_time_us(struct strbuf *out, int64_t ns)
{
	if (ns < 0)
		strbuf_puts(out, "null");
	else
		strbuf_printf(out, "%" PRId64, ns / NS_PER_US);
}

/*
 * Formats the counters. Times are CLOCK_MONOTONIC microseconds, the clock
 * arl's clients read on the same host, and injected_429_at_us is null until
 * the injected 429 is sent. injected_429_fit is true when the quota had room
 * for the request that the injected 429 rejected.
 */
static void format_stats_json(struct provider *p, struct strbuf *out)
{
	struct provider_stats s;

	pthread_mutex_lock(&p->lock);
	s = p->stats;
	pthread_mutex_unlock(&p->lock);
	strbuf_printf(out,
		      "{\"requests_admitted\":%" PRIu64 ",\"requests_rate_limited\":%" PRIu64
		      ",\"requests_too_large\":%" PRIu64 ",\"requests_invalid\":%" PRIu64
		      ",\"tokens_charged\":%" PRIu64 ",\"streams_completed\":%" PRIu64
		      ",\"streams_cut\":%" PRIu64 ",\"tokens_bucket_max_deficit\":%" PRIu64
		      ",\"tokens_bucket_negative_charges\":%" PRIu64 ",\"injected_429s\":%" PRIu64
		      ",\"injected_429_retry_after_ms\":%" PRId64 ",\"injected_429_fit\":%s"
		      ",\"started_us\":",
		      s.requests_admitted, s.requests_rate_limited, s.requests_too_large,
		      s.requests_invalid, s.tokens_charged, s.streams_completed, s.streams_cut,
		      s.tokens_bucket_max_deficit, s.tokens_bucket_negative_charges,
		      s.injected_429s, p->opt.retry_after_s * 1000,
		      s.injected_429_fit ? "true" : "false");
	strbuf_append_time_us(out, p->started_ns);
	strbuf_puts(out, ",\"injected_429_at_us\":");
	strbuf_append_time_us(out, s.injected_429_at_ns);
	strbuf_puts(out, "}");
}

/* Formats the request records as {"dropped": N, "requests": [...]}, oldest first. */
static void format_requests_json(struct provider *p, struct strbuf *out)
{
	pthread_mutex_lock(&p->lock);
	strbuf_printf(out, "{\"dropped\":%" PRIu64 ",\"requests\":[", p->records_dropped);
	for (size_t i = 0; i < p->record_count; i++) {
		const struct request_record *r = &p->records[i];

		strbuf_puts(out, i > 0 ? ",\n{\"arrival_us\":" : "\n{\"arrival_us\":");
		strbuf_append_time_us(out, r->arrival_ns);
		strbuf_puts(out, ",\"granted_at_us\":");
		if (r->granted_at_us < 0)
			strbuf_puts(out, "null");
		else
			strbuf_printf(out, "%" PRId64, r->granted_at_us);
		strbuf_printf(out, ",\"status\":%u,\"injected\":%s}", r->status,
			      r->injected ? "true" : "false");
	}
	strbuf_puts(out, "]}\n");
	pthread_mutex_unlock(&p->lock);
}

/* Returns the x-demo-granted-at-us header as microseconds, or -1 when it is missing or not
 * a plain decimal number. */
static int64_t granted_at_header(struct MHD_Connection *connection)
{
	const char *text =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "x-demo-granted-at-us");
	int64_t value = 0;

	if (text == NULL || *text == '\0' || strlen(text) > 18)
		return -1;
	for (; *text != '\0'; text++) {
		if (*text < '0' || *text > '9')
			return -1;
		value = value * 10 + (*text - '0');
	}
	return value;
}

/* Records an API request and the status it gets, for GET /requests. */
static void record_request(struct MHD_Connection *connection,
			   const struct request_context *context, unsigned status, bool injected)
{
	struct request_record record = {
	    .arrival_ns = context->arrival_ns,
	    .granted_at_us = granted_at_header(connection),
	    .status = status,
	    .injected = injected,
	};

	pthread_mutex_lock(&provider.lock);
	if (provider.record_count < MAX_REQUEST_RECORDS)
		provider.records[provider.record_count++] = record;
	else
		provider.records_dropped++;
	pthread_mutex_unlock(&provider.lock);
}

static enum MHD_Result handle_stats(struct MHD_Connection *connection, bool list_requests)
{
	struct strbuf body = {0};
	struct MHD_Response *response;

	if (list_requests) {
		format_requests_json(&provider, &body);
	} else {
		format_stats_json(&provider, &body);
		strbuf_puts(&body, "\n");
	}
	response = create_body_response(MHD_HTTP_OK, &body, "application/json");
	strbuf_free(&body);
	return queue_and_release(connection, MHD_HTTP_OK, response);
}

static enum MHD_Result handle_chat_completion(struct MHD_Connection *connection,
					      struct request_context *context, const char *url)
{
	struct chat_request request;
	struct request_error error = {{0}, NULL};
	struct admission admission;
	char message[64];

	if (context->body_too_large) {
		record_request(connection, context, MHD_HTTP_CONTENT_TOO_LARGE, false);
		snprintf(message, sizeof(message), "The request body is larger than %d bytes.",
			 MAX_BODY_BYTES);
		return queue_invalid_request(connection, MHD_HTTP_CONTENT_TOO_LARGE, "POST", url,
					     message, NULL, NULL, NULL);
	}
	if (context->body.failed) {
		log_message("out of memory while reading a request body");
		return MHD_NO;
	}
	if (parse_chat_request(context->body.data != NULL ? context->body.data : "",
			       context->body.length, provider.opt.style, &request, &error) != 0) {
		record_request(connection, context, MHD_HTTP_BAD_REQUEST, false);
		return queue_invalid_request(connection, MHD_HTTP_BAD_REQUEST, "POST", url,
					     error.message, error.param, NULL, NULL);
	}

	admit_request(&provider, &request, &admission);
	record_request(connection, context,
		       admission.admitted ? MHD_HTTP_OK : MHD_HTTP_TOO_MANY_REQUESTS,
		       admission.injected);
	if (!admission.admitted)
		return queue_rate_limited(connection, &admission);
	if (request.stream)
		return queue_stream(connection, context, &request, &admission);
	return queue_completion(connection, &request, &admission);
}

/*
 * Access handler: the first call for a request allocates its context, later
 * calls collect the body, and the last call (no upload data left) sends the response.
 */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct request_context *context = *con_cls;
	char message[320];
	const char *api_path = provider.opt.style == STYLE_ANTHROPIC ? "/v1/messages"
								      : "/v1/chat/completions";
	bool is_chat = strcmp(url, api_path) == 0;
	bool is_stats = strcmp(url, "/stats") == 0 || strcmp(url, "/requests") == 0;

	(void)cls;
	(void)version;
	if (context == NULL) {
		context = calloc(1, sizeof(*context));
		if (context == NULL) {
			log_message("out of memory while accepting %s %s", method, url);
			return MHD_NO;
		}
		context->arrival_ns = monotonic_ns();
		*con_cls = context;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (context->body.length + *upload_data_size > MAX_BODY_BYTES)
			context->body_too_large = true;
		else
			strbuf_append(&context->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (is_chat && strcmp(method, MHD_HTTP_METHOD_POST) == 0)
		return handle_chat_completion(connection, context, url);
	if (is_stats && strcmp(method, MHD_HTTP_METHOD_GET) == 0)
		return handle_stats(connection, strcmp(url, "/requests") == 0);
	if (is_chat || is_stats) {
		snprintf(message, sizeof(message), "Method %s is not allowed on %s; use %s.",
			 method, url, is_chat ? "POST" : "GET");
		return queue_invalid_request(connection, MHD_HTTP_METHOD_NOT_ALLOWED, method, url,
					     message, NULL, NULL, is_chat ? "POST" : "GET");
	}
	snprintf(message, sizeof(message),
		 "Unknown path %s. This mock provider serves POST %s, GET /stats and GET "
		 "/requests.",
		 url, api_path);
	return queue_invalid_request(connection, MHD_HTTP_NOT_FOUND, method, url, message, NULL,
				     "unknown_url", NULL);
}

static const char *termination_reason(enum MHD_RequestTerminationCode code)
{
	switch (code) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return "completed";
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		return "connection error, usually the client closing it";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "connection timed out";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "server shutting down";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client closed its side";
	}
	return "unknown reason";
}

/*
 * Completion callback: counts a stream as completed when libmicrohttpd sent
 * all of it, and as cut for any other termination, and frees the context.
 * NOTE: "sent" means written to the socket. A client that goes away after the
 * last write but before reading [DONE] still counts as completed.
 */
static void complete_request(void *cls, struct MHD_Connection *connection, void **con_cls,
			     enum MHD_RequestTerminationCode code)
{
	struct request_context *context = *con_cls;
	char id[48];

	(void)cls;
	(void)connection;
	if (context == NULL)
		return;
	if (context->is_stream) {
		format_response_id(id, sizeof(id), context->request_id);
		pthread_mutex_lock(&provider.lock);
		if (code == MHD_REQUEST_TERMINATED_COMPLETED_OK)
			provider.stats.streams_completed++;
		else
			provider.stats.streams_cut++;
		pthread_mutex_unlock(&provider.lock);
		if (code != MHD_REQUEST_TERMINATED_COMPLETED_OK)
			log_repeated(&provider.logged_cut, "cut streams",
				     "stream %s cut before its end: %s", id,
				     termination_reason(code));
	}
	strbuf_free(&context->body);
	free(context);
	*con_cls = NULL;
}

/* ------------------------------------------------------------- command line */

enum option_id {
	OPT_HOST = 256,
	OPT_PORT,
	OPT_PORT_FILE,
	OPT_RPM,
	OPT_TPM,
	OPT_SEED,
	OPT_CHUNK_DELAY_US,
	OPT_TOKENS_PER_CHUNK,
	OPT_STYLE,
	OPT_INJECT_429_AT,
	OPT_RETRY_AFTER,
	OPT_HELP,
};

static void print_help(void)
{
	printf("Usage: " PROGRAM_NAME " [OPTION]...\n"
	       "Serve a mock OpenAI-compatible Chat Completions API or Anthropic Messages API\n"
	       "on a loopback address, enforcing requests-per-minute and tokens-per-minute\n"
	       "quotas like a provider.\n"
	       "\n"
	       "Options:\n"
	       "  --host ADDR            address to listen on: an IPv4 address in 127.0.0.0/8,\n"
	       "                         ::1 or localhost (default 127.0.0.1)\n"
	       "  --port N               TCP port, 0 to 65535; 0 picks a free port (default 0)\n"
	       "  --port-file PATH       after listening, write the bound port and a newline to\n"
	       "                         PATH through a temporary file and rename (default: none)\n"
	       "  --rpm N                requests per minute, 1 to %d: the requests bucket\n"
	       "                         holds N and refills at N/60 per second (default 600)\n"
	       "  --tpm N                tokens per minute, 1 to %d: the tokens bucket holds\n"
	       "                         N and refills at N/60 per second (default 60000)\n"
	       "  --seed N               seed of the generator that draws completion_tokens,\n"
	       "                         0 to 18446744073709551615 (default 1)\n"
	       "  --chunk-delay-us N     microseconds to wait before each streamed content chunk,\n"
	       "                         0 to 10000000 (default 2000)\n"
	       "  --tokens-per-chunk N   completion tokens per streamed content chunk, 1 to 4096\n"
	       "                         (default 4)\n"
	       "  --style STYLE          API, streams and rate-limit headers: openai\n"
	       "                         (x-ratelimit-*) or anthropic (anthropic-ratelimit-*)\n"
	       "                         (default openai)\n"
	       "  --inject-429-at S      respond with 429 to the first valid request at or after\n"
	       "                         S seconds since the start, whatever the quota contains,\n"
	       "                         0 to %d (default: never)\n"
	       "  --retry-after S        retry time of the injected 429 in seconds, 1 to %d\n"
	       "                         (default 5)\n"
	       "  --help                 print this help and exit\n"
	       "\n"
	       "Endpoints:\n"
	       "  POST /v1/chat/completions  openai style: Chat Completions with model, messages,\n"
	       "                             max_tokens or max_completion_tokens (1 to %d,\n"
	       "                             required), stream and\n"
	       "                             stream_options.include_usage.\n"
	       "  POST /v1/messages          anthropic style: Messages with model, system,\n"
	       "                             messages, max_tokens (required) and stream.\n"
	       "                             In both, content must be a string and other fields\n"
	       "                             are ignored.\n"
	       "  GET /stats                 counters as one JSON object\n"
	       "  GET /requests              each API request's arrival time (CLOCK_MONOTONIC\n"
	       "                             microseconds), status and x-demo-granted-at-us\n"
	       "\n"
	       "Token accounting:\n"
	       "  prompt_tokens     = sum over messages of (ceil(content_bytes / 4) + 4), where\n"
	       "                      content_bytes is the UTF-8 length of the unescaped content\n"
	       "  completion_tokens = uniform integer in [max(1, max_tokens / 4), max_tokens]\n"
	       "                      (integer division), drawn from SplitMix64 seeded by --seed\n"
	       "  total_tokens      = prompt_tokens + completion_tokens\n"
	       "  so total_tokens <= (sum of content bytes) + 4 * messages + max_tokens.\n"
	       "\n"
	       "A request is admitted only if 1 request and its total_tokens fit in both buckets\n"
	       "at arrival; both are then charged. Otherwise the answer is 429 with retry-after\n"
	       "(seconds, rounded up) and, in the openai style, retry-after-ms; a request whose\n"
	       "total_tokens exceeds --tpm gets 429 without them, because waiting cannot help.\n"
	       "The injected 429 charges nothing and is counted apart, in injected_429s. Each\n"
	       "stream lasts about ceil(completion_tokens / tokens-per-chunk) * chunk-delay-us.\n"
	       "\n"
	       "SIGTERM or SIGINT stops the server, which then prints the counters as one JSON\n"
	       "line on standard output. Logs go to standard error. Exit status: 0 after a clean\n"
	       "stop, 1 on a runtime error, 2 on an invalid command line.\n",
	       MAX_LIMIT_PER_MINUTE, MAX_LIMIT_PER_MINUTE, MAX_INJECT_SECONDS, MAX_INJECT_SECONDS,
	       MAX_COMPLETION_TOKENS);
}

static void exit_usage_error(const char *format, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void exit_usage_error(const char *format, ...)
{
	char text[512];
	va_list args;

	va_start(args, format);
	vsnprintf(text, sizeof(text), format, args);
	va_end(args);
	log_message("%s; run " PROGRAM_NAME " --help for the options", text);
	exit(2);
}

/* Parses a decimal integer option value in [min, max], or exits with status 2 naming the option. */
static uint64_t parse_integer_option(const char *option, const char *text, uint64_t min,
				     uint64_t max, const char *unit)
{
	char *end = NULL;
	unsigned long long value = 0;

	/* strtoull would accept leading spaces and a minus sign, so require a digit first. */
	errno = 0;
	if (text[0] >= '0' && text[0] <= '9')
		value = strtoull(text, &end, 10);
	if (end == NULL || errno != 0 || *end != '\0' || value < min || value > max)
		exit_usage_error("invalid value '%s' for %s: expected an integer from %" PRIu64
				 " to %" PRIu64 " (%s)",
				 text, option, min, max, unit);
	return value;
}

/* Returns the socket address for --host, or exits with status 2 unless it is a loopback address. */
static void parse_host(const char *host, unsigned port, struct sockaddr_storage *address,
		       bool *is_ipv6)
{
	struct sockaddr_in *ipv4 = (struct sockaddr_in *)address;
	struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)address;
	const char *numeric = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;

	memset(address, 0, sizeof(*address));
	if (inet_pton(AF_INET, numeric, &ipv4->sin_addr) == 1) {
		if ((ntohl(ipv4->sin_addr.s_addr) >> 24) != 127)
			exit_usage_error("invalid value '%s' for --host: it is not a loopback "
					 "address; expected an IPv4 address in 127.0.0.0/8, ::1 "
					 "or localhost",
					 host);
		ipv4->sin_family = AF_INET;
		ipv4->sin_port = htons((uint16_t)port);
		*is_ipv6 = false;
		return;
	}
	if (inet_pton(AF_INET6, numeric, &ipv6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&ipv6->sin6_addr))
			exit_usage_error("invalid value '%s' for --host: it is not a loopback "
					 "address; expected an IPv4 address in 127.0.0.0/8, ::1 "
					 "or localhost",
					 host);
		ipv6->sin6_family = AF_INET6;
		ipv6->sin6_port = htons((uint16_t)port);
		*is_ipv6 = true;
		return;
	}
	exit_usage_error("invalid value '%s' for --host: expected a numeric loopback address "
			 "(an IPv4 address in 127.0.0.0/8 or ::1) or localhost",
			 host);
}

static void parse_options(int argc, char **argv, struct options *opt)
{
	static const struct option long_options[] = {
	    {"host", required_argument, NULL, OPT_HOST},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"port-file", required_argument, NULL, OPT_PORT_FILE},
	    {"rpm", required_argument, NULL, OPT_RPM},
	    {"tpm", required_argument, NULL, OPT_TPM},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"chunk-delay-us", required_argument, NULL, OPT_CHUNK_DELAY_US},
	    {"tokens-per-chunk", required_argument, NULL, OPT_TOKENS_PER_CHUNK},
	    {"style", required_argument, NULL, OPT_STYLE},
	    {"inject-429-at", required_argument, NULL, OPT_INJECT_429_AT},
	    {"retry-after", required_argument, NULL, OPT_RETRY_AFTER},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	int option;

	*opt = (struct options){
	    .host = "127.0.0.1",
	    .port = 0,
	    .port_file = NULL,
	    .rpm = 600,
	    .tpm = 60000,
	    .seed = 1,
	    .chunk_delay_us = 2000,
	    .tokens_per_chunk = 4,
	    .style = STYLE_OPENAI,
	    .inject_429_at_s = -1,
	    .retry_after_s = 5,
	};
	opterr = 0;
	while ((option = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
		switch (option) {
		case OPT_HOST:
			opt->host = optarg;
			break;
		case OPT_PORT:
			opt->port = (unsigned)parse_integer_option(
			    "--port", optarg, 0, 65535, "a TCP port; 0 picks a free one");
			break;
		case OPT_PORT_FILE:
			if (optarg[0] == '\0')
				exit_usage_error(
				    "invalid value '' for --port-file: expected a file path");
			opt->port_file = optarg;
			break;
		case OPT_RPM:
			opt->rpm = (int64_t)parse_integer_option(
			    "--rpm", optarg, 1, MAX_LIMIT_PER_MINUTE, "requests per minute");
			break;
		case OPT_TPM:
			opt->tpm = (int64_t)parse_integer_option(
			    "--tpm", optarg, 1, MAX_LIMIT_PER_MINUTE, "tokens per minute");
			break;
		case OPT_SEED:
			opt->seed = parse_integer_option("--seed", optarg, 0, UINT64_MAX,
							 "any 64-bit unsigned integer");
			break;
		case OPT_CHUNK_DELAY_US:
			opt->chunk_delay_us = (int64_t)parse_integer_option(
			    "--chunk-delay-us", optarg, 0, 10000000, "microseconds");
			break;
		case OPT_TOKENS_PER_CHUNK:
			opt->tokens_per_chunk = (int64_t)parse_integer_option(
			    "--tokens-per-chunk", optarg, 1, 4096, "tokens");
			break;
		case OPT_STYLE:
			if (strcmp(optarg, "openai") == 0)
				opt->style = STYLE_OPENAI;
			else if (strcmp(optarg, "anthropic") == 0)
				opt->style = STYLE_ANTHROPIC;
			else
				exit_usage_error("invalid value '%s' for --style: expected openai "
						 "or anthropic",
						 optarg);
			break;
		case OPT_INJECT_429_AT:
			opt->inject_429_at_s = (int64_t)parse_integer_option(
			    "--inject-429-at", optarg, 0, MAX_INJECT_SECONDS,
			    "seconds since the start");
			break;
		case OPT_RETRY_AFTER:
			opt->retry_after_s = (int64_t)parse_integer_option(
			    "--retry-after", optarg, 1, MAX_INJECT_SECONDS, "seconds");
			break;
		case OPT_HELP:
			print_help();
			exit(0);
		case ':':
			exit_usage_error("option %s requires a value", argv[optind - 1]);
		default:
			exit_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		exit_usage_error("unexpected argument '%s'; this program takes only options",
				 argv[optind]);
}

/* ---------------------------------------------------------------- startup */

/* Writes the port and a newline to path through a temporary file and rename, so a reader
 * never sees a partial file. */
static int write_port_file(const char *path, unsigned port)
{
	char temporary[4096];
	char text[16];
	int length = snprintf(text, sizeof(text), "%u\n", port);
	int fd;

	if (snprintf(temporary, sizeof(temporary), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(temporary)) {
		log_message("failed to write --port-file %s: the path is too long", path);
		return -1;
	}
	fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_message("failed to write --port-file %s: cannot create %s: %s", path, temporary,
			    strerror(errno));
		return -1;
	}
	if (write(fd, text, (size_t)length) != length) {
		log_message("failed to write --port-file %s: cannot write %s: %s", path, temporary,
			    strerror(errno));
		close(fd);
		unlink(temporary);
		return -1;
	}
	if (close(fd) != 0 || rename(temporary, path) != 0) {
		log_message("failed to write --port-file %s: %s", path, strerror(errno));
		unlink(temporary);
		return -1;
	}
	return 0;
}

static struct MHD_Daemon *start_daemon(const struct options *opt, unsigned *bound_port)
{
	struct sockaddr_storage address;
	bool is_ipv6;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;

	parse_host(opt->host, opt->port, &address, &is_ipv6);
	if (is_ipv6)
		flags |= MHD_USE_IPv6;
	/* libmicrohttpd wants the logger first, so that it also gets messages about later options.
	 */
	daemon =
	    MHD_start_daemon(flags, (uint16_t)opt->port, NULL, NULL, handle_request, NULL,
			     MHD_OPTION_EXTERNAL_LOGGER, log_from_microhttpd, NULL,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
			     MHD_OPTION_NOTIFY_COMPLETED, complete_request, NULL, MHD_OPTION_END);
	if (daemon == NULL) {
		log_message("failed to start the HTTP server on %s port %u; see the message above",
			    opt->host, opt->port);
		return NULL;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0) {
		log_message("failed to read the bound port from libmicrohttpd");
		MHD_stop_daemon(daemon);
		return NULL;
	}
	*bound_port = info->port;
	return daemon;
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *daemon;
	struct strbuf stats = {0};
	sigset_t stop_signals;
	unsigned port;
	int signal_number = 0;
	struct sigaction ignore = {.sa_handler = SIG_IGN};

	parse_options(argc, argv, &provider.opt);

	/*
	 * Block the stop signals before any thread starts, so that every
	 * libmicrohttpd thread inherits the mask and sigwait in this thread
	 * receives them.
	 */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	sigaction(SIGPIPE, &ignore, NULL);

	pthread_mutex_init(&provider.lock, NULL);
	provider.records = calloc(MAX_REQUEST_RECORDS, sizeof(*provider.records));
	if (provider.records == NULL) {
		log_message("out of memory for %d request records", MAX_REQUEST_RECORDS);
		return 1;
	}
	provider.started_ns = monotonic_ns();
	provider.inject_429_pending = provider.opt.inject_429_at_s >= 0;
	provider.stats.injected_429_at_ns = -1;
	provider.rng_state = provider.opt.seed;
	bucket_init(&provider.requests, provider.opt.rpm, monotonic_ns());
	bucket_init(&provider.tokens, provider.opt.tpm, monotonic_ns());

	daemon = start_daemon(&provider.opt, &port);
	if (daemon == NULL)
		return 1;
	if (provider.opt.port_file != NULL && write_port_file(provider.opt.port_file, port) != 0) {
		MHD_stop_daemon(daemon);
		return 1;
	}
	log_message("listening on %s port %u: %s style, rpm %" PRId64 ", tpm %" PRId64
		    ", seed %" PRIu64 ", chunk delay %" PRId64 " us, %" PRId64 " tokens per chunk",
		    provider.opt.host, port,
		    provider.opt.style == STYLE_ANTHROPIC ? "anthropic" : "openai", provider.opt.rpm,
		    provider.opt.tpm, provider.opt.seed, provider.opt.chunk_delay_us,
		    provider.opt.tokens_per_chunk);
	if (provider.opt.inject_429_at_s >= 0)
		log_message("will respond to the first request at or after %" PRId64
			    " s with 429, retry after %" PRId64 " s",
			    provider.opt.inject_429_at_s, provider.opt.retry_after_s);

	while (sigwait(&stop_signals, &signal_number) != 0)
		;
	log_message("received %s; stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
	MHD_stop_daemon(daemon);

	format_stats_json(&provider, &stats);
	log_message("stopped: %" PRIu64 " admitted, %" PRIu64 " rate-limited (429), %" PRIu64
		    " injected 429, %" PRIu64 " invalid, %" PRIu64 " streams completed, %" PRIu64
		    " streams cut",
		    provider.stats.requests_admitted, provider.stats.requests_rate_limited,
		    provider.stats.injected_429s, provider.stats.requests_invalid, provider.stats.streams_completed,
		    provider.stats.streams_cut);
	if (stats.failed) {
		log_message("out of memory while formatting the stats");
		return 1;
	}
	printf("%s\n", stats.data);
	fflush(stdout);
	strbuf_free(&stats);
	free(provider.records);
	pthread_mutex_destroy(&provider.lock);
	return 0;
}
