/*
 * test_gitlab.c - the pure parts of the GitLab front end (agent/ci/gitlab.c):
 * the job payload parser on the real sample and on broken payloads, artifact
 * path patterns, credential stripping, and the trace checksum (zlib's CRC-32).
 * The protocol itself is tested against the contract server in
 * tests/integration/test_gitlab_agent.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/ci/gitlab_int.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char good[] =
    "{\"id\": 42, \"token\": \"job-token-123\", \"git_info\": {\"repo_url\": "
    "\"https://gitlab-ci-token:job-token-123@gitlab.example.com/g/p.git\", \"sha\": "
    "\"0123456789abcdef0123456789abcdef01234567\", \"ref\": \"main\"}, \"runner_info\": {\"timeout\": 60},"
    "\"variables\": [{\"key\": \"A\", \"value\": \"1\", \"public\": true}, {\"key\": \"S\", \"value\": "
    "\"secret-value\", \"masked\": true}, {\"key\": \"bad-name\", \"value\": \"x\"}],"
    "\"steps\": [{\"name\": \"script\", \"script\": [\"echo hi\"], \"when\": \"on_success\"}]}";

static void test_job_parse_accepts_a_minimal_job_and_strips_credentials(void **state)
{
	struct ci_job *j = NULL;
	struct tdxr_err e;

	(void)state;
	assert_int_equal(gitlab_job_parse((const uint8_t *)good, strlen(good), &j, &e), 0);
	assert_int_equal(gitlab_job_id(j), 42);
	assert_int_equal(gitlab_job_n_steps(j), 1);
	assert_int_equal(gitlab_job_n_vars(j), 2); /* the invalid name is skipped */
	assert_string_equal(gitlab_job_repo_url(j), "https://gitlab.example.com/g/p.git");
	gitlab_job_free(j);
}

static void test_job_parse_reads_the_real_sample(void **state)
{
	char path[1024];
	uint8_t *body = NULL;
	size_t len = 0;
	struct ci_job *j = NULL;
	struct tdxr_err e;
	int rc;

	(void)state;
	snprintf(path, sizeof(path), "%s/ci/gitlab/job_request_201.composite.json", TDXR_SHARED_TESTDATA);
	if (tdxr_file_read(path, 1 << 20, &body, &len, &e) != 0)
		skip(); /* ../shared absent */
	rc = gitlab_job_parse(body, len, &j, &e);
	/* The composite sample's sha is not 40 hex digits in every revision: either it parses,
	 * or the refusal names the sha. */
	if (rc == 0) {
		assert_true(gitlab_job_id(j) > 0);
		assert_true(gitlab_job_n_steps(j) >= 1);
		assert_null(strchr(gitlab_job_repo_url(j), '@'));
	} else {
		assert_non_null(strstr(e.msg, "sha"));
	}
	gitlab_job_free(j);
	free(body);
}

