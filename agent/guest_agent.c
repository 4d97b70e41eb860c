/*
 * guest_agent.c - the local executor's guest agent: a bounded HTTP/1.1 request
 * parser, the dstack guest-agent API handlers (/Info, /GetQuote, the legacy
 * tappd /prpc/Tappd.Info and /prpc/Tappd.TdxQuote) backed by attest/sim, and a
 * one-connection-at-a-time unix socket server.
 *
 * Invariants: every GetQuote signs a fresh quote (new attestation key) whose
 * REPORTDATA is exactly the requested bytes zero-padded to 64 and whose RTMRs
 * are the replay of the event log served with it; the event log's app-id,
 * compose-hash and instance-id are the box's persisted identity. Requests are
 * capped (GUEST_AGENT_MAX_*), each connection has one deadline, and a
 * malformed request gets a 4xx JSON error, never a crash. The test-only faults
 * (GUEST_AGENT_FAULT_*) break the first two on purpose, loudly, so the gate's
 * refusals can be tested end to end.
 *
 * Trust boundary: socket bytes are untrusted. The simulator's keys stay in
 * this process; nothing here is evidence of a real TEE.
 */
#include "agent/guest_agent.h"

#include "attest/attest.h"
#include "attest/sim/sim.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GA_MOD "guest-agent"
#define GA_IDENTITY_FILE "guest-agent.json"
#define GA_ID_LEN 20
#define GA_RATLS_OID "1.3.6.1.4.1.62397.1.1"
/* SHA-256 of nothing: what a dstack guest reports as device_id when it has no device key */
#define GA_DEVICE_ID "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ============================================================ request parser */

void guest_agent_request_dispose(struct guest_agent_request *req)
{
	if (req == NULL)
		return;
	free(req->body);
	memset(req, 0, sizeof(*req));
}

static int is_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* One line [s, e) ending before "\r\n" or "\n"; *next is the byte after it. */
static int line_next(const uint8_t *p, size_t len, size_t off, size_t *end, size_t *next)
{
	const uint8_t *nl = memchr(p + off, '\n', len - off);
	size_t e;

	if (nl == NULL)
		return -1;
	e = (size_t)(nl - p);
	*next = e + 1;
	if (e > off && p[e - 1] == '\r')
		e--;
	*end = e;
	return 0;
}

/* Trims optional whitespace around [*s, *e). */
static void ows_trim(const uint8_t *p, size_t *s, size_t *e)
{
	while (*s < *e && (p[*s] == ' ' || p[*s] == '\t'))
		(*s)++;
	while (*e > *s && (p[*e - 1] == ' ' || p[*e - 1] == '\t'))
		(*e)--;
}

static int span_ieq(const uint8_t *p, size_t s, size_t e, const char *lit)
{
	size_t n = strlen(lit);

	return e - s == n && strncasecmp((const char *)p + s, lit, n) == 0;
}

static int req_line(const uint8_t *p, size_t e, struct guest_agent_request *req, struct tdxr_err *err)
{
	size_t i = 0, m, t0, tl, q;

	while (i < e && p[i] >= 'A' && p[i] <= 'Z')
		i++;
	m = i;
	if (m == 0 || m >= sizeof(req->method) || i >= e || p[i] != ' ')
		return tdxr_err_set(err, TDXR_EINVAL, "request line: bad method");
	memcpy(req->method, p, m);
	req->method[m] = '\0';
	t0 = ++i;
	while (i < e && p[i] > 0x20 && p[i] < 0x7f)
		i++;
	tl = i - t0;
	if (tl == 0 || p[t0] != '/' || i >= e || p[i] != ' ')
		return tdxr_err_set(err, TDXR_EINVAL, "request line: bad request target");
	for (q = 0; q < tl && p[t0 + q] != '?'; q++)
		;
	if (q >= sizeof(req->path))
		return tdxr_err_set(err, TDXR_ETOOBIG, "request line: path over %zu bytes",
		                    sizeof(req->path) - 1);
	memcpy(req->path, p + t0, q);
	req->path[q] = '\0';
	i++;
	if (e - i != 8 || (memcmp(p + i, "HTTP/1.1", 8) != 0 && memcmp(p + i, "HTTP/1.0", 8) != 0))
		return tdxr_err_set(err, TDXR_EINVAL, "request line: not HTTP/1.0 or HTTP/1.1");
	return 0;
}

/* Decodes a chunked body starting at off. *done = 0 when more bytes are needed. */
static int body_chunked(const uint8_t *p, size_t len, size_t off, struct tdxr_buf *b, size_t *end, int *done,
                        struct tdxr_err *err)
{
	size_t le, next, i, n;
	int d, rc;

