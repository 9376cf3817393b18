/* SPDX-License-Identifier: MIT */
/*
 * conformance.h - the load and the checks shared by test_multiprocess.c
 * (eight processes) and test_threads.c (eight threads of one process).
 *
 * Eight workers reserve and release on one bucket under the segment's test
 * clock, logging every grant and refund with the clock value the library
 * used. The test drives the clock. Each operation runs under a read lock and
 * each advance under the write lock, so the clock cannot move during an
 * operation and every logged time is exact. The lock is process-shared and
 * lives, with the logs, in an anonymous shared mapping that forked workers
 * inherit.
 *
 * The check is the conformance bound of a token bucket: over every interval
 * [t1, t2], grants minus refunds never exceed burst + rate * (t2 - t1), for
 * the requests limit and the tokens limit alike. In-flight never exceeds its
 * cap, the bucket's counters add up to what the workers logged, and once
 * everything is released and a window has passed, every limit is full again:
 * no refund was lost.
 */
#ifndef ARL_CONFORMANCE_H
#define ARL_CONFORMANCE_H

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include "testutil.h"

#define WORKERS 8
#define RPM 600
#define TPM 12000
#define MAX_INFLIGHT 5
#define BUCKET_NAME "shared"
/* Every reservation charges a chain: the bucket above, then an account
 * bucket with a tighter tokens limit that the chain's refunds also reach. */
#define ACCOUNT_NAME "account"
#define ACCOUNT_TPM 9000

enum op_kind { OP_GRANT, OP_REFUND };

struct op_event {
	uint64_t time_ns;
	uint32_t kind;
	uint32_t limit; /* 0 requests, 1 tokens, 2 the account's tokens */
	uint64_t units;
};

/* What a worker stopped on, when a call returned an unexpected code. */
enum worker_step { STEP_NONE, STEP_ATTACH, STEP_FIND, STEP_RESERVE, STEP_SETTLE };

static const char *const worker_step_names[] = {
	"none", "arl_attach", "arl_bucket_find", "arl_reserve", "release or cancel",
};

struct worker_log {
	uint64_t count;
	uint64_t granted_tokens, refunded_tokens, overage_tokens, fallback_tokens;
	uint64_t cancels;
	uint32_t max_inflight_seen;
	int32_t failed_step; /* enum worker_step */
	int32_t failed_rc;   /* ARL_E* code of the failed call */
	struct op_event events[];
};

struct shared_state {
	pthread_rwlock_t clock_lock;
	uint32_t workers_done;
	uint32_t iterations;
	size_t log_stride; /* bytes per worker log */
};

static struct shared_state *shared;

static struct worker_log *worker_log(int worker)
{
	return (struct worker_log *)((char *)(shared + 1) + (size_t)worker * shared->log_stride);
}

static void log_event(struct worker_log *log, uint64_t t, uint32_t kind, uint32_t limit,
		      uint64_t units)
{
	struct op_event *e = &log->events[log->count++];

	e->time_ns = t;
	e->kind = kind;
	e->limit = limit;
	e->units = units;
}

static int log_failure(struct worker_log *log, enum worker_step step, int rc)
{
	log->failed_step = (int32_t)step;
	log->failed_rc = rc;
	return rc;
}

static uint64_t iterations_from_env(void)
{
	const char *text = getenv("ARL_STRESS_ITERATIONS");
	uint64_t n = text ? strtoull(text, NULL, 10) : 0;

	return n ? n : 300;
}

static void pause_briefly(void)
{
	struct timespec ts = {0, 50000};

	nanosleep(&ts, NULL);
}

/* Reserves under the read lock until granted. Returns 0, or the code of a
 * failure other than ARL_EAGAIN. */
static int reserve_logged(struct arl *arl, const struct arl_bucket *chain, uint64_t tokens,
			  struct arl_reservation *res, struct worker_log *log)
{
	struct arl_request req = {tokens, 0, 0};
	struct arl_bucket b = chain[0];

	for (;;) {
		uint64_t t;
		int rc;

		pthread_rwlock_rdlock(&shared->clock_lock);
		t = arl_now(arl);
		rc = arl_reserve_chain(arl, chain, 2, &req, res);
		if (rc == 0) {
			uint32_t inflight = arl_impl_inflight_count(__atomic_load_n(
				&arl_impl_buckets(arl)[b.index].inflight, __ATOMIC_RELAXED));

			if (inflight > log->max_inflight_seen)
				log->max_inflight_seen = inflight;
			log_event(log, t, OP_GRANT, 0, 1);
			log_event(log, t, OP_GRANT, 1, tokens);
			log_event(log, t, OP_GRANT, 2, tokens);
			log->granted_tokens += tokens;
		}
		pthread_rwlock_unlock(&shared->clock_lock);
		if (rc == 0)
			return 0;
		if (rc != ARL_EAGAIN)
			return log_failure(log, STEP_RESERVE, rc);
		pause_briefly(); /* wait for the test to move the clock */
	}
}

/* Settles a reservation in one of four ways, logging what comes back.
 * Returns 0 or the code of the failed release or cancel. */
