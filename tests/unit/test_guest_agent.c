/*
 * test_guest_agent.c - unit tests for agent/guest_agent.c: the bounded HTTP
 * request parser (whole, partial, chunked, malformed and over-cap requests)
 * and the content of the Info / GetQuote answers, checked with the verifier
 * (attest_evidence_parse + attest_verify against the box's own root.der and
 * collateral.json) and with hashes computed here, not by the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/guest_agent.h"
#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#define APP_ID "00112233445566778899aabbccddeeff00112233"
#define INST_ID "a0a1a2a3a4a5a6a7a8a9b0b1b2b3b4b5b6b7b8b9"
#define COMPOSE "{\"manifest_version\":2,\"name\":\"unit-box\",\"runner\":\"docker-compose\"}"

/* ---------------------------------------------------------------- parser */

static int parse(const char *s, size_t len, struct guest_agent_request *r)
{
	return guest_agent_request_parse((const uint8_t *)s, len, r, NULL);
}

static void request_with_content_length_parses(void **state)
{
	static const char s[] =
	    "POST /GetQuote HTTP/1.1\r\nHost: dstack\r\nContent-Type: application/json\r\n"
	    "Content-Length: 2\r\n\r\n{}";
	struct guest_agent_request r;

	(void)state;
	assert_int_equal(parse(s, sizeof(s) - 1, &r), 0);
	assert_int_equal(r.complete, 1);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.path, "/GetQuote");
	assert_int_equal(r.body_len, 2);
	assert_memory_equal(r.body, "{}", 2);
	assert_int_equal(r.consumed, sizeof(s) - 1);
	guest_agent_request_dispose(&r);
}

static void query_string_is_stripped_and_lf_lines_accepted(void **state)
{
	static const char s[] = "POST /prpc/Tappd.TdxQuote?json HTTP/1.0\nContent-Length: 3\n\nabc";
	struct guest_agent_request r;

	(void)state;
	assert_int_equal(parse(s, sizeof(s) - 1, &r), 0);
	assert_int_equal(r.complete, 1);
	assert_string_equal(r.path, "/prpc/Tappd.TdxQuote");
	assert_int_equal(r.body_len, 3);
	guest_agent_request_dispose(&r);
}

static void every_prefix_needs_more_bytes(void **state)
{
	static const char s[] = "POST /Info HTTP/1.1\r\nContent-Length: 4\r\n\r\n{ }\n";
	static const char c[] = "POST /Info HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	                        "1\r\n{\r\n1;x=y\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n";
	struct guest_agent_request r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(s) - 1; i++) {
		assert_int_equal(parse(s, i, &r), 0);
		assert_int_equal(r.complete, 0);
		assert_null(r.body);
	}
	for (i = 0; i < sizeof(c) - 1; i++) {
		assert_int_equal(parse(c, i, &r), 0);
		assert_int_equal(r.complete, 0);
	}
	assert_int_equal(parse(c, sizeof(c) - 1, &r), 0);
	assert_int_equal(r.complete, 1);
	assert_int_equal(r.body_len, 2);
	assert_memory_equal(r.body, "{}", 2);
	assert_int_equal(r.consumed, sizeof(c) - 1);
	guest_agent_request_dispose(&r);
}

static void request_without_body_has_empty_body(void **state)
{
	static const char s[] = "GET /Info HTTP/1.1\r\n\r\n";
	struct guest_agent_request r;

	(void)state;
	assert_int_equal(parse(s, sizeof(s) - 1, &r), 0);
	assert_int_equal(r.complete, 1);
	assert_string_equal(r.method, "GET");
	assert_int_equal(r.body_len, 0);
	assert_null(r.body);
	guest_agent_request_dispose(&r);
}

