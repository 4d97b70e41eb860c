/*
 * test_phala.c - the Phala Cloud executor (executors/phala/).
 *
 * Pure parts first: status mapping, CVM names and ownership matching, request
 * bodies, response and error parsing, the "CVM is gone" rule, redaction and the
 * retry/backoff decision. Then the executor end to end against
 * tests/integration/phala_server.py (a real HTTP server on loopback that speaks
 * CONTRACTS.md §1 and injects faults): create -> ready -> endpoint -> destroy,
 * retries on 429/5xx counted by the server, a CVM stuck in "starting", a boot
 * error, a delete failing once, an already-deleted CVM, an ownership mismatch,
 * a hanging response, the sealed SSH key, and the API key never appearing in an
 * error message or a log line. Server tests skip when python3 is absent.
 */
#include "executors/phala/phala_int.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "executors/common/envcrypt.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "tu_python.h"

#define SERVER TDXR_SOURCE_DIR "/tests/integration/phala_server.py"
#define KEY "phk_test_0123456789abcdefSECRET"
#define PUBKEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0testtesttesttesttesttesttesttesttesttest l-00"
#define HOST "ci-host-1"
#define LEASE "l-0011223344556677"

/* ================================================================= pure */

static void test_state_map_running_failed_and_unknown(void **state)
{
	(void)state;
	assert_int_equal(phala_state_map("running", NULL), PHALA_ST_RUNNING);
	assert_int_equal(phala_state_map("running", ""), PHALA_ST_RUNNING);
	assert_int_equal(phala_state_map("starting", NULL), PHALA_ST_PENDING);
	assert_int_equal(phala_state_map("brand-new-status", NULL), PHALA_ST_PENDING);
	assert_int_equal(phala_state_map(NULL, NULL), PHALA_ST_PENDING);
	assert_int_equal(phala_state_map("starting", "disk full"), PHALA_ST_FAILED);
	assert_int_equal(phala_state_map("running", "oops"), PHALA_ST_FAILED);
	assert_int_equal(phala_state_map("error", NULL), PHALA_ST_FAILED);
	assert_int_equal(phala_state_map("exited", NULL), PHALA_ST_FAILED);
	assert_int_equal(phala_state_map("stopped", NULL), PHALA_ST_FAILED);
}

static void test_name_encodes_owner_and_lease(void **state)
{
	char n[64], tag[9], want[64];

	(void)state;
	assert_int_equal(phala_name_build(HOST, LEASE, n, sizeof(n), NULL), 0);
	phala_hosttag(HOST, tag);
	snprintf(want, sizeof(want), "tdxr-%s-0011223344556677", tag);
	assert_string_equal(n, want);
	assert_true(strlen(n) <= 63);
	assert_true(phala_name_owned(n, HOST));
	assert_false(phala_name_owned(n, "other-host"));
	assert_false(phala_name_owned("someone-else", HOST));
	assert_true(phala_name_matches(n, n));
	assert_true(phala_name_matches(n, "tdxr-0011223344556677")); /* the job's claim name */
	assert_false(phala_name_matches(n, "tdxr-0011223344556678"));
	assert_false(phala_name_matches("tdxr-zzzzzzzz-0011223344556677", "tdxr-0011223344556677"));
	assert_false(phala_name_matches(n, ""));
	/* odd characters are replaced, length is capped */
	assert_int_equal(phala_name_build(HOST, "l-a_b.c", n, sizeof(n), NULL), 0);
	assert_non_null(strstr(n, "-a-b-c"));
	assert_int_not_equal(phala_name_build(HOST, "", n, sizeof(n), NULL), 0);
}

static void test_syntax_checks(void **state)
{
	(void)state;
	assert_true(phala_app_id_ok("b60d1f55eeb01f17e0a5220b4c03792248d49f92"));
	assert_false(phala_app_id_ok("B60D1F55EEB01F17E0A5220B4C03792248D49F92"));
	assert_false(phala_app_id_ok("b60d1f55"));
	assert_true(phala_domain_ok("dstack-pha-prod5.phala.network"));
	assert_false(phala_domain_ok("evil.com/x"));
	assert_false(phala_domain_ok(".x"));
	assert_false(phala_domain_ok(""));
	assert_true(phala_cloud_id_ok("1234"));
	assert_false(phala_cloud_id_ok("l-00"));
	assert_false(phala_cloud_id_ok("12345678901234567890"));
}

