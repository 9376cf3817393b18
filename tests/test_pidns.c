/* SPDX-License-Identifier: MIT */
/*
 * Liveness across pid namespaces, with a real arld. A client that runs as
 * pid 1 of a new pid namespace records pid 1 in its process entry, and pid
 * 1 in arld's namespace is another process that stays alive. A liveness
 * test by pid (kill(pid, 0)) would keep the dead client's reservation for
 * ever. arld tests the entry's OFD lock instead, so it must reclaim the
 * reservation within two sweeps, and must keep that of a live client.
 *
 * Needs root for unshare(CLONE_NEWPID); exits 77 (skipped) without it.
 */
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>

#include "testutil.h"

#ifndef ARLD_PATH
#error "ARLD_PATH must name the arld binary"
#endif

#define WAIT_CEILING_NS (60ull * NS_PER_S)
#define HELD_TOKENS 500

struct supervisor {
	pid_t pid;
	char segment[64];
	char config[128];
};

static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
}

static struct arl *start_arld(struct supervisor *sup, const char *tag)
{
	uint64_t deadline = arl_impl_monotonic_ns() + WAIT_CEILING_NS;
	pid_t parent = getpid();
	struct arl *arl = NULL;
	FILE *f;

	test_segment_name(sup->segment, sizeof(sup->segment), tag);
	shm_unlink(sup->segment);
	snprintf(sup->config, sizeof(sup->config), "/tmp/arl-test-%s-%d.ini", tag, (int)getpid());
	f = fopen(sup->config, "w");
	ck_assert(f != NULL);
	fprintf(f, "[arld]\nsegment = %s\nsweep_interval = 100ms\nreservation_ttl = 300s\n"
		   "[bucket:work]\nrequests_per_minute = 100\ntokens_per_minute = 10000\n",
		sup->segment);
	fclose(f);

	sup->pid = fork();
	ck_assert(sup->pid >= 0);
	if (sup->pid == 0) {
		die_with_parent(parent);
		execl(ARLD_PATH, "arld", "--config", sup->config, "--metrics", "off",
		      (char *)NULL);
		_exit(127);
	}
	for (;;) {
		struct arl_attach_options o;
		struct timespec pause = {0, 10000000};
		struct arl_bucket b;

		memset(&o, 0, sizeof(o));
		o.name = sup->segment;
		if (arl_attach(&arl, &o) == 0) {
			if (arl_bucket_find(arl, "work", &b) == 0)
				break;
			arl_detach(arl);
		}
		ck_assert_msg(arl_impl_monotonic_ns() < deadline, "arld never created %s",
			      sup->segment);
		nanosleep(&pause, NULL);
	}
	ck_assert_int_eq(arl_wait_sweep(arl, 0, WAIT_CEILING_NS), 0);
	return arl;
}

static void stop_arld(struct supervisor *sup, struct arl *arl)
{
	int status;

	kill(sup->pid, SIGTERM);
	ck_assert_int_eq(waitpid(sup->pid, &status, 0), sup->pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "arld status %#x", status);
	arl_detach(arl);
	shm_unlink(sup->segment);
	unlink(sup->config);
}

/* The report the client in the new namespace sends once it has its
 * reservation. */
struct client_report {
	struct arl_reservation res;
	pid_t pid_inside;  /* getpid() in its own namespace */
	pid_t pid_outside; /* its pid in ours, as the helper saw it */
};

/* Runs the client: reserves, reports, releases once a byte arrives on
 * command_fd, and exits 0 if the release succeeded. */
static void run_client(const char *segment, int report_fd, int command_fd)
{
	struct client_report report;
	struct arl_bucket b;
	struct arl_usage usage = test_usage(100);
	struct arl *arl = test_attach(segment);
	char byte;

	memset(&report, 0, sizeof(report));
	if (arl_bucket_find(arl, "work", &b) != 0 || test_reserve(arl, b, HELD_TOKENS, &report.res))
		_exit(2);
	report.pid_inside = getpid();
	if (write(report_fd, &report, sizeof(report)) != sizeof(report))
		_exit(3);
	if (read(command_fd, &byte, 1) != 1)
		_exit(4);
	_exit(arl_release(arl, &report.res, &usage) == 0 ? 0 : 1);
}

/*
 * Starts a helper that unshares its pid namespace and forks the client,
 * which becomes pid 1 there. The helper adds the client's pid in our
 * namespace to the report and waits for it. Returns the helper's pid.
 */
