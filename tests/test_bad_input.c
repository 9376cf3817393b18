/* SPDX-License-Identifier: MIT */
/*
 * Tests that arl.h rejects invalid input with its ARL_E* code and never
 * crashes: NULL arguments, token counts, names, full tables, stale handles,
 * and segments that are corrupt, truncated, of another version or open to
 * other users.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define TEST_TIMEOUT_SECONDS 60

#define RPM 600ull
#define TPM 60000ull

/* Attaches with the given flags and returns the code. The error message,
 * if any, goes to error. */
static int attach_with(const char *name, uint32_t flags, struct arl **out, char *error,
		       size_t error_size)
{
	struct arl_attach_options o;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = flags;
	o.error = error;
	o.error_size = error_size;
	return arl_attach(out, &o);
}

static bool shm_exists(const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return stat(path, &st) == 0;
}

/* A valid one-limit bucket configuration to break one field of. */
static struct arl_bucket_config valid_config(const char *name)
{
	struct arl_bucket_config c;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = TPM;
	c.limits[0].window_ns = MINUTE_NS;
	return c;
}

/* Asserts that both the check and the creation reject a configuration. */
static void assert_config_rejected(struct arl *arl, const struct arl_bucket_config *c,
				   int expected, const char *what)
{
	struct arl_bucket b;
	int rc;

	rc = arl_bucket_config_check(c);
	ck_assert_msg(rc == expected, "config_check with %s returned %s, expected %s", what,
		      arl_strerror(rc), arl_strerror(expected));
	rc = arl_bucket_create(arl, c, &b);
	ck_assert_msg(rc == expected, "bucket_create with %s returned %s, expected %s", what,
		      arl_strerror(rc), arl_strerror(expected));
}

/* ------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------ */

START_TEST(null_arguments_are_invalid)
{
	struct arl_bucket_config c = valid_config("api");
	struct arl_bucket_config unnamed = valid_config("api");
	struct arl_request req = {10, 0, 0};
	struct arl_usage usage = test_usage(10);
	struct arl_attach_options o;
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b, found;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "null");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &res), 0);
	memset(&o, 0, sizeof(o));
	o.name = name;
	unnamed.name = NULL;

	ck_assert_int_eq(arl_attach(NULL, &o), ARL_EINVAL);

	ck_assert_int_eq(arl_bucket_config_check(NULL), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_config_check(&unnamed), ARL_EINVAL);

	ck_assert_int_eq(arl_bucket_find(NULL, "api", &found), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_find(arl, NULL, &found), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_find(arl, "api", NULL), ARL_EINVAL);

	ck_assert_int_eq(arl_bucket_create(NULL, &c, &found), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_create(arl, NULL, &found), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_create(arl, &unnamed, &found), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_create(arl, &c, NULL), ARL_EINVAL);

	ck_assert_int_eq(arl_reserve(NULL, b, &req, &res), ARL_EINVAL);
	ck_assert_int_eq(arl_reserve(arl, b, NULL, &res), ARL_EINVAL);
	ck_assert_int_eq(arl_reserve(arl, b, &req, NULL), ARL_EINVAL);

	ck_assert_int_eq(arl_reserve_wait(NULL, b, &req, 0, &res), ARL_EINVAL);
	ck_assert_int_eq(arl_reserve_wait(arl, b, NULL, 0, &res), ARL_EINVAL);
	ck_assert_int_eq(arl_reserve_wait(arl, b, &req, 0, NULL), ARL_EINVAL);

	ck_assert_int_eq(arl_release(NULL, &res, &usage), ARL_EINVAL);
	ck_assert_int_eq(arl_release(arl, NULL, &usage), ARL_EINVAL);
	ck_assert_int_eq(arl_cancel(NULL, &res), ARL_EINVAL);
	ck_assert_int_eq(arl_cancel(arl, NULL), ARL_EINVAL);
	ck_assert_int_eq(arl_touch(NULL, &res, 1), ARL_EINVAL);
	ck_assert_int_eq(arl_touch(arl, NULL, 1), ARL_EINVAL);

	ck_assert_int_eq(arl_bucket_stats(NULL, b, &s), ARL_EINVAL);
	ck_assert_int_eq(arl_bucket_stats(arl, b, NULL), ARL_EINVAL);
	ck_assert_int_eq(arl_test_clock_set(NULL, NS_PER_S), ARL_EINVAL);
	arl_detach(NULL);

	/* The reservation outlived every rejected call. */
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(wait_sweep_rejects_null_handle)
{
	ck_assert_int_eq(arl_wait_sweep(NULL, 0, 0), ARL_EINVAL);
}
END_TEST

