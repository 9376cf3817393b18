/* SPDX-License-Identifier: MIT */
/*
 * bench_compare - arl beside the ways a user would otherwise share a quota
 * between processes, measured in one run: a process-shared robust mutex,
 * flock() on a file, Redis with Lua scripts, and a floor of bare atomic
 * operations. Every implementation does the same two-limit accounting
 * (compare.h) in the same harness, so the ratios are fair. Then the
 * scenarios only arl has: a waiter's wake latency and CPU time, a
 * streaming reservation's cycle, and the supervisor's sweep.
 *
 * Prints a table and the targets met or missed; asserts nothing on a time.
 * `bench_compare --help` lists the options.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"

int bench_run_pid;

static const struct bench_impl *const impls[] = {
	&bench_arl, &bench_mutex, &bench_flock, &bench_redis, &bench_floor,
};
#define NIMPLS (sizeof(impls) / sizeof(impls[0]))

static const int process_counts[] = {1, 2, 4, 8, 32};
#define NCOUNTS (sizeof(process_counts) / sizeof(process_counts[0]))

uint64_t bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* User plus system time of this process. */
uint64_t bench_cpu_self_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

void bench_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench_compare: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Memory shared with the processes forked after this call. */
void *bench_shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Waits for the processes of a round; a failed one fails the run. */
void bench_wait_all(const pid_t *pids, int n, const char *what)
{
	int i, status;

	for (i = 0; i < n; i++)
		if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			bench_fail("%s: a forked process failed", what);
}

/*
 * Names this run created in /dev/shm, removed at exit or on SIGINT, SIGTERM
 * or SIGHUP, so that an interrupted run leaves nothing behind. A name is
 * registered before it is created and may be removed twice.
 */
#define MAX_CLEANUP 64
static char cleanup_paths[MAX_CLEANUP][128];
static volatile sig_atomic_t ncleanup;

void bench_cleanup_add(const char *path)
{
	int i;

	for (i = 0; i < ncleanup; i++)
		if (strcmp(cleanup_paths[i], path) == 0)
			return;
	if (ncleanup == MAX_CLEANUP)
		bench_fail("more than %d files to clean up", MAX_CLEANUP);
	snprintf(cleanup_paths[ncleanup], sizeof(cleanup_paths[0]), "%s", path);
	ncleanup = ncleanup + 1;
}

/* shm_open() names are files in /dev/shm on Linux. */
void bench_cleanup_add_shm(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/dev/shm%s", name);
	bench_cleanup_add(path);
}

static void cleanup(void)
{
	int i;

	if (getpid() != bench_run_pid)
		return;
	for (i = 0; i < ncleanup; i++)
		unlink(cleanup_paths[i]);
}

static void cleanup_on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Runs setup, turning a skip or a failure into a skipped row. */
static bool setup_impl(const struct bench_impl *impl, unsigned buckets, struct bench_result *row)
{
	/* Room for the "setup failed: " prefix. */
	char why[sizeof(row->skipped) - 16] = "";
	int rc = impl->setup(buckets, why, sizeof(why));

	if (rc == 0)
		return true;
	if (rc == BENCH_SKIPPED)
		snprintf(row->skipped, sizeof(row->skipped), "%s", why);
	else
		snprintf(row->skipped, sizeof(row->skipped), "setup failed: %s", why);
	fprintf(stderr, "bench_compare: %s: %s\n", impl->name, row->skipped);
	return false;
}

static bool impl_wanted(const struct bench_impl *impl, const struct bench_options *o)
{
	return !(o->skip_redis && impl == &bench_redis);
}

/* ------------------------------------------------------------------------
 * Scenario 1: one process, reserve+release latency
 * ------------------------------------------------------------------------ */

/* Times pairs one by one for a round: each sample is the time from the end
 * of the previous pair, so it includes one clock read. Returns the count. */
static size_t latency_round(const struct bench_impl *impl, uint64_t *samples, uint64_t max_ops,
			    uint64_t round_ns, uint64_t *rejected)
{
	uint64_t start = bench_now(), prev = start;
	size_t n = 0;

	while (n < max_ops && (n < 100 || prev - start < round_ns)) {
		uint64_t t;
		int rc = impl->pair(0);

		if (rc < 0)
			bench_fail("%s: a pair failed", impl->name);
		*rejected += (uint64_t)rc;
		t = bench_now();
		samples[n++] = t - prev;
		prev = t;
	}
	return n;
}

