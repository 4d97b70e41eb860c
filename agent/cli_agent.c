/*
 * cli_agent.c - `tdx-runner agent` (the daemon) and `tdx-runner register`.
 *
 * The daemon reaps what a previous run left, then polls every configured CI
 * source (agent/ci/ci.h) and runs each job it gets on a worker thread, at most
 * `concurrency` at once (and gitlab[].limit per source). SIGTERM/SIGINT: stop
 * taking jobs; running jobs get `--stop-timeout` seconds to finish, then are
 * cancelled (remote command stopped, box released, final state reported).
 * `--once` takes at most one job, runs it to the end and exits (0 when it
 * reached a final state on the server). Every box is released by its job; a
 * crash leaves claims the next start-up's reap releases.
 */
#include "agent/cli.h"

#include "agent/box.h"
#include "agent/ci/ci.h"
#include "agent/ci/github.h"
#include "agent/ci/github_webhook.h"
#include "agent/config.h"
#include "agent/httpd.h"
#include "common/metrics.h"
#include "common/http.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
	(void)sig;
	g_term = 1;
}

void cli_agent_help(void)
{
	printf("usage: tdx-runner agent [--config FILE] [--once] [--stop-timeout SECONDS]\n"
	       "\n"
	       "The runner daemon: polls the CI systems of the configuration (gitlab[], github[]) for\n"
	       "jobs and runs each in its own freshly leased, attested box (executor.kind): GitLab jobs\n"
	       "directly (log streamed, artifacts uploaded with tdx-attestation.json), GitHub jobs\n"
	       "through one ephemeral just-in-time runner per box; the box is released whatever\n"
	       "happens. At most `concurrency` jobs at once.\n"
	       "\n"
	       "  --once                take at most one job, run it, exit (0 when it reached a final\n"
	       "                        state on the server; 1 when no job came within --wait)\n"
	       "  --wait SECONDS        with --once: how long to wait for a job (default 60)\n"
	       "  --stop-timeout SECONDS  on SIGTERM, how long running jobs may take before they are\n"
	       "                        cancelled (default 30)\n");
}

void cli_register_help(void)
{
	printf("usage: tdx-runner register --url URL (--token-file FILE | --token -) [--config FILE]\n"
	       "\n"
	       "Checks a GitLab runner authentication token (glrt-...) with POST /api/v4/runners/verify\n"
	       "and writes a minimal configuration (mode 0600):\n"
	       "  {\"executor\": {\"kind\": \"local\"}, \"gitlab\": [{\"url\": URL, \"token\": TOKEN}]}\n"
	       "The token is read from FILE, from stdin (--token -), or from $TDXR_GITLAB_TOKEN;\n"
	       "`--token VALUE` works too but puts the token where `ps` can see it for a moment.\n"
	       "  --no-verify   write the file without asking the server\n");
}

/* ------------------------------------------------------------------ daemon */

struct worker {
	pthread_t th;
	const struct ci_ops *ops;
	void *src;
	size_t src_index;
	struct ci_job *job;
	const struct ci_env *env;
	atomic_int done;
	int rc;
	int used;
};

struct source {
	const struct ci_ops *ops;
	void *priv;
	unsigned limit;
	unsigned running;
	int disabled;
	struct timespec next;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct tdxr_err e;

	tdxr_err_clear(&e);
	TDXR_INFO("agent", "%s: started", w->ops->describe(w->job));
	w->rc = w->ops->run(w->src, w->job, w->env, &e);
	if (w->rc)
		TDXR_WARN("agent", "%s: %s", w->ops->describe(w->job), e.msg);
	atomic_store(&w->done, 1);
	return NULL;
}

