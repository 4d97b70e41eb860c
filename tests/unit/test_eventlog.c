/*
 * test_eventlog.c - attest/eventlog.c: the dstack JSON and raw CCEL parsers,
 * runtime-event digest checks, RTMR replay and JSON serialisation.
 *
 * Real vectors (dstack GetQuote responses, go-tdx-guest and dstack CCELs) are
 * read in place from TDXR_SHARED_TESTDATA and the test skips when absent; the
 * negative cases use small logs built here. RTMRs to compare with come from the
 * quote parser (attest_quote_parse).
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
#include <openssl/evp.h>

#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#define RUNTIME ATTEST_EVENT_DSTACK_RUNTIME

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

static void hex48(const char *hex, uint8_t out[48])
{
	assert_int_equal(tdxr_hex_decode_exact(hex, out, 48), 0);
}

static void sha384(const void *p, size_t n, uint8_t out[48])
{
	unsigned int len = 0;

	assert_true(EVP_Digest(p, n, out, &len, EVP_sha384(), NULL));
}

/* RTMRs of a quote given as a binary or hex file. */
static void quote_rtmrs(const uint8_t *qfile, size_t qlen, uint8_t rtmr[4][48])
{
	struct attest_quote *q = NULL;
	uint8_t *bin = NULL;
	size_t bin_len = 0;
	struct tdxr_err err = { 0 };

	assert_int_equal(attest_quote_load(qfile, qlen, &bin, &bin_len, &err), 0);
	if (attest_quote_parse(bin, bin_len, &q, &err) != 0)
		fail_msg("quote: %s", err.msg);
	memcpy(rtmr, q->td.rtmr, 4 * 48);
	attest_quote_free(q);
	free(bin);
}

static int parse_str(const char *json, struct attest_eventlog **log, struct tdxr_err *err)
{
	return attest_eventlog_parse_json((const uint8_t *)json, strlen(json), log, err);
}

/* The runtime digest computed independently of eventlog.c. */
static void runtime_digest(const char *name, const uint8_t *pl, size_t pl_len, uint8_t out[48])
{
	uint8_t buf[512];
	size_t n = 0, nl = strlen(name);

	assert_true(6 + nl + pl_len <= sizeof(buf));
	buf[n++] = 0x01;
	buf[n++] = 0x00;
	buf[n++] = 0x00;
	buf[n++] = 0x08;
	buf[n++] = ':';
	memcpy(buf + n, name, nl);
	n += nl;
	buf[n++] = ':';
	memcpy(buf + n, pl, pl_len);
	n += pl_len;
	sha384(buf, n, out);
}

/* A small, valid dstack JSON log: two boot events and runtime events. */
static char *synthetic_log(void)
{
	static const struct {
		const char *name;
		const char *pl_hex;
	} rt[] = {
		{ "system-preparing", "" },
		{ "app-id", "0102030405060708090a0b0c0d0e0f1011121314" },
		{ "compose-hash", "aa" },
		{ "system-ready", "" },
	};
	uint8_t pl[64], d[48];
	char hex[97];
	size_t i, pl_len;
	json_t *arr = json_array();
	char *out;

	for (i = 0; i < 2; i++) {
		memset(d, (int)(0x11 * (i + 1)), sizeof(d));
		tdxr_hex_encode(d, 48, hex);
		json_array_append_new(arr,
		                      json_pack("{s:i,s:i,s:s,s:s,s:s}", "imr", (int)i, "event_type", 4,
		                                "digest", hex, "event", "", "event_payload", "00000000"));
	}
	for (i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
		assert_int_equal(tdxr_hex_decode(rt[i].pl_hex, strlen(rt[i].pl_hex), pl, sizeof(pl), &pl_len),
		                 0);
		runtime_digest(rt[i].name, pl, pl_len, d);
		tdxr_hex_encode(d, 48, hex);
		json_array_append_new(arr, json_pack("{s:i,s:I,s:s,s:s,s:s}", "imr", 3, "event_type",
		                                     (json_int_t)RUNTIME, "digest", hex, "event", rt[i].name,
		                                     "event_payload", rt[i].pl_hex));
	}
	out = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	assert_non_null(out);
	return out;
}

