/* SPDX-License-Identifier: MIT */
/*
 * Tests the stream usage parser (arl/stream.h) on the transcripts in
 * tests/fixtures/streams, written from the providers' documentation. They
 * cover Gemini's cumulative usageMetadata, Responses incomplete and failed,
 * Anthropic cache usage, usage on a content chunk, Groq's x_groq.usage,
 * error chunks and lines, and cut streams. expected.txt lists each file's
 * expected total, parts, partial total and error flag.
 *
 * Every transcript must give the same usage fed whole, byte by byte, and
 * split in two reads at every offset.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arl/stream.h>

#include "streamutil.h"

#define TEST_TIMEOUT_SECONDS 60
#define MAX_CASES 128
#define MAX_NAME 256

#ifndef ARL_SOURCE_DIR
#error "ARL_SOURCE_DIR must name the source tree (set by tests/CMakeLists.txt)"
#endif
#define FIXTURES_DIR ARL_SOURCE_DIR "/tests/fixtures/streams"

/* A count in expected.txt, or none for "-". */
struct expected_count {
	bool known;
	uint64_t value;
};

struct fixture {
	char file[MAX_NAME];
	/* total.known is false for RESERVED: the final usage must be unknown. */
	struct expected_count total, input, output, partial;
	bool error;
};

static struct fixture fixtures[MAX_CASES];
static int fixture_count;

/* Parses one column: a count, "-" for none, or RESERVED where @reserved_ok. */
static bool parse_count_column(const char *word, bool reserved_ok, struct expected_count *out)
{
	char *end;

	memset(out, 0, sizeof(*out));
	if (strcmp(word, "-") == 0 || (reserved_ok && strcmp(word, "RESERVED") == 0))
		return true;
	if (word[0] < '0' || word[0] > '9')
		return false;
	errno = 0;
	out->value = strtoull(word, &end, 10);
	out->known = true;
	return errno == 0 && *end == '\0';
}

/* Parses one line of expected.txt. Returns 1 for a fixture, 0 for a comment or blank line, -1 on error. */
static int parse_line(char *line, struct fixture *f)
{
	char *words[6];
	char *save = NULL;
	int n = 0;
	char *word;

	for (word = strtok_r(line, " \t", &save); word != NULL && n < 7;
	     word = strtok_r(NULL, " \t", &save)) {
		if (n == 0 && word[0] == '#')
			return 0;
		if (n == 6)
			return -1;
		words[n++] = word;
	}
	if (n == 0)
		return 0;
	if (n != 6 || strlen(words[0]) >= sizeof(f->file))
		return -1;

	memset(f, 0, sizeof(*f));
	strcpy(f->file, words[0]);
	if (!parse_count_column(words[1], true, &f->total) ||
	    !parse_count_column(words[2], false, &f->input) ||
	    !parse_count_column(words[3], false, &f->output) ||
	    !parse_count_column(words[4], false, &f->partial))
		return -1;
	if (strcmp(words[5], "yes") != 0 && strcmp(words[5], "no") != 0)
		return -1;
	f->error = strcmp(words[5], "yes") == 0;
	return 1;
}

