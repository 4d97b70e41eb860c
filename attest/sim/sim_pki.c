/*
 * sim_pki.c - the simulated SGX PKI: root CA, PCK Platform CA, PCK leaf with
 * the Intel SGX extension, TCB Signing certificate, and CRLs.
 *
 * Certificates follow Intel's profile (X.509 v3, ECDSA-P256-SHA256, 20-byte
 * serials, AKI / CRL distribution point / SKI / critical key usage / critical
 * basic constraints; pathlen 1 on the root and 0 on the Platform CA; leaves
 * CA:FALSE with digitalSignature+nonRepudiation). The SGX extension is the
 * SEQUENCE of SEQUENCE{OID, value} that Intel's PCK Certificate spec defines,
 * including PlatformInstanceID (.6) and Configuration (.7) because the leaf is
 * issued by a Platform CA. Every signature goes through sim__sign so that the
 * deterministic mode covers certificates and CRLs too: the TBS is signed and
 * the outer SEQUENCE{tbs, algorithm, BIT STRING} is assembled here.
 */
#include "attest/sim/sim_int.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define DAY 86400
#define YEAR (365 * DAY)
#define SIM_CAP_DER (64u * 1024u)
#define SIM_ROOT_CRL_URL "https://tdx-runner.invalid/sim/IntelSGXRootCA-simulated.der"
#define SIM_PCK_CRL_URL "https://tdx-runner.invalid/sim/pckcrl?ca=platform&encoding=der"

const uint8_t SIM_DEFAULT_CPU_SVN[16] = { 3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0 };
const uint8_t SIM_DEFAULT_TEE_TCB_SVN[16] = { 6, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
const uint8_t SIM_DEFAULT_FMSPC[6] = { 0x90, 0xc0, 0x6f, 0x00, 0x00, 0x00 };

/* ecdsa-with-SHA256 AlgorithmIdentifier */
static const uint8_t ALG_ECDSA_SHA256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
	                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };

static const char *const cert_label[SIM_CERT_COUNT] = { "root", "platform-ca", "pck", "tcb-signing" };
static const char *const default_cn[SIM_CERT_COUNT] = { SIM_ROOT_CN, SIM_PLATFORM_CA_CN, SIM_PCK_CN,
	                                                SIM_TCB_SIGNING_CN };

void sim_pki_opts_init(struct sim_pki_opts *o, int64_t now)
{
	memset(o, 0, sizeof(*o));
	o->now = now;
	memcpy(o->cpu_svn, SIM_DEFAULT_CPU_SVN, 16);
	o->pce_svn = SIM_DEFAULT_PCE_SVN;
	memcpy(o->fmspc, SIM_DEFAULT_FMSPC, 6);
	o->sgx_type = 1; /* Scalable, as on TDX platforms */
	for (size_t i = 0; i < 16; i++) {
		o->ppid[i] = (uint8_t)(0xa0 + i);
		o->platform_instance_id[i] = (uint8_t)(0x50 + i);
	}
	o->dynamic_platform = o->cached_keys = o->smt_enabled = 1;
}

