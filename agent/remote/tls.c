/*
 * tls.c - the byte stream under SSH: plain TCP (direct mode) or TLS to the dstack
 * gateway. TLS: OpenSSL client, TLS >= 1.2, SNI = server_name, full chain
 * verification against a CA file or the system store, hostname verification
 * (SSL_set1_host) on the same name; the socket may be dialled at another address
 * (connect_to) without changing any name check. Connect and handshake each have a
 * deadline; the socket is non-blocking from the start and stays so for libssh2.
 *
 * Trust boundary: a completed handshake proves only that the peer holds a key
 * certified for server_name by a trusted CA, i.e. that we reached the gateway that
 * owns the name. It says nothing about the box behind it.
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define REMOTE_DEFAULT_TIMEOUT_MS 10000

/* Outgoing bytes are queued here and the write callback always takes a whole
 * packet: libssh2 1.10 fails (LIBSSH2_ERROR_SOCKET_SEND via BAD_USE) when a
 * partially sent packet is pending and another packet, e.g. a window adjust from
 * a read, is sent. TLS partial writes (one record) made that routine. The queue
 * is bounded in practice by the SSH windows; REMOTE_OUTQ_MAX is the hard stop. */
#define REMOTE_OUTQ_MAX (16u * 1024u * 1024u)

struct remote_stream;
static int stream_flush(struct remote_stream *s);

struct remote_stream {
	int fd;
	SSL_CTX *ctx; /* NULL in direct mode */
	SSL *ssl;
	short want;           /* POLLIN/POLLOUT the last blocked op needs */
	struct tdxr_buf outq; /* queued, not yet written */
	size_t outq_off;      /* bytes of outq already written */
	int dead;             /* a write failed: errno-style value */
};

int64_t remote__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int remote__hostport_parse(const char *s, char *host, size_t hostcap, unsigned *port, struct tdxr_err *err)
{
	const char *colon, *h = s;
	size_t hl;
	uint64_t p;

	if (s == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "connect_to: missing");
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return tdxr_err_set(err, TDXR_EINVAL, "connect_to '%s': expected [addr]:port", s);
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return tdxr_err_set(err, TDXR_EINVAL, "connect_to '%s': expected host:port", s);
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostcap)
		return tdxr_err_set(err, TDXR_EINVAL, "connect_to '%s': bad host", s);
	if (tdxr_parse_u64(colon + 1, 65535, &p, NULL) != 0 || p == 0 || p > 65535)
		return tdxr_err_set(err, TDXR_EINVAL, "connect_to '%s': bad port", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)p;
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

/* Waits for events on fd until deadline; 0 ready, TDXR_ETIMEOUT, TDXR_EIO. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int64_t left;
	int rc;

	for (;;) {
		left = deadline - remote__now_ms();
		if (left <= 0)
			return TDXR_ETIMEOUT;
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return TDXR_EIO;
		if (rc > 0)
			return 0;
	}
}

/* Non-blocking connect to host:port with a deadline; tries every address. */
static int tcp_connect(const char *host, unsigned port, int timeout_ms, int *fd_out, struct tdxr_err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[8];
	int64_t deadline = remote__now_ms() + timeout_ms;
	int fd = -1, rc, soerr, one = 1, last = 0;
	socklen_t sl;

	*fd_out = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%u", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
		return tdxr_err_set(err, TDXR_EIO, "connect %s:%u: resolve: %s", host, port,
		                    gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (set_nonblock(fd) < 0) {
			last = errno;
			goto next;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			last = errno;
			goto next;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == TDXR_ETIMEOUT) {
			close(fd);
			freeaddrinfo(res);
			return tdxr_err_set(err, TDXR_ETIMEOUT, "connect %s:%u: no answer within %d ms", host,
			                    port, timeout_ms);
		}
		soerr = 0;
		sl = sizeof(soerr);
		if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
			break;
		last = soerr != 0 ? soerr : errno;
	next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "connect %s:%u: %s", host, port,
		                    strerror(last != 0 ? last : ECONNREFUSED));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd_out = fd;
	return 0;
}

/* The most useful reason for a failed handshake: the verify result, else the
 * OpenSSL error queue. */
static int tls_fail(struct remote_stream *s, const char *name, struct tdxr_err *err)
{
	long vr = SSL_get_verify_result(s->ssl);
	unsigned long e;
	char buf[160];

	if (vr != X509_V_OK) {
		ERR_clear_error();
		return tdxr_err_set(err, TDXR_EAUTH, "tls %s: certificate rejected: %s", name,
		                    X509_verify_cert_error_string(vr));
	}
	e = ERR_get_error();
	ERR_clear_error();
	if (e == 0)
		return tdxr_err_set(err, TDXR_EIO, "tls %s: connection closed during handshake", name);
	ERR_error_string_n(e, buf, sizeof(buf));
	return tdxr_err_set(err, TDXR_EIO, "tls %s: handshake: %s", name, buf);
}

