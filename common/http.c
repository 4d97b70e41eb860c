/*
 * http.c - the HTTP client: one libcurl easy handle per struct http_client,
 * reset and fully reconfigured before every request (curl_easy_reset keeps the
 * live connections, so keep-alive still works), bodies from memory, from a file
 * (read callback) or as multipart (curl_mime_filedata streams from disk).
 *
 * Invariants: a response body over max_body, or headers over their bounds, fail
 * the request (never a truncated success); failure leaves resp->body empty; the
 * header list, which may hold credentials, is wiped before it is freed; every
 * message goes through http_url_redact and a scrub of the request's secrets
 * (URL userinfo, secret query values, values of credential-looking headers).
 * Trust boundary: all bytes from the server are untrusted; the request comes
 * from our own code but its header lines are still checked for CR/LF injection.
 */
#include "common/http.h"

#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef TDXR_VERSION
#define TDXR_VERSION "0"
#endif

#define HTTP_LOG "http"
#define REDACTED "[REDACTED]"
#define WHERE_URL_MAX 150u  /* URL bytes in a message */
#define SNIPPET_MAX 120u    /* body bytes in a status message */
#define SCRUB_MAX 24u       /* secrets tracked per request */
#define SCRUB_MIN_LEN 4u    /* shorter strings are not scrubbed from messages */
#define RETRY_AFTER_MAX 64u /* longest Retry-After / Date value we parse */

enum { ABORT_NONE = 0, ABORT_BODY, ABORT_HDR_BIG, ABORT_HDR_BAD, ABORT_NOMEM };

struct http_client {
	CURL *curl;
	struct curl_slist *connect_to;
	char *ca_file;
	char *user_agent;
	long connect_ms;
	long timeout_ms;
	size_t max_body;
	int allow_http;
	char errbuf[CURL_ERROR_SIZE];
};

/* ============================================================ global init */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;

