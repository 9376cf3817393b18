/* SPDX-License-Identifier: MIT */
/*
 * arld - the arl supervisor. Creates (or adopts) the shared segment and its
 * buckets, then sweeps it at a fixed interval: reservations whose owner died
 * or that stayed idle past the TTL are reclaimed with the fallback
 * accounting. Clients keep working while arld is down; only sweeping stops.
 */
#include <getopt.h>
#include <signal.h>

#include "config.h"
#include "state.h"
#include "log.h"
#include "metrics.h"
#include "sweep.h"

#define DEFAULT_METRICS "127.0.0.1:9477"

/* SIGTERM and SIGINT, blocked in every thread and taken synchronously by
 * the sweep loop's sigtimedwait(), so a stop cannot slip in between a check
 * and a sleep, and no handler runs on a thread that is not looking. */
static sigset_t stop_signals;
static int stop_signal;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: arld [OPTION]...\n"
		"Create or adopt an arl shared-memory segment and sweep it: reclaim the\n"
		"reservations of dead processes and of streams idle past the TTL.\n"
		"\n"
		"  -c, --config FILE       INI configuration (default: built-in, one bucket\n"
		"                          \"default\": 500 requests/min, 30000 tokens/min,\n"
		"                          64 in flight)\n"
		"  -s, --segment NAME      segment name (default /arl); the first of --segment,\n"
		"                          the config's segment key and $ARL_SHM wins, and\n"
		"                          clients find the segment through $ARL_SHM\n"
		"      --check-config FILE validate a configuration file and exit\n"
		"  -m, --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"                          (default " DEFAULT_METRICS "; port 0 picks a free one),\n"
		"                          or \"off\"; when the default port is taken, arld\n"
		"                          warns and runs without metrics\n"
		"  -l, --log-level LEVEL   error, warning, info (default) or debug\n"
		"      --syslog            also log to syslog\n"
		"  -f, --foreground        run in the foreground (the only mode; accepted for\n"
		"                          service managers)\n"
		"  -h, --help              show this help\n"
		"\n"
		"SIGTERM or SIGINT stops arld and leaves the segment in place; a restarted\n"
		"arld adopts it with every reservation and count intact, and keeps the limits\n"
		"of buckets that already exist (it warns when the configuration differs).\n"
		"SIGHUP re-reads the configuration file: buckets get its limits (each limit\n"
		"keeps the tokens it owes), new buckets are created. Only one arld\n"
		"supervises a segment at a time.\n"
		"\n"
		"Exit status: 0 after a clean stop or a valid --check-config, 1 on a runtime\n"
		"or configuration error, 2 on invalid options.\n");
}

/*
 * Takes the supervisor lock: an OFD lock on byte 2 of the segment, held for
 * arld's lifetime. The kernel drops it when arld dies. So two arld never
 * sweep one segment, and a restarted arld is not locked out by a dead one.
 */
static int take_supervisor_lock(struct arl *arl)
{
	if (arl_impl_lock_byte(arl->fd, F_OFD_SETLK, F_WRLCK, 2) == 0)
		return 0;
	arl_log(ARL_LOG_ERROR,
		"segment %s is already supervised by arld pid %d; stop that arld first, or "
		"give this one another segment with --segment",
		arl_segment_name(arl), (int)arl_load_relaxed(&arl->header->supervisor_pid));
	return -1;
}

/* Warns when a bucket that already exists has limits other than the
 * configuration's: the live bucket keeps its own. */
