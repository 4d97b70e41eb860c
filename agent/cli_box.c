/*
 * cli_box.c - `tdx-runner warmup` and `tdx-runner stop LEASE`: keeping a box
 * between runs. warmup leases a box, runs the gate (a box that does not attest
 * is destroyed, never kept) and leaves it in state "kept" for `run --lease`;
 * stop releases a kept box. A kept box is re-attested by every run that uses
 * it, over a new connection with a new nonce.
 */
#include "agent/cli.h"

#include "agent/box.h"
#include "agent/config.h"
#include "agent/job.h"
#include "attest/attest.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static volatile sig_atomic_t g_cancel;

static void on_signal(int sig)
{
	(void)sig;
	g_cancel = 1;
}

void cli_warmup_help(void)
{
	printf("usage: tdx-runner warmup [--executor local|phala|dstack] [--ttl SECONDS] [--json]\n"
	       "                         [--bundle FILE] [--config FILE]\n"
	       "\n"
	       "Leases a box, verifies its attestation and keeps it for `tdx-runner run --lease LEASE`\n"
	       "(each run attests it again). Prints the lease id (with --json: {\"lease\", \"executor\",\n"
	       "\"keep_until\", \"verdict\"}). A box that does not attest is destroyed (exit %d).\n"
	       "`tdx-runner stop LEASE` releases it; `tdx-runner reap` does once the ttl is over\n"
	       "(default 3600 s; 0 = until stop).\n",
	       JOB_EXIT_ATTEST);
}

void cli_stop_help(void)
{
	printf("usage: tdx-runner stop LEASE... [--config FILE]\n"
	       "\n"
	       "Releases kept boxes (warmup, run --keep): destroys each box and removes its claim.\n"
	       "A lease a live process is using is refused. Exit 0 when every one was released.\n");
}

int cli_warmup(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "executor", required_argument, NULL, 'e' }, { "config", required_argument, NULL, 'c' },
		{ "ttl", required_argument, NULL, 't' },      { "json", no_argument, NULL, 'j' },
		{ "bundle", required_argument, NULL, 'b' },   { NULL, 0, NULL, 0 },
	};
	const char *executor = NULL, *config = NULL, *bundle = NULL;
	struct config *cfg = NULL;
	struct box_opts bo;
	struct box *b = NULL;
	struct tdxr_err e, rel;
	enum config_executor_kind kind;
	int64_t ttl = 3600, until;
	int c, rc, json = 0, code;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'e': executor = optarg; break;
		case 'c': config = optarg; break;
		case 'j': json = 1; break;
		case 'b': bundle = optarg; break;
		case 't':
			if (tdxr_parse_i64(optarg, 0, 30LL * 24 * 3600, &ttl, NULL) != 0) {
				fprintf(stderr, "tdx-runner warmup: --ttl: seconds between 0 and 2592000\n");
				return 2;
			}
			break;
		default:
			fprintf(stderr, "tdx-runner warmup: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tdx-runner warmup: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	tdxr_err_clear(&e);
	tdxr_err_clear(&rel);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner warmup: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	kind = cfg->executor.kind;
	if (executor &&
	    (config_executor_kind_parse(executor, &kind, &e) || config_check_executor(cfg, kind, &e))) {
		fprintf(stderr, "tdx-runner warmup: --executor: %s\n", e.msg);
		config_free(cfg);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	memset(&bo, 0, sizeof(bo));
	bo.cfg = cfg;
	bo.executor_kind = (int)kind;
	bo.progress = 1;
	bo.cancel = &g_cancel;
	rc = box_acquire(&bo, &b, &e);
	code = rc == 0 ? 0 : rc == TDXR_EATTEST ? JOB_EXIT_ATTEST : JOB_EXIT_INFRA;
	if (b && bundle && box_bundle(b)) {
		struct tdxr_err be;

		if (tdxr_file_write_atomic(bundle, box_bundle(b), strlen(box_bundle(b)), 0644, &be))
			fprintf(stderr, "tdx-runner warmup: cannot write %s: %s\n", bundle, be.msg);
	}
	if (rc)
		fprintf(stderr, "tdx-runner warmup: %s\n", e.msg);
	if (rc == 0 && !g_cancel) {
		until = ttl > 0 ? (int64_t)time(NULL) + ttl : 0;
		if (box_keep(b, until, &rel) == 0) {
			if (json) {
				json_t *o = json_pack(
				    "{s:s, s:s, s:I, s:s}", "lease", box_lease_id(b), "executor",
				    box_executor_name(b), "keep_until", (json_int_t)until, "verdict",
				    box_verdict(b) && box_verdict(b)->simulated ? "simulated" : "ok");
				char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;

				printf("%s\n", t ? t : "{}");
				free(t);
				json_decref(o);
			} else {
				printf("%s\n", box_lease_id(b));
			}
			box_free(b);
			config_free(cfg);
			return 0;
		}
		fprintf(stderr, "tdx-runner warmup: cannot keep the lease: %s\n", rel.msg);
		code = JOB_EXIT_INFRA;
	} else if (rc == 0) {
		fprintf(stderr, "tdx-runner warmup: canceled\n");
		code = JOB_EXIT_INFRA;
	}
	if (b && box_release(b, &rel) != 0)
		fprintf(stderr, "tdx-runner warmup: %s\n", rel.msg);
	box_free(b);
	config_free(cfg);
	return code;
}

int cli_stop(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	struct config *cfg = NULL;
	struct tdxr_err e;
	int c, i, failed = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'c') {
			config = optarg;
			continue;
		}
		fprintf(stderr, "tdx-runner stop: unknown or incomplete option '%s'\n", argv[optind - 1]);
		return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "tdx-runner stop: which lease? (usage: tdx-runner stop LEASE...)\n");
		return 2;
	}
	tdxr_err_clear(&e);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner stop: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	for (i = optind; i < argc; i++) {
		if (box_stop(cfg, argv[i], &e)) {
			fprintf(stderr, "tdx-runner stop: %s\n", e.msg);
			failed = 1;
		} else {
			printf("released %s\n", argv[i]);
		}
	}
	config_free(cfg);
	return failed;
}