/* Replaces the first occurrence of from with to (same or different length). */
static char *str_replace1(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	size_t a, b, c;
	char *r;

	assert_non_null(p);
	a = (size_t)(p - s);
	b = strlen(to);
	c = strlen(p + strlen(from));
	r = malloc(a + b + c + 1);
	assert_non_null(r);
	memcpy(r, s, a);
	memcpy(r + a, to, b);
	memcpy(r + a + b, p + strlen(from), c + 1);
	return r;
}

/* ------------------------------------------------- real dstack JSON logs */

struct json_vec {
	const char *file;
	size_t events;
	const char *rtmr3;
	const char *const *names;
};

static const char *const names_quote_report[] = {
	"system-preparing", "app-id",       "compose-hash",      "instance-id", "boot-mr-done",
	"key-provider",     "system-ready", "LIUM_MINER_HOTKEY", NULL
};
static const char *const names_lite[] = {
	"system-preparing", "app-id",       "compose-hash", "instance-id",  "boot-mr-done",
	"os-image-hash",    "key-provider", "storage-fs",   "system-ready", NULL
};

static void check_json_vector(const struct json_vec *v)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d, want[4][48], got[4][48], r3[48];
	size_t len, i, k = 0;
	json_t *root, *el, *q;
	json_error_t jerr;

	SHARED_OR_SKIP(d, v->file, &len);
	root = json_loadb((const char *)d, len, 0, &jerr);
	assert_non_null(root);
	el = json_object_get(root, "event_log");
	q = json_object_get(root, "quote");
	assert_true(json_is_string(el) && json_is_string(q));
	if (attest_eventlog_parse_json((const uint8_t *)json_string_value(el), json_string_length(el), &log,
	                               &err) != 0)
		fail_msg("%s: %s", v->file, err.msg);
	assert_int_equal(log->n, v->events);
	assert_int_equal(attest_eventlog_check_digests(log, &err), 0);
	assert_int_equal(attest_eventlog_replay(log, got, &err), 0);
	quote_rtmrs((const uint8_t *)json_string_value(q), json_string_length(q), want);
	for (i = 0; i < 4; i++)
		assert_memory_equal(got[i], want[i], 48);
	hex48(v->rtmr3, r3);
	assert_memory_equal(got[3], r3, 48);
	for (i = 0; i < log->n; i++) {
		if (log->events[i].event_type != RUNTIME)
			continue;
		assert_non_null(v->names[k]);
		assert_string_equal(log->events[i].event, v->names[k]);
		k++;
	}
	assert_null(v->names[k]);
	attest_eventlog_free(log);
	json_decref(root);
	free(d);
}

static void test_json_log_replays_to_quote_rtmrs(void **state)
{
	static const struct json_vec v = { "tdx/dstack/verifier-quote-report.json", 28,
		                           "0f787c3877f3e95095d5a4d13dd0fe0233803b30120d8469866719dc28f519ce0"
		                           "21fe1e53459121e7a5a4443147185a8",
		                           names_quote_report };

	(void)state;
	check_json_vector(&v);
}

static void test_stripped_json_log_computes_runtime_digests(void **state)
{
	/* GetQuote logs strip runtime digests ("") and boot payloads; RTMR0-3 still replay. */
	static const struct json_vec v = { "tdx/dstack/verifier-tdx-lite-getquote.json", 29,
		                           "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994"
		                           "aaa0f4ebab2e3a66824b5b56869137e",
		                           names_lite };

	(void)state;
	check_json_vector(&v);
}

/* ------------------------------------------------------------------- CCEL */

