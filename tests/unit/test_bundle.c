/*
 * test_bundle.c - the attestation bundle and the verifier's policy switches,
 * on evidence from attest/sim: a bundle re-verifies to the same verdict; a
 * bundle cannot relax the policy it is checked under; tampering with any part
 * is caught; each policy switch admits exactly what it names.
 */
#include "testutil.h"

#include "attest/sim/sim.h"

#include <jansson.h>

#define NOW 1751623200

struct ev {
	struct sim_output *so;
	struct attest_collateral *coll;
	struct attest_eventlog *log;
	struct attest_input in;
	struct attest_policy pol;
	uint8_t rd[64];
};

static void ev_make(struct ev *e, const struct sim_opts *o)
{
	struct tdxr_err err;

	memset(e, 0, sizeof(*e));
	if (sim_generate(o, &e->so, &err))
		fail_msg("sim: %s", err.msg);
	assert_int_equal(attest_collateral_parse((const uint8_t *)e->so->collateral_json,
	                                         strlen(e->so->collateral_json), &e->coll, &err),
	                 0);
	assert_int_equal(attest_eventlog_parse_json((const uint8_t *)e->so->eventlog_json,
	                                            strlen(e->so->eventlog_json), &e->log, &err),
	                 0);
	e->in.quote = e->so->quote;
	e->in.quote_len = e->so->quote_len;
	e->in.collateral = e->coll;
	e->in.eventlog = e->log;
	e->in.app_compose = e->so->app_compose;
	e->in.app_compose_len = strlen(e->so->app_compose);
	e->in.root_der = e->so->root_der;
	e->in.root_der_len = e->so->root_der_len;
	e->in.root_simulated = 1;
	e->in.now = NOW;
	attest_policy_init(&e->pol);
	e->pol.allow_simulated = 1;
}

static void ev_default(struct ev *e)
{
	struct sim_opts o;

	sim_opts_init(&o, NOW);
	memset(o.quote.td.report_data, 0x5a, 64);
	ev_make(e, &o);
}

static void ev_free(struct ev *e)
{
	attest_collateral_free(e->coll);
	attest_eventlog_free(e->log);
	sim_output_free(e->so);
}

static struct attest_verdict *verify(const struct attest_input *in, const struct attest_policy *pol)
{
	struct attest_verdict *v = NULL;

	assert_int_equal(attest_verify(in, pol, &v, NULL), 0);
	return v;
}

static void expect(const struct attest_input *in, const struct attest_policy *pol, const char *prefix)
{
	struct attest_verdict *v = verify(in, pol);

	if (prefix == NULL && !v->ok)
		fail_msg("expected a pass, got: %s", v->error);
	if (prefix && (v->ok || strncmp(v->error, prefix, strlen(prefix)) != 0))
		fail_msg("expected '%s...', got ok=%d '%s'", prefix, v->ok, v->error);
	attest_verdict_free(v);
}

static char *bundle_of(struct ev *e)
{
	struct attest_verdict *v = verify(&e->in, &e->pol);
	struct attest_bundle_meta meta = { "local", "lease-1", "job-7", "00ff" };
	char *b = NULL;

	assert_true(v->ok);
	assert_int_equal(attest_bundle_write(&e->in, &e->pol, v, &meta, &b, NULL), 0);
	attest_verdict_free(v);
	return b;
}

