/*
 * test_http.c - common/http: the HTTP client against tests/unit/http_test_server.py,
 * a real HTTP/1.1 server on loopback (one per run of this file), plus the pure
 * pieces (URL redaction, Retry-After, backoff, the retry predicate).
 *
 * Covers: bodies of every method round trip byte for byte; response headers are
 * captured and looked up case-insensitively within their bounds; a body over the
 * cap is an error (with and without Content-Length), never a truncated success;
 * connect refused, a server that closes mid-body and a slow server map to the
 * right code and fault within the time bound; Retry-After in both forms; no
 * credential reaches a message; a 20 MB multipart upload streams from disk (the
 * server hashes what it got; our peak RSS must not grow by the file size); the
 * cancellation flag. Server tests skip with a message when python3 is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/http.h"
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tu_server.h"

#define SERVER TDXR_SOURCE_DIR "/tests/unit/http_test_server.py"
#define UPLOAD_BYTES (20u * 1024u * 1024u)

static struct tu_server g_srv;
static int g_have_srv;

static int group_setup(void **state)
{
	(void)state;
	g_have_srv = tu_server_start(&g_srv, SERVER, NULL) == 0;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (g_have_srv)
		tu_server_stop(&g_srv);
	return 0;
}

#define REQUIRE_SERVER()                                                                                     \
	do {                                                                                                 \
		if (!g_have_srv)                                                                             \
			skip();                                                                              \
	} while (0)

static void url_of(char *out, size_t cap, const char *path)
{
	assert_true((size_t)snprintf(out, cap, "%s%s", g_srv.base, path) < cap);
}

static struct http_client *client_with(long timeout_ms, size_t max_body)
{
	struct http_client_opts o;
	struct http_client *c = NULL;
	struct tdxr_err err = { 0, "" };

	memset(&o, 0, sizeof(o));
	o.timeout_ms = timeout_ms;
	o.max_body = max_body;
	if (http_client_new(&o, &c, &err) != 0)
		fail_msg("http_client_new: %s", err.msg);
	return c;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A loopback port with nobody listening (bound, then closed). */
static int dead_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
	uint8_t md[32];
	unsigned int ml = 0;

	assert_int_equal(EVP_Digest(p, n, md, &ml, EVP_sha256(), NULL), 1);
	tdxr_hex_encode(md, 32, out);
}

/* ================================================================== pure */

