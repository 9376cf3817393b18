/* SPDX-License-Identifier: MIT */
/*
 * Compares arl with a sequential reference model of its accounting.
 *
 * Eight processes take turns on a chain of two buckets: a "model" bucket
 * with a requests and a tokens limit, and an "account" bucket with a tokens
 * limit. A process-shared mutex serializes every operation, so the
 * operations have one known order. Each process reserves, releases with
 * known or unknown usage, cancels, and advances the segment's test clock by
 * random steps. It holds up to three reservations and settles a random one,
 * so reservations are settled in another order than they were granted, and
 * some are settled after a long clock step has refilled the buckets. Every
 * operation is logged with its arguments, its result and the available
 * units of every limit right after it.
 *
 * The parent then replays the log through a model written here from the
 * documented GCRA rules, one integer TAT per limit, starting full:
 *   cost(x)   = ceil(x * window_ns / amount) ns
 *   grant     TAT = max(TAT, now) + cost(x), if that is within tolerance
 *             (cost(burst)) of now; refused requests change nothing
 *   refund r  TAT = max(TAT - floor(r * window_ns / amount), now)
 *   overage   TAT = max(TAT, now) + cost(actual - reserved)
 *   cancel    TAT = max(TAT - cost(x), now)
 *   available = min(burst, floor((tolerance - max(TAT - now, 0)) * amount
 *                                / window_ns))
 * and asserts that after every operation the result code, the available
 * units of each limit and, for a refused reserve, the retry time equal what
 * arl reported. The amounts do not divide the windows, so costs and
 * refunds have fractional nanoseconds, and a refund rounded up instead of
 * down moves a retry time within a default run.
 *
 * ARL_STRESS_ITERATIONS sets the operations per process (default 200).
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "testutil.h"

#define TEST_TIMEOUT_SECONDS 600

#define WORKERS 8
#define MAX_HELD 3 /* max live reservations per process */
#define DEFAULT_ITERATIONS 200

/* The limits, in the order their available units are logged. */
enum { MODEL_REQUESTS, MODEL_TOKENS, ACCOUNT_TOKENS, LIMITS };

static const struct {
	const char *name;
	uint32_t bucket; /* position in the chain: 0 model, 1 account */
	uint32_t index; /* position among its bucket's limits */
	uint32_t unit;
	uint64_t amount; /* per minute */
} limit_specs[LIMITS] = {
    {"model requests", 0, 0, ARL_UNIT_REQUESTS, 97},
    {"model tokens", 0, 1, ARL_UNIT_TOKENS, 7000},
    {"account tokens", 1, 0, ARL_UNIT_TOKENS, 9973},
};

enum op_kind { OP_RESERVE, OP_RELEASE, OP_CANCEL, OP_ADVANCE };

static const char *const op_names[] = {"reserve", "release", "cancel", "clock advance"};

struct op_record {
	uint32_t kind; /* enum op_kind */
	uint32_t worker;
	int32_t rc;
	uint32_t reserve_op; /* release and cancel: the log index of the grant */
	struct arl_request request; /* reserve */
	struct arl_usage usage; /* release; flags 0 is a release with NULL usage */
	uint64_t advance_ns; /* clock advance */
	uint64_t now_ns; /* arl_now() after the operation */
	uint64_t retry_at_ns; /* reserve that returned ARL_EAGAIN */
	uint64_t available[LIMITS];
};

/* The log, in an anonymous shared mapping that the forked workers inherit. */
struct shared_log {
	pthread_mutex_t lock; /* serializes every operation and its record */
	uint32_t capacity;
	uint32_t count;
	struct op_record ops[];
};

static struct shared_log *shared;
static size_t shared_size;

/* Worker exit codes, for the parent's message. */
enum worker_exit { WORKER_OK, WORKER_ATTACH_FAILED, WORKER_FIND_FAILED, WORKER_LOG_FULL };

static const char *const worker_exit_names[] = {"success", "arl_attach failed",
						"arl_bucket_find failed", "the log is full"};

static uint32_t iterations_from_env(void)
{
	const char *text = getenv("ARL_STRESS_ITERATIONS");
	unsigned long long n = text ? strtoull(text, NULL, 10) : 0;

	if (n == 0)
		return DEFAULT_ITERATIONS;
	return n > 100000 ? 100000 : (uint32_t)n;
}

