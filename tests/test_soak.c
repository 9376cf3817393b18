/* SPDX-License-Identifier: MIT */
/*
 * A compressed soak: worker processes run every kind of operation on the
 * real clock against a real arld, while the test SIGKILLs random workers and,
 * every so often, arld itself (and restarts each).
 *
 * Each worker loops on one random operation at a time. It reserves, or
 * waits with a 5 ms deadline, on the model bucket alone or on the chain of
 * model and account. Then it touches, and releases with known usage no
 * larger than the estimate, with unknown usage or with partial usage, or
 * cancels. Every call counts as one operation. ARL_SOAK_OPERATIONS sets the
 * total: 200,000 by default, and tens of millions make a long soak.
 *
 * Checks:
 * - the token-bucket conformance bound on the model's requests and tokens
 *   and the account's tokens, over every interval of 10 ms bins: net grants
 *   never exceed burst + rate * length, with a slack for the bins' width and
 *   for the operations whose logged time differs from the library's;
 * - no worker stopped on an unexpected error code;
 * - once every worker is dead and arld swept, every reservation slot and
 *   process entry is free, nothing is in flight, and a window later every
 *   limit is full: no token was lost or left charged;
 * - the counters add up: each grant ended as a release, a fallback, a cancel
 *   or a reclaim, within the number of reclaims, and there are no more
 *   reclaims than kills.
 *
 * Grants are logged after the call returns and refunds before the call, so
 * a kill between the two only drops a grant or adds a refund that never
 * happened, which makes the bound check more lenient, never stricter.
 */
#include <sys/mman.h>

#include "test_env.h"

#define WORKERS 6
#define WINDOW_NS NS_PER_S
#define MODEL_REQUESTS 5000
#define MODEL_TOKENS 1000000
#define ACCOUNT_TOKENS 600000
#define MAX_INFLIGHT 4
#define MAX_ESTIMATE 1000
#define BIN_NS 10000000ull
#define ARLD_KILL_EVERY 20 /* one kill in this many hits arld */

enum soak_limit { LIMIT_REQUESTS, LIMIT_TOKENS, LIMIT_ACCOUNT, LIMIT_COUNT };

/* Exit codes of a worker that stopped on an unexpected result. */
enum worker_exit {
	WORKER_ATTACH = 20,
	WORKER_FIND = 21,
	WORKER_RESERVE = 22,
	WORKER_SETTLE = 23,
	WORKER_TOUCH = 24,
};

struct soak_shared {
	uint64_t start_ns;
	uint64_t operations; /* every call of every worker */
	uint64_t budget;
	uint64_t bins;
	uint64_t late_events; /* events past the last bin, counted there */
	int64_t net[];	      /* bins * LIMIT_COUNT: grants minus refunds */
};

static struct soak_shared *shared;
static size_t shared_size;

static uint64_t unsigned_from_env(const char *variable, uint64_t fallback)
{
	const char *text = getenv(variable);
	char *end;
	uint64_t n;

	if (!text || !*text)
		return fallback;
	n = strtoull(text, &end, 10);
	ck_assert_msg(*end == '\0' && n > 0, "%s=%s is not a positive number", variable, text);
	return n;
}

