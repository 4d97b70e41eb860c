/*
 * sim_collateral.c - signed TCB Info (TDX, v3) and QE Identity (TD_QE, v2)
 * and the whole collateral object in the dcap-qvl QuoteCollateralV3 layout.
 *
 * The JSON texts are built with Jansson (insertion order is kept, compact
 * output) in Intel's key order, and the TCB Signing key signs those exact
 * bytes: ECDSA-P256-SHA256, raw r||s, hex. Hex values inside the signed JSON
 * are upper case as Intel's PCS serves them. Defaults match the PKI's PCK leaf
 * and the quote defaults, so an unmodified run verifies as UpToDate.
 */
#include "attest/sim/sim_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define DAY 86400

static const uint8_t QE_ATTRIBUTES[16] = { 0x11 };
static const uint8_t QE_ATTRIBUTES_MASK[16] = { 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

void sim_tcb_level_init(struct sim_tcb_level *l, const char *status)
{
	memset(l, 0, sizeof(*l));
	memcpy(l->sgx_svn, SIM_DEFAULT_CPU_SVN, 16);
	l->pce_svn = SIM_DEFAULT_PCE_SVN;
	memcpy(l->tdx_svn, SIM_DEFAULT_TEE_TCB_SVN, 16);
	l->status = status;
}

void sim_collateral_opts_init(struct sim_collateral_opts *o, int64_t now)
{
	memset(o, 0, sizeof(*o));
	o->now = now;
	o->tcb_id = "TDX";
	o->tcb_version = 3;
	o->tcb_type = 0;
	o->tcb_eval_num = 17;
	memset(o->tdx_module_attributes_mask, 0xff, 8);
	o->qe_id = "TD_QE";
	o->qe_version = 2;
	o->qe_miscselect = 0;
	o->qe_miscselect_mask = 0xffffffffu;
	memcpy(o->qe_attributes, QE_ATTRIBUTES, 16);
	memcpy(o->qe_attributes_mask, QE_ATTRIBUTES_MASK, 16);
	sim__default_qe_mrsigner(o->qe_mrsigner);
	o->qe_isvprodid = SIM_DEFAULT_QE_ISVPRODID;
	sim_crl_opts_init(&o->root_crl);
	sim_crl_opts_init(&o->pck_crl);
}

void sim_collateral_free(struct sim_collateral *c)
{
	if (c == NULL)
		return;
	free(c->tcb_info);
	free(c->qe_identity);
	free(c->pck_crl);
	free(c->root_ca_crl);
	free(c->json);
	free(c);
}

/* ----------------------------------------------------------- JSON helpers */

static json_t *hex_upper(const uint8_t *p, size_t n)
{
	char buf[2 * 64 + 1];

	if (n > 64)
		return NULL;
	tdxr_hex_encode(p, n, buf);
	for (char *c = buf; *c; c++) {
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	}
	return json_string(buf);
}

static json_t *time_str(int64_t t)
{
	char buf[21];

	tdxr_time_format(t, buf);
	return json_string(buf);
}

/* Sets key to a fresh value; a NULL value (failed allocation) marks the object bad. */
static int put(json_t *o, const char *key, json_t *v)
{
	return v == NULL || json_object_set_new(o, key, v) != 0;
}

static int put_level_tail(json_t *lv, const char *tcb_date, int64_t dflt_date, const char *status,
                          const char *const *adv)
{
	int bad = 0;

	bad |= put(lv, "tcbDate", tcb_date ? json_string(tcb_date) : time_str(dflt_date));
	bad |= put(lv, "tcbStatus", json_string(status ? status : "UpToDate"));
	if (adv) {
		json_t *a = json_array();

		bad |= a == NULL;
		for (size_t i = 0; a && adv[i]; i++)
			bad |= json_array_append_new(a, json_string(adv[i])) != 0;
		bad |= put(lv, "advisoryIDs", a);
	}
	return bad;
}

static json_t *isv_levels(const struct sim_isv_level *l, size_t n, int64_t dflt_date, int *bad)
{
	json_t *arr = json_array();

	*bad |= arr == NULL;
	for (size_t i = 0; arr && i < n; i++) {
		json_t *lv = json_object(), *tcb = json_object();

		*bad |= lv == NULL || tcb == NULL;
		if (tcb)
			*bad |= put(tcb, "isvsvn", json_integer(l[i].isvsvn));
		if (lv) {
			*bad |= put(lv, "tcb", tcb);
			tcb = NULL;
			*bad |= put_level_tail(lv, l[i].tcb_date, dflt_date, l[i].status, l[i].advisory_ids);
			*bad |= json_array_append_new(arr, lv) != 0;
		}
		json_decref(tcb);
	}
	return arr;
}

static json_t *svn_array(const uint8_t svn[16], int *bad)
{
	json_t *a = json_array();

	*bad |= a == NULL;
	for (size_t i = 0; a && i < 16; i++) {
		json_t *c = json_object();

		*bad |= c == NULL || put(c, "svn", json_integer(svn[i])) || json_array_append_new(a, c) != 0;
	}
	return a;
}

static char *dump_compact(json_t *o)
{
	return json_dumps(o, JSON_COMPACT);
}

/* --------------------------------------------------------------- TCB Info */

static const struct sim_isv_level MOD3_LEVELS[] = { { 3, "UpToDate", NULL, NULL } };
static const struct sim_isv_level MOD1_LEVELS[] = { { 4, "UpToDate", NULL, NULL },
	                                            { 2, "OutOfDate", NULL, NULL } };

static char *tcb_info_text(const struct sim_pki *p, const struct sim_collateral_opts *o, int eval_num)
{
	json_t *ti = json_object(), *mod = NULL, *ids = NULL, *levels = NULL;
	struct sim_module_identity dmods[2];
	const struct sim_module_identity *mods = o->modules;
	size_t n_mods = o->n_modules;
	struct sim_tcb_level dlevel;
	const struct sim_tcb_level *tl = o->tcb_levels;
	size_t n_tl = o->n_tcb_levels;
	int64_t issue = o->tcb_issue_date ? o->tcb_issue_date : o->now - DAY;
	int64_t next = o->tcb_next_update ? o->tcb_next_update : o->now + 29 * DAY;
	int64_t ddate = o->now - 30 * DAY - (o->now % DAY);
	char *text = NULL;
	int bad = ti == NULL;

	if (mods == NULL) {
		memset(dmods, 0, sizeof(dmods));
		dmods[0].id = "TDX_03";
		dmods[0].levels = MOD3_LEVELS;
		dmods[0].n_levels = 1;
		dmods[1].id = "TDX_01";
		dmods[1].levels = MOD1_LEVELS;
		dmods[1].n_levels = 2;
		for (size_t i = 0; i < 2; i++)
			memset(dmods[i].attributes_mask, 0xff, 8);
		mods = dmods;
		n_mods = 2;
	}
	if (tl == NULL) {
		sim_tcb_level_init(&dlevel, "UpToDate");
		memcpy(dlevel.sgx_svn, p->cpu_svn, 16);
		dlevel.pce_svn = p->pce_svn;
		tl = &dlevel;
		n_tl = 1;
	}
	if (bad)
		goto out;
	bad |= put(ti, "id", json_string(o->tcb_id ? o->tcb_id : "TDX"));
	bad |= put(ti, "version", json_integer(o->tcb_version));
	bad |= put(ti, "issueDate", time_str(issue));
	bad |= put(ti, "nextUpdate", time_str(next));
	bad |= put(ti, "fmspc", hex_upper(o->fmspc ? o->fmspc : p->fmspc, 6));
	bad |= put(ti, "pceId", hex_upper(o->pce_id ? o->pce_id : p->pce_id, 2));
	bad |= put(ti, "tcbType", json_integer(o->tcb_type));
	bad |= put(ti, "tcbEvaluationDataNumber", json_integer(eval_num));
	if (!o->omit_modules) {
		mod = json_object();
		bad |= mod == NULL;
		if (mod) {
			bad |= put(mod, "mrsigner", hex_upper(o->tdx_module_mrsigner, 48));
			bad |= put(mod, "attributes", hex_upper(o->tdx_module_attributes, 8));
			bad |= put(mod, "attributesMask", hex_upper(o->tdx_module_attributes_mask, 8));
		}
		bad |= put(ti, "tdxModule", mod);
		ids = json_array();
		bad |= ids == NULL;
		for (size_t i = 0; ids && i < n_mods; i++) {
			json_t *m = json_object(), *lvls;

			bad |= m == NULL;
			if (m == NULL)
				break;
			bad |= put(m, "id", json_string(mods[i].id ? mods[i].id : "TDX_01"));
			bad |= put(m, "mrsigner", hex_upper(mods[i].mrsigner, 48));
			bad |= put(m, "attributes", hex_upper(mods[i].attributes, 8));
			bad |= put(m, "attributesMask", hex_upper(mods[i].attributes_mask, 8));
			lvls = isv_levels(mods[i].levels, mods[i].n_levels, ddate, &bad);
			bad |= put(m, "tcbLevels", lvls);
			bad |= json_array_append_new(ids, m) != 0;
		}
		bad |= put(ti, "tdxModuleIdentities", ids);
	}
	levels = json_array();
	bad |= levels == NULL;
	for (size_t i = 0; levels && i < n_tl; i++) {
		json_t *lv = json_object(), *tcb = json_object(), *comp;

		bad |= lv == NULL || tcb == NULL;
		if (lv == NULL || tcb == NULL) {
			json_decref(lv);
			json_decref(tcb);
			break;
		}
		comp = svn_array(tl[i].sgx_svn, &bad);
		bad |= put(tcb, "sgxtcbcomponents", comp);
		bad |= put(tcb, "pcesvn", json_integer(tl[i].pce_svn));
		comp = svn_array(tl[i].tdx_svn, &bad);
		bad |= put(tcb, "tdxtcbcomponents", comp);
		bad |= put(lv, "tcb", tcb);
		bad |= put_level_tail(lv, tl[i].tcb_date, ddate, tl[i].status, tl[i].advisory_ids);
		bad |= json_array_append_new(levels, lv) != 0;
	}
	bad |= put(ti, "tcbLevels", levels);
	if (!bad)
		text = dump_compact(ti);
out:
	json_decref(ti);
	return text;
}

/* ------------------------------------------------------------ QE Identity */

static char *qe_identity_text(const struct sim_collateral_opts *o, int eval_num)
{
	json_t *qi = json_object(), *lvls;
	struct sim_isv_level dlevel = { SIM_DEFAULT_QE_ISVSVN, "UpToDate", NULL, NULL };
	const struct sim_isv_level *ql = o->qe_levels ? o->qe_levels : &dlevel;
	size_t n_ql = o->qe_levels ? o->n_qe_levels : 1;
	int64_t issue = o->qe_issue_date ? o->qe_issue_date : o->now - DAY;
	int64_t next = o->qe_next_update ? o->qe_next_update : o->now + 29 * DAY;
	int64_t ddate = o->now - 30 * DAY - (o->now % DAY);
	uint8_t ms[4], mm[4];
	char *text = NULL;
	int bad = qi == NULL;

	for (size_t i = 0; i < 4; i++) { /* Intel writes the u32 little-endian as hex bytes */
		ms[i] = (uint8_t)(o->qe_miscselect >> (8 * i));
		mm[i] = (uint8_t)(o->qe_miscselect_mask >> (8 * i));
	}
	if (bad)
		return NULL;
	bad |= put(qi, "id", json_string(o->qe_id ? o->qe_id : "TD_QE"));
	bad |= put(qi, "version", json_integer(o->qe_version));
	bad |= put(qi, "issueDate", time_str(issue));
	bad |= put(qi, "nextUpdate", time_str(next));
	bad |= put(qi, "tcbEvaluationDataNumber", json_integer(eval_num));
	bad |= put(qi, "miscselect", hex_upper(ms, 4));
	bad |= put(qi, "miscselectMask", hex_upper(mm, 4));
	bad |= put(qi, "attributes", hex_upper(o->qe_attributes, 16));
	bad |= put(qi, "attributesMask", hex_upper(o->qe_attributes_mask, 16));
	bad |= put(qi, "mrsigner", hex_upper(o->qe_mrsigner, 32));
	bad |= put(qi, "isvprodid", json_integer(o->qe_isvprodid));
	lvls = isv_levels(ql, n_ql, ddate, &bad);
	bad |= put(qi, "tcbLevels", lvls);
	if (!bad)
		text = dump_compact(qi);
	json_decref(qi);
	return text;
}

/* Signs text (or a tampered twin) into *out_text / sig. */
static int sign_doc(const struct sim_pki *p, EVP_PKEY *key, char *text, char *tampered, int corrupt,
                    char **out_text, uint8_t sig[64], struct tdxr_err *err)
{
	int rc = sim__sign(p, key, (const uint8_t *)text, strlen(text), sig, err);

	if (rc)
		return rc;
	if (corrupt)
		sig[17] ^= 0x40;
	if (tampered) {
		*out_text = tampered;
		free(text);
	} else {
		*out_text = text;
	}
	return 0;
}

static int put_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char *h = tdxr_hex_strdup(p, n);
	int bad;

	if (h == NULL)
		return 1;
	bad = put(o, key, json_string(h));
	free(h);
	return bad;
}

