/*
 * quote.c - DCAP quote parsing: SGX v3, TDX v4 (TD 1.0) and v5 (TD 1.0 / 1.5).
 *
 * Layout (Intel DCAP "Quote Format" / dcap-qvl quote.rs): 48-byte header; v5
 * adds a body descriptor (u16 type, u32 size); the body; u32 signature-data
 * length; ECDSA quote signature; attestation key; certification data. For v4/v5
 * the certification data is type 6 (QE report certification data) wrapping the
 * QE report, its signature, the QE auth data and a nested type-5 PCK chain; v3
 * carries those fields directly. Every length is checked against what remains;
 * bytes after the signature section are padding and ignored. Nothing here
 * verifies anything: verify.c does.
 */
#include "attest/attest.h"

#include "attest/attest_int.h"
#include "common/buf.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 48
#define SGX_REPORT_LEN 384
#define TD10_LEN 584
#define TD15_LEN 648

static int fail(struct tdxr_err *err, const char *what)
{
	return tdxr_err_set(err, TDXR_EINVAL, "quote: %s", what);
}

int attest__sgx_report_decode(const uint8_t *p, struct attest_sgx_report *r)
{
	struct tdxr_cur c;

	tdxr_cur_init(&c, p, SGX_REPORT_LEN);
	if (tdxr_cur_copy(&c, r->cpu_svn, 16) || tdxr_cur_u32le(&c, &r->misc_select) ||
	    tdxr_cur_copy(&c, r->reserved1, 28) || tdxr_cur_copy(&c, r->attributes, 16) ||
	    tdxr_cur_copy(&c, r->mr_enclave, 32) || tdxr_cur_copy(&c, r->reserved2, 32) ||
	    tdxr_cur_copy(&c, r->mr_signer, 32) || tdxr_cur_copy(&c, r->reserved3, 96) ||
	    tdxr_cur_u16le(&c, &r->isv_prod_id) || tdxr_cur_u16le(&c, &r->isv_svn) ||
	    tdxr_cur_copy(&c, r->reserved4, 60) || tdxr_cur_copy(&c, r->report_data, 64))
		return TDXR_EINVAL;
	return 0;
}

static int td_report_decode(struct tdxr_cur *c, int td15, struct attest_td_report *r)
{
	int i;

	if (tdxr_cur_copy(c, r->tee_tcb_svn, 16) || tdxr_cur_copy(c, r->mrseam, 48) ||
	    tdxr_cur_copy(c, r->mrsignerseam, 48) || tdxr_cur_copy(c, r->seam_attributes, 8) ||
	    tdxr_cur_copy(c, r->td_attributes, 8) || tdxr_cur_copy(c, r->xfam, 8) ||
	    tdxr_cur_copy(c, r->mrtd, 48) || tdxr_cur_copy(c, r->mrconfigid, 48) ||
	    tdxr_cur_copy(c, r->mrowner, 48) || tdxr_cur_copy(c, r->mrownerconfig, 48))
		return TDXR_EINVAL;
	for (i = 0; i < 4; i++)
		if (tdxr_cur_copy(c, r->rtmr[i], 48))
			return TDXR_EINVAL;
	if (tdxr_cur_copy(c, r->report_data, 64))
		return TDXR_EINVAL;
	if (td15 && (tdxr_cur_copy(c, r->tee_tcb_svn2, 16) || tdxr_cur_copy(c, r->mrservicetd, 48)))
		return TDXR_EINVAL;
	return 0;
}

/* Reads a certification-data header (u16 type, u32 size) and borrows its body. */
static int cert_data(struct tdxr_cur *c, uint16_t *type, const uint8_t **body, size_t *len)
{
	uint32_t size;

	if (tdxr_cur_u16le(c, type) || tdxr_cur_u32le(c, &size))
		return TDXR_EINVAL;
	if (size > tdxr_cur_left(c))
		return TDXR_EINVAL;
	*len = size;
	return tdxr_cur_bytes(c, size, body);
}

