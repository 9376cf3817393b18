/* SPDX-License-Identifier: MIT */
/*
 * arlctl top: a live view of a segment, redrawn in place with ANSI escape
 * sequences every interval. Each bucket shows its limits and what is
 * available, the reservations in flight, the waiters, and the grants and
 * rejections per second since the previous frame. --once and --json print
 * one frame with no terminal control, for scripts and pipes.
 *
 * The terminal goes into non-canonical mode without echo so that a single
 * "q" quits. Signal handlers only set flags. The main loop restores the
 * terminal on every way out (q, SIGINT, SIGTERM, SIGHUP, an error), and then
 * re-raises a stop signal so that the caller sees how top ended.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "arlctl_common.h"
#include "arlctl_top.h"

#define MAX_INTERVAL_S 3600.0
#define MIN_LIVE_INTERVAL_S 0.1

static void top_usage(FILE *out)
{
	fprintf(out,
		"Usage: arlctl [--segment NAME] top [--interval SECONDS] [--once] [--json]\n"
		"Show every bucket live, redrawn in place: limits and available units, in\n"
		"flight, waiters, grants and rejections per second; the supervisor and its\n"
		"sweeps. Press q to quit. Needs only read access to the segment.\n"
		"\n"
		"  -i, --interval SECONDS  time between frames (default 1; from 0.1 to 3600)\n"
		"      --once              print one frame without terminal control and exit;\n"
		"                          the rates cover one interval, so it takes that long\n"
		"                          (--interval 0: print at once, rates null or \"-\")\n"
		"  -j, --json              print one frame as a JSON object (implies --once)\n"
		"  -h, --help              show this help\n"
		"\n"
		"Exit status: 0 on q or after one frame, 1 when the segment cannot be\n"
		"attached or the terminal cannot be set up, 2 on invalid options. SIGINT and\n"
		"SIGTERM restore the terminal and end top by that signal.\n");
}

struct top_options {
	const char *segment;
	double interval_s;
	bool once;
	bool json;
};

/* One bucket in a frame, with its rates against the previous frame. */
struct bucket_row {
	uint32_t index;
	uint32_t gen;
	struct arl_bucket_stats stats;
	bool has_rates; /* false in the first frame or for a new bucket */
	double granted_per_s;
	double rejected_per_s;
};

struct frame {
	uint64_t taken_ns;   /* CLOCK_MONOTONIC when the frame was read */
	uint64_t elapsed_ns; /* since the previous frame; 0 in the first */
	int32_t supervisor_pid;
	bool supervisor_alive;
	uint64_t sweep_count;
	uint64_t heartbeat_age_ns; /* 0 before the first sweep */
	uint32_t live_reservations;
	uint32_t live_processes;
	bool unlinked;
	bool draining;
	struct bucket_row *rows; /* in bucket-table order */
	size_t nrows;
	size_t capacity;
};

/* Set by the signal handlers, acted on by the main loop. */
static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t suspend_requested;
static volatile sig_atomic_t resized;

static struct termios saved_termios;
static bool terminal_changed;

static int parse_interval(const char *text, double *out)
{
	char *end;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (end == text || *end || errno || !isfinite(value) || value < 0 ||
	    value > MAX_INTERVAL_S) {
		fprintf(stderr, "arlctl top: --interval %s: expected seconds from 0 to %.0f, "
				"such as 0.5 or 2\n",
			text, MAX_INTERVAL_S);
		return -1;
	}
	*out = value;
	return 0;
}

/* Returns 0, 1 after --help, or 2 on an invalid option. */
static int parse_top_options(int argc, char **argv, struct top_options *o)
{
	static const struct option options[] = {
		{"interval", required_argument, NULL, 'i'},
		{"once", no_argument, NULL, '1'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "i:jh", options, NULL)) != -1) {
		switch (opt) {
		case 'i':
			if (parse_interval(optarg, &o->interval_s) != 0)
				return 2;
			break;
		case '1':
			o->once = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			top_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "arlctl top: invalid option %s; see arlctl top --help\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "arlctl top: unexpected argument %s; see arlctl top --help\n",
			argv[optind]);
		return 2;
	}
	if (o->json)
		o->once = true;
	if (!o->once && o->interval_s < MIN_LIVE_INTERVAL_S) {
		fprintf(stderr, "arlctl top: --interval %g: the live view needs at least %.1f s; "
				"use --once --interval 0 for a single frame without waiting\n",
			o->interval_s, MIN_LIVE_INTERVAL_S);
		return 2;
	}
	return 0;
}

