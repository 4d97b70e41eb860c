/*
 * test_provenance.c - the job statement (canonical build, strict parse,
 * domain-separated REPORTDATA) and the bundle's end part, on evidence from
 * attest/sim: a start and an end quote from one simulated CVM verify, and
 * each end check (end_quote, statement_binding, same_cvm, statement,
 * statement_predicate, subject) fails naming itself when its fact is false.
 * Old bundles without an end part verify exactly as before.
 */
#include "testutil.h"

#include "attest/sim/sim.h"

#include <jansson.h>
#include <openssl/evp.h>

#define NOW 1751623200
#define LEASE "l-0123456789abcdef"
#define NONCE "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"

static const uint8_t FILE_BYTES[] = "the build output\n";

/* ---- a simulated CVM that attests twice ---- */

struct fx {
	struct sim_opts so;
	struct sim_pki *pki;
	struct attest_collateral *coll;
	const uint8_t *root;
	size_t root_len;
	char *start_log_json;
	struct attest_eventlog *start_log;
	uint8_t *start_quote;
	size_t start_quote_len;
	uint8_t gate_rd[64];
	struct attest_policy pol; /* the caller's: allow_simulated */
	char *bundle;             /* the start bundle */
	struct attest_verdict *start;
	uint8_t file_sha[32];
};

static void quote_with(struct fx *f, const struct sim_eventlog_opts *lo, const uint8_t rd[64],
                       const struct sim_quote_opts *qo_in, uint8_t **q, size_t *qlen, char **log_json)
{
	struct sim_quote_opts qo = qo_in ? *qo_in : f->so.quote;
	uint8_t rt[4][48];

	assert_int_equal(sim_eventlog_make(lo, log_json, rt, NULL), 0);
	memcpy(qo.td.rtmr, rt, sizeof(rt));
	memcpy(qo.td.report_data, rd, 64);
	assert_int_equal(sim_quote_make(f->pki, &qo, q, qlen, NULL), 0);
}

static void fx_init(struct fx *f)
{
	struct sim_collateral *col = NULL;
	struct attest_input in;
	struct attest_bundle_meta meta = { "local", LEASE, NULL, NONCE };
	struct attest_policy rec;

	memset(f, 0, sizeof(*f));
	sim_opts_init(&f->so, NOW);
	assert_int_equal(sim_pki_new(&f->so.pki, &f->pki, NULL), 0);
	assert_int_equal(sim_collateral_make(f->pki, &f->so.collateral, &col, NULL), 0);
	assert_int_equal(
	    attest_collateral_parse((const uint8_t *)col->json, strlen(col->json), &f->coll, NULL), 0);
	sim_collateral_free(col);
	f->root = sim_pki_cert_der(f->pki, SIM_CERT_ROOT, &f->root_len);
	memset(f->gate_rd, 0x5a, 64);
	quote_with(f, &f->so.eventlog, f->gate_rd, NULL, &f->start_quote, &f->start_quote_len,
	           &f->start_log_json);
	assert_int_equal(attest_eventlog_parse_json((const uint8_t *)f->start_log_json,
	                                            strlen(f->start_log_json), &f->start_log, NULL),
	                 0);
	memset(&in, 0, sizeof(in));
	in.quote = f->start_quote;
	in.quote_len = f->start_quote_len;
	in.collateral = f->coll;
	in.eventlog = f->start_log;
	in.app_compose = sim_default_app_compose();
	in.app_compose_len = strlen(in.app_compose);
	in.root_der = f->root;
	in.root_der_len = f->root_len;
	in.root_simulated = 1;
	in.now = NOW;
	attest_policy_init(&f->pol);
	f->pol.allow_simulated = 1;
	rec = f->pol;
	rec.expected_report_data = f->gate_rd; /* recorded, as the gate does */
	assert_int_equal(attest_verify(&in, &rec, &f->start, NULL), 0);
	if (!f->start->ok)
		fail_msg("start: %s", f->start->error);
	assert_int_equal(attest_bundle_write(&in, &rec, f->start, &meta, &f->bundle, NULL), 0);
	EVP_Digest(FILE_BYTES, sizeof(FILE_BYTES) - 1, f->file_sha, NULL, EVP_sha256(), NULL);
}