static void test_ccel_go_tdx_guest_replays_to_quote(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d, *q, want[4][48], got[4][48];
	size_t len, qlen, i;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/go-tdx-guest/ccel/ccel_data.dat", &len);
	SHARED_OR_SKIP(q, "tdx/go-tdx-guest/ccel/cos-113-tdx-quote.dat", &qlen);
	if (attest_eventlog_parse_ccel(d, len, &log, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(log->n, 43);
	assert_int_equal(attest_eventlog_check_digests(log, &err), 0);
	assert_int_equal(attest_eventlog_replay(log, got, &err), 0);
	quote_rtmrs(q, qlen, want);
	for (i = 0; i < 4; i++)
		assert_memory_equal(got[i], want[i], 48);
	/* MR index 1 -> imr 0; the three ACPI DATA events get dstack's labels */
	assert_int_equal(log->events[0].imr, 0);
	assert_string_equal(log->events[8].event, "acpi-loader");
	assert_string_equal(log->events[10].event, "acpi-tables");
	attest_eventlog_free(log);
	free(d);
	free(q);
}

static void test_ccel_dstack_replays_to_listed_rtmrs(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d, got[4][48], r0[48], r1[48], zero[48] = { 0 };
	size_t len;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/cc-eventlog-ccel.bin", &len);
	if (attest_eventlog_parse_ccel(d, len, &log, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(log->n, 18);
	assert_int_equal(attest_eventlog_replay(log, got, &err), 0);
	hex48("274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c44d32386fd3c993dc814e62af"
	      "9d",
	      r0);
	hex48("bdcf4ee0f7fdfe7c73fbb19ded73193aee23a6726b86d3b282ea097cf4c9ed7a0db21b5c1ccd513e410d90e310836b"
	      "26",
	      r1);
	assert_memory_equal(got[0], r0, 48);
	assert_memory_equal(got[1], r1, 48);
	assert_memory_equal(got[2], zero, 48);
	assert_memory_equal(got[3], zero, 48);
	attest_eventlog_free(log);
	free(d);
}

static void test_ccel_truncated_anywhere_is_rejected(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d;
	size_t len, cut, rejected = 0, accepted = 0;
	int rc;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/cc-eventlog-ccel.bin", &len);
	/* The log proper ends at byte 1933; cutting inside it must fail, except at an
	 * event boundary (a shorter but well-formed log). */
	for (cut = 0; cut < 1933; cut++) {
		rc = attest_eventlog_parse_ccel(d, cut, &log, &err);
		if (rc == 0) {
			assert_true(log->n < 18);
			attest_eventlog_free(log);
			log = NULL;
			accepted++;
		} else {
			assert_int_equal(rc, TDXR_EINVAL);
			assert_null(log);
			rejected++;
		}
	}
	assert_true(accepted <= 18);
	assert_true(rejected > 1800);
	free(d);
}

/* Synthetic CCEL: spec ID header with the given algorithms, then events. */
struct ccel_b {
	uint8_t b[4096];
	size_t n;
};

static void cb_u8(struct ccel_b *c, uint8_t v)
{
	assert_true(c->n < sizeof(c->b));
	c->b[c->n++] = v;
}

static void cb_u16(struct ccel_b *c, uint16_t v)
{
	cb_u8(c, (uint8_t)v);
	cb_u8(c, (uint8_t)(v >> 8));
}

static void cb_u32(struct ccel_b *c, uint32_t v)
{
	cb_u16(c, (uint16_t)v);
	cb_u16(c, (uint16_t)(v >> 16));
}

static void cb_mem(struct ccel_b *c, const void *p, size_t n)
{
	assert_true(c->n + n <= sizeof(c->b));
	memcpy(c->b + c->n, p, n);
	c->n += n;
}

static void cb_header(struct ccel_b *c, uint16_t alg, uint16_t size)
{
	uint8_t z[20] = { 0 };

	cb_u32(c, 0);
	cb_u32(c, 3);
	cb_mem(c, z, 20);
	cb_u32(c, 33);
	cb_mem(c, "Spec ID Event03", 16);
	cb_u32(c, 0);
	cb_u8(c, 0);
	cb_u8(c, 2);
	cb_u8(c, 0);
	cb_u8(c, 2);
	cb_u32(c, 1);
	cb_u16(c, alg);
	cb_u16(c, size);
	cb_u8(c, 0);
}

static void cb_event(struct ccel_b *c, uint32_t pcr, uint32_t type, uint8_t fill, const char *data)
{
	uint8_t d[48];

	memset(d, fill, sizeof(d));
	cb_u32(c, pcr);
	cb_u32(c, type);
	cb_u32(c, 1);
	cb_u16(c, 0x000c);
	cb_mem(c, d, 48);
	cb_u32(c, (uint32_t)strlen(data));
	cb_mem(c, data, strlen(data));
}

static int ccel_parse(struct ccel_b *c, struct attest_eventlog **log, struct tdxr_err *err)
{
	return attest_eventlog_parse_ccel(c->b, c->n, log, err);
}

static void test_ccel_synthetic_replay_and_terminators(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	struct ccel_b c = { .n = 0 };
	uint8_t got[4][48], want[48], buf[96];
	size_t i;

	(void)state;
	cb_header(&c, 0x000c, 48);
	cb_event(&c, 1, 0x80000001, 0xaa, "a");
	cb_event(&c, 3, 0x0d, 0xbb, "grub");
	cb_event(&c, 2, 3, 0xcc, "no action: not extended");
	cb_event(&c, 0, 1, 0xdd, "MR index 0: skipped");
	for (i = 0; i < 64; i++)
		cb_u8(&c, 0xff);
	assert_int_equal(ccel_parse(&c, &log, &err), 0);
	assert_int_equal(log->n, 2);
	assert_int_equal(log->events[0].imr, 0);
	assert_int_equal(log->events[1].imr, 2);
	assert_int_equal(log->events[1].payload_len, 4);
	assert_int_equal(attest_eventlog_replay(log, got, &err), 0);
	memset(buf, 0, 48);
	memset(buf + 48, 0xbb, 48);
	sha384(buf, 96, want);
	assert_memory_equal(got[2], want, 48);
	attest_eventlog_free(log);
	log = NULL;

	/* zero fill also ends the log, and so does the exact end of the input */
	c.n -= 64;
	for (i = 0; i < 5; i++)
		cb_u8(&c, 0);
	assert_int_equal(ccel_parse(&c, &log, &err), 0);
	assert_int_equal(log->n, 2);
	attest_eventlog_free(log);
	log = NULL;
	c.n -= 5;
	assert_int_equal(ccel_parse(&c, &log, &err), 0);
	attest_eventlog_free(log);
	log = NULL;
	/* but a partial header that is not fill is truncation */
	cb_u8(&c, 0x02);
	cb_u8(&c, 0x00);
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	assert_null(log);
}

static void test_ccel_malformed_is_rejected(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	struct ccel_b c;
	size_t mark;

	(void)state;
	/* no SHA-384 in the header */
	c.n = 0;
	cb_header(&c, 0x000b, 32);
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "SHA-384"));
	/* not a crypto-agile log */
	c.n = 0;
	cb_header(&c, 0x000c, 48);
	c.b[20 + 4 + 4 + 5] = 'X';
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	/* MR index 5 */
	c.n = 0;
	cb_header(&c, 0x000c, 48);
	mark = c.n;
	cb_event(&c, 5, 1, 0, "x");
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "MR index 5"));
	/* huge digest count */
	c.n = mark;
	cb_event(&c, 1, 1, 0, "x");
	memcpy(c.b + mark + 8, "\xff\xff\xff\xff", 4);
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	/* unknown algorithm */
	c.n = mark;
	cb_event(&c, 1, 1, 0, "x");
	c.b[mark + 12] = 0x0b;
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "0x000b"));
	/* event size past the end */
	c.n = mark;
	cb_event(&c, 1, 1, 0, "x");
	memcpy(c.b + c.n - 5, "\x00\x00\x00\x40", 4);
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "event 0"));
	/* header event size past the end */
	c.n = 0;
	cb_header(&c, 0x000c, 48);
	memcpy(c.b + 28, "\xff\xff\xff\x7f", 4);
	assert_int_equal(ccel_parse(&c, &log, &err), TDXR_EINVAL);
	/* empty input */
	assert_int_equal(attest_eventlog_parse_ccel((const uint8_t *)"", 0, &log, &err), TDXR_EINVAL);
	assert_null(log);
}

