/*
 * mux.c - one SSH session, many short-lived remote-shell clients (like OpenSSH's
 * ControlMaster): a thread serves a unix socket; `tdx-runner rsh` connects, sends
 * its command and passes its stdin/stdout/stderr (SCM_RIGHTS), and gets back the
 * exit status. The thread opens a new channel per client and pumps it to and from
 * those descriptors. So an rsync run costs a channel, not a TCP + TLS + SSH
 * handshake + authentication.
 *
 * Invariants: while the thread runs it alone touches the session; every channel
 * command goes through exec.c's wrapper (pid file, so a client that goes away
 * gets its remote process group TERMed like a cancelled exec); the passed
 * descriptors are never switched to O_NONBLOCK (they share file descriptions
 * with rsync): sockets are driven with MSG_DONTWAIT, anything else only after
 * poll() said it is ready, writes of at most PIPE_BUF bytes. If the session dies,
 * running commands fail (never re-run); the next client's channel open reconnects
 * (remote__ssh_chan_open).
 *
 * Trust boundary: the socket is ours (0600, and the peer's uid must be ours on
 * both ends); the request is still parsed with bounds (SOCK_SEQPACKET: one
 * message, size-capped, exactly three descriptors).
 */
#include "agent/remote/remote.h"
#include "agent/remote/remote_int.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define MUX_CHUNK (32u * 1024u)
#define MUX_REQ_MS 5000    /* a client has this long to send its request */
#define MUX_CLOSE_MS 5000  /* channel close / free before it is abandoned */
#define MUX_STOP_MS 3000   /* remote_mux_stop: time for channels to wind down */
#define MUX_MAX_CLIENTS 64 /* entries at once (sshd's MaxSessions is 10 by default) */
#define MUX_SPARE_FAILS 2  /* pre-started channels that died unused before we stop making them */

/* Runs in the box under the login shell: reads the command as one line of \ooo
 * escapes (decoded by printf, like exec.c's environment), records its pid for a
 * cancel (exec.c's pid file) and runs it with the rest of stdin. A pre-started
 * channel waits in the read until a client brings its command. The pid file is
 * removed in the background, detached from the channel: the exit status is not
 * held up by one more fork and exec. */
static const char mux_prologue[] = "IFS= read -r c || exit 125; c=$(printf \"$c\"; echo x); "
                                   "p=\"${TMPDIR:-/tmp}/.tdxr-exec-$1.pid\"; echo $$ >\"$p\"; "
                                   "sh -c \"${c%x}\" <&0; s=$?; "
                                   "rm -f \"$p\" </dev/null >/dev/null 2>&1 & exit $s";

enum mux_state {
	MS_REQ,   /* client connected, request not read yet */
	MS_OPEN,  /* waiting to open its channel (one open in flight per session) */
	MS_EXEC,  /* exec request in flight */
	MS_RUN,   /* running: pumping (a spare only collects early output) */
	MS_CLOSE, /* closing the channel, then the exit status */
	MS_FREE,  /* freeing the channel */
	MS_GONE,  /* to be removed */
};

enum mux_kind {
	MK_CLIENT, /* serves one rsh client */
	MK_SPARE,  /* pre-started: the login shell runs before a client needs it */
	MK_KILLER, /* TERMs an abandoned command's process group: no fds, no reply */
};

struct mux_ent {
	struct mux_ent *next;
	enum mux_state state;
	enum mux_kind kind;
	int ctl;     /* the client's connection; -1 once it left (or none) */
	int fd[3];   /* passed stdin, stdout, stderr; -1 when done with */
	int sock[3]; /* fd[k] is a socket (MSG_DONTWAIT), else poll-then-I/O */
	LIBSSH2_CHANNEL *ch;
	char *exec; /* what the exec request runs */
	char token[33];
	char *hdr; /* the command line for the prologue ("" = none) */
	size_t hdr_len, hdr_off;
	uint8_t in[MUX_CHUNK];
	size_t in_len, in_off;
	int in_eof, eof_sent, in_dead;
	uint8_t out[2][MUX_CHUNK];
	size_t out_len[2], out_off[2];
	int out_eof[2];
	int close_sent;
	int retries; /* channels lost before its command was sent */
	int64_t deadline;
	struct remote__mux_reply rep;
};

struct remote_mux {
	struct remote_ssh *ssh;
	char path[PATH_MAX];
	int dirfd; /* O_PATH directory when path is too long for a sockaddr_un */
	int lfd;
	int wake[2];
	atomic_int stop;
	pthread_t thr;
	struct mux_ent *ents;
	size_t n_ents;
	struct mux_ent *opening; /* whose channel open is in flight */
	int spare_fails;
	atomic_int prestart; /* keep a pre-started channel ready */
	uid_t uid;
};

/* ---- socket addresses -------------------------------------------------------- */

/* Fills sa for path; a path too long for sun_path goes through the directory's
 * /proc/self/fd link (*dirfd is opened then; the caller closes it). */
