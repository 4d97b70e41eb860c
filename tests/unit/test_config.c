/*
 * test_config.c - agent/config.c: the JSON config file. Every default, the
 * secret rules (inline only in a private file, *_file, *_env and the fixed
 * environment variables, which are scrubbed once read), unknown keys located
 * by line:column at every depth, duplicate keys, type and range checks, the
 * policy conversion and config_write_register.
 *
 * Each test writes its config into a fresh file under one temp directory made
 * by the group setup; the fixed secret variables are unset before every test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/config.h"
#include "common/secret.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static int file_seq;

static const char *const fixed_env[] = { CONFIG_ENV_PHALA_API_KEY,  CONFIG_ENV_GITLAB_TOKEN,
	                                 CONFIG_ENV_GITHUB_TOKEN,   CONFIG_ENV_GITHUB_APP_KEY,
	                                 CONFIG_ENV_GITHUB_WEBHOOK, NULL };

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tdxr-test-config.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int group_teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int test_setup(void **state)
{
	size_t i;

	for (i = 0; fixed_env[i]; i++)
		unsetenv(fixed_env[i]);
	return 0;
}

/* Writes text into a new file with mode; returns its path (static storage, one per call). */
static const char *write_file(const char *text, mode_t mode)
{
	static char paths[64][300];
	char *p = paths[file_seq % 64];
	FILE *f;

	snprintf(p, 300, "%s/f%d.json", tmpdir, file_seq++);
	f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(p, mode), 0);
	return p;
}

/* Loads text (written with mode) and expects failure with code and a message that
 * starts with "<file>:<where>" (where may be NULL) and contains `has`. */
static void expect_error(const char *text, mode_t mode, int code, const char *where, const char *has)
{
	const char *path = write_file(text, mode);
	struct config *cfg = (struct config *)0x1;
	struct tdxr_err e;
	char prefix[400];
	int rc;

	rc = config_load(path, &cfg, &e);
	if (rc != code)
		fail_msg("rc %d (want %d): %s", rc, code, rc ? e.msg : "(success)");
	assert_null(cfg);
	if (where) {
		snprintf(prefix, sizeof(prefix), "%s:%s", path, where);
		if (strncmp(e.msg, prefix, strlen(prefix)) != 0)
			fail_msg("message '%s' does not start with '%s'", e.msg, prefix);
	}
	if (has && strstr(e.msg, has) == NULL)
		fail_msg("message '%s' lacks '%s'", e.msg, has);
}

static struct config *load_ok(const char *text, mode_t mode)
{
	const char *path = write_file(text, mode);
	struct config *cfg = NULL;
	struct tdxr_err e;

	if (config_load(path, &cfg, &e) != 0)
		fail_msg("config_load: %s", e.msg);
	assert_non_null(cfg);
	return cfg;
}

#define MINIMAL                                                                                              \
	"{\"executor\": {\"kind\": \"local\"}, \"gitlab\": [{\"url\": \"http://127.0.0.1:8099\", "           \
	"\"token\": "                                                                                        \
	"\"glrt-x\"}]}"

static void minimal_private_config_loads_with_every_default(void **state)
{
	struct config *cfg = load_ok(MINIMAL, 0600);
	char *sd = NULL;
	struct tdxr_err e;

	assert_non_null(cfg->source);
	assert_int_equal(config_default_state_dir(&sd, &e), 0);
	assert_string_equal(cfg->state_dir, sd);
	if (geteuid() == 0)
		assert_string_equal(sd, "/var/lib/tdx-runner");
	free(sd);
	assert_int_equal(cfg->concurrency, 1);
	assert_int_equal(cfg->log_format, TDXR_LOG_TEXT);
	assert_int_equal(cfg->log_level, TDXR_LOG_INFO);
	/* executor */
	assert_int_equal(cfg->executor.kind, CONFIG_EXECUTOR_LOCAL);
	assert_int_equal(cfg->executor.ready_timeout_s, 600);
	assert_string_equal(cfg->executor.phala.api_url, "https://cloud-api.phala.com/api/v1");
	assert_null(cfg->executor.phala.api_key);
	assert_string_equal(cfg->executor.phala.instance_type, "tdx.small");
	assert_null(cfg->executor.phala.node_id);
	assert_null(cfg->executor.phala.image);
	assert_null(cfg->executor.phala.compose_file);
	assert_null(cfg->executor.dstack.vmm_url);
	assert_null(cfg->executor.dstack.image);
	assert_null(cfg->executor.dstack.gateway_domain);
	assert_null(cfg->executor.dstack.compose_file);
	assert_null(cfg->executor.gateway.connect_to);
	assert_null(cfg->executor.gateway.ca_file);
	/* policy */
	assert_int_equal(cfg->policy.accept_tcb, ATTEST_TCB_BIT(ATTEST_TCB_UP_TO_DATE) |
	                                             ATTEST_TCB_BIT(ATTEST_TCB_SW_HARDENING_NEEDED));
	assert_int_equal(cfg->policy.allow_simulated, -1);
	assert_int_equal(cfg->policy.allow_debug, 0);
	assert_int_equal(cfg->policy.allow_service_td, 0);
	assert_int_equal(cfg->policy.mrtd.n, 0);
	assert_null(cfg->policy.mrtd.v);
	assert_int_equal(cfg->policy.rtmr0.n, 0);
	assert_int_equal(cfg->policy.rtmr1.n, 0);
	assert_int_equal(cfg->policy.rtmr2.n, 0);
	assert_int_equal(cfg->policy.os_image_hash.n, 0);
	assert_string_equal(cfg->policy.pccs_url, "https://api.trustedservices.intel.com");
	assert_null(cfg->policy.cache_dir);
	/* CI systems, metrics */
	assert_int_equal(cfg->n_gitlab, 1);
	assert_string_equal(cfg->gitlab[0].url, "http://127.0.0.1:8099");
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-x");
	assert_int_equal(cfg->gitlab[0].limit, 0);
	assert_int_equal(cfg->n_github, 0);
	assert_null(cfg->metrics_listen);
	config_free(cfg);
	config_free(NULL);
}

