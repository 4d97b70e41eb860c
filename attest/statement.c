/*
 * statement.c - the job statement (an in-toto Statement v1 with the
 * tdx-runner job predicate) that the end quote binds: canonical serialisation,
 * a strict bounded parser, and the REPORTDATA that commits to it.
 *
 * Invariants: attest_statement_build is the only serialiser (Jansson compact,
 * keys sorted, ASCII escapes) and validates exactly what the parser validates,
 * so every built statement parses and every parsed statement rebuilds to the
 * same bytes (the parser compares). REPORTDATA is domain-separated
 * (ATTEST_STATEMENT_DOMAIN and a NUL before the statement) so a quote made
 * for another purpose - the gate, an RA-TLS certificate, an application's own
 * SHA-512 of some JSON - can never be read as a statement quote.
 *
 * Trust boundary: statement bytes come from bundles handed to `tdx-runner
 * verify` and are untrusted: capped at ATTEST_STATEMENT_MAX bytes, every string
 * capped and checked for NULs and control characters.
 */
#include "attest/attest.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A parsed statement: the public struct plus what its pointers borrow from. */
struct stmt_owned {
	struct attest_statement s; /* first: attest_statement_free casts back */
	json_t *root;              /* every string of s points into it */
	struct attest_subject *subjects;
};

#define MAX_TIME 253402300799LL /* 9999-12-31T23:59:59Z */

/* ---- validation shared by build and parse ---- */

static int text_check(const char *what, const char *s, size_t len, int allow_empty, struct tdxr_err *err)
{
	size_t i;

	if (len == 0 && !allow_empty)
		return tdxr_err_set(err, TDXR_EINVAL, "%s is empty", what);
	if (len > ATTEST_STATEMENT_MAX_STRING)
		return tdxr_err_set(err, TDXR_EINVAL, "%s is longer than %u bytes", what,
		                    ATTEST_STATEMENT_MAX_STRING);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return tdxr_err_set(err, TDXR_EINVAL, "%s holds a control character at byte %zu",
			                    what, i);
	return 0;
}

int attest_subject_name_check(const char *name, struct tdxr_err *err)
{
	size_t len, i, start;
	int rc;

	if (name == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "subject: no name");
	len = strlen(name);
	if ((rc = text_check("subject name", name, len, 0, err)))
		return rc;
	if (name[0] == '/')
		return tdxr_err_set(
		    err, TDXR_EINVAL,
		    "subject '%.64s' is an absolute path: name it relative to the work directory", name);
	for (start = 0, i = 0; i <= len; i++) {
		if (i == len || name[i] == '/') {
			if (i - start == 2 && name[start] == '.' && name[start + 1] == '.')
				return tdxr_err_set(
				    err, TDXR_EINVAL,
				    "subject '%.64s' has a '..' component: it must stay inside "
				    "the work directory",
				    name);
			start = i + 1;
		}
	}
	return 0;
}

/* Lower-case hex of at most max digits (exactly max when exact), possibly empty. */
static int hex_check(const char *what, const char *s, size_t max, int exact, struct tdxr_err *err)
{
	size_t n = strlen(s), i;

	if ((exact && n != max) || n > max || n % 2)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: %s is not %s%zu hex digits", what,
		                    exact ? "" : "at most ", max);
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return tdxr_err_set(err, TDXR_EINVAL, "statement: %s is not lower-case hex", what);
	return 0;
}

/* Optional strings: NULL and "" are both written as null. */
static int opt_text(const char *what, const char *s, struct tdxr_err *err)
{
	int rc = s && *s ? text_check(what, s, strlen(s), 0, err) : 0;

	if (rc)
		tdxr_err_prefix(err, "statement");
	return rc;
}

