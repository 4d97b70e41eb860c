/*
 * test_fetch.c - the collateral fetcher (attest/fetch.c).
 *
 * Pure parts first: URL building and the loopback-only http rule, header lookup
 * and percent-decoding, the bounded JSON span scanner, CRL decoding, cache keys
 * and expiry. Then the fetcher end to end against tests/integration/pcs_server.py,
 * a real HTTP server on loopback that serves the real Intel-signed collateral from
 * ../shared/testdata in PCS v4 shapes: byte-exact round trip, cache hit / expiry /
 * corruption, HTTP errors, size caps, timeouts, the API key. Tests that need the
 * shared vectors or python3 skip with a message when those are absent.
 */
#include "attest/fetch.h"

#include "attest/attest.h"
#include "common/buf.h"
#include "common/secret.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "tu_python.h"

#define TDX_COLL TDXR_SHARED_TESTDATA "/tdx/dcap-qvl/tdx_quote_collateral.json"
#define TDX_QUOTE TDXR_SHARED_TESTDATA "/tdx/dcap-qvl/tdx_quote"
#define SGX_COLL TDXR_SHARED_TESTDATA "/tdx/dcap-qvl/sgx_quote_collateral.json"
#define PCS_SERVER TDXR_SOURCE_DIR "/tests/integration/pcs_server.py"
#define TDX_FMSPC "B0C06F000000"
#define TDX_NOW 1751623200    /* manifest.json: inside the collateral's window */
#define TDX_EXPIRY 1752919235 /* PCK CRL nextUpdate 2025-07-19T10:00:35Z, the earliest */
#define SGX_EXPIRY 1752919278 /* QE identity nextUpdate 2025-07-19T10:01:18Z */

static const char *const FIELDS[] = {
	"pck_crl_issuer_chain",     "root_ca_crl", "pck_crl",
	"tcb_info_issuer_chain",    "tcb_info",    "tcb_info_signature",
	"qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
};

/* ================================================================= helpers */

static uint8_t *read_file(const char *path, size_t *len)
{
	uint8_t *d = NULL;

	if (tdxr_file_read(path, TDXR_CAP_COLLATERAL, &d, len, NULL) != 0)
		return NULL;
	return d;
}

static int have_file(const char *path)
{
	return access(path, R_OK) == 0;
}

static json_t *load_json(const char *path)
{
	json_error_t jerr;

	return json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
}

/* ================================================================= URLs */

static void test_url_build_normalises_base(void **state)
{
	char *u = NULL;

	(void)state;
	assert_int_equal(attest_fetch_url_build(NULL, "tdx", "tcb?fmspc=00", &u, NULL), 0);
	assert_string_equal(u, "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00");
	free(u);
	assert_int_equal(attest_fetch_url_build("https://pccs.example:8081/", "sgx", "rootcacrl", &u, NULL),
	                 0);
	assert_string_equal(u, "https://pccs.example:8081/sgx/certification/v4/rootcacrl");
	free(u);
	assert_int_equal(
	    attest_fetch_url_build("https://p.example/sgx/certification/v4/", "tdx", "x", &u, NULL), 0);
	assert_string_equal(u, "https://p.example/tdx/certification/v4/x");
	free(u);
	assert_int_equal(
	    attest_fetch_url_build("https://p.example/tdx/certification/v4", "sgx", "y", &u, NULL), 0);
	assert_string_equal(u, "https://p.example/sgx/certification/v4/y");
	free(u);
	assert_int_equal(attest_fetch_url_build("https://p.example/pccs", "sgx", "y", &u, NULL), 0);
	assert_string_equal(u, "https://p.example/pccs/sgx/certification/v4/y");
	free(u);
	assert_int_equal(attest_fetch_url_build("///", "sgx", "y", &u, NULL), TDXR_EINVAL);
	assert_null(u);
}

static void test_url_check_https_or_loopback_only(void **state)
{
	static const char *const ok[] = {
		"https://api.trustedservices.intel.com/sgx/certification/v4/rootcacrl",
		"HTTPS://pccs.example:8081/x",
		"http://127.0.0.1:8080/sgx/certification/v4/pckcrl?ca=platform",
		"http://localhost/x",
		"http://[::1]:9/x",
		"http://127.0.0.1",
	};
	static const char *const bad[] = {
		"http://example.com/x",
		"http://127.0.0.1.example.com/x",
		"http://127.0.0.1:80@example.com/x",
		"https://user:pw@pccs.example/x",
		"http://localhost:/x",
		"ftp://127.0.0.1/x",
		"https:///x",
		"https://pccs.example/a b",
		"https://pccs.example/a\r\nX: y",
		"https://pccs.example\\@evil/",
		"",
	};
	struct tdxr_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(attest_fetch_url_check(ok[i], NULL), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(attest_fetch_url_check(bad[i], &err), TDXR_EINVAL);
		assert_true(err.msg[0] != '\0');
	}
}

/* ================================================================= headers */

