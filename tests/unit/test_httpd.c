/*
 * test_httpd.c - agent/httpd.c with the GitHub webhook route, /metrics and
 * /healthz mounted, as the agent will serve them: a real server on a free
 * loopback port (port 0), driven by the project's HTTP client (common/http.h)
 * and, where a client library would hide the behaviour (no Content-Length,
 * a half-sent request, an idle connection), by raw sockets.
 *
 * Covers: routing (404, 405 with Allow), body caps (413 before the body is
 * read; a body without Content-Length never grows past the cap), the webhook
 * answers (202 with the event handed over, 401 bad or missing signature with
 * no body or secret in the log, 409 replay by delivery id and by body, ping,
 * other events, 415, 400, 503 when the queue refuses and then a redelivery
 * accepted), /metrics lines parse as the Prometheus text format and count
 * what happened, /healthz, 4 threads of concurrent clients, the idle timeout,
 * and a clean stop with a connection open (the port is closed afterwards).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/ci/github_webhook.h"
#include "agent/httpd.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/secret.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SECRET "test webhook secret 0123456789"
#define ECHO_CAP 1024u
#define QUEUE_MAX 64u

/* ============================================================ the "agent" side */

/* The caller's queue: what the webhook hands over. */
struct queue {
	pthread_mutex_t mu;
	struct gh_job_event *ev[QUEUE_MAX];
	size_t n;
	int refuse;
};

static int queue_push(void *ctx, struct gh_job_event *ev)
{
	struct queue *q = ctx;
	int rc = -1;

	pthread_mutex_lock(&q->mu);
	if (!q->refuse && q->n < QUEUE_MAX) {
		q->ev[q->n++] = ev;
		rc = 0;
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

static void queue_clear(struct queue *q)
{
	size_t i;

	pthread_mutex_lock(&q->mu);
	for (i = 0; i < q->n; i++)
		gh_job_event_free(q->ev[i]);
	q->n = 0;
	q->refuse = 0;
	pthread_mutex_unlock(&q->mu);
}

static void echo_handler(void *ctx, const struct httpd_req *req, struct httpd_resp *resp)
{
	size_t n;
	const uint8_t *b = httpd_req_body(req, &n);
	char line[64];

	snprintf(line, sizeof(line), "%zu %02x\n", n, n ? b[n - 1] : 0);
	httpd_resp_text(resp, 200, line);
}

static void silent_handler(void *ctx, const struct httpd_req *req, struct httpd_resp *resp)
{
	(void)ctx; /* sets nothing: the server must answer 500 */
}

static int g_stopping;

static void health(void *ctx, struct httpd_health *h)
{
	h->stopping = *(int *)ctx;
}

struct fixture {
	struct httpd *srv;
	struct gh_webhook *wh;
	struct queue q;
	struct http_client *c;
	char base[64];
	FILE *log;
};

static struct fixture F;

static int setup(void **state)
{
	struct httpd_route routes[6];
	struct tdxr_secret *s = tdxr_secret_new(SECRET, strlen(SECRET));
	struct http_client_opts co;
	struct gh_webhook_opts wo;
	struct tdxr_err e;

	memset(&F, 0, sizeof(F));
	pthread_mutex_init(&F.q.mu, NULL);
	metrics_reset();
	F.log = tmpfile();
	assert_non_null(F.log);
	tdxr_log_setup(TDXR_LOG_TEXT, TDXR_LOG_DEBUG, F.log);
	memset(&wo, 0, sizeof(wo));
	wo.replay_max = 64;
	assert_int_equal(gh_webhook_new(s, queue_push, &F.q, &wo, &F.wh, &e), 0);
	tdxr_secret_free(s); /* the receiver keeps its own copy */
	gh_webhook_route(F.wh, &routes[0]);
	httpd_route_metrics(&routes[1], NULL);
	g_stopping = 0;
	httpd_route_healthz(&routes[2], NULL, health, &g_stopping);
	memset(&routes[3], 0, sizeof(routes[3]));
	routes[3].method = "POST";
	routes[3].path = "/echo";
	routes[3].max_body = ECHO_CAP;
	routes[3].fn = echo_handler;
	routes[4] = routes[3];
	routes[4].method = "PUT";
	memset(&routes[5], 0, sizeof(routes[5]));
	routes[5].method = "GET";
	routes[5].path = "/silent";
	routes[5].fn = silent_handler;
	if (httpd_start("127.0.0.1:0", routes, 6, NULL, &F.srv, &e) != 0)
		fail_msg("httpd_start: %s", e.msg);
	assert_true(httpd_port(F.srv) > 0);
	snprintf(F.base, sizeof(F.base), "http://127.0.0.1:%u", httpd_port(F.srv));
	memset(&co, 0, sizeof(co));
	co.timeout_ms = 20000;
	assert_int_equal(http_client_new(&co, &F.c, &e), 0);
	*state = &F;
	return 0;
}

static int teardown(void **state)
{
	http_client_free(F.c);
	httpd_stop(F.srv);
	gh_webhook_free(F.wh);
	queue_clear(&F.q);
	pthread_mutex_destroy(&F.q.mu);
	tdxr_log_setup(TDXR_LOG_TEXT, TDXR_LOG_INFO, NULL);
	fclose(F.log);
	return 0;
}

/* ================================================================== helpers */

/* One request; returns the status (0 = no response), body into *resp (caller disposes). */
static long do_req(struct http_client *c, enum http_method m, const char *path, const char *const *hdrs,
                   const void *body, size_t n, struct http_response *resp)
{
	struct http_request r;
	char url[256];
	struct tdxr_err e;

	snprintf(url, sizeof(url), "%s%s", F.base, path);
	memset(&r, 0, sizeof(r));
	r.method = m;
	r.url = url;
	r.headers = hdrs;
	r.body = body;
	r.body_len = n;
	http_response_init(resp);
	if (http_request_send(c, &r, resp, &e) != 0)
		return 0;
	return resp->status;
}

static long get(const char *path, struct http_response *resp)
{
	return do_req(F.c, HTTP_GET, path, NULL, NULL, 0, resp);
}

static void sign(const char *body, size_t n, const char *secret, char out[80])
{
	uint8_t mac[32];
	unsigned int ml = 0;
	size_t i;

	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)body, n, mac, &ml));
	memcpy(out, "sha256=", 7);
	for (i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
}

