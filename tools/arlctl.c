/* SPDX-License-Identifier: MIT */
/*
 * arlctl - inspect a live arl segment. The listing commands attach
 * read-only, so read access to the segment is enough.
 */
#include <getopt.h>

#include <arl.h>

#include "arlctl_run.h"
#include "arlctl_sse.h"

struct listing {
	bool json;
	const char *segment;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: arlctl [--segment NAME] COMMAND [--json]\n"
		"Inspect a live arl segment (read-only).\n"
		"\n"
		"Commands:\n"
		"  status         segment layout, supervisor and table usage\n"
		"  buckets        each bucket's limits, availability, in-flight and counters\n"
		"  reservations   live reservations: bucket, owner pid, tokens, age, idle time\n"
		"  processes      attached processes: entry, pid, alive, reservations held\n"
		"  run            run a command under a reservation (arlctl run --help)\n"
		"  wait-sweep [N] wait until arld completes N more sweeps (default 1), at most\n"
		"                 --timeout SECONDS (default 30); exit 1 on timeout\n"
		"  sse-usage      read a response stream on standard input and print its usage\n"
		"                 as JSON (see arlctl sse-usage --help)\n"
		"\n"
		"Options:\n"
		"  -s, --segment NAME   segment to inspect (default: $ARL_SHM, else /arl)\n"
		"  -j, --json           print one JSON document instead of a table\n"
		"  -h, --help           show this help\n");
}

