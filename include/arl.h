/* SPDX-License-Identifier: MIT */
/*
 * arl.h - the arl client API: processes on one host share an API quota
 * (requests and tokens per window) through one POSIX shared-memory segment.
 *
 * A client attaches to the segment, looks up a bucket by name, reserves an
 * estimate before each request and releases with the real usage when the
 * response ends. The unused part of the estimate is refunded; usage above it
 * is charged as overage. Every limit is a token bucket kept as a GCRA
 * theoretical arrival time (TAT) updated by compare-and-swap, so a
 * reservation costs a few atomic instructions and no lock.
 *
 * Threads and processes: every function is safe to call from any thread of
 * any attached process. A process that forks after attaching is a new owner:
 * the child registers itself on its first call and the parent's reservations
 * stay the parent's. The header never prints; every function returns 0 or a
 * negative ARL_E* code, and arl_strerror() names it.
 *
 * Everything is inline: include this header, link nothing. It compiles as
 * C11 and as C++; define _GNU_SOURCE before any include, since the OFD locks
 * (F_OFD_SETLK) exist only under it.
 * Shared fields are plain integers accessed through the GCC/Clang __atomic
 * builtins, which keep the C11 memory orders in both languages.
 */
#ifndef ARL_H
#define ARL_H

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/futex.h>

#ifndef F_OFD_SETLK
#error "arl.h needs the OFD locks of <fcntl.h>: define _GNU_SOURCE before any #include"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ARL_VERSION_MAJOR 0
#define ARL_VERSION_MINOR 1
#define ARL_VERSION_PATCH 0

/* Layout of the shared segment; a segment of another version is refused. */
#define ARL_LAYOUT_VERSION 1u

/* Definitions are static inline unless a build of libarl.so redefines it. */
#ifndef ARL_API
#define ARL_API static inline
#endif

/* ------------------------------------------------------------------------
 * Error codes
 * ------------------------------------------------------------------------ */

enum {
	ARL_OK = 0,
	ARL_EINVAL = -EINVAL,	    /* an argument is invalid */
	ARL_ENOENT = -ENOENT,	    /* no segment or bucket of that name */
	ARL_ENOMEM = -ENOMEM,	    /* out of process memory */
	ARL_EAGAIN = -EAGAIN,	    /* a limit is exhausted; retry at retry_at_ns */
	ARL_ETIMEDOUT = -ETIMEDOUT, /* the deadline passed before the request fit */
	ARL_ESTALE = -ESTALE,	    /* handle released, reclaimed or removed */
	ARL_EEXIST = -EEXIST,	    /* a bucket of that name exists */
	ARL_EACCES = -EACCES,	    /* segment owner or mode is not the expected one */
	ARL_ENAMETOOLONG = -ENAMETOOLONG,
	ARL_EOVERFLOW = -EOVERFLOW, /* a token count is too large */
	ARL_ENOSPC = -ENOSPC,	    /* /dev/shm has no room for the segment */
	ARL_EROFS = -EROFS,	    /* the handle was attached read-only */
	ARL_ENEVERFITS = -1001,	    /* the request exceeds a limit's burst */
	ARL_ETABLEFULL = -1002,	    /* the reservation, bucket or process table is full */
	ARL_EBADSEG = -1003,	    /* the segment is corrupt, truncated or foreign */
	ARL_EVERSION = -1004,	    /* the segment has another layout version */
	ARL_ENOTREADY = -1005,	    /* the segment's creator has not finished it */
	ARL_ESYSTEM = -1006,	    /* a system call failed; errno-detail in the message */
	ARL_ETIMENS = -1007,	    /* this process reads another monotonic clock */
	ARL_EDRAINING = -1008,	    /* the segment is draining: no new reservations */
};

/* Returns a static English description of an arl error code. */
ARL_API const char *arl_strerror(int code)
{
	switch (code) {
	case ARL_OK:
		return "success";
	case ARL_EINVAL:
		return "invalid argument";
	case ARL_ENOENT:
		return "segment or bucket not found";
	case ARL_ENOMEM:
		return "out of memory";
	case ARL_EAGAIN:
		return "limit exhausted, retry later";
	case ARL_ETIMEDOUT:
		return "deadline passed before the request fit";
	case ARL_ESTALE:
		return "reservation or bucket handle is stale (released, reclaimed or removed)";
	case ARL_EEXIST:
		return "bucket already exists";
	case ARL_EACCES:
		return "segment owner or permissions are not the expected ones";
	case ARL_ENAMETOOLONG:
		return "name too long";
	case ARL_EOVERFLOW:
		return "token count too large";
	case ARL_ENOSPC:
		return "no space left for the segment in /dev/shm";
	case ARL_EROFS:
		return "handle is attached read-only";
	case ARL_ENEVERFITS:
		return "request can never fit: it exceeds a limit's burst";
	case ARL_ETABLEFULL:
		return "table full";
	case ARL_EBADSEG:
		return "segment is corrupt, truncated or not an arl segment";
	case ARL_EVERSION:
		return "segment has another layout version";
	case ARL_ENOTREADY:
		return "segment is not ready: its creator has not finished it";
	case ARL_ESYSTEM:
		return "system call failed";
	case ARL_ETIMENS:
		return "process is in another time namespace than the segment's creator";
	case ARL_EDRAINING:
		return "segment is draining: it takes no new reservations";
	default:
		return "unknown arl error";
	}
}

/* ------------------------------------------------------------------------
 * Sizes and limits
 * ------------------------------------------------------------------------ */

#define ARL_NAME_MAX 63		    /* bytes of a bucket name, without the NUL */
#define ARL_PROFILE_MAX 15	    /* bytes of a provider profile name, without the NUL */
#define ARL_SHM_NAME_MAX 200	    /* bytes of a segment name, without the NUL */
#define ARL_MAX_LIMITS 4	    /* limits per bucket */
#define ARL_CACHE_LINE 64	    /* bytes */
#define ARL_MAX_TOKENS (1ull << 40) /* largest token count one call accepts */
#define ARL_DEFAULT_SHM "/arl"
#define ARL_DEFAULT_BUCKETS 256u
#define ARL_DEFAULT_RESERVATIONS 4096u
#define ARL_DEFAULT_PROCESSES 1024u
#define ARL_MAX_TABLE 1048576u	    /* largest capacity of any table */
#define ARL_MIN_WINDOW_NS 1000000000ull
#define ARL_MAX_WINDOW_NS (86400ull * 1000000000ull)

/* The unit a limit counts. A tokens limit charges input plus output tokens. */
enum arl_unit {
	ARL_UNIT_REQUESTS = 1,
	ARL_UNIT_TOKENS = 2,
	ARL_UNIT_INPUT_TOKENS = 3,
	ARL_UNIT_OUTPUT_TOKENS = 4,
};

/* Returns the name of a unit as configuration files and listings spell it
 * ("requests", "tokens", "input_tokens", "output_tokens"), or "unknown". */
ARL_API const char *arl_unit_name(uint32_t unit)
{
	switch (unit) {
	case ARL_UNIT_REQUESTS:
		return "requests";
	case ARL_UNIT_TOKENS:
		return "tokens";
	case ARL_UNIT_INPUT_TOKENS:
		return "input_tokens";
	case ARL_UNIT_OUTPUT_TOKENS:
		return "output_tokens";
	default:
		return "unknown";
	}
}

/* Bucket flags. */
#define ARL_BUCKET_NO_REFUND 0x1u	/* unused tokens never come back */
#define ARL_BUCKET_IGNORE_OVERAGE 0x2u	/* usage above the estimate is not charged */
#define ARL_BUCKET_DISCOVER 0x4u	/* learn the limits from the provider's headers */
#define ARL_BUCKET_KNOWN_FLAGS 0x7u

/* ------------------------------------------------------------------------
 * Shared-memory layout. Every arl_shm_* struct lives in the segment, which
 * each process maps at its own address: positions are offsets or indexes,
 * never pointers. Fields written by one process and read by another are
 * accessed only through the atomic helpers below.
 * ------------------------------------------------------------------------ */

#define ARL_MAGIC 0x31474553204c5241ull /* "ARL SEG1" little-endian */
#define ARL_READY 0x52454459u		/* "REDY": the header is complete */

/* Header flags. */
#define ARL_SEG_TEST_CLOCK 0x1u /* time is test_clock_ns, advanced by a test */

#define ARL_ALIGNED __attribute__((aligned(ARL_CACHE_LINE)))

struct arl_shm_header {
	/* Identity and layout, written once by the creator before ready. */
	uint64_t magic;
	uint32_t layout_version;
	uint32_t ready; /* ARL_READY once complete, stored with release */
	uint64_t layout_signature;
	uint64_t segment_size; /* bytes */
	uint64_t created_ns;   /* CLOCK_MONOTONIC at creation */
	uint32_t flags;	       /* ARL_SEG_* */
	uint32_t bucket_capacity;
	uint32_t reservation_capacity;
	uint32_t process_capacity;
	uint64_t buckets_offset; /* bytes from the segment start */
	uint64_t reservations_offset;
	uint64_t processes_offset;
	int64_t timens_offset_ns; /* creator's CLOCK_MONOTONIC time-namespace offset */

	/* Supervisor state, written by arld. */
	ARL_ALIGNED int32_t supervisor_pid;
	uint32_t sweep_seq;		 /* futex word: bumped after each sweep */
	uint64_t sweep_count;		 /* sweeps completed */
	uint64_t supervisor_heartbeat_ns; /* arl clock at the last sweep */
	uint32_t draining;		 /* 1: reserves fail with ARL_EDRAINING */

	/* Test clock, used when ARL_SEG_TEST_CLOCK is set. */
	ARL_ALIGNED uint64_t test_clock_ns;
};

/*
 * One limit of a bucket as GCRA: a grant of x units moves the theoretical
 * arrival time to max(tat, now) + cost(x), allowed while it stays within
 * tolerance_ns of now. cost(x) = ceil(x * window_ns / amount) nanoseconds.
 * The parameters live in the bucket's configuration records; only the TAT,
 * which every grant and refund changes, is here, on a line of its own.
 */
struct arl_shm_limit {
	ARL_ALIGNED uint64_t tat_ns; /* hot: CAS by every grant and refund */
};

struct arl_shm_limit_config {
	uint32_t unit;		    /* enum arl_unit */
	uint32_t headroom_permille; /* share of the burst kept unused */
	uint64_t amount;	    /* units per window */
	uint64_t window_ns;
	uint64_t burst;	       /* units */
	uint64_t usable_burst; /* units: burst less the headroom */
	uint64_t tolerance_ns; /* cost(usable_burst) */
	uint64_t unit_ns;      /* window / amount when that is exact, else 0 */
};

/*
 * A bucket's configuration. A bucket has two records: clients read the one
 * config_index names, and a change fills the other one and then publishes
 * its index, so a record being written is never the one in use. seq is odd
 * while the record is being written; a reader that sees it change retries.
 */
struct arl_shm_bucket_config {
	uint32_t seq;
	uint32_t nlimits;
	uint32_t max_inflight; /* 0: no cap */
	uint32_t flags;	       /* ARL_BUCKET_* */
	struct arl_shm_limit_config limit[ARL_MAX_LIMITS];
};

/*
 * Bucket states. A bucket is written while BUSY and published as LIVE. A
 * removed bucket is RETIRED: handles to it are stale, and its slot becomes
 * FREE only once no reservation slot names it (arl_impl_recycle_buckets()).
 */
#define ARL_BUCKET_FREE 0u
#define ARL_BUCKET_BUSY 1u
#define ARL_BUCKET_LIVE 2u
#define ARL_BUCKET_RETIRED 3u

struct arl_shm_bucket_stats {
	ARL_ALIGNED uint64_t granted;	  /* reservations granted */
	uint64_t granted_tokens;	  /* estimated tokens granted */
	uint64_t rejected;		  /* reserve calls that returned EAGAIN or NEVERFITS */
	uint64_t waited_ns;		  /* time spent in reserve_wait before a grant */
	uint64_t released;		  /* releases with known usage */
	uint64_t refunded_tokens;	  /* tokens given back by releases */
	uint64_t overage_tokens;	  /* tokens charged above the estimate */
	uint64_t fallback_releases;	  /* releases with unknown usage */
	uint64_t fallback_tokens;	  /* tokens kept by fallback releases */
	uint64_t canceled;		  /* reservations canceled */
	uint64_t reclaimed_dead;	  /* reclaimed because the owner died */
	uint64_t reclaimed_idle;	  /* reclaimed after reservation_ttl idle */
	uint64_t reclaimed_admin;	  /* released by an operator (arlctl release) */
	uint64_t provider_429s;		  /* 429 responses reported by clients */
	uint64_t errors;		  /* rejected calls other than limits */
	uint64_t inflight_repaired;	  /* in-flight counts reset by the sweeper */
};

/* Entries of a bucket's wait queue, and the entry word's layout: ticket in
 * bits 0-31, owner (process-table index + 1) in bits 32-55, state in 56-63. */
#define ARL_QUEUE_SLOTS 64u
#define ARL_WAITER_WAITING 1u	/* the owner sleeps until its ticket is served */
#define ARL_WAITER_ABANDONED 2u /* the owner gave up; skip the ticket */

struct arl_shm_bucket {
	/* Identity, immutable while LIVE, and the configuration records. */
	ARL_ALIGNED uint32_t state; /* ARL_BUCKET_*, published with release */
	uint32_t gen;		    /* bumped each time the slot is (re)used */
	uint32_t config_index;	    /* 0 or 1: the record in use */
	uint32_t reserved;
	/* The name and the profile are read and written a word at a time with
	 * atomic loads and stores (arl_impl_read_name()): a finder may read a
	 * slot while a new bucket is being written into it. */
	union {
		char name[ARL_NAME_MAX + 1];
		uint64_t name_words[(ARL_NAME_MAX + 1) / 8];
	};
	union {
		char profile[ARL_PROFILE_MAX + 1]; /* provider profile, "" for none */
		uint64_t profile_words[(ARL_PROFILE_MAX + 1) / 8];
	};
	/* The account bucket: (index + 1) in bits 0-31 and its gen in bits
	 * 32-63, one word so that a relink is one atomic store; 0: none. */
	uint64_t account;
	struct arl_shm_bucket_config config[2];

	/* Hot words changed by reservations. */
	/* Live reservations holding an in-flight slot in bits 0-31, and a
	 * version bumped by every change in bits 32-63, so the sweeper can
	 * tell an unchanged count from one that moved away and back. */
	ARL_ALIGNED uint64_t inflight;
	uint32_t wake_seq; /* futex word: bumped by releases and refunds */
	uint32_t waiters;  /* processes sleeping on wake_seq */
	/* arl clock time before which the provider refuses this bucket (a 429's
	 * retry time); 0 when not blocked. On the in-flight word's line, which
	 * every reserve writes anyway, so reading it costs no extra miss. */
	uint64_t blocked_until_ns;
	/* ARL_BUCKET_DISCOVER: 0 until a response taught the limits; until
	 * then the bucket allows one request in flight. */
	uint32_t learned;

	/*
	 * FIFO wait queue of arl_reserve_wait(): each waiter takes a ticket
	 * from queue_tail, and only the waiter whose ticket equals queue_head
	 * tries to reserve. queue_head is a futex word; a waiter sleeps on it
	 * with the bit of its ticket, so serving one ticket wakes one waiter.
	 */
	ARL_ALIGNED uint32_t queue_head;
	uint32_t queue_tail;
	uint32_t queue_stall_head;	   /* sweeper: head seen unwritten last sweep */
	uint32_t queue_stall_seen;	   /* sweeper: 1 when queue_stall_head is set */
	uint64_t queue[ARL_QUEUE_SLOTS]; /* entry of ticket t at t % ARL_QUEUE_SLOTS */

	struct arl_shm_limit limits[ARL_MAX_LIMITS];
	struct arl_shm_bucket_stats stats;
};

/*
 * Reservation slot states. The state, the slot generation and the owner are
 * one 64-bit word changed by CAS: gen in bits 0-31, state in bits 32-39,
 * owner (process-table index + 1, 0 for none) in bits 40-63.
 */
#define ARL_RES_FREE 0u
#define ARL_RES_CLAIMED 1u    /* owner is recording and charging */
#define ARL_RES_COMMITTED 2u  /* charged: the request may be in flight */
#define ARL_RES_RELEASING 3u  /* owner is applying a release or cancel */
#define ARL_RES_RECLAIMING 4u /* the sweeper is applying the fallback */

/*
 * Charge marks: the charges a slot still has. A mark is set after its charge
 * is applied and cleared before it is given back. So the marks never claim
 * more than the buckets took, and the sweeper finishing a dead owner's slot
 * never gives back what was not taken.
 */
#define ARL_MAX_CHAIN 4 /* buckets one reservation charges */
#define ARL_MARK_INFLIGHT(c) (0x1u << (5 * (c)))
#define ARL_MARK_LIMIT(c, i) (0x2u << (5 * (c) + (i)))
#define ARL_MARKS_OF(c) (0x1fu << (5 * (c)))
/* Set by the sweeper that counts a reclaim, so that one taking the slot
 * over from a sweeper that died after counting does not count it again. */
#define ARL_MARK_COUNTED 0x80000000u
#define ARL_MARKS_INFLIGHT                                                                         \
	(ARL_MARK_INFLIGHT(0) | ARL_MARK_INFLIGHT(1) | ARL_MARK_INFLIGHT(2) | ARL_MARK_INFLIGHT(3))

struct arl_shm_reservation {
	ARL_ALIGNED uint64_t word; /* gen | state | owner, see above */
	uint32_t nbuckets;	   /* chain length, 1 to ARL_MAX_CHAIN */
	uint32_t marks;		   /* ARL_MARK_*, five bits per chain position */
	uint32_t bucket_index[ARL_MAX_CHAIN];
	uint32_t bucket_gen[ARL_MAX_CHAIN];
	uint32_t chunks;	   /* stream events seen */
	uint32_t reserved;
	uint64_t input_tokens;	   /* estimate charged */
	uint64_t output_tokens;	   /* estimate charged */
	uint64_t created_ns;	   /* arl clock */
	uint64_t last_activity_ns; /* arl clock, set by touch */
	uint64_t request_id;	   /* caller's id, for logs */
};

/* Process entries. An entry is alive while its owner holds the OFD lock on
 * byte ARL_PROCESS_LOCK_BASE + index of the segment file. */
#define ARL_PROCESS_FREE 0u
#define ARL_PROCESS_LIVE 1u
#define ARL_PROCESS_LOCK_BASE (1ll << 40)

struct arl_shm_process {
	ARL_ALIGNED uint32_t state;
	int32_t pid;
	uint64_t attached_ns;	    /* arl clock at registration */
	uint32_t spare; /* unused; references are counted by scanning instead */
	uint32_t reserved;
};

/* ------------------------------------------------------------------------
 * Fault points, for tests only
 * ------------------------------------------------------------------------ */

/*
 * ARL_FAULT_POINT(name) marks a place where a process killed at that very
 * instruction leaves the segment half-changed. In a build that defines
 * ARL_FAULT_INJECTION, the process SIGKILLs itself at the point named by the
 * environment variable ARL_FAULT, given as "name" (the first time it gets
 * there) or "name:N" (the Nth time). Elsewhere a point compiles to nothing.
 *
 * The points, in the order an operation meets them:
 *   create_after_open      segment file created empty, creator lock held
 *   create_after_allocate  file sized, header not written
 *   create_before_ready    header written, ready not published
 *   register_after_lock    process entry locked, not yet marked live
 *   reserve_after_claim    slot claimed, request not recorded
 *   reserve_after_record   request recorded, nothing charged
 *   reserve_after_inflight in-flight slot taken, limits not charged
 *   reserve_mid_charge     some limits charged, others not
 *   reserve_before_commit  everything charged, slot not committed
 *   wait_after_ticket      queue ticket taken, entry not written
 *   wait_as_head           at the head of a queue, before a try
 *   release_after_begin    slot RELEASING, nothing given back
 *   release_mid_settle     some limits settled, others not
 *   release_before_free    everything settled, slot not freed
 *   cancel_after_begin     slot RELEASING for a cancel, nothing given back
 *   sweep_after_claim      sweeper set a slot RECLAIMING, nothing given back
 *   sweep_before_free      sweeper gave a slot's charges back, slot not freed
 *   sweep_before_publish   sweep done, count not published
 *   remove_after_retire    bucket marked retired, waiters not woken
 *   tracker_before_release stream ended, reservation not released
 */
