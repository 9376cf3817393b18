/* SPDX-License-Identifier: MIT */
/*
 * report.c - the result rows of a run: summary statistics, arl's speedup
 * over each baseline, the table, the targets and the JSON file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

#define MAX_RESULTS 160

static struct bench_result results[MAX_RESULTS];
static int nresults;

struct bench_result *bench_result_add(const char *scenario, const char *impl, int procs)
{
	struct bench_result *r;

	if (nresults == MAX_RESULTS)
		bench_fail("more than %d result rows", MAX_RESULTS);
	r = &results[nresults++];
	memset(r, 0, sizeof(*r));
	snprintf(r->scenario, sizeof(r->scenario), "%s", scenario);
	snprintf(r->impl, sizeof(r->impl), "%s", impl);
	r->procs = procs;
	r->median_ns = r->p99_ns = r->min_ns = r->max_ns = -1;
	r->ops_per_s = r->cpu_ns = r->arl_speedup = -1;
	return r;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts the samples and returns their median and 99th percentile (nearest
 * rank). */
void bench_summarize(uint64_t *samples, size_t n, double *median, double *p99)
{
	size_t rank;

	if (n == 0) {
		*median = *p99 = -1;
		return;
	}
	qsort(samples, n, sizeof(*samples), compare_u64);
	*median = (double)samples[n / 2];
	rank = (size_t)ceil(0.99 * (double)n);
	*p99 = (double)samples[rank > 0 ? rank - 1 : 0];
}

double bench_median_of(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), compare_double);
	return v[n / 2];
}

static const struct bench_result *find_result(const char *scenario, const char *impl, int procs)
{
	int i;

	for (i = 0; i < nresults; i++)
		if (strcmp(results[i].scenario, scenario) == 0 &&
		    strcmp(results[i].impl, impl) == 0 && results[i].procs == procs &&
		    !results[i].skipped[0])
			return &results[i];
	return NULL;
}

/* Sets each row's arl_speedup: its median time over arl's in the same
 * scenario at the same process count. */
void bench_compute_speedups(void)
{
	int i;

	for (i = 0; i < nresults; i++) {
		struct bench_result *r = &results[i];
		const struct bench_result *a = find_result(r->scenario, "arl", r->procs);

		if (!r->skipped[0] && a && a->median_ns > 0 && r->median_ns > 0)
			r->arl_speedup = r->median_ns / a->median_ns;
	}
}

static void format_number(char *buf, size_t size, double v, const char *fmt)
{
	if (v < 0)
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, fmt, v);
}

static void print_row(const struct bench_result *r)
{
	char med[24], p99[24], min[24], max[24], ops[24], cpu[24], speed[24];

	if (r->skipped[0]) {
		printf("%-24s %-13s %5d  skipped: %s\n", r->scenario, r->impl, r->procs,
		       r->skipped);
		return;
	}
	format_number(med, sizeof(med), r->median_ns, "%.0f");
	format_number(p99, sizeof(p99), r->p99_ns, "%.0f");
	format_number(min, sizeof(min), r->min_ns, "%.0f");
	format_number(max, sizeof(max), r->max_ns, "%.0f");
	format_number(ops, sizeof(ops), r->ops_per_s, "%.0f");
	format_number(cpu, sizeof(cpu), r->cpu_ns, "%.0f");
	format_number(speed, sizeof(speed), r->arl_speedup, "%.2fx");
	printf("%-24s %-13s %5d %10s %10s %10s %10s %12s %10s %9s", r->scenario, r->impl, r->procs,
	       med, p99, min, max, ops, cpu, speed);
	if (r->rejected)
		printf("  rejected %llu", (unsigned long long)r->rejected);
	printf("\n");
}

void bench_print_table(void)
{
	const char *last = "";
	int i;

	printf("\n%-24s %-13s %5s %10s %10s %10s %10s %12s %10s %9s\n", "scenario", "impl",
	       "procs", "median ns", "p99 ns", "min ns", "max ns", "ops/s", "cpu ns", "arl x");
	for (i = 0; i < nresults; i++) {
		if (strcmp(last, results[i].scenario) != 0 && i > 0)
			printf("\n");
		last = results[i].scenario;
		print_row(&results[i]);
	}
}

/* Prints one target with the numbers of this run that decide it. */
static void print_target(const char *what, bool known, bool met, const char *detail)
{
	const char *verdict = "MISSED";

	if (!known)
		verdict = "unknown";
	else if (met)
		verdict = "met";
	printf("  %-8s %s: %s\n", verdict, what, detail);
}

/* Prints a target on arl's speedup over a row of this run: its median time
 * over arl's, which must be at least `want`. */
