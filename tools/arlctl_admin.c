/* SPDX-License-Identifier: MIT */
/*
 * arlctl's administrative commands: create-bucket, set-limits,
 * remove-bucket, release and drain. They attach with write access and work
 * whether or not arld runs. Bucket keys are parsed by src/config.c, so a
 * key means the same here as in a [bucket:NAME] section of arld's file.
 */
#include <signal.h>

#include "arlctl_admin.h"
#include "arlctl_common.h"
#include "config.h"
#include "sweep.h"

#define DRAIN_DEFAULT_TIMEOUT_NS (30ull * 1000000000ull)
#define DRAIN_POLL_NS 50000000ull
#define ARLCTL_EXIT_DRAIN_LEFT_LIVE 3

static void admin_usage(FILE *out)
{
	fprintf(out,
		"Usage: arlctl [--segment NAME] COMMAND ARG...\n"
		"Administrative commands; they need write access to the segment and work\n"
		"with or without arld running.\n"
		"\n"
		"  create-bucket NAME KEY=VALUE...\n"
		"      create a bucket; the keys are those of a [bucket:NAME] section of\n"
		"      arld's configuration: <unit>_per_<window>[_burst|_headroom] (units\n"
		"      requests, tokens, input_tokens, output_tokens; windows second, minute,\n"
		"      hour, day), max_inflight, refund, overage. Example:\n"
		"        arlctl create-bucket openai/gpt-4o requests_per_minute=500 \\\n"
		"            tokens_per_minute=30000 max_inflight=64\n"
		"  set-limits NAME KEY=VALUE...\n"
		"      change a live bucket: keys not given keep their live values, and each\n"
		"      limit keeps the tokens it owes; units, windows and the number of limits\n"
		"      cannot change (remove the bucket and create it again)\n"
		"  remove-bucket NAME\n"
		"      remove a bucket: reserves and waiters on it fail at once; reservations\n"
		"      already made stay valid until released\n"
		"  release SLOT[:GEN]\n"
		"      release a stuck reservation (SLOT:GEN is the id arlctl reservations\n"
		"      shows; with GEN, nothing happens if the slot was reused): its estimate\n"
		"      stays charged, as for a release with unknown usage; the owner's own\n"
		"      release then fails\n"
		"  drain [--timeout DURATION]\n"
		"      make every new reservation fail, wait up to DURATION (default 30s;\n"
		"      such as 500ms, 10s, 5m) for the live ones to end, then remove the\n"
		"      segment so that a new arld, of any layout version, can create it\n"
		"\n"
		"Exit status: 0 on success; 1 when the segment, bucket or reservation is\n"
		"not found or the change failed; 2 on invalid arguments or keys; drain: 3\n"
		"when reservations were still live at the deadline (the segment is removed\n"
		"anyway), 128+N when stopped by signal N (draining is undone, nothing is\n"
		"removed).\n");
}

/* Splits "KEY=VALUE" at the first '='. Returns 0 or -1. */
static int split_pair(char *arg, char **key, char **value)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg)
		return -1;
	*eq = '\0';
	*key = arg;
	*value = eq + 1;
	return 0;
}

/*
 * Applies the KEY=VALUE arguments to config through arld's configuration
 * parser, then checks the result. Prints the parser's message and returns
 * ARLCTL_EXIT_USAGE on the first invalid argument.
 */
static int apply_keys(const char *command, struct arl_bucket_config *config, int argc,
		      char **argv)
{
	char error[768];
	int i;

	for (i = 0; i < argc; i++) {
		char *key, *value, copy[512];

		snprintf(copy, sizeof(copy), "%s", argv[i]);
		if (split_pair(copy, &key, &value) != 0) {
			fprintf(stderr, "arlctl %s: %s: expected KEY=VALUE, such as "
					"tokens_per_minute=30000\n",
				command, argv[i]);
			return ARLCTL_EXIT_USAGE;
		}
		error[0] = '\0';
		if (arld_config_bucket_key(config, key, value, error, sizeof(error)) != 0) {
			fprintf(stderr, "arlctl %s: %s\n", command, error);
			return ARLCTL_EXIT_USAGE;
		}
	}
	error[0] = '\0';
	if (arld_config_bucket_check(config, error, sizeof(error)) != 0) {
		fprintf(stderr, "arlctl %s: %s\n", command, error);
		return ARLCTL_EXIT_USAGE;
	}
	return ARLCTL_EXIT_OK;
}

