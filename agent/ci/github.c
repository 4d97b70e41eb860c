/*
 * github.c - GitHub Actions (CONTRACTS.md §5): one attested box and one
 * ephemeral just-in-time runner per queued job whose labels we serve.
 *
 * Demand: queued workflow runs and their jobs are polled over REST
 * (If-None-Match / ETag, rate-limit headers honoured) or pushed by the
 * workflow_job webhook (agent/ci/github_webhook.c) through gh_demand_push; both
 * feed one de-duplicated queue. A job becomes: lease -> gate -> only then
 * generate-jitconfig -> the official runner started in the box with the JIT
 * config in ACTIONS_RUNNER_INPUT_JITCONFIG (on the SSH channel's stdin, never
 * argv) -> its output in the agent's log -> bind the job the runner actually
 * ran by runner_name -> publish (check run on head_sha, bundle as a release
 * asset on release events) -> delete the runner registration -> release.
 * A runner that never picked up a job is deleted after a deadline.
 *
 * Crash safety: before generate-jitconfig a 0600 record names the runner it is
 * about to create; a restarted agent deletes the runners of records whose owner
 * died (and the start-up reap releases their boxes).
 *
 * Trust boundary: every API answer is untrusted (bounded, type-checked); the
 * token, the App private key and JIT configs are secrets (tdxr_secret, wiped,
 * never logged).
 */
#include "agent/ci/ci.h"
#include "agent/ci/github.h"

#include "agent/box.h"
#include "agent/config.h"
#include "agent/provenance.h"
#include "attest/attest.h"
#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mask.h"
#include "common/secret.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define GH_API_VERSION "2022-11-28"
#define GH_SEEN_MAX 4096u  /* job ids remembered for de-duplication */
#define GH_QUEUE_MAX 1024u /* demand waiting for a slot */
#define GH_PICKUP_TIMEOUT_S 600
#define GH_JOB_TIMEOUT_S (24 * 3600)
#define GH_RUNNER_DIR_DEFAULT "/opt/actions-runner"

/* ------------------------------------------------------------------ source */

struct gh_demand {
	int64_t job_id, run_id;
	char head_sha[41];
	char job_name[128];
	char repo[256]; /* "owner/repo" the job belongs to */
};

struct gh_source {
	const struct config *cfg;
	const struct config_github *gc;
	pthread_mutex_t mu;       /* token, queue, seen */
	struct http_client *http; /* the polling thread's */
	char repo[256];           /* "owner/repo" or "" for organisation scope */
	/* installation token (App auth) */
	struct tdxr_secret *app_token;
	int64_t app_token_exp;
	/* demand */
	struct gh_demand queue[64];
	size_t q_head, q_len;
	int64_t seen[GH_SEEN_MAX];
	size_t seen_n, seen_next;
	int recover_pending; /* a dead agent's runner could not be deleted yet */
	time_t last_recover;
	char runs_etag[2][256];
	int which; /* 1 = the queued listing, 0 = in_progress */
	unsigned failures;
};

struct ci_job {
	struct gh_source *src;
	struct gh_demand d;
	char desc[256];
};

static int seen_has(struct gh_source *s, int64_t id)
{
	size_t i;

	for (i = 0; i < s->seen_n; i++)
		if (s->seen[i] == id)
			return 1;
	return 0;
}

static void seen_add(struct gh_source *s, int64_t id)
{
	s->seen[s->seen_next] = id;
	s->seen_next = (s->seen_next + 1) % GH_SEEN_MAX;
	if (s->seen_n < GH_SEEN_MAX)
		s->seen_n++;
}

/* Queues a demand once per job id (polling and webhooks both call it): 1 = queued, 0 = already
 * known, -1 = the queue is full (a webhook answers 503 so GitHub's redelivery can bring it back). */
int gh_demand_push(void *src, int64_t job_id, int64_t run_id, const char *head_sha, const char *name)
{
	return gh_demand_push_repo(src, NULL, job_id, run_id, head_sha, name);
}

int gh_demand_push_repo(void *src, const char *repo, int64_t job_id, int64_t run_id, const char *head_sha,
                        const char *name)
{
	struct gh_source *s = src;
	struct gh_demand *d;
	int queued = 0;

	if (repo == NULL || repo[0] == '\0')
		repo = s->repo;
	if (repo[0] == '\0' || (s->repo[0] && strcmp(repo, s->repo) != 0))
		return 0; /* not a repository this entry serves */
	pthread_mutex_lock(&s->mu);
	if (!seen_has(s, job_id) && s->q_len >= sizeof(s->queue) / sizeof(s->queue[0])) {
		queued = -1;
	} else if (!seen_has(s, job_id)) {
		seen_add(s, job_id);
		d = &s->queue[(s->q_head + s->q_len) % (sizeof(s->queue) / sizeof(s->queue[0]))];
		memset(d, 0, sizeof(*d));
		d->job_id = job_id;
		d->run_id = run_id;
		snprintf(d->head_sha, sizeof(d->head_sha), "%s", head_sha ? head_sha : "");
		snprintf(d->job_name, sizeof(d->job_name), "%s", name ? name : "");
		snprintf(d->repo, sizeof(d->repo), "%s", repo);
		s->q_len++;
		queued = 1;
	}
	pthread_mutex_unlock(&s->mu);
	return queued;
}

static int demand_pop(struct gh_source *s, struct gh_demand *out)
{
	int got = 0;

	pthread_mutex_lock(&s->mu);
	if (s->q_len > 0) {
		*out = s->queue[s->q_head];
		s->q_head = (s->q_head + 1) % (sizeof(s->queue) / sizeof(s->queue[0]));
		s->q_len--;
		got = 1;
	}
	pthread_mutex_unlock(&s->mu);
	return got;
}

/* ---------------------------------------------------------------- App auth */

static void b64url(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < n && o + 4 < cap; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1 && o + 2 < cap) {
		uint32_t v = (uint32_t)p[i] << 16;

		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
	} else if (n - i == 2 && o + 3 < cap) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
	}
	out[o] = '\0';
}

/* An App JWT (RS256): iss = app id, iat 60 s in the past (clock skew), exp iat + 9 min. */
int gh_app_jwt(uint64_t app_id, const struct tdxr_secret *pem, int64_t now, char *out, size_t cap,
               struct tdxr_err *err)
{
	char head[64], body[128], claims[128], signing[256], sig64[700];
	uint8_t sig[600];
	size_t siglen = sizeof(sig);
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *md = NULL;
	BIO *bio;
	int rc = 0;

	b64url((const uint8_t *)"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", 27, head, sizeof(head));
	snprintf(claims, sizeof(claims), "{\"iat\":%lld,\"exp\":%lld,\"iss\":\"%llu\"}",
	         (long long)(now - 60), (long long)(now + 540), (unsigned long long)app_id);
	b64url((const uint8_t *)claims, strlen(claims), body, sizeof(body));
	snprintf(signing, sizeof(signing), "%s.%s", head, body);
	bio = BIO_new_mem_buf(tdxr_secret_str(pem), (int)tdxr_secret_len(pem));
	if (bio)
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "github: the App private key is not an RSA PEM key");
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (const uint8_t *)signing, strlen(signing)) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "github: RS256 signing failed");
		goto out;
	}
	b64url(sig, siglen, sig64, sizeof(sig64));
	if ((size_t)snprintf(out, cap, "%s.%s", signing, sig64) >= cap)
		rc = tdxr_err_set(err, TDXR_EINVAL, "github: JWT buffer too small");
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	return rc;
}

