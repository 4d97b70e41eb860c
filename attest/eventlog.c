/*
 * eventlog.c - TDX event logs: the dstack JSON form and a raw TCG2 crypto-agile
 * CCEL in, the dstack JSON form out, dstack runtime-event digest checks and the
 * RTMR0..3 replay.
 *
 * Trust boundary: every byte handed in is untrusted. The JSON parser checks every
 * field's type and range (imr 0..3, event_type u32, 48-byte hex digest, strict hex
 * payload, NUL-free names); the CCEL parser reads through a tdxr_cur so no length
 * field can reach past the input. Both are bounded by TDXR_CAP_EVENTLOG and by
 * EVLOG_MAX_EVENTS. A parsed log is only a claim: a runtime event's digest is
 * trusted after attest_eventlog_check_digests, and the log as a whole after its
 * replay equals the quote's RTMRs (verify.c).
 *
 * dstack "stripped" logs (GetQuote, TDX-lite attestations) carry runtime events
 * with an empty digest; as dstack does (cc-eventlog TdxEvent::digest), that
 * digest is computed here from the event itself. Every other digest is required.
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define EVLOG_MAX_EVENTS 65536u
#define EVLOG_MAX_NAME 4096u

/* TCG algorithm ids and event types (TCG PC Client PFP spec). */
#define TPM_ALG_SHA384 0x000cu
#define EV_NO_ACTION 0x00000003u
#define EV_PLATFORM_CONFIG_FLAGS 0x0000000au
#define CCEL_MAX_ALGS 16u

/* ------------------------------------------------------------------ helpers */

/* A name from the log, made safe for an error message: printable ASCII only. */
static void evlog_name_print(const char *s, char out[48])
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i < 47; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
	out[i] = '\0';
	if (s != NULL && i == 47 && s[i] != '\0')
		memcpy(out + 44, "...", 4);
}

static void evlog_event_clear(struct attest_event *ev)
{
	free(ev->event);
	free(ev->payload);
	memset(ev, 0, sizeof(*ev));
}

void attest_eventlog_free(struct attest_eventlog *log)
{
	size_t i;

	if (log == NULL)
		return;
	for (i = 0; i < log->n; i++)
		evlog_event_clear(&log->events[i]);
	free(log->events);
	free(log);
}

/* SHA-384(u32le(type) || ":" || name || ":" || payload), the dstack V1 runtime digest. */
static int evlog_runtime_digest(const struct attest_event *ev, uint8_t out[48])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t t[4];
	unsigned int n = 0;
	int ok;

	if (ctx == NULL)
		return TDXR_ENOMEM;
	t[0] = (uint8_t)ev->event_type;
	t[1] = (uint8_t)(ev->event_type >> 8);
	t[2] = (uint8_t)(ev->event_type >> 16);
	t[3] = (uint8_t)(ev->event_type >> 24);
	ok = EVP_DigestInit_ex(ctx, EVP_sha384(), NULL) && EVP_DigestUpdate(ctx, t, 4) &&
	     EVP_DigestUpdate(ctx, ":", 1) &&
	     EVP_DigestUpdate(ctx, ev->event, ev->event ? strlen(ev->event) : 0) &&
	     EVP_DigestUpdate(ctx, ":", 1) && EVP_DigestUpdate(ctx, ev->payload, ev->payload_len) &&
	     EVP_DigestFinal_ex(ctx, out, &n) && n == 48;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : TDXR_ERROR;
}

static char *evlog_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		return NULL;
	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* ---------------------------------------------------------------- JSON form */

/* Reads a required integer member in [0, max]. */
static int evlog_json_uint(json_t *obj, const char *key, uint64_t max, size_t idx, uint32_t *out,
                           struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, key);
	json_int_t x;

	if (v == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu has no \"%s\"", idx, key);
	if (!json_is_integer(v))
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu: \"%s\" is not an integer", idx,
		                    key);
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > max)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "event log: event %zu: \"%s\" %lld is out of range [0, %llu]", idx, key,
		                    (long long)x, (unsigned long long)max);
	*out = (uint32_t)x;
	return 0;
}

/* Reads a required string member; rejects embedded NULs. */
static int evlog_json_str(json_t *obj, const char *key, size_t idx, const char **s, size_t *len,
                          struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu has no \"%s\"", idx, key);
	if (!json_is_string(v))
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu: \"%s\" is not a string", idx,
		                    key);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (strlen(*s) != *len)
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu: \"%s\" contains a NUL byte", idx,
		                    key);
	return 0;
}

