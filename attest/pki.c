/*
 * pki.c - X.509 work for the verifier, on OpenSSL 3: PEM chains, raw ECDSA
 * signatures, chain verification with CRLs at a caller-chosen time, and the
 * Intel SGX PCK certificate extension (read with a bounded DER walker, since
 * OpenSSL has no template for it). Every input here is untrusted.
 */
#include "attest/attest_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

/*
 * PEM chains are read by hand so that (1) the text must be exactly the
 * canonical PEM of the certificates it carries - 64-column base64, "\n" line
 * ends ("\r\n" and a missing final newline tolerated), nothing before, between
 * or after them: PEM readers skip junk and ignore unused base64 bits, so
 * otherwise different bytes could carry the same chain and a byte-flip could go
 * unnoticed - and (2) certificates are decoded once and shared from a small
 * process-wide cache keyed by the SHA-256 of their full DER (OpenSSL 3 spends a
 * third of a verification decoding certificate keys; the CA certificates repeat
 * in every quote and a platform's PCK leaf in every quote of that platform).
 * Same bytes, same object: the cache changes cost, never an answer. Bounded;
 * replaced round-robin; attest_cert_cache_clear empties it.
 */
#define PEM_BEGIN "-----BEGIN CERTIFICATE-----"
#define PEM_END "-----END CERTIFICATE-----"
#define CERT_CACHE_MAX 64

static struct {
	uint8_t h[32];
	X509 *x;
} cert_cache[CERT_CACHE_MAX];
static size_t cert_cache_n, cert_cache_next;
static CRYPTO_RWLOCK *cert_cache_lock;
static CRYPTO_ONCE cert_cache_once = CRYPTO_ONCE_STATIC_INIT;

static void cert_cache_init(void)
{
	cert_cache_lock = CRYPTO_THREAD_lock_new();
}

static X509 *cert_from_der(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	uint8_t h[32];
	unsigned int hl = 0;
	X509 *x = NULL;
	size_t i;
	int locked;

	locked = CRYPTO_THREAD_run_once(&cert_cache_once, cert_cache_init) && cert_cache_lock &&
	         EVP_Digest(der, len, h, &hl, EVP_sha256(), NULL) == 1;
	if (locked && CRYPTO_THREAD_read_lock(cert_cache_lock)) {
		for (i = 0; i < cert_cache_n && x == NULL; i++)
			if (memcmp(cert_cache[i].h, h, 32) == 0 && X509_up_ref(cert_cache[i].x))
				x = cert_cache[i].x;
		CRYPTO_THREAD_unlock(cert_cache_lock);
		if (x)
			return x;
	}
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		X509_free(x);
		return NULL;
	}
	if (locked && CRYPTO_THREAD_write_lock(cert_cache_lock)) {
		if (X509_up_ref(x)) {
			size_t slot = cert_cache_n < CERT_CACHE_MAX ? cert_cache_n++
			                                            : cert_cache_next++ % CERT_CACHE_MAX;

			if (cert_cache[slot].x)
				X509_free(cert_cache[slot].x);
			memcpy(cert_cache[slot].h, h, 32);
			cert_cache[slot].x = x;
		}
		CRYPTO_THREAD_unlock(cert_cache_lock);
	}
	return x;
}

void attest_cert_cache_clear(void)
{
	size_t i;

	if (!CRYPTO_THREAD_run_once(&cert_cache_once, cert_cache_init) || cert_cache_lock == NULL ||
	    !CRYPTO_THREAD_write_lock(cert_cache_lock))
		return;
	for (i = 0; i < cert_cache_n; i++) {
		X509_free(cert_cache[i].x);
		cert_cache[i].x = NULL;
	}
	cert_cache_n = cert_cache_next = 0;
	CRYPTO_THREAD_unlock(cert_cache_lock);
}

/* Matches s at pem[*i], then a line end ("\n", "\r\n", or the end of the text when last). */
static int pem_line(const char *pem, size_t len, size_t *i, const char *s, size_t n)
{
	if (len - *i < n || memcmp(pem + *i, s, n) != 0)
		return 0;
	*i += n;
	if (*i == len)
		return 1;
	if (pem[*i] == '\r' && *i + 1 < len && pem[*i + 1] == '\n')
		(*i)++;
	if (pem[*i] != '\n')
		return 0;
	(*i)++;
	return 1;
}

