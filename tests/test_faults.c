/* SPDX-License-Identifier: MIT */
/*
 * Processes killed at each named fault point (ARL_FAULT_POINT in arl.h and
 * src/sweep.c). This program and the sweep it links are built with
 * ARL_FAULT_INJECTION, so a child that sets ARL_FAULT=NAME SIGKILLs itself
 * at that point. The test checks that the child really died there, then
 * sweeps the way arld does until nothing is left to repair, and checks:
 *
 * - every reservation slot and process entry is free, and no waiter is
 *   left in a queue;
 * - nothing is in flight on either bucket of the chain;
 * - at the same instant, each limit has at least burst - estimate and at
 *   most its burst available. So a fault never gives back more than was
 *   taken (no over-admission). A reserve of exactly what is available
 *   succeeds, and one more unit fails;
 * - the counters add up: grants and settlements differ by no more than the
 *   reclaims, and nothing is reclaimed twice;
 * - a window later every limit is full again.
 *
 * Creation points are checked apart: a plain client gets ARL_ENOTREADY with
 * a message, never a half-built header, and the next creator replaces the
 * dead creator's object with a working segment.
 */
#include <signal.h>

#include <arl/stream.h>

#include "sweep.h"
#include "testutil.h"

#ifndef ARL_FAULT_INJECTION
#error "test_faults.c needs a build with ARL_FAULT_INJECTION"
#endif

#define RPM 100
#define TPM 10000
#define ACCOUNT_TPM 8000
#define ESTIMATE 300 /* tokens each faulting reservation requests */
#define MAX_INFLIGHT 2
#define MAX_SWEEPS 6

/* What the faulting child does before and at its point. */
enum scenario {
	RESERVE_CHAIN, /* reserve on the chain, then release (never reached) */
	RELEASE_CHAIN, /* reserve on the chain, then release with usage */
	CANCEL_CHAIN,  /* reserve on the chain, then cancel */
	WAIT_QUEUED,   /* wait on the model bucket while its in-flight cap is full */
	SWEEP_DEAD,    /* a killed client left a reservation; the child sweeps */
	SWEEP_PUBLISH, /* the child sweeps and publishes */
	TRACK_STREAM,  /* reserve on the chain, track a whole stream, release */
	REMOVE_BUCKET, /* remove the model bucket */
};

struct fault_case {
	const char *point;
	enum scenario scenario;
};

static const struct fault_case cases[] = {
	{"register_after_lock", RESERVE_CHAIN},
	{"reserve_after_claim", RESERVE_CHAIN},
	{"reserve_after_record", RESERVE_CHAIN},
	{"reserve_after_inflight", RESERVE_CHAIN},
	{"reserve_mid_charge", RESERVE_CHAIN},
	{"reserve_before_commit", RESERVE_CHAIN},
	{"release_after_begin", RELEASE_CHAIN},
	{"release_mid_settle", RELEASE_CHAIN},
	{"release_before_free", RELEASE_CHAIN},
	{"cancel_after_begin", CANCEL_CHAIN},
	{"wait_after_ticket", WAIT_QUEUED},
	{"wait_as_head", WAIT_QUEUED},
	{"sweep_after_claim", SWEEP_DEAD},
	{"sweep_before_free", SWEEP_DEAD},
	{"sweep_before_publish", SWEEP_PUBLISH},
	{"tracker_before_release", TRACK_STREAM},
};

static const char *const creation_points[] = {
	"create_after_open",
	"create_after_allocate",
	"create_before_ready",
};

struct fixture {
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[2];
	uint64_t reclaims_reported;
};

static void setup(struct fixture *f, const char *point)
{
	struct arl_bucket_config c;

	test_segment_name(f->name, sizeof(f->name), point);
	f->arl = test_create(f->name, 16);
	f->chain[0] = test_bucket(f->arl, "model", RPM, TPM, MAX_INFLIGHT, 0);
	memset(&c, 0, sizeof(c));
	c.name = "account";
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = ACCOUNT_TPM;
	c.limits[0].window_ns = MINUTE_NS;
	ck_assert_int_eq(arl_bucket_create(f->arl, &c, &f->chain[1]), 0);
	f->reclaims_reported = 0;
}