void sim_crl_opts_init(struct sim_crl_opts *o)
{
	memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------ signing glue */

/* SEQUENCE{tbs, ecdsa-with-SHA256, BIT STRING{DER(r, s)}} into a malloc'd buffer. */
static int sign_tbs(const struct sim_pki *p, EVP_PKEY *key, const uint8_t *tbs, size_t tbs_len, int corrupt,
                    uint8_t **der, size_t *der_len, struct tdxr_err *err)
{
	struct tdxr_buf b;
	uint8_t sig[64], *sder = NULL;
	size_t slen = 0, bs;
	int rc;

	tdxr_buf_init(&b, SIM_CAP_DER);
	if ((rc = sim__sign(p, key, tbs, tbs_len, sig, err)))
		goto out;
	if (corrupt)
		sig[63] ^= 0x01;
	if ((rc = sim__sig_to_der(sig, &sder, &slen, err)))
		goto out;
	if ((rc = tdxr_buf_append(&b, tbs, tbs_len, err)) ||
	    (rc = tdxr_buf_append(&b, ALG_ECDSA_SHA256, sizeof(ALG_ECDSA_SHA256), err)))
		goto out;
	bs = b.len;
	if ((rc = tdxr_buf_append(&b, "", 1, err)) || /* BIT STRING: 0 unused bits */
	    (rc = tdxr_buf_append(&b, sder, slen, err)) || (rc = sim__der_wrap(&b, bs, 0x03, err)) ||
	    (rc = sim__der_wrap(&b, 0, 0x30, err)))
		goto out;
	*der = tdxr_buf_steal(&b, der_len);
out:
	free(sder);
	tdxr_buf_dispose(&b);
	return rc;
}

static int cert_finish(const struct sim_pki *p, X509 *x, EVP_PKEY *issuer_key, int corrupt,
                       struct sim_certobj *c, struct tdxr_err *err)
{
	unsigned char *tbs = NULL;
	const unsigned char *q;
	int n, rc;

	/* X509_sign fills both AlgorithmIdentifiers; its signature is then replaced */
	if (X509_sign(x, issuer_key, EVP_sha256()) <= 0 || (n = i2d_re_X509_tbs(x, &tbs)) <= 0) {
		rc = tdxr_err_set(err, TDXR_ERROR, "sim: encoding a certificate failed");
		goto out;
	}
	if ((rc = sign_tbs(p, issuer_key, tbs, (size_t)n, corrupt, &c->der, &c->der_len, err)))
		goto out;
	q = c->der;
	c->x509 = d2i_X509(NULL, &q, (long)c->der_len);
	if (c->x509 == NULL || q != c->der + c->der_len)
		rc = tdxr_err_set(err, TDXR_ERROR, "sim: re-reading a signed certificate failed");
out:
	OPENSSL_free(tbs);
	return rc;
}

/* ---------------------------------------------------------- SGX extension */

static int sgx_pair_begin(struct tdxr_buf *b, size_t *start, unsigned a1, unsigned a2, struct tdxr_err *err)
{
	*start = b->len;
	return sim__der_sgx_oid(b, a1, a2, err);
}

static int sgx_ext_der(const struct sim_pki_opts *o, struct tdxr_buf *b, struct tdxr_err *err)
{
	size_t s, s2, s3;
	int rc;

	/* PPID */
	if ((rc = sgx_pair_begin(b, &s, 1, 0, err)) || (rc = sim__der_tlv(b, 0x04, o->ppid, 16, err)) ||
	    (rc = sim__der_wrap(b, s, 0x30, err)))
		return rc;
	/* TCB: components 1..16, PCESVN, CPUSVN */
	if ((rc = sgx_pair_begin(b, &s, 2, 0, err)))
		return rc;
	s2 = b->len;
	for (unsigned i = 1; i <= 16; i++) {
		if ((rc = sgx_pair_begin(b, &s3, 2, i, err)) ||
		    (rc = sim__der_uint(b, 0x02, o->cpu_svn[i - 1], err)) ||
		    (rc = sim__der_wrap(b, s3, 0x30, err)))
			return rc;
	}
	if ((rc = sgx_pair_begin(b, &s3, 2, 17, err)) || (rc = sim__der_uint(b, 0x02, o->pce_svn, err)) ||
	    (rc = sim__der_wrap(b, s3, 0x30, err)) || (rc = sgx_pair_begin(b, &s3, 2, 18, err)) ||
	    (rc = sim__der_tlv(b, 0x04, o->cpu_svn, 16, err)) || (rc = sim__der_wrap(b, s3, 0x30, err)) ||
	    (rc = sim__der_wrap(b, s2, 0x30, err)) || (rc = sim__der_wrap(b, s, 0x30, err)))
		return rc;
	/* PCE-ID, FMSPC, SGX Type, PlatformInstanceID */
	if ((rc = sgx_pair_begin(b, &s, 3, 0, err)) || (rc = sim__der_tlv(b, 0x04, o->pce_id, 2, err)) ||
	    (rc = sim__der_wrap(b, s, 0x30, err)) || (rc = sgx_pair_begin(b, &s, 4, 0, err)) ||
	    (rc = sim__der_tlv(b, 0x04, o->fmspc, 6, err)) || (rc = sim__der_wrap(b, s, 0x30, err)) ||
	    (rc = sgx_pair_begin(b, &s, 5, 0, err)) ||
	    (rc = sim__der_uint(b, 0x0a, (uint32_t)o->sgx_type, err)) ||
	    (rc = sim__der_wrap(b, s, 0x30, err)) || (rc = sgx_pair_begin(b, &s, 6, 0, err)) ||
	    (rc = sim__der_tlv(b, 0x04, o->platform_instance_id, 16, err)) ||
	    (rc = sim__der_wrap(b, s, 0x30, err)))
		return rc;
	/* Configuration: dynamicPlatform, cachedKeys, SMTEnabled */
	if ((rc = sgx_pair_begin(b, &s, 7, 0, err)))
		return rc;
	s2 = b->len;
	for (unsigned i = 1; i <= 3; i++) {
		int v = i == 1 ? o->dynamic_platform : i == 2 ? o->cached_keys : o->smt_enabled;
		uint8_t bv = v ? 0xff : 0x00;

		if ((rc = sgx_pair_begin(b, &s3, 7, i, err)) || (rc = sim__der_tlv(b, 0x01, &bv, 1, err)) ||
		    (rc = sim__der_wrap(b, s3, 0x30, err)))
			return rc;
	}
	if ((rc = sim__der_wrap(b, s2, 0x30, err)) || (rc = sim__der_wrap(b, s, 0x30, err)))
		return rc;
	return sim__der_wrap(b, 0, 0x30, err);
}

static int add_sgx_ext(X509 *x, const struct sim_pki_opts *o, struct tdxr_err *err)
{
	struct tdxr_buf b;
	ASN1_OBJECT *obj = NULL;
	ASN1_OCTET_STRING *os = NULL;
	X509_EXTENSION *ext = NULL;
	int rc;

	tdxr_buf_init(&b, SIM_CAP_DER);
	if ((rc = sgx_ext_der(o, &b, err)))
		goto out;
	rc = TDXR_ERROR;
	if ((obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1)) == NULL ||
	    (os = ASN1_OCTET_STRING_new()) == NULL || !ASN1_OCTET_STRING_set(os, b.data, (int)b.len) ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os)) == NULL || !X509_add_ext(x, ext, -1)) {
		tdxr_err_set(err, rc, "sim: adding the SGX extension failed");
		goto out;
	}
	rc = 0;
