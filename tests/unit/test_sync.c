/*
 * test_sync.c - agent/remote/sync: manifests (commit tree, working tree with
 * .gitignore), the symlink policy, the per-URL checkout cache, and the rsync
 * driver (mirror, 1-file incremental, rename, deletion of files and directories,
 * ignored remote outputs kept, mass-deletion guard, artifact copy-back, timeout,
 * cancel, no secret in a child's argv or environment; snapshot pushes, also
 * when a file changes while rsync runs).
 *
 * Fixture repositories are made with the git CLI in a temp directory. The rsync
 * runs use a local "remote shell" (sh -c) so they need no sshd; the
 * big-repository scenario over a real sshd runs only when
 * tests/integration/test_sync.sh sets TDXR_SYNC_RSH (skipped otherwise); with
 * TDXR_SYNC_MUX_LEASE it goes through the multiplexer on one connected session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/remote/remote.h"
#include "agent/remote/sync.h"
#include "common/err.h"
#include "common/secret.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct fx {
	char dir[PATH_MAX];  /* temp root */
	char repo[PATH_MAX]; /* working tree */
	char dst[PATH_MAX];  /* "remote" directory */
	char rsh[PATH_MAX];  /* local remote shell */
};

static void fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fx_sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int n, st;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	st = system(cmd);
	if (st != 0)
		fail_msg("command failed (%d): %s", st, cmd);
}

static void fx_path(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", a, b);

	assert_true(n > 0 && n < PATH_MAX);
}

static void fx_write(const char *root, const char *rel, const char *content)
{
	char p[PATH_MAX], d[PATH_MAX];
	FILE *f;

	fx_path(p, root, rel);
	/* mkdir -p of the parents */
	for (char *q = strchr(p + strlen(root) + 1, '/'); q; q = strchr(q + 1, '/')) {
		memcpy(d, p, (size_t)(q - p));
		d[q - p] = '\0';
		if (mkdir(d, 0755) != 0 && errno != EEXIST)
			fail_msg("mkdir %s", d);
	}
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static bool fx_exists(const char *root, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	fx_path(p, root, rel);
	return lstat(p, &st) == 0;
}

static void fx_symlink(const char *root, const char *rel, const char *target)
{
	char p[PATH_MAX];

	fx_path(p, root, rel);
	assert_int_equal(symlink(target, p), 0);
}

#define GIT "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main -c core.autocrlf=false"

static void fx_commit(const char *repo)
{
	fx_sh("cd '%s' && " GIT " add -A && " GIT " commit -q -m c --allow-empty", repo);
}

static void fx_head(const char *repo, char sha[41])
{
	char cmd[PATH_MAX + 64];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "git -C '%s' rev-parse HEAD", repo);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(sha, 41, p));
	pclose(p);
	assert_int_equal(strlen(sha), 40);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	FILE *s;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/tdxr-test-sync-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	fx_path(f->repo, f->dir, "repo");
	fx_path(f->dst, f->dir, "dst");
	fx_path(f->rsh, f->dir, "rsh");
	/* A remote shell for a local "remote": drop the host, run the command line. */
	s = fopen(f->rsh, "w");
	assert_non_null(s);
	fputs("#!/bin/sh\nshift\nexec sh -c \"$*\"\n", s);
	fclose(s);
	assert_int_equal(chmod(f->rsh, 0755), 0);
	fx_sh("mkdir -p '%s' '%s' && " GIT " init -q '%s'", f->repo, f->dst, f->repo);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	if (f && strncmp(f->dir, "/", 1) == 0 && strstr(f->dir, "tdxr-test-sync-"))
		fx_sh("rm -rf '%s'", f->dir);
	free(f);
	return 0;
}

static void fx_opts(struct remote_sync_opts *o, const struct fx *f, const char **rsh)
{
	memset(o, 0, sizeof(*o));
	rsh[0] = f->rsh;
	rsh[1] = NULL;
	o->rsh = rsh;
	o->host = "box";
	o->dest = f->dst;
	o->timeout_ms = 60000;
}

static int fx_push(const struct fx *f, const struct remote_sync_opts *o, struct remote_sync_result *res,
                   struct tdxr_err *e)
{
	struct remote_sync_manifest *m = NULL;
	int rc = remote_sync_manifest_worktree(f->repo, &m, e);

	if (rc == 0)
		rc = remote_sync_push(f->repo, m, o, res, e);
	remote_sync_manifest_free(m);
	return rc;
}

/* The remote holds exactly the source's non-ignored files (diff ignores .git). */
static void fx_assert_mirror(const struct fx *f, const char *extra_excludes)
{
	fx_sh("diff -r --no-dereference -x .git %s '%s' '%s' >&2", extra_excludes ? extra_excludes : "",
	      f->repo, f->dst);
}

/* ------------------------------------------------------------------ policy */

static void link_policy_keeps_inside_links_and_rejects_escapes(void **state)
{
	(void)state;
	assert_true(remote_sync_link_is_safe("l", "target"));
	assert_true(remote_sync_link_is_safe("a/l", "../b"));
	assert_true(remote_sync_link_is_safe("a/b/l", "../../c/d"));
	assert_true(remote_sync_link_is_safe("a/l", "./x/./y"));
	assert_false(remote_sync_link_is_safe("l", "../x"));
	assert_false(remote_sync_link_is_safe("a/l", "../../x"));
	assert_false(remote_sync_link_is_safe("a/l", "/etc/passwd"));
	assert_false(remote_sync_link_is_safe("a/l", ""));
	/* "x/.." may climb through a link named x: refused even though it looks inside. */
	assert_false(remote_sync_link_is_safe("a/b/l", "x/../y"));
	assert_false(remote_sync_link_is_safe("l", "x/.."));
}

static void self_exe_names_this_binary_not_a_child(void **state)
{
	char *self = NULL;
	struct tdxr_err e;

	(void)state;
	assert_int_equal(remote_sync_self_exe(&self, &e), 0);
	assert_true(self[0] == '/');
	assert_non_null(strstr(self, "test_sync"));
	free(self);
}