/* Adds units (negative for a refund) to a limit's bin for the time now. */
static void log_units(enum soak_limit limit, int64_t units)
{
	uint64_t bin = (arl_impl_monotonic_ns() - shared->start_ns) / BIN_NS;

	if (bin >= shared->bins) {
		bin = shared->bins - 1;
		__atomic_add_fetch(&shared->late_events, 1, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(&shared->net[bin * LIMIT_COUNT + limit], units, __ATOMIC_RELAXED);
}

static void count_operation(void)
{
	__atomic_add_fetch(&shared->operations, 1, __ATOMIC_RELAXED);
}

static bool budget_spent(void)
{
	return __atomic_load_n(&shared->operations, __ATOMIC_RELAXED) >= shared->budget;
}

/* Logs a grant, after it happened. */
static void log_grant(uint64_t estimate, bool chain)
{
	log_units(LIMIT_REQUESTS, 1);
	log_units(LIMIT_TOKENS, (int64_t)estimate);
	if (chain)
		log_units(LIMIT_ACCOUNT, (int64_t)estimate);
}

/* Logs a refund, before it happens. */
static void log_refund(uint64_t requests, uint64_t tokens, bool chain)
{
	log_units(LIMIT_REQUESTS, -(int64_t)requests);
	log_units(LIMIT_TOKENS, -(int64_t)tokens);
	if (chain)
		log_units(LIMIT_ACCOUNT, -(int64_t)tokens);
}

/* Reserves one way or another. Returns 0 with a reservation, 1 when no room
 * was found, and exits on anything else. */
static int reserve_some(struct arl *arl, const struct arl_bucket *chain, unsigned *rng,
			uint64_t estimate, bool *chained, struct arl_reservation *res)
{
	struct arl_request req = {estimate / 3, estimate - estimate / 3, 0};
	unsigned how = (unsigned)rand_r(rng) % 4;
	uint64_t deadline = arl_now(arl) + 5000000ull;
	int rc;

	/* Tries fail while others wait in the queue, so half the reserves
	 * wait: most grants come from the waits. */
	req.request_id = (uint64_t)rand_r(rng);
	*chained = how == 1 || how == 3;
	if (how == 0)
		rc = arl_reserve(arl, chain[0], &req, res);
	else if (how == 1)
		rc = arl_reserve_chain(arl, chain, 2, &req, res);
	else if (how == 2)
		rc = arl_reserve_wait(arl, chain[0], &req, deadline, res);
	else
		rc = arl_reserve_chain_wait(arl, chain, 2, &req, deadline, res);
	count_operation();
	if (rc == 0) {
		log_grant(estimate, *chained);
		return 0;
	}
	if (rc == ARL_EAGAIN || rc == ARL_ETIMEDOUT)
		return 1;
	_exit(WORKER_RESERVE);
}

/* Settles a reservation one of four ways. */
static void settle(struct arl *arl, const struct arl_reservation *res, unsigned *rng,
		   uint64_t estimate, bool chained)
{
	unsigned choice = (unsigned)rand_r(rng) % 10;
	struct arl_usage usage;
	int rc;

	memset(&usage, 0, sizeof(usage));
	if (choice < 5) {
		uint64_t actual = (uint64_t)rand_r(rng) % (estimate + 1);

		usage.flags = ARL_USAGE_TOTAL;
		usage.total_tokens = actual;
		log_refund(0, estimate - actual, chained);
		rc = arl_release(arl, res, &usage);
	} else if (choice < 7) {
		rc = arl_release(arl, res, NULL);
	} else if (choice < 8) {
		/* A partial count below the estimate keeps the estimate. */
		usage.flags = ARL_USAGE_PARTIAL;
		usage.partial_tokens = (uint64_t)rand_r(rng) % (estimate + 1);
		rc = arl_release(arl, res, &usage);
	} else {
		log_refund(1, estimate, chained);
		rc = arl_cancel(arl, res);
	}
	count_operation();
	if (rc != 0)
		_exit(WORKER_SETTLE);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S)};

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void worker_main(const char *segment, unsigned seed)
{
	struct arl_bucket chain[2];
	char error[512];
	struct arl *arl;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (env_attach(segment, 0, &arl, error, sizeof(error)) != 0)
		_exit(WORKER_ATTACH);
	if (arl_bucket_find(arl, "model", &chain[0]) != 0 ||
	    arl_bucket_find(arl, "account", &chain[1]) != 0)
		_exit(WORKER_FIND);
	while (!budget_spent()) {
		uint64_t estimate = (uint64_t)rand_r(&seed) % (MAX_ESTIMATE + 1);
		struct arl_reservation res;
		bool chained;
		int touches;

		if (reserve_some(arl, chain, &seed, estimate, &chained, &res) != 0)
			continue;
		for (touches = rand_r(&seed) % 3; touches > 0; touches--) {
			if (arl_touch(arl, &res, 1) != 0)
				_exit(WORKER_TOUCH);
			count_operation();
		}
		if (rand_r(&seed) % 16 == 0)
			sleep_ns((uint64_t)rand_r(&seed) % 200000);
		settle(arl, &res, &seed, estimate, chained);
	}
	arl_detach(arl);
	_exit(0);
}

static pid_t start_worker(const char *segment, unsigned seed)
{
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork failed: %s", strerror(errno));
	if (pid == 0)
		worker_main(segment, seed);
	return pid;
}

/* Reaps a worker: killed, or done with its share. Returns true when it
 * was still running at the kill. */
static bool reap_worker(pid_t pid, unsigned seed)
{
	int status = env_wait(pid);

	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return true;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "worker %d ended with status %#x (exit codes: 20 attach, 21 bucket lookup, "
		      "22 reserve, 23 release or cancel, 24 touch failed); seed %u",
		      (int)pid, status, seed);
	return false;
}

