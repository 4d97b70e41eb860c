/*
 * fuzz_gitlab_job.c - libFuzzer target for the GitLab job payload parser
 * (agent/ci/gitlab.c via gitlab_int.h): the 201 body of jobs/request is
 * untrusted. Invariants: the parser returns 0 or EINVAL/ENOMEM; on success the
 * job has an id > 0, 1..16 steps and a repo URL without credentials; on
 * failure *out stays NULL. Everything it allocates is freed (LeakSanitizer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ci/gitlab_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ci_job *j = NULL;
	struct tdxr_err e;
	int rc;

	if (size > (1u << 20))
		return 0;
	rc = gitlab_job_parse(data, size, &j, &e);
	if (rc == 0) {
		const char *u = gitlab_job_repo_url(j);
		const char *h = strstr(u, "://");

		if (j == NULL || gitlab_job_id(j) <= 0 || gitlab_job_n_steps(j) == 0 ||
		    gitlab_job_n_steps(j) > 16)
			abort();
		if (h) {
			size_t auth = strcspn(h + 3, "/?#");

			if (memchr(h + 3, '@', auth) != NULL)
				abort(); /* credentials left in the authority */
		}
		gitlab_job_free(j);
	} else if (j != NULL || (rc != TDXR_EINVAL && rc != TDXR_ENOMEM)) {
		abort();
	}
	return 0;
}
