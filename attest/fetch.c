/*
 * fetch.c - collateral fetcher for Intel PCS v4 / a PCCS, with an on-disk cache.
 *
 * Requests (dcap-qvl collateral.js order): pckcrl?ca=&encoding=der (DER body,
 * SGX-PCK-CRL-Issuer-Chain), {tee}/tcb?fmspc= ({"tcbInfo":{..},"signature":".."},
 * TCB-Info-Issuer-Chain or the older SGX-TCB-Info-Issuer-Chain), {tee}/qe/identity
 * ({"enclaveIdentity":{..},"signature":".."}, SGX-Enclave-Identity-Issuer-Chain),
 * and the root CA CRL (a PCCS's rootcacrl, else the root certificate's CRL
 * distribution point). Issuer-chain headers are percent-encoded PEM.
 *
 * Invariants: the signed text is the exact byte span of the inner object in the
 * body (bounded scanner, cross-checked against Jansson's parse of the whole body);
 * every request (through common/http) has connect/total timeouts, a body cap, no
 * redirects, HTTPS except to loopback; the API key goes only to base_url and is
 * wiped from our copies.
 * Trust boundary: responses and cache files are untrusted; only their shape is
 * checked here, attest_verify checks signatures and dates.
 */
#include "attest/fetch.h"

#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define FETCH_LOG "fetch"
#define FETCH_URL_MAX 2048u
#define FETCH_JSON_DEPTH 64u
#define PEM_CERT_BEGIN "-----BEGIN CERTIFICATE-----"

/* dcap-qvl QuoteCollateralV3 field order, which is also our output order */
static const char *const collateral_keys[] = {
	"pck_crl_issuer_chain",     "root_ca_crl", "pck_crl",
	"tcb_info_issuer_chain",    "tcb_info",    "tcb_info_signature",
	"qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
};

void attest_fetch_opts_init(struct attest_fetch_opts *o)
{
	memset(o, 0, sizeof(*o));
}

/* ==================================================================== checks */

/* Validates 12 hex digits and writes them upper-case into out[13]. */
static int fmspc_normalise(const char *fmspc, char out[13], struct tdxr_err *err)
{
	size_t i;

	if (fmspc == NULL || strlen(fmspc) != 12)
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: FMSPC must be 12 hex digits");
	for (i = 0; i < 12; i++) {
		char c = fmspc[i];

		if (c >= 'a' && c <= 'f')
			c = (char)(c - 'a' + 'A');
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return tdxr_err_set(err, TDXR_EINVAL, "fetch: FMSPC must be 12 hex digits");
		out[i] = c;
	}
	out[12] = '\0';
	return 0;
}

static int ca_check(const char *ca, struct tdxr_err *err)
{
	if (ca == NULL || (strcmp(ca, "platform") != 0 && strcmp(ca, "processor") != 0))
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: PCK CA must be \"platform\" or \"processor\"");
	return 0;
}

/* ====================================================================== URLs */

int attest_fetch_url_build(const char *base, const char *tee, const char *rest, char **out,
                           struct tdxr_err *err)
{
	static const char *const sfx[] = { "/sgx/certification/v4", "/tdx/certification/v4" };
	struct tdxr_buf b;
	size_t n, i;
	int rc;

	*out = NULL;
	if (base == NULL)
		base = ATTEST_PCS_URL_INTEL;
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		size_t sl = strlen(sfx[i]);

		if (n >= sl && memcmp(base + n - sl, sfx[i], sl) == 0) {
			n -= sl;
			break;
		}
	}
	while (n > 0 && base[n - 1] == '/')
		n--;
	if (n == 0 || n > FETCH_URL_MAX)
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: collateral base URL is empty or too long");
	tdxr_buf_init(&b, FETCH_URL_MAX + 256);
	rc = tdxr_buf_appendf(&b, err, "%.*s/%s/certification/v4/%s", (int)n, base, tee, rest);
	if (rc) {
		tdxr_buf_dispose(&b);
		return rc;
	}
	*out = (char *)tdxr_buf_steal(&b, &n);
	return 0;
}

/* host[:port] followed by end, '/' or '?'. */
static int host_is(const char *p, const char *host)
{
	size_t hl = strlen(host);

	if (strncasecmp(p, host, hl) != 0)
		return 0;
	p += hl;
	if (*p == ':') {
		p++;
		if (*p < '0' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0' || *p == '/' || *p == '?';
}

int attest_fetch_url_check(const char *url, struct tdxr_err *err)
{
	const char *auth;
	size_t i, alen;

	if (url == NULL || strlen(url) > FETCH_URL_MAX)
		return tdxr_err_set(err, TDXR_EINVAL, "URL missing or too long");
	for (i = 0; url[i]; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f || url[i] == '\\')
			return tdxr_err_set(err, TDXR_EINVAL, "URL contains a space or control character");
	if (strncasecmp(url, "https://", 8) == 0)
		auth = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		auth = url + 7;
	else
		return tdxr_err_set(err, TDXR_EINVAL, "URL must start with https:// (%.80s)", url);
	alen = strcspn(auth, "/?#");
	if (alen == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "URL has no host (%.80s)", url);
	/* userinfo would let "http://127.0.0.1:1@host/" pass the loopback test below */
	if (memchr(auth, '@', alen) != NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "URL must not carry credentials (user@host)");
	if (auth == url + 7 && !host_is(auth, "127.0.0.1") && !host_is(auth, "localhost") &&
	    !host_is(auth, "[::1]"))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "plain http:// is only allowed to loopback; use https:// (%.80s)", url);
	return 0;
}

/* The path and query of a URL, for messages (borrowed). */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");
	const char *s;

	if (p == NULL)
		return url;
	s = strchr(p + 3, '/');
	return s ? s : "/";
}