static void fx_free(struct fx *f)
{
	attest_verdict_free(f->start);
	free(f->bundle);
	free(f->start_quote);
	free(f->start_log_json);
	attest_eventlog_free(f->start_log);
	attest_collateral_free(f->coll);
	sim_pki_free(f->pki);
}

/* A statement about the start bundle, naming one subject (out.bin = FILE_BYTES). */
static void statement_fill(struct fx *f, struct attest_statement *s, struct attest_subject *sub)
{
	memset(s, 0, sizeof(*s));
	sub->name = "out.bin";
	memcpy(sub->sha256, f->file_sha, 32);
	s->subjects = sub;
	s->n_subjects = 1;
	s->repository = "https://example.com/owner/repo.git";
	s->commit = "0123456789abcdef0123456789abcdef01234567";
	s->ci_system = "cli";
	s->ci_runner_name = "host-1";
	s->lease_id = LEASE;
	s->executor = "local";
	s->started_at = NOW;
	s->ended_at = NOW + 30;
	s->has_exit_code = 1;
	s->exit_code = 0;
	assert_int_equal(attest_statement_start_get((const uint8_t *)f->bundle, strlen(f->bundle), f->start,
	                                            &s->start, NULL),
	                 0);
}

/* End options: the statement's bytes (built from s unless raw is given), the event log
 * the end quote replays, the REPORTDATA (bound to the statement unless rd is given). */
struct endopt {
	const struct attest_statement *s;
	const char *raw;
	const struct sim_eventlog_opts *log;
	const uint8_t *rd;
	const struct sim_quote_opts *quote;
	struct sim_pki *pki; /* another PKI signs the end quote */
};

static char *extend(struct fx *f, const struct endopt *eo, struct attest_verdict **v)
{
	static const uint8_t payload[] = "job finished";
	struct sim_event extra = { "job-end", payload, sizeof(payload) - 1 };
	struct sim_eventlog_opts lo = f->so.eventlog;
	struct attest_bundle_end_input ein;
	struct attest_eventlog *log = NULL;
	struct sim_pki *keep = f->pki;
	char *stmt = NULL, *log_json = NULL, *out = NULL;
	uint8_t rd[64], *q = NULL;
	size_t slen = 0, qlen = 0;
	struct tdxr_err e;

	if (eo->raw) {
		stmt = strdup(eo->raw);
		slen = strlen(stmt);
	} else if (attest_statement_build(eo->s, &stmt, &slen, &e)) {
		fail_msg("build: %s", e.msg);
	}
	attest_statement_report_data((const uint8_t *)stmt, slen, rd);
	if (eo->log == NULL) { /* the start's log plus one event after system-ready */
		lo.extra = &extra;
		lo.n_extra = 1;
	}
	if (eo->pki)
		f->pki = eo->pki;
	quote_with(f, eo->log ? eo->log : &lo, eo->rd ? eo->rd : rd, eo->quote, &q, &qlen, &log_json);
	f->pki = keep;
	assert_int_equal(attest_eventlog_parse_json((const uint8_t *)log_json, strlen(log_json), &log, NULL),
	                 0);
	memset(&ein, 0, sizeof(ein));
	ein.statement = (const uint8_t *)stmt;
	ein.statement_len = slen;
	ein.quote = q;
	ein.quote_len = qlen;
	ein.eventlog = log;
	ein.now = NOW + 60;
	if (attest_bundle_end_add((const uint8_t *)f->bundle, strlen(f->bundle), &ein, &f->pol, &out, v, &e))
		fail_msg("end_add: %s", e.msg);
	attest_eventlog_free(log);
	free(log_json);
	free(q);
	free(stmt);
	return out;
}

static struct attest_verdict *reverify(const char *b, const struct attest_policy *pol,
                                       const uint8_t (*subj)[32], size_t n, struct attest_bundle_end **end)
{
	struct attest_bundle_verify_opts o;
	struct attest_verdict *v = NULL;
	struct tdxr_err e;

	memset(&o, 0, sizeof(o));
	o.policy = pol;
	o.subjects = subj;
	o.n_subjects = n;
	if (attest_bundle_verify_ex((const uint8_t *)b, strlen(b), &o, &v, end, &e))
		fail_msg("verify_ex: %s", e.msg);
	return v;
}

static const struct attest_step *find_step(const struct attest_verdict *v, const char *name)
{
	size_t i;

	for (i = 0; i < v->n_steps; i++)
		if (strcmp(v->steps[i].name, name) == 0)
			return &v->steps[i];
	return NULL;
}

