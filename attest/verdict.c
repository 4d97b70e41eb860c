/*
 * verdict.c - the verdict as JSON: the machine-readable answer of
 * `tdx-runner verify --json`, of the bundle, and of the job pipeline. Field
 * names are an interface (scripts read them): add, never rename.
 */
#include "attest/attest.h"

#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *hexj(const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	json_t *j = h ? json_string(h) : NULL;

	free(h);
	return j;
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static const char *const results[] = { "pass", "fail", "skip" };

json_t *attest__verdict_json(const struct attest_verdict *v);

json_t *attest__verdict_json(const struct attest_verdict *v)
{
	json_t *o = json_object(), *steps = json_array(), *adv = json_array();
	const struct attest_quote *q = v->quote;
	size_t i;

	if (o == NULL || steps == NULL || adv == NULL) {
		json_decref(o);
		json_decref(steps);
		json_decref(adv);
		return NULL;
	}
	json_object_set_new(o, "ok", json_boolean(v->ok));
	json_object_set_new(o, "simulated", json_boolean(v->simulated));
	json_object_set_new(o, "status",
	                    v->have_status ? json_string(attest_tcb_status_name(v->status)) : json_null());
	for (i = 0; i < v->n_advisory; i++)
		json_array_append_new(adv, json_string(v->advisory_ids[i]));
	json_object_set_new(o, "advisory_ids", adv);
	json_object_set_new(o, "error", str_or_null(v->error));
	for (i = 0; i < v->n_steps; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "name", json_string(v->steps[i].name));
		json_object_set_new(s, "result", json_string(results[v->steps[i].result]));
		json_object_set_new(s, "detail", json_string(v->steps[i].detail));
		json_array_append_new(steps, s);
	}
	json_object_set_new(o, "steps", steps);
	json_object_set_new(o, "now", json_integer(v->now));
	json_object_set_new(o, "fmspc", v->have_fmspc ? hexj(v->fmspc, 6) : json_null());
	if (q) {
		json_object_set_new(o, "quote_version", json_integer(q->version));
		json_object_set_new(o, "tee", json_string(q->tee_type == ATTEST_TEE_TDX ? "TDX" : "SGX"));
	}
	if (q && q->tee_type == ATTEST_TEE_TDX) {
		const struct attest_td_report *td = &q->td;

		json_object_set_new(o, "body",
		                    json_string(q->body_type == ATTEST_BODY_TD15 ? "TD1.5" : "TD1.0"));
		json_object_set_new(o, "mrtd", hexj(td->mrtd, 48));
		json_object_set_new(o, "rtmr0", hexj(td->rtmr[0], 48));
		json_object_set_new(o, "rtmr1", hexj(td->rtmr[1], 48));
		json_object_set_new(o, "rtmr2", hexj(td->rtmr[2], 48));
		json_object_set_new(o, "rtmr3", hexj(td->rtmr[3], 48));
		json_object_set_new(o, "report_data", hexj(td->report_data, 64));
		json_object_set_new(o, "tee_tcb_svn", hexj(td->tee_tcb_svn, 16));
		json_object_set_new(o, "mrseam", hexj(td->mrseam, 48));
		json_object_set_new(o, "mrsignerseam", hexj(td->mrsignerseam, 48));
		json_object_set_new(o, "seam_attributes", hexj(td->seam_attributes, 8));
		json_object_set_new(o, "td_attributes", hexj(td->td_attributes, 8));
		json_object_set_new(o, "xfam", hexj(td->xfam, 8));
		json_object_set_new(o, "mrconfigid", hexj(td->mrconfigid, 48));
		json_object_set_new(o, "mrowner", hexj(td->mrowner, 48));
		json_object_set_new(o, "mrownerconfig", hexj(td->mrownerconfig, 48));
		if (q->body_type == ATTEST_BODY_TD15) {
			json_object_set_new(o, "tee_tcb_svn2", hexj(td->tee_tcb_svn2, 16));
			json_object_set_new(o, "mrservicetd", hexj(td->mrservicetd, 48));
		}
	} else {
		static const char *const nulls[] = {
			"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "tee_tcb_svn"
		};

		for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
			json_object_set_new(o, nulls[i], json_null());
		if (q) {
			json_object_set_new(o, "body", json_string("SGX"));
			json_object_set_new(o, "report_data", hexj(q->sgx.report_data, 64));
			json_object_set_new(o, "mr_enclave", hexj(q->sgx.mr_enclave, 32));
			json_object_set_new(o, "mr_signer", hexj(q->sgx.mr_signer, 32));
			json_object_set_new(o, "isv_prod_id", json_integer(q->sgx.isv_prod_id));
			json_object_set_new(o, "isv_svn", json_integer(q->sgx.isv_svn));
		} else {
			json_object_set_new(o, "report_data", json_null());
		}
	}
	if (v->have_identity) {
		json_object_set_new(o, "app_id", str_or_null(v->identity.app_id));
		json_object_set_new(o, "compose_hash", str_or_null(v->identity.compose_hash));
		json_object_set_new(o, "instance_id", str_or_null(v->identity.instance_id));
		json_object_set_new(o, "os_image_hash", str_or_null(v->identity.os_image_hash));
		json_object_set_new(o, "key_provider", str_or_null(v->identity.key_provider));
	}
	return o;
}

int attest_verdict_to_json(const struct attest_verdict *v, char **out, struct tdxr_err *err)
{
	json_t *o = attest__verdict_json(v);

	*out = NULL;
	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	*out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	return 0;
}
