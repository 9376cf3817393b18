/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_ADMIN_H
#define ARLCTL_ADMIN_H

#include <stdbool.h>

/* Returns true for create-bucket, set-limits, remove-bucket, release and
 * drain. */
bool arlctl_is_admin_command(const char *command);

/*
 * Runs one administrative command; argv[0] is its name. Attaches to segment
 * (NULL: $ARL_SHM, else /arl) with write access. Returns the exit status
 * described in arlctl --help.
 */
int arlctl_admin(const char *segment, int argc, char **argv);

#endif /* ARLCTL_ADMIN_H */