/* ------------------------------------------------------------------- calls */

struct gh_call {
	enum http_method method;
	const char *url;
	const char *body; /* JSON */
	const char *content_type;
	const char *body_file; /* release asset upload */
	const char *if_none_match;
	int no_auth;
	int idempotent;
};

/* The bearer token for a request: the configured one, or a fresh App installation token. */
static int gh_token(struct gh_source *s, struct http_client *h, char *out, size_t cap, struct tdxr_err *err)
{
	int64_t now = (int64_t)time(NULL);
	int rc = 0;

	if (!s->gc->have_app) {
		if ((size_t)snprintf(out, cap, "%s", tdxr_secret_str(s->gc->token)) >= cap)
			return tdxr_err_set(err, TDXR_EINVAL, "github: token too long");
		return 0;
	}
	pthread_mutex_lock(&s->mu);
	if (s->app_token == NULL || s->app_token_exp - now < 300) {
		char jwt[2048], url[HTTP_URL_MAX], auth[2100];
		const char *hdrs[5];
		struct http_request rq;
		struct http_response rs;
		json_t *o = NULL;

		if ((rc = gh_app_jwt(s->gc->app_id, s->gc->app_private_key, now, jwt, sizeof(jwt), err)))
			goto out;
		snprintf(url, sizeof(url), "%s/app/installations/%llu/access_tokens", s->gc->api_url,
		         (unsigned long long)s->gc->app_installation_id);
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", jwt);
		hdrs[0] = auth;
		hdrs[1] = "Accept: application/vnd.github+json";
		hdrs[2] = "X-GitHub-Api-Version: " GH_API_VERSION;
		hdrs[3] = NULL;
		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_POST;
		rq.url = url;
		rq.headers = hdrs;
		http_response_init(&rs);
		rc = http_request_send(h, &rq, &rs, err);
		if (!rc)
			rc = http_response_check(&rq, &rs, err);
		if (!rc) {
			o = json_loadb((const char *)rs.body.data, rs.body.len, JSON_REJECT_DUPLICATES, NULL);
			if (!json_is_string(json_object_get(o, "token"))) {
				rc = tdxr_err_set(err, TDXR_EINVAL,
				                  "github: access_tokens answer has no token");
			} else {
				const char *exp = json_string_value(json_object_get(o, "expires_at"));
				int64_t e = now + 3000;

				if (exp)
					tdxr_time_parse_rfc3339(exp, &e);
				tdxr_secret_free(s->app_token);
				s->app_token =
				    tdxr_secret_new(json_string_value(json_object_get(o, "token")),
				                    json_string_length(json_object_get(o, "token")));
				s->app_token_exp = e;
			}
		}
		json_decref(o);
		http_response_dispose(&rs);
		OPENSSL_cleanse(jwt, sizeof(jwt));
		OPENSSL_cleanse(auth, sizeof(auth));
		if (rc) {
			tdxr_err_prefix(err, "github: App installation token");
			goto out;
		}
	}
	if (s->app_token == NULL || (size_t)snprintf(out, cap, "%s", tdxr_secret_str(s->app_token)) >= cap)
		rc = tdxr_err_set(err, TDXR_EINVAL, "github: no installation token");
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* How long a rate-limited answer (403/429) asks us to wait, in ms; -1 when it is not a rate
 * limit. Retry-After first; then x-ratelimit-remaining 0 with x-ratelimit-reset (epoch seconds);
 * a secondary limit without either: a minute, as GitHub's documentation says. */
static long gh_rate_wait(const struct http_response *rs)
{
	const char *rem = http_response_header(rs, "x-ratelimit-remaining");
	const char *reset = http_response_header(rs, "x-ratelimit-reset");
	long ra;
	uint64_t t;

	if (rs->status != 403 && rs->status != 429)
		return -1;
	if ((ra = http_retry_after_ms(rs, 3600000)) >= 0)
		return ra < 1000 ? 1000 : ra;
	if (rem && strcmp(rem, "0") == 0 && reset && tdxr_parse_u64(reset, UINT32_MAX, &t, NULL) == 0) {
		int64_t d = (int64_t)t - (int64_t)time(NULL) + 1;

		return d <= 1 ? 1000 : d > 3600 ? 3600000L : (long)d * 1000;
	}
	if (rs->status == 429 || (rs->body.len && strstr((const char *)rs->body.data, "rate limit")))
		return 60000;
	return -1;
}

/* One REST call with auth, the API headers, bounded retries (429/5xx/rate limit), and rate-limit
 * awareness. resp holds the last answer; returns 0 when an answer arrived (any status). */
static int gh_send(struct gh_source *s, struct http_client *h, const struct gh_call *c,
                   struct http_response *rs, struct tdxr_err *err)
{
	char tok[1024], auth[1100], inm[300], ct[128];
	const char *hdrs[8];
	struct http_request rq;
	unsigned attempt;
	size_t n = 0;
	int rc;

	if (!c->no_auth && (rc = gh_token(s, h, tok, sizeof(tok), err)))
		return rc;
	if (!c->no_auth) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
		hdrs[n++] = auth;
	}
	hdrs[n++] = "Accept: application/vnd.github+json";
	hdrs[n++] = "X-GitHub-Api-Version: " GH_API_VERSION;
	if (c->if_none_match && c->if_none_match[0]) {
		snprintf(inm, sizeof(inm), "If-None-Match: %s", c->if_none_match);
		hdrs[n++] = inm;
	}
	if (c->body || c->body_file) {
		snprintf(ct, sizeof(ct), "Content-Type: %s",
		         c->content_type ? c->content_type : "application/json");
		hdrs[n++] = ct;
	}
	hdrs[n] = NULL;
	for (attempt = 0;; attempt++) {
		long wait;

		memset(&rq, 0, sizeof(rq));
		rq.method = c->method;
		rq.url = c->url;
		rq.headers = hdrs;
		rq.body = c->body;
		rq.body_len = c->body ? strlen(c->body) : 0;
		rq.body_file = c->body_file;
		if (c->body_file)
			rq.timeout_ms = 600000;
		rc = http_request_send(h, &rq, rs, err);
		if (rc == 0 && rs->status < 500 && gh_rate_wait(rs) < 0)
			break;
		if (attempt >= 4)
			break;
		/* Rate limited for long: leave the wait to the caller (the poll loop), do not sleep here. */
		if (rc == 0 && gh_rate_wait(rs) > 15000)
			break;
		if (rc != 0 && !http_retry_should(rc, rs, c->idempotent ? 0 : HTTP_RETRY_UNSAFE))
			break;
		if (rc == 0 && rs->status >= 500 && !c->idempotent && rs->status != 503)
			break;
		wait = rc == 0 ? gh_rate_wait(rs) : -1;
		if (wait < 0 && rc == 0)
			wait = http_retry_after_ms(rs, 60000);
		if (wait < 0)
			wait = http_backoff_ms(attempt, 500, 15000);
		TDXR_WARN("github", "%s %s: %s; retrying in %ld ms", http_method_name(c->method), "(api)",
		          rc ? err->msg : "rate limited or server error", wait);
		usleep((useconds_t)wait * 1000);
	}
	OPENSSL_cleanse(tok, sizeof(tok));
	OPENSSL_cleanse(auth, sizeof(auth));
	return rc;
}

