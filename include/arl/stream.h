/* SPDX-License-Identifier: MIT */
/*
 * arl/stream.h - incremental token-usage tracker for streamed LLM responses.
 *
 * The parser reads the body of a provider's streaming HTTP response in pieces
 * of any size and extracts the token usage the provider reports. It accepts
 * two framings:
 *
 *   ARL_STREAM_SSE     server-sent events as the WHATWG HTML standard defines
 *                      them (OpenAI Chat Completions and Responses, Azure
 *                      OpenAI, Anthropic Messages, vLLM, OpenRouter, Groq,
 *                      Mistral, Together, Gemini with alt=sse).
 *   ARL_STREAM_NDJSON  one JSON object per line (Ollama's native API).
 *   ARL_STREAM_JSON_ARRAY  one JSON array whose elements arrive one by one
 *                      (Gemini's streamGenerateContent without alt=sse).
 *
 * Usage counts as final only after the provider's end marker. The end markers
 * are "data: [DONE]", an OpenAI usage chunk with an empty "choices" array, and
 * a chunk that carries usage and a finish reason on every choice or candidate.
 * They also include a Responses "response.completed" or "response.incomplete",
 * an Anthropic "message_stop" or "message_delta" with a stop_reason, and an
 * Ollama line with "done": true. Usage seen without an end marker is partial.
 * An error event or a top-level "error" member makes the usage unknown.
 *
 * No provider needs to be named: each event's JSON shape determines its dialect
 * (an Anthropic "type", a Responses "response.*" type, "usage",
 * "usageMetadata", Ollama's "done"). arl_stream_response_usage() reads the
 * same providers' usage from a whole body sent without streaming.
 *
 * Memory is bounded: the parser allocates one buffer of max_event_bytes and
 * one jsmn token array at init and never grows them.
 *
 * The header is C11 and C++11, and every function is static inline (see
 * ARL_STREAM_API). JSON is parsed with jsmn (Debian package libjsmn-dev),
 * which this header includes with JSMN_STATIC defined. A translation unit that
 * also uses jsmn must define JSMN_STATIC before it includes <jsmn.h>, or the
 * jsmn functions are defined with external linkage in every such unit.
 *
 * A tracker (struct arl_stream_tracker) binds a parser to a reservation: it
 * records each event as activity on the reservation and, at the end, releases
 * it with the final usage or with the fallback.
 *
 * Not thread-safe: one parser belongs to one stream and one thread at a time.
 */
#ifndef ARL_STREAM_H
#define ARL_STREAM_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The tracker below binds a parser to a reservation of the client API. */
#include <arl.h>

#ifndef JSMN_STATIC
#define JSMN_STATIC
#endif
#include <jsmn.h>

#ifndef ARL_STREAM_API
#define ARL_STREAM_API static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Default for max_event_bytes when arl_stream_parser_init() gets 0. */
#define ARL_STREAM_DEFAULT_EVENT_BYTES ((size_t)64 * 1024)
/* Largest accepted max_event_bytes, because jsmn stores offsets as int. */
#define ARL_STREAM_MAX_EVENT_BYTES ((size_t)1 << 30)
/* Size of the SSE event type buffer. Longer event types match no known type. */
#define ARL_STREAM_EVENT_TYPE_BYTES 64

enum arl_stream_format {
	ARL_STREAM_SSE = 0,
	ARL_STREAM_NDJSON = 1,
	ARL_STREAM_JSON_ARRAY = 2,
};

/* Token usage of one stream, as returned by arl_stream_parser_usage(). */
struct arl_stream_usage {
	/*
	 * Dispatched events: SSE events with at least one data line ("data: [DONE]"
	 * included), or non-blank NDJSON lines.
	 */
	uint64_t events;
	/* Usage is known and final: an end marker was seen, a total is known, no error. */
	bool final;
	/* An end marker was seen. */
	bool ended;
	/* An error event or error object was seen, or the stream overflowed the buffer. */
	bool error;
	/* An event or line exceeded max_event_bytes, which also sets error. */
	bool overflow;
	/* Whether total_tokens, input_tokens and output_tokens hold a value. */
	bool has_total, has_input, has_output;
	/*
	 * Latest values seen, final only when final is set. input_tokens includes
	 * Anthropic's cache creation and cache read input tokens and Gemini's
	 * tool-use prompt tokens. output_tokens includes Gemini's thinking tokens
	 * (OpenAI's completion_tokens already include reasoning tokens).
	 */
	uint64_t total_tokens, input_tokens, output_tokens;
};

/* Usage fields as the provider reports them. The latest valid value of each wins. */
enum arl_stream_field {
	ARL_STREAM_FIELD_TOTAL = 0,
	ARL_STREAM_FIELD_INPUT,
	ARL_STREAM_FIELD_OUTPUT,
	ARL_STREAM_FIELD_CACHE_CREATION,
	ARL_STREAM_FIELD_CACHE_READ,
	/* Gemini's toolUsePromptTokenCount, input not counted in promptTokenCount. */
	ARL_STREAM_FIELD_TOOL_PROMPT,
	/* Gemini's thoughtsTokenCount, output not counted in candidatesTokenCount. */
	ARL_STREAM_FIELD_THOUGHTS,
	ARL_STREAM_FIELD_COUNT
};

/* Rule that derives the total from the reported fields. */
enum arl_stream_dialect {
	ARL_STREAM_DIALECT_NONE = 0,
	/* The provider reports the total (OpenAI Chat and Responses, vLLM, Groq, Mistral). */
	ARL_STREAM_DIALECT_TOTAL,
	/* Total = input + cache creation + cache read + output tokens (Anthropic). */
	ARL_STREAM_DIALECT_ANTHROPIC,
	/* Total = prompt_eval_count + eval_count, both required (Ollama). */
	ARL_STREAM_DIALECT_OLLAMA,
	/*
	 * The provider reports the total, input includes tool-use prompt tokens
	 * and output includes thinking tokens (Gemini's usageMetadata).
	 */
	ARL_STREAM_DIALECT_GEMINI
};

/*
 * Parser state of one stream. The caller owns the struct and must treat the
 * members as private. Init allocates the buffers inside on the heap.
 */
