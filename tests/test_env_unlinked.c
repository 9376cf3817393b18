/* SPDX-License-Identifier: MIT */
/*
 * The segment's name removed under live processes, as systemd's RemoveIPC
 * does at logout. The processes that map it keep one limiter: arld keeps
 * sweeping it and logs one error naming the segment. Nothing creates a
 * second limiter without a trace. A plain client gets ARL_ENOENT, and
 * arlctl reports that nothing is found. When a creator does make a new
 * segment under the name, arld logs it, arlctl shows no supervisor on the
 * new one, and a second arld can supervise only that one.
 */
#include "test_env.h"

#define REPLACED_MESSAGE "was removed or replaced under live processes"

struct setup {
	char segment[64];
	char config[128];
	char log[128];
	char ctl_log[128];
	pid_t arld;
	struct arl *arl;
	struct arl_bucket bucket;
};

static void start(struct setup *s, const char *tag)
{
	test_segment_name(s->segment, sizeof(s->segment), tag);
	env_temp_path(s->config, sizeof(s->config), tag, "ini");
	env_temp_path(s->log, sizeof(s->log), tag, "log");
	env_temp_path(s->ctl_log, sizeof(s->ctl_log), tag, "ctl.log");
	shm_unlink(s->segment);
	unlink(s->log);
	env_write_config(s->config, s->segment, NULL);
	s->arld = env_start_arld(s->config, s->log, false);
	s->arl = env_attach_when_ready(s->segment, "work");
	ck_assert_int_eq(arl_bucket_find(s->arl, "work", &s->bucket), 0);
}

static void finish(struct setup *s)
{
	arl_detach(s->arl);
	env_stop_arld(s->arld, s->log);
	shm_unlink(s->segment);
	unlink(s->config);
	unlink(s->log);
	unlink(s->ctl_log);
}

/* Waits until arld completed two more sweeps, so a check made by a sweep
 * that started after now has run. */
static void wait_two_sweeps(struct setup *s)
{
	ck_assert_int_eq(arl_wait_sweep(s->arl, arl_sweep_count(s->arl) + 1, 30 * NS_PER_S), 0);
}

/* Runs arlctl COMMAND on the segment's name; returns its exit status and
 * leaves the output in ctl_log. */
static int arlctl(struct setup *s, const char *command)
{
	char *argv[] = {(char *)ARLCTL_PATH, (char *)"--segment", s->segment, (char *)command,
			NULL};
	int status;

	unlink(s->ctl_log);
	status = env_run(argv, s->ctl_log, false);
	ck_assert_msg(WIFEXITED(status), "arlctl %s died of a signal (%#x)", command, status);
	return WEXITSTATUS(status);
}

