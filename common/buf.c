/*
 * buf.c - bounded buffer and cursor. All size arithmetic is overflow-checked;
 * the cap is enforced before any allocation.
 */
#include "common/buf.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tdxr_buf_init(struct tdxr_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

static int buf_reserve(struct tdxr_buf *b, size_t n, struct tdxr_err *err)
{
	size_t need, ncap;
	uint8_t *nd;

	if (n > b->max || b->len > b->max - n)
		return tdxr_err_set(err, TDXR_ETOOBIG, "input exceeds its %zu-byte limit", b->max);
	need = b->len + n + 1; /* +1 for the terminating NUL */
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	nd = realloc(b->data, ncap);
	if (nd == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory growing a buffer to %zu bytes", ncap);
	b->data = nd;
	b->cap = ncap;
	return 0;
}

int tdxr_buf_append(struct tdxr_buf *b, const void *p, size_t n, struct tdxr_err *err)
{
	int rc = buf_reserve(b, n, err);

	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int tdxr_buf_appendf(struct tdxr_buf *b, struct tdxr_err *err, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return tdxr_err_set(err, TDXR_ERROR, "formatting failed");
	rc = buf_reserve(b, (size_t)n, err);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

uint8_t *tdxr_buf_steal(struct tdxr_buf *b, size_t *len)
{
	uint8_t *d = b->data;

	if (len)
		*len = b->len;
	if (d == NULL)
		d = calloc(1, 1);
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}

void tdxr_buf_reset(struct tdxr_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void tdxr_buf_dispose(struct tdxr_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void tdxr_buf_dispose_wipe(struct tdxr_buf *b)
{
	if (b == NULL)
		return;
	if (b->data)
		OPENSSL_cleanse(b->data, b->cap);
	tdxr_buf_dispose(b);
}

void tdxr_cur_init(struct tdxr_cur *c, const uint8_t *p, size_t len)
{
	c->p = p;
	c->len = p ? len : 0;
	c->off = 0;
}

size_t tdxr_cur_left(const struct tdxr_cur *c)
{
	return c->len - c->off;
}

int tdxr_cur_bytes(struct tdxr_cur *c, size_t n, const uint8_t **out)
{
	if (n > tdxr_cur_left(c))
		return TDXR_EINVAL;
	*out = c->p + c->off;
	c->off += n;
	return 0;
}

int tdxr_cur_copy(struct tdxr_cur *c, void *dst, size_t n)
{
	const uint8_t *p;

	if (tdxr_cur_bytes(c, n, &p))
		return TDXR_EINVAL;
	if (n)
		memcpy(dst, p, n);
	return 0;
}

int tdxr_cur_skip(struct tdxr_cur *c, size_t n)
{
	const uint8_t *p;

	return tdxr_cur_bytes(c, n, &p);
}

int tdxr_cur_u8(struct tdxr_cur *c, uint8_t *out)
{
	return tdxr_cur_copy(c, out, 1);
}

int tdxr_cur_u16le(struct tdxr_cur *c, uint16_t *out)
{
	const uint8_t *p;

	if (tdxr_cur_bytes(c, 2, &p))
		return TDXR_EINVAL;
	*out = (uint16_t)(p[0] | (p[1] << 8));
	return 0;
}

int tdxr_cur_u32le(struct tdxr_cur *c, uint32_t *out)
{
	const uint8_t *p;

	if (tdxr_cur_bytes(c, 4, &p))
		return TDXR_EINVAL;
	*out = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
	return 0;
}

int tdxr_cur_u64le(struct tdxr_cur *c, uint64_t *out)
{
	uint32_t lo, hi;
	size_t save = c->off;

	if (tdxr_cur_u32le(c, &lo) || tdxr_cur_u32le(c, &hi)) {
		c->off = save;
		return TDXR_EINVAL;
	}
	*out = ((uint64_t)hi << 32) | lo;
	return 0;
}
