/*
 * phala.c - the `phala` executor: CVMs on Phala Cloud through its REST API
 * (CONTRACTS.md §1) with libcurl + Jansson. create = POST /cvms/provision then
 * POST /cvms with the lease's SSH public key sealed to the app's X25519 key as
 * DSTACK_AUTHORIZED_KEYS (executors/common/envcrypt.h); wait_ready polls
 * /cvms/{id}/state until "running" (boot_error = failed) and reads the gateway
 * domain; the box is reached by TLS at <app_id>-22.<base_domain>:443.
 *
 * Invariants: every call is bounded (connect + total timeouts, a per-call
 * budget across retries); 429 (Retry-After honoured) and 5xx are retried with
 * exponential backoff and full jitter, non-idempotent POST /cvms only when the
 * request cannot have been acted on; bodies are capped at TDXR_CAP_API. destroy
 * checks ownership (the CVM's name and app id match the lease) before DELETE
 * and treats 404 as "gone" only when the body says the CVM does not exist.
 *
 * Secrets: the API key lives in a struct tdxr_secret, travels only in the
 * X-API-Key header (never argv, never a log line), and is redacted from any
 * message built from a response body. Plain http is accepted only for loopback.
 */
#include "executors/phala/phala_int.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/util.h"
#include "executors/common/envcrypt.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MOD "phala"
#define LIST_PAGE_SIZE 100
#define LIST_MAX_PAGES 50

static const char DEFAULT_COMPOSE[] =
    "services:\n"
    "  runner:\n"
    "    image: debian:stable-slim@sha256:"
    "f35eebaec00d2be9d1d3144156ce24c4b98d84d12376666a5c45e059b4a8d363\n"
    "    restart: unless-stopped\n"
    "    command: [\"sleep\", \"infinity\"]\n";

struct phala_priv {
	char api_url[512];
	struct tdxr_secret *api_key;
	char instance_type[64];
	char node_id[32];
	char image[128];
	char *compose; /* docker-compose text from compose_file, or NULL */
	long connect_ms;
	long timeout_ms;        /* one HTTP exchange */
	long budget_ms;         /* one call, retries included */
	unsigned poll_ms;       /* wait_ready poll interval */
	struct phala_backoff bo;
};

/* ================================================================ pure parts */

enum phala_state phala_state_map(const char *status, const char *boot_error)
{
	if (boot_error != NULL && boot_error[0] != '\0')
		return PHALA_ST_FAILED;
	if (status == NULL)
		return PHALA_ST_PENDING;
	if (strcmp(status, "running") == 0)
		return PHALA_ST_RUNNING;
	if (strcmp(status, "error") == 0 || strcmp(status, "exited") == 0 || strcmp(status, "stopped") == 0)
		return PHALA_ST_FAILED;
	return PHALA_ST_PENDING;
}

void phala_hosttag(const char *owner_host, char out[PHALA_HOSTTAG_LEN + 1])
{
	uint8_t md[32];
	unsigned mdlen = 0;
	char hx[65];
	const char *h = owner_host ? owner_host : "";

	if (EVP_Digest(h, strlen(h), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		memset(md, 0, sizeof(md));
	tdxr_hex_encode(md, 32, hx);
	memcpy(out, hx, PHALA_HOSTTAG_LEN);
	out[PHALA_HOSTTAG_LEN] = '\0';
}

int phala_name_build(const char *owner_host, const char *lease_id, char *out, size_t cap,
                     struct tdxr_err *err)
{
	char tag[PHALA_HOSTTAG_LEN + 1];
	const char *id = lease_id ? lease_id : "";
	size_t n, i;

	if (cap > 0)
		out[0] = '\0';
	if (strncmp(id, "l-", 2) == 0)
		id += 2;
	if (id[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "phala: the lease has no id");
	phala_hosttag(owner_host, tag);
	if (cap < PHALA_NAME_MAX + 1)
		return tdxr_err_set(err, TDXR_EINVAL, "phala: name buffer too small");
	n = (size_t)snprintf(out, cap, "tdxr-%s-", tag);
	for (i = 0; id[i] && n < PHALA_NAME_MAX; i++)
		out[n++] = isalnum((unsigned char)id[i]) ? id[i] : '-';
	out[n] = '\0';
	return 0;
}

int phala_name_owned(const char *name, const char *owner_host)
{
	char tag[PHALA_HOSTTAG_LEN + 1], pre[32];

	if (name == NULL)
		return 0;
	phala_hosttag(owner_host, tag);
	snprintf(pre, sizeof(pre), "tdxr-%s-", tag);
	return strncmp(name, pre, strlen(pre)) == 0 && name[strlen(pre)] != '\0';
}

static int is_hex_n(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
	return s[n] == '\0';
}

int phala_name_matches(const char *cloud_name, const char *lease_name)
{
	size_t pre = 5 + PHALA_HOSTTAG_LEN + 1;

	if (cloud_name == NULL || lease_name == NULL || lease_name[0] == '\0')
		return 0;
	if (strcmp(cloud_name, lease_name) == 0)
		return 1;
	/* claim "tdxr-X" (the job's name) vs cloud "tdxr-<8 hex>-X" (this executor's) */
	if (strncmp(lease_name, "tdxr-", 5) != 0 || strncmp(cloud_name, "tdxr-", 5) != 0 ||
	    strlen(cloud_name) <= pre || cloud_name[pre - 1] != '-')
		return 0;
	{
		char tag[PHALA_HOSTTAG_LEN + 1];

		memcpy(tag, cloud_name + 5, PHALA_HOSTTAG_LEN);
		tag[PHALA_HOSTTAG_LEN] = '\0';
		if (!is_hex_n(tag, PHALA_HOSTTAG_LEN))
			return 0;
	}
	return strcmp(cloud_name + pre, lease_name + 5) == 0;
}

int phala_app_id_ok(const char *s)
{
	return s != NULL && strlen(s) == 40 && is_hex_n(s, 40);
}

int phala_domain_ok(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 200 || s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-')
			return 0;
	return 1;
}

int phala_cloud_id_ok(const char *s)
{
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 19)
		return 0;
	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

int phala_compose_pick(const char *spec_compose, const char *cfg_compose, char **out,
                       struct tdxr_err *err)
{
	const char *src = DEFAULT_COMPOSE;
	json_t *o = NULL;
	int rc = 0;

	*out = NULL;
	if (spec_compose != NULL && spec_compose[0] == '{') {
		json_error_t jerr;
		json_t *d;

		o = json_loadb(spec_compose, strlen(spec_compose), JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(o) || !json_is_string(d = json_object_get(o, "docker_compose_file"))) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "phala: the app-compose has no docker_compose_file string");
			goto out;
		}
		src = json_string_value(d);
	} else if (spec_compose != NULL && spec_compose[0] != '\0') {
		src = spec_compose;
	} else if (cfg_compose != NULL && cfg_compose[0] != '\0') {
		src = cfg_compose;
	}
	if ((*out = strdup(src)) == NULL)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	json_decref(o);
	return rc;
}

static int dump_json(json_t *o, char **out, struct tdxr_err *err)
{
	*out = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "phala: cannot build a request body");
	return 0;
}

