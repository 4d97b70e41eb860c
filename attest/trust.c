/*
 * trust.c - collateral verified once, used for many quotes.
 *
 * attest_trust_new runs every check that depends only on the collateral and
 * the root of trust - CRL signatures and windows, the TCB Info and QE Identity
 * issuer chains and signatures over their exact text, their windows - and
 * keeps the parsed results plus an X509_STORE (root + both CRLs) for the
 * per-quote PCK chain check. The store's CRL check is replaced by one that
 * trusts exactly the two CRLs verified here (by pointer), re-checks their
 * window at the verification time and requires the certificate's issuer key
 * to be the key that signed the CRL - so a quote costs no CRL signature
 * verifications. A trust is immutable after creation and may be shared by
 * threads. It records the interval in which every window holds; using it
 * outside that interval fails the "crl" step.
 */
#include "attest/attest.h"

#include "attest/attest_int.h"
#include "common/util.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int trust_idx = -1;
static CRYPTO_ONCE trust_once = CRYPTO_ONCE_STATIC_INIT;

static void trust_idx_init(void)
{
	trust_idx = X509_STORE_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void tstep(struct attest_trust *t, const char *name, enum attest_step_result r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void tstep(struct attest_trust *t, const char *name, enum attest_step_result r, const char *fmt, ...)
{
	struct attest_step *s;
	va_list ap;

	if (t->n_steps >= sizeof(t->steps) / sizeof(t->steps[0]))
		return;
	s = &t->steps[t->n_steps++];
	s->name = name;
	s->result = r;
	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
	va_end(ap);
	if (r == ATTEST_STEP_FAIL)
		t->failed = 1;
}

static int tfail(struct attest_trust *t, const char *name, const struct tdxr_err *e)
{
	tstep(t, name, ATTEST_STEP_FAIL, "%s", e->msg);
	return TDXR_EATTEST;
}

static int64_t asn1_to_unix(const ASN1_TIME *a)
{
	struct tm tm;

	if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
		return -1;
	return (int64_t)timegm(&tm);
}

static void narrow(struct attest_trust *t, int64_t from, int64_t until)
{
	if (from > t->valid_from)
		t->valid_from = from;
	if (until >= 0 && until < t->valid_until)
		t->valid_until = until;
}

static void narrow_chain(struct attest_trust *t, STACK_OF(X509) *chain)
{
	int i;

	for (i = 0; i < sk_X509_num(chain); i++)
		narrow(t, asn1_to_unix(X509_get0_notBefore(sk_X509_value(chain, i))),
		       asn1_to_unix(X509_get0_notAfter(sk_X509_value(chain, i))));
}

static int self_signed(X509 *x)
{
	EVP_PKEY *k = X509_get0_pubkey(x);
	int ok = k && X509_check_issued(x, x) == X509_V_OK && X509_verify(x, k) == 1;

	ERR_clear_error();
	return ok;
}

/* The Intel root: the self-signed certificate pinned by SPKI in any issuer chain. */
static X509 *find_intel_root(const struct attest_collateral *c)
{
	const char *chains[3] = { c->tcb_info_issuer_chain, c->qe_identity_issuer_chain,
		                  c->pck_crl_issuer_chain };
	int i, k;

	for (i = 0; i < 3; i++) {
		STACK_OF(X509) *sk = NULL;
		X509 *found = NULL;

		if (chains[i] == NULL || attest__pem_chain(chains[i], strlen(chains[i]), &sk, NULL))
			continue;
		for (k = 0; k < sk_X509_num(sk) && !found; k++) {
			X509 *x = sk_X509_value(sk, k);
			uint8_t h[32];
			char hx[65];

			if (!self_signed(x) || attest__spki_sha256(x, h))
				continue;
			tdxr_hex_encode(h, 32, hx);
			if (CRYPTO_memcmp(hx, ATTEST_INTEL_ROOT_SPKI_SHA256, 64) == 0) {
				found = x;
				X509_up_ref(found);
			}
		}
		sk_X509_pop_free(sk, X509_free);
		if (found)
			return found;
	}
	return NULL;
}

/* The last certificate of the TCB Info issuer chain, when self-signed. */
static X509 *find_any_root(const struct attest_collateral *c)
{
	STACK_OF(X509) *sk = NULL;
	X509 *x = NULL;

	if (c->tcb_info_issuer_chain &&
	    attest__pem_chain(c->tcb_info_issuer_chain, strlen(c->tcb_info_issuer_chain), &sk, NULL) == 0) {
		x = sk_X509_value(sk, sk_X509_num(sk) - 1);
		if (x && self_signed(x))
			X509_up_ref(x);
		else
			x = NULL;
	}
	sk_X509_pop_free(sk, X509_free);
	return x;
}

static int crl_window(X509_CRL *crl, int64_t now, const char *what, struct tdxr_err *err)
{
	const ASN1_TIME *tu = X509_CRL_get0_lastUpdate(crl), *nu = X509_CRL_get0_nextUpdate(crl);
	time_t tt = (time_t)now;

	if (tu == NULL || X509_cmp_time(tu, &tt) > 0)
		return tdxr_err_set(err, TDXR_EATTEST, "%s is not yet valid (thisUpdate after now)", what);
	if (nu == NULL || X509_cmp_time(nu, &tt) < 0)
		return tdxr_err_set(err, TDXR_EATTEST, "%s has expired (nextUpdate before now)", what);
	return 0;
}

/* X509_STORE check_crl: accept only the CRLs verified in attest_trust_new. */
static int trust_check_crl(X509_STORE_CTX *ctx, X509_CRL *crl)
{
	const struct attest_trust *t = X509_STORE_get_ex_data(X509_STORE_CTX_get0_store(ctx), trust_idx);
	X509 *issuer = X509_STORE_CTX_get0_current_issuer(ctx);
	EVP_PKEY *want = NULL;
	time_t now = X509_VERIFY_PARAM_get_time(X509_STORE_CTX_get0_param(ctx));

	if (t && crl == t->root_crl)
		want = X509_get0_pubkey(t->root);
	else if (t && crl == t->pck_crl)
		want = t->pck_crl_key;
	if (want == NULL || issuer == NULL || EVP_PKEY_eq(X509_get0_pubkey(issuer), want) != 1) {
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CRL_SIGNATURE_FAILURE);
		return 0;
	}
	if (X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &now) > 0) {
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CRL_NOT_YET_VALID);
		return 0;
	}
	if (X509_CRL_get0_nextUpdate(crl) == NULL || X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &now) < 0) {
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CRL_HAS_EXPIRED);
		return 0;
	}
	return 1;
}