static void built_in_defaults_equal_an_empty_file(void **state)
{
	struct config *a = NULL, *b = load_ok("{}", 0644);
	struct tdxr_err e;

	assert_int_equal(config_defaults(&a, &e), 0);
	assert_null(a->source);
	assert_non_null(b->source);
	assert_string_equal(a->state_dir, b->state_dir);
	assert_int_equal(a->concurrency, b->concurrency);
	assert_int_equal(a->executor.kind, b->executor.kind);
	assert_int_equal(a->executor.ready_timeout_s, 600);
	assert_int_equal(a->policy.accept_tcb, b->policy.accept_tcb);
	assert_string_equal(a->policy.pccs_url, b->policy.pccs_url);
	assert_int_equal(a->n_gitlab + a->n_github, 0);
	config_free(a);
	config_free(b);
}

static void inline_secret_in_a_group_readable_file_is_refused(void **state)
{
	expect_error(MINIMAL, 0644, TDXR_EAUTH, "1:77: gitlab[0].token:", "chmod 600");
	expect_error(MINIMAL, 0640, TDXR_EAUTH, NULL, "mode 640");
	expect_error(MINIMAL, 0604, TDXR_EAUTH, NULL, "token_file");
	/* 0400 is stricter than 0600: fine. */
	config_free(load_ok(MINIMAL, 0400));
}

static void token_file_is_read_and_must_be_private(void **state)
{
	const char *tok = write_file("glrt-from-file\n", 0600);
	const char *badtok;
	char text[800];
	struct config *cfg;

	snprintf(text, sizeof(text),
	         "{\"gitlab\": [{\"url\": \"https://gl.example\", \"token_file\": \"%s\"}]}", tok);
	cfg = load_ok(text, 0644); /* no secret inline: the config itself may be readable */
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-from-file");
	config_free(cfg);

	badtok = write_file("glrt-leaky", 0644);
	snprintf(text, sizeof(text),
	         "{\"gitlab\": [{\"url\": \"https://gl.example\", \"token_file\": \"%s\"}]}", badtok);
	expect_error(text, 0600, TDXR_EAUTH, "1:43: gitlab[0].token_file:", "chmod 600");

	snprintf(
	    text, sizeof(text),
	    "{\"gitlab\": [{\"url\": \"https://gl.example\", \"token\": \"x\", \"token_file\": \"%s\"}]}",
	    tok);
	expect_error(text, 0600, TDXR_EINVAL, NULL, "not both");
	expect_error("{\"gitlab\": [{\"url\": \"https://gl.example\", \"token_file\": \"relative\"}]}", 0600,
	             TDXR_EINVAL, NULL, "absolute path");
	expect_error(
	    "{\"gitlab\": [{\"url\": \"https://gl.example\", \"token_file\": \"/nonexistent/tok\"}]}", 0600,
	    TDXR_EIO, NULL, "/nonexistent/tok");
}

static void environment_overrides_file_secrets_and_is_scrubbed(void **state)
{
	struct config *cfg;

	setenv(CONFIG_ENV_GITLAB_TOKEN, "glrt-env", 1);
	cfg = load_ok(MINIMAL, 0600);
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-env");
	assert_null(getenv(CONFIG_ENV_GITLAB_TOKEN));
	config_free(cfg);

	/* The fixed variable alone is enough for the first entry, in a readable file. */
	setenv(CONFIG_ENV_GITLAB_TOKEN, "glrt-env2", 1);
	cfg = load_ok("{\"gitlab\": [{\"url\": \"https://gl.example\"}]}", 0644);
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-env2");
	config_free(cfg);

	/* ...but only for the first entry: the second one needs token_env. */
	setenv(CONFIG_ENV_GITLAB_TOKEN, "glrt-env3", 1);
	expect_error("{\"gitlab\": [{\"url\": \"https://a.example\"},\n {\"url\": \"https://b.example\"}]}",
	             0644, TDXR_EINVAL, "2:2: gitlab[1]:", "token_env");
	unsetenv(CONFIG_ENV_GITLAB_TOKEN);

	setenv("MY_SECOND_TOKEN", "glrt-second", 1);
	setenv(CONFIG_ENV_GITLAB_TOKEN, "glrt-first", 1);
	cfg = load_ok("{\"gitlab\": [{\"url\": \"https://a.example\"},"
	              " {\"url\": \"https://b.example\", \"token_env\": \"MY_SECOND_TOKEN\", \"limit\": 3}]}",
	              0644);
	assert_int_equal(cfg->n_gitlab, 2);
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-first");
	assert_string_equal(tdxr_secret_str(cfg->gitlab[1].token), "glrt-second");
	assert_int_equal(cfg->gitlab[1].limit, 3);
	assert_null(getenv("MY_SECOND_TOKEN"));
	assert_null(getenv(CONFIG_ENV_GITLAB_TOKEN));
	config_free(cfg);

	/* token_env naming an unset variable, with no other source. */
	expect_error(
	    "{\"gitlab\": [{\"url\": \"https://a.example\", \"token_env\": \"TDXR_TEST_UNSET_VAR\"}]}", 0644,
	    TDXR_ENOTFOUND, "1:42: gitlab[0].token_env:", "TDXR_TEST_UNSET_VAR is not set");
	expect_error("{\"gitlab\": [{\"url\": \"https://a.example\", \"token_env\": \"1BAD\"}]}", 0644,
	             TDXR_EINVAL, NULL, "environment variable");

	/* PHALA_CLOUD_API_KEY satisfies the phala executor. */
	expect_error("{\"executor\": {\"kind\": \"phala\"}}", 0644, TDXR_EINVAL, NULL,
	             CONFIG_ENV_PHALA_API_KEY);
	setenv(CONFIG_ENV_PHALA_API_KEY, "phak_test", 1);
	cfg = load_ok("{\"executor\": {\"kind\": \"phala\", \"phala\": {\"node_id\": 7}}}", 0644);
	assert_int_equal(cfg->executor.kind, CONFIG_EXECUTOR_PHALA);
	assert_string_equal(tdxr_secret_str(cfg->executor.phala.api_key), "phak_test");
	assert_string_equal(cfg->executor.phala.node_id, "7");
	assert_null(getenv(CONFIG_ENV_PHALA_API_KEY));
	config_free(cfg);
}

