/*
 * box.c - one leased, attested box (see box.h). The gate asks the box's guest
 * agent for a fresh quote whose REPORTDATA is
 *   SHA-512("tdx-runner/gate/v1" || 0x00 || nonce[32] || host-key fingerprint)
 * (a nonce we chose, and the SSH host key we pinned on this connection), and
 * verifies it against the policy with the app id the executor created and the
 * hash of the compose it deployed; until it passed, every operation that would
 * send bytes to the box refuses. Release always works from the claim alone.
 *
 * Trust boundary: everything the box and the executor's API return is
 * untrusted; attest/ judges the evidence, the claim on disk is ours (0600).
 */
#include "agent/box.h"

#include "agent/config.h"
#include "agent/executors.h"
#include "agent/lease.h"
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

struct box {
	struct box_opts o;
	const struct exec_ops *ops;
	void *priv;
	int inited;
	struct lease_store *store;
	struct lease_handle *claim;
	struct exec_lease lease;
	int created; /* the executor may have a box: release must call destroy */
	int attested;
	char lease_id[LEASE_ID_MAX];
	char key_dir[400], key[512], lease_file[512], sync_state[512];
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

static void phase(struct box *b, const char *what)
{
	double d = since(&b->t0);

	if (b->o.progress)
		fprintf(stderr, "tdx-runner: %-9s done (%.2f s)\n", what, d);
	if (b->o.on_phase)
		b->o.on_phase(b->o.ctx, what, d);
}

void box_phase(struct box *b, const char *what)
{
	phase(b, what);
}

static void notice(struct box *b, const char *line)
{
	fprintf(stderr, "tdx-runner: %s\n", line);
	if (b->o.on_notice)
		b->o.on_notice(b->o.ctx, line);
}

static int canceled(const struct box *b)
{
	return b->o.cancel && *b->o.cancel;
}

void box_state(struct box *b, const char *state)
{
	struct lease_claim c;
	struct tdxr_err e;

	if (b->claim == NULL)
		return;
	c = *lease_handle_claim(b->claim);
	snprintf(c.state, sizeof(c.state), "%s", state);
	snprintf(c.cloud_id, sizeof(c.cloud_id), "%s", b->lease.cloud_id);
	snprintf(c.app_id, sizeof(c.app_id), "%s", b->lease.app_id);
	snprintf(c.gateway, sizeof(c.gateway), "%s", b->lease.gateway);
	if (b->lease.compose_hash[0])
		snprintf(c.compose_hash, sizeof(c.compose_hash), "%s", b->lease.compose_hash);
	if (b->lease.name[0])
		snprintf(c.name, sizeof(c.name), "%s", b->lease.name);
	if (strcmp(state, BOX_STATE_KEPT) != 0)
		c.keep_until = 0;
	if (lease_claim_update(b->claim, &c, &e)) {
		TDXR_WARN("box", "lease %s: cannot record state %s: %s", b->lease_id, state, e.msg);
		return;
	}
	/* Crash tests: stall right after recording a state, so a test can kill -9 us there. */
	{
		const char *stall = getenv("TDXR_TEST_STALL_AT");

		if (stall && strcmp(stall, state) == 0) {
			fprintf(stderr, "tdx-runner: test stall at %s\n", state);
			sleep(120);
		}
	}
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

static int paths_init(struct box *b, struct tdxr_err *err)
{
	const char *sd = b->o.cfg->state_dir;

	if ((size_t)snprintf(b->key_dir, sizeof(b->key_dir), "%s/keys/%s", sd, b->lease_id) >=
	    sizeof(b->key_dir))
		return tdxr_err_set(err, TDXR_EINVAL, "lease: state directory path too long");
	snprintf(b->key, sizeof(b->key), "%s/id_ed25519", b->key_dir);
	snprintf(b->lease_file, sizeof(b->lease_file), "%s/lease.json", b->key_dir);
	snprintf(b->sync_state, sizeof(b->sync_state), "%s/sync-state", b->key_dir);
	return 0;
}

static int box_new(const struct box_opts *o, struct box **out, struct tdxr_err *err)
{
	struct box *b;
	int rc;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	b->o = *o;
	clock_gettime(CLOCK_MONOTONIC, &b->t0);
	b->ops = job_executor(o->executor_kind);
	if (b->ops == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "the %s executor is not available in this build",
		                  config_executor_kind_name((enum config_executor_kind)o->executor_kind));
		goto fail;
	}
	b->priv = calloc(1, b->ops->priv_size ? b->ops->priv_size : 1);
	if (b->priv == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = job_executor_init(b->ops, b->priv, o->cfg, err)))
		goto fail;
	b->inited = 1;
	if ((rc = lease_store_open(o->cfg->state_dir, &b->store, err)))
		goto fail;
	*out = b;
	return 0;
fail:
	box_free(b);
	return rc;
}