static int prepare_crls(struct attest_trust *t, const struct attest_collateral *c)
{
	STACK_OF(X509) *chain = NULL;
	struct tdxr_err e;
	X509_CRL *crls[1];
	int rc;

	tdxr_err_clear(&e);
	if (attest__crl_load(c->root_ca_crl, c->root_ca_crl_len, "root CA CRL", &t->root_crl, &e) ||
	    attest__crl_load(c->pck_crl, c->pck_crl_len, "PCK CRL", &t->pck_crl, &e))
		return tfail(t, "crl", &e);
	if (X509_CRL_verify(t->root_crl, X509_get0_pubkey(t->root)) != 1) {
		ERR_clear_error();
		tdxr_err_set(&e, TDXR_EATTEST, "root CA CRL is not signed by the root CA");
		return tfail(t, "crl", &e);
	}
	if (crl_window(t->root_crl, t->now, "root CA CRL", &e))
		return tfail(t, "crl", &e);
	if (attest__pem_chain(c->pck_crl_issuer_chain, strlen(c->pck_crl_issuer_chain), &chain, &e)) {
		tdxr_err_prefix(&e, "PCK CRL issuer chain");
		return tfail(t, "crl", &e);
	}
	crls[0] = t->root_crl;
	rc = attest__chain_verify(t->root, chain, crls, 1, t->now, 1, "PCK CRL issuer chain", &e);
	if (!rc && X509_CRL_verify(t->pck_crl, X509_get0_pubkey(sk_X509_value(chain, 0))) != 1)
		rc = tdxr_err_set(&e, TDXR_EATTEST, "PCK CRL is not signed by its issuer chain");
	if (!rc)
		rc = crl_window(t->pck_crl, t->now, "PCK CRL", &e);
	if (!rc) {
		t->pck_crl_key = X509_get_pubkey(sk_X509_value(chain, 0));
		narrow_chain(t, chain);
	}
	ERR_clear_error();
	sk_X509_pop_free(chain, X509_free);
	if (rc)
		return tfail(t, "crl", &e);
	narrow(t, asn1_to_unix(X509_CRL_get0_lastUpdate(t->root_crl)),
	       asn1_to_unix(X509_CRL_get0_nextUpdate(t->root_crl)));
	narrow(t, asn1_to_unix(X509_CRL_get0_lastUpdate(t->pck_crl)),
	       asn1_to_unix(X509_CRL_get0_nextUpdate(t->pck_crl)));
	tstep(t, "crl", ATTEST_STEP_PASS, "root CA CRL and PCK CRL signed, current, issuers not revoked");
	return 0;
}