/* Checks a bucket name argument. Returns 0 or ARLCTL_EXIT_USAGE. */
static int check_bucket_name(const char *command, const char *name)
{
	if (arl_impl_check_name(name) == 0)
		return 0;
	fprintf(stderr, "arlctl %s: bucket name \"%s\": expected 1 to %d bytes\n", command, name,
		ARL_NAME_MAX);
	return ARLCTL_EXIT_USAGE;
}

/* Finds a bucket by name, printing an error that names the fix. */
static int find_bucket(struct arl *arl, const char *command, const char *name,
		       struct arl_bucket *bucket)
{
	int rc = arl_bucket_find(arl, name, bucket);

	if (rc == ARL_ENOENT)
		fprintf(stderr, "arlctl %s: no bucket %s in %s; arlctl buckets lists them\n",
			command, name, arl_segment_name(arl));
	else if (rc != 0)
		fprintf(stderr, "arlctl %s: bucket %s: %s\n", command, name, arl_strerror(rc));
	return rc;
}

/* Prints a bucket's limits on one line, as "500 requests per 60 s, ...". */
static void print_limits(const struct arl_bucket_config *c)
{
	uint32_t i;

	for (i = 0; i < c->nlimits; i++)
		printf("%s%llu %s per %llu s", i ? ", " : "",
		       (unsigned long long)c->limits[i].amount, arl_unit_name(c->limits[i].unit),
		       (unsigned long long)(c->limits[i].window_ns / 1000000000ull));
	if (c->max_inflight)
		printf("%s%u in flight", c->nlimits ? ", " : "", c->max_inflight);
	printf("\n");
}

