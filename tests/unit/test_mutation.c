/*
 * test_mutation.c - flips bytes in every region of real quotes, collateral and
 * event logs that verify, and requires every mutant to be rejected with the
 * failed step named. Binary regions are flipped at every byte; long text
 * regions (PEM chains, signed JSON, CRLs) at a stride plus both ends, which
 * keeps the run short under sanitizers while touching every region.
 *
 * The bundle's end part (provenance) is mutated as a bundle, on evidence from
 * attest/sim (no shared vectors needed): every byte of the start quote, the
 * end quote, the statement and the subject file - each changed alone - must
 * make `verify BUNDLE --subject FILE` fail with the step named. The quotes'
 * PEM chains go at stride 3 plus their last byte as above, unless
 * TDXR_MUTATION_FULL is set (every byte: about twice the run time).
 */
#include "testutil.h"

#include "attest/sim/sim.h"

#include <jansson.h>
#include <openssl/evp.h>

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

/* ---- the bundle's end part ---- */

#define END_NOW 1751623200

struct endfx {
	char *text; /* the extended bundle */
	uint8_t *quotes[2];
	size_t quote_len[2];
	uint8_t *stmt;
	size_t stmt_len;
	uint8_t file[64];
	uint8_t file_sha[32];
	struct attest_policy pol;
};

static void sim_quote_over(struct sim_pki *pki, const struct sim_eventlog_opts *lo, const uint8_t rd[64],
                           uint8_t **q, size_t *qlen, struct attest_eventlog **log)
{
	struct sim_quote_opts qo;
	uint8_t rt[4][48];
	char *json = NULL;

	sim_quote_opts_init(&qo);
	assert_int_equal(sim_eventlog_make(lo, &json, rt, NULL), 0);
	memcpy(qo.td.rtmr, rt, sizeof(rt));
	memcpy(qo.td.report_data, rd, 64);
	assert_int_equal(sim_quote_make(pki, &qo, q, qlen, NULL), 0);
	assert_int_equal(attest_eventlog_parse_json((const uint8_t *)json, strlen(json), log, NULL), 0);
	free(json);
}

