/*
 * cli_simulate.c - `tdx-runner simulate`: produce attestation evidence from
 * attest/sim (a simulator PKI, signed collateral, a TDX quote over chosen
 * REPORTDATA and a dstack event log), verify it, and write an attestation
 * bundle. The result is honest about what it is: its root of trust is the
 * simulator's, so the verdict says "simulated" and `tdx-runner verify` rejects
 * it unless told --allow-simulated. Used by the README's first run and tests.
 */
#include "agent/cli.h"

#include "attest/attest.h"
#include "attest/sim/sim.h"
#include "common/util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void cli_simulate_help(void)
{
	printf("usage: tdx-runner simulate --out BUNDLE.json [options]\n"
	       "\n"
	       "Creates simulated TDX attestation evidence (simulator root CA, PCK chain, signed\n"
	       "collateral, a TDX quote and a dstack event log that replays to its RTMRs),\n"
	       "verifies it with the simulated root allowed, and writes an attestation bundle.\n"
	       "Nothing here is evidence of a real TEE: the bundle and verdict say 'simulated'.\n"
	       "\n"
	       "  --out FILE            write the attestation bundle here (required)\n"
	       "  --dir DIR             also write quote.bin, collateral.json, event-log.json,\n"
	       "                        app-compose.json and root.der into DIR\n"
	       "  --report-data HEX     REPORTDATA of the quote (up to 64 bytes; default zeros)\n"
	       "  --now UNIX            time of the simulation (default: now)\n"
	       "  --json                print the verdict as JSON\n");
}

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	struct tdxr_err e;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
	    tdxr_file_write_atomic(path, p, n, 0644, &e)) {
		fprintf(stderr, "tdx-runner simulate: cannot write %s/%s\n", dir, name);
		return 2;
	}
	return 0;
}

int cli_simulate(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "dir", required_argument, NULL, 'd' },
		{ "report-data", required_argument, NULL, 'r' },
		{ "now", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL, *dir = NULL;
	uint8_t rd[64] = { 0 };
	int64_t now = (int64_t)time(NULL);
	int c, json = 0, rc = 2;
	struct sim_output *so = NULL;
	struct attest_collateral *coll = NULL;
	struct attest_eventlog *log = NULL;
	struct attest_verdict *v = NULL;
	struct attest_policy pol;
	struct attest_input in;
	struct attest_bundle_meta meta = { "simulate", NULL, NULL, NULL };
	struct tdxr_err e;
	char *bundle = NULL, *vj = NULL;
	size_t n;

	tdxr_err_clear(&e);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'd': dir = optarg; break;
		case 'j': json = 1; break;
		case 'r':
			n = strlen(optarg);
			if (n > 128 || n % 2 || tdxr_hex_decode(optarg, n, rd, sizeof(rd), NULL)) {
				fprintf(stderr,
				        "tdx-runner simulate: --report-data takes up to 128 hex digits\n");
				return 2;
			}
			break;
		case 'n':
			if (tdxr_parse_i64(optarg, 86400 * 365, INT64_MAX / 4, &now, &e)) {
				fprintf(stderr, "tdx-runner simulate: --now: %s\n", e.msg);
				return 2;
			}
			break;
		default:
			fprintf(stderr,
			        "tdx-runner simulate: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (out == NULL || optind < argc) {
		fprintf(stderr, "tdx-runner simulate: needs --out FILE (see --help)\n");
		return 2;
	}
	if (sim_generate_default(now, rd, &so, &e) ||
	    attest_collateral_parse((const uint8_t *)so->collateral_json, strlen(so->collateral_json), &coll,
	                            &e) ||
	    attest_eventlog_parse_json((const uint8_t *)so->eventlog_json, strlen(so->eventlog_json), &log,
	                               &e)) {
		fprintf(stderr, "tdx-runner simulate: %s\n", e.msg);
		goto out;
	}
	memset(&in, 0, sizeof(in));
	in.quote = so->quote;
	in.quote_len = so->quote_len;
	in.collateral = coll;
	in.eventlog = log;
	in.app_compose = so->app_compose;
	in.app_compose_len = strlen(so->app_compose);
	in.now = now;
	in.root_der = so->root_der;
	in.root_der_len = so->root_der_len;
	in.root_simulated = 1;
	attest_policy_init(&pol);
	pol.allow_simulated = 1;
	pol.expected_report_data = rd;
	if (attest_verify(&in, &pol, &v, &e) || attest_bundle_write(&in, &pol, v, &meta, &bundle, &e) ||
	    tdxr_file_write_atomic(out, bundle, strlen(bundle), 0644, &e)) {
		fprintf(stderr, "tdx-runner simulate: %s\n", e.msg);
		goto out;
	}
	if (dir) {
		mkdir(dir, 0755);
		if (write_file(dir, "quote.bin", so->quote, so->quote_len) ||
		    write_file(dir, "collateral.json", so->collateral_json, strlen(so->collateral_json)) ||
		    write_file(dir, "event-log.json", so->eventlog_json, strlen(so->eventlog_json)) ||
		    write_file(dir, "app-compose.json", so->app_compose, strlen(so->app_compose)) ||
		    write_file(dir, "root.der", so->root_der, so->root_der_len))
			goto out;
	}
	if (json) {
		if (attest_verdict_to_json(v, &vj, &e) == 0)
			printf("%s\n", vj);
	} else {
		printf("simulated evidence %s (SIMULATED root of trust, not Intel): %s\nbundle: %s\n",
		       v->ok ? "verifies" : "does NOT verify",
		       v->ok ? attest_tcb_status_name(v->status) : v->error, out);
	}
	rc = v->ok ? 0 : 1;
out:
	free(bundle);
	free(vj);
	attest_verdict_free(v);
	attest_eventlog_free(log);
	attest_collateral_free(coll);
	sim_output_free(so);
	return rc;
}
