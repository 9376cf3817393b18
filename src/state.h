/* SPDX-License-Identifier: MIT */
/*
 * state.h - arld's running state: the configuration in force and the index
 * of the buckets it names, replaced as a whole on SIGHUP.
 *
 * The state is RCU-protected with liburcu's bulletproof flavor (urcu-bp),
 * which needs no thread registration, so the metrics server's thread (run
 * by libmicrohttpd) can read it too. Readers (the sweeper thread and the
 * metrics thread) take no lock: they bracket their use with
 * arld_state_read_lock() and arld_state_read_unlock() and never keep the
 * pointer past the unlock. The writer (the main thread, on SIGHUP) builds
 * a new state, publishes it with rcu_assign_pointer() and frees the old one
 * with call_rcu() once every reader that could see it has left.
 */
#ifndef ARLD_STATE_H
#define ARLD_STATE_H

#include <urcu-bp.h>

#include "config.h"

struct arld_bucket_ref {
	char name[ARL_NAME_MAX + 1];
	struct arl_bucket handle; /* as found when the state was built */
	struct arl_bucket_config config;
};

struct arld_state {
	struct rcu_head rcu;
	uint64_t sweep_interval_ns;
	uint64_t reservation_ttl_ns;
	uint64_t reloads; /* SIGHUP reloads applied before this state */
	uint32_t nbuckets;
	struct arld_bucket_ref buckets[]; /* the configured buckets */
};

/*
 * Builds a state from a configuration, with the handle of each configured
 * bucket that exists in the segment (a zero handle otherwise). Returns NULL
 * when out of memory.
 */
struct arld_state *arld_state_build(struct arl *arl, const struct arld_config *config,
				    uint64_t reloads);

/* Publishes a state built by arld_state_build() and retires the previous
 * one, which is freed after a grace period. Main thread only. */
void arld_state_publish(struct arld_state *fresh);

/* The state in force; valid between arld_state_read_lock() and
 * arld_state_read_unlock() in the calling thread. NULL before the first
 * publish. */
const struct arld_state *arld_state_current(void);

void arld_state_read_lock(void);
void arld_state_read_unlock(void);

/* Retires the last state and waits until every callback has run (arld's
 * exit, after the reader threads stopped). */
void arld_state_shutdown(void);

#endif /* ARLD_STATE_H */
