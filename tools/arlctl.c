/* SPDX-License-Identifier: MIT */
/*
 * arlctl - inspect and administer an arl segment. The listing commands
 * attach read-only, so read access to the segment is enough; run and the
 * admin commands (arlctl_admin.c) attach with write access.
 */
#include <getopt.h>

#include <arl.h>

#include "arlctl_admin.h"
#include "arlctl_common.h"
#include "arlctl_headers.h"
#include "arlctl_run.h"
#include "arlctl_sse.h"
#include "arlctl_top.h"

struct listing {
	bool json;
	const char *segment;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: arlctl [--segment NAME] [--json] COMMAND [OPTION]...\n"
		"Inspect and administer an arl segment. Listings and top attach read-only,\n"
		"so read access is enough; run and the admin commands need write access.\n"
		"No command needs arld to be running.\n"
		"\n"
		"Listings (each takes --json):\n"
		"  status         segment layout, supervisor, draining, table usage\n"
		"  buckets        each bucket's limits, availability, in-flight and counters\n"
		"  reservations   live reservations: bucket, owner pid, tokens, age, idle time\n"
		"  processes      attached processes: entry, pid, alive, reservations held\n"
		"  top            live view, redrawn every --interval SECONDS (default 1);\n"
		"                 q quits; --once prints one frame (arlctl top --help)\n"
		"\n"
		"Other commands:\n"
		"  run            run a command under a reservation (arlctl run --help)\n"
		"  wait-sweep [N] wait until arld completes N more sweeps (default 1), at most\n"
		"                 --timeout SECONDS (default 30)\n"
		"  sse-usage      read a response stream on standard input and print its usage\n"
		"                 as JSON (arlctl sse-usage --help)\n"
		"  parse-headers  read a response head on standard input and print its\n"
		"                 rate-limit state as JSON (arlctl parse-headers --help)\n"
		"\n"
		"Admin commands (write access; arlctl create-bucket --help describes each):\n"
		"  create-bucket NAME KEY=VALUE...  create a bucket; keys as in arld's\n"
		"                                   [bucket:NAME] sections\n"
		"  set-limits NAME KEY=VALUE...     change a live bucket's limits\n"
		"  remove-bucket NAME               remove a bucket\n"
		"  release SLOT[:GEN]               release a stuck reservation, keeping its\n"
		"                                   estimate charged\n"
		"  drain [--timeout DURATION]       stop new reservations, wait for live ones,\n"
		"                                   then remove the segment\n"
		"\n"
		"Options:\n"
		"  -s, --segment NAME   segment to use (default: $ARL_SHM, else /arl)\n"
		"  -j, --json           print one JSON document instead of a table\n"
		"  -h, --help           show this help\n"
		"\n"
		"Exit status:\n"
		"  0    success\n"
		"  1    the segment, a bucket or a reservation was not found or could not be\n"
		"       used; wait-sweep: no sweep before the timeout\n"
		"  2    invalid command, option, argument or key\n"
		"  3    drain: the segment was removed while reservations were still live\n"
		"  75   run: the bucket had no room within --wait\n"
		"  127  run: the command could not be run\n"
		"  run otherwise exits with the command's status (128+N when it died of\n"
		"  signal N); top ends by the signal that stopped it, and an interrupted\n"
		"  drain exits with 128+N.\n");
}

static const char *state_name(uint32_t state)
{
	static const char *const names[] = {"free", "claimed", "committed", "releasing",
					    "reclaiming"};

	return state <= ARL_RES_RECLAIMING ? names[state] : "invalid";
}

static double seconds(uint64_t ns)
{
	return (double)ns / 1e9;
}

static int attach_read_only(const struct listing *l, const char *command, struct arl **arl)
{
	return arlctl_attach(l->segment, ARL_ATTACH_READ_ONLY, command, arl);
}

#define MAX_WARNINGS 5
#define WARNING_BYTES 320

/* Finds a live bucket whose account link leads to a removed bucket; copies
 * its name. Returns true if there is one. */
