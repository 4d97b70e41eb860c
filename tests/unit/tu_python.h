/*
 * tu_python.h - shared by the unit tests that start a Python contract server
 * (tests/integration/NAME_server.py): whether python3 is on PATH, so the tests can
 * skip with a message instead of failing when it is not.
 */
#ifndef TDXR_TESTS_TU_PYTHON_H
#define TDXR_TESTS_TU_PYTHON_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int tu_have_python3(void)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path != NULL && *path) {
		size_t n = strcspn(path, ":");

		if (n > 0 && n < sizeof(buf) - 16) {
			memcpy(buf, path, n);
			memcpy(buf + n, "/python3", 9);
			if (access(buf, X_OK) == 0)
				return 1;
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return 0;
}

#endif
