/* SPDX-License-Identifier: MIT */
/* The "arlctl parse-headers" command: rate-limit state of a response head read from standard input. */
#include "arlctl_headers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arl/headers.h>

/* Largest input read: a head and a 429 body are a few KiB. */
#define ARLCTL_HEADERS_MAX_INPUT ((size_t)16 << 20)

static void arlctl_headers_print_help(FILE *out)
{
	fputs("Usage: arlctl parse-headers [--provider NAME]\n"
	      "\n"
	      "Reads an HTTP response head on standard input (an optional status line,\n"
	      "header lines, and after a blank line an optional body) and prints the\n"
	      "rate-limit state it reports as one JSON object on one line:\n"
	      "\n"
	      "  {\"status\": N|null, \"retry_after_ms\": N|null,\n"
	      "   \"requests\": LIMIT, \"tokens\": LIMIT, \"input_tokens\": LIMIT,\n"
	      "   \"output_tokens\": LIMIT}\n"
	      "\n"
	      "where each LIMIT is {\"limit\": N|null, \"remaining\": N|null,\n"
	      "\"reset_ms\": N|null, \"window\": \"second\"|\"10 seconds\"|\"minute\"|\"hour\"|\n"
	      "\"day\"|null}. A field is null when the response does not report it or\n"
	      "reports an invalid value (-1, NaN, empty). remaining is clamped to limit.\n"
	      "reset_ms is the time until the provider reports the limit full again.\n"
	      "Absolute times are measured against the response's Date header, or the\n"
	      "local clock without one, and waits longer than 7 days print as 604800000.\n"
	      "For a 429 the body is read too: Gemini's RetryInfo and quota violations,\n"
	      "and OpenAI's \"Please try again in\".\n"
	      "\n"
	      "Options:\n"
	      "  --provider NAME  which headers to read and what window each limit has:\n"
	      "                   openai (default), azure, anthropic, groq, mistral,\n"
	      "                   together, gemini\n"
	      "  -h, --help       print this help and exit\n"
	      "\n"
	      "Exit status: 0 once the input was read, 1 if reading it failed, 2 on\n"
	      "invalid options.\n",
	      out);
}

/* Parses a --provider value. Returns 0, or -1 after printing an error that names @value. */
static int arlctl_headers_parse_provider(const char *value, enum arl_provider *provider)
{
	int i;

	if (arl_provider_from_name(value, provider) == 0)
		return 0;
	fprintf(stderr, "arlctl parse-headers: invalid --provider value '%s': use one of", value);
	for (i = 0; i < ARL_PROVIDER_COUNT; i++)
		fprintf(stderr, "%s %s", i == 0 ? "" : ",", arl_provider_name((enum arl_provider)i));
	fputc('\n', stderr);
	return -1;
}

/*
 * Reads standard input to its end into a malloc'd buffer. Returns 0, or
 * -errno if a read failed, -ENOMEM, or -EFBIG past ARLCTL_HEADERS_MAX_INPUT.
 */
static int arlctl_headers_read_input(char **data, size_t *len)
{
	char *buffer = NULL;
	size_t capacity = 0;
	size_t used = 0;

	for (;;) {
		ssize_t n;

		if (used == capacity) {
			char *bigger;

			if (capacity >= ARLCTL_HEADERS_MAX_INPUT) {
				free(buffer);
				return -EFBIG;
			}
			capacity = capacity ? capacity * 2 : 4096;
			bigger = (char *)realloc(buffer, capacity);
			if (bigger == NULL) {
				free(buffer);
				return -ENOMEM;
			}
			buffer = bigger;
		}
		n = read(STDIN_FILENO, buffer + used, capacity - used);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			free(buffer);
			return (int)n;
		}
		used += (size_t)n;
	}
	*data = buffer;
	*len = used;
	return 0;
}

static void arlctl_headers_print_count(const char *name, bool known, uint64_t value)
{
	if (known)
		printf("\"%s\": %" PRIu64, name, value);
	else
		printf("\"%s\": null", name);
}

static void arlctl_headers_print_limit(const char *name, const struct arl_headers_limit *l)
{
	const char *window = l->has_window ? arl_headers_window_name(l->window_ms) : NULL;

	printf(", \"%s\": {", name);
	arlctl_headers_print_count("limit", l->has_limit, l->limit);
	printf(", ");
	arlctl_headers_print_count("remaining", l->has_remaining, l->remaining);
	printf(", ");
	arlctl_headers_print_count("reset_ms", l->has_reset, l->reset_ms);
	if (window != NULL)
		printf(", \"window\": \"%s\"}", window);
	else
		printf(", \"window\": null}");
}

static void arlctl_headers_print_result(const struct arl_headers_result *r)
{
	printf("{");
	arlctl_headers_print_count("status", r->status != 0, (uint64_t)r->status);
	printf(", ");
	arlctl_headers_print_count("retry_after_ms", r->has_retry_after, r->retry_after_ms);
	arlctl_headers_print_limit("requests", &r->limits[ARL_HEADERS_REQUESTS]);
	arlctl_headers_print_limit("tokens", &r->limits[ARL_HEADERS_TOKENS]);
	arlctl_headers_print_limit("input_tokens", &r->limits[ARL_HEADERS_INPUT_TOKENS]);
	arlctl_headers_print_limit("output_tokens", &r->limits[ARL_HEADERS_OUTPUT_TOKENS]);
	printf("}\n");
}

static int64_t arlctl_headers_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int arlctl_parse_headers(int argc, char **argv)
{
	enum arl_provider provider = ARL_PROVIDER_OPENAI;
	struct arl_headers_result result;
	char *input = NULL;
	size_t len = 0;
	int ret;
	int i;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			arlctl_headers_print_help(stdout);
			return 0;
		}
		if (strcmp(arg, "--provider") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "arlctl parse-headers: --provider requires a value "
						"(see 'arlctl parse-headers --help')\n");
				return 2;
			}
			if (arlctl_headers_parse_provider(argv[++i], &provider) < 0)
				return 2;
			continue;
		}
		if (strncmp(arg, "--provider=", 11) == 0) {
			if (arlctl_headers_parse_provider(arg + 11, &provider) < 0)
				return 2;
			continue;
		}
		fprintf(stderr,
			"arlctl parse-headers: invalid argument '%s': the only option is "
			"--provider NAME, and the response head is read from standard input "
			"(see 'arlctl parse-headers --help')\n",
			arg);
		return 2;
	}

	ret = arlctl_headers_read_input(&input, &len);
	if (ret < 0) {
		fprintf(stderr, "arlctl parse-headers: reading standard input failed: %s\n",
			ret == -EFBIG ? "input larger than 16 MiB" : strerror(-ret));
		return 1;
	}

	ret = arl_headers_parse(input, len, provider, arlctl_headers_now_ms(), &result);
	free(input);
	if (ret < 0) {
		fprintf(stderr, "arlctl parse-headers: parsing the response failed: %s\n",
			strerror(-ret));
		return 1;
	}
	arlctl_headers_print_result(&result);
	return 0;
}