static void test_job_parse_refuses_broken_payloads_naming_the_field(void **state)
{
	static const struct {
		const char *json, *needle;
	} cases[] = {
		{ "[]", "not an object" },
		{ "{\"id\": 0}", "id" },
		{ "{\"id\": 1}", "token" },
		{ "{\"id\": 1, \"token\": \"t\"}", "git_info" },
		{ "{\"id\": 1, \"token\": \"t\", \"git_info\": {\"repo_url\": \"u\", \"sha\": \"abc\"}}",
		  "sha" },
		{ "{\"id\": 1, \"token\": \"t\", \"git_info\": {\"repo_url\": \"u\", \"sha\": "
		  "\"0123456789abcdef0123456789abcdef0123456z\"}}",
		  "sha" },
		{ "{\"id\": 1, \"token\": \"t\", \"git_info\": {\"repo_url\": \"u\", \"sha\": "
		  "\"0123456789abcdef0123456789abcdef01234567\"}, \"steps\": []}",
		  "steps" },
		{ "{\"id\": 1, \"token\": \"t\", \"git_info\": {\"repo_url\": \"u\", \"sha\": "
		  "\"0123456789abcdef0123456789abcdef01234567\"}, \"steps\": [{\"name\": \"script\", "
		  "\"script\": "
		  "[1]}]}",
		  "script" },
		{ "{\"id\": 1, \"id\": 2}", "JSON" },
		{ "{\"id\": 1, \"token\": \"t\", \"git_info\": {\"repo_url\": \"u\", \"sha\": "
		  "\"0123456789abcdef0123456789abcdef01234567\"}, \"steps\": [{\"name\": \"script\"}], "
		  "\"artifacts\": [{\"paths\": \"out\"}]}",
		  "paths" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ci_job *j = (struct ci_job *)1;
		struct tdxr_err e;

		tdxr_err_clear(&e);
		assert_int_equal(
		    gitlab_job_parse((const uint8_t *)cases[i].json, strlen(cases[i].json), &j, &e),
		    TDXR_EINVAL);
		assert_null(j);
		if (strstr(e.msg, cases[i].needle) == NULL)
			fail_msg("case %zu: '%s' does not name '%s'", i, e.msg, cases[i].needle);
	}
}

static void test_artifact_patterns_match_like_gitlab(void **state)
{
	(void)state;
	assert_true(gitlab_pat_match("out/", "out/a.txt"));
	assert_true(gitlab_pat_match("out", "out/sub/b.bin"));
	assert_false(gitlab_pat_match("out", "outside/x"));
	assert_true(gitlab_pat_match("out/*.txt", "out/a.txt"));
	assert_false(gitlab_pat_match("out/*.txt", "out/sub/a.txt"));
	assert_true(gitlab_pat_match("out/**/*.txt", "out/sub/deep/a.txt"));
	assert_true(gitlab_pat_match("build/*", "build/dir/file")); /* a matched directory */
	assert_true(gitlab_pat_match("report.xml", "report.xml"));
	assert_false(gitlab_pat_match("report.xml", "report.xml.bak"));
}

static void test_glob_prefix_is_the_directory_before_the_first_glob(void **state)
{
	char b[64];

	(void)state;
	gitlab_glob_prefix("out/x*.txt", b, sizeof(b));
	assert_string_equal(b, "out");
	gitlab_glob_prefix("a/b/**/c", b, sizeof(b));
	assert_string_equal(b, "a/b");
	gitlab_glob_prefix("x*.txt", b, sizeof(b));
	assert_string_equal(b, "");
	gitlab_glob_prefix("plain/dir/", b, sizeof(b));
	assert_string_equal(b, "plain/dir");
}

static void test_strip_userinfo_removes_credentials_only(void **state)
{
	char b[128];

	(void)state;
	assert_int_equal(gitlab_strip_userinfo("https://u:p@h.example/x.git", b, sizeof(b)), 0);
	assert_string_equal(b, "https://h.example/x.git");
	assert_int_equal(gitlab_strip_userinfo("https://h.example/a@b", b, sizeof(b)), 0);
	assert_string_equal(b, "https://h.example/a@b");
	assert_int_equal(gitlab_strip_userinfo("http://127.0.0.1:8/g/p.git", b, sizeof(b)), 0);
	assert_string_equal(b, "http://127.0.0.1:8/g/p.git");
	assert_int_equal(gitlab_strip_userinfo("https://u:p@h/x", b, 4), -1);
	/* the userinfo ends at the authority's last '@' (found by fuzz_gitlab_job) */
	assert_int_equal(gitlab_strip_userinfo("https://t:tok@gitlab@h.example/x?a@b#c@d", b, sizeof(b)), 0);
	assert_string_equal(b, "https://h.example/x?a@b#c@d");
}

static void test_crc32_is_zlibs(void **state)
{
	const uint8_t *p = (const uint8_t *)"123456789";

	(void)state;
	assert_int_equal(gitlab_crc32(0, p, 9), 0xCBF43926u); /* the standard check value */
	/* incremental = whole */
	assert_int_equal(gitlab_crc32(gitlab_crc32(0, p, 4), p + 4, 5), 0xCBF43926u);
	assert_int_equal(gitlab_crc32(0, p, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_job_parse_accepts_a_minimal_job_and_strips_credentials),
		cmocka_unit_test(test_job_parse_reads_the_real_sample),
		cmocka_unit_test(test_job_parse_refuses_broken_payloads_naming_the_field),
		cmocka_unit_test(test_artifact_patterns_match_like_gitlab),
		cmocka_unit_test(test_glob_prefix_is_the_directory_before_the_first_glob),
		cmocka_unit_test(test_strip_userinfo_removes_credentials_only),
		cmocka_unit_test(test_crc32_is_zlibs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