static int mux_addr(const char *path, struct sockaddr_un *sa, int *dirfd, struct tdxr_err *err)
{
	const char *slash, *base;
	char dir[PATH_MAX];
	size_t n = strlen(path);
	int k;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	*dirfd = -1;
	if (n == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "mux: empty socket path");
	if (n < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, n + 1);
		return 0;
	}
	slash = strrchr(path, '/');
	if (slash == NULL || (size_t)(slash - path) >= sizeof(dir))
		return tdxr_err_set(err, TDXR_EINVAL, "mux: socket path too long: %s", path);
	base = slash + 1;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	*dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return tdxr_err_set(err, TDXR_ENOTFOUND, "mux: %s: %s", dir, strerror(errno));
	k = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd, base);
	if (k < 0 || (size_t)k >= sizeof(sa->sun_path)) {
		close(*dirfd);
		*dirfd = -1;
		return tdxr_err_set(err, TDXR_EINVAL, "mux: socket name too long: %s", base);
	}
	return 0;
}

static int peer_uid_ok(int fd, uid_t want)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 && len == sizeof(uc) && uc.uid == want;
}

/* ---- descriptor I/O without O_NONBLOCK ----------------------------------------- */

static int fd_ready(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev, .revents = 0 };

	return poll(&p, 1, 0) > 0 && (p.revents & (ev | POLLHUP | POLLERR)) != 0;
}

/* Bytes read, 0 at EOF, -EAGAIN when nothing is ready, other negative on error. */
static ssize_t fd_read(int fd, int sock, void *p, size_t n)
{
	ssize_t r;

	if (sock)
		r = recv(fd, p, n, MSG_DONTWAIT);
	else if (!fd_ready(fd, POLLIN))
		return -EAGAIN;
	else
		r = read(fd, p, n);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
	return r;
}

static ssize_t fd_write(int fd, int sock, const void *p, size_t n)
{
	ssize_t w;

	if (sock) {
		w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		if (!fd_ready(fd, POLLOUT))
			return -EAGAIN;
		w = write(fd, p, n < PIPE_BUF ? n : PIPE_BUF); /* POLLOUT promises PIPE_BUF */
	}
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
	return w;
}

/* ---- entries ------------------------------------------------------------------ */

static void ent_close_fds(struct mux_ent *e)
{
	for (int k = 0; k < 3; k++) {
		if (e->fd[k] >= 0)
			close(e->fd[k]);
		e->fd[k] = -1;
	}
}

static void ent_reply(struct mux_ent *e, int rc, const char *msg)
{
	if (e->ctl < 0)
		return;
	memcpy(e->rep.magic, REMOTE__MUX_MAGIC, 8);
	e->rep.rc = rc;
	if (msg != NULL)
		snprintf(e->rep.msg, sizeof(e->rep.msg), "%s", msg);
	(void)send(e->ctl, &e->rep, sizeof(e->rep), MSG_DONTWAIT | MSG_NOSIGNAL);
	close(e->ctl);
	e->ctl = -1;
}

static struct mux_ent *ent_new(struct remote_mux *mx, enum mux_kind kind)
{
	struct mux_ent *e;

	if (mx->n_ents >= MUX_MAX_CLIENTS)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->kind = kind;
	e->ctl = -1;
	e->fd[0] = e->fd[1] = e->fd[2] = -1;
	e->next = mx->ents;
	mx->ents = e;
	mx->n_ents++;
	return e;
}

static void ents_reap(struct remote_mux *mx)
{
	struct mux_ent **pp = &mx->ents;

	while (*pp != NULL) {
		struct mux_ent *e = *pp;

		if (e->state != MS_GONE) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		if (mx->opening == e)
			mx->opening = NULL;
		ent_close_fds(e);
		if (e->ctl >= 0)
			close(e->ctl);
		OPENSSL_cleanse(e->in, sizeof(e->in));
		free(e->exec);
		free(e->hdr);
		free(e);
		mx->n_ents--;
	}
}

/* Back to "waiting for a channel" (its command never reached the box). */
static void ent_reset(struct mux_ent *e)
{
	e->ch = NULL;
	e->state = MS_OPEN;
	e->hdr_off = 0;
	e->in_len = e->in_off = 0;
	e->out_len[0] = e->out_len[1] = e->out_off[0] = e->out_off[1] = 0;
	e->out_eof[0] = e->out_eof[1] = 0;
	e->eof_sent = e->in_dead = e->close_sent = 0;
}

/* The session is dead: every channel goes (the stream refuses I/O, so the frees
 * return at once). A client whose command had not yet been sent waits for the
 * reconnect; one whose command was (even partly) sent fails - never re-run. */
static void mux_session_lost(struct remote_mux *mx, const char *why)
{
	char msg[200];

	remote__ssh_kill(mx->ssh);
	mx->opening = NULL;
	snprintf(msg, sizeof(msg), "ssh: connection to the box lost while the command ran (%s); not re-run",
	         why);
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next) {
		if (e->ch != NULL) {
			for (int i = 0; i < 100 && libssh2_channel_free(e->ch) == LIBSSH2_ERROR_EAGAIN; i++)
				;
			e->ch = NULL;
		}
		if (e->state == MS_REQ || e->state == MS_GONE)
			continue;
		if (e->kind == MK_CLIENT && e->hdr_off == 0 && e->state <= MS_RUN && e->fd[0] >= 0 &&
		    e->retries++ < 2) {
			ent_reset(e);
			continue;
		}
		ent_reply(e, TDXR_EIO, msg);
		e->state = MS_GONE;
	}
}

/* "exec sh -c '<prologue>' tdxr-mux TOKEN" with a fresh token. */
static int ent_prepare(struct mux_ent *e)
{
	static const char head[] = "exec sh -c '";
	unsigned char rnd[16];
	size_t n = sizeof(head) + sizeof(mux_prologue) + 64;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	tdxr_hex_encode(rnd, sizeof(rnd), e->token);
	e->exec = malloc(n);
	if (e->exec == NULL)
		return -1;
	/* mux_prologue has no single quote, so it goes inside one pair as is. */
	snprintf(e->exec, n, "%s%s' tdxr-mux %s", head, mux_prologue, e->token);
	return 0;
}

