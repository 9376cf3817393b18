/* SPDX-License-Identifier: MIT */
/*
 * arlctl run: runs a command under a reservation, so shell scripts and
 * programs in any language can share a quota. The command's standard output
 * passes through unchanged. With --sse it is also tracked as a stream, and
 * the reservation is released with the usage found there. Every path ends in
 * a release: the command's success, failure, death by a signal, or a signal
 * to arlctl itself (forwarded to the command).
 */
#include <getopt.h>
#include <signal.h>
#include <sys/wait.h>

#include <arl.h>
#include <arl/stream.h>

#include "arlctl_run.h"

static void run_usage(FILE *out)
{
	fprintf(out,
		"Usage: arlctl [--segment NAME] run --bucket NAME --tokens N [--wait SECONDS]\n"
		"                                  [--sse] -- COMMAND [ARG]...\n"
		"Reserve N tokens and one request in a bucket, run COMMAND, and release.\n"
		"\n"
		"  --bucket NAME    bucket to reserve from\n"
		"  --tokens N       tokens to reserve (an upper bound of the request's usage)\n"
		"  --wait SECONDS   wait up to this long for room (default 0: try once)\n"
		"  --sse            read the command's standard output as a server-sent events\n"
		"                   stream and release with the usage it reports; without it,\n"
		"                   or when the stream has no final usage, the reservation is\n"
		"                   kept whole (unknown usage)\n"
		"\n"
		"Exit status: the command's; 128+N when it died of signal N; 127 when it\n"
		"could not be run (the reservation is canceled); 75 when the bucket had no\n"
		"room within --wait; 2 on invalid options; 1 on other errors.\n");
}

struct run_options {
	const char *bucket;
	uint64_t tokens;
	double wait_s;
	bool sse;
	char **command;
};

static int parse_run_options(int argc, char **argv, struct run_options *o)
{
	static const struct option options[] = {
		{"bucket", required_argument, NULL, 'b'}, {"tokens", required_argument, NULL, 't'},
		{"wait", required_argument, NULL, 'w'},	  {"sse", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0},
	};
	bool tokens_given = false;
	char *end;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		switch (opt) {
		case 'b':
			o->bucket = optarg;
			break;
		case 't':
			errno = 0;
			tokens_given = true;
			o->tokens = strtoull(optarg, &end, 10);
			if (*end || errno || optarg[0] == '-' || o->tokens > ARL_MAX_TOKENS) {
				fprintf(stderr, "arlctl run: --tokens %s: expected a whole number from "
						"0 to %llu\n",
					optarg, ARL_MAX_TOKENS);
				return 2;
			}
			break;
		case 'w':
			o->wait_s = strtod(optarg, &end);
			if (*end || o->wait_s < 0 || o->wait_s > 86400) {
				fprintf(stderr, "arlctl run: --wait %s: expected seconds from 0 to "
						"86400\n",
					optarg);
				return 2;
			}
			break;
		case 's':
			o->sse = true;
			break;
		case 'h':
			run_usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "arlctl run: unknown option %s; see arlctl run --help\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (!o->bucket || !tokens_given || optind >= argc) {
		fprintf(stderr, "arlctl run: --bucket, --tokens and a command are required, e.g. "
				"arlctl run --bucket default --tokens 800 -- ./client.sh\n");
		return 2;
	}
	o->command = argv + optind;
	return 0;
}

static pid_t child_pid;

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* Copies the child's output to ours, feeding it to the tracker. */
static void pass_through(int fd, struct arl_stream_tracker *tracker)
{
	char buf[8192];
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (tracker)
			arl_stream_tracker_feed(tracker, buf, (size_t)n);
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			break;
	}
	fflush(stdout);
}

static int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

