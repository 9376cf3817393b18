/* SPDX-License-Identifier: MIT */
#include "metrics.h"
#include "state.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>

struct arl_metrics_server {
	struct MHD_Daemon *daemon;
	const struct arl *arl;
	unsigned port;
};

/* A growing string buffer; `failed` is set once an allocation fails. */
struct text {
	char *data;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void append(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = (t->cap + (size_t)n + 1) * 2;
			char *grown = realloc(t->data, cap);

			if (!grown) {
				t->failed = true;
				return;
			}
			t->data = grown;
			t->cap = cap;
		}
	}
}

/* Writes a bucket name as a Prometheus label value: backslash, double quote
 * and newline escaped. */
static void append_label(struct text *t, const char *value)
{
	for (; *value; value++) {
		if (*value == '\\' || *value == '"')
			append(t, "\\%c", *value);
		else if (*value == '\n')
			append(t, "\\n");
		else
			append(t, "%c", *value);
	}
}

/* One counter or gauge per bucket: the HELP and TYPE lines, then a sample
 * for each live bucket, taken from its snapshot at `offset`. */
struct series {
	const char *name;
	const char *type;
	const char *help;
	size_t offset; /* of a uint64_t in struct arl_bucket_stats */
};

#define SERIES(name, type, field, help)                                                            \
	{                                                                                          \
		name, type, help, offsetof(struct arl_bucket_stats, field)                         \
	}

static const struct series bucket_series[] = {
	SERIES("arl_granted_total", "counter", granted, "Reservations granted."),
	SERIES("arl_granted_tokens_total", "counter", granted_tokens,
	       "Tokens reserved by granted reservations (estimates)."),
	SERIES("arl_rejected_total", "counter", rejected,
	       "Reserve attempts refused by a limit, an in-flight cap or the wait queue."),
	SERIES("arl_waited_seconds_total", "counter", waited_ns,
	       "Time spent waiting in the queue before a grant."),
	SERIES("arl_released_total", "counter", released, "Releases with known usage."),
	SERIES("arl_refunded_tokens_total", "counter", refunded_tokens,
	       "Unused tokens given back by releases."),
	SERIES("arl_overage_tokens_total", "counter", overage_tokens,
	       "Tokens charged above the estimate at release."),
	SERIES("arl_fallback_releases_total", "counter", fallback_releases,
	       "Releases and reclaims with unknown usage, which keep the estimate."),
	SERIES("arl_fallback_tokens_total", "counter", fallback_tokens,
	       "Tokens kept charged by fallback releases."),
	SERIES("arl_canceled_total", "counter", canceled, "Reservations canceled unsent."),
	SERIES("arl_errors_total", "counter", errors,
	       "Reserve calls that failed for a reason other than a limit."),
	SERIES("arl_inflight_repaired_total", "counter", inflight_repaired,
	       "In-flight counts reset by the sweeper after a client died mid-release."),
	SERIES("arl_provider_429_total", "counter", provider_429s,
	       "429 responses clients reported with arl_bucket_observe()."),
};

static uint64_t field_of(const struct arl_bucket_stats *s, size_t offset)
{
	uint64_t value;

	memcpy(&value, (const char *)s + offset, sizeof(value));
	return value;
}

static int snapshot_all(const struct arl *arl, struct arl_bucket_stats **out)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i, n = 0;

	*out = calloc(arl->header->bucket_capacity, sizeof(**out));
	if (!*out)
		return -1;
	for (i = 0; i < arl->header->bucket_capacity; i++) {
		struct arl_bucket handle = {i, arl_load_relaxed(&buckets[i].gen)};

		if (arl_bucket_stats(arl, handle, &(*out)[n]) == 0)
			n++;
	}
	return (int)n;
}

/* Starts a sample line: the metric's name and its bucket label. */
static void sample_start(struct text *t, const char *metric, const char *bucket)
{
	append(t, "%s{bucket=\"", metric);
	append_label(t, bucket);
	append(t, "\"");
}