/* POSTs body to the webhook with the given event, delivery and signature (NULL = signed right). */
static long deliver(const char *event, const char *delivery, const char *body, const char *sig,
                    const char *ctype, struct http_response *resp)
{
	char h_sig[128], h_ev[96], h_del[128], h_ct[96], good[80];
	const char *hdrs[5];
	size_t nh = 0;

	sign(body, strlen(body), SECRET, good);
	snprintf(h_ct, sizeof(h_ct), "Content-Type: %s", ctype ? ctype : "application/json");
	hdrs[nh++] = h_ct;
	if (sig == NULL || sig[0]) {
		snprintf(h_sig, sizeof(h_sig), "X-Hub-Signature-256: %s", sig ? sig : good);
		hdrs[nh++] = h_sig;
	}
	snprintf(h_ev, sizeof(h_ev), "X-GitHub-Event: %s", event);
	hdrs[nh++] = h_ev;
	snprintf(h_del, sizeof(h_del), "X-GitHub-Delivery: %s", delivery);
	hdrs[nh++] = h_del;
	hdrs[nh] = NULL;
	return do_req(F.c, HTTP_POST, GH_WEBHOOK_PATH_DEFAULT, hdrs, body, strlen(body), resp);
}

/* A workflow_job payload shaped like GitHub's (only the fields we read, plus noise). */
static void payload(char *out, size_t cap, const char *action, unsigned long long id)
{
	snprintf(
	    out, cap,
	    "{\"action\":\"%s\",\"workflow_job\":{\"id\":%llu,\"run_id\":2202229078,\"run_attempt\":1,"
	    "\"head_sha\":\"3484a3fb816e0859fd6e1cea078d76385ff50625\",\"status\":\"%s\",\"conclusion\":null,"
	    "\"labels\":[\"self-hosted\",\"tdx\"],\"runner_id\":null,\"runner_name\":null,\"steps\":[]},"
	    "\"repository\":{\"id\":1,\"full_name\":\"octo-org/octo-repo\"},\"sender\":{\"login\":\"x\"}}",
	    action, id, action);
}

static int connect_port(uint16_t port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int connect_raw(void)
{
	return connect_port(httpd_port(F.srv));
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0)
			return; /* the server may close early; the caller checks the answer */
		c += w;
		n -= (size_t)w;
	}
}

#define RECV_TIMEOUT (-2)

/* Reads until EOF or until nothing arrives for timeout_ms. Returns the bytes read
 * (NUL-terminated); with nothing read: 0 on EOF, -1 on a reset, RECV_TIMEOUT. */
static ssize_t recv_all(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t off = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	buf[0] = '\0';
	while (off + 1 < cap) {
		ssize_t r;

		if (poll(&p, 1, timeout_ms) != 1)
			return off ? (ssize_t)off : RECV_TIMEOUT;
		r = recv(fd, buf + off, cap - 1 - off, 0);
		if (r < 0 && off == 0)
			return -1;
		if (r <= 0)
			break;
		off += (size_t)r;
		buf[off] = '\0';
	}
	return (ssize_t)off;
}

