/*
 * executors.h - the one explicit table of executor back ends (STYLE.md: no
 * self-registration). Index: enum config_executor_kind.
 */
#ifndef TDXR_AGENT_EXECUTORS_H
#define TDXR_AGENT_EXECUTORS_H

#include "common/err.h"
#include "executors/executor.h"

/* The back end for a config_executor_kind, or NULL when this build has none. */
const struct exec_ops *job_executor(int kind);
struct config;
/* Initialises a back end with its section of the configuration (executor.<kind>, as JSON;
 * secrets inside are wiped from memory after the call). */
int job_executor_init(const struct exec_ops *ops, void *priv, const struct config *cfg, struct tdxr_err *err);
/* By name ("local", ...), or NULL. */
const struct exec_ops *job_executor_by_name(const char *name);

#endif