static void render_series(struct text *t, const struct arl_bucket_stats *all, int n,
			  const struct series *s)
{
	int i;

	append(t, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name, s->type);
	for (i = 0; i < n; i++) {
		uint64_t v = field_of(&all[i], s->offset);

		sample_start(t, s->name, all[i].name);
		if (strcmp(s->name, "arl_waited_seconds_total") == 0)
			append(t, "} %.9f\n", (double)v / 1e9);
		else
			append(t, "} %llu\n", (unsigned long long)v);
	}
}

/* One gauge per limit, labelled with its bucket, unit and window; `burst`
 * selects the burst instead of the units available now. */
static void render_limit_gauge(struct text *t, const struct arl_bucket_stats *all, int n,
			       const char *metric, const char *help, bool burst)
{
	int i;
	uint32_t l;

	append(t, "# HELP %s %s\n# TYPE %s gauge\n", metric, help, metric);
	for (i = 0; i < n; i++)
		for (l = 0; l < all[i].nlimits; l++) {
			const struct arl_limit_stats *limit = &all[i].limits[l];

			sample_start(t, metric, all[i].name);
			append(t, ",unit=\"%s\",window_seconds=\"%llu\"} %llu\n",
			       arl_unit_name(limit->unit),
			       (unsigned long long)(limit->window_ns / 1000000000ull),
			       (unsigned long long)(burst ? limit->burst : limit->available));
		}
}

static void render_limits(struct text *t, const struct arl_bucket_stats *all, int n)
{
	int i;

	render_limit_gauge(t, all, n, "arl_limit_available", "Units a limit would grant now.",
			   false);
	render_limit_gauge(t, all, n, "arl_limit_burst", "Units a limit contains when full.",
			   true);
	append(t, "# HELP arl_inflight Reservations holding an in-flight slot.\n"
		  "# TYPE arl_inflight gauge\n");
	for (i = 0; i < n; i++) {
		sample_start(t, "arl_inflight", all[i].name);
		append(t, "} %u\n", all[i].inflight);
	}
}

/* Reclaims carry a reason label, so they get their own series. */
static void render_reclaims(struct text *t, const struct arl_bucket_stats *all, int n)
{
	int i;

	append(t, "# HELP arl_reclaimed_total Reservations reclaimed by the supervisor.\n"
		  "# TYPE arl_reclaimed_total counter\n");
	for (i = 0; i < n; i++) {
		sample_start(t, "arl_reclaimed_total", all[i].name);
		append(t, ",reason=\"owner_died\"} %llu\n", (unsigned long long)all[i].reclaimed_dead);
		sample_start(t, "arl_reclaimed_total", all[i].name);
		append(t, ",reason=\"idle\"} %llu\n", (unsigned long long)all[i].reclaimed_idle);
		sample_start(t, "arl_reclaimed_total", all[i].name);
		append(t, ",reason=\"admin\"} %llu\n", (unsigned long long)all[i].reclaimed_admin);
	}
}

/* Seconds until a provider's 429 stops blocking each bucket (0: none). */
static void render_blocked(struct text *t, const struct arl *arl,
			   const struct arl_bucket_stats *all, int n)
{
	uint64_t now = arl_now(arl);
	int i;

	append(t, "# HELP arl_blocked_seconds Time left until a provider's 429 stops blocking "
		  "the bucket.\n# TYPE arl_blocked_seconds gauge\n");
	for (i = 0; i < n; i++) {
		uint64_t until = all[i].blocked_until_ns;

		sample_start(t, "arl_blocked_seconds", all[i].name);
		append(t, "} %.3f\n", until > now ? (double)(until - now) / 1e9 : 0.0);
	}
}

/*
 * arld's configuration in force, read under RCU while a SIGHUP may replace
 * it: no lock, and the state stays valid until the read-side section ends.
 */
