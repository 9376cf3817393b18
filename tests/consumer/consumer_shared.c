/* SPDX-License-Identifier: MIT */
/*
 * A client of libarl.so, calling it the way a foreign-function interface
 * does: every function comes from the library's dynamic symbol table, looked
 * up with its version node (ARL_0.1). arl.h supplies only the types, because
 * its inline definitions would otherwise run instead of the library's.
 *
 * The program is linked with -larl, so the dynamic loader must have loaded
 * libarl.so.0 before main(). The lookup uses RTLD_NOLOAD, which fails if it
 * did not. The program prints the path of the library it called, creates a
 * private segment with a test clock, reserves 800 tokens, releases with 412
 * used, and checks the refund. Exits 0 on success, 1 with a message
 * otherwise.
 */
#include <arl.h>

#include <dlfcn.h>
#include <stdio.h>

#define LIBARL_SONAME "libarl.so.0"
#define LIBARL_VERSION "ARL_0.1"

/* The library's functions, typed from the header's definitions. */
struct libarl {
	__typeof__(&arl_attach) attach;
	__typeof__(&arl_detach) detach;
	__typeof__(&arl_strerror) strerror;
	__typeof__(&arl_bucket_create) bucket_create;
	__typeof__(&arl_reserve) reserve;
	__typeof__(&arl_release) release;
	__typeof__(&arl_bucket_stats) bucket_stats;
};

static int failures;

static void expect_eq(const char *what, uint64_t expected, uint64_t actual)
{
	if (expected == actual)
		return;
	fprintf(stderr, "consumer_shared: %s is %llu, expected %llu\n", what,
		(unsigned long long)actual, (unsigned long long)expected);
	failures++;
}

/* Looks up one versioned symbol. Prints an error and returns NULL when it
 * is missing. */
static void *lookup(void *library, const char *name)
{
	void *symbol = dlvsym(library, name, LIBARL_VERSION);

	if (!symbol)
		fprintf(stderr, "consumer_shared: %s@%s not found in %s: %s\n", name,
			LIBARL_VERSION, LIBARL_SONAME, dlerror());
	return symbol;
}

static int load(void **library, struct libarl *lib)
{
	Dl_info info;

	*library = dlopen(LIBARL_SONAME, RTLD_NOW | RTLD_NOLOAD);
	if (!*library) {
		fprintf(stderr, "consumer_shared: %s is not loaded, although the program is "
				"linked with it: %s\n",
			LIBARL_SONAME, dlerror());
		return 1;
	}
	lib->attach = (__typeof__(lib->attach))lookup(*library, "arl_attach");
	lib->detach = (__typeof__(lib->detach))lookup(*library, "arl_detach");
	lib->strerror = (__typeof__(lib->strerror))lookup(*library, "arl_strerror");
	lib->bucket_create = (__typeof__(lib->bucket_create))lookup(*library, "arl_bucket_create");
	lib->reserve = (__typeof__(lib->reserve))lookup(*library, "arl_reserve");
	lib->release = (__typeof__(lib->release))lookup(*library, "arl_release");
	lib->bucket_stats = (__typeof__(lib->bucket_stats))lookup(*library, "arl_bucket_stats");
	if (!lib->attach || !lib->detach || !lib->strerror || !lib->bucket_create ||
	    !lib->reserve || !lib->release || !lib->bucket_stats)
		return 1;
	if (dladdr((void *)lib->attach, &info) != 0 && info.dli_fname)
		printf("consumer_shared: calling %s\n", info.dli_fname);
	return 0;
}

static int fail(const struct libarl *lib, const char *step, int rc, const char *detail)
{
	fprintf(stderr, "consumer_shared: %s failed: %s%s%s\n", step, lib->strerror(rc),
		detail[0] ? ": " : "", detail);
	return 1;
}

/* Reserves, releases with the real usage, and checks the stats. */
static int run(const struct libarl *lib, struct arl *arl)
{
	struct arl_bucket_config config;
	struct arl_bucket bucket = {0, 0};
	struct arl_request request = {300, 500, 1};
	struct arl_reservation reservation;
	struct arl_usage usage;
	struct arl_bucket_stats stats;
	int rc;

	memset(&config, 0, sizeof(config));
	config.name = "consumer";
	config.nlimits = 2;
	config.limits[0].unit = ARL_UNIT_REQUESTS;
	config.limits[0].amount = 10;
	config.limits[0].window_ns = 60000000000ull;
	config.limits[1].unit = ARL_UNIT_TOKENS;
	config.limits[1].amount = 1000;
	config.limits[1].window_ns = 60000000000ull;
	config.max_inflight = 2;
	rc = lib->bucket_create(arl, &config, &bucket);
	if (rc != 0)
		return fail(lib, "arl_bucket_create", rc, "");
	rc = lib->reserve(arl, bucket, &request, &reservation);
	if (rc != 0)
		return fail(lib, "arl_reserve", rc, "");

	memset(&usage, 0, sizeof(usage));
	usage.flags = ARL_USAGE_TOTAL;
	usage.total_tokens = 412;
	rc = lib->release(arl, &reservation, &usage);
	if (rc != 0)
		return fail(lib, "arl_release", rc, "");

	rc = lib->bucket_stats(arl, bucket, &stats);
	if (rc != 0)
		return fail(lib, "arl_bucket_stats", rc, "");
	expect_eq("granted", 1, stats.granted);
	expect_eq("released", 1, stats.released);
	expect_eq("refunded_tokens", 800 - 412, stats.refunded_tokens);
	expect_eq("inflight", 0, stats.inflight);
	/* The test clock has not moved, so nothing refilled: 1000 - 412 left. */
	expect_eq("available tokens", 1000 - 412, stats.limits[1].available);
	return failures == 0 ? 0 : 1;
}

int main(void)
{
	struct arl_attach_options options;
	struct libarl lib;
	struct arl *arl = NULL;
	void *library = NULL;
	char name[64], error[512] = "";
	int rc, status;

	if (load(&library, &lib) != 0)
		return 1;
	snprintf(name, sizeof(name), "/arl-consumer-shared-%d", (int)getpid());
	memset(&options, 0, sizeof(options));
	options.name = name;
	options.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	options.reservation_capacity = 16;
	options.error = error;
	options.error_size = sizeof(error);
	rc = lib.attach(&arl, &options);
	if (rc != 0) {
		status = fail(&lib, "arl_attach", rc, error);
	} else {
		status = run(&lib, arl);
		lib.detach(arl);
		shm_unlink(name);
	}
	dlclose(library);
	if (status == 0)
		printf("consumer_shared: reserved 800 tokens, used 412, refunded 388\n");
	return status;
}