static int validate(const struct attest_statement *s, struct tdxr_err *err)
{
	const struct attest_statement_start *st = &s->start;
	size_t i, j;
	int rc;

	if (s->n_subjects == 0 || s->subjects == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: no subject");
	if (s->n_subjects > ATTEST_STATEMENT_MAX_SUBJECTS)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: more than %u subjects",
		                    ATTEST_STATEMENT_MAX_SUBJECTS);
	for (i = 0; i < s->n_subjects; i++) {
		if ((rc = attest_subject_name_check(s->subjects[i].name, err))) {
			tdxr_err_prefix(err, "statement");
			return rc;
		}
		for (j = 0; j < i; j++)
			if (strcmp(s->subjects[i].name, s->subjects[j].name) == 0)
				return tdxr_err_set(err, TDXR_EINVAL,
				                    "statement: subject '%.64s' is listed twice",
				                    s->subjects[i].name);
	}
	if (s->ci_system == NULL || !*s->ci_system || s->lease_id == NULL || !*s->lease_id ||
	    s->executor == NULL || !*s->executor)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "statement: ci.system, lease.id and lease.executor are required");
	if ((rc = opt_text("repository", s->repository, err)) || (rc = opt_text("commit", s->commit, err)) ||
	    (rc = opt_text("ci.system", s->ci_system, err)) ||
	    (rc = opt_text("ci.job_id", s->ci_job_id, err)) ||
	    (rc = opt_text("ci.run_id", s->ci_run_id, err)) ||
	    (rc = opt_text("ci.workflow", s->ci_workflow, err)) ||
	    (rc = opt_text("ci.runner_name", s->ci_runner_name, err)) ||
	    (rc = opt_text("lease.id", s->lease_id, err)) ||
	    (rc = opt_text("lease.executor", s->executor, err)))
		return rc;
	if (s->started_at < 0 || s->started_at > MAX_TIME || s->ended_at < 0 || s->ended_at > MAX_TIME)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: a time is out of range");
	if (s->started_at > s->ended_at)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: started_at is after ended_at");
	if ((rc = hex_check("start.quote_sha256", st->quote_sha256, 64, 1, err)) ||
	    (rc = hex_check("start.nonce", st->nonce, 128, 0, err)) ||
	    (rc = hex_check("start.app_id", st->app_id, 128, 0, err)) ||
	    (rc = hex_check("start.compose_hash", st->compose_hash, 128, 0, err)) ||
	    (rc = hex_check("start.instance_id", st->instance_id, 128, 0, err)))
		return rc;
	if (memchr(st->tcb_status, '\0', sizeof(st->tcb_status)) == NULL ||
	    (st->tcb_status[0] && attest_tcb_status_parse(st->tcb_status) == ATTEST_TCB_UNKNOWN))
		return tdxr_err_set(err, TDXR_EINVAL, "statement: start.tcb_status is not a TCB status");
	if (st->simulated != 0 && st->simulated != 1)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: start.simulated is not a boolean");
	return 0;
}

/* ---- build ---- */

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *time_json(int64_t t)
{
	char ts[21];

	tdxr_time_format(t, ts);
	return json_string(ts);
}

/* json_object_set_new that remembers a failure (NULL value: not UTF-8, or ENOMEM). */
static void put(json_t *o, const char *k, json_t *v, int *bad)
{
	if (o == NULL || v == NULL || json_object_set_new(o, k, v) != 0)
		*bad = 1;
}