static int append_row(struct frame *f, const struct bucket_row *row)
{
	if (f->nrows == f->capacity) {
		size_t capacity = f->capacity ? f->capacity * 2 : 16;
		struct bucket_row *grown = realloc(f->rows, capacity * sizeof(*grown));

		if (!grown)
			return -1;
		f->rows = grown;
		f->capacity = capacity;
	}
	f->rows[f->nrows++] = *row;
	return 0;
}

/* Per-second rate of a counter that moved from before to after. */
static double rate(uint64_t before, uint64_t after, uint64_t elapsed_ns)
{
	return (double)arl_impl_sat_sub(after, before) * 1e9 / (double)elapsed_ns;
}

/* Computes each row's rates from the row of the same bucket (same index and
 * generation) in the previous frame. Both frames are in index order. */
static void compute_rates(struct frame *cur, const struct frame *prev)
{
	size_t i, j = 0;

	if (!prev || cur->elapsed_ns == 0)
		return;
	for (i = 0; i < cur->nrows; i++) {
		struct bucket_row *row = &cur->rows[i];

		while (j < prev->nrows && prev->rows[j].index < row->index)
			j++;
		if (j == prev->nrows || prev->rows[j].index != row->index ||
		    prev->rows[j].gen != row->gen)
			continue;
		row->has_rates = true;
		row->granted_per_s =
			rate(prev->rows[j].stats.granted, row->stats.granted, cur->elapsed_ns);
		row->rejected_per_s =
			rate(prev->rows[j].stats.rejected, row->stats.rejected, cur->elapsed_ns);
	}
}

/* Reads one frame from the segment. Returns 0 or -1 when out of memory. */
static int read_frame(const struct arl *arl, const struct frame *prev, struct frame *f)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	const struct arl_shm_header *h = arl->header;
	uint64_t beat = arl_load_relaxed(&h->supervisor_heartbeat_ns);
	uint32_t i;

	f->nrows = 0;
	f->taken_ns = arl_impl_monotonic_ns();
	f->elapsed_ns = prev ? arl_impl_sat_sub(f->taken_ns, prev->taken_ns) : 0;
	f->supervisor_pid = arl_load_relaxed(&h->supervisor_pid);
	f->supervisor_alive = arlctl_supervisor_alive(arl);
	f->sweep_count = arl_sweep_count(arl);
	f->heartbeat_age_ns = beat ? arl_impl_sat_sub(arl_now(arl), beat) : 0;
	f->live_reservations = arlctl_count_live_reservations(arl);
	f->live_processes = arlctl_count_live_processes(arl);
	f->unlinked = arlctl_segment_unlinked(arl);
	f->draining = arl_draining(arl);
	for (i = 0; i < h->bucket_capacity; i++) {
		struct bucket_row row;
		struct arl_bucket handle = {i, arl_load_relaxed(&buckets[i].gen)};

		memset(&row, 0, sizeof(row));
		if (arl_bucket_stats(arl, handle, &row.stats) != 0)
			continue;
		row.index = i;
		row.gen = handle.gen;
		if (append_row(f, &row) != 0)
			return -1;
	}
	compute_rates(f, prev);
	return 0;
}

static void print_json_rate(const struct bucket_row *row, double value)
{
	if (row->has_rates)
		printf("%.3f", value);
	else
		printf("null");
}

static void print_frame_json(const struct arl *arl, const struct frame *f)
{
	size_t i;
	uint32_t j;

	printf("{\"segment\": ");
	arlctl_json_string(arl_segment_name(arl));
	printf(", \"unlinked\": %s, \"draining\": %s, \"interval_ns\": ",
	       f->unlinked ? "true" : "false", f->draining ? "true" : "false");
	if (f->elapsed_ns)
		printf("%llu", (unsigned long long)f->elapsed_ns);
	else
		printf("null");
	printf(", \"supervisor\": {\"pid\": %d, \"alive\": %s, \"sweep_count\": %llu, "
	       "\"heartbeat_age_ns\": %llu}, \"live_reservations\": %u, \"live_processes\": %u, "
	       "\"buckets\": [",
	       f->supervisor_pid, f->supervisor_alive ? "true" : "false",
	       (unsigned long long)f->sweep_count, (unsigned long long)f->heartbeat_age_ns,
	       f->live_reservations, f->live_processes);
	for (i = 0; i < f->nrows; i++) {
		const struct bucket_row *row = &f->rows[i];
		const struct arl_bucket_stats *s = &row->stats;

		printf("%s{\"name\": ", i ? ", " : "");
		arlctl_json_string(s->name);
		printf(", \"inflight\": %u, \"max_inflight\": %u, \"waiters\": %u, "
		       "\"granted\": %llu, \"rejected\": %llu, \"granted_per_s\": ",
		       s->inflight, s->max_inflight, s->queued, (unsigned long long)s->granted,
		       (unsigned long long)s->rejected);
		print_json_rate(row, row->granted_per_s);
		printf(", \"rejected_per_s\": ");
		print_json_rate(row, row->rejected_per_s);
		printf(", \"limits\": [");
		for (j = 0; j < s->nlimits; j++)
			printf("%s{\"unit\": \"%s\", \"amount\": %llu, \"window_ns\": %llu, "
			       "\"burst\": %llu, \"available\": %llu}",
			       j ? ", " : "", arl_unit_name(s->limits[j].unit),
			       (unsigned long long)s->limits[j].amount,
			       (unsigned long long)s->limits[j].window_ns,
			       (unsigned long long)s->limits[j].burst,
			       (unsigned long long)s->limits[j].available);
		printf("]}");
	}
	printf("]}\n");
}