	*done = 0;
	for (;;) {
		if (line_next(p, len, off, &le, &next)) {
			if (len - off > 64)
				return tdxr_err_set(err, TDXR_EINVAL,
				                    "chunked body: chunk size line too long");
			return 0;
		}
		if (le - off > 64) /* the same answer whether or not the line end has arrived */
			return tdxr_err_set(err, TDXR_EINVAL, "chunked body: chunk size line too long");
		n = 0;
		for (i = off; i < le && (d = tdxr_hex_digit(p[i])) >= 0; i++) {
			if (i - off >= 8)
				return tdxr_err_set(err, TDXR_ETOOBIG, "chunked body: chunk size too large");
			n = n * 16 + (size_t)d;
		}
		if (i == off || (i < le && p[i] != ';' && p[i] != ' ' && p[i] != '\t'))
			return tdxr_err_set(err, TDXR_EINVAL, "chunked body: bad chunk size");
		if (n > GUEST_AGENT_MAX_BODY || b->len + n > GUEST_AGENT_MAX_BODY)
			return tdxr_err_set(err, TDXR_ETOOBIG, "request body over %u bytes",
			                    GUEST_AGENT_MAX_BODY);
		off = next;
		if (n == 0)
			break;
		if (len - off < n + 1)
			return 0;
		if ((rc = tdxr_buf_append(b, p + off, n, err)))
			return rc;
		off += n;
		if (p[off] == '\r') {
			if (len - off < 2)
				return 0;
			off++;
		}
		if (p[off] != '\n')
			return tdxr_err_set(err, TDXR_EINVAL, "chunked body: chunk not followed by CRLF");
		off++;
	}
	/* trailer section: header lines up to an empty line */
	for (i = 0;; i++) {
		if (i > GUEST_AGENT_MAX_HEADERS)
			return tdxr_err_set(err, TDXR_ETOOBIG, "chunked body: too many trailer lines");
		if (line_next(p, len, off, &le, &next)) {
			if (len - off > GUEST_AGENT_MAX_HEAD)
				return tdxr_err_set(err, TDXR_ETOOBIG, "chunked body: trailer too long");
			return 0;
		}
		if (le - off > GUEST_AGENT_MAX_HEAD)
			return tdxr_err_set(err, TDXR_ETOOBIG, "chunked body: trailer too long");
		if (le == off) {
			*end = next;
			*done = 1;
			return 0;
		}
		off = next;
	}
}

int guest_agent_request_parse(const uint8_t *p, size_t len, struct guest_agent_request *req,
                              struct tdxr_err *err)
{
	size_t off, le, next, hs, he, vs, ve, head_end = 0, cl = 0, nh = 0, scan;
	int have_cl = 0, chunked = 0, rc = 0, done = 0;
	struct tdxr_buf b;
	uint64_t v;
	char num[24];

	memset(req, 0, sizeof(*req));
	tdxr_buf_init(&b, GUEST_AGENT_MAX_BODY);
	/* the head ends at the first empty line; it may not contain NUL bytes */
	scan = len < GUEST_AGENT_MAX_HEAD ? len : GUEST_AGENT_MAX_HEAD;
	for (off = 0; off < scan; off++) {
		if (p[off] == '\0') {
			rc = tdxr_err_set(err, TDXR_EINVAL, "request head contains a NUL byte");
			goto out;
		}
		if (p[off] == '\n' && off >= 1 &&
		    (p[off - 1] == '\n' || (p[off - 1] == '\r' && off >= 2 && p[off - 2] == '\n'))) {
			head_end = off + 1;
			break;
		}
	}
	if (head_end == 0) {
		if (len >= GUEST_AGENT_MAX_HEAD)
			rc = tdxr_err_set(err, TDXR_ETOOBIG, "request head over %u bytes",
			                  GUEST_AGENT_MAX_HEAD);
		goto out;
	}
	if (line_next(p, head_end, 0, &le, &next) || (rc = req_line(p, le, req, err)))
		goto out_bad;
	for (off = next; off < head_end;) {
		if (line_next(p, head_end, off, &le, &next))
			break;
		if (le == off)
			break; /* the empty line */
		if (++nh > GUEST_AGENT_MAX_HEADERS) {
			rc = tdxr_err_set(err, TDXR_ETOOBIG, "more than %u header lines",
			                  GUEST_AGENT_MAX_HEADERS);
			goto out;
		}
		hs = off;
		for (he = hs; he < le && is_tchar(p[he]); he++)
			;
		if (he == hs || he >= le || p[he] != ':') {
			rc = tdxr_err_set(err, TDXR_EINVAL, "header %zu: not 'name: value'", nh);
			goto out_bad;
		}
		vs = he + 1;
		ve = le;
		ows_trim(p, &vs, &ve);
		for (off = vs; off < ve; off++) {
			if (p[off] < 0x20 && p[off] != '\t') {
				rc = tdxr_err_set(err, TDXR_EINVAL, "header %zu: control byte in value", nh);
				goto out_bad;
			}
		}
		if (span_ieq(p, hs, he, "content-length")) {
			if (have_cl || ve - vs == 0 || ve - vs >= sizeof(num)) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "Content-Length repeated or malformed");
				goto out_bad;
			}
			memcpy(num, p + vs, ve - vs);
			num[ve - vs] = '\0';
			if (tdxr_parse_u64(num, UINT64_MAX, &v, NULL)) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "Content-Length is not a number");
				goto out_bad;
			}
			if (v > GUEST_AGENT_MAX_BODY) {
				rc = tdxr_err_set(err, TDXR_ETOOBIG, "request body of %llu bytes over %u",
				                  (unsigned long long)v, GUEST_AGENT_MAX_BODY);
				goto out;
			}
			cl = (size_t)v;
			have_cl = 1;
		} else if (span_ieq(p, hs, he, "transfer-encoding")) {
			if (chunked || !span_ieq(p, vs, ve, "chunked")) {
				rc = tdxr_err_set(err, TDXR_EINVAL,
				                  "only Transfer-Encoding: chunked is supported");
				goto out_bad;
			}
			chunked = 1;
		}
		off = next;
	}
	if (have_cl && chunked) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "both Content-Length and Transfer-Encoding");
		goto out_bad;
	}
	if (chunked) {
		if ((rc = body_chunked(p, len, head_end, &b, &req->consumed, &done, err)))
			goto out_bad;
		if (!done)
			goto out_more;
	} else {
		if (len - head_end < cl)
			goto out_more;
		if (cl && (rc = tdxr_buf_append(&b, p + head_end, cl, err)))
			goto out;
		req->consumed = head_end + cl;
	}
	req->body_len = b.len;
	if (b.len) /* an empty body stays NULL */
		req->body = tdxr_buf_steal(&b, NULL);
	req->complete = 1;
	goto out;
