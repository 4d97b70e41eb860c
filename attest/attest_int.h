/*
 * attest_int.h - functions shared between libattest's files, not part of the
 * public interface (attest.h). Names use the attest__ prefix.
 */
#ifndef TDXR_ATTEST_ATTEST_INT_H
#define TDXR_ATTEST_ATTEST_INT_H

#include <openssl/x509.h>
#include <stdint.h>

#include "attest/attest.h"

/* Decodes a 384-byte SGX report body. */
int attest__sgx_report_decode(const uint8_t *p, struct attest_sgx_report *r);

/* ---- pki.c ---- */
/* PEM chain text -> stack of certificates (leaf first); at least one. Caller frees
 * with sk_X509_pop_free(sk, X509_free). */
int attest__pem_chain(const char *pem, size_t len, STACK_OF(X509) **out, struct tdxr_err *err);
/* ECDSA-P256-SHA256 over msg with a raw r||s signature. 0 = valid, TDXR_EATTEST otherwise. */
int attest__ecdsa_verify_raw(EVP_PKEY *key, const uint8_t *msg, size_t len, const uint8_t sig[64]);
/* EVP_PKEY from a raw 64-byte P-256 point x||y; NULL if not on the curve. */
EVP_PKEY *attest__p256_from_raw(const uint8_t xy[64]);
/* SHA-256 of the certificate's DER SubjectPublicKeyInfo. */
int attest__spki_sha256(X509 *cert, uint8_t out[32]);
/* DER CRL -> X509_CRL. */
int attest__crl_load(const uint8_t *der, size_t len, const char *what, X509_CRL **out, struct tdxr_err *err);
/* Verifies chain[0] up to root at time now: signatures, validity windows, and
 * revocation of every certificate against crls (each certificate must be covered
 * by a CRL from its issuer, valid at now). leaf must not be a CA. what names the
 * chain in messages; leaf_may_be_ca for CRL issuer chains. */
int attest__chain_verify(X509 *root, STACK_OF(X509) *chain, X509_CRL *const *crls, size_t ncrls, int64_t now,
                         int leaf_may_be_ca, const char *what, struct tdxr_err *err);

/* Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1). */
struct attest_pck_ext {
	uint8_t cpu_svn_components[16]; /* SGX TCB comp 01..16 SVNs */
	uint16_t pce_svn;
	uint8_t cpu_svn[16];
	uint8_t pce_id[2];
	uint8_t fmspc[6];
	uint8_t ppid[16];
	int sgx_type;
};
int attest__pck_ext_parse(X509 *leaf, struct attest_pck_ext *out, struct tdxr_err *err);

#endif

/* ---- tcb.c: TCB Info and QE Identity (parsed from their exact signed text) ---- */
struct attest_status_adv {
	enum attest_tcb_status status;
	char **adv; /* owned */
	size_t n_adv;
};

struct attest_tcb_level {
	uint8_t sgx[16];
	uint16_t pcesvn;
	uint8_t tdx[16];
	int has_tdx;
	struct attest_status_adv sa;
};

struct attest_module_level {
	unsigned isvsvn;
	struct attest_status_adv sa;
};

struct attest_module_identity {
	char id[16];
	uint8_t mrsigner[48];
	uint8_t attributes[8];
	uint8_t attributes_mask[8];
	struct attest_module_level *levels;
	size_t n_levels;
};

struct attest_tcb_info {
	char id[8]; /* "TDX" or "SGX" */
	int version;
	int64_t issue_date, next_update;
	uint8_t fmspc[6];
	uint8_t pce_id[2];
	struct attest_tcb_level *levels;
	size_t n_levels;
	int has_module;
	uint8_t module_mrsigner[48];
	uint8_t module_attributes[8];
	uint8_t module_attributes_mask[8];
	struct attest_module_identity *modules;
	size_t n_modules;
};

struct attest_qe_identity {
	char id[8]; /* "QE" or "TD_QE" */
	int version;
	int64_t issue_date, next_update;
	uint32_t miscselect, miscselect_mask;
	uint8_t attributes[16], attributes_mask[16];
	uint8_t mrsigner[32];
	unsigned isvprodid;
	struct attest_module_level *levels; /* isvsvn + status */
	size_t n_levels;
};

int attest__tcb_info_parse(const char *text, size_t len, struct attest_tcb_info **out, struct tdxr_err *err);
void attest__tcb_info_free(struct attest_tcb_info *t);
int attest__qe_identity_parse(const char *text, size_t len, struct attest_qe_identity **out,
                              struct tdxr_err *err);
void attest__qe_identity_free(struct attest_qe_identity *q);
/* Worse-of merge (Intel severity order) and union of advisory IDs into dst. */
int attest__status_merge(struct attest_status_adv *dst, const struct attest_status_adv *src);
int attest__status_copy(struct attest_status_adv *dst, const struct attest_status_adv *src);
void attest__status_dispose(struct attest_status_adv *s);

/* ---- trust.c: collateral verified once (see attest_trust_new) ---- */
struct attest_trust {
	int64_t now;                     /* the time it was prepared at */
	int64_t valid_from, valid_until; /* every window of the collateral and root holds in here */
	X509 *root;
	int root_intel;
	char root_spki[65];
	X509_CRL *root_crl, *pck_crl;
	EVP_PKEY *pck_crl_key; /* the key that signed pck_crl */
	struct attest_tcb_info *tcb;
	struct attest_qe_identity *qe;
	X509_STORE *store;           /* root + both CRLs; NULL when a step failed */
	struct attest_step steps[4]; /* root (on failure), crl, tcb_info, qe_identity */
	size_t n_steps;
	int failed;
};
/* Verifies chain[0] with a prepared store (see attest__chain_verify). */
int attest__chain_verify_store(X509_STORE *store, STACK_OF(X509) *chain, int64_t now, int leaf_may_be_ca,
                               const char *what, struct tdxr_err *err);
