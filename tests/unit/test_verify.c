/*
 * test_verify.c - the verifier against real Intel-signed vectors from
 * ../shared/testdata/tdx (manifest.json gives each pair's pinned "now" and the
 * oracle's answer), plus policy switches and time windows on real data.
 * The side-by-side comparison with @phala/dcap-qvl itself runs in
 * tests/integration/test_oracle_diff.sh.
 */
#include "testutil.h"

#include <jansson.h>

#define ALL_BUT_REVOKED 0x3fu

static void every_manifest_pair_matches_the_expected_verdict(void **state)
{
	char p[4096];
	json_error_t jerr;
	json_t *m, *list, *it;
	size_t i;

	TU_REQUIRE_SHARED();
	snprintf(p, sizeof(p), "%s/tdx/manifest.json", tu_shared());
	m = json_load_file(p, 0, &jerr);
	assert_non_null(m);
	list = json_object_get(m, "quote_verification");
	assert_true(json_array_size(list) >= 10);
	json_array_foreach(list, i, it)
	{
		struct attest_input in = { 0 };
		struct attest_policy pol;
		struct attest_verdict *v = NULL;
		json_t *exp = json_object_get(it, "expect");
		const char *want = json_string_value(json_object_get(exp, "verdict"));
		char rel[512];
		size_t k;

		snprintf(rel, sizeof(rel), "tdx/%s", json_string_value(json_object_get(it, "quote")));
		in.quote = tu_quote(rel, &in.quote_len);
		snprintf(rel, sizeof(rel), "tdx/%s", json_string_value(json_object_get(it, "collateral")));
		in.collateral = tu_collateral(rel);
		in.now = json_integer_value(json_object_get(it, "now"));
		attest_policy_init(&pol);
		pol.accept_tcb = ALL_BUT_REVOKED; /* like the oracle: judge the chain, report the status */
		assert_int_equal(attest_verify(&in, &pol, &v, NULL), 0);
		print_message("%-45s %-8s %s %s\n", json_string_value(json_object_get(it, "quote")),
		              v->ok ? "verify" : "reject",
		              v->have_status ? attest_tcb_status_name(v->status) : "-", v->error);
		if (strcmp(want, "verify") == 0) {
			json_t *adv = json_object_get(exp, "advisory_ids");

			assert_true(v->ok);
			assert_string_equal(attest_tcb_status_name(v->status),
			                    json_string_value(json_object_get(exp, "tcb_status")));
			assert_int_equal(v->n_advisory, json_array_size(adv));
			for (k = 0; k < v->n_advisory; k++)
				assert_string_equal(v->advisory_ids[k],
				                    json_string_value(json_array_get(adv, k)));
		} else {
			assert_false(v->ok);
			assert_true(tu_error_names_step(v));
		}
		attest_verdict_free(v);
		free((void *)in.quote);
		attest_collateral_free((struct attest_collateral *)in.collateral);
	}
	json_decref(m);
}

struct fixture {
	struct attest_input in;
	struct attest_policy pol;
};

static void load_tdx(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->in.quote = tu_quote("tdx/dcap-qvl/tdx_quote", &f->in.quote_len);
	f->in.collateral = tu_collateral("tdx/dcap-qvl/tdx_quote_collateral.json");
	f->in.now = 1751623200;
	attest_policy_init(&f->pol);
}

static void unload(struct fixture *f)
{
	free((void *)f->in.quote);
	attest_collateral_free((struct attest_collateral *)f->in.collateral);
}

static struct attest_verdict *run(struct fixture *f)
{
	struct attest_verdict *v = NULL;

	assert_int_equal(attest_verify(&f->in, &f->pol, &v, NULL), 0);
	return v;
}

