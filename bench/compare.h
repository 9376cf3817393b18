/* SPDX-License-Identifier: MIT */
/*
 * compare.h - the harness of bench_compare: each implementation of the same
 * two-limit accounting (arl and the baselines a user would otherwise write)
 * behind one interface, and the result records the report prints.
 */
#ifndef ARL_BENCH_COMPARE_H
#define ARL_BENCH_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The accounting of one pair, the same in every implementation: a bucket
 * with a requests limit and a tokens limit, both BENCH_AMOUNT per
 * BENCH_WINDOW_NS, so large that nothing is rejected (rejections are still
 * counted). A pair reserves 1 request and BENCH_INPUT + BENCH_OUTPUT tokens,
 * then releases with BENCH_USED tokens used, which refunds the difference.
 */
#define BENCH_WINDOW_NS 60000000000ull
#define BENCH_AMOUNT 1000000000000ull
#define BENCH_INPUT 100u
#define BENCH_OUTPUT 50u
#define BENCH_USED 120u
#define BENCH_MAX_BUCKETS 32u /* one per process in the separate-bucket runs */
#define BENCH_MAX_PROCS 32

/* setup() return value: this implementation cannot run on this machine. */
#define BENCH_SKIPPED 1

struct bench_impl {
	const char *name; /* as printed and written to the JSON */
	/* Creates the shared state of `buckets` buckets, in the parent before
	 * any fork. Returns 0, BENCH_SKIPPED with the reason in why, or -1. */
	int (*setup)(unsigned buckets, char *why, size_t why_size);
	/* Opens this process's handles: in every process that calls pair(). */
	int (*open)(void);
	/* Reserves and releases once on a bucket. Returns 0, 1 when the
	 * reserve was rejected, or -1 on an error (already reported). */
	int (*pair)(unsigned bucket);
	void (*close)(void);
	void (*teardown)(void);
	/* CPU nanoseconds used so far by a server the implementation runs,
	 * or NULL when there is none. */
	uint64_t (*server_cpu_ns)(void);
};

extern const struct bench_impl bench_arl;
extern const struct bench_impl bench_mutex;
extern const struct bench_impl bench_flock;
extern const struct bench_impl bench_redis;
extern const struct bench_impl bench_floor;

/* One row of the report: a scenario run by one implementation. Times are
 * nanoseconds; a field that does not apply is negative. */
struct bench_result {
	char scenario[48];
	char impl[24];
	int procs;
	double median_ns;
	double p99_ns;
	double min_ns;
	double max_ns;
	double ops_per_s;
	double cpu_ns;
	double arl_speedup; /* this row's median / arl's median in the same scenario */
	uint64_t rejected;
	double waited_ns;  /* waiters_cpu: how long the waiters waited */
	char skipped[160]; /* empty, or why the row did not run */
};

struct bench_options {
	bool quick;
	int rounds;
	uint64_t round_ns;    /* length of one throughput round */
	uint64_t latency_ops; /* timed pairs per latency round, at most */
	unsigned waiters;     /* processes in the many-waiters run */
	uint64_t waiter_sleep_ns;
	unsigned wake_samples;
	unsigned stream_touches;
	const char *json_path;
	bool skip_redis;
};

/* The run's identity for segment and file names: the main process's pid. */
extern int bench_run_pid;

uint64_t bench_now(void);
uint64_t bench_cpu_self_ns(void);
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void bench_sleep_ns(uint64_t ns);
void *bench_shared_alloc(size_t size);
void bench_wait_all(const pid_t *pids, int n, const char *what);
/* Registers a file (a path under /dev/shm) for removal when the run ends or
 * is interrupted. */
void bench_cleanup_add(const char *path);
void bench_cleanup_add_shm(const char *name);

/* report.c */
struct bench_result *bench_result_add(const char *scenario, const char *impl, int procs);
void bench_summarize(uint64_t *samples, size_t n, double *median, double *p99);
double bench_median_of(double *v, int n);
void bench_compute_speedups(void);
void bench_print_table(void);
void bench_print_targets(void);
int bench_write_json(const char *path);

/* arl_scenarios.c: the scenarios only arl has (waiting, streaming, sweep). */
void bench_run_wake(const struct bench_options *o);
void bench_run_waiters(const struct bench_options *o);
void bench_run_stream(const struct bench_options *o);
void bench_run_sweep(const struct bench_options *o);

#endif /* ARL_BENCH_COMPARE_H */
