/*
 * dstack.c - dstack identity and evidence: the app identity read from RTMR3
 * runtime events, the compose hash, the RA-TLS REPORTDATA binding, and the
 * parser for whatever a guest agent or cloud API hands back (Info, GetQuote,
 * legacy tappd, Phala Cloud /cvms/{id}/attestation, SCALE VersionedAttestation).
 *
 * Trust boundary: every input is untrusted and bounded by TDXR_CAP_EVENTLOG.
 * Evidence is only parsed here, never believed: the quote still has to verify,
 * the event log to replay to its RTMRs, and identity comes from events before
 * "system-ready" only (later events are the app's own and could fake an app-id).
 * Every event log, whatever form it arrives in (JSON string, JSON array, SCALE),
 * is funnelled through attest_eventlog_parse_json so it meets one validator.
 * When one response carries the same thing twice (two quotes, two app ids), the
 * copies must agree or the evidence is rejected.
 *
 * Wire formats follow Dstack-TEE/dstack: ra-tls (extension 1.3.6.1.4.1.62397.1.1 =
 * DER OCTET STRING wrapping the raw quote; .1.8 = VersionedAttestation bytes,
 * likewise wrapped) and dstack-attest (SCALE LegacyVersionedAttestation::V0).
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OID_RATLS_QUOTE "1.3.6.1.4.1.62397.1.1"
#define OID_RATLS_ATTESTATION "1.3.6.1.4.1.62397.1.8"

#define SCALE_MAX_EVENTS 65536u
#define SCALE_MAX_NAME 4096u
#define SCALE_MAX_DIGEST 64u

/* ================================================================= identity */

struct id_field {
	const char *name; /* runtime event name */
	char *dst;
	size_t cap;
	int text; /* copy the payload as text instead of hex */
	int seen;
};

int attest_dstack_identity_get(const struct attest_eventlog *log, struct attest_dstack_identity *out,
                               struct tdxr_err *err)
{
	struct attest_dstack_identity id;
	struct id_field f[5];
	size_t i, k;

	memset(out, 0, sizeof(*out));
	memset(&id, 0, sizeof(id));
	f[0] = (struct id_field){ "app-id", id.app_id, sizeof(id.app_id), 0, 0 };
	f[1] = (struct id_field){ "compose-hash", id.compose_hash, sizeof(id.compose_hash), 0, 0 };
	f[2] = (struct id_field){ "instance-id", id.instance_id, sizeof(id.instance_id), 0, 0 };
	f[3] = (struct id_field){ "os-image-hash", id.os_image_hash, sizeof(id.os_image_hash), 0, 0 };
	f[4] = (struct id_field){ "key-provider", id.key_provider, sizeof(id.key_provider), 1, 0 };
	for (i = 0; i < log->n; i++) {
		const struct attest_event *ev = &log->events[i];

		if (ev->imr != 3 || ev->event_type != ATTEST_EVENT_DSTACK_RUNTIME || ev->event == NULL)
			continue;
		if (strcmp(ev->event, "system-ready") == 0) {
			id.system_ready = 1;
			break; /* what follows is the app's own */
		}
		for (k = 0; k < 5 && strcmp(ev->event, f[k].name) != 0; k++)
			;
		if (k == 5)
			continue;
		if (f[k].seen)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "event log: second \"%s\" event (event %zu) before system-ready",
			                    f[k].name, i);
		f[k].seen = 1;
		if (f[k].text) {
			size_t n = ev->payload_len < f[k].cap - 1 ? ev->payload_len : f[k].cap - 1;

			if (ev->payload_len && memchr(ev->payload, '\0', ev->payload_len))
				return tdxr_err_set(err, TDXR_EINVAL,
				                    "event log: \"%s\" event %zu payload contains NUL",
				                    f[k].name, i);
			if (n)
				memcpy(f[k].dst, ev->payload, n);
			f[k].dst[n] = '\0';
		} else {
			if (ev->payload_len > (f[k].cap - 1) / 2)
				return tdxr_err_set(
				    err, TDXR_EINVAL,
				    "event log: \"%s\" event %zu payload of %zu bytes is longer than %zu",
				    f[k].name, i, ev->payload_len, (f[k].cap - 1) / 2);
			tdxr_hex_encode(ev->payload, ev->payload_len, f[k].dst);
		}
	}
	*out = id;
	return 0;
}