/* ------------------------------------------------------- digests and replay */

static void test_tampered_runtime_payload_fails_check_naming_event(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	char *text = synthetic_log(), *bad;

	(void)state;
	assert_int_equal(parse_str(text, &log, &err), 0);
	assert_int_equal(attest_eventlog_check_digests(log, &err), 0);
	attest_eventlog_free(log);
	log = NULL;
	/* one payload byte of "app-id" (event 3) changed, digest left as it was */
	bad = str_replace1(text, "0102030405", "ff02030405");
	assert_int_equal(parse_str(bad, &log, &err), 0);
	assert_int_equal(attest_eventlog_check_digests(log, &err), TDXR_EATTEST);
	assert_non_null(strstr(err.msg, "event 3"));
	assert_non_null(strstr(err.msg, "\"app-id\""));
	attest_eventlog_free(log);
	free(bad);
	free(text);
}

static void test_tampered_real_runtime_event_fails_check(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t *d;
	size_t len;
	json_t *root;

	(void)state;
	SHARED_OR_SKIP(d, "tdx/dstack/verifier-quote-report.json", &len);
	root = json_loadb((const char *)d, len, 0, NULL);
	assert_non_null(root);
	assert_int_equal(parse_str(json_string_value(json_object_get(root, "event_log")), &log, &err), 0);
	log->events[23].payload[0] ^= 1; /* instance-id */
	assert_int_equal(attest_eventlog_check_digests(log, &err), TDXR_EATTEST);
	assert_non_null(strstr(err.msg, "event 23 (\"instance-id\")"));
	attest_eventlog_free(log);
	json_decref(root);
	free(d);
}