static void artifact_paths_reject_parent_absolute_and_control_characters(void **state)
{
	struct tdxr_err e;

	(void)state;
	assert_int_equal(remote_sync_path_check("out/report.xml", &e), 0);
	assert_int_equal(remote_sync_path_check("dist/", &e), 0);
	assert_int_equal(remote_sync_path_check("a b/c", &e), 0);
	assert_int_equal(remote_sync_path_check("../etc", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check("a/../../b", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check("/etc/passwd", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check("", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check("a//b", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check("a\nb", &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_path_check(".git/config", &e), TDXR_EINVAL);
}

/* ------------------------------------------------------------------ manifests */

static void fx_populate(const struct fx *f)
{
	fx_write(f->repo, "a.txt", "a\n");
	fx_write(f->repo, "dir with space/b c.txt", "b\n");
	fx_write(f->repo, "new\nline.txt", "n\n");
	fx_write(f->repo, "sub/deep/f", "f\n");
	fx_write(f->repo, "gone/one", "1\n");
	fx_write(f->repo, "gone/two", "2\n");
	fx_write(f->repo, ".gitignore", "*.o\nbuild/\n");
	fx_symlink(f->repo, "sub/l", "deep/f");
	fx_symlink(f->repo, "sub/up", "../a.txt");
	fx_symlink(f->repo, "abs", "/etc/passwd");
	fx_symlink(f->repo, "sub/esc", "../../outside");
	fx_symlink(f->repo, "sub/hop", "l/../..");
	fx_write(f->repo, "back\\#012slash", "rsync's own escape syntax in a name\n");
	fx_write(f->repo, "\xc3\xbc/\xc3\xb1.txt", "utf-8\n");
}

static void manifest_of_a_commit_lists_blobs_and_safe_links_only(void **state)
{
	struct fx *f = *state;
	struct remote_sync_manifest *m = NULL;
	static const char *want[] = {
		".gitignore", "a.txt",    "back\\#012slash",      "dir with space/b c.txt",
		"gone/one",   "gone/two", "new\nline.txt",        "sub/deep/f",
		"sub/l",      "sub/up",   "\xc3\xbc/\xc3\xb1.txt"
	};
	struct tdxr_err e;
	char sha[41], lst[PATH_MAX];
	uint8_t *data = NULL;
	size_t len = 0, off = 0;

	fx_populate(f);
	fx_commit(f->repo);
	fx_head(f->repo, sha);
	fx_write(f->repo, "untracked.txt", "u\n"); /* not in the commit */
	assert_int_equal(remote_sync_manifest_commit(f->repo, sha, &m, &e), 0);
	assert_int_equal(remote_sync_manifest_count(m), sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(remote_sync_manifest_path(m, i), want[i]);
		assert_true(remote_sync_manifest_has(m, want[i]));
	}
	assert_false(remote_sync_manifest_has(m, "abs"));
	assert_false(remote_sync_manifest_has(m, "sub/esc"));
	assert_false(remote_sync_manifest_has(m, "sub/hop"));
	assert_false(remote_sync_manifest_has(m, "untracked.txt"));
	assert_int_equal(remote_sync_manifest_skipped(m), 3);

	/* The file rsync reads: every path followed by one NUL, nothing else. */
	fx_path(lst, f->dir, "m.lst");
	assert_int_equal(remote_sync_manifest_write(m, lst, &e), 0);
	assert_int_equal(tdxr_file_read(lst, 1u << 20, &data, &len, &e), 0);
	for (size_t i = 0; i < remote_sync_manifest_count(m); i++) {
		const char *p = remote_sync_manifest_path(m, i);

		assert_true(off + strlen(p) + 1 <= len);
		assert_memory_equal(data + off, p, strlen(p) + 1);
		off += strlen(p) + 1;
	}
	assert_int_equal(off, len);
	free(data);
	remote_sync_manifest_free(m);

	assert_int_equal(remote_sync_manifest_commit(f->repo, "not-a-sha", &m, &e), TDXR_EINVAL);
	assert_null(m);
	assert_int_equal(
	    remote_sync_manifest_commit(f->repo, "0123456789012345678901234567890123456789", &m, &e),
	    TDXR_ENOTFOUND);
}

static void manifest_of_a_worktree_has_tracked_and_untracked_but_not_ignored_or_deleted(void **state)
{
	struct fx *f = *state;
	struct remote_sync_manifest *m = NULL;
	struct tdxr_err e;
	char p[PATH_MAX];

	fx_populate(f);
	fx_commit(f->repo);
	fx_path(p, f->repo, "gone/one");
	assert_int_equal(unlink(p), 0);                            /* deleted, not staged */
	fx_write(f->repo, "new dir/u.txt", "u\n");                 /* untracked directory */
	fx_write(f->repo, "x.o", "obj\n");                         /* ignored by *.o */
	fx_write(f->repo, "build/out/bin", "bin\n");               /* ignored directory */
	fx_write(f->repo, "sub/deep/g.o", "obj\n");                /* ignored deep */
	fx_sh("cd '%s' && " GIT " rm -q --cached a.txt", f->repo); /* untracked again, still on disk */
	assert_int_equal(remote_sync_manifest_worktree(f->repo, &m, &e), 0);
	assert_true(remote_sync_manifest_has(m, "a.txt"));
	assert_true(remote_sync_manifest_has(m, "gone/two"));
	assert_true(remote_sync_manifest_has(m, "new dir/u.txt"));
	assert_true(remote_sync_manifest_has(m, "new\nline.txt"));
	assert_true(remote_sync_manifest_has(m, "sub/l"));
	assert_false(remote_sync_manifest_has(m, "gone/one"));
	assert_false(remote_sync_manifest_has(m, "x.o"));
	assert_false(remote_sync_manifest_has(m, "build/out/bin"));
	assert_false(remote_sync_manifest_has(m, "sub/deep/g.o"));
	assert_false(remote_sync_manifest_has(m, "abs"));
	assert_false(remote_sync_manifest_has(m, "sub/esc"));
	for (size_t i = 0; i < remote_sync_manifest_count(m); i++)
		assert_null(strstr(remote_sync_manifest_path(m, i), ".git/"));
	remote_sync_manifest_free(m);
}

/* ------------------------------------------------------------------ checkout */

static void checkout_of_a_sha_from_a_local_remote_is_exact_and_detached(void **state)
{
	struct fx *f = *state;
	struct remote_sync_checkout_opts co;
	struct remote_sync_manifest *m = NULL;
	git_repository *wr = NULL;
	char sha1[41], sha2[41], url[PATH_MAX + 8], cache[PATH_MAX], work[PATH_MAX];
	struct tdxr_err e;

	fx_write(f->repo, "v.txt", "one\n");
	fx_commit(f->repo);
	fx_head(f->repo, sha1);
	fx_write(f->repo, "v.txt", "two\n");
	fx_write(f->repo, "extra/e.txt", "e\n");
	fx_commit(f->repo);
	fx_head(f->repo, sha2);
	snprintf(url, sizeof(url), "file://%s", f->repo);
	fx_path(cache, f->dir, "cache");
	fx_path(work, f->dir, "work");

	memset(&co, 0, sizeof(co));
	co.cache_dir = cache;
	co.url = url;
	co.sha = sha1;
	co.workdir = work;
	assert_int_equal(remote_sync_checkout(&co, &e), 0);
	fx_sh("grep -qx one '%s/v.txt'", work);
	assert_false(fx_exists(work, "extra/e.txt"));
	/* Fetched by its id (it is no branch tip), kept alive by a ref of its own. */
	fx_sh("test \"$(git --git-dir=\"$(ls -d '%s'/*.git)\" rev-parse refs/tdxr/%s)\" = %s", cache, sha1,
	      sha1);
	git_libgit2_init();
	assert_int_equal(git_repository_open(&wr, work), 0);
	assert_int_equal(git_repository_head_detached(wr), 1);
	git_repository_free(wr);
	git_libgit2_shutdown();
	fx_sh("test \"$(git -C '%s' rev-parse HEAD)\" = %s", work, sha1);
	assert_int_equal(remote_sync_manifest_commit(work, sha1, &m, &e), 0);
	assert_int_equal(remote_sync_manifest_count(m), 1);
	remote_sync_manifest_free(m);

	/* Newer commit, same job dir; then back: files of the newer one are removed. */
	co.sha = sha2;
	assert_int_equal(remote_sync_checkout(&co, &e), 0);
	fx_sh("grep -qx two '%s/v.txt'", work);
	assert_true(fx_exists(work, "extra/e.txt"));
	fx_write(work, "stray.txt", "left by a job\n");
	co.sha = sha1;
	assert_int_equal(remote_sync_checkout(&co, &e), 0);
	assert_false(fx_exists(work, "extra/e.txt"));
	assert_false(fx_exists(work, "stray.txt"));

	/* The cache already has the commits: no fetch even with the origin gone. */
	fx_sh("mv '%s' '%s.moved'", f->repo, f->repo);
	co.sha = sha2;
	assert_int_equal(remote_sync_checkout(&co, &e), 0);
	fx_sh("mv '%s.moved' '%s'", f->repo, f->repo);

	co.sha = "0123456789012345678901234567890123456789";
	assert_int_equal(remote_sync_checkout(&co, &e), TDXR_ENOTFOUND);
	co.sha = sha1;
	co.url = "https://user:tok@example.com/x.git";
	assert_int_equal(remote_sync_checkout(&co, &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "credentials"));
}

/* A git smart-HTTP server that wants Basic auth (started by test_sync.sh): the
 * token travels only through libgit2's credential callback. */
static void checkout_over_http_sends_the_token_only_through_the_credential_callback(void **state)
{
	const char *url = getenv("TDXR_SYNC_HTTP_URL"), *sha = getenv("TDXR_SYNC_HTTP_SHA"),
	           *tokf = getenv("TDXR_SYNC_HTTP_TOKEN_FILE"), *log = getenv("TDXR_SYNC_HTTP_LOG"),
	           *dangling = getenv("TDXR_SYNC_HTTP_DANGLING");
	struct fx *f = *state;
	struct remote_sync_checkout_opts co;
	struct tdxr_secret *tok = NULL, *wrong = NULL;
	char cache[PATH_MAX], work[PATH_MAX];
	struct tdxr_err e;

	if (!url || !sha || !tokf || !log) {
		print_message("SKIP: needs the git HTTP server with Basic auth; run by "
		              "tests/integration/test_sync.sh\n");
		skip();
	}
	assert_int_equal(tdxr_secret_from_file(tokf, &tok, &e), 0);
	wrong = tdxr_secret_new("not-the-token", 13);
	assert_non_null(wrong);
	fx_path(cache, f->dir, "cache");
	fx_path(work, f->dir, "work");
	memset(&co, 0, sizeof(co));
	co.cache_dir = cache;
	co.url = url;
	co.sha = sha;
	co.workdir = work;

	assert_int_equal(remote_sync_checkout(&co, &e), TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "no token"));
	co.token = wrong;
	assert_int_equal(remote_sync_checkout(&co, &e), TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "refused"));
	co.token = tok;
	{
		char other[PATH_MAX];
		const char *port = strstr(url, "127.0.0.1:"), *plain = getenv("TDXR_SYNC_HTTP_URL_PLAIN");

		assert_non_null(port);
		/* A redirect to another host (the server answers /moved/... with 301 to
		 * localhost): the token is withheld from it. */
		snprintf(other, sizeof(other), "http://127.0.0.1:%.*s/moved/%s", (int)strcspn(port + 10, "/"),
		         port + 10, strchr(port + 10, '/') + 1);
		co.url = other;
		assert_int_equal(remote_sync_checkout(&co, &e), TDXR_EAUTH);
		assert_non_null(strstr(e.msg, "not the repository's host"));
		/* Clear-text HTTP to a non-loopback address: withheld. */
		if (plain) {
			co.url = plain;
			assert_int_equal(remote_sync_checkout(&co, &e), TDXR_EAUTH);
			assert_non_null(strstr(e.msg, "unencrypted"));
		} else {
			print_message(
			    "note: no non-loopback address here; clear-text refusal not exercised\n");
		}
		co.url = url;
	}
	if (remote_sync_checkout(&co, &e) != 0)
		fail_msg("checkout over HTTP: %s", e.msg);
	fx_sh("test \"$(git -C '%s' rev-parse HEAD)\" = %s && test -f '%s/hello.txt'", work, sha, work);
	/* A commit no branch or tag points at (a CI merge result, a force-pushed
	 * branch), on a server that allows any SHA in "want": fetched by its id. */
	if (dangling) {
		co.sha = dangling;
		if (remote_sync_checkout(&co, &e) != 0)
			fail_msg("checkout of an unreferenced commit over HTTP: %s", e.msg);
		fx_sh("grep -qx dangling '%s/hello.txt'", work);
		co.sha = sha;
	}
	/* Not in any request line the server saw, not in the cache or job repository. */
	fx_sh("! grep -qF -f '%s' '%s' && grep -q 'auth=yes' '%s'", tokf, log, log);
	fx_sh("! grep -rqF -f '%s' '%s' '%s'", tokf, cache, work);
	tdxr_secret_free(tok);
	tdxr_secret_free(wrong);
}

/* ------------------------------------------------------------------ rsync driver */

static void push_mirrors_the_tree_incrementally_with_renames_and_deletions(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2];
	struct tdxr_err e;
	char a[PATH_MAX], b[PATH_MAX];

	fx_populate(f);
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.remote_entries, 0);
	assert_int_equal(res.transferred, 9); /* regular files; links are not counted */
	fx_assert_mirror(f, "-x abs -x esc -x hop");
	assert_true(fx_exists(f->dst, "sub/l"));
	assert_false(fx_exists(f->dst, "abs"));
	assert_false(fx_exists(f->dst, "sub/esc"));
	assert_false(fx_exists(f->dst, "sub/hop"));
	fx_sh("test \"$(readlink '%s/sub/l')\" = deep/f", f->dst);

	/* No change: nothing transferred, nothing deleted. */
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 0);
	assert_int_equal(res.deleted, 0);

	/* One file changed: one file transferred. */
	fx_write(f->repo, "sub/deep/f", "f changed\n");
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	fx_assert_mirror(f, "-x abs -x esc -x hop");

	/* Rename, deletion of a file and of a whole directory. */
	fx_path(a, f->repo, "a.txt");
	fx_path(b, f->repo, "renamed.txt");
	assert_int_equal(rename(a, b), 0);
	/* (git does not track empty directories: the emptied one goes too) */
	fx_sh("rm -rf '%s/gone' '%s/dir with space/b c.txt' && rmdir '%s/dir with space'", f->repo, f->repo,
	      f->repo);
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	assert_int_equal(res.deleted, 4);
	assert_int_equal(res.deleted_dirs, 2);
	assert_true(fx_exists(f->dst, "back\\#012slash"));
	assert_true(fx_exists(f->dst, "\xc3\xbc/\xc3\xb1.txt"));
	assert_false(fx_exists(f->dst, "a.txt"));
	assert_true(fx_exists(f->dst, "renamed.txt"));
	assert_false(fx_exists(f->dst, "gone"));
	assert_false(fx_exists(f->dst, "dir with space"));
	fx_assert_mirror(f, "-x abs -x esc -x hop");
}

static void push_with_a_snapshot_sends_only_changes_in_one_rsync_run(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2];
	struct tdxr_err e;
	char st[PATH_MAX], counter[PATH_MAX], wrap[PATH_MAX], a[PATH_MAX];
	FILE *w;

	fx_populate(f);
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	fx_path(st, f->dir, "sync.state");
	fx_path(counter, f->dir, "runs");
	fx_path(wrap, f->dir, "rsync-count");
	/* An rsync that counts its runs. */
	w = fopen(wrap, "w");
	assert_non_null(w);
	fprintf(w, "#!/bin/sh\necho run >> '%s'\nexec rsync \"$@\"\n", counter);
	fclose(w);
	assert_int_equal(chmod(wrap, 0755), 0);
	o.rsync = wrap;
	o.state_file = st;
	assert_int_equal(fx_push(f, &o, &res, &e), 0); /* first push: full, writes the snapshot */
	fx_assert_mirror(f, "-x abs -x esc -x hop");
	assert_true(fx_exists(f->dir, "sync.state"));
	fx_sh("rm -f '%s'", counter);
	/* Nothing changed: no rsync at all. */
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 0);
	assert_false(fx_exists(f->dir, "runs"));
	/* One file changed: one run, one file. */
	fx_write(f->repo, "sub/deep/f", "changed again, longer than before\n");
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	fx_sh("test \"$(wc -l < '%s')\" -eq 1", counter);
	fx_assert_mirror(f, "-x abs -x esc -x hop");
	/* A deleted file is deleted in the box in that same single run. */
	fx_sh("rm -f '%s'", counter);
	fx_path(a, f->repo, "a.txt");
	assert_int_equal(unlink(a), 0);
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.deleted, 1);
	assert_false(fx_exists(f->dst, "a.txt"));
	fx_sh("test \"$(wc -l < '%s')\" -eq 1", counter);
	fx_assert_mirror(f, "-x abs -x esc -x hop");
	/* A corrupt snapshot falls back to a full push (and is rewritten). */
	fx_sh("printf 'garbage' > '%s'", st);
	fx_write(f->repo, "new.txt", "new\n");
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_true(fx_exists(f->dst, "new.txt"));
	fx_assert_mirror(f, "-x abs -x esc -x hop");
}

