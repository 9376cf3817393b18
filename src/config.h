/* SPDX-License-Identifier: MIT */
/*
 * config.h - arld's configuration: built-in defaults, or an INI file.
 *
 *   [arld]
 *   segment = /arl              ; shared-memory object name
 *   buckets = 256               ; table capacities, fixed at creation
 *   reservations = 4096
 *   processes = 1024
 *   mode = 0600                 ; 0600; 0640 or 0660 with a group
 *   group = arl                 ; group given access (clients set ARL_SHM_GROUP)
 *   sweep_interval = 1s         ; durations: ms, s, m, h; a bare number is seconds
 *   reservation_ttl = 300s      ; idle time after which a reservation is reclaimed
 *
 *   [bucket:openai/gpt-4o]      ; one section per bucket, named after the colon
 *   requests_per_minute = 500   ; <unit>_per_<window>: unit requests, tokens,
 *   tokens_per_minute = 30000   ;   input_tokens or output_tokens; window second,
 *   tokens_per_minute_burst = 40000 ; minute, hour or day; up to 4 limits
 *   tokens_per_minute_headroom = 5% ; share of a limit never granted
 *   max_inflight = 64           ; 0: no cap
 *   refund = yes                ; no: unused tokens never come back
 *   overage = charge            ; ignore: usage above the estimate is not charged
 *   provider = openai           ; profile clients use to read the provider's headers
 *   account = org               ; a bucket every reservation here also charges
 *   discover = no               ; yes: learn the limits from the first response
 */
#ifndef ARL_CONFIG_H
#define ARL_CONFIG_H

#include <arl.h>

struct arld_bucket_spec {
	char name[ARL_NAME_MAX + 1];
	char profile[ARL_PROFILE_MAX + 1]; /* "" for none */
	char account[ARL_NAME_MAX + 1];	   /* "" for none */
	struct arl_bucket_config config; /* config.name, .profile and .account point above */
};

struct arld_config {
	char segment[ARL_SHM_NAME_MAX + 1];
	uint32_t bucket_capacity;
	uint32_t reservation_capacity;
	uint32_t process_capacity;
	mode_t mode;
	bool has_group;
	gid_t group;
	uint64_t sweep_interval_ns;
	uint64_t reservation_ttl_ns;
	uint32_t nbuckets;
	struct arld_bucket_spec *buckets; /* nbuckets entries, heap */
};

/* Fills the built-in defaults: segment /arl, one bucket "default" with
 * 500 requests and 30000 tokens per minute and at most 64 in flight. */
void arld_config_defaults(struct arld_config *config);

/*
 * Reads an INI file over the defaults (a file that declares buckets replaces
 * the default bucket). Returns 0, or -1 with a message naming the file, the
 * line, the key and the fix in error.
 */
int arld_config_load(struct arld_config *config, const char *path, char *error,
		     size_t error_size);

void arld_config_free(struct arld_config *config);

/*
 * Applies one KEY = VALUE of a [bucket:NAME] section to config, as a file
 * would; config->name names the bucket in messages. Returns 0, or -1 with a
 * message naming the key, the value and the valid forms in error.
 */
int arld_config_bucket_key(struct arl_bucket_config *config, const char *key, const char *value,
			   char *error, size_t error_size);

/*
 * Checks a bucket's configuration after its last key, as the file loader
 * does: a limit or an in-flight cap, an amount for every limit with a burst
 * or headroom, and arl_bucket_config_check(). Returns 0, or -1 with a
 * message in error.
 */
int arld_config_bucket_check(const struct arl_bucket_config *config, char *error,
			     size_t error_size);

/* Parses a duration such as "1500ms", "2s", "5m", "1h" or "300" (seconds)
 * into nanoseconds. Returns 0 or -1. */
int arld_parse_duration(const char *text, uint64_t *ns);

#endif /* ARL_CONFIG_H */
