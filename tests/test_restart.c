/* SPDX-License-Identifier: MIT */
/*
 * arld killed with SIGKILL and restarted, several times, while worker
 * processes reserve and release without pause, and one worker with open
 * reservations is killed while no arld runs. Each restarted arld must adopt
 * the segment as it is, with the same buckets and counters. The dead
 * worker's reservations must be reclaimed exactly once. At the end, every
 * grant must be accounted for by a release, a cancel or a reclaim.
 *
 * Waits are on the sweep counter arld publishes, with generous ceilings.
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "testutil.h"

#ifndef ARLD_PATH
#error "ARLD_PATH must name the arld binary"
#endif

#define WAIT_CEILING_NS (60ull * NS_PER_S)
#define WORKERS 3
#define RESTARTS 4
#define VICTIM_HELD 3		/* reservations the killed worker holds */
#define VICTIM_TOKENS 1000	/* estimate of each of them */
#define VICTIM_KILLED_IN_ROUND 1

/* What one worker did, counted by the worker itself. */
struct worker_counts {
	uint64_t granted;
	uint64_t released;	 /* released with known usage */
	uint64_t fallback;	 /* released with unknown usage */
	uint64_t fallback_tokens; /* estimates kept by those releases */
	uint64_t canceled;
	uint64_t errors; /* release or cancel calls that failed */
};

/* Shared with the workers through an anonymous shared mapping. */
struct shared {
	uint32_t stop;
	struct worker_counts worker[WORKERS + 1]; /* the last one is the victim's */
};

struct supervisor {
	pid_t pid;
	char segment[64];
	char config[128];
};

static void write_config(struct supervisor *sup)
{
	FILE *f = fopen(sup->config, "w");

	ck_assert(f != NULL);
	fprintf(f, "[arld]\nsegment = %s\nsweep_interval = 100ms\nreservation_ttl = 300s\n"
		   "[bucket:work]\nrequests_per_second = 100000\ntokens_per_second = 100000000\n"
		   "max_inflight = 64\n"
		   "[bucket:spare]\nrequests_per_minute = 10\n",
		sup->segment);
	fclose(f);
}

/* Makes a child die with the test process, so that a failed assertion
 * leaves no worker or arld running. Call right after fork(). */
static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
}

static pid_t spawn_arld(const struct supervisor *sup)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		die_with_parent(parent);
		execl(ARLD_PATH, "arld", "--config", sup->config, "--log-level", "debug",
		      "--metrics", "off", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Starts the first arld and attaches once it created bucket "work". */
static struct arl *start_first_arld(struct supervisor *sup)
{
	uint64_t deadline = arl_impl_monotonic_ns() + WAIT_CEILING_NS;
	struct arl *arl = NULL;

	test_segment_name(sup->segment, sizeof(sup->segment), "restart");
	shm_unlink(sup->segment);
	snprintf(sup->config, sizeof(sup->config), "/tmp/arl-test-restart-%d.ini", (int)getpid());
	write_config(sup);
	sup->pid = spawn_arld(sup);
	for (;;) {
		struct arl_attach_options o;
		struct timespec pause = {0, 10000000};
		struct arl_bucket b;

		memset(&o, 0, sizeof(o));
		o.name = sup->segment;
		if (arl_attach(&arl, &o) == 0) {
			if (arl_bucket_find(arl, "spare", &b) == 0)
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

static void kill_and_reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* Settles one granted reservation by release with usage, release without
 * usage or cancel, in turn, and counts what it did. */
static void settle(struct arl *arl, const struct arl_reservation *res, uint64_t tokens,
		   uint64_t i, struct worker_counts *c)
{
	struct arl_usage usage = test_usage(tokens / 2);
	int rc;

	switch (i % 3) {
	case 0:
		rc = arl_release(arl, res, &usage);
		__atomic_fetch_add(rc == 0 ? &c->released : &c->errors, 1, __ATOMIC_RELAXED);
		break;
	case 1:
		rc = arl_release(arl, res, NULL);
		if (rc == 0) {
			__atomic_fetch_add(&c->fallback, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&c->fallback_tokens, tokens, __ATOMIC_RELAXED);
		} else {
			__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
		}
		break;
	default:
		rc = arl_cancel(arl, res);
		__atomic_fetch_add(rc == 0 ? &c->canceled : &c->errors, 1, __ATOMIC_RELAXED);
		break;
	}
}

/* Runs rounds of reserve and settle until *stop is set (or, with a limit,
 * for that many rounds). Never returns an unsettled reservation. */
static void work(struct arl *arl, struct arl_bucket b, struct shared *sh, struct worker_counts *c,
		 uint64_t rounds)
{
	struct timespec pause = {0, 200000};
	uint64_t i;

	for (i = 0; rounds == 0 || i < rounds; i++) {
		struct arl_request req = {100 + i % 50, 50, i};
		struct arl_reservation res;

		if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED))
			break;
		if (arl_reserve(arl, b, &req, &res) == 0) {
			__atomic_fetch_add(&c->granted, 1, __ATOMIC_RELAXED);
			settle(arl, &res, req.input_tokens + req.output_tokens, i, c);
		}
		nanosleep(&pause, NULL); /* leave the shared cores to arld */
	}
}

static pid_t spawn_worker(const char *segment, struct shared *sh, int index)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl *arl;

		die_with_parent(parent);
		arl = test_attach(segment);
		struct arl_bucket b;

		if (arl_bucket_find(arl, "work", &b) != 0)
			_exit(2);
		work(arl, b, sh, &sh->worker[index], 0);
		arl_detach(arl);
		_exit(0);
	}
	return pid;
}