static void test_http_url_redact_hides_userinfo_and_secret_params(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "https://user:pa55@gitlab.example.com/api/v4/jobs?private_token=glpat-x&page=2#frag",
		  "https://[REDACTED]@gitlab.example.com/api/v4/jobs?private_token=[REDACTED]&page=2" },
		{ "https://h/p?token=abc&key=k&api_key=z&X-Amz-Signature=s&name=ok",
		  "https://h/"
		  "p?token=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&X-Amz-Signature=[REDACTED]&name=ok" },
		{ "http://127.0.0.1:8080/plain?a=1&b", "http://127.0.0.1:8080/plain?a=1&b" },
		{ "https://only@host", "https://[REDACTED]@host" },
		{ "https://h/p?Private_Token=&t", "https://h/p?Private_Token=[REDACTED]&t" },
	};
	char out[256], tiny[16];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_url_redact(cases[i].in, out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: got '%s', want '%s'", i, out, cases[i].want);
	}
	/* truncation is marked and bounded */
	http_url_redact("https://example.com/a/very/long/path", tiny, sizeof(tiny));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_string_equal(tiny + sizeof(tiny) - 4, "...");
	http_url_redact(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

static void test_http_retry_after_parses_both_forms_and_clamps(void **state)
{
	const int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

	(void)state;
	assert_int_equal(http_retry_after_parse("7", now, 60000), 7000);
	assert_int_equal(http_retry_after_parse(" 0 ", now, 60000), 0);
	assert_int_equal(http_retry_after_parse("120", now, 60000), 60000);
	assert_int_equal(http_retry_after_parse("99999999999999999999999", now, 5000), 5000);
	assert_int_equal(http_retry_after_parse("Sun, 06 Nov 1994 08:49:47 GMT", now, 60000), 10000);
	assert_int_equal(http_retry_after_parse("Sunday, 06-Nov-94 08:49:47 GMT", now, 60000), 10000);
	assert_int_equal(http_retry_after_parse("Sun Nov  6 08:49:47 1994", now, 60000), 10000);
	assert_int_equal(http_retry_after_parse("Sun, 06 Nov 1994 09:49:37 GMT", now, 60000), 60000);
	/* a date in the past: retry now */
	assert_int_equal(http_retry_after_parse("Sat, 05 Nov 1994 08:49:37 GMT", now, 60000), 0);
	assert_int_equal(http_retry_after_parse("-1", now, 60000), -1);
	assert_int_equal(http_retry_after_parse("1.5", now, 60000), -1);
	assert_int_equal(http_retry_after_parse("soon", now, 60000), -1);
	assert_int_equal(http_retry_after_parse("", now, 60000), -1);
	assert_int_equal(http_retry_after_parse(NULL, now, 60000), -1);
	assert_int_equal(http_retry_after_parse("7\x01", now, 60000), -1);
}

static void test_http_backoff_is_full_jitter_under_the_cap(void **state)
{
	long v, first = -1, max_seen = 0;
	int varied = 0;
	unsigned i;

	(void)state;
	for (i = 0; i < 200; i++) {
		v = http_backoff_ms(3, 100, 10000); /* limit 800 */
		assert_true(v >= 0 && v <= 800);
		if (first < 0)
			first = v;
		varied |= v != first;
		if (v > max_seen)
			max_seen = v;
	}
	assert_true(varied);
	assert_true(max_seen > 400); /* full jitter spans the range, not just [0, base] */
	for (i = 0; i < 50; i++) {
		v = http_backoff_ms(1000, 100, 5000); /* huge attempt: capped, no overflow */
		assert_true(v >= 0 && v <= 5000);
	}
	assert_int_equal(http_backoff_ms(0, 0, 100), 0);
	assert_int_equal(http_backoff_ms(2, 100, 0), 0);
}

static void test_http_retry_predicate_follows_the_common_policy(void **state)
{
	static const long yes[] = { 429, 502, 503, 504 };
	static const long no[] = { 200, 201, 301, 400, 401, 403, 404, 409, 416, 500, 501 };
	struct http_response r;
	size_t i;

	(void)state;
	http_response_init(&r);
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		r.status = yes[i];
		assert_int_equal(http_retry_should(0, &r, 0), 1);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		r.status = no[i];
		assert_int_equal(http_retry_should(0, &r, 0), 0);
	}
	r.status = 500;
	assert_int_equal(http_retry_should(0, &r, HTTP_RETRY_500), 1);
	/* not idempotent: only when surely not processed */
	r.status = 502;
	assert_int_equal(http_retry_should(0, &r, HTTP_RETRY_UNSAFE), 0);
	r.status = 503;
	assert_int_equal(http_retry_should(0, &r, HTTP_RETRY_UNSAFE), 1);
	r.status = 0;
	r.fault = HTTP_FAULT_CONNECT;
	assert_int_equal(http_retry_should(TDXR_EIO, &r, HTTP_RETRY_UNSAFE), 1);
	r.fault = HTTP_FAULT_NETWORK;
	assert_int_equal(http_retry_should(TDXR_EIO, &r, 0), 1);
	assert_int_equal(http_retry_should(TDXR_ETIMEOUT, &r, 0), 1);
	assert_int_equal(http_retry_should(TDXR_EIO, &r, HTTP_RETRY_UNSAFE), 0);
	r.fault = HTTP_FAULT_TLS;
	assert_int_equal(http_retry_should(TDXR_EIO, &r, 0), 0);
	r.fault = HTTP_FAULT_LOCAL;
	assert_int_equal(http_retry_should(TDXR_ETOOBIG, &r, 0), 0);
	assert_int_equal(http_retry_should(TDXR_ECANCELED, &r, 0), 0);
	http_response_dispose(&r);
}