/* A call whose answer must be 2xx and (when want_json) a JSON object/array: *out is the caller's. */
static int gh_json(struct gh_source *s, struct http_client *h, const struct gh_call *c, json_t **out,
                   long *status, struct tdxr_err *err)
{
	struct http_request rq;
	struct http_response rs;
	json_error_t je;
	int rc;

	if (out)
		*out = NULL;
	http_response_init(&rs);
	rc = gh_send(s, h, c, &rs, err);
	if (status)
		*status = rs.status;
	if (rc == 0) {
		memset(&rq, 0, sizeof(rq));
		rq.method = c->method;
		rq.url = c->url;
		if ((rc = http_response_check(&rq, &rs, err)) == 0 && out && rs.body.len > 0) {
			*out =
			    json_loadb((const char *)rs.body.data, rs.body.len, JSON_REJECT_DUPLICATES, &je);
			if (*out == NULL)
				rc = tdxr_err_set(err, TDXR_EINVAL, "github: %s: invalid JSON at line %d: %s",
				                  http_method_name(c->method), je.line, je.text);
		}
	}
	http_response_dispose(&rs);
	return rc;
}

/* ------------------------------------------------------------------ polling */

static const char *const default_labels[] = { "self-hosted", "linux", "x64", "X64", "Linux", NULL };

static int is_default_label(const char *l)
{
	size_t i;

	for (i = 0; default_labels[i]; i++)
		if (strcasecmp(l, default_labels[i]) == 0)
			return 1;
	return 0;
}

/* Ours when every label is one we serve and at least one is not a default label. */
int gh_labels_match(const struct config_strlist *ours, const char *const *labels, size_t n)
{
	size_t i, k;
	int custom = 0;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		int found = 0;

		for (k = 0; k < ours->n && !found; k++)
			found = strcasecmp(labels[i], ours->v[k]) == 0;
		if (!found)
			return 0;
		custom |= !is_default_label(labels[i]);
	}
	return custom;
}

static int job_labels_match(const struct gh_source *s, json_t *labels)
{
	const char *v[64];
	size_t i, n = 0;
	json_t *l;

	if (!json_is_array(labels) || json_array_size(labels) > 64)
		return 0;
	json_array_foreach(labels, i, l)
	{
		if (!json_is_string(l))
			return 0;
		v[n++] = json_string_value(l);
	}
	return gh_labels_match(&s->gc->labels, v, n);
}

static int gh_recover(void *p, struct tdxr_err *err);

static int gh_poll(void *p, struct ci_job **job, long *next_ms, struct tdxr_err *err)
{
	struct gh_source *s = p;
	struct gh_demand d;
	struct http_response rs;
	struct gh_call c;
	char url[HTTP_URL_MAX];
	json_t *o = NULL, *runs, *r;
	size_t i;
	int rc = 0;

	*job = NULL;
	*next_ms = 5000;
	http_response_init(&rs);
	/* Runners a dead agent left that GitHub still counts as busy (422) are retried here until
	 * GitHub gives up on their job and lets them go. */
	if (s->recover_pending && time(NULL) - s->last_recover >= 5) {
		struct tdxr_err re;

		s->last_recover = time(NULL);
		if (gh_recover(s, &re) == 0)
			s->recover_pending = 0;
	}
	if (demand_pop(s, &d))
		goto have;
	if (s->repo[0] == '\0')
		goto out; /* organisation scope: demand comes from webhooks */
	/* Queued jobs also sit in in_progress runs (a run is "queued" only while none of its jobs
	 * started): both listings, alternately, each with its own ETag. */
	s->which = !s->which;
	snprintf(url, sizeof(url), "%s/repos/%s/actions/runs?status=%s&per_page=50", s->gc->api_url, s->repo,
	         s->which ? "queued" : "in_progress");
	memset(&c, 0, sizeof(c));
	c.method = HTTP_GET;
	c.url = url;
	c.if_none_match = s->runs_etag[s->which];
	c.idempotent = 1;
	rc = gh_send(s, s->http, &c, &rs, err);
	if (rc) {
		s->failures++;
		*next_ms = http_backoff_ms(s->failures, 1000, 60000);
		goto out;
	}
	if (rs.status == 304) {
		*next_ms = s->which ? 0 : 5000; /* the other listing right away */
		goto out;                       /* nothing new */
	}
	if (rs.status == 401) {
		rc = tdxr_err_set(err, TDXR_EAUTH, "github %s: the token was refused (HTTP 401)", s->repo);
		goto out;
	}
	if (rs.status != 200) {
		struct http_request rq;

		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_GET;
		rq.url = url;
		rc = http_response_check(&rq, &rs, err);
		if (rc == TDXR_EAUTH)
			rc = TDXR_EIO;
		s->failures++;
		/* Rate limited: nothing (neither listing) until the limit is over. */
		*next_ms =
		    gh_rate_wait(&rs) >= 0 ? gh_rate_wait(&rs) : http_backoff_ms(s->failures, 1000, 60000);
		goto out;
	}
	s->failures = 0;
	if (http_response_header(&rs, "ETag"))
		snprintf(s->runs_etag[s->which], sizeof(s->runs_etag[0]), "%s",
		         http_response_header(&rs, "ETag"));
	o = json_loadb((const char *)rs.body.data, rs.body.len, JSON_REJECT_DUPLICATES, NULL);
	runs = json_object_get(o, "workflow_runs");
	if (!json_is_array(runs)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "github: runs listing without workflow_runs");
		goto out;
	}
	json_array_foreach(runs, i, r)
	{
		json_t *rid = json_object_get(r, "id"), *jobs = NULL, *jl, *j;
		char jurl[HTTP_URL_MAX];
		struct tdxr_err e;
		size_t k;

		if (!json_is_integer(rid))
			continue;
		snprintf(jurl, sizeof(jurl),
		         "%s/repos/%s/actions/runs/%" JSON_INTEGER_FORMAT "/jobs?per_page=100",
		         s->gc->api_url, s->repo, json_integer_value(rid));
		memset(&c, 0, sizeof(c));
		c.method = HTTP_GET;
		c.url = jurl;
		c.idempotent = 1;
		if (gh_json(s, s->http, &c, &jobs, NULL, &e)) {
			TDXR_WARN("github", "jobs of run %" JSON_INTEGER_FORMAT ": %s",
			          json_integer_value(rid), e.msg);
			continue;
		}
		jl = json_object_get(jobs, "jobs");
		json_array_foreach(jl, k, j)
		{
			const char *st = json_string_value(json_object_get(j, "status"));
			json_t *jid = json_object_get(j, "id");

			if (!json_is_integer(jid) || st == NULL || strcmp(st, "queued") != 0 ||
			    !job_labels_match(s, json_object_get(j, "labels")))
				continue;
			gh_demand_push(s, json_integer_value(jid), json_integer_value(rid),
			               json_string_value(json_object_get(j, "head_sha")),
			               json_string_value(json_object_get(j, "name")));
		}
		json_decref(jobs);
	}
	if (!demand_pop(s, &d))
		goto out;
have:
	*job = calloc(1, sizeof(**job));
	if (*job == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	(*job)->src = s;
	(*job)->d = d;
	snprintf((*job)->desc, sizeof((*job)->desc), "github job %" PRId64 " (run %" PRId64 ", %.100s)",
	         d.job_id, d.run_id, d.job_name[0] ? d.job_name : "?");
	*next_ms = 0;
out:
	json_decref(o);
	http_response_dispose(&rs);
	return rc;
}

/* --------------------------------------------------------------- one job */

