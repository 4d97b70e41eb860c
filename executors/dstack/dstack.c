/*
 * dstack.c - the `dstack` executor: CVMs on the user's own TDX host through the
 * dstack VMM's JSON-over-HTTP API (`POST <vmm_url>/prpc/<Method>?json`, service
 * `Vmm` in Dstack-TEE/dstack dstack/vmm/rpc/proto/vmm_rpc.proto; CONTRACTS.md §3).
 *
 * create: build the app-compose (or take one verbatim), app id = first 20 bytes of
 * its SHA-256 (as vmm-cli.py computes it), cross-check the hash with
 * GetComposeHash, seal DSTACK_AUTHORIZED_KEYS to GetAppEnvEncryptPubKey(app id),
 * CreateVm; labels (owner host, job, lease) travel in user_config. wait_ready
 * polls GetInfo until status "running" and boot_progress "done". destroy is
 * RemoveVm after an ownership check (the VM's name must be the lease's); gone is
 * success only when neither GetInfo (by the recorded id) nor Status (by the
 * lease's name: a claim may predate CreateVm's answer) knows the VM, or it is
 * "removing" (which the VMM persists and resumes itself).
 *
 * Trust: the VMM is the user's own service but its answers are still parsed as
 * untrusted (size caps, type checks); nothing it says is trusted for attestation
 * - the gate verifies the box. Every call is bounded (connect + total timeout);
 * transport errors and 5xx are retried with backoff, except CreateVm, which is
 * retried only after Status shows no VM of that name (no duplicate boxes).
 */
#include "executors/executor.h"

#include "common/buf.h"
#include "common/util.h"
#include "executors/common/envcrypt.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DSTACK_BODY_CAP (4u * 1024u * 1024u) /* one VMM answer */
#define DSTACK_NAME_PREFIX "tdxr-"           /* names of boxes this agent creates */
#define DSTACK_USER "root"
#define DSTACK_WORK_DIR "/var/volatile/tdxr-work"
#define DSTACK_GATEWAY_PORT 443u
#define DSTACK_LIST_PAGES 100u
#define DSTACK_PAGE_SIZE 100u

static const char DEFAULT_DOCKER_COMPOSE[] = "services: {}\n";

struct dstack_priv {
	char url[512]; /* without trailing '/' */
	char image[128];
	char gateway[256]; /* "" = ask GetMeta at create */
	char *compose;     /* executor.dstack.compose_file's text, or NULL */
	long call_ms;      /* bound of one HTTP call */
	unsigned poll_ms;
	unsigned retries;
	unsigned remove_ms; /* how long destroy waits for the VMM to report the VM gone */
};

struct instance_type {
	const char *name;
	unsigned vcpu, memory_mb, disk_gb;
};

static const struct instance_type TYPES[] = {
	{ "tdx.small", 1, 2048, 20 },
	{ "tdx.medium", 2, 4096, 40 },
	{ "tdx.large", 4, 8192, 80 },
	{ "tdx.xlarge", 8, 16384, 160 },
};

/* ---- small helpers ---- */

static int cpy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Printable ASCII copy of untrusted text for an error message. */
static void clean(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	for (; src && *src && i + 1 < cap; src++)
		dst[i++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
	dst[i] = '\0';
}

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- one VMM call ---- */

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
	struct tdxr_buf *b = ud;

	if (nm != 0 && sz > SIZE_MAX / nm)
		return 0;
	if (tdxr_buf_append(b, p, sz * nm, NULL) != 0)
		return 0; /* over the cap: curl aborts with CURLE_WRITE_ERROR */
	return sz * nm;
}

/* One POST; *status = HTTP status, 0 on a transport error (message in err). */
static int vmm_post(const struct dstack_priv *p, const char *method, const char *body, long *status,
                    struct tdxr_buf *resp, struct tdxr_err *err)
{
	char url[640], ebuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr = NULL;
	CURL *c = NULL;
	CURLcode cc;
	int rc = 0, ok = 1;

