/*
 * config.h - the agent's configuration: one JSON file (DESIGN.md §3.6), parsed
 * with Jansson into struct config with every default filled in.
 *
 * Trust boundary: the file is operator input. Every value is type- and
 * range-checked; unknown keys, duplicate keys and syntax errors are refused
 * with "file:line:column". Secrets (api_key, token, secret, the GitHub App
 * private key) are held as struct tdxr_secret and come from the file inline
 * (only when the file has mode 0600 or stricter), from `<key>_file` (a 0600
 * file), or from the environment (`<key>_env` naming a variable, or the fixed
 * variable documented in docs/configuration.md); the environment wins, and a
 * variable is removed from the process environment once read.
 *
 * Ownership: config_load returns a struct config the caller frees with
 * config_free (NULL allowed); every pointer inside is owned by it. The
 * attest_policy filled by config_attest_policy borrows from the config.
 */
#ifndef TDXR_AGENT_CONFIG_H
#define TDXR_AGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "attest/attest.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secret.h"

#define CONFIG_CONCURRENCY_MAX 256
#define CONFIG_TIMEOUT_MAX_S (7 * 24 * 3600) /* upper bound for every *_timeout_s */

/* Fixed environment variables (see docs/configuration.md). The single-entry
 * ones apply to the first (or only) entry of the list; use `<key>_env` for others. */
#define CONFIG_ENV_PHALA_API_KEY "PHALA_CLOUD_API_KEY"          /* executor.phala.api_key */
#define CONFIG_ENV_GITLAB_TOKEN "TDXR_GITLAB_TOKEN"             /* gitlab[0].token */
#define CONFIG_ENV_GITHUB_TOKEN "TDXR_GITHUB_TOKEN"             /* github[0].token */
#define CONFIG_ENV_GITHUB_APP_KEY "TDXR_GITHUB_APP_PRIVATE_KEY" /* github[0].app private key (PEM) */
#define CONFIG_ENV_GITHUB_WEBHOOK "TDXR_GITHUB_WEBHOOK_SECRET"  /* github[0].webhook.secret */

enum config_executor_kind {
	CONFIG_EXECUTOR_LOCAL = 0,
	CONFIG_EXECUTOR_PHALA,
	CONFIG_EXECUTOR_DSTACK,
};

/* A list of strings: v is NULL-terminated when n > 0, NULL when n == 0. */
struct config_strlist {
	char **v;
	size_t n;
};

struct config_phala {
	char *api_url;               /* default https://cloud-api.phala.com/api/v1 */
	struct tdxr_secret *api_key; /* NULL when none was configured */
	char *instance_type;         /* default "tdx.small" */
	char *node_id;      /* NULL = let the API choose; a JSON integer is kept as its decimal text */
	char *image;        /* NULL = API default */
	char *compose_file; /* NULL = built-in compose */
};

struct config_dstack {
	char *vmm_url;        /* required for kind dstack */
	char *image;          /* required for kind dstack */
	char *gateway_domain; /* NULL = none */
	char *compose_file;   /* NULL = built-in compose */
};

struct config_gateway {
	char *connect_to; /* "host:port" to dial instead of DNS (SNI keeps the name); NULL = DNS */
	char *ca_file;    /* extra CA file; NULL = system store */
};

struct config_executor {
	enum config_executor_kind kind; /* default local */
	unsigned ready_timeout_s;       /* default 600; 1..CONFIG_TIMEOUT_MAX_S */
	struct config_phala phala;
	struct config_dstack dstack;
	struct config_gateway gateway;
};

struct config_policy {
	unsigned accept_tcb; /* ATTEST_TCB_BIT mask; default UpToDate | SWHardeningNeeded */
	int allow_simulated; /* -1 = null (true for the local executor only), 0, 1 */
	int allow_debug;     /* default 0 */
	int allow_service_td;
	struct config_strlist mrtd; /* 96 lower-case hex digits each; empty = any */
	struct config_strlist rtmr0;
	struct config_strlist rtmr1;
	struct config_strlist rtmr2;
	struct config_strlist os_image_hash; /* 64 lower-case hex digits each */
	char *pccs_url;                      /* default https://api.trustedservices.intel.com */
	char *cache_dir;                     /* NULL = <state_dir>/collateral */
};

