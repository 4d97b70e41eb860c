/*
 * box.h - one leased, attested box and what can be done with it (DESIGN.md
 * §3.4). Every front end - `tdx-runner run`, `warmup`/`stop`, the GitLab
 * agent, the GitLab custom-executor driver, the GitHub runner - drives jobs
 * through this interface, so the order lease -> ready -> gate -> sync -> run
 * -> collect -> release, and its invariants, live in one place:
 *
 *  - the lease claim is on disk (0600, locked by this process) before the
 *    executor is asked for anything, and is updated at every state change;
 *  - box_sync_*, box_exec and box_pull refuse (TDXR_EATTEST) unless the gate
 *    passed on THIS connection: no source, secret or job token reaches a box
 *    whose attestation did not verify;
 *  - once box_acquire/box_adopt returned a box (even with an error), the
 *    caller ends with box_release (destroy + remove the claim) or box_keep
 *    (leave it for a later run / `tdx-runner stop`), then box_free.
 *
 * Not thread-safe: one box is driven by one thread at a time.
 */
#ifndef TDXR_AGENT_BOX_H
#define TDXR_AGENT_BOX_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/remote/remote.h"
#include "common/err.h"

struct config;
struct attest_verdict;
struct remote_sync_manifest;

/* The pipeline's states as recorded in the claim (and shown by `tdx-runner leases`). */
#define BOX_STATE_CREATED "created"
#define BOX_STATE_READY "ready"
#define BOX_STATE_ATTESTED "attested"
#define BOX_STATE_SYNCED "synced"
#define BOX_STATE_RUNNING "running"
#define BOX_STATE_COLLECTING "collecting"
#define BOX_STATE_PUBLISHING "publishing"
#define BOX_STATE_RELEASING "releasing"
#define BOX_STATE_KEPT "kept"

struct box_opts {
	const struct config *cfg;
	int executor_kind;             /* enum config_executor_kind */
	const char *job;               /* CI job this box serves (a label in the claim); NULL/"" for `run` */
	int progress;                  /* print "tdx-runner: <phase> done (N s)" lines on stderr */
	volatile sig_atomic_t *cancel; /* checked between steps and by rsync; may be NULL */
	/* Optional observers: a finished phase with its duration, and notices a job log should
	 * show (the SIMULATED warning, the attestation summary). Both may be NULL. */
	void (*on_phase)(void *ctx, const char *phase, double seconds);
	void (*on_notice)(void *ctx, const char *line);
	void *ctx;
};

struct box;

/*
 * Leases a new box, waits until it is ready, connects (pinning its SSH host key)
 * and runs the gate: a fresh quote over SHA-512("tdx-runner/gate/v1" || 0 ||
 * nonce || pinned host-key fingerprint), verified against the policy with the
 * app id the executor created and the compose hash it deployed. *out is set as
 * soon as a claim exists - also when this fails - and must then be released.
 * Returns TDXR_EATTEST when the box did not attest (err names the step).
 */
int box_acquire(const struct box_opts *o, struct box **out, struct tdxr_err *err);

/*
 * Takes over a kept lease (box_keep, `tdx-runner warmup`, `run --keep`): locks its
 * claim, reconnects with the pinned host key and runs the gate again with a new
 * nonce. *out is set once the claim is locked, also when this fails.
 */
int box_adopt(const struct box_opts *o, const char *lease_id, struct box **out, struct tdxr_err *err);

/* Pushes a git working tree (tracked + untracked-not-ignored files) to the box's
 * work directory; later pushes to the same lease are incremental. */
int box_sync_worktree(struct box *b, const char *repo_dir, struct tdxr_err *err);
/* Pushes the files a manifest lists from dir (e.g. a checked-out commit). */
int box_sync_manifest(struct box *b, const char *dir, const struct remote_sync_manifest *m,
                      struct tdxr_err *err);
/* Runs a command on a new channel (remote_exec_run on the box's session). */
int box_exec(struct box *b, const struct remote_exec_opts *eo, struct remote_exec_result *r,
             struct tdxr_err *err);
/* Copies named paths (relative to the work directory) back into local_dir. */
int box_pull(struct box *b, const char *const *paths, size_t n, const char *local_dir, struct tdxr_err *err);

/* Ends a phase the caller ran itself (e.g. "run"): the progress line and on_phase, timed
 * from the previous phase. */
void box_phase(struct box *b, const char *what);

/* Records a pipeline state (BOX_STATE_*) in the claim. */
void box_state(struct box *b, const char *state);

/* Leaves the box running for later: claim state "kept" until `until` (UNIX
 * seconds; 0 = until `tdx-runner stop`), lock dropped. `tdx-runner reap` skips
 * kept leases until they expire. */
int box_keep(struct box *b, int64_t until, struct tdxr_err *err);
/* Destroys the box and removes its claim and keys. On failure the claim stays
 * for `tdx-runner reap` and err says so. Idempotent. */
int box_release(struct box *b, struct tdxr_err *err);
void box_free(struct box *b);

/* The executor's view of a lease, from its claim (what box_adopt and the reaper use). */
struct lease_claim;
struct exec_lease;
int box_lease_from_claim(const struct config *cfg, const struct lease_claim *c, struct exec_lease *l,
                         struct tdxr_err *err);

/* Releases every lease no live process owns (kept ones only once expired, or with
 * `all`): destroys its box and removes its claim and keys. A box that cannot be
 * destroyed keeps its claim (counted in failed). Used by `tdx-runner reap`, and by
 * the agent at start-up and periodically. */
struct box_reap_opts {
	int dry_run;
	int all;                                     /* kept leases too */
	void (*report)(void *ctx, const char *line); /* one line per lease acted on; may be NULL */
	void *ctx;
};
struct box_reap_result {
	size_t reaped, failed, kept;
};
int box_reap(const struct config *cfg, const struct box_reap_opts *ro, struct box_reap_result *res,
             struct tdxr_err *err);

/* Releases one lease no live process holds (a kept one, typically): `tdx-runner stop`. */
int box_stop(const struct config *cfg, const char *lease_id, struct tdxr_err *err);

const char *box_lease_id(const struct box *b);
const char *box_executor_name(const struct box *b);
const char *box_work_dir(const struct box *b);   /* "" before connect */
const char *box_lease_file(const struct box *b); /* for `tdx-runner rsh` */
/* The attestation bundle (JSON; NULL until the gate ran) - written also for a refused box. */
const char *box_bundle(const struct box *b);
const struct attest_verdict *box_verdict(const struct box *b); /* NULL until the gate ran */
int box_attested(const struct box *b);
struct remote_ssh *box_ssh(struct box *b); /* NULL unless connected */

#endif