struct arl_stream_parser {
	enum arl_stream_format format;
	/* SSE: the current event's data (lines joined by LF), then the line being read. */
	char *buffer;
	size_t capacity;
	size_t data_len;
	size_t line_len;
	jsmntok_t *tokens;
	unsigned int token_capacity;
	char event_type[ARL_STREAM_EVENT_TYPE_BYTES];
	/* SIZE_MAX marks an event type too long for event_type. */
	size_t event_type_len;
	/* Bytes of a leading UTF-8 byte order mark matched so far. */
	unsigned int bom_matched;
	bool bom_done;
	/* The last line ended in CR, so an LF that follows belongs to the same break. */
	bool pending_cr;
	/* JSON array: nesting inside the current element (0: between elements),
	 * and whether the scan is inside a string, just after a backslash. */
	unsigned int array_depth;
	bool array_in_string;
	bool array_escape;
	bool finished;
	bool overflow;
	bool error;
	bool ended;
	uint64_t events;
	enum arl_stream_dialect dialect;
	unsigned int known_fields;
	uint64_t fields[ARL_STREAM_FIELD_COUNT];
};

/*
 * Initializes @p to parse a stream in format @fmt, allocating an event buffer
 * of @max_event_bytes (0 selects ARL_STREAM_DEFAULT_EVENT_BYTES) and a jsmn
 * token array of max(256, max_event_bytes / 16) tokens.
 *
 * In SSE, the data of one event plus the line being read must fit in the
 * buffer. In NDJSON, one line must fit. Anything longer puts the parser in
 * the overflow state.
 *
 * Returns 0, -EINVAL if @p is NULL, @fmt is unknown or @max_event_bytes
 * exceeds ARL_STREAM_MAX_EVENT_BYTES, or -ENOMEM. After a failure @p is
 * zeroed, so arl_stream_parser_destroy() is still safe to call.
 */
ARL_STREAM_API int arl_stream_parser_init(struct arl_stream_parser *p, enum arl_stream_format fmt,
					  size_t max_event_bytes);

/*
 * Frees the buffers of @p and zeroes it. Accepts NULL and a parser whose
 * init failed.
 */
ARL_STREAM_API void arl_stream_parser_destroy(struct arl_stream_parser *p);

/*
 * Feeds the next @len bytes of the stream. Pieces may split lines, line
 * breaks (CR then LF) and UTF-8 sequences anywhere, and the result does not
 * depend on how the stream is split.
 *
 * Returns the number of events dispatched by this call (clamped to INT_MAX),
 * -EINVAL if @p is NULL or not initialized, @data is NULL with @len > 0, or
 * the parser was finished, or -EMSGSIZE if an event or line exceeded the buffer during this
 * or an earlier call. After -EMSGSIZE the parser ignores all further input,
 * and the usage reports overflow and error.
 */
ARL_STREAM_API int arl_stream_parser_feed(struct arl_stream_parser *p, const void *data,
					  size_t len);

/*
 * Marks the end of the stream. In SSE, data of an event not yet ended by a
 * blank line is discarded, as the WHATWG standard requires. In NDJSON, a last
 * line without a trailing newline is still parsed, and a cut JSON object there
 * fails to parse and is skipped. Calling it again has no effect.
 *
 * Returns 0, or -EINVAL if @p is NULL.
 */
ARL_STREAM_API int arl_stream_parser_finish(struct arl_stream_parser *p);

/*
 * Stores the usage seen so far in @out. It may be called at any time, but the
 * usage is final only once out->final is set.
 */
ARL_STREAM_API void arl_stream_parser_usage(const struct arl_stream_parser *p,
					    struct arl_stream_usage *out);

/* Implementation. */

static inline bool arl_stream_bytes_equal(const char *s, size_t len, const char *literal)
{
	size_t literal_len = strlen(literal);

	return len == literal_len && memcmp(s, literal, len) == 0;
}

static inline bool arl_stream_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Returns the index of the first token after the subtree rooted at token @i. */
static inline int arl_stream_json_skip(const jsmntok_t *tokens, int count, int i)
{
	int pending = 1;

	while (pending > 0 && i < count) {
		pending += tokens[i].size;
		pending--;
		i++;
	}
	return i;
}

/*
 * Returns the index of the value of member @key of object token @object, or
 * -1 if @object is not an object or has no such member. Keys are compared
 * byte for byte, so a key written with escapes does not match.
 */
static inline int arl_stream_json_member(const char *js, const jsmntok_t *tokens, int count,
					 int object, const char *key)
{
	int i;
	int member;

	if (object < 0 || object >= count || tokens[object].type != JSMN_OBJECT)
		return -1;

	i = object + 1;
	for (member = 0; member < tokens[object].size && i + 1 < count; member++) {
		const jsmntok_t *name = &tokens[i];

		if (name->size != 1)
			return -1;
		if (name->type == JSMN_STRING &&
		    arl_stream_bytes_equal(js + name->start, (size_t)(name->end - name->start),
					   key))
			return i + 1;
		i = arl_stream_json_skip(tokens, count, i + 1);
	}
	return -1;
}

static inline bool arl_stream_json_is_literal(const char *js, const jsmntok_t *tokens, int i,
					      const char *literal)
{
	const jsmntok_t *t = &tokens[i];

	return t->type == JSMN_PRIMITIVE &&
	       arl_stream_bytes_equal(js + t->start, (size_t)(t->end - t->start), literal);
}

/* Reports whether token @i exists and is not the JSON null literal. */
static inline bool arl_stream_json_present(const char *js, const jsmntok_t *tokens, int i)
{
	return i >= 0 && !arl_stream_json_is_literal(js, tokens, i, "null");
}

/*
 * Parses token @i as a token count: a JSON integer literal without sign,
 * fraction or exponent that fits in uint64_t. Anything else (negative,
 * fractional, 1e3, too large, a string) is rejected and returns false.
 */
