/* SPDX-License-Identifier: MIT */
#include "state.h"

#include <stdlib.h>

/*
 * liburcu 0.13 publishes with a compiler barrier, a memory barrier and a
 * volatile store, none of which ThreadSanitizer models as ordering. In a TSan
 * build, the publish and each dereference also tell TSan about the
 * release/acquire pair that rcu_assign_pointer() and rcu_dereference()
 * provide; elsewhere these compile to nothing.
 */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define TSAN_RELEASE(addr) __tsan_release(addr)
#define TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#else
#define TSAN_RELEASE(addr) ((void)(addr))
#define TSAN_ACQUIRE(addr) ((void)(addr))
#endif

/* RCU-protected: read with rcu_dereference() inside a read-side section,
 * written with rcu_assign_pointer() by the main thread only. */
static struct arld_state *current;

struct arld_state *arld_state_build(struct arl *arl, const struct arld_config *config,
				    uint64_t reloads)
{
	struct arld_state *s;
	uint32_t i;

	s = calloc(1, sizeof(*s) + config->nbuckets * sizeof(s->buckets[0]));
	if (!s)
		return NULL;
	s->sweep_interval_ns = config->sweep_interval_ns;
	s->reservation_ttl_ns = config->reservation_ttl_ns;
	s->reloads = reloads;
	s->nbuckets = config->nbuckets;
	for (i = 0; i < config->nbuckets; i++) {
		struct arld_bucket_ref *ref = &s->buckets[i];

		snprintf(ref->name, sizeof(ref->name), "%s", config->buckets[i].name);
		ref->config = config->buckets[i].config;
		ref->config.name = ref->name;
		if (arl_bucket_find(arl, ref->name, &ref->handle) != 0)
			ref->handle.index = ref->handle.gen = 0;
	}
	return s;
}

static void free_state(struct rcu_head *head)
{
	free(caa_container_of(head, struct arld_state, rcu));
}

void arld_state_publish(struct arld_state *fresh)
{
	struct arld_state *old = current;

	/* The release in rcu_assign_pointer() orders the state's fields
	 * before the pointer, for readers that load it with rcu_dereference(). */
	TSAN_RELEASE(&current);
	rcu_assign_pointer(current, fresh);
	if (old)
		call_rcu(&old->rcu, free_state);
}

const struct arld_state *arld_state_current(void)
{
	const struct arld_state *s = rcu_dereference(current);

	TSAN_ACQUIRE(&current);
	return s;
}

void arld_state_read_lock(void)
{
	rcu_read_lock();
}

void arld_state_read_unlock(void)
{
	rcu_read_unlock();
}

void arld_state_shutdown(void)
{
	arld_state_publish(NULL);
	rcu_barrier();
}