static int settle_logged(struct arl *arl, const struct arl_reservation *res, uint64_t tokens,
			 unsigned *rng, struct worker_log *log)
{
	unsigned choice = (unsigned)rand_r(rng) % 10;
	struct arl_usage usage;
	uint64_t t;
	int rc;

	pthread_rwlock_rdlock(&shared->clock_lock);
	t = arl_now(arl);
	if (choice < 6) {
		uint64_t actual = tokens ? (uint64_t)rand_r(rng) % (tokens + 1) : 0;

		usage = test_usage(actual);
		rc = arl_release(arl, res, &usage);
		log_event(log, t, OP_REFUND, 1, tokens - actual);
		log_event(log, t, OP_REFUND, 2, tokens - actual);
		log->refunded_tokens += tokens - actual;
	} else if (choice < 7) {
		uint64_t extra = 1 + (uint64_t)rand_r(rng) % 50;

		usage = test_usage(tokens + extra);
		rc = arl_release(arl, res, &usage);
		log->overage_tokens += extra;
	} else if (choice < 8) {
		rc = arl_release(arl, res, NULL);
		log->fallback_tokens += tokens;
	} else {
		rc = arl_cancel(arl, res);
		log_event(log, t, OP_REFUND, 0, 1);
		log_event(log, t, OP_REFUND, 1, tokens);
		log_event(log, t, OP_REFUND, 2, tokens);
		log->cancels++;
	}
	pthread_rwlock_unlock(&shared->clock_lock);
	if (rc != 0)
		return log_failure(log, STEP_SETTLE, rc);
	return 0;
}

/* Runs one worker's share of the load on a handle. Counts the worker as
 * done whatever happens, so that the clock driver stops. Returns 0 or the
 * code of the first failed call, which the log records. */
static int run_worker(struct arl *arl, int worker)
{
	struct worker_log *log = worker_log(worker);
	unsigned rng = (unsigned)worker * 7919u + 1;
	struct arl_bucket chain[2];
	uint32_t i;
	int rc;

	rc = arl_bucket_find(arl, BUCKET_NAME, &chain[0]);
	if (rc == 0)
		rc = arl_bucket_find(arl, ACCOUNT_NAME, &chain[1]);
	if (rc != 0)
		log_failure(log, STEP_FIND, rc);
	for (i = 0; rc == 0 && i < shared->iterations; i++) {
		struct arl_reservation res;
		uint64_t tokens = (uint64_t)rand_r(&rng) % 600;

		rc = reserve_logged(arl, chain, tokens, &res, log);
		if (rc != 0)
			break;
		if (rand_r(&rng) % 2)
			sched_yield();
		rc = settle_logged(arl, &res, tokens, &rng, log);
	}
	__atomic_fetch_add(&shared->workers_done, 1, __ATOMIC_RELEASE);
	return rc;
}

/* Attaches a handle of the worker's own and runs the worker on it. */
static int run_worker_attached(const char *segment, int worker)
{
	struct arl_attach_options o;
	struct arl *arl = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	o.name = segment;
	rc = arl_attach(&arl, &o);
	if (rc != 0) {
		log_failure(worker_log(worker), STEP_ATTACH, rc);
		__atomic_fetch_add(&shared->workers_done, 1, __ATOMIC_RELEASE);
		return rc;
	}
	rc = run_worker(arl, worker);
	arl_detach(arl);
	return rc;
}

static int compare_events(const void *a, const void *b)
{
	const struct op_event *x = a, *y = b;

	return x->time_ns < y->time_ns ? -1 : x->time_ns > y->time_ns;
}

/*
 * Checks the bound for one limit: with the events sorted by time, the net
 * grant over each pair of distinct times t1 <= t2 (both ends included) must
 * satisfy net * window <= burst * window + amount * (t2 - t1).
 */
static void check_bound(const struct op_event *all, size_t n, uint32_t limit, uint64_t amount,
			uint64_t burst, uint64_t window)
{
	__extension__ typedef __int128 i128;
	struct op_event *ev = malloc(n * sizeof(*ev));
	uint64_t *times = malloc(n * sizeof(*times));
	int64_t *net = calloc(n, sizeof(*net));
	size_t m = 0, k = 0, i, j;

	ck_assert(ev && times && net);
	for (i = 0; i < n; i++)
		if (all[i].limit == limit)
			ev[m++] = all[i];
	qsort(ev, m, sizeof(*ev), compare_events);
	for (i = 0; i < m; i++) {
		if (k == 0 || times[k - 1] != ev[i].time_ns)
			times[k++] = ev[i].time_ns;
		net[k - 1] += ev[i].kind == OP_GRANT ? (int64_t)ev[i].units : -(int64_t)ev[i].units;
	}
	for (i = 0; i < k; i++) {
		i128 sum = 0;

		for (j = i; j < k; j++) {
			i128 allowed = (i128)burst * window + (i128)amount * (times[j] - times[i]);

			sum += net[j];
			ck_assert_msg(sum * (i128)window <= allowed,
				      "limit %u granted %lld net over [%llu, %llu] ns, above the bound",
				      limit, (long long)sum, (unsigned long long)times[i],
				      (unsigned long long)times[j]);
		}
	}
	free(ev);
	free(times);
	free(net);
}

