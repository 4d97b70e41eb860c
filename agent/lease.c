/*
 * lease.c - the lease store (see lease.h for the protocol). Claims are small
 * JSON files written with tdxr_file_write_atomic (mode 0600: they name key
 * files); locks are flock(2) on a sibling <id>.lock file that is never
 * replaced, so a lock always refers to the claim's current name.
 */
#include "agent/lease.h"

#include "common/buf.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_MAX (64u * 1024u)

struct lease_store {
	char dir[4096];
};

struct lease_handle {
	struct lease_store *s;
	struct lease_claim c;
	int lock_fd;
};

static int mkdir_p(const char *path, struct tdxr_err *err)
{
	char buf[4096];
	size_t i, n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path is empty or too long");
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return tdxr_err_set(err, TDXR_EIO, "cannot create %s: %s", buf, strerror(errno));
		buf[i] = i < n ? '/' : '\0';
	}
	return 0;
}

int lease_store_open(const char *state_dir, struct lease_store **out, struct tdxr_err *err)
{
	struct lease_store *s;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if ((size_t)snprintf(s->dir, sizeof(s->dir), "%s/leases", state_dir) >= sizeof(s->dir)) {
		free(s);
		return tdxr_err_set(err, TDXR_EINVAL, "state directory path too long");
	}
	rc = mkdir_p(s->dir, err);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void lease_store_free(struct lease_store *s)
{
	free(s);
}

const char *lease_store_dir(const struct lease_store *s)
{
	return s->dir;
}

void lease_id_new(char out[LEASE_ID_MAX])
{
	uint8_t r[8] = { 0 };
	char hx[17];

	if (RAND_bytes(r, sizeof(r)) != 1) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(r, &ts.tv_nsec, sizeof(ts.tv_nsec) < 8 ? sizeof(ts.tv_nsec) : 8);
	}
	tdxr_hex_encode(r, sizeof(r), hx);
	snprintf(out, LEASE_ID_MAX, "l-%s", hx);
}

static int id_ok(const char *id)
{
	size_t i, n = strlen(id);

	if (n == 0 || n >= LEASE_ID_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
			return 0;
	return 1;
}

static int path_of(const struct lease_store *s, const char *id, const char *ext, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s/%s%s", s->dir, id, ext) >= cap ? TDXR_EINVAL : 0;
}

/* ---- JSON ---- */

#define STR_FIELDS(X)                                                                                        \
	X(id)                                                                                                \
	X(executor) X(state) X(name) X(cloud_id) X(app_id) X(owner_host) X(job) X(gateway) X(ssh_key_path)   \
	    X(host_key_sha256)

int lease_claim_to_json(const struct lease_claim *c, char **out, struct tdxr_err *err)
{
	json_t *o = json_object();

	*out = NULL;
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
#define SET(f) json_object_set_new(o, #f, json_string(c->f));
	STR_FIELDS(SET)
#undef SET
	json_object_set_new(o, "created_at", json_integer(c->created_at));
	json_object_set_new(o, "updated_at", json_integer(c->updated_at));
	json_object_set_new(o, "pid", json_integer(c->pid));
	json_object_set_new(o, "compose_hash", json_string(c->compose_hash));
	json_object_set_new(o, "keep_until", json_integer(c->keep_until));
	*out = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

static int get_str(json_t *o, const char *k, char *dst, size_t cap, struct tdxr_err *err)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_string(v) || json_string_length(v) >= cap ||
	    memchr(json_string_value(v), '\0', json_string_length(v)))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "lease claim: '%s' is missing, not a string or too long", k);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int lease_claim_parse(const uint8_t *text, size_t len, struct lease_claim *out, struct tdxr_err *err)
{
	struct lease_claim c;
	json_error_t jerr;
	json_t *o, *v;
	int rc = 0;

	memset(&c, 0, sizeof(c));
	if (len > CLAIM_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG, "lease claim larger than %u bytes", CLAIM_MAX);
	o = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "lease claim: invalid JSON at line %d column %d: %s",
		                    jerr.line, jerr.column, jerr.text);
	if (!json_is_object(o)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease claim: not a JSON object");
		goto out;
	}