static void test_header_get_is_case_insensitive_and_exact(void **state)
{
	static const char h[] = "HTTP/1.1 200 OK\r\n"
	                        "Content-Type: application/json\r\n"
	                        "SGX-TCB-Info-Issuer-Chain: old\r\n"
	                        "tcb-info-issuer-chain:   new%20value \t\r\n"
	                        "Retry-After: 7\n"
	                        "Empty:\r\n"
	                        "\r\n";
	char *v = NULL;

	(void)state;
	assert_int_equal(attest_fetch_header_get(h, strlen(h), "TCB-Info-Issuer-Chain", &v, NULL), 0);
	assert_string_equal(v, "new%20value");
	free(v);
	assert_int_equal(attest_fetch_header_get(h, strlen(h), "SGX-TCB-Info-Issuer-Chain", &v, NULL), 0);
	assert_string_equal(v, "old");
	free(v);
	assert_int_equal(attest_fetch_header_get(h, strlen(h), "retry-after", &v, NULL), 0);
	assert_string_equal(v, "7");
	free(v);
	assert_int_equal(attest_fetch_header_get(h, strlen(h), "Empty", &v, NULL), 0);
	assert_string_equal(v, "");
	free(v);
	assert_int_equal(attest_fetch_header_get(h, strlen(h), "Info-Issuer-Chain", &v, NULL),
	                 TDXR_ENOTFOUND);
	assert_null(v);
	/* the block is bounded by len, not by a NUL */
	assert_int_equal(attest_fetch_header_get(h, 20, "Content-Type", &v, NULL), TDXR_ENOTFOUND);
}

static void test_header_get_rejects_nul_in_value(void **state)
{
	static const char h[] = "X-A: a\0b\r\n";
	char *v = NULL;

	(void)state;
	assert_int_equal(attest_fetch_header_get(h, sizeof(h) - 1, "X-A", &v, NULL), TDXR_EINVAL);
	assert_null(v);
}

static void test_pct_decode_like_decodeURIComponent(void **state)
{
	static const char enc[] = "-----BEGIN%20CERTIFICATE-----%0AMI+I%2B%2fx";
	static const char *const bad[] = { "%", "%4", "%G1", "a%0", "%00", "x%zz" };
	char *o = NULL;
	size_t n, i;

	(void)state;
	assert_int_equal(attest_fetch_pct_decode(enc, strlen(enc), &o, &n, NULL), 0);
	assert_string_equal(o, "-----BEGIN CERTIFICATE-----\nMI+I+/x");
	assert_int_equal(n, strlen(o));
	free(o);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(attest_fetch_pct_decode(bad[i], strlen(bad[i]), &o, &n, NULL), TDXR_EINVAL);
		assert_null(o);
	}
}

/* ================================================================= JSON span */

static int span(const char *body, const char *key, char *out, size_t cap)
{
	size_t off = 0, n = 0;
	int rc = attest_fetch_json_span((const uint8_t *)body, strlen(body), key, &off, &n, NULL);

	if (rc == 0) {
		assert_true(n < cap);
		memcpy(out, body + off, n);
		out[n] = '\0';
	}
	return rc;
}

static void test_json_span_finds_exact_top_level_bytes(void **state)
{
	char s[256];

	(void)state;
	assert_int_equal(span("{\"tcbInfo\":{\"a\":1},\"signature\":\"00\"}", "tcbInfo", s, sizeof(s)), 0);
	assert_string_equal(s, "{\"a\":1}");
	/* whitespace around tokens is not part of the span; inside it is kept */
	assert_int_equal(span(" \n{ \"signature\" : \"x\" ,\r\n \"tcbInfo\" :\t{ \"a\" : [ 1 , {} ] } }\n",
	                      "tcbInfo", s, sizeof(s)),
	                 0);
	assert_string_equal(s, "{ \"a\" : [ 1 , {} ] }");
	/* braces, brackets and escaped quotes inside strings do not count */
	assert_int_equal(span("{\"a\":\"}]\\\"{\",\"enclaveIdentity\":{\"k\":\"}\\\\\",\"l\":[\"]\"]}}",
	                      "enclaveIdentity", s, sizeof(s)),
	                 0);
	assert_string_equal(s, "{\"k\":\"}\\\\\",\"l\":[\"]\"]}");
	/* a nested key of the same name is not the top-level one */
	assert_int_equal(span("{\"x\":{\"tcbInfo\":{}},\"tcbInfo\":{\"b\":2}}", "tcbInfo", s, sizeof(s)), 0);
	assert_string_equal(s, "{\"b\":2}");
	assert_int_equal(span("{\"x\":{\"tcbInfo\":{}}}", "tcbInfo", s, sizeof(s)), TDXR_ENOTFOUND);
	assert_int_equal(span("{}", "tcbInfo", s, sizeof(s)), TDXR_ENOTFOUND);
}

static void test_json_span_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"tcbInfo\":{\"a\":1}",
		"{\"tcbInfo\":{\"a\":1}}}",
		"{\"tcbInfo\":{\"a\":1}} x",
		"{\"tcbInfo\":{]}",
		"{\"tcbInfo\":{\"a\":\"unterminated}}",
		"{\"tcbInfo\":{\"a\":\"ctl\x01\"}}",
		"{\"tcbInfo\" {}}",
		"{\"tcbInfo\":{},}",
		"{,\"tcbInfo\":{}}",
		"{\"tcbInfo\":\"{}\"}",
		"{\"tcbInfo\":{},\"tcbInfo\":{}}",
		"{tcbInfo:{}}",
		"{\"tcbInfo\":{\"a\":1}\\}",
	};
	char s[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = span(bad[i], "tcbInfo", s, sizeof(s));

		if (rc != TDXR_EINVAL)
			fail_msg("case %zu (%s): got %d, want EINVAL", i, bad[i], rc);
	}
}

static void test_json_span_every_truncation_fails_cleanly(void **state)
{
	static const char body[] =
	    "{\"tcbInfo\":{\"s\":\"a\\\"}\",\"n\":[1,2,{\"x\":null}]},\"signature\":\"ab\"}";
	size_t off, n, cut;
	uint8_t *copy;

	(void)state;
	assert_int_equal(
	    attest_fetch_json_span((const uint8_t *)body, strlen(body), "tcbInfo", &off, &n, NULL), 0);
	for (cut = 0; cut < strlen(body); cut++) {
		/* an exact-size heap copy so ASan catches any read past the end */
		copy = malloc(cut ? cut : 1);
		assert_non_null(copy);
		memcpy(copy, body, cut);
		assert_int_not_equal(attest_fetch_json_span(copy, cut, "tcbInfo", &off, &n, NULL), 0);
		free(copy);
	}
}