#ifdef ARL_FAULT_INJECTION
#include <signal.h>

ARL_API void arl_impl_fault(const char *name)
{
	static unsigned long hits; /* per translation unit; enough for tests */
	const char *want = getenv("ARL_FAULT");
	size_t len = strlen(name);
	unsigned long nth = 1;

	if (!want || strncmp(want, name, len) != 0 || (want[len] != '\0' && want[len] != ':'))
		return;
	if (want[len] == ':')
		nth = strtoul(want + len + 1, NULL, 10);
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED) >= nth)
		raise(SIGKILL);
}
#define ARL_FAULT_POINT(name) arl_impl_fault(name)
#else
#define ARL_FAULT_POINT(name) ((void)0)
#endif

/* ------------------------------------------------------------------------
 * Atomic helpers. The segment uses C11 orders through the __atomic builtins
 * so that the header compiles as C and as C++.
 * ------------------------------------------------------------------------ */

#define arl_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define arl_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define arl_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define arl_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define arl_add_relaxed(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define arl_sub_relaxed(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define arl_cas(p, expected, desired, success_order)                                               \
	__atomic_compare_exchange_n((p), (expected), (desired), false, (success_order),           \
				    __ATOMIC_RELAXED)

/* ------------------------------------------------------------------------
 * Process-local handles
 * ------------------------------------------------------------------------ */

/* An attached segment. Process-local; never shared between processes. */
struct arl {
	struct arl_shm_header *header; /* mapping of the whole segment */
	size_t size;		       /* bytes mapped */
	int fd;			       /* holds this process's liveness lock */
	bool read_only;
	pid_t pid;		  /* process that registered process_index; 0: none */
	const uint32_t *fork_epoch; /* bumped in every child after fork() */
	uint32_t epoch_seen;	  /* *fork_epoch when process_index was taken */
	bool registered;	  /* process_index is this process's entry */
	uint32_t process_index;	  /* UINT32_MAX: not registered */
	uint32_t next_slot;	/* where the next free-slot search starts */
	pthread_mutex_t register_lock;
	char name[ARL_SHM_NAME_MAX + 1];
};

/* A bucket, found by name. A handle to a removed bucket is stale. */
struct arl_bucket {
	uint32_t index;
	uint32_t gen;
};

/* A reservation. retry_at_ns is set when a reserve returns ARL_EAGAIN. */
struct arl_reservation {
	uint32_t slot;
	uint32_t gen;
	uint64_t retry_at_ns; /* arl clock: when the request would fit */
};

/* A reservation's estimate. A caller that knows only a total gives it as
 * input_tokens. */
struct arl_request {
	uint64_t input_tokens;
	uint64_t output_tokens;
	uint64_t request_id; /* optional, shown in logs and listings */
};

/* Usage flags: which values of struct arl_usage are known. */
#define ARL_USAGE_TOTAL 0x1u   /* total_tokens is the final usage */
#define ARL_USAGE_SPLIT 0x2u   /* input_tokens and output_tokens are final */
#define ARL_USAGE_PARTIAL 0x4u /* partial_tokens is the usage seen before a failure */

/* The real usage of a request, given at release. */
struct arl_usage {
	uint32_t flags; /* ARL_USAGE_* */
	uint64_t total_tokens;
	uint64_t input_tokens;
	uint64_t output_tokens;
	uint64_t partial_tokens;
};

/* ------------------------------------------------------------------------
 * Internal helpers (arl_impl_*): not part of the API.
 * ------------------------------------------------------------------------ */

ARL_API uint64_t arl_impl_layout_signature(void)
{
	return ((uint64_t)sizeof(struct arl_shm_header) << 48) ^
	       ((uint64_t)sizeof(struct arl_shm_bucket) << 32) ^
	       ((uint64_t)sizeof(struct arl_shm_reservation) << 16) ^
	       (uint64_t)sizeof(struct arl_shm_process) ^ ((uint64_t)ARL_CACHE_LINE << 56);
}

ARL_API uint64_t arl_impl_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

ARL_API uint64_t arl_impl_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

ARL_API uint64_t arl_impl_sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* Nanoseconds that x units take to refill: ceil(x * window / amount),
 * saturated. One function for charges and refunds, so both round alike and
 * a cancel restores exactly what the grant took. */
ARL_API uint64_t arl_impl_cost_ns(const struct arl_shm_limit_config *limit, uint64_t x)
{
	__extension__ typedef unsigned __int128 u128;
	uint64_t amount = limit->amount;
	u128 product;
	uint64_t exact;

	/* The common case (30,000 tokens a minute: 2 ms each) needs no
	 * 128-bit division, which costs more than the rest of a charge. */
	if (limit->unit_ns && !__builtin_mul_overflow(x, limit->unit_ns, &exact))
		return exact > UINT64_MAX / 4 ? UINT64_MAX / 4 : exact;
	if (amount == 0)
		return UINT64_MAX;
	product = (u128)x * limit->window_ns + amount - 1;
	product /= amount;
	return product > UINT64_MAX / 4 ? UINT64_MAX / 4 : (uint64_t)product;
}

/* Nanoseconds that x units refill, rounded down: what a refund gives back,
 * so that a refund never returns more time than its tokens are worth. */
ARL_API uint64_t arl_impl_refund_ns(const struct arl_shm_limit_config *limit, uint64_t x)
{
	__extension__ typedef unsigned __int128 u128;
	u128 product;
	uint64_t exact;

	if (limit->unit_ns && !__builtin_mul_overflow(x, limit->unit_ns, &exact))
		return exact > UINT64_MAX / 4 ? UINT64_MAX / 4 : exact;
	if (limit->amount == 0)
		return 0;
	product = (u128)x * limit->window_ns / limit->amount;
	return product > UINT64_MAX / 4 ? UINT64_MAX / 4 : (uint64_t)product;
}

ARL_API struct arl_shm_bucket *arl_impl_buckets(const struct arl *arl)
{
	return (struct arl_shm_bucket *)((char *)arl->header + arl->header->buckets_offset);
}

ARL_API struct arl_shm_reservation *arl_impl_reservations(const struct arl *arl)
{
	return (struct arl_shm_reservation *)((char *)arl->header +
					      arl->header->reservations_offset);
}

ARL_API struct arl_shm_process *arl_impl_processes(const struct arl *arl)
{
	return (struct arl_shm_process *)((char *)arl->header + arl->header->processes_offset);
}

ARL_API uint64_t arl_impl_res_word(uint32_t gen, uint32_t state, uint32_t owner)
{
	return (uint64_t)gen | ((uint64_t)(state & 0xff) << 32) | ((uint64_t)owner << 40);
}

ARL_API uint32_t arl_impl_res_gen(uint64_t word)
{
	return (uint32_t)word;
}

ARL_API uint32_t arl_impl_res_state(uint64_t word)
{
	return (uint32_t)(word >> 32) & 0xff;
}

ARL_API uint32_t arl_impl_res_owner(uint64_t word)
{
	return (uint32_t)(word >> 40);
}

ARL_API long arl_impl_futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout)
{
	/* Shared futexes (no FUTEX_PRIVATE_FLAG): waiters and wakers are
	 * different processes mapping the same page. */
	return syscall(SYS_futex, word, op, value, timeout, NULL, FUTEX_BITSET_MATCH_ANY);
}

/* Wakes every process waiting on a bucket. Called after anything that can
 * let a waiter fit: a release, a refund, a cancel, a reclaim. */
ARL_API void arl_impl_wake_bucket(struct arl_shm_bucket *bucket)
{
	/* Paired with the acquire load of wake_seq in arl_reserve_wait(): a
	 * waiter that read the old value sleeps only if the value is unchanged,
	 * so the bump cannot fall between its check and its sleep. */
	__atomic_fetch_add(&bucket->wake_seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&bucket->waiters, __ATOMIC_SEQ_CST) != 0)
		arl_impl_futex(&bucket->wake_seq, FUTEX_WAKE, INT_MAX, NULL);
}

/* Counts forks seen by this process image, from a pthread_atfork child
 * handler. A handle compares it with the value at registration instead of
 * calling getpid() on every reservation. */
ARL_API uint32_t *arl_impl_fork_epoch(void)
{
	static uint32_t epoch;

	return &epoch;
}

ARL_API void arl_impl_on_fork_child(void)
{
	/* The child runs this alone, before fork() returns in it. */
	(*arl_impl_fork_epoch())++;
}

ARL_API void arl_impl_install_fork_handler_once(void)
{
	pthread_atfork(NULL, NULL, arl_impl_on_fork_child);
}

ARL_API void arl_impl_install_fork_handler(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, arl_impl_install_fork_handler_once);
}

/* Reads arl's clock: CLOCK_MONOTONIC nanoseconds, or the segment's test
 * clock when the segment was created with one. */
ARL_API uint64_t arl_now(const struct arl *arl)
{
	if (arl->header->flags & ARL_SEG_TEST_CLOCK)
		return arl_load_acquire(&arl->header->test_clock_ns);
	return arl_impl_monotonic_ns();
}

/* ------------------------------------------------------------------------
 * Attach
 * ------------------------------------------------------------------------ */

/* Attach flags. */
#define ARL_ATTACH_CREATE 0x1u	   /* create the segment if the name is free */
#define ARL_ATTACH_READ_ONLY 0x2u  /* map read-only: listings only */
#define ARL_ATTACH_TEST_CLOCK 0x4u	/* with CREATE: time is a test clock */
#define ARL_ATTACH_EXPECT_OWNER 0x8u	/* the segment's owner must be `owner` */
#define ARL_ATTACH_EXPECT_GROUP 0x10u	/* group access is through `group` */

/*
 * The segment's owner must be the expected one, or a squatter could have
 * created the name first. Without ARL_ATTACH_EXPECT_OWNER, $ARL_SHM_OWNER (a
 * user name or uid) names it, else this user or root is accepted. The mode
 * may give the group access only when a group is expected (through
 * ARL_ATTACH_EXPECT_GROUP or $ARL_SHM_GROUP, a group name or gid) and is the
 * segment's group. It never gives other users access.
 */
struct arl_attach_options {
	const char *name; /* NULL: $ARL_SHM, else "/arl" */
	uint32_t flags;	  /* ARL_ATTACH_* */
	uid_t owner;	  /* with ARL_ATTACH_EXPECT_OWNER */
	gid_t group;	  /* with ARL_ATTACH_EXPECT_GROUP; at creation, the group set */
	/* Creation only; 0 picks the default. */
	uint32_t bucket_capacity;
	uint32_t reservation_capacity;
	uint32_t process_capacity;
	mode_t mode; /* 0: 0600; 0640 or 0660 need a group */
	/* Optional: a message naming the segment and the failed field. */
	char *error;
	size_t error_size;
};

/* Writes a message for the caller, when one was requested, and returns code. */
__attribute__((format(printf, 3, 4))) ARL_API int
arl_impl_fail(const struct arl_attach_options *opts, int code, const char *fmt, ...)
{
	va_list ap;

	if (opts && opts->error && opts->error_size > 0) {
		va_start(ap, fmt);
		vsnprintf(opts->error, opts->error_size, fmt, ap);
		va_end(ap);
	}
	return code;
}

ARL_API int arl_impl_lock_byte(int fd, int cmd, short type, off_t byte)
{
	struct flock lock;

	memset(&lock, 0, sizeof(lock));
	lock.l_type = type;
	lock.l_whence = SEEK_SET;
	lock.l_start = byte;
	lock.l_len = 1;
	return fcntl(fd, cmd, &lock);
}

/* Returns true if another open file description holds a lock on the byte. */
ARL_API bool arl_impl_byte_locked(int fd, off_t byte)
{
	struct flock lock;

	memset(&lock, 0, sizeof(lock));
	lock.l_type = F_WRLCK;
	lock.l_whence = SEEK_SET;
	lock.l_start = byte;
	lock.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &lock) != 0)
		return true; /* cannot tell: treat as alive, never reclaim */
	return lock.l_type != F_UNLCK;
}

ARL_API uint64_t arl_impl_align(uint64_t x)
{
	return (x + ARL_CACHE_LINE - 1) & ~(uint64_t)(ARL_CACHE_LINE - 1);
}

/* Fills a new header with its tables' layout. */
ARL_API uint64_t arl_impl_plan_layout(struct arl_shm_header *h, uint32_t buckets,
				      uint32_t reservations, uint32_t processes)
{
	uint64_t offset = arl_impl_align(sizeof(*h));

	h->bucket_capacity = buckets;
	h->reservation_capacity = reservations;
	h->process_capacity = processes;
	h->buckets_offset = offset;
	offset = arl_impl_align(offset + (uint64_t)buckets * sizeof(struct arl_shm_bucket));
	h->reservations_offset = offset;
	offset = arl_impl_align(offset +
				(uint64_t)reservations * sizeof(struct arl_shm_reservation));
	h->processes_offset = offset;
	offset = arl_impl_align(offset + (uint64_t)processes * sizeof(struct arl_shm_process));
	return offset;
}

/* Checks one table's place: after the header, aligned, a capacity within
 * bounds, and inside the segment. Returns NULL, or what is wrong. */
ARL_API const char *arl_impl_table_fault(uint64_t offset, uint32_t capacity, size_t entry,
					 uint64_t size)
{
	if (offset < sizeof(struct arl_shm_header))
		return "starts inside the header";
	if (offset % ARL_CACHE_LINE != 0)
		return "is not aligned to a cache line";
	if (capacity == 0 || capacity > ARL_MAX_TABLE)
		return "has a capacity of 0 or above the maximum";
	if (offset > size || (uint64_t)capacity * entry > size - offset)
		return "ends outside the segment";
	return NULL;
}

/* Reads this process's CLOCK_MONOTONIC offset from its time namespace, in
 * nanoseconds; 0 without time namespaces (no /proc/self/timens_offsets). */
ARL_API int64_t arl_impl_timens_offset(void)
{
	char text[256];
	const char *line;
	ssize_t len;
	int fd = open("/proc/self/timens_offsets", O_RDONLY | O_CLOEXEC);
	long long sec = 0, nsec = 0;

	if (fd < 0)
		return 0;
	len = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	text[len] = '\0';
	/* Lines read "monotonic <seconds> <nanoseconds>" (the clock may also
	 * be given by its number, 1). */
	line = strstr(text, "monotonic");
	if (line && sscanf(line, "monotonic %lld %lld", &sec, &nsec) == 2)
		return (int64_t)(sec * 1000000000ll + nsec);
	line = strstr(text, "\n1 ");
	if ((strncmp(text, "1 ", 2) == 0 && sscanf(text, "1 %lld %lld", &sec, &nsec) == 2) ||
	    (line && sscanf(line + 1, "1 %lld %lld", &sec, &nsec) == 2))
		return (int64_t)(sec * 1000000000ll + nsec);
	return 0;
}

/*
 * Validates every header field against the file size before any offset is
 * trusted. Returns 0 or ARL_EBADSEG / ARL_EVERSION with a message naming
 * the field.
 */
ARL_API int arl_impl_validate_header(const struct arl_shm_header *h, uint64_t file_size,
				     const char *name, const struct arl_attach_options *opts)
{
	if (h->magic != ARL_MAGIC)
		return arl_impl_fail(opts, ARL_EBADSEG,
				     "segment %s: bad magic %#llx: not an arl segment", name,
				     (unsigned long long)h->magic);
	if (h->layout_version != ARL_LAYOUT_VERSION)
		return arl_impl_fail(opts, ARL_EVERSION,
				     "segment %s: layout version %u, this build reads version %u; "
				     "stop the old arld, remove the segment and let this version "
				     "create it",
				     name, h->layout_version, ARL_LAYOUT_VERSION);
	if (h->layout_signature != arl_impl_layout_signature())
		return arl_impl_fail(opts, ARL_EVERSION,
				     "segment %s: layout signature %#llx does not match this build",
				     name, (unsigned long long)h->layout_signature);
	if (h->segment_size != file_size)
		return arl_impl_fail(opts, ARL_EBADSEG,
				     "segment %s: header says %llu bytes but the file differs "
				     "(truncated or replaced)",
				     name, (unsigned long long)h->segment_size);
	if (h->flags & ~(uint32_t)ARL_SEG_TEST_CLOCK)
		return arl_impl_fail(opts, ARL_EBADSEG, "segment %s: unknown flags %#x", name,
				     h->flags);
	static const char *const tables[] = {"bucket", "reservation", "process"};
	const uint64_t offsets[] = {h->buckets_offset, h->reservations_offset, h->processes_offset};
	const uint32_t capacities[] = {h->bucket_capacity, h->reservation_capacity,
				       h->process_capacity};
	const size_t entries[] = {sizeof(struct arl_shm_bucket),
				  sizeof(struct arl_shm_reservation),
				  sizeof(struct arl_shm_process)};
	int t;

	for (t = 0; t < 3; t++) {
		const char *fault = arl_impl_table_fault(offsets[t], capacities[t], entries[t],
							 file_size);

		if (fault)
			return arl_impl_fail(opts, ARL_EBADSEG,
					     "segment %s: the %s table (offset %llu, %u entries) %s",
					     name, tables[t], (unsigned long long)offsets[t],
					     capacities[t], fault);
	}
	/* The tables follow each other in this order; each must end before the
	 * next begins. */
	for (t = 0; t < 2; t++) {
		uint64_t end = offsets[t] + (uint64_t)capacities[t] * entries[t];

		if (offsets[t + 1] < end)
			return arl_impl_fail(opts, ARL_EBADSEG,
					     "segment %s: the %s table (ending at %llu) overlaps the "
					     "%s table (starting at %llu)",
					     name, tables[t], (unsigned long long)end, tables[t + 1],
					     (unsigned long long)offsets[t + 1]);
	}
	if (h->timens_offset_ns != arl_impl_timens_offset())
		return arl_impl_fail(opts, ARL_ETIMENS,
				     "segment %s: this process's monotonic clock is offset by a time "
				     "namespace (%lld ns from the creator's), so its times would not "
				     "match the segment's; run it in the creator's time namespace",
				     name, (long long)(arl_impl_timens_offset() - h->timens_offset_ns));
	if (h->process_capacity > (1u << 24) - 1)
		return arl_impl_fail(opts, ARL_EBADSEG,
				     "segment %s: process capacity %u exceeds 16777215", name,
				     h->process_capacity);
	return 0;
}

ARL_API const char *arl_impl_segment_name(const struct arl_attach_options *opts)
{
	const char *name = opts ? opts->name : NULL;

	if (!name || !*name)
		name = getenv("ARL_SHM");
	if (!name || !*name)
		name = ARL_DEFAULT_SHM;
	return name;
}

/*
 * Creates a new segment under an exclusive name. The creator takes an OFD
 * lock on byte 0 before anything else and keeps it until ready is published,
 * so an attacher can tell a slow creator from a dead one.
 */
/* Returns true if the shared-memory name still leads to the object of fd. */
ARL_API bool arl_impl_name_is(const char *name, int fd)
{
	char path[ARL_SHM_NAME_MAX + 16];
	struct stat by_name, mine;

	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return fstat(fd, &mine) == 0 && stat(path, &by_name) == 0 &&
	       by_name.st_ino == mine.st_ino && by_name.st_dev == mine.st_dev;
}

