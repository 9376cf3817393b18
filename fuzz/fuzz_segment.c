/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for attaching to a hostile segment (include/arl.h) and
 * working on it: the listings arlctl prints, reserve, release, cancel, touch,
 * and a sweep (src/sweep.c).
 *
 * Every input becomes a segment file under a name unique to this process.
 * Byte 0 picks how:
 *   even  the rest of the input is the whole file;
 *   odd   a valid segment made at startup (small tables, two buckets, live
 *         and dead reservations) is patched. Byte 1 changes the file size,
 *         byte 2 picks the file mode, and the rest is a list of patches:
 *         offset (2 bytes, little-endian, taken modulo the file size),
 *         length (1 byte, 1 to 32), then that many bytes.
 *
 * arl_attach() must either fail with an error code and a message, or succeed.
 * After a success, nothing done on the handle may crash, hang or trip a
 * sanitizer.
 *
 * With ARL_FUZZ_WRITE_SEEDS=DIR in the environment, startup also writes seed
 * inputs into DIR: the valid segment whole, and patches of each header field.
 */
#include <sys/stat.h>

#include "sweep.h"

/* Small tables keep each file a few kilobytes, so runs are fast. */
#define FUZZ_BUCKETS 3
#define FUZZ_RESERVATIONS 6
#define FUZZ_PROCESSES 4

static char segment_name[64];
static uint8_t *template_bytes;
static size_t template_size;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_segment: %s\n", what);
	abort();
}

static struct arl_bucket make_bucket(struct arl *arl, const char *name, uint32_t nlimits)
{
	static const uint32_t units[ARL_MAX_LIMITS] = {ARL_UNIT_REQUESTS, ARL_UNIT_TOKENS,
						       ARL_UNIT_INPUT_TOKENS,
						       ARL_UNIT_OUTPUT_TOKENS};
	struct arl_bucket_config c;
	struct arl_bucket b;
	uint32_t i;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.nlimits = nlimits;
	for (i = 0; i < nlimits; i++) {
		c.limits[i].unit = units[i];
		c.limits[i].amount = 1000 * (i + 1);
		c.limits[i].window_ns = 60ull * 1000000000ull;
		c.limits[i].headroom_permille = 50 * i;
	}
	c.max_inflight = 3;
	if (arl_bucket_create(arl, &c, &b) != 0)
		fail("template: bucket creation failed");
	return b;
}

/*
 * Builds the valid segment that patches start from: two buckets, one live
 * chain reservation, one released and one canceled, under a test clock.
 * The copy is taken after detach, so the process entry looks like a dead
 * owner's and the sweep has something to reclaim.
 */
static void build_template(void)
{
	struct arl_request req = {10, 20, 7};
	struct arl_usage usage = {ARL_USAGE_TOTAL, 12, 0, 0, 0};
	struct arl_attach_options o;
	struct arl_reservation res;
	struct arl_bucket chain[2];
	struct arl *arl = NULL;
	struct stat st;
	char error[512] = "";
	int fd;

	snprintf(segment_name, sizeof(segment_name), "/arl-fuzz-segment-%d", (int)getpid());
	shm_unlink(segment_name);
	memset(&o, 0, sizeof(o));
	o.name = segment_name;
	o.flags = ARL_ATTACH_CREATE | ARL_ATTACH_TEST_CLOCK;
	o.bucket_capacity = FUZZ_BUCKETS;
	o.reservation_capacity = FUZZ_RESERVATIONS;
	o.process_capacity = FUZZ_PROCESSES;
	o.error = error;
	o.error_size = sizeof(error);
	if (arl_attach(&arl, &o) != 0) {
		fprintf(stderr, "fuzz_segment: cannot create %s: %s\n", segment_name, error);
		abort();
	}
	chain[0] = make_bucket(arl, "model", 4);
	chain[1] = make_bucket(arl, "account", 2);
	if (arl_reserve_chain(arl, chain, 2, &req, &res) != 0 || arl_release(arl, &res, &usage))
		fail("template: reserve and release failed");
	if (arl_reserve(arl, chain[0], &req, &res) != 0 || arl_cancel(arl, &res) != 0)
		fail("template: reserve and cancel failed");
	if (arl_reserve_chain(arl, chain, 2, &req, &res) != 0 || arl_touch(arl, &res, 3) != 0)
		fail("template: the live reservation failed");
	arl_detach(arl);

	fd = shm_open(segment_name, O_RDONLY, 0);
	if (fd < 0 || fstat(fd, &st) != 0)
		fail("template: cannot reopen the segment");
	template_size = (size_t)st.st_size;
	template_bytes = malloc(template_size);
	if (!template_bytes || pread(fd, template_bytes, template_size, 0) != (ssize_t)template_size)
		fail("template: cannot read the segment");
	close(fd);
	shm_unlink(segment_name);
}

static void write_seed(const char *dir, const char *name, const void *a, size_t alen,
		       const void *b, size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen))
		fail("cannot write a seed");
	fclose(f);
}

