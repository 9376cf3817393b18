/* SPDX-License-Identifier: MIT */
/*
 * A /dev/shm too small for the segment. Each test mounts a small tmpfs over
 * /dev/shm in a mount namespace of its own (Check runs each test in a forked
 * process), so tests running in parallel keep the real /dev/shm.
 *
 * Creation must fail with ARL_ENOSPC and a message naming the segment, and
 * leave no name behind. A segment created while there was room must keep
 * working once the filesystem is full, because creation allocated every page
 * (posix_fallocate) and no later write can raise SIGBUS. arld and concurrent
 * creators on a full /dev/shm fail cleanly.
 *
 * Exits 77 (skipped) unless the process may create a mount namespace and
 * mount a tmpfs, which needs root (CAP_SYS_ADMIN).
 */
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include "test_env.h"

#define SMALL_SHM_BYTES (256 * 1024)
#define CREATORS 10

/* Moves this process into a new mount namespace with a tmpfs of size bytes
 * on /dev/shm. Returns 0 or -errno. */
static int mount_small_shm(size_t size)
{
	char options[64];

	if (unshare(CLONE_NEWNS) != 0)
		return -errno;
	/* Keep the new mount out of the parent namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return -errno;
	snprintf(options, sizeof(options), "size=%zu,mode=1777", size);
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
		return -errno;
	return 0;
}

static void enter_small_shm(size_t size)
{
	int rc = mount_small_shm(size);

	ck_assert_msg(rc == 0, "cannot mount a small tmpfs on /dev/shm: %s", strerror(-rc));
}

/* Fills /dev/shm with a file until no page is left. */
static void fill_shm(void)
{
	static char page[4096];
	int fd = open("/dev/shm/filler", O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	while (write(fd, page, sizeof(page)) == (ssize_t)sizeof(page))
		;
	close(fd);
}

/* Opens a segment with the given capacities (0: defaults) and the create
 * flag. */
static int create_with(const char *name, uint32_t buckets, uint32_t reservations,
		       struct arl **arl, char *error, size_t size)
{
	struct arl_attach_options o;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	o.bucket_capacity = buckets;
	o.reservation_capacity = reservations;
	o.process_capacity = 16;
	o.error = error;
	o.error_size = size;
	*arl = NULL;
	return arl_attach(arl, &o);
}

START_TEST(creation_fails_with_enospc)
{
	char error[512] = "";
	struct arl *arl;
	int rc;

	enter_small_shm(SMALL_SHM_BYTES);
	/* The default tables need about 1 MB. */
	rc = create_with("/arl-full", 0, 0, &arl, error, sizeof(error));
	ck_assert_msg(rc == ARL_ENOSPC, "create returned %d (%s), expected ARL_ENOSPC: %s", rc,
		      arl_strerror(rc), error);
	ck_assert_ptr_null(arl);
	ck_assert_msg(strstr(error, "/arl-full") != NULL, "message names no segment: %s", error);
	ck_assert_msg(strstr(error, "No space left") != NULL, "message names no cause: %s",
		      error);
	ck_assert_str_eq(arl_strerror(rc), "no space left for the segment in /dev/shm");
	ck_assert_msg(!env_shm_exists("/arl-full"), "the failed creation left its name behind");

	/* A plain client then finds no segment rather than a broken one. */
	ck_assert_int_eq(env_attach("/arl-full", 0, &arl, error, sizeof(error)), ARL_ENOENT);
}
END_TEST

START_TEST(full_shm_after_creation_keeps_working)
{
	char error[512] = "";
	struct arl_bucket_config c;
	struct arl_bucket b;
	struct statvfs fs;
	struct arl *arl;
	int i, rc;

	enter_small_shm(SMALL_SHM_BYTES);
	rc = create_with("/arl-fits", 8, 64, &arl, error, sizeof(error));
	ck_assert_msg(rc == 0, "create failed: %s", error);
	fill_shm();
	ck_assert_int_eq(statvfs("/dev/shm", &fs), 0);
	ck_assert_uint_eq(fs.f_bavail, 0);

	/* Every page of the segment exists, so these writes cannot fault. */
	memset(&c, 0, sizeof(c));
	c.name = "after-full";
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = 1000000;
	c.limits[0].window_ns = MINUTE_NS;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);
	for (i = 0; i < 1000; i++) {
		struct arl_reservation res;
		struct arl_usage u = test_usage(5);

		ck_assert_int_eq(test_reserve(arl, b, 10, &res), 0);
		ck_assert_int_eq(arl_release(arl, &res, &u), 0);
	}
	ck_assert_uint_eq(test_stats(arl, b).released, 1000);

	arl_detach(arl);

	/* A second segment does not fit any more. */
	ck_assert_int_eq(create_with("/arl-second", 8, 64, &arl, error, sizeof(error)),
			 ARL_ENOSPC);
	ck_assert_msg(!env_shm_exists("/arl-second"), "the failed creation left its name behind");
}
END_TEST

/* Each child creates the segment at once; all must fail with ARL_ENOSPC. */
START_TEST(concurrent_creators_all_fail_cleanly)
{
	pid_t pids[CREATORS];
	int i, status;

	enter_small_shm(SMALL_SHM_BYTES);
	for (i = 0; i < CREATORS; i++) {
		pids[i] = fork();
		ck_assert(pids[i] >= 0);
		if (pids[i] == 0) {
			char error[512];
			struct arl *arl;

			_exit(create_with("/arl-race-full", 0, 0, &arl, error, sizeof(error)) ==
					      ARL_ENOSPC
				      ? 0
				      : 1);
		}
	}
	for (i = 0; i < CREATORS; i++) {
		status = env_wait(pids[i]);
		ck_assert_msg(WIFEXITED(status), "creator %d died of signal %d", i,
			      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		ck_assert_msg(WEXITSTATUS(status) == 0, "creator %d did not get ARL_ENOSPC", i);
	}
	ck_assert_msg(!env_shm_exists("/arl-race-full"), "a failed creation left its name behind");
}
END_TEST

START_TEST(arld_on_full_shm_exits_with_error)
{
	char config[128], log[128];
	char *text;
	int status;

	env_temp_path(config, sizeof(config), "shmfull", "ini");
	env_temp_path(log, sizeof(log), "shmfull", "log");
	unlink(log);
	env_write_config(config, "/arl-arld-full", NULL);
	enter_small_shm(SMALL_SHM_BYTES);

	status = env_wait(env_start_arld(config, log, false));
	text = env_read(log);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "arld ended with status %#x, expected exit 1; log:\n%s", status, text);
	ck_assert_msg(strstr(text, "error: cannot attach /arl-arld-full") != NULL,
		      "arld logged no attach error:\n%s", text);
	ck_assert_msg(strstr(text, "no space left") != NULL, "arld's error names no cause:\n%s",
		      text);
	ck_assert_msg(!env_shm_exists("/arl-arld-full"), "arld left the name behind");
	free(text);
	unlink(config);
	unlink(log);
}
END_TEST

START_TEST(arld_then_filled_shm_keeps_serving)
{
	char config[128], log[128];
	struct arl_reservation res;
	struct arl_bucket b;
	struct arl *arl;
	pid_t arld, child;
	int status;

	env_temp_path(config, sizeof(config), "shmfill", "ini");
	env_temp_path(log, sizeof(log), "shmfill", "log");
	unlink(log);
	env_write_config(config, "/arl-arld-fill",
			 "buckets = 4\nreservations = 64\nprocesses = 32\n");
	enter_small_shm(SMALL_SHM_BYTES);
	arld = env_start_arld(config, log, false);
	arl = env_attach_when_ready("/arl-arld-fill", "work");
	fill_shm();

	/* A client killed with a live reservation is reclaimed by arld while
	 * /dev/shm is full. */
	child = fork();
	ck_assert(child >= 0);
	if (child == 0) {
		struct arl *mine = test_attach("/arl-arld-fill");

		if (arl_bucket_find(mine, "work", &b) != 0 || test_reserve(mine, b, 100, &res) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	status = env_wait(child);
	ck_assert_msg(WIFSIGNALED(status), "the client failed before its kill (%#x)", status);
	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	ck_assert_int_eq(arl_wait_sweep(arl, arl_sweep_count(arl) + 1, 30 * NS_PER_S), 0);
	ck_assert_uint_eq(test_stats(arl, b).reclaimed_dead, 1);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 0);
	ck_assert_int_eq(test_reserve(arl, b, 100, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);

	arl_detach(arl);
	env_stop_arld(arld, log);
	ck_assert_int_eq(env_count_lines(log, "error:"), 0);
	unlink(config);
	unlink(log);
}
END_TEST

/* Checks, in a child, that this process may mount a tmpfs in a mount
 * namespace of its own. */
static bool can_mount_small_shm(char *why, size_t size)
{
	int fds[2], status, rc = 0;
	pid_t pid;

	if (pipe(fds) != 0)
		return false;
	pid = fork();
	if (pid == 0) {
		rc = mount_small_shm(SMALL_SHM_BYTES);
		if (write(fds[1], &rc, sizeof(rc)) != sizeof(rc))
			_exit(1);
		_exit(0);
	}
	if (pid < 0 || read(fds[0], &rc, sizeof(rc)) != sizeof(rc))
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
	Suite *suite;
	TCase *tc;
	char why[128] = "";

	if (!can_mount_small_shm(why, sizeof(why))) {
		fprintf(stderr,
			"skipped: cannot mount a small tmpfs over /dev/shm in a private mount "
			"namespace (%s); run as root\n",
			why);
		return 77;
	}
	suite = suite_create("env_shm_full");
	tc = tcase_create("shm_full");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, creation_fails_with_enospc);
	tcase_add_test(tc, full_shm_after_creation_keeps_working);
	tcase_add_test(tc, concurrent_creators_all_fail_cleanly);
	tcase_add_test(tc, arld_on_full_shm_exits_with_error);
	tcase_add_test(tc, arld_then_filled_shm_keeps_serving);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
