/*
 * attest.h - libattest, the public interface: Intel TDX (and SGX) DCAP quote
 * parsing and verification, collateral, TCB status, dstack event logs and
 * identity, the verdict and the attestation bundle.
 *
 * Trust boundary: every byte handed to this library (quote, collateral, event
 * log, guest-agent response, bundle) is untrusted. Parsers are bounded by the
 * TDXR_CAP_* limits and by every length field checked against what remains.
 * The verifier is pure: no network, no clock ("now" is a parameter); the
 * collateral fetcher (attest_fetch_*) is the only code here that does I/O.
 *
 * Ownership: whatever comes back through **out is the caller's and is freed
 * with the matching _free (all accept NULL). Pointers returned directly are
 * borrowed from their parent object.
 */
#ifndef TDXR_ATTEST_ATTEST_H
#define TDXR_ATTEST_ATTEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ===================================================================== quote */

#define ATTEST_TEE_SGX 0x00000000u
#define ATTEST_TEE_TDX 0x00000081u
#define ATTEST_ATT_KEY_ECDSA_P256 2
#define ATTEST_CERT_PCK_CHAIN 5 /* concatenated PCK cert chain, PEM */
#define ATTEST_CERT_QE_REPORT 6 /* QE report certification data */

enum attest_body_type {
	ATTEST_BODY_SGX = 1,  /* SGX enclave report (v3 quotes) */
	ATTEST_BODY_TD10 = 2, /* TDX 1.0 TD report, 584 bytes */
	ATTEST_BODY_TD15 = 3, /* TDX 1.5 TD report, 648 bytes */
};

/* SGX enclave report body (384 bytes), also the QE report. */
struct attest_sgx_report {
	uint8_t cpu_svn[16];
	uint32_t misc_select;
	uint8_t reserved1[28];
	uint8_t attributes[16];
	uint8_t mr_enclave[32];
	uint8_t reserved2[32];
	uint8_t mr_signer[32];
	uint8_t reserved3[96];
	uint16_t isv_prod_id;
	uint16_t isv_svn;
	uint8_t reserved4[60];
	uint8_t report_data[64];
};

/* TD report body; the last two fields exist only in TD 1.5 bodies (else zero). */
struct attest_td_report {
	uint8_t tee_tcb_svn[16];
	uint8_t mrseam[48];
	uint8_t mrsignerseam[48];
	uint8_t seam_attributes[8];
	uint8_t td_attributes[8];
	uint8_t xfam[8];
	uint8_t mrtd[48];
	uint8_t mrconfigid[48];
	uint8_t mrowner[48];
	uint8_t mrownerconfig[48];
	uint8_t rtmr[4][48];
	uint8_t report_data[64];
	uint8_t tee_tcb_svn2[16]; /* TD 1.5 */
	uint8_t mrservicetd[48];  /* TD 1.5 */
};

struct attest_quote {
	/* header (48 bytes) */
	uint16_t version;      /* 3 (SGX), 4 or 5 (TDX) */
	uint16_t att_key_type; /* 2 = ECDSA-256 P-256 */
	uint32_t tee_type;     /* ATTEST_TEE_* */
	uint16_t qe_svn;       /* v3 only; reserved in v4/v5 */
	uint16_t pce_svn;      /* v3 only; reserved in v4/v5 */
	uint8_t qe_vendor_id[16];
	uint8_t user_data[20];
	/* body */
	enum attest_body_type body_type;
	struct attest_sgx_report sgx; /* body_type == SGX */
	struct attest_td_report td;   /* body_type == TD10 / TD15 */
	size_t signed_len;            /* bytes of raw covered by the quote signature */
	/* signature section */
	uint8_t signature[64];  /* r || s, big-endian */
	uint8_t attest_key[64]; /* x || y, big-endian */
	uint8_t qe_report_raw[384];
	struct attest_sgx_report qe_report;
	uint8_t qe_report_sig[64];
	uint8_t *qe_auth_data; /* owned */
	size_t qe_auth_len;
	uint16_t pck_cert_type;
	char *pck_chain_pem; /* owned, NUL-terminated */
	size_t pck_chain_len;
	uint8_t *raw; /* owned copy of the quote through the end of the signature section */
	size_t raw_len;
	size_t trailing; /* bytes after the signature section (padding), ignored */
};