int phala_provision_body(const struct phala_provision_req *r, char **out, struct tdxr_err *err)
{
	json_t *o = json_object(), *cf = json_object(), *envs = json_array();
	int bad = o == NULL || cf == NULL || envs == NULL;

	*out = NULL;
	if (bad) {
		json_decref(o);
		json_decref(cf);
		json_decref(envs);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	bad |= json_array_append_new(envs, json_string(PHALA_ENV_KEY));
	bad |= json_object_set_new(cf, "name", json_string(""));
	bad |= json_object_set_new(cf, "docker_compose_file", json_string(r->docker_compose));
	bad |= json_object_set_new(cf, "allowed_envs", envs);
	bad |= json_object_set_new(cf, "public_logs", json_false());
	bad |= json_object_set_new(cf, "public_sysinfo", json_false());
	bad |= json_object_set_new(cf, "gateway_enabled", json_true());
	bad |= json_object_set_new(o, "name", json_string(r->name));
	bad |= json_object_set_new(o, "instance_type",
	                           json_string(r->instance_type && r->instance_type[0] ? r->instance_type
	                                                                               : "tdx.small"));
	if (r->node_id && r->node_id[0]) {
		uint64_t v;

		if (tdxr_parse_u64(r->node_id, INT64_MAX, &v, NULL) == 0)
			bad |= json_object_set_new(o, "node_id", json_integer((json_int_t)v));
		else
			bad |= json_object_set_new(o, "node_id", json_string(r->node_id));
	}
	if (r->image && r->image[0])
		bad |= json_object_set_new(o, "image", json_string(r->image));
	bad |= json_object_set_new(o, "prefer_dev", json_true());
	bad |= json_object_set_new(o, "listed", json_false());
	bad |= json_object_set_new(o, "compose_file", cf);
	if (bad || r->name == NULL || r->docker_compose == NULL) {
		json_decref(o);
		return tdxr_err_set(err, TDXR_EINVAL, "phala: cannot build the provision request");
	}
	return dump_json(o, out, err);
}

int phala_create_body(const char *app_id, const char *compose_hash, const char *encrypted_env,
                      char **out, struct tdxr_err *err)
{
	json_t *o = json_object(), *keys = json_array();
	int bad = o == NULL || keys == NULL;

	*out = NULL;
	if (!bad) {
		bad |= json_array_append_new(keys, json_string(PHALA_ENV_KEY));
		bad |= json_object_set_new(o, "app_id", json_string(app_id));
		bad |= json_object_set_new(o, "compose_hash", json_string(compose_hash));
		bad |= json_object_set_new(o, "encrypted_env", json_string(encrypted_env));
		bad |= json_object_set_new(o, "env_keys", keys);
		keys = NULL;
	}
	json_decref(keys);
	if (bad) {
		json_decref(o);
		return tdxr_err_set(err, TDXR_EINVAL, "phala: cannot build the create request");
	}
	return dump_json(o, out, err);
}

static json_t *parse_obj(const char *body, size_t len, const char *what, struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *o = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);

	if (!json_is_object(o)) {
		json_decref(o);
		tdxr_err_set(err, TDXR_EINVAL, "phala: %s: the response is not a JSON object", what);
		return NULL;
	}
	return o;
}

/* Copies a string member (first of two spellings) into out; 1 = copied, 0 = absent,
 * -1 = wrong type or too long. */
static int get_str(json_t *o, const char *k1, const char *k2, char *out, size_t cap)
{
	json_t *v = json_object_get(o, k1);

	if (v == NULL && k2 != NULL)
		v = json_object_get(o, k2);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return -1;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 1;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

int phala_provision_parse(const char *body, size_t len, struct phala_provision_resp *out,
                          struct tdxr_err *err)
{
	struct phala_provision_resp r;
	json_t *o = parse_obj(body, len, "provision", err);
	char pk[80], aid[48];
	const char *p = pk;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	memset(&r, 0, sizeof(r));
	if (o == NULL)
		return TDXR_EINVAL;
	if (get_str(o, "app_id", NULL, aid, sizeof(aid)) != 1 ||
	    get_str(o, "app_env_encrypt_pubkey", NULL, pk, sizeof(pk)) != 1 ||
	    get_str(o, "compose_hash", NULL, r.compose_hash, sizeof(r.compose_hash)) != 1) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "phala: provision: the response lacks app_id, app_env_encrypt_pubkey or "
		                  "compose_hash");
		goto out;
	}
	if (strncmp(p, "0x", 2) == 0)
		p += 2;
	if (strncmp(aid, "app_", 4) == 0)
		memmove(aid, aid + 4, strlen(aid + 4) + 1);
	lower(aid);
	if (strlen(aid) >= sizeof(r.app_id)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: provision: app_id is too long");
		goto out;
	}
	memcpy(r.app_id, aid, strlen(aid) + 1);
	lower(r.compose_hash);
	if (strlen(p) != 64) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: provision: app_env_encrypt_pubkey is not 32 bytes");
		goto out;
	}
	memcpy(r.pubkey, p, 65);
	lower(r.pubkey);
	if (!phala_app_id_ok(r.app_id) || !is_hex_n(r.pubkey, 64) || !is_hex_n(r.compose_hash, 64)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: provision: malformed app_id, pubkey or compose_hash");
		goto out;
	}
	*out = r;
out:
	json_decref(o);
	return rc;
}