static void malformed_requests_are_einval(void **state)
{
	static const char *const bad[] = {
		"post /Info HTTP/1.1\r\n\r\n",
		"POST Info HTTP/1.1\r\n\r\n",
		"POST /Info HTTP/2.0\r\n\r\n",
		"POST /Info\r\n\r\n",
		"POST  /Info HTTP/1.1\r\n\r\n",
		"POSTPOSTPOST /Info HTTP/1.1\r\n\r\n",
		"POST /Info HTTP/1.1\r\nNoColon\r\n\r\n",
		"POST /Info HTTP/1.1\r\n folded: x\r\n\r\n",
		"POST /Info HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
		"POST /Info HTTP/1.1\r\nContent-Length: 2a\r\n\r\n{}",
		"POST /Info HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST /Info HTTP/1.1\r\nContent-Length:\r\n\r\n",
		"POST /Info HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /Info HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST /Info HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST /Info HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
		"POST /Info HTTP/1.1\r\nX: a\001b\r\n\r\n",
	};
	static const char nul[] = "POST /Info HTTP/1.1\r\nX: a\0b\r\n\r\n";
	struct guest_agent_request r;
	struct tdxr_err e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tdxr_err_clear(&e);
		if (guest_agent_request_parse((const uint8_t *)bad[i], strlen(bad[i]), &r, &e) != TDXR_EINVAL)
			fail_msg("case %zu was not rejected as malformed: %s", i, bad[i]);
		assert_int_equal(r.complete, 0);
		assert_null(r.body);
		assert_true(e.msg[0] != '\0');
	}
	assert_int_equal(parse(nul, sizeof(nul) - 1, &r), TDXR_EINVAL);
}

static void over_cap_requests_are_etoobig(void **state)
{
	struct guest_agent_request r;
	struct tdxr_buf b;
	char *big;
	size_t i;

	(void)state;
	/* a head that never ends */
	big = malloc(GUEST_AGENT_MAX_HEAD + 16);
	assert_non_null(big);
	memcpy(big, "POST /Info HTTP/1.1\r\nX: ", 24);
	memset(big + 24, 'a', GUEST_AGENT_MAX_HEAD - 8);
	assert_int_equal(parse(big, GUEST_AGENT_MAX_HEAD + 16, &r), TDXR_ETOOBIG);
	assert_int_equal(parse(big, GUEST_AGENT_MAX_HEAD - 1, &r), 0);
	assert_int_equal(r.complete, 0);
	free(big);
	/* a declared body over the cap is refused before it arrives */
	tdxr_buf_init(&b, 1u << 20);
	assert_int_equal(tdxr_buf_appendf(&b, NULL, "POST /GetQuote HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
	                                  GUEST_AGENT_MAX_BODY + 1),
	                 0);
	assert_int_equal(parse((const char *)b.data, b.len, &r), TDXR_ETOOBIG);
	tdxr_buf_reset(&b);
	assert_int_equal(tdxr_buf_appendf(&b, NULL, "POST /GetQuote HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
	                                  GUEST_AGENT_MAX_BODY),
	                 0);
	assert_int_equal(parse((const char *)b.data, b.len, &r), 0);
	assert_int_equal(r.complete, 0);
	/* too many header lines */
	tdxr_buf_reset(&b);
	assert_int_equal(tdxr_buf_appendf(&b, NULL, "POST /Info HTTP/1.1\r\n"), 0);
	for (i = 0; i <= GUEST_AGENT_MAX_HEADERS; i++)
		assert_int_equal(tdxr_buf_appendf(&b, NULL, "X-%zu: 1\r\n", i), 0);
	assert_int_equal(tdxr_buf_appendf(&b, NULL, "\r\n"), 0);
	assert_int_equal(parse((const char *)b.data, b.len, &r), TDXR_ETOOBIG);
	/* a path over 255 bytes */
	tdxr_buf_reset(&b);
	assert_int_equal(tdxr_buf_appendf(&b, NULL, "POST /%0300d HTTP/1.1\r\n\r\n", 7), 0);
	assert_int_equal(parse((const char *)b.data, b.len, &r), TDXR_ETOOBIG);
	/* chunks that add up past the body cap */
	tdxr_buf_reset(&b);
	assert_int_equal(tdxr_buf_appendf(&b, NULL,
	                                  "POST /Info HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	                                  "%x\r\n",
	                                  GUEST_AGENT_MAX_BODY + 1),
	                 0);
	assert_int_equal(parse((const char *)b.data, b.len, &r), TDXR_ETOOBIG);
	tdxr_buf_dispose(&b);
}