	*status = 0;
	tdxr_buf_reset(resp);
	if ((size_t)snprintf(url, sizeof(url), "%s/prpc/%s?json", p->url, method) >= sizeof(url))
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: VMM URL too long");
	c = curl_easy_init();
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	if (c == NULL || hdr == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	ok &= curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, p->call_ms < 10000 ? p->call_ms : 10000L) ==
	      CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->call_ms) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DSTACK_BODY_CAP) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_USERAGENT, "tdx-runner") == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl_easy_setopt(c, CURLOPT_WRITEDATA, resp) == CURLE_OK;
	if (!ok) {
		rc = tdxr_err_set(err, TDXR_ERROR, "dstack: %s: cannot set up libcurl", method);
		goto out;
	}
	cc = curl_easy_perform(c);
	if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
		rc = tdxr_err_set(err, TDXR_ETOOBIG, "dstack: %s: answer over %u bytes", method,
		                  DSTACK_BODY_CAP);
		goto out;
	}
	if (cc != CURLE_OK) {
		rc = tdxr_err_set(err, cc == CURLE_OPERATION_TIMEDOUT ? TDXR_ETIMEOUT : TDXR_EIO,
		                  "dstack: %s: %s", method, ebuf[0] ? ebuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
out:
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return rc;
}

/*
 * Calls method with req (NULL = {}); *out = the answer object. retry: transport
 * errors and 5xx are retried (p->retries times, backoff). A 4xx names the VMM's
 * {"error": ...} message.
 */
static int vmm_call(const struct dstack_priv *p, const char *method, json_t *req, int retry, json_t **out,
                    struct tdxr_err *err)
{
	struct tdxr_buf resp;
	json_error_t jerr;
	char *body = NULL, msg[160];
	json_t *j = NULL;
	unsigned attempt, backoff = 200;
	long status = 0;
	int rc = 0;

	*out = NULL;
	tdxr_buf_init(&resp, DSTACK_BODY_CAP);
	body = req ? json_dumps(req, JSON_COMPACT) : strdup("{}");
	if (body == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (attempt = 0;; attempt++) {
		rc = vmm_post(p, method, body, &status, &resp, err);
		if (rc == TDXR_ETOOBIG || rc == TDXR_ENOMEM || rc == TDXR_EINVAL)
			goto out;
		if (rc == 0 && status < 500)
			break;
		if (rc == 0)
			rc = tdxr_err_set(err, TDXR_EIO, "dstack: %s: VMM answered HTTP %ld", method, status);
		if (!retry || attempt >= p->retries)
			goto out;
		sleep_ms(backoff);
		backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
	}
	if (resp.len > 0)
		j = json_loadb((const char *)resp.data, resp.len, JSON_REJECT_DUPLICATES, &jerr);
	if (status != 200) {
		clean(msg, sizeof(msg), json_is_object(j) ? jstr(j, "error") : NULL);
		rc = tdxr_err_set(err, status == 401 || status == 403 ? TDXR_EAUTH : TDXR_EINVAL,
		                  "dstack: %s refused (HTTP %ld): %s", method, status,
		                  msg[0] ? msg : "no detail");
		goto out;
	}
	if (!json_is_object(j)) {
		rc = tdxr_err_set(err, TDXR_EIO, "dstack: %s: the VMM's answer is not a JSON object", method);
		goto out;
	}
	*out = j;
	j = NULL;
	rc = 0;
out:
	json_decref(j);
	free(body);
	tdxr_buf_dispose(&resp);
	return rc;
}

/* GetInfo: *found; *info (borrowed from *ans, which the caller frees) when found. */
static int vmm_get_info(const struct dstack_priv *p, const char *id, json_t **ans, int *found, json_t **info,
                        struct tdxr_err *err)
{
	json_t *req = json_pack("{s:s}", "id", id);
	int rc;

	*ans = NULL;
	*found = 0;
	*info = NULL;
	if (req == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = vmm_call(p, "GetInfo", req, 1, ans, err);
	json_decref(req);
	if (rc)
		return rc;
	*found = json_is_true(json_object_get(*ans, "found"));
	*info = json_object_get(*ans, "info");
	if (*found && !json_is_object(*info)) {
		json_decref(*ans);
		*ans = NULL;
		*found = 0;
		return tdxr_err_set(err, TDXR_EIO, "dstack: GetInfo: found without info for VM %s", id);
	}
	return 0;
}

/* ---- init / dispose ---- */

static int get_uint(json_t *o, const char *key, unsigned long max, unsigned long *v, struct tdxr_err *err)
{
	json_t *x = json_object_get(o, key);

	if (x == NULL)
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < 0 || (unsigned long)json_integer_value(x) > max)
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: config %s must be an integer 0..%lu", key,
		                    max);
	*v = (unsigned long)json_integer_value(x);
	return 0;
}

/* The timing keys, from init's config or TDXR_TEST_DSTACK_TUNING. */
static int tuning_apply(struct dstack_priv *p, json_t *o, struct tdxr_err *err)
{
	unsigned long v;
	int rc;

	v = (unsigned long)p->call_ms;
	if ((rc = get_uint(o, "call_timeout_ms", 600000, &v, err)))
		return rc;
	p->call_ms = v < 100 ? 100 : (long)v;
	v = p->poll_ms;
	if ((rc = get_uint(o, "poll_ms", 60000, &v, err)))
		return rc;
	p->poll_ms = v < 10 ? 10 : (unsigned)v;
	v = p->retries;
	if ((rc = get_uint(o, "retries", 10, &v, err)))
		return rc;
	p->retries = (unsigned)v;
	v = p->remove_ms;
	if ((rc = get_uint(o, "remove_wait_ms", 3600000, &v, err)))
		return rc;
	p->remove_ms = (unsigned)v;
	return 0;
}

/*
 * Test-only: TDXR_TEST_DSTACK_TUNING, a JSON object with call_timeout_ms, poll_ms,
 * retries and/or remove_wait_ms, overrides the timings for `tdx-runner run` in
 * tests (the config file does not expose them; end-to-end fault tests need short
 * ones). Only timings: not where the agent connects.
 */
static int tuning_env(struct dstack_priv *p, struct tdxr_err *err)
{
	static const char *const keys[] = { "call_timeout_ms", "poll_ms", "retries", "remove_wait_ms", NULL };
	const char *env = getenv("TDXR_TEST_DSTACK_TUNING"), *key;
	json_error_t jerr;
	json_t *o, *val;
	size_t i;
	int rc = 0;

	if (env == NULL || env[0] == '\0')
		return 0;
	o = json_loads(env, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		json_decref(o);
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: TDXR_TEST_DSTACK_TUNING is not a JSON object");
	}
	json_object_foreach(o, key, val)
	{
		for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
			;
		if (keys[i] == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "dstack: TDXR_TEST_DSTACK_TUNING: unknown key '%.40s'", key);
			break;
		}
	}
	if (rc == 0)
		rc = tuning_apply(p, o, err);
	json_decref(o);
	return rc;
}