ARL_API int arl_impl_create(const char *name, const struct arl_attach_options *opts, int *fd_out)
{
	struct arl_shm_header plan;
	uint64_t size;
	mode_t mode = opts && opts->mode ? opts->mode : 0600;
	struct arl_shm_header *h;
	int fd = -1, rc;

	memset(&plan, 0, sizeof(plan));
	size = arl_impl_plan_layout(
		&plan, opts && opts->bucket_capacity ? opts->bucket_capacity : ARL_DEFAULT_BUCKETS,
		opts && opts->reservation_capacity ? opts->reservation_capacity
						   : ARL_DEFAULT_RESERVATIONS,
		opts && opts->process_capacity ? opts->process_capacity : ARL_DEFAULT_PROCESSES);
	if (plan.bucket_capacity > ARL_MAX_TABLE || plan.reservation_capacity > ARL_MAX_TABLE ||
	    plan.process_capacity > (1u << 24) - 1)
		return arl_impl_fail(opts, ARL_EINVAL, "segment %s: a table capacity exceeds %u",
				     name, ARL_MAX_TABLE);
	if (mode & ~(mode_t)0660)
		return arl_impl_fail(opts, ARL_EINVAL,
				     "segment %s: mode %#o grants access to others; use 0600, "
				     "0640 or 0660",
				     name, (unsigned)mode);
	if ((mode & 0070) && !(opts && (opts->flags & ARL_ATTACH_EXPECT_GROUP)))
		return arl_impl_fail(opts, ARL_EINVAL,
				     "segment %s: mode %#o gives a group access, but no group is "
				     "set; configure a group or use 0600",
				     name, (unsigned)mode);

	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (arl_impl_lock_byte(fd, F_OFD_SETLK, F_WRLCK, 0) != 0) {
		/* A replacer took the new, empty object for a dead creator's
		 * and will remove it: lose the race and attach afresh. */
		close(fd);
		return -EEXIST;
	}
	/* Between the open and the lock, another creator may have found the
	 * new object empty and unlocked, taken it for a dead creator's and
	 * unlinked the name. Building on an unlinked object would make a
	 * second, private limiter: check that the name still leads here. */
	if (!arl_impl_name_is(name, fd)) {
		close(fd);
		return -EEXIST;
	}
	ARL_FAULT_POINT("create_after_open");
	/* fchown and fchmod act on the descriptor, so the umask does not matter
	 * and no other process can swap the object in between. */
	if ((opts && (opts->flags & ARL_ATTACH_EXPECT_GROUP) &&
	     fchown(fd, (uid_t)-1, opts->group) != 0) ||
	    fchmod(fd, mode) != 0) {
		rc = -errno;
		goto fail;
	}
	/* posix_fallocate reserves the pages now, so a full /dev/shm fails
	 * here with ENOSPC instead of raising SIGBUS on a later write. */
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc != 0) {
		rc = -rc;
		arl_impl_fail(opts, rc, "segment %s: cannot allocate %llu bytes in /dev/shm: %s",
			      name, (unsigned long long)size, strerror(-rc));
		goto fail;
	}
	ARL_FAULT_POINT("create_after_allocate");
	h = (struct arl_shm_header *)mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}

	/* The file is zero-filled, so every table starts FREE with gen 0. */
	plan.magic = ARL_MAGIC;
	plan.layout_version = ARL_LAYOUT_VERSION;
	plan.layout_signature = arl_impl_layout_signature();
	plan.segment_size = size;
	plan.created_ns = arl_impl_monotonic_ns();
	plan.timens_offset_ns = arl_impl_timens_offset();
	plan.flags = opts && (opts->flags & ARL_ATTACH_TEST_CLOCK) ? ARL_SEG_TEST_CLOCK : 0;
	memcpy(h, &plan, sizeof(plan));
	if (plan.flags & ARL_SEG_TEST_CLOCK)
		h->test_clock_ns = 1000000000ull;
	ARL_FAULT_POINT("create_before_ready");

	/* Paired with the acquire load of ready in arl_impl_wait_ready(): an
	 * attacher that sees ARL_READY sees every field written above. */
	arl_store_release(&h->ready, ARL_READY);
	munmap(h, size);
	arl_impl_lock_byte(fd, F_OFD_SETLK, F_UNLCK, 0);
	*fd_out = fd;
	return 0;
fail:
	shm_unlink(name);
	close(fd);
	return rc == 0 ? ARL_ESYSTEM : rc;
}

/*
 * Waits, up to about two seconds, until the segment behind fd has its final
 * size (posix_fallocate sets it at once, before any field is written).
 * Returns the size, or a negative code when the creator died first.
 */
ARL_API long long arl_impl_wait_sized(int fd, const char *name,
				      const struct arl_attach_options *opts)
{
	struct timespec pause = {0, 1000000};
	struct stat st;
	int tries, unlocked = 0;

	/* A creator opens the object and then locks it: an empty, unlocked
	 * object is a dead creator's only once it stays so for 100 polls. */
	for (tries = 0; tries < 2000 && unlocked < 100; tries++) {
		if (fstat(fd, &st) != 0)
			return -errno;
		if ((size_t)st.st_size >= sizeof(struct arl_shm_header))
			return (long long)st.st_size;
		unlocked = arl_impl_byte_locked(fd, 0) ? 0 : unlocked + 1;
		nanosleep(&pause, NULL);
	}
	return arl_impl_fail(opts, ARL_ENOTREADY,
			     "segment %s: empty and its creator is gone or stuck; remove it "
			     "(rm /dev/shm%s) and start arld again",
			     name, name);
}

/*
 * Waits, up to about two seconds, until the creator publishes ready in a
 * mapped header. Returns 0 or ARL_ENOTREADY.
 */
ARL_API int arl_impl_wait_ready(const struct arl_shm_header *h, int fd, const char *name,
				const struct arl_attach_options *opts)
{
	struct timespec pause = {0, 1000000};
	int tries;

	for (tries = 0; tries < 2000; tries++) {
		/* Paired with the release store in arl_impl_create(): seeing
		 * ARL_READY makes every header field visible. */
		if (arl_load_acquire(&h->ready) == ARL_READY)
			return 0;
		if (!arl_impl_byte_locked(fd, 0))
			break;
		nanosleep(&pause, NULL);
	}
	return arl_impl_fail(opts, ARL_ENOTREADY,
			     "segment %s: not ready and its creator is gone or stuck; remove it "
			     "(rm /dev/shm%s) and start arld again",
			     name, name);
}

/* Parses a uid or gid given as digits. Returns 0 or -1. */
ARL_API int arl_impl_parse_id(const char *text, unsigned *out)
{
	unsigned long long value = 0;
	const char *p;

	if (!text || !*text)
		return -1;
	for (p = text; *p; p++) {
		if (*p < '0' || *p > '9' || value > 0xffffffffull / 10)
			return -1;
		value = value * 10 + (unsigned)(*p - '0');
	}
	if (value > 0xfffffffeull)
		return -1;
	*out = (unsigned)value;
	return 0;
}

/* Resolves $ARL_SHM_OWNER and $ARL_SHM_GROUP (names or numbers) into the
 * expectations the attach options did not set. Returns 0 or ARL_EINVAL. */
ARL_API int arl_impl_expectations(const struct arl_attach_options *opts, bool *has_owner,
				  uid_t *owner, bool *has_group, gid_t *group, const char *name)
{
	const char *env_owner = getenv("ARL_SHM_OWNER");
	const char *env_group = getenv("ARL_SHM_GROUP");
	unsigned id;

	*has_owner = opts && (opts->flags & ARL_ATTACH_EXPECT_OWNER);
	*has_group = opts && (opts->flags & ARL_ATTACH_EXPECT_GROUP);
	if (*has_owner)
		*owner = opts->owner;
	if (*has_group)
		*group = opts->group;
	if (!*has_owner && env_owner && *env_owner) {
		struct passwd pw, *found = NULL;
		char buf[1024];

		if (arl_impl_parse_id(env_owner, &id) == 0)
			*owner = (uid_t)id;
		else if (getpwnam_r(env_owner, &pw, buf, sizeof(buf), &found) == 0 && found)
			*owner = found->pw_uid;
		else
			return arl_impl_fail(opts, ARL_EINVAL,
					     "segment %s: ARL_SHM_OWNER=%s is not a user name or uid",
					     name, env_owner);
		*has_owner = true;
	}
	if (!*has_group && env_group && *env_group) {
		struct group gr, *found = NULL;
		char buf[1024];

		if (arl_impl_parse_id(env_group, &id) == 0)
			*group = (gid_t)id;
		else if (getgrnam_r(env_group, &gr, buf, sizeof(buf), &found) == 0 && found)
			*group = found->gr_gid;
		else
			return arl_impl_fail(opts, ARL_EINVAL,
					     "segment %s: ARL_SHM_GROUP=%s is not a group name or gid",
					     name, env_group);
		*has_group = true;
	}
	return 0;
}

/* Rejects a segment owned by someone unexpected or open wider than the
 * expected group: a squatter could have created the name first. */
ARL_API int arl_impl_check_owner(int fd, const char *name, const struct arl_attach_options *opts)
{
	bool has_owner, has_group;
	uid_t owner = 0;
	gid_t group = 0;
	struct stat st;
	int rc;

	rc = arl_impl_expectations(opts, &has_owner, &owner, &has_group, &group, name);
	if (rc != 0)
		return rc;
	if (fstat(fd, &st) != 0)
		return -errno;
	if (has_owner ? st.st_uid != owner : st.st_uid != geteuid() && st.st_uid != 0)
		return arl_impl_fail(opts, ARL_EACCES,
				     "segment %s: owned by uid %u, expected %s%u; another user may "
				     "have created the name first: remove it and restart arld",
				     name, (unsigned)st.st_uid, has_owner ? "uid " : "this user or uid ",
				     has_owner ? (unsigned)owner : (unsigned)geteuid());
	if (st.st_mode & 0007)
		return arl_impl_fail(opts, ARL_EACCES,
				     "segment %s: mode %#o grants access to other users; remove "
				     "it and let arld recreate it",
				     name, (unsigned)(st.st_mode & 0777));
	if ((st.st_mode & 0070) && (!has_group || st.st_gid != group))
		return arl_impl_fail(opts, ARL_EACCES,
				     "segment %s: mode %#o grants group %u access, but %s; set "
				     "ARL_SHM_GROUP to the group arld was configured with",
				     name, (unsigned)(st.st_mode & 0777), (unsigned)st.st_gid,
				     has_group ? "another group is expected" : "no group is expected");
	return 0;
}

ARL_API int arl_impl_open(const char *name, const struct arl_attach_options *opts, int *fd_out)
{
	bool read_only = opts && (opts->flags & ARL_ATTACH_READ_ONLY);
	bool create = opts && (opts->flags & ARL_ATTACH_CREATE);
	int fd = -1, rc;

	for (;;) {
		fd = shm_open(name, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
		if (fd >= 0)
			break;
		if (errno != ENOENT || !create || read_only)
			{
			int err = errno;

			if (err == ENOENT)
				return arl_impl_fail(opts, ARL_ENOENT,
						     "segment %s: not found; start arld or set ARL_SHM "
						     "to the segment it created",
						     name);
			return arl_impl_fail(opts, -err, "segment %s: shm_open failed: %s", name,
					     strerror(err));
		}
		rc = arl_impl_create(name, opts, &fd);
		if (rc == 0)
			break;
		if (rc != -EEXIST)
			return rc;
		/* Another creator won the race: attach to its segment. */
	}
	*fd_out = fd;
	return 0;
}

/*
 * Removes a segment name whose creator died before publishing ready, so the
 * next create starts afresh. The caller's OFD lock on byte 0 keeps a second
 * replacer (or a late creator) out, and the name is unlinked only if it
 * still leads to the same object. Returns 0 when the name was removed or
 * already gone, ARL_ENOTREADY when a live process has the object locked.
 */
ARL_API int arl_impl_replace_stale(int fd, const char *name)
{
	char path[ARL_SHM_NAME_MAX + 16];
	struct stat by_fd, by_name;
	uint32_t ready = 0;

	if (arl_impl_lock_byte(fd, F_OFD_SETLK, F_WRLCK, 0) != 0)
		return ARL_ENOTREADY; /* its creator, or another replacer, is alive */
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	if (fstat(fd, &by_fd) != 0 || stat(path, &by_name) != 0 ||
	    by_fd.st_ino != by_name.st_ino || by_fd.st_dev != by_name.st_dev)
		return 0; /* already replaced: retry with the new object */
	if ((size_t)by_fd.st_size >= sizeof(struct arl_shm_header) &&
	    pread(fd, &ready, sizeof(ready), offsetof(struct arl_shm_header, ready)) ==
		    sizeof(ready) &&
	    ready == ARL_READY)
		return 0; /* finished after all: retry and attach */
	/* NOTE: between the check above and the unlink, another process could
	 * replace the name. Unlinking its new object makes that process start
	 * over (its attach fails and is retried); a live segment is never hit. */
	shm_unlink(name);
	return 0;
}

/*
 * Attaches to a segment. Returns 0 and a handle in *out, or a negative code;
 * opts->error, when given, receives a message naming the segment and the
 * field at fault. opts may be NULL for the defaults. Clients never create a
 * segment unless ARL_ATTACH_CREATE is set, so a deleted name is an error
 * rather than a new, empty limiter.
 */
ARL_API int arl_impl_attach_once(struct arl **out, const struct arl_attach_options *opts,
				 int *stale_fd);

ARL_API int arl_attach(struct arl **out, const struct arl_attach_options *opts)
{
	bool create = opts && (opts->flags & ARL_ATTACH_CREATE);
	int attempt, rc = ARL_ENOTREADY;

	if (!out)
		return ARL_EINVAL;
	for (attempt = 0; attempt < 5; attempt++) {
		int stale_fd = -1;

		rc = arl_impl_attach_once(out, opts, &stale_fd);
		if (stale_fd >= 0) {
			/* A creator died before ready: with ARL_ATTACH_CREATE,
			 * remove its leftovers and create the segment anew. */
			int replaced = create ? arl_impl_replace_stale(stale_fd, arl_impl_segment_name(opts))
					      : ARL_ENOTREADY;

			close(stale_fd);
			if (replaced == 0)
				continue;
		}
		break;
	}
	return rc;
}

/* One attempt of arl_attach(). When the segment is not ready and its
 * creator is gone, returns ARL_ENOTREADY and the open descriptor in
 * *stale_fd for the caller to replace it. */
ARL_API int arl_impl_attach_once(struct arl **out, const struct arl_attach_options *opts,
				 int *stale_fd)
{
	const char *name = arl_impl_segment_name(opts);
	bool read_only = opts && (opts->flags & ARL_ATTACH_READ_ONLY);
	struct arl_shm_header *h;
	struct arl *arl;
	long long size;
	int fd = -1, rc;

	if (!out)
		return ARL_EINVAL;
	*out = NULL;
	if (name[0] != '/' || strlen(name) > ARL_SHM_NAME_MAX || strchr(name + 1, '/'))
		return arl_impl_fail(opts, ARL_EINVAL,
				     "segment name %s is invalid: use one '/' then up to %d bytes "
				     "with no other '/'",
				     name, ARL_SHM_NAME_MAX - 1);
	rc = arl_impl_open(name, opts, &fd);
	if (rc != 0)
		return rc;
	rc = arl_impl_check_owner(fd, name, opts);
	if (rc != 0)
		goto fail;
	size = arl_impl_wait_sized(fd, name, opts);
	if (size == ARL_ENOTREADY && !arl_impl_byte_locked(fd, 0)) {
		*stale_fd = fd;
		return ARL_ENOTREADY;
	}
	if (size < 0) {
		rc = (int)size;
		goto fail;
	}
	h = (struct arl_shm_header *)mmap(NULL, (size_t)size,
					  read_only ? PROT_READ : PROT_READ | PROT_WRITE,
					  MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	rc = arl_impl_wait_ready(h, fd, name, opts);
	if (rc == ARL_ENOTREADY && !arl_impl_byte_locked(fd, 0)) {
		munmap(h, (size_t)size);
		*stale_fd = fd;
		return ARL_ENOTREADY;
	}
	if (rc == 0)
		rc = arl_impl_validate_header(h, (uint64_t)size, name, opts);
	if (rc != 0) {
		munmap(h, (size_t)size);
		goto fail;
	}

	arl = (struct arl *)calloc(1, sizeof(*arl));
	if (!arl) {
		munmap(h, (size_t)size);
		rc = ARL_ENOMEM;
		goto fail;
	}
	arl->header = h;
	arl->size = (size_t)size;
	arl->fd = fd;
	arl->read_only = read_only;
	arl->process_index = UINT32_MAX;
	arl_impl_install_fork_handler();
	arl->fork_epoch = arl_impl_fork_epoch();
	arl->epoch_seen = *arl->fork_epoch;
	pthread_mutex_init(&arl->register_lock, NULL);
	snprintf(arl->name, sizeof(arl->name), "%s", name);
	*out = arl;
	return 0;
fail:
	close(fd);
	return rc;
}

/* Returns the segment's name as attached. */
ARL_API const char *arl_segment_name(const struct arl *arl)
{
	return arl->name;
}

/*
 * Calls visit(context, owner) for each written entry of every live bucket's
 * wait queue, where owner is the entry's process-table index + 1. A ticket
 * taken but not yet written names no owner and is skipped.
 */
ARL_API void arl_impl_visit_queue_owners(const struct arl *arl,
					 void (*visit)(void *context, uint32_t owner),
					 void *context)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i, t;

	for (i = 0; i < arl->header->bucket_capacity; i++) {
		const struct arl_shm_bucket *b = &buckets[i];
		uint32_t head, tail;

		if (arl_load_acquire(&b->state) != ARL_BUCKET_LIVE)
			continue;
		head = arl_load_acquire(&b->queue_head);
		tail = arl_load_acquire(&b->queue_tail);
		for (t = head; t != tail && t - head < ARL_QUEUE_SLOTS; t++) {
			uint64_t entry = arl_load_acquire(&b->queue[t % ARL_QUEUE_SLOTS]);

			if ((uint32_t)entry == t)
				visit(context, (uint32_t)(entry >> 32) & 0xffffff);
		}
	}
}

/* What arl_impl_entry_references() counts queue entries for. */
struct arl_impl_owner_count {
	uint32_t owner;
	uint32_t n;
};

ARL_API void arl_impl_count_owner(void *context, uint32_t owner)
{
	struct arl_impl_owner_count *count = (struct arl_impl_owner_count *)context;

	if (owner == count->owner)
		count->n++;
}

/*
 * Counts what still names process entry `index` as its owner: reservation
 * slots in any state but FREE (a waiter has one too), and entries of the
 * bucket queues. A new process must not take an entry that a dead owner's
 * slots or queue tickets still name, or it would pass for that owner, alive.
 * Registration scans once per process instead of keeping a count that every
 * reserve and release would have to update.
 */
ARL_API uint32_t arl_impl_entry_references(const struct arl *arl, uint32_t index)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	struct arl_impl_owner_count count = {index + 1, 0};
	uint32_t i;

	for (i = 0; i < arl->header->reservation_capacity; i++) {
		uint64_t word = arl_load_acquire(&slots[i].word);

		if (arl_impl_res_state(word) != ARL_RES_FREE &&
		    arl_impl_res_owner(word) == count.owner)
			count.n++;
	}
	arl_impl_visit_queue_owners(arl, arl_impl_count_owner, &count);
	return count.n;
}

/*
 * Detaches: unmaps the segment and drops this process's registration. Live
 * reservations stay charged, and the supervisor reclaims them once no
 * process has their owner entry locked. The handle must not be used by another thread
 * during or after the call.
 */
