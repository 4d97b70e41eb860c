/*
 * local.c - the `local` executor, the embedded default: a "box" on this
 * machine. Each box is a directory <state_dir>/boxes/<lease id>/ holding its
 * own sshd (per-box host key, the lease's authorised key, 127.0.0.1 on a free
 * port) and a guest agent (`tdx-runner guest-agent`) on a unix socket that
 * speaks the dstack API and issues fresh simulated quotes (attest/sim) whose
 * event log names this box's app id, compose hash and instance id. sshd passes
 * DSTACK_SIMULATOR_ENDPOINT to sessions, as the dstack SDK convention says.
 *
 * Trust: nothing here is a TEE - verdicts are "simulated" and the pipeline
 * refuses them unless policy allows simulated attestation.
 *
 * Release: every process of a box is in the box's cgroup (cgroup v2, when this
 * host lets us create one) and/or references the box directory in its command
 * line or environment; destroy kills all of them (TERM, then KILL), then
 * removes the directory. It works from the lease record alone, after a crash.
 */
#include "executors/executor.h"

#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CGROUP2_MAGIC 0x63677270

static const char DEFAULT_COMPOSE[] =
    "{\"manifest_version\":2,\"name\":\"tdx-runner-local\",\"runner\":\"docker-compose\","
    "\"docker_compose_file\":\"services: {}\\n\",\"kms_enabled\":false,\"gateway_enabled\":false,"
    "\"public_logs\":false,\"public_sysinfo\":false,\"local_key_provider_enabled\":true}";

struct local_priv {
	char boxes[PATH_MAX];
	char self[PATH_MAX];
	char sshd[PATH_MAX];
	char cgroot[PATH_MAX]; /* cgroup v2 mount for per-box groups, "" = none */
};

/* ---- small helpers ---- */

/* Bounded copy; -1 when src does not fit (the caller treats that as an error or a skip). */
static int cpy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

static int write_text(const char *dir, const char *name, const char *text, unsigned mode,
                      struct tdxr_err *err)
{
	char p[PATH_MAX];

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p))
		return tdxr_err_set(err, TDXR_EINVAL, "local: path too long");
	return tdxr_file_write_atomic(p, text, strlen(text), mode, err);
}

static int read_text(const char *dir, const char *name, char *out, size_t cap)
{
	char p[PATH_MAX];
	uint8_t *d = NULL;
	size_t n = 0;

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p) ||
	    tdxr_file_read(p, cap - 1, &d, &n, NULL))
		return TDXR_ENOTFOUND;
	while (n && (d[n - 1] == '\n' || d[n - 1] == ' '))
		n--;
	memcpy(out, d, n);
	out[n] = '\0';
	free(d);
	return 0;
}

static int free_port(unsigned *port)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return TDXR_EIO;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		close(fd);
		return TDXR_EIO;
	}
	*port = ntohs(a.sin_port);
	close(fd);
	return 0;
}

static int tcp_ok(unsigned port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static int unix_ok(const char *path)
{
	struct sockaddr_un a;
	int fd, ok;

	if (strlen(path) >= sizeof(a.sun_path))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex_id(const char *label, const char *lease_id, char out[41])
{
	uint8_t h[32];
	unsigned int n = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	memset(h, 0, sizeof(h));
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1) {
		EVP_DigestUpdate(c, label, strlen(label));
		EVP_DigestUpdate(c, lease_id, strlen(lease_id));
		EVP_DigestFinal_ex(c, h, &n);
	}
	EVP_MD_CTX_free(c);
	tdxr_hex_encode(h, 20, out);
}

/* ---- process control ---- */

/* Starts argv detached (own session), stdout/stderr appended to log, in the box's cgroup. */
/* In the child, before exec: the box's own view of the user's shell start-up. sshd runs
 * every command through the login user's shell, and bash sources ~/.bashrc for commands that
 * come over SSH: a developer's rc (pyenv, nvm, ...) would run in every box session - slow, and
 * not what a CVM has. When we may (root), the box's processes get a private mount namespace
 * in which ~/.bashrc is the box's own (near-empty) file. Best effort: without the privilege the
 * user's rc runs, as before. */
static void child_hide_rc(const char *rc_file)
{
	struct passwd *pw;
	char home_rc[PATH_MAX];

	if (rc_file == NULL || geteuid() != 0 || (pw = getpwuid(geteuid())) == NULL || pw->pw_dir == NULL ||
	    (size_t)snprintf(home_rc, sizeof(home_rc), "%s/.bashrc", pw->pw_dir) >= sizeof(home_rc) ||
	    access(home_rc, F_OK) != 0)
		return;
	if (unshare(CLONE_NEWNS) != 0)
		return;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount(rc_file, home_rc, NULL, MS_BIND, NULL) != 0) {
		/* the namespace stays private and otherwise identical: harmless */
	}
}

