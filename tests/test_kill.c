/* SPDX-License-Identifier: MIT */
/*
 * Clients killed at random moments. Four child processes loop on one bucket
 * with the real clock. Each reserves a random estimate, waiting when a limit
 * or the in-flight cap is exhausted. Then it releases with a random usage no
 * larger than the estimate, releases with unknown usage, or cancels.
 *
 * ARL_KILL_ITERATIONS times (200 by default), the parent sleeps 0 to 2 ms,
 * kills a random child with SIGKILL, sweeps the way arld does, and starts a
 * new child in its place. Then it kills every child and sweeps until a sweep
 * reclaims nothing.
 *
 * A kill can land anywhere: during attach, while waiting, between a slot's
 * claim and its commit, in the middle of a release. After each sweep the
 * in-flight count is within the cap. At the end nothing may be left behind.
 * Every reservation slot and process entry is free and the in-flight count
 * is 0. Once a window (1 s) has passed every limit is full again, and the
 * bucket's counters account for every grant.
 *
 * ARL_KILL_SEED fixes the seed of the random choices: the parent's choice of
 * child and delay, and the children's estimates and outcomes. The timing of
 * each kill stays up to the scheduler. Failure messages print the seed.
 */
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>

#include "sweep.h"
#include "testutil.h"

#define CHILDREN 4
#define WINDOW_NS NS_PER_S
#define REQUESTS_PER_WINDOW 200000
#define TOKENS_PER_WINDOW 50000000
#define MAX_INFLIGHT 3
#define RESERVATIONS 1024
#define MAX_SWEEP_ROUNDS 5

/* Exit codes of a child that stopped on an unexpected result. */
enum child_exit {
	CHILD_ATTACH_FAILED = 20,
	CHILD_FIND_FAILED = 21,
	CHILD_RESERVE_FAILED = 22,
	CHILD_SETTLE_FAILED = 23,
};

static uint64_t unsigned_from_env(const char *variable, uint64_t fallback)
{
	const char *text = getenv(variable);
	char *end;
	uint64_t n;

	if (!text || !*text)
		return fallback;
	n = strtoull(text, &end, 10);
	ck_assert_msg(*end == '\0', "%s=%s is not a number", variable, text);
	return n;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Reserves and settles reservations until killed. */
static void child_main(const char *segment, unsigned seed)
{
	struct arl_attach_options o;
	struct arl *arl = NULL;
	struct arl_bucket b;
	uint64_t request_id = 0;

	/* Die with the test process, even when a failed check ends it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	memset(&o, 0, sizeof(o));
	o.name = segment;
	if (arl_attach(&arl, &o) != 0)
		_exit(CHILD_ATTACH_FAILED);
	if (arl_bucket_find(arl, "killed", &b) != 0)
		_exit(CHILD_FIND_FAILED);
	for (;;) {
		struct arl_request req = {(uint64_t)rand_r(&seed) % 500,
					  (uint64_t)rand_r(&seed) % 500, ++request_id};
		uint64_t estimate = req.input_tokens + req.output_tokens;
		unsigned choice = (unsigned)rand_r(&seed) % 20;
		struct arl_reservation res;
		struct arl_usage usage;
		int rc;

		rc = arl_reserve_wait(arl, b, &req, arl_now(arl) + 20000000ull, &res);
		if (rc == ARL_ETIMEDOUT)
			continue;
		if (rc != 0)
			_exit(CHILD_RESERVE_FAILED);
		/* One request in eight stays in flight for up to 100 us. The
		 * others keep the child on the CPU, where a kill can land
		 * between any two instructions. */
		if (rand_r(&seed) % 8 == 0)
			sleep_ns((uint64_t)rand_r(&seed) % 100000);
		if (choice < 12) {
			memset(&usage, 0, sizeof(usage));
			usage.flags = ARL_USAGE_TOTAL;
			usage.total_tokens = estimate ? (uint64_t)rand_r(&seed) % (estimate + 1) : 0;
			rc = arl_release(arl, &res, &usage);
		} else if (choice < 15) {
			rc = arl_release(arl, &res, NULL);
		} else {
			rc = arl_cancel(arl, &res);
		}
		if (rc != 0)
			_exit(CHILD_SETTLE_FAILED);
	}
}