static void run_latency_impl(const struct bench_impl *impl, const struct bench_options *o)
{
	struct bench_result *row = bench_result_add("latency", impl->name, 1);
	uint64_t *samples = malloc(sizeof(uint64_t) * o->latency_ops * (size_t)o->rounds);
	uint64_t *round_samples = malloc(sizeof(uint64_t) * o->latency_ops);
	double round_medians[101], p99;
	uint64_t cpu = 0, server_start = 0, rejected = 0, ignored = 0;
	size_t total = 0;
	int r;

	if (!samples || !round_samples)
		bench_fail("out of memory for %llu samples", (unsigned long long)o->latency_ops);
	if (!setup_impl(impl, 1, row))
		goto out;
	if (impl->open() != 0)
		bench_fail("%s: open failed", impl->name);
	latency_round(impl, round_samples, o->latency_ops / 10 + 1, o->round_ns / 10, &ignored);

	if (impl->server_cpu_ns)
		server_start = impl->server_cpu_ns();
	for (r = 0; r < o->rounds; r++) {
		uint64_t cpu_start = bench_cpu_self_ns();
		size_t n = latency_round(impl, round_samples, o->latency_ops, o->round_ns, &rejected);

		/* Only the timed pairs count, not the sorting below. */
		cpu += bench_cpu_self_ns() - cpu_start;
		memcpy(samples + total, round_samples, n * sizeof(*samples));
		total += n;
		bench_summarize(round_samples, n, &round_medians[r], &p99);
	}
	row->cpu_ns = (double)cpu / (double)total;
	if (impl->server_cpu_ns)
		row->cpu_ns += (double)(impl->server_cpu_ns() - server_start) / (double)total;
	impl->close();
	impl->teardown();

	bench_summarize(samples, total, &row->median_ns, &row->p99_ns);
	row->min_ns = row->max_ns = round_medians[0];
	for (r = 1; r < o->rounds; r++) {
		if (round_medians[r] < row->min_ns)
			row->min_ns = round_medians[r];
		if (round_medians[r] > row->max_ns)
			row->max_ns = round_medians[r];
	}
	row->ops_per_s = 1e9 / row->median_ns;
	row->rejected = rejected;
out:
	free(samples);
	free(round_samples);
}

/* ------------------------------------------------------------------------
 * Scenario 2: throughput of N processes, on one bucket or one bucket each
 * ------------------------------------------------------------------------ */

struct proc_result {
	uint64_t ops;
	uint64_t rejected;
	uint64_t cpu_ns;
	uint64_t end_ns;
	int failed;
} __attribute__((aligned(64)));

struct round_control {
	uint64_t ready;	   /* processes ready to start */
	uint64_t start_ns; /* 0 until every process is ready */
	struct proc_result proc[BENCH_MAX_PROCS];
};

/* One process of a throughput round: pairs from start_ns until the round's
 * end, checking the clock every few pairs. */
static void throughput_child(const struct bench_impl *impl, struct round_control *ctl, int index,
			     unsigned bucket, uint64_t round_ns)
{
	struct proc_result *res = &ctl->proc[index];
	uint64_t start, end, cpu;

	if (impl->open() != 0) {
		res->failed = 1;
		_exit(1);
	}
	__atomic_fetch_add(&ctl->ready, 1, __ATOMIC_SEQ_CST);
	while ((start = __atomic_load_n(&ctl->start_ns, __ATOMIC_ACQUIRE)) == 0 ||
	       bench_now() < start)
		bench_sleep_ns(100000);
	end = start + round_ns;
	cpu = bench_cpu_self_ns();
	do {
		int k, rc;

		for (k = 0; k < 16; k++) {
			rc = impl->pair(bucket);
			if (rc < 0) {
				res->failed = 1;
				_exit(1);
			}
			res->rejected += (uint64_t)rc;
		}
		res->ops += 16;
	} while (bench_now() < end);
	res->end_ns = bench_now();
	res->cpu_ns = bench_cpu_self_ns() - cpu;
	impl->close();
	_exit(0);
}

