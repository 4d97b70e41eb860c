/*
 * job.c - `tdx-runner run`'s pipeline on one executor (see job.h). The gate
 * asks the box's guest agent for a fresh quote whose REPORTDATA is
 *   SHA-512("tdx-runner/gate/v1" || 0x00 || nonce[32] || host-key fingerprint)
 * (a nonce we chose, and the SSH host key we pinned on this connection), and
 * verifies it against the policy with the app id the executor created and the
 * hash of the compose we sent; only then does the tree move. Release always
 * runs; its failure is reported and the claim stays for the reaper.
 */
#include "agent/job.h"

#include "agent/config.h"
#include "agent/executors.h"
#include "agent/lease.h"
#include "agent/remote/remote.h"
#include "agent/remote/sync.h"
#include "attest/attest.h"
#include "attest/fetch.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "executors/executor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define GATE_DOMAIN "tdx-runner/gate/v1"

struct job {
	const struct job_run_opts *o;
	const struct exec_ops *ops;
	void *priv;
	struct lease_store *store;
	struct lease_handle *claim;
	struct exec_lease lease;
	int created;
	char lease_id[LEASE_ID_MAX];
	char key_dir[400], key[512], lease_file[512];
	char compose_hash[65];
	struct remote_lease *rl;
	struct remote_ssh *ssh;
	struct attest_verdict *verdict;
	char *bundle;
	char work_dir[512];
	struct timespec t0;
};

static double since(struct timespec *t)
{
	struct timespec n;
	double d;

	clock_gettime(CLOCK_MONOTONIC, &n);
	d = (double)(n.tv_sec - t->tv_sec) + (double)(n.tv_nsec - t->tv_nsec) / 1e9;
	*t = n;
	return d;
}

static void phase(struct job *j, const char *what)
{
	double d = since(&j->t0);

	if (j->o->progress)
		fprintf(stderr, "tdx-runner: %-9s done (%.2f s)\n", what, d);
}

static int canceled(const struct job *j)
{
	return j->o->cancel && *j->o->cancel;
}

static int update(struct job *j, const char *state)
{
	struct lease_claim c = *lease_handle_claim(j->claim);
	struct tdxr_err e;

	snprintf(c.state, sizeof(c.state), "%s", state);
	snprintf(c.cloud_id, sizeof(c.cloud_id), "%s", j->lease.cloud_id);
	snprintf(c.app_id, sizeof(c.app_id), "%s", j->lease.app_id);
	snprintf(c.gateway, sizeof(c.gateway), "%s", j->lease.gateway);
	if (j->lease.name[0])
		snprintf(c.name, sizeof(c.name), "%s", j->lease.name);
	if (lease_claim_update(j->claim, &c, &e)) {
		TDXR_WARN("job", "lease %s: cannot record state %s: %s", j->lease_id, state, e.msg);
		return -1;
	}
	/* Crash tests: stall right after recording a state, so a test can kill -9 us there. */
	{
		const char *stall = getenv("TDXR_TEST_STALL_AT");

		if (stall && strcmp(stall, state) == 0) {
			fprintf(stderr, "tdx-runner: test stall at %s\n", state);
			sleep(120);
		}
	}
	return 0;
}

/* Runs argv to completion with stdio to /dev/null (key generation). */
static int run_quiet(char *const argv[])
{
	int status = 0;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++)
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];

			buf[i] = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST)
				return -1;
			buf[i] = c;
		}
	return 0;
}

/* ---- steps ---- */

