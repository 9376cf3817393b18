/* SPDX-License-Identifier: MIT */
/* Helpers shared by the arlctl commands. */
#include "arlctl_common.h"

/* Byte of the segment file that arld locks for its lifetime. */
#define SUPERVISOR_LOCK_BYTE 2

void arlctl_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

int arlctl_attach(const char *segment, uint32_t flags, const char *command, struct arl **arl)
{
	char error[512] = "";
	struct arl_attach_options opts;
	int rc;

	memset(&opts, 0, sizeof(opts));
	opts.name = segment;
	opts.flags = flags;
	opts.error = error;
	opts.error_size = sizeof(error);
	rc = arl_attach(arl, &opts);
	if (rc != 0)
		fprintf(stderr, "arlctl %s: %s\n", command, error[0] ? error : arl_strerror(rc));
	return rc;
}

uint32_t arlctl_count_live_reservations(const struct arl *arl)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->reservation_capacity; i++)
		if (arl_impl_res_state(arl_load_acquire(&slots[i].word)) != ARL_RES_FREE)
			n++;
	return n;
}

uint32_t arlctl_count_live_processes(const struct arl *arl)
{
	const struct arl_shm_process *procs = arl_impl_processes(arl);
	uint32_t i, n = 0;

	for (i = 0; i < arl->header->process_capacity; i++)
		if (arl_load_acquire(&procs[i].state) == ARL_PROCESS_LIVE &&
		    arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + i))
			n++;
	return n;
}

bool arlctl_supervisor_alive(const struct arl *arl)
{
	return arl_load_relaxed(&arl->header->supervisor_pid) != 0 &&
	       arl_impl_byte_locked(arl->fd, SUPERVISOR_LOCK_BYTE);
}

bool arlctl_segment_unlinked(const struct arl *arl)
{
	char path[ARL_SHM_NAME_MAX + 16];
	struct stat by_name, mapped;

	snprintf(path, sizeof(path), "/dev/shm%s", arl_segment_name(arl));
	if (fstat(arl->fd, &mapped) != 0)
		return false;
	if (stat(path, &by_name) != 0)
		return true;
	return by_name.st_ino != mapped.st_ino || by_name.st_dev != mapped.st_dev;
}