/* =================================================================== headers */

int attest_fetch_header_get(const char *hdrs, size_t len, const char *name, char **out, struct tdxr_err *err)
{
	size_t nl = strlen(name), i = 0;

	*out = NULL;
	while (i < len) {
		const char *line = hdrs + i;
		const char *eol = memchr(line, '\n', len - i);
		size_t ll = eol ? (size_t)(eol - line) : len - i;
		const char *colon = memchr(line, ':', ll);

		i += ll + (eol ? 1 : 0);
		if (colon == NULL || (size_t)(colon - line) != nl || strncasecmp(line, name, nl) != 0)
			continue;
		{
			const char *v = colon + 1, *e = line + ll;
			char *s;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
				e--;
			if (memchr(v, '\0', (size_t)(e - v)) != NULL)
				return tdxr_err_set(err, TDXR_EINVAL, "header %s contains a NUL byte", name);
			s = malloc((size_t)(e - v) + 1);
			if (s == NULL)
				return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			memcpy(s, v, (size_t)(e - v));
			s[e - v] = '\0';
			*out = s;
			return 0;
		}
	}
	return tdxr_err_set(err, TDXR_ENOTFOUND, "no %s header", name);
}

int attest_fetch_pct_decode(const char *s, size_t len, char **out, size_t *out_len, struct tdxr_err *err)
{
	char *o;
	size_t i, n = 0;

	*out = NULL;
	*out_len = 0;
	if (len == SIZE_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG, "header too long");
	o = malloc(len + 1);
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '%') {
			int hi = i + 2 < len ? tdxr_hex_digit(s[i + 1]) : -1;
			int lo = hi >= 0 ? tdxr_hex_digit(s[i + 2]) : -1;

			if (lo < 0) {
				free(o);
				return tdxr_err_set(err, TDXR_EINVAL, "bad %%-escape in header at byte %zu",
				                    i);
			}
			c = (char)((hi << 4) | lo);
			i += 2;
		}
		if (c == '\0') {
			free(o);
			return tdxr_err_set(err, TDXR_EINVAL, "NUL byte in header");
		}
		o[n++] = c;
	}
	o[n] = '\0';
	*out = o;
	*out_len = n;
	return 0;
}

/* ========================================================== JSON span scanner */

struct jscan {
	const uint8_t *p;
	size_t len;
	size_t i;
};

static int js_is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void js_ws(struct jscan *s)
{
	while (s->i < s->len && js_is_ws(s->p[s->i]))
		s->i++;
}

/* Scalars (numbers, true, false, null) are runs of these; Jansson checks grammar. */
static int js_is_scalar(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
	       c == '-' || c == '.';
}

/* At '"': moves past the closing quote. A backslash escapes exactly one byte, which
 * is enough to find the end (\uXXXX digits contain no quote or backslash). */
static int js_string(struct jscan *s)
{
	s->i++;
	while (s->i < s->len) {
		uint8_t c = s->p[s->i++];

		if (c == '"')
			return 0;
		if (c == '\\') {
			if (s->i >= s->len)
				return TDXR_EINVAL;
			s->i++;
		} else if (c < 0x20) {
			return TDXR_EINVAL;
		}
	}
	return TDXR_EINVAL;
}

/* Skips one value; brackets must match, depth is bounded. */
static int js_value(struct jscan *s)
{
	char stack[FETCH_JSON_DEPTH];
	size_t depth = 0;

	do {
		uint8_t c;

		if (s->i >= s->len)
			return TDXR_EINVAL;
		c = s->p[s->i];
		if (c == '"') {
			if (js_string(s))
				return TDXR_EINVAL;
		} else if (c == '{' || c == '[') {
			if (depth == FETCH_JSON_DEPTH)
				return TDXR_ETOOBIG;
			stack[depth++] = c == '{' ? '}' : ']';
			s->i++;
		} else if (c == '}' || c == ']') {
			if (depth == 0 || (uint8_t)stack[depth - 1] != c)
				return TDXR_EINVAL;
			depth--;
			s->i++;
		} else if (depth > 0 && (c == ',' || c == ':' || js_is_ws(c))) {
			s->i++;
		} else if (js_is_scalar(c)) {
			while (s->i < s->len && js_is_scalar(s->p[s->i]))
				s->i++;
		} else {
			return TDXR_EINVAL;
		}
	} while (depth > 0);
	return 0;
}

int attest_fetch_json_span(const uint8_t *body, size_t len, const char *key, size_t *off, size_t *span_len,
                           struct tdxr_err *err)
{
	struct jscan s = { body, len, 0 };
	size_t kl = strlen(key), found_off = 0, found_len = 0;
	int found = 0, rc;

