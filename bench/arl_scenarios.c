/* SPDX-License-Identifier: MIT */
/*
 * arl_scenarios.c - the scenarios only arl has. They time how soon a waiter
 * in arl_reserve_wait() is admitted after a release refunds what it needs,
 * and the CPU time many waiters use while they wait. They also time a
 * streaming reservation's whole cycle and the sweep of a full table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arl.h>
#include <sweep.h>

#include "compare.h"

#define DAY_NS (86400ull * 1000000000ull)
#define WAIT_BURST 1000u /* tokens of the waiting bucket, refilled over a day */
#define WAIT_DEADLINE_NS 30000000000ull

static char segment[64];

/* Creates this run's segment for one scenario, with one bucket of one
 * tokens limit (a second, requests limit when `requests` is set). */
static struct arl *create_segment(const char *suffix, uint64_t amount, uint64_t window_ns,
				  bool requests, struct arl_bucket *bucket)
{
	struct arl_attach_options o;
	struct arl_bucket_config c;
	struct arl *arl;
	int rc;

	snprintf(segment, sizeof(segment), "/arl-cmp-%d-%s", bench_run_pid, suffix);
	bench_cleanup_add_shm(segment);
	memset(&o, 0, sizeof(o));
	o.name = segment;
	o.flags = ARL_ATTACH_CREATE;
	rc = arl_attach(&arl, &o);
	if (rc != 0)
		bench_fail("arl_attach %s failed: %s", segment, arl_strerror(rc));
	memset(&c, 0, sizeof(c));
	c.name = "bench";
	c.limits[c.nlimits++] = (struct arl_limit_config){ARL_UNIT_TOKENS, amount, window_ns, 0, 0};
	if (requests)
		c.limits[c.nlimits++] =
			(struct arl_limit_config){ARL_UNIT_REQUESTS, amount, window_ns, 0, 0};
	rc = arl_bucket_create(arl, &c, bucket);
	if (rc != 0)
		bench_fail("arl_bucket_create failed: %s", arl_strerror(rc));
	return arl;
}

static void destroy_segment(struct arl *arl)
{
	arl_detach(arl);
	shm_unlink(segment);
}

/* Takes the whole burst of the waiting bucket, so that waiters wait. */
static void drain(struct arl *arl, struct arl_bucket b, struct arl_reservation *res)
{
	struct arl_request all = {WAIT_BURST, 0, 0};
	int rc = arl_reserve(arl, b, &all, res);

	if (rc != 0)
		bench_fail("draining the bucket failed: %s", arl_strerror(rc));
}

/* Refunds the whole burst: a release that reports no tokens used. */
static uint64_t refund_all(struct arl *arl, const struct arl_reservation *res)
{
	struct arl_usage none = {ARL_USAGE_TOTAL, 0, 0, 0, 0};
	uint64_t at = bench_now();
	int rc = arl_release(arl, res, &none);

	if (rc != 0)
		bench_fail("the refunding release failed: %s", arl_strerror(rc));
	return at;
}

static void read_byte(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		bench_fail("a pipe between benchmark processes closed early");
}

static void write_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
		bench_fail("a pipe between benchmark processes closed early");
}

/* Sleeps until a waiter sleeps at the head of the bucket's queue. */
static void await_sleeping_head(struct arl *arl, struct arl_bucket b)
{
	uint32_t *waiters = &arl_impl_buckets(arl)[b.index].waiters;

	while (__atomic_load_n(waiters, __ATOMIC_ACQUIRE) == 0)
		bench_sleep_ns(20000);
	/* The count goes up just before the futex wait: give the waiter the
	 * time to enter it, so that the sample includes a real wake-up. */
	bench_sleep_ns(1000000);
}

/* The waiter of the wake scenario: for each sample, waits for a go, waits in
 * arl_reserve_wait() until the refund admits it, stores when it returned,
 * and cancels. */
