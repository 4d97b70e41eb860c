/*
 * gitlab_executor.c - gitlab-runner's custom executor driver (see
 * gitlab_executor.h, docs/gitlab-executor.md). One process per stage; the
 * stages of a job meet through files under <state_dir>/gitlab-executor/:
 *
 *   <job>.lease   the record: {"lease_id", "executor", "job"} (0600), written as
 *                 soon as a claim exists, removed by cleanup
 *   <job>.lock    flock held by prepare and cleanup (one at a time per job)
 *   <job>/        attestation.json (the bundle of the last gate), src/ (the
 *                 checked-out commit), box/ (the local executor's in-box job root)
 *   git-cache/    bare repositories shared by jobs (remote_sync_checkout)
 *
 * Inside the box, the job root R holds builds/ (gitlab-runner's builds_dir) and
 * cache/; CI_PROJECT_DIR (below R/builds) is a symlink to the box's work
 * directory, which is where box_sync_manifest puts the commit's tree. Stage
 * scripts reach bash on the channel's stdin and are never stored in the box.
 *
 * Invariants: one lease per job id (prepare reuses an earlier attempt's lease
 * when it still attests, releases it otherwise, and releases any orphan claim
 * labelled with the job); every stage re-runs the gate before a byte is sent;
 * the job token only reaches libgit2's credential callback.
 */
#include "agent/ci/gitlab_executor.h"

#include "agent/box.h"
#include "agent/config.h"
#include "agent/lease.h"
#include "agent/remote/remote.h"
#include "agent/remote/sync.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/mask.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#define GLX_MOD "gitlab-executor"
#define GLX_ENV_PREFIX "CUSTOM_ENV_"
#define GLX_SCRIPT_MAX (64u * 1024u * 1024u) /* a stage script (variables included) */
#define GLX_RECORD_MAX 4096u
#define GLX_JOB_ID_MAX 20
#define GLX_LOCK_WAIT_S 120
#define GLX_KEEP_MARGIN_S 600    /* kept lease outlives the job timeout by this */
#define GLX_KEEP_DEFAULT_S 86400 /* when CI_JOB_TIMEOUT is unknown */
#define GLX_STOP_RETRY_S 15      /* cleanup: wait for a dying stage to drop its claim */

extern char **environ;

/* ------------------------------------------------------------------ environment */