/* The server closed the connection without answering. */
static int closed_silently(ssize_t n)
{
	return n == 0 || n == -1;
}

static char *log_text(void)
{
	long n;
	char *s;

	fflush(F.log);
	n = ftell(F.log);
	assert_true(n >= 0);
	s = calloc(1, (size_t)n + 1);
	assert_non_null(s);
	rewind(F.log);
	assert_int_equal(fread(s, 1, (size_t)n, F.log), (size_t)n);
	fseek(F.log, 0, SEEK_END);
	return s;
}

/* =================================================================== routes */

static void test_unknown_path_is_404_and_wrong_method_405_with_allow(void **state)
{
	struct http_response r;
	const char *allow;

	assert_int_equal(get("/nope", &r), 404);
	http_response_dispose(&r);
	assert_int_equal(get("/healthz/extra", &r), 404);
	http_response_dispose(&r);
	assert_int_equal(do_req(F.c, HTTP_POST, "/metrics", NULL, "x", 1, &r), 405);
	assert_string_equal(http_response_header(&r, "Allow"), "GET");
	http_response_dispose(&r);
	assert_int_equal(do_req(F.c, HTTP_DELETE, "/echo", NULL, NULL, 0, &r), 405);
	allow = http_response_header(&r, "Allow");
	assert_non_null(allow);
	assert_non_null(strstr(allow, "POST"));
	assert_non_null(strstr(allow, "PUT"));
	http_response_dispose(&r);
	assert_int_equal(get(GH_WEBHOOK_PATH_DEFAULT, &r), 405);
	http_response_dispose(&r);
}

/* HEAD on a GET route: the GET's status and headers, no body. */
static void head_has_no_body(void)
{
	static const char req[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[1024];
	int fd = connect_raw();

	assert_true(fd >= 0);
	send_all(fd, req, strlen(req));
	assert_true(recv_all(fd, buf, sizeof(buf), 5000) > 0);
	close(fd);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strstr(buf, "\r\n\r\n"));
	assert_string_equal(strstr(buf, "\r\n\r\n"), "\r\n\r\n");
}

static void test_routes_dispatch_by_method_and_a_silent_handler_is_500(void **state)
{
	struct http_response r;

	assert_int_equal(do_req(F.c, HTTP_POST, "/echo", NULL, "abc", 3, &r), 200);
	assert_string_equal((char *)r.body.data, "3 63\n");
	http_response_dispose(&r);
	assert_int_equal(do_req(F.c, HTTP_PUT, "/echo", NULL, "ab", 2, &r), 200);
	assert_string_equal((char *)r.body.data, "2 62\n");
	http_response_dispose(&r);
	assert_int_equal(get("/silent", &r), 500);
	http_response_dispose(&r);
	head_has_no_body();
}

static void test_route_table_is_checked_at_start(void **state)
{
	struct httpd_route rt[2];
	struct httpd *s = NULL;
	struct tdxr_err e;

	httpd_route_metrics(&rt[0], NULL);
	httpd_route_metrics(&rt[1], NULL);
	assert_int_equal(httpd_start("127.0.0.1:0", rt, 2, NULL, &s, &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "twice"));
	assert_null(s);
	httpd_route_metrics(&rt[1], "no-slash");
	assert_int_equal(httpd_start("127.0.0.1:0", rt, 2, NULL, &s, &e), TDXR_EINVAL);
	assert_int_equal(httpd_start("127.0.0.1:0", rt, 0, NULL, &s, &e), TDXR_EINVAL);
}

static void test_listen_addresses_are_parsed_strictly(void **state)
{
	static const char *const bad[] = {
		"",       "nonsense", "127.0.0.1", "127.0.0.1:",     "127.0.0.1:65536", "1.2.3.4.5:80",
		"::1:80", "[::1]",    "[::1]80",   "example.com:80", "127.0.0.1:-1",    "127.0.0.1:8x"
	};
	struct httpd_route rt;
	struct httpd *s = NULL, *s2 = NULL;
	struct tdxr_err e;
	char addr[64];
	size_t i;

	httpd_route_metrics(&rt, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(httpd_start(bad[i], &rt, 1, NULL, &s, &e), TDXR_EINVAL);
		assert_null(s);
	}
	/* "localhost:0" and a bare port are loopback */
	assert_int_equal(httpd_start("localhost:0", &rt, 1, NULL, &s, &e), 0);
	/* the same port twice: EIO naming the address */
	snprintf(addr, sizeof(addr), "%u", httpd_port(s));
	assert_int_equal(httpd_start(addr, &rt, 1, NULL, &s2, &e), TDXR_EIO);
	assert_non_null(strstr(e.msg, addr));
	assert_null(s2);
	httpd_stop(s);
	httpd_stop(NULL);
	s = NULL;
	if (httpd_start("[::1]:0", &rt, 1, NULL, &s, &e) == 0) /* when the host has IPv6 loopback */
		httpd_stop(s);
	else
		assert_int_equal(e.code, TDXR_EIO);
}

