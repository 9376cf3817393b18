/* SPDX-License-Identifier: MIT */
/*
 * Bucket removal and slot reuse, draining, and an operator's release of a
 * stuck reservation. The load test removes and recreates buckets while
 * workers (processes, then threads for ThreadSanitizer) reserve on them by
 * handle, and checks that every grant landed on the bucket its handle
 * named: a removed bucket's slot is reused only after the last operation
 * on it has left.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include "sweep.h"
#include "testutil.h"

static char seg[64];

static void setup(void)
{
	test_segment_name(seg, sizeof(seg), "remove");
}

static void teardown(void)
{
	shm_unlink(seg);
}

/* A segment with a real clock and a small bucket table, so that recreated
 * buckets reuse the slots of removed ones. */
static struct arl *create_small(uint32_t buckets)
{
	struct arl_attach_options o;
	char error[512] = "";
	struct arl *arl = NULL;
	int rc;

	shm_unlink(seg);
	memset(&o, 0, sizeof(o));
	o.name = seg;
	o.flags = ARL_ATTACH_CREATE;
	o.bucket_capacity = buckets;
	o.reservation_capacity = 256;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&arl, &o);
	ck_assert_msg(rc == 0, "create %s: %s: %s", seg, arl_strerror(rc), error);
	return arl;
}

START_TEST(removed_handles_are_stale_and_live_reservations_release)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "gone", 600, 100000, 4, 0);
	struct arl_bucket again, found;
	struct arl_reservation held, res;
	struct arl_bucket_stats s;
	struct arl_usage u = test_usage(10);

	ck_assert_int_eq(test_reserve(arl, b, 100, &held), 0);
	ck_assert_int_eq(arl_bucket_remove(arl, b), 0);
	ck_assert_int_eq(arl_bucket_remove(arl, b), ARL_ESTALE);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_ESTALE);
	ck_assert_int_eq(arl_bucket_stats(arl, b, &s), ARL_ESTALE);
	ck_assert_int_eq(arl_bucket_find(arl, "gone", &found), ARL_ENOENT);

	/* A reservation made before the removal still releases. */
	ck_assert_int_eq(arl_release(arl, &held, &u), 0);

	/* The name can be created again; the old handle stays stale. */
	again = test_bucket(arl, "gone", 600, 100000, 4, 0);
	ck_assert(again.gen != b.gen);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_ESTALE);
	ck_assert_int_eq(test_reserve(arl, again, 1, &res), 0);
	arl_detach(arl);
}
END_TEST

START_TEST(a_named_slot_is_not_reused)
{
	struct arl *arl = create_small(1);
	struct arl_bucket a = test_bucket(arl, "a", 600, 100000, 0, 0);
	struct arl_bucket_config c;
	struct arl_bucket b;
	struct arl_reservation held;

	ck_assert_int_eq(test_reserve(arl, a, 100, &held), 0);
	ck_assert_int_eq(arl_bucket_remove(arl, a), 0);

	/* The only slot is retired but still named by a reservation. */
	memset(&c, 0, sizeof(c));
	c.name = "b";
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = 1000;
	c.limits[0].window_ns = MINUTE_NS;
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), ARL_ETABLEFULL);

	/* Once released, the slot is free for the new bucket. */
	ck_assert_int_eq(arl_release(arl, &held, NULL), 0);
	ck_assert_int_eq(arl_bucket_create(arl, &c, &b), 0);
	ck_assert_uint_eq(b.index, a.index);
	ck_assert_uint_eq(test_stats(arl, b).granted, 0);
	ck_assert_uint_eq(test_stats(arl, b).limits[0].available, 1000);
	arl_detach(arl);
}
END_TEST

/* Waits, up to a generous ceiling, until a bucket has n queued waiters. */
static void wait_queued(struct arl *arl, struct arl_bucket b, uint32_t n)
{
	for (int i = 0; i < 30000 && test_stats(arl, b).queued < n; i++)
		usleep(1000);
	ck_assert_uint_ge(test_stats(arl, b).queued, n);
}

/* A child that waits on an exhausted bucket and exits with the result. */
static pid_t spawn_waiter(struct arl_bucket b)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct arl *child = test_attach(seg);
		struct arl_request req = {1, 0, 0};
		struct arl_reservation res;
		int rc = arl_reserve_wait(child, b, &req, arl_now(child) + 3600 * NS_PER_S, &res);

		if (rc == ARL_ESTALE)
			_exit(10);
		if (rc == ARL_EDRAINING)
			_exit(11);
		_exit(1);
	}
	return pid;
}

static int exit_code(pid_t pid)
{
	int status;

	ck_assert(waitpid(pid, &status, 0) == pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

START_TEST(removal_wakes_waiters)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "w", 1, 100000, 0, 0);
	struct arl_reservation res;
	pid_t first, second;

	ck_assert_int_eq(test_reserve(arl, b, 1, &res), 0); /* the one request */
	first = spawn_waiter(b);
	second = spawn_waiter(b);
	wait_queued(arl, b, 2);
	ck_assert_int_eq(arl_bucket_remove(arl, b), 0);
	ck_assert_int_eq(exit_code(first), 10);
	ck_assert_int_eq(exit_code(second), 10);
	arl_detach(arl);
}
END_TEST