static void write_config(const char *path, const char *segment)
{
	FILE *f = fopen(path, "w");

	ck_assert(f != NULL);
	fprintf(f,
		"[arld]\nsegment = %s\nsweep_interval = 50ms\nreservation_ttl = 300s\n"
		"reservations = 256\nprocesses = 256\n"
		"[bucket:model]\nrequests_per_second = %d\ntokens_per_second = %d\n"
		"max_inflight = %d\n"
		"[bucket:account]\ntokens_per_second = %d\n",
		segment, MODEL_REQUESTS, MODEL_TOKENS, MAX_INFLIGHT, ACCOUNT_TOKENS);
	fclose(f);
}

/*
 * Checks the bound on one limit over every interval of whole bins: with
 * S(k) the net grant in bins before k and t(k) = k * BIN_NS, for all i < j,
 * S(j) - S(i) <= burst + rate * (t(j) - t(i)) + slack. That is, S(j) -
 * rate * t(j) never exceeds the minimum of S(i) - rate * t(i) so far by more
 * than burst + slack.
 */
static void check_bound(enum soak_limit limit, const char *what, int64_t amount, uint64_t bins,
			unsigned seed)
{
	/* Two bins of refill for the bins' edges, and one largest request
	 * per worker at each end for operations logged in a neighbouring bin. */
	int64_t unit = limit == LIMIT_REQUESTS ? 1 : MAX_ESTIMATE;
	int64_t slack = amount * 2 * (int64_t)BIN_NS / (int64_t)WINDOW_NS + 2 * WORKERS * unit;
	__extension__ typedef __int128 i128;
	i128 sum = 0, lowest = 0;
	uint64_t k, lowest_bin = 0;

	for (k = 0; k < bins; k++) {
		i128 here;

		sum += shared->net[k * LIMIT_COUNT + limit];
		/* Scaled by the window: sum * window - amount * t. */
		here = sum * (i128)WINDOW_NS - (i128)amount * (i128)((k + 1) * BIN_NS);
		ck_assert_msg(here - lowest <= (i128)(amount + slack) * (i128)WINDOW_NS,
			      "%s: net grants over bins %llu to %llu exceed the bound (burst %lld, "
			      "rate %lld per s, slack %lld); seed %u",
			      what, (unsigned long long)lowest_bin, (unsigned long long)k,
			      (long long)amount, (long long)amount, (long long)slack, seed);
		if (here < lowest) {
			lowest = here;
			lowest_bin = k + 1;
		}
	}
}

static uint32_t live_slots(struct arl *arl)
{
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->reservation_capacity; i++)
		if (arl_impl_res_state(arl_load_acquire(&arl_impl_reservations(arl)[i].word)) !=
		    ARL_RES_FREE)
			n++;
	for (i = 0; i < arl->header->process_capacity; i++)
		if (arl_load_acquire(&arl_impl_processes(arl)[i].state) != ARL_PROCESS_FREE)
			n++;
	return n;
}