START_TEST(unlink_is_logged_once_and_sweeping_goes_on)
{
	struct arl_reservation res;
	char error[512];
	struct setup s;
	struct arl *other;
	pid_t child;
	int status;

	start(&s, "unlinked");
	wait_two_sweeps(&s);
	ck_assert_int_eq(env_count_lines(s.log, REPLACED_MESSAGE), 0);

	ck_assert_int_eq(shm_unlink(s.segment), 0);
	ck_assert_msg(env_wait_for_line(s.log, REPLACED_MESSAGE, 30),
		      "arld did not log the removal:\n%s", env_read(s.log));
	ck_assert_int_eq(env_count_lines(s.log, "error:"), 1);
	ck_assert_msg(env_count_lines(s.log, s.segment) > 0, "the log never names %s",
		      s.segment);

	/* Live processes keep the one limiter: reserve, release, and a killed
	 * client is still reclaimed by arld. */
	ck_assert_int_eq(test_reserve(s.arl, s.bucket, 10, &res), 0);
	ck_assert_int_eq(arl_release(s.arl, &res, NULL), 0);
	child = fork();
	ck_assert(child >= 0);
	if (child == 0) {
		/* Forked after attach: the child registers an entry of its own. */
		if (test_reserve(s.arl, s.bucket, 100, &res) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	status = env_wait(child);
	ck_assert_msg(WIFSIGNALED(status), "the client failed before its kill (%#x)", status);
	wait_two_sweeps(&s);
	ck_assert_uint_eq(test_stats(s.arl, s.bucket).reclaimed_dead, 1);
	ck_assert_uint_eq(test_stats(s.arl, s.bucket).inflight, 0);

	/* A new client finds nothing and creates nothing. */
	ck_assert_int_eq(env_attach(s.segment, 0, &other, error, sizeof(error)), ARL_ENOENT);
	ck_assert_msg(!env_shm_exists(s.segment), "a plain attach created %s", s.segment);
	ck_assert_int_eq(arlctl(&s, "status"), 1);
	ck_assert_msg(env_count_lines(s.ctl_log, "not found") == 1, "arlctl status printed:\n%s",
		      env_read(s.ctl_log));

	/* Still one error after more sweeps, and the stop message names the removal. */
	wait_two_sweeps(&s);
	ck_assert_int_eq(env_count_lines(s.log, "error:"), 1);
	arl_detach(s.arl);
	env_stop_arld(s.arld, s.log);
	ck_assert_msg(env_count_lines(s.log, "was already removed") == 1,
		      "arld's stop message does not mention the removal:\n%s", env_read(s.log));
	s.arl = NULL;
	shm_unlink(s.segment);
	unlink(s.config);
	unlink(s.log);
	unlink(s.ctl_log);
}
END_TEST

START_TEST(replacement_segment_is_not_silent)
{
	char error[512], config2[128], log2[128];
	struct arl *fresh;
	struct setup s;
	pid_t second;

	start(&s, "replaced");
	ck_assert_int_eq(shm_unlink(s.segment), 0);

	/* An embedded client with ARL_ATTACH_CREATE makes a new segment under
	 * the name: arld notices the new inode. */
	ck_assert_int_eq(env_attach(s.segment, ARL_ATTACH_CREATE, &fresh, error, sizeof(error)),
			 0);
	ck_assert_msg(env_wait_for_line(s.log, REPLACED_MESSAGE, 30),
		      "arld did not log the replacement:\n%s", env_read(s.log));

	/* arlctl shows the new segment, with no supervisor. */
	ck_assert_int_eq(arlctl(&s, "status"), 0);
	ck_assert_msg(env_count_lines(s.ctl_log, "not running") == 1,
		      "arlctl status shows a supervisor on the new segment:\n%s",
		      env_read(s.ctl_log));

	/* A second arld may supervise the new segment, and only that one: the
	 * first keeps its lock on the old one. */
	env_temp_path(config2, sizeof(config2), "replaced-2", "ini");
	env_temp_path(log2, sizeof(log2), "replaced-2", "log");
	unlink(log2);
	env_write_config(config2, s.segment, NULL);
	second = env_start_arld(config2, log2, false);
	ck_assert_int_eq(arl_wait_sweep(fresh, 0, 30 * NS_PER_S), 0);
	ck_assert_int_eq(__atomic_load_n(&fresh->header->supervisor_pid, __ATOMIC_RELAXED),
			 second);
	ck_assert_int_eq(__atomic_load_n(&s.arl->header->supervisor_pid, __ATOMIC_RELAXED),
			 s.arld);
	ck_assert_int_eq(env_count_lines(log2, "error:"), 0);
	env_stop_arld(second, log2);
	arl_detach(fresh);
	unlink(config2);
	unlink(log2);
	ck_assert_int_eq(env_count_lines(s.log, "error:"), 1);
	finish(&s);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("env_unlinked");
	TCase *tc = tcase_create("unlinked");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, unlink_is_logged_once_and_sweeping_goes_on);
	tcase_add_test(tc, replacement_segment_is_not_silent);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