/* Parses a binary quote. Every length is checked; *out is set only on success. */
int attest_quote_parse(const uint8_t *p, size_t len, struct attest_quote **out, struct tdxr_err *err);
void attest_quote_free(struct attest_quote *q);
/* What a collateral fetch needs from a quote: FMSPC (12 hex digits) and the PCK CA
 * ("platform" or "processor") from its PCK leaf certificate. No verification. */
int attest_quote_pck_info(const struct attest_quote *q, char fmspc_hex[13], const char **pck_ca,
                          struct tdxr_err *err);
/* Reads a quote file: binary, or hex text (optional 0x, whitespace allowed). */
int attest_quote_load(const uint8_t *p, size_t len, uint8_t **bin, size_t *bin_len, struct tdxr_err *err);

/* ================================================================ collateral */

/* dcap-qvl QuoteCollateralV3 layout. Strings are owned, NUL-terminated. */
struct attest_collateral {
	char *tcb_info; /* exact signed JSON text of the tcbInfo object */
	size_t tcb_info_len;
	uint8_t tcb_info_sig[64];
	char *tcb_info_issuer_chain; /* PEM, leaf first */
	char *qe_identity;           /* exact signed JSON text of the enclaveIdentity object */
	size_t qe_identity_len;
	uint8_t qe_identity_sig[64];
	char *qe_identity_issuer_chain;
	uint8_t *pck_crl; /* DER */
	size_t pck_crl_len;
	uint8_t *root_ca_crl; /* DER */
	size_t root_ca_crl_len;
	char *pck_crl_issuer_chain;
	char *pck_certificate_chain; /* optional PEM; overrides the quote's chain when set */
};

/* Parses collateral JSON ({tcb_info, tcb_info_signature, ...}; hex signatures and CRLs). */
int attest_collateral_parse(const uint8_t *json, size_t len, struct attest_collateral **out,
                            struct tdxr_err *err);
/* Serialises back to the same layout; *out is malloc'd JSON text. */
int attest_collateral_to_json(const struct attest_collateral *c, char **out, struct tdxr_err *err);
void attest_collateral_free(struct attest_collateral *c);

/* ================================================================= event log */

#define ATTEST_EVENT_DSTACK_RUNTIME 0x08000001u

struct attest_event {
	uint32_t imr; /* 0..3 = RTMR0..3 */
	uint32_t event_type;
	uint8_t digest[48]; /* SHA-384 */
	char *event;        /* owned; the event name ("" when the log gives none) */
	uint8_t *payload;   /* owned */
	size_t payload_len;
};

struct attest_eventlog {
	struct attest_event *events; /* owned */
	size_t n;
};

/* The dstack JSON form: an array of {imr, event_type, digest, event, event_payload},
 * given as the array's JSON text. */
int attest_eventlog_parse_json(const uint8_t *text, size_t len, struct attest_eventlog **out,
                               struct tdxr_err *err);
/* A raw TCG2 crypto-agile CCEL (SHA-384 digests; MR index 1..4 = RTMR0..3). */
int attest_eventlog_parse_ccel(const uint8_t *p, size_t len, struct attest_eventlog **out,
                               struct tdxr_err *err);
/* Serialises to the dstack JSON array text (malloc'd). */
int attest_eventlog_to_json(const struct attest_eventlog *log, char **out, struct tdxr_err *err);
void attest_eventlog_free(struct attest_eventlog *log);
/* Recomputes the digest of every dstack runtime event:
 * SHA-384(u32le event_type || ":" || event || ":" || payload); mismatch = error naming the event. */
int attest_eventlog_check_digests(const struct attest_eventlog *log, struct tdxr_err *err);
/* Replays RTMR0..3: SHA-384 extend from 48 zero bytes, in order. */
int attest_eventlog_replay(const struct attest_eventlog *log, uint8_t rtmr[4][48], struct tdxr_err *err);

