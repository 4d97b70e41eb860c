/*
 * fuzz_guest_request.c - libFuzzer target for the local guest agent's HTTP
 * request parser (agent/guest_agent.c, guest_agent_request_parse): whole
 * inputs and every split point a slow client could produce.
 *
 * Invariants checked: the parser returns 0, EINVAL or ETOOBIG and nothing
 * else; a complete request never consumes more than it was given and its body
 * respects the cap; the verdict is monotonic in the bytes seen: a prefix
 * that is an error stays an error with more bytes, and a prefix shorter than
 * a complete request is "need more bytes".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guest_agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(const uint8_t *p, size_t n)
{
	struct guest_agent_request r;
	int rc = guest_agent_request_parse(p, n, &r, NULL);

	if (rc != 0 && rc != TDXR_EINVAL && rc != TDXR_ETOOBIG)
		abort();
	if (rc == 0 && r.complete) {
		if (r.consumed == 0 || r.consumed > n || r.body_len > GUEST_AGENT_MAX_BODY ||
		    (r.body_len > 0) != (r.body != NULL) || r.path[0] != '/' ||
		    memchr(r.path, '?', strlen(r.path)) != NULL)
			abort();
	}
	if (rc != 0 && (r.complete || r.body != NULL))
		abort();
	guest_agent_request_dispose(&r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_agent_request whole;
	size_t cut, consumed = 0;
	int rc, rcp;

	if (size > 2 * (GUEST_AGENT_MAX_HEAD + GUEST_AGENT_MAX_BODY))
		return 0;
	rc = check(data, size);
	if (rc == 0 && guest_agent_request_parse(data, size, &whole, NULL) == 0) {
		consumed = whole.complete ? whole.consumed : 0;
		guest_agent_request_dispose(&whole);
	}
	/* a few split points, as a client that writes in pieces would produce */
	for (cut = size / 3; cut < size; cut += size / 3 + 1) {
		rcp = check(data, cut);
		if (rcp != 0 && rc == 0)
			abort(); /* an error that more bytes would undo */
		if (consumed && cut < consumed && rcp != 0)
			abort();
	}
	return 0;
}
