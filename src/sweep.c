/* SPDX-License-Identifier: MIT */
/*
 * sweep.c - reclaiming what dead or silent clients left behind.
 *
 * Liveness comes from the OFD lock each attached process holds on its
 * process entry's byte: the kernel drops it at death, whatever the pid
 * namespace, so a reused pid never keeps a dead owner alive.
 */
#include "sweep.h"

/* Per-sweep liveness cache: one entry per process-table index. */
enum { LIVENESS_UNKNOWN = 0, LIVENESS_ALIVE };

/*
 * Returns whether a process entry's owner is alive. Only "alive" is cached
 * for the sweep: once a dead owner's last slot is reclaimed, a new process
 * may take the entry and reserve within the same sweep, so a cached "dead"
 * would reclaim its live reservations. Callers check after reading the slot
 * word, so an owner named there registered (took the lock) before.
 */
static bool owner_alive(struct arl *arl, uint8_t *cache, uint32_t index)
{
	if (index == arl->process_index)
		return true; /* this process: its own lock never conflicts */
	if (cache[index] == LIVENESS_ALIVE)
		return true;
	if (!arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + index))
		return false;
	cache[index] = LIVENESS_ALIVE;
	return true;
}

static uint64_t *reason_counter(struct arl_shm_bucket *b, enum arl_reclaim_reason reason)
{
	switch (reason) {
	case ARL_RECLAIM_IDLE:
		return &b->stats.reclaimed_idle;
	case ARL_RECLAIM_ADMIN:
		return &b->stats.reclaimed_admin;
	default:
		return &b->stats.reclaimed_dead;
	}
}

static void describe(struct arl *arl, const struct arl_shm_reservation *r, uint64_t word,
		     struct arl_shm_bucket *b, struct arl_reclaim_event *ev)
{
	uint32_t owner = arl_impl_res_owner(word);

	memset(ev, 0, sizeof(*ev));
	ev->slot = (uint32_t)(r - arl_impl_reservations(arl));
	ev->gen = arl_impl_res_gen(word);
	ev->state = arl_impl_res_state(word);
	if (owner != 0 && owner <= arl->header->process_capacity)
		ev->owner_pid = arl_load_relaxed(&arl_impl_processes(arl)[owner - 1].pid);
	if (b)
		arl_impl_read_name(b, ev->bucket); /* the chain's first bucket */
	ev->tokens = arl_impl_sat_add(arl_load_relaxed(&r->input_tokens),
				      arl_load_relaxed(&r->output_tokens));
	ev->request_id = arl_load_relaxed(&r->request_id);
}

/*
 * Finishes a slot this sweeper moved to RECLAIMING. A slot that was only
 * CLAIMED never sent its request, so every charge it has comes back. From
 * any later state the request may have reached the provider, so only the
 * in-flight slots come back and the tokens stay charged (actual = reserved).
 */
static void finish_reclaim(struct arl *arl, struct arl_shm_reservation *r, uint64_t word,
			   uint32_t old_state, enum arl_reclaim_reason reason)
{
	struct arl_impl_chain chain;
	uint64_t tokens = arl_impl_sat_add(arl_load_relaxed(&r->input_tokens),
					   arl_load_relaxed(&r->output_tokens));
	uint32_t c;

	ARL_FAULT_POINT("sweep_after_claim");
	arl_impl_resolve_chain(arl, r, &chain);
	arl_impl_give_back(r, &chain, old_state == ARL_RES_CLAIMED ? ~0u : ARL_MARKS_INFLIGHT,
			   arl_now(arl));
	/* Count the reclaim once: a sweeper that takes over a slot whose
	 * sweeper died after counting finds the COUNTED mark set. */
	if (!(__atomic_fetch_or(&r->marks, ARL_MARK_COUNTED, __ATOMIC_RELAXED) & ARL_MARK_COUNTED)) {
		for (c = 0; c < chain.n; c++) {
			struct arl_shm_bucket *b = chain.bucket[c];

			if (!b)
				continue;
			if (old_state == ARL_RES_COMMITTED) {
				arl_add_relaxed(&b->stats.fallback_releases, 1);
				arl_add_relaxed(&b->stats.fallback_tokens, tokens);
			}
			arl_add_relaxed(reason_counter(b, reason), 1);
		}
	}
	/* Wake before the free: once the slot is free, nothing keeps the
	 * chain's buckets from being recycled. */
	arl_impl_wake_chain(&chain);
	ARL_FAULT_POINT("sweep_before_free");
	arl_impl_free_slot(arl, r, word);
}

