/* SPDX-License-Identifier: MIT */
/*
 * bench_reserve - nanoseconds per reserve+release pair on one bucket with
 * a requests limit and a tokens limit, in 1 and 2 processes, beside a floor
 * measured in the same run: the same number of bare atomic read-modify-writes
 * and clock reads with no logic. Prints medians over repeated rounds and the
 * ratio to the floor; asserts nothing, since the machine may be shared.
 *
 *   bench_reserve [ROUNDS [OPS_PER_ROUND]]   (defaults 7 and 200000)
 */
#include <sys/wait.h>

#include <arl.h>

#define LIMIT_AMOUNT 1000000000000ull /* high enough never to refuse */

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), compare_u64);
	return v[n / 2];
}

/* One reserve+release pair costs about 6 atomic RMWs on shared words (slot
 * claim, two TAT CAS, in-flight, the RELEASING CAS, the free store is a
 * plain store) and 2 clock reads; the floor does as many with no logic. */
static uint64_t floor_round(uint64_t ops, uint64_t *words)
{
	uint64_t start = arl_impl_monotonic_ns(), i, sink = 0;

	for (i = 0; i < ops; i++) {
		int k;

		for (k = 0; k < 6; k++)
			__atomic_fetch_add(&words[k * 8], 1, __ATOMIC_RELAXED);
		sink += arl_impl_monotonic_ns() + arl_impl_monotonic_ns();
	}
	__atomic_store_n(&words[63], sink, __ATOMIC_RELAXED);
	return (arl_impl_monotonic_ns() - start) / ops;
}

static uint64_t arl_round(struct arl *arl, struct arl_bucket b, uint64_t ops)
{
	struct arl_request req = {100, 50, 0};
	struct arl_usage usage = {ARL_USAGE_TOTAL, 120, 0, 0, 0};
	uint64_t start = arl_impl_monotonic_ns(), i;

	for (i = 0; i < ops; i++) {
		struct arl_reservation res;

		if (arl_reserve(arl, b, &req, &res) != 0 || arl_release(arl, &res, &usage) != 0) {
			fprintf(stderr, "bench_reserve: reserve or release failed\n");
			exit(1);
		}
	}
	return (arl_impl_monotonic_ns() - start) / ops;
}

/* Runs `procs` processes at once, each doing one round, and returns the
 * median of their per-pair times. */
static uint64_t parallel_round(const char *name, int procs, uint64_t ops, bool use_floor)
{
	uint64_t results[8];
	int pipes[8][2], p, status;

	for (p = 0; p < procs; p++) {
		if (pipe(pipes[p]) != 0)
			exit(1);
		if (fork() == 0) {
			struct arl_attach_options o;
			struct arl *arl;
			struct arl_bucket b;
			uint64_t ns;

			memset(&o, 0, sizeof(o));
			o.name = name;
			if (arl_attach(&arl, &o) != 0 || arl_bucket_find(arl, "bench", &b) != 0)
				_exit(1);
			/* The floor hits words in the segment too, shared by every
			 * process, as the arl round does. */
			ns = use_floor ? floor_round(ops, (uint64_t *)((char *)arl->header + 4096))
				       : arl_round(arl, b, ops);
			if (write(pipes[p][1], &ns, sizeof(ns)) != sizeof(ns))
				_exit(1);
			_exit(0);
		}
	}
	for (p = 0; p < procs; p++) {
		if (read(pipes[p][0], &results[p], sizeof(results[p])) != sizeof(results[p]))
			exit(1);
		close(pipes[p][0]);
		close(pipes[p][1]);
	}
	while (wait(&status) > 0)
		;
	return median(results, procs);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
	char name[64];
	struct arl_attach_options o;
	struct arl_bucket_config c;
	struct arl_bucket b;
	struct arl *arl;
	int procs;

	if (rounds < 1 || rounds > 101 || ops == 0) {
		fprintf(stderr, "usage: bench_reserve [ROUNDS 1-101 [OPS_PER_ROUND > 0]]\n");
		return 2;
	}
	snprintf(name, sizeof(name), "/arl-bench-%d", (int)getpid());
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	if (arl_attach(&arl, &o) != 0)
		return 1;
	memset(&c, 0, sizeof(c));
	c.name = "bench";
	c.nlimits = 2;
	c.limits[0] = (struct arl_limit_config){ARL_UNIT_REQUESTS, LIMIT_AMOUNT, 60000000000ull, 0, 0};
	c.limits[1] = (struct arl_limit_config){ARL_UNIT_TOKENS, LIMIT_AMOUNT, 60000000000ull, 0, 0};
	if (arl_bucket_create(arl, &c, &b) != 0)
		return 1;

	printf("reserve+release, one bucket with two limits, %d rounds of %llu pairs\n", rounds,
	       (unsigned long long)ops);
	printf("%-10s %14s %14s %8s\n", "processes", "arl ns/pair", "floor ns/pair", "ratio");
	for (procs = 1; procs <= 2; procs++) {
		uint64_t arl_ns[101], floor_ns[101], a, f;
		int r;

		for (r = 0; r < rounds; r++) {
			floor_ns[r] = parallel_round(name, procs, ops, true);
			arl_ns[r] = parallel_round(name, procs, ops, false);
		}
		a = median(arl_ns, rounds);
		f = median(floor_ns, rounds);
		printf("%-10d %14llu %14llu %8.2f\n", procs, (unsigned long long)a,
		       (unsigned long long)f, f ? (double)a / (double)f : 0.0);
	}
	arl_detach(arl);
	shm_unlink(name);
	return 0;
}