void attest_compose_hash(const char *app_compose, size_t len, char out[65])
{
	uint8_t md[32];
	unsigned int n = 0;

	if (!EVP_Digest(app_compose, len, md, &n, EVP_sha256(), NULL) || n != 32) {
		out[0] = '\0';
		return;
	}
	tdxr_hex_encode(md, 32, out);
}

/* First (leaf) certificate of a PEM chain (caller frees). Only the leaf is read:
 * dstack chains put a blank line between certificates, and verifying the rest of
 * the chain is not this parser's business. Text before the leaf is refused. */
static int dstack_leaf(const char *pem, size_t len, X509 **out, struct tdxr_err *err)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	BIO *bio = NULL;
	size_t i = 0;
	int rc = 0;

	*out = NULL;
	if (len > TDXR_CAP_EVENTLOG)
		return tdxr_err_set(err, TDXR_ETOOBIG, "app certificate: %zu bytes exceeds the limit", len);
	if (memchr(pem, '\0', len))
		return tdxr_err_set(err, TDXR_EINVAL, "app certificate: PEM contains a NUL byte");
	while (i < len && (pem[i] == ' ' || pem[i] == '\t' || pem[i] == '\r' || pem[i] == '\n'))
		i++;
	if (len - i < sizeof(begin) - 1 || memcmp(pem + i, begin, sizeof(begin) - 1) != 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "app certificate: does not start with a PEM certificate");
	bio = BIO_new_mem_buf(pem + i, (int)(len - i));
	if (bio == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	*out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (*out == NULL)
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "app certificate: the first PEM certificate cannot be decoded");
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

int attest_ratls_report_data(const char *cert_pem, size_t len, uint8_t out[64], struct tdxr_err *err)
{
	X509 *leaf = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = NULL;
	unsigned int n = 0;
	uint8_t md[64];
	int dlen, rc;

	rc = dstack_leaf(cert_pem, len, &leaf, err);
	if (rc)
		return rc;
	dlen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der);
	if (dlen <= 0) {
		rc =
		    tdxr_err_set(err, TDXR_EINVAL, "app certificate: SubjectPublicKeyInfo cannot be encoded");
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) ||
	    !EVP_DigestUpdate(ctx, "ratls-cert:", 11) || !EVP_DigestUpdate(ctx, der, (size_t)dlen) ||
	    !EVP_DigestFinal_ex(ctx, md, &n) || n != 64) {
		rc = tdxr_err_set(err, TDXR_ERROR, "SHA-512 failed");
		goto out;
	}
	memcpy(out, md, 64);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	X509_free(leaf);
	return rc;
}

/* ==================================================================== SCALE */

/* SCALE compact integer (parity-scale-codec); non-canonical encodings are
 * rejected as the reference decoder does. */
static int scale_compact(struct tdxr_cur *c, uint64_t *out)
{
	uint8_t b0, b;
	uint16_t v16;
	uint32_t v32;
	uint64_t v = 0;
	unsigned n, i;

	if (tdxr_cur_u8(c, &b0))
		return TDXR_EINVAL;
	switch (b0 & 3) {
	case 0: *out = b0 >> 2; return 0;
	case 1:
		c->off--;
		if (tdxr_cur_u16le(c, &v16) || (v16 >> 2) < 64)
			return TDXR_EINVAL;
		*out = v16 >> 2;
		return 0;
	case 2:
		c->off--;
		if (tdxr_cur_u32le(c, &v32) || (v32 >> 2) < (1u << 14))
			return TDXR_EINVAL;
		*out = v32 >> 2;
		return 0;
	default:
		n = (unsigned)(b0 >> 2) + 4;
		if (n > 8)
			return TDXR_EINVAL;
		for (i = 0; i < n; i++) {
			if (tdxr_cur_u8(c, &b))
				return TDXR_EINVAL;
			v |= (uint64_t)b << (8 * i);
		}
		if (v < (1u << 30) || (n > 4 && (v >> (8 * (n - 1))) == 0))
			return TDXR_EINVAL;
		*out = v;
		return 0;
	}
}

