/* SPDX-License-Identifier: MIT */
/*
 * The segment's life cycle: a name left by a creator that died before ready
 * is replaced by the next creator and never by a plain client; a live
 * creator's object is never touched; short-lived processes do not fill the
 * process table; a prefork pool's children register as owners of their own.
 */
#include <signal.h>

#include "sweep.h"
#include "testutil.h"

static struct arl_attach_options options(const char *name, uint32_t flags, char *error,
					 size_t size)
{
	struct arl_attach_options o;

	memset(&o, 0, sizeof(o));
	o.name = name;
	o.flags = flags;
	o.error = error;
	o.error_size = size;
	return o;
}

/* Leaves a name as a creator killed right after shm_open would: an empty
 * object, or one sized but never marked ready, with no lock held. */
static void leave_dead_creator(const char *name, off_t size)
{
	int fd;

	shm_unlink(name);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
}

static void check_recovery(const char *tag, off_t size)
{
	char name[64], error[512] = "";
	struct arl_attach_options o;
	struct arl *arl = NULL;

	test_segment_name(name, sizeof(name), tag);
	leave_dead_creator(name, size);

	/* A client without the create flag reports it and changes nothing. */
	o = options(name, 0, error, sizeof(error));
	ck_assert_int_eq(arl_attach(&arl, &o), ARL_ENOTREADY);
	ck_assert_msg(strstr(error, name) != NULL, "message does not name the segment: %s",
		      error);

	/* The next creator replaces it with a working segment. */
	o = options(name, ARL_ATTACH_CREATE, error, sizeof(error));
	ck_assert_msg(arl_attach(&arl, &o) == 0, "recovery failed: %s", error);
	ck_assert_uint_eq(arl->header->magic, ARL_MAGIC);
	test_bucket(arl, "after", 10, 100, 0, 0);
	arl_detach(arl);
	shm_unlink(name);
}

START_TEST(creator_dead_before_sizing_replaced)
{
	check_recovery("dead-empty", 0);
}
END_TEST

START_TEST(creator_dead_before_ready_replaced)
{
	check_recovery("dead-sized", 1 << 20);
}
END_TEST