static void test_json_span_depth_is_bounded(void **state)
{
	char body[600];
	size_t off, n;
	int i, p = 0;

	(void)state;
	p += snprintf(body + p, sizeof(body) - (size_t)p, "{\"tcbInfo\":");
	for (i = 0; i < 200; i++)
		body[p++] = '[';
	for (i = 0; i < 200; i++)
		body[p++] = ']';
	body[p++] = '}';
	body[p] = '\0';
	assert_int_equal(attest_fetch_json_span((uint8_t *)body, strlen(body), "tcbInfo", &off, &n, NULL),
	                 TDXR_ETOOBIG);
}

static void test_signed_split_returns_span_and_signature(void **state)
{
	char sig_hex[129], body[512];
	uint8_t sig[64], want[64];
	char *text = NULL;
	size_t n, i;

	(void)state;
	for (i = 0; i < 64; i++)
		want[i] = (uint8_t)(i * 7 + 1);
	tdxr_hex_encode(want, 64, sig_hex);
	snprintf(body, sizeof(body),
	         "{ \"enclaveIdentity\": {\"id\":\"TD_QE\", \"v\" : 2} ,\"signature\":\"%s\"}", sig_hex);
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "enclaveIdentity", &text, &n, sig, NULL),
	    0);
	assert_string_equal(text, "{\"id\":\"TD_QE\", \"v\" : 2}");
	assert_int_equal(n, strlen(text));
	assert_memory_equal(sig, want, 64);
	free(text);
}

static void test_signed_split_rejects_bad_shapes(void **state)
{
	static const char sig[] =
	    "\"signature\":\"00000000000000000000000000000000000000000000000000000000000000"
	    "000000000000000000000000000000000000000000000000000000000000000000\"";
	char body[512];
	uint8_t s[64];
	char *text = NULL;
	size_t n;
	struct tdxr_err err;

	(void)state;
	/* no signature / short signature / non-hex signature */
	snprintf(body, sizeof(body), "{\"tcbInfo\":{}}");
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	snprintf(body, sizeof(body), "{\"tcbInfo\":{},\"signature\":\"abcd\"}");
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	snprintf(body, sizeof(body), "{\"tcbInfo\":{},%s}", sig);
	body[strlen(body) - 3] = 'g';
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	/* the key written with an escape: Jansson sees tcbInfo, the byte scanner does not */
	snprintf(body, sizeof(body), "{\"tcb\\u0049nfo\":{\"a\":1},%s}", sig);
	assert_int_not_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err), 0);
	/* duplicate keys, not JSON, inner not an object */
	snprintf(body, sizeof(body), "{\"tcbInfo\":{},\"tcbInfo\":{},%s}", sig);
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	snprintf(body, sizeof(body), "<html>503</html>");
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	snprintf(body, sizeof(body), "{\"tcbInfo\":[],%s}", sig);
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err),
	    TDXR_EINVAL);
	assert_null(text);
	/* the good shape passes, so the cases above fail for their own reason */
	snprintf(body, sizeof(body), "{\"tcbInfo\":{\"a\":1},%s}", sig);
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, &err), 0);
	free(text);
}

static void test_signed_split_real_tcb_body_is_byte_exact(void **state)
{
	json_t *c;
	const char *tcb, *sig;
	char *body, *text = NULL;
	uint8_t s[64], want[64];
	size_t n, blen;

	(void)state;
	if (!have_file(TDX_COLL))
		skip();
	c = load_json(TDX_COLL);
	assert_non_null(c);
	tcb = json_string_value(json_object_get(c, "tcb_info"));
	sig = json_string_value(json_object_get(c, "tcb_info_signature"));
	blen = strlen(tcb) + strlen(sig) + 64;
	body = malloc(blen);
	assert_non_null(body);
	snprintf(body, blen, "{\"tcbInfo\":%s,\"signature\":\"%s\"}", tcb, sig);
	assert_int_equal(
	    attest_fetch_signed_split((uint8_t *)body, strlen(body), "tcbInfo", &text, &n, s, NULL), 0);
	assert_int_equal(n, strlen(tcb));
	assert_memory_equal(text, tcb, n);
	assert_int_equal(tdxr_hex_decode_exact(sig, want, 64), 0);
	assert_memory_equal(s, want, 64);
	free(text);
	free(body);
	json_decref(c);
}

/* ================================================================= CRLs */