static int reserve(struct arl *arl, const struct run_options *o, struct arl_reservation *res)
{
	struct arl_request req = {o->tokens, 0, (uint64_t)getpid()};
	struct arl_bucket bucket, chain[ARL_MAX_CHAIN];
	uint32_t n;
	int rc = arl_bucket_find(arl, o->bucket, &bucket);

	if (rc == 0) {
		rc = arl_bucket_chain(arl, bucket, chain, &n);
		if (rc == ARL_ESTALE) {
			fprintf(stderr,
				"arlctl run: bucket %s charges an account bucket that was removed; "
				"link it to one that exists (arlctl set-limits %s account=NAME) or "
				"to none (account=)\n",
				o->bucket, o->bucket);
			return 1;
		}
	}
	if (rc == ARL_ENOENT) {
		fprintf(stderr, "arlctl run: no bucket %s in %s; arlctl buckets lists them\n",
			o->bucket, arl_segment_name(arl));
		return 1;
	}
	if (rc != 0) {
		fprintf(stderr, "arlctl run: bucket %s: %s\n", o->bucket, arl_strerror(rc));
		return 1;
	}
	/* The bucket and the account buckets it charges, all or nothing. */
	rc = arl_reserve_chain_wait(arl, chain, n, &req,
				    arl_now(arl) + (uint64_t)(o->wait_s * 1e9), res);
	if (rc == ARL_ETIMEDOUT || rc == ARL_EAGAIN) {
		fprintf(stderr, "arlctl run: bucket %s had no room for %llu tokens within %.1f s\n",
			o->bucket, (unsigned long long)o->tokens, o->wait_s);
		return 75;
	}
	if (rc != 0) {
		fprintf(stderr, "arlctl run: reserving %llu tokens in %s failed: %s\n",
			(unsigned long long)o->tokens, o->bucket, arl_strerror(rc));
		return 1;
	}
	return 0;
}

/*
 * Starts the command with its standard output on a pipe (with --sse) or
 * inherited. Returns the pid, or -1 with errno set when the command could
 * not be started (fork failed, or exec failed: reported through a
 * close-on-exec pipe, which an exec that succeeds closes unread).
 */
static pid_t start_command(char **command, int *out_fd)
{
	int fds[2] = {-1, -1}, exec_error[2];
	pid_t pid;
	int err = 0;

	if (pipe2(exec_error, O_CLOEXEC) != 0 || (out_fd && pipe(fds) != 0))
		return -1;
	pid = fork();
	if (pid == 0) {
		if (out_fd) {
			dup2(fds[1], STDOUT_FILENO);
			close(fds[0]);
			close(fds[1]);
		}
		execvp(command[0], command);
		err = errno;
		if (write(exec_error[1], &err, sizeof(err)) != sizeof(err))
			_exit(126);
		_exit(127);
	}
	close(exec_error[1]);
	if (out_fd)
		close(fds[1]);
	if (pid > 0 && read(exec_error[0], &err, sizeof(err)) == sizeof(err)) {
		waitpid(pid, NULL, 0);
		if (out_fd)
			close(fds[0]);
		close(exec_error[0]);
		errno = err;
		return -1;
	}
	close(exec_error[0]);
	if (out_fd)
		*out_fd = fds[0];
	return pid;
}

int arlctl_run(const char *segment, int argc, char **argv)
{
	struct run_options o = {NULL, 0, 0.0, false, NULL};
	struct arl_stream_tracker tracker;
	struct arl_attach_options ao;
	struct arl_reservation res;
	struct sigaction sa;
	char error[512] = "";
	struct arl *arl;
	int rc, released, fd = -1;

	rc = parse_run_options(argc, argv, &o);
	if (rc != 0)
		return rc;
	memset(&ao, 0, sizeof(ao));
	ao.name = segment;
	ao.error = error;
	ao.error_size = sizeof(error);
	rc = arl_attach(&arl, &ao);
	if (rc != 0) {
		fprintf(stderr, "arlctl run: %s\n", error[0] ? error : arl_strerror(rc));
		return 1;
	}
	rc = reserve(arl, &o, &res);
	if (rc != 0) {
		arl_detach(arl);
		return rc;
	}

	/* Forward termination signals, so the command ends and the release
	 * below still runs. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	child_pid = start_command(o.command, o.sse ? &fd : NULL);
	if (child_pid < 0) {
		fprintf(stderr, "arlctl run: cannot run %s: %s\n", o.command[0], strerror(errno));
		arl_cancel(arl, &res); /* nothing was sent */
		arl_detach(arl);
		return 127;
	}
	if (o.sse && arl_stream_tracker_init(&tracker, arl, &res, ARL_STREAM_SSE) == 0) {
		pass_through(fd, &tracker);
		close(fd);
		rc = wait_child(child_pid);
		released = arl_stream_tracker_release(&tracker);
		arl_stream_tracker_destroy(&tracker);
	} else {
		if (o.sse) {
			pass_through(fd, NULL);
			close(fd);
		}
		rc = wait_child(child_pid);
		released = arl_release(arl, &res, NULL); /* usage unknown: keep the reservation */
	}
	/* The exit status stays the command's; the message explains why
	 * nothing was released. */
	if (released == ARL_ESTALE)
		fprintf(stderr, "arlctl run: the reservation was already released by an operator "
				"(arlctl release) or reclaimed by arld; its tokens stay charged\n");
	arl_detach(arl);
	return rc;
}
