/*
 * bench_verify.c - times DCAP quote verification with cached collateral.
 *
 *   bench_verify [--mode verify|verify-new|verify-cold|floor|floor-full] [-n N] [--batches B]
 *                [--warmup W] QUOTE COLLATERAL NOW
 *
 * "verify" loads the quote, parses the collateral and verifies it once
 * (attest_trust_new: "cached collateral", as the agent keeps it per FMSPC), then
 * runs attest_verify() N times on the quote (decoded certificates are cached
 * across calls, as in the agent). "verify-new" empties that certificate cache
 * before every call: a platform seen for the first time. "verify-cold" re-verifies the
 * collateral on every call (no attest_trust). "floor" runs only the ECDSA P-256
 * checks no per-quote verification can skip, straight through OpenSSL with every
 * key and signature decoded beforehand: quote signature (attestation key), QE
 * report signature (PCK leaf), PCK leaf and PCK intermediate certificate
 * signatures. "floor-full" adds what a verifier without cached collateral must
 * also check: TCB info and QE identity signatures, their signing certificates and
 * both CRL signatures.
 *
 * Prints one JSON line: mode, n, ns_per_op (median of B equal batches), min and
 * mean, peak RSS (VmHWM), the verdict's status for "verify". Exit 0 when
 * measured, 1 when the input did not verify (nothing timed), 2 on usage/IO.
 * Inputs are the project's shared test vectors; timings are never pass/fail.
 */
#include "attest/attest.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_MAX_CHAIN 8
#define BENCH_MAX_CHECKS 12
#define BENCH_MAX_BATCHES 101

enum bench_mode { BENCH_VERIFY, BENCH_VERIFY_NEW, BENCH_VERIFY_COLD, BENCH_FLOOR, BENCH_FLOOR_FULL };

struct bench_opts {
	enum bench_mode mode;
	uint64_t n;
	uint64_t batches;
	uint64_t warmup;
	int warmup_set;
	const char *quote_path;
	const char *collateral_path;
	int64_t now;
};

/* Everything decoded once; the timed loop only reads it. */
struct bench_ctx {
	uint8_t *quote; /* binary */
	size_t quote_len;
	struct attest_collateral *coll;
	struct attest_policy policy;
	struct attest_quote *q;     /* floor modes */
	struct attest_trust *trust; /* "verify": collateral verified once */
	int uncached;               /* "verify-new": empty the certificate cache before each op */
};

/* ================================================================ floor checks */

enum check_kind { CHECK_DATA, CHECK_CERT, CHECK_CRL };

struct floor_check {
	const char *name;
	enum check_kind kind;
	EVP_PKEY *key; /* borrowed or owned (see owned_key) */
	int owned_key;
	const uint8_t *data; /* CHECK_DATA: signed bytes (borrowed) */
	size_t data_len;
	uint8_t *sig_der; /* CHECK_DATA: owned DER ECDSA signature */
	size_t sig_der_len;
	X509 *cert;    /* CHECK_CERT: borrowed */
	X509_CRL *crl; /* CHECK_CRL: owned */
};

struct floor_set {
	struct floor_check c[BENCH_MAX_CHECKS];
	size_t n;
	X509 *pck[BENCH_MAX_CHAIN], *tcb[BENCH_MAX_CHAIN], *qeid[BENCH_MAX_CHAIN], *crlc[BENCH_MAX_CHAIN];
	size_t n_pck, n_tcb, n_qeid, n_crlc;
};

static void bench_floor_dispose(struct floor_set *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		if (f->c[i].owned_key)
			EVP_PKEY_free(f->c[i].key);
		OPENSSL_free(f->c[i].sig_der);
		X509_CRL_free(f->c[i].crl);
	}
	for (i = 0; i < f->n_pck; i++)
		X509_free(f->pck[i]);
	for (i = 0; i < f->n_tcb; i++)
		X509_free(f->tcb[i]);
	for (i = 0; i < f->n_qeid; i++)
		X509_free(f->qeid[i]);
	for (i = 0; i < f->n_crlc; i++)
		X509_free(f->crlc[i]);
	memset(f, 0, sizeof(*f));
}