int attest_statement_build(const struct attest_statement *s, char **out, size_t *len, struct tdxr_err *err)
{
	const struct attest_statement_start *st = &s->start;
	json_t *root = NULL, *subs, *pred, *ci, *lease, *start;
	char hex[65];
	size_t i;
	int bad = 0, rc;

	*out = NULL;
	*len = 0;
	if ((rc = validate(s, err)))
		return rc;
	root = json_object();
	subs = json_array();
	put(root, "_type", json_string(ATTEST_STATEMENT_TYPE), &bad);
	put(root, "predicateType", json_string(ATTEST_STATEMENT_PREDICATE_TYPE), &bad);
	put(root, "subject", subs, &bad);
	for (i = 0; subs && i < s->n_subjects; i++) {
		json_t *o = json_object(), *d = json_object();

		tdxr_hex_encode(s->subjects[i].sha256, 32, hex);
		put(d, "sha256", json_string(hex), &bad);
		put(o, "digest", d, &bad);
		put(o, "name", json_string(s->subjects[i].name), &bad);
		if (o == NULL || json_array_append_new(subs, o) != 0)
			bad = 1;
	}
	pred = json_object();
	put(root, "predicate", pred, &bad);
	put(pred, "repository", str_or_null(s->repository), &bad);
	put(pred, "commit", str_or_null(s->commit), &bad);
	ci = json_object();
	put(pred, "ci", ci, &bad);
	put(ci, "system", json_string(s->ci_system), &bad);
	put(ci, "job_id", str_or_null(s->ci_job_id), &bad);
	put(ci, "run_id", str_or_null(s->ci_run_id), &bad);
	put(ci, "workflow", str_or_null(s->ci_workflow), &bad);
	put(ci, "runner_name", str_or_null(s->ci_runner_name), &bad);
	lease = json_object();
	put(pred, "lease", lease, &bad);
	put(lease, "id", json_string(s->lease_id), &bad);
	put(lease, "executor", json_string(s->executor), &bad);
	put(pred, "started_at", time_json(s->started_at), &bad);
	put(pred, "ended_at", time_json(s->ended_at), &bad);
	put(pred, "exit_code", s->has_exit_code ? json_integer(s->exit_code) : json_null(), &bad);
	start = json_object();
	put(pred, "start", start, &bad);
	put(start, "quote_sha256", json_string(st->quote_sha256), &bad);
	put(start, "nonce", str_or_null(st->nonce), &bad);
	put(start, "app_id", json_string(st->app_id), &bad);
	put(start, "compose_hash", json_string(st->compose_hash), &bad);
	put(start, "instance_id", json_string(st->instance_id), &bad);
	put(start, "tcb_status", str_or_null(st->tcb_status), &bad);
	put(start, "simulated", json_boolean(st->simulated), &bad);
	if (bad) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "statement: a string is not valid UTF-8 (or out of memory)");
		goto out;
	}
	*out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	if (*out == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	*len = strlen(*out);
	if (*len > ATTEST_STATEMENT_MAX) {
		free(*out);
		*out = NULL;
		*len = 0;
		rc = tdxr_err_set(err, TDXR_ETOOBIG, "statement: longer than %u bytes", ATTEST_STATEMENT_MAX);
	}
out:
	json_decref(root);
	return rc;
}

/* ---- parse ---- */

/* obj must have exactly these n keys. */
static int keys_exactly(json_t *obj, const char *what, const char *const *keys, size_t n,
                        struct tdxr_err *err)
{
	const char *k;
	json_t *v;
	size_t i;

	if (!json_is_object(obj))
		return tdxr_err_set(err, TDXR_EINVAL, "statement: %s is not an object", what);
	json_object_foreach(obj, k, v)
	{
		for (i = 0; i < n; i++)
			if (strcmp(k, keys[i]) == 0)
				break;
		if (i == n)
			return tdxr_err_set(err, TDXR_EINVAL, "statement: %s has an unknown key '%.32s'",
			                    what, k);
	}
	for (i = 0; i < n; i++)
		if (json_object_get(obj, keys[i]) == NULL)
			return tdxr_err_set(err, TDXR_EINVAL, "statement: %s.%s is missing", what, keys[i]);
	return 0;
}

/* A string (or null when nullable) without embedded NULs; borrowed from the tree. */
static int get_str(json_t *obj, const char *k, const char *what, int nullable, const char **out,
                   struct tdxr_err *err)
{
	json_t *v = json_object_get(obj, k);

	*out = NULL;
	if (nullable && json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return tdxr_err_set(err, TDXR_EINVAL, "statement: %s is not a string%s", what,
		                    nullable ? " or null" : "");
	if (json_string_length(v) != strlen(json_string_value(v)) ||
	    json_string_length(v) > ATTEST_STATEMENT_MAX_STRING)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: %s holds a NUL or is too long", what);
	*out = json_string_value(v);
	return 0;
}

static int get_time(json_t *obj, const char *k, int64_t *out, struct tdxr_err *err)
{
	const char *s;
	char canon[21];
	int rc;

	if ((rc = get_str(obj, k, k, 0, &s, err)))
		return rc;
	if (tdxr_time_parse_rfc3339(s, out) != 0 || *out < 0 || *out > MAX_TIME)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: predicate.%s is not an RFC 3339 time", k);
	tdxr_time_format(*out, canon);
	if (strcmp(canon, s) != 0)
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "statement: predicate.%s is not in the form YYYY-MM-DDTHH:MM:SSZ", k);
	return 0;
}