static void expect_fail(struct fx *f, const char *bundle, const char *prefix)
{
	struct attest_verdict *v = reverify(bundle, &f->pol, (const uint8_t(*)[32])f->file_sha, 1, NULL);

	if (v->ok || strncmp(v->error, prefix, strlen(prefix)) != 0)
		fail_msg("expected '%s...', got ok=%d '%s'", prefix, v->ok, v->error);
	assert_true(tu_error_names_step(v));
	print_message("  %-40s -> %s\n", prefix, v->error);
	attest_verdict_free(v);
}

/* ---- the statement ---- */

static void statement_is_canonical_and_round_trips(void **state)
{
	struct fx f;
	struct attest_statement s, *p = NULL;
	struct attest_subject sub;
	char *a = NULL, *b = NULL;
	size_t al = 0, bl = 0, i;
	struct tdxr_err e;

	fx_init(&f);
	statement_fill(&f, &s, &sub);
	assert_int_equal(attest_statement_build(&s, &a, &al, NULL), 0);
	print_message("%s\n", a);
	assert_true(
	    strncmp(a, "{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicate\":{\"ci\":{", 60) == 0);
	assert_non_null(
	    strstr(a, "\"predicateType\":\"https://tdx-runner.dev/attestation/job/v1\",\"subject\":[{"
	              "\"digest\":{\"sha256\":\""));
	for (i = 0; i < al; i++)
		assert_true(a[i] != ' ' && a[i] != '\n' && (unsigned char)a[i] < 0x80);
	if (attest_statement_parse((const uint8_t *)a, al, &p, &e))
		fail_msg("parse: %s", e.msg);
	assert_int_equal(p->n_subjects, 1);
	assert_string_equal(p->subjects[0].name, "out.bin");
	assert_memory_equal(p->subjects[0].sha256, f.file_sha, 32);
	assert_string_equal(p->lease_id, LEASE);
	assert_string_equal(p->start.nonce, NONCE);
	assert_string_equal(p->start.tcb_status, "UpToDate");
	assert_true(p->start.simulated);
	assert_null(p->ci_job_id);
	assert_int_equal(p->started_at, NOW);
	assert_true(attest_statement_has_subject(p, f.file_sha));
	assert_int_equal(attest_statement_build(p, &b, &bl, NULL), 0);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	/* Non-ASCII is escaped, so the bytes stay ASCII and canonical. */
	free(b);
	s.ci_workflow = "Build \xc3\xa9t\xc3\xa9";
	assert_int_equal(attest_statement_build(&s, &b, &bl, NULL), 0);
	assert_non_null(strstr(b, "\\u00e9") ? strstr(b, "\\u00e9") : strstr(b, "\\u00E9"));
	attest_statement_free(p);
	assert_int_equal(attest_statement_parse((const uint8_t *)b, bl, &p, NULL), 0);
	assert_string_equal(p->ci_workflow, "Build \xc3\xa9t\xc3\xa9");
	attest_statement_free(p);
	free(a);
	free(b);
	fx_free(&f);
}