static void random_bytes_never_crash_the_parser(void **state)
{
	static const char seed[] =
	    "POST /GetQuote HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
	    "\r\n5\r\n{\"a\":\r\n0\r\n\r\n";
	uint8_t buf[sizeof(seed)];
	struct guest_agent_request r;
	uint32_t x = 12345;
	int i, j, rc;

	(void)state;
	for (i = 0; i < 20000; i++) {
		memcpy(buf, seed, sizeof(buf));
		for (j = 0; j < 4; j++) {
			x = x * 1103515245u + 12345u;
			buf[(x >> 8) % (sizeof(buf) - 1)] = (uint8_t)(x >> 24);
		}
		x = x * 1103515245u + 12345u;
		rc = guest_agent_request_parse(buf, (x >> 8) % sizeof(buf), &r, NULL);
		assert_true(rc == 0 || rc == TDXR_EINVAL || rc == TDXR_ETOOBIG);
		if (rc == 0 && r.complete) {
			assert_true(r.consumed <= sizeof(buf));
			assert_true(r.body_len <= GUEST_AGENT_MAX_BODY);
		}
		guest_agent_request_dispose(&r);
	}
}

/* ----------------------------------------------------------------- agent */

struct box {
	char dir[64];
	struct guest_agent *ga;
};

