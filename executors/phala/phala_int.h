/*
 * phala_int.h - the pure parts of the Phala Cloud executor (executors/phala/
 * phala.c), exposed for tests/unit/test_phala.c: request bodies, response and
 * error parsing, status mapping, retry/backoff decisions, CVM names. Nothing
 * here does I/O; the HTTP client and the exec_ops vtable live in phala.c.
 *
 * Trust boundary: every response body is untrusted (the API, or whatever sits
 * on the path); parsers check types and shapes and bound every copied string.
 */
#ifndef TDXR_EXECUTORS_PHALA_PHALA_INT_H
#define TDXR_EXECUTORS_PHALA_PHALA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "executors/executor.h"

extern const struct exec_ops exec_phala;

#define PHALA_API_VERSION "2026-01-21"
#define PHALA_DEFAULT_URL "https://cloud-api.phala.com/api/v1"
#define PHALA_ENV_KEY "DSTACK_AUTHORIZED_KEYS"
#define PHALA_NAME_MAX 63
#define PHALA_HOSTTAG_LEN 8

/* Status of a CVM as wait_ready sees it. */
enum phala_state { PHALA_ST_PENDING = 0, PHALA_ST_RUNNING, PHALA_ST_FAILED };

/* "running" -> RUNNING; non-empty boot_error, "error", "exited", "stopped" -> FAILED;
 * anything else (including unknown strings and NULL) -> PENDING. */
enum phala_state phala_state_map(const char *status, const char *boot_error);

/* The owner-host tag: the first 8 hex digits of SHA-256(owner_host). out: 9 bytes. */
void phala_hosttag(const char *owner_host, char out[PHALA_HOSTTAG_LEN + 1]);
/* The CVM name for a lease: "tdxr-<hosttag>-<lease id without 'l-', sanitised>",
 * at most 63 characters, letter first, [a-zA-Z0-9-]. */
int phala_name_build(const char *owner_host, const char *lease_id, char *out, size_t cap,
                     struct tdxr_err *err);
/* Whether a CVM name is one of this owner's ("tdxr-<hosttag>-..."). */
int phala_name_owned(const char *name, const char *owner_host);
/* Whether the cloud object's name matches the lease's recorded name: equal, or the
 * claim recorded the job's name "tdxr-X" and the cloud name is "tdxr-<tag>-X". */
int phala_name_matches(const char *cloud_name, const char *lease_name);

/* Syntax checks for values that end up in URLs and TLS names. */
int phala_app_id_ok(const char *s);   /* 40 lower-case hex digits */
int phala_domain_ok(const char *s);   /* [A-Za-z0-9.-], 1..200, no leading dot/dash */
int phala_cloud_id_ok(const char *s); /* 1..19 decimal digits */

/* The docker-compose text to deploy: from spec_compose (an app-compose JSON's
 * docker_compose_file, or raw YAML), else cfg_compose, else the built-in default. */
int phala_compose_pick(const char *spec_compose, const char *cfg_compose, char **out,
                       struct tdxr_err *err);

struct phala_provision_req {
	const char *name;
	const char *instance_type; /* NULL = "tdx.small" */
	const char *node_id;       /* NULL = API's choice; digits are sent as a JSON integer */
	const char *image;         /* NULL = API default */
	const char *docker_compose;
};
/* POST /cvms/provision body (malloc'd JSON text). */
int phala_provision_body(const struct phala_provision_req *r, char **out, struct tdxr_err *err);

struct phala_provision_resp {
	char app_id[41];
	char pubkey[65]; /* app_env_encrypt_pubkey, lower-case hex */
	char compose_hash[65];
};
int phala_provision_parse(const char *body, size_t len, struct phala_provision_resp *out,
                          struct tdxr_err *err);
/* POST /cvms body. */
int phala_create_body(const char *app_id, const char *compose_hash, const char *encrypted_env,
                      char **out, struct tdxr_err *err);

/* A CVM object (POST /cvms, GET /cvms/{id}, list items; snake_case or the CLI's camelCase). */
struct phala_cvm {
	char id[24];
	char name[64];
	char app_id[41];
	char status[32];
	char base_domain[201];
};
int phala_cvm_parse(const char *body, size_t len, struct phala_cvm *out, struct tdxr_err *err);
/* GET /cvms/{id}/state */
int phala_state_parse(const char *body, size_t len, char *status, size_t scap, char *boot_error,
                      size_t bcap, struct tdxr_err *err);

/* A message for an error response: "<what>: HTTP <code>: <detail>" with detail
 * taken from {detail: string | {error_code, message}} or a bounded, printable
 * excerpt of the body. Never longer than cap-1. */
void phala_error_format(const char *what, long http, const char *body, size_t len, char *out, size_t cap);
/* Whether a 404's body says the CVM does not exist (as opposed to a wrong URL). */
int phala_error_is_cvm_gone(long http, const char *body, size_t len);
/* Replaces every occurrence of secret in s (in place) with "***". */
void phala_redact(char *s, size_t cap, const char *secret);

/* Retry decision. http: status (0 = transport failure); transport_sent: the request
 * may have reached the server (a timeout rather than a refused connection);
 * idempotent: the call may be repeated safely. Returns 1 (retry after *delay_ms)
 * or 0. attempt counts from 0; rnd is a random 32-bit value for the jitter. */
struct phala_backoff {
	unsigned max_attempts; /* total tries, >= 1 */
	unsigned base_ms;
	unsigned cap_ms;
	unsigned retry_after_cap_ms; /* Retry-After above this is clamped */
};
int phala_retry_decide(const struct phala_backoff *b, unsigned attempt, long http, int transport_sent,
                       int idempotent, const char *retry_after, uint32_t rnd, unsigned *delay_ms);

#endif