static int dstack_init(void *vp, const char *state_dir, const char *config_json, struct tdxr_err *err)
{
	static const char *const keys[] = { "vmm_url",      "image",           "gateway_domain",
		                            "compose_file", "call_timeout_ms", "poll_ms",
		                            "retries",      "remove_wait_ms",  NULL };
	struct dstack_priv *p = vp;
	json_error_t jerr;
	const char *key, *url, *image, *gw, *cf;
	json_t *o, *val;
	uint8_t *text = NULL;
	size_t len = 0, i, n;
	int rc = 0;

	(void)state_dir;
	memset(p, 0, sizeof(*p));
	p->call_ms = 30000;
	p->poll_ms = 2000;
	p->retries = 3;
	p->remove_ms = 60000;
	o = json_loads(config_json ? config_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "dstack: executor configuration is not a JSON object");
		goto out;
	}
	json_object_foreach(o, key, val)
	{
		for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
			;
		if (keys[i] == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "dstack: unknown configuration key '%.40s'", key);
			goto out;
		}
	}
	url = jstr(o, "vmm_url");
	image = jstr(o, "image");
	gw = jstr(o, "gateway_domain");
	cf = jstr(o, "compose_file");
	if (url == NULL || image == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "dstack: init got no vmm_url/image: set executor.dstack.vmm_url and "
		                  "executor.dstack.image (and the agent must pass that section to init)");
		goto out;
	}
	if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
	    cpy(p->url, sizeof(p->url), url) || cpy(p->image, sizeof(p->image), image) || image[0] == '\0' ||
	    (gw && cpy(p->gateway, sizeof(p->gateway), gw))) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "dstack: vmm_url must be http(s)://..., image non-empty, "
		                  "and both (and gateway_domain) of sane length");
		goto out;
	}
	n = strlen(p->url);
	while (n > 0 && p->url[n - 1] == '/')
		p->url[--n] = '\0';
	if (cf) {
		if ((rc = tdxr_file_read(cf, TDXR_CAP_CONFIG, &text, &len, err))) {
			tdxr_err_prefix(err, "dstack: compose_file");
			goto out;
		}
		if (memchr(text, '\0', len) || (p->compose = malloc(len + 1)) == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "dstack: compose_file %s is not text", cf);
			goto out;
		}
		memcpy(p->compose, text, len);
		p->compose[len] = '\0';
	}
	if ((rc = tuning_apply(p, o, err)) == 0)
		rc = tuning_env(p, err);
