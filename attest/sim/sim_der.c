/*
 * sim_der.c - a minimal DER writer, enough for the Intel SGX PCK certificate
 * extension (SEQUENCE of SEQUENCE{OID, value} with INTEGER, OCTET STRING,
 * ENUMERATED and BOOLEAN leaves). Writing by hand keeps the byte layout exactly
 * as Intel's (minimal INTEGER encodings, definite lengths) without templates.
 * Input is our own; every append still goes through the bounded tdxr_buf.
 */
#include "attest/sim/sim_int.h"

#include <stdlib.h>
#include <string.h>

static int der_len(struct tdxr_buf *b, size_t n, struct tdxr_err *err)
{
	uint8_t h[4];
	size_t hl;

	if (n < 0x80) {
		h[0] = (uint8_t)n;
		hl = 1;
	} else if (n <= 0xff) {
		h[0] = 0x81;
		h[1] = (uint8_t)n;
		hl = 2;
	} else if (n <= 0xffff) {
		h[0] = 0x82;
		h[1] = (uint8_t)(n >> 8);
		h[2] = (uint8_t)n;
		hl = 3;
	} else {
		return tdxr_err_set(err, TDXR_ETOOBIG, "sim: DER element of %zu bytes is too long", n);
	}
	return tdxr_buf_append(b, h, hl, err);
}

int sim__der_tlv(struct tdxr_buf *b, uint8_t tag, const uint8_t *v, size_t n, struct tdxr_err *err)
{
	int rc;

	if ((rc = tdxr_buf_append(b, &tag, 1, err)) || (rc = der_len(b, n, err)))
		return rc;
	return n ? tdxr_buf_append(b, v, n, err) : 0;
}

int sim__der_wrap(struct tdxr_buf *b, size_t start, uint8_t tag, struct tdxr_err *err)
{
	size_t n = b->len - start;
	uint8_t *tmp;
	int rc;

	if (start > b->len)
		return tdxr_err_set(err, TDXR_EINVAL, "sim: DER wrap past the end");
	tmp = malloc(n ? n : 1);
	if (tmp == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (n)
		memcpy(tmp, b->data + start, n);
	b->len = start; /* drop the content, then re-append it behind its header */
	if (b->data)
		b->data[start] = 0;
	rc = sim__der_tlv(b, tag, tmp, n, err);
	free(tmp);
	return rc;
}

int sim__der_uint(struct tdxr_buf *b, uint8_t tag, uint32_t v, struct tdxr_err *err)
{
	uint8_t be[5];
	size_t i = 0, n;

	be[0] = 0;
	be[1] = (uint8_t)(v >> 24);
	be[2] = (uint8_t)(v >> 16);
	be[3] = (uint8_t)(v >> 8);
	be[4] = (uint8_t)v;
	/* minimal two's complement: skip leading zero bytes unless the next has its top bit set */
	while (i < 4 && be[i] == 0 && (be[i + 1] & 0x80) == 0)
		i++;
	n = sizeof(be) - i;
	return sim__der_tlv(b, tag, be + i, n, err);
}

int sim__der_sgx_oid(struct tdxr_buf *b, unsigned a1, unsigned a2, struct tdxr_err *err)
{
	/* 1.2.840.113741.1.13.1 */
	uint8_t oid[11] = { 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01 };
	size_t n = 9;

	if (a1 >= 0x80 || a2 >= 0x80)
		return tdxr_err_set(err, TDXR_EINVAL, "sim: SGX OID arc out of range");
	if (a1)
		oid[n++] = (uint8_t)a1;
	if (a2)
		oid[n++] = (uint8_t)a2;
	return sim__der_tlv(b, 0x06, oid, n, err);
}