/* The command as the prologue's line: every byte as \ooo, then '\n'. */
static int ent_set_command(struct mux_ent *e, const char *cmd, size_t len)
{
	char *h = malloc(len * 4 + 2);

	if (h == NULL)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)cmd[i];

		h[i * 4] = '\\';
		h[i * 4 + 1] = (char)('0' + (c >> 6));
		h[i * 4 + 2] = (char)('0' + ((c >> 3) & 7));
		h[i * 4 + 3] = (char)('0' + (c & 7));
	}
	h[len * 4] = '\n';
	h[len * 4 + 1] = '\0';
	free(e->hdr);
	e->hdr = h;
	e->hdr_len = len * 4 + 1;
	e->hdr_off = 0;
	return 0;
}

/* A second channel that TERMs the process group of e's command (exec.c's cancel). */
static void mux_kill_group(struct remote_mux *mx, const struct mux_ent *e)
{
	struct mux_ent *k;
	char cmd[512];

	if (e->kind != MK_CLIENT || e->hdr_off == 0 || remote__ssh_is_dead(mx->ssh) ||
	    remote__exec_kill_cmd(e->token, cmd, sizeof(cmd)) < 0)
		return;
	k = ent_new(mx, MK_KILLER);
	if (k == NULL)
		return;
	k->exec = strdup(cmd);
	k->in_eof = 1;
	k->state = k->exec != NULL ? MS_OPEN : MS_GONE;
	k->deadline = remote__now_ms() + MUX_CLOSE_MS;
}

/* The client left (or broke its descriptors): its command is stopped. */
static void ent_abandon(struct remote_mux *mx, struct mux_ent *e, const char *why)
{
	ent_close_fds(e);
	ent_reply(e, TDXR_EIO, why);
	if (e->ch == NULL) {
		e->state = MS_GONE;
		return;
	}
	mux_kill_group(mx, e);
	e->state = MS_CLOSE;
	e->deadline = remote__now_ms() + MUX_CLOSE_MS;
}

/* An unused spare goes: its read gets EOF and it exits. Its close is not waited
 * for (the login shell may still be starting): the channel is left to the
 * session, which frees it. */
static void spare_drop(struct remote_mux *mx, struct mux_ent *e, int failed)
{
	if (failed)
		mx->spare_fails++;
	if (e->ch != NULL) {
		(void)libssh2_channel_send_eof(e->ch);
		(void)libssh2_channel_close(e->ch);
	}
	e->ch = NULL;
	e->state = MS_GONE;
}

static struct mux_ent *mux_spare(const struct remote_mux *mx)
{
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next)
		if (e->kind == MK_SPARE && e->state >= MS_OPEN && e->state <= MS_RUN)
			return e;
	return NULL;
}

/* Keeps one pre-started channel ready: the box's login shell (which may source
 * rc files) then starts before the next client asks, not after. */
static void mux_spare_ensure(struct remote_mux *mx)
{
	struct mux_ent *e;

	if (atomic_load(&mx->stop) || !atomic_load(&mx->prestart) || mx->spare_fails >= MUX_SPARE_FAILS ||
	    remote__ssh_is_dead(mx->ssh) || mux_spare(mx) != NULL)
		return;
	e = ent_new(mx, MK_SPARE);
	if (e == NULL)
		return;
	if (ent_prepare(e) != 0) {
		e->state = MS_GONE;
		mx->spare_fails = MUX_SPARE_FAILS;
		return;
	}
	e->state = MS_OPEN;
}

/* The first spare, started before the thread (and before the caller goes on to
 * other work that competes for the CPU): open and exec right here, bounded by the
 * session timeout. Failing is not an error: the thread then tries again. */
static void mux_spare_first(struct remote_mux *mx)
{
	int64_t deadline = remote__now_ms() + remote__ssh_timeout_ms(mx->ssh);
	struct mux_ent *e;
	int rc;

	if (remote__ssh_is_dead(mx->ssh) || (e = ent_new(mx, MK_SPARE)) == NULL)
		return;
	if (ent_prepare(e) != 0 || remote__ssh_chan_open(mx->ssh, deadline, &e->ch, NULL) != 0) {
		e->state = MS_GONE;
		ents_reap(mx);
		return;
	}
	for (;;) {
		rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->exec, (unsigned)strlen(e->exec));
		if (rc != LIBSSH2_ERROR_EAGAIN ||
		    remote__ssh_wait(mx->ssh, deadline, "exec request", NULL) != 0)
			break;
	}
	if (rc == 0) {
		e->state = MS_RUN;
		return;
	}
	/* Refused, or still in flight: close it in the thread. */
	e->state = rc == LIBSSH2_ERROR_EAGAIN ? MS_EXEC : MS_FREE;
	e->deadline = remote__now_ms() + MUX_CLOSE_MS;
	if (rc != LIBSSH2_ERROR_EAGAIN)
		mx->spare_fails++;
}

/* ---- requests ------------------------------------------------------------------ */

/* Reads the request (one message, three descriptors); the command goes to the
 * spare when there is one, else to a channel of its own. */