static void test_crl_decode_accepts_der_hex_and_pem(void **state)
{
	json_t *c;
	const char *hex;
	uint8_t *der = NULL, *d2 = NULL, *out = NULL;
	size_t dl, dl2;
	int64_t nu, nu2;
	char *pem;
	size_t i, pl, b64n;
	unsigned char *b64;

	(void)state;
	if (!have_file(TDX_COLL))
		skip();
	c = load_json(TDX_COLL);
	assert_non_null(c);
	hex = json_string_value(json_object_get(c, "root_ca_crl"));
	/* hex text (what a PCCS returns) */
	assert_int_equal(attest_fetch_crl_decode((const uint8_t *)hex, strlen(hex), &der, &dl, &nu, NULL), 0);
	assert_int_equal(nu, 1775215317); /* 2026-04-03T11:21:57Z */
	/* DER */
	assert_int_equal(attest_fetch_crl_decode(der, dl, &d2, &dl2, &nu2, NULL), 0);
	assert_int_equal(dl2, dl);
	assert_memory_equal(d2, der, dl);
	assert_int_equal(nu2, nu);
	free(d2);
	/* PEM */
	b64 = malloc(dl * 2 + 8);
	assert_non_null(b64);
	b64n = (size_t)EVP_EncodeBlock(b64, der, (int)dl);
	pl = b64n + 64;
	pem = malloc(pl);
	assert_non_null(pem);
	snprintf(pem, pl, "-----BEGIN X509 CRL-----\n%s\n-----END X509 CRL-----\n", (char *)b64);
	assert_int_equal(attest_fetch_crl_decode((uint8_t *)pem, strlen(pem), &d2, &dl2, &nu2, NULL), 0);
	assert_int_equal(dl2, dl);
	assert_memory_equal(d2, der, dl);
	free(d2);
	/* trailing byte after the DER, every truncation, garbage */
	d2 = malloc(dl + 1);
	assert_non_null(d2);
	memcpy(d2, der, dl);
	d2[dl] = 0;
	assert_int_equal(attest_fetch_crl_decode(d2, dl + 1, &out, &dl2, &nu2, NULL), TDXR_EINVAL);
	assert_null(out);
	for (i = 1; i < dl; i++) {
		assert_int_not_equal(attest_fetch_crl_decode(d2, i, &out, &dl2, &nu2, NULL), 0);
		assert_null(out);
	}
	assert_int_equal(attest_fetch_crl_decode((const uint8_t *)"not a crl", 9, &out, &dl2, &nu2, NULL),
	                 TDXR_EINVAL);
	free(d2);
	free(der);
	free(pem);
	free(b64);
	json_decref(c);
}

static void test_crl_url_comes_from_the_root_of_the_chain(void **state)
{
	json_t *c;
	char *url = NULL;

	(void)state;
	if (!have_file(TDX_COLL))
		skip();
	c = load_json(TDX_COLL);
	assert_non_null(c);
	assert_int_equal(attest_fetch_crl_url_from_chain(
	                     json_string_value(json_object_get(c, "qe_identity_issuer_chain")), &url, NULL),
	                 0);
	assert_string_equal(url, "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der");
	free(url);
	assert_int_equal(attest_fetch_crl_url_from_chain("no PEM here", &url, NULL), TDXR_EINVAL);
	assert_null(url);
	json_decref(c);
}

/* ================================================================= cache keys */

static void test_cache_path_keys_tee_fmspc_ca(void **state)
{
	char *p = NULL;

	(void)state;
	assert_int_equal(attest_fetch_cache_path("/var/cache/x", 1, "b0c06f000000", "platform", &p, NULL), 0);
	assert_string_equal(p, "/var/cache/x/tdx-B0C06F000000-platform.json");
	free(p);
	assert_int_equal(attest_fetch_cache_path("c", 0, "00A067110000", "processor", &p, NULL), 0);
	assert_string_equal(p, "c/sgx-00A067110000-processor.json");
	free(p);
	assert_int_equal(attest_fetch_cache_path("c", 1, "B0C06F00000", "platform", &p, NULL), TDXR_EINVAL);
	assert_int_equal(attest_fetch_cache_path("c", 1, "B0C06F00000G", "platform", &p, NULL), TDXR_EINVAL);
	assert_int_equal(attest_fetch_cache_path("c", 1, "../../etc/pa", "platform", &p, NULL), TDXR_EINVAL);
	assert_int_equal(attest_fetch_cache_path("c", 1, TDX_FMSPC, "../x", &p, NULL), TDXR_EINVAL);
	assert_int_equal(attest_fetch_cache_path("", 1, TDX_FMSPC, "platform", &p, NULL), TDXR_EINVAL);
	assert_null(p);
}

static void test_collateral_expiry_is_earliest_next_update(void **state)
{
	uint8_t *d;
	size_t n;
	int64_t nu = 0;

	(void)state;
	if (!have_file(TDX_COLL) || !have_file(SGX_COLL))
		skip();
	d = read_file(TDX_COLL, &n);
	assert_non_null(d);
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 1, "b0c06f000000", &nu, NULL), 0);
	assert_int_equal(nu, TDX_EXPIRY);
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 1, NULL, &nu, NULL), 0);
	assert_int_equal(nu, TDX_EXPIRY);
	/* another FMSPC or the other TEE is not this entry */
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 1, "00A067110000", &nu, NULL), TDXR_EINVAL);
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 0, TDX_FMSPC, &nu, NULL), TDXR_EINVAL);
	free(d);
	d = read_file(SGX_COLL, &n);
	assert_non_null(d);
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 0, "00a067110000", &nu, NULL), 0);
	assert_int_equal(nu, SGX_EXPIRY);
	assert_int_equal(attest_fetch_collateral_expiry(d, n, 1, "00a067110000", &nu, NULL), TDXR_EINVAL);
	free(d);
}

static void test_collateral_expiry_rejects_damaged_entries(void **state)
{
	json_t *c, *m;
	char *s;
	size_t i;
	int64_t nu;

	(void)state;
	if (!have_file(TDX_COLL))
		skip();
	c = load_json(TDX_COLL);
	assert_non_null(c);
	for (i = 0; i < sizeof(FIELDS) / sizeof(FIELDS[0]); i++) {
		m = json_deep_copy(c);
		/* missing, then present but damaged */
		json_object_del(m, FIELDS[i]);
		s = json_dumps(m, 0);
		assert_int_equal(
		    attest_fetch_collateral_expiry((uint8_t *)s, strlen(s), 1, TDX_FMSPC, &nu, NULL),
		    TDXR_EINVAL);
		free(s);
		json_object_set_new(m, FIELDS[i], json_string("3030zz"));
		s = json_dumps(m, 0);
		assert_int_equal(
		    attest_fetch_collateral_expiry((uint8_t *)s, strlen(s), 1, TDX_FMSPC, &nu, NULL),
		    TDXR_EINVAL);
		free(s);
		json_decref(m);
	}
	assert_int_equal(
	    attest_fetch_collateral_expiry((const uint8_t *)"{\"pck_crl\":", 11, 1, TDX_FMSPC, &nu, NULL),
	    TDXR_EINVAL);
	json_decref(c);
}

