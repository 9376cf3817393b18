/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <arl/headers.h>

#include <grp.h>
#include <ini.h>

/* State while inih walks a file. */
struct load_state {
	struct arld_config *config;
	bool buckets_declared;
	char *error;
	size_t error_size;
	const char *path;
};

static const struct {
	const char *suffix;
	uint64_t ns;
} windows[] = {
	{"second", 1000000000ull},
	{"minute", 60ull * 1000000000ull},
	{"hour", 3600ull * 1000000000ull},
	{"day", 86400ull * 1000000000ull},
};

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t value = 0;
	const char *p = text;

	if (*p == '\0')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t digit = (uint64_t)(*p - '0');

		if (value > (max - digit) / 10)
			return -1;
		value = value * 10 + digit;
	}
	if (*p != '\0')
		return -1;
	*out = value;
	return 0;
}

int arld_parse_duration(const char *text, uint64_t *ns)
{
	static const struct {
		const char *suffix;
		uint64_t ns;
	} scales[] = {{"ms", 1000000ull}, {"s", 1000000000ull}, {"m", 60000000000ull},
		      {"h", 3600000000000ull}, {"", 1000000000ull}};
	char digits[32];
	size_t len = strspn(text, "0123456789");
	uint64_t value;
	size_t i;

	if (len == 0 || len >= sizeof(digits))
		return -1;
	memcpy(digits, text, len);
	digits[len] = '\0';
	if (parse_u64(digits, UINT64_MAX, &value) != 0)
		return -1;
	for (i = 0; i < sizeof(scales) / sizeof(scales[0]); i++) {
		if (strcmp(text + len, scales[i].suffix) != 0)
			continue;
		if (value > UINT64_MAX / scales[i].ns)
			return -1;
		*ns = value * scales[i].ns;
		return 0;
	}
	return -1;
}

void arld_config_defaults(struct arld_config *config)
{
	struct arld_bucket_spec *spec;

	memset(config, 0, sizeof(*config));
	snprintf(config->segment, sizeof(config->segment), "%s", ARL_DEFAULT_SHM);
	config->bucket_capacity = ARL_DEFAULT_BUCKETS;
	config->reservation_capacity = ARL_DEFAULT_RESERVATIONS;
	config->process_capacity = ARL_DEFAULT_PROCESSES;
	config->mode = 0600;
	config->sweep_interval_ns = 1000000000ull;
	config->reservation_ttl_ns = 300ull * 1000000000ull;

	spec = calloc(1, sizeof(*spec));
	if (!spec)
		return;
	snprintf(spec->name, sizeof(spec->name), "default");
	spec->config.name = spec->name;
	spec->config.nlimits = 2;
	spec->config.limits[0] = (struct arl_limit_config){ARL_UNIT_REQUESTS, 500, 60000000000ull, 0, 0};
	spec->config.limits[1] =
		(struct arl_limit_config){ARL_UNIT_TOKENS, 30000, 60000000000ull, 0, 0};
	spec->config.max_inflight = 64;
	config->buckets = spec;
	config->nbuckets = 1;
}

static int fail(struct load_state *st, const char *section, const char *key, const char *value,
		const char *expected)
{
	snprintf(st->error, st->error_size, "[%s] %s = %s: invalid value; expected %s", section,
		 key, value, expected);
	return 0;
}

static int set_capacity(struct load_state *st, const char *key, const char *value,
			uint32_t *field, uint64_t max)
{
	uint64_t n;

	if (parse_u64(value, max, &n) != 0 || n == 0)
		return fail(st, "arld", key, value, "a positive whole number up to the table limit");
	*field = (uint32_t)n;
	return 1;
}

static int set_duration(struct load_state *st, const char *key, const char *value,
			uint64_t *field, bool zero_ok)
{
	uint64_t ns;

	if (arld_parse_duration(value, &ns) != 0 || (!zero_ok && ns == 0))
		return fail(st, "arld", key, value, "a duration such as 500ms, 1s, 5m or 1h");
	*field = ns;
	return 1;
}