/*
 * Starts argv with stdout/stderr appended to log, in the box's cgroup when cgprocs is set.
 * detach: the process is not our child (double fork; reparented to init or the nearest
 * subreaper), so a multi-threaded agent never has to reap box processes - reaping with
 * waitpid(-1) would steal other threads' children (ssh-keygen, rsync). *pid_out is the
 * started process's pid either way.
 */
static int spawn(char *const argv[], const char *log, const char *cgprocs, int detach, const char *rc_file,
                 pid_t *pid_out, struct tdxr_err *err)
{
	int pfd[2] = { -1, -1 };
	pid_t pid, got = -1;

	if (detach && pipe2(pfd, O_CLOEXEC) != 0)
		return tdxr_err_set(err, TDXR_EIO, "local: pipe failed: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		if (detach) {
			close(pfd[0]);
			close(pfd[1]);
		}
		return tdxr_err_set(err, TDXR_EIO, "local: fork failed: %s", strerror(errno));
	}
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600),
		    nul = open("/dev/null", O_RDONLY);

		setsid();
		if (cgprocs[0]) {
			int cg = open(cgprocs, O_WRONLY | O_CLOEXEC);

			if (cg >= 0) {
				if (write(cg, "0", 1) < 0) {
					/* best effort: the /proc scan still finds the process */
				}
				close(cg);
			}
		}
		if (detach) {
			pid_t gc = fork();

			if (gc != 0) { /* the middle process: report the pid, leave at once */
				ssize_t w = write(pfd[1], &gc, sizeof(gc));

				_exit(w == (ssize_t)sizeof(gc) && gc > 0 ? 0 : 1);
			}
		}
		child_hide_rc(rc_file);
		if (nul >= 0)
			dup2(nul, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (!detach) {
		*pid_out = pid;
		return 0;
	}
	close(pfd[1]);
	while (read(pfd[0], &got, sizeof(got)) < 0 && errno == EINTR)
		;
	close(pfd[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) /* the middle process, ours to reap */
		;
	if (got <= 0)
		return tdxr_err_set(err, TDXR_EIO, "local: could not start %s", argv[0]);
	*pid_out = got;
	return 0;
}

/* Does /proc/<pid>/{cmdline,environ} mention needle? */
static int proc_mentions(pid_t pid, const char *needle)
{
	static const char *const files[] = { "cmdline", "environ" };
	char p[64], buf[65536];
	size_t i, k, nl = strlen(needle);

	for (i = 0; i < 2; i++) {
		ssize_t n;
		int fd;

		snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, files[i]);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		close(fd);
		for (k = 0; n > 0 && (size_t)n >= nl && k + nl <= (size_t)n; k++)
			if (memcmp(buf + k, needle, nl) == 0)
				return 1;
	}
	return 0;
}

/* Sends sig to every process that references the box ("<box>/" in its command
 * line or environment) or sits in its cgroup; returns how many. */
static int signal_box(const char *box_dir, const char *cgroup_dir, int sig)
{
	char p[PATH_MAX], line[32], box[PATH_MAX + 1];
	struct dirent *de;
	DIR *d;
	int n = 0;
	pid_t self = getpid();

	snprintf(box, sizeof(box), "%s/", box_dir);
	if (cgroup_dir[0]) {
		FILE *f;

		snprintf(p, sizeof(p), "%s/cgroup.procs", cgroup_dir);
		f = fopen(p, "re");
		while (f && fgets(line, sizeof(line), f)) {
			long pid = strtol(line, NULL, 10);

			if (pid > 1 && pid != self && kill((pid_t)pid, sig) == 0)
				n++;
		}
		if (f)
			fclose(f);
	}
	d = opendir("/proc");
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 1 || pid == self)
			continue;
		if (proc_mentions((pid_t)pid, box) && kill((pid_t)pid, sig) == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static int rm_rf(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	char p[PATH_MAX];
	int rc = 0;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", path, de->d_name) >= sizeof(p) || rm_rf(p))
			rc = -1;
	}
	closedir(d);
	return rmdir(path) || rc;
}