static int env_copy(const char *name, char **out, struct tdxr_err *err)
{
	char full[128];
	const char *v;

	*out = NULL;
	if ((size_t)snprintf(full, sizeof(full), "%s%s", GLX_ENV_PREFIX, name) >= sizeof(full))
		return tdxr_err_set(err, TDXR_EINVAL, "environment variable name too long");
	v = getenv(full);
	if (v == NULL || v[0] == '\0')
		return 0;
	*out = strdup(v);
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

/* Wipes every CUSTOM_ENV_* value where it lives (also the initial environment block that
 * /proc/PID/environ shows) and removes the variable. */
static void env_scrub(void)
{
	for (;;) {
		char name[256];
		size_t i, n = 0;
		char *e = NULL, *eq;

		for (i = 0; environ && environ[i]; i++)
			if (strncmp(environ[i], GLX_ENV_PREFIX, strlen(GLX_ENV_PREFIX)) == 0) {
				e = environ[i];
				break;
			}
		if (e == NULL)
			return;
		eq = strchr(e, '=');
		if (eq == NULL || (n = (size_t)(eq - e)) >= sizeof(name)) {
			/* A name we cannot copy: wipe it in place so the loop ends. */
			OPENSSL_cleanse(e, strlen(e));
			continue;
		}
		memcpy(name, e, n);
		name[n] = '\0';
		OPENSSL_cleanse(eq + 1, strlen(eq + 1));
		if (unsetenv(name) != 0)
			OPENSSL_cleanse(e, strlen(e));
	}
}

static int pct_decode(const char *p, size_t n, char **out, struct tdxr_err *err)
{
	char *s = malloc(n + 1);
	size_t i, o = 0;

	*out = NULL;
	if (s == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if (p[i] == '%') {
			int hi = -1, lo = -1;

			if (i + 2 >= n || (hi = tdxr_hex_digit(p[i + 1])) < 0 ||
			    (lo = tdxr_hex_digit(p[i + 2])) < 0 || (hi == 0 && lo == 0)) {
				OPENSSL_cleanse(s, n + 1);
				free(s);
				return tdxr_err_set(err, TDXR_EINVAL, "repository URL: bad percent escape");
			}
			s[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			s[o++] = p[i];
		}
	}
	s[o] = '\0';
	*out = s;
	return 0;
}

int ci_glexec_url_split(const char *in, char **url, char **user, struct tdxr_secret **pass,
                        struct tdxr_err *err)
{
	const char *auth, *end, *at = NULL, *colon, *q;
	char *u = NULL, *pw = NULL, *clean = NULL;
	size_t pre, rest;
	int rc = 0;

	*url = NULL;
	*user = NULL;
	*pass = NULL;
	auth = strstr(in, "://");
	if (auth == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "repository URL has no scheme");
	auth += 3;
	end = auth + strcspn(auth, "/?#");
	for (q = auth; q < end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL) {
		*url = strdup(in);
		return *url ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	colon = memchr(auth, ':', (size_t)(at - auth));
	if ((rc = pct_decode(auth, (size_t)((colon ? colon : at) - auth), &u, err)))
		goto out;
	if (colon && (rc = pct_decode(colon + 1, (size_t)(at - colon - 1), &pw, err)))
		goto out;
	pre = (size_t)(auth - in);
	rest = strlen(at + 1);
	clean = malloc(pre + rest + 1);
	if (clean == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(clean, in, pre);
	memcpy(clean + pre, at + 1, rest + 1);
	if (pw && pw[0]) {
		*pass = tdxr_secret_new(pw, strlen(pw));
		if (*pass == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	*url = clean;
	clean = NULL;
	if (u && u[0]) {
		*user = u;
		u = NULL;
	}
out:
	free(u);
	if (pw) {
		OPENSSL_cleanse(pw, strlen(pw));
		free(pw);
	}
	free(clean);
	return rc;
}

int ci_glexec_job_from_env(struct ci_glexec_job *job, struct tdxr_err *err)
{
	char *raw = NULL, *jt = NULL;
	uint64_t id;
	int rc;

	memset(job, 0, sizeof(*job));
	if ((rc = env_copy("CI_JOB_ID", &job->job_id, err)) ||
	    (rc = env_copy("CI_PROJECT_DIR", &job->project_dir, err)) ||
	    (rc = env_copy("CI_COMMIT_SHA", &job->sha, err)) ||
	    (rc = env_copy("CI_COMMIT_REF_NAME", &job->ref_name, err)) ||
	    (rc = env_copy("CI_PIPELINE_ID", &job->pipeline_id, err)) ||
	    (rc = env_copy("CI_MERGE_REQUEST_REF_PATH", &job->mr_ref_path, err)) ||
	    (rc = env_copy("GIT_STRATEGY", &job->git_strategy, err)) ||
	    (rc = env_copy("GIT_DEPTH", &job->git_depth, err)) ||
	    (rc = env_copy("CI_JOB_TIMEOUT", &job->job_timeout, err)) ||
	    (rc = env_copy("CI_JOB_IMAGE", &job->image, err)) ||
	    (rc = env_copy("CI_JOB_SERVICES", &job->services, err)) ||
	    (rc = env_copy("CI_REPOSITORY_URL", &raw, err)) || (rc = env_copy("CI_JOB_TOKEN", &jt, err)))
		goto out;
	if (raw && (rc = ci_glexec_url_split(raw, &job->repo_url, &job->repo_user, &job->token, err))) {
		tdxr_err_prefix(err, "CUSTOM_ENV_CI_REPOSITORY_URL");
		goto out;
	}
	if (job->token == NULL && jt) {
		job->token = tdxr_secret_new(jt, strlen(jt));
		if (job->token == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		if (job->repo_user == NULL && (job->repo_user = strdup("gitlab-ci-token")) == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (job->services && (strcmp(job->services, "[]") == 0 || strcmp(job->services, "null") == 0)) {
		free(job->services);
		job->services = NULL;
	}
	if (job->job_id == NULL) {
		rc =
		    tdxr_err_set(err, TDXR_EINVAL,
		                 "CUSTOM_ENV_CI_JOB_ID is not set (run by gitlab-runner's custom executor?)");
		goto out;
	}
	if (strlen(job->job_id) > GLX_JOB_ID_MAX || tdxr_parse_u64(job->job_id, UINT64_MAX, &id, NULL)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "CUSTOM_ENV_CI_JOB_ID is not a job id");
		goto out;
	}
out:
	if (raw) {
		OPENSSL_cleanse(raw, strlen(raw));
		free(raw);
	}
	if (jt) {
		OPENSSL_cleanse(jt, strlen(jt));
		free(jt);
	}
	env_scrub();
	if (rc)
		ci_glexec_job_dispose(job);
	return rc;
}

void ci_glexec_job_dispose(struct ci_glexec_job *job)
{
	if (job == NULL)
		return;
	free(job->job_id);
	free(job->project_dir);
	free(job->sha);
	free(job->ref_name);
	free(job->pipeline_id);
	free(job->mr_ref_path);
	free(job->git_strategy);
	free(job->git_depth);
	free(job->job_timeout);
	free(job->image);
	free(job->services);
	free(job->repo_url);
	free(job->repo_user);
	tdxr_secret_free(job->token);
	memset(job, 0, sizeof(*job));
}

/* ------------------------------------------------------------------ paths, record, lock */

static int path_fmt(char *out, size_t cap, struct tdxr_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int path_fmt(char *out, size_t cap, struct tdxr_err *err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	return 0;
}

static int mkdirs(const char *path, struct tdxr_err *err)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n >= sizeof(buf))
		return tdxr_err_set(err, TDXR_EINVAL, "path too long: %s", path);
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++)
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];

			buf[i] = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST)
				return tdxr_err_set(err, TDXR_EIO, "cannot create %s: %s", buf,
				                    strerror(errno));
			buf[i] = c;
		}
	return 0;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(p);
	else
		unlink(p);
	return 0;
}

static void rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int glx_dir(const struct config *cfg, char *out, size_t cap, struct tdxr_err *err)
{
	if (cfg->state_dir == NULL || cfg->state_dir[0] != '/')
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "state_dir must be an absolute path for the gitlab executor (config)");
	return path_fmt(out, cap, err, "%s/gitlab-executor", cfg->state_dir);
}

static int job_path(const struct ci_glexec_opts *o, const char *suffix, char *out, size_t cap,
                    struct tdxr_err *err)
{
	char d[PATH_MAX];
	int rc;

	if ((rc = glx_dir(o->cfg, d, sizeof(d), err)))
		return rc;
	return path_fmt(out, cap, err, "%s/%s%s", d, o->job->job_id, suffix);
}

int ci_glexec_box_root(const struct config *cfg, const char *job_id, char **out, struct tdxr_err *err)
{
	char d[PATH_MAX], p[PATH_MAX];
	int rc;

	*out = NULL;
	if (cfg->executor.kind != CONFIG_EXECUTOR_LOCAL) {
		*out = strdup(CI_GLEXEC_REMOTE_ROOT);
	} else {
		/* A local box shares this host's file system: a per-job directory (removed by cleanup). */
		if ((rc = glx_dir(cfg, d, sizeof(d), err)) ||
		    (rc = path_fmt(p, sizeof(p), err, "%s/%s/box", d, job_id)))
			return rc;
		*out = strdup(p);
	}
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

static char *label_of(const struct ci_glexec_job *job, char *out, size_t cap)
{
	snprintf(out, cap, "gitlab-executor/%s", job->job_id);
	return out;
}

/* Exclusive per-job lock (prepare and cleanup); waits for a previous holder. */
static int job_lock(const struct ci_glexec_opts *o, int *fd_out, struct tdxr_err *err)
{
	char p[PATH_MAX];
	int fd, rc, i;

	*fd_out = -1;
	if ((rc = job_path(o, ".lock", p, sizeof(p), err)))
		return rc;
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot open %s: %s", p, strerror(errno));
	for (i = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; i++) {
		if ((errno != EWOULDBLOCK && errno != EINTR) || i >= GLX_LOCK_WAIT_S * 4) {
			close(fd);
			return tdxr_err_set(err, TDXR_ETIMEOUT, "job %s: another stage holds %s",
			                    o->job->job_id, p);
		}
		if (o->cancel && *o->cancel) {
			close(fd);
			return tdxr_err_set(err, TDXR_ECANCELED, "canceled");
		}
		usleep(250000);
	}
	*fd_out = fd;
	return 0;
}

/* The lease id of the job's record into lease (LEASE_ID_MAX); "" when there is none. */
static int record_read(const struct ci_glexec_opts *o, char *lease, struct tdxr_err *err)
{
	char p[PATH_MAX];
	uint8_t *text = NULL;
	size_t len = 0;
	json_error_t je;
	json_t *root = NULL, *id;
	const char *s;
	size_t i;
	int rc;

	lease[0] = '\0';
	if ((rc = job_path(o, ".lease", p, sizeof(p), err)))
		return rc;
	if (access(p, F_OK) != 0)
		return 0;
	if ((rc = tdxr_file_read(p, GLX_RECORD_MAX, &text, &len, err)))
		return tdxr_err_prefix(err, "job record");
	root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je);
	free(text);
	id = json_is_object(root) ? json_object_get(root, "lease_id") : NULL;
	s = json_is_string(id) ? json_string_value(id) : NULL;
	if (s == NULL || s[0] == '\0' || strlen(s) >= LEASE_ID_MAX) {
		json_decref(root);
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "job record %s is malformed (remove it; tdx-runner reap "
		                    "releases what it named)",
		                    p);
	}
	for (i = 0; s[i]; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
			json_decref(root);
			return tdxr_err_set(err, TDXR_EINVAL, "job record %s names a bad lease id", p);
		}
	memcpy(lease, s, strlen(s) + 1);
	json_decref(root);
	return 0;
}

static int record_write(const struct ci_glexec_opts *o, struct box *b, struct tdxr_err *err)
{
	char p[PATH_MAX], d[PATH_MAX], lbl[160];
	json_t *root;
	char *text;
	int rc;

	if ((rc = glx_dir(o->cfg, d, sizeof(d), err)) || (rc = mkdirs(d, err)) ||
	    (rc = job_path(o, ".lease", p, sizeof(p), err)))
		return rc;
	root =
	    json_pack("{s:s, s:s, s:s, s:I}", "lease_id", box_lease_id(b), "executor", box_executor_name(b),
	              "job", label_of(o->job, lbl, sizeof(lbl)), "created_at", (json_int_t)time(NULL));
	text = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (text == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = tdxr_file_write_atomic(p, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

static void record_remove(const struct ci_glexec_opts *o)
{
	char p[PATH_MAX];

	if (job_path(o, ".lease", p, sizeof(p), NULL) == 0)
		unlink(p);
}

/* The attestation bundle of the last gate, driver side (<job>/attestation.json). */
static void bundle_save(const struct ci_glexec_opts *o, struct box *b)
{
	char d[PATH_MAX], p[PATH_MAX + 32];
	struct tdxr_err e;

	if (box_bundle(b) == NULL)
		return;
	if (job_path(o, "", d, sizeof(d), &e) != 0 || mkdirs(d, &e) != 0 ||
	    path_fmt(p, sizeof(p), &e, "%s/attestation.json", d) != 0 ||
	    tdxr_file_write_atomic(p, box_bundle(b), strlen(box_bundle(b)), 0600, &e) != 0)
		TDXR_WARN(GLX_MOD, "cannot save the attestation bundle: %s", e.msg);
}

static int64_t keep_until(const struct ci_glexec_opts *o)
{
	int64_t t = GLX_KEEP_DEFAULT_S;

	if (o->job->job_timeout &&
	    tdxr_parse_i64(o->job->job_timeout, 1, CONFIG_TIMEOUT_MAX_S, &t, NULL) != 0)
		t = GLX_KEEP_DEFAULT_S;
	return (int64_t)time(NULL) + t + GLX_KEEP_MARGIN_S;
}

static void box_opts_fill(const struct ci_glexec_opts *o, struct box_opts *bo, char *lbl, size_t cap,
                          int progress)
{
	memset(bo, 0, sizeof(*bo));
	bo->cfg = o->cfg;
	bo->executor_kind = (int)o->cfg->executor.kind;
	bo->job = label_of(o->job, lbl, cap);
	bo->progress = progress;
	bo->cancel = o->cancel;
}

/* Releases every claim labelled with this job that no process holds, except `keep`. */
static int sweep_orphans(const struct ci_glexec_opts *o, const char *keep, int *released)
{
	struct lease_store *s = NULL;
	struct lease_claim *v = NULL;
	int *live = NULL, failed = 0;
	size_t n = 0, i;
	char lbl[160];
	struct tdxr_err e;

	label_of(o->job, lbl, sizeof(lbl));
	if (lease_store_open(o->cfg->state_dir, &s, &e) || lease_store_list(s, &v, &live, &n, &e)) {
		TDXR_WARN(GLX_MOD, "job %s: cannot list lease claims: %s", o->job->job_id, e.msg);
		lease_store_free(s);
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(v[i].job, lbl) != 0 || live[i] || (keep && strcmp(v[i].id, keep) == 0))
			continue;
		if (box_stop(o->cfg, v[i].id, &e) == 0) {
			fprintf(stderr, "tdx-runner: released orphan lease %s of job %s\n", v[i].id,
			        o->job->job_id);
			if (released)
				(*released)++;
		} else if (e.code != TDXR_ENOTFOUND) {
			TDXR_WARN(GLX_MOD, "job %s: orphan %s", o->job->job_id, e.msg);
			failed++;
		}
	}
	free(v);
	free(live);
	lease_store_free(s);
	return failed;
}

/* ------------------------------------------------------------------ shell text */

static int sh_quote(struct tdxr_buf *b, const char *w, struct tdxr_err *err)
{
	int rc = tdxr_buf_append(b, "'", 1, err);

	for (; rc == 0 && *w; w++)
		rc = *w == '\'' ? tdxr_buf_append(b, "'\\''", 4, err) : tdxr_buf_append(b, w, 1, err);
	return rc ? rc : tdxr_buf_append(b, "'", 1, err);
}

/* CI_PROJECT_DIR must be a plain absolute path below R/builds/ (gitlab-runner derives it
 * from our builds_dir; GIT_CLONE_PATH may change the part below). */
static int project_dir_check(const char *root, const char *pd, struct tdxr_err *err)
{
	size_t rl = strlen(root), i;
	const char *c;

	if (pd == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "CUSTOM_ENV_CI_PROJECT_DIR is not set");
	if (strncmp(pd, root, rl) != 0 || strncmp(pd + rl, "/builds/", 8) != 0 || pd[rl + 8] == '\0')
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "CI_PROJECT_DIR %s is not below the builds_dir %s/builds this driver "
		                    "announced",
		                    pd, root);
	for (i = 0; pd[i]; i++)
		if ((unsigned char)pd[i] < 0x20 || pd[i] == 0x7f)
			return tdxr_err_set(err, TDXR_EINVAL, "CI_PROJECT_DIR contains control characters");
	for (c = pd + rl + 7; c && *c; c = strchr(c + 1, '/')) {
		if (strncmp(c, "//", 2) == 0 || strncmp(c, "/./", 3) == 0 || strcmp(c, "/.") == 0 ||
		    strncmp(c, "/../", 4) == 0 || strcmp(c, "/..") == 0 || strcmp(c, "/") == 0)
			return tdxr_err_set(err, TDXR_EINVAL, "CI_PROJECT_DIR %s is not a plain path", pd);
	}
	return 0;
}

/* "mkdir -p R/cache PARENT && { [ -L P ] || [ -e P ] || ln -s WORK P; }" */
static int layout_cmd(struct tdxr_buf *c, const char *root, const char *pd, const char *work,
                      struct tdxr_err *err)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(pd, '/');
	size_t n = (size_t)(slash - pd);
	int rc;

	if (n >= sizeof(parent))
		return tdxr_err_set(err, TDXR_EINVAL, "CI_PROJECT_DIR too long");
	memcpy(parent, pd, n);
	parent[n] = '\0';
	rc = tdxr_buf_appendf(c, err, "umask 077 && mkdir -p ");
	if (!rc)
		rc = sh_quote(c, root, err);
	if (!rc)
		rc = tdxr_buf_appendf(c, err, "/cache ");
	if (!rc)
		rc = sh_quote(c, parent, err);
	if (!rc)
		rc = tdxr_buf_appendf(c, err, " && { [ -L ");
	if (!rc)
		rc = sh_quote(c, pd, err);
	if (!rc)
		rc = tdxr_buf_appendf(c, err, " ] || [ -e ");
	if (!rc)
		rc = sh_quote(c, pd, err);
	if (!rc)
		rc = tdxr_buf_appendf(c, err, " ] || ln -s ");
	if (!rc)
		rc = sh_quote(c, work, err);
	if (!rc)
		rc = tdxr_buf_append(c, " ", 1, err);
	if (!rc)
		rc = sh_quote(c, pd, err);
	if (!rc)
		rc = tdxr_buf_appendf(c, err, "; }");
	return rc;
}

/* ------------------------------------------------------------------ output */

/* A line for the job log (gitlab-runner captures our stdout), flushed at once so it lands
 * in order with what the box prints. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fflush(stdout);
}

struct glx_out {
	struct tdxr_mask *mask[2]; /* stdout, stderr; NULL = unmasked */
	int broken;
};

