/*
 * cli_collateral.c - `tdx-runner collateral`: fetch quote collateral from
 * Intel PCS or a PCCS (attest/fetch.c), through an on-disk cache keyed by
 * FMSPC, and print it in the layout `tdx-runner verify --collateral` reads.
 * The optional PCS API key comes from a 0600 file, never from argv.
 */
#include "agent/cli.h"

#include "attest/attest.h"
#include "attest/fetch.h"
#include "common/buf.h"
#include "common/secret.h"
#include "common/util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cli_collateral_help(void)
{
	printf("usage: tdx-runner collateral (--quote FILE | --fmspc HEX --ca platform|processor [--sgx]) "
	       "[options]\n"
	       "\n"
	       "Fetches the collateral a quote needs (TCB info, QE identity, PCK CRL, root CA CRL and\n"
	       "their issuer chains) from Intel PCS or a PCCS and prints it as JSON (dcap-qvl layout),\n"
	       "ready for `tdx-runner verify --collateral`. Nothing is verified here; verify does that.\n"
	       "\n"
	       "  --quote FILE          take FMSPC, PCK CA and TEE type from this quote\n"
	       "  --fmspc HEX           FMSPC (12 hex digits)\n"
	       "  --ca platform|processor  the PCK CA that issued the PCK certificate\n"
	       "  --sgx                 SGX collateral (default: TDX)\n"
	       "  --pccs-url URL        PCS/PCCS base URL (default %s)\n"
	       "  --cache-dir DIR       reuse collateral cached here until its nextUpdate\n"
	       "  --now UNIX            time for cache expiry (default: now)\n"
	       "  --timeout-ms N        per-request timeout (default 30000)\n"
	       "  --api-key-file FILE   Intel PCS subscription key (file mode 0600)\n"
	       "  --ca-file FILE        CA bundle for the PCCS's TLS certificate\n"
	       "  --out FILE            write the JSON here instead of stdout\n",
	       ATTEST_PCS_URL_INTEL);
}

int cli_collateral(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quote", required_argument, NULL, 'q' },
		{ "fmspc", required_argument, NULL, 'f' },
		{ "ca", required_argument, NULL, 'c' },
		{ "sgx", no_argument, NULL, 's' },
		{ "pccs-url", required_argument, NULL, 'u' },
		{ "cache-dir", required_argument, NULL, 'd' },
		{ "now", required_argument, NULL, 'n' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "api-key-file", required_argument, NULL, 'k' },
		{ "ca-file", required_argument, NULL, 'a' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	struct attest_fetch_opts fo;
	struct tdxr_secret *key = NULL;
	struct attest_quote *q = NULL;
	struct tdxr_err e;
	const char *quote = NULL, *fmspc = NULL, *ca = NULL, *out = NULL, *keyfile = NULL;
	char fmspc_buf[13], *json = NULL;
	uint8_t *raw = NULL, *bin = NULL;
	size_t n = 0, bl = 0;
	int c, sgx = 0, rc = 2;
	int64_t v;

	tdxr_err_clear(&e);
	attest_fetch_opts_init(&fo);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'q': quote = optarg; break;
		case 'f': fmspc = optarg; break;
		case 'c': ca = optarg; break;
		case 's': sgx = 1; break;
		case 'u': fo.base_url = optarg; break;
		case 'd': fo.cache_dir = optarg; break;
		case 'a': fo.ca_file = optarg; break;
		case 'o': out = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'n':
			if (tdxr_parse_i64(optarg, 1, INT64_MAX / 2, &v, &e))
				goto usage;
			fo.now = v;
			break;
		case 't':
			if (tdxr_parse_i64(optarg, 1, 3600000, &v, &e))
				goto usage;
			fo.timeout_ms = (long)v;
			break;
		default:
			fprintf(stderr,
			        "tdx-runner collateral: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc || (quote == NULL && (fmspc == NULL || ca == NULL)) || (quote && (fmspc || ca))) {
		fprintf(stderr, "tdx-runner collateral: needs --quote FILE, or --fmspc HEX and --ca "
		                "platform|processor\n");
		return 2;
	}
	if (ca && strcmp(ca, "platform") != 0 && strcmp(ca, "processor") != 0)
		goto usage;
	if (quote) {
		if (tdxr_file_read(quote, 2 * (size_t)TDXR_CAP_QUOTE + 64, &raw, &n, &e) ||
		    attest_quote_load(raw, n, &bin, &bl, &e) || attest_quote_parse(bin, bl, &q, &e) ||
		    attest_quote_pck_info(q, fmspc_buf, &ca, &e)) {
			fprintf(stderr, "tdx-runner collateral: %s: %s\n", quote, e.msg);
			goto out;
		}
		fmspc = fmspc_buf;
		sgx = q->tee_type == ATTEST_TEE_SGX;
	}
	if (keyfile) {
		if (tdxr_secret_from_file(keyfile, &key, &e)) {
			fprintf(stderr, "tdx-runner collateral: %s\n", e.msg);
			goto out;
		}
		fo.api_key = key;
	}
	if (attest_fetch_collateral(&fo, fmspc, !sgx, ca, &json, NULL, &e)) {
		fprintf(stderr, "tdx-runner collateral: %s\n", e.msg);
		rc = e.code == TDXR_ENOTFOUND ? 1 : 2;
		goto out;
	}
	if (out) {
		if (tdxr_file_write_atomic(out, json, strlen(json), 0644, &e)) {
			fprintf(stderr, "tdx-runner collateral: %s\n", e.msg);
			goto out;
		}
	} else {
		printf("%s\n", json);
	}
	rc = 0;
	goto out;
usage:
	fprintf(stderr, "tdx-runner collateral: bad value for an option (see --help)\n");
out:
	free(json);
	free(raw);
	free(bin);
	attest_quote_free(q);
	tdxr_secret_free(key);
	return rc;
}
