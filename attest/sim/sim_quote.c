/*
 * sim_quote.c - TDX DCAP quotes (v4 with a TD 1.0 body; v5 with a TD 1.0 or
 * TD 1.5 body) signed by a fresh attestation key, with the QE report signed by
 * the simulated PCK leaf.
 *
 * Layout (Intel DCAP, dcap-qvl quote.js): 48-byte header; v5 only: body type
 * u16 + body size u32; TD report body (584 / 648 bytes); u32 signature data
 * length; quote signature r||s over everything before that length; attestation
 * public key x||y; certification data type 6 (u16) + size (u32) holding the
 * 384-byte QE report, its PCK signature, u16-sized QE auth data and the nested
 * type 5 PEM chain (leaf, Platform CA, root). QE report data = SHA-256(attestation
 * key || QE auth data) || 32 zero bytes. All integers are little-endian.
 */
#include "attest/sim/sim_int.h"

#include <stdlib.h>
#include <string.h>

#define SIM_QE_MRSIGNER_LABEL "tdx-runner simulated TD QE MRSIGNER"

static const uint8_t INTEL_QE_VENDOR_ID[16] = { 0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
	                                        0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07 };

void sim__default_qe_mrsigner(uint8_t out[32])
{
	sim__sha256(SIM_QE_MRSIGNER_LABEL, strlen(SIM_QE_MRSIGNER_LABEL), out);
}

void sim_quote_opts_init(struct sim_quote_opts *o)
{
	static const char mrseam[] = "tdx-runner simulated TDX module";
	static const char mrtd[] = "tdx-runner simulated TD image";
	static const char qe_enclave[] = "tdx-runner simulated TD QE";
	struct attest_td_report *td = &o->td;

	memset(o, 0, sizeof(*o));
	o->version = 4;
	o->body_type = ATTEST_BODY_TD10;
	memcpy(td->tee_tcb_svn, SIM_DEFAULT_TEE_TCB_SVN, 16);
	sim__sha384(mrseam, sizeof(mrseam) - 1, td->mrseam);
	td->td_attributes[3] = 0x10; /* SEPT_VE_DISABLE; DEBUG (byte 0) clear */
	td->xfam[0] = 0xe7;          /* x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM */
	td->xfam[1] = 0x02;          /* PT */
	td->xfam[2] = 0x06;          /* AMX */
	sim__sha384(mrtd, sizeof(mrtd) - 1, td->mrtd);
	memcpy(td->tee_tcb_svn2, SIM_DEFAULT_TEE_TCB_SVN, 16);

	memcpy(o->qe.cpu_svn, SIM_DEFAULT_CPU_SVN, 16);
	o->qe.attributes[0] = 0x15; /* INIT | MODE64BIT | PROVISIONKEY; masked form 0x11 */
	o->qe.attributes[8] = 0xe7; /* XFRM */
	sim__sha256(qe_enclave, sizeof(qe_enclave) - 1, o->qe.mr_enclave);
	sim__default_qe_mrsigner(o->qe.mr_signer);
	o->qe.isv_prod_id = SIM_DEFAULT_QE_ISVPRODID;
	o->qe.isv_svn = SIM_DEFAULT_QE_ISVSVN;

	o->att_key_type = ATTEST_ATT_KEY_ECDSA_P256;
	o->tee_type = ATTEST_TEE_TDX;
	memcpy(o->qe_vendor_id, INTEL_QE_VENDOR_ID, 16);
	o->cert_type = ATTEST_CERT_QE_REPORT;
	o->inner_cert_type = ATTEST_CERT_PCK_CHAIN;
	o->pem_nul = 1;
}

/* ----------------------------------------------------------------- writers */

static int put_u16(struct tdxr_buf *b, uint16_t v, struct tdxr_err *err)
{
	uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	return tdxr_buf_append(b, x, 2, err);
}