int phala_cvm_parse(const char *body, size_t len, struct phala_cvm *out, struct tdxr_err *err)
{
	json_t *o = parse_obj(body, len, "CVM", err);
	char aid[48] = "";
	int rc;

	memset(out, 0, sizeof(*out));
	if (o == NULL)
		return TDXR_EINVAL;
	{
		/* the CLI nests nothing; the API may wrap detail objects in {"cvm": {...}} */
		json_t *inner = json_object_get(o, "cvm");

		if (json_is_object(inner) && json_object_get(o, "id") == NULL) {
			json_incref(inner);
			json_decref(o);
			o = inner;
		}
	}
	rc = 0;
	{
		json_t *id = json_object_get(o, "id");

		if (json_is_integer(id) && json_integer_value(id) > 0)
			snprintf(out->id, sizeof(out->id), "%lld", (long long)json_integer_value(id));
		else if (json_is_string(id) && phala_cloud_id_ok(json_string_value(id)))
			snprintf(out->id, sizeof(out->id), "%s", json_string_value(id));
		else if (id != NULL && !json_is_null(id))
			rc = -1;
	}
	if (rc || get_str(o, "name", "cvmName", out->name, sizeof(out->name)) < 0 ||
	    get_str(o, "app_id", "appId", aid, sizeof(aid)) < 0 ||
	    get_str(o, "status", NULL, out->status, sizeof(out->status)) < 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: CVM: a field has the wrong type or is too long");
		goto out;
	}
	if (strncmp(aid, "app_", 4) == 0)
		memmove(aid, aid + 4, strlen(aid + 4) + 1);
	lower(aid);
	if (strlen(aid) >= sizeof(out->app_id)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: CVM: app_id is too long");
		goto out;
	}
	memcpy(out->app_id, aid, strlen(aid) + 1);
	{
		json_t *gw = json_object_get(o, "gateway");

		if (json_is_object(gw) && get_str(gw, "base_domain", NULL, out->base_domain,
		                                  sizeof(out->base_domain)) < 0) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "phala: CVM: gateway.base_domain is malformed");
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(o);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

int phala_state_parse(const char *body, size_t len, char *status, size_t scap, char *boot_error,
                      size_t bcap, struct tdxr_err *err)
{
	json_t *o = parse_obj(body, len, "state", err);
	json_t *be;
	int rc = 0;

	if (scap)
		status[0] = '\0';
	if (bcap)
		boot_error[0] = '\0';
	if (o == NULL)
		return TDXR_EINVAL;
	if (get_str(o, "status", NULL, status, scap) != 1) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: state: no status string");
		goto out;
	}
	be = json_object_get(o, "boot_error");
	if (json_is_string(be) && bcap) {
		snprintf(boot_error, bcap, "%s", json_string_value(be));
	} else if (be != NULL && !json_is_null(be) && bcap) {
		/* an unexpected shape still means "something failed" */
		snprintf(boot_error, bcap, "(boot_error of an unexpected type)");
	}
out:
	json_decref(o);
	return rc;
}

/* Printable, single-line, bounded copy. */
static void excerpt(const char *s, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < cap; i++)
		out[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
	if (cap)
		out[o] = '\0';
}

void phala_error_format(const char *what, long http, const char *body, size_t len, char *out, size_t cap)
{
	char detail[200] = "";
	json_error_t jerr;
	json_t *o = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	json_t *d = json_is_object(o) ? json_object_get(o, "detail") : NULL;

	if (json_is_string(d)) {
		excerpt(json_string_value(d), json_string_length(d), detail, sizeof(detail));
	} else if (json_is_object(d)) {
		json_t *code = json_object_get(d, "error_code"), *msg = json_object_get(d, "message");
		char c[64] = "", m[160] = "";

		if (json_is_string(code))
			excerpt(json_string_value(code), json_string_length(code), c, sizeof(c));
		else if (json_is_integer(code))
			snprintf(c, sizeof(c), "%lld", (long long)json_integer_value(code));
		if (json_is_string(msg))
			excerpt(json_string_value(msg), json_string_length(msg), m, sizeof(m));
		if (c[0]) {
			if ((size_t)snprintf(detail, sizeof(detail), "%s%s(%s)", m, m[0] ? " " : "", c) >= sizeof(detail))
				detail[sizeof(detail) - 1] = '\0'; /* a truncated message is still a message */
		} else {
			snprintf(detail, sizeof(detail), "%s", m);
		}
	} else if (json_is_array(d)) {
		/* FastAPI validation errors: [{loc, msg, type}, ...] - show the first msg */
		json_t *m = json_object_get(json_array_get(d, 0), "msg");

		if (json_is_string(m))
			excerpt(json_string_value(m), json_string_length(m), detail, sizeof(detail));
	} else if (body && len) {
		excerpt(body, len < 120 ? len : 120, detail, sizeof(detail));
	}
	json_decref(o);
	if (detail[0] == '\0')
		snprintf(detail, sizeof(detail), "no detail");
	snprintf(out, cap, "%s: HTTP %ld: %s", what, http, detail);
}

static int contains_ci(const char *hay, const char *needle)
{
	return hay != NULL && strcasestr(hay, needle) != NULL;
}

int phala_error_is_cvm_gone(long http, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *o, *d;
	const char *msg = NULL, *code = NULL;
	int gone = 0;

	if (http != 404 || body == NULL || len == 0)
		return 0;
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	d = json_is_object(o) ? json_object_get(o, "detail") : NULL;
	if (json_is_string(d)) {
		msg = json_string_value(d);
	} else if (json_is_object(d)) {
		json_t *c = json_object_get(d, "error_code"), *m = json_object_get(d, "message");

		code = json_is_string(c) ? json_string_value(c) : NULL;
		msg = json_is_string(m) ? json_string_value(m) : NULL;
	}
	/* The route's generic 404 ("Not Found") is not enough: the body must name the CVM. */
	if (code && contains_ci(code, "CVM") && contains_ci(code, "NOT_FOUND"))
		gone = 1;
	if (msg && contains_ci(msg, "cvm") && (contains_ci(msg, "not found") || contains_ci(msg, "does not exist")))
		gone = 1;
	json_decref(o);
	return gone;
}

void phala_redact(char *s, size_t cap, const char *secret)
{
	size_t sl, n;
	char *p;

	if (s == NULL || secret == NULL || (sl = strlen(secret)) == 0)
		return;
	while ((p = strstr(s, secret)) != NULL) {
		n = strlen(p + sl);
		memcpy(p, "***", 3);
		memmove(p + 3, p + sl, n + 1);
		(void)cap;
	}
}

static unsigned parse_retry_after(const char *ra, int *ok)
{
	uint64_t v = 0;
	char t[32];
	size_t n;

	*ok = 0;
	if (ra == NULL)
		return 0;
	while (*ra == ' ' || *ra == '\t')
		ra++;
	n = strcspn(ra, " \t\r\n");
	if (n == 0 || n >= sizeof(t))
		return 0;
	memcpy(t, ra, n);
	t[n] = '\0';
	if (tdxr_parse_u64(t, 86400, &v, NULL) != 0)
		return 0; /* HTTP-date: fall back to our backoff */
	*ok = 1;
	return (unsigned)v * 1000u;
}

