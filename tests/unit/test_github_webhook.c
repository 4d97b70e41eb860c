/*
 * test_github_webhook.c - the pure parts of the webhook receiver
 * (agent/ci/github_webhook.c): the X-Hub-Signature-256 check against GitHub's
 * documented test vector (read in place from ../shared/testdata/ci/github,
 * skipped when absent) and against every single-byte change; that the MAC is
 * compared with CRYPTO_memcmp (this file interposes it and counts the calls);
 * the replay set (by delivery id, by body, window, capacity, forget); the
 * workflow_job parser on every real webhook sample and on broken payloads.
 * The HTTP side (status codes, queue hand-off) is in test_httpd.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/ci/github_webhook.h"
#include "common/util.h"

#include <dirent.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================= CRYPTO_memcmp, interposed and counted */

static unsigned g_ct_calls;
static size_t g_ct_len;

/* Same contract as OpenSSL's; the executable's definition wins over libcrypto's,
 * so the receiver's comparisons land here. */
int CRYPTO_memcmp(const void *in_a, const void *in_b, size_t len)
{
	const volatile unsigned char *a = in_a, *b = in_b;
	unsigned char d = 0;
	size_t i;

	g_ct_calls++;
	g_ct_len = len;
	for (i = 0; i < len; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d != 0;
}

/* ================================================================= vectors */

static const char *shared_dir(void)
{
	const char *e = getenv("TDXR_SHARED_TESTDATA");

	return e && *e ? e : TDXR_SHARED_TESTDATA;
}

/* Reads ci/github/<name> from the shared testdata, or skips the test. */
static uint8_t *read_shared(const char *name, size_t *len)
{
	char path[1024];
	uint8_t *d = NULL;
	struct tdxr_err e;

	snprintf(path, sizeof(path), "%s/ci/github/%s", shared_dir(), name);
	if (tdxr_file_read(path, 32u << 20, &d, len, &e) != 0) {
		print_message("SKIP: %s is absent (real vectors live in ../shared)\n", path);
		skip();
	}
	return d;
}

static json_t *read_shared_json(const char *name)
{
	size_t n = 0;
	uint8_t *d = read_shared(name, &n);
	json_t *j = json_loadb((const char *)d, n, JSON_REJECT_DUPLICATES, NULL);

	free(d);
	assert_non_null(j);
	return j;
}

static void test_signature_matches_the_github_docs_test_vector(void **state)
{
	json_t *v = read_shared_json("webhook_signature_vector.docs.json");
	const char *secret = json_string_value(json_object_get(v, "secret"));
	const char *body = json_string_value(json_object_get(v, "body"));
	const char *expected = json_string_value(json_object_get(v, "expected"));
	uint8_t mac[32];
	char hex[65];
	struct tdxr_err e;

	assert_non_null(secret);
	assert_non_null(body);
	assert_non_null(expected);
	g_ct_calls = 0;
	assert_int_equal(gh_webhook_signature_check(secret, strlen(secret), (const uint8_t *)body,
	                                            strlen(body), expected, mac, &e),
	                 0);
	/* the comparison went through the constant-time compare, over the whole MAC */
	assert_int_equal(g_ct_calls, 1);
	assert_int_equal(g_ct_len, 32);
	tdxr_hex_encode(mac, sizeof(mac), hex);
	assert_string_equal(hex, expected + 7);
	/* a different secret or body does not match */
	assert_int_equal(gh_webhook_signature_check("It's a Secret to Everybody!", 27, (const uint8_t *)body,
	                                            strlen(body), expected, NULL, &e),
	                 TDXR_EAUTH);
	assert_int_equal(gh_webhook_signature_check(secret, strlen(secret), (const uint8_t *)body,
	                                            strlen(body) - 1, expected, NULL, &e),
	                 TDXR_EAUTH);
	json_decref(v);
}

static const char k_secret[] = "It's a Secret to Everybody";
static const char k_body[] = "Hello, World!";
/* HMAC-SHA256(k_secret, k_body), from GitHub's documentation (also in the shared vector). */
static const char k_sig[] = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

static void test_signature_refuses_every_single_byte_change(void **state)
{
	char sig[sizeof(k_sig)];
	uint8_t body[sizeof(k_body)];
	struct tdxr_err e;
	size_t i;

	assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret), (const uint8_t *)k_body,
	                                            strlen(k_body), k_sig, NULL, &e),
	                 0);
	for (i = 7; i < strlen(k_sig); i++) { /* every hex digit of the MAC */
		memcpy(sig, k_sig, sizeof(sig));
		sig[i] = sig[i] == '0' ? '1' : '0';
		g_ct_calls = 0;
		assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret),
		                                            (const uint8_t *)k_body, strlen(k_body), sig,
		                                            NULL, &e),
		                 TDXR_EAUTH);
		assert_int_equal(g_ct_calls, 1);
	}
	for (i = 0; i < strlen(k_body); i++) { /* every byte of the body */
		memcpy(body, k_body, sizeof(body));
		body[i] ^= 0x01;
		assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret), body, strlen(k_body),
		                                            k_sig, NULL, &e),
		                 TDXR_EAUTH);
	}
	/* upper-case hex is the same MAC */
	memcpy(sig, k_sig, sizeof(sig));
	for (i = 7; sig[i]; i++)
		if (sig[i] >= 'a' && sig[i] <= 'f')
			sig[i] = (char)(sig[i] - 'a' + 'A');
	assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret), (const uint8_t *)k_body,
	                                            strlen(k_body), sig, NULL, &e),
	                 0);
}