static int cmd_create_bucket(const char *segment, int argc, char **argv)
{
	struct arl_bucket_config config;
	struct arl_bucket bucket;
	struct arl *arl;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "arlctl create-bucket: expected a name and at least one "
				"KEY=VALUE, such as arlctl create-bucket work "
				"requests_per_minute=500\n");
		return ARLCTL_EXIT_USAGE;
	}
	rc = check_bucket_name(argv[0], argv[1]);
	if (rc != 0)
		return rc;
	memset(&config, 0, sizeof(config));
	config.name = argv[1];
	rc = apply_keys(argv[0], &config, argc - 2, argv + 2);
	if (rc != 0)
		return rc;

	if (arlctl_attach(segment, 0, argv[0], &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	rc = arl_bucket_create(arl, &config, &bucket);
	if (rc == 0) {
		printf("created bucket %s in %s: ", config.name, arl_segment_name(arl));
		print_limits(&config);
	} else if (rc == ARL_EEXIST) {
		fprintf(stderr, "arlctl create-bucket: bucket %s exists in %s; change it with "
				"arlctl set-limits %s KEY=VALUE...\n",
			config.name, arl_segment_name(arl), config.name);
	} else if (rc == ARL_ETABLEFULL) {
		fprintf(stderr, "arlctl create-bucket: the bucket table of %s is full (%u "
				"buckets); remove one with arlctl remove-bucket, or recreate the "
				"segment with a larger buckets = N in arld's [arld] section\n",
			arl_segment_name(arl), arl->header->bucket_capacity);
	} else {
		fprintf(stderr, "arlctl create-bucket: cannot create bucket %s in %s: %s\n",
			config.name, arl_segment_name(arl), arl_strerror(rc));
	}
	arl_detach(arl);
	return rc == 0 ? ARLCTL_EXIT_OK : ARLCTL_EXIT_ERROR;
}

/* Fills config with a live bucket's settings. A burst equal to the amount
 * is left at 0, the default, so that a new amount also moves the burst. */
static void live_config(const struct arl_bucket_stats *s, struct arl_bucket_config *config)
{
	uint32_t i;

	config->nlimits = s->nlimits;
	config->max_inflight = s->max_inflight;
	config->flags = s->flags;
	for (i = 0; i < s->nlimits; i++) {
		config->limits[i].unit = s->limits[i].unit;
		config->limits[i].amount = s->limits[i].amount;
		config->limits[i].window_ns = s->limits[i].window_ns;
		config->limits[i].burst =
			s->limits[i].burst == s->limits[i].amount ? 0 : s->limits[i].burst;
		config->limits[i].headroom_permille = s->limits[i].headroom_permille;
	}
}

/* Returns true if a configuration has the live bucket's limits, unit for
 * unit, which is what arl_bucket_set_limits() requires. */
static bool same_shape(const struct arl_bucket_stats *live, const struct arl_bucket_config *c)
{
	uint32_t i;

	if (c->nlimits != live->nlimits)
		return false;
	for (i = 0; i < c->nlimits; i++)
		if (c->limits[i].unit != live->limits[i].unit ||
		    c->limits[i].window_ns != live->limits[i].window_ns)
			return false;
	return true;
}

static int set_limits_on(struct arl *arl, const char *name, int argc, char **argv)
{
	struct arl_bucket_config config;
	struct arl_bucket_stats live;
	struct arl_bucket bucket;
	int rc;

	if (find_bucket(arl, "set-limits", name, &bucket) != 0)
		return ARLCTL_EXIT_ERROR;
	if (arl_bucket_stats(arl, bucket, &live) != 0) {
		fprintf(stderr, "arlctl set-limits: bucket %s was removed meanwhile\n", name);
		return ARLCTL_EXIT_ERROR;
	}
	memset(&config, 0, sizeof(config));
	config.name = name;
	live_config(&live, &config);
	rc = apply_keys("set-limits", &config, argc, argv);
	if (rc != 0)
		return rc;

	rc = arl_bucket_set_limits(arl, bucket, &config);
	if (rc == 0) {
		printf("bucket %s in %s now has: ", name, arl_segment_name(arl));
		print_limits(&config);
		return ARLCTL_EXIT_OK;
	}
	if (rc == ARL_ENOENT && config.account && config.account[0])
		fprintf(stderr, "arlctl set-limits: account bucket %s does not exist; create it "
				"first (arlctl buckets lists the buckets)\n",
			config.account);
	else if (rc == ARL_EINVAL && config.account && config.account[0] &&
		 same_shape(&live, &config))
		fprintf(stderr, "arlctl set-limits: linking %s to account %s would make a cycle "
				"of accounts; link it to another bucket\n",
			name, config.account);
	else if (rc == ARL_EINVAL)
		fprintf(stderr, "arlctl set-limits: bucket %s has %u limits; a change may set "
				"their amounts, bursts and headroom, max_inflight, refund and "
				"overage, but not add a limit or change a unit or window; for that, "
				"arlctl remove-bucket %s and create it again\n",
			name, live.nlimits, name);
	else if (rc == ARL_ESTALE)
		fprintf(stderr, "arlctl set-limits: bucket %s was removed meanwhile\n", name);
	else
		fprintf(stderr, "arlctl set-limits: cannot change bucket %s: %s\n", name,
			arl_strerror(rc));
	return ARLCTL_EXIT_ERROR;
}

static int cmd_set_limits(const char *segment, int argc, char **argv)
{
	struct arl *arl;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "arlctl set-limits: expected a bucket name and at least one "
				"KEY=VALUE, such as arlctl set-limits work tokens_per_minute=60000\n");
		return ARLCTL_EXIT_USAGE;
	}
	rc = check_bucket_name(argv[0], argv[1]);
	if (rc != 0)
		return rc;
	if (arlctl_attach(segment, 0, argv[0], &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	rc = set_limits_on(arl, argv[1], argc - 2, argv + 2);
	arl_detach(arl);
	return rc;
}

/* Counts the live reservations whose chain names a bucket. */
static uint32_t count_reservations_on(const struct arl *arl, struct arl_bucket bucket)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t i, c, n = 0;

	for (i = 0; i < arl->header->reservation_capacity; i++) {
		const struct arl_shm_reservation *r = &slots[i];
		uint32_t chain = arl_load_relaxed(&r->nbuckets);

		if (arl_impl_res_state(arl_load_acquire(&r->word)) == ARL_RES_FREE)
			continue;
		for (c = 0; c < chain && c < ARL_MAX_CHAIN; c++)
			if (arl_load_relaxed(&r->bucket_index[c]) == bucket.index &&
			    arl_load_relaxed(&r->bucket_gen[c]) == bucket.gen) {
				n++;
				break;
			}
	}
	return n;
}