static bool dangling_account(const struct arl *arl, char *name)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	struct arl_bucket chain[ARL_MAX_CHAIN];
	uint32_t i, n;

	for (i = 0; i < arl->header->bucket_capacity; i++) {
		struct arl_bucket b = {i, arl_load_relaxed(&buckets[i].gen)};

		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_LIVE ||
		    arl_load_relaxed(&buckets[i].account) == 0)
			continue;
		if (arl_bucket_chain(arl, b, chain, &n) == ARL_ESTALE &&
		    arl_impl_bucket(arl, b.index, b.gen)) {
			arl_impl_read_name(&buckets[i], name);
			return true;
		}
	}
	return false;
}

/*
 * Collects what an operator should act on: no supervisor (nothing reclaims a
 * dead client's reservations), a supervisor that stopped sweeping, a drain
 * under way, a reservation table close to full. Returns the number filled.
 */
static int status_warnings(const struct arl *arl, uint64_t heartbeat_age_ns,
			   char warnings[MAX_WARNINGS][WARNING_BYTES])
{
	const struct arl_shm_header *h = arl->header;
	uint32_t live = arlctl_count_live_reservations(arl);
	char name[ARL_NAME_MAX + 1];
	int n = 0;

	if (!arlctl_supervisor_alive(arl))
		snprintf(warnings[n++], WARNING_BYTES,
			 "no arld supervises this segment: reservations of dead or stuck "
			 "clients are not reclaimed; start arld");
	else if (heartbeat_age_ns > 60 * 1000000000ull)
		snprintf(warnings[n++], WARNING_BYTES,
			 "arld has not swept for %.0f s; check that it is not stopped or stuck",
			 seconds(heartbeat_age_ns));
	if (arl_draining(arl))
		snprintf(warnings[n++], WARNING_BYTES, "draining: new reservations fail");
	if (dangling_account(arl, name))
		snprintf(warnings[n++], WARNING_BYTES,
			 "bucket %s charges an account bucket that was removed, so reserves on it "
			 "fail; arlctl set-limits %s account=NAME",
			 name, name);
	if ((uint64_t)live * 10 >= (uint64_t)h->reservation_capacity * 9)
		snprintf(warnings[n++], WARNING_BYTES,
			 "%u of %u reservation slots are in use; raise reservations = in the "
			 "arld configuration (a new segment) or release stuck ones",
			 live, h->reservation_capacity);
	return n;
}

static void print_status_json(const struct arl *arl, uint64_t heartbeat_age_ns)
{
	const struct arl_shm_header *h = arl->header;
	char warnings[MAX_WARNINGS][WARNING_BYTES];
	int i, n = status_warnings(arl, heartbeat_age_ns, warnings);

	printf("{\"segment\": ");
	arlctl_json_string(arl_segment_name(arl));
	printf(", \"layout_version\": %u, \"size_bytes\": %llu, \"test_clock\": %s, "
	       "\"bucket_capacity\": %u, \"reservation_capacity\": %u, "
	       "\"process_capacity\": %u, \"supervisor_pid\": %d, \"supervisor_alive\": %s, "
	       "\"sweep_count\": %llu, \"heartbeat_age_ns\": %llu, \"draining\": %s, "
	       "\"live_reservations\": %u, \"live_processes\": %u, \"warnings\": [",
	       h->layout_version, (unsigned long long)h->segment_size,
	       (h->flags & ARL_SEG_TEST_CLOCK) ? "true" : "false", h->bucket_capacity,
	       h->reservation_capacity, h->process_capacity,
	       (int)arl_load_relaxed(&h->supervisor_pid),
	       arlctl_supervisor_alive(arl) ? "true" : "false",
	       (unsigned long long)arl_sweep_count(arl), (unsigned long long)heartbeat_age_ns,
	       arl_draining(arl) ? "true" : "false", arlctl_count_live_reservations(arl),
	       arlctl_count_live_processes(arl));
	for (i = 0; i < n; i++) {
		printf("%s", i ? ", " : "");
		arlctl_json_string(warnings[i]);
	}
	printf("]}\n");
}

