/*
 * test_exec_local.c - the `local` executor with real processes: a box is a
 * real sshd and a real guest agent; we reach it with agent/remote (libssh2),
 * fetch a fresh quote from inside the box and verify it (simulated root),
 * then destroy it and check that no process of the box survives - also when
 * its sshd was killed -9 first and when a job left a detached process behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/remote/remote.h"
#include "attest/attest.h"
#include "common/util.h"
#include "executors/executor.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char state[64];
static void *priv;

static int have(const char *cmd)
{
	char buf[1200];

	snprintf(buf, sizeof(buf), "%s >/dev/null 2>&1", cmd);
	return system(buf) == 0;
}

static int setup(void **st)
{
	const char *self = getenv("TDXR_SELF_EXE");
	char cmd[1024];
	struct tdxr_err e;

	if (self == NULL || access("/usr/sbin/sshd", X_OK) != 0)
		return 0;
	snprintf(cmd, sizeof(cmd), "%s help | grep -q '^  guest-agent '", self);
	if (!have(cmd))
		return 0;
	snprintf(state, sizeof(state), "/tmp/tdxr-x-XXXXXX");
	if (mkdtemp(state) == NULL)
		return -1;
	priv = calloc(1, exec_local.priv_size);
	if (exec_local.init(priv, state, "{}", &e) != 0) {
		print_message("local init: %s\n", e.msg);
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "ssh-keygen -q -t ed25519 -N '' -f %s/client", state);
	return have(cmd) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[128];

	if (priv) {
		exec_local.dispose(priv);
		free(priv);
		snprintf(cmd, sizeof(cmd), "rm -rf %s", state);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

#define REQUIRE_BOX()                                                                                        \
	do {                                                                                                 \
		if (priv == NULL) {                                                                          \
			print_message("SKIP: needs /usr/sbin/sshd and `tdx-runner guest-agent`\n");          \
			skip();                                                                              \
		}                                                                                            \
	} while (0)

/* Processes whose command line or environment mention the box. */
static int box_processes(const char *box)
{
	char needle[600], p[300], buf[65536];
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;

	snprintf(needle, sizeof(needle), "%s/", box);
	while (d && (de = readdir(d)) != NULL) {
		const char *files[2] = { "cmdline", "environ" };
		int i;

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || atoi(de->d_name) == getpid())
			continue;
		for (i = 0; i < 2; i++) {
			FILE *f;
			size_t r, k;

			snprintf(p, sizeof(p), "/proc/%s/%s", de->d_name, files[i]);
			f = fopen(p, "re");
			if (f == NULL)
				continue;
			r = fread(buf, 1, sizeof(buf), f);
			fclose(f);
			for (k = 0; k + strlen(needle) <= r; k++)
				if (memcmp(buf + k, needle, strlen(needle)) == 0) {
					n++;
					i = 2;
					break;
				}
		}
	}
	if (d)
		closedir(d);
	return n;
}

static struct remote_ssh *connect_box(const struct exec_lease *lease, char *work, size_t wcap)
{
	struct exec_endpoint ep;
	struct remote_endpoint rep;
	struct remote_ssh_opts so;
	struct remote_stream *s = NULL;
	struct remote_ssh *ssh = NULL;
	struct tdxr_err e;
	char key[128];

	assert_int_equal(exec_local.endpoint(priv, lease, &ep, &e), 0);
	memset(&rep, 0, sizeof(rep));
	rep.transport = REMOTE_TRANSPORT_DIRECT;
	rep.host = ep.host;
	rep.port = ep.port;
	if (remote_stream_open(&rep, &s, &e) != 0)
		fail_msg("stream: %s", e.msg);
	memset(&so, 0, sizeof(so));
	snprintf(key, sizeof(key), "%s/client", state);
	so.user = ep.user;
	so.key_file = key;
	if (remote_ssh_open(s, &so, &ssh, &e) != 0)
		fail_msg("ssh: %s", e.msg);
	snprintf(work, wcap, "%s", ep.work_dir);
	return ssh;
}