static void test_provision_body_has_contract_fields(void **state)
{
	struct phala_provision_req r = { "tdxr-abc-1", NULL, "7", NULL, "services: {}\n" };
	json_error_t jerr;
	json_t *o, *cf;
	char *s = NULL;

	(void)state;
	assert_int_equal(phala_provision_body(&r, &s, NULL), 0);
	o = json_loads(s, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "name")), "tdxr-abc-1");
	assert_string_equal(json_string_value(json_object_get(o, "instance_type")), "tdx.small");
	assert_int_equal(json_integer_value(json_object_get(o, "node_id")), 7);
	assert_null(json_object_get(o, "image"));
	assert_true(json_is_true(json_object_get(o, "prefer_dev")));
	cf = json_object_get(o, "compose_file");
	assert_string_equal(json_string_value(json_object_get(cf, "docker_compose_file")), "services: {}\n");
	assert_true(json_is_true(json_object_get(cf, "gateway_enabled")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(cf, "allowed_envs"), 0)),
	                    "DSTACK_AUTHORIZED_KEYS");
	json_decref(o);
	free(s);
	assert_int_equal(phala_create_body("aa", "bb", "cc", &s, NULL), 0);
	o = json_loads(s, 0, &jerr);
	assert_string_equal(json_string_value(json_object_get(o, "encrypted_env")), "cc");
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "env_keys"), 0)),
	                    "DSTACK_AUTHORIZED_KEYS");
	json_decref(o);
	free(s);
}

static void test_compose_pick_prefers_spec_then_config(void **state)
{
	char *c = NULL;

	(void)state;
	assert_int_equal(phala_compose_pick("{\"docker_compose_file\":\"A\"}", "B", &c, NULL), 0);
	assert_string_equal(c, "A");
	free(c);
	assert_int_equal(phala_compose_pick("services: {}\n", "B", &c, NULL), 0);
	assert_string_equal(c, "services: {}\n");
	free(c);
	assert_int_equal(phala_compose_pick(NULL, "B", &c, NULL), 0);
	assert_string_equal(c, "B");
	free(c);
	assert_int_equal(phala_compose_pick(NULL, NULL, &c, NULL), 0);
	assert_non_null(strstr(c, "services:"));
	free(c);
	assert_int_not_equal(phala_compose_pick("{\"runner\":\"bash\"}", NULL, &c, NULL), 0);
	assert_null(c);
}

static void test_provision_parse_validates(void **state)
{
	struct phala_provision_resp r;
	const char *ok = "{\"app_id\":\"app_B60D1F55EEB01F17E0A5220B4C03792248D49F92\","
	                 "\"app_env_encrypt_pubkey\":\"0x1111111111111111111111111111111111111111111111111111111111111111\","
	                 "\"compose_hash\":\"2222222222222222222222222222222222222222222222222222222222222222\"}";
	const char *bad = "{\"app_id\":\"x/../y\",\"app_env_encrypt_pubkey\":\"11\",\"compose_hash\":\"22\"}";

	(void)state;
	assert_int_equal(phala_provision_parse(ok, strlen(ok), &r, NULL), 0);
	assert_string_equal(r.app_id, "b60d1f55eeb01f17e0a5220b4c03792248d49f92");
	assert_int_equal(strlen(r.pubkey), 64);
	assert_int_not_equal(phala_provision_parse(bad, strlen(bad), &r, NULL), 0);
	assert_int_not_equal(phala_provision_parse("[]", 2, &r, NULL), 0);
	assert_int_not_equal(phala_provision_parse("{\"app_id\":1}", 12, &r, NULL), 0);
}