static int evlog_event_from_json(json_t *o, size_t idx, struct attest_event *ev, struct tdxr_err *err)
{
	const char *dig, *name, *pl;
	size_t dig_len, name_len, pl_len;
	json_t *ver;
	int rc;

	if (!json_is_object(o))
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu is not a JSON object", idx);
	if ((rc = evlog_json_uint(o, "imr", 3, idx, &ev->imr, err)) ||
	    (rc = evlog_json_uint(o, "event_type", UINT32_MAX, idx, &ev->event_type, err)) ||
	    (rc = evlog_json_str(o, "digest", idx, &dig, &dig_len, err)) ||
	    (rc = evlog_json_str(o, "event", idx, &name, &name_len, err)) ||
	    (rc = evlog_json_str(o, "event_payload", idx, &pl, &pl_len, err)))
		return rc;
	ver = json_object_get(o, "version");
	if (ver != NULL && !json_is_null(ver) && !(json_is_integer(ver) && json_integer_value(ver) == 1))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "event log: event %zu: event log version other than 1 is not supported "
		                    "(version 2 JSON-canonical runtime digests are not implemented)",
		                    idx);
	if (name_len > EVLOG_MAX_NAME)
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu: name of %zu bytes exceeds %u",
		                    idx, name_len, EVLOG_MAX_NAME);
	ev->event = evlog_strndup(name, name_len);
	ev->payload = malloc(pl_len / 2 + 1);
	if (ev->event == NULL || ev->payload == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (tdxr_hex_decode(pl, pl_len, ev->payload, pl_len / 2, &ev->payload_len))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "event log: event %zu: \"event_payload\" is not valid hex", idx);
	if (dig_len == 0) {
		/* A stripped runtime event: its digest is defined by its content. */
		if (ev->event_type != ATTEST_EVENT_DSTACK_RUNTIME)
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "event log: event %zu: empty \"digest\" (only dstack runtime events may omit it)",
			    idx);
		if (evlog_runtime_digest(ev, ev->digest))
			return tdxr_err_set(err, TDXR_ERROR, "event log: SHA-384 failed");
		return 0;
	}
	if (dig_len != 96)
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "event log: event %zu: \"digest\" has %zu hex digits, expected 96 (SHA-384)", idx,
		    dig_len);
	if (tdxr_hex_decode(dig, dig_len, ev->digest, 48, NULL))
		return tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu: \"digest\" is not valid hex",
		                    idx);
	return 0;
}

int attest_eventlog_parse_json(const uint8_t *text, size_t len, struct attest_eventlog **out,
                               struct tdxr_err *err)
{
	struct attest_eventlog *log = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	size_t i, n;
	int rc;

	*out = NULL;
	if (len > TDXR_CAP_EVENTLOG)
		return tdxr_err_set(err, TDXR_ETOOBIG, "event log: %zu bytes exceeds the %u-byte limit", len,
		                    TDXR_CAP_EVENTLOG);
	root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "event log: invalid JSON at line %d: %s", jerr.line,
		                  jerr.text);
		goto out;
	}
	if (!json_is_array(root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "event log: not a JSON array of events");
		goto out;
	}
	n = json_array_size(root);
	if (n > EVLOG_MAX_EVENTS) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "event log: %zu events exceeds the limit of %u", n,
		                  EVLOG_MAX_EVENTS);
		goto out;
	}
	log = calloc(1, sizeof(*log));
	if (log != NULL)
		log->events = calloc(n ? n : 1, sizeof(*log->events));
	if (log == NULL || log->events == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		log->n = i + 1; /* so a partly filled event is freed */
		rc = evlog_event_from_json(json_array_get(root, i), i, &log->events[i], err);
		if (rc)
			goto out;
	}
	log->n = n;
	*out = log;
	log = NULL;
	rc = 0;
out:
	attest_eventlog_free(log);
	json_decref(root);
	return rc;
}