out:
	free(text);
	json_decref(o);
	if (rc) {
		free(p->compose);
		p->compose = NULL;
	}
	return rc;
}

static void dstack_dispose(void *vp)
{
	struct dstack_priv *p = vp;

	if (p == NULL)
		return;
	free(p->compose);
	p->compose = NULL;
}

/* ---- create ---- */

/* The app-compose text: `src` verbatim when it already is one, else a dev-image wrapper. */
static int compose_build(const char *name, const char *src, char **out, struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *j, *o = NULL;

	*out = NULL;
	j = json_loads(src, JSON_REJECT_DUPLICATES, &jerr);
	if (json_is_object(j) && json_object_get(j, "manifest_version")) {
		json_decref(j);
		*out = strdup(src);
		return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	json_decref(j);
	o = json_pack("{s:i,s:s,s:s,s:s,s:b,s:b,s:b,s:s,s:b,s:b,s:[s],s:b,s:b}", "manifest_version", 2,
	              "name", name, "runner", "docker-compose", "docker_compose_file", src, "kms_enabled", 1,
	              "gateway_enabled", 1, "local_key_provider_enabled", 0, "key_provider_id", "",
	              "public_logs", 0, "public_sysinfo", 0, "allowed_envs", "DSTACK_AUTHORIZED_KEYS",
	              "no_instance_id", 0, "secure_time", 0);
	if (o != NULL)
		*out = json_dumps(o, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

static int find_by_name(const struct dstack_priv *p, const char *name, char *id, size_t cap, int *n,
                        struct tdxr_err *err)
{
	json_t *req = json_pack("{s:s,s:b}", "keyword", name, "brief", 1), *ans = NULL, *vm;
	size_t i;
	int rc;

	*n = 0;
	if (req == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = vmm_call(p, "Status", req, 1, &ans, err);
	json_decref(req);
	if (rc)
		return rc;
	json_array_foreach(json_object_get(ans, "vms"), i, vm)
	{
		const char *nm = jstr(vm, "name"), *vid = jstr(vm, "id");

		if (nm && vid && strcmp(nm, name) == 0) {
			if (cpy(id, cap, vid) == 0)
				(*n)++;
		}
	}
	json_decref(ans);
	return 0;
}

static int dstack_create(void *vp, const struct exec_lease_spec *spec, struct exec_lease *lease,
                         struct tdxr_err *err)
{
	struct dstack_priv *p = vp;
	const struct instance_type *t = &TYPES[0];
	char *compose = NULL, *env_hex = NULL, *user_config = NULL, hash[65], app_id[41], id[128] = "";
	char gateway[256];
	uint8_t md[32];
	json_t *req = NULL, *ans = NULL, *labels = NULL;
	const char *h, *pk;
	unsigned attempt;
	size_t i;
	int rc = 0, n;

	memset(lease, 0, sizeof(*lease));
	if (spec->name == NULL || strncmp(spec->name, DSTACK_NAME_PREFIX, strlen(DSTACK_NAME_PREFIX)) != 0 ||
	    strlen(spec->name) >= sizeof(lease->name))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "dstack: box name must start with " DSTACK_NAME_PREFIX
		                    " and fit %zu bytes",
		                    sizeof(lease->name) - 1);
	if (spec->instance_type) {
		for (i = 0;
		     i < sizeof(TYPES) / sizeof(TYPES[0]) && strcmp(TYPES[i].name, spec->instance_type); i++)
			;
		if (i == sizeof(TYPES) / sizeof(TYPES[0]))
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "dstack: unknown instance type '%.40s' (tdx.small, tdx.medium, "
			                    "tdx.large, tdx.xlarge)",
			                    spec->instance_type);
		t = &TYPES[i];
	}
	/* The gateway domain first: without it the box is unreachable, so fail before creating. */
	if (cpy(gateway, sizeof(gateway), p->gateway) != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: gateway domain too long");
	if (gateway[0] == '\0') {
		if ((rc = vmm_call(p, "GetMeta", NULL, 1, &ans, err)))
			goto out;
		h = jstr(json_object_get(ans, "gateway"), "base_domain");
		if (h == NULL || h[0] == '\0' || cpy(gateway, sizeof(gateway), h) != 0) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "dstack: the VMM has no gateway base_domain; set "
			                  "executor.dstack.gateway_domain");
			goto out;
		}
		json_decref(ans);
		ans = NULL;
	}
	if ((rc = compose_build(spec->name,
	                        spec->compose ? spec->compose
	                        : p->compose  ? p->compose
	                                      : DEFAULT_DOCKER_COMPOSE,
	                        &compose, err)))
		goto out;
	if (EVP_Digest(compose, strlen(compose), md, NULL, EVP_sha256(), NULL) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "dstack: SHA-256 failed");
		goto out;
	}
	tdxr_hex_encode(md, 32, hash);
	memcpy(app_id, hash, 40);
	app_id[40] = '\0';
	labels = json_pack(
	    "{s:{s:s,s:s,s:s}}", "tdx_runner", "lease_id", spec->lease_id ? spec->lease_id : "", "owner_host",
	    spec->owner_host ? spec->owner_host : "", "job_id", spec->job_id ? spec->job_id : "");
	user_config = labels ? json_dumps(labels, JSON_COMPACT) : NULL;
	req = json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:s,s:s,s:[],s:b,s:b,s:b,s:b}", "name", spec->name, "image",
	                p->image, "compose_file", compose, "vcpu", (int)t->vcpu, "memory", (int)t->memory_mb,
	                "disk_size", (int)t->disk_gb, "app_id", app_id, "user_config",
	                user_config ? user_config : "", "ports", "hugepages", 0, "pin_numa", 0, "stopped", 0,
	                "no_tee", 0);
	if (user_config == NULL || req == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	/* Drift check: the VMM must hash the compose as we do (the gate expects our hash). */
	if ((rc = vmm_call(p, "GetComposeHash", req, 1, &ans, err)))
		goto out;
	h = jstr(ans, "hash");
	if (h && strncmp(h, "0x", 2) == 0)
		h += 2;
	if (h == NULL || strlen(h) != 64 || CRYPTO_memcmp(h, hash, 64) != 0) {
		char got[80];

		clean(got, sizeof(got), h);
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "dstack: GetComposeHash: the VMM hashes the compose as '%s', "
		                  "we computed %s",
		                  got, hash);
		goto out;
	}
	json_decref(ans);
	ans = NULL;
	if (spec->ssh_pubkey && spec->ssh_pubkey[0]) {
		struct exec_env_var var = { "DSTACK_AUTHORIZED_KEYS", spec->ssh_pubkey };
		json_t *kreq = json_pack("{s:s}", "app_id", app_id);

		if (kreq == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		rc = vmm_call(p, "GetAppEnvEncryptPubKey", kreq, 1, &ans, err);
		json_decref(kreq);
		if (rc)
			goto out;
		pk = jstr(ans, "public_key");
		if (pk == NULL) {
			rc = tdxr_err_set(err, TDXR_EIO, "dstack: GetAppEnvEncryptPubKey: no public_key");
			goto out;
		}
		if ((rc = exec_env_encrypt(pk, &var, 1, &env_hex, err))) {
			tdxr_err_prefix(err, "dstack: GetAppEnvEncryptPubKey key");
			goto out;
		}
		if (json_object_set_new(req, "encrypted_env", json_string(env_hex)) != 0) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		json_decref(ans);
		ans = NULL;
	}
	/* CreateVm is not idempotent: retry only when Status shows no VM of this name. */
	for (attempt = 0;; attempt++) {
		rc = vmm_call(p, "CreateVm", req, 0, &ans, err);
		if (rc == 0)
			break;
		if (rc != TDXR_EIO && rc != TDXR_ETIMEOUT)
			goto out;
		{
			struct tdxr_err e2 = { 0, "" };

			if (find_by_name(p, spec->name, id, sizeof(id), &n, &e2) == 0 && n == 1) {
				rc = 0; /* the VMM did create it: adopt */
				break;
			}
		}
		if (attempt >= p->retries)
			goto out;
		sleep_ms(200u << (attempt < 3 ? attempt : 3));
	}
	if (ans) {
		h = jstr(ans, "id");
		if (h == NULL || h[0] == '\0' || cpy(id, sizeof(id), h) != 0) {
			rc = tdxr_err_set(err, TDXR_EIO, "dstack: CreateVm: no usable id in the answer");
			goto out;
		}
	}
	snprintf(lease->executor, sizeof(lease->executor), "dstack");
	memcpy(lease->cloud_id, id, strlen(id) + 1);
	memcpy(lease->app_id, app_id, sizeof(app_id));
	memcpy(lease->name, spec->name, strlen(spec->name) + 1);
	memcpy(lease->gateway, gateway, strlen(gateway) + 1);
	memcpy(lease->compose_hash, hash, sizeof(hash));
out:
	if (env_hex) {
		OPENSSL_cleanse(env_hex, strlen(env_hex));
		free(env_hex);
	}
	free(user_config);
	free(compose);
	json_decref(labels);
	json_decref(req);
	json_decref(ans);
	if (rc)
		memset(lease, 0, sizeof(*lease));
	return rc;
}