static void render_config(struct text *t)
{
	const struct arld_state *s;
	uint32_t i;

	arld_state_read_lock();
	s = arld_state_current();
	if (s) {
		append(t, "# HELP arl_config_reloads_total Configuration reloads applied (SIGHUP).\n"
			  "# TYPE arl_config_reloads_total counter\narl_config_reloads_total %llu\n",
		       (unsigned long long)s->reloads);
		append(t, "# HELP arl_config_sweep_interval_seconds Time between sweeps.\n"
			  "# TYPE arl_config_sweep_interval_seconds gauge\n"
			  "arl_config_sweep_interval_seconds %.3f\n",
		       (double)s->sweep_interval_ns / 1e9);
		append(t, "# HELP arl_config_reservation_ttl_seconds Idle time after which a "
			  "reservation is reclaimed.\n"
			  "# TYPE arl_config_reservation_ttl_seconds gauge\n"
			  "arl_config_reservation_ttl_seconds %.3f\n",
		       (double)s->reservation_ttl_ns / 1e9);
		append(t, "# HELP arl_bucket_configured Buckets the configuration file names.\n"
			  "# TYPE arl_bucket_configured gauge\n");
		for (i = 0; i < s->nbuckets; i++) {
			sample_start(t, "arl_bucket_configured", s->buckets[i].name);
			append(t, "} 1\n");
		}
	}
	arld_state_read_unlock();
}

char *arl_metrics_render(const struct arl *arl)
{
	struct text t = {NULL, 0, 0, false};
	struct arl_bucket_stats *all;
	size_t i;
	int n = snapshot_all(arl, &all);

	if (n < 0)
		return NULL;
	append(&t, "# HELP arl_sweeps_total Sweeps the supervisor completed.\n"
		   "# TYPE arl_sweeps_total counter\narl_sweeps_total %llu\n",
	       (unsigned long long)arl_sweep_count(arl));
	for (i = 0; i < sizeof(bucket_series) / sizeof(bucket_series[0]); i++)
		render_series(&t, all, n, &bucket_series[i]);
	render_reclaims(&t, all, n);
	render_blocked(&t, arl, all, n);
	render_limits(&t, all, n);
	render_config(&t);
	free(all);
	if (t.failed) {
		free(t.data);
		return NULL;
	}
	return t.data;
}

static enum MHD_Result send_text(struct MHD_Connection *connection, unsigned status,
				 const char *body, bool owned)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(
		strlen(body), (void *)body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result result;

	MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4");
	result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

static enum MHD_Result on_request(void *context, struct MHD_Connection *connection,
				  const char *url, const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **state)
{
	struct arl_metrics_server *server = context;
	char *body;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)state;
	if (strcmp(method, "GET") != 0)
		return send_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET /metrics\n",
				 false);
	if (strcmp(url, "/metrics") != 0)
		return send_text(connection, MHD_HTTP_NOT_FOUND, "not found; try /metrics\n",
				 false);
	body = arl_metrics_render(server->arl);
	if (!body)
		return send_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n",
				 false);
	return send_text(connection, MHD_HTTP_OK, body, true);
}

struct arl_metrics_server *arl_metrics_start(const struct arl *arl, const char *address,
					     unsigned port, char *error, size_t error_size)
{
	struct arl_metrics_server *server;
	struct sockaddr_in sin;
	const union MHD_DaemonInfo *info;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (port > 65535 || inet_pton(AF_INET, address, &sin.sin_addr) != 1) {
		snprintf(error, error_size,
			 "metrics address %s:%u is invalid; use an IPv4 address and a port, such "
			 "as 127.0.0.1:9477",
			 address, port);
		return NULL;
	}
	server = calloc(1, sizeof(*server));
	if (!server) {
		snprintf(error, error_size, "out of memory");
		return NULL;
	}
	server->arl = arl;
	server->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL,
					  NULL, on_request, server, MHD_OPTION_SOCK_ADDR, &sin,
					  MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!server->daemon) {
		snprintf(error, error_size,
			 "cannot listen on %s:%u for metrics (port in use?); choose another "
			 "with --metrics ADDR:PORT or turn it off with --metrics off",
			 address, port);
		free(server);
		return NULL;
	}
	info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
	server->port = info ? info->port : port;
	return server;
}

unsigned arl_metrics_port(const struct arl_metrics_server *server)
{
	return server->port;
}

void arl_metrics_stop(struct arl_metrics_server *server)
{
	if (!server)
		return;
	MHD_stop_daemon(server->daemon);
	free(server);
}
