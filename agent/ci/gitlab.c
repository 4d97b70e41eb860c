/*
 * gitlab.c - GitLab's runner API (CONTRACTS.md §4): ask for a job, run it in an
 * attested box, stream its trace, upload its artifacts with the attestation
 * bundle, report the final state.
 *
 * A job runs on one worker thread plus its trace sender thread. The trace is
 * the masked job output, appended to an unlinked 0600 file (so 1 GiB of output
 * costs no memory), sent with PATCH .../trace in Content-Range order from the
 * acknowledged offset; a 416 resyncs to the server's Range. Masked variables,
 * the job token and URL credentials are replaced before a byte reaches the
 * file. The final PUT carries crc32 + size of exactly those bytes and is sent
 * only once the server acknowledged all of them.
 *
 * Trust boundary: the job payload and every API answer are untrusted: bounded
 * (TDXR_CAP_API), type-checked, and a malformed job fails that job only. The
 * job token and masked values live in tdxr_secret memory, go to the box only
 * on the SSH channel's stdin (remote_env), never in argv or logs.
 */
#include "agent/ci/ci.h"
#include "agent/ci/gitlab_int.h"

#include "agent/box.h"
#include "agent/config.h"
#include "agent/remote/sync.h"
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
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zip.h>
#include <zlib.h>

#define GL_VERSION "0.1.0"
#define GL_TRACE_CHUNK (1u << 20) /* bytes per PATCH */
#define GL_TRACE_CAP (4ull << 30) /* log cap: beyond it a notice, then nothing */
#define GL_MAX_VARS 1024u
#define GL_MAX_STEPS 16u
#define GL_MAX_LINES 4096u
#define GL_MAX_ARTIFACT_PATHS 256u
#define GL_JOB_TIMEOUT_DEFAULT 3600
#define GL_AFTER_SCRIPT_TIMEOUT 300

/* ------------------------------------------------------------------ source */

struct gl_source {
	const struct config *cfg;
	const struct config_gitlab *gc;
	struct http_client *http;
	char last_update[128];
	unsigned failures;
	char system_id[64];
};

struct gl_var {
	char *key;
	struct tdxr_secret *value;
	int masked, file, public_;
};

struct gl_step {
	char name[32];
	char **lines;
	size_t n_lines;
	int64_t timeout_s;
	char when[16];
	int allow_failure;
};

struct gl_artifact {
	char name[256];
	char when[16];
	char type[32];
	char format[16];
	char expire_in[64];
	int untracked;
	char **paths;
	size_t n_paths;
	char **exclude;
	size_t n_exclude;
};

struct ci_job {
	struct gl_source *src;
	int64_t id;
	char desc[256];
	struct tdxr_secret *token;
	char repo_url[1024]; /* without credentials */
	char sha[41];
	char ref[256];
	int64_t timeout_s;
	struct gl_var *vars;
	size_t n_vars;
	struct gl_step steps[GL_MAX_STEPS];
	size_t n_steps;
	struct gl_artifact *arts;
	size_t n_arts;
	char project[256];
	int64_t project_id;
};

static void strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void job_free(struct ci_job *j)
{
	size_t i;

	if (j == NULL)
		return;
	tdxr_secret_free(j->token);
	for (i = 0; i < j->n_vars; i++) {
		free(j->vars[i].key);
		tdxr_secret_free(j->vars[i].value);
	}
	free(j->vars);
	for (i = 0; i < j->n_steps; i++)
		strv_free(j->steps[i].lines, j->steps[i].n_lines);
	for (i = 0; i < j->n_arts; i++) {
		strv_free(j->arts[i].paths, j->arts[i].n_paths);
		strv_free(j->arts[i].exclude, j->arts[i].n_exclude);
	}
	free(j->arts);
	free(j);
}

static void src_free(void *p)
{
	struct gl_source *s = p;

	if (s == NULL)
		return;
	http_client_free(s->http);
	free(s);
}

int ci_gitlab_new(const struct config *cfg, size_t index, void **out, struct tdxr_err *err)
{
	struct http_client_opts ho;
	struct gl_source *s;
	uint8_t r[6];
	int rc;

	*out = NULL;
	if (index >= cfg->n_gitlab)
		return tdxr_err_set(err, TDXR_EINVAL, "gitlab: no entry %zu in the configuration", index);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	s->cfg = cfg;
	s->gc = &cfg->gitlab[index];
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 60000;
	if ((rc = http_client_new(&ho, &s->http, err))) {
		free(s);
		return rc;
	}
	/* system_id: from the machine id (GitLab tells runner hosts apart by it), else random. */
	{
		FILE *f = fopen("/etc/machine-id", "re");
		char mid[64] = "";

		if (f) {
			if (fgets(mid, sizeof(mid), f) == NULL)
				mid[0] = '\0';
			fclose(f);
		}
		mid[strcspn(mid, "\n")] = '\0';
		if (strlen(mid) >= 12) {
			snprintf(s->system_id, sizeof(s->system_id), "s_%.12s", mid);
		} else {
			memset(r, 0, sizeof(r));
			if (getentropy(r, sizeof(r)) != 0)
				memset(r, 0x5a, sizeof(r));
			tdxr_hex_encode(r, sizeof(r), mid);
			snprintf(s->system_id, sizeof(s->system_id), "r_%.12s", mid);
		}
	}
	*out = s;
	return 0;
}

/* ------------------------------------------------------------- job payload */

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
	if (s == NULL || strlen(s) >= cap)
		return -1;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int strv_from(json_t *a, size_t max, char ***out, size_t *n)
{
	size_t i;
	json_t *v;
	char **r;

	*out = NULL;
	*n = 0;
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > max)
		return -1;
	r = calloc(json_array_size(a) + 1, sizeof(*r));
	if (r == NULL)
		return -1;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)) ||
		    (r[i] = strdup(json_string_value(v))) == NULL) {
			strv_free(r, i);
			return -1;
		}
	}
	*out = r;
	*n = json_array_size(a);
	return 0;
}

/* "https://gitlab-ci-token:TOKEN@host/x.git" -> "https://host/x.git". The userinfo ends at
 * the LAST '@' of the authority (RFC 3986), which ends at the first '/', '?' or '#'. */