static void print_status_text(const struct arl *arl, uint64_t heartbeat_age_ns)
{
	char warnings[MAX_WARNINGS][WARNING_BYTES];
	int i, n = status_warnings(arl, heartbeat_age_ns, warnings);

	const struct arl_shm_header *h = arl->header;
	int32_t supervisor = arl_load_relaxed(&h->supervisor_pid);

	printf("segment:        %s (layout %u, %llu bytes%s)%s\n", arl_segment_name(arl),
	       h->layout_version, (unsigned long long)h->segment_size,
	       (h->flags & ARL_SEG_TEST_CLOCK) ? ", test clock" : "",
	       arl_draining(arl) ? ", DRAINING: new reservations fail" : "");
	printf("capacities:     %u buckets, %u reservations, %u processes\n", h->bucket_capacity,
	       h->reservation_capacity, h->process_capacity);
	if (supervisor && arlctl_supervisor_alive(arl))
		printf("supervisor:     pid %d, %llu sweeps, last %.1f s ago\n", supervisor,
		       (unsigned long long)arl_sweep_count(arl), seconds(heartbeat_age_ns));
	else if (supervisor)
		printf("supervisor:     not running (pid %d is gone; %llu sweeps so far)\n",
		       supervisor, (unsigned long long)arl_sweep_count(arl));
	else
		printf("supervisor:     not running (%llu sweeps so far)\n",
		       (unsigned long long)arl_sweep_count(arl));
	printf("reservations:   %u live\n", arlctl_count_live_reservations(arl));
	printf("processes:      %u attached\n", arlctl_count_live_processes(arl));
	for (i = 0; i < n; i++)
		printf("warning:        %s\n", warnings[i]);
}

static int cmd_status(const struct listing *l)
{
	struct arl *arl;
	uint64_t beat, age;

	if (attach_read_only(l, "status", &arl) != 0)
		return 1;
	beat = arl_load_relaxed(&arl->header->supervisor_heartbeat_ns);
	age = beat ? arl_impl_sat_sub(arl_now(arl), beat) : 0;
	if (l->json)
		print_status_json(arl, age);
	else
		print_status_text(arl, age);
	arl_detach(arl);
	return 0;
}

static void print_bucket_json(const struct arl_bucket_stats *s, bool first)
{
	uint32_t i;

	printf("%s{\"name\": ", first ? "" : ", ");
	arlctl_json_string(s->name);
	printf(", \"provider\": ");
	arlctl_json_string(s->profile);
	printf(", \"account\": ");
	arlctl_json_string(s->account);
	printf(", \"discover\": %s", (s->flags & ARL_BUCKET_DISCOVER) ? "true" : "false");
	printf(", \"inflight\": %u, \"max_inflight\": %u, \"refund\": %s, \"overage\": \"%s\", "
	       "\"limits\": [",
	       s->inflight, s->max_inflight, (s->flags & ARL_BUCKET_NO_REFUND) ? "false" : "true",
	       (s->flags & ARL_BUCKET_IGNORE_OVERAGE) ? "ignore" : "charge");
	for (i = 0; i < s->nlimits; i++)
		printf("%s{\"unit\": \"%s\", \"amount\": %llu, \"window_ns\": %llu, "
		       "\"burst\": %llu, \"headroom_permille\": %u, \"available\": %llu}",
		       i ? ", " : "", arl_unit_name(s->limits[i].unit),
		       (unsigned long long)s->limits[i].amount,
		       (unsigned long long)s->limits[i].window_ns,
		       (unsigned long long)s->limits[i].burst, s->limits[i].headroom_permille,
		       (unsigned long long)s->limits[i].available);
	printf("], \"granted\": %llu, \"granted_tokens\": %llu, \"rejected\": %llu, "
	       "\"waited_ns\": %llu, \"released\": %llu, \"refunded_tokens\": %llu, "
	       "\"overage_tokens\": %llu, \"fallback_releases\": %llu, \"fallback_tokens\": %llu, "
	       "\"canceled\": %llu, \"reclaimed_dead\": %llu, \"reclaimed_idle\": %llu, "
	       "\"reclaimed_admin\": %llu, \"errors\": %llu, \"waiters\": %u, "
	       "\"provider_429s\": %llu, \"blocked_until_ns\": %llu}",
	       (unsigned long long)s->granted, (unsigned long long)s->granted_tokens,
	       (unsigned long long)s->rejected, (unsigned long long)s->waited_ns,
	       (unsigned long long)s->released, (unsigned long long)s->refunded_tokens,
	       (unsigned long long)s->overage_tokens, (unsigned long long)s->fallback_releases,
	       (unsigned long long)s->fallback_tokens, (unsigned long long)s->canceled,
	       (unsigned long long)s->reclaimed_dead, (unsigned long long)s->reclaimed_idle,
	       (unsigned long long)s->reclaimed_admin, (unsigned long long)s->errors, s->queued,
	       (unsigned long long)s->provider_429s, (unsigned long long)s->blocked_until_ns);
}

