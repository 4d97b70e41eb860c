/*
 * test_remote.c - pure logic of agent/remote/: the OpenSSH fingerprint format,
 * the environment header the exec prologue decodes (every value byte escaped,
 * names checked), connect_to parsing, and the lease file (strict parse, mode
 * 0600 enforced, symlinks refused, TOFU pin rewritten atomically keeping unknown
 * keys). Real sshd/stunnel behaviour is tests/integration/test_remote.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static int setup_dir(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tdxr-test-remote.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, mode_t mode, char *path, size_t cap)
{
	FILE *f;

	snprintf(path, cap, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void fingerprint_has_openssh_form(void **state)
{
	uint8_t d[32];
	char fp[REMOTE_FP_MAX];
	int i;

	for (i = 0; i < 32; i++)
		d[i] = (uint8_t)i;
	remote_fp_format(d, fp);
	/* base64 of 00..1f without the '=' padding, as `ssh-keygen -l -E sha256` prints */
	assert_string_equal(fp, "SHA256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
}

static void env_header_escapes_every_value_byte(void **state)
{
	struct remote_env env[2] = { { "TOKEN", "x'y\n$" }, { "EMPTY", "" } };
	uint8_t *out = NULL;
	size_t len = 0;

	assert_int_equal(remote_env_encode(env, 2, &out, &len, NULL), 0);
	assert_int_equal(len, strlen((const char *)out));
	assert_string_equal((const char *)out, "2\nTOKEN \\170\\047\\171\\012\\044\nEMPTY \n");
	free(out);
	assert_int_equal(remote_env_encode(NULL, 0, &out, &len, NULL), 0);
	assert_string_equal((const char *)out, "0\n");
	free(out);
}

static void env_header_rejects_bad_names(void **state)
{
	static const char *bad[] = { "", "1A", "A-B", "A B", "A=B", "A\nB" };
	struct remote_env env;
	struct tdxr_err e;
	uint8_t *out = (uint8_t *)"x";
	size_t len = 1, i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env.name = bad[i];
		env.value = "v";
		assert_int_equal(remote_env_encode(&env, 1, &out, &len, &e), TDXR_EINVAL);
		assert_null(out);
		assert_int_equal(len, 0);
	}
	env.name = "_ok9";
	assert_int_equal(remote_env_encode(&env, 1, &out, &len, NULL), 0);
	free(out);
}