struct gh_run {
	struct ci_job *j;
	struct gh_source *s;
	const char *repo; /* the job's repository */
	const struct ci_env *env;
	struct http_client *http;
	struct box *box;
	char runner_name[96];
	int64_t runner_id;
	char record[PATH_MAX - 64];
	int record_fd;
	struct tdxr_mask *mask;
	char line[4096];
	size_t line_len;
	atomic_int picked;
	atomic_int exec_cancel;
	atomic_int done;
	volatile sig_atomic_t box_cancel;
	/* what the runner actually ran */
	int64_t bound_job, bound_run;
	char bound_sha[41], bound_conclusion[32], bound_name[128];
	char run_event[32], run_branch[256];
};

static void scope_path(const struct gh_source *s, char *out, size_t cap)
{
	if (s->repo[0])
		snprintf(out, cap, "repos/%s", s->repo);
	else
		snprintf(out, cap, "orgs/%s", s->gc->organization);
}

/* Runner output -> the agent's log, a line at a time, JIT config masked. */
static int log_sink(void *ctx, const uint8_t *p, size_t n)
{
	struct gh_run *r = ctx;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' || r->line_len + 1 >= sizeof(r->line)) {
			r->line[r->line_len] = '\0';
			if (strstr(r->line, "Running job:"))
				atomic_store(&r->picked, 1);
			TDXR_INFO("github", "[%s] %s", r->runner_name, r->line);
			r->line_len = 0;
			if (p[i] == '\n')
				continue;
		}
		r->line[r->line_len++] = (char)p[i];
	}
	return 0;
}

static int on_runner_output(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct gh_run *r = ctx;

	(void)which;
	tdxr_mask_write(r->mask, p, n, NULL);
	return 0;
}

static void *watchdog(void *arg)
{
	struct gh_run *r = arg;
	const char *e = getenv("TDXR_GITHUB_PICKUP_TIMEOUT_S");
	uint64_t pickup = GH_PICKUP_TIMEOUT_S;
	time_t t0 = time(NULL);

	if (e)
		tdxr_parse_u64(e, 86400, &pickup, NULL);
	while (!atomic_load(&r->done)) {
		if (r->env->stop && atomic_load(r->env->stop)) {
			atomic_store(&r->exec_cancel, 1);
			r->box_cancel = 1;
		}
		if (!atomic_load(&r->picked) && time(NULL) - t0 >= (time_t)pickup) {
			TDXR_WARN("github", "%s: no job picked up within %llu s: stopping the runner",
			          r->runner_name, (unsigned long long)pickup);
			atomic_store(&r->exec_cancel, 1);
			break;
		}
		usleep(200 * 1000);
	}
	return NULL;
}

/* Runs a short command in the box with optional stdin; 0 when it exited 0. */
static int box_sh(struct box *b, const char *cmd, const void *in, size_t in_len, int in_fd,
                  struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result res;
	int rc;

	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_buf = in;
	eo.stdin_len = in_len;
	eo.stdin_fd = in ? -1 : in_fd;
	eo.timeout_ms = 600000;
	if ((rc = box_exec(b, &eo, &res, err)))
		return rc;
	if (!res.exited || res.exit_status != 0)
		return tdxr_err_set(err, TDXR_EIO, "`%.60s...` failed in the box (exit %d)", cmd,
		                    res.exited ? res.exit_status : -1);
	return 0;
}

/* The pinned runner tarball, downloaded once (redirects followed), SHA-256 checked. */
static int runner_tarball(struct gh_run *r, char *path, size_t cap, struct tdxr_err *err)
{
	const struct config_github *gc = r->s->gc;
	char dir[PATH_MAX - 128], url[HTTP_URL_MAX];
	struct http_response rs;
	struct http_request rq;
	unsigned hop;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/runner-cache", r->env->cfg->state_dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return tdxr_err_set(err, TDXR_EIO, "github: cannot create %s", dir);
	if ((size_t)snprintf(path, cap, "%s/%s.tar.gz", dir, gc->runner_sha256) >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	if (access(path, R_OK) == 0)
		return 0; /* named by its digest: checked when it was stored */
	snprintf(url, sizeof(url), "%s", gc->runner_tarball_url);
	http_response_init(&rs);
	for (hop = 0;; hop++) {
		struct http_client_opts ho;
		struct http_client *h = NULL;
		const char *loc;

		memset(&ho, 0, sizeof(ho));
		ho.timeout_ms = 600000;
		ho.max_body = 512u << 20;
		if ((rc = http_client_new(&ho, &h, err)))
			break;
		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_GET;
		rq.url = url;
		rc = http_request_send(h, &rq, &rs, err);
		http_client_free(h);
		if (rc)
			break;
		loc = http_response_header(&rs, "Location");
		if ((rs.status == 301 || rs.status == 302 || rs.status == 303 || rs.status == 307 ||
		     rs.status == 308) &&
		    loc && hop < 5) {
			char base[HTTP_URL_MAX];

			/* relative Location: resolve against scheme://host */
			if (loc[0] == '/') {
				const char *p = strstr(url, "://");
				const char *sl = p ? strchr(p + 3, '/') : NULL;

				snprintf(base, sizeof(base), "%.*s%s",
				         sl ? (int)(sl - url) : (int)strlen(url), url, loc);
			} else {
				snprintf(base, sizeof(base), "%s", loc);
			}
			snprintf(url, sizeof(url), "%s", base);
			continue;
		}
		if ((rc = http_response_check(&rq, &rs, err)))
			break;
		{
			uint8_t md[32];
			char hex[65];
			unsigned int mdlen = 0;

			if (EVP_Digest(rs.body.data, rs.body.len, md, &mdlen, EVP_sha256(), NULL) != 1) {
				rc = tdxr_err_set(err, TDXR_ERROR, "SHA-256 failed");
				break;
			}
			tdxr_hex_encode(md, 32, hex);
			if (strcmp(hex, gc->runner_sha256) != 0) {
				rc = tdxr_err_set(
				    err, TDXR_EATTEST,
				    "github: the runner tarball's SHA-256 is %s, not the pinned %s", hex,
				    gc->runner_sha256);
				break;
			}
			rc = tdxr_file_write_atomic(path, rs.body.data, rs.body.len, 0600, err);
		}
		break;
	}
	http_response_dispose(&rs);
	return rc ? tdxr_err_prefix(err, "runner tarball") : 0;
}

/* The 0600 record that lets a restarted agent delete a runner this process registered. */
static int record_write(struct gh_run *r, struct tdxr_err *err)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "api_url", r->s->gc->api_url, "scope",
	                      r->s->repo[0] ? r->s->repo : r->s->gc->organization, "runner_name",
	                      r->runner_name, "runner_id", (json_int_t)r->runner_id);
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int rc;

	json_decref(o);
	if (t == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = tdxr_file_write_atomic(r->record, t, strlen(t), 0600, err);
	free(t);
	if (rc == 0 && r->record_fd < 0) {
		r->record_fd = open(r->record, O_RDONLY | O_CLOEXEC);
		if (r->record_fd >= 0 && flock(r->record_fd, LOCK_EX | LOCK_NB) != 0) {
			close(r->record_fd);
			r->record_fd = -1;
		}
	}
	return rc;
}

static int runner_delete(struct gh_source *s, struct http_client *h, int64_t id, struct tdxr_err *err)
{
	char url[HTTP_URL_MAX], sp[300];
	struct gh_call c;
	long st = 0;
	int rc;

	scope_path(s, sp, sizeof(sp));
	snprintf(url, sizeof(url), "%s/%s/actions/runners/%" PRId64, s->gc->api_url, sp, id);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_DELETE;
	c.url = url;
	c.idempotent = 1;
	rc = gh_json(s, h, &c, NULL, &st, err);
	if (rc && st == 404)
		return 0; /* already gone: JIT runners remove themselves after their job */
	return rc;
}