static void test_http_refuses_bad_requests_before_sending(void **state)
{
	static const char *const inject[] = { "X-Ok: 1", "X-Bad: a\r\nX-Evil: 1", NULL };
	static const char *const nocolon[] = { "NoColon", NULL };
	static const char *const badname[] = { "Bad Name: v", NULL };
	struct http_part part = { "file", NULL, 0, "/nonexistent/tdxr-http-upload", NULL, NULL };
	struct http_client *c = client_with(2000, 0);
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[64];

	(void)state;
	http_response_init(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", dead_port());
	memset(&q, 0, sizeof(q));
	q.method = HTTP_GET;
	q.url = "ftp://example.com/x";
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	assert_int_equal(r.fault, HTTP_FAULT_LOCAL);
	q.url = "http://example.com/x"; /* plain http off loopback */
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "https://"));
	q.url = "https://exa mple.com/";
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.url = url;
	q.headers = inject;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.headers = nocolon;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.headers = badname;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.headers = NULL;
	q.body = "x";
	q.body_len = 1; /* GET with a body */
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.method = HTTP_POST;
	q.body_file = "/etc/hostname"; /* two bodies */
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	q.body = NULL;
	q.body_len = 0;
	q.body_file = "/nonexistent/tdxr-http-body";
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ENOTFOUND);
	q.body_file = NULL;
	q.parts = &part;
	q.n_parts = 1;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ENOTFOUND);
	assert_non_null(strstr(err.msg, "tdxr-http-upload"));
	/* bad client options */
	{
		struct http_client_opts o;
		struct http_client *bad = NULL;

		memset(&o, 0, sizeof(o));
		o.connect_to = "host:443";
		assert_int_equal(http_client_new(&o, &bad, &err), TDXR_EINVAL);
		assert_null(bad);
		o.connect_to = NULL;
		o.timeout_ms = -1;
		assert_int_equal(http_client_new(&o, &bad, &err), TDXR_EINVAL);
	}
	http_response_dispose(&r);
	http_client_free(c);
	http_client_free(NULL);
}

/* ================================================================ server */

