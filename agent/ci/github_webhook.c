/*
 * github_webhook.c - see github_webhook.h. The handler's order is the trust
 * order: signature (over the raw bytes) first, then the headers GitHub sets,
 * then the replay set, and only then the JSON. The replay set is a ring of
 * (delivery id, body HMAC, time) in arrival order: a lookup scans the live
 * entries (a few thousand 32-byte compares under a mutex, microseconds); an
 * insert overwrites the oldest. Log lines name the peer, the delivery id (once
 * it is known to be well-formed) and the size, never the body or the secret.
 */
#include "agent/ci/github_webhook.h"

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MOD "github-webhook"
#define GH_REPLAY_MAX_LIMIT (1u << 20)

/* ==================================================================== parsing */

const char *gh_job_action_name(enum gh_job_action a)
{
	switch (a) {
	case GH_JOB_QUEUED: return "queued";
	case GH_JOB_WAITING: return "waiting";
	case GH_JOB_IN_PROGRESS: return "in_progress";
	case GH_JOB_COMPLETED: return "completed";
	default: return "other";
	}
}

void gh_job_event_free(struct gh_job_event *ev)
{
	size_t i;

	if (ev == NULL)
		return;
	for (i = 0; i < ev->n_labels; i++)
		free(ev->labels[i]);
	free(ev->labels);
	free(ev->runner_name);
	free(ev->name);
	free(ev->repository);
	free(ev);
}

/* A string of 1..max bytes without control characters (they would reach logs). */
static int text_ok(const json_t *v, size_t max)
{
	const char *s;
	size_t n, i;

	if (!json_is_string(v))
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > max || strlen(s) != n)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

/* [a-z_]{1,GH_WORD_MAX} into out. */
static int word_copy(const json_t *v, char *out)
{
	const char *s;
	size_t n, i;

	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > GH_WORD_MAX)
		return -1;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
			return -1;
	memcpy(out, s, n + 1);
	return 0;
}

/* A JSON integer in [min, INT64_MAX]. */
static int uint_get(const json_t *v, uint64_t min, uint64_t *out)
{
	json_int_t x;

	if (!json_is_integer(v))
		return -1;
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x < min)
		return -1;
	*out = (uint64_t)x;
	return 0;
}

/* "owner/name": one '/', both sides [A-Za-z0-9._-]. */
static int full_name_ok(const json_t *v)
{
	const char *s, *slash;
	size_t i, n;

	if (!text_ok(v, GH_NAME_MAX))
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	slash = strchr(s, '/');
	if (slash == NULL || slash == s || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] != '/' && s[i] != '.' && s[i] != '_' && s[i] != '-' &&
		    !(s[i] >= '0' && s[i] <= '9') && !(s[i] >= 'a' && s[i] <= 'z') &&
		    !(s[i] >= 'A' && s[i] <= 'Z'))
			return 0;
	return 1;
}

static int sha_ok(const json_t *v)
{
	const char *s;
	size_t n, i;

	if (!json_is_string(v))
		return 0;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n != 40 && n != 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static enum gh_job_action action_parse(const char *s)
{
	static const enum gh_job_action all[] = { GH_JOB_QUEUED, GH_JOB_WAITING, GH_JOB_IN_PROGRESS,
		                                  GH_JOB_COMPLETED };
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(s, gh_job_action_name(all[i])) == 0)
			return all[i];
	return GH_JOB_OTHER;
}

