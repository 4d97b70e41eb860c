/*
 * collateral.c - the dcap-qvl QuoteCollateralV3 JSON layout, parsed and
 * written back. tcb_info and qe_identity are kept as the exact signed text
 * (never re-serialised: the signature covers those bytes). Signatures are hex
 * r||s (64 bytes), CRLs hex DER, issuer chains PEM. Only presence, types and
 * encodings are checked here; verify.c checks every signature and window.
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int get_str(json_t *root, const char *key, int required, char **out, size_t *len, struct tdxr_err *err)
{
	json_t *v = json_object_get(root, key);
	const char *s;
	size_t n;

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		return tdxr_err_set(err, TDXR_EINVAL, "collateral: field '%s' is missing", key);
	}
	if (!json_is_string(v))
		return tdxr_err_set(err, TDXR_EINVAL, "collateral: field '%s' is not a string", key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (memchr(s, '\0', n))
		return tdxr_err_set(err, TDXR_EINVAL, "collateral: field '%s' contains a NUL byte", key);
	*out = strndup(s, n);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (len)
		*len = n;
	return 0;
}

static int get_hex(json_t *root, const char *key, uint8_t **out, size_t *len, struct tdxr_err *err)
{
	char *s = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = get_str(root, key, 1, &s, &n, err);
	if (rc)
		return rc;
	*out = malloc(n / 2 + 1);
	if (*out == NULL) {
		free(s);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	if (n == 0 || tdxr_hex_decode(s, n, *out, n / 2 + 1, len)) {
		free(s);
		free(*out);
		*out = NULL;
		return tdxr_err_set(err, TDXR_EINVAL, "collateral: field '%s' is not non-empty hex", key);
	}
	free(s);
	return 0;
}

static int get_sig(json_t *root, const char *key, uint8_t sig[64], struct tdxr_err *err)
{
	uint8_t *b = NULL;
	size_t n = 0;
	int rc = get_hex(root, key, &b, &n, err);

	if (rc)
		return rc;
	if (n != 64) {
		free(b);
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "collateral: '%s' is %zu bytes; an ECDSA P-256 r||s signature is 64", key,
		                    n);
	}
	memcpy(sig, b, 64);
	free(b);
	return 0;
}

int attest_collateral_parse(const uint8_t *text, size_t len, struct attest_collateral **out,
                            struct tdxr_err *err)
{
	struct attest_collateral *c = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	int rc;

	*out = NULL;
	if (len > TDXR_CAP_COLLATERAL)
		return tdxr_err_set(err, TDXR_ETOOBIG, "collateral: %zu bytes exceeds the %u-byte limit", len,
		                    TDXR_CAP_COLLATERAL);
	root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "collateral: invalid JSON at line %d column %d: %s",
		                    jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "collateral: not a JSON object");
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = get_str(root, "tcb_info", 1, &c->tcb_info, &c->tcb_info_len, err)) ||
	    (rc = get_sig(root, "tcb_info_signature", c->tcb_info_sig, err)) ||
	    (rc = get_str(root, "tcb_info_issuer_chain", 1, &c->tcb_info_issuer_chain, NULL, err)) ||
	    (rc = get_str(root, "qe_identity", 1, &c->qe_identity, &c->qe_identity_len, err)) ||
	    (rc = get_sig(root, "qe_identity_signature", c->qe_identity_sig, err)) ||
	    (rc = get_str(root, "qe_identity_issuer_chain", 1, &c->qe_identity_issuer_chain, NULL, err)) ||
	    (rc = get_hex(root, "pck_crl", &c->pck_crl, &c->pck_crl_len, err)) ||
	    (rc = get_hex(root, "root_ca_crl", &c->root_ca_crl, &c->root_ca_crl_len, err)) ||
	    (rc = get_str(root, "pck_crl_issuer_chain", 1, &c->pck_crl_issuer_chain, NULL, err)) ||
	    (rc = get_str(root, "pck_certificate_chain", 0, &c->pck_certificate_chain, NULL, err)))
		goto out;
	*out = c;
	c = NULL;
	rc = 0;
out:
	attest_collateral_free(c);
	json_decref(root);
	return rc;
}

static int set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	int rc;

	if (h == NULL)
		return -1;
	rc = json_object_set_new(o, key, json_string(h));
	free(h);
	return rc;
}

int attest_collateral_to_json(const struct attest_collateral *c, char **out, struct tdxr_err *err)
{
	json_t *o = json_object();
	int bad = 0;

	*out = NULL;
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	bad |= json_object_set_new(o, "tcb_info", json_stringn(c->tcb_info, c->tcb_info_len));
	bad |= set_hex(o, "tcb_info_signature", c->tcb_info_sig, 64);
	bad |= json_object_set_new(o, "tcb_info_issuer_chain", json_string(c->tcb_info_issuer_chain));
	bad |= json_object_set_new(o, "qe_identity", json_stringn(c->qe_identity, c->qe_identity_len));
	bad |= set_hex(o, "qe_identity_signature", c->qe_identity_sig, 64);
	bad |= json_object_set_new(o, "qe_identity_issuer_chain", json_string(c->qe_identity_issuer_chain));
	bad |= set_hex(o, "pck_crl", c->pck_crl, c->pck_crl_len);
	bad |= set_hex(o, "root_ca_crl", c->root_ca_crl, c->root_ca_crl_len);
	bad |= json_object_set_new(o, "pck_crl_issuer_chain", json_string(c->pck_crl_issuer_chain));
	if (c->pck_certificate_chain)
		bad |= json_object_set_new(o, "pck_certificate_chain", json_string(c->pck_certificate_chain));
	if (!bad)
		*out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (bad || *out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory serialising collateral");
	return 0;
}

void attest_collateral_free(struct attest_collateral *c)
{
	if (c == NULL)
		return;
	free(c->tcb_info);
	free(c->tcb_info_issuer_chain);
	free(c->qe_identity);
	free(c->qe_identity_issuer_chain);
	free(c->pck_crl);
	free(c->root_ca_crl);
	free(c->pck_crl_issuer_chain);
	free(c->pck_certificate_chain);
	free(c);
}
