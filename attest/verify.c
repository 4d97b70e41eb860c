/*
 * verify.c - the DCAP verifier: from quote bytes, collateral and an optional
 * dstack event log to a verdict that names every step.
 *
 * Order (each step a named entry in the verdict; the first failure stops the
 * run and every later step is reported "skip: not reached"):
 *   parse, root, crl, tcb_info, qe_identity, pck_chain, qe_report_signature,
 *   qe_report_data, qe_identity_match, quote_signature, pck_extension,
 *   tcb_level, tdx_module, tcb_status, td_attributes, event_log, rtmr_replay,
 *   identity, app_compose, report_data, measurements.
 * The TCB logic follows Intel's DCAP QVL as implemented by Phala's dcap-qvl
 * (the project's differential oracle); docs/attestation.md lists where it is
 * stricter. The verifier is pure: no I/O, "now" comes from the caller.
 */
#include "attest/attest.h"

#include "attest/attest_int.h"
#include "common/util.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SHA-256 of the DER SubjectPublicKeyInfo of Intel's "Intel SGX Root CA". */
const char ATTEST_INTEL_ROOT_SPKI_SHA256[65] =
    "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e";

static const char *const step_order[] = {
	"parse",
	"root",
	"crl",
	"tcb_info",
	"qe_identity",
	"pck_chain",
	"qe_report_signature",
	"qe_report_data",
	"qe_identity_match",
	"quote_signature",
	"pck_extension",
	"tcb_level",
	"tdx_module",
	"tcb_status",
	"td_attributes",
	"event_log",
	"rtmr_replay",
	"identity",
	"app_compose",
	"report_data",
	"measurements",
};
#define N_STEPS (sizeof(step_order) / sizeof(step_order[0]))

void attest_policy_init(struct attest_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->accept_tcb = ATTEST_TCB_DEFAULT_ACCEPT;
}

static void step(struct attest_verdict *v, const char *name, enum attest_step_result r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void step(struct attest_verdict *v, const char *name, enum attest_step_result r, const char *fmt, ...)
{
	struct attest_step *s;
	va_list ap;

	if (v->n_steps >= ATTEST_MAX_STEPS)
		return;
	s = &v->steps[v->n_steps++];
	s->name = name;
	s->result = r;
	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
	va_end(ap);
	if (r == ATTEST_STEP_FAIL && v->error[0] == '\0')
		snprintf(v->error, sizeof(v->error), "%s: %s", name, s->detail);
}

/* Everything one verification run holds; freed in one place. */
struct run {
	const struct attest_input *in;
	const struct attest_policy *pol;
	struct attest_verdict *v;
	struct attest_quote *q;
	const struct attest_trust *t; /* the caller's, or own_trust */
	struct attest_trust *own_trust;
	STACK_OF(X509) *pck_chain;
	struct attest_status_adv platform, qe_status, final;
	struct attest_pck_ext ext;
	struct tdxr_err e;
};

static int fail(struct run *r, const char *name)
{
	step(r->v, name, ATTEST_STEP_FAIL, "%s", r->e.msg);
	return TDXR_EATTEST;
}

static int failf(struct run *r, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int failf(struct run *r, const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->e.msg, sizeof(r->e.msg), fmt, ap);
	va_end(ap);
	return fail(r, name);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	tdxr_hex_encode(p, n, out);
}

/* ---- root of trust and collateral (prepared by trust.c) ---- */

static void copy_trust_step(struct run *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->t->n_steps; i++)
		if (strcmp(r->t->steps[i].name, name) == 0)
			step(r->v, name, r->t->steps[i].result, "%s", r->t->steps[i].detail);
}