static int bench_pem_chain_load(const char *pem, X509 **out, size_t *n, struct tdxr_err *err)
{
	BIO *bio = NULL;
	X509 *x;
	int rc = TDXR_EINVAL;

	*n = 0;
	if (pem == NULL || *pem == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "floor: empty certificate chain");
	bio = BIO_new_mem_buf(pem, -1);
	if (bio == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "floor: out of memory");
	while (*n < BENCH_MAX_CHAIN && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		out[(*n)++] = x;
	if (*n == 0) {
		tdxr_err_set(err, TDXR_EINVAL, "floor: no certificate in chain");
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	return rc;
}

/* r || s (32 + 32 bytes, big-endian) to a DER ECDSA-Sig-Value. */
static int bench_sig_der(const uint8_t raw[64], uint8_t **der, size_t *der_len, struct tdxr_err *err)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL);
	BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
	unsigned char *p = NULL;
	int len;
	int rc = TDXR_ENOMEM;

	*der = NULL;
	*der_len = 0;
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1)
		goto out;
	r = s = NULL; /* owned by sig now */
	len = i2d_ECDSA_SIG(sig, &p);
	if (len <= 0)
		goto out;
	*der = p;
	*der_len = (size_t)len;
	rc = 0;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return rc ? tdxr_err_set(err, rc, "floor: cannot encode signature") : 0;
}

/* Uncompressed P-256 point x || y to an EVP_PKEY. */
static int bench_p256_key(const uint8_t xy[64], EVP_PKEY **out, struct tdxr_err *err)
{
	uint8_t pt[65];
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	int rc = TDXR_EINVAL;

	*out = NULL;
	pt[0] = 0x04;
	memcpy(pt + 1, xy, 64);
	if (bld == NULL || ctx == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		tdxr_err_set(err, TDXR_EINVAL, "floor: attestation key is not a P-256 point");
		goto out;
	}
	rc = 0;
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static struct floor_check *bench_floor_add(struct floor_set *f, const char *name, enum check_kind kind)
{
	struct floor_check *c = &f->c[f->n++];

	memset(c, 0, sizeof(*c));
	c->name = name;
	c->kind = kind;
	return c;
}

static int bench_floor_add_data(struct floor_set *f, const char *name, EVP_PKEY *key, int owned,
                                const uint8_t *data, size_t len, const uint8_t sig[64], struct tdxr_err *err)
{
	struct floor_check *c = bench_floor_add(f, name, CHECK_DATA);

	c->key = key;
	c->owned_key = owned;
	c->data = data;
	c->data_len = len;
	return bench_sig_der(sig, &c->sig_der, &c->sig_der_len, err);
}

static int bench_crl_load(const uint8_t *der, size_t len, X509_CRL **out, struct tdxr_err *err)
{
	const unsigned char *p = der;

	*out = NULL;
	if (der == NULL || len == 0 || len > (size_t)TDXR_CAP_COLLATERAL)
		return tdxr_err_set(err, TDXR_EINVAL, "floor: CRL missing");
	*out = d2i_X509_CRL(NULL, &p, (long)len);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "floor: CRL is not DER");
	return 0;
}

/* One run of every check; the first failure's name goes to *failed. */
static int bench_floor_once(const struct floor_set *f, const char **failed)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		const struct floor_check *c = &f->c[i];
		EVP_MD_CTX *md;
		int ok;

		switch (c->kind) {
		case CHECK_DATA:
			md = EVP_MD_CTX_new();
			ok = md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, c->key) == 1 &&
			     EVP_DigestVerify(md, c->sig_der, c->sig_der_len, c->data, c->data_len) == 1;
			EVP_MD_CTX_free(md);
			break;
		case CHECK_CERT: ok = X509_verify(c->cert, c->key) == 1; break;
		case CHECK_CRL: ok = X509_CRL_verify(c->crl, c->key) == 1; break;
		default: ok = 0; break;
		}
		if (!ok) {
			*failed = c->name;
			return TDXR_EATTEST;
		}
	}
	return 0;
}

