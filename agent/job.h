/*
 * job.h - the job pipeline (DESIGN.md §3.4): lease -> ready -> attested ->
 * synced -> running -> collecting -> publishing -> released. Every exit path
 * - error, cancel (SIGINT/SIGTERM), gate failure - goes through release; the
 * lease claim is on disk before the executor is called, so a crash leaves
 * something `tdx-runner reap` can find. No source byte and no secret goes to a
 * box before its attestation passed.
 */
#ifndef TDXR_AGENT_JOB_H
#define TDXR_AGENT_JOB_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include "common/err.h"

struct config;

/* Exit codes of `tdx-runner run` besides the remote command's own. */
#define JOB_EXIT_USAGE 2
#define JOB_EXIT_ATTEST 124 /* the box did not attest: nothing was sent to it */
#define JOB_EXIT_INFRA 125  /* lease, transport, sync, artifacts or release failed */

struct job_run_opts {
	const struct config *cfg;
	int executor_kind;       /* enum config_executor_kind */
	const char *repo_dir;    /* the git working tree to sync */
	const char *const *argv; /* the command (joined with shell quoting) */
	size_t argc;
	const char *const *artifacts; /* paths to copy back (relative to the work dir) */
	size_t n_artifacts;
	const char *artifacts_dir;     /* where copies land (default ".") */
	const char *bundle_path;       /* attestation bundle (default tdx-attestation.json) */
	int keep;                      /* keep the box after the run (claim state "kept") */
	long keep_ttl_s;               /* ... for this long (0 = until `tdx-runner stop`) */
	const char *lease_id;          /* run on this kept box (re-gated) instead of a new one; kept after */
	int progress;                  /* print phase lines with durations to stderr */
	volatile sig_atomic_t *cancel; /* set by SIGINT/SIGTERM: stop between steps, stop rsync */
	atomic_int *exec_cancel;       /* the same, for the remote command (kills its process group) */
	/* Provenance (agent/provenance.h): after the command, hash these paths (relative to the
	 * work dir) in the box and extend the bundle with an end quote binding the statement. */
	const char *const *subjects;
	size_t n_subjects;
	const char *repository; /* for the statement: origin URL without credentials, or NULL */
	const char *commit;     /* HEAD commit id, or NULL */
};

/* Runs one job; returns the exit code `tdx-runner run` exits with (the remote
 * command's status, 128+signal, or a JOB_EXIT_* code with the step in err). */
int job_run(const struct job_run_opts *o, struct tdxr_err *err);

#endif
