/*
 * fuzz_webhook.c - libFuzzer target for the GitHub webhook receiver's parsers
 * (agent/ci/github_webhook.c): the workflow_job payload (untrusted until its
 * signature verified, and bounded even then) and the X-Hub-Signature-256
 * header. Invariants: the parser returns 0 or EINVAL/ENOMEM; on success the
 * event has job and run ids > 0, a 40- or 64-digit lower-case head_sha, at
 * most GH_LABELS_MAX labels, an "owner/name" repository, and no control
 * character in any string it kept; on failure *out stays NULL. The signature
 * check, fed a header made of the first input bytes, answers 0 or EAUTH and
 * nothing else. Everything allocated is freed (LeakSanitizer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ci/github_webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t max)
{
	size_t i, n;

	if (s == NULL)
		abort();
	n = strlen(s);
	if (n == 0 || n > max)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static void check_event(const struct gh_job_event *ev)
{
	size_t i, n = strlen(ev->head_sha);

	if (ev->job_id == 0 || ev->run_id == 0 || ev->run_attempt == 0 || ev->n_labels > GH_LABELS_MAX)
		abort();
	if (n != 40 && n != 64)
		abort();
	for (i = 0; i < n; i++)
		if (!((ev->head_sha[i] >= '0' && ev->head_sha[i] <= '9') ||
		      (ev->head_sha[i] >= 'a' && ev->head_sha[i] <= 'f')))
			abort();
	for (i = 0; i < ev->n_labels; i++)
		check_text(ev->labels[i], GH_LABEL_MAX);
	if (ev->runner_name)
		check_text(ev->runner_name, GH_NAME_MAX);
	if (ev->name)
		check_text(ev->name, GH_JOB_NAME_MAX);
	check_text(ev->repository, GH_NAME_MAX);
	if (strchr(ev->repository, '/') == NULL ||
	    strchr(ev->repository, '/') != strrchr(ev->repository, '/'))
		abort();
	check_text(ev->action_name, GH_WORD_MAX);
	check_text(ev->status, GH_WORD_MAX);
	if (ev->conclusion[0])
		check_text(ev->conclusion, GH_WORD_MAX);
	if (ev->delivery[0] != '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gh_job_event *ev = NULL;
	struct tdxr_err e;
	char hdr[96];
	int rc;

	if (size > (1u << 20))
		return 0;
	rc = gh_job_event_parse(data, size, &ev, &e);
	if (rc == 0) {
		if (ev == NULL)
			abort();
		check_event(ev);
		gh_job_event_free(ev);
	} else if (ev != NULL || (rc != TDXR_EINVAL && rc != TDXR_ENOMEM)) {
		abort();
	}
	/* The first bytes as a signature header over the rest. */
	if (size > 0) {
		size_t n = size < sizeof(hdr) - 1 ? size : sizeof(hdr) - 1;

		memcpy(hdr, data, n);
		hdr[n] = '\0';
		rc = gh_webhook_signature_check("fuzz", 4, data + n, size - n, hdr, NULL, &e);
		if (rc != 0 && rc != TDXR_EAUTH)
			abort();
	}
	return 0;
}