static int bench_floor_setup(const struct bench_ctx *b, int full, struct floor_set *f, struct tdxr_err *err)
{
	const struct attest_collateral *c = b->coll;
	const struct attest_quote *q = b->q;
	const char *pck_pem = c->pck_certificate_chain ? c->pck_certificate_chain : q->pck_chain_pem;
	EVP_PKEY *ak = NULL;
	EVP_PKEY *root;
	X509_CRL *crl = NULL;
	struct floor_check *k;
	int rc;

	memset(f, 0, sizeof(*f));
	if ((rc = bench_pem_chain_load(pck_pem, f->pck, &f->n_pck, err)) < 0 ||
	    (rc = bench_pem_chain_load(c->tcb_info_issuer_chain, f->tcb, &f->n_tcb, err)) < 0 ||
	    (rc = bench_pem_chain_load(c->qe_identity_issuer_chain, f->qeid, &f->n_qeid, err)) < 0)
		return rc;
	if (f->n_pck < 2 || f->n_tcb < 2 || f->n_qeid < 2)
		return tdxr_err_set(err, TDXR_EINVAL, "floor: certificate chain too short");
	/* The Intel root ends the TCB signing chain (leaf first). */
	root = X509_get0_pubkey(f->tcb[f->n_tcb - 1]);
	if (root == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "floor: root key unreadable");

	if ((rc = bench_p256_key(q->attest_key, &ak, err)) < 0)
		return rc;
	if ((rc = bench_floor_add_data(f, "quote", ak, 1, q->raw, q->signed_len, q->signature, err)) < 0)
		return rc;
	if ((rc = bench_floor_add_data(f, "qe_report", X509_get0_pubkey(f->pck[0]), 0, q->qe_report_raw,
	                               sizeof(q->qe_report_raw), q->qe_report_sig, err)) < 0)
		return rc;
	k = bench_floor_add(f, "pck_leaf_cert", CHECK_CERT);
	k->cert = f->pck[0];
	k->key = X509_get0_pubkey(f->pck[1]);
	k = bench_floor_add(f, "pck_intermediate_cert", CHECK_CERT);
	k->cert = f->pck[1];
	k->key = f->n_pck > 2 ? X509_get0_pubkey(f->pck[2]) : root;
	if (!full)
		return 0; /* per quote: collateral signatures are checked once per collateral */
	if ((rc = bench_floor_add_data(f, "tcb_info", X509_get0_pubkey(f->tcb[0]), 0,
	                               (const uint8_t *)c->tcb_info, c->tcb_info_len, c->tcb_info_sig, err)) <
	    0)
		return rc;
	if ((rc = bench_floor_add_data(f, "qe_identity", X509_get0_pubkey(f->qeid[0]), 0,
	                               (const uint8_t *)c->qe_identity, c->qe_identity_len,
	                               c->qe_identity_sig, err)) < 0)
		return rc;

	k = bench_floor_add(f, "tcb_signing_cert", CHECK_CERT);
	k->cert = f->tcb[0];
	k->key = root;
	k = bench_floor_add(f, "qe_identity_signing_cert", CHECK_CERT);
	k->cert = f->qeid[0];
	k->key = root;
	if ((rc = bench_pem_chain_load(c->pck_crl_issuer_chain, f->crlc, &f->n_crlc, err)) < 0)
		return rc;
	if ((rc = bench_crl_load(c->pck_crl, c->pck_crl_len, &crl, err)) < 0)
		return rc;
	k = bench_floor_add(f, "pck_crl", CHECK_CRL);
	k->crl = crl;
	k->key = X509_get0_pubkey(f->crlc[0]);
	if ((rc = bench_crl_load(c->root_ca_crl, c->root_ca_crl_len, &crl, err)) < 0)
		return rc;
	k = bench_floor_add(f, "root_ca_crl", CHECK_CRL);
	k->crl = crl;
	k->key = root;
	return 0;
}

/* ==================================================================== timing */

static uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bench_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

