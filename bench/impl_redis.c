/* SPDX-License-Identifier: MIT */
/*
 * impl_redis.c - the pair in Redis: two Lua scripts, run with EVALSHA
 * through hiredis, check and reserve, then release with the refund, each
 * atomically on the bucket's hash. The benchmark starts its own
 * redis-server on 127.0.0.1, on a free port, with persistence off, and
 * stops it in teardown. Without redis-server in PATH, or when built without
 * hiredis, setup reports the row as skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compare.h"

#ifdef ARL_BENCH_HAVE_HIREDIS
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>

/*
 * The reference accounting in Lua. Lua numbers are doubles, so times are
 * nanoseconds since the start of the run (exact below 2^53 ns, 104 days)
 * and are written back with %.0f. The tolerance of a limit is its window,
 * which is cost(amount): a full bucket.
 *   KEYS[1] the bucket; ARGV now_ns, tokens, window_ns, amount
 */
static const char reserve_lua[] =
	"local now = tonumber(ARGV[1])\n"
	"local window, amount = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local units = {1, tonumber(ARGV[2])}\n"
	"local tat = redis.call('HMGET', KEYS[1], 'tat_requests', 'tat_tokens')\n"
	"local next = {}\n"
	"for i = 1, 2 do\n"
	"  local base = math.max(tonumber(tat[i]) or 0, now)\n"
	"  next[i] = base + math.ceil(units[i] * window / amount)\n"
	"  if next[i] - now > window then return 1 end\n"
	"end\n"
	"redis.call('HSET', KEYS[1], 'tat_requests', string.format('%.0f', next[1]),\n"
	"           'tat_tokens', string.format('%.0f', next[2]))\n"
	"redis.call('HINCRBY', KEYS[1], 'inflight', 1)\n"
	"return 0\n";

/*   KEYS[1] the bucket; ARGV now_ns, reserved tokens, used tokens, window_ns, amount */
static const char release_lua[] =
	"local now = tonumber(ARGV[1])\n"
	"local unused = tonumber(ARGV[2]) - tonumber(ARGV[3])\n"
	"local refund = math.floor(unused * tonumber(ARGV[4]) / tonumber(ARGV[5]))\n"
	"if refund > 0 then\n"
	"  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_tokens')) or 0\n"
	"  local next = math.max(tat - refund, now)\n"
	"  if next < tat then\n"
	"    redis.call('HSET', KEYS[1], 'tat_tokens', string.format('%.0f', next))\n"
	"  end\n"
	"end\n"
	"redis.call('HINCRBY', KEYS[1], 'inflight', -1)\n"
	"return 0\n";

static pid_t server_pid;
static int server_port;
static uint64_t epoch_ns;
static char reserve_sha[64], release_sha[64];
static redisContext *ctx;

/* Finds a program in PATH. */
static bool in_path(const char *program)
{
	const char *path = getenv("PATH");
	char dir[4096], file[4200];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(dir, sizeof(dir), "%.*s", (int)len, path);
		snprintf(file, sizeof(file), "%s/%s", len ? dir : ".", program);
		if (access(file, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/* Returns a TCP port on 127.0.0.1 that was free a moment ago, or 0. */
static int free_port(void)
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd < 0)
		return 0;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		port = ntohs(addr.sin_port);
	close(fd);
	return port;
}

static pid_t start_server(int port)
{
	char port_arg[16];
	pid_t pid;
	int devnull;

	snprintf(port_arg, sizeof(port_arg), "%d", port);
	pid = fork();
	if (pid != 0)
		return pid;
	/* The server must not outlive a benchmark that is killed. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	devnull = open("/dev/null", O_WRONLY);
	if (devnull >= 0)
		dup2(devnull, STDOUT_FILENO);
	execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port_arg,
	       "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
	       (char *)NULL);
	fprintf(stderr, "bench_compare: exec redis-server failed: %s\n", strerror(errno));
	_exit(127);
}

static redisContext *connect_server(void)
{
	redisContext *c = redisConnect("127.0.0.1", server_port);

	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Connects, retrying for up to 5 s while the server starts. */
static redisContext *connect_when_ready(void)
{
	int i;

	for (i = 0; i < 500; i++) {
		redisContext *c = connect_server();
		int status;

		if (c) {
			redisReply *reply = redisCommand(c, "PING");
			bool ready = reply && reply->type == REDIS_REPLY_STATUS;

			freeReplyObject(reply);
			if (ready)
				return c;
			redisFree(c);
		}
		if (waitpid(server_pid, &status, WNOHANG) == server_pid) {
			server_pid = 0;
			return NULL;
		}
		bench_sleep_ns(10000000);
	}
	return NULL;
}

static int load_script(redisContext *c, const char *source, char *sha, size_t sha_size)
{
	redisReply *reply = redisCommand(c, "SCRIPT LOAD %s", source);
	int rc = -1;

	if (reply && reply->type == REDIS_REPLY_STRING) {
		snprintf(sha, sha_size, "%s", reply->str);
		rc = 0;
	}
	freeReplyObject(reply);
	return rc;
}

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
	}
	server_pid = 0;
}

