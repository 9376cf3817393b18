/* SPDX-License-Identifier: MIT */
/*
 * impl_flock.c - the pair with flock() on a file per bucket that holds the
 * reference accounting's state: lock, read, reserve, write, unlock, then
 * the same for the release. Each process opens the files itself, because
 * flock() locks belong to an open file description, which fork() shares.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "reference.h"

/* tmpfs, so the numbers show locking and system calls, not a disk. */
#define FLOCK_DIR "/dev/shm"

static unsigned nfiles;
static int fds[BENCH_MAX_BUCKETS];

static void file_path(char *buf, size_t size, unsigned bucket)
{
	snprintf(buf, size, FLOCK_DIR "/arl-cmp-%d-flock-%u", bench_run_pid, bucket);
}

static int flock_setup(unsigned nbuckets, char *why, size_t why_size)
{
	struct ref_state zero;
	unsigned i;

	memset(&zero, 0, sizeof(zero));
	for (i = 0; i < nbuckets; i++) {
		char path[128];
		int fd;

		file_path(path, sizeof(path), i);
		bench_cleanup_add(path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || pwrite(fd, &zero, sizeof(zero), 0) != sizeof(zero)) {
			snprintf(why, why_size, "creating %s failed: %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			nfiles = i + (fd >= 0);
			return -1;
		}
		close(fd);
	}
	nfiles = nbuckets;
	return 0;
}

static int flock_open(void)
{
	unsigned i;

	for (i = 0; i < nfiles; i++) {
		char path[128];

		file_path(path, sizeof(path), i);
		fds[i] = open(path, O_RDWR | O_CLOEXEC);
		if (fds[i] < 0) {
			fprintf(stderr, "bench_compare: open %s failed: %s\n", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Reads the state under the lock; the caller writes it back and unlocks. */
static int lock_and_read(int fd, struct ref_state *s)
{
	if (flock(fd, LOCK_EX) != 0) {
		fprintf(stderr, "bench_compare: flock failed: %s\n", strerror(errno));
		return -1;
	}
	if (pread(fd, s, sizeof(*s), 0) != sizeof(*s)) {
		fprintf(stderr, "bench_compare: pread failed\n");
		flock(fd, LOCK_UN);
		return -1;
	}
	return 0;
}

static int write_and_unlock(int fd, const struct ref_state *s)
{
	int rc = pwrite(fd, s, sizeof(*s), 0) == sizeof(*s) ? 0 : -1;

	if (rc != 0)
		fprintf(stderr, "bench_compare: pwrite failed\n");
	flock(fd, LOCK_UN);
	return rc;
}

static int flock_pair(unsigned bucket)
{
	int fd = fds[bucket];
	struct ref_state s;

	if (lock_and_read(fd, &s) != 0)
		return -1;
	if (ref_reserve(&s, bench_now(), BENCH_INPUT + BENCH_OUTPUT) != 0) {
		flock(fd, LOCK_UN);
		return 1;
	}
	if (write_and_unlock(fd, &s) != 0)
		return -1;

	if (lock_and_read(fd, &s) != 0)
		return -1;
	ref_release(&s, bench_now(), BENCH_INPUT + BENCH_OUTPUT, BENCH_USED);
	return write_and_unlock(fd, &s);
}

static void flock_close(void)
{
	unsigned i;

	for (i = 0; i < nfiles; i++)
		close(fds[i]);
}

static void flock_teardown(void)
{
	unsigned i;

	for (i = 0; i < nfiles; i++) {
		char path[128];

		file_path(path, sizeof(path), i);
		unlink(path);
	}
	nfiles = 0;
}

const struct bench_impl bench_flock = {
	.name = "flock",
	.setup = flock_setup,
	.open = flock_open,
	.pair = flock_pair,
	.close = flock_close,
	.teardown = flock_teardown,
};