static int put_u32(struct tdxr_buf *b, uint32_t v, struct tdxr_err *err)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	return tdxr_buf_append(b, x, 4, err);
}

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void sgx_report_encode(const struct attest_sgx_report *r, uint8_t out[384])
{
	uint8_t *p = out;

	memset(out, 0, 384);
	memcpy(p, r->cpu_svn, 16);
	p += 16;
	p[0] = (uint8_t)r->misc_select;
	p[1] = (uint8_t)(r->misc_select >> 8);
	p[2] = (uint8_t)(r->misc_select >> 16);
	p[3] = (uint8_t)(r->misc_select >> 24);
	p += 4;
	memcpy(p, r->reserved1, 28);
	p += 28;
	memcpy(p, r->attributes, 16);
	p += 16;
	memcpy(p, r->mr_enclave, 32);
	p += 32;
	memcpy(p, r->reserved2, 32);
	p += 32;
	memcpy(p, r->mr_signer, 32);
	p += 32;
	memcpy(p, r->reserved3, 96);
	p += 96;
	le16(p, r->isv_prod_id);
	p += 2;
	le16(p, r->isv_svn);
	p += 2;
	memcpy(p, r->reserved4, 60);
	p += 60;
	memcpy(p, r->report_data, 64);
}

static int td_report_append(struct tdxr_buf *b, const struct attest_td_report *td, int td15,
                            struct tdxr_err *err)
{
	int rc;

	if ((rc = tdxr_buf_append(b, td->tee_tcb_svn, 16, err)) ||
	    (rc = tdxr_buf_append(b, td->mrseam, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->mrsignerseam, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->seam_attributes, 8, err)) ||
	    (rc = tdxr_buf_append(b, td->td_attributes, 8, err)) ||
	    (rc = tdxr_buf_append(b, td->xfam, 8, err)) || (rc = tdxr_buf_append(b, td->mrtd, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->mrconfigid, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->mrowner, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->mrownerconfig, 48, err)) ||
	    (rc = tdxr_buf_append(b, td->rtmr, sizeof(td->rtmr), err)) ||
	    (rc = tdxr_buf_append(b, td->report_data, 64, err)))
		return rc;
	if (td15 && ((rc = tdxr_buf_append(b, td->tee_tcb_svn2, 16, err)) ||
	             (rc = tdxr_buf_append(b, td->mrservicetd, 48, err))))
		return rc;
	return 0;
}

/* ------------------------------------------------------------------ quote */

int sim_quote_make(const struct sim_pki *p, const struct sim_quote_opts *o, uint8_t **quote, size_t *len,
                   struct tdxr_err *err)
{
	static const uint8_t default_auth[32] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
		                                  11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
		                                  22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
	const uint8_t *auth = o->qe_auth_data ? o->qe_auth_data : default_auth;
	size_t auth_len = o->qe_auth_data ? o->qe_auth_len : sizeof(default_auth);
	int td15 = o->body_type == ATTEST_BODY_TD15;
	struct tdxr_buf q, cert;
	struct attest_sgx_report qe;
	EVP_PKEY *ak = NULL;
	char *chain = NULL;
	const char *pem;
	uint8_t sig[64], pub[64], qe_raw[384], qe_sig[64], *hash_in = NULL;
	size_t pem_len, signed_len;
	int rc;