static void box_rm(const char *dir)
{
	static const char *const names[] = { "root.der", "collateral.json", "guest-agent.json", NULL };
	char p[128];
	size_t i;

	for (i = 0; names[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

static int box_setup(void **state)
{
	struct box *b = calloc(1, sizeof(*b));
	struct guest_agent_config c;
	struct tdxr_err e;

	assert_non_null(b);
	snprintf(b->dir, sizeof(b->dir), "/tmp/tdxr-ga-XXXXXX");
	assert_non_null(mkdtemp(b->dir));
	memset(&c, 0, sizeof(c));
	c.box_dir = b->dir;
	c.app_compose = COMPOSE;
	c.app_compose_len = strlen(COMPOSE);
	c.app_id_hex = APP_ID;
	c.instance_id_hex = INST_ID;
	if (guest_agent_new(&c, &b->ga, &e) != 0)
		fail_msg("guest_agent_new: %s", e.msg);
	*state = b;
	return 0;
}

static int box_teardown(void **state)
{
	struct box *b = *state;

	guest_agent_free(b->ga);
	box_rm(b->dir);
	free(b);
	return 0;
}

/* Runs one request through the handler; returns the status, *body malloc'd. */
static int call(struct guest_agent *ga, const char *method, const char *path, const char *json, char **body)
{
	struct guest_agent_request r;
	struct tdxr_err e;
	int status = 0;

	memset(&r, 0, sizeof(r));
	snprintf(r.method, sizeof(r.method), "%s", method);
	snprintf(r.path, sizeof(r.path), "%s", path);
	r.body = (uint8_t *)(json ? strdup(json) : NULL);
	r.body_len = json ? strlen(json) : 0;
	r.complete = 1;
	if (guest_agent_handle(ga, &r, &status, body, &e) != 0)
		fail_msg("guest_agent_handle: %s", e.msg);
	guest_agent_request_dispose(&r);
	assert_non_null(*body);
	return status;
}

static void compose_hash_hex(const char *text, char out[65])
{
	uint8_t h[32];

	SHA256((const uint8_t *)text, strlen(text), h);
	tdxr_hex_encode(h, 32, out);
}

/* Verifies evidence JSON against the box's root.der and collateral.json. */
static struct attest_verdict *verify_box(const struct box *b, const char *json, const uint8_t rd[64],
                                         int with_cert)
{
	char p[128], ch[65];
	uint8_t *root = NULL, *coll = NULL;
	size_t root_len = 0, coll_len = 0;
	struct attest_evidence *ev = NULL;
	struct attest_collateral *c = NULL;
	struct attest_verdict *v = NULL;
	struct attest_policy pol;
	struct attest_input in;
	struct tdxr_err e;

	snprintf(p, sizeof(p), "%s/root.der", b->dir);
	assert_int_equal(tdxr_file_read(p, 1u << 20, &root, &root_len, &e), 0);
	snprintf(p, sizeof(p), "%s/collateral.json", b->dir);
	assert_int_equal(tdxr_file_read(p, TDXR_CAP_COLLATERAL, &coll, &coll_len, &e), 0);
	if (attest_evidence_parse((const uint8_t *)json, strlen(json), &ev, &e) != 0)
		fail_msg("evidence: %s", e.msg);
	assert_int_equal(attest_collateral_parse(coll, coll_len, &c, &e), 0);
	assert_non_null(ev->quote);
	memset(&in, 0, sizeof(in));
	in.quote = ev->quote;
	in.quote_len = ev->quote_len;
	in.collateral = c;
	in.eventlog = ev->eventlog;
	in.app_compose = COMPOSE;
	in.app_compose_len = strlen(COMPOSE);
	if (with_cert) {
		in.app_cert_pem = ev->app_cert;
		in.app_cert_len = strlen(ev->app_cert);
	}
	in.now = (int64_t)time(NULL);
	in.root_der = root;
	in.root_der_len = root_len;
	in.root_simulated = 1;
	attest_policy_init(&pol);
	pol.allow_simulated = 1;
	compose_hash_hex(COMPOSE, ch);
	pol.expected_app_id = APP_ID;
	pol.expected_instance_id = INST_ID;
	pol.expected_compose_hash = ch;
	pol.expected_report_data = rd;
	assert_int_equal(attest_verify(&in, &pol, &v, &e), 0);
	attest_evidence_free(ev);
	attest_collateral_free(c);
	free(root);
	free(coll);
	return v;
}

static void getquote_verifies_against_the_box_root(void **state)
{
	struct box *b = *state;
	uint8_t rd[64] = { 0 }, other[64];
	char *body = NULL, req[256], hex[65];
	struct attest_verdict *v;
	size_t i;

	for (i = 0; i < 32; i++)
		rd[i] = (uint8_t)(0xa0 + i);
	tdxr_hex_encode(rd, 32, hex);
	snprintf(req, sizeof(req), "{\"report_data\": \"%s\"}", hex);
	assert_int_equal(call(b->ga, "POST", "/GetQuote", req, &body), 200);
	v = verify_box(b, body, rd, 0);
	if (!v->ok)
		fail_msg("verdict: %s", v->error);
	assert_int_equal(v->simulated, 1);
	assert_non_null(v->quote);
	assert_memory_equal(v->quote->td.report_data, rd, 64); /* zero-padded to 64 bytes */
	assert_int_equal(v->have_identity, 1);
	assert_string_equal(v->identity.app_id, APP_ID);
	assert_string_equal(v->identity.instance_id, INST_ID);
	attest_verdict_free(v);
	/* the same quote fails a different expected REPORTDATA */
	memcpy(other, rd, 64);
	other[63] = 1;
	v = verify_box(b, body, other, 0);
	assert_int_equal(v->ok, 0);
	attest_verdict_free(v);
	free(body);
}

static void each_getquote_is_freshly_signed(void **state)
{
	struct box *b = *state;
	char *b1 = NULL, *b2 = NULL;
	struct attest_evidence *e1 = NULL, *e2 = NULL;
	struct attest_quote *q1 = NULL, *q2 = NULL;

	assert_int_equal(call(b->ga, "POST", "/GetQuote", "{\"report_data\":\"0x0102\"}", &b1), 200);
	assert_int_equal(call(b->ga, "POST", "/GetQuote", "{\"report_data\":\"0102\"}", &b2), 200);
	assert_int_equal(attest_evidence_parse((const uint8_t *)b1, strlen(b1), &e1, NULL), 0);
	assert_int_equal(attest_evidence_parse((const uint8_t *)b2, strlen(b2), &e2, NULL), 0);
	assert_int_equal(attest_quote_parse(e1->quote, e1->quote_len, &q1, NULL), 0);
	assert_int_equal(attest_quote_parse(e2->quote, e2->quote_len, &q2, NULL), 0);
	assert_memory_equal(q1->td.report_data, q2->td.report_data, 64);
	assert_int_equal(q1->td.report_data[0], 1);
	assert_int_equal(q1->td.report_data[1], 2);
	assert_memory_not_equal(q1->attest_key, q2->attest_key, 64);
	assert_memory_not_equal(q1->signature, q2->signature, 64);
	attest_quote_free(q1);
	attest_quote_free(q2);
	attest_evidence_free(e1);
	attest_evidence_free(e2);
	free(b1);
	free(b2);
}

static void bad_requests_get_4xx_json_errors(void **state)
{
	static const struct {
		const char *method, *path, *body;
		int status;
	} cases[] = {
		{ "POST", "/GetQuote",
		  "{\"report_data\":\""
		  "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
		  "00000000000000000000000000000000000000000000000000\"}",
		  400 }, /* 65 bytes */
		{ "POST", "/GetQuote", "{\"report_data\":\"abc\"}", 400 },
		{ "POST", "/GetQuote", "{\"report_data\":\"zz\"}", 400 },
		{ "POST", "/GetQuote", "{\"report_data\":12}", 400 },
		{ "POST", "/GetQuote", "[1]", 400 },
		{ "POST", "/GetQuote", "{\"report_data\":", 400 },
		{ "POST", "/GetQuote", "{\"a\":1,\"a\":2}", 400 },
		{ "POST", "/prpc/Tappd.TdxQuote", "{\"report_data\":\"00\",\"hash_algorithm\":\"sha512\"}",
		  400 },
		{ "POST", "/NoSuchMethod", "{}", 404 },
		{ "DELETE", "/Info", NULL, 405 },
		{ "POST", "/prpc/Tappd.TdxQuote", "{\"report_data\":\"00\",\"hash_algorithm\":\"raw\"}",
		  200 },
		{ "POST", "/GetQuote",
		  "{\"report_data\":\""
		  "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
		  "000000000000000000000000000000000000000000000000\"}",
		  200 }, /* exactly 64 bytes */
		{ "POST", "/GetQuote", NULL, 200 },
	};
	struct box *b = *state;
	json_t *j;
	char *body;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		body = NULL;
		if (call(b->ga, cases[i].method, cases[i].path, cases[i].body, &body) != cases[i].status)
			fail_msg("case %zu (%s %s): wrong status, body %s", i, cases[i].method, cases[i].path,
			         body);
		j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
		assert_non_null(j);
		if (cases[i].status != 200)
			assert_true(json_is_string(json_object_get(j, "error")));
		else
			assert_true(json_is_string(json_object_get(j, "quote")));
		json_decref(j);
		free(body);
	}
}

static void info_carries_identity_tcb_info_and_ratls_cert(void **state)
{
	static const char *const tcb_keys[] = {
		"mrtd",          "rtmr0",        "rtmr1",     "rtmr2",       "rtmr3",
		"os_image_hash", "compose_hash", "device_id", "app_compose", NULL
	};
	struct box *b = *state;
	char *body = NULL, ch[65];
	json_t *j, *t;
	struct attest_verdict *v;
	uint8_t rd[64];
	size_t i;

	assert_int_equal(call(b->ga, "POST", "/Info", "{}", &body), 200);
	j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "app_id")), APP_ID);
	assert_string_equal(json_string_value(json_object_get(j, "instance_id")), INST_ID);
	assert_string_equal(json_string_value(json_object_get(j, "app_name")), "unit-box");
	compose_hash_hex(COMPOSE, ch);
	assert_string_equal(json_string_value(json_object_get(j, "compose_hash")), ch);
	assert_true(json_is_string(json_object_get(j, "tcb_info"))); /* a JSON string, as dstack sends it */
	t = json_loads(json_string_value(json_object_get(j, "tcb_info")), JSON_REJECT_DUPLICATES, NULL);
	assert_non_null(t);
	for (i = 0; tcb_keys[i]; i++)
		if (!json_is_string(json_object_get(t, tcb_keys[i])))
			fail_msg("tcb_info.%s missing", tcb_keys[i]);
	assert_true(json_is_array(json_object_get(t, "event_log")));
	assert_string_equal(json_string_value(json_object_get(t, "app_compose")), COMPOSE);
	assert_int_equal(strlen(json_string_value(json_object_get(t, "rtmr3"))), 96);
	json_decref(t);
	/* the app certificate's quote binds its key (RA-TLS) and verifies like a GetQuote */
	assert_true(strncmp(json_string_value(json_object_get(j, "app_cert")), "-----BEGIN CERTIFICATE-----",
	                    27) == 0);
	assert_int_equal(attest_ratls_report_data(json_string_value(json_object_get(j, "app_cert")),
	                                          strlen(json_string_value(json_object_get(j, "app_cert"))),
	                                          rd, NULL),
	                 0);
	v = verify_box(b, body, rd, 1);
	if (!v->ok)
		fail_msg("Info verdict: %s", v->error);
	attest_verdict_free(v);
	json_decref(j);
	free(body);
	/* the tappd form has the same shape */
	assert_int_equal(call(b->ga, "POST", "/prpc/Tappd.Info", NULL, &body), 200);
	j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	assert_true(json_is_string(json_object_get(j, "tcb_info")));
	json_decref(j);
	free(body);
}