static void teardown(struct fixture *f)
{
	arl_detach(f->arl);
	shm_unlink(f->name);
}

/* The body of a faulting child: attaches on its own, then runs the
 * scenario with ARL_FAULT set to the point. Returns only on a mistake. */
static int child_main(const struct fixture *f, const struct fault_case *fc)
{
	struct arl_request req = {ESTIMATE / 3, ESTIMATE - ESTIMATE / 3, 42};
	struct arl_usage usage = test_usage(ESTIMATE / 2);
	struct arl_reservation res;
	struct arl *arl;

	setenv("ARL_FAULT", fc->point, 1);
	arl = test_attach(f->name);
	switch (fc->scenario) {
	case RESERVE_CHAIN:
		if (arl_reserve_chain(arl, f->chain, 2, &req, &res) != 0)
			return 10;
		return arl_release(arl, &res, &usage) == 0 ? 11 : 12;
	case RELEASE_CHAIN:
		if (arl_reserve_chain(arl, f->chain, 2, &req, &res) != 0)
			return 13;
		return arl_release(arl, &res, &usage) == 0 ? 14 : 15;
	case CANCEL_CHAIN:
		if (arl_reserve_chain(arl, f->chain, 2, &req, &res) != 0)
			return 16;
		return arl_cancel(arl, &res) == 0 ? 17 : 18;
	case WAIT_QUEUED:
		/* The parent holds the in-flight cap, so this waits until the
		 * parent moves the clock: the point comes first. */
		return arl_reserve_wait(arl, f->chain[0], &req, arl_now(arl) + MINUTE_NS, &res) ==
				       0
			       ? 19
			       : 20;
	case TRACK_STREAM: {
		static const char body[] =
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,"
			"\"completion_tokens\":50,\"total_tokens\":150}}\n\n"
			"data: [DONE]\n\n";
		struct arl_stream_tracker tracker;

		if (arl_reserve_chain(arl, f->chain, 2, &req, &res) != 0)
			return 24;
		if (arl_stream_tracker_init(&tracker, arl, &res, ARL_STREAM_SSE) != 0)
			return 25;
		arl_stream_tracker_feed(&tracker, body, sizeof(body) - 1);
		return arl_stream_tracker_release(&tracker) == 0 ? 26 : 27;
	}
	case REMOVE_BUCKET:
		return arl_bucket_remove(arl, f->chain[0]) == 0 ? 28 : 29;
	case SWEEP_DEAD:
	case SWEEP_PUBLISH: {
		struct arl_sweep_options options;
		struct arl_sweep_result result;

		memset(&options, 0, sizeof(options));
		if (arl_sweep(arl, &options, &result) != 0)
			return 21;
		arl_sweep_publish(arl);
		return 22;
	}
	}
	return 23;
}

/* Runs the child and checks that it died at its point: SIGKILL, before
 * any of its own exits. */
static void run_faulting_child(const struct fixture *f, const struct fault_case *fc)
{
	int status, i;
	pid_t pid = fork(), done = 0;

	ck_assert(pid >= 0);
	if (pid == 0)
		_exit(child_main(f, fc));
	/* A waiter reaches the queue, then with wait_as_head tries as the
	 * head each time the clock moves. */
	for (i = 0; fc->scenario == WAIT_QUEUED && i < 100 && done == 0; i++) {
		struct timespec pause = {0, 20000000};

		nanosleep(&pause, NULL);
		done = waitpid(pid, &status, WNOHANG);
		if (done == 0)
			test_advance(f->arl, 1);
	}
	if (done == 0) {
		if (fc->scenario == WAIT_QUEUED)
			kill(pid, SIGKILL); /* never reached the point: fails below */
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	}
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !(done == 0 &&
		      fc->scenario == WAIT_QUEUED),
		      "%s: the child never reached the point (status %#x)", fc->point, status);
}

/* A client that reserves on the chain and is killed while it holds the
 * reservation, for the sweeper points. */