/* ---- the ops ---- */

static int local_init(void *vp, const char *state_dir, const char *config_json, struct tdxr_err *err)
{
	struct local_priv *p = vp;
	struct statfs sf;
	ssize_t n;

	if ((size_t)snprintf(p->boxes, sizeof(p->boxes), "%s/boxes", state_dir) >= sizeof(p->boxes))
		return tdxr_err_set(err, TDXR_EINVAL, "local: state directory path too long");
	if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
		return tdxr_err_set(err, TDXR_EIO, "local: cannot create %s: %s", state_dir, strerror(errno));
	if (mkdir(p->boxes, 0700) != 0 && errno != EEXIST)
		return tdxr_err_set(err, TDXR_EIO, "local: cannot create %s: %s", p->boxes, strerror(errno));
	/* The guest agent is this binary's `guest-agent` command. TDXR_SELF_EXE names the
	 * binary when the caller is not tdx-runner itself (the unit tests). */
	if (getenv("TDXR_SELF_EXE") && cpy(p->self, sizeof(p->self), getenv("TDXR_SELF_EXE")) == 0) {
		n = 1;
	} else {
		n = readlink("/proc/self/exe", p->self, sizeof(p->self) - 1);
		if (n > 0)
			p->self[n] = '\0';
	}
	if (n <= 0 || access(p->self, X_OK) != 0)
		return tdxr_err_set(err, TDXR_EIO,
		                    "local: cannot find the tdx-runner binary (/proc/self/exe)");
	snprintf(p->sshd, sizeof(p->sshd), "%s",
	         getenv("TDXR_SSHD") ? getenv("TDXR_SSHD") : "/usr/sbin/sshd");
	if (access(p->sshd, X_OK) != 0)
		return tdxr_err_set(err, TDXR_ENOTFOUND,
		                    "local: %s not found: the local executor needs OpenSSH's sshd "
		                    "(packaging/install-deps.sh installs openssh-server)",
		                    p->sshd);
	p->cgroot[0] = '\0';
	if (statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_MAGIC)
		snprintf(p->cgroot, sizeof(p->cgroot), "/sys/fs/cgroup");
	else if (statfs("/sys/fs/cgroup/unified", &sf) == 0 && sf.f_type == CGROUP2_MAGIC)
		snprintf(p->cgroot, sizeof(p->cgroot), "/sys/fs/cgroup/unified");
	(void)config_json;
	return 0;
}

static void local_dispose(void *vp)
{
	(void)vp;
}

static int box_cgroup(const struct local_priv *p, const char *id, char *out, size_t cap)
{
	out[0] = '\0';
	if (!p->cgroot[0])
		return 0;
	if ((size_t)snprintf(out, cap, "%s/tdxr-%s", p->cgroot, id) >= cap) {
		out[0] = '\0';
		return 0;
	}
	if (mkdir(out, 0755) != 0 && errno != EEXIST) {
		out[0] = '\0'; /* not allowed here: the /proc scan alone finds the box's processes */
		return 0;
	}
	return 0;
}

static int local_create(void *vp, const struct exec_lease_spec *spec, struct exec_lease *lease,
                        struct tdxr_err *err)
{
	struct local_priv *p = vp;
	struct passwd *pw = getpwuid(geteuid());
	/* The box path is short (a unix socket path lives under it), so paths built from it fit. */
	char box[96], cfg[8192], key[PATH_MAX], log[PATH_MAX], sock[PATH_MAX], cg[512], cgprocs[PATH_MAX],
	    compose[PATH_MAX], pidbuf[32], app_id[41], instance_id[41], cgname[41], rcfile[PATH_MAX];
	unsigned port = 0;
	pid_t sshd_pid = 0, ga_pid = 0, kg = -1;
	int rc, status = 0, i;

