/*
 * bench_sync_push.c - times the real sync code (agent/remote/sync.c's
 * remote_sync_push on a libgit2 working-tree manifest) through a given remote
 * shell, with an optional snapshot file (incremental pushes). Prints one JSON
 * line: {"us": wall microseconds, "transferred": N, "deleted": N}. Used by
 * bench/bench_sync.sh; timings are never pass/fail.
 *
 *   bench_sync_push --rsh BIN --lease LEASE --host HOST --dest DIR [--state FILE] REPO
 */
#include "agent/remote/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	const char *rshbin = NULL, *lease = NULL, *host = "box", *dest = NULL, *state = NULL, *repo = NULL;
	struct remote_sync_manifest *m = NULL;
	struct remote_sync_opts o;
	struct remote_sync_result res;
	struct tdxr_err e;
	struct timespec t0, t1;
	const char *rsh[4];
	int i;

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
		else
			repo = argv[i];
	}
	if (!rshbin || !lease || !dest || !repo) {
		fprintf(stderr,
		        "usage: bench_sync_push --rsh BIN --lease LEASE --dest DIR [--state FILE] REPO\n");
		return 2;
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
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (remote_sync_manifest_worktree(repo, &m, &e) || remote_sync_push(repo, m, &o, &res, &e)) {
		fprintf(stderr, "bench_sync_push: %s\n", e.msg);
		remote_sync_manifest_free(m);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("{\"us\": %lld, \"transferred\": %zu, \"deleted\": %zu}\n",
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000,
	       res.transferred, res.deleted);
	remote_sync_manifest_free(m);
	return 0;
}