static void test_cvm_parse_reads_api_and_cli_shapes(void **state)
{
	struct phala_cvm c;
	const char *api = "{\"id\":42,\"name\":\"n1\",\"app_id\":\"b60d1f55eeb01f17e0a5220b4c03792248d49f92\","
	                  "\"status\":\"running\",\"gateway\":{\"base_domain\":\"gw.example\"}}";
	const char *cli = "{\"appId\":\"b60d1f55eeb01f17e0a5220b4c03792248d49f92\",\"cvmName\":\"n2\","
	                  "\"status\":\"running\"}";

	(void)state;
	assert_int_equal(phala_cvm_parse(api, strlen(api), &c, NULL), 0);
	assert_string_equal(c.id, "42");
	assert_string_equal(c.base_domain, "gw.example");
	assert_int_equal(phala_cvm_parse(cli, strlen(cli), &c, NULL), 0);
	assert_string_equal(c.name, "n2");
	assert_string_equal(c.id, "");
	assert_int_not_equal(phala_cvm_parse("{\"id\":\"x;y\"}", 12, &c, NULL), 0);
	assert_int_not_equal(phala_cvm_parse("{\"name\":5}", 10, &c, NULL), 0);
}

static void test_error_format_reads_detail_shapes(void **state)
{
	char m[256];
	const char *s = "{\"detail\":\"Invalid API key\"}";
	const char *o = "{\"detail\":{\"error_code\":\"CVM_QUOTA\",\"message\":\"quota exceeded\"}}";
	const char *a = "{\"detail\":[{\"loc\":[\"body\",\"name\"],\"msg\":\"invalid name\"}]}";

	(void)state;
	phala_error_format("provision", 401, s, strlen(s), m, sizeof(m));
	assert_string_equal(m, "provision: HTTP 401: Invalid API key");
	phala_error_format("create", 409, o, strlen(o), m, sizeof(m));
	assert_string_equal(m, "create: HTTP 409: quota exceeded (CVM_QUOTA)");
	phala_error_format("provision", 422, a, strlen(a), m, sizeof(m));
	assert_string_equal(m, "provision: HTTP 422: invalid name");
	phala_error_format("get", 502, "<html>\n", 7, m, sizeof(m));
	assert_string_equal(m, "get: HTTP 502: <html> ");
	phala_error_format("get", 500, NULL, 0, m, sizeof(m));
	assert_string_equal(m, "get: HTTP 500: no detail");
}

static void test_gone_only_when_the_body_names_the_cvm(void **state)
{
	const char *generic = "{\"detail\":\"Not Found\"}";
	const char *code = "{\"detail\":{\"error_code\":\"CVM_NOT_FOUND\",\"message\":\"x\"}}";
	const char *text = "{\"detail\":\"CVM 12 does not exist\"}";

	(void)state;
	assert_false(phala_error_is_cvm_gone(404, generic, strlen(generic)));
	assert_false(phala_error_is_cvm_gone(404, "", 0));
	assert_true(phala_error_is_cvm_gone(404, code, strlen(code)));
	assert_true(phala_error_is_cvm_gone(404, text, strlen(text)));
	assert_false(phala_error_is_cvm_gone(500, text, strlen(text)));
}

static void test_redact_removes_every_copy(void **state)
{
	char s[128] = "key " KEY " and again " KEY ".";

	(void)state;
	phala_redact(s, sizeof(s), KEY);
	assert_string_equal(s, "key *** and again ***.");
}

static void test_retry_decisions(void **state)
{
	struct phala_backoff b = { 4, 100, 1000, 5000 };
	unsigned d;

	(void)state;
	/* 429 and 503 are retried even for POST; Retry-After is honoured and capped */
	assert_true(phala_retry_decide(&b, 0, 429, 1, 0, " 2\r\n", 0, &d));
	assert_int_equal(d, 2000);
	assert_true(phala_retry_decide(&b, 0, 429, 1, 1, "60", 0, &d));
	assert_int_equal(d, 5000);
	assert_true(phala_retry_decide(&b, 0, 503, 1, 0, NULL, 7, &d));
	assert_true(d >= 50 && d <= 100);
	/* 500 only when idempotent; 4xx never */
	assert_true(phala_retry_decide(&b, 0, 500, 1, 1, NULL, 0, &d));
	assert_false(phala_retry_decide(&b, 0, 500, 1, 0, NULL, 0, &d));
	assert_false(phala_retry_decide(&b, 0, 400, 1, 1, NULL, 0, &d));
	assert_false(phala_retry_decide(&b, 0, 404, 1, 1, NULL, 0, &d));
	/* transport failures: POST only when the request was never sent */
	assert_true(phala_retry_decide(&b, 0, 0, 0, 0, NULL, 0, &d));
	assert_false(phala_retry_decide(&b, 0, 0, 1, 0, NULL, 0, &d));
	/* exponential with jitter in [d/2, d], capped */
	assert_true(phala_retry_decide(&b, 2, 500, 1, 1, NULL, 0xffffffffu, &d));
	assert_true(d >= 200 && d <= 400);
	b.max_attempts = 20;
	assert_true(phala_retry_decide(&b, 15, 500, 1, 1, NULL, 12345, &d));
	assert_true(d >= 500 && d <= 1000);
	/* attempts exhausted */
	b.max_attempts = 3;
	assert_false(phala_retry_decide(&b, 2, 500, 1, 1, NULL, 0, &d));
}