static void info_has_the_keys_of_a_real_dstack_info(void **state)
{
	char p[4096], *body = NULL;
	uint8_t *raw = NULL;
	size_t len = 0;
	struct box *b = *state;
	json_t *real, *ours, *rt, *ot;
	const char *k;
	json_t *v;
	struct stat st;

	snprintf(p, sizeof(p), "%s/crabbox/real_attestation_info.json", TDXR_SHARED_TESTDATA);
	if (stat(p, &st) != 0) {
		print_message("SKIP: %s is absent (real vectors live in ../shared)\n", p);
		skip();
	}
	assert_int_equal(tdxr_file_read(p, TDXR_CAP_EVENTLOG, &raw, &len, NULL), 0);
	real = json_loadb((const char *)raw, len, 0, NULL);
	assert_non_null(real);
	assert_int_equal(call(b->ga, "POST", "/Info", "{}", &body), 200);
	ours = json_loads(body, 0, NULL);
	assert_non_null(ours);
	json_object_foreach(real, k, v)
	{
		if (strcmp(k, "mr_aggregated") == 0) /* derived value the SDK does not need; not served */
			continue;
		if (json_object_get(ours, k) == NULL ||
		    json_typeof(json_object_get(ours, k)) != json_typeof(v))
			fail_msg("Info key %s missing or of another type", k);
	}
	rt = json_loads(json_string_value(json_object_get(real, "tcb_info")), 0, NULL);
	ot = json_loads(json_string_value(json_object_get(ours, "tcb_info")), 0, NULL);
	assert_non_null(rt);
	assert_non_null(ot);
	json_object_foreach(rt, k, v)
	{
		if (strcmp(k, "mr_aggregated") == 0)
			continue;
		if (json_object_get(ot, k) == NULL || json_typeof(json_object_get(ot, k)) != json_typeof(v))
			fail_msg("tcb_info key %s missing or of another type", k);
	}
	json_decref(rt);
	json_decref(ot);
	json_decref(real);
	json_decref(ours);
	free(raw);
	free(body);
}