static int tls_start(struct remote_stream *s, const struct remote_endpoint *ep, int64_t deadline,
                     struct tdxr_err *err)
{
	const char *name = ep->server_name;
	int rc, e;

	s->ctx = SSL_CTX_new(TLS_client_method());
	if (s->ctx == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "tls: SSL_CTX_new");
	if (SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "tls: cannot require TLS 1.2");
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
	if (ep->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(s->ctx, ep->ca_file, NULL) != 1) {
			ERR_clear_error();
			return tdxr_err_set(err, TDXR_EINVAL, "tls: cannot load CA file %s", ep->ca_file);
		}
	} else if (SSL_CTX_set_default_verify_paths(s->ctx) != 1) {
		ERR_clear_error();
		return tdxr_err_set(err, TDXR_ERROR, "tls: cannot load the system trust store");
	}
	SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	s->ssl = SSL_new(s->ctx);
	if (s->ssl == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "tls: SSL_new");
	if (SSL_set_tlsext_host_name(s->ssl, name) != 1 || SSL_set1_host(s->ssl, name) != 1) {
		ERR_clear_error();
		return tdxr_err_set(err, TDXR_EINVAL, "tls: bad server name '%s'", name);
	}
	SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set_fd(s->ssl, s->fd) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "tls: SSL_set_fd");
	for (;;) {
		ERR_clear_error();
		rc = SSL_connect(s->ssl);
		if (rc == 1)
			return 0;
		e = SSL_get_error(s->ssl, rc);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			rc = wait_fd(s->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (rc == TDXR_ETIMEOUT)
				return tdxr_err_set(err, TDXR_ETIMEOUT,
				                    "tls %s: handshake not done within %d ms", name,
				                    ep->handshake_timeout_ms > 0 ? ep->handshake_timeout_ms
				                                                 : REMOTE_DEFAULT_TIMEOUT_MS);
			if (rc != 0)
				return tdxr_err_set(err, TDXR_EIO, "tls %s: poll: %s", name, strerror(errno));
			continue;
		}
		return tls_fail(s, name, err);
	}
}

int remote_stream_open(const struct remote_endpoint *ep, struct remote_stream **out, struct tdxr_err *err)
{
	struct remote_stream *s = NULL;
	char host[256];
	unsigned port;
	int ctmo, htmo, rc;

	*out = NULL;
	ctmo = ep->connect_timeout_ms > 0 ? ep->connect_timeout_ms : REMOTE_DEFAULT_TIMEOUT_MS;
	htmo = ep->handshake_timeout_ms > 0 ? ep->handshake_timeout_ms : REMOTE_DEFAULT_TIMEOUT_MS;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "stream: out of memory");
	s->fd = -1;
	tdxr_buf_init(&s->outq, REMOTE_OUTQ_MAX);
	if (ep->transport == REMOTE_TRANSPORT_DIRECT) {
		if (ep->host == NULL || ep->port == 0 || ep->port > 65535) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "direct transport needs host and port");
			goto out;
		}
		rc = tcp_connect(ep->host, ep->port, ctmo, &s->fd, err);
		goto out;
	}
	if (ep->transport != REMOTE_TRANSPORT_TLS || ep->server_name == NULL || ep->server_name[0] == '\0') {
		rc = tdxr_err_set(err, TDXR_EINVAL, "tls transport needs a server name");
		goto out;
	}
	if (ep->connect_to != NULL) {
		rc = remote__hostport_parse(ep->connect_to, host, sizeof(host), &port, err);
		if (rc != 0)
			goto out;
	} else {
		if (strlen(ep->server_name) >= sizeof(host)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "tls: server name too long");
			goto out;
		}
		memcpy(host, ep->server_name, strlen(ep->server_name) + 1);
		port = ep->port != 0 ? ep->port : 443;
	}
	rc = tcp_connect(host, port, ctmo, &s->fd, err);
	if (rc != 0)
		goto out;
	rc = tls_start(s, ep, remote__now_ms() + htmo, err);