static int step_root(struct run *r)
{
	X509 *last = sk_X509_value(r->pck_chain, sk_X509_num(r->pck_chain) - 1);

	if (r->t->root == NULL) {
		copy_trust_step(r, "root");
		return TDXR_EATTEST;
	}
	/* A root the quote carries must be the root the collateral was verified against. */
	if (X509_check_issued(last, last) == X509_V_OK && X509_cmp(last, r->t->root) != 0)
		return failf(
		    r, "root",
		    "the PCK chain ends in a different root than the trusted one (SPKI sha256 %.16s...)",
		    r->t->root_spki);
	ERR_clear_error();
	if (r->t->root_intel) {
		step(r->v, "root", ATTEST_STEP_PASS, "Intel SGX Root CA (SPKI sha256 %s)", r->t->root_spki);
		return 0;
	}
	r->v->simulated = 1;
	if (!r->pol->allow_simulated)
		return failf(r, "root",
		             "root is a simulated (non-Intel) root of trust, SPKI sha256 %.16s...; policy "
		             "allow_simulated is off",
		             r->t->root_spki);
	step(r->v, "root", ATTEST_STEP_PASS,
	     "SIMULATED root of trust (not Intel), SPKI sha256 %s, allowed by policy", r->t->root_spki);
	return 0;
}

static int step_collateral(struct run *r)
{
	const struct attest_trust *t = r->t;
	int tdx = r->q->tee_type == ATTEST_TEE_TDX;
	char a[21], b[21];

	if (t->failed) {
		copy_trust_step(r, "crl");
		copy_trust_step(r, "tcb_info");
		copy_trust_step(r, "qe_identity");
		return TDXR_EATTEST;
	}
	if (r->in->now < t->valid_from || r->in->now > t->valid_until) {
		tdxr_time_format(t->valid_from, a);
		tdxr_time_format(t->valid_until, b);
		return failf(r, "crl",
		             "the collateral is not valid at now: every window holds only from %s until %s",
		             a, b);
	}
	copy_trust_step(r, "crl");
	if (strcmp(t->tcb->id, tdx ? "TDX" : "SGX") != 0)
		return failf(r, "tcb_info", "%s quote with %s TCB info in the collateral",
		             tdx ? "TDX" : "SGX", t->tcb->id);
	copy_trust_step(r, "tcb_info");
	if (strcmp(t->qe->id, tdx ? "TD_QE" : "QE") != 0 ||
	    !(t->qe->version == 2 || (tdx && t->qe->version == 3)))
		return failf(r, "qe_identity", "QE identity %s v%d does not fit a %s quote", t->qe->id,
		             t->qe->version, tdx ? "TDX" : "SGX");
	copy_trust_step(r, "qe_identity");
	return 0;
}

static int step_pck_chain(struct run *r)
{
	if (sk_X509_num(r->pck_chain) < 2)
		return failf(r, "pck_chain", "PCK chain has %d certificate(s); leaf and issuer are required",
		             sk_X509_num(r->pck_chain));
	if (attest__chain_verify_store(r->t->store, r->pck_chain, r->in->now, 0, "PCK chain", &r->e))
		return fail(r, "pck_chain");
	step(r->v, "pck_chain", ATTEST_STEP_PASS,
	     "PCK leaf chains to the root; nothing revoked; all current");
	return 0;
}

static int step_qe_report(struct run *r)
{
	static const uint8_t zero[32];
	uint8_t h[32], buf[64 + 65536];
	unsigned int hl = 0;
	struct attest_quote *q = r->q;

	if (attest__ecdsa_verify_raw(X509_get0_pubkey(sk_X509_value(r->pck_chain, 0)), q->qe_report_raw, 384,
	                             q->qe_report_sig))
		return failf(r, "qe_report_signature",
		             "QE report signature does not verify with the PCK leaf key");
	step(r->v, "qe_report_signature", ATTEST_STEP_PASS, "QE report signed by the PCK leaf");
	memcpy(buf, q->attest_key, 64);
	memcpy(buf + 64, q->qe_auth_data, q->qe_auth_len);
	if (EVP_Digest(buf, 64 + q->qe_auth_len, h, &hl, EVP_sha256(), NULL) != 1)
		return failf(r, "qe_report_data", "SHA-256 failed");
	if (CRYPTO_memcmp(h, q->qe_report.report_data, 32) != 0)
		return failf(r, "qe_report_data",
		             "QE report data is not SHA-256(attestation key || QE auth data): the "
		             "attestation key is not the QE's");
	if (CRYPTO_memcmp(zero, q->qe_report.report_data + 32, 32) != 0)
		return failf(r, "qe_report_data", "QE report data bytes 32..63 are not zero");
	step(r->v, "qe_report_data", ATTEST_STEP_PASS, "attestation key bound to the QE report");
	return 0;
}

