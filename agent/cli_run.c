/*
 * cli_run.c - `tdx-runner run [--executor E] [--keep] [--lease L] [--artifacts PATH]...
 * [--subject PATH]... -- CMD...`: from a git checkout, lease a box, refuse it unless it
 * attests, sync the working tree, run CMD with live output, with --subject bind the
 * outputs' digests into an end quote (agent/provenance.h), copy artifacts back, write
 * the attestation bundle, release. SIGINT/SIGTERM cancel and still release.
 */
#include "agent/cli.h"

#include "agent/config.h"
#include "agent/job.h"
#include "agent/provenance.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <git2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_cancel;
static atomic_int g_exec_cancel;

static void on_signal(int sig)
{
	(void)sig;
	g_cancel = 1;
	atomic_store(&g_exec_cancel, 1);
}

/* For the statement: HEAD's commit id and the origin remote's URL with any userinfo
 * (which may hold a token) cut out of it. Either stays empty when absent. */
static void repo_identity(git_repository *repo, char **url, char commit[GIT_OID_HEXSZ + 1])
{
	git_config *snap = NULL;
	git_oid oid;
	const char *u = NULL, *auth, *at, *slash;

	*url = NULL;
	if (git_reference_name_to_id(&oid, repo, "HEAD") == 0)
		git_oid_tostr(commit, GIT_OID_HEXSZ + 1, &oid);
	/* The config value, not git_remote_lookup (whose insteadOf matching leaks in libpcre2). */
	if (git_repository_config_snapshot(&snap, repo) != 0)
		return;
	if (git_config_get_string(&u, snap, "remote.origin.url") != 0)
		u = NULL;
	if (u && (auth = strstr(u, "://")) != NULL) {
		auth += 3;
		slash = strchr(auth, '/');
		at = NULL;
		for (const char *p = auth; *p && (slash == NULL || p < slash); p++)
			if (*p == '@')
				at = p;
		if (at) {
			size_t head = (size_t)(auth - u);

			*url = malloc(strlen(u) + 1);
			if (*url) {
				memcpy(*url, u, head);
				memcpy(*url + head, at + 1, strlen(at + 1) + 1);
			}
		} else {
			*url = strdup(u);
		}
	} else if (u) {
		*url = strdup(u); /* scp-like user@host:path: the user is not a secret */
	}
	git_config_free(snap);
}

void cli_run_help(void)
{
	printf("usage: tdx-runner run [options] -- CMD [ARGS...]\n"
	       "\n"
	       "From a git checkout: lease a box, verify its attestation (nothing is sent to a box\n"
	       "that does not attest), sync the working tree (tracked + untracked-not-ignored files),\n"
	       "run CMD in it with live output, copy artifacts back, write the attestation bundle,\n"
	       "and release the box - also on failure, Ctrl-C or SIGTERM.\n"
	       "\n"
	       "  --executor local|phala|dstack   back end (default: the config's executor.kind, local)\n"
	       "  --config FILE           configuration file (default %s)\n"
	       "  --artifacts PATH        copy PATH (relative to the work dir) back; repeatable\n"
	       "  --artifacts-dir DIR     where artifacts land (default .)\n"
	       "  --bundle FILE           attestation bundle (default tdx-attestation.json)\n"
	       "  --subject PATH          after CMD, hash PATH (relative to the work dir) in the box and\n"
	       "                          bind it into a second quote: `tdx-runner verify BUNDLE\n"
	       "                          --subject FILE` then checks a file against it; repeatable\n"
	       "  --keep                  keep the box after the run for `run --lease`; `tdx-runner stop\n"
	       "                          LEASE` releases it (and reap, once --keep-ttl is over)\n"
	       "  --keep-ttl SECONDS      how long a kept box may stay (default 3600; 0 = until stop)\n"
	       "  --lease LEASE           run in this kept box (`warmup`, `run --keep`) instead of a new\n"
	       "                          one; it is attested again first and kept afterwards\n"
	       "  -C DIR                  run as if started in DIR\n"
	       "\n"
	       "Exit status: CMD's own, 128+N when it was killed by signal N, %d when the box did not\n"
	       "attest (nothing was sent to it), %d when leasing, transport, sync or release failed,\n"
	       "2 on usage errors.\n",
	       "/etc/tdx-runner/config.json or ~/.config/tdx-runner/config.json", JOB_EXIT_ATTEST,
	       JOB_EXIT_INFRA);
}

