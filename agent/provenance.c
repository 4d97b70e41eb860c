/*
 * provenance.c - the end quote (see provenance.h): subjects hashed in the box
 * with sha256sum through box_exec (bounded output, a timeout), the statement
 * built by attest/, a second quote over
 *   SHA-512("tdx-runner/statement/v1" || 0x00 || statement)
 * asked of the guest agent on the box's pinned session, and the bundle's end
 * part added and re-verified by attest_bundle_end_add under the policy the
 * start bundle records (we wrote it: its relaxations are the agent's own).
 *
 * Invariants: nothing here runs unless the gate passed on this session
 * (box_exec refuses otherwise); a subject path is relative to the work
 * directory, has no ".." component and no control character, so it cannot
 * name a file outside the work directory by its spelling (a symlink the job
 * made can - the job is root in the box, see docs/attestation.md).
 */
#include "agent/provenance.h"

#include "agent/box.h"
#include "agent/remote/remote.h"
#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROV_HASH_TIMEOUT_MS (600 * 1000)
#define PROV_QUOTE_TIMEOUT_MS 30000
#define PROV_OUT_MAX (1u << 20) /* sha256sum's answer */
#define PROV_ERR_MAX 2048u      /* what we keep of its stderr */

int prov_subjects_check(const char *const *paths, size_t n, struct tdxr_err *err)
{
	size_t i, j;
	int rc;

	if (n == 0)
		return tdxr_err_set(err, TDXR_EINVAL, "provenance: no subject");
	if (n > ATTEST_STATEMENT_MAX_SUBJECTS)
		return tdxr_err_set(err, TDXR_EINVAL, "provenance: more than %u subjects",
		                    ATTEST_STATEMENT_MAX_SUBJECTS);
	for (i = 0; i < n; i++) {
		if ((rc = attest_subject_name_check(paths[i], err)))
			return rc;
		for (j = 0; j < i; j++)
			if (strcmp(paths[i], paths[j]) == 0)
				return tdxr_err_set(err, TDXR_EINVAL,
				                    "provenance: subject '%.64s' is listed twice", paths[i]);
	}
	return 0;
}

/* ---- hashing in the box ---- */

struct hash_out {
	struct tdxr_buf out, errtxt;
	int overflow;
};

static int hash_output(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	struct hash_out *h = ctx;

	if (which == REMOTE_OUT_STDERR) {
		if (h->errtxt.len < PROV_ERR_MAX)
			tdxr_buf_append(&h->errtxt, p,
			                n < PROV_ERR_MAX - h->errtxt.len ? n : PROV_ERR_MAX - h->errtxt.len,
			                NULL);
		return 0;
	}
	if (tdxr_buf_append(&h->out, p, n, NULL) != 0) {
		h->overflow = 1;
		return 1; /* stops the command */
	}
	return 0;
}

/* Appends w single-quoted for /bin/sh, and a space. */
static int sq_append(struct tdxr_buf *b, const char *w, struct tdxr_err *err)
{
	int rc = tdxr_buf_append(b, "'", 1, err);

	for (; !rc && *w; w++)
		rc = *w == '\'' ? tdxr_buf_append(b, "'\\''", 4, err) : tdxr_buf_append(b, w, 1, err);
	return rc ? rc : tdxr_buf_append(b, "' ", 2, err);
}

