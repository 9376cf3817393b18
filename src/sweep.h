/* SPDX-License-Identifier: MIT */
/*
 * sweep.h - the supervisor's sweep over a live segment: reclaims the
 * reservations of dead owners and those idle past the reservation TTL, and
 * frees process entries whose owners died.
 */
#ifndef ARL_SWEEP_H
#define ARL_SWEEP_H

#include <arl.h>

enum arl_reclaim_reason {
	ARL_RECLAIM_DEAD_OWNER = 1, /* the owning process exited or was killed */
	ARL_RECLAIM_IDLE = 2,	    /* no activity for longer than the TTL */
	ARL_RECLAIM_ADMIN = 3,	    /* an operator released it (arlctl release) */
};

/* One reclaimed reservation, reported to the caller for logging. */
struct arl_reclaim_event {
	uint32_t slot;
	uint32_t gen;
	enum arl_reclaim_reason reason;
	uint32_t state;	   /* ARL_RES_* the slot was in */
	int32_t owner_pid; /* 0 when the owner entry was unreadable */
	char bucket[ARL_NAME_MAX + 1];
	uint64_t tokens;  /* estimate kept by the fallback accounting */
	uint64_t idle_ns; /* time since the last activity */
	uint64_t request_id;
};

struct arl_sweep_options {
	uint64_t reservation_ttl_ns; /* 0: never reclaim for idleness */
	void (*on_reclaim)(void *context, const struct arl_reclaim_event *event);
	void (*on_anomaly)(void *context, uint32_t slot, const char *what);
	void *context;
};

struct arl_sweep_result {
	uint32_t live;		    /* reservations left live */
	uint32_t reclaimed_dead;    /* reservations of dead owners */
	uint32_t reclaimed_idle;    /* reservations idle past the TTL */
	uint32_t processes_cleared; /* dead process entries freed */
	uint32_t anomalies;	    /* slots with values no client writes */
	uint32_t inflight_repaired; /* buckets whose in-flight count was reset */
	uint32_t waiters_skipped;   /* dead waiters skipped at a queue's head */
	uint32_t buckets_recycled;  /* retired bucket slots freed for reuse */
};

/*
 * Runs one sweep. Returns 0 or a negative ARL_E* code; what was done is in
 * *result. Safe against clients working concurrently, and against a second
 * sweeper: each reclaim is a CAS on the slot word, so no slot is reclaimed
 * twice.
 */
int arl_sweep(struct arl *arl, const struct arl_sweep_options *options,
	      struct arl_sweep_result *result);

/*
 * Releases one reservation slot with the fallback accounting, for an
 * operator (arlctl release): a committed reservation stuck in a live
 * process, or any slot of a dead owner. Fills *event as a reclaim would.
 * Returns 0, ARL_ENOENT when the slot is free, ARL_EAGAIN when a live
 * process is working on it right now (reserving, waiting or releasing),
 * ARL_EINVAL for a slot out of range or a read-only handle.
 */
int arl_sweep_release_slot(struct arl *arl, uint32_t slot, struct arl_reclaim_event *event);

/* Marks the end of a sweep in the segment: bumps the sweep count and the
 * heartbeat, and wakes every process waiting for the next sweep. */
void arl_sweep_publish(struct arl *arl);

#endif /* ARL_SWEEP_H */
