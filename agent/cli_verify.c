/*
 * cli_verify.c - `tdx-runner verify`: offline verification of a TDX (or SGX)
 * quote against collateral, with an optional dstack event log / guest-agent
 * response, or re-verification of an attestation bundle - with its end part
 * (provenance), also that each --subject file's SHA-256 is a subject of the
 * statement the end quote binds. Every input file is untrusted and read with a
 * size cap (subject files are hashed as a stream). Exit: 0 verdict passes the
 * policy, 1 it does not, 2 usage or I/O error.
 */
#include "agent/cli.h"

#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_verify_help(void)
{
	printf("usage: tdx-runner verify --quote FILE --collateral FILE [options]\n"
	       "       tdx-runner verify BUNDLE.json [options]\n"
	       "\n"
	       "Verifies Intel TDX attestation offline: the quote's signature chain to Intel's\n"
	       "root, the collateral (TCB info, QE identity, CRLs), the TCB status, the TD\n"
	       "attributes and, with an event log, the RTMR replay and the dstack identity.\n"
	       "With a BUNDLE, re-verifies a published attestation bundle at its recorded time;\n"
	       "when it has an end part (`tdx-runner run --subject`), also that the end quote\n"
	       "comes from the same CVM and binds the job statement, whose subjects --subject\n"
	       "files must be.\n"
	       "\n"
	       "inputs:\n"
	       "  --quote FILE            quote, binary or hex text (optional 0x, whitespace)\n"
	       "  --collateral FILE       collateral JSON (dcap-qvl layout: tcb_info, ...)\n"
	       "  --event-log FILE        dstack event log: a JSON array, a guest-agent Info or\n"
	       "                          GetQuote response, or a raw CCEL; its quote is used\n"
	       "                          when --quote is absent\n"
	       "  --app-compose FILE      app-compose text; its SHA-256 must be the compose-hash event\n"
	       "  --app-cert FILE         RA-TLS app certificate (PEM); REPORTDATA must bind its key\n"
	       "  --root FILE             trust this root certificate (DER or PEM) instead of the\n"
	       "                          pinned Intel SGX Root CA; a non-Intel root is 'simulated'\n"
	       "  --now UNIX              verify as of this time (default: the current time;\n"
	       "                          for a bundle: the time it was verified)\n"
	       "policy:\n"
	       "  --accept S1,S2,...      accepted TCB statuses (default UpToDate,SWHardeningNeeded)\n"
	       "  --allow-debug           accept a debug TD / enclave\n"
	       "  --allow-service-td      accept a non-zero MRSERVICETD (TD 1.5)\n"
	       "  --allow-reserved        accept reserved TD attribute bits / no SEPT_VE_DISABLE\n"
	       "  --allow-simulated       accept a simulator root of trust (attest/sim)\n"
	       "  --expect-app-id HEX     require this dstack app id\n"
	       "  --expect-compose-hash HEX  require this compose hash\n"
	       "  --expect-report-data HEX   require this 64-byte REPORTDATA\n"
	       "  --mrtd HEX              allow this MRTD (repeatable; default any)\n"
	       "  --subject FILE          with a BUNDLE: FILE's SHA-256 must be a subject of the\n"
	       "                          statement its end quote binds (repeatable)\n"
	       "output:\n"
	       "  --json                  print the verdict as one JSON object\n"
	       "  --bundle-out FILE       also write an attestation bundle of this verification\n"
	       "  --statement-out FILE    with a BUNDLE whose verdict passes: write the statement its end\n"
	       "                          quote binds (its exact bytes) to FILE\n"
	       "\n"
	       "Exit status: 0 the verdict passes the policy, 1 it does not, 2 usage or I/O error.\n");
}

struct opts {
	const char *quote, *collateral, *eventlog, *app_compose, *app_cert, *root, *bundle_out;
	const char *bundle, *statement_out;
	int json;
	int64_t now;
	struct attest_policy pol;
	const char *mrtd[17];
	size_t n_mrtd;
	const char *subjects[64];
	size_t n_subjects;
	uint8_t report_data[64];
};

static int read_file(const char *path, size_t cap, uint8_t **out, size_t *len)
{
	struct tdxr_err e;

	tdxr_err_clear(&e);
	if (tdxr_file_read(path, cap, out, len, &e)) {
		fprintf(stderr, "tdx-runner verify: %s\n", e.msg);
		return 2;
	}
	return 0;
}

