/*
 * executors.c - the table of executor back ends (see executors.h). The phala and
 * dstack back ends join here when they exist (docs/ROADMAP.md).
 */
#include "agent/executors.h"

#include "agent/config.h"

#include <string.h>

static const struct exec_ops *const table[] = {
	[CONFIG_EXECUTOR_LOCAL] = &exec_local,
	[CONFIG_EXECUTOR_PHALA] = NULL,
	[CONFIG_EXECUTOR_DSTACK] = NULL,
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