static void ent_request(struct remote_mux *mx, struct mux_ent *e)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	uint8_t *msg = NULL;
	struct mux_ent *sp;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	struct remote__mux_req req;
	int got[4], ngot = 0;
	ssize_t n;

	msg = malloc(sizeof(req) + REMOTE__MUX_CMD_MAX + 1);
	if (msg == NULL) {
		ent_reply(e, TDXR_ENOMEM, "mux: out of memory");
		e->state = MS_GONE;
		return;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = msg;
	iov.iov_len = sizeof(req) + REMOTE__MUX_CMD_MAX + 1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	n = recvmsg(e->ctl, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(msg);
		return;
	}
	for (c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && ngot < 4; i++)
				memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
	}
	if (n <= 0) {
		e->state = MS_GONE; /* the client left before asking */
		goto out;
	}
	memset(&req, 0, sizeof(req));
	if ((size_t)n >= sizeof(req))
		memcpy(&req, msg, sizeof(req));
	if ((size_t)n < sizeof(req) || memcmp(req.magic, REMOTE__MUX_MAGIC, 8) != 0 || req.cmd_len == 0 ||
	    req.cmd_len > REMOTE__MUX_CMD_MAX || (size_t)n != sizeof(req) + req.cmd_len ||
	    (mh.msg_flags & MSG_TRUNC) || (mh.msg_flags & MSG_CTRUNC) || ngot != 3 ||
	    memchr(msg + sizeof(req), '\0', req.cmd_len) != NULL) {
		ent_reply(e, TDXR_EINVAL, "mux: malformed request");
		e->state = MS_GONE;
		goto out;
	}
	if (ent_set_command(e, (const char *)msg + sizeof(req), req.cmd_len) != 0) {
		ent_reply(e, TDXR_ENOMEM, "mux: out of memory");
		e->state = MS_GONE;
		goto out;
	}
	for (int k = 0; k < 3; k++) {
		struct stat st;

		e->fd[k] = got[k];
		e->sock[k] = fstat(got[k], &st) == 0 && S_ISSOCK(st.st_mode);
	}
	ngot = 0; /* owned by e now */
	sp = mux_spare(mx);
	if (sp != NULL) {
		/* The spare becomes this client: it takes the connection, descriptors and
		 * command; the request's entry goes. */
		sp->kind = MK_CLIENT;
		sp->ctl = e->ctl;
		e->ctl = -1;
		memcpy(sp->fd, e->fd, sizeof(sp->fd));
		memcpy(sp->sock, e->sock, sizeof(sp->sock));
		e->fd[0] = e->fd[1] = e->fd[2] = -1;
		sp->hdr = e->hdr;
		sp->hdr_len = e->hdr_len;
		sp->hdr_off = 0;
		e->hdr = NULL;
		e->state = MS_GONE;
	} else if (ent_prepare(e) != 0) {
		ent_reply(e, TDXR_ENOMEM, "mux: out of memory");
		e->state = MS_GONE;
	} else {
		e->state = MS_OPEN;
		e->deadline = remote__now_ms() + remote__ssh_timeout_ms(mx->ssh);
	}
	mux_spare_ensure(mx); /* the next one starts now */
out:
	for (int i = 0; i < ngot; i++)
		close(got[i]);
	free(msg);
}

static void mux_accept(struct remote_mux *mx)
{
	for (;;) {
		int c = accept4(mx->lfd, NULL, NULL, SOCK_CLOEXEC);
		struct mux_ent *e;

		if (c < 0)
			return;
		if (!peer_uid_ok(c, mx->uid)) {
			close(c);
			continue;
		}
		e = ent_new(mx, MK_CLIENT);
		if (e == NULL) {
			struct mux_ent tmp;

			memset(&tmp, 0, sizeof(tmp));
			tmp.ctl = c;
			ent_reply(&tmp, TDXR_ETOOBIG, "mux: too many commands at once");
			continue;
		}
		e->ctl = c;
		e->state = MS_REQ;
		e->deadline = remote__now_ms() + MUX_REQ_MS;
	}
}

/* ---- pumping ------------------------------------------------------------------- */

static int lost_session_error(int e)
{
	return e != LIBSSH2_ERROR_EAGAIN && e != LIBSSH2_ERROR_CHANNEL_CLOSED &&
	       e != LIBSSH2_ERROR_CHANNEL_EOF_SENT && e != LIBSSH2_ERROR_CHANNEL_UNKNOWN &&
	       e != LIBSSH2_ERROR_BAD_USE;
}

/* Output of e's channel to its descriptors (a spare keeps it until a client
 * comes; killers drop it). 1 = progress, 0 = none, -1 = the session failed. */