/* Chain + signature over the exact text of one signed collateral item. */
static int signed_item(struct attest_trust *t, const char *name, const char *chain_pem, const char *text,
                       size_t len, const uint8_t sig[64])
{
	STACK_OF(X509) *chain = NULL;
	X509_CRL *crls[1] = { t->root_crl };
	struct tdxr_err e;
	int rc;

	tdxr_err_clear(&e);
	if (attest__pem_chain(chain_pem, strlen(chain_pem), &chain, &e)) {
		tdxr_err_prefix(&e, "issuer chain");
		return tfail(t, name, &e);
	}
	if (sk_X509_num(chain) < 2) {
		tdxr_err_set(&e, TDXR_EATTEST,
		             "issuer chain has %d certificate(s); at least signer and root are required",
		             sk_X509_num(chain));
		sk_X509_pop_free(chain, X509_free);
		return tfail(t, name, &e);
	}
	rc = attest__chain_verify(t->root, chain, crls, 1, t->now, 0, "issuer chain", &e);
	if (!rc && attest__ecdsa_verify_raw(X509_get0_pubkey(sk_X509_value(chain, 0)), (const uint8_t *)text,
	                                    len, sig))
		rc = tdxr_err_set(&e, TDXR_EATTEST, "signature over the JSON text does not verify");
	if (!rc)
		narrow_chain(t, chain);
	sk_X509_pop_free(chain, X509_free);
	return rc ? tfail(t, name, &e) : 0;
}

static int window(struct attest_trust *t, const char *name, int64_t issue, int64_t next)
{
	struct tdxr_err e;
	char a[21], b[21];

	tdxr_time_format(issue, a);
	tdxr_time_format(next, b);
	if (t->now < issue) {
		tdxr_err_set(&e, TDXR_EATTEST, "issued %s, after now (not yet valid)", a);
		return tfail(t, name, &e);
	}
	if (t->now > next) {
		tdxr_err_set(&e, TDXR_EATTEST, "expired: nextUpdate %s is before now", b);
		return tfail(t, name, &e);
	}
	narrow(t, issue, next);
	return 0;
}

static int prepare_items(struct attest_trust *t, const struct attest_collateral *c)
{
	struct tdxr_err e;

	tdxr_err_clear(&e);
	if (signed_item(t, "tcb_info", c->tcb_info_issuer_chain, c->tcb_info, c->tcb_info_len,
	                c->tcb_info_sig))
		return TDXR_EATTEST;
	if (attest__tcb_info_parse(c->tcb_info, c->tcb_info_len, &t->tcb, &e))
		return tfail(t, "tcb_info", &e);
	if (window(t, "tcb_info", t->tcb->issue_date, t->tcb->next_update))
		return TDXR_EATTEST;
	tstep(t, "tcb_info", ATTEST_STEP_PASS,
	      "%s TCB info v%d signed by a TCB signing chain to the root, current", t->tcb->id,
	      t->tcb->version);
	if (signed_item(t, "qe_identity", c->qe_identity_issuer_chain, c->qe_identity, c->qe_identity_len,
	                c->qe_identity_sig))
		return TDXR_EATTEST;
	if (attest__qe_identity_parse(c->qe_identity, c->qe_identity_len, &t->qe, &e))
		return tfail(t, "qe_identity", &e);
	if (window(t, "qe_identity", t->qe->issue_date, t->qe->next_update))
		return TDXR_EATTEST;
	tstep(t, "qe_identity", ATTEST_STEP_PASS, "%s identity v%d signed, current", t->qe->id,
	      t->qe->version);
	return 0;
}