static pid_t spawn_in_new_pidns(const char *segment, int report[2], int command[2])
{
	pid_t parent = getpid();
	pid_t helper;

	ck_assert_int_eq(pipe(report), 0);
	ck_assert_int_eq(pipe(command), 0);
	helper = fork();
	ck_assert(helper >= 0);
	if (helper == 0) {
		struct client_report r;
		int inner[2], status;
		pid_t client;

		die_with_parent(parent);
		if (unshare(CLONE_NEWPID) != 0 || pipe(inner) != 0)
			_exit(77);
		client = fork();
		if (client == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* its parent is outside */
			run_client(segment, inner[1], command[0]);
		}
		if (client < 0 || read(inner[0], &r, sizeof(r)) != sizeof(r))
			_exit(5);
		r.pid_outside = client;
		if (write(report[1], &r, sizeof(r)) != sizeof(r))
			_exit(6);
		if (waitpid(client, &status, 0) != client)
			_exit(7);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	return helper;
}

static struct client_report read_report(int fd)
{
	struct client_report r;

	ck_assert_int_eq(read(fd, &r, sizeof(r)), (ssize_t)sizeof(r));
	return r;
}

static uint64_t slot_word(const struct arl *arl, uint32_t slot)
{
	return __atomic_load_n(&arl_impl_reservations(arl)[slot].word, __ATOMIC_ACQUIRE);
}

/* The pid recorded in the process entry that owns a slot. */
static pid_t recorded_owner_pid(const struct arl *arl, uint32_t slot)
{
	uint32_t owner = arl_impl_res_owner(slot_word(arl, slot));

	ck_assert_uint_gt(owner, 0);
	return __atomic_load_n(&arl_impl_processes(arl)[owner - 1].pid, __ATOMIC_RELAXED);
}

static void wait_two_sweeps(struct arl *arl)
{
	uint64_t count = arl_sweep_count(arl);

	ck_assert_int_eq(arl_wait_sweep(arl, count, WAIT_CEILING_NS), 0);
	ck_assert_int_eq(arl_wait_sweep(arl, count + 1, WAIT_CEILING_NS), 0);
}

START_TEST(dead_owner_with_reused_pid_reclaimed)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "pidns-dead");
	int report[2], command[2], status;
	struct client_report r;
	struct arl_bucket b;
	struct arl_bucket_stats s;
	pid_t helper;

	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	helper = spawn_in_new_pidns(sup.segment, report, command);
	r = read_report(report[0]);

	/* The entry records pid 1, and pid 1 here is another, live process. */
	ck_assert_int_eq(r.pid_inside, 1);
	ck_assert_int_eq(recorded_owner_pid(arl, r.res.slot), 1);
	ck_assert_int_ne(r.pid_outside, 1);
	ck_assert_int_eq(kill(1, 0), 0);
	ck_assert_uint_eq(arl_impl_res_state(slot_word(arl, r.res.slot)), ARL_RES_COMMITTED);

	/* Killing pid 1 of a namespace ends the namespace; the helper reaps. */
	ck_assert_int_eq(kill(r.pid_outside, SIGKILL), 0);
	ck_assert_int_eq(waitpid(helper, &status, 0), helper);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL,
		      "helper status %#x", status);
	ck_assert_int_eq(kill(1, 0), 0); /* pid 1 here still lives */

	wait_two_sweeps(arl);
	ck_assert_uint_eq(arl_impl_res_state(slot_word(arl, r.res.slot)), ARL_RES_FREE);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.reclaimed_dead, 1);
	ck_assert_uint_eq(s.fallback_tokens, HELD_TOKENS);
	ck_assert_uint_eq(s.inflight, 0);
	stop_arld(&sup, arl);
}
END_TEST

START_TEST(live_owner_in_other_pidns_kept)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "pidns-live");
	int report[2], command[2], status;
	struct client_report r;
	struct arl_bucket b;
	pid_t helper;

	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	helper = spawn_in_new_pidns(sup.segment, report, command);
	r = read_report(report[0]);
	ck_assert_int_eq(recorded_owner_pid(arl, r.res.slot), 1);

	wait_two_sweeps(arl);
	ck_assert_uint_eq(arl_impl_res_state(slot_word(arl, r.res.slot)), ARL_RES_COMMITTED);
	ck_assert_uint_eq(test_stats(arl, b).reclaimed_dead, 0);

	/* Its own release still works: nothing was taken from it. */
	ck_assert_int_eq(write(command[1], "r", 1), 1);
	ck_assert_int_eq(waitpid(helper, &status, 0), helper);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the client's release failed (helper status %#x)", status);
	ck_assert_uint_eq(test_stats(arl, b).released, 1);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 0);
	stop_arld(&sup, arl);
}
END_TEST

/* Returns true when this process may create a pid namespace. */
static bool can_unshare_pidns(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		return false;
	pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWPID) == 0 ? 0 : 1);
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

int main(void)
{
	Suite *suite = suite_create("pidns");
	TCase *tc = tcase_create("arld");

	if (!can_unshare_pidns()) {
		printf("skipped: creating a pid namespace needs root (unshare(CLONE_NEWPID))\n");
		return 77;
	}
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, dead_owner_with_reused_pid_reclaimed);
	tcase_add_test(tc, live_owner_in_other_pidns_kept);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
