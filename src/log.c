/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int arl_log_threshold = ARL_LOG_INFO;
static bool use_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

int arl_log_parse_level(const char *name)
{
	int i;

	for (i = 0; i <= ARL_LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void arl_log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	use_syslog = true;
}

static int syslog_priority(enum arl_log_level level)
{
	static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	return priorities[level];
}

/*
 * Repeats: a message identical to the previous one is printed at most
 * REPEAT_BURST times in a row within REPEAT_WINDOW_S seconds; the rest are
 * counted, and the count is printed when another message comes or the
 * window ends. A client that fails the same way every sweep thus costs a
 * few lines a minute, not one per second.
 */
#define REPEAT_BURST 3
#define REPEAT_WINDOW_S 60

static struct {
	char text[1024];
	enum arl_log_level level;
	unsigned count;	     /* times in a row, printed or not */
	time_t window_start; /* when the first of them was printed */
} last;

static void emit(enum arl_log_level level, const char *message)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s\n", stamp, ts.tv_nsec / 1000000,
		program_invocation_short_name, (int)getpid(), level_names[level], message);
	fflush(stderr);
	if (use_syslog)
		syslog(syslog_priority(level), "%s", message);
}

/* Prints how many repeats were held back, if any. Caller holds log_lock. */
static void flush_repeats(void)
{
	char note[96];

	if (last.count <= REPEAT_BURST)
		return;
	snprintf(note, sizeof(note), "the previous message was repeated %u more times",
		 last.count - REPEAT_BURST);
	emit(last.level, note);
}

/* Returns true when the message is a held-back repeat. Caller holds log_lock. */
static bool repeated(enum arl_log_level level, const char *message, time_t now)
{
	if (level == last.level && strcmp(message, last.text) == 0 &&
	    now - last.window_start < REPEAT_WINDOW_S) {
		last.count++;
		return last.count > REPEAT_BURST;
	}
	flush_repeats();
	snprintf(last.text, sizeof(last.text), "%s", message);
	last.level = level;
	last.count = 1;
	last.window_start = now;
	return false;
}

void arl_log_write(enum arl_log_level level, const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	/* One line at a time, under a lock, so lines from threads never mix. */
	pthread_mutex_lock(&log_lock);
	if (!repeated(level, message, time(NULL)))
		emit(level, message);
	pthread_mutex_unlock(&log_lock);
}

void arl_log_flush(void)
{
	pthread_mutex_lock(&log_lock);
	flush_repeats();
	last.count = 0;
	last.text[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}
