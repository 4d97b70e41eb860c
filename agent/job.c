/*
 * job.c - `tdx-runner run`'s pipeline on one box (see job.h): acquire (lease,
 * ready, connect, gate) or adopt a kept box, sync the working tree, run the
 * command with live output, (with --subject) attest the end of the job - the
 * subjects' digests in a statement bound by a second quote, the bundle
 * extended with it - copy artifacts back, write the bundle, release or keep.
 * The ordering and the no-bytes-before-the-gate rule live in box.c.
 */
#include "agent/job.h"

#include "agent/box.h"
#include "agent/config.h"
#include "agent/provenance.h"
#include "attest/attest.h"
#include "common/log.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int forward(void *ctx, enum remote_out which, const uint8_t *p, size_t n)
{
	FILE *f = which == REMOTE_OUT_STDERR ? stderr : stdout;

	(void)ctx;
	fwrite(p, 1, n, f);
	fflush(f);
	return 0;
}

/* Single-quotes a word for /bin/sh. */
static int shell_append(char *dst, size_t cap, size_t *o, const char *w)
{
	size_t i;

#define PUT(c)                                                                                               \
	do {                                                                                                 \
		if (*o + 1 >= cap)                                                                           \
			return -1;                                                                           \
		dst[(*o)++] = (c);                                                                           \
	} while (0)
	PUT('\'');
	for (i = 0; w[i]; i++) {
		if (w[i] == '\'') {
			PUT('\'');
			PUT('\\');
			PUT('\'');
			PUT('\'');
		} else {
			PUT(w[i]);
		}
	}
	PUT('\'');
	PUT(' ');
	dst[*o] = '\0';
	return 0;
#undef PUT
}

static int step_run(const struct job_run_opts *o, struct box *b, int *status, struct tdxr_err *err)
{
	struct remote_exec_opts eo;
	struct remote_exec_result r;
	char cmd[65536];
	size_t n = 0, i;
	int rc;

	/* cd WORK && 'arg0' 'arg1' ... */
	memcpy(cmd, "cd ", 4);
	n = 3;
	if (shell_append(cmd, sizeof(cmd), &n, box_work_dir(b)) || n + 4 >= sizeof(cmd))
		return tdxr_err_set(err, TDXR_EINVAL, "run: work directory path too long");
	memcpy(cmd + n, "&& ", 4);
	n += 3;
	for (i = 0; i < o->argc; i++)
		if (shell_append(cmd, sizeof(cmd), &n, o->argv[i]))
			return tdxr_err_set(err, TDXR_EINVAL, "run: command longer than %zu bytes",
			                    sizeof(cmd));
	memset(&eo, 0, sizeof(eo));
	eo.command = cmd;
	eo.stdin_fd = -1;
	eo.output = forward;
	eo.cancel = o->exec_cancel;
	box_state(b, BOX_STATE_RUNNING);
	rc = box_exec(b, &eo, &r, err);
	if (rc)
		return tdxr_err_prefix(err, "run");
	*status = r.exited ? r.exit_status : 128 + 15;
	if (!r.exited && r.exit_signal[0])
		fprintf(stderr, "tdx-runner: the command was killed by SIG%s\n", r.exit_signal);
	return 0;
}

/* The end quote over the statement naming the subjects; *ext (the extended bundle) is
 * written instead of the start one. Returns 0 or the exit code this failure maps to. */
static int step_provenance(const struct job_run_opts *o, struct box *b, int status, char **ext,
                           struct tdxr_err *err)
{
	struct prov_info pi;
	char host[256] = "";
	int rc;

	gethostname(host, sizeof(host) - 1);
	memset(&pi, 0, sizeof(pi));
	pi.repository = o->repository;
	pi.commit = o->commit;
	pi.ci_system = "cli";
	pi.runner_name = host[0] ? host : NULL;
	pi.has_exit_code = 1;
	pi.exit_code = status;
	rc = prov_attest_end(b, o->subjects, o->n_subjects, &pi, ext, err);
	if (rc)
		return rc == TDXR_EATTEST ? JOB_EXIT_ATTEST : JOB_EXIT_INFRA;
	if (o->progress)
		fprintf(stderr, "tdx-runner: end attested: %zu subject(s) bound by a second quote\n",
		        o->n_subjects);
	return 0;
}

