/* SPDX-License-Identifier: MIT */
/*
 * The FIFO wait queue: waiters are admitted in ticket order, a large request
 * at the head is not overtaken by small ones, a try does not overtake the
 * queue, and a waiter that dies (at the head or behind it) does not block
 * the others. Waiters are real processes; the test clock moves only when the
 * test says, and each step waits for the event (a queue position, an
 * admission count) with a generous ceiling.
 */
#include <signal.h>
#include <sys/mman.h>

#include "sweep.h"
#include "testutil.h"

#define CEILING_NS (60ull * NS_PER_S)
#define MAX_WAITERS 64

struct admissions {
	uint32_t count;
	uint32_t order[MAX_WAITERS]; /* order[k]: the waiter admitted k-th */
};

static struct admissions *shared_admissions(void)
{
	struct admissions *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert(a != MAP_FAILED);
	memset(a, 0, sizeof(*a));
	return a;
}

static void pause_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000L};

	nanosleep(&ts, NULL);
}

/* Forks a waiter that requests `tokens` with a far deadline and logs its
 * admission. */
static pid_t spawn_waiter(const char *segment, uint32_t id, uint64_t tokens,
			  struct admissions *log)
{
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl *arl = test_attach(segment);
		struct arl_request req = {tokens, 0, id};
		struct arl_reservation res;
		struct arl_bucket b;

		if (arl_bucket_find(arl, "queue", &b) != 0)
			_exit(2);
		if (arl_reserve_wait(arl, b, &req, UINT64_MAX, &res) != 0)
			_exit(3);
		log->order[__atomic_fetch_add(&log->count, 1, __ATOMIC_SEQ_CST)] = id;
		_exit(0);
	}
	return pid;
}

/* Waits until a condition on the segment or the log holds. */
#define WAIT_FOR(cond, what)                                                                       \
	do {                                                                                       \
		uint64_t deadline_ = arl_impl_monotonic_ns() + CEILING_NS;                         \
		while (!(cond)) {                                                                  \
			ck_assert_msg(arl_impl_monotonic_ns() < deadline_, "timed out: %s", what); \
			pause_ms(1);                                                               \
		}                                                                                  \
	} while (0)

static uint32_t queue_tail(struct arl *arl, struct arl_bucket b)
{
	return __atomic_load_n(&arl_impl_buckets(arl)[b.index].queue_tail, __ATOMIC_ACQUIRE);
}

static uint32_t admitted(const struct admissions *log)
{
	return __atomic_load_n(&log->count, __ATOMIC_SEQ_CST);
}

static void reap(pid_t pid, int expected_status)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == expected_status,
		      "waiter %d ended with status %#x", (int)pid, status);
}

/* A bucket of 6000 tokens per minute (one token per 10 ms), drained. */
static struct arl_bucket drained_bucket(struct arl *arl)
{
	struct arl_bucket b = test_bucket(arl, "queue", 100000, 6000, 0, 0);
	struct arl_reservation drain;

	ck_assert_int_eq(test_reserve(arl, b, 6000, &drain), 0);
	return b;
}