static int step_qe_match(struct run *r)
{
	const struct attest_sgx_report *qr = &r->q->qe_report;
	const struct attest_qe_identity *qe = r->t->qe;
	size_t i;

	if (CRYPTO_memcmp(qr->mr_signer, qe->mrsigner, 32) != 0)
		return failf(r, "qe_identity_match", "QE MRSIGNER does not match the QE identity");
	if (qr->isv_prod_id != qe->isvprodid)
		return failf(r, "qe_identity_match", "QE ISVPRODID %u is not %u", qr->isv_prod_id,
		             qe->isvprodid);
	if (qr->attributes[0] & 0x02)
		return failf(r, "qe_identity_match", "the quoting enclave runs in DEBUG mode");
	if ((qr->misc_select & qe->miscselect_mask) != (qe->miscselect & qe->miscselect_mask))
		return failf(r, "qe_identity_match", "QE MISCSELECT does not match under the mask");
	for (i = 0; i < 16; i++)
		if ((qr->attributes[i] & qe->attributes_mask[i]) !=
		    (qe->attributes[i] & qe->attributes_mask[i]))
			return failf(r, "qe_identity_match",
			             "QE ATTRIBUTES byte %zu does not match under the mask", i);
	for (i = 0; i < qe->n_levels; i++)
		if (qr->isv_svn >= qe->levels[i].isvsvn)
			break;
	if (i == qe->n_levels)
		return failf(r, "qe_identity_match", "QE ISVSVN %u is below every level of the QE identity",
		             qr->isv_svn);
	if (attest__status_copy(&r->qe_status, &qe->levels[i].sa))
		return failf(r, "qe_identity_match", "out of memory");
	step(r->v, "qe_identity_match", ATTEST_STEP_PASS, "QE matches its identity; QE ISVSVN %u: %s",
	     qr->isv_svn, attest_tcb_status_name(r->qe_status.status));
	return 0;
}

static int step_quote_signature(struct run *r)
{
	EVP_PKEY *k = attest__p256_from_raw(r->q->attest_key);
	int rc;

	if (k == NULL)
		return failf(r, "quote_signature", "the attestation key is not a P-256 point");
	rc = attest__ecdsa_verify_raw(k, r->q->raw, r->q->signed_len, r->q->signature);
	EVP_PKEY_free(k);
	if (rc)
		return failf(r, "quote_signature",
		             "quote signature does not verify with the attestation key");
	step(r->v, "quote_signature", ATTEST_STEP_PASS,
	     "header and report body signed by the attestation key");
	return 0;
}

static int step_pck_extension(struct run *r)
{
	char a[13], b[13];

	if (attest__pck_ext_parse(sk_X509_value(r->pck_chain, 0), &r->ext, &r->e))
		return fail(r, "pck_extension");
	memcpy(r->v->fmspc, r->ext.fmspc, 6);
	r->v->have_fmspc = 1;
	hex(r->ext.fmspc, 6, a);
	hex(r->t->tcb->fmspc, 6, b);
	if (CRYPTO_memcmp(r->ext.fmspc, r->t->tcb->fmspc, 6) != 0)
		return failf(r, "pck_extension", "FMSPC %s of the PCK certificate is not the TCB info's %s",
		             a, b);
	if (CRYPTO_memcmp(r->ext.pce_id, r->t->tcb->pce_id, 2) != 0)
		return failf(r, "pck_extension", "PCE-ID of the PCK certificate is not the TCB info's");
	step(r->v, "pck_extension", ATTEST_STEP_PASS, "FMSPC %s, PCESVN %u", a, r->ext.pce_svn);
	return 0;
}

