/* SPDX-License-Identifier: MIT */
/*
 * Processes in another time namespace than the segment's creator. Their
 * CLOCK_MONOTONIC is offset, so every time they wrote into the segment
 * would be wrong. test_permissions.c checks that the client API rejects
 * them with ARL_ETIMENS; here arld, arlctl and a creating client refuse too,
 * with a message that names the time namespace, and nothing is created.
 *
 * Exits 77 (skipped) unless the process may create a time namespace
 * (CLONE_NEWTIME: Linux 5.6 or later, and root).
 */
#include <sched.h>

#include "test_env.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Moves this process's future children into a new time namespace whose
 * monotonic clock is 1000 s ahead. Returns 0 or -errno. */
static int enter_time_namespace(void)
{
	static const char offsets[] = "monotonic 1000 0\n";
	int fd;

	if (unshare(CLONE_NEWTIME) != 0)
		return -errno;
	fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, offsets, sizeof(offsets) - 1) != (ssize_t)(sizeof(offsets) - 1)) {
		int err = errno;

		close(fd);
		return -err;
	}
	close(fd);
	return 0;
}

/* In a child that entered the namespace, runs argv in a grandchild (the
 * first process that lives in it) and returns the grandchild's status. */
static int run_in_time_namespace(char *const argv[], const char *log)
{
	pid_t pid = fork();
	int status;

	ck_assert(pid >= 0);
	if (pid == 0) {
		if (enter_time_namespace() != 0)
			_exit(ENV_SETUP_FAILED);
		status = env_run(argv, log, false);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	status = env_wait(pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != ENV_SETUP_FAILED,
		      "could not run %s in a time namespace (status %#x)", argv[0], status);
	return WEXITSTATUS(status);
}

START_TEST(arld_and_arlctl_refuse_other_time_namespace)
{
	char name[64], config[128], log[128], ctl_log[128];
	char *arlctl_argv[] = {(char *)ARLCTL_PATH, (char *)"--segment", name, (char *)"status",
			       NULL};
	char *arld_argv[] = {(char *)ARLD_PATH, (char *)"--config", config, (char *)"--metrics",
			     (char *)"off", NULL};
	struct arl *arl;
	char *text;
	int rc;

	test_segment_name(name, sizeof(name), "timens");
	env_temp_path(config, sizeof(config), "timens", "ini");
	env_temp_path(log, sizeof(log), "timens", "log");
	env_temp_path(ctl_log, sizeof(ctl_log), "timens", "ctl.log");
	unlink(log);
	unlink(ctl_log);
	env_write_config(config, name, NULL);
	arl = test_create(name, 16);

	rc = run_in_time_namespace(arld_argv, log);
	text = env_read(log);
	ck_assert_msg(rc == 1, "arld in another time namespace exited %d; log:\n%s", rc, text);
	ck_assert_msg(strstr(text, "time namespace") != NULL, "arld's log:\n%s", text);
	ck_assert_int_eq(__atomic_load_n(&arl->header->supervisor_pid, __ATOMIC_RELAXED), 0);
	free(text);

	rc = run_in_time_namespace(arlctl_argv, ctl_log);
	text = env_read(ctl_log);
	ck_assert_msg(rc == 1, "arlctl in another time namespace exited %d; output:\n%s", rc,
		      text);
	ck_assert_msg(strstr(text, "time namespace") != NULL, "arlctl's output:\n%s", text);
	free(text);

	arl_detach(arl);
	shm_unlink(name);
	unlink(config);
	unlink(log);
	unlink(ctl_log);
}
END_TEST

START_TEST(creating_client_in_other_namespace_is_refused)
{
	char name[64];
	struct arl *arl;
	int status;
	pid_t pid;

	test_segment_name(name, sizeof(name), "timens-create");
	arl = test_create(name, 16);
	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		pid_t inner;

		if (enter_time_namespace() != 0)
			_exit(ENV_SETUP_FAILED);
		inner = fork();
		if (inner == 0) {
			char error[512] = "";
			struct arl *mine;
			int rc = env_attach(name, ARL_ATTACH_CREATE, &mine, error, sizeof(error));

			_exit(rc == ARL_ETIMENS && strstr(error, "time namespace") ? 0 : 1);
		}
		_exit(inner > 0 && waitpid(inner, &status, 0) == inner && WIFEXITED(status)
			      ? WEXITSTATUS(status)
			      : 2);
	}
	status = env_wait(pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "a creating client in another time namespace was not refused with "
		      "ARL_ETIMENS (status %#x)",
		      status);
	/* The segment it found is still the one the creator made. */
	ck_assert_uint_eq(arl->header->magic, ARL_MAGIC);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* Checks in a child that a time namespace can be created here. */
static bool can_enter_time_namespace(char *why, size_t size)
{
	int fds[2], status, rc = -EIO;
	pid_t pid;

	if (pipe(fds) != 0)
		return false;
	pid = fork();
	if (pid == 0) {
		rc = enter_time_namespace();
		_exit(write(fds[1], &rc, sizeof(rc)) == sizeof(rc) ? 0 : 1);
	}
	if (pid > 0 && read(fds[0], &rc, sizeof(rc)) != sizeof(rc))
		rc = -EIO;
	if (pid > 0)
		waitpid(pid, &status, 0);
	close(fds[0]);
	close(fds[1]);
	if (rc != 0)
		snprintf(why, size, "%s", strerror(-rc));
	return rc == 0;
}

int main(void)
{
	char why[128] = "";
	Suite *suite;
	TCase *tc;

	if (!can_enter_time_namespace(why, sizeof(why))) {
		fprintf(stderr,
			"skipped: cannot create a time namespace (%s); needs root and Linux "
			"5.6 or later\n",
			why);
		return 77;
	}
	suite = suite_create("env_timens");
	tc = tcase_create("timens");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, arld_and_arlctl_refuse_other_time_namespace);
	tcase_add_test(tc, creating_client_in_other_namespace_is_refused);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