static int prepare_root(struct attest_trust *t, const struct attest_collateral *c, const uint8_t *der,
                        size_t len)
{
	struct tdxr_err e;
	uint8_t h[32];

	if (der) {
		const unsigned char *p = der;

		t->root = d2i_X509(NULL, &p, (long)len);
		if (t->root == NULL || p != der + len) {
			ERR_clear_error();
			tdxr_err_set(&e, TDXR_EATTEST, "the configured root certificate is not DER X.509");
			return tfail(t, "root", &e);
		}
	} else {
		t->root = find_intel_root(c);
		/* No Intel root: take the collateral's own self-signed root. It can only ever be
		 * "simulated" - the root step refuses it unless the policy allows simulation. */
		if (t->root == NULL)
			t->root = find_any_root(c);
		if (t->root == NULL) {
			tdxr_err_set(&e, TDXR_EATTEST,
			             "no issuer chain of the collateral ends in the Intel SGX Root CA (SPKI "
			             "sha256 %.16s...)",
			             ATTEST_INTEL_ROOT_SPKI_SHA256);
			return tfail(t, "root", &e);
		}
	}
	if (!self_signed(t->root)) {
		tdxr_err_set(&e, TDXR_EATTEST, "the root certificate is not self-signed");
		return tfail(t, "root", &e);
	}
	if (attest__spki_sha256(t->root, h)) {
		tdxr_err_set(&e, TDXR_EATTEST, "cannot hash the root public key");
		return tfail(t, "root", &e);
	}
	tdxr_hex_encode(h, 32, t->root_spki);
	t->root_intel = CRYPTO_memcmp(t->root_spki, ATTEST_INTEL_ROOT_SPKI_SHA256, 64) == 0;
	narrow(t, asn1_to_unix(X509_get0_notBefore(t->root)), asn1_to_unix(X509_get0_notAfter(t->root)));
	return 0;
}

int attest_trust_new(const struct attest_collateral *c, const uint8_t *root_der, size_t root_der_len,
                     int64_t now, struct attest_trust **out, struct tdxr_err *err)
{
	struct attest_trust *t;

	*out = NULL;
	if (c == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "no collateral given");
	if (!CRYPTO_THREAD_run_once(&trust_once, trust_idx_init) || trust_idx < 0)
		return tdxr_err_set(err, TDXR_ERROR, "cannot initialise the X509_STORE index");
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	t->now = now;
	t->valid_from = INT64_MIN;
	t->valid_until = INT64_MAX;
	if (prepare_root(t, c, root_der, root_der_len) == 0 && prepare_crls(t, c) == 0 &&
	    prepare_items(t, c) == 0) {
		t->store = X509_STORE_new();
		if (t->store == NULL || !X509_STORE_add_cert(t->store, t->root) ||
		    !X509_STORE_add_crl(t->store, t->root_crl) || !X509_STORE_add_crl(t->store, t->pck_crl) ||
		    !X509_STORE_set_ex_data(t->store, trust_idx, t)) {
			attest_trust_free(t);
			ERR_clear_error();
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory building the certificate store");
		}
		X509_STORE_set_check_crl(t->store, trust_check_crl);
	}
	ERR_clear_error();
	*out = t;
	return 0;
}

int attest_trust_ok(const struct attest_trust *t, const char **error)
{
	size_t i;

	if (error)
		*error = "";
	for (i = 0; t && i < t->n_steps; i++)
		if (t->steps[i].result == ATTEST_STEP_FAIL) {
			if (error)
				*error = t->steps[i].detail;
			return 0;
		}
	return t != NULL;
}

void attest_trust_free(struct attest_trust *t)
{
	if (t == NULL)
		return;
	X509_STORE_free(t->store);
	X509_free(t->root);
	X509_CRL_free(t->root_crl);
	X509_CRL_free(t->pck_crl);
	EVP_PKEY_free(t->pck_crl_key);
	attest__tcb_info_free(t->tcb);
	attest__qe_identity_free(t->qe);
	free(t);
}
