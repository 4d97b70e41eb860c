/*
 * ssh.c - an SSH client session (libssh2) running over a remote_stream through
 * libssh2's SEND/RECV callbacks: no socketpair, no thread, no subprocess. The
 * session is non-blocking; every blocking step (handshake, auth, channel work)
 * waits in poll() on the stream's fd with a deadline, and keepalives plus a
 * "peer silent too long" check detect a dead gateway or box.
 *
 * Host key: the SHA-256 of the server's key is compared (CRYPTO_memcmp on the
 * formatted fingerprint) with the pin; without a pin the caller records what was
 * seen (trust on first use). A changed key is a hard TDXR_EAUTH naming both.
 * The pin proves only "the same sshd as first seen", not what runs in the box.
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define REMOTE_SSH_TIMEOUT_MS 15000

struct remote_ssh {
	struct remote_stream *stream; /* owned */
	LIBSSH2_SESSION *session;
	int timeout_ms;
	int keepalive_s;
	int keepalive_max;
	int64_t last_rx_ms; /* monotonic time of the last byte received */
	int64_t next_ka_ms; /* next keepalive due */
	char host_key[REMOTE_FP_MAX];
};

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_global_init(void)
{
	ssh_init_rc = libssh2_init(0);
}

void remote_fp_format(const uint8_t digest[32], char out[REMOTE_FP_MAX])
{
	unsigned char b64[48];
	int n;

	memcpy(out, "SHA256:", 7);
	n = EVP_EncodeBlock(b64, digest, 32); /* 44 chars, one '=' of padding */
	while (n > 0 && b64[n - 1] == '=')
		n--;
	memcpy(out + 7, b64, (size_t)n);
	out[7 + n] = '\0';
}

static LIBSSH2_RECV_FUNC(ssh_recv_cb)
{
	struct remote_ssh *ssh = *abstract;
	ssize_t r = remote__stream_read(ssh->stream, buffer, length);

	if (r > 0)
		ssh->last_rx_ms = remote__now_ms();
	return r;
}

static LIBSSH2_SEND_FUNC(ssh_send_cb)
{
	struct remote_ssh *ssh = *abstract;

	return remote__stream_write(ssh->stream, buffer, length);
}

LIBSSH2_SESSION *remote__ssh_session(struct remote_ssh *ssh)
{
	return ssh->session;
}

int remote__ssh_timeout_ms(const struct remote_ssh *ssh)
{
	return ssh->timeout_ms;
}

void remote__ssh_kill(struct remote_ssh *ssh)
{
	remote__stream_kill(ssh->stream);
}

const char *remote__ssh_errmsg(struct remote_ssh *ssh)
{
	char *msg = NULL;

	if (ssh->session == NULL)
		return "no session";
	(void)libssh2_session_last_error(ssh->session, &msg, NULL, 0);
	return msg != NULL ? msg : "unknown error";
}

int remote__ssh_pollfd(struct remote_ssh *ssh, struct pollfd *pfd)
{
	int dirs = libssh2_session_block_directions(ssh->session);

	pfd->fd = remote__stream_fd(ssh->stream);
	pfd->events = POLLIN | remote__stream_events(ssh->stream);
	if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		pfd->events |= POLLOUT;
	pfd->revents = 0;
	return remote__stream_pending(ssh->stream);
}

int remote__ssh_tick(struct remote_ssh *ssh, struct tdxr_err *err)
{
	int64_t now = remote__now_ms();
	int next = 0;

	if (ssh->keepalive_s <= 0)
		return 0;
	if (now - ssh->last_rx_ms > (int64_t)ssh->keepalive_s * 1000 * (ssh->keepalive_max + 1))
		return tdxr_err_set(err, TDXR_ETIMEOUT, "ssh: peer silent for %lld s (keepalive)",
		                    (long long)((now - ssh->last_rx_ms) / 1000));
	if (now >= ssh->next_ka_ms) {
		/* EAGAIN here only means the packet is queued; libssh2 flushes it later. */
		(void)libssh2_keepalive_send(ssh->session, &next);
		ssh->next_ka_ms = now + (int64_t)ssh->keepalive_s * 1000;
	}
	return 0;
}

int remote__ssh_wait(struct remote_ssh *ssh, int64_t deadline_ms, const char *step, struct tdxr_err *err)
{
	struct pollfd pfd;
	int64_t left;
	int rc;

	if (remote__ssh_pollfd(ssh, &pfd))
		return 0;
	for (;;) {
		left = deadline_ms - remote__now_ms();
		if (left <= 0)
			return tdxr_err_set(err, TDXR_ETIMEOUT, "ssh %s: timed out", step);
		rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return tdxr_err_set(err, TDXR_EIO, "ssh %s: poll: %s", step, strerror(errno));
		if (rc > 0)
			return 0;
	}
}

/* Drives one libssh2 call expression to completion under the session deadline. */
#define SSH_RETRY(ssh, rcvar, expr, step, deadline, err)                                                     \
	do {                                                                                                 \
		for (;;) {                                                                                   \
			(rcvar) = (expr);                                                                    \
			if ((rcvar) != LIBSSH2_ERROR_EAGAIN)                                                 \
				break;                                                                       \
			if (remote__ssh_wait((ssh), (deadline), (step), (err)) != 0) {                       \
				(rcvar) = TDXR_ETIMEOUT;                                                     \
				break;                                                                       \
			}                                                                                    \
		}                                                                                            \
	} while (0)