static int parse_accept(const char *s, unsigned *mask)
{
	char buf[512], *tok, *save = NULL;
	enum attest_tcb_status st;

	if (strlen(s) >= sizeof(buf))
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	*mask = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		st = attest_tcb_status_parse(tok);
		if (st == ATTEST_TCB_UNKNOWN) {
			fprintf(stderr, "tdx-runner verify: --accept: unknown TCB status '%s'\n", tok);
			return -1;
		}
		*mask |= ATTEST_TCB_BIT(st);
	}
	return *mask ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		O_QUOTE = 256,
		O_COLL,
		O_EV,
		O_COMPOSE,
		O_CERT,
		O_ROOT,
		O_NOW,
		O_ACCEPT,
		O_DEBUG,
		O_STD,
		O_RES,
		O_SIM,
		O_APP,
		O_CH,
		O_RD,
		O_MRTD,
		O_JSON,
		O_BOUT,
		O_SUBJECT,
		O_SOUT
	};
	static const struct option lo[] = {
		{ "quote", required_argument, NULL, O_QUOTE },
		{ "collateral", required_argument, NULL, O_COLL },
		{ "event-log", required_argument, NULL, O_EV },
		{ "app-compose", required_argument, NULL, O_COMPOSE },
		{ "app-cert", required_argument, NULL, O_CERT },
		{ "root", required_argument, NULL, O_ROOT },
		{ "now", required_argument, NULL, O_NOW },
		{ "accept", required_argument, NULL, O_ACCEPT },
		{ "allow-debug", no_argument, NULL, O_DEBUG },
		{ "allow-service-td", no_argument, NULL, O_STD },
		{ "allow-reserved", no_argument, NULL, O_RES },
		{ "allow-simulated", no_argument, NULL, O_SIM },
		{ "expect-app-id", required_argument, NULL, O_APP },
		{ "expect-compose-hash", required_argument, NULL, O_CH },
		{ "expect-report-data", required_argument, NULL, O_RD },
		{ "mrtd", required_argument, NULL, O_MRTD },
		{ "json", no_argument, NULL, O_JSON },
		{ "bundle-out", required_argument, NULL, O_BOUT },
		{ "subject", required_argument, NULL, O_SUBJECT },
		{ "statement-out", required_argument, NULL, O_SOUT },
		{ NULL, 0, NULL, 0 },
	};
	struct tdxr_err e;
	int c;

	attest_policy_init(&o->pol);
	o->now = -1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_QUOTE: o->quote = optarg; break;
		case O_COLL: o->collateral = optarg; break;
		case O_EV: o->eventlog = optarg; break;
		case O_COMPOSE: o->app_compose = optarg; break;
		case O_CERT: o->app_cert = optarg; break;
		case O_ROOT: o->root = optarg; break;
		case O_NOW:
			if (tdxr_parse_i64(optarg, 1, INT64_MAX / 2, &o->now, &e)) {
				fprintf(stderr, "tdx-runner verify: --now: %s\n", e.msg);
				return 2;
			}
			break;
		case O_ACCEPT:
			if (parse_accept(optarg, &o->pol.accept_tcb)) {
				fprintf(stderr, "tdx-runner verify: --accept takes TCB statuses such as "
				                "UpToDate,SWHardeningNeeded\n");
				return 2;
			}
			break;
		case O_DEBUG: o->pol.allow_debug = 1; break;
		case O_STD: o->pol.allow_service_td = 1; break;
		case O_RES: o->pol.allow_reserved = 1; break;
		case O_SIM: o->pol.allow_simulated = 1; break;
		case O_APP: o->pol.expected_app_id = optarg; break;
		case O_CH: o->pol.expected_compose_hash = optarg; break;
		case O_RD:
			if (tdxr_hex_decode_exact(optarg, o->report_data, 64)) {
				fprintf(stderr,
				        "tdx-runner verify: --expect-report-data takes 128 hex digits\n");
				return 2;
			}
			o->pol.expected_report_data = o->report_data;
			break;
		case O_MRTD:
			if (o->n_mrtd >= 16) {
				fprintf(stderr, "tdx-runner verify: at most 16 --mrtd values\n");
				return 2;
			}
			o->mrtd[o->n_mrtd++] = optarg;
			o->pol.mrtd = o->mrtd;
			break;
		case O_JSON: o->json = 1; break;
		case O_BOUT: o->bundle_out = optarg; break;
		case O_SOUT: o->statement_out = optarg; break;
		case O_SUBJECT:
			if (o->n_subjects >= sizeof(o->subjects) / sizeof(o->subjects[0])) {
				fprintf(stderr, "tdx-runner verify: at most 64 --subject files\n");
				return 2;
			}
			o->subjects[o->n_subjects++] = optarg;
			break;
		default:
			fprintf(stderr, "tdx-runner verify: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc)
		o->bundle = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "tdx-runner verify: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->bundle && (o->quote || o->collateral || o->eventlog || o->app_compose || o->app_cert)) {
		fprintf(stderr, "tdx-runner verify: a BUNDLE carries its own quote and collateral; "
		                "do not combine it with --quote/--collateral/--event-log\n");
		return 2;
	}
	if (!o->bundle && (o->n_subjects || o->statement_out)) {
		fprintf(stderr, "tdx-runner verify: --subject and --statement-out need a BUNDLE (its end "
		                "part holds the statement)\n");
		return 2;
	}
	if (!o->bundle && (!o->collateral || (!o->quote && !o->eventlog))) {
		fprintf(stderr, "tdx-runner verify: needs --quote FILE and --collateral FILE, or a BUNDLE "
		                "(see --help)\n");
		return 2;
	}
	return 0;
}

