/*
 * tcb.c - TCB Info (SGX / TDX, version 3) and QE Identity (version 2) parsed
 * from the exact text Intel signed. Parsing is strict: every field the
 * verifier relies on must be present with the right type and size; unknown
 * fields are ignored (Intel adds fields over time). Status merging follows
 * Intel's severity order; advisory IDs are unioned in first-seen order.
 */
#include "attest/attest_int.h"

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const status_names[] = {
	"UpToDate",
	"SWHardeningNeeded",
	"ConfigurationNeeded",
	"ConfigurationAndSWHardeningNeeded",
	"OutOfDate",
	"OutOfDateConfigurationNeeded",
	"Revoked",
	"Unknown",
};

const char *attest_tcb_status_name(enum attest_tcb_status s)
{
	if ((unsigned)s > ATTEST_TCB_UNKNOWN)
		return "Unknown";
	return status_names[s];
}

enum attest_tcb_status attest_tcb_status_parse(const char *s)
{
	unsigned i;

	for (i = 0; s && i < ATTEST_TCB_UNKNOWN; i++)
		if (strcmp(s, status_names[i]) == 0)
			return (enum attest_tcb_status)i;
	return ATTEST_TCB_UNKNOWN;
}

/* ---- small typed getters over Jansson; each names the field on failure ---- */

static int jstr(json_t *o, const char *k, const char **out, struct tdxr_err *err, const char *ctx)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_string(v)) {
		tdxr_err_set(err, TDXR_EINVAL, "%s: '%s' missing or not a string", ctx, k);
		return TDXR_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

static int jint(json_t *o, const char *k, long long lo, long long hi, long long *out, struct tdxr_err *err,
                const char *ctx)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: '%s' missing or not an integer in [%lld, %lld]",
		                    ctx, k, lo, hi);
	*out = json_integer_value(v);
	return 0;
}

static int jhex(json_t *o, const char *k, uint8_t *out, size_t n, struct tdxr_err *err, const char *ctx)
{
	const char *s = "";

	if (jstr(o, k, &s, err, ctx))
		return TDXR_EINVAL;
	if (tdxr_hex_decode_exact(s, out, n))
		return tdxr_err_set(err, TDXR_EINVAL, "%s: '%s' is not %zu bytes of hex", ctx, k, n);
	return 0;
}

static int jtime(json_t *o, const char *k, int64_t *out, struct tdxr_err *err, const char *ctx)
{
	const char *s = "";

	if (jstr(o, k, &s, err, ctx))
		return TDXR_EINVAL;
	if (tdxr_time_parse_rfc3339(s, out))
		return tdxr_err_set(err, TDXR_EINVAL, "%s: '%s' is not an RFC 3339 UTC time", ctx, k);
	return 0;
}

static int jstatus(json_t *lvl, struct attest_status_adv *sa, struct tdxr_err *err, const char *ctx)
{
	const char *s = "";
	json_t *adv, *v;
	size_t i;

	memset(sa, 0, sizeof(*sa));
	if (jstr(lvl, "tcbStatus", &s, err, ctx))
		return TDXR_EINVAL;
	sa->status = attest_tcb_status_parse(s);
	if (sa->status == ATTEST_TCB_UNKNOWN)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: unknown tcbStatus '%.40s'", ctx, s);
	adv = json_object_get(lvl, "advisoryIDs");
	if (adv == NULL)
		return 0;
	if (!json_is_array(adv) || json_array_size(adv) > 256)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: advisoryIDs is not an array of strings", ctx);
	sa->adv = calloc(json_array_size(adv) + 1, sizeof(char *));
	if (sa->adv == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_array_foreach(adv, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) > 64 ||
		    memchr(json_string_value(v), '\0', json_string_length(v)))
			return tdxr_err_set(err, TDXR_EINVAL, "%s: advisoryIDs[%zu] is not a short string",
			                    ctx, i);
		sa->adv[sa->n_adv] = strdup(json_string_value(v));
		if (sa->adv[sa->n_adv] == NULL)
			return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		sa->n_adv++;
	}
	return 0;
}

void attest__status_dispose(struct attest_status_adv *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_adv; i++)
		free(s->adv[i]);
	free(s->adv);
	s->adv = NULL;
	s->n_adv = 0;
}

int attest__status_merge(struct attest_status_adv *dst, const struct attest_status_adv *src)
{
	size_t i, j;
	char **n;

	if (src->status > dst->status)
		dst->status = src->status;
	for (i = 0; i < src->n_adv; i++) {
		for (j = 0; j < dst->n_adv; j++)
			if (strcmp(dst->adv[j], src->adv[i]) == 0)
				break;
		if (j < dst->n_adv)
			continue;
		n = realloc(dst->adv, (dst->n_adv + 2) * sizeof(char *));
		if (n == NULL)
			return TDXR_ENOMEM;
		dst->adv = n;
		dst->adv[dst->n_adv] = strdup(src->adv[i]);
		if (dst->adv[dst->n_adv] == NULL)
			return TDXR_ENOMEM;
		dst->n_adv++;
	}
	return 0;
}