static void target_ratio(const char *what, const char *scenario, const char *impl, int procs,
			 double want)
{
	const struct bench_result *a = find_result(scenario, "arl", procs);
	const struct bench_result *b = find_result(scenario, impl, procs);
	char detail[160];
	double ratio;

	if (!a || !b) {
		print_target(what, false, false, "not measured in this run");
		return;
	}
	ratio = b->median_ns / a->median_ns;
	snprintf(detail, sizeof(detail), "%s %.0f ns, arl %.0f ns per pair: arl x %.3g (target >= %g)",
		 impl, b->median_ns, a->median_ns, ratio, want);
	print_target(what, true, ratio >= want, detail);
}

static const struct bench_result *find_scenario(const char *scenario)
{
	int i;

	for (i = 0; i < nresults; i++)
		if (strcmp(results[i].scenario, scenario) == 0 && !results[i].skipped[0])
			return &results[i];
	return NULL;
}

void bench_print_targets(void)
{
	const struct bench_result *a1, *a32, *wake, *cpu;
	char detail[200];

	printf("\ntargets (ratios from this run; arl x = baseline time / arl time)\n");
	/* Within 2x of the floor: floor time / arl time >= 0.5. */
	target_ratio("1 process within 2x of the floor", "latency", "floor", 1, 0.5);
	target_ratio("2 processes, one bucket: >= 3x robust mutex throughput",
		     "throughput_one_bucket", "robust_mutex", 2, 3);
	target_ratio("1 process: >= 1000x Redis throughput", "throughput_one_bucket", "redis_lua",
		     1, 1000);
	target_ratio("2 processes: >= 1000x Redis throughput", "throughput_one_bucket",
		     "redis_lua", 2, 1000);
	target_ratio("32 processes: >= 1000x Redis throughput", "throughput_one_bucket",
		     "redis_lua", 32, 1000);

	a1 = find_result("throughput_one_bucket", "arl", 1);
	a32 = find_result("throughput_one_bucket", "arl", 32);
	if (a1 && a32) {
		snprintf(detail, sizeof(detail),
			 "%.0f ops/s at 1 process, %.0f at 32 (target: 32 keeps >= half of 1)",
			 a1->ops_per_s, a32->ops_per_s);
		print_target("no collapse at 32 processes on one bucket", true,
			     a32->ops_per_s >= 0.5 * a1->ops_per_s, detail);
	} else {
		print_target("no collapse at 32 processes on one bucket", false, false,
			     "not measured in this run");
	}

	wake = find_scenario("wake_latency");
	if (wake) {
		snprintf(detail, sizeof(detail), "median %.0f ns, p99 %.0f ns (target p99 <= 50000)",
			 wake->median_ns, wake->p99_ns);
		print_target("waiter woken within 50 us of the refund", true,
			     wake->p99_ns <= 50000, detail);
	}
	cpu = find_scenario("waiters_cpu");
	if (cpu) {
		snprintf(detail, sizeof(detail),
			 "%d waiters used %.0f us of CPU in all, %.1f us each, over a wait of %.0f ms "
			 "(target: under 0.1%% of the wait each)",
			 cpu->procs, cpu->cpu_ns / 1000, cpu->cpu_ns / cpu->procs / 1000,
			 cpu->waited_ns / 1e6);
		print_target("no CPU burned while waiting", true,
			     cpu->cpu_ns / cpu->procs < cpu->waited_ns / 1000, detail);
	}
}

static void json_number(FILE *f, const char *key, double v, bool last)
{
	if (v < 0)
		fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
	else
		fprintf(f, "\"%s\": %.6g%s", key, v, last ? "" : ", ");
}

/* Writes every row as one JSON object in an array. Returns 0 or -1. */
int bench_write_json(const char *path)
{
	FILE *f = fopen(path, "w");
	int i;

	if (!f)
		return -1;
	fprintf(f, "[\n");
	for (i = 0; i < nresults; i++) {
		const struct bench_result *r = &results[i];

		fprintf(f, "  {\"name\": \"%s\", \"implementation\": \"%s\", \"processes\": %d, ",
			r->scenario, r->impl, r->procs);
		json_number(f, "median_ns", r->median_ns, false);
		json_number(f, "p99_ns", r->p99_ns, false);
		json_number(f, "min_ns", r->min_ns, false);
		json_number(f, "max_ns", r->max_ns, false);
		json_number(f, "ops_per_s", r->ops_per_s, false);
		json_number(f, "cpu_ns", r->cpu_ns, false);
		json_number(f, "arl_speedup", r->arl_speedup, false);
		fprintf(f, "\"rejected\": %llu, ", (unsigned long long)r->rejected);
		/* The reasons are written by this program and hold no quotes. */
		if (r->skipped[0])
			fprintf(f, "\"skipped\": \"%s\"}", r->skipped);
		else
			fprintf(f, "\"skipped\": null}");
		fprintf(f, "%s\n", i + 1 < nresults ? "," : "");
	}
	fprintf(f, "]\n");
	return fclose(f) == 0 ? 0 : -1;
}
