/*
 * sync.c - the source tree into the box: libgit2 manifests, a per-URL fetch cache
 * with a detached checkout, and the rsync driver (list, plan, guard, delete,
 * transfer; incremental pushes from a snapshot; copy-back of artifacts). Given a
 * session (remote_sync_opts.ssh), a call serves it to its rsync runs' remote shell
 * through a multiplexer (mux.c) on a socket in the call's private temp directory.
 *
 * Invariants: a manifest holds only clean relative paths (no "", ".", ".." or
 * ".git" component), sorted and unique, regular files and safe symlinks only;
 * children run in their own process group with an allow-listed environment and
 * stdin from /dev/null; every child is reaped on every path (timeout and cancel
 * send SIGTERM to the group, then SIGKILL). Trust boundary: rsync output and the
 * remote listing come from the box and are parsed as untrusted text with a cap;
 * the token only reaches libgit2's credential callback.
 */
#include "agent/remote/sync.h"

#include "agent/remote/remote.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <openssl/sha.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#define SYNC_MOD "sync"
#define SYNC_LIST_MAX (128u * 1024u * 1024u) /* remote listing (rsync output) */
#define SYNC_MANIFEST_MAX (256u * 1024u * 1024u)
#define SYNC_LINE_MAX 8192u
#define SYNC_LINK_MAX 4096u
#define SYNC_KILL_GRACE_MS 2000u

extern char **environ;

/* ------------------------------------------------------------------ strings */

struct sync_strv {
	char **v;
	size_t n, cap;
};

static void sync_strv_dispose(struct sync_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static int sync_strv_addn(struct sync_strv *s, const char *p, size_t len, struct tdxr_err *err)
{
	char *c;

	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, ncap * sizeof(*nv));

		if (!nv)
			return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
		s->v = nv;
		s->cap = ncap;
	}
	c = strndup(p, len);
	if (!c)
		return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
	s->v[s->n++] = c;
	return 0;
}

static int sync_strv_add(struct sync_strv *s, const char *p, struct tdxr_err *err)
{
	return sync_strv_addn(s, p, strlen(p), err);
}

static int sync_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sync_strv_sort_uniq(struct sync_strv *s)
{
	size_t w = 0;

	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), sync_strcmp);
	for (size_t i = 0; i < s->n; i++) {
		if (w > 0 && strcmp(s->v[w - 1], s->v[i]) == 0) {
			free(s->v[i]);
			continue;
		}
		s->v[w++] = s->v[i];
	}
	s->n = w;
}

static bool sync_strv_has(const struct sync_strv *s, const char *p)
{
	return s->n && bsearch(&p, s->v, s->n, sizeof(*s->v), sync_strcmp) != NULL;
}

/* Adds every proper parent directory of path ("a/b/c" -> "a", "a/b"). */
static int sync_strv_add_parents(struct sync_strv *s, const char *path, struct tdxr_err *err)
{
	for (const char *q = strchr(path, '/'); q; q = strchr(q + 1, '/')) {
		int rc = sync_strv_addn(s, path, (size_t)(q - path), err);

		if (rc)
			return rc;
	}
	return 0;
}

/* A clean relative path: no empty, ".", ".." or ".git" component, no leading '/'. */
static bool sync_path_is_clean(const char *p)
{
	const char *c = p;

	if (!*p)
		return false;
	for (;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.') ||
		    (n == 4 && strncasecmp(c, ".git", 4) == 0))
			return false;
		if (!e)
			return true;
		c = e + 1;
	}
}

static bool sync_path_has_git(const char *p)
{
	for (const char *c = p; c; c = strchr(c, '/'), c = c ? c + 1 : NULL)
		if (strncasecmp(c, ".git", 4) == 0 && (c[4] == '/' || c[4] == '\0'))
			return true;
	return false;
}

static int sync_join(char *out, size_t cap, const char *a, const char *b, struct tdxr_err *err)
{
	int n = snprintf(out, cap, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "sync: path too long: %s/%s", a, b);
	return 0;
}

static int sync_git_err(struct tdxr_err *err, int code, const char *step)
{
	const git_error *e = git_error_last();

	return tdxr_err_set(err, code, "%s: %s", step, e && e->message ? e->message : "libgit2 error");
}

/* ------------------------------------------------------------------ policy */

bool remote_sync_link_is_safe(const char *path, const char *target)
{
	long depth = 0, up = 0;
	bool named = false;
	const char *c;

	if (!path || !target || !*target || target[0] == '/')
		return false;
	for (c = path; (c = strchr(c, '/')) != NULL; c++)
		depth++;
	c = target;
	for (;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);

		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (named) /* "x/.." could climb through a link named x */
				return false;
			up++;
		} else if (n > 0 && !(n == 1 && c[0] == '.')) {
			named = true;
		}
		if (!e)
			break;
		c = e + 1;
	}
	return up <= depth;
}

int remote_sync_path_check(const char *path, struct tdxr_err *err)
{
	size_t len;
	char *tmp;
	bool ok;

	if (!path || !*path)
		return tdxr_err_set(err, TDXR_EINVAL, "artifact path is empty");
	for (const char *c = path; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return tdxr_err_set(err, TDXR_EINVAL, "artifact path has a control character");
	if (path[0] == '/')
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "artifact path %s is absolute; give it relative to the job directory",
		                    path);
	len = strlen(path);
	tmp = strndup(path, len);
	if (!tmp)
		return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
	if (len > 1 && tmp[len - 1] == '/')
		tmp[len - 1] = '\0';
	ok = sync_path_is_clean(tmp);
	free(tmp);
	if (!ok)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "artifact path %s has an empty, '.', '..' or '.git' component", path);
	return 0;
}

/* ------------------------------------------------------------------ manifest */

/* Size and mtime of a path as the working-tree manifest saw it (lstat). */
struct sync_fstat {
	long long size, sec;
	long nsec;
};

struct remote_sync_manifest {
	struct sync_strv paths;
	size_t skipped;
	struct sync_fstat *fst; /* worktree manifests: fst[i] for paths.v[i]; else NULL */
	size_t fst_cap;
};

size_t remote_sync_manifest_count(const struct remote_sync_manifest *m)
{
	return m ? m->paths.n : 0;
}

const char *remote_sync_manifest_path(const struct remote_sync_manifest *m, size_t i)
{
	return m && i < m->paths.n ? m->paths.v[i] : NULL;
}

size_t remote_sync_manifest_skipped(const struct remote_sync_manifest *m)
{
	return m ? m->skipped : 0;
}

bool remote_sync_manifest_has(const struct remote_sync_manifest *m, const char *path)
{
	return m && sync_strv_has(&m->paths, path);
}

void remote_sync_manifest_free(struct remote_sync_manifest *m)
{
	if (!m)
		return;
	sync_strv_dispose(&m->paths);
	free(m->fst);
	free(m);
}

/* Records st for the path just added as paths.v[n-1]. */
static int sync_manifest_fst_add(struct remote_sync_manifest *m, const struct stat *st, struct tdxr_err *err)
{
	if (m->paths.n > m->fst_cap) {
		size_t ncap = m->paths.cap > m->paths.n ? m->paths.cap : m->paths.n;
		struct sync_fstat *nf = realloc(m->fst, ncap * sizeof(*nf));

		if (!nf)
			return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
		m->fst = nf;
		m->fst_cap = ncap;
	}
	m->fst[m->paths.n - 1] = (struct sync_fstat){ (long long)st->st_size, (long long)st->st_mtim.tv_sec,
		                                      (long)st->st_mtim.tv_nsec };
	return 0;
}

struct sync_pair {
	char *p;
	struct sync_fstat f;
};

static int sync_pair_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sync_pair *)a)->p, ((const struct sync_pair *)b)->p);
}

/* sync_strv_sort_uniq for a manifest whose paths carry stats. */
static int sync_manifest_sort(struct remote_sync_manifest *m, struct tdxr_err *err)
{
	struct sync_pair *pv;
	size_t w = 0;

	if (!m->fst) {
		sync_strv_sort_uniq(&m->paths);
		return 0;
	}
	pv = malloc((m->paths.n ? m->paths.n : 1) * sizeof(*pv));
	if (!pv)
		return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
	for (size_t i = 0; i < m->paths.n; i++)
		pv[i] = (struct sync_pair){ m->paths.v[i], m->fst[i] };
	if (m->paths.n > 1)
		qsort(pv, m->paths.n, sizeof(*pv), sync_pair_cmp);
	for (size_t i = 0; i < m->paths.n; i++) {
		if (w > 0 && strcmp(pv[w - 1].p, pv[i].p) == 0) {
			free(pv[i].p);
			continue;
		}
		pv[w++] = pv[i];
	}
	for (size_t i = 0; i < w; i++) {
		m->paths.v[i] = pv[i].p;
		m->fst[i] = pv[i].f;
	}
	m->paths.n = w;
	free(pv);
	return 0;
}