int attest_eventlog_to_json(const struct attest_eventlog *log, char **out, struct tdxr_err *err)
{
	json_t *arr = NULL, *o;
	char hex[97], *pl;
	size_t i;
	int rc;

	*out = NULL;
	arr = json_array();
	if (arr == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < log->n; i++) {
		const struct attest_event *ev = &log->events[i];
		const char *name = ev->event ? ev->event : "";

		tdxr_hex_encode(ev->digest, 48, hex);
		pl = tdxr_hex_strdup(ev->payload, ev->payload_len);
		o = json_object();
		if (pl == NULL || o == NULL || json_array_append_new(arr, o)) {
			free(pl);
			json_decref(o);
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (json_object_set_new(o, "imr", json_integer(ev->imr)) ||
		    json_object_set_new(o, "event_type", json_integer(ev->event_type)) ||
		    json_object_set_new(o, "digest", json_string(hex)) ||
		    json_object_set_new(o, "event", json_stringn(name, strlen(name))) ||
		    json_object_set_new(o, "event_payload", json_string(pl))) {
			free(pl);
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "event log: event %zu cannot be serialised (name not UTF-8?)", i);
			goto out;
		}
		free(pl);
	}
	*out = json_dumps(arr, JSON_COMPACT);
	rc = *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	json_decref(arr);
	return rc;
}

/* ---------------------------------------------------------------- raw CCEL */

struct ccel_alg {
	uint16_t id;
	uint16_t size;
};

/* The TCG_PCClientPCREvent header carrying the TCG_EfiSpecIDEvent: learns the
 * digest algorithms and sizes every following TCG_PCR_EVENT2 uses. */
static int ccel_spec_id(struct tdxr_cur *c, struct ccel_alg *algs, uint32_t *nalgs, struct tdxr_err *err)
{
	static const uint8_t sig[16] = "Spec ID Event03";
	const uint8_t *ev, *s;
	uint32_t pcr, type, size, n, i;
	uint8_t minor, major, errata, uintn, vlen;
	struct tdxr_cur h;
	int have384 = 0;

	if (tdxr_cur_u32le(c, &pcr) || tdxr_cur_u32le(c, &type) || tdxr_cur_skip(c, 20) ||
	    tdxr_cur_u32le(c, &size))
		return tdxr_err_set(err, TDXR_EINVAL, "CCEL: header event truncated");
	if (type != EV_NO_ACTION)
		return tdxr_err_set(err, TDXR_EINVAL, "CCEL: header event type 0x%x is not EV_NO_ACTION (3)",
		                    type);
	if (tdxr_cur_bytes(c, size, &ev))
		return tdxr_err_set(err, TDXR_EINVAL, "CCEL: header event size %u exceeds the %zu bytes left",
		                    size, tdxr_cur_left(c));
	tdxr_cur_init(&h, ev, size);
	if (tdxr_cur_bytes(&h, 16, &s) || memcmp(s, sig, 16) != 0)
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "CCEL: header event is not a \"Spec ID Event03\" (not a crypto-agile log)");
	if (tdxr_cur_skip(&h, 4) || tdxr_cur_u8(&h, &minor) || tdxr_cur_u8(&h, &major) ||
	    tdxr_cur_u8(&h, &errata) || tdxr_cur_u8(&h, &uintn) || tdxr_cur_u32le(&h, &n))
		return tdxr_err_set(err, TDXR_EINVAL, "CCEL: spec ID event truncated");
	if (n == 0 || n > CCEL_MAX_ALGS)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "CCEL: spec ID event lists %u algorithms (1..%u allowed)", n,
		                    CCEL_MAX_ALGS);
	for (i = 0; i < n; i++) {
		if (tdxr_cur_u16le(&h, &algs[i].id) || tdxr_cur_u16le(&h, &algs[i].size))
			return tdxr_err_set(err, TDXR_EINVAL, "CCEL: spec ID algorithm table truncated");
		if (algs[i].size == 0 || algs[i].size > 64)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "CCEL: algorithm 0x%04x has digest size %u (1..64 allowed)",
			                    algs[i].id, algs[i].size);
		if (algs[i].id == TPM_ALG_SHA384) {
			if (algs[i].size != 48 || have384)
				return tdxr_err_set(err, TDXR_EINVAL,
				                    "CCEL: SHA-384 listed twice or not with size 48");
			have384 = 1;
		}
	}
	if (!have384)
		return tdxr_err_set(err, TDXR_EINVAL, "CCEL: the log carries no SHA-384 digests");
	if (tdxr_cur_u8(&h, &vlen) || tdxr_cur_skip(&h, vlen) || tdxr_cur_left(&h) != 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "CCEL: spec ID event vendor info does not match its size");
	*nalgs = n;
	return 0;
}