int phala_retry_decide(const struct phala_backoff *b, unsigned attempt, long http, int transport_sent,
                       int idempotent, const char *retry_after, uint32_t rnd, unsigned *delay_ms)
{
	unsigned d, half;
	int ok = 0, retry = 0;

	*delay_ms = 0;
	if (attempt + 1 >= b->max_attempts)
		return 0;
	if (http == 429 || http == 503)
		retry = 1; /* not processed: safe even for POST */
	else if (http >= 500 && http <= 599)
		retry = idempotent;
	else if (http == 0)
		retry = idempotent || !transport_sent;
	if (!retry)
		return 0;
	d = b->base_ms;
	while (attempt-- > 0 && d < b->cap_ms)
		d = d > UINT32_MAX / 2 ? UINT32_MAX : d * 2;
	if (d > b->cap_ms)
		d = b->cap_ms;
	half = d / 2;
	d = half + rnd % (half + 1); /* "equal jitter": [d/2, d] */
	if (http == 429 || http == 503) {
		unsigned ra = parse_retry_after(retry_after, &ok);

		if (ok) {
			if (ra > b->retry_after_cap_ms)
				ra = b->retry_after_cap_ms;
			if (ra > d)
				d = ra;
		}
	}
	*delay_ms = d;
	return 1;
}

/* ================================================================ HTTP */

struct resp {
	long http;
	struct tdxr_buf body;
	char retry_after[32];
};

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
	struct resp *r = ud;
	size_t n = sz * nm;

	if (tdxr_buf_append(&r->body, p, n, NULL) != 0)
		return 0; /* over TDXR_CAP_API: abort the transfer */
	return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
	struct resp *r = ud;
	size_t n = sz * nm;

	if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		size_t l = n - 12;

		if (l >= sizeof(r->retry_after))
			l = sizeof(r->retry_after) - 1;
		memcpy(r->retry_after, p + 12, l);
		r->retry_after[l] = '\0';
	}
	return n;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int url_is_loopback(const char *u)
{
	const char *h = u + 7; /* after "http://" */

	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
	       strcmp(h, "localhost") == 0 || strncmp(h, "localhost/", 10) == 0 || strncmp(h, "[::1]", 5) == 0;
}

static void set_msg(struct phala_priv *p, struct tdxr_err *err, int code, const char *msg)
{
	char m[sizeof(err->msg)];

	snprintf(m, sizeof(m), "%s", msg);
	phala_redact(m, sizeof(m), p->api_key ? tdxr_secret_str(p->api_key) : NULL);
	tdxr_err_set(err, code, "%s", m);
}

/*
 * One API call with retries. *out receives the parsed body (2xx) or NULL; *http
 * the final status (0 = transport failure). Non-2xx is an error unless the
 * status is in ok_status (e.g. 404 for destroy, which then inspects *raw).
 */
static int api_call(struct phala_priv *p, const char *method, const char *path, const char *body,
                    int idempotent, const char *what, long ok_status, long *http, char **raw,
                    struct tdxr_err *err)
{
	struct resp r;
	struct curl_slist *h = NULL;
	char url[1024], keyhdr[1024], m[256], cerr[CURL_ERROR_SIZE];
	long deadline = now_ms() + p->budget_ms;
	unsigned attempt = 0, delay;
	CURL *c = NULL;
	int rc = 0;

	*http = 0;
	*raw = NULL;
	memset(&r, 0, sizeof(r));
	tdxr_buf_init(&r.body, TDXR_CAP_API);
	if ((size_t)snprintf(url, sizeof(url), "%s%s", p->api_url, path) >= sizeof(url))
		return tdxr_err_set(err, TDXR_EINVAL, "phala: %s: URL too long", what);
	if (p->api_key == NULL || tdxr_secret_len(p->api_key) + 12 >= sizeof(keyhdr))
		return tdxr_err_set(err, TDXR_EAUTH, "phala: %s: no usable API key", what);
	snprintf(keyhdr, sizeof(keyhdr), "X-API-Key: %s", tdxr_secret_str(p->api_key));
	if ((c = curl_easy_init()) == NULL || (h = curl_slist_append(h, keyhdr)) == NULL ||
	    !curl_slist_append(h, "X-Phala-Version: " PHALA_API_VERSION) ||
	    !curl_slist_append(h, "Content-Type: application/json") ||
	    !curl_slist_append(h, "Accept: application/json") || !curl_slist_append(h, "Expect:")) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "phala: %s: cannot set up the HTTP client", what);
		goto out;
	}
	OPENSSL_cleanse(keyhdr, sizeof(keyhdr));
	for (;;) {
		long left = deadline - now_ms();
		CURLcode cc;
		int ok = 1;

		tdxr_buf_reset(&r.body);
		r.retry_after[0] = '\0';
		r.http = 0;
		cerr[0] = '\0';
		if (left <= 0) {
			rc = tdxr_err_set(err, TDXR_ETIMEOUT, "phala: %s: no answer within %ld ms", what,
			                  p->budget_ms);
			goto out;
		}
		curl_easy_reset(c);
		ok &= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
		                       p->connect_ms < left ? p->connect_ms : left) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->timeout_ms < left ? p->timeout_ms : left) ==
		      CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)TDXR_CAP_API) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_USERAGENT, "tdx-runner/" TDXR_VERSION) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_WRITEDATA, &r) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_HEADERDATA, &r) == CURLE_OK;
		ok &= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
		if (strncmp(url, "http://", 7) == 0)
			ok &= curl_easy_setopt(c, CURLOPT_PROXY, "") == CURLE_OK;
		if (body != NULL) {
			ok &= curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK;
			ok &= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body)) ==
			      CURLE_OK;
		} else if (strcmp(method, "GET") == 0) {
			ok &= curl_easy_setopt(c, CURLOPT_HTTPGET, 1L) == CURLE_OK;
		}
		if (!ok) {
			rc = tdxr_err_set(err, TDXR_ERROR, "phala: %s: cannot configure libcurl", what);
			goto out;
		}
		cc = curl_easy_perform(c);
		if (cc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.http);
		if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
			rc = tdxr_err_set(err, TDXR_ETOOBIG, "phala: %s: response over %u bytes", what,
			                  TDXR_CAP_API);
			goto out;
		}
		if (cc == CURLE_OK && ((r.http >= 200 && r.http < 300) || r.http == ok_status))
			break;
		{
			int sent = !(cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST);
			uint32_t rnd = 0;

			if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
				rnd = (uint32_t)now_ms();
			if (cc != CURLE_OK) {
				if ((size_t)snprintf(m, sizeof(m), "%s: %s", what, cerr[0] ? cerr : curl_easy_strerror(cc)) >= sizeof(m))
					m[sizeof(m) - 1] = '\0'; /* a truncated message is still a message */
			} else {
				phala_error_format(what, r.http, (const char *)r.body.data, r.body.len, m,
				                   sizeof(m));
			}
			if (phala_retry_decide(&p->bo, attempt, r.http, sent, idempotent, r.retry_after, rnd,
			                       &delay) &&
			    now_ms() + (long)delay < deadline) {
				TDXR_DEBUG(MOD, "%s; retry %u in %u ms", m, attempt + 1, delay);
				sleep_ms(delay);
				attempt++;
				continue;
			}
			*http = r.http;
			rc = cc != CURLE_OK ? (cc == CURLE_OPERATION_TIMEDOUT ? TDXR_ETIMEOUT : TDXR_EIO)
			     : (r.http == 401 || r.http == 403) ? TDXR_EAUTH
			     : r.http == 404                     ? TDXR_ENOTFOUND
			                                         : TDXR_EIO;
			{
				char full[300];

				snprintf(full, sizeof(full), "phala: %s%s", m,
				         attempt ? " (after retries)" : "");
				set_msg(p, err, rc, full);
			}
			goto out;
		}
	}
	*http = r.http;
	if (r.body.data == NULL) {
		if ((*raw = strdup("")) == NULL)
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	} else {
		size_t n;

		*raw = (char *)tdxr_buf_steal(&r.body, &n);
	}
