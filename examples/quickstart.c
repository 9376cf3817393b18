/* SPDX-License-Identifier: MIT */
/*
 * quickstart - the smallest arl client: attach to the segment arld created,
 * find a bucket, wait for room for one request, and release it with the
 * real usage. Run `arld` first (it creates /arl with a bucket "default").
 */
#include <arl.h>

int main(void)
{
	struct arl *arl;
	struct arl_bucket bucket;
	struct arl_reservation res;
	/* Estimate: 300 prompt tokens plus max_tokens = 500. */
	struct arl_request req = {300, 500, 1};
	struct arl_usage usage = {ARL_USAGE_TOTAL, 0, 0, 0, 0};
	struct arl_attach_options opts;
	char error[256] = "";
	int rc;

	memset(&opts, 0, sizeof(opts)); /* segment: $ARL_SHM, else /arl */
	opts.error = error;
	opts.error_size = sizeof(error);
	rc = arl_attach(&arl, &opts);
	if (rc != 0) {
		fprintf(stderr, "quickstart: %s\n", error[0] ? error : arl_strerror(rc));
		return 1;
	}
	rc = arl_bucket_find(arl, "default", &bucket);
	if (rc == 0)
		/* Wait up to 10 s for the quota to have room. */
		rc = arl_reserve_wait(arl, bucket, &req, arl_now(arl) + 10000000000ull, &res);
	if (rc != 0) {
		fprintf(stderr, "quickstart: bucket default: %s\n", arl_strerror(rc));
		arl_detach(arl);
		return 1;
	}

	/* ... send the request; the response reports 412 tokens in all ... */
	usage.total_tokens = 412;
	rc = arl_release(arl, &res, &usage); /* refunds 800 - 412 = 388 */
	printf("released: %s\n", arl_strerror(rc));
	arl_detach(arl);
	return rc == 0 ? 0 : 1;
}