/* dstack identity from RTMR3 runtime events before "system-ready". Hex strings, "" when absent. */
struct attest_dstack_identity {
	char app_id[129];
	char compose_hash[129];
	char instance_id[129];
	char os_image_hash[129];
	char key_provider[1024]; /* the payload as text (JSON), truncated */
	int system_ready;        /* a system-ready event was seen */
};
int attest_dstack_identity_get(const struct attest_eventlog *log, struct attest_dstack_identity *out,
                               struct tdxr_err *err);
/* SHA-256 of the app-compose text, hex into out[65]. */
void attest_compose_hash(const char *app_compose, size_t len, char out[65]);
/* REPORTDATA an RA-TLS app certificate binds: SHA-512("ratls-cert:" || leaf SPKI DER). */
int attest_ratls_report_data(const char *cert_pem, size_t len, uint8_t out[64], struct tdxr_err *err);

/* Evidence: what a guest agent (or a cloud API) hands back, parsed into parts. */
struct attest_evidence {
	uint8_t *quote; /* owned, binary; NULL when the response carries none */
	size_t quote_len;
	struct attest_eventlog *eventlog; /* owned; NULL when absent */
	char *app_compose;                /* owned; NULL when absent */
	char *app_cert;                   /* owned PEM chain; NULL when absent */
	char *app_id;                     /* owned hex; NULL when absent */
	char *instance_id;                /* owned hex; NULL when absent */
};
/* Accepts a guest-agent Info response (tcb_info as JSON string or object; the quote
 * then comes from the app certificate's RA-TLS extension 1.3.6.1.4.1.62397.1.1), a
 * GetQuote response ({quote, event_log}), the legacy tappd forms, and Phala Cloud's
 * /cvms/{id}/attestation response. */
int attest_evidence_parse(const uint8_t *json, size_t len, struct attest_evidence **out,
                          struct tdxr_err *err);
void attest_evidence_free(struct attest_evidence *e);

/* ==================================================================== policy */

enum attest_tcb_status {
	ATTEST_TCB_UP_TO_DATE = 0,
	ATTEST_TCB_SW_HARDENING_NEEDED,
	ATTEST_TCB_CONFIGURATION_NEEDED,
	ATTEST_TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
	ATTEST_TCB_OUT_OF_DATE,
	ATTEST_TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
	ATTEST_TCB_REVOKED,
	ATTEST_TCB_UNKNOWN,
};
#define ATTEST_TCB_BIT(s) (1u << (s))
#define ATTEST_TCB_DEFAULT_ACCEPT                                                                            \
	(ATTEST_TCB_BIT(ATTEST_TCB_UP_TO_DATE) | ATTEST_TCB_BIT(ATTEST_TCB_SW_HARDENING_NEEDED))

const char *attest_tcb_status_name(enum attest_tcb_status s);
/* Intel's spelling ("UpToDate", ...) to the enum; ATTEST_TCB_UNKNOWN if unknown. */
enum attest_tcb_status attest_tcb_status_parse(const char *s);

struct attest_policy {
	unsigned accept_tcb;               /* ATTEST_TCB_BIT mask; 0 = ATTEST_TCB_DEFAULT_ACCEPT */
	int allow_debug;                   /* accept TD/enclave DEBUG attribute */
	int allow_service_td;              /* accept a non-zero MRSERVICETD (TD 1.5) */
	int allow_reserved;                /* accept reserved TD attribute bits and missing SEPT_VE_DISABLE */
	int allow_simulated;               /* accept a simulator root of trust */
	const char *expected_app_id;       /* hex or NULL */
	const char *expected_compose_hash; /* hex or NULL */
	const char *expected_instance_id;  /* hex or NULL */
	const uint8_t *expected_report_data; /* 64 bytes or NULL */
	/* allow-lists of hex values; NULL-terminated arrays, NULL = any */
	const char *const *mrtd;
	const char *const *rtmr0;
	const char *const *rtmr1;
	const char *const *rtmr2;
	const char *const *os_image_hash;
	const char *const *compose_hash; /* allowed compose hashes (beside expected_compose_hash) */
};
void attest_policy_init(struct attest_policy *p);

/* =================================================================== verdict */