/* Decides whether a slot must be reclaimed, and why. Returns 0 to leave it. */
static int reclaim_reason(struct arl *arl, const struct arl_sweep_options *opt, uint8_t *cache,
			  const struct arl_shm_reservation *r, uint64_t word, uint64_t now)
{
	uint32_t owner = arl_impl_res_owner(word);
	uint32_t state = arl_impl_res_state(word);
	uint64_t last;

	if (owner == 0 || !owner_alive(arl, cache, owner - 1))
		return ARL_RECLAIM_DEAD_OWNER;
	if (state == ARL_RES_RECLAIMING)
		return ARL_RECLAIM_IDLE; /* a sweeper stopped mid-reclaim: finish it */
	if (state != ARL_RES_COMMITTED || opt->reservation_ttl_ns == 0)
		return 0;
	last = arl_load_relaxed(&r->last_activity_ns);
	if (now > last && now - last > opt->reservation_ttl_ns)
		return ARL_RECLAIM_IDLE;
	return 0;
}

static void sweep_slot(struct arl *arl, const struct arl_sweep_options *opt, uint8_t *cache,
		       struct arl_shm_reservation *r, uint64_t now, struct arl_sweep_result *res)
{
	uint64_t word = arl_load_acquire(&r->word);
	uint32_t state = arl_impl_res_state(word);
	uint32_t owner = arl_impl_res_owner(word);
	struct arl_reclaim_event ev;
	uint64_t reclaiming;
	int reason;

	if (state == ARL_RES_FREE)
		return;
	if (state > ARL_RES_RECLAIMING || owner > arl->header->process_capacity) {
		res->anomalies++;
		if (opt->on_anomaly)
			opt->on_anomaly(opt->context, (uint32_t)(r - arl_impl_reservations(arl)),
					state > ARL_RES_RECLAIMING ? "unknown state"
								   : "owner out of range");
		return;
	}
	reason = reclaim_reason(arl, opt, cache, r, word, now);
	if (reason == 0) {
		res->live++;
		return;
	}

	/* The CAS keeps the generation: a release racing with it fails on the
	 * state, and a second sweeper fails on the word, so exactly one party
	 * finishes the slot. A slot already RECLAIMING was left by a sweeper
	 * that died; this one takes it over from the same word. */
	reclaiming = arl_impl_res_word(arl_impl_res_gen(word), ARL_RES_RECLAIMING, owner);
	if (state != ARL_RES_RECLAIMING &&
	    !arl_cas(&r->word, &word, reclaiming, __ATOMIC_ACQUIRE))
		return;
	/* A slot claimed but not yet recorded has no chain: name no bucket. */
	describe(arl, r, word,
		 arl_load_relaxed(&r->nbuckets) == 0
			 ? NULL
			 : arl_impl_bucket(arl, arl_load_relaxed(&r->bucket_index[0]),
					   arl_load_relaxed(&r->bucket_gen[0])),
		 &ev);
	ev.reason = (enum arl_reclaim_reason)reason;
	ev.idle_ns = arl_impl_sat_sub(now, arl_load_relaxed(&r->last_activity_ns));
	finish_reclaim(arl, r, reclaiming, state, ev.reason);
	if (reason == ARL_RECLAIM_IDLE)
		res->reclaimed_idle++;
	else
		res->reclaimed_dead++;
	if (opt->on_reclaim)
		opt->on_reclaim(opt->context, &ev);
}

/* Frees process entries whose owner died and which no slot names any more. */
static void sweep_processes(struct arl *arl, uint8_t *cache, const uint32_t *referenced,
			    struct arl_sweep_result *res)
{
	struct arl_shm_process *procs = arl_impl_processes(arl);
	uint32_t i;

	for (i = 0; i < arl->header->process_capacity; i++) {
		struct arl_shm_process *p = &procs[i];

		if (arl_load_acquire(&p->state) != ARL_PROCESS_LIVE || owner_alive(arl, cache, i))
			continue;
		if (referenced[i] != 0)
			continue;
		/* Hold the entry's lock while freeing it, so no new process can
		 * register on it meanwhile; failing to take it means one did. */
		if (arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_WRLCK, ARL_PROCESS_LOCK_BASE + i) != 0)
			continue;
		if (arl_load_acquire(&p->state) == ARL_PROCESS_LIVE) {
			arl_store_release(&p->state, ARL_PROCESS_FREE);
			res->processes_cleared++;
		}
		arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_UNLCK, ARL_PROCESS_LOCK_BASE + i);
	}
}

/*
 * Resets the in-flight count of a bucket that no reservation references. A
 * client killed between clearing its slot's in-flight mark and giving the
 * slot back leaves the count one too high for ever. With no live slot on the
 * bucket, the true count is 0. The in-flight word (count and version) is
 * read before and after the scan and reset by CAS from that value, so any
 * take or give meanwhile bumps the version and makes the reset fail. The acquire
 * load before the scan pairs with the acq_rel take in arl.h, so a take seen
 * there has its slot record visible to the scan.
 */