static void compare_bucket(struct arl *arl, const struct arld_bucket_spec *spec)
{
	const struct arl_bucket_config *want = &spec->config;
	struct arl_bucket_stats live;
	struct arl_bucket handle;
	bool same;
	uint32_t i;

	if (arl_bucket_find(arl, spec->name, &handle) != 0 ||
	    arl_bucket_stats(arl, handle, &live) != 0)
		return;
	same = live.nlimits == want->nlimits && live.max_inflight == want->max_inflight &&
	       live.flags == want->flags;
	for (i = 0; same && i < want->nlimits; i++) {
		const struct arl_limit_config *l = &want->limits[i];

		same = live.limits[i].unit == l->unit && live.limits[i].amount == l->amount &&
		       live.limits[i].window_ns == l->window_ns &&
		       live.limits[i].burst == (l->burst ? l->burst : l->amount) &&
		       live.limits[i].headroom_permille == l->headroom_permille;
	}
	if (same)
		return;
	arl_log(ARL_LOG_WARNING,
		"bucket %s exists with other limits than the configuration (live: %u limits, "
		"first %llu per %llu s, max_inflight %u; configured: %u limits, first %llu per "
		"%llu s, max_inflight %u); the live limits are kept; send arld SIGHUP (kill -HUP "
		"%d) to apply the file's limits to %s",
		spec->name, live.nlimits,
		(unsigned long long)(live.nlimits ? live.limits[0].amount : 0),
		(unsigned long long)(live.nlimits ? live.limits[0].window_ns / 1000000000ull : 0),
		live.max_inflight, want->nlimits,
		(unsigned long long)(want->nlimits ? want->limits[0].amount : 0),
		(unsigned long long)(want->nlimits ? want->limits[0].window_ns / 1000000000ull : 0),
		want->max_inflight, (int)getpid(), spec->name);
}

/* Adds the configured buckets; an existing bucket of the same name is kept
 * as it is, with its live state. */
/* Returns how many account links lead from a bucket of the configuration
 * to one without an account (checked acyclic when the file was loaded). */
static uint32_t account_depth(const struct arld_config *config, const struct arld_bucket_spec *b)
{
	uint32_t depth = 0, i;

	while (b->account[0] && depth < ARL_MAX_CHAIN) {
		for (i = 0; i < config->nbuckets; i++)
			if (strcmp(config->buckets[i].name, b->account) == 0)
				break;
		if (i == config->nbuckets)
			break;
		b = &config->buckets[i];
		depth++;
	}
	return depth;
}

/* Returns the index of the configured bucket to create in position `nth`:
 * accounts before the buckets that charge them. */
static uint32_t creation_order(const struct arld_config *config, uint32_t nth)
{
	uint32_t depth, i, seen = 0;

	for (depth = 0; depth <= ARL_MAX_CHAIN; depth++)
		for (i = 0; i < config->nbuckets; i++)
			if (account_depth(config, &config->buckets[i]) == depth && seen++ == nth)
				return i;
	return nth;
}

static int create_buckets(struct arl *arl, const struct arld_config *config)
{
	uint32_t n;

	for (n = 0; n < config->nbuckets; n++) {
		struct arl_bucket handle;
		uint32_t i = creation_order(config, n);
		int rc = arl_bucket_create(arl, &config->buckets[i].config, &handle);

		if (rc == ARL_EEXIST) {
			arl_log(ARL_LOG_INFO, "bucket %s exists; keeping its live state",
				config->buckets[i].name);
			compare_bucket(arl, &config->buckets[i]);
			continue;
		}
		if (rc != 0) {
			arl_log(ARL_LOG_ERROR, "cannot create bucket %s: %s",
				config->buckets[i].name, arl_strerror(rc));
			return rc;
		}
		arl_log(ARL_LOG_INFO, "bucket %s created (limits: %u, max_inflight %u)",
			config->buckets[i].name, config->buckets[i].config.nlimits,
			config->buckets[i].config.max_inflight);
	}
	return 0;
}

static const char *reason_name(enum arl_reclaim_reason reason)
{
	if (reason == ARL_RECLAIM_ADMIN)
		return "released by an operator";
	return reason == ARL_RECLAIM_IDLE ? "idle past reservation_ttl" : "owner died";
}

static void log_reclaim(void *context, const struct arl_reclaim_event *ev)
{
	(void)context;
	arl_log(ARL_LOG_WARNING,
		"reclaimed reservation %u:%u (bucket %s, owner pid %d, request %llu, %llu "
		"tokens kept, idle %.1f s): %s",
		ev->slot, ev->gen, ev->bucket[0] ? ev->bucket : "(removed)", ev->owner_pid,
		(unsigned long long)ev->request_id, (unsigned long long)ev->tokens,
		(double)ev->idle_ns / 1e9, reason_name(ev->reason));
}