/* True when p[len] is all 0xFF (unused CCEL area) or all zero. */
static int ccel_is_fill(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != p[0] || (p[0] != 0xff && p[0] != 0x00))
			return 0;
	return 1;
}

/* dstack names the three RTMR0 "ACPI DATA" events of its OVMF (tdx.rs
 * label_tdx_acpi_data_events); do the same so our JSON matches dstack's. */
static int ccel_label_acpi(struct attest_eventlog *log)
{
	static const char *const names[3] = { "acpi-loader", "acpi-rsdp", "acpi-tables" };
	size_t i, k = 0;

	for (i = 0; i < log->n && k < 3; i++) {
		struct attest_event *ev = &log->events[i];
		char *nm;

		if (ev->imr != 0 || ev->event_type != EV_PLATFORM_CONFIG_FLAGS || ev->payload_len != 9 ||
		    memcmp(ev->payload, "ACPI DATA", 9) != 0)
			continue;
		nm = evlog_strndup(names[k], strlen(names[k]));
		if (nm == NULL)
			return TDXR_ENOMEM;
		free(ev->event);
		ev->event = nm;
		k++;
	}
	return 0;
}

int attest_eventlog_parse_ccel(const uint8_t *p, size_t len, struct attest_eventlog **out,
                               struct tdxr_err *err)
{
	struct ccel_alg algs[CCEL_MAX_ALGS];
	struct attest_eventlog *log = NULL;
	struct tdxr_cur c;
	uint32_t nalgs = 0, pcr, type, count, size, i;
	size_t cap = 0, idx;
	int rc;

	*out = NULL;
	if (len > TDXR_CAP_EVENTLOG)
		return tdxr_err_set(err, TDXR_ETOOBIG, "CCEL: %zu bytes exceeds the %u-byte limit", len,
		                    TDXR_CAP_EVENTLOG);
	tdxr_cur_init(&c, p, len);
	rc = ccel_spec_id(&c, algs, &nalgs, err);
	if (rc)
		return rc;
	log = calloc(1, sizeof(*log));
	if (log == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (idx = 0;; idx++) {
		const uint8_t *d, *body, *d384 = NULL;
		struct attest_event *ev;
		size_t left = tdxr_cur_left(&c);

		if (left == 0 || (left < 8 && ccel_is_fill(p + c.off, left)))
			break;
		if (tdxr_cur_u32le(&c, &pcr) || tdxr_cur_u32le(&c, &type)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: event %zu header truncated", idx);
			goto out;
		}
		if (pcr == 0xffffffffu || (pcr == 0 && type == 0))
			break; /* end of the log: the rest of the area is unused */
		if (tdxr_cur_u32le(&c, &count)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: event %zu digest count truncated", idx);
			goto out;
		}
		if (count != nalgs) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "CCEL: event %zu has %u digests, the header lists %u algorithms",
			                  idx, count, nalgs);
			goto out;
		}
		for (i = 0; i < count; i++) {
			uint16_t alg;
			uint32_t k;

			if (tdxr_cur_u16le(&c, &alg)) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: event %zu digest %u truncated",
				                  idx, i);
				goto out;
			}
			for (k = 0; k < nalgs && algs[k].id != alg; k++)
				;
			if (k == nalgs) {
				rc = tdxr_err_set(
				    err, TDXR_EINVAL,
				    "CCEL: event %zu uses algorithm 0x%04x not listed in the header", idx,
				    alg);
				goto out;
			}
			if (tdxr_cur_bytes(&c, algs[k].size, &d)) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: event %zu digest %u truncated",
				                  idx, i);
				goto out;
			}
			if (alg == TPM_ALG_SHA384) {
				if (d384 != NULL) {
					rc = tdxr_err_set(err, TDXR_EINVAL,
					                  "CCEL: event %zu has two SHA-384 digests", idx);
					goto out;
				}
				d384 = d;
			}
		}
		if (d384 == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: event %zu has no SHA-384 digest", idx);
			goto out;
		}
		if (tdxr_cur_u32le(&c, &size) || tdxr_cur_bytes(&c, size, &body)) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "CCEL: event %zu data truncated (size field %u, %zu left)", idx,
			                  size, tdxr_cur_left(&c));
			goto out;
		}
		if (pcr > 4) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "CCEL: event %zu has MR index %u (1..4 = RTMR0..3)", idx, pcr);
			goto out;
		}
		/* MR index 0 (MRTD, never extended by events; GCP logs use it) is skipped
		 * as dstack does; EV_NO_ACTION events are informational and never
		 * extended (TCG PC Client PFP spec), so they do not enter the replay. */
		if (pcr == 0 || type == EV_NO_ACTION)
			continue;
		if (log->n == EVLOG_MAX_EVENTS) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "CCEL: more than %u events", EVLOG_MAX_EVENTS);
			goto out;
		}
		if (log->n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct attest_event *ne = realloc(log->events, ncap * sizeof(*ne));

			if (ne == NULL) {
				rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
				goto out;
			}
			log->events = ne;
			cap = ncap;
		}
		ev = &log->events[log->n];
		memset(ev, 0, sizeof(*ev));
		log->n++;
		ev->imr = pcr - 1;
		ev->event_type = type;
		memcpy(ev->digest, d384, 48);
		ev->event = evlog_strndup("", 0);
		ev->payload = malloc(size ? size : 1);
		if (ev->event == NULL || ev->payload == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (size)
			memcpy(ev->payload, body, size);
		ev->payload_len = size;
	}
	if (ccel_label_acpi(log)) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	*out = log;
	log = NULL;
	rc = 0;