#define GET(f)                                                                                               \
	if (!rc)                                                                                             \
		rc = get_str(o, #f, c.f, sizeof(c.f), err);
	STR_FIELDS(GET)
#undef GET
	if (rc)
		goto out;
	if (!id_ok(c.id)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease claim: id '%s' is not [a-z0-9-]+", c.id);
		goto out;
	}
	v = json_object_get(o, "created_at");
	c.created_at = json_is_integer(v) ? json_integer_value(v) : 0;
	v = json_object_get(o, "updated_at");
	c.updated_at = json_is_integer(v) ? json_integer_value(v) : 0;
	v = json_object_get(o, "pid");
	c.pid = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30)
	            ? (int)json_integer_value(v)
	            : 0;
	/* Optional (claims written before they existed lack them). */
	if (json_object_get(o, "compose_hash") && (rc = get_str(o, "compose_hash", c.compose_hash,
	                                                         sizeof(c.compose_hash), err)))
		goto out;
	v = json_object_get(o, "keep_until");
	c.keep_until = json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
	*out = c;
out:
	json_decref(o);
	return rc;
}

static int write_claim(struct lease_store *s, const struct lease_claim *c, struct tdxr_err *err)
{
	char path[4096], *json = NULL;
	int rc;

	if (path_of(s, c->id, ".json", path, sizeof(path)))
		return tdxr_err_set(err, TDXR_EINVAL, "lease path too long");
	if ((rc = lease_claim_to_json(c, &json, err)))
		return rc;
	rc = tdxr_file_write_atomic(path, json, strlen(json), 0600, err);
	free(json);
	return rc;
}

/* Opens and locks <id>.lock; nonblock: TDXR_ETIMEOUT when someone else holds it. */
static int lock_open(struct lease_store *s, const char *id, int nonblock, int *fd_out, struct tdxr_err *err)
{
	char path[4096];
	int fd;

	*fd_out = -1;
	if (path_of(s, id, ".lock", path, sizeof(path)))
		return tdxr_err_set(err, TDXR_EINVAL, "lease path too long");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | (nonblock ? LOCK_NB : 0)) != 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return tdxr_err_set(err, TDXR_ETIMEOUT, "lease %s is held by a live process", id);
		return tdxr_err_set(err, TDXR_EIO, "cannot lock %s: %s", path, strerror(e));
	}
	*fd_out = fd;
	return 0;
}

int lease_claim_create(struct lease_store *s, const struct lease_claim *c, struct lease_handle **out,
                       struct tdxr_err *err)
{
	struct lease_handle *h;
	char path[4096];
	struct stat st;
	int rc, fd;