static int step_tcb_level(struct run *r)
{
	int tdx = r->q->tee_type == ATTEST_TEE_TDX;
	size_t i, j;

	for (i = 0; i < r->t->tcb->n_levels; i++) {
		const struct attest_tcb_level *L = &r->t->tcb->levels[i];

		if (r->ext.pce_svn < L->pcesvn)
			continue;
		for (j = 0; j < 16; j++)
			if (r->ext.cpu_svn_components[j] < L->sgx[j])
				break;
		if (j < 16)
			continue;
		if (tdx) {
			if (!L->has_tdx)
				return failf(r, "tcb_level", "TCB level %zu has no TDX components", i);
			for (j = 0; j < 16; j++)
				if (r->q->td.tee_tcb_svn[j] < L->tdx[j])
					break;
			if (j < 16)
				continue;
		}
		if (attest__status_copy(&r->platform, &L->sa))
			return failf(r, "tcb_level", "out of memory");
		step(r->v, "tcb_level", ATTEST_STEP_PASS, "platform TCB level %zu: %s", i,
		     attest_tcb_status_name(L->sa.status));
		return 0;
	}
	return failf(r, "tcb_level",
	             "no TCB level matches the PCK SVNs%s (TCB not supported by this collateral)",
	             tdx ? " and TEE_TCB_SVN" : "");
}

static int step_tdx_module(struct run *r)
{
	const struct attest_td_report *td = &r->q->td;
	const struct attest_tcb_info *t = r->t->tcb;
	uint8_t sel = td->tee_tcb_svn[1], svn = td->tee_tcb_svn[0];
	char id[16];
	size_t i, j;

	if (r->q->tee_type != ATTEST_TEE_TDX) {
		step(r->v, "tdx_module", ATTEST_STEP_SKIP, "not a TDX quote");
		return 0;
	}
	if (sel == 0) {
		if (t->has_module) {
			if (CRYPTO_memcmp(td->mrsignerseam, t->module_mrsigner, 48) != 0)
				return failf(r, "tdx_module",
				             "MRSIGNERSEAM is not the TDX module signer of the TCB info");
			for (j = 0; j < 8; j++)
				if ((td->seam_attributes[j] & t->module_attributes_mask[j]) !=
				    (t->module_attributes[j] & t->module_attributes_mask[j]))
					return failf(r, "tdx_module",
					             "SEAM attributes do not match the TCB info's tdxModule");
		}
		step(r->v, "tdx_module", ATTEST_STEP_PASS,
		     "TDX module major version 0: no module identity to match");
		return 0;
	}
	snprintf(id, sizeof(id), "TDX_%02X", sel);
	for (i = 0; i < t->n_modules; i++)
		if (strcasecmp(t->modules[i].id, id) == 0)
			break;
	if (i == t->n_modules)
		return failf(r, "tdx_module", "TCB info has no module identity %s for TEE_TCB_SVN[1]=%u", id,
		             sel);
	if (CRYPTO_memcmp(td->mrsignerseam, t->modules[i].mrsigner, 48) != 0)
		return failf(r, "tdx_module", "MRSIGNERSEAM is not the signer of %s", id);
	for (j = 0; j < 8; j++)
		if ((td->seam_attributes[j] & t->modules[i].attributes_mask[j]) !=
		    (t->modules[i].attributes[j] & t->modules[i].attributes_mask[j]))
			return failf(r, "tdx_module", "SEAM attributes do not match %s", id);
	for (j = 0; j < t->modules[i].n_levels; j++)
		if (svn >= t->modules[i].levels[j].isvsvn)
			break;
	if (j == t->modules[i].n_levels)
		return failf(r, "tdx_module", "TDX module %s SVN %u is below every level of its identity", id,
		             svn);
	if (attest__status_merge(&r->final, &t->modules[i].levels[j].sa))
		return failf(r, "tdx_module", "out of memory");
	step(r->v, "tdx_module", ATTEST_STEP_PASS, "TDX module %s SVN %u: %s", id, svn,
	     attest_tcb_status_name(t->modules[i].levels[j].sa.status));
	return 0;
}