out:
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
	tdxr_buf_dispose(&b);
	return rc;
}

/* ------------------------------------------------------------ certificates */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, int pos)
{
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
	int ok;

	if (ext == NULL)
		return 0;
	ok = X509_add_ext(x, ext, pos);
	X509_EXTENSION_free(ext);
	return ok;
}

static ASN1_INTEGER *serial_new(const struct sim_pki *p, const char *label, struct tdxr_err *err)
{
	char lab[64];
	uint8_t sn[20];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;

	snprintf(lab, sizeof(lab), "serial:%s", label);
	if (sim__bytes(p, lab, sn, sizeof(sn), err))
		return NULL;
	sn[0] = (uint8_t)((sn[0] & 0x7f) | 0x01); /* positive, always 20 bytes */
	if ((bn = BN_bin2bn(sn, sizeof(sn), NULL)) != NULL)
		ai = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	if (ai == NULL)
		tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	return ai;
}

static int set_time(X509 *x, int64_t nb, int64_t na)
{
	ASN1_TIME *a = ASN1_TIME_set(NULL, (time_t)nb), *b = ASN1_TIME_set(NULL, (time_t)na);
	int ok = a && b && X509_set1_notBefore(x, a) && X509_set1_notAfter(x, b);

	ASN1_TIME_free(a);
	ASN1_TIME_free(b);
	return ok;
}

static X509_NAME *name_new(const char *cn)
{
	X509_NAME *n = X509_NAME_new();

	if (n == NULL ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)SIM_ORG, -1, -1, 0)) {
		X509_NAME_free(n);
		return NULL;
	}
	return n;
}