/* The snapshot records what a file was BEFORE rsync read it: a file that changes
 * after rsync sent it is sent again by the next push (recorded after the transfer, it
 * would look unchanged and the box would keep the old bytes for good). */
static void push_with_a_snapshot_resends_a_file_changed_while_rsync_ran(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2];
	struct tdxr_err e;
	char st[PATH_MAX], flag[PATH_MAX], wrap[PATH_MAX], late[PATH_MAX];
	FILE *w;

	fx_populate(f);
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	fx_path(st, f->dir, "sync.state");
	fx_path(flag, f->dir, "change-after-rsync");
	fx_path(wrap, f->dir, "rsync-then-change");
	fx_path(late, f->repo, "sub/deep/f");
	/* An rsync after whose transfer run (--stats; once, when the flag exists) a
	 * source file changes. */
	w = fopen(wrap, "w");
	assert_non_null(w);
	fprintf(w,
	        "#!/bin/sh\nrsync \"$@\"; rc=$?\n"
	        "case \" $* \" in *\" --stats \"*)\n"
	        "  if [ -e '%s' ]; then rm -f '%s'; echo 'written after rsync read it' >> '%s'; fi;;\n"
	        "esac\nexit $rc\n",
	        flag, flag, late);
	fclose(w);
	assert_int_equal(chmod(wrap, 0755), 0);
	o.rsync = wrap;
	o.state_file = st;
	/* Full push (snapshot written), and the file changes right after its transfer. */
	fx_write(f->dir, "change-after-rsync", "1");
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_false(fx_exists(f->dir, "change-after-rsync"));
	/* The next push sees it changed and sends it. */
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	fx_assert_mirror(f, "-x abs -x esc -x hop");
	/* The same for an incremental push: change, new file and deletion in one run. */
	fx_write(f->repo, "a.txt", "edited\n");
	fx_write(f->repo, "brand-new.txt", "new\n");
	fx_sh("rm -f '%s/gone/one'", f->repo);
	fx_write(f->dir, "change-after-rsync", "1");
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 2);
	assert_int_equal(res.deleted, 1);
	assert_false(fx_exists(f->dir, "change-after-rsync"));
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	fx_assert_mirror(f, "-x abs -x esc -x hop");
}

