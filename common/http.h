/*
 * http.h - the project's one HTTP client (libcurl underneath).
 *
 * A struct http_client holds one configuration (CA file, --connect-to style
 * override, user agent, timeouts, response cap) and one libcurl handle, so
 * successive requests reuse the connection (keep-alive). A client is NOT
 * thread-safe: use one per thread. The only global state is libcurl's
 * curl_global_init, done once (pthread_once).
 *
 * Trust boundary: everything a server sends is untrusted. Bodies are capped
 * (over the cap is TDXR_ETOOBIG, never a truncated success), response headers
 * are bounded in count and size, redirects are not followed, TLS peers are
 * verified, plain http:// is refused off loopback unless allowed. Messages name
 * the method and the URL with credentials redacted (userinfo and secret-looking
 * query parameters); request header values are never logged and their copies
 * are wiped after each request. Nothing returned here is the caller's to free
 * except what http_response_dispose releases.
 */
#ifndef TDXR_COMMON_HTTP_H
#define TDXR_COMMON_HTTP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define HTTP_TIMEOUT_MS_DEFAULT 30000L
#define HTTP_CONNECT_MS_DEFAULT 10000L
#define HTTP_HEADERS_MAX 128u           /* response header lines kept */
#define HTTP_HEADER_BYTES (64u * 1024u) /* their total size */
#define HTTP_URL_MAX 4096u

struct http_client;

struct http_client_opts {
	const char *ca_file;     /* PEM bundle for server certificates; NULL = system store */
	const char *connect_to;  /* "host:port:host2:port2" as curl --connect-to; NULL = none */
	const char *user_agent;  /* NULL = "tdx-runner/<version>" */
	long connect_timeout_ms; /* 0 = HTTP_CONNECT_MS_DEFAULT; never above timeout_ms */
	long timeout_ms;         /* total per request; 0 = HTTP_TIMEOUT_MS_DEFAULT */
	size_t max_body;         /* response body cap; 0 = TDXR_CAP_API */
	int allow_http;          /* 1 = plain http:// to any host (tests, connect_to); else loopback only */
};

enum http_method { HTTP_GET = 0, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE };

/* One multipart/form-data part: an in-memory field, or a file streamed from disk
 * at send time (never read into memory). */
struct http_part {
	const char *name; /* form field name */
	const void *data; /* field value of data_len bytes (when file == NULL) */
	size_t data_len;
	const char *file;         /* path of a regular file to stream */
	const char *filename;     /* filename= sent for a file part; NULL = basename of file */
	const char *content_type; /* NULL = none for fields, application/octet-stream for files */
};

/* All pointers are borrowed for the duration of http_request_send. At most one of
 * body/body_file/parts. Give Content-Type in headers for body and body_file. */
struct http_request {
	enum http_method method;
	const char *url;
	const char *const *headers; /* "Name: value" lines, NULL-terminated; NULL = none */
	const void *body;           /* request body from memory (not for GET) */
	size_t body_len;
	const char *body_file;         /* or: request body streamed from this regular file */
	const struct http_part *parts; /* or: multipart/form-data of n_parts parts */
	size_t n_parts;
	long timeout_ms;               /* 0 = the client's; e.g. longer for big uploads */
	volatile sig_atomic_t *cancel; /* optional: nonzero aborts the transfer (ECANCELED) */
};

/* Why a request produced no response (for the retry decision). */
enum http_fault {
	HTTP_FAULT_NONE = 0, /* a response arrived (any status), or nothing was tried */
	HTTP_FAULT_CONNECT,  /* no connection (resolve, refused, connect timeout): nothing was sent */
	HTTP_FAULT_NETWORK,  /* the exchange broke or timed out after the request may have been sent */
	HTTP_FAULT_TLS,      /* TLS handshake or certificate verification failed */
	HTTP_FAULT_LOCAL,    /* over a cap, cancelled, bad input, upload file unreadable, no memory */
};