int sim_collateral_make(const struct sim_pki *p, const struct sim_collateral_opts *o,
                        struct sim_collateral **out, struct tdxr_err *err)
{
	struct sim_collateral *c = NULL;
	struct tdxr_buf chain, crl_chain, pck_chain;
	char *ti = NULL, *ti_t = NULL, *qi = NULL, *qi_t = NULL;
	EVP_PKEY *skey = o->sign_with_pck ? p->cert[SIM_CERT_PCK].key : p->cert[SIM_CERT_TCB_SIGNING].key;
	json_t *root = NULL;
	int rc, bad = 0;

	*out = NULL;
	tdxr_buf_init(&chain, TDXR_CAP_COLLATERAL);
	tdxr_buf_init(&crl_chain, TDXR_CAP_COLLATERAL);
	tdxr_buf_init(&pck_chain, TDXR_CAP_COLLATERAL);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	ti = tcb_info_text(p, o, o->tcb_eval_num);
	qi = qe_identity_text(o, o->tcb_eval_num);
	if (o->tamper_tcb_info)
		ti_t = tcb_info_text(p, o, o->tcb_eval_num + 1000);
	if (o->tamper_qe_identity)
		qi_t = qe_identity_text(o, o->tcb_eval_num + 1000);
	if (ti == NULL || qi == NULL || (o->tamper_tcb_info && ti_t == NULL) ||
	    (o->tamper_qe_identity && qi_t == NULL)) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "sim: building TCB Info / QE Identity JSON failed");
		goto out;
	}
	rc = sign_doc(p, skey, ti, ti_t, o->corrupt_tcb_info_sig, &c->tcb_info, c->tcb_info_sig, err);
	ti = ti_t = NULL; /* consumed */
	if (rc)
		goto out;
	rc =
	    sign_doc(p, skey, qi, qi_t, o->corrupt_qe_identity_sig, &c->qe_identity, c->qe_identity_sig, err);
	qi = qi_t = NULL;
	if (rc)
		goto out;
	if ((rc = sim_pki_crl(p, SIM_CERT_PLATFORM_CA, &o->pck_crl, &c->pck_crl, &c->pck_crl_len, err)) ||
	    (rc = sim_pki_crl(p, SIM_CERT_ROOT, &o->root_crl, &c->root_ca_crl, &c->root_ca_crl_len, err)))
		goto out;
	if ((rc = sim__pem_append(&chain, &p->cert[SIM_CERT_TCB_SIGNING], err)) ||
	    (rc = sim__pem_append(&chain, &p->cert[SIM_CERT_ROOT], err)) ||
	    (rc = sim__pem_append(&crl_chain, &p->cert[SIM_CERT_PLATFORM_CA], err)) ||
	    (rc = sim__pem_append(&crl_chain, &p->cert[SIM_CERT_ROOT], err)))
		goto out;
	if (o->include_pck_chain &&
	    ((rc = sim__pem_append(&pck_chain, &p->cert[SIM_CERT_PCK], err)) ||
	     (rc = sim__pem_append(&pck_chain, &p->cert[SIM_CERT_PLATFORM_CA], err)) ||
	     (rc = sim__pem_append(&pck_chain, &p->cert[SIM_CERT_ROOT], err))))
		goto out;

	if ((root = json_object()) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	bad |= put(root, "tcb_info", json_string(c->tcb_info));
	bad |= put_hex(root, "tcb_info_signature", c->tcb_info_sig, 64);
	bad |= put(root, "tcb_info_issuer_chain", json_string((const char *)chain.data));
	bad |= put(root, "qe_identity", json_string(c->qe_identity));
	bad |= put_hex(root, "qe_identity_signature", c->qe_identity_sig, 64);
	bad |= put(root, "qe_identity_issuer_chain", json_string((const char *)chain.data));
	bad |= put_hex(root, "pck_crl", c->pck_crl, c->pck_crl_len);
	bad |= put_hex(root, "root_ca_crl", c->root_ca_crl, c->root_ca_crl_len);
	bad |= put(root, "pck_crl_issuer_chain", json_string((const char *)crl_chain.data));
	if (o->include_pck_chain)
		bad |= put(root, "pck_certificate_chain", json_string((const char *)pck_chain.data));
	if (bad || (c->json = json_dumps(root, JSON_INDENT(1))) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "sim: serialising the collateral failed");
		goto out;
	}
	*out = c;
	c = NULL;
out:
	json_decref(root);
	free(ti);
	free(ti_t);
	free(qi);
	free(qi_t);
	tdxr_buf_dispose(&chain);
	tdxr_buf_dispose(&crl_chain);
	tdxr_buf_dispose(&pck_chain);
	sim_collateral_free(c);
	return rc;
}