struct lines {
	size_t out, err, stats;
};

static void count_line(void *ctx, enum remote_sync_stream st, const char *line, size_t len)
{
	struct lines *l = ctx;

	assert_int_equal(strlen(line), len);
	if (st == REMOTE_SYNC_STDOUT)
		l->out++;
	else
		l->err++;
	if (strstr(line, "Number of regular files transferred: 1"))
		l->stats++;
}

static void push_streams_rsync_output_and_never_writes_through_a_box_symlink(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	struct lines l = { 0 };
	const char *rsh[2];
	struct tdxr_err e;
	char outside[PATH_MAX];

	fx_write(f->repo, "sub/deep/f", "f\n");
	fx_commit(f->repo);
	/* The box planted sub -> a directory outside the destination. */
	fx_path(outside, f->dir, "outside");
	assert_int_equal(mkdir(outside, 0755), 0);
	fx_symlink(f->dst, "sub", outside);
	fx_opts(&o, f, rsh);
	o.on_line = count_line;
	o.ctx = &l;
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);
	assert_int_equal(res.deleted, 1); /* the planted link */
	assert_true(l.out > 5);
	assert_int_equal(l.stats, 1);
	fx_sh("test -d '%s/sub' && test ! -L '%s/sub' && test -f '%s/sub/deep/f'", f->dst, f->dst, f->dst);
	fx_sh("test -z \"$(ls -A '%s')\"", outside);
}