static int fd_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int out_stdout(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	return fd_write_all(STDOUT_FILENO, p, n);
}

static int out_stderr(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	return fd_write_all(STDERR_FILENO, p, n);
}

/* The job log is gitlab-runner's capture of our stdout/stderr: pass chunks on as they
 * arrive, with the job token masked (gitlab-runner masks too; this is the belt). */
static int forward(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct glx_out *g = ctx;
	int i = which == REMOTE_OUT_STDERR ? 1 : 0;
	struct tdxr_err e;

	if (g->mask[i])
		return tdxr_mask_write(g->mask[i], p, n, &e) != 0 ? (g->broken = 1) : 0;
	return (i ? out_stderr : out_stdout)(NULL, p, n) != 0 ? (g->broken = 1) : 0;
}

static void out_init(struct glx_out *g, const struct ci_glexec_job *job)
{
	struct tdxr_err e;
	int i;

	memset(g, 0, sizeof(*g));
	for (i = 0; i < 2; i++) {
		if (tdxr_mask_new(i ? out_stderr : out_stdout, NULL, &g->mask[i], &e) != 0)
			continue;
		if (job->token && tdxr_secret_len(job->token) >= TDXR_MASK_MIN_LEN &&
		    tdxr_secret_len(job->token) <= TDXR_MASK_MAX_LEN &&
		    tdxr_mask_add(g->mask[i], tdxr_secret_str(job->token), tdxr_secret_len(job->token), &e) !=
		        0) {
			tdxr_mask_free(g->mask[i]);
			g->mask[i] = NULL;
		}
	}
}