static void bundle_reverifies_only_with_simulation_allowed_by_the_caller(void **state)
{
	struct ev e;
	struct attest_policy caller;
	struct attest_verdict *v = NULL;
	char *b;

	ev_default(&e);
	b = bundle_of(&e);
	assert_non_null(strstr(b, "\"allow_simulated\": true")); /* recorded, but not trusted */
	/* A stranger's default policy refuses the simulated root recorded in the bundle. */
	assert_int_equal(attest_bundle_verify((const uint8_t *)b, strlen(b), NULL, 0, &v, NULL), 0);
	assert_false(v->ok);
	assert_true(v->simulated);
	assert_non_null(strstr(v->error, "root:"));
	attest_verdict_free(v);
	attest_policy_init(&caller);
	caller.allow_simulated = 1;
	assert_int_equal(attest_bundle_verify((const uint8_t *)b, strlen(b), &caller, 0, &v, NULL), 0);
	assert_true(v->ok);
	assert_true(v->have_identity);
	assert_string_equal(v->identity.compose_hash, v->identity.compose_hash);
	attest_verdict_free(v);
	/* Long after the collateral expired, at an explicit now, it no longer verifies. */
	assert_int_equal(
	    attest_bundle_verify((const uint8_t *)b, strlen(b), &caller, NOW + 90 * 86400, &v, NULL), 0);
	assert_false(v->ok);
	attest_verdict_free(v);
	free(b);
	ev_free(&e);
}

static void bundle_expectations_narrow_the_policy(void **state)
{
	struct ev e;
	struct attest_policy caller;
	struct attest_verdict *v = NULL;
	json_t *j, *pol;
	char *b, *b2;

	ev_default(&e);
	e.pol.expected_app_id = "0000000000000000000000000000000000000000";
	{
		struct attest_verdict *bad = verify(&e.in, &e.pol);
		struct attest_bundle_meta meta = { 0 };

		assert_false(bad->ok);
		assert_int_equal(attest_bundle_write(&e.in, &e.pol, bad, &meta, &b, NULL), 0);
		attest_verdict_free(bad);
	}
	attest_policy_init(&caller);
	caller.allow_simulated = 1;
	assert_int_equal(attest_bundle_verify((const uint8_t *)b, strlen(b), &caller, 0, &v, NULL), 0);
	assert_false(v->ok);
	assert_non_null(strstr(v->error, "identity: app id"));
	attest_verdict_free(v);
	/* Someone edits the recorded policy to relax it: allow_debug etc. are ignored, but removing
	 * the expectation is possible - which is why a verifier pins what it expects itself. */
	j = json_loads(b, 0, NULL);
	pol = json_object_get(j, "policy");
	json_object_set_new(pol, "expected_app_id", json_null());
	json_object_set_new(pol, "accept_tcb", json_pack("[s]", "Revoked"));
	b2 = json_dumps(j, 0);
	caller.expected_app_id = "0000000000000000000000000000000000000000";
	assert_int_equal(attest_bundle_verify((const uint8_t *)b2, strlen(b2), &caller, 0, &v, NULL), 0);
	assert_false(v->ok);
	attest_verdict_free(v);
	json_decref(j);
	free(b);
	free(b2);
	ev_free(&e);
}

static void tampered_bundles_fail_naming_the_step(void **state)
{
	static const char *const fields[] = { "quote", "event_log", "app_compose", "collateral", "root" };
	struct ev e;
	struct attest_policy caller;
	size_t i;
	char *b;

	ev_default(&e);
	b = bundle_of(&e);
	attest_policy_init(&caller);
	caller.allow_simulated = 1;
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *j = json_loads(b, 0, NULL), *f = json_object_get(j, fields[i]);
		struct attest_verdict *v = NULL;
		char *t;
		int rc;

		if (json_is_string(f)) {
			char *s = strdup(json_string_value(f));

			s[strlen(s) / 2] = s[strlen(s) / 2] == '0' ? '1' : '0';
			json_object_set_new(j, fields[i], json_string(s));
			free(s);
		} else if (json_is_array(f)) {
			json_t *last = json_array_get(f, json_array_size(f) - 1);

			json_object_set_new(last, "event_payload", json_string("00"));
		} else if (json_is_object(f) && strcmp(fields[i], "collateral") == 0) {
			json_object_set_new(
			    f, "tcb_info_signature",
			    json_string("00000000000000000000000000000000000000000000000000000000000000000000"
			                "000000000000000000000000000000000000000000000000000000000000"));
		} else if (json_is_object(f)) { /* root: someone else's root */
			const uint8_t *d;
			size_t n;
			struct sim_pki *other = NULL;
			struct sim_pki_opts po;
			char *h;

			sim_pki_opts_init(&po, NOW);
			assert_int_equal(sim_pki_new(&po, &other, NULL), 0);
			d = sim_pki_cert_der(other, SIM_CERT_ROOT, &n);
			h = tdxr_hex_strdup(d, n);
			json_object_set_new(f, "der", json_string(h));
			free(h);
			sim_pki_free(other);
		}
		t = json_dumps(j, 0);
		rc = attest_bundle_verify((const uint8_t *)t, strlen(t), &caller, 0, &v, NULL);
		if (rc == 0) {
			if (v->ok)
				fail_msg("tampered %s still verifies", fields[i]);
			assert_true(tu_error_names_step(v));
			print_message("tampered %-12s -> %s\n", fields[i], v->error);
		}
		attest_verdict_free(v);
		free(t);
		json_decref(j);
	}
	free(b);
	ev_free(&e);
}