static void restart_keeps_the_box_identity(void **state)
{
	struct box *b = *state;
	struct guest_agent_config c;
	struct guest_agent *again = NULL;
	struct tdxr_err e;
	char ch[65];

	memset(&c, 0, sizeof(c));
	c.box_dir = b->dir;
	if (guest_agent_new(&c, &again, &e) != 0)
		fail_msg("restart: %s", e.msg);
	compose_hash_hex(COMPOSE, ch);
	assert_string_equal(guest_agent_app_id(again), APP_ID);
	assert_string_equal(guest_agent_instance_id(again), INST_ID);
	assert_string_equal(guest_agent_compose_hash(again), ch);
	guest_agent_free(again);
	again = NULL;
	/* the same values again are fine; a different one is refused */
	c.app_id_hex = "00112233445566778899AABBCCDDEEFF00112233";
	assert_int_equal(guest_agent_new(&c, &again, &e), 0);
	guest_agent_free(again);
	again = NULL;
	c.app_id_hex = "ff112233445566778899aabbccddeeff00112233";
	assert_int_equal(guest_agent_new(&c, &again, &e), TDXR_EINVAL);
	assert_null(again);
	c.app_id_hex = NULL;
	c.app_compose = "{}";
	c.app_compose_len = 2;
	assert_int_equal(guest_agent_new(&c, &again, &e), TDXR_EINVAL);
	c.app_compose = NULL;
	c.instance_id_hex = "123";
	assert_int_equal(guest_agent_new(&c, &again, &e), TDXR_EINVAL);
	assert_null(again);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_with_content_length_parses),
		cmocka_unit_test(query_string_is_stripped_and_lf_lines_accepted),
		cmocka_unit_test(every_prefix_needs_more_bytes),
		cmocka_unit_test(request_without_body_has_empty_body),
		cmocka_unit_test(malformed_requests_are_einval),
		cmocka_unit_test(over_cap_requests_are_etoobig),
		cmocka_unit_test(random_bytes_never_crash_the_parser),
		cmocka_unit_test_setup_teardown(getquote_verifies_against_the_box_root, box_setup,
		                                box_teardown),
		cmocka_unit_test_setup_teardown(each_getquote_is_freshly_signed, box_setup, box_teardown),
		cmocka_unit_test_setup_teardown(bad_requests_get_4xx_json_errors, box_setup, box_teardown),
		cmocka_unit_test_setup_teardown(info_carries_identity_tcb_info_and_ratls_cert, box_setup,
		                                box_teardown),
		cmocka_unit_test_setup_teardown(info_has_the_keys_of_a_real_dstack_info, box_setup,
		                                box_teardown),
		cmocka_unit_test_setup_teardown(restart_keeps_the_box_identity, box_setup, box_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