static void test_http_bodies_of_every_method_round_trip(void **state)
{
	static const enum http_method methods[] = { HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE };
	static const char *const hdrs[] = { "Content-Type: application/x-test", "X-Extra: 1", NULL };
	uint8_t body[3000];
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128], want[65];
	size_t i, k;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	for (i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 7 + (i >> 8)); /* binary, with NULs */
	url_of(url, sizeof(url), "/echo");
	for (k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
		int with_body = methods[k] != HTTP_GET;

		memset(&q, 0, sizeof(q));
		q.method = methods[k];
		q.url = url;
		q.headers = hdrs;
		if (with_body) {
			q.body = body;
			q.body_len = sizeof(body) - k; /* a different length each time */
		}
		if (http_request_send(c, &q, &r, &err) != 0)
			fail_msg("%s: %s", http_method_name(methods[k]), err.msg);
		assert_int_equal(r.status, 200);
		assert_int_equal(http_response_check(&q, &r, &err), 0);
		assert_string_equal(http_response_header(&r, "X-Method"), http_method_name(methods[k]));
		assert_string_equal(http_response_header(&r, "X-Content-Type"), "application/x-test");
		assert_int_equal(r.body.len, q.body_len);
		if (with_body) {
			assert_memory_equal(r.body.data, body, q.body_len);
			sha256_hex(body, q.body_len, want);
			assert_string_equal(http_response_header(&r, "X-Body-Sha256"), want);
		}
	}
	/* an empty POST is a POST with Content-Length: 0 */
	memset(&q, 0, sizeof(q));
	q.method = HTTP_POST;
	q.url = url;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_string_equal(http_response_header(&r, "X-Method"), "POST");
	assert_string_equal(http_response_header(&r, "X-Body-Len"), "0");
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_connection_is_kept_alive_between_requests(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128], *port1;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/echo");
	memset(&q, 0, sizeof(q));
	q.url = url;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	port1 = strdup(http_response_header(&r, "X-Client-Port"));
	assert_non_null(port1);
	q.method = HTTP_PUT;
	q.body = "x";
	q.body_len = 1;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_string_equal(http_response_header(&r, "X-Client-Port"), port1);
	free(port1);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_response_headers_are_captured(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128];

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/headers");
	memset(&q, 0, sizeof(q));
	q.url = url;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_string_equal(http_response_header(&r, "x-custom"), "hello");
	assert_string_equal(http_response_header(&r, "X-CUSTOM"), "hello");
	assert_string_equal(http_response_header(&r, "X-Mixed"), "Case");
	assert_string_equal(http_response_header(&r, "X-Dup"), "one"); /* the first */
	assert_string_equal(http_response_header(&r, "X-Padded"), "spaced out");
	assert_string_equal(http_response_header(&r, "X-Folded"), "first second");
	assert_string_equal(http_response_header(&r, "Content-Length"), "2");
	assert_null(http_response_header(&r, "X-Absent"));
	assert_null(http_response_header(&r, "X-Custo"));
	assert_true(r.n_headers >= 8 && r.n_headers < 16);
	/* a response with too many header lines fails, bounded */
	url_of(url, sizeof(url), "/many-headers?n=500");
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ETOOBIG);
	assert_non_null(strstr(err.msg, "headers"));
	assert_int_equal(r.n_headers, 0);
	assert_null(http_response_header(&r, "X-H1"));
	/* ...and the client still works afterwards */
	url_of(url, sizeof(url), "/many-headers?n=100");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_string_equal(http_response_header(&r, "x-h99"), "v");
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_body_over_the_cap_is_an_error_not_truncation(void **state)
{
	static const char *const paths[] = { "/big?n=2000000&len=1", "/big?n=2000000&len=0" };
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128];
	size_t i;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 1000000);
	http_response_init(&r);
	memset(&q, 0, sizeof(q));
	q.url = url;
	for (i = 0; i < 2; i++) {
		url_of(url, sizeof(url), paths[i]);
		memset(&err, 0, sizeof(err));
		if (http_request_send(c, &q, &r, &err) != TDXR_ETOOBIG)
			fail_msg("%s: want ETOOBIG, got status %ld (%s)", paths[i], r.status, err.msg);
		assert_int_equal(err.code, TDXR_ETOOBIG);
		assert_non_null(strstr(err.msg, "1000000-byte limit"));
		assert_non_null(strstr(err.msg, "GET http://127.0.0.1:"));
		assert_int_equal(r.body.len, 0);
		assert_int_equal(r.status, 0);
		assert_int_equal(http_retry_should(TDXR_ETOOBIG, &r, 0), 0);
	}
	/* exactly at the cap is fine */
	url_of(url, sizeof(url), "/big?n=1000000&len=0");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(r.body.len, 1000000);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_connect_refused_is_a_retryable_connect_fault(void **state)
{
	struct http_client *c = client_with(5000, 0);
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[64];

	(void)state;
	http_response_init(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", dead_port());
	memset(&q, 0, sizeof(q));
	q.method = HTTP_POST;
	q.url = url;
	q.body = "{}";
	q.body_len = 2;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EIO);
	assert_int_equal(r.fault, HTTP_FAULT_CONNECT);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(err.msg, "POST http://127.0.0.1:"));
	assert_non_null(strstr(err.msg, "cannot connect"));
	/* nothing was sent: retryable even for a POST */
	assert_int_equal(http_retry_should(TDXR_EIO, &r, HTTP_RETRY_UNSAFE), 1);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_server_closing_mid_body_is_a_network_fault(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128];

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/close-mid-body");
	memset(&q, 0, sizeof(q));
	q.url = url;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EIO);
	assert_int_equal(r.fault, HTTP_FAULT_NETWORK);
	assert_int_equal(r.body.len, 0); /* the partial body is not handed out */
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(err.msg, "/close-mid-body"));
	assert_int_equal(http_retry_should(TDXR_EIO, &r, 0), 1);
	assert_int_equal(http_retry_should(TDXR_EIO, &r, HTTP_RETRY_UNSAFE), 0);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_slow_server_times_out_within_the_bound(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128];
	double t0, el;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(300, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/slow?ms=4000");
	memset(&q, 0, sizeof(q));
	q.url = url;
	t0 = now_s();
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ETIMEOUT);
	el = now_s() - t0;
	if (el < 0.25 || el > 2.0)
		fail_msg("timed out after %.3f s, want about 0.3 s", el);
	assert_int_equal(r.fault, HTTP_FAULT_NETWORK);
	assert_non_null(strstr(err.msg, "300 ms"));
	/* a per-request timeout overrides the client's */
	url_of(url, sizeof(url), "/slow?ms=500");
	q.timeout_ms = 5000;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(r.status, 200);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_retry_after_is_read_from_responses(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128];
	long ms;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	memset(&q, 0, sizeof(q));
	q.url = url;
	url_of(url, sizeof(url), "/status?code=429&retry_after=7&body=slow%20down");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(r.status, 429);
	assert_int_equal(http_retry_after_ms(&r, 60000), 7000);
	assert_int_equal(http_retry_after_ms(&r, 3000), 3000);
	assert_int_equal(http_retry_should(0, &r, HTTP_RETRY_UNSAFE), 1);
	assert_int_equal(http_response_check(&q, &r, &err), TDXR_EIO);
	assert_non_null(strstr(err.msg, "returned HTTP 429 (Retry-After: 7): slow down"));
	/* HTTP-date, relative to the server's Date header */
	url_of(url, sizeof(url), "/status?code=503&retry_after_in=5");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(r.status, 503);
	assert_non_null(http_response_header(&r, "Date"));
	ms = http_retry_after_ms(&r, 60000);
	if (ms < 4000 || ms > 5000)
		fail_msg("Retry-After %s (Date %s) gave %ld ms", http_response_header(&r, "Retry-After"),
		         http_response_header(&r, "Date"), ms);
	assert_int_equal(http_retry_after_ms(&r, 1500), 1500);
	/* absent */
	url_of(url, sizeof(url), "/status?code=502");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(http_retry_after_ms(&r, 60000), -1);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_status_errors_map_codes_with_a_bounded_snippet(void **state)
{
	static const struct {
		int status, code;
	} map[] = { { 401, TDXR_EAUTH },   { 403, TDXR_EAUTH }, { 404, TDXR_ENOTFOUND },
		    { 413, TDXR_ETOOBIG }, { 500, TDXR_EIO },   { 302, TDXR_EIO } };
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[1024], path[900];
	size_t i;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(10000, 0);
	http_response_init(&r);
	memset(&q, 0, sizeof(q));
	q.url = url;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		snprintf(path, sizeof(path), "/status?code=%d", map[i].status);
		url_of(url, sizeof(url), path);
		assert_int_equal(http_request_send(c, &q, &r, &err), 0);
		assert_int_equal(r.status, map[i].status);
		assert_int_equal(http_response_check(&q, &r, &err), map[i].code);
	}
	/* a long body with control bytes: one bounded printable line */
	snprintf(path, sizeof(path), "/status?code=500&body=");
	for (i = strlen(path); i < 700; i += 6)
		memcpy(path + i, "ab%0A%01", 6);
	path[i] = '\0';
	url_of(url, sizeof(url), path);
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(http_response_check(&q, &r, &err), TDXR_EIO);
	assert_true(strlen(err.msg) < sizeof(err.msg));
	assert_non_null(strstr(err.msg, "returned HTTP 500: ab"));
	for (i = 0; err.msg[i]; i++)
		assert_true(err.msg[i] >= 0x20 && err.msg[i] < 0x7f);
	assert_string_equal(err.msg + strlen(err.msg) - 3, "...");
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_messages_never_carry_credentials(void **state)
{
	static const char *const auth[] = { "Authorization: Bearer tok-ABCDEFG123",
		                            "PRIVATE-TOKEN: glpat-QWERTY99", NULL };
	struct http_client *c = client_with(5000, 0);
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[512];

	(void)state;
	http_response_init(&r);
	memset(&q, 0, sizeof(q));
	q.url = url;
	q.headers = auth;
	/* transport failure: the URL in the message is redacted */
	snprintf(url, sizeof(url),
	         "http://alice:s3cr3t-pw@127.0.0.1:%d/x?private_token=glpat-SECRET1&page=2&key=K3Y0",
	         dead_port());
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EIO);
	if (strstr(err.msg, "s3cr3t") || strstr(err.msg, "alice") || strstr(err.msg, "glpat") ||
	    strstr(err.msg, "K3Y0") || strstr(err.msg, "tok-ABC"))
		fail_msg("credential in '%s'", err.msg);
	assert_non_null(strstr(err.msg, "[REDACTED]@127.0.0.1"));
	assert_non_null(strstr(err.msg, "page=2"));
	if (g_have_srv) {
		/* a server that echoes the token back: scrubbed from the snippet */
		snprintf(url, sizeof(url), "%s/status?code=401&echo_auth=1&token=tok-ABCDEFG123", g_srv.base);
		assert_int_equal(http_request_send(c, &q, &r, &err), 0);
		assert_non_null(strstr((const char *)r.body.data, "tok-ABCDEFG123")); /* it did echo */
		assert_int_equal(http_response_check(&q, &r, &err), TDXR_EAUTH);
		if (strstr(err.msg, "tok-ABC") || strstr(err.msg, "glpat"))
			fail_msg("credential in '%s'", err.msg);
		assert_non_null(strstr(err.msg, "HTTP 401"));
		if (strstr(err.msg, "token [REDACTED] is not valid") == NULL)
			fail_msg("message: %s", err.msg);
	} else {
		print_message("skip: server part (python3 absent)\n");
	}
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_connect_to_dials_the_override_keeping_the_name(void **state)
{
	struct http_client_opts o;
	struct http_client *c = NULL;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char ct[128];

	(void)state;
	REQUIRE_SERVER();
	snprintf(ct, sizeof(ct), "gitlab.tdxr-test.invalid:80:127.0.0.1:%d", g_srv.port);
	memset(&o, 0, sizeof(o));
	o.connect_to = ct;
	o.timeout_ms = 5000;
	assert_int_equal(http_client_new(&o, &c, &err), 0);
	http_response_init(&r);
	memset(&q, 0, sizeof(q));
	q.url = "http://gitlab.tdxr-test.invalid/echo";
	/* plain http to a non-loopback name needs allow_http */
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_EINVAL);
	http_client_free(c);
	o.allow_http = 1;
	assert_int_equal(http_client_new(&o, &c, &err), 0);
	if (http_request_send(c, &q, &r, &err) != 0)
		fail_msg("connect_to: %s", err.msg);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_response_header(&r, "X-Host"), "gitlab.tdxr-test.invalid");
	http_response_dispose(&r);
	http_client_free(c);
}