static int arld_key(struct load_state *st, const char *key, const char *value)
{
	struct arld_config *c = st->config;

	if (strcmp(key, "segment") == 0) {
		if (value[0] != '/' || strlen(value) > ARL_SHM_NAME_MAX || strchr(value + 1, '/'))
			return fail(st, "arld", key, value, "a name like /arl: one leading '/'");
		snprintf(c->segment, sizeof(c->segment), "%s", value);
		return 1;
	}
	if (strcmp(key, "buckets") == 0)
		return set_capacity(st, key, value, &c->bucket_capacity, ARL_MAX_TABLE);
	if (strcmp(key, "reservations") == 0)
		return set_capacity(st, key, value, &c->reservation_capacity, ARL_MAX_TABLE);
	if (strcmp(key, "processes") == 0)
		return set_capacity(st, key, value, &c->process_capacity, (1u << 24) - 1);
	if (strcmp(key, "sweep_interval") == 0)
		return set_duration(st, key, value, &c->sweep_interval_ns, false);
	if (strcmp(key, "reservation_ttl") == 0)
		return set_duration(st, key, value, &c->reservation_ttl_ns, true);
	if (strcmp(key, "mode") == 0) {
		if (strcmp(value, "0600") && strcmp(value, "0640") && strcmp(value, "0660"))
			return fail(st, "arld", key, value, "0600, 0640 or 0660");
		c->mode = (mode_t)strtoul(value, NULL, 8);
		return 1;
	}
	if (strcmp(key, "group") == 0) {
		struct group *gr = getgrnam(value);
		unsigned id;

		if (gr)
			c->group = gr->gr_gid;
		else if (arl_impl_parse_id(value, &id) == 0)
			c->group = (gid_t)id;
		else
			return fail(st, "arld", key, value, "a group name or gid that exists");
		c->has_group = true;
		return 1;
	}
	snprintf(st->error, st->error_size,
		 "[arld] %s: unknown key; use segment, buckets, reservations, processes, mode, "
		 "group, sweep_interval or reservation_ttl",
		 key);
	return 0;
}

static struct arld_bucket_spec *bucket_spec(struct load_state *st, const char *name)
{
	struct arld_config *c = st->config;
	struct arld_bucket_spec *grown;
	uint32_t i;

