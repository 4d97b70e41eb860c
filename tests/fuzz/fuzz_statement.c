/*
 * fuzz_statement.c - libFuzzer target for the job statement parser
 * (attest/statement.c): the statement inside a bundle's end part is untrusted.
 *
 * Invariant checked: whatever parses is canonical - building it again gives the
 * input byte for byte - and every subject it lists is found by
 * attest_statement_has_subject. Anything else than a clean error or that
 * round trip is a bug; the invariant aborts so the fuzzer reports it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_statement *s = NULL;
	uint8_t rd[64];
	char *again = NULL;
	size_t n = 0, i;

	attest_statement_report_data(data, size, rd);
	if (attest_statement_parse(data, size, &s, NULL) != 0)
		return 0;
	if (attest_statement_build(s, &again, &n, NULL) != 0 || n != size || memcmp(again, data, size) != 0)
		abort();
	for (i = 0; i < s->n_subjects; i++)
		if (!attest_statement_has_subject(s, s->subjects[i].sha256) ||
		    attest_subject_name_check(s->subjects[i].name, NULL) != 0)
			abort();
	free(again);
	attest_statement_free(s);
	return 0;
}
