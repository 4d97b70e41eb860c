/*
 * executors.h - the one explicit table of executor back ends (STYLE.md: no
 * self-registration). Index: enum config_executor_kind.
 */
#ifndef TDXR_AGENT_EXECUTORS_H
#define TDXR_AGENT_EXECUTORS_H

#include "executors/executor.h"

/* The back end for a config_executor_kind, or NULL when this build has none. */
const struct exec_ops *job_executor(int kind);
/* By name ("local", ...), or NULL. */
const struct exec_ops *job_executor_by_name(const char *name);

#endif