static int step_lease(struct job *j, struct tdxr_err *err)
{
	const struct config *cfg = j->o->cfg;
	struct exec_lease_spec spec;
	struct lease_claim c;
	char host[128] = "", pub[PATH_MAX + 4], pubkey[1024] = "", *compose_text = NULL;
	FILE *f;
	int rc;

	if ((rc = lease_store_open(cfg->state_dir, &j->store, err)))
		return rc;
	lease_id_new(j->lease_id);
	if ((size_t)snprintf(j->key_dir, sizeof(j->key_dir), "%s/keys/%s", cfg->state_dir, j->lease_id) >=
	        sizeof(j->key_dir) ||
	    mkdirs(j->key_dir) != 0)
		return tdxr_err_set(err, TDXR_EIO, "lease: cannot create %s", j->key_dir);
	snprintf(j->key, sizeof(j->key), "%s/id_ed25519", j->key_dir);
	gethostname(host, sizeof(host) - 1);
	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", j->lease_id);
	snprintf(c.executor, sizeof(c.executor), "%s", j->ops->name);
	snprintf(c.state, sizeof(c.state), "creating");
	snprintf(c.name, sizeof(c.name), "tdxr-%s", j->lease_id + 2);
	snprintf(c.owner_host, sizeof(c.owner_host), "%s", host);
	snprintf(c.ssh_key_path, sizeof(c.ssh_key_path), "%s", j->key);
	/* The claim exists before anything is created. */
	if ((rc = lease_claim_create(j->store, &c, &j->claim, err)))
		return rc;
	{
		char *argv[] = { "/usr/bin/ssh-keygen", "-q", "-t",   "ed25519", "-N", "", "-C",
			         j->lease_id,           "-f", j->key, NULL };

		if (run_quiet(argv) != 0)
			return tdxr_err_set(err, TDXR_EIO,
			                    "lease: ssh-keygen could not create the per-lease key");
	}
	snprintf(pub, sizeof(pub), "%s.pub", j->key);
	f = fopen(pub, "re");
	if (f == NULL || fgets(pubkey, sizeof(pubkey), f) == NULL) {
		if (f)
			fclose(f);
		return tdxr_err_set(err, TDXR_EIO, "lease: cannot read %s", pub);
	}
	fclose(f);
	pubkey[strcspn(pubkey, "\n")] = '\0';
	memset(&spec, 0, sizeof(spec));
	spec.lease_id = j->lease_id;
	spec.name = c.name;
	spec.ssh_pubkey = pubkey;
	spec.owner_host = host;
	spec.job_id = "";
	spec.compose = compose_text; /* NULL: the executor's default; its hash is read back below */
	j->created = 1;              /* from here on, release must call destroy (idempotent) */
	if ((rc = j->ops->create(j->priv, &spec, &j->lease, err)))
		return rc;
	update(j, "created");
	if ((rc = j->ops->wait_ready(j->priv, &j->lease, (int)cfg->executor.ready_timeout_s * 1000, err)))
		return rc;
	update(j, "ready");
	return 0;
}