static void leave_dead_reservation(const struct fixture *f)
{
	int status;
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl_request req = {ESTIMATE, 0, 7};
		struct arl_reservation res;
		struct arl *arl = test_attach(f->name);

		if (arl_reserve_chain(arl, f->chain, 2, &req, &res) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status), "the holder failed before its kill (%#x)", status);
}

static void count_reclaim(void *context, const struct arl_reclaim_event *event)
{
	struct fixture *f = context;

	(void)event;
	f->reclaims_reported++;
}

static void note_anomaly(void *context, uint32_t slot, const char *what)
{
	(void)context;
	ck_abort_msg("sweep found an anomaly in slot %u: %s", slot, what);
}

/* Sweeps until two sweeps in a row repair nothing. */
static void sweep_until_idle(struct fixture *f, const char *point)
{
	struct arl_sweep_options options;
	int rounds, idle = 0;

	memset(&options, 0, sizeof(options));
	options.on_reclaim = count_reclaim;
	options.on_anomaly = note_anomaly;
	options.context = f;
	for (rounds = 0; idle < 2; rounds++) {
		struct arl_sweep_result r;

		ck_assert_msg(rounds < MAX_SWEEPS, "%s: sweeps still repair after %d rounds", point,
			      rounds);
		ck_assert_int_eq(arl_sweep(f->arl, &options, &r), 0);
		arl_sweep_publish(f->arl);
		if (r.reclaimed_dead + r.reclaimed_idle + r.waiters_skipped + r.processes_cleared +
			    r.inflight_repaired ==
		    0)
			idle++;
		else
			idle = 0;
	}
}

static void check_tables_free(struct fixture *f, const char *point)
{
	uint32_t i;

	for (i = 0; i < f->arl->header->reservation_capacity; i++) {
		uint64_t word = arl_load_acquire(&arl_impl_reservations(f->arl)[i].word);

		ck_assert_msg(arl_impl_res_state(word) == ARL_RES_FREE,
			      "%s: slot %u is in state %u after the sweeps", point, i,
			      arl_impl_res_state(word));
	}
	/* The test's own entry, when it reserved, belongs to a live process. */
	for (i = 0; i < f->arl->header->process_capacity; i++)
		ck_assert_msg(i == f->arl->process_index ||
				      arl_load_acquire(&arl_impl_processes(f->arl)[i].state) ==
					      ARL_PROCESS_FREE,
			      "%s: process entry %u is still live after the sweeps", point, i);
}

/* Each limit has between burst - taken and burst available, and exactly
 * that much can be reserved at this instant. */
static void check_limits_now(struct fixture *f, struct arl_bucket b, const char *point,
			     const char *which)
{
	struct arl_bucket_stats s = test_stats(f->arl, b);
	uint32_t i;

	ck_assert_msg(s.inflight == 0, "%s: %s has %u in flight", point, which, s.inflight);
	ck_assert_msg(s.queued == 0, "%s: %s has %u queued", point, which, s.queued);
	for (i = 0; i < s.nlimits; i++) {
		uint64_t taken = s.limits[i].unit == ARL_UNIT_REQUESTS ? 1 : ESTIMATE;

		ck_assert_msg(s.limits[i].available <= s.limits[i].burst,
			      "%s: %s limit %u has %llu available, above its burst %llu", point,
			      which, i, (unsigned long long)s.limits[i].available,
			      (unsigned long long)s.limits[i].burst);
		ck_assert_msg(s.limits[i].available + taken >= s.limits[i].burst,
			      "%s: %s limit %u has only %llu of %llu available after the sweeps",
			      point, which, i, (unsigned long long)s.limits[i].available,
			      (unsigned long long)s.limits[i].burst);
	}
}