static void accepted_list(unsigned mask, char *out, size_t cap)
{
	size_t o = 0;
	unsigned s;

	out[0] = '\0';
	for (s = 0; s < ATTEST_TCB_UNKNOWN; s++)
		if (mask & ATTEST_TCB_BIT(s)) {
			int n = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", attest_tcb_status_name(s));

			if (n < 0 || (size_t)n >= cap - o)
				break;
			o += (size_t)n;
		}
}

static int step_tcb_status(struct run *r)
{
	struct attest_verdict *v = r->v;
	unsigned mask = r->pol->accept_tcb ? r->pol->accept_tcb : ATTEST_TCB_DEFAULT_ACCEPT;
	char acc[200];
	size_t i;

	v->status = r->final.status;
	v->have_status = 1;
	v->advisory_ids = calloc(r->final.n_adv + 1, sizeof(char *));
	if (v->advisory_ids == NULL)
		return failf(r, "tcb_status", "out of memory");
	for (i = 0; i < r->final.n_adv; i++) {
		v->advisory_ids[i] = strdup(r->final.adv[i]);
		if (v->advisory_ids[i] == NULL)
			return failf(r, "tcb_status", "out of memory");
		v->n_advisory++;
	}
	if (r->final.status == ATTEST_TCB_REVOKED)
		return failf(r, "tcb_status", "TCB status is Revoked");
	if (!(mask & ATTEST_TCB_BIT(r->final.status))) {
		accepted_list(mask, acc, sizeof(acc));
		return failf(r, "tcb_status", "TCB status %s is not accepted by policy (accepted: %s)",
		             attest_tcb_status_name(r->final.status), acc);
	}
	step(v, "tcb_status", ATTEST_STEP_PASS, "%s%s", attest_tcb_status_name(r->final.status),
	     r->final.n_adv ? " (see advisory_ids)" : "");
	return 0;
}

static int step_attributes(struct run *r)
{
	static const uint8_t zero48[48] = { 0 };
	const uint8_t *a = r->q->td.td_attributes;

	if (r->q->tee_type != ATTEST_TEE_TDX) {
		if ((r->q->sgx.attributes[0] & 0x02) && !r->pol->allow_debug)
			return failf(r, "td_attributes",
			             "the enclave runs in DEBUG mode (policy allow_debug is off)");
		step(r->v, "td_attributes", ATTEST_STEP_PASS, "enclave is not in debug mode");
		return 0;
	}
	if (a[0] != 0 && !r->pol->allow_debug)
		return failf(r, "td_attributes",
		             "TD attributes TUD byte is 0x%02x: a DEBUG TD (policy allow_debug is off)",
		             a[0]);
	if (!r->pol->allow_reserved) {
		if (a[1] || a[2] || (a[3] & 0x0f) || (a[3] & 0x20) || a[4] || a[5] || a[6] || (a[7] & 0x7f))
			return failf(r, "td_attributes", "reserved TD attribute bits are set");
		if (!(a[3] & 0x10))
			return failf(r, "td_attributes", "SEPT_VE_DISABLE is not set in the TD attributes");
	}
	if (r->q->body_type == ATTEST_BODY_TD15 && CRYPTO_memcmp(r->q->td.mrservicetd, zero48, 48) != 0 &&
	    !r->pol->allow_service_td)
		return failf(
		    r, "td_attributes",
		    "MRSERVICETD is non-zero: a service TD is bound (policy allow_service_td is off)");
	step(r->v, "td_attributes", ATTEST_STEP_PASS, "not debug; SEPT_VE_DISABLE set; no reserved bits%s",
	     r->q->body_type == ATTEST_BODY_TD15 ? "; no service TD" : "");
	return 0;
}