static int write_lease_file(struct job *j, const struct exec_endpoint *ep, struct tdxr_err *err)
{
	json_t *o = json_object();
	char *text;
	int rc;

	snprintf(j->lease_file, sizeof(j->lease_file), "%s/lease.json", j->key_dir);
	json_object_set_new(o, "id", json_string(j->lease_id));
	json_object_set_new(o, "executor", json_string(j->ops->name));
	json_object_set_new(o, "user", json_string(ep->user));
	json_object_set_new(o, "key_file", json_string(j->key));
	if (ep->tls) {
		json_t *t = json_object();

		json_object_set_new(o, "transport", json_string("tls"));
		json_object_set_new(t, "server_name", json_string(ep->server_name));
		json_object_set_new(t, "port", json_integer(ep->port));
		/* executor.gateway: dial another address (SNI and name checks keep the name), extra CA. */
		if (j->o->cfg->executor.gateway.connect_to)
			json_object_set_new(t, "connect_to", json_string(j->o->cfg->executor.gateway.connect_to));
		if (j->o->cfg->executor.gateway.ca_file)
			json_object_set_new(t, "ca_file", json_string(j->o->cfg->executor.gateway.ca_file));
		json_object_set_new(o, "tls", t);
	} else {
		json_object_set_new(o, "transport", json_string("direct"));
		json_object_set_new(o, "host", json_string(ep->host));
		json_object_set_new(o, "port", json_integer(ep->port));
	}
	json_object_set_new(o, "work_dir", json_string(ep->work_dir));
	text = json_dumps(o, JSON_INDENT(1));
	json_decref(o);
	if (text == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = tdxr_file_write_atomic(j->lease_file, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

static int step_connect(struct job *j, struct tdxr_err *err)
{
	struct exec_endpoint ep;
	int rc;

	if ((rc = j->ops->endpoint(j->priv, &j->lease, &ep, err)) || (rc = write_lease_file(j, &ep, err)) ||
	    (rc = remote_lease_load(j->lease_file, &j->rl, err)) ||
	    (rc = remote_lease_connect(j->rl, 30000, &j->ssh, err)))
		return rc;
	snprintf(j->work_dir, sizeof(j->work_dir), "%s", ep.work_dir);
	return 0;
}

static int read_box_file(const struct exec_lease *l, const char *name, uint8_t **out, size_t *len,
                         struct tdxr_err *err)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", l->box_dir, name);
	return tdxr_file_read(p, TDXR_CAP_COLLATERAL, out, len, err);
}

/* Intel collateral for the quote's FMSPC and PCK CA, from the configured PCS/PCCS through the
 * on-disk cache (policy.pccs_url, policy.cache_dir or <state_dir>/collateral). */
static int fetch_collateral(struct job *j, const struct attest_evidence *ev, struct attest_collateral **out,
			    struct tdxr_err *err)
{
	const struct config *cfg = j->o->cfg;
	struct attest_fetch_opts fo;
	struct attest_quote *q = NULL;
	char fmspc[13], cache[512], *json = NULL;
	const char *ca = NULL;
	int rc;

	*out = NULL;
	if ((rc = attest_quote_parse(ev->quote, ev->quote_len, &q, err)) ||
	    (rc = attest_quote_pck_info(q, fmspc, &ca, err))) {
		attest_quote_free(q);
		return tdxr_err_prefix(err, "gate: quote");
	}
	attest_fetch_opts_init(&fo);
	fo.base_url = cfg->policy.pccs_url;
	if (cfg->policy.cache_dir)
		fo.cache_dir = cfg->policy.cache_dir;
	else if ((size_t)snprintf(cache, sizeof(cache), "%s/collateral", cfg->state_dir) < sizeof(cache))
		fo.cache_dir = cache;
	rc = attest_fetch_collateral(&fo, fmspc, q->tee_type == ATTEST_TEE_TDX, ca, &json, NULL, err);
	attest_quote_free(q);
	if (rc)
		return tdxr_err_prefix(err, "gate: collateral");
	rc = attest_collateral_parse((const uint8_t *)json, strlen(json), out, err);
	free(json);
	return rc ? tdxr_err_prefix(err, "gate: collateral") : 0;
}

static int step_gate(struct job *j, struct tdxr_err *err)
{
	const struct config *cfg = j->o->cfg;
	uint8_t nonce[32], rd[64], *body = NULL, *coll_json = NULL, *root = NULL, *compose = NULL;
	size_t blen = 0, clen = 0, rlen = 0, plen = 0;
	struct attest_evidence *ev = NULL;
	struct attest_collateral *coll = NULL;
	struct attest_policy pol;
	struct attest_input in;
	struct attest_bundle_meta meta;
	char nonce_hex[65], hk[REMOTE_FP_MAX + 1];
	unsigned int mdlen = 0;
	EVP_MD_CTX *md;
	int rc;

	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "gate: no randomness for the nonce");
	snprintf(hk, sizeof(hk), "%s", remote_ssh_host_key(j->ssh));
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha512(), NULL) != 1 ||
	    EVP_DigestUpdate(md, GATE_DOMAIN, sizeof(GATE_DOMAIN)) != 1 || /* includes the NUL */
	    EVP_DigestUpdate(md, nonce, sizeof(nonce)) != 1 || EVP_DigestUpdate(md, hk, strlen(hk)) != 1 ||
	    EVP_DigestFinal_ex(md, rd, &mdlen) != 1) {
		EVP_MD_CTX_free(md);
		return tdxr_err_set(err, TDXR_ERROR, "gate: SHA-512 failed");
	}
	EVP_MD_CTX_free(md);
	tdxr_hex_encode(nonce, sizeof(nonce), nonce_hex);
	if ((rc = remote_guest_quote(j->ssh, rd, 30000, &body, &blen, err))) {
		tdxr_err_prefix(err, "gate: guest agent");
		goto out;
	}
	if ((rc = attest_evidence_parse(body, blen, &ev, err))) {
		tdxr_err_prefix(err, "gate: guest agent response");
		goto out;
	}
	if (ev->quote == NULL) {
		rc = tdxr_err_set(err, TDXR_EATTEST, "gate: the guest agent returned no quote");
		goto out;
	}
	/* Collateral and root: a simulated box publishes its simulator's; any other box is judged
	 * against Intel's collateral from the PCS/PCCS (cached per FMSPC), to the pinned Intel root. */
	if (j->ops->caps & EXEC_CAP_SIMULATED) {
		if ((rc = read_box_file(&j->lease, "collateral.json", &coll_json, &clen, err)) ||
		    (rc = attest_collateral_parse(coll_json, clen, &coll, err)) ||
		    (rc = read_box_file(&j->lease, "root.der", &root, &rlen, err)) ||
		    (rc = read_box_file(&j->lease, "app-compose.json", &compose, &plen, err))) {
			tdxr_err_prefix(err, "gate: simulated collateral");
			goto out;
		}
	} else {
		if ((rc = fetch_collateral(j, ev, &coll, err)))
			goto out;
		if (ev->app_compose) {
			plen = strlen(ev->app_compose);
			compose = (uint8_t *)strdup(ev->app_compose);
			if (compose == NULL) {
				rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
				goto out;
			}
		}
	}
	/* The compose the back end deployed: its recorded hash, else the one we read. */
	if (j->lease.compose_hash[0])
		snprintf(j->compose_hash, sizeof(j->compose_hash), "%s", j->lease.compose_hash);
	else if (compose)
		attest_compose_hash((const char *)compose, plen, j->compose_hash);
	config_attest_policy(cfg, j->o->executor_kind, &pol);
	pol.expected_report_data = rd;
	pol.expected_app_id = j->lease.app_id;
	pol.expected_compose_hash = j->compose_hash[0] ? j->compose_hash : NULL;
	if (pol.allow_simulated)
		fprintf(
		    stderr,
		    "tdx-runner: WARNING: the %s executor's attestation is SIMULATED: no hardware vouches "
		    "for this box (policy allow_simulated)\n",
		    j->ops->name);
	memset(&in, 0, sizeof(in));
	in.quote = ev->quote;
	in.quote_len = ev->quote_len;
	in.collateral = coll;
	in.eventlog = ev->eventlog;
	in.app_compose = (const char *)compose;
	in.app_compose_len = plen;
	in.now = (int64_t)time(NULL);
	in.root_der = root; /* NULL for real boxes: the Intel root pinned in attest/ */
	in.root_der_len = rlen;
	in.root_simulated = root != NULL;
	if ((rc = attest_verify(&in, &pol, &j->verdict, err)))
		goto out;
	memset(&meta, 0, sizeof(meta));
	meta.executor = j->ops->name;
	meta.lease_id = j->lease_id;
	meta.nonce_hex = nonce_hex;
	if ((rc = attest_bundle_write(&in, &pol, j->verdict, &meta, &j->bundle, err)))
		goto out;
	if (!j->verdict->ok) {
		rc = tdxr_err_set(err, TDXR_EATTEST, "gate: attestation refused at %s", j->verdict->error);
		goto out;
	}
	update(j, "attested");