static void test_tampered_digest_changes_replay(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t a[4][48], b[4][48];
	char *text = synthetic_log();

	(void)state;
	assert_int_equal(parse_str(text, &log, &err), 0);
	assert_int_equal(attest_eventlog_replay(log, a, &err), 0);
	log->events[1].digest[47] ^= 0x80; /* imr 1 */
	assert_int_equal(attest_eventlog_replay(log, b, &err), 0);
	assert_memory_equal(a[0], b[0], 48);
	assert_memory_not_equal(a[1], b[1], 48);
	assert_memory_equal(a[3], b[3], 48);
	/* replay order matters too */
	log->events[1].digest[47] ^= 0x80;
	{
		struct attest_event t = log->events[2];

		log->events[2] = log->events[3];
		log->events[3] = t;
	}
	assert_int_equal(attest_eventlog_replay(log, b, &err), 0);
	assert_memory_not_equal(a[3], b[3], 48);
	attest_eventlog_free(log);
	free(text);
}

static void test_replay_is_sha384_extend_from_zero(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t got[4][48], buf[96], want[48], zero[48] = { 0 };
	char *text = synthetic_log();

	(void)state;
	assert_int_equal(parse_str(text, &log, &err), 0);
	assert_int_equal(attest_eventlog_replay(log, got, &err), 0);
	memset(buf, 0, 48);
	memset(buf + 48, 0x11, 48);
	sha384(buf, 96, want);
	assert_memory_equal(got[0], want, 48);
	assert_memory_equal(got[2], zero, 48);
	/* imr out of range in a hand-built log */
	log->events[0].imr = 4;
	assert_int_equal(attest_eventlog_replay(log, got, &err), TDXR_EINVAL);
	attest_eventlog_free(log);
	free(text);
}

