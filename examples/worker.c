/* SPDX-License-Identifier: MIT */
/*
 * arl-demo-worker - one worker of the demo's pool. Each round reserves an
 * upper bound of a request's tokens in an arl bucket and streams one chat
 * completion (or, for the anthropic profile, one Messages response) with
 * libcurl. The body goes to the stream tracker, which releases with the real
 * usage. At exit the worker prints one JSON line with its totals.
 *
 * The response head goes to arl's header parser, and the parsed result goes
 * to arl_bucket_observe(): the provider's remaining counts lower the bucket's
 * availability for every process, and a 429 blocks the whole bucket until
 * its retry time. The worker then cancels its reservation, because the
 * provider processed nothing, and reserves again, waiting out the block.
 *
 * The upper bound is prompt bytes + 4 per message + max_tokens: a tokenizer
 * never makes more tokens than bytes, plus a few per message for the role
 * markers, so the real usage never exceeds the reservation and every release
 * is a refund.
 */
#include <getopt.h>
#include <signal.h>
#include <time.h>

#include <curl/curl.h>

#include <arl.h>
#include <arl/headers.h>
#include <arl/stream.h>

/* Number of 429s whose times the totals list. Later ones are only counted. */
#define MAX_LOGGED_BLOCKS 8
/* Attempts of one request that end in 429 before the worker gives it up. */
#define MAX_ATTEMPTS 5
/* Bytes of an error body kept for the header parser. A provider's are a few hundred. */
#define ERROR_BODY_BYTES 8192

struct worker_options {
	const char *segment;
	const char *bucket;
	const char *url;
	double duration_s;
	uint64_t max_requests;
	uint32_t max_tokens;
	uint32_t seed;
	double wait_s;
	enum arl_provider provider;
};

/* One 429 and the block it put on the bucket. Times are arl_now() in nanoseconds. */
struct block_record {
	uint64_t received_ns; /* the response head arrived */
	uint64_t observed_ns; /* arl_bucket_observe() returned, so the block was in place */
	int64_t retry_after_ms; /* the provider's retry time, or -1 without one */
	uint64_t blocked_until_ns; /* the bucket's block as arl_bucket_stats() read it, or 0 */
};

struct worker_totals {
	uint64_t requests, completed, http_429, retries, errors, fallbacks, wait_timeouts;
	uint64_t tokens_reserved, tokens_used, tokens_refunded;
	uint64_t tokens_canceled; /* reserved for requests that got 429, then canceled */
	struct block_record blocks[MAX_LOGGED_BLOCKS];
	uint32_t nblocks;
};

/* State of one HTTP exchange, shared by the header and body callbacks. */
struct exchange {
	struct arl *arl;
	struct arl_bucket bucket;
	struct arl_headers_parser parser;
	struct arl_stream_tracker *tracker;
	int status;	      /* of the final head, 0 until it ends */
	uint64_t head_ns;     /* arl_now() when the final head ended */
	char error_body[ERROR_BODY_BYTES];
	size_t error_length;
};

static const char *const words[] = {
	"quota",  "stream", "token",  "bucket", "refill", "window", "limit", "process",
	"worker", "shared", "memory", "atomic", "refund", "reserve", "sweep", "daemon",
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: arl-demo-worker --url URL [OPTION]...\n"
		"Stream chat completions from an OpenAI-compatible server, or messages from an\n"
		"Anthropic-style one, sharing one arl bucket with the other workers and applying\n"
		"the provider's rate-limit headers to it. Prints its totals as one JSON line at\n"
		"exit.\n"
		"\n"
		"  --url URL           chat completions or messages endpoint (required)\n"
		"  --provider NAME     header profile of arl/headers.h: openai, azure, anthropic,\n"
		"                      groq, mistral, together or gemini; anthropic also sends\n"
		"                      Messages API requests, the others Chat Completions\n"
		"                      (default openai)\n"
		"  --segment NAME      arl segment (default: $ARL_SHM, else /arl)\n"
		"  --bucket NAME       bucket to reserve from (default: default)\n"
		"  --duration SECONDS  stop starting requests after this long (default 30)\n"
		"  --requests N        stop after N requests (default: no limit)\n"
		"  --max-tokens N      upper bound of max_tokens per request, 1-100000\n"
		"                      (default 256)\n"
		"  --wait SECONDS      longest wait for the bucket per request (default 60)\n"
		"  --seed N            seed for prompts and max_tokens (default: the pid)\n"
		"  --help              show this help\n");
}