static void test_init_rejects_bad_config(void **state)
{
	void *priv = calloc(1, exec_phala.priv_size);
	struct tdxr_err e;

	(void)state;
	assert_non_null(priv);
	assert_int_equal(exec_phala.init(priv, "/tmp", "{\"api_key\":\"k\",\"nope\":1}", &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "nope"));
	assert_int_equal(exec_phala.init(priv, "/tmp", "{\"api_key\":\"k\",\"api_url\":\"http://example.com\"}", &e),
	                 TDXR_EINVAL);
	unsetenv("PHALA_CLOUD_API_KEY");
	assert_int_equal(exec_phala.init(priv, "/tmp", "{}", &e), TDXR_EAUTH);
	assert_null(strstr(e.msg, "k\""));
	assert_int_equal(exec_phala.init(priv, "/tmp", "{\"api_key\":\"k\"}", &e), 0);
	exec_phala.dispose(priv);
	free(priv);
}

/* ================================================================= server */

struct srv {
	pid_t pid;
	int in_fd;
	int port;
	char base[64];
};

static int srv_start(struct srv *s)
{
	const char *argv[] = { "python3", SERVER, "--api-key", KEY, "--watch-stdin", NULL };
	int in[2], out[2];
	char line[64];
	size_t ll = 0;
	uint64_t port = 0;

	memset(s, 0, sizeof(*s));
	s->pid = -1;
	if (!tu_have_python3()) {
		print_message("skip: python3 not found; the phala server tests need it\n");
		return -1;
	}
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->in_fd = in[1];
	while (ll < sizeof(line) - 1) {
		struct pollfd pfd = { out[0], POLLIN, 0 };

		if (poll(&pfd, 1, 10000) <= 0 || read(out[0], line + ll, 1) != 1 || line[ll] == '\n')
			break;
		ll++;
	}
	line[ll] = '\0';
	close(out[0]);
	if (strncmp(line, "PORT ", 5) != 0)
		fail_msg("phala_server.py did not start (got '%s')", line);
	assert_int_equal(tdxr_parse_u64(line + 5, 65535, &port, NULL), 0);
	s->port = (int)port;
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d/api/v1", s->port);
	return 0;
}

static void srv_stop(struct srv *s)
{
	int st;

	if (s->pid <= 0)
		return;
	close(s->in_fd);
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	s->pid = -1;
}

/* GET a control path; returns the parsed JSON body (caller decrefs). */
static json_t *srv_get(const struct srv *s, const char *path)
{
	struct sockaddr_in a;
	char req[1024], chunk[4096], *sep;
	struct tdxr_buf b;
	json_error_t jerr;
	json_t *o = NULL;
	ssize_t r;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	tdxr_buf_init(&b, 1u << 20);
	while ((r = read(fd, chunk, sizeof(chunk))) > 0)
		assert_int_equal(tdxr_buf_append(&b, chunk, (size_t)r, NULL), 0);
	close(fd);
	if (b.data != NULL && (sep = strstr((char *)b.data, "\r\n\r\n")) != NULL)
		o = json_loads(sep + 4, 0, &jerr);
	tdxr_buf_dispose(&b);
	assert_non_null(o);
	return o;
}

static void srv_ctl(const struct srv *s, const char *path)
{
	json_decref(srv_get(s, path));
}

static long srv_calls(const struct srv *s, const char *op)
{
	json_t *o = srv_get(s, "/_control/stats");
	long n = (long)json_integer_value(json_object_get(json_object_get(o, "calls"), op));

	json_decref(o);
	return n;
}

static long srv_live(const struct srv *s)
{
	json_t *o = srv_get(s, "/_control/stats");
	long n = (long)json_integer_value(json_object_get(o, "live"));

	json_decref(o);
	return n;
}