	memset(lease, 0, sizeof(*lease));
	if (spec->lease_id == NULL || spec->ssh_pubkey == NULL || strchr(spec->ssh_pubkey, '\n'))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "local: a lease id and a one-line SSH public key are required");
	if ((size_t)snprintf(box, sizeof(box), "%s/%s", p->boxes, spec->lease_id) >= sizeof(box))
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "local: box path %s/%s is too long for a unix socket; use a shorter state_dir", p->boxes,
		    spec->lease_id);
	if (mkdir(box, 0700) != 0)
		return tdxr_err_set(err, TDXR_EIO, "local: cannot create box %s: %s", box, strerror(errno));
	snprintf(lease->executor, sizeof(lease->executor), "local");
	snprintf(lease->cloud_id, sizeof(lease->cloud_id), "%s", spec->lease_id);
	snprintf(lease->name, sizeof(lease->name), "%s", spec->name ? spec->name : spec->lease_id);
	snprintf(lease->box_dir, sizeof(lease->box_dir), "%s", box);
	hex_id("tdx-runner local app ", spec->lease_id, app_id);
	hex_id("tdx-runner local instance ", spec->lease_id, instance_id);
	snprintf(lease->app_id, sizeof(lease->app_id), "%s", app_id);
	snprintf(key, sizeof(key), "%s/ssh_host_ed25519_key", box);
	snprintf(log, sizeof(log), "%s/box.log", box);
	snprintf(sock, sizeof(sock), "%s/guest.sock", box);
	snprintf(compose, sizeof(compose), "%s/app-compose.json", box);
	if ((rc = write_text(box, "authorized_keys", spec->ssh_pubkey, 0600, err)) ||
	    (rc = write_text(box, "app-compose.json", spec->compose ? spec->compose : DEFAULT_COMPOSE, 0644,
	                     err)) ||
	    (rc = write_text(box, "owner", spec->owner_host ? spec->owner_host : "", 0600, err)))
		return rc;
	snprintf(cfg, sizeof(cfg), "%s/work", box);
	mkdir(cfg, 0700);
	/* Host key: OpenSSH's own generator, so sshd reads it without conversions. */
	{
		char *argv[] = { "/usr/bin/ssh-keygen",  "-q", "-t", "ed25519", "-N", "", "-C",
			         "tdx-runner local box", "-f", key,  NULL };

		if ((rc = spawn(argv, log, "", 0, NULL, &kg, err)))
			return rc;
		if (waitpid(kg, &status, 0) != kg || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return tdxr_err_set(err, TDXR_EIO, "local: ssh-keygen failed (see %s)", log);
	}
	if (free_port(&port))
		return tdxr_err_set(err, TDXR_EIO, "local: no free loopback port");
	if ((size_t)snprintf(cfg, sizeof(cfg),
	                     "Port %u\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s/sshd.pid\n"
	                     "AuthorizedKeysFile %s/authorized_keys\nStrictModes no\nUsePAM no\n"
	                     "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
	                     "PermitRootLogin prohibit-password\nAllowUsers %s\nAllowTcpForwarding no\n"
	                     "X11Forwarding no\nPermitUserEnvironment no\n"
	                     "SetEnv DSTACK_SIMULATOR_ENDPOINT=%s TDXR_BOX=%s/\nLogLevel ERROR\n",
	                     port, key, box, box, pw ? pw->pw_name : "root", sock, box) >= sizeof(cfg))
		return tdxr_err_set(err, TDXR_EINVAL, "local: sshd configuration too long");
	if ((rc = write_text(box, "sshd_config", cfg, 0600, err)))
		return rc;
	snprintf(cfg, sizeof(cfg), "%u", port);
	if ((rc = write_text(box, "port", cfg, 0600, err)))
		return rc;
	/* The cgroup is named for the box directory, not only the lease id: two state
	 * directories may hold boxes with the same lease id. */
	hex_id("tdx-runner local cgroup ", box, cgname);
	cgname[16] = '\0';
	box_cgroup(p, cgname, cg, sizeof(cg));
	cgprocs[0] = '\0';
	if (cg[0]) {
		snprintf(cgprocs, sizeof(cgprocs), "%s/cgroup.procs", cg);
		write_text(box, "cgroup", cg, 0600, NULL);
	}
	if (geteuid() == 0)
		mkdir("/run/sshd", 0755); /* sshd's privilege separation directory */
	if ((rc = write_text(
	         box, "bashrc",
	         "# tdx-runner local box: the host user's shell start-up files do not run in boxes\n", 0644,
	         err)))
		return rc;
	snprintf(rcfile, sizeof(rcfile), "%s/bashrc", box);
	{
		char cfgpath[PATH_MAX];
		char *argv[] = { p->sshd, "-D", "-e", "-f", cfgpath, NULL };

		snprintf(cfgpath, sizeof(cfgpath), "%s/sshd_config", box);
		if ((rc = spawn(argv, log, cgprocs, 1, rcfile, &sshd_pid, err)))
			return rc;
	}
	{
		char *argv[] = { p->self,     "guest-agent", "--socket",      sock,
			         "--box-dir", box,           "--app-compose", compose,
			         "--app-id",  app_id,        "--instance-id", instance_id,
			         NULL };

		if ((rc = spawn(argv, log, cgprocs, 1, NULL, &ga_pid, err)))
			return rc;
	}
	snprintf(pidbuf, sizeof(pidbuf), "%d %d", (int)sshd_pid, (int)ga_pid);
	write_text(box, "pids", pidbuf, 0600, NULL);
	snprintf(lease->gateway, sizeof(lease->gateway), "127.0.0.1:%u", port);
	/* A process that exits at once (bad config, port taken) is reported now, not at the deadline.
	 * They are not our children (spawn detaches them): ask whether they still exist. */
	for (i = 0; i < 5; i++) {
		int sshd_gone = kill(sshd_pid, 0) != 0 && errno == ESRCH,
		    ga_gone = kill(ga_pid, 0) != 0 && errno == ESRCH;

		if (sshd_gone || ga_gone)
			return tdxr_err_set(err, TDXR_EIO, "local: %s exited at start (see %s)",
			                    sshd_gone ? "sshd" : "the guest agent", log);
		usleep(10000);
	}
	return 0;
}