/* ================================================================ body caps */

static void test_body_over_the_route_cap_is_413_before_it_is_read(void **state)
{
	char big[ECHO_CAP + 1];
	struct http_response r;

	memset(big, 'a', sizeof(big));
	assert_int_equal(do_req(F.c, HTTP_POST, "/echo", NULL, big, ECHO_CAP, &r), 200);
	assert_string_equal((char *)r.body.data, "1024 61\n");
	http_response_dispose(&r);
	assert_int_equal(do_req(F.c, HTTP_POST, "/echo", NULL, big, ECHO_CAP + 1, &r), 413);
	http_response_dispose(&r);
	/* the server keeps serving */
	assert_int_equal(do_req(F.c, HTTP_POST, "/echo", NULL, big, 10, &r), 200);
	http_response_dispose(&r);
}

static void test_declared_length_over_the_cap_is_refused_without_sending_the_body(void **state)
{
	/* A raw request that only declares 25 MiB + 1 and sends nothing: the answer must come
	 * at once (the server does not wait for the body). */
	char req[512], buf[2048];
	int fd = connect_raw();

	assert_true(fd >= 0);
	snprintf(
	    req, sizeof(req),
	    "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %u\r\n\r\n",
	    GH_WEBHOOK_PATH_DEFAULT, GH_WEBHOOK_BODY_MAX + 1);
	send_all(fd, req, strlen(req));
	assert_true(recv_all(fd, buf, sizeof(buf), 5000) > 0);
	assert_memory_equal(buf, "HTTP/1.1 413", 12);
	close(fd);
}

/* Sends a chunked POST /echo of n_chunks x 512 bytes; returns what came back. */
static ssize_t chunked_post(int n_chunks, char *buf, size_t cap)
{
	const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                   "Transfer-Encoding: chunked\r\n\r\n";
	char chunk[512];
	int fd = connect_raw(), i;
	ssize_t n;

	assert_true(fd >= 0);
	send_all(fd, head, strlen(head));
	memset(chunk, 'b', sizeof(chunk));
	for (i = 0; i < n_chunks; i++) {
		send_all(fd, "200\r\n", 5);
		send_all(fd, chunk, sizeof(chunk));
		send_all(fd, "\r\n", 2);
	}
	send_all(fd, "0\r\n\r\n", 5);
	n = recv_all(fd, buf, cap, 5000);
	close(fd);
	return n;
}