/* Replaces the first occurrence of from with to in s (malloc'd result). */
static char *subst(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	size_t n = strlen(s) - strlen(from) + strlen(to) + 1, h;
	char *o;

	assert_non_null(at);
	o = malloc(n);
	h = (size_t)(at - s);
	memcpy(o, s, h);
	memcpy(o + h, to, strlen(to));
	memcpy(o + h + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
	return o;
}

static void statement_parser_is_strict(void **state)
{
	static const struct {
		const char *from, *to, *why;
	} bad[] = {
		{ "{\"_type\"", "{ \"_type\"", "whitespace" },
		{ "\"commit\":\"0123", "\"commit\" :\"0123", "whitespace before a colon" },
		{ "in-toto.io/Statement/v1", "in-toto.io/Statement/v0.1", "_type" },
		{ "attestation/job/v1", "attestation/job/v2", "predicateType" },
		{ "\"name\":\"out.bin\"", "\"name\":\"/etc/passwd\"", "absolute subject" },
		{ "\"name\":\"out.bin\"", "\"name\":\"a/../../x\"", "dot-dot subject" },
		{ "\"name\":\"out.bin\"", "\"name\":\"a\\nb\"", "control character" },
		{ "\"name\":\"out.bin\"", "\"name\":\"a\\u0000b\"", "embedded NUL" },
		{ "\"name\":\"out.bin\"", "\"name\":\"\"", "empty subject name" },
		{ "{\"sha256\":\"", "{\"sha512\":\"", "unknown digest algorithm" },
		{ "{\"sha256\":\"", "{\"sha1\":\"00\",\"sha256\":\"", "a second digest" },
		{ "\"job_id\":null", "\"job_id\":\"\"", "empty string instead of null" },
		{ "\"job_id\":null", "\"job_id\":7", "a number where a string belongs" },
		{ "\"exit_code\":0", "\"exit_code\":\"0\"", "exit code as a string" },
		{ "\"exit_code\":0", "\"exit_code\":0.0", "exit code as a real" },
		{ "\"simulated\":true", "\"simulated\":1", "simulated as a number" },
		{ "\"tcb_status\":\"UpToDate\"", "\"tcb_status\":\"Fine\"", "unknown TCB status" },
		{ "T00:00:00Z", "T00:00:00.0Z", "fractional seconds" },
		{ "\"ci\":{", "\"ci\":{\"extra\":1,", "unknown key" },
		{ "\"ci\":{", "\"ci\":{\"job_id\":null,", "duplicate key" },
		{ "\"commit\":\"0123456789abcdef0123456789abcdef01234567\",", "", "missing key" },
		{ "\"subject\":[{",
		  "\"subject\":[{\"digest\":{\"sha256\":\""
		  "0000000000000000000000000000000000000000000000000000000000000000"
		  "\"},\"name\":\"out.bin\"},{",
		  "duplicate subject" },
	};
	struct fx f;
	struct attest_statement s, *p = NULL;
	struct attest_subject sub;
	char *a = NULL, *m, big[64];
	size_t al = 0, i;
	struct tdxr_err e;

	fx_init(&f);
	statement_fill(&f, &s, &sub);
	s.started_at = 0; /* "1970-01-01T00:00:00Z" gives the fractional-seconds case a target */
	assert_int_equal(attest_statement_build(&s, &a, &al, NULL), 0);
	assert_int_equal(attest_statement_parse((const uint8_t *)a, al, &p, NULL), 0);
	attest_statement_free(p);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = subst(a, bad[i].from, bad[i].to);
		p = NULL;
		if (attest_statement_parse((const uint8_t *)m, strlen(m), &p, &e) != TDXR_EINVAL)
			fail_msg("%s: accepted", bad[i].why);
		assert_null(p);
		assert_true(strncmp(e.msg, "statement:", 10) == 0);
		print_message("  %-28s -> %s\n", bad[i].why, e.msg);
		free(m);
	}
	/* Keys out of order (everything else well-formed): only the canonical check sees it. */
	{
		char hx[65], from[160], to[160];

		tdxr_hex_encode(f.file_sha, 32, hx);
		snprintf(from, sizeof(from), "{\"digest\":{\"sha256\":\"%s\"},\"name\":\"out.bin\"}", hx);
		snprintf(to, sizeof(to), "{\"name\":\"out.bin\",\"digest\":{\"sha256\":\"%s\"}}", hx);
		m = subst(a, from, to);
		assert_int_equal(attest_statement_parse((const uint8_t *)m, strlen(m), &p, &e), TDXR_EINVAL);
		assert_non_null(strstr(e.msg, "canonical"));
		free(m);
	}
	/* Trailing bytes, a NUL inside, truncation, and an oversize input. */
	assert_int_equal(attest_statement_parse((const uint8_t *)a, al - 1, &p, NULL), TDXR_EINVAL);
	m = malloc(al + 2);
	memcpy(m, a, al);
	m[al] = '\n';
	assert_int_equal(attest_statement_parse((const uint8_t *)m, al + 1, &p, NULL), TDXR_EINVAL);
	m[al] = '\0';
	assert_int_equal(attest_statement_parse((const uint8_t *)m, al + 1, &p, NULL), TDXR_EINVAL);
	free(m);
	assert_int_equal(attest_statement_parse((const uint8_t *)big, ATTEST_STATEMENT_MAX + 1u, &p, NULL),
	                 TDXR_ETOOBIG);
	/* Build refuses what parse refuses. */
	sub.name = "../x";
	assert_int_equal(attest_statement_build(&s, &m, &al, NULL), TDXR_EINVAL);
	sub.name = "out.bin";
	s.ended_at = s.started_at - 1;
	assert_int_equal(attest_statement_build(&s, &m, &al, NULL), TDXR_EINVAL);
	free(a);
	fx_free(&f);
}

