/*
 * testutil.h - helpers shared by unit tests (header-only, static): locating the
 * shared real vectors (skipping when absent) and loading quotes/collateral.
 */
#ifndef TDXR_TESTS_TESTUTIL_H
#define TDXR_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "attest/attest.h"
#include "common/buf.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static inline const char *tu_shared(void)
{
	const char *e = getenv("TDXR_SHARED_TESTDATA");

	return e && *e ? e : TDXR_SHARED_TESTDATA;
}

/* Skips the calling test when ../shared/testdata is absent. */
#define TU_REQUIRE_SHARED()                                                                                  \
	do {                                                                                                 \
		struct stat st_;                                                                             \
		char p_[4096];                                                                               \
		snprintf(p_, sizeof(p_), "%s/tdx/manifest.json", tu_shared());                               \
		if (stat(p_, &st_) != 0) {                                                                   \
			print_message("SKIP: %s is absent (real vectors live in ../shared)\n", p_);          \
			skip();                                                                              \
		}                                                                                            \
	} while (0)

static inline uint8_t *tu_read(const char *rel, size_t *len)
{
	char p[4096];
	uint8_t *d = NULL;
	struct tdxr_err e;

	snprintf(p, sizeof(p), "%s/%s", tu_shared(), rel);
	if (tdxr_file_read(p, 32u << 20, &d, len, &e) != 0)
		fail_msg("cannot read %s: %s", p, e.msg);
	return d;
}

static inline uint8_t *tu_quote(const char *rel, size_t *len)
{
	size_t n = 0;
	uint8_t *raw = tu_read(rel, &n), *q = NULL;
	struct tdxr_err e;

	if (attest_quote_load(raw, n, &q, len, &e) != 0)
		fail_msg("quote %s: %s", rel, e.msg);
	free(raw);
	return q;
}

static inline struct attest_collateral *tu_collateral(const char *rel)
{
	size_t n = 0;
	uint8_t *raw = tu_read(rel, &n);
	struct attest_collateral *c = NULL;
	struct tdxr_err e;

	if (attest_collateral_parse(raw, n, &c, &e) != 0)
		fail_msg("collateral %s: %s", rel, e.msg);
	free(raw);
	return c;
}

/* The verdict names a failed step: "<step>: <detail>". */
static inline int tu_error_names_step(const struct attest_verdict *v)
{
	size_t i;
	const char *colon = strchr(v->error, ':');

	if (colon == NULL)
		return 0;
	for (i = 0; i < v->n_steps; i++)
		if (v->steps[i].result == ATTEST_STEP_FAIL &&
		    strlen(v->steps[i].name) == (size_t)(colon - v->error) &&
		    strncmp(v->error, v->steps[i].name, (size_t)(colon - v->error)) == 0)
			return 1;
	return 0;
}

#endif