int gh_job_event_parse(const uint8_t *p, size_t len, struct gh_job_event **out, struct tdxr_err *err)
{
	struct gh_job_event *ev = NULL;
	json_t *o = NULL, *wj, *v, *lab, *repo;
	json_error_t jerr;
	const char *bad = NULL;
	size_t i;
	int rc = 0;

	*out = NULL;
	if (len > GH_WEBHOOK_BODY_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG,
		                    "github webhook: payload of %zu bytes is over the %u-byte cap", len,
		                    GH_WEBHOOK_BODY_MAX);
	o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "github webhook: payload is not JSON: %s (line %d, column %d)", jerr.text,
		                  jerr.line, jerr.column);
		goto out;
	}
	ev = calloc(1, sizeof(*ev));
	if (ev == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	wj = json_object_get(o, "workflow_job");
	repo = json_object_get(o, "repository");
	if (!json_is_object(o))
		bad = "payload (not an object)";
	else if (word_copy(json_object_get(o, "action"), ev->action_name) != 0)
		bad = "action";
	else if (!json_is_object(wj))
		bad = "workflow_job";
	else if (uint_get(json_object_get(wj, "id"), 1, &ev->job_id) != 0)
		bad = "workflow_job.id";
	else if (uint_get(json_object_get(wj, "run_id"), 1, &ev->run_id) != 0)
		bad = "workflow_job.run_id";
	else if (!sha_ok(json_object_get(wj, "head_sha")))
		bad = "workflow_job.head_sha";
	else if (word_copy(json_object_get(wj, "status"), ev->status) != 0)
		bad = "workflow_job.status";
	else if (!json_is_object(repo) || !full_name_ok(json_object_get(repo, "full_name")))
		bad = "repository.full_name";
	if (bad)
		goto invalid;
	ev->action = action_parse(ev->action_name);
	memcpy(ev->head_sha, json_string_value(json_object_get(wj, "head_sha")),
	       json_string_length(json_object_get(wj, "head_sha")) + 1);
	ev->run_attempt = 1;
	v = json_object_get(wj, "run_attempt");
	if (v && uint_get(v, 1, &ev->run_attempt) != 0) {
		bad = "workflow_job.run_attempt";
		goto invalid;
	}
	v = json_object_get(wj, "runner_id");
	if (v && !json_is_null(v) && uint_get(v, 0, &ev->runner_id) != 0) {
		bad = "workflow_job.runner_id";
		goto invalid;
	}
	v = json_object_get(wj, "conclusion");
	if (v && !json_is_null(v) && word_copy(v, ev->conclusion) != 0) {
		bad = "workflow_job.conclusion";
		goto invalid;
	}
	v = json_object_get(wj, "runner_name");
	if (v && !json_is_null(v)) {
		if (!text_ok(v, GH_NAME_MAX)) {
			bad = "workflow_job.runner_name";
			goto invalid;
		}
		ev->runner_name = strdup(json_string_value(v));
		if (ev->runner_name == NULL)
			goto nomem;
	}
	v = json_object_get(wj, "name");
	if (v && !json_is_null(v)) {
		if (!text_ok(v, GH_JOB_NAME_MAX)) {
			bad = "workflow_job.name";
			goto invalid;
		}
		ev->name = strdup(json_string_value(v));
		if (ev->name == NULL)
			goto nomem;
	}
	lab = json_object_get(wj, "labels");
	if (!json_is_array(lab) || json_array_size(lab) > GH_LABELS_MAX) {
		bad = "workflow_job.labels";
		goto invalid;
	}
	if (json_array_size(lab) > 0) {
		ev->labels = calloc(json_array_size(lab), sizeof(*ev->labels));
		if (ev->labels == NULL)
			goto nomem;
	}
	json_array_foreach(lab, i, v)
	{
		if (!text_ok(v, GH_LABEL_MAX)) {
			bad = "workflow_job.labels";
			goto invalid;
		}
		ev->labels[i] = strdup(json_string_value(v));
		if (ev->labels[i] == NULL)
			goto nomem;
		ev->n_labels = i + 1;
	}
	ev->repository = strdup(json_string_value(json_object_get(repo, "full_name")));
	if (ev->repository == NULL)
		goto nomem;
	*out = ev;
	ev = NULL;
	goto out;
invalid:
	rc = tdxr_err_set(err, TDXR_EINVAL,
	                  "github webhook: workflow_job payload: %s is missing or malformed", bad);
	goto out;
nomem:
	rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	gh_job_event_free(ev);
	json_decref(o);
	return rc;
}

/* ================================================================== signature */

int gh_webhook_signature_check(const void *secret, size_t secret_len, const uint8_t *body, size_t len,
                               const char *header, uint8_t *mac_out, struct tdxr_err *err)
{
	uint8_t want[32], got[EVP_MAX_MD_SIZE];
	unsigned int got_len = 0;
	int rc;

	if (header == NULL)
		return tdxr_err_set(err, TDXR_EAUTH, "github webhook: X-Hub-Signature-256 is missing");
	if (secret_len == 0 || secret_len > INT32_MAX)
		return tdxr_err_set(err, TDXR_EAUTH, "github webhook: no usable secret");
	if (strncmp(header, "sha256=", 7) != 0 || strlen(header) != 7 + 64 ||
	    tdxr_hex_decode_exact(header + 7, want, sizeof(want)) != 0)
		return tdxr_err_set(err, TDXR_EAUTH,
		                    "github webhook: X-Hub-Signature-256 is not sha256=<64 hex>");
	if (HMAC(EVP_sha256(), secret, (int)secret_len, len ? body : (const uint8_t *)"", len, got,
	         &got_len) == NULL ||
	    got_len != sizeof(want))
		return tdxr_err_set(err, TDXR_EAUTH, "github webhook: HMAC-SHA256 failed");
	if (mac_out)
		memcpy(mac_out, got, sizeof(want));
	rc = CRYPTO_memcmp(got, want, sizeof(want)) == 0 ? 0 : TDXR_EAUTH;
	OPENSSL_cleanse(got, sizeof(got));
	if (rc != 0)
		return tdxr_err_set(err, rc, "github webhook: signature does not match (wrong secret?)");
	return 0;
}

