/* SPDX-License-Identifier: MIT */
/*
 * test_env.h - helpers for the environment-fault tests (test_env_*.c): run
 * arld and arlctl as real processes with their output in a file, wait for a
 * line in that output, and act as the user nobody.
 */
#ifndef ARL_TEST_ENV_H
#define ARL_TEST_ENV_H

#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>

#include "testutil.h"

#ifndef ARLD_PATH
#error "ARLD_PATH must name the arld binary"
#endif
#ifndef ARLCTL_PATH
#error "ARLCTL_PATH must name the arlctl binary"
#endif

/* Exit status of a child whose setup (exec, setresuid) failed. */
#define ENV_SETUP_FAILED 120

/* The binaries the tests run: the build's own, or copies that nobody can
 * run (env_copy_binaries()). */
static const char *env_arld_path = ARLD_PATH;
static const char *env_arlctl_path = ARLCTL_PATH;
static char env_binary_dir[64];

static uid_t env_nobody_uid;
static gid_t env_nobody_gid;

/* Looks up nobody. Returns false when the user does not exist. */
static inline bool env_find_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	if (!pw)
		return false;
	env_nobody_uid = pw->pw_uid;
	env_nobody_gid = pw->pw_gid;
	return true;
}

/* Drops every id to nobody's. Returns 0 or -1. */
static inline int env_become_nobody(void)
{
	if (setgroups(0, NULL) != 0 || setresgid(env_nobody_gid, env_nobody_gid, env_nobody_gid) != 0 ||
	    setresuid(env_nobody_uid, env_nobody_uid, env_nobody_uid) != 0)
		return -1;
	return 0;
}

/* Writes /dev/shm/NAME into path. */
static inline void env_shm_path(char *path, size_t size, const char *name)
{
	snprintf(path, size, "/dev/shm%s", name);
}

static inline bool env_shm_exists(const char *name)
{
	char path[128];
	struct stat st;

	env_shm_path(path, sizeof(path), name);
	return stat(path, &st) == 0;
}

/* Starts argv[0] with stdout and stderr appended to log. In the child,
 * before the exec, drops to nobody when as_nobody is set. */
static inline pid_t env_spawn(char *const argv[], const char *log, bool as_nobody)
{
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(ENV_SETUP_FAILED);
		if (as_nobody && env_become_nobody() != 0)
			_exit(ENV_SETUP_FAILED);
		execv(argv[0], argv);
		_exit(ENV_SETUP_FAILED);
	}
	return pid;
}

/* Waits for a child and returns its raw wait status. */
static inline int env_wait(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* Runs argv to completion with its output in log; returns the wait status. */
static inline int env_run(char *const argv[], const char *log, bool as_nobody)
{
	return env_wait(env_spawn(argv, log, as_nobody));
}

/* Reads a whole text file; the caller frees it. Returns "" for no file. */
static inline char *env_read(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t size = 0;
	long n;

	if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0) {
		size = (size_t)n;
		rewind(f);
	}
	text = calloc(1, size + 1);
	ck_assert(text != NULL);
	if (f) {
		size = fread(text, 1, size, f);
		text[size] = '\0';
		fclose(f);
	}
	return text;
}

/* Counts the lines of a file that contain needle. */
static inline int env_count_lines(const char *path, const char *needle)
{
	char *text = env_read(path), *line, *save = NULL;
	int n = 0;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, needle))
			n++;
	free(text);
	return n;
}

