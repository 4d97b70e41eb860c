/*
 * remote.h - reaching a leased box: a byte stream (plain TCP or TLS through the
 * dstack gateway), an SSH session on top of it (libssh2, in-process, no ssh or
 * openssl binaries), command execution with streamed output, the guest-agent
 * requests, and the lease file that says where the box is.
 *
 * Trust boundary: everything that comes back from the box (output, exit status,
 * guest-agent responses) is untrusted and bounded; TLS proves only that we reached
 * the gateway that owns the name, the host-key pin only that it is the same sshd
 * as the first time. Attestation (attest/) is what proves what runs in the box.
 *
 * Ownership: whatever comes back through **out is the caller's and is freed with
 * the matching _free (every _free accepts NULL); pointers returned directly are
 * borrowed from the object they came from. One session is used by one thread at
 * a time (a running multiplexer is that thread until remote_mux_stop); only the
 * cancel and resize flags may be written from another thread or a signal handler.
 */
#ifndef TDXR_REMOTE_REMOTE_H
#define TDXR_REMOTE_REMOTE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ---- transport: a connected byte stream ---------------------------------- */

enum remote_transport {
	REMOTE_TRANSPORT_DIRECT = 0, /* plain TCP to host:port (local executor, no gateway) */
	REMOTE_TRANSPORT_TLS = 1,    /* TLS >= 1.2 to the gateway, SNI = server_name */
};

/* Caller-owned description of where to connect; strings are borrowed for the call. */
struct remote_endpoint {
	enum remote_transport transport;
	const char *host;         /* DIRECT: host to dial */
	unsigned port;            /* DIRECT: port; TLS: gateway port (0 = 443) */
	const char *server_name;  /* TLS: SNI and the name the certificate must carry */
	const char *connect_to;   /* TLS: "host:port" dialled instead of server_name:port (like
	                             curl --connect-to); name checks are unchanged. NULL = none */
	const char *ca_file;      /* TLS: PEM trust anchors; NULL = the system store */
	int connect_timeout_ms;   /* TCP connect (0 = 10 s) */
	int handshake_timeout_ms; /* TLS handshake (0 = 10 s) */
};

struct remote_stream;

/* Dials and (TLS) completes the handshake with chain + hostname verification. A
 * verification failure is TDXR_EAUTH with OpenSSL's reason in the message;
 * deadlines are TDXR_ETIMEOUT; refused/unreachable is TDXR_EIO. */
int remote_stream_open(const struct remote_endpoint *ep, struct remote_stream **out, struct tdxr_err *err);
void remote_stream_free(struct remote_stream *s);

/* ---- SSH session ------------------------------------------------------------ */

struct remote_ssh_opts {
	const char *user;         /* login name */
	const char *key_file;     /* OpenSSH ed25519 private key file (no passphrase) */
	const char *host_key_pin; /* "SHA256:<base64>" or NULL = trust on first use */
	int timeout_ms;           /* bound on each blocking step (0 = 15 s) */
	int keepalive_s;          /* keepalive interval (0 = 15 s, < 0 = off) */
	int keepalive_max;        /* silent intervals before the peer is dead (0 = 3) */
	int reconnect_max;        /* remote_ssh_connect only: attempts to re-establish a dead
	                             session when a new channel is opened (0 = 3, < 0 = never) */
};

struct remote_ssh;

/* Runs SSH over the stream (consumed: freed with the session, also on failure):
 * handshake, host-key check against the pin, public-key auth. A host key that is
 * not the pinned one is TDXR_EAUTH naming both fingerprints. */
int remote_ssh_open(struct remote_stream *stream, const struct remote_ssh_opts *o, struct remote_ssh **out,
                    struct tdxr_err *err);
/* Dials ep (remote_stream_open) and runs remote_ssh_open over it, and remembers how
 * (the strings of ep and o are copied). When a later channel open (exec, guest, mux)
 * finds the session dead - the server closed it, the network failed, keepalives went
 * unanswered - the session is re-established in place: same user and key, and the
 * host key must be the one this first connection saw (pinned, even when o had no
 * pin); up to reconnect_max attempts, 0.5 s, 1 s, 2 s ... apart. A channel that was
 * running when the session died still fails: nothing is ever re-run. */