	if (!st->buckets_declared) {
		/* The first declared bucket replaces the built-in default. */
		free(c->buckets);
		c->buckets = NULL;
		c->nbuckets = 0;
		st->buckets_declared = true;
	}
	for (i = 0; i < c->nbuckets; i++)
		if (strcmp(c->buckets[i].name, name) == 0)
			return &c->buckets[i];
	grown = realloc(c->buckets, (c->nbuckets + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	c->buckets = grown;
	memset(&grown[c->nbuckets], 0, sizeof(*grown));
	snprintf(grown[c->nbuckets].name, sizeof(grown->name), "%s", name);
	return &grown[c->nbuckets++];
}

/* Parses a percentage with at most one decimal ("5%", "2.5%") into per
 * mille, below 100%. Returns 0 or -1. */
static int parse_permille(const char *text, uint32_t *out)
{
	uint64_t whole = 0, tenths = 0;
	char digits[8];
	size_t len = strspn(text, "0123456789");
	const char *p = text + len;

	if (len == 0 || len > 2)
		return -1;
	memcpy(digits, text, len);
	digits[len] = '\0';
	if (parse_u64(digits, 99, &whole) != 0)
		return -1;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -1;
		tenths = (uint64_t)(p[1] - '0');
		p += 2;
	}
	if (strcmp(p, "%") != 0)
		return -1;
	*out = (uint32_t)(whole * 10 + tenths);
	return 0;
}

/* Parses "<unit>_per_<window>", with an optional "_burst" or "_headroom". */
static int limit_key(struct load_state *st, const char *section, struct arl_bucket_config *bc,
		     const char *key, const char *value)
{
	char unit_name[32], window_name[32];
	bool is_burst = false, is_headroom = false;
	uint32_t permille = 0;
	uint64_t n = 0;
	uint32_t u;
	size_t w;
	uint32_t i;
	int matched;

	matched = sscanf(key, "%31[a-z_]", unit_name);
	if (matched != 1 || !strstr(key, "_per_") || !strstr(unit_name, "_per_"))
		return -1;
	*strstr(unit_name, "_per_") = '\0';
	snprintf(window_name, sizeof(window_name), "%s", strstr(key, "_per_") + 5);
	if (strlen(window_name) > 6 && strcmp(window_name + strlen(window_name) - 6, "_burst") == 0) {
		window_name[strlen(window_name) - 6] = '\0';
		is_burst = true;
	} else if (strlen(window_name) > 9 &&
		   strcmp(window_name + strlen(window_name) - 9, "_headroom") == 0) {
		window_name[strlen(window_name) - 9] = '\0';
		is_headroom = true;
	}
	for (u = ARL_UNIT_REQUESTS;
	     u <= ARL_UNIT_OUTPUT_TOKENS && strcmp(arl_unit_name(u), unit_name) != 0; u++)
		;
	for (w = 0; w < 4 && strcmp(windows[w].suffix, window_name) != 0; w++)
		;
	if (u > ARL_UNIT_OUTPUT_TOKENS || w == 4)
		return -1;
	if (is_headroom) {
		if (parse_permille(value, &permille) != 0)
			return fail(st, section, key, value,
				    "a percentage below 100 with at most one decimal, like 5% or 2.5%");
	} else if (parse_u64(value, ARL_MAX_TOKENS, &n) != 0 || n == 0) {
		return fail(st, section, key, value, "a positive whole number");
	}

	for (i = 0; i < bc->nlimits; i++)
		if (bc->limits[i].unit == u && bc->limits[i].window_ns == windows[w].ns)
			break;
	if (i == bc->nlimits) {
		if (bc->nlimits == ARL_MAX_LIMITS) {
			snprintf(st->error, st->error_size,
				 "[%s] %s: a bucket has at most %d limits", section, key,
				 ARL_MAX_LIMITS);
			return 0;
		}
		bc->limits[bc->nlimits++] =
			(struct arl_limit_config){u, 0, windows[w].ns, 0, 0};
	}
	if (is_headroom)
		bc->limits[i].headroom_permille = permille;
	else if (is_burst)
		bc->limits[i].burst = n;
	else
		bc->limits[i].amount = n;
	return 1;
}

/* Applies one key of a [bucket:NAME] section to bc. Returns 1, or 0 with
 * st->error set, as inih handlers do. */
static int apply_bucket_key(struct load_state *st, const char *section,
			    struct arl_bucket_config *bc, char *profile, char *account,
			    const char *key, const char *value)
{
	enum arl_provider provider;
	uint64_t n;
	int rc;

	if (strcmp(key, "provider") == 0 && !value[0]) {
		profile[0] = '\0';
		bc->profile = profile;
		return 1;
	}
	if (strcmp(key, "provider") == 0) {
		if (arl_provider_from_name(value, &provider) != 0)
			return fail(st, section, key, value,
				    "openai, azure, anthropic, groq, mistral, together or gemini");
		snprintf(profile, ARL_PROFILE_MAX + 1, "%s", arl_provider_name(provider));
		bc->profile = profile;
		return 1;
	}
	if (strcmp(key, "account") == 0) {
		if (value[0] && arl_impl_check_name(value) != 0)
			return fail(st, section, key, value,
				    "the name of another bucket, or nothing for none");
		snprintf(account, ARL_NAME_MAX + 1, "%s", value);
		bc->account = account;
		return 1;
	}
	if (strcmp(key, "discover") == 0) {
		if (strcmp(value, "yes") && strcmp(value, "no"))
			return fail(st, section, key, value, "yes or no");
		bc->flags = strcmp(value, "yes") == 0 ? bc->flags | ARL_BUCKET_DISCOVER
						       : bc->flags & ~ARL_BUCKET_DISCOVER;
		return 1;
	}
	if (strcmp(key, "max_inflight") == 0) {
		if (parse_u64(value, UINT32_MAX, &n) != 0)
			return fail(st, section, key, value, "a whole number (0: no cap)");
		bc->max_inflight = (uint32_t)n;
		return 1;
	}
	if (strcmp(key, "refund") == 0) {
		if (strcmp(value, "yes") && strcmp(value, "no"))
			return fail(st, section, key, value, "yes or no");
		bc->flags = strcmp(value, "no") == 0 ? bc->flags | ARL_BUCKET_NO_REFUND
						      : bc->flags & ~ARL_BUCKET_NO_REFUND;
		return 1;
	}
	if (strcmp(key, "overage") == 0) {
		if (strcmp(value, "charge") && strcmp(value, "ignore"))
			return fail(st, section, key, value, "charge or ignore");
		bc->flags = strcmp(value, "ignore") == 0 ? bc->flags | ARL_BUCKET_IGNORE_OVERAGE
							  : bc->flags & ~ARL_BUCKET_IGNORE_OVERAGE;
		return 1;
	}
	rc = limit_key(st, section, bc, key, value);
	if (rc >= 0)
		return rc;
	snprintf(st->error, st->error_size,
		 "[%s] %s: unknown key; use <unit>_per_<window> (units requests, tokens, "
		 "input_tokens, output_tokens; windows second, minute, hour, day), optionally "
		 "with _burst or _headroom after it, max_inflight, refund, overage, provider, "
		 "account or discover",
		 section, key);
	return 0;
}

static int bucket_key(struct load_state *st, const char *section, const char *key,
		      const char *value)
{
	const char *name = section + strlen("bucket:");
	struct arld_bucket_spec *spec;

	if (arl_impl_check_name(name) != 0) {
		snprintf(st->error, st->error_size,
			 "[%s]: bucket name must be 1 to %d bytes", section, ARL_NAME_MAX);
		return 0;
	}
	spec = bucket_spec(st, name);
	if (!spec) {
		snprintf(st->error, st->error_size, "[%s]: out of memory", section);
		return 0;
	}
	return apply_bucket_key(st, section, &spec->config, spec->profile, spec->account, key,
				value);
}

int arld_config_bucket_key(struct arl_bucket_config *config, const char *key, const char *value,
			   char *error, size_t error_size)
{
	/* The strings a config points at must outlive the call: arlctl, the only
	 * caller, builds one bucket configuration at a time. */
	static char profile[ARL_PROFILE_MAX + 1], account[ARL_NAME_MAX + 1];
	struct load_state st = {NULL, false, error, error_size, NULL};
	char section[ARL_NAME_MAX + 16];

	snprintf(section, sizeof(section), "bucket:%s", config->name ? config->name : "");
	error[0] = '\0';
	return apply_bucket_key(&st, section, config, profile, account, key, value) == 1 ? 0 : -1;
}

static int on_entry_checked(struct load_state *st, const char *section, const char *key,
			    const char *value)
{
	if (strcmp(section, "arld") == 0)
		return arld_key(st, key, value);
	if (strncmp(section, "bucket:", 7) == 0)
		return bucket_key(st, section, key, value);
	snprintf(st->error, st->error_size,
		 "[%s]: unknown section; use [arld] or [bucket:NAME]", section);
	return 0;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
	struct load_state *st = user;

	/* inih goes on after an error and reports the first bad line, so keep
	 * the message of that first error. */
	if (st->error[0])
		return 1;
	return on_entry_checked(st, section, key, value);
}


int arld_config_bucket_check(const struct arl_bucket_config *bc, char *error, size_t error_size)
{
	uint32_t j;

	if (bc->nlimits == 0 && bc->max_inflight == 0) {
		snprintf(error, error_size,
			 "bucket %s has no limits; add one such as requests_per_minute "
			 "or tokens_per_minute, or max_inflight",
			 bc->name);
		return -1;
	}
	for (j = 0; j < bc->nlimits; j++)
		if (bc->limits[j].amount == 0) {
			snprintf(error, error_size,
				 "bucket %s: a burst or headroom is set for a limit with "
				 "no amount",
				 bc->name);
			return -1;
		}
	if (arl_bucket_config_check(bc) != 0) {
		snprintf(error, error_size, "bucket %s: invalid limits", bc->name);
		return -1;
	}
	return 0;
}

/* Returns the index of the bucket of that name, or -1. */
static int find_spec(const struct arld_config *c, const char *name)
{
	uint32_t i;

	for (i = 0; i < c->nbuckets; i++)
		if (strcmp(c->buckets[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Checks that each account names a bucket of the file, and that following
 * accounts from any bucket ends within ARL_MAX_CHAIN buckets (no cycle). */
static int check_accounts(const struct arld_config *c, char *error, size_t error_size)
{
	uint32_t i, length;

	for (i = 0; i < c->nbuckets; i++) {
		const struct arld_bucket_spec *b = &c->buckets[i];

		for (length = 1; b->account[0]; length++) {
			int next = find_spec(c, b->account);

			if (next < 0) {
				snprintf(error, error_size,
					 "bucket %s: account = %s names no bucket of this file; add "
					 "a [bucket:%s] section",
					 b->name, b->account, b->account);
				return -1;
			}
			if (length == ARL_MAX_CHAIN) {
				snprintf(error, error_size,
					 "bucket %s: its accounts form a cycle or a chain longer than "
					 "%d buckets",
					 c->buckets[i].name, ARL_MAX_CHAIN);
				return -1;
			}
			b = &c->buckets[next];
		}
	}
	return 0;
}

/* Checks each bucket once the whole file is read, and points the configs at
 * their names (realloc may have moved them). */
static int check_buckets(struct load_state *st)
{
	struct arld_config *c = st->config;
	uint32_t i;

	for (i = 0; i < c->nbuckets; i++) {
		struct arld_bucket_spec *b = &c->buckets[i];

		b->config.name = b->name;
		/* "" rather than NULL, because the file is the whole truth about
		 * links: a reload removes a profile or an account the file dropped. */
		b->config.profile = b->profile;
		b->config.account = b->account;
		if (arld_config_bucket_check(&b->config, st->error, st->error_size) != 0)
			return -1;
	}
	if (check_accounts(c, st->error, st->error_size) != 0)
		return -1;
	if ((c->mode & 0070) && !c->has_group) {
		snprintf(st->error, st->error_size,
			 "mode %#o gives a group access but no group is set; add group = NAME",
			 (unsigned)c->mode);
		return -1;
	}
	if (c->nbuckets > c->bucket_capacity) {
		snprintf(st->error, st->error_size, "%u buckets declared but buckets = %u",
			 c->nbuckets, c->bucket_capacity);
		return -1;
	}
	return 0;
}

/* Returns true if the parsed configuration has a bucket of that name. */
static bool has_bucket(const struct arld_config *c, const char *name)
{
	uint32_t i;

	for (i = 0; i < c->nbuckets; i++)
		if (strcmp(c->buckets[i].name, name) == 0)
			return true;
	return false;
}

/*
 * Checks the section headers, which inih does not report on their own: a
 * bucket section declared twice would merge silently, and one with no keys
 * would vanish (and leave the built-in default bucket in its place).
 * Returns 0, or -1 with a message naming the line.
 */
static int check_sections(const struct arld_config *c, const char *path, char *error,
			  size_t error_size)
{
	char line[512], seen[64][ARL_NAME_MAX + 16];
	unsigned nseen = 0, number = 0, i;
	FILE *f = fopen(path, "r");
	int rc = 0;

	if (!f)
		return 0; /* ini_parse already reported it */
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *start = line + strspn(line, " \t"), *end;

		number++;
		if (*start != '[' || !(end = strchr(start, ']')))
			continue;
		*end = '\0';
		start++;
		for (i = 0; i < nseen && strcmp(seen[i], start) != 0; i++)
			;
		if (i < nseen) {
			snprintf(error, error_size,
				 "%s:%u: section [%s] appears twice; merge the two into one", path,
				 number, start);
			rc = -1;
		} else if (strncmp(start, "bucket:", 7) == 0 && !has_bucket(c, start + 7)) {
			snprintf(error, error_size,
				 "%s:%u: section [%s] has no keys; give the bucket at least one "
				 "limit, such as requests_per_minute = 500",
				 path, number, start);
			rc = -1;
		} else if (nseen < 64) {
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", start);
		}
	}
	fclose(f);
	return rc;
}

int arld_config_load(struct arld_config *config, const char *path, char *error,
		     size_t error_size)
{
	char detail[512] = "";
	struct load_state st = {config, false, detail, sizeof(detail), path};
	int line;

	line = ini_parse(path, on_entry, &st);
	if (line < 0) {
		snprintf(error, error_size, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (line > 0) {
		snprintf(error, error_size, "%s:%d: %s", path, line,
			 detail[0] ? detail : "syntax error; expected [section] or key = value");
		return -1;
	}
	if (check_buckets(&st) != 0) {
		snprintf(error, error_size, "%s: %s", path, detail);
		return -1;
	}
	return check_sections(config, path, error, error_size);
}

void arld_config_free(struct arld_config *config)
{
	free(config->buckets);
	config->buckets = NULL;
	config->nbuckets = 0;
}