static int load_expected(void)
{
	const char *path = FIXTURES_DIR "/expected.txt";
	char *text;
	char *line;
	char *next;
	size_t len;

	text = stream_read_file(path, &len);
	if (text == NULL) {
		fprintf(stderr, "failed to read %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (line = text; *line != '\0'; line = next) {
		char *newline = strchr(line, '\n');
		int ret;

		next = newline != NULL ? newline + 1 : line + strlen(line);
		if (newline != NULL)
			*newline = '\0';
		ret = parse_line(line, &fixtures[fixture_count]);
		if (ret < 0) {
			fprintf(stderr, "%s: invalid line (expected file, total, input, output, "
					"partial, error)\n",
				path);
			free(text);
			return -1;
		}
		if (ret > 0 && ++fixture_count == MAX_CASES) {
			fprintf(stderr, "%s: more than %d fixtures, raise MAX_CASES\n", path,
				MAX_CASES);
			free(text);
			return -1;
		}
	}
	free(text);
	return fixture_count > 0 ? 0 : -1;
}

static void check_part(const char *file, const char *name, bool has, uint64_t value,
		       const struct expected_count *expected)
{
	if (!expected->known)
		return;
	ck_assert_msg(has, "%s: %s unknown, expected %llu", file, name,
		      (unsigned long long)expected->value);
	ck_assert_msg(value == expected->value, "%s: %s %llu, expected %llu", file, name,
		      (unsigned long long)value, (unsigned long long)expected->value);
}

START_TEST(fixture_matches_expected_usage)
{
	const struct fixture *f = &fixtures[_i];
	enum arl_stream_format format = stream_format_of(f->file);
	struct arl_stream_usage whole;
	struct arl_stream_usage other;
	char path[8192];
	char how[MAX_NAME + 32];
	char *text;
	size_t len;
	size_t split;

	snprintf(path, sizeof(path), "%s/%.*s", FIXTURES_DIR, (int)(MAX_NAME - 1), f->file);
	text = stream_read_file(path, &len);
	ck_assert_msg(text != NULL, "failed to read %s: %s", path, strerror(errno));

	ck_assert_msg(stream_parse_in_pieces(format, text, len, 0, 0, &whole),
		      "%s: a feed failed", f->file);
	ck_assert_msg(whole.error == f->error, "%s: error %d, expected %d", f->file, whole.error,
		      f->error);
	if (f->total.known) {
		ck_assert_msg(whole.final, "%s: expected a final total of %llu, got none", f->file,
			      (unsigned long long)f->total.value);
		check_part(f->file, "total", whole.has_total, whole.total_tokens, &f->total);
		check_part(f->file, "input", whole.has_input, whole.input_tokens, &f->input);
		check_part(f->file, "output", whole.has_output, whole.output_tokens, &f->output);
	} else {
		ck_assert_msg(!whole.final, "%s: expected RESERVED, got a final total of %llu",
			      f->file, (unsigned long long)whole.total_tokens);
		if (f->partial.known)
			check_part(f->file, "partial total", whole.has_total, whole.total_tokens,
				   &f->partial);
		else
			ck_assert_msg(!whole.has_total, "%s: expected no partial total, got %llu",
				      f->file, (unsigned long long)whole.total_tokens);
	}

	snprintf(how, sizeof(how), "%s byte by byte", f->file);
	ck_assert_msg(stream_parse_in_pieces(format, text, len, 0, 1, &other), "%s: a feed failed",
		      how);
	stream_assert_usage_equal(&other, &whole, how);
	for (split = 0; split <= len; split++) {
		snprintf(how, sizeof(how), "%s split at %zu", f->file, split);
		ck_assert_msg(stream_parse_split(format, text, len, 0, split, &other),
			      "%s: a feed failed", how);
		stream_assert_usage_equal(&other, &whole, how);
	}
	free(text);
}
END_TEST

START_TEST(every_fixture_is_listed)
{
	DIR *dir = opendir(FIXTURES_DIR);
	struct dirent *entry;
	int transcripts = 0;

	ck_assert_msg(dir != NULL, "failed to open %s: %s", FIXTURES_DIR, strerror(errno));
	while ((entry = readdir(dir)) != NULL) {
		bool listed = false;
		int i;

		if (!stream_is_transcript(entry->d_name))
			continue;
		transcripts++;
		for (i = 0; i < fixture_count; i++)
			listed = listed || strcmp(fixtures[i].file, entry->d_name) == 0;
		ck_assert_msg(listed, "%s has no line in expected.txt", entry->d_name);
	}
	closedir(dir);
	ck_assert_int_eq(transcripts, fixture_count);
}
END_TEST

static Suite *fixtures_suite(void)
{
	Suite *s = suite_create("stream fixtures");
	TCase *tc = tcase_create("fixtures");

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	tcase_add_test(tc, every_fixture_is_listed);
	tcase_add_loop_test(tc, fixture_matches_expected_usage, 0, fixture_count);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner;
	int failed;

	if (load_expected() < 0)
		return EXIT_FAILURE;
	runner = srunner_create(fixtures_suite());
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
