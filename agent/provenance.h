/*
 * provenance.h - the end of a job's attestation (docs/attestation.md,
 * "Provenance: the end quote"): after the job ran, hash its declared outputs
 * inside the box, write the in-toto statement naming them, have the box's
 * guest agent quote over it (through the same host-key-pinned session the gate
 * used) and return the start bundle extended with that end part, verified the
 * way `tdx-runner verify` will.
 *
 * Trust boundary: the box's answers (digests, quote, event log) are untrusted;
 * attest/ judges the quote. The job's own code runs as root in the box and can
 * change its outputs or the hashing tool: what this proves is in the docs.
 */
#ifndef TDXR_AGENT_PROVENANCE_H
#define TDXR_AGENT_PROVENANCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct box;

/* What the statement's predicate says about the job. Every string may be NULL
 * (written as null), borrowed for the call. */
struct prov_info {
	const char *repository; /* "owner/repo" or a clone URL without credentials */
	const char *commit;     /* hex commit id */
	const char *ci_system;  /* "github", "gitlab", "cli" (NULL = "cli") */
	const char *job_id;
	const char *run_id;
	const char *workflow;
	const char *runner_name;
	int64_t started_at; /* UNIX seconds; 0 = when the start quote was verified */
	int has_exit_code;  /* the job command's exit status, when there is one */
	int exit_code;
	int hash_timeout_ms; /* hashing the subjects in the box; 0 = 600 s */
};

/* Checks a subject list before any box is leased: 1..ATTEST_STATEMENT_MAX_SUBJECTS
 * names, each relative to the work directory without "..", none twice. */
int prov_subjects_check(const char *const *paths, size_t n, struct tdxr_err *err);

/*
 * Hashes subject_paths (relative to box_work_dir(b), regular files) in the box,
 * builds the statement, gets the end quote over its REPORTDATA from the guest
 * agent over box_ssh(b), and verifies the extended bundle (start from
 * box_bundle(b) + end) under the policy the start was judged by. *bundle_out
 * (malloc'd JSON, the caller's) is set only on success. TDXR_EATTEST when the end
 * quote does not verify (err names the step); TDXR_EINVAL for a bad subject list.
 */
int prov_attest_end(struct box *b, const char *const *subject_paths, size_t n, const struct prov_info *info,
                    char **bundle_out, struct tdxr_err *err);

#endif
