/* SPDX-License-Identifier: MIT */
/*
 * impl_mutex.c - the pair under a process-shared robust pthread mutex in a
 * shared-memory segment, one mutex per bucket around the reference
 * accounting: lock, reserve, unlock, then lock, release, unlock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "reference.h"

struct mutex_bucket {
	pthread_mutex_t lock;
	struct ref_state state;
} __attribute__((aligned(64)));

static struct mutex_bucket *table;
static size_t table_size;

static int init_mutex(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;
	int rc;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
	return rc;
}

static int mutex_setup(unsigned nbuckets, char *why, size_t why_size)
{
	char name[64];
	unsigned i;
	int fd;

	/* A named segment, as unrelated processes would share it; the name is
	 * unlinked at once, since the children inherit the mapping. */
	snprintf(name, sizeof(name), "/arl-cmp-%d-mutex", bench_run_pid);
	bench_cleanup_add_shm(name);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		snprintf(why, why_size, "shm_open %s failed: %s", name, strerror(errno));
		return -1;
	}
	shm_unlink(name);
	table_size = nbuckets * sizeof(*table);
	if (ftruncate(fd, (off_t)table_size) != 0) {
		snprintf(why, why_size, "ftruncate %s failed: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	table = mmap(NULL, table_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (table == MAP_FAILED) {
		snprintf(why, why_size, "mmap %s failed: %s", name, strerror(errno));
		return -1;
	}
	for (i = 0; i < nbuckets; i++) {
		if (init_mutex(&table[i].lock) != 0) {
			snprintf(why, why_size, "pthread_mutex_init failed");
			return -1;
		}
	}
	return 0;
}

/* Locks a bucket. A holder that died leaves EOWNERDEAD: the state it left
 * is taken as it is, as the simplest user code would do. */
static int lock_bucket(struct mutex_bucket *b)
{
	int rc = pthread_mutex_lock(&b->lock);

	if (rc == EOWNERDEAD)
		rc = pthread_mutex_consistent(&b->lock);
	if (rc != 0)
		fprintf(stderr, "bench_compare: pthread_mutex_lock failed: %s\n", strerror(rc));
	return rc;
}

static int mutex_open(void)
{
	return 0;
}

static int mutex_pair(unsigned bucket)
{
	struct mutex_bucket *b = &table[bucket];
	int rejected;

	if (lock_bucket(b) != 0)
		return -1;
	rejected = ref_reserve(&b->state, bench_now(), BENCH_INPUT + BENCH_OUTPUT);
	pthread_mutex_unlock(&b->lock);
	if (rejected)
		return 1;

	if (lock_bucket(b) != 0)
		return -1;
	ref_release(&b->state, bench_now(), BENCH_INPUT + BENCH_OUTPUT, BENCH_USED);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void mutex_close(void)
{
}

static void mutex_teardown(void)
{
	munmap(table, table_size);
	table = NULL;
}

const struct bench_impl bench_mutex = {
	.name = "robust_mutex",
	.setup = mutex_setup,
	.open = mutex_open,
	.pair = mutex_pair,
	.close = mutex_close,
	.teardown = mutex_teardown,
};
