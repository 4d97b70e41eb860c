/*
 * bundle.c - the attestation bundle: everything needed to re-verify a verdict
 * offline (quote, event log, app-compose, app certificate, collateral, root
 * when simulated, policy, verdict, time) in one versioned JSON document.
 *
 * Trust rule for re-verification: a bundle is untrusted input. Its recorded
 * policy may only NARROW what is accepted (expected app id / compose hash /
 * REPORTDATA, allow-lists); every relaxation (allow_simulated, allow_debug,
 * allow_service_td, allow_reserved, extra TCB statuses) comes from the caller,
 * never from the bundle, so a forged bundle cannot vouch for itself.
 *
 * The optional `end` part (provenance): a statement's exact bytes (base64),
 * a second quote over attest_statement_report_data(statement), its event log,
 * its verdict and time. Re-verification checks it in named steps appended to
 * the verdict - end_quote (same collateral, root and policy as the start),
 * statement_binding, same_cvm, statement, statement_predicate, subject - and a
 * bundle without one verifies exactly as before.
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUNDLE_FORMAT "tdx-runner/attestation-bundle"
#define BUNDLE_VERSION 1

json_t *attest__verdict_json(const struct attest_verdict *v);
int attest__statement_start_fill(const uint8_t *quote, size_t quote_len, const char *nonce_hex,
                                 const struct attest_verdict *start, struct attest_statement_start *out,
                                 struct tdxr_err *err);

static json_t *hexj(const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	json_t *j = h ? json_string(h) : json_null();

	free(h);
	return j;
}

static json_t *strlist(const char *const *l)
{
	json_t *a = json_array();

	for (; a && l && *l; l++)
		json_array_append_new(a, json_string(*l));
	return a;
}

static json_t *policy_json(const struct attest_policy *p)
{
	json_t *o = json_object(), *acc = json_array();
	unsigned mask = p->accept_tcb ? p->accept_tcb : ATTEST_TCB_DEFAULT_ACCEPT, s;

	for (s = 0; s < ATTEST_TCB_UNKNOWN; s++)
		if (mask & ATTEST_TCB_BIT(s))
			json_array_append_new(acc, json_string(attest_tcb_status_name(s)));
	json_object_set_new(o, "accept_tcb", acc);
	json_object_set_new(o, "allow_debug", json_boolean(p->allow_debug));
	json_object_set_new(o, "allow_service_td", json_boolean(p->allow_service_td));
	json_object_set_new(o, "allow_reserved", json_boolean(p->allow_reserved));
	json_object_set_new(o, "allow_simulated", json_boolean(p->allow_simulated));
	json_object_set_new(o, "expected_app_id",
	                    p->expected_app_id ? json_string(p->expected_app_id) : json_null());
	json_object_set_new(o, "expected_compose_hash",
	                    p->expected_compose_hash ? json_string(p->expected_compose_hash) : json_null());
	json_object_set_new(o, "expected_instance_id",
	                    p->expected_instance_id ? json_string(p->expected_instance_id) : json_null());
	json_object_set_new(o, "expected_report_data",
	                    p->expected_report_data ? hexj(p->expected_report_data, 64) : json_null());
	json_object_set_new(o, "mrtd", strlist(p->mrtd));
	json_object_set_new(o, "rtmr0", strlist(p->rtmr0));
	json_object_set_new(o, "rtmr1", strlist(p->rtmr1));
	json_object_set_new(o, "rtmr2", strlist(p->rtmr2));
	json_object_set_new(o, "os_image_hash", strlist(p->os_image_hash));
	json_object_set_new(o, "compose_hash", strlist(p->compose_hash));
	return o;
}

static json_t *opt_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

int attest_bundle_write(const struct attest_input *in, const struct attest_policy *policy,
                        const struct attest_verdict *verdict, const struct attest_bundle_meta *meta,
                        char **out, struct tdxr_err *err)
{
	struct attest_policy defpol;
	json_t *o = NULL, *j;
	json_error_t jerr;
	char *text = NULL, ts[21];
	int rc = 0;

	*out = NULL;
	if (policy == NULL) {
		attest_policy_init(&defpol);
		policy = &defpol;
	}
	o = json_object();
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_object_set_new(o, "format", json_string(BUNDLE_FORMAT));
	json_object_set_new(o, "version", json_integer(BUNDLE_VERSION));
	tdxr_time_format(in->now, ts);
	json_object_set_new(o, "verified_at", json_integer(in->now));
	json_object_set_new(o, "verified_at_iso", json_string(ts));
	json_object_set_new(o, "quote", hexj(in->quote, in->quote_len));
	if (in->eventlog) {
		if ((rc = attest_eventlog_to_json(in->eventlog, &text, err)))
			goto out;
		j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
		free(text);
		text = NULL;
		if (j == NULL) {
			rc = tdxr_err_set(err, TDXR_ERROR, "bundle: event log serialisation is not JSON");
			goto out;
		}
		json_object_set_new(o, "event_log", j);
	} else {
		json_object_set_new(o, "event_log", json_null());
	}
	json_object_set_new(o, "app_compose",
	                    in->app_compose ? json_stringn(in->app_compose, in->app_compose_len)
	                                    : json_null());
	json_object_set_new(
	    o, "app_cert", in->app_cert_pem ? json_stringn(in->app_cert_pem, in->app_cert_len) : json_null());
	if (in->collateral) {
		if ((rc = attest_collateral_to_json(in->collateral, &text, err)))
			goto out;
		j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
		free(text);
		text = NULL;
		if (j == NULL) {
			rc = tdxr_err_set(err, TDXR_ERROR, "bundle: collateral serialisation is not JSON");
			goto out;
		}
		json_object_set_new(o, "collateral", j);
	}
	if (in->root_der) {
		j = json_object();
		json_object_set_new(j, "simulated", json_boolean(verdict ? verdict->simulated : 1));
		json_object_set_new(j, "der", hexj(in->root_der, in->root_der_len));
		json_object_set_new(o, "root", j);
	} else {
		json_object_set_new(o, "root", json_null());
	}
	json_object_set_new(o, "policy", policy_json(policy));
	j = json_object();
	if (meta) {
		json_object_set_new(j, "executor", opt_str(meta->executor));
		json_object_set_new(j, "lease_id", opt_str(meta->lease_id));
		json_object_set_new(j, "job_id", opt_str(meta->job_id));
		json_object_set_new(j, "nonce", opt_str(meta->nonce_hex));
	}
	json_object_set_new(o, "meta", j);
	if (verdict) {
		j = attest__verdict_json(verdict);
		if (j == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		json_object_set_new(o, "verdict", j);
	}
	*out = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (*out == NULL)
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	json_decref(o);
	return rc;
}

/* ---- re-verification ---- */