/* The fuzz corpus seeds: the canonical ones parse (so the fuzzer starts from the round
 * trip), the others are refused. */
static void fuzz_seeds_are_what_their_names_say(void **state)
{
	static const struct {
		const char *name;
		int ok;
	} seeds[] = {
		{ "cli-one-subject", 1 }, { "github-two-subjects", 1 }, { "foreign-noncanonical", 0 },
		{ "dotdot-subject", 0 },  { "not-an-object", 0 },
	};
	struct attest_statement *p = NULL;
	char path[4096];
	uint8_t *d = NULL;
	size_t n = 0, i;
	struct tdxr_err e;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/fuzz_statement/%s", TDXR_SOURCE_DIR,
		         seeds[i].name);
		assert_int_equal(tdxr_file_read(path, 1u << 20, &d, &n, NULL), 0);
		if ((attest_statement_parse(d, n, &p, &e) == 0) != seeds[i].ok)
			fail_msg("%s: %s", seeds[i].name, seeds[i].ok ? e.msg : "parsed");
		attest_statement_free(p);
		p = NULL;
		free(d);
	}
}

static void subject_names_stay_inside_the_work_dir(void **state)
{
	static const char *const good[] = { "out.bin", "dist/app.tar.gz", "a/./b", "..x", "x..", "a/..b/c" };
	static const char *const bad[] = { "", "/abs", "..", "../x", "a/..", "a/../b", "a\nb", "a\tb" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(attest_subject_name_check(good[i], NULL), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (attest_subject_name_check(bad[i], NULL) != TDXR_EINVAL)
			fail_msg("'%s' accepted", bad[i]);
}

static void report_data_is_domain_separated_sha512(void **state)
{
	static const char stmt[] = "{\"x\":1}";
	static const char domain[] = "tdx-runner/statement/v1";
	uint8_t rd[64], want[64], plain[64], buf[64];
	unsigned int n = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	attest_statement_report_data((const uint8_t *)stmt, strlen(stmt), rd);
	assert_int_equal(EVP_DigestInit_ex(md, EVP_sha512(), NULL), 1);
	assert_int_equal(EVP_DigestUpdate(md, domain, sizeof(domain)), 1); /* with its NUL */
	assert_int_equal(EVP_DigestUpdate(md, stmt, strlen(stmt)), 1);
	assert_int_equal(EVP_DigestFinal_ex(md, want, &n), 1);
	EVP_MD_CTX_free(md);
	assert_memory_equal(rd, want, 64);
	EVP_Digest(stmt, strlen(stmt), plain, NULL, EVP_sha512(), NULL);
	assert_memory_not_equal(rd, plain, 64);
	memcpy(buf, rd, 64);
	attest_statement_report_data((const uint8_t *)stmt, strlen(stmt) - 1, rd);
	assert_memory_not_equal(rd, buf, 64);
}

/* ---- the bundle's end part ---- */

static void bundle_with_end_verifies_and_names_its_subjects(void **state)
{
	static const char *const order[] = { "end_quote", "statement_binding",   "same_cvm",
		                             "statement", "statement_predicate", "subject" };
	struct fx f;
	struct attest_statement s;
	struct attest_subject sub;
	struct endopt eo = { 0 };
	struct attest_verdict *v = NULL;
	struct attest_bundle_end *end = NULL;
	uint8_t other[32];
	json_t *j;
	char *b;
	size_t i;

	fx_init(&f);
	statement_fill(&f, &s, &sub);
	eo.s = &s;
	b = extend(&f, &eo, &v);
	if (!v->ok)
		fail_msg("end: %s", v->error);
	attest_verdict_free(v);
	/* The bundle records the end quote's own verdict; the start part is untouched. */
	j = json_loads(b, 0, NULL);
	assert_true(
	    json_is_true(json_object_get(json_object_get(json_object_get(j, "end"), "verdict"), "ok")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "end"), "verified_at")),
	                 NOW + 60);
	json_decref(j);
	/* Re-verified with a subject: every end step passes, in order, after the start's. */
	v = reverify(b, &f.pol, (const uint8_t(*)[32])f.file_sha, 1, &end);
	if (!v->ok)
		fail_msg("reverify: %s", v->error);
	assert_int_equal(v->n_steps, 21 + 6);
	for (i = 0; i < 6; i++) {
		assert_string_equal(v->steps[21 + i].name, order[i]);
		assert_int_equal(v->steps[21 + i].result, ATTEST_STEP_PASS);
		print_message("  %-20s %s\n", v->steps[21 + i].name, v->steps[21 + i].detail);
	}
	assert_non_null(strstr(find_step(v, "same_cvm")->detail, "grew by 1 appended event"));
	assert_non_null(end);
	assert_non_null(end->statement);
	assert_true(end->verdict->ok);
	assert_memory_equal(end->verdict->quote->td.report_data, end->report_data, 64);
	attest_bundle_end_free(end);
	attest_verdict_free(v);
	/* Without a subject the step is skipped; a file that is not a subject fails it. */
	v = reverify(b, &f.pol, NULL, 0, NULL);
	assert_true(v->ok);
	assert_int_equal(find_step(v, "subject")->result, ATTEST_STEP_SKIP);
	attest_verdict_free(v);
	memset(other, 0x11, 32);
	v = reverify(b, &f.pol, (const uint8_t(*)[32])other, 1, NULL);
	assert_false(v->ok);
	assert_true(strncmp(v->error, "subject: ", 9) == 0);
	attest_verdict_free(v);
	/* A stranger's default policy refuses the simulated root first (relaxations are the caller's). */
	v = reverify(b, NULL, NULL, 0, NULL);
	assert_false(v->ok);
	assert_true(strncmp(v->error, "root:", 5) == 0);
	assert_int_equal(find_step(v, "end_quote")->result, ATTEST_STEP_SKIP);
	attest_verdict_free(v);
	/* An end part cannot be added twice. */
	{
		struct attest_bundle_end_input ein = { (const uint8_t *)"x", 1,  (const uint8_t *)"q", 1,
			                               f.start_log,          NOW };
		char *o = NULL;

		assert_int_equal(
		    attest_bundle_end_add((const uint8_t *)b, strlen(b), &ein, &f.pol, &o, NULL, NULL),
		    TDXR_EINVAL);
		assert_null(o);
	}
	free(b);
	fx_free(&f);
}

