/*
 * bench_sync_push.c - times the real sync code (agent/remote/sync.c's
 * remote_sync_push on a libgit2 working-tree manifest) through a given remote
 * shell, with an optional snapshot file (incremental pushes). Prints one JSON
 * line: {"us": manifest + push wall microseconds, "manifest_us" (-1 when not
 * separable), "connect_us", "first_us", "transferred": N, "deleted": N}. Used by
 * bench/bench_sync.sh; timings are never pass/fail.
 *
 * --mux does what the job pipeline does: the lease is connected and one command
 * run on the session first - the job's attestation gate fetches the quote over it
 * before any sync (a first channel on a fresh session costs sshd ~50 ms more than
 * later ones; the job has paid that by the time it syncs) - timed apart as
 * connect_us and first_us, not part of "us"; then remote_sync_push_worktree gets the session as
 * remote_sync_opts.ssh, so its rsync runs open channels on it through the
 * multiplexer (one pre-started while the manifest is computed) instead of
 * connecting.
 *
 *   bench_sync_push --rsh BIN --lease LEASE --host HOST --dest DIR [--state FILE] [--mux] REPO
 */
#include "agent/remote/remote.h"
#include "agent/remote/sync.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long us_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long long)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

int main(int argc, char **argv)
{
	const char *rshbin = NULL, *lease = NULL, *host = "box", *dest = NULL, *state = NULL, *repo = NULL;
	struct remote_sync_manifest *m = NULL;
	struct remote_lease *rl = NULL;
	struct remote_ssh *ssh = NULL;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	struct tdxr_err e;
	struct timespec t0;
	long long connect_us = 0, first_us = 0, manifest_us, us;
	const char *rsh[4];
	int i, mux = 0, code = 1;

	for (i = 1; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "--rsh") == 0)
			rshbin = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--lease") == 0)
			lease = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--host") == 0)
			host = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--dest") == 0)
			dest = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--state") == 0)
			state = argv[++i];
		else if (strcmp(argv[i], "--mux") == 0)
			mux = 1;
		else
			repo = argv[i];
	}
	if (!rshbin || !lease || !dest || !repo) {
		fprintf(stderr, "usage: bench_sync_push --rsh BIN --lease LEASE --dest DIR [--state FILE] [--mux] "
		                "REPO\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (mux) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		struct remote_exec_opts xo;
		struct remote_exec_result xr;

		memset(&xo, 0, sizeof(xo));
		xo.command = "true"; /* stands for the gate's quote fetch */
		xo.stdin_fd = -1;
		if (remote_lease_load(lease, &rl, &e) || remote_lease_connect(rl, 15000, &ssh, &e)) {
			fprintf(stderr, "bench_sync_push: %s\n", e.msg);
			goto out;
		}
		connect_us = us_since(&t0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (remote_exec_run(ssh, &xo, &xr, &e)) {
			fprintf(stderr, "bench_sync_push: %s\n", e.msg);
			goto out;
		}
		first_us = us_since(&t0);
	}
	rsh[0] = rshbin;
	rsh[1] = "rsh";
	rsh[2] = lease;
	rsh[3] = NULL;
	memset(&o, 0, sizeof(o));
	o.rsh = rsh;
	o.host = host;
	o.dest = dest;
	o.state_file = state;
	o.force = true;
	o.ssh = ssh;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (mux) {
		/* As the job does it: one call, the multiplexer's pre-started channel
		 * getting ready in the box while the manifest is computed here. */
		if (remote_sync_push_worktree(repo, &o, &res, NULL, &e)) {
			fprintf(stderr, "bench_sync_push: %s\n", e.msg);
			goto out;
		}
		us = us_since(&t0);
		manifest_us = -1;
	} else {
		if (remote_sync_manifest_worktree(repo, &m, &e)) {
			fprintf(stderr, "bench_sync_push: %s\n", e.msg);
			goto out;
		}
		manifest_us = us_since(&t0);
		if (remote_sync_push(repo, m, &o, &res, &e)) {
			fprintf(stderr, "bench_sync_push: %s\n", e.msg);
			goto out;
		}
		us = us_since(&t0);
	}
	printf("{\"us\": %lld, \"manifest_us\": %lld, \"connect_us\": %lld, \"first_us\": %lld, \"transferred\": %zu, "
	       "\"deleted\": %zu}\n",
	       us, manifest_us, connect_us, first_us, res.transferred, res.deleted);
	code = 0;
out:
	remote_sync_manifest_free(m);
	remote_ssh_free(ssh);
	remote_lease_free(rl);
	return code;
}