enum attest_step_result { ATTEST_STEP_PASS = 0, ATTEST_STEP_FAIL, ATTEST_STEP_SKIP };

#define ATTEST_MAX_STEPS 32
struct attest_step {
	const char *name; /* static string, e.g. "quote_signature" */
	enum attest_step_result result;
	char detail[256];
};

struct attest_verdict {
	int ok;                        /* every step passed or was skipped by design, and the policy holds */
	int simulated;                 /* the root of trust was a simulator root */
	enum attest_tcb_status status; /* ATTEST_TCB_UNKNOWN when not reached */
	int have_status;
	char **advisory_ids; /* owned */
	size_t n_advisory;
	char error[320]; /* "<step>: <detail>" of the first failure, "" when ok */
	struct attest_step steps[ATTEST_MAX_STEPS];
	size_t n_steps;
	struct attest_quote *quote; /* owned; NULL if parsing failed */
	uint8_t fmspc[6];
	int have_fmspc;
	struct attest_dstack_identity identity;
	int have_identity;
	int64_t now;
};
void attest_verdict_free(struct attest_verdict *v);
/* The verdict as one JSON object: ok, status, advisory_ids, error, steps, simulated,
 * mrtd, rtmr0..3, report_data, tee_tcb_svn, fmspc, ... (malloc'd text). */
int attest_verdict_to_json(const struct attest_verdict *v, char **out, struct tdxr_err *err);

/* ================================================================= statement */

/*
 * The job statement: an in-toto Statement v1 naming the job's outputs
 * (subjects) with a tdx-runner predicate, bound into a second ("end") quote by
 *   REPORTDATA = SHA-512("tdx-runner/statement/v1" || 0x00 || statement bytes).
 * The statement is canonical JSON (keys sorted bytewise, no whitespace, every
 * non-ASCII character and control character \u-escaped): attest_statement_build
 * is the one serialiser and attest_statement_parse accepts only the exact bytes
 * it would produce, so one statement has one byte string and one digest.
 * docs/attestation.md ("Provenance: the end quote") gives the schema.
 */
#define ATTEST_STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define ATTEST_STATEMENT_PREDICATE_TYPE "https://tdx-runner.dev/attestation/job/v1"
#define ATTEST_STATEMENT_DOMAIN "tdx-runner/statement/v1" /* hashed with its NUL */
#define ATTEST_STATEMENT_MAX (1u << 20)                   /* bytes of a statement */
#define ATTEST_STATEMENT_MAX_SUBJECTS 256
#define ATTEST_STATEMENT_MAX_STRING 1024 /* bytes of a subject name or any predicate string */

struct attest_subject {
	const char *name; /* a relative path: not empty, not absolute, no ".." component */
	uint8_t sha256[32];
};

/* What the predicate repeats of the start quote, so an end quote is chained to one start
 * quote of one box. Strings are lower-case hex ("" when the start had no such value). */
struct attest_statement_start {
	char quote_sha256[65]; /* SHA-256 of the start quote bytes in the bundle */
	char nonce[129];       /* the gate nonce recorded in the bundle's meta; "" = none */
	char app_id[129];      /* the start verdict's dstack identity */
	char compose_hash[129];
	char instance_id[129];
	char tcb_status[48]; /* as the agent saw it at the start; "" = none. Informational */
	int simulated;
};

/* A statement. To build one, fill it with borrowed pointers (NULL = JSON null where
 * allowed). One that attest_statement_parse returns owns every string and the subject
 * array: free it with attest_statement_free (never free a built one that way). */
struct attest_statement {
	const struct attest_subject *subjects;
	size_t n_subjects;
	const char *repository; /* e.g. "owner/repo" or a clone URL without credentials; or NULL */
	const char *commit;     /* hex commit id or NULL */
	const char *ci_system;  /* "github", "gitlab", "cli"; required */
	const char *ci_job_id;  /* or NULL */
	const char *ci_run_id;  /* or NULL */
	const char *ci_workflow;
	const char *ci_runner_name;
	const char *lease_id; /* required */
	const char *executor; /* required */
	int64_t started_at;   /* UNIX seconds, written as RFC 3339 UTC */
	int64_t ended_at;
	int has_exit_code; /* 0 = "exit_code": null */
	int exit_code;
	struct attest_statement_start start;
};

