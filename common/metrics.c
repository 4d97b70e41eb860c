/*
 * metrics.c - see metrics.h. A static table describes the families; each
 * family keeps a small array of series (label values + value), searched
 * linearly: families have a handful of series and a bump is a few string
 * compares under one mutex. Rendering happens under the same mutex into the
 * caller's bounded buffer, so a scrape sees one consistent snapshot.
 */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

enum kind { COUNTER, GAUGE };

struct family {
	const char *name;
	enum kind kind;
	const char *help;
	const char *label[2]; /* NULL = unused */
};

static const struct family families[METRIC__COUNT] = {
	[METRIC_JOBS_TOTAL] = { "tdxr_jobs_total",
	                        COUNTER,
	                        "CI jobs finished, by CI system and result",
	                        { "system", "result" } },
	[METRIC_JOBS_RUNNING] = { "tdxr_jobs_running", GAUGE, "CI jobs running now", { NULL, NULL } },
	[METRIC_LEASES_ACTIVE] = { "tdxr_leases_active", GAUGE, "Leased boxes held now", { NULL, NULL } },
	[METRIC_LEASE_SECONDS] = { "tdxr_lease_seconds_total",
	                           COUNTER,
	                           "Seconds leased boxes were held, summed at release",
	                           { NULL, NULL } },
	[METRIC_GATE_FAILURES] = { "tdxr_gate_failures_total",
	                           COUNTER,
	                           "Boxes refused by the attestation gate",
	                           { NULL, NULL } },
	[METRIC_WEBHOOK_DELIVERIES] = { "tdxr_webhook_deliveries_total",
	                                COUNTER,
	                                "Webhook deliveries received, by outcome",
	                                { "result", NULL } },
	[METRIC_HTTP_REQUESTS] = { "tdxr_http_requests_total",
	                           COUNTER,
	                           "Requests answered by the agent's HTTP server, by status",
	                           { "code", NULL } },
	[METRIC_DROPPED] = { "tdxr_metrics_dropped_total",
	                     COUNTER,
	                     "Metric updates dropped (too many label combinations or a bad label)",
	                     { NULL, NULL } },
};

struct series {
	char l[2][METRICS_LABEL_MAX + 1];
	double v;
};

struct fam_state {
	struct series s[METRICS_SERIES_MAX];
	size_t n;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fam_state state[METRIC__COUNT];

static size_t n_labels(const struct family *f)
{
	return f->label[1] ? 2 : f->label[0] ? 1 : 0;
}

/* Label values must be present for used labels, short, and free of control bytes. */
static int labels_ok(const struct family *f, const char *l1, const char *l2)
{
	const char *l[2] = { l1, l2 };
	size_t i, k;

	for (i = 0; i < 2; i++) {
		if (f->label[i] == NULL)
			continue;
		if (l[i] == NULL || strlen(l[i]) > METRICS_LABEL_MAX)
			return 0;
		for (k = 0; l[i][k]; k++)
			if ((unsigned char)l[i][k] < 0x20 || l[i][k] == 0x7f)
				return 0;
	}
	return 1;
}

/* The series for (l1, l2), created when create != 0. Called with mu held. */
static struct series *series_find(enum metrics_id id, const char *l1, const char *l2, int create)
{
	const struct family *f = &families[id];
	struct fam_state *st = &state[id];
	size_t i, nl = n_labels(f);
	struct series *s;