static inline bool arl_stream_json_count(const char *js, const jsmntok_t *tokens, int i,
					 uint64_t *out)
{
	const jsmntok_t *t;
	uint64_t value = 0;
	int pos;

	if (i < 0)
		return false;
	t = &tokens[i];
	if (t->type != JSMN_PRIMITIVE || t->end <= t->start)
		return false;
	/* JSON forbids leading zeros, so "007" is not a number. */
	if (js[t->start] == '0' && t->end - t->start > 1)
		return false;

	for (pos = t->start; pos < t->end; pos++) {
		unsigned int digit;

		if (js[pos] < '0' || js[pos] > '9')
			return false;
		digit = (unsigned int)(js[pos] - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	*out = value;
	return true;
}

static inline void arl_stream_set_dialect(struct arl_stream_parser *p,
					  enum arl_stream_dialect dialect)
{
	/* Fields of one dialect mean nothing in another, so a switch starts over. */
	if (p->dialect != dialect) {
		p->dialect = dialect;
		p->known_fields = 0;
	}
}

/*
 * Stores member @key of usage object @usage as field @field if it contains a
 * valid count. An absent, null or invalid value keeps the previous value,
 * because providers that repeat cumulative usage may omit unchanged fields.
 */
static inline void arl_stream_update_field(struct arl_stream_parser *p, const char *js,
					   const jsmntok_t *tokens, int count, int usage,
					   const char *key, enum arl_stream_field field)
{
	uint64_t value;
	int i = arl_stream_json_member(js, tokens, count, usage, key);

	if (arl_stream_json_count(js, tokens, i, &value)) {
		p->fields[field] = value;
		p->known_fields |= 1u << field;
	}
}

/* Records an Anthropic usage object (message_start's message.usage or message_delta's usage). */
static inline void arl_stream_update_anthropic(struct arl_stream_parser *p, const char *js,
					       const jsmntok_t *tokens, int count, int usage)
{
	if (usage < 0 || tokens[usage].type != JSMN_OBJECT)
		return;
	arl_stream_set_dialect(p, ARL_STREAM_DIALECT_ANTHROPIC);
	arl_stream_update_field(p, js, tokens, count, usage, "input_tokens",
				ARL_STREAM_FIELD_INPUT);
	arl_stream_update_field(p, js, tokens, count, usage, "cache_creation_input_tokens",
				ARL_STREAM_FIELD_CACHE_CREATION);
	arl_stream_update_field(p, js, tokens, count, usage, "cache_read_input_tokens",
				ARL_STREAM_FIELD_CACHE_READ);
	arl_stream_update_field(p, js, tokens, count, usage, "output_tokens",
				ARL_STREAM_FIELD_OUTPUT);
}

/* Records a usage object whose provider reports the total itself. */
static inline void arl_stream_update_reported(struct arl_stream_parser *p, const char *js,
					      const jsmntok_t *tokens, int count, int usage,
					      const char *total_key, const char *input_key,
					      const char *output_key)
{
	arl_stream_set_dialect(p, ARL_STREAM_DIALECT_TOTAL);
	arl_stream_update_field(p, js, tokens, count, usage, total_key, ARL_STREAM_FIELD_TOTAL);
	arl_stream_update_field(p, js, tokens, count, usage, input_key, ARL_STREAM_FIELD_INPUT);
	arl_stream_update_field(p, js, tokens, count, usage, output_key, ARL_STREAM_FIELD_OUTPUT);
}

/* Records a Gemini usageMetadata object. */
static inline void arl_stream_update_gemini(struct arl_stream_parser *p, const char *js,
					    const jsmntok_t *tokens, int count, int metadata)
{
	arl_stream_set_dialect(p, ARL_STREAM_DIALECT_GEMINI);
	arl_stream_update_field(p, js, tokens, count, metadata, "totalTokenCount",
				ARL_STREAM_FIELD_TOTAL);
	arl_stream_update_field(p, js, tokens, count, metadata, "promptTokenCount",
				ARL_STREAM_FIELD_INPUT);
	arl_stream_update_field(p, js, tokens, count, metadata, "candidatesTokenCount",
				ARL_STREAM_FIELD_OUTPUT);
	arl_stream_update_field(p, js, tokens, count, metadata, "toolUsePromptTokenCount",
				ARL_STREAM_FIELD_TOOL_PROMPT);
	arl_stream_update_field(p, js, tokens, count, metadata, "thoughtsTokenCount",
				ARL_STREAM_FIELD_THOUGHTS);
}

/*
 * Reports whether array @array is non-empty and every element is an object
 * whose member @key is present and not null.
 */
static inline bool arl_stream_all_finished(const char *js, const jsmntok_t *tokens, int count,
					   int array, const char *key)
{
	int i;
	int element;

	if (array < 0 || tokens[array].type != JSMN_ARRAY || tokens[array].size == 0)
		return false;

	i = array + 1;
	for (element = 0; element < tokens[array].size; element++) {
		if (i >= count)
			return false;
		if (!arl_stream_json_present(js, tokens,
					     arl_stream_json_member(js, tokens, count, i, key)))
			return false;
		i = arl_stream_json_skip(tokens, count, i);
	}
	return true;
}

/* Handles a Responses API event ("response.created", "response.completed", ...). */
static inline void arl_stream_handle_responses(struct arl_stream_parser *p, const char *js,
					       const jsmntok_t *tokens, int count, const char *kind,
					       size_t kind_len)
{
	int response = arl_stream_json_member(js, tokens, count, 0, "response");
	int usage = arl_stream_json_member(js, tokens, count, response, "usage");

	if (arl_stream_bytes_equal(kind, kind_len, "response.failed")) {
		p->error = true;
		return;
	}
	if (usage >= 0 && tokens[usage].type == JSMN_OBJECT)
		arl_stream_update_reported(p, js, tokens, count, usage, "total_tokens",
					   "input_tokens", "output_tokens");
	if (arl_stream_bytes_equal(kind, kind_len, "response.completed") ||
	    arl_stream_bytes_equal(kind, kind_len, "response.incomplete"))
		p->ended = true;
}

/*
 * Handles a chunk without a recognised event type: OpenAI Chat and
 * compatible servers, Gemini and Ollama.
 */
static inline void arl_stream_handle_chunk(struct arl_stream_parser *p, const char *js,
					   const jsmntok_t *tokens, int count)
{
	int usage = arl_stream_json_member(js, tokens, count, 0, "usage");
	int choices = arl_stream_json_member(js, tokens, count, 0, "choices");
	int metadata = arl_stream_json_member(js, tokens, count, 0, "usageMetadata");
	int candidates = arl_stream_json_member(js, tokens, count, 0, "candidates");
	int done = arl_stream_json_member(js, tokens, count, 0, "done");

	/* Groq's own chunks carry the usage in x_groq.usage, on the chunk with the finish reason. */
	if (usage < 0 || tokens[usage].type != JSMN_OBJECT)
		usage = arl_stream_json_member(js, tokens, count,
					       arl_stream_json_member(js, tokens, count, 0, "x_groq"),
					       "usage");

	if (usage >= 0 && tokens[usage].type == JSMN_OBJECT) {
		arl_stream_update_reported(p, js, tokens, count, usage, "total_tokens",
					   "prompt_tokens", "completion_tokens");
		/*
		 * OpenAI sends usage with empty choices as the last data chunk.
		 * NOTE: with n > 1, a chunk that finishes one choice while another
		 * is still running also counts as the end.
		 */
		if (choices >= 0 && tokens[choices].type == JSMN_ARRAY &&
		    (tokens[choices].size == 0 ||
		     arl_stream_all_finished(js, tokens, count, choices, "finish_reason")))
			p->ended = true;
	}

	if (metadata >= 0 && tokens[metadata].type == JSMN_OBJECT) {
		arl_stream_update_gemini(p, js, tokens, count, metadata);
		if (arl_stream_all_finished(js, tokens, count, candidates, "finishReason"))
			p->ended = true;
	}

	if (done >= 0 && arl_stream_json_is_literal(js, tokens, done, "true")) {
		/*
		 * Only the done line carries the counts. Ollama releases from before
		 * mid-2024 omit prompt_eval_count when the prompt came from their
		 * cache (fixed by ollama/ollama pull request 5371). The total is
		 * then unknown.
		 */
		arl_stream_set_dialect(p, ARL_STREAM_DIALECT_OLLAMA);
		arl_stream_update_field(p, js, tokens, count, 0, "prompt_eval_count",
					ARL_STREAM_FIELD_INPUT);
		arl_stream_update_field(p, js, tokens, count, 0, "eval_count",
					ARL_STREAM_FIELD_OUTPUT);
		p->ended = true;
	}
}

/*
 * Parses @js as one JSON object into p->tokens. Returns the token count, or
 * 0 if @js is not exactly one object or needs more tokens than the parser has.
 * NOTE: an event that needs more tokens is skipped like non-JSON data, so
 * usage in such an event is lost and the stream reads as unfinished.
 */
static inline int arl_stream_parse_json(struct arl_stream_parser *p, const char *js, size_t len)
{
	jsmn_parser parser;
	size_t start = 0;
	int count;

	while (len > 0 && arl_stream_is_blank(js[len - 1]))
		len--;
	while (start < len && arl_stream_is_blank(js[start]))
		start++;
	if (start == len || js[start] != '{')
		return 0;

	jsmn_init(&parser);
	count = jsmn_parse(&parser, js, len, p->tokens, p->token_capacity);
	if (count <= 0)
		return 0;
	if (p->tokens[0].type != JSMN_OBJECT || (size_t)p->tokens[0].start != start ||
	    (size_t)p->tokens[0].end != len)
		return 0;
	if (arl_stream_json_skip(p->tokens, count, 0) != count)
		return 0;
	return count;
}

/* Interprets the data of one dispatched event. @type is the SSE event type or NULL. */
static inline void arl_stream_handle_event(struct arl_stream_parser *p, const char *data,
					   size_t len, const char *type, size_t type_len)
{
	const jsmntok_t *tokens = p->tokens;
	const char *kind = type;
	size_t kind_len = type_len;
	int count;
	int member;

	p->events++;

	if (type != NULL && arl_stream_bytes_equal(type, type_len, "error")) {
		p->error = true;
		return;
	}
	if (p->format == ARL_STREAM_SSE && arl_stream_bytes_equal(data, len, "[DONE]")) {
		p->ended = true;
		return;
	}

	count = arl_stream_parse_json(p, data, len);
	if (count == 0)
		return;

	member = arl_stream_json_member(data, tokens, count, 0, "error");
	if (arl_stream_json_present(data, tokens, member)) {
		p->error = true;
		return;
	}

	/* The JSON "type" member wins over the SSE event type when both exist. */
	member = arl_stream_json_member(data, tokens, count, 0, "type");
	if (member >= 0 && tokens[member].type == JSMN_STRING) {
		kind = data + tokens[member].start;
		kind_len = (size_t)(tokens[member].end - tokens[member].start);
	}
	if (kind == NULL) {
		kind = "";
		kind_len = 0;
	}

	if (arl_stream_bytes_equal(kind, kind_len, "error")) {
		p->error = true;
	} else if (kind_len > 9 && memcmp(kind, "response.", 9) == 0) {
		arl_stream_handle_responses(p, data, tokens, count, kind, kind_len);
	} else if (arl_stream_bytes_equal(kind, kind_len, "message_start")) {
		member = arl_stream_json_member(data, tokens, count, 0, "message");
		arl_stream_update_anthropic(
		    p, data, tokens, count,
		    arl_stream_json_member(data, tokens, count, member, "usage"));
	} else if (arl_stream_bytes_equal(kind, kind_len, "message_delta")) {
		arl_stream_update_anthropic(
		    p, data, tokens, count,
		    arl_stream_json_member(data, tokens, count, 0, "usage"));
		member = arl_stream_json_member(data, tokens, count, 0, "delta");
		member = arl_stream_json_member(data, tokens, count, member, "stop_reason");
		if (arl_stream_json_present(data, tokens, member))
			p->ended = true;
	} else if (arl_stream_bytes_equal(kind, kind_len, "message_stop")) {
		p->ended = true;
	} else {
		arl_stream_handle_chunk(p, data, tokens, count);
	}
}

/* Dispatches the pending SSE event at a blank line, as the WHATWG standard defines it. */
static inline int arl_stream_dispatch_sse(struct arl_stream_parser *p)
{
	const char *type = NULL;
	size_t type_len = 0;
	int dispatched = 0;

	if (p->data_len > 0) {
		if (p->event_type_len == SIZE_MAX) {
			type = "";
		} else if (p->event_type_len > 0) {
			type = p->event_type;
			type_len = p->event_type_len;
		}
		/* Every data line appended an LF; the last one is not part of the data. */
		arl_stream_handle_event(p, p->buffer, p->data_len - 1, type, type_len);
		dispatched = 1;
	}
	p->data_len = 0;
	p->event_type_len = 0;
	return dispatched;
}

/* Processes one complete SSE line, stored at p->buffer + p->data_len. Returns events dispatched. */
static inline int arl_stream_process_sse_line(struct arl_stream_parser *p)
{
	char *line = p->buffer + p->data_len;
	size_t len = p->line_len;
	const char *colon;
	size_t field_len;
	const char *value;
	size_t value_len;

	p->line_len = 0;
	if (len == 0)
		return arl_stream_dispatch_sse(p);
	if (line[0] == ':')
		return 0;

	colon = (const char *)memchr(line, ':', len);
	if (colon != NULL) {
		field_len = (size_t)(colon - line);
		value = colon + 1;
		value_len = len - field_len - 1;
		if (value_len > 0 && value[0] == ' ') {
			value++;
			value_len--;
		}
	} else {
		field_len = len;
		value = line + len;
		value_len = 0;
	}

	if (arl_stream_bytes_equal(line, field_len, "data")) {
		/* The value sits after the data in the same buffer, so it moves down in place. */
		memmove(p->buffer + p->data_len, value, value_len);
		p->data_len += value_len;
		p->buffer[p->data_len++] = '\n';
	} else if (arl_stream_bytes_equal(line, field_len, "event")) {
		if (value_len <= sizeof(p->event_type)) {
			memcpy(p->event_type, value, value_len);
			p->event_type_len = value_len;
		} else {
			p->event_type_len = SIZE_MAX;
		}
	}
	/* "id", "retry" and unknown fields do not affect usage. */
	return 0;
}

/* Processes one complete NDJSON line. Returns events dispatched. */
static inline int arl_stream_process_ndjson_line(struct arl_stream_parser *p)
{
	size_t len = p->line_len;
	size_t i;

	p->line_len = 0;
	for (i = 0; i < len; i++) {
		if (!arl_stream_is_blank(p->buffer[i])) {
			arl_stream_handle_event(p, p->buffer, len, NULL, 0);
			return 1;
		}
	}
	return 0;
}

static inline int arl_stream_process_line(struct arl_stream_parser *p)
{
	if (p->format == ARL_STREAM_SSE)
		return arl_stream_process_sse_line(p);
	return arl_stream_process_ndjson_line(p);
}

/* Scans one byte of a JSON array element, tracking strings and nesting.
 * Returns true when the byte closes the element. */
static inline bool arl_stream_array_byte(struct arl_stream_parser *p, char c)
{
	if (p->array_in_string) {
		if (p->array_escape)
			p->array_escape = false;
		else if (c == '\\')
			p->array_escape = true;
		else if (c == '"')
			p->array_in_string = false;
		return false;
	}
	if (c == '"')
		p->array_in_string = true;
	else if (c == '{' || c == '[')
		p->array_depth++;
	else if (c == '}' || c == ']')
		return --p->array_depth == 0;
	return false;
}

/*
 * Splits a JSON array into its elements and handles each as an event: the
 * brackets, commas and whitespace between elements are skipped, and an
 * element is copied until the brace that closes it. Adds the events
 * dispatched to *dispatched. Returns 0 or -EMSGSIZE for an element larger
 * than the buffer.
 */
static inline int arl_stream_push_array(struct arl_stream_parser *p, const char *bytes,
					size_t len, uint64_t *dispatched)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = bytes[i];

		if (p->array_depth == 0 && c != '{')
			continue; /* '[', ',', ']' or whitespace between elements */
		if (p->line_len == p->capacity) {
			p->overflow = true;
			p->line_len = 0;
			return -EMSGSIZE;
		}
		p->buffer[p->line_len++] = c;
		if (arl_stream_array_byte(p, c)) {
			arl_stream_handle_event(p, p->buffer, p->line_len, NULL, 0);
			p->line_len = 0;
			(*dispatched)++;
		}
	}
	return 0;
}