static void out_done(struct glx_out *g)
{
	struct tdxr_err e;
	int i;

	for (i = 0; i < 2; i++) {
		if (g->mask[i])
			(void)tdxr_mask_flush(g->mask[i], &e);
		tdxr_mask_free(g->mask[i]);
		g->mask[i] = NULL;
	}
}

/* ------------------------------------------------------------------ config */

int ci_glexec_config(const struct ci_glexec_opts *o, char **out, struct tdxr_err *err)
{
	char *root = NULL, host[128] = "", name[160];
	char builds[PATH_MAX], cache[PATH_MAX];
	json_t *j = NULL;
	int rc;

	*out = NULL;
	if ((rc = ci_glexec_box_root(o->cfg, o->job->job_id, &root, err)) ||
	    (rc = path_fmt(builds, sizeof(builds), err, "%s/builds", root)) ||
	    (rc = path_fmt(cache, sizeof(cache), err, "%s/cache", root)))
		goto out;
	gethostname(host, sizeof(host) - 1);
	snprintf(name, sizeof(name), "tdx-runner-%s", config_executor_kind_name(o->cfg->executor.kind));
	j = json_pack("{s:s, s:s, s:b, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:s}", "builds_dir", builds,
	              "cache_dir", cache, "builds_dir_is_shared", 0, "hostname", name, "driver", "name",
	              "tdx-runner", "version", TDXR_VERSION, "job_env", "TDX_RUNNER", "1",
	              "TDX_RUNNER_EXECUTOR", config_executor_kind_name(o->cfg->executor.kind),
	              "TDX_RUNNER_DRIVER_HOST", host, "shell", "bash");
	if (j == NULL || (*out = json_dumps(j, JSON_COMPACT)) == NULL)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	json_decref(j);
	free(root);
	return rc;
}