static void default_validity(enum sim_cert c, int64_t now, int64_t *nb, int64_t *na)
{
	switch (c) {
	case SIM_CERT_ROOT:
		*nb = now - YEAR;
		*na = now + 20 * (int64_t)YEAR;
		break;
	case SIM_CERT_PLATFORM_CA:
		*nb = now - 180 * DAY;
		*na = now + 10 * (int64_t)YEAR;
		break;
	default:
		*nb = now - 30 * DAY;
		*na = now + 7 * (int64_t)YEAR;
		break;
	}
}

static int cert_make(struct sim_pki *p, const struct sim_pki_opts *o, enum sim_cert which,
                     struct tdxr_err *err)
{
	struct sim_certobj *c = &p->cert[which];
	enum sim_cert issuer = which == SIM_CERT_ROOT  ? SIM_CERT_ROOT
	                       : which == SIM_CERT_PCK ? SIM_CERT_PLATFORM_CA
	                                               : SIM_CERT_ROOT;
	const char *cn = o->cn[which] ? o->cn[which] : default_cn[which];
	X509 *x = NULL, *ix;
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	X509V3_CTX ctx;
	int64_t nb, na;
	int ca = which == SIM_CERT_ROOT || which == SIM_CERT_PLATFORM_CA;
	int rc;
	const char *bc, *ku, *dp;

	if ((rc = sim__key_new(p, cert_label[which], NULL, 0, &c->key, err)))
		return rc;
	default_validity(which, p->now, &nb, &na);
	if (o->validity[which].not_before)
		nb = o->validity[which].not_before;
	if (o->validity[which].not_after)
		na = o->validity[which].not_after;
	if ((sn = serial_new(p, cert_label[which], err)) == NULL)
		return TDXR_ERROR;
	rc = TDXR_ERROR;
	if ((x = X509_new()) == NULL || (name = name_new(cn)) == NULL ||
	    !X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, sn) || !set_time(x, nb, na) ||
	    !X509_set_subject_name(x, name) || !X509_set_pubkey(x, c->key))
		goto fail;
	ix = which == SIM_CERT_ROOT ? x : p->cert[issuer].x509;
	if (!X509_set_issuer_name(x, X509_get_subject_name(ix)))
		goto fail;

	if (which == SIM_CERT_ROOT)
		bc = "critical,CA:TRUE,pathlen:1";
	else if (which == SIM_CERT_PLATFORM_CA)
		bc = "critical,CA:TRUE,pathlen:0";
	else if ((which == SIM_CERT_PCK && o->pck_is_ca) ||
	         (which == SIM_CERT_TCB_SIGNING && o->tcb_signing_is_ca))
		bc = "critical,CA:TRUE";
	else
		bc = "critical,CA:FALSE";
	ku = ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,nonRepudiation";
	if (which == SIM_CERT_PCK && o->pck_is_ca == 1)
		ku = "critical,digitalSignature,nonRepudiation,keyCertSign,cRLSign";
	dp = which == SIM_CERT_PCK ? "URI:" SIM_PCK_CRL_URL : "URI:" SIM_ROOT_CRL_URL;

	X509V3_set_ctx(&ctx, ix, x, NULL, NULL, 0);
	/* Intel's order: AKI, CRL DP, SKI, key usage, basic constraints, SGX */
	if (!add_ext(x, &ctx, NID_crl_distribution_points, dp, -1) ||
	    !add_ext(x, &ctx, NID_subject_key_identifier, "hash", -1) ||
	    !add_ext(x, &ctx, NID_key_usage, ku, -1) || !add_ext(x, &ctx, NID_basic_constraints, bc, -1) ||
	    !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", 0))
		goto fail;
	if (which == SIM_CERT_PCK && !o->pck_omit_sgx_ext && (rc = add_sgx_ext(x, o, err)))
		goto out;
	rc = cert_finish(p, x, p->cert[issuer].key, (o->corrupt_sig & SIM_CERT_BIT(which)) != 0, c, err);
	goto out;
fail:
	rc = tdxr_err_set(err, TDXR_ERROR, "sim: building the %s certificate failed", cert_label[which]);
out:
	ASN1_INTEGER_free(sn);
	X509_NAME_free(name);
	X509_free(x);
	return rc;
}