START_TEST(waiters_admitted_in_fifo_order)
{
	struct admissions *log = shared_admissions();
	pid_t pids[50];
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	uint32_t i;

	test_segment_name(name, sizeof(name), "fifo");
	arl = test_create(name, 128);
	b = drained_bucket(arl);

	/* Waiter 0 wants 500 tokens, the others 10: each enters the queue
	 * before the next is started, so tickets follow the ids. */
	for (i = 0; i < 50; i++) {
		pids[i] = spawn_waiter(name, i, i == 0 ? 500 : 10, log);
		WAIT_FOR(queue_tail(arl, b) == i + 1, "waiter to take its ticket");
	}

	/* 490 tokens of refill would admit 49 small waiters, but the large
	 * one is first: no waiter may pass it. */
	test_advance(arl, 4900 * 1000000ull);
	ck_assert_uint_eq(admitted(log), 0);
	test_advance(arl, 100 * 1000000ull);
	WAIT_FOR(admitted(log) == 1, "the large waiter's admission");

	/* Then one refill of 10 tokens per waiter, each admitted in turn. */
	for (i = 1; i < 50; i++) {
		test_advance(arl, 100 * 1000000ull);
		WAIT_FOR(admitted(log) == i + 1, "the next waiter's admission");
	}
	for (i = 0; i < 50; i++) {
		ck_assert_msg(log->order[i] == i, "admission %u went to waiter %u", i,
			      log->order[i]);
		reap(pids[i], 0);
	}
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(try_does_not_overtake_queue)
{
	struct admissions *log = shared_admissions();
	struct arl_reservation res;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	pid_t waiter;

	test_segment_name(name, sizeof(name), "try-queue");
	arl = test_create(name, 16);
	b = drained_bucket(arl);
	waiter = spawn_waiter(name, 0, 500, log);
	WAIT_FOR(queue_tail(arl, b) == 1, "the waiter's ticket");

	/* 100 tokens have refilled: enough for a try of 10, but the waiter
	 * came first. */
	test_advance(arl, NS_PER_S);
	ck_assert_int_eq(test_reserve(arl, b, 10, &res), ARL_EAGAIN);
	ck_assert_uint_eq(res.retry_at_ns, 0);

	test_advance(arl, 4 * NS_PER_S);
	WAIT_FOR(admitted(log) == 1, "the waiter's admission");
	reap(waiter, 0);
	ck_assert_int_eq(test_reserve(arl, b, 0, &res), 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(dead_head_skipped_by_sweep)
{
	struct admissions *log = shared_admissions();
	struct arl_sweep_options opts = {0, NULL, NULL, NULL};
	struct arl_sweep_result result;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	pid_t head, next;
	int status;

	test_segment_name(name, sizeof(name), "dead-head");
	arl = test_create(name, 16);
	b = drained_bucket(arl);
	head = spawn_waiter(name, 0, 5000, log);
	WAIT_FOR(queue_tail(arl, b) == 1, "the head's ticket");
	next = spawn_waiter(name, 1, 10, log);
	WAIT_FOR(queue_tail(arl, b) == 2, "the second ticket");

	kill(head, SIGKILL);
	ck_assert_int_eq(waitpid(head, &status, 0), head);
	ck_assert_int_eq(arl_sweep(arl, &opts, &result), 0);
	ck_assert_uint_eq(result.waiters_skipped, 1);

	test_advance(arl, 100 * 1000000ull);
	WAIT_FOR(admitted(log) == 1, "the second waiter's admission");
	ck_assert_uint_eq(log->order[0], 1);
	reap(next, 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(dead_waiter_behind_head_skipped)
{
	struct admissions *log = shared_admissions();
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	pid_t first, dead, last;
	int status;

	test_segment_name(name, sizeof(name), "dead-middle");
	arl = test_create(name, 16);
	b = drained_bucket(arl);
	first = spawn_waiter(name, 0, 10, log);
	WAIT_FOR(queue_tail(arl, b) == 1, "the first ticket");
	dead = spawn_waiter(name, 1, 10, log);
	WAIT_FOR(queue_tail(arl, b) == 2, "the second ticket");
	last = spawn_waiter(name, 2, 10, log);
	WAIT_FOR(queue_tail(arl, b) == 3, "the third ticket");
	kill(dead, SIGKILL);
	ck_assert_int_eq(waitpid(dead, &status, 0), dead);

	/* The first waiter, once admitted, skips the dead one's ticket. */
	test_advance(arl, 100 * 1000000ull);
	WAIT_FOR(admitted(log) == 1, "the first admission");
	test_advance(arl, 100 * 1000000ull);
	WAIT_FOR(admitted(log) == 2, "the third waiter's admission");
	ck_assert_uint_eq(log->order[0], 0);
	ck_assert_uint_eq(log->order[1], 2);
	reap(first, 0);
	reap(last, 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(timed_out_waiter_leaves_queue)
{
	struct arl_request req = {10, 0, 0};
	struct arl_reservation res;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	pid_t later;

	test_segment_name(name, sizeof(name), "timeout");
	arl = test_create(name, 16);
	b = drained_bucket(arl);

	/* The child waits at the head with a deadline 50 ms ahead; the clock
	 * passes it, and the child must leave the queue empty behind it. */
	later = fork();
	ck_assert(later >= 0);
	if (later == 0) {
		struct arl *own = test_attach(name);

		_exit(arl_reserve_wait(own, b, &req, arl_now(own) + 50000000ull, &res) ==
				      ARL_ETIMEDOUT
			      ? 0
			      : 1);
	}
	WAIT_FOR(queue_tail(arl, b) == 1, "the child's ticket");
	test_advance(arl, 60000000ull);
	reap(later, 0);
	ck_assert_uint_eq(__atomic_load_n(&arl_impl_buckets(arl)[b.index].queue_head,
					  __ATOMIC_ACQUIRE),
			  1);
	/* The queue is empty again, so a try is not refused for it. */
	test_advance(arl, NS_PER_S);
	ck_assert_int_eq(arl_reserve(arl, b, &req, &res), 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("waiting");
	TCase *tc = tcase_create("queue");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, waiters_admitted_in_fifo_order);
	tcase_add_test(tc, try_does_not_overtake_queue);
	tcase_add_test(tc, dead_head_skipped_by_sweep);
	tcase_add_test(tc, dead_waiter_behind_head_skipped);
	tcase_add_test(tc, timed_out_waiter_leaves_queue);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