static void wake_waiter(struct arl *arl, struct arl_bucket b, int go, int done,
			uint64_t *woken_at, unsigned samples)
{
	struct arl_request half = {WAIT_BURST / 2, 0, 0};
	unsigned i;

	for (i = 0; i < samples; i++) {
		struct arl_reservation res;
		int rc;

		read_byte(go);
		rc = arl_reserve_wait(arl, b, &half, arl_now(arl) + WAIT_DEADLINE_NS, &res);
		*woken_at = bench_now();
		if (rc != 0) {
			fprintf(stderr, "bench_compare: arl_reserve_wait failed: %s\n",
				arl_strerror(rc));
			_exit(1);
		}
		arl_cancel(arl, &res);
		write_byte(done);
	}
	_exit(0);
}

void bench_run_wake(const struct bench_options *o)
{
	struct bench_result *row = bench_result_add("wake_latency", "arl", 1);
	uint64_t *woken_at = bench_shared_alloc(sizeof(uint64_t));
	uint64_t *samples = malloc(sizeof(uint64_t) * o->wake_samples);
	struct arl_bucket b;
	struct arl *arl = create_segment("wake", WAIT_BURST, DAY_NS, false, &b);
	int go[2], done[2];
	unsigned i;
	pid_t pid;

	if (!woken_at || !samples || pipe(go) != 0 || pipe(done) != 0)
		bench_fail("allocating the wake scenario failed: %s", strerror(errno));
	pid = fork();
	if (pid == 0)
		wake_waiter(arl, b, go[0], done[1], woken_at, o->wake_samples);

	for (i = 0; i < o->wake_samples; i++) {
		struct arl_reservation res;
		uint64_t released_at;

		drain(arl, b, &res);
		write_byte(go[1]);
		await_sleeping_head(arl, b);
		released_at = refund_all(arl, &res);
		read_byte(done[0]);
		samples[i] = *woken_at - released_at;
	}
	bench_wait_all(&pid, 1, "wake_latency");

	bench_summarize(samples, o->wake_samples, &row->median_ns, &row->p99_ns);
	row->min_ns = (double)samples[0];
	row->max_ns = (double)samples[o->wake_samples - 1];
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
	free(samples);
	munmap(woken_at, sizeof(uint64_t));
	destroy_segment(arl);
}

/* ------------------------------------------------------------------------
 * Many waiters: their CPU time while they wait
 * ------------------------------------------------------------------------ */

struct waiter_result {
	uint64_t cpu_ns;   /* user and system time of the arl_reserve_wait() call */
	uint64_t woken_ns; /* when it returned */
	int rc;
};

static void many_waiter(struct arl *arl, struct arl_bucket b, int ready,
			struct waiter_result *res, unsigned share)
{
	struct arl_request req = {share, 0, 0};
	struct arl_reservation r;
	uint64_t cpu;

	write_byte(ready);
	cpu = bench_cpu_self_ns();
	res->rc = arl_reserve_wait(arl, b, &req, arl_now(arl) + WAIT_DEADLINE_NS, &r);
	res->woken_ns = bench_now();
	res->cpu_ns = bench_cpu_self_ns() - cpu;
	_exit(res->rc == 0 ? 0 : 1);
}