int remote_sync_manifest_write(const struct remote_sync_manifest *m, const char *file, struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc = 0;

	tdxr_buf_init(&b, SYNC_MANIFEST_MAX);
	for (size_t i = 0; i < m->paths.n && !rc; i++)
		rc = tdxr_buf_append(&b, m->paths.v[i], strlen(m->paths.v[i]) + 1, err);
	if (!rc)
		rc = tdxr_file_write_atomic(file, b.data ? (const void *)b.data : "", b.len, 0600, err);
	tdxr_buf_dispose(&b);
	return rc;
}

static void sync_manifest_skip(struct remote_sync_manifest *m, const char *path, const char *why)
{
	m->skipped++;
	TDXR_WARN(SYNC_MOD, "not syncing %s: %s", path, why);
}

static int sync_manifest_link(struct remote_sync_manifest *m, const char *path, const char *target,
                              struct tdxr_err *err)
{
	if (!remote_sync_link_is_safe(path, target)) {
		sync_manifest_skip(m, path, "symlink target is absolute or leaves the tree");
		return 0;
	}
	return sync_strv_add(&m->paths, path, err);
}

struct sync_walk {
	git_repository *repo;
	struct remote_sync_manifest *m;
	struct tdxr_err *err;
	int rc;
};

static int sync_walk_cb(const char *root, const git_tree_entry *e, void *payload)
{
	struct sync_walk *w = payload;
	git_filemode_t mode = git_tree_entry_filemode(e);
	git_blob *blob = NULL;
	char path[PATH_MAX], target[SYNC_LINK_MAX + 1];
	int n;

	if (mode == GIT_FILEMODE_TREE)
		return 0;
	n = snprintf(path, sizeof(path), "%s%s", root, git_tree_entry_name(e));
	if (n < 0 || (size_t)n >= sizeof(path)) {
		w->rc = tdxr_err_set(w->err, TDXR_EINVAL, "sync: path too long in tree: %s", root);
		return -1;
	}
	if (!sync_path_is_clean(path)) {
		sync_manifest_skip(w->m, path, "unsafe path in tree");
		return 0;
	}
	switch (mode) {
	case GIT_FILEMODE_BLOB:
	case GIT_FILEMODE_BLOB_EXECUTABLE: w->rc = sync_strv_add(&w->m->paths, path, w->err); break;
	case GIT_FILEMODE_LINK: {
		git_object_size_t sz;

		if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(e)) != 0) {
			w->rc = sync_git_err(w->err, TDXR_EIO, "sync: reading symlink blob");
			break;
		}
		sz = git_blob_rawsize(blob);
		if (sz > SYNC_LINK_MAX || memchr(git_blob_rawcontent(blob), 0, (size_t)sz)) {
			sync_manifest_skip(w->m, path, "symlink target too long or has NUL");
			break;
		}
		memcpy(target, git_blob_rawcontent(blob), (size_t)sz);
		target[sz] = '\0';
		w->rc = sync_manifest_link(w->m, path, target, w->err);
		break;
	}
	default: sync_manifest_skip(w->m, path, "submodule (not synced)"); break;
	}
	git_blob_free(blob);
	return w->rc ? -1 : 0;
}

static int sync_parse_oid(git_oid *oid, const char *sha, struct tdxr_err *err)
{
	if (!sha || strlen(sha) != GIT_OID_HEXSZ || git_oid_fromstrn(oid, sha, GIT_OID_HEXSZ) != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "commit must be %d hex digits", GIT_OID_HEXSZ);
	return 0;
}

int remote_sync_manifest_commit(const char *repo_dir, const char *sha, struct remote_sync_manifest **out,
                                struct tdxr_err *err)
{
	struct remote_sync_manifest *m = NULL;
	git_repository *repo = NULL;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	struct sync_walk w = { 0 };
	git_oid oid;
	int rc;

	*out = NULL;
	git_libgit2_init();
	rc = sync_parse_oid(&oid, sha, err);
	if (rc)
		goto out;
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
		goto out;
	}
	if (git_repository_open(&repo, repo_dir) != 0) {
		rc = sync_git_err(err, TDXR_ENOTFOUND, "sync: opening repository");
		goto out;
	}
	if (git_commit_lookup(&commit, repo, &oid) != 0) {
		rc = sync_git_err(err, TDXR_ENOTFOUND, "sync: looking up commit");
		goto out;
	}
	if (git_commit_tree(&tree, commit) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: reading commit tree");
		goto out;
	}
	w.repo = repo;
	w.m = m;
	w.err = err;
	if (git_tree_walk(tree, GIT_TREEWALK_PRE, sync_walk_cb, &w) != 0) {
		rc = w.rc ? w.rc : sync_git_err(err, TDXR_EIO, "sync: walking tree");
		goto out;
	}
	sync_strv_sort_uniq(&m->paths);
	*out = m;
	m = NULL;
out:
	remote_sync_manifest_free(m);
	git_tree_free(tree);
	git_commit_free(commit);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

/* Every parent of path below root must be a real directory (not a symlink), so
 * rsync's open of root/path cannot be redirected out of the tree. */
static bool sync_parents_are_dirs(int rfd, const char *path, char *checked, size_t cap)
{
	const char *slash = strrchr(path, '/');
	size_t plen = slash ? (size_t)(slash - path) : 0;
	char buf[PATH_MAX];
	struct stat st;

	if (plen == 0)
		return true;
	if (plen < cap && strncmp(checked, path, plen) == 0 && checked[plen] == '\0')
		return true;
	for (const char *q = strchr(path, '/'); q && q <= slash; q = strchr(q + 1, '/')) {
		int n = snprintf(buf, sizeof(buf), "%.*s", (int)(q - path), path);

		if (n < 0 || (size_t)n >= sizeof(buf) || fstatat(rfd, buf, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISDIR(st.st_mode))
			return false;
	}
	if (plen < cap) {
		memcpy(checked, path, plen);
		checked[plen] = '\0';
	}
	return true;
}

/* rfd: the working tree's root directory (paths are looked up relative to it). */
static int sync_manifest_add_disk(struct remote_sync_manifest *m, int rfd, const char *path, char *checked,
                                  size_t cap, struct tdxr_err *err)
{
	char target[SYNC_LINK_MAX + 1];
	struct stat st;
	ssize_t n;

	if (!sync_path_is_clean(path)) {
		sync_manifest_skip(m, path, "unsafe path");
		return 0;
	}
	if (fstatat(rfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0; /* deleted in the working tree */
	if (!sync_parents_are_dirs(rfd, path, checked, cap)) {
		sync_manifest_skip(m, path, "a parent directory is a symlink");
		return 0;
	}
	if (S_ISREG(st.st_mode)) {
		size_t before = m->paths.n;
		int rc = sync_strv_add(&m->paths, path, err);

		return rc || m->paths.n == before ? rc : sync_manifest_fst_add(m, &st, err);
	}
	if (S_ISLNK(st.st_mode)) {
		size_t before = m->paths.n;
		int rc;

		n = readlinkat(rfd, path, target, sizeof(target));
		if (n < 0 || (size_t)n >= sizeof(target)) {
			sync_manifest_skip(m, path, "unreadable symlink");
			return 0;
		}
		target[n] = '\0';
		rc = sync_manifest_link(m, path, target, err);
		return rc || m->paths.n == before ? rc : sync_manifest_fst_add(m, &st, err);
	}
	if (S_ISDIR(st.st_mode))
		sync_manifest_skip(m, path, "submodule or nested repository (not synced)");
	else
		sync_manifest_skip(m, path, "not a regular file or symlink");
	return 0;
}

int remote_sync_manifest_worktree(const char *repo_dir, struct remote_sync_manifest **out,
                                  struct tdxr_err *err)
{
	git_status_options so;
	struct remote_sync_manifest *m = NULL;
	git_repository *repo = NULL;
	git_status_list *st = NULL;
	git_index *idx = NULL;
	char checked[PATH_MAX] = "";
	const char *root;
	int rc = 0, rfd = -1;

	*out = NULL;
	git_libgit2_init();
	git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
		goto out;
	}
	if (git_repository_open(&repo, repo_dir) != 0) {
		rc = sync_git_err(err, TDXR_ENOTFOUND, "sync: opening repository");
		goto out;
	}
	root = git_repository_workdir(repo);
	if (!root) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: %s is a bare repository; nothing to sync",
		                  repo_dir);
		goto out;
	}
	rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND, "sync: %s: %s", root, strerror(errno));
		goto out;
	}
	if (git_repository_index(&idx, repo) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: reading index");
		goto out;
	}
	for (size_t i = 0, n = git_index_entrycount(idx); i < n && !rc; i++) {
		const git_index_entry *e = git_index_get_byindex(idx, i);

		if (!e)
			continue;
		if ((e->mode & 0170000) == 0160000) {
			sync_manifest_skip(m, e->path, "submodule (not synced)");
			continue;
		}
		rc = sync_manifest_add_disk(m, rfd, e->path, checked, sizeof(checked), err);
	}
	if (rc)
		goto out;
	so.show = GIT_STATUS_SHOW_WORKDIR_ONLY;
	so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
	           GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&st, repo, &so) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: reading status");
		goto out;
	}
	for (size_t i = 0, n = git_status_list_entrycount(st); i < n && !rc; i++) {
		const git_status_entry *e = git_status_byindex(st, i);
		const char *p;
		size_t len;

		if (!e || !(e->status & GIT_STATUS_WT_NEW) || !e->index_to_workdir)
			continue;
		p = e->index_to_workdir->new_file.path;
		len = strlen(p);
		if (len > 0 && p[len - 1] == '/') {
			sync_manifest_skip(m, p, "nested repository (not synced)");
			continue;
		}
		rc = sync_manifest_add_disk(m, rfd, p, checked, sizeof(checked), err);
	}
	if (!rc)
		rc = sync_manifest_sort(m, err);
	if (rc)
		goto out;
	*out = m;
	m = NULL;