	*off = 0;
	*span_len = 0;
	js_ws(&s);
	if (s.i >= s.len || s.p[s.i] != '{')
		return tdxr_err_set(err, TDXR_EINVAL, "response is not a JSON object");
	s.i++;
	js_ws(&s);
	if (s.i < s.len && s.p[s.i] == '}') {
		s.i++;
		goto end;
	}
	for (;;) {
		size_t ks, ke, vs;

		js_ws(&s);
		if (s.i >= s.len || s.p[s.i] != '"')
			goto bad;
		ks = s.i + 1;
		if (js_string(&s))
			goto bad;
		ke = s.i - 1;
		js_ws(&s);
		if (s.i >= s.len || s.p[s.i] != ':')
			goto bad;
		s.i++;
		js_ws(&s);
		vs = s.i;
		rc = js_value(&s);
		if (rc == TDXR_ETOOBIG)
			return tdxr_err_set(err, TDXR_ETOOBIG, "JSON nested deeper than %u",
			                    FETCH_JSON_DEPTH);
		if (rc)
			goto bad;
		if (ke - ks == kl && memcmp(body + ks, key, kl) == 0) {
			if (found)
				return tdxr_err_set(err, TDXR_EINVAL, "duplicate \"%s\" in response", key);
			if (body[vs] != '{')
				return tdxr_err_set(err, TDXR_EINVAL, "\"%s\" is not a JSON object", key);
			found = 1;
			found_off = vs;
			found_len = s.i - vs;
		}
		js_ws(&s);
		if (s.i < s.len && s.p[s.i] == ',') {
			s.i++;
			continue;
		}
		if (s.i < s.len && s.p[s.i] == '}') {
			s.i++;
			break;
		}
		goto bad;
	}
end:
	js_ws(&s);
	if (s.i != s.len)
		return tdxr_err_set(err, TDXR_EINVAL, "trailing bytes after the JSON object");
	if (!found)
		return tdxr_err_set(err, TDXR_ENOTFOUND, "response has no \"%s\" object", key);
	*off = found_off;
	*span_len = found_len;
	return 0;
bad:
	return tdxr_err_set(err, TDXR_EINVAL, "malformed JSON near byte %zu", s.i);
}

int attest_fetch_signed_split(const uint8_t *body, size_t len, const char *key, char **text, size_t *text_len,
                              uint8_t sig[64], struct tdxr_err *err)
{
	json_t *root = NULL, *inner, *js, *span_obj = NULL;
	json_error_t jerr;
	size_t off, n;
	char *t = NULL;
	int rc;

	*text = NULL;
	*text_len = 0;
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "response is not JSON (%.80s)", jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "response is not a JSON object");
		goto out;
	}
	inner = json_object_get(root, key);
	js = json_object_get(root, "signature");
	if (!json_is_object(inner)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "response has no \"%s\" object", key);
		goto out;
	}
	if (!json_is_string(js) || json_string_length(js) != 128 ||
	    tdxr_hex_decode_exact(json_string_value(js), sig, 64) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "response \"signature\" is not 64 bytes of hex");
		goto out;
	}
	rc = attest_fetch_json_span(body, len, key, &off, &n, err);
	if (rc)
		goto out;
	/* The span must be exactly what Jansson saw, or the scanner and the parser disagree. */
	span_obj = json_loadb((const char *)body + off, n, JSON_REJECT_DUPLICATES, &jerr);
	if (span_obj == NULL || !json_equal(span_obj, inner)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "\"%s\" span does not match the parsed object", key);
		goto out;
	}
	t = malloc(n + 1);
	if (t == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(t, body + off, n);
	t[n] = '\0';
	*text = t;
	*text_len = n;
	rc = 0;
out:
	json_decref(span_obj);
	json_decref(root);
	return rc;
}

/* ====================================================================== CRLs */

static int crl_der_next_update(const uint8_t *der, size_t len, int64_t *next, struct tdxr_err *err)
{
	const unsigned char *q = der;
	const ASN1_TIME *nu;
	X509_CRL *crl = NULL;
	struct tm tm;
	int rc = 0;

	*next = 0;
	if (len == 0 || len > LONG_MAX) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "CRL is empty or too large");
		goto out;
	}
	crl = d2i_X509_CRL(NULL, &q, (long)len);
	if (crl == NULL || q != der + len) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "CRL is not DER (or has trailing bytes)");
		goto out;
	}
	nu = X509_CRL_get0_nextUpdate(crl);
	memset(&tm, 0, sizeof(tm));
	if (nu == NULL || ASN1_TIME_to_tm(nu, &tm) != 1) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "CRL has no nextUpdate");
		goto out;
	}
	*next = (int64_t)timegm(&tm);
out:
	X509_CRL_free(crl);
	ERR_clear_error();
	return rc;
}