/* ================================================================= pcs_server */

struct srv {
	pid_t pid;
	int in_fd; /* its stdin: closing it stops the server */
	int port;
	char base[64];
};

/* Starts pcs_server.py on a free loopback port; 0, or -1 (skip) when it cannot run. */
static int srv_start(struct srv *s, const char *fixture, const char *const *extra)
{
	const char *argv[16];
	int in[2], out[2];
	size_t n = 0, i;
	char line[64];
	size_t ll = 0;

	memset(s, 0, sizeof(*s));
	s->pid = -1;
	if (!have_file(fixture)) {
		print_message("skip: %s absent\n", fixture);
		return -1;
	}
	if (!tu_have_python3()) {
		print_message("skip: python3 not found; the fetcher's HTTP tests need it\n");
		return -1;
	}
	argv[n++] = "python3";
	argv[n++] = PCS_SERVER;
	argv[n++] = "--collateral";
	argv[n++] = fixture;
	argv[n++] = "--watch-stdin";
	for (i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->in_fd = in[1];
	/* wait (bounded) for "PORT n\n" */
	while (ll < sizeof(line) - 1) {
		struct pollfd pfd = { out[0], POLLIN, 0 };
		ssize_t r;

		if (poll(&pfd, 1, 10000) <= 0)
			break;
		r = read(out[0], line + ll, 1);
		if (r <= 0)
			break;
		if (line[ll] == '\n')
			break;
		ll++;
	}
	line[ll] = '\0';
	close(out[0]);
	if (strncmp(line, "PORT ", 5) != 0)
		fail_msg("pcs_server.py did not start (got '%s')", line);
	{
		uint64_t port = 0;

		assert_int_equal(tdxr_parse_u64(line + 5, 65535, &port, NULL), 0);
		s->port = (int)port;
	}
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
	return 0;
}

static void srv_stop(struct srv *s)
{
	int st;

	if (s->pid <= 0)
		return;
	close(s->in_fd);
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	s->pid = -1;
}

/* GET a control path over a raw socket; returns the body (malloc'd) or NULL. */
static char *srv_get(const struct srv *s, const char *path)
{
	struct sockaddr_in a;
	char req[512];
	struct tdxr_buf b;
	char chunk[4096];
	char *body = NULL, *sep;
	int fd;
	ssize_t r;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	tdxr_buf_init(&b, 1u << 20);
	while ((r = read(fd, chunk, sizeof(chunk))) > 0)
		assert_int_equal(tdxr_buf_append(&b, chunk, (size_t)r, NULL), 0);
	close(fd);
	if (b.data != NULL && (sep = strstr((char *)b.data, "\r\n\r\n")) != NULL)
		body = strdup(sep + 4);
	tdxr_buf_dispose(&b);
	return body;
}

static long srv_total(const struct srv *s)
{
	char *body = srv_get(s, "/__stats");
	json_error_t jerr;
	json_t *o;
	long t;

	assert_non_null(body);
	o = json_loads(body, 0, &jerr);
	free(body);
	assert_true(json_is_integer(json_object_get(o, "total")));
	t = (long)json_integer_value(json_object_get(o, "total"));
	json_decref(o);
	return t;
}

static void srv_fail(const struct srv *s, const char *query)
{
	char path[256];
	char *body;

	snprintf(path, sizeof(path), "/__fail?%s", query);
	body = srv_get(s, path);
	assert_non_null(body);
	assert_non_null(strstr(body, "\"ok\""));
	free(body);
}

static void opts_for(struct attest_fetch_opts *o, const struct srv *s)
{
	attest_fetch_opts_init(o);
	o->base_url = s->base;
	o->timeout_ms = 10000;
	o->now = TDX_NOW;
}

/* Every field of the fetched JSON equals the fixture's, byte for byte. */
static void assert_same_collateral(const char *json, const char *fixture)
{
	json_error_t jerr;
	json_t *got = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
	json_t *want = load_json(fixture);
	size_t i;

	assert_non_null(got);
	assert_non_null(want);
	for (i = 0; i < sizeof(FIELDS) / sizeof(FIELDS[0]); i++) {
		json_t *g = json_object_get(got, FIELDS[i]), *w = json_object_get(want, FIELDS[i]);

		assert_true(json_is_string(g));
		assert_true(json_is_string(w));
		if (json_string_length(g) != json_string_length(w) ||
		    memcmp(json_string_value(g), json_string_value(w), json_string_length(w)) != 0)
			fail_msg("field %s differs from the fixture", FIELDS[i]);
	}
	json_decref(got);
	json_decref(want);
}

static char *make_tmpdir(void)
{
	char *d = strdup("/tmp/tdxr-test-fetch-XXXXXX");

	assert_non_null(d);
	assert_non_null(mkdtemp(d));
	return d;
}

static void rm_tree(const char *dir)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &st, 0);
}

/* ================================================================= fetch tests */