int sim_pki_new(const struct sim_pki_opts *o, struct sim_pki **out, struct tdxr_err *err)
{
	struct sim_pki *p;
	int rc;

	*out = NULL;
	if (o->sgx_type < 0 || o->sgx_type > 255)
		return tdxr_err_set(err, TDXR_EINVAL, "sim: sgx_type %d is out of range", o->sgx_type);
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	p->now = o->now;
	p->deterministic = o->deterministic;
	p->seed = o->seed;
	memcpy(p->fmspc, o->fmspc, 6);
	memcpy(p->pce_id, o->pce_id, 2);
	memcpy(p->cpu_svn, o->cpu_svn, 16);
	p->pce_svn = o->pce_svn;
	if ((rc = cert_make(p, o, SIM_CERT_ROOT, err)) || (rc = cert_make(p, o, SIM_CERT_PLATFORM_CA, err)) ||
	    (rc = cert_make(p, o, SIM_CERT_PCK, err)) || (rc = cert_make(p, o, SIM_CERT_TCB_SIGNING, err))) {
		sim_pki_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void sim_pki_free(struct sim_pki *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < SIM_CERT_COUNT; i++) {
		EVP_PKEY_free(p->cert[i].key);
		X509_free(p->cert[i].x509);
		free(p->cert[i].der);
	}
	free(p);
}

const uint8_t *sim_pki_cert_der(const struct sim_pki *p, enum sim_cert which, size_t *len)
{
	*len = p->cert[which].der_len;
	return p->cert[which].der;
}

int sim__pem_append(struct tdxr_buf *b, const struct sim_certobj *c, struct tdxr_err *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL;
	long n;
	int rc = TDXR_ERROR;

	if (bio == NULL || !PEM_write_bio_X509(bio, c->x509)) {
		tdxr_err_set(err, rc, "sim: PEM encoding failed");
		goto out;
	}
	n = BIO_get_mem_data(bio, &data);
	rc = n > 0 ? tdxr_buf_append(b, data, (size_t)n, err)
	           : tdxr_err_set(err, TDXR_ERROR, "sim: empty PEM");
out:
	BIO_free(bio);
	return rc;
}

int sim_pki_cert_pem(const struct sim_pki *p, enum sim_cert which, char **out, struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc;

	*out = NULL;
	tdxr_buf_init(&b, SIM_CAP_DER);
	if ((rc = sim__pem_append(&b, &p->cert[which], err)) == 0)
		*out = (char *)tdxr_buf_steal(&b, NULL);
	tdxr_buf_dispose(&b);
	return rc;
}

int sim_pki_pck_chain_pem(const struct sim_pki *p, char **out, struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc;

	*out = NULL;
	tdxr_buf_init(&b, SIM_CAP_DER);
	if ((rc = sim__pem_append(&b, &p->cert[SIM_CERT_PCK], err)) ||
	    (rc = sim__pem_append(&b, &p->cert[SIM_CERT_PLATFORM_CA], err)) ||
	    (rc = sim__pem_append(&b, &p->cert[SIM_CERT_ROOT], err)))
		goto out;
	*out = (char *)tdxr_buf_steal(&b, NULL);
out:
	tdxr_buf_dispose(&b);
	return rc;
}

void sim_pki_cert_serial(const struct sim_pki *p, enum sim_cert which, char out[41])
{
	const ASN1_INTEGER *ai = X509_get0_serialNumber(p->cert[which].x509);
	BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
	uint8_t buf[20];
	int n = bn ? BN_num_bytes(bn) : 0;

	out[0] = '\0';
	if (bn && n > 0 && n <= 20 && BN_bn2bin(bn, buf) == n)
		tdxr_hex_encode(buf, (size_t)n, out);
	BN_free(bn);
}

/* -------------------------------------------------------------------- CRLs */

static int crl_add_serial(X509_CRL *crl, const ASN1_INTEGER *sn, int64_t when)
{
	X509_REVOKED *r = X509_REVOKED_new();
	ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)when);
	ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
	int ok = r && t && reason && X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)sn) &&
	         X509_REVOKED_set_revocationDate(r, t) &&
	         ASN1_ENUMERATED_set(reason, 1) && /* keyCompromise */
	         X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) && X509_CRL_add0_revoked(crl, r);

	if (ok)
		r = NULL; /* owned by crl */
	X509_REVOKED_free(r);
	ASN1_TIME_free(t);
	ASN1_ENUMERATED_free(reason);
	return ok;
}