ARL_API void arl_detach(struct arl *arl)
{
	if (!arl)
		return;
	if (arl->process_index != UINT32_MAX && arl->epoch_seen == *arl->fork_epoch) {
		struct arl_shm_process *p = &arl_impl_processes(arl)[arl->process_index];

		/* Release order: the entry is FREE only after this process stopped
		 * touching its tables. */
		if (arl_impl_entry_references(arl, arl->process_index) == 0)
			arl_store_release(&p->state, ARL_PROCESS_FREE);
	}
	munmap(arl->header, arl->size);
	close(arl->fd); /* drops the liveness lock */
	pthread_mutex_destroy(&arl->register_lock);
	free(arl);
}

/* ------------------------------------------------------------------------
 * Process registration
 * ------------------------------------------------------------------------ */

/* Takes a process entry: the OFD lock on its byte is the claim, and an entry
 * still referenced by a dead owner's reservations or queue tickets is left
 * for the sweeper. */
ARL_API int arl_impl_register_locked(struct arl *arl)
{
	struct arl_shm_process *procs = arl_impl_processes(arl);
	uint32_t cap = arl->header->process_capacity;
	pid_t pid = getpid();
	uint32_t i;

	for (i = 0; i < cap; i++) {
		struct arl_shm_process *p = &procs[(pid + i) % cap];
		uint32_t index = (uint32_t)((pid + i) % cap);

		if (arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_WRLCK,
				       ARL_PROCESS_LOCK_BASE + index) != 0)
			continue; /* a live process holds it */
		/* The lock keeps the previous owner dead and every other
		 * registrant out, so no reference can appear during the scan. */
		if (arl_impl_entry_references(arl, index) != 0) {
			arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_UNLCK,
					   ARL_PROCESS_LOCK_BASE + index);
			continue;
		}
		ARL_FAULT_POINT("register_after_lock");
		arl_store_relaxed(&p->pid, (int32_t)pid);
		arl_store_relaxed(&p->attached_ns, arl_now(arl));
		/* Paired with acquire loads of state by listings and the sweeper. */
		arl_store_release(&p->state, ARL_PROCESS_LIVE);
		arl->process_index = index;
		arl->pid = pid;
		arl->next_slot = (uint32_t)pid;
		return 0;
	}
	return ARL_ETABLEFULL;
}

/*
 * Makes sure this process owns a process entry. After a fork the child
 * inherits the parent's open file description, and with it the parent's
 * liveness lock, so the child opens its own description of the same file and
 * registers anew; the parent keeps its entry and its reservations.
 */
ARL_API int arl_impl_ensure_registered(struct arl *arl)
{
	uint32_t epoch;
	int rc = 0;

	if (arl->read_only)
		return ARL_EROFS;
	epoch = *arl->fork_epoch;
	/* Acquire pairs with the release store of registered below, so a
	 * thread that sees it sees process_index. */
	if (__atomic_load_n(&arl->registered, __ATOMIC_ACQUIRE) &&
	    __atomic_load_n(&arl->epoch_seen, __ATOMIC_RELAXED) == epoch)
		return 0;

	pthread_mutex_lock(&arl->register_lock);
	/* A child of a fork shares the parent's open file description, and
	 * with it the parent's locks, whether or not the parent had registered
	 * yet: it needs a description of its own before it registers. */
	if (arl->epoch_seen != epoch) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", arl->fd);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			rc = ARL_ESYSTEM;
			goto out;
		}
		close(arl->fd); /* the parent keeps its own descriptor and lock */
		arl->fd = fd;
		arl->process_index = UINT32_MAX;
		__atomic_store_n(&arl->registered, false, __ATOMIC_RELAXED);
	}
	if (arl->process_index == UINT32_MAX)
		rc = arl_impl_register_locked(arl);
	if (rc == 0) {
		/* Atomic: other threads of this process read it without the
		 * lock, on their fast path above. */
		__atomic_store_n(&arl->epoch_seen, epoch, __ATOMIC_RELAXED);
		__atomic_store_n(&arl->registered, true, __ATOMIC_RELEASE);
	}
out:
	pthread_mutex_unlock(&arl->register_lock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Buckets
 * ------------------------------------------------------------------------ */

/* One limit as given to arl_bucket_create(). */
struct arl_limit_config {
	uint32_t unit;	    /* enum arl_unit */
	uint64_t amount;    /* units per window, > 0 */
	uint64_t window_ns; /* 1 s to 1 day */
	uint64_t burst;	    /* units; 0: amount */
	uint32_t headroom_permille; /* 0 to 999: share of the burst never granted */
};

struct arl_bucket_config {
	const char *name; /* 1 to ARL_NAME_MAX bytes */
	uint32_t nlimits;
	struct arl_limit_config limits[ARL_MAX_LIMITS];
	uint32_t max_inflight; /* 0: no cap */
	uint32_t flags;	       /* ARL_BUCKET_* */
	/* NULL or "": none at creation; for arl_bucket_set_limits(), NULL keeps
	 * the bucket's current value and "" removes it. */
	const char *profile; /* provider profile for clients, e.g. "openai" */
	const char *account; /* an existing bucket that every reservation here also
			      * charges (arl_reserve() follows it; arl_bucket_chain()) */
};

ARL_API int arl_impl_check_name(const char *name)
{
	size_t len;

	if (!name)
		return ARL_EINVAL;
	len = strnlen(name, ARL_NAME_MAX + 1);
	if (len == 0)
		return ARL_EINVAL;
	if (len > ARL_NAME_MAX)
		return ARL_ENAMETOOLONG;
	return 0;
}

/* Validates a bucket configuration. Returns 0 or ARL_EINVAL /
 * ARL_ENAMETOOLONG / ARL_EOVERFLOW. */
ARL_API int arl_bucket_config_check(const struct arl_bucket_config *config)
{
	uint32_t i;
	int rc;

	if (!config)
		return ARL_EINVAL;
	rc = arl_impl_check_name(config->name);
	if (rc != 0)
		return rc;
	if (config->nlimits > ARL_MAX_LIMITS || (config->flags & ~ARL_BUCKET_KNOWN_FLAGS))
		return ARL_EINVAL;
	if (config->profile && strnlen(config->profile, ARL_PROFILE_MAX + 1) > ARL_PROFILE_MAX)
		return ARL_ENAMETOOLONG;
	if (config->account && config->account[0]) {
		rc = arl_impl_check_name(config->account);
		if (rc != 0)
			return rc;
		if (strcmp(config->account, config->name) == 0)
			return ARL_EINVAL; /* a bucket cannot be its own account */
	}
	for (i = 0; i < config->nlimits; i++) {
		const struct arl_limit_config *l = &config->limits[i];

		if (l->unit < ARL_UNIT_REQUESTS || l->unit > ARL_UNIT_OUTPUT_TOKENS)
			return ARL_EINVAL;
		if (l->amount == 0 || l->window_ns < ARL_MIN_WINDOW_NS ||
		    l->window_ns > ARL_MAX_WINDOW_NS)
			return ARL_EINVAL;
		if (l->amount > ARL_MAX_TOKENS || l->burst > ARL_MAX_TOKENS)
			return ARL_EOVERFLOW;
		if (l->headroom_permille > 999)
			return ARL_EINVAL;
	}
	return 0;
}

/* Copies words of a name stored as in struct arl_shm_bucket, with atomic
 * loads; the copy is NUL-terminated. */
ARL_API void arl_impl_read_words(const uint64_t *words, size_t nwords, char *out)
{
	size_t i;

	for (i = 0; i < nwords; i++) {
		uint64_t w = arl_load_relaxed(&words[i]);

		memcpy(out + 8 * i, &w, sizeof(w));
	}
	out[8 * nwords - 1] = '\0';
}

ARL_API void arl_impl_write_words(uint64_t *words, size_t nwords, const char *text)
{
	char buf[ARL_NAME_MAX + 1];
	size_t i;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, text, strnlen(text, 8 * nwords - 1));
	for (i = 0; i < nwords; i++) {
		uint64_t w;

		memcpy(&w, buf + 8 * i, sizeof(w));
		arl_store_relaxed(&words[i], w);
	}
}

/* Copies a bucket's name into out (ARL_NAME_MAX + 1 bytes). */
ARL_API void arl_impl_read_name(const struct arl_shm_bucket *b, char *out)
{
	arl_impl_read_words(b->name_words, sizeof(b->name_words) / 8, out);
}

ARL_API bool arl_impl_bucket_named(struct arl_shm_bucket *b, const char *name)
{
	char copy[ARL_NAME_MAX + 1];

	if (arl_load_acquire(&b->state) != ARL_BUCKET_LIVE)
		return false;
	arl_impl_read_name(b, copy);
	return strncmp(copy, name, sizeof(copy)) == 0;
}

/*
 * Finds a bucket by name. Returns 0 and the handle, ARL_ENOENT when no live
 * bucket has that name, or ARL_EINVAL / ARL_ENAMETOOLONG for a bad name.
 */
ARL_API int arl_bucket_find(struct arl *arl, const char *name, struct arl_bucket *out)
{
	struct arl_shm_bucket *buckets;
	uint32_t i;
	int rc;

	if (!arl || !out)
		return ARL_EINVAL;
	rc = arl_impl_check_name(name);
	if (rc != 0)
		return rc;
	buckets = arl_impl_buckets(arl);
	for (i = 0; i < arl->header->bucket_capacity; i++) {
		if (arl_impl_bucket_named(&buckets[i], name)) {
			out->index = i;
			out->gen = arl_load_relaxed(&buckets[i].gen);
			return 0;
		}
	}
	return ARL_ENOENT;
}

/* Fills a configuration record from a validated configuration. Release
 * stores: a reader that acquires any new field also sees the odd seq that
 * arl_bucket_set_limits() stored before it, and retries. */
ARL_API void arl_impl_fill_config(struct arl_shm_bucket_config *rec,
				  const struct arl_bucket_config *c)
{
	uint32_t i;

	arl_store_release(&rec->nlimits, c->nlimits);
	arl_store_release(&rec->max_inflight, c->max_inflight);
	arl_store_release(&rec->flags, c->flags);
	for (i = 0; i < ARL_MAX_LIMITS; i++) {
		struct arl_shm_limit_config l;

		memset(&l, 0, sizeof(l));
		if (i < c->nlimits) {
			l.unit = c->limits[i].unit;
			l.amount = c->limits[i].amount;
			l.window_ns = c->limits[i].window_ns;
			l.burst = c->limits[i].burst ? c->limits[i].burst : c->limits[i].amount;
			l.headroom_permille = c->limits[i].headroom_permille;
			l.usable_burst = l.burst - l.burst * l.headroom_permille / 1000;
			l.unit_ns = l.window_ns % l.amount == 0 ? l.window_ns / l.amount : 0;
			l.tolerance_ns = arl_impl_cost_ns(&l, l.usable_burst);
		}
		arl_store_release(&rec->limit[i].unit, l.unit);
		arl_store_release(&rec->limit[i].headroom_permille, l.headroom_permille);
		arl_store_release(&rec->limit[i].amount, l.amount);
		arl_store_release(&rec->limit[i].window_ns, l.window_ns);
		arl_store_release(&rec->limit[i].burst, l.burst);
		arl_store_release(&rec->limit[i].usable_burst, l.usable_burst);
		arl_store_release(&rec->limit[i].tolerance_ns, l.tolerance_ns);
		arl_store_release(&rec->limit[i].unit_ns, l.unit_ns);
	}
}

/* The account link of a bucket, as stored in struct arl_shm_bucket. */
ARL_API uint64_t arl_impl_account_word(const struct arl_bucket *account)
{
	return account ? (uint64_t)(account->index + 1) | ((uint64_t)account->gen << 32) : 0;
}

ARL_API void arl_impl_fill_bucket(struct arl_shm_bucket *b, const struct arl_bucket_config *c,
				  const struct arl_bucket *account, uint64_t now)
{
	uint32_t i;

	arl_impl_write_words(b->name_words, sizeof(b->name_words) / 8, c->name);
	arl_impl_write_words(b->profile_words, sizeof(b->profile_words) / 8,
			     c->profile ? c->profile : "");
	arl_store_relaxed(&b->account, arl_impl_account_word(account));
	memset(b->config, 0, sizeof(b->config));
	arl_impl_fill_config(&b->config[0], c);
	/* Atomic stores for the words that a process may still read for the
	 * previous bucket of this slot, such as a sweeper checking a bucket it
	 * saw live a moment ago. */
	arl_store_relaxed(&b->config_index, 0u);
	arl_store_relaxed(&b->inflight, (uint64_t)0);
	arl_store_relaxed(&b->waiters, 0u);
	arl_store_relaxed(&b->queue_head, 0u);
	arl_store_relaxed(&b->queue_tail, 0u);
	arl_store_relaxed(&b->queue_stall_seen, 0u);
	for (i = 0; i < ARL_QUEUE_SLOTS; i++)
		arl_store_relaxed(&b->queue[i], (uint64_t)0);
	arl_store_relaxed(&b->blocked_until_ns, (uint64_t)0);
	arl_store_relaxed(&b->learned, 0u);
	memset(&b->stats, 0, sizeof(b->stats));
	for (i = 0; i < ARL_MAX_LIMITS; i++)
		arl_store_relaxed(&b->limits[i].tat_ns, now); /* a new bucket starts full */
}

/*
 * Wakes every process waiting on a bucket so that it notices the bucket's
 * removal. Moving queue_head far past queue_tail changes the word queued
 * waiters sleep on (so one about to sleep does not), and makes the queue
 * look full, so no waiter enters it again.
 */
ARL_API void arl_impl_wake_all(struct arl_shm_bucket *b)
{
	__atomic_fetch_add(&b->queue_head, 2 * ARL_QUEUE_SLOTS, __ATOMIC_SEQ_CST);
	arl_impl_futex(&b->queue_head, FUTEX_WAKE, INT_MAX, NULL);
	__atomic_fetch_add(&b->wake_seq, 1, __ATOMIC_SEQ_CST);
	arl_impl_futex(&b->wake_seq, FUTEX_WAKE, INT_MAX, NULL);
}

/*
 * Frees the table slots of retired buckets that no reservation slot names
 * any more, so a new bucket can take them, and wakes the waiters of those
 * still named. Caller holds the admin lock.
 *
 * This is the segment's grace period. Every operation that writes a bucket
 * through a handle (reserve, wait, release, cancel, the sweeper's reclaim)
 * does it from a reservation slot that names the bucket, recorded before a
 * seq_cst write of the slot word and before a seq_cst load of the bucket's
 * state (arl_impl_claim_for()). The retiring store and the loads of the
 * slot words here are seq_cst too, so a slot this scan misses belongs to an
 * operation that will see the bucket retired and back out. So once no slot names the
 * bucket, every process has left it, live or dead, busy or idle, and no
 * per-process epoch is needed. Returns the number of slots freed.
 */
ARL_API uint32_t arl_impl_recycle_buckets(struct arl *arl)
{
	struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t i, j, c, freed = 0;

	for (i = 0; i < arl->header->bucket_capacity; i++) {
		uint32_t retired = ARL_BUCKET_RETIRED;
		bool named = false;

		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_RETIRED)
			continue;
		for (j = 0; j < arl->header->reservation_capacity && !named; j++) {
			const struct arl_shm_reservation *r = &slots[j];
			uint32_t n;

			if (arl_impl_res_state(__atomic_load_n(&r->word, __ATOMIC_SEQ_CST)) ==
			    ARL_RES_FREE)
				continue;
			n = arl_load_relaxed(&r->nbuckets);
			for (c = 0; c < n && c < ARL_MAX_CHAIN; c++)
				if (arl_load_relaxed(&r->bucket_index[c]) == i)
					named = true;
		}
		/* A removal killed before it woke the waiters would leave them
		 * asleep until their deadlines: wake them again. The admin lock
		 * keeps the slot from being reused meanwhile. */
		if (named)
			arl_impl_wake_all(&buckets[i]);
		else if (arl_cas(&buckets[i].state, &retired, ARL_BUCKET_FREE, __ATOMIC_RELEASE))
			freed++;
	}
	return freed;
}

/* Takes the admin lock: the OFD lock on byte 1 serializes processes, and
 * the mutex the threads that share this handle's open file description. */
ARL_API int arl_impl_admin_lock(struct arl *arl)
{
	pthread_mutex_lock(&arl->register_lock);
	if (arl_impl_lock_byte(arl->fd, F_OFD_SETLKW, F_WRLCK, 1) != 0) {
		pthread_mutex_unlock(&arl->register_lock);
		return ARL_ESYSTEM;
	}
	return 0;
}

ARL_API void arl_impl_admin_unlock(struct arl *arl)
{
	arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_UNLCK, 1);
	pthread_mutex_unlock(&arl->register_lock);
}

/*
 * Creates a bucket. Bucket creation is an administrative act (arld, arlctl,
 * tests, embedded use): concurrent creators are serialized by an OFD lock on
 * byte 1 of the segment, so a name is never created twice. An account bucket
 * named by config->account must exist already, which also keeps accounts
 * free of cycles. Returns 0 and the handle, ARL_EEXIST (with the existing
 * bucket's handle), ARL_ENOENT when the account bucket does not exist, or
 * ARL_ETABLEFULL.
 */
ARL_API int arl_bucket_create(struct arl *arl, const struct arl_bucket_config *config,
			      struct arl_bucket *out)
{
	struct arl_shm_bucket *buckets;
	struct arl_bucket account = {0, 0};
	uint32_t i, free_index = UINT32_MAX;
	int rc;

	if (!arl || !out)
		return ARL_EINVAL;
	out->index = out->gen = 0;
	if (arl->read_only)
		return ARL_EROFS;
	rc = arl_bucket_config_check(config);
	if (rc != 0)
		return rc;
	rc = arl_impl_admin_lock(arl);
	if (rc != 0)
		return rc;

	if (arl_bucket_find(arl, config->name, out) == 0) {
		rc = ARL_EEXIST;
		goto out;
	}
	if (config->account && config->account[0] &&
	    arl_bucket_find(arl, config->account, &account) != 0) {
		rc = ARL_ENOENT; /* the account bucket must exist first */
		goto out;
	}
	buckets = arl_impl_buckets(arl);
	arl_impl_recycle_buckets(arl);
	for (i = 0; i < arl->header->bucket_capacity && free_index == UINT32_MAX; i++)
		if (arl_load_acquire(&buckets[i].state) == ARL_BUCKET_FREE)
			free_index = i;
	if (free_index == UINT32_MAX) {
		rc = ARL_ETABLEFULL;
		goto out;
	}

	arl_store_relaxed(&buckets[free_index].state, ARL_BUCKET_BUSY);
	arl_impl_fill_bucket(&buckets[free_index], config,
			     config->account && config->account[0] ? &account : NULL, arl_now(arl));
	arl_store_relaxed(&buckets[free_index].gen, buckets[free_index].gen + 1);
	/* Paired with the acquire load in arl_impl_bucket_named() and
	 * arl_impl_bucket(): a finder sees the whole configuration. */
	arl_store_release(&buckets[free_index].state, ARL_BUCKET_LIVE);
	out->index = free_index;
	out->gen = buckets[free_index].gen;
	rc = 0;
out:
	arl_impl_admin_unlock(arl);
	return rc;
}

/* Returns the live bucket a handle names, or NULL if the handle is stale. */
ARL_API struct arl_shm_bucket *arl_impl_bucket(const struct arl *arl, uint32_t index, uint32_t gen)
{
	struct arl_shm_bucket *b;

	if (index >= arl->header->bucket_capacity)
		return NULL;
	b = &arl_impl_buckets(arl)[index];
	if (arl_load_acquire(&b->state) != ARL_BUCKET_LIVE || arl_load_relaxed(&b->gen) != gen)
		return NULL;
	return b;
}

/* A bucket's configuration as one operation sees it: a private copy read
 * once, so the operation never mixes an old and a new configuration. */
struct arl_impl_view {
	uint32_t nlimits;
	uint32_t max_inflight;
	uint32_t flags;
	struct arl_shm_limit_config limit[ARL_MAX_LIMITS];
};

