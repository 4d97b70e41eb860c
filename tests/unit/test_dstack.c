/*
 * test_dstack.c - attest/dstack.c: dstack identity from RTMR3 runtime events,
 * the compose hash, the RA-TLS REPORTDATA binding and evidence parsing (guest
 * agent Info and GetQuote, legacy tappd, Phala Cloud attestation, SCALE
 * VersionedAttestation in binary, hex and {"attestation": hex} forms).
 *
 * The manifest-driven test replays every "event_log_replay" entry of the shared
 * tdx/manifest.json and prints PASS/FAIL per entry. Real vectors are read in place
 * from TDXR_SHARED_TESTDATA (skipped when absent); malformed and hostile inputs,
 * and an RA-TLS certificate with a key made at test time, are built here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#define RUNTIME ATTEST_EVENT_DSTACK_RUNTIME
#define CRABBOX_APP_ID "944edab771280ede410e7b9e66fcaee6b2c4a12c"

/* ------------------------------------------------------------------ helpers */

static uint8_t *shared_read(const char *rel, size_t *len)
{
	char path[1024];
	uint8_t *d = NULL;

	snprintf(path, sizeof(path), "%s/%s", TDXR_SHARED_TESTDATA, rel);
	if (tdxr_file_read(path, 64u << 20, &d, len, NULL) != 0)
		return NULL;
	return d;
}

#define SHARED_OR_SKIP(var, rel, lenp)                                                                       \
	do {                                                                                                 \
		(var) = shared_read((rel), (lenp));                                                          \
		if ((var) == NULL) {                                                                         \
			print_message("skip: %s/%s absent\n", TDXR_SHARED_TESTDATA, (rel));                  \
			skip();                                                                              \
		}                                                                                            \
	} while (0)

static int evidence_str(const char *s, struct attest_evidence **e, struct tdxr_err *err)
{
	return attest_evidence_parse((const uint8_t *)s, strlen(s), e, err);
}

static struct attest_evidence *evidence_ok(const uint8_t *p, size_t len)
{
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };

	if (attest_evidence_parse(p, len, &e, &err) != 0)
		fail_msg("evidence: %s", err.msg);
	return e;
}