/* Maps the shared state and the worker logs, and creates the clock lock. */
static void init_shared(uint32_t iterations)
{
	size_t stride = sizeof(struct worker_log) + (size_t)iterations * 6 * sizeof(struct op_event);
	size_t size = sizeof(*shared) + WORKERS * stride;
	pthread_rwlockattr_t attr;

	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(shared != MAP_FAILED);
	shared->iterations = iterations;
	shared->log_stride = stride;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	/* Writer preference: the test's clock advances are not starved. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&shared->clock_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
}

static void free_shared(void)
{
	size_t size = sizeof(*shared) + WORKERS * shared->log_stride;

	pthread_rwlock_destroy(&shared->clock_lock);
	munmap(shared, size);
	shared = NULL;
}

/* Advances the clock by varied steps until every worker is done. */
static void drive_clock(struct arl *arl)
{
	unsigned rng = 12345;

	while (__atomic_load_n(&shared->workers_done, __ATOMIC_ACQUIRE) < WORKERS) {
		uint64_t step = 1000000ull + (uint64_t)rand_r(&rng) % 400000000ull;
		struct timespec ts = {0, 200000};

		nanosleep(&ts, NULL);
		pthread_rwlock_wrlock(&shared->clock_lock);
		test_advance(arl, step);
		pthread_rwlock_unlock(&shared->clock_lock);
	}
}

/*
 * Checks everything the workers logged once they are all done: no worker
 * failed, the in-flight cap held, the conformance bound held for both
 * limits, the bucket's counters match the logs, and a window later every
 * limit is full.
 */
static void check_workers(struct arl *arl, struct arl_bucket b)
{
	uint64_t granted = 0, refunded = 0, overage = 0, fallback = 0, cancels = 0;
	size_t total = 0, n = 0;
	struct arl_bucket_stats s;
	struct arl_bucket account;
	struct op_event *all;
	int i;

	for (i = 0; i < WORKERS; i++) {
		struct worker_log *log = worker_log(i);

		ck_assert_msg(log->failed_step == STEP_NONE, "worker %d: %s returned %s", i,
			      worker_step_names[log->failed_step], arl_strerror(log->failed_rc));
		total += log->count;
		granted += log->granted_tokens;
		refunded += log->refunded_tokens;
		overage += log->overage_tokens;
		fallback += log->fallback_tokens;
		cancels += log->cancels;
		ck_assert_uint_le(log->max_inflight_seen, MAX_INFLIGHT);
	}
	all = malloc(total * sizeof(*all));
	ck_assert(all);
	for (i = 0; i < WORKERS; i++) {
		memcpy(all + n, worker_log(i)->events, worker_log(i)->count * sizeof(*all));
		n += worker_log(i)->count;
	}
	check_bound(all, n, 0, RPM, RPM, MINUTE_NS);
	check_bound(all, n, 1, TPM, TPM, MINUTE_NS);
	check_bound(all, n, 2, ACCOUNT_TPM, ACCOUNT_TPM, MINUTE_NS);
	free(all);

	/* The counters agree with what the workers did. */
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.granted, (uint64_t)WORKERS * shared->iterations);
	ck_assert_uint_eq(s.granted_tokens, granted);
	ck_assert_uint_eq(s.refunded_tokens, refunded);
	ck_assert_uint_eq(s.overage_tokens, overage);
	ck_assert_uint_eq(s.fallback_tokens, fallback);
	ck_assert_uint_eq(s.canceled, cancels);
	ck_assert_uint_eq(s.inflight, 0);

	/* The account bucket saw every reservation of the chain. */
	ck_assert_int_eq(arl_bucket_find(arl, ACCOUNT_NAME, &account), 0);
	s = test_stats(arl, account);
	ck_assert_uint_eq(s.granted, (uint64_t)WORKERS * shared->iterations);
	ck_assert_uint_eq(s.refunded_tokens, refunded);
	ck_assert_uint_eq(s.canceled, cancels);
	ck_assert_uint_eq(s.inflight, 0);

	/* A window later every limit is full: no charge was left behind. */
	test_advance(arl, MINUTE_NS + NS_PER_S);
	ck_assert_uint_eq(test_available(arl, b, 0), RPM);
	ck_assert_uint_eq(test_available(arl, b, 1), TPM);
	ck_assert_uint_eq(test_available(arl, account, 0), ACCOUNT_TPM);
}

/* Creates the account bucket every chain ends in. */
static void create_account(struct arl *arl)
{
	struct arl_bucket_config c;
	struct arl_bucket account;

	memset(&c, 0, sizeof(c));
	c.name = ACCOUNT_NAME;
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = ACCOUNT_TPM;
	c.limits[0].window_ns = MINUTE_NS;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &account), 0);
}

#endif /* ARL_CONFORMANCE_H */
