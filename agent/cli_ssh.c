/*
 * cli_ssh.c - `tdx-runner ssh` (a command or an interactive shell in a leased box)
 * and `tdx-runner rsh` (rsync's remote shell: `rsync -e "tdx-runner rsh LEASE"`),
 * both on agent/remote/: TLS or TCP, libssh2, no ssh or openssl binaries.
 *
 * Secrets: environment values for the remote command come from files
 * (--env-file NAME=PATH, 0600) and travel on the channel's stdin, never in any
 * argv or inherited environment. Exit status: the remote command's; 128+N when it
 * was killed by signal N; 255 when the box could not be reached or the session
 * failed (as ssh does); 2 for usage errors.
 *
 * rsh first tries the multiplexer named by TDXR_MUX (a channel on a session some
 * other process holds: the job's, or `rsh --master`); only when nothing serves it
 * does it connect by itself. The interactive shell follows the terminal's size
 * (SIGWINCH -> window-change).
 */
#include "agent/cli.h"

#include "agent/remote/remote.h"
#include "common/secret.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define SSH_MAX_ENV 64

static atomic_int cli_cancel;
static atomic_int cli_resize;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&cli_cancel, 1);
}

static void on_winch(int sig)
{
	(void)sig;
	atomic_store(&cli_resize, 1);
}

/* The terminal's size now (SIGWINCH said it changed). */
static int tty_size(void *ctx, unsigned *cols, unsigned *rows)
{
	struct winsize ws;

	(void)ctx;
	if (ioctl(0, TIOCGWINSZ, &ws) != 0 && ioctl(1, TIOCGWINSZ, &ws) != 0)
		return -1;
	*cols = ws.ws_col;
	*rows = ws.ws_row;
	return 0;
}

static void signals_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR promptly */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Writes everything, waiting when the fd is non-blocking and full. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT, .revents = 0 };

				(void)poll(&pfd, 1, 1000);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int out_to_fds(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	(void)ctx;
	return write_all(which == REMOTE_OUT_STDERR ? 2 : 1, p, n);
}

static int signal_number(const char *name)
{
	static const struct {
		const char *n;
		int v;
	} tab[] = { { "HUP", 1 },   { "INT", 2 },   { "QUIT", 3 },  { "ILL", 4 },   { "ABRT", 6 },
		    { "FPE", 8 },   { "KILL", 9 },  { "USR1", 10 }, { "SEGV", 11 }, { "USR2", 12 },
		    { "PIPE", 13 }, { "ALRM", 14 }, { "TERM", 15 } };
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(tab[i].n, name) == 0)
			return tab[i].v;
	return 0;
}

/* Joins argv with single spaces, as ssh does with its command arguments. */
static char *join_args(int argc, char **argv)
{
	size_t n = 1, off = 0;
	int i;
	char *s;

	for (i = 0; i < argc; i++)
		n += strlen(argv[i]) + 1;
	s = malloc(n);
	if (s == NULL)
		return NULL;
	for (i = 0; i < argc; i++) {
		size_t l = strlen(argv[i]);

		if (i > 0)
			s[off++] = ' ';
		memcpy(s + off, argv[i], l);
		off += l;
	}
	s[off] = '\0';
	return s;
}

struct run_args {
	const char *lease_path;
	char *command; /* NULL = interactive shell */
	int timeout_s;
	int connect_timeout_s;
	int keepalive_s; /* 0 = default */
	struct remote_env env[SSH_MAX_ENV];
	struct tdxr_secret *secrets[SSH_MAX_ENV];
	char *names[SSH_MAX_ENV];
	size_t n_env;
	const char *prog;
	const char *mux; /* rsh: TDXR_MUX, a multiplexer socket to try first */
	int guest; /* 1 = guest-agent Info, 2 = GetQuote */
	uint8_t report_data[64];
};

