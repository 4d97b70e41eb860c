/*
 * test_remote.c - pure logic of agent/remote/: the OpenSSH fingerprint format,
 * the environment header the exec prologue decodes (every value byte escaped,
 * names checked), connect_to parsing, and the lease file (strict parse, mode
 * 0600 enforced, symlinks refused, TOFU pin rewritten atomically keeping unknown
 * keys), and the multiplexer's client side against a fake server on a unix
 * socket (nothing served -> ENOTFOUND so rsh connects by itself; the command and
 * three descriptors arrive; exit status, signal and errors come back; a path too
 * long for sockaddr_un; cancel). Real sshd/stunnel behaviour, the multiplexer's
 * server side and reconnects are tests/integration/test_remote.sh, which also runs
 * this binary with TDXR_REMOTE_LEASE/TDXR_REMOTE_KILL_CONN for the exec path's
 * reconnect (skipped otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/* ---- the multiplexer's client ----------------------------------------------- */

/* A fake multiplexer: answers one request with a canned reply after checking it. */
struct fake_mux {
	int lfd;
	int close_without_reply;
	struct remote__mux_reply rep;
	char cmd[256];
	int nfds;
	int wrote; /* wrote "via-fd" to the passed stdout */
};

static void *fake_mux_serve(void *arg)
{
	struct fake_mux *fm = arg;
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	uint8_t msg[512];
	struct msghdr mh;
	struct iovec iov = { msg, sizeof(msg) };
	struct cmsghdr *c;
	struct remote__mux_req req;
	int fds[4], c_fd;
	ssize_t n;

	c_fd = accept(fm->lfd, NULL, NULL);
	if (c_fd < 0)
		return NULL;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	n = recvmsg(c_fd, &mh, 0);
	for (c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c != NULL; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS) {
			fm->nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(c), (size_t)fm->nfds * sizeof(int));
		}
	if (n >= (ssize_t)sizeof(req)) {
		memcpy(&req, msg, sizeof(req));
		if (memcmp(req.magic, REMOTE__MUX_MAGIC, 8) == 0 && req.cmd_len < sizeof(fm->cmd) &&
		    (size_t)n == sizeof(req) + req.cmd_len)
			memcpy(fm->cmd, msg + sizeof(req), req.cmd_len);
	}
	if (fm->nfds == 3)
		fm->wrote = write(fds[1], "via-fd", 6) == 6;
	for (int i = 0; i < fm->nfds && i < 4; i++)
		close(fds[i]);
	if (!fm->close_without_reply) {
		memcpy(fm->rep.magic, REMOTE__MUX_MAGIC, 8);
		(void)send(c_fd, &fm->rep, sizeof(fm->rep), 0);
	}
	close(c_fd);
	return NULL;
}