static int cmd_remove_bucket(const char *segment, int argc, char **argv)
{
	struct arl_bucket bucket;
	struct arl *arl;
	uint32_t holding;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "arlctl remove-bucket: expected one bucket name, such as arlctl "
				"remove-bucket work\n");
		return ARLCTL_EXIT_USAGE;
	}
	rc = check_bucket_name(argv[0], argv[1]);
	if (rc != 0)
		return rc;
	if (arlctl_attach(segment, 0, argv[0], &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	if (find_bucket(arl, argv[0], argv[1], &bucket) != 0) {
		arl_detach(arl);
		return ARLCTL_EXIT_ERROR;
	}
	holding = count_reservations_on(arl, bucket);
	rc = arl_bucket_remove(arl, bucket);
	if (rc == 0)
		printf("removed bucket %s from %s; %u live reservation%s on it stay%s valid until "
		       "released\n",
		       argv[1], arl_segment_name(arl), holding, holding == 1 ? "" : "s",
		       holding == 1 ? "s" : "");
	else if (rc == ARL_ESTALE)
		fprintf(stderr, "arlctl remove-bucket: bucket %s was removed meanwhile\n", argv[1]);
	else
		fprintf(stderr, "arlctl remove-bucket: cannot remove bucket %s: %s\n", argv[1],
			arl_strerror(rc));
	arl_detach(arl);
	return rc == 0 ? ARLCTL_EXIT_OK : ARLCTL_EXIT_ERROR;
}

/* Parses "SLOT" or "SLOT:GEN". Returns 0 or -1. */
static int parse_slot_id(const char *text, uint32_t *slot, bool *has_gen, uint32_t *gen)
{
	unsigned long long value;
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || value > UINT32_MAX)
		return -1;
	*slot = (uint32_t)value;
	*has_gen = false;
	if (*end == '\0')
		return 0;
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return -1;
	value = strtoull(end + 1, &end, 10);
	if (errno || *end || value > UINT32_MAX)
		return -1;
	*gen = (uint32_t)value;
	*has_gen = true;
	return 0;
}

/* Returns the pid of a slot's owner while the owner lives, else 0. */
static int32_t live_owner_pid(const struct arl *arl, uint64_t word)
{
	uint32_t owner = arl_impl_res_owner(word);

	if (owner == 0 || owner > arl->header->process_capacity)
		return 0;
	if (!arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + (owner - 1)))
		return 0;
	return arl_load_relaxed(&arl_impl_processes(arl)[owner - 1].pid);
}

static int release_slot(struct arl *arl, uint32_t slot, bool has_gen, uint32_t gen)
{
	uint64_t word = arl_load_acquire(&arl_impl_reservations(arl)[slot].word);
	struct arl_reclaim_event event;
	int32_t owner_pid = live_owner_pid(arl, word);
	int rc;

	if (arl_impl_res_state(word) == ARL_RES_FREE) {
		fprintf(stderr, "arlctl release: reservation slot %u is free; nothing to "
				"release; arlctl reservations lists the live ones\n",
			slot);
		return ARLCTL_EXIT_ERROR;
	}
	/* NOTE: the slot can still be freed and reused between this check and
	 * the release; the window is a few instructions wide. */
	if (has_gen && arl_impl_res_gen(word) != gen) {
		fprintf(stderr, "arlctl release: reservation %u:%u is gone; slot %u is now at "
				"generation %u; arlctl reservations lists the live ones\n",
			slot, gen, slot, arl_impl_res_gen(word));
		return ARLCTL_EXIT_ERROR;
	}
	memset(&event, 0, sizeof(event));
	rc = arl_sweep_release_slot(arl, slot, &event);
	if (rc == ARL_ENOENT) {
		fprintf(stderr, "arlctl release: reservation slot %u is free; nothing to "
				"release; arlctl reservations lists the live ones\n",
			slot);
		return ARLCTL_EXIT_ERROR;
	}
	if (rc == ARL_EAGAIN) {
		fprintf(stderr, "arlctl release: reservation slot %u is changing state: its "
				"owner, pid %d, is reserving or releasing it; run the command "
				"again\n",
			slot, owner_pid);
		return ARLCTL_EXIT_ERROR;
	}
	if (rc != 0) {
		fprintf(stderr, "arlctl release: cannot release slot %u: %s\n", slot,
			arl_strerror(rc));
		return ARLCTL_EXIT_ERROR;
	}
	printf("released reservation %u:%u (bucket %s, owner pid %d, request %llu): %llu "
	       "tokens stay charged\n",
	       event.slot, event.gen, event.bucket[0] ? event.bucket : "(removed)", event.owner_pid,
	       (unsigned long long)event.request_id, (unsigned long long)event.tokens);
	if (owner_pid)
		printf("its owner, pid %d, is alive; its own release of this reservation will "
		       "fail with \"%s\"\n",
		       owner_pid, arl_strerror(ARL_ESTALE));
	return ARLCTL_EXIT_OK;
}