/* ---- wait_ready / endpoint ---- */

static int dstack_wait_ready(void *vp, struct exec_lease *lease, int deadline_ms, struct tdxr_err *err)
{
	struct dstack_priv *p = vp;
	long end = now_ms() + (deadline_ms > 0 ? deadline_ms : 0);
	char st[64] = "", boot[96] = "";
	json_t *ans = NULL, *info;
	int rc, found;

	for (;;) {
		const char *s, *b, *be, *aid;

		if ((rc = vmm_get_info(p, lease->cloud_id, &ans, &found, &info, err))) {
			tdxr_err_prefix(err, "wait_ready");
			return rc;
		}
		if (!found) {
			json_decref(ans);
			return tdxr_err_set(err, TDXR_ENOTFOUND, "dstack: wait_ready: VM %s is gone",
			                    lease->cloud_id);
		}
		s = jstr(info, "status");
		b = jstr(info, "boot_progress");
		be = jstr(info, "boot_error");
		aid = jstr(info, "app_id");
		clean(st, sizeof(st), s ? s : "");
		clean(boot, sizeof(boot), b ? b : "");
		if (aid && aid[0] && strcmp(aid, lease->app_id) != 0) {
			char got[80];

			clean(got, sizeof(got), aid);
			json_decref(ans);
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "dstack: wait_ready: VM %s has app id %s, expected %s",
			                    lease->cloud_id, got, lease->app_id);
		}
		if (be && be[0]) {
			char e[120];

			clean(e, sizeof(e), be);
			json_decref(ans);
			return tdxr_err_set(err, TDXR_EIO, "dstack: wait_ready: VM %s failed to boot: %s",
			                    lease->cloud_id, e);
		}
		json_decref(ans);
		ans = NULL;
		if (strcmp(st, "running") == 0 && (strcmp(boot, "done") == 0 || strcmp(boot, "running") == 0))
			return 0;
		if (strcmp(st, "exited") == 0 || strcmp(st, "stopped") == 0 || strcmp(st, "removing") == 0)
			return tdxr_err_set(err, TDXR_EIO, "dstack: wait_ready: VM %s is %s", lease->cloud_id,
			                    st);
		if (now_ms() >= end)
			return tdxr_err_set(
			    err, TDXR_ETIMEOUT,
			    "dstack: wait_ready: VM %s not ready after %d ms (status '%s', boot '%s')",
			    lease->cloud_id, deadline_ms, st, boot);
		sleep_ms(p->poll_ms);
	}
}