/* Reserves every token the model bucket reports available, then one more. */
static void check_admission_matches(struct fixture *f, const char *point)
{
	struct arl_bucket_stats s = test_stats(f->arl, f->chain[0]);
	struct arl_reservation res, extra;

	ck_assert_msg(test_reserve(f->arl, f->chain[0], s.limits[1].available, &res) == 0,
		      "%s: a reserve of the %llu tokens available failed", point,
		      (unsigned long long)s.limits[1].available);
	ck_assert_msg(test_reserve(f->arl, f->chain[0], 1, &extra) == ARL_EAGAIN,
		      "%s: a token beyond the available ones was granted", point);
	ck_assert_int_eq(arl_cancel(f->arl, &res), 0);
}

/* Grants and settlements differ by no more than the reclaims, and no
 * reservation was reclaimed twice. */
static void check_counters(struct fixture *f, struct arl_bucket b, const char *point,
			   const char *which)
{
	struct arl_bucket_stats s = test_stats(f->arl, b);
	uint64_t settled = s.released + s.fallback_releases + s.canceled;
	uint64_t gap = s.granted > settled ? s.granted - settled : settled - s.granted;

	ck_assert_msg(gap <= s.reclaimed_dead,
		      "%s: %s granted %llu but settled %llu, with %llu reclaims", point, which,
		      (unsigned long long)s.granted, (unsigned long long)settled,
		      (unsigned long long)s.reclaimed_dead);
	ck_assert_msg(s.reclaimed_dead <= 1, "%s: %s counts %llu reclaims of one reservation",
		      point, which, (unsigned long long)s.reclaimed_dead);
}

static void check_full_later(struct fixture *f, struct arl_bucket b, const char *point)
{
	struct arl_bucket_stats s = test_stats(f->arl, b);
	uint32_t i;

	for (i = 0; i < s.nlimits; i++)
		ck_assert_msg(s.limits[i].available == s.limits[i].burst,
			      "%s: limit %u has %llu of %llu a window later", point, i,
			      (unsigned long long)s.limits[i].available,
			      (unsigned long long)s.limits[i].burst);
}

static void run_case(const struct fault_case *fc)
{
	struct arl_reservation held[MAX_INFLIGHT];
	struct fixture f;
	uint64_t sweeps_before;
	int i;

	setup(&f, fc->point);
	if (fc->scenario == WAIT_QUEUED)
		for (i = 0; i < MAX_INFLIGHT; i++)
			ck_assert_int_eq(test_reserve(f.arl, f.chain[0], 1, &held[i]), 0);
	if (fc->scenario == SWEEP_DEAD)
		leave_dead_reservation(&f);
	sweeps_before = arl_sweep_count(f.arl);
	run_faulting_child(&f, fc);
	if (fc->scenario == SWEEP_PUBLISH)
		ck_assert_uint_eq(arl_sweep_count(f.arl), sweeps_before);
	if (fc->scenario == WAIT_QUEUED)
		for (i = 0; i < MAX_INFLIGHT; i++)
			ck_assert_int_eq(arl_cancel(f.arl, &held[i]), 0);

	sweep_until_idle(&f, fc->point);
	ck_assert_uint_gt(arl_sweep_count(f.arl), sweeps_before);
	check_tables_free(&f, fc->point);
	check_limits_now(&f, f.chain[0], fc->point, "model");
	check_limits_now(&f, f.chain[1], fc->point, "account");
	check_counters(&f, f.chain[0], fc->point, "model");
	check_counters(&f, f.chain[1], fc->point, "account");
	check_admission_matches(&f, fc->point);
	test_advance(f.arl, MINUTE_NS + NS_PER_S);
	check_full_later(&f, f.chain[0], fc->point);
	check_full_later(&f, f.chain[1], fc->point);
	printf("faults: %s: killed at the point, swept, %llu reclaims reported, invariants hold\n",
	       fc->point, (unsigned long long)f.reclaims_reported);
	teardown(&f);
}

START_TEST(killed_at_each_point)
{
	run_case(&cases[_i]);
}
END_TEST

