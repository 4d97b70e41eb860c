/*
 * sim_int.h - shared between attest/sim's files, not part of the public
 * interface (sim.h). Names use the sim__ prefix.
 *
 * The PKI object owns every key and certificate; the collateral, quote and
 * one-call code only borrow them. Signatures are raw r||s (64 bytes) everywhere.
 */
#ifndef TDXR_ATTEST_SIM_SIM_INT_H
#define TDXR_ATTEST_SIM_SIM_INT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdint.h>

#include "attest/sim/sim.h"
#include "common/buf.h"

struct sim_certobj {
	EVP_PKEY *key; /* the subject's key pair */
	X509 *x509;    /* parsed from der */
	uint8_t *der;
	size_t der_len;
};

struct sim_pki {
	int64_t now;
	int deterministic;
	uint64_t seed;
	struct sim_certobj cert[SIM_CERT_COUNT];
	uint8_t fmspc[6];
	uint8_t pce_id[2];
	uint8_t cpu_svn[16];
	uint16_t pce_svn;
};

/* ---- sim_crypto.c ---- */
/* A P-256 key: fresh, or derived from (seed, label, extra) in deterministic mode. */
int sim__key_new(const struct sim_pki *p, const char *label, const uint8_t *extra, size_t extra_len,
                 EVP_PKEY **out, struct tdxr_err *err);
/* ECDSA-P256-SHA256 raw r||s; deterministic nonce when p->deterministic. */
int sim__sign(const struct sim_pki *p, EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t sig[64],
              struct tdxr_err *err);
/* Raw r||s -> DER ECDSA-Sig-Value (malloc'd). */
int sim__sig_to_der(const uint8_t sig[64], uint8_t **der, size_t *len, struct tdxr_err *err);
/* Public key as x||y. */
int sim__pub_raw(EVP_PKEY *key, uint8_t xy[64], struct tdxr_err *err);
void sim__sha256(const void *p, size_t n, uint8_t out[32]);
void sim__sha384(const void *p, size_t n, uint8_t out[48]);
/* Bytes derived from (seed, label) for deterministic values; random otherwise. */
int sim__bytes(const struct sim_pki *p, const char *label, uint8_t *out, size_t n, struct tdxr_err *err);

/* ---- sim_der.c: a minimal DER writer for the SGX extension ---- */
int sim__der_tlv(struct tdxr_buf *b, uint8_t tag, const uint8_t *v, size_t n, struct tdxr_err *err);
/* Wraps the bytes of inner (from offset start to the end of b) in a tag. */
int sim__der_wrap(struct tdxr_buf *b, size_t start, uint8_t tag, struct tdxr_err *err);
int sim__der_uint(struct tdxr_buf *b, uint8_t tag, uint32_t v, struct tdxr_err *err);
/* OID 1.2.840.113741.1.13.1 followed by up to two more arcs (0 = absent). */
int sim__der_sgx_oid(struct tdxr_buf *b, unsigned a1, unsigned a2, struct tdxr_err *err);

/* ---- sim_quote.c ---- */
/* The simulated TD QE's MRSIGNER (shared by the QE report and the QE Identity). */
void sim__default_qe_mrsigner(uint8_t out[32]);

/* ---- sim_pki.c ---- */
/* PEM of one certificate appended to b. */
int sim__pem_append(struct tdxr_buf *b, const struct sim_certobj *c, struct tdxr_err *err);

#endif
