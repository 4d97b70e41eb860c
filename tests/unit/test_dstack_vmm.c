/*
 * test_dstack_vmm.c - the dstack executor (executors/dstack/dstack.c) against
 * tests/integration/dstack_vmm_server.py, a stdlib stand-in for the dstack VMM's
 * JSON RPC that this file starts on a free loopback port (one per test). Covers the
 * lifecycle (create -> wait_ready -> endpoint -> destroy), the sealed
 * DSTACK_AUTHORIZED_KEYS (decrypted here with the key the server was given),
 * injected faults (5xx, a create that succeeded but answered 500, a VM stuck
 * booting, a boot error, a remove that fails, a hung call), idempotent destroy and
 * the ownership checks of destroy and list_owned. Skips with a message when
 * python3 is absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tu_python.h"

#include "common/buf.h"
#include "common/util.h"
#include "executors/common/envcrypt.h"
#include "executors/executor.h"

#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define VMM_SERVER TDXR_SOURCE_DIR "/tests/integration/dstack_vmm_server.py"
#define SSH_KEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests tdxr-test"

struct srv {
	pid_t pid;
	int in_fd;
	int port;
	uint8_t priv[32]; /* X25519 private key whose public half the server hands out */
};

static void x25519_pair(uint8_t priv[32], char pub_hex[65])
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *k = NULL;
	uint8_t pub[32];
	size_t n = 32;

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_keygen_init(c), 1);
	assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
	assert_int_equal(EVP_PKEY_get_raw_private_key(k, priv, &n), 1);
	n = 32;
	assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &n), 1);
	tdxr_hex_encode(pub, 32, pub_hex);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
}

/* 0, or -1 (the caller skips) when python3 is missing. */
static int srv_start(struct srv *s, const char *const *extra)
{
	const char *argv[20];
	char pub[65], line[64];
	int in[2], out[2];
	size_t n = 0, i, ll = 0;
	uint64_t port = 0;

	memset(s, 0, sizeof(*s));
	s->pid = -1;
	if (!tu_have_python3()) {
		print_message("skip: python3 not found; the dstack executor's tests need it\n");
		return -1;
	}
	x25519_pair(s->priv, pub);
	argv[n++] = "python3";
	argv[n++] = VMM_SERVER;
	argv[n++] = "--watch-stdin";
	argv[n++] = "--env-pubkey";
	argv[n++] = pub;
	for (i = 0; extra != NULL && extra[i] != NULL && n < 19; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
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

		if (poll(&pfd, 1, 10000) <= 0 || read(out[0], line + ll, 1) <= 0 || line[ll] == '\n')
			break;
		ll++;
	}
	line[ll] = '\0';
	close(out[0]);
	if (strncmp(line, "PORT ", 5) != 0)
		fail_msg("dstack_vmm_server.py did not start (got '%s')", line);
	assert_int_equal(tdxr_parse_u64(line + 5, 65535, &port, NULL), 0);
	s->port = (int)port;
	return 0;
}

static void srv_stop(struct srv *s)
{
	if (s->pid <= 0)
		return;
	close(s->in_fd);
	kill(s->pid, SIGTERM);
	waitpid(s->pid, NULL, 0);
	s->pid = -1;
}

/* GET a control path; the parsed JSON body. */
static json_t *srv_get(const struct srv *s, const char *path)
{
	struct sockaddr_in a;
	struct tdxr_buf b;
	json_error_t jerr;
	char req[512], chunk[4096], *sep;
	json_t *j = NULL;
	ssize_t r;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	tdxr_buf_init(&b, 1u << 20);
	while ((r = read(fd, chunk, sizeof(chunk))) > 0)
		assert_int_equal(tdxr_buf_append(&b, chunk, (size_t)r, NULL), 0);
	close(fd);
	assert_int_equal(tdxr_buf_append(&b, "", 1, NULL), 0);
	sep = strstr((char *)b.data, "\r\n\r\n");
	assert_non_null(sep);
	j = json_loads(sep + 4, 0, &jerr);
	tdxr_buf_dispose(&b);
	assert_non_null(j);
	return j;
}

static void srv_ctl(const struct srv *s, const char *path)
{
	json_decref(srv_get(s, path));
}

static size_t srv_vm_count(const struct srv *s)
{
	json_t *j = srv_get(s, "/__vms");
	size_t n = json_object_size(j);

	json_decref(j);
	return n;
}

static json_int_t srv_calls(const struct srv *s, const char *method)
{
	json_t *j = srv_get(s, "/__calls"), *v = json_object_get(j, method);
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;

	json_decref(j);
	return n;
}