/* Caller-allocated; _init once, reusable across requests, _dispose at the end. */
struct http_response {
	long status;           /* final HTTP status; 0 when no response */
	enum http_fault fault; /* set when http_request_send fails */
	struct tdxr_buf body;  /* the body (NUL-terminated); empty after a failure */
	size_t n_headers;
	/* private */
	struct tdxr_buf hdr_store;          /* "name\0value\0" pairs of the last response */
	uint32_t hdr_off[HTTP_HEADERS_MAX]; /* offset of each name in hdr_store */
	int abort_why;
};

/* ===================================================================== client */

/* *out is the caller's (http_client_free). opts NULL = all defaults. */
int http_client_new(const struct http_client_opts *opts, struct http_client **out, struct tdxr_err *err);
void http_client_free(struct http_client *c);

/*
 * Sends one request and reads the whole answer into resp (previous contents are
 * dropped). Returns 0 when a response arrived, whatever its status (use
 * http_response_check for non-2xx); otherwise a negative code with resp->fault
 * set and a message "<METHOD> <redacted URL>: <reason>": ETIMEOUT, ECANCELED,
 * ETOOBIG (body over max_body, headers over HTTP_HEADERS_MAX / HTTP_HEADER_BYTES),
 * EINVAL (bad URL, header line, or body combination), ENOTFOUND (upload file
 * missing), ENOMEM, EIO (network, TLS, everything else).
 */
int http_request_send(struct http_client *c, const struct http_request *req, struct http_response *resp,
                      struct tdxr_err *err);

/* =================================================================== response */

void http_response_init(struct http_response *r);
void http_response_dispose(struct http_response *r);
/* First value of header `name` (case-insensitive), trimmed; borrowed until the next
 * request or dispose. NULL when absent. */
const char *http_response_header(const struct http_response *r, const char *name);
/* 0 for a 2xx status. Otherwise sets err: "<METHOD> <redacted URL> returned HTTP n
 * [(Retry-After: v)]: <snippet>" with at most 120 printable bytes of the body, request
 * secrets scrubbed, and returns EAUTH (401/403), ENOTFOUND (404/410), ETOOBIG (413)
 * or EIO. */
int http_response_check(const struct http_request *req, const struct http_response *r, struct tdxr_err *err);

/* ====================================================================== retry */

/* Flags of http_retry_should. UNSAFE: the request is not idempotent (POST), so
 * retry only when it was surely not processed (no connection, 429, 503). */
#define HTTP_RETRY_500 0x1u
#define HTTP_RETRY_UNSAFE 0x2u

/* The common predicate: 1 when (rc, resp) from http_request_send is worth retrying:
 * 429, 502, 503, 504 (500 with HTTP_RETRY_500), connection faults and network
 * faults (not TLS, caps, cancellation, bad input). Which statuses to retry in the
 * end stays the caller's choice. */
int http_retry_should(int rc, const struct http_response *r, unsigned flags);
/* Retry-After of the response in ms, clamped to [0, cap_ms]; -1 when absent or
 * unparsable. An HTTP-date is taken relative to the response's Date header when it
 * has one (server clock), else to the local clock. */
long http_retry_after_ms(const struct http_response *r, long cap_ms);
/* Building block: value is delta-seconds or an HTTP-date (IMF-fixdate, RFC 850,
 * asctime); now is UNIX seconds. -1 when unparsable. */
long http_retry_after_parse(const char *value, int64_t now, long cap_ms);
/* Exponential backoff with full jitter: uniform in [0, min(cap_ms, base_ms * 2^attempt)]. */
long http_backoff_ms(unsigned attempt, long base_ms, long cap_ms);

/* ====================================================================== misc */

const char *http_method_name(enum http_method m);
/* url with userinfo and the values of secret-looking query parameters (token,
 * private_token, key, secret, password, signature, ...) replaced by [REDACTED] and
 * any #fragment dropped, into out[cap] (truncated with "..."). Never fails. */
void http_url_redact(const char *url, char *out, size_t cap);

#endif
