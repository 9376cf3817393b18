/* SPDX-License-Identifier: MIT */
/*
 * Hostile and careless environments around the segment's name and mode,
 * with real users: another user's object squatting the name, segments open
 * to every user, and the umask at creation. test_permissions.c covers the
 * client API's owner and group checks. This file covers arld and arlctl on
 * the same names, squatters that are not arl segments, wide modes set by
 * another user, and every mode arld can be configured with.
 *
 * Runs as root and drops to nobody with setresuid for the other user. Exits
 * 77 (skipped) when not root or when the system has no nobody user.
 */
#include "test_env.h"

struct names {
	char segment[64];
	char config[128];
	char log[128];
};

static void make_names(struct names *n, const char *tag)
{
	test_segment_name(n->segment, sizeof(n->segment), tag);
	env_temp_path(n->config, sizeof(n->config), tag, "ini");
	env_temp_path(n->log, sizeof(n->log), tag, "log");
	shm_unlink(n->segment);
	unlink(n->log);
}

static void remove_names(const struct names *n)
{
	shm_unlink(n->segment);
	unlink(n->config);
	unlink(n->log);
}

static ino_t shm_inode(const char *name)
{
	char path[128];
	struct stat st;

	env_shm_path(path, sizeof(path), name);
	ck_assert_msg(stat(path, &st) == 0, "%s is gone", path);
	return st.st_ino;
}

/* In a child that became nobody: creates name as a plain shared-memory
 * object of size bytes and mode, the way a squatter would. */
static void squat_as_nobody(const char *name, off_t size, mode_t mode)
{
	pid_t pid = fork();
	int status;

	ck_assert(pid >= 0);
	if (pid == 0) {
		int fd;

		if (env_become_nobody() != 0)
			_exit(ENV_SETUP_FAILED);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || ftruncate(fd, size) != 0 || fchmod(fd, mode) != 0)
			_exit(1);
		_exit(0);
	}
	status = env_wait(pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "nobody could not create %s (status %#x)", name, status);
}

/* In a child that became nobody: creates a real arl segment with mode,
 * then widens its mode with fchmod. */
static void create_wide_as_nobody(const char *name, mode_t mode)
{
	pid_t pid = fork();
	int status;

	ck_assert(pid >= 0);
	if (pid == 0) {
		char error[512];
		struct arl *arl;
		int fd;

		if (env_become_nobody() != 0)
			_exit(ENV_SETUP_FAILED);
		if (env_attach(name, ARL_ATTACH_CREATE, &arl, error, sizeof(error)) != 0)
			_exit(1);
		fd = shm_open(name, O_RDWR, 0);
		if (fd < 0 || fchmod(fd, mode) != 0)
			_exit(2);
		_exit(0);
	}
	status = env_wait(pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "nobody could not create %s (status %#x)", name, status);
}

/* Runs arld on a name that must be refused: it exits 1, logs why, and
 * leaves the other user's object where it was. */
static void check_arld_refuses(const struct names *n, const char *expected)
{
	ino_t before = shm_inode(n->segment);
	char *text;
	int status;

	env_write_config(n->config, n->segment, NULL);
	status = env_wait(env_start_arld(n->config, n->log, false));
	text = env_read(n->log);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "arld on %s ended with status %#x, expected exit 1; log:\n%s", n->segment,
		      status, text);
	ck_assert_msg(strstr(text, expected) != NULL, "arld's log lacks \"%s\":\n%s", expected,
		      text);
	ck_assert_msg(shm_inode(n->segment) == before, "arld replaced the object at %s",
		      n->segment);
	free(text);
}

/* Runs arlctl status on a name that must be refused. */
static void check_arlctl_refuses(const struct names *n, const char *expected, bool as_nobody)
{
	char *argv[] = {(char *)env_arlctl_path, (char *)"--segment", (char *)n->segment,
			(char *)"status", NULL};
	char *text;
	int status;

	unlink(n->log);
	status = env_run(argv, n->log, as_nobody);
	text = env_read(n->log);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "arlctl status ended with status %#x, expected exit 1; output:\n%s", status,
		      text);
	ck_assert_msg(strstr(text, expected) != NULL, "arlctl's output lacks \"%s\":\n%s",
		      expected, text);
	free(text);
}

