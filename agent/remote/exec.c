/*
 * exec.c - runs one command on a new channel of an SSH session and streams its
 * stdout and stderr, separately and as they arrive, to a callback; optional stdin
 * from memory or an fd; exit status and signal; per-command timeout; cancel.
 *
 * Environment without argv: the command is started as
 *   exec sh -c '<prologue>' tdxr-exec <token> '<command>'
 * and the prologue reads "N\n" plus N lines "NAME \ooo\ooo..." from the channel's
 * stdin (every value byte as an octal escape, decoded by the printf builtin),
 * exports them and then runs the command, which inherits the rest of stdin. So a
 * secret value crosses the wire encrypted inside the channel data and never
 * appears in any argv, here or in the box. SSH "env" requests were not used:
 * sshd drops them unless AcceptEnv names each variable.
 *
 * Cancel: libssh2 1.10 cannot send the "signal" channel request, so the prologue
 * writes its pid (sshd made it a session and process-group leader) to
 * $TMPDIR/.tdxr-exec-<token>.pid, and cancel/timeout opens a second channel that
 * sends TERM to that process group, then the command's channel is closed.
 *
 * Memory: one fixed 32 KiB read buffer and one stdin buffer per call; output is
 * never accumulated here, so streaming any volume keeps memory flat.
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define EXEC_CHUNK (32u * 1024u)
#define EXEC_ENV_MAX (1024u * 1024u)
#define EXEC_TAIL_MS 3000 /* after a cancel: time to collect the exit signal */

static const char exec_prologue[] = "read -r n || exit 125; case \"$n\" in \"\"|*[!0-9]*) exit 125;; esac; "
                                    "while [ \"$n\" -gt 0 ]; do IFS=\" \" read -r k v || exit 125; "
                                    "v=$(printf \"$v\"; echo x); export \"$k=${v%x}\"; n=$((n-1)); done; "
                                    "p=\"${TMPDIR:-/tmp}/.tdxr-exec-$1.pid\"; echo $$ >\"$p\"; "
                                    "sh -c \"$2\" <&0; s=$?; rm -f \"$p\"; exit $s";

static int env_name_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

int remote_env_encode(const struct remote_env *env, size_t n, uint8_t **out, size_t *len,
                      struct tdxr_err *err)
{
	struct tdxr_buf b;
	size_t i, j;
	int rc;

	*out = NULL;
	*len = 0;
	tdxr_buf_init(&b, EXEC_ENV_MAX);
	rc = tdxr_buf_appendf(&b, err, "%zu\n", n);
	for (i = 0; rc == 0 && i < n; i++) {
		const unsigned char *v = (const unsigned char *)env[i].value;

		if (!env_name_ok(env[i].name) || v == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "exec: bad environment variable name");
			break;
		}
		rc = tdxr_buf_appendf(&b, err, "%s ", env[i].name);
		for (j = 0; rc == 0 && v[j] != '\0'; j++)
			rc = tdxr_buf_appendf(&b, err, "\\%03o", (unsigned)v[j]);
		if (rc == 0)
			rc = tdxr_buf_append(&b, "\n", 1, err);
	}
	if (rc != 0) {
		tdxr_buf_dispose_wipe(&b);
		return rc == TDXR_ETOOBIG
		           ? tdxr_err_set(err, TDXR_ETOOBIG, "exec: environment over %u bytes", EXEC_ENV_MAX)
		           : rc;
	}
	*out = tdxr_buf_steal(&b, len);
	return 0;
}

/* Appends s in single quotes for sh ('\'' for each quote). */
static int sh_quote(struct tdxr_buf *b, const char *s, struct tdxr_err *err)
{
	int rc = tdxr_buf_append(b, "'", 1, err);

	for (; rc == 0 && *s != '\0'; s++)
		rc = *s == '\'' ? tdxr_buf_append(b, "'\\''", 4, err) : tdxr_buf_append(b, s, 1, err);
	if (rc == 0)
		rc = tdxr_buf_append(b, "'", 1, err);
	return rc;
}

struct exec_state {
	struct remote_ssh *ssh;
	LIBSSH2_SESSION *session;
	LIBSSH2_CHANNEL *ch;
	const struct remote_exec_opts *o;
	char token[33];
	uint8_t *hdr; /* env header, wiped */
	size_t hdr_len, hdr_off;
	const uint8_t *in_p; /* current stdin chunk */
	size_t in_len, in_off;
	uint8_t inbuf[EXEC_CHUNK];
	int in_fd_eof;
	int eof_sent;
	int in_dead; /* remote stopped reading stdin */
	int out_done[2];
	int resize_pending; /* a window-change still to be sent (EAGAIN) */
	unsigned cols, rows;
};