static void log_anomaly(void *context, uint32_t slot, const char *what)
{
	(void)context;
	arl_log(ARL_LOG_ERROR, "reservation slot %u: %s; left untouched", slot, what);
}

/* Checks that /dev/shm/NAME still names the object this process maps. */
static bool segment_replaced(const struct arl *arl)
{
	char path[ARL_SHM_NAME_MAX + 16];
	struct stat by_name, mapped;

	snprintf(path, sizeof(path), "/dev/shm%s", arl_segment_name(arl));
	if (fstat(arl->fd, &mapped) != 0)
		return false;
	if (stat(path, &by_name) != 0)
		return true;
	return by_name.st_ino != mapped.st_ino || by_name.st_dev != mapped.st_dev;
}

/* The sweeper thread, and how the main thread stops it. */
struct sweeper {
	struct arl *arl;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* on CLOCK_MONOTONIC */
	bool stop;
};

/* Waits one sweep interval, or until the main thread requests a stop. Returns
 * true when the sweeper must stop. */
static bool sweeper_wait(struct sweeper *sw, uint64_t ns)
{
	struct timespec at;
	uint64_t deadline;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &at);
	deadline = (uint64_t)at.tv_sec * 1000000000ull + (uint64_t)at.tv_nsec + ns;
	at.tv_sec = (time_t)(deadline / 1000000000ull);
	at.tv_nsec = (long)(deadline % 1000000000ull);
	pthread_mutex_lock(&sw->lock);
	while (!sw->stop && pthread_cond_timedwait(&sw->wake, &sw->lock, &at) == 0)
		;
	stop = sw->stop;
	pthread_mutex_unlock(&sw->lock);
	return stop;
}

/* Applies one bucket of a reloaded configuration: creates it, or changes a
 * live bucket's limits when they differ. */
static void reload_bucket(struct arl *arl, const struct arld_bucket_spec *spec)
{
	struct arl_bucket handle;
	int rc = arl_bucket_create(arl, &spec->config, &handle);

	if (rc == 0) {
		arl_log(ARL_LOG_INFO, "reload: bucket %s created", spec->name);
		return;
	}
	if (rc != ARL_EEXIST) {
		arl_log(ARL_LOG_ERROR, "reload: cannot create bucket %s: %s", spec->name,
			arl_strerror(rc));
		return;
	}
	rc = arl_bucket_set_limits(arl, handle, &spec->config);
	if (rc == ARL_EINVAL)
		arl_log(ARL_LOG_WARNING,
			"reload: bucket %s has other limit units or another number of limits than "
			"the file; such a change needs a new bucket name, or the segment removed "
			"and arld restarted; its live limits are kept",
			spec->name);
	else if (rc != 0)
		arl_log(ARL_LOG_ERROR, "reload: cannot change bucket %s: %s", spec->name,
			arl_strerror(rc));
	else if (rc == ARL_ENOENT)
		arl_log(ARL_LOG_ERROR, "reload: bucket %s: account %s does not exist; its "
				       "limits and account are kept",
			spec->name, spec->account);
	else
		arl_log(ARL_LOG_INFO, "reload: bucket %s now has the file's limits%s%s", spec->name,
			spec->account[0] ? " and account " : "", spec->account);
}

/* Warns about live buckets the reloaded file no longer lists: arld cannot
 * remove a bucket, so they stay as they are. */
static void warn_unlisted_buckets(struct arl *arl, const struct arld_config *fresh)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i, j;

	for (i = 0; i < arl->header->bucket_capacity; i++) {
		char name[ARL_NAME_MAX + 1];
		bool listed = false;

		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_LIVE)
			continue;
		arl_impl_read_name(&buckets[i], name);
		for (j = 0; j < fresh->nbuckets && !listed; j++)
			listed = strncmp(fresh->buckets[j].name, name, ARL_NAME_MAX + 1) == 0;
		if (!listed)
			arl_log(ARL_LOG_WARNING,
				"reload: bucket %s is no longer in the file but stays live with its "
				"limits; remove it with arlctl remove-bucket %s",
				name, name);
	}
}

/*
 * Re-reads the configuration file on SIGHUP. Buckets get the file's limits
 * (the tokens each limit owes are kept), new buckets are created, and the
 * sweep interval and TTL change: the new state is published under RCU, so
 * the sweeper and the metrics server switch to it without a lock. The
 * segment's name and capacities cannot change. A file that does not load
 * leaves everything as it was.
 */