/* Vec<u8> / String: compact length, then the bytes (borrowed), at most max. */
static int scale_bytes(struct tdxr_cur *c, size_t max, const uint8_t **p, size_t *n)
{
	uint64_t len;

	if (scale_compact(c, &len) || len > max || len > tdxr_cur_left(c))
		return TDXR_EINVAL;
	*n = (size_t)len;
	return tdxr_cur_bytes(c, *n, p);
}

static int scale_name(struct tdxr_cur *c, const uint8_t **p, size_t *n)
{
	if (scale_bytes(c, SCALE_MAX_NAME, p, n) || (*n && memchr(*p, '\0', *n)))
		return TDXR_EINVAL;
	return 0;
}

/* One event as the dstack JSON object (digest may be empty: stripped runtime event). */
static json_t *scale_event_json(uint32_t imr, uint32_t type, const uint8_t *dg, size_t dg_len,
                                const uint8_t *name, size_t name_len, const uint8_t *pl, size_t pl_len)
{
	json_t *o = json_object();
	char *dh = tdxr_hex_strdup(dg, dg_len), *ph = tdxr_hex_strdup(pl, pl_len);
	json_t *nm = json_stringn((const char *)name, name_len);

	if (o == NULL || dh == NULL || ph == NULL || nm == NULL ||
	    json_object_set_new(o, "imr", json_integer(imr)) ||
	    json_object_set_new(o, "event_type", json_integer(type)) ||
	    json_object_set_new(o, "digest", json_string(dh)) || json_object_set(o, "event", nm) ||
	    json_object_set_new(o, "event_payload", json_string(ph))) {
		json_decref(o);
		o = NULL;
	}
	json_decref(nm);
	free(dh);
	free(ph);
	return o;
}

struct scale_rt {
	const uint8_t *name, *pl;
	size_t name_len, pl_len;
};

/*
 * dstack-attest LegacyVersionedAttestation::V0 (SCALE):
 *   u8 0 (V0) | Attestation { AttestationQuote: u8 variant, 0 = DstackTdx(TdxQuote
 *   { quote: Vec<u8>, event_log: Vec<TdxEvent{imr u32, event_type u32, digest
 *   Vec<u8>, event String, event_payload Vec<u8>}> }), runtime_events:
 *   Vec<RuntimeEvent{event String, payload Vec<u8>}>, report_data [u8; 64],
 *   config String } and nothing after.
 * runtime_events must repeat the log's runtime events (dstack replays RTMR3 from
 * them); when the log has none they are appended to it as RTMR3 events.
 */
static int scale_attestation(const uint8_t *p, size_t len, uint8_t **quote, size_t *quote_len,
                             struct attest_eventlog **log, struct tdxr_err *err)
{
	struct tdxr_cur c;
	struct scale_rt *rt = NULL;
	const uint8_t *q, *dg, *nm, *pl;
	size_t q_len, dg_len, nm_len, pl_len, nrt = 0, i;
	uint64_t n, m;
	uint32_t imr, type;
	uint8_t b;
	json_t *arr = NULL, *o;
	char *text = NULL;
	int rc;