/* ---- lease ---- */

static int step_lease(struct box *b, struct tdxr_err *err)
{
	const struct config *cfg = b->o.cfg;
	struct exec_lease_spec spec;
	struct lease_claim c;
	char host[128] = "", pub[PATH_MAX + 4], pubkey[1024] = "";
	FILE *f;
	int rc;

	if ((rc = paths_init(b, err)))
		return rc;
	if (mkdirs(b->key_dir) != 0)
		return tdxr_err_set(err, TDXR_EIO, "lease: cannot create %s", b->key_dir);
	gethostname(host, sizeof(host) - 1);
	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", b->lease_id);
	snprintf(c.executor, sizeof(c.executor), "%s", b->ops->name);
	snprintf(c.state, sizeof(c.state), "creating");
	snprintf(c.name, sizeof(c.name), "tdxr-%s", b->lease_id + 2);
	snprintf(c.owner_host, sizeof(c.owner_host), "%s", host);
	snprintf(c.job, sizeof(c.job), "%s", b->o.job ? b->o.job : "");
	snprintf(c.ssh_key_path, sizeof(c.ssh_key_path), "%s", b->key);
	/* The claim exists before anything is created. */
	if ((rc = lease_claim_create(b->store, &c, &b->claim, err)))
		return rc;
	{
		char *argv[] = { "/usr/bin/ssh-keygen", "-q", "-t",   "ed25519", "-N", "", "-C",
			         b->lease_id,           "-f", b->key, NULL };

		if (run_quiet(argv) != 0)
			return tdxr_err_set(err, TDXR_EIO,
			                    "lease: ssh-keygen could not create the per-lease key");
	}
	snprintf(pub, sizeof(pub), "%s.pub", b->key);
	f = fopen(pub, "re");
	if (f == NULL || fgets(pubkey, sizeof(pubkey), f) == NULL) {
		if (f)
			fclose(f);
		return tdxr_err_set(err, TDXR_EIO, "lease: cannot read %s", pub);
	}
	fclose(f);
	pubkey[strcspn(pubkey, "\n")] = '\0';
	memset(&spec, 0, sizeof(spec));
	spec.lease_id = b->lease_id;
	spec.name = c.name;
	spec.ssh_pubkey = pubkey;
	spec.owner_host = host;
	spec.job_id = c.job;
	spec.compose = NULL; /* the executor's default; its hash is recorded in the lease */
	b->created = 1;      /* from here on, release must call destroy (idempotent) */
	if ((rc = b->ops->create(b->priv, &spec, &b->lease, err)))
		return tdxr_err_prefix(err, "lease");
	box_state(b, BOX_STATE_CREATED);
	if ((rc = b->ops->wait_ready(b->priv, &b->lease, (int)cfg->executor.ready_timeout_s * 1000, err)))
		return tdxr_err_prefix(err, "ready");
	box_state(b, BOX_STATE_READY);
	return 0;
}

