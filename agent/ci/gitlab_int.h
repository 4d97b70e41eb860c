/*
 * gitlab_int.h - agent/ci/gitlab.c's pure pieces, exposed for unit tests and
 * the fuzz target (tests/fuzz/fuzz_gitlab_job.c); not an API for other modules.
 */
#ifndef TDXR_AGENT_CI_GITLAB_INT_H
#define TDXR_AGENT_CI_GITLAB_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct ci_job;

/* The job payload of a 201 from jobs/request (untrusted, bounded by the caller). */
int gitlab_job_parse(const uint8_t *body, size_t len, struct ci_job **out, struct tdxr_err *err);
void gitlab_job_free(struct ci_job *j);
/* A few facts of a parsed job, for tests. */
int64_t gitlab_job_id(const struct ci_job *j);
size_t gitlab_job_n_steps(const struct ci_job *j);
size_t gitlab_job_n_vars(const struct ci_job *j);
const char *gitlab_job_repo_url(const struct ci_job *j); /* credentials stripped */

/* Artifact path patterns: a plain path takes the file or the whole directory; globs
 * (*, ?, [..]) match per path component, ** across components; a matched directory
 * takes its contents. */
int gitlab_pat_match(const char *pat, const char *path);
/* The directory part of a pattern before its first glob ("out/x*.txt" -> "out"). */
void gitlab_glob_prefix(const char *pat, char *out, size_t cap);
/* "https://user:secret@host/x" -> "https://host/x"; -1 when it does not fit. */
int gitlab_strip_userinfo(const char *url, char *out, size_t cap);
/* IEEE CRC-32 as in zlib (crc32(0, ...) of the whole trace = the final checksum). */
uint32_t gitlab_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
