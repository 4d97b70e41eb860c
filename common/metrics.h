/*
 * metrics.h - the agent's process-wide metrics registry: a fixed set of
 * counters and gauges (the families below, each with 0 to 2 labels), bumped
 * from any thread and rendered in the Prometheus text exposition format
 * (version 0.0.4) for GET /metrics.
 *
 * Invariants: one mutex guards the registry; a family has at most
 * METRICS_SERIES_MAX label combinations (further combinations are dropped and
 * counted in tdxr_metrics_dropped_total, so a runaway label cannot grow
 * memory); label values are at most METRICS_LABEL_MAX bytes and are escaped
 * on output. Counters only go up (a negative add is ignored). Label values
 * come from the agent (never secrets): pass fixed words like "gitlab",
 * "success", not server-supplied text.
 */
#ifndef TDXR_COMMON_METRICS_H
#define TDXR_COMMON_METRICS_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

#define METRICS_SERIES_MAX 64u /* label combinations per family */
#define METRICS_LABEL_MAX 64u  /* bytes of one label value */
#define METRICS_RENDER_CAP (1u << 20)

/* The families (name, type, labels) - docs/webhooks-and-metrics.md lists them. */
enum metrics_id {
	METRIC_JOBS_TOTAL = 0,     /* counter tdxr_jobs_total{system,result} */
	METRIC_JOBS_RUNNING,       /* gauge   tdxr_jobs_running */
	METRIC_LEASES_ACTIVE,      /* gauge   tdxr_leases_active */
	METRIC_LEASE_SECONDS,      /* counter tdxr_lease_seconds_total (summed at release) */
	METRIC_GATE_FAILURES,      /* counter tdxr_gate_failures_total */
	METRIC_WEBHOOK_DELIVERIES, /* counter tdxr_webhook_deliveries_total{result} */
	METRIC_HTTP_REQUESTS,      /* counter tdxr_http_requests_total{code} */
	METRIC_DROPPED,            /* counter tdxr_metrics_dropped_total */
	METRIC__COUNT
};

/* Adds v to the series of `id` with the given label values (NULL for a family's
 * unused labels; a family's used labels must be non-NULL). Gauges take any sign. */
void metrics_add(enum metrics_id id, double v, const char *l1, const char *l2);
/* Sets a gauge (ignored for counters). */
void metrics_set(enum metrics_id id, double v, const char *l1, const char *l2);
/* The current value of one series (0 when it does not exist). For tests and /healthz. */
double metrics_get(enum metrics_id id, const char *l1, const char *l2);

/* Appends the exposition text of every family to out. ETOOBIG over out's cap. */
int metrics_render(struct tdxr_buf *out, struct tdxr_err *err);

/* Forgets every series (tests). */
void metrics_reset(void);

#endif