static void http_global_init(void)
{
	g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ================================================================ helpers */

const char *http_method_name(enum http_method m)
{
	switch (m) {
	case HTTP_GET: return "GET";
	case HTTP_POST: return "POST";
	case HTTP_PUT: return "PUT";
	case HTTP_PATCH: return "PATCH";
	case HTTP_DELETE: return "DELETE";
	}
	return "?";
}

/* Bounded string writer: keeps a NUL, marks truncation with "...". */
struct sw {
	char *p;
	size_t cap;
	size_t len;
	int trunc;
};

static void sw_init(struct sw *w, char *p, size_t cap)
{
	w->p = p;
	w->cap = cap;
	w->len = 0;
	w->trunc = 0;
	if (cap > 0)
		p[0] = '\0';
}

static void sw_put(struct sw *w, const char *s, size_t n)
{
	size_t room;

	if (w->cap == 0)
		return;
	room = w->cap - 1 - w->len;
	if (n > room) {
		n = room;
		w->trunc = 1;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

static void sw_end(struct sw *w)
{
	if (w->trunc && w->cap >= 4)
		memcpy(w->p + w->cap - 4, "...", 4);
}

/* Does a query parameter or header name look like it carries a credential? */
static int name_is_secret(const char *n, size_t len)
{
	static const char *const words[] = { "token",  "key",           "secret",     "passw",
		                             "pwd",    "signature",     "credential", "session",
		                             "cookie", "authorization", "sig" };
	char low[64];
	size_t i;

	if (len == 0)
		return 0;
	if (len >= sizeof(low))
		return 1; /* an odd, long name: err on the safe side */
	for (i = 0; i < len; i++)
		low[i] = (char)((n[i] >= 'A' && n[i] <= 'Z') ? n[i] - 'A' + 'a' : n[i]);
	low[len] = '\0';
	if (strcmp(low, "auth") == 0)
		return 1;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(low, words[i]) != NULL)
			return 1;
	return 0;
}

void http_url_redact(const char *url, char *out, size_t cap)
{
	struct sw w;
	const char *p, *auth, *q;
	size_t alen;

	sw_init(&w, out, cap);
	if (url == NULL)
		return;
	p = strstr(url, "://");
	auth = p ? p + 3 : url;
	sw_put(&w, url, (size_t)(auth - url));
	alen = strcspn(auth, "/?#");
	{
		const char *at = NULL, *s;

		for (s = auth; s < auth + alen; s++)
			if (*s == '@')
				at = s;
		if (at != NULL) {
			sw_put(&w, REDACTED, strlen(REDACTED));
			sw_put(&w, at, (size_t)(auth + alen - at));
		} else {
			sw_put(&w, auth, alen);
		}
	}
	p = auth + alen;
	q = p + strcspn(p, "?#");
	sw_put(&w, p, (size_t)(q - p));
	if (*q == '?') {
		q++;
		sw_put(&w, "?", 1);
		while (*q != '\0' && *q != '#') {
			size_t pl = strcspn(q, "&#");
			size_t nl = strcspn(q, "=&#");

			if (nl < pl && name_is_secret(q, nl)) {
				sw_put(&w, q, nl + 1);
				sw_put(&w, REDACTED, strlen(REDACTED));
			} else {
				sw_put(&w, q, pl);
			}
			q += pl;
			if (*q == '&') {
				sw_put(&w, "&", 1);
				q++;
			}
		}
	}
	sw_end(&w);
}

/* Secrets of one request, to be scrubbed from any message (borrowed spans). */
struct scrub {
	const char *s[SCRUB_MAX];
	size_t n[SCRUB_MAX];
	size_t count;
};

static void scrub_add(struct scrub *sc, const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n < SCRUB_MIN_LEN || sc->count >= SCRUB_MAX)
		return;
	sc->s[sc->count] = s;
	sc->n[sc->count] = n;
	sc->count++;
}

static void scrub_collect(const struct http_request *req, struct scrub *sc)
{
	const char *url = req->url, *p, *auth, *q;
	size_t alen, i;

	sc->count = 0;
	if (url != NULL) {
		p = strstr(url, "://");
		auth = p ? p + 3 : url;
		alen = strcspn(auth, "/?#");
		for (i = alen; i > 0; i--) {
			if (auth[i - 1] == '@') {
				const char *colon = memchr(auth, ':', i - 1);

				scrub_add(sc, auth, i - 1); /* user:password */
				if (colon != NULL)
					scrub_add(sc, colon + 1, (size_t)(auth + i - 1 - colon - 1));
				break;
			}
		}
		q = strchr(auth + alen, '?');
		while (q != NULL && *q != '\0' && *q != '#') {
			size_t pl, nl;

			q++;
			pl = strcspn(q, "&#");
			nl = strcspn(q, "=&#");
			if (nl < pl && name_is_secret(q, nl))
				scrub_add(sc, q + nl + 1, pl - nl - 1);
			q += pl;
		}
	}
	for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
		const char *h = req->headers[i], *colon = strchr(h, ':'), *v, *sp;

		if (colon == NULL || !name_is_secret(h, (size_t)(colon - h)))
			continue;
		v = colon + 1;
		scrub_add(sc, v, strlen(v));
		sp = strrchr(v, ' '); /* "Bearer <token>", "Basic <b64>" */
		if (sp != NULL)
			scrub_add(sc, sp + 1, strlen(sp + 1));
	}
	/* longest first, so a secret that contains another is replaced whole */
	for (i = 1; i < sc->count; i++) {
		size_t j;

		for (j = i; j > 0 && sc->n[j - 1] < sc->n[j]; j--) {
			const char *ts = sc->s[j];
			size_t tn = sc->n[j];

			sc->s[j] = sc->s[j - 1];
			sc->n[j] = sc->n[j - 1];
			sc->s[j - 1] = ts;
			sc->n[j - 1] = tn;
		}
	}
}

/* Replaces every tracked secret in msg (NUL-terminated, capacity cap) by REDACTED. */
static void scrub_apply(const struct scrub *sc, char *msg, size_t cap)
{
	char tmp[512];
	size_t k;

	if (cap > sizeof(tmp))
		cap = sizeof(tmp);
	for (k = 0; k < sc->count; k++) {
		struct sw w;
		const char *p = msg, *hit;

		sw_init(&w, tmp, cap);
		while ((hit = memmem(p, strlen(p), sc->s[k], sc->n[k])) != NULL) {
			sw_put(&w, p, (size_t)(hit - p));
			sw_put(&w, REDACTED, strlen(REDACTED));
			p = hit + sc->n[k];
		}
		if (p == msg)
			continue;
		sw_put(&w, p, strlen(p));
		sw_end(&w);
		memcpy(msg, tmp, w.len + 1);
	}
}

