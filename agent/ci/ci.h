/*
 * ci.h - the CI systems the agent daemon serves (DESIGN.md §3.5), behind one
 * interface so `tdx-runner agent` polls GitLab and GitHub alike: a source is
 * polled for a job; a job is run to its final state on the server on a worker
 * thread (it leases, attests, syncs, runs and releases through agent/box.h);
 * both are bounded in time. A source's state is touched by one thread at a
 * time: the daemon polls a source only from its main loop, and a job carries
 * everything its worker needs (it may outlive the next poll).
 *
 * Errors: poll returns TDXR_EAUTH when the server refused the runner token
 * (the daemon stops polling that source and says so), anything else is
 * transient (the daemon backs off). run returns 0 once the job reached a final
 * state on the server, whatever that state is.
 */
#ifndef TDXR_AGENT_CI_CI_H
#define TDXR_AGENT_CI_CI_H

#include <stdatomic.h>
#include <stddef.h>

#include "common/err.h"

struct config;
struct ci_job;

struct ci_env {
	const struct config *cfg;
	int executor_kind;       /* enum config_executor_kind */
	const atomic_int *stop;  /* set when the agent must stop now: cancel the job, release */
	const char *runner_name; /* for logs and the job page ("tdx-runner on <host>") */
};

struct ci_ops {
	const char *name;
	/* One request for a job. 0 with *job NULL: none; *next_ms is when to ask again. */
	int (*poll)(void *src, struct ci_job **job, long *next_ms, struct tdxr_err *err);
	/* Runs the job to a final state on the server (blocking). */
	int (*run)(void *src, struct ci_job *job, const struct ci_env *env, struct tdxr_err *err);
	/* A one-line description of the job for the agent's log ("gitlab job 42 (project/x)"). */
	const char *(*describe)(const struct ci_job *job);
	/* At start-up, after the reap: finish on the server the jobs a dead agent process was
	 * running (their boxes are already released): report them failed. May be NULL. */
	int (*recover)(void *src, struct tdxr_err *err);
	void (*job_free)(struct ci_job *job);
	void (*free)(void *src);
};

/* GitLab's runner API, config entry cfg->gitlab[index] (agent/ci/gitlab.c). */
extern const struct ci_ops ci_gitlab;
int ci_gitlab_new(const struct config *cfg, size_t index, void **src, struct tdxr_err *err);
/* GitHub Actions, config entry cfg->github[index] (agent/ci/github.c). */
extern const struct ci_ops ci_github;
int ci_github_new(const struct config *cfg, size_t index, void **src, struct tdxr_err *err);

#endif