/* Writes n pseudo-random bytes to a new temp file; its SHA-256 into hex. */
static char *make_file(size_t n, char hex[65])
{
	char *path = strdup("/tmp/tdxr-test-http-XXXXXX");
	uint8_t chunk[65536], md[32];
	uint64_t x = 0x9e3779b97f4a7c15u;
	unsigned int ml = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int fd;

	assert_non_null(path);
	assert_non_null(ctx);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk), i;

		for (i = 0; i < k; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			chunk[i] = (uint8_t)x;
		}
		assert_int_equal(write(fd, chunk, k), (ssize_t)k);
		assert_int_equal(EVP_DigestUpdate(ctx, chunk, k), 1);
		n -= k;
	}
	assert_int_equal(EVP_DigestFinal_ex(ctx, md, &ml), 1);
	EVP_MD_CTX_free(ctx);
	close(fd);
	tdxr_hex_encode(md, 32, hex);
	return path;
}

/* VmRSS or VmHWM of this process in KiB; -1 when unreadable. */
static long proc_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long v = -1;
	size_t fl = strlen(field);

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			v = strtol(line + fl + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Resets VmHWM to the current RSS (Linux clear_refs "5"); 0 on success. */
static int hwm_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "we");
	int ok;

	if (f == NULL)
		return -1;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void test_http_multipart_upload_streams_a_file_from_disk(void **state)
{
	struct http_part parts[3];
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128], hex[65], small_hex[65];
	char *path;
	json_error_t jerr;
	json_t *o, *ps, *p;
	long rss0, hwm;
	int measured;

	(void)state;
	REQUIRE_SERVER();
	path = make_file(UPLOAD_BYTES, hex);
	c = client_with(60000, 0);
	http_response_init(&r);
	memset(parts, 0, sizeof(parts));
	parts[0].name = "token_field";
	parts[0].data = "value-1";
	parts[0].data_len = 7;
	parts[1].name = "file";
	parts[1].file = path;
	parts[1].filename = "artifacts.zip";
	parts[1].content_type = "application/zip";
	parts[2].name = "artifact_format";
	parts[2].data = "zip\0x";
	parts[2].data_len = 5;
	sha256_hex("zip\0x", 5, small_hex);
	url_of(url, sizeof(url), "/upload");
	memset(&q, 0, sizeof(q));
	q.method = HTTP_POST;
	q.url = url;
	q.parts = parts;
	q.n_parts = 3;
	rss0 = proc_kib("VmRSS");
	measured = rss0 > 0 && hwm_reset() == 0;
	if (http_request_send(c, &q, &r, &err) != 0)
		fail_msg("upload: %s", err.msg);
	hwm = proc_kib("VmHWM");
	assert_int_equal(r.status, 200);
	o = json_loadb((const char *)r.body.data, r.body.len, JSON_REJECT_DUPLICATES, &jerr);
	assert_true(json_is_object(o));
	assert_string_equal(json_string_value(json_object_get(o, "method")), "POST");
	ps = json_object_get(o, "parts");
	assert_true(json_is_array(ps));
	assert_int_equal(json_array_size(ps), 3);
	p = json_array_get(ps, 0);
	assert_string_equal(json_string_value(json_object_get(p, "name")), "token_field");
	assert_int_equal(json_integer_value(json_object_get(p, "len")), 7);
	p = json_array_get(ps, 1);
	assert_string_equal(json_string_value(json_object_get(p, "name")), "file");
	assert_string_equal(json_string_value(json_object_get(p, "filename")), "artifacts.zip");
	assert_string_equal(json_string_value(json_object_get(p, "content_type")), "application/zip");
	assert_int_equal(json_integer_value(json_object_get(p, "len")), UPLOAD_BYTES);
	assert_string_equal(json_string_value(json_object_get(p, "sha256")), hex);
	p = json_array_get(ps, 2);
	assert_int_equal(json_integer_value(json_object_get(p, "len")), 5);
	assert_string_equal(json_string_value(json_object_get(p, "sha256")), small_hex);
	json_decref(o);
	if (measured && hwm > 0) {
		print_message("upload of %u MiB: RSS %ld KiB before, peak %ld KiB during\n",
		              UPLOAD_BYTES >> 20, rss0, hwm);
		if (hwm - rss0 > (long)(UPLOAD_BYTES / 1024 / 2))
			fail_msg("peak RSS grew by %ld KiB for a %u KiB upload: not streamed", hwm - rss0,
			         UPLOAD_BYTES / 1024);
	} else {
		print_message("note: RSS not measured (/proc/self/clear_refs unavailable)\n");
	}
	/* PUT of the same multipart body: the method is kept */
	q.method = HTTP_PUT;
	parts[1].filename = NULL; /* default: the file's basename */
	q.n_parts = 2;
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	o = json_loadb((const char *)r.body.data, r.body.len, JSON_REJECT_DUPLICATES, &jerr);
	assert_string_equal(json_string_value(json_object_get(o, "method")), "PUT");
	p = json_array_get(json_object_get(o, "parts"), 1);
	assert_string_equal(json_string_value(json_object_get(p, "filename")), strrchr(path, '/') + 1);
	assert_string_equal(json_string_value(json_object_get(p, "sha256")), hex);
	json_decref(o);
	unlink(path);
	free(path);
	http_response_dispose(&r);
	http_client_free(c);
}

