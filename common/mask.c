/*
 * mask.c - see mask.h. The pending buffer never holds more than the longest
 * phrase minus one byte after a write returns, so memory stays bounded
 * whatever the stream. Matching is a straightforward scan (phrases are few:
 * the job's masked variables and tokens); phrases are kept sorted longest first.
 */
#include "common/mask.h"

#include "common/buf.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct phrase {
	uint8_t *p;
	size_t n;
};

struct tdxr_mask {
	tdxr_mask_out_fn out;
	void *ctx;
	struct phrase *ph;
	size_t nph;
	size_t maxlen;
	uint8_t *pend; /* held-back bytes */
	size_t npend, cap;
	uint8_t first[256]; /* first[b]: some phrase starts with byte b (skip the rest fast) */
};

int tdxr_mask_new(tdxr_mask_out_fn out, void *ctx, struct tdxr_mask **m, struct tdxr_err *err)
{
	*m = calloc(1, sizeof(**m));
	if (*m == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	(*m)->out = out;
	(*m)->ctx = ctx;
	return 0;
}

int tdxr_mask_add(struct tdxr_mask *m, const char *phrase, size_t len, struct tdxr_err *err)
{
	struct phrase *v;
	size_t i, at;

	if (len < TDXR_MASK_MIN_LEN || len > TDXR_MASK_MAX_LEN)
		return tdxr_err_set(err, TDXR_EINVAL, "mask: a masked value must be %d to %d bytes long",
		                    TDXR_MASK_MIN_LEN, TDXR_MASK_MAX_LEN);
	for (i = 0; i < m->nph; i++)
		if (m->ph[i].n == len && memcmp(m->ph[i].p, phrase, len) == 0)
			return 0;
	v = realloc(m->ph, (m->nph + 1) * sizeof(*v));
	if (v == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	m->ph = v;
	for (at = 0; at < m->nph && m->ph[at].n >= len; at++)
		;
	memmove(&m->ph[at + 1], &m->ph[at], (m->nph - at) * sizeof(*v));
	m->ph[at].p = malloc(len);
	if (m->ph[at].p == NULL) {
		memmove(&m->ph[at], &m->ph[at + 1], (m->nph - at) * sizeof(*v));
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	}
	memcpy(m->ph[at].p, phrase, len);
	m->ph[at].n = len;
	m->nph++;
	m->first[(uint8_t)phrase[0]] = 1;
	if (len > m->maxlen)
		m->maxlen = len;
	return 0;
}

/* The longest phrase matching fully at p[0..n), or 0. *need_more is set (and 0 returned)
 * when, before any full match of a phrase at least as long, a longer phrase matches all of
 * the n bytes that remain: deciding now could mask a shorter secret and print the rest of
 * a longer one, so the caller waits for more input (unless the stream has ended). */
static size_t match_at(const struct tdxr_mask *m, const uint8_t *p, size_t n, int at_end, int *need_more)
{
	size_t i;

	*need_more = 0;
	for (i = 0; i < m->nph; i++) { /* longest first */
		const struct phrase *f = &m->ph[i];

		if (f->n <= n) {
			if (memcmp(p, f->p, f->n) == 0)
				return f->n;
		} else if (!at_end && memcmp(p, f->p, n) == 0) {
			*need_more = 1;
			return 0;
		}
	}
	return 0;
}

static int emit(struct tdxr_mask *m, const uint8_t *p, size_t n, struct tdxr_err *err)
{
	if (n && m->out(m->ctx, p, n) != 0)
		return tdxr_err_set(err, TDXR_ECANCELED, "mask: the output stopped");
	return 0;
}

/* Processes pend; at_end = no more input will come. Keeps an unresolved tail. */
static int process(struct tdxr_mask *m, int at_end, struct tdxr_err *err)
{
	size_t i = 0, start = 0;
	int rc;

	while (i < m->npend) {
		int need_more = 0;
		size_t k;

		while (i < m->npend && !m->first[m->pend[i]])
			i++; /* no phrase starts here: nothing to match or hold back */
		if (i == m->npend)
			break;
		k = match_at(m, m->pend + i, m->npend - i, at_end, &need_more);

		if (k) {
			if ((rc = emit(m, m->pend + start, i - start, err)) ||
			    (rc = emit(m, (const uint8_t *)TDXR_MASK_TEXT, sizeof(TDXR_MASK_TEXT) - 1, err)))
				return rc;
			i += k;
			start = i;
			continue;
		}
		if (need_more)
			break; /* could become a phrase: hold back from here */
		i++;
	}
	if ((rc = emit(m, m->pend + start, i - start, err)))
		return rc;
	if (i > 0 && i <= m->npend) {
		/* Wipe what leaves the buffer: it may hold parts of secrets. */
		memmove(m->pend, m->pend + i, m->npend - i);
		OPENSSL_cleanse(m->pend + (m->npend - i), i);
		m->npend -= i;
	}
	return 0;
}

int tdxr_mask_write(struct tdxr_mask *m, const uint8_t *p, size_t n, struct tdxr_err *err)
{
	size_t off = 0;
	int rc;

	/* Feed in slices so the pending buffer stays bounded (<= 2 * maxlen + slice). */
	while (off < n) {
		size_t chunk = n - off < 65536 ? n - off : 65536;

		if (m->npend + chunk > m->cap) {
			size_t nc = m->npend + chunk;
			uint8_t *np = malloc(nc);

			if (np == NULL)
				return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			if (m->pend) {
				memcpy(np, m->pend, m->npend);
				OPENSSL_cleanse(m->pend, m->cap);
				free(m->pend);
			}
			m->pend = np;
			m->cap = nc;
		}
		memcpy(m->pend + m->npend, p + off, chunk);
		m->npend += chunk;
		off += chunk;
		if ((rc = process(m, 0, err)))
			return rc;
	}
	return 0;
}

int tdxr_mask_flush(struct tdxr_mask *m, struct tdxr_err *err)
{
	return process(m, 1, err);
}

void tdxr_mask_free(struct tdxr_mask *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nph; i++) {
		OPENSSL_cleanse(m->ph[i].p, m->ph[i].n);
		free(m->ph[i].p);
	}
	free(m->ph);
	if (m->pend) {
		OPENSSL_cleanse(m->pend, m->cap);
		free(m->pend);
	}
	free(m);
}
