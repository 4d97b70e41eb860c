/*
 * fuzz_collateral.c - libFuzzer target: collateral JSON, then the TCB Info and
 * QE Identity parsers on its signed texts, then (when ../shared/testdata is
 * present) the verifier with a real quote against the fuzzed collateral.
 */
#include "attest/attest.h"
#include "attest/attest_int.h"
#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint8_t *quote;
static size_t quote_len;

static void load_quote(void)
{
	static int done;
	const char *dir = getenv("TDXR_SHARED_TESTDATA");
	char p[4096];

	if (done)
		return;
	done = 1;
	if (dir == NULL)
		dir = "../shared/testdata";
	snprintf(p, sizeof(p), "%s/tdx/dcap-qvl/tdx_quote", dir);
	if (tdxr_file_read(p, 1u << 20, &quote, &quote_len, NULL) != 0)
		quote = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_collateral *c = NULL;
	struct attest_tcb_info *t = NULL;
	struct attest_qe_identity *q = NULL;
	char *back = NULL;

	load_quote();
	/* The signed texts themselves, as raw input. */
	if (attest__tcb_info_parse((const char *)data, size, &t, NULL) == 0)
		attest__tcb_info_free(t);
	if (attest__qe_identity_parse((const char *)data, size, &q, NULL) == 0)
		attest__qe_identity_free(q);
	if (attest_collateral_parse(data, size, &c, NULL) != 0)
		return 0;
	if (attest_collateral_to_json(c, &back, NULL) == 0)
		free(back);
	if (quote) {
		struct attest_input in = { 0 };
		struct attest_verdict *v = NULL;

		in.quote = quote;
		in.quote_len = quote_len;
		in.collateral = c;
		in.now = 1751623200;
		if (attest_verify(&in, NULL, &v, NULL) == 0)
			attest_verdict_free(v);
	}
	attest_collateral_free(c);
	return 0;
}