out:
	remote_sync_manifest_free(m);
	if (rfd >= 0)
		close(rfd);
	git_status_list_free(st);
	git_index_free(idx);
	git_repository_free(repo);
	git_libgit2_shutdown();
	return rc;
}

/* ------------------------------------------------------------------ checkout */

struct sync_cred {
	const char *user;
	const struct tdxr_secret *token;
	const char *origin; /* the URL the caller gave */
	int calls;
	bool refused;
	const char *why; /* set when the token was withheld */
};

/* The authority of a scheme://authority/... URL (after any userinfo); false if none. */
static bool sync_url_host(const char *url, const char **host, size_t *len)
{
	const char *a = strstr(url, "://"), *end;

	if (!a)
		return false;
	a += 3;
	end = a + strcspn(a, "/?#");
	*host = a;
	*len = (size_t)(end - a);
	return true;
}

static bool sync_host_is_loopback(const char *h, size_t n)
{
	static const char *const lo[] = { "127.0.0.1", "[::1]", "localhost" };

	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++) {
		size_t k = strlen(lo[i]);

		if (n >= k && strncasecmp(h, lo[i], k) == 0 && (n == k || h[k] == ':'))
			return true;
	}
	return false;
}

static int sync_cred_cb(git_credential **out, const char *url, const char *user_from_url,
                        unsigned int allowed, void *payload)
{
	struct sync_cred *c = payload;
	const char *h1, *h2;
	size_t n1, n2;

	(void)user_from_url;
	c->calls++;
	/* One attempt: a second call means the server refused the token. */
	if (!c->token || !(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) || c->calls > 1) {
		c->refused = true;
		return GIT_EUSER;
	}
	/* The token goes only to the host the caller named (not to a redirect target),
	 * and never in clear text except to loopback (tests, local mirrors). */
	if (!url || !sync_url_host(url, &h1, &n1) || !sync_url_host(c->origin, &h2, &n2) || n1 != n2 ||
	    strncasecmp(h1, h2, n1) != 0) {
		c->why = "the server asking for it is not the repository's host";
		return GIT_EUSER;
	}
	if (strncasecmp(url, "https://", 8) != 0 && !sync_host_is_loopback(h1, n1)) {
		c->why = "it would travel unencrypted (use https)";
		return GIT_EUSER;
	}
	return git_credential_userpass_plaintext_new(out, c->user ? c->user : "x-access-token",
	                                             tdxr_secret_str(c->token));
}

static int sync_url_check(const char *url, struct tdxr_err *err)
{
	const char *a, *end;

	if (!url || !*url || url[0] == '-')
		return tdxr_err_set(err, TDXR_EINVAL, "sync: repository URL is empty or starts with '-'");
	a = strstr(url, "://");
	if (!a)
		return 0;
	a += 3;
	end = strchr(a, '/');
	if (!end)
		end = a + strlen(a);
	if (memchr(a, '@', (size_t)(end - a)))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "sync: repository URL carries credentials; pass the token out of band");
	return 0;
}

static int sync_mkdir(const char *path, struct tdxr_err *err)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return tdxr_err_set(err, TDXR_EIO, "sync: cannot create %s: %s", path, strerror(errno));
	return 0;
}

static bool sync_has_commit(git_repository *repo, const git_oid *oid)
{
	git_commit *c = NULL;
	bool ok = git_commit_lookup(&c, repo, oid) == 0;

	git_commit_free(c);
	return ok;
}

static int sync_fetch(git_repository *bare, const struct remote_sync_checkout_opts *o, const char *spec,
                      struct tdxr_err *err)
{
	git_fetch_options fo;
	git_remote_create_options ro;
	static char *def_specs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
	char *one[1];
	git_strarray specs;
	struct sync_cred cred = { 0 };
	git_remote *remote = NULL;
	int rc = 0;

	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	cred.user = o->username;
	cred.token = o->token;
	cred.origin = o->url;
	fo.callbacks.credentials = sync_cred_cb;
	fo.callbacks.payload = &cred;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	if (spec) {
		one[0] = (char *)(uintptr_t)spec;
		specs.strings = one;
		specs.count = 1;
	} else {
		specs.strings = def_specs;
		specs.count = 2;
	}
	/* No url.*.insteadOf rewriting from the agent's git config: the job's URL is
	 * fetched as given (this also avoids a libgit2 1.5 pcre2 leak in that path). */
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.repository = bare;
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, o->url, &ro) != 0) {
		rc = sync_git_err(err, TDXR_EINVAL, "sync: repository URL");
		goto out;
	}
	if (git_remote_fetch(remote, &specs, &fo, NULL) != 0) {
		if (cred.why)
			rc = tdxr_err_set(err, TDXR_EAUTH, "sync: fetch: token withheld: %s", cred.why);
		else if (cred.refused && !o->token)
			rc = tdxr_err_set(err, TDXR_EAUTH,
			                  "sync: fetch: the server wants credentials and no token was given");
		else if (cred.refused)
			rc =
			    tdxr_err_set(err, TDXR_EAUTH,
			                 "sync: fetch: the server refused the credentials (check the token)");
		else
			rc = sync_git_err(err, TDXR_EIO, "sync: fetch");
		goto out;
	}
out:
	git_remote_free(remote);
	return rc;
}

int remote_sync_checkout(const struct remote_sync_checkout_opts *o, struct tdxr_err *err)
{
	git_checkout_options co;
	unsigned char md[SHA256_DIGEST_LENGTH];
	char key[2 * SHA256_DIGEST_LENGTH + 1], path[PATH_MAX], alt[PATH_MAX + 2];
	char *objs = NULL;
	git_repository *bare = NULL, *wr = NULL;
	git_object *obj = NULL;
	struct stat st;
	git_oid oid;
	int lockfd = -1, rc, n;

	git_libgit2_init();
	git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
	rc = sync_parse_oid(&oid, o->sha, err);
	if (!rc)
		rc = sync_url_check(o->url, err);
	if (!rc && (!o->cache_dir || !o->workdir))
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: checkout needs cache_dir and workdir");
	if (!rc)
		rc = sync_mkdir(o->cache_dir, err);
	if (rc)
		goto out;
	SHA256((const unsigned char *)o->url, strlen(o->url), md);
	tdxr_hex_encode(md, sizeof(md), key);
	key[2 * SHA256_DIGEST_LENGTH] = '\0';

	n = snprintf(path, sizeof(path), "%s/%.32s.lock", o->cache_dir, key);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: cache path too long");
		goto out;
	}
	lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "sync: cannot lock %s: %s", path, strerror(errno));
		goto out;
	}
	n = snprintf(path, sizeof(path), "%s/%.32s.git", o->cache_dir, key);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: cache path too long");
		goto out;
	}
	if (stat(path, &st) == 0 ? git_repository_open_bare(&bare, path) != 0
	                         : git_repository_init(&bare, path, 1) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: opening the cache repository");
		goto out;
	}
	if (!sync_has_commit(bare, &oid) && !o->fetch_ref) {
		/* The commit itself first (its history only, and it works for commits no
		 * branch points at); servers that refuse a SHA in "want" get the fallback. */
		char spec[2 * GIT_OID_HEXSZ + 32];
		struct tdxr_err e2;

		n = snprintf(spec, sizeof(spec), "+%s:refs/tdxr/%s", o->sha, o->sha);
		assert(n > 0 && (size_t)n < sizeof(spec)); /* o->sha is 40 hex digits */
		TDXR_INFO(
		    SYNC_MOD,
		    "fetching commit %s into the cache (full history: libgit2 1.5 has no shallow fetch)",
		    o->sha);
		rc = sync_fetch(bare, o, spec, &e2);
		if (rc == TDXR_EAUTH) {
			if (err)
				*err = e2;
			goto out;
		}
		if (rc)
			TDXR_INFO(SYNC_MOD, "fetch by commit id refused (%s); fetching all branches and tags",
			          e2.msg);
		rc = 0;
	}
	if (!sync_has_commit(bare, &oid)) {
		TDXR_INFO(SYNC_MOD,
		          "fetching %s into the cache (full fetch: libgit2 1.5 has no shallow fetch)",
		          o->fetch_ref ? o->fetch_ref : "all branches and tags");
		rc = sync_fetch(bare, o, o->fetch_ref, err);
		if (rc)
			goto out;
		if (!sync_has_commit(bare, &oid)) {
			rc = tdxr_err_set(
			    err, TDXR_ENOTFOUND,
			    "sync: commit %s is not reachable from %s; pass the ref that contains it", o->sha,
			    o->fetch_ref ? o->fetch_ref : "any branch or tag");
			goto out;
		}
	}
	objs = realpath(git_repository_path(bare), NULL);
	if (!objs) {
		rc = tdxr_err_set(err, TDXR_EIO, "sync: cache path: %s", strerror(errno));
		goto out;
	}

	/* The job directory: its own repository sharing the cache's objects. */
	rc = sync_join(path, sizeof(path), o->workdir, ".git", err);
	if (rc)
		goto out;
	if (stat(path, &st) != 0) {
		if (git_repository_init(&wr, o->workdir, 0) != 0) {
			rc = sync_git_err(err, TDXR_EIO, "sync: creating the job repository");
			goto out;
		}
		git_repository_free(wr);
		wr = NULL;
	}
	rc = sync_join(path, sizeof(path), o->workdir, ".git/objects/info", err);
	if (!rc)
		rc = sync_mkdir(path, err);
	if (!rc)
		rc = sync_join(path, sizeof(path), o->workdir, ".git/objects/info/alternates", err);
	if (rc)
		goto out;
	n = snprintf(alt, sizeof(alt), "%s%sobjects\n", objs, objs[strlen(objs) - 1] == '/' ? "" : "/");
	if (n < 0 || (size_t)n >= sizeof(alt)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: cache path too long");
		goto out;
	}
	rc = tdxr_file_write_atomic(path, alt, (size_t)n, 0644, err);
	if (rc)
		goto out;
	if (git_repository_open(&wr, o->workdir) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: opening the job repository");
		goto out;
	}
	if (git_object_lookup(&obj, wr, &oid, GIT_OBJECT_COMMIT) != 0) {
		rc = sync_git_err(err, TDXR_ENOTFOUND, "sync: commit in the job repository");
		goto out;
	}
	co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED;
	if (git_checkout_tree(wr, obj, &co) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: checkout");
		goto out;
	}
	if (git_repository_set_head_detached(wr, &oid) != 0) {
		rc = sync_git_err(err, TDXR_EIO, "sync: detaching HEAD");
		goto out;
	}