static void repair_inflight(struct arl_shm_bucket *b, uint64_t before, uint32_t referencing,
			    struct arl_sweep_result *res)
{
	uint64_t now = arl_load_acquire(&b->inflight);

	if (referencing != 0 || arl_impl_inflight_count(now) == 0 || now != before)
		return;
	if (arl_cas(&b->inflight, &now, (now & ~0xffffffffull) + ARL_INFLIGHT_VERSION,
		    __ATOMIC_RELAXED)) {
		arl_add_relaxed(&b->stats.inflight_repaired, 1);
		res->inflight_repaired++;
	}
}

/*
 * Skips a dead waiter at the head of a bucket's wait queue. The next waiter
 * skips dead ones behind the head itself. Only a waiter that died while it
 * was the head, or between taking its ticket and writing it, needs the
 * sweeper. An unwritten head is skipped once it stayed so for a whole sweep.
 */
static void unblock_queue(struct arl *arl, struct arl_shm_bucket *b, struct arl_sweep_result *res)
{
	uint32_t head = arl_load_acquire(&b->queue_head);
	uint64_t entry;
	bool dead;

	if (head == arl_load_acquire(&b->queue_tail)) {
		arl_store_relaxed(&b->queue_stall_seen, 0u);
		return;
	}
	entry = arl_load_acquire(&b->queue[head % ARL_QUEUE_SLOTS]);
	if ((uint32_t)entry == head) {
		dead = (uint32_t)(entry >> 56) == ARL_WAITER_ABANDONED ||
		       !arl_impl_waiter_alive(arl, entry);
	} else {
		dead = arl_load_relaxed(&b->queue_stall_seen) &&
		       arl_load_relaxed(&b->queue_stall_head) == head;
		arl_store_relaxed(&b->queue_stall_head, head);
		arl_store_relaxed(&b->queue_stall_seen, 1u);
	}
	if (!dead)
		return;
	arl_impl_queue_advance(arl, b, head);
	arl_store_relaxed(&b->queue_stall_seen, 0u);
	res->waiters_skipped++;
}

/* Frees retired bucket slots that no reservation names any more. Tries the
 * admin lock without waiting: an administrator holding it will recycle, or
 * the next sweep will. */
static void recycle_buckets(struct arl *arl, struct arl_sweep_result *res)
{
	if (pthread_mutex_trylock(&arl->register_lock) != 0)
		return;
	if (arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_WRLCK, 1) == 0) {
		res->buckets_recycled += arl_impl_recycle_buckets(arl);
		arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_UNLCK, 1);
	}
	pthread_mutex_unlock(&arl->register_lock);
}

static void sweep_buckets(struct arl *arl, const uint64_t *inflight_before,
			  const uint32_t *referencing, struct arl_sweep_result *res)
{
	struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i;

	for (i = 0; i < arl->header->bucket_capacity; i++) {
		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_LIVE)
			continue;
		repair_inflight(&buckets[i], inflight_before[i], referencing[i], res);
		unblock_queue(arl, &buckets[i], res);
	}
}

/* What count_queue_references() fills: one count per process entry. */
struct queue_references {
	uint32_t *referenced;
	uint32_t capacity;
};

static void count_queue_owner(void *context, uint32_t owner)
{
	struct queue_references *refs = context;

	if (owner != 0 && owner <= refs->capacity)
		refs->referenced[owner - 1]++;
}

/* Counts the entries of every bucket's queue as references to their process
 * entries, as arl_impl_entry_references() does for one entry. */
static void count_queue_references(struct arl *arl, uint32_t *referenced)
{
	struct queue_references refs = {referenced, arl->header->process_capacity};

	arl_impl_visit_queue_owners(arl, count_queue_owner, &refs);
}

/* Counts, per bucket, the slots that reference it in any state but FREE. */
static void count_references(struct arl *arl, const struct arl_shm_reservation *r,
			     uint32_t *referencing)
{
	uint32_t c, n = arl_load_relaxed(&r->nbuckets);

	if (arl_impl_res_state(arl_load_acquire(&r->word)) == ARL_RES_FREE)
		return;
	for (c = 0; c < n && c < ARL_MAX_CHAIN; c++) {
		uint32_t index = arl_load_relaxed(&r->bucket_index[c]);

		if (index < arl->header->bucket_capacity)
			referencing[index]++;
	}
}