static int run_remote(struct run_args *a)
{
	struct remote_lease *lease = NULL;
	struct remote_ssh *ssh = NULL;
	struct remote_exec_opts o;
	struct remote_exec_result res;
	struct termios saved;
	struct winsize ws;
	int raw = 0, rc, code = 255;
	struct tdxr_err e;

	tdxr_err_clear(&e);
	signals_setup();
	if (a->mux != NULL && a->mux[0] != '\0') {
		memset(&res, 0, sizeof(res));
		rc = remote_mux_exec(a->mux, a->command, 0, 1, 2, &cli_cancel, &res, &e);
		if (rc == 0) {
			code = res.exit_signal[0] != '\0' ? 128 + signal_number(res.exit_signal)
			                                    : res.exit_status & 0xff;
			goto out;
		}
		if (rc != TDXR_ENOTFOUND && rc != TDXR_ETOOBIG) {
			fprintf(stderr, "%s: %s\n", a->prog, e.msg);
			goto out;
		}
		tdxr_err_clear(&e); /* nothing serves it (or it is full): connect ourselves */
	}
	rc = remote_lease_load(a->lease_path, &lease, &e);
	if (rc == 0)
		rc = remote_lease_connect_tuned(lease, a->connect_timeout_s * 1000, a->keepalive_s, &ssh, &e);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", a->prog, e.msg);
		goto out;
	}
	if (a->guest != 0) {
		uint8_t *body = NULL;
		size_t blen = 0;

		rc = a->guest == 1
		         ? remote_guest_info(ssh, a->timeout_s * 1000, &body, &blen, &e)
		         : remote_guest_quote(ssh, a->report_data, a->timeout_s * 1000, &body, &blen, &e);
		if (rc != 0)
			fprintf(stderr, "%s: %s\n", a->prog, e.msg);
		else
			code = write_all(1, body, blen) == 0 ? 0 : 2;
		free(body);
		goto out;
	}
	memset(&o, 0, sizeof(o));
	o.command = a->command;
	o.env = a->env;
	o.n_env = a->n_env;
	o.stdin_fd = 0;
	o.output = out_to_fds;
	o.timeout_ms = a->timeout_s * 1000;
	o.cancel = &cli_cancel;
	if (a->command == NULL) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_winch;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGWINCH, &sa, NULL);
		o.resize = &cli_resize;
		o.size_fn = tty_size;
		o.pty = 1;
		o.term = getenv("TERM");
		if (ioctl(0, TIOCGWINSZ, &ws) == 0) {
			o.cols = ws.ws_col;
			o.rows = ws.ws_row;
		}
		if (isatty(0) && tcgetattr(0, &saved) == 0) {
			struct termios t = saved;

			cfmakeraw(&t);
			raw = tcsetattr(0, TCSANOW, &t) == 0;
		}
	}
	rc = remote_exec_run(ssh, &o, &res, &e);
	if (raw)
		(void)tcsetattr(0, TCSANOW, &saved);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", a->prog, e.msg);
		if (res.exit_signal[0] != '\0')
			code = 128 + signal_number(res.exit_signal);
		goto out;
	}
	if (res.exit_signal[0] != '\0')
		code = 128 + signal_number(res.exit_signal);
	else
		code = res.exit_status & 0xff;
out:
	remote_ssh_free(ssh);
	remote_lease_free(lease);
	return code;
}

static void run_args_dispose(struct run_args *a)
{
	size_t i;

	for (i = 0; i < a->n_env; i++) {
		tdxr_secret_free(a->secrets[i]);
		free(a->names[i]);
	}
	free(a->command);
}

static int add_env_file(struct run_args *a, const char *spec)
{
	const char *eq = strchr(spec, '=');
	struct tdxr_err e;
	size_t i = a->n_env;

	if (eq == NULL || eq == spec || a->n_env >= SSH_MAX_ENV) {
		fprintf(stderr, "tdx-runner ssh: --env-file wants NAME=PATH\n");
		return -1;
	}
	a->names[i] = strndup(spec, (size_t)(eq - spec));
	if (a->names[i] == NULL)
		return -1;
	if (tdxr_secret_from_file(eq + 1, &a->secrets[i], &e) != 0) {
		fprintf(stderr, "tdx-runner ssh: %s\n", e.msg);
		free(a->names[i]);
		a->names[i] = NULL;
		return -1;
	}
	a->env[i].name = a->names[i];
	a->env[i].value = tdxr_secret_str(a->secrets[i]);
	a->n_env++;
	return 0;
}

