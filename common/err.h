/*
 * err.h - the project's one error convention.
 *
 * Functions that can fail return int: 0 on success, a negative TDXR_E* code on
 * failure. Detail travels in a caller-owned struct tdxr_err passed last (NULL is
 * allowed). Messages are one line, name the step that failed and, where possible,
 * the fix. Codes and messages propagate unchanged.
 */
#ifndef TDXR_COMMON_ERR_H
#define TDXR_COMMON_ERR_H

#include <stddef.h>

enum tdxr_code {
	TDXR_OK = 0,
	TDXR_ERROR = -1,     /* generic failure */
	TDXR_ENOTFOUND = -2, /* a named thing does not exist */
	TDXR_ETIMEOUT = -3,  /* a deadline passed */
	TDXR_EAUTH = -4,     /* credentials refused */
	TDXR_EATTEST = -5,   /* attestation did not verify */
	TDXR_ETOOBIG = -6,   /* input over its named cap */
	TDXR_ECANCELED = -7, /* the job or step was cancelled */
	TDXR_EINVAL = -8,    /* malformed input or bad usage */
	TDXR_EIO = -9,       /* file or network I/O failed */
	TDXR_ENOMEM = -10,   /* allocation failed */
};

struct tdxr_err {
	int code;
	char msg[256];
};

/* Records code and a printf-style message in err (if not NULL); returns code. */
int tdxr_err_set(struct tdxr_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "<prefix>: " (keeps the code); returns it. */
int tdxr_err_prefix(struct tdxr_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void tdxr_err_clear(struct tdxr_err *err);

/* Stable short name for a code ("EATTEST"); never NULL. */
const char *tdxr_code_name(int code);

#endif
