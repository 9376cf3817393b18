/* SPDX-License-Identifier: MIT */
/*
 * Tests of the stream usage parser (arl/stream.h) on inline streams. Most
 * tests parse each stream fed whole, byte by byte and split in two at every
 * offset. All of these must agree before the test checks the usage.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arl/stream.h>

#include "streamutil.h"

#define TEST_TIMEOUT_SECONDS 60

/*
 * Parses @text whole, byte by byte and split in two at every offset, asserts
 * that all agree, and stores the usage in @usage.
 */
static void parse_all_ways_sized(enum arl_stream_format format, const char *text,
				 size_t max_event_bytes, struct arl_stream_usage *usage)
{
	struct arl_stream_usage other;
	size_t len = strlen(text);
	size_t split;
	char how[64];

	/* Feeds may fail here: some texts overflow the buffer on purpose. */
	stream_parse_in_pieces(format, text, len, max_event_bytes, 0, usage);
	stream_parse_in_pieces(format, text, len, max_event_bytes, 1, &other);
	stream_assert_usage_equal(&other, usage, "byte by byte");
	for (split = 0; split <= len; split++) {
		snprintf(how, sizeof(how), "split at %zu", split);
		stream_parse_split(format, text, len, max_event_bytes, split, &other);
		stream_assert_usage_equal(&other, usage, how);
	}
}

static void parse_sse(const char *text, struct arl_stream_usage *usage)
{
	parse_all_ways_sized(ARL_STREAM_SSE, text, 0, usage);
}

static void parse_ndjson(const char *text, struct arl_stream_usage *usage)
{
	parse_all_ways_sized(ARL_STREAM_NDJSON, text, 0, usage);
}

static void assert_final_total(const struct arl_stream_usage *usage, uint64_t total)
{
	ck_assert(usage->final);
	ck_assert(usage->ended);
	ck_assert(!usage->error);
	ck_assert(usage->has_total);
	ck_assert_uint_eq(usage->total_tokens, total);
}

/* An OpenAI usage chunk with empty choices: final usage of 3 + 4 = 7 tokens. */
#define USAGE_CHUNK_7                                                                              \
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"            \
	"\"total_tokens\":7}}\n\n"

/* Line breaks and the SSE event framing. */

START_TEST(cr_then_lf_across_reads_is_one_break)
{
	struct arl_stream_parser parser;
	struct arl_stream_usage usage;
	const char *first = "data: {\"choices\":[],\r";
	const char *second = "\ndata: \"usage\":{\"total_tokens\":7}}\n\n";

	ck_assert_int_eq(arl_stream_parser_init(&parser, ARL_STREAM_SSE, 0), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, first, strlen(first)), 0);
	/* A second break here would dispatch the first half as its own event. */
	ck_assert_int_eq(arl_stream_parser_feed(&parser, second, strlen(second)), 1);
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	arl_stream_parser_usage(&parser, &usage);
	arl_stream_parser_destroy(&parser);

	ck_assert_uint_eq(usage.events, 1);
	assert_final_total(&usage, 7);
}
END_TEST

START_TEST(cr_then_data_across_reads_is_a_break)
{
	struct arl_stream_parser parser;
	struct arl_stream_usage usage;

	ck_assert_int_eq(arl_stream_parser_init(&parser, ARL_STREAM_SSE, 0), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "data: [DONE]\r", 13), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "\r", 1), 1);
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	arl_stream_parser_usage(&parser, &usage);
	arl_stream_parser_destroy(&parser);

	ck_assert_uint_eq(usage.events, 1);
	ck_assert(usage.ended);
}
END_TEST

START_TEST(cr_lf_and_crlf_endings_agree)
{
	struct arl_stream_usage usage;

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\r\rdata: [DONE]\r\r",
		  &usage);
	ck_assert_uint_eq(usage.events, 2);
	assert_final_total(&usage, 7);

	parse_sse(
	    "data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\r\n\r\ndata: [DONE]\r\n\r\n",
	    &usage);
	ck_assert_uint_eq(usage.events, 2);
	assert_final_total(&usage, 7);

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\n\r\ndata: [DONE]\r\n\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 2);
	assert_final_total(&usage, 7);
}
END_TEST

