/*
 * sim.h - a TDX quote simulator with its own PKI: a self-signed simulated SGX
 * root CA, a PCK Platform CA, a PCK leaf carrying the Intel SGX extension, a TCB
 * Signing certificate, CRLs, signed TCB Info / QE Identity collateral (dcap-qvl
 * layout), TDX v4/v5 quotes and the dstack event log whose replay gives RTMR0-3.
 *
 * The output is byte-compatible with Intel DCAP: a DCAP verifier told to trust
 * the simulator root (attest_input.root_der with root_simulated = 1) accepts it.
 * The root never claims to be Intel ("tdx-runner Simulated SGX Root CA").
 *
 * Every option struct has an _init that yields an UpToDate verdict; tests change
 * single fields (statuses, SVNs, dates, corrupt_* switches) to reach each branch
 * of a verifier. Pointers inside option structs are borrowed for the call only.
 * Whatever comes back through **out is the caller's: malloc'd buffers are freed
 * with free(), objects with their _free (every _free accepts NULL). Pointers
 * returned directly are borrowed from the PKI object.
 *
 * Trust boundary: none. This is a test and local-executor tool; its keys live in
 * process memory and nothing it signs is evidence of a real TEE.
 */
#ifndef TDXR_ATTEST_SIM_SIM_H
#define TDXR_ATTEST_SIM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"
#include "common/err.h"

#define SIM_ROOT_CN "tdx-runner Simulated SGX Root CA"
#define SIM_PLATFORM_CA_CN "tdx-runner Simulated SGX PCK Platform CA"
#define SIM_PCK_CN "tdx-runner Simulated SGX PCK Certificate"
#define SIM_TCB_SIGNING_CN "tdx-runner Simulated SGX TCB Signing"
#define SIM_ORG "tdx-runner (simulated, not Intel)"

/* Defaults shared by the PKI, the collateral and the quote so that they agree. */
extern const uint8_t SIM_DEFAULT_CPU_SVN[16];     /* SGX TCB components 01..16 */
extern const uint8_t SIM_DEFAULT_TEE_TCB_SVN[16]; /* TD report TEE_TCB_SVN */
extern const uint8_t SIM_DEFAULT_FMSPC[6];
#define SIM_DEFAULT_PCE_SVN 11
#define SIM_DEFAULT_QE_ISVSVN 4
#define SIM_DEFAULT_QE_ISVPRODID 2

/* ======================================================================= PKI */

enum sim_cert {
	SIM_CERT_ROOT = 0,
	SIM_CERT_PLATFORM_CA, /* PCK Platform CA, signed by root */
	SIM_CERT_PCK,         /* PCK leaf, signed by the Platform CA */
	SIM_CERT_TCB_SIGNING, /* signs TCB Info and QE Identity, signed by root */
	SIM_CERT_COUNT,
};
#define SIM_CERT_BIT(c) (1u << (c))

struct sim_validity {
	int64_t not_before; /* UNIX seconds; 0 = default around opts.now */
	int64_t not_after;
};

struct sim_pki_opts {
	int64_t now; /* reference time for the default validity windows */
	/* Deterministic mode: keys, serials and every ECDSA nonce derive from seed,
	 * so the same options (and calls) give the same bytes. */
	int deterministic;
	uint64_t seed;
	struct sim_validity validity[SIM_CERT_COUNT];
	const char *cn[SIM_CERT_COUNT]; /* subject CNs; NULL = SIM_*_CN */
	/* PCK leaf SGX extension (OID 1.2.840.113741.1.13.1) */
	uint8_t ppid[16];
	uint8_t cpu_svn[16]; /* TCB components .2.1-.2.16; CPUSVN .2.18 = the same bytes */
	uint16_t pce_svn;    /* .2.17 */
	uint8_t pce_id[2];
	uint8_t fmspc[6];
	int sgx_type; /* ENUMERATED: 0 Standard, 1 Scalable, 2 Scalable with integrity */
	uint8_t platform_instance_id[16];
	int dynamic_platform, cached_keys, smt_enabled; /* Configuration (.7) */
	/* negative tests */
	unsigned corrupt_sig;  /* SIM_CERT_BIT mask: flip a bit of that certificate's signature */
	int pck_omit_sgx_ext;  /* PCK leaf without the SGX extension */
	int pck_is_ca;         /* 1: PCK leaf is a CA certificate (CA:TRUE, keyCertSign);
	                        * 2: only basicConstraints says CA:TRUE (key usage unchanged) */
	int tcb_signing_is_ca; /* TCB Signing certificate says CA:TRUE */
};

/* Defaults: fresh keys, every certificate valid around now, FMSPC SIM_DEFAULT_FMSPC. */
void sim_pki_opts_init(struct sim_pki_opts *o, int64_t now);