/* One line of sha256sum: ["\"]<64 hex>("  "|" *")<name>; name compared unless escaped. */
static int parse_line(const char *line, size_t len, const char *want, uint8_t out[32])
{
	int escaped = len > 0 && line[0] == '\\';
	char hx[65];

	if (escaped) {
		line++;
		len--;
	}
	if (len < 66 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*'))
		return -1;
	memcpy(hx, line, 64);
	hx[64] = '\0';
	if (tdxr_hex_decode_exact(hx, out, 32))
		return -1;
	if (!escaped && (len - 66 != strlen(want) || memcmp(line + 66, want, len - 66) != 0))
		return -1;
	return 0;
}

static int hash_subjects(struct box *b, const char *const *paths, size_t n, int timeout_ms,
                         struct attest_subject *subs, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result r;
	struct hash_out h;
	struct tdxr_buf cmd;
	const char *p, *end;
	size_t i;
	int rc;

	memset(&h, 0, sizeof(h));
	tdxr_buf_init(&h.out, PROV_OUT_MAX);
	tdxr_buf_init(&h.errtxt, PROV_ERR_MAX + 1);
	tdxr_buf_init(&cmd, 1u << 20);
	/* cd WORK && set -- 'a' 'b' && (every one a regular file) && exec sha256sum -- "$@" */
	if ((rc = tdxr_buf_append(&cmd, "cd ", 3, err)) || (rc = sq_append(&cmd, box_work_dir(b), err)) ||
	    (rc = tdxr_buf_append(&cmd, "&& set -- ", 10, err)))
		goto out;
	for (i = 0; i < n; i++)
		if ((rc = sq_append(&cmd, paths[i], err)))
			goto out;
	if ((rc = tdxr_buf_appendf(
	         &cmd, err, "%s",
	         "&& for p in \"$@\"; do [ -f \"$p\" ] || { printf 'not a regular file: %s\\n' "
	         "\"$p\" >&2; exit 3; }; done && exec sha256sum -- \"$@\"")))
		goto out;
	memset(&eo, 0, sizeof(eo));
	eo.command = (const char *)cmd.data;
	eo.stdin_fd = -1;
	eo.output = hash_output;
	eo.output_ctx = &h;
	eo.timeout_ms = timeout_ms > 0 ? timeout_ms : PROV_HASH_TIMEOUT_MS;
	rc = box_exec(b, &eo, &r, err);
	if (h.overflow) {
		rc = tdxr_err_set(err, TDXR_ETOOBIG, "provenance: sha256sum printed more than %u bytes",
		                  PROV_OUT_MAX);
		goto out;
	}
	if (rc) {
		tdxr_err_prefix(err, "provenance: hashing the subjects");
		goto out;
	}
	if (!r.exited || r.exit_status != 0) {
		char *nl;

		if (h.errtxt.data && (nl = strchr((char *)h.errtxt.data, '\n')) != NULL)
			*nl = '\0';
		rc = tdxr_err_set(err, TDXR_EIO,
		                  "provenance: hashing the subjects in the box failed (%s%d): %.160s",
		                  r.exited ? "exit " : "signal ", r.exited ? r.exit_status : 0,
		                  h.errtxt.data ? (const char *)h.errtxt.data : "");
		goto out;
	}
	p = h.out.data ? (const char *)h.out.data : "";
	end = p + h.out.len;
	for (i = 0; i < n; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL || parse_line(p, (size_t)(nl - p), paths[i], subs[i].sha256) != 0) {
			rc = tdxr_err_set(err, TDXR_EIO,
			                  "provenance: sha256sum's line for '%.64s' is not as expected",
			                  paths[i]);
			goto out;
		}
		subs[i].name = paths[i];
		p = nl + 1;
	}
	if (p != end)
		rc = tdxr_err_set(err, TDXR_EIO, "provenance: sha256sum printed more lines than subjects");
out:
	tdxr_buf_dispose(&cmd);
	tdxr_buf_dispose(&h.out);
	tdxr_buf_dispose(&h.errtxt);
	return rc;
}

/* The start bundle's verified_at (when the gate judged the box). */
static int64_t bundle_time(const char *bundle)
{
	json_t *root = json_loads(bundle, JSON_REJECT_DUPLICATES, NULL);
	json_t *v = json_object_get(root, "verified_at");
	int64_t t = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;

	json_decref(root);
	return t;
}