/* Waits up to timeout_s seconds for a line containing needle in the file. */
static inline bool env_wait_for_line(const char *path, const char *needle, unsigned timeout_s)
{
	uint64_t deadline = arl_impl_monotonic_ns() + timeout_s * NS_PER_S;
	struct timespec pause = {0, 20000000};

	while (arl_impl_monotonic_ns() < deadline) {
		if (env_count_lines(path, needle) > 0)
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

/* Writes an arld configuration for segment with one bucket "work", a
 * 100 ms sweep and any extra [arld] lines. */
static inline void env_write_config(const char *path, const char *segment, const char *extra)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
	fprintf(f,
		"[arld]\nsegment = %s\nsweep_interval = 100ms\n%s"
		"[bucket:work]\nrequests_per_minute = 600\ntokens_per_minute = 60000\n"
		"max_inflight = 8\n",
		segment, extra ? extra : "");
	fclose(f);
}

/* Copies a file to dir/name with mode 0755. Returns 0 or -1. */
static inline int env_copy_file(const char *from, const char *dir, const char *name)
{
	char to[128], buf[65536];
	FILE *in = fopen(from, "rb"), *out;
	size_t n;
	int rc = 0;

	snprintf(to, sizeof(to), "%s/%s", dir, name);
	out = fopen(to, "wb");
	if (!in || !out) {
		if (in)
			fclose(in);
		if (out)
			fclose(out);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			rc = -1;
	if (ferror(in) || fclose(out) != 0)
		rc = -1;
	fclose(in);
	return rc == 0 ? chmod(to, 0755) : -1;
}

/*
 * Copies the suppressions file named in TSAN_OPTIONS next to the binaries
 * and points TSAN_OPTIONS at the copy, which every process started later
 * inherits. Returns 0 (also without a suppressions file) or -1.
 */
static inline int env_copy_suppressions(void)
{
	static char options[1024];
	const char *current = getenv("TSAN_OPTIONS");
	const char *at = current ? strstr(current, "suppressions=") : NULL;
	char path[512];
	size_t len;

	if (!at)
		return 0;
	at += strlen("suppressions=");
	len = strcspn(at, ":");
	if (len >= sizeof(path))
		return -1;
	memcpy(path, at, len);
	path[len] = '\0';
	if (env_copy_file(path, env_binary_dir, "tsan.supp") != 0)
		return -1;
	snprintf(options, sizeof(options), "%.*ssuppressions=%s/tsan.supp%s",
		 (int)(at - strlen("suppressions=") - current), current, env_binary_dir,
		 at + len);
	return setenv("TSAN_OPTIONS", options, 1);
}

/*
 * Copies arld and arlctl, and the TSan suppressions a TSan build reads, to
 * a directory of /tmp that every user can read. The build tree may lie
 * under a directory closed to other users (a clone under /root, or in a
 * mktemp -d folder), where nobody could not read them. Returns 0, or -1
 * when a copy failed.
 */
static inline int env_copy_binaries(void)
{
	static char arld[96], arlctl[96];

	snprintf(env_binary_dir, sizeof(env_binary_dir), "/tmp/arl-test-bin-XXXXXX");
	if (!mkdtemp(env_binary_dir) || chmod(env_binary_dir, 0755) != 0 ||
	    env_copy_file(ARLD_PATH, env_binary_dir, "arld") != 0 ||
	    env_copy_file(ARLCTL_PATH, env_binary_dir, "arlctl") != 0 ||
	    env_copy_suppressions() != 0)
		return -1;
	snprintf(arld, sizeof(arld), "%s/arld", env_binary_dir);
	snprintf(arlctl, sizeof(arlctl), "%s/arlctl", env_binary_dir);
	env_arld_path = arld;
	env_arlctl_path = arlctl;
	return 0;
}

/* Removes the copies env_copy_binaries() made. */
static inline void env_remove_binaries(void)
{
	char supp[96];

	if (!env_binary_dir[0])
		return;
	snprintf(supp, sizeof(supp), "%s/tsan.supp", env_binary_dir);
	unlink(supp);
	unlink(env_arld_path);
	unlink(env_arlctl_path);
	rmdir(env_binary_dir);
}

/* Starts arld on a configuration, its log in log, metrics off. */
static inline pid_t env_start_arld(const char *config, const char *log, bool as_nobody)
{
	char *argv[] = {(char *)env_arld_path, (char *)"--config", (char *)config,
			(char *)"--metrics", (char *)"off", (char *)"--log-level",
			(char *)"debug", NULL};

	return env_spawn(argv, log, as_nobody);
}

/* Stops arld with SIGTERM and checks it exited 0. On failure the log goes
 * to stderr, since Check limits the length of a failure message. */
static inline void env_stop_arld(pid_t pid, const char *log)
{
	int status;

	kill(pid, SIGTERM);
	status = env_wait(pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = env_read(log);

		fprintf(stderr, "arld's log (%s):\n%s\n", log, text);
		free(text);
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "arld exited with status %#x; its log is on stderr", status);
}

/* Attaches with plain options and an error buffer. */
static inline int env_attach(const char *name, uint32_t flags, struct arl **arl, char *error,
			     size_t size)
{
	struct arl_attach_options o;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = flags;
	o.error = error;
	o.error_size = size;
	*arl = NULL;
	return arl_attach(arl, &o);
}

/* Attaches with retries until arld created the segment and the bucket
 * named bucket, for up to 30 s. */
static inline struct arl *env_attach_when_ready(const char *name, const char *bucket)
{
	uint64_t deadline = arl_impl_monotonic_ns() + 30 * NS_PER_S;
	struct timespec pause = {0, 10000000};
	char error[512];
	struct arl *arl;

	for (;;) {
		struct arl_bucket b;

		if (env_attach(name, 0, &arl, error, sizeof(error)) == 0) {
			if (arl_bucket_find(arl, bucket, &b) == 0)
				return arl;
			arl_detach(arl);
		}
		ck_assert_msg(arl_impl_monotonic_ns() < deadline, "arld never created %s",
			      name);
		nanosleep(&pause, NULL);
	}
}

/* Makes a log or config path unique to this process and tag. */
static inline void env_temp_path(char *buf, size_t size, const char *tag, const char *suffix)
{
	snprintf(buf, size, "/tmp/arl-test-%s-%d.%s", tag, (int)getpid(), suffix);
}

#endif /* ARL_TEST_ENV_H */