int attest_fetch_crl_decode(const uint8_t *body, size_t len, uint8_t **der, size_t *der_len,
                            int64_t *next_update, struct tdxr_err *err)
{
	static const char pem_tag[] = "-----BEGIN X509 CRL-----";
	uint8_t *d = NULL;
	size_t dl = 0, i = 0;
	int64_t nu = 0;
	int rc;

	*der = NULL;
	*der_len = 0;
	*next_update = 0;
	while (i < len && js_is_ws(body[i]))
		i++;
	if (len > 0 && body[0] == 0x30) { /* DER SEQUENCE */
		d = malloc(len);
		if (d == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		memcpy(d, body, len);
		dl = len;
	} else if (len - i >= sizeof(pem_tag) - 1 && memcmp(body + i, pem_tag, sizeof(pem_tag) - 1) == 0) {
		BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(body, (int)len) : NULL;
		X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
		unsigned char *p = NULL;
		int n = crl ? i2d_X509_CRL(crl, &p) : -1;

		if (n > 0) {
			d = malloc((size_t)n);
			if (d != NULL) {
				memcpy(d, p, (size_t)n);
				dl = (size_t)n;
			}
		}
		OPENSSL_free(p);
		X509_CRL_free(crl);
		BIO_free(bio);
		ERR_clear_error();
		if (d == NULL)
			return tdxr_err_set(err, n > 0 ? TDXR_ENOMEM : TDXR_EINVAL, "bad PEM CRL");
	} else if (tdxr_hex_decode_text(body, len, &d, &dl) != 0) {
		return tdxr_err_set(err, TDXR_EINVAL, "CRL is neither DER, hex nor PEM");
	}
	rc = crl_der_next_update(d, dl, &nu, err);
	if (rc) {
		free(d);
		return rc;
	}
	*der = d;
	*der_len = dl;
	*next_update = nu;
	return 0;
}

/* ===================================================================== cache */

int attest_fetch_cache_path(const char *dir, int tee_is_tdx, const char *fmspc_hex, const char *ca,
                            char **out, struct tdxr_err *err)
{
	struct tdxr_buf b;
	char fm[13];
	size_t n;
	int rc;

	*out = NULL;
	if (dir == NULL || dir[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: empty cache directory");
	rc = fmspc_normalise(fmspc_hex, fm, err);
	if (!rc)
		rc = ca_check(ca, err);
	if (rc)
		return rc;
	tdxr_buf_init(&b, PATH_MAX);
	rc = tdxr_buf_appendf(&b, err, "%s/%s-%s-%s.json", dir, tee_is_tdx ? "tdx" : "sgx", fm, ca);
	if (rc) {
		tdxr_buf_dispose(&b);
		return tdxr_err_set(err, rc, "cache path too long");
	}
	*out = (char *)tdxr_buf_steal(&b, &n);
	return 0;
}

/* nextUpdate (and id/fmspc checks) of a tcb_info / qe_identity text. */
static int signed_text_check(const char *what, const char *text, size_t len, const char *want_id,
                             int id_required, const char *fmspc, int64_t *next, struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *v;
	int rc = 0;

	if (!json_is_object(o)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s is not a JSON object", what);
		goto out;
	}
	v = json_object_get(o, "nextUpdate");
	if (!json_is_string(v) || tdxr_time_parse_rfc3339(json_string_value(v), next) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s has no valid nextUpdate", what);
		goto out;
	}
	v = json_object_get(o, "id");
	if (want_id != NULL && (v != NULL || id_required) &&
	    (!json_is_string(v) || strcmp(json_string_value(v), want_id) != 0)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s id is not %s (wrong TEE)", what, want_id);
		goto out;
	}
	if (fmspc != NULL) {
		v = json_object_get(o, "fmspc");
		if (!json_is_string(v) || strcasecmp(json_string_value(v), fmspc) != 0) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "%s is for FMSPC %.16s, not %s", what,
			                  json_is_string(v) ? json_string_value(v) : "?", fmspc);
			goto out;
		}
	}
out:
	json_decref(o);
	return rc;
}

int attest_fetch_collateral_expiry(const uint8_t *json, size_t len, int tee_is_tdx, const char *fmspc_hex,
                                   int64_t *next_update, struct tdxr_err *err)
{
	static const char *const crls[] = { "pck_crl", "root_ca_crl" };
	static const char *const sigs[] = { "tcb_info_signature", "qe_identity_signature" };
	static const char *const chains[] = { "pck_crl_issuer_chain", "tcb_info_issuer_chain",
		                              "qe_identity_issuer_chain" };
	json_error_t jerr;
	json_t *o = NULL, *v;
	char fm[13];
	int64_t t, min;
	uint8_t sig[64];
	size_t i;
	int rc = 0;

	*next_update = 0;
	if (fmspc_hex != NULL && (rc = fmspc_normalise(fmspc_hex, fm, err)) != 0)
		return rc;
	o = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "collateral is not a JSON object");
		goto out;
	}
	for (i = 0; i < sizeof(collateral_keys) / sizeof(collateral_keys[0]); i++) {
		if (!json_is_string(json_object_get(o, collateral_keys[i]))) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "collateral has no string \"%s\"",
			                  collateral_keys[i]);
			goto out;
		}
	}
	for (i = 0; i < 2; i++) {
		v = json_object_get(o, sigs[i]);
		if (json_string_length(v) != 128 || tdxr_hex_decode_exact(json_string_value(v), sig, 64)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "collateral %s is not 64 bytes of hex", sigs[i]);
			goto out;
		}
	}
	for (i = 0; i < 3; i++) {
		if (strstr(json_string_value(json_object_get(o, chains[i])), PEM_CERT_BEGIN) == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "collateral %s holds no PEM certificate",
			                  chains[i]);
			goto out;
		}
	}
	v = json_object_get(o, "tcb_info");
	rc = signed_text_check("tcb_info", json_string_value(v), json_string_length(v),
	                       fmspc_hex ? (tee_is_tdx ? "TDX" : "SGX") : NULL, tee_is_tdx,
	                       fmspc_hex ? fm : NULL, &min, err);
	if (rc)
		goto out;
	v = json_object_get(o, "qe_identity");
	rc = signed_text_check("qe_identity", json_string_value(v), json_string_length(v),
	                       fmspc_hex ? (tee_is_tdx ? "TD_QE" : "QE") : NULL, 0, NULL, &t, err);
	if (rc)
		goto out;
	if (t < min)
		min = t;
	for (i = 0; i < 2; i++) {
		uint8_t *der = NULL;
		size_t dl = 0;

		v = json_object_get(o, crls[i]);
		if (tdxr_hex_decode_text((const uint8_t *)json_string_value(v), json_string_length(v), &der,
		                         &dl) != 0) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "collateral %s is not hex", crls[i]);
			goto out;
		}
		rc = crl_der_next_update(der, dl, &t, err);
		free(der);
		if (rc) {
			tdxr_err_prefix(err, "%s", crls[i]);
			goto out;
		}
		if (t < min)
			min = t;
	}
	*next_update = min;
