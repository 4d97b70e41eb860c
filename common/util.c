/*
 * util.c - checked integer parsing, hex, RFC 3339 time and bounded file I/O.
 */
#include "common/util.h"

#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tdxr_parse_u64(const char *s, uint64_t max, uint64_t *out, struct tdxr_err *err)
{
	char *end = NULL;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return tdxr_err_set(err, TDXR_EINVAL, "'%s' is not a non-negative integer", s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v > max)
		return tdxr_err_set(err, TDXR_EINVAL, "'%s' is not an integer in [0, %llu]", s,
		                    (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

int tdxr_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out, struct tdxr_err *err)
{
	char *end = NULL;
	long long v;

	if (s == NULL || *s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
		return tdxr_err_set(err, TDXR_EINVAL, "'%s' is not an integer", s ? s : "");
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return tdxr_err_set(err, TDXR_EINVAL, "'%s' is not an integer in [%lld, %lld]", s,
		                    (long long)min, (long long)max);
	*out = (int64_t)v;
	return 0;
}

int tdxr_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tdxr_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outcap, size_t *outlen)
{
	size_t i;

	if (slen % 2 || slen / 2 > outcap)
		return TDXR_EINVAL;
	for (i = 0; i < slen; i += 2) {
		int hi = tdxr_hex_digit((unsigned char)s[i]), lo = tdxr_hex_digit((unsigned char)s[i + 1]);

		if (hi < 0 || lo < 0)
			return TDXR_EINVAL;
		out[i / 2] = (uint8_t)((hi << 4) | lo);
	}
	if (outlen)
		*outlen = slen / 2;
	return 0;
}

int tdxr_hex_decode_exact(const char *s, uint8_t *out, size_t n)
{
	if (s == NULL || strlen(s) != 2 * n)
		return TDXR_EINVAL;
	return tdxr_hex_decode(s, 2 * n, out, n, NULL);
}

int tdxr_hex_decode_text(const uint8_t *s, size_t slen, uint8_t **out, size_t *outlen)
{
	uint8_t *o;
	size_t i = 0, n = 0;
	int hi = -1;

	*out = NULL;
	while (i < slen && strchr(" \t\r\n", s[i]) && s[i])
		i++;
	if (slen - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X'))
		i += 2;
	o = malloc(slen / 2 + 1);
	if (o == NULL)
		return TDXR_ENOMEM;
	for (; i < slen; i++) {
		int v;

		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')
			continue;
		v = tdxr_hex_digit(s[i]);
		if (v < 0) {
			free(o);
			return TDXR_EINVAL;
		}
		if (hi < 0) {
			hi = v;
		} else {
			o[n++] = (uint8_t)((hi << 4) | v);
			hi = -1;
		}
	}
	if (hi >= 0 || n == 0) {
		free(o);
		return TDXR_EINVAL;
	}
	*out = o;
	*outlen = n;
	return 0;
}

void tdxr_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

char *tdxr_hex_strdup(const uint8_t *p, size_t n)
{
	char *s;

	if (n > (SIZE_MAX - 1) / 2)
		return NULL;
	s = malloc(2 * n + 1);
	if (s)
		tdxr_hex_encode(p, n, s);
	return s;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's algorithm. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, unsigned *out)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int tdxr_time_parse_rfc3339(const char *s, int64_t *out)
{
	unsigned y, mo, d, h, mi, se;
	static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *p;

	if (s == NULL || strlen(s) < 20)
		return TDXR_EINVAL;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s + 11, 2, &h) || s[13] != ':' ||
	    digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se))
		return TDXR_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
		return TDXR_EINVAL;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return TDXR_EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (!((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') && strcmp(p, "+00:00") != 0)
		return TDXR_EINVAL;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return 0;
}

void tdxr_time_format(int64_t t, char out[21])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		memcpy(out, "1970-01-01T00:00:00Z", 21);
}

int tdxr_file_read(const char *path, size_t max, uint8_t **out, size_t *len, struct tdxr_err *err)
{
	struct tdxr_buf b;
	uint8_t chunk[65536];
	int fd, rc = 0;

	*out = NULL;
	*len = 0;
	tdxr_buf_init(&b, max);
	fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot open %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = tdxr_err_set(err, TDXR_EIO, "cannot read %s: %s", path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		rc = tdxr_buf_append(&b, chunk, (size_t)n, err);
		if (rc) {
			tdxr_err_prefix(err, "%s", path);
			break;
		}
	}
	if (fd != STDIN_FILENO)
		close(fd);
	if (rc) {
		tdxr_buf_dispose(&b);
		return rc;
	}
	*out = tdxr_buf_steal(&b, len);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	return 0;
}

int tdxr_file_write_atomic(const char *path, const void *p, size_t n, unsigned mode, struct tdxr_err *err)
{
	char tmp[4096], dirbuf[4096];
	const uint8_t *q = p;
	int fd, dfd, rc = 0;
	size_t off = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp) ||
	    (size_t)snprintf(dirbuf, sizeof(dirbuf), "%s", path) >= sizeof(dirbuf))
		return tdxr_err_set(err, TDXR_EINVAL, "path too long: %s", path);
	/* A unique temp name: concurrent writers of one path never share a temp file. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot create %s: %s", tmp, strerror(errno));
	while (off < n) {
		ssize_t w = write(fd, q + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = tdxr_err_set(err, TDXR_EIO, "cannot write %s: %s", tmp, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	if (!rc && fchmod(fd, (mode_t)mode) != 0)
		rc = tdxr_err_set(err, TDXR_EIO, "cannot chmod %s: %s", tmp, strerror(errno));
	if (!rc && fsync(fd) != 0)
		rc = tdxr_err_set(err, TDXR_EIO, "cannot fsync %s: %s", tmp, strerror(errno));
	close(fd);
	if (!rc && rename(tmp, path) != 0)
		rc = tdxr_err_set(err, TDXR_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	if (rc) {
		unlink(tmp);
		return rc;
	}
	dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}
