// SPDX-License-Identifier: MIT
// Compiles arl/stream.h as C++11 and runs one stream through it.
#include <arl/stream.h>

#include <cstdio>
#include <cstring>

int main()
{
	static const char text[] =
	    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
	    "\"total_tokens\":7}}\r\n\r\ndata: [DONE]\r\n\r\n";
	arl_stream_parser parser;
	arl_stream_usage usage;

	if (arl_stream_parser_init(&parser, ARL_STREAM_SSE, 0) != 0) {
		std::fprintf(stderr, "arl_stream_parser_init failed\n");
		return 1;
	}
	int events = arl_stream_parser_feed(&parser, text, std::strlen(text));
	arl_stream_parser_finish(&parser);
	arl_stream_parser_usage(&parser, &usage);
	arl_stream_parser_destroy(&parser);

	if (events != 2 || !usage.final || usage.total_tokens != 7) {
		std::fprintf(stderr,
			     "expected 2 events and a final total of 7, got %d events, "
			     "final %d, total %llu\n",
			     events, usage.final ? 1 : 0, (unsigned long long)usage.total_tokens);
		return 1;
	}
	return 0;
}