START_TEST(draining_refuses_new_reservations)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "d", 1, 100000, 0, 0);
	struct arl_reservation held, res;
	pid_t waiter;

	ck_assert_int_eq(test_reserve(arl, b, 1, &held), 0);
	waiter = spawn_waiter(b);
	wait_queued(arl, b, 1);
	ck_assert_int_eq(arl_set_draining(arl, true), 0);
	ck_assert(arl_draining(arl));
	ck_assert_int_eq(exit_code(waiter), 11);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_EDRAINING);

	/* What was reserved before still releases; undraining reopens. */
	ck_assert_int_eq(arl_release(arl, &held, NULL), 0);
	ck_assert_int_eq(arl_set_draining(arl, false), 0);
	test_advance(arl, MINUTE_NS);
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), 0);
	arl_detach(arl);
}
END_TEST

START_TEST(an_operator_releases_a_stuck_reservation)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "s", 600, 100000, 2, 0);
	struct arl_reclaim_event ev;
	struct arl_reservation *held;
	struct arl_bucket_stats s;
	pid_t pid;
	int ready[2], go[2];
	char c;

	held = mmap(NULL, sizeof(*held), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(held != MAP_FAILED);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	if (pid == 0) {
		struct arl *child = test_attach(seg);

		/* Reserve, then hang on to it while alive: a stuck stream. */
		if (test_reserve(child, b, 300, held) != 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		/* Its own late release finds the slot gone. */
		_exit(arl_release(child, held, NULL) == ARL_ESTALE ? 0 : 3);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);

	ck_assert_int_eq(arl_sweep_release_slot(arl, held->slot, &ev), 0);
	ck_assert_int_eq(ev.reason, ARL_RECLAIM_ADMIN);
	ck_assert_int_eq(ev.owner_pid, pid);
	ck_assert_uint_eq(ev.tokens, 300);
	ck_assert_str_eq(ev.bucket, "s");
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.reclaimed_admin, 1);
	ck_assert_uint_eq(s.inflight, 0);
	ck_assert_uint_eq(s.fallback_tokens, 300);
	ck_assert_int_eq(arl_sweep_release_slot(arl, held->slot, &ev), ARL_ENOENT);
	ck_assert_int_eq(arl_sweep_release_slot(arl, 1u << 30, &ev), ARL_EINVAL);

	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(exit_code(pid), 0);
	munmap(held, sizeof(*held));
	arl_detach(arl);
}
END_TEST

START_TEST(a_live_waiters_slot_is_not_released)
{
	struct arl *arl = test_create(seg, 64);
	struct arl_bucket b = test_bucket(arl, "q", 1, 100000, 0, 0);
	struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	struct arl_reservation held;
	struct arl_reclaim_event ev;
	uint32_t i, claimed = UINT32_MAX;
	pid_t waiter;

	ck_assert_int_eq(test_reserve(arl, b, 1, &held), 0);
	waiter = spawn_waiter(b);
	wait_queued(arl, b, 1);
	for (i = 0; i < arl->header->reservation_capacity; i++)
		if (arl_impl_res_state(slots[i].word) == ARL_RES_CLAIMED)
			claimed = i;
	ck_assert_uint_ne(claimed, UINT32_MAX);
	ck_assert_int_eq(arl_sweep_release_slot(arl, claimed, &ev), ARL_EAGAIN);
	ck_assert_int_eq(arl_bucket_remove(arl, b), 0);
	ck_assert_int_eq(exit_code(waiter), 10);
	arl_detach(arl);
}
END_TEST

/*
 * The load: workers reserve and release on whichever of two names exists,
 * by handle, and count each grant under the bucket incarnation (slot index
 * and generation) the handle named. An administrator removes and recreates
 * the buckets, and records each incarnation's final grant count once its
 * slot is free again. Any grant that reached the wrong incarnation makes a
 * count differ.
 */
#define LOAD_WORKERS 4
#define LOAD_ROUNDS 100
#define LOAD_BUCKETS 2
#define LOAD_GENS (2 * LOAD_ROUNDS + 8)

struct load {
	uint32_t stop;
	uint64_t counted[LOAD_BUCKETS][LOAD_GENS]; /* grants seen by workers */
	uint64_t final[LOAD_BUCKETS][LOAD_GENS];   /* granted, read when freed */
	uint32_t finished[LOAD_BUCKETS][LOAD_GENS];
};

static void load_worker(struct load *load, struct arl *arl, unsigned seed)
{
	static const char *const names[] = {"x", "y"};
	struct arl_request req = {1, 0, 0};

	while (!__atomic_load_n(&load->stop, __ATOMIC_ACQUIRE)) {
		struct arl_bucket b;
		struct arl_reservation res;

		seed = seed * 1103515245u + 12345u;
		if (arl_bucket_find(arl, names[(seed >> 16) & 1], &b) != 0)
			continue;
		if (arl_reserve(arl, b, &req, &res) != 0)
			continue;
		ck_assert_uint_lt(b.index, LOAD_BUCKETS);
		ck_assert_uint_lt(b.gen, LOAD_GENS);
		__atomic_fetch_add(&load->counted[b.index][b.gen], 1, __ATOMIC_RELAXED);
		arl_release(arl, &res, NULL);
	}
}