/* QE report, its signature, QE auth data and the PCK chain (certification data type 5). */
static int qe_section(struct tdxr_cur *c, struct attest_quote *q, struct tdxr_err *err)
{
	const uint8_t *auth, *chain;
	uint16_t auth_len, type;
	size_t chain_len;

	if (tdxr_cur_copy(c, q->qe_report_raw, SGX_REPORT_LEN))
		return fail(err, "QE report truncated (needs 384 bytes)");
	attest__sgx_report_decode(q->qe_report_raw, &q->qe_report);
	if (tdxr_cur_copy(c, q->qe_report_sig, 64))
		return fail(err, "QE report signature truncated (needs 64 bytes)");
	if (tdxr_cur_u16le(c, &auth_len))
		return fail(err, "QE auth data length missing");
	if (tdxr_cur_bytes(c, auth_len, &auth))
		return fail(err, "QE auth data longer than the signature section");
	q->qe_auth_data = malloc(auth_len ? auth_len : 1);
	if (q->qe_auth_data == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (auth_len)
		memcpy(q->qe_auth_data, auth, auth_len);
	q->qe_auth_len = auth_len;
	if (cert_data(c, &type, &chain, &chain_len))
		return fail(err, "PCK certification data truncated or its size exceeds the quote");
	q->pck_cert_type = type;
	if (type != ATTEST_CERT_PCK_CHAIN)
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "quote: PCK certification data type %u is not supported (only 5, the PEM PCK chain)",
		    type);
	if (chain_len == 0 || memchr(chain, '\0', chain_len)) {
		/* Real quotes may NUL-terminate the PEM; accept NULs only as trailing padding. */
		size_t n = chain_len;

		while (n && chain[n - 1] == '\0')
			n--;
		if (n == 0 || memchr(chain, '\0', n))
			return fail(err, "PCK chain is empty or contains NUL bytes");
		chain_len = n;
	}
	q->pck_chain_pem = malloc(chain_len + 1);
	if (q->pck_chain_pem == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	memcpy(q->pck_chain_pem, chain, chain_len);
	q->pck_chain_pem[chain_len] = '\0';
	q->pck_chain_len = chain_len;
	return 0;
}

int attest_quote_parse(const uint8_t *p, size_t len, struct attest_quote **out, struct tdxr_err *err)
{
	struct attest_quote *q = NULL;
	struct tdxr_cur c, sc;
	uint16_t type;
	uint32_t sig_len, body_size;
	const uint8_t *sig, *body;
	size_t body_len;
	int rc;

	*out = NULL;
	if (len > TDXR_CAP_QUOTE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "quote: %zu bytes exceeds the %u-byte limit", len,
		                    TDXR_CAP_QUOTE);
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	tdxr_cur_init(&c, p, len);
	if (tdxr_cur_u16le(&c, &q->version) || tdxr_cur_u16le(&c, &q->att_key_type) ||
	    tdxr_cur_u32le(&c, &q->tee_type) || tdxr_cur_u16le(&c, &q->qe_svn) ||
	    tdxr_cur_u16le(&c, &q->pce_svn) || tdxr_cur_copy(&c, q->qe_vendor_id, 16) ||
	    tdxr_cur_copy(&c, q->user_data, 20)) {
		rc = fail(err, "header truncated (needs 48 bytes)");
		goto out;
	}
	if (q->version < 3 || q->version > 5) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "quote: version %u is not supported (3, 4 or 5)",
		                  q->version);
		goto out;
	}
	if (q->tee_type != ATTEST_TEE_SGX && q->tee_type != ATTEST_TEE_TDX) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "quote: TEE type 0x%x is neither SGX (0) nor TDX (0x81)",
		                  q->tee_type);
		goto out;
	}
	if ((q->tee_type == ATTEST_TEE_SGX) != (q->version == 3)) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "quote: version %u does not match TEE type 0x%x "
		                  "(SGX quotes are v3, TDX quotes v4/v5)",
		                  q->version, q->tee_type);
		goto out;
	}
	if (q->att_key_type != ATTEST_ATT_KEY_ECDSA_P256) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "quote: attestation key type %u is not supported (2, ECDSA-256 P-256)",
		                  q->att_key_type);
		goto out;
	}
	if (q->version == 5) {
		if (tdxr_cur_u16le(&c, &type) || tdxr_cur_u32le(&c, &body_size)) {
			rc = fail(err, "v5 body descriptor truncated");
			goto out;
		}
		if (!((type == ATTEST_BODY_TD10 && body_size == TD10_LEN) ||
		      (type == ATTEST_BODY_TD15 && body_size == TD15_LEN))) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "quote: v5 body type %u with size %u is not a TD 1.0 (2, 584) or "
			                  "TD 1.5 (3, 648) body",
			                  type, body_size);
			goto out;
		}
		q->body_type = (enum attest_body_type)type;
	} else {
		q->body_type = q->version == 3 ? ATTEST_BODY_SGX : ATTEST_BODY_TD10;
	}
	body_len = q->body_type == ATTEST_BODY_SGX    ? SGX_REPORT_LEN
	           : q->body_type == ATTEST_BODY_TD10 ? TD10_LEN
	                                              : TD15_LEN;
	if (tdxr_cur_bytes(&c, body_len, &body)) {
		rc =
		    tdxr_err_set(err, TDXR_EINVAL, "quote: report body truncated (needs %zu bytes, %zu left)",
		                 body_len, tdxr_cur_left(&c));
		goto out;
	}
	if (q->body_type == ATTEST_BODY_SGX) {
		attest__sgx_report_decode(body, &q->sgx);
	} else {
		struct tdxr_cur bc;

		tdxr_cur_init(&bc, body, body_len);
		td_report_decode(&bc, q->body_type == ATTEST_BODY_TD15, &q->td);
	}
	q->signed_len = c.off;
	if (tdxr_cur_u32le(&c, &sig_len)) {
		rc = fail(err, "signature data length missing");
		goto out;
	}
	if (sig_len > tdxr_cur_left(&c)) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "quote: signature data length %u exceeds the %zu bytes that remain",
		                  sig_len, tdxr_cur_left(&c));
		goto out;
	}
	tdxr_cur_bytes(&c, sig_len, &sig);
	q->trailing = tdxr_cur_left(&c);
	tdxr_cur_init(&sc, sig, sig_len);
	if (tdxr_cur_copy(&sc, q->signature, 64) || tdxr_cur_copy(&sc, q->attest_key, 64)) {
		rc = fail(err, "quote signature or attestation key truncated");
		goto out;
	}
	if (q->version == 3) {
		rc = qe_section(&sc, q, err);
		if (rc)
			goto out;
	} else {
		const uint8_t *cd;
		size_t cd_len;
		struct tdxr_cur qc;

		if (cert_data(&sc, &type, &cd, &cd_len)) {
			rc = fail(err,
			          "certification data truncated or its size exceeds the signature section");
			goto out;
		}
		if (type != ATTEST_CERT_QE_REPORT) {
			rc = tdxr_err_set(
			    err, TDXR_EINVAL,
			    "quote: certification data type %u is not 6 (QE report certification data)",
			    type);
			goto out;
		}
		tdxr_cur_init(&qc, cd, cd_len);
		rc = qe_section(&qc, q, err);
		if (rc)
			goto out;
	}
	q->raw_len = c.off;
	q->raw = malloc(q->raw_len);
	if (q->raw == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(q->raw, p, q->raw_len);
	*out = q;
	q = NULL;
	rc = 0;
out:
	attest_quote_free(q);
	return rc;
}

