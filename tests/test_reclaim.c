/* SPDX-License-Identifier: MIT */
/*
 * arld as a real process: it reclaims the reservation of a SIGKILLed client
 * within two sweeps, reclaims a reservation idle past reservation_ttl (and
 * the owner's late release is then rejected), and stops on SIGTERM leaving
 * the segment in place. Tests wait on the sweep counter arld publishes,
 * with generous ceilings, never on a fixed sleep.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include "testutil.h"

#ifndef ARLD_PATH
#error "ARLD_PATH must name the arld binary"
#endif

#define WAIT_CEILING_NS (60ull * NS_PER_S)

struct supervisor {
	pid_t pid;
	char segment[64];
	char config[128];
};

/* Writes a config and starts arld on a private segment; waits until the
 * segment is attachable and the first sweep is done. */
static struct arl *start_arld_with(struct supervisor *sup, const char *tag, const char *ttl,
				   const char *metrics)
{
	struct arl *arl = NULL;
	uint64_t deadline = arl_impl_monotonic_ns() + WAIT_CEILING_NS;
	FILE *f;

	test_segment_name(sup->segment, sizeof(sup->segment), tag);
	shm_unlink(sup->segment);
	snprintf(sup->config, sizeof(sup->config), "/tmp/arl-test-%s-%d.ini", tag, (int)getpid());
	f = fopen(sup->config, "w");
	ck_assert(f != NULL);
	fprintf(f, "[arld]\nsegment = %s\nsweep_interval = 100ms\nreservation_ttl = %s\n"
		   "[bucket:work]\nrequests_per_minute = 100\ntokens_per_minute = 10000\n"
		   "max_inflight = 4\n",
		sup->segment, ttl);
	fclose(f);

	sup->pid = fork();
	ck_assert(sup->pid >= 0);
	if (sup->pid == 0) {
		execl(ARLD_PATH, "arld", "--config", sup->config, "--log-level", "debug",
		      "--metrics", metrics, (char *)NULL);
		_exit(127);
	}

	/* The segment appears once arld created it; retry until then. */
	for (;;) {
		struct arl_attach_options o;
		struct timespec ts = {0, 10000000};

		memset(&o, 0, sizeof(o));
		o.name = sup->segment;
		if (arl_attach(&arl, &o) == 0) {
			struct arl_bucket b;

			if (arl_bucket_find(arl, "work", &b) == 0)
				break;
			arl_detach(arl);
		}
		ck_assert_msg(arl_impl_monotonic_ns() < deadline, "arld never created %s",
			      sup->segment);
		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(arl_wait_sweep(arl, 0, WAIT_CEILING_NS), 0);
	return arl;
}

static struct arl *start_arld(struct supervisor *sup, const char *tag, const char *ttl)
{
	return start_arld_with(sup, tag, ttl, "off");
}

static void stop_arld(struct supervisor *sup, struct arl *arl)
{
	int status;

	kill(sup->pid, SIGTERM);
	ck_assert_int_eq(waitpid(sup->pid, &status, 0), sup->pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "arld exited with status %#x", status);
	arl_detach(arl);
	shm_unlink(sup->segment);
	unlink(sup->config);
}

/* A child that reserves 1000 tokens, reports the handle on a pipe, then
 * waits for a byte on the other pipe and tries to release; it exits with
 * 0 if the release returned ARL_ESTALE, 1 otherwise. */
static pid_t spawn_holder(const char *segment, int report_fd[2], int command_fd[2])
{
	pid_t pid;

	ck_assert_int_eq(pipe(report_fd), 0);
	ck_assert_int_eq(pipe(command_fd), 0);
	pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl *arl = test_attach(segment);
		struct arl_reservation res;
		struct arl_bucket b;
		struct arl_usage u = test_usage(10);
		char byte;

		if (arl_bucket_find(arl, "work", &b) != 0 || test_reserve(arl, b, 1000, &res) != 0)
			_exit(2);
		if (write(report_fd[1], &res, sizeof(res)) != sizeof(res))
			_exit(3);
		if (read(command_fd[0], &byte, 1) != 1)
			_exit(4);
		_exit(arl_release(arl, &res, &u) == ARL_ESTALE ? 0 : 1);
	}
	return pid;
}