/* ------------------------------------------------------------------ prepare */

static void prepare_notices(const struct ci_glexec_opts *o)
{
	if (o->job->image)
		say("tdx-runner: image: %s is ignored: the job runs in the box's own image\n", o->job->image);
	if (o->job->services)
		say("tdx-runner: services: are not started: this executor runs no service containers\n");
}

int ci_glexec_prepare(const struct ci_glexec_opts *o, struct tdxr_err *err)
{
	struct box_opts bo;
	struct box *b = NULL;
	struct tdxr_err e;
	char lease[LEASE_ID_MAX], lbl[160], d[PATH_MAX];
	int rc, lockfd = -1;

	box_opts_fill(o, &bo, lbl, sizeof(lbl), 1);
	if ((rc = glx_dir(o->cfg, d, sizeof(d), err)) || (rc = mkdirs(d, err)) ||
	    (rc = job_lock(o, &lockfd, err)))
		goto out;
	if (record_read(o, lease, &e) != 0) {
		/* The orphan sweep below still finds a lease it named, by the job label. */
		TDXR_WARN(GLX_MOD, "job %s: %s; ignoring it", o->job->job_id, e.msg);
		record_remove(o);
		lease[0] = '\0';
	}
	/* A retried prepare (gitlab-runner does not call cleanup in between): reuse the lease
	 * when it still attests, else release it. */
	if (lease[0]) {
		rc = box_adopt(&bo, lease, &b, &e);
		if (rc == 0) {
			bundle_save(o, b);
			if ((rc = box_keep(b, keep_until(o), err)))
				goto out;
			say("tdx-runner: reusing lease %s (%s) from an earlier prepare; it attested again\n",
			    lease, box_executor_name(b));
			sweep_orphans(o, lease, NULL);
			prepare_notices(o);
			goto out;
		}
		if (b) {
			struct tdxr_err rel;

			say("tdx-runner: lease %s from an earlier prepare cannot be reused (%s): "
			    "releasing it\n",
			    lease, e.msg);
			if (box_release(b, &rel))
				TDXR_WARN(GLX_MOD, "job %s: %s", o->job->job_id, rel.msg);
			box_free(b);
			b = NULL;
		} else if (e.code == TDXR_ETIMEOUT) {
			rc = tdxr_err_set(err, TDXR_ETIMEOUT,
			                  "prepare: lease %s of job %s is in use by another process", lease,
			                  o->job->job_id);
			goto out;
		}
		record_remove(o);
		rc = 0;
	}
	sweep_orphans(o, NULL, NULL);
	rc = box_acquire(&bo, &b, err);
	if (b) {
		struct tdxr_err we;

		/* Recorded before anything else can fail: cleanup finds it whatever happens next. */
		if (record_write(o, b, &we))
			TDXR_WARN(GLX_MOD, "job %s: cannot write the job record: %s", o->job->job_id, we.msg);
		bundle_save(o, b);
	}
	if (rc) {
		tdxr_err_prefix(err, "prepare");
		if (b) {
			struct tdxr_err rel;

			if (box_release(b, &rel) == 0)
				record_remove(o);
			else
				fprintf(stderr, "tdx-runner: %s\n", rel.msg);
		}
		goto out;
	}
	if ((rc = box_keep(b, keep_until(o), err))) {
		tdxr_err_prefix(err, "prepare: keep");
		goto out;
	}
	say("tdx-runner: lease %s (%s executor) attested and kept for job %s\n", box_lease_id(b),
	    box_executor_name(b), o->job->job_id);
	prepare_notices(o);
out:
	fflush(stdout);
	box_free(b);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}