out:
	if (rc != 0) {
		remote_stream_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void remote_stream_free(struct remote_stream *s)
{
	if (s == NULL)
		return;
	if (s->ssl != NULL) {
		(void)SSL_shutdown(s->ssl); /* best effort close_notify; never waits */
		SSL_free(s->ssl);
	}
	SSL_CTX_free(s->ctx);
	if (s->fd >= 0)
		close(s->fd);
	ERR_clear_error();
	tdxr_buf_dispose(&s->outq);
	free(s);
}

ssize_t remote__stream_read(struct remote_stream *s, void *p, size_t n)
{
	ssize_t r;
	size_t got = 0;
	int rc, e;

	if (s->dead != 0)
		return -ECONNRESET;
	(void)stream_flush(s); /* queued output goes first; reading goes on regardless */
	s->want = 0;
	if (s->ssl == NULL) {
		r = recv(s->fd, p, n, 0);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
				s->want = POLLIN;
				return -EAGAIN;
			}
			return -errno;
		}
		return r;
	}
	/* SSL_get_error reads the thread's error queue: leftovers from unrelated
	 * OpenSSL calls (libssh2 loading a key) would turn WANT_READ into a failure. */
	ERR_clear_error();
	rc = SSL_read_ex(s->ssl, p, n, &got);
	if (rc == 1)
		return (ssize_t)got;
	e = SSL_get_error(s->ssl, rc);
	switch (e) {
	case SSL_ERROR_WANT_READ: s->want = POLLIN; return -EAGAIN;
	case SSL_ERROR_WANT_WRITE: s->want = POLLOUT; return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN: return 0;
	default: ERR_clear_error(); return -ECONNRESET;
	}
}

static ssize_t raw_write(struct remote_stream *s, const void *p, size_t n)
{
	ssize_t r;
	size_t put = 0;
	int rc, e;

	s->want = 0;
	if (s->ssl == NULL) {
		r = send(s->fd, p, n, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
				s->want = POLLOUT;
				return -EAGAIN;
			}
			return -errno;
		}
		return r;
	}
	ERR_clear_error();
	rc = SSL_write_ex(s->ssl, p, n, &put);
	if (rc == 1)
		return (ssize_t)put;
	e = SSL_get_error(s->ssl, rc);
	switch (e) {
	case SSL_ERROR_WANT_READ: s->want = POLLIN; return -EAGAIN;
	case SSL_ERROR_WANT_WRITE: s->want = POLLOUT; return -EAGAIN;
	default: ERR_clear_error(); return -EPIPE;
	}
}

/* Writes what is queued; 0 when empty, -EAGAIN when the socket is full. */
static int stream_flush(struct remote_stream *s)
{
	ssize_t r;

	if (s->dead != 0)
		return -s->dead;
	while (s->outq_off < s->outq.len) {
		r = raw_write(s, s->outq.data + s->outq_off, s->outq.len - s->outq_off);
		if (r == -EAGAIN)
			return -EAGAIN;
		if (r < 0) {
			s->dead = (int)-r;
			return (int)r;
		}
		s->outq_off += (size_t)r;
	}
	tdxr_buf_reset(&s->outq);
	s->outq_off = 0;
	return 0;
}

ssize_t remote__stream_write(struct remote_stream *s, const void *p, size_t n)
{
	int rc;

	rc = stream_flush(s);
	if (rc != 0 && rc != -EAGAIN)
		return rc;
	if (rc == 0) {
		/* Nothing queued: write straight through, queue only the rest. */
		ssize_t r = raw_write(s, p, n);

		if (r < 0 && r != -EAGAIN) {
			s->dead = (int)-r;
			return r;
		}
		if (r < 0)
			r = 0;
		if ((size_t)r == n)
			return r;
		if (tdxr_buf_append(&s->outq, (const uint8_t *)p + r, n - (size_t)r, NULL) != 0) {
			s->want = POLLOUT;
			return r > 0 ? r : -EAGAIN;
		}
		s->want = POLLOUT;
		return (ssize_t)n;
	}
	/* A write is pending on the socket. OpenSSL wants it retried with the same
	 * leading bytes; appending keeps them (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
	if (tdxr_buf_append(&s->outq, p, n, NULL) != 0) {
		s->want = POLLOUT;
		return -EAGAIN;
	}
	s->want = POLLOUT;
	return (ssize_t)n;
}

void remote__stream_kill(struct remote_stream *s)
{
	if (s->dead == 0)
		(void)stream_flush(s);
	if (s->dead == 0)
		s->dead = EPIPE;
}

int remote__stream_fd(const struct remote_stream *s)
{
	return s->fd;
}

int remote__stream_pending(const struct remote_stream *s)
{
	return s->ssl != NULL && SSL_pending(s->ssl) > 0;
}

short remote__stream_events(const struct remote_stream *s)
{
	short ev = s->want;

	if (s->outq_off < s->outq.len)
		ev |= POLLOUT;
	return ev;
}