/* ================================================================= replay set */

struct replay_ent {
	int used;
	int64_t t;
	uint8_t mac[32];
	char id[GH_DELIVERY_MAX + 1];
};

struct gh_replay {
	pthread_mutex_t mu;
	struct replay_ent *e;
	size_t max;
	size_t next; /* ring position of the next insert (the oldest entry) */
	int64_t window;
};

int gh_replay_new(size_t max, unsigned window_s, struct gh_replay **out, struct tdxr_err *err)
{
	struct gh_replay *r;

	*out = NULL;
	if (max == 0 || max > GH_REPLAY_MAX_LIMIT || window_s == 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "github webhook: replay set needs 1..%u entries and a window",
		                    GH_REPLAY_MAX_LIMIT);
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	r->e = calloc(max, sizeof(*r->e));
	if (r->e == NULL) {
		free(r);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&r->mu, NULL);
	r->max = max;
	r->window = window_s;
	*out = r;
	return 0;
}

int gh_replay_check_add(struct gh_replay *r, const char *delivery, const uint8_t mac[32], int64_t now_s)
{
	struct replay_ent *x;
	size_t i, n = strlen(delivery);
	int seen = 0;

	if (n > GH_DELIVERY_MAX)
		return 1;
	pthread_mutex_lock(&r->mu);
	for (i = 0; i < r->max && !seen; i++) {
		x = &r->e[i];
		if (!x->used || now_s - x->t >= r->window)
			continue;
		if (CRYPTO_memcmp(x->mac, mac, 32) == 0 || strcmp(x->id, delivery) == 0)
			seen = 1;
	}
	if (!seen) {
		x = &r->e[r->next];
		x->used = 1;
		x->t = now_s;
		memcpy(x->mac, mac, 32);
		memcpy(x->id, delivery, n + 1);
		r->next = (r->next + 1) % r->max;
	}
	pthread_mutex_unlock(&r->mu);
	return seen;
}

void gh_replay_forget(struct gh_replay *r, const char *delivery, const uint8_t mac[32])
{
	size_t i;

	pthread_mutex_lock(&r->mu);
	for (i = 0; i < r->max; i++)
		if (r->e[i].used && strcmp(r->e[i].id, delivery) == 0 && memcmp(r->e[i].mac, mac, 32) == 0)
			r->e[i].used = 0;
	pthread_mutex_unlock(&r->mu);
}

void gh_replay_free(struct gh_replay *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->e);
	free(r);
}

/* =================================================================== receiver */

struct gh_webhook {
	struct tdxr_secret *secret;
	gh_webhook_fn fn;
	void *ctx;
	char *path;
	struct gh_replay *replay;
};

int gh_webhook_new(const struct tdxr_secret *secret, gh_webhook_fn fn, void *ctx,
                   const struct gh_webhook_opts *opts, struct gh_webhook **out, struct tdxr_err *err)
{
	struct gh_webhook *wh = NULL;
	const char *path = opts && opts->path ? opts->path : GH_WEBHOOK_PATH_DEFAULT;
	int rc;

	*out = NULL;
	if (secret == NULL || tdxr_secret_len(secret) == 0 || fn == NULL || path[0] != '/')
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "github webhook: needs a non-empty secret, a callback and a "
		                    "path starting with '/'");
	wh = calloc(1, sizeof(*wh));
	if (wh == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	wh->fn = fn;
	wh->ctx = ctx;
	wh->secret = tdxr_secret_new(tdxr_secret_str(secret), tdxr_secret_len(secret));
	wh->path = strdup(path);
	if (wh->secret == NULL || wh->path == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	rc = gh_replay_new(opts && opts->replay_max ? opts->replay_max : GH_REPLAY_MAX_DEFAULT,
	                   opts && opts->replay_window_s ? opts->replay_window_s : GH_REPLAY_WINDOW_S_DEFAULT,
	                   &wh->replay, err);
	if (rc != 0)
		goto out;
	*out = wh;
	wh = NULL;
out:
	gh_webhook_free(wh);
	return rc;
}

void gh_webhook_free(struct gh_webhook *wh)
{
	if (wh == NULL)
		return;
	tdxr_secret_free(wh->secret);
	gh_replay_free(wh->replay);
	free(wh->path);
	free(wh);
}

/* X-GitHub-Delivery: a GUID; 1..GH_DELIVERY_MAX of [0-9A-Za-z-]. */
static int delivery_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strspn(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-");
	return n > 0 && n <= GH_DELIVERY_MAX && s[n] == '\0';
}

static int event_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strspn(s, "abcdefghijklmnopqrstuvwxyz_");
	return n > 0 && n <= GH_WORD_MAX && s[n] == '\0';
}

