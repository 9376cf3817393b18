/* SPDX-License-Identifier: MIT */
/*
 * Eight processes reserve and release on one bucket under the segment's test
 * clock, logging every grant and refund with the clock value the library
 * used. The parent advances the clock; each operation runs under a
 * process-shared read lock and each advance under the write lock, so the
 * clock cannot move during an operation and every logged time is exact.
 *
 * The check is the conformance bound of a token bucket: over every interval
 * [t1, t2], grants minus refunds never exceed burst + rate * (t2 - t1), for
 * the requests limit and the tokens limit alike. In-flight never exceeds its
 * cap, and once everything is released and a window has passed, every limit
 * is full again: no refund was lost.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "testutil.h"

#define CHILDREN 8
#define RPM 600
#define TPM 12000
#define MAX_INFLIGHT 5

enum op_kind { OP_GRANT, OP_REFUND };

struct op_event {
	uint64_t time_ns;
	uint32_t kind;
	uint32_t limit; /* 0 requests, 1 tokens */
	uint64_t units;
};

struct child_log {
	uint64_t count;
	uint64_t granted_tokens, refunded_tokens, overage_tokens, fallback_tokens;
	uint64_t cancels;
	uint32_t max_inflight_seen;
	struct op_event events[];
};

struct shared_state {
	pthread_rwlock_t clock_lock;
	uint32_t children_done;
	uint32_t iterations;
	size_t log_stride; /* bytes per child log */
};

static struct shared_state *shared;

static struct child_log *child_log(int child)
{
	return (struct child_log *)((char *)(shared + 1) + (size_t)child * shared->log_stride);
}

static void log_event(struct child_log *log, uint64_t t, uint32_t kind, uint32_t limit,
		      uint64_t units)
{
	struct op_event *e = &log->events[log->count++];

	e->time_ns = t;
	e->kind = kind;
	e->limit = limit;
	e->units = units;
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

/* Reserves under the read lock until granted; returns the grant time. */
static uint64_t reserve_logged(struct arl *arl, struct arl_bucket b, uint64_t tokens,
			       struct arl_reservation *res, struct child_log *log)
{
	for (;;) {
		uint64_t t;
		int rc;

		pthread_rwlock_rdlock(&shared->clock_lock);
		t = arl_now(arl);
		rc = test_reserve(arl, b, tokens, res);
		if (rc == 0) {
			uint32_t inflight = __atomic_load_n(
				&arl_impl_buckets(arl)[b.index].inflight, __ATOMIC_RELAXED);

			if (inflight > log->max_inflight_seen)
				log->max_inflight_seen = inflight;
			log_event(log, t, OP_GRANT, 0, 1);
			log_event(log, t, OP_GRANT, 1, tokens);
			log->granted_tokens += tokens;
		}
		pthread_rwlock_unlock(&shared->clock_lock);
		if (rc == 0)
			return t;
		if (rc != ARL_EAGAIN)
			_exit(10);
		pause_briefly(); /* wait for the parent to move the clock */
	}
}

/* Settles a reservation in one of four ways, logging what comes back. */
static void settle_logged(struct arl *arl, const struct arl_reservation *res, uint64_t tokens,
			  unsigned *rng, struct child_log *log)
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
		log->cancels++;
	}
	pthread_rwlock_unlock(&shared->clock_lock);
	if (rc != 0)
		_exit(11);
}

static void child_main(const char *segment, int child)
{
	struct arl *arl = test_attach(segment);
	struct child_log *log = child_log(child);
	unsigned rng = (unsigned)child * 7919u + 1;
	struct arl_bucket b;
	uint32_t i;

	if (arl_bucket_find(arl, "shared", &b) != 0)
		_exit(12);
	for (i = 0; i < shared->iterations; i++) {
		struct arl_reservation res;
		uint64_t tokens = (uint64_t)rand_r(&rng) % 600;

		reserve_logged(arl, b, tokens, &res, log);
		if (rand_r(&rng) % 2)
			sched_yield();
		settle_logged(arl, &res, tokens, &rng, log);
	}
	__atomic_fetch_add(&shared->children_done, 1, __ATOMIC_RELEASE);
	arl_detach(arl);
	_exit(0);
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

static void init_shared(uint32_t iterations)
{
	size_t stride = sizeof(struct child_log) + (size_t)iterations * 4 * sizeof(struct op_event);
	size_t size = sizeof(*shared) + CHILDREN * stride;
	pthread_rwlockattr_t attr;

	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(shared != MAP_FAILED);
	shared->iterations = iterations;
	shared->log_stride = stride;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	/* Writer preference: the parent's clock advances are not starved. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&shared->clock_lock, &attr);
}

/* Advances the clock by varied steps until every child is done. */
static void drive_clock(struct arl *arl)
{
	unsigned rng = 12345;

	while (__atomic_load_n(&shared->children_done, __ATOMIC_ACQUIRE) < CHILDREN) {
		uint64_t step = 1000000ull + (uint64_t)rand_r(&rng) % 400000000ull;
		struct timespec ts = {0, 200000};

		nanosleep(&ts, NULL);
		pthread_rwlock_wrlock(&shared->clock_lock);
		test_advance(arl, step);
		pthread_rwlock_unlock(&shared->clock_lock);
	}
}

START_TEST(eight_processes_respect_bound)
{
	uint32_t iterations = (uint32_t)iterations_from_env();
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	struct arl_bucket_stats s;
	uint64_t granted = 0, refunded = 0, overage = 0, fallback = 0, cancels = 0;
	size_t total = 0, n = 0;
	struct op_event *all;
	pid_t pids[CHILDREN];
	int i, status;

	init_shared(iterations);
	test_segment_name(name, sizeof(name), "mp");
	arl = test_create(name, 64);
	b = test_bucket(arl, "shared", RPM, TPM, MAX_INFLIGHT, 0);

	for (i = 0; i < CHILDREN; i++) {
		pids[i] = fork();
		ck_assert(pids[i] >= 0);
		if (pids[i] == 0)
			child_main(name, i);
	}
	drive_clock(arl);
	for (i = 0; i < CHILDREN; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "child %d ended with status %#x", i, status);
	}

	for (i = 0; i < CHILDREN; i++) {
		struct child_log *log = child_log(i);

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
	for (i = 0; i < CHILDREN; i++) {
		memcpy(all + n, child_log(i)->events, child_log(i)->count * sizeof(*all));
		n += child_log(i)->count;
	}
	check_bound(all, n, 0, RPM, RPM, MINUTE_NS);
	check_bound(all, n, 1, TPM, TPM, MINUTE_NS);
	free(all);

	/* The counters agree with what the children did. */
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.granted, (uint64_t)CHILDREN * iterations);
	ck_assert_uint_eq(s.granted_tokens, granted);
	ck_assert_uint_eq(s.refunded_tokens, refunded);
	ck_assert_uint_eq(s.overage_tokens, overage);
	ck_assert_uint_eq(s.fallback_tokens, fallback);
	ck_assert_uint_eq(s.canceled, cancels);
	ck_assert_uint_eq(s.inflight, 0);

	/* A window later every limit is full: no charge was left behind. */
	test_advance(arl, MINUTE_NS + NS_PER_S);
	ck_assert_uint_eq(test_available(arl, b, 0), RPM);
	ck_assert_uint_eq(test_available(arl, b, 1), TPM);

	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("multiprocess");
	TCase *tc = tcase_create("conformance");

	/* Generous: sanitizer builds run many times slower. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, eight_processes_respect_bound);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
