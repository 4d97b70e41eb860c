/*
 * cli_leases.c - `tdx-runner leases [--json]` lists the lease claims this host
 * holds; `tdx-runner reap [--dry-run]` releases every lease no live process
 * owns (its owner crashed, was killed, or ran with --keep): it adopts the
 * claim (flock), destroys the box through its executor, removes the claim.
 */
#include "agent/cli.h"

#include "agent/box.h"

#include "agent/config.h"
#include "agent/executors.h"
#include "agent/lease.h"
#include "common/util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_leases_help(void)
{
	printf("usage: tdx-runner leases [--json] [--config FILE]\n\n"
	       "Lists the leased boxes recorded on this host (state_dir/leases), with their state and\n"
	       "whether a live tdx-runner process owns them.\n");
}

void cli_reap_help(void)
{
	printf("usage: tdx-runner reap [--dry-run] [--all] [--config FILE]\n\n"
	       "Releases every lease no live process owns: destroys its box through its executor and\n"
	       "removes the claim. Leases owned by running jobs are left alone, and so are kept ones\n"
	       "(`warmup`, `run --keep`) until their keep time is over, unless --all. Exit 0 when\n"
	       "nothing is left to reap, 1 when a box could not be destroyed (its claim stays).\n");
}

static int open_store(const char *config, struct config **cfg, struct lease_store **s)
{
	struct tdxr_err e;

	tdxr_err_clear(&e);
	if (config_load(config, cfg, &e) || lease_store_open((*cfg)->state_dir, s, &e)) {
		fprintf(stderr, "tdx-runner: %s\n", e.msg);
		return 2;
	}
	return 0;
}

static int parse(int argc, char **argv, const char *flag, int *set, const char **config)
{
	static struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'c') {
			*config = optarg;
		} else if ((c == 'j' && strcmp(flag, "json") == 0) ||
		           (c == 'n' && strcmp(flag, "dry-run") == 0)) {
			*set = 1;
		} else {
			fprintf(stderr, "tdx-runner: unknown or incomplete option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	return optind < argc ? 2 : 0;
}

int cli_leases(int argc, char **argv)
{
	const char *config = NULL;
	struct config *cfg = NULL;
	struct lease_store *s = NULL;
	struct lease_claim *v = NULL;
	struct tdxr_err e;
	int json = 0, *live = NULL, rc;
	size_t n = 0, i;

	if ((rc = parse(argc, argv, "json", &json, &config)) || (rc = open_store(config, &cfg, &s)))
		goto out;
	if (lease_store_list(s, &v, &live, &n, &e)) {
		fprintf(stderr, "tdx-runner leases: %s\n", e.msg);
		rc = 2;
		goto out;
	}
	if (json) {
		json_t *a = json_array();
		char *t;

		for (i = 0; i < n; i++) {
			char *cj = NULL;
			json_t *o;

			if (lease_claim_to_json(&v[i], &cj, &e) == 0 &&
			    (o = json_loads(cj, 0, NULL)) != NULL) {
				json_object_set_new(o, "live", json_boolean(live[i]));
				json_array_append_new(a, o);
			}
			free(cj);
		}
		t = json_dumps(a, JSON_INDENT(1));
		printf("%s\n", t ? t : "[]");
		free(t);
		json_decref(a);
	} else {
		printf("%-20s %-8s %-10s %-5s %-22s %s\n", "LEASE", "EXECUTOR", "STATE", "LIVE", "CREATED",
		       "BOX");
		for (i = 0; i < n; i++) {
			char ts[21];

			tdxr_time_format(v[i].created_at, ts);
			printf("%-20s %-8s %-10s %-5s %-22s %s\n", v[i].id, v[i].executor, v[i].state,
			       live[i] ? "yes" : "no", ts, v[i].cloud_id);
		}
	}
out:
	free(v);
	free(live);
	lease_store_free(s);
	config_free(cfg);
	return rc;
}

static void reap_line(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
}

int cli_reap(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "all", no_argument, NULL, 'a' },
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	struct config *cfg = NULL;
	struct box_reap_opts ro;
	struct box_reap_result res;
	struct tdxr_err e;
	int c, rc;

	memset(&ro, 0, sizeof(ro));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n': ro.dry_run = 1; break;
		case 'a': ro.all = 1; break;
		case 'c': config = optarg; break;
		default:
			fprintf(stderr, "tdx-runner reap: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tdx-runner reap: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	tdxr_err_clear(&e);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner reap: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	ro.report = reap_line;
	if (box_reap(cfg, &ro, &res, &e)) {
		fprintf(stderr, "tdx-runner reap: %s\n", e.msg);
		config_free(cfg);
		return 2;
	}
	if (!ro.dry_run)
		printf("%zu lease(s) reaped\n", res.reaped);
	if (res.kept)
		printf("%zu kept lease(s) left alone (tdx-runner stop LEASE, or reap --all)\n", res.kept);
	rc = res.failed ? 1 : 0;
	config_free(cfg);
	return rc;
}