static void malformed_bundles_are_errors_not_verdicts(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"format\":\"x\"}",
		"{\"format\":\"tdx-runner/attestation-bundle\",\"version\":2}",
		"{\"format\":\"tdx-runner/"
		"attestation-bundle\",\"version\":1,\"verified_at\":5,\"quote\":\"zz\"}",
		"{\"format\":\"tdx-runner/"
		"attestation-bundle\",\"version\":1,\"verified_at\":5,\"quote\":\"00\"}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct attest_verdict *v = NULL;
		struct tdxr_err e;

		assert_int_equal(
		    attest_bundle_verify((const uint8_t *)bad[i], strlen(bad[i]), NULL, 0, &v, &e),
		    TDXR_EINVAL);
		assert_null(v);
		assert_true(strncmp(e.msg, "bundle:", 7) == 0 || strncmp(e.msg, "collateral:", 11) == 0);
	}
}

static void policy_switches_admit_exactly_what_they_name(void **state)
{
	struct sim_opts o;
	struct ev e;

	/* A debug TD. */
	sim_opts_init(&o, NOW);
	o.quote.td.td_attributes[0] = 0x01;
	ev_make(&e, &o);
	expect(&e.in, &e.pol, "td_attributes: TD attributes TUD byte is 0x01");
	e.pol.allow_debug = 1;
	expect(&e.in, &e.pol, NULL);
	ev_free(&e);
	/* A TD 1.5 quote with a service TD bound. */
	sim_opts_init(&o, NOW);
	o.quote.version = 5;
	o.quote.body_type = ATTEST_BODY_TD15;
	memset(o.quote.td.mrservicetd, 0x11, 48);
	ev_make(&e, &o);
	expect(&e.in, &e.pol, "td_attributes: MRSERVICETD is non-zero");
	e.pol.allow_service_td = 1;
	expect(&e.in, &e.pol, NULL);
	e.pol.allow_debug = 1; /* unrelated switches change nothing */
	expect(&e.in, &e.pol, NULL);
	ev_free(&e);
	/* No SEPT_VE_DISABLE. */
	sim_opts_init(&o, NOW);
	o.quote.td.td_attributes[3] = 0;
	ev_make(&e, &o);
	expect(&e.in, &e.pol, "td_attributes: SEPT_VE_DISABLE");
	e.pol.allow_debug = 1;
	expect(&e.in, &e.pol, "td_attributes: SEPT_VE_DISABLE");
	e.pol.allow_reserved = 1;
	expect(&e.in, &e.pol, NULL);
	ev_free(&e);
}