/* Sets err to "<where>: <reason>" with the request's secrets scrubbed. */
static int fail(struct tdxr_err *err, const struct scrub *sc, int code, const char *where, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

static int fail(struct tdxr_err *err, const struct scrub *sc, int code, const char *where, const char *fmt,
                ...)
{
	char reason[256], msg[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	if (vsnprintf(reason, sizeof(reason), fmt, ap) < 0)
		reason[0] = '\0';
	va_end(ap);
	if ((size_t)snprintf(msg, sizeof(msg), "%s: %s", where, reason) >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	if (sc != NULL)
		scrub_apply(sc, msg, sizeof(msg));
	return tdxr_err_set(err, code, "%s", msg);
}

/* host[:port] at p followed by end, '/', '?' or '#'. */
static int host_is(const char *p, size_t len, const char *host)
{
	size_t hl = strlen(host), i;

	if (len < hl || strncasecmp(p, host, hl) != 0)
		return 0;
	i = hl;
	if (i < len && p[i] == ':') {
		i++;
		if (i == len)
			return 0;
		while (i < len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	return i == len;
}

/* Host part (after any userinfo) of the authority of url; *len its length. */
static const char *url_host(const char *url, size_t *len)
{
	const char *p = strstr(url, "://"), *auth, *s, *host;
	size_t alen;

	auth = p ? p + 3 : url;
	alen = strcspn(auth, "/?#");
	host = auth;
	for (s = auth; s < auth + alen; s++)
		if (*s == '@')
			host = s + 1;
	*len = (size_t)(auth + alen - host);
	return host;
}

static int url_is_loopback(const char *url)
{
	size_t n;
	const char *h = url_host(url, &n);

	return host_is(h, n, "127.0.0.1") || host_is(h, n, "localhost") || host_is(h, n, "[::1]");
}

static int url_check(const struct http_client *c, const char *url, const char *where, struct tdxr_err *err)
{
	size_t i, hl;
	int plain;

	if (url == NULL || url[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "%s: no URL", where);
	if (strlen(url) > HTTP_URL_MAX)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: URL longer than %u bytes", where, HTTP_URL_MAX);
	for (i = 0; url[i]; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f || url[i] == '\\')
			return tdxr_err_set(err, TDXR_EINVAL, "%s: URL contains a space or control character",
			                    where);
	if (strncasecmp(url, "https://", 8) == 0)
		plain = 0;
	else if (strncasecmp(url, "http://", 7) == 0)
		plain = 1;
	else
		return tdxr_err_set(err, TDXR_EINVAL, "%s: URL must start with https://", where);
	url_host(url, &hl);
	if (hl == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: URL has no host", where);
	if (plain && !c->allow_http && !url_is_loopback(url))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "%s: plain http:// is only allowed to loopback; use https://", where);
	return 0;
}

/* "Name: value": a token name, no CR/LF anywhere (header injection). */
static int header_check(const char *h)
{
	size_t i;
	const char *colon = strchr(h, ':');

	if (colon == NULL || colon == h)
		return -1;
	for (i = 0; h + i < colon; i++) {
		unsigned char ch = (unsigned char)h[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch) != NULL)
			return -1;
	}
	for (i = 0; h[i]; i++)
		if (h[i] == '\r' || h[i] == '\n')
			return -1;
	return 0;
}

static void slist_wipe_free(struct curl_slist *l)
{
	struct curl_slist *s;

	for (s = l; s != NULL; s = s->next)
		if (s->data != NULL)
			OPENSSL_cleanse(s->data, strlen(s->data));
	curl_slist_free_all(l);
}

/* ================================================================= client */

int http_client_new(const struct http_client_opts *opts, struct http_client **out, struct tdxr_err *err)
{
	static const struct http_client_opts defaults;
	struct http_client *c = NULL;
	const struct http_client_opts *o = opts ? opts : &defaults;
	int rc = 0;

	*out = NULL;
	pthread_once(&g_once, http_global_init);
	if (g_init_rc != CURLE_OK)
		return tdxr_err_set(err, TDXR_ERROR, "http: libcurl initialisation failed");
	if (o->timeout_ms < 0 || o->connect_timeout_ms < 0)
		return tdxr_err_set(err, TDXR_EINVAL, "http: negative timeout");
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : HTTP_TIMEOUT_MS_DEFAULT;
	c->connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : HTTP_CONNECT_MS_DEFAULT;
	if (c->connect_ms > c->timeout_ms)
		c->connect_ms = c->timeout_ms;
	c->max_body = o->max_body > 0 ? o->max_body : TDXR_CAP_API;
	c->allow_http = o->allow_http != 0;
	if (o->connect_to != NULL) {
		size_t i, colons = 0;

		for (i = 0; o->connect_to[i]; i++) {
			colons += o->connect_to[i] == ':';
			if ((unsigned char)o->connect_to[i] <= 0x20 || o->connect_to[i] == 0x7f)
				colons = 99;
		}
		if (colons != 3 || i > 512) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "http: connect_to must be host:port:host2:port2 (one entry)");
			goto out;
		}
		c->connect_to = curl_slist_append(NULL, o->connect_to);
		if (c->connect_to == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	if ((o->ca_file != NULL && (c->ca_file = strdup(o->ca_file)) == NULL) ||
	    (c->user_agent = strdup(o->user_agent ? o->user_agent : "tdx-runner/" TDXR_VERSION)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (strpbrk(c->user_agent, "\r\n") != NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "http: user agent has a line break");
		goto out;
	}
	c->curl = curl_easy_init();
	if (c->curl == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "http: curl_easy_init failed");
		goto out;
	}
	*out = c;
	c = NULL;
out:
	http_client_free(c);
	return rc;
}

void http_client_free(struct http_client *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->connect_to);
	free(c->ca_file);
	free(c->user_agent);
	free(c);
}

/* ================================================================ response */

void http_response_init(struct http_response *r)
{
	memset(r, 0, sizeof(*r));
	tdxr_buf_init(&r->body, TDXR_CAP_API);
	tdxr_buf_init(&r->hdr_store, HTTP_HEADER_BYTES);
}

void http_response_dispose(struct http_response *r)
{
	if (r == NULL)
		return;
	tdxr_buf_dispose(&r->body);
	tdxr_buf_dispose(&r->hdr_store);
	r->n_headers = 0;
	r->status = 0;
}

static void resp_reset(struct http_response *r, size_t max_body)
{
	tdxr_buf_dispose(&r->body);
	tdxr_buf_dispose(&r->hdr_store);
	tdxr_buf_init(&r->body, max_body);
	tdxr_buf_init(&r->hdr_store, HTTP_HEADER_BYTES);
	r->status = 0;
	r->fault = HTTP_FAULT_NONE;
	r->n_headers = 0;
	r->abort_why = ABORT_NONE;
}

const char *http_response_header(const struct http_response *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n_headers; i++) {
		const char *n = (const char *)r->hdr_store.data + r->hdr_off[i];

		if (strcasecmp(n, name) == 0)
			return n + strlen(n) + 1;
	}
	return NULL;
}

/* ================================================================ callbacks */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_response *r = arg;
	size_t n = size * nmemb; /* libcurl: size is always 1 */
	int rc = tdxr_buf_append(&r->body, p, n, NULL);

	if (rc != 0) {
		r->abort_why = rc == TDXR_ETOOBIG ? ABORT_BODY : ABORT_NOMEM;
		return 0; /* n > 0 here: anything != n aborts the transfer */
	}
	return n;
}

static int hdr_put(struct http_response *r, const char *s, size_t n)
{
	int rc = tdxr_buf_append(&r->hdr_store, s, n, NULL);

	if (rc != 0)
		r->abort_why = rc == TDXR_ETOOBIG ? ABORT_HDR_BIG : ABORT_NOMEM;
	return rc;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_response *r = arg;
	size_t n = size * nmemb, len = n, nl;
	const char *colon, *v, *e;

	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	/* keep only the last response's block (after 1xx or a proxy CONNECT) */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		tdxr_buf_reset(&r->hdr_store);
		r->n_headers = 0;
		return n;
	}
	if (len == 0)
		return n;
	if (memchr(p, '\0', len) != NULL) {
		r->abort_why = ABORT_HDR_BAD;
		return 0;
	}
	v = p;
	e = p + len;
	if (*p == ' ' || *p == '\t') { /* obs-fold: continues the previous value */
		if (r->n_headers == 0) {
			r->abort_why = ABORT_HDR_BAD;
			return 0;
		}
		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		r->hdr_store.len--; /* drop the value's NUL, append " more\0" */
		if (hdr_put(r, " ", 1) || hdr_put(r, v, (size_t)(e - v)) || hdr_put(r, "", 1))
			return 0;
		return n;
	}
	colon = memchr(p, ':', len);
	if (colon == NULL || colon == p)
		return n; /* not a header line: ignore */
	nl = (size_t)(colon - p);
	if (r->n_headers >= HTTP_HEADERS_MAX) {
		r->abort_why = ABORT_HDR_BIG;
		return 0;
	}
	v = colon + 1;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	r->hdr_off[r->n_headers] = (uint32_t)r->hdr_store.len;
	if (hdr_put(r, p, nl) || hdr_put(r, "", 1) || hdr_put(r, v, (size_t)(e - v)) || hdr_put(r, "", 1))
		return 0;
	r->n_headers++;
	return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	volatile sig_atomic_t *cancel = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return cancel != NULL && *cancel != 0;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *arg)
{
	FILE *fp = arg;
	size_t n = fread(p, 1, size * nmemb, fp);

	if (n == 0 && ferror(fp))
		return CURL_READFUNC_ABORT;
	return n;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	FILE *fp = arg;

	return fseeko(fp, (off_t)off, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/* =================================================================== request */

/* A regular file we can read; ENOTFOUND when it does not exist. */
static int file_check(const char *path, const char *where, const struct scrub *sc, struct tdxr_err *err)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return fail(err, sc, errno == ENOENT ? TDXR_ENOTFOUND : TDXR_EIO, where,
		            "cannot read upload file %.80s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, sc, TDXR_EINVAL, where, "upload file %.80s is not a regular file", path);
	if (access(path, R_OK) != 0)
		return fail(err, sc, TDXR_EIO, where, "cannot read upload file %.80s: %s", path,
		            strerror(errno));
	return 0;
}

static int mime_build(CURL *curl, const struct http_request *req, const char *where, const struct scrub *sc,
                      curl_mime **out, struct tdxr_err *err)
{
	curl_mime *m = NULL;
	size_t i;
	int rc = 0;

	*out = NULL;
	m = curl_mime_init(curl);
	if (m == NULL)
		return fail(err, sc, TDXR_ENOMEM, where, "cannot build the multipart body");
	for (i = 0; i < req->n_parts; i++) {
		const struct http_part *pt = &req->parts[i];
		curl_mimepart *mp;
		int ok = 1;

		if (pt->name == NULL || (pt->file == NULL && pt->data == NULL && pt->data_len > 0) ||
		    (pt->file != NULL && pt->data != NULL)) {
			rc = fail(err, sc, TDXR_EINVAL, where,
			          "multipart part %zu: needs a name and one of data/file", i);
			goto out;
		}
		if (pt->file != NULL && (rc = file_check(pt->file, where, sc, err)) != 0)
			goto out;
		mp = curl_mime_addpart(m);
		if (mp == NULL) {
			rc = fail(err, sc, TDXR_ENOMEM, where, "cannot build the multipart body");
			goto out;
		}
		ok &= curl_mime_name(mp, pt->name) == CURLE_OK;
		if (pt->file != NULL) {
			ok &= curl_mime_filedata(mp, pt->file) == CURLE_OK;
			if (pt->filename != NULL)
				ok &= curl_mime_filename(mp, pt->filename) == CURLE_OK;
			ok &= curl_mime_type(mp, pt->content_type ? pt->content_type
			                                          : "application/octet-stream") == CURLE_OK;
		} else {
			ok &= curl_mime_data(mp, pt->data ? pt->data : "", pt->data_len) == CURLE_OK;
			if (pt->content_type != NULL)
				ok &= curl_mime_type(mp, pt->content_type) == CURLE_OK;
		}
		if (!ok) {
			rc = fail(err, sc, TDXR_EINVAL, where,
			          "multipart part %zu (%.40s) was refused by libcurl", i, pt->name);
			goto out;
		}
	}
	*out = m;
	m = NULL;
out:
	curl_mime_free(m);
	return rc;
}

static int is_tls_error(CURLcode cc)
{
	switch (cc) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_USE_SSL_FAILED: return 1;
	default: return 0;
	}
}

static int is_network_error(CURLcode cc)
{
	switch (cc) {
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_SEND_FAIL_REWIND:
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR: return 1;
	default: return 0;
	}
}

/* Maps a failed transfer to a code, resp->fault and a message. */
static int classify(struct http_client *c, const struct http_request *req, CURLcode cc, long timeout_ms,
                    const char *where, const struct scrub *sc, struct http_response *r, struct tdxr_err *err)
{
	const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
	curl_off_t sent = 0;
	int nothing_sent;

	if (curl_easy_getinfo(c->curl, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK)
		sent = 1;
	nothing_sent = sent == 0;
	r->fault = HTTP_FAULT_LOCAL;
	switch (r->abort_why) {
	case ABORT_BODY:
		return fail(err, sc, TDXR_ETOOBIG, where, "response body exceeds the %zu-byte limit",
		            c->max_body);
	case ABORT_HDR_BIG:
		return fail(err, sc, TDXR_ETOOBIG, where, "response headers exceed %u lines or %u bytes",
		            HTTP_HEADERS_MAX, HTTP_HEADER_BYTES);
	case ABORT_HDR_BAD: return fail(err, sc, TDXR_EINVAL, where, "malformed response header");
	case ABORT_NOMEM: return fail(err, sc, TDXR_ENOMEM, where, "out of memory reading the response");
	default: break;
	}
	if (cc == CURLE_FILESIZE_EXCEEDED)
		return fail(err, sc, TDXR_ETOOBIG, where, "response body exceeds the %zu-byte limit",
		            c->max_body);
	if (cc == CURLE_ABORTED_BY_CALLBACK && req->cancel != NULL && *req->cancel)
		return fail(err, sc, TDXR_ECANCELED, where, "cancelled");
	if (cc == CURLE_OUT_OF_MEMORY)
		return fail(err, sc, TDXR_ENOMEM, where, "out of memory");
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		r->fault = nothing_sent ? HTTP_FAULT_CONNECT : HTTP_FAULT_NETWORK;
		return fail(err, sc, TDXR_ETIMEOUT, where, "no complete response within %ld ms (%.80s)",
		            timeout_ms, why);
	}
	if (cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_RESOLVE_PROXY ||
	    cc == CURLE_COULDNT_CONNECT) {
		r->fault = HTTP_FAULT_CONNECT;
		return fail(err, sc, TDXR_EIO, where, "cannot connect: %.120s", why);
	}
	if (is_tls_error(cc)) {
		r->fault = HTTP_FAULT_TLS;
		return fail(err, sc, TDXR_EIO, where, "TLS: %.140s", why);
	}
	if (is_network_error(cc)) {
		r->fault = nothing_sent ? HTTP_FAULT_CONNECT : HTTP_FAULT_NETWORK;
		return fail(err, sc, TDXR_EIO, where, "%.140s", why);
	}
	if (cc == CURLE_READ_ERROR || cc == CURLE_ABORTED_BY_CALLBACK)
		return fail(err, sc, TDXR_EIO, where, "cannot read the request body: %.100s", why);
	if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL)
		return fail(err, sc, TDXR_EINVAL, where, "%.140s", why);
	return fail(err, sc, TDXR_EIO, where, "%.140s", why);
}

int http_request_send(struct http_client *c, const struct http_request *req, struct http_response *resp,
                      struct tdxr_err *err)
{
	const char *method = http_method_name(req->method);
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	FILE *fp = NULL;
	struct scrub sc;
	char red[WHERE_URL_MAX + 4], where[WHERE_URL_MAX + 16];
	long timeout_ms, connect_ms;
	int has_mem = req->body != NULL || req->body_len > 0;
	int kinds = has_mem + (req->body_file != NULL) + (req->n_parts > 0);
	int rc = 0, ok = 1;
	size_t i;
	CURLcode cc;

	resp_reset(resp, c->max_body);
	scrub_collect(req, &sc);
	http_url_redact(req->url, red, sizeof(red));
	snprintf(where, sizeof(where), "%s %s", method, red);
	resp->fault = HTTP_FAULT_LOCAL;
	if ((rc = url_check(c, req->url, where, err)) != 0)
		goto out;
	if (req->cancel != NULL && *req->cancel) {
		rc = fail(err, &sc, TDXR_ECANCELED, where, "cancelled");
		goto out;
	}
	if (kinds > 1 || (req->method == HTTP_GET && kinds > 0) || (req->body == NULL && req->body_len > 0) ||
	    (req->n_parts > 0 && req->parts == NULL) || req->timeout_ms < 0) {
		rc = fail(err, &sc, TDXR_EINVAL, where, "bad request: at most one body (none for GET)");
		goto out;
	}
	for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
		struct curl_slist *n;

		if (header_check(req->headers[i]) != 0) {
			rc = fail(err, &sc, TDXR_EINVAL, where,
			          "request header %zu is not a \"Name: value\" line", i);
			goto out;
		}
		n = curl_slist_append(hdrs, req->headers[i]);
		if (n == NULL) {
			rc = fail(err, &sc, TDXR_ENOMEM, where, "out of memory");
			goto out;
		}
		hdrs = n;
	}
	timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : c->timeout_ms;
	connect_ms = c->connect_ms < timeout_ms ? c->connect_ms : timeout_ms;

	curl_easy_reset(c->curl); /* keeps live connections: keep-alive survives */
	c->errbuf[0] = '\0';
	ok &= curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_URL, req->url) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_USERAGENT, c->user_agent) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, resp) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
	ok &= curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, resp) == CURLE_OK;
	if (req->cancel != NULL) {
		ok &= curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, (void *)req->cancel) == CURLE_OK;
	}
	if (c->ca_file != NULL)
		ok &= curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file) == CURLE_OK;
	if (c->connect_to != NULL)
		ok &= curl_easy_setopt(c->curl, CURLOPT_CONNECT_TO, c->connect_to) == CURLE_OK;
	/* loopback and connect_to (tests) never go through a proxy from the environment */
	if (c->connect_to != NULL || url_is_loopback(req->url))
		ok &= curl_easy_setopt(c->curl, CURLOPT_PROXY, "") == CURLE_OK;
	if (hdrs != NULL)
		ok &= curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK;

	if (req->body_file != NULL) {
		struct stat st;

		if ((rc = file_check(req->body_file, where, &sc, err)) != 0)
			goto out;
		fp = fopen(req->body_file, "rbe");
		if (fp == NULL || fstat(fileno(fp), &st) != 0) {
			rc = fail(err, &sc, TDXR_EIO, where, "cannot open upload file %.80s: %s",
			          req->body_file, strerror(errno));
			goto out;
		}
		ok &= curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_read) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_READDATA, fp) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_SEEKFUNCTION, on_seek) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_SEEKDATA, fp) == CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size) == CURLE_OK;
		if (req->method != HTTP_PUT)
			ok &= curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	} else if (req->n_parts > 0) {
		if ((rc = mime_build(c->curl, req, where, &sc, &mime, err)) != 0)
			goto out;
		ok &= curl_easy_setopt(c->curl, CURLOPT_MIMEPOST, mime) == CURLE_OK;
		if (req->method != HTTP_POST)
			ok &= curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	} else if (has_mem || req->method == HTTP_POST || req->method == HTTP_PUT ||
	           req->method == HTTP_PATCH) {
		/* the size first, so libcurl never strlen()s a binary body */
		ok &= curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) ==
		      CURLE_OK;
		ok &= curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, req->body ? req->body : "") == CURLE_OK;
		if (req->method != HTTP_POST)
			ok &= curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	} else {
		ok &= curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L) == CURLE_OK;
		if (req->method != HTTP_GET)
			ok &= curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
	}
	if (!ok) {
		rc = fail(err, &sc, TDXR_ERROR, where, "libcurl refused an option (too old?)");
		goto out;
	}

	TDXR_DEBUG(HTTP_LOG, "%s", where);
	cc = curl_easy_perform(c->curl);
	if (cc == CURLE_OK && resp->abort_why == ABORT_NONE) {
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
		resp->fault = HTTP_FAULT_NONE;
		rc = 0;
	} else {
		rc = classify(c, req, cc, timeout_ms, where, &sc, resp, err);
	}