out:
	free(body);
	free(coll_json);
	free(root);
	free(compose);
	attest_evidence_free(ev);
	attest_collateral_free(coll);
	return rc;
}

static void sync_line(void *ctx, enum remote_sync_stream s, const char *line, size_t len)
{
	(void)ctx;
	if (s == REMOTE_SYNC_STDERR)
		TDXR_WARN("sync", "%.*s", (int)len, line);
}

static int sync_opts(struct job *j, struct remote_sync_opts *so, const char **rsh, char **self,
                     struct tdxr_err *err)
{
	int rc = remote_sync_self_exe(self, err);

	if (rc)
		return rc;
	rsh[0] = *self;
	rsh[1] = "rsh";
	rsh[2] = j->lease_file;
	rsh[3] = NULL;
	memset(so, 0, sizeof(*so));
	so->rsh = rsh;
	so->host = j->lease_id;
	so->dest = j->work_dir;
	so->cancel = j->o->cancel;
	so->on_line = sync_line;
	return 0;
}

static int step_sync(struct job *j, struct tdxr_err *err)
{
	struct remote_sync_manifest *m = NULL;
	struct remote_sync_opts so;
	struct remote_sync_result res;
	const char *rsh[4];
	char *self = NULL;
	int rc;

	if ((rc = remote_sync_manifest_worktree(j->o->repo_dir, &m, err)) ||
	    (rc = sync_opts(j, &so, rsh, &self, err)))
		goto out;
	rc = remote_sync_push(j->o->repo_dir, m, &so, &res, err);
	if (!rc) {
		update(j, "synced");
		if (j->o->progress)
			fprintf(stderr, "tdx-runner: synced %zu files (%zu transferred)\n",
			        remote_sync_manifest_count(m), res.transferred);
	}
out:
	free(self);
	remote_sync_manifest_free(m);
	return rc;
}