/* ------------------------------------------------------------------ run */

/* Runs a short setup command (stdin from buf) in the box; non-zero exit is an error of ours. */
static int box_setup(struct box *b, const char *cmd, const uint8_t *in, size_t in_len, const char *what,
                     const struct ci_glexec_opts *o, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result r;
	int rc;

	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_buf = in;
	eo.stdin_len = in_len;
	eo.stdin_fd = -1;
	eo.output = NULL;
	eo.timeout_ms = 120000;
	eo.cancel = o->exec_cancel;
	if ((rc = box_exec(b, &eo, &r, err)))
		return tdxr_err_prefix(err, "%s", what);
	if (!r.exited || r.exit_status != 0)
		return tdxr_err_set(err, TDXR_EIO, "%s: the setup command in the box failed (status %d%s%s)",
		                    what, r.exited ? r.exit_status : -1, r.exit_signal[0] ? ", SIG" : "",
		                    r.exit_signal);
	return 0;
}

static int checkout(const struct ci_glexec_opts *o, const char *src, struct tdxr_err *err)
{
	const struct ci_glexec_job *job = o->job;
	struct remote_sync_checkout_opts co;
	char cache[PATH_MAX], d[PATH_MAX], refs[2][300];
	const char *tries[3];
	size_t n = 0, i;
	int rc;

	if (job->repo_url == NULL || job->sha == NULL)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "get_sources: CUSTOM_ENV_CI_REPOSITORY_URL or CI_COMMIT_SHA is not set");
	if ((rc = glx_dir(o->cfg, d, sizeof(d), err)) ||
	    (rc = path_fmt(cache, sizeof(cache), err, "%s/git-cache", d)) || (rc = mkdirs(cache, err)))
		return rc;
	tries[n++] = NULL; /* the commit itself, then all branches and tags */
	if (job->pipeline_id && strspn(job->pipeline_id, "0123456789") == strlen(job->pipeline_id) &&
	    strlen(job->pipeline_id) < 24) {
		snprintf(refs[0], sizeof(refs[0]), "+refs/pipelines/%s:refs/pipelines/%s", job->pipeline_id,
		         job->pipeline_id);
		tries[n++] = refs[0];
	}
	if (job->mr_ref_path && strncmp(job->mr_ref_path, "refs/merge-requests/", 20) == 0 &&
	    strlen(job->mr_ref_path) < 128 && strpbrk(job->mr_ref_path, " :*?[\\^~") == NULL) {
		snprintf(refs[1], sizeof(refs[1]), "+%s:%s", job->mr_ref_path, job->mr_ref_path);
		tries[n++] = refs[1];
	}
	memset(&co, 0, sizeof(co));
	co.cache_dir = cache;
	co.url = job->repo_url;
	co.sha = job->sha;
	co.username = job->repo_user;
	co.token = job->token;
	co.workdir = src;
	for (i = 0; i < n; i++) {
		co.fetch_ref = tries[i];
		rc = remote_sync_checkout(&co, err);
		if (rc != TDXR_ENOTFOUND)
			break;
	}
	return rc ? tdxr_err_prefix(err, "get_sources: fetch") : 0;
}

