/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_SSE_H
#define ARLCTL_SSE_H

/*
 * Runs "arlctl sse-usage [--format sse|ndjson]": reads a streamed provider
 * response on standard input and prints its token usage as one JSON line.
 * argv[0] is the command name ("sse-usage"), and options start at argv[1].
 *
 * Returns the exit status: 0 once the input was read, whatever it contained,
 * 1 if reading standard input or allocating the parser failed, 2 on invalid
 * usage.
 */
int arlctl_sse_usage(int argc, char **argv);

#endif /* ARLCTL_SSE_H */