/* Finds the job the runner actually ran (by runner_name), starting with the run it was made for. */
static int bind_job(struct gh_run *r, struct tdxr_err *err)
{
	struct gh_source *s = r->s;
	char url[HTTP_URL_MAX];
	struct gh_call c;
	json_t *runs = NULL, *ids, *v;
	int64_t cand[21];
	size_t n = 0, i, k;
	int rc = TDXR_ENOTFOUND;

	cand[n++] = r->j->d.run_id;
	snprintf(url, sizeof(url), "%s/repos/%s/actions/runs?per_page=20", s->gc->api_url, r->repo);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_GET;
	c.url = url;
	c.idempotent = 1;
	if (gh_json(s, r->http, &c, &runs, NULL, err) == 0) {
		ids = json_object_get(runs, "workflow_runs");
		json_array_foreach(ids, i, v)
		{
			json_t *id = json_object_get(v, "id");

			if (json_is_integer(id) && json_integer_value(id) != r->j->d.run_id && n < 21)
				cand[n++] = json_integer_value(id);
		}
	}
	json_decref(runs);
	for (k = 0; k < n && rc == TDXR_ENOTFOUND; k++) {
		json_t *jobs = NULL, *j;
		struct tdxr_err e;

		snprintf(url, sizeof(url), "%s/repos/%s/actions/runs/%" PRId64 "/jobs?per_page=100",
		         s->gc->api_url, r->repo, cand[k]);
		memset(&c, 0, sizeof(c));
		c.method = HTTP_GET;
		c.url = url;
		c.idempotent = 1;
		if (gh_json(s, r->http, &c, &jobs, NULL, &e))
			continue;
		json_array_foreach(json_object_get(jobs, "jobs"), i, j)
		{
			const char *rn = json_string_value(json_object_get(j, "runner_name"));

			if (rn && strcmp(rn, r->runner_name) == 0 &&
			    json_is_integer(json_object_get(j, "id"))) {
				r->bound_job = json_integer_value(json_object_get(j, "id"));
				r->bound_run = cand[k];
				snprintf(r->bound_sha, sizeof(r->bound_sha), "%s",
				         json_string_value(json_object_get(j, "head_sha")) ?: "");
				snprintf(r->bound_conclusion, sizeof(r->bound_conclusion), "%s",
				         json_string_value(json_object_get(j, "conclusion")) ?: "");
				snprintf(r->bound_name, sizeof(r->bound_name), "%s",
				         json_string_value(json_object_get(j, "name")) ?: "");
				rc = 0;
				break;
			}
		}
		json_decref(jobs);
	}
	if (rc)
		return tdxr_err_set(err, TDXR_ENOTFOUND, "binding: no job ran on runner %s", r->runner_name);
	/* The run's event and branch/tag (release publishing). */
	{
		json_t *run = NULL;

		snprintf(url, sizeof(url), "%s/repos/%s/actions/runs/%" PRId64, s->gc->api_url, r->repo,
		         r->bound_run);
		memset(&c, 0, sizeof(c));
		c.method = HTTP_GET;
		c.url = url;
		c.idempotent = 1;
		if (gh_json(s, r->http, &c, &run, NULL, err) == 0) {
			snprintf(r->run_event, sizeof(r->run_event), "%s",
			         json_string_value(json_object_get(run, "event")) ?: "");
			snprintf(r->run_branch, sizeof(r->run_branch), "%s",
			         json_string_value(json_object_get(run, "head_branch")) ?: "");
		}
		json_decref(run);
	}
	return 0;
}

/* After a failed asset upload: ours already uploaded (an answer was lost) is done; a "starter"
 * a failed upload left is deleted; then the upload is tried once more. */
static int asset_repair(struct gh_source *s, struct http_client *h, const char *repo, int64_t rel_id,
                        const char *name, const char *upload_url, struct gh_call *up, struct tdxr_err *err)
{
	char url[HTTP_URL_MAX];
	struct gh_call c;
	json_t *list = NULL, *a;
	size_t i;
	int rc, found = 0;

	snprintf(url, sizeof(url), "%s/repos/%s/releases/%" PRId64 "/assets?per_page=100", s->gc->api_url,
	         repo, rel_id);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_GET;
	c.url = url;
	c.idempotent = 1;
	if ((rc = gh_json(s, h, &c, &list, NULL, err)))
		return rc;
	json_array_foreach(list, i, a)
	{
		const char *n = json_string_value(json_object_get(a, "name"));
		const char *st = json_string_value(json_object_get(a, "state"));

		if (n == NULL || strcmp(n, name) != 0 || !json_is_integer(json_object_get(a, "id")))
			continue;
		found = 1;
		if (st && strcmp(st, "uploaded") == 0) {
			rc = 0;
			break;
		}
		snprintf(url, sizeof(url), "%s/repos/%s/releases/assets/%" JSON_INTEGER_FORMAT,
		         s->gc->api_url, repo, json_integer_value(json_object_get(a, "id")));
		memset(&c, 0, sizeof(c));
		c.method = HTTP_DELETE;
		c.url = url;
		c.idempotent = 1;
		if ((rc = gh_json(s, h, &c, NULL, NULL, err)) == 0) {
			TDXR_INFO("github", "%s: deleted a half-uploaded asset %s; uploading again", repo,
			          name);
			up->url = upload_url;
			rc = gh_json(s, h, up, NULL, NULL, err);
		}
		break;
	}
	json_decref(list);
	if (!found) {
		up->url = upload_url;
		rc = gh_json(s, h, up, NULL, NULL, err);
	}
	return rc;
}

/* Uploads file as asset `name` of the release tagged `tag` (uploads endpoint), repairing what a
 * failed earlier upload left. */
static int release_upload(struct gh_source *s, struct http_client *h, const char *repo, const char *tag,
                          const char *name, const char *file, struct tdxr_err *err)
{
	char url[HTTP_URL_MAX];
	struct gh_call c;
	json_t *rel = NULL;
	int64_t rel_id;
	long st = 0;
	int rc;

	snprintf(url, sizeof(url), "%s/repos/%s/releases/tags/%s", s->gc->api_url, repo, tag);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_GET;
	c.url = url;
	c.idempotent = 1;
	if ((rc = gh_json(s, h, &c, &rel, NULL, err)))
		return tdxr_err_prefix(err, "release %s", tag);
	if (!json_is_integer(json_object_get(rel, "id"))) {
		json_decref(rel);
		return tdxr_err_set(err, TDXR_EINVAL, "release %s: no id", tag);
	}
	rel_id = json_integer_value(json_object_get(rel, "id"));
	json_decref(rel);
	snprintf(url, sizeof(url), "%s/repos/%s/releases/%" PRId64 "/assets?name=%s", s->gc->uploads_url,
	         repo, rel_id, name);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_POST;
	c.url = url;
	c.body_file = file;
	c.content_type = "application/json";
	/* Not retried blindly: a failed upload can leave a "starter" asset that blocks the
	 * name. Look at the release's assets first (asset_repair), then upload once more. */
	c.idempotent = 0;
	rc = gh_json(s, h, &c, NULL, &st, err);
	if (rc && (st == 422 || st >= 500 || st == 0))
		rc = asset_repair(s, h, repo, rel_id, name, url, &c, err);
	return rc ? tdxr_err_prefix(err, "release asset %s", name) : 0;
}