struct fx {
	struct srv s;
	void *priv;
	char logpath[64];
	FILE *log;
	int inited;
};

static int fx_setup_key(void **state, long timeout_ms, long budget_ms)
{
	struct fx *f = calloc(1, sizeof(*f));
	char cfg[1024];
	struct tdxr_err e;
	int fd;

	assert_non_null(f);
	*state = f;
	if (srv_start(&f->s) != 0)
		return 0;
	snprintf(f->logpath, sizeof(f->logpath), "/tmp/test_phala_log.XXXXXX");
	fd = mkstemp(f->logpath);
	assert_true(fd >= 0);
	f->log = fdopen(fd, "w+");
	tdxr_log_setup(TDXR_LOG_TEXT, TDXR_LOG_DEBUG, f->log);
	snprintf(cfg, sizeof(cfg),
	         "{\"api_url\":\"%s\",\"api_key\":\"%s\",\"poll_ms\":20,\"backoff_ms\":10,"
	         "\"backoff_cap_ms\":100,\"retry_after_cap_ms\":1500,\"timeout_ms\":%ld,"
	         "\"connect_ms\":2000,\"call_budget_ms\":%ld}",
	         f->s.base, KEY, timeout_ms, budget_ms);
	f->priv = calloc(1, exec_phala.priv_size);
	assert_non_null(f->priv);
	assert_int_equal(exec_phala.init(f->priv, "/tmp", cfg, &e), 0);
	f->inited = 1;
	return 0;
}

static int fx_setup(void **state)
{
	return fx_setup_key(state, 3000, 15000);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char *text = NULL;
	size_t len = 0;

	if (f->inited)
		exec_phala.dispose(f->priv);
	free(f->priv);
	srv_stop(&f->s);
	if (f->log) {
		tdxr_log_setup(TDXR_LOG_TEXT, TDXR_LOG_INFO, NULL);
		fclose(f->log);
		assert_int_equal(tdxr_file_read(f->logpath, 1u << 20, (uint8_t **)&text, &len, NULL), 0);
		/* the API key never reaches a log line */
		assert_null(strstr(text ? text : "", KEY));
		free(text);
		unlink(f->logpath);
	}
	free(f);
	return 0;
}

#define NEED_SERVER(f)                                                                                     \
	do {                                                                                               \
		if ((f)->s.pid <= 0)                                                                       \
			skip();                                                                            \
	} while (0)

static void spec_init(struct exec_lease_spec *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->lease_id = LEASE;
	sp->name = "tdxr-0011223344556677";
	sp->ssh_pubkey = PUBKEY;
	sp->owner_host = HOST;
	sp->job_id = "";
}

static void test_lifecycle_create_ready_endpoint_destroy(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l, *v = NULL;
	struct exec_endpoint ep;
	struct tdxr_err e;
	char want[400], *desc = NULL;
	size_t n = 0;

	NEED_SERVER(f);
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_true(phala_cloud_id_ok(l.cloud_id));
	assert_true(phala_app_id_ok(l.app_id));
	assert_true(phala_name_owned(l.name, HOST));
	assert_int_equal(strlen(l.compose_hash), 64);
	assert_int_equal(exec_phala.wait_ready(f->priv, &l, 10000, &e), 0);
	assert_string_equal(l.gateway, "dstack-test.phala.local");
	assert_int_equal(exec_phala.endpoint(f->priv, &l, &ep, &e), 0);
	assert_int_equal(ep.tls, 1);
	assert_int_equal(ep.port, 443);
	snprintf(want, sizeof(want), "%s-22.dstack-test.phala.local", l.app_id);
	assert_string_equal(ep.server_name, want);
	assert_int_equal(exec_phala.list_owned(f->priv, HOST, &v, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].cloud_id, l.cloud_id);
	free(v);
	assert_int_equal(exec_phala.list_owned(f->priv, "another-host", &v, &n, &e), 0);
	assert_int_equal(n, 0);
	free(v);
	assert_int_equal(exec_phala.describe(f->priv, &l, &desc, &e), 0);
	assert_non_null(strstr(desc, "\"running\""));
	free(desc);
	assert_int_equal(srv_live(&f->s), 1);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_live(&f->s), 0);
	assert_int_equal(srv_calls(&f->s, "delete"), 1);
}