	*quote = NULL;
	*quote_len = 0;
	*log = NULL;
	if (len == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "empty");
	if (len > TDXR_CAP_EVENTLOG)
		return tdxr_err_set(err, TDXR_ETOOBIG, "%zu bytes exceeds the limit", len);
	if (p[0] != 0x00) {
		if ((p[0] & 0xf0) == 0x80 || p[0] == 0xde || p[0] == 0xdf)
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "msgpack VersionedAttestation (V1) is not supported, only SCALE V0");
		return tdxr_err_set(err, TDXR_EINVAL, "unknown format (first byte 0x%02x)", p[0]);
	}
	tdxr_cur_init(&c, p + 1, len - 1);
	if (tdxr_cur_u8(&c, &b))
		return tdxr_err_set(err, TDXR_EINVAL, "truncated before the quote variant");
	if (b != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "quote variant %u is not supported (only 0, DstackTdx)",
		                    b);
	if (scale_bytes(&c, TDXR_CAP_QUOTE, &q, &q_len) || q_len == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "quote missing, empty, truncated or too long");
	if (scale_compact(&c, &n) || n > SCALE_MAX_EVENTS || n > tdxr_cur_left(&c) / 11)
		return tdxr_err_set(err, TDXR_EINVAL, "event log count invalid or exceeds the input");
	arr = json_array();
	rt = calloc((size_t)n + 1, sizeof(*rt));
	if (arr == NULL || rt == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (tdxr_cur_u32le(&c, &imr) || tdxr_cur_u32le(&c, &type) ||
		    scale_bytes(&c, SCALE_MAX_DIGEST, &dg, &dg_len) || scale_name(&c, &nm, &nm_len) ||
		    scale_bytes(&c, TDXR_CAP_EVENTLOG, &pl, &pl_len)) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "event %zu truncated, too long or has a NUL in its name", i);
			goto out;
		}
		o = scale_event_json(imr, type, dg, dg_len, nm, nm_len, pl, pl_len);
		if (o == NULL || json_array_append_new(arr, o)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "event %zu name is not UTF-8", i);
			goto out;
		}
		if (type == ATTEST_EVENT_DSTACK_RUNTIME)
			rt[nrt++] = (struct scale_rt){ nm, pl, nm_len, pl_len };
	}
	if (scale_compact(&c, &m) || m > tdxr_cur_left(&c) / 2) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "runtime event count invalid");
		goto out;
	}
	if (nrt != 0 && m != nrt) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "%llu runtime_events but the event log has %zu runtime events",
		                  (unsigned long long)m, nrt);
		goto out;
	}
	for (i = 0; i < m; i++) {
		if (scale_name(&c, &nm, &nm_len) || scale_bytes(&c, TDXR_CAP_EVENTLOG, &pl, &pl_len)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "runtime event %zu truncated", i);
			goto out;
		}
		if (nrt != 0) {
			if (nm_len != rt[i].name_len || pl_len != rt[i].pl_len ||
			    (nm_len && memcmp(nm, rt[i].name, nm_len)) ||
			    (pl_len && memcmp(pl, rt[i].pl, pl_len))) {
				rc = tdxr_err_set(err, TDXR_EINVAL,
				                  "runtime event %zu differs from the event log's", i);
				goto out;
			}
			continue;
		}
		o = scale_event_json(3, ATTEST_EVENT_DSTACK_RUNTIME, NULL, 0, nm, nm_len, pl, pl_len);
		if (o == NULL || json_array_append_new(arr, o)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "runtime event %zu name is not UTF-8", i);
			goto out;
		}
	}
	if (tdxr_cur_skip(&c, 64) || scale_bytes(&c, TDXR_CAP_EVENTLOG, &nm, &nm_len)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "report_data or config truncated");
		goto out;
	}
	if (tdxr_cur_left(&c) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%zu trailing bytes", tdxr_cur_left(&c));
		goto out;
	}
	text = json_dumps(arr, JSON_COMPACT);
	if (text == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	rc = attest_eventlog_parse_json((const uint8_t *)text, strlen(text), log, err);
	if (rc)
		goto out;
	*quote = malloc(q_len);
	if (*quote == NULL) {
		attest_eventlog_free(*log);
		*log = NULL;
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(*quote, q, q_len);
	*quote_len = q_len;
	rc = 0;
out:
	free(text);
	free(rt);
	json_decref(arr);
	return rc;
}

/* ================================================================= evidence */

void attest_evidence_free(struct attest_evidence *e)
{
	if (e == NULL)
		return;
	free(e->quote);
	attest_eventlog_free(e->eventlog);
	free(e->app_compose);
	free(e->app_cert);
	free(e->app_id);
	free(e->instance_id);
	free(e);
}

struct ev_ctx {
	struct attest_evidence *e;
	const char *quote_src; /* where e->quote came from */
	const char *log_src;   /* where e->eventlog came from */
};

/* Takes ownership of q. A second source must carry the very same quote. */
static int ev_quote_set(struct ev_ctx *x, uint8_t *q, size_t n, const char *src, struct tdxr_err *err)
{
	if (x->e->quote == NULL) {
		x->e->quote = q;
		x->e->quote_len = n;
		x->quote_src = src;
		return 0;
	}
	if (x->e->quote_len != n || memcmp(x->e->quote, q, n) != 0) {
		free(q);
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: the quote in %s differs from the one in %s",
		                    src, x->quote_src);
	}
	free(q);
	return 0;
}