static int forward(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	FILE *f = which == REMOTE_OUT_STDERR ? stderr : stdout;

	(void)ctx;
	fwrite(p, 1, n, f);
	fflush(f);
	return 0;
}

/* Single-quotes a word for /bin/sh. */
static int shell_append(char *dst, size_t cap, size_t *o, const char *w)
{
	size_t i;

#define PUT(c)                                                                                               \
	do {                                                                                                 \
		if (*o + 1 >= cap)                                                                           \
			return -1;                                                                           \
		dst[(*o)++] = (c);                                                                           \
	} while (0)
	PUT('\'');
	for (i = 0; w[i]; i++) {
		if (w[i] == '\'') {
			PUT('\'');
			PUT('\\');
			PUT('\'');
			PUT('\'');
		} else {
			PUT(w[i]);
		}
	}
	PUT('\'');
	PUT(' ');
	dst[*o] = '\0';
	return 0;
#undef PUT
}

static int step_run(struct job *j, int *status, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result r;
	char cmd[65536];
	size_t o = 0, i;
	int rc;

	/* cd WORK && 'arg0' 'arg1' ... */
	memcpy(cmd, "cd ", 4);
	o = 3;
	if (shell_append(cmd, sizeof(cmd), &o, j->work_dir) || o + 4 >= sizeof(cmd))
		return tdxr_err_set(err, TDXR_EINVAL, "run: work directory path too long");
	memcpy(cmd + o, "&& ", 4);
	o += 3;
	for (i = 0; i < j->o->argc; i++)
		if (shell_append(cmd, sizeof(cmd), &o, j->o->argv[i]))
			return tdxr_err_set(err, TDXR_EINVAL, "run: command longer than %zu bytes",
			                    sizeof(cmd));
	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_fd = -1;
	eo.output = forward;
	eo.cancel = j->o->exec_cancel;
	update(j, "running");
	rc = remote_exec_run(j->ssh, &eo, &r, err);
	if (rc)
		return rc;
	*status = r.exited ? r.exit_status : 128 + 15;
	if (!r.exited && r.exit_signal[0])
		fprintf(stderr, "tdx-runner: the command was killed by SIG%s\n", r.exit_signal);
	return 0;
}

static int step_collect(struct job *j, struct tdxr_err *err)
{
	struct remote_sync_opts so;
	const char *rsh[4];
	char *self = NULL;
	int rc;

	if (j->o->n_artifacts == 0)
		return 0;
	update(j, "collecting");
	if ((rc = sync_opts(j, &so, rsh, &self, err)) == 0)
		rc = remote_sync_pull(&so, j->o->artifacts, j->o->n_artifacts,
		                      j->o->artifacts_dir ? j->o->artifacts_dir : ".", err);
	free(self);
	return rc;
}