/* Removes a bucket and waits until its slot is free, then records the
 * incarnation's final count. */
static void retire(struct load *load, struct arl *arl, struct arl_bucket b)
{
	struct arl_shm_bucket *shm = &arl_impl_buckets(arl)[b.index];

	ck_assert_int_eq(arl_bucket_remove(arl, b), 0);
	for (int i = 0; arl_load_acquire(&shm->state) != ARL_BUCKET_FREE; i++) {
		ck_assert_int_lt(i, 1000000);
		ck_assert_int_eq(arl_impl_admin_lock(arl), 0);
		arl_impl_recycle_buckets(arl);
		arl_impl_admin_unlock(arl);
		sched_yield();
	}
	load->final[b.index][b.gen] = arl_load_relaxed(&shm->stats.granted);
	load->finished[b.index][b.gen] = 1;
}

static void load_admin(struct load *load, struct arl *arl)
{
	struct arl_bucket x, y;

	for (int round = 0; round < LOAD_ROUNDS; round++) {
		x = test_bucket(arl, "x", 1000000000, 1000000000, 0, 0);
		y = test_bucket(arl, "y", 1000000000, 1000000000, 0, 0);
		for (int spin = 0; spin < 200; spin++)
			sched_yield();
		retire(load, arl, round & 1 ? x : y);
		retire(load, arl, round & 1 ? y : x);
	}
	__atomic_store_n(&load->stop, 1, __ATOMIC_RELEASE);
}

static void load_check(const struct load *load)
{
	uint64_t total = 0;

	for (int i = 0; i < LOAD_BUCKETS; i++) {
		for (int g = 0; g < LOAD_GENS; g++) {
			if (!load->finished[i][g]) {
				ck_assert_uint_eq(load->counted[i][g], 0);
				continue;
			}
			ck_assert_msg(load->counted[i][g] == load->final[i][g],
				      "bucket slot %d gen %d: workers counted %llu grants, the "
				      "bucket %llu",
				      i, g, (unsigned long long)load->counted[i][g],
				      (unsigned long long)load->final[i][g]);
			total += load->counted[i][g];
		}
	}
	ck_assert_uint_gt(total, 0);
}

START_TEST(remove_and_recreate_under_load_processes)
{
	struct arl *arl = create_small(LOAD_BUCKETS);
	struct load *load = mmap(NULL, sizeof(*load), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[LOAD_WORKERS];

	ck_assert(load != MAP_FAILED);
	memset(load, 0, sizeof(*load));
	for (int i = 0; i < LOAD_WORKERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct arl *child = test_attach(seg);

			load_worker(load, child, (unsigned)i + 1);
			_exit(0);
		}
	}
	load_admin(load, arl);
	for (int i = 0; i < LOAD_WORKERS; i++)
		ck_assert_int_eq(exit_code(pids[i]), 0);
	load_check(load);
	munmap(load, sizeof(*load));
	arl_detach(arl);
}
END_TEST

struct load_thread {
	struct load *load;
	struct arl *arl;
	unsigned seed;
};

static void *load_thread_main(void *p)
{
	struct load_thread *t = p;

	load_worker(t->load, t->arl, t->seed);
	return NULL;
}

START_TEST(remove_and_recreate_under_load_threads)
{
	struct arl *arl = create_small(LOAD_BUCKETS);
	struct load *load = calloc(1, sizeof(*load));
	struct load_thread t[LOAD_WORKERS];
	pthread_t threads[LOAD_WORKERS];

	ck_assert(load != NULL);
	for (int i = 0; i < LOAD_WORKERS; i++) {
		t[i].load = load;
		t[i].arl = arl;
		t[i].seed = (unsigned)i + 1;
		ck_assert_int_eq(pthread_create(&threads[i], NULL, load_thread_main, &t[i]), 0);
	}
	load_admin(load, arl);
	for (int i = 0; i < LOAD_WORKERS; i++)
		pthread_join(threads[i], NULL);
	load_check(load);
	free(load);
	arl_detach(arl);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("remove");
	TCase *tc = tcase_create("remove");

	tcase_add_checked_fixture(tc, setup, teardown);
	/* Sanitizer builds run many times slower; the waits wait for events. */
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, removed_handles_are_stale_and_live_reservations_release);
	tcase_add_test(tc, a_named_slot_is_not_reused);
	tcase_add_test(tc, removal_wakes_waiters);
	tcase_add_test(tc, draining_refuses_new_reservations);
	tcase_add_test(tc, an_operator_releases_a_stuck_reservation);
	tcase_add_test(tc, a_live_waiters_slot_is_not_released);
	tcase_add_test(tc, remove_and_recreate_under_load_processes);
	tcase_add_test(tc, remove_and_recreate_under_load_threads);
	suite_add_tcase(s, tc);
	return test_run(s);
}
