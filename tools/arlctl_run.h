/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_RUN_H
#define ARLCTL_RUN_H

/*
 * Runs "arlctl run ... -- COMMAND": reserves, runs the command, releases.
 * argv[0] is "run". Returns the exit status described in its --help.
 */
int arlctl_run(const char *segment, int argc, char **argv);

#endif /* ARLCTL_RUN_H */
