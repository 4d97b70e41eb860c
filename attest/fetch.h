/*
 * fetch.h - the collateral fetcher: gets TCB info, QE identity, the PCK CRL and
 * the Intel SGX Root CA CRL from Intel PCS (API v4) or a PCCS, and caches the
 * result on disk by (TEE, FMSPC, PCK CA) until the earliest nextUpdate.
 *
 * This is the only code in attest/ that does I/O (libcurl, files). It checks
 * shapes, not trust: the verifier (attest_verify) checks every signature and
 * every date, so a cache entry or a response is never trusted for more than
 * "well-formed". TCB info and QE identity are kept as the exact bytes of the
 * signed inner object as they appeared in the response body, never re-serialised.
 *
 * Every request is bounded: connect and total timeouts, TDXR_CAP_COLLATERAL per
 * body, no redirects, HTTPS only (plain http only to 127.0.0.1 / localhost / [::1]
 * for tests). The optional API key is sent as Ocp-Apim-Subscription-Key and never
 * logged. Output strings come back through **out and are the caller's (free()).
 */
#ifndef TDXR_ATTEST_FETCH_H
#define TDXR_ATTEST_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct tdxr_secret;

#define ATTEST_PCS_URL_INTEL "https://api.trustedservices.intel.com"
#define ATTEST_FETCH_TIMEOUT_MS_DEFAULT 30000L
#define ATTEST_FETCH_CONNECT_MS_DEFAULT 10000L

struct attest_fetch_opts {
	/* PCS or PCCS root, NULL = ATTEST_PCS_URL_INTEL. A trailing "/" and a trailing
	 * "/sgx/certification/v4" or "/tdx/certification/v4" are ignored. */
	const char *base_url;
	const char *cache_dir;             /* NULL = no cache; created 0700 when missing */
	long timeout_ms;                   /* total per request; 0 = ATTEST_FETCH_TIMEOUT_MS_DEFAULT */
	long connect_timeout_ms;           /* 0 = min(timeout_ms, ATTEST_FETCH_CONNECT_MS_DEFAULT) */
	int64_t now;                       /* UNIX seconds for cache expiry; 0 = the system clock */
	const struct tdxr_secret *api_key; /* optional Intel PCS subscription key (borrowed) */
	const char *ca_file;               /* optional PEM CA bundle for the server's TLS certificate */
	/* Root CA CRL source, NULL = "{base}/sgx/certification/v4/rootcacrl" for a PCCS
	 * (DER, hex or PEM), then the CRL distribution point of the root certificate
	 * ending the QE identity issuer chain (always the latter for Intel PCS). */
	const char *root_ca_crl_url;
};

/* What a fetch did (optional output). */
struct attest_fetch_info {
	int from_cache;      /* 1 = served from cache_dir without a request */
	int cached;          /* 1 = the result is now in cache_dir */
	int64_t next_update; /* min(nextUpdate) of TCB info, QE identity and both CRLs */
	unsigned requests;   /* HTTP requests made */
};

/* Zeroes *o (all defaults). */
void attest_fetch_opts_init(struct attest_fetch_opts *o);

/*
 * Fetches collateral for a quote's FMSPC (12 hex digits, either case) and PCK CA
 * ("platform" or "processor"; from the PCK leaf's issuer). tee_is_tdx selects the
 * /tdx/ or /sgx/ TCB info and QE identity. *collateral_json is malloc'd JSON text in
 * dcap-qvl QuoteCollateralV3 layout: pck_crl_issuer_chain, root_ca_crl (hex DER),
 * pck_crl (hex DER), tcb_info_issuer_chain, tcb_info (exact signed text),
 * tcb_info_signature (hex), qe_identity_issuer_chain, qe_identity,
 * qe_identity_signature. A valid cache entry (now < its next_update, well-formed,
 * same FMSPC and TEE) is returned without a request; an expired or corrupt one is
 * refetched and replaced. Errors: ENOTFOUND (HTTP 404), EAUTH (401/403),
 * ETIMEOUT, ETOOBIG, EINVAL (malformed response), EIO (transport, other status; for
 * 429/503 the message carries Retry-After).
 */
int attest_fetch_collateral(const struct attest_fetch_opts *o, const char *fmspc_hex, int tee_is_tdx,
                            const char *pck_ca, char **collateral_json, struct attest_fetch_info *info,
                            struct tdxr_err *err);

/* ============================================ building blocks (pure; for tests) */

/* "{base}/{tee}/certification/v4/{rest}" with base normalised as in base_url. */
int attest_fetch_url_build(const char *base, const char *tee, const char *rest, char **out,
                           struct tdxr_err *err);
/* 0 when url is https://..., or http:// to 127.0.0.1, localhost or [::1]; no
 * control characters or spaces. */
int attest_fetch_url_check(const char *url, struct tdxr_err *err);
/* Finds header `name` (case-insensitive) in a raw header block ("Name: value\r\n"
 * lines; only the last response's block); *out is the value, trimmed, malloc'd.
 * ENOTFOUND when absent. */
int attest_fetch_header_get(const char *hdrs, size_t len, const char *name, char **out, struct tdxr_err *err);
/* Percent-decodes (decodeURIComponent: '+' stays '+'); rejects bad escapes and NULs. */
int attest_fetch_pct_decode(const char *s, size_t len, char **out, size_t *out_len, struct tdxr_err *err);
/* Byte span [*off, *off + *span_len) of the object value of top-level `key` in a
 * JSON object text. Bounded scan that respects strings and escapes and checks the
 * top-level grammar and bracket matching (full grammar: Jansson, in signed_split).
 * ENOTFOUND when the key is absent; EINVAL when malformed, duplicated or not an
 * object; ETOOBIG when nested deeper than 64. */
int attest_fetch_json_span(const uint8_t *body, size_t len, const char *key, size_t *off, size_t *span_len,
                           struct tdxr_err *err);
/* Splits a PCS signed response {"<key>":{...},"signature":"hex"}: *text is the
 * exact span of the inner object (malloc'd, NUL-terminated), sig the 64-byte r||s. */
int attest_fetch_signed_split(const uint8_t *body, size_t len, const char *key, char **text, size_t *text_len,
                              uint8_t sig[64], struct tdxr_err *err);
/* A CRL body as DER, hex text (PCCS) or PEM into DER; *next_update from the CRL
 * (EINVAL when it has none). */
int attest_fetch_crl_decode(const uint8_t *body, size_t len, uint8_t **der, size_t *der_len,
                            int64_t *next_update, struct tdxr_err *err);
/* First URI in the CRL distribution points of the last certificate of a PEM chain
 * (the root), e.g. Intel's https://certificates.trustedservices.intel.com/IntelSGXRootCA.der. */
int attest_fetch_crl_url_from_chain(const char *pem, char **url, struct tdxr_err *err);
/* "{dir}/{tdx|sgx}-{FMSPC upper}-{ca}.json"; validates fmspc and ca. */
int attest_fetch_cache_path(const char *dir, int tee_is_tdx, const char *fmspc_hex, const char *ca,
                            char **out, struct tdxr_err *err);
/* Checks collateral JSON text is well-formed (every field present and decodable;
 * tcb_info of this TEE and FMSPC when fmspc_hex != NULL) and returns the earliest
 * nextUpdate of TCB info, QE identity, PCK CRL and root CA CRL. */
int attest_fetch_collateral_expiry(const uint8_t *json, size_t len, int tee_is_tdx, const char *fmspc_hex,
                                   int64_t *next_update, struct tdxr_err *err);

#endif
