/*
 * test_mutation.c - flips bytes in every region of real quotes, collateral and
 * event logs that verify, and requires every mutant to be rejected with the
 * failed step named. Binary regions are flipped at every byte; long text
 * regions (PEM chains, signed JSON, CRLs) at a stride plus both ends, which
 * keeps the run short under sanitizers while touching every region.
 */
#include "testutil.h"

#include <jansson.h>

struct region {
	const char *name;
	size_t off, len, stride;
};

struct tally {
	size_t tried, rejected;
};

static void verify_accepts(const struct attest_input *in, const struct attest_policy *pol)
{
	struct attest_verdict *v = NULL;

	assert_int_equal(attest_verify(in, pol, &v, NULL), 0);
	if (!v->ok)
		fail_msg("the unmutated input does not verify: %s", v->error);
	attest_verdict_free(v);
}

static int verify_rejects(const struct attest_input *in, const struct attest_policy *pol, const char *what,
                          size_t pos)
{
	struct attest_verdict *v = NULL;
	int ok;

	assert_int_equal(attest_verify(in, pol, &v, NULL), 0);
	ok = !v->ok && tu_error_names_step(v);
	if (!ok)
		print_message("NOT REJECTED: %s byte %zu (ok=%d error='%s')\n", what, pos, v->ok, v->error);
	attest_verdict_free(v);
	return ok;
}

static void flip_regions(uint8_t *buf, const struct region *r, size_t nr, const struct attest_input *in,
                         const struct attest_policy *pol, struct tally *t)
{
	size_t i, pos;

	const char *env = getenv("TDXR_MUTATION_STRIDE");
	size_t scale = env ? strtoul(env, NULL, 10) : 1;

	for (i = 0; i < nr; i++) {
		size_t stride = r[i].stride ? r[i].stride : 1;

		if (scale > stride) /* valgrind runs sample fewer bytes per region */
			stride = scale;

		for (pos = r[i].off; pos < r[i].off + r[i].len; pos += stride) {
			buf[pos] ^= 0x01;
			t->tried++;
			t->rejected += (size_t)verify_rejects(in, pol, r[i].name, pos);
			buf[pos] ^= 0x01;
		}
		if (r[i].len > 1 && stride > 1) { /* the last byte too */
			pos = r[i].off + r[i].len - 1;
			buf[pos] ^= 0x80;
			t->tried++;
			t->rejected += (size_t)verify_rejects(in, pol, r[i].name, pos);
			buf[pos] ^= 0x80;
		}
	}
}

/* Regions of a v4/v5 TDX quote, from its parsed lengths. */
static size_t quote_regions(const struct attest_quote *q, struct region *r)
{
	size_t n = 0, off = 0, body = q->signed_len - 48 - (q->version == 5 ? 6 : 0);
	size_t cd = q->signed_len + 4 + 128;

	r[n++] = (struct region){ "header", 0, 48, 1 };
	off = 48;
	if (q->version == 5) {
		r[n++] = (struct region){ "body descriptor", 48, 6, 1 };
		off += 6;
	}
	r[n++] = (struct region){ "TD report body", off, body, 1 };
	r[n++] = (struct region){ "signature data length", q->signed_len, 4, 1 };
	r[n++] = (struct region){ "quote signature", q->signed_len + 4, 64, 1 };
	r[n++] = (struct region){ "attestation key", q->signed_len + 68, 64, 1 };
	r[n++] = (struct region){ "certification data header", cd, 6, 1 };
	r[n++] = (struct region){ "QE report", cd + 6, 384, 1 };
	r[n++] = (struct region){ "QE report signature", cd + 390, 64, 1 };
	r[n++] = (struct region){ "QE auth data", cd + 454, 2 + q->qe_auth_len, 1 };
	r[n++] = (struct region){ "PCK certification data header", cd + 456 + q->qe_auth_len, 6, 1 };
	r[n++] = (struct region){ "PCK chain PEM", cd + 462 + q->qe_auth_len,
		                  q->raw_len - (cd + 462 + q->qe_auth_len), 3 };
	return n;
}

static void mutate_quote(const char *quote_rel, const char *coll_rel, int64_t now)
{
	struct attest_input in = { 0 };
	struct attest_policy pol;
	struct attest_quote *q = NULL;
	struct region r[16];
	struct tally t = { 0 };
	uint8_t *buf;
	size_t nr;

	buf = tu_quote(quote_rel, &in.quote_len);
	assert_int_equal(attest_quote_parse(buf, in.quote_len, &q, NULL), 0);
	in.quote_len = q->raw_len; /* padding after the signature section is ignored by design */
	in.quote = buf;
	in.collateral = tu_collateral(coll_rel);
	in.now = now;
	attest_policy_init(&pol);
	pol.accept_tcb = 0x3f;
	verify_accepts(&in, &pol);
	nr = quote_regions(q, r);
	assert_int_equal(r[nr - 1].off + r[nr - 1].len, q->raw_len);
	flip_regions(buf, r, nr, &in, &pol, &t);
	print_message("%s: %zu/%zu mutants rejected\n", quote_rel, t.rejected, t.tried);
	assert_int_equal(t.rejected, t.tried);
	attest_quote_free(q);
	free(buf);
	attest_collateral_free((struct attest_collateral *)in.collateral);
}

static void every_region_of_real_tdx_v4_quote_is_covered(void **state)
{
	TU_REQUIRE_SHARED();
	mutate_quote("tdx/dcap-qvl/tdx_quote", "tdx/dcap-qvl/tdx_quote_collateral.json", 1751623200);
}