static void test_signature_refuses_malformed_headers(void **state)
{
	static const char *const bad[] = {
		"",
		"sha256=",
		"sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
		"SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1700",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
		" sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
		"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	};
	struct tdxr_err e;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret),
		                                            (const uint8_t *)k_body, strlen(k_body), bad[i],
		                                            NULL, &e),
		                 TDXR_EAUTH);
	assert_int_equal(gh_webhook_signature_check(k_secret, strlen(k_secret), (const uint8_t *)k_body,
	                                            strlen(k_body), NULL, NULL, &e),
	                 TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "missing"));
	/* an empty secret never verifies anything */
	assert_int_equal(
	    gh_webhook_signature_check("", 0, (const uint8_t *)k_body, strlen(k_body), k_sig, NULL, &e),
	    TDXR_EAUTH);
}

/* ================================================================== replay */

static void mac_of(uint8_t mac[32], int x)
{
	memset(mac, 0, 32);
	mac[0] = (uint8_t)x;
	mac[31] = (uint8_t)(x >> 8);
}

static void test_replay_set_refuses_a_seen_delivery_id_or_body(void **state)
{
	struct gh_replay *r = NULL;
	uint8_t m1[32], m2[32], m3[32];
	struct tdxr_err e;

	assert_int_equal(gh_replay_new(8, 100, &r, &e), 0);
	mac_of(m1, 1);
	mac_of(m2, 2);
	mac_of(m3, 3);
	assert_int_equal(gh_replay_check_add(r, "id-1", m1, 1000), 0);
	assert_int_equal(gh_replay_check_add(r, "id-1", m1, 1001), 1); /* the same delivery */
	assert_int_equal(gh_replay_check_add(r, "id-1", m2, 1001), 1); /* its id with another body */
	assert_int_equal(gh_replay_check_add(r, "id-2", m1, 1001), 1); /* its body under a new id */
	assert_int_equal(gh_replay_check_add(r, "id-2", m2, 1002), 0);
	/* refused deliveries were not remembered: id-3/m3 is new */
	assert_int_equal(gh_replay_check_add(r, "id-3", m3, 1002), 0);
	gh_replay_free(r);
	gh_replay_free(NULL);
}

