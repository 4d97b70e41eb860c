/*
 * log.c - one line per call, written with a single fwrite so concurrent
 * writers do not interleave within a line. JSON strings are escaped per RFC 8259.
 */
#include "common/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static enum tdxr_log_format g_fmt = TDXR_LOG_TEXT;
static enum tdxr_log_level g_level = TDXR_LOG_INFO;
static FILE *g_out;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void tdxr_log_setup(enum tdxr_log_format fmt, enum tdxr_log_level level, FILE *out)
{
	g_fmt = fmt;
	g_level = level;
	g_out = out;
}

int tdxr_log_parse(const char *format, const char *level, enum tdxr_log_format *f, enum tdxr_log_level *l,
                   struct tdxr_err *err)
{
	size_t i;

	if (format) {
		if (strcmp(format, "text") == 0)
			*f = TDXR_LOG_TEXT;
		else if (strcmp(format, "json") == 0)
			*f = TDXR_LOG_JSON;
		else
			return tdxr_err_set(err, TDXR_EINVAL, "log format '%s' is not text or json", format);
	}
	if (level) {
		for (i = 0; i < 4; i++)
			if (strcmp(level, level_names[i]) == 0) {
				*l = (enum tdxr_log_level)i;
				return 0;
			}
		return tdxr_err_set(err, TDXR_EINVAL, "log level '%s' is not debug, info, warn or error",
		                    level);
	}
	return 0;
}

static size_t json_escape(char *dst, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
	return o;
}

void tdxr_log(enum tdxr_log_level level, const char *module, const char *fmt, ...)
{
	char msg[2048], line[4608], ts[32], emsg[4096];
	struct timespec now;
	struct tm tm;
	va_list ap;
	int n;
	FILE *out = g_out ? g_out : stderr;

	if (level < g_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	if (g_fmt == TDXR_LOG_JSON) {
		json_escape(emsg, sizeof(emsg), msg);
		n = snprintf(line, sizeof(line),
		             "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"%s\"}\n", ts,
		             now.tv_nsec / 1000000, level_names[level], module, emsg);
	} else {
		n = snprintf(line, sizeof(line), "%s.%03ldZ %-5s %s: %s\n", ts, now.tv_nsec / 1000000,
		             level_names[level], module, msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	fwrite(line, 1, (size_t)n, out);
	fflush(out);
}
