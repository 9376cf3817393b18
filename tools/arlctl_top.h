/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_TOP_H
#define ARLCTL_TOP_H

#include <stdbool.h>

/*
 * Runs "arlctl top [--interval SECONDS] [--once] [--json]": a live view of
 * the segment's buckets, or one frame. argv[0] is "top"; json is true when
 * the global --json came before the command. Returns the exit status.
 */
int arlctl_top(const char *segment, bool json, int argc, char **argv);

#endif /* ARLCTL_TOP_H */