/* Runs one round with `procs` processes. Returns the aggregate time per
 * pair (wall time of the round over all pairs) and the CPU time per pair. */
static double throughput_round(const struct bench_impl *impl, struct round_control *ctl,
			       int procs, bool separate, uint64_t round_ns, double *cpu_per_op,
			       uint64_t *rejected)
{
	uint64_t ops = 0, cpu = 0, last_end = 0, server_start = 0, start;
	pid_t pids[BENCH_MAX_PROCS];
	int p;

	memset(ctl, 0, sizeof(*ctl));
	for (p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] < 0)
			bench_fail("fork failed: %s", strerror(errno));
		if (pids[p] == 0)
			throughput_child(impl, ctl, p, separate ? (unsigned)p : 0, round_ns);
	}
	while (__atomic_load_n(&ctl->ready, __ATOMIC_SEQ_CST) < (uint64_t)procs) {
		for (p = 0; p < procs; p++)
			if (__atomic_load_n(&ctl->proc[p].failed, __ATOMIC_RELAXED))
				bench_fail("%s: a process of a round failed to start", impl->name);
		bench_sleep_ns(200000);
	}
	if (impl->server_cpu_ns)
		server_start = impl->server_cpu_ns();
	start = bench_now() + 2000000;
	__atomic_store_n(&ctl->start_ns, start, __ATOMIC_RELEASE);
	bench_wait_all(pids, procs, impl->name);

	for (p = 0; p < procs; p++) {
		ops += ctl->proc[p].ops;
		cpu += ctl->proc[p].cpu_ns;
		*rejected += ctl->proc[p].rejected;
		if (ctl->proc[p].end_ns > last_end)
			last_end = ctl->proc[p].end_ns;
	}
	if (impl->server_cpu_ns)
		cpu += impl->server_cpu_ns() - server_start;
	*cpu_per_op = (double)cpu / (double)ops;
	return (double)(last_end - start) / (double)ops;
}

/* Fills a throughput row from its rounds. */
static void finish_throughput_row(struct bench_result *row, double *ns, double *cpu, int rounds)
{
	double sorted[101];

	memcpy(sorted, ns, sizeof(double) * (size_t)rounds);
	row->median_ns = bench_median_of(sorted, rounds);
	row->min_ns = sorted[0];
	row->max_ns = sorted[rounds - 1];
	/* With few rounds the 99th percentile is the slowest round. */
	row->p99_ns = sorted[(int)(0.99 * (rounds - 1) + 0.999)];
	row->ops_per_s = 1e9 / row->median_ns;
	row->cpu_ns = bench_median_of(cpu, rounds);
}

static void run_throughput(const struct bench_options *o, bool separate)
{
	const char *scenario = separate ? "throughput_own_buckets" : "throughput_one_bucket";
	struct round_control *ctl = bench_shared_alloc(sizeof(*ctl));
	struct bench_result *rows[NIMPLS][NCOUNTS];
	bool ready[NIMPLS];
	size_t i, c;

	if (!ctl)
		bench_fail("mmap failed: %s", strerror(errno));
	for (i = 0; i < NIMPLS; i++) {
		for (c = 0; c < NCOUNTS; c++)
			rows[i][c] = impl_wanted(impls[i], o)
					     ? bench_result_add(scenario, impls[i]->name,
								process_counts[c])
					     : NULL;
		ready[i] = rows[i][0] &&
			   setup_impl(impls[i], separate ? BENCH_MAX_BUCKETS : 1, rows[i][0]);
		for (c = 1; c < NCOUNTS && rows[i][0]; c++)
			memcpy(rows[i][c]->skipped, rows[i][0]->skipped, sizeof(rows[i][c]->skipped));
	}

	for (c = 0; c < NCOUNTS; c++) {
		double ns[NIMPLS][101], cpu[NIMPLS][101];
		uint64_t rejected[NIMPLS] = {0};
		int r;

		/* Rounds alternate between implementations, so that a change in
		 * the machine's load touches them all alike. */
		for (r = 0; r < o->rounds; r++)
			for (i = 0; i < NIMPLS; i++)
				if (ready[i])
					ns[i][r] = throughput_round(impls[i], ctl, process_counts[c],
								    separate, o->round_ns,
								    &cpu[i][r], &rejected[i]);
		for (i = 0; i < NIMPLS; i++) {
			if (!ready[i])
				continue;
			finish_throughput_row(rows[i][c], ns[i], cpu[i], o->rounds);
			rows[i][c]->rejected = rejected[i];
		}
		fprintf(stderr, "bench_compare: %s, %d processes done\n", scenario,
			process_counts[c]);
	}
	for (i = 0; i < NIMPLS; i++)
		if (ready[i])
			impls[i]->teardown();
	munmap(ctl, sizeof(*ctl));
}