static void print_bucket_text(const struct arl_bucket_stats *s)
{
	uint32_t i;

	printf("%s\n", s->name);
	if (s->profile[0] || s->account[0])
		printf("  provider   %s, account %s\n", s->profile[0] ? s->profile : "(none)",
		       s->account[0] ? s->account : "(none)");
	if (s->max_inflight)
		printf("  in flight  %u of %u\n", s->inflight, s->max_inflight);
	else
		printf("  in flight  %u (no cap)\n", s->inflight);
	for (i = 0; i < s->nlimits; i++)
		printf("  limit      %llu %s per %.0f s (burst %llu, headroom %u.%u%%): %llu "
		       "available\n",
		       (unsigned long long)s->limits[i].amount, arl_unit_name(s->limits[i].unit),
		       seconds(s->limits[i].window_ns), (unsigned long long)s->limits[i].burst,
		       s->limits[i].headroom_permille / 10, s->limits[i].headroom_permille % 10,
		       (unsigned long long)s->limits[i].available);
	printf("  granted    %llu (%llu tokens), rejected %llu, canceled %llu\n",
	       (unsigned long long)s->granted, (unsigned long long)s->granted_tokens,
	       (unsigned long long)s->rejected, (unsigned long long)s->canceled);
	printf("  released   %llu, refunded %llu tokens, overage %llu tokens\n",
	       (unsigned long long)s->released, (unsigned long long)s->refunded_tokens,
	       (unsigned long long)s->overage_tokens);
	printf("  fallback   %llu releases keeping %llu tokens\n",
	       (unsigned long long)s->fallback_releases, (unsigned long long)s->fallback_tokens);
	printf("  reclaimed  %llu dead owner, %llu idle, %llu released by an operator\n",
	       (unsigned long long)s->reclaimed_dead, (unsigned long long)s->reclaimed_idle,
	       (unsigned long long)s->reclaimed_admin);
	printf("  provider   %llu 429s reported%s\n", (unsigned long long)s->provider_429s,
	       s->blocked_until_ns ? "; blocked by a 429 now" : "");
}

static int cmd_buckets(const struct listing *l)
{
	struct arl *arl;
	const struct arl_shm_bucket *buckets;
	bool first = true;
	uint32_t i;

	if (attach_read_only(l, "buckets", &arl) != 0)
		return 1;
	buckets = arl_impl_buckets(arl);
	if (l->json)
		printf("[");
	for (i = 0; i < arl->header->bucket_capacity; i++) {
		struct arl_bucket handle = {i, arl_load_relaxed(&buckets[i].gen)};
		struct arl_bucket_stats s;

		if (arl_bucket_stats(arl, handle, &s) != 0)
			continue;
		if (l->json)
			print_bucket_json(&s, first);
		else
			print_bucket_text(&s);
		first = false;
	}
	if (l->json)
		printf("]\n");
	else if (first)
		printf("no buckets\n");
	arl_detach(arl);
	return 0;
}

/* Copies a slot's fields for printing. The owner may change them under us;
 * a listing is a best-effort snapshot. */
struct slot_view {
	uint32_t slot, gen, state, chunks;
	int32_t pid;
	char bucket[ARL_NAME_MAX + 1];
	uint64_t input, output, age_ns, idle_ns, request_id;
};