static void ts_add_ms(struct timespec *t, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static int ts_due(const struct timespec *t)
{
	struct timespec n;

	clock_gettime(CLOCK_MONOTONIC, &n);
	return n.tv_sec > t->tv_sec || (n.tv_sec == t->tv_sec && n.tv_nsec >= t->tv_nsec);
}

/* ------------------------------------------------------- webhooks, metrics */

struct wh_ctx {
	void *src;
	const struct config_github *gc;
};

/* A verified workflow_job delivery (an HTTP server thread): queued jobs with our labels become
 * demand; the job thread confirms over REST that it is still queued before leasing. */
static int on_webhook(void *p, struct gh_job_event *ev)
{
	struct wh_ctx *w = p;
	int rc = 0;

	if (ev->action == GH_JOB_QUEUED &&
	    gh_labels_match(&w->gc->labels, (const char *const *)ev->labels, ev->n_labels)) {
		rc = gh_demand_push_repo(w->src, ev->repository, (int64_t)ev->job_id, (int64_t)ev->run_id,
		                         ev->head_sha, ev->name) < 0
		         ? -1
		         : 0;
		metrics_add(METRIC_WEBHOOK_DELIVERIES, 1, rc ? "queue_full" : "queued", NULL);
	} else {
		metrics_add(METRIC_WEBHOOK_DELIVERIES, 1, "ignored", NULL);
	}
	if (rc == 0)
		gh_job_event_free(ev); /* 0 = ownership taken */
	return rc;
}

static void on_health(void *ctx, struct httpd_health *h)
{
	(void)ctx;
	h->stopping = g_term != 0;
}

#define LISTENERS_MAX 16

struct listener {
	const char *addr;
	struct httpd_route routes[HTTPD_ROUTES_MAX];
	size_t n;
	struct httpd *srv;
};

static struct listener *listener_for(struct listener *ls, size_t *n, const char *addr)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(ls[i].addr, addr) == 0)
			return &ls[i];
	if (*n >= LISTENERS_MAX)
		return NULL;
	memset(&ls[*n], 0, sizeof(ls[*n]));
	ls[*n].addr = addr;
	return &ls[(*n)++];
}

static void reap_line(void *ctx, const char *line)
{
	(void)ctx;
	TDXR_INFO("agent", "reap: %s", line);
}

