/* SPDX-License-Identifier: MIT */
/*
 * Owners, groups and modes, checked with real users: the test runs as root
 * and drops to nobody with setresuid for the other side. Also the umask at
 * creation and a client in another time namespace. Exits 77 (skipped) when
 * not run as root, since only root can act as two users.
 */
#include <grp.h>
#include <pwd.h>
#include <sched.h>

#include "testutil.h"

static uid_t nobody_uid;
static gid_t nobody_gid;

/* Runs fn in a child that became nobody; returns the child's exit status. */
static int as_nobody(int (*fn)(const char *), const char *name)
{
	pid_t pid = fork();
	int status;

	ck_assert(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setresgid(nobody_gid, nobody_gid, nobody_gid) != 0 ||
		    setresuid(nobody_uid, nobody_uid, nobody_uid) != 0)
			_exit(100);
		_exit(fn(name));
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int create_segment(const char *name)
{
	struct arl_attach_options o;
	struct arl *arl;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	return arl_attach(&arl, &o) == 0 ? 0 : 1;
}

static int attach_plain(const char *name, uint32_t flags, uid_t owner, gid_t group,
			char *error, size_t size)
{
	struct arl_attach_options o;
	struct arl *arl = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = flags;
	o.owner = owner;
	o.group = group;
	o.error = error;
	o.error_size = size;
	rc = arl_attach(&arl, &o);
	if (rc == 0)
		arl_detach(arl);
	return rc;
}

START_TEST(squatted_name_is_rejected)
{
	char name[64], error[512] = "";

	test_segment_name(name, sizeof(name), "squat");
	shm_unlink(name);
	/* nobody creates the name first; root's client must not trust it. */
	ck_assert_int_eq(as_nobody(create_segment, name), 0);
	ck_assert_int_eq(attach_plain(name, 0, 0, 0, error, sizeof(error)), ARL_EACCES);
	ck_assert_msg(strstr(error, "owned by uid") != NULL, "message: %s", error);

	/* Naming nobody as the expected owner accepts it, and so does
	 * ARL_SHM_OWNER. */
	ck_assert_int_eq(attach_plain(name, ARL_ATTACH_EXPECT_OWNER, nobody_uid, 0, error,
				      sizeof(error)),
			 0);
	setenv("ARL_SHM_OWNER", "nobody", 1);
	ck_assert_int_eq(attach_plain(name, 0, 0, 0, error, sizeof(error)), 0);
	setenv("ARL_SHM_OWNER", "no-such-user-here", 1);
	ck_assert_int_eq(attach_plain(name, 0, 0, 0, error, sizeof(error)), ARL_EINVAL);
	unsetenv("ARL_SHM_OWNER");
	shm_unlink(name);
}
END_TEST

START_TEST(group_mode_needs_expected_group)
{
	char name[64], error[512] = "", gid_text[16];
	struct arl_attach_options o;
	struct arl *arl = NULL;
	struct stat st;
	char path[96];

	test_segment_name(name, sizeof(name), "group");
	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_EXPECT_GROUP;
	o.group = nobody_gid;
	o.mode = 0660;
	ck_assert_int_eq(arl_attach(&arl, &o), 0);
	arl_detach(arl);
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0660);
	ck_assert_uint_eq(st.st_gid, nobody_gid);

	/* Without a group expectation the group bits are too wide. */
	ck_assert_int_eq(attach_plain(name, 0, 0, 0, error, sizeof(error)), ARL_EACCES);
	ck_assert_msg(strstr(error, "ARL_SHM_GROUP") != NULL, "message: %s", error);
	ck_assert_int_eq(attach_plain(name, ARL_ATTACH_EXPECT_GROUP, 0, nobody_gid + 1, error,
				      sizeof(error)),
			 ARL_EACCES);
	snprintf(gid_text, sizeof(gid_text), "%u", (unsigned)nobody_gid);
	setenv("ARL_SHM_GROUP", gid_text, 1);
	ck_assert_int_eq(attach_plain(name, 0, 0, 0, error, sizeof(error)), 0);
	unsetenv("ARL_SHM_GROUP");
	shm_unlink(name);
}
END_TEST

START_TEST(umask_does_not_change_mode)
{
	static const mode_t masks[] = {0000, 0077};
	char name[64];
	size_t i;

	for (i = 0; i < 2; i++) {
		struct arl_attach_options o;
		struct arl *arl = NULL;
		struct stat st;
		char path[96];
		mode_t old = umask(masks[i]);

		test_segment_name(name, sizeof(name), i ? "umask077" : "umask000");
		shm_unlink(name);
		memset(&o, 0, sizeof(o));
		o.name = name;
		o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_EXPECT_GROUP;
		o.group = nobody_gid;
		o.mode = 0640;
		ck_assert_int_eq(arl_attach(&arl, &o), 0);
		umask(old);
		snprintf(path, sizeof(path), "/dev/shm%s", name);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_msg((st.st_mode & 0777) == 0640, "umask %#o gave mode %#o",
			      (unsigned)masks[i], (unsigned)(st.st_mode & 0777));
		arl_detach(arl);
		shm_unlink(name);
	}
}
END_TEST

START_TEST(other_time_namespace_is_rejected)
{
	char name[64], error[512] = "";
	struct arl *arl;
	int status;
	pid_t pid;

	test_segment_name(name, sizeof(name), "timens");
	arl = test_create(name, 16);
	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		/* The new namespace applies to children created after unshare,
		 * once its offsets are written. */
		int fd;
		pid_t inner;

		if (unshare(CLONE_NEWTIME) != 0)
			_exit(77);
		fd = open("/proc/self/timens_offsets", O_WRONLY);
		if (fd < 0 || write(fd, "monotonic 1000 0\n", 17) != 17)
			_exit(77);
		close(fd);
		inner = fork();
		if (inner == 0)
			_exit(attach_plain(name, 0, 0, 0, error, sizeof(error)) == ARL_ETIMENS ? 0
											    : 1);
		if (inner < 0 || waitpid(inner, &status, 0) != inner)
			_exit(2);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		fprintf(stderr, "time namespaces unavailable here (unshare CLONE_NEWTIME "
				"failed); the namespace check was not exercised\n");
	else
		ck_assert_msg(WEXITSTATUS(status) == 0,
			      "a client in another time namespace was not rejected (%d)",
			      WEXITSTATUS(status));
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

int main(void)
{
	struct passwd *pw = getpwnam("nobody");
	Suite *suite;
	TCase *tc;

	if (geteuid() != 0 || !pw) {
		fprintf(stderr, "skipped: needs root and a nobody user to act as two users\n");
		return 77;
	}
	nobody_uid = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	suite = suite_create("permissions");
	tc = tcase_create("permissions");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, squatted_name_is_rejected);
	tcase_add_test(tc, group_mode_needs_expected_group);
	tcase_add_test(tc, umask_does_not_change_mode);
	tcase_add_test(tc, other_time_namespace_is_rejected);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
