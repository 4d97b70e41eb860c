/*
 * mask.h - the job-log masking filter: every occurrence of a secret phrase is
 * replaced by "[MASKED]" before a byte leaves the process, even when a phrase
 * is split across writes (STYLE.md "Secrets"; gitlab-runner's masker). Phrases
 * are matched longest first; a tail that could still grow into a phrase is
 * held back until the next write or the final flush. Phrases are copied into
 * memory that is wiped on free; the filter never logs them.
 */
#ifndef TDXR_COMMON_MASK_H
#define TDXR_COMMON_MASK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TDXR_MASK_TEXT "[MASKED]"
#define TDXR_MASK_MIN_LEN 4    /* shorter phrases are refused: they would mask ordinary text */
#define TDXR_MASK_MAX_LEN 4096 /* longer phrases are refused */

/* Receives filtered output; returns 0, or non-zero to stop (propagated by write/flush). */
typedef int (*tdxr_mask_out_fn)(void *ctx, const uint8_t *p, size_t n);

struct tdxr_mask;

int tdxr_mask_new(tdxr_mask_out_fn out, void *ctx, struct tdxr_mask **m, struct tdxr_err *err);
/* Adds a phrase (copied). Duplicates are ignored; too short/long is EINVAL. */
int tdxr_mask_add(struct tdxr_mask *m, const char *phrase, size_t len, struct tdxr_err *err);
/* Filters n bytes; emits everything that can no longer be part of a phrase. */
int tdxr_mask_write(struct tdxr_mask *m, const uint8_t *p, size_t n, struct tdxr_err *err);
/* Emits what was held back (end of stream). */
int tdxr_mask_flush(struct tdxr_mask *m, struct tdxr_err *err);
void tdxr_mask_free(struct tdxr_mask *m);

#endif
