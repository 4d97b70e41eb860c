/*
 * fuzz_eventlog.c - libFuzzer target for the event-log parsers (attest/eventlog.c
 * and the identity reader in attest/dstack.c).
 *
 * Each input is fed to both the dstack JSON parser and the raw CCEL parser.
 * Whatever parses is pushed through every consumer (digest check, replay,
 * identity) and must survive a JSON round trip unchanged: to_json, parse_json,
 * to_json again gives the same text. Any other outcome than a clean error is a
 * bug; the round-trip invariant aborts so the fuzzer reports it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(struct attest_eventlog *log)
{
	struct attest_dstack_identity id;
	struct attest_eventlog *again = NULL;
	uint8_t rtmr[4][48];
	char *j1 = NULL, *j2 = NULL;

	attest_eventlog_check_digests(log, NULL);
	attest_eventlog_replay(log, rtmr, NULL);
	attest_dstack_identity_get(log, &id, NULL);
	if (attest_eventlog_to_json(log, &j1, NULL) != 0)
		return; /* only a CCEL name can fail here, and CCEL names are ours */
	if (attest_eventlog_parse_json((const uint8_t *)j1, strlen(j1), &again, NULL) != 0 ||
	    attest_eventlog_to_json(again, &j2, NULL) != 0 || strcmp(j1, j2) != 0 || again->n != log->n)
		abort();
	free(j1);
	free(j2);
	attest_eventlog_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_eventlog *log = NULL;

	if (attest_eventlog_parse_json(data, size, &log, NULL) == 0) {
		exercise(log);
		attest_eventlog_free(log);
		log = NULL;
	}
	if (attest_eventlog_parse_ccel(data, size, &log, NULL) == 0) {
		exercise(log);
		attest_eventlog_free(log);
	}
	return 0;
}