static pid_t start_child(const char *segment, unsigned seed)
{
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0)
		child_main(segment, seed);
	return pid;
}

/* Kills a child and reaps it. The child must die of the SIGKILL: an exit
 * before it means the child stopped on an error. */
static void kill_child(pid_t pid, unsigned seed)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "child %d ended with status %#x before it was killed (exit codes: "
		      "20 attach, 21 bucket lookup, 22 reserve, 23 release or cancel "
		      "failed); seed %u",
		      (int)pid, status, seed);
}

/* What the sweeps did: reclaims by the state the slot was in, and dead
 * waiters skipped at the head of the wait queue. */
struct reclaim_counts {
	uint64_t by_state[ARL_RES_RECLAIMING + 1];
	uint64_t other;
	uint64_t unrecorded; /* reclaimed slots that named no bucket */
	uint64_t waiters_skipped;
};

static void count_reclaim(void *context, const struct arl_reclaim_event *event)
{
	struct reclaim_counts *counts = context;

	/* A slot claimed but never recorded, or killed inside its free after
	 * its chain was cleared, names no bucket, so no bucket counts it. */
	if (event->bucket[0] == '\0') {
		counts->unrecorded++;
		return;
	}
	if (event->state <= ARL_RES_RECLAIMING)
		counts->by_state[event->state]++;
	else
		counts->other++;
}

static void note_anomaly(void *context, uint32_t slot, const char *what)
{
	(void)context;
	ck_abort_msg("sweep found an anomaly in slot %u: %s", slot, what);
}

static uint32_t sweep_once(struct arl *arl, struct reclaim_counts *counts)
{
	struct arl_sweep_options options;
	struct arl_sweep_result result;

	memset(&options, 0, sizeof(options));
	options.reservation_ttl_ns = 0; /* reclaim only for dead owners */
	options.on_reclaim = count_reclaim;
	options.on_anomaly = note_anomaly;
	options.context = counts;
	ck_assert_int_eq(arl_sweep(arl, &options, &result), 0);
	ck_assert_uint_eq(result.reclaimed_idle, 0);
	counts->waiters_skipped += result.waiters_skipped;
	/* Everything the sweep repaired: reclaims, skipped waiters, freed
	 * process entries, reset in-flight counts. */
	return result.reclaimed_dead + result.waiters_skipped + result.processes_cleared +
	       result.inflight_repaired;
}

static struct arl *create_segment(const char *name)
{
	struct arl_attach_options o;
	char error[512] = "";
	struct arl *arl = NULL;
	int rc;

	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE; /* the real clock */
	o.reservation_capacity = RESERVATIONS;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "create %s: %s: %s", name, arl_strerror(rc), error);
	return arl;
}

static struct arl_bucket create_bucket(struct arl *arl)
{
	struct arl_bucket_config c;
	struct arl_bucket b = {0, 0};

	memset(&c, 0, sizeof(c));
	c.name = "killed";
	c.nlimits = 2;
	c.limits[0].unit = ARL_UNIT_REQUESTS;
	c.limits[0].amount = REQUESTS_PER_WINDOW;
	c.limits[0].window_ns = WINDOW_NS;
	c.limits[1].unit = ARL_UNIT_TOKENS;
	c.limits[1].amount = TOKENS_PER_WINDOW;
	c.limits[1].window_ns = WINDOW_NS;
	c.max_inflight = MAX_INFLIGHT;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);
	return b;
}