/*
 * Splits @bytes into lines ending in LF, CRLF or CR and processes each.
 * Adds the events dispatched to *dispatched. Returns 0 or -EMSGSIZE.
 */
static inline int arl_stream_push(struct arl_stream_parser *p, const char *bytes, size_t len,
				  uint64_t *dispatched)
{
	size_t i = 0;

	if (p->format == ARL_STREAM_JSON_ARRAY)
		return arl_stream_push_array(p, bytes, len, dispatched);

	while (i < len) {
		size_t end = i;
		size_t run;

		if (p->pending_cr) {
			p->pending_cr = false;
			if (bytes[i] == '\n') {
				i++;
				continue;
			}
		}

		while (end < len && bytes[end] != '\n' && bytes[end] != '\r')
			end++;
		run = end - i;
		if (run > p->capacity - p->data_len - p->line_len) {
			p->overflow = true;
			p->data_len = 0;
			p->line_len = 0;
			return -EMSGSIZE;
		}
		memcpy(p->buffer + p->data_len + p->line_len, bytes + i, run);
		p->line_len += run;
		if (end == len)
			break;

		p->pending_cr = bytes[end] == '\r';
		i = end + 1;
		*dispatched += (uint64_t)arl_stream_process_line(p);
	}
	return 0;
}

