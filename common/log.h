/*
 * log.h - structured logging to stderr (or any FILE): "text" lines for humans,
 * "json" for one JSON object per line. Messages are the caller's; never pass a
 * secret to a log call (secret.h explains how secrets are held).
 */
#ifndef TDXR_COMMON_LOG_H
#define TDXR_COMMON_LOG_H

#include <stdio.h>

#include "common/err.h"

enum tdxr_log_level { TDXR_LOG_DEBUG = 0, TDXR_LOG_INFO, TDXR_LOG_WARN, TDXR_LOG_ERROR };
enum tdxr_log_format { TDXR_LOG_TEXT = 0, TDXR_LOG_JSON };

/* Defaults: text, info, stderr. out NULL = stderr. */
void tdxr_log_setup(enum tdxr_log_format fmt, enum tdxr_log_level level, FILE *out);
/* Parses "text"/"json" and "debug"/"info"/"warn"/"error". */
int tdxr_log_parse(const char *format, const char *level, enum tdxr_log_format *f, enum tdxr_log_level *l,
                   struct tdxr_err *err);
void tdxr_log(enum tdxr_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TDXR_DEBUG(mod, ...) tdxr_log(TDXR_LOG_DEBUG, mod, __VA_ARGS__)
#define TDXR_INFO(mod, ...) tdxr_log(TDXR_LOG_INFO, mod, __VA_ARGS__)
#define TDXR_WARN(mod, ...) tdxr_log(TDXR_LOG_WARN, mod, __VA_ARGS__)
#define TDXR_ERR(mod, ...) tdxr_log(TDXR_LOG_ERROR, mod, __VA_ARGS__)

#endif