out:
	json_decref(o);
	return rc;
}

/* Returns 0 and the text when path holds a usable entry; ENOTFOUND when absent,
 * ETIMEOUT when expired, another code when corrupt (err says why). */
static int cache_load(const char *path, int tee_is_tdx, const char *fm, int64_t now, char **json,
                      int64_t *next, struct tdxr_err *err)
{
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	*json = NULL;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return TDXR_ENOTFOUND;
		return tdxr_err_set(err, TDXR_EIO, "cannot stat: %s", strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return tdxr_err_set(err, TDXR_EINVAL, "not a regular file");
	rc = tdxr_file_read(path, TDXR_CAP_COLLATERAL, &data, &len, err);
	if (rc)
		return rc;
	rc = attest_fetch_collateral_expiry(data, len, tee_is_tdx, fm, next, err);
	if (rc) {
		free(data);
		return rc;
	}
	if (now >= *next) {
		free(data);
		return TDXR_ETIMEOUT;
	}
	*json = (char *)data;
	return 0;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int cache_mkdir(const char *dir, struct tdxr_err *err)
{
	char path[PATH_MAX];
	size_t i, n = strlen(dir);

	if (n >= sizeof(path))
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: cache directory path too long");
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return tdxr_err_set(err, TDXR_EIO, "fetch: cannot create cache directory %s: %s",
			                    path, strerror(errno));
		path[i] = i < n ? '/' : '\0';
	}
	return 0;
}

/* ====================================================================== HTTP */

/* Transport, caps, timeouts and TLS are common/http's; this layer adds the
 * collateral rules: our stricter URL check, the API key only to base_url, and
 * HTTP 200 as the only success. */
struct fetch_ctx {
	struct http_client *http;
	char *key_hdr; /* "Ocp-Apim-Subscription-Key: ..." or NULL; wiped before free */
	const struct attest_fetch_opts *o;
	long timeout_ms;
	unsigned requests;
};

static void ctx_dispose(struct fetch_ctx *c)
{
	if (c->key_hdr != NULL) {
		OPENSSL_cleanse(c->key_hdr, strlen(c->key_hdr));
		free(c->key_hdr);
		c->key_hdr = NULL;
	}
	http_client_free(c->http);
	c->http = NULL;
}

static int ctx_init(struct fetch_ctx *c, const struct attest_fetch_opts *o, struct tdxr_err *err)
{
	struct http_client_opts ho;
	long connect_ms;
	int rc;

	memset(c, 0, sizeof(*c));
	c->o = o;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : ATTEST_FETCH_TIMEOUT_MS_DEFAULT;
	connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : ATTEST_FETCH_CONNECT_MS_DEFAULT;
	if (connect_ms > c->timeout_ms)
		connect_ms = c->timeout_ms;
	if (o->api_key != NULL) {
		const char *k = tdxr_secret_str(o->api_key);
		size_t i, n = tdxr_secret_len(o->api_key);
		struct tdxr_buf h;
		int bad = n == 0;

		for (i = 0; i < n; i++)
			bad |= (unsigned char)k[i] < 0x20 || k[i] == 0x7f;
		if (bad)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "fetch: API key is empty or has control characters");
		tdxr_buf_init(&h, 4096);
		if (tdxr_buf_appendf(&h, err, "Ocp-Apim-Subscription-Key: %s", k) != 0) {
			tdxr_buf_dispose_wipe(&h);
			return tdxr_err_set(err, TDXR_EINVAL, "fetch: API key too long");
		}
		c->key_hdr = (char *)tdxr_buf_steal(&h, &n);
	}
	memset(&ho, 0, sizeof(ho));
	ho.ca_file = o->ca_file;
	ho.timeout_ms = c->timeout_ms;
	ho.connect_timeout_ms = connect_ms;
	ho.max_body = TDXR_CAP_COLLATERAL;
	rc = http_client_new(&ho, &c->http, err);
	if (rc) {
		ctx_dispose(c);
		return tdxr_err_prefix(err, "fetch");
	}
	return 0;
}