out_more:
	req->consumed = 0;
	memset(req->method, 0, sizeof(req->method));
	memset(req->path, 0, sizeof(req->path));
	goto out;
out_bad:
	if (rc == 0)
		rc = tdxr_err_set(err, TDXR_EINVAL, "malformed request");
out:
	tdxr_buf_dispose(&b);
	if (rc)
		guest_agent_request_dispose(req);
	return rc;
}

/* ==================================================================== agent */

struct guest_agent {
	char app_id[2 * GA_ID_LEN + 1];
	char instance_id[2 * GA_ID_LEN + 1];
	char compose_hash[65];
	char *app_compose;
	struct sim_pki *pki;
	char *eventlog_json; /* the dstack JSON array text */
	uint8_t rtmr[4][48];
	char *vm_config;       /* JSON text */
	char *info_json;       /* the Info response, built once */
	unsigned faults;       /* GUEST_AGENT_FAULT_* (tests only) */
	uint8_t *replay_quote; /* FAULT_REPLAY_QUOTE: the one quote every GetQuote gets */
	size_t replay_len;
	uint8_t replay_rd[64];
};

const char *guest_agent_app_id(const struct guest_agent *a)
{
	return a->app_id;
}

const char *guest_agent_instance_id(const struct guest_agent *a)
{
	return a->instance_id;
}

const char *guest_agent_compose_hash(const struct guest_agent *a)
{
	return a->compose_hash;
}

void guest_agent_free(struct guest_agent *a)
{
	if (a == NULL)
		return;
	free(a->app_compose);
	sim_pki_free(a->pki);
	free(a->eventlog_json);
	free(a->vm_config);
	free(a->info_json);
	free(a->replay_quote);
	free(a);
}

static int path_join(char *out, size_t cap, const char *dir, const char *name, struct tdxr_err *err)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "path %s/%s is too long", dir, name);
	return 0;
}

/* Lower-case copy of a 40-digit hex id, or EINVAL. */
static int id_normalize(const char *in, char out[2 * GA_ID_LEN + 1], const char *what, struct tdxr_err *err)
{
	uint8_t b[GA_ID_LEN];

	if (tdxr_hex_decode_exact(in, b, GA_ID_LEN))
		return tdxr_err_set(err, TDXR_EINVAL, "%s must be %d hex digits", what, 2 * GA_ID_LEN);
	tdxr_hex_encode(b, GA_ID_LEN, out);
	return 0;
}

static int id_random(char out[2 * GA_ID_LEN + 1], struct tdxr_err *err)
{
	uint8_t b[GA_ID_LEN];

	if (RAND_bytes(b, (int)sizeof(b)) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "random id: RAND_bytes failed");
	tdxr_hex_encode(b, GA_ID_LEN, out);
	return 0;
}

/* Loads BOX_DIR/guest-agent.json when present (*found = 1). */
static int identity_load(struct guest_agent *a, const char *path, int *found, struct tdxr_err *err)
{
	uint8_t *text = NULL;
	size_t len = 0;
	json_t *root = NULL, *ai, *ii, *ac;
	json_error_t jerr;
	struct stat st;
	int rc = 0;

	*found = 0;
	if (stat(path, &st) != 0 && errno == ENOENT)
		return 0;
	if ((rc = tdxr_file_read(path, TDXR_CAP_CONFIG, &text, &len, err)))
		goto out;
	root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s: not a JSON object (fix or remove it)", path);
		goto out;
	}
	ai = json_object_get(root, "app_id");
	ii = json_object_get(root, "instance_id");
	ac = json_object_get(root, "app_compose");
	if (!json_is_string(ai) || !json_is_string(ii) || !json_is_string(ac)) {
		rc =
		    tdxr_err_set(err, TDXR_EINVAL, "%s: needs string app_id, instance_id, app_compose", path);
		goto out;
	}
	if ((rc = id_normalize(json_string_value(ai), a->app_id, "stored app_id", err)) ||
	    (rc = id_normalize(json_string_value(ii), a->instance_id, "stored instance_id", err)))
		goto out;
	a->app_compose = strndup(json_string_value(ac), json_string_length(ac));
	if (a->app_compose == NULL || strlen(a->app_compose) != json_string_length(ac)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s: app_compose is empty or has a NUL byte", path);
		goto out;
	}
	*found = 1;