/* One canonical PEM block at pem[*i] -> DER (malloc'd). */
static int pem_block(const char *pem, size_t len, size_t *i, uint8_t **der, size_t *der_len)
{
	size_t start, b64 = 0, pad = 0, k, line;
	char *text = NULL;
	uint8_t *d = NULL;
	int n;

	if (!pem_line(pem, len, i, PEM_BEGIN, sizeof(PEM_BEGIN) - 1))
		return TDXR_EINVAL;
	start = *i;
	text = malloc(len - start + 1);
	if (text == NULL)
		return TDXR_ENOMEM;
	/* Base64 lines of exactly 64 characters, the last one 4..64, each ended by a newline. */
	for (;;) {
		if (len - *i >= sizeof(PEM_END) - 1 && memcmp(pem + *i, PEM_END, sizeof(PEM_END) - 1) == 0)
			break;
		for (line = 0; *i < len && pem[*i] != '\n' && pem[*i] != '\r'; (*i)++, line++)
			text[b64++] = pem[*i];
		if (line == 0 || line > 64 || line % 4 || !pem_line(pem, len, i, "", 0))
			goto bad;
		if (line < 64 &&
		    !(len - *i >= sizeof(PEM_END) - 1 && memcmp(pem + *i, PEM_END, sizeof(PEM_END) - 1) == 0))
			goto bad; /* only the last line may be short */
	}
	if (b64 == 0 || !pem_line(pem, len, i, PEM_END, sizeof(PEM_END) - 1))
		goto bad;
	for (k = 0; k < b64; k++) {
		char c = text[k];

		if (c == '=' && k + 2 >= b64)
			pad++;
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		           c == '+' || c == '/') ||
		         pad)
			goto bad;
	}
	d = malloc(b64 / 4 * 3 + 1);
	if (d == NULL) {
		free(text);
		return TDXR_ENOMEM;
	}
	n = EVP_DecodeBlock(d, (const unsigned char *)text, (int)b64);
	if (n < 0 || (size_t)n < pad)
		goto bad;
	*der_len = (size_t)n - pad;
	/* Canonical: re-encoding the bytes gives back the same characters (no stray bits). */
	{
		char *re = malloc(b64 + 4);
		int m = re ? EVP_EncodeBlock((unsigned char *)re, d, (int)*der_len) : -1;
		int same = m == (int)b64 && memcmp(re, text, b64) == 0;

		free(re);
		if (!same)
			goto bad;
	}
	free(text);
	*der = d;
	return 0;
bad:
	free(text);
	free(d);
	return TDXR_EINVAL;
}

int attest__pem_chain(const char *pem, size_t len, STACK_OF(X509) **out, struct tdxr_err *err)
{
	STACK_OF(X509) *sk = NULL;
	uint8_t *der = NULL;
	size_t i = 0, der_len = 0;
	X509 *x;
	int rc = 0;

	*out = NULL;
	if (len > INT32_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG, "certificate chain too large");
	sk = sk_X509_new_null();
	if (sk == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	while (i < len) {
		size_t at = i;

		rc = pem_block(pem, len, &i, &der, &der_len);
		if (rc == TDXR_ENOMEM) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (rc) {
			rc = tdxr_err_set(
			    err, TDXR_EINVAL,
			    "certificate chain is not canonical PEM (bad certificate block at offset %zu)",
			    at);
			goto out;
		}
		x = cert_from_der(der, der_len);
		free(der);
		der = NULL;
		if (x == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "certificate %d of the chain is not DER X.509",
			                  sk_X509_num(sk));
			goto out;
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (sk_X509_num(sk) > 8) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "certificate chain has more than 8 certificates");
			goto out;
		}
	}
	if (sk_X509_num(sk) == 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "no PEM certificate could be read");
		goto out;
	}
	*out = sk;
	sk = NULL;
out:
	ERR_clear_error();
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

int attest__ecdsa_verify_raw(EVP_PKEY *key, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
	ECDSA_SIG *s = NULL;
	BIGNUM *r = NULL, *ss = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = NULL;
	int derlen, ok = 0;

	r = BN_bin2bn(sig, 32, NULL);
	ss = BN_bin2bn(sig + 32, 32, NULL);
	s = ECDSA_SIG_new();
	if (r == NULL || ss == NULL || s == NULL || !ECDSA_SIG_set0(s, r, ss))
		goto out;
	r = ss = NULL;
	derlen = i2d_ECDSA_SIG(s, &der);
	if (derlen <= 0)
		goto out;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, der, (size_t)derlen, msg, len) == 1;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	ECDSA_SIG_free(s);
	BN_free(r);
	BN_free(ss);
	return ok ? 0 : TDXR_EATTEST;
}