/* Every reservation slot and every process entry is free. */
static void check_tables_free(struct arl *arl, unsigned seed)
{
	uint32_t i;

	for (i = 0; i < arl->header->reservation_capacity; i++) {
		uint64_t word = __atomic_load_n(&arl_impl_reservations(arl)[i].word,
						__ATOMIC_ACQUIRE);

		ck_assert_msg(arl_impl_res_state(word) == ARL_RES_FREE,
			      "reservation slot %u is in state %u after the sweeps; seed %u", i,
			      arl_impl_res_state(word), seed);
	}
	for (i = 0; i < arl->header->process_capacity; i++) {
		uint32_t state = __atomic_load_n(&arl_impl_processes(arl)[i].state,
						 __ATOMIC_ACQUIRE);

		ck_assert_msg(state == ARL_PROCESS_FREE,
			      "process entry %u (pid %d) is still live after the sweeps; seed %u", i,
			      (int)arl_impl_processes(arl)[i].pid, seed);
	}
}

/*
 * Checks that the counters account for every grant. A reservation that was
 * granted ends as exactly one of: a release with known usage (released), a
 * release with unknown usage (fallback_releases), a cancel (canceled), or a
 * reclaim. The sweeper counts each reclaim in reclaimed_dead, and a reclaim
 * of a COMMITTED slot also in fallback_releases, since its estimate stays
 * charged. A reclaimed CLAIMED slot was never granted. So, with m COMMITTED
 * and r RELEASING slots reclaimed:
 *
 *   granted - (released + fallback_releases + canceled) = r' - k
 *
 * where r' <= r counts the RELEASING slots whose client died before
 * counting its release or cancel, and k <= m the COMMITTED slots whose
 * client died between the commit and counting the grant.
 */
static void check_counters(const struct arl_bucket_stats *s, const struct reclaim_counts *counts,
			   unsigned seed)
{
	uint64_t claimed = counts->by_state[ARL_RES_CLAIMED];
	uint64_t committed = counts->by_state[ARL_RES_COMMITTED];
	uint64_t releasing = counts->by_state[ARL_RES_RELEASING];
	uint64_t settled = s->released + s->fallback_releases + s->canceled;
	char detail[640];

	snprintf(detail, sizeof(detail),
		 "granted %llu, released %llu, fallback_releases %llu, canceled %llu, "
		 "reclaimed_dead %llu; reclaimed in state CLAIMED %llu, COMMITTED %llu, "
		 "RELEASING %llu, RECLAIMING %llu; in-flight count repaired %llu times; "
		 "dead waiters skipped %llu; seed %u",
		 (unsigned long long)s->granted, (unsigned long long)s->released,
		 (unsigned long long)s->fallback_releases, (unsigned long long)s->canceled,
		 (unsigned long long)s->reclaimed_dead, (unsigned long long)claimed,
		 (unsigned long long)committed, (unsigned long long)releasing,
		 (unsigned long long)counts->by_state[ARL_RES_RECLAIMING],
		 (unsigned long long)s->inflight_repaired,
		 (unsigned long long)counts->waiters_skipped, seed);

	printf("kill_random: %s\n", detail);
	ck_assert_msg(counts->other == 0 && counts->by_state[ARL_RES_FREE] == 0,
		      "the sweeper reported reclaims of slots in no reclaimable state: %s",
		      detail);
	ck_assert_msg(s->reclaimed_dead == claimed + committed + releasing +
						   counts->by_state[ARL_RES_RECLAIMING],
		      "reclaimed_dead differs from the reclaims the sweeps reported: %s", detail);
	ck_assert_msg(s->reclaimed_idle == 0, "reclaimed_idle is %llu with no TTL: %s",
		      (unsigned long long)s->reclaimed_idle, detail);
	ck_assert_msg(s->granted <= settled + releasing,
		      "grants not accounted for: granted exceeds released + fallback_releases + "
		      "canceled by more than the RELEASING reclaims: %s",
		      detail);
	ck_assert_msg(settled <= s->granted + committed,
		      "settlements counted twice: released + fallback_releases + canceled exceeds "
		      "granted by more than the COMMITTED reclaims: %s",
		      detail);
}