static void test_chunked_body_over_the_cap_never_reaches_the_handler(void **state)
{
	char buf[2048];
	ssize_t n;

	/* within the cap: served */
	assert_true(chunked_post(2, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	assert_non_null(strstr(buf, "1024 62\n"));
	/* over the cap: discarded and answered 413 */
	assert_true(chunked_post(3, buf, sizeof(buf)) > 0);
	assert_memory_equal(buf, "HTTP/1.1 413", 12);
	/* more than twice the cap: the connection is closed, never a 200 */
	n = chunked_post(6, buf, sizeof(buf));
	assert_true(closed_silently(n));
}

static void test_bodies_in_flight_together_stay_under_the_server_budget(void **state)
{
	struct httpd_route rt;
	struct httpd_opts o;
	struct httpd *s = NULL;
	struct tdxr_err e;
	char head[256], body[1024], buf[1024];
	int a, b, c;

	memset(&rt, 0, sizeof(rt));
	rt.method = "POST";
	rt.path = "/echo";
	rt.max_body = ECHO_CAP;
	rt.fn = echo_handler;
	memset(&o, 0, sizeof(o));
	o.max_inflight = 2000;
	assert_int_equal(httpd_start("127.0.0.1:0", &rt, 1, &o, &s, &e), 0);
	snprintf(head, sizeof(head),
	         "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %u\r\n\r\n",
	         ECHO_CAP);
	memset(body, 'z', sizeof(body));
	a = connect_port(httpd_port(s));
	b = connect_port(httpd_port(s));
	c = connect_port(httpd_port(s));
	assert_true(a >= 0 && b >= 0 && c >= 0);
	/* a and b hold 900 bytes each (1800 of 2000) without finishing */
	send_all(a, head, strlen(head));
	send_all(a, body, 900);
	send_all(b, head, strlen(head));
	send_all(b, body, 900);
	usleep(300 * 1000);
	/* c's 300 bytes would pass the budget: its connection is closed, no answer */
	send_all(c, head, strlen(head));
	send_all(c, body, 300);
	assert_true(closed_silently(recv_all(c, buf, sizeof(buf), 5000)));
	/* a finishes and is served; that frees its share for a new request */
	send_all(a, body, ECHO_CAP - 900);
	assert_true(recv_all(a, buf, sizeof(buf), 5000) > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	close(c);
	c = connect_port(httpd_port(s));
	send_all(c, head, strlen(head));
	send_all(c, body, ECHO_CAP);
	assert_true(recv_all(c, buf, sizeof(buf), 5000) > 0);
	assert_memory_equal(buf, "HTTP/1.1 200", 12);
	close(a);
	close(b);
	close(c);
	httpd_stop(s);
}

/* ================================================================== webhook */

static void test_webhook_accepts_a_signed_workflow_job_and_hands_it_over(void **state)
{
	char body[1024];
	struct http_response r;
	struct gh_job_event *ev;

	payload(body, sizeof(body), "queued", 289782451ull);
	assert_int_equal(
	    deliver("workflow_job", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body, NULL, NULL, &r), 202);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 1);
	ev = F.q.ev[0];
	assert_string_equal(ev->delivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	assert_int_equal(ev->action, GH_JOB_QUEUED);
	assert_int_equal(ev->job_id, 289782451ull);
	assert_int_equal(ev->run_id, 2202229078ull);
	assert_int_equal(ev->n_labels, 2);
	assert_string_equal(ev->labels[1], "tdx");
	assert_string_equal(ev->repository, "octo-org/octo-repo");
	assert_null(ev->runner_name);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "accepted", NULL), 1);
}

static void test_webhook_refuses_bad_or_missing_signatures_without_logging_secrets(void **state)
{
	char body[1024], wrong[80];
	struct http_response r;
	char *log;

	payload(body, sizeof(body), "queued", 7);
	sign(body, strlen(body), "not the secret", wrong);
	assert_int_equal(deliver("workflow_job", "d-1", body, wrong, NULL, &r), 401);
	http_response_dispose(&r);
	assert_int_equal(deliver("workflow_job", "d-2", body, "", NULL, &r), 401); /* no header */
	http_response_dispose(&r);
	assert_int_equal(deliver("workflow_job", "d-3", body, "sha256=zz", NULL, &r), 401);
	http_response_dispose(&r);
	/* a body changed after signing */
	sign(body, strlen(body), SECRET, wrong);
	body[10] ^= 1;
	assert_int_equal(deliver("workflow_job", "d-4", body, wrong, NULL, &r), 401);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 0);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "bad_signature", NULL), 4);
	log = log_text();
	assert_non_null(strstr(log, "refused a delivery from 127.0.0.1 (delivery d-1"));
	assert_null(strstr(log, SECRET));
	assert_null(strstr(log, "octo-org")); /* nothing of the body */
	assert_null(strstr(log, wrong + 7));  /* nor the signature */
	free(log);
}

static void test_webhook_refuses_replays_by_delivery_id_and_by_body(void **state)
{
	char body[1024], body2[1024];
	struct http_response r;

	payload(body, sizeof(body), "in_progress", 11);
	assert_int_equal(deliver("workflow_job", "aaaa-1", body, NULL, NULL, &r), 202);
	http_response_dispose(&r);
	/* the same delivery again */
	assert_int_equal(deliver("workflow_job", "aaaa-1", body, NULL, NULL, &r), 409);
	http_response_dispose(&r);
	/* the same signed body under a made-up delivery id */
	assert_int_equal(deliver("workflow_job", "aaaa-2", body, NULL, NULL, &r), 409);
	http_response_dispose(&r);
	/* a different body under the used id */
	payload(body2, sizeof(body2), "completed", 11);
	assert_int_equal(deliver("workflow_job", "aaaa-1", body2, NULL, NULL, &r), 409);
	http_response_dispose(&r);
	/* a genuinely new delivery */
	assert_int_equal(deliver("workflow_job", "aaaa-3", body2, NULL, NULL, &r), 202);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 2);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "replay", NULL), 3);
}