struct bench_run {
	const struct bench_ctx *b;
	const struct floor_set *floor;
	int64_t now;
};

/* One timed operation: a full verification, or the floor's signature checks. */
static int bench_op(const struct bench_run *r)
{
	struct attest_input in;
	struct attest_verdict *v = NULL;
	const char *failed = NULL;
	int rc;

	if (r->floor != NULL)
		return bench_floor_once(r->floor, &failed);
	memset(&in, 0, sizeof(in));
	in.quote = r->b->quote;
	in.quote_len = r->b->quote_len;
	in.collateral = r->b->coll;
	in.trust = r->b->trust; /* NULL in verify-cold: every call re-verifies the collateral */
	if (r->b->uncached)
		attest_cert_cache_clear(); /* a platform never seen before: decode every certificate */
	in.now = r->now;
	rc = attest_verify(&in, &r->b->policy, &v, NULL);
	if (rc == 0 && !v->ok)
		rc = TDXR_EATTEST;
	attest_verdict_free(v);
	return rc;
}

/* ==================================================================== main */

static void bench_usage(FILE *o)
{
	fprintf(o, "usage: bench_verify [--mode verify|verify-new|verify-cold|floor|floor-full] [-n N] "
	           "[--batches B]\n"
	           "                    [--warmup W] QUOTE COLLATERAL NOW\n");
}

static int bench_opts_parse(int argc, char **argv, struct bench_opts *o, struct tdxr_err *err)
{
	int i;
	int pos = 0;
	int rc;

	memset(o, 0, sizeof(*o));
	o->mode = BENCH_VERIFY;
	o->n = 1000;
	o->batches = 5;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;

		if (strcmp(a, "--mode") == 0 && has) {
			a = argv[++i];
			if (strcmp(a, "verify") == 0)
				o->mode = BENCH_VERIFY;
			else if (strcmp(a, "verify-new") == 0)
				o->mode = BENCH_VERIFY_NEW;
			else if (strcmp(a, "verify-cold") == 0)
				o->mode = BENCH_VERIFY_COLD;
			else if (strcmp(a, "floor") == 0)
				o->mode = BENCH_FLOOR;
			else if (strcmp(a, "floor-full") == 0)
				o->mode = BENCH_FLOOR_FULL;
			else
				return tdxr_err_set(err, TDXR_EINVAL, "--mode: unknown mode '%s'", a);
		} else if (strcmp(a, "-n") == 0 && has) {
			if ((rc = tdxr_parse_u64(argv[++i], 100000000u, &o->n, err)) < 0)
				return rc;
		} else if (strcmp(a, "--batches") == 0 && has) {
			if ((rc = tdxr_parse_u64(argv[++i], BENCH_MAX_BATCHES, &o->batches, err)) < 0)
				return rc;
		} else if (strcmp(a, "--warmup") == 0 && has) {
			if ((rc = tdxr_parse_u64(argv[++i], 100000000u, &o->warmup, err)) < 0)
				return rc;
			o->warmup_set = 1;
		} else if (a[0] == '-' && a[1] != '\0') {
			return tdxr_err_set(err, TDXR_EINVAL, "unknown option '%s'", a);
		} else if (pos == 0) {
			o->quote_path = a;
			pos++;
		} else if (pos == 1) {
			o->collateral_path = a;
			pos++;
		} else if (pos == 2) {
			if ((rc = tdxr_parse_i64(a, 0, INT64_MAX, &o->now, err)) < 0)
				return rc;
			pos++;
		} else {
			return tdxr_err_set(err, TDXR_EINVAL, "too many arguments");
		}
	}
	if (pos != 3)
		return tdxr_err_set(err, TDXR_EINVAL, "QUOTE COLLATERAL NOW are required");
	if (o->batches == 0 || o->n < o->batches)
		return tdxr_err_set(err, TDXR_EINVAL, "need -n >= --batches >= 1");
	if (!o->warmup_set)
		o->warmup = o->n / 10 ? o->n / 10 : 1;
	return 0;
}

