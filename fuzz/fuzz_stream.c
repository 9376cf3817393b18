/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the stream parser and tracker (include/arl/stream.h).
 *
 * Input layout:
 *   byte 0      bit 0: NDJSON instead of SSE
 *               bits 1-3: event buffer size, 0 for the default, else 32 << n
 *               bit 4: destroy the tracker without releasing it
 *   byte 1      number of chunk lengths that follow (taken modulo 16)
 *   next bytes  chunk lengths, used in turn for the whole body (0 counts as 1)
 *   the rest    the response body
 *
 * Checks, each an abort() that libFuzzer reports:
 * - the usage found does not depend on how the body is split: one feed of
 *   the whole body and feeds of the fuzzer's chunks give the same usage;
 * - the events that feed calls report add up to the usage's event count;
 * - a tracker bound to a real reservation releases it (or, when abandoned,
 *   its destroy does), so the bucket ends with nothing in flight and every
 *   grant settled.
 */
#include <arl/stream.h>

#define FUZZ_BUCKET "fuzz"

static struct arl *segment;
static struct arl_bucket bucket;

struct plan {
	enum arl_stream_format format;
	size_t event_bytes;
	bool abandon;
	const uint8_t *lengths;
	size_t nlengths;
	const uint8_t *body;
	size_t body_len;
};

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_stream: %s\n", what);
	abort();
}

/* Creates a test-clock segment with one bucket large enough that every
 * reservation fits. The name is unlinked at once: the mapping is enough. */
static void open_segment(void)
{
	struct arl_attach_options o;
	struct arl_bucket_config c;
	char name[64], error[512] = "";
	int rc;

	snprintf(name, sizeof(name), "/arl-fuzz-stream-%d", (int)getpid());
	shm_unlink(name);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	o.bucket_capacity = 1;
	o.reservation_capacity = 4;
	o.process_capacity = 4;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(&segment, &o);
	shm_unlink(name);
	if (rc != 0) {
		fprintf(stderr, "fuzz_stream: cannot create %s: %s\n", name, error);
		abort();
	}
	memset(&c, 0, sizeof(c));
	c.name = FUZZ_BUCKET;
	c.nlimits = 1;
	c.limits[0].unit = ARL_UNIT_TOKENS;
	c.limits[0].amount = ARL_MAX_TOKENS;
	c.limits[0].window_ns = ARL_MIN_WINDOW_NS;
	if (arl_bucket_create(segment, &c, &bucket) != 0)
		fail("cannot create the bucket");
}

static bool parse_plan(const uint8_t *data, size_t size, struct plan *p)
{
	unsigned size_bits;

	if (size < 2)
		return false;
	p->format = (data[0] & 3) == 1   ? ARL_STREAM_NDJSON
		    : (data[0] & 3) == 2 ? ARL_STREAM_JSON_ARRAY
					 : ARL_STREAM_SSE;
	size_bits = (data[0] >> 1) & 7;
	p->event_bytes = size_bits ? (size_t)32 << size_bits : 0;
	p->abandon = (data[0] & 0x10) != 0;
	p->nlengths = data[1] % 16;
	if (size < 2 + p->nlengths)
		return false;
	p->lengths = data + 2;
	p->body = data + 2 + p->nlengths;
	p->body_len = size - 2 - p->nlengths;
	return true;
}

/* Length of chunk number i: the fuzzer's lengths in turn, or the whole
 * body when it gave none. */
static size_t chunk_length(const struct plan *p, size_t i, size_t left)
{
	size_t n;

	if (p->nlengths == 0)
		return left;
	n = p->lengths[i % p->nlengths];
	if (n == 0)
		n = 1;
	return n < left ? n : left;
}

/* Parses the body in one feed. */
static void parse_whole(const struct plan *p, struct arl_stream_usage *out)
{
	struct arl_stream_parser parser;
	int rc;

	if (arl_stream_parser_init(&parser, p->format, p->event_bytes) != 0)
		fail("parser init failed");
	rc = arl_stream_parser_feed(&parser, p->body, p->body_len);
	if (rc < 0 && rc != -EMSGSIZE)
		fail("feed of the whole body returned an unexpected error");
	arl_stream_parser_finish(&parser);
	arl_stream_parser_usage(&parser, out);
	arl_stream_parser_destroy(&parser);
}

