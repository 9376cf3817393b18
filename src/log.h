/* SPDX-License-Identifier: MIT */
/*
 * log.h - logging for arld and arlctl: one line per message on standard
 * error (and syslog when enabled), with time, level and pid. The level is
 * checked before the arguments are formatted. The client header never logs.
 */
#ifndef ARL_LOG_H
#define ARL_LOG_H

enum arl_log_level {
	ARL_LOG_ERROR = 0,
	ARL_LOG_WARNING = 1,
	ARL_LOG_INFO = 2,
	ARL_LOG_DEBUG = 3,
};

extern int arl_log_threshold;

/* Parses "error", "warning", "info" or "debug". Returns the level or -1. */
int arl_log_parse_level(const char *name);

/* Sends messages to syslog as well, under the given identity. */
void arl_log_use_syslog(const char *ident);

/* Writes one line. A message identical to the previous one is printed at
 * most three times a minute; the others are counted and the count printed
 * with the next different message. */
void arl_log_write(enum arl_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints the count of repeats held back, if any (arld calls it at exit). */
void arl_log_flush(void);

#define arl_log(level, ...)                                                                        \
	do {                                                                                       \
		if ((int)(level) <= arl_log_threshold)                                             \
			arl_log_write((level), __VA_ARGS__);                                       \
	} while (0)

#endif /* ARL_LOG_H */