static void push_keeps_remote_outputs_that_the_ignore_rules_match(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2];
	struct tdxr_err e;

	fx_write(f->repo, "src/main.c", "int main(void) { return 0; }\n");
	fx_write(f->repo, "old/only.c", "x\n");
	fx_write(f->repo, ".gitignore", "*.o\nbuild/\n");
	fx_write(f->repo, "local.o", "never sent\n");
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_false(fx_exists(f->dst, "local.o"));
	/* What a build in the box leaves, and a stray file nobody listed. */
	fx_write(f->dst, "build/a/b.bin", "out\n");
	fx_write(f->dst, "src/main.o", "obj\n");
	fx_write(f->dst, "old/only.o", "obj\n");
	fx_write(f->dst, "stray.txt", "?\n");
	fx_write(f->dst, "stray dir/x", "?\n");
	fx_write(f->dst, ".git/HEAD", "box repo\n");
	fx_sh("rm -rf '%s/old/only.c'", f->repo);
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_true(fx_exists(f->dst, "build/a/b.bin"));
	assert_true(fx_exists(f->dst, "src/main.o"));
	assert_true(fx_exists(f->dst, "old/only.o")); /* its directory stays for it */
	assert_false(fx_exists(f->dst, "old/only.c"));
	assert_false(fx_exists(f->dst, "stray.txt"));
	assert_false(fx_exists(f->dst, "stray dir"));
	assert_true(fx_exists(f->dst, ".git/HEAD"));
	assert_int_equal(res.deleted, 3);
	/* build/a/b.bin, src/main.o, old/only.o (build/ and build/a/ hold kept files) */
	assert_int_equal(res.kept_ignored, 3);
	/* src/main.c .gitignore old/only.c stray.txt "stray dir/x" (.git and ignored ones not counted) */
	assert_int_equal(res.remote_entries, 5);
}

static void push_refuses_a_mass_deletion_unless_forced(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2];
	struct tdxr_err e;
	char rel[64];

	for (int i = 0; i < 300; i++) {
		snprintf(rel, sizeof(rel), "%s/f%03d", i < 200 ? "many" : "keep", i);
		fx_write(f->repo, rel, "x\n");
	}
	fx_write(f->repo, ".gitignore", "build/\n");
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	/* Many build outputs in the box do not water the guard down. */
	for (int i = 0; i < 400; i++) {
		snprintf(rel, sizeof(rel), "build/o%03d", i);
		fx_write(f->dst, rel, "o\n");
	}
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 301);
	fx_sh("rm -rf '%s/many'", f->repo);

	assert_int_equal(fx_push(f, &o, &res, &e), TDXR_ETOOBIG);
	assert_non_null(strstr(e.msg, "refusing to delete 200 of 301"));
	assert_true(fx_exists(f->dst, "many/f000"));

	/* Over the percentage but not over the count: allowed. */
	o.delete_min_files = 500;
	o.dry_run = true;
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.deleted, 200);
	assert_true(fx_exists(f->dst, "many/f000")); /* dry run */
	o.delete_min_files = 0;
	o.delete_max_pct = 70; /* 66% is under 70% */
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	o.delete_max_pct = 0;
	o.dry_run = false;

	o.force = true;
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.deleted, 200);
	assert_false(fx_exists(f->dst, "many"));
	assert_true(fx_exists(f->dst, "keep/f299"));
}