static void expect_einval(const char *s, const char *needle)
{
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };
	int rc = evidence_str(s, &e, &err);

	if (rc != TDXR_EINVAL)
		fail_msg("expected EINVAL for %.200s, got %d (%s)", s, rc, err.msg);
	assert_null(e);
	if (needle != NULL && strstr(err.msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static struct attest_quote *quote_of(const uint8_t *bin, size_t len)
{
	struct attest_quote *q = NULL;
	struct tdxr_err err = { 0 };

	if (attest_quote_parse(bin, len, &q, &err) != 0)
		fail_msg("quote: %s", err.msg);
	return q;
}

static char *json_text(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT);

	assert_non_null(s);
	return s;
}

/* A hand-built log of RTMR3 runtime events (name, payload text). */
static struct attest_eventlog *runtime_log(const char *const *ev, size_t n)
{
	struct attest_eventlog *log = calloc(1, sizeof(*log));
	size_t i;

	assert_non_null(log);
	log->events = calloc(n, sizeof(*log->events));
	assert_non_null(log->events);
	for (i = 0; i < n; i++) {
		log->events[i].imr = 3;
		log->events[i].event_type = RUNTIME;
		log->events[i].event = strdup(ev[2 * i]);
		log->events[i].payload = (uint8_t *)strdup(ev[2 * i + 1]);
		log->events[i].payload_len = strlen(ev[2 * i + 1]);
	}
	log->n = n;
	return log;
}

/* ------------------------------------------------- manifest event_log_replay */

static int mf_fail(size_t idx, const char *what, const char *detail)
{
	print_message("manifest event_log_replay[%zu]: FAIL: %s %s\n", idx, what, detail ? detail : "");
	return 1;
}

/* Checks one manifest entry; returns 0 when every listed property holds. */
static int manifest_entry(size_t idx, json_t *m)
{
	const char *file = json_string_value(json_object_get(m, "event_log"));
	const char *fmt = json_string_value(json_object_get(m, "format"));
	const char *qfile = json_string_value(json_object_get(m, "quote"));
	json_t *v;
	char rel[512], *paren, hex[97];
	struct attest_eventlog *log = NULL;
	struct attest_evidence *e = NULL, *dec = NULL;
	struct attest_quote *q = NULL;
	struct attest_dstack_identity id;
	struct tdxr_err err = { 0 };
	uint8_t *d = NULL, *qf = NULL, *qbin = NULL, rtmr[4][48];
	size_t len = 0, qlen = 0, qbin_len = 0, i, k;
	int bad = 0;

	snprintf(rel, sizeof(rel), "tdx/%s", file);
	paren = strstr(rel, " (");
	if (paren)
		*paren = '\0';
	d = shared_read(rel, &len);
	if (d == NULL)
		return mf_fail(idx, "cannot read", rel);
	if (strstr(fmt, "raw") != NULL) {
		if (attest_eventlog_parse_ccel(d, len, &log, &err) != 0) {
			bad = mf_fail(idx, "CCEL:", err.msg);
			goto out;
		}
	} else {
		if (attest_evidence_parse(d, len, &e, &err) != 0 || e->eventlog == NULL) {
			bad = mf_fail(idx, "evidence:", e ? "no event log" : err.msg);
			goto out;
		}
		log = e->eventlog;
	}
	if (qfile != NULL) {
		snprintf(rel, sizeof(rel), "tdx/%s", qfile);
		qf = shared_read(rel, &qlen);
		if (qf == NULL || attest_quote_load(qf, qlen, &qbin, &qbin_len, &err) != 0) {
			bad = mf_fail(idx, "cannot load quote", rel);
			goto out;
		}
	} else if (e != NULL && e->quote != NULL) {
		qbin = malloc(e->quote_len);
		memcpy(qbin, e->quote, e->quote_len);
		qbin_len = e->quote_len;
	}
	if (qbin != NULL && attest_quote_parse(qbin, qbin_len, &q, &err) != 0) {
		bad = mf_fail(idx, "quote:", err.msg);
		goto out;
	}
	v = json_object_get(m, "events");
	if (v != NULL && (size_t)json_integer_value(v) != log->n) {
		snprintf(rel, sizeof(rel), "%zu events, manifest says %lld", log->n,
		         (long long)json_integer_value(v));
		bad |= mf_fail(idx, "count:", rel);
	}
	if (attest_eventlog_check_digests(log, &err) != 0)
		bad |= mf_fail(idx, "digests:", err.msg);
	if (attest_eventlog_replay(log, rtmr, &err) != 0) {
		bad |= mf_fail(idx, "replay:", err.msg);
		goto out;
	}
	if (json_is_true(json_object_get(m, "rtmr0_3_match_quote")) ||
	    json_is_true(json_object_get(m, "rtmr3_match_quote"))) {
		size_t from = json_is_true(json_object_get(m, "rtmr0_3_match_quote")) ? 0 : 3;

		if (q == NULL)
			bad |= mf_fail(idx, "no quote to compare with", NULL);
		for (i = from; q != NULL && i < 4; i++)
			if (memcmp(rtmr[i], q->td.rtmr[i], 48) != 0) {
				snprintf(rel, sizeof(rel), "RTMR%zu", i);
				bad |= mf_fail(idx, rel, "differs from the quote");
			}
	}
	for (i = 0; i < 4; i++) {
		char key[8];
		const char *want;

		snprintf(key, sizeof(key), "rtmr%zu", i);
		want = json_string_value(json_object_get(m, key));
		if (want == NULL)
			continue;
		tdxr_hex_encode(rtmr[i], 48, hex);
		if (strcmp(hex, want) != 0)
			bad |= mf_fail(idx, key, hex);
	}
	v = json_object_get(m, "runtime_events");
	if (json_is_array(v)) {
		for (i = 0, k = 0; i < log->n; i++) {
			if (log->events[i].event_type != RUNTIME)
				continue;
			if (k >= json_array_size(v) ||
			    strcmp(log->events[i].event, json_string_value(json_array_get(v, k))) != 0)
				bad |= mf_fail(idx, "runtime event name", log->events[i].event);
			k++;
		}
		if (k != json_array_size(v))
			bad |= mf_fail(idx, "runtime event count differs", NULL);
	}
	if (json_is_true(json_object_get(m, "compose_hash_is_sha256_app_compose"))) {
		char h[65];

		if (e == NULL || e->app_compose == NULL || attest_dstack_identity_get(log, &id, &err) != 0) {
			bad |= mf_fail(idx, "no app_compose or identity", err.msg);
		} else {
			attest_compose_hash(e->app_compose, strlen(e->app_compose), h);
			if (strcmp(h, id.compose_hash) != 0)
				bad |= mf_fail(idx, "compose-hash event is not SHA-256(app_compose)", h);
		}
	}
	v = json_object_get(m, "mr_aggregated");
	if (json_is_string(v) && q != NULL) {
		/* dstack: SHA-256(MRTD || RTMR0..2 || replayed RTMR3 [|| MRCONFIGID, MROWNER,
		 * MROWNERCONFIG when any is non-zero]) */
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		uint8_t md[32], z[48] = { 0 };
		char h[65];

		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		EVP_DigestUpdate(ctx, q->td.mrtd, 48);
		EVP_DigestUpdate(ctx, q->td.rtmr, 3 * 48);
		EVP_DigestUpdate(ctx, rtmr[3], 48);
		if (memcmp(q->td.mrconfigid, z, 48) || memcmp(q->td.mrowner, z, 48) ||
		    memcmp(q->td.mrownerconfig, z, 48)) {
			EVP_DigestUpdate(ctx, q->td.mrconfigid, 48);
			EVP_DigestUpdate(ctx, q->td.mrowner, 48);
			EVP_DigestUpdate(ctx, q->td.mrownerconfig, 48);
		}
		EVP_DigestFinal_ex(ctx, md, NULL);
		EVP_MD_CTX_free(ctx);
		tdxr_hex_encode(md, 32, h);
		if (strcmp(h, json_string_value(v)) != 0)
			bad |= mf_fail(idx, "mr_aggregated", h);
	}
	v = json_object_get(m, "decoded");
	if (json_is_string(v)) {
		uint8_t *dd;
		size_t dlen;
		char *j1 = NULL, *j2 = NULL;

		snprintf(rel, sizeof(rel), "tdx/%s", json_string_value(v));
		dd = shared_read(rel, &dlen);
		if (dd == NULL || attest_evidence_parse(dd, dlen, &dec, &err) != 0 || dec->eventlog == NULL ||
		    attest_eventlog_to_json(dec->eventlog, &j1, &err) != 0 ||
		    attest_eventlog_to_json(log, &j2, &err) != 0 || strcmp(j1, j2) != 0 ||
		    dec->quote_len != e->quote_len || memcmp(dec->quote, e->quote, e->quote_len) != 0)
			bad |= mf_fail(idx, "SCALE decoding differs from", rel);
		free(j1);
		free(j2);
		free(dd);
	}
	if (!bad)
		print_message("manifest event_log_replay[%zu] %s: PASS (%zu events)\n", idx, file, log->n);
out:
	if (e == NULL)
		attest_eventlog_free(log);
	attest_evidence_free(e);
	attest_evidence_free(dec);
	attest_quote_free(q);
	free(qbin);
	free(qf);
	free(d);
	return bad;
}

static void test_manifest_event_log_replays_all_pass(void **state)
{
	json_t *root, *arr;
	uint8_t *d;
	size_t len, i, failed = 0;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/manifest.json", &len);
	root = json_loadb((const char *)d, len, 0, NULL);
	assert_non_null(root);
	arr = json_object_get(root, "event_log_replay");
	assert_true(json_array_size(arr) > 0);
	for (i = 0; i < json_array_size(arr); i++)
		failed += (size_t)manifest_entry(i, json_array_get(arr, i));
	print_message("manifest event_log_replay: %zu of %zu pass\n", json_array_size(arr) - failed,
	              json_array_size(arr));
	assert_int_equal(failed, 0);
	json_decref(root);
	free(d);
}

/* ------------------------------------------------------ crabbox Info sample */

static void test_crabbox_info_identity_and_ratls_binding(void **state)
{
	struct attest_evidence *e;
	struct attest_dstack_identity id;
	struct attest_quote *q;
	struct tdxr_err err = { 0 };
	uint8_t *d, *ref, rd[64], rtmr[4][48];
	size_t len, rlen, i;
	char h[65];

	(void)state;
	SHARED_OR_SKIP(d, "crabbox/real_attestation_info.json", &len);
	SHARED_OR_SKIP(ref, "crabbox/real_tdx_quote.bin", &rlen);
	e = evidence_ok(d, len);
	assert_string_equal(e->app_id, CRABBOX_APP_ID);
	assert_string_equal(e->instance_id, "ce0b8b919dcf82cdcd06ced46d28c9113137fc3d");
	assert_non_null(e->app_cert);
	assert_non_null(e->app_compose);
	/* the quote is the one in the app certificate's extension 1.3.6.1.4.1.62397.1.1 */
	assert_int_equal(e->quote_len, rlen);
	assert_memory_equal(e->quote, ref, rlen);
	assert_int_equal(e->eventlog->n, 30);
	assert_int_equal(attest_eventlog_check_digests(e->eventlog, &err), 0);
	assert_int_equal(attest_eventlog_replay(e->eventlog, rtmr, &err), 0);
	q = quote_of(e->quote, e->quote_len);
	for (i = 0; i < 4; i++)
		assert_memory_equal(rtmr[i], q->td.rtmr[i], 48);

	assert_int_equal(attest_dstack_identity_get(e->eventlog, &id, &err), 0);
	assert_string_equal(id.app_id, CRABBOX_APP_ID);
	assert_string_equal(id.instance_id, e->instance_id);
	assert_string_equal(id.os_image_hash,
	                    "de9c74f0c85d0820ce075cb4a99f8e39f7b681be632907c5bf8bdc95ea72feb9");
	assert_true(id.system_ready);
	assert_true(strncmp(id.key_provider, "{\"name\":\"kms\"", 13) == 0);
	attest_compose_hash(e->app_compose, strlen(e->app_compose), h);
	assert_string_equal(h, id.compose_hash);
	assert_string_equal(h, "609b684c8e7b2f31e3198885cfd5569c88feb33bec7ed18270791f13bb0f7449");

	/* The binding that holds for this sample (checked, not assumed): the quote's
	 * REPORTDATA is exactly SHA-512("ratls-cert:" || DER SPKI of the leaf app
	 * certificate), all 64 bytes, no padding - dstack QuoteContentType::RaTlsCert. */
	assert_int_equal(attest_ratls_report_data(e->app_cert, strlen(e->app_cert), rd, &err), 0);
	assert_memory_equal(rd, q->td.report_data, 64);
	attest_quote_free(q);
	attest_evidence_free(e);
	free(ref);
	free(d);
}

/* Phala Cloud GET /cvms/{id}/attestation, built from the crabbox sample's parts. */
static void test_phala_cloud_attestation_form(void **state)
{
	struct attest_evidence *e, *bad = NULL;
	struct tdxr_err err = { 0 };
	json_t *info, *tcb, *resp, *certs;
	uint8_t *d, *ref;
	size_t len, rlen;
	char *qhex, *text;

	(void)state;
	SHARED_OR_SKIP(d, "crabbox/real_attestation_info.json", &len);
	SHARED_OR_SKIP(ref, "crabbox/real_tdx_quote.bin", &rlen);
	info = json_loadb((const char *)d, len, 0, NULL);
	tcb = json_loads(json_string_value(json_object_get(info, "tcb_info")), 0, NULL);
	assert_non_null(tcb);
	qhex = tdxr_hex_strdup(ref, rlen);
	certs =
	    json_pack("[{s:{s:s},s:s,s:s,s:i},{s:{s:s},s:n,s:n,s:i}]", "subject", "common_name", "demo-cert",
	              "quote", qhex, "app_id", CRABBOX_APP_ID, "position_in_chain", 0, "subject",
	              "common_name", "Dstack App CA", "quote", "app_id", "position_in_chain", 1);
	resp = json_pack("{s:s,s:b,s:b,s:n,s:O,s:O,s:s}", "name", "crabbox", "is_online", 1, "is_public", 1,
	                 "error", "app_certificates", certs, "tcb_info", tcb, "compose_file", "{}");
	text = json_text(resp);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_memory_equal(e->quote, ref, rlen);
	assert_string_equal(e->app_id, CRABBOX_APP_ID);
	assert_int_equal(e->eventlog->n, 30);
	assert_non_null(e->app_compose);
	assert_null(e->app_cert);
	attest_evidence_free(e);
	free(text);

	/* a second certificate with another quote makes the response ambiguous */
	json_object_set_new(json_array_get(certs, 1), "quote", json_string("0400"));
	text = json_text(resp);
	assert_int_equal(evidence_str(text, &bad, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "differs"));
	assert_null(bad);
	free(text);
	json_decref(resp);
	json_decref(certs);
	json_decref(tcb);
	json_decref(info);
	free(qhex);
	free(ref);
	free(d);
}

static void test_info_variants_tcb_info_object_and_hidden(void **state)
{
	struct attest_evidence *e;
	json_t *info, *tcb;
	uint8_t *d;
	size_t len;
	char *text;

	(void)state;
	SHARED_OR_SKIP(d, "crabbox/real_attestation_info.json", &len);
	info = json_loadb((const char *)d, len, 0, NULL);
	tcb = json_loads(json_string_value(json_object_get(info, "tcb_info")), 0, NULL);
	json_object_set_new(info, "tcb_info", tcb); /* object instead of its text */
	text = json_text(info);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_int_equal(e->eventlog->n, 30);
	assert_non_null(e->quote);
	attest_evidence_free(e);
	free(text);
	/* public_tcbinfo = false: tcb_info "" - the quote still comes from the cert */
	json_object_set_new(info, "tcb_info", json_string(""));
	text = json_text(info);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_null(e->eventlog);
	assert_null(e->app_compose);
	assert_non_null(e->quote);
	attest_evidence_free(e);
	free(text);
	/* tappd-era Info: the same shape */
	json_object_set_new(info, "public_logs", json_true());
	json_object_del(info, "cloud_vendor");
	text = json_text(info);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_non_null(e->quote);
	attest_evidence_free(e);
	free(text);
	json_decref(info);
	free(d);
}

static void test_getquote_and_tappd_quote_forms(void **state)
{
	struct attest_evidence *e;
	json_t *root;
	uint8_t *d;
	size_t len;
	char *text, *ox;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/verifier-tdx-lite-getquote.json", &len);
	e = evidence_ok(d, len);
	assert_non_null(e->quote);
	assert_int_equal(e->quote_len, 5006);
	assert_int_equal(e->eventlog->n, 29);
	assert_null(e->app_id);
	assert_null(e->app_cert);
	attest_evidence_free(e);
	/* tappd TdxQuote: 0x-prefixed quote, hash_algorithm/prefix fields */
	root = json_loadb((const char *)d, len, 0, NULL);
	len = json_string_length(json_object_get(root, "quote")) + 3;
	ox = malloc(len);
	snprintf(ox, len, "0x%s", json_string_value(json_object_get(root, "quote")));
	json_object_set_new(root, "quote", json_string(ox));
	json_object_set_new(root, "hash_algorithm", json_string("sha512"));
	json_object_set_new(root, "prefix", json_string("app-data:"));
	text = json_text(root);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_int_equal(e->quote_len, 5006);
	attest_evidence_free(e);
	free(text);
	/* event_log as an array (simulator style) */
	json_object_set_new(root, "event_log",
	                    json_loads(json_string_value(json_object_get(root, "event_log")), 0, NULL));
	text = json_text(root);
	e = evidence_ok((const uint8_t *)text, strlen(text));
	assert_int_equal(e->eventlog->n, 29);
	attest_evidence_free(e);
	free(text);
	free(ox);
	json_decref(root);
	free(d);
}

/* ------------------------------------------------------------------ SCALE */

static void test_scale_simulator_binary_hex_and_wrapped(void **state)
{
	struct attest_evidence *a, *b, *c;
	uint8_t *d;
	size_t len;
	char *hex, *wrapped;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/simulator-attestation.bin", &len);
	a = evidence_ok(d, len);
	assert_int_equal(a->eventlog->n, 33);
	assert_int_equal(a->quote_len, 5010);
	hex = tdxr_hex_strdup(d, len);
	b = evidence_ok((const uint8_t *)hex, strlen(hex));
	wrapped = malloc(strlen(hex) + 32);
	snprintf(wrapped, strlen(hex) + 32, "{\"attestation\":\"%s\"}", hex);
	c = evidence_ok((const uint8_t *)wrapped, strlen(wrapped));
	assert_int_equal(b->eventlog->n, 33);
	assert_int_equal(c->eventlog->n, 33);
	assert_memory_equal(a->quote, b->quote, a->quote_len);
	assert_memory_equal(a->quote, c->quote, a->quote_len);
	attest_evidence_free(a);
	attest_evidence_free(b);
	attest_evidence_free(c);
	free(wrapped);
	free(hex);
	free(d);
}

static void test_scale_every_truncation_is_rejected(void **state)
{
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d;
	size_t len, cut;
	int rc;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/simulator-attestation.bin", &len);
	for (cut = 1; cut < len; cut += (cut < 5200 ? 1 : 7)) {
		rc = attest_evidence_parse(d, cut, &e, &err);
		if (rc != TDXR_EINVAL)
			fail_msg("cut at %zu: rc %d", cut, rc);
		assert_null(e);
	}
	/* one trailing byte is rejected too */
	{
		uint8_t *x = malloc(len + 1);

		memcpy(x, d, len);
		x[len] = 0;
		assert_int_equal(attest_evidence_parse(x, len + 1, &e, &err), TDXR_EINVAL);
		assert_non_null(strstr(err.msg, "trailing"));
		free(x);
	}
	free(d);
}

/* SCALE builder for synthetic attestations. */
struct sb {
	uint8_t b[8192];
	size_t n;
};

static void sb_mem(struct sb *s, const void *p, size_t n)
{
	assert_true(s->n + n <= sizeof(s->b));
	if (n)
		memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void sb_u8(struct sb *s, uint8_t v)
{
	sb_mem(s, &v, 1);
}

static void sb_u32(struct sb *s, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	sb_mem(s, b, 4);
}

static void sb_compact(struct sb *s, uint32_t v)
{
	if (v < 64) {
		sb_u8(s, (uint8_t)(v << 2));
	} else if (v < (1u << 14)) {
		sb_u8(s, (uint8_t)((v << 2) | 1));
		sb_u8(s, (uint8_t)(v >> 6));
	} else {
		sb_u32(s, (v << 2) | 2);
	}
}

static void sb_vec(struct sb *s, const void *p, size_t n)
{
	sb_compact(s, (uint32_t)n);
	sb_mem(s, p, n);
}

static void sb_str(struct sb *s, const char *str)
{
	sb_vec(s, str, strlen(str));
}

static void sb_event(struct sb *s, uint32_t imr, uint32_t type, size_t dlen, const char *name, const char *pl)
{
	uint8_t dg[48];

	memset(dg, 0x5a, sizeof(dg));
	sb_u32(s, imr);
	sb_u32(s, type);
	sb_vec(s, dg, dlen);
	sb_str(s, name);
	sb_str(s, pl);
}

/* V0 / DstackTdx with a short fake quote and the given tail callback state. */
static void sb_head(struct sb *s, uint32_t nevents)
{
	s->n = 0;
	sb_u8(s, 0);
	sb_u8(s, 0);
	sb_vec(s, "\x04\x00quote", 7);
	sb_compact(s, nevents);
}

static void sb_tail(struct sb *s)
{
	uint8_t rd[64] = { 0 };

	sb_mem(s, rd, 64);
	sb_str(s, "{}");
}

static int sb_parse(struct sb *s, struct attest_evidence **e, struct tdxr_err *err)
{
	return attest_evidence_parse(s->b, s->n, e, err);
}

static void test_scale_synthetic_shapes(void **state)
{
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };
	struct sb s;

	(void)state;
	/* runtime events carried only in runtime_events are appended as RTMR3 events */
	sb_head(&s, 1);
	sb_event(&s, 0, 4, 48, "", "abcd");
	sb_compact(&s, 2);
	sb_str(&s, "app-id");
	sb_str(&s, "\x01\x02");
	sb_str(&s, "system-ready");
	sb_str(&s, "");
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), 0);
	assert_int_equal(e->quote_len, 7);
	assert_int_equal(e->eventlog->n, 3);
	assert_int_equal(e->eventlog->events[1].imr, 3);
	assert_string_equal(e->eventlog->events[1].event, "app-id");
	assert_int_equal(attest_eventlog_check_digests(e->eventlog, &err), 0);
	attest_evidence_free(e);
	e = NULL;

	/* runtime_events that disagree with the log's runtime events */
	sb_head(&s, 1);
	sb_event(&s, 3, RUNTIME, 0, "app-id", "\x01\x02");
	sb_compact(&s, 1);
	sb_str(&s, "app-id");
	sb_str(&s, "\x01\x03");
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "runtime event 0 differs"));
	/* ... or in number */
	sb_head(&s, 1);
	sb_event(&s, 3, RUNTIME, 0, "app-id", "\x01\x02");
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* a non-runtime event without a digest */
	sb_head(&s, 1);
	sb_event(&s, 0, 4, 0, "", "");
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "digest"));
	/* a 32-byte digest */
	sb_head(&s, 1);
	sb_event(&s, 0, 4, 32, "", "");
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* imr 7 */
	sb_head(&s, 1);
	sb_event(&s, 7, 4, 48, "", "");
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* name not UTF-8, name with NUL */
	sb_head(&s, 1);
	sb_event(&s, 3, RUNTIME, 0, "\xff\xfe", "");
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	sb_head(&s, 1);
	sb_u32(&s, 3);
	sb_u32(&s, RUNTIME);
	sb_compact(&s, 0);
	sb_vec(&s, "a\0b", 3);
	sb_compact(&s, 0);
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* huge event count */
	sb_head(&s, 0);
	s.n--;
	sb_u32(&s, (0x3fffffffu << 2) | 2);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* non-canonical compact length (1 written in two-byte mode) */
	s.n = 0;
	sb_u8(&s, 0);
	sb_u8(&s, 0);
	sb_u8(&s, (1 << 2) | 1);
	sb_u8(&s, 0);
	sb_mem(&s, "q", 1);
	sb_compact(&s, 0);
	sb_compact(&s, 0);
	sb_tail(&s);
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	/* unsupported quote variant (DstackGcpTdx) and the msgpack V1 format */
	sb_head(&s, 0);
	s.b[1] = 1;
	assert_int_equal(sb_parse(&s, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "variant 1"));
	assert_int_equal(attest_evidence_parse((const uint8_t *)"\x85\xa1q", 3, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "msgpack"));
	assert_null(e);
}