struct owned {
	struct attest_collateral *coll;
	struct attest_eventlog *log;
	uint8_t *quote;
	size_t quote_len;
	uint8_t *root;
	size_t root_len;
	char *strs[64];
	size_t nstrs;
	const char **lists[6];
	uint8_t report_data[64];
};

static const char *keep(struct owned *ow, const char *s)
{
	char *d;

	if (ow->nstrs >= sizeof(ow->strs) / sizeof(ow->strs[0]))
		return NULL;
	d = strdup(s);
	if (d)
		ow->strs[ow->nstrs++] = d;
	return d;
}

static int hexfield(json_t *o, const char *k, uint8_t **out, size_t *len, size_t max, struct tdxr_err *err)
{
	json_t *v = json_object_get(o, k);
	size_t n;

	*out = NULL;
	if (!json_is_string(v))
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: '%s' is missing or not a hex string", k);
	n = json_string_length(v);
	if (n == 0 || n / 2 > max)
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: '%s' is empty or too long", k);
	*out = malloc(n / 2 + 1);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (tdxr_hex_decode(json_string_value(v), n, *out, n / 2 + 1, len)) {
		free(*out);
		*out = NULL;
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: '%s' is not hex", k);
	}
	return 0;
}

static int list_from(json_t *pol, const char *k, struct owned *ow, int slot, const char *const **dst,
                     struct tdxr_err *err)
{
	json_t *a = json_object_get(pol, k), *e;
	size_t i;

