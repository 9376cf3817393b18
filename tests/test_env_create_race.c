/* SPDX-License-Identifier: MIT */
/*
 * Fifty processes attaching with ARL_ATTACH_CREATE, and arld, all started at
 * once on a name that does not exist yet. Exactly one segment must come out:
 * every process maps the object the name leads to at the end, and no
 * process sees a header that is not complete (attach validates every field,
 * and each process checks the identity fields again). arld creates its
 * bucket and never reports the name replaced.
 *
 * The processes wait on a barrier in shared memory and start together. The
 * race runs ARL_RACE_ROUNDS times (20 by default), each on a fresh name.
 */
#include <sys/mman.h>

#include "test_env.h"

#define CREATORS 50

struct result {
	int32_t rc;
	uint32_t checked;
	dev_t dev;
	ino_t ino;
	char error[256];
};

struct race {
	uint32_t ready;
	uint32_t go;
	struct result results[CREATORS];
};

static struct race *race;

/* Waits until the parent releases every process at once. */
static void wait_for_start(void)
{
	__atomic_add_fetch(&race->ready, 1, __ATOMIC_ACQ_REL);
	while (!__atomic_load_n(&race->go, __ATOMIC_ACQUIRE))
		arl_impl_futex(&race->go, FUTEX_WAIT, 0, NULL);
}

/* Checks what a half-built header would lack. Returns true when whole. */
static bool header_complete(const struct arl *arl)
{
	const struct arl_shm_header *h = arl->header;

	return h->magic == ARL_MAGIC && arl_load_acquire(&h->ready) == ARL_READY &&
	       h->layout_version == ARL_LAYOUT_VERSION &&
	       h->layout_signature == arl_impl_layout_signature() && h->segment_size == arl->size &&
	       h->bucket_capacity == ARL_DEFAULT_BUCKETS &&
	       h->reservation_capacity == ARL_DEFAULT_RESERVATIONS &&
	       h->process_capacity == ARL_DEFAULT_PROCESSES && h->created_ns != 0;
}

static void creator_main(const char *name, int index)
{
	struct result *r = &race->results[index];
	struct arl_attach_options o;
	struct stat st;
	struct arl *arl = NULL;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = ARL_ATTACH_CREATE;
	o.error = r->error;
	o.error_size = sizeof(r->error);
	wait_for_start();
	r->rc = arl_attach(&arl, &o);
	if (r->rc != 0)
		_exit(0);
	r->checked = header_complete(arl);
	if (fstat(arl->fd, &st) == 0) {
		r->dev = st.st_dev;
		r->ino = st.st_ino;
	}
	arl_detach(arl);
	_exit(0);
}

static void start_together(uint32_t processes)
{
	uint64_t deadline = arl_impl_monotonic_ns() + 30 * NS_PER_S;
	struct timespec pause = {0, 1000000};

	while (__atomic_load_n(&race->ready, __ATOMIC_ACQUIRE) < processes) {
		ck_assert_msg(arl_impl_monotonic_ns() < deadline, "the processes never got ready");
		nanosleep(&pause, NULL);
	}
	__atomic_store_n(&race->go, 1, __ATOMIC_RELEASE);
	arl_impl_futex(&race->go, FUTEX_WAKE, INT_MAX, NULL);
}

static void run_round(unsigned round)
{
	char name[64], tag[32], config[128], log[128], path[128];
	pid_t pids[CREATORS], arld;
	struct arl *arl;
	struct stat st;
	int i, status;

	snprintf(tag, sizeof(tag), "race%u", round);
	test_segment_name(name, sizeof(name), tag);
	env_temp_path(config, sizeof(config), tag, "ini");
	env_temp_path(log, sizeof(log), tag, "log");
	shm_unlink(name);
	unlink(log);
	env_write_config(config, name, NULL);
	memset(race, 0, sizeof(*race));

	for (i = 0; i < CREATORS; i++) {
		pids[i] = fork();
		ck_assert(pids[i] >= 0);
		if (pids[i] == 0)
			creator_main(name, i);
	}
	/* arld needs a few milliseconds to exec: start it first, then let the
	 * others go, so that it meets them at the name. */
	arld = env_start_arld(config, log, false);
	start_together(CREATORS);
	for (i = 0; i < CREATORS; i++) {
		status = env_wait(pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "round %u: process %d ended with status %#x", round, i, status);
	}

	/* arld attached (a failure would have ended it) and made its bucket. */
	arl = env_attach_when_ready(name, "work");
	env_shm_path(path, sizeof(path), name);
	ck_assert_int_eq(stat(path, &st), 0);
	for (i = 0; i < CREATORS; i++) {
		const struct result *r = &race->results[i];

		ck_assert_msg(r->rc == 0, "round %u: process %d: attach returned %s: %s", round, i,
			      arl_strerror(r->rc), r->error);
		ck_assert_msg(r->checked, "round %u: process %d saw a header not complete", round,
			      i);
		ck_assert_msg(r->dev == st.st_dev && r->ino == st.st_ino,
			      "round %u: process %d mapped inode %lu, but %s is inode %lu: two "
			      "segments",
			      round, i, (unsigned long)r->ino, path, (unsigned long)st.st_ino);
	}
	ck_assert_int_eq(arl_wait_sweep(arl, arl_sweep_count(arl) + 1, 30 * NS_PER_S), 0);
	ck_assert_msg(env_count_lines(log, "error:") == 0, "round %u: arld logged errors:\n%s",
		      round, env_read(log));
	arl_detach(arl);
	env_stop_arld(arld, log);
	shm_unlink(name);
	unlink(config);
	unlink(log);
}

START_TEST(fifty_creators_and_arld_make_one_segment)
{
	const char *text = getenv("ARL_RACE_ROUNDS");
	unsigned rounds = text && *text ? (unsigned)strtoul(text, NULL, 10) : 20, round;

	race = mmap(NULL, sizeof(*race), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		    0);
	ck_assert(race != MAP_FAILED);
	for (round = 0; round < rounds; round++)
		run_round(round);
	munmap(race, sizeof(*race));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("env_create_race");
	TCase *tc = tcase_create("create_race");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, fifty_creators_and_arld_make_one_segment);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