static int redis_setup(unsigned nbuckets, char *why, size_t why_size)
{
	redisContext *c;

	(void)nbuckets; /* a bucket's hash appears with its first reserve */
	if (!in_path("redis-server")) {
		snprintf(why, why_size,
			 "redis-server not found in PATH (scripts/install-deps.sh installs it)");
		return BENCH_SKIPPED;
	}
	server_port = free_port();
	if (server_port == 0) {
		snprintf(why, why_size, "no free TCP port on 127.0.0.1");
		return BENCH_SKIPPED;
	}
	server_pid = start_server(server_port);
	if (server_pid < 0) {
		snprintf(why, why_size, "fork failed: %s", strerror(errno));
		return -1;
	}
	c = connect_when_ready();
	if (!c) {
		snprintf(why, why_size, "redis-server on 127.0.0.1:%d did not answer PING",
			 server_port);
		stop_server();
		return -1;
	}
	if (load_script(c, reserve_lua, reserve_sha, sizeof(reserve_sha)) != 0 ||
	    load_script(c, release_lua, release_sha, sizeof(release_sha)) != 0) {
		snprintf(why, why_size, "SCRIPT LOAD failed");
		redisFree(c);
		stop_server();
		return -1;
	}
	redisFree(c);
	epoch_ns = bench_now();
	return 0;
}

static int redis_open(void)
{
	ctx = connect_server();
	if (!ctx) {
		fprintf(stderr, "bench_compare: connecting to redis-server on 127.0.0.1:%d failed\n",
			server_port);
		return -1;
	}
	return 0;
}

/* Runs a script that returns an integer. Returns it, or -1 on an error. */
static long long eval_integer(redisReply *reply)
{
	long long value = -1;

	if (reply && reply->type == REDIS_REPLY_INTEGER)
		value = reply->integer;
	else
		fprintf(stderr, "bench_compare: EVALSHA failed: %s\n",
			reply && reply->type == REDIS_REPLY_ERROR ? reply->str
								  : ctx->errstr);
	freeReplyObject(reply);
	return value;
}

static int redis_pair(unsigned bucket)
{
	unsigned long long reserved = BENCH_INPUT + BENCH_OUTPUT;
	char key[32];
	long long rc;

	snprintf(key, sizeof(key), "bench:%u", bucket);
	rc = eval_integer(redisCommand(ctx, "EVALSHA %s 1 %s %llu %llu %llu %llu", reserve_sha,
				       key, (unsigned long long)(bench_now() - epoch_ns), reserved,
				       BENCH_WINDOW_NS, BENCH_AMOUNT));
	if (rc != 0)
		return rc == 1 ? 1 : -1;
	rc = eval_integer(redisCommand(ctx, "EVALSHA %s 1 %s %llu %llu %llu %llu %llu",
				       release_sha, key,
				       (unsigned long long)(bench_now() - epoch_ns), reserved,
				       (unsigned long long)BENCH_USED, BENCH_WINDOW_NS,
				       BENCH_AMOUNT));
	return rc == 0 ? 0 : -1;
}

static void redis_close(void)
{
	redisFree(ctx);
	ctx = NULL;
}

static void redis_teardown(void)
{
	stop_server();
}

/* The server's user and system time, from /proc/PID/stat (clock ticks). */
static uint64_t redis_server_cpu_ns(void)
{
	unsigned long long utime = 0, stime = 0;
	char path[64], buf[1024], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)server_pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* After the name: the state, fields 4 to 13, then utime and stime. */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
			 &stime) != 2)
		return 0;
	return (utime + stime) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

#else /* !ARL_BENCH_HAVE_HIREDIS */

static int redis_setup(unsigned nbuckets, char *why, size_t why_size)
{
	(void)nbuckets;
	snprintf(why, why_size, "built without hiredis (install libhiredis-dev and rebuild)");
	return BENCH_SKIPPED;
}

static int redis_open(void)
{
	return -1;
}

static int redis_pair(unsigned bucket)
{
	(void)bucket;
	return -1;
}

static void redis_close(void)
{
}

static void redis_teardown(void)
{
}

static uint64_t redis_server_cpu_ns(void)
{
	return 0;
}

#endif

const struct bench_impl bench_redis = {
	.name = "redis_lua",
	.setup = redis_setup,
	.open = redis_open,
	.pair = redis_pair,
	.close = redis_close,
	.teardown = redis_teardown,
	.server_cpu_ns = redis_server_cpu_ns,
};
