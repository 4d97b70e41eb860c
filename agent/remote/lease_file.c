/*
 * lease_file.c - the lease file: where a leased box is and how to log in to it,
 * until the lease store (issue 4) exists. A JSON object, mode 0600 (refused when
 * group or other may read it: it names the key file and pins the host key);
 * rewritten atomically (tdxr_file_write_atomic, 0600) when the host key is pinned
 * on first use. Unknown keys are kept on rewrite.
 *
 * Trust boundary: the file is local configuration written by us; it is still
 * parsed strictly (duplicate keys rejected, types checked, size capped).
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

struct remote_lease {
	char *path;
	json_t *root; /* the whole document, kept for rewrites */
	char *id, *user, *key_file, *host, *server_name, *connect_to, *ca_file, *host_key, *work_dir;
	enum remote_transport transport;
	unsigned port, tls_port;
};

static int get_str(json_t *obj, const char *key, int required, char **out, struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return tdxr_err_set(err, TDXR_EINVAL, "lease: \"%s\" is required", key);
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return tdxr_err_set(err, TDXR_EINVAL, "lease: \"%s\" must be a non-empty string", key);
	*out = strdup(json_string_value(v));
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "lease: out of memory");
	return 0;
}

static int get_port(json_t *obj, const char *key, unsigned *out, struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, key);

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
		return tdxr_err_set(err, TDXR_EINVAL, "lease: \"%s\" must be a port number", key);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

int remote_lease_load(const char *path, struct remote_lease **out, struct tdxr_err *err)
{
	struct remote_lease *l = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	json_error_t jerr;
	json_t *tls;
	char *transport = NULL;
	struct stat st;
	int rc, fd = -1;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return tdxr_err_set(err, errno == ENOENT ? TDXR_ENOTFOUND : TDXR_EIO, "lease %s: %s", path,
		                    strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return tdxr_err_set(err, TDXR_EINVAL, "lease %s: not a regular file", path);
	}
	close(fd);
	if ((st.st_mode & 077) != 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "lease %s: mode %03o lets group/other read it; chmod 600 it", path,
		                    (unsigned)(st.st_mode & 0777));
	rc = tdxr_file_read(path, TDXR_CAP_CONFIG, &data, &len, err);
	if (rc != 0)
		return rc;
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "lease: out of memory");
		goto out;
	}
	l->path = strdup(path);
	l->root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (l->path == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "lease: out of memory");
		goto out;
	}
	if (l->root == NULL || !json_is_object(l->root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease %s: not a JSON object (line %d: %s)", path,
		                  jerr.line, l->root == NULL ? jerr.text : "wrong type");
		goto out;
	}
	if ((rc = get_str(l->root, "id", 1, &l->id, err)) != 0 ||
	    (rc = get_str(l->root, "user", 1, &l->user, err)) != 0 ||
	    (rc = get_str(l->root, "key_file", 1, &l->key_file, err)) != 0 ||
	    (rc = get_str(l->root, "transport", 0, &transport, err)) != 0 ||
	    (rc = get_str(l->root, "host", 0, &l->host, err)) != 0 ||
	    (rc = get_port(l->root, "port", &l->port, err)) != 0 ||
	    (rc = get_str(l->root, "host_key_sha256", 0, &l->host_key, err)) != 0 ||
	    (rc = get_str(l->root, "work_dir", 0, &l->work_dir, err)) != 0)
		goto out;
	if (l->host_key != NULL && strncmp(l->host_key, "SHA256:", 7) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease: host_key_sha256 must start with SHA256:");
		goto out;
	}
	if (transport == NULL || strcmp(transport, "direct") == 0) {
		l->transport = REMOTE_TRANSPORT_DIRECT;
		if (l->host == NULL || l->port == 0) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "lease: direct transport needs host and port");
			goto out;
		}
	} else if (strcmp(transport, "tls") == 0) {
		l->transport = REMOTE_TRANSPORT_TLS;
		tls = json_object_get(l->root, "tls");
		if (!json_is_object(tls)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "lease: tls transport needs a \"tls\" object");
			goto out;
		}
		if ((rc = get_str(tls, "server_name", 1, &l->server_name, err)) != 0 ||
		    (rc = get_str(tls, "connect_to", 0, &l->connect_to, err)) != 0 ||
		    (rc = get_str(tls, "ca_file", 0, &l->ca_file, err)) != 0 ||
		    (rc = get_port(tls, "port", &l->tls_port, err)) != 0)
			goto out;
	} else {
		rc = tdxr_err_set(err, TDXR_EINVAL, "lease: transport must be \"direct\" or \"tls\"");
		goto out;
	}
	rc = 0;
