/*
 * cli_gitlab_executor.c - `tdx-runner gitlab-executor [--config FILE] STAGE ...`,
 * the command gitlab-runner's custom executor calls (config_exec, prepare_exec,
 * run_exec SCRIPT STAGE, cleanup_exec). Exit codes follow the custom executor
 * contract: 0, $BUILD_FAILURE_EXIT_CODE when the job's script failed (its code
 * also goes to $BUILD_EXIT_CODE_FILE), $SYSTEM_FAILURE_EXIT_CODE for our own
 * failures (lease, gate, fetch, sync, transport, cancel), with the step on stderr.
 * SIGTERM (job cancel or timeout) stops the remote command and exits with the
 * system failure code. The work is in agent/ci/gitlab_executor.c.
 */
#include "agent/cli.h"

#include "agent/ci/gitlab_executor.h"
#include "agent/config.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GLX_CONFIG_ENV "TDX_RUNNER_CONFIG"

static volatile sig_atomic_t g_cancel;
static atomic_int g_exec_cancel;

static void on_signal(int sig)
{
	(void)sig;
	g_cancel = 1;
	atomic_store(&g_exec_cancel, 1);
}

void cli_gitlab_executor_help(void)
{
	printf("usage: tdx-runner gitlab-executor [--config FILE] config|prepare|cleanup\n"
	       "       tdx-runner gitlab-executor [--config FILE] run SCRIPT STAGE\n"
	       "\n"
	       "The driver for gitlab-runner's custom executor: every job runs in its own leased,\n"
	       "attested box. config prints the driver JSON; prepare leases a box, verifies its\n"
	       "attestation and keeps it for the job (idempotent: a retried prepare reuses it);\n"
	       "run re-attests the box and runs SCRIPT with bash in it (stage get_sources instead\n"
	       "fetches the commit on this host and syncs it, plus %s, into\n"
	       "CI_PROJECT_DIR); cleanup releases the box.\n"
	       "\n"
	       "  --config FILE   configuration file (default $%s, else the default path)\n"
	       "\n"
	       "Exit status: 0; $BUILD_FAILURE_EXIT_CODE when the job's script failed (its exit\n"
	       "code goes to $BUILD_EXIT_CODE_FILE); $SYSTEM_FAILURE_EXIT_CODE when leasing, the\n"
	       "attestation gate, fetching, syncing or the transport failed, or on SIGTERM.\n"
	       "See docs/gitlab-executor.md for the gitlab-runner config.toml snippet.\n",
	       CI_GLEXEC_BUNDLE_NAME, GLX_CONFIG_ENV);
}

static int env_code(const char *name, int dflt)
{
	const char *v = getenv(name);
	int64_t n;

	if (v == NULL || tdxr_parse_i64(v, 0, 255, &n, NULL) != 0)
		return dflt;
	return (int)n;
}

static void exit_code_file(int status)
{
	const char *p = getenv("BUILD_EXIT_CODE_FILE");
	FILE *f;

	if (p == NULL || p[0] == '\0')
		return;
	f = fopen(p, "we");
	if (f == NULL) {
		fprintf(stderr, "tdx-runner: cannot write BUILD_EXIT_CODE_FILE %s\n", p);
		return;
	}
	fprintf(f, "%d\n", status);
	if (fclose(f) != 0)
		fprintf(stderr, "tdx-runner: cannot write BUILD_EXIT_CODE_FILE %s\n", p);
}

int cli_gitlab_executor(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *stage;
	struct ci_glexec_job job;
	struct ci_glexec_opts o;
	struct config *cfg = NULL;
	struct tdxr_err e;
	int c, rc, code, build_fail = env_code("BUILD_FAILURE_EXIT_CODE", 1),
	                 sys_fail = env_code("SYSTEM_FAILURE_EXIT_CODE", 2);

	memset(&job, 0, sizeof(job));
	tdxr_err_clear(&e);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		default:
			fprintf(stderr, "tdx-runner gitlab-executor: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			return sys_fail;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "tdx-runner gitlab-executor: no stage (config, prepare, run, cleanup)\n");
		return sys_fail;
	}
	stage = argv[optind];
	if (strcmp(stage, "config") != 0 && strcmp(stage, "prepare") != 0 && strcmp(stage, "run") != 0 &&
	    strcmp(stage, "cleanup") != 0) {
		fprintf(stderr,
		        "tdx-runner gitlab-executor: unknown stage '%s' (config, prepare, run, cleanup)\n",
		        stage);
		return sys_fail;
	}
	/* gitlab-runner passes run_args first, then SCRIPT and STAGE: take the last two. */
	if (strcmp(stage, "run") == 0 && argc - optind < 3) {
		fprintf(stderr, "tdx-runner gitlab-executor: usage: run SCRIPT STAGE\n");
		return sys_fail;
	}
	/* First: take what we need out of CUSTOM_ENV_* and wipe the rest (the job's secrets). */
	if (ci_glexec_job_from_env(&job, &e)) {
		fprintf(stderr, "tdx-runner gitlab-executor %s: %s\n", stage, e.msg);
		return sys_fail;
	}
	if (config == NULL)
		config = getenv(GLX_CONFIG_ENV);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner gitlab-executor %s: %s\n", stage, e.msg);
		ci_glexec_job_dispose(&job);
		return sys_fail;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	memset(&o, 0, sizeof(o));
	o.cfg = cfg;
	o.job = &job;
	o.cancel = &g_cancel;
	o.exec_cancel = &g_exec_cancel;
	code = 0;
	if (strcmp(stage, "config") == 0) {
		char *out = NULL;

		if ((rc = ci_glexec_config(&o, &out, &e)) == 0)
			printf("%s\n", out);
		free(out);
		code = rc ? sys_fail : 0;
	} else if (strcmp(stage, "prepare") == 0) {
		rc = ci_glexec_prepare(&o, &e);
		code = rc ? sys_fail : 0;
	} else if (strcmp(stage, "run") == 0) {
		const char *script = argv[argc - 2], *st = argv[argc - 1];
		int status = 0;

		rc = ci_glexec_run(&o, script, st, &status, &e);
		if (rc)
			code = sys_fail;
		else if (status != 0) {
			exit_code_file(status);
			code = build_fail;
		}
	} else {
		int released = 0, left = 0;

		/* Its output is not in the job log: a failed release is in our log and the lease
		 * store (reap retries it); exit non-zero only when nothing could be done. */
		rc = ci_glexec_cleanup(&o, &released, &left, &e);
		code = rc ? sys_fail : 0;
		if (left)
			fprintf(
			    stderr,
			    "tdx-runner gitlab-executor: job %s: %d lease(s) left for `tdx-runner reap`\n",
			    job.job_id, left);
	}
	if (rc && e.msg[0])
		fprintf(stderr, "tdx-runner gitlab-executor: %s\n", e.msg);
	fflush(stdout);
	config_free(cfg);
	ci_glexec_job_dispose(&job);
	return code;
}