static struct arl_reservation read_handle(int fd)
{
	struct arl_reservation res;

	ck_assert_int_eq(read(fd, &res, sizeof(res)), (ssize_t)sizeof(res));
	return res;
}

static uint32_t slot_state(struct arl *arl, uint32_t slot)
{
	return arl_impl_res_state(
		__atomic_load_n(&arl_impl_reservations(arl)[slot].word, __ATOMIC_ACQUIRE));
}

START_TEST(killed_client_reclaimed_within_two_sweeps)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "kill", "300s");
	int report[2], command[2], status;
	struct arl_reservation res;
	struct arl_bucket b;
	struct arl_bucket_stats s;
	uint64_t count;
	pid_t child;

	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	child = spawn_holder(sup.segment, report, command);
	res = read_handle(report[0]);
	ck_assert_uint_eq(slot_state(arl, res.slot), ARL_RES_COMMITTED);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 1);

	kill(child, SIGKILL);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	count = arl_sweep_count(arl);
	ck_assert_int_eq(arl_wait_sweep(arl, count, WAIT_CEILING_NS), 0);
	ck_assert_int_eq(arl_wait_sweep(arl, count + 1, WAIT_CEILING_NS), 0);

	ck_assert_uint_eq(slot_state(arl, res.slot), ARL_RES_FREE);
	s = test_stats(arl, b);
	ck_assert_uint_eq(s.inflight, 0);
	ck_assert_uint_eq(s.reclaimed_dead, 1);
	ck_assert_uint_eq(s.fallback_releases, 1);
	ck_assert_uint_eq(s.fallback_tokens, 1000);
	ck_assert_uint_eq(s.refunded_tokens, 0);
	stop_arld(&sup, arl);
}
END_TEST

START_TEST(idle_reservation_reclaimed_after_ttl)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "idle", "1s");
	uint64_t deadline = arl_impl_monotonic_ns() + WAIT_CEILING_NS;
	int report[2], command[2], status;
	struct arl_bucket b;
	pid_t child;

	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	child = spawn_holder(sup.segment, report, command);
	read_handle(report[0]);

	/* Wait for the event itself: the idle reclaim counted by arld. */
	while (test_stats(arl, b).reclaimed_idle == 0) {
		ck_assert_msg(arl_impl_monotonic_ns() < deadline, "no idle reclaim within 60 s");
		ck_assert_int_eq(arl_wait_sweep(arl, arl_sweep_count(arl), WAIT_CEILING_NS), 0);
	}
	ck_assert_uint_eq(test_stats(arl, b).inflight, 0);
	ck_assert_uint_eq(test_stats(arl, b).reclaimed_dead, 0);

	/* The owner is alive and now releases: rejected, nothing refunded. */
	ck_assert_int_eq(write(command[1], "r", 1), 1);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "late release was not rejected with ARL_ESTALE (status %#x)", status);
	ck_assert_uint_eq(test_stats(arl, b).refunded_tokens, 0);
	stop_arld(&sup, arl);
}
END_TEST

START_TEST(sigterm_leaves_segment_in_place)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "term", "300s");
	struct arl_bucket b;
	struct arl *again;
	int status;

	kill(sup.pid, SIGTERM);
	ck_assert_int_eq(waitpid(sup.pid, &status, 0), sup.pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "arld status %#x", status);

	again = test_attach(sup.segment);
	ck_assert_int_eq(arl_bucket_find(again, "work", &b), 0);
	ck_assert_int_eq(__atomic_load_n(&again->header->supervisor_pid, __ATOMIC_RELAXED), 0);
	arl_detach(again);
	arl_detach(arl);
	shm_unlink(sup.segment);
	unlink(sup.config);
}
END_TEST

