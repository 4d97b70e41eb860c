/*
 * fuzz_bundle.c - libFuzzer target: attestation bundle re-verification (a
 * bundle is what strangers hand to `tdx-runner verify`).
 */
#include "attest/attest.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_verdict *v = NULL;

	if (attest_bundle_verify(data, size, NULL, 0, &v, NULL) == 0)
		attest_verdict_free(v);
	return 0;
}
