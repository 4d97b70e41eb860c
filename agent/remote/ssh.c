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
 *
 * Reconnect: a session made by remote_ssh_connect keeps a copy of its endpoint and
 * options. When opening a channel finds it dead (EOF, socket error, timeout, or
 * killed after a keepalive failure), the old session is torn down first (its
 * libssh2 callbacks reach this struct's stream, so it must be gone before a new
 * stream takes that place), then a new one is dialled with the host key of the
 * first connection as the pin, a bounded number of times with backoff. Only the
 * opening of a channel retries; a channel that was running fails with its command.
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define REMOTE_SSH_TIMEOUT_MS 15000
#define REMOTE_SSH_RECONNECT_MAX 3
#define REMOTE_SSH_BACKOFF_MS 500

/* How to dial again (remote_ssh_connect): owned copies of the caller's strings. */
struct ssh_redial {
	struct remote_endpoint ep;
	char *host, *server_name, *connect_to, *ca_file, *user, *key_file;
	int max; /* attempts per dead session; 0 = no redial */
};

struct remote_ssh {
	struct remote_stream *stream; /* owned; NULL after a failed reconnect */
	LIBSSH2_SESSION *session;     /* NULL after a failed reconnect */
	int timeout_ms;
	int keepalive_s;
	int keepalive_max;
	int64_t last_rx_ms; /* monotonic time of the last byte received */
	int64_t next_ka_ms; /* next keepalive due */
	int dead;           /* the session cannot carry a new channel */
	unsigned reconnects;
	struct ssh_redial rd;
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
	ssh->dead = 1;
	if (ssh->stream != NULL)
		remote__stream_kill(ssh->stream);
}

void remote__ssh_mark_dead(struct remote_ssh *ssh)
{
	ssh->dead = 1;
}