static int stage_sources(const struct ci_glexec_opts *o, struct box *b, const char *root,
                         struct tdxr_err *err)
{
	const struct ci_glexec_job *job = o->job;
	struct remote_sync_manifest *m = NULL;
	struct tdxr_buf c;
	char src[PATH_MAX];
	int rc, fetch = 1;

	tdxr_buf_init(&c, 64 * 1024);
	if (job->git_strategy &&
	    (strcmp(job->git_strategy, "none") == 0 || strcmp(job->git_strategy, "empty") == 0))
		fetch = 0;
	if (fetch) {
		if ((rc = job_path(o, "/src", src, sizeof(src), err)) || (rc = mkdirs(src, err)) ||
		    (rc = checkout(o, src, err)))
			goto out;
		if ((rc = remote_sync_manifest_commit(src, job->sha, &m, err))) {
			tdxr_err_prefix(err, "get_sources: manifest");
			goto out;
		}
	}
	if (o->cancel && *o->cancel) {
		rc = tdxr_err_set(err, TDXR_ECANCELED, "get_sources: canceled");
		goto out;
	}
	if ((rc = layout_cmd(&c, root, job->project_dir, box_work_dir(b), err)) ||
	    (rc = box_setup(b, (const char *)c.data, NULL, 0, "get_sources: project directory", o, err)))
		goto out;
	if (fetch && (rc = box_sync_manifest(b, src, m, err)))
		goto out;
	/* The bundle of the gate this stage just ran, next to the source it admitted. */
	if (box_bundle(b)) {
		bundle_save(o, b);
		tdxr_buf_reset(&c);
		if ((rc = tdxr_buf_appendf(&c, err, "umask 022 && cat >")) ||
		    (rc = sh_quote(&c, job->project_dir, err)) ||
		    (rc = tdxr_buf_appendf(&c, err, "/%s", CI_GLEXEC_BUNDLE_NAME)) ||
		    (rc = box_setup(b, (const char *)c.data, (const uint8_t *)box_bundle(b),
		                    strlen(box_bundle(b)), "get_sources: attestation bundle", o, err)))
			goto out;
	}
	if (fetch)
		say("tdx-runner: fetched %.12s (%s) from %s on the runner host and synced %zu files into "
		    "%s (lease %s, %s); no git and no repository credentials were needed in the box\n",
		    job->sha, job->ref_name ? job->ref_name : "?", job->repo_url,
		    remote_sync_manifest_count(m), job->project_dir, box_lease_id(b), box_executor_name(b));
	else
		say("tdx-runner: GIT_STRATEGY=%s: no source synced into %s\n", job->git_strategy,
		    job->project_dir);
	if (fetch && job->git_depth && strcmp(job->git_depth, "0") != 0)
		say("tdx-runner: GIT_DEPTH=%s ignored: the fetch on the runner host is a full one\n",
		    job->git_depth);
	say("tdx-runner: attestation bundle: %s/%s (list it in artifacts:paths to keep it)\n",
	    job->project_dir, CI_GLEXEC_BUNDLE_NAME);
	fflush(stdout);
out:
	remote_sync_manifest_free(m);
	tdxr_buf_dispose(&c);
	return rc;
}

static int signal_status(const char *sig)
{
	static const struct {
		const char *name;
		int n;
	} t[] = { { "HUP", 1 },  { "INT", 2 },   { "QUIT", 3 },  { "ILL", 4 },   { "ABRT", 6 }, { "FPE", 8 },
		  { "KILL", 9 }, { "SEGV", 11 }, { "PIPE", 13 }, { "ALRM", 14 }, { "TERM", 15 } };
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(sig, t[i].name) == 0)
			return 128 + t[i].n;
	return 1;
}

/* The script goes to bash on the channel's stdin, as gitlab-runner's own custom-executor
 * examples do (`docker exec -i ... bash < SCRIPT`): it never lands in a file in the box.
 * gitlab-runner's scripts run the job's commands under `: | eval $'...'`, so they
 * cannot read the rest of the script as their input. */