static int step_eventlog(struct run *r)
{
	uint8_t rtmr[4][48];
	int i, partial;

	if (r->in->eventlog == NULL) {
		step(r->v, "event_log", ATTEST_STEP_SKIP, "no event log given");
		step(r->v, "rtmr_replay", ATTEST_STEP_SKIP, "no event log given");
		return 0;
	}
	if (r->q->tee_type != ATTEST_TEE_TDX)
		return failf(r, "event_log", "an event log was given for an SGX quote");
	if (attest_eventlog_check_digests(r->in->eventlog, &r->e))
		return fail(r, "event_log");
	step(r->v, "event_log", ATTEST_STEP_PASS, "%zu events; every runtime event digest recomputed",
	     r->in->eventlog->n);
	if (attest_eventlog_replay(r->in->eventlog, rtmr, &r->e))
		return fail(r, "rtmr_replay");
	/* dstack's stripped attestation keeps only RTMR0's ACPI events and RTMR3's runtime events.
	 * Such a log (no RTMR1 or RTMR2 event at all) can only vouch for RTMR3; RTMR0-2 then stand
	 * as quoted (policy allow-lists still apply to them), and the identity comes from RTMR3. */
	for (i = 0; i < (int)r->in->eventlog->n; i++)
		if (r->in->eventlog->events[i].imr == 1 || r->in->eventlog->events[i].imr == 2)
			break;
	partial = i == (int)r->in->eventlog->n;
	for (i = partial ? 3 : 0; i < 4; i++)
		if (CRYPTO_memcmp(rtmr[i], r->q->td.rtmr[i], 48) != 0)
			return failf(r, "rtmr_replay",
			             "replaying the event log does not give the quote's RTMR%d", i);
	if (partial)
		step(r->v, "rtmr_replay", ATTEST_STEP_PASS,
		     "partial log (no RTMR1/RTMR2 events, dstack's stripped form): RTMR3 replayed; RTMR0-2 "
		     "stand as quoted");
	else
		step(r->v, "rtmr_replay", ATTEST_STEP_PASS,
		     "RTMR0-3 replayed from the event log equal the quote's");
	return 0;
}

static int hexeq(const char *a, const char *b)
{
	return a && b && strlen(a) == strlen(b) && strcasecmp(a, b) == 0;
}

static int in_list(const char *const *list, const char *hx)
{
	for (; list && *list; list++)
		if (hexeq(*list, hx))
			return 1;
	return 0;
}

static int step_identity(struct run *r)
{
	const struct attest_policy *p = r->pol;
	struct attest_dstack_identity *id = &r->v->identity;

	if (r->in->eventlog == NULL) {
		if (p->expected_app_id || p->expected_compose_hash || p->expected_instance_id)
			return failf(r, "identity",
			             "the policy expects a dstack identity but no event log was given");
		step(r->v, "identity", ATTEST_STEP_SKIP, "no event log given");
		return 0;
	}
	if (attest_dstack_identity_get(r->in->eventlog, id, &r->e))
		return fail(r, "identity");
	r->v->have_identity = 1;
	if (p->expected_app_id && !hexeq(p->expected_app_id, id->app_id))
		return failf(r, "identity", "app id '%s' is not the expected '%.64s'", id->app_id,
		             p->expected_app_id);
	if (p->expected_instance_id && !hexeq(p->expected_instance_id, id->instance_id))
		return failf(r, "identity", "instance id '%s' is not the expected '%.64s'", id->instance_id,
		             p->expected_instance_id);
	if (p->expected_compose_hash && !hexeq(p->expected_compose_hash, id->compose_hash))
		return failf(r, "identity", "compose hash '%s' is not the expected '%.64s'", id->compose_hash,
		             p->expected_compose_hash);
	step(r->v, "identity", ATTEST_STEP_PASS, "app id %s%s", id->app_id[0] ? id->app_id : "(none)",
	     p->expected_app_id ? " (as expected)" : "");
	return 0;
}