static void map_shared_log(uint32_t capacity)
{
	pthread_mutexattr_t attr;

	shared_size = sizeof(*shared) + (size_t)capacity * sizeof(struct op_record);
	shared = mmap(NULL, shared_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(shared != MAP_FAILED);
	shared->capacity = capacity;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	/* Robust: a worker that dies holding the lock makes the others fail
	 * its next lock with EOWNERDEAD instead of hanging until the timeout. */
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	ck_assert_int_eq(pthread_mutex_init(&shared->lock, &attr), 0);
	pthread_mutexattr_destroy(&attr);
}

static void unmap_shared_log(void)
{
	pthread_mutex_destroy(&shared->lock);
	munmap(shared, shared_size);
	shared = NULL;
}

/* ------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------ */

struct held_reservation {
	struct arl_reservation res;
	uint32_t reserve_op;
	struct arl_request request;
};

struct worker {
	int index;
	unsigned rng;
	struct arl *arl;
	struct arl_bucket chain[2];
	struct held_reservation held[MAX_HELD];
	uint32_t nheld;
};

static uint64_t random_below(struct worker *w, uint64_t bound)
{
	uint64_t high = (uint64_t)rand_r(&w->rng);
	uint64_t low = (uint64_t)rand_r(&w->rng);

	return bound == 0 ? 0 : ((high << 31) ^ low) % bound;
}

static void lock_log(void)
{
	if (pthread_mutex_lock(&shared->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&shared->lock);
}

/* Starts a record for an operation of this worker, under the lock.
 * Returns NULL when the log is full. */
static struct op_record *begin_record(struct worker *w, enum op_kind kind)
{
	struct op_record *op;

	if (shared->count >= shared->capacity)
		return NULL;
	op = &shared->ops[shared->count];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->worker = (uint32_t)w->index;
	return op;
}

/* Completes a record with the clock and the available units, still under
 * the lock, so that no other operation comes in between. */
static void finish_record(struct worker *w, struct op_record *op)
{
	int i;

	op->now_ns = arl_now(w->arl);
	for (i = 0; i < LIMITS; i++) {
		struct arl_bucket_stats s;
		int rc = arl_bucket_stats(w->arl, w->chain[limit_specs[i].bucket], &s);

		/* UINT64_MAX never matches the model, so a failed call shows. */
		op->available[i] = rc == 0 ? s.limits[limit_specs[i].index].available : UINT64_MAX;
	}
	shared->count++;
}

static void advance_clock(struct worker *w, struct op_record *op)
{
	uint64_t choice = random_below(w, 100);

	/* Mostly steps under a second, at nanosecond resolution. Now and then
	 * a step of 20 to 90 s refills the buckets while reservations are
	 * still live. */
	if (choice < 70)
		op->advance_ns = random_below(w, NS_PER_S / 2);
	else if (choice < 95)
		op->advance_ns = NS_PER_S / 2 + random_below(w, 5 * NS_PER_S);
	else
		op->advance_ns = 20 * NS_PER_S + random_below(w, 70 * NS_PER_S);
	op->rc = arl_test_clock_set(w->arl, arl_now(w->arl) + op->advance_ns);
}

static void reserve(struct worker *w, struct op_record *op, uint32_t op_index)
{
	struct arl_reservation res;

	memset(&res, 0, sizeof(res));
	op->request.input_tokens = random_below(w, 900);
	op->request.output_tokens = random_below(w, 400);
	/* Now and then more than the model bucket's 7000-token burst. */
	if (random_below(w, 50) == 0)
		op->request.input_tokens = 7001 + random_below(w, 2000);
	op->request.request_id = op_index;
	op->rc = arl_reserve_chain(w->arl, w->chain, 2, &op->request, &res);
	op->retry_at_ns = res.retry_at_ns;
	if (op->rc == 0) {
		w->held[w->nheld].res = res;
		w->held[w->nheld].reserve_op = op_index;
		w->held[w->nheld].request = op->request;
		w->nheld++;
	}
}

/* Fills a known usage: a total, a split or both, from 0 to 125 % of the
 * estimate, so that some releases refund and some charge overage. */
static void known_usage(struct worker *w, const struct arl_request *req, struct arl_usage *u)
{
	uint64_t estimate = req->input_tokens + req->output_tokens;
	uint64_t actual = random_below(w, estimate + estimate / 4 + 2);
	uint64_t form = random_below(w, 3);

	u->input_tokens = random_below(w, actual + 1);
	u->output_tokens = actual - u->input_tokens;
	u->total_tokens = actual;
	u->flags = form == 0   ? ARL_USAGE_TOTAL
		   : form == 1 ? ARL_USAGE_SPLIT
			       : ARL_USAGE_TOTAL | ARL_USAGE_SPLIT;
}

/* Settles held reservation k: a release with known usage, a release with
 * unknown usage (NULL, or a partial count), or a cancel. */
static void settle(struct worker *w, struct op_record *op, uint32_t k)
{
	struct held_reservation *h = &w->held[k];
	uint64_t choice = random_below(w, 100);

	op->reserve_op = h->reserve_op;
	if (choice < 20) {
		op->kind = OP_CANCEL;
		op->rc = arl_cancel(w->arl, &h->res);
	} else if (choice < 35) {
		uint64_t estimate = h->request.input_tokens + h->request.output_tokens;

		op->kind = OP_RELEASE;
		if (choice < 27) {
			op->rc = arl_release(w->arl, &h->res, NULL);
		} else {
			op->usage.flags = ARL_USAGE_PARTIAL;
			op->usage.partial_tokens = random_below(w, estimate + estimate / 2 + 2);
			op->rc = arl_release(w->arl, &h->res, &op->usage);
		}
	} else {
		op->kind = OP_RELEASE;
		known_usage(w, &h->request, &op->usage);
		op->rc = arl_release(w->arl, &h->res, &op->usage);
	}
	w->held[k] = w->held[w->nheld - 1];
	w->nheld--;
}

/* Runs one operation under the lock. Returns false when the log is full. */
static bool run_one(struct worker *w, bool final)
{
	struct op_record *op;
	uint32_t op_index;
	uint64_t choice = random_below(w, 100);
	bool ok = true;

	lock_log();
	op_index = shared->count;
	if (final || (w->nheld == MAX_HELD && choice >= 20)) {
		op = begin_record(w, OP_RELEASE);
		if (op)
			settle(w, op, final ? 0 : (uint32_t)random_below(w, w->nheld));
	} else if (choice < 20) {
		op = begin_record(w, OP_ADVANCE);
		if (op)
			advance_clock(w, op);
	} else if (w->nheld == 0 || choice < 60) {
		op = begin_record(w, OP_RESERVE);
		if (op)
			reserve(w, op, op_index);
	} else {
		op = begin_record(w, OP_RELEASE);
		if (op)
			settle(w, op, (uint32_t)random_below(w, w->nheld));
	}
	if (op)
		finish_record(w, op);
	else
		ok = false;
	pthread_mutex_unlock(&shared->lock);
	return ok;
}

static int worker_main(const char *segment, int index, uint32_t iterations)
{
	struct arl_attach_options o;
	struct worker w;
	uint32_t i;
	int rc = WORKER_OK;

	memset(&w, 0, sizeof(w));
	w.index = index;
	w.rng = (unsigned)index * 7919u + 17u;
	memset(&o, 0, sizeof(o));
	o.name = segment;
	if (arl_attach(&w.arl, &o) != 0)
		return WORKER_ATTACH_FAILED;
	if (arl_bucket_find(w.arl, "model", &w.chain[0]) != 0 ||
	    arl_bucket_find(w.arl, "account", &w.chain[1]) != 0) {
		arl_detach(w.arl);
		return WORKER_FIND_FAILED;
	}
	for (i = 0; i < iterations && rc == WORKER_OK; i++) {
		if (!run_one(&w, false))
			rc = WORKER_LOG_FULL;
		/* Let another process take the next turn. */
		sched_yield();
	}
	/* Settle what is still held, so that the run ends with no charge
	 * left in flight. */
	while (w.nheld > 0 && rc == WORKER_OK)
		if (!run_one(&w, true))
			rc = WORKER_LOG_FULL;
	arl_detach(w.arl);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reference model
 * ------------------------------------------------------------------------ */

__extension__ typedef unsigned __int128 u128;

struct ref_limit {
	uint32_t unit;
	uint64_t amount;
	uint64_t window_ns;
	uint64_t burst;
	uint64_t tolerance_ns;
	uint64_t tat_ns;
};

/* What the replay saw, so the test can show that the run covered the hard
 * cases and not only the easy ones. */
struct ref_counts {
	uint64_t granted, refused, never_fits;
	uint64_t capped_refunds; /* refunds cut short because the limit refilled */
	uint64_t out_of_order; /* settles of a reservation other than the worker's oldest */
	uint64_t overages;
};

struct ref_model {
	struct ref_limit limit[LIMITS];
	uint64_t now_ns;
	/* Per worker, the log indexes of its live grants, oldest first. */
	uint32_t held[WORKERS][MAX_HELD];
	uint32_t nheld[WORKERS];
	struct ref_counts counts;
};

static uint64_t ref_cost_ns(const struct ref_limit *l, uint64_t x)
{
	return (uint64_t)(((u128)x * l->window_ns + l->amount - 1) / l->amount);
}

static uint64_t ref_refund_ns(const struct ref_limit *l, uint64_t x)
{
	return (uint64_t)((u128)x * l->window_ns / l->amount);
}

static uint64_t ref_units(const struct ref_limit *l, const struct arl_request *req)
{
	return l->unit == ARL_UNIT_REQUESTS ? 1 : req->input_tokens + req->output_tokens;
}

static uint64_t ref_available(const struct ref_limit *l, uint64_t now)
{
	uint64_t owed_ns = l->tat_ns > now ? l->tat_ns - now : 0;
	uint64_t free_ns = l->tolerance_ns > owed_ns ? l->tolerance_ns - owed_ns : 0;
	uint64_t units = (uint64_t)((u128)free_ns * l->amount / l->window_ns);

	return units < l->burst ? units : l->burst;
}

static void ref_init(struct ref_model *m, uint64_t start_ns)
{
	int i;

	memset(m, 0, sizeof(*m));
	m->now_ns = start_ns;
	for (i = 0; i < LIMITS; i++) {
		struct ref_limit *l = &m->limit[i];

		l->unit = limit_specs[i].unit;
		l->amount = limit_specs[i].amount;
		l->window_ns = MINUTE_NS;
		l->burst = l->amount;
		l->tolerance_ns = ref_cost_ns(l, l->burst);
		l->tat_ns = start_ns; /* full */
	}
}

/* Moves a TAT back by give_ns, never below now. Returns true when now cut
 * the give-back short. */
static bool ref_give_back(struct ref_limit *l, uint64_t give_ns, uint64_t now)
{
	if (l->tat_ns <= now)
		return give_ns > 0;
	if (l->tat_ns - now < give_ns) {
		l->tat_ns = now;
		return true;
	}
	l->tat_ns -= give_ns;
	return false;
}

static void ref_charge(struct ref_limit *l, uint64_t cost_ns, uint64_t now)
{
	l->tat_ns = (l->tat_ns > now ? l->tat_ns : now) + cost_ns;
}

/* Replays a reserve. Returns the expected code and, for ARL_EAGAIN, the
 * expected retry time: the latest time at which each limit would fit. */
static int ref_reserve(struct ref_model *m, const struct op_record *op, uint32_t op_index,
		       uint64_t *retry_at)
{
	uint64_t now = m->now_ns, latest = now;
	bool fits = true;
	int i;

	for (i = 0; i < LIMITS; i++)
		if (ref_units(&m->limit[i], &op->request) > m->limit[i].burst) {
			m->counts.never_fits++;
			return ARL_ENEVERFITS;
		}
	for (i = 0; i < LIMITS; i++) {
		const struct ref_limit *l = &m->limit[i];
		uint64_t cost = ref_cost_ns(l, ref_units(l, &op->request));
		uint64_t base = l->tat_ns > now ? l->tat_ns : now;
		uint64_t fit_at =
		    l->tat_ns + cost > l->tolerance_ns ? l->tat_ns + cost - l->tolerance_ns : 0;

		if (base + cost - now > l->tolerance_ns)
			fits = false;
		if (fit_at > latest)
			latest = fit_at;
	}
	if (!fits) {
		m->counts.refused++;
		*retry_at = latest;
		return ARL_EAGAIN;
	}
	for (i = 0; i < LIMITS; i++)
		ref_charge(&m->limit[i],
			   ref_cost_ns(&m->limit[i], ref_units(&m->limit[i], &op->request)), now);
	ck_assert_msg(m->nheld[op->worker] < MAX_HELD,
		      "operation %u: worker %u holds more than %d reservations", op_index,
		      op->worker, MAX_HELD);
	m->held[op->worker][m->nheld[op->worker]++] = op_index;
	m->counts.granted++;
	return 0;
}

/* Returns the units a tokens limit is settled with. An unknown usage keeps
 * the estimate unless a larger partial count was given. */
static uint64_t ref_actual_tokens(const struct arl_usage *u, uint64_t reserved)
{
	if (u->flags & ARL_USAGE_TOTAL)
		return u->total_tokens;
	if (u->flags & ARL_USAGE_SPLIT)
		return u->input_tokens + u->output_tokens;
	if ((u->flags & ARL_USAGE_PARTIAL) && u->partial_tokens > reserved)
		return u->partial_tokens;
	return reserved;
}

/* Removes a grant from its worker's live list, counting a settle that is
 * not of the oldest. */
static void ref_forget(struct ref_model *m, const struct op_record *op, uint32_t op_index)
{
	uint32_t *held = m->held[op->worker];
	uint32_t n = m->nheld[op->worker], k;

	for (k = 0; k < n && held[k] != op->reserve_op; k++)
		;
	ck_assert_msg(k < n, "operation %u: %s of log entry %u, which worker %u does not hold",
		      op_index, op_names[op->kind], op->reserve_op, op->worker);
	if (k > 0)
		m->counts.out_of_order++;
	memmove(&held[k], &held[k + 1], (n - k - 1) * sizeof(*held));
	m->nheld[op->worker]--;
}

static void ref_settle(struct ref_model *m, const struct op_record *op, uint32_t op_index)
{
	const struct arl_request *req = &shared->ops[op->reserve_op].request;
	uint64_t now = m->now_ns;
	int i;

	ref_forget(m, op, op_index);
	for (i = 0; i < LIMITS; i++) {
		struct ref_limit *l = &m->limit[i];
		uint64_t reserved = ref_units(l, req);
		uint64_t actual;

		if (op->kind == OP_CANCEL) {
			ref_give_back(l, ref_cost_ns(l, reserved), now);
			continue;
		}
		if (l->unit == ARL_UNIT_REQUESTS)
			continue; /* a released request stays charged */
		actual = ref_actual_tokens(&op->usage, reserved);
		if (actual < reserved) {
			if (ref_give_back(l, ref_refund_ns(l, reserved - actual), now))
				m->counts.capped_refunds++;
		} else if (actual > reserved) {
			ref_charge(l, ref_cost_ns(l, actual - reserved), now);
			m->counts.overages++;
		}
	}
}

/* Describes an operation for a failure message. */
static void describe_op(const struct op_record *op, uint32_t index, char *buf, size_t size)
{
	switch (op->kind) {
	case OP_RESERVE:
		snprintf(buf, size, "operation %u: worker %u reserve input %llu output %llu", index,
			 op->worker, (unsigned long long)op->request.input_tokens,
			 (unsigned long long)op->request.output_tokens);
		break;
	case OP_RELEASE:
		snprintf(buf, size,
			 "operation %u: worker %u release of entry %u, usage flags %#x total %llu "
			 "input %llu output %llu partial %llu",
			 index, op->worker, op->reserve_op, op->usage.flags,
			 (unsigned long long)op->usage.total_tokens,
			 (unsigned long long)op->usage.input_tokens,
			 (unsigned long long)op->usage.output_tokens,
			 (unsigned long long)op->usage.partial_tokens);
		break;
	case OP_CANCEL:
		snprintf(buf, size, "operation %u: worker %u cancel of entry %u", index, op->worker,
			 op->reserve_op);
		break;
	default:
		snprintf(buf, size, "operation %u: worker %u clock advance by %llu ns", index,
			 op->worker, (unsigned long long)op->advance_ns);
		break;
	}
}

/* Replays one logged operation and asserts that arl reported what the
 * model expects. */
static void replay_one(struct ref_model *m, uint32_t index)
{
	const struct op_record *op = &shared->ops[index];
	uint64_t retry_at = 0;
	int expected_rc = 0, i;
	char what[256];

	describe_op(op, index, what, sizeof(what));
	switch (op->kind) {
	case OP_ADVANCE:
		m->now_ns += op->advance_ns;
		break;
	case OP_RESERVE:
		expected_rc = ref_reserve(m, op, index, &retry_at);
		break;
	case OP_RELEASE:
	case OP_CANCEL:
		ref_settle(m, op, index);
		break;
	default:
		ck_abort_msg("%s: unknown kind %u", what, op->kind);
	}

	ck_assert_msg(op->rc == expected_rc, "%s: returned %s, the model expects %s", what,
		      arl_strerror(op->rc), arl_strerror(expected_rc));
	ck_assert_msg(op->now_ns == m->now_ns, "%s: arl's clock reads %llu ns, the model's %llu ns",
		      what, (unsigned long long)op->now_ns, (unsigned long long)m->now_ns);
	if (op->kind == OP_RESERVE && expected_rc == ARL_EAGAIN)
		ck_assert_msg(op->retry_at_ns == retry_at,
			      "%s: retry_at_ns is %llu, the model expects %llu (%lld ns off)", what,
			      (unsigned long long)op->retry_at_ns, (unsigned long long)retry_at,
			      (long long)(op->retry_at_ns - retry_at));
	for (i = 0; i < LIMITS; i++) {
		uint64_t expected = ref_available(&m->limit[i], m->now_ns);

		ck_assert_msg(op->available[i] == expected,
			      "%s: %s has %llu available, the model expects %llu", what,
			      limit_specs[i].name, (unsigned long long)op->available[i],
			      (unsigned long long)expected);
	}
}

/* ------------------------------------------------------------------------
 * The test
 * ------------------------------------------------------------------------ */

static struct arl_bucket create_bucket(struct arl *arl, const char *name, uint32_t chain_position)
{
	struct arl_bucket_config c;
	struct arl_bucket b;
	int i, rc;

	memset(&c, 0, sizeof(c));
	c.name = name;
	for (i = 0; i < LIMITS; i++) {
		if (limit_specs[i].bucket != chain_position)
			continue;
		c.limits[c.nlimits].unit = limit_specs[i].unit;
		c.limits[c.nlimits].amount = limit_specs[i].amount;
		c.limits[c.nlimits].window_ns = MINUTE_NS;
		c.nlimits++;
	}
	rc = arl_bucket_create(arl, &c, &b);
	ck_assert_msg(rc == 0, "bucket %s: %s", name, arl_strerror(rc));
	return b;
}

START_TEST(eight_processes_match_reference_model)
{
	uint32_t iterations = iterations_from_env();
	struct ref_model model;
	char name[64];
	struct arl *arl;
	struct arl_bucket chain[2];
	pid_t pids[WORKERS];
	uint32_t model_inflight, account_inflight, i;
	int w, status;

	map_shared_log(WORKERS * (iterations + MAX_HELD));
	test_segment_name(name, sizeof(name), "reference");
	arl = test_create(name, 64);
	chain[0] = create_bucket(arl, "model", 0);
	chain[1] = create_bucket(arl, "account", 1);
	ref_init(&model, arl_now(arl));

	for (w = 0; w < WORKERS; w++) {
		pids[w] = fork();
		ck_assert(pids[w] >= 0);
		if (pids[w] == 0)
			_exit(worker_main(name, w, iterations));
	}
	for (w = 0; w < WORKERS; w++) {
		int code;

		ck_assert_int_eq(waitpid(pids[w], &status, 0), pids[w]);
		ck_assert_msg(WIFEXITED(status), "worker %d did not exit normally (status %#x)", w,
			      status);
		code = WEXITSTATUS(status);
		ck_assert_msg(code == WORKER_OK, "worker %d exited with %d (%s)", w, code,
			      code <= WORKER_LOG_FULL ? worker_exit_names[code] : "unknown");
	}

	/* The workers are done with the segment. It is unlinked before the
	 * checks, so that a failed check leaves no segment behind. */
	model_inflight = test_stats(arl, chain[0]).inflight;
	account_inflight = test_stats(arl, chain[1]).inflight;
	arl_detach(arl);
	shm_unlink(name);

	for (i = 0; i < shared->count; i++)
		replay_one(&model, i);

	for (w = 0; w < WORKERS; w++)
		ck_assert_msg(model.nheld[w] == 0, "worker %d still holds %u reservations", w,
			      model.nheld[w]);
	ck_assert_uint_eq(model_inflight, 0);
	ck_assert_uint_eq(account_inflight, 0);

	/* A run long enough to be meaningful must have reached the hard cases. */
	if (iterations >= 100) {
		ck_assert_msg(model.counts.granted > 0, "no reserve was granted");
		ck_assert_msg(model.counts.refused > 0, "no reserve was refused for a limit");
		ck_assert_msg(model.counts.never_fits > 0, "no reserve exceeded a burst");
		ck_assert_msg(model.counts.capped_refunds > 0,
			      "no refund arrived after its bucket had refilled");
		ck_assert_msg(model.counts.out_of_order > 0,
			      "no reservation was settled out of order");
		ck_assert_msg(model.counts.overages > 0, "no release charged overage");
	}

	unmap_shared_log();
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("reference");
	TCase *tc = tcase_create("reference model");

	/* Generous: sanitizer builds run many times slower. */
	tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
	tcase_add_test(tc, eight_processes_match_reference_model);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