#define TUNE "\"poll_ms\":20,\"retries\":2,\"call_timeout_ms\":3000,\"remove_wait_ms\":3000"

/* An initialised executor for s; tune: the timing members (NULL = TUNE). */
static void *exec_new(const struct srv *s, const char *gateway, const char *tune)
{
	struct tdxr_err e = { 0, "" };
	char cfg[1024];
	void *p = calloc(1, exec_dstack.priv_size);

	assert_non_null(p);
	snprintf(cfg, sizeof(cfg),
	         "{\"vmm_url\":\"http://127.0.0.1:%d/\",\"image\":\"dstack-dev-0.5.0\"%s%s%s,"
	         "%s}",
	         s->port, gateway ? ",\"gateway_domain\":\"" : "", gateway ? gateway : "",
	         gateway ? "\"" : "", tune ? tune : TUNE);
	if (exec_dstack.init(p, "/nonexistent", cfg, &e) != 0)
		fail_msg("init: %s", e.msg);
	return p;
}

static void exec_free(void *p)
{
	exec_dstack.dispose(p);
	free(p);
}

static void spec_init(struct exec_lease_spec *sp, const char *name, const char *owner)
{
	memset(sp, 0, sizeof(*sp));
	sp->lease_id = "l-0123456789";
	sp->name = name;
	sp->ssh_pubkey = SSH_KEY;
	sp->owner_host = owner;
	sp->job_id = "";
}

static void create_ok(void *p, const char *name, const char *owner, struct exec_lease *l)
{
	struct exec_lease_spec sp;
	struct tdxr_err e = { 0, "" };

	spec_init(&sp, name, owner);
	if (exec_dstack.create(p, &sp, l, &e) != 0)
		fail_msg("create: %s", e.msg);
}

/* ---------------------------------------------------------------- tests */