static void test_fetch_round_trips_real_collateral_byte_for_byte(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct attest_collateral *coll = NULL;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	opts_for(&o, &s);
	if (attest_fetch_collateral(&o, "b0c06f000000", 1, "platform", &json, &info, &err) != 0)
		fail_msg("fetch: %s", err.msg);
	assert_same_collateral(json, TDX_COLL);
	assert_int_equal(info.requests, 4);
	assert_int_equal(info.from_cache, 0);
	assert_int_equal(info.cached, 0);
	assert_int_equal(info.next_update, TDX_EXPIRY);
	assert_int_equal(srv_total(&s), 4);
	/* the library's own collateral parser accepts it */
	if (attest_collateral_parse((const uint8_t *)json, strlen(json), &coll, &err) != 0)
		fail_msg("attest_collateral_parse: %s", err.msg);
	attest_collateral_free(coll);
	free(json);
	srv_stop(&s);
}

static void test_fetch_sgx_uses_sgx_paths_and_processor_crl(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL;

	(void)state;
	if (srv_start(&s, SGX_COLL, NULL) != 0)
		skip();
	opts_for(&o, &s);
	if (attest_fetch_collateral(&o, "00A067110000", 0, "processor", &json, &info, &err) != 0)
		fail_msg("fetch: %s", err.msg);
	assert_same_collateral(json, SGX_COLL);
	assert_int_equal(info.next_update, SGX_EXPIRY);
	free(json);
	/* the TDX paths do not exist for an SGX platform's data */
	assert_int_equal(attest_fetch_collateral(&o, "00A067110000", 1, "processor", &json, NULL, &err),
	                 TDXR_ENOTFOUND);
	assert_non_null(strstr(err.msg, "/tdx/certification/v4/tcb"));
	assert_null(json);
	srv_stop(&s);
}

static void test_fetch_second_call_is_served_from_cache(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	struct stat st;
	char *json = NULL, *json2 = NULL, *tmp, cache[512], file[600];

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	tmp = make_tmpdir();
	snprintf(cache, sizeof(cache), "%s/a/b", tmp);
	snprintf(file, sizeof(file), "%s/tdx-%s-platform.json", cache, TDX_FMSPC);
	opts_for(&o, &s);
	o.cache_dir = cache;
	if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err) != 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(info.from_cache, 0);
	assert_int_equal(info.cached, 1);
	assert_int_equal(srv_total(&s), 4);
	assert_int_equal(stat(cache, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	if (attest_fetch_collateral(&o, "b0c06f000000", 1, "platform", &json2, &info, &err) != 0)
		fail_msg("fetch from cache: %s", err.msg);
	assert_int_equal(info.from_cache, 1);
	assert_int_equal(info.requests, 0);
	assert_int_equal(info.next_update, TDX_EXPIRY);
	assert_int_equal(srv_total(&s), 4);
	assert_string_equal(json2, json);
	free(json2);

	/* another CA is another entry */
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "processor", &json2, &info, &err),
	                 TDXR_ENOTFOUND);
	assert_null(json2);
	free(json);
	rm_tree(tmp);
	free(tmp);
	srv_stop(&s);
}

static void test_fetch_refetches_expired_cache(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL, *tmp;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	tmp = make_tmpdir();
	opts_for(&o, &s);
	o.cache_dir = tmp;
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err), 0);
	free(json);
	assert_int_equal(info.cached, 1);
	/* one second before the earliest nextUpdate: still a hit */
	o.now = TDX_EXPIRY - 1;
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err), 0);
	free(json);
	assert_int_equal(info.from_cache, 1);
	assert_int_equal(srv_total(&s), 4);
	/* at nextUpdate: refetched (and, being no fresher, not cached again) */
	o.now = TDX_EXPIRY;
	if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err) != 0)
		fail_msg("refetch: %s", err.msg);
	assert_same_collateral(json, TDX_COLL);
	free(json);
	assert_int_equal(info.from_cache, 0);
	assert_int_equal(info.requests, 4);
	assert_int_equal(info.cached, 0);
	assert_int_equal(srv_total(&s), 8);
	rm_tree(tmp);
	free(tmp);
	srv_stop(&s);
}

static void test_fetch_refetches_corrupt_cache(void **state)
{
	static const char *const damage[] = { "", "{", "not json at all", "{\"tcb_info\":1}", "WRONG_FMSPC" };
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL, *good, *tmp, *file = NULL, *p;
	size_t i, n;
	long expect = 4;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	tmp = make_tmpdir();
	opts_for(&o, &s);
	o.cache_dir = tmp;
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &good, &info, &err), 0);
	assert_int_equal(attest_fetch_cache_path(tmp, 1, TDX_FMSPC, "platform", &file, NULL), 0);
	for (i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
		if (strcmp(damage[i], "WRONG_FMSPC") == 0) {
			/* well-formed, but another platform's TCB info under this key */
			char *bad = strdup(good);

			assert_non_null(bad);
			p = strstr(bad, TDX_FMSPC);
			assert_non_null(p);
			memcpy(p, "00906ED50000", 12);
			assert_int_equal(tdxr_file_write_atomic(file, bad, strlen(bad), 0644, NULL), 0);
			free(bad);
		} else {
			assert_int_equal(
			    tdxr_file_write_atomic(file, damage[i], strlen(damage[i]), 0644, NULL), 0);
		}
		if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err) != 0)
			fail_msg("case %zu: %s", i, err.msg);
		expect += 4;
		assert_int_equal(info.from_cache, 0);
		assert_int_equal(info.cached, 1);
		assert_int_equal(srv_total(&s), expect);
		assert_string_equal(json, good);
		free(json);
		/* the entry was replaced by a good one */
		p = (char *)read_file(file, &n);
		assert_non_null(p);
		assert_string_equal(p, good);
		free(p);
	}
	free(good);
	free(file);
	rm_tree(tmp);
	free(tmp);
	srv_stop(&s);
}