START_TEST(multi_line_data_joins_with_newline)
{
	struct arl_stream_usage usage;

	parse_sse("data: {\"choices\":[],\n"
		  "data: \"usage\":\n"
		  "data: {\"total_tokens\":9}}\n"
		  "\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 1);
	assert_final_total(&usage, 9);

	/* Joined with a newline, the data is "[DO\nNE]", which is no end marker. */
	parse_sse("data: [DO\ndata: NE]\n\n", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.ended);
}
END_TEST

START_TEST(comment_lines_are_ignored)
{
	struct arl_stream_usage usage;

	parse_sse(": OPENROUTER PROCESSING\n"
		  "\n"
		  ":\n"
		  "\n"
		  "data: {\"choices\":[],\n"
		  ": a comment inside the event\n"
		  "data: \"usage\":{\"total_tokens\":5}}\n"
		  "\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 1);
	assert_final_total(&usage, 5);
}
END_TEST

START_TEST(data_with_and_without_space)
{
	struct arl_stream_usage usage;

	parse_sse("data:{\"choices\":[],\"usage\":{\"total_tokens\":4}}\n\n", &usage);
	assert_final_total(&usage, 4);

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":4}}\n\n", &usage);
	assert_final_total(&usage, 4);

	parse_sse("data:[DONE]\n\n", &usage);
	ck_assert(usage.ended);

	/* Only one space is stripped, so the data is " [DONE]". */
	parse_sse("data:  [DONE]\n\n", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.ended);

	/* A field name without a colon is a field with an empty value. */
	parse_sse("data\n\n", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.ended);
}
END_TEST

START_TEST(byte_order_mark_is_stripped)
{
	struct arl_stream_usage usage;

	parse_sse("\xEF\xBB\xBF"
		  "data: [DONE]\n\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(usage.ended);

	/* Only the first byte order mark is stripped, so a second one is part of the field name. */
	parse_sse("\xEF\xBB\xBF\xEF\xBB\xBF"
		  "data: [DONE]\n\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 0);

	/* A partial mark is not stripped and makes the first field unknown. */
	parse_sse("\xEF\xBB"
		  "data: [DONE]\n\ndata: [DONE]\n\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 1);
}
END_TEST

START_TEST(event_without_data_is_not_dispatched)
{
	struct arl_stream_usage usage;

	parse_sse("event: message_stop\n\n", &usage);
	ck_assert_uint_eq(usage.events, 0);
	ck_assert(!usage.ended);

	/* The event type is reset after the blank line, so it does not leak into the next event. */
	parse_sse("event: error\n\ndata: {\"type\":\"ping\"}\n\n", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.error);
}
END_TEST

START_TEST(pending_data_at_eof_is_discarded)
{
	struct arl_stream_usage usage;

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\n", &usage);
	ck_assert_uint_eq(usage.events, 0);
	ck_assert(!usage.has_total);
	ck_assert(!usage.final);

	parse_sse("data: [DONE]", &usage);
	ck_assert_uint_eq(usage.events, 0);
	ck_assert(!usage.ended);
}
END_TEST

START_TEST(done_marker_counts_as_event)
{
	struct arl_stream_usage usage;

	parse_sse("data: [DONE]\n\n", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(usage.ended);
	/* An end marker without usage leaves the usage unknown. */
	ck_assert(!usage.final);
	ck_assert(!usage.has_total);
}
END_TEST

/* Buffer limits. */

START_TEST(over_long_line_overflows)
{
	struct arl_stream_parser parser;
	struct arl_stream_usage usage;
	char line[128];

	memset(line, 'x', sizeof(line));
	memcpy(line, "data: ", 6);

	ck_assert_int_eq(arl_stream_parser_init(&parser, ARL_STREAM_SSE, 64), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "data: [DONE]\n\n", 14), 1);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, line, sizeof(line)), -EMSGSIZE);
	/* Input after the overflow is ignored. */
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "\n\ndata: [DONE]\n\n", 16), -EMSGSIZE);
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	arl_stream_parser_usage(&parser, &usage);
	arl_stream_parser_destroy(&parser);

	ck_assert_uint_eq(usage.events, 1);
	ck_assert(usage.overflow);
	ck_assert(usage.error);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(over_long_multi_line_event_overflows)
{
	struct arl_stream_usage usage;

	/* Every line fits in 32 bytes, but the joined data does not. */
	parse_all_ways_sized(
	    ARL_STREAM_SSE, "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n", 32, &usage);
	ck_assert(usage.overflow);
	ck_assert(usage.error);
	ck_assert_uint_eq(usage.events, 0);
}
END_TEST

START_TEST(event_filling_buffer_exactly_fits)
{
	struct arl_stream_usage usage;
	const char *event = "data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}";

	/* The data line is the longest line, and its line break needs no buffer space. */
	char text[128];

	snprintf(text, sizeof(text), "%s\n\n", event);
	parse_all_ways_sized(ARL_STREAM_SSE, text, strlen(event), &usage);
	ck_assert(!usage.overflow);
	assert_final_total(&usage, 7);

	parse_all_ways_sized(ARL_STREAM_SSE, text, strlen(event) - 1, &usage);
	ck_assert(usage.overflow);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(over_long_ndjson_line_overflows)
{
	struct arl_stream_usage usage;

	parse_all_ways_sized(ARL_STREAM_NDJSON,
			     "{\"done\":true,\"prompt_eval_count\":1,\"eval_count\":2}\n", 16,
			     &usage);
	ck_assert(usage.overflow);
	ck_assert(usage.error);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(json_with_too_many_tokens_is_skipped)
{
	struct arl_stream_usage usage;
	/* The default 64 KiB buffer comes with 4096 jsmn tokens. */
	size_t elements = 5000;
	size_t cap = 64 + elements * 2 + 64;
	char *text = (char *)malloc(cap);
	size_t len;
	size_t i;

	ck_assert_ptr_nonnull(text);
	len = (size_t)snprintf(text, cap,
			       "data: {\"choices\":[],\"usage\":{\"total_tokens\":7},\"x\":[");
	for (i = 0; i < elements; i++) {
		text[len++] = '0';
		text[len++] = ',';
	}
	len--;
	memcpy(text + len, "]}\n\n", 5);

	stream_parse_in_pieces(ARL_STREAM_SSE, text, strlen(text), 0, 0, &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.has_total);
	ck_assert(!usage.ended);
	free(text);
}
END_TEST

/* Usage of the providers. */

START_TEST(openai_usage_chunk_with_empty_choices_is_final)
{
	struct arl_stream_usage usage;

	parse_sse(USAGE_CHUNK_7, &usage);
	assert_final_total(&usage, 7);
	ck_assert(usage.has_input);
	ck_assert_uint_eq(usage.input_tokens, 3);
	ck_assert(usage.has_output);
	ck_assert_uint_eq(usage.output_tokens, 4);
}
END_TEST

START_TEST(openai_null_usage_is_not_usage)
{
	struct arl_stream_usage usage;

	/* Azure's first chunk has empty choices and null usage, so it ends nothing. */
	parse_sse("data: {\"choices\":[],\"usage\":null}\n\n"
		  "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
		  "\"usage\":null}\n\n",
		  &usage);
	ck_assert_uint_eq(usage.events, 2);
	ck_assert(!usage.ended);
	ck_assert(!usage.has_total);
}
END_TEST

START_TEST(usage_on_content_chunks_latest_wins)
{
	struct arl_stream_usage usage;
	const char *chunks =
	    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},"
	    "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":0,"
	    "\"total_tokens\":16}}\n\n"
	    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},"
	    "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":1,"
	    "\"total_tokens\":17}}\n\n";
	char text[1024];

	parse_sse(chunks, &usage);
	ck_assert(!usage.ended);
	ck_assert(!usage.final);
	ck_assert(usage.has_total);
	ck_assert_uint_eq(usage.total_tokens, 17);

	/* A chunk that finishes every choice and carries usage ends the stream. */
	snprintf(text, sizeof(text), "%s%s", chunks,
		 "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" glare\"},"
		 "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":16,"
		 "\"completion_tokens\":2,\"total_tokens\":18}}\n\n");
	parse_sse(text, &usage);
	assert_final_total(&usage, 18);
	ck_assert_uint_eq(usage.input_tokens, 16);
	ck_assert_uint_eq(usage.output_tokens, 2);
}
END_TEST

START_TEST(usage_fields_missing_later_keep_latest)
{
	struct arl_stream_usage usage;

	parse_sse(
	    "data: {\"choices\":[{\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":5,"
	    "\"total_tokens\":5}}\n\n"
	    "data: {\"choices\":[],\"usage\":{\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
	    &usage);
	assert_final_total(&usage, 7);
	ck_assert_uint_eq(usage.input_tokens, 5);
	ck_assert_uint_eq(usage.output_tokens, 2);
}
END_TEST

START_TEST(non_json_data_is_skipped)
{
	struct arl_stream_usage usage;

	parse_sse(
	    "data: {\"choices\":[{\"finish_reason\":null}],\"usage\":{\"total_tokens\":3}}\n\n"
	    "data: : keepalive\n\n"
	    "data: {\"choices\":[] trailing\n\n"
	    "data: {\"choices\":[]} {\"usage\":{\"total_tokens\":99}}\n\n"
	    "data: [\"usage\"]\n\n"
	    "data: {\"choices\":[],\"usage\":{\"total_tokens\":17}}\n\n"
	    "data: : keepalive\n\n",
	    &usage);
	ck_assert_uint_eq(usage.events, 7);
	assert_final_total(&usage, 17);
}
END_TEST

START_TEST(invalid_counts_are_rejected)
{
	static const char *const invalid[] = {
	    "-5",
	    "1.5",
	    "1e3",
	    "18446744073709551616",
	    "99999999999999999999999",
	    "\"12\"",
	    "007",
	    "true",
	    "null",
	    "{}",
	};
	struct arl_stream_usage usage;
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		snprintf(text, sizeof(text),
			 "data: {\"choices\":[],\"usage\":{\"total_tokens\":%s}}\n\n", invalid[i]);
		parse_sse(text, &usage);
		ck_assert_msg(!usage.has_total, "total_tokens %s was accepted", invalid[i]);
		ck_assert_msg(!usage.final, "total_tokens %s made the usage final", invalid[i]);
	}

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":18446744073709551615}}\n\n",
		  &usage);
	assert_final_total(&usage, UINT64_MAX);

	parse_sse("data: {\"choices\":[],\"usage\":{\"total_tokens\":0}}\n\n", &usage);
	assert_final_total(&usage, 0);
}
END_TEST