static void unknown_keys_are_located_at_every_depth(void **state)
{
	/* depth 1 */
	expect_error("{\n  \"executor\": {\"kind\": \"local\"},\n  \"bogus\": 1\n}", 0644, TDXR_EINVAL,
	             "3:3: bogus: unknown key", NULL);
	/* depth 2, after a nested object that has the same key name inside a string */
	expect_error(
	    "{\n  \"executor\": {\n    \"kind\": \"local\",\n    \"dstack\": {\"image\": \"{\\\"phalaa\\\": "
	    "1}\"},\n    \"phalaa\": {}\n  }\n}",
	    0644, TDXR_EINVAL, "5:5: executor.phalaa: unknown key", NULL);
	/* depth 3, the key spelt with an escape, after a sibling with a similar name */
	expect_error("{\n  \"log\": {\"format\": \"text\", \"level\": \"info\"},\n  \"executor\": {\"kind\": "
	             "\"local\", \"phala\": {\"image\": \"\\\"bogus\\\": 0\", \"instance_type\": \"x\",\n    "
	             "  \"b\\u006fgus\": 2}}\n}",
	             0644, TDXR_EINVAL, "4:7: executor.phala.bogus: unknown key", NULL);
	expect_error("{\n  \"log\": {\"format\": \"text\", \"level\": \"info\"},\n  \"executor\": {\"kind\": "
	             "\"local\", \"phala\": {\"instance_type\": \"x\",\n      \"b\\u006fgus\": 2}}\n}",
	             0644, TDXR_EINVAL, "4:7: executor.phala.bogus: unknown key", NULL);
	/* depth 3 through an array: gitlab[1] */
	expect_error("{\n  \"gitlab\": [\n    {\"url\": \"http://a\", \"token\": \"t\"},\n    {\"url\": "
	             "\"http://b\",\n     \"tokn\": \"t\"}\n  ]\n}",
	             0600, TDXR_EINVAL, "5:6: gitlab[1].tokn: unknown key", NULL);
	/* depth 4: github[0].app.bogus; a multi-byte character before it counts as one column */
	expect_error("{\"github\": [{\"repository\": \"o/r\",\n\"labels\": [\"\xc3\xa9t\xc3\xa9\"], \"app\": "
	             "{\"id\": 1, \"bogus\": 2}}]}",
	             0644, TDXR_EINVAL, "2:37: github[0].app.bogus: unknown key", NULL);
	expect_error("{\"log\": {\"\xc3\xa9t\xc3\xa9\": 1}}", 0644, TDXR_EINVAL,
	             "1:10: log.\xc3\xa9t\xc3\xa9: unknown key", NULL);
	/* depth 2 in policy.collateral */
	expect_error("{\"policy\": {\"collateral\": {\"pccs\": \"https://x\"}}}", 0644, TDXR_EINVAL,
	             "1:28: policy.collateral.pccs: unknown key", NULL);
}

/* ---- generated documents: the reported position of an unknown key ---- */

struct gen {
	char b[8192];
	size_t n;
	uint64_t s;
	int target; /* section that gets the unknown key: 0 top, 1 log, 2 executor, 3 phala, 4 collateral */
	int line, col;
};

static unsigned gen_rnd(struct gen *g, unsigned n)
{
	g->s = g->s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((g->s >> 33) % n);
}

static void gen_put(struct gen *g, const char *s)
{
	size_t l = strlen(s);

	assert_true(g->n + l < sizeof(g->b));
	memcpy(g->b + g->n, s, l);
	g->n += l;
	g->b[g->n] = '\0';
}

static void gen_ws(struct gen *g)
{
	static const char *const w[] = { "", " ", "\n", "\t", "\r\n", "  \n    " };

	gen_put(g, w[gen_rnd(g, 6)]);
}

/* Line and column (in characters) of the next byte, counted over the whole buffer. */
static void gen_mark(struct gen *g)
{
	size_t i;

	g->line = 1;
	g->col = 1;
	for (i = 0; i < g->n; i++) {
		if (g->b[i] == '\n') {
			g->line++;
			g->col = 1;
		} else if (((unsigned char)g->b[i] & 0xC0) != 0x80) {
			g->col++;
		}
	}
}

/* A key, some characters spelt as \u escapes, then ':'; with mark, records its position. */
static void gen_key_at(struct gen *g, const char *name, int mark)
{
	char esc[8];

	gen_ws(g);
	if (mark)
		gen_mark(g);
	gen_put(g, "\"");
	for (; *name; name++) {
		if (gen_rnd(g, 4) == 0)
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*name);
		else
			snprintf(esc, sizeof(esc), "%c", *name);
		gen_put(g, esc);
	}
	gen_put(g, "\"");
	gen_ws(g);
	gen_put(g, ":");
	gen_ws(g);
}

static void gen_key(struct gen *g, const char *name)
{
	gen_key_at(g, name, 0);
}

/* A string value full of JSON punctuation, escapes and multi-byte characters. */
static void gen_str(struct gen *g)
{
	static const char *const piece[] = { "a",
		                             "{",
		                             "}",
		                             "[",
		                             "]",
		                             ",",
		                             ":",
		                             "\\\"",
		                             "\\\\",
		                             "\\n",
		                             "\xc3\xa9",
		                             "\\u00e9",
		                             "\\ud83d\\ude00",
		                             "\\\"zz_unknown\\\": 1",
		                             "\xe2\x82\xac" };
	unsigned i, k = 1 + gen_rnd(g, 5);

	gen_put(g, "\"");
	for (i = 0; i < k; i++)
		gen_put(g, piece[gen_rnd(g, 15)]);
	gen_put(g, "\"");
}

static void gen_section(struct gen *g, int id);