/* Returns a port that was free a moment ago on 127.0.0.1. */
static unsigned free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Fetches http://127.0.0.1:port/metrics into buf; returns the body. */
static const char *fetch_metrics(unsigned port, char *buf, size_t size)
{
	static const char request[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	struct sockaddr_in sin;
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	const char *body;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(write(fd, request, sizeof(request) - 1), (ssize_t)sizeof(request) - 1);
	while (len + 1 < size && (n = read(fd, buf + len, size - len - 1)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	ck_assert_msg(strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 "),
		      "metrics answer: %.80s", buf);
	body = strstr(buf, "\r\n\r\n");
	ck_assert(body != NULL);
	return body + 4;
}

/* Checks the text format: each sample's metric has HELP and TYPE lines
 * before it, and every line is a comment or "name{labels} value". */
static void check_exposition(const char *text)
{
	const char *line = text;

	while (*line) {
		const char *end = strchr(line, '\n');
		char name[128];

		ck_assert_msg(end != NULL, "last line not terminated");
		if (line[0] != '#') {
			char help[160], type[160];
			size_t n = strcspn(line, "{ ");

			ck_assert(n > 0 && n < sizeof(name));
			memcpy(name, line, n);
			name[n] = '\0';
			snprintf(help, sizeof(help), "# HELP %s ", name);
			snprintf(type, sizeof(type), "# TYPE %s ", name);
			ck_assert_msg(strstr(text, help) && strstr(text, type) &&
					      strstr(text, help) < line,
				      "metric %s lacks HELP or TYPE before its samples", name);
			ck_assert_msg(strncmp(name, "arl_", 4) == 0, "metric %s lacks the arl_ prefix",
				      name);
		}
		line = end + 1;
	}
}

static uint64_t sample(const char *text, const char *series)
{
	const char *at = strstr(text, series);

	ck_assert_msg(at != NULL, "no sample %s", series);
	return strtoull(at + strlen(series), NULL, 10);
}

START_TEST(metrics_match_segment)
{
	static char buf[65536];
	struct supervisor sup;
	char endpoint[32];
	unsigned port = free_port();
	struct arl *arl;
	struct arl_bucket b;
	struct arl_reservation res;
	struct arl_usage u = test_usage(100);
	struct arl_bucket_stats s;
	const char *text;

	snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%u", port);
	arl = start_arld_with(&sup, "metrics", "300s", endpoint);
	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	ck_assert_int_eq(test_reserve(arl, b, 1000, &res), 0);
	ck_assert_int_eq(arl_release(arl, &res, &u), 0);
	ck_assert_int_eq(test_reserve(arl, b, 500, &res), 0);

	text = fetch_metrics(port, buf, sizeof(buf));
	check_exposition(text);
	s = test_stats(arl, b);
	ck_assert_uint_eq(sample(text, "arl_granted_total{bucket=\"work\"} "), s.granted);
	ck_assert_uint_eq(sample(text, "arl_refunded_tokens_total{bucket=\"work\"} "),
			  s.refunded_tokens);
	ck_assert_uint_eq(sample(text, "arl_inflight{bucket=\"work\"} "), 1);
	ck_assert_uint_eq(
		sample(text, "arl_limit_available{bucket=\"work\",unit=\"tokens\",window_seconds=\"60\"} "),
		s.limits[1].available);
	ck_assert_uint_eq(sample(text, "arl_reclaimed_total{bucket=\"work\",reason=\"idle\"} "), 0);
	ck_assert_int_eq(arl_release(arl, &res, &u), 0);
	stop_arld(&sup, arl);
}
END_TEST

START_TEST(sighup_applies_new_limits)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "hup", "300s");
	struct arl_reservation res;
	struct arl_bucket b;
	uint64_t count, reserved_at, refill_bound;
	FILE *f;

	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	reserved_at = arl_impl_monotonic_ns();
	ck_assert_int_eq(test_reserve(arl, b, 4000, &res), 0);

	/* Double the token limit and reload. */
	f = fopen(sup.config, "w");
	ck_assert(f != NULL);
	fprintf(f, "[arld]\nsegment = %s\nsweep_interval = 100ms\nreservation_ttl = 300s\n"
		   "[bucket:work]\nrequests_per_minute = 100\ntokens_per_minute = 20000\n"
		   "max_inflight = 4\n",
		sup.segment);
	fclose(f);
	kill(sup.pid, SIGHUP);
	/* arld's main thread reloads while the sweeper runs: wait, a sweep at a
	 * time, until the new limit is there. */
	for (count = arl_sweep_count(arl); test_stats(arl, b).limits[1].amount != 20000; count++)
		ck_assert_int_eq(arl_wait_sweep(arl, count, WAIT_CEILING_NS), 0);
	/* The 4000 tokens owed are kept: 16000 of the new 20000 are free, plus
	 * at most what refilled since the reservation at the new rate. */
	refill_bound = (arl_impl_monotonic_ns() - reserved_at) * 20000 / MINUTE_NS + 1;
	ck_assert_uint_ge(test_stats(arl, b).limits[1].available, 16000);
	ck_assert_uint_le(test_stats(arl, b).limits[1].available, 16000 + refill_bound);
	ck_assert_int_eq(arl_release(arl, &res, NULL), 0);
	stop_arld(&sup, arl);
}
END_TEST

/* Writes the test config with a given sweep interval and token limit. */
static void write_config(const struct supervisor *sup, unsigned interval_ms, unsigned tpm)
{
	FILE *f = fopen(sup->config, "w");

	ck_assert(f != NULL);
	fprintf(f, "[arld]\nsegment = %s\nsweep_interval = %ums\nreservation_ttl = 300s\n"
		   "[bucket:work]\nrequests_per_minute = 100\ntokens_per_minute = %u\n"
		   "max_inflight = 4\n",
		sup->segment, interval_ms, tpm);
	fclose(f);
}

static int scraping; /* atomic: the test thread stops the scraper */

static void *scrape_loop(void *arg)
{
	static char buf[65536];
	unsigned port = *(unsigned *)arg;

	while (__atomic_load_n(&scraping, __ATOMIC_ACQUIRE))
		check_exposition(fetch_metrics(port, buf, sizeof(buf)));
	return NULL;
}

/*
 * Reloads while the metrics thread renders and the sweeper sweeps: both read
 * arld's state under RCU as the main thread replaces it. Under TSan, arld
 * stops at the first race report, which fails the test.
 */
START_TEST(sighup_while_metrics_and_sweeper_read)
{
	static char buf[65536];
	struct supervisor sup;
	char endpoint[32];
	unsigned port = free_port();
	pthread_t scraper;
	struct arl *arl;
	struct arl_bucket b;
	unsigned i;

	snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%u", port);
	arl = start_arld_with(&sup, "rcu", "300s", endpoint);
	ck_assert_int_eq(arl_bucket_find(arl, "work", &b), 0);
	__atomic_store_n(&scraping, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_create(&scraper, NULL, scrape_loop, &port), 0);
	for (i = 1; i <= 20; i++) {
		const char *text;
		uint64_t deadline = arl_impl_monotonic_ns() + WAIT_CEILING_NS;

		write_config(&sup, 50 + i, 10000 + i);
		kill(sup.pid, SIGHUP);
		/* The reload is done once the metrics report it. */
		for (;;) {
			text = fetch_metrics(port, buf, sizeof(buf));
			if (sample(text, "\narl_config_reloads_total ") == i)
				break;
			ck_assert_msg(arl_impl_monotonic_ns() < deadline, "reload %u never applied", i);
			usleep(1000);
		}
		ck_assert_msg(strstr(text, "arl_config_sweep_interval_seconds 0.0") != NULL,
			      "no sweep interval in the metrics");
		ck_assert_uint_eq(test_stats(arl, b).limits[1].amount, 10000 + i);
	}
	__atomic_store_n(&scraping, 0, __ATOMIC_RELEASE);
	pthread_join(scraper, NULL);
	stop_arld(&sup, arl);
}
END_TEST

START_TEST(second_arld_refused)
{
	struct supervisor sup;
	struct arl *arl = start_arld(&sup, "second", "300s");
	int status;
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		execl(ARLD_PATH, "arld", "--segment", sup.segment, "--metrics", "off",
		      (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "second arld was not refused (status %#x)", status);
	/* The first one still supervises: its pid is in the segment. */
	ck_assert_int_eq(__atomic_load_n(&arl->header->supervisor_pid, __ATOMIC_RELAXED), sup.pid);
	stop_arld(&sup, arl);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("reclaim");
	TCase *tc = tcase_create("arld");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, killed_client_reclaimed_within_two_sweeps);
	tcase_add_test(tc, idle_reservation_reclaimed_after_ttl);
	tcase_add_test(tc, sigterm_leaves_segment_in_place);
	tcase_add_test(tc, metrics_match_segment);
	tcase_add_test(tc, second_arld_refused);
	tcase_add_test(tc, sighup_applies_new_limits);
	tcase_add_test(tc, sighup_while_metrics_and_sweeper_read);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