ARL_STREAM_API int arl_stream_parser_init(struct arl_stream_parser *p, enum arl_stream_format fmt,
					  size_t max_event_bytes)
{
	size_t tokens;

	if (p == NULL)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	if (fmt != ARL_STREAM_SSE && fmt != ARL_STREAM_NDJSON && fmt != ARL_STREAM_JSON_ARRAY)
		return -EINVAL;
	if (max_event_bytes == 0)
		max_event_bytes = ARL_STREAM_DEFAULT_EVENT_BYTES;
	if (max_event_bytes > ARL_STREAM_MAX_EVENT_BYTES)
		return -EINVAL;

	tokens = max_event_bytes / 16;
	if (tokens < 256)
		tokens = 256;

	p->buffer = (char *)malloc(max_event_bytes);
	p->tokens = (jsmntok_t *)malloc(tokens * sizeof(jsmntok_t));
	if (p->buffer == NULL || p->tokens == NULL) {
		free(p->buffer);
		free(p->tokens);
		memset(p, 0, sizeof(*p));
		return -ENOMEM;
	}
	p->format = fmt;
	p->capacity = max_event_bytes;
	p->token_capacity = (unsigned int)tokens;
	return 0;
}

ARL_STREAM_API void arl_stream_parser_destroy(struct arl_stream_parser *p)
{
	if (p == NULL)
		return;
	free(p->buffer);
	free(p->tokens);
	memset(p, 0, sizeof(*p));
}