static void every_region_of_real_tdx_v5_quote_is_covered(void **state)
{
	TU_REQUIRE_SHARED();
	mutate_quote("tdx/go-tdx-guest/quote_v5_sample.dat",
	             "tdx/bundles/go-tdx-guest_90c06f000000_2026-02.json", 1771977600);
}

static void mutate_text(char *s, size_t len, size_t stride, const char *name, const struct attest_input *in,
                        const struct attest_policy *pol, struct tally *t)
{
	struct region r = { name, 0, len, stride };

	flip_regions((uint8_t *)s, &r, 1, in, pol, t);
}

static void every_collateral_field_is_covered(void **state)
{
	struct attest_input in = { 0 };
	struct attest_policy pol;
	struct attest_collateral *c;
	struct tally t = { 0 };

	TU_REQUIRE_SHARED();
	in.quote = tu_quote("tdx/dcap-qvl/tdx_quote", &in.quote_len);
	c = tu_collateral("tdx/dcap-qvl/tdx_quote_collateral.json");
	in.collateral = c;
	in.now = 1751623200;
	attest_policy_init(&pol);
	verify_accepts(&in, &pol);
	mutate_text(c->tcb_info, c->tcb_info_len, 5, "tcb_info", &in, &pol, &t);
	mutate_text((char *)c->tcb_info_sig, 64, 1, "tcb_info_signature", &in, &pol, &t);
	mutate_text(c->tcb_info_issuer_chain, strlen(c->tcb_info_issuer_chain), 7, "tcb_info_issuer_chain",
	            &in, &pol, &t);
	mutate_text(c->qe_identity, c->qe_identity_len, 3, "qe_identity", &in, &pol, &t);
	mutate_text((char *)c->qe_identity_sig, 64, 1, "qe_identity_signature", &in, &pol, &t);
	mutate_text(c->qe_identity_issuer_chain, strlen(c->qe_identity_issuer_chain), 7,
	            "qe_identity_issuer_chain", &in, &pol, &t);
	mutate_text((char *)c->pck_crl, c->pck_crl_len, 5, "pck_crl", &in, &pol, &t);
	mutate_text((char *)c->root_ca_crl, c->root_ca_crl_len, 1, "root_ca_crl", &in, &pol, &t);
	mutate_text(c->pck_crl_issuer_chain, strlen(c->pck_crl_issuer_chain), 7, "pck_crl_issuer_chain", &in,
	            &pol, &t);
	print_message("collateral: %zu/%zu mutants rejected\n", t.rejected, t.tried);
	assert_int_equal(t.rejected, t.tried);
	free((void *)in.quote);
	attest_collateral_free(c);
}

/* Event log: every event's digest and MR index, and the type, name and payload of
 * every runtime event (what the quote binds through RTMR replay and the runtime
 * digest rule). Boot-event names and payloads are descriptive, not measured as
 * such, and are documented as unverified in docs/attestation.md. */
static void every_bound_region_of_a_real_event_log_is_covered(void **state)
{
	struct attest_evidence *ev = NULL;
	struct attest_input in = { 0 };
	struct attest_policy pol;
	struct tally t = { 0 };
	uint8_t *raw;
	size_t n = 0, i, k;

	TU_REQUIRE_SHARED();
	raw = tu_read("tdx/dstack/verifier-quote-report.json", &n);
	assert_int_equal(attest_evidence_parse(raw, n, &ev, NULL), 0);
	free(raw);
	assert_non_null(ev->eventlog);
	in.quote = ev->quote;
	in.quote_len = ev->quote_len;
	in.collateral = tu_collateral("tdx/dcap-qvl/tdx_quote_outdated_collateral.json");
	in.eventlog = ev->eventlog;
	in.now = 1772704800;
	attest_policy_init(&pol);
	verify_accepts(&in, &pol);
	for (i = 0; i < ev->eventlog->n; i++) {
		struct attest_event *e = &ev->eventlog->events[i];
		char what[64];

		snprintf(what, sizeof(what), "event %zu digest", i);
		for (k = 0; k < 48; k += 7) {
			e->digest[k] ^= 0x01;
			t.tried++;
			t.rejected += (size_t)verify_rejects(&in, &pol, what, k);
			e->digest[k] ^= 0x01;
		}
		e->imr ^= 1;
		t.tried++;
		t.rejected += (size_t)verify_rejects(&in, &pol, "event imr", i);
		e->imr ^= 1;
		if (e->event_type != ATTEST_EVENT_DSTACK_RUNTIME)
			continue;
		e->event_type ^= 0x10;
		t.tried++;
		t.rejected += (size_t)verify_rejects(&in, &pol, "runtime event type", i);
		e->event_type ^= 0x10;
		for (k = 0; e->event[k]; k++) {
			e->event[k] ^= 0x01;
			t.tried++;
			t.rejected += (size_t)verify_rejects(&in, &pol, "runtime event name", i);
			e->event[k] ^= 0x01;
		}
		for (k = 0; k < e->payload_len; k++) {
			e->payload[k] ^= 0x01;
			t.tried++;
			t.rejected += (size_t)verify_rejects(&in, &pol, "runtime event payload", i);
			e->payload[k] ^= 0x01;
		}
	}
	print_message("event log: %zu/%zu mutants rejected\n", t.rejected, t.tried);
	assert_int_equal(t.rejected, t.tried);
	attest_collateral_free((struct attest_collateral *)in.collateral);
	attest_evidence_free(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_region_of_real_tdx_v4_quote_is_covered),
		cmocka_unit_test(every_region_of_real_tdx_v5_quote_is_covered),
		cmocka_unit_test(every_collateral_field_is_covered),
		cmocka_unit_test(every_bound_region_of_a_real_event_log_is_covered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