int remote__ssh_is_dead(const struct remote_ssh *ssh)
{
	return ssh->dead || ssh->session == NULL;
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

	if (ssh->keepalive_s <= 0 || ssh->session == NULL)
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

void remote__ssh_keepalive_send(struct remote_ssh *ssh)
{
	int64_t now = remote__now_ms();
	int next = 0;

	if (ssh->keepalive_s <= 0 || ssh->session == NULL || ssh->dead || now < ssh->next_ka_ms)
		return;
	(void)libssh2_keepalive_send(ssh->session, &next);
	ssh->next_ka_ms = now + (int64_t)ssh->keepalive_s * 1000;
	/* Nobody reads the answers now; the silence clock restarts when someone does. */
	ssh->last_rx_ms = now;
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
	char seen[REMOTE_FP_MAX];
	size_t a, b;

	if (h == NULL)
		return tdxr_err_set(err, TDXR_EAUTH, "ssh: server host key unavailable");
	remote_fp_format((const uint8_t *)h, seen);
	if (pin != NULL) {
		a = strlen(pin);
		b = strlen(seen);
		if (a != b || CRYPTO_memcmp(pin, seen, a) != 0)
			return tdxr_err_set(err, TDXR_EAUTH,
			                    "ssh: host key changed: pinned %s, server presented %s "
			                    "(not the sshd first seen for this lease; refusing)",
			                    pin, seen);
	}
	/* (pin may point at ssh->host_key itself: a reconnect pins the first key) */
	memcpy(ssh->host_key, seen, sizeof(seen));
	return 0;
}

/* Handshake, host-key check and authentication on ssh->stream (already set);
 * ssh->session is created here. On failure the caller frees what is left. */
static int ssh_session_setup(struct remote_ssh *ssh, const char *user, const char *key_file, const char *pin,
                             struct tdxr_err *err)
{
	int64_t deadline;
	int rc;

	ssh->last_rx_ms = remote__now_ms();
	ssh->session = libssh2_session_init_ex(NULL, NULL, NULL, ssh);
	if (ssh->session == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "ssh: libssh2_session_init failed");
	libssh2_session_callback_set(ssh->session, LIBSSH2_CALLBACK_RECV, (void *)ssh_recv_cb);
	libssh2_session_callback_set(ssh->session, LIBSSH2_CALLBACK_SEND, (void *)ssh_send_cb);
	libssh2_session_set_blocking(ssh->session, 0);
	deadline = remote__now_ms() + ssh->timeout_ms;
	SSH_RETRY(ssh, rc, libssh2_session_handshake(ssh->session, remote__stream_fd(ssh->stream)), "handshake",
	          deadline, err);
	if (rc == TDXR_ETIMEOUT)
		return rc;
	if (rc != 0)
		return tdxr_err_set(err, TDXR_EIO, "ssh handshake: %s", remote__ssh_errmsg(ssh));
	rc = check_host_key(ssh, pin, err);
	if (rc != 0)
		return rc;
	SSH_RETRY(ssh, rc,
	          libssh2_userauth_publickey_fromfile_ex(ssh->session, user, (unsigned)strlen(user), NULL,
	                                                 key_file, NULL),
	          "authentication", deadline, err);
	if (rc == TDXR_ETIMEOUT)
		return rc;
	if (rc != 0)
		return tdxr_err_set(err, TDXR_EAUTH, "ssh: public-key authentication as %s with %s: %s (libssh2 %d)",
		                    user, key_file, remote__ssh_errmsg(ssh), rc);
	if (ssh->keepalive_s > 0) {
		libssh2_keepalive_config(ssh->session, 1, (unsigned)ssh->keepalive_s);
		ssh->next_ka_ms = remote__now_ms() + (int64_t)ssh->keepalive_s * 1000;
	}
	ssh->dead = 0;
	return 0;
}

/* Frees the session and its stream (see remote_ssh_free). */
static void ssh_session_drop(struct remote_ssh *ssh)
{
	if (ssh->session != NULL) {
		/* One non-blocking attempt at a polite goodbye, then the stream refuses
		 * all I/O: libssh2 (non-blocking) would otherwise return EAGAIN from
		 * its frees on an unresponsive peer and leak the session. */
		(void)libssh2_session_disconnect(ssh->session, "bye");
		if (ssh->stream != NULL)
			remote__stream_kill(ssh->stream);
		(void)libssh2_session_free(ssh->session);
		ssh->session = NULL;
	}
	remote_stream_free(ssh->stream);
	ssh->stream = NULL;
}

int remote_ssh_open(struct remote_stream *stream, const struct remote_ssh_opts *o, struct remote_ssh **out,
                    struct tdxr_err *err)
{
	struct remote_ssh *ssh = NULL;
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
	rc = ssh_session_setup(ssh, o->user, o->key_file, o->host_key_pin, err);
	if (rc != 0) {
		remote_ssh_free(ssh);
		return rc;
	}
	*out = ssh;
	return 0;
}

static void ssh_redial_dispose(struct ssh_redial *rd)
{
	free(rd->host);
	free(rd->server_name);
	free(rd->connect_to);
	free(rd->ca_file);
	free(rd->user);
	free(rd->key_file);
	memset(rd, 0, sizeof(*rd));
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	*out = strdup(s);
	return *out == NULL ? -1 : 0;
}

int remote_ssh_connect(const struct remote_endpoint *ep, const struct remote_ssh_opts *o, struct remote_ssh **out,
                       struct tdxr_err *err)
{
	struct remote_stream *s = NULL;
	struct remote_ssh *ssh = NULL;
	struct ssh_redial rd;
	int rc;

	*out = NULL;
	memset(&rd, 0, sizeof(rd));
	rd.ep = *ep;
	if (dup_opt(ep->host, &rd.host) || dup_opt(ep->server_name, &rd.server_name) ||
	    dup_opt(ep->connect_to, &rd.connect_to) || dup_opt(ep->ca_file, &rd.ca_file) ||
	    dup_opt(o->user, &rd.user) || dup_opt(o->key_file, &rd.key_file)) {
		ssh_redial_dispose(&rd);
		return tdxr_err_set(err, TDXR_ENOMEM, "ssh: out of memory");
	}
	rd.ep.host = rd.host;
	rd.ep.server_name = rd.server_name;
	rd.ep.connect_to = rd.connect_to;
	rd.ep.ca_file = rd.ca_file;
	rd.max = o->reconnect_max == 0 ? REMOTE_SSH_RECONNECT_MAX : (o->reconnect_max < 0 ? 0 : o->reconnect_max);
	rc = remote_stream_open(&rd.ep, &s, err);
	if (rc == 0)
		rc = remote_ssh_open(s, o, &ssh, err);
	if (rc != 0) {
		ssh_redial_dispose(&rd);
		return rc;
	}
	ssh->rd = rd;
	*out = ssh;
	return 0;
}

unsigned remote_ssh_reconnects(const struct remote_ssh *ssh)
{
	return ssh->reconnects;
}

/* Replaces a dead session with a new one to the same endpoint, same host key. */
int remote__ssh_reconnect(struct remote_ssh *ssh, struct tdxr_err *err)
{
	struct tdxr_err last;
	int attempt, rc = TDXR_EIO;

	if (ssh->rd.max <= 0 || ssh->rd.user == NULL)
		return tdxr_err_set(err, TDXR_EIO, "ssh: the connection to the box is gone (no reconnect for this "
		                                   "session)");
	tdxr_err_clear(&last);
	ssh_session_drop(ssh); /* first: its callbacks would reach the new stream */
	for (attempt = 0; attempt < ssh->rd.max; attempt++) {
		if (attempt > 0) {
			int64_t ms = (int64_t)REMOTE_SSH_BACKOFF_MS << (attempt - 1);
			struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
		}
		rc = remote_stream_open(&ssh->rd.ep, &ssh->stream, &last);
		if (rc == 0)
			rc = ssh_session_setup(ssh, ssh->rd.user, ssh->rd.key_file, ssh->host_key, &last);
		if (rc == 0) {
			ssh->reconnects++;
			return 0;
		}
		ssh_session_drop(ssh);
		if (rc == TDXR_EAUTH)
			break; /* a changed host key or a refused key: retrying will not help */
	}
	ssh->dead = 1;
	attempt = attempt < ssh->rd.max ? attempt + 1 : attempt;
	return tdxr_err_set(err, rc, "ssh: the connection to the box was lost and reconnecting failed (%d "
	                             "attempt%s): %s",
	                    attempt, attempt == 1 ? "" : "s", last.msg);
}

int remote__ssh_chan_open(struct remote_ssh *ssh, int64_t deadline, LIBSSH2_CHANNEL **out, struct tdxr_err *err)
{
	LIBSSH2_CHANNEL *ch;
	int tries, rc, e;

	*out = NULL;
	for (tries = 0; tries < 2; tries++) {
		if (remote__ssh_is_dead(ssh)) {
			rc = remote__ssh_reconnect(ssh, err);
			if (rc != 0)
				return rc;
			deadline = remote__now_ms() + ssh->timeout_ms;
		}
		for (;;) {
			ch = libssh2_channel_open_session(ssh->session);
			if (ch != NULL) {
				*out = ch;
				return 0;
			}
			e = libssh2_session_last_errno(ssh->session);
			if (e != LIBSSH2_ERROR_EAGAIN)
				break;
			if (remote__ssh_wait(ssh, deadline, "open channel", err) != 0) {
				e = LIBSSH2_ERROR_TIMEOUT;
				break;
			}
		}
		if (e == LIBSSH2_ERROR_CHANNEL_FAILURE)
			return tdxr_err_set(err, TDXR_EIO, "ssh: open channel: %s", remote__ssh_errmsg(ssh));
		/* Anything else means the session itself is unusable. */
		if (ssh->rd.max <= 0)
			return e == LIBSSH2_ERROR_TIMEOUT
			           ? TDXR_ETIMEOUT
			           : tdxr_err_set(err, TDXR_EIO, "ssh: open channel: %s", remote__ssh_errmsg(ssh));
		remote__ssh_kill(ssh);
	}
	return tdxr_err_set(err, TDXR_EIO, "ssh: open channel: the session died again after reconnecting");
}

const char *remote_ssh_host_key(const struct remote_ssh *ssh)
{
	return ssh->host_key;
}

void remote_ssh_free(struct remote_ssh *ssh)
{
	if (ssh == NULL)
		return;
	ssh_session_drop(ssh);
	ssh_redial_dispose(&ssh->rd);
	free(ssh);
}