static int ent_pump_out(struct remote_mux *mx, struct mux_ent *e)
{
	int progress = 0;

	for (int k = 0; k < 2; k++) {
		for (;;) {
			ssize_t r;

			while (e->out_off[k] < e->out_len[k]) {
				ssize_t w;

				if (e->kind == MK_SPARE)
					break;
				if (e->kind == MK_KILLER || e->fd[1 + k] < 0) {
					e->out_off[k] = e->out_len[k]; /* nobody wants it */
					break;
				}
				w = fd_write(e->fd[1 + k], e->sock[1 + k], e->out[k] + e->out_off[k],
				             e->out_len[k] - e->out_off[k]);
				if (w == -EAGAIN)
					return progress;
				if (w < 0) {
					ent_abandon(mx, e, "mux: the client's output is gone");
					return 1;
				}
				e->out_off[k] += (size_t)w;
				progress = 1;
			}
			if (e->out_eof[k])
				break;
			if (e->out_off[k] < e->out_len[k]) {
				/* A spare whose shell says more than a buffer before its command
				 * runs is not worth keeping. */
				if (e->out_len[k] == MUX_CHUNK) {
					spare_drop(mx, e, 1);
					return 1;
				}
			} else {
				e->out_len[k] = e->out_off[k] = 0;
			}
			r = libssh2_channel_read_ex(e->ch, k, (char *)e->out[k] + e->out_len[k],
			                            MUX_CHUNK - e->out_len[k]);
			if (r > 0) {
				e->out_len[k] += (size_t)r;
				progress = 1;
				continue;
			}
			if (r == LIBSSH2_ERROR_EAGAIN)
				break;
			if (r == 0) {
				if (libssh2_channel_eof(e->ch)) {
					e->out_eof[k] = 1;
					progress = 1;
				}
				break;
			}
			if (lost_session_error((int)r))
				return -1;
			e->out_eof[k] = 1;
			break;
		}
	}
	return progress;
}

/* The command line, then the client's stdin, to the channel. */
static int ent_pump_in(struct mux_ent *e)
{
	int progress = 0;
	ssize_t r;

	if (e->kind == MK_SPARE)
		return 0; /* nothing to say before a client comes */
	for (;;) {
		if (e->in_dead)
			return progress;
		if (e->hdr_off < e->hdr_len) {
			r = libssh2_channel_write(e->ch, e->hdr + e->hdr_off, e->hdr_len - e->hdr_off);
		} else if (e->in_off < e->in_len) {
			r = libssh2_channel_write(e->ch, (const char *)e->in + e->in_off,
			                          e->in_len - e->in_off);
		} else if (!e->in_eof) {
			r = fd_read(e->fd[0], e->sock[0], e->in, sizeof(e->in));
			if (r == -EAGAIN)
				return progress;
			if (r <= 0) {
				e->in_eof = 1; /* EOF or an error: no more input either way */
			} else {
				e->in_len = (size_t)r;
				e->in_off = 0;
			}
			progress = 1;
			continue;
		} else {
			if (!e->eof_sent) {
				r = libssh2_channel_send_eof(e->ch);
				if (r == LIBSSH2_ERROR_EAGAIN)
					return progress;
				if (r < 0 && lost_session_error((int)r))
					return -1;
				e->eof_sent = 1;
				progress = 1;
			}
			return progress;
		}
		if (r == LIBSSH2_ERROR_EAGAIN)
			return progress;
		if (r < 0) {
			if (lost_session_error((int)r))
				return -1;
			e->in_dead = 1; /* the remote stopped reading */
			return 1;
		}
		if (e->hdr_off < e->hdr_len)
			e->hdr_off += (size_t)r;
		else
			e->in_off += (size_t)r;
		progress = 1;
	}
}