/* A subject name: not empty, at most ATTEST_STATEMENT_MAX_STRING bytes, relative (no
 * leading '/'), no ".." component, no control character. EINVAL saying which rule. */
int attest_subject_name_check(const char *name, struct tdxr_err *err);
/* The canonical bytes (*out malloc'd, NUL-terminated; *len excludes the NUL). */
int attest_statement_build(const struct attest_statement *s, char **out, size_t *len, struct tdxr_err *err);
/* Bounded, strict: the exact canonical bytes of a well-formed statement, else EINVAL
 * naming the field. */
int attest_statement_parse(const uint8_t *p, size_t len, struct attest_statement **out, struct tdxr_err *err);
void attest_statement_free(struct attest_statement *s);
/* SHA-512(ATTEST_STATEMENT_DOMAIN || 0x00 || p[len]): the end quote's REPORTDATA. */
void attest_statement_report_data(const uint8_t *p, size_t len, uint8_t out[64]);
/* 1 when sha256 is the digest of one of the statement's subjects. */
int attest_statement_has_subject(const struct attest_statement *s, const uint8_t sha256[32]);
/* Fills the start summary from a bundle's start part (quote bytes, meta.nonce) and the
 * start verdict (identity, status, simulated) as verified. */
int attest_statement_start_get(const uint8_t *bundle, size_t len, const struct attest_verdict *start,
                               struct attest_statement_start *out, struct tdxr_err *err);

/* ================================================================== verifier */

/*
 * Collateral verified once for many quotes: CRLs, TCB Info and QE Identity
 * chains, signatures and windows are checked at `now` against the root
 * (root_der, or NULL = the Intel SGX Root CA found in the collateral's issuer
 * chains and pinned by SPKI). Returns 0 and a trust even when a check failed
 * (attest_trust_ok says which), so attest_verify can report the failed step;
 * a negative code only for bad arguments or ENOMEM. Immutable; thread-safe to
 * share. The agent keeps one per FMSPC until the collateral's nextUpdate.
 */
struct attest_trust;
int attest_trust_new(const struct attest_collateral *c, const uint8_t *root_der, size_t root_der_len,
                     int64_t now, struct attest_trust **out, struct tdxr_err *err);
/* 1 when every collateral check passed; *error (borrowed) names the failure. */
int attest_trust_ok(const struct attest_trust *t, const char **error);
void attest_trust_free(struct attest_trust *t);

struct attest_input {
	const uint8_t *quote; /* binary */
	size_t quote_len;
	const struct attest_collateral *collateral;
	const struct attest_eventlog *eventlog; /* optional */
	const char *app_compose;                /* optional */
	size_t app_compose_len;
	const char *app_cert_pem; /* optional RA-TLS certificate */
	size_t app_cert_len;
	int64_t now; /* UNIX seconds */
	/* Root of trust: NULL = the bundled Intel SGX Root CA, pinned by SPKI SHA-256. */
	const uint8_t *root_der;
	size_t root_der_len;
	int root_simulated; /* root_der is a simulator root (attest/sim) */
	/* Optional: collateral prepared by attest_trust_new (from `collateral` and `root_der`);
	 * NULL = prepared for this call alone. */
	const struct attest_trust *trust;
};

/* Runs every step and fills a verdict. Returns 0 when a verdict was produced (look at
 * verdict->ok), a negative code only when no verdict could be produced (ENOMEM). */
int attest_verify(const struct attest_input *in, const struct attest_policy *policy,
                  struct attest_verdict **out, struct tdxr_err *err);

/* Empties the process-wide cache of decoded certificates (keyed by the SHA-256 of
 * their DER; it changes cost, never an answer). Also frees it at exit for leak checkers. */
void attest_cert_cache_clear(void);

/* SHA-256 of the Intel SGX Root CA SubjectPublicKeyInfo the verifier pins. */
extern const char ATTEST_INTEL_ROOT_SPKI_SHA256[65];

/* ==================================================================== bundle */

