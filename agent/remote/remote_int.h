/*
 * remote_int.h - shared between the files of agent/remote/ only: the stream's
 * non-blocking read/write used by libssh2's I/O callbacks, and the session's
 * wait/poll helpers used by exec.c. Not part of the public API.
 */
#ifndef TDXR_REMOTE_REMOTE_INT_H
#define TDXR_REMOTE_REMOTE_INT_H

#include "agent/remote/remote.h"

#include <libssh2.h>
#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic milliseconds. */
int64_t remote__now_ms(void);

/* Non-blocking I/O on the stream: bytes moved, 0 on EOF (read), -EAGAIN when it
 * would block (remote__stream_events then says which direction to poll), other
 * negative errno-style values on failure. */
ssize_t remote__stream_read(struct remote_stream *s, void *p, size_t n);
ssize_t remote__stream_write(struct remote_stream *s, const void *p, size_t n);
int remote__stream_fd(const struct remote_stream *s);
/* Decrypted bytes already buffered (poll must not wait when > 0). */
int remote__stream_pending(const struct remote_stream *s);
/* POLLIN/POLLOUT the last blocked operation needs (0 = none recorded). */
short remote__stream_events(const struct remote_stream *s);
/* Gives up on the peer: one last non-blocking flush, then every read and write
 * fails at once, so libssh2's teardown frees everything instead of waiting. */
void remote__stream_kill(struct remote_stream *s);
/* Parses "host:port" or "[v6]:port" into host (hostcap bytes) and port. */
int remote__hostport_parse(const char *s, char *host, size_t hostcap, unsigned *port, struct tdxr_err *err);

LIBSSH2_SESSION *remote__ssh_session(struct remote_ssh *ssh);
int remote__ssh_timeout_ms(const struct remote_ssh *ssh);
/* Fills pfd for the session's socket (events the session is blocked on, plus
 * POLLIN); returns 1 when buffered data means the caller must not wait. */
int remote__ssh_pollfd(struct remote_ssh *ssh, struct pollfd *pfd);
/* Waits until the session can make progress or deadline_ms (monotonic) passes
 * (TDXR_ETIMEOUT naming step). */
int remote__ssh_wait(struct remote_ssh *ssh, int64_t deadline_ms, const char *step, struct tdxr_err *err);
/* Keepalive bookkeeping; TDXR_ETIMEOUT when the peer has been silent too long. */
int remote__ssh_tick(struct remote_ssh *ssh, struct tdxr_err *err);
/* remote__stream_kill on the session's stream (a dead or unresponsive peer); the
 * session is marked dead. */
void remote__ssh_kill(struct remote_ssh *ssh);
/* Marks the session dead without touching the stream (it is torn down by the next
 * channel open, which reconnects). */
void remote__ssh_mark_dead(struct remote_ssh *ssh);
int remote__ssh_is_dead(const struct remote_ssh *ssh);
/* Opens a session channel by deadline; when the session is (or turns out) dead
 * and was made by remote_ssh_connect, reconnects first (see ssh.c). A refusal by
 * the server (LIBSSH2_ERROR_CHANNEL_FAILURE) is TDXR_EIO without a reconnect. */
int remote__ssh_chan_open(struct remote_ssh *ssh, int64_t deadline, LIBSSH2_CHANNEL **out, struct tdxr_err *err);
/* Tears the session down and dials again (remote_ssh_connect's endpoint, the
 * first connection's host key), bounded attempts with backoff; blocks. Every
 * channel of the old session is freed with it. TDXR_EIO when the session cannot
 * be redialled. */
int remote__ssh_reconnect(struct remote_ssh *ssh, struct tdxr_err *err);
/* The last libssh2 error as text (borrowed). */
const char *remote__ssh_errmsg(struct remote_ssh *ssh);

/* exec.c's cancel: the command a second channel runs to TERM the process group
 * whose leader wrote its pid to $TMPDIR/.tdxr-exec-TOKEN.pid; its length, or -1
 * when cap is too small. */
int remote__exec_kill_cmd(const char *token, char *out, size_t cap);
/* Sends a keepalive when one is due, without the "peer silent" check (for a
 * session nobody is reading from). */
void remote__ssh_keepalive_send(struct remote_ssh *ssh);

/* The multiplexer's wire format (mux.c; SOCK_SEQPACKET, one message each way).
 * Request: the header, then cmd_len bytes of command (no NUL), with exactly three
 * descriptors (stdin, stdout, stderr) as SCM_RIGHTS. Reply: one struct. */
#define REMOTE__MUX_MAGIC "TDXRMUX1"
#define REMOTE__MUX_CMD_MAX (64u * 1024u)
struct remote__mux_req {
	char magic[8];
	uint32_t cmd_len;
};
struct remote__mux_reply {
	char magic[8];
	int32_t rc; /* 0, or a TDXR_E* code with msg */
	int32_t exited;
	int32_t status;
	char signal[32]; /* "TERM", ... or "" */
	char msg[256];
};

#endif