static void test_webhook_answers_ping_ignores_other_events_and_checks_headers(void **state)
{
	char body[1024];
	struct http_response r;

	assert_int_equal(
	    deliver("ping", "p-1", "{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}", NULL, NULL, &r),
	    200);
	assert_string_equal((char *)r.body.data, "pong\n");
	http_response_dispose(&r);
	payload(body, sizeof(body), "queued", 12);
	assert_int_equal(deliver("push", "p-2", body, NULL, NULL, &r), 204);
	http_response_dispose(&r);
	/* an action we do not act on */
	payload(body, sizeof(body), "requested_action", 13);
	assert_int_equal(deliver("workflow_job", "p-3", body, NULL, NULL, &r), 204);
	http_response_dispose(&r);
	/* form-encoded deliveries are refused with a hint */
	payload(body, sizeof(body), "queued", 14);
	assert_int_equal(deliver("workflow_job", "p-4", body, NULL, "application/x-www-form-urlencoded", &r),
	                 415);
	http_response_dispose(&r);
	/* malformed headers and payloads (signed) */
	assert_int_equal(deliver("workflow_job", "bad id!", body, NULL, NULL, &r), 400);
	http_response_dispose(&r);
	assert_int_equal(deliver("Workflow-Job", "p-5", body, NULL, NULL, &r), 400);
	http_response_dispose(&r);
	assert_int_equal(deliver("workflow_job", "p-6", "{\"action\":\"queued\"}", NULL, NULL, &r), 400);
	http_response_dispose(&r);
	assert_int_equal(deliver("workflow_job", "p-7", "not json", NULL, NULL, &r), 400);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 0);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "ping", NULL), 1);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "ignored", NULL), 2);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "bad_request", NULL), 5);
}

static void test_webhook_answers_503_when_the_queue_refuses_and_accepts_the_redelivery(void **state)
{
	char body[1024];
	struct http_response r;

	payload(body, sizeof(body), "queued", 21);
	F.q.refuse = 1;
	assert_int_equal(deliver("workflow_job", "q-1", body, NULL, NULL, &r), 503);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 0);
	F.q.refuse = 0;
	assert_int_equal(deliver("workflow_job", "q-1", body, NULL, NULL, &r), 202);
	http_response_dispose(&r);
	assert_int_equal(F.q.n, 1);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "queue_full", NULL), 1);
}

/* ========================================================== metrics, health */

/* One exposition line: "# HELP name text", "# TYPE name counter|gauge" or
 * name[{k="v",...}] value. */
static int metric_line_ok(const char *l)
{
	const char *p = l;
	char *end;

	if (strncmp(l, "# HELP ", 7) == 0 || strncmp(l, "# TYPE ", 7) == 0) {
		p = l + 7;
		if (strspn(p, "abcdefghijklmnopqrstuvwxyz_:") == 0)
			return 0;
		p += strspn(p, "abcdefghijklmnopqrstuvwxyz_:0123456789");
		if (*p != ' ')
			return 0;
		if (l[2] == 'T')
			return strcmp(p + 1, "counter") == 0 || strcmp(p + 1, "gauge") == 0;
		return p[1] != '\0';
	}
	if (strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:") == 0)
		return 0;
	p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789");
	if (*p == '{') {
		p++;
		for (;;) {
			size_t n =
			    strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");

			if (n == 0 || p[n] != '=' || p[n + 1] != '"')
				return 0;
			p += n + 2;
			while (*p && *p != '"')
				p += (*p == '\\' && p[1]) ? 2 : 1;
			if (*p != '"')
				return 0;
			p++;
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p != '}')
				return 0;
			p++;
			break;
		}
	}
	if (*p != ' ' || p[1] == '\0')
		return 0;
	errno = 0;
	strtod(p + 1, &end);
	return errno == 0 && *end == '\0';
}

