// SPDX-License-Identifier: MIT
// Proves that arl.h compiles as C++11 and works there: create a segment,
// reserve, release with a refund, and read the refund back.
#include <arl.h>

int main()
{
	char name[64];
	snprintf(name, sizeof(name), "/arl-test-cxx-%d", (int)getpid());
	shm_unlink(name);

	arl_attach_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.name = name;
	opts.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	struct arl *arl = nullptr;
	if (arl_attach(&arl, &opts) != 0)
		return 1;

	arl_bucket_config config;
	memset(&config, 0, sizeof(config));
	config.name = "cxx";
	config.nlimits = 1;
	config.limits[0].unit = ARL_UNIT_TOKENS;
	config.limits[0].amount = 1000;
	config.limits[0].window_ns = 60000000000ull;
	arl_bucket bucket;
	arl_request request = {600, 0, 1};
	arl_reservation res;
	arl_usage usage = {ARL_USAGE_TOTAL, 100, 0, 0, 0};
	struct arl_bucket_stats stats; // "struct": a function has the same name, as with stat()
	int status = 0;

	if (arl_bucket_create(arl, &config, &bucket) != 0 ||
	    arl_reserve(arl, bucket, &request, &res) != 0 || arl_release(arl, &res, &usage) != 0 ||
	    arl_bucket_stats(arl, bucket, &stats) != 0)
		status = 2;
	else if (stats.refunded_tokens != 500 || stats.limits[0].available != 900)
		status = 3;

	arl_detach(arl);
	shm_unlink(name);
	return status;
}