out:
	json_decref(root);
	free(text);
	return rc;
}

static int identity_save(const struct guest_agent *a, const char *path, struct tdxr_err *err)
{
	json_t *root = json_pack("{s:s, s:s, s:s}", "app_id", a->app_id, "instance_id", a->instance_id,
	                         "app_compose", a->app_compose);
	char *text = NULL;
	int rc;

	if (root == NULL || (text = json_dumps(root, JSON_INDENT(2))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	rc = tdxr_file_write_atomic(path, text, strlen(text), 0644, err);
out:
	free(text);
	json_decref(root);
	return rc;
}

/* Merges the flags with the stored identity; a contradiction is an error. */
static int identity_setup(struct guest_agent *a, const struct guest_agent_config *c, struct tdxr_err *err)
{
	char path[4096], want[2 * GA_ID_LEN + 1];
	int found = 0, rc;

	if ((rc = path_join(path, sizeof(path), c->box_dir, GA_IDENTITY_FILE, err)) ||
	    (rc = identity_load(a, path, &found, err)))
		return rc;
	if (c->app_id_hex != NULL) {
		if ((rc = id_normalize(c->app_id_hex, want, "--app-id", err)))
			return rc;
		if (found && strcmp(want, a->app_id) != 0)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "box %s already has app id %s (a box never changes identity)",
			                    c->box_dir, a->app_id);
		memcpy(a->app_id, want, sizeof(want));
	} else if (!found && (rc = id_random(a->app_id, err))) {
		return rc;
	}
	if (c->instance_id_hex != NULL) {
		if ((rc = id_normalize(c->instance_id_hex, want, "--instance-id", err)))
			return rc;
		if (found && strcmp(want, a->instance_id) != 0)
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "box %s already has instance id %s (a box never changes identity)", c->box_dir,
			    a->instance_id);
		memcpy(a->instance_id, want, sizeof(want));
	} else if (!found && (rc = id_random(a->instance_id, err))) {
		return rc;
	}
	if (c->app_compose != NULL) {
		if (c->app_compose_len == 0 || memchr(c->app_compose, '\0', c->app_compose_len))
			return tdxr_err_set(err, TDXR_EINVAL, "app-compose is empty or has a NUL byte");
		if (found && (strlen(a->app_compose) != c->app_compose_len ||
		              memcmp(a->app_compose, c->app_compose, c->app_compose_len) != 0))
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "box %s already runs another app-compose (compose hash differs)",
			                    c->box_dir);
		if (!found && (a->app_compose = strndup(c->app_compose, c->app_compose_len)) == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	} else if (!found && (a->app_compose = strdup(sim_default_app_compose())) == NULL) {
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	attest_compose_hash(a->app_compose, strlen(a->app_compose), a->compose_hash);
	if (!found)
		return identity_save(a, path, err);
	return 0;
}

/* A fresh quote over rd with the event log's RTMRs; *q is malloc'd. */
static int quote_make(struct guest_agent *a, const uint8_t rd[64], uint8_t **q, size_t *qlen,
                      struct tdxr_err *err)
{
	struct sim_quote_opts o;

	sim_quote_opts_init(&o);
	memcpy(o.td.rtmr, a->rtmr, sizeof(o.td.rtmr));
	memcpy(o.td.report_data, rd, 64);
	return sim_quote_make(a->pki, &o, q, qlen, err);
}

/*
 * Test-only misbehaviour (GUEST_AGENT_FAULT_*), set up once at start:
 *  - TAMPER_EVENTLOG: the served log names another instance id, with digests that
 *    match its payloads, while quotes keep the genuine RTMRs: only the RTMR3
 *    replay can tell (what a host rewriting the log in transit would produce);
 *  - REPLAY_QUOTE: one genuine quote over random REPORTDATA, served for every
 *    GetQuote: a recorded quote replayed against a new nonce.
 */
static int faults_setup(struct guest_agent *a, struct sim_eventlog_opts *eo, struct tdxr_err *err)
{
	uint8_t rtmr[4][48];
	char *log = NULL;
	int rc;

	if (a->faults & GUEST_AGENT_FAULT_TAMPER_EVENTLOG) {
		eo->instance_id[0] ^= 0xff;
		rc = sim_eventlog_make(eo, &log, rtmr, err);
		eo->instance_id[0] ^= 0xff;
		if (rc)
			return rc;
		free(a->eventlog_json);
		a->eventlog_json = log;
		TDXR_WARN(GA_MOD, "TEST FAULT: serving a tampered event log");
	}
	if (a->faults & GUEST_AGENT_FAULT_REPLAY_QUOTE) {
		if (RAND_bytes(a->replay_rd, (int)sizeof(a->replay_rd)) != 1)
			return tdxr_err_set(err, TDXR_ERROR, "replay quote: RAND_bytes failed");
		if ((rc = quote_make(a, a->replay_rd, &a->replay_quote, &a->replay_len, err)))
			return rc;
		TDXR_WARN(GA_MOD, "TEST FAULT: every GetQuote gets one old quote");
	}
	return 0;
}

/* The RA-TLS app certificate: self-signed P-256 leaf whose extension
 * 1.3.6.1.4.1.62397.1.1 holds a quote over SHA-512("ratls-cert:" || SPKI DER). */
static int app_cert_make(struct guest_agent *a, int64_t now, char **pem, struct tdxr_err *err)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	X509_EXTENSION *ext = NULL;
	ASN1_OBJECT *obj = NULL;
	ASN1_OCTET_STRING *inner = NULL, *outer = NULL;
	BIO *bio = NULL;
	unsigned char *spki = NULL, *der = NULL;
	uint8_t rd[64], *q = NULL, serial[16];
	size_t qlen = 0;
	unsigned int mdlen = 0;
	int spki_len, der_len, rc = 0;
	EVP_MD_CTX *md = NULL;
	BIGNUM *bn = NULL;
	char *data;
	long n;

	*pem = NULL;
	key = EVP_EC_gen("P-256");
	if (key == NULL || (spki_len = i2d_PUBKEY(key, &spki)) <= 0 || (md = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(md, EVP_sha512(), NULL) || !EVP_DigestUpdate(md, "ratls-cert:", 11) ||
	    !EVP_DigestUpdate(md, spki, (size_t)spki_len) || !EVP_DigestFinal_ex(md, rd, &mdlen) ||
	    mdlen != 64) {
		rc = tdxr_err_set(err, TDXR_ERROR, "app certificate: key generation failed");
		goto out;
	}
	if ((rc = quote_make(a, rd, &q, &qlen, err)))
		goto out;
	if (RAND_bytes(serial, (int)sizeof(serial)) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "app certificate: RAND_bytes failed");
		goto out;
	}
	serial[0] &= 0x7f;
	x = X509_new();
	inner = ASN1_OCTET_STRING_new();
	outer = ASN1_OCTET_STRING_new();
	obj = OBJ_txt2obj(GA_RATLS_OID, 1);
	bn = BN_bin2bn(serial, (int)sizeof(serial), NULL);
	if (x == NULL || inner == NULL || outer == NULL || obj == NULL || bn == NULL ||
	    !X509_set_version(x, 2) || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_time_adj_ex(X509_getm_notBefore(x), 0, (long)(now - 3600), NULL) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), 3650, (long)now, NULL) == NULL ||
	    (name = X509_get_subject_name(x)) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	                                (const unsigned char *)"tdx-runner (simulated)", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)a->app_id, -1, -1,
	                                0) ||
	    !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key) ||
	    !ASN1_OCTET_STRING_set(inner, q, (int)qlen) ||
	    (der_len = i2d_ASN1_OCTET_STRING(inner, &der)) <= 0 ||
	    !ASN1_OCTET_STRING_set(outer, der, der_len) ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, outer)) == NULL || !X509_add_ext(x, ext, -1) ||
	    X509_sign(x, key, EVP_sha256()) <= 0 || (bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509(bio, x) || (n = BIO_get_mem_data(bio, &data)) <= 0) {
		rc = tdxr_err_set(err, TDXR_ERROR, "app certificate: building the RA-TLS certificate failed");
		goto out;
	}
	if ((*pem = strndup(data, (size_t)n)) == NULL)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	BIO_free(bio);
	BN_free(bn);
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(inner);
	ASN1_OCTET_STRING_free(outer);
	OPENSSL_free(der);
	OPENSSL_free(spki);
	X509_free(x);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	free(q);
	return rc;
}

