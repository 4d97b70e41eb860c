/*
 * cli_leases.c - `tdx-runner leases [--json]` lists the lease claims this host
 * holds; `tdx-runner reap [--dry-run]` releases every lease no live process
 * owns (its owner crashed, was killed, or ran with --keep): it adopts the
 * claim (flock), destroys the box through its executor, removes the claim.
 */
#include "agent/cli.h"

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
	printf("usage: tdx-runner reap [--dry-run] [--config FILE]\n\n"
	       "Releases every lease no live process owns: destroys its box through its executor and\n"
	       "removes the claim. Leases owned by running jobs are left alone. Exit 0 when nothing is\n"
	       "left to reap, 1 when a box could not be destroyed (its claim stays).\n");
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

int cli_reap(int argc, char **argv)
{
	const char *config = NULL;
	struct config *cfg = NULL;
	struct lease_store *s = NULL;
	struct lease_claim *v = NULL;
	struct tdxr_err e;
	int dry = 0, *live = NULL, rc, failed = 0;
	size_t n = 0, i, reaped = 0;

	if ((rc = parse(argc, argv, "dry-run", &dry, &config)) || (rc = open_store(config, &cfg, &s)))
		goto out;
	if (lease_store_list(s, &v, &live, &n, &e)) {
		fprintf(stderr, "tdx-runner reap: %s\n", e.msg);
		rc = 2;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct exec_ops *ops = job_executor_by_name(v[i].executor);
		struct lease_handle *h = NULL;
		struct exec_lease l;
		void *priv;

		if (live[i])
			continue;
		if (dry) {
			printf("would reap %s (%s, state %s)\n", v[i].id, v[i].executor, v[i].state);
			continue;
		}
		if (ops == NULL) {
			fprintf(stderr, "tdx-runner reap: %s: no %s executor in this build\n", v[i].id,
			        v[i].executor);
			failed = 1;
			continue;
		}
		if (lease_claim_try_adopt(s, v[i].id, &h, &e))
			continue; /* taken or released meanwhile */
		priv = calloc(1, ops->priv_size ? ops->priv_size : 1);
		memset(&l, 0, sizeof(l));
		snprintf(l.executor, sizeof(l.executor), "%s", v[i].executor);
		snprintf(l.cloud_id, sizeof(l.cloud_id), "%s", v[i].cloud_id[0] ? v[i].cloud_id : v[i].id);
		snprintf(l.app_id, sizeof(l.app_id), "%s", v[i].app_id);
		snprintf(l.name, sizeof(l.name), "%s", v[i].name);
		snprintf(l.gateway, sizeof(l.gateway), "%s", v[i].gateway);
		if (priv == NULL || job_executor_init(ops, priv, cfg, &e) ||
		    (strcmp(ops->name, "local") == 0 &&
		     (size_t)snprintf(l.box_dir, sizeof(l.box_dir), "%s/boxes/%s", cfg->state_dir,
		                      l.cloud_id) >= sizeof(l.box_dir)) ||
		    ops->destroy(priv, &l, &e)) {
			fprintf(stderr, "tdx-runner reap: %s: %s (claim kept)\n", v[i].id, e.msg);
			lease_handle_close(h);
			failed = 1;
		} else {
			lease_claim_remove(h, NULL);
			printf("reaped %s (%s)\n", v[i].id, v[i].executor);
			reaped++;
		}
		if (priv) {
			ops->dispose(priv);
			free(priv);
		}
	}
	if (!dry)
		printf("%zu lease(s) reaped\n", reaped);
	rc = failed ? 1 : 0;
out:
	free(v);
	free(live);
	lease_store_free(s);
	config_free(cfg);
	return rc;
}