void attest_quote_free(struct attest_quote *q)
{
	if (q == NULL)
		return;
	free(q->qe_auth_data);
	free(q->pck_chain_pem);
	free(q->raw);
	free(q);
}

int attest_quote_load(const uint8_t *p, size_t len, uint8_t **bin, size_t *bin_len, struct tdxr_err *err)
{
	size_t i = 0;
	int rc;

	*bin = NULL;
	*bin_len = 0;
	if (len > 2 * (size_t)TDXR_CAP_QUOTE + 64)
		return tdxr_err_set(err, TDXR_ETOOBIG, "quote file of %zu bytes exceeds the limit", len);
	/* A binary quote starts with version 3/4/5 as u16le: byte 1 is 0x00, never a hex digit. */
	while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
		i++;
	if (len - i >= 2 && p[i + 1] != 0 &&
	    ((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') || (p[i] >= 'A' && p[i] <= 'F'))) {
		rc = tdxr_hex_decode_text(p, len, bin, bin_len);
		if (rc == TDXR_ENOMEM)
			return tdxr_err_set(err, rc, "out of memory");
		if (rc)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "quote file looks like hex but is not valid hex");
		return 0;
	}
	*bin = malloc(len ? len : 1);
	if (*bin == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	memcpy(*bin, p, len);
	*bin_len = len;
	return 0;
}