static int print_verdict(const struct attest_verdict *v, int json)
{
	static const char *const res[] = { "pass", "FAIL", "skip" };
	struct tdxr_err e;
	char *text = NULL;
	size_t i;

	if (json) {
		if (attest_verdict_to_json(v, &text, &e)) {
			fprintf(stderr, "tdx-runner verify: %s\n", e.msg);
			return 2;
		}
		printf("%s\n", text);
		free(text);
		return 0;
	}
	for (i = 0; i < v->n_steps; i++)
		printf("  %-4s %-20s %s\n", res[v->steps[i].result], v->steps[i].name, v->steps[i].detail);
	printf("%s%s", v->ok ? "VERIFIED" : "NOT VERIFIED",
	       v->simulated ? " (SIMULATED root of trust: not Intel)" : "");
	if (v->have_status) {
		printf(": TCB %s", attest_tcb_status_name(v->status));
		for (i = 0; i < v->n_advisory; i++)
			printf("%s%s", i ? "," : " [", v->advisory_ids[i]);
		if (v->n_advisory)
			printf("]");
	}
	printf("\n");
	if (!v->ok)
		printf("error: %s\n", v->error);
	return 0;
}

/* PEM or DER certificate file -> DER bytes (OPENSSL_free'd by the caller via free_der). */
static int load_root(const char *path, uint8_t **der, size_t *len)
{
	uint8_t *raw = NULL;
	size_t n = 0;
	const unsigned char *p;
	unsigned char *d = NULL;
	X509 *x = NULL;
	BIO *bio;
	int rc = read_file(path, 65536, &raw, &n), dl;

	if (rc)
		return rc;
	p = raw;
	x = d2i_X509(NULL, &p, (long)n);
	if (x == NULL) {
		bio = BIO_new_mem_buf(raw, (int)n);
		x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
	}
	free(raw);
	dl = x ? i2d_X509(x, &d) : -1;
	X509_free(x);
	if (dl <= 0) {
		fprintf(stderr, "tdx-runner verify: --root %s is not a DER or PEM certificate\n", path);
		return 2;
	}
	*der = malloc((size_t)dl);
	if (*der)
		memcpy(*der, d, (size_t)dl);
	OPENSSL_free(d);
	*len = (size_t)dl;
	return *der ? 0 : 2;
}

/* SHA-256 of a file, read as a stream (a subject may be large). */
static int hash_file(const char *path, uint8_t out[32])
{
	unsigned char buf[65536];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	FILE *f = fopen(path, "rbe");
	unsigned int n = 0;
	size_t r;
	int ok = md && f && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;

	while (ok && (r = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = EVP_DigestUpdate(md, buf, r) == 1;
	ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, out, &n) == 1 && n == 32;
	if (f)
		fclose(f);
	EVP_MD_CTX_free(md);
	if (!ok) {
		fprintf(stderr, "tdx-runner verify: --subject %s: cannot read the file\n", path);
		return 2;
	}
	return 0;
}

static json_t *hexj(const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	json_t *j = h ? json_string(h) : json_null();

	free(h);
	return j;
}

/* The statement the end quote binds, as JSON: digests and subjects (only when it parsed). */
static json_t *statement_json(const struct attest_bundle_end *end)
{
	json_t *o = json_object(), *subs = json_array();
	size_t i;

	json_object_set_new(o, "sha256", hexj(end->statement_sha256, 32));
	json_object_set_new(o, "report_data", hexj(end->report_data, 64));
	json_object_set_new(o, "predicate_type", json_string(ATTEST_STATEMENT_PREDICATE_TYPE));
	for (i = 0; end->statement && i < end->statement->n_subjects; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "name", json_string(end->statement->subjects[i].name));
		json_object_set_new(s, "sha256", hexj(end->statement->subjects[i].sha256, 32));
		json_array_append_new(subs, s);
	}
	json_object_set_new(o, "subjects", subs);
	return o;
}