static void gen_member(struct gen *g, int id, unsigned m)
{
	switch (id * 10 + (int)m) {
	case 0:
		gen_key(g, "concurrency");
		gen_put(g, "2");
		break;
	case 1:
		gen_key(g, "log");
		gen_section(g, 1);
		break;
	case 2:
		gen_key(g, "executor");
		gen_section(g, 2);
		break;
	case 3:
		gen_key(g, "policy");
		gen_put(g, "{");
		gen_key(g, "mrtd");
		gen_put(g, "[ ]");
		gen_put(g, ",");
		gen_key(g, "collateral");
		gen_section(g, 4);
		gen_ws(g);
		gen_put(g, "}");
		break;
	case 10:
		gen_key(g, "format");
		gen_put(g, "\"text\"");
		break;
	case 11:
		gen_key(g, "level");
		gen_put(g, "\"info\"");
		break;
	case 20:
		gen_key(g, "kind");
		gen_put(g, "\"local\"");
		break;
	case 21:
		gen_key(g, "phala");
		gen_section(g, 3);
		break;
	case 22:
		gen_key(g, "ready_timeout_s");
		gen_put(g, "30");
		break;
	case 30:
		gen_key(g, "instance_type");
		gen_str(g);
		break;
	case 31:
		gen_key(g, "image");
		gen_str(g);
		break;
	case 40:
		gen_key(g, "cache_dir");
		gen_put(g, "\"/x\"");
		break;
	default: fail_msg("bad member %d/%u", id, m);
	}
	gen_ws(g);
}

static void gen_section(struct gen *g, int id)
{
	static const unsigned nmembers[] = { 4, 2, 3, 2, 1 };
	unsigned i, n = nmembers[id], at = g->target == id ? gen_rnd(g, n + 1) : n + 1;

	gen_put(g, "{");
	for (i = 0; i <= n; i++) {
		if (i == at) {
			gen_key_at(g, "zz_unknown", 1);
			gen_str(g);
			gen_ws(g);
		} else if (i < n) {
			gen_member(g, id, i);
		} else {
			break;
		}
		if (i + 1 < n || (i + 1 == n && at == n))
			gen_put(g, ",");
	}
	gen_put(g, "}");
}

static void unknown_key_positions_hold_in_generated_documents(void **state)
{
	static const char *const where[] = { "zz_unknown", "log.zz_unknown", "executor.zz_unknown",
		                             "executor.phala.zz_unknown", "policy.collateral.zz_unknown" };
	char expect[200];
	struct gen g;
	unsigned iter;

	memset(&g, 0, sizeof(g));
	g.s = 0x5eed;
	for (iter = 0; iter < 300; iter++) {
		g.n = 0;
		g.target = (int)(iter % 5);
		gen_ws(&g);
		gen_section(&g, 0);
		gen_ws(&g);
		snprintf(expect, sizeof(expect), "%d:%d: %s: unknown key", g.line, g.col, where[g.target]);
		expect_error(g.b, 0644, TDXR_EINVAL, expect, NULL);
	}
}

static void syntax_errors_and_duplicate_keys_carry_a_position(void **state)
{
	expect_error("{\n  \"concurrency\": 1,\n  \"concurrency\": 2\n}", 0644, TDXR_EINVAL,
	             "3:15:", "duplicate object key");
	expect_error("{\"executor\": {\"kind\": \"local\", \"kind\": \"phala\"}}", 0644, TDXR_EINVAL,
	             "1:37:", "duplicate");
	expect_error("{\n  \"concurrency\": 1,\n}", 0644, TDXR_EINVAL, "3:1:", NULL);
	expect_error("", 0644, TDXR_EINVAL, "1:0:", NULL);
	expect_error("[]", 0644, TDXR_EINVAL, NULL, "must be a JSON object");
}