struct sink {
	char buf[8192];
	size_t n;
};

static int collect(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct sink *s = ctx;

	if (which == REMOTE_OUT_STDOUT && s->n + n < sizeof(s->buf)) {
		memcpy(s->buf + s->n, p, n);
		s->n += n;
		s->buf[s->n] = '\0';
	}
	return 0;
}

static void run(struct remote_ssh *ssh, const char *cmd, struct sink *out)
{
	struct remote_exec_opts o;
	struct remote_exec_result r;
	struct tdxr_err e;

	memset(&o, 0, sizeof(o));
	memset(out, 0, sizeof(*out));
	o.command = cmd;
	o.stdin_fd = -1;
	o.output = collect;
	o.output_ctx = out;
	o.timeout_ms = 20000;
	if (remote_exec_run(ssh, &o, &r, &e) != 0)
		fail_msg("exec %s: %s", cmd, e.msg);
	assert_true(r.exited);
	assert_int_equal(r.exit_status, 0);
}

static void create_box(const char *id, struct exec_lease *lease)
{
	struct exec_lease_spec spec;
	struct tdxr_err e;
	char path[128], pub[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/client.pub", state);
	f = fopen(path, "re");
	assert_non_null(f);
	assert_non_null(fgets(pub, sizeof(pub), f));
	fclose(f);
	pub[strcspn(pub, "\n")] = '\0';
	memset(&spec, 0, sizeof(spec));
	spec.lease_id = id;
	spec.ssh_pubkey = pub;
	spec.owner_host = "test-host";
	if (exec_local.create(priv, &spec, lease, &e) != 0)
		fail_msg("create: %s", e.msg);
	if (exec_local.wait_ready(priv, lease, 20000, &e) != 0)
		fail_msg("wait_ready: %s", e.msg);
}

static void box_serves_ssh_and_fresh_simulated_quotes(void **st)
{
	struct exec_lease lease;
	struct remote_ssh *ssh;
	struct attest_evidence *ev = NULL;
	struct attest_collateral *coll = NULL;
	struct attest_verdict *v = NULL;
	struct attest_policy pol;
	struct attest_input in;
	struct tdxr_err e;
	struct sink out;
	uint8_t rd[64], *body = NULL, *d = NULL, *root = NULL;
	size_t blen = 0, dn = 0, rn = 0;
	char work[512], p[700];
	struct stat sb;

	REQUIRE_BOX();
	create_box("l-test-a", &lease);
	assert_string_equal(lease.executor, "local");
	ssh = connect_box(&lease, work, sizeof(work));
	run(ssh, "printf %s \"$DSTACK_SIMULATOR_ENDPOINT\"", &out);
	assert_non_null(strstr(out.buf, "/guest.sock"));
	memset(rd, 0x42, sizeof(rd));
	if (remote_guest_quote(ssh, rd, 20000, &body, &blen, &e) != 0)
		fail_msg("GetQuote through the box: %s", e.msg);
	assert_int_equal(attest_evidence_parse(body, blen, &ev, &e), 0);
	snprintf(p, sizeof(p), "%s/collateral.json", lease.box_dir);
	assert_int_equal(tdxr_file_read(p, 1u << 22, &d, &dn, &e), 0);
	assert_int_equal(attest_collateral_parse(d, dn, &coll, &e), 0);
	snprintf(p, sizeof(p), "%s/root.der", lease.box_dir);
	assert_int_equal(tdxr_file_read(p, 1u << 16, &root, &rn, &e), 0);
	memset(&in, 0, sizeof(in));
	in.quote = ev->quote;
	in.quote_len = ev->quote_len;
	in.collateral = coll;
	in.eventlog = ev->eventlog;
	in.now = (int64_t)time(NULL);
	in.root_der = root;
	in.root_der_len = rn;
	attest_policy_init(&pol);
	pol.allow_simulated = 1;
	pol.expected_report_data = rd;
	pol.expected_app_id = lease.app_id;
	assert_int_equal(attest_verify(&in, &pol, &v, &e), 0);
	if (!v->ok)
		fail_msg("box quote: %s", v->error);
	assert_true(v->simulated);
	attest_verdict_free(v);
	remote_ssh_free(ssh);
	free(body);
	free(d);
	free(root);
	attest_evidence_free(ev);
	attest_collateral_free(coll);
	assert_true(box_processes(lease.box_dir) >= 2);
	assert_int_equal(exec_local.destroy(priv, &lease, &e), 0);
	assert_int_equal(box_processes(lease.box_dir), 0);
	assert_int_equal(stat(lease.box_dir, &sb), -1);
	/* Idempotent: destroying it again succeeds (the box dir is the record). */
	assert_int_equal(exec_local.destroy(priv, &lease, &e), 0);
}

static void destroy_kills_everything_even_after_a_crash(void **st)
{
	struct exec_lease lease;
	struct remote_ssh *ssh;
	struct tdxr_err e;
	struct sink out;
	char work[512], cmd[700], pids[64] = "";
	int sshd_pid = 0;

	REQUIRE_BOX();
	create_box("l-test-b", &lease);
	ssh = connect_box(&lease, work, sizeof(work));
	/* A job that leaves a detached process behind. */
	snprintf(cmd, sizeof(cmd),
	         "cd %s && (nohup setsid sleep 600 >/dev/null 2>&1 < /dev/null &) ; echo started", work);
	run(ssh, cmd, &out);
	remote_ssh_free(ssh);
	/* The executor's own bookkeeping process dies hard. */
	{
		char p[600];
		FILE *f;

		snprintf(p, sizeof(p), "%s/pids", lease.box_dir);
		f = fopen(p, "re");
		assert_non_null(f);
		assert_non_null(fgets(pids, sizeof(pids), f));
		fclose(f);
		sshd_pid = atoi(pids);
		assert_true(sshd_pid > 1);
		assert_int_equal(kill(sshd_pid, SIGKILL), 0);
		waitpid(sshd_pid, NULL, 0);
	}
	/* (nohup above: sshd hangs up the session's process group when the channel closes, which
	 * could otherwise hit the job before setsid moved it out.) */
	{
		int i, n = 0;

		for (i = 0; i < 100 && (n = box_processes(lease.box_dir)) < 2; i++)
			usleep(20000);
		assert_true(n >= 2); /* guest agent + the orphaned sleep */
	}
	/* A new process with only the lease record: */
	{
		void *p2 = calloc(1, exec_local.priv_size);

		assert_int_equal(exec_local.init(p2, state, "{}", &e), 0);
		assert_int_equal(exec_local.destroy(p2, &lease, &e), 0);
		free(p2);
	}
	assert_int_equal(box_processes(lease.box_dir), 0);
}

static void destroy_refuses_paths_outside_its_boxes(void **st)
{
	struct exec_lease lease;
	struct tdxr_err e;

	REQUIRE_BOX();
	memset(&lease, 0, sizeof(lease));
	snprintf(lease.cloud_id, sizeof(lease.cloud_id), "..");
	snprintf(lease.box_dir, sizeof(lease.box_dir), "%s/boxes/..", state);
	assert_int_equal(exec_local.destroy(priv, &lease, &e), TDXR_EINVAL);
	snprintf(lease.cloud_id, sizeof(lease.cloud_id), "l-x");
	snprintf(lease.box_dir, sizeof(lease.box_dir), "/etc");
	assert_int_equal(exec_local.destroy(priv, &lease, &e), TDXR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(box_serves_ssh_and_fresh_simulated_quotes),
		cmocka_unit_test(destroy_kills_everything_even_after_a_crash),
		cmocka_unit_test(destroy_refuses_paths_outside_its_boxes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