START_TEST(zero_tokens_are_valid)
{
	struct arl_request zero = {0, 0, 0};
	struct arl_usage none = test_usage(0);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "zero");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(arl_reserve(arl, b, &zero, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &none), 0);
	ck_assert_int_eq(arl_reserve_wait(arl, b, &zero, 0, &res), 0);
	ck_assert_int_eq(arl_cancel(arl, &res), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(tokens_above_max_overflow)
{
	struct arl_request input = {ARL_MAX_TOKENS + 1, 0, 0};
	struct arl_request output = {0, ARL_MAX_TOKENS + 1, 0};
	struct arl_request at_max = {ARL_MAX_TOKENS, 0, 0};
	struct arl_usage usage;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res, denied;
	int rc;

	test_segment_name(name, sizeof(name), "overflow");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(arl_reserve(arl, b, &input, &denied), ARL_EOVERFLOW);
	ck_assert_int_eq(arl_reserve(arl, b, &output, &denied), ARL_EOVERFLOW);
	ck_assert_int_eq(arl_reserve_wait(arl, b, &input, 0, &denied), ARL_EOVERFLOW);
	/* The maximum itself is a valid count, but this bucket's burst is smaller. */
	ck_assert_int_eq(arl_reserve(arl, b, &at_max, &denied), ARL_ENEVERFITS);

	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	usage = test_usage(ARL_MAX_TOKENS + 1);
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EOVERFLOW);

	memset(&usage, 0, sizeof(usage));
	usage.flags = ARL_USAGE_SPLIT;
	usage.input_tokens = ARL_MAX_TOKENS + 1;
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EOVERFLOW);
	usage.input_tokens = 0;
	usage.output_tokens = ARL_MAX_TOKENS + 1;
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EOVERFLOW);

	memset(&usage, 0, sizeof(usage));
	usage.flags = ARL_USAGE_PARTIAL;
	usage.partial_tokens = ARL_MAX_TOKENS + 1;
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EOVERFLOW);

	/* A rejected release leaves the reservation live. */
	usage = test_usage(1000);
	rc = arl_release(arl, &res, &usage);
	ck_assert_msg(rc == 0, "release after rejected usages returned %s", arl_strerror(rc));

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(unknown_usage_flags_are_invalid)
{
	struct arl_usage usage = test_usage(10);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "usageflags");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &res), 0);

	usage.flags = ARL_USAGE_TOTAL | 0x8u;
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EINVAL);
	usage.flags = 0x80000000u;
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_EINVAL);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 1);

	usage.flags = ARL_USAGE_TOTAL;
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Buckets
 * ------------------------------------------------------------------------ */