static int dstack_endpoint(void *vp, const struct exec_lease *lease, struct exec_endpoint *ep,
                           struct tdxr_err *err)
{
	(void)vp;
	memset(ep, 0, sizeof(*ep));
	if (lease->app_id[0] == '\0' || lease->gateway[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: lease %s has no app id or gateway domain",
		                    lease->cloud_id);
	if ((size_t)snprintf(ep->server_name, sizeof(ep->server_name), "%s-22.%s", lease->app_id,
	                     lease->gateway) >= sizeof(ep->server_name)) {
		memset(ep, 0, sizeof(*ep));
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: gateway name too long");
	}
	ep->tls = 1;
	ep->port = DSTACK_GATEWAY_PORT;
	snprintf(ep->user, sizeof(ep->user), DSTACK_USER);
	snprintf(ep->work_dir, sizeof(ep->work_dir), DSTACK_WORK_DIR);
	return 0;
}

/* ---- destroy ---- */

static int dstack_destroy(void *vp, const struct exec_lease *lease, struct tdxr_err *err)
{
	struct dstack_priv *p = vp;
	json_t *ans = NULL, *info, *req = NULL;
	char id[128];
	long end;
	int rc, found, n = 0;

	if (lease->name[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "dstack: destroy: lease has no VM name");
	found = 0;
	if (lease->cloud_id[0] != '\0') {
		if (cpy(id, sizeof(id), lease->cloud_id) != 0)
			return tdxr_err_set(err, TDXR_EINVAL, "dstack: destroy: VM id too long");
		if ((rc = vmm_get_info(p, id, &ans, &found, &info, err)))
			goto out;
	}
	if (!found) {
		/* No VM under the recorded id - or no id at all: the agent died (or CreateVm failed)
		 * before CreateVm answered, and a claim without an id may carry a placeholder. The
		 * VMM may still have made the VM: it is gone only if no VM has the lease's name. */
		json_decref(ans);
		ans = NULL;
		if ((rc = find_by_name(p, lease->name, id, sizeof(id), &n, err))) {
			tdxr_err_prefix(err, "dstack: destroy %s", lease->name);
			goto out;
		}
		if (n == 0)
			goto out; /* the VMM lists no VM of this name */
		if (n > 1) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "dstack: destroy: %d VMs are named %s; remove them by hand", n,
			                  lease->name);
			goto out;
		}
		if ((rc = vmm_get_info(p, id, &ans, &found, &info, err)))
			goto out;
		if (!found)
			goto out; /* removed meanwhile */
	}
	{
		const char *nm = jstr(info, "name"), *st = jstr(info, "status");

		if (nm == NULL || strcmp(nm, lease->name) != 0) {
			char got[80];

			clean(got, sizeof(got), nm);
			rc = tdxr_err_set(
			    err, TDXR_EINVAL,
			    "dstack: destroy: refusing, VM %s is named '%s', the lease says '%s'", id, got,
			    lease->name);
			goto out;
		}
		if (st && strcmp(st, "removing") == 0)
			goto out;
	}
	json_decref(ans);
	ans = NULL;
	req = json_pack("{s:s}", "id", id);
	if (req == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = vmm_call(p, "RemoveVm", req, 1, &ans, err))) {
		struct tdxr_err e2 = { 0, "" };
		json_t *a2 = NULL, *i2;

		/* A refusal may mean a concurrent removal finished: believe only GetInfo. */
		if (vmm_get_info(p, id, &a2, &found, &i2, &e2) == 0 && !found)
			rc = 0;
		json_decref(a2);
		goto out;
	}
	json_decref(ans);
	ans = NULL;
	end = now_ms() + (long)p->remove_ms;
	for (;;) {
		const char *st;

		if ((rc = vmm_get_info(p, id, &ans, &found, &info, err)))
			goto out;
		if (!found)
			goto out;
		st = jstr(info, "status");
		if (now_ms() >= end) {
			char s[64];

			if (st && strcmp(st, "removing") == 0)
				goto out; /* persisted by the VMM, which finishes it even across its restarts
				           */
			clean(s, sizeof(s), st);
			rc = tdxr_err_set(
			    err, TDXR_ETIMEOUT,
			    "dstack: destroy: RemoveVm accepted but VM %s still exists (status '%s')", id, s);
			goto out;
		}
		json_decref(ans);
		ans = NULL;
		sleep_ms(p->poll_ms);
	}
