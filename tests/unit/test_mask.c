/*
 * test_mask.c - the job-log masking filter: secrets are masked however the
 * stream is split (every split point of real-looking logs, and a randomized
 * comparison with a whole-string reference), a longer secret is never partly
 * revealed by a shorter one that prefixes it, memory stays bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/mask.h"

#include <stdlib.h>
#include <string.h>

struct sink {
	char buf[1 << 16];
	size_t n;
};

static int collect(void *ctx, const uint8_t *p, size_t n)
{
	struct sink *s = ctx;

	assert_true(s->n + n < sizeof(s->buf));
	memcpy(s->buf + s->n, p, n);
	s->n += n;
	s->buf[s->n] = '\0';
	return 0;
}

/* Whole-string reference: at each position the longest phrase that matches is masked. */
static void reference(const char *in, const char *const *ph, size_t nph, char *out)
{
	size_t i = 0, o = 0, len = strlen(in);

	while (i < len) {
		size_t best = 0, k;

		for (k = 0; k < nph; k++) {
			size_t l = strlen(ph[k]);

			if (l > best && l <= len - i && memcmp(in + i, ph[k], l) == 0)
				best = l;
		}
		if (best) {
			memcpy(out + o, TDXR_MASK_TEXT, strlen(TDXR_MASK_TEXT));
			o += strlen(TDXR_MASK_TEXT);
			i += best;
		} else {
			out[o++] = in[i++];
		}
	}
	out[o] = '\0';
}

static void run_split(const char *in, const char *const *ph, size_t nph, const size_t *cuts, size_t ncuts,
                      struct sink *s)
{
	struct tdxr_mask *m = NULL;
	size_t i, prev = 0;

	memset(s, 0, sizeof(*s));
	assert_int_equal(tdxr_mask_new(collect, s, &m, NULL), 0);
	for (i = 0; i < nph; i++)
		assert_int_equal(tdxr_mask_add(m, ph[i], strlen(ph[i]), NULL), 0);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : strlen(in);

		assert_int_equal(tdxr_mask_write(m, (const uint8_t *)in + prev, end - prev, NULL), 0);
		prev = end;
	}
	assert_int_equal(tdxr_mask_flush(m, NULL), 0);
	tdxr_mask_free(m);
}

static void secrets_are_masked_at_every_split_point(void **state)
{
	static const char *const ph[] = { "glrt-SECRETTOKEN123", "hunter22", "https://x:tok3n@" };
	const char *in = "cloning https://x:tok3n@gitlab.example/p.git with glrt-SECRETTOKEN123\n"
	                 "password=hunter22 and again hunter22hunter22 end";
	char want[4096];
	struct sink s;
	size_t a, b;

	reference(in, ph, 3, want);
	assert_null(strstr(want, "hunter22"));
	for (a = 0; a <= strlen(in); a++) {
		size_t cut[1] = { a };

		run_split(in, ph, 3, cut, 1, &s);
		assert_string_equal(s.buf, want);
	}
	for (a = 0; a < strlen(in); a += 3)
		for (b = a; b <= strlen(in); b += 5) {
			size_t cut[2] = { a, b };

			run_split(in, ph, 3, cut, 2, &s);
			assert_string_equal(s.buf, want);
		}
}

static void a_shorter_secret_never_reveals_the_rest_of_a_longer_one(void **state)
{
	static const char *const ph[] = { "abcd", "abcdefgh" };
	size_t cut[1] = { 4 };
	struct sink s;

	run_split("xxabcdefghyy", ph, 2, cut, 1, &s);
	assert_string_equal(s.buf, "xx[MASKED]yy");
	cut[0] = 6;
	run_split("abcdefgz", ph, 2, cut, 1, &s);
	assert_string_equal(s.buf, "[MASKED]efgz");
}

static void randomized_streams_equal_the_whole_string_reference(void **state)
{
	static const char alphabet[] = "ab-_x";
	char ph_buf[4][16], in[600], want[8192];
	const char *ph[4];
	struct sink s;
	size_t cuts[8];
	int round;

	srand(12345);
	for (round = 0; round < 3000; round++) {
		size_t nph = 1 + (size_t)(rand() % 4), i, len = (size_t)(rand() % 500),
		       nc = (size_t)(rand() % 8);

		for (i = 0; i < nph; i++) {
			size_t l = 4 + (size_t)(rand() % 8), k;

			for (k = 0; k < l; k++)
				ph_buf[i][k] = alphabet[rand() % 3];
			ph_buf[i][l] = '\0';
			ph[i] = ph_buf[i];
		}
		for (i = 0; i < len; i++)
			in[i] = alphabet[rand() % 5];
		in[len] = '\0';
		for (i = 0; i < nc; i++)
			cuts[i] = len ? (size_t)rand() % (len + 1) : 0;
		for (i = 1; i < nc; i++) /* sort the cut points */
			for (size_t k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
				size_t t = cuts[k];

				cuts[k] = cuts[k - 1];
				cuts[k - 1] = t;
			}
		reference(in, ph, nph, want);
		run_split(in, ph, nph, cuts, nc, &s);
		if (strcmp(s.buf, want) != 0)
			fail_msg("round %d: got '%s' want '%s'", round, s.buf, want);
	}
}

static int refuse(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	(void)p;
	(void)n;
	return -1;
}

static void short_phrases_are_refused_and_output_errors_propagate(void **state)
{
	struct tdxr_mask *m = NULL;
	struct tdxr_err e;

	assert_int_equal(tdxr_mask_new(refuse, NULL, &m, &e), 0);
	assert_int_equal(tdxr_mask_add(m, "abc", 3, &e), TDXR_EINVAL);
	assert_int_equal(tdxr_mask_add(m, "secret", 6, &e), 0);
	assert_int_equal(tdxr_mask_write(m, (const uint8_t *)"plain text", 10, &e), TDXR_ECANCELED);
	tdxr_mask_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(secrets_are_masked_at_every_split_point),
		cmocka_unit_test(a_shorter_secret_never_reveals_the_rest_of_a_longer_one),
		cmocka_unit_test(randomized_streams_equal_the_whole_string_reference),
		cmocka_unit_test(short_phrases_are_refused_and_output_errors_propagate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