/* Text output of one frame. In the live view each line also clears the rest
 * of its screen line, and lines stop at the terminal's height. */
struct screen {
	FILE *out;
	bool live;
	unsigned lines_left; /* UINT_MAX when not limited */
};

static bool screen_line(struct screen *sc, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints one line; returns false once the screen is full. */
static bool screen_line(struct screen *sc, const char *format, ...)
{
	va_list ap;

	if (sc->lines_left == 0)
		return false;
	va_start(ap, format);
	vfprintf(sc->out, format, ap);
	va_end(ap);
	fputs(sc->live ? "\033[K\n" : "\n", sc->out);
	sc->lines_left--;
	return true;
}

static const char *window_name(uint64_t window_ns)
{
	switch (window_ns / 1000000000ull) {
	case 1:
		return "s";
	case 60:
		return "min";
	case 3600:
		return "h";
	case 86400:
		return "day";
	default:
		return NULL;
	}
}

/* Formats a limit such as "30000 tokens/min"; odd windows print in seconds. */
static void format_limit(char *buf, size_t size, const struct arl_limit_stats *l)
{
	const char *window = window_name(l->window_ns);

	if (window && l->window_ns % 1000000000ull == 0)
		snprintf(buf, size, "%llu %s/%s", (unsigned long long)l->amount,
			 arl_unit_name(l->unit), window);
	else
		snprintf(buf, size, "%llu %s/%.0fs", (unsigned long long)l->amount,
			 arl_unit_name(l->unit), (double)l->window_ns / 1e9);
}

static void format_rate(char *buf, size_t size, const struct bucket_row *row, double value)
{
	if (row->has_rates)
		snprintf(buf, size, "%.1f", value);
	else
		snprintf(buf, size, "-");
}

static void print_header_text(struct screen *sc, const struct arl *arl, const struct frame *f,
			      double interval_s)
{
	screen_line(sc, "arl top: segment %s%s%s, every %g s%s", arl_segment_name(arl),
		    f->unlinked ? " (removed from /dev/shm)" : "",
		    f->draining ? " DRAINING: new reservations fail" : "", interval_s,
		    sc->live ? "; q quits" : "");
	if (f->supervisor_alive)
		screen_line(sc, "supervisor: arld pid %d alive, %llu sweeps, last %.1f s ago",
			    f->supervisor_pid, (unsigned long long)f->sweep_count,
			    (double)f->heartbeat_age_ns / 1e9);
	else if (f->supervisor_pid)
		screen_line(sc, "supervisor: DOWN (arld pid %d is gone), %llu sweeps so far",
			    f->supervisor_pid, (unsigned long long)f->sweep_count);
	else
		screen_line(sc, "supervisor: not running, %llu sweeps so far",
			    (unsigned long long)f->sweep_count);
	screen_line(sc, "reservations: %u live; processes: %u attached", f->live_reservations,
		    f->live_processes);
	screen_line(sc, "%s", "");
	screen_line(sc, "%-24s %9s %7s %9s %9s  %-28s %12s", "BUCKET", "INFLIGHT", "WAITERS",
		    "GRANT/S", "REJECT/S", "LIMIT", "AVAILABLE");
}

/* Prints one bucket: its first limit on the bucket's line, the others on
 * lines of their own. Returns false once the screen is full. */
static bool print_row_text(struct screen *sc, const struct bucket_row *row)
{
	const struct arl_bucket_stats *s = &row->stats;
	char inflight[32], granted[32], rejected[32], limit[64] = "", available[24] = "";
	uint32_t j;

	if (s->max_inflight)
		snprintf(inflight, sizeof(inflight), "%u/%u", s->inflight, s->max_inflight);
	else
		snprintf(inflight, sizeof(inflight), "%u", s->inflight);
	format_rate(granted, sizeof(granted), row, row->granted_per_s);
	format_rate(rejected, sizeof(rejected), row, row->rejected_per_s);
	if (s->nlimits) {
		format_limit(limit, sizeof(limit), &s->limits[0]);
		snprintf(available, sizeof(available), "%llu",
			 (unsigned long long)s->limits[0].available);
	}
	if (!screen_line(sc, "%-24.24s %9s %7u %9s %9s  %-28s %12s", s->name, inflight, s->queued,
			 granted, rejected, limit, available))
		return false;
	for (j = 1; j < s->nlimits; j++) {
		format_limit(limit, sizeof(limit), &s->limits[j]);
		if (!screen_line(sc, "%-24s %9s %7s %9s %9s  %-28s %12llu", "", "", "", "", "",
				 limit, (unsigned long long)s->limits[j].available))
			return false;
	}
	return true;
}

/* Prints a frame as text. In the live view it is built in memory and
 * written at once, from the top left corner, to avoid flicker. */
static void print_frame_text(const struct arl *arl, const struct frame *f, double interval_s,
			     bool live)
{
	struct screen sc = {stdout, live, UINT_MAX};
	struct winsize ws;
	char *buf = NULL;
	size_t len = 0, i;

	if (live) {
		sc.out = open_memstream(&buf, &len);
		if (!sc.out)
			return;
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 1)
			sc.lines_left = ws.ws_row - 1u; /* the last line keeps the cursor */
		fputs("\033[H", sc.out);
	}
	print_header_text(&sc, arl, f, interval_s);
	for (i = 0; i < f->nrows; i++)
		if (!print_row_text(&sc, &f->rows[i]))
			break;
	if (f->nrows == 0)
		screen_line(&sc, "no buckets");
	if (!live)
		return;
	fputs("\033[J", sc.out); /* clear what an earlier, longer frame left */
	fclose(sc.out);
	fwrite(buf, 1, len, stdout);
	fflush(stdout);
	free(buf);
}

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void on_suspend(int sig)
{
	(void)sig;
	suspend_requested = 1;
}

