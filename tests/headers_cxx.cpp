// SPDX-License-Identifier: MIT
// Compiles arl/headers.h as C++11 beside arl/stream.h, and reads one head and one body.
#include <arl/headers.h>
#include <arl/stream.h>

#include <cstdio>
#include <cstring>

int main()
{
	static const char head[] = "HTTP/1.1 429 Too Many Requests\r\n"
				   "retry-after-ms: 1500\r\n"
				   "x-ratelimit-remaining-tokens: 98\r\n"
				   "x-ratelimit-reset-tokens: 4.03s\r\n\r\n";
	static const char body[] = "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
				   "\"total_tokens\":7}}";
	arl_headers_result result;
	arl_stream_usage usage;

	if (arl_headers_parse(head, std::strlen(head), ARL_PROVIDER_OPENAI, 0, &result) != 0 ||
	    result.status != 429 || result.retry_after_ms != 1500 ||
	    result.limits[ARL_HEADERS_TOKENS].reset_ms != 4030) {
		std::fprintf(stderr, "expected status 429, a 1500 ms wait and a 4030 ms reset\n");
		return 1;
	}
	if (arl_stream_response_usage(body, std::strlen(body), &usage) != 0 || !usage.final ||
	    usage.total_tokens != 7) {
		std::fprintf(stderr, "expected a final total of 7\n");
		return 1;
	}
	return 0;
}