static int canceled(const struct job_run_opts *o)
{
	return o->cancel && *o->cancel;
}

int job_run(const struct job_run_opts *o, struct tdxr_err *err)
{
	struct box_opts bo;
	struct box *b = NULL;
	struct tdxr_err rel;
	int rc, code = JOB_EXIT_INFRA, status = 0, keep = o->keep || o->lease_id;
	char *ext = NULL; /* the bundle extended with the end part (--subject) */

	tdxr_err_clear(&rel);
	memset(&bo, 0, sizeof(bo));
	bo.cfg = o->cfg;
	bo.executor_kind = o->executor_kind;
	bo.progress = o->progress;
	bo.cancel = o->cancel;
	if (o->lease_id)
		rc = box_adopt(&bo, o->lease_id, &b, err);
	else
		rc = box_acquire(&bo, &b, err);
	if (rc == TDXR_EATTEST)
		code = JOB_EXIT_ATTEST;
	if (!rc && canceled(o))
		rc = tdxr_err_set(err, TDXR_ECANCELED, "canceled");
	if (!rc)
		rc = box_sync_worktree(b, o->repo_dir, err);
	if (!rc && canceled(o))
		rc = tdxr_err_set(err, TDXR_ECANCELED, "canceled");
	if (!rc) {
		rc = step_run(o, b, &status, err);
		if (!rc) {
			code = status;
			box_phase(b, "run");
		}
	}
	if (!rc && o->n_subjects && !canceled(o)) {
		struct tdxr_err pe;
		int pcode;

		tdxr_err_clear(&pe);
		pcode = step_provenance(o, b, status, &ext, &pe);
		/* A failed command keeps its own exit status; a provenance failure is reported. */
		if (pcode && code == 0) {
			code = pcode;
			*err = pe;
		} else if (pcode) {
			fprintf(stderr, "tdx-runner: %s\n", pe.msg);
		}
	}
	if (!rc && (rc = box_pull(b, o->artifacts, o->n_artifacts, o->artifacts_dir ? o->artifacts_dir : ".",
	                          err)) != 0)
		code = JOB_EXIT_INFRA;
	if (canceled(o) && !rc) {
		rc = tdxr_err_set(err, TDXR_ECANCELED, "canceled");
		code = JOB_EXIT_INFRA;
	}
	/* Write the bundle whatever the verdict (a refused box is worth a record too), after the
	 * sync so it never travels into the box as part of the tree. */
	if (b && box_bundle(b) && o->bundle_path) {
		const char *bundle = ext ? ext : box_bundle(b);
		struct tdxr_err be;

		if (tdxr_file_write_atomic(o->bundle_path, bundle, strlen(bundle), 0644, &be)) {
			TDXR_WARN("job", "cannot write the attestation bundle: %s", be.msg);
			if (ext && code == 0) { /* the provenance asked for is lost */
				code = JOB_EXIT_INFRA;
				*err = be;
			}
		}
	}
	free(ext);
	if (b == NULL)
		return code;
	/* A box that did not attest is never kept for reuse; with --keep it is left for inspection
	 * (`tdx-runner ssh`), unowned and not "kept": the next reap destroys it. */
	if (o->keep && !o->lease_id && !box_attested(b) && b != NULL) {
		fprintf(stderr,
		        "tdx-runner: leaving the refused box of lease %s for inspection; tdx-runner reap "
		        "destroys it (it can never be used by run --lease)\n",
		        box_lease_id(b));
	} else if (keep && box_attested(b)) {
		int64_t until = o->keep_ttl_s > 0 ? (int64_t)time(NULL) + o->keep_ttl_s : 0;

		if (box_keep(b, until, &rel) == 0)
			fprintf(stderr,
			        "tdx-runner: keeping lease %s (run --lease %s reuses it; tdx-runner stop %s "
			        "releases it)\n",
			        box_lease_id(b), box_lease_id(b), box_lease_id(b));
		else
			fprintf(stderr, "tdx-runner: lease %s: %s\n", box_lease_id(b), rel.msg);
	} else if (box_release(b, &rel) != 0) {
		if (!rc)
			*err = rel;
		else
			fprintf(stderr, "tdx-runner: %s\n", rel.msg);
		code = code == 0 ? JOB_EXIT_INFRA : code;
	}
	box_free(b);
	return code;
}