int remote_ssh_connect(const struct remote_endpoint *ep, const struct remote_ssh_opts *o, struct remote_ssh **out,
                       struct tdxr_err *err);
/* How many times the session was re-established so far. */
unsigned remote_ssh_reconnects(const struct remote_ssh *ssh);
/* The server's host key as "SHA256:<base64, no padding>" (OpenSSH form); borrowed. */
const char *remote_ssh_host_key(const struct remote_ssh *ssh);
void remote_ssh_free(struct remote_ssh *ssh);

/* Formats a SHA-256 host-key digest the way OpenSSH prints it; out must hold
 * REMOTE_FP_MAX bytes. */
#define REMOTE_FP_MAX 64
void remote_fp_format(const uint8_t digest[32], char out[REMOTE_FP_MAX]);

/* ---- exec ------------------------------------------------------------------- */

enum remote_out { REMOTE_OUT_STDOUT = 1, REMOTE_OUT_STDERR = 2 };

/* Called for each chunk as it arrives (p is borrowed for the call). A non-zero
 * return stops the command as a cancel would (result: TDXR_ECANCELED). */
typedef int (*remote_output_fn)(void *ctx, enum remote_out which, const uint8_t *p, size_t n);

struct remote_env {
	const char *name;  /* [A-Za-z_][A-Za-z0-9_]* */
	const char *value; /* may be a secret: it travels on the channel's stdin only */
};

struct remote_exec_opts {
	const char *command;          /* /bin/sh command line; NULL = login shell (pty) */
	const struct remote_env *env; /* exported before command runs; never in argv */
	size_t n_env;
	const uint8_t *stdin_buf; /* stdin from memory ... */
	size_t stdin_len;
	int stdin_fd;            /* ... or from this fd when stdin_buf is NULL (-1 = none;
	                            made non-blocking for the call, restored after) */
	int pty;                 /* request a pty (stderr then arrives on stdout) */
	const char *term;        /* pty: $TERM (NULL = "xterm") */
	unsigned cols, rows;     /* pty: size (0 = 80x24) */
	remote_output_fn output; /* NULL = output discarded */
	void *output_ctx;
	int timeout_ms;           /* whole command (0 = none) -> TDXR_ETIMEOUT */
	const atomic_int *cancel; /* non-zero -> TERM to the remote process group,
	                             close, TDXR_ECANCELED. NULL = none */
	/* pty: window changes. When *resize is non-zero (set it from a SIGWINCH handler),
	 * the loop clears it, asks size_fn for the new size and sends a window-change
	 * request. NULL = none. */
	atomic_int *resize;
	int (*size_fn)(void *ctx, unsigned *cols, unsigned *rows); /* 0 = size valid */
	void *size_ctx;
};

struct remote_exec_result {
	int exited;           /* 1 when the server reported an exit status */
	int exit_status;      /* valid when exited */
	char exit_signal[32]; /* "TERM", ... when the process was killed by a signal, else "" */
};

/* Runs one command on a new channel of the session. Returns 0 when the command
 * ran to completion (whatever its exit status); the result is cleared on entry. */
int remote_exec_run(struct remote_ssh *ssh, const struct remote_exec_opts *o, struct remote_exec_result *res,
                    struct tdxr_err *err);

/* Builds the stdin header the exec prologue reads to export the environment
 * (exposed for tests): "N\n" then N lines "NAME \ooo\ooo...\n". */
int remote_env_encode(const struct remote_env *env, size_t n, uint8_t **out, size_t *len,
                      struct tdxr_err *err);

/* ---- connection multiplexer ----------------------------------------------------
 *
 * One authenticated session serves many short-lived `tdx-runner rsh` processes (as
 * OpenSSH's ControlMaster does): rsync's remote shell connects to a unix socket
 * (SOCK_SEQPACKET, created 0600; put it in a 0700 directory) and hands over its
 * stdin/stdout/stderr with the command; the multiplexer opens a new channel on the
 * session, pumps the channel to and from those descriptors, and answers with the
 * exit status. No TCP, TLS, SSH handshake or authentication per command; the host
 * key was checked when the session was made. Both ends check that the peer has our
 * uid (SO_PEERCRED). */