void bench_run_waiters(const struct bench_options *o)
{
	struct bench_result *row = bench_result_add("waiters_cpu", "arl", (int)o->waiters);
	struct waiter_result *res = bench_shared_alloc(sizeof(*res) * o->waiters);
	uint64_t *woken = malloc(sizeof(uint64_t) * o->waiters);
	pid_t *pids = malloc(sizeof(pid_t) * o->waiters);
	struct arl_bucket b;
	struct arl *arl = create_segment("waiters", WAIT_BURST, DAY_NS, false, &b);
	struct arl_reservation all;
	uint64_t released_at, cpu = 0;
	int ready[2];
	unsigned i;

	if (!res || !woken || !pids || pipe(ready) != 0)
		bench_fail("allocating the waiters scenario failed: %s", strerror(errno));
	drain(arl, b, &all);
	for (i = 0; i < o->waiters; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			bench_fail("fork failed: %s", strerror(errno));
		if (pids[i] == 0)
			many_waiter(arl, b, ready[1], &res[i], WAIT_BURST / o->waiters);
	}
	for (i = 0; i < o->waiters; i++)
		read_byte(ready[0]);
	/* Every waiter has called, or is about to call, arl_reserve_wait(). */
	bench_sleep_ns(o->waiter_sleep_ns);
	released_at = refund_all(arl, &all);
	bench_wait_all(pids, (int)o->waiters, "waiters");

	for (i = 0; i < o->waiters; i++) {
		cpu += res[i].cpu_ns;
		woken[i] = res[i].woken_ns - released_at;
	}
	/* median and p99: from the refund to each waiter's admission, which
	 * the queue hands on from one waiter to the next. */
	bench_summarize(woken, o->waiters, &row->median_ns, &row->p99_ns);
	row->min_ns = (double)woken[0];
	row->max_ns = (double)woken[o->waiters - 1];
	row->cpu_ns = (double)cpu;
	row->waited_ns = (double)o->waiter_sleep_ns;
	close(ready[0]);
	close(ready[1]);
	free(woken);
	free(pids);
	munmap(res, sizeof(*res) * o->waiters);
	destroy_segment(arl);
}

/* ------------------------------------------------------------------------
 * A streaming reservation: reserve, touch once per chunk, release
 * ------------------------------------------------------------------------ */

static uint64_t stream_cycle(struct arl *arl, struct arl_bucket b, unsigned touches)
{
	struct arl_request req = {BENCH_INPUT, 500, 0};
	struct arl_usage usage = {ARL_USAGE_TOTAL, 400, 0, 0, 0};
	struct arl_reservation res;
	uint64_t start = bench_now();
	unsigned i;

	if (arl_reserve(arl, b, &req, &res) != 0)
		bench_fail("stream: arl_reserve failed");
	for (i = 0; i < touches; i++)
		if (arl_touch(arl, &res, 1) != 0)
			bench_fail("stream: arl_touch failed");
	if (arl_release(arl, &res, &usage) != 0)
		bench_fail("stream: arl_release failed");
	return bench_now() - start;
}

void bench_run_stream(const struct bench_options *o)
{
	struct bench_result *row = bench_result_add("stream_cycle_100_touches", "arl", 1);
	size_t cycles = o->quick ? 200 : 20000, per_round = cycles / (size_t)o->rounds + 1;
	uint64_t *samples = malloc(sizeof(uint64_t) * per_round * (size_t)o->rounds);
	double medians[101], p99;
	struct arl_bucket b;
	struct arl *arl = create_segment("stream", BENCH_AMOUNT, BENCH_WINDOW_NS, true, &b);
	size_t n = 0, i;
	uint64_t cpu;
	int r;

	if (!samples)
		bench_fail("out of memory");
	for (i = 0; i < per_round / 10 + 1; i++)
		stream_cycle(arl, b, o->stream_touches);
	cpu = bench_cpu_self_ns();
	for (r = 0; r < o->rounds; r++) {
		uint64_t *round = samples + n;

		for (i = 0; i < per_round; i++)
			round[i] = stream_cycle(arl, b, o->stream_touches);
		n += per_round;
		bench_summarize(round, per_round, &medians[r], &p99);
	}
	row->cpu_ns = (double)(bench_cpu_self_ns() - cpu) / (double)n;
	bench_summarize(samples, n, &row->median_ns, &row->p99_ns);
	row->min_ns = row->max_ns = medians[0];
	for (r = 1; r < o->rounds; r++) {
		row->min_ns = medians[r] < row->min_ns ? medians[r] : row->min_ns;
		row->max_ns = medians[r] > row->max_ns ? medians[r] : row->max_ns;
	}
	row->ops_per_s = 1e9 / row->median_ns;
	free(samples);
	destroy_segment(arl);
}

/* ------------------------------------------------------------------------
 * The sweep of a full reservation table
 * ------------------------------------------------------------------------ */

/* Fills every free slot of the table with a reservation of this process,
 * reports the count through `filled`, and keeps them until `hold` closes;
 * then exits without releasing, as a killed client would. */