START_TEST(creator_killed_at_each_point)
{
	const char *point = creation_points[_i];
	char name[64], error[512] = "";
	struct arl_attach_options o;
	struct arl *arl = NULL;
	int status, rc;
	pid_t pid;

	test_segment_name(name, sizeof(name), point);
	shm_unlink(name);
	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		setenv("ARL_FAULT", point, 1);
		memset(&o, 0, sizeof(o));
		o.name = name;
		o.flags = ARL_ATTACH_CREATE;
		_exit(arl_attach(&arl, &o) == 0 ? 1 : 2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "%s: the creator never reached the point (status %#x)", point, status);

	/* A plain client reports the dead creator and creates nothing. */
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == ARL_ENOTREADY, "%s: a plain attach returned %s (%s)", point,
		      arl_strerror(rc), error);
	ck_assert_msg(strstr(error, name) != NULL, "%s: message names no segment: %s", point,
		      error);

	/* The next creator replaces it with a working segment. */
	o.flags = ARL_ATTACH_CREATE;
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "%s: the next creator failed: %s", point, error);
	ck_assert_uint_eq(arl->header->magic, ARL_MAGIC);
	test_bucket(arl, "after", RPM, TPM, 0, 0);
	arl_detach(arl);
	shm_unlink(name);
	printf("faults: %s: creator killed, plain client refused, segment recreated\n", point);
}
END_TEST

/* A child that waits on the model bucket, whose in-flight cap the parent
 * holds, and exits 0 when the wait ends with ARL_ESTALE. */
static pid_t spawn_stale_waiter(const struct fixture *f)
{
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl *arl = test_attach(f->name);
		struct arl_request req = {1, 0, 0};
		struct arl_reservation res;
		int rc = arl_reserve_wait(arl, f->chain[0], &req, arl_now(arl) + 3600 * NS_PER_S,
					  &res);

		_exit(rc == ARL_ESTALE ? 0 : 1);
	}
	return pid;
}

/*
 * A removal killed after it retired the bucket and before it woke the
 * waiters: the next sweep wakes the waiter, which learns of the removal,
 * the retired slot is recycled once the last slot naming it is free, and
 * the account bucket is untouched.
 */
START_TEST(remover_killed_after_retire)
{
	static const struct fault_case fc = {"remove_after_retire", REMOVE_BUCKET};
	struct arl_reservation held[MAX_INFLIGHT];
	struct arl_bucket_stats s;
	struct fixture f;
	pid_t waiter;
	int i, status;

	setup(&f, fc.point);
	for (i = 0; i < MAX_INFLIGHT; i++)
		ck_assert_int_eq(test_reserve(f.arl, f.chain[0], 1, &held[i]), 0);
	waiter = spawn_stale_waiter(&f);
	for (i = 0; i < 30000 && test_stats(f.arl, f.chain[0]).queued == 0; i++)
		usleep(1000);
	ck_assert_uint_eq(test_stats(f.arl, f.chain[0]).queued, 1);

	run_faulting_child(&f, &fc);
	ck_assert_int_eq(arl_bucket_stats(f.arl, f.chain[0], &s), ARL_ESTALE);
	for (i = 0; i < MAX_INFLIGHT; i++)
		ck_assert_int_eq(arl_release(f.arl, &held[i], NULL), 0);

	/* Nothing woke the waiter: the bucket it sleeps on is retired, so
	 * releases skip it. A sweep wakes the waiters of retired buckets. */
	sweep_until_idle(&f, fc.point);
	ck_assert_int_eq(waitpid(waiter, &status, 0), waiter);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the waiter did not end with ARL_ESTALE (status %#x)", status);
	sweep_until_idle(&f, fc.point);
	check_tables_free(&f, fc.point);
	ck_assert_uint_eq(arl_load_acquire(&arl_impl_buckets(f.arl)[f.chain[0].index].state),
			  ARL_BUCKET_FREE);
	check_limits_now(&f, f.chain[1], fc.point, "account");
	printf("faults: %s: remover killed, waiter told the bucket is gone, slot recycled\n",
	       fc.point);
	teardown(&f);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("faults");
	TCase *tc = tcase_create("faults");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, killed_at_each_point, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_loop_test(tc, creator_killed_at_each_point, 0,
			    (int)(sizeof(creation_points) / sizeof(creation_points[0])));
	tcase_add_test(tc, remover_killed_after_retire);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
