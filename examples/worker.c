/* SPDX-License-Identifier: MIT */
/*
 * arl-demo-worker - one worker of the demo's pool. Each round reserves an
 * upper bound of a request's tokens in an arl bucket and streams one chat
 * completion from an OpenAI-compatible server with libcurl. The body goes to
 * the stream tracker, which releases with the real usage. At exit the worker
 * prints one JSON line with its totals.
 *
 * The upper bound is prompt bytes + 4 per message + max_tokens: a tokenizer
 * never makes more tokens than bytes, plus a few per message for the role
 * markers, so the real usage never exceeds the reservation and every release
 * is a refund.
 */
#include <getopt.h>
#include <signal.h>

#include <curl/curl.h>

#include <arl.h>
#include <arl/stream.h>

struct worker_options {
	const char *segment;
	const char *bucket;
	const char *url;
	double duration_s;
	uint64_t max_requests;
	uint32_t max_tokens;
	uint32_t seed;
	double wait_s;
};

struct worker_totals {
	uint64_t requests, completed, http_429, errors, fallbacks, wait_timeouts;
	uint64_t tokens_reserved, tokens_used, tokens_refunded;
};

static const char *const words[] = {
	"quota",  "stream", "token",  "bucket", "refill", "window", "limit", "process",
	"worker", "shared", "memory", "atomic", "refund", "reserve", "sweep", "daemon",
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: arl-demo-worker --url URL [OPTION]...\n"
		"Stream chat completions from an OpenAI-compatible server, sharing one arl\n"
		"bucket with the other workers. Prints its totals as one JSON line at exit.\n"
		"\n"
		"  --url URL           chat completions endpoint (required)\n"
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
		{"help", no_argument, NULL, 'h'},	    {NULL, 0, NULL, 0},
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

/* Writes a request body and returns the token upper bound of its prompt. */
static uint64_t build_request(char *body, size_t size, uint32_t *rng, uint32_t max_tokens)
{
	char prompt[1024];
	size_t len = 0;
	int nwords = 20 + (int)(rand_r(rng) % 60), i;
	static const char system_text[] = "You are a concise assistant.";

	for (i = 0; i < nwords; i++)
		len += (size_t)snprintf(prompt + len, sizeof(prompt) - len, "%s%s", i ? " " : "",
					words[rand_r(rng) % (sizeof(words) / sizeof(words[0]))]);
	snprintf(body, size,
		 "{\"model\":\"mock-gpt\",\"stream\":true,"
		 "\"stream_options\":{\"include_usage\":true},\"max_tokens\":%u,"
		 "\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
		 "{\"role\":\"user\",\"content\":\"%s\"}]}",
		 max_tokens, system_text, prompt);
	return (uint64_t)(sizeof(system_text) - 1) + len + 2 * 4;
}

static size_t on_body(char *data, size_t size, size_t count, void *user)
{
	struct arl_stream_tracker *tracker = user;

	/* A tracker error (an over-long event) ends the transfer: the
	 * reservation is then released with the fallback. */
	if (arl_stream_tracker_feed(tracker, data, size * count) < 0)
		return 0;
	return size * count;
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Streams one completion under a reservation and settles it. */
static void run_one(CURL *curl, struct arl *arl, const struct arl_reservation *res,
		    const char *body, uint64_t reserved, struct worker_totals *t)
{
	struct arl_stream_tracker tracker;
	struct arl_stream_usage usage;
	long status = 0;
	CURLcode code;

	if (arl_stream_tracker_init(&tracker, arl, res, ARL_STREAM_SSE) != 0) {
		arl_cancel(arl, res);
		t->errors++;
		return;
	}
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &tracker);
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);

	if (code == CURLE_OK && status == 429) {
		/* The provider refused the request and charged no tokens. */
		struct arl_usage none = {ARL_USAGE_TOTAL, 0, 0, 0, 0};

		arl_release(arl, res, &none);
		arl_stream_tracker_destroy(&tracker);
		t->http_429++;
		t->tokens_refunded += reserved;
		return;
	}
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

static void print_totals(const struct worker_totals *t)
{
	printf("{\"pid\": %d, \"requests\": %llu, \"completed\": %llu, \"http_429\": %llu, "
	       "\"errors\": %llu, \"fallbacks\": %llu, \"wait_timeouts\": %llu, "
	       "\"tokens_reserved\": %llu, \"tokens_used\": %llu, \"tokens_refunded\": %llu}\n",
	       (int)getpid(), (unsigned long long)t->requests, (unsigned long long)t->completed,
	       (unsigned long long)t->http_429, (unsigned long long)t->errors,
	       (unsigned long long)t->fallbacks, (unsigned long long)t->wait_timeouts,
	       (unsigned long long)t->tokens_reserved, (unsigned long long)t->tokens_used,
	       (unsigned long long)t->tokens_refunded);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct worker_options o = {NULL, "default", NULL, 30.0, 0, 256, 0, 60.0};
	struct worker_totals t;
	struct arl_bucket bucket;
	struct curl_slist *headers;
	struct arl *arl;
	uint64_t stop_at;
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
	headers = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_URL, o.url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

	stop_at = arl_impl_monotonic_ns() + (uint64_t)(o.duration_s * 1e9);
	while (!stopping && arl_impl_monotonic_ns() < stop_at &&
	       (o.max_requests == 0 || t.requests < o.max_requests)) {
		uint32_t max_tokens = 1 + (uint32_t)rand_r(&o.seed) % o.max_tokens;
		struct arl_reservation res;
		char body[2048];
		struct arl_request req = {0, max_tokens, t.requests + 1};
		int rc;

		req.input_tokens = build_request(body, sizeof(body), &o.seed, max_tokens);
		rc = arl_reserve_wait(arl, bucket, &req, arl_now(arl) + (uint64_t)(o.wait_s * 1e9),
				      &res);
		if (rc == ARL_ETIMEDOUT) {
			t.wait_timeouts++;
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, "arl-demo-worker: reserve failed: %s\n", arl_strerror(rc));
			t.errors++;
			break;
		}
		t.requests++;
		t.tokens_reserved += req.input_tokens + req.output_tokens;
		run_one(curl, arl, &res, body, req.input_tokens + req.output_tokens, &t);
	}

	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	arl_detach(arl);
	print_totals(&t);
	return 0;
}