	*out = NULL;
	if (!id_ok(c->id))
		return tdxr_err_set(err, TDXR_EINVAL, "lease id '%s' is not [a-z0-9-]+", c->id);
	if ((rc = lock_open(s, c->id, 1, &fd, err)))
		return rc;
	if (path_of(s, c->id, ".json", path, sizeof(path)) == 0 && stat(path, &st) == 0) {
		close(fd);
		return tdxr_err_set(err, TDXR_EINVAL, "lease %s already exists", c->id);
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		close(fd);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	h->s = s;
	h->c = *c;
	h->lock_fd = fd;
	h->c.pid = (int)getpid();
	if (h->c.created_at == 0)
		h->c.created_at = (int64_t)time(NULL);
	h->c.updated_at = (int64_t)time(NULL);
	if ((rc = write_claim(s, &h->c, err))) {
		lease_handle_close(h);
		return rc;
	}
	*out = h;
	return 0;
}

int lease_claim_update(struct lease_handle *h, const struct lease_claim *c, struct tdxr_err *err)
{
	struct lease_claim n = *c;
	int rc;

	if (strcmp(n.id, h->c.id) != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "lease claim update changes the id");
	n.created_at = h->c.created_at;
	n.pid = h->c.pid;
	n.updated_at = (int64_t)time(NULL);
	if ((rc = write_claim(h->s, &n, err)))
		return rc;
	h->c = n;
	return 0;
}

const struct lease_claim *lease_handle_claim(const struct lease_handle *h)
{
	return &h->c;
}

int lease_claim_remove(struct lease_handle *h, struct tdxr_err *err)
{
	char path[4096];
	int rc = 0;

	if (h == NULL)
		return 0;
	if (path_of(h->s, h->c.id, ".json", path, sizeof(path)) == 0 && unlink(path) != 0 && errno != ENOENT)
		rc = tdxr_err_set(err, TDXR_EIO, "cannot remove %s: %s", path, strerror(errno));
	/* The lock file goes while we still hold the lock: a racing adopter then finds no claim. */
	if (!rc && path_of(h->s, h->c.id, ".lock", path, sizeof(path)) == 0)
		unlink(path);
	lease_handle_close(h);
	return rc;
}

void lease_handle_close(struct lease_handle *h)
{
	if (h == NULL)
		return;
	if (h->lock_fd >= 0)
		close(h->lock_fd);
	free(h);
}

static int read_claim(struct lease_store *s, const char *id, struct lease_claim *c, struct tdxr_err *err)
{
	char path[4096];
	uint8_t *d = NULL;
	size_t n = 0;
	int rc;

	if (path_of(s, id, ".json", path, sizeof(path)))
		return tdxr_err_set(err, TDXR_EINVAL, "lease path too long");
	if (access(path, F_OK) != 0)
		return tdxr_err_set(err, TDXR_ENOTFOUND, "no lease %s", id);
	if ((rc = tdxr_file_read(path, CLAIM_MAX, &d, &n, err)))
		return rc;
	rc = lease_claim_parse(d, n, c, err);
	free(d);
	if (rc)
		return tdxr_err_prefix(err, "%s", path);
	if (strcmp(c->id, id) != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: claim names lease '%s'", path, c->id);
	return 0;
}

int lease_claim_try_adopt(struct lease_store *s, const char *id, struct lease_handle **out,
                          struct tdxr_err *err)
{
	struct lease_handle *h;
	struct lease_claim c;
	int rc, fd;

	*out = NULL;
	if (!id_ok(id))
		return tdxr_err_set(err, TDXR_EINVAL, "lease id '%s' is not [a-z0-9-]+", id);
	if ((rc = lock_open(s, id, 1, &fd, err)))
		return rc;
	/* Under the lock: the claim must still exist (its owner may have just removed it). */
	if ((rc = read_claim(s, id, &c, err))) {
		char path[4096];

		if (rc == TDXR_ENOTFOUND && path_of(s, id, ".lock", path, sizeof(path)) == 0)
			unlink(path);
		close(fd);
		return rc;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		close(fd);
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	h->s = s;
	h->c = c;
	h->lock_fd = fd;
	*out = h;
	return 0;
}

int lease_store_list(struct lease_store *s, struct lease_claim **out, int **live, size_t *n,
                     struct tdxr_err *err)
{
	struct lease_claim *v = NULL;
	int *l = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*live = NULL;
	*n = 0;
	d = opendir(s->dir);
	if (d == NULL)
		return tdxr_err_set(err, TDXR_EIO, "cannot read %s: %s", s->dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char id[LEASE_ID_MAX];
		int fd;

		if (len <= 5 || len - 5 >= sizeof(id) || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		memcpy(id, de->d_name, len - 5);
		id[len - 5] = '\0';
		if (!id_ok(id))
			continue;
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct lease_claim *nv = realloc(v, nc * sizeof(*v));
			int *nl = nv ? realloc(l, nc * sizeof(*l)) : NULL;

			if (nv)
				v = nv;
			if (nl == NULL) {
				rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
				break;
			}
			l = nl;
			cap = nc;
		}
		if ((rc = read_claim(s, id, &v[cnt], err)))
			break; /* a corrupt claim is an error to look at, not something to skip */
		/* Probe the lock: if we can take it, nobody live holds the lease. */
		l[cnt] = 1;
		if (lock_open(s, id, 1, &fd, NULL) == 0) {
			l[cnt] = 0;
			close(fd);
		}
		cnt++;
	}
	closedir(d);
	if (rc) {
		free(v);
		free(l);
		return rc;
	}
	*out = v;
	*live = l;
	*n = cnt;
	return 0;
}