out:
	free(objs);
	git_object_free(obj);
	git_repository_free(wr);
	git_repository_free(bare);
	if (lockfd >= 0)
		close(lockfd); /* releases the flock */
	git_libgit2_shutdown();
	return rc;
}

/* ------------------------------------------------------------------ child process */

static uint64_t sync_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Names a child may inherit; nothing else (no tokens, no proxies, no SSH_AUTH_SOCK).
 * LC_ALL is not inherited: ours (C) makes rsync escape every non-ASCII byte as
 * \#ooo, which the listing parser decodes exactly. */
static const char *const sync_env_allow[] = { "PATH",     "HOME", "USER",   "LOGNAME", "LANG",
	                                      "LC_CTYPE", "TZ",   "TMPDIR", NULL };

static int sync_env_build(const struct remote_sync_opts *o, const char *mux, struct sync_strv *env,
                          struct tdxr_err *err)
{
	int rc = 0;

	for (char **e = environ; e && *e && !rc; e++) {
		for (const char *const *a = sync_env_allow; *a; a++) {
			size_t n = strlen(*a);

			if (strncmp(*e, *a, n) == 0 && (*e)[n] == '=') {
				rc = sync_strv_add(env, *e, err);
				break;
			}
		}
	}
	for (const char *const *x = o->env_extra; x && *x && !rc; x++) {
		const char *eq = strchr(*x, '=');

		if (!eq || eq == *x || strncmp(*x, "LC_ALL=", 7) == 0)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "sync: env_extra entry must be NAME=value (not LC_ALL)");
		rc = sync_strv_add(env, *x, err);
	}
	if (!rc)
		rc = sync_strv_add(env, "LC_ALL=C", err); /* stable, parseable rsync output */
	if (!rc && mux) { /* our multiplexer's socket, for `tdx-runner rsh` (not a secret) */
		struct tdxr_buf b;

		tdxr_buf_init(&b, PATH_MAX + 16);
		rc = tdxr_buf_appendf(&b, err, "TDXR_MUX=%s", mux);
		if (!rc)
			rc = sync_strv_add(env, (const char *)b.data, err);
		tdxr_buf_dispose(&b);
	}
	return rc;
}

struct sync_run {
	struct tdxr_buf *capture; /* stdout goes here instead of to lines */
	size_t transferred;
	char last_err[200];
};

static void sync_line(const struct remote_sync_opts *o, struct sync_run *r, enum remote_sync_stream s,
                      char *line, size_t len)
{
	static const char stat_key[] = "Number of regular files transferred: ";

	line[len] = '\0';
	if (s == REMOTE_SYNC_STDERR && len > 0) {
		size_t k = 0;

		for (size_t i = 0; i < len && k + 1 < sizeof(r->last_err); i++)
			r->last_err[k++] = (line[i] >= 0x20 && line[i] < 0x7f) ? line[i] : '?';
		r->last_err[k] = '\0';
	}
	if (s == REMOTE_SYNC_STDOUT && strncmp(line, stat_key, sizeof(stat_key) - 1) == 0) {
		char num[32];
		size_t k = 0;
		uint64_t v;

		for (const char *c = line + sizeof(stat_key) - 1; *c && k + 1 < sizeof(num); c++)
			if (*c != ',')
				num[k++] = *c;
		num[k] = '\0';
		if (tdxr_parse_u64(num, SIZE_MAX, &v, NULL) == 0)
			r->transferred = (size_t)v;
	}
	if (o->on_line)
		o->on_line(o->ctx, s, line, len);
}

struct sync_pipe {
	int fd;
	enum remote_sync_stream s;
	char line[SYNC_LINE_MAX + 1];
	size_t len;
};

static int sync_pipe_read(const struct remote_sync_opts *o, struct sync_run *r, struct sync_pipe *p,
                          struct tdxr_err *err)
{
	char buf[16384];
	ssize_t n = read(p->fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		if (p->len)
			sync_line(o, r, p->s, p->line, p->len);
		p->len = 0;
		close(p->fd);
		p->fd = -1;
		return 0;
	}
	if (p->s == REMOTE_SYNC_STDOUT && r->capture)
		return tdxr_buf_append(r->capture, buf, (size_t)n, err);
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || p->len == SYNC_LINE_MAX) {
			sync_line(o, r, p->s, p->line, p->len);
			p->len = 0;
			if (buf[i] == '\n')
				continue;
		}
		p->line[p->len++] = buf[i];
	}
	return 0;
}

/* True once pid has exited; the zombie is left in place (WNOWAIT) so the process
 * group id cannot be reused before the group is signalled. */
