/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_HEADERS_H
#define ARLCTL_HEADERS_H

/*
 * Runs "arlctl parse-headers [--provider NAME]": reads a response head on
 * standard input and prints the rate-limit state it reports as one JSON line.
 * argv[0] is the command name ("parse-headers"), and options start at argv[1].
 *
 * Returns the exit status: 0 once the input was read, whatever it contained,
 * 1 if reading standard input failed, 2 on invalid usage.
 */
int arlctl_parse_headers(int argc, char **argv);

#endif /* ARLCTL_HEADERS_H */