struct http_case {
	const char *fail; /* /__fail query */
	int code;         /* expected TDXR_E* */
	const char *msg1; /* substrings the message must carry */
	const char *msg2;
};

static void test_fetch_http_errors_are_clear(void **state)
{
	static const struct http_case cases[] = {
		{ "status=503&retry_after=7&path=/tdx/certification/v4/tcb", TDXR_EIO,
		  "GET /tdx/certification/v4/tcb?fmspc=B0C06F000000 returned HTTP 503", "Retry-After: 7" },
		{ "status=429&path=/tdx/certification/v4/qe/identity", TDXR_EIO, "HTTP 429",
		  "no Retry-After" },
		{ "status=404&error_code=NoSuchFmspc&path=/sgx/certification/v4/pckcrl", TDXR_ENOTFOUND,
		  "/sgx/certification/v4/pckcrl?ca=platform&encoding=der returned HTTP 404", "NoSuchFmspc" },
		{ "status=401&path=/tdx/certification/v4/tcb", TDXR_EAUTH, "HTTP 401", "TCB info" },
		{ "mode=garbage&path=/tdx/certification/v4/tcb", TDXR_EINVAL, "TCB info", "JSON" },
		{ "mode=garbage&path=/sgx/certification/v4/pckcrl", TDXR_EINVAL, "PCK CRL", "CRL" },
		{ "mode=nochain&path=/tdx/certification/v4/tcb", TDXR_EINVAL, "TCB-Info-Issuer-Chain",
		  "header" },
		{ "mode=big&path=/tdx/certification/v4/qe/identity", TDXR_ETOOBIG, "QE identity", "limit" },
		{ "mode=bignolen&path=/tdx/certification/v4/tcb", TDXR_ETOOBIG, "TCB info", "limit" },
	};
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err;
	struct srv s;
	char *json = NULL, *tmp;
	size_t i;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	tmp = make_tmpdir();
	opts_for(&o, &s);
	o.cache_dir = tmp;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		srv_fail(&s, cases[i].fail);
		memset(&err, 0, sizeof(err));
		rc = attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err);
		if (rc != cases[i].code)
			fail_msg("case %zu (%s): got %d (%s), want %d", i, cases[i].fail, rc, err.msg,
			         cases[i].code);
		assert_int_equal(err.code, cases[i].code);
		assert_null(json);
		if (strstr(err.msg, cases[i].msg1) == NULL || strstr(err.msg, cases[i].msg2) == NULL)
			fail_msg("case %zu: message '%s' lacks '%s' / '%s'", i, err.msg, cases[i].msg1,
			         cases[i].msg2);
		/* nothing was cached, and the next (fault-free) fetch works */
		assert_int_equal(info.cached, 0);
	}
	if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err) != 0)
		fail_msg("after faults: %s", err.msg);
	assert_same_collateral(json, TDX_COLL);
	free(json);
	rm_tree(tmp);
	free(tmp);
	srv_stop(&s);
}

static void test_fetch_unknown_fmspc_is_not_found(void **state)
{
	struct attest_fetch_opts o;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	opts_for(&o, &s);
	assert_int_equal(attest_fetch_collateral(&o, "00906ED50000", 1, "platform", &json, NULL, &err),
	                 TDXR_ENOTFOUND);
	assert_non_null(strstr(err.msg, "/tdx/certification/v4/tcb?fmspc=00906ED50000 returned HTTP 404"));
	assert_null(json);
	srv_stop(&s);
}

static void test_fetch_times_out_on_a_server_that_never_answers(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	struct timespec t0, t1;
	char base[64];
	char *json = NULL;
	double el;
	int fd;

	(void)state;
	/* listening: the kernel completes the handshake, nobody ever reads or answers */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
	attest_fetch_opts_init(&o);
	o.base_url = base;
	o.timeout_ms = 300;
	o.now = TDX_NOW;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err),
	                 TDXR_ETIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(el >= 0.25 && el < 5.0);
	assert_non_null(strstr(err.msg, "/sgx/certification/v4/pckcrl"));
	assert_non_null(strstr(err.msg, "300 ms"));
	assert_int_equal(info.requests, 1);
	assert_null(json);
	close(fd);
}

static void test_fetch_hanging_response_times_out(void **state)
{
	struct attest_fetch_opts o;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL;

	(void)state;
	if (srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	opts_for(&o, &s);
	o.timeout_ms = 400;
	srv_fail(&s, "mode=hang&path=/tdx/certification/v4/qe/identity");
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err),
	                 TDXR_ETIMEOUT);
	assert_non_null(strstr(err.msg, "QE identity"));
	assert_null(json);
	srv_stop(&s);
}

static void test_fetch_sends_api_key_only_when_given(void **state)
{
	static const char *const extra[] = { "--api-key", "k3y-for-test", NULL };
	struct attest_fetch_opts o;
	struct tdxr_err err = { 0, "" };
	struct tdxr_secret *key;
	struct srv s;
	char *json = NULL;

	(void)state;
	if (srv_start(&s, TDX_COLL, extra) != 0)
		skip();
	opts_for(&o, &s);
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err),
	                 TDXR_EAUTH);
	assert_null(strstr(err.msg, "k3y"));
	key = tdxr_secret_new("k3y-for-test", 12);
	assert_non_null(key);
	o.api_key = key;
	if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err) != 0)
		fail_msg("with key: %s", err.msg);
	assert_same_collateral(json, TDX_COLL);
	free(json);
	tdxr_secret_free(key);
	/* a key that could inject a header line is refused before any request */
	key = tdxr_secret_new("a\r\nX-Evil: 1", 13);
	o.api_key = key;
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err),
	                 TDXR_EINVAL);
	tdxr_secret_free(key);
	srv_stop(&s);
}