static void identity_and_measurements_are_bound(void **state)
{
	struct ev e;
	struct attest_verdict *v;
	char app[41], mrtd[97], compose[65];
	const char *mrtds[2] = { mrtd, NULL }, *others[2] = { "ab", NULL };

	ev_default(&e);
	v = verify(&e.in, &e.pol);
	assert_true(v->ok);
	memcpy(app, v->identity.app_id, sizeof(app));
	memcpy(compose, v->identity.compose_hash, sizeof(compose));
	tdxr_hex_encode(v->quote->td.mrtd, 48, mrtd);
	attest_verdict_free(v);
	e.pol.expected_app_id = app;
	e.pol.expected_compose_hash = compose;
	e.pol.expected_report_data = e.rd;
	memset(e.rd, 0x5a, 64);
	e.pol.mrtd = mrtds;
	expect(&e.in, &e.pol, NULL);
	e.pol.os_image_hash = others;
	expect(&e.in, &e.pol, "measurements: os-image-hash");
	e.pol.os_image_hash = NULL;
	e.rd[0] ^= 1;
	expect(&e.in, &e.pol, "report_data:");
	e.rd[0] ^= 1;
	e.in.app_compose = "{\"other\":1}";
	e.in.app_compose_len = strlen(e.in.app_compose);
	expect(&e.in, &e.pol, "app_compose:");
	e.in.app_compose = e.so->app_compose;
	e.in.app_compose_len = strlen(e.so->app_compose);
	/* An event log from another box does not replay to this quote. */
	{
		struct sim_eventlog_opts lo;
		struct attest_eventlog *other = NULL;
		const struct attest_eventlog *mine = e.in.eventlog;
		char *json = NULL;
		uint8_t rt[4][48];

		sim_eventlog_opts_init(&lo);
		lo.app_id[0] ^= 0xff;
		assert_int_equal(sim_eventlog_make(&lo, &json, rt, NULL), 0);
		assert_int_equal(
		    attest_eventlog_parse_json((const uint8_t *)json, strlen(json), &other, NULL), 0);
		e.in.eventlog = other;
		expect(&e.in, &e.pol, "rtmr_replay:");
		e.in.eventlog = mine;
		attest_eventlog_free(other);
		free(json);
	}
	ev_free(&e);
}

static void stripped_event_log_vouches_for_rtmr3_only(void **state)
{
	struct ev e;
	struct attest_verdict *v;
	size_t i, o = 0;

	ev_default(&e);
	/* Keep RTMR3's events only, as dstack's stripped attestation does (plus no RTMR1/2). */
	for (i = 0; i < e.log->n; i++) {
		if (e.log->events[i].imr == 3) {
			struct attest_event tmp = e.log->events[o];

			e.log->events[o++] = e.log->events[i];
			e.log->events[i] = tmp;
		}
	}
	for (i = o; i < e.log->n; i++) {
		free(e.log->events[i].event);
		free(e.log->events[i].payload);
	}
	e.log->n = o;
	v = verify(&e.in, &e.pol);
	if (!v->ok)
		fail_msg("stripped log: %s", v->error);
	assert_true(v->have_identity);
	assert_true(strstr(v->steps[16].detail, "partial log") != NULL ||
	            strstr(v->steps[15].detail, "partial log") != NULL);
	attest_verdict_free(v);
	/* ...but RTMR3 itself must still replay. */
	e.log->events[0].digest[0] ^= 1;
	expect(&e.in, &e.pol, "event_log:");
	e.log->events[0].digest[0] ^= 1;
	e.log->events[e.log->n - 1].imr = 0; /* move one runtime event: RTMR3 no longer replays */
	expect(&e.in, &e.pol, "rtmr_replay:");
	ev_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bundle_reverifies_only_with_simulation_allowed_by_the_caller),
		cmocka_unit_test(bundle_expectations_narrow_the_policy),
		cmocka_unit_test(tampered_bundles_fail_naming_the_step),
		cmocka_unit_test(malformed_bundles_are_errors_not_verdicts),
		cmocka_unit_test(policy_switches_admit_exactly_what_they_name),
		cmocka_unit_test(identity_and_measurements_are_bound),
		cmocka_unit_test(stripped_event_log_vouches_for_rtmr3_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