struct config_gitlab {
	char *url;                 /* required, http(s) */
	struct tdxr_secret *token; /* required */
	unsigned limit;            /* jobs at once for this entry; 0 = only the global concurrency */
};

struct config_github {
	char *api_url;             /* default https://api.github.com */
	char *uploads_url;         /* default https://uploads.github.com */
	char *repository;          /* "owner/repo", or NULL when organization is set */
	char *organization;        /* or NULL when repository is set */
	struct tdxr_secret *token; /* exactly one of token and app */
	int have_app;
	uint64_t app_id;
	uint64_t app_installation_id;
	char *app_private_key_file;          /* NULL when the key came from the environment */
	struct tdxr_secret *app_private_key; /* PEM */
	struct config_strlist labels;        /* default ["self-hosted", "tdx"] */
	uint64_t runner_group_id;            /* default 1 */
	char *runner_tarball_url;            /* with runner_sha256, or NULL */
	char *runner_sha256;                 /* 64 lower-case hex digits */
	char *runner_path_in_box;            /* default /opt/actions-runner when no tarball */
	char *webhook_listen;                /* "host:port" or NULL = no webhook receiver */
	struct tdxr_secret *webhook_secret;  /* required when webhook_listen is set */
};

struct config {
	char *source; /* the file read, or NULL when built-in defaults were used */
	char *state_dir;
	unsigned concurrency; /* default 1; 1..CONFIG_CONCURRENCY_MAX */
	enum tdxr_log_format log_format;
	enum tdxr_log_level log_level;
	struct config_executor executor;
	struct config_policy policy;
	struct config_gitlab *gitlab; /* n_gitlab entries */
	size_t n_gitlab;
	struct config_github *github;
	size_t n_github;
	char *metrics_listen; /* "host:port" or NULL */
};

/* The default config path into *out (malloc'd): /etc/tdx-runner/config.json for
 * root, else $XDG_CONFIG_HOME/tdx-runner/config.json or ~/.config/tdx-runner/config.json. */
int config_default_path(char **out, struct tdxr_err *err);
/* The default state directory (malloc'd): /var/lib/tdx-runner for root, else
 * $XDG_STATE_HOME/tdx-runner or ~/.local/state/tdx-runner. */
int config_default_state_dir(char **out, struct tdxr_err *err);

/* Built-in defaults only (no file, but the fixed secret environment variables are read). */
int config_defaults(struct config **out, struct tdxr_err *err);

/*
 * Loads a config. path NULL = config_default_path(), and a missing default file
 * means built-in defaults; an explicit path that does not exist is an error.
 * Errors in the file read "FILE:LINE:COLUMN: key.path: what is wrong".
 * Also checks that the configured executor kind has what it needs
 * (config_check_executor).
 */
int config_load(const char *path, struct config **out, struct tdxr_err *err);
void config_free(struct config *cfg);

/* Whether cfg has what executor `kind` needs (phala: api_key; dstack: vmm_url, image).
 * For a command-line override of the configured kind. */
int config_check_executor(const struct config *cfg, enum config_executor_kind kind, struct tdxr_err *err);

const char *config_executor_kind_name(enum config_executor_kind kind);
/* "local" / "phala" / "dstack" */
int config_executor_kind_parse(const char *s, enum config_executor_kind *out, struct tdxr_err *err);

/* policy.allow_simulated resolved for `kind`: null means 1 for local, 0 otherwise. */
int config_allow_simulated(const struct config *cfg, enum config_executor_kind kind);

/* Fills *out (attest_policy_init first) from cfg->policy for executor `kind`.
 * The allow-lists point into cfg: *out is valid only while cfg lives. The
 * expected_* fields stay NULL; the pipeline sets them per lease. */
void config_attest_policy(const struct config *cfg, enum config_executor_kind kind,
                          struct attest_policy *out);

/*
 * Writes a minimal config for `tdx-runner register` atomically with mode 0600:
 * {"executor": {"kind": "local"}, "gitlab": [{"url": URL, "token": TOKEN}]}.
 * The parent directory is created (0700) when missing; an existing file is replaced.
 */
int config_write_register(const char *path, const char *gitlab_url, const char *token, struct tdxr_err *err);

#endif