	if (*dst || a == NULL || json_is_null(a))
		return 0; /* the caller's list wins */
	if (!json_is_array(a) || json_array_size(a) > 32)
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: policy.%s is not a short array", k);
	if (json_array_size(a) == 0)
		return 0;
	ow->lists[slot] = calloc(json_array_size(a) + 1, sizeof(char *));
	if (ow->lists[slot] == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_array_foreach(a, i, e)
	{
		if (!json_is_string(e) || (ow->lists[slot][i] = keep(ow, json_string_value(e))) == NULL)
			return tdxr_err_set(err, TDXR_EINVAL, "bundle: policy.%s[%zu] is not a string", k, i);
	}
	*dst = ow->lists[slot];
	return 0;
}

static int expect_from(json_t *pol, const char *k, struct owned *ow, const char **dst, struct tdxr_err *err)
{
	json_t *v = json_object_get(pol, k);

	if (*dst || v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) > 128 ||
	    (*dst = keep(ow, json_string_value(v))) == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: policy.%s is not a short string", k);
	return 0;
}

/* ---- base64: the statement's exact bytes ---- */

static char *b64_encode(const uint8_t *p, size_t n)
{
	char *o;

	if (n > ATTEST_STATEMENT_MAX)
		return NULL;
	o = malloc(4 * ((n + 2) / 3) + 1);
	if (o)
		EVP_EncodeBlock((unsigned char *)o, p, (int)n);
	return o;
}

/* Strict RFC 4648 base64 with padding: it must re-encode to the very same text. */
static int b64_decode(const char *s, size_t n, uint8_t **out, size_t *len)
{
	size_t pad = 0;
	uint8_t *d;
	char *re;
	int m;

	*out = NULL;
	*len = 0;
	if (n < 4 || n % 4 || n / 4 * 3 > ATTEST_STATEMENT_MAX + 2)
		return -1;
	pad = (size_t)(s[n - 1] == '=') + (size_t)(s[n - 2] == '=');
	d = malloc(n / 4 * 3 + 1);
	if (d == NULL)
		return -1;
	m = EVP_DecodeBlock(d, (const unsigned char *)s, (int)n);
	if (m < 0 || (size_t)m < pad || (size_t)m - pad > ATTEST_STATEMENT_MAX) {
		free(d);
		return -1;
	}
	re = b64_encode(d, (size_t)m - pad);
	if (re == NULL || strlen(re) != n || memcmp(re, s, n) != 0) {
		free(re);
		free(d);
		return -1;
	}
	free(re);
	*out = d;
	*len = (size_t)m - pad;
	return 0;
}

/* ---- steps appended to the verdict ---- */

static void add_step(struct attest_verdict *v, const char *name, enum attest_step_result r, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

static void add_step(struct attest_verdict *v, const char *name, enum attest_step_result r, const char *fmt,
                     ...)
{
	struct attest_step *s;
	va_list ap;

	if (r == ATTEST_STEP_FAIL)
		v->ok = 0;
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

static const char *const end_steps[] = { "end_quote", "statement_binding",   "same_cvm",
	                                 "statement", "statement_predicate", "subject" };
#define N_END_STEPS (sizeof(end_steps) / sizeof(end_steps[0]))

/* Everything the end checks share; freed by end_run's caller. */
struct endrun {
	json_t *root, *endj;
	const struct attest_input *in; /* the start's input: collateral, root, trust, compose */
	const struct attest_policy *pol;
	const struct attest_bundle_verify_opts *o;
	struct attest_verdict *v; /* the combined verdict (the start's, extended) */
	struct attest_bundle_end *end;
	struct attest_eventlog *log; /* the end quote's */
	uint8_t *quote;
	size_t quote_len;
	int64_t verified_at; /* the end part's recorded time */
};

#define FAIL(r, step, ...)                                                                                   \
	do {                                                                                                 \
		add_step((r)->v, step, ATTEST_STEP_FAIL, __VA_ARGS__);                                       \
		return TDXR_EATTEST;                                                                         \
	} while (0)

static int end_quote_step(struct endrun *r, struct tdxr_err *err)
{
	struct attest_input ein;
	struct attest_policy ep;
	struct tdxr_err e;
	json_t *vt, *lg;
	char *sub, ts[21];
	int rc;

	if (!json_is_object(r->endj))
		FAIL(r, "end_quote", "the bundle's 'end' is not an object");
	vt = json_object_get(r->endj, "verified_at");
	if (!json_is_integer(vt) || json_integer_value(vt) <= 0)
		FAIL(r, "end_quote", "end.verified_at is missing");
	r->verified_at = (int64_t)json_integer_value(vt);
	if (hexfield(r->endj, "quote", &r->quote, &r->quote_len, TDXR_CAP_QUOTE, &e))
		FAIL(r, "end_quote", "end.quote is missing or not hex");
	lg = json_object_get(r->endj, "event_log");
	if (!json_is_array(lg))
		FAIL(r, "end_quote", "end.event_log is missing: the end quote's RTMR3 cannot be compared");
	sub = json_dumps(lg, JSON_COMPACT);
	if (sub == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = attest_eventlog_parse_json((const uint8_t *)sub, strlen(sub), &r->log, &e);
	free(sub);
	if (rc)
		FAIL(r, "end_quote", "end.event_log: %s", e.msg);
	ein = *r->in;
	ein.quote = r->quote;
	ein.quote_len = r->quote_len;
	ein.eventlog = r->log;
	ein.app_cert_pem = NULL; /* an RA-TLS certificate binds the start quote only */
	ein.app_cert_len = 0;
	ein.now = r->o->now_override > 0 ? r->o->now_override : r->verified_at;
	ep = *r->pol;
	ep.expected_report_data = NULL; /* the statement binding is its own step */
	if ((rc = attest_verify(&ein, &ep, &r->end->verdict, err)))
		return rc;
	if (!r->end->verdict->ok)
		FAIL(r, "end_quote", "%s", r->end->verdict->error);
	tdxr_time_format(ein.now, ts);
	add_step(r->v, "end_quote", ATTEST_STEP_PASS,
	         "verifies with the start's collateral, root and policy at %s: TCB %s", ts,
	         attest_tcb_status_name(r->end->verdict->status));
	return 0;
}

static int event_same(const struct attest_event *a, const struct attest_event *b)
{
	const char *an = a->event ? a->event : "", *bn = b->event ? b->event : "";

	return a->imr == b->imr && a->event_type == b->event_type &&
	       CRYPTO_memcmp(a->digest, b->digest, 48) == 0 && strcmp(an, bn) == 0 &&
	       a->payload_len == b->payload_len &&
	       (a->payload_len == 0 || memcmp(a->payload, b->payload, a->payload_len) == 0);
}

/* Per RTMR: the start log's events are the end log's, in order; RTMR0-2 gained none,
 * RTMR3 only at the end. *appended = RTMR3 events after the start's. */
static int logs_prefix(struct endrun *r, const struct attest_eventlog *a, const struct attest_eventlog *b,
                       size_t *appended)
{
	uint32_t imr;

	*appended = 0;
	for (imr = 0; imr < 4; imr++) {
		size_t i = 0, j = 0, k = 0;

		for (;; i++, j++, k++) {
			while (i < a->n && a->events[i].imr != imr)
				i++;
			while (j < b->n && b->events[j].imr != imr)
				j++;
			if (i == a->n) {
				for (; j < b->n; j++)
					if (b->events[j].imr == imr) {
						if (imr < 3)
							FAIL(r, "same_cvm",
							     "RTMR%u gained events after the start: only "
							     "RTMR3 "
							     "may grow",
							     imr);
						(*appended)++;
					}
				break;
			}
			if (j == b->n)
				FAIL(r, "same_cvm", "the end event log lacks RTMR%u event %zu of the start's",
				     imr, k);
			if (!event_same(&a->events[i], &b->events[j]))
				FAIL(r, "same_cvm",
				     "RTMR%u event %zu differs between the start and end event logs: the end "
				     "quote's measurements did not grow from the start's",
				     imr, k);
		}
	}
	return 0;
}

static int same_cvm_step(struct endrun *r)
{
	const struct attest_verdict *ev = r->end->verdict;
	const struct attest_quote *a = r->v->quote, *b = ev->quote;
	const struct attest_dstack_identity *ia = &r->v->identity, *ib = &ev->identity;
	size_t appended = 0;
	int rc;

	if (a == NULL || b == NULL || a->tee_type != ATTEST_TEE_TDX || b->tee_type != ATTEST_TEE_TDX)
		FAIL(r, "same_cvm", "both quotes must be TDX quotes");
#define SAME(field, what)                                                                                    \
	if (CRYPTO_memcmp(a->td.field, b->td.field, sizeof(a->td.field)) != 0)                               \
	FAIL(r, "same_cvm", "%s differs between the start and end quotes: not the same TD", what)
	SAME(mrtd, "MRTD");
	SAME(rtmr[0], "RTMR0");
	SAME(rtmr[1], "RTMR1");
	SAME(rtmr[2], "RTMR2");
	SAME(mrconfigid, "MRCONFIGID");
	SAME(mrowner, "MROWNER");
	SAME(mrownerconfig, "MROWNERCONFIG");
	SAME(td_attributes, "TD_ATTRIBUTES");
	SAME(xfam, "XFAM");
	SAME(mrservicetd, "MRSERVICETD");
#undef SAME
	if (r->in->eventlog == NULL || !r->v->have_identity || !ev->have_identity)
		FAIL(r, "same_cvm", "the start part has no event log: the CVM's identity cannot be compared");
	if (ia->instance_id[0] == '\0')
		FAIL(r, "same_cvm",
		     "the start quote's event log names no instance id: this CVM cannot be told apart from "
		     "another instance of the same app");
	if (strcmp(ia->app_id, ib->app_id) != 0)
		FAIL(r, "same_cvm", "app id differs (start %.40s, end %.40s)", ia->app_id, ib->app_id);
	if (strcmp(ia->instance_id, ib->instance_id) != 0)
		FAIL(r, "same_cvm", "instance id differs (start %.40s, end %.40s)", ia->instance_id,
		     ib->instance_id);
	if (strcmp(ia->compose_hash, ib->compose_hash) != 0)
		FAIL(r, "same_cvm", "compose hash differs (start %.16s..., end %.16s...)", ia->compose_hash,
		     ib->compose_hash);
	if (strcmp(ia->os_image_hash, ib->os_image_hash) != 0)
		FAIL(r, "same_cvm", "os-image-hash differs");
	if ((rc = logs_prefix(r, r->in->eventlog, r->log, &appended)))
		return rc;
	add_step(r->v, "same_cvm", ATTEST_STEP_PASS,
	         "same MRTD, RTMR0-2, TD configuration, app id, instance id %s; RTMR3 grew by %zu "
	         "appended event(s)",
	         ia->instance_id, appended);
	return 0;
}

static int binding_step(struct endrun *r)
{
	json_t *st = json_object_get(r->endj, "statement");
	struct attest_bundle_end *e = r->end;
	char hx[65];

	if (!json_is_string(st) ||
	    b64_decode(json_string_value(st), json_string_length(st), &e->statement_raw, &e->statement_len))
		FAIL(r, "statement_binding", "end.statement is missing or not base64 (RFC 4648, padded)");
	EVP_Digest(e->statement_raw, e->statement_len, e->statement_sha256, NULL, EVP_sha256(), NULL);
	attest_statement_report_data(e->statement_raw, e->statement_len, e->report_data);
	if (CRYPTO_memcmp(r->end->verdict->quote->td.report_data, e->report_data, 64) != 0)
		FAIL(r, "statement_binding",
		     "the end quote's REPORTDATA is not SHA-512(\"%s\\0\" || statement): the quote does not "
		     "bind this statement",
		     ATTEST_STATEMENT_DOMAIN);
	tdxr_hex_encode(e->statement_sha256, 32, hx);
	add_step(r->v, "statement_binding", ATTEST_STEP_PASS,
	         "the end quote's REPORTDATA binds the statement (sha256 %s)", hx);
	return 0;
}

static int statement_step(struct endrun *r)
{
	struct tdxr_err e;

	if (attest_statement_parse(r->end->statement_raw, r->end->statement_len, &r->end->statement, &e))
		FAIL(r, "statement", "%s",
		     strncmp(e.msg, "statement: ", 11) == 0 ? e.msg + 11
		                                            : e.msg); /* no "statement: statement:" */
	add_step(r->v, "statement", ATTEST_STEP_PASS, "in-toto Statement v1, predicate %s, %zu subject(s)",
	         ATTEST_STATEMENT_PREDICATE_TYPE, r->end->statement->n_subjects);
	return 0;
}

static const char *meta_str(json_t *meta, const char *k)
{
	json_t *v = json_object_get(meta, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int predicate_step(struct endrun *r)
{
	const struct attest_statement *s = r->end->statement;
	const struct attest_statement_start *got = &s->start;
	struct attest_statement_start want;
	json_t *meta = json_object_get(r->root, "meta");
	const char *lease = meta_str(meta, "lease_id"), *ex = meta_str(meta, "executor");
	const char *job = meta_str(meta, "job_id");
	struct tdxr_err e;

	if (lease == NULL || ex == NULL)
		FAIL(r, "statement_predicate", "the bundle's meta names no lease_id or executor");
	if (strcmp(s->lease_id, lease) != 0)
		FAIL(r, "statement_predicate", "lease.id '%.64s' is not the bundle's lease '%.64s'",
		     s->lease_id, lease);
	if (strcmp(s->executor, ex) != 0)
		FAIL(r, "statement_predicate", "lease.executor '%.32s' is not the bundle's '%.32s'",
		     s->executor, ex);
	if (job && *job && (s->ci_job_id == NULL || strcmp(s->ci_job_id, job) != 0))
		FAIL(r, "statement_predicate", "ci.job_id is not the bundle's job '%.64s'", job);
	if (attest__statement_start_fill(r->in->quote, r->in->quote_len, meta_str(meta, "nonce"), r->v, &want,
	                                 &e))
		FAIL(r, "statement_predicate", "%s", e.msg);
	if (strcmp(got->quote_sha256, want.quote_sha256) != 0)
		FAIL(r, "statement_predicate",
		     "start.quote_sha256 is not the SHA-256 of this bundle's start quote: the statement "
		     "belongs to another start");
	if (strcmp(got->nonce, want.nonce) != 0)
		FAIL(r, "statement_predicate", "start.nonce is not the bundle's gate nonce");
	if (strcmp(got->app_id, want.app_id) != 0 || strcmp(got->compose_hash, want.compose_hash) != 0 ||
	    strcmp(got->instance_id, want.instance_id) != 0)
		FAIL(r, "statement_predicate",
		     "start app id / compose hash / instance id are not the start quote's identity");
	if (got->simulated != want.simulated)
		FAIL(r, "statement_predicate", "start.simulated is %s but the start verdict says %s",
		     got->simulated ? "true" : "false", want.simulated ? "simulated" : "not simulated");
	if (s->ended_at > r->verified_at)
		FAIL(r, "statement_predicate", "ended_at is after the end quote was verified");
	add_step(r->v, "statement_predicate", ATTEST_STEP_PASS,
	         "lease %s (%s), start quote sha256 %.16s..., ci %s%s%s", lease, ex, want.quote_sha256,
	         s->ci_system, s->ci_job_id ? " job " : "", s->ci_job_id ? s->ci_job_id : "");
	return 0;
}

static int subject_step(struct endrun *r)
{
	const struct attest_bundle_verify_opts *o = r->o;
	char hx[65];
	size_t i;

	if (o->n_subjects == 0) {
		add_step(r->v, "subject", ATTEST_STEP_SKIP, "no --subject given");
		return 0;
	}
	for (i = 0; i < o->n_subjects; i++)
		if (!attest_statement_has_subject(r->end->statement, o->subjects[i])) {
			tdxr_hex_encode(o->subjects[i], 32, hx);
			FAIL(r, "subject", "%.200s (sha256 %.16s...) is not a subject of the statement",
			     o->subject_names && o->subject_names[i] ? o->subject_names[i] : "a file", hx);
		}
	add_step(r->v, "subject", ATTEST_STEP_PASS, "%zu file(s) are subjects of the bound statement",
	         o->n_subjects);
	return 0;
}

/* Runs the end steps in order; every step not reached is reported as skipped. Returns a
 * negative code only when no verdict could be completed (ENOMEM). */
static int end_run(struct endrun *r, struct tdxr_err *err)
{
	size_t i, j, first = r->v->n_steps;
	int rc = 0;

	if (r->v->ok) {
		rc = end_quote_step(r, err);
		if (!rc)
			rc = binding_step(r);
		if (!rc)
			rc = same_cvm_step(r);
		if (!rc)
			rc = statement_step(r);
		if (!rc)
			rc = predicate_step(r);
		if (!rc)
			rc = subject_step(r);
	}
	if (rc && rc != TDXR_EATTEST)
		return rc;
	for (i = 0; i < N_END_STEPS; i++) {
		for (j = first; j < r->v->n_steps; j++)
			if (strcmp(r->v->steps[j].name, end_steps[i]) == 0)
				break;
		if (j == r->v->n_steps)
			add_step(r->v, end_steps[i], ATTEST_STEP_SKIP, "not reached: an earlier step failed");
	}
	return 0;
}

void attest_bundle_end_free(struct attest_bundle_end *e)
{
	if (e == NULL)
		return;
	attest_verdict_free(e->verdict);
	attest_statement_free(e->statement);
	free(e->statement_raw);
	free(e);
}

/* ---- re-verification ---- */

int attest_bundle_verify_ex(const uint8_t *text, size_t len, const struct attest_bundle_verify_opts *o,
                            struct attest_verdict **out, struct attest_bundle_end **end_out,
                            struct tdxr_err *err)
{
	static const struct attest_bundle_verify_opts none;
	struct attest_policy pol;
	struct attest_input in;
	struct attest_trust *trust = NULL;
	struct endrun er;
	struct owned ow;
	json_error_t jerr;
	json_t *root = NULL, *v, *pj;
	char *sub = NULL;
	size_t i;
	int rc;

	*out = NULL;
	if (end_out)
		*end_out = NULL;
	if (o == NULL)
		o = &none;
	memset(&ow, 0, sizeof(ow));
	memset(&in, 0, sizeof(in));
	memset(&er, 0, sizeof(er));
	if (o->policy)
		pol = *o->policy;
	else
		attest_policy_init(&pol);
	if (len > TDXR_CAP_BUNDLE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "bundle: %zu bytes exceeds the limit", len);
	root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: invalid JSON at line %d column %d: %s",
		                    jerr.line, jerr.column, jerr.text);
	v = json_object_get(root, "format");
	if (!json_is_object(root) || !json_is_string(v) || strcmp(json_string_value(v), BUNDLE_FORMAT) != 0) {
		rc =
		    tdxr_err_set(err, TDXR_EINVAL,
		                 "bundle: not a tdx-runner attestation bundle (format != %s)", BUNDLE_FORMAT);
		goto out;
	}
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) != BUNDLE_VERSION) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: version is not %d", BUNDLE_VERSION);
		goto out;
	}
	v = json_object_get(root, "verified_at");
	if (!json_is_integer(v) || json_integer_value(v) <= 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: 'verified_at' is missing");
		goto out;
	}
	in.now = o->now_override > 0 ? o->now_override : (int64_t)json_integer_value(v);
	if ((rc = hexfield(root, "quote", &ow.quote, &ow.quote_len, TDXR_CAP_QUOTE, err)))
		goto out;
	in.quote = ow.quote;
	in.quote_len = ow.quote_len;
	v = json_object_get(root, "collateral");
	if (!json_is_object(v)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: 'collateral' is missing");
		goto out;
	}
	sub = json_dumps(v, JSON_COMPACT);
	if (sub == NULL || (rc = attest_collateral_parse((const uint8_t *)sub, strlen(sub), &ow.coll, err))) {
		rc = rc ? rc : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	free(sub);
	sub = NULL;
	in.collateral = ow.coll;
	v = json_object_get(root, "event_log");
	if (json_is_array(v)) {
		sub = json_dumps(v, JSON_COMPACT);
		if (sub == NULL ||
		    (rc = attest_eventlog_parse_json((const uint8_t *)sub, strlen(sub), &ow.log, err))) {
			rc = rc ? rc : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		in.eventlog = ow.log;
	} else if (v && !json_is_null(v)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: 'event_log' is not an array");
		goto out;
	}
	v = json_object_get(root, "app_compose");
	if (json_is_string(v)) {
		in.app_compose = json_string_value(v);
		in.app_compose_len = json_string_length(v);
	}
	v = json_object_get(root, "app_cert");
	if (json_is_string(v)) {
		in.app_cert_pem = json_string_value(v);
		in.app_cert_len = json_string_length(v);
	}
	v = json_object_get(root, "root");
	if (json_is_object(v)) {
		if ((rc = hexfield(v, "der", &ow.root, &ow.root_len, 65536, err)))
			goto out;
		in.root_der = ow.root;
		in.root_der_len = ow.root_len;
		in.root_simulated = 1;
	}
	pj = json_object_get(root, "policy");
	if (json_is_object(pj)) {
		if ((rc = expect_from(pj, "expected_app_id", &ow, &pol.expected_app_id, err)) ||
		    (rc = expect_from(pj, "expected_compose_hash", &ow, &pol.expected_compose_hash, err)) ||
		    (rc = expect_from(pj, "expected_instance_id", &ow, &pol.expected_instance_id, err)) ||
		    (rc = list_from(pj, "mrtd", &ow, 0, &pol.mrtd, err)) ||
		    (rc = list_from(pj, "rtmr0", &ow, 1, &pol.rtmr0, err)) ||
		    (rc = list_from(pj, "rtmr1", &ow, 2, &pol.rtmr1, err)) ||
		    (rc = list_from(pj, "rtmr2", &ow, 3, &pol.rtmr2, err)) ||
		    (rc = list_from(pj, "os_image_hash", &ow, 4, &pol.os_image_hash, err)) ||
		    (rc = list_from(pj, "compose_hash", &ow, 5, &pol.compose_hash, err)))
			goto out;
		v = json_object_get(pj, "expected_report_data");
		if (pol.expected_report_data == NULL && json_is_string(v)) {
			if (tdxr_hex_decode_exact(json_string_value(v), ow.report_data, 64)) {
				rc = tdxr_err_set(
				    err, TDXR_EINVAL,
				    "bundle: policy.expected_report_data is not 64 bytes of hex");
				goto out;
			}
			pol.expected_report_data = ow.report_data;
		}
	}
	/* One prepared collateral for both quotes (the verifier checks each quote's time
	 * against the interval in which it holds); without it, each call prepares its own. */
	if (attest_trust_new(ow.coll, in.root_der, in.root_der_len, in.now, &trust, NULL) == 0)
		in.trust = trust;
	if ((rc = attest_verify(&in, &pol, out, err)))
		goto out;
	er.endj = json_object_get(root, "end");
	if (er.endj == NULL || json_is_null(er.endj)) {
		if (o->n_subjects)
			add_step(*out, "subject", (*out)->ok ? ATTEST_STEP_FAIL : ATTEST_STEP_SKIP, "%s",
			         (*out)->ok
			             ? "the bundle has no end part: no statement names any subject (was "
			               "it made with --subject?)"
			             : "not reached: an earlier step failed");
		goto out;
	}
	er.root = root;
	er.in = &in;
	er.pol = &pol;
	er.o = o;
	er.v = *out;
	er.end = calloc(1, sizeof(*er.end));
	if (er.end == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = end_run(&er, err)))
		goto out;
	if (end_out) {
		*end_out = er.end;
		er.end = NULL;
	}
out:
	if (rc) {
		attest_verdict_free(*out);
		*out = NULL;
	}
	attest_bundle_end_free(er.end);
	attest_eventlog_free(er.log);
	free(er.quote);
	attest_trust_free(trust);
	free(sub);
	json_decref(root);
	attest_collateral_free(ow.coll);
	attest_eventlog_free(ow.log);
	free(ow.quote);
	free(ow.root);
	for (i = 0; i < ow.nstrs; i++)
		free(ow.strs[i]);
	for (i = 0; i < 6; i++)
		free(ow.lists[i]);
	return rc;
}

int attest_bundle_verify(const uint8_t *text, size_t len, const struct attest_policy *policy,
                         int64_t now_override, struct attest_verdict **out, struct tdxr_err *err)
{
	struct attest_bundle_verify_opts o;

	memset(&o, 0, sizeof(o));
	o.policy = policy;
	o.now_override = now_override;
	return attest_bundle_verify_ex(text, len, &o, out, NULL, err);
}

/* ---- writing the end part ---- */

int attest_bundle_end_add(const uint8_t *bundle, size_t len, const struct attest_bundle_end_input *in,
                          const struct attest_policy *policy, char **out, struct attest_verdict **verdict,
                          struct tdxr_err *err)
{
	struct attest_bundle_verify_opts o;
	struct attest_bundle_end *end = NULL;
	struct attest_verdict *v = NULL;
	json_error_t jerr;
	json_t *root = NULL, *e = NULL, *j;
	char *text = NULL, *b64 = NULL, ts[21];
	int rc;

	*out = NULL;
	if (verdict)
		*verdict = NULL;
	if (in->statement == NULL || in->statement_len == 0 || in->statement_len > ATTEST_STATEMENT_MAX ||
	    in->quote == NULL || in->quote_len == 0 || in->quote_len > TDXR_CAP_QUOTE ||
	    in->eventlog == NULL || in->now <= 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "bundle end: needs a statement, a quote, its event log and a time");
	if (len > TDXR_CAP_BUNDLE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "bundle: %zu bytes exceeds the limit", len);
	root = json_loadb((const char *)bundle, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: not a JSON object");
		goto out;
	}
	if (json_object_get(root, "end")) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: it already has an end part");
		goto out;
	}
	e = json_object();
	b64 = b64_encode(in->statement, in->statement_len);
	if (e == NULL || b64 == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	tdxr_time_format(in->now, ts);
	json_object_set_new(e, "verified_at", json_integer(in->now));
	json_object_set_new(e, "verified_at_iso", json_string(ts));
	json_object_set_new(e, "statement", json_string(b64));
	json_object_set_new(e, "quote", hexj(in->quote, in->quote_len));
	if ((rc = attest_eventlog_to_json(in->eventlog, &text, err)))
		goto out;
	j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	text = NULL;
	if (j == NULL) {
		rc = tdxr_err_set(err, TDXR_ERROR, "bundle: event log serialisation is not JSON");
		goto out;
	}
	json_object_set_new(e, "event_log", j);
	json_object_set(root, "end", e);
	text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (text == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	/* Judge it exactly as `tdx-runner verify` will, and record the end quote's verdict. */
	memset(&o, 0, sizeof(o));
	o.policy = policy;
	if ((rc = attest_bundle_verify_ex((const uint8_t *)text, strlen(text), &o, &v, &end, err)))
		goto out;
	if (end && end->verdict) {
		j = attest__verdict_json(end->verdict);
		if (j == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		json_object_set_new(e, "verdict", j);
		free(text);
		text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		if (text == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
	}
	*out = text;
	text = NULL;
	if (verdict) {
		*verdict = v;
		v = NULL;
	}
out:
	attest_verdict_free(v);
	attest_bundle_end_free(end);
	free(text);
	free(b64);
	json_decref(e);
	json_decref(root);
	return rc;
}

int attest_bundle_policy_relaxations(const uint8_t *bundle, size_t len, struct attest_policy *pol,
                                     struct tdxr_err *err)
{
	static const char *const flags[] = { "allow_debug", "allow_service_td", "allow_reserved",
		                             "allow_simulated" };
	int *dst[] = { &pol->allow_debug, &pol->allow_service_td, &pol->allow_reserved,
		       &pol->allow_simulated };
	json_error_t jerr;
	json_t *root, *p, *a, *x;
	unsigned mask = 0;
	size_t i;
	int rc = 0;

	if (len > TDXR_CAP_BUNDLE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "bundle: %zu bytes exceeds the limit", len);
	root = json_loadb((const char *)bundle, len, JSON_REJECT_DUPLICATES, &jerr);
	p = json_object_get(root, "policy");
	if (!json_is_object(p)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: no policy recorded");
		goto out;
	}
	a = json_object_get(p, "accept_tcb");
	if (json_is_array(a)) {
		json_array_foreach(a, i, x)
		{
			enum attest_tcb_status st = json_is_string(x)
			                                ? attest_tcb_status_parse(json_string_value(x))
			                                : ATTEST_TCB_UNKNOWN;

			if (st == ATTEST_TCB_UNKNOWN) {
				rc = tdxr_err_set(err, TDXR_EINVAL,
				                  "bundle: policy.accept_tcb[%zu] is unknown", i);
				goto out;
			}
			mask |= ATTEST_TCB_BIT(st);
		}
		if (mask)
			pol->accept_tcb = mask;
	}
	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		x = json_object_get(p, flags[i]);
		if (json_is_boolean(x))
			*dst[i] = json_is_true(x);
	}
out:
	json_decref(root);
	return rc;
}
