/* SPDX-License-Identifier: MIT */
/*
 * Tests the stream usage parser (arl/stream.h) against recorded provider
 * transcripts kept outside the repository. The folder "streams" under the
 * cases directory contains the transcripts (*.sse, *.ndjson) and EXPECTED.md,
 * whose table rows read "| `file` | total |", where total is a token count
 * or RESERVED (final usage unknown).
 *
 * The cases directory is $ARL_CASES_DIR, or by default the "shared/cases"
 * folder next to the source tree. Without it the program exits with 77, which
 * ctest reports as skipped.
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
#define EXIT_SKIPPED 77
#define MAX_CASES 128
#define MAX_NAME 256

#ifndef ARL_SOURCE_DIR
#error "ARL_SOURCE_DIR must name the source tree (set by tests/CMakeLists.txt)"
#endif
#define DEFAULT_CASES_DIR ARL_SOURCE_DIR "/../shared/cases"

struct stream_case {
	char file[MAX_NAME];
	/* Expected final total, or reserved when the final usage must be unknown. */
	bool reserved;
	uint64_t total;
};

static char streams_dir[4096];
static struct stream_case cases[MAX_CASES];
static int case_count;

/*
 * Parses one EXPECTED.md table row into @c. Returns 1 for a row, 0 for any
 * other line, and -1 for a row whose total is neither a count nor RESERVED.
 */
static int parse_expected_row(const char *line, struct stream_case *c)
{
	const char *name;
	const char *name_end;
	const char *value;
	char *end;
	unsigned long long total;

	if (strncmp(line, "| `", 3) != 0)
		return 0;
	name = line + 3;
	name_end = strchr(name, '`');
	if (name_end == NULL || (size_t)(name_end - name) >= sizeof(c->file))
		return -1;
	value = strchr(name_end, '|');
	if (value == NULL)
		return -1;
	value++;
	while (*value == ' ')
		value++;

	memset(c, 0, sizeof(*c));
	memcpy(c->file, name, (size_t)(name_end - name));
	if (strncmp(value, "RESERVED", 8) == 0) {
		c->reserved = true;
		return 1;
	}
	if (*value < '0' || *value > '9')
		return -1;
	errno = 0;
	total = strtoull(value, &end, 10);
	if (errno != 0 || (*end != ' ' && *end != '|'))
		return -1;
	c->total = total;
	return 1;
}

/* Loads the expected totals. Returns 0, or -1 after printing what failed. */
static int load_expected(void)
{
	char path[4352];
	char *text;
	char *line;
	char *next;
	size_t len;

	snprintf(path, sizeof(path), "%s/EXPECTED.md", streams_dir);
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
		ret = parse_expected_row(line, &cases[case_count]);
		if (ret < 0) {
			fprintf(stderr, "%s: invalid table row: %s\n", path, line);
			free(text);
			return -1;
		}
		if (ret > 0 && ++case_count == MAX_CASES) {
			fprintf(stderr, "%s: more than %d rows, raise MAX_CASES\n", path,
				MAX_CASES);
			free(text);
			return -1;
		}
	}
	free(text);
	if (case_count == 0) {
		fprintf(stderr, "%s: no table rows of the form | `file` | total |\n", path);
		return -1;
	}
	return 0;
}

START_TEST(transcript_matches_expected_total)
{
	const struct stream_case *c = &cases[_i];
	enum arl_stream_format format = stream_format_of(c->file);
	struct arl_stream_usage whole;
	struct arl_stream_usage other;
	char path[4352];
	char how[MAX_NAME + 32];
	char *text;
	size_t len;
	size_t split;

	ck_assert_msg((size_t)snprintf(path, sizeof(path), "%s/%s", streams_dir, c->file) <
			      sizeof(path),
		      "path of %s too long", c->file);
	text = stream_read_file(path, &len);
	ck_assert_msg(text != NULL, "failed to read %s: %s", path, strerror(errno));

	ck_assert_msg(stream_parse_in_pieces(format, text, len, 0, 0, &whole),
		      "%s: a feed failed", c->file);
	if (c->reserved) {
		ck_assert_msg(!whole.final, "%s: expected RESERVED, got final total %llu", c->file,
			      (unsigned long long)whole.total_tokens);
	} else {
		ck_assert_msg(whole.final, "%s: expected %llu, got no final usage", c->file,
			      (unsigned long long)c->total);
		ck_assert_msg(whole.total_tokens == c->total, "%s: expected %llu, got %llu",
			      c->file, (unsigned long long)c->total,
			      (unsigned long long)whole.total_tokens);
	}

	snprintf(how, sizeof(how), "%s byte by byte", c->file);
	ck_assert_msg(stream_parse_in_pieces(format, text, len, 0, 1, &other), "%s: a feed failed",
		      how);
	stream_assert_usage_equal(&other, &whole, how);
	for (split = 0; split <= len; split++) {
		snprintf(how, sizeof(how), "%s split at %zu", c->file, split);
		ck_assert_msg(stream_parse_split(format, text, len, 0, split, &other),
			      "%s: a feed failed", how);
		stream_assert_usage_equal(&other, &whole, how);
	}
	free(text);
}
END_TEST

START_TEST(every_transcript_has_expected_total)
{
	DIR *dir = opendir(streams_dir);
	struct dirent *entry;
	int transcripts = 0;

	ck_assert_msg(dir != NULL, "failed to open %s: %s", streams_dir, strerror(errno));
	while ((entry = readdir(dir)) != NULL) {
		bool listed = false;
		int i;

		if (!stream_is_transcript(entry->d_name))
			continue;
		transcripts++;
		for (i = 0; i < case_count; i++)
			listed = listed || strcmp(cases[i].file, entry->d_name) == 0;
		ck_assert_msg(listed, "%s/%s has no row in EXPECTED.md", streams_dir,
			      entry->d_name);
	}
	closedir(dir);
	ck_assert_int_eq(transcripts, case_count);
}
END_TEST

static Suite *stream_cases_suite(void)
{
	Suite *s = suite_create("stream transcripts");
	TCase *tc = tcase_create("transcripts");

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	tcase_add_test(tc, every_transcript_has_expected_total);
	tcase_add_loop_test(tc, transcript_matches_expected_total, 0, case_count);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *cases_dir = getenv("ARL_CASES_DIR");
	DIR *dir;
	SRunner *runner;
	int failed;

	if (cases_dir == NULL || cases_dir[0] == '\0')
		cases_dir = DEFAULT_CASES_DIR;
	snprintf(streams_dir, sizeof(streams_dir), "%s/streams", cases_dir);

	dir = opendir(streams_dir);
	if (dir == NULL) {
		printf("skipped: no transcripts at %s (set ARL_CASES_DIR to the cases directory)\n",
		       streams_dir);
		return EXIT_SKIPPED;
	}
	closedir(dir);

	if (load_expected() < 0)
		return EXIT_FAILURE;

	runner = srunner_create(stream_cases_suite());
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