static int local_wait_ready(void *vp, struct exec_lease *lease, int deadline_ms, struct tdxr_err *err)
{
	char port_s[16], sock[PATH_MAX];
	uint64_t port = 0;
	int64_t end = now_ms() + (deadline_ms > 0 ? deadline_ms : 30000);

	if (read_text(lease->box_dir, "port", port_s, sizeof(port_s)) ||
	    tdxr_parse_u64(port_s, 65535, &port, NULL))
		return tdxr_err_set(err, TDXR_ENOTFOUND, "local: box %s has no port file", lease->box_dir);
	snprintf(sock, sizeof(sock), "%s/guest.sock", lease->box_dir);
	while (!(tcp_ok((unsigned)port) && unix_ok(sock))) {
		if (now_ms() > end)
			return tdxr_err_set(
			    err, TDXR_ETIMEOUT,
			    "local: box %s not ready (sshd %s, guest agent %s; see %s/box.log)",
			    lease->cloud_id, tcp_ok((unsigned)port) ? "up" : "down",
			    unix_ok(sock) ? "up" : "down", lease->box_dir);
		usleep(20000);
	}
	return 0;
}

static int local_endpoint(void *vp, const struct exec_lease *lease, struct exec_endpoint *ep,
                          struct tdxr_err *err)
{
	struct passwd *pw = getpwuid(geteuid());
	char port_s[16];
	uint64_t port = 0;

	memset(ep, 0, sizeof(*ep));
	if (read_text(lease->box_dir, "port", port_s, sizeof(port_s)) ||
	    tdxr_parse_u64(port_s, 65535, &port, NULL))
		return tdxr_err_set(err, TDXR_ENOTFOUND, "local: box %s has no port file", lease->box_dir);
	ep->tls = 0;
	snprintf(ep->host, sizeof(ep->host), "127.0.0.1");
	ep->port = (unsigned)port;
	snprintf(ep->user, sizeof(ep->user), "%s", pw ? pw->pw_name : "root");
	if ((size_t)snprintf(ep->work_dir, sizeof(ep->work_dir), "%s/work", lease->box_dir) >=
	    sizeof(ep->work_dir))
		return tdxr_err_set(err, TDXR_EINVAL, "local: box path too long");
	return 0;
}