out:
	attest_eventlog_free(log);
	return rc;
}

/* ---------------------------------------------------------- digests, replay */

int attest_eventlog_check_digests(const struct attest_eventlog *log, struct tdxr_err *err)
{
	uint8_t d[48];
	char name[48];
	size_t i;
	int dstack = 0;

	for (i = 0; i < log->n; i++)
		dstack |= log->events[i].event_type == ATTEST_EVENT_DSTACK_RUNTIME;
	for (i = 0; i < log->n; i++) {
		const struct attest_event *ev = &log->events[i];

		/* In a dstack log RTMR3 carries only runtime events; anything else there is
		 * an event whose content nobody checks, so it is refused. */
		if (dstack && ev->imr == 3 && ev->event_type != ATTEST_EVENT_DSTACK_RUNTIME) {
			evlog_name_print(ev->event, name);
			return tdxr_err_set(err, TDXR_EATTEST,
			                    "event log: event %zu (\"%s\") on RTMR3 has type 0x%x, not a "
			                    "dstack runtime event",
			                    i, name, ev->event_type);
		}
		if (ev->event_type != ATTEST_EVENT_DSTACK_RUNTIME)
			continue;
		if (evlog_runtime_digest(ev, d))
			return tdxr_err_set(err, TDXR_ERROR, "event log: SHA-384 failed");
		if (CRYPTO_memcmp(d, ev->digest, 48) != 0) {
			evlog_name_print(ev->event, name);
			return tdxr_err_set(err, TDXR_EATTEST,
			                    "event log: runtime event %zu (\"%s\") digest is not "
			                    "SHA-384(type:name:payload) of its content (tampered event)",
			                    i, name);
		}
	}
	return 0;
}

int attest_eventlog_replay(const struct attest_eventlog *log, uint8_t rtmr[4][48], struct tdxr_err *err)
{
	uint8_t mr[4][48];
	EVP_MD_CTX *ctx;
	unsigned int n;
	size_t i;
	int rc = 0;

	memset(mr, 0, sizeof(mr));
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < log->n; i++) {
		const struct attest_event *ev = &log->events[i];

		if (ev->imr > 3) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "event log: event %zu has imr %u (0..3 allowed)",
			                  i, ev->imr);
			goto out;
		}
		n = 0;
		if (!EVP_DigestInit_ex(ctx, EVP_sha384(), NULL) || !EVP_DigestUpdate(ctx, mr[ev->imr], 48) ||
		    !EVP_DigestUpdate(ctx, ev->digest, 48) || !EVP_DigestFinal_ex(ctx, mr[ev->imr], &n) ||
		    n != 48) {
			rc = tdxr_err_set(err, TDXR_ERROR, "event log: SHA-384 failed");
			goto out;
		}
	}
	memcpy(rtmr, mr, sizeof(mr));
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}