static int vm_config_make(struct guest_agent *a, const char *os_hash, struct tdxr_err *err)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES),
	     psize = sysconf(_SC_PAGE_SIZE);
	json_t *o;

	if (cpus < 1)
		cpus = 1;
	if (pages < 0 || psize < 0)
		pages = psize = 0;
	o = json_pack("{s:s, s:I, s:I, s:s, s:i}", "os_image_hash", os_hash, "cpu_count", (json_int_t)cpus,
	              "memory_size", (json_int_t)pages * (json_int_t)psize, "image",
	              "tdx-runner-local (simulated)", "spec_version", 1);
	a->vm_config = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return a->vm_config ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

static int info_make(struct guest_agent *a, const char *os_hash, const char *key_provider, int64_t now,
                     struct tdxr_err *err)
{
	struct sim_quote_opts qo;
	json_t *tcb = NULL, *info = NULL, *log = NULL, *ac = NULL, *nm;
	json_error_t jerr;
	char h[4][97], mrtd[97], *tcb_text = NULL, *cert = NULL;
	const char *app_name = "";
	int rc, i;

	if ((rc = app_cert_make(a, now, &cert, err)))
		goto out;
	sim_quote_opts_init(&qo);
	tdxr_hex_encode(qo.td.mrtd, 48, mrtd);
	for (i = 0; i < 4; i++)
		tdxr_hex_encode(a->rtmr[i], 48, h[i]);
	log = json_loads(a->eventlog_json, JSON_REJECT_DUPLICATES, &jerr);
	ac = json_loads(a->app_compose, JSON_REJECT_DUPLICATES, &jerr);
	nm = json_object_get(ac, "name"); /* NULL-safe: ac may not be JSON */
	if (json_is_string(nm))
		app_name = json_string_value(nm);
	tcb = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s}", "mrtd", mrtd, "rtmr0", h[0],
	                "rtmr1", h[1], "rtmr2", h[2], "rtmr3", h[3], "os_image_hash", os_hash, "compose_hash",
	                a->compose_hash, "device_id", GA_DEVICE_ID, "event_log", log, "app_compose",
	                a->app_compose);
	if (log == NULL || tcb == NULL || (tcb_text = json_dumps(tcb, JSON_INDENT(2))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "Info: building tcb_info failed");
		goto out;
	}
	info = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "app_id", a->app_id,
	                 "instance_id", a->instance_id, "app_cert", cert, "tcb_info", tcb_text, "app_name",
	                 app_name, "device_id", GA_DEVICE_ID, "os_image_hash", os_hash, "key_provider_info",
	                 key_provider, "compose_hash", a->compose_hash, "vm_config", a->vm_config,
	                 "cloud_vendor", "tdx-runner", "cloud_product", "local executor (simulated TDX)");
	if (info == NULL || (a->info_json = json_dumps(info, JSON_COMPACT)) == NULL)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "Info: building the response failed");