static int strip_userinfo(const char *url, char *out, size_t cap)
{
	const char *p = strstr(url, "://"), *at = NULL, *q;

	if (p == NULL)
		return copy_str(out, cap, url);
	p += 3;
	for (q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		return copy_str(out, cap, url);
	if ((size_t)(p - url) + strlen(at + 1) >= cap)
		return -1;
	memcpy(out, url, (size_t)(p - url));
	memcpy(out + (p - url), at + 1, strlen(at + 1) + 1);
	return 0;
}

static int job_parse(struct gl_source *s, const uint8_t *body, size_t len, struct ci_job **out,
                     struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *o, *gi, *ri, *vars, *steps, *arts, *ji, *v;
	struct ci_job *j;
	size_t i;
	int rc = 0;

	*out = NULL;
	o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "gitlab: job payload: invalid JSON at line %d: %s",
		                    jerr.line, jerr.text);
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		json_decref(o);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	j->src = s;
#define BAD(...)                                                                                             \
	do {                                                                                                 \
		rc = tdxr_err_set(err, TDXR_EINVAL, "gitlab: job payload: " __VA_ARGS__);                    \
		goto out;                                                                                    \
	} while (0)
	if (!json_is_object(o))
		BAD("not an object");
	v = json_object_get(o, "id");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		BAD("id is missing or not a positive integer");
	j->id = json_integer_value(v);
	if (jstr(o, "token") == NULL || json_string_length(json_object_get(o, "token")) == 0)
		BAD("token is missing");
	j->token = tdxr_secret_new(jstr(o, "token"), strlen(jstr(o, "token")));
	if (j->token == NULL)
		BAD("no memory for the token");
	gi = json_object_get(o, "git_info");
	if (!json_is_object(gi) || jstr(gi, "repo_url") == NULL || jstr(gi, "sha") == NULL)
		BAD("git_info.repo_url / git_info.sha missing");
	if (strip_userinfo(jstr(gi, "repo_url"), j->repo_url, sizeof(j->repo_url)))
		BAD("git_info.repo_url too long");
	if (copy_str(j->sha, sizeof(j->sha), jstr(gi, "sha")) || strlen(j->sha) != 40)
		BAD("git_info.sha is not 40 hex digits");
	for (i = 0; i < 40; i++)
		if (tdxr_hex_digit(j->sha[i]) < 0)
			BAD("git_info.sha is not 40 hex digits");
	if (jstr(gi, "ref"))
		copy_str(j->ref, sizeof(j->ref), jstr(gi, "ref"));
	j->timeout_s = GL_JOB_TIMEOUT_DEFAULT;
	ri = json_object_get(o, "runner_info");
	v = json_object_get(ri, "timeout");
	if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= CONFIG_TIMEOUT_MAX_S)
		j->timeout_s = json_integer_value(v);
	ji = json_object_get(o, "job_info");
	if (json_is_object(ji)) {
		if (jstr(ji, "project_name"))
			copy_str(j->project, sizeof(j->project), jstr(ji, "project_name"));
		v = json_object_get(ji, "project_id");
		if (json_is_integer(v))
			j->project_id = json_integer_value(v);
	}
	snprintf(j->desc, sizeof(j->desc), "gitlab job %" PRId64 " (%.200s)", j->id,
	         j->project[0] ? j->project : "?");
	vars = json_object_get(o, "variables");
	if (vars && !json_is_null(vars)) {
		if (!json_is_array(vars) || json_array_size(vars) > GL_MAX_VARS)
			BAD("variables is not an array of at most %u", GL_MAX_VARS);
		j->vars = calloc(json_array_size(vars) + 1, sizeof(*j->vars));
		if (j->vars == NULL)
			BAD("no memory");
		json_array_foreach(vars, i, v)
		{
			struct gl_var *x = &j->vars[j->n_vars];
			const char *k = jstr(v, "key"), *val = jstr(v, "value");
			size_t c;

			if (k == NULL || k[0] == '\0' || strlen(k) > 255)
				BAD("variables[%zu].key missing", i);
			for (c = 0; k[c]; c++)
				if (!((k[c] >= 'A' && k[c] <= 'Z') || (k[c] >= 'a' && k[c] <= 'z') ||
				      k[c] == '_' || (c > 0 && k[c] >= '0' && k[c] <= '9')))
					break;
			if (k[c]) {
				TDXR_WARN("gitlab",
				          "job %" PRId64 ": variable '%.64s' is not a valid name; skipped",
				          j->id, k);
				continue;
			}
			if (val == NULL)
				val = "";
			x->key = strdup(k);
			x->value = tdxr_secret_new(val, json_string_length(json_object_get(v, "value")));
			if (x->key == NULL || x->value == NULL)
				BAD("no memory");
			x->masked = json_is_true(json_object_get(v, "masked"));
			x->file = json_is_true(json_object_get(v, "file"));
			x->public_ = json_is_true(json_object_get(v, "public"));
			j->n_vars++;
		}
	}
	steps = json_object_get(o, "steps");
	if (!json_is_array(steps) || json_array_size(steps) == 0 || json_array_size(steps) > GL_MAX_STEPS)
		BAD("steps is not an array of 1..%u steps", GL_MAX_STEPS);
	json_array_foreach(steps, i, v)
	{
		struct gl_step *st = &j->steps[j->n_steps];
		json_t *t;

		if (!json_is_object(v) || copy_str(st->name, sizeof(st->name), jstr(v, "name")))
			BAD("steps[%zu].name missing", i);
		if (strv_from(json_object_get(v, "script"), GL_MAX_LINES, &st->lines, &st->n_lines))
			BAD("steps[%zu].script is not an array of strings", i);
		j->n_steps++;
		t = json_object_get(v, "timeout");
		st->timeout_s = json_is_integer(t) && json_integer_value(t) > 0 ? json_integer_value(t) : 0;
		if (copy_str(st->when, sizeof(st->when), jstr(v, "when") ? jstr(v, "when") : "on_success"))
			BAD("steps[%zu].when too long", i);
		st->allow_failure = json_is_true(json_object_get(v, "allow_failure"));
	}
	arts = json_object_get(o, "artifacts");
	if (arts && !json_is_null(arts)) {
		if (!json_is_array(arts) || json_array_size(arts) > 16)
			BAD("artifacts is not an array of at most 16");
		j->arts = calloc(json_array_size(arts) + 1, sizeof(*j->arts));
		if (j->arts == NULL)
			BAD("no memory");
		json_array_foreach(arts, i, v)
		{
			struct gl_artifact *a = &j->arts[j->n_arts];

			if (!json_is_object(v))
				BAD("artifacts[%zu] is not an object", i);
			j->n_arts++;
			copy_str(a->name, sizeof(a->name), jstr(v, "name") ? jstr(v, "name") : "artifacts");
			if (copy_str(a->when, sizeof(a->when),
			             jstr(v, "when") ? jstr(v, "when") : "on_success") ||
			    copy_str(a->type, sizeof(a->type),
			             jstr(v, "artifact_type") ? jstr(v, "artifact_type") : "archive") ||
			    copy_str(a->format, sizeof(a->format),
			             jstr(v, "artifact_format") ? jstr(v, "artifact_format") : "zip") ||
			    copy_str(a->expire_in, sizeof(a->expire_in),
			             jstr(v, "expire_in") ? jstr(v, "expire_in") : ""))
				BAD("artifacts[%zu]: a field is too long", i);
			a->untracked = json_is_true(json_object_get(v, "untracked"));
			if (strv_from(json_object_get(v, "paths"), GL_MAX_ARTIFACT_PATHS, &a->paths,
			              &a->n_paths) ||
			    strv_from(json_object_get(v, "exclude"), GL_MAX_ARTIFACT_PATHS, &a->exclude,
			              &a->n_exclude))
				BAD("artifacts[%zu].paths / exclude are not arrays of strings", i);
		}
	}
#undef BAD
out:
	json_decref(o);
	if (rc) {
		job_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

/* ------------------------------------------------------------------ polling */

static int gl_poll(void *p, struct ci_job **job, long *next_ms, struct tdxr_err *err)
{
	struct gl_source *s = p;
	struct http_request rq;
	struct http_response rs;
	json_t *body, *info, *feat;
	char url[HTTP_URL_MAX], *text = NULL, host[128] = "";
	const char *hdrs[] = { "Content-Type: application/json", "Accept: application/json", NULL };
	const char *lu;
	int rc;

	*job = NULL;
	*next_ms = 3000;
	if ((size_t)snprintf(url, sizeof(url), "%s/api/v4/jobs/request", s->gc->url) >= sizeof(url))
		return tdxr_err_set(err, TDXR_EINVAL, "gitlab: url too long");
	gethostname(host, sizeof(host) - 1);
	feat = json_pack("{s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:b}", "variables", 1, "artifacts", 1,
	                 "masking", 1, "multi_build_steps", 1, "trace_checksum", 1, "trace_size", 1,
	                 "trace_reset", 1, "cancelable", 1, "return_exit_code", 1, "artifacts_exclude", 1);
	info = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "name", "tdx-runner", "version", GL_VERSION,
	                 "revision", "tdx-runner", "platform", "linux", "architecture", "amd64", "executor",
	                 "tdx-runner", "shell", "bash", "features", feat);
	body = json_pack("{s:s,s:s,s:o,s:s}", "token", tdxr_secret_str(s->gc->token), "system_id",
	                 s->system_id, "info", info, "last_update", s->last_update);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	memset(&rq, 0, sizeof(rq));
	rq.method = HTTP_POST;
	rq.url = url;
	rq.headers = hdrs;
	rq.body = text;
	rq.body_len = strlen(text);
	http_response_init(&rs);
	rc = http_request_send(s->http, &rq, &rs, err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (rc) {
		s->failures++;
		*next_ms = http_backoff_ms(s->failures, 1000, 60000);
		goto out;
	}
	if ((lu = http_response_header(&rs, "X-GitLab-Last-Update")) != NULL)
		copy_str(s->last_update, sizeof(s->last_update), lu);
	switch (rs.status) {
	case 201:
		s->failures = 0;
		rc = job_parse(s, (const uint8_t *)rs.body.data, rs.body.len, job, err);
		*next_ms = 0;
		break;
	case 204: s->failures = 0; break;
	case 401:
	case 403:
		rc = tdxr_err_set(err, TDXR_EAUTH,
		                  "gitlab %s: the runner token was refused (HTTP %ld): register again "
		                  "(tdx-runner register) or fix gitlab[].token",
		                  s->gc->url, rs.status);
		break;
	default: {
		long ra = http_retry_after_ms(&rs, 300000);

		s->failures++;
		*next_ms = ra >= 0 ? ra : http_backoff_ms(s->failures, 1000, 60000);
		rc = http_response_check(&rq, &rs, err);
		if (rc == 0)
			rc = tdxr_err_set(err, TDXR_EIO, "gitlab: unexpected HTTP %ld from jobs/request",
			                  rs.status);
		if (rc == TDXR_EAUTH)
			rc = TDXR_EIO;
		break;
	}
	}
out:
	http_response_dispose(&rs);
	return rc;
}

/* -------------------------------------------------------------------- trace */

/* The trace checksum: IEEE CRC-32 as GitLab computes it (zlib's, table-driven and fast). */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n > 0) {
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;

		crc = (uint32_t)crc32(crc, p, k);
		p += k;
		n -= k;
	}
	return crc;
}