ARL_STREAM_API int arl_stream_parser_feed(struct arl_stream_parser *p, const void *data, size_t len)
{
	static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
	const char *bytes = (const char *)data;
	uint64_t dispatched = 0;
	int ret;

	if (p == NULL || p->buffer == NULL || (data == NULL && len > 0) || p->finished)
		return -EINVAL;
	if (p->overflow)
		return -EMSGSIZE;

	/* The standard strips one leading UTF-8 byte order mark, which may arrive split. */
	while (!p->bom_done && len > 0) {
		if (bytes[0] == bom[p->bom_matched]) {
			bytes++;
			len--;
			if (++p->bom_matched == sizeof(bom))
				p->bom_done = true;
			continue;
		}
		p->bom_done = true;
		ret = arl_stream_push(p, bom, p->bom_matched, &dispatched);
		if (ret < 0)
			return ret;
	}

	ret = arl_stream_push(p, bytes, len, &dispatched);
	if (ret < 0)
		return ret;
	return dispatched > INT_MAX ? INT_MAX : (int)dispatched;
}

ARL_STREAM_API int arl_stream_parser_finish(struct arl_stream_parser *p)
{
	static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
	uint64_t dispatched = 0;

	if (p == NULL)
		return -EINVAL;
	if (p->finished)
		return 0;
	p->finished = true;
	if (p->buffer == NULL || p->overflow)
		return 0;

	if (!p->bom_done) {
		p->bom_done = true;
		if (arl_stream_push(p, bom, p->bom_matched, &dispatched) < 0)
			return 0;
	}
	if (p->format == ARL_STREAM_NDJSON && p->line_len > 0)
		arl_stream_process_ndjson_line(p);

	p->data_len = 0;
	p->line_len = 0;
	p->event_type_len = 0;
	p->pending_cr = false;
	return 0;
}

/* Adds @b to *@sum. Returns false on overflow, leaving *@sum unspecified. */
static inline bool arl_stream_add(uint64_t *sum, uint64_t b)
{
	if (*sum > UINT64_MAX - b)
		return false;
	*sum += b;
	return true;
}

/*
 * Sums fields @a and @b where known: *@has is set when either is known, and
 * cleared again if the sum overflows.
 */
static inline void arl_stream_sum_known(const struct arl_stream_parser *p, enum arl_stream_field a,
					enum arl_stream_field b, bool *has, uint64_t *sum)
{
	bool has_a = (p->known_fields & (1u << a)) != 0;
	bool has_b = (p->known_fields & (1u << b)) != 0;

	*sum = has_a ? p->fields[a] : 0;
	*has = has_a || has_b;
	if (has_b && !arl_stream_add(sum, p->fields[b])) {
		*has = false;
		*sum = 0;
	}
}

ARL_STREAM_API void arl_stream_parser_usage(const struct arl_stream_parser *p,
					    struct arl_stream_usage *out)
{
	unsigned int known = p->known_fields;
	const uint64_t *f = p->fields;
	bool has_input = (known & (1u << ARL_STREAM_FIELD_INPUT)) != 0;
	bool has_output = (known & (1u << ARL_STREAM_FIELD_OUTPUT)) != 0;

	memset(out, 0, sizeof(*out));
	out->events = p->events;
	out->ended = p->ended;
	out->overflow = p->overflow;
	out->error = p->error || p->overflow;
	out->has_output = has_output;
	out->output_tokens = has_output ? f[ARL_STREAM_FIELD_OUTPUT] : 0;

	switch (p->dialect) {
	case ARL_STREAM_DIALECT_TOTAL:
		out->has_total = (known & (1u << ARL_STREAM_FIELD_TOTAL)) != 0;
		out->total_tokens = out->has_total ? f[ARL_STREAM_FIELD_TOTAL] : 0;
		out->has_input = has_input;
		out->input_tokens = has_input ? f[ARL_STREAM_FIELD_INPUT] : 0;
		break;
	case ARL_STREAM_DIALECT_ANTHROPIC:
		if (has_input) {
			uint64_t input = f[ARL_STREAM_FIELD_INPUT];
			bool valid = true;

			/* Absent cache fields count as zero. */
			if (known & (1u << ARL_STREAM_FIELD_CACHE_CREATION))
				valid = valid &&
					arl_stream_add(&input, f[ARL_STREAM_FIELD_CACHE_CREATION]);
			if (known & (1u << ARL_STREAM_FIELD_CACHE_READ))
				valid =
				    valid && arl_stream_add(&input, f[ARL_STREAM_FIELD_CACHE_READ]);
			out->has_input = valid;
			out->input_tokens = valid ? input : 0;
		}
		break;
	case ARL_STREAM_DIALECT_OLLAMA:
		out->has_input = has_input;
		out->input_tokens = has_input ? f[ARL_STREAM_FIELD_INPUT] : 0;
		break;
	case ARL_STREAM_DIALECT_GEMINI:
		out->has_total = (known & (1u << ARL_STREAM_FIELD_TOTAL)) != 0;
		out->total_tokens = out->has_total ? f[ARL_STREAM_FIELD_TOTAL] : 0;
		arl_stream_sum_known(p, ARL_STREAM_FIELD_INPUT, ARL_STREAM_FIELD_TOOL_PROMPT,
				     &out->has_input, &out->input_tokens);
		arl_stream_sum_known(p, ARL_STREAM_FIELD_OUTPUT, ARL_STREAM_FIELD_THOUGHTS,
				     &out->has_output, &out->output_tokens);
		break;
	case ARL_STREAM_DIALECT_NONE:
		break;
	}