EVP_PKEY *attest__p256_from_raw(const uint8_t xy[64])
{
	uint8_t point[65];
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;

	point[0] = 0x04;
	memcpy(point + 1, xy, 64);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
		key = NULL;
out:
	ERR_clear_error();
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return key;
}

int attest__spki_sha256(X509 *cert, uint8_t out[32])
{
	unsigned char *der = NULL;
	int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	unsigned int mdlen = 0;
	int ok;

	if (len <= 0)
		return TDXR_EINVAL;
	ok = EVP_Digest(der, (size_t)len, out, &mdlen, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 ? 0 : TDXR_ERROR;
}

int attest__crl_load(const uint8_t *der, size_t len, const char *what, X509_CRL **out, struct tdxr_err *err)
{
	const unsigned char *p = der;
	X509_CRL *crl;

	*out = NULL;
	if (len > INT32_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG, "%s too large", what);
	crl = d2i_X509_CRL(NULL, &p, (long)len);
	if (crl == NULL || p != der + len) {
		X509_CRL_free(crl);
		ERR_clear_error();
		return tdxr_err_set(err, TDXR_EINVAL, "%s is not a DER X.509 CRL", what);
	}
	*out = crl;
	return 0;
}

static void subject_cn(X509 *x, char *buf, size_t cap)
{
	X509_NAME *n = x ? X509_get_subject_name(x) : NULL;

	buf[0] = '\0';
	if (n == NULL || X509_NAME_get_text_by_NID(n, NID_commonName, buf, (int)cap) < 0)
		snprintf(buf, cap, "?");
}

int attest__chain_verify_store(X509_STORE *store, STACK_OF(X509) *chain, int64_t now, int leaf_may_be_ca,
                               const char *what, struct tdxr_err *err)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	X509 *leaf;
	char cn[128];
	int i, rc = 0;

	if (chain == NULL || sk_X509_num(chain) < 1)
		return tdxr_err_set(err, TDXR_EATTEST, "%s: empty certificate chain", what);
	leaf = sk_X509_value(chain, 0);
	if (!leaf_may_be_ca && (X509_check_ca(leaf) != 0 || (X509_get_extension_flags(leaf) & EXFLAG_CA))) {
		subject_cn(leaf, cn, sizeof(cn));
		return tdxr_err_set(err, TDXR_EATTEST, "%s: leaf certificate '%s' is a CA used as end entity",
		                    what, cn);
	}
	ctx = X509_STORE_CTX_new();
	untrusted = sk_X509_new_null();
	if (ctx == NULL || untrusted == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "%s: out of memory", what);
		goto out;
	}
	for (i = 1; i < sk_X509_num(chain); i++)
		if (!sk_X509_push(untrusted, sk_X509_value(chain, i))) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "%s: cannot initialise verification", what);
		goto out;
	}
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)now);
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx),
	                            X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(ctx), 4);
	if (X509_verify_cert(ctx) == 1) {
		/* Every certificate supplied must be on the verified path: nothing unused rides along. */
		STACK_OF(X509) *path = X509_STORE_CTX_get0_chain(ctx);

		for (i = 0; i < sk_X509_num(chain); i++) {
			int j, found = 0;

			for (j = 0; path && j < sk_X509_num(path) && !found; j++)
				found = X509_cmp(sk_X509_value(chain, i), sk_X509_value(path, j)) == 0;
			if (!found) {
				subject_cn(sk_X509_value(chain, i), cn, sizeof(cn));
				rc = tdxr_err_set(
				    err, TDXR_EATTEST,
				    "%s: certificate %d ('%s') is not on the verified path to the root", what,
				    i, cn);
				goto out;
			}
		}
	} else {
		int e = X509_STORE_CTX_get_error(ctx);

		subject_cn(X509_STORE_CTX_get_current_cert(ctx), cn, sizeof(cn));
		rc = tdxr_err_set(err, TDXR_EATTEST, "%s: %s (certificate '%s', depth %d)", what,
		                  X509_verify_cert_error_string(e), cn, X509_STORE_CTX_get_error_depth(ctx));
	}