static void wrong_types_and_ranges_are_refused_with_their_position(void **state)
{
	expect_error("{\n  \"concurrency\": \"2\"\n}", 0644, TDXR_EINVAL,
	             "2:3: concurrency: must be an integer", NULL);
	expect_error("{\"concurrency\": 0}", 0644, TDXR_EINVAL, "1:2: concurrency: must be between 1 and 256",
	             NULL);
	expect_error("{\"concurrency\": 257}", 0644, TDXR_EINVAL, NULL, "between 1 and 256");
	expect_error("{\"concurrency\": 1.5}", 0644, TDXR_EINVAL, NULL, "must be an integer");
	expect_error("{\"concurrency\": true}", 0644, TDXR_EINVAL, NULL, "must be an integer");
	expect_error("{\"state_dir\": \"var/lib\"}", 0644, TDXR_EINVAL, NULL, "absolute path");
	expect_error("{\"state_dir\": 5}", 0644, TDXR_EINVAL, NULL, "must be a string");
	expect_error("{\"log\": {\"format\": \"xml\"}}", 0644, TDXR_EINVAL, "1:10: log.format:", NULL);
	expect_error("{\"log\": {\"level\": \"trace\"}}", 0644, TDXR_EINVAL, NULL, "debug");
	expect_error("{\"log\": []}", 0644, TDXR_EINVAL, "1:2: log: must be an object", NULL);
	expect_error("{\"executor\": {\"kind\": \"aws\"}}", 0644, TDXR_EINVAL,
	             "1:15: executor.kind:", "dstack");
	expect_error("{\"executor\": {\"ready_timeout_s\": 0}}", 0644, TDXR_EINVAL, NULL, "between 1 and");
	expect_error("{\"executor\": {\"ready_timeout_s\": -5}}", 0644, TDXR_EINVAL, NULL, "between 1 and");
	expect_error("{\"executor\": {\"phala\": {\"api_url\": \"ftp://x\"}}}", 0644, TDXR_EINVAL,
	             "1:25: executor.phala.api_url:", "http");
	expect_error("{\"executor\": {\"phala\": {\"api_url\": \"https://\"}}}", 0644, TDXR_EINVAL, NULL,
	             "URL");
	expect_error("{\"executor\": {\"phala\": {\"node_id\": true}}}", 0644, TDXR_EINVAL, NULL,
	             "integer, a string");
	expect_error("{\"executor\": {\"gateway\": {\"connect_to\": \"localhost\"}}}", 0644, TDXR_EINVAL,
	             NULL, "host:port");
	expect_error("{\"executor\": {\"gateway\": {\"connect_to\": \"::1:443\"}}}", 0644, TDXR_EINVAL, NULL,
	             "host:port");
	expect_error("{\"executor\": {\"gateway\": {\"connect_to\": \"h:70000\"}}}", 0644, TDXR_EINVAL, NULL,
	             "host:port");
	expect_error(
	    "{\"executor\": {\"kind\": \"dstack\", \"dstack\": {\"vmm_url\": \"http://127.0.0.1:9080\"}}}",
	    0644, TDXR_EINVAL, NULL, "executor.dstack.image");
	expect_error("{\"policy\": {\"allow_debug\": \"yes\"}}", 0644, TDXR_EINVAL, NULL, "true or false");
	expect_error("{\"policy\": {\"allow_debug\": null}}", 0644, TDXR_EINVAL, NULL, "true or false");
	expect_error("{\"policy\": {\"allow_simulated\": 1}}", 0644, TDXR_EINVAL, NULL, "or null");
	expect_error("{\"policy\": {\"accept_tcb\": [\"UpToDate\", \"Fine\"]}}", 0644, TDXR_EINVAL,
	             "1:40: policy.accept_tcb[1]:", "unknown TCB status");
	expect_error("{\"policy\": {\"accept_tcb\": []}}", 0644, TDXR_EINVAL, NULL, "1 to");
	expect_error("{\"policy\": {\"accept_tcb\": \"UpToDate\"}}", 0644, TDXR_EINVAL, NULL, "array");
	expect_error("{\"gitlab\": {}}", 0644, TDXR_EINVAL, "1:2: gitlab:", "array");
	expect_error("{\"gitlab\": [\"https://x\"]}", 0644, TDXR_EINVAL, "1:13: gitlab[0]: must be an object",
	             NULL);
	expect_error("{\"gitlab\": [{\"token_env\": \"X\"}]}", 0644, TDXR_EINVAL, NULL,
	             "missing required key");
	expect_error("{\"metrics\": {\"listen\": 9252}}", 0644, TDXR_EINVAL, NULL, "string or null");
	expect_error("{\"state_dir\": \"/a\\u0000b\"}", 0644, TDXR_EINVAL, NULL, NULL);
}

static void hex_allow_lists_must_be_well_formed(void **state)
{
	char text[600], h96[97], h64[65];
	struct config *cfg;

	memset(h96, 'A', 96);
	h96[96] = '\0';
	memset(h64, '0', 64);
	h64[64] = '\0';
	snprintf(
	    text, sizeof(text),
	    "{\"policy\": {\"mrtd\": [\"%s\"], \"rtmr0\": [\"%s\", \"%s\"], \"os_image_hash\": [\"%s\"]}}",
	    h96, h96, h96, h64);
	cfg = load_ok(text, 0644);
	assert_int_equal(cfg->policy.mrtd.n, 1);
	assert_int_equal(strlen(cfg->policy.mrtd.v[0]), 96);
	assert_int_equal(cfg->policy.mrtd.v[0][0], 'a'); /* stored lower-case */
	assert_null(cfg->policy.mrtd.v[1]);
	assert_int_equal(cfg->policy.rtmr0.n, 2);
	assert_int_equal(cfg->policy.os_image_hash.n, 1);
	config_free(cfg);

	h96[95] = '\0'; /* 95 digits */
	snprintf(text, sizeof(text), "{\"policy\": {\"mrtd\": [\"%s\"]}}", h96);
	expect_error(text, 0644, TDXR_EINVAL, "1:22: policy.mrtd[0]:", "96 hex digits");
	h96[95] = 'g';
	h96[94] = 'g';
	snprintf(text, sizeof(text), "{\"policy\": {\"rtmr2\": [\"%s\"]}}", h96);
	expect_error(text, 0644, TDXR_EINVAL, NULL, "96 hex digits");
	snprintf(text, sizeof(text), "{\"policy\": {\"os_image_hash\": [\"%s\", \"%s0\"]}}", h64, h64);
	expect_error(text, 0644, TDXR_EINVAL, "1:99: policy.os_image_hash[1]:", "64 hex digits");
	expect_error("{\"policy\": {\"rtmr1\": [5]}}", 0644, TDXR_EINVAL, NULL, "non-empty string");
}