static bool sync_child_exited(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

static void sync_child_reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

static void sync_child_stop(pid_t pid)
{
	uint64_t until = sync_now_ms() + SYNC_KILL_GRACE_MS;
	int status;

	kill(-pid, SIGTERM);
	while (sync_now_ms() < until && !sync_child_exited(pid))
		usleep(20000);
	kill(-pid, SIGKILL); /* the leader if still there, and the group's stragglers */
	sync_child_reap(pid, &status);
}

/* Runs argv (argv[0] searched in PATH) to completion, streaming its output. */
static int sync_exec(const struct remote_sync_opts *o, char *const *argv, const char *mux, struct sync_run *r,
                     struct tdxr_err *err)
{
	struct sync_strv env = { 0 };
	struct sync_pipe p[2];
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, status = 0, rc;
	uint64_t deadline = o->timeout_ms ? sync_now_ms() + o->timeout_ms : 0;
	pid_t pid = -1;

	rc = sync_env_build(o, mux, &env, err);
	if (!rc)
		rc = sync_strv_addn(&env, "", 0, err);
	if (!rc) {
		free(env.v[env.n - 1]); /* NULL terminator for execvpe; dispose stops at n */
		env.v[env.n - 1] = NULL;
		env.n--;
	}
	if (rc)
		goto out;
	if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "sync: pipe: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "sync: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(127);
		closefrom(3);
		execvpe(argv[0], argv, env.v);
		_exit(127);
	}
	setpgid(pid, pid);
	close(outp[1]);
	close(errp[1]);
	outp[1] = errp[1] = -1;
	p[0].fd = outp[0];
	p[0].s = REMOTE_SYNC_STDOUT;
	p[0].len = 0;
	p[1].fd = errp[0];
	p[1].s = REMOTE_SYNC_STDERR;
	p[1].len = 0;
	outp[0] = errp[0] = -1;
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		struct pollfd pfd[2];
		nfds_t k = 0;
		int pr;

		if (o->cancel && *o->cancel) {
			rc = tdxr_err_set(err, TDXR_ECANCELED, "sync: rsync cancelled");
			break;
		}
		if (deadline && sync_now_ms() >= deadline) {
			rc = tdxr_err_set(err, TDXR_ETIMEOUT, "sync: rsync did not finish within %llu ms",
			                  (unsigned long long)o->timeout_ms);
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd >= 0) {
				pfd[k].fd = p[i].fd;
				pfd[k].events = POLLIN;
				pfd[k].revents = 0;
				k++;
			}
		}
		pr = poll(pfd, k, 100);
		if (pr < 0 && errno != EINTR) {
			rc = tdxr_err_set(err, TDXR_EIO, "sync: poll: %s", strerror(errno));
			break;
		}
		for (nfds_t j = 0; pr > 0 && j < k && !rc; j++) {
			if (!pfd[j].revents)
				continue;
			for (int i = 0; i < 2; i++)
				if (p[i].fd == pfd[j].fd)
					rc = sync_pipe_read(o, r, &p[i], err);
		}
		if (rc)
			break;
	}
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	if (rc) {
		sync_child_stop(pid);
		goto out;
	}
	for (;;) {
		if (sync_child_exited(pid)) {
			kill(-pid, SIGKILL); /* stragglers in the group; the leader is a zombie */
			sync_child_reap(pid, &status);
			break;
		}
		if ((o->cancel && *o->cancel) || (deadline && sync_now_ms() >= deadline)) {
			rc = (o->cancel && *o->cancel)
			         ? tdxr_err_set(err, TDXR_ECANCELED, "sync: rsync cancelled")
			         : tdxr_err_set(err, TDXR_ETIMEOUT, "sync: rsync did not exit in time");
			sync_child_stop(pid);
			goto out;
		}
		usleep(10000);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else if (WIFEXITED(status))
		rc = tdxr_err_set(err, TDXR_EIO, "sync: rsync exited with %d: %s", WEXITSTATUS(status),
		                  r->last_err[0] ? r->last_err : "(no message)");
	else
		rc = tdxr_err_set(err, TDXR_EIO, "sync: rsync killed by signal %d",
		                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
out:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	sync_strv_dispose(&env);
	return rc;
}

/* ------------------------------------------------------------------ rsync driver */

static bool sync_word_ok(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == '\'' || *s == '"' || *s == '\\' || *s == 0x7f)
			return false;
	return true;
}

static bool sync_dest_ok(const char *s)
{
	if (!s || !*s || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("._/+@=-~", *s)))
			return false;
	return true;
}

struct sync_cmd {
	struct sync_strv argv;
	char *e_arg;     /* "-e" value */
	char *remote;    /* HOST:DEST/ */
	const char *mux; /* multiplexer socket for the remote shell (TDXR_MUX), or NULL */
};

static void sync_cmd_dispose(struct sync_cmd *c)
{
	sync_strv_dispose(&c->argv);
	free(c->e_arg);
	free(c->remote);
}

/* rsync plus the common options: remote shell, host:dest/. */
static int sync_cmd_init(struct sync_cmd *c, const struct remote_sync_opts *o, struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	if (!o->rsh || !o->rsh[0])
		return tdxr_err_set(err, TDXR_EINVAL, "sync: no remote shell given");
	for (const char *const *w = o->rsh; *w; w++)
		if (!sync_word_ok(*w))
			return tdxr_err_set(
			    err, TDXR_EINVAL,
			    "sync: remote shell word '%s' is empty or has whitespace or quotes", *w);
	if (!sync_word_ok(o->host) || o->host[0] == '-' || strchr(o->host, ':') || strchr(o->host, '/'))
		return tdxr_err_set(err, TDXR_EINVAL, "sync: bad remote host name");
	if (!sync_dest_ok(o->dest))
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "sync: remote directory must use only [A-Za-z0-9._/+@=~-] and not start with '-'");
	tdxr_buf_init(&b, 64 * 1024);
	for (const char *const *w = o->rsh; *w && !rc; w++)
		rc = tdxr_buf_appendf(&b, err, "%s%s", w == o->rsh ? "" : " ", *w);
	if (!rc) {
		c->e_arg = (char *)tdxr_buf_steal(&b, NULL);
		if (!c->e_arg)
			rc = tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
	}
	tdxr_buf_dispose(&b);
	if (!rc) {
		size_t n = strlen(o->host) + strlen(o->dest) + 3;

		c->remote = malloc(n);
		if (!c->remote)
			rc = tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
		else
			snprintf(c->remote, n, "%s:%s%s", o->host, o->dest,
			         o->dest[strlen(o->dest) - 1] == '/' ? "" : "/");
	}
	if (!rc)
		rc = sync_strv_add(&c->argv, o->rsync ? o->rsync : "rsync", err);
	if (!rc)
		rc = sync_strv_add(&c->argv, "-e", err);
	if (!rc)
		rc = sync_strv_add(&c->argv, c->e_arg, err);
	return rc;
}

static int sync_cmd_run(struct sync_cmd *c, const struct remote_sync_opts *o, struct sync_run *r,
                        struct tdxr_err *err)
{
	int rc = sync_strv_addn(&c->argv, "", 0, err);

	if (rc)
		return rc;
	free(c->argv.v[c->argv.n - 1]);
	c->argv.v[c->argv.n - 1] = NULL; /* argv terminator; dispose stops at n */
	c->argv.n--;
	return sync_exec(o, c->argv.v, c->mux, r, err);
}

/* Decodes rsync's "\#ooo" escapes in place (rsync escapes control bytes and a
 * literal backslash that would start such a sequence, so this is exact). */
static size_t sync_unescape(char *s, size_t len)
{
	size_t w = 0;

	for (size_t i = 0; i < len; i++) {
		if (i + 4 < len && s[i] == '\\' && s[i + 1] == '#' && s[i + 2] >= '0' && s[i + 2] <= '3' &&
		    s[i + 3] >= '0' && s[i + 3] <= '7' && s[i + 4] >= '0' && s[i + 4] <= '7') {
			s[w++] = (char)((s[i + 2] - '0') * 64 + (s[i + 3] - '0') * 8 + (s[i + 4] - '0'));
			i += 4;
			continue;
		}
		s[w++] = s[i];
	}
	return w;
}

struct sync_tmp {
	char dir[PATH_MAX];
	char empty[PATH_MAX];
	char mux_path[PATH_MAX];
	struct remote_mux *mux; /* serving mux_path while the call runs (o->ssh) */
	bool made;
};

static int sync_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