static void test_replay_set_forgets_after_the_window(void **state)
{
	struct gh_replay *r = NULL;
	uint8_t m[32];
	struct tdxr_err e;

	assert_int_equal(gh_replay_new(8, 100, &r, &e), 0);
	mac_of(m, 7);
	assert_int_equal(gh_replay_check_add(r, "w", m, 1000), 0);
	assert_int_equal(gh_replay_check_add(r, "w", m, 1099), 1); /* still inside */
	assert_int_equal(gh_replay_check_add(r, "w", m, 1100), 0); /* window over: new again */
	assert_int_equal(gh_replay_check_add(r, "w", m, 1150), 1);
	gh_replay_free(r);
}

static void test_replay_set_is_bounded_and_evicts_the_oldest(void **state)
{
	struct gh_replay *r = NULL;
	uint8_t m[32];
	char id[16];
	struct tdxr_err e;
	int i;

	assert_int_equal(gh_replay_new(4, 3600, &r, &e), 0);
	for (i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "d%d", i);
		mac_of(m, 100 + i);
		assert_int_equal(gh_replay_check_add(r, id, m, 10), 0);
	}
	mac_of(m, 100);
	assert_int_equal(gh_replay_check_add(r, "d0", m, 10), 1);
	mac_of(m, 104);
	assert_int_equal(gh_replay_check_add(r, "d4", m, 10), 0); /* evicts d0 */
	mac_of(m, 100);
	assert_int_equal(gh_replay_check_add(r, "d0", m, 10), 0); /* forgotten (and evicts d1) */
	mac_of(m, 102);
	assert_int_equal(gh_replay_check_add(r, "d2", m, 10), 1); /* d2 is still held */
	gh_replay_free(r);
	assert_int_equal(gh_replay_new(0, 10, &r, &e), TDXR_EINVAL);
	assert_null(r);
	assert_int_equal(gh_replay_new(4, 0, &r, &e), TDXR_EINVAL);
}

static void test_replay_set_forget_allows_a_redelivery(void **state)
{
	struct gh_replay *r = NULL;
	uint8_t m[32], other[32];
	struct tdxr_err e;

	assert_int_equal(gh_replay_new(8, 3600, &r, &e), 0);
	mac_of(m, 9);
	mac_of(other, 10);
	assert_int_equal(gh_replay_check_add(r, "f", m, 1), 0);
	gh_replay_forget(r, "f", other); /* not this entry: nothing happens */
	assert_int_equal(gh_replay_check_add(r, "f", m, 2), 1);
	gh_replay_forget(r, "f", m);
	assert_int_equal(gh_replay_check_add(r, "f", m, 3), 0);
	gh_replay_free(r);
}

/* ================================================================= parsing */

static void test_parse_reads_every_real_webhook_sample(void **state)
{
	char dirpath[1024];
	DIR *d;
	struct dirent *de;
	int seen = 0;

	snprintf(dirpath, sizeof(dirpath), "%s/ci/github", shared_dir());
	d = opendir(dirpath);
	if (d == NULL) {
		print_message("SKIP: %s is absent (real vectors live in ../shared)\n", dirpath);
		skip();
	}
	while ((de = readdir(d)) != NULL) {
		struct gh_job_event *ev = NULL;
		struct tdxr_err e;
		json_t *j, *wj, *lab, *rn;
		uint8_t *raw;
		size_t n = 0, i;

		if (strncmp(de->d_name, "webhook_workflow_job.", 21) != 0)
			continue;
		raw = read_shared(de->d_name, &n);
		if (gh_job_event_parse(raw, n, &ev, &e) != 0)
			fail_msg("%s: %s", de->d_name, e.msg);
		/* every field agrees with an independent read of the same file */
		j = json_loadb((const char *)raw, n, 0, NULL);
		assert_non_null(j);
		wj = json_object_get(j, "workflow_job");
		assert_string_equal(ev->action_name, json_string_value(json_object_get(j, "action")));
		assert_int_not_equal(ev->action, GH_JOB_OTHER);
		assert_true(ev->job_id == (uint64_t)json_integer_value(json_object_get(wj, "id")));
		assert_true(ev->run_id == (uint64_t)json_integer_value(json_object_get(wj, "run_id")));
		assert_string_equal(ev->head_sha, json_string_value(json_object_get(wj, "head_sha")));
		assert_string_equal(ev->status, json_string_value(json_object_get(wj, "status")));
		assert_string_equal(ev->repository, json_string_value(json_object_get(
		                                        json_object_get(j, "repository"), "full_name")));
		lab = json_object_get(wj, "labels");
		assert_int_equal(ev->n_labels, json_array_size(lab));
		for (i = 0; i < ev->n_labels; i++)
			assert_string_equal(ev->labels[i], json_string_value(json_array_get(lab, i)));
		assert_string_equal(ev->name, json_string_value(json_object_get(wj, "name")));
		rn = json_object_get(wj, "runner_name");
		if (json_is_string(rn))
			assert_string_equal(ev->runner_name, json_string_value(rn));
		else
			assert_null(ev->runner_name);
		if (json_is_string(json_object_get(wj, "conclusion")))
			assert_string_equal(ev->conclusion,
			                    json_string_value(json_object_get(wj, "conclusion")));
		else
			assert_string_equal(ev->conclusion, "");
		assert_string_equal(ev->delivery, "");
		json_decref(j);
		gh_job_event_free(ev);
		free(raw);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 5);
}

