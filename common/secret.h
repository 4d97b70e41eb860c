/*
 * secret.h - a byte string that holds a credential (API key, runner token,
 * webhook secret). Stored in its own mapping excluded from core dumps
 * (MADV_DONTDUMP), wiped with OPENSSL_cleanse on free. Never log it; the only
 * way to reach the bytes is tdxr_secret_str, for the moment of use.
 */
#ifndef TDXR_COMMON_SECRET_H
#define TDXR_COMMON_SECRET_H

#include <stddef.h>

#include "common/err.h"

struct tdxr_secret;

/* Copies n bytes (the copy is NUL-terminated). Returns NULL on ENOMEM. */
struct tdxr_secret *tdxr_secret_new(const void *p, size_t n);
/* Reads a secret from a file that must be a regular file with no group/other
 * permission bits (0600 or stricter); one trailing newline is dropped. */
int tdxr_secret_from_file(const char *path, struct tdxr_secret **out, struct tdxr_err *err);
/* Reads the named environment variable, then removes it from this process's
 * environment so children never inherit it. ENOTFOUND when unset or empty. */
int tdxr_secret_from_env(const char *name, struct tdxr_secret **out, struct tdxr_err *err);
/* Borrowed, NUL-terminated; valid until tdxr_secret_free. */
const char *tdxr_secret_str(const struct tdxr_secret *s);
size_t tdxr_secret_len(const struct tdxr_secret *s);
void tdxr_secret_free(struct tdxr_secret *s);

/* Process hardening for anything that holds secrets: no core dumps, not ptrace-able
 * by other same-uid processes (PR_SET_DUMPABLE 0). */
void tdxr_secret_harden_process(void);

#endif
