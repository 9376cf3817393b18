/* SPDX-License-Identifier: MIT */
#ifndef ARLCTL_COMMON_H
#define ARLCTL_COMMON_H

#include <arl.h>

/* Exit statuses shared by every arlctl command (see arlctl --help). */
#define ARLCTL_EXIT_OK 0
#define ARLCTL_EXIT_ERROR 1 /* the segment, a bucket or a call failed */
#define ARLCTL_EXIT_USAGE 2 /* invalid command, option or value */

/* Prints s as a JSON string literal, escaping what JSON requires. */
void arlctl_json_string(const char *s);

/*
 * Attaches to segment (NULL: $ARL_SHM, else /arl) with the given
 * ARL_ATTACH_* flags, and prints the library's message prefixed with
 * "arlctl COMMAND:" on failure. Returns 0 or an ARL_E* code.
 */
int arlctl_attach(const char *segment, uint32_t flags, const char *command, struct arl **arl);

/* Counts the reservation slots that are not free. */
uint32_t arlctl_count_live_reservations(const struct arl *arl);

/* Counts the process entries whose owner still holds its liveness lock. */
uint32_t arlctl_count_live_processes(const struct arl *arl);

/* Returns true while an arld holds the segment's supervisor lock (byte 2).
 * supervisor_pid alone keeps the pid of an arld that was killed. */
bool arlctl_supervisor_alive(const struct arl *arl);

/* Returns true when /dev/shm/NAME no longer names the object this handle
 * maps: the segment was removed (arlctl drain) or replaced. */
bool arlctl_segment_unlinked(const struct arl *arl);

#endif /* ARLCTL_COMMON_H */