struct gl_trace {
	struct ci_job *job;
	struct http_client *http;
	int fd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int started;
	uint64_t size;  /* bytes in the file (masked) */
	uint64_t acked; /* bytes the server acknowledged */
	uint32_t crc;
	int capped;
	int finishing; /* the job is over: send the rest, then stop */
	int dead;      /* the server said the job is not running (403): stop sending */
	long interval_ms;
	struct tdxr_mask *mask;
	atomic_int canceled; /* Job-Status canceled/canceling, or the agent is stopping */
	int agent_stop;      /* ... and it was the agent stopping */
	time_t last_contact; /* monotonic seconds of the last answer from the server */
	volatile sig_atomic_t cancel_sig;
	atomic_int exec_cancel;
	const atomic_int *stop;
};

/* Appends masked bytes to the trace file (mask output; mu held). */
static int trace_sink(void *ctx, const uint8_t *p, size_t n)
{
	struct gl_trace *t = ctx;
	static const char notice[] =
	    "\n\033[31;1mJob's log exceeded limit of 4 GiB: the rest is not shown.\033[0;m\n";

	if (t->capped)
		return 0;
	if (t->size + n > GL_TRACE_CAP) {
		n = (size_t)(GL_TRACE_CAP - t->size);
		t->capped = 1;
	}
	while (n > 0) {
		ssize_t w = pwrite(t->fd, p, n, (off_t)t->size);

		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return -1;
		}
		t->crc = crc32_update(t->crc, p, (size_t)w);
		t->size += (uint64_t)w;
		p += w;
		n -= (size_t)w;
	}
	if (t->capped) {
		if (pwrite(t->fd, notice, sizeof(notice) - 1, (off_t)t->size) ==
		    (ssize_t)(sizeof(notice) - 1)) {
			t->crc = crc32_update(t->crc, (const uint8_t *)notice, sizeof(notice) - 1);
			t->size += sizeof(notice) - 1;
		}
	}
	return 0;
}

static void trace_write(struct gl_trace *t, const void *p, size_t n)
{
	struct tdxr_err e;

	pthread_mutex_lock(&t->mu);
	if (tdxr_mask_write(t->mask, p, n, &e))
		TDXR_WARN("gitlab", "job %" PRId64 ": trace: %s", t->job->id, e.msg);
	pthread_mutex_unlock(&t->mu);
}

