/* SPDX-License-Identifier: MIT */
/*
 * reference.h - the two-limit GCRA accounting the lock-based baselines run
 * under their lock: the same arithmetic as arl's (costs rounded up, refunds
 * rounded down, a refund never lifts a limit above a full bucket), written
 * as plain code on a struct, as a user would write it.
 */
#ifndef ARL_BENCH_REFERENCE_H
#define ARL_BENCH_REFERENCE_H

#include "compare.h"

struct ref_state {
	uint64_t tat_ns[2]; /* theoretical arrival time: requests, tokens */
	uint64_t inflight;
};

__extension__ typedef unsigned __int128 ref_u128;

static inline uint64_t ref_cost_ns(uint64_t units)
{
	return (uint64_t)(((ref_u128)units * BENCH_WINDOW_NS + BENCH_AMOUNT - 1) / BENCH_AMOUNT);
}

static inline uint64_t ref_refund_ns(uint64_t units)
{
	return (uint64_t)((ref_u128)units * BENCH_WINDOW_NS / BENCH_AMOUNT);
}

/* Charges both limits if both stay within a full bucket. Returns 0, or 1
 * when a limit rejected the request (nothing is charged then). */
static inline int ref_reserve(struct ref_state *s, uint64_t now, uint64_t tokens)
{
	const uint64_t units[2] = {1, tokens};
	const uint64_t tolerance = ref_cost_ns(BENCH_AMOUNT);
	uint64_t next[2];
	int i;

	for (i = 0; i < 2; i++) {
		uint64_t base = s->tat_ns[i] > now ? s->tat_ns[i] : now;

		next[i] = base + ref_cost_ns(units[i]);
		if (next[i] - now > tolerance)
			return 1;
	}
	s->tat_ns[0] = next[0];
	s->tat_ns[1] = next[1];
	s->inflight++;
	return 0;
}

/* Refunds the unused tokens and frees the in-flight slot. */
static inline void ref_release(struct ref_state *s, uint64_t now, uint64_t reserved, uint64_t used)
{
	uint64_t tat = s->tat_ns[1];

	if (used < reserved) {
		uint64_t refund = ref_refund_ns(reserved - used);
		uint64_t next = tat > refund ? tat - refund : 0;

		if (next < now)
			next = now;
		if (next < tat)
			s->tat_ns[1] = next;
	}
	s->inflight--;
}

#endif /* ARL_BENCH_REFERENCE_H */