static int step_app_compose(struct run *r)
{
	char h[65];

	if (r->in->app_compose == NULL) {
		step(r->v, "app_compose", ATTEST_STEP_SKIP, "no app-compose given");
		return 0;
	}
	if (!r->v->have_identity)
		return failf(r, "app_compose", "an app-compose was given but no event log to bind it");
	attest_compose_hash(r->in->app_compose, r->in->app_compose_len, h);
	if (!hexeq(h, r->v->identity.compose_hash))
		return failf(r, "app_compose",
		             "SHA-256 of the app-compose (%s) is not the compose-hash event (%s)", h,
		             r->v->identity.compose_hash[0] ? r->v->identity.compose_hash : "absent");
	step(r->v, "app_compose", ATTEST_STEP_PASS, "compose-hash event = SHA-256(app-compose) = %s", h);
	return 0;
}

static int step_report_data(struct run *r)
{
	const uint8_t *rd = r->q->tee_type == ATTEST_TEE_TDX ? r->q->td.report_data : r->q->sgx.report_data;
	uint8_t want[64];
	int did = 0;

	if (r->pol->expected_report_data) {
		if (CRYPTO_memcmp(rd, r->pol->expected_report_data, 64) != 0)
			return failf(r, "report_data",
			             "REPORTDATA is not the expected value (replayed or relayed quote?)");
		did = 1;
	}
	if (r->in->app_cert_pem) {
		if (attest_ratls_report_data(r->in->app_cert_pem, r->in->app_cert_len, want, &r->e))
			return fail(r, "report_data");
		if (CRYPTO_memcmp(rd, want, 64) != 0)
			return failf(r, "report_data",
			             "REPORTDATA is not SHA-512(\"ratls-cert:\" || app certificate SPKI)");
		did = 2 | did;
	}
	if (!did) {
		step(r->v, "report_data", ATTEST_STEP_SKIP,
		     "no expected REPORTDATA and no app certificate given");
		return 0;
	}
	step(r->v, "report_data", ATTEST_STEP_PASS, "%s%s%s",
	     did & 1 ? "REPORTDATA equals the expected value" : "", did == 3 ? "; " : "",
	     did & 2 ? "REPORTDATA binds the RA-TLS app certificate key" : "");
	return 0;
}

static int step_measurements(struct run *r)
{
	const struct attest_policy *p = r->pol;
	const struct attest_td_report *td = &r->q->td;
	const char *const *lists[4] = { p->rtmr0, p->rtmr1, p->rtmr2, NULL };
	char hx[97];
	int i, any = 0;

	if (p->mrtd && p->mrtd[0]) {
		hex(td->mrtd, 48, hx);
		if (!in_list(p->mrtd, hx))
			return failf(r, "measurements", "MRTD %.32s... is not in the policy's allow-list",
			             hx);
		any = 1;
	}
	for (i = 0; i < 3; i++)
		if (lists[i] && lists[i][0]) {
			hex(td->rtmr[i], 48, hx);
			if (!in_list(lists[i], hx))
				return failf(r, "measurements",
				             "RTMR%d %.32s... is not in the policy's allow-list", i, hx);
			any = 1;
		}
	if (p->os_image_hash && p->os_image_hash[0]) {
		if (!in_list(p->os_image_hash, r->v->identity.os_image_hash))
			return failf(
			    r, "measurements", "os-image-hash '%s' is not in the policy's allow-list",
			    r->v->identity.os_image_hash[0] ? r->v->identity.os_image_hash : "absent");
		any = 1;
	}
	if (p->compose_hash && p->compose_hash[0]) {
		if (!in_list(p->compose_hash, r->v->identity.compose_hash))
			return failf(r, "measurements", "compose hash '%s' is not in the policy's allow-list",
			             r->v->identity.compose_hash[0] ? r->v->identity.compose_hash : "absent");
		any = 1;
	}
	if (!any) {
		step(r->v, "measurements", ATTEST_STEP_SKIP, "no allow-lists in the policy");
		return 0;
	}
	step(r->v, "measurements", ATTEST_STEP_PASS, "every allow-list in the policy holds");
	return 0;
}