static void test_encrypted_env_decrypts_to_the_lease_key(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;
	EVP_PKEY *pk = NULL;
	uint8_t priv[32], pub[32];
	size_t pl = 32, ul = 32;
	char hx[65], path[128], *json = NULL;
	json_t *st, *env;

	NEED_SERVER(f);
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_get_raw_private_key(pk, priv, &pl), 1);
	assert_int_equal(EVP_PKEY_get_raw_public_key(pk, pub, &ul), 1);
	EVP_PKEY_free(pk);
	tdxr_hex_encode(pub, 32, hx);
	snprintf(path, sizeof(path), "/_control/set?app_pubkey=%s", hx);
	srv_ctl(&f->s, path);
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	st = srv_get(&f->s, "/_control/stats");
	env = json_object_get(json_object_get(json_object_get(st, "cvms"), l.cloud_id), "encrypted_env");
	assert_true(json_is_string(env));
	assert_int_equal(exec_env_decrypt(priv, json_string_value(env), &json, &e), 0);
	assert_non_null(strstr(json, "DSTACK_AUTHORIZED_KEYS"));
	assert_non_null(strstr(json, PUBKEY));
	free(json);
	json_decref(st);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
}

static void test_retries_on_429_and_5xx(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;
	struct timespec t0, t1;
	double dt;

	NEED_SERVER(f);
	srv_ctl(&f->s, "/_control/fault?op=provision&status=500&count=2");
	srv_ctl(&f->s, "/_control/fault?op=create&status=429&retry_after=1");
	srv_ctl(&f->s, "/_control/fault?op=state&status=502");
	spec_init(&sp);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(dt >= 0.9); /* Retry-After: 1 was honoured */
	assert_int_equal(srv_calls(&f->s, "provision"), 3);
	assert_int_equal(srv_calls(&f->s, "create"), 2);
	assert_int_equal(exec_phala.wait_ready(f->priv, &l, 10000, &e), 0);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_live(&f->s), 0);
}

static void test_post_cvms_500_is_not_retried_and_destroy_finds_it_by_name(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;

	NEED_SERVER(f);
	srv_ctl(&f->s, "/_control/fault?op=create&status=500&count=5");
	spec_init(&sp);
	assert_int_not_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_non_null(strstr(e.msg, "create (POST /cvms)"));
	assert_int_equal(srv_calls(&f->s, "create"), 1);
	/* nothing was created: destroy with no id looks the name up and finds nothing */
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
}

static void test_wait_ready_deadline_on_a_stuck_cvm(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;

	NEED_SERVER(f);
	srv_ctl(&f->s, "/_control/set?stuck=1");
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_int_equal(exec_phala.wait_ready(f->priv, &l, 300, &e), TDXR_ETIMEOUT);
	assert_non_null(strstr(e.msg, "starting"));
	assert_true(srv_calls(&f->s, "state") >= 2);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_live(&f->s), 0);
}

static void test_boot_error_fails_wait_ready(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;

	NEED_SERVER(f);
	srv_ctl(&f->s, "/_control/set?boot_error=image%20pull%20failed");
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_int_equal(exec_phala.wait_ready(f->priv, &l, 10000, &e), TDXR_ERROR);
	assert_non_null(strstr(e.msg, "image pull failed"));
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
}

static void test_delete_failing_once_then_succeeding(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;

	NEED_SERVER(f);
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	srv_ctl(&f->s, "/_control/fault?op=delete&status=500");
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_calls(&f->s, "delete"), 2);
	assert_int_equal(srv_live(&f->s), 0);
}

static void test_destroy_of_an_already_deleted_cvm(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;

	NEED_SERVER(f);
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_calls(&f->s, "delete"), 1);
	/* a generic 404 (wrong route) is not "gone" */
	srv_ctl(&f->s, "/_control/fault?op=get&status=404");
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), TDXR_ENOTFOUND);
}