void cli_ssh_help(void)
{
	printf("usage: tdx-runner ssh [options] LEASE [-- COMMAND...]\n"
	       "\n"
	       "Runs COMMAND (joined with spaces, run by /bin/sh) in the leased box, or an\n"
	       "interactive login shell with a pty when there is no COMMAND. LEASE is a lease\n"
	       "file (JSON, mode 0600). The SSH host key is pinned in the lease file on first\n"
	       "use; a changed key is refused. Exit status: the command's, 128+N when it was\n"
	       "killed by signal N, 255 when the box could not be reached.\n"
	       "\n"
	       "  --env-file NAME=PATH   export NAME with the contents of PATH (0600) to the\n"
	       "                         command; sent over the channel, never in argv\n"
	       "  --timeout SECONDS      stop the command after this long (TERM to its group)\n"
	       "  --connect-timeout S    bound on connecting and each SSH step (default 15)\n"
	       "  --keepalive S          keepalive interval; the box is declared gone after 4\n"
	       "                         silent intervals (default 15, 0 = off)\n"
	       "  --guest-info           print the box's dstack guest-agent Info response (the\n"
	       "                         bytes as received) instead of running a command\n"
	       "  --guest-quote HEX      print the guest agent's GetQuote response for this\n"
	       "                         REPORTDATA (up to 64 bytes, zero-padded)\n");
}

int cli_ssh(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "env-file", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "connect-timeout", required_argument, NULL, 'c' },
		{ "keepalive", required_argument, NULL, 'k' },
		{ "guest-info", no_argument, NULL, 'i' },
		{ "guest-quote", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	struct run_args a;
	uint64_t v;
	int c, code = 2;

	memset(&a, 0, sizeof(a));
	a.prog = "tdx-runner ssh";
	a.connect_timeout_s = 15;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		switch (c) {
		case 'e':
			if (add_env_file(&a, optarg) != 0)
				goto out;
			break;
		case 't':
		case 'c':
		case 'k':
			if (tdxr_parse_u64(optarg, 86400, &v, NULL) != 0) {
				fprintf(stderr, "tdx-runner ssh: bad number of seconds '%s'\n", optarg);
				goto out;
			}
			if (c == 'k')
				a.keepalive_s = v == 0 ? -1 : (int)v;
			else if (c == 't')
				a.timeout_s = (int)v;
			else
				a.connect_timeout_s = (int)v;
			break;
		case 'i': a.guest = 1; break;
		case 'q': {
			size_t n = 0;

			memset(a.report_data, 0, sizeof(a.report_data));
			if (tdxr_hex_decode(optarg, strlen(optarg), a.report_data, sizeof(a.report_data),
			                    &n) != 0) {
				fprintf(stderr,
				        "tdx-runner ssh: --guest-quote wants up to 64 bytes of hex\n");
				goto out;
			}
			a.guest = 2;
			break;
		}
		default: fprintf(stderr, "tdx-runner ssh: unknown option (see --help)\n"); goto out;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "tdx-runner ssh: missing LEASE (see --help)\n");
		goto out;
	}
	a.lease_path = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (a.guest != 0 && optind < argc) {
		fprintf(stderr, "tdx-runner ssh: --guest-info/--guest-quote take no COMMAND\n");
		goto out;
	}
	if (optind < argc) {
		a.command = join_args(argc - optind, argv + optind);
		if (a.command == NULL)
			goto out;
	} else if (a.n_env > 0) {
		fprintf(stderr, "tdx-runner ssh: --env-file needs a COMMAND\n");
		goto out;
	}
	code = run_remote(&a);
