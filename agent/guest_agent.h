/*
 * guest_agent.h - the local executor's guest agent: a dstack guest-agent API
 * server on a unix socket (HTTP/1.1, one request per connection) that answers
 * /Info and /GetQuote (and the legacy /prpc/Tappd.Info, /prpc/Tappd.TdxQuote)
 * with evidence from attest/sim: one simulator PKI and collateral per box, a
 * fresh quote per GetQuote over exactly the requested REPORTDATA, and a dstack
 * event log carrying this box's app id, compose hash and instance id.
 *
 * Persistence: the box identity (app id, instance id, app-compose text) lives
 * in BOX_DIR/guest-agent.json and survives restarts. The simulator keys live in
 * process memory only (this server is the only signer); each start makes a new
 * PKI (or re-derives the shared one from a seed) and rewrites BOX_DIR/root.der
 * and BOX_DIR/collateral.json (mode 0644) before the socket exists, so a
 * verifier reads them after the socket appears.
 *
 * Trust boundary: request bytes from the socket are untrusted and parsed with
 * hard caps (GUEST_AGENT_MAX_*). Nothing this server signs is evidence of a
 * real TEE: its root is the simulator's and verifiers must say so.
 * Ownership: **out results are the caller's (free() for text, _free for
 * objects; every _free accepts NULL).
 */
#ifndef TDXR_AGENT_GUEST_AGENT_H
#define TDXR_AGENT_GUEST_AGENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GUEST_AGENT_MAX_HEAD 8192u     /* request line + headers */
#define GUEST_AGENT_MAX_BODY 65536u    /* request body (after de-chunking) */
#define GUEST_AGENT_MAX_HEADERS 64u    /* header lines */
#define GUEST_AGENT_MAX_READS 1024u    /* recv() calls per request */
#define GUEST_AGENT_IO_TIMEOUT_MS 5000 /* per connection: reading the request; again for the answer */

/* ============================================================ request parser */

struct guest_agent_request {
	int complete;   /* 1 when a whole request was parsed; 0 = need more bytes */
	char method[8]; /* "GET", "POST", ... */
	char path[256]; /* without the query string */
	uint8_t *body;  /* owned, NUL-terminated; NULL when empty */
	size_t body_len;
	size_t consumed; /* bytes of the input the request used */
};

/*
 * Parses one HTTP/1.1 request from p[len] (everything read so far). Returns 0
 * with req->complete = 1 for a whole request, 0 with req->complete = 0 when more
 * bytes are needed, TDXR_EINVAL for a malformed request (HTTP 400) and
 * TDXR_ETOOBIG when a cap is exceeded (HTTP 413 / 431). req is cleared on entry.
 */
int guest_agent_request_parse(const uint8_t *p, size_t len, struct guest_agent_request *req,
                              struct tdxr_err *err);
/* Frees the body and clears req (safe on a cleared request). */
void guest_agent_request_dispose(struct guest_agent_request *req);

/* ==================================================================== agent */

/*
 * Test-only misbehaviour (tests/integration/cvm_e2e.sh: the gate must refuse it);
 * `tdx-runner guest-agent` accepts them only with TDXR_TEST_FAULTS=1 in its environment.
 *  TAMPER_EVENTLOG: serve an event log whose replay is not the quoted RTMR3 (its
 *                   instance-id event rewritten, digests recomputed);
 *  REPLAY_QUOTE:    answer every GetQuote with one quote made at start over other
 *                   REPORTDATA (a replay).
 */
#define GUEST_AGENT_FAULT_TAMPER_EVENTLOG (1u << 0)
#define GUEST_AGENT_FAULT_REPLAY_QUOTE (1u << 1)

struct guest_agent_config {
	const char *box_dir;     /* required; created (0750) when absent */
	const char *app_compose; /* app-compose text; NULL = the stored one, else the simulator's default */
	size_t app_compose_len;
	const char *app_id_hex;      /* 40 hex digits; NULL = stored, else random */
	const char *instance_id_hex; /* 40 hex digits; NULL = stored, else random */
	int64_t now;                 /* validity reference for the PKI and collateral; 0 = now */
	/* Shared simulator PKI: keys and serials derive from sim_seed (attest/sim deterministic
	 * mode), so agents started with the same seed and the same `now` have byte-identical
	 * certificates and one collateral serves them all (a PCCS stand-in for test servers
	 * that back many boxes). 0 = fresh random keys (the local executor). */
	int sim_deterministic;
	uint64_t sim_seed;
	unsigned test_faults; /* GUEST_AGENT_FAULT_* mask; 0 in production */
};

struct guest_agent;

/* Loads or creates the box identity, makes the PKI, collateral and event log,
 * writes root.der and collateral.json. A flag that contradicts the stored
 * identity is an error (a box never changes identity). */
int guest_agent_new(const struct guest_agent_config *c, struct guest_agent **out, struct tdxr_err *err);
void guest_agent_free(struct guest_agent *a);

/* Borrowed hex identity of the box and the SHA-256 of its app-compose. */
const char *guest_agent_app_id(const struct guest_agent *a);
const char *guest_agent_instance_id(const struct guest_agent *a);
const char *guest_agent_compose_hash(const struct guest_agent *a);

/*
 * Answers one request: *status is the HTTP status, *body a malloc'd JSON text
 * (an {"error": ...} object for 4xx). Returns a negative code only when no
 * answer could be produced (ENOMEM, signing failure), then the caller sends 500.
 */
int guest_agent_handle(struct guest_agent *a, const struct guest_agent_request *req, int *status, char **body,
                       struct tdxr_err *err);

/* Checks that a guest agent could listen at path: absent, or a stale socket
 * nobody answers on. EINVAL for a live socket or another kind of file. Call it
 * before guest_agent_new so a refused start leaves the box's files alone. */
int guest_agent_socket_check(const char *path, struct tdxr_err *err);

/*
 * Serves on a unix socket at path (mode 0660; a stale socket there is replaced,
 * any other file is an error) until *stop becomes non-zero (set it from a
 * SIGTERM / SIGINT handler; those signals must be blocked by the caller and are
 * unblocked only while waiting). Connections are handled one at a time; reading
 * a request and writing its answer are each bounded by GUEST_AGENT_IO_TIMEOUT_MS.
 * Removes the socket on return.
 */
int guest_agent_serve(struct guest_agent *a, const char *path, volatile sig_atomic_t *stop,
                      struct tdxr_err *err);

#endif