/* --------------------------------------------- RA-TLS cert made at test time */

/* Self-signed P-256 certificate; ext_der (a DER value) goes into extension oid
 * `copies` times. Returns PEM text; *key_out gets the key. */
static char *make_cert(const char *oid, const uint8_t *ext_der, size_t ext_len, int copies,
                       EVP_PKEY **key_out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem, *p;
	long n;
	int i;

	assert_true(key && x && nm && obj && os && bio);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"test-ratls", -1, -1, 0);
	X509_set_subject_name(x, nm);
	X509_set_issuer_name(x, nm);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	ASN1_OCTET_STRING_set(os, ext_der, (int)ext_len);
	for (i = 0; i < copies; i++) {
		X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os);

		assert_non_null(ext);
		assert_true(X509_add_ext(x, ext, -1));
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	PEM_write_bio_X509(bio, x);
	n = BIO_get_mem_data(bio, &p);
	pem = strndup(p, (size_t)n);
	BIO_free(bio);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
	X509_NAME_free(nm);
	X509_free(x);
	*key_out = key;
	return pem;
}

/* DER OCTET STRING around p[n] (n < 65536). */
static size_t der_octets(const uint8_t *p, size_t n, uint8_t *out)
{
	out[0] = 0x04;
	out[1] = 0x82;
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	memcpy(out + 4, p, n);
	return n + 4;
}

