/* SPDX-License-Identifier: MIT */
/* The "arlctl sse-usage" command: token usage of a stream read from standard input. */
#include "arlctl_sse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arl/stream.h>

/* Read size; each read is fed to the parser as it arrives, as a proxy would. */
#define ARLCTL_SSE_READ_BYTES 4096

static void arlctl_sse_print_help(FILE *out)
{
	fputs("Usage: arlctl sse-usage [--format sse|ndjson|json-array]\n"
	      "\n"
	      "Reads the body of a streamed LLM response on standard input and prints\n"
	      "the token usage it reports as one JSON object on one line:\n"
	      "\n"
	      "  {\"events\": N, \"usage_known\": true|false, \"total_tokens\": N|null,\n"
	      "   \"input_tokens\": N|null, \"output_tokens\": N|null,\n"
	      "   \"partial_tokens\": N|null, \"error\": true|false}\n"
	      "\n"
	      "usage_known is true only when the stream reached its provider's end marker\n"
	      "with usage and without an error. The token fields are then final, and\n"
	      "null otherwise. partial_tokens is the latest total seen when the usage is\n"
	      "not known. error is true after an error event or object, or when one event\n"
	      "exceeded the 64 KiB event buffer.\n"
	      "\n"
	      "Options:\n"
	      "  --format sse     server-sent events (default): OpenAI, Azure OpenAI,\n"
	      "                   Anthropic, vLLM, OpenRouter, Gemini with alt=sse\n"
	      "  --format ndjson  one JSON object per line: Ollama's native API\n"
	      "  --format json-array\n"
	      "                   one JSON array streamed element by element: Gemini's\n"
	      "                   streamGenerateContent without alt=sse\n"
	      "  -h, --help       print this help and exit\n"
	      "\n"
	      "Exit status: 0 once the input was read, 1 if reading it failed, 2 on\n"
	      "invalid options.\n",
	      out);
}

/* Parses a --format value. Returns 0, or -1 after printing an error that names @value. */
static int arlctl_sse_parse_format(const char *value, enum arl_stream_format *format)
{
	if (strcmp(value, "sse") == 0) {
		*format = ARL_STREAM_SSE;
		return 0;
	}
	if (strcmp(value, "ndjson") == 0) {
		*format = ARL_STREAM_NDJSON;
		return 0;
	}
	if (strcmp(value, "json-array") == 0) {
		*format = ARL_STREAM_JSON_ARRAY;
		return 0;
	}
	fprintf(stderr,
		"arlctl sse-usage: invalid --format value '%s': use 'sse', 'ndjson' or "
		"'json-array'\n",
		value);
	return -1;
}

static void arlctl_sse_print_count(const char *name, bool known, uint64_t value)
{
	if (known)
		printf(", \"%s\": %" PRIu64, name, value);
	else
		printf(", \"%s\": null", name);
}

static void arlctl_sse_print_usage(const struct arl_stream_usage *usage)
{
	bool known = usage->final;

	printf("{\"events\": %" PRIu64 ", \"usage_known\": %s", usage->events,
	       known ? "true" : "false");
	arlctl_sse_print_count("total_tokens", known && usage->has_total, usage->total_tokens);
	arlctl_sse_print_count("input_tokens", known && usage->has_input, usage->input_tokens);
	arlctl_sse_print_count("output_tokens", known && usage->has_output, usage->output_tokens);
	arlctl_sse_print_count("partial_tokens", !known && usage->has_total, usage->total_tokens);
	printf(", \"error\": %s}\n", usage->error ? "true" : "false");
}

/* Feeds standard input to @parser until end of file. Returns 0, or -errno if a read failed. */
static int arlctl_sse_read_input(struct arl_stream_parser *parser)
{
	char buffer[ARLCTL_SSE_READ_BYTES];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buffer, sizeof(buffer));

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* An overflow is part of the result (error: true), so reading goes on to EOF. */
		arl_stream_parser_feed(parser, buffer, (size_t)n);
	}
	arl_stream_parser_finish(parser);
	return 0;
}

int arlctl_sse_usage(int argc, char **argv)
{
	enum arl_stream_format format = ARL_STREAM_SSE;
	struct arl_stream_parser parser;
	struct arl_stream_usage usage;
	int ret;
	int i;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			arlctl_sse_print_help(stdout);
			return 0;
		}
		if (strcmp(arg, "--format") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "arlctl sse-usage: --format requires a value: "
						"'sse', 'ndjson' or 'json-array'\n");
				return 2;
			}
			if (arlctl_sse_parse_format(argv[++i], &format) < 0)
				return 2;
			continue;
		}
		if (strncmp(arg, "--format=", 9) == 0) {
			if (arlctl_sse_parse_format(arg + 9, &format) < 0)
				return 2;
			continue;
		}
		fprintf(stderr,
			"arlctl sse-usage: invalid argument '%s': the only option is "
			"--format sse|ndjson|json-array, and the stream is read from standard input "
			"(see 'arlctl sse-usage --help')\n",
			arg);
		return 2;
	}

	ret = arl_stream_parser_init(&parser, format, 0);
	if (ret < 0) {
		fprintf(stderr, "arlctl sse-usage: initializing the stream parser failed: %s\n",
			strerror(-ret));
		return 1;
	}

	ret = arlctl_sse_read_input(&parser);
	if (ret < 0) {
		fprintf(stderr, "arlctl sse-usage: reading standard input failed: %s\n",
			strerror(-ret));
		arl_stream_parser_destroy(&parser);
		return 1;
	}

	arl_stream_parser_usage(&parser, &usage);
	arl_stream_parser_destroy(&parser);
	arlctl_sse_print_usage(&usage);
	if (format == ARL_STREAM_SSE && usage.events == 0)
		fprintf(stderr, "arlctl sse-usage: no server-sent events in the input; for one "
				"JSON object per line (Ollama's stream), use --format ndjson, and "
				"for one JSON array (Gemini without alt=sse), --format "
				"json-array\n");
	return 0;
}