static void sync_tmp_dispose(struct sync_tmp *t)
{
	remote_mux_stop(t->mux); /* before its socket's directory goes */
	t->mux = NULL;
	if (t->made)
		nftw(t->dir, sync_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	t->made = false;
}

static int sync_tmp_init(struct sync_tmp *t, struct tdxr_err *err)
{
	const char *base = getenv("TMPDIR");
	int n;

	memset(t, 0, sizeof(*t));
	n = snprintf(t->dir, sizeof(t->dir), "%s/tdxr-sync-XXXXXX", base && *base ? base : "/tmp");
	if (n < 0 || (size_t)n >= sizeof(t->dir) || !mkdtemp(t->dir))
		return tdxr_err_set(err, TDXR_EIO, "sync: cannot create a temp directory: %s",
		                    strerror(errno));
	t->made = true;
	n = snprintf(t->empty, sizeof(t->empty), "%s/empty", t->dir);
	if (n < 0 || (size_t)n >= sizeof(t->empty) || mkdir(t->empty, 0700) != 0)
		return tdxr_err_set(err, TDXR_EIO, "sync: cannot create %s", t->empty);
	return 0;
}

/* With o->ssh, serves the session on a socket in the (0700) temp directory for
 * this call's rsync runs. A multiplexer that cannot start is not fatal: the remote
 * shell then connects by itself. */
static void sync_tmp_mux(struct sync_tmp *t, const struct remote_sync_opts *o)
{
	struct tdxr_err e;

	if (!o->ssh || sync_join(t->mux_path, sizeof(t->mux_path), t->dir, "mux", &e) ||
	    remote_mux_start(o->ssh, t->mux_path, &t->mux, &e) == 0)
		return;
	TDXR_WARN(SYNC_MOD, "rsync will connect by itself: %s", e.msg);
}

static const char *sync_tmp_mux_path(const struct sync_tmp *t)
{
	return t->mux ? t->mux_path : NULL;
}

struct sync_entry {
	char *path; /* without trailing '/' */
	bool dir;
};

/* Lists the remote tree: a dry run from an empty directory with --delete names
 * every remote entry as "*deleting  |path". */
static int sync_remote_list(const struct remote_sync_opts *o, const struct sync_tmp *t,
                            struct sync_strv *files, struct sync_strv *dirs, struct tdxr_err *err)
{
	struct sync_cmd c;
	struct sync_run r = { 0 };
	struct tdxr_buf out;
	char src[PATH_MAX];
	int rc;

	tdxr_buf_init(&out, SYNC_LIST_MAX);
	r.capture = &out;
	rc = sync_cmd_init(&c, o, err);
	c.mux = sync_tmp_mux_path(t);
	if (!rc)
		rc = sync_join(src, sizeof(src), t->empty, "", err);
	for (const char *a[] = { "-r", "--links", "--dry-run", "--delete", "--out-format=%i|%n", "--", src,
	                         c.remote, NULL },
	                *const *w = a;
	     !rc && *w; w++)
		rc = sync_strv_add(&c.argv, *w, err);
	if (!rc)
		rc = sync_cmd_run(&c, o, &r, err);
	if (rc) {
		tdxr_err_prefix(err, "listing the remote tree");
		goto out;
	}
	for (size_t i = 0; i < out.len && !rc;) {
		char *line = (char *)out.data + i, *nl = memchr(line, '\n', out.len - i);
		size_t len = nl ? (size_t)(nl - line) : out.len - i;
		char *bar;
		bool dir;

		i += len + 1;
		line[len] = '\0';
		if (strncmp(line, "*deleting", 9) != 0 || !(bar = strchr(line, '|')))
			continue;
		bar++;
		len = sync_unescape(bar, strlen(bar));
		bar[len] = '\0';
		dir = len > 1 && bar[len - 1] == '/';
		if (dir)
			bar[len - 1] = '\0';
		if (len == 0 || (dir && len == 2 && bar[0] == '.'))
			continue;
		if (!sync_path_is_clean(bar)) {
			if (sync_path_has_git(bar))
				continue; /* a repository made in the box is the box's: never deleted */
			rc = tdxr_err_set(err, TDXR_EIO, "sync: the remote listing has an unsafe path");
			break;
		}
		rc = sync_strv_add(dir ? dirs : files, bar, err);
	}
	if (!rc) {
		sync_strv_sort_uniq(files);
		sync_strv_sort_uniq(dirs);
	}
out:
	sync_cmd_dispose(&c);
	tdxr_buf_dispose(&out);
	return rc;
}

static bool sync_under_any(const struct sync_strv *dirs, const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return false;
	memcpy(buf, path, len + 1);
	for (char *q = strrchr(buf, '/'); q; q = strrchr(buf, '/')) {
		*q = '\0';
		if (sync_strv_has(dirs, buf))
			return true;
	}
	return false;
}

struct sync_plan {
	struct sync_strv del; /* minimal deletion list (dirs removed whole) */
	size_t files, del_files, del_dirs, kept_ignored;
};

static int sync_ignored(git_repository *repo, const char *path, bool dir, bool *out, struct tdxr_err *err)
{
	char buf[PATH_MAX];
	int ign = 0, n = snprintf(buf, sizeof(buf), "%s%s", path, dir ? "/" : "");

	*out = false;
	if (n < 0 || (size_t)n >= sizeof(buf))
		return tdxr_err_set(err, TDXR_EINVAL, "sync: path too long: %s", path);
	if (!repo)
		return 0;
	if (git_ignore_path_is_ignored(&ign, repo, buf) != 0)
		return sync_git_err(err, TDXR_EIO, "sync: checking ignore rules");
	*out = ign != 0;
	return 0;
}

static int sync_plan_make(git_repository *repo, const struct remote_sync_manifest *m,
                          const struct sync_strv *files, const struct sync_strv *dirs, struct sync_plan *pl,
                          struct tdxr_err *err)
{
	struct sync_strv keep = { 0 }, kept = { 0 }, deld = { 0 }, delf = { 0 };
	int rc = 0;

	for (size_t i = 0; i < m->paths.n && !rc; i++)
		rc = sync_strv_add_parents(&keep, m->paths.v[i], err);
	sync_strv_sort_uniq(&keep);
	pl->files = files->n;
	/* Files: keep listed ones (rsync overwrites them) and ignored ones. */
	for (size_t i = 0; i < files->n && !rc; i++) {
		const char *f = files->v[i];
		bool ign;

		if (remote_sync_manifest_has(m, f))
			continue;
		rc = sync_ignored(repo, f, false, &ign, err);
		if (rc)
			break;
		/* (A remote file where the manifest needs a directory goes, ignored or not.) */
		if (ign && !sync_strv_has(&keep, f)) {
			pl->kept_ignored++;
			pl->files--; /* never touched: not part of the guard's base either */
			rc = sync_strv_add_parents(&kept, f, err);
			continue;
		}
		pl->del_files++;
		rc = sync_strv_add(&delf, f, err);
	}
	for (size_t i = 0; i < kept.n && !rc; i++)
		rc = sync_strv_add(&keep, kept.v[i], err);
	sync_strv_sort_uniq(&keep);
	/* Directories: keep parents of kept entries and ignored directories. */
	for (size_t i = 0; i < dirs->n && !rc; i++) {
		const char *d = dirs->v[i];
		bool ign;

		if (sync_strv_has(&keep, d))
			continue;
		rc = sync_ignored(repo, d, true, &ign, err);
		if (rc)
			break;
		if (ign) {
			pl->kept_ignored++;
			continue;
		}
		rc = sync_strv_add(&deld, d, err);
	}
	sync_strv_sort_uniq(&deld);
	pl->del_dirs = deld.n;
	/* A deleted directory goes whole (--force); list only the topmost ones. An
	 * ignored file inside a deleted directory cannot happen: its parents are kept. */
	for (size_t i = 0; i < deld.n && !rc; i++)
		if (!sync_under_any(&deld, deld.v[i]))
			rc = sync_strv_add(&pl->del, deld.v[i], err);
	for (size_t i = 0; i < delf.n && !rc; i++)
		if (!sync_under_any(&deld, delf.v[i]))
			rc = sync_strv_add(&pl->del, delf.v[i], err);
	sync_strv_dispose(&keep);
	sync_strv_dispose(&kept);
	sync_strv_dispose(&deld);
	sync_strv_dispose(&delf);
	return rc;
}

static int sync_mkparents(const char *root, const char *path, struct tdxr_err *err)
{
	char buf[PATH_MAX];
	int rc = 0;

	for (const char *q = strchr(path, '/'); q && !rc; q = strchr(q + 1, '/')) {
		int n = snprintf(buf, sizeof(buf), "%s/%.*s", root, (int)(q - path), path);

		if (n < 0 || (size_t)n >= sizeof(buf))
			return tdxr_err_set(err, TDXR_EINVAL, "sync: path too long: %s", path);
		rc = sync_mkdir(buf, err);
	}
	return rc;
}

/* A NUL-separated list into a new file of our private temp directory (0600; no
 * fsync: it lives for one rsync run). */
static int sync_list_write(const struct sync_strv *s, const char *file, struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc = 0, fd;

	tdxr_buf_init(&b, SYNC_MANIFEST_MAX);
	for (size_t i = 0; i < s->n && !rc; i++)
		rc = tdxr_buf_append(&b, s->v[i], strlen(s->v[i]) + 1, err);
	if (rc) {
		tdxr_buf_dispose(&b);
		return rc;
	}
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		tdxr_buf_dispose(&b);
		return tdxr_err_set(err, TDXR_EIO, "sync: cannot create %s: %s", file, strerror(errno));
	}
	for (size_t off = 0; off < b.len && !rc;) {
		ssize_t w = write(fd, b.data + off, b.len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = tdxr_err_set(err, TDXR_EIO, "sync: writing %s: %s", file, strerror(errno));
		else
			off += (size_t)w;
	}
	if (close(fd) != 0 && !rc)
		rc = tdxr_err_set(err, TDXR_EIO, "sync: writing %s: %s", file, strerror(errno));
	tdxr_buf_dispose(&b);
	return rc;
}

/* Deletes the planned entries: each is a missing argument of a run from a
 * directory holding only their parents (so no "vanished" parent), without -a so
 * the remote parents keep their attributes. */
static int sync_remote_delete(const struct remote_sync_opts *o, const struct sync_tmp *t,
                              const struct sync_plan *pl, struct sync_run *r, struct tdxr_err *err)
{
	char list[PATH_MAX], src[PATH_MAX], from[PATH_MAX + 16];
	struct sync_cmd c;
	int rc = sync_join(list, sizeof(list), t->dir, "delete.lst", err);

	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < pl->del.n && !rc; i++)
		rc = sync_mkparents(t->empty, pl->del.v[i], err);
	if (!rc)
		rc = sync_list_write(&pl->del, list, err);
	if (!rc)
		rc = sync_join(src, sizeof(src), t->empty, "", err);
	if (!rc && (size_t)snprintf(from, sizeof(from), "--files-from=%s", list) >= sizeof(from))
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: temp path too long");
	if (!rc) {
		rc = sync_cmd_init(&c, o, err);
		c.mux = sync_tmp_mux_path(t);
	}
	for (const char *a[] = { "-r", "--force", "--delete-missing-args", "--from0", from, "--", src,
	                         c.remote, NULL },
	                *const *w = a;
	     !rc && *w; w++)
		rc = sync_strv_add(&c.argv, *w, err);
	if (!rc)
		rc = sync_cmd_run(&c, o, r, err);
	if (rc)
		tdxr_err_prefix(err, "deleting on the remote");
	sync_cmd_dispose(&c);
	return rc;
}