static void ent_status(struct remote_mux *mx, struct mux_ent *e)
{
	char *sig = NULL;
	size_t siglen = 0;

	if (libssh2_channel_get_exit_signal(e->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
	    sig != NULL && siglen > 0) {
		size_t n = siglen < sizeof(e->rep.signal) - 1 ? siglen : sizeof(e->rep.signal) - 1;

		memcpy(e->rep.signal, sig, n);
		e->rep.signal[n] = '\0';
	}
	if (sig != NULL)
		libssh2_free(remote__ssh_session(mx->ssh), sig);
	if (e->rep.signal[0] == '\0') {
		e->rep.status = libssh2_channel_get_exit_status(e->ch);
		e->rep.exited = 1;
	}
}

/* A channel that could not be had: the client is told, a spare is given up. */
static void ent_no_channel(struct remote_mux *mx, struct mux_ent *e, const char *msg)
{
	if (e->kind == MK_SPARE) {
		mx->spare_fails = MUX_SPARE_FAILS; /* the server refuses: do not insist */
		spare_drop(mx, e, 0);
		return;
	}
	ent_reply(e, TDXR_EIO, msg);
	if (e->ch != NULL) {
		e->state = MS_FREE;
		e->deadline = remote__now_ms() + MUX_CLOSE_MS;
	} else {
		e->state = MS_GONE;
	}
}

/* One step of e's state machine; 1 = progress, 0 = none, -1 = the session failed. */
static int ent_step(struct remote_mux *mx, struct mux_ent *e)
{
	LIBSSH2_SESSION *s = remote__ssh_session(mx->ssh);
	int64_t now = remote__now_ms();
	char msg[200];
	int p = 0, q, rc;

	if (e->ctl >= 0 && (e->state == MS_RUN || (e->state == MS_OPEN && mx->opening != e)) &&
	    fd_ready(e->ctl, POLLIN)) {
		/* A client sends nothing after its request: data or EOF means it left. */
		ent_abandon(mx, e, "mux: client left");
		return 1;
	}
	if (atomic_load(&mx->stop) && e->kind != MK_KILLER &&
	    (e->state == MS_RUN || (e->state == MS_OPEN && mx->opening != e))) {
		/* Stopping: what is not in flight winds down now. */
		if (e->kind == MK_SPARE)
			spare_drop(mx, e, 0);
		else
			ent_abandon(mx, e, "mux: stopped");
		return 1;
	}
	switch (e->state) {
	case MS_REQ:
		if (e->ctl >= 0 && fd_ready(e->ctl, POLLIN)) {
			ent_request(mx, e);
			return 1;
		}
		if (now >= e->deadline) {
			e->state = MS_GONE;
			return 1;
		}
		return 0;
	case MS_OPEN:
		if (remote__ssh_is_dead(mx->ssh) || (mx->opening != NULL && mx->opening != e))
			return 0;
		if (mx->opening == NULL)
			e->deadline = now + remote__ssh_timeout_ms(mx->ssh);
		e->ch = libssh2_channel_open_session(s);
		if (e->ch == NULL) {
			rc = libssh2_session_last_errno(s);
			if (rc == LIBSSH2_ERROR_EAGAIN && now < e->deadline) {
				mx->opening = e;
				return 0;
			}
			mx->opening = NULL;
			if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE) {
				snprintf(msg, sizeof(msg), "ssh: open channel: %s",
				         remote__ssh_errmsg(mx->ssh));
				ent_no_channel(mx, e, msg);
				return 1;
			}
			return -1; /* timed out or failed: the session is gone */
		}
		mx->opening = NULL;
		e->state = MS_EXEC;
		e->deadline = now + remote__ssh_timeout_ms(mx->ssh);
		return 1;
	case MS_EXEC:
		rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->exec, (unsigned)strlen(e->exec));
		if (rc == LIBSSH2_ERROR_EAGAIN)
			return now < e->deadline ? 0 : -1;
		if (rc != 0) {
			if (lost_session_error(rc) && rc != LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED)
				return -1;
			snprintf(msg, sizeof(msg), "ssh: exec request refused: %s",
			         remote__ssh_errmsg(mx->ssh));
			ent_no_channel(mx, e, msg);
			return 1;
		}
		e->state = MS_RUN;
		return 1;
	case MS_RUN:
		if (e->kind == MK_KILLER && now >= e->deadline) {
			e->state = MS_CLOSE;
			return 1;
		}
		p = ent_pump_out(mx, e);
		if (p < 0)
			return -1;
		if (e->state != MS_RUN)
			return 1;
		q = ent_pump_in(e);
		if (q < 0)
			return -1;
		p |= q;
		if (e->out_eof[0] && e->out_eof[1] && e->out_off[0] >= e->out_len[0] &&
		    e->out_off[1] >= e->out_len[1]) {
			ent_close_fds(e); /* the client's rsync sees EOF when the rsh exits */
			if (e->kind == MK_SPARE) {
				spare_drop(mx, e, 1); /* it ended before anyone used it */
				return 1;
			}
			e->state = MS_CLOSE;
			e->deadline = now + MUX_CLOSE_MS;
			return 1;
		}
		return p;
	case MS_CLOSE:
		if (!e->close_sent) {
			rc = libssh2_channel_close(e->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN && now < e->deadline)
				return 0;
			e->close_sent = 1;
			p = 1;
		}
		rc = libssh2_channel_wait_closed(e->ch);
		if (rc == LIBSSH2_ERROR_EAGAIN && now < e->deadline) {
			/* Drain what still arrives so the close can be seen. */
			char sink[1024];

			while (libssh2_channel_read_ex(e->ch, 0, sink, sizeof(sink)) > 0 ||
			       libssh2_channel_read_ex(e->ch, 1, sink, sizeof(sink)) > 0)
				p = 1;
			return p;
		}
		if (rc == 0 && e->ctl >= 0) {
			ent_status(mx, e);
			ent_reply(e, 0, NULL);
		} else {
			ent_reply(e, TDXR_EIO, "ssh: the channel did not close cleanly");
		}
		e->state = MS_FREE;
		e->deadline = now + MUX_CLOSE_MS;
		return 1;
	case MS_FREE:
		rc = libssh2_channel_free(e->ch);
		if (rc == LIBSSH2_ERROR_EAGAIN && now < e->deadline)
			return 0;
		/* Freed, or abandoned to the session (libssh2 frees it with the session). */
		e->ch = NULL;
		e->state = MS_GONE;
		return 1;
	case MS_GONE: return 0;
	}
	return 0;
}

/* ---- the thread ---------------------------------------------------------------- */

/* Whether some channel has work on the session (1), and whether one of them would
 * read what arrives now (*reads): a client whose output waits for its descriptor
 * reads nothing more, and polling the session for input then would only spin. */
static int mux_wants_session(const struct remote_mux *mx, int *reads)
{
	int any = 0;

	*reads = 0;
	for (const struct mux_ent *e = mx->ents; e != NULL; e = e->next) {
		if (e->state < MS_OPEN || e->state > MS_FREE)
			continue;
		any = 1;
		if (e->state != MS_RUN || e->kind != MK_CLIENT ||
		    (!e->out_eof[0] && e->out_off[0] >= e->out_len[0]) ||
		    (!e->out_eof[1] && e->out_off[1] >= e->out_len[1]))
			*reads = 1;
	}
	return any;
}

/* A dead session with clients waiting for a channel: dial again (blocks). */
static void mux_revive(struct remote_mux *mx)
{
	struct tdxr_err e;
	int waiting = 0;

	for (struct mux_ent *x = mx->ents; x != NULL; x = x->next)
		if (x->state == MS_OPEN && x->kind == MK_CLIENT)
			waiting = 1;
	if (!waiting || !remote__ssh_is_dead(mx->ssh))
		return;
	mux_session_lost(mx, "gone"); /* whatever still held a channel of the old session */
	if (remote__ssh_reconnect(mx->ssh, &e) == 0)
		return;
	for (struct mux_ent *x = mx->ents; x != NULL; x = x->next) {
		if (x->state == MS_REQ || x->state == MS_GONE)
			continue;
		ent_reply(x, e.code ? e.code : TDXR_EIO, e.msg);
		x->state = MS_GONE;
	}
}