static int release(struct job *j, struct tdxr_err *err)
{
	struct tdxr_err e;
	int rc = 0;

	remote_ssh_free(j->ssh);
	j->ssh = NULL;
	remote_lease_free(j->rl);
	j->rl = NULL;
	if (j->claim == NULL)
		return 0;
	if (j->o->keep && j->created) {
		fprintf(stderr, "tdx-runner: keeping lease %s (tdx-runner reap releases it)\n", j->lease_id);
		lease_handle_close(j->claim);
		j->claim = NULL;
		return 0;
	}
	update(j, "releasing");
	if (j->created && (rc = j->ops->destroy(j->priv, &j->lease, &e))) {
		tdxr_err_set(err, rc, "release: %s (the claim stays for tdx-runner reap)", e.msg);
		lease_handle_close(j->claim);
		j->claim = NULL;
		return rc;
	}
	if (lease_claim_remove(j->claim, &e))
		TDXR_WARN("job", "lease %s: %s", j->lease_id, e.msg);
	j->claim = NULL;
	if (j->key_dir[0]) {
		char p[PATH_MAX + 16];

		snprintf(p, sizeof(p), "%s/id_ed25519", j->key_dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/id_ed25519.pub", j->key_dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/lease.json", j->key_dir);
		unlink(p);
		rmdir(j->key_dir);
	}
	return 0;
}

int job_run(const struct job_run_opts *o, struct tdxr_err *err)
{
	struct job j;
	struct tdxr_err rel;
	int rc, code = JOB_EXIT_INFRA, status = 0;

	memset(&j, 0, sizeof(j));
	tdxr_err_clear(&rel);
	j.o = o;
	clock_gettime(CLOCK_MONOTONIC, &j.t0);
	j.ops = job_executor(o->executor_kind);
	if (j.ops == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "run: the %s executor is not available in this build",
		                    config_executor_kind_name((enum config_executor_kind)o->executor_kind)),
		       JOB_EXIT_USAGE;
	j.priv = calloc(1, j.ops->priv_size ? j.ops->priv_size : 1);
	if (j.priv == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory"), JOB_EXIT_INFRA;
	if ((rc = job_executor_init(j.ops, j.priv, o->cfg, err))) {
		free(j.priv);
		return JOB_EXIT_INFRA;
	}
	rc = step_lease(&j, err);
	if (!rc)
		phase(&j, "lease");
	if (!rc && canceled(&j))
		rc = tdxr_err_set(err, TDXR_ECANCELED, "canceled");
	if (!rc && (rc = step_connect(&j, err)) == 0)
		phase(&j, "connect");
	if (!rc && !canceled(&j)) {
		rc = step_gate(&j, err);
		if (rc) {
			code = JOB_EXIT_ATTEST;
		} else {
			phase(&j, "attest");
			fprintf(stderr,
			        "tdx-runner: attested (%s): TCB %s, app id %s, compose hash %.16s...\n",
			        j.verdict->simulated ? "SIMULATED root of trust, not Intel"
			                             : "Intel root of trust",
			        attest_tcb_status_name(j.verdict->status), j.verdict->identity.app_id,
			        j.verdict->identity.compose_hash);
		}
	}
	/* Write the bundle whatever the verdict: a refused box is worth a record too. */
	if (j.bundle && o->bundle_path) {
		struct tdxr_err be;

		if (tdxr_file_write_atomic(o->bundle_path, j.bundle, strlen(j.bundle), 0644, &be))
			TDXR_WARN("job", "cannot write the attestation bundle: %s", be.msg);
	}
	if (!rc && !canceled(&j) && (rc = step_sync(&j, err)) == 0)
		phase(&j, "sync");
	if (!rc && !canceled(&j)) {
		rc = step_run(&j, &status, err);
		if (!rc) {
			code = status;
			phase(&j, "run");
		}
	}
	if (!rc && (rc = step_collect(&j, err)) != 0)
		code = JOB_EXIT_INFRA;
	if (canceled(&j) && !rc) {
		rc = tdxr_err_set(err, TDXR_ECANCELED, "canceled");
		code = JOB_EXIT_INFRA;
	}
	if (release(&j, &rel) != 0) {
		if (!rc)
			*err = rel;
		else
			fprintf(stderr, "tdx-runner: %s\n", rel.msg);
		code = code == 0 ? JOB_EXIT_INFRA : code;
	} else {
		phase(&j, "release");
	}
	attest_verdict_free(j.verdict);
	free(j.bundle);
	lease_store_free(j.store);
	j.ops->dispose(j.priv);
	free(j.priv);
	return code;
}