	if (p->dialect == ARL_STREAM_DIALECT_ANTHROPIC || p->dialect == ARL_STREAM_DIALECT_OLLAMA) {
		uint64_t total = out->input_tokens;

		if (out->has_input && out->has_output &&
		    arl_stream_add(&total, out->output_tokens)) {
			out->has_total = true;
			out->total_tokens = total;
		}
	}

	out->final = out->ended && out->has_total && !out->error;
}

/* ------------------------------------------------------------------------
 * Whole responses: usage of a body that was not streamed
 * ------------------------------------------------------------------------ */

/* Handles a Responses API response object ("object": "response"). */
static inline void arl_stream_handle_response_object(struct arl_stream_parser *p, const char *js,
						     const jsmntok_t *tokens, int count)
{
	int usage = arl_stream_json_member(js, tokens, count, 0, "usage");
	int status = arl_stream_json_member(js, tokens, count, 0, "status");

	if (usage >= 0 && tokens[usage].type == JSMN_OBJECT)
		arl_stream_update_reported(p, js, tokens, count, usage, "total_tokens",
					   "input_tokens", "output_tokens");
	/* A background response is "queued" or "in_progress" until it ends. */
	if (status >= 0 && tokens[status].type == JSMN_STRING) {
		const char *text = js + tokens[status].start;
		size_t len = (size_t)(tokens[status].end - tokens[status].start);

		if (arl_stream_bytes_equal(text, len, "completed") ||
		    arl_stream_bytes_equal(text, len, "incomplete"))
			p->ended = true;
		else if (arl_stream_bytes_equal(text, len, "failed"))
			p->error = true;
	}
}

/* Interprets a whole response body, already parsed into p->tokens. */
static inline void arl_stream_handle_body(struct arl_stream_parser *p, const char *js, int count)
{
	const jsmntok_t *tokens = p->tokens;
	int member = arl_stream_json_member(js, tokens, count, 0, "error");
	int type = arl_stream_json_member(js, tokens, count, 0, "type");
	int object = arl_stream_json_member(js, tokens, count, 0, "object");
	int metadata = arl_stream_json_member(js, tokens, count, 0, "usageMetadata");
	int usage = arl_stream_json_member(js, tokens, count, 0, "usage");
	int done = arl_stream_json_member(js, tokens, count, 0, "done");

	if (arl_stream_json_present(js, tokens, member) ||
	    (type >= 0 && tokens[type].type == JSMN_STRING &&
	     arl_stream_bytes_equal(js + tokens[type].start,
				    (size_t)(tokens[type].end - tokens[type].start), "error"))) {
		p->error = true;
		return;
	}

	if (type >= 0 && tokens[type].type == JSMN_STRING &&
	    arl_stream_bytes_equal(js + tokens[type].start,
				   (size_t)(tokens[type].end - tokens[type].start), "message")) {
		/* Anthropic Messages: the body is the whole message. */
		arl_stream_update_anthropic(p, js, tokens, count, usage);
		p->ended = true;
	} else if (object >= 0 && tokens[object].type == JSMN_STRING &&
		   arl_stream_bytes_equal(js + tokens[object].start,
					  (size_t)(tokens[object].end - tokens[object].start),
					  "response")) {
		arl_stream_handle_response_object(p, js, tokens, count);
	} else if (metadata >= 0 && tokens[metadata].type == JSMN_OBJECT) {
		arl_stream_update_gemini(p, js, tokens, count, metadata);
		p->ended = true;
	} else if (done >= 0 && arl_stream_json_is_literal(js, tokens, done, "true")) {
		arl_stream_set_dialect(p, ARL_STREAM_DIALECT_OLLAMA);
		arl_stream_update_field(p, js, tokens, count, 0, "prompt_eval_count",
					ARL_STREAM_FIELD_INPUT);
		arl_stream_update_field(p, js, tokens, count, 0, "eval_count",
					ARL_STREAM_FIELD_OUTPUT);
		p->ended = true;
	} else if (usage >= 0 && tokens[usage].type == JSMN_OBJECT) {
		/* OpenAI Chat Completions and the servers that copy it (vLLM, Groq, Mistral, Together). */
		arl_stream_update_reported(p, js, tokens, count, usage, "total_tokens",
					   "prompt_tokens", "completion_tokens");
		p->ended = true;
	}
}

/*
 * Reads the token usage of a whole JSON response body (a request sent
 * without streaming): OpenAI Chat Completions and Responses, Anthropic
 * Messages, Gemini's usageMetadata, Ollama, and OpenAI-compatible servers
 * such as vLLM. The body must be complete. The usage is final when the body
 * is one JSON object with usage and no error, and the Responses status is
 * "completed" or "incomplete". An error body, a cut or non-JSON body, or a
 * body without usage leaves it unknown, and arl_stream_usage_to_release()
 * then keeps the reservation's estimate. out->events is 1 for a JSON object.
 *
 * The token array is sized for this body and freed before returning.
 * Returns 0, -EINVAL if @out is NULL or @body is NULL with @len > 0,
 * -EMSGSIZE if @len exceeds ARL_STREAM_MAX_EVENT_BYTES, or -ENOMEM.
 */
ARL_STREAM_API int arl_stream_response_usage(const void *body, size_t len,
					     struct arl_stream_usage *out)
{
	const char *js = (const char *)body;
	struct arl_stream_parser p;
	jsmn_parser counter;
	int needed;
	int count;