/* --json for a bundle: the verdict object plus, with an end part, "statement" and "end". */
static int print_bundle_json(const struct attest_verdict *v, const struct attest_bundle_end *end)
{
	struct tdxr_err e;
	json_t *o, *ej;
	char *text = NULL;

	if (attest_verdict_to_json(v, &text, &e)) {
		fprintf(stderr, "tdx-runner verify: %s\n", e.msg);
		return 2;
	}
	o = json_loads(text, 0, NULL);
	free(text);
	text = NULL;
	if (o == NULL)
		return 2;
	if (end && end->statement_raw)
		json_object_set_new(o, "statement", statement_json(end));
	if (end && end->verdict && attest_verdict_to_json(end->verdict, &text, &e) == 0) {
		ej = json_loads(text, 0, NULL);
		if (ej)
			json_object_set_new(o, "end", ej);
		free(text);
	}
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text == NULL)
		return 2;
	printf("%s\n", text);
	free(text);
	return 0;
}

static int verify_bundle(struct opts *o)
{
	struct attest_bundle_verify_opts bo;
	struct attest_bundle_end *end = NULL;
	struct attest_verdict *v = NULL;
	uint8_t(*digests)[32] = NULL;
	struct tdxr_err e;
	uint8_t *text = NULL;
	size_t len = 0, i;
	char hx[65];
	int rc;

	tdxr_err_clear(&e);
	memset(&bo, 0, sizeof(bo));
	if (o->n_subjects) {
		digests = calloc(o->n_subjects, sizeof(*digests));
		if (digests == NULL)
			return 2;
		for (i = 0; i < o->n_subjects; i++)
			if ((rc = hash_file(o->subjects[i], digests[i]))) {
				free(digests);
				return rc;
			}
	}
	if ((rc = read_file(o->bundle, TDXR_CAP_BUNDLE, &text, &len))) {
		free(digests);
		return rc;
	}
	bo.policy = &o->pol;
	bo.now_override = o->now > 0 ? o->now : 0;
	bo.subjects = (const uint8_t(*)[32])digests;
	bo.subject_names = o->subjects;
	bo.n_subjects = o->n_subjects;
	if (attest_bundle_verify_ex(text, len, &bo, &v, &end, &e)) {
		fprintf(stderr, "tdx-runner verify: %s\n", e.msg);
		free(text);
		free(digests);
		return 2;
	}
	free(text);
	free(digests);
	if (o->json) {
		rc = print_bundle_json(v, end);
	} else {
		rc = print_verdict(v, 0);
		if (end && end->statement && v->ok) {
			tdxr_hex_encode(end->statement_sha256, 32, hx);
			printf("statement sha256 %s, bound by the end quote; subjects:\n", hx);
			for (i = 0; i < end->statement->n_subjects; i++) {
				tdxr_hex_encode(end->statement->subjects[i].sha256, 32, hx);
				printf("  %s  %s\n", hx, end->statement->subjects[i].name);
			}
		}
	}
	if (!rc)
		rc = v->ok ? 0 : 1;
	if (!rc && o->statement_out) {
		if (end == NULL || end->statement_raw == NULL) {
			fprintf(stderr, "tdx-runner verify: --statement-out: the bundle has no end part\n");
			rc = 1;
		} else if (tdxr_file_write_atomic(o->statement_out, end->statement_raw, end->statement_len,
		                                  0644, &e)) {
			fprintf(stderr, "tdx-runner verify: --statement-out: %s\n", e.msg);
			rc = 2;
		}
	}
	attest_bundle_end_free(end);
	attest_verdict_free(v);
	return rc;
}

