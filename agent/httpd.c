/*
 * httpd.c - see httpd.h. libmicrohttpd runs the sockets (its own thread pool,
 * epoll/poll chosen by the library); this file is the routing layer: it finds
 * the route on the first call for a request (headers only), refuses what the
 * route does not take before any body byte is read, collects the body into a
 * bounded buffer, calls the handler once with the whole request, and turns the
 * handler's struct httpd_resp into a libmicrohttpd response.
 *
 * Invariants: a request's body buffer never exceeds its route's cap; a handler
 * runs only for a complete, within-cap request on a known (method, path); the
 * per-request state is freed by the completion callback on every path (also
 * when the client goes away); the route table is immutable after start.
 */
#include "agent/httpd.h"

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define MOD "httpd"
#define RESP_HEADERS_MAX 8u

struct route {
	char *method;
	char *path;
	size_t max_body;
	httpd_handler_fn fn;
	void *ctx;
	httpd_health_fn health_fn;
};

struct httpd {
	struct MHD_Daemon *d;
	struct route *routes;
	size_t n_routes;
	uint16_t port;
	struct timespec started;
	size_t inflight_max;
	atomic_size_t inflight; /* body bytes held by requests in progress */
};

struct httpd_req {
	struct httpd *srv;
	const struct route *rt;
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	const uint8_t *body;
	size_t body_len;
	char peer[INET6_ADDRSTRLEN];
};

struct httpd_resp {
	unsigned status;
	char ctype[96];
	struct tdxr_buf body;
	size_t n_hdr;
	char hname[RESP_HEADERS_MAX][64];
	char hval[RESP_HEADERS_MAX][256];
};

/* Per request, between the first and the last call of the access handler. */
struct reqstate {
	const struct route *rt;
	struct tdxr_buf body;
	int too_big;
	size_t discarded; /* bytes dropped after the body outgrew the cap */
	size_t reserved;  /* bytes counted in srv->inflight */
	struct httpd *srv;
};

/* ====================================================================== time */

static long long mono_s_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - t0->tv_sec);
}

/* ==================================================================== listen */

/* "HOST:PORT", "[V6]:PORT" or "PORT" into a socket address. */
static int listen_parse(const char *listen, struct sockaddr_storage *ss, int *v6, struct tdxr_err *err)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *port_s;
	uint64_t port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	*v6 = 0;
	if (listen == NULL)
		listen = HTTPD_LISTEN_DEFAULT;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':')
			goto bad;
		hl = (size_t)(close - listen - 1);
		if (hl == 0 || hl >= sizeof(host))
			goto bad;
		memcpy(host, listen + 1, hl);
		host[hl] = '\0';
		port_s = close + 2;
		*v6 = 1;
	} else if ((colon = strrchr(listen, ':')) != NULL) {
		hl = (size_t)(colon - listen);
		if (hl == 0 || hl >= sizeof(host) || memchr(listen, ':', hl) != NULL)
			goto bad; /* a bare IPv6 address needs brackets */
		memcpy(host, listen, hl);
		host[hl] = '\0';
		port_s = colon + 1;
	} else {
		memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
		port_s = listen;
	}
	if (tdxr_parse_u64(port_s, 65535, &port, NULL) != 0)
		goto bad;
	if (*v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			goto bad;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (strcmp(host, "localhost") == 0)
			memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			goto bad;
	}
	return 0;
bad:
	return tdxr_err_set(err, TDXR_EINVAL,
	                    "httpd: listen address \"%.80s\" is not HOST:PORT, [IPV6]:PORT or PORT "
	                    "(HOST numeric or localhost)",
	                    listen);
}

/* ================================================================== requests */

const char *httpd_req_method(const struct httpd_req *req)
{
	return req->method;
}

const char *httpd_req_path(const struct httpd_req *req)
{
	return req->path;
}