START_TEST(live_creator_never_touched)
{
	char name[64], error[512] = "";
	struct arl_attach_options o;
	struct stat before, after;
	struct arl *arl = NULL;
	int ready[2], status;
	pid_t creator;
	char byte;

	test_segment_name(name, sizeof(name), "live-creator");
	shm_unlink(name);
	ck_assert_int_eq(pipe(ready), 0);
	creator = fork();
	ck_assert(creator >= 0);
	if (creator == 0) {
		/* A creator that holds its lock and never finishes. */
		int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);

		if (fd < 0 || arl_impl_lock_byte(fd, F_OFD_SETLK, F_WRLCK, 0) != 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(ready[0], &byte, 1), 1);
	{
		char path[96];

		snprintf(path, sizeof(path), "/dev/shm%s", name);
		ck_assert_int_eq(stat(path, &before), 0);
		o = options(name, ARL_ATTACH_CREATE, error, sizeof(error));
		ck_assert_int_eq(arl_attach(&arl, &o), ARL_ENOTREADY);
		ck_assert_int_eq(stat(path, &after), 0);
		ck_assert_uint_eq(after.st_ino, before.st_ino);
	}

	/* Once the creator is dead, the next creator recovers the name. */
	kill(creator, SIGKILL);
	ck_assert_int_eq(waitpid(creator, &status, 0), creator);
	ck_assert_msg(arl_attach(&arl, &o) == 0, "recovery failed: %s", error);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/* Forks a process that attaches, reserves and releases, then exits without
 * detaching. Returns its exit status. */
static int run_short_lived(const char *name)
{
	pid_t pid = fork();
	int status;

	ck_assert(pid >= 0);
	if (pid == 0) {
		struct arl *arl = test_attach(name);
		struct arl_reservation res;
		struct arl_bucket b;

		if (arl_bucket_find(arl, "short", &b) != 0)
			_exit(2);
		if (test_reserve(arl, b, 1, &res) != 0)
			_exit(3);
		_exit(arl_release(arl, &res, NULL) == 0 ? 0 : 4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

START_TEST(short_lived_processes_reuse_entries)
{
	struct arl_attach_options o;
	char name[64], error[256] = "";
	struct arl *arl = NULL;
	int i;

	test_segment_name(name, sizeof(name), "short");
	shm_unlink(name);
	o = options(name, ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK, error, sizeof(error));
	o.process_capacity = 4;
	ck_assert_int_eq(arl_attach(&arl, &o), 0);
	test_bucket(arl, "short", 1000, 1000, 0, 0);

	/* Twenty processes in turn, no supervisor: each takes over the entry
	 * of a dead one that has no reservation. */
	for (i = 0; i < 20; i++)
		ck_assert_msg(run_short_lived(name) == 0, "process %d could not reserve", i);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(full_process_table_is_reported)
{
	struct arl_attach_options o;
	struct arl_reservation res;
	char name[64], error[256] = "";
	struct arl *arl = NULL;
	struct arl_bucket b;
	pid_t holders[2];
	int i, status;

	test_segment_name(name, sizeof(name), "proc-full");
	shm_unlink(name);
	o = options(name, ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK, error, sizeof(error));
	o.process_capacity = 2;
	ck_assert_int_eq(arl_attach(&arl, &o), 0);
	b = test_bucket(arl, "full", 1000, 1000, 0, 0);

	for (i = 0; i < 2; i++) {
		int ready[2];
		char byte;

		ck_assert_int_eq(pipe(ready), 0);
		holders[i] = fork();
		ck_assert(holders[i] >= 0);
		if (holders[i] == 0) {
			struct arl *own = test_attach(name);

			if (test_reserve(own, b, 1, &res) != 0 || write(ready[1], "r", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		ck_assert_int_eq(read(ready[0], &byte, 1), 1);
	}
	ck_assert_int_eq(test_reserve(arl, b, 1, &res), ARL_ETABLEFULL);
	for (i = 0; i < 2; i++) {
		kill(holders[i], SIGKILL);
		waitpid(holders[i], &status, 0);
	}
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(prefork_children_own_their_reservations)
{
	struct arl_sweep_options sweep = {0, NULL, NULL, NULL};
	struct arl_sweep_result result;
	struct arl_reservation mine, theirs;
	struct arl_usage usage = test_usage(5);
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	uint32_t parent_owner;
	pid_t workers[4];
	int i, status, report[2];

	test_segment_name(name, sizeof(name), "prefork");
	arl = test_create(name, 64);
	b = test_bucket(arl, "pool", 1000, 100000, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &mine), 0);
	parent_owner = arl_impl_res_owner(arl_impl_reservations(arl)[mine.slot].word);
	ck_assert_int_eq(pipe(report), 0);

	/* Workers inherit the parent's handle, as a prefork pool does. */
	for (i = 0; i < 4; i++) {
		workers[i] = fork();
		ck_assert(workers[i] >= 0);
		if (workers[i] == 0) {
			struct arl_reservation res;
			uint32_t owner;

			if (test_reserve(arl, b, 10, &res) != 0)
				_exit(1);
			owner = arl_impl_res_owner(arl_impl_reservations(arl)[res.slot].word);
			if (owner == parent_owner)
				_exit(2);
			if (i == 3) { /* the last worker dies holding it */
				if (write(report[1], &res, sizeof(res)) != sizeof(res))
					_exit(3);
				pause();
			}
			_exit(arl_release(arl, &res, &usage) == 0 ? 0 : 4);
		}
	}
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(waitpid(workers[i], &status, 0), workers[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "worker %d status %#x", i, status);
	}
	ck_assert_int_eq(read(report[0], &theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
	kill(workers[3], SIGKILL);
	ck_assert_int_eq(waitpid(workers[3], &status, 0), workers[3]);

	/* The sweep reclaims the dead worker's reservation and leaves the
	 * parent's, whose owner is still alive. */
	ck_assert_int_eq(arl_sweep(arl, &sweep, &result), 0);
	ck_assert_uint_eq(result.reclaimed_dead, 1);
	ck_assert_int_eq(arl_release(arl, &theirs, NULL), ARL_ESTALE);
	ck_assert_int_eq(arl_release(arl, &mine, &usage), 0);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

/*
 * A dead owner's entry taken over by a new process in the middle of a sweep:
 * the sweep reclaims only the dead owner's reservation, never the new
 * process's, and leaves its entry's count intact. The on_reclaim callback
 * plays a client acting while the sweep runs.
 */
static const char *reuse_segment;
static struct arl_bucket reuse_bucket;
static int reuse_pipe[2], reuse_go[2];
static pid_t reuse_child;

static void reuse_client(void)
{
	struct arl *own = test_attach(reuse_segment);
	struct arl_request req = {0, 0, 7};
	struct arl_reservation res;
	char byte;

	if (arl_impl_ensure_registered(own) != 0)
		_exit(2);
	own->next_slot = 5; /* a slot the sweep has not reached yet */
	if (arl_reserve(own, reuse_bucket, &req, &res) != 0)
		_exit(3);
	if (write(reuse_pipe[1], "r", 1) != 1 || read(reuse_go[0], &byte, 1) != 1)
		_exit(4);
	if (arl_release(own, &res, NULL) != 0)
		_exit(5);
	_exit(arl_impl_entry_references(own, own->process_index) == 0 ? 0 : 6);
}

static void start_client_on_reclaim(void *context, const struct arl_reclaim_event *event)
{
	char byte;

	(void)context;
	(void)event;
	if (reuse_child)
		return;
	reuse_child = fork();
	if (reuse_child == 0)
		reuse_client();
	ck_assert_int_eq(read(reuse_pipe[0], &byte, 1), 1);
}

START_TEST(entry_reused_mid_sweep_is_live)
{
	struct arl_sweep_options sweep = {0, start_client_on_reclaim, NULL, NULL};
	struct arl_attach_options o;
	struct arl_sweep_result result;
	char name[64], error[256] = "";
	struct arl *arl = NULL;
	int status;
	pid_t dead;

	test_segment_name(name, sizeof(name), "reuse");
	reuse_segment = name;
	shm_unlink(name);
	o = options(name, ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK, error, sizeof(error));
	o.reservation_capacity = 8;
	o.process_capacity = 1; /* the new process must take the dead one's entry */
	ck_assert_int_eq(arl_attach(&arl, &o), 0);
	reuse_bucket = test_bucket(arl, "reuse", 1000, 1000, 0, 0);
	ck_assert_int_eq(pipe(reuse_pipe), 0);
	ck_assert_int_eq(pipe(reuse_go), 0);

	/* A process that dies holding a reservation in slot 1. */
	dead = fork();
	ck_assert(dead >= 0);
	if (dead == 0) {
		struct arl *own = test_attach(name);
		struct arl_request req = {0, 0, 9};
		struct arl_reservation res;

		if (arl_impl_ensure_registered(own) != 0)
			_exit(2);
		own->next_slot = 1;
		_exit(arl_reserve(own, reuse_bucket, &req, &res) == 0 ? 0 : 3);
	}
	ck_assert_int_eq(waitpid(dead, &status, 0), dead);
	ck_assert_int_eq(WEXITSTATUS(status), 0);

	ck_assert_int_eq(arl_sweep(arl, &sweep, &result), 0);
	ck_assert_uint_eq(result.reclaimed_dead, 1);
	ck_assert_uint_eq(result.processes_cleared, 0);
	ck_assert_int_eq(write(reuse_go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(reuse_child, &status, 0), reuse_child);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the new process lost its reservation or its count (status %#x)", status);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

START_TEST(interrupted_reclaim_is_finished)
{
	struct arl_sweep_options sweep = {1, NULL, NULL, NULL};
	struct arl_sweep_result result;
	struct arl_reservation res;
	struct arl_shm_reservation *slot;
	char name[64];
	struct arl *arl;
	struct arl_bucket b;
	uint64_t word;

	test_segment_name(name, sizeof(name), "resume");
	arl = test_create(name, 8);
	b = test_bucket(arl, "resume", 1000, 1000, 0, 0);
	ck_assert_int_eq(test_reserve(arl, b, 10, &res), 0);

	/* A sweeper stopped after taking the slot of a live owner idle past
	 * the TTL: the slot is RECLAIMING and its owner still lives. */
	slot = &arl_impl_reservations(arl)[res.slot];
	word = slot->word;
	slot->word = arl_impl_res_word(arl_impl_res_gen(word), ARL_RES_RECLAIMING,
				       arl_impl_res_owner(word));
	ck_assert_int_eq(arl_sweep(arl, &sweep, &result), 0);
	ck_assert_uint_eq(result.reclaimed_idle, 1);
	ck_assert_uint_eq(arl_impl_res_state(slot->word), ARL_RES_FREE);
	ck_assert_uint_eq(test_stats(arl, b).inflight, 0);
	arl_detach(arl);
	shm_unlink(name);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("segment");
	TCase *tc = tcase_create("segment");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, creator_dead_before_sizing_replaced);
	tcase_add_test(tc, creator_dead_before_ready_replaced);
	tcase_add_test(tc, live_creator_never_touched);
	tcase_add_test(tc, short_lived_processes_reuse_entries);
	tcase_add_test(tc, full_process_table_is_reported);
	tcase_add_test(tc, prefork_children_own_their_reservations);
	tcase_add_test(tc, entry_reused_mid_sweep_is_live);
	tcase_add_test(tc, interrupted_reclaim_is_finished);
	suite_add_tcase(suite, tc);
	return test_run(suite);
}