static int bench_ctx_load(const struct bench_opts *o, struct bench_ctx *b, struct tdxr_err *err)
{
	uint8_t *file = NULL;
	size_t len = 0;
	int rc;

	memset(b, 0, sizeof(*b));
	attest_policy_init(&b->policy);
	/* Accept every status but Revoked, as dcap-qvl does: same work, same answer. */
	b->policy.accept_tcb = (ATTEST_TCB_BIT(ATTEST_TCB_REVOKED) - 1u);

	if ((rc = tdxr_file_read(o->quote_path, TDXR_CAP_QUOTE * 2 + 16, &file, &len, err)) < 0)
		goto out;
	if ((rc = attest_quote_load(file, len, &b->quote, &b->quote_len, err)) < 0)
		goto out;
	free(file);
	file = NULL;
	if ((rc = tdxr_file_read(o->collateral_path, TDXR_CAP_COLLATERAL, &file, &len, err)) < 0)
		goto out;
	if ((rc = attest_collateral_parse(file, len, &b->coll, err)) < 0)
		goto out;
	b->uncached = o->mode == BENCH_VERIFY_NEW;
	if ((o->mode == BENCH_VERIFY || o->mode == BENCH_VERIFY_NEW) &&
	    (rc = attest_trust_new(b->coll, NULL, 0, o->now, &b->trust, err)) < 0)
		goto out;
	if (o->mode != BENCH_VERIFY && o->mode != BENCH_VERIFY_NEW && o->mode != BENCH_VERIFY_COLD &&
	    (rc = attest_quote_parse(b->quote, b->quote_len, &b->q, err)) < 0)
		goto out;
	rc = 0;
out:
	free(file);
	return rc;
}

static void bench_ctx_dispose(struct bench_ctx *b)
{
	free(b->quote);
	attest_trust_free(b->trust);
	attest_collateral_free(b->coll);
	attest_quote_free(b->q);
	memset(b, 0, sizeof(*b));
}

static const char *bench_mode_name(enum bench_mode m)
{
	return m == BENCH_VERIFY        ? "verify"
	       : m == BENCH_VERIFY_NEW  ? "verify-new"
	       : m == BENCH_VERIFY_COLD ? "verify-cold"
	       : m == BENCH_FLOOR       ? "floor"
	                                : "floor-full";
}

/*
 * Peak RSS of this program in KiB: VmHWM of the current address space. Not
 * ru_maxrss, which Linux carries across exec and so reports the parent's size
 * when the parent (python in run.sh) was bigger than we are.
 */
static long bench_maxrss_kib(void)
{
	struct rusage ru;
	uint8_t *st = NULL;
	size_t len = 0;
	const char *p;
	char *end = NULL;
	long kib = -1;

	if (tdxr_file_read("/proc/self/status", 64u * 1024u, &st, &len, NULL) == 0 &&
	    (p = strstr((const char *)st, "VmHWM:")) != NULL) {
		unsigned long long v = strtoull(p + 6, &end, 10);

		if (end != p + 6 && v < (unsigned long long)LONG_MAX)
			kib = (long)v;
	}
	free(st);
	if (kib < 0 && getrusage(RUSAGE_SELF, &ru) == 0)
		kib = ru.ru_maxrss;
	return kib;
}