out:
	json_decref(info);
	json_decref(tcb);
	json_decref(log);
	json_decref(ac);
	free(tcb_text);
	free(cert);
	return rc;
}

static int file_put(const char *dir, const char *name, const void *p, size_t n, struct tdxr_err *err)
{
	char path[4096];
	int rc;

	if ((rc = path_join(path, sizeof(path), dir, name, err)))
		return rc;
	return tdxr_file_write_atomic(path, p, n, 0644, err);
}

int guest_agent_new(const struct guest_agent_config *c, struct guest_agent **out, struct tdxr_err *err)
{
	static const char key_provider[] = "{\"name\":\"none\",\"id\":\"\"}";
	struct guest_agent *a = NULL;
	struct sim_pki_opts po;
	struct sim_collateral_opts co;
	struct sim_collateral *col = NULL;
	struct sim_eventlog_opts eo;
	const uint8_t *root;
	size_t root_len;
	char os_hash[65];
	int64_t now = c->now > 0 ? c->now : (int64_t)time(NULL);
	struct stat st;
	int rc;

	*out = NULL;
	if (c->box_dir == NULL || c->box_dir[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "guest agent: a box directory is required");
	if (stat(c->box_dir, &st) != 0) {
		if (errno != ENOENT || mkdir(c->box_dir, 0750) != 0)
			return tdxr_err_set(err, TDXR_EIO, "guest agent: cannot create box directory %s: %s",
			                    c->box_dir, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		return tdxr_err_set(err, TDXR_EINVAL, "guest agent: %s is not a directory", c->box_dir);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = identity_setup(a, c, err)))
		goto out;
	sim_eventlog_opts_init(&eo);
	if ((rc = tdxr_hex_decode_exact(a->app_id, eo.app_id, GA_ID_LEN)) ||
	    (rc = tdxr_hex_decode_exact(a->instance_id, eo.instance_id, GA_ID_LEN))) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "guest agent: bad identity");
		goto out;
	}
	eo.app_compose = a->app_compose;
	eo.app_compose_len = strlen(a->app_compose);
	eo.key_provider = key_provider;
	tdxr_hex_encode(eo.os_image_hash, 32, os_hash);
	sim_pki_opts_init(&po, now);
	po.deterministic = c->sim_deterministic;
	po.seed = c->sim_seed;
	sim_collateral_opts_init(&co, now);
	a->faults = c->test_faults;
	if ((rc = sim_eventlog_make(&eo, &a->eventlog_json, a->rtmr, err)) ||
	    (rc = sim_pki_new(&po, &a->pki, err)) || (rc = sim_collateral_make(a->pki, &co, &col, err)) ||
	    (rc = faults_setup(a, &eo, err)))
		goto out;
	root = sim_pki_cert_der(a->pki, SIM_CERT_ROOT, &root_len);
	if ((rc = file_put(c->box_dir, "root.der", root, root_len, err)) ||
	    (rc = file_put(c->box_dir, "collateral.json", col->json, strlen(col->json), err)) ||
	    (rc = vm_config_make(a, os_hash, err)) || (rc = info_make(a, os_hash, key_provider, now, err)))
		goto out;
	*out = a;
	a = NULL;
out:
	sim_collateral_free(col);
	guest_agent_free(a);
	return rc;
}

/* ================================================================= handlers */

static int reply_error(int code, const char *msg, int *status, char **body, struct tdxr_err *err)
{
	json_t *o = json_pack("{s:s}", "error", msg);

	*body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (*body == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	*status = code;
	return 0;
}

/* report_data: hex (optional 0x), at most 64 bytes, zero-padded. 0 or a message. */
static const char *report_data_get(json_t *params, uint8_t rd[64])
{
	json_t *v = json_object_get(params, "report_data");
	const char *s;
	size_t n;

	memset(rd, 0, 64);
	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
		return "report_data must be a hex string";
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		n -= 2;
	}
	if (n > 128)
		return "report_data is longer than 64 bytes";
	if (tdxr_hex_decode(s, n, rd, 64, NULL) != 0) {
		memset(rd, 0, 64);
		return "report_data is not valid hex";
	}
	return NULL;
}

static int handle_quote(struct guest_agent *a, json_t *params, int tappd, int *status, char **body,
                        struct tdxr_err *err)
{
	uint8_t rd[64], *q = NULL;
	size_t qlen = 0;
	char *qhex = NULL, rdhex[129];
	const char *msg;
	json_t *o = NULL, *ha;
	int rc = 0;