out:
	run_args_dispose(&a);
	return code;
}

void cli_rsh_help(void)
{
	printf("usage: tdx-runner rsh LEASE [-l USER] HOST COMMAND...\n"
	       "       tdx-runner rsh --master SOCKET LEASE\n"
	       "\n"
	       "rsync's remote shell: rsync -e 'tdx-runner rsh LEASE' SRC box:DST. HOST (and\n"
	       "-l USER) come from rsync and are ignored: the lease says where the box is.\n"
	       "COMMAND runs in the box with stdin/stdout pumped binary-clean.\n"
	       "\n"
	       "When TDXR_MUX names a multiplexer socket that is served, COMMAND runs on a new\n"
	       "channel of that process's session (no new connection); otherwise rsh connects\n"
	       "by itself. --master connects to LEASE and serves SOCKET (created 0600; keep it\n"
	       "in a directory only you can enter) until SIGINT/SIGTERM/SIGHUP:\n"
	       "  tdx-runner rsh --master /run/user/$UID/box.mux LEASE &\n"
	       "  TDXR_MUX=/run/user/$UID/box.mux rsync -e 'tdx-runner rsh LEASE' ...\n"
	       "A dead session is re-established (same pinned host key) for the next command;\n"
	       "a command that was running when it died fails.\n");
}

/* --master: one session, served on SOCKET until a signal. */
static int rsh_master(const char *sock, const char *lease_path)
{
	struct remote_lease *lease = NULL;
	struct remote_ssh *ssh = NULL;
	struct remote_mux *mx = NULL;
	struct tdxr_err e;
	int code = 255;

	tdxr_err_clear(&e);
	signals_setup();
	if (remote_lease_load(lease_path, &lease, &e) != 0 || remote_lease_connect(lease, 15000, &ssh, &e) != 0 ||
	    remote_mux_start(ssh, sock, &mx, &e) != 0) {
		fprintf(stderr, "tdx-runner rsh: %s\n", e.msg);
		goto out;
	}
	fprintf(stderr, "tdx-runner rsh: serving %s (host key %s)\n", sock, remote_ssh_host_key(ssh));
	while (!atomic_load(&cli_cancel))
		(void)poll(NULL, 0, 200);
	remote_mux_stop(mx);
	fprintf(stderr, "tdx-runner rsh: stopped (%u reconnect%s)\n", remote_ssh_reconnects(ssh),
	        remote_ssh_reconnects(ssh) == 1 ? "" : "s");
	code = 0;
out:
	remote_ssh_free(ssh);
	remote_lease_free(lease);
	return code;
}

int cli_rsh(int argc, char **argv)
{
	struct run_args a;
	int i = 1, code = 2;

	memset(&a, 0, sizeof(a));
	a.prog = "tdx-runner rsh";
	a.connect_timeout_s = 15;
	if (argc >= 2 && strcmp(argv[1], "--master") == 0) {
		if (argc != 4) {
			fprintf(stderr, "tdx-runner rsh: --master wants SOCKET LEASE\n");
			return 2;
		}
		return rsh_master(argv[2], argv[3]);
	}
	if (argc < 2) {
		fprintf(stderr, "tdx-runner rsh: missing LEASE (see --help)\n");
		return 2;
	}
	a.lease_path = argv[i++];
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
			i += 2;
			continue;
		}
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		i++; /* other ssh-style flags rsync may add (-4, -6, ...) mean nothing here */
	}
	if (i >= argc) {
		fprintf(stderr, "tdx-runner rsh: missing HOST\n");
		return 2;
	}
	i++; /* HOST */
	if (i >= argc) {
		fprintf(stderr, "tdx-runner rsh: missing COMMAND (an interactive shell is `ssh`)\n");
		return 2;
	}
	a.command = join_args(argc - i, argv + i);
	if (a.command == NULL)
		return 2;
	a.mux = getenv("TDXR_MUX");
	code = run_remote(&a);
	run_args_dispose(&a);
	return code;
}