int attest__status_copy(struct attest_status_adv *dst, const struct attest_status_adv *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->status = src->status;
	return attest__status_merge(dst, src);
}

static int components(json_t *tcb, const char *k, uint8_t out[16], struct tdxr_err *err, const char *ctx)
{
	json_t *arr = json_object_get(tcb, k), *c;
	long long v = 0;
	size_t i;

	if (!json_is_array(arr) || json_array_size(arr) != 16)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: '%s' is not an array of 16 components", ctx, k);
	json_array_foreach(arr, i, c)
	{
		if (!json_is_object(c) || jint(c, "svn", 0, 255, &v, err, ctx))
			return tdxr_err_set(err, TDXR_EINVAL, "%s: %s[%zu].svn is not in [0, 255]", ctx, k,
			                    i);
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int module_levels(json_t *arr, struct attest_module_level **out, size_t *n, struct tdxr_err *err,
                         const char *ctx)
{
	json_t *lvl;
	size_t i;
	long long v = 0;

	*out = NULL;
	*n = 0;
	if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 1024)
		return tdxr_err_set(err, TDXR_EINVAL, "%s: tcbLevels is not a non-empty array", ctx);
	*out = calloc(json_array_size(arr), sizeof(**out));
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	json_array_foreach(arr, i, lvl)
	{
		json_t *tcb = json_object_get(lvl, "tcb");

		if (!json_is_object(tcb) || jint(tcb, "isvsvn", 0, 65535, &v, err, ctx))
			return tdxr_err_set(err, TDXR_EINVAL,
			                    "%s: tcbLevels[%zu].tcb.isvsvn missing or invalid", ctx, i);
		(*out)[i].isvsvn = (unsigned)v;
		(*n)++;
		if (jstatus(lvl, &(*out)[i].sa, err, ctx))
			return TDXR_EINVAL;
	}
	return 0;
}

static void module_levels_free(struct attest_module_level *l, size_t n)
{
	size_t i;

	for (i = 0; l && i < n; i++)
		attest__status_dispose(&l[i].sa);
	free(l);
}

static json_t *load(const char *text, size_t len, const char *ctx, struct tdxr_err *err)
{
	json_error_t jerr;
	json_t *root;

	if (len > TDXR_CAP_COLLATERAL) {
		tdxr_err_set(err, TDXR_ETOOBIG, "%s: too large", ctx);
		return NULL;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		tdxr_err_set(err, TDXR_EINVAL, "%s: invalid JSON at line %d column %d: %s", ctx, jerr.line,
		             jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		tdxr_err_set(err, TDXR_EINVAL, "%s: not a JSON object", ctx);
		return NULL;
	}
	return root;
}

int attest__tcb_info_parse(const char *text, size_t len, struct attest_tcb_info **out, struct tdxr_err *err)
{
	static const char ctx[] = "TCB info";
	struct attest_tcb_info *t = NULL;
	json_t *root, *levels, *lvl, *mod, *mods;
	const char *id = "";
	long long v = 0;
	size_t i;
	int rc = TDXR_EINVAL;

	*out = NULL;
	root = load(text, len, ctx, err);
	if (root == NULL)
		return TDXR_EINVAL;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (jstr(root, "id", &id, err, ctx))
		goto out;
	if (strcmp(id, "TDX") != 0 && strcmp(id, "SGX") != 0) {
		tdxr_err_set(err, TDXR_EINVAL, "TCB info: id '%.16s' is neither TDX nor SGX", id);
		goto out;
	}
	memcpy(t->id, id, strlen(id) + 1);
	if (jint(root, "version", 0, 1000, &v, err, ctx))
		goto out;
	t->version = (int)v;
	if (t->version != 3) {
		tdxr_err_set(err, TDXR_EINVAL, "TCB info: version %d is not supported (3)", t->version);
		goto out;
	}
	if (jtime(root, "issueDate", &t->issue_date, err, ctx) ||
	    jtime(root, "nextUpdate", &t->next_update, err, ctx) ||
	    jhex(root, "fmspc", t->fmspc, 6, err, ctx) || jhex(root, "pceId", t->pce_id, 2, err, ctx))
		goto out;
	levels = json_object_get(root, "tcbLevels");
	if (!json_is_array(levels) || json_array_size(levels) == 0 || json_array_size(levels) > 1024) {
		tdxr_err_set(err, TDXR_EINVAL, "TCB info: tcbLevels is not a non-empty array");
		goto out;
	}
	t->levels = calloc(json_array_size(levels), sizeof(*t->levels));
	if (t->levels == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(levels, i, lvl)
	{
		struct attest_tcb_level *L = &t->levels[i];
		json_t *tcb = json_object_get(lvl, "tcb");

		t->n_levels++;
		if (!json_is_object(tcb)) {
			tdxr_err_set(err, TDXR_EINVAL, "TCB info: tcbLevels[%zu].tcb is not an object", i);
			goto out;
		}
		if (components(tcb, "sgxtcbcomponents", L->sgx, err, ctx) ||
		    jint(tcb, "pcesvn", 0, 65535, &v, err, ctx))
			goto out;
		L->pcesvn = (uint16_t)v;
		if (json_object_get(tcb, "tdxtcbcomponents")) {
			if (components(tcb, "tdxtcbcomponents", L->tdx, err, ctx))
				goto out;
			L->has_tdx = 1;
		}
		if (jstatus(lvl, &L->sa, err, ctx))
			goto out;
	}
	mod = json_object_get(root, "tdxModule");
	if (mod) {
		if (!json_is_object(mod) ||
		    jhex(mod, "mrsigner", t->module_mrsigner, 48, err, "TCB info tdxModule") ||
		    jhex(mod, "attributes", t->module_attributes, 8, err, "TCB info tdxModule") ||
		    jhex(mod, "attributesMask", t->module_attributes_mask, 8, err, "TCB info tdxModule"))
			goto out;
		t->has_module = 1;
	}
	mods = json_object_get(root, "tdxModuleIdentities");
	if (mods) {
		if (!json_is_array(mods) || json_array_size(mods) > 256) {
			tdxr_err_set(err, TDXR_EINVAL, "TCB info: tdxModuleIdentities is not an array");
			goto out;
		}
		t->modules = calloc(json_array_size(mods) + 1, sizeof(*t->modules));
		if (t->modules == NULL) {
			rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
			goto out;
		}
		json_array_foreach(mods, i, mod)
		{
			struct attest_module_identity *M = &t->modules[i];
			static const char mctx[] = "TCB info tdxModuleIdentities";

			t->n_modules++;
			if (!json_is_object(mod) || jstr(mod, "id", &id, err, mctx) ||
			    strlen(id) >= sizeof(M->id) ||
			    jhex(mod, "mrsigner", M->mrsigner, 48, err, mctx) ||
			    jhex(mod, "attributes", M->attributes, 8, err, mctx) ||
			    jhex(mod, "attributesMask", M->attributes_mask, 8, err, mctx) ||
			    module_levels(json_object_get(mod, "tcbLevels"), &M->levels, &M->n_levels, err,
			                  mctx)) {
				if (err && err->msg[0] == '\0')
					tdxr_err_set(err, TDXR_EINVAL, "%s[%zu] is malformed", mctx, i);
				goto out;
			}
			memcpy(M->id, id, strlen(id) + 1);
		}
	}
	*out = t;
	t = NULL;
	rc = 0;
out:
	attest__tcb_info_free(t);
	json_decref(root);
	return rc;
}

void attest__tcb_info_free(struct attest_tcb_info *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; t->levels && i < t->n_levels; i++)
		attest__status_dispose(&t->levels[i].sa);
	free(t->levels);
	for (i = 0; t->modules && i < t->n_modules; i++)
		module_levels_free(t->modules[i].levels, t->modules[i].n_levels);
	free(t->modules);
	free(t);
}

static int le32_hex(json_t *o, const char *k, uint32_t *out, struct tdxr_err *err, const char *ctx)
{
	uint8_t b[4];

	if (jhex(o, k, b, 4, err, ctx))
		return TDXR_EINVAL;
	*out = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
	return 0;
}

int attest__qe_identity_parse(const char *text, size_t len, struct attest_qe_identity **out,
                              struct tdxr_err *err)
{
	static const char ctx[] = "QE identity";
	struct attest_qe_identity *q = NULL;
	json_t *root;
	const char *id = "";
	long long v = 0;
	int rc = TDXR_EINVAL;

	*out = NULL;
	root = load(text, len, ctx, err);
	if (root == NULL)
		return TDXR_EINVAL;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	if (jstr(root, "id", &id, err, ctx))
		goto out;
	if (strcmp(id, "QE") != 0 && strcmp(id, "TD_QE") != 0) {
		tdxr_err_set(err, TDXR_EINVAL, "QE identity: id '%.16s' is neither QE nor TD_QE", id);
		goto out;
	}
	memcpy(q->id, id, strlen(id) + 1);
	if (jint(root, "version", 0, 1000, &v, err, ctx))
		goto out;
	q->version = (int)v;
	if (jtime(root, "issueDate", &q->issue_date, err, ctx) ||
	    jtime(root, "nextUpdate", &q->next_update, err, ctx) ||
	    le32_hex(root, "miscselect", &q->miscselect, err, ctx) ||
	    le32_hex(root, "miscselectMask", &q->miscselect_mask, err, ctx) ||
	    jhex(root, "attributes", q->attributes, 16, err, ctx) ||
	    jhex(root, "attributesMask", q->attributes_mask, 16, err, ctx) ||
	    jhex(root, "mrsigner", q->mrsigner, 32, err, ctx) ||
	    jint(root, "isvprodid", 0, 65535, &v, err, ctx))
		goto out;
	q->isvprodid = (unsigned)v;
	if (module_levels(json_object_get(root, "tcbLevels"), &q->levels, &q->n_levels, err, ctx))
		goto out;
	*out = q;
	q = NULL;
	rc = 0;
out:
	attest__qe_identity_free(q);
	json_decref(root);
	return rc;
}

void attest__qe_identity_free(struct attest_qe_identity *q)
{
	if (q == NULL)
		return;
	module_levels_free(q->levels, q->n_levels);
	free(q);
}