	if ((msg = report_data_get(params, rd)) != NULL)
		return reply_error(400, msg, status, body, err);
	if (tappd) {
		ha = json_object_get(params, "hash_algorithm");
		if (ha != NULL && !json_is_null(ha) &&
		    (!json_is_string(ha) ||
		     (json_string_length(ha) && strcmp(json_string_value(ha), "raw") != 0)))
			return reply_error(
			    400, "hash_algorithm: only \"raw\" is supported by the local guest agent", status,
			    body, err);
	}
	if (a->replay_quote != NULL) {
		/* FAULT_REPLAY_QUOTE: the old quote, and the REPORTDATA it really carries */
		if ((q = malloc(a->replay_len)) == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		memcpy(q, a->replay_quote, a->replay_len);
		qlen = a->replay_len;
		memcpy(rd, a->replay_rd, 64);
	} else if ((rc = quote_make(a, rd, &q, &qlen, err))) {
		goto out;
	}
	if ((qhex = tdxr_hex_strdup(q, qlen)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	tdxr_hex_encode(rd, 64, rdhex);
	if (tappd)
		o = json_pack("{s:s, s:s, s:s, s:s}", "quote", qhex, "event_log", a->eventlog_json,
		              "hash_algorithm", "raw", "prefix", "");
	else
		o = json_pack("{s:s, s:s, s:s, s:s}", "quote", qhex, "event_log", a->eventlog_json,
		              "report_data", rdhex, "vm_config", a->vm_config);
	if (o == NULL || (*body = json_dumps(o, JSON_COMPACT)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	*status = 200;
out:
	json_decref(o);
	free(qhex);
	free(q);
	return rc;
}

int guest_agent_handle(struct guest_agent *a, const struct guest_agent_request *req, int *status, char **body,
                       struct tdxr_err *err)
{
	static const char *const info_paths[] = { "/Info", "/prpc/Info", "/prpc/Tappd.Info", NULL };
	static const char *const quote_paths[] = { "/GetQuote", "/prpc/GetQuote", NULL };
	static const char *const tappd_quote_paths[] = { "/prpc/Tappd.TdxQuote", NULL };
	json_t *params = NULL;
	json_error_t jerr;
	int rc = 0, kind = 0;
	size_t i;

	*status = 0;
	*body = NULL;
	for (i = 0; info_paths[i]; i++)
		if (strcmp(req->path, info_paths[i]) == 0)
			kind = 1;
	for (i = 0; quote_paths[i]; i++)
		if (strcmp(req->path, quote_paths[i]) == 0)
			kind = 2;
	for (i = 0; tappd_quote_paths[i]; i++)
		if (strcmp(req->path, tappd_quote_paths[i]) == 0)
			kind = 3;
	if (kind == 0)
		return reply_error(404, "no such method (this guest agent serves Info and GetQuote)", status,
		                   body, err);
	if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "GET") != 0)
		return reply_error(405, "use POST with a JSON body", status, body, err);
	if (req->body_len == 0) {
		params = json_object();
	} else {
		params = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (params == NULL || !json_is_object(params)) {
			rc = reply_error(400, "the request body must be a JSON object", status, body, err);
			goto out;
		}
	}
	if (params == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (kind == 1) {
		if ((*body = strdup(a->info_json)) == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		*status = 200;
	} else {
		rc = handle_quote(a, params, kind == 3, status, body, err);
	}
out:
	json_decref(params);
	return rc;
}

/* =================================================================== server */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to become ready for events until deadline; 0 ready, ETIMEOUT, EIO. */
static int fd_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left;
	int n;

	for (;;) {
		left = deadline - mono_ms();
		if (left <= 0)
			return TDXR_ETIMEOUT;
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return 0;
		if (n == 0)
			return TDXR_ETIMEOUT;
		if (errno != EINTR)
			return TDXR_EIO;
	}
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	default: return "Internal Server Error";
	}
}

static void conn_send(int fd, int status, const char *body, int64_t deadline)
{
	char head[256];
	size_t blen = strlen(body), hlen, off = 0, total;
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, status_text(status), blen);
	ssize_t w;

	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	hlen = (size_t)n;
	total = hlen + blen;
	while (off < total) {
		if (fd_wait(fd, POLLOUT, deadline))
			return;
		if (off < hlen)
			w = send(fd, head + off, hlen - off, MSG_NOSIGNAL);
		else
			w = send(fd, body + (off - hlen), total - off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return;
		}
		off += (size_t)w;
	}
}

static void conn_serve(struct guest_agent *a, int fd)
{
	static const char internal[] = "{\"error\":\"internal error\"}";
	const size_t cap = GUEST_AGENT_MAX_HEAD + GUEST_AGENT_MAX_BODY + 4096;
	int64_t deadline = mono_ms() + GUEST_AGENT_IO_TIMEOUT_MS;
	struct guest_agent_request req;
	struct tdxr_err e;
	uint8_t *in = NULL;
	size_t len = 0;
	ssize_t r;
	char *body = NULL;
	unsigned reads = 0;
	int status = 0, rc;

	memset(&req, 0, sizeof(req));
	tdxr_err_clear(&e);
	if ((in = malloc(cap + 1)) == NULL)
		return;
	for (;;) {
		if (++reads > GUEST_AGENT_MAX_READS) {
			/* each read re-parses what arrived: a byte-at-a-time client would cost O(n^2) */
			status = 400;
			tdxr_err_set(&e, TDXR_EINVAL, "request arrived in more than %u pieces",
			             GUEST_AGENT_MAX_READS);
			break;
		}
		if (len == cap) {
			status = 413;
			tdxr_err_set(&e, TDXR_ETOOBIG, "request over %zu bytes", cap);
			break;
		}
		if (fd_wait(fd, POLLIN, deadline)) {
			status = 408;
			tdxr_err_set(&e, TDXR_ETIMEOUT, "request not complete within %d ms",
			             GUEST_AGENT_IO_TIMEOUT_MS);
			break;
		}
		r = recv(fd, in + len, cap - len, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r <= 0) {
			status = r == 0 && len ? 400 : -1;
			tdxr_err_set(&e, TDXR_EINVAL, "connection closed before a whole request");
			break;
		}
		len += (size_t)r;
		rc = guest_agent_request_parse(in, len, &req, &e);
		if (rc) {
			status = rc == TDXR_ETOOBIG ? 413 : 400;
			break;
		}
		if (req.complete)
			break;
	}
	/* the answer gets its own budget: a request that timed out still hears 408 */
	deadline = mono_ms() + GUEST_AGENT_IO_TIMEOUT_MS;
	if (req.complete) {
		if (guest_agent_handle(a, &req, &status, &body, &e) != 0) {
			TDXR_ERR(GA_MOD, "%s %s: %s", req.method, req.path, e.msg);
			conn_send(fd, 500, internal, deadline);
		} else {
			TDXR_DEBUG(GA_MOD, "%s %s -> %d", req.method, req.path, status);
			conn_send(fd, status, body, deadline);
		}
	} else if (status > 0) {
		TDXR_WARN(GA_MOD, "rejected request: %s", e.msg);
		if (reply_error(status, e.msg, &status, &body, NULL) == 0)
			conn_send(fd, status, body, deadline);
	}
	free(body);
	guest_agent_request_dispose(&req);
	free(in);
}

static int sock_addr(const char *path, struct sockaddr_un *sa, struct tdxr_err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return tdxr_err_set(err, TDXR_EINVAL, "socket path %s is longer than %zu bytes", path,
		                    sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* 0 when path is free or a stale socket (*stale = 1); EINVAL when in use. */
static int sock_probe(const char *path, int *stale, struct tdxr_err *err)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, live, rc;

	*stale = 0;
	if ((rc = sock_addr(path, &sa, err)))
		return rc;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return tdxr_err_set(err, TDXR_EINVAL, "%s exists and is not a socket; not replacing it",
		                    path);
	/* a socket somebody still answers on is not stale */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "socket: %s", strerror(errno));
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	if (live)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: another process is serving there; stop it first",
		                    path);
	*stale = 1;
	return 0;
}

int guest_agent_socket_check(const char *path, struct tdxr_err *err)
{
	int stale;

	return sock_probe(path, &stale, err);
}

static int sock_listen(const char *path, int *out, struct tdxr_err *err)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd = -1, rc = 0, stale = 0;