/* Copies a start string (or null -> "") into its fixed field; validate() checks its form. */
static int get_start_str(json_t *obj, const char *k, int nullable, char *dst, size_t cap,
                         struct tdxr_err *err)
{
	const char *s;
	char what[48];
	int rc;

	snprintf(what, sizeof(what), "predicate.start.%s", k);
	if ((rc = get_str(obj, k, what, nullable, &s, err)))
		return rc;
	dst[0] = '\0';
	if (s == NULL)
		return 0;
	if (strlen(s) >= cap)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: %s is too long", what);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int parse_subjects(json_t *a, struct stmt_owned *w, struct tdxr_err *err)
{
	static const char *const skeys[] = { "digest", "name" };
	static const char *const dkeys[] = { "sha256" };
	json_t *e;
	size_t i, n;
	int rc;

	if (!json_is_array(a))
		return tdxr_err_set(err, TDXR_EINVAL, "statement: subject is not an array");
	n = json_array_size(a);
	if (n == 0 || n > ATTEST_STATEMENT_MAX_SUBJECTS)
		return tdxr_err_set(err, TDXR_EINVAL, "statement: subject must list 1 to %u entries",
		                    ATTEST_STATEMENT_MAX_SUBJECTS);
	w->subjects = calloc(n, sizeof(*w->subjects));
	if (w->subjects == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_array_foreach(a, i, e)
	{
		const char *hx;
		json_t *d;

		if ((rc = keys_exactly(e, "subject[]", skeys, 2, err)))
			return rc;
		d = json_object_get(e, "digest");
		if ((rc = keys_exactly(d, "subject[].digest", dkeys, 1, err)) ||
		    (rc = get_str(e, "name", "subject[].name", 0, &w->subjects[i].name, err)) ||
		    (rc = get_str(d, "sha256", "subject[].digest.sha256", 0, &hx, err)) ||
		    (rc = hex_check("subject[].digest.sha256", hx, 64, 1, err)))
			return rc;
		if (tdxr_hex_decode_exact(hx, w->subjects[i].sha256, 32))
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "statement: subject[].digest.sha256 is not hex");
	}
	w->s.subjects = w->subjects;
	w->s.n_subjects = n;
	return 0;
}

static int parse_predicate(json_t *p, struct stmt_owned *w, struct tdxr_err *err)
{
	static const char *const pkeys[] = { "ci",    "commit",     "ended_at", "exit_code",
		                             "lease", "repository", "start",    "started_at" };
	static const char *const ckeys[] = { "job_id", "run_id", "runner_name", "system", "workflow" };
	static const char *const lkeys[] = { "executor", "id" };
	static const char *const skeys[] = { "app_id",       "compose_hash", "instance_id", "nonce",
		                             "quote_sha256", "simulated",    "tcb_status" };
	struct attest_statement *s = &w->s;
	json_t *ci, *lease, *st, *v;
	int rc;

	if ((rc = keys_exactly(p, "predicate", pkeys, 8, err)))
		return rc;
	ci = json_object_get(p, "ci");
	lease = json_object_get(p, "lease");
	st = json_object_get(p, "start");
	if ((rc = keys_exactly(ci, "predicate.ci", ckeys, 5, err)) ||
	    (rc = keys_exactly(lease, "predicate.lease", lkeys, 2, err)) ||
	    (rc = keys_exactly(st, "predicate.start", skeys, 7, err)))
		return rc;
	if ((rc = get_str(p, "repository", "predicate.repository", 1, &s->repository, err)) ||
	    (rc = get_str(p, "commit", "predicate.commit", 1, &s->commit, err)) ||
	    (rc = get_str(ci, "system", "predicate.ci.system", 0, &s->ci_system, err)) ||
	    (rc = get_str(ci, "job_id", "predicate.ci.job_id", 1, &s->ci_job_id, err)) ||
	    (rc = get_str(ci, "run_id", "predicate.ci.run_id", 1, &s->ci_run_id, err)) ||
	    (rc = get_str(ci, "workflow", "predicate.ci.workflow", 1, &s->ci_workflow, err)) ||
	    (rc = get_str(ci, "runner_name", "predicate.ci.runner_name", 1, &s->ci_runner_name, err)) ||
	    (rc = get_str(lease, "id", "predicate.lease.id", 0, &s->lease_id, err)) ||
	    (rc = get_str(lease, "executor", "predicate.lease.executor", 0, &s->executor, err)) ||
	    (rc = get_time(p, "started_at", &s->started_at, err)) ||
	    (rc = get_time(p, "ended_at", &s->ended_at, err)))
		return rc;
	v = json_object_get(p, "exit_code");
	if (json_is_integer(v)) {
		if (json_integer_value(v) < -2147483647LL - 1 || json_integer_value(v) > 2147483647LL)
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "statement: predicate.exit_code is out of range");
		s->has_exit_code = 1;
		s->exit_code = (int)json_integer_value(v);
	} else if (!json_is_null(v)) {
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "statement: predicate.exit_code is not an integer or null");
	}
	if ((rc = get_start_str(st, "quote_sha256", 0, s->start.quote_sha256, sizeof(s->start.quote_sha256),
	                        err)) ||
	    (rc = get_start_str(st, "nonce", 1, s->start.nonce, sizeof(s->start.nonce), err)) ||
	    (rc = get_start_str(st, "app_id", 0, s->start.app_id, sizeof(s->start.app_id), err)) ||
	    (rc = get_start_str(st, "compose_hash", 0, s->start.compose_hash, sizeof(s->start.compose_hash),
	                        err)) ||
	    (rc = get_start_str(st, "instance_id", 0, s->start.instance_id, sizeof(s->start.instance_id),
	                        err)) ||
	    (rc = get_start_str(st, "tcb_status", 1, s->start.tcb_status, sizeof(s->start.tcb_status), err)))
		return rc;
	v = json_object_get(st, "simulated");
	if (!json_is_boolean(v))
		return tdxr_err_set(err, TDXR_EINVAL,
		                    "statement: predicate.start.simulated is not a boolean");
	s->start.simulated = json_is_true(v);
	return 0;
}