static int chan_close_wait(struct exec_state *st, int64_t deadline, struct tdxr_err *err)
{
	int rc;

	for (;;) {
		rc = libssh2_channel_close(st->ch);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		if (remote__ssh_wait(st->ssh, deadline, "channel close", err) != 0)
			return TDXR_ETIMEOUT;
	}
	for (;;) {
		rc = libssh2_channel_wait_closed(st->ch);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		if (remote__ssh_wait(st->ssh, deadline, "channel close", err) != 0)
			return TDXR_ETIMEOUT;
	}
	return rc == 0 ? 0 : TDXR_EIO;
}

/* Frees a channel; a peer that does not answer within 2 s (or a session already
 * known dead) is given up on, so the free always completes. */
static void chan_free(struct remote_ssh *ssh, LIBSSH2_CHANNEL *ch, int dead)
{
	int64_t deadline = remote__now_ms() + 2000;

	if (ch == NULL)
		return;
	if (dead)
		remote__ssh_kill(ssh);
	while (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN) {
		if (remote__ssh_wait(ssh, deadline, "channel free", NULL) != 0) {
			remote__ssh_kill(ssh);
			(void)libssh2_channel_free(ch);
			break;
		}
	}
}

/* A channel on the session as it is (no reconnect: used to cancel a command). */
static int chan_open(struct remote_ssh *ssh, int64_t deadline, LIBSSH2_CHANNEL **out, struct tdxr_err *err)
{
	LIBSSH2_SESSION *s = remote__ssh_session(ssh);
	LIBSSH2_CHANNEL *ch;

	*out = NULL;
	if (remote__ssh_is_dead(ssh))
		return tdxr_err_set(err, TDXR_EIO, "ssh: the session is gone");
	for (;;) {
		ch = libssh2_channel_open_session(s);
		if (ch != NULL)
			break;
		if (libssh2_session_last_errno(s) != LIBSSH2_ERROR_EAGAIN)
			return tdxr_err_set(err, TDXR_EIO, "ssh: open channel: %s", remote__ssh_errmsg(ssh));
		if (remote__ssh_wait(ssh, deadline, "open channel", err) != 0)
			return TDXR_ETIMEOUT;
	}
	*out = ch;
	return 0;
}