static int publish(struct gh_run *r, const char *bundle, const char *bundle_path, struct tdxr_err *err)
{
	struct gh_source *s = r->s;
	const struct attest_verdict *v = box_verdict(r->box);
	char url[HTTP_URL_MAX], summary[2048];
	struct gh_call c;
	json_t *o;
	char *body;
	int rc;

	snprintf(summary, sizeof(summary),
	         "| | |\n|---|---|\n| verdict | %s |\n| root of trust | %s |\n| TCB status | %s |\n| app id "
	         "| `%s` |\n"
	         "| compose hash | `%s` |\n| job | %" PRId64 " (run %" PRId64 ") on runner `%s` |\n",
	         v && v->ok ? "**passed**" : "**failed**",
	         v && v->simulated ? "SIMULATED (not Intel)" : "Intel",
	         v ? attest_tcb_status_name(v->status) : "?", v ? v->identity.app_id : "?",
	         v ? v->identity.compose_hash : "?", r->bound_job, r->bound_run, r->runner_name);
	o = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s}}", "name", "tdx-attestation", "head_sha",
	              r->bound_sha, "status", "completed", "conclusion", v && v->ok ? "success" : "failure",
	              "output", "title",
	              v && v->ok ? "Ran in an attested TDX box" : "The TDX box did not attest", "summary",
	              summary, "text", "The attestation bundle verifies offline with `tdx-runner verify`.");
	body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (body == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	snprintf(url, sizeof(url), "%s/repos/%s/check-runs", s->gc->api_url, r->repo);
	memset(&c, 0, sizeof(c));
	c.method = HTTP_POST;
	c.url = url;
	c.body = body;
	{
		long st = 0;

		rc = gh_json(s, r->http, &c, NULL, &st, err);
		free(body);
		body = NULL;
		if (rc && st == 403 && !s->gc->have_app) {
			/* Check runs need an App installation token: a token gets a commit status. */
			o = json_pack("{s:s,s:s,s:s}", "state", v && v->ok ? "success" : "failure", "context",
			              "tdx-attestation", "description",
			              v && v->ok ? (v->simulated ? "Ran in an attested box (SIMULATED root)"
			                                         : "Ran in an attested TDX box")
			                         : "The TDX box did not attest");
			body = o ? json_dumps(o, JSON_COMPACT) : NULL;
			json_decref(o);
			snprintf(url, sizeof(url), "%s/repos/%s/statuses/%s", s->gc->api_url, r->repo,
			         r->bound_sha);
			c.url = url;
			c.body = body;
			rc = body ? gh_json(s, r->http, &c, NULL, NULL, err) : TDXR_ENOMEM;
			free(body);
			if (rc)
				return tdxr_err_prefix(err, "commit status");
			TDXR_INFO("github",
			          "%s: commit status tdx-attestation on %.12s (a token cannot create check "
			          "runs)",
			          r->j->desc, r->bound_sha);
		} else if (rc) {
			return tdxr_err_prefix(err, "check run");
		} else {
			TDXR_INFO("github", "%s: check run tdx-attestation on %.12s", r->j->desc,
			          r->bound_sha);
		}
	}
	(void)bundle;
	if (strcmp(r->run_event, "release") == 0 && r->run_branch[0]) {
		char name[128];

		snprintf(name, sizeof(name), "tdx-attestation-%" PRId64 ".json", r->bound_job);
		if ((rc = release_upload(s, r->http, r->repo, r->run_branch, name, bundle_path, err)))
			return rc;
		TDXR_INFO("github", "%s: attestation attached to release %s", r->j->desc, r->run_branch);
	}
	return 0;
}

static int collect(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct tdxr_buf *b = ctx;

	if (which == REMOTE_OUT_STDOUT && tdxr_buf_append(b, p, n, NULL) != 0)
		return -1; /* over the cap: stop */
	return 0;
}

/* The outputs the job declared in $TDX_RUNNER_SUBJECTS_FILE (one path per line, relative to
 * the box's work directory or absolute below it) get bound into an end quote: *out is the
 * extended bundle, or stays NULL when the job declared none (or it failed: logged, the start
 * bundle is published alone). */
static int end_attest(struct gh_run *r, char **out)
{
	struct remote_exec_opts eo;
	struct remote_exec_result res;
	struct tdxr_buf b;
	struct tdxr_err e;
	struct prov_info pi;
	const char *paths[ATTEST_STATEMENT_MAX_SUBJECTS];
	char cmd[1200], jid[32], rid[32], *p, *line;
	const char *wd = box_work_dir(r->box);
	size_t n = 0, wl = strlen(wd), i;
	int rc;

	*out = NULL;
	tdxr_buf_init(&b, 64 * 1024);
	snprintf(cmd, sizeof(cmd), "cat '%s/.tdx-runner/subjects' 2>/dev/null || true", wd);
	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_fd = -1;
	eo.output = collect;
	eo.output_ctx = &b;
	eo.timeout_ms = 30000;
	if ((rc = box_exec(r->box, &eo, &res, &e)) || tdxr_buf_append(&b, "", 1, NULL)) {
		TDXR_WARN("github", "%s: reading the subjects file: %s", r->j->desc,
		          rc ? e.msg : "too large");
		tdxr_buf_dispose(&b);
		return -1;
	}
	for (p = (char *)b.data; (line = strsep(&p, "\n")) != NULL && n < ATTEST_STATEMENT_MAX_SUBJECTS;) {
		int dup = 0;

		line[strcspn(line, "\r")] = '\0';
		if (line[0] == '\0')
			continue;
		if (strncmp(line, wd, wl) == 0 && line[wl] == '/')
			line += wl + 1; /* absolute below the work directory */
		for (i = 0; i < n && !dup; i++)
			dup = strcmp(paths[i], line) == 0;
		if (!dup)
			paths[n++] = line;
	}
	if (n == 0) {
		tdxr_buf_dispose(&b);
		return 0;
	}
	snprintf(jid, sizeof(jid), "%" PRId64, r->bound_job);
	snprintf(rid, sizeof(rid), "%" PRId64, r->bound_run);
	memset(&pi, 0, sizeof(pi));
	pi.repository = r->repo;
	pi.commit = r->bound_sha;
	pi.ci_system = "github";
	pi.job_id = jid;
	pi.run_id = rid;
	pi.runner_name = r->runner_name;
	if ((rc = prov_subjects_check(paths, n, &e)) == 0 &&
	    (rc = prov_attest_end(r->box, paths, n, &pi, out, &e)) == 0)
		TDXR_INFO("github", "%s: %zu output(s) bound into the end quote", r->j->desc, n);
	else
		TDXR_ERR("github", "%s: end quote: %s (publishing the start attestation only)", r->j->desc,
		         e.msg);
	tdxr_buf_dispose(&b);
	return rc;
}