static void expect_fail(struct fixture *f, const char *step, const char *needle)
{
	struct attest_verdict *v = run(f);

	if (v->ok || strncmp(v->error, step, strlen(step)) != 0 || (needle && !strstr(v->error, needle)))
		fail_msg("expected failure at %s (%s), got ok=%d error='%s'", step, needle ? needle : "",
		         v->ok, v->error);
	attest_verdict_free(v);
}

static void real_tdx_quote_verifies_and_reports_fields(void **state)
{
	struct fixture f;
	struct attest_verdict *v;
	char *json = NULL;

	TU_REQUIRE_SHARED();
	load_tdx(&f);
	v = run(&f);
	assert_true(v->ok);
	assert_false(v->simulated);
	assert_int_equal(v->status, ATTEST_TCB_UP_TO_DATE);
	assert_true(v->have_fmspc);
	assert_memory_equal(v->fmspc, "\xb0\xc0\x6f\x00\x00\x00", 6);
	assert_int_equal(attest_verdict_to_json(v, &json, NULL), 0);
	assert_non_null(strstr(json, "\"ok\": true"));
	assert_non_null(strstr(json, "\"fmspc\": \"b0c06f000000\""));
	assert_non_null(strstr(json, "\"rtmr3\": \""));
	free(json);
	attest_verdict_free(v);
	unload(&f);
}

static void collateral_windows_are_enforced(void **state)
{
	struct fixture f;

	TU_REQUIRE_SHARED();
	load_tdx(&f);
	f.in.now = 1751623200 + 40 * 86400; /* past nextUpdate of everything */
	expect_fail(&f, "crl", "expired");
	f.in.now = 1600000000; /* before the PCK leaf and the collateral were issued */
	expect_fail(&f, "crl", "not yet valid");
	unload(&f);
}

static void tcb_policy_rejects_statuses_it_does_not_accept(void **state)
{
	struct fixture f;
	struct attest_verdict *v;

	TU_REQUIRE_SHARED();
	memset(&f, 0, sizeof(f));
	f.in.quote = tu_quote("tdx/go-tdx-guest/ccel/cos-113-tdx-quote.dat", &f.in.quote_len);
	f.in.collateral = tu_collateral("tdx/bundles/dcap-rs_00806f050000_2025-02.json");
	f.in.now = 1740711600;
	attest_policy_init(&f.pol);
	v = run(&f);
	assert_false(v->ok);
	assert_true(v->have_status); /* status still reported */
	assert_int_equal(v->status, ATTEST_TCB_OUT_OF_DATE);
	assert_int_equal(v->n_advisory, 3);
	assert_non_null(strstr(v->error, "tcb_status: TCB status OutOfDate is not accepted by policy"));
	attest_verdict_free(v);
	f.pol.accept_tcb = ATTEST_TCB_DEFAULT_ACCEPT | ATTEST_TCB_BIT(ATTEST_TCB_OUT_OF_DATE);
	v = run(&f);
	assert_true(v->ok);
	attest_verdict_free(v);
	unload(&f);
}

static void wrong_root_and_expectations_fail_closed(void **state)
{
	struct fixture f;
	size_t n = 0;
	uint8_t *root, rd[64];
	static const char *const other_mrtd[] = { "00", NULL };

	TU_REQUIRE_SHARED();
	root = tu_read("tdx/intel-root/Intel_SGX_RootCA.der", &n);
	load_tdx(&f);
	/* The pinned Intel root passed explicitly is still Intel, not simulated. */
	f.in.root_der = root;
	f.in.root_der_len = n;
	{
		struct attest_verdict *v = run(&f);

		assert_true(v->ok);
		assert_false(v->simulated);
		attest_verdict_free(v);
	}
	f.in.root_der = NULL;
	memset(rd, 0xab, sizeof(rd));
	f.pol.expected_report_data = rd;
	expect_fail(&f, "report_data", "replayed");
	f.pol.expected_report_data = NULL;
	f.pol.expected_app_id = "944edab771280ede410e7b9e66fcaee6b2c4a12c";
	expect_fail(&f, "identity", "no event log");
	f.pol.expected_app_id = NULL;
	f.pol.mrtd = other_mrtd;
	expect_fail(&f, "measurements", "MRTD");
	f.pol.mrtd = NULL;
	f.in.app_compose = "{}";
	f.in.app_compose_len = 2;
	expect_fail(&f, "app_compose", "no event log");
	free(root);
	unload(&f);
}

