/*
 * sync.h - moving a source tree into the box: libgit2 decides the file list (the
 * "manifest"), rsync moves it through a remote shell (tdx-runner rsh LEASE, or
 * any ssh-like command for tests).
 *
 * Two manifests: the tree of one commit (CI jobs, after remote_sync_checkout put
 * that commit into a local directory) and a working tree's tracked plus
 * untracked-not-ignored files (tdx-runner run). Paths are relative to the tree
 * root and written NUL-separated for rsync --files-from --from0. Symlinks are
 * listed as links only when their target is relative and stays inside the tree
 * (policy in docs/sync.md); others are skipped with a warning.
 *
 * Trust boundary: the remote tree is the box's and untrusted; the local tree is
 * the job's source. No secret ever reaches a child's argv or environment: the
 * fetch token goes to libgit2 through a credential callback, children get an
 * environment built from an allow-list. Ownership: whatever comes back through
 * **out is the caller's and is freed with the matching _free.
 */
#ifndef TDXR_AGENT_REMOTE_SYNC_H
#define TDXR_AGENT_REMOTE_SYNC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/secret.h"

struct remote_ssh; /* agent/remote/remote.h */

/* --- Checkout of a commit (CI jobs) --- */

struct remote_sync_checkout_opts {
	const char *cache_dir;           /* bare repositories, one per URL (sha256 of the URL) */
	const char *url;                 /* file://, https://, or a local path; never with credentials */
	const char *sha;                 /* 40 hex digits: the exact commit to check out */
	const char *fetch_ref;           /* refspec to fetch when the commit is not cached; NULL =
	                                    all branches and tags */
	const char *username;            /* for the token; NULL = "x-access-token" */
	const struct tdxr_secret *token; /* NULL = anonymous */
	const char *workdir;             /* job directory; created, or reused when it holds a .git */
};

/*
 * Makes workdir a checkout of o->sha with a detached HEAD and nothing untracked
 * left from an earlier job. Objects come from the per-URL bare cache (locked with
 * flock while in use) through objects/info/alternates; the cache is fetched only
 * when the commit is not in it. libgit2 1.5 cannot fetch shallow: the fetch is
 * full. The token goes only to the URL's own host, over https (or plain http to
 * loopback). Reuse a workdir only for the same URL. Errors: EINVAL (bad sha,
 * credentials in the URL), EAUTH (token missing, refused or withheld), ENOTFOUND
 * (commit not reachable from fetch_ref), EIO.
 */
int remote_sync_checkout(const struct remote_sync_checkout_opts *o, struct tdxr_err *err);

/* --- Manifest --- */

struct remote_sync_manifest;

/* The tree of commit sha (hex) in the repository at repo_dir. */
int remote_sync_manifest_commit(const char *repo_dir, const char *sha, struct remote_sync_manifest **out,
                                struct tdxr_err *err);
/* The working tree at repo_dir: index entries still present on disk plus untracked
 * files not ignored by .gitignore / info/exclude / core.excludesFile. */
int remote_sync_manifest_worktree(const char *repo_dir, struct remote_sync_manifest **out,
                                  struct tdxr_err *err);
size_t remote_sync_manifest_count(const struct remote_sync_manifest *m);
/* Borrowed; i < count. Sorted bytewise. */
const char *remote_sync_manifest_path(const struct remote_sync_manifest *m, size_t i);
/* Entries left out (escaping symlinks, submodules, non-regular files). */
size_t remote_sync_manifest_skipped(const struct remote_sync_manifest *m);
/* True when path is listed (binary search). */
bool remote_sync_manifest_has(const struct remote_sync_manifest *m, const char *path);
/* Writes "path\0path\0..." (rsync --files-from --from0), mode 0600. */
int remote_sync_manifest_write(const struct remote_sync_manifest *m, const char *file, struct tdxr_err *err);
void remote_sync_manifest_free(struct remote_sync_manifest *m);

/*
 * Symlink policy, exposed for tests: a link at path (relative to the root) with
 * this target is kept only if the target is relative, has the form
 * (../)*name(/name)* (no ".." after a name, so no hop through another link can
 * climb out) and climbs at most as many levels as path is deep.
 */
bool remote_sync_link_is_safe(const char *path, const char *target);
/* An artifact path for copy-back: relative, non-empty, no "..", no empty component
 * except one trailing "/", no control characters. EINVAL otherwise. */
int remote_sync_path_check(const char *path, struct tdxr_err *err);

/* --- rsync driver --- */

enum remote_sync_stream { REMOTE_SYNC_STDOUT = 1, REMOTE_SYNC_STDERR = 2 };