static int gh_run(void *p, struct ci_job *j, const struct ci_env *env, struct tdxr_err *err)
{
	struct gh_source *s = p;
	struct gh_run *r;
	struct box_opts bo;
	struct http_client_opts ho;
	struct tdxr_err e, rel;
	pthread_t wd;
	int rc, wd_started = 0;
	char sp[300], url[HTTP_URL_MAX], rdir[1024], cmd[4096], bundle_path[PATH_MAX];
	char *jit_body = NULL;
	struct tdxr_secret *jit = NULL;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	tdxr_err_clear(&e);
	tdxr_err_clear(&rel);
	r->j = j;
	r->s = s;
	r->repo = j->d.repo[0] ? j->d.repo : s->repo;
	r->env = env;
	r->record_fd = -1;
	atomic_init(&r->picked, 0);
	atomic_init(&r->exec_cancel, 0);
	atomic_init(&r->done, 0);
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 60000;
	if ((rc = http_client_new(&ho, &r->http, err)))
		goto out;
	/* 0. demand can be stale (a webhook, an earlier listing): only a job still queued is worth a box. */
	{
		struct gh_call c;
		json_t *jo = NULL;
		const char *st;

		snprintf(url, sizeof(url), "%s/repos/%s/actions/jobs/%" PRId64, s->gc->api_url, r->repo,
		         j->d.job_id);
		memset(&c, 0, sizeof(c));
		c.method = HTTP_GET;
		c.url = url;
		c.idempotent = 1;
		if (gh_json(s, r->http, &c, &jo, NULL, &e) == 0 &&
		    ((st = json_string_value(json_object_get(jo, "status"))) == NULL ||
		     strcmp(st, "queued") != 0)) {
			TDXR_INFO("github", "%s: no longer queued (%s): nothing to do", j->desc,
			          st ? st : "?");
			json_decref(jo);
			goto out;
		}
		json_decref(jo);
	}
	/* 1. lease + gate: nothing about the job (no JIT config) exists before it passed. */
	memset(&bo, 0, sizeof(bo));
	bo.cfg = env->cfg;
	bo.executor_kind = env->executor_kind;
	bo.job = j->desc;
	bo.cancel = &r->box_cancel;
	rc = box_acquire(&bo, &r->box, &e);
	if (rc) {
		TDXR_ERR("github", "%s: %s", j->desc, e.msg);
		*err = e;
		goto release;
	}
	snprintf(r->runner_name, sizeof(r->runner_name), "tdxr-%s", box_lease_id(r->box));
	/* 2. the runner into the box */
	snprintf(rdir, sizeof(rdir), "%s/.tdx-runner/runner", box_work_dir(r->box));
	if (s->gc->runner_tarball_url) {
		char tgz[PATH_MAX];
		int fd;

		if ((rc = runner_tarball(r, tgz, sizeof(tgz), &e)))
			goto fail;
		fd = open(tgz, O_RDONLY | O_CLOEXEC);
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && tar -xzf - -C '%s'", rdir, rdir);
		rc = fd < 0 ? tdxr_err_set(&e, TDXR_EIO, "cannot open %s", tgz)
		            : box_sh(r->box, cmd, NULL, 0, fd, &e);
		if (fd >= 0)
			close(fd);
		if (rc)
			goto fail;
	} else {
		snprintf(rdir, sizeof(rdir), "%s",
		         s->gc->runner_path_in_box ? s->gc->runner_path_in_box : GH_RUNNER_DIR_DEFAULT);
	}
	/* The start bundle where the job's own steps find it. */
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/.tdx-runner' && cat > '%s/.tdx-runner/tdx-attestation.json'",
	         box_work_dir(r->box), box_work_dir(r->box));
	if ((rc = box_sh(r->box, cmd, box_bundle(r->box), strlen(box_bundle(r->box)), -1, &e)))
		goto fail;
	/* 3. the record, then the JIT runner registration */
	{
		char dir[PATH_MAX - 256];

		snprintf(dir, sizeof(dir), "%s/github", env->cfg->state_dir);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = tdxr_err_set(&e, TDXR_EIO, "cannot create %s", dir);
			goto fail;
		}
		if ((size_t)snprintf(r->record, sizeof(r->record), "%s/%s.json", dir, r->runner_name) >=
		    sizeof(r->record)) {
			r->record[0] = '\0';
			rc = tdxr_err_set(&e, TDXR_EINVAL, "state directory path too long");
			goto fail;
		}
		if ((rc = record_write(r, &e)))
			goto fail;
	}
	{
		json_t *labels = json_array(), *o, *ans = NULL;
		struct gh_call c;
		size_t i;

		for (i = 0; i < s->gc->labels.n; i++)
			json_array_append_new(labels, json_string(s->gc->labels.v[i]));
		o = json_pack("{s:s,s:I,s:o,s:s}", "name", r->runner_name, "runner_group_id",
		              (json_int_t)s->gc->runner_group_id, "labels", labels, "work_folder", "_work");
		jit_body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		scope_path(s, sp, sizeof(sp));
		snprintf(url, sizeof(url), "%s/%s/actions/runners/generate-jitconfig", s->gc->api_url, sp);
		memset(&c, 0, sizeof(c));
		c.method = HTTP_POST;
		c.url = url;
		c.body = jit_body;
		if (jit_body == NULL || (rc = gh_json(s, r->http, &c, &ans, NULL, &e)))
			goto jit_fail;
		if (!json_is_string(json_object_get(ans, "encoded_jit_config")) ||
		    !json_is_integer(json_object_get(json_object_get(ans, "runner"), "id"))) {
			rc = tdxr_err_set(&e, TDXR_EINVAL,
			                  "generate-jitconfig: no runner id or encoded_jit_config");
			goto jit_fail;
		}
		r->runner_id = json_integer_value(json_object_get(json_object_get(ans, "runner"), "id"));
		jit = tdxr_secret_new(json_string_value(json_object_get(ans, "encoded_jit_config")),
		                      json_string_length(json_object_get(ans, "encoded_jit_config")));
		record_write(r, NULL);
	jit_fail:
		if (ans) {
			json_t *cfg = json_object_get(ans, "encoded_jit_config");

			if (json_is_string(cfg))
				OPENSSL_cleanse((char *)json_string_value(cfg), json_string_length(cfg));
		}
		json_decref(ans);
		if (rc || jit == NULL) {
			if (!rc)
				rc = tdxr_err_set(&e, TDXR_ENOMEM, "out of memory");
			tdxr_err_prefix(&e, "runner registration");
			goto fail;
		}
	}
	TDXR_INFO("github", "%s: runner %s (id %" PRId64 ") starts in lease %s", j->desc, r->runner_name,
	          r->runner_id, box_lease_id(r->box));
	/* 4. run it: the JIT config on the channel's stdin, never argv */
	{
		struct remote_exec_opts eo;
		struct remote_exec_result res;
		struct remote_env ev[4];
		char af[PATH_MAX], sf[PATH_MAX];

		if ((rc = tdxr_mask_new(log_sink, r, &r->mask, &e)))
			goto fail;
		tdxr_mask_add(r->mask, tdxr_secret_str(jit), tdxr_secret_len(jit), NULL);
		snprintf(af, sizeof(af), "%s/.tdx-runner/tdx-attestation.json", box_work_dir(r->box));
		snprintf(sf, sizeof(sf), "%s/.tdx-runner/subjects", box_work_dir(r->box));
		ev[0].name = "ACTIONS_RUNNER_INPUT_JITCONFIG";
		ev[0].value = tdxr_secret_str(jit);
		ev[1].name = "TDX_ATTESTATION_FILE";
		ev[1].value = af;
		ev[2].name = "TDX_RUNNER_SUBJECTS_FILE";
		ev[2].value = sf;
		/* The box logs in as root (dstack images do); the official runner refuses root without it. */
		ev[3].name = "RUNNER_ALLOW_RUNASROOT";
		ev[3].value = "1";
		snprintf(cmd, sizeof(cmd), "cd '%s' && exec ./run.sh", rdir);
		memset(&eo, 0, sizeof(eo));
		eo.command = cmd;
		eo.env = ev;
		eo.n_env = 4;
		eo.stdin_fd = -1;
		eo.output = on_runner_output;
		eo.output_ctx = r;
		eo.timeout_ms = GH_JOB_TIMEOUT_S * 1000;
		eo.cancel = &r->exec_cancel;
		if (pthread_create(&wd, NULL, watchdog, r) == 0)
			wd_started = 1;
		rc = box_exec(r->box, &eo, &res, &e);
		atomic_store(&r->done, 1);
		if (wd_started)
			pthread_join(wd, NULL);
		tdxr_mask_flush(r->mask, NULL);
		log_sink(r, (const uint8_t *)"\n", r->line_len ? 1 : 0);
		if (rc == TDXR_ECANCELED && !atomic_load(&r->picked)) {
			TDXR_WARN("github", "%s: runner %s never picked up a job", j->desc, r->runner_name);
			rc = 0;
			goto fail; /* deletes the registration, releases */
		}
		if (rc)
			goto fail;
		TDXR_INFO("github", "%s: runner exited with %d", j->desc, res.exited ? res.exit_status : -1);
	}
	/* 5. which job did it run? then the end quote over its outputs, then publish */
	if ((rc = bind_job(r, &e)) == 0) {
		const char *bundle = box_bundle(r->box);
		char *ended = NULL;

		if (end_attest(r, &ended) == 0 && ended)
			bundle = ended;

		TDXR_INFO("github", "%s: runner %s ran job %" PRId64 " (run %" PRId64 ", %s)", j->desc,
		          r->runner_name, r->bound_job, r->bound_run, r->bound_conclusion);
		snprintf(bundle_path, sizeof(bundle_path), "%s/github/%s.bundle.json", env->cfg->state_dir,
		         r->runner_name);
		if (bundle &&
		    (rc = tdxr_file_write_atomic(bundle_path, bundle, strlen(bundle), 0600, &e)) == 0 &&
		    (rc = publish(r, bundle, bundle_path, &e)) != 0)
			TDXR_ERR("github", "%s: publishing: %s", j->desc, e.msg);
		unlink(bundle_path);
		free(ended);
	} else {
		TDXR_WARN("github", "%s: %s", j->desc, e.msg);
	}