int attest_statement_parse(const uint8_t *p, size_t len, struct attest_statement **out, struct tdxr_err *err)
{
	static const char *const rkeys[] = { "_type", "predicate", "predicateType", "subject" };
	struct stmt_owned *w = NULL;
	json_error_t jerr;
	const char *t;
	char *canon = NULL;
	size_t clen = 0;
	int rc;

	*out = NULL;
	if (len > ATTEST_STATEMENT_MAX)
		return tdxr_err_set(err, TDXR_ETOOBIG, "statement: %zu bytes exceeds the limit of %u", len,
		                    ATTEST_STATEMENT_MAX);
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	w->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
	if (w->root == NULL) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "statement: invalid JSON at byte %d: %s", jerr.position,
		                  jerr.text);
		goto out;
	}
	if ((rc = keys_exactly(w->root, "the statement", rkeys, 4, err)) ||
	    (rc = get_str(w->root, "_type", "_type", 0, &t, err)))
		goto out;
	if (strcmp(t, ATTEST_STATEMENT_TYPE) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "statement: _type is not %s", ATTEST_STATEMENT_TYPE);
		goto out;
	}
	if ((rc = get_str(w->root, "predicateType", "predicateType", 0, &t, err)))
		goto out;
	if (strcmp(t, ATTEST_STATEMENT_PREDICATE_TYPE) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "statement: predicateType is not %s",
		                  ATTEST_STATEMENT_PREDICATE_TYPE);
		goto out;
	}
	if ((rc = parse_subjects(json_object_get(w->root, "subject"), w, err)) ||
	    (rc = parse_predicate(json_object_get(w->root, "predicate"), w, err)))
		goto out;
	/* validate() runs inside build; the rebuilt bytes must be the input, byte for byte. */
	if ((rc = attest_statement_build(&w->s, &canon, &clen, err)))
		goto out;
	if (clen != len || CRYPTO_memcmp(canon, p, len) != 0) {
		rc = tdxr_err_set(err, TDXR_EINVAL,
		                  "statement: not in canonical form (keys sorted, no whitespace, ASCII "
		                  "escapes, empty values as null)");
		goto out;
	}
	*out = &w->s;
	w = NULL;
out:
	free(canon);
	if (w) {
		json_decref(w->root);
		free(w->subjects);
		free(w);
	}
	return rc;
}

void attest_statement_free(struct attest_statement *s)
{
	struct stmt_owned *w = (struct stmt_owned *)s;

	if (w == NULL)
		return;
	json_decref(w->root);
	free(w->subjects);
	free(w);
}