START_TEST(responses_completed_is_final)
{
	struct arl_stream_usage usage;

	parse_sse("event: response.created\n"
		  "data: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\","
		  "\"usage\":null}}\n\n"
		  "event: response.completed\n"
		  "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\","
		  "\"usage\":{\"input_tokens\":2,\"output_tokens\":1,\"total_tokens\":3}}}\n\n",
		  &usage);
	assert_final_total(&usage, 3);
	ck_assert_uint_eq(usage.input_tokens, 2);
	ck_assert_uint_eq(usage.output_tokens, 1);
}
END_TEST

START_TEST(responses_incomplete_is_final)
{
	struct arl_stream_usage usage;

	parse_sse("event: response.incomplete\n"
		  "data: {\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\","
		  "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},"
		  "\"usage\":{\"input_tokens\":30,\"output_tokens\":20,\"total_tokens\":50}}}\n\n",
		  &usage);
	assert_final_total(&usage, 50);
}
END_TEST

START_TEST(responses_failed_sets_error)
{
	struct arl_stream_usage usage;

	parse_sse("event: response.failed\n"
		  "data: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\","
		  "\"error\":{\"code\":\"server_error\"},"
		  "\"usage\":{\"input_tokens\":30,\"output_tokens\":20,\"total_tokens\":50}}}\n\n",
		  &usage);
	ck_assert(usage.error);
	ck_assert(!usage.final);

	parse_sse(
	    "event: error\n"
	    "data: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"failed\"}\n\n",
	    &usage);
	ck_assert(usage.error);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(anthropic_cache_fields_are_summed)
{
	struct arl_stream_usage usage;

	parse_sse("event: message_start\n"
		  "data: {\"type\":\"message_start\",\"message\":{\"stop_reason\":null,"
		  "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":20,"
		  "\"cache_read_input_tokens\":30,\"output_tokens\":1}}}\n\n"
		  "event: message_delta\n"
		  "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
		  "\"usage\":{\"output_tokens\":15}}\n\n",
		  &usage);
	assert_final_total(&usage, 10 + 20 + 30 + 15);
	ck_assert_uint_eq(usage.input_tokens, 60);
	ck_assert_uint_eq(usage.output_tokens, 15);
}
END_TEST

START_TEST(anthropic_null_cache_fields_count_zero)
{
	struct arl_stream_usage usage;

	parse_sse("event: message_start\n"
		  "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,"
		  "\"cache_creation_input_tokens\":null,\"cache_read_input_tokens\":null,"
		  "\"output_tokens\":1}}}\n\n"
		  "event: message_stop\n"
		  "data: {\"type\":\"message_stop\"}\n\n",
		  &usage);
	assert_final_total(&usage, 26);
}
END_TEST

START_TEST(anthropic_needs_stop_to_be_final)
{
	struct arl_stream_usage usage;
	const char *start =
	    "event: message_start\n"
	    "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,"
	    "\"output_tokens\":1}}}\n\n"
	    "event: message_delta\n"
	    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},"
	    "\"usage\":{\"output_tokens\":5}}\n\n";
	char text[1024];

	parse_sse(start, &usage);
	ck_assert(!usage.ended);
	ck_assert(!usage.final);
	ck_assert(usage.has_total);
	ck_assert_uint_eq(usage.total_tokens, 30);

	/* The SSE event type names the event when the JSON has no "type" member. */
	snprintf(text, sizeof(text), "%sevent: message_stop\ndata: {}\n\n", start);
	parse_sse(text, &usage);
	assert_final_total(&usage, 30);
}
END_TEST

