/*
 * err.c - error recording. Messages are truncated (never overflow) to fit the
 * fixed 256-byte buffer; truncation is marked with "...".
 */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int tdxr_err_set(struct tdxr_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		err->msg[0] = '\0';
	else if ((size_t)n >= sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
	return code;
}

int tdxr_err_prefix(struct tdxr_err *err, const char *fmt, ...)
{
	char pre[128], old[sizeof(err->msg)];
	va_list ap;
	int n;

	if (err == NULL)
		return TDXR_ERROR;
	va_start(ap, fmt);
	n = vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	if (n < 0)
		return err->code;
	memcpy(old, err->msg, sizeof(old));
	n = snprintf(err->msg, sizeof(err->msg), "%s: %s", pre, old);
	if (n >= 0 && (size_t)n >= sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
	return err->code;
}

void tdxr_err_clear(struct tdxr_err *err)
{
	if (err == NULL)
		return;
	err->code = TDXR_OK;
	err->msg[0] = '\0';
}

const char *tdxr_code_name(int code)
{
	switch (code) {
	case TDXR_OK: return "OK";
	case TDXR_ERROR: return "ERROR";
	case TDXR_ENOTFOUND: return "ENOTFOUND";
	case TDXR_ETIMEOUT: return "ETIMEOUT";
	case TDXR_EAUTH: return "EAUTH";
	case TDXR_EATTEST: return "EATTEST";
	case TDXR_ETOOBIG: return "ETOOBIG";
	case TDXR_ECANCELED: return "ECANCELED";
	case TDXR_EINVAL: return "EINVAL";
	case TDXR_EIO: return "EIO";
	case TDXR_ENOMEM: return "ENOMEM";
	default: return "EUNKNOWN";
	}
}