static void reload(struct arl *arl, const char *path, uint64_t *reloads)
{
	struct arld_config fresh;
	struct arld_state *state;
	char error[768];
	uint32_t i;

	if (!path) {
		arl_log(ARL_LOG_INFO, "SIGHUP: arld runs without --config; nothing to reload");
		return;
	}
	arld_config_defaults(&fresh);
	if (arld_config_load(&fresh, path, error, sizeof(error)) != 0) {
		arl_log(ARL_LOG_ERROR, "reload failed, the running configuration is kept: %s",
			error);
		arld_config_free(&fresh);
		return;
	}
	for (i = 0; i < fresh.nbuckets; i++)
		reload_bucket(arl, &fresh.buckets[creation_order(&fresh, i)]);
	warn_unlisted_buckets(arl, &fresh);
	state = arld_state_build(arl, &fresh, *reloads + 1);
	if (!state) {
		arl_log(ARL_LOG_ERROR, "reload: out of memory; the sweep interval and TTL are kept");
		arld_config_free(&fresh);
		return;
	}
	arld_state_publish(state);
	(*reloads)++;
	arl_log(ARL_LOG_INFO, "reloaded %s (buckets: %u, sweep every %.3f s, reservation_ttl %.0f s)",
		path, fresh.nbuckets, (double)fresh.sweep_interval_ns / 1e9,
		(double)fresh.reservation_ttl_ns / 1e9);
	arld_config_free(&fresh);
}

/* Reads the sweep interval and TTL in force, under RCU. */
static void current_timing(uint64_t *interval_ns, uint64_t *ttl_ns)
{
	const struct arld_state *s;

	arld_state_read_lock();
	s = arld_state_current();
	*interval_ns = s->sweep_interval_ns;
	*ttl_ns = s->reservation_ttl_ns;
	arld_state_read_unlock();
}

static void *sweeper_main(void *arg)
{
	struct sweeper *sw = arg;
	struct arl_sweep_options options = {0, log_reclaim, log_anomaly, NULL};
	bool replaced_logged = false;
	uint64_t interval;

	do {
		struct arl_sweep_result result;

		/* Reclaim what dead and idle clients left. */
		current_timing(&interval, &options.reservation_ttl_ns);
		if (arl_sweep(sw->arl, &options, &result) != 0)
			arl_log(ARL_LOG_ERROR, "sweep failed: out of memory");

		/* Publish the sweep, so waiters on the sweep counter wake. */
		arl_sweep_publish(sw->arl);
		if (result.processes_cleared)
			arl_log(ARL_LOG_DEBUG, "freed %u dead process entries",
				result.processes_cleared);
		if (result.buckets_recycled)
			arl_log(ARL_LOG_INFO, "%u removed bucket slots are free for reuse",
				result.buckets_recycled);

		/* A drained segment was removed on purpose (arlctl drain), so that
		 * a new arld can create it afresh: this one has nothing left to
		 * supervise. SIGTERM makes the main thread stop cleanly. */
		if (arl_draining(sw->arl) && segment_replaced(sw->arl)) {
			arl_log(ARL_LOG_INFO, "segment %s was drained and removed (arlctl drain); "
					      "stopping",
				arl_segment_name(sw->arl));
			kill(getpid(), SIGTERM);
			break;
		}

		/* Warn once if the name no longer leads to this segment. */
		if (segment_replaced(sw->arl) && !replaced_logged) {
			arl_log(ARL_LOG_ERROR,
				"/dev/shm%s was removed or replaced under live processes (systemd "
				"RemoveIPC does this at logout); new clients cannot reach this "
				"limiter; restart arld and the clients",
				arl_segment_name(sw->arl));
			replaced_logged = true;
		}
	} while (!sweeper_wait(sw, interval));
	return NULL;
}