static int cmd_release(const char *segment, int argc, char **argv)
{
	uint32_t slot, gen = 0;
	bool has_gen;
	struct arl *arl;
	int rc;

	if (argc != 2 || parse_slot_id(argv[1], &slot, &has_gen, &gen) != 0) {
		fprintf(stderr, "arlctl release: expected one reservation id, SLOT or SLOT:GEN as "
				"arlctl reservations shows it, such as arlctl release 17:3\n");
		return ARLCTL_EXIT_USAGE;
	}
	if (arlctl_attach(segment, 0, argv[0], &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	if (slot >= arl->header->reservation_capacity) {
		fprintf(stderr, "arlctl release: slot %u: %s has slots 0 to %u\n", slot,
			arl_segment_name(arl), arl->header->reservation_capacity - 1);
		arl_detach(arl);
		return ARLCTL_EXIT_USAGE;
	}
	rc = release_slot(arl, slot, has_gen, gen);
	arl_detach(arl);
	return rc;
}

static volatile sig_atomic_t drain_interrupted;

static void on_drain_signal(int sig)
{
	drain_interrupted = sig;
}

/* Waits until no reservation is live, the deadline passes or a signal
 * arrives. Polls, since no futex wakes on the last release of a segment.
 * Returns the reservations still live. */
static uint32_t wait_for_no_reservations(const struct arl *arl, uint64_t deadline_ns)
{
	uint32_t live;

	while ((live = arlctl_count_live_reservations(arl)) != 0 && !drain_interrupted) {
		struct timespec pause = {0, (long)DRAIN_POLL_NS};

		if (arl_impl_monotonic_ns() >= deadline_ns)
			break;
		nanosleep(&pause, NULL);
	}
	return live;
}

/* Lists the reservations left at the deadline, so the operator can tell
 * which processes to look at. */
static void report_left_live(const struct arl *arl)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	const struct arl_shm_process *procs = arl_impl_processes(arl);
	uint32_t i;

	for (i = 0; i < arl->header->reservation_capacity; i++) {
		uint64_t word = arl_load_acquire(&slots[i].word);
		uint32_t owner = arl_impl_res_owner(word);
		int32_t pid = 0;

		if (arl_impl_res_state(word) == ARL_RES_FREE)
			continue;
		if (owner != 0 && owner <= arl->header->process_capacity)
			pid = arl_load_relaxed(&procs[owner - 1].pid);
		fprintf(stderr, "arlctl drain: reservation %u:%u of pid %d was still live\n", i,
			arl_impl_res_gen(word), pid);
	}
}

/* Removes the segment's name, unless it already leads to another object
 * (a new segment someone created meanwhile). Returns 0 or -1. */
static int remove_segment(const struct arl *arl)
{
	if (arlctl_segment_unlinked(arl)) {
		fprintf(stderr, "arlctl drain: %s was already removed or replaced; the object now "
				"under that name is left alone\n",
			arl_segment_name(arl));
		return 0;
	}
	if (shm_unlink(arl_segment_name(arl)) != 0 && errno != ENOENT) {
		fprintf(stderr, "arlctl drain: cannot remove %s: %s; remove /dev/shm%s by hand\n",
			arl_segment_name(arl), strerror(errno), arl_segment_name(arl));
		return -1;
	}
	return 0;
}

/* Parses drain's options. Returns 0 or ARLCTL_EXIT_USAGE. */
static int parse_drain_options(int argc, char **argv, uint64_t *timeout_ns)
{
	int i;

	*timeout_ns = DRAIN_DEFAULT_TIMEOUT_NS;
	for (i = 1; i < argc; i++) {
		const char *value = NULL;

		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			value = argv[++i];
		else if (strncmp(argv[i], "--timeout=", 10) == 0)
			value = argv[i] + 10;
		if (!value) {
			fprintf(stderr, "arlctl drain: unexpected argument %s; usage: arlctl drain "
					"[--timeout DURATION]\n",
				argv[i]);
			return ARLCTL_EXIT_USAGE;
		}
		if (arld_parse_duration(value, timeout_ns) != 0) {
			fprintf(stderr, "arlctl drain: --timeout %s: expected a duration such as "
					"500ms, 30s, 5m or 1h\n",
				value);
			return ARLCTL_EXIT_USAGE;
		}
	}
	return 0;
}

static int drain(struct arl *arl, uint64_t timeout_ns)
{
	struct sigaction sa;
	uint32_t live;
	int rc = arl_set_draining(arl, true);

	if (rc != 0) {
		fprintf(stderr, "arlctl drain: cannot mark %s as draining: %s\n",
			arl_segment_name(arl), arl_strerror(rc));
		return ARLCTL_EXIT_ERROR;
	}
	/* An interrupted drain must not leave the segment rejecting every
	 * reservation, so catch the usual stop signals and undo it. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_drain_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	live = arlctl_count_live_reservations(arl);
	printf("draining %s: new reservations fail; waiting up to %.1f s for %u live "
	       "reservation%s\n",
	       arl_segment_name(arl), (double)timeout_ns / 1e9, live, live == 1 ? "" : "s");
	fflush(stdout);
	live = wait_for_no_reservations(arl, arl_impl_sat_add(arl_impl_monotonic_ns(), timeout_ns));
	if (drain_interrupted) {
		arl_set_draining(arl, false);
		fprintf(stderr, "arlctl drain: interrupted; %s accepts reservations again and was "
				"not removed\n",
			arl_segment_name(arl));
		return 128 + (int)drain_interrupted;
	}
	if (live)
		report_left_live(arl);
	if (remove_segment(arl) != 0)
		return ARLCTL_EXIT_ERROR;
	if (live) {
		fprintf(stderr, "arlctl drain: removed %s with %u reservation%s still live; their "
				"owners keep the old segment until they detach\n",
			arl_segment_name(arl), live, live == 1 ? "" : "s");
		return ARLCTL_EXIT_DRAIN_LEFT_LIVE;
	}
	printf("drained and removed %s; its arld stops on its own, then start the new one\n",
	       arl_segment_name(arl));
	return ARLCTL_EXIT_OK;
}

static int cmd_drain(const char *segment, int argc, char **argv)
{
	uint64_t timeout_ns;
	struct arl *arl;
	int rc;

	rc = parse_drain_options(argc, argv, &timeout_ns);
	if (rc != 0)
		return rc;
	if (arlctl_attach(segment, 0, argv[0], &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	rc = drain(arl, timeout_ns);
	arl_detach(arl);
	return rc;
}

bool arlctl_is_admin_command(const char *command)
{
	return strcmp(command, "create-bucket") == 0 || strcmp(command, "set-limits") == 0 ||
	       strcmp(command, "remove-bucket") == 0 || strcmp(command, "release") == 0 ||
	       strcmp(command, "drain") == 0;
}

int arlctl_admin(const char *segment, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			admin_usage(stdout);
			return ARLCTL_EXIT_OK;
		}
	if (strcmp(argv[0], "create-bucket") == 0)
		return cmd_create_bucket(segment, argc, argv);
	if (strcmp(argv[0], "set-limits") == 0)
		return cmd_set_limits(segment, argc, argv);
	if (strcmp(argv[0], "remove-bucket") == 0)
		return cmd_remove_bucket(segment, argc, argv);
	if (strcmp(argv[0], "release") == 0)
		return cmd_release(segment, argc, argv);
	return cmd_drain(segment, argc, argv);
}