static void test_ratls_cert_extension_and_report_data(void **state)
{
	static const uint8_t fake_quote[] = "\x04\x00not really a quote, but the extension carries bytes";
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };
	EVP_PKEY *key;
	uint8_t der[256], rd[64], want[64], *spki = NULL, *in;
	size_t dlen = der_octets(fake_quote, sizeof(fake_quote), der);
	char *pem, *text;
	json_t *o;
	int slen;
	EVP_MD_CTX *ctx;

	(void)state;
	pem = make_cert("1.3.6.1.4.1.62397.1.1", der, dlen, 1, &key);
	o = json_pack("{s:s,s:s,s:s,s:s}", "app_id", "00ff", "instance_id", "", "app_cert", pem, "tcb_info",
	              "");
	text = json_text(o);
	assert_int_equal(evidence_str(text, &e, &err), 0);
	assert_int_equal(e->quote_len, sizeof(fake_quote));
	assert_memory_equal(e->quote, fake_quote, sizeof(fake_quote));
	assert_string_equal(e->app_id, "00ff");
	assert_null(e->instance_id);
	attest_evidence_free(e);
	e = NULL;
	free(text);

	/* REPORTDATA = SHA-512("ratls-cert:" || SPKI DER), SPKI taken here from the key */
	assert_int_equal(attest_ratls_report_data(pem, strlen(pem), rd, &err), 0);
	slen = i2d_PUBKEY(key, NULL);
	spki = malloc((size_t)slen);
	in = spki;
	i2d_PUBKEY(key, &in);
	ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha512(), NULL);
	EVP_DigestUpdate(ctx, "ratls-cert:", 11);
	EVP_DigestUpdate(ctx, spki, (size_t)slen);
	EVP_DigestFinal_ex(ctx, want, NULL);
	EVP_MD_CTX_free(ctx);
	assert_memory_equal(rd, want, 64);
	free(spki);
	EVP_PKEY_free(key);
	free(pem);
	json_decref(o);

	/* the extension's bytes not wrapped in an OCTET STRING */
	pem = make_cert("1.3.6.1.4.1.62397.1.1", fake_quote, sizeof(fake_quote), 1, &key);
	o = json_pack("{s:s}", "app_cert", pem);
	text = json_text(o);
	assert_int_equal(evidence_str(text, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "OCTET STRING"));
	free(text);
	json_decref(o);
	EVP_PKEY_free(key);
	free(pem);
	/* the extension twice */
	pem = make_cert("1.3.6.1.4.1.62397.1.1", der, dlen, 2, &key);
	o = json_pack("{s:s}", "app_cert", pem);
	text = json_text(o);
	assert_int_equal(evidence_str(text, &e, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "twice"));
	free(text);
	json_decref(o);
	EVP_PKEY_free(key);
	free(pem);
	/* a certificate without the extension: evidence without a quote */
	pem = make_cert("1.3.6.1.4.1.62397.1.3", der, dlen, 1, &key);
	o = json_pack("{s:s}", "app_cert", pem);
	text = json_text(o);
	assert_int_equal(evidence_str(text, &e, &err), 0);
	assert_null(e->quote);
	attest_evidence_free(e);
	e = NULL;
	free(text);
	json_decref(o);
	EVP_PKEY_free(key);
	free(pem);
	/* newer dstack: the stripped SCALE attestation in extension .1.8; its log is
	 * used only when the response has none of its own */
	{
		static uint8_t big[8200];
		struct sb sc;
		size_t blen;

		sb_head(&sc, 0);
		sb_compact(&sc, 1);
		sb_str(&sc, "app-id");
		sb_str(&sc, "\x0a\x0b");
		sb_tail(&sc);
		blen = der_octets(sc.b, sc.n, big);
		pem = make_cert("1.3.6.1.4.1.62397.1.8", big, blen, 1, &key);
		o = json_pack("{s:s}", "app_cert", pem);
		text = json_text(o);
		assert_int_equal(evidence_str(text, &e, &err), 0);
		assert_int_equal(e->quote_len, 7);
		assert_memory_equal(e->quote, "\x04\x00quote", 7);
		assert_int_equal(e->eventlog->n, 1);
		assert_string_equal(e->eventlog->events[0].event, "app-id");
		attest_evidence_free(e);
		e = NULL;
		free(text);
		json_decref(o);
		o = json_pack("{s:s,s:s}", "app_cert", pem, "tcb_info", "{\"event_log\":[]}");
		text = json_text(o);
		assert_int_equal(evidence_str(text, &e, &err), 0);
		assert_int_equal(e->eventlog->n, 0);
		attest_evidence_free(e);
		e = NULL;
		free(text);
		json_decref(o);
		EVP_PKEY_free(key);
		free(pem);
	}
	/* not a certificate */
	{
		static const char junk[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

		assert_int_equal(attest_ratls_report_data(junk, strlen(junk), rd, &err), TDXR_EINVAL);
		assert_non_null(strstr(err.msg, "cannot be decoded"));
		assert_int_equal(attest_ratls_report_data(junk, sizeof(junk), rd, &err), TDXR_EINVAL);
		assert_non_null(strstr(err.msg, "NUL"));
		assert_int_equal(attest_ratls_report_data("text\n-----BEGIN CERTIFICATE-----", 32, rd, &err),
		                 TDXR_EINVAL);
		assert_non_null(strstr(err.msg, "does not start"));
	}
	expect_einval("{\"app_cert\":\"not a pem\"}", "app_cert");
}