int cli_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "executor", required_argument, NULL, 'e' },
		{ "config", required_argument, NULL, 'c' },
		{ "artifacts", required_argument, NULL, 'a' },
		{ "artifacts-dir", required_argument, NULL, 'd' },
		{ "bundle", required_argument, NULL, 'b' },
		{ "keep", no_argument, NULL, 'k' },
		{ "keep-ttl", required_argument, NULL, 't' },
		{ "lease", required_argument, NULL, 'l' },
		{ "subject", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *executor = NULL, *config = NULL, *artifacts[64], *chdir_to = NULL, *subjects[64];
	struct job_run_opts o;
	struct config *cfg = NULL;
	struct tdxr_err e;
	git_repository *repo = NULL;
	enum config_executor_kind kind;
	size_t n_art = 0, n_subj = 0;
	char *repo_dir = NULL, *repository = NULL, commit[GIT_OID_HEXSZ + 1] = "";
	int c, rc;
	int64_t ttl = 3600;

	memset(&o, 0, sizeof(o));
	o.keep_ttl_s = 3600;
	o.bundle_path = "tdx-attestation.json";
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+C:", lo, NULL)) != -1) {
		switch (c) {
		case 'e': executor = optarg; break;
		case 'c': config = optarg; break;
		case 'd': o.artifacts_dir = optarg; break;
		case 'b': o.bundle_path = optarg; break;
		case 'k': o.keep = 1; break;
		case 'l': o.lease_id = optarg; break;
		case 't':
			if (tdxr_parse_i64(optarg, 0, 30LL * 24 * 3600, &ttl, NULL) != 0) {
				fprintf(stderr,
				        "tdx-runner run: --keep-ttl: seconds between 0 and 2592000\n");
				return 2;
			}
			break;
		case 'C': chdir_to = optarg; break;
		case 'a':
			if (n_art >= sizeof(artifacts) / sizeof(artifacts[0])) {
				fprintf(stderr, "tdx-runner run: at most 64 --artifacts\n");
				return 2;
			}
			artifacts[n_art++] = optarg;
			break;
		case 's':
			if (n_subj >= sizeof(subjects) / sizeof(subjects[0])) {
				fprintf(stderr, "tdx-runner run: at most 64 --subject paths\n");
				return 2;
			}
			subjects[n_subj++] = optarg;
			break;
		default:
			fprintf(stderr, "tdx-runner run: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc) {
		fprintf(stderr,
		        "tdx-runner run: no command (usage: tdx-runner run [options] -- CMD [ARGS...])\n");
		return 2;
	}
	if (n_subj && prov_subjects_check(subjects, n_subj, &e)) {
		fprintf(stderr, "tdx-runner run: --subject: %s\n", e.msg);
		return 2;
	}
	if (chdir_to && chdir(chdir_to) != 0) {
		fprintf(stderr, "tdx-runner run: cannot change to %s\n", chdir_to);
		return 2;
	}
	tdxr_err_clear(&e);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner run: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	kind = cfg->executor.kind;
	if (executor &&
	    (config_executor_kind_parse(executor, &kind, &e) || config_check_executor(cfg, kind, &e))) {
		fprintf(stderr, "tdx-runner run: --executor: %s\n", e.msg);
		config_free(cfg);
		return 2;
	}
	git_libgit2_init();
	if (git_repository_open_ext(&repo, ".", 0, NULL) != 0 || git_repository_workdir(repo) == NULL) {
		fprintf(stderr,
		        "tdx-runner run: not inside a git working tree (tdx-runner run syncs a checkout)\n");
		git_repository_free(repo);
		git_libgit2_shutdown();
		config_free(cfg);
		return 2;
	}
	repo_dir = strdup(git_repository_workdir(repo));
	if (n_subj)
		repo_identity(repo, &repository, commit);
	git_repository_free(repo);
	if (repo_dir && strlen(repo_dir) > 1 && repo_dir[strlen(repo_dir) - 1] == '/')
		repo_dir[strlen(repo_dir) - 1] = '\0';
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	o.cfg = cfg;
	o.executor_kind = (int)kind;
	o.repo_dir = repo_dir;
	o.argv = (const char *const *)argv + optind;
	o.argc = (size_t)(argc - optind);
	o.artifacts = artifacts;
	o.n_artifacts = n_art;
	o.subjects = subjects;
	o.n_subjects = n_subj;
	o.repository = repository;
	o.commit = commit[0] ? commit : NULL;
	o.progress = 1;
	o.keep_ttl_s = (long)ttl;
	o.cancel = &g_cancel;
	o.exec_cancel = &g_exec_cancel;
	rc = job_run(&o, &e);
	if (rc == JOB_EXIT_ATTEST || rc == JOB_EXIT_INFRA || rc == JOB_EXIT_USAGE)
		if (e.msg[0])
			fprintf(stderr, "tdx-runner run: %s\n", e.msg);
	free(repo_dir);
	free(repository);
	config_free(cfg);
	git_libgit2_shutdown();
	return rc;
}