int sim_pki_crl(const struct sim_pki *p, enum sim_cert issuer, const struct sim_crl_opts *o, uint8_t **der,
                size_t *len, struct tdxr_err *err)
{
	const struct sim_certobj *ic = &p->cert[issuer];
	X509_CRL *crl = NULL;
	ASN1_TIME *tu = NULL, *tn = NULL;
	ASN1_INTEGER *num = NULL, *extra = NULL;
	BIGNUM *bn = NULL;
	X509V3_CTX ctx;
	X509_EXTENSION *aki = NULL;
	unsigned char *tbs = NULL;
	int64_t this_update = o->this_update ? o->this_update : p->now - DAY;
	int64_t next_update = o->next_update ? o->next_update : p->now + 29 * DAY;
	int n, rc = TDXR_ERROR;

	*der = NULL;
	*len = 0;
	if (issuer != SIM_CERT_ROOT && issuer != SIM_CERT_PLATFORM_CA)
		return tdxr_err_set(err, TDXR_EINVAL, "sim: only the root and the Platform CA issue CRLs");
	if ((crl = X509_CRL_new()) == NULL || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ic->x509)) ||
	    (tu = ASN1_TIME_set(NULL, (time_t)this_update)) == NULL ||
	    (tn = ASN1_TIME_set(NULL, (time_t)next_update)) == NULL || !X509_CRL_set1_lastUpdate(crl, tu) ||
	    !X509_CRL_set1_nextUpdate(crl, tn))
		goto fail;
	for (size_t i = 0; i < SIM_CERT_COUNT; i++) {
		if ((o->revoke & SIM_CERT_BIT(i)) &&
		    !crl_add_serial(crl, X509_get0_serialNumber(p->cert[i].x509), this_update))
			goto fail;
	}
	for (size_t i = 0; o->revoked_serials && o->revoked_serials[i]; i++) {
		BN_free(bn);
		bn = NULL;
		if (!BN_hex2bn(&bn, o->revoked_serials[i])) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "sim: revoked serial '%s' is not hex",
			                  o->revoked_serials[i]);
			goto out;
		}
		ASN1_INTEGER_free(extra);
		if ((extra = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
		    !crl_add_serial(crl, extra, this_update))
			goto fail;
	}
	/* CRL number 1 and the issuer's key id, as Intel's CRLs carry */
	X509V3_set_ctx(&ctx, ic->x509, NULL, NULL, crl, 0);
	if ((num = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set(num, 1) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) ||
	    (aki = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always")) == NULL ||
	    !X509_CRL_add_ext(crl, aki, -1) || !X509_CRL_sort(crl))
		goto fail;
	if (X509_CRL_sign(crl, ic->key, EVP_sha256()) <= 0 || (n = i2d_re_X509_CRL_tbs(crl, &tbs)) <= 0)
		goto fail;
	rc = sign_tbs(p, ic->key, tbs, (size_t)n, o->corrupt_sig, der, len, err);
	goto out;
fail:
	rc = tdxr_err_set(err, TDXR_ERROR, "sim: building the %s CRL failed", cert_label[issuer]);
out:
	OPENSSL_free(tbs);
	X509_EXTENSION_free(aki);
	ASN1_INTEGER_free(num);
	ASN1_INTEGER_free(extra);
	BN_free(bn);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(tn);
	X509_CRL_free(crl);
	return rc;
}