/* ------------------------------------------------------------------------
 * Options and main
 * ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_compare [--quick] [--json FILE] [--rounds N] [--round-ms MS]\n"
		"                     [--no-redis]\n"
		"  --quick        every scenario once, briefly (a smoke run; numbers mean little)\n"
		"  --json FILE    also write one JSON object per scenario and implementation\n"
		"  --rounds N     repeated runs of each measurement, 1 to 101 (default 5)\n"
		"  --round-ms MS  milliseconds of one throughput or latency round (default 200)\n"
		"  --no-redis     skip the Redis baseline\n");
}

static void parse_options(int argc, char **argv, struct bench_options *o)
{
	static const struct option longopts[] = {
		{"quick", no_argument, NULL, 'q'},   {"json", required_argument, NULL, 'j'},
		{"rounds", required_argument, NULL, 'r'}, {"round-ms", required_argument, NULL, 'm'},
		{"no-redis", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	long round_ms = -1;
	int opt;

	memset(o, 0, sizeof(*o));
	o->rounds = -1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q': o->quick = true; break;
		case 'j': o->json_path = optarg; break;
		case 'r': o->rounds = atoi(optarg); break;
		case 'm': round_ms = atol(optarg); break;
		case 'n': o->skip_redis = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
	if (o->rounds == -1)
		o->rounds = o->quick ? 1 : 5;
	if (round_ms == -1)
		round_ms = o->quick ? 5 : 200;
	if (o->rounds < 1 || o->rounds > 101 || round_ms < 1 || round_ms > 60000) {
		fprintf(stderr, "bench_compare: --rounds must be 1 to 101 and --round-ms 1 to 60000\n");
		exit(2);
	}
	o->round_ns = (uint64_t)round_ms * 1000000ull;
	o->latency_ops = o->quick ? 2000 : 200000;
	o->waiters = o->quick ? 8 : 100;
	o->waiter_sleep_ns = o->quick ? 20000000ull : 1000000000ull;
	o->wake_samples = o->quick ? 20 : 300;
	o->stream_touches = 100;
}

int main(int argc, char **argv)
{
	struct bench_options o;
	size_t i;

	parse_options(argc, argv, &o);
	bench_run_pid = (int)getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup);
	signal(SIGINT, cleanup_on_signal);
	signal(SIGTERM, cleanup_on_signal);
	signal(SIGHUP, cleanup_on_signal);
	printf("bench_compare: %d round%s of %llu ms%s; pair = reserve 1 request and %u tokens, "
	       "release with %u used\n",
	       o.rounds, o.rounds == 1 ? "" : "s", (unsigned long long)(o.round_ns / 1000000),
	       o.quick ? " (quick)" : "", BENCH_INPUT + BENCH_OUTPUT, BENCH_USED);

	for (i = 0; i < NIMPLS; i++)
		if (impl_wanted(impls[i], &o))
			run_latency_impl(impls[i], &o);
	fprintf(stderr, "bench_compare: latency done\n");
	run_throughput(&o, false);
	run_throughput(&o, true);
	bench_run_wake(&o);
	bench_run_waiters(&o);
	bench_run_stream(&o);
	bench_run_sweep(&o);

	bench_compute_speedups();
	bench_print_table();
	bench_print_targets();
	if (o.json_path && bench_write_json(o.json_path) != 0)
		bench_fail("writing %s failed: %s", o.json_path, strerror(errno));
	return 0;
}
