/* SPDX-License-Identifier: MIT */
/*
 * impl_floor.c - the floor: per pair, the atomic read-modify-writes on
 * shared words that a two-limit reserve and release cannot do without, and
 * the two clock reads, with no logic. Each word has its own cache line;
 * processes on one bucket share the words, as they share a bucket.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "compare.h"

/*
 * Reserve: claim a slot, the requests TAT, the tokens TAT, the in-flight
 * count. Release: the slot, the tokens TAT (refund), the in-flight count.
 */
#define FLOOR_RESERVE_RMWS 4
#define FLOOR_RELEASE_RMWS 3
#define FLOOR_WORDS (FLOOR_RESERVE_RMWS + FLOOR_RELEASE_RMWS)
#define WORDS_PER_LINE 8

static uint64_t *words;
static size_t words_size;
static uint64_t sink;

static int floor_setup(unsigned nbuckets, char *why, size_t why_size)
{
	words_size = (size_t)nbuckets * FLOOR_WORDS * WORDS_PER_LINE * sizeof(uint64_t);
	words = bench_shared_alloc(words_size);
	if (!words) {
		snprintf(why, why_size, "mmap of %zu bytes failed", words_size);
		return -1;
	}
	return 0;
}

static int floor_open(void)
{
	return 0;
}

static int floor_pair(unsigned bucket)
{
	uint64_t *w = words + (size_t)bucket * FLOOR_WORDS * WORDS_PER_LINE;
	uint64_t t = bench_now();
	int k;

	for (k = 0; k < FLOOR_RESERVE_RMWS; k++)
		__atomic_fetch_add(&w[k * WORDS_PER_LINE], t, __ATOMIC_RELAXED);
	t = bench_now();
	for (; k < FLOOR_WORDS; k++)
		__atomic_fetch_add(&w[k * WORDS_PER_LINE], t, __ATOMIC_RELAXED);
	/* Keeps the clock reads from being optimized out. */
	sink += t;
	return 0;
}

static void floor_close(void)
{
}

static void floor_teardown(void)
{
	munmap(words, words_size);
	words = NULL;
}

const struct bench_impl bench_floor = {
	.name = "floor",
	.setup = floor_setup,
	.open = floor_open,
	.pair = floor_pair,
	.close = floor_close,
	.teardown = floor_teardown,
};