/* Writes one patch seed: all ones over a header field. */
static void write_field_seed(const char *dir, const char *field, size_t offset, size_t len)
{
	uint8_t seed[3 + 3 + 32];
	char name[96];

	seed[0] = 1;
	seed[1] = 0;
	seed[2] = 0;
	seed[3] = (uint8_t)(offset & 0xff);
	seed[4] = (uint8_t)(offset >> 8);
	seed[5] = (uint8_t)(len - 1);
	memset(seed + 6, 0xff, len);
	snprintf(name, sizeof(name), "patch-%s", field);
	write_seed(dir, name, seed, 6 + len, NULL, 0);
}

#define FIELD_SEED(dir, field)                                                                     \
	write_field_seed(dir, #field, offsetof(struct arl_shm_header, field),                    \
			 sizeof(((struct arl_shm_header *)0)->field))

static void write_seeds(const char *dir)
{
	static const uint8_t unpatched[3] = {1, 0, 0};
	static const uint8_t raw = 0;

	write_seed(dir, "raw-template", &raw, 1, template_bytes, template_size);
	write_seed(dir, "patch-none", unpatched, sizeof(unpatched), NULL, 0);
	FIELD_SEED(dir, magic);
	FIELD_SEED(dir, layout_version);
	FIELD_SEED(dir, ready);
	FIELD_SEED(dir, layout_signature);
	FIELD_SEED(dir, segment_size);
	FIELD_SEED(dir, flags);
	FIELD_SEED(dir, bucket_capacity);
	FIELD_SEED(dir, reservation_capacity);
	FIELD_SEED(dir, process_capacity);
	FIELD_SEED(dir, buckets_offset);
	FIELD_SEED(dir, reservations_offset);
	FIELD_SEED(dir, processes_offset);
	FIELD_SEED(dir, timens_offset_ns);
	FIELD_SEED(dir, test_clock_ns);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("ARL_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	build_template();
	if (seeds && *seeds)
		write_seeds(seeds);
	return 0;
}

/* Applies the patch list to a copy of the template. Returns the file's
 * bytes (malloc'd) and its size in *size. */
static uint8_t *patched_file(const uint8_t *data, size_t len, size_t *size, mode_t *mode)
{
	static const mode_t modes[8] = {0600, 0600, 0600, 0600, 0640, 0660, 0604, 0400};
	size_t file_size = template_size, i;
	uint8_t *file;

	if (len >= 2 && data[1] >= 224) {
		/* 224-239 shrink, 240-255 grow, by 64-byte steps. */
		size_t step = (size_t)(data[1] & 15) * 64 + 64;

		file_size = data[1] < 240 ? (step < file_size ? file_size - step : 0)
					  : file_size + step;
	}
	*mode = len >= 3 ? modes[data[2] % 8] : 0600;
	file = calloc(1, file_size ? file_size : 1);
	if (!file)
		fail("out of memory");
	memcpy(file, template_bytes, file_size < template_size ? file_size : template_size);
	for (i = 3; file_size && i + 3 <= len;) {
		size_t offset = ((size_t)data[i] | (size_t)data[i + 1] << 8) % file_size;
		size_t n = (size_t)(data[i + 2] % 32) + 1;

		i += 3;
		if (n > len - i)
			n = len - i;
		if (n > file_size - offset)
			n = file_size - offset;
		memcpy(file + offset, data + i, n);
		i += n;
	}
	*size = file_size;
	return file;
}

/* Writes the segment file fresh, so no earlier run's state remains. */
static void write_segment(const uint8_t *bytes, size_t size, mode_t mode)
{
	int fd;

	shm_unlink(segment_name);
	fd = shm_open(segment_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		fail("cannot create the segment file");
	if (size && write(fd, bytes, size) != (ssize_t)size)
		fail("cannot write the segment file");
	if (fchmod(fd, mode) != 0)
		fail("cannot set the segment file's mode");
	close(fd);
}

static int attach(uint32_t flags, struct arl **arl)
{
	struct arl_attach_options o;
	char error[512] = "";
	int rc;

	memset(&o, 0, sizeof(o));
	o.name = segment_name;
	o.flags = flags;
	o.error = error;
	o.error_size = sizeof(error);
	rc = arl_attach(arl, &o);
	if (rc == 0 && !*arl)
		fail("attach returned 0 and no handle");
	if (rc != 0 && *arl)
		fail("attach failed and returned a handle");
	/* arl codes and negated errno values are all in -4095..-1. */
	if (rc > 0 || rc < -4095)
		fail("attach returned a code outside the documented range");
	if (rc != 0 && error[0] == '\0')
		fail("attach failed without a message");
	return rc;
}

/* Reads everything arlctl status, buckets, reservations and processes print. */
static void list_everything(struct arl *arl)
{
	const struct arl_shm_reservation *slots = arl_impl_reservations(arl);
	const struct arl_shm_process *procs = arl_impl_processes(arl);
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint64_t now = arl_now(arl), sum = 0;
	uint32_t i;

	sum += arl_sweep_count(arl);
	for (i = 0; i < arl->header->bucket_capacity; i++) {
		struct arl_bucket handle = {i, arl_load_relaxed(&buckets[i].gen)};
		struct arl_bucket_stats s;

		if (arl_bucket_stats(arl, handle, &s) == 0)
			sum += s.granted + s.limits[0].available + strlen(s.name);
	}
	for (i = 0; i < arl->header->reservation_capacity; i++) {
		uint64_t word = arl_load_acquire(&slots[i].word);
		uint32_t owner = arl_impl_res_owner(word);
		const struct arl_shm_bucket *b;

		if (arl_impl_res_state(word) == ARL_RES_FREE)
			continue;
		if (owner != 0 && owner <= arl->header->process_capacity)
			sum += (uint64_t)arl_load_relaxed(&procs[owner - 1].pid);
		b = arl_impl_bucket(arl, arl_load_relaxed(&slots[i].bucket_index[0]),
				    arl_load_relaxed(&slots[i].bucket_gen[0]));
		if (b)
			sum += strnlen(b->name, sizeof(b->name));
		sum += arl_impl_sat_sub(now, arl_load_relaxed(&slots[i].created_ns));
	}
	for (i = 0; i < arl->header->process_capacity; i++)
		if (arl_load_acquire(&procs[i].state) == ARL_PROCESS_LIVE &&
		    arl_impl_byte_locked(arl->fd, ARL_PROCESS_LOCK_BASE + i))
			sum++;
	/* Keep the reads from being optimized away. */
	__asm__ volatile("" : : "r"(sum));
}

/* Looks up the first live bucket, by name as a client would. */
static bool first_bucket(struct arl *arl, uint32_t from, struct arl_bucket *out)
{
	const struct arl_shm_bucket *buckets = arl_impl_buckets(arl);
	uint32_t i;

	for (i = from; i < arl->header->bucket_capacity; i++) {
		char name[ARL_NAME_MAX + 1];

		if (arl_load_acquire(&buckets[i].state) != ARL_BUCKET_LIVE)
			continue;
		memcpy(name, buckets[i].name, ARL_NAME_MAX);
		name[ARL_NAME_MAX] = '\0';
		if (arl_bucket_find(arl, name, out) == 0)
			return true;
	}
	return false;
}

static void use_buckets(struct arl *arl)
{
	struct arl_request req = {5, 15, 9};
	struct arl_usage usage = {ARL_USAGE_TOTAL | ARL_USAGE_SPLIT, 30, 10, 20, 0};
	struct arl_reservation res;
	struct arl_bucket chain[2];

	if (!first_bucket(arl, 0, &chain[0]))
		return;
	if (arl_reserve(arl, chain[0], &req, &res) == 0) {
		arl_touch(arl, &res, 1);
		if (arl_release(arl, &res, &usage) != 0)
			fail("release of a fresh reservation failed");
	}
	if (!first_bucket(arl, chain[0].index + 1, &chain[1]))
		return;
	if (arl_reserve_chain(arl, chain, 2, &req, &res) == 0 && arl_cancel(arl, &res) != 0)
		fail("cancel of a fresh reservation failed");
	if (arl_reserve_chain(arl, chain, 2, &req, &res) == 0 && arl_release(arl, &res, NULL) != 0)
		fail("release with unknown usage failed");
}

static void ignore_reclaim(void *context, const struct arl_reclaim_event *event)
{
	(void)context;
	(void)event;
}

static void ignore_anomaly(void *context, uint32_t slot, const char *what)
{
	(void)context;
	(void)slot;
	(void)what;
}

static void sweep(struct arl *arl)
{
	struct arl_sweep_options options;
	struct arl_sweep_result result;

	memset(&options, 0, sizeof(options));
	options.reservation_ttl_ns = 1;
	options.on_reclaim = ignore_reclaim;
	options.on_anomaly = ignore_anomaly;
	if (arl_sweep(arl, &options, &result) == 0)
		arl_sweep_publish(arl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arl *arl = NULL;
	uint8_t *file = NULL;
	size_t file_size;
	mode_t mode = 0600;

	if (size == 0)
		return 0;
	if (data[0] & 1) {
		file = patched_file(data, size, &file_size, &mode);
		write_segment(file, file_size, mode);
		free(file);
	} else {
		write_segment(data + 1, size - 1, mode);
	}

	/* arlctl's view: read-only. */
	if (attach(ARL_ATTACH_READ_ONLY, &arl) == 0) {
		list_everything(arl);
		arl_detach(arl);
	}
	/* A client's and the supervisor's view. */
	if (attach(0, &arl) == 0) {
		list_everything(arl);
		use_buckets(arl);
		sweep(arl);
		list_everything(arl);
		arl_detach(arl);
	}
	shm_unlink(segment_name);
	return 0;
}