	*quote = NULL;
	*len = 0;
	tdxr_buf_init(&q, TDXR_CAP_QUOTE);
	tdxr_buf_init(&cert, TDXR_CAP_QUOTE);
	if (o->body_type != ATTEST_BODY_TD10 && o->body_type != ATTEST_BODY_TD15) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sim: quote body type must be TD 1.0 or TD 1.5");
		goto out;
	}
	if (td15 && o->version != 5) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sim: a TD 1.5 body needs a version 5 quote");
		goto out;
	}
	if (auth_len > 0xffff) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sim: QE auth data of %zu bytes does not fit a u16",
		                  auth_len);
		goto out;
	}

	/* header */
	if ((rc = put_u16(&q, o->version, err)) || (rc = put_u16(&q, o->att_key_type, err)) ||
	    (rc = put_u32(&q, o->tee_type, err)) || (rc = put_u32(&q, 0, err)) ||
	    (rc = tdxr_buf_append(&q, o->qe_vendor_id, 16, err)) ||
	    (rc = tdxr_buf_append(&q, o->user_data, 20, err)))
		goto out;
	/* v5 body descriptor + body */
	if (o->version == 5 &&
	    ((rc = put_u16(&q, (uint16_t)o->body_type, err)) || (rc = put_u32(&q, td15 ? 648u : 584u, err))))
		goto out;
	if ((rc = td_report_append(&q, &o->td, td15, err)))
		goto out;
	signed_len = q.len;

	/* attestation key signs header (+ descriptor) + body */
	if ((rc = sim__key_new(p, "attestation-key", o->td.report_data, 64, &ak, err)) ||
	    (rc = sim__sign(p, ak, q.data, signed_len, sig, err)) || (rc = sim__pub_raw(ak, pub, err)))
		goto out;
	if (o->corrupt_quote_sig)
		sig[5] ^= 0x01;

	/* QE report bound to the attestation key and auth data, signed by the PCK leaf */
	qe = o->qe;
	if ((hash_in = malloc(64 + auth_len)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(hash_in, pub, 64);
	if (auth_len)
		memcpy(hash_in + 64, auth, auth_len);
	memset(qe.report_data, 0, 64);
	sim__sha256(hash_in, 64 + auth_len, qe.report_data);
	if (o->corrupt_qe_report_data)
		qe.report_data[0] ^= 0x01;
	sgx_report_encode(&qe, qe_raw);
	if ((rc = sim__sign(p, p->cert[SIM_CERT_PCK].key, qe_raw, sizeof(qe_raw), qe_sig, err)))
		goto out;
	if (o->corrupt_qe_report_sig)
		qe_sig[9] ^= 0x01;

	/* the PCK chain, as the QE embeds it */
	if (o->pck_chain_pem) {
		pem = o->pck_chain_pem;
	} else {
		if ((rc = sim_pki_pck_chain_pem(p, &chain, err)))
			goto out;
		pem = chain;
	}
	pem_len = strlen(pem) + (o->pem_nul ? 1 : 0);

	/* certification data type 6: QE report, its signature, auth data, nested type 5 */
	if ((rc = tdxr_buf_append(&cert, qe_raw, sizeof(qe_raw), err)) ||
	    (rc = tdxr_buf_append(&cert, qe_sig, 64, err)) ||
	    (rc = put_u16(&cert, (uint16_t)auth_len, err)) ||
	    (auth_len && (rc = tdxr_buf_append(&cert, auth, auth_len, err))) ||
	    (rc = put_u16(&cert, o->inner_cert_type, err)) || (rc = put_u32(&cert, (uint32_t)pem_len, err)) ||
	    (rc = tdxr_buf_append(&cert, pem, pem_len, err)))
		goto out;

	/* signature data */
	if ((rc = put_u32(&q, (uint32_t)(64 + 64 + 2 + 4 + cert.len), err)) ||
	    (rc = tdxr_buf_append(&q, sig, 64, err)) || (rc = tdxr_buf_append(&q, pub, 64, err)) ||
	    (rc = put_u16(&q, o->cert_type, err)) || (rc = put_u32(&q, (uint32_t)cert.len, err)) ||
	    (rc = tdxr_buf_append(&q, cert.data, cert.len, err)))
		goto out;
	for (size_t i = 0; i < o->trailing_bytes; i++) {
		if ((rc = tdxr_buf_append(&q, "", 1, err)))
			goto out;
	}
	*quote = tdxr_buf_steal(&q, len);
out:
	EVP_PKEY_free(ak);
	free(hash_in);
	free(chain);
	tdxr_buf_dispose(&q);
	tdxr_buf_dispose(&cert);
	return rc;
}
