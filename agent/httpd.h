/*
 * httpd.h - the agent's small HTTP server (libmicrohttpd underneath): a fixed
 * table of routes (method + exact path -> handler), each with its own request
 * body cap, served by a pool of HTTPD_THREADS_DEFAULT threads on one
 * "host:port" (loopback unless the operator says otherwise). It carries the
 * GitHub webhook receiver (agent/ci/github_webhook.h), GET /metrics and
 * GET /healthz; later pieces plug in more routes the same way.
 *
 * Trust boundary: everything a client sends is untrusted. The server checks,
 * before any handler runs: the route exists (404) and takes the method (405,
 * with Allow), the declared Content-Length is within the route's cap (413,
 * answered before the body is read), and a body without a length never grows
 * past the cap (the rest is discarded and answered 413; the connection is
 * closed instead once the client has sent more than twice the cap). The
 * bodies of all requests in progress together stay under max_inflight (the
 * request that would pass it has its connection closed), so memory stays
 * bounded before any handler could authenticate anything. Idle connections
 * time out, connections are limited in number overall and per client
 * address, request headers are bounded by libmicrohttpd's per-connection
 * memory limit (the library answers 431 or 413). Handlers run on the
 * server's threads: they must be quick (hand work to a queue) and thread-safe.
 *
 * Ownership: httpd_start copies the route table (paths and methods); the
 * handlers' ctx pointers are borrowed and must outlive httpd_stop. A request
 * and everything reached through it are borrowed for the handler call only.
 */
#ifndef TDXR_AGENT_HTTPD_H
#define TDXR_AGENT_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define HTTPD_THREADS_DEFAULT 2u
#define HTTPD_THREADS_MAX 4u
#define HTTPD_TIMEOUT_S_DEFAULT 15u                  /* idle connection timeout */
#define HTTPD_CONNS_DEFAULT 64u                      /* connections at once */
#define HTTPD_CONNS_PER_IP_DEFAULT 16u               /* per client address */
#define HTTPD_BODY_SMALL (16u * 1024u)               /* a route's body cap when it names none */
#define HTTPD_INFLIGHT_DEFAULT (64u * 1024u * 1024u) /* request body bytes held at once */
#define HTTPD_RESP_CAP (4u * 1024u * 1024u)          /* a response body */
#define HTTPD_ROUTES_MAX 32u
#define HTTPD_LISTEN_DEFAULT "127.0.0.1:0"

struct httpd;
struct httpd_req;
struct httpd_resp;

/* Fills resp (status, body, headers). A handler that sets nothing answers 500. */
typedef void (*httpd_handler_fn)(void *ctx, const struct httpd_req *req, struct httpd_resp *resp);

struct httpd_health;
typedef void (*httpd_health_fn)(void *ctx, struct httpd_health *h);

struct httpd_route {
	const char *method; /* "GET", "POST", ...; a GET route also answers HEAD */
	const char *path;   /* exact match, starts with '/'; no query string */
	size_t max_body;    /* request body cap; 0 = HTTPD_BODY_SMALL */
	httpd_handler_fn fn;
	void *ctx;                 /* borrowed */
	httpd_health_fn health_fn; /* private to httpd_route_healthz; leave NULL */
};

struct httpd_opts {
	unsigned threads;    /* 0 = HTTPD_THREADS_DEFAULT; at most HTTPD_THREADS_MAX */
	unsigned timeout_s;  /* 0 = HTTPD_TIMEOUT_S_DEFAULT */
	unsigned max_conns;  /* 0 = HTTPD_CONNS_DEFAULT */
	unsigned max_per_ip; /* 0 = HTTPD_CONNS_PER_IP_DEFAULT */
	size_t max_inflight; /* 0 = HTTPD_INFLIGHT_DEFAULT */
};

/*
 * Starts serving `routes` on `listen`: "HOST:PORT", "[IPV6]:PORT" or "PORT"
 * (= 127.0.0.1:PORT); NULL = HTTPD_LISTEN_DEFAULT. HOST is a numeric address
 * or "localhost". PORT 0 picks a free port (httpd_port tells which). opts NULL
 * = defaults. Duplicate (method, path) pairs are EINVAL. *out is the caller's:
 * httpd_stop. Errors: EINVAL (listen, routes), EIO (bind/listen failed: the
 * message names the address), ENOMEM.
 */
int httpd_start(const char *listen, const struct httpd_route *routes, size_t n_routes,
                const struct httpd_opts *opts, struct httpd **out, struct tdxr_err *err);
/* The bound port (host byte order). */
uint16_t httpd_port(const struct httpd *srv);
/* Stops accepting, closes every connection, joins the threads (a handler that is
 * running finishes first), frees. NULL allowed. */
void httpd_stop(struct httpd *srv);

/* ===================================================================== request */

const char *httpd_req_method(const struct httpd_req *req);
const char *httpd_req_path(const struct httpd_req *req);
/* First value of request header `name` (case-insensitive), or NULL. */
const char *httpd_req_header(const struct httpd_req *req, const char *name);
/* The whole body (NUL-terminated at body[len]; may contain NULs). */
const uint8_t *httpd_req_body(const struct httpd_req *req, size_t *len);
/* The client's numeric address ("127.0.0.1", "::1"), for logs. */
const char *httpd_req_peer(const struct httpd_req *req);

/* ==================================================================== response */

/* Status and a text body (Content-Type text/plain; charset=utf-8). */
int httpd_resp_text(struct httpd_resp *resp, unsigned status, const char *text);
/* Status, Content-Type and a body of n bytes (copied). */
int httpd_resp_set(struct httpd_resp *resp, unsigned status, const char *content_type, const void *body,
                   size_t n, struct tdxr_err *err);
/* The response body buffer (capped at HTTPD_RESP_CAP) to append to; set the status
 * and type with httpd_resp_status. */
struct tdxr_buf *httpd_resp_body(struct httpd_resp *resp);
void httpd_resp_status(struct httpd_resp *resp, unsigned status, const char *content_type);
/* Adds a response header (at most 8 per response; name and value without CR/LF). */
int httpd_resp_header(struct httpd_resp *resp, const char *name, const char *value);

/* ============================================================= stock routes */

/* /healthz: the agent's answer. stopping = 1 answers 503 (drain me). */
struct httpd_health {
	long jobs_running;
	int stopping;
};
/* httpd_health_fn fills *h; h arrives with jobs_running from the tdxr_jobs_running
 * gauge and stopping 0. */

/* GET path (NULL = "/metrics"): the metrics registry (common/metrics.h) in the
 * Prometheus text format. */
void httpd_route_metrics(struct httpd_route *out, const char *path);
/* GET path (NULL = "/healthz"): 200 {"status":"ok","jobs_running":N,"uptime_s":S}
 * (503 and "stopping" when fn says so). fn NULL = the gauge alone. uptime_s counts
 * from httpd_start. */
void httpd_route_healthz(struct httpd_route *out, const char *path, httpd_health_fn fn, void *ctx);

#endif