static void test_metrics_are_prometheus_text_and_count_what_happened(void **state)
{
	struct http_response r;
	char body[1024], *text, *line, *nl;
	size_t lines = 0;

	metrics_add(METRIC_JOBS_TOTAL, 2, "gitlab", "success");
	metrics_add(METRIC_JOBS_TOTAL, 1, "github", "failure");
	metrics_add(METRIC_LEASE_SECONDS, 12.5, NULL, NULL);
	metrics_set(METRIC_LEASES_ACTIVE, 2, NULL, NULL);
	metrics_add(METRIC_WEBHOOK_DELIVERIES, 1, "a \"quoted\"\\value", NULL);
	payload(body, sizeof(body), "queued", 31);
	assert_int_equal(deliver("workflow_job", "m-1", body, NULL, NULL, &r), 202);
	http_response_dispose(&r);
	assert_int_equal(get("/metrics", &r), 200);
	assert_non_null(strstr(http_response_header(&r, "Content-Type"), "text/plain; version=0.0.4"));
	text = (char *)r.body.data;
	assert_non_null(strstr(text, "\ntdxr_jobs_total{system=\"gitlab\",result=\"success\"} 2\n"));
	assert_non_null(strstr(text, "\ntdxr_jobs_total{system=\"github\",result=\"failure\"} 1\n"));
	assert_non_null(strstr(text, "\ntdxr_lease_seconds_total 12.5\n"));
	assert_non_null(strstr(text, "\ntdxr_leases_active 2\n"));
	assert_non_null(strstr(text, "\ntdxr_jobs_running 0\n"));
	assert_non_null(strstr(text, "\ntdxr_gate_failures_total 0\n"));
	assert_non_null(strstr(text, "\ntdxr_webhook_deliveries_total{result=\"accepted\"} 1\n"));
	assert_non_null(strstr(text, "{result=\"a \\\"quoted\\\"\\\\value\"} 1\n"));
	assert_non_null(strstr(text, "# TYPE tdxr_jobs_total counter\n"));
	assert_non_null(strstr(text, "# TYPE tdxr_jobs_running gauge\n"));
	assert_int_equal(text[r.body.len - 1], '\n');
	for (line = text; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (!metric_line_ok(line))
			fail_msg("not an exposition line: %s", line);
		lines++;
	}
	assert_true(lines >= 20);
	http_response_dispose(&r);
}

static void test_metrics_registry_bounds_labels_and_ignores_misuse(void **state)
{
	char v[16], big[METRICS_LABEL_MAX + 2];
	unsigned i;

	for (i = 0; i < METRICS_SERIES_MAX + 5; i++) {
		snprintf(v, sizeof(v), "r%u", i);
		metrics_add(METRIC_WEBHOOK_DELIVERIES, 1, v, NULL);
	}
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "r0", NULL), 1);
	assert_int_equal(metrics_get(METRIC_WEBHOOK_DELIVERIES, "r70", NULL), 0); /* dropped */
	assert_true(metrics_get(METRIC_DROPPED, NULL, NULL) >= 5);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	metrics_add(METRIC_JOBS_TOTAL, 1, big, "success"); /* over METRICS_LABEL_MAX */
	metrics_add(METRIC_JOBS_TOTAL, 1, "gitlab", NULL); /* a used label missing */
	metrics_add(METRIC_JOBS_TOTAL, 1, "git\x01lab", "success");
	metrics_add(METRIC_JOBS_TOTAL, 1, "gitlab", "success\n");
	metrics_add(METRIC_JOBS_TOTAL, -1, "gitlab", "success"); /* counters only go up */
	metrics_set(METRIC_JOBS_TOTAL, 5, "gitlab", "success");  /* and are not set */
	assert_int_equal(metrics_get(METRIC_JOBS_TOTAL, "gitlab", "success"), 0);
	metrics_add(METRIC_JOBS_RUNNING, 2, NULL, NULL);
	metrics_add(METRIC_JOBS_RUNNING, -1, NULL, NULL);
	assert_int_equal(metrics_get(METRIC_JOBS_RUNNING, NULL, NULL), 1);
}

static void test_healthz_reports_status_jobs_and_uptime(void **state)
{
	struct http_response r;

	metrics_set(METRIC_JOBS_RUNNING, 3, NULL, NULL);
	assert_int_equal(get("/healthz", &r), 200);
	assert_string_equal(http_response_header(&r, "Content-Type"), "application/json");
	assert_non_null(strstr((char *)r.body.data, "{\"status\":\"ok\",\"jobs_running\":3,\"uptime_s\":"));
	http_response_dispose(&r);
	g_stopping = 1;
	assert_int_equal(get("/healthz", &r), 503);
	assert_non_null(strstr((char *)r.body.data, "\"status\":\"stopping\""));
	http_response_dispose(&r);
	g_stopping = 0;
}

/* ============================================================ concurrency */

#define CLIENTS 4
#define REQS 25

struct worker {
	int ok;
	int id;
};