/* Copies a header value for a message: printable ASCII only, at most 40 bytes. */
static void hdr_for_msg(const struct http_response *r, const char *name, char out[41])
{
	const char *v = http_response_header(r, name);
	size_t i, n = 0;

	out[0] = '\0';
	for (i = 0; v != NULL && v[i] && n < 40; i++)
		if (v[i] > 0x20 && v[i] < 0x7f)
			out[n++] = v[i];
	out[n] = '\0';
}

/* GET url into r; 0 only for HTTP 200. with_key sends the API key (base_url only). */
static int fetch_get(struct fetch_ctx *c, const char *what, const char *url, int with_key,
                     struct http_response *r, struct tdxr_err *err)
{
	const char *key_hdrs[] = { c->key_hdr, NULL };
	struct http_request req;
	int rc;

	rc = attest_fetch_url_check(url, err);
	if (rc)
		return tdxr_err_prefix(err, "%s", what);
	memset(&req, 0, sizeof(req));
	req.method = HTTP_GET;
	req.url = url;
	req.headers = with_key && c->key_hdr != NULL ? key_hdrs : NULL;
	c->requests++;
	TDXR_DEBUG(FETCH_LOG, "GET %s", url_path(url));
	rc = http_request_send(c->http, &req, r, err);
	if (rc)
		return tdxr_err_prefix(err, "%s", what);
	if (r->status != 200) {
		char ra[41], ec[41];
		int code = r->status == 404                         ? TDXR_ENOTFOUND
		           : (r->status == 401 || r->status == 403) ? TDXR_EAUTH
		                                                    : TDXR_EIO;

		hdr_for_msg(r, "Retry-After", ra);
		hdr_for_msg(r, "Error-Code", ec); /* Intel PCS names the reason here */
		if (r->status == 429 || r->status == 503)
			return tdxr_err_set(err, code, "%s: GET %.120s returned HTTP %ld (%s%s); retry later",
			                    what, url_path(url), r->status,
			                    ra[0] ? "Retry-After: " : "no Retry-After", ra);
		return tdxr_err_set(err, code, "%s: GET %.120s returned HTTP %ld%s%s", what, url_path(url),
		                    r->status, ec[0] ? " Error-Code: " : "", ec);
	}
	return 0;
}

/* An issuer-chain header: percent-decoded PEM. */
static int chain_header(const char *what, const struct http_response *r, const char *name, const char *alt,
                        char **out, struct tdxr_err *err)
{
	const char *raw;
	size_t n;
	int rc;

	*out = NULL;
	raw = http_response_header(r, name);
	if (raw == NULL && alt != NULL)
		raw = http_response_header(r, alt);
	if (raw == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: response has no %s header", what, name);
	rc = attest_fetch_pct_decode(raw, strlen(raw), out, &n, err);
	if (rc)
		return tdxr_err_prefix(err, "%s", what);
	if (strstr(*out, PEM_CERT_BEGIN) == NULL) {
		free(*out);
		*out = NULL;
		return tdxr_err_set(err, TDXR_EINVAL, "%s: %s header holds no PEM certificate", what, name);
	}
	return 0;
}

/* ================================================================ collateral */

struct pieces {
	char *pck_crl_chain;
	uint8_t *pck_crl;
	size_t pck_crl_len;
	char *tcb_chain;
	char *tcb_info;
	size_t tcb_info_len;
	uint8_t tcb_sig[64];
	char *qe_chain;
	char *qe_identity;
	size_t qe_identity_len;
	uint8_t qe_sig[64];
	uint8_t *root_crl;
	size_t root_crl_len;
};

static void pieces_dispose(struct pieces *p)
{
	free(p->pck_crl_chain);
	free(p->pck_crl);
	free(p->tcb_chain);
	free(p->tcb_info);
	free(p->qe_chain);
	free(p->qe_identity);
	free(p->root_crl);
	memset(p, 0, sizeof(*p));
}

/* GET a CRL at url (any of DER / hex / PEM). */
static int fetch_crl(struct fetch_ctx *c, const char *what, const char *url, int with_key, uint8_t **der,
                     size_t *len, struct tdxr_err *err)
{
	struct http_response r;
	int64_t nu;
	int rc;

	http_response_init(&r);
	rc = fetch_get(c, what, url, with_key, &r, err);
	if (!rc && (rc = attest_fetch_crl_decode(r.body.data, r.body.len, der, len, &nu, err)) != 0)
		tdxr_err_prefix(err, "%s", what);
	http_response_dispose(&r);
	return rc;
}

int attest_fetch_crl_url_from_chain(const char *pem, char **url, struct tdxr_err *err)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x, *last = NULL;
	STACK_OF(DIST_POINT) *dps = NULL;
	int i, j, rc = 0;

	*url = NULL;
	while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		X509_free(last);
		last = x;
	}
	if (last != NULL)
		dps = X509_get_ext_d2i(last, NID_crl_distribution_points, NULL, NULL);
	for (i = 0; dps != NULL && *url == NULL && i < sk_DIST_POINT_num(dps); i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

		if (dp->distpoint == NULL || dp->distpoint->type != 0)
			continue;
		for (j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);
			const ASN1_IA5STRING *u;
			size_t n;

			if (gn->type != GEN_URI)
				continue;
			u = gn->d.uniformResourceIdentifier;
			n = (size_t)ASN1_STRING_length(u);
			if (n == 0 || n > FETCH_URL_MAX || memchr(ASN1_STRING_get0_data(u), '\0', n))
				continue;
			*url = strndup((const char *)ASN1_STRING_get0_data(u), n);
			if (*url == NULL)
				rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			break;
		}
	}
	if (*url == NULL && rc == 0)
		rc = tdxr_err_set(
		    err, TDXR_EINVAL,
		    "root CA CRL: the QE identity issuer chain's root has no CRL distribution point");
	sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
	X509_free(last);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