/* A worker that works a little, then holds VICTIM_HELD reservations,
 * reports on the pipe and waits to be killed. */
static pid_t spawn_victim(const char *segment, struct shared *sh, int ready[2])
{
	pid_t parent = getpid();
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		struct worker_counts *c = &sh->worker[WORKERS];
		struct arl_bucket b;
		struct arl *arl;
		int i;

		die_with_parent(parent);
		arl = test_attach(segment);
		if (arl_bucket_find(arl, "work", &b) != 0)
			_exit(2);
		work(arl, b, sh, c, 30);
		for (i = 0; i < VICTIM_HELD; i++) {
			struct arl_request req = {VICTIM_TOKENS, 0, 1000 + (uint64_t)i};
			struct arl_reservation res;

			if (arl_reserve(arl, b, &req, &res) != 0)
				_exit(3);
			__atomic_fetch_add(&c->granted, 1, __ATOMIC_RELAXED);
		}
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	return pid;
}

static uint32_t live_buckets(const struct arl *arl)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->bucket_capacity; i++)
		if (arl_load_acquire(&buckets[i].state) == ARL_BUCKET_LIVE)
			n++;
	return n;
}

static uint32_t live_slots(const struct arl *arl)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->reservation_capacity; i++)
		if (arl_impl_res_state(arl_load_acquire(&slots[i].word)) != ARL_RES_FREE)
			n++;
	return n;
}

static ino_t segment_inode(const char *segment)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm%s", segment);
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_ino;
}

/* Waits for one sweep after the count seen now, then for one more, so
 * that a whole sweep ran after this call. */
static void wait_two_sweeps(struct arl *arl)
{
	uint64_t count = arl_sweep_count(arl);

	ck_assert_int_eq(arl_wait_sweep(arl, count, WAIT_CEILING_NS), 0);
	ck_assert_int_eq(arl_wait_sweep(arl, count + 1, WAIT_CEILING_NS), 0);
}

/* No counter of a bucket went back across a restart. */
static void check_counters_kept(const struct arl_bucket_stats *before,
				const struct arl_bucket_stats *after)
{
	ck_assert_uint_ge(after->granted, before->granted);
	ck_assert_uint_ge(after->released, before->released);
	ck_assert_uint_ge(after->fallback_releases, before->fallback_releases);
	ck_assert_uint_ge(after->canceled, before->canceled);
	ck_assert_uint_ge(after->reclaimed_dead, before->reclaimed_dead);
	ck_assert_uint_eq(after->nlimits, before->nlimits);
	ck_assert_uint_eq(after->limits[0].amount, before->limits[0].amount);
	ck_assert_uint_eq(after->max_inflight, before->max_inflight);
}

static struct worker_counts sum_counts(const struct shared *sh)
{
	struct worker_counts sum;
	int i;

	memset(&sum, 0, sizeof(sum));
	for (i = 0; i <= WORKERS; i++) {
		sum.granted += sh->worker[i].granted;
		sum.released += sh->worker[i].released;
		sum.fallback += sh->worker[i].fallback;
		sum.fallback_tokens += sh->worker[i].fallback_tokens;
		sum.canceled += sh->worker[i].canceled;
		sum.errors += sh->worker[i].errors;
	}
	return sum;
}