static int check_host_key(struct remote_ssh *ssh, const char *pin, struct tdxr_err *err)
{
	const char *h = libssh2_hostkey_hash(ssh->session, LIBSSH2_HOSTKEY_HASH_SHA256);
	size_t a, b;

	if (h == NULL)
		return tdxr_err_set(err, TDXR_EAUTH, "ssh: server host key unavailable");
	remote_fp_format((const uint8_t *)h, ssh->host_key);
	if (pin == NULL)
		return 0;
	a = strlen(pin);
	b = strlen(ssh->host_key);
	if (a != b || CRYPTO_memcmp(pin, ssh->host_key, a) != 0)
		return tdxr_err_set(err, TDXR_EAUTH,
		                    "ssh: host key changed: pinned %s, server presented %s "
		                    "(not the sshd first seen for this lease; refusing)",
		                    pin, ssh->host_key);
	return 0;
}

int remote_ssh_open(struct remote_stream *stream, const struct remote_ssh_opts *o, struct remote_ssh **out,
                    struct tdxr_err *err)
{
	struct remote_ssh *ssh = NULL;
	int64_t deadline;
	int rc;

	*out = NULL;
	if (o->user == NULL || o->key_file == NULL) {
		remote_stream_free(stream);
		return tdxr_err_set(err, TDXR_EINVAL, "ssh: user and key_file are required");
	}
	pthread_once(&ssh_once, ssh_global_init);
	if (ssh_init_rc != 0) {
		remote_stream_free(stream);
		return tdxr_err_set(err, TDXR_ERROR, "ssh: libssh2_init failed");
	}
	ssh = calloc(1, sizeof(*ssh));
	if (ssh == NULL) {
		remote_stream_free(stream);
		return tdxr_err_set(err, TDXR_ENOMEM, "ssh: out of memory");
	}
	ssh->stream = stream;
	ssh->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : REMOTE_SSH_TIMEOUT_MS;
	ssh->keepalive_s = o->keepalive_s == 0 ? 15 : o->keepalive_s;
	ssh->keepalive_max = o->keepalive_max > 0 ? o->keepalive_max : 3;
	ssh->last_rx_ms = remote__now_ms();
	ssh->session = libssh2_session_init_ex(NULL, NULL, NULL, ssh);
	if (ssh->session == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "ssh: libssh2_session_init failed");
		goto out;
	}
	libssh2_session_callback_set(ssh->session, LIBSSH2_CALLBACK_RECV, (void *)ssh_recv_cb);
	libssh2_session_callback_set(ssh->session, LIBSSH2_CALLBACK_SEND, (void *)ssh_send_cb);
	libssh2_session_set_blocking(ssh->session, 0);
	deadline = remote__now_ms() + ssh->timeout_ms;
	SSH_RETRY(ssh, rc, libssh2_session_handshake(ssh->session, remote__stream_fd(stream)), "handshake",
	          deadline, err);
	if (rc == TDXR_ETIMEOUT)
		goto out;
	if (rc != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "ssh handshake: %s", remote__ssh_errmsg(ssh));
		goto out;
	}
	rc = check_host_key(ssh, o->host_key_pin, err);
	if (rc != 0)
		goto out;
	SSH_RETRY(ssh, rc,
	          libssh2_userauth_publickey_fromfile_ex(ssh->session, o->user, (unsigned)strlen(o->user),
	                                                 NULL, o->key_file, NULL),
	          "authentication", deadline, err);
	if (rc == TDXR_ETIMEOUT)
		goto out;
	if (rc != 0) {
		rc = tdxr_err_set(err, TDXR_EAUTH,
		                  "ssh: public-key authentication as %s with %s: %s (libssh2 %d)", o->user,
		                  o->key_file, remote__ssh_errmsg(ssh), rc);
		goto out;
	}
	if (ssh->keepalive_s > 0) {
		libssh2_keepalive_config(ssh->session, 1, (unsigned)ssh->keepalive_s);
		ssh->next_ka_ms = remote__now_ms() + (int64_t)ssh->keepalive_s * 1000;
	}
	rc = 0;
out:
	if (rc != 0) {
		remote_ssh_free(ssh);
		return rc;
	}
	*out = ssh;
	return 0;
}

const char *remote_ssh_host_key(const struct remote_ssh *ssh)
{
	return ssh->host_key;
}

void remote_ssh_free(struct remote_ssh *ssh)
{
	if (ssh == NULL)
		return;
	if (ssh->session != NULL) {
		/* One non-blocking attempt at a polite goodbye, then the stream refuses
		 * all I/O: libssh2 (non-blocking) would otherwise return EAGAIN from
		 * its frees on an unresponsive peer and leak the session. */
		(void)libssh2_session_disconnect(ssh->session, "bye");
		remote__stream_kill(ssh->stream);
		(void)libssh2_session_free(ssh->session);
	}
	remote_stream_free(ssh->stream);
	free(ssh);
}