static void check_same_usage(const struct arl_stream_usage *a, const struct arl_stream_usage *b)
{
	if (a->events != b->events)
		fail("event count depends on the split");
	if (a->final != b->final || a->ended != b->ended)
		fail("end of stream depends on the split");
	if (a->error != b->error || a->overflow != b->overflow)
		fail("error or overflow depends on the split");
	if (a->has_total != b->has_total || a->total_tokens != b->total_tokens)
		fail("total tokens depend on the split");
	if (a->has_input != b->has_input || a->input_tokens != b->input_tokens)
		fail("input tokens depend on the split");
	if (a->has_output != b->has_output || a->output_tokens != b->output_tokens)
		fail("output tokens depend on the split");
}

/* Feeds the body in the fuzzer's chunks through a tracker bound to a new
 * reservation, then releases or abandons it. Returns the usage seen. */
static void track_chunks(const struct plan *p, struct arl_stream_usage *out)
{
	struct arl_request req = {100, 900, 1};
	struct arl_stream_tracker tracker;
	struct arl_reservation res;
	uint64_t reported = 0;
	bool overflowed = false;
	size_t offset = 0, i;

	if (arl_reserve(segment, bucket, &req, &res) != 0)
		fail("reserve failed");
	if (arl_stream_tracker_init(&tracker, segment, &res, p->format) != 0)
		fail("tracker init failed");
	/* The tracker always uses the default buffer; give it the fuzzer's. */
	arl_stream_parser_destroy(&tracker.parser);
	if (arl_stream_parser_init(&tracker.parser, p->format, p->event_bytes) != 0)
		fail("parser init failed");

	for (i = 0; offset < p->body_len; i++) {
		size_t n = chunk_length(p, i, p->body_len - offset);
		int rc = arl_stream_tracker_feed(&tracker, p->body + offset, n);

		if (rc == -EMSGSIZE)
			overflowed = true;
		else if (rc < 0)
			fail("tracker feed returned an unexpected error");
		else if (overflowed)
			fail("feed accepted input after an overflow");
		else
			reported += (uint64_t)rc;
		offset += n;
	}

	if (p->abandon) {
		arl_stream_tracker_last_usage(&tracker, out);
		arl_stream_tracker_destroy(&tracker);
		out->events = reported;
		return;
	}
	if (arl_stream_tracker_release(&tracker) != 0)
		fail("tracker release failed");
	arl_stream_tracker_last_usage(&tracker, out);
	arl_stream_tracker_destroy(&tracker);
	/* Finishing parses a last NDJSON line that has no newline: one event
	 * that no feed call reported. A feed that overflows returns -EMSGSIZE
	 * and not the events it dispatched before the overflow. */
	if (overflowed ? reported > out->events
		       : out->events != reported &&
				 !(p->format == ARL_STREAM_NDJSON && out->events == reported + 1))
		fail("events reported by feed do not add up to the usage's count");
}

/* Every reservation made so far is settled: nothing in flight, and each
 * grant ended in a release with known or unknown usage. */
static void check_bucket(void)
{
	struct arl_bucket_stats s;

	if (arl_bucket_stats(segment, bucket, &s) != 0)
		fail("bucket stats failed");
	if (s.inflight != 0)
		fail("a reservation is still in flight after the tracker ended");
	if (s.granted != s.released + s.fallback_releases)
		fail("grants and releases differ");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arl_stream_usage whole, chunked;
	struct plan p;

	if (!parse_plan(data, size, &p))
		return 0;
	if (!segment)
		open_segment();

	parse_whole(&p, &whole);
	track_chunks(&p, &chunked);
	/* An abandoned stream is never finished, so a last NDJSON line without
	 * its newline is not counted; the split must not add events. */
	if (p.abandon && chunked.events > whole.events)
		fail("an abandoned stream counted more events than the whole parse");
	if (!p.abandon)
		check_same_usage(&whole, &chunked);
	check_bucket();
	/* A usage of up to ARL_MAX_TOKENS may have emptied the bucket: move the
	 * test clock past its window so the next input starts with it full. */
	if (arl_test_clock_set(segment, arl_now(segment) + 2 * ARL_MIN_WINDOW_NS) != 0)
		fail("cannot advance the test clock");
	return 0;
}