static void test_empty_runtime_digest_is_computed_other_empty_rejected(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	uint8_t want[48];

	(void)state;
	assert_int_equal(
	    parse_str("[{\"imr\":3,\"event_type\":134217729,\"digest\":\"\",\"event\":\"app-id\","
	              "\"event_payload\":\"abcd\"}]",
	              &log, &err),
	    0);
	runtime_digest("app-id", (const uint8_t *)"\xab\xcd", 2, want);
	assert_memory_equal(log->events[0].digest, want, 48);
	assert_int_equal(attest_eventlog_check_digests(log, &err), 0);
	attest_eventlog_free(log);
	log = NULL;
	assert_int_equal(parse_str("[{\"imr\":0,\"event_type\":4,\"digest\":\"\",\"event\":\"\","
	                           "\"event_payload\":\"\"}]",
	                           &log, &err),
	                 TDXR_EINVAL);
	assert_non_null(strstr(err.msg, "event 0"));
	assert_null(log);
}

/* ----------------------------------------------------------- serialisation */

static void test_to_json_round_trips(void **state)
{
	struct attest_eventlog *a = NULL, *b = NULL;
	struct tdxr_err err = { 0 };
	char *text = synthetic_log(), *j1 = NULL, *j2 = NULL;
	uint8_t *d;
	size_t len, i;
	json_t *root;

	(void)state;
	assert_int_equal(parse_str(text, &a, &err), 0);
	assert_int_equal(attest_eventlog_to_json(a, &j1, &err), 0);
	assert_string_equal(j1, text); /* same field order and compact form as dstack */
	free(j1);
	attest_eventlog_free(a);
	a = NULL;
	free(text);

	SHARED_OR_SKIP(d, "tdx/dstack/verifier-tdx-lite-getquote.json", &len);
	root = json_loadb((const char *)d, len, 0, NULL);
	assert_int_equal(parse_str(json_string_value(json_object_get(root, "event_log")), &a, &err), 0);
	assert_int_equal(attest_eventlog_to_json(a, &j1, &err), 0);
	assert_int_equal(parse_str(j1, &b, &err), 0);
	assert_int_equal(attest_eventlog_to_json(b, &j2, &err), 0);
	assert_string_equal(j1, j2);
	assert_int_equal(a->n, b->n);
	for (i = 0; i < a->n; i++) {
		assert_int_equal(a->events[i].imr, b->events[i].imr);
		assert_int_equal(a->events[i].event_type, b->events[i].event_type);
		assert_memory_equal(a->events[i].digest, b->events[i].digest, 48);
		assert_string_equal(a->events[i].event, b->events[i].event);
		assert_int_equal(a->events[i].payload_len, b->events[i].payload_len);
	}
	free(j1);
	free(j2);
	attest_eventlog_free(a);
	attest_eventlog_free(b);
	json_decref(root);
	free(d);
}

/* ------------------------------------------------------ malformed JSON logs */