START_TEST(squatted_empty_object_is_refused)
{
	struct names n;
	char error[512] = "";
	struct arl *arl;

	make_names(&n, "squat-empty");
	/* An empty object with no creator lock looks like a dead creator's,
	 * which ARL_ATTACH_CREATE replaces; another user's must stay. */
	squat_as_nobody(n.segment, 0, 0600);
	ck_assert_int_eq(env_attach(n.segment, ARL_ATTACH_CREATE, &arl, error, sizeof(error)),
			 ARL_EACCES);
	ck_assert_msg(strstr(error, "owned by uid") != NULL, "message: %s", error);
	check_arld_refuses(&n, "owned by uid");
	check_arlctl_refuses(&n, "owned by uid", false);
	remove_names(&n);
}
END_TEST

START_TEST(squatted_foreign_object_is_refused)
{
	struct names n;
	char error[512] = "";
	struct arl *arl;

	/* Sized like a segment, but not one, and open to everyone. */
	make_names(&n, "squat-foreign");
	squat_as_nobody(n.segment, 1 << 20, 0666);
	ck_assert_int_eq(env_attach(n.segment, 0, &arl, error, sizeof(error)), ARL_EACCES);
	check_arld_refuses(&n, "owned by uid");
	remove_names(&n);
}
END_TEST

START_TEST(squatter_expected_by_name_still_needs_narrow_mode)
{
	struct names n;
	char error[512] = "";
	struct arl *arl;

	/* Even a client configured to trust nobody's segment rejects it once
	 * nobody has opened it to every user. */
	make_names(&n, "squat-wide");
	create_wide_as_nobody(n.segment, 0606);
	setenv("ARL_SHM_OWNER", "nobody", 1);
	ck_assert_int_eq(env_attach(n.segment, 0, &arl, error, sizeof(error)), ARL_EACCES);
	ck_assert_msg(strstr(error, "grants access to other users") != NULL, "message: %s",
		      error);
	unsetenv("ARL_SHM_OWNER");
	remove_names(&n);
}
END_TEST

START_TEST(world_open_modes_are_refused_everywhere)
{
	static const mode_t modes[] = {0666, 0606, 0604, 0602, 0601, 0644};
	char error[512];
	struct names n;
	struct arl *arl;
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		int fd;

		make_names(&n, "world");
		ck_assert_int_eq(env_attach(n.segment, ARL_ATTACH_CREATE, &arl, error,
					    sizeof(error)),
				 0);
		arl_detach(arl);
		fd = shm_open(n.segment, O_RDWR, 0);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fchmod(fd, modes[i]), 0);
		close(fd);

		error[0] = '\0';
		ck_assert_msg(env_attach(n.segment, 0, &arl, error, sizeof(error)) == ARL_EACCES,
			      "mode %#o was accepted", (unsigned)modes[i]);
		ck_assert_msg(strstr(error, "grants access to other users") != NULL,
			      "mode %#o: message: %s", (unsigned)modes[i], error);
		ck_assert_int_eq(env_attach(n.segment, ARL_ATTACH_READ_ONLY, &arl, error,
					    sizeof(error)),
				 ARL_EACCES);
		check_arld_refuses(&n, "grants access to other users");
		check_arlctl_refuses(&n, "grants access to other users", false);
		remove_names(&n);
	}
}
END_TEST

START_TEST(other_users_segment_is_refused_to_nobody)
{
	struct names n;
	char error[512];
	struct arl *arl;
	int fd;

	/* A segment of uid 4242, mode 0600: nobody cannot even open it, and a
	 * 0640 one shared with nobody's group is not nobody's owner either. */
	make_names(&n, "foreign-owner");
	ck_assert_int_eq(env_attach(n.segment, ARL_ATTACH_CREATE, &arl, error, sizeof(error)), 0);
	arl_detach(arl);
	fd = shm_open(n.segment, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchown(fd, 4242, env_nobody_gid), 0);
	close(fd);
	check_arlctl_refuses(&n, "Permission denied", true);

	fd = shm_open(n.segment, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, 0640), 0);
	close(fd);
	check_arlctl_refuses(&n, "owned by uid 4242", true);
	remove_names(&n);
}
END_TEST