static int parse_options(int argc, char **argv, struct worker_options *o)
{
	static const struct option options[] = {
		{"url", required_argument, NULL, 'u'},	    {"segment", required_argument, NULL, 's'},
		{"bucket", required_argument, NULL, 'b'},   {"duration", required_argument, NULL, 'd'},
		{"requests", required_argument, NULL, 'n'}, {"max-tokens", required_argument, NULL, 'm'},
		{"wait", required_argument, NULL, 'w'},	    {"seed", required_argument, NULL, 'r'},
		{"provider", required_argument, NULL, 'p'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	int opt, index = 0;

	while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
		errno = 0;
		switch (opt) {
		case 'u':
			o->url = optarg;
			break;
		case 's':
			o->segment = optarg;
			break;
		case 'b':
			o->bucket = optarg;
			break;
		case 'd':
			o->duration_s = strtod(optarg, &end);
			if (*end || o->duration_s <= 0)
				goto bad;
			break;
		case 'n':
			o->max_requests = strtoull(optarg, &end, 10);
			if (*end || errno)
				goto bad;
			break;
		case 'm':
			o->max_tokens = (uint32_t)strtoul(optarg, &end, 10);
			if (*end || o->max_tokens == 0 || o->max_tokens > 100000)
				goto bad;
			break;
		case 'w':
			o->wait_s = strtod(optarg, &end);
			if (*end || o->wait_s < 0)
				goto bad;
			break;
		case 'r':
			o->seed = (uint32_t)strtoul(optarg, &end, 10);
			if (*end)
				goto bad;
			break;
		case 'p':
			if (arl_provider_from_name(optarg, &o->provider) != 0)
				goto bad;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (!o->url) {
		fprintf(stderr, "arl-demo-worker: --url is required, e.g. "
				"--url http://127.0.0.1:8080/v1/chat/completions\n");
		return -1;
	}
	return 0;
bad:
	fprintf(stderr, "arl-demo-worker: invalid value %s for --%s; see --help\n", optarg,
		options[index].name);
	return -1;
}

/*
 * Writes a request body, in the Messages API's form for the anthropic profile
 * and in Chat Completions' otherwise, and returns the token upper bound of
 * its prompt.
 */
static uint64_t build_request(char *body, size_t size, uint32_t *rng, uint32_t max_tokens,
			      enum arl_provider provider)
{
	char prompt[1024];
	size_t len = 0;
	int nwords = 20 + (int)(rand_r(rng) % 60), i;
	static const char system_text[] = "You are a concise assistant.";

	for (i = 0; i < nwords; i++)
		len += (size_t)snprintf(prompt + len, sizeof(prompt) - len, "%s%s", i ? " " : "",
					words[rand_r(rng) % (sizeof(words) / sizeof(words[0]))]);
	if (provider == ARL_PROVIDER_ANTHROPIC)
		snprintf(body, size,
			 "{\"model\":\"mock-claude\",\"stream\":true,\"max_tokens\":%u,"
			 "\"system\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
			 max_tokens, system_text, prompt);
	else
		snprintf(body, size,
			 "{\"model\":\"mock-gpt\",\"stream\":true,"
			 "\"stream_options\":{\"include_usage\":true},\"max_tokens\":%u,"
			 "\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
			 "{\"role\":\"user\",\"content\":\"%s\"}]}",
			 max_tokens, system_text, prompt);
	/* The system prompt counts as a message in both forms. */
	return (uint64_t)(sizeof(system_text) - 1) + len + 2 * 4;
}

/* Returns the wall clock in milliseconds since the Unix epoch, for a head without a Date. */
static int64_t unix_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Applies the parsed head (and, for a 429, body) to the bucket. Returns what
 * arl_bucket_observe() returned. */
static int observe(struct exchange *x, const struct arl_headers_result *result)
{
	struct arl_observation obs;
	int rc;

	arl_headers_to_observation(result, x->head_ns, &obs);
	rc = arl_bucket_observe(x->arl, x->bucket, &obs);
	if (rc != 0 && rc != ARL_ENEVERFITS)
		fprintf(stderr, "arl-demo-worker[%d]: observing a %d response failed: %s\n",
			(int)getpid(), result->status, arl_strerror(rc));
	return rc;
}

/*
 * libcurl's header callback: feeds each line to the parser. At the blank line
 * that ends a final head it notes the time and the status, and applies the
 * head at once unless it is a 429. A 429's body can add that the request
 * never fits, so run_one() applies that head once the body is in.
 */
static size_t on_header(char *data, size_t size, size_t count, void *user)
{
	struct exchange *x = user;
	size_t len = size * count;
	struct arl_headers_result result;

	arl_headers_parser_line(&x->parser, data, len);
	if (len > 2 || (len == 2 && data[0] != '\r') || (len == 1 && data[0] != '\n'))
		return len;

	arl_headers_parser_finish(&x->parser, unix_ms(), &result);
	/* 100 Continue: the final head follows and starts the parser over. */
	if (result.status >= 100 && result.status < 200)
		return len;
	x->status = result.status;
	x->head_ns = arl_now(x->arl);
	if (x->status != 429)
		observe(x, &result);
	return len;
}

static size_t on_body(char *data, size_t size, size_t count, void *user)
{
	struct exchange *x = user;
	size_t len = size * count, keep;

	if (x->status != 200) {
		/* An error body is kept (up to its buffer) for the header parser. */
		keep = sizeof(x->error_body) - x->error_length;
		keep = len < keep ? len : keep;
		memcpy(x->error_body + x->error_length, data, keep);
		x->error_length += keep;
		return len;
	}
	/* A tracker error (an over-long event) ends the transfer: the
	 * reservation is then released with the fallback. */
	if (arl_stream_tracker_feed(x->tracker, data, len) < 0)
		return 0;
	return len;
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Records a 429's times for the totals and logs it. */
static void record_block(struct exchange *x, const struct arl_headers_result *result,
			 uint64_t observed_ns, uint64_t request_id, struct worker_totals *t)
{
	struct arl_bucket_stats stats;
	struct block_record b = {x->head_ns, observed_ns, -1, 0};

	if (result->has_retry_after)
		b.retry_after_ms = (int64_t)result->retry_after_ms;
	if (arl_bucket_stats(x->arl, x->bucket, &stats) == 0)
		b.blocked_until_ns = stats.blocked_until_ns;
	if (t->nblocks < MAX_LOGGED_BLOCKS)
		t->blocks[t->nblocks++] = b;
	fprintf(stderr,
		"arl-demo-worker[%d]: request %llu got 429, retry after %lld ms; the bucket is "
		"blocked for every worker for %.3f s more\n",
		(int)getpid(), (unsigned long long)request_id, (long long)b.retry_after_ms,
		b.blocked_until_ns > observed_ns ? (double)(b.blocked_until_ns - observed_ns) / 1e9
						 : 0.0);
}

/*
 * Settles a 429: applies the head and body to the bucket, which blocks it,
 * and only then cancels the reservation, so that the capacity it returns
 * cannot admit a waiter before the block is in place. Returns true when a
 * retry can succeed.
 */
static bool settle_429(struct exchange *x, const struct arl_reservation *res,
		       uint64_t request_id, struct worker_totals *t)
{
	struct arl_headers_result result;
	uint64_t observed_ns;
	int rc;

	arl_headers_parser_body(&x->parser, x->error_body, x->error_length);
	arl_headers_parser_finish(&x->parser, unix_ms(), &result);
	rc = observe(x, &result);
	observed_ns = arl_now(x->arl);
	arl_cancel(x->arl, res);
	t->http_429++;
	if (rc == ARL_ENEVERFITS) {
		fprintf(stderr,
			"arl-demo-worker[%d]: request %llu got 429: it exceeds the provider's "
			"limit, so it is not retried\n",
			(int)getpid(), (unsigned long long)request_id);
		t->errors++;
		return false;
	}
	record_block(x, &result, observed_ns, request_id, t);
	return true;
}

enum outcome {
	OUTCOME_DONE,
	OUTCOME_RETRY,
};

/* Sends one request under a reservation and settles it. */
static enum outcome run_one(CURL *curl, struct arl *arl, struct arl_bucket bucket,
			    const struct arl_reservation *res, const char *body, uint64_t reserved,
			    uint64_t request_id, enum arl_provider provider, struct worker_totals *t)
{
	struct arl_stream_tracker tracker;
	struct arl_stream_usage usage;
	struct exchange *x;
	long status = 0;
	CURLcode code;

	/* The exchange contains an 8 KiB buffer, so it goes on the heap. */
	x = calloc(1, sizeof(*x));
	if (!x || arl_stream_tracker_init(&tracker, arl, res, ARL_STREAM_SSE) != 0) {
		free(x);
		arl_cancel(arl, res);
		t->errors++;
		return OUTCOME_DONE;
	}
	x->arl = arl;
	x->bucket = bucket;
	x->tracker = &tracker;
	arl_headers_parser_init(&x->parser, provider);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);

	if (code == CURLE_OK && status == 429) {
		bool retry = settle_429(x, res, request_id, t);

		t->tokens_canceled += reserved;
		/* The reservation is canceled, so the tracker's release finds it gone
		 * (ARL_ESTALE) and changes nothing. */
		arl_stream_tracker_destroy(&tracker);
		free(x);
		return retry ? OUTCOME_RETRY : OUTCOME_DONE;
	}
	free(x);
	arl_stream_tracker_release(&tracker);
	arl_stream_tracker_last_usage(&tracker, &usage);
	arl_stream_tracker_destroy(&tracker);
	if (usage.final) {
		t->completed++;
		t->tokens_used += usage.total_tokens;
		t->tokens_refunded += reserved > usage.total_tokens ? reserved - usage.total_tokens : 0;
	} else {
		t->fallbacks++;
		t->tokens_used += reserved;
		if (code != CURLE_OK || status != 200)
			t->errors++;
	}
	return OUTCOME_DONE;
}

static int attach(const struct worker_options *o, struct arl **arl, struct arl_bucket *bucket)
{
	struct arl_attach_options opts;
	char error[512] = "";
	int rc;

	memset(&opts, 0, sizeof(opts));
	opts.name = o->segment;
	opts.error = error;
	opts.error_size = sizeof(error);
	rc = arl_attach(arl, &opts);
	if (rc != 0) {
		fprintf(stderr, "arl-demo-worker: %s\n", error[0] ? error : arl_strerror(rc));
		return rc;
	}
	rc = arl_bucket_find(*arl, o->bucket, bucket);
	if (rc != 0)
		fprintf(stderr, "arl-demo-worker: bucket %s: %s; check arld's configuration\n",
			o->bucket, arl_strerror(rc));
	return rc;
}

static void print_totals(const struct worker_totals *t, enum arl_provider provider)
{
	uint32_t i;

	printf("{\"pid\": %d, \"provider\": \"%s\", \"requests\": %llu, \"completed\": %llu, "
	       "\"http_429\": %llu, \"retries\": %llu, \"errors\": %llu, \"fallbacks\": %llu, "
	       "\"wait_timeouts\": %llu, \"tokens_reserved\": %llu, \"tokens_used\": %llu, "
	       "\"tokens_refunded\": %llu, \"tokens_canceled\": %llu, \"blocks\": [",
	       (int)getpid(), arl_provider_name(provider), (unsigned long long)t->requests,
	       (unsigned long long)t->completed, (unsigned long long)t->http_429,
	       (unsigned long long)t->retries, (unsigned long long)t->errors,
	       (unsigned long long)t->fallbacks, (unsigned long long)t->wait_timeouts,
	       (unsigned long long)t->tokens_reserved, (unsigned long long)t->tokens_used,
	       (unsigned long long)t->tokens_refunded, (unsigned long long)t->tokens_canceled);
	/* Times in microseconds of CLOCK_MONOTONIC, which arl_now() reads outside tests. */
	for (i = 0; i < t->nblocks; i++)
		printf("%s{\"received_us\": %llu, \"observed_us\": %llu, \"retry_after_ms\": %lld, "
		       "\"blocked_until_us\": %llu}",
		       i ? ", " : "", (unsigned long long)(t->blocks[i].received_ns / 1000),
		       (unsigned long long)(t->blocks[i].observed_ns / 1000),
		       (long long)t->blocks[i].retry_after_ms,
		       (unsigned long long)(t->blocks[i].blocked_until_ns / 1000));
	printf("]}\n");
	fflush(stdout);
}

/*
 * Sets the request headers of one attempt. x-demo-granted-at-us sends the
 * time when arl granted the reservation to the demo's mock provider. With it
 * the demo separates a request granted before a 429 blocked the bucket from
 * one granted during the block.
 */
static struct curl_slist *request_headers(CURL *curl, struct arl *arl, enum arl_provider provider)
{
	struct curl_slist *headers;
	char granted[64];

	snprintf(granted, sizeof(granted), "x-demo-granted-at-us: %llu",
		 (unsigned long long)(arl_now(arl) / 1000));
	headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (provider == ARL_PROVIDER_ANTHROPIC)
		headers = curl_slist_append(headers, "anthropic-version: 2023-06-01");
	headers = curl_slist_append(headers, granted);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	return headers;
}

int main(int argc, char **argv)
{
	struct worker_options o = {NULL, "default", NULL, 30.0, 0, 256, 0, 60.0,
				   ARL_PROVIDER_OPENAI};
	struct worker_totals t;
	struct arl_bucket bucket;
	struct arl *arl;
	struct arl_request req = {0, 0, 0};
	char body[2048];
	uint64_t stop_at;
	unsigned attempts = 0;
	CURL *curl;

	o.seed = (uint32_t)getpid();
	if (parse_options(argc, argv, &o) != 0)
		return 2;
	if (attach(&o, &arl, &bucket) != 0)
		return 1;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	memset(&t, 0, sizeof(t));

	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	curl_easy_setopt(curl, CURLOPT_URL, o.url);

	stop_at = arl_impl_monotonic_ns() + (uint64_t)(o.duration_s * 1e9);
	while (!stopping && arl_impl_monotonic_ns() < stop_at &&
	       (o.max_requests == 0 || t.requests < o.max_requests)) {
		struct arl_reservation res;
		struct curl_slist *headers;
		enum outcome outcome;
		int rc;

		/* A request that got 429 is sent again as it was. */
		if (attempts == 0) {
			req.output_tokens = 1 + (uint32_t)rand_r(&o.seed) % o.max_tokens;
			req.input_tokens = build_request(body, sizeof(body), &o.seed,
							 (uint32_t)req.output_tokens, o.provider);
			req.request_id++;
		}
		rc = arl_reserve_wait(arl, bucket, &req, arl_now(arl) + (uint64_t)(o.wait_s * 1e9),
				      &res);
		if (rc == ARL_ETIMEDOUT) {
			t.wait_timeouts++;
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, "arl-demo-worker[%d]: reserve failed: %s\n", (int)getpid(),
				arl_strerror(rc));
			t.errors++;
			break;
		}
		headers = request_headers(curl, arl, o.provider);
		t.requests++;
		t.tokens_reserved += req.input_tokens + req.output_tokens;
		outcome = run_one(curl, arl, bucket, &res, body, req.input_tokens + req.output_tokens,
				  req.request_id, o.provider, &t);
		curl_slist_free_all(headers);
		attempts = outcome == OUTCOME_RETRY ? attempts + 1 : 0;
		if (attempts == MAX_ATTEMPTS) {
			fprintf(stderr, "arl-demo-worker[%d]: request %llu got 429 %d times; giving "
				"it up\n", (int)getpid(), (unsigned long long)req.request_id,
				MAX_ATTEMPTS);
			t.errors++;
			attempts = 0;
		}
		if (attempts > 0)
			t.retries++;
	}

	curl_easy_cleanup(curl);
	curl_global_cleanup();
	arl_detach(arl);
	print_totals(&t, o.provider);
	return 0;
}