/* Listens at path (through the directory's /proc/self/fd link when long). */
static int fake_mux_listen(const char *path)
{
	struct sockaddr_un sa;
	char dir[PATH_MAX], *slash;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0), dfd = -1, rc;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) < sizeof(sa.sun_path)) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	} else {
		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		*slash = '\0';
		dfd = open(dir, O_PATH | O_DIRECTORY);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, slash + 1);
	}
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (dfd >= 0)
		close(dfd);
	if (rc != 0 || listen(fd, 4) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int run_fake(struct fake_mux *fm, const char *path, const char *cmd, const atomic_int *cancel,
                    struct remote_exec_result *res, struct tdxr_err *e, char *got, size_t gotcap)
{
	pthread_t th;
	int p[2], rc;
	ssize_t n;

	fm->lfd = fake_mux_listen(path);
	assert_true(fm->lfd >= 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pthread_create(&th, NULL, fake_mux_serve, fm), 0);
	rc = remote_mux_exec(path, cmd, 0, p[1], 2, cancel, res, e);
	if (cancel != NULL)
		shutdown(fm->lfd, SHUT_RDWR); /* (the server may still wait for a client) */
	pthread_join(th, NULL);
	close(p[1]);
	n = read(p[0], got, gotcap - 1);
	got[n > 0 ? n : 0] = '\0';
	close(p[0]);
	close(fm->lfd);
	unlink(path);
	return rc;
}

static void mux_client_without_a_server_is_notfound(void **state)
{
	struct remote_exec_result res;
	struct tdxr_err e;
	char path[PATH_MAX];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/none.sock", tmpdir);
	assert_int_equal(remote_mux_exec(path, "true", 0, 1, 2, NULL, &res, &e), TDXR_ENOTFOUND);
	snprintf(path, sizeof(path), "%s/no-such-dir/%0120d.sock", tmpdir, 0);
	assert_int_equal(remote_mux_exec(path, "true", 0, 1, 2, NULL, &res, &e), TDXR_ENOTFOUND);
	/* A stale socket file (its server gone) is also "nothing serves it". */
	snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
	fd = fake_mux_listen(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(remote_mux_exec(path, "true", 0, 1, 2, NULL, &res, &e), TDXR_ENOTFOUND);
	unlink(path);
}

static void mux_client_passes_command_and_descriptors_and_maps_the_reply(void **state)
{
	struct fake_mux fm;
	struct remote_exec_result res;
	struct tdxr_err e;
	char path[PATH_MAX], dir[PATH_MAX - 16], got[64];

	(void)state;
	/* Exit status 7, through a path longer than a sockaddr_un holds. */
	snprintf(dir, sizeof(dir), "%s/%0100d", tmpdir, 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/mux.sock", dir);
	assert_true(strlen(path) > sizeof(((struct sockaddr_un *)0)->sun_path));
	memset(&fm, 0, sizeof(fm));
	fm.rep.exited = 1;
	fm.rep.status = 7;
	assert_int_equal(run_fake(&fm, path, "rsync --server -e.x . /w/", NULL, &res, &e, got, sizeof(got)), 0);
	assert_string_equal(fm.cmd, "rsync --server -e.x . /w/");
	assert_int_equal(fm.nfds, 3);
	assert_true(fm.wrote);
	assert_string_equal(got, "via-fd"); /* the server wrote to our stdout itself */
	assert_int_equal(res.exited, 1);
	assert_int_equal(res.exit_status, 7);
	assert_string_equal(res.exit_signal, "");

	/* Killed by a signal. */
	snprintf(path, sizeof(path), "%s/mux2.sock", tmpdir);
	memset(&fm, 0, sizeof(fm));
	memcpy(fm.rep.signal, "TERM", 5);
	assert_int_equal(run_fake(&fm, path, "sleep 9", NULL, &res, &e, got, sizeof(got)), 0);
	assert_int_equal(res.exited, 0);
	assert_string_equal(res.exit_signal, "TERM");

	/* The multiplexer's error comes back with its code and message. */
	memset(&fm, 0, sizeof(fm));
	fm.rep.rc = TDXR_EIO;
	snprintf(fm.rep.msg, sizeof(fm.rep.msg), "ssh: connection to the box lost while the command ran");
	assert_int_equal(run_fake(&fm, path, "true", NULL, &res, &e, got, sizeof(got)), TDXR_EIO);
	assert_non_null(strstr(e.msg, "lost while the command ran"));

	/* A multiplexer that goes away without answering. */
	memset(&fm, 0, sizeof(fm));
	fm.close_without_reply = 1;
	assert_int_equal(run_fake(&fm, path, "true", NULL, &res, &e, got, sizeof(got)), TDXR_EIO);
	assert_non_null(strstr(e.msg, "went away"));
}

static void mux_client_refuses_empty_commands_and_stops_on_cancel(void **state)
{
	struct fake_mux fm;
	struct remote_exec_result res;
	struct tdxr_err e;
	atomic_int cancel = 1;
	char path[PATH_MAX], got[64];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/mux3.sock", tmpdir);
	fd = fake_mux_listen(path);
	assert_true(fd >= 0);
	assert_int_equal(remote_mux_exec(path, "", 0, 1, 2, NULL, &res, &e), TDXR_EINVAL);
	close(fd);
	unlink(path);
	/* The fake never answers: the cancel flag ends the wait. */
	memset(&fm, 0, sizeof(fm));
	fm.close_without_reply = 1;
	assert_int_equal(run_fake(&fm, path, "sleep 100", &cancel, &res, &e, got, sizeof(got)), TDXR_ECANCELED);
}

/* ---- reconnect on the exec path (real sshd; run by test_remote.sh) ------------- */

struct rc_out {
	char buf[256];
	size_t len;
	const char *kill_cmd; /* run once "started" shows up: the connection dies mid-command */
	int killed;
};

static int rc_collect(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct rc_out *o = ctx;

	(void)which;
	if (n > sizeof(o->buf) - 1 - o->len)
		n = sizeof(o->buf) - 1 - o->len;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = '\0';
	if (o->kill_cmd != NULL && !o->killed && strstr(o->buf, "started") != NULL) {
		o->killed = 1;
		if (system(o->kill_cmd) != 0)
			fail_msg("kill command failed");
	}
	return 0;
}

static int rc_run(struct remote_ssh *ssh, const char *cmd, const char *kill_cmd, struct rc_out *o,
                  struct tdxr_err *e)
{
	struct remote_exec_opts xo;
	struct remote_exec_result r;

	memset(o, 0, sizeof(*o));
	o->kill_cmd = kill_cmd;
	memset(&xo, 0, sizeof(xo));
	xo.command = cmd;
	xo.stdin_fd = -1;
	xo.output = rc_collect;
	xo.output_ctx = o;
	return remote_exec_run(ssh, &xo, &r, e);
}

static void exec_reconnects_for_a_new_command_but_never_reruns_one(void **state)
{
	const char *lease_path = getenv("TDXR_REMOTE_LEASE"), *kill_cmd = getenv("TDXR_REMOTE_KILL_CONN");
	struct remote_lease *l = NULL;
	struct remote_ssh *ssh = NULL;
	struct rc_out o;
	struct tdxr_err e;
	char runs[PATH_MAX], cmd[PATH_MAX + 64];
	uint8_t *data = NULL;
	size_t len = 0;

	(void)state;
	if (lease_path == NULL || kill_cmd == NULL) {
		print_message("SKIP: needs a real sshd; run by tests/integration/test_remote.sh\n");
		skip();
	}
	assert_int_equal(remote_lease_load(lease_path, &l, &e), 0);
	assert_int_equal(remote_lease_connect(l, 15000, &ssh, &e), 0);
	assert_int_equal(rc_run(ssh, "echo one", NULL, &o, &e), 0);
	assert_string_equal(o.buf, "one\n");
	/* The connection dies between commands: the next one reconnects and runs. */
	assert_int_equal(system(kill_cmd), 0);
	if (rc_run(ssh, "echo two", NULL, &o, &e) != 0)
		fail_msg("after the connection died: %s", e.msg);
	assert_string_equal(o.buf, "two\n");
	assert_int_equal(remote_ssh_reconnects(ssh), 1);
	/* It dies while a command runs: that command fails and is not run again. */
	snprintf(runs, sizeof(runs), "%s/runs", tmpdir);
	snprintf(cmd, sizeof(cmd), "echo run >> '%s'; echo started; sleep 30", runs);
	assert_int_equal(rc_run(ssh, cmd, kill_cmd, &o, &e), TDXR_EIO);
	assert_true(o.killed);
	assert_int_equal(remote_ssh_reconnects(ssh), 1);
	assert_int_equal(tdxr_file_read(runs, 1024, &data, &len, &e), 0);
	assert_int_equal(len, 4); /* "run\n": once */
	free(data);
	/* And the next command reconnects again. */
	assert_int_equal(rc_run(ssh, "echo three", NULL, &o, &e), 0);
	assert_string_equal(o.buf, "three\n");
	assert_int_equal(remote_ssh_reconnects(ssh), 2);
	remote_ssh_free(ssh);
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
		cmocka_unit_test(mux_client_without_a_server_is_notfound),
		cmocka_unit_test(mux_client_passes_command_and_descriptors_and_maps_the_reply),
		cmocka_unit_test(mux_client_refuses_empty_commands_and_stops_on_cancel),
		cmocka_unit_test(exec_reconnects_for_a_new_command_but_never_reruns_one),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