START_TEST(anthropic_error_event_sets_error)
{
	struct arl_stream_usage usage;

	parse_sse("event: message_start\n"
		  "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1200,"
		  "\"output_tokens\":1}}}\n\n"
		  "event: error\n"
		  "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\"}}\n\n"
		  "event: message_stop\n"
		  "data: {\"type\":\"message_stop\"}\n\n",
		  &usage);
	ck_assert(usage.error);
	ck_assert(usage.ended);
	ck_assert(!usage.final);
	/* The partial usage stays visible for a release that charges the larger amount. */
	ck_assert(usage.has_total);
	ck_assert_uint_eq(usage.total_tokens, 1201);
}
END_TEST

START_TEST(event_type_error_sets_error)
{
	struct arl_stream_usage usage;

	parse_sse(USAGE_CHUNK_7 "event: error\ndata: upstream timed out\n\n", &usage);
	ck_assert_uint_eq(usage.events, 2);
	ck_assert(usage.error);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(error_member_sets_error)
{
	struct arl_stream_usage usage;

	parse_sse(USAGE_CHUNK_7 "data: {\"error\":{\"message\":\"rate limited\"}}\n\n", &usage);
	ck_assert(usage.error);
	ck_assert(!usage.final);

	/* A null error member reports no error. */
	parse_sse("data: {\"error\":null,\"choices\":[],\"usage\":{\"total_tokens\":7}}\n\n",
		  &usage);
	ck_assert(!usage.error);
	assert_final_total(&usage, 7);
}
END_TEST

START_TEST(gemini_final_needs_every_candidate_finished)
{
	struct arl_stream_usage usage;
	const char *first =
	    "data: {\"candidates\":[{\"content\":{},\"finishReason\":\"STOP\",\"index\":0},"
	    "{\"content\":{},\"index\":1}],\"usageMetadata\":{\"promptTokenCount\":4,"
	    "\"candidatesTokenCount\":6,\"totalTokenCount\":10}}\n\n";
	char text[1024];

	parse_sse(first, &usage);
	ck_assert(!usage.ended);
	ck_assert(usage.has_total);
	ck_assert_uint_eq(usage.total_tokens, 10);

	snprintf(text, sizeof(text), "%s%s", first,
		 "data: {\"candidates\":[{\"content\":{},\"finishReason\":\"STOP\",\"index\":0},"
		 "{\"content\":{},\"finishReason\":\"MAX_TOKENS\",\"index\":1}],"
		 "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":8,"
		 "\"totalTokenCount\":12}}\n\n");
	parse_sse(text, &usage);
	assert_final_total(&usage, 12);
	ck_assert_uint_eq(usage.input_tokens, 4);
	ck_assert_uint_eq(usage.output_tokens, 8);
}
END_TEST

START_TEST(ollama_done_line_is_final)
{
	struct arl_stream_usage usage;

	parse_ndjson("{\"message\":{\"content\":\"The\"},\"done\":false}\n"
		     "\n"
		     "{\"message\":{\"content\":\"\"},\"done\":true,\"prompt_eval_count\":26,"
		     "\"eval_count\":282}\n",
		     &usage);
	ck_assert_uint_eq(usage.events, 2);
	assert_final_total(&usage, 308);
	ck_assert_uint_eq(usage.input_tokens, 26);
	ck_assert_uint_eq(usage.output_tokens, 282);
}
END_TEST

START_TEST(ollama_missing_eval_count_is_unknown)
{
	struct arl_stream_usage usage;

	parse_ndjson("{\"done\":true,\"prompt_eval_count\":26}\n", &usage);
	ck_assert(usage.ended);
	ck_assert(!usage.has_total);
	ck_assert(!usage.final);

	parse_ndjson("{\"done\":true,\"eval_count\":282}\n", &usage);
	ck_assert(usage.ended);
	ck_assert(!usage.has_total);
	ck_assert(!usage.final);
}
END_TEST

START_TEST(ollama_last_line_without_newline_counts)
{
	struct arl_stream_usage usage;

	parse_ndjson("{\"done\":true,\"prompt_eval_count\":1,\"eval_count\":2}", &usage);
	ck_assert_uint_eq(usage.events, 1);
	assert_final_total(&usage, 3);

	/* A line cut inside the JSON object is skipped. */
	parse_ndjson("{\"done\":true,\"prompt_eval_count\":1,\"eval_count\":2", &usage);
	ck_assert_uint_eq(usage.events, 1);
	ck_assert(!usage.ended);
}
END_TEST

START_TEST(ollama_error_line_sets_error)
{
	struct arl_stream_usage usage;

	parse_ndjson("{\"done\":false}\n{\"error\":\"model not found\"}\n", &usage);
	ck_assert(usage.error);
	ck_assert(!usage.final);
}
END_TEST

/* API contract. */

START_TEST(init_rejects_invalid_arguments)
{
	struct arl_stream_parser parser;

	ck_assert_int_eq(arl_stream_parser_init(NULL, ARL_STREAM_SSE, 0), -EINVAL);
	ck_assert_int_eq(arl_stream_parser_init(&parser, (enum arl_stream_format)7, 0), -EINVAL);
	arl_stream_parser_destroy(&parser);
	ck_assert_int_eq(
	    arl_stream_parser_init(&parser, ARL_STREAM_SSE, ARL_STREAM_MAX_EVENT_BYTES + 1),
	    -EINVAL);
	arl_stream_parser_destroy(&parser);
	arl_stream_parser_destroy(NULL);
}
END_TEST

START_TEST(feed_after_finish_is_rejected)
{
	struct arl_stream_parser parser;

	ck_assert_int_eq(arl_stream_parser_init(&parser, ARL_STREAM_SSE, 0), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, NULL, 0), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, NULL, 1), -EINVAL);
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "data: x\n\n", 9), -EINVAL);
	arl_stream_parser_destroy(&parser);
}
END_TEST