static int stage_script(const struct ci_glexec_opts *o, struct box *b, const char *root, const char *stage,
                        const uint8_t *script, size_t script_len, int *status, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result r;
	struct glx_out g;
	struct tdxr_buf c;
	int rc;

	tdxr_buf_init(&c, 64 * 1024);
	if ((rc = layout_cmd(&c, root, o->job->project_dir, box_work_dir(b), err)) ||
	    (rc = box_setup(b, (const char *)c.data, NULL, 0, "run: project directory", o, err)))
		goto out;
	tdxr_buf_reset(&c);
	if ((rc = tdxr_buf_appendf(&c, err, "cd ")) || (rc = sh_quote(&c, o->job->project_dir, err)) ||
	    (rc = tdxr_buf_appendf(&c, err, " 2>/dev/null || cd ")) || (rc = sh_quote(&c, root, err)) ||
	    (rc = tdxr_buf_appendf(&c, err, "; exec bash")))
		goto out;
	out_init(&g, o->job);
	memset(&eo, 0, sizeof(eo));
	eo.command = (const char *)c.data;
	eo.stdin_buf = script;
	eo.stdin_len = script_len;
	eo.stdin_fd = -1;
	eo.output = forward;
	eo.output_ctx = &g;
	eo.cancel = o->exec_cancel;
	box_state(b, BOX_STATE_RUNNING);
	rc = box_exec(b, &eo, &r, err);
	out_done(&g);
	if (rc) {
		if (rc == TDXR_ECANCELED)
			tdxr_err_set(
			    err, TDXR_ECANCELED,
			    "run %s: canceled (SIGTERM): the remote command's process group was stopped",
			    stage);
		else
			tdxr_err_prefix(err, "run %s", stage);
		goto out;
	}
	if (r.exited) {
		*status = r.exit_status;
	} else {
		*status = signal_status(r.exit_signal);
		fprintf(stderr, "tdx-runner: the %s script was killed by SIG%s\n", stage,
		        r.exit_signal[0] ? r.exit_signal : "?");
	}
out:
	tdxr_buf_dispose(&c);
	return rc;
}

int ci_glexec_run(const struct ci_glexec_opts *o, const char *script_path, const char *stage, int *status,
                  struct tdxr_err *err)
{
	struct box_opts bo;
	struct box *b = NULL;
	uint8_t *script = NULL;
	size_t script_len = 0;
	char lease[LEASE_ID_MAX], lbl[160], *root = NULL;
	int rc, sources = strcmp(stage, "get_sources") == 0;

	*status = 0;
	box_opts_fill(o, &bo, lbl, sizeof(lbl), 0);
	if (!sources && (rc = tdxr_file_read(script_path, GLX_SCRIPT_MAX, &script, &script_len, err))) {
		tdxr_err_prefix(err, "run %s: script", stage);
		goto out;
	}
	if ((rc = ci_glexec_box_root(o->cfg, o->job->job_id, &root, err)) ||
	    (rc = project_dir_check(root, o->job->project_dir, err)))
		goto out;
	if ((rc = record_read(o, lease, err)))
		goto out;
	if (!lease[0]) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND,
		                  "run %s: job %s has no lease (prepare did not succeed, or cleanup ran)",
		                  stage, o->job->job_id);
		goto out;
	}
	/* Every stage runs the gate again over a fresh nonce before it sends anything. */
	rc = box_adopt(&bo, lease, &b, err);
	if (rc) {
		if (b && rc == TDXR_EATTEST) {
			struct tdxr_err rel;

			fprintf(stderr, "tdx-runner: lease %s failed the gate: releasing the box\n", lease);
			if (box_release(b, &rel))
				fprintf(stderr, "tdx-runner: %s\n", rel.msg);
			else
				record_remove(o);
			box_free(b);
			b = NULL;
		}
		tdxr_err_prefix(err, "run %s", stage);
		goto out;
	}
	if (sources)
		rc = stage_sources(o, b, root, err);
	else
		rc = stage_script(o, b, root, stage, script, script_len, status, err);
out:
	if (b) {
		struct tdxr_err ke;

		if (box_keep(b, keep_until(o), &ke))
			TDXR_WARN(GLX_MOD, "job %s: lease %s: %s", o->job->job_id, box_lease_id(b), ke.msg);
		box_free(b);
	}
	fflush(stdout);
	if (script) {
		OPENSSL_cleanse(script, script_len);
		free(script);
	}
	free(root);
	return rc;
}

/* ------------------------------------------------------------------ cleanup */

int ci_glexec_cleanup(const struct ci_glexec_opts *o, int *released, int *left, struct tdxr_err *err)
{
	char lease[LEASE_ID_MAX], p[PATH_MAX];
	struct tdxr_err e;
	int rc = 0, lockfd = -1, i;

	*released = 0;
	*left = 0;
	if ((rc = job_lock(o, &lockfd, err)))
		return rc;
	if (record_read(o, lease, &e) != 0) {
		TDXR_WARN(GLX_MOD, "job %s: %s", o->job->job_id, e.msg);
		lease[0] = '\0';
	}
	if (lease[0]) {
		for (i = 0;; i++) {
			rc = box_stop(o->cfg, lease, &e);
			/* A stage gitlab-runner just killed may still be letting go of the claim. */
			if (rc != TDXR_ETIMEOUT || i >= GLX_STOP_RETRY_S * 2)
				break;
			usleep(500000);
		}
		if (rc == 0) {
			(*released)++;
			fprintf(stderr, "tdx-runner: released lease %s of job %s\n", lease, o->job->job_id);
		} else if (rc != TDXR_ENOTFOUND) {
			TDXR_ERR(GLX_MOD, "job %s: release failed: %s; the claim stays for `tdx-runner reap`",
			         o->job->job_id, e.msg);
			(*left)++;
		}
		rc = 0;
	}
	*left += sweep_orphans(o, NULL, released);
	record_remove(o);
	if (job_path(o, "", p, sizeof(p), NULL) == 0)
		rm_tree(p);
	if (job_path(o, ".lock", p, sizeof(p), NULL) == 0)
		unlink(p);
	close(lockfd);
	return 0;
}