static int ev_log_set(struct ev_ctx *x, struct attest_eventlog *log, const char *src, struct tdxr_err *err)
{
	if (x->e->eventlog != NULL) {
		attest_eventlog_free(log);
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: two event logs (%s and %s)", x->log_src,
		                    src);
	}
	x->e->eventlog = log;
	x->log_src = src;
	return 0;
}

/* A string member that may be absent or null: *s = NULL then. */
static int ev_opt_str(json_t *obj, const char *key, const char *where, const char **s, size_t *len,
                      struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, key);

	*s = NULL;
	*len = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s\"%s\" is not a string", where, key);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (strlen(*s) != *len)
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s\"%s\" contains a NUL byte", where, key);
	return 0;
}

/* Hex quote text, optional 0x. */
static int ev_quote_hex(struct ev_ctx *x, const char *s, size_t len, const char *src, struct tdxr_err *err)
{
	uint8_t *q;
	size_t n = 0;

	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		len -= 2;
	}
	if (len == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s is empty", src);
	if (len / 2 > TDXR_CAP_QUOTE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "evidence: %s exceeds the %u-byte quote limit", src,
		                    TDXR_CAP_QUOTE);
	q = malloc(len / 2 + 1);
	if (q == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (tdxr_hex_decode(s, len, q, len / 2, &n)) {
		free(q);
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s is not valid hex", src);
	}
	return ev_quote_set(x, q, n, src, err);
}

/* An event log given as the JSON text of the array, or as the array itself. */
static int ev_log_json(struct ev_ctx *x, json_t *v, const char *src, struct tdxr_err *err)
{
	struct attest_eventlog *log = NULL;
	char *text = NULL;
	int rc;

	if (json_is_string(v)) {
		rc = attest_eventlog_parse_json((const uint8_t *)json_string_value(v), json_string_length(v),
		                                &log, err);
	} else if (json_is_array(v)) {
		text = json_dumps(v, JSON_COMPACT);
		if (text == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		rc = attest_eventlog_parse_json((const uint8_t *)text, strlen(text), &log, err);
		free(text);
	} else {
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s is neither a JSON array nor its text",
		                    src);
	}
	if (rc) {
		tdxr_err_prefix(err, "evidence: %s", src);
		return rc;
	}
	return ev_log_set(x, log, src, err);
}

/* Hex identifier (app_id, instance_id); two sources must agree. "" = absent. */
static int ev_hex_id(char **dst, const char *s, size_t len, const char *what, struct tdxr_err *err)
{
	size_t i;

	if (s == NULL || len == 0)
		return 0;
	if (len > 128)
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s is longer than 128 characters", what);
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return tdxr_err_set(err, TDXR_EINVAL, "evidence: %s is not hex", what);
	if (*dst != NULL) {
		if (strlen(*dst) != len || strncasecmp(*dst, s, len) != 0)
			return tdxr_err_set(err, TDXR_EINVAL, "evidence: two different %s values", what);
		return 0;
	}
	*dst = strndup(s, len);
	return *dst ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

static int ev_scale(struct ev_ctx *x, const uint8_t *p, size_t len, const char *src, int log_if_absent,
                    struct tdxr_err *err)
{
	struct attest_eventlog *log = NULL;
	uint8_t *q = NULL;
	size_t qn = 0;
	int rc;

	rc = scale_attestation(p, len, &q, &qn, &log, err);
	if (rc) {
		tdxr_err_prefix(err, "evidence: %s", src);
		return rc;
	}
	rc = ev_quote_set(x, q, qn, src, err);
	if (rc) {
		attest_eventlog_free(log);
		return rc;
	}
	if (log_if_absent && x->e->eventlog != NULL) {
		attest_eventlog_free(log);
		return 0;
	}
	return ev_log_set(x, log, src, err);
}

/* The bytes inside an extension's extnValue: dstack wraps them in a DER OCTET STRING. */
static int ev_cert_ext(X509 *leaf, const char *oid, uint8_t **out, size_t *out_len, struct tdxr_err *err)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *inner = NULL;
	const ASN1_OCTET_STRING *data;
	const unsigned char *p;
	int idx, rc = 0;

	*out = NULL;
	*out_len = 0;
	if (obj == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	idx = X509_get_ext_by_OBJ(leaf, obj, -1);
	if (idx < 0)
		goto out;
	if (X509_get_ext_by_OBJ(leaf, obj, idx) >= 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "app certificate: extension %s appears twice", oid);
		goto out;
	}
	data = X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
	p = ASN1_STRING_get0_data(data);
	inner = d2i_ASN1_OCTET_STRING(NULL, &p, ASN1_STRING_length(data));
	if (inner == NULL || p != ASN1_STRING_get0_data(data) + ASN1_STRING_length(data) ||
	    ASN1_STRING_length(inner) <= 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "app certificate: extension %s is not one non-empty DER OCTET STRING", oid);
		goto out;
	}
	*out_len = (size_t)ASN1_STRING_length(inner);
	*out = malloc(*out_len);
	if (*out == NULL) {
		*out_len = 0;
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(*out, ASN1_STRING_get0_data(inner), *out_len);
out:
	ASN1_OCTET_STRING_free(inner);
	ASN1_OBJECT_free(obj);
	return rc;
}

/* The RA-TLS certificate: the quote from extension .1.1 (raw quote), or from the
 * stripped SCALE attestation of extension .1.8 (newer dstack). */
static int ev_from_cert(struct ev_ctx *x, const char *pem, size_t len, struct tdxr_err *err)
{
	X509 *leaf = NULL;
	uint8_t *b = NULL;
	size_t n = 0;
	int rc;

	rc = dstack_leaf(pem, len, &leaf, err);
	if (rc) {
		tdxr_err_prefix(err, "evidence: app_cert");
		return rc;
	}
	rc = ev_cert_ext(leaf, OID_RATLS_QUOTE, &b, &n, err);
	if (rc)
		goto out;
	if (b != NULL) {
		if (n > TDXR_CAP_QUOTE) {
			free(b);
			rc = tdxr_err_set(err, TDXR_ETOOBIG,
			                  "app certificate: quote extension exceeds the quote limit");
			goto out;
		}
		rc = ev_quote_set(x, b, n, "app_cert quote extension", err);
		goto out;
	}
	rc = ev_cert_ext(leaf, OID_RATLS_ATTESTATION, &b, &n, err);
	if (rc || b == NULL)
		goto out;
	rc = ev_scale(x, b, n, "app_cert attestation extension", 1, err);
	free(b);
out:
	X509_free(leaf);
	return rc;
}

/* Phala Cloud: app_certificates[] entries carry {quote (hex|null), app_id (hex|null), ...}. */
static int ev_phala_certs(struct ev_ctx *x, json_t *arr, struct tdxr_err *err)
{
	const char *s;
	size_t i, len;
	int rc;

	if (!json_is_array(arr))
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: \"app_certificates\" is not an array");
	if (json_array_size(arr) > 16)
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: more than 16 app_certificates");
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *c = json_array_get(arr, i);

		if (!json_is_object(c))
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "evidence: app_certificates[%zu] is not an object", i);
		if ((rc = ev_opt_str(c, "quote", "app_certificates[].", &s, &len, err)))
			return rc;
		if (s != NULL && len && (rc = ev_quote_hex(x, s, len, "app_certificates[].quote", err)))
			return rc;
		if ((rc = ev_opt_str(c, "app_id", "app_certificates[].", &s, &len, err)) ||
		    (rc = ev_hex_id(&x->e->app_id, s, len, "app_id", err)))
			return rc;
	}
	return 0;
}