struct soak_run {
	char segment[64], config[128], log[128];
	pid_t arld;
	uint64_t worker_kills, arld_kills;
	unsigned seed;
};

static void kill_arld(struct soak_run *run)
{
	int status;

	ck_assert_int_eq(kill(run->arld, SIGKILL), 0);
	status = env_wait(run->arld);
	ck_assert_msg(WIFSIGNALED(status),
		      "arld ended with status %#x before it was killed; its log is %s; seed %u",
		      status, run->log, run->seed);
	run->arld_kills++;
	run->arld = env_start_arld(run->config, run->log, false);
}

/* Runs the workers until the budget is spent, killing one every 0-10 ms. */
static void run_load(struct soak_run *run)
{
	unsigned rng = run->seed;
	pid_t pids[WORKERS];
	unsigned seeds[WORKERS];
	int w;

	for (w = 0; w < WORKERS; w++) {
		seeds[w] = (unsigned)rand_r(&rng);
		pids[w] = start_worker(run->segment, seeds[w]);
	}
	while (!budget_spent()) {
		sleep_ns((uint64_t)(rand_r(&rng) % 10000) * 1000);
		if (rand_r(&rng) % ARLD_KILL_EVERY == 0) {
			kill_arld(run);
			continue;
		}
		w = rand_r(&rng) % WORKERS;
		kill(pids[w], SIGKILL);
		if (reap_worker(pids[w], run->seed))
			run->worker_kills++;
		seeds[w] = (unsigned)rand_r(&rng);
		pids[w] = start_worker(run->segment, seeds[w]);
	}
	for (w = 0; w < WORKERS; w++) {
		kill(pids[w], SIGKILL);
		if (reap_worker(pids[w], run->seed))
			run->worker_kills++;
	}
}

/* Waits until arld reclaimed everything the dead workers left. */
static void wait_for_cleanup(struct soak_run *run, struct arl *arl)
{
	uint64_t deadline = arl_impl_monotonic_ns() + 60 * NS_PER_S;

	while (live_slots(arl) != 0) {
		ck_assert_msg(arl_impl_monotonic_ns() < deadline,
			      "%u slots or process entries still live a minute after the last "
			      "kill; seed %u",
			      live_slots(arl), run->seed);
		ck_assert_int_eq(arl_wait_sweep(arl, arl_sweep_count(arl), 30 * NS_PER_S), 0);
	}
	/* One more sweep repairs an in-flight count a killed client left. */
	ck_assert_int_eq(arl_wait_sweep(arl, arl_sweep_count(arl) + 1, 30 * NS_PER_S), 0);
}

/* Each grant ended as exactly one release, fallback, cancel or reclaim: the
 * difference between grants and settlements is within the reclaims (see
 * check_counters() in test_kill.c for the states behind it). */
static void check_counters(struct soak_run *run, const struct arl_bucket_stats *s,
			   const char *what)
{
	uint64_t settled = s->released + s->fallback_releases + s->canceled;
	uint64_t gap = s->granted > settled ? s->granted - settled : settled - s->granted;
	uint32_t i;

	printf("soak: %s: granted %llu, released %llu, fallback %llu, canceled %llu, "
	       "reclaimed %llu, in-flight repairs %llu\n",
	       what, (unsigned long long)s->granted, (unsigned long long)s->released,
	       (unsigned long long)s->fallback_releases, (unsigned long long)s->canceled,
	       (unsigned long long)s->reclaimed_dead, (unsigned long long)s->inflight_repaired);
	ck_assert_msg(gap <= s->reclaimed_dead,
		      "%s: granted %llu and settled %llu differ by more than the %llu reclaims; "
		      "seed %u",
		      what, (unsigned long long)s->granted, (unsigned long long)settled,
		      (unsigned long long)s->reclaimed_dead, run->seed);
	ck_assert_msg(s->reclaimed_dead <= run->worker_kills + run->arld_kills,
		      "%s: %llu reclaims after %llu worker and %llu arld kills; seed %u", what,
		      (unsigned long long)s->reclaimed_dead, (unsigned long long)run->worker_kills,
		      (unsigned long long)run->arld_kills, run->seed);
	ck_assert_uint_eq(s->reclaimed_idle, 0);
	ck_assert_uint_eq(s->inflight, 0);
	for (i = 0; i < s->nlimits; i++)
		ck_assert_msg(s->limits[i].available == s->limits[i].burst,
			      "%s: limit %u has %llu of %llu available a window after the end; "
			      "seed %u",
			      what, i, (unsigned long long)s->limits[i].available,
			      (unsigned long long)s->limits[i].burst, run->seed);
}