out:
	json_decref(req);
	json_decref(ans);
	return rc;
}

/* ---- list_owned / describe ---- */

static int owned_by(json_t *vm, const char *owner_host)
{
	const char *uc = jstr(json_object_get(vm, "configuration"), "user_config"), *o;
	json_error_t jerr;
	json_t *j;
	int ok;

	if (owner_host == NULL)
		return 1;
	if (uc == NULL)
		return 0;
	j = json_loads(uc, JSON_REJECT_DUPLICATES, &jerr);
	o = jstr(json_object_get(j, "tdx_runner"), "owner_host");
	ok = o != NULL && strcmp(o, owner_host) == 0;
	json_decref(j);
	return ok;
}

static int dstack_list_owned(void *vp, const char *owner_host, struct exec_lease **out, size_t *n,
                             struct tdxr_err *err)
{
	struct dstack_priv *p = vp;
	struct exec_lease *v = NULL, *nv;
	size_t cnt = 0, seen = 0, i;
	unsigned page;
	json_t *ans = NULL, *req = NULL, *vm, *vms;
	int rc = 0;

	*out = NULL;
	*n = 0;
	for (page = 1; page <= DSTACK_LIST_PAGES; page++) {
		json_int_t total;
		size_t page_len;

		req = json_pack("{s:s,s:b,s:i,s:i}", "keyword", DSTACK_NAME_PREFIX, "brief", 0, "page",
		                (int)page, "page_size", (int)DSTACK_PAGE_SIZE);
		if (req == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = vmm_call(p, "Status", req, 1, &ans, err)))
			goto out;
		vms = json_object_get(ans, "vms");
		if (!json_is_array(vms)) {
			rc = tdxr_err_set(err, TDXR_EIO, "dstack: Status: no vms list");
			goto out;
		}
		json_array_foreach(vms, i, vm)
		{
			const char *id = jstr(vm, "id"), *nm = jstr(vm, "name"), *aid = jstr(vm, "app_id");

			if (!id || !nm || strncmp(nm, DSTACK_NAME_PREFIX, strlen(DSTACK_NAME_PREFIX)) != 0 ||
			    !owned_by(vm, owner_host))
				continue;
			nv = realloc(v, (cnt + 1) * sizeof(*v));
			if (nv == NULL) {
				rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
				goto out;
			}
			v = nv;
			memset(&v[cnt], 0, sizeof(v[cnt]));
			snprintf(v[cnt].executor, sizeof(v[cnt].executor), "dstack");
			if (cpy(v[cnt].cloud_id, sizeof(v[cnt].cloud_id), id) ||
			    cpy(v[cnt].name, sizeof(v[cnt].name), nm) ||
			    cpy(v[cnt].app_id, sizeof(v[cnt].app_id), aid ? aid : "") ||
			    cpy(v[cnt].gateway, sizeof(v[cnt].gateway), p->gateway))
				continue;
			cnt++;
		}
		page_len = json_array_size(vms);
		seen += page_len;
		total = json_is_integer(json_object_get(ans, "total"))
		            ? json_integer_value(json_object_get(ans, "total"))
		            : 0;
		json_decref(ans); /* vms belongs to ans: not used after this */
		ans = NULL;
		json_decref(req);
		req = NULL;
		if (page_len == 0 || total <= 0 || seen >= (size_t)total)
			break;
	}
	*out = v;
	*n = cnt;
	v = NULL;
out:
	free(v);
	json_decref(req);
	json_decref(ans);
	return rc;
}

static int dstack_describe(void *vp, const struct exec_lease *lease, char **out, struct tdxr_err *err)
{
	struct dstack_priv *p = vp;
	json_t *o;

	*out = NULL;
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "executor", "dstack", "vmm_url", p->url, "vm_id",
	              lease->cloud_id, "name", lease->name, "app_id", lease->app_id, "gateway",
	              lease->gateway);
	if (o)
		*out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

const struct exec_ops exec_dstack = {
	.name = "dstack",
	.caps = EXEC_CAP_GATEWAY,
	.priv_size = sizeof(struct dstack_priv),
	.init = dstack_init,
	.dispose = dstack_dispose,
	.create = dstack_create,
	.wait_ready = dstack_wait_ready,
	.endpoint = dstack_endpoint,
	.destroy = dstack_destroy,
	.list_owned = dstack_list_owned,
	.describe = dstack_describe,
};