static void *worker_main(void *p)
{
	struct worker *w = p;
	struct http_client_opts co;
	struct http_client *c = NULL;
	struct http_response r;
	char body[1024], del[32], sig[80], h_sig[128], h_del[64];
	const char *hdrs[5];
	int i;

	memset(&co, 0, sizeof(co));
	co.timeout_ms = 30000;
	if (http_client_new(&co, &c, NULL) != 0)
		return NULL;
	for (i = 0; i < REQS; i++) {
		long st;

		if (i % 5 == 0) {
			payload(body, sizeof(body), "queued", (unsigned long long)(1000 + w->id * 100 + i));
			sign(body, strlen(body), SECRET, sig);
			snprintf(del, sizeof(del), "c-%d-%d", w->id, i);
			snprintf(h_sig, sizeof(h_sig), "X-Hub-Signature-256: %s", sig);
			snprintf(h_del, sizeof(h_del), "X-GitHub-Delivery: %s", del);
			hdrs[0] = "Content-Type: application/json";
			hdrs[1] = h_sig;
			hdrs[2] = "X-GitHub-Event: workflow_job";
			hdrs[3] = h_del;
			hdrs[4] = NULL;
			st = do_req(c, HTTP_POST, GH_WEBHOOK_PATH_DEFAULT, hdrs, body, strlen(body), &r);
			w->ok += st == 202;
		} else if (i % 2) {
			st = do_req(c, HTTP_GET, "/healthz", NULL, NULL, 0, &r);
			w->ok += st == 200 && strstr((char *)r.body.data, "\"status\":\"ok\"") != NULL;
		} else {
			snprintf(body, sizeof(body), "worker %d request %d", w->id, i);
			st = do_req(c, HTTP_POST, "/echo", NULL, body, strlen(body), &r);
			w->ok += st == 200;
		}
		http_response_dispose(&r);
	}
	http_client_free(c);
	return NULL;
}

static void test_concurrent_clients_are_all_served(void **state)
{
	pthread_t t[CLIENTS];
	struct worker w[CLIENTS];
	int i;

	for (i = 0; i < CLIENTS; i++) {
		w[i].ok = 0;
		w[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < CLIENTS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, REQS);
	}
	assert_int_equal(F.q.n, CLIENTS * REQS / 5);
}

/* ==================================================== timeouts and stopping */

static void test_idle_and_half_sent_connections_time_out(void **state)
{
	struct httpd_route rt;
	struct httpd_opts o;
	struct httpd *s = NULL;
	struct tdxr_err e;
	char buf[256];
	struct timespec t0, t1;
	int fd;

	httpd_route_healthz(&rt, NULL, NULL, NULL);
	memset(&o, 0, sizeof(o));
	o.timeout_s = 1;
	o.threads = 1;
	assert_int_equal(httpd_start("127.0.0.1:0", &rt, 1, &o, &s, &e), 0);
	fd = connect_port(httpd_port(s));
	assert_true(fd >= 0);
	send_all(fd, "GET /healthz HTTP/1.1\r\nHost:", 28); /* never finished */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_true(closed_silently(recv_all(fd, buf, sizeof(buf), 10000)));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 8);
	close(fd);
	httpd_stop(s);
}

static void test_stop_with_open_connections_is_clean_and_closes_the_port(void **state)
{
	struct httpd_route rt;
	struct httpd *s = NULL;
	struct tdxr_err e;
	struct timespec t0, t1;
	char buf[256];
	int idle, half, after;
	uint16_t port;

	httpd_route_healthz(&rt, NULL, NULL, NULL);
	assert_int_equal(httpd_start("127.0.0.1:0", &rt, 1, NULL, &s, &e), 0);
	port = httpd_port(s);
	idle = connect_port(port);
	half = connect_port(port);
	assert_true(idle >= 0 && half >= 0);
	send_all(half, "GET /healthz HTTP/1.1\r\n", 23);
	usleep(100 * 1000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	httpd_stop(s);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	assert_true(closed_silently(recv_all(idle, buf, sizeof(buf), 2000)));
	assert_true(closed_silently(recv_all(half, buf, sizeof(buf), 2000)));
	after = connect_port(port); /* nothing listens any more */
	assert_int_equal(after, -1);
	close(idle);
	close(half);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unknown_path_is_404_and_wrong_method_405_with_allow,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes_dispatch_by_method_and_a_silent_handler_is_500,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_table_is_checked_at_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_addresses_are_parsed_strictly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_over_the_route_cap_is_413_before_it_is_read, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(
		    test_declared_length_over_the_cap_is_refused_without_sending_the_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_body_over_the_cap_never_reaches_the_handler,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_in_flight_together_stay_under_the_server_budget,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_accepts_a_signed_workflow_job_and_hands_it_over,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_webhook_refuses_bad_or_missing_signatures_without_logging_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_webhook_refuses_replays_by_delivery_id_and_by_body,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_webhook_answers_ping_ignores_other_events_and_checks_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_webhook_answers_503_when_the_queue_refuses_and_accepts_the_redelivery, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_metrics_are_prometheus_text_and_count_what_happened,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_registry_bounds_labels_and_ignores_misuse, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_healthz_reports_status_jobs_and_uptime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_clients_are_all_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_and_half_sent_connections_time_out, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_stop_with_open_connections_is_clean_and_closes_the_port,
		                                setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