static void test_lifecycle_create_ready_endpoint_destroy(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct exec_endpoint ep;
	struct tdxr_err e = { 0, "" };
	json_t *vms, *vm, *cfg, *pt, *ev;
	json_error_t jerr;
	char *plain = NULL, *desc = NULL, want_app[41];
	const char *compose;
	uint8_t md[32];
	char hash[65];
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	create_ok(p, "tdxr-life", "hostA", &l);
	assert_string_equal(l.executor, "dstack");
	assert_string_equal(l.name, "tdxr-life");
	assert_string_equal(l.gateway, "gw.example");
	assert_int_equal(strlen(l.app_id), 40);

	/* What the VMM recorded: our compose, app id = sha256(compose)[:40], labels, sealed key. */
	vms = srv_get(&s, "/__vms");
	vm = json_object_get(vms, l.cloud_id);
	assert_non_null(vm);
	assert_string_equal(json_string_value(json_object_get(vm, "app_id")), l.app_id);
	cfg = json_object_get(vm, "configuration");
	compose = json_string_value(json_object_get(cfg, "compose_file"));
	assert_non_null(compose);
	assert_int_equal(EVP_Digest(compose, strlen(compose), md, NULL, EVP_sha256(), NULL), 1);
	tdxr_hex_encode(md, 32, hash);
	assert_string_equal(hash, l.compose_hash);
	memcpy(want_app, hash, 40);
	want_app[40] = '\0';
	assert_string_equal(want_app, l.app_id);
	assert_non_null(strstr(compose, "\"allowed_envs\""));
	assert_non_null(strstr(compose, "DSTACK_AUTHORIZED_KEYS"));
	assert_int_equal(json_integer_value(json_object_get(cfg, "vcpu")), 1);
	assert_non_null(
	    strstr(json_string_value(json_object_get(cfg, "user_config")), "\"owner_host\":\"hostA\""));
	assert_int_equal(
	    exec_env_decrypt(s.priv, json_string_value(json_object_get(vm, "encrypted_env")), &plain, &e), 0);
	pt = json_loads(plain, JSON_REJECT_DUPLICATES, &jerr);
	ev = json_array_get(json_object_get(pt, "env"), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "key")), "DSTACK_AUTHORIZED_KEYS");
	assert_string_equal(json_string_value(json_object_get(ev, "value")), SSH_KEY);
	json_decref(pt);
	free(plain);
	json_decref(vms);

	assert_int_equal(exec_dstack.wait_ready(p, &l, 10000, &e), 0);
	assert_int_equal(exec_dstack.endpoint(p, &l, &ep, &e), 0);
	assert_int_equal(ep.tls, 1);
	assert_int_equal(ep.port, 443);
	assert_true(strncmp(ep.server_name, l.app_id, 40) == 0);
	assert_string_equal(ep.server_name + 40, "-22.gw.example");
	assert_string_equal(ep.user, "root");
	assert_int_equal(exec_dstack.describe(p, &l, &desc, &e), 0);
	assert_non_null(strstr(desc, l.cloud_id));
	free(desc);

	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	assert_int_equal(srv_vm_count(&s), 0);
	/* Idempotent: the VMM says not found, which is success. */
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_gateway_domain_comes_from_getmeta_when_unset(void **state)
{
	const char *extra[] = { "--base-domain", "meta.example", NULL };
	struct srv s;
	struct exec_lease l;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, extra) != 0)
		skip();
	p = exec_new(&s, NULL, NULL);
	create_ok(p, "tdxr-meta", "hostA", &l);
	assert_string_equal(l.gateway, "meta.example");
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_5xx_on_info_and_create_are_retried_without_duplicates(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	srv_ctl(&s, "/__fail?method=CreateVm&status=503&count=1");
	srv_ctl(&s, "/__fail?method=GetInfo&status=500&count=2");
	create_ok(p, "tdxr-retry", "hostA", &l);
	assert_int_equal(exec_dstack.wait_ready(p, &l, 10000, &e), 0);
	assert_int_equal(srv_vm_count(&s), 1);
	assert_int_equal(srv_calls(&s, "CreateVm"), 2);
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);

	/* The VMM created the VM but answered 500: adopted by name, not created twice. */
	srv_ctl(&s, "/__fail?method=CreateVm&status=500&count=1&mode=after");
	create_ok(p, "tdxr-adopt", "hostA", &l);
	assert_int_equal(srv_vm_count(&s), 1);
	assert_int_equal(srv_calls(&s, "__created"), 2);
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	assert_int_equal(srv_vm_count(&s), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_refused_call_is_named_and_creates_nothing(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct exec_lease_spec sp;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	srv_ctl(&s, "/__fail?method=GetAppEnvEncryptPubKey&status=400&count=1");
	spec_init(&sp, "tdxr-refused", "hostA");
	assert_int_equal(exec_dstack.create(p, &sp, &l, &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "GetAppEnvEncryptPubKey"));
	assert_string_equal(l.cloud_id, "");
	assert_int_equal(srv_vm_count(&s), 0);
	/* 5xx past the retry budget: named too, still nothing created. */
	srv_ctl(&s, "/__fail?method=CreateVm&status=500&count=10");
	assert_int_equal(exec_dstack.create(p, &sp, &l, &e), TDXR_EIO);
	assert_non_null(strstr(e.msg, "CreateVm"));
	assert_int_equal(srv_vm_count(&s), 0);
	/* An unknown instance type is refused before any call. */
	sp.instance_type = "tdx.huge";
	assert_int_equal(exec_dstack.create(p, &sp, &l, &e), TDXR_EINVAL);
	exec_free(p);
	srv_stop(&s);
}

static void test_stuck_boot_times_out_and_boot_error_fails(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	srv_ctl(&s, "/__stuck?on=1");
	create_ok(p, "tdxr-stuck", "hostA", &l);
	assert_int_equal(exec_dstack.wait_ready(p, &l, 300, &e), TDXR_ETIMEOUT);
	assert_non_null(strstr(e.msg, "wait_ready"));
	assert_non_null(strstr(e.msg, "booting"));
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	srv_ctl(&s, "/__stuck?on=0");
	srv_ctl(&s, "/__boot_error?msg=disk%20full");
	create_ok(p, "tdxr-booterr", "hostA", &l);
	assert_int_equal(exec_dstack.wait_ready(p, &l, 5000, &e), TDXR_EIO);
	assert_non_null(strstr(e.msg, "disk full"));
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	assert_int_equal(srv_vm_count(&s), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_remove_failing_is_retried_and_destroy_is_idempotent(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	create_ok(p, "tdxr-rm", "hostA", &l);
	srv_ctl(&s, "/__fail?method=RemoveVm&status=500&count=1");
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	assert_int_equal(srv_vm_count(&s), 0);

	create_ok(p, "tdxr-rm2", "hostA", &l);
	srv_ctl(&s, "/__fail?method=RemoveVm&status=500&count=3");
	assert_int_equal(exec_dstack.destroy(p, &l, &e), TDXR_EIO);
	assert_non_null(strstr(e.msg, "RemoveVm"));
	assert_int_equal(srv_vm_count(&s), 1); /* not gone: not reported as gone */
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	assert_int_equal(srv_vm_count(&s), 0);
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_hung_call_is_bounded(void **state)
{
	struct srv s;
	struct exec_lease l;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", "\"poll_ms\":20,\"retries\":0,\"call_timeout_ms\":300");
	create_ok(p, "tdxr-hang", "hostA", &l);
	srv_ctl(&s, "/__fail?method=GetInfo&mode=hang&count=1");
	assert_int_equal(exec_dstack.wait_ready(p, &l, 10000, &e), TDXR_ETIMEOUT);
	assert_non_null(strstr(e.msg, "GetInfo"));
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_destroy_refuses_a_vm_named_otherwise(void **state)
{
	struct srv s;
	struct exec_lease l, other;
	struct tdxr_err e = { 0, "" };
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	create_ok(p, "tdxr-mine", "hostA", &l);
	other = l;
	snprintf(other.name, sizeof(other.name), "tdxr-theirs");
	assert_int_equal(exec_dstack.destroy(p, &other, &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "refusing"));
	assert_int_equal(srv_vm_count(&s), 1);
	assert_int_equal(srv_calls(&s, "RemoveVm"), 0);
	assert_int_equal(exec_dstack.destroy(p, &l, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_list_owned_filters_by_prefix_and_owner(void **state)
{
	struct srv s;
	struct exec_lease a, b, *v = NULL;
	struct tdxr_err e = { 0, "" };
	size_t n = 0, i;
	int seen_a = 0, seen_b = 0;
	void *p;

	(void)state;
	if (srv_start(&s, NULL) != 0)
		skip();
	p = exec_new(&s, "gw.example", NULL);
	create_ok(p, "tdxr-a", "hostA", &a);
	create_ok(p, "tdxr-b", "hostA", &b);
	srv_ctl(&s, "/__put?name=tdxr-foreign&owner=hostB");
	srv_ctl(&s, "/__put?name=someone-else&owner=hostA");
	assert_int_equal(exec_dstack.list_owned(p, "hostA", &v, &n, &e), 0);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		assert_string_equal(v[i].executor, "dstack");
		seen_a += strcmp(v[i].cloud_id, a.cloud_id) == 0 && strcmp(v[i].name, "tdxr-a") == 0 &&
		          strcmp(v[i].app_id, a.app_id) == 0;
		seen_b += strcmp(v[i].cloud_id, b.cloud_id) == 0;
	}
	assert_int_equal(seen_a, 1);
	assert_int_equal(seen_b, 1);
	free(v);
	/* NULL owner: every box with our prefix. */
	assert_int_equal(exec_dstack.list_owned(p, NULL, &v, &n, &e), 0);
	assert_int_equal(n, 3);
	free(v);
	assert_int_equal(exec_dstack.destroy(p, &a, &e), 0);
	assert_int_equal(exec_dstack.destroy(p, &b, &e), 0);
	exec_free(p);
	srv_stop(&s);
}

static void test_init_rejects_bad_configuration(void **state)
{
	static const char *const bad[] = {
		"{}",
		"{\"vmm_url\":\"http://x\"}",
		"{\"vmm_url\":\"ftp://x\",\"image\":\"i\"}",
		"{\"vmm_url\":\"http://x\",\"image\":\"i\",\"colour\":1}",
		"{\"vmm_url\":\"http://x\",\"image\":\"i\",\"poll_ms\":-1}",
		"{\"vmm_url\":\"http://x\",\"image\":\"i\",\"compose_file\":\"/nonexistent/c.json\"}",
		"[]",
		"{\"vmm_url\":\"http://x\",\"vmm_url\":\"http://y\",\"image\":\"i\"}",
	};
	struct tdxr_err e = { 0, "" };
	void *p = calloc(1, exec_dstack.priv_size);
	size_t i;

	(void)state;
	assert_non_null(p);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (exec_dstack.init(p, "/nonexistent", bad[i], &e) == 0)
			fail_msg("init accepted %s", bad[i]);
		exec_dstack.dispose(p);
	}
	assert_int_equal(
	    exec_dstack.init(p, "/nonexistent", "{\"vmm_url\":\"http://x\",\"image\":\"i\"}", &e), 0);
	exec_dstack.dispose(p);
	exec_dstack.dispose(NULL);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle_create_ready_endpoint_destroy),
		cmocka_unit_test(test_gateway_domain_comes_from_getmeta_when_unset),
		cmocka_unit_test(test_5xx_on_info_and_create_are_retried_without_duplicates),
		cmocka_unit_test(test_refused_call_is_named_and_creates_nothing),
		cmocka_unit_test(test_stuck_boot_times_out_and_boot_error_fails),
		cmocka_unit_test(test_remove_failing_is_retried_and_destroy_is_idempotent),
		cmocka_unit_test(test_hung_call_is_bounded),
		cmocka_unit_test(test_destroy_refuses_a_vm_named_otherwise),
		cmocka_unit_test(test_list_owned_filters_by_prefix_and_owner),
		cmocka_unit_test(test_init_rejects_bad_configuration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