/* ---- incremental pushes from a snapshot of the last one ---- */

/* One record per manifest path: "<size>:<mtime sec>:<mtime nsec>:<path>\0".
 * The stat is taken BEFORE the transfer (a working-tree manifest carries the one it
 * took; others are stat'ed when the push starts): a file that changes while rsync
 * runs then differs from its record and is sent again next time (recording it
 * afterwards would mark a version the box may never have received as sent). */
static int snap_stat(int dfd, const char *path, struct stat *st)
{
	return fstatat(dfd, path, st, AT_SYMLINK_NOFOLLOW);
}

static int snap_add(struct tdxr_buf *b, const char *path, const struct sync_fstat *f, struct tdxr_err *err)
{
	char num[96];
	int n = snprintf(num, sizeof(num), "%lld:%lld:%ld:", f->size, f->sec, f->nsec);
	int rc = tdxr_buf_append(b, num, (size_t)n, err);

	return rc ? rc : tdxr_buf_append(b, path, strlen(path) + 1, err);
}

/* Size and mtime of manifest path i: as the working-tree manifest saw it (it was
 * made before this push), else looked up now. 0 = *f valid. */
static int snap_get(int dfd, const struct remote_sync_manifest *m, size_t i, struct sync_fstat *f)
{
	struct stat st;

	if (m->fst) {
		*f = m->fst[i];
		return 0;
	}
	if (snap_stat(dfd, m->paths.v[i], &st) != 0)
		return -1;
	*f = (struct sync_fstat){ (long long)st.st_size, (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec };
	return 0;
}

/* The snapshot of every manifest path (full pushes). */
static int snap_collect(int dfd, const struct remote_sync_manifest *m, struct tdxr_buf *b, struct tdxr_err *err)
{
	int rc = 0;

	for (size_t i = 0; i < m->paths.n && !rc; i++) {
		struct sync_fstat f;

		if (snap_get(dfd, m, i, &f) == 0)
			rc = snap_add(b, m->paths.v[i], &f, err);
	}
	return rc;
}

static int snap_commit(const char *file, const struct tdxr_buf *b, struct tdxr_err *err)
{
	return tdxr_file_write_atomic(file, b->data ? (const char *)b->data : "", b->len, 0600, err);
}

struct snap_entry {
	long long size, sec;
	long nsec;
	const char *path; /* into the loaded text */
};

static int snap_cmp(const void *a, const void *b)
{
	return strcmp(((const struct snap_entry *)a)->path, ((const struct snap_entry *)b)->path);
}

/* Loads a snapshot (sorted by path); -1 when absent or unreadable (then: full push). */
static int snap_load(const char *file, uint8_t **text, struct snap_entry **out, size_t *n)
{
	size_t len = 0, off = 0, cnt = 0, cap = 0;
	struct snap_entry *v = NULL;

	*text = NULL;
	*out = NULL;
	*n = 0;
	if (tdxr_file_read(file, 256u << 20, text, &len, NULL) != 0)
		return -1;
	while (off < len) {
		const char *rec = (const char *)*text + off, *p[3];
		size_t rl = strnlen(rec, len - off), k;
		char *end;
		struct snap_entry e;

		if (rl == len - off)
			goto bad; /* unterminated record */
		p[0] = rec;
		for (k = 1; k < 3; k++) {
			p[k] = strchr(p[k - 1], ':');
			if (p[k] == NULL)
				goto bad;
			p[k]++;
		}
		e.size = strtoll(p[0], &end, 10);
		if (*end != ':')
			goto bad;
		e.sec = strtoll(p[1], &end, 10);
		if (*end != ':')
			goto bad;
		e.nsec = strtol(p[2], &end, 10);
		if (*end != ':' || end[1] == '\0')
			goto bad;
		e.path = end + 1;
		if (cnt == cap) {
			struct snap_entry *nv = realloc(v, (cap = cap ? cap * 2 : 1024) * sizeof(*v));

			if (nv == NULL)
				goto bad;
			v = nv;
		}
		v[cnt++] = e;
		off += rl + 1;
	}
	qsort(v, cnt, sizeof(*v), snap_cmp);
	for (size_t i = 1; i < cnt; i++)
		if (strcmp(v[i - 1].path, v[i].path) == 0)
			goto bad; /* not one we wrote */
	*out = v;
	*n = cnt;
	return 0;
bad:
	free(v);
	free(*text);
	*text = NULL;
	return -1;
}

/* One rsync run: changed files and deletions (missing args) from the snapshot;
 * snap_new gets the snapshot to commit after it. 1 = done, 2 = nothing to do (no
 * run; the old snapshot stands), 0 = no usable snapshot (the caller does a full
 * push), < 0 = error. */
static int sync_push_incremental(const char *src, int dfd, const struct remote_sync_manifest *m,
                                 const struct remote_sync_opts *o, const struct sync_tmp *t, struct tdxr_buf *snap_new,
                                 struct remote_sync_result *res, struct tdxr_err *err)
{
	struct snap_entry *snap = NULL;
	struct sync_strv list = { 0 };
	struct sync_cmd c = { 0 };
	struct sync_run r = { 0 };
	uint8_t *text = NULL;
	size_t nsnap = 0, i, k, deleted = 0;
	unsigned pct = o->delete_max_pct ? o->delete_max_pct : 50;
	size_t minf = o->delete_min_files ? o->delete_min_files : 100;
	char lst[PATH_MAX], from[PATH_MAX + 16];
	int rc;

	if (snap_load(o->state_file, &text, &snap, &nsnap) != 0)
		return 0;
	/* One merge walk over two lists sorted the same way (strcmp): manifest paths
	 * that are new or whose size/mtime moved, and snapshot paths that left. */
	for (i = 0, k = 0; i < m->paths.n || k < nsnap;) {
		int cmp = i >= m->paths.n ? 1 : k >= nsnap ? -1 : strcmp(m->paths.v[i], snap[k].path);
		struct sync_fstat st;
		int have;

		if (cmp > 0) { /* in the snapshot only: deleted */
			if ((rc = sync_strv_add(&list, snap[k++].path, err)))
				goto out;
			deleted++;
			continue;
		}
		have = snap_get(dfd, m, i, &st) == 0;
		if (have && (rc = snap_add(snap_new, m->paths.v[i], &st, err)))
			goto out;
		if (!have || cmp < 0 || snap[k].size != st.size || snap[k].sec != st.sec || snap[k].nsec != st.nsec)
			if ((rc = sync_strv_add(&list, m->paths.v[i], err)))
				goto out;
		i++;
		if (cmp == 0)
			k++;
	}
	if (res) {
		res->remote_entries = nsnap;
		res->deleted = deleted;
	}
	if (!o->force && deleted > minf && deleted * 100u > (size_t)pct * nsnap) {
		rc = tdxr_err_set(err, TDXR_ETOOBIG,
		                  "sync: refusing to delete %zu of %zu remote files in %s (guard: more than %u%% "
		                  "and more than %zu); check the source tree, or force the sync",
		                  deleted, nsnap, o->dest, pct, minf);
		goto out;
	}
	if (o->dry_run || list.n == 0) {
		rc = 2; /* nothing changed (the snapshot stays as it is): nothing to run */
		goto out;
	}
	rc = sync_join(lst, sizeof(lst), t->dir, "changed.lst", err);
	if (!rc)
		rc = sync_list_write(&list, lst, err);
	if (!rc && (size_t)snprintf(from, sizeof(from), "--files-from=%s", lst) >= sizeof(from))
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: temp path too long");
	if (!rc) {
		rc = sync_cmd_init(&c, o, err);
		c.mux = sync_tmp_mux_path(t);
	}
	for (const char *a[] = { "-a", "--links", "--safe-links", "--force", "--delete-missing-args", "--from0",
	                         from, "--stats", "--", src, c.remote, NULL },
	                *const *w = a;
	     !rc && *w; w++)
		rc = sync_strv_add(&c.argv, *w, err);
	remote_mux_prestart(t->mux, 0); /* the only run: no channel for a next one */
	if (!rc)
		rc = sync_cmd_run(&c, o, &r, err);
	if (rc) {
		tdxr_err_prefix(err, "transferring changes");
		goto out;
	}
	if (res)
		res->transferred = r.transferred;
	rc = 1;
out:
	sync_cmd_dispose(&c);
	sync_strv_dispose(&list);
	free(snap);
	free(text);
	return rc;
}

/* remote_sync_push in a prepared temp directory (and multiplexer). */
static int sync_push_in(const char *repo_dir, const struct remote_sync_manifest *m,
                        const struct remote_sync_opts *o, const struct sync_tmp *t, struct remote_sync_result *res,
                        struct tdxr_err *err)
{
	struct sync_strv files = { 0 }, dirs = { 0 };
	struct sync_plan pl = { 0 };
	struct sync_run r = { 0 };
	struct sync_cmd c = { 0 };
	struct tdxr_buf snap;
	git_repository *repo = NULL;
	char list[PATH_MAX], from[PATH_MAX + 16], *src = NULL;
	unsigned pct = o->delete_max_pct ? o->delete_max_pct : 50;
	size_t minf = o->delete_min_files ? o->delete_min_files : 100;
	int rc, dfd = -1, git = 0;

	tdxr_buf_init(&snap, 256u << 20);
	src = realpath(repo_dir, NULL);
	if (src) {
		size_t n = strlen(src);
		char *s2 = realloc(src, n + 2);

		if (!s2) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
			goto out;
		}
		src = s2;
		if (n == 0 || src[n - 1] != '/')
			memcpy(src + n, "/", 2); /* rsync: the directory's contents */
		dfd = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (!src || dfd < 0) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND, "sync: source %s: %s", repo_dir, strerror(errno));
		goto out;
	}
	/* Incremental first: it needs no libgit2 (whose start-up loads the CA bundle). */
	if (o->state_file) {
		rc = sync_push_incremental(src, dfd, m, o, t, &snap, res, err);
		if (rc < 0)
			goto out;
		if (rc > 0) {
			rc = o->dry_run || rc == 2 ? 0 : snap_commit(o->state_file, &snap, err);
			goto out;
		}
	}
	git_libgit2_init();
	git = 1;
	if (git_repository_open(&repo, src) != 0) {
		rc = sync_git_err(err, TDXR_ENOTFOUND, "sync: opening the source repository");
		goto out;
	}
	rc = sync_remote_list(o, t, &files, &dirs, err);
	if (!rc)
		rc = sync_plan_make(repo, m, &files, &dirs, &pl, err);
	if (rc)
		goto out;
	if (res) {
		res->remote_entries = pl.files;
		res->deleted = pl.del_files;
		res->deleted_dirs = pl.del_dirs;
		res->kept_ignored = pl.kept_ignored;
	}
	if (!o->force && pl.del_files > minf && pl.del_files * 100u > (size_t)pct * pl.files) {
		rc = tdxr_err_set(
		    err, TDXR_ETOOBIG,
		    "sync: refusing to delete %zu of %zu remote files in %s (guard: more than %u%% "
		    "and more than %zu); check the source tree, or force the sync",
		    pl.del_files, pl.files, o->dest, pct, minf);
		goto out;
	}
	if (o->dry_run)
		goto out;
	if (pl.del.n) {
		rc = sync_remote_delete(o, t, &pl, &r, err);
		if (rc)
			goto out;
	}
	rc = sync_join(list, sizeof(list), t->dir, "manifest.lst", err);
	if (!rc)
		rc = sync_list_write(&m->paths, list, err);
	if (!rc && (size_t)snprintf(from, sizeof(from), "--files-from=%s", list) >= sizeof(from))
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: temp path too long");
	if (!rc && o->state_file)
		rc = snap_collect(dfd, m, &snap, err); /* before the transfer: see snap_add */
	if (!rc) {
		rc = sync_cmd_init(&c, o, err);
		c.mux = sync_tmp_mux_path(t);
	}
	for (const char *a[] = { "-a", "--links", "--safe-links", "--force", "--from0", from, "--stats", "--",
	                         src, c.remote, NULL },
	                *const *w = a;
	     !rc && *w; w++)
		rc = sync_strv_add(&c.argv, *w, err);
	memset(&r, 0, sizeof(r));
	remote_mux_prestart(t->mux, 0); /* the last run */
	if (!rc)
		rc = sync_cmd_run(&c, o, &r, err);
	if (rc) {
		tdxr_err_prefix(err, "transferring");
		goto out;
	}
	if (res)
		res->transferred = r.transferred;
	if (o->state_file)
		rc = snap_commit(o->state_file, &snap, err);