/* Event-log file: a JSON array, an evidence response (Info/GetQuote/...), or raw CCEL. */
static int load_eventlog(const char *path, struct attest_eventlog **log, struct attest_evidence **ev)
{
	struct tdxr_err e;
	uint8_t *raw = NULL;
	size_t n = 0, i = 0;
	int rc;

	tdxr_err_clear(&e);
	if ((rc = read_file(path, TDXR_CAP_EVENTLOG, &raw, &n)))
		return rc;
	while (i < n && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t'))
		i++;
	if (i < n && raw[i] == '[')
		rc = attest_eventlog_parse_json(raw, n, log, &e);
	else if (i < n && raw[i] == '{')
		rc = attest_evidence_parse(raw, n, ev, &e);
	else
		rc = attest_eventlog_parse_ccel(raw, n, log, &e);
	free(raw);
	if (rc) {
		fprintf(stderr, "tdx-runner verify: %s: %s\n", path, e.msg);
		return 2;
	}
	return 0;
}

int cli_verify(int argc, char **argv)
{
	struct opts o;
	struct attest_input in;
	struct attest_collateral *coll = NULL;
	struct attest_eventlog *log = NULL;
	struct attest_evidence *ev = NULL;
	struct attest_verdict *v = NULL;
	struct tdxr_err e;
	uint8_t *raw = NULL, *quote = NULL, *compose = NULL, *cert = NULL, *root = NULL;
	size_t n = 0, compose_len = 0, cert_len = 0;
	char *bundle = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&in, 0, sizeof(in));
	tdxr_err_clear(&e);
	if ((rc = parse_args(argc, argv, &o)))
		return rc;
	if (o.bundle)
		return verify_bundle(&o);
	in.now = o.now > 0 ? o.now : (int64_t)time(NULL);
	if ((rc = read_file(o.collateral, TDXR_CAP_COLLATERAL, &raw, &n)))
		goto out;
	if (attest_collateral_parse(raw, n, &coll, &e)) {
		fprintf(stderr, "tdx-runner verify: %s: %s\n", o.collateral, e.msg);
		rc = 2;
		goto out;
	}
	free(raw);
	raw = NULL;
	in.collateral = coll;
	if (o.eventlog && (rc = load_eventlog(o.eventlog, &log, &ev)))
		goto out;
	in.eventlog = log ? log : ev ? ev->eventlog : NULL;
	if (ev && ev->app_compose && !o.app_compose) {
		in.app_compose = ev->app_compose;
		in.app_compose_len = strlen(ev->app_compose);
	}
	if (o.quote) {
		if ((rc = read_file(o.quote, 2 * (size_t)TDXR_CAP_QUOTE + 64, &raw, &n)))
			goto out;
		if (attest_quote_load(raw, n, &quote, &in.quote_len, &e)) {
			fprintf(stderr, "tdx-runner verify: %s: %s\n", o.quote, e.msg);
			rc = 2;
			goto out;
		}
		in.quote = quote;
	} else if (ev && ev->quote) {
		in.quote = ev->quote;
		in.quote_len = ev->quote_len;
		if (ev->app_cert && !o.app_cert) {
			in.app_cert_pem = ev->app_cert;
			in.app_cert_len = strlen(ev->app_cert);
		}
	} else {
		fprintf(stderr, "tdx-runner verify: %s carries no quote; pass --quote FILE\n", o.eventlog);
		rc = 2;
		goto out;
	}
	if (o.app_compose) {
		if ((rc = read_file(o.app_compose, TDXR_CAP_EVENTLOG, &compose, &compose_len)))
			goto out;
		in.app_compose = (const char *)compose;
		in.app_compose_len = compose_len;
	}
	if (o.app_cert) {
		if ((rc = read_file(o.app_cert, TDXR_CAP_EVENTLOG, &cert, &cert_len)))
			goto out;
		in.app_cert_pem = (const char *)cert;
		in.app_cert_len = cert_len;
	}
	if (o.root) {
		if ((rc = load_root(o.root, &root, &in.root_der_len)))
			goto out;
		in.root_der = root;
		in.root_simulated = 1;
	}
	if (attest_verify(&in, &o.pol, &v, &e)) {
		fprintf(stderr, "tdx-runner verify: %s\n", e.msg);
		rc = 2;
		goto out;
	}
	if (o.bundle_out) {
		if (attest_bundle_write(&in, &o.pol, v, NULL, &bundle, &e) ||
		    tdxr_file_write_atomic(o.bundle_out, bundle, strlen(bundle), 0644, &e)) {
			fprintf(stderr, "tdx-runner verify: --bundle-out: %s\n", e.msg);
			rc = 2;
			goto out;
		}
	}
	rc = print_verdict(v, o.json);
	if (!rc)
		rc = v->ok ? 0 : 1;
out:
	free(raw);
	free(quote);
	free(compose);
	free(cert);
	free(root);
	free(bundle);
	attest_collateral_free(coll);
	attest_eventlog_free(log);
	attest_evidence_free(ev);
	attest_verdict_free(v);
	return rc;
}