static int start_sweeper(struct sweeper *sw, struct arl *arl)
{
	pthread_condattr_t attr;
	int rc;

	sw->arl = arl;
	sw->stop = false;
	pthread_mutex_init(&sw->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sw->wake, &attr);
	pthread_condattr_destroy(&attr);
	rc = pthread_create(&sw->thread, NULL, sweeper_main, sw);
	if (rc != 0)
		arl_log(ARL_LOG_ERROR, "cannot start the sweeper thread: %s", strerror(rc));
	return rc == 0 ? 0 : -1;
}

static void stop_sweeper(struct sweeper *sw)
{
	pthread_mutex_lock(&sw->lock);
	sw->stop = true;
	pthread_cond_signal(&sw->wake);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	pthread_cond_destroy(&sw->wake);
	pthread_mutex_destroy(&sw->lock);
}

/* The main thread's loop: waits for signals; reloads on SIGHUP, returns on
 * SIGTERM or SIGINT. */
static void serve_signals(struct arl *arl, const char *path)
{
	uint64_t reloads = 0;

	while (!stop_signal) {
		int sig = sigwaitinfo(&stop_signals, NULL);

		if (sig == SIGHUP)
			reload(arl, path, &reloads);
		else if (sig > 0)
			stop_signal = sig;
	}
}

/* Fills the configuration in order of precedence, lowest first: built-in
 * defaults, $ARL_SHM, the file, then --segment. */
static int load_config(struct arld_config *config, const char *path, const char *segment,
		       char *error, size_t error_size)
{
	const char *env = getenv("ARL_SHM");

	arld_config_defaults(config);
	if (env && *env)
		snprintf(config->segment, sizeof(config->segment), "%s", env);
	if (path && arld_config_load(config, path, error, error_size) != 0)
		return -1;
	if (segment)
		snprintf(config->segment, sizeof(config->segment), "%s", segment);
	return 0;
}

/* Parses "ADDR:PORT". Returns 0 or -1. */
static int parse_endpoint(const char *text, char *address, size_t size, unsigned *port)
{
	const char *colon = strrchr(text, ':');
	char *end;
	unsigned long value;

	if (!colon || colon == text || (size_t)(colon - text) >= size)
		return -1;
	value = strtoul(colon + 1, &end, 10);
	if (*end || end == colon + 1 || value > 65535)
		return -1;
	memcpy(address, text, (size_t)(colon - text));
	address[colon - text] = '\0';
	*port = (unsigned)value;
	return 0;
}

/* Starts the metrics server unless it is off. A failure with the default
 * endpoint only warns, so that several arld on one host still run; one
 * asked for explicitly is an error. Returns 0 or -1. */
static int start_metrics(const struct arl *arl, const char *endpoint, bool explicit_endpoint,
			 struct arl_metrics_server **server)
{
	char address[64], error[256];
	unsigned port;

	*server = NULL;
	if (strcmp(endpoint, "off") == 0)
		return 0;
	if (parse_endpoint(endpoint, address, sizeof(address), &port) != 0) {
		arl_log(ARL_LOG_ERROR, "--metrics %s: expected ADDR:PORT such as %s, or off",
			endpoint, DEFAULT_METRICS);
		return -1;
	}
	*server = arl_metrics_start(arl, address, port, error, sizeof(error));
	if (!*server) {
		arl_log(explicit_endpoint ? ARL_LOG_ERROR : ARL_LOG_WARNING, "%s", error);
		return explicit_endpoint ? -1 : 0;
	}
	arl_log(ARL_LOG_INFO, "metrics on http://%s:%u/metrics", address,
		arl_metrics_port(*server));
	return 0;
}

static int check_config_only(const char *path, const char *segment)
{
	struct arld_config config;
	char error[768];

	if (load_config(&config, path, segment, error, sizeof(error)) != 0) {
		fprintf(stderr, "arld: %s\n", error);
		arld_config_free(&config);
		return 1;
	}
	printf("%s: valid (segment %s, buckets: %u)\n", path, config.segment, config.nbuckets);
	arld_config_free(&config);
	return 0;
}