static void on_resize(int sig)
{
	(void)sig;
	resized = 1;
}

static void install_handlers(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal; /* no SA_RESTART: poll() returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_suspend;
	sigaction(SIGTSTP, &sa, NULL);
	sa.sa_handler = on_resize;
	sigaction(SIGWINCH, &sa, NULL);
}

/* Puts the terminal into non-canonical mode without echo, so that a key
 * arrives without Enter, and switches to the alternate screen. Returns 0
 * or -1; a standard input that is not a terminal is left alone. */
static int enter_terminal(void)
{
	struct termios raw;

	if (isatty(STDIN_FILENO)) {
		if (tcgetattr(STDIN_FILENO, &saved_termios) != 0)
			return -1;
		raw = saved_termios;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0)
			return -1;
		terminal_changed = true;
	}
	/* Alternate screen, hidden cursor, cleared screen. */
	fputs("\033[?1049h\033[?25l\033[2J", stdout);
	fflush(stdout);
	return 0;
}

static void leave_terminal(void)
{
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (terminal_changed)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
	terminal_changed = false;
}

/* Stops top on SIGTSTP (Ctrl-Z) with the terminal restored, and sets it
 * up again when the shell resumes it. */
static void suspend(void)
{
	struct sigaction sa, old;

	leave_terminal();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGTSTP, &sa, &old);
	raise(SIGTSTP); /* returns after SIGCONT */
	sigaction(SIGTSTP, &old, NULL);
	suspend_requested = 0;
	enter_terminal();
}

/* Reads the keys typed so far. Returns true when one of them is q. */
static bool quit_key_typed(void)
{
	char keys[64];
	ssize_t n, i;

	if (!terminal_changed)
		return false;
	n = read(STDIN_FILENO, keys, sizeof(keys));
	for (i = 0; i < n; i++)
		if (keys[i] == 'q' || keys[i] == 'Q')
			return true;
	return false;
}

/* Waits until deadline_ns (CLOCK_MONOTONIC) or an event. Returns true
 * when top should quit. */