static bool read_slot(const struct arl *arl, uint32_t i, uint64_t now, struct slot_view *v)
{
	const struct arl_shm_reservation *r = &arl_impl_reservations(arl)[i];
	uint64_t word = arl_load_acquire(&r->word);
	uint32_t owner = arl_impl_res_owner(word);
	const struct arl_shm_bucket *b;

	memset(v, 0, sizeof(*v));
	v->state = arl_impl_res_state(word);
	if (v->state == ARL_RES_FREE)
		return false;
	v->slot = i;
	v->gen = arl_impl_res_gen(word);
	if (owner != 0 && owner <= arl->header->process_capacity)
		v->pid = arl_load_relaxed(&arl_impl_processes(arl)[owner - 1].pid);
	b = arl_impl_bucket(arl, arl_load_relaxed(&r->bucket_index[0]),
			    arl_load_relaxed(&r->bucket_gen[0]));
	if (b)
		arl_impl_read_name(b, v->bucket);
	else
		snprintf(v->bucket, sizeof(v->bucket), "(removed)");
	v->input = arl_load_relaxed(&r->input_tokens);
	v->output = arl_load_relaxed(&r->output_tokens);
	v->chunks = arl_load_relaxed(&r->chunks);
	v->age_ns = arl_impl_sat_sub(now, arl_load_relaxed(&r->created_ns));
	v->idle_ns = arl_impl_sat_sub(now, arl_load_relaxed(&r->last_activity_ns));
	v->request_id = arl_load_relaxed(&r->request_id);
	return true;
}

static int cmd_reservations(const struct listing *l)
{
	struct arl *arl;
	uint64_t now;
	bool first = true;
	uint32_t i;

	if (attach_read_only(l, "reservations", &arl) != 0)
		return 1;
	now = arl_now(arl);
	if (l->json)
		printf("[");
	else
		printf("%-12s %-10s %-24s %8s %10s %10s %8s %8s %7s\n", "id", "state", "bucket",
		       "pid", "input", "output", "age_s", "idle_s", "chunks");
	for (i = 0; i < arl->header->reservation_capacity; i++) {
		struct slot_view v;
		char id[32];

		if (!read_slot(arl, i, now, &v))
			continue;
		snprintf(id, sizeof(id), "%u:%u", v.slot, v.gen);
		if (l->json) {
			printf("%s{\"id\": \"%s\", \"state\": \"%s\", \"bucket\": ", first ? "" : ", ",
			       id, state_name(v.state));
			arlctl_json_string(v.bucket);
			printf(", \"owner_pid\": %d, \"input_tokens\": %llu, \"output_tokens\": %llu, "
			       "\"age_ns\": %llu, \"idle_ns\": %llu, \"chunks\": %u, "
			       "\"request_id\": %llu}",
			       v.pid, (unsigned long long)v.input, (unsigned long long)v.output,
			       (unsigned long long)v.age_ns, (unsigned long long)v.idle_ns, v.chunks,
			       (unsigned long long)v.request_id);
		} else {
			printf("%-12s %-10s %-24s %8d %10llu %10llu %8.1f %8.1f %7u\n", id,
			       state_name(v.state), v.bucket, v.pid, (unsigned long long)v.input,
			       (unsigned long long)v.output, seconds(v.age_ns), seconds(v.idle_ns),
			       v.chunks);
		}
		first = false;
	}
	if (l->json)
		printf("]\n");
	else if (first)
		printf("no live reservations\n");
	arl_detach(arl);
	return 0;
}

/* Waits for the supervisor's next sweeps: scripts use it to wait for a
 * reclaim instead of sleeping for a guessed time. */
static int cmd_wait_sweep(const struct listing *l, int argc, char **argv)
{
	uint64_t sweeps = 1, timeout_s = 30, start;
	struct arl *arl;
	char *end;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			timeout_s = strtoull(argv[++i], &end, 10);
			if (*end || timeout_s == 0) {
				fprintf(stderr, "arlctl wait-sweep: --timeout %s: expected whole "
						"seconds above 0\n",
					argv[i]);
				return 2;
			}
		} else {
			sweeps = strtoull(argv[i], &end, 10);
			if (*end || sweeps == 0 || sweeps > 1000) {
				fprintf(stderr, "arlctl wait-sweep: %s: expected a sweep count "
						"from 1 to 1000\n",
					argv[i]);
				return 2;
			}
		}
	}
	if (attach_read_only(l, "wait-sweep", &arl) != 0)
		return 1;
	start = arl_sweep_count(arl);
	rc = arl_wait_sweep(arl, start + sweeps - 1, timeout_s * 1000000000ull);
	if (rc != 0)
		fprintf(stderr, "arlctl wait-sweep: no sweep within %llu s; is arld running on %s?\n",
			(unsigned long long)timeout_s, arl_segment_name(arl));
	arl_detach(arl);
	return rc == 0 ? 0 : 1;
}