struct sim_pki;
int sim_pki_new(const struct sim_pki_opts *o, struct sim_pki **out, struct tdxr_err *err);
void sim_pki_free(struct sim_pki *p);
/* Borrowed DER of a certificate (the verifier's root_der is SIM_CERT_ROOT). */
const uint8_t *sim_pki_cert_der(const struct sim_pki *p, enum sim_cert which, size_t *len);
/* The certificate as PEM text (malloc'd, NUL-terminated). */
int sim_pki_cert_pem(const struct sim_pki *p, enum sim_cert which, char **out, struct tdxr_err *err);
/* Serial number, big-endian magnitude as lower-case hex (40 digits here), into out[41]. */
void sim_pki_cert_serial(const struct sim_pki *p, enum sim_cert which, char out[41]);
/* The PCK chain as the quote carries it: leaf, Platform CA, root (PEM, malloc'd). */
int sim_pki_pck_chain_pem(const struct sim_pki *p, char **out, struct tdxr_err *err);

struct sim_crl_opts {
	int64_t this_update;                /* 0 = pki now - 1 day */
	int64_t next_update;                /* 0 = pki now + 29 days */
	unsigned revoke;                    /* SIM_CERT_BIT mask of this PKI's certificates to list */
	const char *const *revoked_serials; /* extra serials, hex, NULL-terminated; NULL = none */
	int corrupt_sig;
};
void sim_crl_opts_init(struct sim_crl_opts *o);
/* A DER CRL signed by issuer (SIM_CERT_ROOT or SIM_CERT_PLATFORM_CA); *der malloc'd. */
int sim_pki_crl(const struct sim_pki *p, enum sim_cert issuer, const struct sim_crl_opts *o, uint8_t **der,
                size_t *len, struct tdxr_err *err);

/* ================================================================ collateral */

/* One TCB Info tcbLevels entry. advisory_ids NULL = no advisoryIDs key. */
struct sim_tcb_level {
	uint8_t sgx_svn[16];
	uint16_t pce_svn;
	uint8_t tdx_svn[16];
	const char *status;              /* "UpToDate", "OutOfDate", ... (written verbatim) */
	const char *tcb_date;            /* NULL = default (30 days before now) */
	const char *const *advisory_ids; /* NULL-terminated */
};
/* A level keyed by ISVSVN (QE Identity, TDX module identities). */
struct sim_isv_level {
	uint16_t isvsvn;
	const char *status;
	const char *tcb_date;
	const char *const *advisory_ids;
};
struct sim_module_identity {
	const char *id; /* "TDX_01" */
	uint8_t mrsigner[48];
	uint8_t attributes[8];
	uint8_t attributes_mask[8];
	const struct sim_isv_level *levels;
	size_t n_levels;
};

/* Fills a level that matches the default platform (SIM_DEFAULT_* SVNs). */
void sim_tcb_level_init(struct sim_tcb_level *l, const char *status);

struct sim_collateral_opts {
	int64_t now;
	/* TCB Info (TDX, version 3) */
	int64_t tcb_issue_date;  /* 0 = now - 1 day */
	int64_t tcb_next_update; /* 0 = now + 29 days */
	const char *tcb_id;      /* "TDX" */
	int tcb_version;         /* 3 */
	const uint8_t *fmspc;    /* 6 bytes; NULL = the PCK leaf's */
	const uint8_t *pce_id;   /* 2 bytes; NULL = the PCK leaf's */
	int tcb_type;
	int tcb_eval_num;
	uint8_t tdx_module_mrsigner[48];
	uint8_t tdx_module_attributes[8];
	uint8_t tdx_module_attributes_mask[8];
	const struct sim_tcb_level *tcb_levels; /* NULL = one UpToDate level matching the defaults */
	size_t n_tcb_levels;
	const struct sim_module_identity *modules; /* NULL = TDX_03 and TDX_01, UpToDate */
	size_t n_modules;
	int omit_modules; /* no tdxModule / tdxModuleIdentities keys */
	/* QE Identity (TD_QE, version 2) */
	int64_t qe_issue_date;
	int64_t qe_next_update;
	const char *qe_id; /* "TD_QE" */
	int qe_version;    /* 2 */
	uint32_t qe_miscselect, qe_miscselect_mask;
	uint8_t qe_attributes[16];
	uint8_t qe_attributes_mask[16];
	uint8_t qe_mrsigner[32];
	uint16_t qe_isvprodid;
	const struct sim_isv_level *qe_levels; /* NULL = isvsvn SIM_DEFAULT_QE_ISVSVN UpToDate */
	size_t n_qe_levels;
	/* CRLs */
	struct sim_crl_opts root_crl;
	struct sim_crl_opts pck_crl;
	/* negative tests */
	int corrupt_tcb_info_sig; /* flip a bit of the signature */
	int corrupt_qe_identity_sig;
	int tamper_tcb_info; /* change the text after signing */
	int tamper_qe_identity;
	int sign_with_pck;     /* sign TCB Info and QE Identity with the PCK key instead */
	int include_pck_chain; /* add the optional pck_certificate_chain key */
};
void sim_collateral_opts_init(struct sim_collateral_opts *o, int64_t now);