fail:
	if (rc)
		TDXR_ERR("github", "%s: %s", j->desc, e.msg);
	if (r->runner_id > 0) {
		struct tdxr_err de;

		if (runner_delete(s, r->http, r->runner_id, &de) != 0)
			TDXR_WARN("github", "%s: deleting runner %s: %s (a restart retries)", j->desc,
			          r->runner_name, de.msg);
		else if (r->record[0])
			unlink(r->record);
	} else if (r->record[0]) {
		unlink(r->record);
	}
	if (rc)
		*err = e;
release:
	if (r->box) {
		if (box_release(r->box, &rel))
			TDXR_ERR("github", "%s: %s", j->desc, rel.msg);
		box_free(r->box);
	}
out:
	tdxr_mask_free(r->mask);
	tdxr_secret_free(jit);
	if (jit_body) {
		OPENSSL_cleanse(jit_body, strlen(jit_body));
		free(jit_body);
	}
	if (r->record_fd >= 0)
		close(r->record_fd);
	http_client_free(r->http);
	free(r);
	return rc;
}

/* At start-up: delete the runners a dead agent registered (their boxes are reaped). */
static int gh_recover(void *p, struct tdxr_err *err)
{
	struct gh_source *s = p;
	char dir[PATH_MAX - 300];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/github", s->cfg->state_dir);
	d = opendir(dir);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		uint8_t *t = NULL;
		size_t n = 0;
		json_t *o;
		int fd;
		struct tdxr_err e;

		if (strncmp(de->d_name, "tdxr-", 5) != 0 || strstr(de->d_name, ".bundle.json") ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd);
			continue; /* a live agent owns it */
		}
		if (tdxr_file_read(path, 16384, &t, &n, &e) == 0 &&
		    (o = json_loadb((const char *)t, n, JSON_REJECT_DUPLICATES, NULL)) != NULL) {
			const char *api = json_string_value(json_object_get(o, "api_url"));
			json_t *id = json_object_get(o, "runner_id");

			if (api && strcmp(api, s->gc->api_url) == 0) {
				if (!json_is_integer(id) || json_integer_value(id) <= 0 ||
				    runner_delete(s, s->http, json_integer_value(id), &e) == 0) {
					TDXR_INFO("github", "recovered: runner %s of a dead agent deleted",
					          json_string_value(json_object_get(o, "runner_name"))
					              ?: "?");
					unlink(path);
				} else {
					s->recover_pending = 1;
					s->last_recover =
					    time(NULL); /* the poll loop retries in a few seconds */
					rc = tdxr_err_set(
					    err, TDXR_EIO,
					    "deleting a dead agent's runner (retried while polling): %s",
					    e.msg);
				}
			}
			json_decref(o);
		}
		free(t);
		close(fd);
	}
	closedir(d);
	return rc;
}

static const char *gh_describe(const struct ci_job *j)
{
	return j->desc;
}

static void gh_job_free(struct ci_job *j)
{
	free(j);
}

static void gh_free(void *p)
{
	struct gh_source *s = p;

	if (s == NULL)
		return;
	http_client_free(s->http);
	tdxr_secret_free(s->app_token);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int ci_github_new(const struct config *cfg, size_t index, void **out, struct tdxr_err *err)
{
	struct http_client_opts ho;
	struct gh_source *s;
	int rc;

	*out = NULL;
	if (index >= cfg->n_github)
		return tdxr_err_set(err, TDXR_EINVAL, "github: no entry %zu in the configuration", index);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	s->cfg = cfg;
	s->gc = &cfg->github[index];
	if (s->gc->repository)
		snprintf(s->repo, sizeof(s->repo), "%s", s->gc->repository);
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 60000;
	if ((rc = http_client_new(&ho, &s->http, err))) {
		gh_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int gh_publish_release(const struct config *cfg, const char *owner_repo, const char *tag, const char *file,
                       const char *asset_name, struct tdxr_err *err)
{
	struct gh_source *s = NULL;
	size_t i, olen;
	const char *slash = strchr(owner_repo, '/');
	int rc;

	if (slash == NULL || slash == owner_repo || strchr(slash + 1, '/') || slash[1] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL, "publish: '%s' is not OWNER/REPO", owner_repo);
	olen = (size_t)(slash - owner_repo);
	/* The github[] entry that serves this repository: the repository itself, or its owner's org. */
	for (i = 0; i < cfg->n_github; i++) {
		const struct config_github *g = &cfg->github[i];

		if ((g->repository && strcmp(g->repository, owner_repo) == 0) ||
		    (g->organization && strlen(g->organization) == olen &&
		     strncmp(g->organization, owner_repo, olen) == 0))
			break;
	}
	if (i == cfg->n_github)
		return tdxr_err_set(
		    err, TDXR_ENOTFOUND,
		    "publish: no github[] entry in the configuration serves %s (its credentials "
		    "are used)",
		    owner_repo);
	if ((rc = ci_github_new(cfg, i, (void **)&s, err)))
		return rc;
	rc = release_upload(s, s->http, owner_repo, tag, asset_name, file, err);
	gh_free(s);
	return rc;
}

const struct ci_ops ci_github = {
	.name = "github",
	.poll = gh_poll,
	.run = gh_run,
	.describe = gh_describe,
	.recover = gh_recover,
	.job_free = gh_job_free,
	.free = gh_free,
};