const char *httpd_req_header(const struct httpd_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const uint8_t *httpd_req_body(const struct httpd_req *req, size_t *len)
{
	*len = req->body_len;
	return req->body;
}

const char *httpd_req_peer(const struct httpd_req *req)
{
	return req->peer;
}

static void peer_fill(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	socklen_t sl;

	snprintf(out, cap, "?");
	if (ci == NULL || ci->client_addr == NULL)
		return;
	sl =
	    ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (getnameinfo(ci->client_addr, sl, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, cap, "?");
}

/* ================================================================= responses */

void httpd_resp_status(struct httpd_resp *resp, unsigned status, const char *content_type)
{
	resp->status = status;
	snprintf(resp->ctype, sizeof(resp->ctype), "%s", content_type ? content_type : "");
}

struct tdxr_buf *httpd_resp_body(struct httpd_resp *resp)
{
	return &resp->body;
}

int httpd_resp_set(struct httpd_resp *resp, unsigned status, const char *content_type, const void *body,
                   size_t n, struct tdxr_err *err)
{
	tdxr_buf_reset(&resp->body);
	httpd_resp_status(resp, status, content_type);
	if (n == 0)
		return 0;
	return tdxr_buf_append(&resp->body, body, n, err);
}

int httpd_resp_text(struct httpd_resp *resp, unsigned status, const char *text)
{
	return httpd_resp_set(resp, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static int hdr_ok(const char *s, size_t cap)
{
	size_t n = strlen(s);

	return n > 0 && n < cap && strpbrk(s, "\r\n") == NULL;
}

int httpd_resp_header(struct httpd_resp *resp, const char *name, const char *value)
{
	if (resp->n_hdr == RESP_HEADERS_MAX || !hdr_ok(name, sizeof(resp->hname[0])) ||
	    strchr(name, ':') != NULL || strlen(value) >= sizeof(resp->hval[0]) || strpbrk(value, "\r\n"))
		return TDXR_EINVAL;
	memcpy(resp->hname[resp->n_hdr], name, strlen(name) + 1);
	memcpy(resp->hval[resp->n_hdr], value, strlen(value) + 1);
	resp->n_hdr++;
	return 0;
}

static void resp_init(struct httpd_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	tdxr_buf_init(&resp->body, HTTPD_RESP_CAP);
}

/* Queues resp on conn; counts the status. MHD_NO when the library refused. */
static enum MHD_Result resp_queue(struct MHD_Connection *conn, struct httpd_resp *resp)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char code[8];
	size_t i;

	if (resp->status < 200 || resp->status > 599) {
		tdxr_buf_reset(&resp->body);
		httpd_resp_text(resp, 500, "handler produced no answer\n");
	}
	r = MHD_create_response_from_buffer(resp->body.len, resp->body.len ? resp->body.data : (void *)"",
	                                    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	if (resp->ctype[0])
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	for (i = 0; i < resp->n_hdr; i++)
		MHD_add_response_header(r, resp->hname[i], resp->hval[i]);
	ret = MHD_queue_response(conn, resp->status, r);
	MHD_destroy_response(r);
	snprintf(code, sizeof(code), "%u", resp->status);
	metrics_add(METRIC_HTTP_REQUESTS, 1, code, NULL);
	return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                   const char *hname, const char *hval)
{
	struct httpd_resp resp;
	enum MHD_Result ret;

	resp_init(&resp);
	httpd_resp_text(&resp, status, text);
	if (hname)
		httpd_resp_header(&resp, hname, hval);
	ret = resp_queue(conn, &resp);
	tdxr_buf_dispose(&resp.body);
	return ret;
}

/* =================================================================== routing */

static int method_is(const char *route_m, const char *m)
{
	return strcmp(route_m, m) == 0 || (strcmp(route_m, "GET") == 0 && strcmp(m, "HEAD") == 0);
}

/* The route for (method, path); *path_known tells a 405 from a 404 and *allow lists methods. */
static const struct route *route_find(const struct httpd *srv, const char *method, const char *path,
                                      int *path_known, char *allow, size_t allow_cap)
{
	size_t i, off = 0;

	*path_known = 0;
	allow[0] = '\0';
	for (i = 0; i < srv->n_routes; i++) {
		const struct route *rt = &srv->routes[i];

		if (strcmp(rt->path, path) != 0)
			continue;
		if (method_is(rt->method, method))
			return rt;
		*path_known = 1;
		if (off < allow_cap) {
			int n = snprintf(allow + off, allow_cap - off, "%s%s", off ? ", " : "", rt->method);

			if (n > 0)
				off += (size_t)n;
		}
	}
	return NULL;
}

static int content_length(struct MHD_Connection *conn, uint64_t *out)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

	*out = 0;
	if (v == NULL)
		return 0;
	return tdxr_parse_u64(v, UINT64_MAX, out, NULL) == 0 ? 1 : -1;
}

/* The first call of a request (headers only): route, method and declared length. */
static enum MHD_Result req_begin(struct httpd *srv, struct MHD_Connection *conn, const char *url,
                                 const char *method, void **con_cls)
{
	char allow[128];
	const struct route *rt;
	struct reqstate *st;
	uint64_t clen;
	int known;

	rt = route_find(srv, method, url, &known, allow, sizeof(allow));
	if (rt == NULL && known)
		return answer_text(conn, 405, "method not allowed\n", MHD_HTTP_HEADER_ALLOW, allow);
	if (rt == NULL)
		return answer_text(conn, 404, "not found\n", NULL, NULL);
	switch (content_length(conn, &clen)) {
	case -1: return answer_text(conn, 400, "bad Content-Length\n", NULL, NULL);
	case 1:
		if (clen > rt->max_body)
			return answer_text(conn, 413, "request body too large\n", NULL, NULL);
		break;
	default: break;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return MHD_NO;
	st->rt = rt;
	st->srv = srv;
	tdxr_buf_init(&st->body, rt->max_body);
	*con_cls = st;
	return MHD_YES;
}

static enum MHD_Result req_dispatch(struct httpd *srv, struct MHD_Connection *conn, const char *url,
                                    const char *method, struct reqstate *st)
{
	struct httpd_req req;
	struct httpd_resp resp;
	enum MHD_Result ret;

	memset(&req, 0, sizeof(req));
	req.srv = srv;
	req.rt = st->rt;
	req.conn = conn;
	req.method = method;
	req.path = url;
	req.body = st->body.data ? st->body.data : (const uint8_t *)"";
	req.body_len = st->body.len;
	peer_fill(conn, req.peer, sizeof(req.peer));
	resp_init(&resp);
	st->rt->fn(st->rt->ctx, &req, &resp);
	ret = resp_queue(conn, &resp);
	TDXR_DEBUG(MOD, "%s %s from %s: %u (%zu bytes in, %zu out)", method, url, req.peer, resp.status,
	           st->body.len, resp.body.len);
	tdxr_buf_dispose(&resp.body);
	return ret;
}

/* Counts n more body bytes against the server's in-flight budget; 0 when over it. */
static int inflight_take(struct httpd *srv, struct reqstate *st, size_t n)
{
	size_t cur = atomic_load(&srv->inflight);

	do {
		if (n > srv->inflight_max || cur > srv->inflight_max - n)
			return 0;
	} while (!atomic_compare_exchange_weak(&srv->inflight, &cur, cur + n));
	st->reserved += n;
	return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct httpd *srv = cls;
	struct reqstate *st = *con_cls;

	if (st == NULL)
		return req_begin(srv, conn, url, method, con_cls);
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (!st->too_big && !inflight_take(srv, st, n)) {
			/* Everyone's bodies together are over the server's budget: shed this one. */
			TDXR_WARN(MOD,
			          "%s %s: request bodies in flight are over %zu bytes; closing a connection",
			          method, url, srv->inflight_max);
			return MHD_NO;
		}
		if (!st->too_big && tdxr_buf_append(&st->body, upload_data, n, NULL) == 0)
			return MHD_YES;
		if (!st->too_big) {
			/* A body without Content-Length outgrew the cap: drop what we have and
			 * discard the rest, for at most another cap's worth, to answer 413. */
			st->too_big = 1;
			st->discarded = st->body.len;
			tdxr_buf_dispose(&st->body);
			atomic_fetch_sub(&srv->inflight, st->reserved);
			st->reserved = 0;
			TDXR_WARN(MOD, "%s %s: request body over the route's %zu-byte cap", method, url,
			          st->rt->max_body);
		}
		st->discarded += n;
		return st->discarded <= 2 * st->rt->max_body ? MHD_YES : MHD_NO;
	}
	if (st->too_big)
		return answer_text(conn, 413, "request body too large\n", NULL, NULL);
	return req_dispatch(srv, conn, url, method, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct reqstate *st = *con_cls;

	if (st == NULL)
		return;
	atomic_fetch_sub(&st->srv->inflight, st->reserved);
	tdxr_buf_dispose(&st->body);
	free(st);
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	TDXR_WARN(MOD, "libmicrohttpd: %s", line);
}

/* ==================================================================== server */

static void routes_free(struct route *r, size_t n)
{
	size_t i;

	for (i = 0; r && i < n; i++) {
		free(r[i].method);
		free(r[i].path);
	}
	free(r);
}

static int routes_copy(const struct httpd_route *in, size_t n, struct route **out, struct tdxr_err *err)
{
	struct route *r = NULL;
	size_t i, k;
	int rc = 0;

	*out = NULL;
	if (n == 0 || n > HTTPD_ROUTES_MAX)
		return tdxr_err_set(err, TDXR_EINVAL, "httpd: 1 to %u routes, not %zu", HTTPD_ROUTES_MAX, n);
	r = calloc(n, sizeof(*r));
	if (r == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if (in[i].method == NULL || in[i].method[0] == '\0' || in[i].path == NULL ||
		    in[i].path[0] != '/' || strchr(in[i].path, '?') != NULL || in[i].fn == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "httpd: route %zu needs a method, a path starting "
			                  "with '/' (no query) and a handler",
			                  i);
			goto out;
		}
		for (k = 0; k < i; k++)
			if (strcmp(r[k].path, in[i].path) == 0 && strcmp(r[k].method, in[i].method) == 0) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "httpd: route %s %s is listed twice",
				                  in[i].method, in[i].path);
				goto out;
			}
		r[i].method = strdup(in[i].method);
		r[i].path = strdup(in[i].path);
		if (r[i].method == NULL || r[i].path == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		r[i].max_body = in[i].max_body ? in[i].max_body : HTTPD_BODY_SMALL;
		r[i].fn = in[i].fn;
		r[i].ctx = in[i].ctx;
		r[i].health_fn = in[i].health_fn;
	}
	*out = r;
	r = NULL;
out:
	routes_free(r, n);
	return rc;
}

int httpd_start(const char *listen, const struct httpd_route *routes, size_t n_routes,
                const struct httpd_opts *opts, struct httpd **out, struct tdxr_err *err)
{
	struct httpd_opts o = { 0 };
	struct sockaddr_storage ss;
	struct httpd *srv = NULL;
	const union MHD_DaemonInfo *di;
	unsigned int flags;
	int v6 = 0, rc;

	*out = NULL;
	if (opts)
		o = *opts;
	o.threads = o.threads ? o.threads : HTTPD_THREADS_DEFAULT;
	if (o.threads > HTTPD_THREADS_MAX)
		o.threads = HTTPD_THREADS_MAX;
	o.timeout_s = o.timeout_s ? o.timeout_s : HTTPD_TIMEOUT_S_DEFAULT;
	o.max_conns = o.max_conns ? o.max_conns : HTTPD_CONNS_DEFAULT;
	o.max_per_ip = o.max_per_ip ? o.max_per_ip : HTTPD_CONNS_PER_IP_DEFAULT;
	o.max_inflight = o.max_inflight ? o.max_inflight : HTTPD_INFLIGHT_DEFAULT;
	rc = listen_parse(listen, &ss, &v6, err);
	if (rc != 0)
		goto out;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	rc = routes_copy(routes, n_routes, &srv->routes, err);
	if (rc != 0)
		goto out;
	srv->n_routes = n_routes;
	srv->inflight_max = o.max_inflight;
	atomic_init(&srv->inflight, 0);
	clock_gettime(CLOCK_MONOTONIC, &srv->started);
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	if (v6)
		flags |= MHD_USE_IPv6;
	{
		/* The pool size only when there is a pool: libmicrohttpd warns about a size of 0 or 1. */
		struct MHD_OptionItem mo[] = {
			{ MHD_OPTION_SOCK_ADDR, 0, &ss },
			{ MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)o.timeout_s, NULL },
			{ MHD_OPTION_CONNECTION_LIMIT, (intptr_t)o.max_conns, NULL },
			{ MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)o.max_per_ip, NULL },
			{ MHD_OPTION_END, 0, NULL }, /* or the pool size */
			{ MHD_OPTION_END, 0, NULL },
		};

		if (o.threads > 1)
			mo[4] =
			    (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)o.threads, NULL };
		srv->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, mo,
		                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		                          MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, MHD_OPTION_END);
	}
	if (srv->d == NULL) {
		rc = tdxr_err_set(err, TDXR_EIO, "httpd: cannot listen on %s (address in use or not local?)",
		                  listen ? listen : HTTPD_LISTEN_DEFAULT);
		goto out;
	}
	di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : 0;
	TDXR_INFO(MOD, "listening on %s (port %u, %u threads, %zu routes)",
	          listen ? listen : HTTPD_LISTEN_DEFAULT, srv->port, o.threads, n_routes);
	*out = srv;
	srv = NULL;