static void bundle_without_end_verifies_as_before(void **state)
{
	struct fx f;
	struct attest_verdict *v = NULL, *old = NULL;
	struct attest_bundle_end *end = NULL;
	char *a = NULL, *b = NULL;

	fx_init(&f);
	assert_int_equal(
	    attest_bundle_verify((const uint8_t *)f.bundle, strlen(f.bundle), &f.pol, 0, &old, NULL), 0);
	v = reverify(f.bundle, &f.pol, NULL, 0, &end);
	assert_true(v->ok);
	assert_null(end);
	assert_int_equal(v->n_steps, 21);
	assert_null(find_step(v, "end_quote"));
	assert_int_equal(attest_verdict_to_json(v, &a, NULL), 0);
	assert_int_equal(attest_verdict_to_json(old, &b, NULL), 0);
	assert_string_equal(a, b);
	attest_verdict_free(v);
	/* Asking for a subject of a bundle without an end part fails the subject step. */
	v = reverify(f.bundle, &f.pol, (const uint8_t(*)[32])f.file_sha, 1, NULL);
	assert_false(v->ok);
	assert_non_null(strstr(v->error, "subject: the bundle has no end part"));
	attest_verdict_free(v);
	attest_verdict_free(old);
	free(a);
	free(b);
	fx_free(&f);
}