static void allow_simulated_null_means_local_only(void **state)
{
	struct config *cfg = load_ok("{}", 0644);
	struct attest_policy p;

	assert_int_equal(cfg->policy.allow_simulated, -1);
	assert_int_equal(config_allow_simulated(cfg, CONFIG_EXECUTOR_LOCAL), 1);
	assert_int_equal(config_allow_simulated(cfg, CONFIG_EXECUTOR_PHALA), 0);
	assert_int_equal(config_allow_simulated(cfg, CONFIG_EXECUTOR_DSTACK), 0);
	config_attest_policy(cfg, CONFIG_EXECUTOR_LOCAL, &p);
	assert_int_equal(p.allow_simulated, 1);
	assert_int_equal(p.accept_tcb, ATTEST_TCB_DEFAULT_ACCEPT);
	assert_null(p.mrtd);
	assert_null(p.expected_app_id);
	config_attest_policy(cfg, CONFIG_EXECUTOR_PHALA, &p);
	assert_int_equal(p.allow_simulated, 0);
	config_free(cfg);

	cfg = load_ok("{\"policy\": {\"allow_simulated\": true, \"allow_debug\": true, \"accept_tcb\": "
	              "[\"OutOfDate\"], \"os_image_hash\": [\"" /* 64 */
	              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"]}}",
	              0644);
	assert_int_equal(config_allow_simulated(cfg, CONFIG_EXECUTOR_PHALA), 1);
	config_attest_policy(cfg, CONFIG_EXECUTOR_DSTACK, &p);
	assert_int_equal(p.allow_simulated, 1);
	assert_int_equal(p.allow_debug, 1);
	assert_int_equal(p.allow_service_td, 0);
	assert_int_equal(p.accept_tcb, ATTEST_TCB_BIT(ATTEST_TCB_OUT_OF_DATE));
	assert_non_null(p.os_image_hash);
	assert_string_equal(p.os_image_hash[0],
	                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	assert_null(p.os_image_hash[1]);
	config_free(cfg);

	cfg = load_ok("{\"policy\": {\"allow_simulated\": false}}", 0644);
	assert_int_equal(config_allow_simulated(cfg, CONFIG_EXECUTOR_LOCAL), 0);
	config_free(cfg);
}

static void full_config_sets_every_key(void **state)
{
	const char *key = write_file("phak_file\n", 0600);
	char text[3000];
	struct config *cfg;

	snprintf(text, sizeof(text),
	         "{\"state_dir\": \"/srv/tdxr\", \"concurrency\": 8,"
	         " \"log\": {\"format\": \"json\", \"level\": \"debug\"},"
	         " \"executor\": {\"kind\": \"dstack\", \"ready_timeout_s\": 120,"
	         "  \"phala\": {\"api_url\": \"http://127.0.0.1:1/api/v1\", \"api_key_file\": \"%s\","
	         "   \"instance_type\": \"tdx.large\", \"node_id\": \"n1\", \"image\": \"dstack-0.5\","
	         "   \"compose_file\": \"/etc/c.yml\"},"
	         "  \"dstack\": {\"vmm_url\": \"http://127.0.0.1:9080\", \"image\": \"dstack-0.5.3\","
	         "   \"gateway_domain\": \"gw.example\", \"compose_file\": null},"
	         "  \"gateway\": {\"connect_to\": \"[::1]:8443\", \"ca_file\": \"/etc/ca.pem\"}},"
	         " \"policy\": {\"allow_service_td\": true, \"collateral\": {\"pccs_url\": "
	         "\"https://pccs.example/\","
	         "   \"cache_dir\": \"/var/cache/x\"}},"
	         " \"metrics\": {\"listen\": \"127.0.0.1:9252\"}}",
	         key);
	cfg = load_ok(text, 0644);
	assert_string_equal(cfg->state_dir, "/srv/tdxr");
	assert_int_equal(cfg->concurrency, 8);
	assert_int_equal(cfg->log_format, TDXR_LOG_JSON);
	assert_int_equal(cfg->log_level, TDXR_LOG_DEBUG);
	assert_int_equal(cfg->executor.kind, CONFIG_EXECUTOR_DSTACK);
	assert_string_equal(config_executor_kind_name(cfg->executor.kind), "dstack");
	assert_int_equal(cfg->executor.ready_timeout_s, 120);
	assert_string_equal(cfg->executor.phala.api_url, "http://127.0.0.1:1/api/v1");
	assert_string_equal(tdxr_secret_str(cfg->executor.phala.api_key), "phak_file");
	assert_string_equal(cfg->executor.phala.instance_type, "tdx.large");
	assert_string_equal(cfg->executor.phala.node_id, "n1");
	assert_string_equal(cfg->executor.phala.image, "dstack-0.5");
	assert_string_equal(cfg->executor.phala.compose_file, "/etc/c.yml");
	assert_string_equal(cfg->executor.dstack.vmm_url, "http://127.0.0.1:9080");
	assert_string_equal(cfg->executor.dstack.image, "dstack-0.5.3");
	assert_string_equal(cfg->executor.dstack.gateway_domain, "gw.example");
	assert_null(cfg->executor.dstack.compose_file);
	assert_string_equal(cfg->executor.gateway.connect_to, "[::1]:8443");
	assert_string_equal(cfg->executor.gateway.ca_file, "/etc/ca.pem");
	assert_int_equal(cfg->policy.allow_service_td, 1);
	assert_string_equal(cfg->policy.pccs_url, "https://pccs.example/");
	assert_string_equal(cfg->policy.cache_dir, "/var/cache/x");
	assert_string_equal(cfg->metrics_listen, "127.0.0.1:9252");
	assert_int_equal(config_check_executor(cfg, CONFIG_EXECUTOR_PHALA, NULL), 0);
	assert_int_equal(config_check_executor(cfg, CONFIG_EXECUTOR_LOCAL, NULL), 0);
	config_free(cfg);
}

#define TEST_PEM "-----BEGIN PRIVATE KEY-----\nMIIBVQ==\n-----END PRIVATE KEY-----\n"

static void github_entries_check_scope_auth_runner_and_webhook(void **state)
{
	const char *pem = write_file(TEST_PEM, 0600), *notpem = write_file("hello\n", 0600);
	char text[1500];
	struct config *cfg;

	cfg = load_ok("{\"github\": [{\"repository\": \"octo/hello\", \"token\": \"ghp_x\"}]}", 0600);
	assert_int_equal(cfg->n_github, 1);
	assert_string_equal(cfg->github[0].api_url, "https://api.github.com");
	assert_string_equal(cfg->github[0].uploads_url, "https://uploads.github.com");
	assert_string_equal(cfg->github[0].repository, "octo/hello");
	assert_null(cfg->github[0].organization);
	assert_string_equal(tdxr_secret_str(cfg->github[0].token), "ghp_x");
	assert_int_equal(cfg->github[0].have_app, 0);
	assert_int_equal(cfg->github[0].labels.n, 2);
	assert_string_equal(cfg->github[0].labels.v[0], "self-hosted");
	assert_string_equal(cfg->github[0].labels.v[1], "tdx");
	assert_int_equal(cfg->github[0].runner_group_id, 1);
	assert_null(cfg->github[0].runner_tarball_url);
	assert_string_equal(cfg->github[0].runner_path_in_box, "/opt/actions-runner");
	assert_null(cfg->github[0].webhook_listen);
	assert_null(cfg->github[0].webhook_secret);
	config_free(cfg);

	setenv(CONFIG_ENV_GITHUB_WEBHOOK, "whsec", 1);
	snprintf(
	    text, sizeof(text),
	    "{\"github\": [{\"organization\": \"octo-org\", \"app\": {\"id\": 12, \"installation_id\": 34,"
	    " \"private_key_file\": \"%s\"}, \"labels\": [\"self-hosted\", \"tdx\", \"big\"],"
	    " \"runner_group_id\": 3, \"runner\": {\"tarball_url\": \"https://example.com/r.tgz\","
	    " \"sha256\": \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"},"
	    " \"webhook\": {\"listen\": \"0.0.0.0:8088\"}}]}",
	    pem);
	cfg = load_ok(text, 0644);
	assert_string_equal(cfg->github[0].organization, "octo-org");
	assert_null(cfg->github[0].token);
	assert_int_equal(cfg->github[0].have_app, 1);
	assert_int_equal(cfg->github[0].app_id, 12);
	assert_int_equal(cfg->github[0].app_installation_id, 34);
	assert_string_equal(cfg->github[0].app_private_key_file, pem);
	assert_int_equal(tdxr_secret_len(cfg->github[0].app_private_key),
	                 strlen(TEST_PEM) - 1); /* newline dropped */
	assert_memory_equal(tdxr_secret_str(cfg->github[0].app_private_key), TEST_PEM, strlen(TEST_PEM) - 1);
	assert_int_equal(cfg->github[0].labels.n, 3);
	assert_int_equal(cfg->github[0].runner_group_id, 3);
	assert_string_equal(cfg->github[0].runner_tarball_url, "https://example.com/r.tgz");
	assert_string_equal(cfg->github[0].runner_sha256,
	                    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_null(cfg->github[0].runner_path_in_box);
	assert_string_equal(cfg->github[0].webhook_listen, "0.0.0.0:8088");
	assert_string_equal(tdxr_secret_str(cfg->github[0].webhook_secret), "whsec");
	assert_null(getenv(CONFIG_ENV_GITHUB_WEBHOOK));
	config_free(cfg);

	expect_error("{\"github\": [{\"token_env\": \"X\"}]}", 0644, TDXR_EINVAL,
	             "1:13: github[0]:", "exactly one of");
	expect_error(
	    "{\"github\": [{\"repository\": \"a/b\", \"organization\": \"c\", \"token_env\": \"X\"}]}", 0644,
	    TDXR_EINVAL, NULL, "exactly one of");
	expect_error("{\"github\": [{\"repository\": \"a\", \"token\": \"t\"}]}", 0600, TDXR_EINVAL, NULL,
	             "owner/repo");
	expect_error("{\"github\": [{\"repository\": \"a/b/c\", \"token\": \"t\"}]}", 0600, TDXR_EINVAL, NULL,
	             "owner/repo");
	expect_error("{\"github\": [{\"repository\": \"a/b\"}]}", 0644, TDXR_EINVAL, NULL, "missing auth");
	setenv("GH_TOK_T", "t", 1);
	expect_error(
	    "{\"github\": [{\"repository\": \"a/b\", \"token_env\": \"GH_TOK_T\", \"app\": {\"id\": 1}}]}",
	    0644, TDXR_EINVAL, NULL, "not both");
	snprintf(
	    text, sizeof(text),
	    "{\"github\": [{\"repository\": \"a/b\", \"app\": {\"id\": 1, \"private_key_file\": \"%s\"}}]}",
	    pem);
	expect_error(text, 0644, TDXR_EINVAL, NULL, "installation_id");
	snprintf(text, sizeof(text),
	         "{\"github\": [{\"repository\": \"a/b\", \"app\": {\"id\": 1, \"installation_id\": 2,"
	         " \"private_key_file\": \"%s\"}}]}",
	         notpem);
	expect_error(text, 0644, TDXR_EINVAL, NULL, "not a PEM private key");
	expect_error(
	    "{\"github\": [{\"repository\": \"a/b\", \"app\": {\"id\": 1, \"installation_id\": 2}}]}", 0644,
	    TDXR_EINVAL, NULL, "private key");
	expect_error("{\"github\": [{\"repository\": \"a/b\", \"token\": \"t\", \"runner\": {\"tarball_url\":"
	             " \"https://x/r.tgz\"}}]}",
	             0600, TDXR_EINVAL, "1:49: github[0].runner:", "go together");
	expect_error(
	    "{\"github\": [{\"repository\": \"a/b\", \"token\": \"t\", \"runner\": {\"sha256\": \"abc\"}}]}",
	    0600, TDXR_EINVAL, NULL, "64 hex digits");
	expect_error("{\"github\": [{\"repository\": \"a/b\", \"token\": \"t\", \"webhook\": {\"listen\":"
	             " \"127.0.0.1:8088\"}}]}",
	             0600, TDXR_EINVAL, NULL, "needs a secret");
	expect_error("{\"github\": [{\"repository\": \"a/b\", \"token\": \"t\", \"labels\": []}]}", 0600,
	             TDXR_EINVAL, NULL, "1 to");
}

/* Runs config_default_path / config_default_state_dir as a non-root user when
 * we are root (in a child), so the XDG and HOME branches are exercised. */
static void default_paths_follow_root_xdg_and_home(void **state)
{
	char *p = NULL;
	struct tdxr_err e;
	pid_t pid;
	int st;

	if (geteuid() == 0) {
		assert_int_equal(config_default_path(&p, &e), 0);
		assert_string_equal(p, "/etc/tdx-runner/config.json");
		free(p);
		assert_int_equal(config_default_state_dir(&p, &e), 0);
		assert_string_equal(p, "/var/lib/tdx-runner");
		free(p);
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = 0;

		if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0)
			_exit(77);
		setenv("XDG_CONFIG_HOME", "/xdg/conf", 1);
		setenv("XDG_STATE_HOME", "/xdg/state", 1);
		setenv("HOME", "/home/u", 1);
		bad |=
		    config_default_path(&p, NULL) != 0 || strcmp(p, "/xdg/conf/tdx-runner/config.json") != 0;
		free(p);
		bad |= config_default_state_dir(&p, NULL) != 0 || strcmp(p, "/xdg/state/tdx-runner") != 0;
		free(p);
		setenv("XDG_CONFIG_HOME", "relative", 1); /* not absolute: ignored, as the XDG spec says */
		unsetenv("XDG_STATE_HOME");
		bad |= config_default_path(&p, NULL) != 0 ||
		       strcmp(p, "/home/u/.config/tdx-runner/config.json") != 0;
		free(p);
		bad |= config_default_state_dir(&p, NULL) != 0 ||
		       strcmp(p, "/home/u/.local/state/tdx-runner") != 0;
		free(p);
		unsetenv("XDG_CONFIG_HOME");
		unsetenv("HOME");
		bad |= config_default_path(&p, NULL) != TDXR_ENOTFOUND;
		_exit(bad ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		print_message("SKIP: cannot drop to uid 65534 to test the non-root defaults\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void missing_explicit_file_is_an_error_missing_default_is_not(void **state)
{
	char path[400];
	struct config *cfg = (struct config *)0x1;
	struct tdxr_err e;
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/does-not-exist.json", tmpdir);
	assert_int_equal(config_load(path, &cfg, &e), TDXR_ENOTFOUND);
	assert_null(cfg);
	assert_non_null(strstr(e.msg, path));

	/* The default path, as a user whose config directory is empty. */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad;

		if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0)
			_exit(77);
		setenv("XDG_CONFIG_HOME", "/nonexistent-tdxr-test", 1);
		setenv("XDG_STATE_HOME", "/nonexistent-tdxr-state", 1);
		bad = config_load(NULL, &cfg, NULL) != 0 || cfg->source != NULL ||
		      strcmp(cfg->state_dir, "/nonexistent-tdxr-state/tdx-runner") != 0;
		config_free(cfg);
		_exit(bad ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		print_message("SKIP: cannot drop to uid 65534 to test the non-root defaults\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void register_writes_a_private_minimal_config_that_loads(void **state)
{
	char path[400];
	struct config *cfg = NULL;
	struct tdxr_err e;
	struct stat st;

	snprintf(path, sizeof(path), "%s/reg/sub/config.json", tmpdir);
	assert_int_equal(config_write_register(path, "https://gitlab.example.com", "glrt-\"quoted\"", &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(config_load(path, &cfg, &e), 0);
	assert_int_equal(cfg->executor.kind, CONFIG_EXECUTOR_LOCAL);
	assert_int_equal(cfg->n_gitlab, 1);
	assert_string_equal(cfg->gitlab[0].url, "https://gitlab.example.com");
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-\"quoted\"");
	config_free(cfg);
	/* Replaced atomically on a second register. */
	assert_int_equal(config_write_register(path, "http://127.0.0.1:1", "glrt-2", &e), 0);
	assert_int_equal(config_load(path, &cfg, &e), 0);
	assert_string_equal(tdxr_secret_str(cfg->gitlab[0].token), "glrt-2");
	config_free(cfg);
	assert_int_equal(config_write_register(path, "gitlab.example.com", "t", &e), TDXR_EINVAL);
	assert_int_equal(config_write_register(path, "https://g", "", &e), TDXR_EINVAL);
	assert_int_equal(config_write_register(path, "https://g", "a b", &e), TDXR_EINVAL);
}

static void example_configs_in_packaging_load(void **state)
{
	static const char *const names[] = { "local.json", "gitlab.json", "github.json",
		                             "phala.json", "dstack.json", NULL };
	char path[4096];
	struct config *cfg;
	struct tdxr_err e;
	size_t i;

	/* The examples name secrets through *_env / *_file only; give them the variables. */
	for (i = 0; names[i]; i++) {
		setenv("TDXR_GITLAB_TOKEN", "glrt-example", 1);
		setenv("TDXR_GITHUB_TOKEN", "ghp-example", 1);
		setenv("TDXR_GITHUB_WEBHOOK_SECRET", "whsec-example", 1);
		setenv("PHALA_CLOUD_API_KEY", "phak-example", 1);
		snprintf(path, sizeof(path), "%s/packaging/examples/%s", TDXR_SOURCE_DIR, names[i]);
		cfg = NULL;
		if (config_load(path, &cfg, &e) != 0)
			fail_msg("%s: %s", names[i], e.msg);
		config_free(cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(minimal_private_config_loads_with_every_default, test_setup),
		cmocka_unit_test_setup(built_in_defaults_equal_an_empty_file, test_setup),
		cmocka_unit_test_setup(inline_secret_in_a_group_readable_file_is_refused, test_setup),
		cmocka_unit_test_setup(token_file_is_read_and_must_be_private, test_setup),
		cmocka_unit_test_setup(environment_overrides_file_secrets_and_is_scrubbed, test_setup),
		cmocka_unit_test_setup(unknown_keys_are_located_at_every_depth, test_setup),
		cmocka_unit_test_setup(unknown_key_positions_hold_in_generated_documents, test_setup),
		cmocka_unit_test_setup(syntax_errors_and_duplicate_keys_carry_a_position, test_setup),
		cmocka_unit_test_setup(wrong_types_and_ranges_are_refused_with_their_position, test_setup),
		cmocka_unit_test_setup(hex_allow_lists_must_be_well_formed, test_setup),
		cmocka_unit_test_setup(allow_simulated_null_means_local_only, test_setup),
		cmocka_unit_test_setup(full_config_sets_every_key, test_setup),
		cmocka_unit_test_setup(github_entries_check_scope_auth_runner_and_webhook, test_setup),
		cmocka_unit_test_setup(default_paths_follow_root_xdg_and_home, test_setup),
		cmocka_unit_test_setup(missing_explicit_file_is_an_error_missing_default_is_not, test_setup),
		cmocka_unit_test_setup(register_writes_a_private_minimal_config_that_loads, test_setup),
		cmocka_unit_test_setup(example_configs_in_packaging_load, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