struct remote_mux;

/* Serves sock_path from a thread. From here until remote_mux_stop the session
 * belongs to that thread: the caller must not use ssh (nor free it). A dead session
 * is re-established for new channels when ssh came from remote_ssh_connect. A
 * sock_path longer than a sockaddr_un holds is reached through its directory's
 * /proc/self/fd link. */
int remote_mux_start(struct remote_ssh *ssh, const char *sock_path, struct remote_mux **out,
                     struct tdxr_err *err);
/* Path to export as TDXR_MUX for `tdx-runner rsh` (borrowed). */
const char *remote_mux_path(const struct remote_mux *mx);
/* The multiplexer keeps one channel pre-started (on by default): the box's login
 * shell - which may source rc files for tens of milliseconds - then runs before a
 * client asks instead of after. Each client takes the ready channel and a new one
 * starts. Turn it off before the last command of a series, so no login shell
 * starts in the box for nothing (an unused one is closed at remote_mux_stop). */
void remote_mux_prestart(struct remote_mux *mx, int on);
/* Stops serving: channels still running are closed, the socket is unlinked, the
 * thread joined; the session is the caller's again. Accepts NULL. */
void remote_mux_stop(struct remote_mux *mx);

/* The client: runs command through the multiplexer at sock_path with fd_in/out/err
 * as its stdin/stdout/stderr (they are passed over the socket; the caller keeps its
 * own copies) and waits for it. TDXR_ENOTFOUND when nothing serves sock_path and
 * TDXR_ETOOBIG when it serves too many commands already (the caller may then
 * connect by itself: nothing was run); other errors come from the multiplexer
 * (connection lost, channel refused). cancel as in remote_exec_opts: non-zero ends
 * the wait, which closes the channel (TDXR_ECANCELED). */
int remote_mux_exec(const char *sock_path, const char *command, int fd_in, int fd_out, int fd_err,
                    const atomic_int *cancel, struct remote_exec_result *res, struct tdxr_err *err);

/* ---- guest agent ------------------------------------------------------------ */

/* dstack guest-agent Info, fetched through the session from the socket inside the
 * box (DSTACK_SIMULATOR_ENDPOINT, /var/run/dstack.sock, /var/run/tappd.sock) by a
 * short python3 program. *out is the HTTP body, untouched (free()); at most
 * TDXR_CAP_EVENTLOG bytes. */
int remote_guest_info(struct remote_ssh *ssh, int timeout_ms, uint8_t **out, size_t *len,
                      struct tdxr_err *err);
/* GetQuote over report_data (the body as returned; free()). */
int remote_guest_quote(struct remote_ssh *ssh, const uint8_t report_data[64], int timeout_ms, uint8_t **out,
                       size_t *len, struct tdxr_err *err);

/* ---- lease file ------------------------------------------------------------- */

/* A JSON file (mode 0600, refused when group/other can read it):
 * {"id","executor","user","key_file","transport":"direct"|"tls","host","port",
 *  "tls":{"server_name","connect_to","ca_file","port"},"host_key_sha256","work_dir"} */
struct remote_lease;

int remote_lease_load(const char *path, struct remote_lease **out, struct tdxr_err *err);
void remote_lease_free(struct remote_lease *l);
const char *remote_lease_id(const struct remote_lease *l);       /* borrowed */
const char *remote_lease_work_dir(const struct remote_lease *l); /* borrowed, may be NULL */
const char *remote_lease_host_key(const struct remote_lease *l); /* borrowed, NULL = unpinned */
/* Records fp as the pinned host key and rewrites the file atomically (0600). */
int remote_lease_pin(struct remote_lease *l, const char *fp, struct tdxr_err *err);
/* Stream + SSH with the lease's pin; on first use records the host key in the file. */
int remote_lease_connect(struct remote_lease *l, int timeout_ms, struct remote_ssh **out,
                         struct tdxr_err *err);
/* The same with keepalives tuned: keepalive_s 0 = default (15 s), < 0 = off; the
 * session is declared dead after keepalive_s * 4 silent seconds. */
int remote_lease_connect_tuned(struct remote_lease *l, int timeout_ms, int keepalive_s,
                               struct remote_ssh **out, struct tdxr_err *err);

#endif