int remote__exec_kill_cmd(const char *token, char *out, size_t cap)
{
	int n = snprintf(out, cap,
	                 "p=\"${TMPDIR:-/tmp}/.tdxr-exec-%s.pid\"; i=0; "
	                 "while [ ! -s \"$p\" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
	                 "[ -s \"$p\" ] && kill -TERM -\"$(cat \"$p\")\"; rm -f \"$p\"",
	                 token);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Second channel: TERM to the command's process group (waits briefly for the pid file). */
static void exec_kill_group(struct exec_state *st)
{
	LIBSSH2_CHANNEL *ch = NULL;
	char cmd[512];
	int64_t deadline = remote__now_ms() + 5000;
	int rc, n;
	char sink[256];

	n = remote__exec_kill_cmd(st->token, cmd, sizeof(cmd));
	if (n < 0)
		return;
	if (chan_open(st->ssh, deadline, &ch, NULL) != 0)
		return;
	for (;;) {
		rc = libssh2_channel_process_startup(ch, "exec", 4, cmd, (unsigned)n);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		if (remote__ssh_wait(st->ssh, deadline, "cancel", NULL) != 0)
			break;
	}
	while (rc == 0 && !libssh2_channel_eof(ch)) {
		ssize_t r = libssh2_channel_read(ch, sink, sizeof(sink));

		if (r == LIBSSH2_ERROR_EAGAIN) {
			if (remote__ssh_wait(st->ssh, deadline, "cancel", NULL) != 0)
				break;
			continue;
		}
		if (r < 0)
			break;
	}
	if (rc == 0)
		(void)chan_close_wait(st, deadline, NULL);
	chan_free(st->ssh, ch, 0);
}

static int deliver(struct exec_state *st, enum remote_out which, const uint8_t *p, size_t n)
{
	if (st->o->output == NULL)
		return 0;
	return st->o->output(st->o->output_ctx, which, p, n);
}

/* Drains what is readable on both streams. 1 = progress, 0 = nothing, <0 error. */
static int pump_out(struct exec_state *st, uint8_t *buf, int *stop, struct tdxr_err *err)
{
	int k, progress = 0;
	ssize_t r;

	for (k = 0; k < 2; k++) {
		if (st->out_done[k])
			continue;
		for (;;) {
			r = libssh2_channel_read_ex(st->ch, k, (char *)buf, EXEC_CHUNK);
			if (r > 0) {
				progress = 1;
				if (deliver(st, k == 0 ? REMOTE_OUT_STDOUT : REMOTE_OUT_STDERR, buf,
				            (size_t)r) != 0) {
					*stop = 1;
					return progress;
				}
				continue;
			}
			if (r == LIBSSH2_ERROR_EAGAIN)
				break;
			if (r == 0) {
				if (libssh2_channel_eof(st->ch))
					st->out_done[k] = 1;
				break;
			}
			return tdxr_err_set(err, TDXR_EIO,
			                    "ssh: connection lost while reading output: %s (libssh2 %zd)",
			                    remote__ssh_errmsg(st->ssh), r);
		}
	}
	return progress;
}

/* Moves stdin toward the channel; never blocks. 1 = progress. */
static int pump_in(struct exec_state *st)
{
	const struct remote_exec_opts *o = st->o;
	ssize_t r;
	int progress = 0;

	for (;;) {
		if (st->in_dead)
			return progress;
		if (st->hdr_off < st->hdr_len) {
			r = libssh2_channel_write(st->ch, (const char *)st->hdr + st->hdr_off,
			                          st->hdr_len - st->hdr_off);
			if (r == LIBSSH2_ERROR_EAGAIN)
				return progress;
			if (r < 0) {
				st->in_dead = 1;
				return progress;
			}
			st->hdr_off += (size_t)r;
			progress = 1;
			continue;
		}
		if (st->in_off < st->in_len) {
			r = libssh2_channel_write(st->ch, (const char *)st->in_p + st->in_off,
			                          st->in_len - st->in_off);
			if (r == LIBSSH2_ERROR_EAGAIN)
				return progress;
			if (r < 0) {
				st->in_dead = 1;
				return progress;
			}
			st->in_off += (size_t)r;
			progress = 1;
			continue;
		}
		if (o->stdin_buf == NULL && o->stdin_fd >= 0 && !st->in_fd_eof) {
			r = read(o->stdin_fd, st->inbuf, sizeof(st->inbuf));
			if (r > 0) {
				st->in_p = st->inbuf;
				st->in_len = (size_t)r;
				st->in_off = 0;
				progress = 1;
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return progress;
			st->in_fd_eof = 1; /* EOF or error: either way no more input */
		}
		if (!st->eof_sent) {
			r = libssh2_channel_send_eof(st->ch);
			if (r == LIBSSH2_ERROR_EAGAIN)
				return progress;
			st->eof_sent = 1;
			progress = 1;
		}
		return progress;
	}
}

/* Sends a window-change when the caller flagged one; never blocks. */
static void pump_resize(struct exec_state *st)
{
	const struct remote_exec_opts *o = st->o;
	int rc;

	if (!o->pty || o->resize == NULL || o->size_fn == NULL)
		return;
	if (atomic_exchange(o->resize, 0) != 0) {
		unsigned c = 0, r = 0;

		if (o->size_fn(o->size_ctx, &c, &r) == 0 && c > 0 && r > 0 && c < 10000 && r < 10000) {
			st->cols = c;
			st->rows = r;
			st->resize_pending = 1;
		}
	}
	if (!st->resize_pending)
		return;
	rc = libssh2_channel_request_pty_size_ex(st->ch, (int)st->cols, (int)st->rows, 0, 0);
	if (rc != LIBSSH2_ERROR_EAGAIN)
		st->resize_pending = 0; /* sent, or refused: the next change tries again */
}

/* libssh2 errors after which the session cannot be trusted to carry anything. */
static int session_error(struct remote_ssh *ssh)
{
	int e = libssh2_session_last_errno(remote__ssh_session(ssh));

	return e == LIBSSH2_ERROR_SOCKET_SEND || e == LIBSSH2_ERROR_SOCKET_RECV ||
	       e == LIBSSH2_ERROR_SOCKET_DISCONNECT || e == LIBSSH2_ERROR_SOCKET_TIMEOUT ||
	       e == LIBSSH2_ERROR_TIMEOUT || e == LIBSSH2_ERROR_DECRYPT || e == LIBSSH2_ERROR_PROTO;
}

static int need_stdin_fd(const struct exec_state *st)
{
	const struct remote_exec_opts *o = st->o;

	return o->stdin_buf == NULL && o->stdin_fd >= 0 && !st->in_fd_eof && !st->in_dead &&
	       st->hdr_off >= st->hdr_len && st->in_off >= st->in_len;
}

static int build_command(const struct remote_exec_opts *o, const char *token, char **out,
                         struct tdxr_err *err)
{
	struct tdxr_buf b;
	int rc;

	*out = NULL;
	tdxr_buf_init(&b, 1024u * 1024u);
	rc = tdxr_buf_append(&b, "exec sh -c ", 11, err);
	if (rc == 0)
		rc = sh_quote(&b, exec_prologue, err);
	if (rc == 0)
		rc = tdxr_buf_appendf(&b, err, " tdxr-exec %s ", token);
	if (rc == 0)
		rc = sh_quote(&b, o->command, err);
	if (rc != 0) {
		tdxr_buf_dispose(&b);
		return rc;
	}
	*out = (char *)tdxr_buf_steal(&b, NULL);
	return 0;
}

static void fetch_status(struct exec_state *st, struct remote_exec_result *res)
{
	char *sig = NULL;
	size_t siglen = 0;

	if (libssh2_channel_get_exit_signal(st->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
	    sig != NULL && siglen > 0) {
		size_t n = siglen < sizeof(res->exit_signal) - 1 ? siglen : sizeof(res->exit_signal) - 1;

		memcpy(res->exit_signal, sig, n);
		res->exit_signal[n] = '\0';
	}
	if (sig != NULL)
		libssh2_free(st->session, sig);
	if (res->exit_signal[0] == '\0') {
		res->exit_status = libssh2_channel_get_exit_status(st->ch);
		res->exited = 1;
	}
}

int remote_exec_run(struct remote_ssh *ssh, const struct remote_exec_opts *o, struct remote_exec_result *res,
                    struct tdxr_err *err)
{
	struct exec_state *st = NULL;
	uint8_t *buf = NULL;
	char *cmd = NULL;
	unsigned char rnd[16];
	int64_t step_deadline, cmd_deadline, now;
	int rc, fl = -1, stop = 0, progress;
	struct pollfd pfd[2];
	nfds_t npfd;
	int no_wait, dead = 0;

	memset(res, 0, sizeof(*res));
	if (o->command == NULL && (o->n_env > 0 || !o->pty))
		return tdxr_err_set(err, TDXR_EINVAL, "exec: a shell needs a pty and takes no env");
	st = calloc(1, sizeof(*st));
	buf = malloc(EXEC_CHUNK);
	if (st == NULL || buf == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "exec: out of memory");
		goto out;
	}
	st->ssh = ssh;
	st->o = o;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "exec: RAND_bytes");
		goto out;
	}
	tdxr_hex_encode(rnd, sizeof(rnd), st->token);
	if (o->command != NULL) {
		rc = remote_env_encode(o->env, o->n_env, &st->hdr, &st->hdr_len, err);
		if (rc != 0)
			goto out;
		rc = build_command(o, st->token, &cmd, err);
		if (rc != 0)
			goto out;
	}
	if (o->stdin_buf != NULL) {
		st->in_p = o->stdin_buf;
		st->in_len = o->stdin_len;
	} else if (o->stdin_fd >= 0) {
		fl = fcntl(o->stdin_fd, F_GETFL);
		if (fl >= 0)
			(void)fcntl(o->stdin_fd, F_SETFL, fl | O_NONBLOCK);
	}
	now = remote__now_ms();
	step_deadline = now + remote__ssh_timeout_ms(ssh);
	cmd_deadline = o->timeout_ms > 0 ? now + o->timeout_ms : INT64_MAX;
	/* Only here may a dead session be re-established: nothing has run yet. */
	rc = remote__ssh_chan_open(ssh, step_deadline, &st->ch, err);
	if (rc != 0)
		goto out;
	st->session = remote__ssh_session(ssh);
	if (o->pty) {
		const char *term = o->term != NULL ? o->term : "xterm";

		for (;;) {
			rc = libssh2_channel_request_pty_ex(st->ch, term, (unsigned)strlen(term), NULL, 0,
			                                    o->cols ? (int)o->cols : 80,
			                                    o->rows ? (int)o->rows : 24, 0, 0);
			if (rc != LIBSSH2_ERROR_EAGAIN)
				break;
			if (remote__ssh_wait(ssh, step_deadline, "pty request", err) != 0) {
				rc = TDXR_ETIMEOUT;
				dead = 1;
				goto out;
			}
		}
		if (rc != 0) {
			dead = session_error(ssh);
			rc = tdxr_err_set(err, TDXR_EIO, "ssh: pty request refused: %s",
			                  remote__ssh_errmsg(ssh));
			goto out;
		}
	}
	for (;;) {
		if (cmd != NULL)
			rc = libssh2_channel_process_startup(st->ch, "exec", 4, cmd, (unsigned)strlen(cmd));
		else
			rc = libssh2_channel_process_startup(st->ch, "shell", 5, NULL, 0);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		if (remote__ssh_wait(ssh, step_deadline, "exec request", err) != 0) {
			rc = TDXR_ETIMEOUT;
			dead = 1;
			goto out;
		}
	}
	if (rc != 0) {
		/* The request may have reached the box: never retried. */
		dead = session_error(ssh);
		rc = tdxr_err_set(err, TDXR_EIO, "ssh: exec request refused: %s", remote__ssh_errmsg(ssh));
		goto out;
	}
	/* The streaming loop: every step non-blocking, poll at most 100 ms. */
	for (;;) {
		if (o->cancel != NULL && atomic_load(o->cancel) != 0)
			stop = 1;
		if (stop) {
			rc = tdxr_err_set(err, TDXR_ECANCELED, "exec: cancelled");
			break;
		}
		now = remote__now_ms();
		if (now >= cmd_deadline) {
			rc = tdxr_err_set(err, TDXR_ETIMEOUT, "exec: command still running after %d ms",
			                  o->timeout_ms);
			break;
		}
		rc = remote__ssh_tick(ssh, err);
		if (rc != 0) {
			dead = 1;
			goto out;
		}
		progress = pump_out(st, buf, &stop, err);
		if (progress < 0) {
			rc = progress;
			dead = 1;
			goto out;
		}
		if (stop)
			continue;
		pump_resize(st);
		progress |= pump_in(st);
		if (st->out_done[0] && st->out_done[1]) {
			rc = 0;
			break;
		}
		if (progress)
			continue;
		no_wait = remote__ssh_pollfd(ssh, &pfd[0]);
		npfd = 1;
		if (need_stdin_fd(st)) {
			pfd[1].fd = o->stdin_fd;
			pfd[1].events = POLLIN;
			pfd[1].revents = 0;
			npfd = 2;
		}
		if (no_wait)
			continue;
		{
			int64_t left = cmd_deadline - now;
			int tmo = left < 100 ? (int)left : 100;

			if (poll(pfd, npfd, tmo) < 0 && errno != EINTR) {
				rc = tdxr_err_set(err, TDXR_EIO, "exec: poll: %s", strerror(errno));
				goto out;
			}
		}
	}
	if (rc == TDXR_ECANCELED || rc == TDXR_ETIMEOUT) {
		struct tdxr_err keep;
		int64_t tail = remote__now_ms() + EXEC_TAIL_MS;

		keep = err != NULL ? *err : (struct tdxr_err){ 0 };
		if (cmd != NULL)
			exec_kill_group(st);
		/* Collect what is left (and the exit signal) for a short while, quietly. */
		while (!(st->out_done[0] && st->out_done[1]) && remote__now_ms() < tail) {
			int dummy = 0;
			struct pollfd p1;

			if (pump_out(st, buf, &dummy, NULL) < 0)
				break;
			if (remote__ssh_pollfd(ssh, &p1) == 0)
				(void)poll(&p1, 1, 100);
		}
		if (st->out_done[0] && st->out_done[1] &&
		    chan_close_wait(st, remote__now_ms() + EXEC_TAIL_MS, NULL) == 0)
			fetch_status(st, res);
		if (err != NULL)
			*err = keep;
		goto out;
	}
	rc = chan_close_wait(st, remote__now_ms() + remote__ssh_timeout_ms(ssh), err);
	if (rc == TDXR_ETIMEOUT)
		goto out;
	if (rc != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "ssh: channel close: %s", remote__ssh_errmsg(ssh));
		goto out;
	}
	fetch_status(st, res);
out:
	if (st != NULL) {
		chan_free(ssh, st->ch, dead);
		if (st->hdr != NULL) {
			OPENSSL_cleanse(st->hdr, st->hdr_len);
			free(st->hdr);
		}
		OPENSSL_cleanse(st->inbuf, sizeof(st->inbuf));
		free(st);
	}
	if (fl >= 0)
		(void)fcntl(o->stdin_fd, F_SETFL, fl);
	free(cmd);
	free(buf);
	return rc;
}
