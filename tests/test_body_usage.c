/* SPDX-License-Identifier: MIT */
/*
 * Tests arl_stream_response_usage() (arl/stream.h) on whole response bodies
 * of requests sent without streaming, in the shapes the providers document:
 * OpenAI Chat Completions and Responses, Anthropic Messages, Gemini
 * generateContent, Ollama, vLLM, and error bodies.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arl/stream.h>

#define TEST_TIMEOUT_SECONDS 30

struct body_case {
	const char *name;
	const char *body;
	bool final;
	bool error;
	uint64_t total, input, output;
};

static const struct body_case cases[] = {
    {"openai chat",
     "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1741569952,"
     "\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
     "\"assistant\",\"content\":\"Hello!\",\"refusal\":null,\"annotations\":[]},\"logprobs\":"
     "null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,"
     "\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
     "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0}},"
     "\"service_tier\":\"default\"}",
     true, false, 29, 19, 10},
    {"vllm chat",
     "{\"id\":\"chatcmpl-v\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"x\","
     "\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}],"
     "\"usage\":{\"prompt_tokens\":16,\"total_tokens\":32,\"completion_tokens\":16,"
     "\"prompt_tokens_details\":null},\"prompt_logprobs\":null}",
     true, false, 32, 16, 16},
    {"responses completed",
     "{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741476542,\"status\":"
     "\"completed\",\"error\":null,\"incomplete_details\":null,\"output\":[{\"type\":\"message\","
     "\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":"
     "\"output_text\",\"text\":\"Hi\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":36,"
     "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,"
     "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":123}}",
     true, false, 123, 36, 87},
    {"responses incomplete",
     "{\"id\":\"resp_2\",\"object\":\"response\",\"status\":\"incomplete\",\"error\":null,"
     "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":5,"
     "\"output_tokens\":16,\"total_tokens\":21}}",
     true, false, 21, 5, 16},
    {"responses in background",
     "{\"id\":\"resp_3\",\"object\":\"response\",\"status\":\"queued\",\"error\":null,"
     "\"usage\":null}",
     false, false, 0, 0, 0},
    {"responses failed",
     "{\"id\":\"resp_4\",\"object\":\"response\",\"status\":\"failed\",\"error\":{\"code\":"
     "\"server_error\",\"message\":\"failed\"},\"usage\":{\"input_tokens\":5,\"output_tokens\":0,"
     "\"total_tokens\":5}}",
     false, true, 0, 0, 0},
    {"anthropic message",
     "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
     "\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"Hi!\"}],\"stop_reason\":"
     "\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,"
     "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":503,"
     "\"service_tier\":\"standard\"}}",
     true, false, 3698, 3195, 503},
    {"anthropic error",
     "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},"
     "\"request_id\":\"req_1\"}",
     false, true, 0, 0, 0},
    {"gemini generateContent",
     "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Blue.\"}],\"role\":\"model\"},"
     "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,"
     "\"candidatesTokenCount\":2,\"totalTokenCount\":400,\"promptTokensDetails\":[{\"modality\":"
     "\"TEXT\",\"tokenCount\":8}],\"thoughtsTokenCount\":390},\"modelVersion\":"
     "\"gemini-2.5-flash\",\"responseId\":\"r1\"}",
     true, false, 400, 8, 392},
    {"gemini error",
     "{\"error\":{\"code\":400,\"message\":\"API key not valid.\",\"status\":"
     "\"INVALID_ARGUMENT\"}}",
     false, true, 0, 0, 0},
    {"ollama chat",
     "{\"model\":\"llama3.2\",\"created_at\":\"2023-12-12T14:13:43.416799Z\",\"message\":"
     "{\"role\":\"assistant\",\"content\":\"Hello!\"},\"done_reason\":\"stop\",\"done\":true,"
     "\"total_duration\":5191566416,\"load_duration\":2154458,\"prompt_eval_count\":26,"
     "\"prompt_eval_duration\":383809000,\"eval_count\":298,\"eval_duration\":4799921000}",
     true, false, 324, 26, 298},
    {"ollama without prompt count",
     "{\"model\":\"llama3.2\",\"response\":\"Hi\",\"done\":true,\"eval_count\":3}",
     false, false, 0, 0, 0},
    {"openai error",
     "{\"error\":{\"message\":\"Invalid model\",\"type\":\"invalid_request_error\","
     "\"param\":\"model\",\"code\":\"model_not_found\"}}",
     false, true, 0, 0, 0},
    {"cut body", "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":", false, false,
     0, 0, 0},
    {"not json", "<html>502 Bad Gateway</html>", false, false, 0, 0, 0},
    {"two objects", "{\"usage\":{\"total_tokens\":3}}{\"usage\":{\"total_tokens\":4}}", false,
     false, 0, 0, 0},
    {"empty", "", false, false, 0, 0, 0},
};

START_TEST(body_usage_matches)
{
	const struct body_case *c = &cases[_i];
	struct arl_stream_usage usage;

	ck_assert_int_eq(arl_stream_response_usage(c->body, strlen(c->body), &usage), 0);
	ck_assert_msg(usage.final == c->final, "%s: final %d, expected %d", c->name, usage.final,
		      c->final);
	ck_assert_msg(usage.error == c->error, "%s: error %d, expected %d", c->name, usage.error,
		      c->error);
	if (!c->final)
		return;
	ck_assert_msg(usage.total_tokens == c->total, "%s: total %llu, expected %llu", c->name,
		      (unsigned long long)usage.total_tokens, (unsigned long long)c->total);
	ck_assert_msg(usage.has_input && usage.input_tokens == c->input,
		      "%s: input %llu, expected %llu", c->name,
		      (unsigned long long)usage.input_tokens, (unsigned long long)c->input);
	ck_assert_msg(usage.has_output && usage.output_tokens == c->output,
		      "%s: output %llu, expected %llu", c->name,
		      (unsigned long long)usage.output_tokens, (unsigned long long)c->output);
}
END_TEST

START_TEST(final_body_releases_with_split)
{
	static const char body[] =
	    "{\"choices\":[{\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,"
	    "\"completion_tokens\":5,\"total_tokens\":12}}";
	struct arl_stream_usage usage;
	struct arl_usage release;

	ck_assert_int_eq(arl_stream_response_usage(body, strlen(body), &usage), 0);
	arl_stream_usage_to_release(&usage, &release);
	ck_assert_uint_eq(release.flags, ARL_USAGE_TOTAL | ARL_USAGE_SPLIT);
	ck_assert_uint_eq(release.total_tokens, 12);
	ck_assert_uint_eq(release.input_tokens, 7);
	ck_assert_uint_eq(release.output_tokens, 5);
}
END_TEST

START_TEST(error_body_releases_with_fallback)
{
	static const char body[] = "{\"error\":{\"message\":\"boom\"},\"usage\":{\"total_tokens\":9}}";
	struct arl_stream_usage usage;
	struct arl_usage release;

	ck_assert_int_eq(arl_stream_response_usage(body, strlen(body), &usage), 0);
	arl_stream_usage_to_release(&usage, &release);
	ck_assert_uint_eq(release.flags, 0);
}
END_TEST

/* A body with more JSON tokens than a stream parser's default array gets its own array. */
START_TEST(large_body_is_read_whole)
{
	static const char head[] = "{\"choices\":[{\"finish_reason\":\"stop\",\"logprobs\":[";
	static const char tail[] = "0]}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
				   "\"total_tokens\":3}}";
	size_t numbers = 200000;
	size_t len = strlen(head) + numbers * 2 + strlen(tail);
	char *body = (char *)malloc(len + 1);
	struct arl_stream_usage usage;
	size_t i;
	char *at;

	ck_assert_ptr_nonnull(body);
	at = body;
	memcpy(at, head, strlen(head));
	at += strlen(head);
	for (i = 0; i < numbers; i++) {
		*at++ = '1';
		*at++ = ',';
	}
	memcpy(at, tail, strlen(tail) + 1);

	ck_assert_int_eq(arl_stream_response_usage(body, strlen(body), &usage), 0);
	ck_assert(usage.final);
	ck_assert_uint_eq(usage.total_tokens, 3);
	free(body);
}
END_TEST

START_TEST(invalid_arguments_are_rejected)
{
	struct arl_stream_usage usage;

	ck_assert_int_eq(arl_stream_response_usage(NULL, 1, &usage), -EINVAL);
	ck_assert_int_eq(arl_stream_response_usage("{}", 2, NULL), -EINVAL);
	ck_assert_int_eq(arl_stream_response_usage(NULL, 0, &usage), 0);
	ck_assert(!usage.final);
	ck_assert_uint_eq(usage.events, 0);
}
END_TEST

static Suite *body_usage_suite(void)
{
	Suite *s = suite_create("body usage");
	TCase *tc = tcase_create("bodies");

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	tcase_add_loop_test(tc, body_usage_matches, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, final_body_releases_with_split);
	tcase_add_test(tc, error_body_releases_with_fallback);
	tcase_add_test(tc, large_body_is_read_whole);
	tcase_add_test(tc, invalid_arguments_are_rejected);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(body_usage_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
