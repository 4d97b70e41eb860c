/*
 * fuzz_evidence.c - libFuzzer target for attest_evidence_parse (attest/dstack.c):
 * guest-agent Info / GetQuote, tappd, Phala Cloud attestation JSON, and SCALE
 * VersionedAttestation (binary or hex), plus the RA-TLS certificate reader.
 *
 * Whatever parses is handed to the consumers a verifier would call (replay,
 * digest check, identity, REPORTDATA of the app certificate); the only allowed
 * outcomes are success or a clean error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_evidence *e = NULL;
	struct attest_dstack_identity id;
	uint8_t rtmr[4][48], rd[64];
	char h[65];

	if (attest_evidence_parse(data, size, &e, NULL) == 0) {
		if ((e->quote == NULL) != (e->quote_len == 0))
			abort();
		if (e->eventlog != NULL) {
			attest_eventlog_check_digests(e->eventlog, NULL);
			attest_eventlog_replay(e->eventlog, rtmr, NULL);
			attest_dstack_identity_get(e->eventlog, &id, NULL);
		}
		if (e->app_cert != NULL)
			attest_ratls_report_data(e->app_cert, strlen(e->app_cert), rd, NULL);
		if (e->app_compose != NULL)
			attest_compose_hash(e->app_compose, strlen(e->app_compose), h);
		attest_evidence_free(e);
	}
	attest_ratls_report_data((const char *)data, size, rd, NULL);
	return 0;
}
