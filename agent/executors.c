/*
 * executors.c - the table of executor back ends (see executors.h). The phala and
 * dstack back ends join here when they exist (docs/ROADMAP.md).
 */
#include "agent/executors.h"

#include "agent/config.h"

#include "common/secret.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static const struct exec_ops *const table[] = {
	[CONFIG_EXECUTOR_LOCAL] = &exec_local,
	[CONFIG_EXECUTOR_PHALA] = &exec_phala,
	[CONFIG_EXECUTOR_DSTACK] = &exec_dstack,
};

const struct exec_ops *job_executor(int kind)
{
	if (kind < 0 || (size_t)kind >= sizeof(table) / sizeof(table[0]))
		return NULL;
	return table[kind];
}

const struct exec_ops *job_executor_by_name(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i] && strcmp(table[i]->name, name) == 0)
			return table[i];
	return NULL;
}

static void set_opt(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

int job_executor_init(const struct exec_ops *ops, void *priv, const struct config *cfg, struct tdxr_err *err)
{
	json_t *o = json_object();
	char *text;
	int rc;

	if (o == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	if (strcmp(ops->name, "dstack") == 0) {
		set_opt(o, "vmm_url", cfg->executor.dstack.vmm_url);
		set_opt(o, "image", cfg->executor.dstack.image);
		set_opt(o, "gateway_domain", cfg->executor.dstack.gateway_domain);
		set_opt(o, "compose_file", cfg->executor.dstack.compose_file);
	} else if (strcmp(ops->name, "phala") == 0) {
		set_opt(o, "api_url", cfg->executor.phala.api_url);
		if (cfg->executor.phala.api_key)
			set_opt(o, "api_key", tdxr_secret_str(cfg->executor.phala.api_key));
		set_opt(o, "instance_type", cfg->executor.phala.instance_type);
		set_opt(o, "node_id", cfg->executor.phala.node_id);
		set_opt(o, "image", cfg->executor.phala.image);
		set_opt(o, "compose_file", cfg->executor.phala.compose_file);
	}
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o); /* Jansson frees its copy of the key; the text copy is wiped below */
	if (text == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	rc = ops->init(priv, cfg->state_dir, text, err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}