static void trace_printf(struct gl_trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace_printf(struct gl_trace *t, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	trace_write(t, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void section(struct gl_trace *t, int start, const char *name, const char *title)
{
	if (start)
		trace_printf(t, "\033[0Ksection_start:%lld:%s\r\033[0K\033[36;1m%s\033[0;m\n",
		             (long long)time(NULL), name, title);
	else
		trace_printf(t, "\033[0Ksection_end:%lld:%s\r\033[0K", (long long)time(NULL), name);
}

static void job_url(const struct ci_job *j, const char *suffix, char *url, size_t cap)
{
	snprintf(url, cap, "%s/api/v4/jobs/%" PRId64 "%s", j->src->gc->url, j->id, suffix);
}

static void set_canceled(struct gl_trace *t)
{
	atomic_store(&t->canceled, 1);
	t->cancel_sig = 1;
	atomic_store(&t->exec_cancel, 1);
}

static void check_job_status(struct gl_trace *t, const struct http_response *rs)
{
	const char *st = http_response_header(rs, "Job-Status");

	if (st && (strcmp(st, "canceled") == 0 || strcmp(st, "canceling") == 0) &&
	    !atomic_load(&t->canceled)) {
		TDXR_INFO("gitlab", "job %" PRId64 ": canceled on the server", t->job->id);
		set_canceled(t);
	}
}

static time_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Parses "0-N" (Range header) into N. */
static int range_end(const char *v, uint64_t *out)
{
	const char *d;

	if (v == NULL || (d = strchr(v, '-')) == NULL)
		return -1;
	return tdxr_parse_u64(d + 1, UINT64_MAX / 2, out, NULL);
}

/* Sends [acked, size) in chunks. mu NOT held. Returns 0 when everything was acknowledged
 * (or the server will take no more), -1 on a transient failure. */
static int trace_send(struct gl_trace *t)
{
	char url[HTTP_URL_MAX], range[80], tok[600], buf_hdr[80];
	const char *hdrs[4];
	struct http_request rq;
	struct http_response rs;
	uint8_t *chunk = NULL;
	uint64_t from, size;
	int rc = 0;

	job_url(t->job, "/trace?debug_trace=false", url, sizeof(url));
	snprintf(tok, sizeof(tok), "JOB-TOKEN: %s", tdxr_secret_str(t->job->token));
	http_response_init(&rs);
	for (;;) {
		size_t n;
		ssize_t r;
		struct tdxr_err e;

		pthread_mutex_lock(&t->mu);
		from = t->acked;
		size = t->size;
		pthread_mutex_unlock(&t->mu);
		if (t->dead || from >= size)
			break;
		n = size - from > GL_TRACE_CHUNK ? GL_TRACE_CHUNK : (size_t)(size - from);
		if (chunk == NULL && (chunk = malloc(GL_TRACE_CHUNK)) == NULL) {
			rc = -1;
			break;
		}
		r = pread(t->fd, chunk, n, (off_t)from);
		if (r != (ssize_t)n) {
			rc = -1;
			break;
		}
		snprintf(range, sizeof(range), "Content-Range: %" PRIu64 "-%" PRIu64, from, from + n - 1);
		snprintf(buf_hdr, sizeof(buf_hdr), "Content-Type: text/plain");
		hdrs[0] = tok;
		hdrs[1] = range;
		hdrs[2] = buf_hdr;
		hdrs[3] = NULL;
		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_PATCH;
		rq.url = url;
		rq.headers = hdrs;
		rq.body = chunk;
		rq.body_len = n;
		if (http_request_send(t->http, &rq, &rs, &e)) {
			TDXR_WARN("gitlab", "job %" PRId64 ": trace: %s", t->job->id, e.msg);
			rc = -1;
			break;
		}
		check_job_status(t, &rs);
		t->last_contact = mono_s();
		{
			const char *iv = http_response_header(&rs, "X-GitLab-Trace-Update-Interval");
			uint64_t sec;

			if (iv && tdxr_parse_u64(iv, 3600, &sec, NULL) == 0)
				t->interval_ms = sec == 0 ? 1000 : (long)sec * 1000;
		}
		if (rs.status == 202 || rs.status == 200) {
			uint64_t end;

			pthread_mutex_lock(&t->mu);
			if (range_end(http_response_header(&rs, "Range"), &end) == 0 && end <= t->size)
				t->acked = end;
			else
				t->acked = from + n;
			pthread_mutex_unlock(&t->mu);
			continue;
		}
		if (rs.status == 416) {
			uint64_t end;

			if (range_end(http_response_header(&rs, "Range"), &end) == 0) {
				pthread_mutex_lock(&t->mu);
				if (end <= t->size) {
					t->acked = end;
					pthread_mutex_unlock(&t->mu);
					continue;
				}
				pthread_mutex_unlock(&t->mu);
			}
			TDXR_WARN("gitlab", "job %" PRId64 ": trace: 416 without a usable Range", t->job->id);
			rc = -1;
			break;
		}
		if (rs.status == 403 || rs.status == 404) {
			TDXR_WARN("gitlab", "job %" PRId64 ": trace: HTTP %ld: the job is no longer running",
			          t->job->id, rs.status);
			t->dead = 1;
			set_canceled(t);
			break;
		}
		{
			long ra = http_retry_after_ms(&rs, 60000);

			TDXR_WARN("gitlab", "job %" PRId64 ": trace: HTTP %ld; will resend from %" PRIu64,
			          t->job->id, rs.status, from);
			if (ra > 0)
				t->interval_ms = ra;
		}
		rc = -1;
		break;
	}
	free(chunk);
	OPENSSL_cleanse(tok, sizeof(tok));
	http_response_dispose(&rs);
	return rc;
}

/* Keep-alive while the job prints nothing (gitlab-runner's touchJob): PUT state=running. The
 * answer's Job-Status is how a cancel reaches a silent job; 403 = the job is over. */
static void trace_touch(struct gl_trace *t)
{
	char url[HTTP_URL_MAX];
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	struct http_request rq;
	struct http_response rs;
	struct tdxr_err e;
	json_t *o;
	char *body;

	job_url(t->job, "", url, sizeof(url));
	o = json_pack("{s:s,s:s}", "token", tdxr_secret_str(t->job->token), "state", "running");
	body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (body == NULL)
		return;
	memset(&rq, 0, sizeof(rq));
	rq.method = HTTP_PUT;
	rq.url = url;
	rq.headers = hdrs;
	rq.body = body;
	rq.body_len = strlen(body);
	http_response_init(&rs);
	if (http_request_send(t->http, &rq, &rs, &e) == 0) {
		t->last_contact = mono_s();
		check_job_status(t, &rs);
		if (rs.status == 403 || rs.status == 404) {
			TDXR_WARN("gitlab",
			          "job %" PRId64 ": HTTP %ld to a keep-alive: the job is no longer running",
			          t->job->id, rs.status);
			t->dead = 1;
			set_canceled(t);
		}
	}
	http_response_dispose(&rs);
	OPENSSL_cleanse(body, strlen(body));
	free(body);
}

static void *trace_thread(void *arg)
{
	struct gl_trace *t = arg;
	unsigned failures = 0;

	for (;;) {
		struct timespec ts;
		long wait_ms;
		int finishing;

		pthread_mutex_lock(&t->mu);
		wait_ms =
		    failures ? http_backoff_ms(failures, 500, t->finishing ? 10000 : 30000) : t->interval_ms;
		if (wait_ms > 1000 && !failures)
			wait_ms = 1000; /* look at the stop flag at least every second */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (wait_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!t->finishing || failures)
			pthread_cond_timedwait(&t->cv, &t->mu, &ts); /* finishing: wait only to back off */
		finishing = t->finishing;
		pthread_mutex_unlock(&t->mu);
		if (t->stop && atomic_load(t->stop) && !atomic_load(&t->canceled)) {
			t->agent_stop = 1;
			set_canceled(t);
		}
		if (trace_send(t) == 0) {
			failures = 0;
			if (finishing)
				break;
			/* Nothing to send for a while: still ask how the job is (a cancel of a silent step).
			 */
			if (!t->dead &&
			    mono_s() - t->last_contact >= (t->interval_ms < 3000 ? 3 : t->interval_ms / 1000))
				trace_touch(t);
		} else {
			failures++;
			if (finishing &&
			    (failures > 8 || (failures > 2 && t->stop && atomic_load(t->stop)))) {
				tdxr_log(TDXR_LOG_ERROR, "gitlab",
				         "job %" PRId64 ": trace: giving up after %u attempts", t->job->id,
				         failures);
				break;
			}
		}
	}
	return NULL;
}

static int trace_open(struct gl_trace *t, struct ci_job *j, const char *tmp_dir, const atomic_int *stop,
                      struct tdxr_err *err)
{
	char path[PATH_MAX];
	struct http_client_opts ho;
	size_t i;
	int rc;

	/* t->mu and t->cv are initialised by the caller (so dispose is safe on every path). */
	t->job = j;
	t->fd = -1;
	t->stop = stop;
	t->interval_ms = 3000;
	t->last_contact = mono_s();
	atomic_init(&t->canceled, 0);
	atomic_init(&t->exec_cancel, 0);
	/* Kept (0600, in the job's 0700 directory) until the final update went through, so an
	 * agent restarted after a crash can finish the job on the server (ci_gitlab_recover). */
	if ((size_t)snprintf(path, sizeof(path), "%s/trace", tmp_dir) >= sizeof(path))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	t->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (t->fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "gitlab: cannot create %s: %s", path, strerror(errno));
	if ((rc = tdxr_mask_new(trace_sink, t, &t->mask, err)))
		return rc;
	/* Masked values, the job token, and the runner token. */
	tdxr_mask_add(t->mask, tdxr_secret_str(j->token), tdxr_secret_len(j->token), NULL);
	tdxr_mask_add(t->mask, tdxr_secret_str(j->src->gc->token), tdxr_secret_len(j->src->gc->token), NULL);
	for (i = 0; i < j->n_vars; i++)
		if (j->vars[i].masked && tdxr_secret_len(j->vars[i].value) >= TDXR_MASK_MIN_LEN)
			tdxr_mask_add(t->mask, tdxr_secret_str(j->vars[i].value),
			              tdxr_secret_len(j->vars[i].value), NULL);
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 60000;
	if ((rc = http_client_new(&ho, &t->http, err)))
		return rc;
	if (pthread_create(&t->th, NULL, trace_thread, t) != 0)
		return tdxr_err_set(err, TDXR_ERROR, "gitlab: cannot start the trace thread");
	t->started = 1;
	return 0;
}

/* Flushes the mask, sends everything, stops the thread. */
static void trace_close(struct gl_trace *t)
{
	struct tdxr_err e;

	if (t->mask) {
		pthread_mutex_lock(&t->mu);
		if (tdxr_mask_flush(t->mask, &e))
			TDXR_WARN("gitlab", "job %" PRId64 ": trace: %s", t->job->id, e.msg);
		t->finishing = 1;
		pthread_cond_signal(&t->cv);
		pthread_mutex_unlock(&t->mu);
	}
	if (t->started) {
		pthread_join(t->th, NULL);
		t->started = 0;
	}
}

static void trace_dispose(struct gl_trace *t)
{
	trace_close(t);
	tdxr_mask_free(t->mask);
	t->mask = NULL;
	http_client_free(t->http);
	t->http = NULL;
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
}

/* ------------------------------------------------------------- running it */

struct gl_run {
	struct ci_job *j;
	const struct ci_env *env;
	struct gl_trace tr;
	struct box *box;
	char tmp[PATH_MAX - 64]; /* per-job local directory (0700) */
	char project_dir[1024];  /* in the box */
	int exit_code;           /* of the failing step */
	const char *failure;     /* failure_reason, NULL = success */
	int timed_out;
	int lock_fd; /* flock on the job record while this process runs the job */
	struct timespec deadline;
};

static void on_phase(void *ctx, const char *phase, double s)
{
	struct gl_run *r = ctx;

	trace_printf(&r->tr, "tdx-runner: %s done (%.2f s)\n", phase, s);
}

static void on_notice(void *ctx, const char *line)
{
	struct gl_run *r = ctx;

	trace_printf(&r->tr, "\033[33;1m%s\033[0;m\n", line);
}

static int on_output(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct gl_run *r = ctx;

	(void)which;
	trace_write(&r->tr, p, n);
	return 0;
}

/* Appends a single-quoted shell word. */
static int sq_append(struct tdxr_buf *b, const char *w)
{
	size_t i;
	int rc = tdxr_buf_append(b, "'", 1, NULL);

	for (i = 0; w[i] && rc == 0; i++)
		rc = w[i] == '\'' ? tdxr_buf_append(b, "'\\''", 4, NULL) : tdxr_buf_append(b, &w[i], 1, NULL);
	return rc ? rc : tdxr_buf_append(b, "'", 1, NULL);
}

static int bputs(struct tdxr_buf *b, const char *s)
{
	return tdxr_buf_append(b, s, strlen(s), NULL);
}

/* The bash script of one step: echo each command like gitlab-runner, then run it. */
static int step_script(struct gl_run *r, const struct gl_step *st, struct tdxr_buf *b)
{
	size_t i;
	int rc = 0;

	rc |= bputs(b, "set -eo pipefail\nset +o noclobber\ncd ");
	rc |= sq_append(b, r->project_dir);
	rc |= bputs(b, "\n");
	for (i = 0; i < st->n_lines && rc == 0; i++) {
		rc |= bputs(b, "printf '\\033[32;1m$ %s\\033[0;m\\n' ");
		rc |= sq_append(b, st->lines[i]);
		rc |= bputs(b, "\n");
		rc |= bputs(b, st->lines[i]);
		rc |= bputs(b, "\n");
	}
	return rc ? TDXR_ENOMEM : 0;
}

static long remaining_ms(const struct gl_run *r)
{
	struct timespec now;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long)(r->deadline.tv_sec - now.tv_sec) * 1000 + (r->deadline.tv_nsec - now.tv_nsec) / 1000000;
	return ms;
}

/* Runs one shell text in the box with the job's environment; *status = exit code. */
static int box_bash(struct gl_run *r, const char *name, const char *script, size_t len, long timeout_ms,
                    int *status, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result res;
	struct remote_env *env = NULL;
	char path[1200], cmd[1400];
	size_t n = 0, i;
	int rc;

	*status = -1;
	/* The script text holds no secret (values come through remote_env on stdin). */
	snprintf(path, sizeof(path), "%s/.tdxr-%s.sh", r->project_dir, name);
	snprintf(cmd, sizeof(cmd), "cat > '%s'", path);
	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_buf = (const uint8_t *)script;
	eo.stdin_len = len;
	eo.stdin_fd = -1;
	eo.timeout_ms = 60000;
	if ((rc = box_exec(r->box, &eo, &res, err)))
		return rc;
	if (!res.exited || res.exit_status != 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot write the step script into the box");
	env = calloc(r->j->n_vars + 8, sizeof(*env));
	if (env == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < r->j->n_vars; i++) {
		env[n].name = r->j->vars[i].key;
		env[n].value = tdxr_secret_str(r->j->vars[i].value);
		n++;
	}
	env[n].name = "CI_PROJECT_DIR";
	env[n++].value = r->project_dir;
	env[n].name = "CI_BUILDS_DIR";
	env[n++].value = box_work_dir(r->box);
	env[n].name = "CI_JOB_TOKEN";
	env[n++].value = tdxr_secret_str(r->j->token);
	env[n].name = "CI_SERVER";
	env[n++].value = "yes";
	env[n].name = "GITLAB_CI";
	env[n++].value = "true";
	env[n].name = "CI";
	env[n++].value = "true";
	env[n].name = "CI_RUNNER_EXECUTABLE_ARCH";
	env[n++].value = "linux/amd64";
	snprintf(cmd, sizeof(cmd), "exec bash --noprofile --norc '%s'", path);
	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.env = env;
	eo.n_env = n;
	eo.stdin_fd = -1;
	eo.output = on_output;
	eo.output_ctx = r;
	eo.timeout_ms = timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms;
	eo.cancel = &r->tr.exec_cancel;
	rc = box_exec(r->box, &eo, &res, err);
	free(env);
	if (rc)
		return rc;
	*status = res.exited ? res.exit_status : 128 + 15;
	return 0;
}

/* File variables: the value goes into a file in the box; the variable holds its path. */
static int file_vars(struct gl_run *r, struct tdxr_err *err)
{
	size_t i;

	for (i = 0; i < r->j->n_vars; i++) {
		struct gl_var *v = &r->j->vars[i];
		struct remote_exec_opts eo;
		struct remote_exec_result res;
		char path[1400], cmd[3000];
		struct tdxr_secret *p;
		int rc;

		if (!v->file)
			continue;
		snprintf(path, sizeof(path), "%s.tmp/%s", r->project_dir, v->key);
		snprintf(cmd, sizeof(cmd), "umask 077 && mkdir -p '%s.tmp' && cat > '%s'", r->project_dir,
		         path);
		memset(&eo, 0, sizeof(eo));
		eo.command = cmd;
		eo.stdin_buf = (const uint8_t *)tdxr_secret_str(v->value);
		eo.stdin_len = tdxr_secret_len(v->value);
		eo.stdin_fd = -1;
		eo.timeout_ms = 60000;
		if ((rc = box_exec(r->box, &eo, &res, err)))
			return rc;
		if (!res.exited || res.exit_status != 0)
			return tdxr_err_set(err, TDXR_EIO, "cannot write file variable %s into the box",
			                    v->key);
		p = tdxr_secret_new(path, strlen(path));
		if (p == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		tdxr_secret_free(v->value);
		v->value = p;
	}
	return 0;
}

static int step_should_run(const struct gl_step *st, int failed)
{
	if (strcmp(st->when, "always") == 0)
		return 1;
	if (strcmp(st->when, "on_failure") == 0)
		return failed;
	return !failed;
}

static int get_sources(struct gl_run *r, struct tdxr_err *err)
{
	const struct config *cfg = r->env->cfg;
	struct remote_sync_checkout_opts co;
	struct remote_sync_manifest *m = NULL;
	char cache[PATH_MAX], wd[PATH_MAX];
	int rc;

	if ((size_t)snprintf(cache, sizeof(cache), "%s/gitlab-cache", cfg->state_dir) >= sizeof(cache) ||
	    (size_t)snprintf(wd, sizeof(wd), "%s/src", r->tmp) >= sizeof(wd))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	memset(&co, 0, sizeof(co));
	co.cache_dir = cache;
	co.url = r->j->repo_url;
	co.sha = r->j->sha;
	co.username = "gitlab-ci-token";
	co.token = r->j->token;
	co.workdir = wd;
	if ((rc = remote_sync_checkout(&co, err)))
		return tdxr_err_prefix(err, "get_sources: fetch %s", r->j->sha);
	if ((rc = remote_sync_manifest_commit(wd, r->j->sha, &m, err)))
		return tdxr_err_prefix(err, "get_sources");
	rc = box_sync_manifest(r->box, wd, m, err);
	if (!rc)
		trace_printf(&r->tr, "Synced %zu files of commit %.12s into the box (no git in the box)\n",
		             remote_sync_manifest_count(m), r->j->sha);
	remote_sync_manifest_free(m);
	return rc;
}

/* ----------------------------------------------------------------- artifacts */

static int has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static int pat_match(const char *pat, const char *path)
{
	size_t n = strlen(pat);
	char buf[PATH_MAX];

	if (!has_glob(pat)) {
		while (n > 1 && pat[n - 1] == '/')
			n--;
		return strncmp(pat, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
	}
	if (fnmatch(pat, path, strstr(pat, "**") ? 0 : FNM_PATHNAME) == 0)
		return 1;
	/* A matched directory takes its contents: try each parent of path. */
	if (strlen(path) >= sizeof(buf))
		return 0;
	memcpy(buf, path, strlen(path) + 1);
	for (;;) {
		char *sl = strrchr(buf, '/');

		if (sl == NULL)
			return 0;
		*sl = '\0';
		if (fnmatch(pat, buf, strstr(pat, "**") ? 0 : FNM_PATHNAME) == 0)
			return 1;
	}
}

struct zip_walk {
	zip_t *z;
	const struct gl_artifact *a;
	size_t files;
	uint64_t bytes;
	int rc;
};

static void walk_add(struct zip_walk *w, const char *root, const char *rel)
{
	char full[PATH_MAX];
	struct stat st;
	size_t i;
	int keep = 0;

	if ((size_t)snprintf(full, sizeof(full), "%s/%s", root, rel) >= sizeof(full) || lstat(full, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(full);
		struct dirent *de;

		if (d == NULL)
			return;
		while ((de = readdir(d)) != NULL) {
			char sub[PATH_MAX];

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) <
			    sizeof(sub))
				walk_add(w, root, sub);
		}
		closedir(d);
		return;
	}
	if (!S_ISREG(st.st_mode))
		return;
	for (i = 0; i < w->a->n_paths && !keep; i++)
		keep = pat_match(w->a->paths[i], rel);
	for (i = 0; i < w->a->n_exclude && keep; i++)
		if (pat_match(w->a->exclude[i], rel))
			keep = 0;
	if (!keep || zip_name_locate(w->z, rel, 0) >= 0)
		return;
	{
		zip_source_t *zs = zip_source_file(w->z, full, 0, -1);

		zip_int64_t idx;

		if (zs == NULL || (idx = zip_file_add(w->z, rel, zs, ZIP_FL_ENC_UTF_8)) < 0) {
			zip_source_free(zs);
			w->rc = TDXR_EIO;
			return;
		}
		/* Fast deflate: artifacts are often compressed already; level 1 keeps big ones cheap. */
		zip_set_file_compression(w->z, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 1);
	}
	w->files++;
	w->bytes += (uint64_t)st.st_size;
}

/* The pattern's directory prefix without globs ("out/x*.txt" -> "out"; "x*.txt" -> ""). */
static void glob_prefix(const char *pat, char *out, size_t cap)
{
	const char *g = strpbrk(pat, "*?[");
	size_t n = g ? (size_t)(g - pat) : strlen(pat);

	while (n > 0 && g && pat[n - 1] != '/')
		n--;
	while (n > 0 && pat[n - 1] == '/')
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, pat, n);
	out[n] = '\0';
}

static int upload(struct gl_run *r, const char *zip_path, const struct gl_artifact *a, struct tdxr_err *err)
{
	char url[HTTP_URL_MAX], tok[600];
	const char *hdrs[2];
	struct http_part parts[4];
	struct http_request rq;
	struct http_response rs;
	struct http_client *http = NULL;
	struct http_client_opts ho;
	size_t np = 0;
	unsigned attempt;
	int rc, sent;

	job_url(r->j, "/artifacts", url, sizeof(url));
	snprintf(tok, sizeof(tok), "JOB-TOKEN: %s", tdxr_secret_str(r->j->token));
	hdrs[0] = tok;
	hdrs[1] = NULL;
	memset(parts, 0, sizeof(parts));
	parts[np].name = "file";
	parts[np].file = zip_path;
	parts[np].filename = "artifacts.zip";
	parts[np++].content_type = "application/zip";
	parts[np].name = "artifact_type";
	parts[np].data = "archive";
	parts[np++].data_len = 7;
	parts[np].name = "artifact_format";
	parts[np].data = "zip";
	parts[np++].data_len = 3;
	if (a && a->expire_in[0]) {
		parts[np].name = "expire_in";
		parts[np].data = a->expire_in;
		parts[np++].data_len = strlen(a->expire_in);
	}
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 3600000;
	if ((rc = http_client_new(&ho, &http, err)))
		return rc;
	http_response_init(&rs);
	for (attempt = 0;; attempt++) {
		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_POST;
		rq.url = url;
		rq.headers = hdrs;
		rq.parts = parts;
		rq.n_parts = np;
		rc = sent = http_request_send(http, &rq, &rs, err);
		if (rc == 0 && rs.status == 413) {
			trace_printf(
			    &r->tr, "\033[31;1mERROR: Uploading artifacts: too large archive (HTTP 413): the "
			            "server's artifact size limit\033[0;m\n");
			rc = tdxr_err_set(err, TDXR_ETOOBIG, "artifacts: too large (HTTP 413)");
			break;
		}
		if (rc == 0 && (rc = http_response_check(&rq, &rs, err)) == 0)
			break;
		/* A POST: retried only when it surely was not processed (a second archive is refused). */
		if (attempt >= 3 || !http_retry_should(sent, &rs, HTTP_RETRY_UNSAFE))
			break;
		{
			long ms = http_retry_after_ms(&rs, 60000);

			if (ms < 0)
				ms = http_backoff_ms(attempt, 1000, 30000);
			usleep((useconds_t)ms * 1000);
		}
	}
	http_response_dispose(&rs);
	http_client_free(http);
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

/* Copies the job's archive artifacts back, zips them with the attestation bundle at
 * tdx-attestation.json, uploads. With no artifacts declared, the bundle goes up alone. */
static int artifacts(struct gl_run *r, int failed, struct tdxr_err *err)
{
	const struct gl_artifact *a = NULL;
	char zpath[PATH_MAX], pulled[PATH_MAX];
	struct zip_walk w;
	const char *bundle = r->box ? box_bundle(r->box) : NULL;
	size_t i, k;
	int zerr = 0, rc = 0, declared = 0;

	for (i = 0; i < r->j->n_arts; i++) {
		const struct gl_artifact *x = &r->j->arts[i];

		if (strcmp(x->type, "archive") != 0) {
			trace_printf(&r->tr, "Skipping %s artifacts: only archive artifacts are supported\n",
			             x->type);
			continue;
		}
		declared = 1;
		if ((strcmp(x->when, "always") == 0 || (strcmp(x->when, "on_failure") == 0) == failed) &&
		    a == NULL)
			a = x;
	}
	if (declared && a == NULL)
		return 0; /* artifacts declared, none for this outcome */
	if (bundle == NULL && a == NULL)
		return 0;
	snprintf(zpath, sizeof(zpath), "%s/artifacts.zip", r->tmp);
	snprintf(pulled, sizeof(pulled), "%s/pulled", r->tmp);
	memset(&w, 0, sizeof(w));
	w.a = a;
	w.z = zip_open(zpath, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
	if (w.z == NULL)
		return tdxr_err_set(err, TDXR_EIO, "artifacts: cannot create %s (libzip error %d)", zpath,
		                    zerr);
	if (a && r->box && box_attested(r->box)) {
		section(&r->tr, 1, "upload_artifacts", "Uploading artifacts");
		for (k = 0; k < a->n_paths; k++) {
			char pre[PATH_MAX];
			const char *one[1];
			struct tdxr_err pe;

			glob_prefix(a->paths[k], pre, sizeof(pre));
			one[0] = pre[0] ? pre : ".";
			if (remote_sync_path_check(one[0], &pe) != 0 ||
			    box_pull(r->box, one, 1, pulled, &pe) != 0) {
				trace_printf(&r->tr, "WARNING: %s: no matching files (%s)\n", a->paths[k],
				             pe.msg);
				continue;
			}
		}
		walk_add(&w, pulled, "");
		trace_printf(&r->tr, "%zu file(s), %" PRIu64 " bytes in the archive\n", w.files, w.bytes);
	}
	if (bundle) {
		char *copy = strdup(bundle);
		zip_source_t *zs = copy ? zip_source_buffer(w.z, copy, strlen(copy), 1) : NULL;

		if (zs == NULL || zip_file_add(w.z, "tdx-attestation.json", zs, ZIP_FL_OVERWRITE) < 0) {
			if (zs)
				zip_source_free(zs);
			else
				free(copy);
			w.rc = TDXR_EIO;
		}
	}
	if (w.rc || zip_close(w.z) != 0) {
		if (w.rc == 0)
			zip_discard(w.z);
		else
			zip_discard(w.z);
		return tdxr_err_set(err, TDXR_EIO, "artifacts: cannot write the archive");
	}
	rc = upload(r, zpath, a, err);
	if (rc == 0)
		trace_printf(&r->tr, "Uploaded the artifacts archive (with tdx-attestation.json)\n");
	if (a)
		section(&r->tr, 0, "upload_artifacts", NULL);
	unlink(zpath);
	return rc;
}

/* ------------------------------------------------------------- final state */

static int final_update(struct gl_run *r, struct tdxr_err *err)
{
	char url[HTTP_URL_MAX], cks[32];
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	struct http_request rq;
	struct http_response rs;
	json_t *o;
	char *text;
	unsigned attempt;
	int rc = 0, sent;
	struct http_client *own = NULL, *http = r->tr.http;

	/* The trace's client, or (when the job failed before its trace existed) one of our own. */
	if (http == NULL) {
		if ((rc = http_client_new(NULL, &own, err)))
			return rc;
		http = own;
	}
	job_url(r->j, "", url, sizeof(url));
	snprintf(cks, sizeof(cks), "crc32:%08x", r->tr.crc);
	o = json_pack("{s:s,s:s,s:s,s:{s:s,s:I}}", "token", tdxr_secret_str(r->j->token), "state",
	              r->failure ? "failed" : "success", "checksum", cks, "output", "checksum", cks,
	              "bytesize", (json_int_t)r->tr.size);
	if (o && r->failure) {
		json_object_set_new(o, "failure_reason", json_string(r->failure));
		if (r->exit_code >= 0)
			json_object_set_new(o, "exit_code", json_integer(r->exit_code));
	}
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL) {
		http_client_free(own);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	http_response_init(&rs);
	for (attempt = 0; attempt < 60; attempt++) {
		long wait;

		/* The agent is stopping: a few tries, not minutes (a restart recovers the job). */
		if (attempt >= 3 && r->env && r->env->stop && atomic_load(r->env->stop))
			break;

		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_PUT;
		rq.url = url;
		rq.headers = hdrs;
		rq.body = text;
		rq.body_len = strlen(text);
		rc = sent = http_request_send(http, &rq, &rs, err);
		if (rc == 0 && rs.status == 200) {
			break;
		} else if (rc == 0 && rs.status == 202) {
			const char *iv = http_response_header(&rs, "X-GitLab-Trace-Update-Interval");
			uint64_t sec = 3;

			if (iv)
				tdxr_parse_u64(iv, 60, &sec, NULL);
			wait = sec ? (long)sec * 1000 : 500;
		} else if (rc == 0 && (rs.status == 403 || rs.status == 404)) {
			/* The job is over on the server (canceled, erased): nothing more to say. */
			rc = 0;
			break;
		} else {
			if (rc == 0)
				rc = http_response_check(&rq, &rs, err);
			if (!http_retry_should(sent, &rs, HTTP_RETRY_500) || attempt >= 10)
				break;
			wait = http_retry_after_ms(&rs, 60000);
			if (wait < 0)
				wait = http_backoff_ms(attempt, 500, 30000);
		}
		usleep((useconds_t)wait * 1000);
	}
	if (rc == 0 && rs.status == 202)
		rc = tdxr_err_set(err, TDXR_ETIMEOUT,
		                  "gitlab: the server kept answering 202 to the final update");
	http_response_dispose(&rs);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	http_client_free(own);
	return rc;
}

static int make_tmp(struct gl_run *r, struct tdxr_err *err)
{
	char base[PATH_MAX];

	if ((size_t)snprintf(base, sizeof(base), "%s/tmp", r->env->cfg->state_dir) >= sizeof(base) ||
	    (mkdir(base, 0700) != 0 && errno != EEXIST) ||
	    (size_t)snprintf(r->tmp, sizeof(r->tmp), "%s/job-%" PRId64 "-XXXXXX", base, r->j->id) >=
	        sizeof(r->tmp) ||
	    mkdtemp(r->tmp) == NULL)
		return tdxr_err_set(err, TDXR_EIO, "gitlab: cannot create a job directory under %s", base);
	return 0;
}

/* The job's record (0600): what a restarted agent needs to finish the job on the server if
 * this process dies (ci_gitlab_recover). Locked (flock) for as long as this process runs it. */
static int job_record(struct gl_run *r, struct tdxr_err *err)
{
	char path[PATH_MAX], *text;
	json_t *o;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/job.json", r->tmp) >= sizeof(path))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	o = json_pack("{s:s,s:I,s:s,s:s}", "url", r->j->src->gc->url, "id", (json_int_t)r->j->id, "token",
	              tdxr_secret_str(r->j->token), "desc", r->j->desc);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = tdxr_file_write_atomic(path, text, strlen(text), 0600, err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (rc)
		return rc;
	r->lock_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->lock_fd < 0 || flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return tdxr_err_set(err, TDXR_EIO, "gitlab: cannot lock %s", path);
	return 0;
}

static void rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *de;

		if (d) {
			while ((de = readdir(d)) != NULL) {
				char sub[PATH_MAX];

				if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
					continue;
				if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) <
				    sizeof(sub))
					rm_rf(sub);
			}
			closedir(d);
		}
		rmdir(path);
	} else {
		unlink(path);
	}
}

static int gl_run(void *p, struct ci_job *j, const struct ci_env *env, struct tdxr_err *err)
{
	struct gl_run *r;
	struct box_opts bo;
	struct tdxr_err e, rel;
	size_t i;
	int rc, failed = 0;

	(void)p;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	r->j = j;
	r->env = env;
	r->exit_code = -1;
	r->lock_fd = -1;
	r->tr.fd = -1;
	pthread_mutex_init(&r->tr.mu, NULL);
	pthread_cond_init(&r->tr.cv, NULL);
	tdxr_err_clear(&e);
	tdxr_err_clear(&rel);
	clock_gettime(CLOCK_MONOTONIC, &r->deadline);
	r->deadline.tv_sec += j->timeout_s;
	if ((rc = make_tmp(r, err)) || (rc = job_record(r, err)) ||
	    (rc = trace_open(&r->tr, j, r->tmp, env->stop, err))) {
		/* Without a trace we cannot run it; tell the server it failed on our side. */
		r->failure = "runner_system_failure";
		final_update(r, &e);
		goto done;
	}
	trace_printf(&r->tr, "\033[1mRunning with tdx-runner %s on %s\033[0;m\n", GL_VERSION,
	             env->runner_name ? env->runner_name : "?");
	/* prepare: lease + gate */
	section(&r->tr, 1, "prepare_executor", "Preparing an attested TDX box");
	memset(&bo, 0, sizeof(bo));
	bo.cfg = env->cfg;
	bo.executor_kind = env->executor_kind;
	bo.job = j->desc;
	bo.cancel = &r->tr.cancel_sig;
	bo.on_phase = on_phase;
	bo.on_notice = on_notice;
	bo.ctx = r;
	rc = box_acquire(&bo, &r->box, &e);
	section(&r->tr, 0, "prepare_executor", NULL);
	if (rc) {
		trace_printf(&r->tr, "\033[31;1mERROR: %s\033[0;m\n", e.msg);
		if (rc == TDXR_EATTEST)
			trace_printf(&r->tr,
			             "\033[31;1mThe box did not attest: it was destroyed and received "
			             "nothing.\033[0;m\n");
		r->failure = "runner_system_failure";
		goto finish;
	}
	snprintf(r->project_dir, sizeof(r->project_dir), "%s", box_work_dir(r->box));
	section(&r->tr, 1, "get_sources", "Getting source from Git repository");
	rc = get_sources(r, &e);
	if (rc == 0)
		rc = file_vars(r, &e);
	section(&r->tr, 0, "get_sources", NULL);
	if (rc) {
		trace_printf(&r->tr, "\033[31;1mERROR: %s\033[0;m\n", e.msg);
		r->failure = "runner_system_failure";
		goto finish;
	}
	for (i = 0; i < j->n_steps; i++) {
		const struct gl_step *st = &j->steps[i];
		struct tdxr_buf b;
		long tmo;
		int status = 0, after = strcmp(st->name, "after_script") == 0;
		char sname[64];

		if (atomic_load(&r->tr.canceled))
			break;
		if (!step_should_run(st, failed) || st->n_lines == 0)
			continue;
		tdxr_buf_init(&b, TDXR_CAP_API);
		if (step_script(r, st, &b)) {
			tdxr_buf_dispose(&b);
			r->failure = "runner_system_failure";
			break;
		}
		tmo = after ? GL_AFTER_SCRIPT_TIMEOUT * 1000L : remaining_ms(r);
		if (st->timeout_s > 0 && st->timeout_s * 1000L < tmo)
			tmo = (long)st->timeout_s * 1000L;
		if (tmo <= 0)
			tmo = 1;
		snprintf(sname, sizeof(sname), "step_%s", st->name);
		section(&r->tr, 1, sname,
		        after ? "Running after_script" : "Executing the job script in the box");
		rc = box_bash(r, st->name, (const char *)b.data, b.len, tmo, &status, &e);
		tdxr_buf_dispose(&b);
		section(&r->tr, 0, sname, NULL);
		if (rc == TDXR_ETIMEOUT) {
			trace_printf(&r->tr, "\033[31;1mERROR: Job failed: execution took longer than the "
			                     "timeout\033[0;m\n");
			if (!after) {
				r->failure = "job_execution_timeout";
				r->timed_out = 1;
				failed = 1;
				atomic_store(&r->tr.exec_cancel, 0);
			}
			continue;
		}
		if (rc == TDXR_ECANCELED || atomic_load(&r->tr.canceled)) {
			trace_printf(&r->tr, r->tr.agent_stop
			                         ? "\033[31;1mERROR: the tdx-runner agent is stopping: "
			                           "job cancelled\033[0;m\n"
			                         : "\033[31;1mERROR: Job canceled\033[0;m\n");
			r->failure = "job_canceled";
			failed = 1;
			break;
		}
		if (rc) {
			trace_printf(&r->tr, "\033[31;1mERROR: %s\033[0;m\n", e.msg);
			if (!after) {
				r->failure = "runner_system_failure";
				failed = 1;
			}
			continue;
		}
		if (status != 0 && !after) {
			if (st->allow_failure) {
				trace_printf(&r->tr,
				             "\033[33;1mWARNING: step %s failed with exit code %d "
				             "(allowed to fail)\033[0;m\n",
				             st->name, status);
			} else {
				trace_printf(&r->tr, "\033[31;1mERROR: Job failed: exit code %d\033[0;m\n",
				             status);
				r->failure = "script_failure";
				r->exit_code = status;
				failed = 1;
			}
		}
	}
finish:
	if (!atomic_load(&r->tr.canceled) && (rc = artifacts(r, r->failure != NULL, &e)) != 0) {
		trace_printf(&r->tr, "\033[31;1mERROR: uploading artifacts: %s\033[0;m\n", e.msg);
		if (r->failure == NULL)
			r->failure = "runner_system_failure";
	}
	if (r->box) {
		section(&r->tr, 1, "release", "Releasing the box");
		if (box_release(r->box, &rel))
			trace_printf(&r->tr, "WARNING: %s\n", rel.msg);
		section(&r->tr, 0, "release", NULL);
		box_free(r->box);
		r->box = NULL;
	}
	if (r->failure == NULL)
		trace_printf(&r->tr, "\033[32;1mJob succeeded\033[0;m\n");
	trace_close(&r->tr);
	if (strcmp(r->failure ? r->failure : "", "job_canceled") == 0)
		/* A server-side cancel: the server keeps "canceled" whatever we say. The agent
		 * stopping (SIGTERM past --stop-timeout) is our failure, not the script's. */
		r->failure = r->tr.agent_stop ? "runner_system_failure" : "unknown_failure";
	rc = final_update(r, err);
	if (rc)
		tdxr_log(TDXR_LOG_ERROR, "gitlab", "%s: final update: %s", j->desc, err->msg);
	else
		TDXR_INFO("gitlab", "%s: %s", j->desc, r->failure ? r->failure : "success");
done:
	trace_dispose(&r->tr);
	/* Reported (or given up on): nothing left for a restarted agent to do. */
	if (r->tmp[0])
		rm_rf(r->tmp);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	free(r);
	return rc;
}

/* ---------------------------------------------------------------- recovery */

/* One job directory a dead agent left: send the rest of its trace with a notice and report
 * the job failed (runner_system_failure). Its box was released by the start-up reap. */
static int recover_one(struct gl_source *s, const char *dir, struct tdxr_err *err)
{
	static const char notice[] = "\n\033[31;1mERROR: the tdx-runner agent stopped while this job was "
	                             "running (crash or kill); it was restarted, released the job's box and "
	                             "failed the job.\033[0;m\n";
	char path[PATH_MAX];
	uint8_t *rec = NULL, buf[65536];
	size_t rlen = 0;
	json_t *o = NULL;
	struct ci_job *j = NULL;
	struct gl_run *r = NULL;
	struct http_client_opts ho;
	int rc, lock = -1, tries;
	ssize_t n;
	off_t off = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/job.json", dir) >= sizeof(path))
		return 0;
	lock = open(path, O_RDONLY | O_CLOEXEC);
	if (lock < 0)
		return 0; /* not a job directory (yet): the crash came before the record */
	if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
		close(lock);
		return 0; /* a live agent runs it */
	}
	if ((rc = tdxr_file_read(path, 64 * 1024, &rec, &rlen, err)))
		goto out;
	o = json_loadb((const char *)rec, rlen, JSON_REJECT_DUPLICATES, NULL);
	OPENSSL_cleanse(rec, rlen);
	if (!json_is_object(o) || jstr(o, "url") == NULL || jstr(o, "token") == NULL ||
	    !json_is_integer(json_object_get(o, "id"))) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "%s is not a job record", path);
		goto out;
	}
	if (strcmp(jstr(o, "url"), s->gc->url) != 0) {
		rc = 0; /* another source's job */
		goto out;
	}
	j = calloc(1, sizeof(*j));
	r = calloc(1, sizeof(*r));
	if (r) {
		r->tr.fd = -1;
		pthread_mutex_init(&r->tr.mu, NULL);
		pthread_cond_init(&r->tr.cv, NULL);
	}
	if (j == NULL || r == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	j->src = s;
	j->id = json_integer_value(json_object_get(o, "id"));
	j->token = tdxr_secret_new(jstr(o, "token"), strlen(jstr(o, "token")));
	snprintf(j->desc, sizeof(j->desc), "%s", jstr(o, "desc") ? jstr(o, "desc") : "gitlab job");
	r->j = j;
	r->exit_code = -1;
	r->failure = "runner_system_failure";
	r->tr.job = j;
	r->tr.interval_ms = 1000;
	if ((size_t)snprintf(path, sizeof(path), "%s/trace", dir) < sizeof(path))
		r->tr.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (r->tr.fd < 0 || j->token == NULL) {
		rc = tdxr_err_set(err, TDXR_EIO, "cannot open %s", path);
		goto out;
	}
	while ((n = pread(r->tr.fd, buf, sizeof(buf), off)) > 0) {
		r->tr.crc = crc32_update(r->tr.crc, buf, (size_t)n);
		off += n;
	}
	r->tr.size = (uint64_t)off;
	if (pwrite(r->tr.fd, notice, sizeof(notice) - 1, off) == (ssize_t)(sizeof(notice) - 1)) {
		r->tr.crc = crc32_update(r->tr.crc, (const uint8_t *)notice, sizeof(notice) - 1);
		r->tr.size += sizeof(notice) - 1;
	}
	memset(&ho, 0, sizeof(ho));
	ho.timeout_ms = 60000;
	if ((rc = http_client_new(&ho, &r->tr.http, err)))
		goto out;
	/* From 0: the server's 416 tells where it stands. */
	for (tries = 0; tries < 10 && trace_send(&r->tr) != 0; tries++)
		usleep((useconds_t)http_backoff_ms((unsigned)tries, 500, 10000) * 1000);
	rc = final_update(r, err);
	if (rc == 0)
		TDXR_INFO("gitlab", "%s: reported failed after the agent restarted", j->desc);
out:
	if (r) {
		http_client_free(r->tr.http);
		if (r->tr.fd >= 0)
			close(r->tr.fd);
		pthread_mutex_destroy(&r->tr.mu);
		pthread_cond_destroy(&r->tr.cv);
		free(r);
	}
	if (rc == 0 && j)
		rm_rf(dir);
	job_free(j);
	json_decref(o);
	free(rec);
	close(lock);
	return rc;
}