static void sgx_quote_in_tdx_collateral_is_rejected(void **state)
{
	struct fixture f;

	TU_REQUIRE_SHARED();
	load_tdx(&f);
	free((void *)f.in.quote);
	f.in.quote = tu_quote("tdx/dcap-qvl/sgx_quote", &f.in.quote_len);
	expect_fail(&f, "tcb_info", "SGX quote with TDX TCB info");
	unload(&f);
}

static void prepared_trust_gives_the_same_verdicts_and_guards_its_window(void **state)
{
	static const char *const quotes[] = { "tdx/dcap-qvl/tdx_quote", "tdx/dcap-qvl/quote-from-tappd.hex",
		                              "tdx/dcap-qvl/tdx-quote.hex", "tdx/dstack/ra-tls-tdx_quote" };
	struct attest_collateral *c;
	struct attest_trust *t = NULL;
	struct attest_policy pol;
	const char *why = NULL;
	size_t i;
	int round;

	TU_REQUIRE_SHARED();
	c = tu_collateral("tdx/dcap-qvl/tdx_quote_collateral.json");
	assert_int_equal(attest_trust_new(c, NULL, 0, 1751623200, &t, NULL), 0);
	assert_true(attest_trust_ok(t, &why));
	attest_policy_init(&pol);
	for (round = 0; round < 2; round++) { /* the second round hits the certificate cache */
		for (i = 0; i < sizeof(quotes) / sizeof(quotes[0]); i++) {
			struct attest_input in = { 0 };
			struct attest_verdict *a = NULL, *b = NULL;

			in.quote = tu_quote(quotes[i], &in.quote_len);
			in.collateral = c;
			in.now = 1751623200;
			assert_int_equal(attest_verify(&in, &pol, &a, NULL), 0);
			in.trust = t;
			assert_int_equal(attest_verify(&in, &pol, &b, NULL), 0);
			assert_int_equal(a->ok, b->ok);
			assert_string_equal(a->error, b->error);
			assert_int_equal(a->n_steps, b->n_steps);
			attest_verdict_free(b);
			/* Outside every window of the prepared collateral: refused, step named. */
			in.now = 1751623200 + 60 * 86400;
			assert_int_equal(attest_verify(&in, &pol, &b, NULL), 0);
			assert_false(b->ok);
			assert_non_null(strstr(b->error, "crl: the collateral is not valid at now"));
			attest_verdict_free(a);
			attest_verdict_free(b);
			free((void *)in.quote);
		}
		attest_cert_cache_clear();
	}
	attest_trust_free(t);
	/* A trust whose collateral fails reports the failed step through attest_verify. */
	c->tcb_info_sig[5] ^= 1;
	assert_int_equal(attest_trust_new(c, NULL, 0, 1751623200, &t, NULL), 0);
	assert_false(attest_trust_ok(t, &why));
	assert_non_null(strstr(why, "signature"));
	attest_trust_free(t);
	attest_collateral_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_manifest_pair_matches_the_expected_verdict),
		cmocka_unit_test(real_tdx_quote_verifies_and_reports_fields),
		cmocka_unit_test(collateral_windows_are_enforced),
		cmocka_unit_test(tcb_policy_rejects_statuses_it_does_not_accept),
		cmocka_unit_test(wrong_root_and_expectations_fail_closed),
		cmocka_unit_test(sgx_quote_in_tdx_collateral_is_rejected),
		cmocka_unit_test(prepared_trust_gives_the_same_verdicts_and_guards_its_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