out:
	OPENSSL_cleanse(keyhdr, sizeof(keyhdr));
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	tdxr_buf_dispose(&r.body);
	return rc;
}

/* ================================================================ vtable */

static int cfg_str(json_t *o, const char *k, char *out, size_t cap, struct tdxr_err *err)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v) && strcmp(k, "node_id") == 0) {
		snprintf(out, cap, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "phala: config: %s must be a string (< %zu bytes)", k, cap);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int cfg_ms(json_t *o, const char *k, long lo, long hi, long *out, struct tdxr_err *err)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return tdxr_err_set(err, TDXR_EINVAL, "phala: config: %s must be an integer in %ld..%ld", k, lo,
		                    hi);
	*out = (long)json_integer_value(v);
	return 0;
}

/* Timing keys: init's config, and TDXR_TEST_PHALA_TUNING (tests shorten them; see tuning_env). */
static const char *const TUNING_KEYS[] = {
	"connect_ms", "timeout_ms", "call_budget_ms", "poll_ms", "max_attempts",
	"backoff_ms", "backoff_cap_ms", "retry_after_cap_ms", NULL,
};

static int tuning_apply(struct phala_priv *p, json_t *o, struct tdxr_err *err)
{
	long tmp;
	int rc;

	if ((rc = cfg_ms(o, "connect_ms", 1, 600000, &p->connect_ms, err)) ||
	    (rc = cfg_ms(o, "timeout_ms", 1, 3600000, &p->timeout_ms, err)) ||
	    (rc = cfg_ms(o, "call_budget_ms", 1, 3600000, &p->budget_ms, err)))
		return rc;
	tmp = p->poll_ms;
	if ((rc = cfg_ms(o, "poll_ms", 1, 600000, &tmp, err)))
		return rc;
	p->poll_ms = (unsigned)tmp;
	tmp = p->bo.max_attempts;
	if ((rc = cfg_ms(o, "max_attempts", 1, 100, &tmp, err)))
		return rc;
	p->bo.max_attempts = (unsigned)tmp;
	tmp = p->bo.base_ms;
	if ((rc = cfg_ms(o, "backoff_ms", 1, 600000, &tmp, err)))
		return rc;
	p->bo.base_ms = (unsigned)tmp;
	tmp = p->bo.cap_ms;
	if ((rc = cfg_ms(o, "backoff_cap_ms", 1, 3600000, &tmp, err)))
		return rc;
	p->bo.cap_ms = (unsigned)tmp;
	tmp = p->bo.retry_after_cap_ms;
	if ((rc = cfg_ms(o, "retry_after_cap_ms", 0, 3600000, &tmp, err)))
		return rc;
	p->bo.retry_after_cap_ms = (unsigned)tmp;
	return 0;
}

/*
 * Test-only: TDXR_TEST_PHALA_TUNING, a JSON object of TUNING_KEYS, overrides the
 * timings for `tdx-runner run` in tests (the config file does not expose them):
 * end-to-end fault tests need 1 s timeouts and short polls, not 60 s and 5 s.
 * Only timings: it cannot change where the agent connects or with what key.
 */
static int tuning_env(struct phala_priv *p, struct tdxr_err *err)
{
	const char *env = getenv("TDXR_TEST_PHALA_TUNING"), *k;
	json_error_t jerr;
	json_t *o, *v;
	int rc = 0;

	if (env == NULL || env[0] == '\0')
		return 0;
	o = json_loads(env, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		json_decref(o);
		return tdxr_err_set(err, TDXR_EINVAL, "phala: TDXR_TEST_PHALA_TUNING is not a JSON object");
	}
	json_object_foreach(o, k, v) {
		size_t i;

		for (i = 0; TUNING_KEYS[i] && strcmp(TUNING_KEYS[i], k) != 0; i++)
			;
		if (TUNING_KEYS[i] == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "phala: TDXR_TEST_PHALA_TUNING: unknown key \"%.64s\"", k);
			break;
		}
	}
	if (rc == 0 && (rc = tuning_apply(p, o, err)) == 0)
		TDXR_WARN(MOD, "test tuning from TDXR_TEST_PHALA_TUNING: %s", env);
	json_decref(o);
	return rc;
}

static const char *const INIT_KEYS[] = {
	"api_url",       "api_key",      "instance_type", "node_id",        "image",
	"compose_file",  "connect_ms",   "timeout_ms",    "call_budget_ms", "poll_ms",
	"max_attempts",  "backoff_ms",   "backoff_cap_ms", "retry_after_cap_ms", NULL,
};