static int mux_loop_once(struct remote_mux *mx, int wait_ms)
{
	struct pollfd pfd[3 + 4 * MUX_MAX_CLIENTS];
	nfds_t n = 0;
	int progress = 0, want_session, reads = 0;

	if (mx->lfd >= 0)
		mux_accept(mx); /* every round: a busy channel must not starve new clients */
	mux_revive(mx);
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next) {
		int r = ent_step(mx, e);

		if (r < 0) {
			mux_session_lost(mx, remote__ssh_errmsg(mx->ssh));
			progress = 1;
			break;
		}
		progress |= r;
	}
	ents_reap(mx);
	want_session = !remote__ssh_is_dead(mx->ssh) && mux_wants_session(mx, &reads);
	if (want_session && reads) {
		if (remote__ssh_tick(mx->ssh, NULL) != 0) {
			mux_session_lost(mx, "keepalive: the box stopped answering");
			ents_reap(mx);
			return 1;
		}
	} else if (!remote__ssh_is_dead(mx->ssh)) {
		remote__ssh_keepalive_send(mx->ssh);
	}
	if (progress)
		return 1;
	pfd[n].fd = mx->wake[0];
	pfd[n].events = POLLIN;
	n++;
	if (mx->lfd >= 0) {
		pfd[n].fd = mx->lfd;
		pfd[n].events = POLLIN;
		n++;
	}
	if (want_session) {
		if (remote__ssh_pollfd(mx->ssh, &pfd[n]) && reads)
			return 1; /* decrypted bytes are waiting */
		if (!reads)
			pfd[n].events &= (short)~POLLIN; /* only a pending write, if any */
		n++;
	}
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next) {
		if (e->ctl >= 0) {
			pfd[n].fd = e->ctl;
			pfd[n].events = POLLIN;
			n++;
		}
		if (e->state != MS_RUN || e->kind != MK_CLIENT)
			continue;
		if (e->fd[0] >= 0 && !e->in_eof && !e->in_dead && e->hdr_off >= e->hdr_len &&
		    e->in_off >= e->in_len) {
			pfd[n].fd = e->fd[0];
			pfd[n].events = POLLIN;
			n++;
		}
		for (int k = 0; k < 2; k++) {
			if (e->fd[1 + k] >= 0 && e->out_off[k] < e->out_len[k]) {
				pfd[n].fd = e->fd[1 + k];
				pfd[n].events = POLLOUT;
				n++;
			}
		}
	}
	for (nfds_t i = 0; i < n; i++)
		pfd[i].revents = 0;
	(void)poll(pfd, n, wait_ms);
	if (pfd[0].revents & POLLIN) {
		char b[16];

		while (read(mx->wake[0], b, sizeof(b)) > 0)
			;
	}
	return 0;
}

static void *mux_main(void *arg)
{
	struct remote_mux *mx = arg;
	int64_t until;

	mux_spare_ensure(mx);
	while (!atomic_load(&mx->stop))
		(void)mux_loop_once(mx, 1000);
	/* Stop: no new clients; running commands are abandoned (their clients get an
	 * error, their process groups a TERM; ent_step), the spare exits at its EOF,
	 * operations in flight finish first; channels close within MUX_STOP_MS. */
	close(mx->lfd);
	mx->lfd = -1;
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next)
		if (e->state == MS_REQ)
			e->state = MS_GONE;
	until = remote__now_ms() + MUX_STOP_MS;
	while (mx->ents != NULL && remote__now_ms() < until)
		(void)mux_loop_once(mx, 50);
	for (struct mux_ent *e = mx->ents; e != NULL; e = e->next) {
		ent_reply(e, TDXR_EIO, "mux: stopped");
		e->ch = NULL; /* left to the session (freed with it) */
		e->state = MS_GONE;
	}
	ents_reap(mx);
	mx->opening = NULL;
	return NULL;
}

/* ---- public -------------------------------------------------------------------- */

int remote_mux_start(struct remote_ssh *ssh, const char *sock_path, struct remote_mux **out,
                     struct tdxr_err *err)
{
	struct remote_mux *mx = NULL;
	struct sockaddr_un sa;
	struct stat st;
	sigset_t all, old;
	int rc;