out:
	httpd_stop(srv);
	return rc;
}

uint16_t httpd_port(const struct httpd *srv)
{
	return srv->port;
}

void httpd_stop(struct httpd *srv)
{
	if (srv == NULL)
		return;
	if (srv->d)
		MHD_stop_daemon(srv->d);
	routes_free(srv->routes, srv->n_routes);
	free(srv);
}

/* ============================================================= stock routes */

static void metrics_handler(void *ctx, const struct httpd_req *req, struct httpd_resp *resp)
{
	struct tdxr_err e;

	if (metrics_render(httpd_resp_body(resp), &e) != 0) {
		TDXR_ERR(MOD, "metrics: %s", e.msg);
		tdxr_buf_reset(httpd_resp_body(resp));
		httpd_resp_text(resp, 500, "metrics unavailable\n");
		return;
	}
	httpd_resp_status(resp, 200, "text/plain; version=0.0.4; charset=utf-8");
}

void httpd_route_metrics(struct httpd_route *out, const char *path)
{
	memset(out, 0, sizeof(*out));
	out->method = "GET";
	out->path = path ? path : "/metrics";
	out->fn = metrics_handler;
}

static void healthz_handler(void *ctx, const struct httpd_req *req, struct httpd_resp *resp)
{
	struct httpd_health h;
	char body[160];
	int n;

	h.jobs_running = (long)metrics_get(METRIC_JOBS_RUNNING, NULL, NULL);
	h.stopping = 0;
	if (req->rt->health_fn)
		req->rt->health_fn(ctx, &h);
	n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"jobs_running\":%ld,\"uptime_s\":%lld}\n",
	             h.stopping ? "stopping" : "ok", h.jobs_running, mono_s_since(&req->srv->started));
	if (n < 0 || (size_t)n >= sizeof(body)) {
		httpd_resp_text(resp, 500, "health unavailable\n");
		return;
	}
	httpd_resp_set(resp, h.stopping ? 503 : 200, "application/json", body, (size_t)n, NULL);
}

void httpd_route_healthz(struct httpd_route *out, const char *path, httpd_health_fn fn, void *ctx)
{
	memset(out, 0, sizeof(*out));
	out->method = "GET";
	out->path = path ? path : "/healthz";
	out->fn = healthz_handler;
	out->ctx = ctx;
	out->health_fn = fn;
}