static int phala_init(void *vp, const char *state_dir, const char *config_json, struct tdxr_err *err)
{
	struct phala_priv *p = vp;
	json_error_t jerr;
	json_t *o = NULL, *v;
	const char *k;
	char path[512] = "";
	int rc = 0;

	(void)state_dir;
	memset(p, 0, sizeof(*p));
	snprintf(p->api_url, sizeof(p->api_url), "%s", PHALA_DEFAULT_URL);
	snprintf(p->instance_type, sizeof(p->instance_type), "tdx.small");
	p->connect_ms = 10000;
	p->timeout_ms = 60000;
	p->budget_ms = 180000;
	p->poll_ms = 5000;
	p->bo.max_attempts = 6;
	p->bo.base_ms = 500;
	p->bo.cap_ms = 30000;
	p->bo.retry_after_cap_ms = 60000;
	{
		const char *env = getenv("PHALA_CLOUD_API_PREFIX");

		if (env && env[0])
			snprintf(p->api_url, sizeof(p->api_url), "%s", env);
	}
	o = json_loads(config_json && config_json[0] ? config_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: config: not a JSON object");
		goto out;
	}
	json_object_foreach(o, k, v) {
		size_t i;

		for (i = 0; INIT_KEYS[i] && strcmp(INIT_KEYS[i], k) != 0; i++)
			;
		if (INIT_KEYS[i] == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "phala: config: unknown key \"%.64s\"", k);
			goto out;
		}
	}
	if ((rc = cfg_str(o, "api_url", p->api_url, sizeof(p->api_url), err)) ||
	    (rc = cfg_str(o, "instance_type", p->instance_type, sizeof(p->instance_type), err)) ||
	    (rc = cfg_str(o, "node_id", p->node_id, sizeof(p->node_id), err)) ||
	    (rc = cfg_str(o, "image", p->image, sizeof(p->image), err)) ||
	    (rc = cfg_str(o, "compose_file", path, sizeof(path), err)) || (rc = tuning_apply(p, o, err)) ||
	    (rc = tuning_env(p, err)))
		goto out;
	{
		size_t n = strlen(p->api_url);

		while (n > 0 && p->api_url[n - 1] == '/')
			p->api_url[--n] = '\0';
		if (strncmp(p->api_url, "https://", 8) != 0 &&
		    !(strncmp(p->api_url, "http://", 7) == 0 && url_is_loopback(p->api_url))) {
			rc = tdxr_err_set(err, TDXR_EINVAL,
			                  "phala: config: api_url must be https:// (http only to loopback)");
			goto out;
		}
	}
	v = json_object_get(o, "api_key");
	if (json_is_string(v) && json_string_length(v) > 0) {
		if ((p->api_key = tdxr_secret_new(json_string_value(v), json_string_length(v))) == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	} else if (v != NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: config: api_key must be a non-empty string");
		goto out;
	} else if (tdxr_secret_from_env("PHALA_CLOUD_API_KEY", &p->api_key, NULL) != 0) {
		rc = tdxr_err_set(err, TDXR_EAUTH,
		                  "phala: no API key (set executor.phala.api_key in the config, or "
		                  "PHALA_CLOUD_API_KEY)");
		goto out;
	}
	{
		size_t i, n = tdxr_secret_len(p->api_key);
		const char *s = tdxr_secret_str(p->api_key);

		for (i = 0; i < n; i++)
			if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
				rc = tdxr_err_set(err, TDXR_EINVAL, "phala: the API key has a non-printable "
				                                    "character");
				goto out;
			}
	}
	if (path[0]) {
		uint8_t *d = NULL;
		size_t len = 0;

		if ((rc = tdxr_file_read(path, TDXR_CAP_CONFIG, &d, &len, err))) {
			tdxr_err_prefix(err, "phala: compose_file");
			goto out;
		}
		p->compose = (char *)d;
	}
out:
	if (o) {
		/* the config text may hold the key: wipe Jansson's copy */
		v = json_object_get(o, "api_key");
		if (json_is_string(v))
			OPENSSL_cleanse((void *)json_string_value(v), json_string_length(v));
	}
	json_decref(o);
	if (rc) {
		tdxr_secret_free(p->api_key);
		p->api_key = NULL;
		free(p->compose);
		p->compose = NULL;
	}
	return rc;
}

static void phala_dispose(void *vp)
{
	struct phala_priv *p = vp;

	if (p == NULL)
		return;
	tdxr_secret_free(p->api_key);
	p->api_key = NULL;
	free(p->compose);
	p->compose = NULL;
}

static int cpy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

static int phala_create(void *vp, const struct exec_lease_spec *spec, struct exec_lease *lease,
                        struct tdxr_err *err)
{
	struct phala_priv *p = vp;
	struct phala_provision_req pr;
	struct phala_provision_resp pv;
	struct phala_cvm cvm;
	struct exec_env_var ev;
	char name[PHALA_NAME_MAX + 1], *compose = NULL, *body = NULL, *raw = NULL, *enc = NULL;
	long http;
	int rc;

	memset(lease, 0, sizeof(*lease));
	if (spec->ssh_pubkey == NULL || spec->ssh_pubkey[0] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "phala: create: the lease has no SSH public key");
	if ((rc = phala_name_build(spec->owner_host, spec->lease_id, name, sizeof(name), err)) ||
	    (rc = phala_compose_pick(spec->compose, p->compose, &compose, err)))
		goto out;
	memset(&pr, 0, sizeof(pr));
	pr.name = name;
	pr.instance_type = spec->instance_type ? spec->instance_type : p->instance_type;
	pr.node_id = p->node_id[0] ? p->node_id : NULL;
	pr.image = p->image[0] ? p->image : NULL;
	pr.docker_compose = compose;
	if ((rc = phala_provision_body(&pr, &body, err)) ||
	    (rc = api_call(p, "POST", "/cvms/provision", body, 1, "provision (POST /cvms/provision)", 0,
	                   &http, &raw, err)) ||
	    (rc = phala_provision_parse(raw, strlen(raw), &pv, err)))
		goto out;
	free(body);
	body = NULL;
	free(raw);
	raw = NULL;
	ev.key = PHALA_ENV_KEY;
	ev.value = spec->ssh_pubkey;
	if ((rc = exec_env_encrypt(pv.pubkey, &ev, 1, &enc, err))) {
		tdxr_err_prefix(err, "phala: create: encrypted env");
		goto out;
	}
	if ((rc = phala_create_body(pv.app_id, pv.compose_hash, enc, &body, err)))
		goto out;
	/* What destroy needs is known before the CVM exists: name and app id. */
	snprintf(lease->executor, sizeof(lease->executor), "phala");
	cpy(lease->name, sizeof(lease->name), name);
	cpy(lease->app_id, sizeof(lease->app_id), pv.app_id);
	cpy(lease->compose_hash, sizeof(lease->compose_hash), pv.compose_hash);
	if ((rc = api_call(p, "POST", "/cvms", body, 0, "create (POST /cvms)", 0, &http, &raw, err)) ||
	    (rc = phala_cvm_parse(raw, strlen(raw), &cvm, err)))
		goto out;
	if (!phala_cloud_id_ok(cvm.id)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: create: the response has no numeric CVM id");
		goto out;
	}
	if (cvm.app_id[0] && strcmp(cvm.app_id, pv.app_id) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: create: the CVM's app id %.40s is not the "
		                                    "provisioned %s", cvm.app_id, pv.app_id);
		goto out;
	}
	cpy(lease->cloud_id, sizeof(lease->cloud_id), cvm.id);
	TDXR_INFO(MOD, "created CVM %s (%s, app %s)", cvm.id, name, pv.app_id);