static void test_parse_fields_of_the_waiting_and_failure_samples(void **state)
{
	struct gh_job_event *ev = NULL;
	struct tdxr_err e;
	size_t n = 0;
	uint8_t *raw = read_shared("webhook_workflow_job.waiting.octokit.json", &n);

	assert_int_equal(gh_job_event_parse(raw, n, &ev, &e), 0);
	assert_int_equal(ev->action, GH_JOB_WAITING);
	assert_true(ev->job_id == 12877621891ull); /* beyond 32 bits */
	assert_int_equal(ev->n_labels, 2);
	assert_string_equal(ev->labels[0], "self-hosted");
	assert_string_equal(ev->labels[1], "k8s");
	assert_null(ev->runner_name);
	assert_int_equal(ev->runner_id, 0);
	assert_string_equal(ev->repository, "lineville/elastic-machines-testing");
	gh_job_event_free(ev);
	free(raw);
	raw = read_shared("webhook_workflow_job.completed.failure.octokit.json", &n);
	assert_int_equal(gh_job_event_parse(raw, n, &ev, &e), 0);
	assert_int_equal(ev->action, GH_JOB_COMPLETED);
	assert_string_equal(ev->conclusion, "failure");
	gh_job_event_free(ev);
	free(raw);
	raw = read_shared("webhook_workflow_job.in_progress.octokit.json", &n);
	assert_int_equal(gh_job_event_parse(raw, n, &ev, &e), 0);
	assert_int_equal(ev->action, GH_JOB_IN_PROGRESS);
	assert_string_equal(ev->runner_name, "GitHub Actions 5");
	assert_int_equal(ev->runner_id, 5);
	gh_job_event_free(ev);
	free(raw);
}

/* A valid payload with one piece replaced: WJ is the workflow_job members after "id". */
#define HEAD "{\"action\":\"queued\",\"repository\":{\"full_name\":\"o/r\"},\"workflow_job\":"
#define GOOD_WJ                                                                                              \
	"{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\",\"status\":"       \
	"\"queued\","                                                                                        \
	"\"labels\":[\"a\"]}"

static void test_parse_accepts_minimal_and_unknown_actions(void **state)
{
	static const char good[] = HEAD GOOD_WJ "}";
	static const char other[] = "{\"action\":\"something_new\",\"repository\":{\"full_name\":\"o/r\"},"
	                            "\"workflow_job\":" GOOD_WJ ",\"extra\":[1,2,{}]}";
	struct gh_job_event *ev = NULL;
	struct tdxr_err e;

	assert_int_equal(gh_job_event_parse((const uint8_t *)good, strlen(good), &ev, &e), 0);
	assert_int_equal(ev->action, GH_JOB_QUEUED);
	assert_int_equal(ev->run_attempt, 1);
	assert_string_equal(ev->labels[0], "a");
	gh_job_event_free(ev);
	assert_int_equal(gh_job_event_parse((const uint8_t *)other, strlen(other), &ev, &e), 0);
	assert_int_equal(ev->action, GH_JOB_OTHER);
	assert_string_equal(ev->action_name, "something_new");
	gh_job_event_free(ev);
	gh_job_event_free(NULL);
}