static void test_ownership_mismatch_is_refused(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l, bad;
	struct tdxr_err e;
	json_t *r;

	NEED_SERVER(f);
	spec_init(&sp);
	assert_int_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	r = srv_get(&f->s, "/_control/add?name=someone-else&app_id=abababababababababababababababababababab");
	bad = l;
	snprintf(bad.cloud_id, sizeof(bad.cloud_id), "%lld", (long long)json_integer_value(json_object_get(r, "id")));
	json_decref(r);
	assert_int_equal(exec_phala.destroy(f->priv, &bad, &e), TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "ownership"));
	/* right name, wrong app id */
	bad = l;
	snprintf(bad.app_id, sizeof(bad.app_id), "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd");
	assert_int_equal(exec_phala.destroy(f->priv, &bad, &e), TDXR_EAUTH);
	assert_int_equal(srv_calls(&f->s, "delete"), 0);
	assert_int_equal(srv_live(&f->s), 2);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), 0);
	assert_int_equal(srv_live(&f->s), 1);
}

static void test_hanging_response_is_bounded(void **state)
{
	struct fx *f = *state;
	struct exec_lease l;
	struct tdxr_err e;
	struct timespec t0, t1;
	double dt;

	NEED_SERVER(f);
	memset(&l, 0, sizeof(l));
	snprintf(l.cloud_id, sizeof(l.cloud_id), "1000");
	snprintf(l.name, sizeof(l.name), "x");
	srv_ctl(&f->s, "/_control/fault?op=get&status=200&hang=5&count=20");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(exec_phala.destroy(f->priv, &l, &e), TDXR_ETIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(dt < 4.5); /* the 2.5 s call budget, not 20 x 5 s */
	assert_true(srv_calls(&f->s, "get") >= 2); /* a timed-out GET was retried */
}

static int fx_setup_short(void **state)
{
	return fx_setup_key(state, 700, 2500);
}

static void test_api_key_never_in_errors(void **state)
{
	struct fx *f = *state;
	struct exec_lease_spec sp;
	struct exec_lease l;
	struct tdxr_err e;
	void *p2;
	char cfg[512];

	NEED_SERVER(f);
	p2 = calloc(1, exec_phala.priv_size); /* after the skip check: a skipped test must not leak */
	/* the server echoes the key in its error detail: the message must not carry it */
	srv_ctl(&f->s, "/_control/fault?op=provision&status=400&echo_key=1");
	spec_init(&sp);
	assert_int_not_equal(exec_phala.create(f->priv, &sp, &l, &e), 0);
	assert_non_null(strstr(e.msg, "provision"));
	assert_non_null(strstr(e.msg, "***"));
	assert_null(strstr(e.msg, KEY));
	/* a wrong key: EAUTH, named call, and the wrong key is not printed either */
	snprintf(cfg, sizeof(cfg), "{\"api_url\":\"%s\",\"api_key\":\"wrong-%s\",\"backoff_ms\":5}", f->s.base,
	         KEY);
	assert_non_null(p2);
	assert_int_equal(exec_phala.init(p2, "/tmp", cfg, &e), 0);
	assert_int_equal(exec_phala.create(p2, &sp, &l, &e), TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "HTTP 401"));
	assert_null(strstr(e.msg, KEY));
	exec_phala.dispose(p2);
	free(p2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_map_running_failed_and_unknown),
		cmocka_unit_test(test_name_encodes_owner_and_lease),
		cmocka_unit_test(test_syntax_checks),
		cmocka_unit_test(test_provision_body_has_contract_fields),
		cmocka_unit_test(test_compose_pick_prefers_spec_then_config),
		cmocka_unit_test(test_provision_parse_validates),
		cmocka_unit_test(test_cvm_parse_reads_api_and_cli_shapes),
		cmocka_unit_test(test_error_format_reads_detail_shapes),
		cmocka_unit_test(test_gone_only_when_the_body_names_the_cvm),
		cmocka_unit_test(test_redact_removes_every_copy),
		cmocka_unit_test(test_retry_decisions),
		cmocka_unit_test(test_init_rejects_bad_config),
		cmocka_unit_test_setup_teardown(test_lifecycle_create_ready_endpoint_destroy, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_encrypted_env_decrypts_to_the_lease_key, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_retries_on_429_and_5xx, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_post_cvms_500_is_not_retried_and_destroy_finds_it_by_name,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_wait_ready_deadline_on_a_stuck_cvm, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_boot_error_fails_wait_ready, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_delete_failing_once_then_succeeding, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_destroy_of_an_already_deleted_cvm, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_ownership_mismatch_is_refused, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hanging_response_is_bounded, fx_setup_short, fx_teardown),
		cmocka_unit_test_setup_teardown(test_api_key_never_in_errors, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