int arl_sweep(struct arl *arl, const struct arl_sweep_options *options,
	      struct arl_sweep_result *result)
{
	struct arl_shm_reservation *slots;
	uint32_t cap_p, cap_b, i, *referenced = NULL, *referencing = NULL;
	uint64_t *inflight_before = NULL;
	uint8_t *cache = NULL;
	uint64_t now;
	int rc;

	if (!arl || !options || !result || arl->read_only)
		return ARL_EINVAL;
	memset(result, 0, sizeof(*result));
	cap_p = arl->header->process_capacity;
	cap_b = arl->header->bucket_capacity;
	cache = calloc(cap_p, 1);
	referenced = calloc(cap_p, sizeof(*referenced));
	inflight_before = calloc(cap_b, sizeof(*inflight_before));
	referencing = calloc(cap_b, sizeof(*referencing));
	if (!cache || !referenced || !inflight_before || !referencing) {
		rc = ARL_ENOMEM;
		goto out;
	}

	/* In-flight counts before the scan, for repair_inflight(). */
	for (i = 0; i < cap_b; i++)
		inflight_before[i] = arl_load_acquire(&arl_impl_buckets(arl)[i].inflight);

	slots = arl_impl_reservations(arl);
	now = arl_now(arl);
	for (i = 0; i < arl->header->reservation_capacity; i++) {
		uint64_t word;
		uint32_t owner;

		sweep_slot(arl, options, cache, &slots[i], now, result);
		word = arl_load_acquire(&slots[i].word);
		owner = arl_impl_res_owner(word);
		if (arl_impl_res_state(word) != ARL_RES_FREE && owner != 0 && owner <= cap_p)
			referenced[owner - 1]++;
		count_references(arl, &slots[i], referencing);
	}
	count_queue_references(arl, referenced);
	sweep_processes(arl, cache, referenced, result);
	sweep_buckets(arl, inflight_before, referencing, result);
	recycle_buckets(arl, result);
	rc = 0;
out:
	free(cache);
	free(referenced);
	free(inflight_before);
	free(referencing);
	return rc;
}

int arl_sweep_release_slot(struct arl *arl, uint32_t slot, struct arl_reclaim_event *event)
{
	struct arl_shm_reservation *r;
	uint8_t *cache;
	uint64_t word, reclaiming;
	uint32_t state, owner;
	bool alive;

	if (!arl || !event || arl->read_only || slot >= arl->header->reservation_capacity)
		return ARL_EINVAL;
	r = &arl_impl_reservations(arl)[slot];
	word = arl_load_acquire(&r->word);
	state = arl_impl_res_state(word);
	owner = arl_impl_res_owner(word);
	if (state == ARL_RES_FREE)
		return ARL_ENOENT;
	if (state > ARL_RES_RECLAIMING || owner > arl->header->process_capacity)
		return ARL_EINVAL;
	cache = calloc(arl->header->process_capacity, 1);
	if (!cache)
		return ARL_ENOMEM;
	alive = owner != 0 && owner_alive(arl, cache, owner - 1);
	free(cache);
	/* A live owner may be between steps of a claim, a wait or a release:
	 * taking the slot then would free it under that process. */
	if (alive && state != ARL_RES_COMMITTED)
		return ARL_EAGAIN;

	reclaiming = arl_impl_res_word(arl_impl_res_gen(word), ARL_RES_RECLAIMING, owner);
	if (state != ARL_RES_RECLAIMING && !arl_cas(&r->word, &word, reclaiming, __ATOMIC_ACQUIRE))
		return ARL_EAGAIN; /* the owner released it meanwhile, or moved on */
	describe(arl, r, word,
		 arl_load_relaxed(&r->nbuckets) == 0
			 ? NULL
			 : arl_impl_bucket(arl, arl_load_relaxed(&r->bucket_index[0]),
					   arl_load_relaxed(&r->bucket_gen[0])),
		 event);
	event->reason = ARL_RECLAIM_ADMIN;
	event->idle_ns = arl_impl_sat_sub(arl_now(arl), arl_load_relaxed(&r->last_activity_ns));
	finish_reclaim(arl, r, reclaiming, state, ARL_RECLAIM_ADMIN);
	return 0;
}

void arl_sweep_publish(struct arl *arl)
{
	struct arl_shm_header *h = arl->header;

	ARL_FAULT_POINT("sweep_before_publish");

	arl_store_relaxed(&h->supervisor_heartbeat_ns, arl_now(arl));
	arl_add_relaxed(&h->sweep_count, 1);
	/* Paired with the acquire load of sweep_seq by processes waiting for
	 * a sweep: they see the reclaims and the count once the seq moved. */
	__atomic_fetch_add(&h->sweep_seq, 1, __ATOMIC_RELEASE);
	arl_impl_futex(&h->sweep_seq, FUTEX_WAKE, INT_MAX, NULL);
}