static int cmd_processes(const struct listing *l)
{
	const struct arl_shm_process *procs;
	struct arl *arl;
	uint64_t now;
	bool first = true;
	uint32_t i;

	if (attach_read_only(l, "processes", &arl) != 0)
		return 1;
	procs = arl_impl_processes(arl);
	now = arl_now(arl);
	if (l->json)
		printf("[");
	else
		printf("%-8s %8s %6s %13s %10s\n", "entry", "pid", "alive", "reservations",
		       "age_s");
	for (i = 0; i < arl->header->process_capacity; i++) {
		const struct arl_shm_process *p = &procs[i];
		bool alive;

		if (arl_load_acquire(&p->state) != ARL_PROCESS_LIVE)
			continue;
		alive = arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + i);
		if (l->json)
			printf("%s{\"entry\": %u, \"pid\": %d, \"alive\": %s, "
			       "\"reservations\": %u, \"age_ns\": %llu}",
			       first ? "" : ", ", i, (int)arl_load_relaxed(&p->pid),
			       alive ? "true" : "false", arl_impl_entry_references(arl, i),
			       (unsigned long long)arl_impl_sat_sub(now,
								   arl_load_relaxed(&p->attached_ns)));
		else
			printf("%-8u %8d %6s %13u %10.1f\n", i, (int)arl_load_relaxed(&p->pid),
			       alive ? "yes" : "no", arl_impl_entry_references(arl, i),
			       seconds(arl_impl_sat_sub(now, arl_load_relaxed(&p->attached_ns))));
		first = false;
	}
	if (l->json)
		printf("]\n");
	else if (first)
		printf("no attached processes\n");
	arl_detach(arl);
	return 0;
}

static int run_listing(const char *command, int argc, char **argv, struct listing *l)
{
	static const struct option options[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	optind = 1;
	opterr = 0; /* getopt would name the command, not arlctl */
	while ((opt = getopt_long(argc, argv, "jh", options, NULL)) != -1) {
		if (opt == 'j') {
			l->json = true;
		} else if (opt == 'h') {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "arlctl %s: unknown option %s; see arlctl --help\n", command,
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "arlctl %s: unexpected argument %s\n", command, argv[optind]);
		return 2;
	}
	if (strcmp(command, "status") == 0)
		return cmd_status(l);
	if (strcmp(command, "buckets") == 0)
		return cmd_buckets(l);
	if (strcmp(command, "processes") == 0)
		return cmd_processes(l);
	return cmd_reservations(l);
}

int main(int argc, char **argv)
{
	struct listing l = {false, NULL};
	const char *command;
	int i = 1;

	/* Global options come before the command. */
	while (i < argc && argv[i][0] == '-') {
		if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--segment") == 0) &&
		    i + 1 < argc) {
			l.segment = argv[i + 1];
			i += 2;
		} else if (strncmp(argv[i], "--segment=", 10) == 0) {
			l.segment = argv[i] + 10;
			i++;
		} else if (strcmp(argv[i], "-j") == 0 || strcmp(argv[i], "--json") == 0) {
			l.json = true;
			i++;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "arlctl: unknown option %s; see arlctl --help\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	command = argv[i];
	if (strcmp(command, "sse-usage") == 0)
		return arlctl_sse_usage(argc - i, argv + i);
	if (strcmp(command, "parse-headers") == 0)
		return arlctl_parse_headers(argc - i, argv + i);
	if (strcmp(command, "run") == 0)
		return arlctl_run(l.segment, argc - i, argv + i);
	if (strcmp(command, "wait-sweep") == 0)
		return cmd_wait_sweep(&l, argc - i, argv + i);
	if (strcmp(command, "top") == 0)
		return arlctl_top(l.segment, l.json, argc - i, argv + i);
	if (arlctl_is_admin_command(command))
		return arlctl_admin(l.segment, argc - i, argv + i);
	if (strcmp(command, "status") == 0 || strcmp(command, "buckets") == 0 ||
	    strcmp(command, "reservations") == 0 || strcmp(command, "processes") == 0)
		return run_listing(command, argc - i, argv + i, &l);
	fprintf(stderr, "arlctl: unknown command %s; commands: status, buckets, reservations, "
			"processes, top, run, wait-sweep, sse-usage, create-bucket, set-limits, "
			"remove-bucket, release, drain; see arlctl --help\n",
		command);
	return 2;
}