static void test_parse_refuses_malformed_payloads_naming_the_field(void **state)
{
	static const struct {
		const char *json;
		const char *field;
	} bad[] = {
		{ "", "not JSON" },
		{ "[]", "payload" },
		{ "{\"action\":\"queued\"}", "workflow_job" },
		{ HEAD GOOD_WJ ",\"action\":\"queued\"}", "not JSON" }, /* duplicate key */
		{ "{\"action\":\"Queued\",\"repository\":{\"full_name\":\"o/r\"},\"workflow_job\":" GOOD_WJ
		  "}",
		  "action" },
		{ "{\"action\":7,\"repository\":{\"full_name\":\"o/r\"},\"workflow_job\":" GOOD_WJ "}",
		  "action" },
		{ HEAD "{\"id\":0,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.id" },
		{ HEAD "{\"id\":-5,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.id" },
		{ HEAD "{\"id\":\"1\",\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.id" },
		{ HEAD "{\"id\":1.5,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.id" },
		{ HEAD "{\"id\":1,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.run_id" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484A3FB816E0859FD6E1CEA078D76385FF50625\","
		       "\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.head_sha" },
		{ HEAD
		  "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb\",\"status\":\"queued\",\"labels\":[]}}",
		  "workflow_job.head_sha" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"labels\":[]}}",
		  "workflow_job.status" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\"}}",
		  "workflow_job.labels" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[\"a\",3]}}",
		  "workflow_job.labels" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[\"\"]}}",
		  "workflow_job.labels" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[\"a\\nb\"]}}",
		  "workflow_job.labels" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"runner_name\":\"x\\u001b[31m\"}}",
		  "workflow_job.runner_name" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"name\":\"a\\tb\"}}",
		  "workflow_job.name" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"runner_name\":5}}",
		  "workflow_job.runner_name" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"conclusion\":\"Failure\"}}",
		  "workflow_job.conclusion" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"run_attempt\":0}}",
		  "workflow_job.run_attempt" },
		{ HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
		       "\"status\":\"queued\",\"labels\":[],\"runner_id\":-1}}",
		  "workflow_job.runner_id" },
		{ "{\"action\":\"queued\",\"repository\":{\"full_name\":\"o/r/x\"},\"workflow_job\":" GOOD_WJ
		  "}",
		  "repository.full_name" },
		{ "{\"action\":\"queued\",\"repository\":{\"full_name\":\"/r\"},\"workflow_job\":" GOOD_WJ
		  "}",
		  "repository.full_name" },
		{ "{\"action\":\"queued\",\"repository\":{\"full_name\":\"o r/x\"},\"workflow_job\":" GOOD_WJ
		  "}",
		  "repository.full_name" },
		{ "{\"action\":\"queued\",\"workflow_job\":" GOOD_WJ "}", "repository.full_name" },
		{ "{\"action\":\"queued\",\"repository\":{\"full_name\":\"o/r\"},\"workflow_job\":" GOOD_WJ,
		  "not JSON" },
	};
	struct gh_job_event *ev = (struct gh_job_event *)&ev; /* must be cleared */
	struct tdxr_err e;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ev = (struct gh_job_event *)&ev;
		if (gh_job_event_parse((const uint8_t *)bad[i].json, strlen(bad[i].json), &ev, &e) !=
		    TDXR_EINVAL)
			fail_msg("case %zu was accepted: %s", i, bad[i].json);
		assert_null(ev);
		if (strstr(e.msg, bad[i].field) == NULL)
			fail_msg("case %zu: \"%s\" does not name %s", i, e.msg, bad[i].field);
	}
}

static void test_parse_bounds_labels_and_total_size(void **state)
{
	char buf[8192];
	size_t off, i;
	struct gh_job_event *ev = NULL;
	struct tdxr_err e;
	static const uint8_t one = '{';

	off = (size_t)snprintf(buf, sizeof(buf),
	                       HEAD "{\"id\":1,\"run_id\":2,\"head_sha\":"
	                            "\"3484a3fb816e0859fd6e1cea078d76385ff50625\","
	                            "\"status\":\"queued\",\"labels\":[");
	for (i = 0; i < GH_LABELS_MAX; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s\"l%zu\"", i ? "," : "", i);
	snprintf(buf + off, sizeof(buf) - off, "]}}");
	assert_int_equal(gh_job_event_parse((const uint8_t *)buf, strlen(buf), &ev, &e), 0);
	assert_int_equal(ev->n_labels, GH_LABELS_MAX);
	gh_job_event_free(ev);
	ev = NULL;
	snprintf(buf + off, sizeof(buf) - off, ",\"one-too-many\"]}}");
	assert_int_equal(gh_job_event_parse((const uint8_t *)buf, strlen(buf), &ev, &e), TDXR_EINVAL);
	assert_null(ev);
	/* over the payload cap: refused before a byte is read */
	assert_int_equal(gh_job_event_parse(&one, (size_t)GH_WEBHOOK_BODY_MAX + 1, &ev, &e), TDXR_ETOOBIG);
	assert_null(ev);
}

static int dummy_push(void *ctx, struct gh_job_event *ev)
{
	gh_job_event_free(ev);
	return 0;
}

static void test_receiver_needs_a_secret_and_a_callback(void **state)
{
	struct gh_webhook *wh = NULL;
	struct tdxr_secret *s = tdxr_secret_new("x", 1), *empty = tdxr_secret_new("", 0);
	struct httpd_route rt;
	struct gh_webhook_opts o = { .path = "/hooks/gh" };
	struct tdxr_err e;

	assert_int_equal(gh_webhook_new(NULL, dummy_push, NULL, NULL, &wh, &e), TDXR_EINVAL);
	assert_int_equal(gh_webhook_new(empty, dummy_push, NULL, NULL, &wh, &e), TDXR_EINVAL);
	assert_int_equal(gh_webhook_new(s, NULL, NULL, NULL, &wh, &e), TDXR_EINVAL);
	o.path = "no-slash";
	assert_int_equal(gh_webhook_new(s, dummy_push, NULL, &o, &wh, &e), TDXR_EINVAL);
	assert_null(wh);
	o.path = "/hooks/gh";
	assert_int_equal(gh_webhook_new(s, dummy_push, NULL, &o, &wh, &e), 0);
	gh_webhook_route(wh, &rt);
	assert_string_equal(rt.method, "POST");
	assert_string_equal(rt.path, "/hooks/gh");
	assert_int_equal(rt.max_body, GH_WEBHOOK_BODY_MAX);
	gh_webhook_free(wh);
	gh_webhook_free(NULL);
	tdxr_secret_free(s);
	tdxr_secret_free(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signature_matches_the_github_docs_test_vector),
		cmocka_unit_test(test_signature_refuses_every_single_byte_change),
		cmocka_unit_test(test_signature_refuses_malformed_headers),
		cmocka_unit_test(test_replay_set_refuses_a_seen_delivery_id_or_body),
		cmocka_unit_test(test_replay_set_forgets_after_the_window),
		cmocka_unit_test(test_replay_set_is_bounded_and_evicts_the_oldest),
		cmocka_unit_test(test_replay_set_forget_allows_a_redelivery),
		cmocka_unit_test(test_parse_reads_every_real_webhook_sample),
		cmocka_unit_test(test_parse_fields_of_the_waiting_and_failure_samples),
		cmocka_unit_test(test_parse_accepts_minimal_and_unknown_actions),
		cmocka_unit_test(test_parse_refuses_malformed_payloads_naming_the_field),
		cmocka_unit_test(test_parse_bounds_labels_and_total_size),
		cmocka_unit_test(test_receiver_needs_a_secret_and_a_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
