/*
 * cli_publish.c - `tdx-runner publish --github-release OWNER/REPO@TAG BUNDLE`: attach an
 * attestation bundle to a GitHub release by hand, as the agent does on release events
 * (agent/ci/github.c): the credentials of the github[] entry that serves the repository,
 * the uploads endpoint, and a half-uploaded asset from an earlier failure repaired. The
 * bundle is re-verified first under the default policy (plus --allow-simulated), as
 * `tdx-runner verify` would: a bundle that does not verify is not published.
 */
#include "agent/cli.h"

#include "agent/ci/github.h"
#include "agent/config.h"
#include "attest/attest.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_publish_help(void)
{
	printf(
	    "usage: tdx-runner publish --github-release OWNER/REPO@TAG [--name ASSET] [--allow-simulated]\n"
	    "                          [--config FILE] BUNDLE\n"
	    "\n"
	    "Attaches BUNDLE to the GitHub release tagged TAG as asset ASSET (default: the bundle's\n"
	    "file name), with the credentials of the configuration's github[] entry for the\n"
	    "repository (or its organisation). The bundle must verify first (exit 1 otherwise,\n"
	    "naming the step); --allow-simulated accepts a simulated root of trust.\n");
}

int cli_publish(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "github-release", required_argument, NULL, 'g' },
		{ "name", required_argument, NULL, 'n' },
		{ "config", required_argument, NULL, 'c' },
		{ "allow-simulated", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *target = NULL, *name = NULL, *config = NULL;
	char repo[256], tag[256], base[PATH_MAX];
	struct config *cfg = NULL;
	struct attest_verdict *v = NULL;
	struct attest_policy pol;
	struct tdxr_err e;
	uint8_t *json = NULL;
	size_t len = 0;
	const char *at;
	int c, sim = 0, rc = 2;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'g': target = optarg; break;
		case 'n': name = optarg; break;
		case 'c': config = optarg; break;
		case 's': sim = 1; break;
		default:
			fprintf(stderr, "tdx-runner publish: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (target == NULL || optind + 1 != argc) {
		fprintf(stderr,
		        "tdx-runner publish: usage: tdx-runner publish --github-release OWNER/REPO@TAG "
		        "BUNDLE\n");
		return 2;
	}
	at = strchr(target, '@');
	if (at == NULL || at == target || at[1] == '\0' || (size_t)(at - target) >= sizeof(repo) ||
	    strlen(at + 1) >= sizeof(tag) || strpbrk(at + 1, "/?#& ") != NULL) {
		fprintf(stderr, "tdx-runner publish: --github-release takes OWNER/REPO@TAG\n");
		return 2;
	}
	memcpy(repo, target, (size_t)(at - target));
	repo[at - target] = '\0';
	snprintf(tag, sizeof(tag), "%s", at + 1);
	snprintf(base, sizeof(base), "%s", argv[optind]);
	if (name == NULL)
		name = basename(base);
	if (strpbrk(name, "/?#& ") != NULL || name[0] == '\0') {
		fprintf(stderr, "tdx-runner publish: --name: a plain file name\n");
		return 2;
	}
	tdxr_err_clear(&e);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner publish: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	if (tdxr_file_read(argv[optind], TDXR_CAP_COLLATERAL, &json, &len, &e)) {
		fprintf(stderr, "tdx-runner publish: %s\n", e.msg);
		goto out;
	}
	/* The default policy (what `tdx-runner verify` applies): a bundle cannot relax it. */
	attest_policy_init(&pol);
	pol.allow_simulated = sim;
	if (attest_bundle_verify(json, len, &pol, 0, &v, &e) != 0 || !v->ok) {
		fprintf(stderr, "tdx-runner publish: the bundle does not verify (%s): not published\n",
		        v ? v->error : e.msg);
		rc = 1;
		goto out;
	}
	if (gh_publish_release(cfg, repo, tag, argv[optind], name, &e)) {
		fprintf(stderr, "tdx-runner publish: %s\n", e.msg);
		rc = 1;
		goto out;
	}
	printf("published %s as %s on %s@%s\n", argv[optind], name, repo, tag);
	rc = 0;
out:
	attest_verdict_free(v);
	free(json);
	config_free(cfg);
	return rc;
}