START_TEST(bucket_name_length_is_checked)
{
	char longest[ARL_NAME_MAX + 1], too_long[ARL_NAME_MAX + 2];
	struct arl_bucket_config c = valid_config("");
	char name[64];
	struct arl *arl;
	struct arl_bucket b, found;

	test_segment_name(name, sizeof(name), "bucketname");
	arl = test_create(name, 0);
	memset(longest, 'a', ARL_NAME_MAX);
	longest[ARL_NAME_MAX] = '\0';
	memset(too_long, 'b', ARL_NAME_MAX + 1);
	too_long[ARL_NAME_MAX + 1] = '\0';

	assert_config_rejected(arl, &c, ARL_EINVAL, "an empty name");
	ck_assert_int_eq(arl_bucket_find(arl, "", &found), ARL_EINVAL);

	c.name = too_long;
	assert_config_rejected(arl, &c, ARL_ENAMETOOLONG, "a 64-byte name");
	ck_assert_int_eq(arl_bucket_find(arl, too_long, &found), ARL_ENAMETOOLONG);

	c.name = longest;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);
	ck_assert_int_eq(arl_bucket_find(arl, longest, &found), 0);
	ck_assert_uint_eq(found.index, b.index);
	ck_assert_uint_eq(found.gen, b.gen);
	ck_assert_str_eq(test_stats(arl, b).name, longest);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(missing_bucket_is_not_found)
{
	char name[64];
	struct arl *arl;
	struct arl_bucket found;

	test_segment_name(name, sizeof(name), "nobucket");
	arl = test_create(name, 0);
	test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(arl_bucket_find(arl, "other", &found), ARL_ENOENT);
	/* A prefix of an existing name is another name. */
	ck_assert_int_eq(arl_bucket_find(arl, "ap", &found), ARL_ENOENT);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(existing_bucket_is_not_recreated)
{
	struct arl_bucket_config c = valid_config("api");
	char name[64];
	struct arl *arl;
	struct arl_bucket b, again;

	test_segment_name(name, sizeof(name), "bucketexists");
	arl = test_create(name, 0);
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);

	c.limits[0].amount = 2 * TPM;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &again), ARL_EEXIST);
	ck_assert_msg(again.index == b.index && again.gen == b.gen,
		      "EEXIST returned handle %u/%u, expected the existing bucket %u/%u",
		      again.index, again.gen, b.index, b.gen);
	ck_assert_msg(test_stats(arl, b).limits[0].amount == TPM,
		      "the existing bucket's configuration changed");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(window_outside_range_is_invalid)
{
	struct arl_bucket_config c = valid_config("api");
	char name[64];
	struct arl *arl;

	test_segment_name(name, sizeof(name), "window");
	arl = test_create(name, 0);

	c.limits[0].window_ns = ARL_MIN_WINDOW_NS - 1;
	assert_config_rejected(arl, &c, ARL_EINVAL, "a window of 1 s - 1 ns");
	c.limits[0].window_ns = ARL_MAX_WINDOW_NS + 1;
	assert_config_rejected(arl, &c, ARL_EINVAL, "a window of 1 day + 1 ns");
	c.limits[0].window_ns = 0;
	assert_config_rejected(arl, &c, ARL_EINVAL, "a window of 0");

	c.limits[0].window_ns = ARL_MIN_WINDOW_NS;
	ck_assert_int_eq(arl_bucket_config_check(&c), 0);
	c.limits[0].window_ns = ARL_MAX_WINDOW_NS;
	ck_assert_int_eq(arl_bucket_config_check(&c), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(zero_amount_is_invalid)
{
	struct arl_bucket_config c = valid_config("api");
	char name[64];
	struct arl *arl;

	test_segment_name(name, sizeof(name), "amount");
	arl = test_create(name, 0);

	c.limits[0].amount = 0;
	assert_config_rejected(arl, &c, ARL_EINVAL, "an amount of 0");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(five_limits_are_invalid)
{
	struct arl_bucket_config c = valid_config("api");
	char name[64];
	struct arl *arl;

	test_segment_name(name, sizeof(name), "nlimits");
	arl = test_create(name, 0);

	/* limits[] has room for ARL_MAX_LIMITS (4), so nlimits 5 must be
	 * rejected before any limit is read. */
	c.nlimits = ARL_MAX_LIMITS + 1;
	assert_config_rejected(arl, &c, ARL_EINVAL, "5 limits");

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Reservations
 * ------------------------------------------------------------------------ */

START_TEST(full_reservation_table_is_rejected)
{
	struct arl_usage usage = test_usage(1);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res[5];
	int i;

	test_segment_name(name, sizeof(name), "tablefull");
	arl = test_create(name, 4);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	for (i = 0; i < 4; i++)
		ck_assert_int_eq(test_reserve(arl, b, 1, &res[i]), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res[4]), ARL_ETABLEFULL);
	ck_assert_uint_eq(test_stats(arl, b).errors, 1);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 4);

	ck_assert_int_eq(arl_release(arl, &res[2], &usage), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res[4]), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(double_release_is_stale)
{
	struct arl_usage usage = test_usage(1);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "double");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);

	ck_assert_int_eq(test_reserve(arl, b, 1, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);
	ck_assert_int_eq(arl_release(arl, &res, &usage), ARL_ESTALE);
	ck_assert_int_eq(arl_touch(arl, &res, 1), ARL_ESTALE);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(stale_reservation_handle_is_rejected)
{
	struct arl_usage usage = test_usage(1);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res, wrong_gen, out_of_range, far_out;

	test_segment_name(name, sizeof(name), "stalehandle");
	arl = test_create(name, 8);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), 0);

	wrong_gen = res;
	wrong_gen.gen = res.gen + 1;
	out_of_range = res;
	out_of_range.slot = 8;
	far_out = res;
	far_out.slot = UINT32_MAX;

	ck_assert_int_eq(arl_release(arl, &wrong_gen, &usage), ARL_ESTALE);
	ck_assert_int_eq(arl_cancel(arl, &wrong_gen), ARL_ESTALE);
	ck_assert_int_eq(arl_touch(arl, &wrong_gen, 1), ARL_ESTALE);
	ck_assert_int_eq(arl_release(arl, &out_of_range, &usage), ARL_ESTALE);
	ck_assert_int_eq(arl_cancel(arl, &out_of_range), ARL_ESTALE);
	ck_assert_int_eq(arl_touch(arl, &out_of_range, 1), ARL_ESTALE);
	ck_assert_int_eq(arl_release(arl, &far_out, &usage), ARL_ESTALE);
	ck_assert_int_eq(arl_cancel(arl, &far_out), ARL_ESTALE);
	ck_assert_int_eq(arl_touch(arl, &far_out, 1), ARL_ESTALE);

	/* None of the stale handles touched the live reservation. */
	ck_assert_uint_eq(test_stats(arl, b).inflight, 1);
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(stale_bucket_handle_is_rejected)
{
	struct arl_request req = {1, 0, 0};
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl;
	struct arl_bucket b, wrong_gen, out_of_range;
	struct arl_reservation res;

	test_segment_name(name, sizeof(name), "stalebucket");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	wrong_gen = b;
	wrong_gen.gen = b.gen + 1;
	out_of_range = b;
	out_of_range.index = UINT32_MAX;

	ck_assert_int_eq(arl_reserve(arl, wrong_gen, &req, &res), ARL_ESTALE);
	ck_assert_int_eq(arl_reserve(arl, out_of_range, &req, &res), ARL_ESTALE);
	ck_assert_int_eq(arl_reserve_wait(arl, wrong_gen, &req, 0, &res), ARL_ESTALE);
	ck_assert_int_eq(arl_bucket_stats(arl, wrong_gen, &s), ARL_ESTALE);
	ck_assert_int_eq(arl_bucket_stats(arl, out_of_range, &s), ARL_ESTALE);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Segments
 * ------------------------------------------------------------------------ */

START_TEST(wrong_magic_is_bad_segment)
{
	char name[64], error[512] = "";
	struct arl *arl, *second = NULL;
	int rc;

	test_segment_name(name, sizeof(name), "magic");
	arl = test_create(name, 0);
	arl->header->magic = 0x0123456789abcdefull;

	rc = attach_with(name, 0, &second, error, sizeof(error));
	ck_assert_msg(rc == ARL_EBADSEG, "attach returned %s, expected ARL_EBADSEG",
		      arl_strerror(rc));
	ck_assert_ptr_null(second);
	ck_assert_msg(strstr(error, name) != NULL, "message does not name the segment: %s", error);
	ck_assert_msg(strstr(error, "magic") != NULL, "message does not name the magic: %s",
		      error);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(truncated_segment_is_bad_segment)
{
	char name[64], error[512] = "";
	struct arl *arl, *second = NULL;
	int fd, rc;

	test_segment_name(name, sizeof(name), "truncated");
	arl = test_create(name, 0);
	fd = shm_open(name, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	/* Still longer than the header, so the attach reads it and compares
	 * its recorded size with the file. */
	ck_assert_int_eq(ftruncate(fd, (off_t)(arl->size / 2)), 0);
	close(fd);

	rc = attach_with(name, 0, &second, error, sizeof(error));
	ck_assert_msg(rc == ARL_EBADSEG, "attach returned %s, expected ARL_EBADSEG (%s)",
		      arl_strerror(rc), error);
	ck_assert_msg(strstr(error, name) != NULL, "message does not name the segment: %s", error);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(other_layout_version_is_rejected)
{
	char name[64], error[512] = "";
	struct arl *arl, *second = NULL;
	int rc;

	test_segment_name(name, sizeof(name), "version");
	arl = test_create(name, 0);
	arl->header->layout_version = ARL_LAYOUT_VERSION + 1;

	rc = attach_with(name, 0, &second, error, sizeof(error));
	ck_assert_msg(rc == ARL_EVERSION, "attach returned %s, expected ARL_EVERSION (%s)",
		      arl_strerror(rc), error);
	ck_assert_msg(strstr(error, "version") != NULL, "message does not name the version: %s",
		      error);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(world_accessible_segment_is_refused)
{
	char name[64], error[512] = "";
	struct arl *arl, *second = NULL;
	int fd, rc;

	test_segment_name(name, sizeof(name), "mode");
	arl = test_create(name, 0);
	fd = shm_open(name, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, 0666), 0);
	close(fd);

	rc = attach_with(name, 0, &second, error, sizeof(error));
	ck_assert_msg(rc == ARL_EACCES, "attach returned %s, expected ARL_EACCES (%s)",
		      arl_strerror(rc), error);
	ck_assert_msg(strstr(error, "mode") != NULL, "message does not name the mode: %s", error);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(world_accessible_mode_is_not_created)
{
	struct arl_attach_options o;
	char name[64];
	struct arl *arl = NULL;

	test_segment_name(name, sizeof(name), "createmode");
	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	o.mode = 0666;

	ck_assert_int_eq(arl_attach(&arl, &o), ARL_EINVAL);
	ck_assert_msg(!shm_exists(name), "/dev/shm%s was created", name);

	shm_unlink(name);
}
END_TEST

START_TEST(missing_segment_is_not_created)
{
	char name[64], error[512] = "";
	struct arl *arl = NULL;

	test_segment_name(name, sizeof(name), "missing");
	shm_unlink(name);

	ck_assert_int_eq(attach_with(name, 0, &arl, error, sizeof(error)), ARL_ENOENT);
	ck_assert_ptr_null(arl);
	ck_assert_msg(strstr(error, name) != NULL, "message does not name the segment: %s", error);
	ck_assert_int_eq(attach_with(name, ARL_ATTACH_READ_ONLY, &arl, NULL, 0), ARL_ENOENT);
	ck_assert_int_eq(attach_with(name, ARL_ATTACH_READ_ONLY | ARL_ATTACH_CREATE, &arl, NULL,
				     0),
			 ARL_ENOENT);
	ck_assert_msg(!shm_exists(name), "/dev/shm%s was created", name);

	shm_unlink(name);
}
END_TEST

START_TEST(invalid_segment_name_is_rejected)
{
	char name[64], nested[80], too_long[ARL_SHM_NAME_MAX + 2];
	const char *without_slash;
	struct arl *arl = NULL;

	test_segment_name(name, sizeof(name), "badname");
	without_slash = name + 1;
	snprintf(nested, sizeof(nested), "%s/nested", name);
	too_long[0] = '/';
	memset(too_long + 1, 'n', ARL_SHM_NAME_MAX);
	too_long[ARL_SHM_NAME_MAX + 1] = '\0';

	ck_assert_int_eq(attach_with(without_slash, ARL_ATTACH_CREATE, &arl, NULL, 0), ARL_EINVAL);
	ck_assert_int_eq(attach_with(nested, ARL_ATTACH_CREATE, &arl, NULL, 0), ARL_EINVAL);
	ck_assert_int_eq(attach_with(too_long, ARL_ATTACH_CREATE, &arl, NULL, 0), ARL_EINVAL);
	ck_assert_ptr_null(arl);
	ck_assert_msg(!shm_exists(name), "/dev/shm%s was created", name);

	shm_unlink(name);
}
END_TEST

START_TEST(read_only_handle_cannot_reserve)
{
	struct arl_request req = {10, 0, 0};
	struct arl_usage usage = test_usage(10);
	struct arl_bucket_config c = valid_config("other");
	struct arl_bucket_stats s;
	char name[64];
	struct arl *arl, *reader = NULL;
	struct arl_bucket b, found, created;
	struct arl_reservation res, denied;
	int rc;

	test_segment_name(name, sizeof(name), "readonly");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &res), 0);

	rc = attach_with(name, ARL_ATTACH_READ_ONLY, &reader, NULL, 0);
	ck_assert_msg(rc == 0, "read-only attach returned %s", arl_strerror(rc));
	ck_assert_int_eq(arl_bucket_find(reader, "api", &found), 0);
	ck_assert_int_eq(arl_bucket_stats(reader, found, &s), 0);
	ck_assert_uint_eq(s.limits[1].available, TPM - 10);
	ck_assert_uint_eq(s.inflight, 1);

	ck_assert_int_eq(arl_reserve(reader, found, &req, &denied), ARL_EROFS);
	ck_assert_int_eq(arl_reserve_wait(reader, found, &req, 0, &denied), ARL_EROFS);
	ck_assert_int_eq(arl_release(reader, &res, &usage), ARL_EROFS);
	ck_assert_int_eq(arl_cancel(reader, &res), ARL_EROFS);
	ck_assert_int_eq(arl_touch(reader, &res, 1), ARL_EROFS);
	ck_assert_int_eq(arl_bucket_create(reader, &c, &created), ARL_EROFS);
	ck_assert_int_eq(arl_test_clock_set(reader, 2 * NS_PER_S), ARL_EINVAL);

	/* The writer's reservation is untouched by the reader's attempts. */
	ck_assert_int_eq(arl_release(arl, &res, &usage), 0);

	arl_detach(reader);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(read_only_oversized_reserve_returns_error)
{
	struct arl_request too_big = {TPM + 1, 0, 0};
	char name[64];
	struct arl *arl, *reader = NULL;
	struct arl_bucket b;
	struct arl_reservation denied;
	int rc;

	test_segment_name(name, sizeof(name), "readonlybig");
	arl = test_create(name, 0);
	b = test_bucket(arl, "api", RPM, TPM, 0, 0);
	rc = attach_with(name, ARL_ATTACH_READ_ONLY, &reader, NULL, 0);
	ck_assert_msg(rc == 0, "read-only attach returned %s", arl_strerror(rc));

	/* The request exceeds the burst. The call must still reject the
	 * read-only handle before it writes anything, such as its rejection
	 * counter, because a write to the read-only mapping faults. */
	rc = arl_reserve(reader, b, &too_big, &denied);
	ck_assert_msg(rc == ARL_EROFS, "reserve on a read-only handle returned %s",
		      arl_strerror(rc));

	arl_detach(reader);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* ------------------------------------------------------------------------
 * Table capacities and table offsets in the header
 * ------------------------------------------------------------------------ */

START_TEST(full_bucket_table_is_rejected)
{
	struct arl_bucket_config first = valid_config("first");
	struct arl_bucket_config second = valid_config("second");
	struct arl_bucket_config third = valid_config("third");
	struct arl_attach_options o;
	char name[64], error[512] = "";
	struct arl *arl = NULL;
	struct arl_bucket b1, b2, b3, found;
	int rc;

	test_segment_name(name, sizeof(name), "buckettable");
	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	o.bucket_capacity = 2;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "create %s: %s: %s", name, arl_strerror(rc), error);
	ck_assert_uint_eq(arl->header->bucket_capacity, 2);

	ck_assert_int_eq(arl_bucket_create(arl, &first, &b1), 0);
	ck_assert_int_eq(arl_bucket_create(arl, &second, &b2), 0);
	rc = arl_bucket_create(arl, &third, &b3);
	ck_assert_msg(rc == ARL_ETABLEFULL, "third bucket in a table of 2 returned %s",
		      arl_strerror(rc));
	ck_assert_int_eq(arl_bucket_find(arl, "third", &found), ARL_ENOENT);

	/* An existing name is still found, not reported as a full table. */
	ck_assert_int_eq(arl_bucket_create(arl, &first, &found), ARL_EEXIST);
	ck_assert_int_eq(arl_bucket_find(arl, "first", &found), 0);
	ck_assert_uint_eq(found.index, b1.index);
	ck_assert_int_eq(arl_bucket_find(arl, "second", &found), 0);
	ck_assert_uint_eq(found.index, b2.index);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* A header field a corrupt_header_cases entry rewrites. */
enum header_field { BUCKETS_OFFSET, RESERVATIONS_OFFSET, PROCESSES_OFFSET, BUCKET_CAPACITY };

/* How a case changes the field, from the values the creator wrote. */
enum header_change {
	SET_SEGMENT_SIZE,    /* offset = the segment's size: the table ends past it */
	SET_FAR_OUT,	     /* offset = a cache-aligned value near 2^64 */
	SET_INSIDE_HEADER,   /* offset = 0: the table overlaps the header */
	ADD_8,		     /* offset + 8: misaligned */
	ADD_ONE,	     /* capacity + 1: the table runs into the next one */
	SET_RESERVATIONS,    /* offset = reservations_offset: onto the reservation table */
	SUBTRACT_CACHE_LINE, /* offset - 64: back into the previous table */
};

static const struct {
	const char *what;
	enum header_field field;
	enum header_change change;
	const char *table;   /* the table the message must name */
	const char *overlap; /* the other table of an overlap, or NULL */
} corrupt_header_cases[] = {
	{"bucket table at the segment's end", BUCKETS_OFFSET, SET_SEGMENT_SIZE, "bucket table",
	 NULL},
	{"bucket table inside the header", BUCKETS_OFFSET, SET_INSIDE_HEADER, "bucket table",
	 NULL},
	{"misaligned bucket table", BUCKETS_OFFSET, ADD_8, "bucket table", NULL},
	{"reservation table at the segment's end", RESERVATIONS_OFFSET, SET_SEGMENT_SIZE,
	 "reservation table", NULL},
	{"misaligned reservation table", RESERVATIONS_OFFSET, ADD_8, "reservation table", NULL},
	{"process table near 2^64", PROCESSES_OFFSET, SET_FAR_OUT, "process table", NULL},
	{"misaligned process table", PROCESSES_OFFSET, ADD_8, "process table", NULL},
	{"bucket table one entry longer", BUCKET_CAPACITY, ADD_ONE, "bucket table",
	 "reservation table"},
	{"reservation table moved into the bucket table", RESERVATIONS_OFFSET,
	 SUBTRACT_CACHE_LINE, "bucket table", "reservation table"},
	{"process table on the reservation table", PROCESSES_OFFSET, SET_RESERVATIONS,
	 "reservation table", "process table"},
};

/* Applies one case's change to a mapped header. */
static void corrupt_header(struct arl_shm_header *h, enum header_field field,
			   enum header_change change)
{
	uint64_t *offset = field == BUCKETS_OFFSET	   ? &h->buckets_offset
			   : field == RESERVATIONS_OFFSET ? &h->reservations_offset
							  : &h->processes_offset;

	switch (change) {
	case SET_SEGMENT_SIZE:
		*offset = h->segment_size;
		break;
	case SET_FAR_OUT:
		*offset = UINT64_MAX - (ARL_CACHE_LINE - 1);
		break;
	case SET_INSIDE_HEADER:
		*offset = 0;
		break;
	case ADD_8:
		*offset += 8;
		break;
	case ADD_ONE:
		ck_assert_int_eq(field, BUCKET_CAPACITY);
		h->bucket_capacity += 1;
		break;
	case SET_RESERVATIONS:
		*offset = h->reservations_offset;
		break;
	case SUBTRACT_CACHE_LINE:
		*offset -= ARL_CACHE_LINE;
		break;
	}
}

/* Creates a segment with small tables, detaches, then rewrites one header
 * field through a writable mapping of its /dev/shm file, as a stray writer
 * or a broken tool would. */
START_TEST(corrupt_table_header_is_bad_segment)
{
	const int c = _i;
	struct arl_attach_options o;
	struct arl_shm_header *h;
	char name[64], path[128], error[512] = "";
	struct arl *arl = NULL;
	struct stat st;
	int fd, rc;

	test_segment_name(name, sizeof(name), "tableoffset");
	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	/* The reservation table is the largest, so that a bucket table one
	 * entry longer, or a process table moved onto it, still ends inside
	 * the segment and only overlaps. */
	o.bucket_capacity = 4;
	o.reservation_capacity = 64;
	o.process_capacity = 4;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "create %s: %s: %s", name, arl_strerror(rc), error);
	arl_detach(arl);
	arl = NULL;

	snprintf(path, sizeof(path), "/dev/shm%s", name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s failed", path);
	ck_assert_int_eq(fstat(fd, &st), 0);
	h = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert(h != MAP_FAILED);
	corrupt_header(h, corrupt_header_cases[c].field, corrupt_header_cases[c].change);
	munmap(h, (size_t)st.st_size);
	close(fd);

	error[0] = '\0';
	rc = attach_with(name, 0, &arl, error, sizeof(error));
	/* Unlinked before the checks, so that a failed one leaves no segment. */
	shm_unlink(name);
	ck_assert_msg(rc == ARL_EBADSEG, "%s: attach returned %s, expected ARL_EBADSEG (%s)",
		      corrupt_header_cases[c].what, arl_strerror(rc), error);
	ck_assert_ptr_null(arl);
	ck_assert_msg(strstr(error, name) != NULL, "%s: message does not name the segment: %s",
		      corrupt_header_cases[c].what, error);
	ck_assert_msg(strstr(error, corrupt_header_cases[c].table) != NULL,
		      "%s: message does not name the %s: %s", corrupt_header_cases[c].what,
		      corrupt_header_cases[c].table, error);
	if (corrupt_header_cases[c].overlap)
		ck_assert_msg(strstr(error, corrupt_header_cases[c].overlap) != NULL,
			      "%s: message does not name the %s it overlaps: %s",
			      corrupt_header_cases[c].what, corrupt_header_cases[c].overlap, error);
}
END_TEST

/* ------------------------------------------------------------------------
 * Error strings
 * ------------------------------------------------------------------------ */

START_TEST(error_strings_are_distinct)
{
	static const int codes[] = {
		ARL_OK,		 ARL_EINVAL,	ARL_ENOENT,	ARL_ENOMEM,	  ARL_EAGAIN,
		ARL_ETIMEDOUT,	 ARL_ESTALE,	ARL_EEXIST,	ARL_EACCES,	  ARL_ENAMETOOLONG,
		ARL_EOVERFLOW,	 ARL_ENOSPC,	ARL_EROFS,	ARL_ENEVERFITS,	  ARL_ETABLEFULL,
		ARL_EBADSEG,	 ARL_EVERSION,	ARL_ENOTREADY,	ARL_ESYSTEM,
	};
	const size_t count = sizeof(codes) / sizeof(codes[0]);
	size_t i, j;

	for (i = 0; i < count; i++) {
		const char *text = arl_strerror(codes[i]);

		ck_assert_msg(text != NULL && text[0] != '\0', "code %d has no description",
			      codes[i]);
		ck_assert_msg(strcmp(text, "unknown arl error") != 0,
			      "code %d is described as unknown", codes[i]);
		for (j = 0; j < i; j++)
			ck_assert_msg(strcmp(text, arl_strerror(codes[j])) != 0,
				      "codes %d and %d share the description \"%s\"", codes[j],
				      codes[i], text);
	}

	ck_assert_str_eq(arl_strerror(-9999), "unknown arl error");
	ck_assert_str_eq(arl_strerror(1), "unknown arl error");
	ck_assert_str_eq(arl_strerror(INT_MIN), "unknown arl error");
}
END_TEST

static TCase *new_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	return tc;
}

static Suite *bad_input_suite(void)
{
	Suite *s = suite_create("bad_input");
	TCase *tc;

	tc = new_tcase("arguments");
	tcase_add_test(tc, null_arguments_are_invalid);
	tcase_add_test(tc, wait_sweep_rejects_null_handle);
	tcase_add_test(tc, zero_tokens_are_valid);
	tcase_add_test(tc, tokens_above_max_overflow);
	tcase_add_test(tc, unknown_usage_flags_are_invalid);
	suite_add_tcase(s, tc);

	tc = new_tcase("buckets");
	tcase_add_test(tc, bucket_name_length_is_checked);
	tcase_add_test(tc, missing_bucket_is_not_found);
	tcase_add_test(tc, existing_bucket_is_not_recreated);
	tcase_add_test(tc, window_outside_range_is_invalid);
	tcase_add_test(tc, zero_amount_is_invalid);
	tcase_add_test(tc, five_limits_are_invalid);
	suite_add_tcase(s, tc);

	tc = new_tcase("reservations");
	tcase_add_test(tc, full_reservation_table_is_rejected);
	tcase_add_test(tc, double_release_is_stale);
	tcase_add_test(tc, stale_reservation_handle_is_rejected);
	tcase_add_test(tc, stale_bucket_handle_is_rejected);
	suite_add_tcase(s, tc);

	tc = new_tcase("segments");
	tcase_add_test(tc, wrong_magic_is_bad_segment);
	tcase_add_test(tc, truncated_segment_is_bad_segment);
	tcase_add_test(tc, other_layout_version_is_rejected);
	tcase_add_test(tc, world_accessible_segment_is_refused);
	tcase_add_test(tc, world_accessible_mode_is_not_created);
	tcase_add_test(tc, missing_segment_is_not_created);
	tcase_add_test(tc, invalid_segment_name_is_rejected);
	tcase_add_test(tc, read_only_handle_cannot_reserve);
	tcase_add_test(tc, read_only_oversized_reserve_returns_error);
	suite_add_tcase(s, tc);

	tc = new_tcase("tables");
	tcase_add_test(tc, full_bucket_table_is_rejected);
	tcase_add_loop_test(tc, corrupt_table_header_is_bad_segment, 0,
			    (int)(sizeof(corrupt_header_cases) / sizeof(corrupt_header_cases[0])));
	suite_add_tcase(s, tc);

	tc = new_tcase("error strings");
	tcase_add_test(tc, error_strings_are_distinct);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return test_run(bad_input_suite());
}