out:
	free(compose);
	free(body);
	free(raw);
	free(enc);
	return rc;
}

static int get_cvm(struct phala_priv *p, const char *id, struct phala_cvm *cvm, long *http, char **raw,
                   struct tdxr_err *err)
{
	char path[64];
	int rc;

	snprintf(path, sizeof(path), "/cvms/%s", id);
	rc = api_call(p, "GET", path, NULL, 1, "get CVM (GET /cvms/{id})", 404, http, raw, err);
	if (rc == 0 && *http != 404)
		rc = phala_cvm_parse(*raw, strlen(*raw), cvm, err);
	return rc;
}

static int phala_wait_ready(void *vp, struct exec_lease *lease, int deadline_ms, struct tdxr_err *err)
{
	struct phala_priv *p = vp;
	long end = now_ms() + (deadline_ms > 0 ? deadline_ms : 0), http;
	char path[64], status[32] = "", boot_error[256] = "", *raw = NULL;
	struct phala_cvm cvm;
	int rc = 0;

	if (!phala_cloud_id_ok(lease->cloud_id))
		return tdxr_err_set(err, TDXR_EINVAL, "phala: wait_ready: the lease has no CVM id");
	snprintf(path, sizeof(path), "/cvms/%.19s/state", lease->cloud_id);
	for (;;) {
		enum phala_state st;

		free(raw);
		raw = NULL;
		if ((rc = api_call(p, "GET", path, NULL, 1, "state (GET /cvms/{id}/state)", 0, &http, &raw,
		                   err)) ||
		    (rc = phala_state_parse(raw, strlen(raw), status, sizeof(status), boot_error,
		                            sizeof(boot_error), err)))
			goto out;
		st = phala_state_map(status, boot_error);
		if (st == PHALA_ST_RUNNING)
			break;
		if (st == PHALA_ST_FAILED) {
			char m[400];

			snprintf(m, sizeof(m), "phala: CVM %.19s failed to boot: status %.31s%s%.150s",
			         lease->cloud_id, status, boot_error[0] ? ", boot_error: " : "", boot_error);
			set_msg(p, err, TDXR_ERROR, m);
			rc = TDXR_ERROR;
			goto out;
		}
		if (now_ms() + (long)p->poll_ms > end) {
			rc = tdxr_err_set(err, TDXR_ETIMEOUT,
			                  "phala: CVM %s not running within %d s (last status \"%.31s\")",
			                  lease->cloud_id, deadline_ms / 1000, status);
			goto out;
		}
		sleep_ms(p->poll_ms);
	}
	free(raw);
	raw = NULL;
	if ((rc = get_cvm(p, lease->cloud_id, &cvm, &http, &raw, err)))
		goto out;
	if (http == 404) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND, "phala: CVM %s vanished while starting", lease->cloud_id);
		goto out;
	}
	if (!phala_domain_ok(cvm.base_domain)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: CVM %s has no usable gateway.base_domain",
		                  lease->cloud_id);
		goto out;
	}
	if (cvm.app_id[0] && strcmp(cvm.app_id, lease->app_id) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "phala: CVM %s reports app id %.40s, the lease has %s",
		                  lease->cloud_id, cvm.app_id, lease->app_id);
		goto out;
	}
	cpy(lease->gateway, sizeof(lease->gateway), cvm.base_domain);
out:
	free(raw);
	return rc;
}

static int phala_endpoint(void *vp, const struct exec_lease *lease, struct exec_endpoint *ep,
                          struct tdxr_err *err)
{
	(void)vp;
	memset(ep, 0, sizeof(*ep));
	if (!phala_app_id_ok(lease->app_id) || !phala_domain_ok(lease->gateway))
		return tdxr_err_set(err, TDXR_EINVAL, "phala: endpoint: the lease has no app id or gateway "
		                                      "domain (wait_ready first)");
	ep->tls = 1;
	ep->port = 443;
	snprintf(ep->server_name, sizeof(ep->server_name), "%.40s-22.%.200s", lease->app_id, lease->gateway);
	snprintf(ep->user, sizeof(ep->user), "root");
	snprintf(ep->work_dir, sizeof(ep->work_dir), "/var/volatile/tdx-runner");
	return 0;
}

/* Fetches one page of /cvms/paginated; calls fn per item. */
static int list_pages(struct phala_priv *p, int (*fn)(void *, const struct phala_cvm *), void *ud,
                      struct tdxr_err *err)
{
	unsigned page;
	int rc = 0;

	for (page = 1; page <= LIST_MAX_PAGES; page++) {
		char path[96], *raw = NULL;
		json_error_t jerr;
		json_t *o = NULL, *items, *it;
		size_t i, pages = 1, n_items;
		long http;

		snprintf(path, sizeof(path), "/cvms/paginated?page=%u&page_size=%d", page, LIST_PAGE_SIZE);
		if ((rc = api_call(p, "GET", path, NULL, 1, "list (GET /cvms/paginated)", 0, &http, &raw, err)))
			return rc;
		o = json_loadb(raw, strlen(raw), JSON_REJECT_DUPLICATES, &jerr);
		free(raw);
		items = json_is_object(o) ? json_object_get(o, "items") : NULL;
		if (!json_is_array(items)) {
			json_decref(o);
			return tdxr_err_set(err, TDXR_EINVAL, "phala: list: the response has no items array");
		}
		json_array_foreach(items, i, it) {
			struct phala_cvm c;
			char *t = json_dumps(it, JSON_COMPACT);

			if (t == NULL || phala_cvm_parse(t, strlen(t), &c, NULL) != 0) {
				free(t);
				continue; /* skip an item we cannot read; it cannot be ours to act on */
			}
			free(t);
			if ((rc = fn(ud, &c)) != 0)
				break;
		}
		it = json_object_get(o, "pages");
		if (json_is_integer(it) && json_integer_value(it) > 0)
			pages = (size_t)json_integer_value(it);
		n_items = json_array_size(items);
		json_decref(o); /* items belongs to o: not used after this */
		if (rc > 0)
			return 0; /* the callback found what it wanted */
		if (rc < 0)
			return rc;
		if (n_items == 0 || page >= pages)
			break;
	}
	return 0;
}

struct find_ctx {
	const char *name;
	struct phala_cvm found;
	int hit;
};