	*out = -1;
	if ((rc = sock_addr(path, &sa, err)) || (rc = sock_probe(path, &stale, err)))
		return rc;
	if (stale && unlink(path) != 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot remove stale socket %s: %s", path,
		                    strerror(errno));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "socket: %s", strerror(errno));
	old = umask(0117); /* the socket is born 0660: no window with wider access */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "bind %s: %s", path, strerror(errno));
		umask(old);
		goto out;
	}
	umask(old);
	if (chmod(path, 0660) != 0 || listen(fd, 16) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "listen on %s: %s", path, strerror(errno));
		unlink(path);
		goto out;
	}
	*out = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int guest_agent_serve(struct guest_agent *a, const char *path, volatile sig_atomic_t *stop,
                      struct tdxr_err *err)
{
	struct pollfd pfd;
	sigset_t waitmask;
	int lfd = -1, cfd, n, rc;

	if ((rc = sock_listen(path, &lfd, err)))
		return rc;
	/* SIGTERM / SIGINT are delivered only inside ppoll, so a stop is never missed */
	pthread_sigmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	TDXR_INFO(GA_MOD, "serving the dstack guest-agent API on %s (app id %s, SIMULATED TDX)", path,
	          a->app_id);
	while (!*stop) {
		pfd.fd = lfd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		n = ppoll(&pfd, 1, NULL, &waitmask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = tdxr_err_set(err, TDXR_EIO, "poll: %s", strerror(errno));
			break;
		}
		if (n == 0 || !(pfd.revents & POLLIN))
			continue;
		cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0) {
			/* ECONNABORTED, EMFILE, ...: pause so a full fd table cannot spin us */
			struct timespec ts = { 0, 20 * 1000 * 1000 };

			nanosleep(&ts, NULL);
			continue;
		}
		conn_serve(a, cfd);
		close(cfd);
	}
	close(lfd);
	unlink(path);
	TDXR_INFO(GA_MOD, "stopped; removed %s", path);
	return rc;
}
