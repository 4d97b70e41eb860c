/*
 * buf.h - bounded growable buffer and a read cursor for untrusted bytes.
 *
 * struct tdxr_buf grows up to a hard cap chosen per use (TDXR_CAP_*); an append
 * past the cap fails with TDXR_ETOOBIG and leaves the buffer unchanged. The
 * storage is always NUL-terminated one byte past len so text can be used as a
 * C string. struct tdxr_cur reads typed little-endian values from a borrowed
 * span; every getter fails with TDXR_EINVAL on short input and never moves the
 * cursor on failure.
 */
#ifndef TDXR_COMMON_BUF_H
#define TDXR_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Named caps, one per kind of untrusted input. */
#define TDXR_CAP_QUOTE (256u * 1024u)            /* a DCAP quote */
#define TDXR_CAP_COLLATERAL (4u * 1024u * 1024u) /* collateral JSON */
#define TDXR_CAP_EVENTLOG (8u * 1024u * 1024u)   /* event log / guest-agent response */
#define TDXR_CAP_API (16u * 1024u * 1024u)       /* one API response body */
#define TDXR_CAP_BUNDLE (16u * 1024u * 1024u)    /* attestation bundle */
#define TDXR_CAP_CONFIG (1u * 1024u * 1024u)     /* config file */

struct tdxr_buf {
	uint8_t *data; /* owned; NUL at data[len] when data != NULL */
	size_t len;
	size_t cap; /* allocated bytes */
	size_t max; /* hard cap on len */
};

void tdxr_buf_init(struct tdxr_buf *b, size_t max);
int tdxr_buf_append(struct tdxr_buf *b, const void *p, size_t n, struct tdxr_err *err);
int tdxr_buf_appendf(struct tdxr_buf *b, struct tdxr_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Transfers the storage to the caller (free with free()); the buffer is reset. */
uint8_t *tdxr_buf_steal(struct tdxr_buf *b, size_t *len);
void tdxr_buf_reset(struct tdxr_buf *b);
/* Frees storage (wiping it when wipe != 0). Safe on a zeroed or disposed buffer. */
void tdxr_buf_dispose(struct tdxr_buf *b);
void tdxr_buf_dispose_wipe(struct tdxr_buf *b);

struct tdxr_cur {
	const uint8_t *p; /* borrowed */
	size_t len;
	size_t off;
};

void tdxr_cur_init(struct tdxr_cur *c, const uint8_t *p, size_t len);
size_t tdxr_cur_left(const struct tdxr_cur *c);
int tdxr_cur_u8(struct tdxr_cur *c, uint8_t *out);
int tdxr_cur_u16le(struct tdxr_cur *c, uint16_t *out);
int tdxr_cur_u32le(struct tdxr_cur *c, uint32_t *out);
int tdxr_cur_u64le(struct tdxr_cur *c, uint64_t *out);
/* Borrows n bytes (pointer into the span). */
int tdxr_cur_bytes(struct tdxr_cur *c, size_t n, const uint8_t **out);
int tdxr_cur_copy(struct tdxr_cur *c, void *dst, size_t n);
int tdxr_cur_skip(struct tdxr_cur *c, size_t n);

#endif
