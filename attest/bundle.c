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
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BUNDLE_FORMAT "tdx-runner/attestation-bundle"
#define BUNDLE_VERSION 1

json_t *attest__verdict_json(const struct attest_verdict *v);

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

int attest_bundle_verify(const uint8_t *text, size_t len, const struct attest_policy *policy,
                         int64_t now_override, struct attest_verdict **out, struct tdxr_err *err)
{
	struct attest_policy pol;
	struct attest_input in;
	struct owned ow;
	json_error_t jerr;
	json_t *root = NULL, *v, *pj;
	char *sub = NULL;
	size_t i;
	int rc;

	*out = NULL;
	memset(&ow, 0, sizeof(ow));
	memset(&in, 0, sizeof(in));
	if (policy)
		pol = *policy;
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
	in.now = now_override > 0 ? now_override : (int64_t)json_integer_value(v);
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
	rc = attest_verify(&in, &pol, out, err);
out:
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