START_TEST(feed_returns_events_dispatched)
{
	struct arl_stream_parser parser;
	const char *text = "data: a\n\n: comment\n\ndata: b\n\ndata: c\n";

	ck_assert_int_eq(arl_stream_parser_init(&parser, ARL_STREAM_SSE, 0), 0);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, text, strlen(text)), 2);
	ck_assert_int_eq(arl_stream_parser_feed(&parser, "\n", 1), 1);
	arl_stream_parser_destroy(&parser);
}
END_TEST

static TCase *new_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	return tc;
}

static Suite *stream_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc;

	tc = new_tcase("sse framing");
	tcase_add_test(tc, cr_then_lf_across_reads_is_one_break);
	tcase_add_test(tc, cr_then_data_across_reads_is_a_break);
	tcase_add_test(tc, cr_lf_and_crlf_endings_agree);
	tcase_add_test(tc, multi_line_data_joins_with_newline);
	tcase_add_test(tc, comment_lines_are_ignored);
	tcase_add_test(tc, data_with_and_without_space);
	tcase_add_test(tc, byte_order_mark_is_stripped);
	tcase_add_test(tc, event_without_data_is_not_dispatched);
	tcase_add_test(tc, pending_data_at_eof_is_discarded);
	tcase_add_test(tc, done_marker_counts_as_event);
	suite_add_tcase(s, tc);

	tc = new_tcase("buffer limits");
	tcase_add_test(tc, over_long_line_overflows);
	tcase_add_test(tc, over_long_multi_line_event_overflows);
	tcase_add_test(tc, event_filling_buffer_exactly_fits);
	tcase_add_test(tc, over_long_ndjson_line_overflows);
	tcase_add_test(tc, json_with_too_many_tokens_is_skipped);
	suite_add_tcase(s, tc);

	tc = new_tcase("openai chat");
	tcase_add_test(tc, openai_usage_chunk_with_empty_choices_is_final);
	tcase_add_test(tc, openai_null_usage_is_not_usage);
	tcase_add_test(tc, usage_on_content_chunks_latest_wins);
	tcase_add_test(tc, usage_fields_missing_later_keep_latest);
	tcase_add_test(tc, non_json_data_is_skipped);
	tcase_add_test(tc, invalid_counts_are_rejected);
	tcase_add_test(tc, event_type_error_sets_error);
	tcase_add_test(tc, error_member_sets_error);
	suite_add_tcase(s, tc);

	tc = new_tcase("other providers");
	tcase_add_test(tc, responses_completed_is_final);
	tcase_add_test(tc, responses_incomplete_is_final);
	tcase_add_test(tc, responses_failed_sets_error);
	tcase_add_test(tc, anthropic_cache_fields_are_summed);
	tcase_add_test(tc, anthropic_null_cache_fields_count_zero);
	tcase_add_test(tc, anthropic_needs_stop_to_be_final);
	tcase_add_test(tc, anthropic_error_event_sets_error);
	tcase_add_test(tc, gemini_final_needs_every_candidate_finished);
	tcase_add_test(tc, ollama_done_line_is_final);
	tcase_add_test(tc, ollama_missing_eval_count_is_unknown);
	tcase_add_test(tc, ollama_last_line_without_newline_counts);
	tcase_add_test(tc, ollama_error_line_sets_error);
	suite_add_tcase(s, tc);

	tc = new_tcase("api contract");
	tcase_add_test(tc, init_rejects_invalid_arguments);
	tcase_add_test(tc, feed_after_finish_is_rejected);
	tcase_add_test(tc, feed_returns_events_dispatched);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(stream_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