static void fill_table(struct arl_bucket b, int filled, int hold)
{
	struct arl_request req = {BENCH_INPUT, BENCH_OUTPUT, 0};
	struct arl_attach_options o;
	struct arl_reservation res;
	struct arl *arl;
	uint32_t count = 0;
	char c;

	/* A handle of its own: see arl_open() in impl_arl.c. */
	memset(&o, 0, sizeof(o));
	o.name = segment;
	if (arl_attach(&arl, &o) != 0)
		_exit(1);
	while (arl_reserve(arl, b, &req, &res) == 0)
		count++;
	if (write(filled, &count, sizeof(count)) != sizeof(count))
		_exit(1);
	while (read(hold, &c, 1) > 0)
		;
	_exit(0);
}

static uint64_t time_sweep(struct arl *arl, struct arl_sweep_result *result)
{
	struct arl_sweep_options opts;
	uint64_t start;
	int rc;

	memset(&opts, 0, sizeof(opts));
	memset(result, 0, sizeof(*result));
	start = bench_now();
	rc = arl_sweep(arl, &opts, result);
	if (rc != 0)
		bench_fail("arl_sweep failed: %s", arl_strerror(rc));
	return bench_now() - start;
}

/* One round: a child fills the table; the sweep runs `live_sweeps` times
 * over the live table, then once after the child exits, reclaiming all. */
static void sweep_round(struct arl *arl, struct arl_bucket b, uint64_t *live, int live_sweeps,
			uint64_t *reclaim, uint32_t *slots)
{
	struct arl_sweep_result result;
	int filled[2], hold[2], i;
	pid_t pid;

	if (pipe(filled) != 0 || pipe(hold) != 0)
		bench_fail("pipe failed: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		close(hold[1]);
		fill_table(b, filled[1], hold[0]);
	}
	close(hold[0]);
	if (read(filled[0], slots, sizeof(*slots)) != sizeof(*slots))
		bench_fail("the process filling the table failed");
	for (i = 0; i < live_sweeps; i++) {
		live[i] = time_sweep(arl, &result);
		if (result.live != *slots)
			bench_fail("sweep saw %u live reservations, expected %u", result.live,
				   *slots);
	}
	close(hold[1]);
	waitpid(pid, NULL, 0);
	*reclaim = time_sweep(arl, &result);
	if (result.reclaimed_dead != *slots)
		bench_fail("sweep reclaimed %u reservations, expected %u", result.reclaimed_dead,
			   *slots);
	close(filled[0]);
	close(filled[1]);
}

static void fill_sweep_row(struct bench_result *row, uint64_t *samples, size_t n)
{
	bench_summarize(samples, n, &row->median_ns, &row->p99_ns);
	row->min_ns = (double)samples[0];
	row->max_ns = (double)samples[n - 1];
	row->ops_per_s = 1e9 / row->median_ns;
}

void bench_run_sweep(const struct bench_options *o)
{
	enum { LIVE_SWEEPS = 5 };
	struct bench_result *live_row, *reclaim_row;
	uint64_t live[101 * LIVE_SWEEPS], reclaim[101];
	char live_name[48], reclaim_name[48];
	struct arl_bucket b;
	struct arl *arl = create_segment("sweep", BENCH_AMOUNT, BENCH_WINDOW_NS, true, &b);
	uint32_t slots = 0;
	int r;

	for (r = 0; r < o->rounds; r++)
		sweep_round(arl, b, live + r * LIVE_SWEEPS, LIVE_SWEEPS, &reclaim[r], &slots);
	snprintf(live_name, sizeof(live_name), "sweep_%u_live", slots);
	snprintf(reclaim_name, sizeof(reclaim_name), "sweep_%u_dead", slots);
	live_row = bench_result_add(live_name, "arl", 1);
	reclaim_row = bench_result_add(reclaim_name, "arl", 1);
	fill_sweep_row(live_row, live, (size_t)o->rounds * LIVE_SWEEPS);
	fill_sweep_row(reclaim_row, reclaim, (size_t)o->rounds);
	destroy_segment(arl);
}