static int find_cb(void *ud, const struct phala_cvm *c)
{
	struct find_ctx *f = ud;

	if (!phala_name_matches(c->name, f->name) || !phala_cloud_id_ok(c->id))
		return 0;
	f->found = *c;
	f->hit = 1;
	return 1;
}

static int phala_destroy(void *vp, const struct exec_lease *lease, struct tdxr_err *err)
{
	struct phala_priv *p = vp;
	struct phala_cvm cvm;
	char id[24], path[64], *raw = NULL;
	long http;
	int rc;

	if (phala_cloud_id_ok(lease->cloud_id)) {
		snprintf(id, sizeof(id), "%.19s", lease->cloud_id);
	} else {
		/* create may have failed after the API made the CVM: look it up by name */
		struct find_ctx f;

		memset(&f, 0, sizeof(f));
		f.name = lease->name;
		if (lease->name[0] == '\0')
			return tdxr_err_set(err, TDXR_EINVAL, "phala: destroy: the lease has neither a CVM id "
			                                      "nor a name");
		if ((rc = list_pages(p, find_cb, &f, err)))
			return tdxr_err_prefix(err, "phala: destroy %s", lease->name);
		if (!f.hit) {
			TDXR_INFO(MOD, "destroy: no CVM named %s exists; nothing to delete", lease->name);
			return 0;
		}
		snprintf(id, sizeof(id), "%s", f.found.id);
	}
	/* ownership: the CVM must be the lease's (name and app id) */
	if ((rc = get_cvm(p, id, &cvm, &http, &raw, err)))
		goto out;
	if (http == 404) {
		if (phala_error_is_cvm_gone(http, raw, strlen(raw))) {
			TDXR_INFO(MOD, "destroy: CVM %s is already gone", id);
			goto out;
		}
		rc = tdxr_err_set(err, TDXR_ENOTFOUND,
		                  "phala: destroy: CVM %s: HTTP 404 without saying the CVM does not exist (wrong "
		                  "api_url?); not treating it as gone", id);
		goto out;
	}
	if (!phala_name_matches(cvm.name, lease->name) ||
	    (lease->app_id[0] && strcmp(cvm.app_id, lease->app_id) != 0)) {
		rc = tdxr_err_set(err, TDXR_EAUTH,
		                  "phala: destroy: ownership mismatch: CVM %s is \"%.63s\" (app %.40s), the lease "
		                  "is \"%.63s\" (app %.40s); not deleting",
		                  id, cvm.name, cvm.app_id, lease->name, lease->app_id[0] ? lease->app_id : "?");
		goto out;
	}
	free(raw);
	raw = NULL;
	snprintf(path, sizeof(path), "/cvms/%s", id);
	if ((rc = api_call(p, "DELETE", path, NULL, 1, "delete (DELETE /cvms/{id})", 404, &http, &raw, err)))
		goto out;
	if (http == 404 && !phala_error_is_cvm_gone(http, raw, strlen(raw))) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND,
		                  "phala: delete CVM %s: HTTP 404 without saying the CVM does not exist", id);
		goto out;
	}
	TDXR_INFO(MOD, "deleted CVM %s (%s)", id, cvm.name);
out:
	free(raw);
	return rc;
}

struct owned_ctx {
	const char *owner;
	struct exec_lease *v;
	size_t n, cap;
	int oom;
};

static int owned_cb(void *ud, const struct phala_cvm *c)
{
	struct owned_ctx *o = ud;
	struct exec_lease *l;

	if (!phala_name_owned(c->name, o->owner) || !phala_cloud_id_ok(c->id))
		return 0;
	if (o->n == o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 8;
		struct exec_lease *nv = realloc(o->v, nc * sizeof(*nv));

		if (nv == NULL) {
			o->oom = 1;
			return -1;
		}
		o->v = nv;
		o->cap = nc;
	}
	l = &o->v[o->n++];
	memset(l, 0, sizeof(*l));
	snprintf(l->executor, sizeof(l->executor), "phala");
	cpy(l->cloud_id, sizeof(l->cloud_id), c->id);
	cpy(l->app_id, sizeof(l->app_id), c->app_id);
	cpy(l->name, sizeof(l->name), c->name);
	cpy(l->gateway, sizeof(l->gateway), c->base_domain);
	return 0;
}

static int phala_list_owned(void *vp, const char *owner_host, struct exec_lease **out, size_t *n,
                            struct tdxr_err *err)
{
	struct owned_ctx o;
	int rc;

	*out = NULL;
	*n = 0;
	memset(&o, 0, sizeof(o));
	o.owner = owner_host ? owner_host : "";
	rc = list_pages(vp, owned_cb, &o, err);
	if (o.oom)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (rc) {
		free(o.v);
		return rc;
	}
	*out = o.v;
	*n = o.n;
	return 0;
}

static int phala_describe(void *vp, const struct exec_lease *lease, char **out, struct tdxr_err *err)
{
	struct phala_priv *p = vp;
	json_t *o = json_object();
	char path[64], status[32] = "", be[256] = "", *raw = NULL;
	struct tdxr_err e;
	long http;

	*out = NULL;
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_object_set_new(o, "executor", json_string("phala"));
	json_object_set_new(o, "cloud_id", json_string(lease->cloud_id));
	json_object_set_new(o, "name", json_string(lease->name));
	json_object_set_new(o, "app_id", json_string(lease->app_id));
	json_object_set_new(o, "gateway", json_string(lease->gateway));
	if (phala_cloud_id_ok(lease->cloud_id)) {
		snprintf(path, sizeof(path), "/cvms/%.19s/state", lease->cloud_id);
		tdxr_err_clear(&e);
		if (api_call(p, "GET", path, NULL, 1, "state", 0, &http, &raw, &e) == 0 &&
		    phala_state_parse(raw, strlen(raw), status, sizeof(status), be, sizeof(be), &e) == 0) {
			json_object_set_new(o, "status", json_string(status));
			if (be[0])
				json_object_set_new(o, "boot_error", json_string(be));
		} else {
			json_object_set_new(o, "status", json_string("unknown"));
			json_object_set_new(o, "error", json_string(e.msg));
		}
		free(raw);
	}
	return dump_json(o, out, err);
}

const struct exec_ops exec_phala = {
	.name = "phala",
	.caps = EXEC_CAP_GATEWAY,
	.priv_size = sizeof(struct phala_priv),
	.init = phala_init,
	.dispose = phala_dispose,
	.create = phala_create,
	.wait_ready = phala_wait_ready,
	.endpoint = phala_endpoint,
	.destroy = phala_destroy,
	.list_owned = phala_list_owned,
	.describe = phala_describe,
};