START_TEST(restarts_under_load_lose_nothing)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct supervisor sup;
	struct arl *arl;
	struct arl_bucket work_bucket, spare_bucket;
	struct arl_bucket_stats s, before;
	struct worker_counts sum;
	pid_t workers[WORKERS], victim;
	int ready[2], round, i, status;
	ino_t inode;
	char byte;

	ck_assert(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	arl = start_first_arld(&sup);
	ck_assert_int_eq(arl_bucket_find(arl, "work", &work_bucket), 0);
	ck_assert_int_eq(arl_bucket_find(arl, "spare", &spare_bucket), 0);
	inode = segment_inode(sup.segment);

	for (i = 0; i < WORKERS; i++)
		workers[i] = spawn_worker(sup.segment, sh, i);
	victim = spawn_victim(sup.segment, sh, ready);
	ck_assert_int_eq(read(ready[0], &byte, 1), 1);

	for (round = 0; round < RESTARTS; round++) {
		uint64_t count;

		/* arld is up: let it sweep once under load, then kill it. */
		wait_two_sweeps(arl);
		kill_and_reap(sup.pid);
		if (round == VICTIM_KILLED_IN_ROUND)
			kill_and_reap(victim); /* no supervisor sees it die */
		before = test_stats(arl, work_bucket);

		/* The restarted arld adopts the segment: its first sweep is the
		 * first one after the kill. */
		count = arl_sweep_count(arl);
		sup.pid = spawn_arld(&sup);
		ck_assert_int_eq(arl_wait_sweep(arl, count, WAIT_CEILING_NS), 0);
		ck_assert_int_eq(__atomic_load_n(&arl->header->supervisor_pid, __ATOMIC_RELAXED),
				 sup.pid);
		ck_assert_uint_eq(segment_inode(sup.segment), inode);
		ck_assert_uint_eq(live_buckets(arl), 2);
		ck_assert_int_eq(arl_bucket_stats(arl, spare_bucket, &s), 0);
		s = test_stats(arl, work_bucket); /* the old handle is still valid */
		check_counters_kept(&before, &s);

		/* Reclaimed once, by the arld that first saw the dead owner, and
		 * never again by the later ones. */
		if (round >= VICTIM_KILLED_IN_ROUND) {
			wait_two_sweeps(arl);
			ck_assert_uint_eq(test_stats(arl, work_bucket).reclaimed_dead, VICTIM_HELD);
		} else {
			ck_assert_uint_eq(s.reclaimed_dead, 0);
		}
	}

	/* Stop the workers between two operations. */
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < WORKERS; i++) {
		ck_assert_int_eq(waitpid(workers[i], &status, 0), workers[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "worker %d ended with status %#x", i, status);
	}
	wait_two_sweeps(arl);

	s = test_stats(arl, work_bucket);
	sum = sum_counts(sh);
	ck_assert_uint_eq(sum.errors, 0);
	for (i = 0; i < WORKERS; i++)
		ck_assert_uint_gt(sh->worker[i].granted, 0); /* each worker did work */
	ck_assert_uint_eq(live_slots(arl), 0);
	ck_assert_uint_eq(s.inflight, 0);
	ck_assert_uint_eq(s.reclaimed_dead, VICTIM_HELD);
	ck_assert_uint_eq(s.reclaimed_idle, 0);
	ck_assert_uint_eq(s.granted, sum.granted);
	ck_assert_uint_eq(s.released, sum.released);
	ck_assert_uint_eq(s.canceled, sum.canceled);
	/* A reclaimed committed reservation also counts as a fallback
	 * release, keeping its estimate. */
	ck_assert_uint_eq(s.fallback_releases, sum.fallback + VICTIM_HELD);
	ck_assert_uint_eq(s.fallback_tokens, sum.fallback_tokens + VICTIM_HELD * VICTIM_TOKENS);
	ck_assert_uint_eq(s.granted, s.released + (s.fallback_releases - s.reclaimed_dead) +
					     s.canceled + s.reclaimed_dead + s.reclaimed_idle +
					     live_slots(arl));

	kill(sup.pid, SIGTERM);
	ck_assert_int_eq(waitpid(sup.pid, &status, 0), sup.pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "arld status %#x", status);
	arl_detach(arl);
	shm_unlink(sup.segment);
	unlink(sup.config);
	munmap(sh, sizeof(*sh));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("restart");
	TCase *tc = tcase_create("arld");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, restarts_under_load_lose_nothing);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