static void test_fetch_accepts_legacy_header_and_root_crl_forms(void **state)
{
	static const char *const legacy[] = { "--legacy-tcb-header", "--rootcacrl", "der", NULL };
	static const char *const pem[] = { "--rootcacrl", "pem", NULL };
	static const char *const none[] = { "--rootcacrl", "none", NULL };
	const char *const *variants[] = { legacy, pem, none };
	struct attest_fetch_opts o;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL, rooturl[128];
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		if (srv_start(&s, TDX_COLL, variants[i]) != 0)
			skip();
		opts_for(&o, &s);
		if (variants[i] == none) {
			/* no rootcacrl endpoint: an explicit distribution point */
			snprintf(rooturl, sizeof(rooturl), "%s/root.crl", s.base);
			o.root_ca_crl_url = rooturl;
		}
		if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err) != 0)
			fail_msg("variant %zu: %s", i, err.msg);
		assert_same_collateral(json, TDX_COLL);
		free(json);
		srv_stop(&s);
	}
}

static void test_fetch_refuses_plain_http_off_loopback(void **state)
{
	struct attest_fetch_opts o;
	struct attest_fetch_info info;
	struct tdxr_err err = { 0, "" };
	char *json = NULL;

	(void)state;
	attest_fetch_opts_init(&o);
	o.base_url = "http://pccs.example.com:8081";
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, &info, &err),
	                 TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "https://"));
	assert_int_equal(info.requests, 0);
	assert_int_equal(attest_fetch_collateral(&o, "xyz", 1, "platform", &json, &info, &err), TDXR_EINVAL);
	assert_int_equal(attest_fetch_collateral(&o, TDX_FMSPC, 1, "Platform", &json, &info, &err),
	                 TDXR_EINVAL);
	assert_null(json);
}

static void test_fetched_collateral_verifies_the_real_quote(void **state)
{
	struct attest_fetch_opts o;
	struct attest_collateral *coll = NULL;
	struct attest_verdict *v = NULL;
	struct attest_input in;
	struct tdxr_err err = { 0, "" };
	struct srv s;
	char *json = NULL;
	uint8_t *quote;
	size_t qlen;

	(void)state;
	if (!have_file(TDX_QUOTE) || srv_start(&s, TDX_COLL, NULL) != 0)
		skip();
	opts_for(&o, &s);
	if (attest_fetch_collateral(&o, TDX_FMSPC, 1, "platform", &json, NULL, &err) != 0)
		fail_msg("fetch: %s", err.msg);
	srv_stop(&s);
	assert_int_equal(attest_collateral_parse((const uint8_t *)json, strlen(json), &coll, &err), 0);
	quote = read_file(TDX_QUOTE, &qlen);
	assert_non_null(quote);
	memset(&in, 0, sizeof(in));
	in.quote = quote;
	in.quote_len = qlen;
	in.collateral = coll;
	in.now = TDX_NOW;
	assert_int_equal(attest_verify(&in, NULL, &v, &err), 0);
	if (!v->ok)
		fail_msg("verdict: %s", v->error);
	attest_verdict_free(v);
	attest_collateral_free(coll);
	free(quote);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_build_normalises_base),
		cmocka_unit_test(test_url_check_https_or_loopback_only),
		cmocka_unit_test(test_header_get_is_case_insensitive_and_exact),
		cmocka_unit_test(test_header_get_rejects_nul_in_value),
		cmocka_unit_test(test_pct_decode_like_decodeURIComponent),
		cmocka_unit_test(test_json_span_finds_exact_top_level_bytes),
		cmocka_unit_test(test_json_span_rejects_malformed),
		cmocka_unit_test(test_json_span_every_truncation_fails_cleanly),
		cmocka_unit_test(test_json_span_depth_is_bounded),
		cmocka_unit_test(test_signed_split_returns_span_and_signature),
		cmocka_unit_test(test_signed_split_rejects_bad_shapes),
		cmocka_unit_test(test_signed_split_real_tcb_body_is_byte_exact),
		cmocka_unit_test(test_crl_decode_accepts_der_hex_and_pem),
		cmocka_unit_test(test_crl_url_comes_from_the_root_of_the_chain),
		cmocka_unit_test(test_cache_path_keys_tee_fmspc_ca),
		cmocka_unit_test(test_collateral_expiry_is_earliest_next_update),
		cmocka_unit_test(test_collateral_expiry_rejects_damaged_entries),
		cmocka_unit_test(test_fetch_round_trips_real_collateral_byte_for_byte),
		cmocka_unit_test(test_fetch_sgx_uses_sgx_paths_and_processor_crl),
		cmocka_unit_test(test_fetch_second_call_is_served_from_cache),
		cmocka_unit_test(test_fetch_refetches_expired_cache),
		cmocka_unit_test(test_fetch_refetches_corrupt_cache),
		cmocka_unit_test(test_fetch_http_errors_are_clear),
		cmocka_unit_test(test_fetch_unknown_fmspc_is_not_found),
		cmocka_unit_test(test_fetch_times_out_on_a_server_that_never_answers),
		cmocka_unit_test(test_fetch_hanging_response_times_out),
		cmocka_unit_test(test_fetch_sends_api_key_only_when_given),
		cmocka_unit_test(test_fetch_accepts_legacy_header_and_root_crl_forms),
		cmocka_unit_test(test_fetch_refuses_plain_http_off_loopback),
		cmocka_unit_test(test_fetched_collateral_verifies_the_real_quote),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