/* ---------------------------------------------------------------- identity */

static void test_identity_ignores_events_after_system_ready(void **state)
{
	static const char *const ev[] = { "system-preparing", "",     "app-id",       "\x01\x02",
		                          "compose-hash",     "\xaa", "key-provider", "{\"name\":\"kms\"}",
		                          "system-ready",     "",     "app-id",       "\x66\x66",
		                          "instance-id",      "\x77" };
	struct attest_eventlog *log = runtime_log(ev, 7);
	struct attest_dstack_identity id;
	struct tdxr_err err = { 0 };

	(void)state;
	assert_int_equal(attest_dstack_identity_get(log, &id, &err), 0);
	assert_string_equal(id.app_id, "0102");
	assert_string_equal(id.compose_hash, "aa");
	assert_string_equal(id.instance_id, ""); /* only after system-ready: does not count */
	assert_string_equal(id.os_image_hash, "");
	assert_string_equal(id.key_provider, "{\"name\":\"kms\"}");
	assert_true(id.system_ready);
	attest_eventlog_free(log);
}

static void test_identity_duplicate_before_system_ready_is_rejected(void **state)
{
	static const char *const ev[] = { "app-id", "\x01", "compose-hash", "\xaa",
		                          "app-id", "\x02", "system-ready", "" };
	struct attest_eventlog *log = runtime_log(ev, 4);
	struct attest_dstack_identity id;
	struct tdxr_err err = { 0 };

	(void)state;
	memset(&id, 0x41, sizeof(id));
	assert_int_equal(attest_dstack_identity_get(log, &id, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "\"app-id\" event (event 2)"));
	assert_string_equal(id.app_id, ""); /* cleared, not half-filled */
	attest_eventlog_free(log);
}