static int gl_recover(void *p, struct tdxr_err *err)
{
	struct gl_source *s = p;
	char base[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if ((size_t)snprintf(base, sizeof(base), "%s/tmp", s->cfg->state_dir) >= sizeof(base))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	d = opendir(base);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char dir[PATH_MAX];
		struct tdxr_err e;

		if (strncmp(de->d_name, "job-", 4) != 0 ||
		    (size_t)snprintf(dir, sizeof(dir), "%s/%s", base, de->d_name) >= sizeof(dir))
			continue;
		if (recover_one(s, dir, &e)) {
			TDXR_WARN("gitlab", "recovering %s: %s", dir, e.msg);
			rc = tdxr_err_set(err, TDXR_EIO, "recovering %s: %s", dir, e.msg);
		}
	}
	closedir(d);
	return rc;
}

static const char *gl_describe(const struct ci_job *j)
{
	return j->desc;
}

const struct ci_ops ci_gitlab = {
	.name = "gitlab",
	.poll = gl_poll,
	.run = gl_run,
	.describe = gl_describe,
	.recover = gl_recover,
	.job_free = job_free,
	.free = src_free,
};

/* ------------------------------------------------------------ for tests */

int gitlab_job_parse(const uint8_t *body, size_t len, struct ci_job **out, struct tdxr_err *err)
{
	return job_parse(NULL, body, len, out, err);
}

void gitlab_job_free(struct ci_job *j)
{
	job_free(j);
}

int64_t gitlab_job_id(const struct ci_job *j)
{
	return j->id;
}

size_t gitlab_job_n_steps(const struct ci_job *j)
{
	return j->n_steps;
}

size_t gitlab_job_n_vars(const struct ci_job *j)
{
	return j->n_vars;
}

const char *gitlab_job_repo_url(const struct ci_job *j)
{
	return j->repo_url;
}

int gitlab_pat_match(const char *pat, const char *path)
{
	return pat_match(pat, path);
}

void gitlab_glob_prefix(const char *pat, char *out, size_t cap)
{
	glob_prefix(pat, out, cap);
}

int gitlab_strip_userinfo(const char *url, char *out, size_t cap)
{
	return strip_userinfo(url, out, cap);
}

uint32_t gitlab_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
	return crc32_update(crc, p, n);
}