/* "application/json", optionally with parameters ("; charset=utf-8"). */
static int json_type_ok(const char *ct)
{
	size_t n = strlen("application/json");

	return ct && strncasecmp(ct, "application/json", n) == 0 &&
	       (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void answer(struct httpd_resp *resp, unsigned status, const char *text, const char *result)
{
	httpd_resp_text(resp, status, text);
	metrics_add(METRIC_WEBHOOK_DELIVERIES, 1, result, NULL);
}

static int64_t mono_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static void webhook_handler(void *p, const struct httpd_req *req, struct httpd_resp *resp)
{
	struct gh_webhook *wh = p;
	const char *delivery = httpd_req_header(req, "X-GitHub-Delivery");
	const char *event = httpd_req_header(req, "X-GitHub-Event");
	const char *did = delivery_ok(delivery) ? delivery : "(invalid)";
	struct gh_job_event *ev = NULL;
	uint8_t mac[32];
	const uint8_t *body;
	struct tdxr_err e;
	size_t len;

	body = httpd_req_body(req, &len);
	if (gh_webhook_signature_check(tdxr_secret_str(wh->secret), tdxr_secret_len(wh->secret), body, len,
	                               httpd_req_header(req, "X-Hub-Signature-256"), mac, &e) != 0) {
		TDXR_WARN(MOD, "refused a delivery from %s (delivery %s, %zu bytes): %s", httpd_req_peer(req),
		          did, len, e.msg);
		answer(resp, 401, "bad signature\n", "bad_signature");
		goto out;
	}
	if (!delivery_ok(delivery) || !event_ok(event)) {
		TDXR_WARN(MOD,
		          "refused a signed delivery from %s: X-GitHub-Delivery or X-GitHub-Event missing or "
		          "malformed",
		          httpd_req_peer(req));
		answer(resp, 400, "X-GitHub-Delivery and X-GitHub-Event are required\n", "bad_request");
		goto out;
	}
	if (!json_type_ok(httpd_req_header(req, "Content-Type"))) {
		TDXR_WARN(MOD,
		          "delivery %s: content type is not application/json (set the webhook's content "
		          "type to application/json)",
		          delivery);
		answer(resp, 415, "content type must be application/json\n", "bad_request");
		goto out;
	}
	if (gh_replay_check_add(wh->replay, delivery, mac, mono_now_s()) != 0) {
		TDXR_WARN(MOD,
		          "refused delivery %s from %s: a replay (this delivery id or body was seen before)",
		          delivery, httpd_req_peer(req));
		answer(resp, 409, "replayed delivery\n", "replay");
		goto out;
	}
	if (strcmp(event, "ping") == 0) {
		TDXR_INFO(MOD, "ping (delivery %s)", delivery);
		answer(resp, 200, "pong\n", "ping");
		goto out;
	}
	if (strcmp(event, "workflow_job") != 0) {
		TDXR_DEBUG(MOD, "ignored a %s event (delivery %s)", event, delivery);
		answer(resp, 204, "", "ignored");
		goto out;
	}
	if (gh_job_event_parse(body, len, &ev, &e) != 0) {
		TDXR_WARN(MOD, "delivery %s: %s", delivery, e.msg);
		answer(resp, 400, "malformed workflow_job payload\n", "bad_request");
		goto out;
	}
	if (ev->action == GH_JOB_OTHER) {
		TDXR_DEBUG(MOD, "ignored workflow_job action %s (delivery %s)", ev->action_name, delivery);
		answer(resp, 204, "", "ignored");
		goto out;
	}
	memcpy(ev->delivery, delivery, strlen(delivery) + 1);
	TDXR_INFO(MOD, "workflow_job %s: job %llu run %llu of %s (delivery %s)", ev->action_name,
	          (unsigned long long)ev->job_id, (unsigned long long)ev->run_id, ev->repository, delivery);
	if (wh->fn(wh->ctx, ev) != 0) {
		TDXR_WARN(MOD, "delivery %s: the job queue refused the event (full?); answered 503",
		          delivery);
		gh_replay_forget(wh->replay, delivery, mac);
		answer(resp, 503, "busy, redeliver later\n", "queue_full");
		goto out;
	}
	ev = NULL; /* the queue's now */
	answer(resp, 202, "accepted\n", "accepted");
out:
	gh_job_event_free(ev);
	OPENSSL_cleanse(mac, sizeof(mac));
}

void gh_webhook_route(struct gh_webhook *wh, struct httpd_route *out)
{
	memset(out, 0, sizeof(*out));
	out->method = "POST";
	out->path = wh->path;
	out->max_body = GH_WEBHOOK_BODY_MAX;
	out->fn = webhook_handler;
	out->ctx = wh;
}