static int attach_segment(const struct arld_config *config, struct arl **arl)
{
	char error[512] = "";
	struct arl_attach_options opts;
	int rc;

	memset(&opts, 0, sizeof(opts));
	opts.name = config->segment;
	opts.flags = ARL_ATTACH_CREATE;
	opts.bucket_capacity = config->bucket_capacity;
	opts.reservation_capacity = config->reservation_capacity;
	opts.process_capacity = config->process_capacity;
	opts.mode = config->mode;
	if (config->has_group) {
		/* Sets the group at creation and expects it at attach. */
		opts.flags |= ARL_ATTACH_EXPECT_GROUP;
		opts.group = config->group;
	}
	opts.error = error;
	opts.error_size = sizeof(error);
	rc = arl_attach(arl, &opts);
	if (rc != 0)
		arl_log(ARL_LOG_ERROR, "cannot attach %s: %s%s%s", config->segment,
			arl_strerror(rc), error[0] ? ": " : "", error);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"config", required_argument, NULL, 'c'},
		{"segment", required_argument, NULL, 's'},
		{"check-config", required_argument, NULL, 'C'},
		{"log-level", required_argument, NULL, 'l'},
		{"metrics", required_argument, NULL, 'm'},
		{"syslog", no_argument, NULL, 'S'},
		{"foreground", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *segment = NULL, *check_path = NULL;
	const char *metrics_endpoint = DEFAULT_METRICS;
	struct arl_metrics_server *metrics = NULL;
	struct arld_state *state;
	struct sweeper sweeper;
	struct arld_config config;
	struct arl *arl;
	char error[768];
	int opt, level;

	while ((opt = getopt_long(argc, argv, "c:s:l:m:fh", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			segment = optarg;
			break;
		case 'C':
			check_path = optarg;
			break;
		case 'l':
			level = arl_log_parse_level(optarg);
			if (level < 0) {
				fprintf(stderr, "arld: --log-level %s: expected error, warning, "
						"info or debug\n",
					optarg);
				return 2;
			}
			arl_log_threshold = level;
			break;
		case 'S':
			arl_log_use_syslog("arld");
			break;
		case 'm':
			metrics_endpoint = optarg;
			break;
		case 'f':
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "arld: unexpected argument %s; see arld --help\n", argv[optind]);
		return 2;
	}

	if (check_path)
		return check_config_only(check_path, segment);
	if (load_config(&config, config_path, segment, error, sizeof(error)) != 0) {
		arl_log(ARL_LOG_ERROR, "%s", error);
		return 1;
	}

	/* Block before any thread starts (the metrics server has its own), so
	 * every thread inherits the mask. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

	if (attach_segment(&config, &arl) != 0)
		return 1;
	if (take_supervisor_lock(arl) != 0 || create_buckets(arl, &config) != 0 ||
	    start_metrics(arl, metrics_endpoint, metrics_endpoint != (const char *)DEFAULT_METRICS,
			  &metrics) != 0) {
		arl_detach(arl);
		return 1;
	}
	state = arld_state_build(arl, &config, 0);
	if (!state) {
		arl_log(ARL_LOG_ERROR, "out of memory");
		arl_metrics_stop(metrics);
		arl_detach(arl);
		return 1;
	}
	arld_state_publish(state);
	arl_store_relaxed(&arl->header->supervisor_pid, (int32_t)getpid());
	arl_log(ARL_LOG_INFO, "started on segment %s (buckets: %u, sweep every %.3f s, "
			      "reservation_ttl %.0f s)",
		config.segment, config.nbuckets, (double)config.sweep_interval_ns / 1e9,
		(double)config.reservation_ttl_ns / 1e9);

	if (start_sweeper(&sweeper, arl) == 0) {
		serve_signals(arl, config_path);
		stop_sweeper(&sweeper);
	}
	arl_metrics_stop(metrics);
	arld_state_shutdown();

	arl_store_relaxed(&arl->header->supervisor_pid, 0);
	if (arl_draining(arl) && segment_replaced(arl))
		arl_log(ARL_LOG_INFO, "stopped: segment %s was drained and removed",
			config.segment);
	else if (segment_replaced(arl))
		arl_log(ARL_LOG_INFO, "stopping on signal %d; segment %s was already removed",
			(int)stop_signal, config.segment);
	else
		arl_log(ARL_LOG_INFO, "stopping on signal %d; segment %s left in place",
			(int)stop_signal, config.segment);
	arl_log_flush();
	arl_detach(arl);
	arld_config_free(&config);
	return 0;
}