int main(int argc, char **argv)
{
	struct tdxr_err err = { 0 };
	struct bench_opts o;
	struct bench_ctx b;
	struct floor_set floor;
	struct bench_run run;
	struct attest_verdict *first = NULL;
	uint64_t batch_ns[BENCH_MAX_BATCHES];
	uint64_t per, i, k, total = 0, t0;
	const char *failed = NULL;
	json_t *res = NULL;
	char *text = NULL;
	int status = 2;

	memset(&b, 0, sizeof(b));
	memset(&floor, 0, sizeof(floor));
	if (bench_opts_parse(argc, argv, &o, &err) < 0) {
		fprintf(stderr, "bench_verify: %s\n", err.msg);
		bench_usage(stderr);
		return 2;
	}
	if (bench_ctx_load(&o, &b, &err) < 0) {
		fprintf(stderr, "bench_verify: %s\n", err.msg);
		goto out;
	}
	res = json_object();
	if (res == NULL)
		goto out;
	json_object_set_new(res, "tool", json_string("tdx-runner"));
	json_object_set_new(res, "mode", json_string(bench_mode_name(o.mode)));
	json_object_set_new(res, "quote", json_string(o.quote_path));
	json_object_set_new(res, "collateral", json_string(o.collateral_path));
	json_object_set_new(res, "now", json_integer(o.now));

	/* One checked run first: a benchmark of a failing verification means nothing. */
	status = 1;
	memset(&run, 0, sizeof(run));
	run.b = &b;
	run.now = o.now;
	if (o.mode == BENCH_VERIFY || o.mode == BENCH_VERIFY_NEW || o.mode == BENCH_VERIFY_COLD) {
		struct attest_input in;

		memset(&in, 0, sizeof(in));
		in.quote = b.quote;
		in.quote_len = b.quote_len;
		in.collateral = b.coll;
		in.now = o.now;
		if (attest_verify(&in, &b.policy, &first, &err) < 0) {
			json_object_set_new(res, "ok", json_false());
			json_object_set_new(res, "error", json_string(err.msg));
			goto print;
		}
		json_object_set_new(res, "ok", json_boolean(first->ok));
		json_object_set_new(res, "status",
		                    first->have_status ? json_string(attest_tcb_status_name(first->status))
		                                       : json_null());
		json_object_set_new(res, "error", first->ok ? json_null() : json_string(first->error));
		if (!first->ok)
			goto print;
		{
			json_t *adv = json_array();

			for (i = 0; i < first->n_advisory; i++)
				json_array_append_new(adv, json_string(first->advisory_ids[i]));
			json_object_set_new(res, "advisory_ids", adv);
		}
	} else {
		if (bench_floor_setup(&b, o.mode == BENCH_FLOOR_FULL, &floor, &err) < 0) {
			json_object_set_new(res, "ok", json_false());
			json_object_set_new(res, "error", json_string(err.msg));
			goto print;
		}
		if (bench_floor_once(&floor, &failed) < 0) {
			json_object_set_new(res, "ok", json_false());
			json_object_set_new(res, "error", json_string(failed));
			goto print;
		}
		json_object_set_new(res, "ok", json_true());
		json_object_set_new(res, "ecdsa_verifies", json_integer((json_int_t)floor.n));
		run.floor = &floor;
	}

	for (i = 0; i < o.warmup; i++)
		if (bench_op(&run) < 0)
			goto op_failed;
	per = o.n / o.batches;
	for (k = 0; k < o.batches; k++) {
		t0 = bench_now_ns();
		for (i = 0; i < per; i++)
			if (bench_op(&run) < 0)
				goto op_failed;
		batch_ns[k] = bench_now_ns() - t0;
		total += batch_ns[k];
	}
	qsort(batch_ns, (size_t)o.batches, sizeof(batch_ns[0]), bench_u64_cmp);
	json_object_set_new(res, "n", json_integer((json_int_t)(per * o.batches)));
	json_object_set_new(res, "batches", json_integer((json_int_t)o.batches));
	json_object_set_new(res, "ns_per_op", json_real((double)batch_ns[o.batches / 2] / (double)per));
	json_object_set_new(res, "ns_per_op_min", json_real((double)batch_ns[0] / (double)per));
	json_object_set_new(res, "ns_per_op_mean", json_real((double)total / (double)(per * o.batches)));
	status = 0;
	goto print;
op_failed:
	json_object_set_new(res, "ok", json_false());
	json_object_set_new(res, "error", json_string("a timed iteration failed"));
	status = 1;
print:
	json_object_set_new(res, "maxrss_kib", json_integer(bench_maxrss_kib()));
	text = json_dumps(res, JSON_COMPACT);
	if (text != NULL)
		printf("%s\n", text);
	else
		status = 2;
out:
	free(text);
	json_decref(res);
	attest_verdict_free(first);
	bench_floor_dispose(&floor);
	bench_ctx_dispose(&b);
	return status;
}