static int local_destroy(void *vp, const struct exec_lease *lease, struct tdxr_err *err)
{
	struct local_priv *p = vp;
	char cg[512] = "", want[PATH_MAX];
	struct stat st;
	int i;

	/* Ownership: only a directory directly under our boxes root, named like the lease. */
	if ((size_t)snprintf(want, sizeof(want), "%s/%s", p->boxes, lease->cloud_id) >= sizeof(want) ||
	    strcmp(want, lease->box_dir) != 0 || strchr(lease->cloud_id, '/') || lease->cloud_id[0] == '\0' ||
	    lease->cloud_id[0] == '.')
		return tdxr_err_set(err, TDXR_EINVAL, "local: lease box %s is not box %s of this executor",
		                    lease->box_dir, lease->cloud_id);
	if (lstat(lease->box_dir, &st) != 0 && errno == ENOENT)
		return 0; /* already gone: the box directory is this back end's record */
	read_text(lease->box_dir, "cgroup", cg, sizeof(cg));
	if (cg[0] && strncmp(cg, p->cgroot[0] ? p->cgroot : "/nonexistent", strlen(p->cgroot)) != 0)
		cg[0] = '\0';
	if (cg[0]) {
		char kill_path[PATH_MAX];
		int fd;

		snprintf(kill_path, sizeof(kill_path), "%s/cgroup.kill", cg);
		fd = open(kill_path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "1", 1) < 0) {
				/* fall through to signals */
			}
			close(fd);
		}
	}
	if (signal_box(lease->box_dir, cg, SIGTERM) > 0) {
		for (i = 0; i < 50 && signal_box(lease->box_dir, cg, 0) > 0; i++)
			usleep(20000);
		for (i = 0; i < 50 && signal_box(lease->box_dir, cg, SIGKILL) > 0; i++)
			usleep(20000);
	}
	if (signal_box(lease->box_dir, cg, 0) > 0)
		return tdxr_err_set(err, TDXR_EIO, "local: processes of box %s survive SIGKILL",
		                    lease->cloud_id);
	if (cg[0])
		rmdir(cg);
	if (rm_rf(lease->box_dir) != 0)
		return tdxr_err_set(err, TDXR_EIO, "local: cannot remove %s: %s", lease->box_dir,
		                    strerror(errno));
	return 0;
}

static int local_list_owned(void *vp, const char *owner_host, struct exec_lease **out, size_t *n,
                            struct tdxr_err *err)
{
	struct local_priv *p = vp;
	struct exec_lease *v = NULL;
	struct dirent *de;
	size_t cnt = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
	d = opendir(p->boxes);
	if (d == NULL)
		return errno == ENOENT ? 0 : tdxr_err_set(err, TDXR_EIO, "local: cannot read %s", p->boxes);
	while ((de = readdir(d)) != NULL) {
		char box[PATH_MAX], owner[256] = "";
		struct exec_lease *nv;

		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(v->cloud_id))
			continue;
		if ((size_t)snprintf(box, sizeof(box), "%s/%s", p->boxes, de->d_name) >= sizeof(v->box_dir))
			continue;
		read_text(box, "owner", owner, sizeof(owner));
		if (owner_host && strcmp(owner, owner_host) != 0)
			continue;
		nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (nv == NULL) {
			free(v);
			closedir(d);
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		}
		v = nv;
		memset(&v[cnt], 0, sizeof(v[cnt]));
		snprintf(v[cnt].executor, sizeof(v[cnt].executor), "local");
		if (cpy(v[cnt].cloud_id, sizeof(v[cnt].cloud_id), de->d_name) ||
		    cpy(v[cnt].name, sizeof(v[cnt].name), de->d_name) ||
		    cpy(v[cnt].box_dir, sizeof(v[cnt].box_dir), box))
			continue;
		cnt++;
	}
	closedir(d);
	*out = v;
	*n = cnt;
	return 0;
}

static int local_describe(void *vp, const struct exec_lease *lease, char **out, struct tdxr_err *err)
{
	char port[16] = "";
	json_t *o = json_object();

	read_text(lease->box_dir, "port", port, sizeof(port));
	json_object_set_new(o, "executor", json_string("local"));
	json_object_set_new(o, "box", json_string(lease->box_dir));
	json_object_set_new(o, "ssh_port", json_string(port));
	json_object_set_new(o, "simulated", json_true());
	*out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return *out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
}

const struct exec_ops exec_local = {
	.name = "local",
	.caps = EXEC_CAP_SIMULATED,
	.priv_size = sizeof(struct local_priv),
	.init = local_init,
	.dispose = local_dispose,
	.create = local_create,
	.wait_ready = local_wait_ready,
	.endpoint = local_endpoint,
	.destroy = local_destroy,
	.list_owned = local_list_owned,
	.describe = local_describe,
};