	*out = NULL;
	if (strlen(sock_path) >= sizeof(mx->path))
		return tdxr_err_set(err, TDXR_EINVAL, "mux: socket path too long");
	mx = calloc(1, sizeof(*mx));
	if (mx == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "mux: out of memory");
	mx->ssh = ssh;
	mx->lfd = mx->wake[0] = mx->wake[1] = mx->dirfd = -1;
	mx->uid = geteuid();
	atomic_store(&mx->prestart, 1);
	snprintf(mx->path, sizeof(mx->path), "%s", sock_path);
	rc = mux_addr(sock_path, &sa, &mx->dirfd, err);
	if (rc != 0)
		goto out;
	/* A socket left by a crashed run is replaced; anything else is not touched. */
	if (lstat(sock_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "mux: %s exists and is not a socket", sock_path);
			goto out;
		}
		if (remote_mux_exec(sock_path, NULL, -1, -1, -1, NULL, NULL, NULL) != TDXR_ENOTFOUND) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "mux: %s is already served", sock_path);
			goto out;
		}
		(void)unlink(sock_path);
	}
	mx->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (mx->lfd < 0 || bind(mx->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "mux: cannot bind %s: %s", sock_path, strerror(errno));
		goto out;
	}
	if (chmod(sock_path, 0600) != 0 || listen(mx->lfd, 16) != 0 ||
	    pipe2(mx->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "mux: cannot listen on %s: %s", sock_path, strerror(errno));
		(void)unlink(sock_path);
		goto out;
	}
	mux_spare_first(mx);
	/* The thread takes no signals: handlers keep running where the caller expects. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&mx->thr, NULL, mux_main, mx);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		rc = tdxr_err_set(err, TDXR_ERROR, "mux: cannot start its thread: %s", strerror(rc));
		(void)unlink(sock_path);
		for (struct mux_ent *e = mx->ents; e != NULL; e = e->next)
			spare_drop(mx, e, 0);
		ents_reap(mx);
		goto out;
	}
	*out = mx;
	return 0;
out:
	if (mx->lfd >= 0)
		close(mx->lfd);
	for (int i = 0; i < 2; i++)
		if (mx->wake[i] >= 0)
			close(mx->wake[i]);
	if (mx->dirfd >= 0)
		close(mx->dirfd);
	free(mx);
	return rc;
}

const char *remote_mux_path(const struct remote_mux *mx)
{
	return mx->path;
}

void remote_mux_prestart(struct remote_mux *mx, int on)
{
	if (mx != NULL)
		atomic_store(&mx->prestart, on != 0);
}

void remote_mux_stop(struct remote_mux *mx)
{
	if (mx == NULL)
		return;
	atomic_store(&mx->stop, 1);
	if (write(mx->wake[1], "x", 1) < 0) {
		/* full pipe: the thread is awake anyway, and it checks stop every second */
	}
	pthread_join(mx->thr, NULL);
	(void)unlink(mx->path);
	close(mx->wake[0]);
	close(mx->wake[1]);
	if (mx->dirfd >= 0)
		close(mx->dirfd);
	free(mx);
}

int remote_mux_exec(const char *sock_path, const char *command, int fd_in, int fd_out, int fd_err,
                    const atomic_int *cancel, struct remote_exec_result *res, struct tdxr_err *err)
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct sockaddr_un sa;
	struct remote__mux_req req;
	struct remote__mux_reply rep;
	struct msghdr mh;
	struct iovec iov[2];
	struct cmsghdr *c;
	int fd = -1, dirfd = -1, fds[3] = { fd_in, fd_out, fd_err }, rc;
	size_t len = command != NULL ? strlen(command) : 0;
	ssize_t n;

	if (res != NULL)
		memset(res, 0, sizeof(*res));
	rc = mux_addr(sock_path, &sa, &dirfd, err);
	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = tdxr_err_set(err, TDXR_EIO, "mux: socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = tdxr_err_set(err, TDXR_ENOTFOUND, "mux: nothing serves %s (%s)", sock_path,
		                  strerror(errno));
		goto out;
	}
	if (!peer_uid_ok(fd, geteuid())) {
		rc = tdxr_err_set(err, TDXR_EAUTH, "mux: %s is served by another user", sock_path);
		goto out;
	}
	if (command == NULL) { /* a probe: someone serves the path */
		rc = 0;
		goto out;
	}
	if (len == 0 || len > REMOTE__MUX_CMD_MAX) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "mux: command empty or over %u bytes",
		                  REMOTE__MUX_CMD_MAX);
		goto out;
	}
	memset(&req, 0, sizeof(req));
	memcpy(req.magic, REMOTE__MUX_MAGIC, 8);
	req.cmd_len = (uint32_t)len;
	iov[0].iov_base = &req;
	iov[0].iov_len = sizeof(req);
	iov[1].iov_base = (void *)(uintptr_t)command;
	iov[1].iov_len = len;
	memset(&mh, 0, sizeof(mh));
	memset(&cm, 0, sizeof(cm));
	mh.msg_iov = iov;
	mh.msg_iovlen = 2;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) + len)) {
		rc = tdxr_err_set(err, TDXR_EIO, "mux: sending the request: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };

		if (cancel != NULL && atomic_load(cancel) != 0) {
			rc = tdxr_err_set(err, TDXR_ECANCELED, "mux: cancelled");
			goto out; /* closing the connection ends the command */
		}
		if (poll(&p, 1, 100) > 0)
			break;
	}
	n = recv(fd, &rep, sizeof(rep), 0);
	if (n != (ssize_t)sizeof(rep) || memcmp(rep.magic, REMOTE__MUX_MAGIC, 8) != 0) {
		rc =
		    tdxr_err_set(err, TDXR_EIO, "mux: the multiplexer went away before the command finished");
		goto out;
	}
	rep.signal[sizeof(rep.signal) - 1] = '\0';
	rep.msg[sizeof(rep.msg) - 1] = '\0';
	if (rep.rc != 0) {
		rc =
		    tdxr_err_set(err, rep.rc < 0 && rep.rc >= TDXR_ENOMEM ? rep.rc : TDXR_EIO, "%s", rep.msg);
		goto out;
	}
	if (res != NULL) {
		res->exited = rep.exited != 0;
		res->exit_status = rep.status;
		snprintf(res->exit_signal, sizeof(res->exit_signal), "%s", rep.signal);
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}