/* tcb_info: a JSON string (guest agent) or object (Phala Cloud); "" = hidden. */
static int ev_tcb_info(struct ev_ctx *x, json_t *v, struct tdxr_err *err)
{
	json_t *obj = NULL, *el;
	json_error_t jerr;
	const char *s;
	size_t len;
	int rc;

	if (json_is_string(v)) {
		if (json_string_length(v) == 0)
			return 0;
		obj = json_loadb(json_string_value(v), json_string_length(v), JSON_REJECT_DUPLICATES, &jerr);
		if (obj == NULL)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "evidence: tcb_info is not valid JSON (line %d: %s)", jerr.line,
			                    jerr.text);
	} else if (json_is_object(v)) {
		obj = json_incref(v);
	} else {
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "evidence: tcb_info is neither a JSON object nor its text");
	}
	if (!json_is_object(obj)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "evidence: tcb_info is not a JSON object");
		goto out;
	}
	el = json_object_get(obj, "event_log");
	if (el != NULL && !json_is_null(el) && (rc = ev_log_json(x, el, "tcb_info.event_log", err)))
		goto out;
	if ((rc = ev_opt_str(obj, "app_compose", "tcb_info.", &s, &len, err)))
		goto out;
	if (s != NULL) {
		x->e->app_compose = strndup(s, len);
		if (x->e->app_compose == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(obj);
	return rc;
}

static int ev_from_json(struct ev_ctx *x, json_t *root, struct tdxr_err *err)
{
	const char *s, *cert = NULL;
	size_t len, cert_len = 0;
	json_t *v;
	int rc, known = 0;

	if (!json_is_object(root))
		return tdxr_err_set(err, TDXR_EINVAL, "evidence: JSON is not an object");
	/* {"attestation": hex SCALE} (dstack verifier form) */
	if ((rc = ev_opt_str(root, "attestation", "", &s, &len, err)))
		return rc;
	if (s != NULL) {
		uint8_t *b = NULL;
		size_t n = 0;

		known = 1;
		b = malloc(len / 2 + 1);
		if (b == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		if (len == 0 || tdxr_hex_decode(s, len, b, len / 2, &n)) {
			free(b);
			return tdxr_err_set(err, TDXR_EINVAL, "evidence: \"attestation\" is not valid hex");
		}
		rc = ev_scale(x, b, n, "attestation", 0, err);
		free(b);
		if (rc)
			return rc;
	}
	/* GetQuote / tappd TdxQuote: {quote, event_log} */
	if ((rc = ev_opt_str(root, "quote", "", &s, &len, err)))
		return rc;
	if (s != NULL) {
		known = 1;
		if ((rc = ev_quote_hex(x, s, len, "quote", err)))
			return rc;
	}
	v = json_object_get(root, "event_log");
	if (v != NULL && !json_is_null(v)) {
		known = 1;
		if ((rc = ev_log_json(x, v, "event_log", err)))
			return rc;
	}
	/* Info / tappd Info / Phala Cloud: tcb_info */
	v = json_object_get(root, "tcb_info");
	if (v != NULL && !json_is_null(v)) {
		known = 1;
		if ((rc = ev_tcb_info(x, v, err)))
			return rc;
	}
	v = json_object_get(root, "app_certificates");
	if (v != NULL && !json_is_null(v)) {
		known = 1;
		if ((rc = ev_phala_certs(x, v, err)))
			return rc;
	}
	if ((rc = ev_opt_str(root, "app_id", "", &s, &len, err)) ||
	    (rc = ev_hex_id(&x->e->app_id, s, len, "app_id", err)) ||
	    (rc = ev_opt_str(root, "instance_id", "", &s, &len, err)) ||
	    (rc = ev_hex_id(&x->e->instance_id, s, len, "instance_id", err)))
		return rc;
	if ((rc = ev_opt_str(root, "app_cert", "", &cert, &cert_len, err)))
		return rc;
	if (cert != NULL && cert_len) {
		known = 1;
		x->e->app_cert = strndup(cert, cert_len);
		if (x->e->app_cert == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		if ((rc = ev_from_cert(x, cert, cert_len, err)))
			return rc;
	}
	if (!known) {
		if (ev_opt_str(root, "error", "", &s, &len, NULL) == 0 && s != NULL && len) {
			char msg[96];
			size_t i;

			for (i = 0; i < len && i < sizeof(msg) - 1; i++)
				msg[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
			msg[i] = '\0';
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "evidence: the response carries no evidence, only an error: %s",
			                    msg);
		}
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "evidence: JSON has none of quote, event_log, tcb_info, app_cert, "
		                    "app_certificates, attestation");
	}
	return 0;
}

int attest_evidence_parse(const uint8_t *json, size_t len, struct attest_evidence **out, struct tdxr_err *err)
{
	struct ev_ctx x;
	json_t *root = NULL;
	json_error_t jerr;
	uint8_t *bin = NULL;
	size_t i = 0, n = 0;
	int rc;

	*out = NULL;
	memset(&x, 0, sizeof(x));
	if (len > TDXR_CAP_EVENTLOG)
		return tdxr_err_set(err, TDXR_ETOOBIG, "evidence: %zu bytes exceeds the %u-byte limit", len,
		                    TDXR_CAP_EVENTLOG);
	x.e = calloc(1, sizeof(*x.e));
	if (x.e == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n'))
		i++;
	if (i == len) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "evidence: empty");
		goto out;
	}
	if (json[i] == '{' || json[i] == '[') {
		root = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
		if (root == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "evidence: invalid JSON at line %d: %s",
			                  jerr.line, jerr.text);
			goto out;
		}
		rc = ev_from_json(&x, root, err);
	} else if ((json[i] >= '0' && json[i] <= '9') || (json[i] >= 'a' && json[i] <= 'f') ||
	           (json[i] >= 'A' && json[i] <= 'F')) {
		/* hex text of a SCALE attestation (a binary one starts with byte 0x00) */
		if (tdxr_hex_decode_text(json, len, &bin, &n)) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "evidence: neither JSON, a SCALE attestation nor its hex text");
			goto out;
		}
		rc = ev_scale(&x, bin, n, "attestation", 0, err);
	} else {
		rc = ev_scale(&x, json, len, "attestation", 0, err);
	}
	if (rc)
		goto out;
	*out = x.e;
	x.e = NULL;
out:
	free(bin);
	json_decref(root);
	attest_evidence_free(x.e);
	return rc;
}
