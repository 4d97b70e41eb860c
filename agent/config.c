/*
 * config.c - loads the agent's JSON config (DESIGN.md §3.6) into struct config.
 *
 * Jansson parses (JSON_REJECT_DUPLICATES) and reports syntax errors with a
 * position; a tree walk then checks every key against the schema, type- and
 * range-checks every value, and fills defaults. Jansson does not keep the
 * positions of keys, so when the walk rejects something a small bounded
 * scanner re-reads the raw text along the key path (it only ever runs on text
 * Jansson already accepted) to turn the error into "file:line:column".
 *
 * Secrets never pass through a log call or an error message; inline ones are
 * accepted only from a file no group or other user can read, and the JSON
 * copies are wiped once the secret has been moved into a struct tdxr_secret.
 */
#include "agent/config.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_DEPTH 8
#define CFG_MAX_ENTRIES 64 /* gitlab / github entries */
#define CFG_MAX_LIST 1024  /* allow-list entries */
#define CFG_MAX_LABELS 64

/* ================================================================ paths */

static int cfg_join(char **out, const char *a, const char *b, struct tdxr_err *err)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *p = malloc(n);

	*out = NULL;
	if (p == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	snprintf(p, n, "%s%s", a, b);
	*out = p;
	return 0;
}

/* $XDG_<var> (when absolute) + tail, else $HOME + home_tail. */
static int cfg_user_path(const char *xdg, const char *tail, const char *home_tail, char **out,
                         struct tdxr_err *err)
{
	const char *x = getenv(xdg), *home = getenv("HOME");

	*out = NULL;
	if (x && x[0] == '/')
		return cfg_join(out, x, tail, err);
	if (home && home[0] == '/')
		return cfg_join(out, home, home_tail, err);
	return tdxr_err_set(err, TDXR_ENOTFOUND, "neither %s nor HOME is set to an absolute path", xdg);
}

int config_default_path(char **out, struct tdxr_err *err)
{
	*out = NULL;
	if (geteuid() == 0)
		return cfg_join(out, "/etc/tdx-runner/config.json", "", err);
	return cfg_user_path("XDG_CONFIG_HOME", "/tdx-runner/config.json", "/.config/tdx-runner/config.json",
	                     out, err);
}

int config_default_state_dir(char **out, struct tdxr_err *err)
{
	*out = NULL;
	if (geteuid() == 0)
		return cfg_join(out, "/var/lib/tdx-runner", "", err);
	return cfg_user_path("XDG_STATE_HOME", "/tdx-runner", "/.local/state/tdx-runner", out, err);
}

/* ============================================== the key position scanner */

/*
 * One element of a key path: an object key, or an array index.
 */
struct cfg_pathel {
	const char *key; /* NULL for an index */
	size_t index;
};

struct cfg_scan {
	const unsigned char *p;
	size_t len;
	size_t off;
	int line; /* 1-based */
	int col;  /* characters consumed on this line (UTF-8 continuation bytes do not count) */
};

static int scan_peek(const struct cfg_scan *s)
{
	return s->off < s->len ? s->p[s->off] : -1;
}

static void scan_adv(struct cfg_scan *s)
{
	unsigned char ch;

	if (s->off >= s->len)
		return;
	ch = s->p[s->off++];
	if (ch == '\n') {
		s->line++;
		s->col = 0;
	} else if ((ch & 0xC0) != 0x80) {
		s->col++;
	}
}