static int write_lease_file(struct box *b, const struct exec_endpoint *ep, struct tdxr_err *err)
{
	const struct config *cfg = b->o.cfg;
	json_t *o = json_object();
	char *text;
	int rc;

	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_object_set_new(o, "id", json_string(b->lease_id));
	json_object_set_new(o, "executor", json_string(b->ops->name));
	json_object_set_new(o, "user", json_string(ep->user));
	json_object_set_new(o, "key_file", json_string(b->key));
	if (ep->tls) {
		json_t *t = json_object();

		json_object_set_new(o, "transport", json_string("tls"));
		json_object_set_new(t, "server_name", json_string(ep->server_name));
		json_object_set_new(t, "port", json_integer(ep->port));
		/* executor.gateway: dial another address (SNI and name checks keep the name), extra CA. */
		if (cfg->executor.gateway.connect_to)
			json_object_set_new(t, "connect_to", json_string(cfg->executor.gateway.connect_to));
		if (cfg->executor.gateway.ca_file)
			json_object_set_new(t, "ca_file", json_string(cfg->executor.gateway.ca_file));
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
	rc = tdxr_file_write_atomic(b->lease_file, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

/* A new lease: the endpoint from the executor, the lease file written; a kept one: its lease
 * file as recorded (it carries the pinned host key). Then connect. */
static int step_connect(struct box *b, int fresh, struct tdxr_err *err)
{
	struct exec_endpoint ep;
	const char *wd;
	int rc;

	if (fresh &&
	    ((rc = b->ops->endpoint(b->priv, &b->lease, &ep, err)) || (rc = write_lease_file(b, &ep, err))))
		return tdxr_err_prefix(err, "connect");
	if ((rc = remote_lease_load(b->lease_file, &b->rl, err)) ||
	    (rc = remote_lease_connect(b->rl, 30000, &b->ssh, err)))
		return tdxr_err_prefix(err, "connect");
	wd = remote_lease_work_dir(b->rl);
	snprintf(b->work_dir, sizeof(b->work_dir), "%s", wd ? wd : "");
	return 0;
}

static int read_box_file(const struct exec_lease *l, const char *name, uint8_t **out, size_t *len,
                         struct tdxr_err *err)
{
	char p[PATH_MAX];

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", l->box_dir, name) >= sizeof(p))
		return tdxr_err_set(err, TDXR_EINVAL, "box directory path too long");
	return tdxr_file_read(p, TDXR_CAP_COLLATERAL, out, len, err);
}

/* Intel collateral for the quote's FMSPC and PCK CA, from the configured PCS/PCCS through the
 * on-disk cache (policy.pccs_url, policy.cache_dir or <state_dir>/collateral). */
static int fetch_collateral(struct box *b, const struct attest_evidence *ev, struct attest_collateral **out,
                            struct tdxr_err *err)
{
	const struct config *cfg = b->o.cfg;
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

static int step_gate(struct box *b, struct tdxr_err *err)
{
	const struct config *cfg = b->o.cfg;
	uint8_t nonce[32], rd[64], *body = NULL, *coll_json = NULL, *root = NULL, *compose = NULL;
	size_t blen = 0, clen = 0, rlen = 0, plen = 0;
	struct attest_evidence *ev = NULL;
	struct attest_collateral *coll = NULL;
	struct attest_policy pol;
	struct attest_input in;
	struct attest_bundle_meta meta;
	char nonce_hex[65], hk[REMOTE_FP_MAX + 1], line[512];
	unsigned int mdlen = 0;
	EVP_MD_CTX *md;
	int rc;

	attest_verdict_free(b->verdict);
	b->verdict = NULL;
	free(b->bundle);
	b->bundle = NULL;
	b->attested = 0;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "gate: no randomness for the nonce");
	snprintf(hk, sizeof(hk), "%s", remote_ssh_host_key(b->ssh));
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
	if ((rc = remote_guest_quote(b->ssh, rd, 30000, &body, &blen, err))) {
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
	if (b->ops->caps & EXEC_CAP_SIMULATED) {
		if ((rc = read_box_file(&b->lease, "collateral.json", &coll_json, &clen, err)) ||
		    (rc = attest_collateral_parse(coll_json, clen, &coll, err)) ||
		    (rc = read_box_file(&b->lease, "root.der", &root, &rlen, err)) ||
		    (rc = read_box_file(&b->lease, "app-compose.json", &compose, &plen, err))) {
			tdxr_err_prefix(err, "gate: simulated collateral");
			goto out;
		}
	} else {
		if ((rc = fetch_collateral(b, ev, &coll, err)))
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
	if (b->lease.compose_hash[0])
		snprintf(b->compose_hash, sizeof(b->compose_hash), "%s", b->lease.compose_hash);
	else if (compose)
		attest_compose_hash((const char *)compose, plen, b->compose_hash);
	config_attest_policy(cfg, b->o.executor_kind, &pol);
	pol.expected_report_data = rd;
	pol.expected_app_id = b->lease.app_id;
	pol.expected_compose_hash = b->compose_hash[0] ? b->compose_hash : NULL;
	if (pol.allow_simulated) {
		snprintf(line, sizeof(line),
		         "WARNING: the %s executor's attestation is SIMULATED: no hardware vouches for this "
		         "box (policy allow_simulated)",
		         b->ops->name);
		notice(b, line);
	}
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
	if ((rc = attest_verify(&in, &pol, &b->verdict, err)))
		goto out;
	memset(&meta, 0, sizeof(meta));
	meta.executor = b->ops->name;
	meta.lease_id = b->lease_id;
	meta.nonce_hex = nonce_hex;
	if ((rc = attest_bundle_write(&in, &pol, b->verdict, &meta, &b->bundle, err)))
		goto out;
	if (!b->verdict->ok) {
		rc = tdxr_err_set(err, TDXR_EATTEST, "gate: attestation refused at %s", b->verdict->error);
		goto out;
	}
	b->attested = 1;
	snprintf(line, sizeof(line), "attested (%s): TCB %s, app id %s, compose hash %.16s...",
	         b->verdict->simulated ? "SIMULATED root of trust, not Intel" : "Intel root of trust",
	         attest_tcb_status_name(b->verdict->status), b->verdict->identity.app_id,
	         b->verdict->identity.compose_hash);
	notice(b, line);
	box_state(b, BOX_STATE_ATTESTED);
out:
	free(body);
	free(coll_json);
	free(root);
	free(compose);
	attest_evidence_free(ev);
	attest_collateral_free(coll);
	/* Any failure before a verdict is still a refusal to trust the box. */
	if (rc && rc != TDXR_ECANCELED)
		rc = TDXR_EATTEST;
	return rc;
}

static int connect_and_gate(struct box *b, int fresh, struct tdxr_err *err)
{
	int rc;

	if (canceled(b))
		return tdxr_err_set(err, TDXR_ECANCELED, "canceled");
	if ((rc = step_connect(b, fresh, err)))
		return rc;
	phase(b, "connect");
	if (canceled(b))
		return tdxr_err_set(err, TDXR_ECANCELED, "canceled");
	if ((rc = step_gate(b, err)))
		return rc;
	phase(b, "attest");
	return 0;
}

int box_acquire(const struct box_opts *o, struct box **out, struct tdxr_err *err)
{
	struct box *b;
	int rc;

	*out = NULL;
	if ((rc = box_new(o, &b, err)))
		return rc;
	lease_id_new(b->lease_id);
	rc = step_lease(b, err);
	if (b->claim == NULL) { /* nothing to release */
		box_free(b);
		return rc;
	}
	*out = b;
	if (rc)
		return rc;
	phase(b, "lease");
	return connect_and_gate(b, 1, err);
}

int box_lease_from_claim(const struct config *cfg, const struct lease_claim *c, struct exec_lease *l,
                         struct tdxr_err *err)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->executor, sizeof(l->executor), "%s", c->executor);
	/* Only a local box's id is its lease id. Any other back end's id is unknown until create
	 * answered (a crash in between); its destroy then finds the box by the lease's name. */
	snprintf(l->cloud_id, sizeof(l->cloud_id), "%s",
	         c->cloud_id[0]                      ? c->cloud_id
	         : strcmp(c->executor, "local") == 0 ? c->id
	                                             : "");
	snprintf(l->app_id, sizeof(l->app_id), "%s", c->app_id);
	snprintf(l->name, sizeof(l->name), "%s", c->name);
	snprintf(l->gateway, sizeof(l->gateway), "%s", c->gateway);
	snprintf(l->compose_hash, sizeof(l->compose_hash), "%s", c->compose_hash);
	if (strcmp(c->executor, "local") == 0 &&
	    (size_t)snprintf(l->box_dir, sizeof(l->box_dir), "%s/boxes/%s", cfg->state_dir, l->cloud_id) >=
	        sizeof(l->box_dir))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	return 0;
}

int box_adopt(const struct box_opts *o, const char *lease_id, struct box **out, struct tdxr_err *err)
{
	const struct lease_claim *c;
	struct box_opts oo = *o;
	const struct exec_ops *ops;
	struct lease_store *s = NULL;
	struct lease_handle *h = NULL;
	struct box *b;
	int rc;

	*out = NULL;
	if ((rc = lease_store_open(o->cfg->state_dir, &s, err)))
		return rc;
	/* The handle refers to its store: s lives as long as h (it becomes the box's store). */
	if ((rc = lease_claim_try_adopt(s, lease_id, &h, err))) {
		lease_store_free(s);
		return tdxr_err_prefix(err, "lease %s", lease_id);
	}
	c = lease_handle_claim(h);
	ops = job_executor_by_name(c->executor);
	if (ops == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease %s: no %s executor in this build", lease_id,
		                  c->executor);
		goto fail;
	}
	{
		enum config_executor_kind k;

		if ((rc = config_executor_kind_parse(c->executor, &k, err)))
			goto fail;
		oo.executor_kind = (int)k;
	}
	if ((rc = box_new(&oo, &b, err)))
		goto fail;
	lease_store_free(b->store);
	b->store = s;
	b->claim = h;
	b->created = 1;
	snprintf(b->lease_id, sizeof(b->lease_id), "%s", c->id);
	*out = b;
	if ((rc = paths_init(b, err)) || (rc = box_lease_from_claim(o->cfg, c, &b->lease, err)))
		return rc;
	if (strcmp(c->state, BOX_STATE_KEPT) != 0 && strcmp(c->state, BOX_STATE_ATTESTED) != 0 &&
	    strcmp(c->state, BOX_STATE_SYNCED) != 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "lease %s is in state '%s', not kept: only `tdx-runner reap` or "
		                    "`tdx-runner stop` may act on it",
		                    lease_id, c->state);
	box_state(b, BOX_STATE_READY);
	return connect_and_gate(b, 0, err);
fail:
	lease_handle_close(h);
	lease_store_free(s);
	return rc;
}

/* ---- the reaper ---- */

/* Removes a lease's key directory (<state_dir>/keys/<id>) and the files paths_init names. */
static void key_dir_remove(const char *dir)
{
	static const char *const files[] = { "id_ed25519", "id_ed25519.pub", "lease.json", "sync-state" };
	char p[PATH_MAX + 32];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* Destroys the box of a claim we hold and removes the claim and its keys; the handle is
 * consumed. On failure the claim stays for a later reap. */
static int destroy_claimed(const struct config *cfg, const struct exec_ops *ops, struct lease_handle *h,
                           struct tdxr_err *err)
{
	const struct lease_claim *c = lease_handle_claim(h);
	struct exec_lease l;
	void *priv;
	char kd[PATH_MAX];
	int rc;

	priv = calloc(1, ops->priv_size ? ops->priv_size : 1);
	if (priv == NULL) {
		lease_handle_close(h);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	if ((rc = job_executor_init(ops, priv, cfg, err))) {
		free(priv);
		lease_handle_close(h);
		return rc;
	}
	rc = box_lease_from_claim(cfg, c, &l, err);
	if (!rc)
		rc = ops->destroy(priv, &l, err);
	ops->dispose(priv);
	free(priv);
	if (rc) {
		lease_handle_close(h);
		return rc;
	}
	/* The per-lease key directory goes with it. */
	if ((size_t)snprintf(kd, sizeof(kd), "%s/keys/%s", cfg->state_dir, c->id) < sizeof(kd))
		key_dir_remove(kd);
	lease_claim_remove(h, NULL);
	return 0;
}

int box_stop(const struct config *cfg, const char *lease_id, struct tdxr_err *err)
{
	const struct exec_ops *ops;
	struct lease_store *s = NULL;
	struct lease_handle *h = NULL;
	int rc;

	if ((rc = lease_store_open(cfg->state_dir, &s, err)))
		return rc;
	if ((rc = lease_claim_try_adopt(s, lease_id, &h, err))) {
		lease_store_free(s);
		return tdxr_err_prefix(err, "lease %s", lease_id);
	}
	ops = job_executor_by_name(lease_handle_claim(h)->executor);
	if (ops == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease %s: no %s executor in this build", lease_id,
		                  lease_handle_claim(h)->executor);
		lease_handle_close(h);
	} else {
		struct lease_claim c = *lease_handle_claim(h);
		struct tdxr_err ue;

		/* From here on the box is being released: if destroy fails, `reap` (which skips
		 * kept claims until keep_until) must retry it at once. */
		snprintf(c.state, sizeof(c.state), "%s", BOX_STATE_RELEASING);
		c.keep_until = 0;
		if (lease_claim_update(h, &c, &ue))
			TDXR_WARN("box", "lease %s: cannot record state releasing: %s", lease_id, ue.msg);
		if ((rc = destroy_claimed(cfg, ops, h, err)))
			tdxr_err_prefix(err, "lease %s (claim kept for tdx-runner reap)", lease_id);
	}
	lease_store_free(s);
	return rc;
}

int box_reap(const struct config *cfg, const struct box_reap_opts *ro, struct box_reap_result *res,
             struct tdxr_err *err)
{
	struct lease_store *s = NULL;
	struct lease_claim *v = NULL;
	int *live = NULL, rc;
	size_t n = 0, i;
	int64_t now = (int64_t)time(NULL);
	char line[1024];

	memset(res, 0, sizeof(*res));
	if ((rc = lease_store_open(cfg->state_dir, &s, err)) ||
	    (rc = lease_store_list(s, &v, &live, &n, err)))
		goto out;
	for (i = 0; i < n; i++) {
		const struct exec_ops *ops = job_executor_by_name(v[i].executor);
		struct lease_handle *h = NULL;
		struct tdxr_err e;

		if (live[i])
			continue;
		if (strcmp(v[i].state, BOX_STATE_KEPT) == 0 && !ro->all &&
		    (v[i].keep_until == 0 || v[i].keep_until > now)) {
			res->kept++;
			continue;
		}
		if (ro->dry_run) {
			snprintf(line, sizeof(line), "would reap %s (%s, state %s)", v[i].id, v[i].executor,
			         v[i].state);
			if (ro->report)
				ro->report(ro->ctx, line);
			continue;
		}
		if (ops == NULL) {
			snprintf(line, sizeof(line), "%s: no %s executor in this build (claim kept)", v[i].id,
			         v[i].executor);
			if (ro->report)
				ro->report(ro->ctx, line);
			res->failed++;
			continue;
		}
		if (lease_claim_try_adopt(s, v[i].id, &h, &e))
			continue; /* taken or released meanwhile */
		if (destroy_claimed(cfg, ops, h, &e)) {
			snprintf(line, sizeof(line), "%s: %s (claim kept)", v[i].id, e.msg);
			if (ro->report)
				ro->report(ro->ctx, line);
			TDXR_WARN("reap", "%s", line);
			res->failed++;
		} else {
			snprintf(line, sizeof(line), "reaped %s (%s)", v[i].id, v[i].executor);
			if (ro->report)
				ro->report(ro->ctx, line);
			res->reaped++;
		}
	}
out:
	free(v);
	free(live);
	lease_store_free(s);
	return rc;
}

/* ---- using the box ---- */

static int gate_passed(const struct box *b, const char *what, struct tdxr_err *err)
{
	if (!b->attested || b->ssh == NULL)
		return tdxr_err_set(err, TDXR_EATTEST, "%s: refused: the box has not passed the gate", what);
	return 0;
}

static void sync_line(void *ctx, enum remote_sync_stream s, const char *line, size_t len)
{
	(void)ctx;
	if (s == REMOTE_SYNC_STDERR)
		TDXR_WARN("sync", "%.*s", (int)len, line);
}

static int sync_opts(struct box *b, struct remote_sync_opts *so, const char **rsh, char **self,
                     struct tdxr_err *err)
{
	int rc = remote_sync_self_exe(self, err);

	if (rc)
		return rc;
	rsh[0] = *self;
	rsh[1] = "rsh";
	rsh[2] = b->lease_file;
	rsh[3] = NULL;
	memset(so, 0, sizeof(*so));
	so->rsh = rsh;
	so->host = b->lease_id;
	so->dest = b->work_dir;
	so->cancel = b->o.cancel;
	so->on_line = sync_line;
	so->state_file = b->sync_state;
	so->ssh = b->ssh; /* rsync runs as channels of the attested session (the multiplexer) */
	return 0;
}

int box_sync_manifest(struct box *b, const char *dir, const struct remote_sync_manifest *m,
                      struct tdxr_err *err)
{
	struct remote_sync_opts so;
	struct remote_sync_result res;
	const char *rsh[4];
	char *self = NULL;
	int rc;

	if ((rc = gate_passed(b, "sync", err)))
		return rc;
	if ((rc = sync_opts(b, &so, rsh, &self, err)) == 0)
		rc = remote_sync_push(dir, m, &so, &res, err);
	free(self);
	if (rc)
		return tdxr_err_prefix(err, "sync");
	box_state(b, BOX_STATE_SYNCED);
	if (b->o.progress)
		fprintf(stderr, "tdx-runner: synced %zu files (%zu transferred)\n",
		        remote_sync_manifest_count(m), res.transferred);
	phase(b, "sync");
	return 0;
}

int box_sync_worktree(struct box *b, const char *repo_dir, struct tdxr_err *err)
{
	struct remote_sync_opts so;
	struct remote_sync_result res;
	const char *rsh[4];
	char *self = NULL;
	size_t count = 0;
	int rc;

	if ((rc = gate_passed(b, "sync", err)))
		return rc;
	/* Manifest and push in one call: the first rsync channel's login shell starts in the box
	 * while the working tree is scanned here. */
	if ((rc = sync_opts(b, &so, rsh, &self, err)) == 0)
		rc = remote_sync_push_worktree(repo_dir, &so, &res, &count, err);
	free(self);
	if (rc)
		return tdxr_err_prefix(err, "sync");
	box_state(b, BOX_STATE_SYNCED);
	if (b->o.progress)
		fprintf(stderr, "tdx-runner: synced %zu files (%zu transferred)\n", count, res.transferred);
	phase(b, "sync");
	return 0;
}

int box_exec(struct box *b, const struct remote_exec_opts *eo, struct remote_exec_result *r,
             struct tdxr_err *err)
{
	int rc;

	if ((rc = gate_passed(b, "run", err)))
		return rc;
	return remote_exec_run(b->ssh, eo, r, err);
}

int box_pull(struct box *b, const char *const *paths, size_t n, const char *local_dir, struct tdxr_err *err)
{
	struct remote_sync_opts so;
	const char *rsh[4];
	char *self = NULL;
	int rc;

	if (n == 0)
		return 0;
	if ((rc = gate_passed(b, "collect", err)))
		return rc;
	box_state(b, BOX_STATE_COLLECTING);
	if ((rc = sync_opts(b, &so, rsh, &self, err)) == 0)
		rc = remote_sync_pull(&so, paths, n, local_dir, err);
	free(self);
	if (rc)
		return tdxr_err_prefix(err, "collect");
	phase(b, "collect");
	return 0;
}

/* ---- the end ---- */

static void disconnect(struct box *b)
{
	remote_ssh_free(b->ssh);
	b->ssh = NULL;
	remote_lease_free(b->rl);
	b->rl = NULL;
	b->attested = 0;
}

int box_keep(struct box *b, int64_t until, struct tdxr_err *err)
{
	struct lease_claim c;
	int rc;

	disconnect(b);
	if (b->claim == NULL)
		return 0;
	c = *lease_handle_claim(b->claim);
	snprintf(c.state, sizeof(c.state), "%s", BOX_STATE_KEPT);
	c.keep_until = until;
	rc = lease_claim_update(b->claim, &c, err);
	lease_handle_close(b->claim);
	b->claim = NULL;
	return rc;
}

int box_release(struct box *b, struct tdxr_err *err)
{
	struct tdxr_err e;
	int rc;

	disconnect(b);
	if (b->claim == NULL)
		return 0;
	box_state(b, BOX_STATE_RELEASING);
	if (b->created && (rc = b->ops->destroy(b->priv, &b->lease, &e))) {
		tdxr_err_set(err, rc, "release: %s (the claim stays for tdx-runner reap)", e.msg);
		lease_handle_close(b->claim);
		b->claim = NULL;
		return rc;
	}
	if (lease_claim_remove(b->claim, &e))
		TDXR_WARN("box", "lease %s: %s", b->lease_id, e.msg);
	b->claim = NULL;
	if (b->key_dir[0])
		key_dir_remove(b->key_dir);
	phase(b, "release");
	return 0;
}

void box_free(struct box *b)
{
	if (b == NULL)
		return;
	disconnect(b);
	if (b->claim)
		lease_handle_close(b->claim); /* not released: the reaper finds it */
	attest_verdict_free(b->verdict);
	free(b->bundle);
	lease_store_free(b->store);
	if (b->ops && b->inited)
		b->ops->dispose(b->priv);
	free(b->priv);
	free(b);
}

const char *box_lease_id(const struct box *b)
{
	return b->lease_id;
}

const char *box_executor_name(const struct box *b)
{
	return b->ops->name;
}

const char *box_work_dir(const struct box *b)
{
	return b->work_dir;
}

const char *box_lease_file(const struct box *b)
{
	return b->lease_file;
}

const char *box_bundle(const struct box *b)
{
	return b->bundle;
}

const struct attest_verdict *box_verdict(const struct box *b)
{
	return b->verdict;
}

int box_attested(const struct box *b)
{
	return b->attested;
}

struct remote_ssh *box_ssh(struct box *b)
{
	return b->ssh;
}