	for (i = 0; i < st->n; i++) {
		s = &st->s[i];
		if ((nl < 1 || strcmp(s->l[0], l1) == 0) && (nl < 2 || strcmp(s->l[1], l2) == 0))
			return s;
	}
	if (!create)
		return NULL;
	if (st->n == METRICS_SERIES_MAX) {
		state[METRIC_DROPPED].s[0].v += 1;
		state[METRIC_DROPPED].n = 1;
		return NULL;
	}
	s = &st->s[st->n++];
	memset(s, 0, sizeof(*s));
	if (nl >= 1)
		memcpy(s->l[0], l1, strlen(l1) + 1);
	if (nl >= 2)
		memcpy(s->l[1], l2, strlen(l2) + 1);
	return s;
}

static void update(enum metrics_id id, double v, const char *l1, const char *l2, int set)
{
	struct series *s;

	if ((unsigned)id >= METRIC__COUNT || !isfinite(v))
		return;
	pthread_mutex_lock(&mu);
	if (!labels_ok(&families[id], l1, l2)) {
		state[METRIC_DROPPED].s[0].v += 1;
		state[METRIC_DROPPED].n = 1;
		goto out;
	}
	if (families[id].kind == COUNTER && (set || v < 0))
		goto out;
	s = series_find(id, l1, l2, 1);
	if (s == NULL)
		goto out;
	if (set)
		s->v = v;
	else
		s->v += v;
out:
	pthread_mutex_unlock(&mu);
}

void metrics_add(enum metrics_id id, double v, const char *l1, const char *l2)
{
	update(id, v, l1, l2, 0);
}

void metrics_set(enum metrics_id id, double v, const char *l1, const char *l2)
{
	update(id, v, l1, l2, 1);
}

double metrics_get(enum metrics_id id, const char *l1, const char *l2)
{
	struct series *s;
	double v = 0;

	if ((unsigned)id >= METRIC__COUNT)
		return 0;
	pthread_mutex_lock(&mu);
	if (labels_ok(&families[id], l1, l2)) {
		s = series_find(id, l1, l2, 0);
		if (s)
			v = s->v;
	}
	pthread_mutex_unlock(&mu);
	return v;
}

/* A label value with \ " and newline escaped (the exposition format's rules). */
static int put_label(struct tdxr_buf *out, const char *name, const char *v, int first, struct tdxr_err *err)
{
	const char *p;

	if (tdxr_buf_appendf(out, err, "%s%s=\"", first ? "" : ",", name) != 0)
		return TDXR_ETOOBIG;
	for (p = v; *p; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;

		if (tdxr_buf_append(out, esc ? esc : p, esc ? 2 : 1, err) != 0)
			return TDXR_ETOOBIG;
	}
	return tdxr_buf_append(out, "\"", 1, err);
}

/* Integral values print without a fraction ("3", not "3.0000"); others with full precision. */
static int put_value(struct tdxr_buf *out, double v, struct tdxr_err *err)
{
	if (v < 9007199254740992.0 && v > -9007199254740992.0 && v == (double)(int64_t)v)
		return tdxr_buf_appendf(out, err, " %lld\n", (long long)v);
	return tdxr_buf_appendf(out, err, " %.17g\n", v);
}

int metrics_render(struct tdxr_buf *out, struct tdxr_err *err)
{
	size_t id, i, k, nl;
	int rc = 0;

	pthread_mutex_lock(&mu);
	for (id = 0; id < METRIC__COUNT && rc == 0; id++) {
		const struct family *f = &families[id];
		const struct fam_state *st = &state[id];

		nl = n_labels(f);
		rc = tdxr_buf_appendf(out, err, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		                      f->kind == COUNTER ? "counter" : "gauge");
		if (rc == 0 && nl == 0 && st->n == 0) /* an unlabelled family always has its one series */
			rc = tdxr_buf_appendf(out, err, "%s 0\n", f->name);
		for (i = 0; i < st->n && rc == 0; i++) {
			rc = tdxr_buf_append(out, f->name, strlen(f->name), err);
			if (rc == 0 && nl > 0) {
				rc = tdxr_buf_append(out, "{", 1, err);
				for (k = 0; k < nl && rc == 0; k++)
					rc = put_label(out, f->label[k], st->s[i].l[k], k == 0, err);
				if (rc == 0)
					rc = tdxr_buf_append(out, "}", 1, err);
			}
			if (rc == 0)
				rc = put_value(out, st->s[i].v, err);
		}
	}
	pthread_mutex_unlock(&mu);
	return rc;
}

void metrics_reset(void)
{
	pthread_mutex_lock(&mu);
	memset(state, 0, sizeof(state));
	pthread_mutex_unlock(&mu);
}