/* Creates a segment through the API under a umask and returns its mode. */
static mode_t mode_after_create(const char *name, mode_t umask_value, mode_t mode, bool group)
{
	struct arl_attach_options o;
	struct arl *arl = NULL;
	char error[512] = "", path[128];
	struct stat st;
	mode_t old;
	int rc;

	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE | (group ? ARL_ATTACH_EXPECT_GROUP : 0);
	o.group = env_nobody_gid;
	o.mode = mode;
	o.error = error;
	o.error_size = sizeof(error);
	old = umask(umask_value);
	rc = arl_attach(&arl, &o);
	umask(old);
	ck_assert_msg(rc == 0, "create with mode %#o: %s", (unsigned)mode, error);
	arl_detach(arl);
	env_shm_path(path, sizeof(path), name);
	ck_assert_int_eq(stat(path, &st), 0);
	if (group)
		ck_assert_uint_eq(st.st_gid, env_nobody_gid);
	shm_unlink(name);
	return st.st_mode & 07777;
}

START_TEST(umask_never_changes_api_mode)
{
	static const mode_t masks[] = {0000, 0077, 0022, 0777};
	char name[64];
	size_t i;

	test_segment_name(name, sizeof(name), "umask-api");
	for (i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		ck_assert_uint_eq(mode_after_create(name, masks[i], 0, false), 0600);
		ck_assert_uint_eq(mode_after_create(name, masks[i], 0600, false), 0600);
		ck_assert_uint_eq(mode_after_create(name, masks[i], 0640, true), 0640);
		ck_assert_uint_eq(mode_after_create(name, masks[i], 0660, true), 0660);
	}
}
END_TEST

/* Starts arld under a umask with a configured mode, and checks the mode
 * of the segment it creates. */
static void check_arld_mode(mode_t umask_value, const char *mode_key, mode_t expected)
{
	struct names n;
	char extra[128], path[128];
	struct stat st;
	struct arl *arl;
	mode_t old;
	pid_t arld;

	make_names(&n, "umask-arld");
	snprintf(extra, sizeof(extra), "%s", mode_key);
	env_write_config(n.config, n.segment, extra);
	old = umask(umask_value);
	arld = env_start_arld(n.config, n.log, false);
	umask(old);
	if (expected & 0070)
		setenv("ARL_SHM_GROUP", "nogroup", 1);
	arl = env_attach_when_ready(n.segment, "work");
	unsetenv("ARL_SHM_GROUP");
	env_shm_path(path, sizeof(path), n.segment);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == expected,
		      "arld under umask %#o with \"%s\" created mode %#o, expected %#o",
		      (unsigned)umask_value, mode_key, (unsigned)(st.st_mode & 07777),
		      (unsigned)expected);
	arl_detach(arl);
	env_stop_arld(arld, n.log);
	remove_names(&n);
}

START_TEST(umask_never_changes_arld_mode)
{
	static const mode_t masks[] = {0000, 0077};
	size_t i;

	for (i = 0; i < 2; i++) {
		check_arld_mode(masks[i], "", 0600);
		check_arld_mode(masks[i], "mode = 0640\ngroup = nogroup\n", 0640);
		check_arld_mode(masks[i], "mode = 0660\ngroup = nogroup\n", 0660);
	}
}
END_TEST

int main(void)
{
	Suite *suite;
	TCase *tc;
	int rc;

	if (geteuid() != 0) {
		fprintf(stderr, "skipped: needs root to act as two users (root and nobody)\n");
		return 77;
	}
	if (!env_find_nobody()) {
		fprintf(stderr, "skipped: this system has no user named nobody\n");
		return 77;
	}
	if (!getgrnam("nogroup")) {
		fprintf(stderr, "skipped: this system has no group named nogroup\n");
		return 77;
	}
	if (env_copy_binaries() != 0) {
		fprintf(stderr, "cannot copy arld and arlctl to /tmp for nobody to run: %s\n",
			strerror(errno));
		env_remove_binaries();
		return 1;
	}
	suite = suite_create("env_permissions");
	tc = tcase_create("permissions");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, squatted_empty_object_is_refused);
	tcase_add_test(tc, squatted_foreign_object_is_refused);
	tcase_add_test(tc, squatter_expected_by_name_still_needs_narrow_mode);
	tcase_add_test(tc, world_open_modes_are_refused_everywhere);
	tcase_add_test(tc, other_users_segment_is_refused_to_nobody);
	tcase_add_test(tc, umask_never_changes_api_mode);
	tcase_add_test(tc, umask_never_changes_arld_mode);
	suite_add_tcase(suite, tc);
	rc = test_run(suite);
	env_remove_binaries();
	return rc;
}