int cli_agent(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "once", no_argument, NULL, 'o' },
		{ "stop-timeout", required_argument, NULL, 's' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	struct config *cfg = NULL;
	struct source *srcs = NULL;
	struct worker *ws = NULL;
	struct ci_env env;
	struct box_reap_opts ro;
	struct box_reap_result rr;
	struct tdxr_err e;
	atomic_int stop;
	int64_t stop_timeout = 30, wait_s = 60;
	char runner_name[300], host[256] = "";
	size_t n_src = 0, i, running = 0, taken = 0;
	int c, once = 0, rc = 0, job_rc = -1;
	struct timespec started, term_at;
	int terminating = 0;
	struct listener ls[LISTENERS_MAX];
	size_t n_ls = 0, k;
	struct wh_ctx *whc = NULL;
	struct gh_webhook **whs = NULL;
	char(*paths)[48] = NULL;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'o': once = 1; break;
		case 's':
			if (tdxr_parse_i64(optarg, 0, 24 * 3600, &stop_timeout, NULL)) {
				fprintf(stderr, "tdx-runner agent: --stop-timeout: seconds, 0..86400\n");
				return 2;
			}
			break;
		case 'w':
			if (tdxr_parse_i64(optarg, 0, 24 * 3600, &wait_s, NULL)) {
				fprintf(stderr, "tdx-runner agent: --wait: seconds, 0..86400\n");
				return 2;
			}
			break;
		default:
			fprintf(stderr, "tdx-runner agent: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	tdxr_err_clear(&e);
	if (config_load(config, &cfg, &e)) {
		fprintf(stderr, "tdx-runner agent: %s\n", e.msg);
		return 2;
	}
	tdxr_log_setup(cfg->log_format, cfg->log_level, NULL);
	if (config_check_executor(cfg, cfg->executor.kind, &e)) {
		fprintf(stderr, "tdx-runner agent: %s\n", e.msg);
		config_free(cfg);
		return 2;
	}
	if (cfg->n_gitlab + cfg->n_github == 0) {
		fprintf(stderr,
		        "tdx-runner agent: no CI system configured (gitlab[], github[]): see tdx-runner "
		        "register and docs/github.md\n");
		config_free(cfg);
		return 2;
	}
	tdxr_secret_harden_process();
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	/* What an earlier run left behind goes first. */
	memset(&ro, 0, sizeof(ro));
	ro.report = reap_line;
	if (box_reap(cfg, &ro, &rr, &e))
		TDXR_WARN("agent", "reap at start-up: %s", e.msg);
	else if (rr.reaped || rr.failed)
		TDXR_INFO("agent", "reap at start-up: %zu released, %zu failed", rr.reaped, rr.failed);
	srcs = calloc(cfg->n_gitlab + cfg->n_github, sizeof(*srcs));
	ws = calloc(cfg->concurrency, sizeof(*ws));
	if (srcs == NULL || ws == NULL) {
		fprintf(stderr, "tdx-runner agent: out of memory\n");
		rc = 2;
		goto out;
	}
	for (i = 0; i < cfg->n_gitlab; i++) {
		if (ci_gitlab_new(cfg, i, &srcs[n_src].priv, &e)) {
			fprintf(stderr, "tdx-runner agent: gitlab[%zu]: %s\n", i, e.msg);
			rc = 2;
			goto out;
		}
		srcs[n_src].ops = &ci_gitlab;
		if (ci_gitlab.recover && ci_gitlab.recover(srcs[n_src].priv, &e))
			TDXR_WARN("agent", "gitlab[%zu]: %s", i, e.msg);
		srcs[n_src].limit = cfg->gitlab[i].limit;
		clock_gettime(CLOCK_MONOTONIC, &srcs[n_src].next);
		n_src++;
	}
	for (i = 0; i < cfg->n_github; i++) {
		if (ci_github_new(cfg, i, &srcs[n_src].priv, &e)) {
			fprintf(stderr, "tdx-runner agent: github[%zu]: %s\n", i, e.msg);
			rc = 2;
			goto out;
		}
		srcs[n_src].ops = &ci_github;
		if (ci_github.recover && ci_github.recover(srcs[n_src].priv, &e))
			TDXR_WARN("agent", "github[%zu]: %s", i, e.msg);
		clock_gettime(CLOCK_MONOTONIC, &srcs[n_src].next);
		n_src++;
	}
	/* The agent's HTTP servers: one per distinct address among metrics.listen and the
	 * github[].webhook.listen entries. */
	whc = calloc(cfg->n_github + 1, sizeof(*whc));
	whs = calloc(cfg->n_github + 1, sizeof(*whs));
	paths = calloc(cfg->n_github + 1, sizeof(*paths));
	if (whc == NULL || whs == NULL || paths == NULL) {
		fprintf(stderr, "tdx-runner agent: out of memory\n");
		rc = 2;
		goto out;
	}
	if (cfg->metrics_listen) {
		struct listener *l = listener_for(ls, &n_ls, cfg->metrics_listen);

		httpd_route_metrics(&l->routes[l->n++], NULL);
		httpd_route_healthz(&l->routes[l->n++], NULL, on_health, NULL);
	}
	for (i = 0; i < cfg->n_github; i++) {
		struct gh_webhook_opts wo;
		struct listener *l;

		if (cfg->github[i].webhook_listen == NULL)
			continue;
		l = listener_for(ls, &n_ls, cfg->github[i].webhook_listen);
		if (l == NULL || l->n >= HTTPD_ROUTES_MAX) {
			fprintf(stderr, "tdx-runner agent: too many webhook listeners\n");
			rc = 2;
			goto out;
		}
		whc[i].src = srcs[cfg->n_gitlab + i].priv;
		whc[i].gc = &cfg->github[i];
		memset(&wo, 0, sizeof(wo));
		/* Several entries on one address: /github/webhook, /github/webhook/1, ... */
		snprintf(paths[i], sizeof(paths[i]), "%s", GH_WEBHOOK_PATH_DEFAULT);
		for (k = 0; k < l->n; k++)
			if (strcmp(l->routes[k].path, paths[i]) == 0)
				snprintf(paths[i], sizeof(paths[i]), "%s/%zu", GH_WEBHOOK_PATH_DEFAULT, i);
		wo.path = paths[i];
		if (gh_webhook_new(cfg->github[i].webhook_secret, on_webhook, &whc[i], &wo, &whs[i], &e)) {
			fprintf(stderr, "tdx-runner agent: github[%zu].webhook: %s\n", i, e.msg);
			rc = 2;
			goto out;
		}
		gh_webhook_route(whs[i], &l->routes[l->n++]);
	}
	for (k = 0; k < n_ls; k++) {
		if (httpd_start(ls[k].addr, ls[k].routes, ls[k].n, NULL, &ls[k].srv, &e)) {
			fprintf(stderr, "tdx-runner agent: %s\n", e.msg);
			rc = 2;
			goto out;
		}
		TDXR_INFO("agent", "serving %zu route(s) on %s (port %u)", ls[k].n, ls[k].addr,
		          (unsigned)httpd_port(ls[k].srv));
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(runner_name, sizeof(runner_name), "tdx-runner on %s (%s executor)", host,
	         config_executor_kind_name(cfg->executor.kind));
	atomic_init(&stop, 0);
	memset(&env, 0, sizeof(env));
	env.cfg = cfg;
	env.executor_kind = (int)cfg->executor.kind;
	env.stop = &stop;
	env.runner_name = runner_name;
	TDXR_INFO("agent", "%s: polling %zu source(s), concurrency %u", runner_name, n_src, cfg->concurrency);
	clock_gettime(CLOCK_MONOTONIC, &started);
	for (;;) {
		int any_enabled = 0;

		/* Collect finished jobs. */
		for (i = 0; i < cfg->concurrency; i++)
			if (ws[i].used && atomic_load(&ws[i].done)) {
				pthread_join(ws[i].th, NULL);
				if (once)
					job_rc = ws[i].rc;
				metrics_add(METRIC_JOBS_TOTAL, 1, ws[i].ops->name,
				            ws[i].rc == 0 ? "reported" : "error");
				ws[i].ops->job_free(ws[i].job);
				srcs[ws[i].src_index].running--;
				ws[i].used = 0;
				running--;
			}
		if (g_term && !terminating) {
			terminating = 1;
			ts_add_ms(&term_at, (long)stop_timeout * 1000);
			TDXR_INFO("agent", "stopping: no new jobs; %zu running (cancelled after %lld s)",
			          running, (long long)stop_timeout);
		}
		if (terminating && running > 0 && ts_due(&term_at) && !atomic_load(&stop)) {
			TDXR_INFO("agent", "stop timeout: cancelling %zu running job(s)", running);
			atomic_store(&stop, 1);
		}
		if ((terminating || (once && taken > 0)) && running == 0)
			break;
		for (i = 0; i < n_src; i++)
			any_enabled |= !srcs[i].disabled;
		if (!any_enabled && running == 0) {
			rc = 1;
			break;
		}
		if (once && taken == 0 && wait_s >= 0) {
			struct timespec n;

			clock_gettime(CLOCK_MONOTONIC, &n);
			if (n.tv_sec - started.tv_sec >= wait_s) {
				fprintf(stderr, "tdx-runner agent: --once: no job within %lld s\n",
				        (long long)wait_s);
				rc = 1;
				break;
			}
		}
		/* Poll the sources that may take a job. */
		for (i = 0; i < n_src && !terminating && !(once && taken > 0); i++) {
			struct source *s = &srcs[i];
			struct ci_job *job = NULL;
			long next_ms = 3000;
			size_t w;
			int prc;

			if (s->disabled || running >= cfg->concurrency ||
			    (s->limit && s->running >= s->limit) || !ts_due(&s->next))
				continue;
			prc = s->ops->poll(s->priv, &job, &next_ms, &e);
			if (prc == TDXR_EAUTH) {
				TDXR_ERR("agent", "%s", e.msg);
				fprintf(stderr, "tdx-runner agent: %s\n", e.msg);
				s->disabled = 1;
				continue;
			}
			if (prc)
				TDXR_WARN("agent", "poll: %s (next try in %ld ms)", e.msg, next_ms);
			ts_add_ms(&s->next, next_ms);
			if (job == NULL)
				continue;
			for (w = 0; w < cfg->concurrency && ws[w].used; w++)
				;
			ws[w].used = 1;
			ws[w].ops = s->ops;
			ws[w].src = s->priv;
			ws[w].src_index = i;
			ws[w].job = job;
			ws[w].env = &env;
			atomic_init(&ws[w].done, 0);
			if (pthread_create(&ws[w].th, NULL, worker_main, &ws[w]) != 0) {
				TDXR_ERR("agent", "cannot start a worker thread");
				s->ops->job_free(job);
				ws[w].used = 0;
				continue;
			}
			s->running++;
			running++;
			taken++;
		}
		metrics_set(METRIC_JOBS_RUNNING, (double)running, NULL, NULL);
		usleep(100 * 1000);
	}
	if (once && taken > 0)
		rc = job_rc == 0 ? 0 : 1;
	TDXR_INFO("agent", "stopped");
out:
	/* Servers first (no handler runs after this), then the receivers, then the sources. */
	for (k = 0; k < n_ls; k++)
		httpd_stop(ls[k].srv);
	for (i = 0; whs && i < cfg->n_github; i++)
		gh_webhook_free(whs[i]);
	free(whs);
	free(whc);
	free(paths);
	for (i = 0; i < n_src; i++)
		srcs[i].ops->free(srcs[i].priv);
	free(srcs);
	free(ws);
	config_free(cfg);
	return rc;
}

/* ---------------------------------------------------------------- register */

static int read_token_stdin(char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(0, buf + n, cap - 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? 0 : -1;
}

int cli_register(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "url", required_argument, NULL, 'u' },        { "token", required_argument, NULL, 't' },
		{ "token-file", required_argument, NULL, 'f' }, { "config", required_argument, NULL, 'c' },
		{ "no-verify", no_argument, NULL, 'n' },        { NULL, 0, NULL, 0 },
	};
	const char *url = NULL, *config = NULL, *token_file = NULL;
	struct tdxr_secret *tok = NULL;
	char *path = NULL, buf[4096];
	struct tdxr_err e;
	int c, rc = 2, verify = 1;

	tdxr_err_clear(&e);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'c': config = optarg; break;
		case 'f': token_file = optarg; break;
		case 'n': verify = 0; break;
		case 't':
			if (strcmp(optarg, "-") == 0) {
				if (read_token_stdin(buf, sizeof(buf))) {
					fprintf(stderr, "tdx-runner register: no token on stdin\n");
					return 2;
				}
				tok = tdxr_secret_new(buf, strlen(buf));
				OPENSSL_cleanse(buf, sizeof(buf));
			} else {
				tok = tdxr_secret_new(optarg, strlen(optarg));
				/* Gone from our argv (ps may have seen it already: prefer --token-file). */
				OPENSSL_cleanse(optarg, strlen(optarg));
				fprintf(stderr,
				        "tdx-runner register: warning: --token VALUE is visible to other "
				        "users in ps while it runs; use --token-file or --token -\n");
			}
			break;
		default:
			fprintf(stderr, "tdx-runner register: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			tdxr_secret_free(tok);
			return 2;
		}
	}
	if (url == NULL || (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)) {
		fprintf(stderr, "tdx-runner register: --url https://gitlab.example.com is required\n");
		goto out;
	}
	if (tok == NULL && token_file && tdxr_secret_from_file(token_file, &tok, &e)) {
		fprintf(stderr, "tdx-runner register: %s\n", e.msg);
		goto out;
	}
	if (tok == NULL && tdxr_secret_from_env("TDXR_GITLAB_TOKEN", &tok, &e) != 0)
		tok = NULL;
	if (tok == NULL) {
		fprintf(stderr, "tdx-runner register: no token (--token-file FILE, --token -, or "
		                "$TDXR_GITLAB_TOKEN)\n");
		goto out;
	}
	if (verify) {
		struct http_client *h = NULL;
		struct http_request rq;
		struct http_response rs;
		const char *hdrs[] = { "Content-Type: application/json", NULL };
		char u[HTTP_URL_MAX];
		json_t *o = json_pack("{s:s}", "token", tdxr_secret_str(tok));
		char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;

		json_decref(o);
		snprintf(u, sizeof(u), "%s/api/v4/runners/verify", url);
		memset(&rq, 0, sizeof(rq));
		rq.method = HTTP_POST;
		rq.url = u;
		rq.headers = hdrs;
		rq.body = body;
		rq.body_len = body ? strlen(body) : 0;
		http_response_init(&rs);
		if (body == NULL || http_client_new(NULL, &h, &e) || http_request_send(h, &rq, &rs, &e) ||
		    http_response_check(&rq, &rs, &e)) {
			fprintf(stderr, "tdx-runner register: verifying the token with %s: %s\n", url,
			        body ? e.msg : "out of memory");
			if (body)
				OPENSSL_cleanse(body, strlen(body));
			free(body);
			http_response_dispose(&rs);
			http_client_free(h);
			rc = 1;
			goto out;
		}
		OPENSSL_cleanse(body, strlen(body));
		free(body);
		http_response_dispose(&rs);
		http_client_free(h);
	}
	if (config == NULL && config_default_path(&path, &e)) {
		fprintf(stderr, "tdx-runner register: %s\n", e.msg);
		goto out;
	}
	if (config_write_register(config ? config : path, url, tdxr_secret_str(tok), &e)) {
		fprintf(stderr, "tdx-runner register: %s\n", e.msg);
		rc = 1;
		goto out;
	}
	printf("registered: wrote %s (mode 0600); start the runner with: tdx-runner agent --config %s\n",
	       config ? config : path, config ? config : path);
	rc = 0;
out:
	tdxr_secret_free(tok);
	free(path);
	return rc;
}
