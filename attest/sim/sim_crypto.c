/*
 * sim_crypto.c - the simulator's P-256 keys and ECDSA signatures.
 *
 * Fresh mode uses OpenSSL's generator and EVP_DigestSign. Deterministic mode
 * (OpenSSL 3.0 has no RFC 6979) derives private scalars from SHA-256(seed,
 * label) and each nonce from HMAC-SHA256(private key, SHA-256(message)), then
 * computes r and s with BIGNUM / EC_POINT arithmetic (the non-deprecated
 * EC_GROUP API). Deterministic output is for reproducible tests only: the seed
 * is the whole secret, and that is fine for a simulator whose keys prove nothing.
 */
#include "attest/sim/sim_int.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

void sim__sha256(const void *p, size_t n, uint8_t out[32])
{
	SHA256(p, n, out);
}

void sim__sha384(const void *p, size_t n, uint8_t out[48])
{
	SHA384(p, n, out);
}

static void seed_le(uint64_t seed, uint8_t out[8])
{
	for (size_t i = 0; i < 8; i++)
		out[i] = (uint8_t)(seed >> (8 * i));
}

/* SHA-256(domain || seed || label || 0 || extra || ctr) */
static void derive_block(const char *domain, uint64_t seed, const char *label, const uint8_t *extra,
                         size_t extra_len, uint32_t ctr, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t s[8], c[4], zero = 0;
	unsigned int olen = 0;

	seed_le(seed, s);
	c[0] = (uint8_t)ctr;
	c[1] = (uint8_t)(ctr >> 8);
	c[2] = (uint8_t)(ctr >> 16);
	c[3] = (uint8_t)(ctr >> 24);
	if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(md, domain, strlen(domain)) || !EVP_DigestUpdate(md, s, sizeof(s)) ||
	    !EVP_DigestUpdate(md, label, strlen(label)) || !EVP_DigestUpdate(md, &zero, 1) ||
	    (extra_len && !EVP_DigestUpdate(md, extra, extra_len)) || !EVP_DigestUpdate(md, c, sizeof(c)) ||
	    !EVP_DigestFinal_ex(md, out, &olen))
		memset(out, 0, 32); /* caller rejects a zero scalar; bytes fall back to zeros */
	EVP_MD_CTX_free(md);
}

int sim__bytes(const struct sim_pki *p, const char *label, uint8_t *out, size_t n, struct tdxr_err *err)
{
	uint8_t blk[32];
	uint32_t ctr = 0;
	size_t off = 0;

	if (!p->deterministic) {
		if (RAND_bytes(out, (int)n) != 1)
			return tdxr_err_set(err, TDXR_ERROR, "sim: RAND_bytes failed");
		return 0;
	}
	while (off < n) {
		size_t take = n - off < sizeof(blk) ? n - off : sizeof(blk);

		derive_block("tdx-runner-sim-bytes", p->seed, label, NULL, 0, ctr++, blk);
		memcpy(out + off, blk, take);
		off += take;
	}
	return 0;
}

static int p256_from_priv(const BIGNUM *d, EVP_PKEY **out, struct tdxr_err *err)
{
	EC_GROUP *g = NULL;
	EC_POINT *pub = NULL;
	BN_CTX *bn = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pkey = NULL;
	uint8_t pubo[65];
	int rc = TDXR_ERROR;

	if ((g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)) == NULL ||
	    (pub = EC_POINT_new(g)) == NULL || (bn = BN_CTX_new()) == NULL)
		goto out;
	if (!EC_POINT_mul(g, pub, d, NULL, NULL, bn) ||
	    EC_POINT_point2oct(g, pub, POINT_CONVERSION_UNCOMPRESSED, pubo, sizeof(pubo), bn) != sizeof(pubo))
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pubo, sizeof(pubo)) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto out;
	if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
		goto out;
	*out = pkey;
	pkey = NULL;
	rc = 0;
out:
	if (rc)
		tdxr_err_set(err, TDXR_ERROR, "sim: building a P-256 key from a derived scalar failed");
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_CTX_free(bn);
	EC_POINT_free(pub);
	EC_GROUP_free(g);
	return rc;
}

int sim__key_new(const struct sim_pki *p, const char *label, const uint8_t *extra, size_t extra_len,
                 EVP_PKEY **out, struct tdxr_err *err)
{
	EC_GROUP *g = NULL;
	BIGNUM *d = NULL;
	uint8_t blk[32];
	int rc = TDXR_ERROR;

	*out = NULL;
	if (!p->deterministic) {
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		if (*out == NULL)
			return tdxr_err_set(err, TDXR_ERROR, "sim: P-256 key generation failed");
		return 0;
	}
	if ((g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)) == NULL || (d = BN_new()) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t ctr = 0; ctr < 64; ctr++) {
		derive_block("tdx-runner-sim-key", p->seed, label, extra, extra_len, ctr, blk);
		if (BN_bin2bn(blk, sizeof(blk), d) == NULL)
			break;
		if (!BN_is_zero(d) && BN_cmp(d, EC_GROUP_get0_order(g)) < 0) {
			rc = p256_from_priv(d, out, err);
			goto out;
		}
	}
	rc = tdxr_err_set(err, TDXR_ERROR, "sim: no valid P-256 scalar derived for '%s'", label);
out:
	OPENSSL_cleanse(blk, sizeof(blk));
	BN_clear_free(d);
	EC_GROUP_free(g);
	return rc;
}