static int run_steps(struct run *r)
{
	const struct attest_collateral *c = r->in->collateral;
	const char *chain;

	if (attest_quote_parse(r->in->quote, r->in->quote_len, &r->q, &r->e))
		return fail(r, "parse");
	if (c == NULL && r->in->trust == NULL)
		return failf(r, "parse", "no collateral given");
	step(r->v, "parse", ATTEST_STEP_PASS, "%s quote v%u, %s body%s",
	     r->q->tee_type == ATTEST_TEE_TDX ? "TDX" : "SGX", r->q->version,
	     r->q->body_type == ATTEST_BODY_SGX    ? "SGX enclave"
	     : r->q->body_type == ATTEST_BODY_TD10 ? "TD 1.0"
	                                           : "TD 1.5",
	     r->q->trailing ? " (trailing padding ignored)" : "");
	r->v->quote = r->q;
	chain = c->pck_certificate_chain ? c->pck_certificate_chain : r->q->pck_chain_pem;
	if (attest__pem_chain(chain, strlen(chain), &r->pck_chain, &r->e)) {
		tdxr_err_prefix(&r->e, "PCK chain");
		return fail(r, "root");
	}
	if (r->in->trust) {
		r->t = r->in->trust;
	} else {
		if (attest_trust_new(c, r->in->root_der, r->in->root_der_len, r->in->now, &r->own_trust,
		                     &r->e))
			return failf(r, "crl", "%s", r->e.msg);
		r->t = r->own_trust;
	}
	if (step_root(r) || step_collateral(r) || step_pck_chain(r) || step_qe_report(r) ||
	    step_qe_match(r) || step_quote_signature(r) || step_pck_extension(r) || step_tcb_level(r))
		return TDXR_EATTEST;
	if (attest__status_copy(&r->final, &r->platform) || attest__status_merge(&r->final, &r->qe_status))
		return failf(r, "tcb_status", "out of memory");
	if (step_tdx_module(r) || step_tcb_status(r) || step_attributes(r) || step_eventlog(r) ||
	    step_identity(r) || step_app_compose(r) || step_report_data(r) || step_measurements(r))
		return TDXR_EATTEST;
	return 0;
}

int attest_verify(const struct attest_input *in, const struct attest_policy *policy,
                  struct attest_verdict **out, struct tdxr_err *err)
{
	struct attest_policy defpol;
	struct attest_verdict *v;
	struct run r;
	size_t i, j;

	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (v == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (policy == NULL) {
		attest_policy_init(&defpol);
		policy = &defpol;
	}
	memset(&r, 0, sizeof(r));
	r.in = in;
	r.pol = policy;
	r.v = v;
	v->status = ATTEST_TCB_UNKNOWN;
	v->now = in->now;
	v->ok = run_steps(&r) == 0;
	if (r.q && v->quote == NULL)
		attest_quote_free(r.q);
	/* Report every step that was not reached. */
	for (i = 0; i < N_STEPS; i++) {
		for (j = 0; j < v->n_steps; j++)
			if (strcmp(v->steps[j].name, step_order[i]) == 0)
				break;
		if (j == v->n_steps)
			step(v, step_order[i], ATTEST_STEP_SKIP, "not reached: an earlier step failed");
	}
	sk_X509_pop_free(r.pck_chain, X509_free);
	attest_trust_free(r.own_trust);
	attest__status_dispose(&r.platform);
	attest__status_dispose(&r.qe_status);
	attest__status_dispose(&r.final);
	ERR_clear_error();
	*out = v;
	return 0;
}

void attest_verdict_free(struct attest_verdict *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n_advisory; i++)
		free(v->advisory_ids[i]);
	free(v->advisory_ids);
	attest_quote_free(v->quote);
	free(v);
}