/*
 * Copies the configuration record in use. The acquire load of seq pairs
 * with the release store that completes the record in arl_bucket_set_limits(),
 * and the acquire loads of the fields keep the second load of seq after the
 * copy, so an unchanged even seq means the copy is whole. The index names a complete
 * record, so a writer stopped mid-change never makes readers wait.
 */
/*
 * Makes a view of a corrupt record refuse every request instead of hanging
 * or dividing by zero: one request limit that can never fit. Only a segment
 * written by something other than arl gets here.
 */
ARL_API void arl_impl_refuse_all(struct arl_impl_view *v)
{
	memset(v, 0, sizeof(*v));
	v->nlimits = 1;
	v->limit[0].unit = ARL_UNIT_REQUESTS;
	v->limit[0].amount = 1;
	v->limit[0].window_ns = ARL_MAX_WINDOW_NS;
}

ARL_API void arl_impl_read_config(const struct arl_shm_bucket *b, struct arl_impl_view *v)
{
	uint32_t tries;

	/* A writer fills the record not in use, so the one in use is only odd
	 * in a corrupt segment: give up after many tries rather than spin. */
	for (tries = 0; tries < (1u << 20); tries++) {
		/* Acquire pairs with the release store of config_index in
		 * arl_bucket_set_limits(). */
		uint32_t index = arl_load_acquire(&b->config_index) & 1u;
		const struct arl_shm_bucket_config *rec = &b->config[index];
		uint32_t seq = arl_load_acquire(&rec->seq);
		uint32_t i;

		/* Acquire loads keep the second load of seq after every field. */
		v->nlimits = arl_load_acquire(&rec->nlimits);
		if (v->nlimits > ARL_MAX_LIMITS)
			v->nlimits = ARL_MAX_LIMITS; /* hostile: never index past the array */
		v->max_inflight = arl_load_acquire(&rec->max_inflight);
		v->flags = arl_load_acquire(&rec->flags);
		for (i = 0; i < ARL_MAX_LIMITS; i++) {
			const struct arl_shm_limit_config *l = &rec->limit[i];

			v->limit[i].unit = arl_load_acquire(&l->unit);
			v->limit[i].headroom_permille = arl_load_acquire(&l->headroom_permille);
			v->limit[i].amount = arl_load_acquire(&l->amount);
			v->limit[i].window_ns = arl_load_acquire(&l->window_ns);
			v->limit[i].burst = arl_load_acquire(&l->burst);
			v->limit[i].usable_burst = arl_load_acquire(&l->usable_burst);
			v->limit[i].tolerance_ns = arl_load_acquire(&l->tolerance_ns);
			v->limit[i].unit_ns = arl_load_acquire(&l->unit_ns);
		}
		if (!(seq & 1u) && arl_load_relaxed(&rec->seq) == seq &&
		    (arl_load_relaxed(&b->config_index) & 1u) == index) {
			for (i = 0; i < v->nlimits; i++)
				if (v->limit[i].amount == 0 || v->limit[i].window_ns == 0)
					arl_impl_refuse_all(v);
			return;
		}
	}
	arl_impl_refuse_all(v);
}

/*
 * Scales the time a limit owes (TAT - now) from the old refill rate to the
 * new one, so the tokens it owes stay the same: owed' = owed * T'/T, where
 * T = window / amount is the time one unit takes to refill.
 */
ARL_API void arl_impl_rescale_owed(struct arl_shm_limit *l, const struct arl_shm_limit_config *old,
				   const struct arl_shm_limit_config *cur, uint64_t now)
{
	__extension__ typedef unsigned __int128 u128;
	uint64_t tat = arl_load_relaxed(&l->tat_ns);

	for (;;) {
		u128 owed;

		if (tat <= now || old->window_ns == 0 || cur->amount == 0)
			return; /* owes nothing */
		owed = (u128)(tat - now) * cur->window_ns * old->amount;
		owed /= (u128)old->window_ns * cur->amount;
		if (owed > UINT64_MAX / 4)
			owed = UINT64_MAX / 4;
		if (arl_cas(&l->tat_ns, &tat, now + (uint64_t)owed, __ATOMIC_RELAXED))
			return;
	}
}

/*
 * Changes a live bucket's limits, in-flight cap and flags. Each limit keeps
 * the tokens it owes rather than the time: a limit that owed the refill of N
 * tokens still owes N at the new rate. The limits must keep their number
 * and their units in order, since live reservations record their charges by
 * position; a new shape needs a new bucket. Waiters are woken to try the new
 * limits. Returns 0, ARL_ESTALE for a stale handle, ARL_EINVAL for another
 * shape or an invalid configuration, ARL_EROFS, or ARL_ESYSTEM.
 *
 * NOTE: an operation that read the old configuration just before the change
 * can finish under it a moment after the owed time was rescaled; the error
 * is at most that one operation's charge.
 */
/*
 * Fills chain[] with a bucket and the account buckets it charges in turn
 * (its account, that bucket's account, and so on), ready for
 * arl_reserve_chain(). *n is the chain's length, 1 for a bucket without an
 * account. Returns 0; ARL_ESTALE when the bucket or an account in its chain
 * was removed (recreate the bucket to link it to the new account); or
 * ARL_EOVERFLOW when the chain is longer than ARL_MAX_CHAIN.
 */
ARL_API int arl_bucket_chain(const struct arl *arl, struct arl_bucket bucket,
			     struct arl_bucket chain[ARL_MAX_CHAIN], uint32_t *n)
{
	const struct arl_shm_bucket *b;

	if (!arl || !chain || !n)
		return ARL_EINVAL;
	*n = 0;
	for (;;) {
		uint64_t account;

		b = arl_impl_bucket(arl, bucket.index, bucket.gen);
		if (!b)
			return ARL_ESTALE;
		if (*n == ARL_MAX_CHAIN)
			return ARL_EOVERFLOW;
		chain[(*n)++] = bucket;
		account = arl_load_relaxed(&b->account);
		if (account == 0)
			return 0;
		bucket.index = (uint32_t)account - 1;
		bucket.gen = (uint32_t)(account >> 32);
	}
}

/*
 * Applies a changed profile or account to a live bucket (caller holds the
 * admin lock). The link is one word, so a reserve following it reads the old
 * account or the new one, never half of each. Returns 0, ARL_ENOENT when the
 * account does not exist, or ARL_EINVAL when linking it would make a cycle.
 */
ARL_API int arl_impl_relink(struct arl *arl, struct arl_bucket bucket, struct arl_shm_bucket *b,
			    const struct arl_bucket_config *config)
{
	struct arl_bucket account, chain[ARL_MAX_CHAIN];
	uint32_t n, c;

	if (config->profile)
		arl_impl_write_words(b->profile_words, sizeof(b->profile_words) / 8,
				     config->profile);
	if (!config->account)
		return 0;
	if (!config->account[0]) {
		arl_store_relaxed(&b->account, (uint64_t)0);
		return 0;
	}
	if (arl_bucket_find(arl, config->account, &account) != 0)
		return ARL_ENOENT;
	/* The new account's own chain must not lead back here. */
	if (arl_bucket_chain(arl, account, chain, &n) == 0)
		for (c = 0; c < n; c++)
			if (chain[c].index == bucket.index)
				return ARL_EINVAL;
	arl_store_relaxed(&b->account, arl_impl_account_word(&account));
	return 0;
}

ARL_API int arl_bucket_set_limits(struct arl *arl, struct arl_bucket bucket,
				  const struct arl_bucket_config *config)
{
	struct arl_shm_bucket_config *rec;
	struct arl_shm_bucket *b;
	struct arl_impl_view old, cur;
	uint32_t i, next, seq;
	uint64_t now;
	int rc;

	if (!arl || !config)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	rc = arl_bucket_config_check(config);
	if (rc != 0)
		return rc;
	rc = arl_impl_admin_lock(arl);
	if (rc != 0)
		return rc;
	b = arl_impl_bucket(arl, bucket.index, bucket.gen);
	if (!b) {
		rc = ARL_ESTALE;
		goto out;
	}
	arl_impl_read_config(b, &old);
	rc = config->nlimits == old.nlimits ? 0 : ARL_EINVAL;
	for (i = 0; rc == 0 && i < old.nlimits; i++)
		if (config->limits[i].unit != old.limit[i].unit)
			rc = ARL_EINVAL;
	if (rc == 0)
		rc = arl_impl_relink(arl, bucket, b, config);
	if (rc != 0)
		goto out;

	/* Fill the record not in use. Its seq is odd meanwhile (it may be odd
	 * already if an earlier writer died here); the fields' release stores
	 * keep the odd value ahead of them for a reader that checks seq twice. */
	next = (arl_load_relaxed(&b->config_index) & 1u) ^ 1u;
	rec = &b->config[next];
	seq = arl_load_relaxed(&rec->seq) | 1u;
	arl_store_relaxed(&rec->seq, seq);
	arl_impl_fill_config(rec, config);
	/* Paired with the acquire load of seq in arl_impl_read_config(). */
	arl_store_release(&rec->seq, seq + 1);

	/* Rescale what each limit owes, then switch readers to the new record.
	 * The admin lock keeps `old` current: only this call changes records. */
	now = arl_now(arl);
	for (i = 0; i < old.nlimits; i++) {
		cur.limit[i] = rec->limit[i];
		arl_impl_rescale_owed(&b->limits[i], &old.limit[i], &cur.limit[i], now);
	}
	/* Paired with the acquire load of config_index in arl_impl_read_config(). */
	arl_store_release(&b->config_index, next);
	arl_impl_wake_bucket(b);
out:
	arl_impl_admin_unlock(arl);
	return rc;
}

/*
 * Removes a bucket. Handles to it become stale at once: reserves on it fail
 * with ARL_ESTALE, and its waiters wake and return ARL_ESTALE. Reservations
 * already made on it stay valid; releasing them frees their slots and gives
 * nothing back (the bucket is gone). Its table slot is reused only after the
 * last slot naming it is freed (arl_impl_recycle_buckets()), so a stale
 * operation never charges the bucket created there next. Returns 0,
 * ARL_ESTALE for a handle already stale, ARL_EROFS or ARL_ESYSTEM.
 */
ARL_API int arl_bucket_remove(struct arl *arl, struct arl_bucket bucket)
{
	struct arl_shm_bucket *b;
	int rc;

	if (!arl)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	rc = arl_impl_admin_lock(arl);
	if (rc != 0)
		return rc;
	b = arl_impl_bucket(arl, bucket.index, bucket.gen);
	if (b) {
		/* seq_cst: see arl_impl_recycle_buckets(). */
		__atomic_store_n(&b->state, ARL_BUCKET_RETIRED, __ATOMIC_SEQ_CST);
		ARL_FAULT_POINT("remove_after_retire");
		arl_impl_wake_all(b);
		arl_impl_recycle_buckets(arl);
	}
	arl_impl_admin_unlock(arl);
	return b ? 0 : ARL_ESTALE;
}

/*
 * Starts or stops draining the segment. While it drains, every reserve
 * fails with ARL_EDRAINING and waiters give up with it, while reservations
 * already made can still be released. `arlctl drain` uses it before it
 * removes a segment. Returns 0, ARL_EINVAL or ARL_EROFS.
 */
ARL_API int arl_set_draining(struct arl *arl, bool draining)
{
	struct arl_shm_bucket *buckets;
	uint32_t i;

	if (!arl)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	__atomic_store_n(&arl->header->draining, draining ? 1u : 0u, __ATOMIC_SEQ_CST);
	if (!draining)
		return 0;
	/* Wake the queue heads, which read the flag on their next try. Each
	 * head that leaves serves the next ticket, whose waiter reads it too. */
	buckets = arl_impl_buckets(arl);
	for (i = 0; i < arl->header->bucket_capacity; i++)
		if (arl_load_acquire(&buckets[i].state) == ARL_BUCKET_LIVE)
			arl_impl_wake_bucket(&buckets[i]);
	return 0;
}

/* Returns true while the segment is draining. */
ARL_API bool arl_draining(const struct arl *arl)
{
	return arl && arl_load_relaxed(&arl->header->draining) != 0;
}

/* ------------------------------------------------------------------------
 * Limits: GCRA steps on one limit
 * ------------------------------------------------------------------------ */

/* Units a limit charges for a request or a usage. */
ARL_API uint64_t arl_impl_units(uint32_t unit, uint64_t input, uint64_t output)
{
	switch (unit) {
	case ARL_UNIT_REQUESTS:
		return 1;
	case ARL_UNIT_TOKENS:
		return arl_impl_sat_add(input, output);
	case ARL_UNIT_INPUT_TOKENS:
		return input;
	case ARL_UNIT_OUTPUT_TOKENS:
		return output;
	default:
		return 0;
	}
}

/*
 * Takes cost_ns from a limit if the result stays within its tolerance.
 * Returns 0, or ARL_EAGAIN with *retry_at set to the exact time at which the
 * same charge would fit.
 */
ARL_API int arl_impl_limit_take(struct arl_shm_limit *l, uint64_t cost, uint64_t tolerance,
				uint64_t now, uint64_t *retry_at)
{
	uint64_t tat = arl_load_relaxed(&l->tat_ns);

	for (;;) {
		uint64_t base = tat > now ? tat : now;
		uint64_t next = arl_impl_sat_add(base, cost);

		if (next - now > tolerance) {
			*retry_at = arl_impl_sat_sub(next, tolerance);
			return ARL_EAGAIN;
		}
		/* Relaxed is enough: the TAT is self-contained and publishes no
		 * other data; the slot's marks are ordered by the slot word. */
		if (arl_cas(&l->tat_ns, &tat, next, __ATOMIC_RELAXED))
			return 0;
	}
}

/* Gives cost_ns back to a limit, never beyond a full bucket (tat >= now). */
ARL_API void arl_impl_limit_give(struct arl_shm_limit *l, uint64_t cost, uint64_t now)
{
	uint64_t tat = arl_load_relaxed(&l->tat_ns);

	for (;;) {
		uint64_t next = arl_impl_sat_sub(tat, cost);

		if (next < now)
			next = now;
		if (next >= tat)
			return; /* already full at now: nothing to give back */
		if (arl_cas(&l->tat_ns, &tat, next, __ATOMIC_RELAXED))
			return;
	}
}

/* Charges cost_ns unconditionally: overage, which only delays later grants. */
ARL_API void arl_impl_limit_charge(struct arl_shm_limit *l, uint64_t cost, uint64_t now)
{
	uint64_t tat = arl_load_relaxed(&l->tat_ns);

	for (;;) {
		uint64_t base = tat > now ? tat : now;

		if (arl_cas(&l->tat_ns, &tat, arl_impl_sat_add(base, cost), __ATOMIC_RELAXED))
			return;
	}
}

#define ARL_INFLIGHT_VERSION (1ull << 32)

/* Returns the in-flight count of a bucket's in-flight word. */
ARL_API uint32_t arl_impl_inflight_count(uint64_t word)
{
	return (uint32_t)word;
}

/* Takes an in-flight slot if the cap allows. The release half of acq_rel
 * pairs with the sweeper's acquire load of the word in src/sweep.c: a
 * sweeper that sees this take also sees the slot record written before it. */