void attest_statement_report_data(const uint8_t *p, size_t len, uint8_t out[64])
{
	static const char domain[] = ATTEST_STATEMENT_DOMAIN; /* hashed with its NUL */
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 0;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha512(), NULL) != 1 ||
	    EVP_DigestUpdate(md, domain, sizeof(domain)) != 1 || EVP_DigestUpdate(md, p, len) != 1 ||
	    EVP_DigestFinal_ex(md, out, &n) != 1 || n != 64)
		memset(out, 0, 64); /* never matches a quote made over a real digest */
	EVP_MD_CTX_free(md);
}

int attest_statement_has_subject(const struct attest_statement *s, const uint8_t sha256[32])
{
	size_t i;
	int found = 0;

	for (i = 0; s && i < s->n_subjects; i++)
		found |= CRYPTO_memcmp(s->subjects[i].sha256, sha256, 32) == 0;
	return found;
}

/* ---- the start summary ---- */

int attest__statement_start_fill(const uint8_t *quote, size_t quote_len, const char *nonce_hex,
                                 const struct attest_verdict *start, struct attest_statement_start *out,
                                 struct tdxr_err *err);

int attest__statement_start_fill(const uint8_t *quote, size_t quote_len, const char *nonce_hex,
                                 const struct attest_verdict *start, struct attest_statement_start *out,
                                 struct tdxr_err *err)
{
	uint8_t h[32];

	memset(out, 0, sizeof(*out));
	if (EVP_Digest(quote, quote_len, h, NULL, EVP_sha256(), NULL) != 1)
		return tdxr_err_set(err, TDXR_ERROR, "statement: SHA-256 failed");
	tdxr_hex_encode(h, 32, out->quote_sha256);
	if (nonce_hex) {
		if (strlen(nonce_hex) >= sizeof(out->nonce))
			return tdxr_err_set(err, TDXR_EINVAL, "bundle: meta.nonce is too long");
		memcpy(out->nonce, nonce_hex, strlen(nonce_hex) + 1);
	}
	if (start->have_identity) {
		memcpy(out->app_id, start->identity.app_id, sizeof(out->app_id));
		memcpy(out->compose_hash, start->identity.compose_hash, sizeof(out->compose_hash));
		memcpy(out->instance_id, start->identity.instance_id, sizeof(out->instance_id));
	}
	if (start->have_status && start->status != ATTEST_TCB_UNKNOWN)
		snprintf(out->tcb_status, sizeof(out->tcb_status), "%s",
		         attest_tcb_status_name(start->status));
	out->simulated = start->simulated ? 1 : 0;
	return 0;
}

int attest_statement_start_get(const uint8_t *bundle, size_t len, const struct attest_verdict *start,
                               struct attest_statement_start *out, struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *root, *q, *nonce;
	uint8_t *quote = NULL;
	size_t qlen = 0, n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > TDXR_CAP_BUNDLE)
		return tdxr_err_set(err, TDXR_ETOOBIG, "bundle: %zu bytes exceeds the limit", len);
	root = json_loadb((const char *)bundle, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return tdxr_err_set(err, TDXR_EINVAL, "bundle: invalid JSON at line %d column %d: %s",
		                    jerr.line, jerr.column, jerr.text);
	q = json_object_get(root, "quote");
	nonce = json_object_get(json_object_get(root, "meta"), "nonce");
	if (!json_is_string(q) || (n = json_string_length(q)) == 0 || n / 2 > TDXR_CAP_QUOTE) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: 'quote' is missing or too long");
		goto out;
	}
	if (nonce && !json_is_null(nonce) && !json_is_string(nonce)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: meta.nonce is not a string");
		goto out;
	}
	quote = malloc(n / 2 + 1);
	if (quote == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (tdxr_hex_decode(json_string_value(q), n, quote, n / 2 + 1, &qlen)) {
		rc = tdxr_err_set(err, TDXR_EINVAL, "bundle: 'quote' is not hex");
		goto out;
	}
	rc = attest__statement_start_fill(
	    quote, qlen, json_is_string(nonce) ? json_string_value(nonce) : NULL, start, out, err);
out:
	free(quote);
	json_decref(root);
	return rc;
}