static void push_children_get_no_secret_in_argv_or_environment(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	const char *rsh[2], *extra[] = { "TDXR_LEASE_DIR=/nonsecret", NULL };
	struct tdxr_secret *tok = NULL;
	char wrap[PATH_MAX], envf[PATH_MAX], cmdf[PATH_MAX];
	uint8_t *data = NULL;
	size_t len = 0;
	struct tdxr_err e;
	FILE *s;

	fx_write(f->repo, "a", "a\n");
	fx_commit(f->repo);
	/* A token held the way the agent holds it, plus a leftover in the environment. */
	assert_int_equal(setenv("TDXR_TEST_SYNC_TOKEN", "s3cr3t-token-value", 1), 0);
	assert_int_equal(setenv("GITLAB_TOKEN", "s3cr3t-gitlab", 1), 0);
	tok = tdxr_secret_new("s3cr3t-held", 11);
	assert_non_null(tok);
	fx_path(wrap, f->dir, "rsync-wrap");
	fx_path(envf, f->dir, "environ");
	fx_path(cmdf, f->dir, "cmdline");
	s = fopen(wrap, "w");
	assert_non_null(s);
	/* Records what the rsync child really got, then becomes rsync (same pid). */
	fprintf(s,
	        "#!/bin/sh\ncat /proc/$$/environ >> '%s'\ncat /proc/$$/cmdline >> '%s'\nexec rsync \"$@\"\n",
	        envf, cmdf);
	fclose(s);
	assert_int_equal(chmod(wrap, 0755), 0);
	fx_opts(&o, f, rsh);
	o.rsync = wrap;
	o.env_extra = extra;
	assert_int_equal(fx_push(f, &o, &res, &e), 0);
	assert_int_equal(res.transferred, 1);

	assert_int_equal(tdxr_file_read(envf, 1u << 20, &data, &len, &e), 0);
	for (size_t i = 0; i < len; i++)
		if (data[i] == 0)
			data[i] = '\n';
	assert_null(strstr((char *)data, "s3cr3t"));
	assert_null(strstr((char *)data, "TDXR_TEST_SYNC_TOKEN"));
	assert_null(strstr((char *)data, "GITLAB_TOKEN"));
	assert_non_null(strstr((char *)data, "TDXR_LEASE_DIR=/nonsecret\n"));
	assert_non_null(strstr((char *)data, "LC_ALL=C\n"));
	free(data);
	assert_int_equal(tdxr_file_read(cmdf, 1u << 20, &data, &len, &e), 0);
	assert_true(len > 0);
	assert_null(memmem(data, len, "s3cr3t", 6));
	assert_non_null(memmem(data, len, "--files-from=", 13));
	assert_non_null(memmem(data, len, f->rsh, strlen(f->rsh)));
	free(data);
	tdxr_secret_free(tok);
	unsetenv("TDXR_TEST_SYNC_TOKEN");
	unsetenv("GITLAB_TOKEN");
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static volatile sig_atomic_t *g_cancel;

static void on_alarm(int sig)
{
	(void)sig;
	*g_cancel = 1;
}

static void push_stops_on_timeout_and_on_cancel(void **state)
{
	struct itimerval it;
	struct fx *f = *state;
	struct remote_sync_opts o;
	const char *rsh[2];
	volatile sig_atomic_t cancel = 0;
	struct tdxr_err e;
	uint64_t t0;
	FILE *s;

	fx_write(f->repo, "a", "a\n");
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	s = fopen(f->rsh, "w");
	assert_non_null(s);
	/* A box that never answers; the pid makes the marker unique to this run. */
	fprintf(s, "#!/bin/sh\nexec sleep 30.%d\n", (int)getpid());
	fclose(s);
	o.timeout_ms = 300;
	t0 = ms_now();
	assert_int_equal(fx_push(f, &o, NULL, &e), TDXR_ETIMEOUT);
	assert_true(ms_now() - t0 < 5000);

	/* Cancelled from a signal handler while rsync waits on the box. */
	o.timeout_ms = 0;
	o.cancel = &cancel;
	g_cancel = &cancel;
	signal(SIGALRM, on_alarm);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 300000;
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	t0 = ms_now();
	assert_int_equal(fx_push(f, &o, NULL, &e), TDXR_ECANCELED);
	assert_true(ms_now() - t0 >= 250 && ms_now() - t0 < 5000);
	signal(SIGALRM, SIG_DFL);
	/* The whole process group went: no remote-shell child left behind. */
	fx_sh("! pgrep -f '^sleep 30[.]%d$' >/dev/null", (int)getpid());
}

static void push_rejects_unsafe_remote_shell_words_and_destinations(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	const char *rsh[2], *bad[] = { "ssh", "-o ProxyCommand=x", NULL };
	struct tdxr_err e;

	fx_write(f->repo, "a", "a\n");
	fx_commit(f->repo);
	fx_opts(&o, f, rsh);
	o.dest = "/tmp/x;rm -rf /";
	assert_int_equal(fx_push(f, &o, NULL, &e), TDXR_EINVAL);
	fx_opts(&o, f, rsh);
	o.host = "-oProxyCommand=x";
	assert_int_equal(fx_push(f, &o, NULL, &e), TDXR_EINVAL);
	fx_opts(&o, f, rsh);
	o.rsh = bad;
	assert_int_equal(fx_push(f, &o, NULL, &e), TDXR_EINVAL);
}

static void pull_copies_named_paths_back_and_refuses_escapes(void **state)
{
	struct fx *f = *state;
	struct remote_sync_opts o;
	const char *rsh[2], *paths[] = { "out/report.xml", "dist/", "name with spaces" };
	const char *bad[] = { "out/../../etc/passwd" };
	char local[PATH_MAX];
	struct tdxr_err e;

	fx_opts(&o, f, rsh);
	fx_write(f->dst, "out/report.xml", "<ok/>\n");
	fx_write(f->dst, "out/other", "not asked\n");
	fx_write(f->dst, "dist/pkg/a.tar", "tar\n");
	fx_write(f->dst, "name with spaces", "sp\n");
	fx_symlink(f->dst, "dist/evil", "/etc/passwd");
	fx_path(local, f->dir, "artifacts");
	assert_int_equal(remote_sync_pull(&o, paths, 3, local, &e), 0);
	assert_true(fx_exists(local, "out/report.xml"));
	assert_false(fx_exists(local, "out/other"));
	assert_true(fx_exists(local, "dist/pkg/a.tar"));
	assert_true(fx_exists(local, "name with spaces"));
	assert_false(fx_exists(local, "dist/evil"));
	assert_int_equal(remote_sync_pull(&o, bad, 1, local, &e), TDXR_EINVAL);
	assert_int_equal(remote_sync_pull(&o, paths, 0, local, &e), TDXR_EINVAL);
}

/* ------------------------------------------------------------------ real sshd, big tree */

static void big_tree_over_sshd_full_incremental_rename_delete_guard_and_checkout(void **state)
{
	const char *conf = getenv("TDXR_SYNC_RSH"), *host = getenv("TDXR_SYNC_HOST"),
	           *repo = getenv("TDXR_SYNC_REPO"), *work = getenv("TDXR_SYNC_WORK"),
	           *mux_lease = getenv("TDXR_SYNC_MUX_LEASE");
	struct remote_lease *lease = NULL;
	struct remote_ssh *ssh = NULL;
	struct remote_sync_manifest *m = NULL;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	struct remote_sync_checkout_opts co;
	const char *words[16];
	char rshbuf[1024], dst[PATH_MAX], dst2[PATH_MAX], p[PATH_MAX], url[PATH_MAX + 8], sha[41];
	char cache[PATH_MAX], job[PATH_MAX];
	struct tdxr_err e;
	size_t nw = 0, files;
	uint64_t t0;

	(void)state;
	if (!conf || !host || !repo || !work) {
		print_message("SKIP: needs a real sshd and a generated 10 000-file repository; "
		              "run by tests/integration/test_sync.sh\n");
		skip();
	}
	snprintf(rshbuf, sizeof(rshbuf), "%s", conf);
	for (char *w = rshbuf, *sp; w && *w && nw + 1 < 16; w = sp ? sp + 1 : NULL) {
		sp = strchr(w, ' ');
		if (sp)
			*sp = '\0';
		if (*w)
			words[nw++] = w;
	}
	words[nw] = NULL;
	fx_path(dst, work, "dst");
	fx_path(dst2, work, "dst-ci");
	memset(&o, 0, sizeof(o));
	o.rsh = words;
	o.host = host;
	o.dest = dst;
	o.timeout_ms = 120000;
	if (mux_lease != NULL) {
		/* As the job does it: one session, every rsync run a channel on it. */
		if (remote_lease_load(mux_lease, &lease, &e) != 0 || remote_lease_connect(lease, 15000, &ssh, &e) != 0)
			fail_msg("mux lease: %s", e.msg);
		o.ssh = ssh;
	}

	/* Full sync of the working tree. */
	t0 = ms_now();
	assert_int_equal(remote_sync_manifest_worktree(repo, &m, &e), 0);
	files = remote_sync_manifest_count(m);
	print_message("manifest: %zu paths (%zu skipped) in %llu ms\n", files,
	              remote_sync_manifest_skipped(m), (unsigned long long)(ms_now() - t0));
	assert_true(files >= 10000);
	t0 = ms_now();
	if (remote_sync_push(repo, m, &o, &res, &e) != 0)
		fail_msg("full sync: %s", e.msg);
	print_message("full sync: %zu files transferred in %llu ms\n", res.transferred,
	              (unsigned long long)(ms_now() - t0));
	assert_int_equal(res.transferred, files - 1); /* one path is a symlink */
	remote_sync_manifest_free(m);
	m = NULL;
	fx_sh("diff -r --no-dereference -x .git -x abs-link -x escape-link -x ignored.log -x build '%s' '%s' "
	      ">&2",
	      repo, dst);
	assert_false(fx_exists(dst, "abs-link"));
	assert_false(fx_exists(dst, "escape-link"));
	assert_true(fx_exists(dst, "inner-link"));
	assert_false(fx_exists(dst, "ignored.log"));
	assert_false(fx_exists(dst, "build"));
	assert_true(fx_exists(dst, "odd/name with spaces\nand newline.txt"));

	/* One file changed: exactly one file transferred (manifest and push in one call). */
	fx_path(p, repo, "small/d42/f0042.txt");
	fx_sh("echo changed >> '%s'", p);
	t0 = ms_now();
	assert_int_equal(remote_sync_push_worktree(repo, &o, &res, &files, &e), 0);
	print_message("incremental (1 file): %zu transferred in %llu ms\n", res.transferred,
	              (unsigned long long)(ms_now() - t0));
	assert_true(files >= 10000);
	assert_int_equal(res.transferred, 1);
	assert_int_equal(res.deleted, 0);

	/* Rename, deletion of a file and of a directory; a remote build output stays. */
	fx_sh("cd '%s' && mv small/d01/f0001.txt small/d01/renamed.txt && rm small/d02/f0002.txt && "
	      "rm -rf small/d03 && mkdir -p '%s/build' && echo o > '%s/build/out.o'",
	      repo, dst, dst);
	assert_int_equal(remote_sync_manifest_worktree(repo, &m, &e), 0);
	assert_int_equal(remote_sync_push(repo, m, &o, &res, &e), 0);
	remote_sync_manifest_free(m);
	m = NULL;
	print_message("rename+delete: %zu transferred, %zu deleted, %zu dirs\n", res.transferred, res.deleted,
	              res.deleted_dirs);
	assert_int_equal(res.transferred, 1);
	assert_int_equal(res.deleted, 2 + 100); /* renamed, removed, d03/ */
	assert_int_equal(res.deleted_dirs, 1);
	assert_false(fx_exists(dst, "small/d01/f0001.txt"));
	assert_true(fx_exists(dst, "small/d01/renamed.txt"));
	assert_false(fx_exists(dst, "small/d02/f0002.txt"));
	assert_false(fx_exists(dst, "small/d03"));
	assert_true(fx_exists(dst, "build/out.o"));

	/* Mass deletion: most of the tree gone locally; the guard refuses. */
	fx_sh("cd '%s' && mkdir -p ../moved && mv small ../moved/", repo);
	assert_int_equal(remote_sync_manifest_worktree(repo, &m, &e), 0);
	assert_int_equal(remote_sync_push(repo, m, &o, &res, &e), TDXR_ETOOBIG);
	print_message("guard: %s\n", e.msg);
	assert_true(fx_exists(dst, "small/d04/f0004.txt"));
	remote_sync_manifest_free(m);
	m = NULL;
	fx_sh("cd '%s' && mv ../moved/small . && rmdir ../moved", repo);

	/* Artifacts back from the box, same route. */
	{
		const char *arts[] = { "small/d05/", "big/blob-007",
			               "odd/name with spaces\nand newline.txt" };
		const char *bad[] = { "small/../../../etc" };
		char art[PATH_MAX];

		fx_path(art, work, "artifacts");
		/* (newline: not allowed in an artifact path) */
		assert_int_equal(remote_sync_pull(&o, arts, 3, art, &e), TDXR_EINVAL);
		assert_int_equal(remote_sync_pull(&o, arts, 2, art, &e), 0);
		fx_sh("diff -r '%s/small/d05' '%s/small/d05' && cmp '%s/big/blob-007' '%s/big/blob-007'",
		      repo, art, repo, art);
		assert_false(fx_exists(art, "small/d06"));
		assert_int_equal(remote_sync_pull(&o, bad, 1, art, &e), TDXR_EINVAL);
	}

	/* CI: the commit at a SHA from a file:// remote, into a fresh remote dir. */
	fx_sh("git -C '%s' rev-parse HEAD~1 > '%s/sha'", repo, work);
	{
		FILE *s;

		fx_path(p, work, "sha");
		s = fopen(p, "r");
		assert_non_null(s);
		assert_non_null(fgets(sha, sizeof(sha), s));
		fclose(s);
	}
	snprintf(url, sizeof(url), "file://%s", repo);
	fx_path(cache, work, "cache");
	fx_path(job, work, "job");
	memset(&co, 0, sizeof(co));
	co.cache_dir = cache;
	co.url = url;
	co.sha = sha;
	co.workdir = job;
	t0 = ms_now();
	if (remote_sync_checkout(&co, &e) != 0)
		fail_msg("checkout: %s", e.msg);
	print_message("checkout of %s: %llu ms\n", sha, (unsigned long long)(ms_now() - t0));
	fx_sh("test \"$(git -C '%s' rev-parse HEAD)\" = %s", job, sha);
	fx_sh("test ! -e '%s/small/d00/f0000.txt.v2'", job); /* only in HEAD */
	assert_int_equal(remote_sync_manifest_commit(job, sha, &m, &e), 0);
	o.dest = dst2;
	t0 = ms_now();
	assert_int_equal(remote_sync_push(job, m, &o, &res, &e), 0);
	print_message("CI sync: %zu transferred in %llu ms\n", res.transferred,
	              (unsigned long long)(ms_now() - t0));
	remote_sync_manifest_free(m);
	fx_sh("diff -r --no-dereference -x .git -x abs-link -x escape-link '%s' '%s' >&2", job, dst2);
	assert_false(fx_exists(dst2, "abs-link"));
	assert_false(fx_exists(dst2, "escape-link"));
	assert_true(fx_exists(dst2, "inner-link"));
	if (ssh != NULL) {
		print_message("multiplexed session: %u reconnects\n", remote_ssh_reconnects(ssh));
		assert_int_equal(remote_ssh_reconnects(ssh), 0);
	}
	remote_ssh_free(ssh);
	remote_lease_free(lease);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(link_policy_keeps_inside_links_and_rejects_escapes),
		cmocka_unit_test(artifact_paths_reject_parent_absolute_and_control_characters),
		cmocka_unit_test(self_exe_names_this_binary_not_a_child),
		cmocka_unit_test_setup_teardown(manifest_of_a_commit_lists_blobs_and_safe_links_only,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    manifest_of_a_worktree_has_tracked_and_untracked_but_not_ignored_or_deleted, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(checkout_of_a_sha_from_a_local_remote_is_exact_and_detached,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    checkout_over_http_sends_the_token_only_through_the_credential_callback, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(
		    push_mirrors_the_tree_incrementally_with_renames_and_deletions, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(push_with_a_snapshot_sends_only_changes_in_one_rsync_run, fx_setup,
		                                fx_teardown),
		cmocka_unit_test_setup_teardown(push_with_a_snapshot_resends_a_file_changed_while_rsync_ran,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(push_keeps_remote_outputs_that_the_ignore_rules_match,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    push_streams_rsync_output_and_never_writes_through_a_box_symlink, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(push_refuses_a_mass_deletion_unless_forced, fx_setup,
		                                fx_teardown),
		cmocka_unit_test_setup_teardown(push_children_get_no_secret_in_argv_or_environment, fx_setup,
		                                fx_teardown),
		cmocka_unit_test_setup_teardown(push_stops_on_timeout_and_on_cancel, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(push_rejects_unsafe_remote_shell_words_and_destinations,
		                                fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(pull_copies_named_paths_back_and_refuses_escapes, fx_setup,
		                                fx_teardown),
		cmocka_unit_test(big_tree_over_sshd_full_incremental_rename_delete_guard_and_checkout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