static void scan_ws(struct cfg_scan *s)
{
	int ch;

	while ((ch = scan_peek(s)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
		scan_adv(s);
}

static void scan_utf8(char *dec, size_t *n, unsigned long cp)
{
	if (cp < 0x80) {
		dec[(*n)++] = (char)cp;
	} else if (cp < 0x800) {
		dec[(*n)++] = (char)(0xC0 | (cp >> 6));
		dec[(*n)++] = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		dec[(*n)++] = (char)(0xE0 | (cp >> 12));
		dec[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		dec[(*n)++] = (char)(0x80 | (cp & 0x3F));
	} else {
		dec[(*n)++] = (char)(0xF0 | (cp >> 18));
		dec[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
		dec[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		dec[(*n)++] = (char)(0x80 | (cp & 0x3F));
	}
}

static int scan_hex4(struct cfg_scan *s, unsigned long *cp)
{
	int i, d;

	*cp = 0;
	for (i = 0; i < 4; i++) {
		d = tdxr_hex_digit(scan_peek(s));
		if (d < 0)
			return -1;
		*cp = *cp << 4 | (unsigned long)d;
		scan_adv(s);
	}
	return 0;
}

/*
 * Consumes the string at s (which must start with '"'). When dec is not NULL it
 * receives the decoded bytes (never more than the raw length) and *declen
 * their count. An escape decodes to no more bytes than it occupies.
 */
static int scan_string(struct cfg_scan *s, char *dec, size_t *declen)
{
	size_t n = 0;
	unsigned long cp, lo;
	int ch;

	if (scan_peek(s) != '"')
		return -1;
	scan_adv(s);
	while ((ch = scan_peek(s)) >= 0) {
		scan_adv(s);
		if (ch == '"') {
			if (declen)
				*declen = n;
			return 0;
		}
		if (ch != '\\') {
			if (dec)
				dec[n++] = (char)ch;
			continue;
		}
		ch = scan_peek(s);
		scan_adv(s);
		switch (ch) {
		case '"':
		case '\\':
		case '/': cp = (unsigned long)ch; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (scan_hex4(s, &cp))
				return -1;
			if (cp >= 0xD800 && cp < 0xDC00 && s->off + 1 < s->len && s->p[s->off] == '\\' &&
			    s->p[s->off + 1] == 'u') {
				scan_adv(s);
				scan_adv(s);
				if (scan_hex4(s, &lo))
					return -1;
				if (lo >= 0xDC00 && lo < 0xE000)
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			}
			break;
		default: return -1;
		}
		if (dec)
			scan_utf8(dec, &n, cp);
	}
	return -1;
}

/* Skips one value (scalar, string, or a whole nested container, iteratively). */
static int scan_skip_value(struct cfg_scan *s)
{
	size_t depth = 0;
	int ch;

	for (;;) {
		scan_ws(s);
		ch = scan_peek(s);
		if (ch < 0)
			return -1;
		if (ch == '"') {
			if (scan_string(s, NULL, NULL))
				return -1;
		} else if (ch == '{' || ch == '[') {
			depth++;
			scan_adv(s);
			continue;
		} else if (ch == '}' || ch == ']') {
			if (depth == 0)
				return -1;
			depth--;
			scan_adv(s);
		} else if (ch == ',' || ch == ':') {
			if (depth == 0)
				return -1;
			scan_adv(s);
			continue;
		} else {
			while ((ch = scan_peek(s)) >= 0 && !strchr(",]} \t\r\n", ch))
				scan_adv(s);
		}
		if (depth == 0)
			return 0;
	}
}

/* Reads one object key into a malloc'd decoded copy. */
static int scan_key(struct cfg_scan *s, char **key, size_t *keylen)
{
	struct cfg_scan probe = *s;
	char *dec;

	*key = NULL;
	if (scan_string(&probe, NULL, NULL))
		return -1;
	dec = malloc(probe.off - s->off + 1);
	if (dec == NULL)
		return -1;
	if (scan_string(s, dec, keylen)) {
		free(dec);
		return -1;
	}
	*key = dec;
	return 0;
}

/*
 * Finds path[0..depth) in the JSON text and returns the 1-based line and
 * column of the last element: the opening quote of a key, or the first
 * character of an array element. -1 when not found.
 */
static int cfg_scan_locate(const char *text, size_t len, const struct cfg_pathel *path, size_t depth,
                           int *line, int *col)
{
	struct cfg_scan s = { (const unsigned char *)text, len, 0, 1, 0 };
	size_t i, idx, klen;
	char *key;
	int found, l = 0, c = 0;

	for (i = 0; i < depth; i++) {
		scan_ws(&s);
		if (path[i].key == NULL) {
			if (scan_peek(&s) != '[')
				return -1;
			scan_adv(&s);
			for (idx = 0;; idx++) {
				scan_ws(&s);
				if (scan_peek(&s) == ']' || scan_peek(&s) < 0)
					return -1;
				if (idx == path[i].index)
					break;
				if (scan_skip_value(&s))
					return -1;
				scan_ws(&s);
				if (scan_peek(&s) != ',')
					return -1;
				scan_adv(&s);
			}
			l = s.line;
			c = s.col + 1;
			continue;
		}
		if (scan_peek(&s) != '{')
			return -1;
		scan_adv(&s);
		for (found = 0; !found;) {
			scan_ws(&s);
			if (scan_peek(&s) != '"')
				return -1;
			l = s.line;
			c = s.col + 1;
			if (scan_key(&s, &key, &klen))
				return -1;
			found = klen == strlen(path[i].key) && memcmp(key, path[i].key, klen) == 0;
			free(key);
			scan_ws(&s);
			if (scan_peek(&s) != ':')
				return -1;
			scan_adv(&s);
			scan_ws(&s);
			if (found)
				break;
			if (scan_skip_value(&s))
				return -1;
			scan_ws(&s);
			if (scan_peek(&s) != ',')
				return -1;
			scan_adv(&s);
		}
	}
	if (depth == 0)
		return -1;
	*line = l;
	*col = c;
	return 0;
}

/* ======================================================== parse context */

struct cfg_ctx {
	const char *file; /* for messages */
	const char *text; /* raw file text, or NULL (defaults only) */
	size_t len;
	int file_private; /* the file has no group/other permission bits */
	unsigned file_mode;
	struct cfg_pathel path[CFG_MAX_DEPTH];
	size_t depth;
	json_t *empty; /* stands in for absent sections */
	struct tdxr_err *err;
};

static void cfg_push_key(struct cfg_ctx *c, const char *key)
{
	if (c->depth < CFG_MAX_DEPTH) {
		c->path[c->depth].key = key;
		c->path[c->depth].index = 0;
	}
	c->depth++;
}

static void cfg_push_index(struct cfg_ctx *c, size_t index)
{
	if (c->depth < CFG_MAX_DEPTH) {
		c->path[c->depth].key = NULL;
		c->path[c->depth].index = index;
	}
	c->depth++;
}

static void cfg_pop(struct cfg_ctx *c)
{
	if (c->depth)
		c->depth--;
}

static void cfg_path_format(const struct cfg_ctx *c, char *out, size_t cap)
{
	size_t i, n = 0, d = c->depth < CFG_MAX_DEPTH ? c->depth : CFG_MAX_DEPTH;
	int w;

	out[0] = '\0';
	for (i = 0; i < d && n < cap; i++) {
		if (c->path[i].key)
			w = snprintf(out + n, cap - n, "%s%.64s", i ? "." : "", c->path[i].key);
		else
			w = snprintf(out + n, cap - n, "[%zu]", c->path[i].index);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static int cfg_fail(struct cfg_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "FILE:LINE:COLUMN: path: what", the position being the current path's last element. */
static int cfg_fail(struct cfg_ctx *c, int code, const char *fmt, ...)
{
	char what[256], where[160];
	int line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cfg_path_format(c, where, sizeof(where));
	if (c->depth == 0)
		return tdxr_err_set(c->err, code, "%s: %s", c->file, what);
	if (c->text && c->depth <= CFG_MAX_DEPTH &&
	    cfg_scan_locate(c->text, c->len, c->path, c->depth, &line, &col) == 0)
		return tdxr_err_set(c->err, code, "%s:%d:%d: %s: %s", c->file, line, col, where, what);
	return tdxr_err_set(c->err, code, "%s: %s: %s", c->file, where, what);
}

/* o absent (NULL) = an empty object; otherwise it must be an object. */
static int cfg_section(struct cfg_ctx *c, json_t *parent, const char *key, json_t **out)
{
	json_t *v = json_object_get(parent, key);
	int rc;

	*out = c->empty;
	if (v == NULL)
		return 0;
	if (!json_is_object(v)) {
		cfg_push_key(c, key);
		rc = cfg_fail(c, TDXR_EINVAL, "must be an object");
		cfg_pop(c);
		return rc;
	}
	*out = v;
	return 0;
}

static int cfg_check_keys(struct cfg_ctx *c, json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;
	size_t i;
	int rc;

	json_object_foreach(o, k, v)
	{
		for (i = 0; allowed[i]; i++)
			if (strcmp(k, allowed[i]) == 0)
				break;
		if (allowed[i] == NULL) {
			cfg_push_key(c, k);
			rc = cfg_fail(c, TDXR_EINVAL, "unknown key (see docs/configuration.md)");
			cfg_pop(c);
			return rc;
		}
	}
	return 0;
}

/* ======================================================== typed getters */

enum cfg_str_kind {
	CFG_STR_ANY,      /* any non-empty string */
	CFG_STR_URL,      /* http:// or https:// with a host */
	CFG_STR_HOSTPORT, /* host:port or [v6]:port */
	CFG_STR_ABSPATH,  /* absolute path */
	CFG_STR_SHA256,   /* 64 hex digits, stored lower-case */
};

static int cfg_valid_url(const char *s)
{
	size_t i, skip;

	if (strncasecmp(s, "https://", 8) == 0)
		skip = 8;
	else if (strncasecmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return 0;
	if (s[skip] == '\0' || s[skip] == '/' || s[skip] == ':')
		return 0;
	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
			return 0;
	return 1;
}

static int cfg_valid_hostport(const char *s)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;
	size_t i, hlen;

	if (colon == NULL || colon == s)
		return 0;
	hlen = (size_t)(colon - s);
	if (s[0] == '[' && (hlen < 3 || s[hlen - 1] != ']'))
		return 0;
	if (s[0] != '[' && memchr(s, ':', hlen))
		return 0; /* a bare IPv6 address needs brackets */
	for (i = 0; i < hlen; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == '/' || (unsigned char)s[i] == 0x7f)
			return 0;
	return tdxr_parse_u64(colon + 1, 65535, &port, NULL) == 0 && port > 0;
}

static int cfg_valid_hex(const char *s, size_t n)
{
	size_t j;

	for (j = 0; s[j] && tdxr_hex_digit((unsigned char)s[j]) >= 0; j++)
		;
	return s[j] == '\0' && j == n;
}

static void cfg_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* A string value of key, validated; absent leaves *dst (the default) alone,
 * null sets NULL when nullable. */
static int cfg_get_str(struct cfg_ctx *c, json_t *o, const char *key, enum cfg_str_kind kind, int nullable,
                       char **dst)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	char *copy;
	int rc = 0;

	if (v == NULL)
		return 0;
	cfg_push_key(c, key);
	if (json_is_null(v) && nullable) {
		free(*dst);
		*dst = NULL;
		goto out;
	}
	if (!json_is_string(v)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be a string%s", nullable ? " or null" : "");
		goto out;
	}
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must not contain a NUL character");
		goto out;
	}
	if (*s == '\0') {
		rc = cfg_fail(c, TDXR_EINVAL, "must not be empty%s", nullable ? " (use null)" : "");
		goto out;
	}
	if (kind == CFG_STR_URL && !cfg_valid_url(s)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be an http:// or https:// URL");
		goto out;
	}
	if (kind == CFG_STR_HOSTPORT && !cfg_valid_hostport(s)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be host:port (port 1-65535, IPv6 in brackets)");
		goto out;
	}
	if (kind == CFG_STR_ABSPATH && s[0] != '/') {
		rc = cfg_fail(c, TDXR_EINVAL, "must be an absolute path");
		goto out;
	}
	if (kind == CFG_STR_SHA256 && !cfg_valid_hex(s, 64)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be exactly 64 hex digits");
		goto out;
	}
	copy = strdup(s);
	if (copy == NULL) {
		rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (kind == CFG_STR_SHA256)
		cfg_lower(copy);
	free(*dst);
	*dst = copy;
out:
	cfg_pop(c);
	return rc;
}

static int cfg_get_uint(struct cfg_ctx *c, json_t *o, const char *key, uint64_t min, uint64_t max,
                        uint64_t *dst)
{
	json_t *v = json_object_get(o, key);
	json_int_t i;
	int rc = 0;

	if (v == NULL)
		return 0;
	cfg_push_key(c, key);
	if (!json_is_integer(v)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be an integer");
		goto out;
	}
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be between %llu and %llu", (unsigned long long)min,
		              (unsigned long long)max);
		goto out;
	}
	*dst = (uint64_t)i;
out:
	cfg_pop(c);
	return rc;
}

static int cfg_get_unsigned(struct cfg_ctx *c, json_t *o, const char *key, unsigned min, unsigned max,
                            unsigned *dst)
{
	uint64_t v = *dst;
	int rc = cfg_get_uint(c, o, key, min, max, &v);

	if (rc == 0)
		*dst = (unsigned)v;
	return rc;
}

/* true/false; with nullable, null gives -1. */
static int cfg_get_bool(struct cfg_ctx *c, json_t *o, const char *key, int nullable, int *dst)
{
	json_t *v = json_object_get(o, key);
	int rc = 0;

	if (v == NULL)
		return 0;
	cfg_push_key(c, key);
	if (json_is_boolean(v))
		*dst = json_is_true(v);
	else if (nullable && json_is_null(v))
		*dst = -1;
	else
		rc = cfg_fail(c, TDXR_EINVAL, "must be true or false%s", nullable ? " or null" : "");
	cfg_pop(c);
	return rc;
}

static void cfg_strlist_free(struct config_strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* An array of strings. hexlen > 0: each exactly hexlen hex digits, stored lower-case. */
static int cfg_get_strlist(struct cfg_ctx *c, json_t *o, const char *key, size_t hexlen, size_t max,
                           int nonempty, struct config_strlist *dst)
{
	json_t *v = json_object_get(o, key), *e;
	struct config_strlist l = { NULL, 0 };
	size_t i, n;
	const char *s;
	int rc = 0;

	if (v == NULL)
		return 0;
	cfg_push_key(c, key);
	if (!json_is_array(v)) {
		rc = cfg_fail(c, TDXR_EINVAL, "must be an array of strings");
		goto out;
	}
	n = json_array_size(v);
	if (n > max || (nonempty && n == 0)) {
		rc =
		    cfg_fail(c, TDXR_EINVAL, "must have %s%zu entries", nonempty ? "1 to " : "at most ", max);
		goto out;
	}
	if (n) {
		l.v = calloc(n + 1, sizeof(*l.v));
		if (l.v == NULL) {
			rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	json_array_foreach(v, i, e)
	{
		cfg_push_index(c, i);
		s = json_is_string(e) ? json_string_value(e) : NULL;
		if (s == NULL || strlen(s) != json_string_length(e) || *s == '\0') {
			rc = cfg_fail(c, TDXR_EINVAL, "must be a non-empty string");
		} else if (hexlen && !cfg_valid_hex(s, hexlen)) {
			rc = cfg_fail(c, TDXR_EINVAL, "must be exactly %zu hex digits", hexlen);
		}
		cfg_pop(c);
		if (rc)
			goto out;
		l.v[l.n] = strdup(s);
		if (l.v[l.n] == NULL) {
			rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (hexlen)
			cfg_lower(l.v[l.n]);
		l.n++;
	}
	cfg_strlist_free(dst);
	*dst = l;
	l.v = NULL;
	l.n = 0;
out:
	cfg_strlist_free(&l);
	cfg_pop(c);
	return rc;
}

static int cfg_valid_env_name(const char *s)
{
	size_t i;

	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (i = 1; s[i]; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/*
 * A secret `key` of section o, from (lowest to highest precedence):
 * "key" inline (only in a private file) or "key_file" (a 0600 file), then the
 * environment: the variable named by "key_env", else fixed_env (may be NULL).
 * *dst stays NULL when no source gives one; the caller decides if it is required.
 */
static int cfg_get_secret(struct cfg_ctx *c, json_t *o, const char *key, const char *fixed_env,
                          struct tdxr_secret **dst)
{
	char kfile[64], kenv[64];
	json_t *v, *vf, *ve;
	struct tdxr_secret *sec = NULL, *envsec = NULL;
	struct tdxr_err e2;
	const char *s, *envname = NULL;
	int rc = 0;

	*dst = NULL;
	snprintf(kfile, sizeof(kfile), "%s_file", key);
	snprintf(kenv, sizeof(kenv), "%s_env", key);
	v = json_object_get(o, key);
	vf = json_object_get(o, kfile);
	ve = json_object_get(o, kenv);
	if (json_is_null(v))
		v = NULL;
	if (json_is_null(vf))
		vf = NULL;
	if (json_is_null(ve))
		ve = NULL;
	if (v && vf) {
		cfg_push_key(c, kfile);
		rc = cfg_fail(c, TDXR_EINVAL, "give either %s or %s, not both", key, kfile);
		cfg_pop(c);
		return rc;
	}
	if (v) {
		cfg_push_key(c, key);
		s = json_is_string(v) ? json_string_value(v) : NULL;
		if (s == NULL || strlen(s) != json_string_length(v) || *s == '\0')
			rc = cfg_fail(c, TDXR_EINVAL, "must be a non-empty string");
		else if (!c->file_private)
			rc = cfg_fail(c, TDXR_EAUTH,
			              "a secret inline needs a private config file, but it has mode %03o: "
			              "chmod 600 %s, or use %s or an environment variable",
			              c->file_mode, c->file, kfile);
		else if ((sec = tdxr_secret_new(s, strlen(s))) == NULL)
			rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
		if (s) /* Jansson's copy is ours to wipe: the secret now lives in sec only. */
			OPENSSL_cleanse((char *)(uintptr_t)s, strlen(s));
		cfg_pop(c);
		if (rc)
			goto out;
	}
	if (vf) {
		char *path = NULL;

		if ((rc = cfg_get_str(c, o, kfile, CFG_STR_ABSPATH, 0, &path)))
			goto out;
		rc = tdxr_secret_from_file(path, &sec, &e2);
		free(path);
		if (rc) {
			cfg_push_key(c, kfile);
			rc = cfg_fail(c, rc, "%s", e2.msg);
			cfg_pop(c);
			goto out;
		}
	}
	if (ve) {
		cfg_push_key(c, kenv);
		if (!json_is_string(ve) || !cfg_valid_env_name(json_string_value(ve)))
			rc = cfg_fail(c, TDXR_EINVAL,
			              "must name an environment variable ([A-Za-z_][A-Za-z0-9_]*)");
		else
			envname = json_string_value(ve);
		cfg_pop(c);
		if (rc)
			goto out;
	} else {
		envname = fixed_env;
	}
	if (envname) {
		rc = tdxr_secret_from_env(envname, &envsec, &e2);
		if (rc == TDXR_ENOTFOUND) {
			rc = 0;
			if (ve && sec == NULL) {
				cfg_push_key(c, kenv);
				rc = cfg_fail(c, TDXR_ENOTFOUND, "environment variable %s is not set",
				              envname);
				cfg_pop(c);
				goto out;
			}
		} else if (rc) {
			rc = tdxr_err_set(c->err, rc, "%s", e2.msg);
			goto out;
		} else {
			tdxr_secret_free(sec);
			sec = envsec; /* the environment overrides the file */
		}
	}
	*dst = sec;
	sec = NULL;
out:
	tdxr_secret_free(sec);
	return rc;
}

/* ============================================================ sections */

static const char *const top_keys[] = { "state_dir", "concurrency", "log",     "executor", "policy",
	                                "gitlab",    "github",      "metrics", NULL };
static const char *const log_keys[] = { "format", "level", NULL };
static const char *const executor_keys[] = { "kind", "ready_timeout_s", "phala", "dstack", "gateway", NULL };
static const char *const phala_keys[] = { "api_url",     "api_key",       "api_key_file",
	                                  "api_key_env", "instance_type", "node_id",
	                                  "image",       "compose_file",  NULL };
static const char *const dstack_keys[] = { "vmm_url", "image", "gateway_domain", "compose_file", NULL };
static const char *const gateway_keys[] = { "connect_to", "ca_file", NULL };
static const char *const policy_keys[] = {
	"accept_tcb", "allow_simulated", "allow_debug",   "allow_service_td", "mrtd", "rtmr0",
	"rtmr1",      "rtmr2",           "os_image_hash", "collateral",       NULL
};
static const char *const collateral_keys[] = { "pccs_url", "cache_dir", NULL };
static const char *const gitlab_keys[] = { "url", "token", "token_file", "token_env", "limit", NULL };
static const char *const github_keys[] = { "api_url", "uploads_url",     "repository", "organization",
	                                   "token",   "token_file",      "token_env",  "app",
	                                   "labels",  "runner_group_id", "runner",     "webhook",
	                                   NULL };
static const char *const app_keys[] = {
	"id", "installation_id", "private_key", "private_key_file", "private_key_env", NULL
};
static const char *const runner_keys[] = { "tarball_url", "sha256", "path_in_box", NULL };
static const char *const webhook_keys[] = { "listen", "secret", "secret_file", "secret_env", NULL };
static const char *const metrics_keys[] = { "listen", NULL };

static const char *const kind_names[] = { "local", "phala", "dstack" };

const char *config_executor_kind_name(enum config_executor_kind kind)
{
	return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

int config_executor_kind_parse(const char *s, enum config_executor_kind *out, struct tdxr_err *err)
{
	unsigned i;

	for (i = 0; s && i < 3; i++)
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum config_executor_kind)i;
			return 0;
		}
	return tdxr_err_set(err, TDXR_EINVAL, "executor kind '%.40s' is not local, phala or dstack",
	                    s ? s : "");
}

static int cfg_parse_log(struct cfg_ctx *c, json_t *root, struct config *cfg)
{
	char *fmt = NULL, *lvl = NULL;
	struct tdxr_err e2;
	json_t *o;
	int rc;

	if ((rc = cfg_section(c, root, "log", &o)))
		return rc;
	cfg_push_key(c, "log");
	if ((rc = cfg_check_keys(c, o, log_keys)) ||
	    (rc = cfg_get_str(c, o, "format", CFG_STR_ANY, 0, &fmt)) ||
	    (rc = cfg_get_str(c, o, "level", CFG_STR_ANY, 0, &lvl)))
		goto out;
	if (fmt && tdxr_log_parse(fmt, NULL, &cfg->log_format, &cfg->log_level, &e2)) {
		cfg_push_key(c, "format");
		rc = cfg_fail(c, TDXR_EINVAL, "must be \"text\" or \"json\"");
		cfg_pop(c);
		goto out;
	}
	if (lvl && tdxr_log_parse(NULL, lvl, &cfg->log_format, &cfg->log_level, &e2)) {
		cfg_push_key(c, "level");
		rc = cfg_fail(c, TDXR_EINVAL, "must be \"debug\", \"info\", \"warn\" or \"error\"");
		cfg_pop(c);
		goto out;
	}
out:
	cfg_pop(c);
	free(fmt);
	free(lvl);
	return rc;
}

static int cfg_parse_phala(struct cfg_ctx *c, json_t *o, struct config_phala *p)
{
	json_t *v;
	char num[32];
	int rc;

	if ((rc = cfg_check_keys(c, o, phala_keys)) ||
	    (rc = cfg_get_str(c, o, "api_url", CFG_STR_URL, 0, &p->api_url)) ||
	    (rc = cfg_get_secret(c, o, "api_key", CONFIG_ENV_PHALA_API_KEY, &p->api_key)) ||
	    (rc = cfg_get_str(c, o, "instance_type", CFG_STR_ANY, 0, &p->instance_type)) ||
	    (rc = cfg_get_str(c, o, "image", CFG_STR_ANY, 1, &p->image)) ||
	    (rc = cfg_get_str(c, o, "compose_file", CFG_STR_ABSPATH, 1, &p->compose_file)))
		return rc;
	v = json_object_get(o, "node_id");
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0) {
			cfg_push_key(c, "node_id");
			rc = cfg_fail(c, TDXR_EINVAL, "must not be negative");
			cfg_pop(c);
			return rc;
		}
		snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		free(p->node_id);
		if ((p->node_id = strdup(num)) == NULL)
			return tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
		return 0;
	}
	if (v && !json_is_string(v) && !json_is_null(v)) {
		cfg_push_key(c, "node_id");
		rc = cfg_fail(c, TDXR_EINVAL, "must be an integer, a string or null");
		cfg_pop(c);
		return rc;
	}
	return cfg_get_str(c, o, "node_id", CFG_STR_ANY, 1, &p->node_id);
}

static int cfg_parse_executor(struct cfg_ctx *c, json_t *root, struct config_executor *x)
{
	json_t *o, *sub;
	char *kind = NULL;
	struct tdxr_err e2;
	int rc;

	if ((rc = cfg_section(c, root, "executor", &o)))
		return rc;
	cfg_push_key(c, "executor");
	if ((rc = cfg_check_keys(c, o, executor_keys)) ||
	    (rc = cfg_get_str(c, o, "kind", CFG_STR_ANY, 0, &kind)))
		goto out;
	if (kind && config_executor_kind_parse(kind, &x->kind, &e2)) {
		cfg_push_key(c, "kind");
		rc = cfg_fail(c, TDXR_EINVAL, "must be \"local\", \"phala\" or \"dstack\"");
		cfg_pop(c);
		goto out;
	}
	if ((rc = cfg_get_unsigned(c, o, "ready_timeout_s", 1, CONFIG_TIMEOUT_MAX_S, &x->ready_timeout_s)))
		goto out;

	if ((rc = cfg_section(c, o, "phala", &sub)))
		goto out;
	cfg_push_key(c, "phala");
	rc = cfg_parse_phala(c, sub, &x->phala);
	cfg_pop(c);
	if (rc)
		goto out;

	if ((rc = cfg_section(c, o, "dstack", &sub)))
		goto out;
	cfg_push_key(c, "dstack");
	if (!(rc = cfg_check_keys(c, sub, dstack_keys)) &&
	    !(rc = cfg_get_str(c, sub, "vmm_url", CFG_STR_URL, 1, &x->dstack.vmm_url)) &&
	    !(rc = cfg_get_str(c, sub, "image", CFG_STR_ANY, 1, &x->dstack.image)) &&
	    !(rc = cfg_get_str(c, sub, "gateway_domain", CFG_STR_ANY, 1, &x->dstack.gateway_domain)))
		rc = cfg_get_str(c, sub, "compose_file", CFG_STR_ABSPATH, 1, &x->dstack.compose_file);
	cfg_pop(c);
	if (rc)
		goto out;

	if ((rc = cfg_section(c, o, "gateway", &sub)))
		goto out;
	cfg_push_key(c, "gateway");
	if (!(rc = cfg_check_keys(c, sub, gateway_keys)) &&
	    !(rc = cfg_get_str(c, sub, "connect_to", CFG_STR_HOSTPORT, 1, &x->gateway.connect_to)))
		rc = cfg_get_str(c, sub, "ca_file", CFG_STR_ABSPATH, 1, &x->gateway.ca_file);
	cfg_pop(c);
out:
	cfg_pop(c);
	free(kind);
	return rc;
}

static int cfg_parse_accept_tcb(struct cfg_ctx *c, json_t *o, unsigned *mask)
{
	struct config_strlist l = { NULL, 0 };
	enum attest_tcb_status st;
	unsigned m = 0;
	size_t i;
	int rc;

	if (json_object_get(o, "accept_tcb") == NULL)
		return 0;
	if ((rc = cfg_get_strlist(c, o, "accept_tcb", 0, ATTEST_TCB_UNKNOWN, 1, &l)))
		return rc;
	for (i = 0; i < l.n; i++) {
		st = attest_tcb_status_parse(l.v[i]);
		if (st == ATTEST_TCB_UNKNOWN) {
			cfg_push_key(c, "accept_tcb");
			cfg_push_index(c, i);
			rc = cfg_fail(
			    c, TDXR_EINVAL,
			    "unknown TCB status (UpToDate, SWHardeningNeeded, ConfigurationNeeded, "
			    "ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, "
			    "Revoked)");
			cfg_pop(c);
			cfg_pop(c);
			goto out;
		}
		m |= ATTEST_TCB_BIT(st);
	}
	*mask = m;
out:
	cfg_strlist_free(&l);
	return rc;
}

static int cfg_parse_policy(struct cfg_ctx *c, json_t *root, struct config_policy *p)
{
	json_t *o, *sub;
	int rc;

	if ((rc = cfg_section(c, root, "policy", &o)))
		return rc;
	cfg_push_key(c, "policy");
	if ((rc = cfg_check_keys(c, o, policy_keys)) || (rc = cfg_parse_accept_tcb(c, o, &p->accept_tcb)) ||
	    (rc = cfg_get_bool(c, o, "allow_simulated", 1, &p->allow_simulated)) ||
	    (rc = cfg_get_bool(c, o, "allow_debug", 0, &p->allow_debug)) ||
	    (rc = cfg_get_bool(c, o, "allow_service_td", 0, &p->allow_service_td)) ||
	    (rc = cfg_get_strlist(c, o, "mrtd", 96, CFG_MAX_LIST, 0, &p->mrtd)) ||
	    (rc = cfg_get_strlist(c, o, "rtmr0", 96, CFG_MAX_LIST, 0, &p->rtmr0)) ||
	    (rc = cfg_get_strlist(c, o, "rtmr1", 96, CFG_MAX_LIST, 0, &p->rtmr1)) ||
	    (rc = cfg_get_strlist(c, o, "rtmr2", 96, CFG_MAX_LIST, 0, &p->rtmr2)) ||
	    (rc = cfg_get_strlist(c, o, "os_image_hash", 64, CFG_MAX_LIST, 0, &p->os_image_hash)) ||
	    (rc = cfg_section(c, o, "collateral", &sub)))
		goto out;
	cfg_push_key(c, "collateral");
	if (!(rc = cfg_check_keys(c, sub, collateral_keys)) &&
	    !(rc = cfg_get_str(c, sub, "pccs_url", CFG_STR_URL, 0, &p->pccs_url)))
		rc = cfg_get_str(c, sub, "cache_dir", CFG_STR_ABSPATH, 1, &p->cache_dir);
	cfg_pop(c);
out:
	cfg_pop(c);
	return rc;
}

static int cfg_parse_gitlab_entry(struct cfg_ctx *c, json_t *o, size_t i, struct config_gitlab *g)
{
	int rc;

	if ((rc = cfg_check_keys(c, o, gitlab_keys)) ||
	    (rc = cfg_get_str(c, o, "url", CFG_STR_URL, 0, &g->url)) ||
	    (rc = cfg_get_unsigned(c, o, "limit", 0, CONFIG_CONCURRENCY_MAX, &g->limit)))
		return rc;
	if (g->url == NULL)
		return cfg_fail(c, TDXR_EINVAL, "missing required key \"url\"");
	if ((rc = cfg_get_secret(c, o, "token", i == 0 ? CONFIG_ENV_GITLAB_TOKEN : NULL, &g->token)))
		return rc;
	if (g->token == NULL)
		return cfg_fail(c, TDXR_EINVAL,
		                "missing the runner token: give token_file, token (in a 0600 file)%s",
		                i == 0 ? " or " CONFIG_ENV_GITLAB_TOKEN : " or token_env");
	return 0;
}

static int cfg_valid_name(const char *s, int want_slash)
{
	size_t i, slashes = 0;

	for (i = 0; s[i]; i++) {
		if (s[i] == '/') {
			if (i == 0 || s[i + 1] == '\0' || s[i + 1] == '/')
				return 0;
			slashes++;
		} else if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		             (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.')) {
			return 0;
		}
	}
	return i > 0 && slashes == (want_slash ? 1u : 0u);
}

static int cfg_parse_github_app(struct cfg_ctx *c, json_t *o, size_t i, struct config_github *g)
{
	const char *pem;
	int rc;

	cfg_push_key(c, "app");
	if ((rc = cfg_check_keys(c, o, app_keys)) ||
	    (rc = cfg_get_uint(c, o, "id", 1, INT64_MAX, &g->app_id)) ||
	    (rc = cfg_get_uint(c, o, "installation_id", 1, INT64_MAX, &g->app_installation_id)) ||
	    (rc = cfg_get_str(c, o, "private_key_file", CFG_STR_ABSPATH, 1, &g->app_private_key_file)) ||
	    (rc = cfg_get_secret(c, o, "private_key", i == 0 ? CONFIG_ENV_GITHUB_APP_KEY : NULL,
	                         &g->app_private_key)))
		goto out;
	if (g->app_id == 0 || g->app_installation_id == 0) {
		rc = cfg_fail(c, TDXR_EINVAL, "needs \"id\" and \"installation_id\"");
		goto out;
	}
	if (g->app_private_key == NULL) {
		rc = cfg_fail(c, TDXR_EINVAL,
		              "missing the App private key: give private_key_file (mode 0600)%s",
		              i == 0 ? " or " CONFIG_ENV_GITHUB_APP_KEY : " or private_key_env");
		goto out;
	}
	pem = tdxr_secret_str(g->app_private_key);
	if (strstr(pem, "-----BEGIN ") == NULL || strstr(pem, "PRIVATE KEY-----") == NULL) {
		rc = cfg_fail(c, TDXR_EINVAL, "the App private key is not a PEM private key");
		goto out;
	}
	g->have_app = 1;
out:
	cfg_pop(c);
	return rc;
}

static int cfg_parse_github_entry(struct cfg_ctx *c, json_t *o, size_t i, struct config_github *g)
{
	json_t *app, *sub;
	int rc;

	if ((rc = cfg_check_keys(c, o, github_keys)) ||
	    (rc = cfg_get_str(c, o, "api_url", CFG_STR_URL, 0, &g->api_url)) ||
	    (rc = cfg_get_str(c, o, "uploads_url", CFG_STR_URL, 0, &g->uploads_url)) ||
	    (rc = cfg_get_str(c, o, "repository", CFG_STR_ANY, 1, &g->repository)) ||
	    (rc = cfg_get_str(c, o, "organization", CFG_STR_ANY, 1, &g->organization)) ||
	    (rc = cfg_get_strlist(c, o, "labels", 0, CFG_MAX_LABELS, 1, &g->labels)) ||
	    (rc = cfg_get_uint(c, o, "runner_group_id", 1, INT64_MAX, &g->runner_group_id)))
		return rc;
	if (g->repository && !cfg_valid_name(g->repository, 1)) {
		cfg_push_key(c, "repository");
		rc = cfg_fail(c, TDXR_EINVAL, "must be \"owner/repo\"");
		cfg_pop(c);
		return rc;
	}
	if (g->organization && !cfg_valid_name(g->organization, 0)) {
		cfg_push_key(c, "organization");
		rc = cfg_fail(c, TDXR_EINVAL, "must be an organization name");
		cfg_pop(c);
		return rc;
	}
	if ((g->repository == NULL) == (g->organization == NULL))
		return cfg_fail(c, TDXR_EINVAL, "give exactly one of \"repository\" and \"organization\"");

	/* Auth: a token or an App. The fixed token variable is consulted only without an App. */
	app = json_object_get(o, "app");
	if (app && !json_is_null(app) && !json_is_object(app)) {
		cfg_push_key(c, "app");
		rc = cfg_fail(c, TDXR_EINVAL, "must be an object");
		cfg_pop(c);
		return rc;
	}
	if (json_is_null(app))
		app = NULL;
	if ((rc = cfg_get_secret(c, o, "token", i == 0 && app == NULL ? CONFIG_ENV_GITHUB_TOKEN : NULL,
	                         &g->token)))
		return rc;
	if (app && g->token) {
		cfg_push_key(c, "app");
		rc = cfg_fail(c, TDXR_EINVAL, "give either a token or an app, not both");
		cfg_pop(c);
		return rc;
	}
	if (app && (rc = cfg_parse_github_app(c, app, i, g)))
		return rc;
	if (!app && g->token == NULL)
		return cfg_fail(c, TDXR_EINVAL,
		                "missing auth: give \"app\" or a token (token_file, token_env%s)",
		                i == 0 ? ", " CONFIG_ENV_GITHUB_TOKEN : "");

	if ((rc = cfg_section(c, o, "runner", &sub)))
		return rc;
	cfg_push_key(c, "runner");
	if ((rc = cfg_check_keys(c, sub, runner_keys)) ||
	    (rc = cfg_get_str(c, sub, "tarball_url", CFG_STR_URL, 1, &g->runner_tarball_url)))
		goto runner_out;
	if ((rc = cfg_get_str(c, sub, "sha256", CFG_STR_SHA256, 1, &g->runner_sha256)))
		goto runner_out;
	if ((rc = cfg_get_str(c, sub, "path_in_box", CFG_STR_ABSPATH, 1, &g->runner_path_in_box)))
		goto runner_out;
	if ((g->runner_tarball_url == NULL) != (g->runner_sha256 == NULL)) {
		rc = cfg_fail(c, TDXR_EINVAL, "\"tarball_url\" and \"sha256\" go together");
		goto runner_out;
	}
	if (g->runner_tarball_url && json_object_get(sub, "path_in_box")) {
		rc = cfg_fail(c, TDXR_EINVAL, "give either tarball_url + sha256 or path_in_box, not both");
		goto runner_out;
	}
	if (g->runner_tarball_url) {
		free(g->runner_path_in_box);
		g->runner_path_in_box = NULL;
	}
runner_out:
	cfg_pop(c);
	if (rc)
		return rc;

	if ((rc = cfg_section(c, o, "webhook", &sub)))
		return rc;
	cfg_push_key(c, "webhook");
	if (!(rc = cfg_check_keys(c, sub, webhook_keys)) &&
	    !(rc = cfg_get_str(c, sub, "listen", CFG_STR_HOSTPORT, 1, &g->webhook_listen)) &&
	    !(rc = cfg_get_secret(c, sub, "secret", i == 0 ? CONFIG_ENV_GITHUB_WEBHOOK : NULL,
	                          &g->webhook_secret)) &&
	    g->webhook_listen && g->webhook_secret == NULL)
		rc = cfg_fail(c, TDXR_EINVAL, "a webhook listener needs a secret (secret_file, secret_env%s)",
		              i == 0 ? ", " CONFIG_ENV_GITHUB_WEBHOOK : "");
	cfg_pop(c);
	return rc;
}

static int cfg_github_defaults(struct config_github *g)
{
	g->api_url = strdup("https://api.github.com");
	g->uploads_url = strdup("https://uploads.github.com");
	g->runner_path_in_box = strdup("/opt/actions-runner");
	g->runner_group_id = 1;
	g->labels.v = calloc(3, sizeof(char *));
	if (g->labels.v) {
		g->labels.v[0] = strdup("self-hosted");
		g->labels.v[1] = strdup("tdx");
		g->labels.n = 2;
	}
	return g->api_url && g->uploads_url && g->runner_path_in_box && g->labels.v && g->labels.v[0] &&
	               g->labels.v[1]
	           ? 0
	           : TDXR_ENOMEM;
}

static int cfg_parse_lists(struct cfg_ctx *c, json_t *root, struct config *cfg)
{
	json_t *arr, *e;
	size_t i, n;
	int rc = 0, gh;

	for (gh = 0; gh < 2; gh++) {
		const char *key = gh ? "github" : "gitlab";

		arr = json_object_get(root, key);
		if (arr == NULL || json_is_null(arr))
			continue;
		cfg_push_key(c, key);
		n = json_array_size(arr);
		if (!json_is_array(arr) || n > CFG_MAX_ENTRIES) {
			rc = cfg_fail(c, TDXR_EINVAL, "must be an array of at most %d objects",
			              CFG_MAX_ENTRIES);
			goto out;
		}
		if (n && gh) {
			cfg->github = calloc(n, sizeof(*cfg->github));
			rc = cfg->github ? 0 : TDXR_ENOMEM;
		} else if (n) {
			cfg->gitlab = calloc(n, sizeof(*cfg->gitlab));
			rc = cfg->gitlab ? 0 : TDXR_ENOMEM;
		}
		if (rc) {
			rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		json_array_foreach(arr, i, e)
		{
			cfg_push_index(c, i);
			if (!json_is_object(e)) {
				rc = cfg_fail(c, TDXR_EINVAL, "must be an object");
			} else if (gh) {
				cfg->n_github++;
				if (cfg_github_defaults(&cfg->github[i]))
					rc = tdxr_err_set(c->err, TDXR_ENOMEM, "out of memory");
				else
					rc = cfg_parse_github_entry(c, e, i, &cfg->github[i]);
			} else {
				cfg->n_gitlab++;
				rc = cfg_parse_gitlab_entry(c, e, i, &cfg->gitlab[i]);
			}
			cfg_pop(c);
			if (rc)
				goto out;
		}
		cfg_pop(c);
	}
	return 0;
out:
	cfg_pop(c);
	return rc;
}

static int cfg_parse_root(struct cfg_ctx *c, json_t *root, struct config *cfg)
{
	json_t *o;
	int rc;

	if (!json_is_object(root))
		return cfg_fail(c, TDXR_EINVAL, "the config must be a JSON object");
	if ((rc = cfg_check_keys(c, root, top_keys)) ||
	    (rc = cfg_get_str(c, root, "state_dir", CFG_STR_ABSPATH, 0, &cfg->state_dir)) ||
	    (rc = cfg_get_unsigned(c, root, "concurrency", 1, CONFIG_CONCURRENCY_MAX, &cfg->concurrency)) ||
	    (rc = cfg_parse_log(c, root, cfg)) || (rc = cfg_parse_executor(c, root, &cfg->executor)) ||
	    (rc = cfg_parse_policy(c, root, &cfg->policy)) || (rc = cfg_parse_lists(c, root, cfg)) ||
	    (rc = cfg_section(c, root, "metrics", &o)))
		return rc;
	cfg_push_key(c, "metrics");
	if (!(rc = cfg_check_keys(c, o, metrics_keys)))
		rc = cfg_get_str(c, o, "listen", CFG_STR_HOSTPORT, 1, &cfg->metrics_listen);
	cfg_pop(c);
	return rc;
}

/* ============================================================ public API */

static int cfg_new_defaults(struct config **out, struct tdxr_err *err)
{
	struct config *cfg;

	*out = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	cfg->concurrency = 1;
	cfg->log_format = TDXR_LOG_TEXT;
	cfg->log_level = TDXR_LOG_INFO;
	cfg->executor.kind = CONFIG_EXECUTOR_LOCAL;
	cfg->executor.ready_timeout_s = 600;
	cfg->executor.phala.api_url = strdup("https://cloud-api.phala.com/api/v1");
	cfg->executor.phala.instance_type = strdup("tdx.small");
	cfg->policy.accept_tcb = ATTEST_TCB_DEFAULT_ACCEPT;
	cfg->policy.allow_simulated = -1;
	cfg->policy.pccs_url = strdup("https://api.trustedservices.intel.com");
	if (!cfg->executor.phala.api_url || !cfg->executor.phala.instance_type || !cfg->policy.pccs_url) {
		config_free(cfg);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	*out = cfg;
	return 0;
}

/* Parses text (NULL = no file) into a fresh config with defaults. */
static int cfg_build(const char *file, const char *text, size_t len, unsigned mode, struct config **out,
                     struct tdxr_err *err)
{
	struct config *cfg = NULL;
	struct cfg_ctx c;
	json_error_t jerr;
	json_t *root = NULL;
	int rc;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.file = file ? file : "built-in defaults";
	c.text = text;
	c.len = len;
	c.file_mode = mode & 0777;
	c.file_private = (mode & 077) == 0;
	c.err = err;
	if ((rc = cfg_new_defaults(&cfg, err)))
		goto out;
	c.empty = json_object();
	if (text) {
		root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
		if (root == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "%s:%d:%d: %s", c.file, jerr.line, jerr.column,
			                  jerr.text);
			goto out;
		}
	} else {
		root = json_object();
	}
	if (c.empty == NULL || root == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (file && (cfg->source = strdup(file)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = cfg_parse_root(&c, root, cfg)))
		goto out;
	if (cfg->state_dir == NULL && (rc = config_default_state_dir(&cfg->state_dir, err))) {
		tdxr_err_prefix(err, "%s: state_dir has no default (set it)", c.file);
		goto out;
	}
	if ((rc = config_check_executor(cfg, cfg->executor.kind, err))) {
		tdxr_err_prefix(err, "%s", c.file);
		goto out;
	}
	*out = cfg;
	cfg = NULL;
out:
	json_decref(root);
	json_decref(c.empty);
	config_free(cfg);
	return rc;
}

int config_defaults(struct config **out, struct tdxr_err *err)
{
	return cfg_build(NULL, NULL, 0, 0600, out, err);
}

int config_load(const char *path, struct config **out, struct tdxr_err *err)
{
	char *defpath = NULL;
	uint8_t *text = NULL;
	struct stat st, st2;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (path == NULL) {
		if ((rc = config_default_path(&defpath, err)))
			return rc;
		if (stat(defpath, &st) != 0 && errno == ENOENT) {
			free(defpath);
			return config_defaults(out, err);
		}
		path = defpath;
	}
	if (stat(path, &st) != 0) {
		rc = tdxr_err_set(err, errno == ENOENT ? TDXR_ENOTFOUND : TDXR_EIO, "config file %s: %s",
		                  path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "config file %s is not a regular file", path);
		goto out;
	}
	if ((rc = tdxr_file_read(path, TDXR_CAP_CONFIG, &text, &len, err)))
		goto out;
	/* The mode decides whether inline secrets are allowed: make sure it is this file's. */
	if (stat(path, &st2) != 0 || st2.st_ino != st.st_ino || st2.st_dev != st.st_dev ||
	    st2.st_mode != st.st_mode) {
		rc = tdxr_err_set(err, TDXR_EIO, "config file %s changed while it was read; try again", path);
		goto out;
	}
	rc = cfg_build(path, (const char *)text, len, (unsigned)st.st_mode, out, err);
out:
	if (text) {
		OPENSSL_cleanse(text, len);
		free(text);
	}
	free(defpath);
	return rc;
}

static void cfg_github_dispose(struct config_github *g)
{
	free(g->api_url);
	free(g->uploads_url);
	free(g->repository);
	free(g->organization);
	tdxr_secret_free(g->token);
	free(g->app_private_key_file);
	tdxr_secret_free(g->app_private_key);
	cfg_strlist_free(&g->labels);
	free(g->runner_tarball_url);
	free(g->runner_sha256);
	free(g->runner_path_in_box);
	free(g->webhook_listen);
	tdxr_secret_free(g->webhook_secret);
}

void config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	free(cfg->source);
	free(cfg->state_dir);
	free(cfg->executor.phala.api_url);
	tdxr_secret_free(cfg->executor.phala.api_key);
	free(cfg->executor.phala.instance_type);
	free(cfg->executor.phala.node_id);
	free(cfg->executor.phala.image);
	free(cfg->executor.phala.compose_file);
	free(cfg->executor.dstack.vmm_url);
	free(cfg->executor.dstack.image);
	free(cfg->executor.dstack.gateway_domain);
	free(cfg->executor.dstack.compose_file);
	free(cfg->executor.gateway.connect_to);
	free(cfg->executor.gateway.ca_file);
	cfg_strlist_free(&cfg->policy.mrtd);
	cfg_strlist_free(&cfg->policy.rtmr0);
	cfg_strlist_free(&cfg->policy.rtmr1);
	cfg_strlist_free(&cfg->policy.rtmr2);
	cfg_strlist_free(&cfg->policy.os_image_hash);
	free(cfg->policy.pccs_url);
	free(cfg->policy.cache_dir);
	for (i = 0; i < cfg->n_gitlab; i++) {
		free(cfg->gitlab[i].url);
		tdxr_secret_free(cfg->gitlab[i].token);
	}
	free(cfg->gitlab);
	for (i = 0; i < cfg->n_github; i++)
		cfg_github_dispose(&cfg->github[i]);
	free(cfg->github);
	free(cfg->metrics_listen);
	free(cfg);
}

int config_check_executor(const struct config *cfg, enum config_executor_kind kind, struct tdxr_err *err)
{
	switch (kind) {
	case CONFIG_EXECUTOR_LOCAL: return 0;
	case CONFIG_EXECUTOR_PHALA:
		if (cfg->executor.phala.api_key == NULL)
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "executor phala needs an API key: set %s or executor.phala.api_key_file",
			    CONFIG_ENV_PHALA_API_KEY);
		return 0;
	case CONFIG_EXECUTOR_DSTACK:
		if (cfg->executor.dstack.vmm_url == NULL || cfg->executor.dstack.image == NULL)
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "executor dstack needs executor.dstack.vmm_url and executor.dstack.image");
		return 0;
	}
	return tdxr_err_set(err, TDXR_EINVAL, "unknown executor kind %d", (int)kind);
}

int config_allow_simulated(const struct config *cfg, enum config_executor_kind kind)
{
	if (cfg->policy.allow_simulated >= 0)
		return cfg->policy.allow_simulated;
	return kind == CONFIG_EXECUTOR_LOCAL;
}

void config_attest_policy(const struct config *cfg, enum config_executor_kind kind, struct attest_policy *out)
{
	attest_policy_init(out);
	out->accept_tcb = cfg->policy.accept_tcb;
	out->allow_debug = cfg->policy.allow_debug;
	out->allow_service_td = cfg->policy.allow_service_td;
	out->allow_simulated = config_allow_simulated(cfg, kind);
	out->mrtd = (const char *const *)cfg->policy.mrtd.v;
	out->rtmr0 = (const char *const *)cfg->policy.rtmr0.v;
	out->rtmr1 = (const char *const *)cfg->policy.rtmr1.v;
	out->rtmr2 = (const char *const *)cfg->policy.rtmr2.v;
	out->os_image_hash = (const char *const *)cfg->policy.os_image_hash.v;
}

/* mkdir -p of path's parent directory, new directories 0700. */
static int cfg_mkdir_parent(const char *path, struct tdxr_err *err)
{
	char *dir = strdup(path), *p;
	int rc = 0;

	if (dir == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	p = strrchr(dir, '/');
	if (p == NULL || p == dir)
		goto out;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = tdxr_err_set(err, TDXR_EIO, "cannot create %s: %s", dir, strerror(errno));
			goto out;
		}
		*p = '/';
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		rc = tdxr_err_set(err, TDXR_EIO, "cannot create %s: %s", dir, strerror(errno));
out:
	free(dir);
	return rc;
}

int config_write_register(const char *path, const char *gitlab_url, const char *token, struct tdxr_err *err)
{
	json_t *root = NULL;
	char *text = NULL;
	size_t i, len;
	int rc;

	if (gitlab_url == NULL || !cfg_valid_url(gitlab_url))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "register: the GitLab URL must be an http:// or https:// URL");
	if (token == NULL || *token == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "register: the runner token is empty");
	for (i = 0; token[i]; i++)
		if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] == 0x7f)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "register: the runner token contains a space or "
			                    "control character");
	if ((rc = cfg_mkdir_parent(path, err)))
		return rc;
	root = json_pack("{s:{s:s},s:[{s:s,s:s}]}", "executor", "kind", "local", "gitlab", "url", gitlab_url,
	                 "token", token);
	if (root)
		text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (text == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "register: cannot build the config");
		goto out;
	}
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves room only for the NUL: replace it, write len + 1 */
	rc = tdxr_file_write_atomic(path, text, len + 1, 0600, err);
	text[len] = '\0';
out:
	if (text) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	json_decref(root);
	return rc;
}