out:
	ERR_clear_error();
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	return rc;
}

int attest__chain_verify(X509 *root, STACK_OF(X509) *chain, X509_CRL *const *crls, size_t ncrls, int64_t now,
                         int leaf_may_be_ca, const char *what, struct tdxr_err *err)
{
	X509_STORE *store = X509_STORE_new();
	size_t k;
	int rc;

	if (store == NULL || !X509_STORE_add_cert(store, root)) {
		X509_STORE_free(store);
		return tdxr_err_set(err, TDXR_ENOMEM, "%s: cannot set up the certificate store", what);
	}
	for (k = 0; k < ncrls; k++)
		if (crls[k] && !X509_STORE_add_crl(store, crls[k])) {
			X509_STORE_free(store);
			return tdxr_err_set(err, TDXR_ENOMEM, "%s: cannot add a CRL", what);
		}
	rc = attest__chain_verify_store(store, chain, now, leaf_may_be_ca, what, err);
	X509_STORE_free(store);
	return rc;
}

/* ---- the SGX extension: a bounded DER walker ---- */

struct der {
	uint8_t tag;
	const uint8_t *val;
	size_t len;
};

static int der_next(struct tdxr_cur *c, struct der *d)
{
	uint8_t lb, b;
	size_t len = 0;
	int i;

	if (tdxr_cur_u8(c, &d->tag) || tdxr_cur_u8(c, &lb))
		return TDXR_EINVAL;
	if ((d->tag & 0x1f) == 0x1f)
		return TDXR_EINVAL; /* high tag numbers do not occur here */
	if (lb < 0x80) {
		len = lb;
	} else {
		int n = lb & 0x7f;

		if (n == 0 || n > 4)
			return TDXR_EINVAL;
		for (i = 0; i < n; i++) {
			if (tdxr_cur_u8(c, &b))
				return TDXR_EINVAL;
			len = (len << 8) | b;
		}
	}
	d->len = len;
	return tdxr_cur_bytes(c, len, &d->val);
}

static int der_uint(const struct der *d, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	if ((d->tag != 0x02 && d->tag != 0x0a) || d->len == 0 || d->len > 3 || (d->val[0] & 0x80))
		return TDXR_EINVAL;
	for (i = 0; i < d->len; i++)
		v = (v << 8) | d->val[i];
	if (v > max)
		return TDXR_EINVAL;
	*out = v;
	return 0;
}

/* 1.2.840.113741.1.13.1 */
static const uint8_t SGX_OID[] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01 };

static int oid_child(const struct der *oid, size_t depth_extra, const uint8_t **tail)
{
	if (oid->tag != 0x06 || oid->len != sizeof(SGX_OID) + depth_extra ||
	    memcmp(oid->val, SGX_OID, sizeof(SGX_OID)) != 0)
		return 0;
	*tail = oid->val + sizeof(SGX_OID);
	return 1;
}

static int pck_tcb_parse(const struct der *seq, struct attest_pck_ext *x, unsigned *seen)
{
	struct tdxr_cur c;
	struct der item, oid, val;

	if (seq->tag != 0x30)
		return TDXR_EINVAL;
	tdxr_cur_init(&c, seq->val, seq->len);
	while (tdxr_cur_left(&c)) {
		struct tdxr_cur ic;
		const uint8_t *t;
		unsigned v;

		if (der_next(&c, &item) || item.tag != 0x30)
			return TDXR_EINVAL;
		tdxr_cur_init(&ic, item.val, item.len);
		if (der_next(&ic, &oid) || der_next(&ic, &val) || tdxr_cur_left(&ic))
			return TDXR_EINVAL;
		if (!oid_child(&oid, 2, &t) || t[0] != 0x02)
			continue;
		if (t[1] >= 1 && t[1] <= 16) {
			if (der_uint(&val, 255, &v))
				return TDXR_EINVAL;
			x->cpu_svn_components[t[1] - 1] = (uint8_t)v;
			*seen |= 1u << (t[1] - 1);
		} else if (t[1] == 17) {
			if (der_uint(&val, 65535, &v))
				return TDXR_EINVAL;
			x->pce_svn = (uint16_t)v;
			*seen |= 1u << 16;
		} else if (t[1] == 18) {
			if (val.tag != 0x04 || val.len != 16)
				return TDXR_EINVAL;
			memcpy(x->cpu_svn, val.val, 16);
			*seen |= 1u << 17;
		}
	}
	return 0;
}