ARL_API bool arl_impl_inflight_take(struct arl_shm_bucket *b, uint32_t cap)
{
	uint64_t word;

	if (cap == 0) {
		__atomic_fetch_add(&b->inflight, 1 + ARL_INFLIGHT_VERSION, __ATOMIC_ACQ_REL);
		return true;
	}
	word = arl_load_relaxed(&b->inflight);
	do {
		if (arl_impl_inflight_count(word) >= cap)
			return false;
	} while (!__atomic_compare_exchange_n(&b->inflight, &word,
					      word + 1 + ARL_INFLIGHT_VERSION, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
	return true;
}

/* Gives an in-flight slot back: the count down by one, the version up. */
ARL_API void arl_impl_inflight_give(struct arl_shm_bucket *b)
{
	/* Adding 2^32 - 1 subtracts one from the count, and its carry adds one
	 * to the version; the count is never 0 here. */
	__atomic_fetch_add(&b->inflight, ARL_INFLIGHT_VERSION - 1, __ATOMIC_ACQ_REL);
}

/* ------------------------------------------------------------------------
 * Reservations
 * ------------------------------------------------------------------------ */

/* The buckets of a slot's chain, resolved, with the configuration each is
 * seen with; NULL for a bucket removed since. */
struct arl_impl_chain {
	uint32_t n;
	struct arl_shm_bucket *bucket[ARL_MAX_CHAIN];
	struct arl_impl_view view[ARL_MAX_CHAIN];
};

ARL_API void arl_impl_resolve_chain(const struct arl *arl, const struct arl_shm_reservation *r,
				    struct arl_impl_chain *chain)
{
	uint32_t c, n = arl_load_relaxed(&r->nbuckets);

	/* A hostile process could write any count: never index past the array. */
	chain->n = n > ARL_MAX_CHAIN ? ARL_MAX_CHAIN : n;
	for (c = 0; c < chain->n; c++) {
		chain->bucket[c] = arl_impl_bucket(arl, arl_load_relaxed(&r->bucket_index[c]),
						   arl_load_relaxed(&r->bucket_gen[c]));
		if (chain->bucket[c])
			arl_impl_read_config(chain->bucket[c], &chain->view[c]);
	}
}

/* Gives back the charges of one chain position that mask selects and the
 * slot's marks still hold, clearing each mark before its give-back. */
ARL_API void arl_impl_give_back_one(struct arl_shm_reservation *r, uint32_t c,
				    struct arl_shm_bucket *b, const struct arl_impl_view *v,
				    uint32_t mask, uint64_t now)
{
	uint64_t in = arl_load_relaxed(&r->input_tokens);
	uint64_t out = arl_load_relaxed(&r->output_tokens);
	uint32_t i;

	for (i = 0; i < v->nlimits; i++) {
		const struct arl_shm_limit_config *l = &v->limit[i];
		uint32_t mark = ARL_MARK_LIMIT(c, i);

		/* Whoever clears the mark gives the charge back, once. */
		if (!(mask & mark) || !(__atomic_fetch_and(&r->marks, ~mark, __ATOMIC_RELAXED) & mark))
			continue;
		arl_impl_limit_give(&b->limits[i],
				    arl_impl_cost_ns(l, arl_impl_units(l->unit, in, out)), now);
	}
	/* A kill between clearing the mark and the give leaves the count one
	 * too high; the sweeper resets the count of a bucket no reservation
	 * references, so the loss is a temporary under-admission. */
	if ((mask & ARL_MARK_INFLIGHT(c)) &&
	    (__atomic_fetch_and(&r->marks, ~ARL_MARK_INFLIGHT(c), __ATOMIC_RELAXED) &
	     ARL_MARK_INFLIGHT(c)))
		arl_impl_inflight_give(b);
}

/* Gives back what mask selects at every position of a chain. Used by cancel,
 * a refused reserve, a release (in-flight only) and the sweeper. */
ARL_API void arl_impl_give_back(struct arl_shm_reservation *r, const struct arl_impl_chain *chain,
				uint32_t mask, uint64_t now)
{
	uint32_t c;

	for (c = 0; c < chain->n; c++)
		if (chain->bucket[c])
			arl_impl_give_back_one(r, c, chain->bucket[c], &chain->view[c], mask, now);
}

ARL_API void arl_impl_wake_chain(const struct arl_impl_chain *chain)
{
	uint32_t c;

	for (c = 0; c < chain->n; c++)
		if (chain->bucket[c])
			arl_impl_wake_bucket(chain->bucket[c]);
}

/* Frees a slot: a new generation, no owner. Returns false when the word was
 * no longer `word` (someone else freed it). */
ARL_API bool arl_impl_free_slot(struct arl *arl, struct arl_shm_reservation *r, uint64_t word)
{
	uint64_t expected = word;

	/* A released slot still holds its token marks (tokens stay charged).
	 * Clear them and the chain, so that a next owner killed between its
	 * claim and its record leaves nothing for the sweeper to give back. */
	arl_store_relaxed(&r->marks, 0u);
	arl_store_relaxed(&r->nbuckets, 0u);
	/* Paired with the acquire CAS that claims the slot: the next owner sees
	 * the marks and the chain cleared. A CAS, not a store: when two
	 * sweepers finish one RECLAIMING slot, only one frees it, and never a
	 * slot someone claimed since. */
	if (!arl_cas(&r->word, &expected,
		     arl_impl_res_word(arl_impl_res_gen(word) + 1, ARL_RES_FREE, 0),
		     __ATOMIC_RELEASE))
		return false;
	(void)arl;
	return true;
}

/* Claims a free slot for this process. Returns its index or UINT32_MAX. */
ARL_API uint32_t arl_impl_claim_slot(struct arl *arl, uint64_t *word_out)
{
	struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t cap = arl->header->reservation_capacity;
	uint32_t owner = arl->process_index + 1;
	/* Not an atomic increment: threads racing here at worst start at the
	 * same slot, and one of them loses a CAS. */
	uint32_t start = __atomic_load_n(&arl->next_slot, __ATOMIC_RELAXED);
	uint32_t i;

	for (i = 0; i < cap; i++) {
		uint32_t index = (start + i) % cap;
		struct arl_shm_reservation *r = &slots[index];
		uint64_t word = arl_load_relaxed(&r->word);
		uint64_t claimed;

		if (arl_impl_res_state(word) != ARL_RES_FREE)
			continue;
		claimed = arl_impl_res_word(arl_impl_res_gen(word), ARL_RES_CLAIMED, owner);
		/* Acquire pairs with the release in arl_impl_free_slot(). */
		if (arl_cas(&r->word, &word, claimed, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&arl->next_slot, index + 1, __ATOMIC_RELAXED);
			*word_out = claimed;
			return index;
		}
	}
	return UINT32_MAX;
}

ARL_API int arl_impl_check_request(const struct arl_request *req)
{
	if (!req)
		return ARL_EINVAL;
	if (req->input_tokens > ARL_MAX_TOKENS || req->output_tokens > ARL_MAX_TOKENS)
		return ARL_EOVERFLOW;
	return 0;
}

/* Returns ARL_ENEVERFITS if some limit of the bucket can never grant req:
 * the request is larger than the limit's burst less its headroom. */
ARL_API int arl_impl_check_fits(const struct arl_impl_view *v, const struct arl_request *req)
{
	uint32_t i;

	for (i = 0; i < v->nlimits; i++) {
		const struct arl_shm_limit_config *l = &v->limit[i];
		uint64_t units = arl_impl_units(l->unit, req->input_tokens, req->output_tokens);

		if (units > l->usable_burst)
			return ARL_ENEVERFITS;
	}
	return 0;
}

/*
 * Returns the earliest time at which every limit of the chain could grant
 * the slot's request, judged from the current TATs: the latest of each
 * limit's max(now, tat + cost - tolerance). Exact while nothing else
 * changes the limits, since limits only refill as time passes.
 */
ARL_API uint64_t arl_impl_fit_time(const struct arl_shm_reservation *r,
				   const struct arl_impl_chain *chain, uint64_t now)
{
	uint64_t in = arl_load_relaxed(&r->input_tokens);
	uint64_t out = arl_load_relaxed(&r->output_tokens);
	uint64_t latest = now;
	uint32_t c, i;

	for (c = 0; c < chain->n; c++) {
		const struct arl_shm_bucket *b = chain->bucket[c];
		const struct arl_impl_view *v = &chain->view[c];

		for (i = 0; b && i < v->nlimits; i++) {
			const struct arl_shm_limit_config *l = &v->limit[i];
			uint64_t cost = arl_impl_cost_ns(l, arl_impl_units(l->unit, in, out));
			uint64_t at = arl_impl_sat_sub(
				arl_impl_sat_add(arl_load_relaxed(&b->limits[i].tat_ns), cost),
				l->tolerance_ns);

			if (at > latest)
				latest = at;
		}
	}
	return latest;
}

/* Charges one bucket of the chain, marking each charge after it is taken.
 * Returns 0, ARL_EAGAIN when a limit refused, or 1 when the in-flight cap
 * refused. */
ARL_API int arl_impl_charge_one(struct arl_shm_reservation *r, uint32_t c,
				struct arl_shm_bucket *b, const struct arl_impl_view *v,
				uint64_t now)
{
	uint64_t in = arl_load_relaxed(&r->input_tokens);
	uint64_t out = arl_load_relaxed(&r->output_tokens);
	uint32_t cap = v->max_inflight;
	uint64_t unused;
	uint32_t i;

	/* A discovering bucket sends one request until the first response's
	 * headers give the limits. */
	if ((v->flags & ARL_BUCKET_DISCOVER) && !arl_load_acquire(&b->learned))
		cap = 1;
	if (!arl_impl_inflight_take(b, cap))
		return 1;
	/* Relaxed, and no read-modify-write, because only the owner writes the
	 * marks while the slot is CLAIMED. A later reader acquires them through
	 * the slot word (COMMITTED, or the CAS that takes a dead owner's slot). */
	arl_store_relaxed(&r->marks, arl_load_relaxed(&r->marks) | ARL_MARK_INFLIGHT(c));
	ARL_FAULT_POINT("reserve_after_inflight");
	for (i = 0; i < v->nlimits; i++) {
		const struct arl_shm_limit_config *l = &v->limit[i];
		uint64_t cost = arl_impl_cost_ns(l, arl_impl_units(l->unit, in, out));

		if (arl_impl_limit_take(&b->limits[i], cost, l->tolerance_ns, now, &unused) != 0)
			return ARL_EAGAIN;
		arl_store_relaxed(&r->marks, arl_load_relaxed(&r->marks) | ARL_MARK_LIMIT(c, i));
		ARL_FAULT_POINT("reserve_mid_charge");
	}
	return 0;
}

/*
 * Charges every bucket of the chain in order, all or nothing: on a refusal
 * everything taken so far is given back. Returns 0, or ARL_EAGAIN with
 * *retry_at the exact time the whole chain would fit (0 when an in-flight
 * cap refused: a release, not time, frees it) and *refused the position of
 * the bucket that refused.
 */
ARL_API int arl_impl_charge(struct arl_shm_reservation *r, const struct arl_impl_chain *chain,
			    uint64_t now, uint64_t *retry_at, uint32_t *refused)
{
	uint32_t c;
	int rc = 0;

	for (c = 0; c < chain->n && rc == 0; c++)
		rc = arl_impl_charge_one(r, c, chain->bucket[c], &chain->view[c], now);
	if (rc == 0)
		return 0;

	*refused = c - 1;
	arl_impl_give_back(r, chain, ~0u, now);
	*retry_at = rc == 1 ? 0 : arl_impl_fit_time(r, chain, now);
	return ARL_EAGAIN;
}

ARL_API void arl_impl_record(struct arl_shm_reservation *r, const struct arl_bucket *buckets,
			     uint32_t n, const struct arl_request *req, uint64_t now)
{
	uint32_t c;

	/* The chain before its length: a slot whose owner dies in between
	 * still reads as holding no chain. */
	for (c = 0; c < ARL_MAX_CHAIN; c++) {
		arl_store_relaxed(&r->bucket_index[c], c < n ? buckets[c].index : 0u);
		arl_store_relaxed(&r->bucket_gen[c], c < n ? buckets[c].gen : 0u);
	}
	arl_store_relaxed(&r->nbuckets, n);
	arl_store_relaxed(&r->marks, 0u);
	arl_store_relaxed(&r->chunks, 0u);
	arl_store_relaxed(&r->input_tokens, req->input_tokens);
	arl_store_relaxed(&r->output_tokens, req->output_tokens);
	arl_store_relaxed(&r->created_ns, now);
	arl_store_relaxed(&r->last_activity_ns, now);
	arl_store_relaxed(&r->request_id, req->request_id);
}

/* Resolves and checks the buckets of a chain given by the caller. */
ARL_API int arl_impl_check_chain(struct arl *arl, const struct arl_bucket *buckets, uint32_t n,
				 const struct arl_request *req, struct arl_impl_chain *chain)
{
	uint32_t c, d;
	int rc;

	if (!buckets || n == 0 || n > ARL_MAX_CHAIN)
		return ARL_EINVAL;
	chain->n = n;
	for (c = 0; c < n; c++) {
		for (d = 0; d < c; d++)
			if (buckets[d].index == buckets[c].index)
				return ARL_EINVAL; /* a bucket twice would charge twice */
		chain->bucket[c] = arl_impl_bucket(arl, buckets[c].index, buckets[c].gen);
		if (!chain->bucket[c])
			return ARL_ESTALE;
		arl_impl_read_config(chain->bucket[c], &chain->view[c]);
	}
	for (c = 0; c < n; c++) {
		rc = arl_impl_check_fits(&chain->view[c], req);
		if (rc != 0) {
			arl_add_relaxed(&chain->bucket[c]->stats.rejected, 1);
			return rc;
		}
	}
	return 0;
}

ARL_API bool arl_impl_queue_empty(const struct arl_shm_bucket *b)
{
	return arl_load_acquire(&b->queue_head) == arl_load_acquire(&b->queue_tail);
}

/*
 * Claims a slot and records the request in it. From then on the slot names
 * the chain's buckets, which keeps their table slots from being reused while
 * this process works on them. Either arl_impl_recycle_buckets() reads this
 * slot's chain, or the check below reads the bucket as retired (or reused,
 * with a new gen).
 * Returns 0 with the slot, or ARL_ETABLEFULL / ARL_ESTALE.
 */
ARL_API int arl_impl_claim_for(struct arl *arl, const struct arl_bucket *buckets, uint32_t n,
			       const struct arl_impl_chain *chain, const struct arl_request *req,
			       uint64_t now, uint32_t *slot_out, uint64_t *word_out)
{
	struct arl_shm_reservation *r;
	uint32_t slot, c;

	slot = arl_impl_claim_slot(arl, word_out);
	if (slot == UINT32_MAX) {
		arl_add_relaxed(&chain->bucket[0]->stats.errors, 1);
		return ARL_ETABLEFULL;
	}
	ARL_FAULT_POINT("reserve_after_claim");
	r = &arl_impl_reservations(arl)[slot];
	arl_impl_record(r, buckets, n, req, now);

	/* A seq_cst read-modify-write of the slot word (it changes nothing),
	 * then seq_cst loads of the buckets' states. The recycler does a
	 * seq_cst store of RETIRED and a seq_cst load of this word, so one of
	 * the two sides reads the other's write. The write is a release, so a
	 * recycler that reads it also reads the chain recorded above. */
	__atomic_fetch_add(&r->word, 0, __ATOMIC_SEQ_CST);
	for (c = 0; c < n; c++) {
		struct arl_shm_bucket *b = chain->bucket[c];

		if (__atomic_load_n(&b->state, __ATOMIC_SEQ_CST) != ARL_BUCKET_LIVE ||
		    arl_load_relaxed(&b->gen) != buckets[c].gen) {
			arl_impl_free_slot(arl, r, *word_out);
			return ARL_ESTALE;
		}
	}
	ARL_FAULT_POINT("reserve_after_record");
	*slot_out = slot;
	return 0;
}

/*
 * A positive delay of up to a tenth of `wait` (at most 250 ms), different
 * from call to call, so that callers blocked by one 429 do not all retry
 * at the same instant. Drawn from the monotonic clock's low bits mixed with
 * the thread's stack address: no shared state, no lock.
 */
ARL_API uint64_t arl_impl_jitter(uint64_t wait)
{
	uint64_t span = wait / 10 < 250000000ull ? wait / 10 : 250000000ull;
	uint64_t x = arl_impl_monotonic_ns() ^ (uint64_t)(uintptr_t)&span;

	if (span == 0)
		return 0;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return 1 + x % span;
}

/*
 * Returns ARL_EAGAIN, with the time in *retry_at, while a provider's 429 has
 * blocked a bucket of the chain; 0 otherwise. *refused is the blocked bucket.
 */
ARL_API int arl_impl_check_blocked(const struct arl_impl_chain *chain, uint64_t now,
				   uint64_t *retry_at, uint32_t *refused)
{
	uint32_t c;
	int rc = 0;

	for (c = 0; c < chain->n; c++) {
		uint64_t until = arl_load_relaxed(&chain->bucket[c]->blocked_until_ns);

		if (until > now && until > *retry_at) {
			*retry_at = until;
			*refused = c;
			rc = ARL_EAGAIN;
		}
	}
	if (rc != 0)
		*retry_at += arl_impl_jitter(*retry_at - now);
	return rc;
}

/*
 * Charges the chain into a slot claimed and recorded by arl_impl_claim_for(),
 * and commits it. On ARL_EAGAIN the slot stays claimed with nothing charged,
 * for the caller to free or to try again (a queue's head keeps it).
 */
ARL_API int arl_impl_try_slot(struct arl *arl, uint32_t slot, uint64_t word,
			      const struct arl_impl_chain *chain, const struct arl_request *req,
			      struct arl_reservation *out, uint32_t *refused)
{
	struct arl_shm_reservation *r = &arl_impl_reservations(arl)[slot];
	uint64_t now = arl_now(arl), retry_at = 0;
	uint32_t c;
	int rc;

	rc = arl_impl_check_blocked(chain, now, &retry_at, refused);
	if (rc == 0)
		rc = arl_impl_charge(r, chain, now, &retry_at, refused);
	if (rc != 0) {
		arl_add_relaxed(&chain->bucket[*refused]->stats.rejected, 1);
		out->retry_at_ns = retry_at;
		return rc;
	}
	ARL_FAULT_POINT("reserve_before_commit");
	/* Ages count from the grant, not from a wait in the queue. */
	arl_store_relaxed(&r->created_ns, now);
	arl_store_relaxed(&r->last_activity_ns, now);

	/* Paired with the acquire loads of the word by release, touch and the
	 * sweeper: whoever sees COMMITTED sees the record and the marks. */
	arl_store_release(&r->word, arl_impl_res_word(arl_impl_res_gen(word), ARL_RES_COMMITTED,
						      arl_impl_res_owner(word)));
	for (c = 0; c < chain->n; c++) {
		arl_add_relaxed(&chain->bucket[c]->stats.granted, 1);
		arl_add_relaxed(&chain->bucket[c]->stats.granted_tokens,
				arl_impl_sat_add(req->input_tokens, req->output_tokens));
	}
	out->slot = slot;
	out->gen = arl_impl_res_gen(word);
	return 0;
}

/* Claims a slot, records the request and charges the chain; frees the slot
 * on failure. Does not look at the wait queue: arl_reserve_chain() does. */
ARL_API int arl_impl_reserve(struct arl *arl, const struct arl_bucket *buckets, uint32_t n,
			     const struct arl_impl_chain *chain, const struct arl_request *req,
			     struct arl_reservation *out)
{
	uint32_t slot, refused = 0;
	uint64_t word;
	int rc;

	rc = arl_impl_ensure_registered(arl);
	if (rc == 0)
		rc = arl_impl_claim_for(arl, buckets, n, chain, req, arl_now(arl), &slot, &word);
	if (rc != 0)
		return rc;
	rc = arl_impl_try_slot(arl, slot, word, chain, req, out, &refused);
	if (rc != 0)
		arl_impl_free_slot(arl, &arl_impl_reservations(arl)[slot], word);
	return rc;
}

/*
 * Reserves without blocking on a chain of 1 to ARL_MAX_CHAIN buckets (a
 * model bucket and its account bucket, say): one request, the estimated
 * tokens and one in-flight slot from every limit of every bucket, all or
 * nothing. A try never overtakes waiters: while arl_reserve_wait() callers
 * are queued on the first bucket, it returns ARL_EAGAIN with retry_at_ns 0.
 * Returns 0 and the reservation in *out; ARL_EAGAIN with out->retry_at_ns
 * set to the exact arl_now() time at which the whole chain would fit (0 when
 * an in-flight cap refused or waiters are queued); ARL_ENEVERFITS when the
 * request exceeds a limit's burst less its headroom; ARL_ESTALE for a removed
 * bucket; ARL_ETABLEFULL when the reservation table is full; ARL_EOVERFLOW
 * or ARL_EINVAL for bad counts, or a bucket given twice. Zero tokens is
 * valid and counts against request limits and in-flight caps only.
 */
ARL_API int arl_reserve_chain(struct arl *arl, const struct arl_bucket *buckets, uint32_t n,
			      const struct arl_request *req, struct arl_reservation *out)
{
	struct arl_impl_chain chain;
	int rc;

	if (!arl || !out)
		return ARL_EINVAL;
	out->retry_at_ns = 0;
	if (arl->read_only)
		return ARL_EROFS;
	if (arl_load_relaxed(&arl->header->draining))
		return ARL_EDRAINING;
	rc = arl_impl_check_request(req);
	if (rc == 0)
		rc = arl_impl_check_chain(arl, buckets, n, req, &chain);
	if (rc != 0)
		return rc;
	if (!arl_impl_queue_empty(chain.bucket[0])) {
		arl_add_relaxed(&chain.bucket[0]->stats.rejected, 1);
		return ARL_EAGAIN;
	}
	return arl_impl_reserve(arl, buckets, n, &chain, req, out);
}

/*
 * The chain a reserve on one bucket charges: the bucket, then its account
 * and the account's account (arl_bucket_chain()). A bucket without an
 * account costs one load more than a chain of one. A stale bucket gives a
 * chain of one, for the reserve to report ARL_ESTALE.
 */
ARL_API int arl_impl_expand(const struct arl *arl, struct arl_bucket bucket,
			    struct arl_bucket chain[ARL_MAX_CHAIN], uint32_t *n)
{
	const struct arl_shm_bucket *b = arl ? arl_impl_bucket(arl, bucket.index, bucket.gen) : NULL;

	if (!b || arl_load_relaxed(&b->account) == 0) {
		chain[0] = bucket;
		*n = 1;
		return 0;
	}
	return arl_bucket_chain(arl, bucket, chain, n);
}

/* Reserves without blocking on one bucket and the account buckets it
 * charges: arl_reserve_chain() on the chain arl_bucket_chain() gives.
 * Returns ARL_ESTALE also when an account of the bucket was removed. */
ARL_API int arl_reserve(struct arl *arl, struct arl_bucket bucket, const struct arl_request *req,
			struct arl_reservation *out)
{
	struct arl_bucket chain[ARL_MAX_CHAIN];
	uint32_t n;
	int rc = arl_impl_expand(arl, bucket, chain, &n);

	if (rc != 0)
		return rc;
	return arl_reserve_chain(arl, chain, n, req, out);
}

/* ------------------------------------------------------------------------
 * Waiting: a FIFO ticket queue per bucket
 * ------------------------------------------------------------------------ */

ARL_API uint64_t arl_impl_waiter_word(uint32_t ticket, uint32_t owner, uint32_t state)
{
	return (uint64_t)ticket | ((uint64_t)owner << 32) | ((uint64_t)state << 56);
}

ARL_API uint32_t arl_impl_ticket_bit(uint32_t ticket)
{
	return 1u << (ticket % 32);
}

/* Returns true if a queue entry's owner is a live process (this one counts
 * as live: its own locks never conflict with its own descriptor). */
ARL_API bool arl_impl_waiter_alive(const struct arl *arl, uint64_t entry)
{
	uint32_t owner = (uint32_t)(entry >> 32) & 0xffffff;

	if (owner == 0 || owner > arl->header->process_capacity)
		return false;
	if (owner - 1 == arl->process_index)
		return true;
	return arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + owner - 1);
}

/*
 * Serves the next ticket after `served`: moves queue_head past it, skips the
 * tickets of waiters that gave up or died, and wakes the waiter whose ticket
 * is now at the head. A ticket whose entry is not yet written belongs to a
 * waiter between taking it and writing it: it is not skipped here (the
 * sweeper skips it if it stays unwritten for a whole sweep).
 */
ARL_API void arl_impl_queue_advance(const struct arl *arl, struct arl_shm_bucket *b,
				    uint32_t served)
{
	uint32_t next = served + 1;

	arl_store_relaxed(&b->queue[served % ARL_QUEUE_SLOTS], (uint64_t)0);
	/* Release pairs with the acquire load of queue_head by the next waiter:
	 * it sees the queue as this waiter left it. */
	if (!arl_cas(&b->queue_head, &served, next, __ATOMIC_RELEASE))
		return; /* someone (the sweeper) already moved the head */
	while (next != arl_load_acquire(&b->queue_tail)) {
		uint64_t *slot = &b->queue[next % ARL_QUEUE_SLOTS];
		uint64_t entry = arl_load_acquire(slot);
		uint32_t state = (uint32_t)(entry >> 56);
		uint32_t expected = next;

		if ((uint32_t)entry != next)
			break; /* not written yet */
		if (state == ARL_WAITER_WAITING && arl_impl_waiter_alive(arl, entry))
			break;
		arl_store_relaxed(slot, (uint64_t)0);
		if (!arl_cas(&b->queue_head, &expected, next + 1, __ATOMIC_RELEASE))
			return;
		next++;
	}
	/* Wake the sleepers whose ticket shares the bit of the new head: the
	 * head among them tries, the others sleep again. */
	syscall(SYS_futex, &b->queue_head, FUTEX_WAKE_BITSET, INT_MAX, NULL, NULL,
		arl_impl_ticket_bit(next));
}

/* Sleeps on a futex word until it changes, a wake with a matching bit, or an
 * absolute arl_now() deadline (no timeout on a test clock: the test wakes
 * sleepers as it moves the clock). */
ARL_API void arl_impl_sleep(const struct arl *arl, uint32_t *word, uint32_t seen, uint32_t bits,
			    uint64_t until)
{
	struct timespec ts;
	uint64_t now = arl_now(arl);
	bool timed = !(arl->header->flags & ARL_SEG_TEST_CLOCK) && until != UINT64_MAX;

	if (timed) {
		uint64_t at = arl_impl_sat_add(arl_impl_monotonic_ns(), arl_impl_sat_sub(until, now));

		ts.tv_sec = (time_t)(at / 1000000000ull);
		ts.tv_nsec = (long)(at % 1000000000ull);
	}
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
	syscall(SYS_futex, word, FUTEX_WAIT_BITSET, seen, timed ? &ts : NULL, NULL, bits);
}

/* Takes a ticket, unless the queue is full. Returns 0 or ARL_EAGAIN. */
ARL_API int arl_impl_queue_enter(struct arl *arl, struct arl_shm_bucket *b, uint32_t *ticket)
{
	uint32_t tail = arl_load_relaxed(&b->queue_tail);
	uint32_t owner = arl->process_index + 1;

	do {
		if (tail - arl_load_acquire(&b->queue_head) >= ARL_QUEUE_SLOTS)
			return ARL_EAGAIN;
	} while (!arl_cas(&b->queue_tail, &tail, tail + 1, __ATOMIC_RELAXED));
	ARL_FAULT_POINT("wait_after_ticket");
	/* Release pairs with the acquire load in arl_impl_queue_advance(). */
	arl_store_release(&b->queue[tail % ARL_QUEUE_SLOTS],
			  arl_impl_waiter_word(tail, owner, ARL_WAITER_WAITING));
	*ticket = tail;
	return 0;
}

/* Leaves the queue early: marks the ticket abandoned so that whoever serves
 * it skips it, and serves it at once if it is already at the head. */
ARL_API void arl_impl_queue_abandon(struct arl *arl, struct arl_shm_bucket *b, uint32_t ticket)
{
	uint64_t *slot = &b->queue[ticket % ARL_QUEUE_SLOTS];
	uint64_t entry = arl_load_relaxed(slot);
	uint32_t owner = arl->process_index + 1;

	if ((uint32_t)entry == ticket)
		arl_cas(slot, &entry, arl_impl_waiter_word(ticket, owner, ARL_WAITER_ABANDONED),
			__ATOMIC_RELEASE);
	if (arl_load_acquire(&b->queue_head) == ticket)
		arl_impl_queue_advance(arl, b, ticket);
}

/* A waiter's state: the chain, and the slot it keeps while it waits. */
struct arl_impl_waiter {
	struct arl_impl_chain chain;
	const struct arl_request *req;
	uint64_t deadline_ns;
	uint32_t slot;
	uint64_t word;
};

/* Returns why a waiter must stop waiting early: ARL_EDRAINING, ARL_ESTALE
 * when a bucket of its chain was removed, or 0 to go on. */
ARL_API int arl_impl_waiter_check(const struct arl *arl, const struct arl_impl_waiter *w)
{
	uint32_t c;

	if (arl_load_relaxed(&arl->header->draining))
		return ARL_EDRAINING;
	for (c = 0; c < w->chain.n; c++)
		if (arl_load_acquire(&w->chain.bucket[c]->state) != ARL_BUCKET_LIVE)
			return ARL_ESTALE;
	return 0;
}

/* Tries the reservation as the queue's head, in the slot the waiter holds.
 * Returns what arl_impl_try_slot() returns; on ARL_EAGAIN, *refusing is the
 * bucket to wait on and *seen its wake_seq as read before the try. */
ARL_API int arl_impl_head_try(struct arl *arl, struct arl_impl_waiter *w,
			      struct arl_reservation *out, struct arl_shm_bucket **refusing,
			      uint32_t *seen)
{
	uint32_t refused = 0, c;
	uint32_t seqs[ARL_MAX_CHAIN];
	int rc;

	/* Read every bucket's wake_seq before trying, so a release that lands
	 * after the try changes the word this waiter sleeps on. Paired with
	 * the seq_cst bump in arl_impl_wake_bucket(). */
	for (c = 0; c < w->chain.n; c++)
		seqs[c] = __atomic_load_n(&w->chain.bucket[c]->wake_seq, __ATOMIC_ACQUIRE);
	rc = arl_impl_waiter_check(arl, w);
	if (rc == 0)
		rc = arl_impl_try_slot(arl, w->slot, w->word, &w->chain, w->req, out, &refused);
	*refusing = w->chain.bucket[refused];
	*seen = seqs[refused];
	return rc;
}

/*
 * Waits at the head of the queue until the reservation succeeds, fails
 * otherwise, or the deadline passes. Sleeps on the wake_seq of the bucket
 * that refused, until a release there or the time refill will cover it.
 */
ARL_API int arl_impl_wait_as_head(struct arl *arl, struct arl_impl_waiter *w,
				  struct arl_reservation *out)
{
	for (;;) {
		struct arl_shm_bucket *refusing;
		uint64_t until;
		uint32_t seen;
		int rc;

		ARL_FAULT_POINT("wait_as_head");
		rc = arl_impl_head_try(arl, w, out, &refusing, &seen);
		if (rc != ARL_EAGAIN)
			return rc;
		if (arl_now(arl) >= w->deadline_ns)
			return ARL_ETIMEDOUT;

		until = w->deadline_ns;
		if (out->retry_at_ns != 0 && out->retry_at_ns < until)
			until = out->retry_at_ns;
		/* The count tells wakers whether a FUTEX_WAKE is needed. */
		__atomic_fetch_add(&refusing->waiters, 1, __ATOMIC_SEQ_CST);
		arl_impl_sleep(arl, &refusing->wake_seq, seen, FUTEX_BITSET_MATCH_ANY, until);
		__atomic_fetch_sub(&refusing->waiters, 1, __ATOMIC_SEQ_CST);
	}
}

/*
 * Takes a ticket in the chain's first bucket, sleeps until it is served and
 * tries as the head. A ticket the head passed before this waiter wrote its
 * entry (it was taken for a dead waiter's) is given up for a new one.
 */
ARL_API int arl_impl_queue_wait(struct arl *arl, struct arl_impl_waiter *w,
				struct arl_reservation *out)
{
	struct arl_shm_bucket *b = w->chain.bucket[0];
	uint32_t ticket;
	int rc;

	for (;;) {
		/* Enter the queue, waiting for room if it is full. */
		while (arl_impl_queue_enter(arl, b, &ticket) != 0) {
			uint32_t head = arl_load_acquire(&b->queue_head);

			rc = arl_impl_waiter_check(arl, w);
			if (rc != 0)
				return rc;
			if (arl_now(arl) >= w->deadline_ns)
				return ARL_ETIMEDOUT;
			arl_impl_sleep(arl, &b->queue_head, head, FUTEX_BITSET_MATCH_ANY,
				       w->deadline_ns);
		}

		/* Sleep until this ticket is served. */
		for (;;) {
			uint32_t head = arl_load_acquire(&b->queue_head);

			if (head == ticket || (int32_t)(head - ticket) > 0)
				break;
			rc = arl_impl_waiter_check(arl, w);
			if (rc == 0 && arl_now(arl) >= w->deadline_ns)
				rc = ARL_ETIMEDOUT;
			if (rc != 0) {
				arl_impl_queue_abandon(arl, b, ticket);
				return rc;
			}
			arl_impl_sleep(arl, &b->queue_head, head, arl_impl_ticket_bit(ticket),
				       w->deadline_ns);
		}
		if (arl_load_acquire(&b->queue_head) == ticket)
			break;
		/* The head moved past this ticket: take a new one. */
	}
	rc = arl_impl_wait_as_head(arl, w, out);
	arl_impl_queue_advance(arl, b, ticket);
	return rc;
}

/*
 * Reserves on a chain, waiting until the request fits or until deadline_ns
 * (absolute, on the arl_now() clock). Waiters on the chain's first bucket
 * are admitted in FIFO order: each takes a ticket, and only the waiter at
 * the head tries, so a large request is not overtaken by small ones and a
 * refill admits no more waiters than it covers. The head sleeps on a futex
 * in the segment until a release, refund or cancel, or until refill will
 * cover it; the others sleep until their ticket is served. It never polls.
 * A waiter that dies or gives up is skipped by the next one, or by the
 * supervisor's sweep when it dies at the head. Returns what
 * arl_reserve_chain() returns, except that ARL_EAGAIN becomes ARL_ETIMEDOUT
 * once the deadline has passed (a deadline already in the past makes it a
 * single try). A waiter gives up with ARL_ESTALE when a bucket of its chain
 * is removed, and with ARL_EDRAINING when the segment starts draining.
 *
 * A waiter keeps a claimed reservation slot, with nothing charged, for the
 * whole wait. The slot keeps the chain's buckets from being reused under the
 * queue, the reservation is made in it, and listings show it.
 *
 * NOTE: with more than ARL_QUEUE_SLOTS waiters on one bucket, the extra ones
 * wait for room in the queue and enter it in no set order.
 */
ARL_API int arl_reserve_chain_wait(struct arl *arl, const struct arl_bucket *buckets, uint32_t n,
				   const struct arl_request *req, uint64_t deadline_ns,
				   struct arl_reservation *out)
{
	struct arl_impl_waiter w;
	struct arl_shm_bucket *b;
	uint64_t started;
	int rc;

	rc = arl_reserve_chain(arl, buckets, n, req, out);
	if (rc != ARL_EAGAIN)
		return rc;
	if (arl_now(arl) >= deadline_ns)
		return ARL_ETIMEDOUT; /* a deadline in the past: one try only */
	if (arl_impl_check_chain(arl, buckets, n, req, &w.chain) != 0)
		return ARL_ESTALE;
	/* The queue entry names this process: a try refused by the queue
	 * returns before registering, so register now. */
	rc = arl_impl_ensure_registered(arl);
	if (rc != 0)
		return rc;
	started = arl_now(arl);
	rc = arl_impl_claim_for(arl, buckets, n, &w.chain, req, started, &w.slot, &w.word);
	if (rc != 0)
		return rc;
	w.req = req;
	w.deadline_ns = deadline_ns;
	b = w.chain.bucket[0];

	/* The claimed slot and, once written, the queue ticket name this
	 * process's entry, so a new process cannot take the entry of a waiter
	 * that died here (arl_impl_entry_references()). */
	rc = arl_impl_queue_wait(arl, &w, out);
	if (rc == 0)
		arl_add_relaxed(&b->stats.waited_ns, arl_now(arl) - started);
	else
		arl_impl_free_slot(arl, &arl_impl_reservations(arl)[w.slot], w.word);
	return rc;
}

/* Reserves on one bucket and the account buckets it charges, waiting:
 * arl_reserve_chain_wait() on the chain arl_bucket_chain() gives. */
ARL_API int arl_reserve_wait(struct arl *arl, struct arl_bucket bucket,
			     const struct arl_request *req, uint64_t deadline_ns,
			     struct arl_reservation *out)
{
	struct arl_bucket chain[ARL_MAX_CHAIN];
	uint32_t n;
	int rc = arl_impl_expand(arl, bucket, chain, &n);

	if (rc != 0)
		return rc;
	return arl_reserve_chain_wait(arl, chain, n, req, deadline_ns, out);
}

/* ------------------------------------------------------------------------
 * Release, cancel, touch
 * ------------------------------------------------------------------------ */

/* Returns the slot a handle names if it is COMMITTED with that generation. */
ARL_API struct arl_shm_reservation *arl_impl_live_slot(struct arl *arl,
						       const struct arl_reservation *res,
						       uint64_t *word_out)
{
	struct arl_shm_reservation *r;
	uint64_t word;

	if (res->slot >= arl->header->reservation_capacity)
		return NULL;
	r = &arl_impl_reservations(arl)[res->slot];
	word = arl_load_acquire(&r->word);
	if (arl_impl_res_gen(word) != res->gen || arl_impl_res_state(word) != ARL_RES_COMMITTED)
		return NULL;
	*word_out = word;
	return r;
}

/*
 * Takes a committed slot into RELEASING, which makes the caller the only
 * one to finish it. Returns the slot and its resolved chain, or NULL when the
 * handle is stale: released, canceled or reclaimed already.
 */
ARL_API struct arl_shm_reservation *arl_impl_begin_release(struct arl *arl,
							   const struct arl_reservation *res,
							   uint64_t *word_out,
							   struct arl_impl_chain *chain)
{
	struct arl_shm_reservation *r;
	uint64_t word, releasing;

	r = arl_impl_live_slot(arl, res, &word);
	if (!r)
		return NULL;
	releasing = arl_impl_res_word(res->gen, ARL_RES_RELEASING, arl_impl_res_owner(word));
	/* Acquire pairs with the release store of COMMITTED in arl_impl_reserve(). */
	if (!arl_cas(&r->word, &word, releasing, __ATOMIC_ACQUIRE))
		return NULL;
	arl_impl_resolve_chain(arl, r, chain);
	*word_out = releasing;
	return r;
}

/* Applies a release's accounting to one limit: refund or overage. */
ARL_API void arl_impl_settle_limit(struct arl_shm_limit *tat,
				   const struct arl_shm_limit_config *l, uint32_t bucket_flags,
				   uint64_t reserved, uint64_t actual, uint64_t now,
				   struct arl_shm_bucket_stats *stats, bool count)
{
	if (actual < reserved) {
		if (bucket_flags & ARL_BUCKET_NO_REFUND)
			return;
		arl_impl_limit_give(tat, arl_impl_refund_ns(l, reserved - actual), now);
		if (count)
			arl_add_relaxed(&stats->refunded_tokens, reserved - actual);
	} else if (actual > reserved) {
		if (bucket_flags & ARL_BUCKET_IGNORE_OVERAGE)
			return;
		arl_impl_limit_charge(tat, arl_impl_cost_ns(l, actual - reserved), now);
		if (count)
			arl_add_relaxed(&stats->overage_tokens, actual - reserved);
	}
}

/* The actual units a limit charges for a usage; the estimate when the
 * usage does not say. */
ARL_API uint64_t arl_impl_actual_units(const struct arl_shm_limit_config *l,
				       const struct arl_usage *u, uint64_t reserved)
{
	uint64_t partial;

	if (l->unit == ARL_UNIT_REQUESTS)
		return reserved;
	if ((u->flags & ARL_USAGE_SPLIT) &&
	    (l->unit == ARL_UNIT_INPUT_TOKENS || l->unit == ARL_UNIT_OUTPUT_TOKENS))
		return l->unit == ARL_UNIT_INPUT_TOKENS ? u->input_tokens : u->output_tokens;
	if (u->flags & ARL_USAGE_TOTAL) {
		if (l->unit == ARL_UNIT_TOKENS)
			return u->total_tokens;
		return reserved; /* no split given: keep the estimate */
	}
	if ((u->flags & ARL_USAGE_SPLIT) && l->unit == ARL_UNIT_TOKENS)
		return arl_impl_sat_add(u->input_tokens, u->output_tokens);
	/* Unknown usage: the estimate, or the partial usage if larger. */
	partial = (u->flags & ARL_USAGE_PARTIAL) && l->unit == ARL_UNIT_TOKENS ? u->partial_tokens
									       : 0;
	return partial > reserved ? partial : reserved;
}

ARL_API int arl_impl_check_usage(const struct arl_usage *u)
{
	if (u->flags & ~(uint32_t)(ARL_USAGE_TOTAL | ARL_USAGE_SPLIT | ARL_USAGE_PARTIAL))
		return ARL_EINVAL;
	if (u->total_tokens > ARL_MAX_TOKENS || u->input_tokens > ARL_MAX_TOKENS ||
	    u->output_tokens > ARL_MAX_TOKENS || u->partial_tokens > ARL_MAX_TOKENS)
		return ARL_EOVERFLOW;
	return 0;
}

/* Settles one bucket of a released chain: refund or overage per limit, and
 * the counters. */
ARL_API void arl_impl_settle_bucket(struct arl_shm_bucket *b, const struct arl_impl_view *v,
				    const struct arl_shm_reservation *r,
				    const struct arl_usage *usage, uint64_t now)
{
	uint64_t in = arl_load_relaxed(&r->input_tokens);
	uint64_t out = arl_load_relaxed(&r->output_tokens);
	bool known = (usage->flags & (ARL_USAGE_TOTAL | ARL_USAGE_SPLIT)) != 0;
	bool counted = false;
	uint32_t i;

	for (i = 0; i < v->nlimits; i++) {
		const struct arl_shm_limit_config *l = &v->limit[i];
		uint64_t reserved = arl_impl_units(l->unit, in, out);
		uint64_t actual = arl_impl_actual_units(l, usage, reserved);

		/* Count tokens once per bucket, on its first tokens limit. */
		arl_impl_settle_limit(&b->limits[i], l, v->flags, reserved, actual, now, &b->stats,
				      l->unit == ARL_UNIT_TOKENS && !counted);
		ARL_FAULT_POINT("release_mid_settle");
		counted = counted || l->unit == ARL_UNIT_TOKENS;
	}
	if (known) {
		arl_add_relaxed(&b->stats.released, 1);
	} else {
		arl_add_relaxed(&b->stats.fallback_releases, 1);
		arl_add_relaxed(&b->stats.fallback_tokens, arl_impl_sat_add(in, out));
	}
}

/*
 * Releases a reservation with its real usage. usage NULL, or with neither
 * ARL_USAGE_TOTAL nor ARL_USAGE_SPLIT, is unknown usage: the estimate is kept
 * (or ARL_USAGE_PARTIAL's partial_tokens when larger). Known usage below the
 * estimate is refunded unless the bucket has ARL_BUCKET_NO_REFUND; usage above
 * it is charged as overage unless the bucket has ARL_BUCKET_IGNORE_OVERAGE.
 * Every bucket of the chain is settled alike. A refund never lifts a limit
 * above its burst. Frees the in-flight slots and wakes waiters. Returns 0,
 * ARL_ESTALE when the reservation was already released, canceled or
 * reclaimed (nothing changes), or ARL_EINVAL / ARL_EOVERFLOW for bad usage.
 */
ARL_API int arl_release(struct arl *arl, const struct arl_reservation *res,
			const struct arl_usage *usage)
{
	static const struct arl_usage unknown = {0, 0, 0, 0, 0};
	struct arl_impl_chain chain;
	struct arl_shm_reservation *r;
	uint64_t word, now;
	uint32_t c;
	int rc;

	if (!arl || !res)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	if (!usage)
		usage = &unknown;
	rc = arl_impl_check_usage(usage);
	if (rc != 0)
		return rc;
	r = arl_impl_begin_release(arl, res, &word, &chain);
	if (!r)
		return ARL_ESTALE;
	ARL_FAULT_POINT("release_after_begin");

	now = arl_now(arl);
	for (c = 0; c < chain.n; c++)
		if (chain.bucket[c])
			arl_impl_settle_bucket(chain.bucket[c], &chain.view[c], r, usage, now);
	arl_impl_give_back(r, &chain, ARL_MARKS_INFLIGHT, now);
	/* Wake before the free: once the slot is free, nothing keeps the
	 * chain's buckets from being recycled. */
	arl_impl_wake_chain(&chain);
	ARL_FAULT_POINT("release_before_free");
	arl_impl_free_slot(arl, r, word);
	return 0;
}

/*
 * Cancels a reservation whose request was never sent: the request, the
 * tokens and the in-flight slots all come back, on every bucket of the
 * chain. Returns 0, or ARL_ESTALE when it was already released, canceled
 * or reclaimed.
 */
ARL_API int arl_cancel(struct arl *arl, const struct arl_reservation *res)
{
	struct arl_impl_chain chain;
	struct arl_shm_reservation *r;
	uint64_t word;
	uint32_t c;

	if (!arl || !res)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	r = arl_impl_begin_release(arl, res, &word, &chain);
	if (!r)
		return ARL_ESTALE;
	ARL_FAULT_POINT("cancel_after_begin");
	arl_impl_give_back(r, &chain, ~0u, arl_now(arl));
	for (c = 0; c < chain.n; c++)
		if (chain.bucket[c])
			arl_add_relaxed(&chain.bucket[c]->stats.canceled, 1);
	arl_impl_wake_chain(&chain);
	arl_impl_free_slot(arl, r, word);
	return 0;
}

/*
 * Records activity on a live reservation: adds chunks to its chunk count and
 * sets its last activity to now, so the sweeper does not take a slow stream
 * for an abandoned one. Returns 0 or ARL_ESTALE.
 *
 * NOTE: the generation is checked before the writes, so a touch racing with
 * a release can set the activity time of the slot's next reservation; that
 * only delays an idle reclaim of it by one touch.
 */
ARL_API int arl_touch(struct arl *arl, const struct arl_reservation *res, uint32_t chunks)
{
	struct arl_shm_reservation *r;
	uint64_t word;

	if (!arl || !res)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	r = arl_impl_live_slot(arl, res, &word);
	if (!r)
		return ARL_ESTALE;
	arl_add_relaxed(&r->chunks, chunks);
	arl_store_relaxed(&r->last_activity_ns, arl_now(arl));
	return 0;
}

/* ------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------ */

struct arl_limit_stats {
	uint32_t unit;
	uint64_t amount;
	uint64_t window_ns;
	uint64_t burst;
	uint32_t headroom_permille;
	uint64_t available; /* units that would be granted now */
};

/* A snapshot of a bucket. Each counter is read atomically, but the set is
 * not one consistent instant. */
struct arl_bucket_stats {
	char name[ARL_NAME_MAX + 1];
	uint32_t nlimits;
	uint32_t max_inflight;
	uint32_t inflight;
	uint32_t flags;
	struct arl_limit_stats limits[ARL_MAX_LIMITS];
	uint64_t granted, granted_tokens, rejected, waited_ns;
	uint64_t released, refunded_tokens, overage_tokens;
	uint64_t fallback_releases, fallback_tokens, canceled;
	uint64_t reclaimed_dead, reclaimed_idle, errors, inflight_repaired;
	uint32_t queued; /* waiters in the FIFO queue */
	uint64_t reclaimed_admin; /* released by an operator */
	uint64_t provider_429s;	  /* 429 responses reported by clients */
	uint64_t blocked_until_ns; /* arl clock: a 429 blocks the bucket until then; 0: not */
	char profile[ARL_PROFILE_MAX + 1]; /* provider profile, "" for none */
	char account[ARL_NAME_MAX + 1];	   /* account bucket's name, "" for none or removed */
};

/* Units of a limit available at now: (tolerance - (tat - now)) / cost(1). */
ARL_API uint64_t arl_impl_available(const struct arl_shm_limit *shared,
				      const struct arl_shm_limit_config *l, uint64_t now)
{
	uint64_t tat = arl_load_relaxed(&shared->tat_ns);
	uint64_t used_ns = tat > now ? tat - now : 0;
	uint64_t free_ns = arl_impl_sat_sub(l->tolerance_ns, used_ns);
	__extension__ typedef unsigned __int128 u128;
	u128 units;

	if (l->window_ns == 0)
		return 0;
	units = (u128)free_ns * l->amount / l->window_ns;
	return units > l->usable_burst ? l->usable_burst : (uint64_t)units;
}

/* Fills a snapshot of a bucket's configuration, availability and counters.
 * Works on a read-only handle. Returns 0 or ARL_ESTALE. */
ARL_API int arl_bucket_stats(const struct arl *arl, struct arl_bucket bucket,
			     struct arl_bucket_stats *out)
{
	const struct arl_shm_bucket *b;
	const struct arl_shm_bucket_stats *s;
	struct arl_impl_view v;
	uint64_t now;
	uint32_t i;

	if (!arl || !out)
		return ARL_EINVAL;
	b = arl_impl_bucket(arl, bucket.index, bucket.gen);
	if (!b)
		return ARL_ESTALE;
	memset(out, 0, sizeof(*out));
	arl_impl_read_config(b, &v);
	now = arl_now(arl);
	arl_impl_read_name(b, out->name);
	out->nlimits = v.nlimits;
	out->max_inflight = v.max_inflight;
	out->inflight = arl_impl_inflight_count(arl_load_relaxed(&b->inflight));
	out->flags = v.flags;
	for (i = 0; i < v.nlimits; i++) {
		out->limits[i].unit = v.limit[i].unit;
		out->limits[i].amount = v.limit[i].amount;
		out->limits[i].window_ns = v.limit[i].window_ns;
		out->limits[i].burst = v.limit[i].burst;
		out->limits[i].headroom_permille = v.limit[i].headroom_permille;
		out->limits[i].available = arl_impl_available(&b->limits[i], &v.limit[i], now);
	}
	s = &b->stats;
	out->granted = arl_load_relaxed(&s->granted);
	out->granted_tokens = arl_load_relaxed(&s->granted_tokens);
	out->rejected = arl_load_relaxed(&s->rejected);
	out->waited_ns = arl_load_relaxed(&s->waited_ns);
	out->released = arl_load_relaxed(&s->released);
	out->refunded_tokens = arl_load_relaxed(&s->refunded_tokens);
	out->overage_tokens = arl_load_relaxed(&s->overage_tokens);
	out->fallback_releases = arl_load_relaxed(&s->fallback_releases);
	out->fallback_tokens = arl_load_relaxed(&s->fallback_tokens);
	out->canceled = arl_load_relaxed(&s->canceled);
	out->reclaimed_dead = arl_load_relaxed(&s->reclaimed_dead);
	out->reclaimed_idle = arl_load_relaxed(&s->reclaimed_idle);
	out->errors = arl_load_relaxed(&s->errors);
	out->inflight_repaired = arl_load_relaxed(&s->inflight_repaired);
	out->queued = arl_load_relaxed(&b->queue_tail) - arl_load_relaxed(&b->queue_head);
	out->reclaimed_admin = arl_load_relaxed(&s->reclaimed_admin);
	arl_impl_read_words(b->profile_words, sizeof(b->profile_words) / 8, out->profile);
	if (arl_load_relaxed(&b->account) != 0) {
		uint64_t link = arl_load_relaxed(&b->account);
		const struct arl_shm_bucket *a =
			arl_impl_bucket(arl, (uint32_t)link - 1, (uint32_t)(link >> 32));

		if (a)
			arl_impl_read_name(a, out->account);
	}
	out->provider_429s = arl_load_relaxed(&s->provider_429s);
	out->blocked_until_ns = arl_load_relaxed(&b->blocked_until_ns);
	if (out->blocked_until_ns <= now)
		out->blocked_until_ns = 0;
	/* A bucket removed and reused while it was read gave a mixed copy. */
	if (arl_impl_bucket(arl, bucket.index, bucket.gen) != b)
		return ARL_ESTALE;
	return 0;
}

/* ------------------------------------------------------------------------
 * Adaptive limits: what the provider's responses say
 * ------------------------------------------------------------------------ */

/* Which values of struct arl_observed_limit are known. */
#define ARL_OBSERVED_LIMIT 0x1u	    /* limit: units per window */
#define ARL_OBSERVED_REMAINING 0x2u /* remaining: units left now */
#define ARL_OBSERVED_RESET 0x4u	    /* reset_ns: time until the limit is full */

/* One limit as a provider's response reports it. */
struct arl_observed_limit {
	uint32_t unit;	    /* enum arl_unit */
	uint32_t known;	    /* ARL_OBSERVED_* */
	uint64_t window_ns; /* the provider's window for this limit */
	uint64_t limit;
	uint64_t remaining;
	uint64_t reset_ns;
};

/* Longest block a 429 can impose: its retry time is capped here. */
#define ARL_MAX_BLOCK_NS (7ull * 86400ull * 1000000000ull)
/* Block after a 429 that gives no retry time and no exhausted limit. */
#define ARL_DEFAULT_BACKOFF_NS 1000000000ull

/* What one response said; see arl_bucket_observe(). */
struct arl_observation {
	uint32_t status;	 /* HTTP status */
	bool retry_after_known;	 /* retry_after_ns is set */
	bool never_fits;	 /* the provider said the request exceeds its limit */
	uint64_t retry_after_ns; /* from Retry-After or the body, relative */
	uint64_t received_ns;	 /* arl_now() when the headers arrived; 0: now */
	uint32_t nlimits;
	struct arl_observed_limit limits[ARL_MAX_LIMITS];
};

/* Raises a TAT to at least `at` (never lowers it). */
ARL_API void arl_impl_tat_raise(struct arl_shm_limit *l, uint64_t at)
{
	uint64_t tat = arl_load_relaxed(&l->tat_ns);

	while (tat < at && !arl_cas(&l->tat_ns, &tat, at, __ATOMIC_RELAXED))
		;
}

/*
 * Lowers a limit's availability to the provider's remaining count. The
 * provider's count already includes this host's requests in flight, so it
 * is applied as it is: available = remaining, never less. A limit that
 * already shows less keeps its own count (max of the two TATs).
 */
ARL_API void arl_impl_apply_remaining(struct arl_shm_limit *l,
				      const struct arl_shm_limit_config *c, uint64_t remaining,
				      uint64_t at)
{
	uint64_t keep = remaining < c->usable_burst ? remaining : c->usable_burst;

	arl_impl_tat_raise(l, arl_impl_sat_sub(arl_impl_sat_add(at, c->tolerance_ns),
					       arl_impl_cost_ns(c, keep)));
}

/* Blocks a bucket until `until` (never shortens a block), and wakes nobody:
 * waiters already sleep until their retry time, which is now later. */
ARL_API void arl_impl_block_until(struct arl_shm_bucket *b, uint64_t until)
{
	uint64_t cur = arl_load_relaxed(&b->blocked_until_ns);

	while (cur < until && !arl_cas(&b->blocked_until_ns, &cur, until, __ATOMIC_RELAXED))
		;
}

/* How long a 429 blocks: its retry time, else the reset of an exhausted
 * limit, else a default backoff; at most ARL_MAX_BLOCK_NS. */
ARL_API uint64_t arl_impl_block_time(const struct arl_observation *obs)
{
	uint64_t wait = 0;
	uint32_t i;

	if (obs->retry_after_known) {
		wait = obs->retry_after_ns;
	} else {
		for (i = 0; i < obs->nlimits && i < ARL_MAX_LIMITS; i++) {
			const struct arl_observed_limit *o = &obs->limits[i];

			if ((o->known & (ARL_OBSERVED_REMAINING | ARL_OBSERVED_RESET)) ==
				    (ARL_OBSERVED_REMAINING | ARL_OBSERVED_RESET) &&
			    o->remaining == 0 && o->reset_ns > wait)
				wait = o->reset_ns;
		}
		if (wait == 0)
			wait = ARL_DEFAULT_BACKOFF_NS;
	}
	return wait > ARL_MAX_BLOCK_NS ? ARL_MAX_BLOCK_NS : wait;
}

/*
 * Learns limits for a discovering bucket: each limit whose unit and window
 * match an observed limit takes the provider's amount (and burst). Only the
 * first response changes them; later ones only lower availability.
 */
ARL_API int arl_impl_learn(struct arl *arl, struct arl_bucket bucket, struct arl_shm_bucket *b,
			   const struct arl_impl_view *v, const struct arl_observation *obs)
{
	struct arl_bucket_config config;
	bool changed = false;
	uint32_t i, j;
	int rc;

	memset(&config, 0, sizeof(config));
	config.name = b->name;
	config.nlimits = v->nlimits;
	config.max_inflight = v->max_inflight;
	config.flags = v->flags;
	for (i = 0; i < v->nlimits; i++) {
		struct arl_limit_config *l = &config.limits[i];

		l->unit = v->limit[i].unit;
		l->amount = v->limit[i].amount;
		l->window_ns = v->limit[i].window_ns;
		l->burst = v->limit[i].burst;
		l->headroom_permille = v->limit[i].headroom_permille;
		for (j = 0; j < obs->nlimits && j < ARL_MAX_LIMITS; j++) {
			const struct arl_observed_limit *o = &obs->limits[j];

			if (!(o->known & ARL_OBSERVED_LIMIT) || o->unit != l->unit ||
			    o->window_ns != l->window_ns || o->limit == 0 || o->limit == l->amount ||
			    o->limit > ARL_MAX_TOKENS)
				continue;
			l->amount = l->burst = o->limit;
			changed = true;
		}
	}
	rc = changed ? arl_bucket_set_limits(arl, bucket, &config) : 0;
	if (rc == 0)
		arl_store_release(&b->learned, 1u);
	return rc;
}

/*
 * Hands arl what a provider's response said about a bucket's limits, as
 * read from its status, rate-limit headers and (for a 429) body; arl/headers.h
 * fills the observation from a response head. Every process sharing the
 * bucket sees the effect at once:
 *   - each bucket limit whose unit and window match an observed remaining
 *     count is lowered to it (the provider's count already includes this
 *     host's requests in flight, so they are not subtracted again);
 *   - a bucket with ARL_BUCKET_DISCOVER takes the provider's limits from the
 *     first response that gives them, and ends its one-request phase;
 *   - a 429 blocks the bucket until the retry time (or the reset of the
 *     exhausted limit, else one second): reserves fail with ARL_EAGAIN and
 *     a retry time a little after it, different per caller, so the waiters
 *     do not all come back at once.
 * Returns 0; ARL_ENEVERFITS when the provider said the request is larger
 * than its limit, which no retry fixes; ARL_ESTALE, ARL_EINVAL or ARL_EROFS.
 */
ARL_API int arl_bucket_observe(struct arl *arl, struct arl_bucket bucket,
			       const struct arl_observation *obs)
{
	struct arl_shm_bucket *b;
	struct arl_impl_view v;
	uint64_t at;
	uint32_t i, j;
	int rc = 0;

	if (!arl || !obs || obs->nlimits > ARL_MAX_LIMITS)
		return ARL_EINVAL;
	if (arl->read_only)
		return ARL_EROFS;
	b = arl_impl_bucket(arl, bucket.index, bucket.gen);
	if (!b)
		return ARL_ESTALE;
	at = obs->received_ns ? obs->received_ns : arl_now(arl);
	arl_impl_read_config(b, &v);
	if ((v.flags & ARL_BUCKET_DISCOVER) && !arl_load_acquire(&b->learned)) {
		rc = arl_impl_learn(arl, bucket, b, &v, obs);
		if (rc != 0)
			return rc;
		arl_impl_read_config(b, &v);
		arl_impl_wake_bucket(b);
	}

	for (i = 0; i < v.nlimits; i++) {
		for (j = 0; j < obs->nlimits; j++) {
			const struct arl_observed_limit *o = &obs->limits[j];

			if ((o->known & ARL_OBSERVED_REMAINING) && o->unit == v.limit[i].unit &&
			    o->window_ns == v.limit[i].window_ns)
				arl_impl_apply_remaining(&b->limits[i], &v.limit[i], o->remaining,
							 at);
		}
	}
	if (obs->status == 429 && !obs->never_fits) {
		arl_add_relaxed(&b->stats.provider_429s, 1);
		arl_impl_block_until(b, arl_impl_sat_add(at, arl_impl_block_time(obs)));
	}
	return obs->never_fits ? ARL_ENEVERFITS : 0;
}

/* ------------------------------------------------------------------------
 * Supervisor
 * ------------------------------------------------------------------------ */

/* Returns the number of sweeps the supervisor has completed. */
ARL_API uint64_t arl_sweep_count(const struct arl *arl)
{
	return __atomic_load_n(&arl->header->sweep_count, __ATOMIC_ACQUIRE);
}

/*
 * Waits until the supervisor completes a sweep after the count `after`
 * (from arl_sweep_count()), for at most timeout_ns of real time. Sleeps on
 * the futex the supervisor wakes after each sweep. Returns 0 or
 * ARL_ETIMEDOUT.
 */
ARL_API int arl_wait_sweep(const struct arl *arl, uint64_t after, uint64_t timeout_ns)
{
	uint64_t deadline = arl_impl_sat_add(arl_impl_monotonic_ns(), timeout_ns);
	uint32_t *seq_word;

	if (!arl)
		return ARL_EINVAL;
	seq_word = &arl->header->sweep_seq;
	for (;;) {
		/* Paired with the release bump in arl_sweep_publish() (src/sweep.c). */
		uint32_t seq = __atomic_load_n(seq_word, __ATOMIC_ACQUIRE);
		uint64_t now = arl_impl_monotonic_ns();
		struct timespec ts;

		if (arl_sweep_count(arl) > after)
			return 0;
		if (now >= deadline)
			return ARL_ETIMEDOUT;
		ts.tv_sec = (time_t)(deadline / 1000000000ull);
		ts.tv_nsec = (long)(deadline % 1000000000ull);
		arl_impl_futex(seq_word, FUTEX_WAIT_BITSET, seq, &ts);
	}
}

/* ------------------------------------------------------------------------
 * Test clock
 * ------------------------------------------------------------------------ */

/*
 * Moves the test clock of a segment created with ARL_ATTACH_TEST_CLOCK to
 * now_ns (it never moves back) and wakes every waiter so that each retries
 * at the new time. Returns 0, or ARL_EINVAL on a segment without a test
 * clock or for a time before the current one.
 */
ARL_API int arl_test_clock_set(struct arl *arl, uint64_t now_ns)
{
	struct arl_shm_bucket *buckets;
	uint32_t i;

	if (!arl || !(arl->header->flags & ARL_SEG_TEST_CLOCK) || arl->read_only)
		return ARL_EINVAL;
	if (now_ns < arl_load_relaxed(&arl->header->test_clock_ns))
		return ARL_EINVAL;
	/* Paired with the acquire load in arl_now(). */
	arl_store_release(&arl->header->test_clock_ns, now_ns);
	buckets = arl_impl_buckets(arl);
	for (i = 0; i < arl->header->bucket_capacity; i++) {
		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_LIVE)
			continue;
		arl_impl_wake_bucket(&buckets[i]);
		/* Queued waiters check their deadlines against the new time. */
		arl_impl_futex(&buckets[i].queue_head, FUTEX_WAKE, INT_MAX, NULL);
	}
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* ARL_H */