static void test_http_body_file_is_streamed(void **state)
{
	static const char *const hdrs[] = { "Content-Type: application/octet-stream", NULL };
	static const enum http_method methods[] = { HTTP_PUT, HTTP_POST, HTTP_PATCH };
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	char url[128], hex[65];
	char *path;
	size_t k;

	(void)state;
	REQUIRE_SERVER();
	path = make_file(3u << 20, hex);
	c = client_with(30000, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/echo");
	for (k = 0; k < 3; k++) {
		memset(&q, 0, sizeof(q));
		q.method = methods[k];
		q.url = url;
		q.headers = hdrs;
		q.body_file = path;
		if (http_request_send(c, &q, &r, &err) != 0)
			fail_msg("%s: %s", http_method_name(methods[k]), err.msg);
		assert_int_equal(r.status, 200);
		assert_string_equal(http_response_header(&r, "X-Method"), http_method_name(methods[k]));
		assert_string_equal(http_response_header(&r, "X-Body-Len"), "3145728");
		assert_string_equal(http_response_header(&r, "X-Body-Sha256"), hex);
	}
	unlink(path);
	free(path);
	http_response_dispose(&r);
	http_client_free(c);
}

static volatile sig_atomic_t g_cancel;

static void on_alarm(int sig)
{
	(void)sig;
	g_cancel = 1;
}

static void test_http_cancel_flag_aborts_a_transfer(void **state)
{
	struct http_client *c;
	struct http_response r;
	struct http_request q;
	struct tdxr_err err = { 0, "" };
	struct sigaction sa, old;
	struct itimerval it;
	char url[128];
	double t0, el;

	(void)state;
	REQUIRE_SERVER();
	c = client_with(20000, 0);
	http_response_init(&r);
	url_of(url, sizeof(url), "/slow?ms=8000");
	memset(&q, 0, sizeof(q));
	q.url = url;
	q.cancel = &g_cancel;
	/* already set: nothing is sent */
	g_cancel = 1;
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ECANCELED);
	assert_int_equal(http_retry_should(TDXR_ECANCELED, &r, 0), 0);
	/* set from a signal handler 200 ms into a transfer that would take 8 s */
	g_cancel = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 200000;
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	t0 = now_s();
	assert_int_equal(http_request_send(c, &q, &r, &err), TDXR_ECANCELED);
	el = now_s() - t0;
	sigaction(SIGALRM, &old, NULL);
	if (el < 0.15 || el > 3.0)
		fail_msg("cancelled after %.3f s, want soon after 0.2 s", el);
	assert_non_null(strstr(err.msg, "cancelled"));
	assert_int_equal(r.fault, HTTP_FAULT_LOCAL);
	/* a clear flag does not disturb a normal request */
	g_cancel = 0;
	url_of(url, sizeof(url), "/echo");
	assert_int_equal(http_request_send(c, &q, &r, &err), 0);
	assert_int_equal(r.status, 200);
	http_response_dispose(&r);
	http_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_url_redact_hides_userinfo_and_secret_params),
		cmocka_unit_test(test_http_retry_after_parses_both_forms_and_clamps),
		cmocka_unit_test(test_http_backoff_is_full_jitter_under_the_cap),
		cmocka_unit_test(test_http_retry_predicate_follows_the_common_policy),
		cmocka_unit_test(test_http_refuses_bad_requests_before_sending),
		cmocka_unit_test(test_http_bodies_of_every_method_round_trip),
		cmocka_unit_test(test_http_connection_is_kept_alive_between_requests),
		cmocka_unit_test(test_http_response_headers_are_captured),
		cmocka_unit_test(test_http_body_over_the_cap_is_an_error_not_truncation),
		cmocka_unit_test(test_http_connect_refused_is_a_retryable_connect_fault),
		cmocka_unit_test(test_http_server_closing_mid_body_is_a_network_fault),
		cmocka_unit_test(test_http_slow_server_times_out_within_the_bound),
		cmocka_unit_test(test_http_retry_after_is_read_from_responses),
		cmocka_unit_test(test_http_status_errors_map_codes_with_a_bounded_snippet),
		cmocka_unit_test(test_http_messages_never_carry_credentials),
		cmocka_unit_test(test_http_connect_to_dials_the_override_keeping_the_name),
		cmocka_unit_test(test_http_multipart_upload_streams_a_file_from_disk),
		cmocka_unit_test(test_http_body_file_is_streamed),
		cmocka_unit_test(test_http_cancel_flag_aborts_a_transfer),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
