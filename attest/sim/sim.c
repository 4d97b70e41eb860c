/*
 * sim.c - the one-call simulator: PKI + signed collateral + event log + a quote
 * whose RTMR0-3 are the event log's replay, all returned as bytes the verifier
 * takes (quote binary, collateral JSON, event log JSON, root DER).
 *
 * Callers that issue many quotes from one PKI (the local executor's guest
 * agent) use sim_pki_new / sim_collateral_make once and sim_quote_make per
 * request instead. Nothing here is trusted: see sim.h.
 */
#include "attest/sim/sim.h"

#include <stdlib.h>
#include <string.h>

void sim_opts_init(struct sim_opts *o, int64_t now)
{
	memset(o, 0, sizeof(*o));
	sim_pki_opts_init(&o->pki, now);
	sim_collateral_opts_init(&o->collateral, now);
	sim_quote_opts_init(&o->quote);
	sim_eventlog_opts_init(&o->eventlog);
}

void sim_output_free(struct sim_output *o)
{
	if (o == NULL)
		return;
	free(o->quote);
	free(o->collateral_json);
	free(o->eventlog_json);
	free(o->app_compose);
	free(o->root_der);
	free(o);
}

int sim_generate(const struct sim_opts *o, struct sim_output **out, struct tdxr_err *err)
{
	struct sim_pki *pki = NULL;
	struct sim_collateral *col = NULL;
	struct sim_output *res = NULL;
	struct sim_quote_opts q;
	const char *compose = o->eventlog.app_compose ? o->eventlog.app_compose : sim_default_app_compose();
	size_t compose_len = o->eventlog.app_compose && o->eventlog.app_compose_len
	                         ? o->eventlog.app_compose_len
	                         : strlen(compose);
	const uint8_t *root;
	size_t root_len;
	int rc;

	*out = NULL;
	if ((res = calloc(1, sizeof(*res))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = sim_pki_new(&o->pki, &pki, err)) ||
	    (rc = sim_collateral_make(pki, &o->collateral, &col, err)) ||
	    (rc = sim_eventlog_make(&o->eventlog, &res->eventlog_json, res->rtmr, err)))
		goto out;
	q = o->quote;
	if (!o->keep_quote_rtmrs)
		memcpy(q.td.rtmr, res->rtmr, sizeof(q.td.rtmr));
	if ((rc = sim_quote_make(pki, &q, &res->quote, &res->quote_len, err)))
		goto out;
	root = sim_pki_cert_der(pki, SIM_CERT_ROOT, &root_len);
	res->root_der = malloc(root_len);
	res->app_compose = malloc(compose_len + 1);
	if (res->root_der == NULL || res->app_compose == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(res->root_der, root, root_len);
	res->root_der_len = root_len;
	memcpy(res->app_compose, compose, compose_len);
	res->app_compose[compose_len] = '\0';
	res->collateral_json = col->json;
	col->json = NULL;
	*out = res;
	res = NULL;
out:
	sim_output_free(res);
	sim_collateral_free(col);
	sim_pki_free(pki);
	return rc;
}

int sim_generate_default(int64_t now, const uint8_t *report_data, struct sim_output **out,
                         struct tdxr_err *err)
{
	struct sim_opts o;

	sim_opts_init(&o, now);
	if (report_data)
		memcpy(o.quote.td.report_data, report_data, 64);
	return sim_generate(&o, out, err);
}