static void test_identity_only_counts_rtmr3_runtime_events(void **state)
{
	static const char *const ev[] = { "app-id", "\x01", "app-id", "\x02", "compose-hash", "\x03" };
	struct attest_eventlog *log = runtime_log(ev, 3);
	struct attest_dstack_identity id;
	struct tdxr_err err = { 0 };
	uint8_t big[65];

	(void)state;
	log->events[0].imr = 2;          /* not RTMR3 */
	log->events[2].event_type = 0xd; /* not a runtime event */
	assert_int_equal(attest_dstack_identity_get(log, &id, &err), 0);
	assert_string_equal(id.app_id, "02");
	assert_string_equal(id.compose_hash, "");
	assert_false(id.system_ready);
	/* a 65-byte hash payload does not fit */
	memset(big, 1, sizeof(big));
	free(log->events[1].payload);
	log->events[1].payload = malloc(sizeof(big));
	memcpy(log->events[1].payload, big, sizeof(big));
	log->events[1].payload_len = sizeof(big);
	assert_int_equal(attest_dstack_identity_get(log, &id, &err), TDXR_EINVAL);
	attest_eventlog_free(log);
}

static void test_compose_hash_is_sha256_hex(void **state)
{
	char h[65];

	(void)state;
	attest_compose_hash("", 0, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	attest_compose_hash("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ------------------------------------------------------- malformed evidence */

static void test_malformed_evidence_is_rejected(void **state)
{
	struct attest_evidence *e = NULL;
	struct tdxr_err err = { 0 };

	(void)state;
	expect_einval("", "empty");
	expect_einval("   \n", "empty");
	expect_einval("[]", "not an object");
	expect_einval("{}", "none of");
	expect_einval(
	    "{\"name\":\"x\",\"error\":\"CVM is offline\",\"app_certificates\":null,\"tcb_info\":null}",
	    "CVM is offline");
	expect_einval("{\"quote\":\"zz\"}", "not valid hex");
	expect_einval("{\"quote\":\"abc\"}", "not valid hex");
	expect_einval("{\"quote\":\"\"}", "empty");
	expect_einval("{\"quote\":5}", "not a string");
	expect_einval("{\"quote\":\"00\",\"event_log\":5}", "event_log");
	expect_einval("{\"quote\":\"00\",\"event_log\":\"{}\"}", "not a JSON array");
	expect_einval("{\"quote\":\"00\",\"event_log\":[{\"imr\":9}]}", "imr");
	expect_einval("{\"event_log\":[],\"tcb_info\":{\"event_log\":[]}}", "two event logs");
	expect_einval("{\"tcb_info\":5}", "tcb_info");
	expect_einval("{\"tcb_info\":\"{not json\"}", "tcb_info is not valid JSON");
	expect_einval("{\"tcb_info\":\"[]\"}", "tcb_info is not a JSON object");
	expect_einval("{\"tcb_info\":{\"app_compose\":7}}", "app_compose");
	expect_einval("{\"quote\":\"00\",\"app_id\":\"xyz\"}", "app_id is not hex");
	expect_einval("{\"quote\":\"00\",\"app_id\":\"00\",\"app_certificates\":[{\"app_id\":\"01\"}]}",
	              "two different app_id");
	expect_einval("{\"app_certificates\":{}}", "not an array");
	expect_einval("{\"app_certificates\":[1]}", "not an object");
	expect_einval("{\"quote\":\"00\",\"quote\":\"00\"}", "invalid JSON");
	expect_einval("{\"quote\":\"00\"} x", "invalid JSON");
	expect_einval("zz not anything", "attestation");
	expect_einval("{\"attestation\":\"00 00\"}", "\"attestation\" is not valid hex");
	expect_einval("{\"attestation\":\"\"}", "not valid hex");
	expect_einval("{\"attestation\":\"0000\"}", "quote missing");
	expect_einval("00 0g", "neither JSON");
	/* the quote limit */
	{
		size_t n = 2 * (size_t)TDXR_CAP_QUOTE + 2, i;
		char *s = malloc(n + 16);

		memcpy(s, "{\"quote\":\"", 10);
		for (i = 0; i < n; i++)
			s[10 + i] = '0';
		memcpy(s + 10 + n, "\"}", 3);
		assert_int_equal(evidence_str(s, &e, &err), TDXR_ETOOBIG);
		assert_null(e);
		free(s);
	}
	assert_int_equal(attest_evidence_parse((const uint8_t *)"{}", TDXR_CAP_EVENTLOG + 1u, &e, &err),
	                 TDXR_ETOOBIG);
	/* the minimal valid GetQuote shape */
	assert_int_equal(evidence_str("{\"quote\":\"0400\",\"event_log\":\"[]\"}", &e, &err), 0);
	assert_int_equal(e->quote_len, 2);
	assert_int_equal(e->eventlog->n, 0);
	attest_evidence_free(e);
	attest_evidence_free(NULL);
	attest_eventlog_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_event_log_replays_all_pass),
		cmocka_unit_test(test_crabbox_info_identity_and_ratls_binding),
		cmocka_unit_test(test_phala_cloud_attestation_form),
		cmocka_unit_test(test_info_variants_tcb_info_object_and_hidden),
		cmocka_unit_test(test_getquote_and_tappd_quote_forms),
		cmocka_unit_test(test_scale_simulator_binary_hex_and_wrapped),
		cmocka_unit_test(test_scale_every_truncation_is_rejected),
		cmocka_unit_test(test_scale_synthetic_shapes),
		cmocka_unit_test(test_ratls_cert_extension_and_report_data),
		cmocka_unit_test(test_identity_ignores_events_after_system_ready),
		cmocka_unit_test(test_identity_duplicate_before_system_ready_is_rejected),
		cmocka_unit_test(test_identity_only_counts_rtmr3_runtime_events),
		cmocka_unit_test(test_compose_hash_is_sha256_hex),
		cmocka_unit_test(test_malformed_evidence_is_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