static bool wait_for_next_frame(uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = arl_impl_monotonic_ns();
		struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
		int timeout_ms, rc;

		if (stop_signal)
			return true;
		if (suspend_requested)
			suspend();
		if (resized) {
			resized = 0;
			return false; /* redraw at the new size */
		}
		if (now >= deadline_ns)
			return false;
		timeout_ms = (int)((deadline_ns - now + 999999) / 1000000);
		rc = poll(&pfd, terminal_changed ? 1 : 0, timeout_ms);
		if (rc > 0 && (pfd.revents & POLLIN) && quit_key_typed())
			return true;
	}
}

static void free_frame(struct frame *f)
{
	free(f->rows);
	f->rows = NULL;
	f->nrows = f->capacity = 0;
}

static uint64_t interval_ns(const struct top_options *o)
{
	return (uint64_t)llround(o->interval_s * 1e9);
}

/* Prints one frame; with an interval, it first waits one interval so that
 * the rates cover it. */
static int run_once(const struct arl *arl, const struct top_options *o)
{
	struct frame frames[2];
	struct frame *shown = &frames[0];
	int rc = 0;

	memset(frames, 0, sizeof(frames));
	if (read_frame(arl, NULL, &frames[0]) != 0)
		rc = -1;
	if (rc == 0 && o->interval_s > 0) {
		struct timespec ts = {(time_t)o->interval_s,
				      (long)(fmod(o->interval_s, 1.0) * 1e9)};

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		shown = &frames[1];
		if (read_frame(arl, &frames[0], &frames[1]) != 0)
			rc = -1;
	}
	if (rc == 0 && o->json)
		print_frame_json(arl, shown);
	else if (rc == 0)
		print_frame_text(arl, shown, o->interval_s, false);
	free_frame(&frames[0]);
	free_frame(&frames[1]);
	if (rc != 0)
		fprintf(stderr, "arlctl top: out of memory\n");
	return rc == 0 ? ARLCTL_EXIT_OK : ARLCTL_EXIT_ERROR;
}

static int run_live(const struct arl *arl, const struct top_options *o)
{
	struct frame frames[2];
	struct frame *prev = NULL, *cur = &frames[0];
	uint64_t next_ns = arl_impl_monotonic_ns();
	int rc = ARLCTL_EXIT_OK;

	memset(frames, 0, sizeof(frames));
	install_handlers();
	if (enter_terminal() != 0) {
		fprintf(stderr, "arlctl top: cannot set up the terminal: %s; use --once\n",
			strerror(errno));
		return ARLCTL_EXIT_ERROR;
	}
	for (;;) {
		if (read_frame(arl, prev, cur) != 0) {
			rc = ARLCTL_EXIT_ERROR;
			break;
		}
		print_frame_text(arl, cur, o->interval_s, true);
		prev = cur;
		cur = cur == &frames[0] ? &frames[1] : &frames[0];
		next_ns += interval_ns(o);
		if (wait_for_next_frame(next_ns))
			break;
		/* A late frame (after a suspend) restarts the schedule from now. */
		if (arl_impl_monotonic_ns() > next_ns + interval_ns(o))
			next_ns = arl_impl_monotonic_ns();
	}
	leave_terminal();
	free_frame(&frames[0]);
	free_frame(&frames[1]);
	if (rc != ARLCTL_EXIT_OK)
		fprintf(stderr, "arlctl top: out of memory\n");
	return rc;
}

/* Ends the process by the signal that stopped top, with its default action,
 * so that a shell sees "killed by SIGINT" rather than a normal exit. */
static void reraise_stop_signal(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(stop_signal, &sa, NULL);
	raise(stop_signal);
}

int arlctl_top(const char *segment, bool json, int argc, char **argv)
{
	struct top_options o = {segment, 1.0, false, json};
	struct arl *arl;
	int rc;

	rc = parse_top_options(argc, argv, &o);
	if (rc != 0)
		return rc == 1 ? ARLCTL_EXIT_OK : ARLCTL_EXIT_USAGE;
	if (!o.once && !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "arlctl top: standard output is not a terminal; use --once or "
				"--json to print one frame\n");
		return ARLCTL_EXIT_USAGE;
	}
	if (arlctl_attach(o.segment, ARL_ATTACH_READ_ONLY, "top", &arl) != 0)
		return ARLCTL_EXIT_ERROR;
	rc = o.once ? run_once(arl, &o) : run_live(arl, &o);
	arl_detach(arl);
	if (stop_signal)
		reraise_stop_signal();
	return rc;
}