static int is_intel_pcs(const char *base)
{
	size_t n = strlen(ATTEST_PCS_URL_INTEL);

	return base == NULL ||
	       (strncasecmp(base, ATTEST_PCS_URL_INTEL, n) == 0 && (base[n] == '\0' || base[n] == '/'));
}

static int fetch_root_crl(struct fetch_ctx *c, struct pieces *p, struct tdxr_err *err)
{
	const char *what = "root CA CRL";
	char *url = NULL;
	int rc;

	if (c->o->root_ca_crl_url != NULL)
		return fetch_crl(c, what, c->o->root_ca_crl_url, 0, &p->root_crl, &p->root_crl_len, err);
	if (!is_intel_pcs(c->o->base_url)) {
		struct tdxr_err e1 = { 0, "" };

		rc = attest_fetch_url_build(c->o->base_url, "sgx", "rootcacrl", &url, err);
		if (rc)
			return rc;
		rc = fetch_crl(c, what, url, 1, &p->root_crl, &p->root_crl_len, &e1);
		free(url);
		url = NULL;
		if (rc == 0)
			return 0;
		TDXR_INFO(FETCH_LOG, "%s; trying the root certificate's CRL distribution point", e1.msg);
	}
	rc = attest_fetch_crl_url_from_chain(p->qe_chain, &url, err);
	if (!rc)
		rc = fetch_crl(c, what, url, 0, &p->root_crl, &p->root_crl_len, err);
	free(url);
	return rc;
}

static int fetch_signed(struct fetch_ctx *c, const char *what, const char *url, const char *key,
                        const char *chain_hdr, const char *chain_alt, char **chain, char **text,
                        size_t *text_len, uint8_t sig[64], struct tdxr_err *err)
{
	struct http_response r;
	int rc;

	http_response_init(&r);
	rc = fetch_get(c, what, url, 1, &r, err);
	if (!rc)
		rc = chain_header(what, &r, chain_hdr, chain_alt, chain, err);
	if (!rc &&
	    (rc = attest_fetch_signed_split(r.body.data, r.body.len, key, text, text_len, sig, err)) != 0)
		tdxr_err_prefix(err, "%s", what);
	http_response_dispose(&r);
	return rc;
}

static int fetch_pieces(struct fetch_ctx *c, const char *fm, int tee_is_tdx, const char *ca, struct pieces *p,
                        struct tdxr_err *err)
{
	const char *tee = tee_is_tdx ? "tdx" : "sgx";
	const char *base = c->o->base_url;
	struct http_response r;
	char rest[64];
	char *url = NULL;
	int64_t nu;
	int rc;

	http_response_init(&r);
	/* fm (12) and ca (<= 9) were validated, so rest cannot truncate */
	snprintf(rest, sizeof(rest), "pckcrl?ca=%s&encoding=der", ca);
	rc = attest_fetch_url_build(base, "sgx", rest, &url, err);
	if (!rc)
		rc = fetch_get(c, "PCK CRL", url, 1, &r, err);
	if (!rc)
		rc = chain_header("PCK CRL", &r, "SGX-PCK-CRL-Issuer-Chain", NULL, &p->pck_crl_chain, err);
	if (!rc && (rc = attest_fetch_crl_decode(r.body.data, r.body.len, &p->pck_crl, &p->pck_crl_len, &nu,
	                                         err)) != 0)
		tdxr_err_prefix(err, "PCK CRL");
	http_response_dispose(&r);
	free(url);
	url = NULL;
	if (rc)
		return rc;

	snprintf(rest, sizeof(rest), "tcb?fmspc=%s", fm);
	rc = attest_fetch_url_build(base, tee, rest, &url, err);
	if (!rc)
		rc = fetch_signed(c, "TCB info", url, "tcbInfo", "TCB-Info-Issuer-Chain",
		                  "SGX-TCB-Info-Issuer-Chain", &p->tcb_chain, &p->tcb_info, &p->tcb_info_len,
		                  p->tcb_sig, err);
	free(url);
	url = NULL;
	if (rc)
		return rc;

	rc = attest_fetch_url_build(base, tee, "qe/identity?update=standard", &url, err);
	if (!rc)
		rc = fetch_signed(c, "QE identity", url, "enclaveIdentity",
		                  "SGX-Enclave-Identity-Issuer-Chain", NULL, &p->qe_chain, &p->qe_identity,
		                  &p->qe_identity_len, p->qe_sig, err);
	free(url);
	if (rc)
		return rc;

	return fetch_root_crl(c, p, err);
}