/* One simulated CVM: a start bundle, a statement about it naming `file`, an end quote. */
static void endfx_init(struct endfx *f)
{
	static const uint8_t done[] = "job finished";
	struct sim_event extra = { "job-end", done, sizeof(done) - 1 };
	struct attest_bundle_meta meta = {
		"local", "l-mutation", NULL,
		"0000000000000000000000000000000000000000000000000000000000000001"
	};
	struct sim_pki_opts po;
	struct sim_collateral_opts co;
	struct sim_eventlog_opts lo;
	struct sim_pki *pki = NULL;
	struct sim_collateral *col = NULL;
	struct attest_collateral *coll = NULL;
	struct attest_eventlog *log0 = NULL, *log1 = NULL;
	struct attest_verdict *v = NULL;
	struct attest_statement st;
	struct attest_subject sub;
	struct attest_bundle_end_input ein;
	struct attest_input in;
	struct attest_policy rec;
	uint8_t gate[64], rd[64];
	char *start = NULL;
	size_t i;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < sizeof(f->file); i++)
		f->file[i] = (uint8_t)(i * 37 + 11);
	EVP_Digest(f->file, sizeof(f->file), f->file_sha, NULL, EVP_sha256(), NULL);
	sim_pki_opts_init(&po, END_NOW);
	sim_collateral_opts_init(&co, END_NOW);
	sim_eventlog_opts_init(&lo);
	assert_int_equal(sim_pki_new(&po, &pki, NULL), 0);
	assert_int_equal(sim_collateral_make(pki, &co, &col, NULL), 0);
	assert_int_equal(attest_collateral_parse((const uint8_t *)col->json, strlen(col->json), &coll, NULL),
	                 0);
	memset(gate, 0x5a, 64);
	sim_quote_over(pki, &lo, gate, &f->quotes[0], &f->quote_len[0], &log0);
	memset(&in, 0, sizeof(in));
	in.quote = f->quotes[0];
	in.quote_len = f->quote_len[0];
	in.collateral = coll;
	in.eventlog = log0;
	in.app_compose = sim_default_app_compose();
	in.app_compose_len = strlen(in.app_compose);
	in.root_der = sim_pki_cert_der(pki, SIM_CERT_ROOT, &in.root_der_len);
	in.root_simulated = 1;
	in.now = END_NOW;
	attest_policy_init(&f->pol);
	f->pol.allow_simulated = 1;
	rec = f->pol;
	rec.expected_report_data = gate;
	assert_int_equal(attest_verify(&in, &rec, &v, NULL), 0);
	assert_true(v->ok);
	assert_int_equal(attest_bundle_write(&in, &rec, v, &meta, &start, NULL), 0);
	memset(&st, 0, sizeof(st));
	sub.name = "dist/out.bin";
	memcpy(sub.sha256, f->file_sha, 32);
	st.subjects = &sub;
	st.n_subjects = 1;
	st.repository = "https://example.com/o/r.git";
	st.commit = "89abcdef0123456789abcdef0123456789abcdef";
	st.ci_system = "cli";
	st.ci_runner_name = "mutation";
	st.lease_id = meta.lease_id;
	st.executor = meta.executor;
	st.started_at = END_NOW;
	st.ended_at = END_NOW + 20;
	st.has_exit_code = 1;
	assert_int_equal(
	    attest_statement_start_get((const uint8_t *)start, strlen(start), v, &st.start, NULL), 0);
	attest_verdict_free(v);
	v = NULL;
	assert_int_equal(attest_statement_build(&st, (char **)&f->stmt, &f->stmt_len, NULL), 0);
	attest_statement_report_data(f->stmt, f->stmt_len, rd);
	lo.extra = &extra;
	lo.n_extra = 1;
	sim_quote_over(pki, &lo, rd, &f->quotes[1], &f->quote_len[1], &log1);
	memset(&ein, 0, sizeof(ein));
	ein.statement = f->stmt;
	ein.statement_len = f->stmt_len;
	ein.quote = f->quotes[1];
	ein.quote_len = f->quote_len[1];
	ein.eventlog = log1;
	ein.now = END_NOW + 30;
	assert_int_equal(
	    attest_bundle_end_add((const uint8_t *)start, strlen(start), &ein, &f->pol, &f->text, &v, NULL),
	    0);
	if (!v->ok)
		fail_msg("the unmutated bundle does not verify: %s", v->error);
	attest_verdict_free(v);
	free(start);
	attest_eventlog_free(log0);
	attest_eventlog_free(log1);
	attest_collateral_free(coll);
	sim_collateral_free(col);
	sim_pki_free(pki);
}

static void endfx_free(struct endfx *f)
{
	free(f->text);
	free(f->quotes[0]);
	free(f->quotes[1]);
	free(f->stmt);
}

static int bundle_rejects(const struct endfx *f, const uint8_t sha[32], const char *what, size_t pos)
{
	struct attest_bundle_verify_opts o;
	struct attest_verdict *v = NULL;
	struct tdxr_err e;
	const char *name = "dist/out.bin";
	int ok;

	memset(&o, 0, sizeof(o));
	o.policy = &f->pol;
	o.subjects = (const uint8_t(*)[32])sha;
	o.subject_names = &name;
	o.n_subjects = 1;
	if (attest_bundle_verify_ex((const uint8_t *)f->text, strlen(f->text), &o, &v, NULL, &e) != 0) {
		print_message("NOT A VERDICT: %s byte %zu: %s\n", what, pos, e.msg);
		return 0;
	}
	ok = !v->ok && tu_error_names_step(v);
	if (!ok)
		print_message("NOT REJECTED: %s byte %zu (ok=%d error='%s')\n", what, pos, v->ok, v->error);
	attest_verdict_free(v);
	return ok;
}

/* Flips bit 0 of byte pos of the binary whose hex text starts at hx (its low nibble). */
static void hex_flip(char *hx, size_t pos)
{
	char *c = &hx[2 * pos + 1];
	int d = tdxr_hex_digit((unsigned char)*c) ^ 1;

	*c = "0123456789abcdef"[d];
}

