/*
 * executor.h - one interface, several back ends (DESIGN.md §3.2, STYLE.md
 * "One interface, several back ends"): each back end exports one
 * `const struct exec_ops exec_<name>` and agent/ lists them in one static table.
 * Executors provide boxes; the workflow (claims, gate, sync, release) belongs to
 * agent/, never to an executor.
 *
 * Contract: create() returns as soon as the back end has accepted the request
 * and filled lease->cloud_id (the caller has already written the claim, and
 * records the id before anything else can fail); destroy() is idempotent and
 * works from the lease record alone (a new process, after a crash); every call
 * is bounded in time. Secrets (API keys) live in the back end's private state,
 * never in a lease record.
 */
#ifndef TDXR_EXECUTORS_EXECUTOR_H
#define TDXR_EXECUTORS_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* What the caller asks for. Strings are borrowed for the call. */
struct exec_lease_spec {
	const char *lease_id;      /* the claim's id; executors put it in the box name */
	const char *name;          /* box name (cloud object name) */
	const char *instance_type; /* NULL = the back end's default */
	const char *compose;       /* app-compose / docker-compose text; NULL = default */
	const char *ssh_pubkey;    /* OpenSSH public key line authorised in the box */
	const char *owner_host;    /* labels: agent host id ... */
	const char *job_id;        /* ... and CI job ("" for `run`) */
};

/* What a lease is: everything destroy() and endpoint() need, as recorded in the claim. */
struct exec_lease {
	char executor[16];
	char cloud_id[128]; /* back end's id of the box */
	char app_id[64];    /* dstack app id ("" until known) */
	char name[64];
	char gateway[256]; /* gateway domain, or "host:port" for direct boxes */
	char box_dir[512]; /* local executor: the box directory */
	char compose_hash[65]; /* SHA-256 hex of the app-compose the back end deployed ("" = unknown:
				 the gate then hashes the compose the box reports) */
};

/* Where to reach the box's sshd (see agent/remote/remote.h for the transport). */
struct exec_endpoint {
	int tls;               /* 0 = direct TCP, 1 = TLS gateway */
	char host[256];        /* direct: host; tls: "" */
	unsigned port;         /* direct: port; tls: gateway port (443) */
	char server_name[256]; /* tls: "<app_id>-22.<gateway domain>" */
	char user[64];         /* SSH login */
	char work_dir[512];    /* writable work root inside the box */
};

#define EXEC_CAP_SIMULATED (1u << 0) /* attestation comes from attest/sim */
#define EXEC_CAP_GATEWAY (1u << 1)   /* reached through the dstack TLS gateway */

struct exec_ops {
	const char *name;
	unsigned caps;
	size_t priv_size; /* the caller allocates priv_size zeroed bytes per instance */
	/* config_json: the executor's section of the config ({} = defaults); borrowed. */
	int (*init)(void *priv, const char *state_dir, const char *config_json, struct tdxr_err *err);
	void (*dispose)(void *priv);
	int (*create)(void *priv, const struct exec_lease_spec *spec, struct exec_lease *lease,
	              struct tdxr_err *err);
	/* Blocks until the box accepts SSH and its guest agent answers, or deadline_ms passes. */
	int (*wait_ready)(void *priv, struct exec_lease *lease, int deadline_ms, struct tdxr_err *err);
	int (*endpoint)(void *priv, const struct exec_lease *lease, struct exec_endpoint *ep,
	                struct tdxr_err *err);
	/* Idempotent: a box that is already gone is success only when the back end says so. */
	int (*destroy)(void *priv, const struct exec_lease *lease, struct tdxr_err *err);
	/* Boxes of this owner_host the back end knows (*out malloc'd). */
	int (*list_owned)(void *priv, const char *owner_host, struct exec_lease **out, size_t *n,
	                  struct tdxr_err *err);
	/* A JSON description for `tdx-runner leases --json` (*out malloc'd). */
	int (*describe)(void *priv, const struct exec_lease *lease, char **out, struct tdxr_err *err);
};

extern const struct exec_ops exec_local;
extern const struct exec_ops exec_phala;
extern const struct exec_ops exec_dstack;

#endif