out:
	free(transport);
	free(data);
	if (rc != 0) {
		remote_lease_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void remote_lease_free(struct remote_lease *l)
{
	if (l == NULL)
		return;
	json_decref(l->root);
	free(l->path);
	free(l->id);
	free(l->user);
	free(l->key_file);
	free(l->host);
	free(l->server_name);
	free(l->connect_to);
	free(l->ca_file);
	free(l->host_key);
	free(l->work_dir);
	free(l);
}

const char *remote_lease_id(const struct remote_lease *l)
{
	return l->id;
}

const char *remote_lease_work_dir(const struct remote_lease *l)
{
	return l->work_dir;
}

const char *remote_lease_host_key(const struct remote_lease *l)
{
	return l->host_key;
}

int remote_lease_pin(struct remote_lease *l, const char *fp, struct tdxr_err *err)
{
	char *dump = NULL, *copy = NULL;
	int rc;

	if (fp == NULL || strncmp(fp, "SHA256:", 7) != 0)
		return tdxr_err_set(err, TDXR_EINVAL, "lease: bad host key fingerprint");
	copy = strdup(fp);
	if (copy == NULL || json_object_set_new(l->root, "host_key_sha256", json_string(fp)) != 0) {
		free(copy);
		return tdxr_err_set(err, TDXR_ENOMEM, "lease: out of memory");
	}
	dump = json_dumps(l->root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (dump == NULL) {
		free(copy);
		return tdxr_err_set(err, TDXR_ENOMEM, "lease: cannot serialise");
	}
	rc = tdxr_file_write_atomic(l->path, dump, strlen(dump), 0600, err);
	free(dump);
	if (rc != 0) {
		free(copy);
		return rc;
	}
	free(l->host_key);
	l->host_key = copy;
	return 0;
}

int remote_lease_connect(struct remote_lease *l, int timeout_ms, struct remote_ssh **out,
                         struct tdxr_err *err)
{
	return remote_lease_connect_tuned(l, timeout_ms, 0, out, err);
}

int remote_lease_connect_tuned(struct remote_lease *l, int timeout_ms, int keepalive_s,
                               struct remote_ssh **out, struct tdxr_err *err)
{
	struct remote_endpoint ep;
	struct remote_ssh_opts so;
	struct remote_ssh *ssh = NULL;
	int rc;

	*out = NULL;
	memset(&ep, 0, sizeof(ep));
	ep.transport = l->transport;
	ep.host = l->host;
	ep.port = l->transport == REMOTE_TRANSPORT_TLS ? l->tls_port : l->port;
	ep.server_name = l->server_name;
	ep.connect_to = l->connect_to;
	ep.ca_file = l->ca_file;
	ep.connect_timeout_ms = timeout_ms;
	ep.handshake_timeout_ms = timeout_ms;
	memset(&so, 0, sizeof(so));
	so.user = l->user;
	so.key_file = l->key_file;
	so.host_key_pin = l->host_key;
	so.timeout_ms = timeout_ms;
	so.keepalive_s = keepalive_s;
	rc = remote_ssh_connect(&ep, &so, &ssh, err);
	if (rc != 0)
		return rc;
	if (l->host_key == NULL) {
		rc = remote_lease_pin(l, remote_ssh_host_key(ssh), err);
		if (rc != 0) {
			remote_ssh_free(ssh);
			return rc;
		}
	}
	*out = ssh;
	return 0;
}