/* Identity of the lease and job a bundle belongs to (all optional, copied into the bundle). */
struct attest_bundle_meta {
	const char *executor;
	const char *lease_id;
	const char *job_id;
	const char *nonce_hex;
};

/* Writes an attestation bundle: versioned JSON with the quote, event log, app-compose,
 * app certificate, collateral, policy, verdict, root (when simulated), time. */
int attest_bundle_write(const struct attest_input *in, const struct attest_policy *policy,
                        const struct attest_verdict *verdict, const struct attest_bundle_meta *meta,
                        char **out, struct tdxr_err *err);
/* Re-verifies a bundle offline at its recorded time (now_override > 0 to change it).
 * policy NULL = the policy recorded in the bundle. */
int attest_bundle_verify(const uint8_t *json, size_t len, const struct attest_policy *policy,
                         int64_t now_override, struct attest_verdict **out, struct tdxr_err *err);

/*
 * The optional `end` part of a bundle (provenance, docs/attestation.md): the
 * statement's exact bytes, a second quote from the same CVM whose REPORTDATA is
 * attest_statement_report_data(statement), its event log and its verdict. When
 * a bundle has one, re-verification adds the steps end_quote, statement_binding,
 * same_cvm, statement, statement_predicate and subject to the verdict
 * (a failure names the step, "<step>: <detail>"); a bundle without one
 * verifies exactly as before.
 */
struct attest_bundle_end_input {
	const uint8_t *statement; /* exact bytes */
	size_t statement_len;
	const uint8_t *quote; /* the end quote, binary */
	size_t quote_len;
	const struct attest_eventlog *eventlog; /* the end quote's event log (required) */
	int64_t now;                            /* when the end quote is verified */
};
/* Adds the end part to a bundle (which must not have one yet) and re-verifies the whole
 * bundle under policy (relaxations from the caller, as for attest_bundle_verify); the end
 * quote's verdict is recorded in it. *out: the extended bundle (malloc'd), also when the
 * verdict fails; *verdict (may be NULL): the combined verdict - look at ->ok. */
int attest_bundle_end_add(const uint8_t *bundle, size_t len, const struct attest_bundle_end_input *in,
                          const struct attest_policy *policy, char **out, struct attest_verdict **verdict,
                          struct tdxr_err *err);
/* The relaxations recorded in a bundle's policy (accept_tcb, allow_debug, allow_service_td,
 * allow_reserved, allow_simulated) copied into *pol (other fields untouched). Only for the
 * writer of a bundle checking its own work; never trust them in someone else's bundle. */
int attest_bundle_policy_relaxations(const uint8_t *bundle, size_t len, struct attest_policy *pol,
                                     struct tdxr_err *err);

struct attest_bundle_verify_opts {
	const struct attest_policy *policy; /* NULL = default + what the bundle narrows */
	int64_t now_override;               /* > 0: verify both quotes at this time */
	const uint8_t (*subjects)[32];      /* SHA-256 digests that must be statement subjects */
	const char *const *subject_names;   /* for messages (may be NULL) */
	size_t n_subjects;
};
/* The end part as re-verified (all owned; free with attest_bundle_end_free). */
struct attest_bundle_end {
	struct attest_verdict *verdict;     /* the end quote's own verdict; NULL if not reached */
	struct attest_statement *statement; /* NULL when it did not parse */
	uint8_t *statement_raw;             /* the exact bytes */
	size_t statement_len;
	uint8_t statement_sha256[32];
	uint8_t report_data[64]; /* attest_statement_report_data(statement) */
};
/* attest_bundle_verify with subjects. *end (the pointer may be NULL) is set when the bundle
 * has an end part; what a step did not reach stays NULL / zero in it (statement_raw is set
 * once statement_binding decoded it, statement once it parsed). With subjects and no end
 * part, the step "subject" fails. */
int attest_bundle_verify_ex(const uint8_t *json, size_t len, const struct attest_bundle_verify_opts *o,
                            struct attest_verdict **out, struct attest_bundle_end **end,
                            struct tdxr_err *err);
void attest_bundle_end_free(struct attest_bundle_end *e);

#endif
