/*
 * fuzz_quote.c - libFuzzer target: the quote parser, and the whole verifier on
 * the parsed quote against real collateral when ../shared/testdata is present
 * (so the PEM/X.509/extension paths behind the parser are fuzzed too).
 */
#include "attest/attest.h"
#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct attest_collateral *coll;

static void load_collateral(void)
{
	static int done;
	const char *dir = getenv("TDXR_SHARED_TESTDATA");
	char p[4096];
	uint8_t *d = NULL;
	size_t n = 0;

	if (done)
		return;
	done = 1;
	if (dir == NULL)
		dir = "../shared/testdata";
	snprintf(p, sizeof(p), "%s/tdx/dcap-qvl/tdx_quote_collateral.json", dir);
	if (tdxr_file_read(p, 1u << 22, &d, &n, NULL) == 0) {
		attest_collateral_parse(d, n, &coll, NULL);
		free(d);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_quote *q = NULL;
	uint8_t *bin = NULL;
	size_t bl = 0;

	load_collateral();
	if (attest_quote_parse(data, size, &q, NULL) == 0) {
		if (coll) {
			struct attest_input in = { 0 };
			struct attest_verdict *v = NULL;
			char *json = NULL;

			in.quote = data;
			in.quote_len = size;
			in.collateral = coll;
			in.now = 1751623200;
			if (attest_verify(&in, NULL, &v, NULL) == 0) {
				attest_verdict_to_json(v, &json, NULL);
				free(json);
			}
			attest_verdict_free(v);
		}
		attest_quote_free(q);
	}
	if (attest_quote_load(data, size, &bin, &bl, NULL) == 0)
		free(bin);
	return 0;
}