static void each_end_check_fails_naming_its_step(void **state)
{
	struct fx f;
	struct attest_statement s;
	struct attest_subject sub;
	struct endopt eo;
	struct sim_eventlog_opts lo;
	struct sim_quote_opts qo;
	struct sim_pki *other = NULL;
	struct sim_pki_opts po;
	char *b, c;

	fx_init(&f);
	statement_fill(&f, &s, &sub);

	/* end_quote: signed under another (simulated) root than the start's. */
	sim_pki_opts_init(&po, NOW);
	assert_int_equal(sim_pki_new(&po, &other, NULL), 0);
	memset(&eo, 0, sizeof(eo));
	eo.s = &s;
	eo.pki = other;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "end_quote: ");
	free(b);
	sim_pki_free(other);

	/* statement_binding: the end quote carries other REPORTDATA (a replayed quote). */
	memset(&eo, 0, sizeof(eo));
	eo.s = &s;
	eo.rd = f.gate_rd;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_binding: ");
	free(b);

	/* same_cvm: another instance of the same app; another MRTD; a log that restarted. */
	memset(&eo, 0, sizeof(eo));
	lo = f.so.eventlog;
	lo.instance_id[0] ^= 0xff;
	eo.s = &s;
	eo.log = &lo;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "same_cvm: instance id differs");
	free(b);
	memset(&eo, 0, sizeof(eo));
	qo = f.so.quote;
	qo.td.mrtd[0] ^= 1;
	eo.s = &s;
	eo.quote = &qo;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "same_cvm: MRTD differs");
	free(b);
	/* An event before system-ready that differs rewrites RTMR3's history: not an append. */
	memset(&eo, 0, sizeof(eo));
	lo = f.so.eventlog;
	lo.key_provider = "{\"name\":\"other\",\"id\":\"\"}";
	eo.s = &s;
	eo.log = &lo;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "same_cvm: RTMR3 event");
	free(b);

	/* statement: bound, but not a statement (the agent would never write it). */
	memset(&eo, 0, sizeof(eo));
	eo.raw = "{\"not\":\"a statement\"}";
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement: ");
	free(b);

	/* statement_predicate: another lease; another start; another nonce; the wrong identity. */
	memset(&eo, 0, sizeof(eo));
	eo.s = &s;
	s.lease_id = "l-other";
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_predicate: lease.id");
	free(b);
	s.lease_id = LEASE;
	c = s.start.quote_sha256[0];
	s.start.quote_sha256[0] = c == '0' ? '1' : '0';
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_predicate: start.quote_sha256");
	free(b);
	s.start.quote_sha256[0] = c;
	c = s.start.nonce[0];
	s.start.nonce[0] = c == '0' ? '1' : '0';
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_predicate: start.nonce");
	free(b);
	s.start.nonce[0] = c;
	s.start.simulated = 0;
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_predicate: start.simulated");
	free(b);
	s.start.simulated = 1;
	s.ended_at = NOW + 3600; /* after the end quote was verified */
	b = extend(&f, &eo, NULL);
	expect_fail(&f, b, "statement_predicate: ended_at");
	free(b);
	s.ended_at = NOW + 30;

	/* Malformed end parts are named too: statement not base64, no event log. */
	memset(&eo, 0, sizeof(eo));
	eo.s = &s;
	b = extend(&f, &eo, NULL);
	{
		json_t *j = json_loads(b, 0, NULL), *e = json_object_get(j, "end");
		char *t;

		json_object_set_new(e, "statement", json_string("not base64!"));
		t = json_dumps(j, 0);
		expect_fail(&f, t, "statement_binding: end.statement");
		free(t);
		json_object_del(e, "event_log");
		t = json_dumps(j, 0);
		expect_fail(&f, t, "end_quote: end.event_log");
		free(t);
		json_decref(j);
	}
	free(b);
	fx_free(&f);
}

static void recorded_relaxations_are_read_back_for_the_writer(void **state)
{
	struct fx f;
	struct attest_policy p;

	fx_init(&f);
	attest_policy_init(&p);
	assert_int_equal(
	    attest_bundle_policy_relaxations((const uint8_t *)f.bundle, strlen(f.bundle), &p, NULL), 0);
	assert_true(p.allow_simulated);
	assert_false(p.allow_debug);
	assert_int_equal(p.accept_tcb, ATTEST_TCB_DEFAULT_ACCEPT);
	assert_int_equal(attest_bundle_policy_relaxations((const uint8_t *)"{}", 2, &p, NULL), TDXR_EINVAL);
	fx_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(statement_is_canonical_and_round_trips),
		cmocka_unit_test(statement_parser_is_strict),
		cmocka_unit_test(fuzz_seeds_are_what_their_names_say),
		cmocka_unit_test(subject_names_stay_inside_the_work_dir),
		cmocka_unit_test(report_data_is_domain_separated_sha512),
		cmocka_unit_test(bundle_with_end_verifies_and_names_its_subjects),
		cmocka_unit_test(bundle_without_end_verifies_as_before),
		cmocka_unit_test(each_end_check_fails_naming_its_step),
		cmocka_unit_test(recorded_relaxations_are_read_back_for_the_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