static int json_put_str(json_t *o, const char *k, const char *s, size_t n)
{
	json_t *v = json_stringn(s, n); /* NULL on invalid UTF-8 */

	return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

static int json_put_hex(json_t *o, const char *k, const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	int rc = h == NULL ? -1 : json_put_str(o, k, h, strlen(h));

	free(h);
	return rc;
}

/* The pieces as dcap-qvl QuoteCollateralV3 JSON text (malloc'd). */
static int pieces_to_json(const struct pieces *p, char **out, struct tdxr_err *err)
{
	json_t *o = json_object();
	char *s = NULL;
	int bad;

	*out = NULL;
	bad = o == NULL;
	bad = bad || json_put_str(o, "pck_crl_issuer_chain", p->pck_crl_chain, strlen(p->pck_crl_chain));
	bad = bad || json_put_hex(o, "root_ca_crl", p->root_crl, p->root_crl_len);
	bad = bad || json_put_hex(o, "pck_crl", p->pck_crl, p->pck_crl_len);
	bad = bad || json_put_str(o, "tcb_info_issuer_chain", p->tcb_chain, strlen(p->tcb_chain));
	bad = bad || json_put_str(o, "tcb_info", p->tcb_info, p->tcb_info_len);
	bad = bad || json_put_hex(o, "tcb_info_signature", p->tcb_sig, 64);
	bad = bad || json_put_str(o, "qe_identity_issuer_chain", p->qe_chain, strlen(p->qe_chain));
	bad = bad || json_put_str(o, "qe_identity", p->qe_identity, p->qe_identity_len);
	bad = bad || json_put_hex(o, "qe_identity_signature", p->qe_sig, 64);
	if (!bad)
		s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: cannot encode the collateral (invalid UTF-8?)");
	if (strlen(s) > TDXR_CAP_COLLATERAL) {
		free(s);
		return tdxr_err_set(err, TDXR_ETOOBIG, "fetch: collateral exceeds %u bytes",
		                    TDXR_CAP_COLLATERAL);
	}
	*out = s;
	return 0;
}

int attest_fetch_collateral(const struct attest_fetch_opts *o, const char *fmspc_hex, int tee_is_tdx,
                            const char *pck_ca, char **collateral_json, struct attest_fetch_info *info,
                            struct tdxr_err *err)
{
	struct fetch_ctx ctx;
	struct pieces p;
	struct tdxr_err e2 = { 0, "" };
	char fm[13];
	char *path = NULL, *json = NULL;
	int64_t now, nu = 0;
	int rc, cached = 0;

	*collateral_json = NULL;
	if (info != NULL)
		memset(info, 0, sizeof(*info));
	memset(&ctx, 0, sizeof(ctx));
	memset(&p, 0, sizeof(p));
	if (o == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "fetch: no options");
	rc = fmspc_normalise(fmspc_hex, fm, err);
	if (!rc)
		rc = ca_check(pck_ca, err);
	if (rc)
		return rc;
	now = o->now > 0 ? o->now : (int64_t)time(NULL);

	if (o->cache_dir != NULL) {
		rc = attest_fetch_cache_path(o->cache_dir, tee_is_tdx, fm, pck_ca, &path, err);
		if (rc)
			goto out;
		rc = cache_load(path, tee_is_tdx, fm, now, &json, &nu, &e2);
		if (rc == 0) {
			TDXR_DEBUG(FETCH_LOG, "collateral for %s %s from cache %s", fm, pck_ca, path);
			if (info != NULL) {
				info->from_cache = 1;
				info->cached = 1;
				info->next_update = nu;
			}
			*collateral_json = json;
			json = NULL;
			goto out;
		}
		if (rc == TDXR_ETIMEOUT)
			TDXR_DEBUG(FETCH_LOG, "cache %s expired; refetching", path);
		else if (rc != TDXR_ENOTFOUND)
			TDXR_WARN(FETCH_LOG, "ignoring unusable cache entry %s (%s); refetching", path,
			          e2.msg);
	}

	rc = ctx_init(&ctx, o, err);
	if (rc)
		goto out;
	rc = fetch_pieces(&ctx, fm, tee_is_tdx, pck_ca, &p, err);
	if (rc)
		goto out;
	rc = pieces_to_json(&p, &json, err);
	if (rc)
		goto out;
	/* Check our own output the way a cache read would: same FMSPC and TEE, dates present. */
	rc = attest_fetch_collateral_expiry((const uint8_t *)json, strlen(json), tee_is_tdx, fm, &nu, err);
	if (rc)
		goto out;
	if (path != NULL && now < nu) {
		e2.msg[0] = '\0';
		if (cache_mkdir(o->cache_dir, &e2) == 0 &&
		    tdxr_file_write_atomic(path, json, strlen(json), 0644, &e2) == 0)
			cached = 1;
		else
			TDXR_WARN(FETCH_LOG, "collateral not cached: %s", e2.msg);
	}
	if (info != NULL) {
		info->cached = cached;
		info->next_update = nu;
	}
	*collateral_json = json;
	json = NULL;
out:
	if (info != NULL)
		info->requests = ctx.requests;
	ctx_dispose(&ctx);
	pieces_dispose(&p);
	free(json);
	free(path);
	return rc;
}
