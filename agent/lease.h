/*
 * lease.h - the lease store: one JSON claim per leased box under the state
 * directory (<state_dir>/leases/<id>.json), so a box that was created is never
 * forgotten, whatever happens to the process that created it.
 *
 * Protocol (DESIGN.md §3.4, invariant 2):
 *   1. lease_claim_create writes the claim atomically (temp + fsync + rename +
 *      directory fsync) in state "creating" BEFORE the executor's create call,
 *      and returns it locked: the creating process holds an exclusive flock on
 *      <id>.lock for as long as it owns the lease.
 *   2. Every state change is written with lease_claim_update (atomic again).
 *   3. After the executor destroyed the box, lease_claim_remove deletes the
 *      claim and drops the lock.
 * The kernel drops a flock when its holder dies (even by SIGKILL), so "locked"
 * means "a live job owns it": the reaper (lease_claim_try_adopt) takes every
 * claim it can lock and destroys its box. Two processes never act on one
 * lease. Claims are read back strictly (bounded size, JSON, known fields);
 * a corrupt claim is reported, never silently dropped.
 */
#ifndef TDXR_AGENT_LEASE_H
#define TDXR_AGENT_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define LEASE_ID_MAX 64

struct lease_claim {
	char id[LEASE_ID_MAX];     /* [a-z0-9-], unique on this host */
	char executor[16];         /* "local", "phala", "dstack" */
	char state[16];            /* creating, ready, attested, synced, running, releasing */
	char name[64];             /* the name given to the cloud object */
	char cloud_id[128];        /* the executor's id for the box ("" until known) */
	char app_id[64];           /* dstack app id ("" until known) */
	char owner_host[128];      /* host id of the agent that created it */
	char job[128];             /* CI job it serves ("" for `run`) */
	char gateway[256];         /* gateway domain or host:port ("" until known) */
	char ssh_key_path[512];    /* per-lease private key file */
	char host_key_sha256[128]; /* pinned SSH host key ("" until first contact) */
	int64_t created_at;        /* UNIX seconds */
	int64_t updated_at;
	int pid; /* process that created it (informational; the lock decides) */
	/* Added later; optional in claims on disk (older claims lack them). */
	char compose_hash[65]; /* SHA-256 hex of the compose the back end deployed ("" = unknown) */
	int64_t keep_until;    /* state "kept": UNIX seconds it may be reaped after (0 = never) */
};

struct lease_store;
struct lease_handle; /* an open, exclusively locked claim */

/* Opens (creating 0700 directories) <state_dir>/leases. */
int lease_store_open(const char *state_dir, struct lease_store **out, struct tdxr_err *err);
void lease_store_free(struct lease_store *s);
const char *lease_store_dir(const struct lease_store *s); /* borrowed */

/* Fresh random lease id "l-<16 hex>". */
void lease_id_new(char out[LEASE_ID_MAX]);

/* Writes a new claim (c->id must be unused) and returns it locked. */
int lease_claim_create(struct lease_store *s, const struct lease_claim *c, struct lease_handle **out,
                       struct tdxr_err *err);
/* Rewrites the claim (same id) atomically; sets updated_at. */
int lease_claim_update(struct lease_handle *h, const struct lease_claim *c, struct tdxr_err *err);
/* The claim as last written (borrowed). */
const struct lease_claim *lease_handle_claim(const struct lease_handle *h);
/* Deletes the claim and its lock file, then closes the handle (also on error). */
int lease_claim_remove(struct lease_handle *h, struct tdxr_err *err);
/* Closes the handle and drops the lock, keeping the claim (e.g. `run --keep`). */
void lease_handle_close(struct lease_handle *h);

/* Every claim on disk (*out malloc'd array). live[i] = 1 when a process holds its lock. */
int lease_store_list(struct lease_store *s, struct lease_claim **out, int **live, size_t *n,
                     struct tdxr_err *err);
/* Takes over a claim nobody holds: TDXR_ENOTFOUND if it does not exist, TDXR_ETIMEOUT if a
 * live process holds it (not adopted). */
int lease_claim_try_adopt(struct lease_store *s, const char *id, struct lease_handle **out,
                          struct tdxr_err *err);
/* Reads one claim file strictly (exported for tests and `leases`). */
int lease_claim_parse(const uint8_t *json, size_t len, struct lease_claim *out, struct tdxr_err *err);
/* The claim as JSON text (malloc'd). */
int lease_claim_to_json(const struct lease_claim *c, char **out, struct tdxr_err *err);

#endif
