/*
 * util.h - small checked conversions used everywhere: integers, hex, UTC time,
 * and bounded whole-file reads. Every parser here rejects trailing garbage,
 * embedded NULs and out-of-range values instead of guessing.
 */
#ifndef TDXR_COMMON_UTIL_H
#define TDXR_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"

/* Decimal unsigned integer in [0, max]; no sign, no spaces, no trailing bytes. */
int tdxr_parse_u64(const char *s, uint64_t max, uint64_t *out, struct tdxr_err *err);
/* Decimal signed integer in [min, max]. */
int tdxr_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out, struct tdxr_err *err);

/* Value of one hex digit (either case), or -1. */
int tdxr_hex_digit(int c);
/* Strict hex (even length, [0-9a-fA-F] only) into out[outcap]; *outlen = bytes. */
int tdxr_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outcap, size_t *outlen);
/* Strict hex of exactly n bytes. */
int tdxr_hex_decode_exact(const char *s, uint8_t *out, size_t n);
/* Lenient hex for files: optional 0x prefix, ASCII whitespace anywhere. Allocates *out. */
int tdxr_hex_decode_text(const uint8_t *s, size_t slen, uint8_t **out, size_t *outlen);
/* Lower-case hex of p[n] into out (2n+1 bytes). */
void tdxr_hex_encode(const uint8_t *p, size_t n, char *out);
/* Returns a malloc'd lower-case hex string, or NULL on ENOMEM. */
char *tdxr_hex_strdup(const uint8_t *p, size_t n);

/* RFC 3339 UTC timestamp "YYYY-MM-DDTHH:MM:SS[.frac]Z" (or +00:00) to UNIX seconds. */
int tdxr_time_parse_rfc3339(const char *s, int64_t *out);
/* UNIX seconds to "YYYY-MM-DDTHH:MM:SSZ" into out[21]. */
void tdxr_time_format(int64_t t, char out[21]);

/* Reads a whole file (or "-" for stdin) of at most max bytes; *out is NUL-terminated, free(). */
int tdxr_file_read(const char *path, size_t max, uint8_t **out, size_t *len, struct tdxr_err *err);
/* Writes atomically: temp file in the same directory, fsync, rename, fsync directory. */
int tdxr_file_write_atomic(const char *path, const void *p, size_t n, unsigned mode, struct tdxr_err *err);

#endif