START_TEST(soak_with_kills_accounts_for_every_token)
{
	uint64_t budget = unsigned_from_env("ARL_SOAK_OPERATIONS", 200000);
	struct arl_bucket model, account;
	struct arl_bucket_stats s;
	struct soak_run run;
	uint64_t bins, seconds;
	struct arl *arl;

	memset(&run, 0, sizeof(run));
	run.seed = (unsigned)unsigned_from_env("ARL_SOAK_SEED",
					       (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16));
	/* Room for at least 10 minutes, or 500 operations a second. */
	seconds = budget / 500 > 600 ? budget / 500 : 600;
	bins = seconds * NS_PER_S / BIN_NS;
	shared_size = sizeof(*shared) + bins * LIMIT_COUNT * sizeof(int64_t);
	shared = mmap(NULL, shared_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	ck_assert(shared != MAP_FAILED);
	shared->budget = budget;
	shared->bins = bins;

	test_segment_name(run.segment, sizeof(run.segment), "soak");
	env_temp_path(run.config, sizeof(run.config), "soak", "ini");
	env_temp_path(run.log, sizeof(run.log), "soak", "log");
	shm_unlink(run.segment);
	unlink(run.log);
	write_config(run.config, run.segment);
	run.arld = env_start_arld(run.config, run.log, false);
	arl = env_attach_when_ready(run.segment, "model");
	ck_assert_int_eq(arl_bucket_find(arl, "model", &model), 0);
	ck_assert_int_eq(arl_bucket_find(arl, "account", &account), 0);

	/* The buckets start full at creation: the bins start then, so the
	 * first interval's grants are within the burst. */
	shared->start_ns = arl_impl_monotonic_ns();
	run_load(&run);
	wait_for_cleanup(&run, arl);
	sleep_ns(WINDOW_NS + WINDOW_NS / 10);

	printf("soak: %llu operations, %llu worker kills, %llu arld kills, %llu events after "
	       "the last bin; seed %u\n",
	       (unsigned long long)shared->operations, (unsigned long long)run.worker_kills,
	       (unsigned long long)run.arld_kills, (unsigned long long)shared->late_events,
	       run.seed);
	s = test_stats(arl, model);
	check_counters(&run, &s, "model");
	s = test_stats(arl, account);
	check_counters(&run, &s, "account");
	check_bound(LIMIT_REQUESTS, "model requests", MODEL_REQUESTS, bins, run.seed);
	check_bound(LIMIT_TOKENS, "model tokens", MODEL_TOKENS, bins, run.seed);
	check_bound(LIMIT_ACCOUNT, "account tokens", ACCOUNT_TOKENS, bins, run.seed);
	ck_assert_msg(env_count_lines(run.log, "left untouched") == 0, "arld reported anomalies:\n%s",
		      env_read(run.log));

	arl_detach(arl);
	env_stop_arld(run.arld, run.log);
	shm_unlink(run.segment);
	unlink(run.config);
	unlink(run.log);
	munmap(shared, shared_size);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("soak");
	TCase *tc = tcase_create("soak");

	/* ARL_SOAK_OPERATIONS sets the length; a long run raises this limit
	 * with Check's CK_TIMEOUT_MULTIPLIER. */
	tcase_set_timeout(tc, 1800);
	tcase_add_test(tc, soak_with_kills_accounts_for_every_token);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
