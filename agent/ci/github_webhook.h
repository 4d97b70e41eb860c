/*
 * github_webhook.h - the GitHub webhook receiver: a route for agent/httpd.h
 * (POST /github/webhook by default) that takes `workflow_job` deliveries,
 * checks them, answers at once and hands each accepted event to a callback
 * (the caller's thread-safe queue push); the work happens elsewhere.
 *
 * Trust boundary: the request is untrusted until its `X-Hub-Signature-256`
 * ("sha256=" + hex HMAC-SHA256(secret, raw body)) verifies, compared in
 * constant time (CRYPTO_memcmp) before any JSON is parsed. The signature
 * covers only the body, so replays are refused by remembering both the
 * `X-GitHub-Delivery` id and the body's HMAC of every delivery seen in the
 * last GH_REPLAY_WINDOW_S_DEFAULT seconds, at most GH_REPLAY_MAX_DEFAULT of
 * them (oldest forgotten first): a replay with the same body under a new
 * delivery id is caught too. A replay answers 409. Even so, an event is a
 * hint: the consumer confirms a job's state with the REST API before it
 * leases anything. The payload is parsed with bounds (GH_* caps below), every
 * string kept is free of control characters, and the secret and the body
 * never reach a log line.
 *
 * Answers: 202 accepted (handed to the callback), 200 "pong" (ping), 204
 * (another event or action), 400 (headers or payload malformed), 401
 * (signature missing or wrong), 409 (replay), 413 (body over 25 MiB, from
 * httpd), 415 (not application/json), 503 (the callback refused: queue full).
 */
#ifndef TDXR_AGENT_CI_GITHUB_WEBHOOK_H
#define TDXR_AGENT_CI_GITHUB_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "agent/httpd.h"
#include "common/err.h"
#include "common/secret.h"

#define GH_WEBHOOK_PATH_DEFAULT "/github/webhook"
#define GH_WEBHOOK_BODY_MAX (25u * 1024u * 1024u) /* GitHub caps payloads at 25 MB */
#define GH_REPLAY_MAX_DEFAULT 16384u              /* deliveries remembered */
#define GH_REPLAY_WINDOW_S_DEFAULT (24u * 3600u)  /* for this long */
#define GH_DELIVERY_MAX 64u                       /* X-GitHub-Delivery: a GUID; [0-9A-Za-z-] */
#define GH_LABELS_MAX 64u
#define GH_LABEL_MAX 256u
#define GH_NAME_MAX 256u      /* runner_name, repository full_name */
#define GH_JOB_NAME_MAX 1024u /* workflow_job.name (display only) */
#define GH_WORD_MAX 32u       /* action, status, conclusion: [a-z_] */

enum gh_job_action {
	GH_JOB_OTHER = 0, /* an action this agent does not act on */
	GH_JOB_QUEUED,
	GH_JOB_WAITING,
	GH_JOB_IN_PROGRESS,
	GH_JOB_COMPLETED,
};

/* One workflow_job delivery; every string is owned by it (gh_job_event_free). */
struct gh_job_event {
	char delivery[GH_DELIVERY_MAX + 1]; /* X-GitHub-Delivery; "" when parsed alone */
	enum gh_job_action action;
	char action_name[GH_WORD_MAX + 1];
	uint64_t job_id;      /* workflow_job.id, > 0 */
	uint64_t run_id;      /* workflow_job.run_id, > 0 */
	uint64_t run_attempt; /* 1 when absent */
	uint64_t runner_id;   /* 0 when null */
	char **labels;        /* n_labels strings (NULL when 0) */
	size_t n_labels;
	char head_sha[65];                /* 40 (or 64) lower-case hex digits */
	char *runner_name;                /* NULL when null */
	char *name;                       /* workflow_job.name (display only); NULL when absent */
	char status[GH_WORD_MAX + 1];     /* "queued", "in_progress", "completed", "waiting", ... */
	char conclusion[GH_WORD_MAX + 1]; /* "" when null */
	char *repository;                 /* repository.full_name, "owner/name" */
};

/*
 * Parses a workflow_job payload (untrusted, at most GH_WEBHOOK_BODY_MAX bytes).
 * Unknown keys are ignored; the fields above are type- and range-checked.
 * *out is the caller's (gh_job_event_free); it stays NULL on failure. Errors:
 * EINVAL (malformed; the message names the field), ETOOBIG, ENOMEM.
 */
int gh_job_event_parse(const uint8_t *p, size_t len, struct gh_job_event **out, struct tdxr_err *err);
void gh_job_event_free(struct gh_job_event *ev);
const char *gh_job_action_name(enum gh_job_action a);

/*
 * Checks an X-Hub-Signature-256 value against HMAC-SHA256(secret, body) in
 * constant time. mac_out (32 bytes, may be NULL) receives the computed HMAC.
 * 0 when it matches; EAUTH otherwise (missing, malformed or wrong).
 */
int gh_webhook_signature_check(const void *secret, size_t secret_len, const uint8_t *body, size_t len,
                               const char *header, uint8_t *mac_out, struct tdxr_err *err);

/* Takes ownership of ev when it returns 0 (queued). Anything else: the receiver
 * frees ev, forgets the delivery (so GitHub's redelivery is accepted) and answers 503.
 * Runs on an HTTP server thread: be quick and thread-safe. */
typedef int (*gh_webhook_fn)(void *ctx, struct gh_job_event *ev);

struct gh_webhook_opts {
	const char *path;         /* NULL = GH_WEBHOOK_PATH_DEFAULT */
	size_t replay_max;        /* 0 = GH_REPLAY_MAX_DEFAULT */
	unsigned replay_window_s; /* 0 = GH_REPLAY_WINDOW_S_DEFAULT */
};

struct gh_webhook;

/* secret is copied (non-empty). *out is the caller's: gh_webhook_free, after httpd_stop. */
int gh_webhook_new(const struct tdxr_secret *secret, gh_webhook_fn fn, void *ctx,
                   const struct gh_webhook_opts *opts, struct gh_webhook **out, struct tdxr_err *err);
/* Fills *out with the receiver's route (POST path, body cap GH_WEBHOOK_BODY_MAX). */
void gh_webhook_route(struct gh_webhook *wh, struct httpd_route *out);
void gh_webhook_free(struct gh_webhook *wh);

/* ============================================== the replay set (exposed for tests) */

struct gh_replay;

int gh_replay_new(size_t max, unsigned window_s, struct gh_replay **out, struct tdxr_err *err);
/* 0 and remembers (delivery, mac) at now_s when neither was seen within the window;
 * 1 (a replay) otherwise. Thread-safe. */
int gh_replay_check_add(struct gh_replay *r, const char *delivery, const uint8_t mac[32], int64_t now_s);
/* Forgets an entry added by check_add (the callback refused it). */
void gh_replay_forget(struct gh_replay *r, const char *delivery, const uint8_t mac[32]);
void gh_replay_free(struct gh_replay *r);

#endif