	if (out == NULL || (body == NULL && len > 0))
		return -EINVAL;
	memset(&p, 0, sizeof(p));
	arl_stream_parser_usage(&p, out);
	if (len > ARL_STREAM_MAX_EVENT_BYTES)
		return -EMSGSIZE;

	jsmn_init(&counter);
	needed = len > 0 ? jsmn_parse(&counter, js, len, NULL, 0) : 0;
	if (needed <= 0)
		return 0;
	p.tokens = (jsmntok_t *)malloc((size_t)needed * sizeof(jsmntok_t));
	if (p.tokens == NULL)
		return -ENOMEM;
	p.token_capacity = (unsigned int)needed;

	count = arl_stream_parse_json(&p, js, len);
	if (count > 0) {
		p.events = 1;
		arl_stream_handle_body(&p, js, count);
	}
	arl_stream_parser_usage(&p, out);
	free(p.tokens);
	return 0;
}

/* ------------------------------------------------------------------------
 * Stream tracker: a parser bound to a reservation
 * ------------------------------------------------------------------------ */

/* A parser bound to a live reservation. Caller-owned, one per stream. */
struct arl_stream_tracker {
	struct arl_stream_parser parser;
	struct arl *arl;
	struct arl_reservation reservation;
	bool released;
	int release_result; /* what arl_release() returned */
	struct arl_stream_usage last_usage;
};

/*
 * Converts what a parser saw into a release's usage. That is the final
 * usage when the stream reached its end marker without error. Otherwise the
 * usage is unknown and carries the latest partial total, which a release
 * charges if it exceeds the reservation.
 */
/* A stream can claim any 64-bit count, but arl_release() takes at most
 * ARL_MAX_TOKENS. A larger claim is charged as ARL_MAX_TOKENS, because a
 * rejected release would leave the reservation in flight. */
ARL_STREAM_API uint64_t arl_stream_clamp_tokens(uint64_t n)
{
	return n > ARL_MAX_TOKENS ? ARL_MAX_TOKENS : n;
}

ARL_STREAM_API void arl_stream_usage_to_release(const struct arl_stream_usage *seen,
						struct arl_usage *out)
{
	memset(out, 0, sizeof(*out));
	if (seen->final && seen->has_total) {
		out->flags = ARL_USAGE_TOTAL;
		out->total_tokens = arl_stream_clamp_tokens(seen->total_tokens);
		if (seen->has_input && seen->has_output) {
			out->flags |= ARL_USAGE_SPLIT;
			out->input_tokens = arl_stream_clamp_tokens(seen->input_tokens);
			out->output_tokens = arl_stream_clamp_tokens(seen->output_tokens);
		}
		return;
	}
	if (seen->has_total && !seen->error) {
		out->flags = ARL_USAGE_PARTIAL;
		out->partial_tokens = arl_stream_clamp_tokens(seen->total_tokens);
	}
}

/*
 * Binds a new tracker to a live reservation. Returns 0, or a negative code
 * from arl_stream_parser_init(); on failure the reservation is untouched and
 * the caller still owns it.
 */
ARL_STREAM_API int arl_stream_tracker_init(struct arl_stream_tracker *t, struct arl *arl,
					   const struct arl_reservation *res,
					   enum arl_stream_format format)
{
	int rc;

	if (!t || !arl || !res)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	rc = arl_stream_parser_init(&t->parser, format, 0);
	if (rc != 0)
		return rc;
	t->arl = arl;
	t->reservation = *res;
	return 0;
}

/*
 * Feeds bytes of the response body as they arrive. Events dispatched by
 * this call are added to the reservation's chunk count and refresh its last
 * activity, so the sweeper sees a slow stream as alive. Returns the number
 * of events dispatched, or a negative code from the parser (the stream is
 * then broken: release it).
 */
ARL_STREAM_API int arl_stream_tracker_feed(struct arl_stream_tracker *t, const void *data,
					   size_t len)
{
	int events;

	if (!t || t->released)
		return -EINVAL;
	events = arl_stream_parser_feed(&t->parser, data, len);
	if (events > 0)
		arl_touch(t->arl, &t->reservation, (uint32_t)events);
	return events;
}

/*
 * Ends the stream and releases the reservation: with the final usage when
 * the stream reached its provider's end marker, else with the fallback
 * (the reservation, or the partial usage seen if larger). A transfer that
 * failed after the end marker arrived still releases with the final usage.
 * Returns what arl_release() returned (ARL_ESTALE when the sweeper reclaimed
 * the reservation first).
 */
ARL_STREAM_API int arl_stream_tracker_release(struct arl_stream_tracker *t)
{
	struct arl_usage usage;

	if (!t || t->released)
		return -EINVAL;
	arl_stream_parser_finish(&t->parser);
	arl_stream_parser_usage(&t->parser, &t->last_usage);
	arl_stream_usage_to_release(&t->last_usage, &usage);
	ARL_FAULT_POINT("tracker_before_release");
	t->release_result = arl_release(t->arl, &t->reservation, &usage);
	t->released = true;
	return t->release_result;
}

/* Copies the usage the tracker saw, as of its release or now. */
ARL_STREAM_API void arl_stream_tracker_last_usage(const struct arl_stream_tracker *t,
						  struct arl_stream_usage *out)
{
	if (t->released)
		*out = t->last_usage;
	else
		arl_stream_parser_usage(&t->parser, out);
}

/*
 * Frees the tracker. A tracker never released is a stream the caller
 * abandoned: it is released at once with the fallback, so its capacity is
 * settled now rather than at the next sweep.
 */
ARL_STREAM_API void arl_stream_tracker_destroy(struct arl_stream_tracker *t)
{
	if (!t)
		return;
	if (!t->released && t->arl) {
		struct arl_usage usage;

		/* Not finished: whatever usage was seen counts as partial. */
		arl_stream_parser_usage(&t->parser, &t->last_usage);
		t->last_usage.final = false;
		arl_stream_usage_to_release(&t->last_usage, &usage);
		t->release_result = arl_release(t->arl, &t->reservation, &usage);
		t->released = true;
	}
	arl_stream_parser_destroy(&t->parser);
}

#ifdef __cplusplus
}
#endif

#endif /* ARL_STREAM_H */