int prov_attest_end(struct box *b, const char *const *subject_paths, size_t n, const struct prov_info *info,
                    char **bundle_out, struct tdxr_err *err)
{
	const struct attest_verdict *start = box_verdict(b);
	const char *bundle = box_bundle(b);
	struct attest_bundle_end_input ein;
	struct attest_evidence *ev = NULL;
	struct attest_verdict *v = NULL;
	struct attest_subject *subs = NULL;
	struct attest_statement st;
	struct attest_policy pol;
	char *stmt = NULL, *ext = NULL;
	uint8_t rd[64], *body = NULL;
	size_t slen = 0, blen = 0;
	int rc;

	*bundle_out = NULL;
	if ((rc = prov_subjects_check(subject_paths, n, err)))
		return rc;
	if (bundle == NULL || start == NULL || !start->ok || !box_attested(b) || box_ssh(b) == NULL)
		return tdxr_err_set(
		    err, TDXR_EATTEST,
		    "provenance: refused: the box has not passed the gate on this connection");
	subs = calloc(n, sizeof(*subs));
	if (subs == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if ((rc = hash_subjects(b, subject_paths, n, info ? info->hash_timeout_ms : 0, subs, err)))
		goto out;
	memset(&st, 0, sizeof(st));
	st.subjects = subs;
	st.n_subjects = n;
	if (info) {
		st.repository = info->repository;
		st.commit = info->commit;
		st.ci_system = info->ci_system;
		st.ci_job_id = info->job_id;
		st.ci_run_id = info->run_id;
		st.ci_workflow = info->workflow;
		st.ci_runner_name = info->runner_name;
		st.started_at = info->started_at;
		st.has_exit_code = info->has_exit_code;
		st.exit_code = info->exit_code;
	}
	if (st.ci_system == NULL)
		st.ci_system = "cli";
	if (st.started_at == 0)
		st.started_at = bundle_time(bundle);
	st.ended_at = (int64_t)time(NULL);
	st.lease_id = box_lease_id(b);
	st.executor = box_executor_name(b);
	if ((rc = attest_statement_start_get((const uint8_t *)bundle, strlen(bundle), start, &st.start,
	                                     err)) ||
	    (rc = attest_statement_build(&st, &stmt, &slen, err))) {
		tdxr_err_prefix(err, "provenance");
		goto out;
	}
	attest_statement_report_data((const uint8_t *)stmt, slen, rd);
	if ((rc = remote_guest_quote(box_ssh(b), rd, PROV_QUOTE_TIMEOUT_MS, &body, &blen, err))) {
		tdxr_err_prefix(err, "provenance: end quote: guest agent");
		goto out;
	}
	if ((rc = attest_evidence_parse(body, blen, &ev, err))) {
		tdxr_err_prefix(err, "provenance: end quote: guest agent response");
		goto out;
	}
	if (ev->quote == NULL || ev->eventlog == NULL) {
		rc = tdxr_err_set(err, TDXR_EATTEST,
		                  "provenance: end quote: the guest agent returned no quote or no event log");
		goto out;
	}
	/* The start bundle is ours: the relaxations it records are the policy the gate used. */
	attest_policy_init(&pol);
	if ((rc = attest_bundle_policy_relaxations((const uint8_t *)bundle, strlen(bundle), &pol, err))) {
		tdxr_err_prefix(err, "provenance");
		goto out;
	}
	memset(&ein, 0, sizeof(ein));
	ein.statement = (const uint8_t *)stmt;
	ein.statement_len = slen;
	ein.quote = ev->quote;
	ein.quote_len = ev->quote_len;
	ein.eventlog = ev->eventlog;
	ein.now = (int64_t)time(NULL);
	if ((rc =
	         attest_bundle_end_add((const uint8_t *)bundle, strlen(bundle), &ein, &pol, &ext, &v, err))) {
		tdxr_err_prefix(err, "provenance");
		goto out;
	}
	if (!v->ok) {
		rc = tdxr_err_set(err, TDXR_EATTEST, "provenance: the end attestation is refused at %s",
		                  v->error);
		goto out;
	}
	*bundle_out = ext;
	ext = NULL;
out:
	free(subs);
	free(stmt);
	free(body);
	free(ext);
	attest_evidence_free(ev);
	attest_verdict_free(v);
	return rc;
}