struct remote_sync_opts {
	/* Remote shell, as argv; rsync runs it as "rsh... HOST rsync --server ...".
	 * Production: {self, "rsh", LEASE, NULL} with self from remote_sync_self_exe.
	 * Elements must not contain whitespace or quotes (rsync splits -e on them). */
	const char *const *rsh;
	const char *host;             /* as handed to rsh (a lease id or an ssh host alias) */
	const char *dest;             /* remote directory; its parent must exist; letters, digits, ._/+@=~- */
	const char *rsync;            /* rsync binary; NULL = "rsync" from PATH */
	const char *const *env_extra; /* "NAME=value" added to the allow-list env; never secrets */
	unsigned delete_max_pct;      /* guard: 0 = 50 */
	size_t delete_min_files;      /* guard: refuse only above this many deletions; 0 = 100 */
	bool force;                   /* skip the mass-deletion guard */
	bool dry_run;                 /* plan and guard only */
	uint64_t timeout_ms;          /* per rsync run; 0 = none */
	const volatile sig_atomic_t *cancel; /* non-zero = stop (SIGTERM, then SIGKILL) */
	/* Snapshot of the last successful push to this dest (one file per lease; written
	 * 0600 after every push). When it exists, the push is incremental: only files whose
	 * size or mtime changed since, plus deletions of what left the manifest, in ONE
	 * rsync run with no remote listing (the box's tree is assumed to be what we last
	 * pushed; files the job changed in the box are not repaired). NULL = always full. */
	const char *state_file;
	/* Every output line of every rsync run (borrowed, NUL-terminated, without its
	 * '\n'; the remote listing's stdout is parsed, not passed on). May be NULL. */
	void (*on_line)(void *ctx, enum remote_sync_stream s, const char *line, size_t len);
	void *ctx;
	/* An open session to the box (remote_lease_connect). When set, this call's rsync
	 * runs reach the box through it: a multiplexer (remote_mux_start) serves it on a
	 * socket in the call's private temp directory, named to the remote shell in
	 * TDXR_MUX (`tdx-runner rsh` then opens a channel on this session instead of a
	 * new connection; other remote shells ignore it). The session belongs to the
	 * call until it returns. NULL = every rsync run connects by itself. */
	struct remote_ssh *ssh;
};

struct remote_sync_result {
	size_t remote_entries; /* non-directory remote entries before the sync, not counting
	                          ignored ones (kept): the mass-deletion guard's base */
	size_t deleted;        /* non-directory entries deleted (or planned on dry_run) */
	size_t deleted_dirs;   /* directories deleted */
	size_t kept_ignored;   /* remote entries kept because local ignore rules match them */
	size_t transferred;    /* "Number of regular files transferred" */
};

/*
 * Makes the remote dest mirror the manifest: (1) lists the remote tree (rsync dry
 * run from an empty directory), (2) plans deletions: every remote entry that is
 * neither listed, nor a parent of a listed path, nor ignored by repo_dir's ignore
 * rules (remote build outputs survive), (3) refuses with ETOOBIG when the plan
 * deletes more than delete_max_pct % of the remote entries and more than
 * delete_min_files of them unless force, (4) deletes (--delete-missing-args), (5)
 * transfers the manifest (--files-from --from0 --links --safe-links). repo_dir
 * is the local tree root (the rsync source) and a git repository. res may be NULL.
 */
int remote_sync_push(const char *repo_dir, const struct remote_sync_manifest *m,
                     const struct remote_sync_opts *o, struct remote_sync_result *res, struct tdxr_err *err);

/*
 * remote_sync_manifest_worktree(repo_dir) then remote_sync_push, in one call
 * (tdx-runner run). With o->ssh the multiplexer starts first, so the login shell of
 * the first rsync run's channel starts in the box while the working tree is
 * scanned here. *count (may be NULL) gets the manifest's size on success.
 */
int remote_sync_push_worktree(const char *repo_dir, const struct remote_sync_opts *o,
                              struct remote_sync_result *res, size_t *count, struct tdxr_err *err);

/* Copies named paths (files or directories, remote_sync_path_check'ed) from dest
 * on the box into local_dir (created if missing). Remote symlinks are copied as
 * links and only when safe; devices and specials are never created. */
int remote_sync_pull(const struct remote_sync_opts *o, const char *const *paths, size_t n,
                     const char *local_dir, struct tdxr_err *err);

/* The running binary's path (readlink /proc/self/exe), for rsh[0]. *out is the
 * caller's (free). */
int remote_sync_self_exe(char **out, struct tdxr_err *err);

#endif