out:
	sync_cmd_dispose(&c);
	sync_strv_dispose(&pl.del);
	sync_strv_dispose(&files);
	sync_strv_dispose(&dirs);
	tdxr_buf_dispose(&snap);
	if (dfd >= 0)
		close(dfd);
	free(src);
	git_repository_free(repo);
	if (git)
		git_libgit2_shutdown();
	return rc;
}

int remote_sync_push(const char *repo_dir, const struct remote_sync_manifest *m,
                     const struct remote_sync_opts *o, struct remote_sync_result *res, struct tdxr_err *err)
{
	struct sync_tmp t;
	int rc;

	assert(repo_dir && m && o);
	if (res)
		memset(res, 0, sizeof(*res));
	rc = sync_tmp_init(&t, err);
	if (!rc) {
		sync_tmp_mux(&t, o);
		rc = sync_push_in(repo_dir, m, o, &t, res, err);
	}
	sync_tmp_dispose(&t);
	return rc;
}

int remote_sync_push_worktree(const char *repo_dir, const struct remote_sync_opts *o,
                              struct remote_sync_result *res, size_t *count, struct tdxr_err *err)
{
	struct remote_sync_manifest *m = NULL;
	struct sync_tmp t;
	int rc;

	assert(repo_dir && o);
	if (res)
		memset(res, 0, sizeof(*res));
	if (count)
		*count = 0;
	rc = sync_tmp_init(&t, err);
	if (!rc) {
		/* First: the pre-started channel's login shell runs in the box while the
		 * working tree is scanned here. */
		sync_tmp_mux(&t, o);
		rc = remote_sync_manifest_worktree(repo_dir, &m, err);
	}
	if (!rc)
		rc = sync_push_in(repo_dir, m, o, &t, res, err);
	if (!rc && count)
		*count = remote_sync_manifest_count(m);
	remote_sync_manifest_free(m);
	sync_tmp_dispose(&t);
	return rc;
}

int remote_sync_pull(const struct remote_sync_opts *o, const char *const *paths, size_t n,
                     const char *local_dir, struct tdxr_err *err)
{
	struct sync_strv lst = { 0 };
	struct sync_tmp t = { 0 };
	struct sync_run r = { 0 };
	struct sync_cmd c = { 0 };
	char list[PATH_MAX], from[PATH_MAX + 16], dst[PATH_MAX];
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++)
		rc = remote_sync_path_check(paths[i], err);
	if (!rc && n == 0)
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: no artifact paths given");
	for (size_t i = 0; i < n && !rc; i++)
		rc = sync_strv_add(&lst, paths[i], err);
	if (!rc)
		rc = sync_mkdir(local_dir, err);
	if (!rc)
		rc = sync_tmp_init(&t, err);
	if (!rc) {
		sync_tmp_mux(&t, o);
		rc = sync_join(list, sizeof(list), t.dir, "pull.lst", err);
	}
	if (!rc)
		rc = sync_list_write(&lst, list, err);
	if (!rc)
		rc = sync_join(dst, sizeof(dst), local_dir, "", err);
	if (!rc && (size_t)snprintf(from, sizeof(from), "--files-from=%s", list) >= sizeof(from))
		rc = tdxr_err_set(err, TDXR_EINVAL, "sync: temp path too long");
	if (!rc) {
		rc = sync_cmd_init(&c, o, err);
		c.mux = sync_tmp_mux_path(&t);
	}
	/* The box is untrusted: no devices or specials, unsafe links dropped. */
	for (const char *a[] = { "-r", "-l", "-t", "--safe-links", "--no-D", "--chmod=u+rwX,go-w", "-p",
	                         "--from0", from, "--", c.remote, dst, NULL },
	                *const *w = a;
	     !rc && *w; w++)
		rc = sync_strv_add(&c.argv, *w, err);
	remote_mux_prestart(t.mux, 0);
	if (!rc)
		rc = sync_cmd_run(&c, o, &r, err);
	if (rc)
		tdxr_err_prefix(err, "copying artifacts back");
	sync_cmd_dispose(&c);
	sync_strv_dispose(&lst);
	sync_tmp_dispose(&t);
	return rc;
}

int remote_sync_self_exe(char **out, struct tdxr_err *err)
{
	char buf[PATH_MAX];
	ssize_t n;

	*out = NULL;
	n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n < 0 || (size_t)n >= sizeof(buf) - 1)
		return tdxr_err_set(err, TDXR_EIO, "sync: readlink /proc/self/exe: %s", strerror(errno));
	buf[n] = '\0';
	*out = strdup(buf);
	if (!*out)
		return tdxr_err_set(err, TDXR_ENOMEM, "sync: out of memory");
	return 0;
}
