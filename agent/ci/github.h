/*
 * github.h - the GitHub Actions front end's entry points besides ci_ops
 * (agent/ci/github.c): webhook demand, label matching and App JWTs (exposed
 * for the webhook receiver and for tests).
 */
#ifndef TDXR_AGENT_CI_GITHUB_H
#define TDXR_AGENT_CI_GITHUB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/secret.h"

struct config_strlist;

/* Queues a queued workflow_job (from polling or a webhook) once per job id; 1 = queued,
 * 0 = already known, -1 = the queue is full. Thread-safe. src is a github source. */
int gh_demand_push(void *src, int64_t job_id, int64_t run_id, const char *head_sha, const char *name);
/* The same for a job of repository repo ("owner/name"; NULL = the entry's repository): an
 * organisation-scope entry learns the repository from the webhook. 0 for a repository this
 * entry does not serve. */
int gh_demand_push_repo(void *src, const char *repo, int64_t job_id, int64_t run_id, const char *head_sha,
                        const char *name);
/* A job is ours when every label is one we serve and at least one is not a default label
 * (self-hosted, linux, x64). */
int gh_labels_match(const struct config_strlist *ours, const char *const *labels, size_t n);
/* An App JWT (RS256) for app_id, signed with the PEM private key, valid 9 minutes from now-60. */
int gh_app_jwt(uint64_t app_id, const struct tdxr_secret *pem, int64_t now, char *out, size_t cap,
               struct tdxr_err *err);

/* `tdx-runner publish --github-release OWNER/REPO@TAG BUNDLE`: uploads file as release asset
 * asset_name with the credentials of the github[] entry serving the repository. */
struct config;
int gh_publish_release(const struct config *cfg, const char *owner_repo, const char *tag, const char *file,
                       const char *asset_name, struct tdxr_err *err);

#endif