static void connect_to_is_parsed_strictly(void **state)
{
	char host[64];
	unsigned port = 0;

	assert_int_equal(remote__hostport_parse("127.0.0.1:8443", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 8443);
	assert_int_equal(remote__hostport_parse("[::1]:22", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 22);
	assert_int_equal(remote__hostport_parse("gw.example:443", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "gw.example");
	assert_int_equal(remote__hostport_parse("host", host, sizeof(host), &port, NULL), TDXR_EINVAL);
	assert_int_equal(remote__hostport_parse(":22", host, sizeof(host), &port, NULL), TDXR_EINVAL);
	assert_int_equal(remote__hostport_parse("h:0", host, sizeof(host), &port, NULL), TDXR_EINVAL);
	assert_int_equal(remote__hostport_parse("h:65536", host, sizeof(host), &port, NULL), TDXR_EINVAL);
	assert_int_equal(remote__hostport_parse("h:22x", host, sizeof(host), &port, NULL), TDXR_EINVAL);
	assert_int_equal(remote__hostport_parse("[::1]22", host, sizeof(host), &port, NULL), TDXR_EINVAL);
}

static void stream_open_checks_the_endpoint(void **state)
{
	struct remote_endpoint ep;
	struct remote_stream *s = (struct remote_stream *)&ep;
	struct tdxr_err e;

	memset(&ep, 0, sizeof(ep));
	ep.transport = REMOTE_TRANSPORT_TLS;
	assert_int_equal(remote_stream_open(&ep, &s, &e), TDXR_EINVAL);
	assert_null(s);
	ep.transport = REMOTE_TRANSPORT_DIRECT;
	ep.host = "127.0.0.1";
	assert_int_equal(remote_stream_open(&ep, &s, &e), TDXR_EINVAL); /* no port */
	ep.transport = REMOTE_TRANSPORT_TLS;
	ep.server_name = "a-22.gateway.test";
	ep.connect_to = "nope";
	assert_int_equal(remote_stream_open(&ep, &s, &e), TDXR_EINVAL);
	assert_null(s);
	remote_stream_free(NULL);
	remote_ssh_free(NULL);
	remote_lease_free(NULL);
}

#define LEASE_DIRECT                                                                                         \
	"{\"id\":\"l1\",\"executor\":\"local\",\"user\":\"root\",\"key_file\":\"/k\","                       \
	"\"transport\":\"direct\",\"host\":\"127.0.0.1\",\"port\":2222,"                                     \
	"\"host_key_sha256\":null,\"work_dir\":\"/tmp/w\",\"later\":{\"kept\":[1,2]}}"

static void lease_loads_direct_and_tls(void **state)
{
	struct remote_lease *l = NULL;
	char path[256];
	struct tdxr_err e;

	write_file("direct.json", LEASE_DIRECT, 0600, path, sizeof(path));
	assert_int_equal(remote_lease_load(path, &l, &e), 0);
	assert_string_equal(remote_lease_id(l), "l1");
	assert_string_equal(remote_lease_work_dir(l), "/tmp/w");
	assert_null(remote_lease_host_key(l));
	remote_lease_free(l);
	write_file("tls.json",
	           "{\"id\":\"l2\",\"user\":\"u\",\"key_file\":\"/k\",\"transport\":\"tls\","
	           "\"tls\":{\"server_name\":\"abc-22.gateway.test\",\"connect_to\":\"127.0.0.1:8443\","
	           "\"ca_file\":\"/ca.pem\"},\"host_key_sha256\":\"SHA256:abc\"}",
	           0600, path, sizeof(path));
	assert_int_equal(remote_lease_load(path, &l, &e), 0);
	assert_string_equal(remote_lease_host_key(l), "SHA256:abc");
	assert_null(remote_lease_work_dir(l));
	remote_lease_free(l);
}

static void lease_readable_by_others_is_refused(void **state)
{
	struct remote_lease *l = (struct remote_lease *)state;
	char path[256];
	struct tdxr_err e;

	write_file("loose.json", LEASE_DIRECT, 0640, path, sizeof(path));
	assert_int_equal(remote_lease_load(path, &l, &e), TDXR_EINVAL);
	assert_null(l);
	assert_non_null(strstr(e.msg, "chmod 600"));
	write_file("target.json", LEASE_DIRECT, 0600, path, sizeof(path));
	{
		char link[256];

		snprintf(link, sizeof(link), "%s/link.json", tmpdir);
		assert_int_equal(symlink(path, link), 0);
		assert_int_not_equal(remote_lease_load(link, &l, &e), 0);
		assert_null(l);
	}
	snprintf(path, sizeof(path), "%s/absent.json", tmpdir);
	assert_int_equal(remote_lease_load(path, &l, &e), TDXR_ENOTFOUND);
}

static void lease_malformed_is_refused(void **state)
{
	static const char *bad[] = {
		"[]",
		"{\"id\":\"a\",\"id\":\"b\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":1}",
		"{\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":1}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":70000}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":\"22\"}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/"
		"k\",\"transport\":\"ftp\",\"host\":\"h\",\"port\":1}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"transport\":\"tls\"}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"transport\":\"tls\",\"tls\":{}}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":1,"
		"\"host_key_sha256\":\"MD5:00\"}",
		"{\"id\":\"\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\",\"port\":1}",
		"{\"id\":\"a\",\"user\":\"u\",\"key_file\":\"/k\",\"host\":\"h\"}",
	};
	struct remote_lease *l = NULL;
	char path[256];
	struct tdxr_err e;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file("bad.json", bad[i], 0600, path, sizeof(path));
		assert_int_equal(remote_lease_load(path, &l, &e), TDXR_EINVAL);
		assert_null(l);
	}
}

static void lease_pin_rewrites_atomically_keeping_unknown_keys(void **state)
{
	struct remote_lease *l = NULL;
	char path[256];
	struct tdxr_err e;
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0;

	write_file("pin.json", LEASE_DIRECT, 0600, path, sizeof(path));
	assert_int_equal(remote_lease_load(path, &l, &e), 0);
	assert_int_equal(remote_lease_pin(l, "MD5:xx", &e), TDXR_EINVAL);
	assert_null(remote_lease_host_key(l));
	assert_int_equal(remote_lease_pin(l, "SHA256:AAECAwQF", &e), 0);
	assert_string_equal(remote_lease_host_key(l), "SHA256:AAECAwQF");
	remote_lease_free(l);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tdxr_file_read(path, 1u << 20, &data, &len, &e), 0);
	assert_non_null(strstr((const char *)data, "\"later\""));
	free(data);
	l = NULL;
	assert_int_equal(remote_lease_load(path, &l, &e), 0);
	assert_string_equal(remote_lease_host_key(l), "SHA256:AAECAwQF");
	assert_string_equal(remote_lease_id(l), "l1");
	remote_lease_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fingerprint_has_openssh_form),
		cmocka_unit_test(env_header_escapes_every_value_byte),
		cmocka_unit_test(env_header_rejects_bad_names),
		cmocka_unit_test(connect_to_is_parsed_strictly),
		cmocka_unit_test(stream_open_checks_the_endpoint),
		cmocka_unit_test(lease_loads_direct_and_tls),
		cmocka_unit_test(lease_readable_by_others_is_refused),
		cmocka_unit_test(lease_malformed_is_refused),
		cmocka_unit_test(lease_pin_rewrites_atomically_keeping_unknown_keys),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