static int sig_from_der(const uint8_t *der, size_t len, uint8_t sig[64])
{
	const unsigned char *q = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)len);
	const BIGNUM *r = NULL, *s = NULL;
	int ok;

	if (es == NULL)
		return -1;
	ECDSA_SIG_get0(es, &r, &s);
	ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
	ECDSA_SIG_free(es);
	return ok ? 0 : -1;
}

int sim__sig_to_der(const uint8_t sig[64], uint8_t **der, size_t *len, struct tdxr_err *err)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	unsigned char *buf = NULL;
	int n, rc = TDXR_ENOMEM;

	*der = NULL;
	*len = 0;
	if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s))
		goto out;
	r = s = NULL; /* owned by es */
	n = i2d_ECDSA_SIG(es, &buf);
	if (n <= 0)
		goto out;
	*der = malloc((size_t)n);
	if (*der == NULL)
		goto out;
	memcpy(*der, buf, (size_t)n);
	*len = (size_t)n;
	rc = 0;
out:
	if (rc)
		tdxr_err_set(err, rc, "sim: encoding an ECDSA signature failed");
	OPENSSL_free(buf);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return rc;
}

static int sign_fresh(EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t sig[64], struct tdxr_err *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[80];
	size_t dlen = sizeof(der);
	int rc = TDXR_ERROR;

	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, der, &dlen, msg, len) != 1 || sig_from_der(der, dlen, sig) != 0)
		goto out;
	rc = 0;
out:
	if (rc)
		tdxr_err_set(err, rc, "sim: ECDSA signing failed");
	EVP_MD_CTX_free(md);
	return rc;
}

/* Textbook ECDSA with a nonce from HMAC-SHA256(d, H(m) || ctr). */
static int sign_deterministic(EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t sig[64],
                              struct tdxr_err *err)
{
	EC_GROUP *g = NULL;
	EC_POINT *R = NULL;
	BN_CTX *bn = NULL;
	BIGNUM *d = NULL, *k = NULL, *e = NULL, *x = NULL, *r = NULL, *s = NULL, *kinv = NULL;
	const BIGNUM *n;
	uint8_t h[32], dbin[32], kin[36], kbin[32];
	unsigned int klen = 0;
	int rc = TDXR_ERROR;

	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 || BN_bn2binpad(d, dbin, 32) != 32)
		goto out;
	if ((g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)) == NULL || (R = EC_POINT_new(g)) == NULL ||
	    (bn = BN_CTX_new()) == NULL || (k = BN_new()) == NULL || (x = BN_new()) == NULL ||
	    (r = BN_new()) == NULL || (s = BN_new()) == NULL)
		goto out;
	n = EC_GROUP_get0_order(g);
	SHA256(msg, len, h);
	if ((e = BN_bin2bn(h, 32, NULL)) == NULL)
		goto out;
	memcpy(kin, h, 32);
	for (uint32_t ctr = 0; ctr < 64; ctr++) {
		kin[32] = (uint8_t)ctr;
		kin[33] = (uint8_t)(ctr >> 8);
		kin[34] = kin[35] = 0;
		if (HMAC(EVP_sha256(), dbin, 32, kin, sizeof(kin), kbin, &klen) == NULL || klen != 32 ||
		    BN_bin2bn(kbin, 32, k) == NULL)
			goto out;
		if (BN_is_zero(k) || BN_cmp(k, n) >= 0)
			continue;
		if (!EC_POINT_mul(g, R, k, NULL, NULL, bn) ||
		    !EC_POINT_get_affine_coordinates(g, R, x, NULL, bn) || !BN_nnmod(r, x, n, bn))
			goto out;
		if (BN_is_zero(r))
			continue;
		BN_free(kinv);
		if ((kinv = BN_mod_inverse(NULL, k, n, bn)) == NULL)
			goto out;
		/* s = k^-1 (e + r d) mod n */
		if (!BN_mod_mul(s, r, d, n, bn) || !BN_mod_add(s, s, e, n, bn) ||
		    !BN_mod_mul(s, s, kinv, n, bn))
			goto out;
		if (BN_is_zero(s))
			continue;
		if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
			goto out;
		rc = 0;
		break;
	}
out:
	if (rc)
		tdxr_err_set(err, rc, "sim: deterministic ECDSA signing failed");
	OPENSSL_cleanse(dbin, sizeof(dbin));
	OPENSSL_cleanse(kbin, sizeof(kbin));
	BN_clear_free(d);
	BN_clear_free(k);
	BN_clear_free(kinv);
	BN_free(e);
	BN_free(x);
	BN_free(r);
	BN_free(s);
	BN_CTX_free(bn);
	EC_POINT_free(R);
	EC_GROUP_free(g);
	return rc;
}

int sim__sign(const struct sim_pki *p, EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t sig[64],
              struct tdxr_err *err)
{
	if (p->deterministic)
		return sign_deterministic(key, msg, len, sig, err);
	return sign_fresh(key, msg, len, sig, err);
}

int sim__pub_raw(EVP_PKEY *key, uint8_t xy[64], struct tdxr_err *err)
{
	uint8_t buf[65];
	size_t n = 0;

	if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &n) != 1 ||
	    n != sizeof(buf) || buf[0] != 0x04) {
		/* keys made by keygen may carry a compressed encoding preference */
		if (EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
		                                   "uncompressed") != 1 ||
		    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &n) !=
		        1 ||
		    n != sizeof(buf) || buf[0] != 0x04)
			return tdxr_err_set(err, TDXR_ERROR, "sim: reading the P-256 public key failed");
	}
	memcpy(xy, buf + 1, 64);
	return 0;
}