int attest__pck_ext_parse(X509 *leaf, struct attest_pck_ext *out, struct tdxr_err *err)
{
	ASN1_OBJECT *obj = NULL;
	X509_EXTENSION *ext;
	ASN1_OCTET_STRING *os;
	struct attest_pck_ext x;
	struct tdxr_cur c, sc;
	struct der top, item, oid, val;
	unsigned seen = 0, tcb_seen = 0;
	int idx, rc = 0;

	memset(&x, 0, sizeof(x));
	obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
	idx = obj ? X509_get_ext_by_OBJ(leaf, obj, -1) : -1;
	ASN1_OBJECT_free(obj);
	if (idx < 0)
		return tdxr_err_set(err, TDXR_EATTEST,
		                    "PCK certificate has no SGX extension (1.2.840.113741.1.13.1)");
	if (X509_get_ext_by_OBJ(leaf, X509_EXTENSION_get_object(X509_get_ext(leaf, idx)), idx) >= 0)
		return tdxr_err_set(err, TDXR_EATTEST, "PCK certificate has two SGX extensions");
	ext = X509_get_ext(leaf, idx);
	os = X509_EXTENSION_get_data(ext);
	tdxr_cur_init(&c, ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
	if (der_next(&c, &top) || top.tag != 0x30 || tdxr_cur_left(&c))
		goto bad;
	tdxr_cur_init(&sc, top.val, top.len);
	while (tdxr_cur_left(&sc)) {
		struct tdxr_cur ic;
		const uint8_t *t;

		if (der_next(&sc, &item) || item.tag != 0x30)
			goto bad;
		tdxr_cur_init(&ic, item.val, item.len);
		if (der_next(&ic, &oid) || der_next(&ic, &val) || tdxr_cur_left(&ic))
			goto bad;
		if (!oid_child(&oid, 1, &t))
			continue;
		switch (t[0]) {
		case 1:
			if (val.tag != 0x04 || val.len != 16)
				goto bad;
			memcpy(x.ppid, val.val, 16);
			seen |= 1;
			break;
		case 2:
			if (pck_tcb_parse(&val, &x, &tcb_seen))
				goto bad;
			seen |= 2;
			break;
		case 3:
			if (val.tag != 0x04 || val.len != 2)
				goto bad;
			memcpy(x.pce_id, val.val, 2);
			seen |= 4;
			break;
		case 4:
			if (val.tag != 0x04 || val.len != 6)
				goto bad;
			memcpy(x.fmspc, val.val, 6);
			seen |= 8;
			break;
		case 5: {
			unsigned v;

			if (der_uint(&val, 255, &v))
				goto bad;
			x.sgx_type = (int)v;
			seen |= 16;
			break;
		}
		default: break;
		}
	}
	if ((seen & 0x0e) != 0x0e || tcb_seen != 0x3ffff) {
		rc = tdxr_err_set(
		    err, TDXR_EATTEST,
		    "PCK certificate SGX extension lacks TCB, PCE-ID or FMSPC (or a TCB component)");
		goto out;
	}
	*out = x;
	goto out;
bad:
	rc = tdxr_err_set(err, TDXR_EATTEST, "PCK certificate SGX extension is malformed DER");
out:
	return rc;
}

int attest_quote_pck_info(const struct attest_quote *q, char fmspc_hex[13], const char **pck_ca,
                          struct tdxr_err *err)
{
	STACK_OF(X509) *chain = NULL;
	struct attest_pck_ext ext;
	char issuer[256];
	X509 *leaf;
	int rc;

	if ((rc = attest__pem_chain(q->pck_chain_pem, q->pck_chain_len, &chain, err)))
		return rc;
	leaf = sk_X509_value(chain, 0);
	rc = attest__pck_ext_parse(leaf, &ext, err);
	if (rc == 0) {
		issuer[0] = '\0';
		X509_NAME_get_text_by_NID(X509_get_issuer_name(leaf), NID_commonName, issuer,
		                          (int)sizeof(issuer));
		if (strstr(issuer, "Platform"))
			*pck_ca = "platform";
		else if (strstr(issuer, "Processor"))
			*pck_ca = "processor";
		else
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "PCK leaf issuer '%s' is neither a Platform nor a Processor CA",
			                  issuer);
		tdxr_hex_encode(ext.fmspc, 6, fmspc_hex);
	}
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