/* Prints a JSON string literal, escaping what JSON requires. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
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

static int attach_read_only(const struct listing *l, struct arl **arl)
{
	char error[512] = "";
	struct arl_attach_options opts;
	int rc;

	memset(&opts, 0, sizeof(opts));
	opts.name = l->segment;
	opts.flags = ARL_ATTACH_READ_ONLY;
	opts.error = error;
	opts.error_size = sizeof(error);
	rc = arl_attach(arl, &opts);
	if (rc != 0)
		fprintf(stderr, "arlctl: %s\n", error[0] ? error : arl_strerror(rc));
	return rc;
}

static uint32_t count_live_processes(const struct arl *arl)
{
	const struct arl_shm_process *procs = arl_impl_processes(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->process_capacity; i++)
		if (arl_load_acquire(&procs[i].state) == ARL_PROCESS_LIVE &&
		    arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + i))
			n++;
	return n;
}

static uint32_t count_live_reservations(const struct arl *arl)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->reservation_capacity; i++)
		if (arl_impl_res_state(arl_load_acquire(&slots[i].word)) != ARL_RES_FREE)
			n++;
	return n;
}

static int cmd_status(const struct listing *l)
{
	struct arl *arl;
	const struct arl_shm_header *h;
	uint64_t now, beat;
	int32_t supervisor;

	if (attach_read_only(l, &arl) != 0)
		return 1;
	h = arl->header;
	now = arl_now(arl);
	beat = arl_load_relaxed(&h->supervisor_heartbeat_ns);
	supervisor = arl_load_relaxed(&h->supervisor_pid);
	if (l->json) {
		printf("{\"segment\": ");
		json_string(arl_segment_name(arl));
		printf(", \"layout_version\": %u, \"size_bytes\": %llu, \"test_clock\": %s, "
		       "\"bucket_capacity\": %u, \"reservation_capacity\": %u, "
		       "\"process_capacity\": %u, \"supervisor_pid\": %d, \"sweep_count\": %llu, "
		       "\"heartbeat_age_ns\": %llu, \"live_reservations\": %u, "
		       "\"live_processes\": %u}\n",
		       h->layout_version, (unsigned long long)h->segment_size,
		       (h->flags & ARL_SEG_TEST_CLOCK) ? "true" : "false", h->bucket_capacity,
		       h->reservation_capacity, h->process_capacity, supervisor,
		       (unsigned long long)arl_sweep_count(arl),
		       (unsigned long long)(beat ? arl_impl_sat_sub(now, beat) : 0),
		       count_live_reservations(arl), count_live_processes(arl));
	} else {
		printf("segment:        %s (layout %u, %llu bytes%s)\n", arl_segment_name(arl),
		       h->layout_version, (unsigned long long)h->segment_size,
		       (h->flags & ARL_SEG_TEST_CLOCK) ? ", test clock" : "");
		printf("capacities:     %u buckets, %u reservations, %u processes\n",
		       h->bucket_capacity, h->reservation_capacity, h->process_capacity);
		if (supervisor)
			printf("supervisor:     pid %d, %llu sweeps, last %.1f s ago\n", supervisor,
			       (unsigned long long)arl_sweep_count(arl),
			       seconds(arl_impl_sat_sub(now, beat)));
		else
			printf("supervisor:     not running (%llu sweeps so far)\n",
			       (unsigned long long)arl_sweep_count(arl));
		printf("reservations:   %u live\n", count_live_reservations(arl));
		printf("processes:      %u attached\n", count_live_processes(arl));
	}
	arl_detach(arl);
	return 0;
}

static void print_bucket_json(const struct arl_bucket_stats *s, bool first)
{
	uint32_t i;

	printf("%s{\"name\": ", first ? "" : ", ");
	json_string(s->name);
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
	       "\"errors\": %llu}",
	       (unsigned long long)s->granted, (unsigned long long)s->granted_tokens,
	       (unsigned long long)s->rejected, (unsigned long long)s->waited_ns,
	       (unsigned long long)s->released, (unsigned long long)s->refunded_tokens,
	       (unsigned long long)s->overage_tokens, (unsigned long long)s->fallback_releases,
	       (unsigned long long)s->fallback_tokens, (unsigned long long)s->canceled,
	       (unsigned long long)s->reclaimed_dead, (unsigned long long)s->reclaimed_idle,
	       (unsigned long long)s->errors);
}

static void print_bucket_text(const struct arl_bucket_stats *s)
{
	uint32_t i;

	printf("%s\n", s->name);
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
	printf("  reclaimed  %llu dead owner, %llu idle\n", (unsigned long long)s->reclaimed_dead,
	       (unsigned long long)s->reclaimed_idle);
}

static int cmd_buckets(const struct listing *l)
{
	struct arl *arl;
	const struct arl_shm_bucket *buckets;
	bool first = true;
	uint32_t i;

	if (attach_read_only(l, &arl) != 0)
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
	snprintf(v->bucket, sizeof(v->bucket), "%s", b ? b->name : "(removed)");
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

	if (attach_read_only(l, &arl) != 0)
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
			json_string(v.bucket);
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
	if (attach_read_only(l, &arl) != 0)
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

	if (attach_read_only(l, &arl) != 0)
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
			       alive ? "true" : "false", arl_load_relaxed(&p->live_reservations),
			       (unsigned long long)arl_impl_sat_sub(now,
								   arl_load_relaxed(&p->attached_ns)));
		else
			printf("%-8u %8d %6s %13u %10.1f\n", i, (int)arl_load_relaxed(&p->pid),
			       alive ? "yes" : "no", arl_load_relaxed(&p->live_reservations),
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
	if (strcmp(command, "run") == 0)
		return arlctl_run(l.segment, argc - i, argv + i);
	if (strcmp(command, "wait-sweep") == 0)
		return cmd_wait_sweep(&l, argc - i, argv + i);
	if (strcmp(command, "status") == 0 || strcmp(command, "buckets") == 0 ||
	    strcmp(command, "reservations") == 0 || strcmp(command, "processes") == 0)
		return run_listing(command, argc - i, argv + i, &l);
	fprintf(stderr, "arlctl: unknown command %s; commands: status, buckets, reservations, "
			"processes, run, wait-sweep, sse-usage\n",
		command);
	return 2;
}
