/* SPDX-License-Identifier: MIT */
/*
 * streamutil.h - helpers shared by the stream parser tests. They read a
 * transcript, pick its framing from its file name, and parse it whole, in
 * pieces or split in two. A test then checks that every way gives the same
 * usage.
 */
#ifndef ARL_STREAMUTIL_H
#define ARL_STREAMUTIL_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arl/stream.h>

/*
 * Reads a whole file into a malloc'd buffer with a terminating NUL that @len
 * does not count. Returns NULL and sets errno on failure.
 */
static inline char *stream_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t cap = 0;
	size_t n = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t got;

		if (cap - n < 2) {
			char *bigger;

			cap = cap ? cap * 2 : 4096;
			bigger = (char *)realloc(data, cap);
			if (bigger == NULL) {
				free(data);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			data = bigger;
		}
		got = fread(data + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(data);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	data[n] = '\0';
	*len = n;
	return data;
}

static inline bool stream_ends_with(const char *name, const char *suffix)
{
	size_t len = strlen(name);
	size_t n = strlen(suffix);

	return len > n && strcmp(name + len - n, suffix) == 0;
}

/* Returns true for a transcript: a name ending in .sse, .ndjson or .json. */
static inline bool stream_is_transcript(const char *name)
{
	return stream_ends_with(name, ".sse") || stream_ends_with(name, ".ndjson") ||
	       stream_ends_with(name, ".json");
}

/* Returns the framing of a transcript: NDJSON for .ndjson, a streamed JSON
 * array for .json, server-sent events otherwise. */
static inline enum arl_stream_format stream_format_of(const char *name)
{
	if (stream_ends_with(name, ".ndjson"))
		return ARL_STREAM_NDJSON;
	if (stream_ends_with(name, ".json"))
		return ARL_STREAM_JSON_ARRAY;
	return ARL_STREAM_SSE;
}

/*
 * Parses @len bytes of @text fed in reads of @piece bytes (0: whole), with a
 * buffer of @max_event_bytes (0: the default), and stores the usage. Returns
 * false if a feed failed (on an overflow, for example), true otherwise.
 */
static inline bool stream_parse_in_pieces(enum arl_stream_format format, const char *text,
					  size_t len, size_t max_event_bytes, size_t piece,
					  struct arl_stream_usage *usage)
{
	struct arl_stream_parser parser;
	size_t offset = 0;
	bool fed = true;

	ck_assert_int_eq(arl_stream_parser_init(&parser, format, max_event_bytes), 0);
	if (piece == 0)
		piece = len;
	while (offset < len) {
		size_t n = len - offset < piece ? len - offset : piece;

		if (arl_stream_parser_feed(&parser, text + offset, n) < 0)
			fed = false;
		offset += n;
	}
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	arl_stream_parser_usage(&parser, usage);
	arl_stream_parser_destroy(&parser);
	return fed;
}

/* Parses @text in two reads split at @split; returns as
 * stream_parse_in_pieces() does. */
static inline bool stream_parse_split(enum arl_stream_format format, const char *text, size_t len,
				      size_t max_event_bytes, size_t split,
				      struct arl_stream_usage *usage)
{
	struct arl_stream_parser parser;
	bool fed;

	ck_assert_int_eq(arl_stream_parser_init(&parser, format, max_event_bytes), 0);
	fed = arl_stream_parser_feed(&parser, text, split) >= 0;
	fed = arl_stream_parser_feed(&parser, text + split, len - split) >= 0 && fed;
	ck_assert_int_eq(arl_stream_parser_finish(&parser), 0);
	arl_stream_parser_usage(&parser, usage);
	arl_stream_parser_destroy(&parser);
	return fed;
}

/* Asserts that usage @a, parsed the way @how names, equals @b, parsed whole. */
static inline void stream_assert_usage_equal(const struct arl_stream_usage *a,
					     const struct arl_stream_usage *b, const char *how)
{
	ck_assert_msg(a->events == b->events, "%s: events %llu, whole %llu", how,
		      (unsigned long long)a->events, (unsigned long long)b->events);
	ck_assert_msg(a->final == b->final, "%s: final differs from whole", how);
	ck_assert_msg(a->ended == b->ended, "%s: ended differs from whole", how);
	ck_assert_msg(a->error == b->error, "%s: error differs from whole", how);
	ck_assert_msg(a->overflow == b->overflow, "%s: overflow differs from whole", how);
	ck_assert_msg(a->has_total == b->has_total, "%s: has_total differs from whole", how);
	ck_assert_msg(a->has_input == b->has_input, "%s: has_input differs from whole", how);
	ck_assert_msg(a->has_output == b->has_output, "%s: has_output differs from whole", how);
	ck_assert_msg(a->total_tokens == b->total_tokens, "%s: total %llu, whole %llu", how,
		      (unsigned long long)a->total_tokens, (unsigned long long)b->total_tokens);
	ck_assert_msg(a->input_tokens == b->input_tokens, "%s: input differs from whole", how);
	ck_assert_msg(a->output_tokens == b->output_tokens, "%s: output differs from whole", how);
}

#endif /* ARL_STREAMUTIL_H */