out:
	/* the handle must not keep pointers to what is freed below (or to the
	 * caller's body); the connection cache survives the reset */
	curl_easy_reset(c->curl);
	slist_wipe_free(hdrs);
	curl_mime_free(mime);
	if (fp != NULL)
		fclose(fp);
	if (rc != 0) {
		tdxr_buf_reset(&resp->body);
		tdxr_buf_reset(&resp->hdr_store);
		resp->n_headers = 0;
		resp->status = 0;
	}
	return rc;
}

/* ============================================================ status check */

int http_response_check(const struct http_request *req, const struct http_response *r, struct tdxr_err *err)
{
	struct scrub sc;
	char red[WHERE_URL_MAX + 4], snip[SNIPPET_MAX + 1], ra[41], msg[sizeof(err->msg)];
	const char *h;
	size_t i, n = 0;
	int code, space = 0;

	if (r->status >= 200 && r->status < 300)
		return 0;
	code = (r->status == 401 || r->status == 403)   ? TDXR_EAUTH
	       : (r->status == 404 || r->status == 410) ? TDXR_ENOTFOUND
	       : r->status == 413                       ? TDXR_ETOOBIG
	                                                : TDXR_EIO;
	scrub_collect(req, &sc);
	http_url_redact(req->url, red, sizeof(red));
	ra[0] = '\0';
	h = http_response_header(r, "Retry-After");
	for (i = 0; h != NULL && h[i] && n < sizeof(ra) - 1; i++)
		if (h[i] > 0x20 && h[i] < 0x7f)
			ra[n++] = h[i];
		else if (h[i] == ' ' && n > 0)
			ra[n++] = ' ';
	ra[n] = '\0';
	/* printable ASCII only, whitespace runs collapsed, bounded */
	n = 0;
	for (i = 0; i < r->body.len && n < SNIPPET_MAX; i++) {
		unsigned char ch = r->body.data[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			space = n > 0;
			continue;
		}
		if (space && n < SNIPPET_MAX - 1)
			snip[n++] = ' ';
		space = 0;
		snip[n++] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	snip[n] = '\0';
	if ((size_t)snprintf(msg, sizeof(msg), "%s %s returned HTTP %ld%s%s%s%s%s%s",
	                     http_method_name(req->method), red, r->status, ra[0] ? " (Retry-After: " : "",
	                     ra, ra[0] ? ")" : "", snip[0] ? ": " : "", snip,
	                     i < r->body.len ? "..." : "") >= sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	scrub_apply(&sc, msg, sizeof(msg));
	return tdxr_err_set(err, code, "%s", msg);
}

/* ==================================================================== retry */

int http_retry_should(int rc, const struct http_response *r, unsigned flags)
{
	int unsafe = (flags & HTTP_RETRY_UNSAFE) != 0;

	if (r == NULL)
		return 0;
	if (rc == 0) {
		switch (r->status) {
		case 429:
		case 503: return 1; /* not processed: safe even for POST */
		case 502:
		case 504: return !unsafe;
		case 500: return (flags & HTTP_RETRY_500) != 0 && !unsafe;
		default: return 0;
		}
	}
	if (rc == TDXR_ECANCELED || rc == TDXR_ETOOBIG || rc == TDXR_EINVAL || rc == TDXR_ENOMEM)
		return 0;
	if (r->fault == HTTP_FAULT_CONNECT)
		return 1;
	if (r->fault == HTTP_FAULT_NETWORK)
		return !unsafe;
	return 0;
}

/* Copies a header-ish value, trimmed, into out[cap]; -1 when empty, too long or not printable. */
static int value_copy(const char *v, char *out, size_t cap)
{
	size_t n, i;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= cap)
		return -1;
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			return -1;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

/* An HTTP-date (IMF-fixdate, RFC 850 or asctime) to UNIX seconds; -1 when not one. */
static int64_t http_date_parse(const char *v)
{
	char t[RETRY_AFTER_MAX + 1];
	size_t i, alpha = 0, colon = 0;
	time_t r;

	if (value_copy(v, t, sizeof(t)) != 0)
		return -1;
	for (i = 0; t[i]; i++) {
		alpha += (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z');
		colon += t[i] == ':';
	}
	/* all three forms carry a day/month name and hh:mm:ss; curl_getdate alone would
	 * accept much looser text */
	if (alpha < 3 || colon != 2)
		return -1;
	r = curl_getdate(t, NULL);
	return r == (time_t)-1 ? -1 : (int64_t)r;
}

long http_retry_after_parse(const char *value, int64_t now, long cap_ms)
{
	char t[RETRY_AFTER_MAX + 1];
	int64_t when;
	size_t i, n;

	if (cap_ms < 0)
		cap_ms = 0;
	if (value == NULL || value_copy(value, t, sizeof(t)) != 0)
		return -1;
	n = strlen(t);
	for (i = 0; i < n && t[i] >= '0' && t[i] <= '9'; i++)
		;
	if (i == n) {
		uint64_t s = 0;

		/* delta-seconds; anything past 10 digits is "longer than any cap" */
		if (n > 10 || tdxr_parse_u64(t, UINT64_MAX, &s, NULL) != 0)
			return cap_ms;
		return s > (uint64_t)cap_ms / 1000u ? cap_ms : (long)(s * 1000u);
	}
	when = http_date_parse(t);
	if (when < 0)
		return -1;
	if (when <= now)
		return 0;
	if ((uint64_t)(when - now) > (uint64_t)cap_ms / 1000u)
		return cap_ms;
	return (long)((when - now) * 1000);
}

long http_retry_after_ms(const struct http_response *r, long cap_ms)
{
	const char *ra = http_response_header(r, "Retry-After");
	const char *date = http_response_header(r, "Date");
	int64_t now = -1;

	if (ra == NULL)
		return -1;
	if (date != NULL)
		now = http_date_parse(date); /* the server's clock: immune to our skew */
	if (now < 0)
		now = (int64_t)time(NULL);
	return http_retry_after_parse(ra, now, cap_ms);
}

long http_backoff_ms(unsigned attempt, long base_ms, long cap_ms)
{
	uint64_t lim, rnd = 0;
	unsigned i;

	if (base_ms <= 0 || cap_ms <= 0)
		return 0;
	lim = (uint64_t)base_ms;
	for (i = 0; i < attempt && lim < (uint64_t)cap_ms; i++)
		lim <<= 1; /* lim < cap <= LONG_MAX before the shift: no overflow */
	if (lim > (uint64_t)cap_ms)
		lim = (uint64_t)cap_ms;
	if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		rnd = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec;
	}
	return (long)(rnd % (lim + 1));
}