static void every_byte_of_the_end_part_is_covered(void **state)
{
	static const char *const which[2] = { "start quote", "end quote" };
	struct endfx f;
	struct tally t[4] = { { 0 } };
	const char *env = getenv("TDXR_MUTATION_STRIDE");
	size_t scale = env ? strtoul(env, NULL, 10) : 1, stride = scale > 1 ? scale : 1;
	int full = getenv("TDXR_MUTATION_FULL") != NULL; /* the PEM chains at every byte too */
	size_t k, pos;
	char *b64, *at;

	endfx_init(&f);
	{ /* the unmutated bundle passes, subject included */
		struct attest_bundle_verify_opts o = { &f.pol, 0, (const uint8_t(*)[32])f.file_sha, NULL, 1 };
		struct attest_verdict *v = NULL;

		assert_int_equal(
		    attest_bundle_verify_ex((const uint8_t *)f.text, strlen(f.text), &o, &v, NULL, NULL), 0);
		if (!v->ok)
			fail_msg("%s", v->error);
		attest_verdict_free(v);
	}
	/* Both quotes, every byte (the PCK chain PEM at stride 3 plus its last byte, as above,
	 * unless TDXR_MUTATION_FULL). */
	for (k = 0; k < 2; k++) {
		struct attest_quote *q = NULL;
		struct region r[16];
		size_t nr, i;
		char *hx = tdxr_hex_strdup(f.quotes[k], f.quote_len[k]);

		at = strstr(f.text, hx);
		assert_non_null(at);
		assert_int_equal(attest_quote_parse(f.quotes[k], f.quote_len[k], &q, NULL), 0);
		assert_int_equal(q->raw_len, f.quote_len[k]); /* no padding: every byte is bound */
		nr = quote_regions(q, r);
		for (i = 0; i < nr; i++) {
			size_t st = r[i].stride > stride && !full ? r[i].stride : stride;

			for (pos = r[i].off; pos < r[i].off + r[i].len; pos += st) {
				hex_flip(at, pos);
				t[k].tried++;
				t[k].rejected += (size_t)bundle_rejects(&f, f.file_sha, which[k], pos);
				hex_flip(at, pos);
			}
			if (st > 1 && r[i].len > 1) {
				pos = r[i].off + r[i].len - 1;
				hex_flip(at, pos);
				t[k].tried++;
				t[k].rejected += (size_t)bundle_rejects(&f, f.file_sha, which[k], pos);
				hex_flip(at, pos);
			}
		}
		print_message("%s: %zu/%zu mutants rejected\n", which[k], t[k].rejected, t[k].tried);
		attest_quote_free(q);
		free(hx);
	}
	/* The statement, every byte (re-encoded in place: base64 keeps its length). */
	b64 = malloc(4 * ((f.stmt_len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, f.stmt, (int)f.stmt_len);
	at = strstr(f.text, b64);
	assert_non_null(at);
	for (pos = 0; pos < f.stmt_len; pos += stride) {
		f.stmt[pos] ^= 0x01;
		EVP_EncodeBlock((unsigned char *)at, f.stmt, (int)f.stmt_len); /* writes a NUL after... */
		at[strlen(b64)] = '"';                                         /* ...which we undo */
		t[2].tried++;
		t[2].rejected += (size_t)bundle_rejects(&f, f.file_sha, "statement", pos);
		f.stmt[pos] ^= 0x01;
	}
	memcpy(at, b64, strlen(b64));
	free(b64);
	print_message("statement: %zu/%zu mutants rejected\n", t[2].rejected, t[2].tried);
	/* The subject file: the verifier hashes what it is given. */
	for (pos = 0; pos < sizeof(f.file); pos++) {
		uint8_t sha[32];

		f.file[pos] ^= 0x01;
		EVP_Digest(f.file, sizeof(f.file), sha, NULL, EVP_sha256(), NULL);
		t[3].tried++;
		t[3].rejected += (size_t)bundle_rejects(&f, sha, "subject file", pos);
		f.file[pos] ^= 0x01;
	}
	print_message("subject file: %zu/%zu mutants rejected\n", t[3].rejected, t[3].tried);
	for (k = 0; k < 4; k++)
		assert_int_equal(t[k].rejected, t[k].tried);
	endfx_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_region_of_real_tdx_v4_quote_is_covered),
		cmocka_unit_test(every_region_of_real_tdx_v5_quote_is_covered),
		cmocka_unit_test(every_collateral_field_is_covered),
		cmocka_unit_test(every_bound_region_of_a_real_event_log_is_covered),
		cmocka_unit_test(every_byte_of_the_end_part_is_covered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