static void expect_einval(const char *json, const char *needle)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };
	int rc = parse_str(json, &log, &err);

	if (rc != TDXR_EINVAL)
		fail_msg("expected EINVAL for %s, got %d (%s)", json, rc, err.msg);
	assert_null(log);
	if (needle != NULL && strstr(err.msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

#define D96 "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"

static void test_malformed_json_logs_are_rejected(void **state)
{
	(void)state;
	expect_einval("", "invalid JSON");
	expect_einval("{\"imr\":0}", "not a JSON array");
	expect_einval("\"[]\"", "invalid JSON"); /* a bare string is not even accepted by the loader */
	expect_einval("[1]", "event 0 is not a JSON object");
	expect_einval("[] trailing", "invalid JSON");
	expect_einval("[{\"event_type\":4,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "no \"imr\"");
	expect_einval("[{\"imr\":0,\"digest\":\"" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "no \"event_type\"");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"event\":\"\",\"event_payload\":\"\"}]",
	              "no \"digest\"");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96 "\",\"event_payload\":\"\"}]",
	              "no \"event\"");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96 "\",\"event\":\"\"}]",
	              "no \"event_payload\"");
	expect_einval("[{\"imr\":4,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "\"imr\" 4 is out of range");
	expect_einval("[{\"imr\":-1,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "out of range");
	expect_einval("[{\"imr\":\"0\",\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "not an integer");
	expect_einval("[{\"imr\":0,\"event_type\":4294967296,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "out of range");
	expect_einval("[{\"imr\":0,\"event_type\":1.5,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "not an integer");
	/* wrong digest lengths: SHA-256 sized, one digit short */
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"},"
	              "{\"imr\":0,\"event_type\":4,\"digest\":"
	              "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
	              "\"event\":\"\",\"event_payload\":\"\"}]",
	              "event 1: \"digest\" has 64 hex digits, expected 96");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96
	              "0\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "97 hex digits");
	/* bad hex */
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"0g\"}]",
	              "\"event_payload\" is not valid hex");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"abc\"}]",
	              "not valid hex");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"zz" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              NULL);
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\""
	              "0x" D96 "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              NULL);
	/* NUL in a name, duplicate keys, unsupported version */
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"a\\u0000b\",\"event_payload\":\"\"}]",
	              NULL);
	expect_einval("[{\"imr\":0,\"imr\":1,\"event_type\":4,\"digest\":\"" D96
	              "\",\"event\":\"\",\"event_payload\":\"\"}]",
	              "invalid JSON");
	expect_einval("[{\"imr\":3,\"event_type\":134217729,\"digest\":\"" D96
	              "\",\"event\":\"x\",\"event_payload\":\"\",\"version\":2}]",
	              "version");
	expect_einval("[{\"imr\":0,\"event_type\":4,\"digest\":5,\"event\":\"\",\"event_payload\":\"\"}]",
	              "\"digest\" is not a string");
}

static void test_huge_event_count_is_rejected(void **state)
{
	size_t n = 65537, i;
	char *s = malloc(2 * n + 2);

	(void)state;
	assert_non_null(s);
	s[0] = '[';
	for (i = 0; i < n; i++) {
		s[1 + 2 * i] = '0';
		s[2 + 2 * i] = ',';
	}
	s[2 * n] = ']';
	s[2 * n + 1] = '\0';
	expect_einval(s, "65537 events exceeds");
	free(s);
}

static void test_oversized_input_is_too_big(void **state)
{
	struct attest_eventlog *log = NULL;
	struct tdxr_err err = { 0 };

	(void)state;
	/* the cap is checked before the bytes are read, so a short buffer suffices */
	assert_int_equal(
	    attest_eventlog_parse_json((const uint8_t *)"[]", TDXR_CAP_EVENTLOG + 1u, &log, &err),
	    TDXR_ETOOBIG);
	assert_int_equal(attest_eventlog_parse_ccel((const uint8_t *)"", TDXR_CAP_EVENTLOG + 1u, &log, &err),
	                 TDXR_ETOOBIG);
	assert_null(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_log_replays_to_quote_rtmrs),
		cmocka_unit_test(test_stripped_json_log_computes_runtime_digests),
		cmocka_unit_test(test_ccel_go_tdx_guest_replays_to_quote),
		cmocka_unit_test(test_ccel_dstack_replays_to_listed_rtmrs),
		cmocka_unit_test(test_ccel_truncated_anywhere_is_rejected),
		cmocka_unit_test(test_ccel_synthetic_replay_and_terminators),
		cmocka_unit_test(test_ccel_malformed_is_rejected),
		cmocka_unit_test(test_tampered_runtime_payload_fails_check_naming_event),
		cmocka_unit_test(test_tampered_real_runtime_event_fails_check),
		cmocka_unit_test(test_tampered_digest_changes_replay),
		cmocka_unit_test(test_replay_is_sha384_extend_from_zero),
		cmocka_unit_test(test_empty_runtime_digest_is_computed_other_empty_rejected),
		cmocka_unit_test(test_to_json_round_trips),
		cmocka_unit_test(test_malformed_json_logs_are_rejected),
		cmocka_unit_test(test_huge_event_count_is_rejected),
		cmocka_unit_test(test_oversized_input_is_too_big),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