START_TEST(random_kills_leave_nothing_behind)
{
	uint64_t iterations = unsigned_from_env("ARL_KILL_ITERATIONS", 200);
	unsigned seed = (unsigned)unsigned_from_env(
		"ARL_KILL_SEED", (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16));
	unsigned rng = seed;
	struct reclaim_counts counts;
	struct arl_bucket_stats s;
	pid_t pids[CHILDREN];
	struct arl_bucket b;
	struct arl *arl;
	uint32_t reclaimed, rounds, idle, over_cap_inflight = 0;
	uint64_t i, over_cap_sweep = 0, over_cap_repairs = 0;
	char name[64];
	int c;

	memset(&counts, 0, sizeof(counts));
	test_segment_name(name, sizeof(name), "kill");
	arl = create_segment(name);
	b = create_bucket(arl);
	for (c = 0; c < CHILDREN; c++)
		pids[c] = start_child(name, (unsigned)rand_r(&rng));

	for (i = 0; i < iterations; i++) {
		int victim = rand_r(&rng) % CHILDREN;

		sleep_ns((uint64_t)rand_r(&rng) % 2000001);
		kill_child(pids[victim], seed);
		sweep_once(arl, &counts);
		/* Every in-flight unit passed the cap when it was taken, and a
		 * sweep only lowers the count, so it never exceeds the cap. A
		 * count decremented below 0 wraps far above it. Checked after
		 * the loop, once the name is unlinked. */
		s = test_stats(arl, b);
		if (s.inflight > MAX_INFLIGHT && over_cap_sweep == 0) {
			over_cap_sweep = i + 1;
			over_cap_inflight = s.inflight;
			over_cap_repairs = s.inflight_repaired;
		}
		pids[victim] = start_child(name, (unsigned)rand_r(&rng));
	}
	for (c = 0; c < CHILDREN; c++)
		kill_child(pids[c], seed);
	/* No process attaches any more, and a failed check below ends this
	 * process without cleanup, so the name goes now. The mapping stays. */
	shm_unlink(name);
	ck_assert_msg(over_cap_sweep == 0,
		      "in-flight count is %u after sweep %llu, above the cap of %u "
		      "(in-flight count repaired %llu times so far); seed %u",
		      over_cap_inflight, (unsigned long long)over_cap_sweep, MAX_INFLIGHT,
		      (unsigned long long)over_cap_repairs, seed);

	/* Every owner is dead: the sweeps reclaim what they held, skip their
	 * queue tickets and free their entries, until two sweeps in a row find
	 * nothing to do (a ticket taken but never written is skipped only after
	 * it stayed so for a whole sweep). */
	for (rounds = 1, idle = 0; idle < 2; rounds++) {
		reclaimed = sweep_once(arl, &counts);
		idle = reclaimed == 0 ? idle + 1 : 0;
		ck_assert_msg(rounds < MAX_SWEEP_ROUNDS,
			      "sweep %u still repaired %u things; seed %u", rounds, reclaimed, seed);
	}

	check_tables_free(arl, seed);
	s = test_stats(arl, b);
	ck_assert_msg(s.inflight == 0,
		      "in-flight count is %u with no reservation left after %u sweeps; seed %u",
		      s.inflight, rounds, seed);

	/* One window after the last charge every limit is full: a charge that no
	 * slot marks (a kill between a take and its mark) only delays refill. */
	sleep_ns(WINDOW_NS + WINDOW_NS / 10);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.limits[0].available, s.limits[0].burst);
	ck_assert_uint_eq(s.limits[1].available, s.limits[1].burst);
	check_counters(&s, &counts, seed);

	arl_detach(arl);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("kill_random");
	TCase *tc = tcase_create("kill");

	/* Generous: sanitizer builds run many times slower. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, random_kills_leave_nothing_behind);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