/* The signed pieces (for tests that check signatures directly). All malloc'd. */
struct sim_collateral {
	char *tcb_info; /* exact signed text */
	uint8_t tcb_info_sig[64];
	char *qe_identity;
	uint8_t qe_identity_sig[64];
	uint8_t *pck_crl;
	size_t pck_crl_len;
	uint8_t *root_ca_crl;
	size_t root_ca_crl_len;
	char *json; /* the whole collateral object in the dcap-qvl layout (attest_collateral_parse) */
};
int sim_collateral_make(const struct sim_pki *p, const struct sim_collateral_opts *o,
                        struct sim_collateral **out, struct tdxr_err *err);
void sim_collateral_free(struct sim_collateral *c);

/* ===================================================================== quote */

struct sim_quote_opts {
	uint16_t version;                /* 4 or 5 */
	enum attest_body_type body_type; /* ATTEST_BODY_TD10 or TD15 (v5 only; v4 is always TD 1.0) */
	struct attest_td_report td;      /* every TD report field, report_data included */
	uint8_t user_data[20];
	/* QE report: every field but report_data, which is SHA-256(attestation key || auth data) */
	struct attest_sgx_report qe;
	const uint8_t *qe_auth_data; /* NULL = 32 bytes 00 01 .. 1f */
	size_t qe_auth_len;
	/* header fields (change for negative tests) */
	uint16_t att_key_type; /* 2 */
	uint32_t tee_type;     /* 0x81 */
	uint8_t qe_vendor_id[16];
	uint16_t cert_type;        /* 6 */
	uint16_t inner_cert_type;  /* 5 */
	int pem_nul;               /* end the PEM chain with a NUL byte as Intel's QE does (default 1) */
	const char *pck_chain_pem; /* NULL = leaf, Platform CA, root */
	size_t trailing_bytes;     /* zero bytes after the signature section */
	/* negative tests */
	int corrupt_quote_sig;
	int corrupt_qe_report_sig;
	int corrupt_qe_report_data;
};
/* TD 1.0 v4 quote, SEPT_VE_DISABLE set, DEBUG clear, SIM_DEFAULT_TEE_TCB_SVN, zero REPORTDATA. */
void sim_quote_opts_init(struct sim_quote_opts *o);
/* Signs with a fresh attestation key (derived from the seed in deterministic mode). */
int sim_quote_make(const struct sim_pki *p, const struct sim_quote_opts *o, uint8_t **quote, size_t *len,
                   struct tdxr_err *err);

/* ================================================================= event log */

struct sim_event {
	const char *name; /* RTMR3 runtime event name */
	const uint8_t *payload;
	size_t payload_len;
};

struct sim_eventlog_opts {
	uint8_t app_id[20];
	uint8_t instance_id[20];
	const char *app_compose; /* NULL = a small default app-compose.json */
	size_t app_compose_len;  /* 0 = strlen */
	uint8_t os_image_hash[32];
	const char *key_provider;      /* JSON text; NULL = {"name":"none","id":""} */
	const struct sim_event *extra; /* runtime events after system-ready */
	size_t n_extra;
	/* negative tests */
	int omit_system_ready;
	int corrupt_digest; /* the compose-hash event's digest does not match its payload
	                     * (RTMR3 is still the replay of the recorded digests) */
};
void sim_eventlog_opts_init(struct sim_eventlog_opts *o);
/* The dstack JSON event log (array text, malloc'd) and its RTMR0-3 replay. */
int sim_eventlog_make(const struct sim_eventlog_opts *o, char **json, uint8_t rtmr[4][48],
                      struct tdxr_err *err);
/* The default app-compose text (static). */
const char *sim_default_app_compose(void);

/* ================================================================== one call */

struct sim_opts {
	struct sim_pki_opts pki;
	struct sim_collateral_opts collateral;
	struct sim_quote_opts quote;
	struct sim_eventlog_opts eventlog;
	int keep_quote_rtmrs; /* 0 = the quote's RTMR0-3 are the event log replay */
};
void sim_opts_init(struct sim_opts *o, int64_t now);

struct sim_output {
	uint8_t *quote;
	size_t quote_len;
	char *collateral_json;
	char *eventlog_json;
	char *app_compose;
	uint8_t *root_der;
	size_t root_der_len;
	uint8_t rtmr[4][48];
};
/* PKI + collateral + quote + event log in one go. */
int sim_generate(const struct sim_opts *o, struct sim_output **out, struct tdxr_err *err);
/* Defaults for now and report_data (64 bytes; NULL = zeros). */
int sim_generate_default(int64_t now, const uint8_t *report_data, struct sim_output **out,
                         struct tdxr_err *err);
void sim_output_free(struct sim_output *o);

#endif
