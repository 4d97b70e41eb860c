/*
 * gitlab_executor.h - the driver for gitlab-runner's custom executor
 * (`tdx-runner gitlab-executor config|prepare|run|cleanup`, CONTRACTS.md §4).
 * gitlab-runner runs one process per stage; the stages of one job find each
 * other through a small record keyed by the job id (CUSTOM_ENV_CI_JOB_ID) under
 * <state_dir>/gitlab-executor/: prepare leases and gates a box and keeps it,
 * every run stage adopts it (re-running the gate over a fresh nonce), cleanup
 * releases it. The box itself is driven only through agent/box.h.
 *
 * Trust boundary: gitlab-runner's environment (CUSTOM_ENV_*) and the stage
 * scripts are the job's input; the job token (inside CUSTOM_ENV_CI_REPOSITORY_URL)
 * is taken out of the environment at start-up (ci_glexec_job_from_env wipes every
 * CUSTOM_ENV_* value from this process), handed to libgit2 out of band, and never
 * put in argv, logs or files. Nothing reaches a box before it passed the gate.
 *
 * Ownership: ci_glexec_job_from_env fills a caller-owned struct released with
 * ci_glexec_job_dispose; strings inside are owned by it.
 */
#ifndef TDXR_AGENT_CI_GITLAB_EXECUTOR_H
#define TDXR_AGENT_CI_GITLAB_EXECUTOR_H

#include <signal.h>
#include <stdatomic.h>

#include "common/err.h"
#include "common/secret.h"

struct config;

/* Where the job's files live inside a remote (phala, dstack) box; the local
 * executor's boxes share this host's file system, so theirs is per job under the
 * state directory (see ci_glexec_box_root). */
#define CI_GLEXEC_REMOTE_ROOT "/var/volatile/tdx-runner-job"
#define CI_GLEXEC_BUNDLE_NAME "tdx-attestation.json"

/* What a stage needs from gitlab-runner's environment (copied out of it). */
struct ci_glexec_job {
	char *job_id;              /* CI_JOB_ID: decimal digits */
	char *project_dir;         /* CI_PROJECT_DIR (NULL when unset) */
	char *sha;                 /* CI_COMMIT_SHA */
	char *ref_name;            /* CI_COMMIT_REF_NAME */
	char *pipeline_id;         /* CI_PIPELINE_ID */
	char *mr_ref_path;         /* CI_MERGE_REQUEST_REF_PATH */
	char *git_strategy;        /* GIT_STRATEGY: fetch, clone, none, empty (NULL = fetch) */
	char *git_depth;           /* GIT_DEPTH (reported; libgit2 1.5 cannot fetch shallow) */
	char *job_timeout;         /* CI_JOB_TIMEOUT, seconds */
	char *image;               /* CI_JOB_IMAGE (ignored: reported) */
	char *services;            /* CI_JOB_SERVICES JSON (ignored: reported); NULL when none */
	char *repo_url;            /* CI_REPOSITORY_URL without its credentials */
	char *repo_user;           /* the user name from it ("gitlab-ci-token") */
	struct tdxr_secret *token; /* the password from it, else CI_JOB_TOKEN; NULL = none */
};

/*
 * Copies the CUSTOM_ENV_* values the driver needs into *job, then wipes every
 * CUSTOM_ENV_* value in place and removes it from the environment, so no child
 * process (ssh-keygen, the local box's daemons, rsync) can inherit the job's
 * secrets. Fails with EINVAL when CI_JOB_ID is missing or not a number.
 */
int ci_glexec_job_from_env(struct ci_glexec_job *job, struct tdxr_err *err);
void ci_glexec_job_dispose(struct ci_glexec_job *job);

/* Splits "scheme://user:password@host/path" (percent-encoded user info) into the
 * URL without credentials (*url), the user (*user, NULL when none) and the
 * password (*pass, NULL when none). Exposed for tests. */
int ci_glexec_url_split(const char *in, char **url, char **user, struct tdxr_secret **pass,
                        struct tdxr_err *err);

/* The job's root directory inside the box (builds/ and cache/ below it);
 * *out malloc'd. */
int ci_glexec_box_root(const struct config *cfg, const char *job_id, char **out, struct tdxr_err *err);

struct ci_glexec_opts {
	const struct config *cfg;
	const struct ci_glexec_job *job;
	volatile sig_atomic_t *cancel; /* set by SIGTERM/SIGINT: stop between steps */
	atomic_int *exec_cancel;       /* the same, for the remote command */
};

/* `config`: the driver JSON for gitlab-runner into *out (malloc'd, one line). */
int ci_glexec_config(const struct ci_glexec_opts *o, char **out, struct tdxr_err *err);

/* `prepare`: one attested, kept lease for the job (reused when an earlier attempt's
 * lease still attests). Errors are ours (system failures). */
int ci_glexec_prepare(const struct ci_glexec_opts *o, struct tdxr_err *err);

/*
 * `run SCRIPT STAGE`: adopts the job's lease (the gate runs again), then stage
 * get_sources syncs the commit (fetched here) and the attestation bundle into
 * CI_PROJECT_DIR; any other stage runs SCRIPT with bash in the box, streaming
 * its output. Returns 0 when the stage ran (*status = the script's exit code,
 * 0 for get_sources), or an error of ours (lease, gate, fetch, sync, transport,
 * ECANCELED); the box is kept for the next stage either way unless it failed the gate.
 */
int ci_glexec_run(const struct ci_glexec_opts *o, const char *script_path, const char *stage, int *status,
                  struct tdxr_err *err);

/* `cleanup`: releases the job's lease (and any orphan claim labelled with the job),
 * removes the job's files. A release that fails is logged and left to `tdx-runner
 * reap` (its claim stays), counted in *left; *released counts what was released.
 * Fails only when nothing could be done (the job lock). */
int ci_glexec_cleanup(const struct ci_glexec_opts *o, int *released, int *left, struct tdxr_err *err);

#endif
